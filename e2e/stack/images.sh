#!/usr/bin/env bash
# Container images of the platform and the sample tenants, made without a registry or a base
# image: the binaries the workspace built (target/debug, the profile the tests and the demo
# use), the shared libraries they load and a passwd entry for the non-root user, written as
# OCI archives by images/oci-image.py and imported into the real node's containerd, under the
# references the chart and the samples name (so pods find them with pull policy IfNotPresent
# or Never).
#
#   images.sh build   build every image and import it (what `make images` runs; needs the
#                     stack up and `cargo build --locked --workspace --bins` done)
#   images.sh plan    print, per image, its references, Dockerfile, binaries and entrypoint
#
# The Dockerfiles beside the crates stay the way to build these images with a registry; the
# table below copies the same binaries (e2e/tests/images.rs checks it).
set -euo pipefail

. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
. "$STACK_DIR/kube.sh"
. "$STACK_DIR/node.sh"

# The chart's image for KEY (image or stream.sidecarImage): its repository and the chart's
# appVersion as the tag, as the chart's helpers compute it when the tag value is empty.
_images_chart_ref() {
  local chart=$REPO_DIR/charts/mysimbdp key=$1 repo tag app
  # The block of KEY ends at the next line indented no deeper than KEY itself.
  read -r repo tag < <(awk -v key="$key" '
    function value() { v = $2; gsub(/"/, "", v); return v }
    key == "image" && /^image:/ { inside = 1; depth = 0; next }
    key == "sidecar" && /^  sidecarImage:/ { inside = 1; depth = 2; next }
    inside && /^ *[^ #]/ && match($0, /^ */) && RLENGTH <= depth { inside = 0 }
    inside && /^ +repository:/ { repo = value() }
    inside && /^ +tag:/ { tag = value() }
    END { print repo, tag }
  ' "$chart/values.yaml")
  app=$(awk '/^appVersion:/ { gsub(/"/, "", $2); print $2 }' "$chart/Chart.yaml")
  [ -n "$repo" ] && [ -n "$app" ] || die "cannot read the $key image from $chart/values.yaml and Chart.yaml"
  printf '%s:%s\n' "$repo" "${tag:-$app}"
}

# One line per image: references (space-separated) | Dockerfile | binaries | entrypoint.
_images_table() {
  printf '%s|%s|%s|%s\n' \
    "$(_images_chart_ref image)" operator/Dockerfile "mysimbdp-operator kubectl-mysimbdp" mysimbdp-operator \
    "$(_images_chart_ref sidecar)" operator/sidecar/Dockerfile mysimbdp-sidecar mysimbdp-sidecar \
    "registry.example.com/acme-air/flights-ingest:0.1.0" tenant-samples/acme-air/app/Dockerfile \
    acme-flights-ingest acme-flights-ingest \
    "registry.example.com/nimbus/weather-ingest:0.1.0 registry.example.com/nimbus/stations-ingest:0.1.0" \
    tenant-samples/nimbus-weather/app/Dockerfile \
    "nimbus-weather-ingest nimbus-stations-ingest nimbus-weather-publish" nimbus-weather-ingest
}

images_plan() {
  local refs dockerfile bins entry
  while IFS='|' read -r refs dockerfile bins entry; do
    printf 'image\t%s\tdockerfile\t%s\tbinaries\t%s\tentrypoint\t%s\tuser\t65532:65532\n' \
      "$refs" "$dockerfile" "$bins" "$entry"
  done < <(_images_table)
}

images_build() {
  _node_vars
  local target=${CARGO_TARGET_DIR:-$REPO_DIR/target}/debug
  proc_alive node-containerd && _node_containerd_healthy ||
    die "the node's containerd is not running; start the stack with: make stack-up"
  local dir=$NODE_STATE_DIR/images
  mkdir -p "$dir"
  local refs dockerfile bins entry bin start=$SECONDS
  local -a args
  while IFS='|' read -r refs dockerfile bins entry; do
    local first=${refs%% *} name
    name=${first##*/}
    name=${name%%:*}
    args=(--out "$dir/$name.tar" --entrypoint "$entry" --user 65532:65532 --with-libraries --strip-debug)
    for bin in $bins; do
      [ -x "$target/$bin" ] ||
        die "$target/$bin is missing; build the workspace first: cargo build --locked --workspace --bins"
      args+=(--bin "$target/$bin")
    done
    # shellcheck disable=SC2086 # references are single words
    for ref in $refs; do args+=(--name "$ref"); done
    local t0=$SECONDS digest
    digest=$(python3 "$STACK_DIR/images/oci-image.py" "${args[@]}") || die "writing the image $first failed"
    # shellcheck disable=SC2086
    node_import_image "$dir/$name.tar" "$digest" $refs
    log "images: $refs ($(du -m "$dir/$name.tar" | cut -f1) MB, $((SECONDS - t0))s) $digest"
    rm -f "$dir/$name.tar"
  done < <(_images_table)
  log "images: built and imported in $((SECONDS - start))s"
}

case "${1:-}" in
  build) images_build ;;
  plan) images_plan ;;
  *)
    sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
    ;;
esac
