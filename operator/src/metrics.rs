//! Prometheus metrics of the operator (prefix `mysimbdp_`, bounded labels) and the small HTTP
//! server that exposes them with the health endpoints.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use axum::{Router, extract::State, http::header, response::IntoResponse, routing::get};
use prometheus_client::{
    encoding::{EncodeLabelSet, text::encode},
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::Registry,
};

/// Labels of a reconcile outcome.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReconcileLabels {
    /// `tenant`, `batch`, `stream`, `monitor`.
    pub controller: &'static str,
    /// `ok` or an error category.
    pub outcome: &'static str,
}

/// Labels naming a controller.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ControllerLabels {
    /// `tenant`, `batch`, `stream`, `monitor`.
    pub controller: &'static str,
}

/// Labels of a batch file outcome.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FileLabels {
    /// The tenant (bounded by the number of tenants).
    pub tenant: String,
    /// `accepted`, `rejected`, `ingested`, `retried`, `dead_lettered`.
    pub outcome: &'static str,
}

/// Labels naming a tenant.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TenantLabels {
    /// The tenant.
    pub tenant: String,
}

/// Labels of a monitor decision.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DecisionLabels {
    /// The tenant.
    pub tenant: String,
    /// `ScaleUp`, `ScaleDown`, `Restart`, `Notify`.
    pub action: &'static str,
}

/// Labels of refused tenant input.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RefusedLabels {
    /// The tenant.
    pub tenant: String,
    /// `result` (a batch run's result document), `report` (a stream report: out of bounds, an
    /// unknown app, over the rate limit).
    pub input: &'static str,
}

/// Every metric of the operator.
pub struct Metrics {
    registry: Registry,
    /// Reconciliations by controller and outcome.
    pub reconciliations: Family<ReconcileLabels, Counter>,
    /// Reconcile duration by controller.
    pub reconcile_seconds: Family<ControllerLabels, Histogram>,
    /// Tenants that are Ready.
    pub tenants_ready: Gauge,
    /// Staged files by tenant and outcome.
    pub batch_files: Family<FileLabels, Counter>,
    /// Bytes of files ingested, by tenant.
    pub batch_bytes: Family<TenantLabels, Counter>,
    /// Documents stored by batch runs, by tenant.
    pub batch_rows: Family<TenantLabels, Counter>,
    /// Run durations by tenant.
    pub batch_run_seconds: Family<TenantLabels, Histogram>,
    /// Stream app reports read by the monitor, by tenant.
    pub stream_reports: Family<TenantLabels, Counter>,
    /// Messages the stream apps reported ingested, by tenant.
    pub stream_messages: Family<TenantLabels, Counter>,
    /// Bytes the stream apps reported ingested, by tenant.
    pub stream_bytes: Family<TenantLabels, Counter>,
    /// Monitor decisions by tenant and action.
    pub stream_decisions: Family<DecisionLabels, Counter>,
    /// Tenant input the platform refused, by tenant and kind.
    pub refused: Family<RefusedLabels, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("mysimbdp");
        let reconciliations = Family::<ReconcileLabels, Counter>::default();
        registry.register("reconciliations", "Reconciliations by controller and outcome", reconciliations.clone());
        let reconcile_seconds = Family::<ControllerLabels, Histogram>::new_with_constructor(|| {
            Histogram::new([0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0])
        });
        registry.register("reconcile_seconds", "Time one reconciliation takes", reconcile_seconds.clone());
        let tenants_ready = Gauge::default();
        registry.register("tenants_ready", "Tenants whose Ready condition is True", tenants_ready.clone());
        let batch_files = Family::<FileLabels, Counter>::default();
        registry.register("batch_files", "Staged files by tenant and outcome", batch_files.clone());
        let batch_bytes = Family::<TenantLabels, Counter>::default();
        registry.register("batch_ingested_bytes", "Bytes of files ingested", batch_bytes.clone());
        let batch_rows = Family::<TenantLabels, Counter>::default();
        registry.register("batch_rows", "Documents stored by batch runs", batch_rows.clone());
        let batch_run_seconds = Family::<TenantLabels, Histogram>::new_with_constructor(|| {
            Histogram::new([0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0])
        });
        registry.register("batch_run_seconds", "Duration of batch runs", batch_run_seconds.clone());
        let stream_reports = Family::<TenantLabels, Counter>::default();
        registry.register("stream_reports", "Stream app reports read by the monitor", stream_reports.clone());
        let stream_messages = Family::<TenantLabels, Counter>::default();
        registry.register("stream_messages", "Messages stream apps reported ingested", stream_messages.clone());
        let stream_bytes = Family::<TenantLabels, Counter>::default();
        registry.register("stream_ingested_bytes", "Bytes stream apps reported ingested", stream_bytes.clone());
        let stream_decisions = Family::<DecisionLabels, Counter>::default();
        registry.register("stream_decisions", "Monitor decisions by tenant and action", stream_decisions.clone());
        let refused = Family::<RefusedLabels, Counter>::default();
        registry.register(
            "refused_input",
            "Tenant input refused for breaking a bound of the contract (result documents, reports)",
            refused.clone(),
        );
        Self {
            registry,
            reconciliations,
            reconcile_seconds,
            tenants_ready,
            batch_files,
            batch_bytes,
            batch_rows,
            batch_run_seconds,
            stream_reports,
            stream_messages,
            stream_bytes,
            stream_decisions,
            refused,
        }
    }
}

impl Metrics {
    /// Records one reconciliation of `controller` that took `elapsed` and ended in `outcome`.
    pub fn reconciled(&self, controller: &'static str, outcome: &'static str, elapsed: Duration) {
        self.reconciliations.get_or_create(&ReconcileLabels { controller, outcome }).inc();
        self.reconcile_seconds.get_or_create(&ControllerLabels { controller }).observe(elapsed.as_secs_f64());
    }

    /// Records a staged file's outcome, with the bytes and rows it brought.
    pub fn batch_file(&self, tenant: &str, outcome: &'static str, bytes: u64, rows: u64) {
        self.batch_files.get_or_create(&FileLabels { tenant: tenant.into(), outcome }).inc();
        let labels = TenantLabels { tenant: tenant.into() };
        if outcome == "ingested" {
            self.batch_bytes.get_or_create(&labels).inc_by(bytes);
            self.batch_rows.get_or_create(&labels).inc_by(rows);
        }
    }

    /// Records a finished run.
    pub fn batch_run(&self, tenant: &str, _outcome: &'static str, elapsed: Duration) {
        self.batch_run_seconds.get_or_create(&TenantLabels { tenant: tenant.into() }).observe(elapsed.as_secs_f64());
    }

    /// Records a report read from a tenant's report topic.
    pub fn stream_report(&self, tenant: &str, messages: u64, bytes: u64) {
        let labels = TenantLabels { tenant: tenant.into() };
        self.stream_reports.get_or_create(&labels).inc();
        self.stream_messages.get_or_create(&labels).inc_by(messages);
        self.stream_bytes.get_or_create(&labels).inc_by(bytes);
    }

    /// Records a monitor decision.
    pub fn stream_decision(&self, tenant: &str, action: &'static str) {
        self.stream_decisions.get_or_create(&DecisionLabels { tenant: tenant.into(), action }).inc();
    }

    /// Records refused tenant input.
    pub fn refused_input(&self, tenant: &str, input: &'static str) {
        self.refused.get_or_create(&RefusedLabels { tenant: tenant.into(), input }).inc();
    }

    /// Registers more metrics (for a component that has its own).
    pub fn registry_mut(&mut self) -> &mut Registry {
        &mut self.registry
    }

    /// The metrics in Prometheus' text format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}

async fn render_metrics(State(metrics): State<Arc<Metrics>>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], metrics.render())
}

/// Serves `/metrics`, `/healthz` and `/readyz` on `addr` until the process ends.
pub async fn serve(addr: SocketAddr, metrics: Arc<Metrics>) -> std::io::Result<()> {
    let app = Router::new()
        .route("/metrics", get(render_metrics))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(|| async { "ok" }))
        .with_state(metrics);
    let listener = tokio::net::TcpListener::bind(addr).await?;
    axum::serve(listener, app).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_render_with_prefix_and_labels() {
        let m = Metrics::default();
        m.reconciled("tenant", "ok", Duration::from_millis(20));
        m.tenants_ready.set(2);
        let text = m.render();
        assert!(text.contains("mysimbdp_reconciliations_total{controller=\"tenant\",outcome=\"ok\"} 1"), "{text}");
        assert!(text.contains("mysimbdp_tenants_ready 2"), "{text}");
        assert!(text.contains("mysimbdp_reconcile_seconds_bucket"), "{text}");
    }
}
