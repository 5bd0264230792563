# shellcheck shell=bash
# Local coredms of the e2e stack: FerretDB v1 (MongoDB wire protocol) on a private PostgreSQL
# cluster, both on loopback. FerretDB v1 holds no credentials of its own: a client
# authenticates with the MongoDB PLAIN mechanism and FerretDB opens its PostgreSQL connections
# as that user, so PostgreSQL roles and grants are what separates tenants on this backend.
# PostgreSQL serves TLS with a certificate for 127.0.0.1, localhost and the node's bridge
# address, signed by the stack's CA (tls.sh); the env file's MYSIMBDP_POSTGRES_URL asks for it
# with sslmode=verify-full.
#
# Sourced after lib.sh; defines functions only:
#   coredms_build   PostgreSQL server binaries (apt, only when missing), FerretDB from source,
#                   and the pymongo client used by the health check and by tests
#   coredms_up      initdb once, start PostgreSQL and FerretDB, wait until the admin can use it
#   coredms_down    stop FerretDB, then PostgreSQL (state is kept)
#   coredms_status  status_row lines
#   coredms_env     `export` lines for clients and tests
#   coredms_mongo   run one operation through the MongoDB wire protocol (see below)
#   coredms_psql    psql as the platform's PostgreSQL superuser
# Run directly: bash e2e/stack/coredms.sh up|down|status|env|build

# The stack's CA and certificates, also when this file is sourced without stack.sh (tests do).
declare -F tls_server_cert >/dev/null || . "$STACK_DIR/tls.sh"

COREDMS_ADMIN_USER=mysimbdp_admin
COREDMS_DATABASE=ferretdb
# The MongoDB driver used for health checks and tests, pinned; installed from PyPI.
COREDMS_PYMONGO_VERSION=4.10.1

_coredms_state() { printf '%s/coredms\n' "$MYSIMBDP_STATE"; }
_coredms_pgbin() { printf '/usr/lib/postgresql/%s/bin\n' "$POSTGRES_MAJOR"; }
_coredms_ferretdb_home() { printf '%s/ferretdb-%s\n' "$MYSIMBDP_CACHE" "$FERRETDB_VERSION"; }
_coredms_pymongo_home() { printf '%s/pymongo-%s\n' "$MYSIMBDP_CACHE" "$COREDMS_PYMONGO_VERSION"; }

# Same scheme as kafka.sh: generated once, hex only (safe in URLs and SQL literals).
_coredms_secret() {
  local dir=$MYSIMBDP_STATE/secrets
  local file=$dir/$1
  if [ ! -s "$file" ]; then
    mkdir -p "$dir"
    chmod 700 "$dir"
    (umask 077 && openssl rand -hex 24 >"$file.new.$$") || die "cannot generate secret $file"
    mv -n "$file.new.$$" "$file"
    rm -f "$file.new.$$"
  fi
  chmod 600 "$file"
  cat "$file"
}

# ---------------------------------------------------------------------------------------------
# PostgreSQL server binaries and the account that runs the server
# ---------------------------------------------------------------------------------------------

# Installs postgresql-$POSTGRES_MAJOR when its server binaries are missing. The package would
# normally create and start a "main" cluster on port 5432; that cluster is never used here, so
# creating it is switched off (createcluster.conf, only when no such file exists yet) and
# service starts are refused for the duration of the install (policy-rc.d, only when absent).
_coredms_ensure_postgres() {
  local bin
  bin=$(_coredms_pgbin)
  if [ -x "$bin/postgres" ] && [ -x "$bin/initdb" ] && [ -x "$bin/pg_isready" ] && [ -x "$bin/psql" ]; then
    return 0
  fi
  [ "$(id -u)" = 0 ] || die "PostgreSQL $POSTGRES_MAJOR server binaries are missing from $bin; install them with: sudo apt-get install -y postgresql-$POSTGRES_MAJOR"
  command -v apt-get >/dev/null 2>&1 || die "PostgreSQL $POSTGRES_MAJOR is missing from $bin and apt-get is not available to install it"
  log "installing postgresql-$POSTGRES_MAJOR (its own cluster and service are not used)"
  local added_policy=""
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
    chmod 755 /usr/sbin/policy-rc.d
    added_policy=1
  fi
  if [ ! -e /etc/postgresql-common/createcluster.conf ]; then
    mkdir -p /etc/postgresql-common
    # Kept afterwards: dpkg then owns it as a locally modified conffile.
    printf '# Written by mysimbdp e2e/stack/coredms.sh: no default cluster.\ncreate_main_cluster = false\n' \
      >/etc/postgresql-common/createcluster.conf
  fi
  local rc=0 alog=$LOG_DIR/apt-postgresql.log
  {
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
      -o Dpkg::Options::=--force-confold "postgresql-$POSTGRES_MAJOR" ||
      { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
        -o Dpkg::Options::=--force-confold "postgresql-$POSTGRES_MAJOR"; }
  } >"$alog" 2>&1 || rc=$?
  if [ -n "$added_policy" ]; then
    rm -f /usr/sbin/policy-rc.d
  fi
  if [ "$rc" != 0 ] || [ ! -x "$bin/postgres" ]; then
    log_tail "$alog" 30
    die "installing postgresql-$POSTGRES_MAJOR failed (log: $alog)"
  fi
}

# PostgreSQL refuses to run as root. As root, the server and initdb run as the `postgres`
# system account that the Debian package creates; as any other user they run as that user.
_coredms_pg_user() {
  if [ "$(id -u)" = 0 ]; then
    getent passwd postgres >/dev/null || die "running as root, but there is no 'postgres' account to run PostgreSQL as (it comes with the postgresql-common package)"
    printf 'postgres\n'
  else
    id -un
  fi
}

# _coredms_as_pg CMD...: runs CMD as the server account. setpriv execs in place (no extra
# process), so a server started through it keeps the pid that proc_start records.
_coredms_as_pg() {
  if [ "$(id -u)" = 0 ]; then
    setpriv --reuid=postgres --regid=postgres --init-groups -- "$@"
  else
    "$@"
  fi
}

# The server account must be able to walk down to its data directory. The default state dir
# lives under root's home (mode 700); rather than opening those directories to everyone,
# only the search (x) permission is granted to that one account, with a POSIX ACL.
_coredms_grant_traverse() {
  local target=$1 user d
  [ "$(id -u)" = 0 ] || return 0
  user=$(_coredms_pg_user)
  if _coredms_as_pg test -x "$target" 2>/dev/null; then
    return 0
  fi
  if ! command -v setfacl >/dev/null 2>&1; then
    log "installing acl (setfacl) to let $user reach $target"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends acl >"$LOG_DIR/apt-acl.log" 2>&1 ||
      { apt-get update -q >>"$LOG_DIR/apt-acl.log" 2>&1 &&
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends acl >>"$LOG_DIR/apt-acl.log" 2>&1; } ||
      die "cannot install acl; make $target reachable for the '$user' account or set MYSIMBDP_STATE to a directory it can reach"
  fi
  local -a parts
  local part
  IFS=/ read -ra parts <<<"${target#/}"
  d=
  for part in "${parts[@]}"; do
    [ -n "$part" ] || continue
    d=$d/$part
    if ! _coredms_as_pg test -x "$d" 2>/dev/null; then
      log "granting '$user' search (x) permission on $d, through an ACL"
      setfacl -m "u:$user:x" "$d" || die "setfacl on $d failed; set MYSIMBDP_STATE to a directory that '$user' can reach"
    fi
  done
  _coredms_as_pg test -x "$target" || die "'$user' still cannot reach $target"
}

# ---------------------------------------------------------------------------------------------
# Builds
# ---------------------------------------------------------------------------------------------

# Builder for cached_build: FerretDB from the module source of the Go module proxy, built the
# way its production image is (CGO off, -trimpath, no build tags: ferretdb_debug would make a
# debug build, ferretdb_hana adds the SAP HANA backend).
_coredms_ferretdb_builder() {
  local out=$1
  command -v go >/dev/null 2>&1 || {
    echo "go is not installed; FerretDB is built from source"
    return 1
  }
  local mod=github.com/FerretDB/FerretDB@$FERRETDB_VERSION json dir
  # Run outside any module, so that only the proxy's copy of the module is used.
  json=$(cd "$out" && GOFLAGS='' go mod download -json "$mod") || {
    echo "go mod download $mod failed: $json"
    return 1
  }
  dir=$(printf '%s\n' "$json" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p')
  if [ -z "$dir" ] || [ ! -d "$dir" ]; then
    echo "go mod download did not report a source directory: $json"
    return 1
  fi
  # The module cache is read-only; build in a writable copy inside the partial dir.
  cp -r "$dir" "$out/src" && chmod -R u+w "$out/src" || return 1
  # build/version embeds these files; version.txt is required (the binary panics without a
  # "v"-prefixed version). The module zip carries no git metadata, so the commit and branch
  # stay "unknown" rather than being made up.
  printf '%s\n' "$FERRETDB_VERSION" >"$out/src/build/version/version.txt"
  printf '%s\n' mysimbdp-local >"$out/src/build/version/package.txt"
  mkdir -p "$out/bin"
  (cd "$out/src" && CGO_ENABLED=0 GOTOOLCHAIN=local GOFLAGS=-buildvcs=false \
    go build -trimpath -o "$out/bin/ferretdb" ./cmd/ferretdb) || return 1
  rm -rf "$out/src"
  local version
  version=$("$out/bin/ferretdb" --version) || return 1
  printf '%s\n' "$version"
  case $'\n'"$version"$'\n' in
    *$'\n'"version: $FERRETDB_VERSION"$'\n'*) ;;
    *)
      echo "ferretdb --version does not report $FERRETDB_VERSION"
      return 1
      ;;
  esac
}

# Builder for cached_build: a virtualenv with pymongo. Only <dir>/venv/bin/python is used:
# the venv is created in the partial dir and then renamed, which breaks the absolute paths
# in its console scripts (pip, activate) but not the interpreter itself.
_coredms_pymongo_builder() {
  local out=$1 py
  py=$(command -v python3) || {
    echo "python3 is not installed"
    return 1
  }
  "$py" -m venv "$out/venv" || {
    echo "python3 -m venv failed; on Debian: apt-get install -y python3-venv"
    return 1
  }
  "$out/venv/bin/python" -m pip install -q --disable-pip-version-check "pymongo==$COREDMS_PYMONGO_VERSION" || return 1
  "$out/venv/bin/python" -c 'import pymongo; print("pymongo", pymongo.version)'
}

coredms_build() {
  _coredms_ensure_postgres
  cached_build ferretdb "$FERRETDB_VERSION" _coredms_ferretdb_builder >/dev/null || die "coredms: FerretDB build failed"
  cached_build pymongo "$COREDMS_PYMONGO_VERSION" _coredms_pymongo_builder >/dev/null || die "coredms: pymongo install failed"
  _coredms_ferretdb_home
}

# ---------------------------------------------------------------------------------------------
# Clients
# ---------------------------------------------------------------------------------------------

# coredms_psql [PSQL ARGS...]: psql on database ferretdb as the platform superuser over TCP.
coredms_psql() {
  local pw
  pw=$(_coredms_secret coredms-admin.password)
  PGPASSWORD=$pw PGCONNECT_TIMEOUT=5 "$(_coredms_pgbin)/psql" -X -q -v ON_ERROR_STOP=1 \
    -h 127.0.0.1 -p "$MYSIMBDP_POSTGRES_PORT" -U "$COREDMS_ADMIN_USER" -d "$COREDMS_DATABASE" "$@"
}

# coredms_mongo USER PASSWORD ACTION [ARGS...]: one operation through FerretDB with pymongo,
# authenticating with PLAIN (auth source $external). Results are printed as JSON lines;
# a failed operation exits non-zero with "error: <codeName> (<code>): <message>".
#   ping [DB]                    insert DB COLL JSON         find DB COLL [FILTER_JSON]
#   list-databases               list-collections DB         drop-database DB
# The password travels in the environment, not on the command line.
coredms_mongo() {
  [ $# -ge 3 ] || die "usage: coredms_mongo USER PASSWORD ACTION [ARGS...]"
  local py
  py=$(_coredms_pymongo_home)/venv/bin/python
  [ -x "$py" ] || die "pymongo is not installed; run coredms_build (or: bash $STACK_DIR/coredms.sh build)"
  local user=$1 pw=$2
  shift 2
  COREDMS_MONGO_USER=$user COREDMS_MONGO_PASSWORD=$pw COREDMS_MONGO_PORT=$MYSIMBDP_COREDMS_PORT \
    "$py" - "$@" <<'PY'
import json, os, sys
from bson import json_util
from pymongo import MongoClient
from pymongo.errors import OperationFailure, PyMongoError

def out(doc):
    print(json_util.dumps(doc, json_options=json_util.RELAXED_JSON_OPTIONS))

args = sys.argv[1:]
action = args[0]
client = MongoClient(
    host="127.0.0.1", port=int(os.environ["COREDMS_MONGO_PORT"]), directConnection=True,
    username=os.environ["COREDMS_MONGO_USER"], password=os.environ["COREDMS_MONGO_PASSWORD"],
    authMechanism="PLAIN", authSource="$external", appname="mysimbdp-e2e",
    serverSelectionTimeoutMS=3000, connectTimeoutMS=2000,
    socketTimeoutMS=int(os.environ.get("COREDMS_MONGO_TIMEOUT_MS", "10000")),
)
try:
    if action == "ping":
        out(client[args[1] if len(args) > 1 else "admin"].command("ping"))
    elif action == "insert":
        res = client[args[1]][args[2]].insert_one(json_util.loads(args[3]))
        out({"inserted_id": res.inserted_id})
    elif action == "find":
        flt = json_util.loads(args[3]) if len(args) > 3 else {}
        for doc in client[args[1]][args[2]].find(flt):
            out(doc)
    elif action == "count":
        flt = json_util.loads(args[3]) if len(args) > 3 else {}
        print(client[args[1]][args[2]].count_documents(flt))
    elif action == "list-databases":
        out(client.list_database_names())
    elif action == "list-collections":
        out(client[args[1]].list_collection_names())
    elif action == "drop-database":
        client.drop_database(args[1])
        out({"dropped": args[1]})
    else:
        sys.exit("error: unknown action " + action)
except OperationFailure as e:
    sys.exit("error: %s (%s): %s" % (e.details.get("codeName", "?") if e.details else "?", e.code, str(e).split(", full error")[0]))
except PyMongoError as e:
    sys.exit("error: %s: %s" % (type(e).__name__, e))
# No client.close(): it sends endSessions, which FerretDB v1 does not implement, and every
# health-check poll would log a CommandNotFound warning. The process exits here anyway.
PY
}

# ---------------------------------------------------------------------------------------------
# Lifecycle
# ---------------------------------------------------------------------------------------------

# initdb once. It runs into a sibling directory that is renamed when complete, so an
# interrupted initdb is never mistaken for a cluster. The bootstrap superuser is the
# platform's admin itself, with its password, so no passwordless role ever exists.
_coredms_initdb() {
  local st=$1 pg=$1/pg
  if [ -f "$pg/PG_VERSION" ]; then
    return 0
  fi
  local tmp=$st/pg.initdb user
  user=$(_coredms_pg_user)
  rm -rf "$tmp"
  mkdir -p "$tmp"
  chown "$user:" "$tmp"
  chmod 700 "$tmp"
  log "coredms: initdb $pg (superuser $COREDMS_ADMIN_USER)"
  # initdb reads the password from a file that the server account can open (a pipe from
  # root on /dev/stdin is not); it lives only for the duration of initdb.
  local pwfile=$st/initdb.pw
  rm -f "$pwfile"
  (umask 077 && _coredms_secret coredms-admin.password >"$pwfile") || die "coredms: cannot write $pwfile"
  chown "$user:" "$pwfile"
  _coredms_as_pg "$(_coredms_pgbin)/initdb" -D "$tmp" --username="$COREDMS_ADMIN_USER" --pwfile="$pwfile" \
    --auth=scram-sha-256 --encoding=UTF8 --no-locale >"$LOG_DIR/initdb.log" 2>&1 || {
    rm -f "$pwfile"
    log_tail "$LOG_DIR/initdb.log" 30
    rm -rf "$tmp"
    die "coredms: initdb failed"
  }
  rm -f "$pwfile"
  # Only loopback TCP and the private socket, both with SCRAM; nothing is trusted.
  cat >"$tmp/pg_hba.conf" <<'EOF'
# Written by e2e/stack/coredms.sh at initdb time.
# TYPE  DATABASE  USER  ADDRESS        METHOD
local   all       all                  scram-sha-256
host    all       all   127.0.0.1/32   scram-sha-256
EOF
  chown "$user:" "$tmp/pg_hba.conf"
  chmod 600 "$tmp/pg_hba.conf"
  rm -rf "$pg"
  mv "$tmp" "$pg"
}

# A postmaster that was killed (kill -9, OOM) leaves postmaster.pid behind. PostgreSQL itself
# ignores the file once that pid is gone, but refuses to start while the pid still exists,
# which includes the moment before its parent reaps it. Wait for that to pass (a dying or
# zombie postmaster), and stop with a clear message when a PostgreSQL process this stack did
# not start keeps holding the data directory.
_coredms_wait_old_postmaster() {
  local lock=$1/postmaster.pid pid state deadline=$((SECONDS + 15))
  [ -f "$lock" ] || return 0
  pid=$(head -n 1 "$lock" 2>/dev/null)
  case $pid in '' | *[!0-9]*) return 0 ;; esac
  while [ -d "/proc/$pid" ]; do
    state=$(sed 's/^.*) //' "/proc/$pid/stat" 2>/dev/null | cut -d' ' -f1)
    if [ -n "$state" ] && [ "$state" != Z ] &&
      ! tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q postgres; then
      # The pid was reused by an unrelated process: the lock file is stale, and PostgreSQL
      # would refuse to start because of it.
      log "coredms: removing stale $lock (pid $pid is not a postmaster)"
      rm -f "$lock"
      return 0
    fi
    [ $SECONDS -lt $deadline ] ||
      die "a PostgreSQL process (pid $pid) that this stack did not start holds $1/postmaster.pid; stop it first"
    sleep 0.2
  done
}

_coredms_pg_ready() {
  "$(_coredms_pgbin)/pg_isready" -q -h 127.0.0.1 -p "$MYSIMBDP_POSTGRES_PORT" -d "$COREDMS_DATABASE" -t 2
}

# Database `ferretdb` owned by the admin. PUBLIC loses the default CONNECT/TEMPORARY on it:
# tenant roles get CONNECT explicitly, so a new role can do nothing until it is granted.
_coredms_pg_setup() {
  local pw
  pw=$(_coredms_secret coredms-admin.password)
  local exists
  exists=$(PGPASSWORD=$pw "$(_coredms_pgbin)/psql" -X -At -h 127.0.0.1 -p "$MYSIMBDP_POSTGRES_PORT" \
    -U "$COREDMS_ADMIN_USER" -d postgres -c "SELECT 1 FROM pg_database WHERE datname = '$COREDMS_DATABASE'") ||
    die "coredms: cannot connect to PostgreSQL as $COREDMS_ADMIN_USER"
  if [ "$exists" != 1 ]; then
    log "coredms: creating database $COREDMS_DATABASE"
    PGPASSWORD=$pw "$(_coredms_pgbin)/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$MYSIMBDP_POSTGRES_PORT" \
      -U "$COREDMS_ADMIN_USER" -d postgres \
      -c "CREATE DATABASE $COREDMS_DATABASE OWNER $COREDMS_ADMIN_USER ENCODING 'UTF8' TEMPLATE template0" \
      -c "REVOKE ALL ON DATABASE $COREDMS_DATABASE FROM PUBLIC" || die "coredms: creating database $COREDMS_DATABASE failed"
  fi
}

# _coredms_pg_tls: the server's certificate, signed by the stack's CA, in $st/tls, owned by the
# server account (PostgreSQL refuses a key that others can read); then TLS is switched on with
# ALTER SYSTEM and a reload, which PostgreSQL applies without a restart, so a running server
# takes it (and a renewed certificate) on the next `up`.
_coredms_pg_tls() {
  local st pw user ca
  st=$(_coredms_state)
  user=$(_coredms_pg_user)
  ca=$(tls_ca)
  tls_server_cert "$st/tls" postgres IP:127.0.0.1 "IP:$MYSIMBDP_NODE_IP" DNS:localhost >/dev/null || die "coredms: cannot make PostgreSQL's TLS certificate"
  chown -R "$user:" "$st/tls"
  chmod 700 "$st/tls"
  chmod 600 "$st/tls/postgres.key"
  pw=$(_coredms_secret coredms-admin.password)
  PGPASSWORD=$pw "$(_coredms_pgbin)/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$MYSIMBDP_POSTGRES_PORT" \
    -U "$COREDMS_ADMIN_USER" -d postgres \
    -c "ALTER SYSTEM SET ssl_cert_file = '$st/tls/postgres.crt'" \
    -c "ALTER SYSTEM SET ssl_key_file = '$st/tls/postgres.key'" \
    -c "ALTER SYSTEM SET ssl_min_protocol_version = 'TLSv1.2'" \
    -c "ALTER SYSTEM SET ssl = on" \
    -c "SELECT pg_reload_conf()" >/dev/null || die "coredms: cannot switch TLS on in PostgreSQL"
  # The reload is asynchronous: wait until a verified TLS session is possible.
  wait_until "coredms postgres TLS" 30 "$LOG_DIR/postgres.log" coredms-postgres _coredms_pg_tls_ready "$ca"
}

# True when the admin gets a TLS session that verifies the server against the stack's CA.
_coredms_pg_tls_ready() {
  local ca=$1 pw
  pw=$(_coredms_secret coredms-admin.password)
  [ "$(PGPASSWORD=$pw PGCONNECT_TIMEOUT=5 "$(_coredms_pgbin)/psql" -X -At \
    "host=127.0.0.1 port=$MYSIMBDP_POSTGRES_PORT dbname=$COREDMS_DATABASE user=$COREDMS_ADMIN_USER sslmode=verify-full sslrootcert=$ca" \
    -c "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")" = t ]
}

_coredms_ferretdb_ready() {
  port_in_use "$MYSIMBDP_COREDMS_PORT" || return 1
  coredms_mongo "$COREDMS_ADMIN_USER" "$(_coredms_secret coredms-admin.password)" ping admin
}

coredms_up() {
  coredms_build >/dev/null
  local st bin fhome
  st=$(_coredms_state)
  bin=$(_coredms_pgbin)
  fhome=$(_coredms_ferretdb_home)
  mkdir -p "$st"
  _coredms_secret coredms-admin.password >/dev/null

  # PostgreSQL
  if proc_alive coredms-postgres; then
    log "coredms: postgres is already running (pid $(proc_pid coredms-postgres))"
  else
    require_free_port "$MYSIMBDP_POSTGRES_PORT" "coredms PostgreSQL" MYSIMBDP_POSTGRES_PORT
    _coredms_grant_traverse "$st"
    _coredms_initdb "$st"
    _coredms_wait_old_postmaster "$st/pg"
    local user
    user=$(_coredms_pg_user)
    mkdir -p "$st/run"
    chown "$user:" "$st/run"
    chmod 700 "$st/run"
    log "coredms: starting PostgreSQL $POSTGRES_MAJOR on 127.0.0.1:$MYSIMBDP_POSTGRES_PORT (log: $LOG_DIR/postgres.log)"
    # Settings on the command line rather than in postgresql.conf: a changed port applies on
    # the next start without editing the cluster. Small memory; fsync stays on.
    # env and setpriv both exec, so the recorded pid is the postmaster's own.
    local -a cmd=(env -u PGPASSWORD -u PGUSER -u PGDATABASE)
    if [ "$(id -u)" = 0 ]; then
      cmd+=(setpriv --reuid=postgres --regid=postgres --init-groups --)
    fi
    cmd+=("$bin/postgres" -D "$st/pg"
      -c listen_addresses=127.0.0.1 -c port="$MYSIMBDP_POSTGRES_PORT"
      -c unix_socket_directories="$st/run" -c shared_buffers=32MB -c max_connections=100
      -c password_encryption=scram-sha-256 -c logging_collector=off -c log_min_messages=warning)
    PROC_EXE=$bin/postgres proc_start coredms-postgres "$LOG_DIR/postgres.log" "${cmd[@]}"
    wait_until "coredms postgres" 60 "$LOG_DIR/postgres.log" coredms-postgres _coredms_pg_ready
  fi
  _coredms_pg_setup
  _coredms_pg_tls

  # FerretDB
  if proc_alive coredms-ferretdb; then
    log "coredms: ferretdb is already running (pid $(proc_pid coredms-ferretdb))"
  else
    require_free_port "$MYSIMBDP_COREDMS_PORT" "coredms FerretDB" MYSIMBDP_COREDMS_PORT
    mkdir -p "$st/ferretdb"
    log "coredms: starting FerretDB $FERRETDB_VERSION on 127.0.0.1:$MYSIMBDP_COREDMS_PORT (log: $LOG_DIR/ferretdb.log)"
    # The PostgreSQL URL has no credentials: every client's PLAIN username and password are
    # used for its own PostgreSQL connections. PGPASSFILE=/dev/null and no PGUSER/PGPASSWORD
    # keep the driver from finding a default identity for clients that did not authenticate.
    # --debug-addr=- : no HTTP debug/metrics listener (it would take 127.0.0.1:8088).
    # URL parameters: no TLS attempt before every plain connection (the server has none);
    # FerretDB keeps one pool per PostgreSQL user with up to 50 connections by default, far
    # more than a test needs when each tenant is a user; idle connections are closed after
    # a minute (FerretDB only applies its own idle default when the parameter is present).
    PROC_EXE=$fhome/bin/ferretdb proc_start coredms-ferretdb "$LOG_DIR/ferretdb.log" \
      env -u PGPASSWORD -u PGUSER -u PGDATABASE -u PGSERVICE PGPASSFILE=/dev/null \
      "$fhome/bin/ferretdb" --handler=postgresql \
      --postgresql-url="postgres://127.0.0.1:$MYSIMBDP_POSTGRES_PORT/$COREDMS_DATABASE?sslmode=disable&pool_max_conns=8&pool_max_conn_idle_time=1m" \
      --listen-addr="127.0.0.1:$MYSIMBDP_COREDMS_PORT" --state-dir="$st/ferretdb" \
      --telemetry=disable --debug-addr=- --log-level=info
  fi
  # The first authenticated request also loads FerretDB's catalogue of databases; it must be
  # the admin's, who can see every schema (see the note on tenants in coredms_env).
  wait_until "coredms ferretdb" 60 "$LOG_DIR/ferretdb.log" coredms-ferretdb _coredms_ferretdb_ready
  log "coredms: ready"
}

coredms_down() {
  proc_stop coredms-ferretdb 20
  # postgres handles TERM as a "smart" shutdown that waits for clients; FerretDB is gone by
  # now, so it finishes at once.
  proc_stop coredms-postgres 60
}

coredms_status() {
  local fhome
  fhome=$(_coredms_ferretdb_home)
  if [ -f "$fhome/.complete" ]; then
    status_row "ferretdb build" built "$fhome"
  else
    status_row "ferretdb build" missing "run: bash $STACK_DIR/coredms.sh build"
  fi
  if proc_alive coredms-postgres; then
    status_row "coredms postgres" running "pid $(proc_pid coredms-postgres), 127.0.0.1:$MYSIMBDP_POSTGRES_PORT"
  else
    status_row "coredms postgres" stopped "data: $(_coredms_state)/pg"
  fi
  if proc_alive coredms-ferretdb; then
    status_row "coredms ferretdb" running "pid $(proc_pid coredms-ferretdb), mongodb://127.0.0.1:$MYSIMBDP_COREDMS_PORT/ (PLAIN)"
  else
    status_row "coredms ferretdb" stopped ""
  fi
}

# Clients connect to MYSIMBDP_COREDMS_URL with their credentials and authMechanism=PLAIN
# (auth source $external, which drivers default to for PLAIN), e.g. with the Rust driver:
#   mongodb://USER:PASSWORD@127.0.0.1:27018/?authMechanism=PLAIN
coredms_env() {
  local pw=
  if [ -s "$MYSIMBDP_STATE/secrets/coredms-admin.password" ]; then
    pw=$(cat "$MYSIMBDP_STATE/secrets/coredms-admin.password")
  fi
  printf 'export %s=%q\n' \
    MYSIMBDP_COREDMS_URL "mongodb://127.0.0.1:$MYSIMBDP_COREDMS_PORT/" \
    MYSIMBDP_COREDMS_ADMIN_USER "$COREDMS_ADMIN_USER" \
    MYSIMBDP_COREDMS_ADMIN_PASSWORD "$pw" \
    MYSIMBDP_COREDMS_AUTH_MECHANISM PLAIN \
    MYSIMBDP_COREDMS_AUTH_SOURCE "\$external" \
    MYSIMBDP_POSTGRES_URL "postgres://$COREDMS_ADMIN_USER:$pw@127.0.0.1:$MYSIMBDP_POSTGRES_PORT/$COREDMS_DATABASE?sslmode=verify-full&sslrootcert=$(_tls_dir)/ca.crt" \
    MYSIMBDP_POSTGRES_CA_FILE "$(_tls_dir)/ca.crt"
}

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
  set -euo pipefail
  # shellcheck source=lib.sh
  . "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
  # shellcheck source=tls.sh
  . "$STACK_DIR/tls.sh"
  case "${1:-}" in
    build) coredms_build ;;
    up) coredms_up ;;
    down) coredms_down ;;
    status) coredms_status ;;
    env) coredms_env ;;
    *)
      echo "usage: bash $0 build|up|down|status|env" >&2
      exit 2
      ;;
  esac
fi
