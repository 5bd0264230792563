//! The kubernetes runtime of stream apps against the real control plane: an app's replicas are
//! a Deployment admitted under the restricted Pod Security profile, each pod the app beside the
//! metrics sidecar, both with the tenant's Secret; scaling changes the ready replicas on KWOK
//! nodes, and a new restart token rolls the pods.

use std::{collections::BTreeMap, time::Duration};

use k8s_openapi::api::{apps::v1::Deployment, core::v1::Namespace};
use kube::{
    Api,
    api::{DeleteParams, PostParams},
};
use mysimbdp_api::StreamIngestApp;
use mysimbdp_e2e::{Stack, wait_for};
use mysimbdp_operator::runtime::{
    deployment::{DeploymentRuntime, RESTART_ANNOTATION},
    replicas::{ReplicaRuntime, ReplicasSpec},
};

mod common;

#[tokio::test]
async fn replicas_are_a_restricted_deployment_that_scales_on_fake_nodes() {
    let stack = Stack::load();
    let client = stack.kube_client().await;
    let credentials = serde_json::json!({ "MYSIMBDP_KAFKA_USERNAME": "tenant-t", "MYSIMBDP_KAFKA_PASSWORD": "p" });
    let ns = common::tenant_namespace(&stack, &client, "rs", credentials).await;
    let app: StreamIngestApp = serde_yaml::from_str(&format!(
        "apiVersion: mysimbdp.io/v1alpha1\nkind: StreamIngestApp\nmetadata: {{name: observations, namespace: {ns}}}\nspec:\n  container: {{image: registry.example.com/nimbus/weather:1, command: [nimbus-weather-ingest], resources: {{cpu: 250m, memory: 64Mi}}}}\n  topics: [observations]\n  consumerGroup: weather-ingest\n  target: {{collection: observations}}\n  replicas: {{min: 1, max: 3}}\n"
    ))
    .unwrap();
    let app =
        Api::<StreamIngestApp>::namespaced(client.clone(), &ns).create(&PostParams::default(), &app).await.unwrap();

    let runtime = DeploymentRuntime::new(
        client.clone(),
        "registry.example.com/mysimbdp/sidecar:0.1.0".into(),
        Default::default(),
    );
    let mut spec = ReplicasSpec {
        tenant: "nimbus-weather".into(),
        namespace: ns.clone(),
        app: "observations".into(),
        app_uid: app.metadata.uid.clone().unwrap(),
        container: app.spec.container.clone(),
        env: BTreeMap::from([("MYSIMBDP_TOPICS".to_owned(), "nimbus-weather.observations".to_owned())]),
        credentials_secret: "mysimbdp-credentials".into(),
        service_account: "mysimbdp-app".into(),
        replicas: 1,
        restart_token: String::new(),
        credentials_digest: "d1".into(),
    };
    runtime.apply(&spec).await.expect("the Deployment is admitted under the restricted profile");
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    let ready = |want: i32| {
        let deployments = deployments.clone();
        async move {
            wait_for(&format!("{want} ready replicas on KWOK nodes"), Duration::from_secs(120), || {
                let deployments = deployments.clone();
                async move {
                    let status = deployments.get("observations").await.ok()?.status?;
                    (status.ready_replicas.unwrap_or(0) == want && status.updated_replicas.unwrap_or(0) == want)
                        .then_some(())
                }
            })
            .await
        }
    };
    ready(1).await;

    let deployment = deployments.get("observations").await.unwrap();
    let owner = &deployment.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!((owner.kind.as_str(), owner.uid.as_str()), ("StreamIngestApp", app.metadata.uid.as_deref().unwrap()));
    let pod = deployment.spec.as_ref().unwrap().template.spec.clone().unwrap();
    let sidecar = &pod.init_containers.as_ref().unwrap()[0];
    assert_eq!(sidecar.restart_policy.as_deref(), Some("Always"), "a native sidecar");
    for container in [&pod.containers[0], sidecar] {
        assert_eq!(container.env_from.as_ref().unwrap()[0].secret_ref.as_ref().unwrap().name, "mysimbdp-credentials");
        let security = container.security_context.as_ref().unwrap();
        assert_eq!((security.allow_privilege_escalation, security.run_as_non_root), (Some(false), Some(true)));
    }

    spec.replicas = 3;
    let state = runtime.apply(&spec).await.unwrap();
    assert_eq!(state.desired, 3);
    ready(3).await;

    spec.restart_token = "2026-12-01T10:00:00Z".into();
    runtime.apply(&spec).await.unwrap();
    let template = deployments.get("observations").await.unwrap().spec.unwrap().template;
    assert_eq!(template.metadata.unwrap().annotations.unwrap()[RESTART_ANNOTATION], "2026-12-01T10:00:00Z");
    ready(3).await;

    spec.replicas = 0;
    runtime.apply(&spec).await.unwrap();
    ready(0).await;
    Api::<Namespace>::all(client).delete(&ns, &DeleteParams::background()).await.unwrap();
}
