//! The monitor's records in the platform database: every report the sidecars published and
//! every decision the monitor took, for the status of apps, the CLI and later analysis.

use futures::TryStreamExt;
use mongodb::{
    Collection, Database, IndexModel,
    bson::{self, Document, doc},
    error::ErrorKind,
    options::{FindOptions, InsertManyOptions},
};
use serde::{Deserialize, Serialize};

/// A report as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReportRecord {
    /// Where it was read: `topic/partition/offset`, so reading it twice stores it once.
    #[serde(rename = "_id")]
    pub id: String,
    /// The tenant (from the topic, not from the report).
    pub tenant: String,
    /// The app.
    pub app: String,
    /// The replica.
    pub instance: String,
    /// Window start.
    pub window_start: bson::DateTime,
    /// Window end.
    pub window_end: bson::DateTime,
    /// Messages in the window.
    pub messages: i64,
    /// Bytes in the window.
    pub bytes: i64,
    /// Messages per second.
    pub processing_rate: f64,
    /// Bytes per second.
    pub throughput: f64,
    /// Average ingestion time, in milliseconds.
    pub avg_ingestion_ms: f64,
    /// Messages dead-lettered in the window.
    pub dead_lettered: i64,
    /// Messages since the replica started.
    pub total_messages: i64,
    /// Bytes since the replica started.
    pub total_bytes: i64,
    /// The app sent nothing in the window.
    pub silent: bool,
}

/// A decision as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DecisionRecord {
    /// The tenant.
    pub tenant: String,
    /// The app's namespace.
    pub namespace: String,
    /// The app.
    pub app: String,
    /// `ScaleUp`, `ScaleDown`, `Restart` or `Notify`.
    pub action: String,
    /// Why.
    pub reason: String,
    /// Replicas before.
    pub from_replicas: i64,
    /// Replicas after.
    pub to_replicas: i64,
    /// When.
    pub decided_at: bson::DateTime,
}

/// Whether every write error of an insert is a duplicate key (the document is there already).
fn only_duplicates(error: &mongodb::error::Error) -> bool {
    match &*error.kind {
        ErrorKind::InsertMany(failure) => {
            failure.write_concern_error.is_none()
                && failure.write_errors.as_ref().is_some_and(|errors| errors.iter().all(|w| w.code == 11000))
        }
        ErrorKind::Write(mongodb::error::WriteFailure::WriteError(w)) => w.code == 11000,
        _ => false,
    }
}

/// A store call failed.
#[derive(Debug, thiserror::Error)]
#[error("monitor store: cannot {operation}: {source}")]
pub struct StoreError {
    operation: &'static str,
    source: mongodb::error::Error,
}

fn wrap(operation: &'static str) -> impl FnOnce(mongodb::error::Error) -> StoreError {
    move |source| StoreError { operation, source }
}

/// The `reports` and `decisions` collections.
#[derive(Clone)]
pub struct MonitorStore {
    reports: Collection<ReportRecord>,
    decisions: Collection<DecisionRecord>,
}

impl MonitorStore {
    /// The collections in the platform database, with their indexes.
    pub async fn open(db: &Database) -> Result<Self, StoreError> {
        let reports = db.collection::<ReportRecord>("reports");
        let decisions = db.collection::<DecisionRecord>("decisions");
        let by_app = IndexModel::builder().keys(doc! { "tenant": 1, "app": 1, "windowEnd": 1 }).build();
        reports.create_index(by_app).await.map_err(wrap("index reports"))?;
        let by_time = IndexModel::builder().keys(doc! { "tenant": 1, "app": 1, "decidedAt": 1 }).build();
        decisions.create_index(by_time).await.map_err(wrap("index decisions"))?;
        Ok(Self { reports, decisions })
    }

    /// Stores reports; one already stored (same id) is left as it is.
    pub async fn insert_reports(&self, reports: &[ReportRecord]) -> Result<(), StoreError> {
        if reports.is_empty() {
            return Ok(());
        }
        let unordered = InsertManyOptions::builder().ordered(false).build();
        match self.reports.insert_many(reports).with_options(unordered).await {
            Ok(_) => Ok(()),
            Err(e) if only_duplicates(&e) => Ok(()),
            Err(e) => Err(wrap("store reports")(e)),
        }
    }

    /// Reports matching `filter`, oldest first, at most `limit` (the newest ones).
    pub async fn reports(&self, filter: Document, limit: i64) -> Result<Vec<ReportRecord>, StoreError> {
        let options = FindOptions::builder().sort(doc! { "windowEnd": -1 }).limit(limit).build();
        let mut found: Vec<ReportRecord> = self
            .reports
            .find(filter)
            .with_options(options)
            .await
            .map_err(wrap("read reports"))?
            .try_collect()
            .await
            .map_err(wrap("read reports"))?;
        found.reverse();
        Ok(found)
    }

    /// Records a decision.
    pub async fn insert_decision(&self, decision: &DecisionRecord) -> Result<(), StoreError> {
        self.decisions.insert_one(decision).await.map(drop).map_err(wrap("record a decision"))
    }

    /// Decisions matching `filter`, oldest first, at most `limit` (the newest ones).
    pub async fn decisions(&self, filter: Document, limit: i64) -> Result<Vec<DecisionRecord>, StoreError> {
        let options = FindOptions::builder().sort(doc! { "decidedAt": -1 }).limit(limit).build();
        let mut found: Vec<DecisionRecord> = self
            .decisions
            .find(filter)
            .with_options(options)
            .await
            .map_err(wrap("read decisions"))?
            .try_collect()
            .await
            .map_err(wrap("read decisions"))?;
        found.reverse();
        Ok(found)
    }
}
