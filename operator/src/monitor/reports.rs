//! The monitor's intake of reports: one consumer reads every tenant's reports topic
//! (`<tenant>.mysimbdp.reports`), trusting the tenant only from the topic. Each report goes
//! through the gate of [`Memory::admit`] (decoded within the contract's bounds, naming an app
//! of the tenant, within the tenant's rate); what passes is remembered for judgement at once
//! and stored in the platform database in batches behind, what is refused is counted.

use std::sync::{Arc, Mutex};

use futures::StreamExt;
use k8s_openapi::jiff::Timestamp;
use kube::{ResourceExt, runtime::reflector::Store};
use mongodb::bson;
use mysimbdp_api::{StreamIngestApp, Tenant};
use mysimbdp_ingest_sdk::contract::Report;
use rdkafka::{
    ClientConfig, Message,
    consumer::{Consumer, StreamConsumer},
};
use tracing::{debug, warn};

use super::{
    MONITOR_GROUP,
    memory::Memory,
    store::{MonitorStore, ReportRecord},
};
use crate::{
    context::Context,
    shutdown::Shutdown,
    tenant::names::{REPORTS_TOPIC, TenantNames},
};

/// The tenant a report topic belongs to: `<tenant>.mysimbdp.reports`.
pub fn tenant_of_topic(topic: &str) -> Option<&str> {
    topic.strip_suffix(REPORTS_TOPIC)?.strip_suffix('.').filter(|t| !t.is_empty() && !t.contains('.'))
}

/// A stored report as the monitor remembers it.
pub fn report_of(record: &ReportRecord) -> Report {
    let text = |at: bson::DateTime| {
        Timestamp::from_millisecond(at.timestamp_millis()).unwrap_or(Timestamp::UNIX_EPOCH).to_string()
    };
    let count = |n: i64| u64::try_from(n).unwrap_or(0);
    Report {
        tenant: record.tenant.clone(),
        app: record.app.clone(),
        instance: record.instance.clone(),
        window_start: text(record.window_start),
        window_end: text(record.window_end),
        ingestion_start: String::new(),
        messages: count(record.messages),
        bytes: count(record.bytes),
        processing_rate: record.processing_rate,
        throughput: record.throughput,
        avg_ingestion_ms: record.avg_ingestion_ms,
        dead_lettered: count(record.dead_lettered),
        total_messages: count(record.total_messages),
        total_bytes: count(record.total_bytes),
        silent: record.silent,
    }
}

/// A report as stored, read at `topic/partition/offset`. Its counts are within
/// [`MAX_COUNT`](mysimbdp_ingest_sdk::contract::decode::MAX_COUNT), so they fit.
fn record_of(tenant: &str, report: &Report, at: String) -> Option<ReportRecord> {
    let (start, end) = report.window_ms().ok()?;
    let count = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
    Some(ReportRecord {
        id: at,
        tenant: tenant.to_owned(),
        app: report.app.clone(),
        instance: report.instance.clone(),
        window_start: bson::DateTime::from_millis(start),
        window_end: bson::DateTime::from_millis(end),
        messages: count(report.messages),
        bytes: count(report.bytes),
        processing_rate: report.processing_rate,
        throughput: report.throughput,
        avg_ingestion_ms: report.avg_ingestion_ms,
        dead_lettered: count(report.dead_lettered),
        total_messages: count(report.total_messages),
        total_bytes: count(report.total_bytes),
        silent: report.silent,
    })
}

/// Whether `tenant` has a StreamIngestApp named `app`.
fn app_exists(apps: &Store<StreamIngestApp>, tenants: &[Arc<Tenant>], tenant: &str, app: &str) -> bool {
    let Some(namespace) = tenants.iter().find(|t| t.name_any() == tenant).map(|t| TenantNames::of(t).namespace) else {
        return false;
    };
    apps.state().iter().any(|a| a.name_any() == app && a.namespace().as_deref() == Some(namespace.as_str()))
}

/// Reads every tenant's report topic until the process ends; remembers and stores each report
/// that passes the gate.
pub async fn consume(
    ctx: Arc<Context>,
    kafka: ClientConfig,
    store: MonitorStore,
    memory: Arc<Mutex<Memory>>,
    apps: Store<StreamIngestApp>,
    tenants: Store<Tenant>,
    shutdown: Shutdown,
) {
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
    loop {
        let message = tokio::select! {
            () = shutdown.wait() => break,
            message = messages.next() => message,
        };
        let Some(message) = message else { break };
        let message = match message {
            Ok(message) => message,
            Err(error) => {
                debug!(%error, "report topics: transient error");
                continue;
            }
        };
        let Some(tenant) = tenant_of_topic(message.topic()).map(str::to_owned) else { continue };
        let decoded = Report::decode(message.payload().unwrap_or_default());
        let known = tenants.state();
        let admitted = memory.lock().unwrap_or_else(|e| e.into_inner()).admit(
            &tenant,
            decoded,
            |app| app_exists(&apps, &known, &tenant, app),
            Timestamp::now().as_millisecond(),
        );
        let report = match admitted {
            Ok(report) => report,
            Err(refusal) => {
                debug!(topic = message.topic(), offset = message.offset(), ?refusal, "refused a report");
                ctx.metrics.refused_input(&tenant, "report");
                continue;
            }
        };
        ctx.metrics.stream_report(&tenant, report.messages, report.bytes);
        let at = format!("{}/{}/{}", message.topic(), message.partition(), message.offset());
        // Judgement must not wait for the store: reports are stored in batches, behind.
        if let Some(record) = record_of(&tenant, &report, at)
            && to_store.try_send(record).is_err()
        {
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
}
