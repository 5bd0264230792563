//! The names a tenant gets in every system, derived from its name alone so that offboarding can
//! find them even when the spec no longer validates.

use kube::ResourceExt;
use mysimbdp_api::Tenant;

/// Name of the Secret with a tenant's credentials, in its namespace.
pub const CREDENTIALS_SECRET: &str = "mysimbdp-credentials";
/// Name of the ServiceAccount the tenant's apps run as.
pub const APP_SERVICE_ACCOUNT: &str = "mysimbdp-app";
/// Topic (under the tenant prefix) where app sidecars publish their reports to the monitor.
pub const REPORTS_TOPIC: &str = "mysimbdp.reports";
/// Topic (under the tenant prefix) where stream apps put messages they cannot ingest.
pub const DEAD_LETTER_TOPIC: &str = "mysimbdp.dead-letter";

/// Every name of one tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantNames {
    /// The tenant (the resource's name).
    pub tenant: String,
    /// Its namespace.
    pub namespace: String,
    /// Its Kafka SCRAM user.
    pub kafka_user: String,
    /// Prefix of its topics, consumer groups and transactional ids.
    pub kafka_prefix: String,
    /// Its coredms database.
    pub database: String,
    /// Its coredms user.
    pub coredms_user: String,
}

impl TenantNames {
    /// The names of the tenant called `tenant` whose apps live in `namespace`
    /// (`tenant-<name>` when unset).
    pub fn new(tenant: &str, namespace: Option<&str>) -> Self {
        let underscored = tenant.replace('-', "_");
        Self {
            tenant: tenant.to_owned(),
            namespace: namespace.map_or_else(|| format!("tenant-{tenant}"), str::to_owned),
            // Prefixed so that no tenant can take a principal the platform uses (admin,
            // controller...), whatever its name.
            kafka_user: format!("tenant-{tenant}"),
            kafka_prefix: format!("{tenant}."),
            database: underscored.clone(),
            coredms_user: format!("tenant_{underscored}"),
        }
    }

    /// The names of a Tenant resource. The namespace recorded in its status wins over the spec,
    /// so a tenant is always cleaned up where it was created.
    pub fn of(tenant: &Tenant) -> Self {
        let namespace =
            tenant.status.as_ref().and_then(|s| s.namespace.as_deref()).or(tenant.spec.namespace.as_deref());
        Self::new(&tenant.name_any(), namespace)
    }

    /// The Kafka principal of the tenant's user.
    pub fn kafka_principal(&self) -> String {
        format!("User:{}", self.kafka_user)
    }

    /// The full name of one of the tenant's topics.
    pub fn topic(&self, name: &str) -> String {
        format!("{}{name}", self.kafka_prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_each_systems_conventions() {
        let n = TenantNames::new("acme-air", None);
        assert_eq!(n.namespace, "tenant-acme-air");
        assert_eq!(n.kafka_user, "tenant-acme-air");
        assert_eq!(n.kafka_principal(), "User:tenant-acme-air");
        assert_eq!(n.topic("flight-events"), "acme-air.flight-events");
        assert_eq!(n.database, "acme_air");
        assert_eq!(n.coredms_user, "tenant_acme_air");
        assert_eq!(TenantNames::new("acme-air", Some("flights")).namespace, "flights");
    }

    #[test]
    fn prefixes_of_similar_tenants_do_not_overlap() {
        let (a, b) = (TenantNames::new("acme", None), TenantNames::new("acme-air", None));
        assert!(!b.kafka_prefix.starts_with(&a.kafka_prefix));
        assert_ne!(a.database, b.database);
    }
}
