#!/usr/bin/env bash
# mysimbdp on a kind cluster, for machines with Docker: builds the images, loads them into the
# cluster, starts stand-ins for Kafka and MongoDB (services.yaml; or uses yours), installs the
# chart, and checks the platform end to end with the sample tenants.
#
#   e2e/kind/kind.sh up      cluster, images, shared services, chart (idempotent)
#   e2e/kind/kind.sh test    sample tenants onboard, a stream app runs, a staged file is ingested;
#                            then the chart tests that need only a cluster
#   e2e/kind/kind.sh down    delete the cluster
#
# Needs docker, kind, kubectl and helm on PATH, and cargo for the chart tests. Settings:
#   KIND_CLUSTER      cluster name (mysimbdp)
#   KAFKA_BOOTSTRAP   your Kafka (SASL/SCRAM-SHA-512, an admin super user); with
#   KAFKA_ADMIN_PASSWORD, COREDMS_URL and COREDMS_ADMIN_PASSWORD set, services.yaml is skipped
#   KAFKA_ADMIN_USER (admin), COREDMS_ADMIN_USER (mysimbdp_admin)
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
CLUSTER=${KIND_CLUSTER:-mysimbdp}
NODE=$CLUSTER-control-plane
NS=mysimbdp-system
STAGING=/var/lib/mysimbdp/staging
OPERATOR_IMAGE=ghcr.io/mysimbdp/mysimbdp-operator:dev
SIDECAR_IMAGE=ghcr.io/mysimbdp/mysimbdp-sidecar:dev
ACME_IMAGE=registry.example.com/acme-air/flights-ingest:0.1.0
NIMBUS_IMAGES=(registry.example.com/nimbus/weather-ingest:0.1.0 registry.example.com/nimbus/stations-ingest:0.1.0)
KCTX=(--context "kind-$CLUSTER")

log() { printf '[kind] %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }
k() { kubectl "${KCTX[@]}" "$@"; }

need() {
  local tool
  for tool in "$@"; do command -v "$tool" >/dev/null || die "$tool is needed on PATH"; done
}

# A Secret with one random `password`, unless it exists.
password_secret() {
  local ns=$1 name=$2
  k -n "$ns" get secret "$name" >/dev/null 2>&1 ||
    k -n "$ns" create secret generic "$name" --from-literal=password="$(openssl rand -hex 16)" >/dev/null
}

secret_value() { k -n "$1" get secret "$2" -o jsonpath='{.data.password}' | base64 -d; }

# The claim `mysimbdp-staging` in namespace $1, bound to the node's staging folder: the operator
# and every tenant namespace see the same files (one node, so a hostPath volume is shared).
staging_claim() {
  local ns=$1
  k apply -f - >/dev/null <<YAML
apiVersion: v1
kind: PersistentVolume
metadata:
  name: mysimbdp-staging-$ns
spec:
  capacity: {storage: 10Gi}
  accessModes: [ReadWriteOnce]
  persistentVolumeReclaimPolicy: Retain
  storageClassName: mysimbdp-staging
  claimRef: {namespace: $ns, name: mysimbdp-staging}
  hostPath: {path: $STAGING, type: Directory}
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata:
  name: mysimbdp-staging
  namespace: $ns
spec:
  accessModes: [ReadWriteOnce]
  storageClassName: mysimbdp-staging
  volumeName: mysimbdp-staging-$ns
  resources: {requests: {storage: 10Gi}}
YAML
}

up() {
  need docker kind kubectl helm openssl
  kind get clusters | grep -qx "$CLUSTER" || kind create cluster --name "$CLUSTER" --wait 120s
  # The staging folder on the node, owned by the user every mysimbdp container runs as.
  docker exec "$NODE" sh -c "mkdir -p $STAGING && chown 65532:65532 $STAGING"

  log "building the images (the first build compiles librdkafka and takes a while)"
  docker build -f "$REPO/operator/Dockerfile" -t "$OPERATOR_IMAGE" "$REPO"
  docker build -f "$REPO/operator/sidecar/Dockerfile" -t "$SIDECAR_IMAGE" "$REPO"
  docker build -f "$REPO/tenant-samples/acme-air/app/Dockerfile" -t "$ACME_IMAGE" "$REPO"
  docker build -f "$REPO/tenant-samples/nimbus-weather/app/Dockerfile" -t "${NIMBUS_IMAGES[0]}" "$REPO"
  docker tag "${NIMBUS_IMAGES[0]}" "${NIMBUS_IMAGES[1]}"
  kind load docker-image --name "$CLUSTER" "$OPERATOR_IMAGE" "$SIDECAR_IMAGE" "$ACME_IMAGE" "${NIMBUS_IMAGES[@]}"

  k create namespace "$NS" --dry-run=client -o yaml | k apply -f - >/dev/null
  local values=(-f "$HERE/values.yaml")
  if [ -n "${KAFKA_BOOTSTRAP:-}" ]; then
    log "using Kafka at $KAFKA_BOOTSTRAP and coredms at ${COREDMS_URL:?set COREDMS_URL too}"
    values+=(--set "kafka.bootstrap=${KAFKA_BOOTSTRAP//,/\\,}" --set "coredms.url=$COREDMS_URL")
    values+=(--set "kafka.adminUser=${KAFKA_ADMIN_USER:-admin}" --set "coredms.adminUser=${COREDMS_ADMIN_USER:-mysimbdp_admin}")
    values+=(--set-json 'tenantLimits.appEgress=[]')
    : "${KAFKA_ADMIN_PASSWORD:?set KAFKA_ADMIN_PASSWORD}" "${COREDMS_ADMIN_PASSWORD:?set COREDMS_ADMIN_PASSWORD}"
  else
    log "starting Kafka and MongoDB stand-ins (services.yaml)"
    for ns in kafka coredms; do k create namespace "$ns" --dry-run=client -o yaml | k apply -f - >/dev/null; done
    password_secret kafka kafka-admin
    password_secret coredms mongodb-admin
    k apply -f "$HERE/services.yaml" >/dev/null
    k -n kafka rollout status statefulset/kafka --timeout=300s
    k -n coredms rollout status deployment/mongodb --timeout=300s
    KAFKA_ADMIN_PASSWORD=$(secret_value kafka kafka-admin)
    COREDMS_ADMIN_PASSWORD=$(secret_value coredms mongodb-admin)
  fi
  k -n "$NS" create secret generic mysimbdp-admin \
    --from-literal=kafka-admin-password="$KAFKA_ADMIN_PASSWORD" \
    --from-literal=coredms-admin-password="$COREDMS_ADMIN_PASSWORD" \
    --dry-run=client -o yaml | k apply -f - >/dev/null
  staging_claim "$NS"

  log "installing the chart"
  helm --kube-context "kind-$CLUSTER" upgrade --install mysimbdp "$REPO/charts/mysimbdp" \
    --namespace "$NS" "${values[@]}" --wait --timeout 5m
  log "up: kubectl --context kind-$CLUSTER get tenants"
}

run_tests() {
  need kubectl helm cargo
  local samples=$REPO/tenant-samples tenant
  k get crd tenants.mysimbdp.io >/dev/null || die "the chart is not installed; run $0 up"

  log "onboarding the sample tenants"
  for tenant in acme-air nimbus-weather; do
    k apply -f "$samples/$tenant/tenant.yaml"
    k wait "tenant/$tenant" --for=condition=Ready --timeout=300s
    staging_claim "tenant-$tenant"
  done

  log "a stream app runs beside its metrics sidecar"
  k apply -f "$samples/nimbus-weather/stream-observations.yaml"
  k -n tenant-nimbus-weather wait deployment/observations --for=condition=Available --timeout=300s

  log "a staged file is checked and ingested by a batch run (a Job)"
  k apply -f "$samples/acme-air/batch-airlines.yaml"
  local data pod
  data=$("$samples/fetch-data.sh" | tail -n 1)
  pod=$(k -n "$NS" get lease mysimbdp -o jsonpath='{.spec.holderIdentity}')
  pod=${pod%_*}
  # Written under a partial name and renamed, as a careful uploader does.
  k -n "$NS" exec -i "$pod" -- sh -c \
    "mkdir -p $STAGING/acme-air/incoming && cat > $STAGING/acme-air/incoming/airlines.csv.part &&
     mv $STAGING/acme-air/incoming/airlines.csv.part $STAGING/acme-air/incoming/airlines.csv" \
    <"$data/airlines.csv"
  k -n tenant-acme-air wait batchingestapp/airlines --for=jsonpath='{.status.files.ingested}'=1 --timeout=300s
  k get tenants,batchingestapps,streamingestapps -A

  log "chart tests against the cluster"
  local env_file kubeconfig bin
  env_file=$(mktemp) kubeconfig=$(mktemp) bin=$(mktemp -d)
  kind get kubeconfig --name "$CLUSTER" >"$kubeconfig"
  ln -s "$(command -v kubectl)" "$bin/kubectl"
  printf "export KUBECONFIG='%s'\nexport MYSIMBDP_KUBE_BIN='%s'\nexport MYSIMBDP_HELM='%s'\n" \
    "$kubeconfig" "$bin" "$(command -v helm)" >"$env_file"
  # The other chart tests need KWOK's fake pods or the local stack's Kafka; they run with `make test`.
  (cd "$REPO" && MYSIMBDP_ENV_FILE=$env_file cargo test --locked -p mysimbdp-e2e --test chart -- \
    the_charts_crds helm_lint every_rendered a_wrong_value)
  rm -rf "$env_file" "$kubeconfig" "$bin"
  log "test: passed"
}

down() {
  need kind
  kind delete cluster --name "$CLUSTER"
}

case ${1:-} in
  up) up ;;
  test) run_tests ;;
  down) down ;;
  *)
    sed -n '2,16p' "$0" >&2
    exit 2
    ;;
esac
