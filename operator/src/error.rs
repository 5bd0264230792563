//! The error of a reconciliation: which external system failed, on which object, and a
//! low-cardinality category for metrics.

use crate::{batch::ledger::LedgerError, coredms::CoreDmsError, kafka::KafkaAdminError, staging::StagingError};

/// Why a reconciliation did not finish. Every variant is transient from the controller's
/// point of view: it is retried with backoff. Invalid specs are not errors; they become
/// conditions.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A Kubernetes API call failed.
    #[error("cannot {action} {kind} {name:?}: {source}")]
    Kube {
        /// What was being done (`apply`, `get`, `delete`...).
        action: &'static str,
        /// The object's kind.
        kind: String,
        /// The object's name.
        name: String,
        /// The client's error.
        source: kube::Error,
    },
    /// Kafka administration failed.
    #[error(transparent)]
    Kafka(#[from] KafkaAdminError),
    /// coredms administration failed.
    #[error(transparent)]
    CoreDms(#[from] CoreDmsError),
    /// The staging store failed.
    #[error(transparent)]
    Staging(#[from] StagingError),
    /// The ledger failed.
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    /// Starting or stopping app replicas failed.
    #[error(transparent)]
    Runtime(#[from] crate::runtime::RuntimeError),
    /// Adding or removing the finalizer failed.
    #[error("finalizer of {name:?}: {message}")]
    Finalizer {
        /// The object's name.
        name: String,
        /// What went wrong.
        message: String,
    },
}

impl Error {
    /// Low-cardinality label for metrics.
    pub fn category(&self) -> &'static str {
        match self {
            Error::Kube { .. } => "kubernetes",
            Error::Kafka(e) => e.category(),
            Error::CoreDms(e) => e.category(),
            Error::Staging(e) => e.category(),
            Error::Ledger(_) => "ledger",
            Error::Runtime(e) => e.category(),
            Error::Finalizer { .. } => "finalizer",
        }
    }

    /// A closure that wraps a kube error with what was being done to which object.
    pub fn kube(action: &'static str, kind: impl Into<String>, name: &str) -> impl FnOnce(kube::Error) -> Self {
        let (kind, name) = (kind.into(), name.to_owned());
        move |source| Error::Kube { action, kind, name, source }
    }
}

/// Result of a reconciliation step.
pub type Result<T, E = Error> = std::result::Result<T, E>;
