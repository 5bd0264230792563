//! The kubernetes runtime: a run is a Job in the tenant's namespace, owned by its
//! BatchIngestApp, running as the tenant's app ServiceAccount under the restricted Pod Security
//! profile, with the tenant's credentials from its Secret and a deadline. The result document
//! is the container's termination message.

use std::collections::BTreeMap;

use async_trait::async_trait;
use k8s_openapi::{
    api::{
        batch::v1::{Job, JobSpec},
        core::v1::{EnvVar, PersistentVolumeClaimVolumeSource, Pod, PodSpec, PodTemplateSpec, Volume, VolumeMount},
    },
    apimachinery::pkg::apis::meta::v1::ObjectMeta,
};
use kube::{
    Api,
    api::{DeleteParams, ListParams, PostParams},
};
use mysimbdp_ingest_sdk::contract::{decode::cut, env};
use tracing::info;

use super::{Result, RunOutcome, RunSpec, RunState, Runtime, RuntimeError, decode_result, pod};

/// Label carrying the run id on Jobs and their pods.
pub const LABEL_RUN: &str = "mysimbdp.io/run";
/// Where the result document goes: the container's termination message.
const TERMINATION_LOG: &str = "/dev/termination-log";
/// Finished Jobs are removed after a day; the ledger keeps the outcome.
const JOB_TTL_SECONDS: i32 = 24 * 3600;

/// Runs as Jobs.
pub struct KubernetesRuntime {
    client: kube::Client,
    /// A PersistentVolumeClaim (in each tenant namespace) holding the staging store, mounted
    /// read-only at `staging_path` so that `file://` input URLs resolve inside the pod.
    staging_claim: Option<String>,
    staging_path: String,
    /// Annotations put on every run's pod (for the cluster's own tooling).
    pod_annotations: BTreeMap<String, String>,
    /// The nodes runs may land on.
    placement: pod::Placement,
}

impl KubernetesRuntime {
    /// Jobs through `client`; when `staging_claim` is set, the claim of that name is mounted at
    /// `staging_path`; every pod gets `pod_annotations` and lands as `placement` says.
    pub fn new(
        client: kube::Client,
        staging_claim: Option<String>,
        staging_path: String,
        pod_annotations: BTreeMap<String, String>,
        placement: pod::Placement,
    ) -> Self {
        Self { client, staging_claim, staging_path, pod_annotations, placement }
    }

    /// The Job of a run (pure).
    pub fn job(&self, spec: &RunSpec) -> Job {
        let mut labels = pod::labels("mysimbdp-batch-run", "batch-run", &spec.app, &spec.tenant);
        labels.insert(LABEL_RUN.to_owned(), spec.id.clone());
        let mut env = pod::env_vars(&spec.env);
        env.push(EnvVar { name: env::RESULT_FILE.into(), value: Some(TERMINATION_LOG.into()), value_from: None });
        let mut container = pod::app_container(&spec.container, env, &spec.credentials_secret);
        container.termination_message_path = Some(TERMINATION_LOG.into());
        container.termination_message_policy = Some("FallbackToLogsOnError".into());
        // Each of the run's files is mounted alone (a subPath of the claim) where its URL says:
        // the run sees its own files, never the rest of the store.
        let volumes = self.staging_claim.as_ref().map(|claim| {
            let root = self.staging_path.trim_end_matches('/');
            container.volume_mounts = Some(
                spec.files
                    .iter()
                    .map(|path| VolumeMount {
                        name: "staging".into(),
                        mount_path: format!("{root}/{path}"),
                        sub_path: Some(path.clone()),
                        read_only: Some(true),
                        ..VolumeMount::default()
                    })
                    .collect(),
            );
            vec![Volume {
                name: "staging".into(),
                persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                    claim_name: claim.clone(),
                    read_only: Some(true),
                }),
                ..Volume::default()
            }]
        });
        let timeout = i64::try_from(spec.timeout.as_secs()).unwrap_or(i64::MAX).max(1);
        let mut pod_spec = PodSpec {
            restart_policy: Some("Never".into()),
            service_account_name: Some(spec.service_account.clone()),
            automount_service_account_token: Some(false),
            security_context: Some(pod::restricted_pod()),
            containers: vec![container],
            volumes,
            ..PodSpec::default()
        };
        self.placement.apply(&mut pod_spec);
        Job {
            metadata: ObjectMeta {
                name: Some(spec.id.clone()),
                namespace: Some(spec.namespace.clone()),
                labels: Some(labels.clone()),
                owner_references: Some(vec![pod::owner("BatchIngestApp", &spec.app, &spec.app_uid)]),
                ..ObjectMeta::default()
            },
            spec: Some(JobSpec {
                // The platform retries with its own backoff and records every attempt.
                backoff_limit: Some(0),
                active_deadline_seconds: Some(timeout),
                ttl_seconds_after_finished: Some(JOB_TTL_SECONDS),
                template: PodTemplateSpec {
                    metadata: Some(ObjectMeta {
                        labels: Some(labels),
                        annotations: (!self.pod_annotations.is_empty()).then(|| self.pod_annotations.clone()),
                        ..ObjectMeta::default()
                    }),
                    spec: Some(pod_spec),
                },
                ..JobSpec::default()
            }),
            status: None,
        }
    }

    fn kube_error(action: &'static str, run: &str) -> impl FnOnce(kube::Error) -> RuntimeError {
        let run = run.to_owned();
        move |source| RuntimeError::Kube { action, run, source }
    }
}

#[async_trait]
impl Runtime for KubernetesRuntime {
    fn name(&self) -> &'static str {
        "kubernetes"
    }

    async fn start(&self, spec: &RunSpec) -> Result<()> {
        let jobs: Api<Job> = Api::namespaced(self.client.clone(), &spec.namespace);
        match jobs.create(&PostParams::default(), &self.job(spec)).await {
            Ok(_) => {}
            // Created by an earlier attempt to start this very run.
            Err(kube::Error::Api(status)) if status.is_already_exists() => {}
            Err(e) => return Err(Self::kube_error("create the Job", &spec.id)(e)),
        }
        info!(run = %spec.id, namespace = %spec.namespace, "created Job");
        Ok(())
    }

    async fn state(&self, namespace: &str, id: &str) -> Result<RunState> {
        let jobs: Api<Job> = Api::namespaced(self.client.clone(), namespace);
        let Some(job) = jobs.get_opt(id).await.map_err(Self::kube_error("read the Job", id))? else {
            return Ok(RunState::Unknown);
        };
        let status = job.status.unwrap_or_default();
        let conditions = status.conditions.unwrap_or_default();
        let finished = conditions.iter().find(|c| (c.type_ == "Complete" || c.type_ == "Failed") && c.status == "True");
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), namespace);
        let listed = pods
            .list(&ListParams::default().labels(&format!("{LABEL_RUN}={id}")))
            .await
            .map_err(Self::kube_error("read the run's pod", id))?;
        let Some(condition) = finished else {
            // A pod that can never start (its image cannot be had, its configuration cannot
            // be made) would wait for the Job's deadline: the run ends now, and says why.
            if let Some(problem) = pod::waiting_problem(&listed.items) {
                jobs.delete(id, &DeleteParams::background()).await.map_err(Self::kube_error("delete the Job", id))?;
                let message = format!("the run's pod cannot start: {problem}");
                return Ok(RunState::Finished(RunOutcome { cannot_start: true, message, ..RunOutcome::default() }));
            }
            return Ok(RunState::Running);
        };
        let timed_out = condition.reason.as_deref() == Some("DeadlineExceeded");
        let terminated = listed
            .items
            .into_iter()
            .filter_map(|p| p.status?.container_statuses?.into_iter().find(|c| c.name == "app")?.state?.terminated)
            .next();
        let exit_code = terminated.as_ref().map(|t| t.exit_code);
        // The termination message is the result document, or (when the app wrote none and
        // failed) the end of its output.
        let written = terminated.as_ref().and_then(|t| t.message.as_deref()).unwrap_or_default();
        let (result, refused, output) = if written.trim_start().starts_with('{') {
            let (result, refused) = decode_result(written.as_bytes());
            (result, refused, None)
        } else {
            (None, None, Some(written.trim()).filter(|w| !w.is_empty()))
        };
        let mut message = match (&terminated, timed_out) {
            (_, true) => "the Job passed its deadline and was stopped".to_owned(),
            (Some(t), _) if t.reason.as_deref() == Some("OOMKilled") => format!(
                "the app ran out of memory and was killed at its limit (OOMKilled, exit code {}); raise spec.container.resources.memory within the tenant's quota",
                t.exit_code
            ),
            (Some(t), _) => format!(
                "the app exited with code {}{}",
                t.exit_code,
                t.reason.as_deref().map(|r| format!(" ({r})")).unwrap_or_default()
            ),
            (None, _) => condition.message.clone().unwrap_or_else(|| "the Job finished without a pod status".into()),
        };
        if let Some(output) = output {
            message.push_str(&format!("; its last output: {}", cut(output, 500)));
        }
        Ok(RunState::Finished(RunOutcome { exit_code, result, refused, timed_out, message, cannot_start: false }))
    }

    async fn forget(&self, _namespace: &str, _id: &str) -> Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::{collections::BTreeMap, time::Duration};

    use super::*;

    fn spec(files: &[&str]) -> RunSpec {
        RunSpec {
            id: "flights-1".into(),
            tenant: "acme-air".into(),
            namespace: "tenant-acme-air".into(),
            app: "flights".into(),
            app_uid: "u1".into(),
            container: serde_json::from_value(serde_json::json!({"image": "app:1", "command": ["ingest"]})).unwrap(),
            env: BTreeMap::new(),
            credentials_secret: "mysimbdp-credentials".into(),
            service_account: "mysimbdp-app".into(),
            timeout: Duration::from_secs(60),
            files: files.iter().map(|f| (*f).to_owned()).collect(),
        }
    }

    #[tokio::test]
    async fn a_run_mounts_its_own_files_and_nothing_else_of_the_staging_volume() {
        let api = crate::testing::FakeApiServer::default();
        let runtime = KubernetesRuntime::new(
            api.client(),
            Some("staging".into()),
            "/var/lib/mysimbdp/staging/".into(),
            BTreeMap::new(),
            Default::default(),
        );
        let job = runtime.job(&spec(&["acme-air/processing/f1/a.csv", "acme-air/processing/f2/b.csv"]));
        let pod = job.spec.unwrap().template.spec.unwrap();
        let mounts: Vec<(String, Option<String>, Option<bool>)> = pod.containers[0]
            .volume_mounts
            .clone()
            .unwrap()
            .into_iter()
            .map(|m| (m.mount_path, m.sub_path, m.read_only))
            .collect();
        assert_eq!(
            mounts,
            [
                (
                    "/var/lib/mysimbdp/staging/acme-air/processing/f1/a.csv".to_owned(),
                    Some("acme-air/processing/f1/a.csv".to_owned()),
                    Some(true)
                ),
                (
                    "/var/lib/mysimbdp/staging/acme-air/processing/f2/b.csv".to_owned(),
                    Some("acme-air/processing/f2/b.csv".to_owned()),
                    Some(true)
                ),
            ]
        );
        let without = KubernetesRuntime::new(api.client(), None, "/s".into(), BTreeMap::new(), Default::default());
        let pod = without.job(&spec(&["acme-air/processing/f1/a.csv"])).spec.unwrap().template.spec.unwrap();
        assert!(pod.volumes.is_none() && pod.containers[0].volume_mounts.is_none(), "no volume without a claim");
    }
}
