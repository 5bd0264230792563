//! The seam between what should run and where it runs. The batch manager hands a [`RunSpec`]
//! to a [`Runtime`] and later asks how the run is doing; nothing above this module knows
//! whether runs are Kubernetes Jobs or local processes. The stream ingest manager does the same
//! with a [`replicas::ReplicaRuntime`]: Deployments, or local process pairs.

use std::{collections::BTreeMap, time::Duration};

use async_trait::async_trait;
use mysimbdp_api::common::ContainerSpec;
use mysimbdp_ingest_sdk::contract::RunResult;

pub mod deployment;
pub mod kubernetes;
pub mod local;
pub mod local_replicas;
pub mod pod;
pub mod process;
pub mod replicas;

/// One run of a batch app.
#[derive(Debug, Clone, PartialEq)]
pub struct RunSpec {
    /// Run id: unique, a DNS label (it names the Job).
    pub id: String,
    /// The tenant.
    pub tenant: String,
    /// The tenant's namespace.
    pub namespace: String,
    /// The app's name.
    pub app: String,
    /// The app's uid (the run is owned by it).
    pub app_uid: String,
    /// What to run.
    pub container: ContainerSpec,
    /// The contract's environment, credentials aside.
    pub env: BTreeMap<String, String>,
    /// Secret in the namespace whose keys are the credentials' environment variables.
    pub credentials_secret: String,
    /// ServiceAccount the run uses.
    pub service_account: String,
    /// The run is stopped after this long.
    pub timeout: Duration,
    /// Where the run's files are in the staging store (`<tenant>/processing/<id>/<name>`):
    /// with a staging volume, each is mounted alone, so a run sees its own files and no other.
    pub files: Vec<String>,
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RunOutcome {
    /// The app's exit code, when known.
    pub exit_code: Option<i32>,
    /// The result document the app wrote, when it wrote a valid one.
    pub result: Option<RunResult>,
    /// Why the result document the app wrote was refused (it broke a bound of the contract);
    /// its counts are then unknown.
    pub refused: Option<String>,
    /// Whether the run was stopped at its timeout.
    pub timed_out: bool,
    /// Whether the run could not even start (a command or image that cannot be had): the app
    /// cannot run as it is, whatever its files.
    pub cannot_start: bool,
    /// What the runtime saw, for people.
    pub message: String,
}

/// Where a run stands.
#[derive(Debug, Clone, PartialEq)]
pub enum RunState {
    /// Still going.
    Running,
    /// Over.
    Finished(RunOutcome),
    /// The runtime knows nothing of it (it never started, or its traces are gone).
    Unknown,
}

/// Why a runtime call failed.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// The program could not be started.
    #[error("cannot start run {run} of app {app:?}: {message}")]
    Start {
        /// The run.
        run: String,
        /// The app.
        app: String,
        /// Why, and what to do.
        message: String,
    },
    /// A Kubernetes call failed.
    #[error("Kubernetes: cannot {action} for run {run}: {source}")]
    Kube {
        /// What was being done.
        action: &'static str,
        /// The run.
        run: String,
        /// The client's error.
        source: kube::Error,
    },
    /// A local file of the run could not be used.
    #[error("run {run}: cannot {action} {path}: {source}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// The run.
        run: String,
        /// The path.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
}

impl RuntimeError {
    /// Low-cardinality label for metrics.
    pub fn category(&self) -> &'static str {
        match self {
            RuntimeError::Start { .. } => "runtime_start",
            RuntimeError::Kube { .. } => "kubernetes",
            RuntimeError::Io { .. } => "runtime_io",
        }
    }
}

/// Result of runtime calls.
pub type Result<T, E = RuntimeError> = std::result::Result<T, E>;

/// Where runs run.
#[async_trait]
pub trait Runtime: Send + Sync {
    /// `local` or `kubernetes`.
    fn name(&self) -> &'static str;
    /// Starts a run.
    async fn start(&self, spec: &RunSpec) -> Result<()>;
    /// How the run `id` in `namespace` is doing.
    async fn state(&self, namespace: &str, id: &str) -> Result<RunState>;
    /// Frees what a finished run left (process records, Jobs are left to their TTL).
    async fn forget(&self, namespace: &str, id: &str) -> Result<()>;
    /// Stops every run this runtime started that still runs, for an operator that takes its
    /// runs along when it stops; how many it stopped. Runs owned by Kubernetes are left to it.
    async fn stop_all(&self) -> usize {
        0
    }
}

/// Every key of a Secret as environment variables of a local process (`run` names it in errors).
pub async fn secret_vars(
    client: &kube::Client,
    namespace: &str,
    secret: &str,
    run: &str,
) -> Result<Vec<(String, String)>> {
    let secrets: kube::Api<k8s_openapi::api::core::v1::Secret> = kube::Api::namespaced(client.clone(), namespace);
    let secret = secrets.get(secret).await.map_err(|source| RuntimeError::Kube {
        action: "read the tenant's credentials",
        run: run.to_owned(),
        source,
    })?;
    Ok(secret
        .data
        .unwrap_or_default()
        .into_iter()
        .filter_map(|(k, v)| String::from_utf8(v.0).ok().map(|v| (k, v)))
        .collect())
}

/// Reads the result document an app wrote through the contract's checks: the result, or
/// nothing when the app wrote none, or why it was refused.
pub fn decode_result(bytes: &[u8]) -> (Option<RunResult>, Option<String>) {
    let trimmed = bytes.trim_ascii();
    if trimmed.is_empty() {
        return (None, None);
    }
    match RunResult::decode(trimmed) {
        Ok(result) => (Some(result), None),
        Err(refused) => (None, Some(refused.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_are_read_through_the_contract() {
        assert_eq!(decode_result(b" \n"), (None, None));
        let (result, refused) = decode_result(br#"{"files":[{"name":"a.csv","rowsWritten":2}]}"#);
        assert_eq!((result.map(|r| r.rows_stored()), refused), (Some(2), None));
        let (result, refused) = decode_result(br#"{"files":[{"name":"a.csv","rowsWritten":18446744073709551615}]}"#);
        assert!(result.is_none());
        assert!(refused.unwrap().contains("files[0].rowsWritten"));
    }
}
