//! The mysimbdp operator: controllers that turn `Tenant`, `BatchIngestApp` and
//! `StreamIngestApp` resources into namespaces, Kafka users and topics, coredms databases, and
//! running ingest apps; the adapters to the external systems they drive; and the CLI.

pub mod batch;
pub mod chart;
pub mod cli;
pub mod conditions;
pub mod config;
pub mod context;
pub mod coredms;
pub mod error;
pub mod fit;
pub mod k8s;
pub mod kafka;
pub mod leader;
pub mod metrics;
pub mod monitor;
pub mod runtime;
pub mod scram;
pub mod secret;
pub mod shutdown;
pub mod staging;
pub mod stream;
pub mod tenant;
pub mod tenant_api;
pub mod tenant_client;
#[cfg(test)]
pub mod testing;
pub mod tls;
