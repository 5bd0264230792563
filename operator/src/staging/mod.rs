//! The staging store where tenants drop files for batch ingestion, behind the [`Staging`]
//! trait, on an object-store abstraction: the local filesystem (`file://`, the default) or S3
//! (`s3://`, with the `s3` feature).
//!
//! Each tenant has an area with one folder per file state. A tenant drops files in
//! `<tenant>/incoming/`; the platform moves each one to `<tenant>/<state>/<id>/<name>` once its
//! outcome is recorded. Files are never deleted except by retention and offboarding.

use std::fmt;

use async_trait::async_trait;
use bytes::Bytes;
use k8s_openapi::jiff::Timestamp;

mod object;

pub use object::ObjectStaging;

/// The state folders of an area.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FileState {
    /// Dropped by the tenant, not yet looked at.
    Incoming,
    /// Accepted; waiting for or in a run.
    Processing,
    /// Ingested.
    Ingested,
    /// Refused by the agreement's checks; a `.reason` file says why.
    Rejected,
    /// Failed on every attempt; a `.reason` file holds the last error.
    Failed,
}

impl FileState {
    /// Every state, in the order files move through them.
    pub const ALL: [FileState; 5] =
        [FileState::Incoming, FileState::Processing, FileState::Ingested, FileState::Rejected, FileState::Failed];

    /// The folder name.
    pub fn dir(self) -> &'static str {
        match self {
            FileState::Incoming => "incoming",
            FileState::Processing => "processing",
            FileState::Ingested => "ingested",
            FileState::Rejected => "rejected",
            FileState::Failed => "failed",
        }
    }
}

/// A file in a tenant's `incoming/` folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StagedFile {
    /// Its name.
    pub name: String,
    /// Its size in bytes.
    pub size: u64,
    /// When it last changed.
    pub modified: Timestamp,
    /// What it is when it is not a regular file (`a symbolic link`, `a directory`, ...): such an
    /// entry is refused without ever being opened or followed.
    pub not_regular: Option<&'static str>,
}

/// Where a file is: `<tenant>/incoming/<name>`, or `<tenant>/<state>/<id>/<name>` once the
/// platform has given it a ledger id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// The tenant.
    pub tenant: String,
    /// The state folder.
    pub state: FileState,
    /// The ledger id (none in `incoming/`).
    pub id: Option<String>,
    /// The file name.
    pub name: String,
}

impl Location {
    /// A file in a tenant's `incoming/` folder.
    pub fn incoming(tenant: &str, name: &str) -> Self {
        Self { tenant: tenant.into(), state: FileState::Incoming, id: None, name: name.into() }
    }

    /// The same file, with ledger id `id`, in `state`.
    pub fn moved(&self, state: FileState, id: &str) -> Self {
        Self { tenant: self.tenant.clone(), state, id: Some(id.into()), name: self.name.clone() }
    }

    /// The path inside the store.
    pub fn path(&self) -> String {
        match &self.id {
            Some(id) => format!("{}/{}/{id}/{}", self.tenant, self.state.dir(), self.name),
            None => format!("{}/{}/{}", self.tenant, self.state.dir(), self.name),
        }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.path())
    }
}

/// Bytes as they arrive or are read, in chunks.
pub type ByteStream = futures::stream::BoxStream<'static, std::io::Result<Bytes>>;

/// Longest file name a tenant may stage, in bytes (what filesystems and object keys hold).
pub const MAX_NAME_BYTES: usize = 255;

/// Why a tenant's file name cannot be staged, in words that say what to do; `None` when it can.
pub fn name_problem(name: &str) -> Option<String> {
    if name.is_empty() || name == "." || name == ".." {
        return Some(format!("{name:?} is not a file name; give the file a name"));
    }
    if name.len() > MAX_NAME_BYTES {
        return Some(format!("the name is {} bytes long; at most {MAX_NAME_BYTES} are kept; shorten it", name.len()));
    }
    if let Some(c) = name.chars().find(|c| *c == '/' || *c == '\\' || c.is_control()) {
        return Some(format!("{name:?} holds {c:?}, which a staged file name cannot; rename the file"));
    }
    if is_partial_upload(name) {
        return Some(format!(
            "{name:?} looks like a partial upload (a leading '.' or a .part/.tmp/.partial/.uploading/~ ending) and would never be taken in; rename the file"
        ));
    }
    None
}

/// Whether a name in `incoming/` is a file being written rather than one to ingest: hidden
/// files and the usual suffixes of partial uploads are left alone until renamed.
pub fn is_partial_upload(name: &str) -> bool {
    name.starts_with('.') || [".part", ".tmp", ".partial", ".uploading", "~"].iter().any(|s| name.ends_with(s))
}

/// Why a staging operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StagingError {
    /// The store refused or failed an operation.
    #[error("staging: cannot {operation} {path}: {source}")]
    Store {
        /// What was being done.
        operation: &'static str,
        /// The path concerned.
        path: String,
        /// The store's error.
        source: object_store::Error,
    },
    /// A local filesystem operation failed.
    #[error("staging: cannot {operation} {path}: {source}")]
    Io {
        /// What was being done.
        operation: &'static str,
        /// The path concerned.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The configured staging URL is not usable.
    #[error("staging URL {url:?} is not supported: {reason}")]
    Url {
        /// The URL.
        url: String,
        /// Why, and what to write instead.
        reason: String,
    },
    /// An upload was refused; nothing of it is kept.
    #[error("{name:?} was not staged: {reason}")]
    Refused {
        /// The file's name.
        name: String,
        /// Why, and what to do.
        reason: String,
    },
}

impl StagingError {
    /// Low-cardinality label for metrics.
    pub fn category(&self) -> &'static str {
        match self {
            StagingError::Store { .. } | StagingError::Io { .. } => "staging_io",
            StagingError::Url { .. } => "staging_url",
            StagingError::Refused { .. } => "staging_refused",
        }
    }
}

/// Result of staging operations.
pub type Result<T, E = StagingError> = std::result::Result<T, E>;

/// What the platform needs from the staging store.
#[async_trait]
pub trait Staging: Send + Sync {
    /// Creates the tenant's area (idempotent) and returns the URL where the tenant drops files.
    async fn ensure_area(&self, tenant: &str) -> Result<String>;
    /// Deletes the tenant's area and every file in it; succeeds when it is already gone.
    async fn delete_area(&self, tenant: &str) -> Result<()>;
    /// Drops a file into the tenant's `incoming/` folder, whole: it is written under a partial
    /// upload's name first and renamed when complete, so the manager never sees half of it.
    async fn upload(&self, tenant: &str, name: &str, content: Bytes) -> Result<Location>;
    /// The files in the tenant's `incoming/` folder, partial uploads excluded.
    async fn list_incoming(&self, tenant: &str) -> Result<Vec<StagedFile>>;
    /// A file's content.
    async fn read(&self, location: &Location) -> Result<Bytes>;
    /// Moves a file; the destination's folders are created as needed.
    async fn move_file(&self, from: &Location, to: &Location) -> Result<()>;
    /// Writes `<name>.reason` beside a file.
    async fn write_reason(&self, beside: &Location, text: &str) -> Result<()>;
    /// Writes a file into the tenant's `incoming/` folder from a stream, at most `max_bytes`:
    /// it is written under a hidden partial name and renamed once whole, so the platform never
    /// takes in half a file; a failed or refused upload leaves nothing behind. Returns where it
    /// is and its size.
    async fn upload_stream(
        &self,
        tenant: &str,
        name: &str,
        content: ByteStream,
        max_bytes: u64,
    ) -> Result<(Location, u64)>;
    /// A file's content, as it streams from the store.
    async fn read_stream(&self, location: &Location) -> Result<ByteStream>;
    /// Whether a file exists.
    async fn exists(&self, location: &Location) -> Result<bool>;
    /// The URL an app reads a file from: a link that needs no credentials and lasts
    /// `valid_for` where the store can sign one (an object store's pre-signed URL, at the
    /// endpoint apps reach), else the file's own URL (`file://`, for apps that see the store).
    async fn app_url(&self, location: &Location, valid_for: std::time::Duration) -> Result<String>;
    /// The file's URL in the store.
    fn url(&self, location: &Location) -> String;
    /// Deletes the tenant's files in `state` last changed before `cutoff`; returns how many.
    async fn expire(&self, tenant: &str, state: FileState, cutoff: Timestamp) -> Result<u64>;
}

/// Opens the staging store a URL names.
pub fn open(url: &str) -> Result<ObjectStaging> {
    ObjectStaging::open(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_keep_the_tenants_file_name_under_its_id() {
        let incoming = Location::incoming("acme-air", "flights_2013_01.csv");
        assert_eq!(incoming.path(), "acme-air/incoming/flights_2013_01.csv");
        let moved = incoming.moved(FileState::Processing, "20261124T101500-ab12");
        assert_eq!(moved.path(), "acme-air/processing/20261124T101500-ab12/flights_2013_01.csv");
    }

    #[test]
    fn partial_uploads_are_recognised() {
        for name in [".hidden.csv", "a.csv.part", "a.csv.tmp", "a.csv~"] {
            assert!(is_partial_upload(name), "{name}");
        }
        assert!(!is_partial_upload("flights_2013_01.csv"));
    }
}
