//! No app fails silently, on the real stack: an app that asks for more than its tenant allows
//! (memory, CPU, concurrency, stream replicas) or whose command cannot start is not Ready, with
//! a message that names the field, the limit and the fix, and a Warning Event; the others of
//! the same tenant are Ready.

use std::time::Duration;

use k8s_openapi::api::core::v1::Event;
use kube::{Api, api::ListParams};
use mysimbdp_api::{BatchIngestApp, StreamIngestApp, Tenant};
use mysimbdp_e2e::{OperatorProcess, Stack, wait_for};

mod common;

const TENANT: &str = "small-air";
const NS: &str = "tenant-small-air";
const TIMEOUT: Duration = Duration::from_secs(90);

fn tenant() -> String {
    format!(
        "apiVersion: mysimbdp.io/v1alpha1
kind: Tenant
metadata: {{name: {TENANT}}}
spec:
  agreement:
    files: {{formats: [Csv], maxFileSize: 1Mi, maxFilesPerDay: 10, maxBytesPerDay: 10Mi}}
    compute: {{cpu: '1', memory: 1Gi, maxConcurrentBatchRuns: 1, maxStreamReplicas: 1}}
    kafka: {{topics: [{{name: events, partitions: 1}}], producerByteRate: 1Mi, consumerByteRate: 1Mi}}
    coredms: {{storageQuota: 1Gi}}
"
    )
}

fn batch_app(name: &str, extra: &str, container: &str) -> String {
    format!(
        "apiVersion: mysimbdp.io/v1alpha1
kind: BatchIngestApp
metadata: {{name: {name}, namespace: {NS}}}
spec:
  container: {{image: registry.example.com/small/app:1, command: [acme-flights-ingest]{container}}}
  files: {{pattern: '{name}_*.csv'}}
  target: {{collection: {name}}}
{extra}"
    )
}

fn stream_app(name: &str, command: &str, replicas: &str) -> String {
    format!(
        "apiVersion: mysimbdp.io/v1alpha1
kind: StreamIngestApp
metadata: {{name: {name}, namespace: {NS}}}
spec:
  container: {{image: registry.example.com/small/stream:1, command: [{command}], args: ['3600']}}
  topics: [events]
  consumerGroup: {name}
  target: {{collection: {name}}}
  replicas: {replicas}
"
    )
}

async fn ready<K>(api: &Api<K>, name: &str, want: &str) -> (String, String)
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug + HasConditions,
{
    wait_for(&format!("{name} to be Ready={want}"), TIMEOUT, || async {
        let object = api.get(name).await.ok()?;
        let c = object.conditions().iter().find(|c| c.type_ == "Ready")?.clone();
        (c.status == want).then_some((c.reason, c.message))
    })
    .await
}

trait HasConditions {
    fn conditions(&self) -> Vec<k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition>;
}

impl HasConditions for BatchIngestApp {
    fn conditions(&self) -> Vec<k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition> {
        self.status.as_ref().map(|s| s.conditions.clone()).unwrap_or_default()
    }
}

impl HasConditions for StreamIngestApp {
    fn conditions(&self) -> Vec<k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition> {
        self.status.as_ref().map(|s| s.conditions.clone()).unwrap_or_default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apps_that_cannot_run_as_asked_say_why() {
    let stack = Stack::load();
    let client = stack.kube_client().await;
    common::install_crds(&stack);
    let _operator = OperatorProcess::start(
        env!("CARGO_BIN_EXE_mysimbdp-operator").as_ref(),
        &stack,
        &[("MYSIMBDP_STREAM_RESYNC", "2s")],
    );
    let tenants: Api<Tenant> = Api::all(client.clone());
    common::reset(&stack, &tenants, &[TENANT]).await;
    common::apply(&stack, &tenant());
    common::wait_ready(&tenants, TENANT).await;
    common::apply(&stack, &batch_app("fits", "", ""));
    common::apply(&stack, &batch_app("huge", "", ", resources: {cpu: '1', memory: 1Pi}"));
    common::apply(&stack, &batch_app("greedy", "", ", resources: {cpu: '64', memory: 64Mi}"));
    common::apply(&stack, &batch_app("eager", "  concurrency: 50\n", ""));
    common::apply(&stack, &stream_app("crowd", "sleep", "{min: 5, max: 6}"));
    common::apply(&stack, &stream_app("ghost", "no-such-command-anywhere", "{min: 1, max: 1}"));

    let batch: Api<BatchIngestApp> = Api::namespaced(client.clone(), NS);
    let stream: Api<StreamIngestApp> = Api::namespaced(client.clone(), NS);
    ready(&batch, "fits", "True").await;
    let cases = [
        (
            "huge",
            ready(&batch, "huge", "False").await,
            vec!["spec.container.resources.memory asks for 1Pi", "spec.agreement.compute.memory", "1Gi"],
        ),
        (
            "greedy",
            ready(&batch, "greedy", "False").await,
            vec!["spec.container.resources.cpu asks for 64", "spec.agreement.compute.cpu"],
        ),
        (
            "eager",
            ready(&batch, "eager", "False").await,
            vec!["spec.concurrency is 50", "maxConcurrentBatchRuns", "capped at 1"],
        ),
        (
            "crowd",
            ready(&stream, "crowd", "False").await,
            vec!["spec.replicas.min is 5", "maxStreamReplicas", "runs at most 1"],
        ),
        ("ghost", ready(&stream, "ghost", "False").await, vec!["no-such-command-anywhere", "PATH"]),
    ];
    let events: Api<Event> = Api::namespaced(client.clone(), NS);
    for (app, (reason, message), expected) in cases {
        println!("{app}: Ready=False {reason}: {message}");
        for want in expected {
            assert!(message.contains(want), "{app}: {want:?} missing from {message:?}");
        }
        let warned = wait_for(&format!("a Warning Event about {app}"), TIMEOUT, || async {
            let list = events.list(&ListParams::default().fields(&format!("involvedObject.name={app}"))).await.ok()?;
            list.items
                .into_iter()
                .find(|e| e.type_.as_deref() == Some("Warning") && e.reason.as_deref() == Some(&reason))
        })
        .await;
        let note = warned.message.unwrap_or_default();
        assert!(note.contains(message.chars().take(40).collect::<String>().as_str()), "{app}: Event {note:?}");
    }
    // The crowd runs capped at the quota: one replica.
    let crowd = wait_for("the crowd to run one replica", TIMEOUT, || async {
        let status = stream.get("crowd").await.ok()?.status?;
        (status.desired_replicas == 1).then_some(status)
    })
    .await;
    assert_eq!(crowd.desired_replicas, 1);
    let tenants: Api<Tenant> = Api::all(client);
    let _ = tenants.delete(TENANT, &Default::default()).await;
}
