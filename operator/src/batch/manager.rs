//! The batch ingest manager: every poll it takes in the files tenants staged (once they stop
//! changing), checks them against the agreement, records and files each decision, starts runs
//! fairly across tenants within every concurrency limit, and settles finished runs (ingested,
//! retried with backoff, or dead-lettered). Between polls it looks at the runs alone a few
//! times, so that a finished run's slot goes to the next waiting files at once rather than at
//! the next poll. The ledger is written before a file moves, so a restarted manager resumes
//! where it stopped.

use std::{
    collections::{HashMap, HashSet},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use k8s_openapi::jiff::Timestamp;
use kube::{ResourceExt, runtime::reflector::Store};
use mongodb::bson::{self, doc};
use mysimbdp_api::{BatchIngestApp, Tenant};
use rand::Rng;
use tracing::{info, instrument, warn};

use super::{
    ledger::{Ledger, LedgerError},
    status::AppKey,
};
use crate::{conditions, context::Context, runtime::Runtime, shutdown::Shutdown, tenant::names::TenantNames};

/// Looks at the runs between two polls: a finished run's slot idles at most a quarter of the
/// poll interval.
const RUN_CHECKS_PER_POLL: u32 = 4;
/// The shortest wait between two looks at the runs.
const MIN_RUN_CHECK: Duration = Duration::from_millis(100);

/// How the manager paces itself.
#[derive(Debug, Clone)]
pub struct ManagerConfig {
    /// Between two looks at the staging areas and the runs.
    pub poll_interval: Duration,
    /// Most runs at once over all tenants.
    pub max_concurrent_runs: usize,
}

/// Why a manager step failed; the step is retried at the next poll.
#[derive(Debug, thiserror::Error)]
pub enum ManagerError {
    /// The ledger failed.
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    /// The staging store failed.
    #[error(transparent)]
    Staging(#[from] crate::staging::StagingError),
    /// The runtime failed.
    #[error(transparent)]
    Runtime(#[from] crate::runtime::RuntimeError),
}

pub(super) type Result<T, E = ManagerError> = std::result::Result<T, E>;

/// The batch ingest manager.
pub struct Manager {
    pub(super) ctx: Arc<Context>,
    pub(super) ledger: Ledger,
    pub(super) runtime: Arc<dyn Runtime>,
    pub(super) tenants: Store<Tenant>,
    pub(super) apps: Store<BatchIngestApp>,
    pub(super) config: ManagerConfig,
    /// Size and change time of each incoming file at the previous poll: a file is taken in
    /// only once it has not changed for a whole poll interval.
    pub(super) seen: Mutex<HashMap<(String, String), (u64, Timestamp)>>,
    /// The tenant that got the last slot: among tenants with as many runs, the next slot goes
    /// to the one after it by name.
    pub(super) last_served: Mutex<Option<String>>,
    /// Apps whose files or runs changed since their status was last refreshed.
    pub(super) dirty: Mutex<HashSet<AppKey>>,
    /// Every app's status has been refreshed once since the manager started.
    refreshed_all: AtomicBool,
}

pub(super) fn now_bson() -> bson::DateTime {
    bson::DateTime::from_millis(Timestamp::now().as_millisecond())
}

pub(super) fn bson_time(at: Timestamp) -> bson::DateTime {
    bson::DateTime::from_millis(at.as_millisecond())
}

/// A new ledger id: the time taken in and a random part, sortable and unique.
pub(super) fn new_id() -> String {
    let random: u32 = rand::rng().random();
    format!("{}-{random:08x}", Timestamp::now().strftime("%Y%m%dT%H%M%S"))
}

/// Whether a tenant is onboarded and not leaving.
pub(super) fn is_ready(tenant: &Tenant) -> bool {
    tenant.metadata.deletion_timestamp.is_none()
        && tenant.status.as_ref().is_some_and(|s| conditions::is_true(&s.conditions, conditions::READY))
}

impl Manager {
    /// A manager over the given caches of Tenants and BatchIngestApps.
    pub fn new(
        ctx: Arc<Context>,
        ledger: Ledger,
        runtime: Arc<dyn Runtime>,
        tenants: Store<Tenant>,
        apps: Store<BatchIngestApp>,
        config: ManagerConfig,
    ) -> Self {
        Self {
            ctx,
            ledger,
            runtime,
            tenants,
            apps,
            config,
            seen: Mutex::new(HashMap::new()),
            last_served: Mutex::new(None),
            dirty: Mutex::new(HashSet::new()),
            refreshed_all: AtomicBool::new(false),
        }
    }

    /// Polls until `shutdown`, and looks at the runs between polls. A round under way is
    /// finished first.
    pub async fn run(self: Arc<Self>, shutdown: Shutdown) {
        let check = (self.config.poll_interval / RUN_CHECKS_PER_POLL).clamp(MIN_RUN_CHECK, self.config.poll_interval);
        info!(runtime = self.runtime.name(), interval = ?self.config.poll_interval, run_check = ?check, "batch manager started");
        let mut polls = tokio::time::interval(self.config.poll_interval);
        polls.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut checks = tokio::time::interval(check);
        checks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                biased;
                () = shutdown.wait() => break,
                _ = polls.tick() => self.poll().await,
                _ = checks.tick() => self.check_runs().await,
            }
        }
        info!("batch manager stopped");
    }

    /// Between polls: settles the runs that have finished and, when one has, starts runs in
    /// the slots it freed. Intake and statuses wait for the next poll.
    #[instrument(skip_all)]
    pub async fn check_runs(&self) {
        match self.settle_runs().await {
            Ok(0) => {}
            Ok(_) => {
                let tenants: Vec<Arc<Tenant>> = self.tenants.state().into_iter().filter(|t| is_ready(t)).collect();
                if let Err(error) = self.schedule(&tenants).await {
                    warn!(%error, "cannot start runs");
                }
            }
            Err(error) => warn!(%error, "cannot settle finished runs"),
        }
    }

    /// One round: finish moves, take in files, settle runs, start runs, refresh statuses.
    #[instrument(skip_all)]
    pub async fn poll(&self) {
        let started = std::time::Instant::now();
        let mut outcome = "ok";
        let tenants: Vec<Arc<Tenant>> = self.tenants.state().into_iter().filter(|t| is_ready(t)).collect();
        if let Err(error) = self.refile().await {
            warn!(%error, "cannot finish moving files");
            outcome = "error";
        }
        for tenant in &tenants {
            if let Err(error) = self.intake(tenant).await {
                warn!(tenant = %tenant.name_any(), %error, "cannot take in staged files");
                outcome = "error";
            }
        }
        if let Err(error) = self.settle_runs().await {
            warn!(%error, "cannot settle finished runs");
            outcome = "error";
        }
        if let Err(error) = self.schedule(&tenants).await {
            warn!(%error, "cannot start runs");
            outcome = "error";
        }
        let all = !self.refreshed_all.load(Ordering::Relaxed);
        let mut dirty = std::mem::take(&mut *self.dirty.lock().unwrap_or_else(|e| e.into_inner()));
        match super::status::refresh(&self.ctx, &self.ledger, &self.apps, &self.tenants, &mut dirty, all).await {
            Ok(()) => self.refreshed_all.store(true, Ordering::Relaxed),
            Err(error) => {
                warn!(%error, "cannot update BatchIngestApp statuses");
                outcome = "error";
            }
        }
        // What could not be refreshed is tried again at the next poll.
        self.dirty.lock().unwrap_or_else(|e| e.into_inner()).extend(dirty);
        self.ctx.metrics.reconciled("batch", outcome, started.elapsed());
    }

    /// Marks an app's status for refresh at the next poll.
    pub(super) fn touch(&self, namespace: &str, app: &str) {
        self.dirty.lock().unwrap_or_else(|e| e.into_inner()).insert((namespace.to_owned(), app.to_owned()));
    }

    pub(super) fn apps_of(&self, tenant: &Tenant) -> Vec<Arc<BatchIngestApp>> {
        let namespace = TenantNames::of(tenant).namespace;
        self.apps.state().into_iter().filter(|a| a.namespace().as_deref() == Some(namespace.as_str())).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_sort_by_time_and_differ() {
        let (a, b) = (new_id(), new_id());
        assert_ne!(a, b);
        assert_eq!(a.len(), "20261124T101500-0123abcd".len());
    }
}
