//! Names shared by every component: API group and version, finalizers, the field manager,
//! label and annotation keys, and the tenant names the platform keeps for itself.

/// API group of every mysimbdp resource.
pub const GROUP: &str = "mysimbdp.io";
/// The one served and stored version.
pub const VERSION: &str = "v1alpha1";
/// `apiVersion` of every mysimbdp resource.
pub const API_VERSION: &str = "mysimbdp.io/v1alpha1";

/// Field manager of every server-side apply the operator makes.
pub const FIELD_MANAGER: &str = "mysimbdp-operator";
/// Finalizer that removes a tenant's Kafka user, ACLs, quotas and topics, its coredms user and
/// (when the agreement says so) its data before the Tenant disappears.
pub const TENANT_FINALIZER: &str = "mysimbdp.io/tenant-cleanup";

/// Recommended label: the application's name.
pub const LABEL_NAME: &str = "app.kubernetes.io/name";
/// Recommended label: the instance (the custom resource's name).
pub const LABEL_INSTANCE: &str = "app.kubernetes.io/instance";
/// Recommended label: the component inside the application.
pub const LABEL_COMPONENT: &str = "app.kubernetes.io/component";
/// Recommended label: the higher-level application this is part of (always `mysimbdp`).
pub const LABEL_PART_OF: &str = "app.kubernetes.io/part-of";
/// Recommended label: the tool that manages the object.
pub const LABEL_MANAGED_BY: &str = "app.kubernetes.io/managed-by";
/// The tenant an object belongs to.
pub const LABEL_TENANT: &str = "mysimbdp.io/tenant";
/// Value of [`LABEL_PART_OF`].
pub const PART_OF: &str = "mysimbdp";
/// Value of [`LABEL_MANAGED_BY`].
pub const MANAGED_BY: &str = "mysimbdp-operator";

/// Environment variables whose names start with this prefix carry the platform's contract with
/// an ingest app; a tenant cannot set them itself.
pub const RESERVED_ENV_PREFIX: &str = "MYSIMBDP_";

/// Longest tenant name: it becomes part of a namespace, a Kafka principal and topic prefix, a
/// coredms database and a PostgreSQL role, and all of those must stay within their limits.
pub const TENANT_NAME_MAX_LEN: usize = 40;

/// Tenant names the platform keeps for itself or that collide with system names in Kubernetes,
/// Kafka, MongoDB or PostgreSQL.
pub const RESERVED_TENANT_NAMES: &[&str] = &[
    "admin", "config", "coredms", "default", "kafka", "local", "mysimbdp", "platform", "postgres", "public", "system",
];

/// Tenant name prefixes the platform keeps for itself.
pub const RESERVED_TENANT_PREFIXES: &[&str] = &["kube-", "mysimbdp-", "system-"];

/// Finalizer that stops a StreamIngestApp's replicas where Kubernetes cannot (the local
/// runtime's processes) before the app disappears.
pub const STREAM_FINALIZER: &str = "mysimbdp.io/stream-replicas";

/// The ClusterRole a tenant's owners are bound to in its namespace (the Helm chart makes it).
pub const TENANT_OWNER_ROLE: &str = "mysimbdp-tenant-owner";
/// The ClusterRole a tenant's viewers are bound to in its namespace (the Helm chart makes it).
pub const TENANT_VIEWER_ROLE: &str = "mysimbdp-tenant-viewer";
