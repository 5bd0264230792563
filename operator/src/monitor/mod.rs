//! The monitor: reads the reports the apps' sidecars publish on their tenants' report topics,
//! stores them, and every report interval judges each running stream app against its
//! thresholds ([`evaluate`]). It writes what it sees into the app's status (`lastReport`, the
//! `Healthy` condition) and, when something must be done, a decision (`lastDecision`) that the
//! stream ingest manager carries out, with an Event and a record in the platform database.
//!
//! It runs inside the operator or on its own (`--controllers monitor`).

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, Mutex},
    time::Duration,
};

use k8s_openapi::{apimachinery::pkg::apis::meta::v1::Time, jiff::Timestamp};
use kube::{
    Api, Resource, ResourceExt,
    runtime::{events::EventType, reflector::Store},
};
use mongodb::bson;
use mysimbdp_api::{StreamIngestApp, Tenant, stream::Decision};
use rdkafka::ClientConfig;
use tracing::{debug, info, instrument, warn};

use crate::{
    conditions::{self, State},
    context::Context,
    k8s,
    shutdown::Shutdown,
    stream::plan,
    tenant::names::{REPORTS_TOPIC, TenantNames},
};

pub mod evaluate;
pub mod lag;
pub mod memory;
#[cfg(test)]
mod props;
pub mod reports;
pub mod store;

pub use reports::tenant_of_topic;

use evaluate::{Action, AppView, Health};
use lag::{KafkaLag, LagProbe};
use memory::{Memory, summary};
use store::{DecisionRecord, MonitorStore};

/// Condition: the app is within its thresholds.
pub const HEALTHY: &str = "Healthy";
/// Condition: every report of the app's tenant was accepted lately.
pub const REPORTS_ACCEPTED: &str = "ReportsAccepted";
/// The consumer group the monitor reads reports with.
pub const MONITOR_GROUP: &str = "mysimbdp-monitor";
/// How the monitor reaches Kafka and how often it looks.
#[derive(Clone)]
pub struct MonitorConfig {
    /// Client settings of the platform admin (bootstrap, SASL).
    pub kafka: ClientConfig,
    /// How often the monitor checks which apps are due for judgement.
    pub tick: Duration,
}

/// Runs the monitor until `shutdown`.
pub async fn run(ctx: Arc<Context>, config: MonitorConfig, shutdown: Shutdown) {
    let apps = k8s::cache(Api::<StreamIngestApp>::all(ctx.client.clone())).await;
    let tenants = k8s::cache(Api::<Tenant>::all(ctx.client.clone())).await;
    let store = loop {
        match MonitorStore::open(&ctx.platform_db).await {
            Ok(store) => break store,
            Err(error) => {
                warn!(%error, "the monitor cannot open its store yet; trying again");
                tokio::select! {
                    () = shutdown.wait() => return,
                    () = tokio::time::sleep(Duration::from_secs(5)) => {}
                }
            }
        }
    };
    let memory = Arc::new(Mutex::new(Memory::default()));
    let since = bson::DateTime::from_millis(Timestamp::now().as_millisecond() - 600_000);
    match store.reports(bson::doc! { "windowEnd": { "$gte": since } }, 10_000).await {
        Ok(records) => {
            let mut memory = memory.lock().unwrap_or_else(|e| e.into_inner());
            for record in &records {
                memory.remember(&record.tenant, &reports::report_of(record));
            }
            info!(reports = records.len(), "the monitor remembers the last ten minutes of reports");
        }
        Err(error) => warn!(%error, "the monitor starts without earlier reports"),
    }
    tokio::spawn(reports::consume(
        ctx.clone(),
        config.kafka.clone(),
        store.clone(),
        memory.clone(),
        apps.clone(),
        tenants.clone(),
        shutdown.clone(),
    ));
    let probe = KafkaLag::new(config.kafka);
    let mut tick = tokio::time::interval(config.tick);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    info!("monitor started");
    loop {
        tokio::select! {
            () = shutdown.wait() => break,
            _ = tick.tick() => {}
        }
        forget_what_is_gone(&memory, &apps, &tenants);
        for app in apps.state() {
            if let Err(error) = judge(&ctx, &store, &memory, &probe, &apps, &tenants, &app).await {
                warn!(app = %app.name_any(), namespace = app.namespace().unwrap_or_default(), %error, "cannot judge app");
            }
        }
    }
    info!("monitor stopped");
}

/// Forgets the memory of apps and tenants that no longer exist, so that it stays bounded by
/// what exists.
fn forget_what_is_gone(memory: &Mutex<Memory>, apps: &Store<StreamIngestApp>, tenants: &Store<Tenant>) {
    let namespaces: HashMap<String, String> =
        tenants.state().iter().map(|t| (TenantNames::of(t).namespace, t.name_any())).collect();
    let tenants: HashSet<&String> = namespaces.values().collect();
    let apps: HashSet<(String, String)> =
        apps.state().iter().filter_map(|a| Some((namespaces.get(&a.namespace()?)?.clone(), a.name_any()))).collect();
    memory
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .retain(|key| apps.contains(key), |t| tenants.iter().any(|n| n.as_str() == t));
}

fn ms(time: &Time) -> i64 {
    time.0.as_millisecond()
}

/// Judges one app when it is due, and records what the monitor saw and decided.
#[instrument(skip_all, fields(app = %app.name_any(), namespace = app.namespace().unwrap_or_default()))]
async fn judge(
    ctx: &Context,
    store: &MonitorStore,
    memory: &Mutex<Memory>,
    probe: &dyn LagProbe,
    apps: &Store<StreamIngestApp>,
    tenants: &Store<Tenant>,
    app: &StreamIngestApp,
) -> crate::error::Result<()> {
    let namespace = app.namespace().unwrap_or_default();
    let Some(tenant) = tenants.state().into_iter().find(|t| TenantNames::of(t).namespace == namespace) else {
        return Ok(());
    };
    let status = app.status.clone().unwrap_or_default();
    if app.spec.suspended || status.desired_replicas == 0 || plan::pending(app).is_some() {
        return Ok(());
    }
    let monitoring = &app.spec.monitoring;
    let interval_ms = i64::try_from(monitoring.report_interval.get().as_millis()).unwrap_or(i64::MAX);
    let now_ms = Timestamp::now().as_millisecond();
    let key = (tenant.name_any(), app.name_any());
    {
        let memory = memory.lock().unwrap_or_else(|e| e.into_inner());
        if memory.apps.get(&key).is_some_and(|m| now_ms - m.last_judged_ms < interval_ms) {
            return Ok(());
        }
    }

    let names = TenantNames::of(&tenant);
    let topics: Vec<String> = app.spec.topics.iter().map(|t| format!("{}{t}", names.kafka_prefix)).collect();
    let group = format!("{}{}", names.kafka_prefix, app.spec.consumer_group);
    let lag = match probe.lag(&group, &topics).await {
        Ok(lag) => Some(lag),
        Err(error) => {
            debug!(%error, "lag unknown this time");
            None
        }
    };
    let others: u32 = apps
        .state()
        .iter()
        .filter(|o| o.namespace().as_deref() == Some(&namespace) && o.name_any() != app.name_any() && !o.spec.suspended)
        .map(|o| o.status.as_ref().map_or(0, |s| s.desired_replicas))
        .sum();
    let (cap, cap_reason) = plan::cap(app, &tenant, others);
    let running_since_ms =
        status.replicas_since.as_ref().or(app.metadata.creation_timestamp.as_ref()).map_or(now_ms, ms);

    let (verdict, last_report, refused) = {
        let mut memory = memory.lock().unwrap_or_else(|e| e.into_inner());
        let remembered = memory.apps.entry(key.clone()).or_default();
        remembered.last_judged_ms = now_ms;
        if let Some(lag) = lag {
            remembered.add_lag(now_ms, lag);
        }
        let view = AppView {
            monitoring,
            min_replicas: app.spec.replicas.min,
            cap,
            cap_reason,
            replicas: status.desired_replicas,
            running_since_ms,
            last_decision_ms: status.last_decision.as_ref().map(|d| ms(&d.decided_at)).max(remembered.last_decided_ms),
            healthy_since_ms: remembered.healthy_since_ms,
        };
        let verdict = evaluate::evaluate(&view, &remembered.reports, &remembered.lags, now_ms);
        remembered.healthy_since_ms = match verdict.health {
            Health::Healthy(_) => Some(remembered.healthy_since_ms.unwrap_or(now_ms)),
            Health::Unknown(_) => remembered.healthy_since_ms,
            _ => None,
        };
        let summary = summary(remembered, running_since_ms, lag);
        let refused = memory.refusals(&key.0, now_ms).map(|r| r.message(&names.topic(REPORTS_TOPIC)));
        (verdict, summary, refused)
    };

    let healthy = match &verdict.health {
        Health::Healthy(m) => State::ok(HEALTHY, verdict.health.reason(), m.clone()),
        other => State::failed(HEALTHY, other.reason(), other.message().to_owned()),
    };
    let reports = match &refused {
        None => State::ok(REPORTS_ACCEPTED, "Accepted", "every report of the tenant was within the contract"),
        Some(message) => State::failed(REPORTS_ACCEPTED, "ReportsRefused", message.clone()),
    };
    let newly_refused =
        refused.is_some() && !status.conditions.iter().any(|c| c.type_ == REPORTS_ACCEPTED && c.status == "False");
    let now = Timestamp::now();
    let mut next = status.clone();
    next.conditions = conditions::merge(&status.conditions, &[healthy, reports], app.metadata.generation, now);
    if last_report.is_some() {
        next.last_report = last_report;
    }
    let decision = verdict.proposal.as_ref().map(|p| Decision {
        action: p.action.as_str().to_owned(),
        reason: p.reason.clone(),
        decided_at: Time(now),
        from_replicas: status.desired_replicas,
        to_replicas: p.to_replicas,
        // Nothing to carry out for a notification.
        applied_at: (p.action == Action::Notify).then_some(Time(now)),
    });
    if let Some(decision) = &decision {
        next.last_decision = Some(decision.clone());
    }
    if next == status {
        return Ok(());
    }
    let api: Api<StreamIngestApp> = Api::namespaced(ctx.client.clone(), &namespace);
    let mut patch = serde_json::to_value(&next).unwrap_or_default();
    if let Some(d) = &decision
        && d.applied_at.is_none()
    {
        // Clear the previous decision's time of application: this one is pending.
        patch["lastDecision"]["appliedAt"] = serde_json::Value::Null;
    }
    if !k8s::patch_status_unchanged(&api, app, patch).await? {
        // The app changed meanwhile; judge it again at the next tick.
        let mut memory = memory.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(remembered) = memory.apps.get_mut(&key) {
            remembered.last_judged_ms = 0;
        }
        return Ok(());
    }
    if newly_refused && let Some(message) = &refused {
        ctx.event(&app.object_ref(&()), EventType::Warning, "ReportsRefused", message).await;
    }
    if let Some(decision) = decision {
        if let Some(remembered) = memory.lock().unwrap_or_else(|e| e.into_inner()).apps.get_mut(&key) {
            remembered.last_decided_ms = Some(now.as_millisecond());
        }
        let kind = if matches!(decision.action.as_str(), "ScaleUp" | "ScaleDown") {
            EventType::Normal
        } else {
            EventType::Warning
        };
        info!(action = %decision.action, reason = %decision.reason, "monitor decision");
        ctx.event(&app.object_ref(&()), kind, &decision.action, &decision.reason).await;
        ctx.metrics.stream_decision(&key.0, verdict.proposal.map_or("None", |p| p.action.as_str()));
        let record = DecisionRecord {
            tenant: key.0.clone(),
            namespace: namespace.clone(),
            app: key.1.clone(),
            action: decision.action.clone(),
            reason: decision.reason.clone(),
            from_replicas: i64::from(decision.from_replicas),
            to_replicas: i64::from(decision.to_replicas),
            decided_at: bson::DateTime::from_millis(now.as_millisecond()),
        };
        if let Err(error) = store.insert_decision(&record).await {
            warn!(%error, "a decision is in the app's status but not in the platform database");
        }
    }
    Ok(())
}
