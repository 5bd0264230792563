# shellcheck shell=bash
# Local Kubernetes control plane of the test stack: etcd, kube-apiserver,
# kube-controller-manager, kube-scheduler and kwok (fake nodes and pods), built from Go
# modules at the versions pinned in versions.env and run on 127.0.0.1 without containers.
#
# Sourced after lib.sh by the stack orchestrator; defines functions only:
#   kube_build       build (once, cached by version) etcd, kubernetes, kwok and helm
#   kube_up          start whatever is not running yet and wait until it is healthy
#   kube_down        stop it (WIPE=1, or kube_down_wipe, also removes its state)
#   kube_status      one status row per process
#   kube_env         export lines for the stack's env file
# Also runnable on its own: bash e2e/stack/kube.sh build|up|down|wipe|status|env

# ---------------------------------------------------------------------------------------------
# Paths and settings. Computed on use so that a caller may change lib.sh's variables after
# sourcing this file.

_kube_vars() {
  KUBE_STATE_DIR=$MYSIMBDP_STATE/kube
  KUBE_PKI_DIR=$KUBE_STATE_DIR/pki
  KUBE_CONFIGS_DIR=$KUBE_STATE_DIR/kubeconfigs
  KUBE_ADMIN_KUBECONFIG=$MYSIMBDP_STATE/kubeconfig
  KUBE_CLUSTER_NAME=mysimbdp-local
  # No kube-proxy runs and no pod really exists, so these addresses only appear in objects.
  # ClusterIPs are nevertheless dialled by the apiserver itself (webhooks and APIServices
  # backed by a Service), so they are taken from loopback: such a call fails on this machine
  # instead of leaving it. Pod IPs cannot be (Endpoints reject loopback addresses); nothing
  # here dials them. Changing the service range needs a wiped state (WIPE=1 kube_down).
  KUBE_SERVICE_CIDR=${MYSIMBDP_SERVICE_CIDR:-127.96.0.0/16}
  KUBE_POD_CIDR_PREFIX=${MYSIMBDP_POD_CIDR_PREFIX:-10.244}
  KUBE_NODE_COUNT=${MYSIMBDP_KWOK_NODE_COUNT:-2}
  KUBE_STAGES_FILE=$STACK_DIR/kwok-stages.yaml
  KUBE_ETCD_DIR=$MYSIMBDP_CACHE/etcd-$ETCD_VERSION
  # The build's revision is part of its cache key: revision 2 added the kubelet, so a cache
  # of the same release without it is built anew beside it.
  KUBE_K8S_BUILD=$K8S_VERSION-r2
  KUBE_K8S_DIR=$MYSIMBDP_CACHE/kubernetes-$KUBE_K8S_BUILD
  KUBE_KWOK_DIR=$MYSIMBDP_CACHE/kwok-$KWOK_VERSION
  KUBE_HELM_DIR=$MYSIMBDP_CACHE/helm-$HELM_VERSION
}

kube_bin_dir() {
  _kube_vars
  printf '%s/bin\n' "$KUBE_K8S_DIR"
}

# The processes of the control plane, in start order.
_KUBE_PROCS=(etcd kube-apiserver kube-controller-manager kube-scheduler kwok)

# ---------------------------------------------------------------------------------------------
# Builds

# Go settings shared by every build: the toolchain that is installed (never a downloaded one),
# static binaries, a go.sum completed on the fly for the generated wrapper modules, and at
# most MYSIMBDP_BUILD_JOBS (default: one per core) packages compiled at once; more than the
# cores only adds memory pressure, as linking kube-apiserver alone takes about 2 GB.
_kube_go() {
  GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS="-mod=mod -buildvcs=false -p=${MYSIMBDP_BUILD_JOBS:-$(nproc)}" go "$@"
}

# _kube_modfile MODULE VERSION: path of the module's go.mod in Go's module cache.
_kube_modfile() {
  local file
  file=$(cd / && GOTOOLCHAIN=local GOFLAGS='' go mod download -json "$1@$2" |
    sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",\{0,1\}$/\1/p')
  if [ -z "$file" ] || [ ! -f "$file" ]; then
    echo "cannot download $1@$2" >&2
    return 1
  fi
  printf '%s\n' "$file"
}

# _kube_wrapper_module DIR MODULE VERSION [STAGING_VERSION]
# Writes DIR/go.mod, a main module that only requires MODULE@VERSION. `go install pkg@v`
# refuses modules whose go.mod has replace directives, and a dependency's replace lines are
# ignored, so they are carried over here: a local path under staging/src/ (kubernetes' own
# staging modules) becomes that module at STAGING_VERSION, other local paths are dropped (the
# required versions already name the released modules) and replacements by another module
# are copied as they are.
_kube_wrapper_module() {
  local dir=$1 module=$2 version=$3 staging=${4:-} modfile
  modfile=$(_kube_modfile "$module" "$version") || return 1
  mkdir -p "$dir"
  local required
  required=$(awk '
    /^require[ \t]*\(/ { block = 1; next }
    block && /^\)/ { block = 0; next }
    block && NF >= 2 { print $1; next }
    /^require[ \t]/ && NF >= 3 { print $2 }
  ' "$modfile")
  {
    printf 'module mysimbdp.local/build/%s\n\n' "${module//\//-}"
    grep -m 1 '^go ' "$modfile"
    grep '^godebug ' "$modfile" || true
    printf '\nrequire %s %s\n\nreplace (\n' "$module" "$version"
    awk '
      /^replace[ \t]*\(/ { block = 1; next }
      block && /^\)/ { block = 0; next }
      block { sub(/\/\/.*/, ""); if (NF) print; next }
      /^replace[ \t]/ { sub(/\/\/.*/, ""); sub(/^replace[ \t]+/, ""); print }
    ' "$modfile" | while read -r old rest; do
      local target=${rest#*=> }
      target=${target%% *}
      case $target in
        ./staging/src/* | staging/src/*)
          if [ -n "$staging" ] && grep -qxF -- "$old" <<<"$required"; then
            printf '\t%s => %s %s\n' "$old" "$old" "$staging"
          fi
          ;;
        ./* | ../* | /*) ;;
        *) printf '\t%s %s\n' "$old" "$rest" ;;
      esac
    done
    printf ')\n'
  } >"$dir/go.mod"
}

# The builders below run inside cached_build, which gives them a fresh directory and keeps
# their output in a build log. Each leaves its wrapper module under <dir>/src for reference.

_kube_build_etcd() {
  local out=$1 src=$1/src
  _kube_wrapper_module "$src" go.etcd.io/etcd/server/v3 "$ETCD_VERSION" || return 1
  cat "$src/go.mod"
  # etcd's version string is a constant of its api module; only the commit is set at link
  # time, and a module download carries none, so the tag stands in for it.
  local ldflags="-s -w -X go.etcd.io/etcd/api/v3/version.GitSHA=${MYSIMBDP_ETCD_GIT_SHA:-$ETCD_VERSION}"
  mkdir -p "$out/bin"
  (cd "$src" && _kube_go build -trimpath -ldflags "$ldflags" \
    -o "$out/bin/etcd" go.etcd.io/etcd/server/v3) || return 1
  "$out/bin/etcd" --version
}

_kube_build_kubernetes() {
  local out=$1 src=$1/src
  local version=${K8S_VERSION#v} major minor
  major=${version%%.*}
  minor=${version#*.}
  minor=${minor%%.*}
  # Staging modules are tagged v0.<minor>.<patch> alongside kubernetes v1.<minor>.<patch>.
  _kube_wrapper_module "$src" k8s.io/kubernetes "$K8S_VERSION" "v0.${version#*.}" || return 1
  cat "$src/go.mod"
  local ldflags="-s -w" kv key val
  for kv in "gitVersion=$K8S_VERSION" "gitMajor=$major" "gitMinor=$minor" \
    "gitCommit=${MYSIMBDP_K8S_GIT_COMMIT:-}" "gitTreeState=clean" \
    "buildDate=$(date -u +%Y-%m-%dT%H:%M:%SZ)"; do
    key=${kv%%=*}
    val=${kv#*=}
    ldflags+=" -X k8s.io/component-base/version.$key=$val -X k8s.io/client-go/pkg/version.$key=$val"
  done
  mkdir -p "$out/bin"
  # One invocation for the five binaries so the packages they share are compiled once (the
  # kubelet adds minutes, not another build). The tags are those of kubernetes' own release
  # builds.
  (cd "$src" && _kube_go build -trimpath -tags selinux,notest,grpcnotrace \
    -ldflags "$ldflags" -o "$out/bin/" \
    k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager \
    k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kubectl \
    k8s.io/kubernetes/cmd/kubelet) || return 1
  "$out/bin/kube-apiserver" --version && "$out/bin/kubectl" version --client &&
    "$out/bin/kubelet" --version
}

_kube_build_kwok() {
  local out=$1 src=$1/src
  _kube_wrapper_module "$src" sigs.k8s.io/kwok "$KWOK_VERSION" || return 1
  cat "$src/go.mod"
  local ldflags="-s -w -X sigs.k8s.io/kwok/pkg/consts.Version=$KWOK_VERSION"
  ldflags+=" -X sigs.k8s.io/kwok/pkg/consts.KubeVersion=$K8S_VERSION"
  mkdir -p "$out/bin"
  (cd "$src" && _kube_go build -trimpath -ldflags "$ldflags" \
    -o "$out/bin/kwok" sigs.k8s.io/kwok/cmd/kwok) || return 1
  "$out/bin/kwok" --version
}

_kube_build_helm() {
  local out=$1 src=$1/src
  _kube_wrapper_module "$src" helm.sh/helm/v3 "$HELM_VERSION" || return 1
  cat "$src/go.mod"
  # Helm reports the Kubernetes version of the client-go it was built with as its default
  # capabilities; its release build derives that from the module graph, and so does this.
  local client_go major minor
  client_go=$(cd "$src" && _kube_go list -m -f '{{.Version}}' k8s.io/client-go) || return 1
  client_go=${client_go#v}
  major=$((${client_go%%.*} + 1))
  minor=${client_go#*.}
  minor=${minor%%.*}
  local ldflags="-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION"
  ldflags+=" -X helm.sh/helm/v3/internal/version.metadata="
  ldflags+=" -X helm.sh/helm/v3/internal/version.gitCommit=${MYSIMBDP_HELM_GIT_COMMIT:-}"
  ldflags+=" -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
  local pkg
  for pkg in helm.sh/helm/v3/pkg/lint/rules helm.sh/helm/v3/pkg/chartutil; do
    ldflags+=" -X $pkg.k8sVersionMajor=$major -X $pkg.k8sVersionMinor=$minor"
  done
  mkdir -p "$out/bin"
  (cd "$src" && _kube_go build -trimpath -ldflags "$ldflags" \
    -o "$out/bin/helm" helm.sh/helm/v3/cmd/helm) || return 1
  "$out/bin/helm" version
}

kube_build() {
  _kube_vars
  command -v go >/dev/null || die "go is not installed; the control plane is built from Go modules"
  cached_build etcd "$ETCD_VERSION" _kube_build_etcd >/dev/null || return 1
  cached_build kubernetes "$KUBE_K8S_BUILD" _kube_build_kubernetes >/dev/null || return 1
  cached_build kwok "$KWOK_VERSION" _kube_build_kwok >/dev/null || return 1
  cached_build helm "$HELM_VERSION" _kube_build_helm >/dev/null || return 1
}

# ---------------------------------------------------------------------------------------------
# Certificates and kubeconfigs

# First address of the service range: the ClusterIP of the `kubernetes` service, which the
# serving certificate must name.
_kube_first_service_ip() {
  local a b c d n
  IFS=. read -r a b c d <<<"${KUBE_SERVICE_CIDR%/*}"
  n=$(((a << 24) + (b << 16) + (c << 8) + d + 1))
  printf '%d.%d.%d.%d\n' $((n >> 24 & 255)) $((n >> 16 & 255)) $((n >> 8 & 255)) $((n & 255))
}

# _kube_ca NAME CN: a CA NAME.{key,crt} in the current directory, unless it exists. Files are
# written under temporary names and renamed, certificate last, so an interrupted run leaves
# nothing that looks finished.
_kube_ca() {
  local name=$1 cn=$2
  [ -f "$name.crt" ] && return 0
  openssl genrsa -out "$name.key.tmp" 2048 2>/dev/null &&
    openssl req -x509 -new -key "$name.key.tmp" -subj "/CN=$cn" -days 3650 -sha256 \
      -addext 'basicConstraints = critical, CA:TRUE' \
      -addext 'keyUsage = critical, keyCertSign, cRLSign, digitalSignature' -out "$name.crt.tmp" &&
    mv "$name.key.tmp" "$name.key" && mv "$name.crt.tmp" "$name.crt"
}

# _kube_cert CA NAME SUBJECT USAGE [SAN]: key and certificate NAME.{key,crt} signed by CA,
# unless they exist. USAGE is serverAuth or clientAuth.
_kube_cert() {
  local ca=$1 name=$2 subject=$3 usage=$4 san=${5:-}
  [ -f "$name.crt" ] && return 0
  {
    printf 'basicConstraints = critical, CA:FALSE\n'
    printf 'keyUsage = critical, digitalSignature, keyEncipherment\n'
    printf 'extendedKeyUsage = %s\n' "$usage"
    [ -z "$san" ] || printf 'subjectAltName = %s\n' "$san"
  } >"$name.ext.tmp"
  openssl genrsa -out "$name.key.tmp" 2048 2>/dev/null &&
    openssl req -new -key "$name.key.tmp" -subj "$subject" -out "$name.csr.tmp" &&
    openssl x509 -req -in "$name.csr.tmp" -CA "$ca.crt" -CAkey "$ca.key" \
      -set_serial "0x$(openssl rand -hex 16)" -days 3650 -sha256 -extfile "$name.ext.tmp" \
      -out "$name.crt.tmp" 2>/dev/null &&
    rm -f "$name.csr.tmp" "$name.ext.tmp" &&
    mv "$name.key.tmp" "$name.key" && mv "$name.crt.tmp" "$name.crt"
}

# Made once and kept: every piece is created only when missing, so a later version of this
# file can add one without invalidating the others. A missing CA invalidates what it signed,
# so everything is made anew then. The service-account key pair lives here too: new keys
# would invalidate every token issued so far.
_kube_pki() {
  command -v openssl >/dev/null || die "openssl is needed to make the control plane's certificates"
  mkdir -p "$KUBE_PKI_DIR" && chmod 700 "$KUBE_PKI_DIR"
  local service_ip
  service_ip=$(_kube_first_service_ip)
  # Each step checks its own status: errexit does not work inside a tested subshell.
  if ! (
    cd "$KUBE_PKI_DIR" || exit 1
    rm -f ./*.tmp
    if [ ! -f ca.crt ]; then
      log "creating the control plane's certificates in $KUBE_PKI_DIR"
      rm -f ./*.crt ./*.key ./*.pub
    fi
    _kube_ca ca mysimbdp-local-ca || exit 1
    # Pods reach the API server at the real node's address (node.sh): a certificate made
    # before it named that address is made anew (the API server reloads it from disk).
    if [ -f apiserver.crt ] &&
      ! openssl x509 -noout -ext subjectAltName -in apiserver.crt | grep -F "IP Address:$MYSIMBDP_NODE_IP" >/dev/null; then
      rm -f apiserver.crt apiserver.key
    fi
    _kube_cert ca apiserver "/CN=kube-apiserver" serverAuth \
      "IP:127.0.0.1, IP:$service_ip, IP:$MYSIMBDP_NODE_IP, DNS:localhost, DNS:kubernetes, DNS:kubernetes.default, DNS:kubernetes.default.svc, DNS:kubernetes.default.svc.cluster.local" ||
      exit 1
    _kube_cert ca apiserver-kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client" clientAuth || exit 1
    _kube_cert ca admin "/O=system:masters/CN=mysimbdp-admin" clientAuth || exit 1
    _kube_cert ca controller-manager "/CN=system:kube-controller-manager" clientAuth || exit 1
    _kube_cert ca scheduler "/CN=system:kube-scheduler" clientAuth || exit 1
    _kube_cert ca kwok "/O=system:masters/CN=kwok-controller" clientAuth || exit 1
    _kube_cert ca kwok-serving "/CN=kwok-kubelet" serverAuth "IP:127.0.0.1, DNS:localhost" || exit 1
    # The aggregation layer's own CA: the identities it vouches for in request headers must
    # not be claimable with an ordinary client certificate.
    [ -f front-proxy-ca.crt ] || rm -f front-proxy-client.*
    _kube_ca front-proxy-ca mysimbdp-local-front-proxy-ca || exit 1
    _kube_cert front-proxy-ca front-proxy-client "/CN=front-proxy-client" clientAuth || exit 1
    if [ ! -f service-account.pub ]; then
      openssl genrsa -out service-account.key 2048 2>/dev/null &&
        openssl rsa -in service-account.key -pubout -out service-account.pub.tmp 2>/dev/null &&
        mv service-account.pub.tmp service-account.pub || exit 1
    fi
    chmod 600 ./*.key
  ); then
    die "creating certificates in $KUBE_PKI_DIR with openssl failed"
  fi
}

# _kube_kubeconfig FILE CLIENT: a kubeconfig for the client certificate CLIENT.{crt,key},
# with everything embedded so that it can be copied anywhere. Written whole, then renamed,
# because tests may read the admin one while the stack starts.
_kube_kubeconfig() {
  local file=$1 client=$2 pki=$KUBE_PKI_DIR
  mkdir -p "$(dirname "$file")"
  cat >"$file.tmp" <<KUBECONFIG
apiVersion: v1
kind: Config
clusters:
- name: $KUBE_CLUSTER_NAME
  cluster:
    server: https://127.0.0.1:$MYSIMBDP_APISERVER_PORT
    certificate-authority-data: $(base64 -w0 "$pki/ca.crt")
users:
- name: $client
  user:
    client-certificate-data: $(base64 -w0 "$pki/$client.crt")
    client-key-data: $(base64 -w0 "$pki/$client.key")
contexts:
- name: $KUBE_CLUSTER_NAME
  context:
    cluster: $KUBE_CLUSTER_NAME
    user: $client
current-context: $KUBE_CLUSTER_NAME
KUBECONFIG
  chmod 600 "$file.tmp"
  mv "$file.tmp" "$file"
}

_kube_kubeconfigs() {
  _kube_kubeconfig "$KUBE_ADMIN_KUBECONFIG" admin
  _kube_kubeconfig "$KUBE_CONFIGS_DIR/controller-manager.kubeconfig" controller-manager
  _kube_kubeconfig "$KUBE_CONFIGS_DIR/scheduler.kubeconfig" scheduler
  _kube_kubeconfig "$KUBE_CONFIGS_DIR/kwok.kubeconfig" kwok
}

# ---------------------------------------------------------------------------------------------
# Health checks, each a single probe for wait_until

_kube_kubectl() { "$KUBE_K8S_DIR/bin/kubectl" --kubeconfig "$KUBE_ADMIN_KUBECONFIG" "$@"; }

# Probes keep the whole answer before looking at it: a reader that stops early (grep -q) can
# fail the writer with SIGPIPE under pipefail.
_kube_etcd_healthy() {
  local body
  body=$(curl -fsS --max-time 2 "http://127.0.0.1:$MYSIMBDP_ETCD_PORT/health") &&
    [[ $body == *'"health":"true"'* ]]
}

_kube_apiserver_ready() {
  [ "$(curl -fsS --max-time 3 --cacert "$KUBE_PKI_DIR/ca.crt" --cert "$KUBE_PKI_DIR/admin.crt" \
    --key "$KUBE_PKI_DIR/admin.key" "https://127.0.0.1:$MYSIMBDP_APISERVER_PORT/readyz")" = ok ]
}

# kube-controller-manager and kube-scheduler serve /healthz without authentication and with a
# certificate they make themselves, hence -k.
_kube_component_healthy() {
  [ "$(curl -fsSk --max-time 2 "https://127.0.0.1:$1/healthz")" = ok ]
}

_kube_kwok_healthy() {
  curl -fsS --max-time 2 "http://127.0.0.1:$MYSIMBDP_KWOK_PORT/healthz" >/dev/null
}

_kube_node_names() {
  local i
  for ((i = 0; i < KUBE_NODE_COUNT; i++)); do printf 'kwok-node-%d\n' "$i"; done
}

_kube_nodes_ready() {
  local name
  for name in $(_kube_node_names); do
    [ "$(_kube_kubectl get node "$name" -o 'jsonpath={.status.conditions[?(@.type=="Ready")].status}')" = True ] ||
      return 1
  done
}

_kube_default_sa_exists() {
  _kube_kubectl -n default get serviceaccount default >/dev/null
}

# ---------------------------------------------------------------------------------------------
# Processes

_kube_start_etcd() {
  if ! proc_alive etcd; then
    require_free_port "$MYSIMBDP_ETCD_PORT" etcd MYSIMBDP_ETCD_PORT
    require_free_port "$MYSIMBDP_ETCD_PEER_PORT" "etcd (peer)" MYSIMBDP_ETCD_PEER_PORT
    mkdir -p "$KUBE_STATE_DIR/etcd" && chmod 700 "$KUBE_STATE_DIR/etcd"
    local client=http://127.0.0.1:$MYSIMBDP_ETCD_PORT peer=http://127.0.0.1:$MYSIMBDP_ETCD_PEER_PORT
    # Plain HTTP is enough on loopback, where only this stack connects. Skipping fsync keeps
    # the many small writes of a test run cheap; a killed etcd loses nothing by it (the page
    # cache survives), only a crash of the whole machine could.
    proc_start etcd "$LOG_DIR/etcd.log" "$KUBE_ETCD_DIR/bin/etcd" \
      --name mysimbdp --data-dir "$KUBE_STATE_DIR/etcd" \
      --listen-client-urls "$client" --advertise-client-urls "$client" \
      --listen-peer-urls "$peer" --initial-advertise-peer-urls "$peer" \
      --initial-cluster "mysimbdp=$peer" --initial-cluster-state new \
      --unsafe-no-fsync --log-level warn
  fi
  wait_until "etcd on 127.0.0.1:$MYSIMBDP_ETCD_PORT" 30 "$LOG_DIR/etcd.log" etcd _kube_etcd_healthy
}

_kube_start_apiserver() {
  if ! proc_alive kube-apiserver; then
    require_free_port "$MYSIMBDP_APISERVER_PORT" kube-apiserver MYSIMBDP_APISERVER_PORT
    local pki=$KUBE_PKI_DIR
    # Aggregated APIs (the platform's tenant API) are reached at their endpoints' pod
    # addresses on the real node's bridge, not at a ClusterIP: no kube-proxy runs here.
    # Admission plugins stay at their defaults (NamespaceLifecycle, LimitRanger,
    # ServiceAccount, PodSecurity, ResourceQuota, the webhooks and policies, ...), as on a real
    # cluster. The kubelet of every fake node is kwok's server on loopback, reached by
    # InternalIP only, so no request ever leaves 127.0.0.1.
    proc_start kube-apiserver "$LOG_DIR/kube-apiserver.log" "$KUBE_K8S_DIR/bin/kube-apiserver" \
      --etcd-servers "http://127.0.0.1:$MYSIMBDP_ETCD_PORT" \
      --bind-address 127.0.0.1 --advertise-address 127.0.0.1 \
      --secure-port "$MYSIMBDP_APISERVER_PORT" \
      --tls-cert-file "$pki/apiserver.crt" --tls-private-key-file "$pki/apiserver.key" \
      --client-ca-file "$pki/ca.crt" \
      --requestheader-client-ca-file "$pki/front-proxy-ca.crt" \
      --requestheader-allowed-names front-proxy-client \
      --requestheader-username-headers X-Remote-User \
      --requestheader-group-headers X-Remote-Group \
      --requestheader-extra-headers-prefix X-Remote-Extra- \
      --proxy-client-cert-file "$pki/front-proxy-client.crt" \
      --proxy-client-key-file "$pki/front-proxy-client.key" \
      --authorization-mode Node,RBAC \
      --service-cluster-ip-range "$KUBE_SERVICE_CIDR" \
      --service-account-issuer https://kubernetes.default.svc.cluster.local \
      --service-account-key-file "$pki/service-account.pub" \
      --service-account-signing-key-file "$pki/service-account.key" \
      --kubelet-client-certificate "$pki/apiserver-kubelet-client.crt" \
      --kubelet-client-key "$pki/apiserver-kubelet-client.key" \
      --kubelet-certificate-authority "$pki/ca.crt" \
      --kubelet-preferred-address-types InternalIP \
      --endpoint-reconciler-type none \
      --enable-aggregator-routing=true \
      --allow-privileged=true --profiling=false
  fi
  wait_until "kube-apiserver on 127.0.0.1:$MYSIMBDP_APISERVER_PORT" 120 \
    "$LOG_DIR/kube-apiserver.log" kube-apiserver _kube_apiserver_ready
}

_kube_start_controller_manager() {
  if ! proc_alive kube-controller-manager; then
    require_free_port "$MYSIMBDP_CONTROLLER_MANAGER_PORT" kube-controller-manager MYSIMBDP_CONTROLLER_MANAGER_PORT
    local pki=$KUBE_PKI_DIR kubeconfig=$KUBE_CONFIGS_DIR/controller-manager.kubeconfig
    mkdir -p "$KUBE_STATE_DIR/controller-manager"
    # Leader election (here and in the scheduler) is off: there is only ever one instance, and
    # with it on a lost apiserver makes the process exit after the renew deadline, and a
    # restarted one waits out its predecessor's lease before doing anything.
    proc_start kube-controller-manager "$LOG_DIR/kube-controller-manager.log" \
      "$KUBE_K8S_DIR/bin/kube-controller-manager" \
      --kubeconfig "$kubeconfig" \
      --authentication-kubeconfig "$kubeconfig" --authorization-kubeconfig "$kubeconfig" \
      --bind-address 127.0.0.1 --secure-port "$MYSIMBDP_CONTROLLER_MANAGER_PORT" \
      --cert-dir "$KUBE_STATE_DIR/controller-manager" \
      --cluster-name "$KUBE_CLUSTER_NAME" \
      --use-service-account-credentials=true \
      --service-account-private-key-file "$pki/service-account.key" \
      --root-ca-file "$pki/ca.crt" \
      --cluster-signing-cert-file "$pki/ca.crt" --cluster-signing-key-file "$pki/ca.key" \
      --service-cluster-ip-range "$KUBE_SERVICE_CIDR" \
      --leader-elect=false --profiling=false
  fi
  wait_until "kube-controller-manager on 127.0.0.1:$MYSIMBDP_CONTROLLER_MANAGER_PORT" 60 \
    "$LOG_DIR/kube-controller-manager.log" kube-controller-manager \
    _kube_component_healthy "$MYSIMBDP_CONTROLLER_MANAGER_PORT"
}

_kube_start_scheduler() {
  if ! proc_alive kube-scheduler; then
    require_free_port "$MYSIMBDP_SCHEDULER_PORT" kube-scheduler MYSIMBDP_SCHEDULER_PORT
    local kubeconfig=$KUBE_CONFIGS_DIR/scheduler.kubeconfig
    mkdir -p "$KUBE_STATE_DIR/scheduler"
    proc_start kube-scheduler "$LOG_DIR/kube-scheduler.log" "$KUBE_K8S_DIR/bin/kube-scheduler" \
      --kubeconfig "$kubeconfig" \
      --authentication-kubeconfig "$kubeconfig" --authorization-kubeconfig "$kubeconfig" \
      --bind-address 127.0.0.1 --secure-port "$MYSIMBDP_SCHEDULER_PORT" \
      --cert-dir "$KUBE_STATE_DIR/scheduler" \
      --leader-elect=false --profiling=false
  fi
  wait_until "kube-scheduler on 127.0.0.1:$MYSIMBDP_SCHEDULER_PORT" 60 \
    "$LOG_DIR/kube-scheduler.log" kube-scheduler _kube_component_healthy "$MYSIMBDP_SCHEDULER_PORT"
}

_kube_stages_sum() { sha256sum "$KUBE_STAGES_FILE" | cut -d' ' -f1; }

_kube_start_kwok() {
  [ -f "$KUBE_STAGES_FILE" ] || die "missing KWOK stage configuration $KUBE_STAGES_FILE"
  local sum_file=$RUN_DIR/kwok.stages.sha256
  # kwok reads its stages once, at start: pick up an edited stage file by restarting it.
  if proc_alive kwok && [ "$(cat "$sum_file" 2>/dev/null)" != "$(_kube_stages_sum)" ]; then
    log "the KWOK stages changed; restarting kwok"
    proc_stop kwok
  fi
  if ! proc_alive kwok; then
    require_free_port "$MYSIMBDP_KWOK_PORT" kwok MYSIMBDP_KWOK_PORT
    mkdir -p "$KUBE_STATE_DIR/kwok"
    _kube_stages_sum >"$sum_file"
    # kwok only plays the pods of nodes whose Lease it holds, under an identity that is new in
    # every process; a restarted kwok would leave pods Pending until the dead one's leases
    # expire. Nothing else holds them, so they are dropped for it to take at once.
    # shellcheck disable=SC2046 # node names are single words
    _kube_kubectl -n kube-node-lease delete lease --ignore-not-found $(_kube_node_names) >/dev/null ||
      log "could not drop the fake nodes' leases; pods may wait up to 40s for kwok"
    # KWOK_WORKDIR keeps a user's ~/.kwok/kwok.yaml from being merged into the stages. The
    # server doubles as the kubelet of every fake node (logs, exec), on loopback.
    KWOK_WORKDIR=$KUBE_STATE_DIR/kwok proc_start kwok "$LOG_DIR/kwok.log" "$KUBE_KWOK_DIR/bin/kwok" \
      --kubeconfig "$KUBE_CONFIGS_DIR/kwok.kubeconfig" \
      --config "$KUBE_STAGES_FILE" \
      --manage-nodes-with-annotation-selector kwok.x-k8s.io/node=fake \
      --node-ip 127.0.0.1 --node-port "$MYSIMBDP_KWOK_PORT" \
      --server-address "127.0.0.1:$MYSIMBDP_KWOK_PORT" \
      --tls-cert-file "$KUBE_PKI_DIR/kwok-serving.crt" \
      --tls-private-key-file "$KUBE_PKI_DIR/kwok-serving.key" \
      --node-lease-duration-seconds 40
  fi
  wait_until "kwok on 127.0.0.1:$MYSIMBDP_KWOK_PORT" 30 "$LOG_DIR/kwok.log" kwok _kube_kwok_healthy
}

# Fake nodes sized like a mid-size worker, untainted so that ordinary pods land there. kwok
# manages the nodes carrying its annotation; the label lets a test select or avoid them.
_kube_nodes_manifest() {
  local i=0 name
  for name in $(_kube_node_names); do
    cat <<NODE
---
apiVersion: v1
kind: Node
metadata:
  name: $name
  annotations:
    kwok.x-k8s.io/node: fake
    node.alpha.kubernetes.io/ttl: "0"
  labels:
    type: kwok
    kubernetes.io/arch: amd64
    kubernetes.io/os: linux
    kubernetes.io/hostname: $name
    node-role.kubernetes.io/worker: ""
spec:
  podCIDR: $KUBE_POD_CIDR_PREFIX.$i.0/24
  podCIDRs:
  - $KUBE_POD_CIDR_PREFIX.$i.0/24
status:
  allocatable:
    cpu: "32"
    memory: 128Gi
    ephemeral-storage: 500Gi
    pods: "110"
  capacity:
    cpu: "32"
    memory: 128Gi
    ephemeral-storage: 500Gi
    pods: "110"
  nodeInfo:
    architecture: amd64
    operatingSystem: linux
    osImage: kwok $KWOK_VERSION
    kubeletVersion: $K8S_VERSION
    containerRuntimeVersion: kwok://$KWOK_VERSION
NODE
    i=$((i + 1))
  done
}

_kube_nodes() {
  # Server-side apply leaves nodes that exist as they are (status is not applied to them)
  # and creates missing ones with their capacity.
  _kube_nodes_manifest | _kube_kubectl apply --server-side --field-manager mysimbdp-stack -f - >/dev/null ||
    die "creating the fake nodes failed"
  wait_until "fake nodes $(_kube_node_names | paste -sd' ') Ready" 60 "$LOG_DIR/kwok.log" kwok _kube_nodes_ready
}

# ---------------------------------------------------------------------------------------------
# Entry points

# Every port of a process that is about to start is checked before anything starts, so that a
# taken port fails the run at once instead of after half the stack is up. Each start checks
# again, right before it binds.
_kube_preflight() {
  proc_alive etcd || {
    require_free_port "$MYSIMBDP_ETCD_PORT" etcd MYSIMBDP_ETCD_PORT
    require_free_port "$MYSIMBDP_ETCD_PEER_PORT" "etcd (peer)" MYSIMBDP_ETCD_PEER_PORT
  }
  proc_alive kube-apiserver ||
    require_free_port "$MYSIMBDP_APISERVER_PORT" kube-apiserver MYSIMBDP_APISERVER_PORT
  proc_alive kube-controller-manager ||
    require_free_port "$MYSIMBDP_CONTROLLER_MANAGER_PORT" kube-controller-manager MYSIMBDP_CONTROLLER_MANAGER_PORT
  proc_alive kube-scheduler ||
    require_free_port "$MYSIMBDP_SCHEDULER_PORT" kube-scheduler MYSIMBDP_SCHEDULER_PORT
  proc_alive kwok || require_free_port "$MYSIMBDP_KWOK_PORT" kwok MYSIMBDP_KWOK_PORT
}

kube_up() {
  _kube_vars
  local start=$SECONDS
  kube_build || return 1
  _kube_preflight
  mkdir -p "$KUBE_STATE_DIR" "$KUBE_CONFIGS_DIR"
  chmod 700 "$KUBE_STATE_DIR"
  _kube_pki
  _kube_kubeconfigs
  _kube_start_etcd
  _kube_start_apiserver
  _kube_start_controller_manager
  _kube_start_scheduler
  _kube_start_kwok
  _kube_nodes
  # The service-account controller makes `default`; pods cannot be admitted before it exists.
  wait_until "the default service account" 60 "$LOG_DIR/kube-controller-manager.log" \
    kube-controller-manager _kube_default_sa_exists
  log "kubernetes $K8S_VERSION is up at https://127.0.0.1:$MYSIMBDP_APISERVER_PORT in $((SECONDS - start))s (KUBECONFIG=$KUBE_ADMIN_KUBECONFIG)"
}

kube_down() {
  _kube_vars
  local i
  for ((i = ${#_KUBE_PROCS[@]} - 1; i >= 0; i--)); do
    proc_stop "${_KUBE_PROCS[i]}"
  done
  rm -f "$RUN_DIR/kwok.stages.sha256"
  if [ "${WIPE:-0}" = 1 ]; then
    log "removing $KUBE_STATE_DIR and $KUBE_ADMIN_KUBECONFIG"
    rm -rf "$KUBE_STATE_DIR" "$KUBE_ADMIN_KUBECONFIG"
  fi
}

kube_down_wipe() { WIPE=1 kube_down; }

kube_status() {
  _kube_vars
  local name endpoint
  for name in "${_KUBE_PROCS[@]}"; do
    case $name in
      etcd) endpoint=http://127.0.0.1:$MYSIMBDP_ETCD_PORT ;;
      kube-apiserver) endpoint=https://127.0.0.1:$MYSIMBDP_APISERVER_PORT ;;
      kube-controller-manager) endpoint=https://127.0.0.1:$MYSIMBDP_CONTROLLER_MANAGER_PORT/healthz ;;
      kube-scheduler) endpoint=https://127.0.0.1:$MYSIMBDP_SCHEDULER_PORT/healthz ;;
      kwok) endpoint=http://127.0.0.1:$MYSIMBDP_KWOK_PORT/healthz ;;
    esac
    if proc_alive "$name" 2>/dev/null; then
      status_row "$name" running "pid $(proc_pid "$name")  $endpoint"
    else
      status_row "$name" stopped "$endpoint"
    fi
  done
}

# Values are single-quoted so that the file can be sourced whatever they hold.
kube_env() {
  _kube_vars
  local kv
  for kv in \
    "KUBECONFIG=$KUBE_ADMIN_KUBECONFIG" \
    "MYSIMBDP_KUBECONFIG=$KUBE_ADMIN_KUBECONFIG" \
    "MYSIMBDP_KUBE_CONTEXT=$KUBE_CLUSTER_NAME" \
    "MYSIMBDP_KUBE_SERVER=https://127.0.0.1:$MYSIMBDP_APISERVER_PORT" \
    "MYSIMBDP_KUBE_CA=$KUBE_PKI_DIR/ca.crt" \
    "MYSIMBDP_KUBE_VERSION=$K8S_VERSION" \
    "MYSIMBDP_KUBE_BIN=$KUBE_K8S_DIR/bin" \
    "MYSIMBDP_KUBECTL=$KUBE_K8S_DIR/bin/kubectl" \
    "MYSIMBDP_ETCD_BIN=$KUBE_ETCD_DIR/bin" \
    "MYSIMBDP_KWOK_BIN=$KUBE_KWOK_DIR/bin" \
    "MYSIMBDP_HELM=$KUBE_HELM_DIR/bin/helm" \
    "MYSIMBDP_KWOK_NODES=$(_kube_node_names | paste -sd' ')" \
    "MYSIMBDP_KWOK_NODE_SELECTOR=type=kwok" \
    "MYSIMBDP_FAKE_TERMINATION_MESSAGE_ANNOTATION=mysimbdp.io/fake-termination-message" \
    "MYSIMBDP_FAKE_EXIT_CODE_ANNOTATION=mysimbdp.io/fake-exit-code" \
    "MYSIMBDP_FAKE_RUN_DURATION_ANNOTATION=mysimbdp.io/fake-run-duration"; do
    local val=${kv#*=}
    printf "export %s='%s'\n" "${kv%%=*}" "${val//\'/\'\\\'\'}"
  done
}

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
  set -euo pipefail
  # shellcheck source=lib.sh
  . "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
  case ${1:-} in
    build) kube_build ;;
    up) kube_up ;;
    down) kube_down ;;
    wipe) kube_down_wipe ;;
    status) kube_status ;;
    env) kube_env ;;
    *)
      echo "usage: $0 build|up|down|wipe|status|env" >&2
      exit 2
      ;;
  esac
fi
