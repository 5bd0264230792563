//! `make bench-stream`: stream ingestion through the platform on the running local stack. Not a
//! test: it asserts nothing about time, and `cargo test` never runs it.
//!
//! 1. End to end: tenant `bench-weather` publishes every observation of `weather.csv` (26,115)
//!    to its topic, then its `StreamIngestApp` (one replica, the release build of the sample app
//!    beside the platform's sidecar, local runtime) consumes the backlog. Timed from the first
//!    committed offset to the last (offsets are committed only after the documents are stored),
//!    so the consumer group's start-up is left out; the collection must then hold one document
//!    per accepted observation.
//! 2. The store's ceiling: the sample app's `weather_raw_insert` example inserts the same documents,
//!    built in memory first, with unordered `insert_many` calls, as the tenant's user.
//! 3. Memory: the peak resident set (VmHWM) of the app and of its sidecar.
//! 4. Reaction: the app is made slow (`--slow-ms`) under a threshold it then breaks; the delay
//!    from the end of the first report that breaks it to the monitor's decision, and from the
//!    decision to the manager's action, as seen on the API server.
//!
//! Figures go to stdout. They are only as steady as the machine is quiet.

use std::{
    path::{Path, PathBuf},
    process::{Command, ExitCode, Stdio},
    time::{Duration, Instant},
};

use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use mongodb::bson::{Document, doc};
use mysimbdp_api::{StreamIngestApp, Tenant};
use mysimbdp_e2e::{OperatorProcess, Stack, sample_data, wait_for};
use mysimbdp_operator::{
    monitor::{
        lag::{KafkaLag, LagProbe},
        store::MonitorStore,
    },
    tenant::names::{CREDENTIALS_SECRET, TenantNames},
};

#[path = "../tests/common/mod.rs"]
mod common;

const TENANT: &str = "bench-weather";
const NAMESPACE: &str = "tenant-bench-weather";
const TOPIC: &str = "bench-weather.observations";
const GROUP: &str = "bench-weather.observations-ingest";
const TIMEOUT: Duration = Duration::from_secs(900);

fn tenant_yaml() -> String {
    format!(
        "apiVersion: mysimbdp.io/v1alpha1
kind: Tenant
metadata: {{name: {TENANT}}}
spec:
  agreement:
    files: {{formats: [JsonLines], maxFileSize: 2Mi, maxFilesPerDay: 10, maxBytesPerDay: 20Mi}}
    delivery: EffectivelyOnce
    compute: {{cpu: '4', memory: 4Gi, maxStreamReplicas: 3}}
    kafka:
      topics: [{{name: observations, partitions: 3}}]
      producerByteRate: 64Mi
      consumerByteRate: 64Mi
    coredms: {{storageQuota: 4Gi}}
"
    )
}

fn app_yaml(args: &str, monitoring: &str) -> String {
    format!(
        "apiVersion: mysimbdp.io/v1alpha1
kind: StreamIngestApp
metadata: {{name: observations, namespace: {NAMESPACE}}}
spec:
  container: {{image: registry.example.com/nimbus/weather-ingest:0.1.0, command: [nimbus-weather-ingest], args: [{args}]}}
  topics: [observations]
  consumerGroup: observations-ingest
  target: {{collection: observations}}
  replicas: {{min: 1, max: 2}}
  monitoring: {monitoring}
"
    )
}

/// Peak resident set of a process, in bytes (its `VmHWM`).
fn peak_rss(pid: i32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse::<u64>().ok().map(|kib| kib * 1024)
}

fn recorded_pid(path: &Path) -> Option<i32> {
    std::fs::read_to_string(path).ok()?.split_whitespace().next()?.parse().ok()
}

fn main() -> ExitCode {
    common::bench_main("stream", "make bench-stream", bench())
}

async fn bench() -> ExitCode {
    let binary = PathBuf::from(env!("CARGO_BIN_EXE_mysimbdp-operator"));
    let bin_dir = binary.parent().expect("the binary is in a folder").to_path_buf();
    let example = bin_dir.join("examples").join("weather_raw_insert");
    for needed in ["nimbus-weather-ingest", "nimbus-weather-publish", "mysimbdp-sidecar"] {
        assert!(bin_dir.join(needed).is_file(), "{needed} is missing: make bench-stream builds it");
    }
    let stack = Stack::load();
    let weather = sample_data().join("weather.csv");
    common::install_crds(&stack);
    let operator = OperatorProcess::start(&binary, &stack, &[("RUST_LOG", "info,kube=warn")]);
    let client = stack.kube_client().await;
    let tenants: Api<Tenant> = Api::all(client.clone());
    common::reset(&stack, &tenants, &[TENANT]).await;
    common::apply(&stack, &tenant_yaml());
    common::wait_ready(&tenants, TENANT).await;
    let secret = Api::<Secret>::namespaced(client.clone(), NAMESPACE).get(CREDENTIALS_SECRET).await.expect("secret");
    let vars: Vec<(String, String)> = secret
        .data
        .unwrap_or_default()
        .into_iter()
        .filter_map(|(k, v)| String::from_utf8(v.0).ok().map(|v| (k, v)))
        .collect();

    // 1. The backlog, then the app.
    let published = Command::new(bin_dir.join("nimbus-weather-publish"))
        .args(["--file", weather.to_str().expect("UTF-8 path"), "--topic", TOPIC])
        .envs(vars.iter().map(|(k, v)| (k, v)))
        .env("RUST_LOG", "warn")
        .stderr(Stdio::inherit())
        .output()
        .expect("the publisher runs");
    assert!(published.status.success(), "the publisher failed");
    let summary: serde_json::Value =
        serde_json::from_str(String::from_utf8_lossy(&published.stdout).lines().last().unwrap_or("{}"))
            .expect("summary");
    let total = summary["good"].as_u64().expect("good messages");
    println!(
        "stream ingestion benchmark: {total} observations published in {:.1} s",
        summary["seconds"].as_f64().unwrap_or_default()
    );

    // The probe is connected and answering before the app starts, so the clock starts at the
    // app's first commit and not at the probe's first answer.
    let probe = KafkaLag::new(stack.kafka_admin_config());
    let group = GROUP.to_owned();
    let topics = [TOPIC.to_owned()];
    wait_for("the lag probe to see the whole backlog", TIMEOUT, || async {
        (probe.lag(&group, &topics).await.ok()? == total).then_some(())
    })
    .await;
    let quiet = "{reportInterval: 2s, window: 10s, stabilization: 60s}";
    common::apply(&stack, &app_yaml("", quiet));
    let first = wait_for("the first committed offsets", TIMEOUT, || async {
        probe.lag(&group, &topics).await.ok().filter(|lag| *lag < total).map(|lag| (Instant::now(), lag))
    })
    .await;
    let done = wait_for("the backlog to be consumed", TIMEOUT, || async {
        (probe.lag(&group, &topics).await.ok()? == 0).then(Instant::now)
    })
    .await;
    // What was still to commit at the first commit is what the clock covers.
    let seconds = (done - first.0).as_secs_f64();
    let consumed = first.1;
    let names = TenantNames::new(TENANT, None);
    let admin = stack.coredms_admin().await;
    let database = admin.database(&names.database);
    let stored = database.collection::<Document>("observations").count_documents(doc! {}).await.expect("count");
    let store = MonitorStore::open(&admin.database("mysimbdp")).await.expect("monitor store");
    let bytes_per_message = summary["goodBytes"].as_f64().unwrap_or_default() / total.max(1) as f64;

    // 3. Memory of the replica, read while it still runs.
    let replica = operator.runs_dir.join("stream").join(NAMESPACE).join("observations").join("0");
    let app_rss = recorded_pid(&replica.join("app.pid")).and_then(peak_rss).unwrap_or(0);
    let sidecar_rss = recorded_pid(&replica.join("sidecar.pid")).and_then(peak_rss).unwrap_or(0);

    // 2. The ceiling.
    let raw_env: Vec<(String, String)> =
        vars.iter().filter(|(k, _)| k.starts_with("MYSIMBDP_COREDMS_")).cloned().collect();
    database.collection::<Document>("raw_observations").drop().await.expect("drop");
    let raw = Command::new(&example)
        .args(["--collection", "raw_observations", "--in-flight", "4", weather.to_str().expect("UTF-8 path")])
        .envs(raw_env)
        .output()
        .expect("the raw insert runs");
    assert!(raw.status.success(), "the raw insert failed: {}", String::from_utf8_lossy(&raw.stderr));
    let raw: serde_json::Value =
        serde_json::from_str(String::from_utf8_lossy(&raw.stdout).lines().last().unwrap_or("{}")).expect("figures");
    let raw_rows = raw["rows"].as_f64().unwrap_or(0.0);
    let raw_seconds = raw["seconds"].as_f64().unwrap_or(f64::INFINITY);

    // 4. Reaction to a breach.
    let strict = "{reportInterval: 1s, window: 5s, stabilization: 30s, thresholds: {maxAvgIngestionTime: 10ms}}";
    common::apply(&stack, &app_yaml("--slow-ms, '20'", strict));
    let apps: Api<StreamIngestApp> = Api::namespaced(client.clone(), NAMESPACE);
    let since = wait_for("the slowed replica to start", TIMEOUT, || async {
        let status = apps.get("observations").await.ok()?.status?;
        let since = status.replicas_since?;
        (status.ready_replicas >= 1
            && status.observed_generation == apps.get("observations").await.ok()?.metadata.generation)
            .then_some(since)
    })
    .await;
    let mut feed = Command::new(bin_dir.join("nimbus-weather-publish"))
        .args(["--file", weather.to_str().expect("UTF-8 path"), "--topic", TOPIC, "--rate", "100", "--limit", "3000"])
        .envs(vars.iter().map(|(k, v)| (k, v)))
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .expect("the publisher runs");
    let applied = wait_for("the manager to carry out a scale-up", TIMEOUT, || async {
        let decision = apps.get("observations").await.ok()?.status?.last_decision?;
        (decision.action == "ScaleUp" && decision.applied_at.is_some()).then(|| (decision, Instant::now()))
    })
    .await;
    // The store keeps the decision's time to the millisecond (the status, to the second).
    let decisions = store.decisions(doc! { "tenant": TENANT, "app": "observations", "action": "ScaleUp" }, 1).await;
    let decided_ms = decisions
        .ok()
        .and_then(|d| d.last().map(|d| d.decided_at.timestamp_millis()))
        .unwrap_or_else(|| applied.0.decided_at.0.as_millisecond());
    let seen_ms = k8s_openapi::jiff::Timestamp::now().as_millisecond() - applied.1.elapsed().as_millis() as i64;
    let breaching = store
        .reports(doc! { "tenant": TENANT, "app": "observations", "avgIngestionMs": { "$gt": 10.0 } }, 100_000)
        .await
        .expect("reports");
    let first_breach = breaching
        .iter()
        .map(|r| r.window_end.timestamp_millis())
        .filter(|end| *end >= since.0.as_millisecond())
        .min()
        .unwrap_or(decided_ms);
    let _ = feed.kill();
    let _ = feed.wait();

    let rate = consumed as f64 / seconds;
    let raw_rate = raw_rows / raw_seconds;
    println!();
    println!(
        "  platform end to end (1 replica, first to last commit) {seconds:>8.2} s {rate:>10.0} msgs/s {:>8.2} MB/s",
        rate * bytes_per_message / 1e6
    );
    println!("  raw insert_many, batch 1000, 4 in flight             {raw_seconds:>8.2} s {raw_rate:>10.0} docs/s",);
    println!("  ratio platform / raw ceiling: {:.2} (target >= 0.7)", rate / raw_rate);
    println!("  documents stored: {stored} of {total} published (the app refuses implausible rows)");
    println!(
        "  peak RSS: app {:.1} MiB + sidecar {:.1} MiB = {:.1} MiB (target < 64 MiB)",
        app_rss as f64 / 1048576.0,
        sidecar_rss as f64 / 1048576.0,
        (app_rss + sidecar_rss) as f64 / 1048576.0
    );
    println!(
        "  reaction: first breaching report -> decision {:.1} s (window 5 s); decision -> scaled, seen on the API server {:.1} s",
        (decided_ms - first_breach) as f64 / 1000.0,
        (seen_ms - decided_ms) as f64 / 1000.0
    );
    common::reset(&stack, &tenants, &[TENANT]).await;
    drop(operator);
    ExitCode::SUCCESS
}
