//! Pure steps of tenant reconciliation: checking a spec against what the platform can give,
//! and building the Kubernetes objects, ACLs, quotas and topics a tenant should have.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::rbac::v1::{RoleBinding, RoleRef, Subject as RbacSubject};
use k8s_openapi::{
    api::core::v1::{
        LimitRange, LimitRangeItem, LimitRangeSpec, Namespace, ResourceQuota, ResourceQuotaSpec, ServiceAccount,
    },
    api::networking::v1::{
        IPBlock, NetworkPolicy, NetworkPolicyEgressRule, NetworkPolicyPeer, NetworkPolicyPort, NetworkPolicySpec,
    },
    apimachinery::pkg::{
        api::resource::Quantity,
        apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference},
        util::intstr::IntOrString,
    },
};
use kube::Resource;
use mysimbdp_api::{
    Tenant,
    constants::{
        LABEL_COMPONENT, LABEL_MANAGED_BY, LABEL_NAME, LABEL_PART_OF, LABEL_TENANT, MANAGED_BY, PART_OF,
        TENANT_OWNER_ROLE, TENANT_VIEWER_ROLE,
    },
    quantity::PositiveQuantity,
    tenant::SubjectKind,
};

use super::names::{APP_SERVICE_ACCOUNT, DEAD_LETTER_TOPIC, REPORTS_TOPIC, TenantNames};
use crate::kafka::{ByteRates, Operation, PrefixedAllow, ResourceKind, TopicSpec};

/// What the platform gives each tenant at most, and what each app instance gets by default.
#[derive(Debug, Clone, PartialEq)]
pub struct Platform {
    /// Most CPU cores one tenant may have.
    pub max_cpu: f64,
    /// Most memory, in bytes, one tenant may have.
    pub max_memory: f64,
    /// Most Kafka partitions, over all its topics, one tenant may have.
    pub max_partitions: u32,
    /// Most coredms bytes one tenant may hold.
    pub max_storage: f64,
    /// CPU limit of an app container that sets none.
    pub default_app_cpu: PositiveQuantity,
    /// Memory limit of an app container that sets none.
    pub default_app_memory: PositiveQuantity,
    /// Where apps may connect besides DNS: Kafka and coredms.
    pub egress: Vec<Egress>,
    /// Partitions of the per-tenant topics the platform itself uses (reports, dead letters).
    pub platform_topic_partitions: i32,
    /// Whether the platform puts the staging claim batch runs mount in each tenant namespace
    /// (the quota allows that one claim; tenants cannot create claims).
    pub staging_claim: bool,
    /// The ClusterRole a tenant's owners are bound to in its namespace (the chart makes it).
    pub owner_role: String,
    /// The ClusterRole a tenant's viewers are bound to in its namespace.
    pub viewer_role: String,
}

/// Who a tenant's RoleBinding is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// `spec.owners`, bound to the platform's owner role.
    Owners,
    /// `spec.viewers`, bound to the platform's viewer role.
    Viewers,
}

/// An address range and TCP port apps may reach.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Egress {
    /// CIDR, e.g. `10.0.4.0/24`.
    pub cidr: String,
    /// TCP port.
    pub port: u16,
}

/// A spec the platform cannot satisfy; the message names the field and the fix.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SpecError {
    /// The filename pattern is not a valid regular expression.
    #[error("spec.agreement.files.filenamePattern {pattern:?} is not a valid regular expression: {error}")]
    FilenamePattern {
        /// The pattern.
        pattern: String,
        /// The parser's message.
        error: String,
    },
    /// A quota above the platform's limit.
    #[error("{field} asks for {asked}; this platform gives a tenant at most {allowed}; lower it")]
    AboveLimit {
        /// The field.
        field: &'static str,
        /// What the spec asks, as written.
        asked: String,
        /// The platform's limit.
        allowed: String,
    },
    /// A quota too small for even one app instance.
    #[error("{field} is {asked}, less than one app instance needs by default ({needed}); raise it")]
    BelowOneApp {
        /// The field.
        field: &'static str,
        /// What the spec asks, as written.
        asked: String,
        /// What one app instance needs.
        needed: String,
    },
}

/// Checks what the schema cannot: the pattern compiles and the quotas fit the platform.
pub fn check(tenant: &Tenant, platform: &Platform) -> Vec<SpecError> {
    let agreement = &tenant.spec.agreement;
    let mut errors = Vec::new();
    if let Some(pattern) = &agreement.files.filename_pattern
        && let Err(e) = regex::Regex::new(pattern)
    {
        errors.push(SpecError::FilenamePattern { pattern: pattern.clone(), error: e.to_string() });
    }
    let compute = &agreement.compute;
    let limits = [
        ("spec.agreement.compute.cpu", &compute.cpu, platform.max_cpu, format!("{} cores", platform.max_cpu)),
        ("spec.agreement.compute.memory", &compute.memory, platform.max_memory, bytes(platform.max_memory)),
        (
            "spec.agreement.coredms.storageQuota",
            &agreement.coredms.storage_quota,
            platform.max_storage,
            bytes(platform.max_storage),
        ),
    ];
    for (field, asked, allowed, shown) in limits {
        if asked.value() > allowed {
            errors.push(SpecError::AboveLimit { field, asked: asked.to_string(), allowed: shown });
        }
    }
    let minimums = [
        ("spec.agreement.compute.cpu", &compute.cpu, &platform.default_app_cpu),
        ("spec.agreement.compute.memory", &compute.memory, &platform.default_app_memory),
    ];
    for (field, asked, needed) in minimums {
        if asked.value() < needed.value() {
            errors.push(SpecError::BelowOneApp { field, asked: asked.to_string(), needed: needed.to_string() });
        }
    }
    let partitions: u32 = agreement.kafka.topics.iter().map(|t| t.partitions).sum();
    if partitions > platform.max_partitions {
        errors.push(SpecError::AboveLimit {
            field: "spec.agreement.kafka.topics[*].partitions",
            asked: format!("{partitions} partitions in all"),
            allowed: format!("{} partitions", platform.max_partitions),
        });
    }
    errors
}

fn bytes(value: f64) -> String {
    const GI: f64 = 1024.0 * 1024.0 * 1024.0;
    if value >= GI { format!("{:.0}Gi", value / GI) } else { format!("{:.0}Mi", value / (1024.0 * 1024.0)) }
}

/// Labels of every object the operator makes for a tenant.
pub fn labels(names: &TenantNames, component: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (LABEL_NAME.to_owned(), "mysimbdp".to_owned()),
        (LABEL_INSTANCE_KEY.to_owned(), names.tenant.clone()),
        (LABEL_COMPONENT.to_owned(), component.to_owned()),
        (LABEL_PART_OF.to_owned(), PART_OF.to_owned()),
        (LABEL_MANAGED_BY.to_owned(), MANAGED_BY.to_owned()),
        (LABEL_TENANT.to_owned(), names.tenant.clone()),
    ])
}

const LABEL_INSTANCE_KEY: &str = mysimbdp_api::constants::LABEL_INSTANCE;

/// Metadata of an object the operator makes for a tenant: labelled and owned by the Tenant.
pub fn object_meta(
    tenant: &Tenant,
    names: &TenantNames,
    name: &str,
    namespace: Option<&str>,
    component: &str,
) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_owned()),
        namespace: namespace.map(str::to_owned),
        labels: Some(labels(names, component)),
        owner_references: tenant.controller_owner_ref(&()).map(|r: OwnerReference| vec![r]),
        ..ObjectMeta::default()
    }
}

/// The tenant's namespace: labelled as the tenant's, and restricted by Pod Security Admission.
pub fn namespace(tenant: &Tenant, names: &TenantNames) -> Namespace {
    let mut metadata = object_meta(tenant, names, &names.namespace, None, "tenant-namespace");
    let labels = metadata.labels.get_or_insert_with(BTreeMap::new);
    for mode in ["enforce", "audit", "warn"] {
        labels.insert(format!("pod-security.kubernetes.io/{mode}"), "restricted".into());
        labels.insert(format!("pod-security.kubernetes.io/{mode}-version"), "latest".into());
    }
    Namespace { metadata, ..Namespace::default() }
}

/// Whether an existing namespace was made for this tenant (and may be managed and deleted).
pub fn namespace_is_ours(existing: &Namespace, names: &TenantNames) -> bool {
    existing.metadata.labels.as_ref().and_then(|l| l.get(LABEL_TENANT)) == Some(&names.tenant)
}

/// The quota that fences the tenant's apps in: compute from the agreement, pods for its batch
/// runs and stream replicas (plus room for a rolling update), and nothing that exposes or
/// stores anything (services, volumes; the platform's staging claim aside, when runs mount one).
pub fn resource_quota(tenant: &Tenant, names: &TenantNames, platform: &Platform) -> ResourceQuota {
    let compute = &tenant.spec.agreement.compute;
    let pods = compute.max_concurrent_batch_runs + compute.max_stream_replicas + 2;
    let hard = BTreeMap::from([
        ("requests.cpu".to_owned(), Quantity(compute.cpu.to_string())),
        ("limits.cpu".to_owned(), Quantity(compute.cpu.to_string())),
        ("requests.memory".to_owned(), Quantity(compute.memory.to_string())),
        ("limits.memory".to_owned(), Quantity(compute.memory.to_string())),
        ("pods".to_owned(), Quantity(pods.to_string())),
        ("services".to_owned(), Quantity("0".into())),
        ("persistentvolumeclaims".to_owned(), Quantity(u8::from(platform.staging_claim).to_string())),
    ]);
    ResourceQuota {
        metadata: object_meta(tenant, names, "mysimbdp-quota", Some(&names.namespace), "tenant-quota"),
        spec: Some(ResourceQuotaSpec { hard: Some(hard), ..ResourceQuotaSpec::default() }),
        status: None,
    }
}

/// Defaults for app containers that set no resources (the quota requires them), and a ceiling
/// of the whole tenant quota per container.
pub fn limit_range(tenant: &Tenant, names: &TenantNames, platform: &Platform) -> LimitRange {
    let compute = &tenant.spec.agreement.compute;
    let pair = |cpu: &PositiveQuantity, memory: &PositiveQuantity| {
        BTreeMap::from([
            ("cpu".to_owned(), Quantity(cpu.to_string())),
            ("memory".to_owned(), Quantity(memory.to_string())),
        ])
    };
    let defaults = pair(&platform.default_app_cpu, &platform.default_app_memory);
    LimitRange {
        metadata: object_meta(tenant, names, "mysimbdp-limits", Some(&names.namespace), "tenant-limits"),
        spec: Some(LimitRangeSpec {
            limits: vec![LimitRangeItem {
                type_: "Container".into(),
                default: Some(defaults.clone()),
                default_request: Some(defaults),
                max: Some(pair(&compute.cpu, &compute.memory)),
                ..LimitRangeItem::default()
            }],
        }),
    }
}

/// Default deny: no traffic in, and out only to DNS and the platform's Kafka and coredms.
pub fn network_policy(tenant: &Tenant, names: &TenantNames, platform: &Platform) -> NetworkPolicy {
    let port = |protocol: &str, port: i32| NetworkPolicyPort {
        protocol: Some(protocol.into()),
        port: Some(IntOrString::Int(port)),
        end_port: None,
    };
    let dns = NetworkPolicyEgressRule {
        to: Some(vec![NetworkPolicyPeer {
            namespace_selector: Some(LabelSelector {
                match_labels: Some(BTreeMap::from([("kubernetes.io/metadata.name".into(), "kube-system".into())])),
                ..LabelSelector::default()
            }),
            ..NetworkPolicyPeer::default()
        }]),
        ports: Some(vec![port("UDP", 53), port("TCP", 53)]),
    };
    let services = platform.egress.iter().map(|e| NetworkPolicyEgressRule {
        to: Some(vec![NetworkPolicyPeer {
            ip_block: Some(IPBlock { cidr: e.cidr.clone(), except: None }),
            ..NetworkPolicyPeer::default()
        }]),
        ports: Some(vec![port("TCP", i32::from(e.port))]),
    });
    NetworkPolicy {
        metadata: object_meta(tenant, names, "mysimbdp-default-deny", Some(&names.namespace), "tenant-network"),
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(LabelSelector::default()),
            policy_types: Some(vec!["Ingress".into(), "Egress".into()]),
            // Listing Ingress with no rules denies all incoming traffic.
            ingress: None,
            egress: Some(std::iter::once(dns).chain(services).collect()),
        }),
    }
}

/// The identity of the tenant's apps: no API token mounted, no rights granted.
pub fn service_account(tenant: &Tenant, names: &TenantNames) -> ServiceAccount {
    ServiceAccount {
        metadata: object_meta(tenant, names, APP_SERVICE_ACCOUNT, Some(&names.namespace), "tenant-apps"),
        automount_service_account_token: Some(false),
        ..ServiceAccount::default()
    }
}

/// The RoleBinding of the tenant's owners ([`TENANT_OWNER_ROLE`]) or viewers
/// ([`TENANT_VIEWER_ROLE`]) in its namespace, to the platform's role for them; with no subject
/// when the tenant names none, so that removing the last one removes its access.
pub fn role_binding(tenant: &Tenant, names: &TenantNames, access: Access, platform: &Platform) -> RoleBinding {
    let (name, role, subjects) = match access {
        Access::Owners => (TENANT_OWNER_ROLE, &platform.owner_role, &tenant.spec.owners),
        Access::Viewers => (TENANT_VIEWER_ROLE, &platform.viewer_role, &tenant.spec.viewers),
    };
    let subjects: Vec<RbacSubject> = subjects
        .iter()
        .map(|s| RbacSubject {
            kind: match s.kind {
                SubjectKind::User => "User",
                SubjectKind::Group => "Group",
                SubjectKind::ServiceAccount => "ServiceAccount",
            }
            .to_owned(),
            api_group: (s.kind != SubjectKind::ServiceAccount).then(|| "rbac.authorization.k8s.io".to_owned()),
            name: s.name.clone(),
            namespace: s.namespace.clone(),
        })
        .collect();
    RoleBinding {
        metadata: object_meta(tenant, names, name, Some(&names.namespace), "tenant-access"),
        role_ref: RoleRef {
            api_group: Some("rbac.authorization.k8s.io".into()),
            kind: "ClusterRole".into(),
            name: role.clone(),
        },
        subjects: Some(subjects),
    }
}

/// The tenant's ACLs: its principal may use topics, consumer groups and transactional ids
/// under its prefix, and nothing else. It cannot create or delete topics.
pub fn acls(names: &TenantNames) -> BTreeSet<PrefixedAllow> {
    let grants = [
        (ResourceKind::Topic, Operation::Read),
        (ResourceKind::Topic, Operation::Write),
        (ResourceKind::Topic, Operation::Describe),
        (ResourceKind::Topic, Operation::DescribeConfigs),
        (ResourceKind::Group, Operation::Read),
        (ResourceKind::Group, Operation::Describe),
        (ResourceKind::TransactionalId, Operation::Write),
        (ResourceKind::TransactionalId, Operation::Describe),
    ];
    grants
        .into_iter()
        .map(|(resource, operation)| PrefixedAllow {
            resource,
            prefix: names.kafka_prefix.clone(),
            principal: names.kafka_principal(),
            operation,
        })
        .collect()
}

/// The tenant's byte-rate quotas.
pub fn byte_rates(tenant: &Tenant) -> ByteRates {
    let kafka = &tenant.spec.agreement.kafka;
    ByteRates {
        producer: Some(kafka.producer_byte_rate.value().ceil()),
        consumer: Some(kafka.consumer_byte_rate.value().ceil()),
    }
}

/// The tenant's topics: those of its agreement, and the platform's own (reports, dead letters).
pub fn topics(tenant: &Tenant, names: &TenantNames, platform: &Platform) -> Vec<TopicSpec> {
    let declared = tenant.spec.agreement.kafka.topics.iter().map(|t| TopicSpec {
        name: names.topic(&t.name),
        partitions: i32::try_from(t.partitions).unwrap_or(i32::MAX),
        retention_ms: i64::try_from(t.retention.get().as_millis()).unwrap_or(i64::MAX),
    });
    let week = 7 * 24 * 3600 * 1000;
    let platform_topics = [REPORTS_TOPIC, DEAD_LETTER_TOPIC].map(|name| TopicSpec {
        name: names.topic(name),
        partitions: platform.platform_topic_partitions,
        retention_ms: week,
    });
    declared.chain(platform_topics).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn platform() -> Platform {
        Platform {
            max_cpu: 8.0,
            max_memory: 16.0 * 1024.0 * 1024.0 * 1024.0,
            max_partitions: 12,
            max_storage: 10.0 * 1024.0 * 1024.0 * 1024.0,
            default_app_cpu: "500m".parse().unwrap(),
            default_app_memory: "256Mi".parse().unwrap(),
            egress: vec![Egress { cidr: "127.0.0.1/32".into(), port: 19092 }],
            platform_topic_partitions: 1,
            staging_claim: false,
            owner_role: TENANT_OWNER_ROLE.into(),
            viewer_role: TENANT_VIEWER_ROLE.into(),
        }
    }

    fn tenant(yaml_agreement: &str) -> Tenant {
        let yaml = format!(
            "apiVersion: mysimbdp.io/v1alpha1\nkind: Tenant\nmetadata: {{name: acme-air, uid: u1}}\nspec:\n  agreement:\n{}",
            yaml_agreement.lines().map(|l| format!("    {l}\n")).collect::<String>()
        );
        serde_yaml::from_str(&yaml).expect("fixture parses")
    }

    const GOOD: &str = "
files: {formats: [Csv], maxFileSize: 10Mi, maxFilesPerDay: 10, maxBytesPerDay: 1Gi, filenamePattern: '^f_[0-9]+\\.csv$'}
compute: {cpu: '2', memory: 2Gi, maxConcurrentBatchRuns: 2, maxStreamReplicas: 3}
kafka: {topics: [{name: events, partitions: 4, retention: 24h}], producerByteRate: 1Mi, consumerByteRate: 2Mi}
coredms: {storageQuota: 1Gi}";

    #[test]
    fn a_good_spec_passes() {
        assert_eq!(check(&tenant(GOOD), &platform()), vec![]);
    }

    #[test]
    fn specs_the_platform_cannot_satisfy_say_which_field_to_change() {
        let cases = [
            (GOOD.replace("'^f_[0-9]+\\.csv$'", "'^f_[0-9+$'"), "spec.agreement.files.filenamePattern"),
            (
                GOOD.replace("cpu: '2'", "cpu: '64'"),
                "spec.agreement.compute.cpu asks for 64; this platform gives a tenant at most 8 cores",
            ),
            (
                GOOD.replace("memory: 2Gi", "memory: 64Mi"),
                "spec.agreement.compute.memory is 64Mi, less than one app instance needs by default (256Mi)",
            ),
            (
                GOOD.replace("storageQuota: 1Gi", "storageQuota: 1Ti"),
                "spec.agreement.coredms.storageQuota asks for 1Ti",
            ),
            (GOOD.replace("partitions: 4", "partitions: 40"), "40 partitions in all"),
        ];
        for (spec, expected) in cases {
            let errors = check(&tenant(&spec), &platform());
            assert_eq!(errors.len(), 1, "{expected}: {errors:?}");
            assert!(errors[0].to_string().contains(expected), "{} does not contain {expected}", errors[0]);
        }
    }

    #[test]
    fn objects_are_labelled_owned_and_fenced() {
        let t = tenant(GOOD);
        let names = TenantNames::new("acme-air", None);
        let ns = namespace(&t, &names);
        assert_eq!(ns.metadata.name.as_deref(), Some("tenant-acme-air"));
        let labels = ns.metadata.labels.as_ref().unwrap();
        assert_eq!(labels["pod-security.kubernetes.io/enforce"], "restricted");
        assert_eq!(labels[LABEL_TENANT], "acme-air");
        assert!(namespace_is_ours(&ns, &names));
        assert_eq!(ns.metadata.owner_references.as_ref().unwrap()[0].uid, "u1");

        let quota = resource_quota(&t, &names, &platform()).spec.unwrap().hard.unwrap();
        assert_eq!(quota["limits.cpu"], Quantity("2".into()));
        assert_eq!(quota["pods"], Quantity("7".into()));
        assert_eq!(quota["services"], Quantity("0".into()));

        let policy = network_policy(&t, &names, &platform()).spec.unwrap();
        assert_eq!(policy.policy_types.as_deref(), Some(&["Ingress".to_owned(), "Egress".to_owned()][..]));
        assert_eq!(policy.ingress, None, "no traffic in");
        let egress = policy.egress.unwrap();
        assert_eq!(egress.len(), 2, "DNS and Kafka");
        assert_eq!(egress[1].to.as_ref().unwrap()[0].ip_block.as_ref().unwrap().cidr, "127.0.0.1/32");

        assert_eq!(service_account(&t, &names).automount_service_account_token, Some(false));
    }

    #[test]
    fn acls_allow_only_the_tenant_prefix_and_never_creation() {
        let names = TenantNames::new("acme-air", None);
        let acls = acls(&names);
        assert!(acls.iter().all(|a| a.prefix == "acme-air." && a.principal == "User:tenant-acme-air"));
        assert!(acls.iter().all(|a| a.operation != Operation::Write || a.resource != ResourceKind::Group));
        assert_eq!(acls.len(), 8);
    }

    #[test]
    fn topics_include_the_platforms_own() {
        let names = TenantNames::new("acme-air", None);
        let topics = topics(&tenant(GOOD), &names, &platform());
        let summary: Vec<_> = topics.iter().map(|t| (t.name.as_str(), t.partitions, t.retention_ms)).collect();
        assert_eq!(
            summary,
            [
                ("acme-air.events", 4, 86_400_000),
                ("acme-air.mysimbdp.reports", 1, 604_800_000),
                ("acme-air.mysimbdp.dead-letter", 1, 604_800_000)
            ]
        );
        assert_eq!(byte_rates(&tenant(GOOD)), ByteRates { producer: Some(1048576.0), consumer: Some(2097152.0) });
    }
}
