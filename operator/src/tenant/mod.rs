//! The tenant controller: onboarding (namespace, quotas, network fence, app identity, Kafka
//! user/ACLs/quotas/topics, coredms database and user, staging area, credentials Secret) and
//! offboarding (a finalizer that removes what lives outside Kubernetes, the tenant's data
//! when its agreement says so, and then its namespace).
//!
//! Reconcile is a pipeline: read → check the spec (pure) → build desired objects (pure) →
//! apply → write the status once.

use std::{sync::Arc, time::Duration};

use futures::StreamExt;
use k8s_openapi::{
    api::{
        core::v1::{LimitRange, Namespace, ResourceQuota, Secret as KubeSecret, ServiceAccount},
        networking::v1::NetworkPolicy,
        rbac::v1::RoleBinding,
    },
    jiff::Timestamp,
};
use kube::{
    Api, Resource, ResourceExt,
    api::{DeleteParams, Patch, PatchParams},
    runtime::{
        Controller, WatchStreamExt,
        controller::Action,
        events::EventType,
        finalizer::{Event, finalizer},
        predicates, reflector,
        utils::Predicate,
        watcher,
    },
};
use mysimbdp_api::{
    Tenant, TenantStatus,
    constants::{FIELD_MANAGER, LABEL_MANAGED_BY, MANAGED_BY, TENANT_FINALIZER},
    tenant::OffboardingPolicy,
};
use serde_json::json;
use tracing::{info, instrument, warn};

use crate::{
    conditions::{self, State},
    context::Context,
    error::{Error, Result},
    k8s,
    shutdown::Shutdown,
};

pub mod credentials;
#[cfg(test)]
mod failures;
pub mod kafka_sync;
pub mod names;
pub mod plan;
pub mod usage;

use credentials::Credentials;
use names::TenantNames;

/// Condition types of a Tenant, besides `Ready`.
pub mod condition {
    /// The spec is one the platform can satisfy.
    pub const SPEC_VALID: &str = "SpecValid";
    /// Namespace, quota, limits, network policy and service account exist.
    pub const NAMESPACE_READY: &str = "NamespaceReady";
    /// The Kafka user, ACLs, quotas and topics exist.
    pub const KAFKA_READY: &str = "KafkaReady";
    /// The coredms database and user exist.
    pub const COREDMS_READY: &str = "CoreDmsReady";
    /// The staging area exists.
    pub const STAGING_READY: &str = "StagingReady";
    /// The credentials Secret exists and its passwords are set everywhere.
    pub const CREDENTIALS_READY: &str = "CredentialsReady";
}

/// How often a Ready tenant is checked for drift and its usage refreshed.
const RESYNC: Duration = Duration::from_secs(300);
/// How soon a tenant waiting on something outside its spec (a namespace conflict) is checked.
const RECHECK: Duration = Duration::from_secs(30);

/// Runs the tenant controller, and the refresh of the tenants' usage beside it, until
/// `shutdown`. A Tenant is reconciled when its spec changes (its generation: also when it is
/// marked for deletion), its finalizers or its annotations do (`kubectl annotate` asks for a
/// reconciliation), when an object it owns changes, and every [`RESYNC`]; its own status
/// writes (conditions, usage) never trigger it again, so that idle tenants cost nothing
/// between resyncs.
pub async fn run(ctx: Arc<Context>, shutdown: Shutdown) {
    let client = ctx.client.clone();
    let managed = watcher::Config::default().labels(&format!("{LABEL_MANAGED_BY}={MANAGED_BY}"));
    let (reader, writer) = reflector::store();
    let tenants = watcher(Api::<Tenant>::all(client.clone()), watcher::Config::default())
        .default_backoff()
        .reflect(writer)
        .applied_objects()
        .predicate_filter(
            predicates::generation.combine(predicates::finalizers).combine(predicates::annotations),
            Default::default(),
        );
    tokio::spawn(usage::run(ctx.clone(), reader.clone(), shutdown.clone()));
    Controller::for_stream(tenants, reader)
        .owns(Api::<Namespace>::all(client.clone()), managed.clone())
        .owns(Api::<KubeSecret>::all(client), managed)
        .graceful_shutdown_on(shutdown.future())
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            if let Err(error) = result {
                warn!(%error, "tenant reconciliation failed");
            }
        })
        .await;
}

/// Reconciles one tenant: the finalizer decides between onboarding and offboarding.
#[instrument(skip_all, fields(tenant = %tenant.name_any()))]
pub async fn reconcile(tenant: Arc<Tenant>, ctx: Arc<Context>) -> Result<Action> {
    let started = std::time::Instant::now();
    let api: Api<Tenant> = Api::all(ctx.client.clone());
    let name = tenant.name_any();
    let result = finalizer(&api, TENANT_FINALIZER, tenant, |event| async {
        match event {
            Event::Apply(tenant) => onboard(&tenant, &ctx).await,
            Event::Cleanup(tenant) => offboard(&tenant, &ctx).await,
        }
    })
    .await
    .map_err(|e| match e {
        kube::runtime::finalizer::Error::ApplyFailed(e) | kube::runtime::finalizer::Error::CleanupFailed(e) => e,
        other => Error::Finalizer { name: name.clone(), message: other.to_string() },
    });
    let outcome = result.as_ref().map_or_else(Error::category, |_| "ok");
    ctx.metrics.reconciled("tenant", outcome, started.elapsed());
    result
}

/// Retries a failed reconciliation with a delay; the error is already in the status.
pub fn error_policy(tenant: Arc<Tenant>, error: &Error, _ctx: Arc<Context>) -> Action {
    warn!(tenant = %tenant.name_any(), %error, category = error.category(), "will retry");
    Action::requeue(Duration::from_secs(15))
}

async fn onboard(tenant: &Tenant, ctx: &Context) -> Result<Action> {
    let names = TenantNames::of(tenant);
    let problems = plan::check(tenant, &ctx.platform);
    if !problems.is_empty() {
        let message = problems.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ");
        let spec = State::failed(condition::SPEC_VALID, "InvalidSpec", message.clone());
        write_status(ctx, tenant, &names, &[spec.clone(), conditions::summary(&[spec])], None).await?;
        ctx.event(&tenant.object_ref(&()), EventType::Warning, "InvalidSpec", &message).await;
        return Ok(Action::await_change());
    }
    let mut parts = vec![State::ok(condition::SPEC_VALID, "Valid", "the platform can satisfy the agreement")];

    let namespaces: Api<Namespace> = Api::all(ctx.client.clone());
    if let Some(existing) = k8s::get_opt(&namespaces, &names.namespace).await?
        && !plan::namespace_is_ours(&existing, &names)
    {
        let message = format!(
            "namespace {:?} already exists and does not belong to tenant {:?}; delete it, or create the tenant with another spec.namespace",
            names.namespace, names.tenant
        );
        parts.push(State::failed(condition::NAMESPACE_READY, "NamespaceConflict", message.clone()));
        write_status(ctx, tenant, &names, &with_summary(parts), None).await?;
        ctx.event(&tenant.object_ref(&()), EventType::Warning, "NamespaceConflict", &message).await;
        return Ok(Action::requeue(RECHECK));
    }
    apply_namespace(ctx, tenant, &names).await?;
    parts.push(State::ok(
        condition::NAMESPACE_READY,
        "Created",
        format!(
            "namespace {} with quota, limits, default-deny network policy, app service account and {} owner(s) and {} viewer(s) bound",
            names.namespace,
            tenant.spec.owners.len(),
            tenant.spec.viewers.len()
        ),
    ));

    let secrets: Api<KubeSecret> = Api::namespaced(ctx.client.clone(), &names.namespace);
    let existing = k8s::get_opt(&secrets, names::CREDENTIALS_SECRET).await?;
    let mut credentials = Credentials::from_secret(existing.as_ref());

    let mut first_error: Option<Error> = None;
    let kafka = kafka_sync::sync(
        ctx.kafka.as_ref(),
        &names,
        &credentials.kafka,
        credentials.needs_reset("kafka"),
        &plan::acls(&names),
        plan::byte_rates(tenant),
        &plan::topics(tenant, &names, &ctx.platform),
    )
    .await;
    match kafka {
        Ok(outcome) => {
            credentials.applied.insert("kafka".into());
            let mut message = format!(
                "user {}, ACLs on prefix {:?}, quotas and {} topics",
                names.kafka_user,
                names.kafka_prefix,
                tenant.spec.agreement.kafka.topics.len() + 2
            );
            for warning in &outcome.warnings {
                message.push_str("; ");
                message.push_str(warning);
                ctx.event(&tenant.object_ref(&()), EventType::Warning, "TopicNotShrunk", warning).await;
            }
            if !outcome.notes.is_empty() {
                info!(changes = ?outcome.notes, "Kafka updated");
            }
            parts.push(State::ok(condition::KAFKA_READY, "Created", message));
        }
        Err(e) => {
            parts.push(State::failed(condition::KAFKA_READY, "KafkaError", e.to_string()));
            first_error.get_or_insert(e.into());
        }
    }

    let coredms = ctx
        .coredms
        .ensure_tenant_database(
            &names.database,
            &names.coredms_user,
            &credentials.coredms,
            credentials.needs_reset("coredms"),
        )
        .await;
    match coredms {
        Ok(()) => {
            credentials.applied.insert("coredms".into());
            let message = format!("database {} and user {}", names.database, names.coredms_user);
            parts.push(State::ok(condition::COREDMS_READY, "Created", message));
        }
        Err(e) => {
            parts.push(State::failed(condition::COREDMS_READY, "CoreDmsError", e.to_string()));
            first_error.get_or_insert(e.into());
        }
    }

    let auth = ctx.coredms.app_auth(&names.database);
    let secret = credentials::secret(tenant, &names, &ctx.endpoints, &auth, &credentials);
    k8s::apply(&secrets, &secret).await?;
    let credentials_state = if credentials.applied.len() == 2 {
        State::ok(condition::CREDENTIALS_READY, "Created", format!("Secret {}", names::CREDENTIALS_SECRET))
    } else {
        State::failed(condition::CREDENTIALS_READY, "NotApplied", "the passwords are not yet set in every system")
    };
    parts.push(credentials_state);
    if credentials.generated {
        let note = format!("generated credentials in Secret {}/{}", names.namespace, names::CREDENTIALS_SECRET);
        ctx.event(&tenant.object_ref(&()), EventType::Normal, "CredentialsCreated", &note).await;
    }

    let staging_url = match ctx.staging.ensure_area(&names.tenant).await {
        Ok(url) => {
            parts.push(State::ok(condition::STAGING_READY, "Created", format!("staging area {url}")));
            Some(url)
        }
        Err(e) => {
            parts.push(State::failed(condition::STAGING_READY, "StagingError", e.to_string()));
            first_error.get_or_insert(e.into());
            None
        }
    };

    let was_ready = tenant.status.as_ref().is_some_and(|s| conditions::is_true(&s.conditions, conditions::READY));
    let states = with_summary(parts);
    let ready = states.last().is_some_and(|s| s.ok);
    write_status(ctx, tenant, &names, &states, staging_url).await?;
    if ready && !was_ready {
        ctx.event(&tenant.object_ref(&()), EventType::Normal, "Ready", "the tenant is onboarded").await;
    }
    match first_error {
        Some(error) => Err(error),
        None => Ok(Action::requeue(RESYNC)),
    }
}

fn with_summary(mut parts: Vec<State>) -> Vec<State> {
    let summary = conditions::summary(&parts);
    parts.push(summary);
    parts
}

async fn apply_namespace(ctx: &Context, tenant: &Tenant, names: &TenantNames) -> Result<()> {
    let client = &ctx.client;
    k8s::apply(&Api::<Namespace>::all(client.clone()), &plan::namespace(tenant, names)).await?;
    let ns = names.namespace.as_str();
    k8s::apply(
        &Api::<ResourceQuota>::namespaced(client.clone(), ns),
        &plan::resource_quota(tenant, names, &ctx.platform),
    )
    .await?;
    k8s::apply(&Api::<LimitRange>::namespaced(client.clone(), ns), &plan::limit_range(tenant, names, &ctx.platform))
        .await?;
    k8s::apply(
        &Api::<NetworkPolicy>::namespaced(client.clone(), ns),
        &plan::network_policy(tenant, names, &ctx.platform),
    )
    .await?;
    k8s::apply(&Api::<ServiceAccount>::namespaced(client.clone(), ns), &plan::service_account(tenant, names)).await?;
    for access in [plan::Access::Owners, plan::Access::Viewers] {
        let binding = plan::role_binding(tenant, names, access, &ctx.platform);
        k8s::apply(&Api::<RoleBinding>::namespaced(client.clone(), ns), &binding).await?;
    }
    Ok(())
}

/// Removes the tenant: Kafka user, ACLs, quotas and topics; the coredms user; its data and
/// staging area when the agreement says delete; then its namespace. Every step tolerates what
/// is already gone, and none depends on the spec being valid.
async fn offboard(tenant: &Tenant, ctx: &Context) -> Result<Action> {
    let names = TenantNames::of(tenant);
    info!(namespace = %names.namespace, "offboarding tenant");
    let kafka = ctx.kafka.as_ref();
    let acls = kafka.acls_of(&names.kafka_principal()).await?;
    if !acls.is_empty() {
        kafka.delete_acls(&acls).await?;
    }
    kafka.set_quotas(&names.kafka_user, Default::default()).await?;
    kafka.delete_scram_user(&names.kafka_user).await?;
    let topics: Vec<String> =
        kafka.topics_with_prefix(&names.kafka_prefix).await?.into_iter().map(|t| t.name).collect();
    kafka.delete_topics(&topics).await?;

    ctx.coredms.drop_user(&names.coredms_user).await?;
    let delete_data = tenant.spec.agreement.retention.on_offboarding == OffboardingPolicy::Delete;
    if delete_data {
        ctx.coredms.drop_database(&names.database).await?;
        ctx.staging.delete_area(&names.tenant).await?;
    }

    let namespaces: Api<Namespace> = Api::all(ctx.client.clone());
    if let Some(namespace) = k8s::get_opt(&namespaces, &names.namespace).await?
        && plan::namespace_is_ours(&namespace, &names)
        && namespace.metadata.deletion_timestamp.is_none()
    {
        namespaces.delete(&names.namespace, &DeleteParams::background()).await.map_err(Error::kube(
            "delete",
            "Namespace",
            &names.namespace,
        ))?;
    }
    let data =
        if delete_data { "its data and staged files were deleted" } else { "its data and staged files are kept" };
    let note = format!("removed Kafka user, ACLs, quotas and {} topics, and the coredms user; {data}", topics.len());
    ctx.event(&tenant.object_ref(&()), EventType::Normal, "Offboarded", &note).await;
    Ok(Action::await_change())
}

/// Writes the tenant's status once per reconciliation (server-side apply of the status), only
/// when it changed. The usage is not part of it: [`usage`] refreshes it on its own schedule,
/// as another field manager.
async fn write_status(
    ctx: &Context,
    tenant: &Tenant,
    names: &TenantNames,
    states: &[State],
    staging_url: Option<String>,
) -> Result<()> {
    let previous = tenant.status.clone().unwrap_or_default();
    let generation = tenant.metadata.generation;
    let conditions = conditions::merge(&previous.conditions, states, generation, Timestamp::now());
    let ready = conditions::is_true(&conditions, conditions::READY);
    let status = TenantStatus {
        conditions,
        observed_generation: generation,
        namespace: Some(names.namespace.clone()),
        credentials_secret: ready.then(|| names::CREDENTIALS_SECRET.to_owned()),
        kafka_prefix: Some(names.kafka_prefix.clone()),
        database: Some(names.database.clone()),
        staging_url: staging_url.or(previous.staging_url.clone()),
        usage: None,
    };
    if (TenantStatus { usage: None, ..previous }) == status {
        return Ok(());
    }
    let api: Api<Tenant> = Api::all(ctx.client.clone());
    let patch = json!({ "apiVersion": Tenant::api_version(&()), "kind": Tenant::kind(&()), "status": status });
    api.patch_status(&names.tenant, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(patch))
        .await
        .map_err(Error::kube("update status of", "Tenant", &names.tenant))?;
    Ok(())
}
