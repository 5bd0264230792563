#!/usr/bin/env bash
# The platform demo: the whole of mysimbdp on the local stack, in one command.
#
#   e2e/demo.sh            (or: make demo)
#
# 1. brings up the local stack (a Kubernetes control plane with fake nodes, Kafka, coredms);
# 2. builds and starts the operator (all controllers, local runtime for the tenants' apps);
# 3. onboards two tenants with different agreements, acme-air and nimbus-weather, and their apps;
# 4. stages acme-air's monthly flights files and a few files that break its agreement;
# 5. publishes nimbus-weather's hourly observations (and some malformed messages) to its topic;
# 6. waits until every file is settled and every good message is stored;
# 7. prints the statistics, the stream reports and the monitor's decisions, writes a chart, and
#    tells where to look next.
#
# The operator keeps running in the background when the demo ends, so that the platform can be
# explored; `e2e/demo.sh stop` stops it, `e2e/demo.sh clean` offboards the demo's tenants first.
# Everything the demo writes is under the stack's state directory ($MYSIMBDP_STATE/demo).
# MYSIMBDP_DEMO_SKIP_BUILD=1 uses the binaries already built (as the test suite does).
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
STACK=$REPO/e2e/stack/stack.sh
TARGET=${CARGO_TARGET_DIR:-$REPO/target}/debug
DEMO_TIMEOUT=${MYSIMBDP_DEMO_TIMEOUT:-1200}
WEATHER_RATE=${MYSIMBDP_DEMO_WEATHER_RATE:-1500}

started=$SECONDS
step() { printf '\n\033[1m[demo %4ss] %s\033[0m\n' "$((SECONDS - started))" "$*"; }
info() { printf '           %s\n' "$*"; }
fail() {
    printf '\n[demo] error: %s\n' "$*" >&2
    [[ -f ${OPERATOR_LOG:-} ]] && { echo "----- last lines of $OPERATOR_LOG -----" >&2; tail -n 30 "$OPERATOR_LOG" >&2; }
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

case ${1:-} in
    stop)
        stop_operator
        echo "demo operator stopped, with every app process it started"
        exit 0
        ;;
    clean)
        # shellcheck disable=SC1090
        . "$("$STACK" env)"
        "$MYSIMBDP_KUBE_BIN/kubectl" delete tenant acme-air nimbus-weather --ignore-not-found --timeout=180s
        stop_operator
        echo "demo tenants offboarded, demo operator stopped"
        exit 0
        ;;
esac

step "1/7 the local stack: Kubernetes (etcd, apiserver, controller-manager, scheduler, KWOK), Kafka, coredms"
"$STACK" up
# shellcheck disable=SC1090
. "$("$STACK" env)"
kubectl() { "$MYSIMBDP_KUBE_BIN/kubectl" "$@"; }
mongo() { bash -c ". '$REPO/e2e/stack/lib.sh'; . '$REPO/e2e/stack/coredms.sh'; coredms_mongo \"\$@\"" mongo \
    "$MYSIMBDP_COREDMS_ADMIN_USER" "$MYSIMBDP_COREDMS_ADMIN_PASSWORD" "$@"; }

step "2/7 build the platform and the tenants' apps, fetch the sample data"
[[ ${MYSIMBDP_DEMO_SKIP_BUILD:-} == 1 ]] || cargo build --locked --workspace --bins
DATA=$("$REPO/tenant-samples/fetch-data.sh" | tail -n 1)
info "data: $DATA"
export PATH=$TARGET:$PATH
cli() { "$TARGET/kubectl-mysimbdp" "$@"; }

step "3/7 start the operator (tenant, batch, stream and monitor controllers; local runtime)"
stop_operator
# A fresh staging store and run records for every demo.
rm -rf "$DEMO/staging" "$DEMO/runs"
mkdir -p "$DEMO"
kubectl apply --server-side --force-conflicts -f "$REPO/crds" >/dev/null
# A clean slate: the demo's tenants from an earlier run are offboarded first.
for tenant in acme-air nimbus-weather; do
    kubectl delete tenant "$tenant" --ignore-not-found --wait=false >/dev/null
done
STAGING=$DEMO/staging
export MYSIMBDP_STAGING_URL=file://$STAGING
export MYSIMBDP_RUNS_DIR=$DEMO/runs
export MYSIMBDP_METRICS_ADDR=${MYSIMBDP_DEMO_METRICS_ADDR:-127.0.0.1:19464}
export MYSIMBDP_BATCH_POLL_INTERVAL=1s
# `e2e/demo.sh stop` stops the apps' processes with the operator.
export MYSIMBDP_LOCAL_STOP_ON_EXIT=true
export RUST_LOG=${RUST_LOG:-info,kube=warn}
setsid "$TARGET/mysimbdp-operator" >"$OPERATOR_LOG" 2>&1 </dev/null &
echo $! >"$OPERATOR_PID"
deadline=$((SECONDS + 60))
until curl -fsS "http://$MYSIMBDP_METRICS_ADDR/healthz" >/dev/null 2>&1; do
    kill -0 "$(cat "$OPERATOR_PID")" 2>/dev/null || fail "the operator exited"
    ((SECONDS < deadline)) || fail "the operator was not healthy within 60s"
    sleep 0.3
done
info "operator pid $(cat "$OPERATOR_PID"), log $OPERATOR_LOG, metrics http://$MYSIMBDP_METRICS_ADDR/metrics"
for tenant in acme-air nimbus-weather; do
    deadline=$((SECONDS + 180))
    while kubectl get tenant "$tenant" >/dev/null 2>&1; do
        ((SECONDS < deadline)) || fail "tenant $tenant from an earlier run was not offboarded within 180s"
        sleep 1
    done
done
for tenant in acme_air nimbus_weather; do mongo drop-database "$tenant" >/dev/null; done
mongo drop-database mysimbdp >/dev/null

step "4/7 onboard two tenants with different agreements"
kubectl apply -f "$REPO/tenant-samples/acme-air/tenant.yaml" -f "$REPO/tenant-samples/nimbus-weather/tenant.yaml"
kubectl wait --for=condition=Ready tenant/acme-air tenant/nimbus-weather --timeout=180s
kubectl get tenants
kubectl apply -f "$REPO/tenant-samples/acme-air/batch-airlines.yaml" \
    -f "$REPO/tenant-samples/acme-air/batch-planes.yaml" \
    -f "$REPO/tenant-samples/acme-air/batch-flights.yaml" \
    -f "$REPO/tenant-samples/nimbus-weather/batch-stations.yaml" \
    -f "$REPO/tenant-samples/nimbus-weather/stream-observations.yaml"

step "5/7 acme-air stages its files; some break its agreement"
BAD=$DEMO/bad-files
rm -rf "$BAD" && mkdir -p "$BAD"
head -c 70000000 /dev/zero | tr '\0' 'x' >"$BAD/flights_2099_01.csv"                # larger than 64Mi
printf '{"year": 2013}\n' >"$BAD/flights_2099_02.csv"                                # JSON, not CSV
head -n 1000 "$DATA/flights_2013_01.csv" | cut -d, -f1-5 >"$BAD/flights_2099_03.csv"  # columns missing
printf 'a,b\n1,2\n' >"$BAD/weather.csv"                                              # name not allowed
head -c 20000 /dev/urandom >"$BAD/flights_2099_04.csv"                               # not text at all
cli upload --tenant acme-air "$DATA/airlines.csv" >/dev/null
kubectl -n tenant-acme-air wait --for=jsonpath='{.status.files.ingested}'=1 batchingestapp/airlines --timeout=300s >/dev/null
cli upload --tenant acme-air "$DATA/planes.csv" "$DATA"/flights_2013_*.csv
cli upload --tenant acme-air "$BAD"/*
deadline=$((SECONDS + 120))
until cli files --tenant acme-air --limit 1000 | awk '$3 == "flights_2013_01.csv"' | grep -q .; do
    ((SECONDS < deadline)) || fail "flights_2013_01.csv was not taken in within 120s"
    sleep 1
done
cp "$DATA/flights_2013_01.csv" "$BAD/flights_2013_13.csv"                             # same content twice
cli upload --tenant acme-air "$BAD/flights_2013_13.csv" >/dev/null
cli upload --tenant nimbus-weather "$DATA/stations.jsonl"

step "6/7 nimbus-weather publishes its hourly observations (and some malformed messages)"
credentials() { kubectl -n tenant-nimbus-weather get secret mysimbdp-credentials -o "jsonpath={.data.$1}" | base64 -d; }
summary=$(MYSIMBDP_KAFKA_USERNAME=$(credentials MYSIMBDP_KAFKA_USERNAME) \
    MYSIMBDP_KAFKA_PASSWORD=$(credentials MYSIMBDP_KAFKA_PASSWORD) \
    RUST_LOG=warn nimbus-weather-publish --file "$DATA/weather.csv" --rate "$WEATHER_RATE" --malformed-every 1000 \
    --kafka-bootstrap "$MYSIMBDP_KAFKA_BOOTSTRAP" --topic nimbus-weather.observations | tail -n 1)
good=$(python3 -c 'import json, sys; print(json.loads(sys.argv[1])["good"])' "$summary") ||
    fail "the publisher did not say how many good messages it sent: $summary"
info "published: $summary"

step "7/7 wait until every file is settled and the observations are consumed"
deadline=$((SECONDS + DEMO_TIMEOUT))
files_left() {
    cli files --tenant acme-air --limit 1000 | awk 'NR > 1 && ($4 == "Queued" || $4 == "Running" || $4 == "RetryWait")' | wc -l
}
# Counting scans the collection under FerretDB; it may take a while when the machine is busy.
stored() { COREDMS_MONGO_TIMEOUT_MS=120000 mongo count nimbus_weather observations 2>/dev/null || echo 0; }
app() { kubectl -n tenant-nimbus-weather get streamingestapp observations -o "jsonpath=$1"; }
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
cli stats
printf '\n\033[1macme-air files\033[0m\n'
cli files --tenant acme-air --limit 30
printf '\n\033[1mnimbus-weather stream reports (latest)\033[0m\n'
cli reports --tenant nimbus-weather --limit 8
printf '\n\033[1mMonitor decisions\033[0m\n'
cli decisions --limit 10
printf '\n\033[1mStream app\033[0m\n'
kubectl get streamingestapps -A
cli chart --tenant acme-air --out "$DEMO/acme-air.svg" --bucket-seconds 10 >/dev/null
cli chart --tenant nimbus-weather --out "$DEMO/nimbus-weather.svg" --bucket-seconds 10 >/dev/null

step "done in $((SECONDS - started))s. Where to look next:"
cat <<EOF
  . $MYSIMBDP_ENV_FILE                      # KUBECONFIG, Kafka and coredms endpoints
  \$MYSIMBDP_KUBE_BIN/kubectl get tenants,batchingestapps,streamingestapps -A
  \$MYSIMBDP_KUBE_BIN/kubectl describe tenant acme-air          # conditions, usage, Events
  $TARGET/kubectl-mysimbdp files --status Rejected       # each refused file and why
  ls $STAGING/acme-air/rejected/*/                 # refused files are kept, with a .reason beside
  $TARGET/kubectl-mysimbdp decisions                     # what the monitor decided and why
  charts: $DEMO/acme-air.svg, $DEMO/nimbus-weather.svg
  operator log: $OPERATOR_LOG; metrics: http://$MYSIMBDP_METRICS_ADDR/metrics
  stop the operator: e2e/demo.sh stop; stop the stack: make stack-down
EOF
