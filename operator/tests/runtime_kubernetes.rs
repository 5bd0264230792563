//! The kubernetes runtime against the real control plane: a run becomes a Job that passes the
//! restricted Pod Security profile, carries the contract's environment and the tenant's
//! Secret, is owned by its app, completes on a KWOK node, and its result document is read back
//! from the pod's termination message.

use std::{collections::BTreeMap, time::Duration};

use k8s_openapi::api::{batch::v1::Job, core::v1::Namespace};
use kube::{
    Api,
    api::{DeleteParams, PostParams},
};
use mysimbdp_api::BatchIngestApp;
use mysimbdp_e2e::{Stack, unique, wait_for};
use mysimbdp_ingest_sdk::contract::{FileResult, RunResult};
use mysimbdp_operator::runtime::{RunSpec, RunState, Runtime, kubernetes::KubernetesRuntime};

mod common;

#[tokio::test]
async fn a_run_is_a_restricted_job_that_completes_on_a_fake_node() {
    let stack = Stack::load();
    let client = stack.kube_client().await;
    let credentials = serde_json::json!({ "MYSIMBDP_COREDMS_USERNAME": "t", "MYSIMBDP_COREDMS_PASSWORD": "p" });
    let ns = common::tenant_namespace(&stack, &client, "rt", credentials).await;
    let app: BatchIngestApp = serde_yaml::from_str(&format!(
        "apiVersion: mysimbdp.io/v1alpha1\nkind: BatchIngestApp\nmetadata: {{name: flights, namespace: {ns}}}\nspec:\n  container: {{image: registry.example.com/acme/flights:1, command: [acme-flights-ingest], args: [--kind, flights], resources: {{cpu: 250m, memory: 64Mi}}, env: [{{name: RUST_LOG, value: info}}]}}\n  files: {{pattern: 'flights_*.csv'}}\n  target: {{collection: flights}}\n"
    ))
    .unwrap();
    let app =
        Api::<BatchIngestApp>::namespaced(client.clone(), &ns).create(&PostParams::default(), &app).await.unwrap();

    let result = RunResult {
        files: vec![FileResult {
            name: "flights_2013_01.csv".into(),
            rows_read: 3,
            rows_written: 3,
            ..FileResult::default()
        }],
        duration_ms: 5,
        ..RunResult::default()
    };
    // KWOK runs no containers; its stage copies this annotation into the termination message,
    // standing in for what the app writes to /dev/termination-log.
    let annotations =
        BTreeMap::from([("mysimbdp.io/fake-termination-message".to_owned(), serde_json::to_string(&result).unwrap())]);
    let runtime = KubernetesRuntime::new(client.clone(), None, "/staging".into(), annotations, Default::default());
    let id = unique("flights").replace('_', "-");
    let spec = RunSpec {
        id: id.clone(),
        tenant: "acme-air".into(),
        namespace: ns.clone(),
        app: "flights".into(),
        app_uid: app.metadata.uid.clone().unwrap(),
        container: app.spec.container.clone(),
        env: BTreeMap::from([
            ("MYSIMBDP_INPUT".to_owned(), "[]".to_owned()),
            ("MYSIMBDP_COLLECTION".to_owned(), "flights".to_owned()),
        ]),
        credentials_secret: "mysimbdp-credentials".into(),
        service_account: "mysimbdp-app".into(),
        timeout: Duration::from_secs(600),
        files: Vec::new(),
    };
    runtime.start(&spec).await.expect("the Job is admitted under the restricted profile");
    runtime.start(&spec).await.expect("starting the same run again is harmless");

    let job = Api::<Job>::namespaced(client.clone(), &ns).get(&id).await.unwrap();
    let owner = &job.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!((owner.kind.as_str(), owner.uid.as_str()), ("BatchIngestApp", app.metadata.uid.as_deref().unwrap()));
    let job_spec = job.spec.unwrap();
    assert_eq!((job_spec.backoff_limit, job_spec.active_deadline_seconds), (Some(0), Some(600)));
    let pod = job_spec.template.spec.unwrap();
    assert_eq!(pod.service_account_name.as_deref(), Some("mysimbdp-app"));
    assert_eq!(pod.automount_service_account_token, Some(false));
    let container = &pod.containers[0];
    assert_eq!(container.env_from.as_ref().unwrap()[0].secret_ref.as_ref().unwrap().name, "mysimbdp-credentials");
    let env: BTreeMap<_, _> =
        container.env.as_ref().unwrap().iter().map(|e| (e.name.as_str(), e.value.as_deref())).collect();
    assert_eq!(env["MYSIMBDP_RESULT_FILE"], Some("/dev/termination-log"));
    assert_eq!(env["MYSIMBDP_COLLECTION"], Some("flights"));
    assert_eq!(env["RUST_LOG"], Some("info"));
    let security = container.security_context.as_ref().unwrap();
    assert_eq!((security.allow_privilege_escalation, security.run_as_non_root), (Some(false), Some(true)));
    assert_eq!(container.resources.as_ref().unwrap().limits.as_ref().unwrap()["memory"].0, "64Mi");

    let finished = wait_for("the run to finish on a KWOK node", Duration::from_secs(90), || {
        let runtime = &runtime;
        let (ns, id) = (ns.clone(), id.clone());
        async move {
            match runtime.state(&ns, &id).await.expect("run state") {
                RunState::Finished(outcome) => Some(outcome),
                _ => None,
            }
        }
    })
    .await;
    assert_eq!(finished.exit_code, Some(0), "{finished:?}");
    assert_eq!(finished.result, Some(result), "the result comes back from the termination message");
    assert_eq!(runtime.state(&ns, "never-started").await.unwrap(), RunState::Unknown);

    Api::<Namespace>::all(client).delete(&ns, &DeleteParams::background()).await.unwrap();
}
