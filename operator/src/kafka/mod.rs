//! Kafka administration the tenant controller needs: SCRAM users, prefixed ACLs, client quotas
//! and topics, behind the small [`KafkaAdmin`] trait so reconcile logic stays testable.
//!
//! The real adapter, [`protocol::ProtocolAdmin`], speaks the Kafka protocol directly (the
//! `kafka-protocol` crate) because rdkafka's safe admin API has no calls for ACLs, SCRAM
//! credentials or client quotas; [`connection`] carries its requests, over TCP or TLS.

use std::{collections::BTreeMap, fmt, path::PathBuf, str::FromStr};

use async_trait::async_trait;

use crate::secret::SecretString;

pub mod connection;
pub mod protocol;

/// How the platform's Kafka clients (the admin, the monitor, apps) reach the brokers. Every
/// client authenticates with SCRAM-SHA-512, so only the SASL protocols are accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecurityProtocol {
    /// SCRAM over plain TCP.
    SaslPlaintext,
    /// SCRAM over TLS.
    SaslSsl,
}

impl SecurityProtocol {
    /// The name Kafka clients know (`security.protocol`).
    pub fn as_str(self) -> &'static str {
        match self {
            SecurityProtocol::SaslPlaintext => "SASL_PLAINTEXT",
            SecurityProtocol::SaslSsl => "SASL_SSL",
        }
    }
}

impl fmt::Display for SecurityProtocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for SecurityProtocol {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        match text.trim().to_ascii_uppercase().as_str() {
            "SASL_PLAINTEXT" => Ok(SecurityProtocol::SaslPlaintext),
            "SASL_SSL" => Ok(SecurityProtocol::SaslSsl),
            protocol @ ("PLAINTEXT" | "SSL") => Err(format!(
                "Kafka security protocol {protocol} is not supported: the platform authenticates every Kafka client \
                 with SCRAM-SHA-512; use SASL_SSL (TLS) or SASL_PLAINTEXT"
            )),
            _ => Err(format!("{text:?} is not a Kafka security protocol; use SASL_SSL (TLS) or SASL_PLAINTEXT")),
        }
    }
}

/// How the admin client's connections to the brokers are secured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transport {
    /// `SASL_PLAINTEXT`: SCRAM over plain TCP.
    Plaintext,
    /// `SASL_SSL`: SCRAM over TLS; each broker's certificate must chain to a CA of `ca_file`
    /// (the system's CAs when `None`) and name the host the client connects to.
    Tls {
        /// PEM file of the CA that signed the brokers' certificates.
        ca_file: Option<PathBuf>,
    },
}

impl Transport {
    /// The transport of `protocol`, trusting `ca_file` for TLS.
    pub fn new(protocol: SecurityProtocol, ca_file: Option<PathBuf>) -> Self {
        match protocol {
            SecurityProtocol::SaslPlaintext => Transport::Plaintext,
            SecurityProtocol::SaslSsl => Transport::Tls { ca_file },
        }
    }
}

/// Kinds of resource an ACL can name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ResourceKind {
    /// Topics.
    Topic,
    /// Consumer groups.
    Group,
    /// Transactional ids.
    TransactionalId,
}

/// Operations an ACL can allow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Operation {
    /// Consume, or join a group.
    Read,
    /// Produce.
    Write,
    /// See that the resource exists and its metadata.
    Describe,
    /// Read the resource's configuration.
    DescribeConfigs,
}

/// An ALLOW binding for one principal on every resource of a kind whose name starts with a
/// prefix, from any host. The platform only ever grants such prefixed allows.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PrefixedAllow {
    /// The resource kind.
    pub resource: ResourceKind,
    /// The name prefix, e.g. `acme-air.`.
    pub prefix: String,
    /// The principal, e.g. `User:tenant-acme-air`.
    pub principal: String,
    /// The allowed operation.
    pub operation: Operation,
}

/// Byte-rate quotas of a user, in bytes per second. `None` means no quota.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct ByteRates {
    /// `producer_byte_rate`.
    pub producer: Option<f64>,
    /// `consumer_byte_rate`.
    pub consumer: Option<f64>,
}

/// A topic as it should be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicSpec {
    /// Full topic name.
    pub name: String,
    /// Number of partitions.
    pub partitions: i32,
    /// `retention.ms`.
    pub retention_ms: i64,
}

/// A topic as it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicState {
    /// Full topic name.
    pub name: String,
    /// Number of partitions.
    pub partitions: i32,
    /// `retention.ms`, when set on the topic (otherwise the broker default applies).
    pub retention_ms: Option<i64>,
}

/// Why a Kafka administration call failed.
#[derive(Debug, thiserror::Error)]
pub enum KafkaAdminError {
    /// No connection to any bootstrap server.
    #[error("cannot reach Kafka at {bootstrap}: {source}")]
    Connect {
        /// The bootstrap servers tried.
        bootstrap: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// TLS cannot be set up, or the broker's certificate is not trusted.
    #[error("TLS with Kafka at {server} failed: {message}")]
    Tls {
        /// The server (or bootstrap list) concerned.
        server: String,
        /// What went wrong, and the fix.
        message: String,
    },
    /// The broker refused the admin's credentials.
    #[error("Kafka refused the platform admin's credentials for user {user:?}: {message}")]
    Authentication {
        /// The admin user.
        user: String,
        /// The broker's message.
        message: String,
    },
    /// A request failed with a Kafka error code.
    #[error("Kafka {operation} on {resource:?} failed: {code} {message}")]
    Request {
        /// The request, e.g. `CreateAcls`.
        operation: &'static str,
        /// The resource it was about.
        resource: String,
        /// The Kafka error code's name.
        code: String,
        /// The broker's message, if any.
        message: String,
    },
    /// The connection broke or the broker sent something unexpected.
    #[error("Kafka {operation}: {message}")]
    Protocol {
        /// The request.
        operation: &'static str,
        /// What went wrong.
        message: String,
    },
}

impl KafkaAdminError {
    /// Low-cardinality label for metrics.
    pub fn category(&self) -> &'static str {
        match self {
            KafkaAdminError::Connect { .. } => "kafka_connect",
            KafkaAdminError::Tls { .. } => "kafka_tls",
            KafkaAdminError::Authentication { .. } => "kafka_auth",
            KafkaAdminError::Request { .. } => "kafka_request",
            KafkaAdminError::Protocol { .. } => "kafka_protocol",
        }
    }
}

/// Result of Kafka administration.
pub type Result<T, E = KafkaAdminError> = std::result::Result<T, E>;

/// What the platform needs from Kafka administration. Every call is idempotent where the
/// protocol allows: deleting what is already gone succeeds.
#[async_trait]
pub trait KafkaAdmin: Send + Sync {
    /// Whether a SCRAM-SHA-512 credential exists for `user`.
    async fn scram_user_exists(&self, user: &str) -> Result<bool>;
    /// Creates or replaces `user`'s SCRAM-SHA-512 credential.
    async fn upsert_scram_user(&self, user: &str, password: &SecretString) -> Result<()>;
    /// Deletes `user`'s SCRAM-SHA-512 credential; succeeds when there is none.
    async fn delete_scram_user(&self, user: &str) -> Result<()>;

    /// Every ACL binding of `principal`, as prefixed allows. Bindings of other shapes are
    /// reported as errors: the platform never creates them.
    async fn acls_of(&self, principal: &str) -> Result<Vec<PrefixedAllow>>;
    /// Creates the bindings.
    async fn create_acls(&self, acls: &[PrefixedAllow]) -> Result<()>;
    /// Deletes exactly these bindings.
    async fn delete_acls(&self, acls: &[PrefixedAllow]) -> Result<()>;

    /// The byte-rate quotas set for `user`.
    async fn quotas_of(&self, user: &str) -> Result<ByteRates>;
    /// Sets `user`'s byte-rate quotas; `None` removes that quota.
    async fn set_quotas(&self, user: &str, rates: ByteRates) -> Result<()>;

    /// Topics whose name starts with `prefix`, with partitions and retention.
    async fn topics_with_prefix(&self, prefix: &str) -> Result<Vec<TopicState>>;
    /// Creates a topic (replication factor: the broker default).
    async fn create_topic(&self, topic: &TopicSpec) -> Result<()>;
    /// Raises a topic's partition count to `total`.
    async fn add_partitions(&self, topic: &str, total: i32) -> Result<()>;
    /// Sets topic configs, e.g. `retention.ms`.
    async fn set_topic_configs(&self, topic: &str, configs: &BTreeMap<String, String>) -> Result<()>;
    /// Deletes topics; succeeds for topics already gone.
    async fn delete_topics(&self, topics: &[String]) -> Result<()>;
}

impl fmt::Display for PrefixedAllow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {:?} on {:?} prefix {:?}", self.principal, self.operation, self.resource, self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_sasl_security_protocols_are_accepted() {
        assert_eq!("SASL_SSL".parse(), Ok(SecurityProtocol::SaslSsl));
        assert_eq!("sasl_plaintext".parse(), Ok(SecurityProtocol::SaslPlaintext));
        let plaintext = "PLAINTEXT".parse::<SecurityProtocol>().unwrap_err();
        assert!(plaintext.contains("not supported") && plaintext.contains("SCRAM-SHA-512"), "{plaintext}");
        let unknown = "TLS".parse::<SecurityProtocol>().unwrap_err();
        assert!(unknown.contains("\"TLS\" is not a Kafka security protocol; use SASL_SSL"), "{unknown}");
        assert_eq!(Transport::new(SecurityProtocol::SaslPlaintext, Some("/ca.crt".into())), Transport::Plaintext);
    }
}
