//! What every controller shares: the Kubernetes client, the external systems behind their
//! traits, the platform's settings, metrics and the Event recorder.

use std::sync::Arc;

use k8s_openapi::api::core::v1::ObjectReference;
use kube::{
    Client,
    runtime::events::{Event, EventType, Recorder},
};
use tracing::warn;

use crate::{
    batch::ledger::Ledger, coredms::CoreDmsAdmin, kafka::KafkaAdmin, metrics::Metrics, staging::Staging,
    tenant::plan::Platform,
};

/// Where apps reach Kafka and coredms (as seen from where they run, which may differ from
/// where the operator reaches them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppEndpoints {
    /// Kafka bootstrap servers.
    pub kafka_bootstrap: String,
    /// `SASL_PLAINTEXT` or `SASL_SSL`.
    pub kafka_security_protocol: String,
    /// The SASL mechanism (`SCRAM-SHA-512`).
    pub kafka_sasl_mechanism: String,
    /// With `SASL_SSL`: PEM certificates of the CA that signed the brokers' certificates, when
    /// the platform names one (otherwise apps trust their system's CAs).
    pub kafka_ssl_ca_pem: Option<String>,
    /// coredms URL without credentials.
    pub coredms_url: String,
}

/// Shared state of the controllers.
pub struct Context {
    /// Kubernetes.
    pub client: Client,
    /// Kafka administration.
    pub kafka: Arc<dyn KafkaAdmin>,
    /// coredms administration.
    pub coredms: Arc<dyn CoreDmsAdmin>,
    /// The staging store.
    pub staging: Arc<dyn Staging>,
    /// What the platform gives tenants.
    pub platform: Platform,
    /// Where apps reach the shared services.
    pub endpoints: AppEndpoints,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Kubernetes Events.
    pub recorder: Recorder,
    /// The ledger of staged files and runs.
    pub ledger: Ledger,
    /// The platform's own database in coredms (ledger, reports, decisions).
    pub platform_db: mongodb::Database,
}

impl Context {
    /// Publishes an Event about `object`; a failure to record it is logged, never fatal.
    pub async fn event(&self, object: &ObjectReference, type_: EventType, reason: &str, note: &str) {
        let event = Event {
            type_,
            reason: reason.into(),
            note: Some(note.chars().take(1000).collect()),
            action: "Reconcile".into(),
            secondary: None,
        };
        if let Err(error) = self.recorder.publish(&event, object).await {
            warn!(%error, reason, "cannot record an Event");
        }
    }
}
