//! The batch ingest manager: every poll it takes in the files tenants staged (once they stop
//! changing), checks them against the agreement, records and files each decision, starts runs
//! fairly across tenants within every concurrency limit, and settles finished runs (ingested,
//! retried with backoff, or dead-lettered). Between polls it looks at the runs alone a few
//! times, so that a finished run's slot goes to the next waiting files at once rather than at
//! the next poll. The ledger is written before a file moves, so a restarted manager resumes
//! where it stopped.

use std::{
    collections::{BTreeMap, HashMap},
    sync::{Arc, Mutex},
    time::Duration,
};

use k8s_openapi::jiff::{Timestamp, ToSpan};
use kube::{
    Resource, ResourceExt,
    runtime::{events::EventType, reflector::Store},
};
use mongodb::bson::{self, doc};
use mysimbdp_api::{BatchIngestApp, Tenant, common::FileFormat, tenant::DeliveryGuarantee};
use mysimbdp_ingest_sdk::contract::{self, InputFile};
use rand::Rng;
use tracing::{debug, info, instrument, warn};

use super::{
    checks::{self, Rejection},
    ledger::{FileRecord, FileStatus, Ledger, LedgerError, RunRecord, start_of_day},
};
use crate::{
    conditions,
    context::Context,
    runtime::{RunOutcome, RunSpec, RunState, Runtime},
    staging::{FileState, Location, StagedFile},
    tenant::names::{APP_SERVICE_ACCOUNT, CREDENTIALS_SECRET, TenantNames},
};

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

type Result<T, E = ManagerError> = std::result::Result<T, E>;

/// The batch ingest manager.
pub struct Manager {
    ctx: Arc<Context>,
    ledger: Ledger,
    runtime: Arc<dyn Runtime>,
    tenants: Store<Tenant>,
    apps: Store<BatchIngestApp>,
    config: ManagerConfig,
    /// Size and change time of each incoming file at the previous poll: a file is taken in
    /// only once it has not changed for a whole poll interval.
    seen: Mutex<HashMap<(String, String), (u64, Timestamp)>>,
    /// The tenant that got the last slot: among tenants with as many runs, the next slot goes
    /// to the one after it by name.
    last_served: Mutex<Option<String>>,
}

fn now_bson() -> bson::DateTime {
    bson::DateTime::from_millis(Timestamp::now().as_millisecond())
}

fn bson_time(at: Timestamp) -> bson::DateTime {
    bson::DateTime::from_millis(at.as_millisecond())
}

/// A new ledger id: the time taken in and a random part, sortable and unique.
fn new_id() -> String {
    let random: u32 = rand::rng().random();
    format!("{}-{random:08x}", Timestamp::now().strftime("%Y%m%dT%H%M%S"))
}

/// Whether a tenant is onboarded and not leaving.
fn is_ready(tenant: &Tenant) -> bool {
    tenant.metadata.deletion_timestamp.is_none()
        && tenant.status.as_ref().is_some_and(|s| conditions::is_true(&s.conditions, conditions::READY))
}

/// The app of `tenant` that takes a file: the first by name whose selection matches it.
pub fn select_app<'a>(apps: &'a [Arc<BatchIngestApp>], file: &str, format: FileFormat) -> Option<&'a BatchIngestApp> {
    let mut sorted: Vec<&BatchIngestApp> = apps.iter().map(AsRef::as_ref).collect();
    sorted.sort_by_key(|a| a.name_any());
    sorted.into_iter().find(|app| {
        let selector = &app.spec.files;
        let by_name = selector
            .pattern
            .as_deref()
            .is_none_or(|p| globset::Glob::new(p).is_ok_and(|g| g.compile_matcher().is_match(file)));
        let by_format = selector.formats.is_empty() || selector.formats.contains(&format);
        by_name && by_format
    })
}

/// The wait before attempt `attempts + 1`: `backoff` doubled per failed attempt, capped.
pub fn backoff(app: Option<&BatchIngestApp>, attempts: i32) -> Duration {
    let (first, cap) = app.map_or((Duration::from_secs(10), Duration::from_secs(300)), |a| {
        (a.spec.retry.backoff.get(), a.spec.retry.max_backoff.get())
    });
    let doublings = u32::try_from(attempts.saturating_sub(1)).unwrap_or(0).min(20);
    first.saturating_mul(2u32.saturating_pow(doublings)).min(cap)
}

/// Most attempts per file: the app's policy, or one when the tenant's delivery is at-most-once.
pub fn max_attempts(app: Option<&BatchIngestApp>, delivery: DeliveryGuarantee) -> i32 {
    match delivery {
        DeliveryGuarantee::AtMostOnce => 1,
        _ => app.map_or(3, |a| i32::try_from(a.spec.retry.max_attempts).unwrap_or(3)),
    }
}

/// What the scheduler knows of one tenant: its concurrency and its apps with waiting files.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(test, derive(serde::Deserialize))]
pub struct TenantQueue {
    /// The tenant.
    pub tenant: String,
    /// Most runs of the tenant at once (its agreement).
    pub limit: usize,
    /// Its runs in progress.
    pub running: usize,
    /// Its apps that have files waiting.
    #[cfg_attr(test, serde(default))]
    pub apps: Vec<AppQueue>,
}

/// What the scheduler knows of one app: its concurrency and its waiting files.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(test, derive(serde::Deserialize))]
#[cfg_attr(test, serde(rename_all = "camelCase"))]
pub struct AppQueue {
    /// The app.
    pub app: String,
    /// Most runs of the app at once (zero while it is suspended).
    pub limit: usize,
    /// Its runs in progress.
    pub running: usize,
    /// Most files per run.
    pub files_per_run: usize,
    /// When each waiting file was accepted (milliseconds), oldest first; runs take files from
    /// the front.
    pub waiting: Vec<i64>,
}

/// One run to start: the app of a tenant, on the first `files` of its waiting files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Start {
    /// The tenant.
    pub tenant: String,
    /// The app.
    pub app: String,
    /// How many of its waiting files the run takes.
    pub files: usize,
}

/// Shares `free` run slots out among tenants, one slot at a time (pure). Each slot goes to the
/// tenant with the fewest runs among those that can start one (below their own limit, with an
/// app below its concurrency that has files waiting); among tenants with as many runs, to the
/// first after `last_served` by name, round-robin. Within the tenant, the app with the fewest
/// runs goes first, then the one whose oldest waiting file was accepted first. A tenant with
/// many files therefore takes the slots no one else wants, and gives the next free slot up as
/// soon as another tenant has a file waiting.
pub fn plan_starts(free: usize, tenants: &[TenantQueue], last_served: Option<&str>) -> Vec<Start> {
    let mut tenants: Vec<TenantQueue> = tenants.to_vec();
    // Files already planned, per tenant and app.
    let mut taken: Vec<Vec<usize>> = tenants.iter().map(|t| vec![0; t.apps.len()]).collect();
    let mut last = last_served.map(str::to_owned);
    let mut starts = Vec::new();
    while starts.len() < free {
        let ready_app = |tenant: &TenantQueue, taken: &[usize]| {
            tenant
                .apps
                .iter()
                .enumerate()
                .filter(|(i, a)| a.running < a.limit && taken[*i] < a.waiting.len())
                .min_by_key(|(i, a)| (a.running, a.waiting[taken[*i]], a.app.as_str()))
                .map(|(i, _)| i)
        };
        // Round-robin among equals: the names after the last served one come first.
        let after_last = |name: &str| last.as_deref().is_some_and(|l| name <= l);
        let Some((t, a)) = tenants
            .iter()
            .enumerate()
            .filter(|(_, tenant)| tenant.running < tenant.limit)
            .filter_map(|(t, tenant)| ready_app(tenant, &taken[t]).map(|a| (t, a)))
            .min_by_key(|(t, _)| {
                let tenant = &tenants[*t];
                (tenant.running, after_last(&tenant.tenant), tenant.tenant.as_str())
            })
        else {
            break;
        };
        let tenant = &mut tenants[t];
        let app = &mut tenant.apps[a];
        let files = app.files_per_run.max(1).min(app.waiting.len() - taken[t][a]);
        taken[t][a] += files;
        app.running += 1;
        tenant.running += 1;
        last = Some(tenant.tenant.clone());
        starts.push(Start { tenant: tenant.tenant.clone(), app: app.app.clone(), files });
    }
    starts
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
        }
    }

    /// Polls until the process ends, and looks at the runs between polls.
    pub async fn run(self: Arc<Self>) {
        let check = (self.config.poll_interval / RUN_CHECKS_PER_POLL).clamp(MIN_RUN_CHECK, self.config.poll_interval);
        info!(runtime = self.runtime.name(), interval = ?self.config.poll_interval, run_check = ?check, "batch manager started");
        let mut polls = tokio::time::interval(self.config.poll_interval);
        polls.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut checks = tokio::time::interval(check);
        checks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                biased;
                _ = polls.tick() => self.poll().await,
                _ = checks.tick() => self.check_runs().await,
            }
        }
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
        if let Err(error) = super::status::refresh(&self.ctx, &self.ledger, &self.apps, &self.tenants).await {
            warn!(%error, "cannot update BatchIngestApp statuses");
            outcome = "error";
        }
        self.ctx.metrics.reconciled("batch", outcome, started.elapsed());
    }

    fn apps_of(&self, tenant: &Tenant) -> Vec<Arc<BatchIngestApp>> {
        let namespace = TenantNames::of(tenant).namespace;
        self.apps.state().into_iter().filter(|a| a.namespace().as_deref() == Some(namespace.as_str())).collect()
    }

    /// Finishes moves that a crash interrupted: records whose file is not yet in its folder.
    async fn refile(&self) -> Result<()> {
        for record in self.ledger.files(doc! { "filed": false }).await? {
            let incoming = Location::incoming(&record.tenant, &record.name);
            let target_state = folder_of(record.status);
            let target = incoming.moved(target_state, &record.id);
            let processing = incoming.moved(FileState::Processing, &record.id);
            let staging = &self.ctx.staging;
            if staging.exists(&incoming).await? {
                staging.move_file(&incoming, &target).await?;
            } else if target_state != FileState::Processing && staging.exists(&processing).await? {
                staging.move_file(&processing, &target).await?;
            }
            if matches!(record.status, FileStatus::Rejected | FileStatus::DeadLettered)
                && let Some(reason) = &record.reason
            {
                staging.write_reason(&target, reason).await?;
            }
            self.ledger.update_file(&record.id, doc! { "filed": true }).await?;
            info!(file = %record.name, id = %record.id, "finished an interrupted move");
        }
        Ok(())
    }

    /// Takes in the tenant's files that have stopped changing.
    async fn intake(&self, tenant: &Tenant) -> Result<()> {
        let name = tenant.name_any();
        let listing = self.ctx.staging.list_incoming(&name).await?;
        let mut stable = Vec::new();
        {
            let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
            seen.retain(|(t, f), _| t != &name || listing.iter().any(|l| &l.name == f));
            for file in listing {
                let key = (name.clone(), file.name.clone());
                let now = (file.size, file.modified);
                if seen.get(&key) == Some(&now) {
                    seen.remove(&key);
                    stable.push(file);
                } else {
                    seen.insert(key, now);
                }
            }
        }
        for file in stable {
            self.admit(tenant, &file).await?;
        }
        Ok(())
    }

    /// Decides on one complete file: records the decision, then files it.
    async fn admit(&self, tenant: &Tenant, file: &StagedFile) -> Result<()> {
        let name = tenant.name_any();
        let rules = &tenant.spec.agreement.files;
        let id = new_id();
        let incoming = Location::incoming(&name, &file.name);
        let today = self.ledger.accepted_since(&name, start_of_day()).await?;
        let mut record = FileRecord {
            id: id.clone(),
            tenant: name.clone(),
            app: None,
            name: file.name.clone(),
            sha256: String::new(),
            bytes: i64::try_from(file.size).unwrap_or(i64::MAX),
            format: None,
            records: None,
            status: FileStatus::Rejected,
            attempts: 0,
            run: None,
            received_at: bson_time(file.modified),
            decided_at: now_bson(),
            started_at: None,
            finished_at: None,
            next_attempt_at: None,
            duration_ms: None,
            rows_read: None,
            rows_written: None,
            rows_duplicate: None,
            rows_rejected: None,
            reason: None,
            filed: false,
        };
        let decision = match checks::check_listing(&name, rules, &file.name, file.size) {
            Err(rejection) => Err(rejection),
            Ok(()) => {
                let content = self.ctx.staging.read(&incoming).await?;
                let inspected = checks::inspect(&name, rules, &file.name, &content);
                match inspected {
                    Err(rejection) => Err(rejection),
                    Ok(found) => {
                        record.sha256 = found.sha256.clone();
                        record.format = Some(found.format.as_str().into());
                        record.records = i64::try_from(found.records).ok();
                        let duplicate = if rules.reject_duplicates {
                            self.ledger.accepted_with_hash(&name, &found.sha256).await?
                        } else {
                            None
                        };
                        match duplicate {
                            Some(original) => Err(Rejection::Duplicate {
                                file: file.name.clone(),
                                original: original.name,
                                original_id: original.id,
                            }),
                            None => {
                                checks::check_allowance(&name, rules, &file.name, file.size, today).and_then(|()| {
                                    select_app(&self.apps_of(tenant), &file.name, found.format)
                                        .map(|app| app.name_any())
                                        .ok_or_else(|| Rejection::NoApp {
                                            tenant: name.clone(),
                                            file: file.name.clone(),
                                            format: found.format.as_str(),
                                        })
                                })
                            }
                        }
                    }
                }
            }
        };
        match decision {
            Ok(app) => {
                record.status = FileStatus::Queued;
                record.app = Some(app.clone());
                self.ledger.insert_file(&record).await?;
                self.ctx.staging.move_file(&incoming, &incoming.moved(FileState::Processing, &id)).await?;
                info!(tenant = %name, file = %file.name, %id, %app, "accepted file");
                self.ctx.metrics.batch_file(&name, "accepted", file.size, 0);
            }
            Err(rejection) => {
                let reason = rejection.to_string();
                record.reason = Some(reason.clone());
                self.ledger.insert_file(&record).await?;
                let target = incoming.moved(FileState::Rejected, &id);
                self.ctx.staging.move_file(&incoming, &target).await?;
                self.ctx.staging.write_reason(&target, &reason).await?;
                info!(tenant = %name, file = %file.name, %id, %reason, "rejected file");
                self.ctx.metrics.batch_file(&name, "rejected", file.size, 0);
                self.ctx.event(&tenant.object_ref(&()), EventType::Warning, "FileRejected", &reason).await;
            }
        }
        self.ledger.update_file(&id, doc! { "filed": true }).await?;
        Ok(())
    }

    /// Settles every run that has finished; how many there were.
    async fn settle_runs(&self) -> Result<usize> {
        let mut settled = 0;
        for run in self.ledger.runs(doc! { "outcome": null }).await? {
            let state = self.runtime.state(&run.namespace, &run.id).await?;
            let outcome = match state {
                RunState::Running => continue,
                RunState::Finished(outcome) => outcome,
                RunState::Unknown => RunOutcome {
                    message: format!(
                        "the {} runtime has no trace of the run (it was lost before it started)",
                        self.runtime.name()
                    ),
                    ..RunOutcome::default()
                },
            };
            self.settle(&run, outcome).await?;
            self.runtime.forget(&run.namespace, &run.id).await?;
            settled += 1;
        }
        Ok(settled)
    }

    /// Records how a run ended, file by file, then files them.
    async fn settle(&self, run: &RunRecord, outcome: RunOutcome) -> Result<()> {
        let app = self
            .apps
            .state()
            .into_iter()
            .find(|a| a.name_any() == run.app && a.namespace().as_deref() == Some(&run.namespace));
        let delivery = self
            .tenants
            .state()
            .into_iter()
            .find(|t| t.name_any() == run.tenant)
            .map_or(DeliveryGuarantee::AtLeastOnce, |t| t.spec.agreement.delivery);
        let succeeded = outcome.exit_code == Some(contract::exit::OK) && !outcome.timed_out;
        let bad_input = outcome.exit_code == Some(contract::exit::BAD_INPUT);
        let error = outcome.result.as_ref().and_then(|r| r.error.clone()).unwrap_or_else(|| outcome.message.clone());
        let finished = now_bson();
        let started = run.started_at;
        let duration_ms = finished.timestamp_millis() - started.timestamp_millis();
        let files = self.ledger.files(doc! { "_id": { "$in": &run.files } }).await?;
        let mut stored = 0i64;
        let label = if succeeded {
            "Succeeded"
        } else if outcome.timed_out {
            "TimedOut"
        } else {
            "Failed"
        };
        for file in files {
            let per_file = outcome.result.as_ref().and_then(|r| r.files.iter().find(|f| f.name == file.name));
            let location = Location::incoming(&file.tenant, &file.name).moved(FileState::Processing, &file.id);
            let (status, next) = if succeeded {
                (FileStatus::Ingested, None)
            } else if bad_input || file.attempts >= max_attempts(app.as_deref(), delivery) {
                (FileStatus::DeadLettered, None)
            } else {
                let wait = backoff(app.as_deref(), file.attempts);
                let at = Timestamp::now() + i64::try_from(wait.as_millis()).unwrap_or(i64::MAX).milliseconds();
                (FileStatus::RetryWait, Some(bson_time(at)))
            };
            let mut set = doc! {
                "status": status.as_str(),
                "durationMs": duration_ms,
                "filed": status == FileStatus::RetryWait,
            };
            if let Some(f) = per_file {
                let to_i64 = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
                set.insert("rowsRead", to_i64(f.rows_read));
                set.insert("rowsWritten", to_i64(f.rows_written + f.rows_duplicate));
                set.insert("rowsDuplicate", to_i64(f.rows_duplicate));
                set.insert("rowsRejected", to_i64(f.rows_rejected));
                stored += to_i64(f.rows_written + f.rows_duplicate);
            }
            match next {
                Some(at) => set.insert("nextAttemptAt", at),
                None => set.insert("finishedAt", finished),
            };
            if !succeeded {
                set.insert("reason", format!("attempt {}: {error}", file.attempts));
            }
            self.ledger.update_file(&file.id, set).await?;
            match status {
                FileStatus::Ingested => {
                    self.ctx.staging.move_file(&location, &location.moved(FileState::Ingested, &file.id)).await?;
                    let rows = per_file.map_or(0, |f| f.rows_written + f.rows_duplicate);
                    self.ctx.metrics.batch_file(&file.tenant, "ingested", u64::try_from(file.bytes).unwrap_or(0), rows);
                }
                FileStatus::DeadLettered => {
                    let target = location.moved(FileState::Failed, &file.id);
                    self.ctx.staging.move_file(&location, &target).await?;
                    let reason = format!("failed after {} attempt(s); last error: {error}", file.attempts);
                    self.ctx.staging.write_reason(&target, &reason).await?;
                    self.ctx.metrics.batch_file(&file.tenant, "dead_lettered", 0, 0);
                    if let Some(app) = &app {
                        let note = format!("file {} ({}) is dead-lettered: {reason}", file.name, file.id);
                        self.ctx.event(&app.object_ref(&()), EventType::Warning, "FileDeadLettered", &note).await;
                    }
                }
                _ => self.ctx.metrics.batch_file(&file.tenant, "retried", 0, 0),
            }
            if status != FileStatus::RetryWait {
                self.ledger.update_file(&file.id, doc! { "filed": true }).await?;
            }
        }
        let mut set =
            doc! { "outcome": label, "finishedAt": finished, "rowsWritten": stored, "message": &outcome.message };
        if let Some(code) = outcome.exit_code {
            set.insert("exitCode", code);
        }
        self.ledger.finish_run(&run.id, set).await?;
        self.ctx.metrics.batch_run(&run.tenant, label, Duration::from_millis(u64::try_from(duration_ms).unwrap_or(0)));
        info!(run = %run.id, app = %run.app, outcome = label, rows = stored, message = %outcome.message, "run finished");
        if !succeeded && let Some(app) = &app {
            let note = format!("run {} {}: {error}", run.id, label.to_lowercase());
            self.ctx.event(&app.object_ref(&()), EventType::Warning, "RunFailed", &note).await;
        }
        Ok(())
    }

    /// Starts runs for waiting files, slot by slot as [`plan_starts`] shares them out: within
    /// the app's, the tenant's and the platform's concurrency, a free slot goes to the tenant
    /// with the fewest runs, so that a tenant's flood of files never starves another tenant.
    async fn schedule(&self, tenants: &[Arc<Tenant>]) -> Result<()> {
        if tenants.is_empty() {
            return Ok(());
        }
        let now = now_bson();
        let waiting = self
            .ledger
            .files(doc! { "status": { "$in": [FileStatus::Queued.as_str(), FileStatus::RetryWait.as_str()] }, "filed": true })
            .await?;
        let mut queues: BTreeMap<(String, String), Vec<FileRecord>> = BTreeMap::new();
        for file in waiting {
            if file.next_attempt_at.is_some_and(|at| at > now) {
                continue;
            }
            if let Some(app) = file.app.clone() {
                queues.entry((file.tenant.clone(), app)).or_default().push(file);
            }
        }
        if queues.is_empty() {
            return Ok(());
        }
        let active = self.ledger.runs(doc! { "outcome": null }).await?;
        let free = self.config.max_concurrent_runs.saturating_sub(active.len());
        if free == 0 {
            return Ok(());
        }
        let mut per_app: HashMap<(&str, &str), usize> = HashMap::new();
        let mut per_tenant: HashMap<&str, usize> = HashMap::new();
        for run in &active {
            *per_app.entry((&run.tenant, &run.app)).or_default() += 1;
            *per_tenant.entry(&run.tenant).or_default() += 1;
        }
        let mut apps: HashMap<(String, String), Arc<BatchIngestApp>> = HashMap::new();
        let mut demand = Vec::with_capacity(tenants.len());
        for tenant in tenants {
            let name = tenant.name_any();
            let mut app_queues = Vec::new();
            for app in self.apps_of(tenant) {
                let key = (name.clone(), app.name_any());
                let Some(queue) = queues.get(&key).filter(|q| !q.is_empty()) else { continue };
                app_queues.push(AppQueue {
                    app: key.1.clone(),
                    limit: if app.spec.suspended { 0 } else { app.spec.concurrency as usize },
                    running: per_app.get(&(name.as_str(), key.1.as_str())).copied().unwrap_or(0),
                    files_per_run: app.spec.files_per_run as usize,
                    waiting: queue.iter().map(|f| f.decided_at.timestamp_millis()).collect(),
                });
                apps.insert(key, app);
            }
            demand.push(TenantQueue {
                limit: tenant.spec.agreement.compute.max_concurrent_batch_runs as usize,
                running: per_tenant.get(name.as_str()).copied().unwrap_or(0),
                tenant: name,
                apps: app_queues,
            });
        }
        let last_served = self.last_served.lock().unwrap_or_else(|e| e.into_inner()).clone();
        for start in plan_starts(free, &demand, last_served.as_deref()) {
            let key = (start.tenant, start.app);
            let (Some(queue), Some(app), Some(tenant)) =
                (queues.get_mut(&key), apps.get(&key), tenants.iter().find(|t| t.name_any() == key.0))
            else {
                continue;
            };
            let batch: Vec<FileRecord> = queue.drain(..start.files.min(queue.len())).collect();
            if batch.is_empty() {
                continue;
            }
            self.start_run(tenant, app, batch).await?;
            *self.last_served.lock().unwrap_or_else(|e| e.into_inner()) = Some(key.0);
        }
        Ok(())
    }

    /// Records and starts one run.
    async fn start_run(&self, tenant: &Tenant, app: &BatchIngestApp, files: Vec<FileRecord>) -> Result<()> {
        let names = TenantNames::of(tenant);
        let app_name = app.name_any();
        let random: u32 = rand::rng().random();
        let id = format!("{app_name}-{}{:04x}", Timestamp::now().strftime("%H%M%S"), random & 0xffff);
        let inputs: Vec<InputFile> = files
            .iter()
            .map(|f| {
                let location = Location::incoming(&f.tenant, &f.name).moved(FileState::Processing, &f.id);
                InputFile {
                    url: self.ctx.staging.url(&location),
                    name: f.name.clone(),
                    format: if f.format.as_deref() == Some("JsonLines") {
                        contract::Format::JsonLines
                    } else {
                        contract::Format::Csv
                    },
                    bytes: u64::try_from(f.bytes).unwrap_or(0),
                    sha256: f.sha256.clone(),
                }
            })
            .collect();
        let delivery = match tenant.spec.agreement.delivery {
            DeliveryGuarantee::AtMostOnce => "AtMostOnce",
            DeliveryGuarantee::AtLeastOnce => "AtLeastOnce",
            DeliveryGuarantee::EffectivelyOnce => "EffectivelyOnce",
        };
        let env = BTreeMap::from([
            (contract::env::TENANT.to_owned(), names.tenant.clone()),
            (contract::env::APP.to_owned(), app_name.clone()),
            (contract::env::RUN_ID.to_owned(), id.clone()),
            (contract::env::DELIVERY.to_owned(), delivery.to_owned()),
            (contract::env::INPUT.to_owned(), serde_json::to_string(&inputs).unwrap_or_else(|_| "[]".into())),
            (contract::env::COLLECTION.to_owned(), app.spec.target.collection.clone()),
        ]);
        let spec = RunSpec {
            id: id.clone(),
            tenant: names.tenant.clone(),
            namespace: names.namespace.clone(),
            app: app_name.clone(),
            app_uid: app.metadata.uid.clone().unwrap_or_default(),
            container: app.spec.container.clone(),
            env,
            credentials_secret: CREDENTIALS_SECRET.into(),
            service_account: APP_SERVICE_ACCOUNT.into(),
            timeout: app.spec.timeout.get(),
        };
        let started = now_bson();
        let ids: Vec<String> = files.iter().map(|f| f.id.clone()).collect();
        self.ledger
            .insert_run(&RunRecord {
                id: id.clone(),
                tenant: names.tenant.clone(),
                namespace: names.namespace.clone(),
                app: app_name.clone(),
                files: ids.clone(),
                started_at: started,
                finished_at: None,
                outcome: None,
                exit_code: None,
                rows_written: None,
                message: None,
            })
            .await?;
        for file in &files {
            let set = doc! { "status": FileStatus::Running.as_str(), "run": &id, "attempts": file.attempts + 1, "startedAt": started };
            self.ledger.update_file(&file.id, set).await?;
        }
        debug!(run = %id, files = ids.len(), "starting run");
        if let Err(error) = self.runtime.start(&spec).await {
            warn!(run = %id, %error, "run did not start");
            let outcome = RunOutcome { message: error.to_string(), ..RunOutcome::default() };
            let run = self.ledger.runs(doc! { "_id": &id }).await?.into_iter().next();
            if let Some(run) = run {
                self.settle(&run, outcome).await?;
            }
        }
        Ok(())
    }
}

/// The folder a file of a status lives in.
fn folder_of(status: FileStatus) -> FileState {
    match status {
        FileStatus::Queued | FileStatus::Running | FileStatus::RetryWait => FileState::Processing,
        FileStatus::Ingested => FileState::Ingested,
        FileStatus::Rejected => FileState::Rejected,
        FileStatus::DeadLettered => FileState::Failed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app(yaml_spec: &str) -> Arc<BatchIngestApp> {
        let yaml = format!(
            "apiVersion: mysimbdp.io/v1alpha1\nkind: BatchIngestApp\nmetadata: {{name: {}, namespace: t}}\nspec:\n  container: {{image: i, command: [c]}}\n  target: {{collection: c}}\n{yaml_spec}",
            yaml_spec.lines().next().unwrap_or_default().trim_start_matches("# ")
        );
        Arc::new(serde_yaml::from_str(&yaml).unwrap())
    }

    #[test]
    fn files_go_to_the_first_app_by_name_whose_selection_matches() {
        let apps = vec![
            app("# zeta\n  files: {formats: [Csv]}"),
            app("# flights\n  files: {pattern: 'flights_*.csv'}"),
            app("# stations\n  files: {formats: [JsonLines]}"),
        ];
        let pick = |name, format| select_app(&apps, name, format).map(|a| a.name_any());
        assert_eq!(pick("flights_2013_01.csv", FileFormat::Csv).as_deref(), Some("flights"));
        assert_eq!(pick("planes.csv", FileFormat::Csv).as_deref(), Some("zeta"));
        assert_eq!(pick("s.jsonl", FileFormat::JsonLines).as_deref(), Some("stations"));
        assert_eq!(select_app(&apps[..1], "s.jsonl", FileFormat::JsonLines).map(|a| a.name_any()), None);
    }

    #[test]
    fn backoff_doubles_up_to_the_cap_and_at_most_once_never_retries() {
        let a = app("# a\n  files: {formats: [Csv]}\n  retry: {maxAttempts: 4, backoff: 5s, maxBackoff: 12s}");
        let waits: Vec<u64> = (1..=4).map(|n| backoff(Some(&a), n).as_secs()).collect();
        assert_eq!(waits, [5, 10, 12, 12]);
        assert_eq!(max_attempts(Some(&a), DeliveryGuarantee::AtLeastOnce), 4);
        assert_eq!(max_attempts(Some(&a), DeliveryGuarantee::AtMostOnce), 1);
        assert_eq!(backoff(None, 1), Duration::from_secs(10));
    }

    /// The starts [`plan_starts`] gives for tenants written as YAML, as `tenant/app×files`.
    fn plan(free: usize, yaml: &str, last_served: Option<&str>) -> Vec<String> {
        let tenants: Vec<TenantQueue> = serde_yaml::from_str(yaml).unwrap();
        plan_starts(free, &tenants, last_served)
            .into_iter()
            .map(|s| format!("{}/{}×{}", s.tenant, s.app, s.files))
            .collect()
    }

    #[test]
    fn a_free_slot_goes_to_the_tenant_with_the_fewest_runs_whatever_its_queue() {
        // The flood holds every slot it may; one frees, and the calm tenant's single file
        // gets it, even though the flood was not the last served and has more waiting.
        let yaml = "
- tenant: flood-air
  limit: 2
  running: 1
  apps: [{app: flights, limit: 2, running: 1, filesPerRun: 1, waiting: [1, 2, 3, 4, 5, 6, 7, 8]}]
- tenant: calm-air
  limit: 2
  running: 0
  apps: [{app: flights, limit: 2, running: 0, filesPerRun: 1, waiting: [9]}]
";
        assert_eq!(plan(1, yaml, Some("calm-air")), ["calm-air/flights×1"]);
        assert_eq!(plan(1, yaml, Some("flood-air")), ["calm-air/flights×1"]);
        assert_eq!(plan(1, yaml, None), ["calm-air/flights×1"]);
        // With more slots, the flood takes what the calm tenant cannot use, up to its limit.
        assert_eq!(plan(4, yaml, None), ["calm-air/flights×1", "flood-air/flights×1"]);
    }

    #[test]
    fn tenants_with_as_many_runs_take_turns_after_the_last_served() {
        let yaml = "
- {tenant: a, limit: 9, running: 0, apps: [{app: x, limit: 9, running: 0, filesPerRun: 2, waiting: [1, 2, 3, 4, 5]}]}
- {tenant: b, limit: 9, running: 0, apps: [{app: x, limit: 9, running: 0, filesPerRun: 1, waiting: [1, 2]}]}
- {tenant: c, limit: 9, running: 0, apps: [{app: x, limit: 9, running: 0, filesPerRun: 1, waiting: [1]}]}
";
        assert_eq!(plan(3, yaml, None), ["a/x×2", "b/x×1", "c/x×1"]);
        assert_eq!(plan(3, yaml, Some("a")), ["b/x×1", "c/x×1", "a/x×2"]);
        assert_eq!(plan(2, yaml, Some("c")), ["a/x×2", "b/x×1"]);
        // A last served tenant that is gone: the turn goes on by name.
        assert_eq!(plan(1, yaml, Some("bb")), ["c/x×1"]);
        // Queues run dry one by one; the remaining slots go to whoever still has files.
        assert_eq!(plan(9, yaml, Some("c")), ["a/x×2", "b/x×1", "c/x×1", "a/x×2", "b/x×1", "a/x×1"]);
    }

    #[test]
    fn one_slot_at_a_time_the_tenants_alternate_across_polls() {
        // One platform slot; each poll starts one run, which ends before the next poll.
        let mut queues: Vec<TenantQueue> = serde_yaml::from_str(
            "
- {tenant: flood, limit: 4, running: 0, apps: [{app: x, limit: 4, running: 0, filesPerRun: 1, waiting: [1, 2, 3, 4, 5, 6]}]}
- {tenant: calm, limit: 1, running: 0, apps: [{app: x, limit: 1, running: 0, filesPerRun: 1, waiting: [7, 8]}]}
",
        )
        .unwrap();
        let mut last: Option<String> = None;
        let mut served = Vec::new();
        for _ in 0..8 {
            let starts = plan_starts(1, &queues, last.as_deref());
            let Some(start) = starts.first() else { break };
            let queue = queues.iter_mut().find(|t| t.tenant == start.tenant).unwrap();
            queue.apps[0].waiting.drain(..start.files);
            served.push(start.tenant.clone());
            last = Some(start.tenant.clone());
        }
        assert_eq!(served, ["calm", "flood", "calm", "flood", "flood", "flood", "flood", "flood"]);
    }

    #[test]
    fn every_limit_holds() {
        let cases = [
            // (free slots, tenants, expected starts)
            (
                0,
                "[{tenant: a, limit: 2, running: 0, apps: [{app: x, limit: 2, running: 0, filesPerRun: 1, waiting: [1]}]}]",
                vec![],
            ),
            // The tenant's limit.
            (
                4,
                "[{tenant: a, limit: 2, running: 1, apps: [{app: x, limit: 9, running: 1, filesPerRun: 1, waiting: [1, 2, 3]}]}]",
                vec!["a/x×1"],
            ),
            // The app's concurrency, and a suspended app (limit 0).
            (
                4,
                "[{tenant: a, limit: 9, running: 0, apps: [{app: x, limit: 1, running: 0, filesPerRun: 1, waiting: [1, 2]}, {app: y, limit: 0, running: 0, filesPerRun: 1, waiting: [1]}]}]",
                vec!["a/x×1"],
            ),
            // Files per run, the last run taking what is left.
            (
                4,
                "[{tenant: a, limit: 9, running: 0, apps: [{app: x, limit: 9, running: 0, filesPerRun: 3, waiting: [1, 2, 3, 4]}]}]",
                vec!["a/x×3", "a/x×1"],
            ),
            // Within a tenant: the app with fewer runs, then the one with the older file.
            (
                3,
                "[{tenant: a, limit: 9, running: 1, apps: [{app: x, limit: 9, running: 1, filesPerRun: 1, waiting: [1, 2]}, {app: y, limit: 9, running: 0, filesPerRun: 1, waiting: [5]}, {app: z, limit: 9, running: 0, filesPerRun: 1, waiting: [3]}]}]",
                vec!["a/z×1", "a/y×1", "a/x×1"],
            ),
            // A tenant with no waiting files takes nothing.
            (2, "[{tenant: a, limit: 2, running: 0}]", vec![]),
        ];
        for (free, yaml, expected) in cases {
            assert_eq!(plan(free, yaml, None), expected, "{yaml}");
        }
    }

    #[test]
    fn ids_sort_by_time_and_differ() {
        let (a, b) = (new_id(), new_id());
        assert_ne!(a, b);
        assert_eq!(a.len(), "20261124T101500-0123abcd".len());
    }
}
