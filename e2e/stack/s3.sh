# shellcheck shell=bash
# The stack's S3-compatible object store: SeaweedFS (`weed`, built from its Go module at the
# version pinned in versions.env) as one `weed server -s3` process, master, volume server, filer
# and S3 gateway together, all on 127.0.0.1. S3 authentication is on (an identities file written
# by the stack, an admin identity with generated credentials) and the platform's staging bucket
# exists from the start. Pods reach the S3 gateway, and only it, at the real node's bridge
# address through a forwarder (like node.sh's), so that pre-signed URLs signed for that address
# work from inside a pod.
#
# Sourced after lib.sh by the stack orchestrator; defines functions only:
#   s3_build    build (once, cached by version) the `weed` binary
#   s3_up       write the identities file, start weed and the pods' forwarder, create the
#               bucket, and wait until an authenticated listing of it answers and it takes
#               writes
#   s3_down     stop them (the data stays; stack-wipe removes $MYSIMBDP_STATE/s3)
#   s3_status   status rows
#   s3_env      export lines for the stack's env file
#   s3_curl     an S3 request signed with the admin's credentials (curl --aws-sigv4)
# Also runnable on its own: bash e2e/stack/s3.sh build|up|down|status|env
#
# Identities (who may use the S3 API), for per-tenant upload credentials later:
#   File    $MYSIMBDP_STATE/s3/identities.json (MYSIMBDP_S3_IDENTITIES_FILE), mode 600, given
#           to weed as -s3.config; JSON of SeaweedFS's S3ApiConfiguration:
#             {"identities": [
#               {"name": "mysimbdp-admin",
#                "credentials": [{"accessKey": "…", "secretKey": "…"}],
#                "actions": ["Admin", "Read", "List", "Tagging", "Write"]},
#               {"name": "tenant-acme",
#                "credentials": [{"accessKey": "…", "secretKey": "…"}],
#                "actions": ["Write:mysimbdp-staging/acme/incoming/*",
#                            "Read:mysimbdp-staging/acme/incoming/*",
#                            "List:mysimbdp-staging/acme/incoming/*"]}]}
#           An action alone ("Read") applies to every bucket, "Read:bucket" to one bucket and
#           "Read:bucket/prefix/*" to the keys under a prefix; "Admin" allows everything. A
#           listing is authorised against its `prefix` parameter: tenant-acme lists with
#           prefix=acme/incoming/ (and is refused without it, or with acme/ or other/).
#   Reload  weed re-reads the file on SIGHUP, without a restart (s3_reload_identities, or
#           kill -HUP "$(cut -d' ' -f1 "$MYSIMBDP_S3_WEED_PID_FILE")"): a new identity works
#           within a second, changed keys replace the old ones, and an identity that has left
#           the file is revoked with its keys. Write the file atomically (a new file renamed
#           over it). s3_up rewrites only the admin's entry and keeps every other identity,
#           so identities added by hand or by the operator survive `stack-up`.
#   Or      without the file: the AWS IAM Query API embedded in the S3 port (-s3.iam.readOnly
#           =false; service "iam", signed with the admin's keys): CreateUser, CreateAccessKey,
#           PutUserPolicy with a policy on arn:aws:s3:::mysimbdp-staging/<tenant>/incoming/*
#           (and s3:ListBucket with an s3:prefix condition), DeleteAccessKey, DeleteUser. The
#           filer keeps those identities and they apply at once, no file or signal needed:
#           the way for an operator that runs as a pod, which cannot reach this file. Only an
#           admin identity may call it (a tenant's keys get 403).
# Both were tried against this build; e2e/tests/stack_s3.rs keeps the file's path tested.
#
# What weed writes outside $MYSIMBDP_STATE/s3: gRPC Unix sockets /tmp/seaweedfs-<part>-grpc-<port>.sock
# (the path is fixed by SeaweedFS); s3_down removes those of the stack's ports.

# ---------------------------------------------------------------------------------------------
# Paths and settings

_s3_vars() {
  S3_WEED_DIR=$MYSIMBDP_CACHE/seaweedfs-$SEAWEEDFS_VERSION
  S3_STATE_DIR=$MYSIMBDP_STATE/s3
  S3_IDENTITIES_FILE=$S3_STATE_DIR/identities.json
  S3_BUCKET=${MYSIMBDP_S3_BUCKET:-mysimbdp-staging}
  S3_REGION=${MYSIMBDP_S3_REGION:-us-east-1}
  S3_ADMIN_NAME=mysimbdp-admin
  S3_NODE_IP=$MYSIMBDP_NODE_IP
  # Small volumes, never preallocated: the store holds staged test files, not a data lake.
  S3_VOLUME_SIZE_MB=${MYSIMBDP_S3_VOLUME_SIZE_MB:-64}
  # Below this much free disk the volume server turns read-only (SeaweedFS's default, 1% of the
  # disk, is gigabytes on a large shared disk; the kubelet's own eviction starts at 2%).
  S3_MIN_FREE_SPACE=${MYSIMBDP_S3_MIN_FREE_SPACE:-512MiB}
  # A soft limit for Go's collector: weed runs beside Kafka, PostgreSQL and the control plane.
  S3_MEMORY_LIMIT=${MYSIMBDP_S3_MEMORY_LIMIT:-256MiB}
}

s3_identities_file() {
  _s3_vars
  printf '%s\n' "$S3_IDENTITIES_FILE"
}

# The processes, in start order: weed (every SeaweedFS part in one process) and the forwarder
# that gives pods the S3 port at the node address.
_S3_PROCS=(s3-weed s3-pod-proxy)

# The stack's loopback ports of weed, as "flag variable" pairs (the gRPC ports are set too:
# SeaweedFS would otherwise take each HTTP port + 10000).
_s3_ports() {
  printf '%s\n' \
    "s3.port MYSIMBDP_S3_PORT" "s3.port.grpc MYSIMBDP_S3_GRPC_PORT" \
    "master.port MYSIMBDP_S3_MASTER_PORT" "master.port.grpc MYSIMBDP_S3_MASTER_GRPC_PORT" \
    "volume.port MYSIMBDP_S3_VOLUME_PORT" "volume.port.grpc MYSIMBDP_S3_VOLUME_GRPC_PORT" \
    "filer.port MYSIMBDP_S3_FILER_PORT" "filer.port.grpc MYSIMBDP_S3_FILER_GRPC_PORT"
}

# ---------------------------------------------------------------------------------------------
# Build

# `weed` alone, static and without cgo, from a wrapper module (kube.sh's) that requires the
# pinned version; the commit of the pseudo-version stands in for the one SeaweedFS's release
# build stamps. At most MYSIMBDP_BUILD_JOBS (default: one per core) packages at once.
_s3_build_weed() {
  local out=$1 src=$1/src pkg=github.com/seaweedfs/seaweedfs
  _kube_wrapper_module "$src" "$pkg" "$SEAWEEDFS_VERSION" || return 1
  cat "$src/go.mod"
  local ldflags="-s -w -X $pkg/weed/util/version.COMMIT=${MYSIMBDP_SEAWEEDFS_COMMIT:-${SEAWEEDFS_VERSION##*-}}"
  mkdir -p "$out/bin"
  (cd "$src" && _kube_go build -trimpath -ldflags "$ldflags" -o "$out/bin/weed" "$pkg/weed") || return 1
  "$out/bin/weed" version
}

s3_build() {
  _s3_vars
  command -v go >/dev/null || die "go is not installed; SeaweedFS is built from its Go module"
  cached_build seaweedfs "$SEAWEEDFS_VERSION" _s3_build_weed >/dev/null || return 1
}

# ---------------------------------------------------------------------------------------------
# Credentials and the identities file

# _s3_secret NAME GENERATOR: the secret kept in $MYSIMBDP_STATE/secrets/NAME, made by
# GENERATOR on first use (as kafka.sh's _kafka_secret).
_s3_secret() {
  local dir=$MYSIMBDP_STATE/secrets
  local file=$dir/$1
  if [ ! -s "$file" ]; then
    mkdir -p "$dir"
    chmod 700 "$dir"
    (umask 077 && "$2" >"$file.new.$$") || die "cannot generate secret $file"
    # -n: a concurrent `up` that got there first wins, and both then read the same value.
    mv -n "$file.new.$$" "$file"
    rm -f "$file.new.$$"
  fi
  chmod 600 "$file"
  cat "$file"
}

# AWS-shaped keys: a 20-character access key id and a 40-character secret.
_s3_gen_access_key_id() { printf 'MSB%s\n' "$(openssl rand -hex 9 | tr a-f A-F | cut -c1-17)"; }
_s3_gen_secret_key() { openssl rand -hex 20; }

_s3_admin_access_key_id() { _s3_secret s3-admin.access-key-id _s3_gen_access_key_id; }
_s3_admin_secret_key() { _s3_secret s3-admin.secret-access-key _s3_gen_secret_key; }

# Writes the identities file with the admin's current keys, keeping every other identity the
# file already has (added by hand, by a test or by the operator). True when the file changed.
_s3_write_identities() {
  local file=$S3_IDENTITIES_FILE key secret
  key=$(_s3_admin_access_key_id)
  secret=$(_s3_admin_secret_key)
  mkdir -p "$S3_STATE_DIR"
  (umask 077 && S3_ADMIN_NAME=$S3_ADMIN_NAME S3_KEY=$key S3_SECRET=$secret python3 - "$file" >"$file.new.$$" <<'PY'
import json, os, sys
path = sys.argv[1]
others = []
if os.path.exists(path):
    with open(path) as f:
        current = json.load(f)
    others = [i for i in current.get("identities", []) if i.get("name") != os.environ["S3_ADMIN_NAME"]]
admin = {
    "name": os.environ["S3_ADMIN_NAME"],
    "credentials": [{"accessKey": os.environ["S3_KEY"], "secretKey": os.environ["S3_SECRET"]}],
    "actions": ["Admin", "Read", "List", "Tagging", "Write"],
}
json.dump({"identities": [admin] + others}, sys.stdout, indent=2)
print()
PY
  ) || {
    rm -f "$file.new.$$"
    die "s3: cannot write $file (is it valid JSON?)"
  }
  if cmp -s "$file.new.$$" "$file"; then
    rm -f "$file.new.$$"
    return 1
  fi
  mv "$file.new.$$" "$file"
}

# security.toml in weed's -config_dir: JWT keys (kept in $MYSIMBDP_STATE/secrets) so that the
# filer's own HTTP API takes reads and writes only with a token the S3 gateway signs, the
# filer's IAM gRPC service only with an admin token, and volume servers writes only with a
# token the master signs. Without them, any local process could read and write the bucket's
# objects through the filer (loopback only, but around S3's authentication). Left open on
# loopback, as in SeaweedFS's default: reads of a volume server by file id, and the other gRPC
# services (mTLS would close them). weed reads it at start only.
_s3_security_toml() {
  local name
  echo "# Written by e2e/stack/s3.sh on every start; edits are overwritten."
  for name in signing filer_signing filer_signing.read; do
    printf '[jwt.%s]\nkey = "%s"\nexpires_after_seconds = 10\n\n' "$name" "$(_s3_secret "s3-jwt-${name/./-}.key" _s3_gen_secret_key)"
  done
}

# _s3_write FILE CONTENT-FUNCTION: (re)writes FILE, mode 600; true when its content changed.
_s3_write() {
  local file=$1 fn=$2
  (umask 077 && "$fn" >"$file.new.$$") || {
    rm -f "$file.new.$$"
    die "s3: cannot write $file"
  }
  if cmp -s "$file.new.$$" "$file"; then
    rm -f "$file.new.$$"
    return 1
  fi
  mv "$file.new.$$" "$file"
}

# s3_reload_identities: weed re-reads the identities file (SIGHUP; no restart).
s3_reload_identities() {
  proc_alive s3-weed || return 0
  kill -HUP "$(proc_pid s3-weed)" || die "s3: cannot signal weed to reload $S3_IDENTITIES_FILE"
}

# ---------------------------------------------------------------------------------------------
# Clients and health checks

# s3_curl [CURL ARGS...] PATH: an S3 request to the local endpoint signed (SigV4) with the
# admin's keys. The keys reach curl through a config file on a pipe, not the command line.
s3_curl() {
  _s3_vars
  local path=${*: -1}
  curl -sS --max-time 10 --config <(printf 'user = "%s:%s"\n' "$(_s3_admin_access_key_id)" "$(_s3_admin_secret_key)") \
    --aws-sigv4 "aws:amz:$S3_REGION:s3" "${@:1:$#-1}" "http://127.0.0.1:$MYSIMBDP_S3_PORT$path"
}

_s3_http_code() { s3_curl -o /dev/null -w '%{http_code}' "$@" 2>/dev/null; }

# The gateway answers on its port (to anyone: an unsigned request gets 403).
_s3_answers() {
  local code
  code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 3 "http://127.0.0.1:$MYSIMBDP_S3_PORT/") || return 1
  [ "$code" != 000 ]
}

# The volume server has registered with the master, so writes find a volume to grow.
_s3_volume_registered() {
  curl -fsS --max-time 3 "http://127.0.0.1:$MYSIMBDP_S3_MASTER_PORT/dir/status" 2>/dev/null |
    grep -qF "127.0.0.1:$MYSIMBDP_S3_VOLUME_PORT"
}

# The bucket exists (created now, or already ours): 200, or 409 BucketAlreadyOwnedByYou.
_s3_bucket_created() {
  case $(_s3_http_code -X PUT "/$S3_BUCKET") in
    200 | 409) return 0 ;;
  esac
  return 1
}

# Health: an authenticated listing of the bucket.
_s3_bucket_lists() {
  [ "$(_s3_http_code "/$S3_BUCKET?list-type=2&max-keys=1")" = 200 ]
}

# Writes can go through: the master assigns a file id in the bucket's collection (growing its
# first volumes on a fresh start). A master that restarts over existing volumes assigns none
# until its warm-up (three heartbeat pulses, 15 s) has passed, and an S3 write meanwhile would
# wait. The id assigned here is never written: nothing is left behind.
_s3_writable() {
  curl -fsS --max-time 5 "http://127.0.0.1:$MYSIMBDP_S3_MASTER_PORT/dir/assign?collection=$S3_BUCKET" 2>/dev/null |
    grep -q '"fid"'
}

_s3_pod_proxy_ready() {
  local code
  code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 3 "http://$S3_NODE_IP:$MYSIMBDP_S3_PORT/") || return 1
  [ "$code" != 000 ]
}

# ---------------------------------------------------------------------------------------------
# Lifecycle

# _s3_require_free_loopback PORT WHAT VAR: like lib.sh's require_free_port, for 127.0.0.1 only:
# the S3 port is also taken on the node address, by the pods' forwarder.
_s3_require_free_loopback() {
  local port=$1 addr
  while read -r _ _ _ addr _; do
    case $addr in
      "127.0.0.1:$port" | "[::ffff:127.0.0.1]:$port" | "0.0.0.0:$port" | "*:$port" | "[::]:$port")
        require_free_port "$@"
        ;;
    esac
  done < <(ss -Hltn "sport = :$port" 2>/dev/null)
}

# The weed command line, one argument per line (kept in $S3_STATE_DIR/weed.args: a running
# weed whose command line changed, e.g. a new version, is restarted by s3_up).
# -config_dir: SeaweedFS looks for its toml files there first (then in ./, ~/.seaweedfs,
# /etc/seaweedfs): the stack's security.toml, and no master.toml or filer.toml, so the filer
# keeps its metadata in leveldb under the master's directory. -master.peers=none: a single
# master, which takes the lead at once on a restart instead of after an election timeout.
# Off: telemetry, the Iceberg and Lance catalogue listeners, metrics, automatic buckets, and the
# Unix sockets under /tmp that can be moved (the gateway's and the filer's go to run/).
_s3_weed_args() {
  local flag var
  printf '%s\n' env "GOMEMLIMIT=$S3_MEMORY_LIMIT" "$S3_WEED_DIR/bin/weed" -logtostderr \
    "-config_dir=$S3_STATE_DIR" server -ip=127.0.0.1 -ip.bind=127.0.0.1 \
    "-dir=$S3_STATE_DIR/data" "-master.dir=$S3_STATE_DIR/meta" -master.peers=none
  while read -r flag var; do
    printf -- '-%s=%s\n' "$flag" "${!var}"
  done < <(_s3_ports)
  printf '%s\n' "-master.volumeSizeLimitMB=$S3_VOLUME_SIZE_MB" -master.volumePreallocate=false \
    -master.telemetry=false -master.defaultReplication=000 -volume.max=0 \
    -volume.preStopSeconds=0 -volume.index=memory "-volume.minFreeSpace=$S3_MIN_FREE_SPACE" \
    "-filer.localSocket=$S3_STATE_DIR/run/filer.sock" \
    -s3 "-s3.config=$S3_IDENTITIES_FILE" "-s3.localSocket=$S3_STATE_DIR/run/s3.sock" \
    -s3.port.iceberg=0 -s3.port.lance=0 -s3.autoCreateBucket=false -s3.iam.readOnly=false
}

_s3_start_weed() {
  local flag var
  while read -r flag var; do
    _s3_require_free_loopback "${!var}" "SeaweedFS ($flag)" "$var"
  done < <(_s3_ports)
  mkdir -p "$S3_STATE_DIR/data" "$S3_STATE_DIR/meta" "$S3_STATE_DIR/run"
  local -a cmd
  mapfile -t cmd <"$S3_STATE_DIR/weed.args"
  log "s3: starting SeaweedFS $SEAWEEDFS_VERSION on 127.0.0.1:$MYSIMBDP_S3_PORT (log: $LOG_DIR/seaweedfs.log)"
  (cd "$S3_STATE_DIR" && PROC_EXE=$S3_WEED_DIR/bin/weed proc_start s3-weed "$LOG_DIR/seaweedfs.log" "${cmd[@]}")
}

s3_up() {
  _s3_vars
  local start=$SECONDS
  s3_build || return 1
  command -v socat >/dev/null || die "socat is not installed (Debian package socat; make deps installs it)"
  mkdir -p "$S3_STATE_DIR"
  chmod 700 "$S3_STATE_DIR"
  local restart=0 changed=0
  _s3_write "$S3_STATE_DIR/security.toml" _s3_security_toml && restart=1
  _s3_write "$S3_STATE_DIR/weed.args" _s3_weed_args && restart=1
  if [ "$restart" = 1 ] && proc_alive s3-weed; then
    log "s3: weed's command line or security.toml changed; restarting it"
    proc_stop s3-weed 30
  fi
  _s3_write_identities && changed=1
  if proc_alive s3-weed; then
    log "s3: weed is already running (pid $(proc_pid s3-weed))"
    if [ "$changed" = 1 ]; then
      log "s3: $S3_IDENTITIES_FILE changed; weed reloads it"
      s3_reload_identities
    fi
  else
    _s3_start_weed
  fi
  wait_until "the S3 gateway on 127.0.0.1:$MYSIMBDP_S3_PORT" 90 "$LOG_DIR/seaweedfs.log" s3-weed _s3_answers
  wait_until "SeaweedFS's volume server" 60 "$LOG_DIR/seaweedfs.log" s3-weed _s3_volume_registered
  wait_until "the bucket $S3_BUCKET" 60 "$LOG_DIR/seaweedfs.log" s3-weed _s3_bucket_created
  wait_until "an authenticated listing of $S3_BUCKET" 60 "$LOG_DIR/seaweedfs.log" s3-weed _s3_bucket_lists
  wait_until "SeaweedFS to take writes in $S3_BUCKET" 90 "$LOG_DIR/seaweedfs.log" s3-weed _s3_writable

  # Pods: the S3 port, and nothing else of SeaweedFS's, at the node address. The Host header
  # passes through unchanged, so URLs signed for that address verify.
  ip -4 -o addr show | awk '{split($4, a, "/"); print a[1]}' | grep -qxF "$S3_NODE_IP" ||
    die "s3: the node address $S3_NODE_IP is not on this machine yet; bring the bridge up first (node_network_up, or: bash $STACK_DIR/stack.sh up)"
  if ! proc_alive s3-pod-proxy; then
    if node_listens "$MYSIMBDP_S3_PORT"; then
      die "port $MYSIMBDP_S3_PORT on $S3_NODE_IP, needed by the S3 gateway for pods, is already in use; stop that process or choose another port with MYSIMBDP_S3_PORT=<port>"
    fi
    PROC_EXE=socat proc_start s3-pod-proxy "$LOG_DIR/s3-pod-proxy.log" \
      socat -lh "TCP4-LISTEN:$MYSIMBDP_S3_PORT,bind=$S3_NODE_IP,reuseaddr,fork" "TCP4:127.0.0.1:$MYSIMBDP_S3_PORT"
  fi
  wait_until "the S3 gateway at $S3_NODE_IP:$MYSIMBDP_S3_PORT" 30 "$LOG_DIR/s3-pod-proxy.log" s3-pod-proxy \
    _s3_pod_proxy_ready
  log "s3: ready in $((SECONDS - start))s: http://127.0.0.1:$MYSIMBDP_S3_PORT (pods: http://$S3_NODE_IP:$MYSIMBDP_S3_PORT), bucket $S3_BUCKET"
}

s3_down() {
  _s3_vars
  proc_stop s3-pod-proxy
  proc_stop s3-weed 30
  local flag var
  while read -r flag var; do
    case $flag in
      *.grpc) rm -f /tmp/seaweedfs-"${flag%%.*}"-grpc-"${!var}".sock ;;
    esac
  done < <(_s3_ports)
}

s3_status() {
  _s3_vars
  if [ -f "$S3_WEED_DIR/.complete" ]; then
    status_row "seaweedfs build" built "$S3_WEED_DIR"
  else
    status_row "seaweedfs build" missing "run: bash $STACK_DIR/s3.sh build"
  fi
  if proc_alive s3-weed; then
    status_row "s3 seaweedfs" running "pid $(proc_pid s3-weed), http://127.0.0.1:$MYSIMBDP_S3_PORT s3://$S3_BUCKET (SigV4)"
  else
    status_row "s3 seaweedfs" stopped "data: $S3_STATE_DIR"
  fi
  if proc_alive s3-pod-proxy; then
    status_row "s3-pod-proxy" running "pid $(proc_pid s3-pod-proxy)  http://$S3_NODE_IP:$MYSIMBDP_S3_PORT -> 127.0.0.1"
  else
    status_row "s3-pod-proxy" stopped "http://$S3_NODE_IP:$MYSIMBDP_S3_PORT -> 127.0.0.1"
  fi
}

# Clients sign with the admin's keys for region MYSIMBDP_S3_REGION, path-style, over plain HTTP
# (e.g. object_store's AmazonS3Builder with_endpoint + with_allow_http(true), or the AWS
# variables AWS_ENDPOINT, AWS_ALLOW_HTTP=true, AWS_REGION, AWS_ACCESS_KEY_ID,
# AWS_SECRET_ACCESS_KEY). URLs handed to pods are signed for MYSIMBDP_POD_S3_ENDPOINT.
s3_env() {
  _s3_vars
  local key= secret=
  [ -s "$MYSIMBDP_STATE/secrets/s3-admin.access-key-id" ] && key=$(cat "$MYSIMBDP_STATE/secrets/s3-admin.access-key-id")
  [ -s "$MYSIMBDP_STATE/secrets/s3-admin.secret-access-key" ] && secret=$(cat "$MYSIMBDP_STATE/secrets/s3-admin.secret-access-key")
  printf 'export %s=%q\n' \
    MYSIMBDP_S3_ENDPOINT "http://127.0.0.1:$MYSIMBDP_S3_PORT" \
    MYSIMBDP_POD_S3_ENDPOINT "http://$S3_NODE_IP:$MYSIMBDP_S3_PORT" \
    MYSIMBDP_S3_REGION "$S3_REGION" \
    MYSIMBDP_S3_BUCKET "$S3_BUCKET" \
    MYSIMBDP_S3_ACCESS_KEY_ID "$key" \
    MYSIMBDP_S3_SECRET_ACCESS_KEY "$secret" \
    MYSIMBDP_S3_STAGING_URL "s3://$S3_BUCKET" \
    MYSIMBDP_S3_IDENTITIES_FILE "$S3_IDENTITIES_FILE" \
    MYSIMBDP_S3_WEED_PID_FILE "$(pid_file s3-weed)"
}

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
  set -euo pipefail
  # shellcheck source=lib.sh
  . "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
  # shellcheck source=kube.sh
  . "$STACK_DIR/kube.sh"
  # shellcheck source=node.sh
  . "$STACK_DIR/node.sh"
  case ${1:-} in
    build) s3_build ;;
    up)
      node_network_up
      s3_up
      ;;
    down) s3_down ;;
    status) s3_status ;;
    env) s3_env ;;
    *)
      echo "usage: $0 build|up|down|status|env" >&2
      exit 2
      ;;
  esac
fi
