//! `Tenant`: one customer of the platform and its service agreement.
//!
//! The agreement is the contract the platform enforces: which files it accepts, how it delivers,
//! how long it keeps data and where, and how much compute, Kafka and coredms the tenant may use.

use kube::{
    CustomResource, KubeSchema,
    core::{Message, Rule},
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{
    common::{Conditions, FileFormat},
    constants::{RESERVED_TENANT_NAMES, RESERVED_TENANT_PREFIXES, TENANT_NAME_MAX_LEN},
    quantity::{PositiveDuration, PositiveQuantity},
};

/// The schema rule on a tenant's name: a short DNS label.
fn tenant_name_rule() -> Rule {
    let max = TENANT_NAME_MAX_LEN;
    Rule::new(format!(
        "self.metadata.name.size() <= {max} && self.metadata.name.matches('^[a-z]([-a-z0-9]*[a-z0-9])?$')"
    ))
    .message(Message::Message(format!(
        "the tenant name must be a DNS label of at most {max} characters: lowercase letters, digits and '-', \
             starting with a letter and ending with a letter or digit"
    )))
}

/// The schema rule that keeps the platform's own names away from tenants.
fn reserved_name_rule() -> Rule {
    let names = RESERVED_TENANT_NAMES.iter().map(|n| format!("'{n}'")).collect::<Vec<_>>().join(", ");
    let prefixes: String =
        RESERVED_TENANT_PREFIXES.iter().map(|p| format!(" && !self.metadata.name.startsWith('{p}')")).collect();
    let message = format!(
        "the tenant name is reserved by the platform ({}, or a name starting with {}); choose another name",
        RESERVED_TENANT_NAMES.join(", "),
        RESERVED_TENANT_PREFIXES.join(", ")
    );
    Rule::new(format!("!(self.metadata.name in [{names}]){prefixes}")).message(Message::Message(message))
}

/// A tenant of mysimbdp and its service agreement. Cluster-scoped: the platform team creates it;
/// the operator gives it a namespace, a Kafka user and topics, a coredms database, a staging
/// area and a Secret with its credentials.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[kube(
    group = "mysimbdp.io",
    version = "v1alpha1",
    kind = "Tenant",
    doc = "A tenant of the mysimbdp ingestion platform and its service agreement.",
    status = "TenantStatus",
    shortname = "tn",
    category = "mysimbdp",
    cel,
    derive = "PartialEq",
    printcolumn(name = "Namespace", type_ = "string", json_path = ".status.namespace"),
    printcolumn(name = "Ready", type_ = "string", json_path = ".status.conditions[?(@.type==\"Ready\")].status"),
    printcolumn(name = "Delivery", type_ = "string", json_path = ".spec.agreement.delivery"),
    printcolumn(name = "Formats", type_ = "string", json_path = ".spec.agreement.files.formats", priority = 1),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    validation = tenant_name_rule(),
    validation = reserved_name_rule(),
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.__namespace__) == has(oldSelf.__namespace__) && (!has(self.__namespace__) || self.__namespace__ == oldSelf.__namespace__)").message("spec.namespace cannot be changed after the tenant is created; create a new tenant instead"))]
pub struct TenantSpec {
    /// Human-readable name shown in reports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 128))]
    pub display_name: Option<String>,
    /// Address that receives the platform's notices about this tenant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(email, length(max = 254))]
    pub contact: Option<String>,
    /// Namespace of the tenant's apps. Defaults to `tenant-<name>`. It must not exist already
    /// unless it was created for this tenant, and it cannot be changed later.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63))]
    #[x_kube(validation = Rule::new("self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$')").message("must be a DNS label: lowercase letters, digits and '-', starting and ending with a letter or digit"))]
    pub namespace: Option<String>,
    /// Who acts for the tenant: users, groups and ServiceAccounts bound in the tenant's
    /// namespace to the platform's `mysimbdp-tenant-owner` role (manage the tenant's apps, read
    /// its credentials Secret, stage files, read the platform's records about them, see its
    /// pods, Jobs, logs and Events). Removing one removes its access. Owners cannot create or
    /// change Tenants: onboarding is the platform team's.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    pub owners: Vec<Subject>,
    /// Who may look without changing anything: bound to `mysimbdp-tenant-viewer` (the apps,
    /// files and records; not the credentials, no uploads).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    pub viewers: Vec<Subject>,
    /// The service agreement: what the platform accepts, delivers, keeps and allows.
    pub agreement: ServiceAgreement,
}

/// Someone the cluster authenticates: a user, a group, or a ServiceAccount.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.kind != 'ServiceAccount' || has(self.__namespace__)").message("a ServiceAccount owner needs its namespace"))]
#[x_kube(validation = Rule::new("self.kind == 'ServiceAccount' || !has(self.__namespace__)").message("only a ServiceAccount has a namespace; remove it"))]
pub struct Subject {
    /// `User`, `Group` or `ServiceAccount`.
    pub kind: SubjectKind,
    /// The name the cluster authenticates, e.g. `alice@acme.example`, `acme-data-team`.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// The ServiceAccount's namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63))]
    pub namespace: Option<String>,
}

/// A kind of subject.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, JsonSchema)]
pub enum SubjectKind {
    /// A user, as authenticated (client certificate CN, OIDC claim...).
    User,
    /// A group of users.
    Group,
    /// A Kubernetes ServiceAccount.
    ServiceAccount,
}

/// The service agreement between the platform and a tenant.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServiceAgreement {
    /// Constraints on the files the tenant stages for batch ingestion.
    pub files: FileConstraints,
    /// What the platform promises about duplicates and loss, for files and messages.
    #[serde(default)]
    pub delivery: DeliveryGuarantee,
    /// How long staged files and ingested data are kept, and what happens on offboarding.
    #[serde(default)]
    pub retention: RetentionPolicy,
    /// Where the tenant's data must stay, as a region name such as `eu-north-1`. The platform
    /// only schedules the tenant on a cluster whose location matches.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 64))]
    #[x_kube(validation = Rule::new("self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$')").message("must be a region name of lowercase letters, digits and '-', such as eu-north-1"))]
    pub data_location: Option<String>,
    /// Compute the tenant's apps may use at once.
    pub compute: ComputeQuota,
    /// Kafka topics and byte-rate quotas for stream ingestion.
    pub kafka: KafkaAgreement,
    /// The tenant's share of coredms.
    pub coredms: CoreDmsAgreement,
}

/// What a tenant may stage and the platform will ingest. A file that breaks any of these is
/// rejected with the reason and kept, never deleted.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!isQuantity(self.maxFileSize) || !isQuantity(self.maxBytesPerDay) || quantity(self.maxFileSize).compareTo(quantity(self.maxBytesPerDay)) <= 0").message("maxFileSize cannot be larger than maxBytesPerDay"))]
pub struct FileConstraints {
    /// Accepted formats, judged by the file's content.
    #[schemars(length(min = 1, max = 2))]
    #[x_kube(merge_strategy = ListMerge::Set)]
    pub formats: Vec<FileFormat>,
    /// Largest accepted file, e.g. `50Mi`.
    pub max_file_size: PositiveQuantity,
    /// Most files accepted per UTC day; more are rejected until the next day.
    #[schemars(range(min = 1, max = 1000000))]
    pub max_files_per_day: u32,
    /// Most bytes accepted per UTC day, e.g. `10Gi`.
    pub max_bytes_per_day: PositiveQuantity,
    /// Regular expression (RE2 syntax) that every file name must match, e.g.
    /// `^flights_[0-9]{4}_[0-9]{2}\.csv$`. Unset accepts any name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 256))]
    pub filename_pattern: Option<String>,
    /// Columns (CSV header) or top-level fields (JSON lines) files must have, per kind of file:
    /// a file must have the fields of every rule whose `files` glob matches its name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    #[x_kube(merge_strategy = ListMerge::Atomic)]
    pub required_fields: Vec<RequiredFields>,
    /// Reject a file whose content is identical to a file already accepted.
    #[serde(default = "yes")]
    pub reject_duplicates: bool,
}

fn yes() -> bool {
    true
}

/// Fields that the files whose names match a glob must have.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
pub struct RequiredFields {
    /// Glob of the file names the rule applies to, e.g. `flights_*.csv`; `*` (the default)
    /// applies it to every file.
    #[serde(default = "every_file")]
    #[schemars(length(min = 1, max = 256))]
    pub files: String,
    /// The fields, e.g. `[year, month, day]`.
    #[schemars(length(min = 1, max = 128))]
    #[x_kube(merge_strategy = ListMerge::Set)]
    pub fields: Vec<String>,
}

fn every_file() -> String {
    "*".into()
}

/// Delivery guarantee for files and messages.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum DeliveryGuarantee {
    /// A record is ingested at most once: failed runs are not retried, lost records stay lost.
    AtMostOnce,
    /// A record is ingested at least once: failures are retried and a record may be written
    /// twice.
    #[default]
    AtLeastOnce,
    /// Retries as at-least-once, and writes are idempotent (deterministic ids) so that, in
    /// effect, every record is stored exactly once.
    EffectivelyOnce,
}

/// Data retention and deletion on offboarding.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RetentionPolicy {
    /// How long staged files (ingested, rejected or failed) are kept before the platform deletes
    /// them.
    #[serde(default = "default_staged_retention")]
    pub staged_files: PositiveDuration,
    /// How long ingested documents are kept in coredms. Unset keeps them until offboarding.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<PositiveDuration>,
    /// What happens to the tenant's data in coredms and staging when the Tenant is deleted.
    #[serde(default)]
    pub on_offboarding: OffboardingPolicy,
}

impl Default for RetentionPolicy {
    fn default() -> Self {
        Self { staged_files: default_staged_retention(), data: None, on_offboarding: OffboardingPolicy::default() }
    }
}

fn default_staged_retention() -> PositiveDuration {
    "720h".parse().expect("constant duration parses")
}

/// What offboarding does with a tenant's data.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum OffboardingPolicy {
    /// Keep the data (database and staged files); only access is removed.
    #[default]
    Retain,
    /// Delete the tenant's database and staged files (the right to erasure).
    Delete,
}

/// Compute the tenant's apps may use at once, enforced by a ResourceQuota in its namespace and by
/// the platform's schedulers.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ComputeQuota {
    /// Total CPU of all the tenant's running apps, in cores, e.g. `4`.
    pub cpu: PositiveQuantity,
    /// Total memory of all the tenant's running apps, e.g. `8Gi`.
    pub memory: PositiveQuantity,
    /// Most batch runs of the tenant at the same time.
    #[serde(default = "default_batch_runs")]
    #[schemars(range(min = 1, max = 64))]
    pub max_concurrent_batch_runs: u32,
    /// Most stream app replicas of the tenant in total.
    #[serde(default = "default_stream_replicas")]
    #[schemars(range(min = 1, max = 256))]
    pub max_stream_replicas: u32,
}

fn default_batch_runs() -> u32 {
    2
}

fn default_stream_replicas() -> u32 {
    4
}

/// Kafka resources of a tenant. Every topic and consumer group of the tenant is named
/// `<tenant>.<name>`, and the tenant's user may only use names under that prefix.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct KafkaAgreement {
    /// Topics the platform creates for the tenant.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["name".into()]))]
    pub topics: Vec<TopicSpec>,
    /// Most bytes per second the tenant's producers may send, e.g. `1Mi`; faster producers are
    /// throttled by the broker.
    pub producer_byte_rate: PositiveQuantity,
    /// Most bytes per second the tenant's consumers may fetch.
    pub consumer_byte_rate: PositiveQuantity,
}

/// A Kafka topic of a tenant.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct TopicSpec {
    /// Topic name without the tenant prefix: `observations` becomes `<tenant>.observations`.
    #[schemars(length(min = 1, max = 100))]
    #[x_kube(validation = Rule::new("self.matches('^[a-z0-9]([a-z0-9._-]*[a-z0-9])?$')").message("must consist of lowercase letters, digits, '.', '_' and '-', starting and ending with a letter or digit"))]
    #[x_kube(validation = Rule::new("!self.startsWith('mysimbdp.')").message("names starting with 'mysimbdp.' are the platform's own topics; choose another name"))]
    pub name: String,
    /// Number of partitions; it bounds how many replicas of a stream app can share the work.
    #[serde(default = "default_partitions")]
    #[schemars(range(min = 1, max = 128))]
    pub partitions: u32,
    /// How long the broker keeps messages.
    #[serde(default = "default_topic_retention")]
    pub retention: PositiveDuration,
}

fn default_partitions() -> u32 {
    3
}

fn default_topic_retention() -> PositiveDuration {
    "168h".parse().expect("constant duration parses")
}

/// The tenant's share of coredms.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CoreDmsAgreement {
    /// Most bytes the tenant's database may hold; ingestion stops with a clear reason beyond it.
    pub storage_quota: PositiveQuantity,
}

/// What exists for the tenant and how much of its quota it uses.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TenantStatus {
    /// `Ready`, and one condition per part: `NamespaceReady`, `KafkaReady`, `CoreDmsReady`,
    /// `StagingReady`, `CredentialsReady`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Conditions,
    /// The generation of the spec this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// The tenant's namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Secret in the tenant's namespace with its Kafka and coredms credentials.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_secret: Option<String>,
    /// Prefix of the tenant's topics and consumer groups.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kafka_prefix: Option<String>,
    /// The tenant's coredms database.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database: Option<String>,
    /// The tenant's staging area (where it drops files).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub staging_url: Option<String>,
    /// Usage against the agreement's limits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<TenantUsage>,
}

/// A tenant's usage against its quotas.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TenantUsage {
    /// Files accepted today (UTC).
    pub files_today: u64,
    /// Bytes accepted today (UTC).
    pub bytes_today: u64,
    /// Batch runs in progress.
    pub running_batch_runs: u32,
    /// Stream app replicas requested.
    pub stream_replicas: u32,
    /// Bytes the tenant's database holds.
    pub stored_bytes: u64,
}
