//! Types shared by the resources: the app container, file formats, the coredms target and the
//! standard condition list.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::quantity::PositiveQuantity;

/// Standard Kubernetes conditions, one entry per `type`.
pub type Conditions = Vec<Condition>;

/// A data file format. The platform judges a file's format by its content, not its name.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, JsonSchema)]
pub enum FileFormat {
    /// Comma-separated values with a header row (RFC 4180 quoting).
    Csv,
    /// One JSON object per line (also called NDJSON).
    JsonLines,
}

impl FileFormat {
    /// The name used in the API and in messages.
    pub fn as_str(self) -> &'static str {
        match self {
            FileFormat::Csv => "Csv",
            FileFormat::JsonLines => "JsonLines",
        }
    }
}

/// The tenant's ingest program: a black box the platform runs as a container (kubernetes
/// runtime) or as a local process (local runtime).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct ContainerSpec {
    /// Container image of the app, used by the kubernetes runtime, e.g.
    /// `registry.example.com/acme/flights-ingest:1.4.0`.
    #[schemars(length(min = 1, max = 512))]
    pub image: String,
    /// Command to run. The local runtime resolves the first element on the operator's `PATH`.
    #[schemars(length(min = 1, max = 32))]
    #[x_kube(merge_strategy = ListMerge::Atomic)]
    pub command: Vec<String>,
    /// Arguments passed after the command.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    #[x_kube(merge_strategy = ListMerge::Atomic)]
    pub args: Vec<String>,
    /// Extra environment variables. Names starting with `MYSIMBDP_` are the platform's contract
    /// with the app and cannot be set here.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["name".into()]))]
    pub env: Vec<EnvVar>,
    /// CPU and memory for each run or replica; they count against the tenant's compute quota.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ComputeResources>,
}

/// One environment variable of an app.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
pub struct EnvVar {
    /// Variable name: letters, digits and underscores, not starting with a digit.
    #[schemars(length(min = 1, max = 128))]
    #[x_kube(
        validation = Rule::new("self.matches('^[A-Za-z_][A-Za-z0-9_]*$')").message("must consist of letters, digits and underscores and must not start with a digit"),
        validation = Rule::new("!self.startsWith('MYSIMBDP_')").message("names starting with MYSIMBDP_ are set by the platform; choose another name"),
    )]
    pub name: String,
    /// Variable value.
    #[serde(default)]
    #[schemars(length(max = 4096))]
    pub value: String,
}

/// CPU and memory of one app instance; requests and limits are both set to these values.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
pub struct ComputeResources {
    /// CPU, in cores (`500m` is half a core).
    pub cpu: PositiveQuantity,
    /// Memory in bytes (`256Mi`).
    pub memory: PositiveQuantity,
}

/// Where an app writes in coredms. The database is always the tenant's own.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
pub struct TargetSpec {
    /// Collection in the tenant's database, e.g. `flights`.
    #[schemars(length(min = 1, max = 64))]
    #[x_kube(validation = Rule::new("self.matches('^[A-Za-z][A-Za-z0-9_.-]*$') && !self.startsWith('system.')").message("must start with a letter, contain only letters, digits, '_', '.' and '-', and must not start with 'system.'"))]
    pub collection: String,
}
