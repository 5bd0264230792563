//! The kubernetes runtime of stream apps: a Deployment in the tenant's namespace, owned by the
//! StreamIngestApp, whose pods run the tenant's app and the platform's metrics sidecar (a
//! native sidecar container, started before the app and stopped after it), both with the
//! tenant's credentials and the restricted security profile. A restart is a rollout.

use std::collections::BTreeMap;

use async_trait::async_trait;
use k8s_openapi::{
    api::{
        apps::v1::{Deployment, DeploymentSpec, DeploymentStrategy},
        core::v1::{
            Container, EnvVar, EnvVarSource, ExecAction, ObjectFieldSelector, Pod, PodSpec, PodTemplateSpec, Probe,
        },
    },
    apimachinery::pkg::{
        api::resource::Quantity,
        apis::meta::v1::{LabelSelector, ObjectMeta},
    },
};
use kube::{
    Api,
    api::{ListParams, Patch, PatchParams},
};
use mysimbdp_api::constants::{FIELD_MANAGER, LABEL_COMPONENT, LABEL_INSTANCE, LABEL_NAME};
use mysimbdp_ingest_sdk::contract::env;
use tracing::debug;

use super::{
    Result, RuntimeError, pod,
    replicas::{ReplicaRuntime, ReplicasSpec, ReplicasState, SIDECAR_PORT},
};

/// Annotation on the pod template whose change restarts every replica.
pub const RESTART_ANNOTATION: &str = "mysimbdp.io/restart-token";
/// Annotation on the pod template with the digest of the tenant's credentials: new credentials
/// roll the pods, which read them only when they start.
pub const CREDENTIALS_ANNOTATION: &str = "mysimbdp.io/credentials-digest";
const NAME: &str = "mysimbdp-stream-app";
const COMPONENT: &str = "stream-app";

/// Runs stream apps as Deployments.
pub struct DeploymentRuntime {
    client: kube::Client,
    sidecar_image: String,
    placement: pod::Placement,
}

impl DeploymentRuntime {
    /// Deployments through `client`, with the sidecar from `sidecar_image`, their pods landing
    /// as `placement` says.
    pub fn new(client: kube::Client, sidecar_image: String, placement: pod::Placement) -> Self {
        Self { client, sidecar_image, placement }
    }

    /// The Deployment of an app (pure).
    pub fn deployment(&self, spec: &ReplicasSpec) -> Deployment {
        let labels = pod::labels(NAME, COMPONENT, &spec.app, &spec.tenant);
        let selector = BTreeMap::from([
            (LABEL_NAME.to_owned(), NAME.to_owned()),
            (LABEL_COMPONENT.to_owned(), COMPONENT.to_owned()),
            (LABEL_INSTANCE.to_owned(), spec.app.clone()),
        ]);
        let mut env = pod::env_vars(&spec.env);
        env.push(EnvVar {
            name: env::INSTANCE.into(),
            value: None,
            value_from: Some(EnvVarSource {
                field_ref: Some(ObjectFieldSelector { field_path: "metadata.name".into(), api_version: None }),
                ..EnvVarSource::default()
            }),
        });
        env.push(EnvVar {
            name: env::SIDECAR_ADDR.into(),
            value: Some(format!("127.0.0.1:{SIDECAR_PORT}")),
            value_from: None,
        });
        let app = pod::app_container(&spec.container, env.clone(), &spec.credentials_secret);
        let small = BTreeMap::from([
            ("cpu".to_owned(), Quantity(crate::fit::SIDECAR_CPU.into())),
            ("memory".to_owned(), Quantity(crate::fit::SIDECAR_MEMORY.into())),
        ]);
        let sidecar = Container {
            name: "metrics-sidecar".into(),
            image: Some(self.sidecar_image.clone()),
            command: Some(vec!["mysimbdp-sidecar".into()]),
            env: Some(env),
            env_from: Some(vec![pod::secret_env(&spec.credentials_secret)]),
            // A native sidecar: it runs for the pod's whole life, before and after the app.
            restart_policy: Some("Always".into()),
            // The sidecar listens on the pod's loopback (only the app may talk to it), which the
            // kubelet's own TCP probe cannot reach: the probe runs inside the container.
            readiness_probe: Some(Probe {
                exec: Some(ExecAction { command: Some(vec!["mysimbdp-sidecar".into(), "--probe".into()]) }),
                period_seconds: Some(5),
                timeout_seconds: Some(3),
                ..Probe::default()
            }),
            resources: Some(k8s_openapi::api::core::v1::ResourceRequirements {
                limits: Some(small.clone()),
                requests: Some(small),
                ..Default::default()
            }),
            security_context: Some(pod::locked_down()),
            ..Container::default()
        };
        let mut pod_spec = PodSpec {
            service_account_name: Some(spec.service_account.clone()),
            automount_service_account_token: Some(false),
            security_context: Some(pod::restricted_pod()),
            init_containers: Some(vec![sidecar]),
            containers: vec![app],
            ..PodSpec::default()
        };
        self.placement.apply(&mut pod_spec);
        Deployment {
            metadata: ObjectMeta {
                name: Some(spec.app.clone()),
                namespace: Some(spec.namespace.clone()),
                labels: Some(labels.clone()),
                owner_references: Some(vec![pod::owner("StreamIngestApp", &spec.app, &spec.app_uid)]),
                ..ObjectMeta::default()
            },
            spec: Some(DeploymentSpec {
                replicas: Some(i32::try_from(spec.replicas).unwrap_or(i32::MAX)),
                selector: LabelSelector { match_labels: Some(selector), match_expressions: None },
                // Consumers hand partitions over on a rebalance; a surge would only add one.
                strategy: Some(DeploymentStrategy { type_: Some("RollingUpdate".into()), rolling_update: None }),
                template: PodTemplateSpec {
                    metadata: Some(ObjectMeta {
                        labels: Some(labels),
                        annotations: Some(BTreeMap::from([
                            (RESTART_ANNOTATION.to_owned(), spec.restart_token.clone()),
                            (CREDENTIALS_ANNOTATION.to_owned(), spec.credentials_digest.clone()),
                        ])),
                        ..ObjectMeta::default()
                    }),
                    spec: Some(pod_spec),
                },
                ..DeploymentSpec::default()
            }),
            status: None,
        }
    }
}

#[async_trait]
impl ReplicaRuntime for DeploymentRuntime {
    fn name(&self) -> &'static str {
        "kubernetes"
    }

    async fn apply(&self, spec: &ReplicasSpec) -> Result<ReplicasState> {
        let api: Api<Deployment> = Api::namespaced(self.client.clone(), &spec.namespace);
        let applied = api
            .patch(&spec.app, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(self.deployment(spec)))
            .await
            .map_err(|source| RuntimeError::Kube { action: "apply the Deployment", run: spec.app.clone(), source })?;
        let status = applied.status.unwrap_or_default();
        let ready = status.ready_replicas.unwrap_or(0);
        debug!(app = %spec.app, namespace = %spec.namespace, replicas = spec.replicas, ready, "applied Deployment");
        let ready = u32::try_from(ready).unwrap_or(0);
        let mut problem = None;
        if ready < spec.replicas {
            // Pods that cannot be created at all (the quota) show on the Deployment; pods that
            // are stuck show on their container statuses.
            problem = status
                .conditions
                .unwrap_or_default()
                .into_iter()
                .find(|c| c.type_ == "ReplicaFailure" && c.status == "True")
                .map(|c| format!("replicas cannot be created: {}", c.message.unwrap_or_default()));
            if problem.is_none() {
                let pods: Api<Pod> = Api::namespaced(self.client.clone(), &spec.namespace);
                let selector = format!("{LABEL_NAME}={NAME},{LABEL_INSTANCE}={}", spec.app);
                let listed = pods.list(&ListParams::default().labels(&selector)).await.map_err(|source| {
                    RuntimeError::Kube { action: "read the app's pods", run: spec.app.clone(), source }
                })?;
                problem = pod::waiting_problem(&listed.items);
            }
        }
        Ok(ReplicasState { desired: spec.replicas, ready, problem })
    }

    async fn remove(&self, _namespace: &str, _app: &str) -> Result<()> {
        // The Deployment is owned by the app: Kubernetes removes it with the app.
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> ReplicasSpec {
        ReplicasSpec {
            tenant: "nimbus-weather".into(),
            namespace: "tenant-nimbus-weather".into(),
            app: "observations".into(),
            app_uid: "uid-1".into(),
            container: serde_yaml::from_str(
                "{image: 'r/w:1', command: [nimbus-weather-ingest], args: [--slow-ms, '5']}",
            )
            .unwrap(),
            env: BTreeMap::from([(env::TOPICS.to_owned(), "nimbus-weather.observations".to_owned())]),
            credentials_secret: "mysimbdp-credentials".into(),
            service_account: "mysimbdp-app".into(),
            replicas: 2,
            restart_token: "2026-12-01T00:00:00Z".into(),
            credentials_digest: "abc".into(),
        }
    }

    #[tokio::test]
    async fn the_deployment_runs_the_app_beside_a_native_sidecar_locked_down() {
        let client = kube::Client::try_from(kube::Config::new("http://127.0.0.1:1".parse().unwrap())).unwrap();
        let deployment =
            DeploymentRuntime::new(client, "r/sidecar:0.1.0".into(), pod::Placement::default()).deployment(&spec());
        let yaml = serde_yaml::to_string(&deployment).unwrap();
        let template = deployment.spec.as_ref().unwrap().template.clone();
        let pod = template.spec.unwrap();
        assert_eq!(deployment.spec.as_ref().unwrap().replicas, Some(2));
        assert_eq!(pod.containers[0].name, "app");
        let sidecar = &pod.init_containers.as_ref().unwrap()[0];
        assert_eq!(sidecar.restart_policy.as_deref(), Some("Always"), "{yaml}");
        for container in [&pod.containers[0], sidecar] {
            let security = container.security_context.as_ref().unwrap();
            assert_eq!(security.allow_privilege_escalation, Some(false));
            assert_eq!(security.run_as_non_root, Some(true));
            let from = container.env_from.as_ref().unwrap();
            assert_eq!(from[0].secret_ref.as_ref().unwrap().name, "mysimbdp-credentials");
            let env = container.env.as_ref().unwrap();
            assert!(env.iter().any(|e| e.name == env::SIDECAR_ADDR), "{yaml}");
            assert!(env.iter().any(|e| e.name == env::INSTANCE && e.value_from.is_some()), "{yaml}");
        }
        assert_eq!(pod.automount_service_account_token, Some(false));
        assert_eq!(
            template.metadata.unwrap().annotations.unwrap()[RESTART_ANNOTATION],
            "2026-12-01T00:00:00Z",
            "a new token rolls the pods"
        );
        assert_eq!(deployment.metadata.owner_references.unwrap()[0].kind, "StreamIngestApp");
    }
}
