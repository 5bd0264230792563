//! `StreamIngestApp`: a tenant's program that consumes its Kafka topics into coredms.
//!
//! Every replica runs beside the platform's metrics sidecar; the monitor compares the sidecar's
//! reports with the thresholds here and the stream ingest manager scales or restarts the app.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{
    common::{Conditions, ContainerSpec, TargetSpec},
    quantity::PositiveDuration,
};

/// A tenant's stream ingest app. It lives in the tenant's namespace.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[kube(
    group = "mysimbdp.io",
    version = "v1alpha1",
    kind = "StreamIngestApp",
    doc = "A tenant's program that consumes its Kafka topics into coredms.",
    namespaced,
    status = "StreamIngestAppStatus",
    shortname = "sia",
    category = "mysimbdp",
    cel,
    derive = "PartialEq",
    printcolumn(name = "Ready", type_ = "string", json_path = ".status.conditions[?(@.type==\"Ready\")].status"),
    printcolumn(name = "Suspended", type_ = "boolean", json_path = ".spec.suspended"),
    printcolumn(name = "Desired", type_ = "integer", json_path = ".status.desiredReplicas"),
    printcolumn(name = "Available", type_ = "integer", json_path = ".status.readyReplicas"),
    printcolumn(name = "Msg/s", type_ = "number", json_path = ".status.lastReport.processingRate"),
    printcolumn(name = "Decision", type_ = "string", json_path = ".status.lastDecision.action"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    validation = Rule::new("self.metadata.name.size() <= 52").message("the app name must be at most 52 characters, so that the names of its pods fit Kubernetes' limits"),
)]
#[serde(rename_all = "camelCase")]
pub struct StreamIngestAppSpec {
    /// The program each replica runs.
    pub container: ContainerSpec,
    /// Topics to consume, without the tenant prefix; each must be declared in the tenant's
    /// agreement.
    #[schemars(length(min = 1, max = 16))]
    #[x_kube(merge_strategy = ListMerge::Set)]
    pub topics: Vec<String>,
    /// Consumer group without the tenant prefix: `weather-ingest` becomes
    /// `<tenant>.weather-ingest`.
    #[schemars(length(min = 1, max = 100))]
    #[x_kube(validation = Rule::new("self.matches('^[a-z0-9]([a-z0-9._-]*[a-z0-9])?$')").message("must consist of lowercase letters, digits, '.', '_' and '-', starting and ending with a letter or digit"))]
    pub consumer_group: String,
    /// Where the app writes.
    pub target: TargetSpec,
    /// Bounds for the number of replicas the monitor may choose.
    #[serde(default)]
    pub replicas: ReplicaRange,
    /// Scale to zero and keep it there; offsets are kept, so consumption resumes where it stopped.
    #[serde(default)]
    pub suspended: bool,
    /// How the platform watches the app and what it does when the app falls behind.
    #[serde(default)]
    pub monitoring: Monitoring,
}

/// Bounds for the replica count. The monitor never goes beyond them, nor beyond the topics'
/// partitions or the tenant's stream replica quota.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[x_kube(validation = Rule::new("self.min <= self.max").message("replicas.min cannot be larger than replicas.max"))]
pub struct ReplicaRange {
    /// Fewest replicas while not suspended.
    #[serde(default = "one")]
    #[schemars(range(min = 1, max = 256))]
    pub min: u32,
    /// Most replicas.
    #[serde(default = "one")]
    #[schemars(range(min = 1, max = 256))]
    pub max: u32,
}

impl Default for ReplicaRange {
    fn default() -> Self {
        Self { min: 1, max: 1 }
    }
}

fn one() -> u32 {
    1
}

/// Reporting, thresholds and the actions the platform takes.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("duration(self.reportInterval) <= duration(self.window)").message("window must be at least one reportInterval long"))]
#[x_kube(validation = Rule::new("duration(self.window) <= duration(self.stabilization)").message("stabilization must be at least as long as window, or decisions could flap"))]
pub struct Monitoring {
    /// How often each replica's sidecar publishes a report.
    #[serde(default = "default_report_interval")]
    pub report_interval: PositiveDuration,
    /// The span of reports a decision looks at.
    #[serde(default = "default_window")]
    pub window: PositiveDuration,
    /// The least time between two decisions for the app, so it does not flap.
    #[serde(default = "default_stabilization")]
    pub stabilization: PositiveDuration,
    /// A replica that sends no report for this many intervals counts as stalled.
    #[serde(default = "default_missed_reports")]
    #[schemars(range(min = 1, max = 100))]
    pub missed_reports: u32,
    /// Limits that, when broken over a whole window, trigger `onBreach`.
    #[serde(default)]
    pub thresholds: Thresholds,
    /// What to do when a threshold is broken.
    #[serde(default = "default_on_breach")]
    pub on_breach: BreachAction,
    /// What to do when the app stalls (no progress while lag grows) or stops reporting.
    #[serde(default = "default_on_stall")]
    pub on_stall: StallAction,
}

impl Default for Monitoring {
    fn default() -> Self {
        Self {
            report_interval: default_report_interval(),
            window: default_window(),
            stabilization: default_stabilization(),
            missed_reports: default_missed_reports(),
            thresholds: Thresholds::default(),
            on_breach: default_on_breach(),
            on_stall: default_on_stall(),
        }
    }
}

fn default_report_interval() -> PositiveDuration {
    "10s".parse().expect("constant duration parses")
}

fn default_window() -> PositiveDuration {
    "60s".parse().expect("constant duration parses")
}

fn default_stabilization() -> PositiveDuration {
    "120s".parse().expect("constant duration parses")
}

fn default_missed_reports() -> u32 {
    3
}

fn default_on_breach() -> BreachAction {
    BreachAction::Scale
}

fn default_on_stall() -> StallAction {
    StallAction::Restart
}

/// Limits on an app's performance. Unset limits are not checked.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Thresholds {
    /// Fewest messages per second, over all replicas, while there is a backlog.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0))]
    pub min_processing_rate: Option<f64>,
    /// Longest average time to ingest one message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_avg_ingestion_time: Option<PositiveDuration>,
    /// Most messages the consumer group may lag behind the topics' ends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max_lag: Option<u64>,
}

/// Action on a threshold breach.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum BreachAction {
    /// Add a replica (up to the bounds); remove one when the app has been comfortably within its
    /// thresholds for a whole stabilization period.
    Scale,
    /// Restart the app's replicas.
    Restart,
    /// Only record the breach and emit an Event.
    Notify,
}

/// Action when the app stalls or stops reporting.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum StallAction {
    /// Restart the app's replicas.
    Restart,
    /// Only record it and emit an Event.
    Notify,
}

/// What the app is doing and what the platform last decided about it.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StreamIngestAppStatus {
    /// `Ready` (running the replicas the monitor wants), `Suspended` and `Healthy` (within its
    /// thresholds).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Conditions,
    /// The generation of the spec this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Replicas the platform wants now.
    #[serde(default)]
    pub desired_replicas: u32,
    /// Replicas running and ready.
    #[serde(default)]
    pub ready_replicas: u32,
    /// When the replicas last changed (started, scaled, restarted or given a new spec); the
    /// monitor judges only what they did since.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas_since: Option<Time>,
    /// When the platform last restarted every replica.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_restart: Option<Time>,
    /// The latest report over all replicas.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_report: Option<ReportSummary>,
    /// The latest decision of the monitor and whether it was carried out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_decision: Option<Decision>,
}

/// An app's performance over one window.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReportSummary {
    /// Start of the window.
    pub window_start: Time,
    /// End of the window.
    pub window_end: Time,
    /// Messages per second.
    pub processing_rate: f64,
    /// Bytes per second.
    pub throughput: f64,
    /// Average time to ingest one message, in milliseconds.
    pub avg_ingestion_ms: f64,
    /// Messages ingested since the app started.
    pub messages: u64,
    /// Bytes ingested since the app started.
    pub bytes: u64,
    /// Messages the consumer group lags behind, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lag: Option<u64>,
    /// Replicas that reported in the window.
    pub reporting_replicas: u32,
}

/// A monitor decision.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Decision {
    /// `ScaleUp`, `ScaleDown`, `Restart`, `Notify` or `None`.
    pub action: String,
    /// Why, in words: which threshold, which value, over which window.
    pub reason: String,
    /// When the monitor decided.
    pub decided_at: Time,
    /// Replicas before the decision.
    pub from_replicas: u32,
    /// Replicas after the decision.
    pub to_replicas: u32,
    /// When the manager carried it out; unset while pending.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub applied_at: Option<Time>,
}
