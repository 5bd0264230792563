//! Brings a tenant's Kafka user, ACLs, quotas and topics to what its agreement says, touching
//! only what differs, so that reconciling an unchanged tenant changes nothing in Kafka.

use std::collections::{BTreeMap, BTreeSet};

use tracing::info;

use super::names::TenantNames;
use crate::{
    kafka::{ByteRates, KafkaAdmin, PrefixedAllow, Result, TopicSpec, TopicState},
    secret::SecretString,
};

/// What has to change in a tenant's topics.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct TopicChanges {
    /// Topics to create.
    pub create: Vec<TopicSpec>,
    /// Topics whose partition count must rise: (topic, new total).
    pub grow: Vec<(String, i32)>,
    /// Topics whose retention must change: (topic, retention.ms).
    pub retention: Vec<(String, i64)>,
    /// Topics with more partitions than asked; Kafka cannot remove partitions.
    pub cannot_shrink: Vec<(String, i32, i32)>,
}

/// Compares desired topics with existing ones (pure).
pub fn topic_changes(desired: &[TopicSpec], existing: &[TopicState]) -> TopicChanges {
    let existing: BTreeMap<&str, &TopicState> = existing.iter().map(|t| (t.name.as_str(), t)).collect();
    let mut changes = TopicChanges::default();
    for topic in desired {
        match existing.get(topic.name.as_str()) {
            None => changes.create.push(topic.clone()),
            Some(state) => {
                if state.partitions < topic.partitions {
                    changes.grow.push((topic.name.clone(), topic.partitions));
                } else if state.partitions > topic.partitions {
                    changes.cannot_shrink.push((topic.name.clone(), state.partitions, topic.partitions));
                }
                if state.retention_ms != Some(topic.retention_ms) {
                    changes.retention.push((topic.name.clone(), topic.retention_ms));
                }
            }
        }
    }
    changes
}

/// What changed, for the status message and Events.
#[derive(Debug, Default)]
pub struct KafkaOutcome {
    /// Human-readable notes of what was changed or could not be.
    pub notes: Vec<String>,
    /// Warnings a tenant should act on.
    pub warnings: Vec<String>,
}

/// Reconciles the tenant's Kafka side.
pub async fn sync(
    kafka: &dyn KafkaAdmin,
    names: &TenantNames,
    password: &SecretString,
    reset_password: bool,
    acls: &BTreeSet<PrefixedAllow>,
    rates: ByteRates,
    topics: &[TopicSpec],
) -> Result<KafkaOutcome> {
    let mut outcome = KafkaOutcome::default();
    let user = &names.kafka_user;
    if reset_password || !kafka.scram_user_exists(user).await? {
        info!(user, "setting the Kafka SCRAM credential");
        kafka.upsert_scram_user(user, password).await?;
        outcome.notes.push(format!("set the SCRAM credential of {user}"));
    }

    let existing: BTreeSet<PrefixedAllow> = kafka.acls_of(&names.kafka_principal()).await?.into_iter().collect();
    let missing: Vec<PrefixedAllow> = acls.difference(&existing).cloned().collect();
    let extra: Vec<PrefixedAllow> = existing.difference(acls).cloned().collect();
    if !missing.is_empty() {
        kafka.create_acls(&missing).await?;
        outcome.notes.push(format!("created {} ACLs", missing.len()));
    }
    if !extra.is_empty() {
        kafka.delete_acls(&extra).await?;
        outcome.notes.push(format!("removed {} ACLs the agreement does not give", extra.len()));
    }

    if kafka.quotas_of(user).await? != rates {
        kafka.set_quotas(user, rates).await?;
        outcome.notes.push("set byte-rate quotas".into());
    }

    let changes = topic_changes(topics, &kafka.topics_with_prefix(&names.kafka_prefix).await?);
    for topic in &changes.create {
        kafka.create_topic(topic).await?;
        outcome.notes.push(format!("created topic {}", topic.name));
    }
    for (topic, total) in &changes.grow {
        kafka.add_partitions(topic, *total).await?;
        outcome.notes.push(format!("raised {topic} to {total} partitions"));
    }
    for (topic, retention_ms) in &changes.retention {
        let configs = BTreeMap::from([("retention.ms".to_owned(), retention_ms.to_string())]);
        kafka.set_topic_configs(topic, &configs).await?;
        outcome.notes.push(format!("set retention of {topic}"));
    }
    for (topic, have, want) in &changes.cannot_shrink {
        outcome.warnings.push(format!(
            "topic {topic} has {have} partitions and the agreement asks for {want}; Kafka cannot remove partitions, so it keeps {have}"
        ));
    }
    Ok(outcome)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(name: &str, partitions: i32, retention_ms: i64) -> TopicSpec {
        TopicSpec { name: name.into(), partitions, retention_ms }
    }

    fn state(name: &str, partitions: i32, retention_ms: Option<i64>) -> TopicState {
        TopicState { name: name.into(), partitions, retention_ms }
    }

    #[test]
    fn only_differences_become_changes() {
        let desired = [spec("t.a", 3, 1000), spec("t.b", 2, 1000), spec("t.c", 1, 1000), spec("t.d", 4, 2000)];
        let existing = [state("t.a", 3, Some(1000)), state("t.b", 1, Some(1000)), state("t.d", 6, None)];
        let changes = topic_changes(&desired, &existing);
        assert_eq!(changes.create, vec![spec("t.c", 1, 1000)]);
        assert_eq!(changes.grow, vec![("t.b".to_owned(), 2)]);
        assert_eq!(changes.retention, vec![("t.d".to_owned(), 2000)]);
        assert_eq!(changes.cannot_shrink, vec![("t.d".to_owned(), 6, 4)]);
    }

    #[test]
    fn an_unchanged_tenant_needs_nothing() {
        let desired = [spec("t.a", 3, 1000)];
        assert_eq!(topic_changes(&desired, &[state("t.a", 3, Some(1000))]), TopicChanges::default());
    }
}
