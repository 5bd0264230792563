#!/usr/bin/env bash
# The local platform stack: a Kubernetes control plane with fake nodes and one real node
# (kubelet, containerd, runc), Kafka, coredms (FerretDB on PostgreSQL) and an S3-compatible
# object store (SeaweedFS), built from package registries and run on 127.0.0.1 and on the real
# node's bridge address.
#
#   stack.sh up       build what is missing, start what is stopped, wait until healthy,
#                     write the env file and print the status table
#   stack.sh down     stop exactly the processes the stack started
#   stack.sh wipe     stop them and delete the stack's state (data, logs, credentials)
#   stack.sh status   print the status table (exit 1 when a part is not running)
#   stack.sh env      print the path of the env file
#
# Built parts are cached under $MYSIMBDP_CACHE (default ~/.cache/mysimbdp) by version; state,
# logs and the env file live under $MYSIMBDP_STATE (default ~/.local/state/mysimbdp).
set -euo pipefail

. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
. "$STACK_DIR/deps.sh"
. "$STACK_DIR/tls.sh"
. "$STACK_DIR/kube.sh"
. "$STACK_DIR/kafka.sh"
. "$STACK_DIR/coredms.sh"
. "$STACK_DIR/node.sh"
. "$STACK_DIR/s3.sh"

write_env() {
  local tmp=$ENV_FILE.tmp
  {
    echo "# The local mysimbdp stack; written by e2e/stack/stack.sh up. Source it: . $ENV_FILE"
    echo "export MYSIMBDP_STATE=$MYSIMBDP_STATE"
    echo "export MYSIMBDP_CACHE=$MYSIMBDP_CACHE"
    echo "export MYSIMBDP_ENV_FILE=$ENV_FILE"
    kube_env
    kafka_env
    coredms_env
    node_env
    s3_env
  } >"$tmp"
  chmod 600 "$tmp"
  mv "$tmp" "$ENV_FILE"
}

status() {
  printf 'mysimbdp local stack (state %s)\n' "$MYSIMBDP_STATE"
  kube_status
  kafka_status
  coredms_status
  node_status
  s3_status
}

up() {
  local start=$SECONDS
  ensure_deps
  # Kafka's jars download while the Go parts compile.
  kafka_build >/dev/null &
  local kafka_build_pid=$!
  kube_build >/dev/null
  node_build >/dev/null
  coredms_build >/dev/null
  s3_build
  wait "$kafka_build_pid" || die "building Kafka failed (see above)"
  log "built or found every part in $((SECONDS - start))s"
  kube_up
  # Kafka's listener for pods binds to the node's bridge address: the bridge comes first, and
  # a broker started before it existed is restarted to take that listener.
  node_network_up
  if proc_alive kafka && ! node_listens "$MYSIMBDP_KAFKA_POD_PORT"; then
    log "kafka has no listener for pods on $MYSIMBDP_NODE_IP yet; restarting it"
    kafka_down
  fi
  kafka_up
  coredms_up
  s3_up
  node_up
  write_env
  status
  log "stack is up ($((SECONDS - start))s); use it with: . $ENV_FILE"
}

down() {
  # The node first: its pods are drained through the API server.
  node_down
  s3_down
  coredms_down
  kafka_down
  kube_down
  rm -f "$ENV_FILE"
}

wipe() {
  node_down_wipe
  down
  log "deleting $MYSIMBDP_STATE"
  rm -rf "$MYSIMBDP_STATE"
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  wipe) wipe ;;
  status)
    status
    status | grep -q ' stopped ' && exit 1 || exit 0
    ;;
  env) printf '%s\n' "$ENV_FILE" ;;
  *)
    sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
    ;;
esac
