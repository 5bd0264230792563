#!/usr/bin/env bash
# The platform installed on the local stack the way a platform team installs it: the Helm chart
# charts/mysimbdp, its operator running as a pod on the stack's real node with the kubernetes
# runtime (tenants' batch runs as Jobs and stream apps as Deployments on that node), staging in
# the stack's S3 store.
#
#   e2e/platform.sh install [PREFIX]   (re)install the release; PREFIX is the staging prefix in
#                                       the bucket (default: platform); waits until it is Ready
#   e2e/platform.sh uninstall          remove the release (the tenants' pods keep running
#                                       until their tenants are offboarded)
#   e2e/platform.sh status             the release and its pods
#   e2e/platform.sh logs               the operator's log
#   e2e/platform.sh staging-url        the staging URL of the installed release
#   e2e/platform.sh user NAME [GROUP]  a kubeconfig for user NAME (in GROUP), as a cluster's
#                                       identity provider would issue one: prints its path
#   e2e/platform.sh local-api [PORT]   register the tenant API of an operator running on this
#                                       machine (the local runtime); prints the operator's
#                                       environment for it (export lines)
#
# The images must be in the node's containerd first (make images). Platform team steps, in
# order: the namespace, the admin credentials Secret, the staging credentials Secret, then
# `helm upgrade --install` with values that name the stack's endpoints as pods reach them.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
STACK=$REPO/e2e/stack/stack.sh
NAMESPACE=${MYSIMBDP_PLATFORM_NAMESPACE:-mysimbdp-system}
RELEASE=${MYSIMBDP_PLATFORM_RELEASE:-mysimbdp}
TIMEOUT=${MYSIMBDP_PLATFORM_TIMEOUT:-180s}

# shellcheck disable=SC1090
. "$("$STACK" env)"
kubectl() { "$MYSIMBDP_KUBECTL" "$@"; }
helm() {
    HELM_CACHE_HOME=$MYSIMBDP_STATE/helm/cache HELM_CONFIG_HOME=$MYSIMBDP_STATE/helm/config \
        HELM_DATA_HOME=$MYSIMBDP_STATE/helm/data "$MYSIMBDP_HELM" "$@"
}

# The values of the local stack: endpoints as pods reach them (the node's bridge address), the
# operator and the tenants' pods on the real node, images imported without a registry.
values() {
    local prefix=$1 label=${MYSIMBDP_NODE_SELECTOR%%=*} value=${MYSIMBDP_NODE_SELECTOR#*=}
    local taint_key=${MYSIMBDP_NODE_TAINT%%=*} rest=${MYSIMBDP_NODE_TAINT#*=}
    cat <<EOF
image: {pullPolicy: Never}
runtime: kubernetes
replicas: 1
leaderElection: {enabled: true}
kafka:
  bootstrap: "$MYSIMBDP_POD_KAFKA_BOOTSTRAP"
  securityProtocol: SASL_PLAINTEXT
  adminUser: "$MYSIMBDP_KAFKA_ADMIN_USER"
coredms:
  url: "$MYSIMBDP_POD_COREDMS_URL"
  backend: ferretdb-postgres
  adminUser: "$MYSIMBDP_COREDMS_ADMIN_USER"
  authMechanism: PLAIN
  authSource: "\$external"
staging:
  url: "s3://$MYSIMBDP_S3_BUCKET/$prefix"
  persistence: {create: false}
  s3:
    region: "$MYSIMBDP_S3_REGION"
    endpoint: "$MYSIMBDP_POD_S3_ENDPOINT"
    allowHttp: true
    credentialsSecret: mysimbdp-staging-s3
nodeSelector: {"$label": "$value"}
tolerations: [{key: "$taint_key", operator: Equal, value: "${rest%%:*}", effect: "${rest#*:}"}]
apps:
  nodeSelector: {"$label": "$value"}
  tolerations: ["$MYSIMBDP_NODE_TAINT"]
  # Images are imported into the node's containerd; no pull ever leaves this machine.
  imagePullPolicy: Never
batch: {pollInterval: 1s, maxConcurrentRuns: 4}
logging: {format: text, level: "info,kube=warn,tower=warn"}
# No kube-proxy runs on the local stack: the operator reaches the API server at the node's
# bridge address rather than at the kubernetes Service.
extraEnv:
  - {name: KUBERNETES_SERVICE_HOST, value: "$MYSIMBDP_POD_KUBE_HOST"}
  - {name: KUBERNETES_SERVICE_PORT, value: "$MYSIMBDP_POD_KUBE_PORT"}
EOF
}

secrets() {
    kubectl create namespace "$NAMESPACE" --dry-run=client -o yaml | kubectl apply -f - >/dev/null
    kubectl label namespace "$NAMESPACE" --overwrite pod-security.kubernetes.io/enforce=restricted >/dev/null
    kubectl -n "$NAMESPACE" create secret generic mysimbdp-admin --dry-run=client -o yaml \
        --from-literal=kafka-admin-password="$MYSIMBDP_KAFKA_ADMIN_PASSWORD" \
        --from-literal=coredms-admin-password="$MYSIMBDP_COREDMS_ADMIN_PASSWORD" \
        --from-literal=postgres-url="$MYSIMBDP_POD_POSTGRES_URL" | kubectl apply -f - >/dev/null
    kubectl -n "$NAMESPACE" create secret generic mysimbdp-staging-s3 --dry-run=client -o yaml \
        --from-literal=AWS_ACCESS_KEY_ID="$MYSIMBDP_S3_ACCESS_KEY_ID" \
        --from-literal=AWS_SECRET_ACCESS_KEY="$MYSIMBDP_S3_SECRET_ACCESS_KEY" | kubectl apply -f - >/dev/null
}

install() {
    local prefix=${1:-platform} values_file
    [[ $prefix =~ ^[a-z0-9][a-z0-9-]*$ ]] || { echo "staging prefix $prefix: use lowercase letters, digits and -" >&2; exit 2; }
    kubectl apply --server-side --force-conflicts -f "$REPO/crds" >/dev/null
    local_api_remove
    secrets
    values_file=$(mktemp)
    trap 'rm -f "$values_file"' RETURN
    values "$prefix" >"$values_file"
    helm upgrade --install "$RELEASE" "$REPO/charts/mysimbdp" -n "$NAMESPACE" -f "$values_file" \
        --wait --timeout "$TIMEOUT" >/dev/null || {
        echo "the release did not become ready within $TIMEOUT:" >&2
        kubectl -n "$NAMESPACE" get pods -o wide >&2 || true
        kubectl -n "$NAMESPACE" logs "deploy/$RELEASE" --tail=30 >&2 || true
        exit 1
    }
    kubectl -n "$NAMESPACE" rollout status "deploy/$RELEASE" --timeout="$TIMEOUT" >/dev/null
    echo "s3://$MYSIMBDP_S3_BUCKET/$prefix" >"$MYSIMBDP_STATE/platform-staging-url"
}

# A user of the local cluster: a client certificate (CN=NAME, O=GROUP) signed by the cluster's
# CA, in a kubeconfig of its own. Made once and kept.
user() {
    local name=$1 group=${2:-} dir=$MYSIMBDP_STATE/users pki=$MYSIMBDP_STATE/kube/pki
    [[ $name =~ ^[a-z0-9][a-z0-9.@-]*$ ]] || { echo "user $name: use lowercase letters, digits, '.', '@' and '-'" >&2; exit 2; }
    local kubeconfig=$dir/$name.kubeconfig
    if [[ ! -s $kubeconfig ]]; then
        mkdir -p "$dir" && chmod 700 "$dir"
        local subject="/CN=$name${group:+/O=$group}" work
        work=$(mktemp -d)
        openssl genrsa -out "$work/key" 2048 2>/dev/null
        openssl req -new -key "$work/key" -subj "$subject" -out "$work/csr"
        printf 'basicConstraints = critical, CA:FALSE\nkeyUsage = critical, digitalSignature, keyEncipherment\nextendedKeyUsage = clientAuth\n' >"$work/ext"
        openssl x509 -req -in "$work/csr" -CA "$pki/ca.crt" -CAkey "$pki/ca.key" -set_serial "0x$(openssl rand -hex 16)" \
            -days 365 -sha256 -extfile "$work/ext" -out "$work/crt" 2>/dev/null
        cat >"$kubeconfig.tmp" <<KUBECONFIG
apiVersion: v1
kind: Config
clusters:
- name: mysimbdp-local
  cluster:
    server: $MYSIMBDP_KUBE_SERVER
    certificate-authority-data: $(base64 -w0 "$pki/ca.crt")
users:
- name: $name
  user:
    client-certificate-data: $(base64 -w0 "$work/crt")
    client-key-data: $(base64 -w0 "$work/key")
contexts:
- name: $name@mysimbdp-local
  context: {cluster: mysimbdp-local, user: $name}
current-context: $name@mysimbdp-local
KUBECONFIG
        chmod 600 "$kubeconfig.tmp" && mv "$kubeconfig.tmp" "$kubeconfig"
        rm -rf "$work"
    fi
    echo "$kubeconfig"
}

# The tenant API served by an operator on this machine, registered as the chart registers the
# pod's: a serving certificate from a CA of its own, a Service whose endpoint is this machine's
# address on the node's bridge (the API server reaches aggregated APIs at endpoints), the
# APIService trusting that CA.
local_api() {
    local port=${1:-18443} dir=$MYSIMBDP_STATE/tenant-api-local ip=$MYSIMBDP_NODE_IP
    mkdir -p "$dir" && chmod 700 "$dir"
    if [[ ! -s $dir/tls.crt ]]; then
        openssl req -x509 -newkey rsa:2048 -nodes -subj "/CN=mysimbdp-tenant-api-ca" -days 3650 \
            -keyout "$dir/ca.key" -out "$dir/ca.crt" 2>/dev/null
        openssl req -new -newkey rsa:2048 -nodes -subj "/CN=mysimbdp-tenant-api" -keyout "$dir/tls.key" -out "$dir/tls.csr" 2>/dev/null
        printf 'subjectAltName = DNS:mysimbdp-tenant-api-local.%s.svc, IP:%s\nextendedKeyUsage = serverAuth\n' "$NAMESPACE" "$ip" >"$dir/ext"
        openssl x509 -req -in "$dir/tls.csr" -CA "$dir/ca.crt" -CAkey "$dir/ca.key" -set_serial "0x$(openssl rand -hex 16)" \
            -days 3650 -sha256 -extfile "$dir/ext" -out "$dir/tls.crt" 2>/dev/null
    fi
    kubectl create namespace "$NAMESPACE" --dry-run=client -o yaml | kubectl apply -f - >/dev/null
    kubectl apply -f - >/dev/null <<YAML
apiVersion: v1
kind: Service
metadata: {name: mysimbdp-tenant-api-local, namespace: $NAMESPACE, labels: {mysimbdp.io/local-api: "true"}}
spec:
  ports: [{name: https, port: 443, targetPort: $port}]
---
apiVersion: v1
kind: Endpoints
metadata: {name: mysimbdp-tenant-api-local, namespace: $NAMESPACE, labels: {mysimbdp.io/local-api: "true"}}
subsets: [{addresses: [{ip: "$ip"}], ports: [{name: https, port: $port}]}]
---
apiVersion: apiregistration.k8s.io/v1
kind: APIService
metadata: {name: v1alpha1.tenant.mysimbdp.io, labels: {mysimbdp.io/local-api: "true"}}
spec:
  group: tenant.mysimbdp.io
  version: v1alpha1
  service: {name: mysimbdp-tenant-api-local, namespace: $NAMESPACE, port: 443}
  caBundle: $(base64 -w0 "$dir/ca.crt")
  groupPriorityMinimum: 1000
  versionPriority: 15
YAML
    # The tenant roles the operator binds owners and viewers to, as the chart makes them.
    helm template "$RELEASE" "$REPO/charts/mysimbdp" --show-only templates/tenant-roles.yaml | kubectl apply -f - >/dev/null
    kubectl label clusterrole "$RELEASE-tenant-owner" "$RELEASE-tenant-viewer" "$RELEASE-platform-admin" \
        mysimbdp.io/local-api=true --overwrite >/dev/null
    echo "export MYSIMBDP_TENANT_API_ADDR=$ip:$port MYSIMBDP_TENANT_API_CERT=$dir/tls.crt MYSIMBDP_TENANT_API_KEY=$dir/tls.key"
}

# Removes the registration local_api made (the chart's own is Helm's to remove).
local_api_remove() {
    kubectl delete apiservice,clusterrole -l mysimbdp.io/local-api=true --ignore-not-found >/dev/null
    kubectl -n "$NAMESPACE" delete service,endpoints -l mysimbdp.io/local-api=true --ignore-not-found >/dev/null 2>&1 || true
}

case ${1:-} in
    install) install "${2:-}" ;;
    local-api-remove) local_api_remove ;;
    local-api) local_api "${2:-}" ;;
    user) user "${2:?user NAME [GROUP]}" "${3:-}" ;;
    uninstall)
        helm uninstall "$RELEASE" -n "$NAMESPACE" --wait --timeout "$TIMEOUT" --ignore-not-found >/dev/null
        rm -f "$MYSIMBDP_STATE/platform-staging-url"
        ;;
    status)
        helm status "$RELEASE" -n "$NAMESPACE" 2>/dev/null | sed -n '1,6p' || echo "release $RELEASE is not installed"
        kubectl -n "$NAMESPACE" get pods -o wide
        ;;
    logs) kubectl -n "$NAMESPACE" logs "deploy/$RELEASE" --tail="${2:-200}" ;;
    staging-url) cat "$MYSIMBDP_STATE/platform-staging-url" ;;
    *)
        sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'
        exit 2
        ;;
esac
