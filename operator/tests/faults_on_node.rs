//! Faults on real pods, with the platform installed by its chart (e2e/platform.sh: the operator
//! a pod on the stack's real node, the kubernetes runtime, staging on S3):
//! - a run whose container exceeds its memory limit is recorded as failed for running out of
//!   memory, retried per its policy, then dead-lettered with that reason;
//! - a Job killed at its deadline is recorded as timed out;
//! - an app whose image does not exist (batch or stream) is not Ready, and says which image;
//! - a stream pod deleted mid-stream loses and doubles nothing: every published observation
//!   is stored exactly once.

use std::{
    path::PathBuf,
    process::{Command, Stdio},
    time::Duration,
};

use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::{
    Api,
    api::{DeleteParams, ListParams},
};
use mongodb::bson::{Document, doc};
use mysimbdp_api::{BatchIngestApp, StreamIngestApp, Tenant};
use mysimbdp_e2e::{Stack, sample_data, wait_for};
use mysimbdp_operator::batch::ledger::FileStatus;
use object_store::{ObjectStoreExt, PutPayload, path::Path as ObjectPath};

mod common;

const TENANT: &str = "fault-air";
const NS: &str = "tenant-fault-air";
const PREFIX: &str = "faults";
const TIMEOUT: Duration = Duration::from_secs(300);

fn tenant() -> String {
    format!(
        "apiVersion: mysimbdp.io/v1alpha1
kind: Tenant
metadata: {{name: {TENANT}}}
spec:
  agreement:
    files: {{formats: [Csv], maxFileSize: 1Mi, maxFilesPerDay: 100, maxBytesPerDay: 100Mi}}
    delivery: AtLeastOnce
    compute: {{cpu: '2', memory: 2Gi, maxConcurrentBatchRuns: 3, maxStreamReplicas: 3}}
    kafka:
      topics: [{{name: observations, partitions: 2}}]
      producerByteRate: 8Mi
      consumerByteRate: 8Mi
    coredms: {{storageQuota: 1Gi}}
    retention: {{onOffboarding: Delete}}
"
    )
}

/// Batch apps that fail in the ways a real pod fails, each taking its own files.
fn batch_apps(toolbox: &str) -> String {
    let app = |name: &str, image: &str, command: &str, extra: &str| {
        format!(
            "---
apiVersion: mysimbdp.io/v1alpha1
kind: BatchIngestApp
metadata: {{name: {name}, namespace: {NS}}}
spec:
  container: {{image: '{image}', command: {command}, resources: {{cpu: 100m, memory: 32Mi}}}}
  files: {{pattern: '{name}_*.csv'}}
  target: {{collection: {name}}}
{extra}"
        )
    };
    [
        // tail keeps the current line, and /dev/zero has no line end: it grows until the limit.
        app(
            "hungry",
            toolbox,
            "[sh, -c, 'exec tail /dev/zero']",
            "  retry: {maxAttempts: 2, backoff: 1s, maxBackoff: 2s}\n",
        ),
        app("sleepy", toolbox, "[sleep, '600']", "  timeout: 5s\n  retry: {maxAttempts: 1}\n"),
        app("phantom", "registry.example.com/fault-air/missing:1", "[ingest]", "  retry: {maxAttempts: 1}\n"),
    ]
    .concat()
}

fn stream_app(name: &str, image: &str, replicas: u32) -> String {
    format!(
        "apiVersion: mysimbdp.io/v1alpha1
kind: StreamIngestApp
metadata: {{name: {name}, namespace: {NS}}}
spec:
  container: {{image: '{image}', command: [nimbus-weather-ingest], resources: {{cpu: 200m, memory: 128Mi}}}}
  topics: [observations]
  consumerGroup: {name}
  target: {{collection: {name}}}
  replicas: {{min: {replicas}, max: {replicas}}}
  monitoring: {{reportInterval: 2s, window: 10s, onBreach: Notify, onStall: Notify}}
"
    )
}

async fn ready_condition<K>(
    api: &Api<K>,
    name: &str,
    conditions: fn(&K) -> Vec<(String, String, String)>,
) -> (String, String)
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    wait_for(&format!("{name} to be not Ready with a reason"), TIMEOUT, || async {
        let object = api.get(name).await.ok()?;
        conditions(&object)
            .into_iter()
            .find(|(type_, status, _)| type_ == "Ready" && status == "False")
            .map(|(_, _, message)| (name.to_owned(), message))
    })
    .await
}

fn batch_conditions(app: &BatchIngestApp) -> Vec<(String, String, String)> {
    let status = app.status.clone().unwrap_or_default();
    status.conditions.into_iter().map(|c| (c.type_, c.status, format!("{}: {}", c.reason, c.message))).collect()
}

fn stream_conditions(app: &StreamIngestApp) -> Vec<(String, String, String)> {
    let status = app.status.clone().unwrap_or_default();
    status.conditions.into_iter().map(|c| (c.type_, c.status, format!("{}: {}", c.reason, c.message))).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_pods_fail_and_the_platform_records_why_and_loses_nothing() {
    let stack = Stack::load();
    let client = stack.kube_client().await;
    let _platform = common::Platform::install(PREFIX);
    let tenants: Api<Tenant> = Api::all(client.clone());
    common::reset(&stack, &tenants, &[TENANT]).await;
    let admin = stack.coredms_admin().await;
    for collection in ["decisions", "reports"] {
        admin
            .database("mysimbdp")
            .collection::<Document>(collection)
            .delete_many(doc! { "tenant": TENANT })
            .await
            .unwrap();
    }
    let ledger = common::ledger(&stack).await;
    common::apply(&stack, &tenant());
    common::wait_ready(&tenants, TENANT).await;
    let toolbox = stack.var("MYSIMBDP_TOOLBOX_IMAGE");
    common::apply(&stack, &batch_apps(toolbox));
    common::apply(&stack, &stream_app("ghost", "registry.example.com/fault-air/no-such-stream:1", 1));
    common::apply(&stack, &stream_app("steady", "registry.example.com/nimbus/weather-ingest:0.1.0", 2));

    // Each batch app gets one small file, staged as the platform team stages them.
    let store = stack.s3_admin_store();
    let names = ["hungry_1.csv", "sleepy_1.csv", "phantom_1.csv"];
    for (i, name) in names.iter().enumerate() {
        let content = format!("id,value\n{i},{name}\n");
        let path = ObjectPath::from(format!("{PREFIX}/{TENANT}/incoming/{name}"));
        store.put(&path, PutPayload::from(content.into_bytes())).await.expect("staged");
    }

    // The steady stream app consumes while one of its pods is deleted.
    let secret = Api::<Secret>::namespaced(client.clone(), NS).get("mysimbdp-credentials").await.unwrap();
    let value = |key: &str| String::from_utf8(secret.data.as_ref().unwrap()[key].0.clone()).unwrap();
    let bin_dir = PathBuf::from(env!("CARGO_BIN_EXE_mysimbdp-operator")).parent().expect("a folder").to_path_buf();
    let publisher = Command::new(bin_dir.join("nimbus-weather-publish"))
        .args(["--file", sample_data().join("weather.csv").to_str().expect("UTF-8 path")])
        // From the 1,101st row on every observation is plausible: each one must be stored.
        .args(["--skip", "1100", "--rate", "400", "--limit", "8000", "--topic", &format!("{TENANT}.observations")])
        .args(["--kafka-bootstrap", stack.var("MYSIMBDP_KAFKA_BOOTSTRAP")])
        .env("MYSIMBDP_KAFKA_USERNAME", value("MYSIMBDP_KAFKA_USERNAME"))
        .env("MYSIMBDP_KAFKA_PASSWORD", value("MYSIMBDP_KAFKA_PASSWORD"))
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .expect("the publisher starts");
    let observations = admin.database("fault_air").collection::<Document>("steady");
    wait_for("the steady app to store its first observations", TIMEOUT, || async {
        (observations.estimated_document_count().await.ok()? > 500).then_some(())
    })
    .await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), NS);
    let running = pods.list(&ListParams::default().labels("app.kubernetes.io/instance=steady")).await.unwrap();
    let victim = running.items.first().and_then(|p| p.metadata.name.clone()).expect("a steady pod");
    pods.delete(&victim, &DeleteParams::default()).await.expect("the pod is deleted");
    println!("deleted stream pod {victim} mid-stream");
    let published = publisher.wait_with_output().expect("the publisher ends");
    assert!(published.status.success(), "the publisher failed");
    let summary: serde_json::Value =
        serde_json::from_str(String::from_utf8_lossy(&published.stdout).lines().last().unwrap_or("{}")).unwrap();
    let good = summary["good"].as_u64().expect("the publisher's count");
    // Documents have deterministic ids, so a redelivered message cannot add one: reaching the
    // published count means nothing was lost, and it can never be passed.
    let stored = wait_for(&format!("all {good} observations to be stored"), TIMEOUT, || async {
        let stored = observations.count_documents(doc! {}).await.ok()?;
        (stored == good).then_some(stored)
    })
    .await;
    println!("published {good} observations, stored {stored} through the deletion of {victim}");
    assert_eq!(stored, good, "every observation stored exactly once");

    // Out of memory: failed, retried once, then dead-lettered with the reason.
    let files = common::settled(&ledger, TENANT, &names, TIMEOUT).await;
    let file = |name: &str| files.iter().find(|f| f.name == name).unwrap_or_else(|| panic!("{name} in the ledger"));
    let hungry = file("hungry_1.csv");
    println!(
        "hungry: {:?} after {} attempts: {}",
        hungry.status,
        hungry.attempts,
        hungry.reason.clone().unwrap_or_default()
    );
    assert_eq!((hungry.status, hungry.attempts), (FileStatus::DeadLettered, 2), "{hungry:#?}");
    assert!(hungry.reason.as_deref().is_some_and(|r| r.contains("OOMKilled")), "{hungry:#?}");
    // Killed at the deadline: timed out.
    let sleepy = file("sleepy_1.csv");
    println!("sleepy: {:?}: {}", sleepy.status, sleepy.reason.clone().unwrap_or_default());
    assert_eq!(sleepy.status, FileStatus::DeadLettered, "{sleepy:#?}");
    assert!(sleepy.reason.as_deref().is_some_and(|r| r.contains("passed its deadline")), "{sleepy:#?}");
    let runs = ledger.runs(doc! { "tenant": TENANT, "app": "sleepy" }).await.unwrap();
    assert_eq!(runs.first().and_then(|r| r.outcome.as_deref()), Some("TimedOut"), "{runs:#?}");
    // An image that does not exist: the run cannot start, and the app says so.
    let phantom = file("phantom_1.csv");
    assert_eq!(phantom.status, FileStatus::DeadLettered, "{phantom:#?}");
    let batch: Api<BatchIngestApp> = Api::namespaced(client.clone(), NS);
    let (_, message) = ready_condition(&batch, "phantom", batch_conditions).await;
    println!("phantom: Ready=False {message}");
    assert!(
        message.starts_with("CannotStart") && message.contains("registry.example.com/fault-air/missing:1"),
        "{message}"
    );
    assert!(message.contains("ErrImageNeverPull"), "the node never pulls: {message}");
    let stream: Api<StreamIngestApp> = Api::namespaced(client.clone(), NS);
    let (_, message) = ready_condition(&stream, "ghost", stream_conditions).await;
    println!("ghost: Ready=False {message}");
    assert!(message.starts_with("CannotStart") && message.contains("no-such-stream:1"), "{message}");

    common::reset(&stack, &tenants, &[TENANT]).await;
}
