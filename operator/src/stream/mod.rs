//! The stream ingest manager: the controller of `StreamIngestApp`s. It runs each app's
//! replicas (app + metrics sidecar) through a [`ReplicaRuntime`], keeps their number within the
//! app's bounds, its topics' partitions and its tenant's quota, and carries out the monitor's
//! decisions (scale up, scale down, restart), recording the outcome in the status and as an
//! Event.
//!
//! Reconcile is a pipeline: read the app and its tenant → check (pure) → compute the target
//! (pure) → apply through the runtime → write the status once.

use std::{sync::Arc, time::Duration};

use futures::StreamExt;
use k8s_openapi::{
    api::{apps::v1::Deployment, core::v1::Secret},
    apimachinery::pkg::apis::meta::v1::Time,
    jiff::Timestamp,
};
use kube::{
    Api, Resource, ResourceExt,
    runtime::{
        Controller,
        controller::Action,
        events::EventType,
        finalizer::{Event, finalizer},
        reflector::Store,
        watcher,
    },
};
use mysimbdp_api::{
    StreamIngestApp, Tenant,
    constants::{LABEL_MANAGED_BY, MANAGED_BY, STREAM_FINALIZER},
};
use serde_json::json;
use tracing::{info, instrument, warn};

use crate::{
    conditions::{self, State},
    context::Context,
    error::{Error, Result},
    fit, k8s,
    runtime::{
        RuntimeError,
        replicas::{ReplicaRuntime, ReplicasSpec, ReplicasState},
    },
    shutdown::Shutdown,
    tenant::names::{APP_SERVICE_ACCOUNT, CREDENTIALS_SECRET, TenantNames},
};

pub mod plan;

/// Condition: the app is suspended.
pub const SUSPENDED: &str = "Suspended";

/// What the stream manager's reconciliations share.
pub struct StreamContext {
    /// The controllers' shared context.
    pub ctx: Arc<Context>,
    /// Where replicas run.
    pub runtime: Arc<dyn ReplicaRuntime>,
    /// Every tenant.
    pub tenants: Store<Tenant>,
    /// How often a running app is looked at even when nothing changed (the local runtime
    /// restarts ended replicas then).
    pub resync: Duration,
}

/// Runs the stream ingest manager until `shutdown`.
pub async fn run(ctx: Arc<Context>, runtime: Arc<dyn ReplicaRuntime>, resync: Duration, shutdown: Shutdown) {
    let client = ctx.client.clone();
    let tenants = k8s::cache(Api::<Tenant>::all(client.clone())).await;
    let managed = watcher::Config::default().labels(&format!("{LABEL_MANAGED_BY}={MANAGED_BY}"));
    let stream = Arc::new(StreamContext { ctx, runtime, tenants, resync });
    Controller::new(Api::<StreamIngestApp>::all(client.clone()), watcher::Config::default())
        .owns(Api::<Deployment>::all(client), managed)
        .graceful_shutdown_on(shutdown.future())
        .run(reconcile, error_policy, stream)
        .for_each(|result| async move {
            if let Err(error) = result {
                warn!(%error, "stream app reconciliation failed");
            }
        })
        .await;
}

/// Reconciles one app: the finalizer decides between running it and stopping it for good.
#[instrument(skip_all, fields(app = %app.name_any(), namespace = app.namespace().unwrap_or_default()))]
pub async fn reconcile(app: Arc<StreamIngestApp>, stream: Arc<StreamContext>) -> Result<Action> {
    let started = std::time::Instant::now();
    let namespace = app.namespace().unwrap_or_default();
    let name = app.name_any();
    let api: Api<StreamIngestApp> = Api::namespaced(stream.ctx.client.clone(), &namespace);
    let result = finalizer(&api, STREAM_FINALIZER, app, |event| async {
        match event {
            Event::Apply(app) => run_app(&app, &stream).await,
            Event::Cleanup(app) => {
                stream.runtime.remove(&namespace, &app.name_any()).await?;
                info!("stopped the app's replicas for good");
                Ok(Action::await_change())
            }
        }
    })
    .await
    .map_err(|e| match e {
        kube::runtime::finalizer::Error::ApplyFailed(e) | kube::runtime::finalizer::Error::CleanupFailed(e) => e,
        other => Error::Finalizer { name: name.clone(), message: other.to_string() },
    });
    let outcome = result.as_ref().map_or_else(Error::category, |_| "ok");
    stream.ctx.metrics.reconciled("stream", outcome, started.elapsed());
    result
}

/// Retries a failed reconciliation after a delay.
pub fn error_policy(app: Arc<StreamIngestApp>, error: &Error, _stream: Arc<StreamContext>) -> Action {
    warn!(app = %app.name_any(), %error, category = error.category(), "will retry");
    Action::requeue(Duration::from_secs(10))
}

/// The tenant whose namespace the app lives in.
fn tenant_of(tenants: &Store<Tenant>, namespace: &str) -> Option<Arc<Tenant>> {
    tenants.state().into_iter().find(|t| TenantNames::of(t).namespace == namespace)
}

async fn run_app(app: &StreamIngestApp, stream: &StreamContext) -> Result<Action> {
    let ctx = &stream.ctx;
    let namespace = app.namespace().unwrap_or_default();
    let name = app.name_any();
    let tenant = tenant_of(&stream.tenants, &namespace);
    let tenant = match plan::check(app, tenant.as_deref()) {
        Ok(()) => tenant.expect("check passed, so the tenant exists"),
        Err(state) => {
            let status = json!({
                "observedGeneration": app.metadata.generation,
                "conditions": conditions::merge(
                    &app.status.clone().unwrap_or_default().conditions,
                    std::slice::from_ref(&state),
                    app.metadata.generation,
                    Timestamp::now(),
                ),
            });
            if app
                .status
                .as_ref()
                .and_then(|s| s.conditions.iter().find(|c| c.type_ == conditions::READY))
                .is_none_or(|c| c.reason != state.reason || c.message != state.message)
            {
                let api: Api<StreamIngestApp> = Api::namespaced(ctx.client.clone(), &namespace);
                k8s::patch_status_unchanged(&api, app, status).await?;
                ctx.event(&app.object_ref(&()), EventType::Warning, &state.reason, &state.message).await;
            }
            return Ok(Action::requeue(Duration::from_secs(15)));
        }
    };

    let apps: Api<StreamIngestApp> = Api::namespaced(ctx.client.clone(), &namespace);
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &namespace);
    let Some(secret) = k8s::get_opt(&secrets, CREDENTIALS_SECRET).await? else {
        // The tenant controller recreates it; the app waits.
        return Ok(Action::requeue(Duration::from_secs(5)));
    };
    let others: u32 = apps
        .list(&Default::default())
        .await
        .map_err(Error::kube("list", "StreamIngestApp", &namespace))?
        .items
        .iter()
        .filter(|other| other.name_any() != name && !other.spec.suspended)
        .map(|other| other.status.as_ref().map_or(other.spec.replicas.min, |s| s.desired_replicas))
        .sum();
    let (cap, _) = plan::cap(app, &tenant, others);
    let target = plan::target(app, cap);
    let spec = ReplicasSpec {
        tenant: tenant.name_any(),
        namespace: namespace.clone(),
        app: name.clone(),
        app_uid: app.metadata.uid.clone().unwrap_or_default(),
        container: app.spec.container.clone(),
        env: plan::environment(app, &tenant),
        credentials_secret: CREDENTIALS_SECRET.into(),
        service_account: APP_SERVICE_ACCOUNT.into(),
        replicas: target.replicas,
        restart_token: target.last_restart.as_ref().map(|t| t.0.to_string()).unwrap_or_default(),
        credentials_digest: plan::credentials_digest(&secret),
    };
    let state = match stream.runtime.apply(&spec).await {
        Ok(state) => state,
        // An app that cannot start is a state of the app, not an error of the operator.
        Err(error @ RuntimeError::Start { .. }) => {
            ReplicasState { desired: spec.replicas, ready: 0, problem: Some(error.to_string()) }
        }
        Err(error) => return Err(error.into()),
    };
    let misfits = fit::stream(app, &tenant, &ctx.platform);

    let now = Timestamp::now();
    let previous = app.status.clone().unwrap_or_default();
    let generation = app.metadata.generation;
    let changed = target.replicas != previous.desired_replicas
        || target.last_restart != previous.last_restart
        || previous.observed_generation != generation;
    let ready = if app.spec.suspended {
        State::ok(
            conditions::READY,
            "Suspended",
            "suspended: no replica runs; consumption resumes from the committed offsets",
        )
    } else if let Some(first) = misfits.first() {
        let message = misfits.iter().map(|m| m.message.as_str()).collect::<Vec<_>>().join("; ");
        State::failed(conditions::READY, first.reason, message)
    } else if let Some(problem) = &state.problem {
        State::failed(conditions::READY, "CannotStart", problem.clone())
    } else if state.ready >= state.desired {
        State::ok(conditions::READY, "Running", format!("{} of {} replicas ready", state.ready, state.desired))
    } else {
        State::failed(conditions::READY, "Starting", format!("{} of {} replicas ready", state.ready, state.desired))
    };
    let suspended = if app.spec.suspended {
        State::ok(SUSPENDED, "Suspended", "spec.suspended is true")
    } else {
        State::failed(SUSPENDED, "Active", "replicas run")
    };
    let mut next = previous.clone();
    next.observed_generation = generation;
    next.conditions = conditions::merge(&previous.conditions, &[ready.clone(), suspended], generation, now);
    next.desired_replicas = state.desired;
    next.ready_replicas = state.ready;
    next.last_restart = target.last_restart.clone();
    if changed {
        next.replicas_since = Some(Time(now));
    }
    let applied = plan::pending(app).cloned();
    if let Some(decision) = next.last_decision.as_mut().filter(|d| d.applied_at.is_none()) {
        decision.applied_at = Some(Time(now));
        info!(action = %decision.action, replicas = state.desired, "carried out the monitor's decision");
    }
    let was = previous.conditions.iter().find(|c| c.type_ == conditions::READY).map(|c| c.reason.as_str());
    if !ready.ok && ready.reason != "Starting" && was != Some(ready.reason.as_str()) {
        ctx.event(&app.object_ref(&()), EventType::Warning, &ready.reason, &ready.message).await;
    }
    if next != previous {
        let status = serde_json::to_value(&next).unwrap_or_default();
        if !k8s::patch_status_unchanged(&apps, app, status).await? {
            // Someone (the monitor) changed the app meanwhile: look again at once.
            return Ok(Action::requeue(Duration::from_millis(200)));
        }
    }
    if let Some(decision) = applied {
        let (reason, note) = match decision.action.as_str() {
            "ScaleUp" | "ScaleDown" => (
                "Scaled",
                format!("scaled from {} to {} replicas: {}", decision.from_replicas, state.desired, decision.reason),
            ),
            "Restart" => ("Restarted", format!("restarted every replica: {}", decision.reason)),
            _ => ("DecisionNoted", decision.reason.clone()),
        };
        ctx.event(&app.object_ref(&()), EventType::Normal, reason, &note).await;
    }
    let next = if state.ready < state.desired { stream.resync.min(Duration::from_secs(5)) } else { stream.resync };
    Ok(Action::requeue(next))
}
