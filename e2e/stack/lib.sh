# shellcheck shell=bash
# Shared helpers of the local platform stack: directories and ports, logging, waiting on a
# condition with a deadline, pid-file process control and atomic, version-keyed cached builds.
# Sourced by every other script in this folder; it defines functions and variables only.

STACK_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_DIR=$(cd "$STACK_DIR/../.." && pwd)
# shellcheck source=versions.env
. "$STACK_DIR/versions.env"

# Built artifacts, keyed by component and version; shared by every checkout of the repo.
MYSIMBDP_CACHE=${MYSIMBDP_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/mysimbdp}
# Data, logs, pid files and the env file of the running stack.
MYSIMBDP_STATE=${MYSIMBDP_STATE:-${XDG_STATE_HOME:-$HOME/.local/state}/mysimbdp}
RUN_DIR=$MYSIMBDP_STATE/run
LOG_DIR=$MYSIMBDP_STATE/logs
ENV_FILE=$MYSIMBDP_STATE/env

# Loopback ports; each can be overridden from the environment.
MYSIMBDP_ETCD_PORT=${MYSIMBDP_ETCD_PORT:-23790}
MYSIMBDP_ETCD_PEER_PORT=${MYSIMBDP_ETCD_PEER_PORT:-23800}
MYSIMBDP_APISERVER_PORT=${MYSIMBDP_APISERVER_PORT:-16443}
MYSIMBDP_CONTROLLER_MANAGER_PORT=${MYSIMBDP_CONTROLLER_MANAGER_PORT:-16444}
MYSIMBDP_SCHEDULER_PORT=${MYSIMBDP_SCHEDULER_PORT:-16445}
MYSIMBDP_KWOK_PORT=${MYSIMBDP_KWOK_PORT:-16446}
MYSIMBDP_KAFKA_PORT=${MYSIMBDP_KAFKA_PORT:-19092}
MYSIMBDP_KAFKA_CONTROLLER_PORT=${MYSIMBDP_KAFKA_CONTROLLER_PORT:-19093}
MYSIMBDP_KAFKA_INTERNAL_PORT=${MYSIMBDP_KAFKA_INTERNAL_PORT:-19094}
MYSIMBDP_KAFKA_SSL_PORT=${MYSIMBDP_KAFKA_SSL_PORT:-19096}
MYSIMBDP_POSTGRES_PORT=${MYSIMBDP_POSTGRES_PORT:-15432}
MYSIMBDP_COREDMS_PORT=${MYSIMBDP_COREDMS_PORT:-27018}

# The real node (node.sh): a bridge whose host address is the node's IP, where pods reach the
# API server, Kafka and coredms (on their ports above; Kafka on a listener of its own, as it
# advertises addresses). A private range of this machine's own: nothing forwards it anywhere.
MYSIMBDP_NODE_CIDR=${MYSIMBDP_NODE_CIDR:-10.244.250.0/24}
MYSIMBDP_NODE_IP=${MYSIMBDP_NODE_IP:-${MYSIMBDP_NODE_CIDR%.*}.1}
MYSIMBDP_NODE_BRIDGE=${MYSIMBDP_NODE_BRIDGE:-mysimbdp0}
MYSIMBDP_NODE_NAME=${MYSIMBDP_NODE_NAME:-mysimbdp-node}
MYSIMBDP_KUBELET_PORT=${MYSIMBDP_KUBELET_PORT:-10250}
MYSIMBDP_KUBELET_HEALTHZ_PORT=${MYSIMBDP_KUBELET_HEALTHZ_PORT:-16448}
MYSIMBDP_KAFKA_POD_PORT=${MYSIMBDP_KAFKA_POD_PORT:-19099}

# The object store (s3.sh): SeaweedFS's S3 gateway and its master, volume server and filer,
# each with a gRPC port, all on 127.0.0.1; pods reach the S3 port alone, at the node address.
MYSIMBDP_S3_PORT=${MYSIMBDP_S3_PORT:-18333}
MYSIMBDP_S3_GRPC_PORT=${MYSIMBDP_S3_GRPC_PORT:-18334}
MYSIMBDP_S3_MASTER_PORT=${MYSIMBDP_S3_MASTER_PORT:-18335}
MYSIMBDP_S3_MASTER_GRPC_PORT=${MYSIMBDP_S3_MASTER_GRPC_PORT:-18336}
MYSIMBDP_S3_VOLUME_PORT=${MYSIMBDP_S3_VOLUME_PORT:-18337}
MYSIMBDP_S3_VOLUME_GRPC_PORT=${MYSIMBDP_S3_VOLUME_GRPC_PORT:-18338}
MYSIMBDP_S3_FILER_PORT=${MYSIMBDP_S3_FILER_PORT:-18339}
MYSIMBDP_S3_FILER_GRPC_PORT=${MYSIMBDP_S3_FILER_GRPC_PORT:-18340}

mkdir -p "$MYSIMBDP_CACHE" "$RUN_DIR" "$LOG_DIR"

log() { printf '[stack %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() {
  printf '[stack %s] error: %s\n' "$(date +%H:%M:%S)" "$*" >&2
  exit 1
}

# Prints the last lines of a log file, framed, to stderr.
log_tail() {
  local file=$1 lines=${2:-40}
  if [ -s "$file" ]; then
    printf -- '----- last %s lines of %s -----\n' "$lines" "$file" >&2
    tail -n "$lines" "$file" >&2
    printf -- '----- end of %s -----\n' "$file" >&2
  else
    printf '(log %s is empty or missing)\n' "$file" >&2
  fi
}

# cached_build COMPONENT VERSION BUILDER
# Runs `BUILDER <dir>` into a fresh partial directory and renames it to
# $MYSIMBDP_CACHE/COMPONENT-VERSION only when it succeeds, so an interrupted build is never
# taken for a finished one. A directory without the completion marker is removed and rebuilt.
# Concurrent callers wait for each other on a lock. Prints the cache directory on stdout.
cached_build() {
  local component=$1 version=$2 builder=$3
  local dir=$MYSIMBDP_CACHE/$component-$version
  local blog=$MYSIMBDP_CACHE/logs/$component-$version.build.log
  mkdir -p "$MYSIMBDP_CACHE/logs"
  (
    flock 9
    if [ -f "$dir/.complete" ]; then
      exit 0
    fi
    if [ -e "$dir" ]; then
      log "removing half-built cache $dir"
      rm -rf "$dir"
    fi
    rm -rf "$dir".partial.*
    local tmp=$dir.partial.$$
    mkdir -p "$tmp"
    log "building $component $version (log: $blog)"
    local start=$SECONDS
    if ! "$builder" "$tmp" >"$blog" 2>&1; then
      log_tail "$blog" 60
      rm -rf "$tmp"
      die "building $component $version failed; the full log is $blog"
    fi
    date -u +%FT%TZ >"$tmp/.complete"
    mv "$tmp" "$dir"
    log "built $component $version in $((SECONDS - start))s"
  ) 9>"$MYSIMBDP_CACHE/.lock-$component" || exit 1
  printf '%s\n' "$dir"
}

# port_owner PORT: prints "pid/command" of the process listening on 127.0.0.1:PORT (or any
# address), or nothing when the port is free.
# Listeners on PORT that a loopback service would collide with: on 127.0.0.1, ::1 or every
# address. One on another address (the real node's bridge forwarders) does not.
_loopback_listeners() {
  ss -Hltnp "sport = :$1" 2>/dev/null | awk '$4 ~ /^(127\.0\.0\.1|\[::ffff:127\.0\.0\.1\]|0\.0\.0\.0|\*|\[::\]|\[::1\]):/'
}

port_owner() {
  _loopback_listeners "$1" | sed -n 's/.*users:(("\([^"]*\)",pid=\([0-9]*\).*/\2\/\1/p' | head -n 1
}

port_in_use() {
  [ -n "$(_loopback_listeners "$1")" ]
}

# require_free_port PORT WHAT VAR: fails with a message that names the port, its user and the
# variable that moves it, unless the port is free.
require_free_port() {
  local port=$1 what=$2 var=$3
  if port_in_use "$port"; then
    local owner
    owner=$(port_owner "$port")
    die "port $port, needed by $what, is already in use${owner:+ by pid ${owner%%/*} (${owner#*/})}; stop that process or choose another port with $var=<port>"
  fi
}

pid_file() { printf '%s/%s.pid\n' "$RUN_DIR" "$1"; }

# proc_start_time PID: the kernel's start time of PID (clock ticks since boot), which stays
# the same across exec and differs for a reused pid.
proc_start_time() {
  local stat
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
  # Field 22; the command name (field 2) may hold spaces, so count from the last ')'.
  set -- ${stat##*) }
  printf '%s\n' "${20}"
}

# proc_alive NAME: true when NAME's pid file names a live process that is the one started
# (same pid and start time). A pid file whose process is gone or was reused is removed (stale).
proc_alive() {
  local name=$1 pf pid started exe now
  pf=$(pid_file "$name")
  [ -f "$pf" ] || return 1
  read -r pid started exe <"$pf" || true
  now=$(proc_start_time "${pid:-none}") || now=
  if [ -n "$now" ] && [ "$now" = "${started:-}" ]; then
    return 0
  fi
  log "removing stale pid file of $name (pid ${pid:-?} is no longer the ${exe:-process} it started)"
  rm -f "$pf"
  return 1
}

proc_pid() {
  local pid _rest
  read -r pid _rest <"$(pid_file "$1")"
  printf '%s\n' "$pid"
}

# proc_start NAME LOGFILE CMD...: starts CMD detached in its own session, output appended to
# LOGFILE, and records its pid, start time and binary. Does nothing when NAME is already
# running. CMD may be a wrapper that execs the real server (setpriv, env...): the pid stays;
# set PROC_EXE to name the server's binary in messages.
proc_start() {
  local name=$1 logfile=$2
  shift 2
  if proc_alive "$name"; then
    log "$name is already running (pid $(proc_pid "$name"))"
    return 0
  fi
  mkdir -p "$(dirname "$logfile")"
  printf '\n===== %s starting %s =====\n' "$(date -u +%FT%TZ)" "$name" >>"$logfile"
  # With job control on (set -m) a background job leads its own process group, and setsid
  # then forks, so $! would name a parent that exits at once. Turn it off around the start.
  # fd 9 is closed so that a daemon never keeps a caller's lock (cached_build's) held.
  local monitor=0
  case $- in *m*) monitor=1 && set +m ;; esac
  setsid "$@" >>"$logfile" 2>&1 </dev/null 9>&- &
  local pid=$!
  # Not a job of the calling shell: no "Done"/"Terminated" notices when it ends.
  disown "$pid" 2>/dev/null || true
  [ "$monitor" = 1 ] && set -m
  printf '%s %s %s\n' "$pid" "$(proc_start_time "$pid" || echo gone)" "${PROC_EXE:-$1}" >"$(pid_file "$name")"
}

# _proc_running PID: PID exists and has not exited. An exited process of ours is a zombie until
# its parent reaps it, and a daemon's parent is whatever init this machine has, which may take
# seconds to do so.
_proc_running() {
  local stat
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
  set -- ${stat##*) }
  [ "$1" != Z ]
}

# proc_stop NAME [TIMEOUT]: stops NAME's process group (TERM, then KILL after TIMEOUT seconds)
# and removes its pid file. Only processes this stack started are touched.
proc_stop() {
  local name=$1 timeout=${2:-20} pid
  if ! proc_alive "$name"; then
    rm -f "$(pid_file "$name")"
    return 0
  fi
  pid=$(proc_pid "$name")
  kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
  local deadline=$((SECONDS + timeout))
  while _proc_running "$pid" && [ $SECONDS -lt $deadline ]; do
    sleep 0.2
  done
  if _proc_running "$pid"; then
    log "$name (pid $pid) did not stop within ${timeout}s; killing it"
    kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$(pid_file "$name")"
  log "stopped $name"
}

# wait_until WHAT TIMEOUT LOGFILE PROC CMD...: polls CMD until it succeeds. Fails early when
# PROC (a proc_start name, or "-") has died, and at the deadline; both print LOGFILE's tail.
wait_until() {
  local what=$1 timeout=$2 logfile=$3 proc=$4
  shift 4
  local deadline=$((SECONDS + timeout))
  until "$@" >/dev/null 2>&1; do
    if [ "$proc" != "-" ] && ! proc_alive "$proc"; then
      log_tail "$logfile"
      die "$what: process $proc exited before it became healthy"
    fi
    if [ $SECONDS -ge $deadline ]; then
      log_tail "$logfile"
      die "$what did not become healthy within ${timeout}s"
    fi
    sleep 0.3
  done
}

# status_row NAME STATE DETAIL: one line of the status table.
status_row() { printf '  %-24s %-8s %s\n' "$1" "$2" "$3"; }
