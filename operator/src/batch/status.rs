//! The status of every BatchIngestApp, derived from the ledger: files per state, runs in
//! progress, the last run, and whether the app can take files (and, when not, why). Refreshed
//! only for apps that may have changed, written only when it changed.

use std::collections::HashSet;

use k8s_openapi::{apimachinery::pkg::apis::meta::v1::Time, jiff::Timestamp};
use kube::{
    Api, Resource, ResourceExt,
    api::{Patch, PatchParams},
    runtime::{events::EventType, reflector::Store},
};
use mongodb::bson::{self, doc};
use mysimbdp_api::{
    BatchIngestApp, BatchIngestAppStatus, Tenant,
    batch::{FileCounts, RunSummary},
    constants::FIELD_MANAGER,
};
use serde_json::json;

use super::ledger::{FileStatus, Ledger};
use crate::{
    conditions::{self, State},
    context::Context,
    error::{Error, Result},
    fit,
    tenant::{names::TenantNames, plan::Platform},
};

fn time(at: mongodb::bson::DateTime) -> Time {
    Time(Timestamp::from_millisecond(at.timestamp_millis()).unwrap_or(Timestamp::UNIX_EPOCH))
}

/// Whether the app can take files, and why not (pure). An app that asks for more than its
/// tenant allows is not Ready: its message names the field, the limit and the fix.
pub fn readiness(app: &BatchIngestApp, tenant: Option<&Tenant>, platform: &Platform) -> State {
    let Some(tenant) = tenant else {
        let namespace = app.namespace().unwrap_or_default();
        return State::failed(
            conditions::READY,
            "NoTenant",
            format!("namespace {namespace} belongs to no tenant; create the app in a tenant's namespace"),
        );
    };
    if !tenant.status.as_ref().is_some_and(|s| conditions::is_true(&s.conditions, conditions::READY)) {
        return State::failed(
            conditions::READY,
            "TenantNotReady",
            format!("tenant {} is not Ready yet", tenant.name_any()),
        );
    }
    if let Some(pattern) = &app.spec.files.pattern
        && let Err(e) = globset::Glob::new(pattern)
    {
        return State::failed(
            conditions::READY,
            "InvalidPattern",
            format!("spec.files.pattern {pattern:?} is not a valid glob: {e}"),
        );
    }
    let accepted = &tenant.spec.agreement.files.formats;
    if let Some(format) = app.spec.files.formats.iter().find(|f| !accepted.contains(f)) {
        return State::failed(
            conditions::READY,
            "FormatNotAccepted",
            format!(
                "spec.files.formats asks for {}, which tenant {} does not accept; remove it or change the agreement",
                format.as_str(),
                tenant.name_any()
            ),
        );
    }
    let misfits = fit::batch(app, tenant, platform);
    if let Some(first) = misfits.first() {
        let message = misfits.iter().map(|m| m.message.as_str()).collect::<Vec<_>>().join("; ");
        return State::failed(conditions::READY, first.reason, message);
    }
    State::ok(conditions::READY, "Ready", "the app takes files matching its selection")
}

/// Whether the app's runs may start: not when one of them could never be admitted under the
/// tenant's quota (its files wait until the app or the agreement changes).
pub fn can_run(app: &BatchIngestApp, tenant: &Tenant, platform: &Platform) -> bool {
    !fit::batch(app, tenant, platform).iter().any(|m| m.blocking)
}

/// Whether the app's last run handed in a result document the platform accepted.
pub fn results(last_refused: Option<&str>) -> State {
    match last_refused {
        None => State::ok(RESULTS_ACCEPTED, "Accepted", "the last run's result document was within the contract"),
        Some(why) => State::failed(
            RESULTS_ACCEPTED,
            "ResultRefused",
            format!(
                "the last run's result document was refused, so its row counts are not recorded: {why}; write counts within the contract (ingest-sdk/README.md, Result document)"
            ),
        ),
    }
}

/// Condition: the last run's result document was accepted.
pub const RESULTS_ACCEPTED: &str = "ResultsAccepted";

/// An app by namespace and name.
pub type AppKey = (String, String);

/// Whether the conditions `states` would set differ from those the app shows.
fn conditions_differ(app: &BatchIngestApp, states: &[&State]) -> bool {
    let shown = app.status.as_ref().map(|s| s.conditions.as_slice()).unwrap_or_default();
    states.iter().any(|state| {
        !shown.iter().any(|c| {
            c.type_ == state.type_
                && (c.status == "True") == state.ok
                && c.reason == state.reason
                && c.message == state.message
        })
    })
}

/// Refreshes the status of the apps that may have changed: those in `dirty` (their files or
/// runs changed), those whose spec changed since their status was written, those whose
/// readiness changed (their tenant's state or agreement), and every app when `all`. The
/// others cost no query. Refreshed apps leave `dirty`.
pub async fn refresh(
    ctx: &Context,
    ledger: &Ledger,
    apps: &Store<BatchIngestApp>,
    tenants: &Store<Tenant>,
    dirty: &mut HashSet<AppKey>,
    all: bool,
) -> Result<()> {
    let tenants = tenants.state();
    for app in apps.state() {
        let namespace = app.namespace().unwrap_or_default();
        let name = app.name_any();
        let key = (namespace.clone(), name.clone());
        let tenant = tenants.iter().find(|t| TenantNames::of(t).namespace == namespace);
        let ready = readiness(&app, tenant.map(AsRef::as_ref), &ctx.platform);
        let suspended = if app.spec.suspended {
            State::ok("Suspended", "Suspended", "no new runs start; staged files wait")
        } else {
            State::failed("Suspended", "Running", "runs start as files arrive")
        };
        let generation = app.metadata.generation;
        let stale = app.status.as_ref().is_none_or(|s| s.observed_generation != generation);
        if !all && !stale && !dirty.contains(&key) && !conditions_differ(&app, &[&ready, &suspended]) {
            continue;
        }
        let mut files = FileCounts::default();
        if let Some(tenant) = tenant {
            let counts = ledger.file_counts(&tenant.name_any(), &name).await?;
            let count = |status: FileStatus| counts.get(status.as_str()).copied().unwrap_or(0);
            files.pending = count(FileStatus::Queued);
            files.running = count(FileStatus::Running);
            files.ingested = count(FileStatus::Ingested);
            files.failed = count(FileStatus::RetryWait);
            files.dead_lettered = count(FileStatus::DeadLettered);
        }
        let of_app = doc! { "namespace": &namespace, "app": &name };
        let mut active = of_app.clone();
        active.insert("outcome", bson::Bson::Null);
        let active_runs = u32::try_from(ledger.count_runs(active).await?).unwrap_or(u32::MAX);
        let mut finished = of_app;
        finished.insert("outcome", doc! { "$ne": bson::Bson::Null });
        let last = ledger.last_run(finished).await?;
        let last_run = last.as_ref().map(|r| RunSummary {
            name: r.id.clone(),
            started_at: time(r.started_at),
            finished_at: time(r.finished_at.unwrap_or(r.started_at)),
            files: u32::try_from(r.files.len()).unwrap_or(u32::MAX),
            rows_written: r.rows_written.map_or(0, |n| u64::try_from(n).unwrap_or(0)),
            outcome: r.outcome.clone().unwrap_or_default(),
            message: r.message.clone().unwrap_or_default(),
        });
        let results = results(last.as_ref().and_then(|r| r.result_refused.as_deref()));
        // An app whose last run could not even start cannot run as it is.
        let ready = match last.as_ref().filter(|r| r.cannot_start && ready.ok) {
            Some(run) => State::failed(
                conditions::READY,
                "CannotStart",
                format!("run {} could not start: {}", run.id, run.message.as_deref().unwrap_or_default()),
            ),
            None => ready,
        };
        let previous = app.status.clone().unwrap_or_default();
        let was = previous.conditions.iter().find(|c| c.type_ == conditions::READY).map(|c| c.reason.clone());
        let newly_unfit =
            !ready.ok && ready.reason != "TenantNotReady" && was.as_deref() != Some(ready.reason.as_str());
        let event = newly_unfit.then(|| (ready.reason.clone(), ready.message.clone()));
        let status = BatchIngestAppStatus {
            conditions: conditions::merge(
                &previous.conditions,
                &[ready, suspended, results],
                generation,
                Timestamp::now(),
            ),
            observed_generation: generation,
            active_runs,
            files,
            last_run,
        };
        if app.status.as_ref() != Some(&status) {
            let api: Api<BatchIngestApp> = Api::namespaced(ctx.client.clone(), &namespace);
            let patch = json!({ "apiVersion": BatchIngestApp::api_version(&()), "kind": BatchIngestApp::kind(&()), "status": status });
            api.patch_status(&name, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(patch))
                .await
                .map_err(Error::kube("update status of", "BatchIngestApp", &name))?;
        }
        if let Some((reason, message)) = event {
            ctx.event(&app.object_ref(&()), EventType::Warning, &reason, &message).await;
        }
        dirty.remove(&key);
    }
    Ok(())
}
