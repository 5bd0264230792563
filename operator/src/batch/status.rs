//! The status of every BatchIngestApp, derived from the ledger: files per state, runs in
//! progress, the last run, and whether the app can take files. Written only when it changed.

use k8s_openapi::{apimachinery::pkg::apis::meta::v1::Time, jiff::Timestamp};
use kube::{
    Api, Resource, ResourceExt,
    api::{Patch, PatchParams},
    runtime::reflector::Store,
};
use mongodb::bson::doc;
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
    tenant::names::TenantNames,
};

fn time(at: mongodb::bson::DateTime) -> Time {
    Time(Timestamp::from_millisecond(at.timestamp_millis()).unwrap_or(Timestamp::UNIX_EPOCH))
}

/// Whether the app can take files, and why not (pure).
pub fn readiness(app: &BatchIngestApp, tenant: Option<&Tenant>) -> State {
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
    State::ok(conditions::READY, "Ready", "the app takes files matching its selection")
}

/// Refreshes every app's status.
pub async fn refresh(
    ctx: &Context,
    ledger: &Ledger,
    apps: &Store<BatchIngestApp>,
    tenants: &Store<Tenant>,
) -> Result<()> {
    let tenants = tenants.state();
    for app in apps.state() {
        let namespace = app.namespace().unwrap_or_default();
        let tenant = tenants.iter().find(|t| TenantNames::of(t).namespace == namespace);
        let name = app.name_any();
        let mut files = FileCounts::default();
        if let Some(tenant) = tenant {
            let tenant_name = tenant.name_any();
            let count = |status: FileStatus| {
                ledger.count_files(doc! { "tenant": &tenant_name, "app": &name, "status": status.as_str() })
            };
            files.pending = count(FileStatus::Queued).await?;
            files.running = count(FileStatus::Running).await?;
            files.ingested = count(FileStatus::Ingested).await?;
            files.failed = count(FileStatus::RetryWait).await?;
            files.dead_lettered = count(FileStatus::DeadLettered).await?;
        }
        let runs = ledger.runs(doc! { "namespace": &namespace, "app": &name }).await?;
        let active_runs = runs.iter().filter(|r| r.outcome.is_none()).count() as u32;
        let last_run = runs.iter().find(|r| r.outcome.is_some()).map(|r| RunSummary {
            name: r.id.clone(),
            started_at: time(r.started_at),
            finished_at: time(r.finished_at.unwrap_or(r.started_at)),
            files: r.files.len() as u32,
            rows_written: r.rows_written.map_or(0, |n| u64::try_from(n).unwrap_or(0)),
            outcome: r.outcome.clone().unwrap_or_default(),
            message: r.message.clone().unwrap_or_default(),
        });
        let ready = readiness(&app, tenant.map(AsRef::as_ref));
        let suspended = if app.spec.suspended {
            State::ok("Suspended", "Suspended", "no new runs start; staged files wait")
        } else {
            State::failed("Suspended", "Running", "runs start as files arrive")
        };
        let previous = app.status.clone().unwrap_or_default();
        let generation = app.metadata.generation;
        let status = BatchIngestAppStatus {
            conditions: conditions::merge(&previous.conditions, &[ready, suspended], generation, Timestamp::now()),
            observed_generation: generation,
            active_runs,
            files,
            last_run,
        };
        if app.status.as_ref() == Some(&status) {
            continue;
        }
        let api: Api<BatchIngestApp> = Api::namespaced(ctx.client.clone(), &namespace);
        let patch = json!({ "apiVersion": BatchIngestApp::api_version(&()), "kind": BatchIngestApp::kind(&()), "status": status });
        api.patch_status(&name, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(patch))
            .await
            .map_err(Error::kube("update status of", "BatchIngestApp", &name))?;
    }
    Ok(())
}
