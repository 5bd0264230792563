//! The tenants' usage against their quotas (files and bytes staged today, batch runs and stream
//! replicas running, bytes stored), refreshed on a schedule of its own rather than on every
//! reconciliation: measuring it reads the ledger, the apps and the tenant's database, and a
//! usage write must not wake the tenant controller. It is written as a field manager of its
//! own, and only when it changed.

use std::{sync::Arc, time::Duration};

use kube::{
    Api, Resource, ResourceExt,
    api::{Patch, PatchParams},
    runtime::reflector::Store,
};
use mysimbdp_api::{StreamIngestApp, Tenant, tenant::TenantUsage};
use serde_json::json;
use tracing::{debug, warn};

use super::names::TenantNames;
use crate::{
    batch::ledger::start_of_day,
    conditions,
    context::Context,
    error::{Error, Result},
    shutdown::Shutdown,
};

/// How often every Ready tenant's usage is measured.
pub const REFRESH: Duration = Duration::from_secs(60);
/// The field manager of the usage in the Tenant's status.
pub const FIELD_MANAGER: &str = "mysimbdp-operator-usage";

/// Measures and writes the usage of every Ready tenant every [`REFRESH`] until `shutdown`.
pub async fn run(ctx: Arc<Context>, tenants: Store<Tenant>, shutdown: Shutdown) {
    let mut tick = tokio::time::interval(REFRESH);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shutdown.wait() => return,
            _ = tick.tick() => {}
        }
        for tenant in tenants.state() {
            let ready = tenant.status.as_ref().is_some_and(|s| conditions::is_true(&s.conditions, conditions::READY));
            if !ready || tenant.metadata.deletion_timestamp.is_some() {
                continue;
            }
            if let Err(error) = refresh(&ctx, &tenant).await {
                warn!(tenant = %tenant.name_any(), %error, "cannot refresh the tenant's usage");
            }
        }
    }
}

/// Measures one tenant's usage and writes it when it changed.
pub async fn refresh(ctx: &Context, tenant: &Tenant) -> Result<()> {
    let names = TenantNames::of(tenant);
    let usage = measure(ctx, &names).await?;
    if tenant.status.as_ref().and_then(|s| s.usage.as_ref()) == Some(&usage) {
        return Ok(());
    }
    debug!(tenant = %names.tenant, ?usage, "usage changed");
    let api: Api<Tenant> = Api::all(ctx.client.clone());
    let patch =
        json!({ "apiVersion": Tenant::api_version(&()), "kind": Tenant::kind(&()), "status": { "usage": usage } });
    api.patch_status(&names.tenant, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(patch))
        .await
        .map_err(Error::kube("update the usage of", "Tenant", &names.tenant))?;
    Ok(())
}

/// The tenant's usage against its quotas, from the ledger, its apps and its database.
async fn measure(ctx: &Context, names: &TenantNames) -> Result<TenantUsage> {
    let today = ctx.ledger.accepted_since(&names.tenant, start_of_day()).await?;
    let running = ctx.ledger.runs(mongodb::bson::doc! { "tenant": &names.tenant, "outcome": null }).await?.len();
    let streams: Api<StreamIngestApp> = Api::namespaced(ctx.client.clone(), &names.namespace);
    let stream_replicas = streams
        .list(&Default::default())
        .await
        .map(|list| {
            list.items.iter().filter_map(|a| a.status.as_ref()).fold(0u32, |n, s| n.saturating_add(s.desired_replicas))
        })
        .unwrap_or(0);
    Ok(TenantUsage {
        files_today: today.files,
        bytes_today: today.bytes,
        running_batch_runs: u32::try_from(running).unwrap_or(u32::MAX),
        stream_replicas,
        stored_bytes: ctx.coredms.database_size(&names.database).await.unwrap_or_default(),
    })
}
