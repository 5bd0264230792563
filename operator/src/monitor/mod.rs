//! The monitor: reads the reports the apps' sidecars publish on their tenants' report topics,
//! stores them, and every report interval judges each running stream app against its
//! thresholds ([`evaluate`]). It writes what it sees into the app's status (`lastReport`, the
//! `Healthy` condition) and, when something must be done, a decision (`lastDecision`) that the
//! stream ingest manager carries out, with an Event and a record in the platform database.
//!
//! It runs inside the operator or on its own (`--controllers monitor`).

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use futures::StreamExt;
use k8s_openapi::{apimachinery::pkg::apis::meta::v1::Time, jiff::Timestamp};
use kube::{
    Api, Resource, ResourceExt,
    runtime::{events::EventType, reflector::Store},
};
use mongodb::bson;
use mysimbdp_api::{
    StreamIngestApp, Tenant,
    stream::{Decision, ReportSummary},
};
use mysimbdp_ingest_sdk::contract::Report;
use rdkafka::{
    ClientConfig, Message,
    consumer::{Consumer, StreamConsumer},
};
use tracing::{debug, info, instrument, warn};

use crate::{
    conditions::{self, State},
    context::Context,
    k8s,
    stream::plan,
    tenant::names::{REPORTS_TOPIC, TenantNames},
};

pub mod evaluate;
pub mod lag;
pub mod store;

use evaluate::{Action, AppView, Health, LagPoint, ReportPoint};
use lag::{KafkaLag, LagProbe};
use store::{DecisionRecord, MonitorStore, ReportRecord};

/// Condition: the app is within its thresholds.
pub const HEALTHY: &str = "Healthy";
/// The consumer group the monitor reads reports with.
pub const MONITOR_GROUP: &str = "mysimbdp-monitor";
/// Reports are kept in memory this long.
const MEMORY: Duration = Duration::from_secs(900);

/// How the monitor reaches Kafka and how often it looks.
#[derive(Clone)]
pub struct MonitorConfig {
    /// Client settings of the platform admin (bootstrap, SASL).
    pub kafka: ClientConfig,
    /// How often the monitor checks which apps are due for judgement.
    pub tick: Duration,
}

/// What the monitor remembers of one app.
#[derive(Default)]
struct AppMemory {
    reports: Vec<ReportPoint>,
    latest: HashMap<String, Report>,
    lags: Vec<LagPoint>,
    healthy_since_ms: Option<i64>,
    last_judged_ms: i64,
    /// When this monitor last decided about the app, to the millisecond (the status keeps
    /// whole seconds only).
    last_decided_ms: Option<i64>,
}

type Key = (String, String);

/// The reports and judgements of every app.
#[derive(Default)]
struct Memory {
    apps: HashMap<Key, AppMemory>,
}

impl Memory {
    fn add(&mut self, tenant: &str, report: &Report) {
        let Some(point) = point(report) else { return };
        let app = self.apps.entry((tenant.to_owned(), report.app.clone())).or_default();
        let oldest = point.end_ms - i64::try_from(MEMORY.as_millis()).unwrap_or(i64::MAX);
        app.reports.retain(|r| r.end_ms >= oldest && !(r.instance == point.instance && r.end_ms == point.end_ms));
        app.reports.push(point);
        let newer = app.latest.get(&report.instance).is_none_or(|l| l.window_end <= report.window_end);
        if newer {
            app.latest.insert(report.instance.clone(), report.clone());
        }
    }
}

fn millis(text: &str) -> Option<i64> {
    text.parse::<Timestamp>().ok().map(|t| t.as_millisecond())
}

fn point(report: &Report) -> Option<ReportPoint> {
    Some(ReportPoint {
        instance: report.instance.clone(),
        start_ms: millis(&report.window_start)?,
        end_ms: millis(&report.window_end)?,
        messages: report.messages,
        bytes: report.bytes,
        avg_ingestion_ms: report.avg_ingestion_ms,
        silent: report.silent,
        total_messages: report.total_messages,
        total_bytes: report.total_bytes,
    })
}

/// The tenant a report topic belongs to: `<tenant>.mysimbdp.reports`.
pub fn tenant_of_topic(topic: &str) -> Option<&str> {
    topic.strip_suffix(REPORTS_TOPIC)?.strip_suffix('.').filter(|t| !t.is_empty() && !t.contains('.'))
}

/// Runs the monitor until the process ends.
pub async fn run(ctx: Arc<Context>, config: MonitorConfig) {
    let apps = k8s::cache(Api::<StreamIngestApp>::all(ctx.client.clone())).await;
    let tenants = k8s::cache(Api::<Tenant>::all(ctx.client.clone())).await;
    let store = loop {
        match MonitorStore::open(&ctx.platform_db).await {
            Ok(store) => break store,
            Err(error) => {
                warn!(%error, "the monitor cannot open its store yet; trying again");
                tokio::time::sleep(Duration::from_secs(5)).await;
            }
        }
    };
    let memory = Arc::new(Mutex::new(Memory::default()));
    let since = bson::DateTime::from_millis(Timestamp::now().as_millisecond() - 600_000);
    match store.reports(bson::doc! { "windowEnd": { "$gte": since } }, 10_000).await {
        Ok(records) => {
            let mut memory = memory.lock().unwrap_or_else(|e| e.into_inner());
            for record in &records {
                memory.add(&record.tenant, &report_of(record));
            }
            info!(reports = records.len(), "the monitor remembers the last ten minutes of reports");
        }
        Err(error) => warn!(%error, "the monitor starts without earlier reports"),
    }
    tokio::spawn(consume(ctx.clone(), config.kafka.clone(), store.clone(), memory.clone()));
    let probe = KafkaLag::new(config.kafka);
    let mut tick = tokio::time::interval(config.tick);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    info!("monitor started");
    loop {
        tick.tick().await;
        for app in apps.state() {
            if let Err(error) = judge(&ctx, &store, &memory, &probe, &apps, &tenants, &app).await {
                warn!(app = %app.name_any(), namespace = app.namespace().unwrap_or_default(), %error, "cannot judge app");
            }
        }
    }
}

fn report_of(record: &ReportRecord) -> Report {
    let text = |at: bson::DateTime| {
        Timestamp::from_millisecond(at.timestamp_millis()).unwrap_or(Timestamp::UNIX_EPOCH).to_string()
    };
    Report {
        tenant: record.tenant.clone(),
        app: record.app.clone(),
        instance: record.instance.clone(),
        window_start: text(record.window_start),
        window_end: text(record.window_end),
        ingestion_start: String::new(),
        messages: u64::try_from(record.messages).unwrap_or(0),
        bytes: u64::try_from(record.bytes).unwrap_or(0),
        processing_rate: record.processing_rate,
        throughput: record.throughput,
        avg_ingestion_ms: record.avg_ingestion_ms,
        dead_lettered: u64::try_from(record.dead_lettered).unwrap_or(0),
        total_messages: u64::try_from(record.total_messages).unwrap_or(0),
        total_bytes: u64::try_from(record.total_bytes).unwrap_or(0),
        silent: record.silent,
    }
}

/// Reads every tenant's report topic; stores and remembers each report.
async fn consume(ctx: Arc<Context>, kafka: ClientConfig, store: MonitorStore, memory: Arc<Mutex<Memory>>) {
    let consumer: StreamConsumer = match kafka
        .clone()
        .set("group.id", MONITOR_GROUP)
        .set("enable.auto.commit", "true")
        .set("auto.offset.reset", "earliest")
        // New tenants' report topics are found within seconds.
        .set("topic.metadata.refresh.interval.ms", "5000")
        .create()
    {
        Ok(consumer) => consumer,
        Err(error) => {
            warn!(%error, "the monitor cannot create its Kafka consumer; no reports will be read");
            return;
        }
    };
    let pattern = format!("^[a-z0-9-]+\\.{}$", REPORTS_TOPIC.replace('.', "\\."));
    if let Err(error) = consumer.subscribe(&[&pattern]) {
        warn!(%error, "the monitor cannot subscribe to the report topics");
        return;
    }
    let (to_store, stored) = tokio::sync::mpsc::channel(10_000);
    tokio::spawn(store_reports(store, stored));
    let mut messages = consumer.stream();
    while let Some(message) = messages.next().await {
        let message = match message {
            Ok(message) => message,
            Err(error) => {
                debug!(%error, "report topics: transient error");
                continue;
            }
        };
        let Some(tenant) = tenant_of_topic(message.topic()).map(str::to_owned) else { continue };
        let Some(report) = message.payload().and_then(|p| serde_json::from_slice::<Report>(p).ok()) else {
            warn!(topic = message.topic(), offset = message.offset(), "ignoring a report that is not valid JSON");
            continue;
        };
        let (Some(start), Some(end)) = (millis(&report.window_start), millis(&report.window_end)) else {
            warn!(topic = message.topic(), offset = message.offset(), "ignoring a report without valid window times");
            continue;
        };
        let record = ReportRecord {
            id: format!("{}/{}/{}", message.topic(), message.partition(), message.offset()),
            tenant: tenant.clone(),
            app: report.app.clone(),
            instance: report.instance.clone(),
            window_start: bson::DateTime::from_millis(start),
            window_end: bson::DateTime::from_millis(end),
            messages: i64::try_from(report.messages).unwrap_or(i64::MAX),
            bytes: i64::try_from(report.bytes).unwrap_or(i64::MAX),
            processing_rate: report.processing_rate,
            throughput: report.throughput,
            avg_ingestion_ms: report.avg_ingestion_ms,
            dead_lettered: i64::try_from(report.dead_lettered).unwrap_or(i64::MAX),
            total_messages: i64::try_from(report.total_messages).unwrap_or(i64::MAX),
            total_bytes: i64::try_from(report.total_bytes).unwrap_or(i64::MAX),
            silent: report.silent,
        };
        ctx.metrics.stream_report(&tenant, report.messages, report.bytes);
        memory.lock().unwrap_or_else(|e| e.into_inner()).add(&tenant, &report);
        // Judgement must not wait for the store: reports are stored in batches, behind.
        if to_store.try_send(record).is_err() {
            warn!("the store is behind; a report is remembered but not stored");
        }
    }
}

/// Stores the reports it receives, in batches, until the channel closes.
async fn store_reports(store: MonitorStore, mut reports: tokio::sync::mpsc::Receiver<ReportRecord>) {
    let mut batch = Vec::new();
    while reports.recv_many(&mut batch, 500).await > 0 {
        if let Err(error) = store.insert_reports(&batch).await {
            warn!(%error, count = batch.len(), "reports are remembered but not stored");
        }
        batch.clear();
    }
}

fn ms(time: &Time) -> i64 {
    time.0.as_millisecond()
}

/// The latest report of every replica that reported since `since_ms`, summed up.
fn summary(app: &AppMemory, since_ms: i64, lag: Option<u64>) -> Option<ReportSummary> {
    let latest: Vec<&Report> =
        app.latest.values().filter(|r| millis(&r.window_end).is_some_and(|end| end >= since_ms)).collect();
    let first = latest.first()?;
    let (mut start, mut end) = (first.window_start.clone(), first.window_end.clone());
    for report in &latest {
        start = start.min(report.window_start.clone());
        end = end.max(report.window_end.clone());
    }
    let messages: u64 = latest.iter().map(|r| r.messages).sum();
    let weighted: f64 = latest.iter().map(|r| r.avg_ingestion_ms * r.messages as f64).sum();
    Some(ReportSummary {
        window_start: Time(start.parse().ok()?),
        window_end: Time(end.parse().ok()?),
        processing_rate: latest.iter().map(|r| r.processing_rate).sum(),
        throughput: latest.iter().map(|r| r.throughput).sum(),
        avg_ingestion_ms: if messages > 0 { weighted / messages as f64 } else { 0.0 },
        messages: latest.iter().map(|r| r.total_messages).sum(),
        bytes: latest.iter().map(|r| r.total_bytes).sum(),
        lag,
        reporting_replicas: u32::try_from(latest.len()).unwrap_or(u32::MAX),
    })
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

    let (verdict, last_report) = {
        let mut memory = memory.lock().unwrap_or_else(|e| e.into_inner());
        let remembered = memory.apps.entry(key.clone()).or_default();
        remembered.last_judged_ms = now_ms;
        if let Some(lag) = lag {
            remembered.lags.push(LagPoint { at_ms: now_ms, lag });
            let oldest = now_ms - i64::try_from(MEMORY.as_millis()).unwrap_or(i64::MAX);
            remembered.lags.retain(|l| l.at_ms >= oldest);
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
        (verdict, summary(remembered, running_since_ms, lag))
    };

    let healthy = match &verdict.health {
        Health::Healthy(m) => State::ok(HEALTHY, verdict.health.reason(), m.clone()),
        other => State::failed(HEALTHY, other.reason(), other.message().to_owned()),
    };
    let now = Timestamp::now();
    let mut next = status.clone();
    next.conditions = conditions::merge(&status.conditions, &[healthy], app.metadata.generation, now);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_topics_name_their_tenant() {
        assert_eq!(tenant_of_topic("acme-air.mysimbdp.reports"), Some("acme-air"));
        assert_eq!(tenant_of_topic("acme-air.observations"), None);
        assert_eq!(tenant_of_topic(".mysimbdp.reports"), None);
        assert_eq!(tenant_of_topic("a.b.mysimbdp.reports"), None);
    }

    #[test]
    fn memory_keeps_one_point_per_replica_and_window() {
        let mut memory = Memory::default();
        let report = Report {
            tenant: "ignored".into(),
            app: "observations".into(),
            instance: "observations-0".into(),
            window_start: "2026-12-01T10:00:00Z".into(),
            window_end: "2026-12-01T10:00:05Z".into(),
            ingestion_start: "2026-12-01T09:00:00Z".into(),
            messages: 10,
            bytes: 1000,
            processing_rate: 2.0,
            throughput: 200.0,
            avg_ingestion_ms: 3.0,
            dead_lettered: 0,
            total_messages: 10,
            total_bytes: 1000,
            silent: false,
        };
        memory.add("nimbus-weather", &report);
        memory.add("nimbus-weather", &report);
        let app = &memory.apps[&("nimbus-weather".to_owned(), "observations".to_owned())];
        assert_eq!(app.reports.len(), 1, "a report read twice counts once");
        let summary = summary(app, 0, Some(7)).unwrap();
        assert_eq!((summary.messages, summary.reporting_replicas, summary.lag), (10, 1, Some(7)));
    }
}
