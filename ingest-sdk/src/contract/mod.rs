//! The contract between the platform and an ingest app: the environment a run or replica
//! receives, the exit codes it answers with, and the result document a batch run writes.
//! The README of this crate says the same in plain words. [`decode`] is how the platform reads
//! what apps hand it: checked against the contract's bounds.

use serde::{Deserialize, Serialize};

pub mod decode;
#[cfg(test)]
mod props;

pub use decode::Refused;

/// Environment variable names. Every name starts with `MYSIMBDP_`; tenants cannot set such
/// variables themselves.
pub mod env {
    /// The tenant's name.
    pub const TENANT: &str = "MYSIMBDP_TENANT";
    /// The app's name (the custom resource's).
    pub const APP: &str = "MYSIMBDP_APP";
    /// Unique id of this run (batch) or replica (stream).
    pub const RUN_ID: &str = "MYSIMBDP_RUN_ID";
    /// The tenant's delivery guarantee: `AtMostOnce`, `AtLeastOnce` or `EffectivelyOnce`.
    pub const DELIVERY: &str = "MYSIMBDP_DELIVERY";
    /// Batch: the files of this run, a JSON array of [`InputFile`](super::InputFile).
    pub const INPUT: &str = "MYSIMBDP_INPUT";
    /// Batch: where to write the [`RunResult`](super::RunResult) JSON document.
    pub const RESULT_FILE: &str = "MYSIMBDP_RESULT_FILE";
    /// The collection to write, in the tenant's database.
    pub const COLLECTION: &str = "MYSIMBDP_COLLECTION";

    /// coredms URL, without credentials.
    pub const COREDMS_URL: &str = "MYSIMBDP_COREDMS_URL";
    /// The tenant's coredms user.
    pub const COREDMS_USERNAME: &str = "MYSIMBDP_COREDMS_USERNAME";
    /// Its password.
    pub const COREDMS_PASSWORD: &str = "MYSIMBDP_COREDMS_PASSWORD";
    /// The tenant's database.
    pub const COREDMS_DATABASE: &str = "MYSIMBDP_COREDMS_DATABASE";
    /// Authentication mechanism (`PLAIN`, or empty to negotiate).
    pub const COREDMS_AUTH_MECHANISM: &str = "MYSIMBDP_COREDMS_AUTH_MECHANISM";
    /// Authentication database (`$external` for PLAIN).
    pub const COREDMS_AUTH_SOURCE: &str = "MYSIMBDP_COREDMS_AUTH_SOURCE";

    /// Kafka bootstrap servers.
    pub const KAFKA_BOOTSTRAP: &str = "MYSIMBDP_KAFKA_BOOTSTRAP";
    /// `SASL_PLAINTEXT` or `SASL_SSL`.
    pub const KAFKA_SECURITY_PROTOCOL: &str = "MYSIMBDP_KAFKA_SECURITY_PROTOCOL";
    /// SASL mechanism (`SCRAM-SHA-512`).
    pub const KAFKA_SASL_MECHANISM: &str = "MYSIMBDP_KAFKA_SASL_MECHANISM";
    /// The tenant's Kafka user.
    pub const KAFKA_USERNAME: &str = "MYSIMBDP_KAFKA_USERNAME";
    /// Its password.
    pub const KAFKA_PASSWORD: &str = "MYSIMBDP_KAFKA_PASSWORD";
    /// With `SASL_SSL`: PEM certificates of the CA that signed the brokers' certificates, when
    /// the platform uses a private CA (unset: trust the system's CAs).
    pub const KAFKA_SSL_CA_PEM: &str = "MYSIMBDP_KAFKA_SSL_CA_PEM";
    /// Prefix of every topic and consumer group of the tenant (`<tenant>.`).
    pub const KAFKA_PREFIX: &str = "MYSIMBDP_KAFKA_PREFIX";
    /// Stream: topics to consume, full names, comma-separated.
    pub const TOPICS: &str = "MYSIMBDP_TOPICS";
    /// Stream: the consumer group, full name.
    pub const CONSUMER_GROUP: &str = "MYSIMBDP_CONSUMER_GROUP";
    /// Stream: the topic for messages that cannot be ingested.
    pub const DEAD_LETTER_TOPIC: &str = "MYSIMBDP_DEAD_LETTER_TOPIC";
    /// Stream: `host:port` of the metrics sidecar.
    pub const SIDECAR_ADDR: &str = "MYSIMBDP_SIDECAR_ADDR";
    /// Stream: how often measurements are reported, in milliseconds.
    pub const REPORT_INTERVAL_MS: &str = "MYSIMBDP_REPORT_INTERVAL_MS";
    /// Stream: the topic the sidecar publishes reports to, full name (`<tenant>.mysimbdp.reports`).
    pub const REPORTS_TOPIC: &str = "MYSIMBDP_REPORTS_TOPIC";
    /// Stream: this replica's name (the pod's name with the kubernetes runtime).
    pub const INSTANCE: &str = "MYSIMBDP_INSTANCE";
}

/// Headers of a message a stream app puts on the dead-letter topic (`MYSIMBDP_DEAD_LETTER_TOPIC`).
/// The dead letter keeps the original message's key, value and headers unchanged; these headers
/// come after the original ones (a reader takes the last header of a name). Values are UTF-8
/// text.
pub mod dead_letter {
    /// Why the message could not be ingested, e.g. `the value is not JSON: expected value at line
    /// 1 column 1` or the app's own reason.
    pub const ERROR: &str = "mysimbdp.error";
    /// The topic the message was consumed from.
    pub const SOURCE_TOPIC: &str = "mysimbdp.source.topic";
    /// Its partition, decimal.
    pub const SOURCE_PARTITION: &str = "mysimbdp.source.partition";
    /// Its offset, decimal.
    pub const SOURCE_OFFSET: &str = "mysimbdp.source.offset";
    /// Its timestamp, milliseconds since the epoch, decimal; absent when it had none.
    pub const SOURCE_TIMESTAMP: &str = "mysimbdp.source.timestamp";
    /// The app that refused it.
    pub const APP: &str = "mysimbdp.app";
    /// The replica that refused it.
    pub const INSTANCE: &str = "mysimbdp.instance";
}

/// Exit codes of a batch run.
pub mod exit {
    /// Every input file was processed (rows rejected by the app's own checks are counted in
    /// the result, not failures).
    pub const OK: i32 = 0;
    /// The run failed and may succeed when retried (coredms unreachable, out of memory...).
    pub const RETRY: i32 = 1;
    /// The input cannot be ingested; retrying will not help, so the files are dead-lettered at
    /// once with the result's `error`.
    pub const BAD_INPUT: i32 = 2;
}

/// A data file format, as the platform judged it from the content.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// CSV with a header row.
    Csv,
    /// One JSON object per line.
    JsonLines,
}

/// One file of a batch run.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct InputFile {
    /// Where to read it: `file:///...` (or `s3://bucket/key` with an object-store staging).
    pub url: String,
    /// The name the tenant gave it.
    pub name: String,
    /// Its format.
    pub format: Format,
    /// Its size in bytes.
    pub bytes: u64,
    /// SHA-256 of its content, hex.
    pub sha256: String,
}

/// What one file of a run gave.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase", default)]
pub struct FileResult {
    /// The file's name.
    pub name: String,
    /// Records read.
    pub rows_read: u64,
    /// Documents written now.
    pub rows_written: u64,
    /// Documents that already existed (an earlier, interrupted attempt wrote them).
    pub rows_duplicate: u64,
    /// Records the app refused.
    pub rows_rejected: u64,
    /// Bytes read.
    pub bytes: u64,
}

impl FileResult {
    /// Documents of the file now stored: written by this run or found already written
    /// (saturating).
    pub fn rows_stored(&self) -> u64 {
        self.rows_written.saturating_add(self.rows_duplicate)
    }
}

/// A record the app refused, and why.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Rejection {
    /// The file.
    pub file: String,
    /// 1-based line (CSV: the header is line 1).
    pub line: u64,
    /// Why.
    pub reason: String,
}

/// The result document a batch run writes to `MYSIMBDP_RESULT_FILE` before it exits. With the
/// kubernetes runtime that file is the container's termination message, limited to 4096 bytes,
/// so `rejections` holds only the first few.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase", default)]
pub struct RunResult {
    /// Per file.
    pub files: Vec<FileResult>,
    /// Wall time of the run, in milliseconds.
    pub duration_ms: u64,
    /// The first rejected records.
    pub rejections: Vec<Rejection>,
    /// Why the run failed, when it did.
    pub error: Option<String>,
}

/// Most rejections a result carries.
pub const MAX_REJECTIONS: usize = 10;

impl RunResult {
    /// Records read over all files (saturating).
    pub fn rows_read(&self) -> u64 {
        self.files.iter().fold(0, |sum, f| sum.saturating_add(f.rows_read))
    }

    /// Documents written over all files, including those found already written (saturating).
    pub fn rows_stored(&self) -> u64 {
        self.files.iter().fold(0, |sum, f| sum.saturating_add(f.rows_stored()))
    }

    /// Records rejected over all files (saturating).
    pub fn rows_rejected(&self) -> u64 {
        self.files.iter().fold(0, |sum, f| sum.saturating_add(f.rows_rejected))
    }

    /// The result as compact JSON, with rejections dropped until it fits in `limit` bytes.
    pub fn to_json_within(&self, limit: usize) -> String {
        let mut result = self.clone();
        loop {
            let text = serde_json::to_string(&result).unwrap_or_else(|_| "{}".into());
            if text.len() <= limit || result.rejections.is_empty() {
                return text;
            }
            result.rejections.pop();
        }
    }
}

/// What a stream app tells its metrics sidecar, one JSON object per line (UTF-8, ending with
/// `\n`, at most [`MAX_MEASUREMENT_LINE`] bytes) over a TCP connection to
/// `MYSIMBDP_SIDECAR_ADDR`. An app sends one at least every report interval (the SDK sends one
/// every half interval), with zero counts when it had nothing to do, so that the sidecar can tell
/// an idle app from a hung one; a hung app sends none. Counts are deltas: each line covers the
/// time since the previous line. Unknown fields are ignored, missing ones read as zero.
///
/// ```json
/// {"messages":412,"bytes":98311,"ingestionMs":5120.5,"deadLettered":3}
/// ```
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct Measurement {
    /// Messages ingested (written, or found already written) since the previous measurement.
    pub messages: u64,
    /// Their bytes (Kafka message values).
    pub bytes: u64,
    /// Sum of their ingestion times (from receipt by the app until stored), in milliseconds.
    pub ingestion_ms: f64,
    /// Messages sent to the dead-letter topic since the previous measurement.
    pub dead_lettered: u64,
}

/// Longest measurement line a sidecar accepts, in bytes; a longer one closes the connection.
pub const MAX_MEASUREMENT_LINE: usize = 64 * 1024;

/// What a sidecar publishes to the monitor each report interval, as JSON on the topic
/// `<tenant>.mysimbdp.reports`, keyed by the app's name. The monitor trusts the tenant only from
/// the topic, never from the report.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    /// The tenant.
    pub tenant: String,
    /// The app (its `StreamIngestApp`'s name).
    pub app: String,
    /// The replica that reported (pod name, or the local runtime's replica id).
    pub instance: String,
    /// Start of the measurement window, RFC 3339.
    pub window_start: String,
    /// End of the measurement window, RFC 3339.
    pub window_end: String,
    /// When this replica started ingesting, RFC 3339.
    pub ingestion_start: String,
    /// Messages ingested in the window.
    pub messages: u64,
    /// Bytes ingested in the window.
    pub bytes: u64,
    /// Messages per second over the window.
    pub processing_rate: f64,
    /// Bytes per second over the window.
    pub throughput: f64,
    /// Average ingestion time of the window's messages, in milliseconds (0 when none).
    pub avg_ingestion_ms: f64,
    /// Messages dead-lettered in the window.
    pub dead_lettered: u64,
    /// Messages ingested since `ingestion_start`.
    pub total_messages: u64,
    /// Bytes ingested since `ingestion_start`.
    pub total_bytes: u64,
    /// The app sent no measurement in the window: it is hung, or gone.
    pub silent: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn result_round_trips_and_fits_a_termination_message() {
        let result = RunResult {
            files: vec![FileResult {
                name: "a.csv".into(),
                rows_read: 10,
                rows_written: 7,
                rows_duplicate: 2,
                rows_rejected: 1,
                bytes: 99,
            }],
            duration_ms: 12,
            rejections: (0..MAX_REJECTIONS as u64)
                .map(|line| Rejection { file: "a.csv".into(), line, reason: "x".repeat(600) })
                .collect(),
            error: None,
        };
        assert_eq!((result.rows_read(), result.rows_stored(), result.rows_rejected()), (10, 9, 1));
        let text = result.to_json_within(4096);
        assert!(text.len() <= 4096);
        let back: RunResult = serde_json::from_str(&text).unwrap();
        assert_eq!(back.files, result.files);
        assert!(back.rejections.len() < MAX_REJECTIONS);
        let json: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(json["files"][0]["rowsDuplicate"], 2, "field names are camelCase: {text}");
    }

    #[test]
    fn input_is_a_json_array_of_files() {
        let input: Vec<InputFile> = serde_json::from_str(
            r#"[{"url":"file:///s/a.csv","name":"a.csv","format":"Csv","bytes":3,"sha256":"ab"}]"#,
        )
        .unwrap();
        assert_eq!(input[0].format, Format::Csv);
    }
}
