//! What every controller shares: the Kubernetes client, the external systems behind their
//! traits, the platform's settings, metrics and the Event recorder.

use std::sync::Arc;

use kube::{Client, runtime::events::Recorder};

use crate::{coredms::CoreDmsAdmin, kafka::KafkaAdmin, metrics::Metrics, staging::Staging, tenant::plan::Platform};

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
}
