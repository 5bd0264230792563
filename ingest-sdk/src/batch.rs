//! The batch runner: everything of a batch app except its wrangling. It reads the run's
//! configuration, reads each input file record by record, hands each record to the app's
//! wrangle hook, writes the documents through the idempotent [`Writer`], writes the
//! [`RunResult`] to the result file and answers with the contract's exit code.
//!
//! ```no_run
//! use mysimbdp_ingest_sdk::{batch, bson::doc};
//!
//! #[tokio::main]
//! async fn main() -> std::process::ExitCode {
//!     batch::run_batch(|file, record| {
//!         let code = record.get("carrier").ok_or("no carrier")?;
//!         Ok(doc! { "_id": code, "name": record.get("name"), "file": &file.name })
//!     })
//!     .await
//!     .exit_code()
//! }
//! ```
//!
//! Reading and wrangling run on a blocking thread of their own, so the app's CPU work never
//! stalls the runtime that talks to coredms; the writer keeps a few batches in flight meanwhile.

use std::{path::Path, process::ExitCode, time::Instant};

use mongodb::bson::{Document, doc};
use tracing::{error, info, warn};

use crate::{
    config::{BatchConfig, ConfigError},
    contract::{FileResult, InputFile, MAX_REJECTIONS, Rejection, RunResult, env, exit},
    read::{FileError, ReadError, Record, Records},
    write::{Counts, WriteError, Writer, WriterOptions},
};

/// Limit of the result document: the Kubernetes termination message's size.
const RESULT_LIMIT: usize = 4096;
/// Longest rejection reason kept in the result, so that several fit in [`RESULT_LIMIT`].
const MAX_REASON: usize = 240;

/// How a run ended: the result document (already written to the result file) and the exit code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// What the run did.
    pub result: RunResult,
    /// One of the [`exit`] codes.
    pub code: i32,
}

impl Outcome {
    /// The exit code to return from `main`.
    pub fn exit_code(&self) -> ExitCode {
        ExitCode::from(u8::try_from(self.code).unwrap_or(1))
    }

    fn failed(code: i32, error: String, started: Instant) -> Self {
        let result = RunResult { error: Some(error), duration_ms: elapsed_ms(started), ..RunResult::default() };
        Self { result, code }
    }
}

/// A prepared batch run: its configuration and a coredms client of the tenant's database.
pub struct Batch {
    config: BatchConfig,
    client: mongodb::Client,
    writer: WriterOptions,
    required_fields: Vec<String>,
    started: Instant,
}

impl Batch {
    /// Prepares a run from the process environment. On error the result file (when
    /// `MYSIMBDP_RESULT_FILE` is set) already holds the error; return the outcome's exit code.
    pub async fn from_env() -> Result<Self, Outcome> {
        let started = Instant::now();
        match BatchConfig::from_env() {
            Ok(config) => Self::new(config).await,
            Err(error) => {
                let path = std::env::var_os(env::RESULT_FILE);
                Err(config_failed(&error, path.as_deref().map(Path::new), started))
            }
        }
    }

    /// Prepares a run from a configuration. On error the result file already holds the error.
    pub async fn new(config: BatchConfig) -> Result<Self, Outcome> {
        let started = Instant::now();
        match config.coredms_client().await {
            Ok(client) => {
                Ok(Self { config, client, writer: WriterOptions::default(), required_fields: Vec::new(), started })
            }
            Err(error) => Err(config_failed(&error, Some(&config.result_file), started)),
        }
    }

    /// The run's configuration.
    pub fn config(&self) -> &BatchConfig {
        &self.config
    }

    /// The tenant's database, e.g. to load reference data before the run.
    pub fn database(&self) -> mongodb::Database {
        self.client.database(&self.config.coredms.database)
    }

    /// Sets the writer's batch size and parallelism.
    pub fn writer_options(mut self, options: WriterOptions) -> Self {
        self.writer = options;
        self
    }

    /// Columns every CSV input must have: a file without one of them is bad input (exit 2), and
    /// the run ingests nothing. JSON-lines records are checked by the wrangle hook.
    pub fn require_fields<S: AsRef<str>>(mut self, fields: impl IntoIterator<Item = S>) -> Self {
        self.required_fields = fields.into_iter().map(|f| f.as_ref().to_owned()).collect();
        self
    }

    /// Ends the run before any file is read, e.g. when reference data the app needs cannot be
    /// loaded; writes the result file. Use [`exit::RETRY`] when a retry may succeed.
    pub fn abort(self, code: i32, error: impl Into<String>) -> Outcome {
        let outcome = Outcome::failed(code, error.into(), self.started);
        publish(&outcome, &self.config.result_file);
        outcome
    }

    /// Runs the batch: every input file, record by record, through `wrangle` into the
    /// configured collection. `wrangle` returns the document of a record, or why the record is
    /// rejected (counted, and the first few reported, but not a failure of the run).
    pub async fn run<W>(self, wrangle: W) -> Outcome
    where
        W: FnMut(&InputFile, Record) -> Result<Document, String> + Send + 'static,
    {
        let database = self.database();
        let outcome = match database.run_command(doc! { "ping": 1 }).await {
            Err(e) => Outcome::failed(
                exit::RETRY,
                format!(
                    "coredms at {} is not reachable as {}: {e}",
                    self.config.coredms.url, self.config.coredms.username
                ),
                self.started,
            ),
            Ok(_) => {
                let collection = database.collection::<Document>(&self.config.collection);
                let writer = Writer::start(&collection, self.writer);
                let input = self.config.input.clone();
                let required = self.required_fields.clone();
                let reading = tokio::task::spawn_blocking(move || read_files(&input, &required, wrangle, writer)).await;
                match reading {
                    Ok(read) => finish(read, self.started).await,
                    Err(e) => {
                        let why = e.try_into_panic().ok().and_then(|p| {
                            p.downcast_ref::<&str>()
                                .map(|s| s.to_string())
                                .or_else(|| p.downcast_ref::<String>().cloned())
                        });
                        Outcome::failed(
                            exit::RETRY,
                            format!("the app failed while wrangling (a bug in the app): {}", why.unwrap_or_default()),
                            self.started,
                        )
                    }
                }
            }
        };
        publish(&outcome, &self.config.result_file);
        outcome
    }
}

/// Runs a batch configured by the process environment with `wrangle`; see [`Batch::run`].
pub async fn run_batch<W>(wrangle: W) -> Outcome
where
    W: FnMut(&InputFile, Record) -> Result<Document, String> + Send + 'static,
{
    match Batch::from_env().await {
        Ok(batch) => batch.run(wrangle).await,
        Err(outcome) => outcome,
    }
}

/// What reading the files gave, before the writer's counts are known.
struct Read {
    writer: Writer,
    files: Vec<FileResult>,
    rejections: Vec<Rejection>,
    bad_files: Vec<String>,
    write_error: Option<WriteError>,
    /// A file could not be fetched for a reason that may pass (its server is down).
    unreachable: Option<String>,
}

/// Why a file of a run cannot be read.
enum Unreadable {
    /// Not now (its server is unreachable): the run is retried.
    Now(String),
    /// Never as it is (missing, malformed, refused): the files are dead-lettered.
    Never(String),
}

fn read_files<W>(input: &[InputFile], required: &[String], mut wrangle: W, mut writer: Writer) -> Read
where
    W: FnMut(&InputFile, Record) -> Result<Document, String>,
{
    let mut files = Vec::with_capacity(input.len());
    let mut rejections = Vec::new();
    let mut bad_files = Vec::new();
    let mut write_error = None;
    let mut unreachable = None;
    // Every file is checked before any is ingested: the platform dead-letters all the files of a
    // run that answers "bad input", so such a run should have written nothing.
    for file in input {
        match open_checked(file, required) {
            Ok(_) => {}
            Err(Unreadable::Now(error)) => {
                warn!(file = %file.name, %error, "file cannot be fetched now; the run is retried");
                unreachable.get_or_insert(error);
            }
            Err(Unreadable::Never(error)) => {
                warn!(file = %file.name, %error, "file not ingestible");
                bad_files.push(error);
            }
        }
    }
    if unreachable.is_some() || !bad_files.is_empty() {
        let files = input.iter().map(|f| FileResult { name: f.name.clone(), ..FileResult::default() }).collect();
        return Read { writer, files, rejections, bad_files, write_error, unreachable };
    }
    'files: for (part, file) in input.iter().enumerate() {
        let started = Instant::now();
        let mut result = FileResult { name: file.name.clone(), ..FileResult::default() };
        let mut reject = |result: &mut FileResult, line: u64, reason: String| {
            result.rows_rejected += 1;
            if rejections.len() < MAX_REJECTIONS {
                rejections.push(Rejection { file: file.name.clone(), line, reason: shorten(reason) });
            }
        };
        let Ok(mut records) = open_checked(file, required) else {
            // Checked above; the file changed or vanished since.
            bad_files.push(format!("{}: no longer readable", file.name));
            files.push(result);
            continue;
        };
        for item in records.by_ref() {
            match item {
                Ok(record) => {
                    result.rows_read += 1;
                    let line = record.line();
                    match wrangle(file, record) {
                        Ok(document) => match writer.write_blocking(part, &document) {
                            Ok(()) => {}
                            Err(WriteError::Encode { reason, .. }) => reject(&mut result, line, reason),
                            Err(e) => {
                                write_error = Some(e);
                                result.bytes = records.bytes_read();
                                files.push(result);
                                break 'files;
                            }
                        },
                        Err(reason) => reject(&mut result, line, reason),
                    }
                }
                Err(ReadError::Malformed { line, reason, .. }) => {
                    result.rows_read += 1;
                    reject(&mut result, line, reason);
                }
                Err(e @ ReadError::Io { .. }) => {
                    warn!(file = %file.name, error = %e, "file read failed");
                    bad_files.push(e.to_string());
                    break;
                }
            }
        }
        result.bytes = records.bytes_read();
        // The file's last documents leave now rather than with the next file's.
        if let Err(e) = writer.flush_blocking() {
            write_error = Some(e);
            files.push(result);
            break;
        }
        info!(
            file = %file.name,
            rows = result.rows_read,
            rejected = result.rows_rejected,
            bytes = result.bytes,
            seconds = started.elapsed().as_secs_f64(),
            "file read"
        );
        files.push(result);
    }
    Read { writer, files, rejections, bad_files, write_error, unreachable }
}

/// Opens a file and checks its header has the `required` columns.
fn open_checked(file: &InputFile, required: &[String]) -> Result<Records, Unreadable> {
    let records = Records::open(file).map_err(|e| match e {
        FileError::Fetch { retryable: true, .. } => Unreadable::Now(e.to_string()),
        other => Unreadable::Never(other.to_string()),
    })?;
    if let Some(header) = records.header() {
        let missing: Vec<&str> = required.iter().filter(|f| header.position(f).is_none()).map(String::as_str).collect();
        if !missing.is_empty() {
            return Err(Unreadable::Never(format!(
                "{}: missing column(s) {} in the header; the app needs them, so the run ingested nothing",
                file.name,
                missing.join(", ")
            )));
        }
    }
    Ok(records)
}

async fn finish(read: Read, started: Instant) -> Outcome {
    let Read { writer, mut files, rejections, bad_files, write_error, unreachable } = read;
    let written = writer.finish().await;
    let counts = match &written {
        Ok(counts) => counts.as_slice(),
        Err(_) => &[],
    };
    for (file, count) in files.iter_mut().zip(counts.iter().chain(std::iter::repeat(&Counts::default()))) {
        file.rows_written = count.written;
        file.rows_duplicate = count.duplicate;
    }
    // A failed write is the run's failure even when reading had failed too: the run did not
    // finish, and a retry tells what else is wrong.
    let failed = written.err().map(|e| e.to_string()).or(write_error.map(|e| e.to_string())).or(unreachable);
    let (code, error) = match (failed, bad_files.is_empty()) {
        (Some(e), _) => (exit::RETRY, Some(e)),
        (None, false) => (exit::BAD_INPUT, Some(bad_files.join("; "))),
        (None, true) => (exit::OK, None),
    };
    let result = RunResult { files, duration_ms: elapsed_ms(started), rejections, error };
    Outcome { result, code }
}

fn config_failed(error: &ConfigError, result_file: Option<&Path>, started: Instant) -> Outcome {
    // The environment is the platform's doing, not the tenant's data: a retry (after the
    // platform is fixed) may succeed, so the files are not dead-lettered at once.
    let outcome = Outcome::failed(exit::RETRY, error.to_string(), started);
    match result_file {
        Some(path) => publish(&outcome, path),
        None => error!(error = %error, "batch run not configured, and no result file to report it in"),
    }
    outcome
}

/// Writes the result document and logs the outcome.
fn publish(outcome: &Outcome, path: &Path) {
    let result = &outcome.result;
    match &result.error {
        None => info!(
            rows = result.rows_read(),
            stored = result.rows_stored(),
            rejected = result.rows_rejected(),
            duration_ms = result.duration_ms,
            "batch run done"
        ),
        Some(e) => error!(code = outcome.code, error = %e, "batch run failed"),
    }
    if let Err(e) = std::fs::write(path, result.to_json_within(RESULT_LIMIT)) {
        // The exit code still tells the platform what happened.
        error!(path = %path.display(), error = %e, "cannot write the result file");
    }
}

fn shorten(mut reason: String) -> String {
    if reason.len() > MAX_REASON {
        let mut end = MAX_REASON;
        while !reason.is_char_boundary(end) {
            end -= 1;
        }
        reason.truncate(end);
        reason.push('…');
    }
    reason
}

fn elapsed_ms(started: Instant) -> u64 {
    u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_reasons_are_cut_on_a_character_boundary() {
        let reason = "é".repeat(MAX_REASON);
        let short = shorten(reason);
        assert!(short.len() <= MAX_REASON + '…'.len_utf8());
        assert!(short.ends_with('…'));
        assert_eq!(shorten("short".into()), "short");
    }
}
