//! Batch ingestion: the checks of staged files against the agreement, the ledger of every
//! file and run, the manager that takes files in and runs the tenants' apps on them, and the
//! apps' status.

use std::{sync::Arc, time::Duration};

use futures::StreamExt;
use kube::{
    Api,
    runtime::{WatchStreamExt, reflector, watcher},
};
use mysimbdp_api::{BatchIngestApp, Tenant};

use crate::{context::Context, runtime::Runtime};

pub mod checks;
pub mod ledger;
pub mod manager;
pub mod stats;
pub mod status;

/// Runs the batch ingest manager until the process ends: caches of Tenants and
/// BatchIngestApps, then a poll every `config.poll_interval`.
pub async fn run(ctx: Arc<Context>, ledger: ledger::Ledger, runtime: Arc<dyn Runtime>, config: manager::ManagerConfig) {
    let tenants = cache(Api::<Tenant>::all(ctx.client.clone())).await;
    let apps = cache(Api::<BatchIngestApp>::all(ctx.client.clone())).await;
    let manager = Arc::new(manager::Manager::new(ctx, ledger, runtime, tenants, apps, config));
    manager.run().await;
}

/// A cache of every object of a kind, kept current by a watch, ready once first listed.
pub async fn cache<K>(api: Api<K>) -> reflector::Store<K>
where
    K: kube::Resource<DynamicType = ()> + Clone + std::fmt::Debug + serde::de::DeserializeOwned + Send + Sync + 'static,
{
    let (reader, writer) = reflector::store();
    let stream = watcher(api, watcher::Config::default()).default_backoff().reflect(writer).applied_objects();
    tokio::spawn(stream.for_each(|_| std::future::ready(())));
    // A watch that cannot list keeps retrying with backoff; the manager waits for it.
    while reader.wait_until_ready().await.is_err() {
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    reader
}
