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
  # Virtual addresses only: no kube-proxy runs, so nothing ever routes to them.
  KUBE_SERVICE_CIDR=${MYSIMBDP_SERVICE_CIDR:-10.96.0.0/16}
  KUBE_POD_CIDR_PREFIX=${MYSIMBDP_POD_CIDR_PREFIX:-10.244}
  KUBE_NODE_COUNT=${MYSIMBDP_KWOK_NODE_COUNT:-2}
  KUBE_STAGES_FILE=$STACK_DIR/kwok-stages.yaml
  KUBE_ETCD_DIR=$MYSIMBDP_CACHE/etcd-$ETCD_VERSION
  KUBE_K8S_DIR=$MYSIMBDP_CACHE/kubernetes-$K8S_VERSION
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
# static binaries, and at most MYSIMBDP_BUILD_JOBS packages compiled at once, since compiling
# kubernetes on two cores already saturates them and more jobs only add memory pressure.
_kube_go() {
  GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS='-mod=mod -buildvcs=false' go "$@"
}

# _kube_modfile MODULE VERSION: path of the module's go.mod in Go's module cache.
_kube_modfile() {
  local file
  file=$(cd / && GOTOOLCHAIN=local GOFLAGS= go mod download -json "$1@$2" |
    sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",\{0,1\}$/\1/p')
  [ -n "$file" ] && [ -f "$file" ] || {
    echo "cannot download $1@$2" >&2
    return 1
  }
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

_kube_build_jobs() { printf '%s\n' "${MYSIMBDP_BUILD_JOBS:-$(nproc)}"; }

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
  (cd "$src" && _kube_go build -p "$(_kube_build_jobs)" -trimpath -ldflags "$ldflags" \
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
  local ldflags="-s -w" key val
  for kv in "gitVersion=$K8S_VERSION" "gitMajor=$major" "gitMinor=$minor" \
    "gitCommit=${MYSIMBDP_K8S_GIT_COMMIT:-}" "gitTreeState=clean" \
    "buildDate=$(date -u +%Y-%m-%dT%H:%M:%SZ)"; do
    key=${kv%%=*}
    val=${kv#*=}
    ldflags+=" -X k8s.io/component-base/version.$key=$val -X k8s.io/client-go/pkg/version.$key=$val"
  done
  mkdir -p "$out/bin"
  # One invocation for the four binaries so the packages they share are compiled once. The
  # tags are those of kubernetes' own release builds.
  (cd "$src" && _kube_go build -p "$(_kube_build_jobs)" -trimpath -tags selinux,notest,grpcnotrace \
    -ldflags "$ldflags" -o "$out/bin/" \
    k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager \
    k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kubectl) || return 1
  "$out/bin/kube-apiserver" --version && "$out/bin/kubectl" version --client
}

_kube_build_kwok() {
  local out=$1 src=$1/src
  _kube_wrapper_module "$src" sigs.k8s.io/kwok "$KWOK_VERSION" || return 1
  cat "$src/go.mod"
  local ldflags="-s -w -X sigs.k8s.io/kwok/pkg/consts.Version=$KWOK_VERSION"
  ldflags+=" -X sigs.k8s.io/kwok/pkg/consts.KubeVersion=$K8S_VERSION"
  mkdir -p "$out/bin"
  (cd "$src" && _kube_go build -p "$(_kube_build_jobs)" -trimpath -ldflags "$ldflags" \
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
  (cd "$src" && _kube_go build -p "$(_kube_build_jobs)" -trimpath -ldflags "$ldflags" \
    -o "$out/bin/helm" helm.sh/helm/v3/cmd/helm) || return 1
  "$out/bin/helm" version
}

kube_build() {
  _kube_vars
  command -v go >/dev/null || die "go is not installed; the control plane is built from Go modules"
  cached_build etcd "$ETCD_VERSION" _kube_build_etcd >/dev/null || return 1
  cached_build kubernetes "$K8S_VERSION" _kube_build_kubernetes >/dev/null || return 1
  cached_build kwok "$KWOK_VERSION" _kube_build_kwok >/dev/null || return 1
  cached_build helm "$HELM_VERSION" _kube_build_helm >/dev/null || return 1
}
