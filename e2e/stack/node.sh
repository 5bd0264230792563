# shellcheck shell=bash
# The stack's real Kubernetes node: containerd with its runc shim, Debian's runc and CNI
# plugins, and the kubelet of the control plane's release (built with it, see kube.sh). Pods
# run for real here, beside KWOK's fake nodes, on a bridge network whose host address is given
# by the stack; that address is the node's IP, and the API server, Kafka and coredms are there
# too (Kafka's own listener for pods, forwarders to the loopback-only servers), so that pods
# reach them without anything leaving this machine. No registry: the sandbox image is our own
# pause program and images are imported with `ctr import` (images.sh builds the platform's).
#
# Sourced after lib.sh and kube.sh by the stack orchestrator; defines functions only:
#   node_build         build (once, cached by version) containerd, its shim and ctr, and the
#                      pause and toolbox images
#   node_network_up    the bridge and its address (before Kafka, which listens there)
#   node_up            forwarders, containerd, images, the kubelet; waits until the node is Ready
#   node_down          drain the node's pods, stop the kubelet, every container and containerd
#                      (node_down_wipe also removes their state and the host paths they wrote)
#   node_status        one status row per process, and the node's readiness
#   node_env           export lines for the stack's env file
#   node_import_image  import an OCI archive into the node's containerd
# Also runnable on its own: bash e2e/stack/node.sh build|up|down|wipe|status|env
#
# What the node writes outside $MYSIMBDP_STATE (fixed by containerd, the kubelet and CNI):
# /run/containerd (sockets, task state, pods' network namespaces), /var/lib/cni/*/mysimbdp*,
# /var/log/pods, /var/log/containers, the kubepods cgroups and the bridge; stack-wipe removes
# them. The kubelet also sets a few kernel settings (_NODE_SYSCTLS); stack-down restores them.

_node_vars() {
  _kube_vars
  NODE_CONTAINERD_DIR=$MYSIMBDP_CACHE/containerd-$CONTAINERD_VERSION
  NODE_STATE_DIR=$MYSIMBDP_STATE/node
  NODE_NAME=$MYSIMBDP_NODE_NAME
  NODE_IP=$MYSIMBDP_NODE_IP
  NODE_PREFIX=${MYSIMBDP_NODE_CIDR#*/}
  NODE_BRIDGE=$MYSIMBDP_NODE_BRIDGE
  # Pods only schedule here when they ask to (toleration and node selector): tests and apps
  # written for KWOK's fake nodes keep landing there. An empty MYSIMBDP_NODE_TAINT registers
  # the node without it.
  NODE_LABEL=type=real
  NODE_TAINT=${MYSIMBDP_NODE_TAINT-mysimbdp.io/node=real:NoSchedule}
  NODE_CNI_NETWORK=mysimbdp
  NODE_CNI_BIN_DIR=/usr/lib/cni
  # containerd keeps its images and snapshots with the stack's state; what it keeps under /run
  # (sockets, task state, the pods' network namespaces) is at its fixed default place, as its
  # shims find their sockets there whatever the configuration says.
  NODE_CONTAINERD_ROOT=$NODE_STATE_DIR/containerd
  NODE_CONTAINERD_RUN=/run/containerd
  NODE_CONTAINERD_SOCK=$NODE_CONTAINERD_RUN/containerd.sock
  NODE_KUBELET_DIR=$NODE_STATE_DIR/kubelet
  NODE_KUBECONFIG=$KUBE_CONFIGS_DIR/kubelet.kubeconfig
  # Images of the stack's own (no registry): named by the content of their sources, so that a
  # change makes a new image beside the old one.
  NODE_PAUSE_SRC=$STACK_DIR/images/pause.c
  NODE_PAUSE_IMAGE=mysimbdp.local/pause:$(sha256sum "$NODE_PAUSE_SRC" | cut -c1-12)
  NODE_TOOLBOX_IMAGE=mysimbdp.local/toolbox:$(_node_busybox_version)
}

# Host paths the kubelet writes whatever its configuration; stack-wipe removes them.
_NODE_FIXED_PATHS=(/var/log/pods /var/log/containers)
# Kernel settings the kubelet changes on start (unless protectKernelDefaults, with which it
# refuses to start when they differ); the stack puts the machine's own values back on down.
_NODE_SYSCTLS=(vm.overcommit_memory vm.panic_on_oom kernel.panic kernel.panic_on_oops)
# The processes of the node, in start order.
_NODE_PROCS=(node-apiserver-proxy node-coredms-proxy node-postgres-proxy node-containerd node-kubelet)

_node_busybox_version() {
  local v
  v=$(dpkg-query -W -f '${Version}' busybox-static 2>/dev/null) || v=missing
  v=${v#*:}
  printf '%s\n' "${v//[^A-Za-z0-9_.-]/_}"
}

_node_ctr() { "$NODE_CONTAINERD_DIR/bin/ctr" --address "$NODE_CONTAINERD_SOCK" "$@"; }

# ---------------------------------------------------------------------------------------------
# Builds

# containerd's daemon, ctr and the runc shim, static and without cgo, with the tags of
# containerd's own static release (btrfs needs cgo, so its snapshotter is left out). The shim
# drops gRPC like the release's. The wrapper module is kube.sh's.
_node_build_containerd() {
  local out=$1 src=$1/src pkg=github.com/containerd/containerd/v2
  _kube_wrapper_module "$src" "$pkg" "$CONTAINERD_VERSION" || return 1
  cat "$src/go.mod"
  local ldflags="-s -w -X $pkg/version.Version=$CONTAINERD_VERSION -X $pkg/version.Package=$pkg"
  ldflags+=" -X $pkg/version.Revision=${MYSIMBDP_CONTAINERD_REVISION:-$CONTAINERD_VERSION}"
  local tags=urfave_cli_no_docs,no_btrfs,static_build,netgo,osusergo
  mkdir -p "$out/bin"
  (cd "$src" && _kube_go build -trimpath -tags "$tags" -ldflags "$ldflags" -o "$out/bin/" \
    "$pkg/cmd/containerd" "$pkg/cmd/ctr") || return 1
  (cd "$src" && _kube_go build -trimpath -tags "$tags,no_grpc" -ldflags "$ldflags" \
    -o "$out/bin/" "$pkg/cmd/containerd-shim-runc-v2") || return 1
  "$out/bin/containerd" --version && "$out/bin/ctr" --version
}

# The sandbox image: our pause program (images/pause.c), static, alone in its image.
_node_build_pause() {
  local out=$1
  command -v gcc >/dev/null || {
    echo "gcc is needed to build the pause program"
    return 1
  }
  gcc -static -Os -s -Wall -Wextra -Werror -o "$out/pause" "$NODE_PAUSE_SRC" || return 1
  python3 "$STACK_DIR/images/oci-image.py" --out "$out/image.tar" --name "$NODE_PAUSE_IMAGE" \
    --entrypoint /pause --user 65535:65535 --static "$out/pause:/pause" >"$out/digest" || return 1
  cat "$out/digest"
}

# A toolbox image for tests and debugging: Debian's static busybox with its applets.
_node_build_toolbox() {
  local out=$1 applet
  local -a links=()
  for applet in $(/bin/busybox --list); do
    [ "$applet" = busybox ] || links+=(--link "bin/$applet:busybox")
  done
  python3 "$STACK_DIR/images/oci-image.py" --out "$out/image.tar" --name "$NODE_TOOLBOX_IMAGE" \
    --entrypoint /bin/sh --static /bin/busybox:/bin/busybox "${links[@]}" >"$out/digest" || return 1
  cat "$out/digest"
}

node_build() {
  _node_vars
  command -v go >/dev/null || die "go is not installed; containerd is built from Go modules"
  cached_build containerd "$CONTAINERD_VERSION" _node_build_containerd >/dev/null || return 1
  cached_build pause "${NODE_PAUSE_IMAGE##*:}" _node_build_pause >/dev/null || return 1
  cached_build toolbox "${NODE_TOOLBOX_IMAGE##*:}" _node_build_toolbox >/dev/null || return 1
}

# ---------------------------------------------------------------------------------------------
# The bridge

# node_network_up: the bridge with the node's address. Made before Kafka and coredms start,
# since their listeners for pods bind to that address. IPv4 forwarding stays as it is (off):
# pods reach this machine's addresses on the bridge and nothing beyond it.
node_network_up() {
  _node_vars
  local holder
  holder=$(ip -4 -o addr show | awk -v ip="$NODE_IP" '{split($4, a, "/"); if (a[1] == ip) print $2}' | head -n 1)
  if [ -n "$holder" ] && [ "$holder" != "$NODE_BRIDGE" ]; then
    die "the node address $NODE_IP is already on interface $holder; choose another range with MYSIMBDP_NODE_CIDR=<a.b.c.0/24> and MYSIMBDP_NODE_IP=<a.b.c.1>"
  fi
  if ! ip link show "$NODE_BRIDGE" >/dev/null 2>&1; then
    log "node: creating bridge $NODE_BRIDGE with $NODE_IP/$NODE_PREFIX"
    ip link add "$NODE_BRIDGE" type bridge || die "cannot create the bridge $NODE_BRIDGE (root is needed)"
  fi
  [ -n "$holder" ] || ip addr add "$NODE_IP/$NODE_PREFIX" dev "$NODE_BRIDGE" ||
    die "cannot give $NODE_BRIDGE the address $NODE_IP/$NODE_PREFIX"
  ip link set "$NODE_BRIDGE" up || die "cannot bring $NODE_BRIDGE up"
}

# node_listens PORT: something listens on the node's address (or on every address) at PORT.
node_listens() {
  local port=$1 addr
  while read -r _ _ _ addr _; do
    case $addr in
      "$MYSIMBDP_NODE_IP:$port" | "[::ffff:$MYSIMBDP_NODE_IP]:$port" | "0.0.0.0:$port" | "*:$port" | "[::]:$port") return 0 ;;
    esac
  done < <(ss -Hltn "sport = :$port" 2>/dev/null)
  return 1
}

_node_require_free() {
  local port=$1 what=$2 var=$3
  if node_listens "$port"; then
    die "port $port on $MYSIMBDP_NODE_IP, needed by $what, is already in use; stop that process or choose another port with $var=<port>"
  fi
}

# ---------------------------------------------------------------------------------------------
# Certificates and configuration

# The kubelet's client identity (system:node:<name>, authorized by the Node authorizer) and its
# serving certificate for the node address, both from the control plane's CA. A certificate
# that names another node or address is made anew.
_node_pki() {
  if ! (
    cd "$KUBE_PKI_DIR" || exit 1
    if [ -f kubelet-client.crt ] &&
      ! openssl x509 -noout -subject -in kubelet-client.crt | grep "CN *= *system:node:$NODE_NAME$" >/dev/null; then
      rm -f kubelet-client.crt kubelet-client.key
    fi
    if [ -f kubelet-serving.crt ] &&
      ! openssl x509 -noout -ext subjectAltName -in kubelet-serving.crt | grep -F "IP Address:$NODE_IP" >/dev/null; then
      rm -f kubelet-serving.crt kubelet-serving.key
    fi
    _kube_cert ca kubelet-client "/O=system:nodes/CN=system:node:$NODE_NAME" clientAuth || exit 1
    _kube_cert ca kubelet-serving "/CN=$NODE_NAME" serverAuth "IP:$NODE_IP, DNS:$NODE_NAME" || exit 1
    chmod 600 ./*.key
  ); then
    die "creating the kubelet's certificates in $KUBE_PKI_DIR failed"
  fi
  _kube_kubeconfig "$NODE_KUBECONFIG" kubelet-client
}

# One CNI network: the stack's bridge (already holding the node address, so the plugin adds
# none and leaves forwarding alone), pod addresses from the rest of the range, and no default
# route in pods: they reach the bridge's subnet, which holds this machine's node address, and
# nothing else. No portmap: pods here have no host ports and iptables stays untouched.
_node_cni_config() {
  local base=${MYSIMBDP_NODE_CIDR%/*}
  cat <<CNI
{
  "cniVersion": "1.0.0",
  "name": "$NODE_CNI_NETWORK",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "$NODE_BRIDGE",
      "isGateway": false,
      "isDefaultGateway": false,
      "ipMasq": false,
      "hairpinMode": false,
      "ipam": {
        "type": "host-local",
        "ranges": [[{ "subnet": "$MYSIMBDP_NODE_CIDR", "rangeStart": "${base%.*}.10", "gateway": "$NODE_IP" }]],
        "routes": []
      }
    }
  ]
}
CNI
}

# containerd: CRI with runc from Debian and the stack's sandbox image. restrict_oom_score_adj:
# root here lacks CAP_SYS_RESOURCE, so runc cannot lower a container's oom_score_adj below its
# own. NRI is off (nothing uses it, and it would open a socket under /var/run/nri).
_node_containerd_config() {
  cat <<TOML
# Generated by e2e/stack/node.sh on every start; edits are overwritten.
version = 3
root = '$NODE_CONTAINERD_ROOT'
state = '$NODE_CONTAINERD_RUN'
imports = []
disabled_plugins = ['io.containerd.nri.v1.nri']

[plugins.'io.containerd.server.v1.grpc']
  address = '$NODE_CONTAINERD_SOCK'

[plugins.'io.containerd.server.v1.ttrpc']
  address = '$NODE_CONTAINERD_SOCK.ttrpc'

[plugins.'io.containerd.internal.v1.opt']
  path = '$NODE_STATE_DIR/containerd-opt'

[plugins.'io.containerd.cri.v1.images']
  snapshotter = 'overlayfs'
  [plugins.'io.containerd.cri.v1.images'.pinned_images]
    sandbox = '$NODE_PAUSE_IMAGE'

[plugins.'io.containerd.cri.v1.runtime']
  restrict_oom_score_adj = true
  disable_apparmor = true
  enable_criu = false
  cdi_spec_dirs = []
  netns_mounts_under_state_dir = true
  [plugins.'io.containerd.cri.v1.runtime'.containerd]
    default_runtime_name = 'runc'
    [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
      runtime_type = 'io.containerd.runc.v2'
      [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
        BinaryName = '$(command -v runc)'
        SystemdCgroup = false
  [plugins.'io.containerd.cri.v1.runtime'.cni]
    bin_dirs = ['$NODE_CNI_BIN_DIR']
    conf_dir = '$NODE_STATE_DIR/cni'
    max_conf_num = 1

[plugins.'io.containerd.grpc.v1.cri']
  stream_server_address = '127.0.0.1'
  stream_server_port = '0'
TOML
}

# The kubelet, as this machine needs it: cgroup v1 with the cgroupfs driver, swap tolerated,
# no iptables chains of its own (its KUBE-FIREWALL would drop loopback traffic from pods'
# addresses), serving on the node address only and its health on loopback. Images come from
# `ctr import`, never from a registry, so they are never garbage-collected; eviction only
# guards against a full disk or memory.
_node_kubelet_config() {
  local pki=$KUBE_PKI_DIR
  cat <<YAML
# Generated by e2e/stack/node.sh on every start; edits are overwritten.
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $NODE_IP
port: $MYSIMBDP_KUBELET_PORT
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: $MYSIMBDP_KUBELET_HEALTHZ_PORT
tlsCertFile: $pki/kubelet-serving.crt
tlsPrivateKeyFile: $pki/kubelet-serving.key
rotateCertificates: false
serverTLSBootstrap: false
authentication:
  anonymous:
    enabled: false
  webhook:
    enabled: true
  x509:
    clientCAFile: $pki/ca.crt
authorization:
  mode: Webhook
containerRuntimeEndpoint: unix://$NODE_CONTAINERD_SOCK
cgroupDriver: cgroupfs
failCgroupV1: false
failSwapOn: false
makeIPTablesUtilChains: false
clusterDomain: cluster.local
registerWithTaints:
$(if [ -n "$NODE_TAINT" ]; then
    local key=${NODE_TAINT%%=*} rest=${NODE_TAINT#*=}
    printf '  - key: %s\n    value: "%s"\n    effect: %s\n' "$key" "${rest%%:*}" "${rest##*:}"
  fi)
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard:
  memory.available: 100Mi
  nodefs.available: 2%
  imagefs.available: 2%
  nodefs.inodesFree: 2%
serializeImagePulls: false
YAML
}

# _node_write FILE CONTENT-FUNCTION: (re)writes FILE; true when its content changed.
_node_write() {
  local file=$1 fn=$2
  "$fn" >"$file.new" || die "writing $file failed"
  if cmp -s "$file.new" "$file"; then
    rm -f "$file.new"
    return 1
  fi
  mv "$file.new" "$file"
}

# ---------------------------------------------------------------------------------------------
# Health checks, each a single probe for wait_until

_node_containerd_healthy() {
  local plugins
  plugins=$(_node_ctr plugins ls 2>/dev/null) || return 1
  # CRI is what the kubelet needs; it loads after the daemon answers.
  grep -Eq 'io\.containerd\.grpc\.v1[[:space:]]+cri[[:space:]].*ok' <<<"$plugins"
}

_node_kubelet_healthy() {
  [ "$(curl -fsS --max-time 2 "http://127.0.0.1:$MYSIMBDP_KUBELET_HEALTHZ_PORT/healthz")" = ok ]
}

_node_ready() {
  [ "$(_kube_kubectl get node "$NODE_NAME" -o 'jsonpath={.status.conditions[?(@.type=="Ready")].status}')" = True ]
}

# The API server through the node address: the proxy answers, and the serving certificate is
# valid for that address.
_node_apiserver_proxy_ready() {
  [ "$(curl -fsS --max-time 3 --cacert "$KUBE_PKI_DIR/ca.crt" --cert "$KUBE_PKI_DIR/admin.crt" \
    --key "$KUBE_PKI_DIR/admin.key" "https://$NODE_IP:$MYSIMBDP_APISERVER_PORT/readyz")" = ok ]
}

_node_tcp_open() { timeout 3 bash -c 'exec 3<>"/dev/tcp/$1/$2"' _ "$1" "$2"; }

# ---------------------------------------------------------------------------------------------
# Images

# _node_image_digest NAME: the manifest digest containerd holds under NAME, or nothing.
_node_image_digest() {
  _node_ctr -n k8s.io images ls "name==$1" 2>/dev/null | awk 'NR == 2 { print $3 }'
}

# node_import_image ARCHIVE DIGEST NAME...: imports an OCI archive into the CRI's namespace,
# unless every NAME already is DIGEST. The layers are unpacked for the CRI's snapshotter.
node_import_image() {
  local archive=$1 digest=$2 name stale=0
  shift 2
  for name in "$@"; do
    [ "$(_node_image_digest "$name")" = "$digest" ] || stale=1
  done
  [ "$stale" = 1 ] || return 0
  local out
  out=$(_node_ctr -n k8s.io images import --snapshotter overlayfs "$archive" 2>&1) ||
    die "importing $archive ($*) into containerd failed: $out"
  for name in "$@"; do
    [ "$(_node_image_digest "$name")" = "$digest" ] ||
      die "containerd has no image $name at $digest after importing $archive"
  done
}

# ---------------------------------------------------------------------------------------------
# Processes

# _node_restart_if_changed NAME CHANGED: a running NAME whose configuration changed is
# stopped, to start again with it. Pods' containers survive both containerd and the kubelet.
_node_restart_if_changed() {
  if [ "$2" = 1 ] && proc_alive "$1"; then
    log "node: the configuration of $1 changed; restarting it"
    proc_stop "$1" 30
  fi
}

_node_save_sysctls() {
  local saved=$RUN_DIR/node.sysctl.saved key
  [ -f "$saved" ] && return 0
  for key in "${_NODE_SYSCTLS[@]}"; do
    printf '%s=%s\n' "$key" "$(sysctl -n "$key")"
  done >"$saved.tmp" && mv "$saved.tmp" "$saved"
}

_node_restore_sysctls() {
  local saved=$RUN_DIR/node.sysctl.saved
  [ -f "$saved" ] || return 0
  sysctl -q -p "$saved" >/dev/null 2>&1 || log "node: could not restore the kernel settings in $saved"
  rm -f "$saved"
}

_node_start_proxy() {
  local name=$1 port_var=$2 what=$3
  local port=${!port_var}
  if ! proc_alive "node-$name-proxy"; then
    _node_require_free "$port" "$what for pods" "$port_var"
    PROC_EXE=socat proc_start "node-$name-proxy" "$LOG_DIR/node-$name-proxy.log" \
      socat -lh "TCP4-LISTEN:$port,bind=$NODE_IP,reuseaddr,fork" "TCP4:127.0.0.1:$port"
  fi
}

_node_start_containerd() {
  local changed=0
  mkdir -p "$NODE_STATE_DIR/cni" "$NODE_CONTAINERD_ROOT"
  _node_write "$NODE_STATE_DIR/cni/10-$NODE_CNI_NETWORK.conflist" _node_cni_config || true
  _node_write "$NODE_STATE_DIR/containerd.toml" _node_containerd_config && changed=1
  _node_restart_if_changed node-containerd "$changed"
  if ! proc_alive node-containerd; then
    if [ -S "$NODE_CONTAINERD_SOCK" ] && _node_ctr version >/dev/null 2>&1; then
      die "a containerd the stack did not start answers on $NODE_CONTAINERD_SOCK; stop it first"
    fi
    log "node: starting containerd $CONTAINERD_VERSION (log: $LOG_DIR/containerd.log)"
    # The shim is found on PATH, next to the daemon.
    PROC_EXE=$NODE_CONTAINERD_DIR/bin/containerd proc_start node-containerd "$LOG_DIR/containerd.log" \
      env PATH="$NODE_CONTAINERD_DIR/bin:$PATH" "$NODE_CONTAINERD_DIR/bin/containerd" \
      --config "$NODE_STATE_DIR/containerd.toml"
  fi
  wait_until "containerd on $NODE_CONTAINERD_SOCK" 60 "$LOG_DIR/containerd.log" node-containerd \
    _node_containerd_healthy
}

_node_start_kubelet() {
  local changed=0
  mkdir -p "$NODE_KUBELET_DIR"
  _node_write "$NODE_STATE_DIR/kubelet.yaml" _node_kubelet_config && changed=1
  _node_restart_if_changed node-kubelet "$changed"
  if ! proc_alive node-kubelet; then
    _node_require_free "$MYSIMBDP_KUBELET_PORT" "the kubelet" MYSIMBDP_KUBELET_PORT
    require_free_port "$MYSIMBDP_KUBELET_HEALTHZ_PORT" "the kubelet's health endpoint" MYSIMBDP_KUBELET_HEALTHZ_PORT
    _node_save_sysctls
    log "node: starting the kubelet of $K8S_VERSION as node $NODE_NAME at $NODE_IP (log: $LOG_DIR/kubelet.log)"
    local start=$SECONDS
    PROC_EXE=$KUBE_K8S_DIR/bin/kubelet proc_start node-kubelet "$LOG_DIR/kubelet.log" \
      "$KUBE_K8S_DIR/bin/kubelet" --config "$NODE_STATE_DIR/kubelet.yaml" \
      --kubeconfig "$NODE_KUBECONFIG" --root-dir "$NODE_KUBELET_DIR" \
      --hostname-override "$NODE_NAME" --node-ip "$NODE_IP" --node-labels "$NODE_LABEL" --v=1
    wait_until "the kubelet" 60 "$LOG_DIR/kubelet.log" node-kubelet _node_kubelet_healthy
    wait_until "node $NODE_NAME Ready" 120 "$LOG_DIR/kubelet.log" node-kubelet _node_ready
    log "node: $NODE_NAME is Ready $((SECONDS - start))s after the kubelet started"
  fi
  wait_until "node $NODE_NAME Ready" 120 "$LOG_DIR/kubelet.log" node-kubelet _node_ready
  # A node that was drained by stack-down takes pods again.
  if [ "$(_kube_kubectl get node "$NODE_NAME" -o 'jsonpath={.spec.unschedulable}')" = true ]; then
    _kube_kubectl uncordon "$NODE_NAME" >/dev/null || die "cannot uncordon node $NODE_NAME"
  fi
}

# ---------------------------------------------------------------------------------------------
# Stopping

# Pods of the node are deleted through the API (as a drain does) so that the kubelet stops
# their containers and releases their network; their controllers make new ones, which wait,
# pending, for the node to be back. Bounded: what is left is stopped by _node_stop_tasks.
_node_drain() {
  proc_alive node-kubelet 2>/dev/null && proc_alive kube-apiserver 2>/dev/null || return 0
  _kube_kubectl get node "$NODE_NAME" >/dev/null 2>&1 || return 0
  _kube_kubectl cordon "$NODE_NAME" >/dev/null 2>&1 || return 0
  local pods
  pods=$(_kube_kubectl get pods -A --field-selector "spec.nodeName=$NODE_NAME" -o name 2>/dev/null | wc -l)
  [ "$pods" -gt 0 ] || return 0
  log "node: draining $pods pod(s) from $NODE_NAME"
  _kube_kubectl delete pods -A --field-selector "spec.nodeName=$NODE_NAME" --grace-period 10 \
    --wait=false >/dev/null 2>&1 || true
  local deadline=$((SECONDS + 45))
  while [ $SECONDS -lt $deadline ]; do
    [ -n "$(_kube_kubectl get pods -A --field-selector "spec.nodeName=$NODE_NAME" -o name 2>/dev/null)" ] || return 0
    sleep 0.5
  done
  log "node: some pods of $NODE_NAME did not stop within 45s; stopping their containers directly"
}

# Every task (container or sandbox) containerd still runs is killed and deleted, so that no
# shim or container process outlives the stack.
_node_stop_tasks() {
  proc_alive node-containerd 2>/dev/null || return 0
  local ids id deadline=$((SECONDS + 30))
  ids=$(_node_ctr -n k8s.io tasks ls -q 2>/dev/null) || return 0
  for id in $ids; do
    _node_ctr -n k8s.io tasks kill --all --signal SIGKILL "$id" >/dev/null 2>&1 || true
  done
  for id in $ids; do
    until _node_ctr -n k8s.io tasks delete "$id" >/dev/null 2>&1 ||
      ! grep -qx "$id" <<<"$(_node_ctr -n k8s.io tasks ls -q 2>/dev/null)"; do
      [ $SECONDS -lt $deadline ] || break
      sleep 0.2
    done
  done
}

# Shims whose binary is this stack's and that are still alive once containerd is gone.
_node_stray_shims() {
  local exe=$NODE_CONTAINERD_DIR/bin/containerd-shim-runc-v2 proc
  for proc in /proc/[0-9]*; do
    [ "$(readlink "$proc/exe" 2>/dev/null)" = "$exe" ] && printf '%s\n' "${proc#/proc/}"
  done
  return 0
}

# Unmounts whatever is mounted below DIR, deepest first (pods' volumes, containers' root file
# systems and network namespaces a killed task left behind).
_node_unmount_under() {
  local dir=$1 target mounts
  mounts=$(findmnt -rn -o TARGET 2>/dev/null) || return 0
  while read -r target; do
    case $target in
      "$dir"/*) umount "$target" 2>/dev/null || umount -l "$target" 2>/dev/null || true ;;
    esac
  done < <(sort -r <<<"$mounts")
}

_node_wipe() {
  log "node: removing its state ($NODE_STATE_DIR, $NODE_CONTAINERD_RUN, /var/lib/cni/*/$NODE_CNI_NETWORK, ${_NODE_FIXED_PATHS[*]}, kubepods cgroups, $NODE_BRIDGE)"
  _node_unmount_under "$NODE_STATE_DIR"
  _node_unmount_under "$NODE_CONTAINERD_RUN"
  rm -rf "$NODE_STATE_DIR" "$NODE_CONTAINERD_RUN" "/var/lib/cni/networks/$NODE_CNI_NETWORK" \
    "${_NODE_FIXED_PATHS[@]}" /var/lib/cni/results/"$NODE_CNI_NETWORK"-* ||
    log "node: some of its files could not be removed (see above)"
  # The kubelet's cgroups, once their processes are gone: leaves first.
  local cg
  for cg in /sys/fs/cgroup/*/kubepods /sys/fs/cgroup/kubepods; do
    if [ -d "$cg" ]; then
      find "$cg" -depth -type d -exec rmdir {} \; 2>/dev/null || true
      [ ! -d "$cg" ] || log "node: $cg is still in use; left in place"
    fi
  done
  if ip link show "$NODE_BRIDGE" >/dev/null 2>&1; then
    ip link del "$NODE_BRIDGE" || log "node: could not delete the bridge $NODE_BRIDGE"
  fi
  rm -f "$NODE_KUBECONFIG"
}

# ---------------------------------------------------------------------------------------------
# Entry points

node_up() {
  _node_vars
  local start=$SECONDS
  node_build || return 1
  [ -x "$KUBE_K8S_DIR/bin/kubelet" ] || die "the kubelet is missing from $KUBE_K8S_DIR; run kube_build"
  command -v runc >/dev/null || die "runc is not installed (Debian package runc; make deps installs it)"
  [ -x "$NODE_CNI_BIN_DIR/bridge" ] && [ -x "$NODE_CNI_BIN_DIR/host-local" ] && [ -x "$NODE_CNI_BIN_DIR/loopback" ] ||
    die "the CNI plugins are missing from $NODE_CNI_BIN_DIR (Debian package containernetworking-plugins)"
  command -v socat >/dev/null || die "socat is not installed (Debian package socat; make deps installs it)"
  mkdir -p "$NODE_STATE_DIR"
  chmod 700 "$NODE_STATE_DIR"
  node_network_up
  # The API server and coredms for pods (the operator as a pod reaches all three, tenants' apps
  # coredms): FerretDB takes one listen address and the API server one bind address, both kept
  # on loopback, and PostgreSQL admits loopback clients only; a forwarder on the node address
  # reaches each. TLS passes through (the API server's certificate names the node address).
  _node_start_proxy apiserver MYSIMBDP_APISERVER_PORT kube-apiserver
  _node_start_proxy coredms MYSIMBDP_COREDMS_PORT "coredms (FerretDB)"
  _node_start_proxy postgres MYSIMBDP_POSTGRES_PORT "coredms (PostgreSQL)"
  # A serving certificate renewed to name the node address is picked up by the running API
  # server within a minute (it watches the file).
  wait_until "the API server at $NODE_IP:$MYSIMBDP_APISERVER_PORT" 90 "$LOG_DIR/node-apiserver-proxy.log" \
    node-apiserver-proxy _node_apiserver_proxy_ready
  wait_until "coredms at $NODE_IP:$MYSIMBDP_COREDMS_PORT" 30 "$LOG_DIR/node-coredms-proxy.log" \
    node-coredms-proxy _node_tcp_open "$NODE_IP" "$MYSIMBDP_COREDMS_PORT"
  wait_until "PostgreSQL at $NODE_IP:$MYSIMBDP_POSTGRES_PORT" 30 "$LOG_DIR/node-postgres-proxy.log" \
    node-postgres-proxy _node_tcp_open "$NODE_IP" "$MYSIMBDP_POSTGRES_PORT"
  _node_pki
  _node_start_containerd
  node_import_image "$MYSIMBDP_CACHE/pause-${NODE_PAUSE_IMAGE##*:}/image.tar" \
    "$(cat "$MYSIMBDP_CACHE/pause-${NODE_PAUSE_IMAGE##*:}/digest")" "$NODE_PAUSE_IMAGE"
  node_import_image "$MYSIMBDP_CACHE/toolbox-${NODE_TOOLBOX_IMAGE##*:}/image.tar" \
    "$(cat "$MYSIMBDP_CACHE/toolbox-${NODE_TOOLBOX_IMAGE##*:}/digest")" "$NODE_TOOLBOX_IMAGE"
  _node_start_kubelet
  [ "$(sysctl -n net.ipv4.ip_forward)" = 0 ] ||
    log "node: warning: net.ipv4.ip_forward is on; pods could reach beyond this machine"
  log "node: $NODE_NAME is up in $((SECONDS - start))s (pods reach this machine at $NODE_IP)"
}

node_down() {
  _node_vars
  _node_drain
  proc_stop node-kubelet 30
  _node_stop_tasks
  proc_stop node-containerd 30
  local pid
  for pid in $(_node_stray_shims); do
    log "node: killing shim $pid left without containerd"
    kill -KILL "$pid" 2>/dev/null || true
  done
  proc_stop node-postgres-proxy
  proc_stop node-coredms-proxy
  proc_stop node-apiserver-proxy
  _node_restore_sysctls
  if [ "${WIPE:-0}" = 1 ]; then
    _node_wipe
  fi
}

node_down_wipe() { WIPE=1 node_down; }

node_status() {
  _node_vars
  local name detail
  if [ -f "$NODE_CONTAINERD_DIR/.complete" ]; then
    status_row "containerd build" built "$NODE_CONTAINERD_DIR"
  else
    status_row "containerd build" missing "run: bash $STACK_DIR/node.sh build"
  fi
  for name in "${_NODE_PROCS[@]}"; do
    case $name in
      node-apiserver-proxy) detail="https://$NODE_IP:$MYSIMBDP_APISERVER_PORT -> 127.0.0.1" ;;
      node-coredms-proxy) detail="mongodb://$NODE_IP:$MYSIMBDP_COREDMS_PORT/ -> 127.0.0.1" ;;
      node-postgres-proxy) detail="postgres://$NODE_IP:$MYSIMBDP_POSTGRES_PORT -> 127.0.0.1" ;;
      node-containerd) detail="unix://$NODE_CONTAINERD_SOCK" ;;
      node-kubelet) detail="node $NODE_NAME, https://$NODE_IP:$MYSIMBDP_KUBELET_PORT" ;;
    esac
    if proc_alive "$name" 2>/dev/null; then
      status_row "$name" running "pid $(proc_pid "$name")  $detail"
    else
      status_row "$name" stopped "$detail"
    fi
  done
  if proc_alive node-kubelet 2>/dev/null; then
    local ready
    ready=$(_kube_kubectl get node "$NODE_NAME" -o 'jsonpath={.status.conditions[?(@.type=="Ready")].status} {.status.nodeInfo.kubeletVersion}' 2>/dev/null) || ready=
    case $ready in
      True\ *) status_row "node $NODE_NAME" ready "kubelet ${ready#* }, $NODE_IP, pods in $MYSIMBDP_NODE_CIDR" ;;
      *) status_row "node $NODE_NAME" notready "${ready:-not registered}" ;;
    esac
  fi
}

# Values are single-quoted so that the file can be sourced whatever they hold.
node_env() {
  _node_vars
  local kv
  for kv in \
    "MYSIMBDP_NODE_NAME=$NODE_NAME" \
    "MYSIMBDP_NODE_IP=$NODE_IP" \
    "MYSIMBDP_NODE_CIDR=$MYSIMBDP_NODE_CIDR" \
    "MYSIMBDP_NODE_SELECTOR=$NODE_LABEL" \
    "MYSIMBDP_NODE_TAINT=$NODE_TAINT" \
    "MYSIMBDP_CONTAINERD_ADDRESS=$NODE_CONTAINERD_SOCK" \
    "MYSIMBDP_CTR=$NODE_CONTAINERD_DIR/bin/ctr" \
    "MYSIMBDP_PAUSE_IMAGE=$NODE_PAUSE_IMAGE" \
    "MYSIMBDP_TOOLBOX_IMAGE=$NODE_TOOLBOX_IMAGE" \
    "MYSIMBDP_POD_KUBE_HOST=$NODE_IP" \
    "MYSIMBDP_POD_KUBE_PORT=$MYSIMBDP_APISERVER_PORT" \
    "MYSIMBDP_POD_KUBE_SERVER=https://$NODE_IP:$MYSIMBDP_APISERVER_PORT" \
    "MYSIMBDP_POD_KAFKA_BOOTSTRAP=$NODE_IP:$MYSIMBDP_KAFKA_POD_PORT" \
    "MYSIMBDP_POD_COREDMS_URL=mongodb://$NODE_IP:$MYSIMBDP_COREDMS_PORT/"; do
    local val=${kv#*=}
    printf "export %s='%s'\n" "${kv%%=*}" "${val//\'/\'\\\'\'}"
  done
  # The platform's PostgreSQL as an operator pod reaches it (coredms.sh holds the admin).
  local pw=$MYSIMBDP_STATE/secrets/coredms-admin.password
  if [ -n "${COREDMS_ADMIN_USER:-}" ] && [ -s "$pw" ]; then
    printf 'export MYSIMBDP_POD_POSTGRES_URL=%q\n' \
      "postgres://$COREDMS_ADMIN_USER:$(cat "$pw")@$NODE_IP:$MYSIMBDP_POSTGRES_PORT/$COREDMS_DATABASE"
  fi
}

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
  set -euo pipefail
  # shellcheck source=lib.sh
  . "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
  # shellcheck source=kube.sh
  . "$STACK_DIR/kube.sh"
  case ${1:-} in
    build) node_build ;;
    up) node_up ;;
    down) node_down ;;
    wipe) node_down_wipe ;;
    status) node_status ;;
    env) node_env ;;
    *)
      echo "usage: $0 build|up|down|wipe|status|env" >&2
      exit 2
      ;;
  esac
fi
