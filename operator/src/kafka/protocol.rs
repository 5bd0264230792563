//! [`ProtocolAdmin`], the real [`KafkaAdmin`]: the admin operations (SCRAM credentials, prefixed
//! ACLs, client quotas, topics) as Kafka protocol requests and their answers, because rdkafka's
//! admin API cannot manage ACLs, SCRAM credentials or client quotas. The requests travel over the
//! [`Link`] of [`super::connection`], one SASL/SCRAM-SHA-512 connection.
//!
//! Every request goes to whichever bootstrap broker accepted the connection: in KRaft mode a
//! broker forwards mutations to the active controller, and answers reads from its metadata
//! cache. That cache follows the controller's log, so a read right after a write may briefly
//! show the old state; the reconcile loop converges on its next pass.

use std::{collections::BTreeMap, fmt};

use async_trait::async_trait;
use bytes::Bytes;
use kafka_protocol::{
    ResponseError,
    messages::{
        AlterClientQuotasRequest, AlterUserScramCredentialsRequest, CreateAclsRequest, CreatePartitionsRequest,
        CreateTopicsRequest, DeleteAclsRequest, DeleteTopicsRequest, DescribeAclsRequest, DescribeClientQuotasRequest,
        DescribeConfigsRequest, DescribeUserScramCredentialsRequest, IncrementalAlterConfigsRequest, MetadataRequest,
        TopicName,
        alter_client_quotas_request::{EntityData as AlterEntity, EntryData as AlterEntry, OpData},
        alter_user_scram_credentials_request::{ScramCredentialDeletion, ScramCredentialUpsertion},
        create_acls_request::AclCreation,
        create_partitions_request::CreatePartitionsTopic,
        create_topics_request::{CreatableTopic, CreatableTopicConfig},
        delete_acls_request::DeleteAclsFilter,
        delete_topics_request::DeleteTopicState,
        describe_client_quotas_request::ComponentData,
        describe_configs_request::DescribeConfigsResource,
        describe_user_scram_credentials_request::UserName,
        incremental_alter_configs_request::{AlterConfigsResource, AlterableConfig},
    },
    protocol::StrBytes,
};
use tracing::debug;

use super::{
    ByteRates, KafkaAdmin, KafkaAdminError, Operation, PrefixedAllow, ResourceKind, Result, TopicSpec, TopicState,
    Transport, connection::Link,
};
use crate::{scram::SaltedCredential, secret::SecretString};

/// How long the broker may wait for topic operations to complete; shorter than the connection's
/// [`REQUEST_TIMEOUT`](super::connection::REQUEST_TIMEOUT) so that a slow controller yields the
/// broker's own timeout error.
const BROKER_TIMEOUT_MS: i32 = 25_000;

/// `mechanism` of SCRAM-SHA-512 in the SCRAM credential APIs.
const SCRAM_SHA_512: i8 = 2;

/// The topic config the platform reads back.
const RETENTION_MS: &str = "retention.ms";

/// Client quota entity type and keys.
const USER_ENTITY: &str = "user";
const PRODUCER_BYTE_RATE: &str = "producer_byte_rate";
const CONSUMER_BYTE_RATE: &str = "consumer_byte_rate";

/// Codes of Kafka's ACL enums (`ResourceType`, `PatternType`, `AclOperation`,
/// `AclPermissionType`), which the protocol carries as `int8`.
mod acl {
    pub const ANY: i8 = 1;
    pub const TOPIC: i8 = 2;
    pub const GROUP: i8 = 3;
    pub const TRANSACTIONAL_ID: i8 = 5;
    pub const PREFIXED: i8 = 4;
    pub const READ: i8 = 3;
    pub const WRITE: i8 = 4;
    pub const DESCRIBE: i8 = 8;
    pub const DESCRIBE_CONFIGS: i8 = 10;
    pub const ALLOW: i8 = 3;
    /// The only host the platform grants from.
    pub const ANY_HOST: &str = "*";
}

/// Codes of Kafka's config enums (`ConfigResource.Type`, `ConfigSource`, `AlterConfigOp.OpType`).
mod config {
    pub const TOPIC_RESOURCE: i8 = 2;
    pub const DYNAMIC_TOPIC_CONFIG: i8 = 1;
    pub const SET: i8 = 0;
}

/// Kafka administration over the Kafka protocol, authenticated as the platform's admin with
/// SCRAM-SHA-512. Holds one connection, opened on [`ProtocolAdmin::connect`] and reopened once
/// when it breaks; calls are serialized on it.
#[derive(Debug)]
pub struct ProtocolAdmin {
    link: Link,
}

impl ProtocolAdmin {
    /// Connects to the first reachable server of `bootstrap` (comma-separated `host:port`)
    /// over `transport` (TCP for SASL_PLAINTEXT, TLS for SASL_SSL), negotiates API versions and
    /// authenticates as `user` with SCRAM-SHA-512.
    pub async fn connect(bootstrap: &str, user: &str, password: SecretString, transport: &Transport) -> Result<Self> {
        Ok(Self { link: Link::open(bootstrap, user, password, transport).await? })
    }

    /// The version used for each API the adapter needs (`None`: the broker offers none this
    /// client can speak), for diagnostics.
    pub async fn negotiated_versions(&self) -> Result<Vec<(&'static str, Option<i16>)>> {
        self.link.negotiated_versions().await
    }
}

/// `Ok` for error code 0, else the request error naming the operation and resource.
fn check(operation: &'static str, resource: impl fmt::Display, code: i16, message: Option<&StrBytes>) -> Result<()> {
    match ResponseError::try_from_code(code) {
        None => Ok(()),
        Some(err) => Err(KafkaAdminError::Request {
            operation,
            resource: resource.to_string(),
            code: err.to_string(),
            message: message.map(ToString::to_string).unwrap_or_default(),
        }),
    }
}

fn is(code: i16, error: ResponseError) -> bool {
    code == error.code()
}

fn text(value: &str) -> StrBytes {
    StrBytes::from_string(value.to_owned())
}

/// A response that does not line up with its request (e.g. fewer results than items).
fn mismatch(operation: &'static str, problem: impl Into<String>) -> KafkaAdminError {
    KafkaAdminError::Protocol { operation, message: problem.into() }
}

fn resource_code(kind: ResourceKind) -> i8 {
    match kind {
        ResourceKind::Topic => acl::TOPIC,
        ResourceKind::Group => acl::GROUP,
        ResourceKind::TransactionalId => acl::TRANSACTIONAL_ID,
    }
}

fn resource_kind(code: i8) -> Option<ResourceKind> {
    match code {
        acl::TOPIC => Some(ResourceKind::Topic),
        acl::GROUP => Some(ResourceKind::Group),
        acl::TRANSACTIONAL_ID => Some(ResourceKind::TransactionalId),
        _ => None,
    }
}

fn operation_code(operation: Operation) -> i8 {
    match operation {
        Operation::Read => acl::READ,
        Operation::Write => acl::WRITE,
        Operation::Describe => acl::DESCRIBE,
        Operation::DescribeConfigs => acl::DESCRIBE_CONFIGS,
    }
}

fn operation_of(code: i8) -> Option<Operation> {
    match code {
        acl::READ => Some(Operation::Read),
        acl::WRITE => Some(Operation::Write),
        acl::DESCRIBE => Some(Operation::Describe),
        acl::DESCRIBE_CONFIGS => Some(Operation::DescribeConfigs),
        _ => None,
    }
}

/// A described binding as a prefixed allow, or `None` when it has another shape.
fn prefixed_allow(
    resource_type: i8,
    name: &str,
    pattern_type: i8,
    principal: &str,
    host: &str,
    operation: i8,
    permission: i8,
) -> Option<PrefixedAllow> {
    if pattern_type != acl::PREFIXED || host != acl::ANY_HOST || permission != acl::ALLOW {
        return None;
    }
    Some(PrefixedAllow {
        resource: resource_kind(resource_type)?,
        prefix: name.to_owned(),
        principal: principal.to_owned(),
        operation: operation_of(operation)?,
    })
}

fn quota_op(key: &'static str, rate: Option<f64>) -> OpData {
    OpData::default()
        .with_key(StrBytes::from_static_str(key))
        .with_value(rate.unwrap_or(0.0))
        .with_remove(rate.is_none())
}

#[async_trait]
impl KafkaAdmin for ProtocolAdmin {
    /// DescribeUserScramCredentials for the user; RESOURCE_NOT_FOUND means no credential.
    async fn scram_user_exists(&self, user: &str) -> Result<bool> {
        const OP: &str = "DescribeUserScramCredentials";
        debug!(user, "describing SCRAM credentials");
        let response = self
            .link
            .call(OP, |_| {
                DescribeUserScramCredentialsRequest::default()
                    .with_users(Some(vec![UserName::default().with_name(text(user))]))
            })
            .await?;
        check(OP, user, response.error_code, response.error_message.as_ref())?;
        let result = response
            .results
            .iter()
            .find(|r| r.user.as_str() == user)
            .ok_or_else(|| mismatch(OP, format!("the response does not mention user {user:?}")))?;
        if is(result.error_code, ResponseError::ResourceNotFound) {
            return Ok(false);
        }
        check(OP, user, result.error_code, result.error_message.as_ref())?;
        Ok(result.credential_infos.iter().any(|c| c.mechanism == SCRAM_SHA_512))
    }

    /// AlterUserScramCredentials with an upsertion: a fresh salt, 4096 iterations and the
    /// salted password, so the password itself is never sent.
    async fn upsert_scram_user(&self, user: &str, password: &SecretString) -> Result<()> {
        const OP: &str = "AlterUserScramCredentials";
        let credential = SaltedCredential::new(password);
        debug!(user, iterations = credential.iterations, "upserting SCRAM-SHA-512 credential");
        let response = self
            .link
            .call(OP, |_| {
                let upsertion = ScramCredentialUpsertion::default()
                    .with_name(text(user))
                    .with_mechanism(SCRAM_SHA_512)
                    .with_iterations(credential.iterations)
                    .with_salt(Bytes::copy_from_slice(&credential.salt))
                    .with_salted_password(Bytes::copy_from_slice(&credential.salted_password));
                AlterUserScramCredentialsRequest::default().with_upsertions(vec![upsertion])
            })
            .await?;
        for result in &response.results {
            check(OP, user, result.error_code, result.error_message.as_ref())?;
        }
        Ok(())
    }

    /// AlterUserScramCredentials with a deletion; RESOURCE_NOT_FOUND (no credential) is success.
    async fn delete_scram_user(&self, user: &str) -> Result<()> {
        const OP: &str = "AlterUserScramCredentials";
        debug!(user, "deleting SCRAM-SHA-512 credential");
        let response = self
            .link
            .call(OP, |_| {
                let deletion = ScramCredentialDeletion::default().with_name(text(user)).with_mechanism(SCRAM_SHA_512);
                AlterUserScramCredentialsRequest::default().with_deletions(vec![deletion])
            })
            .await?;
        for result in response.results.iter().filter(|r| !is(r.error_code, ResponseError::ResourceNotFound)) {
            check(OP, user, result.error_code, result.error_message.as_ref())?;
        }
        Ok(())
    }

    /// DescribeAcls filtered on the principal only (any resource, pattern, host, operation).
    async fn acls_of(&self, principal: &str) -> Result<Vec<PrefixedAllow>> {
        const OP: &str = "DescribeAcls";
        debug!(principal, "describing ACLs");
        let response = self
            .link
            .call(OP, |_| {
                DescribeAclsRequest::default()
                    .with_resource_type_filter(acl::ANY)
                    .with_resource_name_filter(None)
                    .with_pattern_type_filter(acl::ANY)
                    .with_principal_filter(Some(text(principal)))
                    .with_host_filter(None)
                    .with_operation(acl::ANY)
                    .with_permission_type(acl::ANY)
            })
            .await?;
        check(OP, principal, response.error_code, response.error_message.as_ref())?;
        let mut allows = Vec::new();
        for resource in &response.resources {
            for binding in &resource.acls {
                let allow = prefixed_allow(
                    resource.resource_type,
                    &resource.resource_name,
                    resource.pattern_type,
                    &binding.principal,
                    &binding.host,
                    binding.operation,
                    binding.permission_type,
                );
                let allow = allow.ok_or_else(|| {
                    mismatch(
                        OP,
                        format!(
                            "{principal} has a binding the platform never creates (resource type {}, name {:?}, \
                             pattern type {}, host {:?}, operation {}, permission {}); remove it with kafka-acls.sh",
                            resource.resource_type,
                            resource.resource_name.as_str(),
                            resource.pattern_type,
                            binding.host.as_str(),
                            binding.operation,
                            binding.permission_type
                        ),
                    )
                })?;
                allows.push(allow);
            }
        }
        allows.sort();
        Ok(allows)
    }

    /// CreateAcls: one PREFIXED ALLOW creation from host `*` per binding.
    async fn create_acls(&self, acls: &[PrefixedAllow]) -> Result<()> {
        const OP: &str = "CreateAcls";
        if acls.is_empty() {
            return Ok(());
        }
        debug!(count = acls.len(), first = %acls[0], "creating ACLs");
        let response = self
            .link
            .call(OP, |_| {
                let creations = acls
                    .iter()
                    .map(|a| {
                        AclCreation::default()
                            .with_resource_type(resource_code(a.resource))
                            .with_resource_name(text(&a.prefix))
                            .with_resource_pattern_type(acl::PREFIXED)
                            .with_principal(text(&a.principal))
                            .with_host(StrBytes::from_static_str(acl::ANY_HOST))
                            .with_operation(operation_code(a.operation))
                            .with_permission_type(acl::ALLOW)
                    })
                    .collect();
                CreateAclsRequest::default().with_creations(creations)
            })
            .await?;
        if response.results.len() != acls.len() {
            return Err(mismatch(OP, format!("{} results for {} creations", response.results.len(), acls.len())));
        }
        for (acl, result) in acls.iter().zip(&response.results) {
            check(OP, acl, result.error_code, result.error_message.as_ref())?;
        }
        Ok(())
    }

    /// DeleteAcls with one exact filter per binding; a binding already gone matches nothing.
    async fn delete_acls(&self, acls: &[PrefixedAllow]) -> Result<()> {
        const OP: &str = "DeleteAcls";
        if acls.is_empty() {
            return Ok(());
        }
        debug!(count = acls.len(), first = %acls[0], "deleting ACLs");
        let response = self
            .link
            .call(OP, |_| {
                let filters = acls
                    .iter()
                    .map(|a| {
                        DeleteAclsFilter::default()
                            .with_resource_type_filter(resource_code(a.resource))
                            .with_resource_name_filter(Some(text(&a.prefix)))
                            .with_pattern_type_filter(acl::PREFIXED)
                            .with_principal_filter(Some(text(&a.principal)))
                            .with_host_filter(Some(StrBytes::from_static_str(acl::ANY_HOST)))
                            .with_operation(operation_code(a.operation))
                            .with_permission_type(acl::ALLOW)
                    })
                    .collect();
                DeleteAclsRequest::default().with_filters(filters)
            })
            .await?;
        if response.filter_results.len() != acls.len() {
            return Err(mismatch(OP, format!("{} results for {} filters", response.filter_results.len(), acls.len())));
        }
        for (acl, result) in acls.iter().zip(&response.filter_results) {
            check(OP, acl, result.error_code, result.error_message.as_ref())?;
            for matched in &result.matching_acls {
                check(OP, acl, matched.error_code, matched.error_message.as_ref())?;
            }
        }
        Ok(())
    }

    /// DescribeClientQuotas, strict, for exactly the entity `user=<user>`.
    async fn quotas_of(&self, user: &str) -> Result<ByteRates> {
        const OP: &str = "DescribeClientQuotas";
        debug!(user, "describing client quotas");
        let response = self
            .link
            .call(OP, |_| {
                let component = ComponentData::default()
                    .with_entity_type(StrBytes::from_static_str(USER_ENTITY))
                    .with_match_type(0) // MATCH_EXACT
                    .with_match(Some(text(user)));
                DescribeClientQuotasRequest::default().with_components(vec![component]).with_strict(true)
            })
            .await?;
        check(OP, user, response.error_code, response.error_message.as_ref())?;
        let mut rates = ByteRates::default();
        for value in response.entries.iter().flatten().flat_map(|e| &e.values) {
            match value.key.as_str() {
                PRODUCER_BYTE_RATE => rates.producer = Some(value.value),
                CONSUMER_BYTE_RATE => rates.consumer = Some(value.value),
                _ => {}
            }
        }
        Ok(rates)
    }

    /// AlterClientQuotas on `user=<user>`: sets each rate, or removes it when `None`.
    async fn set_quotas(&self, user: &str, rates: ByteRates) -> Result<()> {
        const OP: &str = "AlterClientQuotas";
        debug!(user, producer = ?rates.producer, consumer = ?rates.consumer, "setting client quotas");
        let response = self
            .link
            .call(OP, |_| {
                let entity = AlterEntity::default()
                    .with_entity_type(StrBytes::from_static_str(USER_ENTITY))
                    .with_entity_name(Some(text(user)));
                let entry = AlterEntry::default().with_entity(vec![entity]).with_ops(vec![
                    quota_op(PRODUCER_BYTE_RATE, rates.producer),
                    quota_op(CONSUMER_BYTE_RATE, rates.consumer),
                ]);
                AlterClientQuotasRequest::default().with_entries(vec![entry])
            })
            .await?;
        for entry in &response.entries {
            check(OP, format!("user={user}"), entry.error_code, entry.error_message.as_ref())?;
        }
        Ok(())
    }

    /// Metadata for all topics (filtered here by prefix, internal topics left out), then
    /// DescribeConfigs for their `retention.ms`, reported only when set on the topic itself
    /// (config source DYNAMIC_TOPIC_CONFIG) rather than inherited.
    async fn topics_with_prefix(&self, prefix: &str) -> Result<Vec<TopicState>> {
        debug!(prefix, "listing topics");
        // v0 spells "all topics" as an empty list, later versions as null.
        let metadata =
            self.link.call("Metadata", |v| MetadataRequest::default().with_topics((v == 0).then(Vec::new))).await?;
        check("Metadata", "all topics", metadata.error_code, None)?;
        let mut topics = BTreeMap::new();
        for topic in metadata.topics.iter().filter(|t| !t.is_internal) {
            let Some(name) = topic.name.as_deref().filter(|n| n.starts_with(prefix)) else { continue };
            check("Metadata", name.as_str(), topic.error_code, None)?;
            let partitions = i32::try_from(topic.partitions.len()).unwrap_or(i32::MAX);
            topics.insert(name.to_string(), TopicState { name: name.to_string(), partitions, retention_ms: None });
        }
        if topics.is_empty() {
            return Ok(Vec::new());
        }

        const OP: &str = "DescribeConfigs";
        let configs = self
            .link
            .call(OP, |_| {
                let resources = topics
                    .keys()
                    .map(|name| {
                        DescribeConfigsResource::default()
                            .with_resource_type(config::TOPIC_RESOURCE)
                            .with_resource_name(text(name))
                            .with_configuration_keys(Some(vec![StrBytes::from_static_str(RETENTION_MS)]))
                    })
                    .collect();
                DescribeConfigsRequest::default().with_resources(resources)
            })
            .await?;
        for result in &configs.results {
            let name = result.resource_name.as_str();
            if is(result.error_code, ResponseError::UnknownTopicOrPartition) {
                // Deleted between the two requests.
                topics.remove(name);
                continue;
            }
            check(OP, name, result.error_code, result.error_message.as_ref())?;
            let retention = result
                .configs
                .iter()
                .find(|c| c.name.as_str() == RETENTION_MS && c.config_source == config::DYNAMIC_TOPIC_CONFIG);
            if let (Some(topic), Some(value)) = (topics.get_mut(name), retention.and_then(|c| c.value.as_ref())) {
                let ms = value.parse().map_err(|_| {
                    mismatch(OP, format!("topic {name:?} has {RETENTION_MS}={:?}, not a number", value.as_str()))
                })?;
                topic.retention_ms = Some(ms);
            }
        }
        Ok(topics.into_values().collect())
    }

    /// CreateTopics with the broker's default replication factor (-1) and `retention.ms`;
    /// TOPIC_ALREADY_EXISTS is success.
    async fn create_topic(&self, topic: &TopicSpec) -> Result<()> {
        const OP: &str = "CreateTopics";
        debug!(topic = %topic.name, partitions = topic.partitions, retention_ms = topic.retention_ms, "creating topic");
        let response = self
            .link
            .call(OP, |_| {
                let retention = CreatableTopicConfig::default()
                    .with_name(StrBytes::from_static_str(RETENTION_MS))
                    .with_value(Some(StrBytes::from_string(topic.retention_ms.to_string())));
                let creatable = CreatableTopic::default()
                    .with_name(TopicName(text(&topic.name)))
                    .with_num_partitions(topic.partitions)
                    .with_replication_factor(-1)
                    .with_configs(vec![retention]);
                CreateTopicsRequest::default().with_topics(vec![creatable]).with_timeout_ms(BROKER_TIMEOUT_MS)
            })
            .await?;
        for result in response.topics.iter().filter(|r| !is(r.error_code, ResponseError::TopicAlreadyExists)) {
            check(OP, &topic.name, result.error_code, result.error_message.as_ref())?;
        }
        Ok(())
    }

    /// CreatePartitions to the new total, with the broker choosing replica placement.
    async fn add_partitions(&self, topic: &str, total: i32) -> Result<()> {
        const OP: &str = "CreatePartitions";
        debug!(topic, total, "adding partitions");
        let response = self
            .link
            .call(OP, |_| {
                // Null assignments let the broker place the new replicas (an empty list would
                // mean "no assignments given" and be refused).
                let partitions = CreatePartitionsTopic::default()
                    .with_name(TopicName(text(topic)))
                    .with_count(total)
                    .with_assignments(None);
                CreatePartitionsRequest::default().with_topics(vec![partitions]).with_timeout_ms(BROKER_TIMEOUT_MS)
            })
            .await?;
        for result in &response.results {
            check(OP, topic, result.error_code, result.error_message.as_ref())?;
        }
        Ok(())
    }

    /// IncrementalAlterConfigs with a SET operation per config, so other topic configs stay.
    async fn set_topic_configs(&self, topic: &str, configs: &BTreeMap<String, String>) -> Result<()> {
        const OP: &str = "IncrementalAlterConfigs";
        if configs.is_empty() {
            return Ok(());
        }
        debug!(topic, ?configs, "setting topic configs");
        let response = self
            .link
            .call(OP, |_| {
                let alterations = configs
                    .iter()
                    .map(|(name, value)| {
                        AlterableConfig::default()
                            .with_name(text(name))
                            .with_config_operation(config::SET)
                            .with_value(Some(text(value)))
                    })
                    .collect();
                let resource = AlterConfigsResource::default()
                    .with_resource_type(config::TOPIC_RESOURCE)
                    .with_resource_name(text(topic))
                    .with_configs(alterations);
                IncrementalAlterConfigsRequest::default().with_resources(vec![resource])
            })
            .await?;
        for result in &response.responses {
            check(OP, topic, result.error_code, result.error_message.as_ref())?;
        }
        Ok(())
    }

    /// DeleteTopics by name; UNKNOWN_TOPIC_OR_PARTITION (already gone) is success.
    async fn delete_topics(&self, topics: &[String]) -> Result<()> {
        const OP: &str = "DeleteTopics";
        if topics.is_empty() {
            return Ok(());
        }
        debug!(?topics, "deleting topics");
        let response = self
            .link
            .call(OP, |version| {
                let request = DeleteTopicsRequest::default().with_timeout_ms(BROKER_TIMEOUT_MS);
                // v6 names topics in `topics` (which may also carry ids), earlier versions in
                // `topic_names`.
                if version >= 6 {
                    request.with_topics(
                        topics
                            .iter()
                            .map(|t| DeleteTopicState::default().with_name(Some(TopicName(text(t)))))
                            .collect(),
                    )
                } else {
                    request.with_topic_names(topics.iter().map(|t| TopicName(text(t))).collect())
                }
            })
            .await?;
        for result in response.responses.iter().filter(|r| !is(r.error_code, ResponseError::UnknownTopicOrPartition)) {
            let name = result.name.as_deref().map_or("(unnamed)", |n| n.as_str());
            check(OP, name, result.error_code, result.error_message.as_ref())?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn only_prefixed_allows_from_any_host_are_platform_bindings() {
        use acl::*;
        let allow = |pattern, host, permission, resource, operation| {
            prefixed_allow(resource, "acme.", pattern, "User:acme", host, operation, permission)
        };
        assert_eq!(
            allow(PREFIXED, "*", ALLOW, GROUP, READ),
            Some(PrefixedAllow {
                resource: ResourceKind::Group,
                prefix: "acme.".into(),
                principal: "User:acme".into(),
                operation: Operation::Read,
            })
        );
        assert_eq!(allow(3, "*", ALLOW, TOPIC, READ), None, "LITERAL");
        assert_eq!(allow(PREFIXED, "10.0.0.1", ALLOW, TOPIC, READ), None, "a specific host");
        assert_eq!(allow(PREFIXED, "*", 2, TOPIC, READ), None, "DENY");
        assert_eq!(allow(PREFIXED, "*", ALLOW, 4, READ), None, "the cluster resource");
        assert_eq!(allow(PREFIXED, "*", ALLOW, TOPIC, 2), None, "operation ALL");
    }

    #[test]
    fn acl_codes_round_trip() {
        for kind in [ResourceKind::Topic, ResourceKind::Group, ResourceKind::TransactionalId] {
            assert_eq!(resource_kind(resource_code(kind)), Some(kind));
        }
        for operation in [Operation::Read, Operation::Write, Operation::Describe, Operation::DescribeConfigs] {
            assert_eq!(operation_of(operation_code(operation)), Some(operation));
        }
    }

    #[test]
    fn error_codes_become_named_request_errors() {
        assert!(check("CreateTopics", "t", 0, None).is_ok());
        let err = check("CreateTopics", "t", 36, Some(&StrBytes::from_static_str("exists"))).unwrap_err();
        assert!(matches!(
            &err,
            KafkaAdminError::Request { operation: "CreateTopics", resource, code, message }
                if resource == "t" && code == "TopicAlreadyExists" && message == "exists"
        ));
        assert_eq!(err.to_string(), "Kafka CreateTopics on \"t\" failed: TopicAlreadyExists exists");
    }
}
