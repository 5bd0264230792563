#!/usr/bin/env bash
# The platform demo: the whole of mysimbdp on the local stack, in one command.
#
#   e2e/demo.sh            (or: make demo)          the platform as a platform team installs it
#   RUNTIME=local e2e/demo.sh  (or: make demo RUNTIME=local)  the operator and the apps as
#                                                    local processes: the fast option
#
# 1. brings up the local stack (a Kubernetes control plane with a real node and fake ones,
#    Kafka, coredms, an S3 store);
# 2. builds the platform and the tenants' apps (and, on Kubernetes, their images);
# 3. starts the operator: by default the Helm chart installs it as a pod on the real node, with
#    the kubernetes runtime (batch runs are Jobs, stream apps Deployments with their metrics
#    sidecar, all real pods) and staging in the S3 store; with RUNTIME=local it runs here, the
#    apps as local processes and staging in a folder;
# 4. onboards two tenants with different agreements, acme-air and nimbus-weather, and their apps;
# 5. stages acme-air's monthly flights files and a few files that break its agreement;
# 6. publishes nimbus-weather's hourly observations (and some malformed messages) to its topic;
# 7. waits until every file is settled and every good message is stored, then prints the
#    statistics, the stream reports and the monitor's decisions, writes a chart, and tells where
#    to look next.
#
# The operator keeps running when the demo ends, so that the platform can be explored;
# `e2e/demo.sh stop` stops it (and says what keeps running), `e2e/demo.sh clean` offboards the
# demo's tenants first. Everything the demo writes is under $MYSIMBDP_STATE/demo.
# MYSIMBDP_DEMO_SKIP_BUILD=1 uses the binaries (and images) already built, as the test suite does.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
STACK=$REPO/e2e/stack/stack.sh
TARGET=${CARGO_TARGET_DIR:-$REPO/target}/debug
DEMO_TIMEOUT=${MYSIMBDP_DEMO_TIMEOUT:-1200}
RUNTIME=${RUNTIME:-kubernetes}
case $RUNTIME in
    kubernetes | local) ;;
    *) echo "RUNTIME=$RUNTIME: use kubernetes (the default) or local" >&2; exit 2 ;;
esac
PLATFORM=$REPO/e2e/platform.sh
WEATHER_RATE=${MYSIMBDP_DEMO_WEATHER_RATE:-1500}

started=$SECONDS
step() { printf '\n\033[1m[demo %4ss] %s\033[0m\n' "$((SECONDS - started))" "$*"; }
info() { printf '           %s\n' "$*"; }
fail() {
    printf '\n[demo] error: %s\n' "$*" >&2
    if [[ $RUNTIME == kubernetes ]]; then
        echo "----- last lines of the operator's log -----" >&2
        "$PLATFORM" logs 30 >&2 || true
    elif [[ -f ${OPERATOR_LOG:-} ]]; then
        echo "----- last lines of $OPERATOR_LOG -----" >&2
        tail -n 30 "$OPERATOR_LOG" >&2
    fi
    exit 1
}

state_dir() { bash -c ". '$REPO/e2e/stack/lib.sh' && printf '%s\n' \"\$MYSIMBDP_STATE\""; }
DEMO=$(state_dir)/demo
OPERATOR_PID=$DEMO/operator.pid
OPERATOR_LOG=$DEMO/operator.log

# Pids the local runtime recorded under the demo's run folder (files `pid`, `*.pid`: pid and
# kernel start time) whose process still runs.
recorded_pids() {
    local file pid started
    [[ -d $DEMO/runs ]] || return 0
    while IFS= read -r file; do
        read -r pid started <"$file" 2>/dev/null || continue
        [[ -r /proc/$pid/stat ]] || continue
        [[ $(awk '{ sub(/.*\) /, ""); print $20 }' "/proc/$pid/stat" 2>/dev/null) == "$started" ]] && echo "$pid"
    done < <(find "$DEMO/runs" -type f \( -name pid -o -name '*.pid' \) 2>/dev/null)
}

# Stops the operator, which takes its apps' processes along (MYSIMBDP_LOCAL_STOP_ON_EXIT), and
# then whatever it left (an operator that was killed cannot): nothing of the demo keeps running.
stop_operator() {
    if [[ -f $OPERATOR_PID ]] && kill -0 "$(cat "$OPERATOR_PID")" 2>/dev/null; then
        kill "$(cat "$OPERATOR_PID")" 2>/dev/null || true
        for _ in $(seq 1 300); do kill -0 "$(cat "$OPERATOR_PID")" 2>/dev/null || break; sleep 0.1; done
        if kill -0 "$(cat "$OPERATOR_PID")" 2>/dev/null; then
            echo "the operator did not stop within 30s; killing it" >&2
            kill -KILL "$(cat "$OPERATOR_PID")" 2>/dev/null || true
        fi
    fi
    rm -f "$OPERATOR_PID"
    local left pid
    left=$(recorded_pids)
    if [[ -n $left ]]; then
        echo "stopping $(wc -w <<<"$left") app process group(s) the operator left running" >&2
        for pid in $left; do kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true; done
        for _ in $(seq 1 100); do [[ -z $(recorded_pids) ]] && break; sleep 0.1; done
        for pid in $(recorded_pids); do kill -KILL -- "-$pid" 2>/dev/null || true; done
    fi
    left=$(recorded_pids)
    [[ -z $left ]] || echo "still running, stop them with kill: $left" >&2
}

# Stops the demo's operator, whichever way it runs, and says what keeps running.
stop_demo() {
    stop_operator
    [[ -f $("$STACK" env) ]] && "$PLATFORM" local-api-remove
    if [[ -f $("$STACK" env) ]] && "$PLATFORM" status >/dev/null 2>&1; then
        "$PLATFORM" uninstall
        # shellcheck disable=SC1090
        . "$("$STACK" env)"
        local left
        left=$("$MYSIMBDP_KUBE_BIN/kubectl" get pods -A -l app.kubernetes.io/part-of=mysimbdp --no-headers 2>/dev/null | wc -l)
        if [[ $left -gt 0 ]]; then
            echo "the demo's operator is stopped; the tenants' $left pod(s) keep running, as on any cluster:"
            echo "  $MYSIMBDP_KUBE_BIN/kubectl get pods -A -l app.kubernetes.io/part-of=mysimbdp"
            echo "  e2e/demo.sh clean offboards the demo's tenants and removes them"
        fi
    fi
}

case ${1:-} in
    stop)
        stop_demo
        echo "demo operator stopped"
        exit 0
        ;;
    clean)
        # shellcheck disable=SC1090
        . "$("$STACK" env)"
        "$MYSIMBDP_KUBE_BIN/kubectl" delete tenant acme-air nimbus-weather --ignore-not-found --timeout=180s
        stop_demo
        echo "demo tenants offboarded, demo operator stopped"
        exit 0
        ;;
esac

step "1/7 the local stack: Kubernetes (etcd, apiserver, controller-manager, scheduler, a real node, KWOK), Kafka, coredms, S3"
"$STACK" up
# shellcheck disable=SC1090
. "$("$STACK" env)"
kubectl() { "$MYSIMBDP_KUBE_BIN/kubectl" "$@"; }
mongo() { bash -c ". '$REPO/e2e/stack/lib.sh'; . '$REPO/e2e/stack/coredms.sh'; coredms_mongo \"\$@\"" mongo \
    "$MYSIMBDP_COREDMS_ADMIN_USER" "$MYSIMBDP_COREDMS_ADMIN_PASSWORD" "$@"; }

step "2/7 build the platform and the tenants' apps, fetch the sample data"
if [[ ${MYSIMBDP_DEMO_SKIP_BUILD:-} != 1 ]]; then
    cargo build --locked --workspace --bins
    [[ $RUNTIME == local ]] || "$REPO/e2e/stack/images.sh" build
fi
DATA=$("$REPO/tenant-samples/fetch-data.sh" | tail -n 1)
info "data: $DATA"
export PATH=$TARGET:$PATH
cli() { "$TARGET/kubectl-mysimbdp" "$@"; }

step "3/7 start the operator (tenant, batch, stream and monitor controllers; $RUNTIME runtime)"
stop_operator
mkdir -p "$DEMO"
kubectl apply --server-side --force-conflicts -f "$REPO/crds" >/dev/null
if [[ $RUNTIME == kubernetes ]]; then
    # The Helm chart, as a platform team installs it: the operator is a pod on the real node.
    "$PLATFORM" install demo
    STAGING_URL=$("$PLATFORM" staging-url)
    operator_pod=$(kubectl -n mysimbdp-system get pods -l app.kubernetes.io/component=operator -o jsonpath='{.items[0].metadata.name}')
    operator_ip=$(kubectl -n mysimbdp-system get pod "$operator_pod" -o jsonpath='{.status.podIP}')
    METRICS_URL=http://$operator_ip:9464/metrics
    OPERATOR_LOGS="e2e/platform.sh logs"
    info "operator pod mysimbdp-system/$operator_pod on $(kubectl -n mysimbdp-system get pod "$operator_pod" -o jsonpath='{.spec.nodeName}'), metrics $METRICS_URL"
    # The CLI reaches the same store as the platform team (this machine's S3 endpoint).
    export AWS_ACCESS_KEY_ID=$MYSIMBDP_S3_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY=$MYSIMBDP_S3_SECRET_ACCESS_KEY
    export AWS_REGION=$MYSIMBDP_S3_REGION AWS_ENDPOINT=$MYSIMBDP_S3_ENDPOINT AWS_ALLOW_HTTP=true
else
    "$PLATFORM" uninstall >/dev/null 2>&1 || true
    # A fresh staging store and run records for every demo.
    rm -rf "$DEMO/staging" "$DEMO/runs"
    STAGING_URL=file://$DEMO/staging
    export MYSIMBDP_RUNS_DIR=$DEMO/runs
    export MYSIMBDP_METRICS_ADDR=${MYSIMBDP_DEMO_METRICS_ADDR:-127.0.0.1:19464}
    export MYSIMBDP_BATCH_POLL_INTERVAL=1s
    # `e2e/demo.sh stop` stops the apps' processes with the operator.
    export MYSIMBDP_LOCAL_STOP_ON_EXIT=true
    export MYSIMBDP_STAGING_URL=$STAGING_URL
    export RUST_LOG=${RUST_LOG:-info,kube=warn}
    # The tenant API from this operator, registered with the API server as the chart does.
    eval "$("$PLATFORM" local-api)"
    setsid "$TARGET/mysimbdp-operator" >"$OPERATOR_LOG" 2>&1 </dev/null &
    echo $! >"$OPERATOR_PID"
    deadline=$((SECONDS + 60))
    until curl -fsS "http://$MYSIMBDP_METRICS_ADDR/healthz" >/dev/null 2>&1; do
        kill -0 "$(cat "$OPERATOR_PID")" 2>/dev/null || fail "the operator exited"
        ((SECONDS < deadline)) || fail "the operator was not healthy within 60s"
        sleep 0.3
    done
    METRICS_URL=http://$MYSIMBDP_METRICS_ADDR/metrics
    OPERATOR_LOGS=$OPERATOR_LOG
    info "operator pid $(cat "$OPERATOR_PID"), log $OPERATOR_LOG, metrics $METRICS_URL"
fi
export MYSIMBDP_STAGING_URL=$STAGING_URL
# A clean slate: the demo's tenants from an earlier run are offboarded first.
for tenant in acme-air nimbus-weather; do
    kubectl delete tenant "$tenant" --ignore-not-found --wait=false >/dev/null
done
for tenant in acme-air nimbus-weather; do
    deadline=$((SECONDS + 180))
    while kubectl get tenant "$tenant" >/dev/null 2>&1; do
        ((SECONDS < deadline)) || fail "tenant $tenant from an earlier run was not offboarded within 180s"
        sleep 1
    done
done
for tenant in acme_air nimbus_weather; do mongo drop-database "$tenant" >/dev/null; done
mongo drop-database mysimbdp >/dev/null

step "4/7 the platform team onboards two tenants with different agreements; their owners add their apps"
# Each tenant's owner is a user of the cluster with a kubeconfig of their own; from here on
# every tenant step is theirs, authorized by the roles the operator binds them to.
ACME=$("$PLATFORM" user acme-owner)
NIMBUS=$("$PLATFORM" user nimbus-owner)
info "owners: acme-owner ($ACME), nimbus-owner ($NIMBUS)"
kubectl apply -f "$REPO/tenant-samples/acme-air/tenant.yaml" -f "$REPO/tenant-samples/nimbus-weather/tenant.yaml"
kubectl wait --for=condition=Ready tenant/acme-air tenant/nimbus-weather --timeout=180s
kubectl get tenants
as_acme() { KUBECONFIG=$ACME "$@"; }
as_nimbus() { KUBECONFIG=$NIMBUS "$@"; }
as_acme kubectl apply -f "$REPO/tenant-samples/acme-air/batch-airlines.yaml" \
    -f "$REPO/tenant-samples/acme-air/batch-planes.yaml" \
    -f "$REPO/tenant-samples/acme-air/batch-flights.yaml"
as_nimbus kubectl apply -f "$REPO/tenant-samples/nimbus-weather/batch-stations.yaml" \
    -f "$REPO/tenant-samples/nimbus-weather/stream-observations.yaml"

step "5/7 acme-air stages its files; some break its agreement"
BAD=$DEMO/bad-files
rm -rf "$BAD" && mkdir -p "$BAD"
head -c 70000000 /dev/zero | tr '\0' 'x' >"$BAD/flights_2099_01.csv"                # larger than 64Mi
printf '{"year": 2013}\n' >"$BAD/flights_2099_02.csv"                                # JSON, not CSV
head -n 1000 "$DATA/flights_2013_01.csv" | cut -d, -f1-5 >"$BAD/flights_2099_03.csv"  # columns missing
printf 'a,b\n1,2\n' >"$BAD/weather.csv"                                              # name not allowed
head -c 20000 /dev/urandom >"$BAD/flights_2099_04.csv"                               # not text at all
as_acme cli upload --tenant acme-air "$DATA/airlines.csv" >/dev/null
as_acme kubectl -n tenant-acme-air wait --for=jsonpath='{.status.files.ingested}'=1 batchingestapp/airlines --timeout=300s >/dev/null
as_acme cli upload --tenant acme-air "$DATA/planes.csv" "$DATA"/flights_2013_*.csv
as_acme cli upload --tenant acme-air "$BAD"/*
deadline=$((SECONDS + 120))
until as_acme cli files --tenant acme-air --limit 1000 | awk '$3 == "flights_2013_01.csv"' | grep -q .; do
    ((SECONDS < deadline)) || fail "flights_2013_01.csv was not taken in within 120s"
    sleep 1
done
cp "$DATA/flights_2013_01.csv" "$BAD/flights_2013_13.csv"                             # same content twice
as_acme cli upload --tenant acme-air "$BAD/flights_2013_13.csv" >/dev/null
as_nimbus cli upload --tenant nimbus-weather "$DATA/stations.jsonl"

step "6/7 nimbus-weather publishes its hourly observations (and some malformed messages)"
credentials() { as_nimbus kubectl -n tenant-nimbus-weather get secret mysimbdp-credentials -o "jsonpath={.data.$1}" | base64 -d; }
summary=$(MYSIMBDP_KAFKA_USERNAME=$(credentials MYSIMBDP_KAFKA_USERNAME) \
    MYSIMBDP_KAFKA_PASSWORD=$(credentials MYSIMBDP_KAFKA_PASSWORD) \
    RUST_LOG=warn nimbus-weather-publish --file "$DATA/weather.csv" --rate "$WEATHER_RATE" --malformed-every 1000 \
    --kafka-bootstrap "$MYSIMBDP_KAFKA_BOOTSTRAP" --topic nimbus-weather.observations | tail -n 1)
good=$(python3 -c 'import json, sys; print(json.loads(sys.argv[1])["good"])' "$summary") ||
    fail "the publisher did not say how many good messages it sent: $summary"
info "published: $summary"
if [[ $RUNTIME == kubernetes ]]; then
    info "what runs where (the platform's and the tenants' pods):"
    kubectl get pods -A -l app.kubernetes.io/part-of=mysimbdp -o wide | sed 's/^/           /'
fi

step "7/7 wait until every file is settled and the observations are consumed"
deadline=$((SECONDS + DEMO_TIMEOUT))
files_left() {
    as_acme cli files --tenant acme-air --limit 1000 | awk 'NR > 1 && ($4 == "Queued" || $4 == "Running" || $4 == "RetryWait")' | wc -l
}
# Counting scans the collection under FerretDB; it may take a while when the machine is busy.
stored() { COREDMS_MONGO_TIMEOUT_MS=120000 mongo count nimbus_weather observations 2>/dev/null || echo 0; }
app() { as_nimbus kubectl -n tenant-nimbus-weather get streamingestapp observations -o "jsonpath=$1"; }
previous=-1
while :; do
    left=$(files_left)
    have=$(stored)
    lag=$(app '{.status.lastReport.lag}')
    info "acme-air: $left files in progress | nimbus-weather: $have of $good observations stored, lag ${lag:-?}, $(app '{.status.readyReplicas}') replicas, last decision: $(app '{.status.lastDecision.action}')"
    # Done when no file waits and the consumer group has caught up with a stable count.
    [[ $left == 0 && $lag == 0 && $have == "$previous" ]] && break
    previous=$have
    ((SECONDS < deadline)) || fail "the work was not done within ${DEMO_TIMEOUT}s"
    sleep 5
done
refused=$((good + $(python3 -c 'import json, sys; print(json.loads(sys.argv[1])["malformed"])' "$summary") - have))
info "nimbus-weather: $have observations stored; $refused messages refused by the app are on nimbus-weather.mysimbdp.dead-letter with their reason"

printf '\n\033[1mBatch ingestion, per tenant and for the platform\033[0m\n'
cli stats                                     # the platform team: every tenant
printf '\n\033[1macme-air files (as acme-owner)\033[0m\n'
as_acme cli files --tenant acme-air --limit 30
printf '\n\033[1mnimbus-weather stream reports (latest, as nimbus-owner)\033[0m\n'
as_nimbus cli reports --tenant nimbus-weather --limit 8
printf '\n\033[1mMonitor decisions (as nimbus-owner)\033[0m\n'
as_nimbus cli decisions --tenant nimbus-weather --limit 10
printf '\n\033[1macme-owner cannot read nimbus-weather\047s records\033[0m\n'
as_acme cli files --tenant nimbus-weather 2>&1 | sed 's/^/           /' || true
printf '\n\033[1mStream app\033[0m\n'
kubectl get streamingestapps -A
as_acme cli chart --tenant acme-air --out "$DEMO/acme-air.svg" --bucket-seconds 10 >/dev/null
as_nimbus cli chart --tenant nimbus-weather --out "$DEMO/nimbus-weather.svg" --bucket-seconds 10 >/dev/null

step "done in $((SECONDS - started))s. Where to look next:"
cat <<EOF
  . $MYSIMBDP_ENV_FILE                      # KUBECONFIG, Kafka and coredms endpoints
  \$MYSIMBDP_KUBE_BIN/kubectl get tenants,batchingestapps,streamingestapps -A
  \$MYSIMBDP_KUBE_BIN/kubectl describe tenant acme-air          # conditions, usage, Events
  KUBECONFIG=$ACME $TARGET/kubectl-mysimbdp files --tenant acme-air --status Rejected   # as acme-air's owner
  KUBECONFIG=$ACME $TARGET/kubectl-mysimbdp download --tenant acme-air <ID>          # a refused file, and why
  $TARGET/kubectl-mysimbdp decisions                     # the platform team: what the monitor decided and why
  \$MYSIMBDP_KUBE_BIN/kubectl get pods -A -o wide               # where everything runs
  staging: $STAGING_URL (refused files are kept there under rejected/, with a .reason beside)
  charts: $DEMO/acme-air.svg, $DEMO/nimbus-weather.svg
  operator log: $OPERATOR_LOGS; metrics: $METRICS_URL
  stop the operator: e2e/demo.sh stop; stop the stack: make stack-down
EOF
