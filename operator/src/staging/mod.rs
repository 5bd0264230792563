//! The staging store where tenants drop files for batch ingestion, behind the [`Staging`]
//! trait. Each tenant has an area with one folder per file state; files move between states
//! and are never deleted except by the retention policy or offboarding.

use std::path::PathBuf;

use async_trait::async_trait;

pub mod local;

/// The folders of a tenant's area, one per file state.
pub const STATES: [&str; 5] = ["incoming", "processing", "ingested", "rejected", "failed"];

/// Why a staging operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StagingError {
    /// A filesystem operation failed.
    #[error("staging: cannot {operation} {}: {source}", path.display())]
    Io {
        /// What was being done.
        operation: &'static str,
        /// The path concerned.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The configured staging URL is not usable.
    #[error("staging URL {url:?} is not supported: {reason}")]
    Url {
        /// The URL.
        url: String,
        /// Why.
        reason: String,
    },
}

impl StagingError {
    /// Low-cardinality label for metrics.
    pub fn category(&self) -> &'static str {
        match self {
            StagingError::Io { .. } => "staging_io",
            StagingError::Url { .. } => "staging_url",
        }
    }
}

/// Result of staging operations.
pub type Result<T, E = StagingError> = std::result::Result<T, E>;

/// What the platform needs from the staging store.
#[async_trait]
pub trait Staging: Send + Sync {
    /// Creates the tenant's area (idempotent) and returns its URL, where the tenant drops files.
    async fn ensure_area(&self, tenant: &str) -> Result<String>;
    /// Deletes the tenant's area and every file in it; succeeds when it is already gone.
    async fn delete_area(&self, tenant: &str) -> Result<()>;
}

/// Opens the staging store a URL names: `file:///path` (the default store).
pub fn open(url: &str) -> Result<Box<dyn Staging>> {
    match url.strip_prefix("file://") {
        Some(path) if path.starts_with('/') => Ok(Box::new(local::LocalStaging::new(path))),
        _ => Err(StagingError::Url {
            url: url.to_owned(),
            reason: "use file:///absolute/path for a local or mounted filesystem".into(),
        }),
    }
}
