//! The stream ingest manager and the monitor together, on the real stack with the local
//! runtime: a deliberately slow app breaks its average-ingestion-time threshold, the monitor
//! decides to scale it up and the manager does (status and Events give the reason); a stalled
//! app is restarted; decisions never come closer together than the stabilization period; and
//! every published message is stored exactly once in effect.

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use k8s_openapi::api::core::v1::{Event, Secret};
use kube::{Api, api::ListParams};
use mongodb::bson::{Document, doc};
use mysimbdp_api::{StreamIngestApp, Tenant};
use mysimbdp_e2e::{OperatorProcess, Stack, sample_data, wait_for};
use mysimbdp_operator::{monitor::store::MonitorStore, tenant::names::TenantNames};

mod common;

const TENANT: &str = "gale-weather";
const NAMESPACE: &str = "tenant-gale-weather";
const STABILIZATION: Duration = Duration::from_secs(15);

fn tenant_yaml() -> String {
    format!(
        "apiVersion: mysimbdp.io/v1alpha1
kind: Tenant
metadata: {{name: {TENANT}}}
spec:
  agreement:
    files: {{formats: [JsonLines], maxFileSize: 2Mi, maxFilesPerDay: 10, maxBytesPerDay: 20Mi}}
    delivery: EffectivelyOnce
    compute: {{cpu: '4', memory: 4Gi, maxStreamReplicas: 4}}
    kafka:
      topics: [{{name: observations, partitions: 3}}, {{name: stuck, partitions: 1}}]
      producerByteRate: 8Mi
      consumerByteRate: 8Mi
    coredms: {{storageQuota: 1Gi}}
"
    )
}

fn app_yaml(name: &str, topic: &str, args: &str, on_breach: &str) -> String {
    format!(
        "apiVersion: mysimbdp.io/v1alpha1
kind: StreamIngestApp
metadata: {{name: {name}, namespace: {NAMESPACE}}}
spec:
  container: {{image: registry.example.com/nimbus/weather-ingest:0.1.0, command: [nimbus-weather-ingest], args: [{args}]}}
  topics: [{topic}]
  consumerGroup: {name}
  target: {{collection: {name}}}
  replicas: {{min: 1, max: 3}}
  monitoring:
    reportInterval: 1s
    window: 10s
    stabilization: {}s
    missedReports: 3
    thresholds: {{maxAvgIngestionTime: 40ms}}
    onBreach: {on_breach}
    onStall: Restart
",
        STABILIZATION.as_secs()
    )
}

/// Publishes `limit` observations to `topic` with the tenant's credentials, in the background.
/// The rows from the 1,101st on are all plausible (row 1,010 has a 1,048 mph wind, which the
/// app dead-letters).
fn publish(
    bin_dir: &Path,
    stack: &Stack,
    user: &str,
    password: &str,
    topic: &str,
    rate: u32,
    limit: u32,
) -> std::process::Child {
    Command::new(bin_dir.join("nimbus-weather-publish"))
        .args(["--file", sample_data().join("weather.csv").to_str().expect("UTF-8 path"), "--skip", "1100"])
        .args(["--rate", &rate.to_string(), "--limit", &limit.to_string(), "--topic", topic])
        .args(["--kafka-bootstrap", stack.var("MYSIMBDP_KAFKA_BOOTSTRAP")])
        .env("MYSIMBDP_KAFKA_USERNAME", user)
        .env("MYSIMBDP_KAFKA_PASSWORD", password)
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("the publisher starts")
}

async fn app_status(apps: &Api<StreamIngestApp>, name: &str) -> Option<mysimbdp_api::stream::StreamIngestAppStatus> {
    apps.get_opt(name).await.ok()??.status
}

async fn event_reasons(events: &Api<Event>, app: &str) -> Vec<String> {
    let list =
        events.list(&ListParams::default().fields(&format!("involvedObject.name={app}"))).await.expect("list Events");
    list.items.into_iter().filter_map(|e| e.reason).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_apps_are_scaled_stalled_apps_restarted_and_nothing_is_lost_or_doubled() {
    let stack = Stack::load();
    let client = stack.kube_client().await;
    common::install_crds(&stack);
    let binary = PathBuf::from(env!("CARGO_BIN_EXE_mysimbdp-operator"));
    let bin_dir = binary.parent().expect("a folder").to_path_buf();
    let operator = OperatorProcess::start(&binary, &stack, &[("MYSIMBDP_STREAM_RESYNC", "2s")]);
    let tenants: Api<Tenant> = Api::all(client.clone());
    common::reset(&stack, &tenants, &[TENANT]).await;
    let store = MonitorStore::open(&stack.coredms_admin().await.database("mysimbdp")).await.expect("monitor store");
    let admin = stack.coredms_admin().await;
    for collection in ["decisions", "reports"] {
        admin
            .database("mysimbdp")
            .collection::<Document>(collection)
            .delete_many(doc! { "tenant": TENANT })
            .await
            .unwrap();
    }

    common::apply(&stack, &tenant_yaml());
    common::wait_ready(&tenants, TENANT).await;
    let secret = Api::<Secret>::namespaced(client.clone(), NAMESPACE).get("mysimbdp-credentials").await.unwrap();
    let value = |key: &str| String::from_utf8(secret.data.as_ref().unwrap()[key].0.clone()).unwrap();
    let (user, password) = (value("MYSIMBDP_KAFKA_USERNAME"), value("MYSIMBDP_KAFKA_PASSWORD"));

    common::apply(&stack, &app_yaml("slow", "observations", "--slow-ms, '50'", "Scale"));
    common::apply(&stack, &app_yaml("stuck", "stuck", "--stall-after, '100'", "Notify"));
    let published = 1500;
    let mut slow_feed = publish(&bin_dir, &stack, &user, &password, "gale-weather.observations", 100, published);
    let mut stuck_feed = publish(&bin_dir, &stack, &user, &password, "gale-weather.stuck", 50, 1500);

    let apps: Api<StreamIngestApp> = Api::namespaced(client.clone(), NAMESPACE);
    let events: Api<Event> = Api::namespaced(client.clone(), NAMESPACE);
    let timeout = Duration::from_secs(180);

    // The slow app breaks maxAvgIngestionTime; the monitor scales it up and the manager does.
    let scaled = wait_for("the slow app to be scaled up", timeout, || async {
        let status = app_status(&apps, "slow").await?;
        let decision = status.last_decision.clone()?;
        (decision.action == "ScaleUp" && decision.applied_at.is_some() && status.ready_replicas >= 2).then_some(status)
    })
    .await;
    let decision = scaled.last_decision.unwrap();
    assert!(
        decision.reason.contains("maxAvgIngestionTime 40ms"),
        "the reason names the threshold: {}",
        decision.reason
    );
    assert_eq!(decision.from_replicas + 1, decision.to_replicas, "one replica more");
    assert_eq!(scaled.desired_replicas, decision.to_replicas);
    let replicas = operator.runs_dir.join("stream").join(NAMESPACE).join("slow");
    assert!(replicas.join("1").join("app.pid").is_file(), "a second local replica runs");
    wait_for("the ScaleUp and Scaled Events", Duration::from_secs(30), || async {
        let reasons = event_reasons(&events, "slow").await;
        (reasons.iter().any(|r| r == "ScaleUp") && reasons.iter().any(|r| r == "Scaled")).then_some(())
    })
    .await;

    // The stalled app stops sending measurements while its topic fills: it is restarted.
    let restarted = wait_for("the stalled app to be restarted", timeout, || async {
        let status = app_status(&apps, "stuck").await?;
        let decision = status.last_decision.clone()?;
        (decision.action == "Restart" && decision.applied_at.is_some()).then_some(status)
    })
    .await;
    assert!(restarted.last_restart.is_some(), "the restart is recorded");
    let reason = restarted.last_decision.unwrap().reason;
    assert!(reason.contains("restarting its replicas"), "the reason says why and what is done: {reason}");
    wait_for("the Restarted Event", Duration::from_secs(30), || async {
        event_reasons(&events, "stuck").await.iter().any(|r| r == "Restarted").then_some(())
    })
    .await;

    // Every message of the slow app's feed lands once, whatever the scaling did.
    assert!(slow_feed.wait().unwrap().success(), "the publisher delivered every message");
    let _ = stuck_feed.kill();
    let _ = stuck_feed.wait();
    let database = TenantNames::new(TENANT, None).database;
    let observations = admin.database(&database).collection::<Document>("slow");
    wait_for("every published observation to be stored", Duration::from_secs(240), || async {
        (observations.estimated_document_count().await.ok()? >= u64::from(published)).then_some(())
    })
    .await;
    assert_eq!(observations.count_documents(doc! {}).await.unwrap(), u64::from(published), "exactly once in effect");

    // No decision came sooner than the stabilization period after the previous one.
    for app in ["slow", "stuck"] {
        let decisions = store.decisions(doc! { "tenant": TENANT, "app": app }, 100).await.unwrap();
        assert!(!decisions.is_empty(), "{app}: decisions are recorded in the platform database");
        for pair in decisions.windows(2) {
            let gap = pair[1].decided_at.timestamp_millis() - pair[0].decided_at.timestamp_millis();
            assert!(
                gap >= i64::try_from(STABILIZATION.as_millis()).unwrap(),
                "{app}: decisions {gap} ms apart, closer than the stabilization period: {decisions:#?}"
            );
        }
    }
    let reports = store.reports(doc! { "tenant": TENANT, "app": "slow" }, 1000).await.unwrap();
    assert!(reports.iter().any(|r| r.instance.ends_with("-1")), "the second replica reports too");

    // Offboard what the test made, so that no later operator runs its apps.
    common::reset(&stack, &tenants, &[TENANT]).await;
}
