//! The seam for long-running apps: the stream ingest manager says how many replicas of an app
//! should run, with which settings; a [`ReplicaRuntime`] makes it so and says how many are
//! ready. Every replica is the tenant's app beside the platform's metrics sidecar.

use std::collections::BTreeMap;

use async_trait::async_trait;
use mysimbdp_api::common::ContainerSpec;

use super::Result;

/// Where the sidecar listens inside a pod; the app sends its measurements there.
pub const SIDECAR_PORT: u16 = 9465;

/// The replicas of one stream app, as they should run.
#[derive(Debug, Clone, PartialEq)]
pub struct ReplicasSpec {
    /// The tenant.
    pub tenant: String,
    /// The tenant's namespace.
    pub namespace: String,
    /// The app's name.
    pub app: String,
    /// The app's uid (the replicas are owned by it).
    pub app_uid: String,
    /// What each replica runs.
    pub container: ContainerSpec,
    /// The contract's environment, credentials and per-replica variables aside.
    pub env: BTreeMap<String, String>,
    /// Secret in the namespace whose keys are the credentials' environment variables.
    pub credentials_secret: String,
    /// ServiceAccount the replicas use.
    pub service_account: String,
    /// How many should run (0: none, the app is suspended).
    pub replicas: u32,
    /// Changing it restarts every replica.
    pub restart_token: String,
    /// A digest of the tenant's credentials: replicas started with other credentials are
    /// restarted when it changes.
    pub credentials_digest: String,
}

/// How many replicas run, and what keeps the others from running.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ReplicasState {
    /// Replicas asked for.
    pub desired: u32,
    /// Replicas running with both their processes (or containers) ready.
    pub ready: u32,
    /// Why replicas do not run or keep stopping (an image that cannot be pulled, a command
    /// that cannot start, a crash loop), in words that say what to fix.
    pub problem: Option<String>,
}

/// Where stream apps run.
#[async_trait]
pub trait ReplicaRuntime: Send + Sync {
    /// `local` or `kubernetes`.
    fn name(&self) -> &'static str;
    /// Makes the app's replicas match `spec` and tells how many are ready.
    async fn apply(&self, spec: &ReplicasSpec) -> Result<ReplicasState>;
    /// Stops every replica of the app and forgets it; succeeds when nothing runs.
    async fn remove(&self, namespace: &str, app: &str) -> Result<()>;
    /// Stops every replica this runtime started, for an operator that takes its replicas
    /// along when it stops; how many it stopped. Replicas owned by Kubernetes are left to it.
    async fn stop_all(&self) -> usize {
        0
    }
}
