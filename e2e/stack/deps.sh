# shellcheck shell=bash
# Tools and system packages the project needs to build and run its stack. Toolchains that a
# package manager cannot provide at the right version (Go, Rust, a JDK, Maven) are checked and
# named; Debian packages (C libraries the Rust crates link, PostgreSQL) are installed with apt.
# Sourced after lib.sh; defines ensure_deps.

# Debian packages and a file each one provides, to tell whether it is installed.
_DEPS_APT=(
  "pkg-config:/usr/bin/pkg-config"
  "libssl-dev:/usr/include/openssl/ssl.h"
  "zlib1g-dev:/usr/include/zlib.h"
  "make:/usr/bin/make"
  "gcc:/usr/bin/gcc"
  "g++:/usr/bin/g++"
  "openssl:/usr/bin/openssl"
  "iproute2:/usr/bin/ss"
  "curl:/usr/bin/curl"
  "ca-certificates:/etc/ssl/certs/ca-certificates.crt"
  # The real node (node.sh): the OCI runtime, the CNI plugins, the forwarder that gives pods
  # the loopback-only servers, a static busybox for the toolbox image and ldd for app images.
  "runc:/usr/sbin/runc"
  "containernetworking-plugins:/usr/lib/cni/bridge"
  "socat:/usr/bin/socat"
  "busybox-static:/bin/busybox"
  "libc-bin:/usr/bin/ldd"
  "binutils:/usr/bin/objcopy"
)

# apt_install PKG...: installs missing Debian packages, refreshing the package lists once when
# a package is unknown (a fresh machine may have none).
apt_install() {
  local sudo=()
  [ "$(id -u)" = 0 ] || sudo=(sudo -n)
  export DEBIAN_FRONTEND=noninteractive
  log "installing Debian packages: $*"
  if ! "${sudo[@]}" apt-get install -y -q --no-install-recommends "$@" >"$LOG_DIR/apt.log" 2>&1; then
    "${sudo[@]}" apt-get update -q >>"$LOG_DIR/apt.log" 2>&1 || true
    "${sudo[@]}" apt-get install -y -q --no-install-recommends "$@" >>"$LOG_DIR/apt.log" 2>&1 || {
      log_tail "$LOG_DIR/apt.log"
      die "apt-get could not install $*; install them by hand and run again"
    }
  fi
}

_deps_need_tool() {
  local tool=$1 why=$2
  command -v "$tool" >/dev/null 2>&1 || die "$tool is not installed; it is needed $why"
}

ensure_deps() {
  local missing=() entry
  for entry in "${_DEPS_APT[@]}"; do
    [ -e "${entry#*:}" ] || missing+=("${entry%%:*}")
  done
  [ ${#missing[@]} -eq 0 ] || apt_install "${missing[@]}"
  _deps_need_tool go "to build the Kubernetes control plane, KWOK, helm and FerretDB (Go 1.25 or newer)"
  _deps_need_tool java "to run Kafka (a JDK 17 or newer)"
  _deps_need_tool mvn "to fetch Kafka's jars from Maven Central"
  _deps_need_tool cargo "to build the operator (install Rust with rustup)"
  _deps_need_tool python3 "to write the node's OCI images (e2e/stack/images/oci-image.py)"
}
