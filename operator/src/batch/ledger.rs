//! The ledger: one record per staged file and one per run, in the platform's database in
//! coredms. It is the batch manager's memory: every decision is recorded here before the file
//! moves, so a restarted operator carries on from it.

use std::collections::HashMap;

use futures::TryStreamExt;
use mongodb::{
    Collection, IndexModel,
    bson::{self, Document, doc},
    options::{FindOneOptions, FindOptions},
};
use serde::{Deserialize, Serialize};

use super::checks::DayUsage;

/// Where a file stands.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FileStatus {
    /// Accepted; waiting for a run.
    Queued,
    /// In a run.
    Running,
    /// Its last run failed; waiting for the next attempt.
    RetryWait,
    /// Ingested.
    Ingested,
    /// Refused by the agreement's checks.
    Rejected,
    /// Failed on every attempt (or with input the app says it cannot ingest).
    DeadLettered,
}

impl FileStatus {
    /// The statuses of accepted files (they count against the day's allowance and against
    /// duplicates).
    pub const ACCEPTED: [FileStatus; 5] = [
        FileStatus::Queued,
        FileStatus::Running,
        FileStatus::RetryWait,
        FileStatus::Ingested,
        FileStatus::DeadLettered,
    ];

    /// The name stored in the ledger.
    pub fn as_str(self) -> &'static str {
        match self {
            FileStatus::Queued => "Queued",
            FileStatus::Running => "Running",
            FileStatus::RetryWait => "RetryWait",
            FileStatus::Ingested => "Ingested",
            FileStatus::Rejected => "Rejected",
            FileStatus::DeadLettered => "DeadLettered",
        }
    }
}

/// One staged file.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct FileRecord {
    /// Ledger id, also the file's folder name once it left `incoming/`.
    #[serde(rename = "_id")]
    pub id: String,
    /// The tenant.
    pub tenant: String,
    /// The app that takes it (none when rejected before one was chosen).
    pub app: Option<String>,
    /// The name the tenant gave it.
    pub name: String,
    /// SHA-256 of its content (empty when refused before it was read).
    pub sha256: String,
    /// Size in bytes.
    pub bytes: i64,
    /// Format judged from the content.
    pub format: Option<String>,
    /// Data records the platform counted in it.
    pub records: Option<i64>,
    /// Where it stands.
    pub status: FileStatus,
    /// Runs it has been in.
    pub attempts: i32,
    /// Its current or last run.
    pub run: Option<String>,
    /// When the platform took it in.
    pub received_at: bson::DateTime,
    /// When it was first accepted or rejected.
    pub decided_at: bson::DateTime,
    /// When its last run started.
    pub started_at: Option<bson::DateTime>,
    /// When it reached its final state.
    pub finished_at: Option<bson::DateTime>,
    /// When the next attempt may start (RetryWait).
    pub next_attempt_at: Option<bson::DateTime>,
    /// Duration of its last run, in milliseconds.
    pub duration_ms: Option<i64>,
    /// Records the app read.
    pub rows_read: Option<i64>,
    /// Documents stored (written now or found from an earlier attempt).
    pub rows_written: Option<i64>,
    /// Of those, documents an earlier attempt had written.
    pub rows_duplicate: Option<i64>,
    /// Records the app refused.
    pub rows_rejected: Option<i64>,
    /// Why it was rejected, or its last error.
    pub reason: Option<String>,
    /// Whether the file is in the folder of its status (false between the ledger write and the
    /// move; a restarted manager finishes the move).
    pub filed: bool,
}

/// One run of an app.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RunRecord {
    /// Run id (the Job name with the kubernetes runtime).
    #[serde(rename = "_id")]
    pub id: String,
    /// The tenant.
    pub tenant: String,
    /// The tenant's namespace.
    pub namespace: String,
    /// The app.
    pub app: String,
    /// The files of the run.
    pub files: Vec<String>,
    /// When it started.
    pub started_at: bson::DateTime,
    /// When it finished.
    pub finished_at: Option<bson::DateTime>,
    /// `Succeeded`, `Failed`, `TimedOut`, `Interrupted`; none while running.
    pub outcome: Option<String>,
    /// The app's exit code.
    pub exit_code: Option<i32>,
    /// Documents stored.
    pub rows_written: Option<i64>,
    /// The app's error or a summary.
    pub message: Option<String>,
    /// Why the run's result document was refused, when it was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result_refused: Option<String>,
    /// The run could not even start (its command or image cannot be had).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub cannot_start: bool,
}

/// Start of the current UTC day, when the daily allowances start again.
pub fn start_of_day() -> bson::DateTime {
    let now = bson::DateTime::now().timestamp_millis();
    let day_ms = 24 * 3600 * 1000;
    bson::DateTime::from_millis(now - now.rem_euclid(day_ms))
}

/// Why a ledger call failed.
#[derive(Debug, thiserror::Error)]
#[error("ledger: cannot {operation}: {source}")]
pub struct LedgerError {
    operation: &'static str,
    source: mongodb::error::Error,
}

impl LedgerError {
    fn wrap(operation: &'static str) -> impl FnOnce(mongodb::error::Error) -> Self {
        move |source| Self { operation, source }
    }
}

/// Result of ledger calls.
pub type Result<T, E = LedgerError> = std::result::Result<T, E>;

/// The ledger's collections.
#[derive(Clone)]
pub struct Ledger {
    files: Collection<FileRecord>,
    runs: Collection<RunRecord>,
}

impl Ledger {
    /// The ledger in `db` as it is, without creating its indexes (no I/O).
    pub fn attach(db: &mongodb::Database) -> Self {
        Self { files: db.collection("files"), runs: db.collection("runs") }
    }

    /// The ledger in `database`, with its indexes.
    pub async fn open(client: &mongodb::Client, database: &str) -> Result<Self> {
        let db = client.database(database);
        let files = db.collection::<FileRecord>("files");
        let runs = db.collection::<RunRecord>("runs");
        for keys in [doc! { "tenant": 1, "status": 1 }, doc! { "tenant": 1, "sha256": 1 }, doc! { "decidedAt": 1 }] {
            files
                .create_index(IndexModel::builder().keys(keys).build())
                .await
                .map_err(LedgerError::wrap("index files"))?;
        }
        runs.create_index(IndexModel::builder().keys(doc! { "outcome": 1 }).build())
            .await
            .map_err(LedgerError::wrap("index runs"))?;
        Ok(Self { files, runs })
    }

    /// Records a new file.
    pub async fn insert_file(&self, record: &FileRecord) -> Result<()> {
        self.files.insert_one(record).await.map(drop).map_err(LedgerError::wrap("record a file"))
    }

    /// Applies `$set` fields to a file's record.
    pub async fn update_file(&self, id: &str, set: Document) -> Result<()> {
        self.files
            .update_one(doc! { "_id": id }, doc! { "$set": set })
            .await
            .map(drop)
            .map_err(LedgerError::wrap("update a file"))
    }

    /// Files matching `filter`, oldest decision first.
    pub async fn files(&self, filter: Document) -> Result<Vec<FileRecord>> {
        let options = FindOptions::builder().sort(doc! { "decidedAt": 1 }).build();
        let cursor = self.files.find(filter).with_options(options).await.map_err(LedgerError::wrap("find files"))?;
        cursor.try_collect().await.map_err(LedgerError::wrap("read files"))
    }

    /// How many files match `filter`.
    pub async fn count_files(&self, filter: Document) -> Result<u64> {
        self.files.count_documents(filter).await.map_err(LedgerError::wrap("count files"))
    }

    /// How many files of `app` of `tenant` are in each status, in one query.
    pub async fn file_counts(&self, tenant: &str, app: &str) -> Result<HashMap<String, u64>> {
        let pipeline = [
            doc! { "$match": { "tenant": tenant, "app": app } },
            doc! { "$group": { "_id": "$status", "n": { "$sum": 1 } } },
        ];
        let cursor = self.files.aggregate(pipeline).await.map_err(LedgerError::wrap("count files by status"))?;
        let groups: Vec<Document> = cursor.try_collect().await.map_err(LedgerError::wrap("read file counts"))?;
        Ok(groups
            .into_iter()
            .filter_map(|g| {
                let status = g.get_str("_id").ok()?.to_owned();
                let n = g.get_i32("n").map(i64::from).or_else(|_| g.get_i64("n")).ok()?;
                Some((status, u64::try_from(n).unwrap_or(0)))
            })
            .collect())
    }

    /// How many runs match `filter`.
    pub async fn count_runs(&self, filter: Document) -> Result<u64> {
        self.runs.count_documents(filter).await.map_err(LedgerError::wrap("count runs"))
    }

    /// The run that started last among those matching `filter`.
    pub async fn last_run(&self, filter: Document) -> Result<Option<RunRecord>> {
        let options = FindOneOptions::builder().sort(doc! { "startedAt": -1 }).build();
        self.runs.find_one(filter).with_options(options).await.map_err(LedgerError::wrap("find the last run"))
    }

    /// An accepted file of `tenant` with this content, if any.
    pub async fn accepted_with_hash(&self, tenant: &str, sha256: &str) -> Result<Option<FileRecord>> {
        let statuses: Vec<&str> = FileStatus::ACCEPTED.iter().map(|s| s.as_str()).collect();
        let filter = doc! { "tenant": tenant, "sha256": sha256, "status": { "$in": statuses } };
        self.files.find_one(filter).await.map_err(LedgerError::wrap("look for duplicates"))
    }

    /// Files and bytes of `tenant` accepted since `since`.
    pub async fn accepted_since(&self, tenant: &str, since: bson::DateTime) -> Result<DayUsage> {
        let statuses: Vec<&str> = FileStatus::ACCEPTED.iter().map(|s| s.as_str()).collect();
        let filter = doc! { "tenant": tenant, "decidedAt": { "$gte": since }, "status": { "$in": statuses } };
        let files = self.files(filter).await?;
        Ok(DayUsage { files: files.len() as u64, bytes: files.iter().map(|f| f.bytes.max(0) as u64).sum() })
    }

    /// Records a run.
    pub async fn insert_run(&self, run: &RunRecord) -> Result<()> {
        self.runs.insert_one(run).await.map(drop).map_err(LedgerError::wrap("record a run"))
    }

    /// Records how a run ended.
    pub async fn finish_run(&self, id: &str, set: Document) -> Result<()> {
        self.runs
            .update_one(doc! { "_id": id }, doc! { "$set": set })
            .await
            .map(drop)
            .map_err(LedgerError::wrap("finish a run"))
    }

    /// Runs matching `filter`, newest first.
    pub async fn runs(&self, filter: Document) -> Result<Vec<RunRecord>> {
        let options = FindOptions::builder().sort(doc! { "startedAt": -1 }).build();
        let cursor = self.runs.find(filter).with_options(options).await.map_err(LedgerError::wrap("find runs"))?;
        cursor.try_collect().await.map_err(LedgerError::wrap("read runs"))
    }
}
