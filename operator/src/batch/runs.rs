//! Runs of batch apps: free slots are shared out by [`plan_starts`], each run is recorded and
//! started through the runtime, and a finished run is settled file by file (ingested, retried
//! after a backoff, or dead-lettered) from its outcome, as the contract's result document and
//! the runtime tell it.

use std::{
    collections::{BTreeMap, HashMap},
    sync::Arc,
    time::Duration,
};

use k8s_openapi::jiff::{Timestamp, ToSpan};
use kube::{Resource, ResourceExt, runtime::events::EventType};
use mongodb::bson::doc;
use mysimbdp_api::{BatchIngestApp, Tenant, tenant::DeliveryGuarantee};
use mysimbdp_ingest_sdk::contract::{self, InputFile};
use rand::Rng;
use tracing::{debug, info, warn};

use super::{
    ledger::{FileRecord, FileStatus, RunRecord},
    manager::{Manager, Result, bson_time, now_bson},
    schedule::{AppQueue, TenantQueue, backoff, max_attempts, plan_starts},
};
use crate::{
    runtime::{RunOutcome, RunSpec, RunState},
    staging::{FileState, Location},
    tenant::names::{APP_SERVICE_ACCOUNT, CREDENTIALS_SECRET, TenantNames},
};

/// How much longer than its run's timeout a link to a file stays valid (the run may start a
/// little after the link is made).
const LINK_MARGIN: Duration = Duration::from_secs(600);

impl Manager {
    /// Settles every run that has finished; how many there were.
    pub(super) async fn settle_runs(&self) -> Result<usize> {
        let mut settled = 0;
        for run in self.ledger.runs(doc! { "outcome": null }).await? {
            // One run the runtime cannot answer for does not hold the others up.
            let state = match self.runtime.state(&run.namespace, &run.id).await {
                Ok(state) => state,
                Err(error) => {
                    warn!(run = %run.id, app = %run.app, %error, "cannot learn how the run is doing");
                    continue;
                }
            };
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
    pub(super) async fn settle(&self, run: &RunRecord, outcome: RunOutcome) -> Result<()> {
        self.touch(&run.namespace, &run.app);
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
                set.insert("rowsWritten", to_i64(f.rows_stored()));
                set.insert("rowsDuplicate", to_i64(f.rows_duplicate));
                set.insert("rowsRejected", to_i64(f.rows_rejected));
                stored = stored.saturating_add(to_i64(f.rows_stored()));
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
                    let rows = per_file.map_or(0, mysimbdp_ingest_sdk::contract::FileResult::rows_stored);
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
        if outcome.cannot_start {
            set.insert("cannotStart", true);
        }
        if let Some(refused) = &outcome.refused {
            // The run's files are settled by its exit code; only its counts are unknown.
            set.insert("resultRefused", refused);
            warn!(run = %run.id, app = %run.app, %refused, "refused the run's result document");
            self.ctx.metrics.refused_input(&run.tenant, "result");
            if let Some(app) = &app {
                let note = format!(
                    "run {}: the result document was refused, so its row counts are not recorded: {refused}; write counts within the contract (ingest-sdk/README.md, Result document)",
                    run.id
                );
                self.ctx.event(&app.object_ref(&()), EventType::Warning, "ResultRefused", &note).await;
            }
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
    pub(super) async fn schedule(&self, tenants: &[Arc<Tenant>]) -> Result<()> {
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
                    // A suspended app, or one whose runs could never be admitted, starts none.
                    limit: if app.spec.suspended || !super::status::can_run(&app, tenant, &self.ctx.platform) {
                        0
                    } else {
                        app.spec.concurrency as usize
                    },
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
    pub(super) async fn start_run(&self, tenant: &Tenant, app: &BatchIngestApp, files: Vec<FileRecord>) -> Result<()> {
        let names = TenantNames::of(tenant);
        let app_name = app.name_any();
        let random: u32 = rand::rng().random();
        let id = format!("{app_name}-{}{:04x}", Timestamp::now().strftime("%H%M%S"), random & 0xffff);
        // Links to the run's files (and to no other) last as long as the run may, and a margin.
        let valid_for = app.spec.timeout.get().saturating_add(LINK_MARGIN);
        let mut inputs: Vec<InputFile> = Vec::with_capacity(files.len());
        let mut paths = Vec::with_capacity(files.len());
        for f in &files {
            let location = Location::incoming(&f.tenant, &f.name).moved(FileState::Processing, &f.id);
            paths.push(location.path());
            inputs.push(InputFile {
                url: self.ctx.staging.app_url(&location, valid_for).await?,
                name: f.name.clone(),
                format: if f.format.as_deref() == Some("JsonLines") {
                    contract::Format::JsonLines
                } else {
                    contract::Format::Csv
                },
                bytes: u64::try_from(f.bytes).unwrap_or(0),
                sha256: f.sha256.clone(),
            });
        }
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
            files: paths,
        };
        let started = now_bson();
        self.touch(&names.namespace, &app_name);
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
                result_refused: None,
                cannot_start: false,
            })
            .await?;
        for file in &files {
            let set = doc! { "status": FileStatus::Running.as_str(), "run": &id, "attempts": file.attempts + 1, "startedAt": started };
            self.ledger.update_file(&file.id, set).await?;
        }
        debug!(run = %id, files = ids.len(), "starting run");
        if let Err(error) = self.runtime.start(&spec).await {
            warn!(run = %id, %error, "run did not start");
            let outcome = RunOutcome { message: error.to_string(), cannot_start: true, ..RunOutcome::default() };
            let run = self.ledger.runs(doc! { "_id": &id }).await?.into_iter().next();
            if let Some(run) = run {
                self.settle(&run, outcome).await?;
            }
        }
        Ok(())
    }
}
