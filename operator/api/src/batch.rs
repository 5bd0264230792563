//! `BatchIngestApp`: a tenant's program that ingests staged files into coredms.
//!
//! The batch ingest manager hands it the accepted files its selection matches, a few at a time,
//! within the tenant's concurrency and quota, retries failed runs with backoff and records every
//! file's outcome in the ledger.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{
    common::{Conditions, ContainerSpec, FileFormat, TargetSpec},
    quantity::PositiveDuration,
};

/// A tenant's batch ingest app. It lives in the tenant's namespace.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[kube(
    group = "mysimbdp.io",
    version = "v1alpha1",
    kind = "BatchIngestApp",
    doc = "A tenant's program that ingests staged files into coredms.",
    namespaced,
    status = "BatchIngestAppStatus",
    shortname = "bia",
    category = "mysimbdp",
    cel,
    derive = "PartialEq",
    printcolumn(name = "Ready", type_ = "string", json_path = ".status.conditions[?(@.type==\"Ready\")].status"),
    printcolumn(name = "Suspended", type_ = "boolean", json_path = ".spec.suspended"),
    printcolumn(name = "Running", type_ = "integer", json_path = ".status.activeRuns"),
    printcolumn(name = "Ingested", type_ = "integer", json_path = ".status.files.ingested"),
    printcolumn(name = "Failed", type_ = "integer", json_path = ".status.files.failed"),
    printcolumn(name = "Collection", type_ = "string", json_path = ".spec.target.collection", priority = 1),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    validation = Rule::new("self.metadata.name.size() <= 52").message("the app name must be at most 52 characters, so that the names of its runs fit Kubernetes' limits"),
)]
#[serde(rename_all = "camelCase")]
pub struct BatchIngestAppSpec {
    /// The program to run on each batch of files.
    pub container: ContainerSpec,
    /// Which accepted files this app takes.
    pub files: FileSelector,
    /// Most files handed to one run. Small files are batched together up to this number.
    #[serde(default = "one")]
    #[schemars(range(min = 1, max = 1000))]
    pub files_per_run: u32,
    /// Most runs of this app at the same time (the tenant's own limit also applies).
    #[serde(default = "one")]
    #[schemars(range(min = 1, max = 64))]
    pub concurrency: u32,
    /// How failed runs are retried.
    #[serde(default)]
    pub retry: RetryPolicy,
    /// A run still going after this long is stopped and counts as failed.
    #[serde(default = "default_timeout")]
    pub timeout: PositiveDuration,
    /// Where the app writes.
    pub target: TargetSpec,
    /// Stop starting new runs; runs in progress finish. Files keep waiting in the staging area.
    #[serde(default)]
    pub suspended: bool,
}

fn one() -> u32 {
    1
}

fn default_timeout() -> PositiveDuration {
    "30m".parse().expect("constant duration parses")
}

/// Selects staged files by name, by format, or both. A file goes to the first app (by name)
/// whose selection matches it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.pattern) || (has(self.formats) && size(self.formats) > 0)").message("select files by pattern, by formats, or both"))]
pub struct FileSelector {
    /// Glob matched against the file name, e.g. `flights_*.csv`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 256))]
    pub pattern: Option<String>,
    /// Formats this app reads; they must be among the tenant's accepted formats.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 2))]
    #[x_kube(merge_strategy = ListMerge::Set)]
    pub formats: Vec<FileFormat>,
}

/// Retries with exponential backoff: the wait doubles after each failed attempt, from `backoff`
/// up to `maxBackoff`. A file that fails `maxAttempts` times is dead-lettered with its last error.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("duration(self.backoff) <= duration(self.maxBackoff)").message("backoff cannot be longer than maxBackoff"))]
pub struct RetryPolicy {
    /// Attempts per file, the first included. `1` means no retry.
    #[serde(default = "default_attempts")]
    #[schemars(range(min = 1, max = 20))]
    pub max_attempts: u32,
    /// Wait before the first retry.
    #[serde(default = "default_backoff")]
    pub backoff: PositiveDuration,
    /// Longest wait between attempts.
    #[serde(default = "default_max_backoff")]
    pub max_backoff: PositiveDuration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self { max_attempts: default_attempts(), backoff: default_backoff(), max_backoff: default_max_backoff() }
    }
}

fn default_attempts() -> u32 {
    3
}

fn default_backoff() -> PositiveDuration {
    "10s".parse().expect("constant duration parses")
}

fn default_max_backoff() -> PositiveDuration {
    "5m".parse().expect("constant duration parses")
}

/// What happened to the app's files and runs.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BatchIngestAppStatus {
    /// `Ready` (the app is valid and can run) and `Suspended`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Conditions,
    /// The generation of the spec this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Runs in progress.
    #[serde(default)]
    pub active_runs: u32,
    /// Files of this app per state.
    #[serde(default)]
    pub files: FileCounts,
    /// The most recent finished run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_run: Option<RunSummary>,
}

/// Number of files per state.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FileCounts {
    /// Accepted and waiting for a run.
    pub pending: u64,
    /// In a run now.
    pub running: u64,
    /// Ingested.
    pub ingested: u64,
    /// Failed, waiting for a retry.
    pub failed: u64,
    /// Failed on every attempt; kept with the last error.
    pub dead_lettered: u64,
}

/// One finished run.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RunSummary {
    /// Run name (the Job name with the kubernetes runtime).
    pub name: String,
    /// When it started.
    pub started_at: Time,
    /// When it finished.
    pub finished_at: Time,
    /// Files in the run.
    pub files: u32,
    /// Documents the app wrote.
    pub rows_written: u64,
    /// `Succeeded`, `Failed` or `TimedOut`.
    pub outcome: String,
    /// The app's error, or a summary of what it did.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
}
