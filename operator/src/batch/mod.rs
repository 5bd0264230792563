//! Batch ingestion: the checks of staged files against the agreement, the ledger of every
//! file and run, the manager that takes files in and runs the tenants' apps on them, and the
//! apps' status.

use std::sync::Arc;

use kube::Api;
use mysimbdp_api::{BatchIngestApp, Tenant};

use crate::{context::Context, k8s, runtime::Runtime, shutdown::Shutdown};

pub mod checks;
mod intake;
pub mod ledger;
pub mod manager;
mod runs;
pub mod schedule;
pub mod stats;
pub mod status;

/// Runs the batch ingest manager until `shutdown`: caches of Tenants and BatchIngestApps,
/// then a poll every `config.poll_interval`.
pub async fn run(
    ctx: Arc<Context>,
    ledger: ledger::Ledger,
    runtime: Arc<dyn Runtime>,
    config: manager::ManagerConfig,
    shutdown: Shutdown,
) {
    let tenants = k8s::cache(Api::<Tenant>::all(ctx.client.clone())).await;
    let apps = k8s::cache(Api::<BatchIngestApp>::all(ctx.client.clone())).await;
    let manager = Arc::new(manager::Manager::new(ctx, ledger, runtime, tenants, apps, config));
    manager.run(shutdown).await;
}
