//! How far a consumer group is behind the ends of its topics, behind the small [`LagProbe`]
//! trait. The real probe asks Kafka, as the platform admin, for the group's committed offsets
//! and the partitions' high watermarks (librdkafka routes each question to the right broker).

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use async_trait::async_trait;
use rdkafka::{
    ClientConfig, Offset, TopicPartitionList,
    consumer::{BaseConsumer, Consumer},
    error::KafkaError,
};

const TIMEOUT: Duration = Duration::from_secs(5);

/// The lag could not be measured.
#[derive(Debug, thiserror::Error)]
#[error("cannot measure the lag of consumer group {group:?} on {topics:?}: {source}")]
pub struct LagError {
    group: String,
    topics: Vec<String>,
    source: KafkaError,
}

/// Measures consumer group lag.
#[async_trait]
pub trait LagProbe: Send + Sync {
    /// Messages `group` has not yet committed on `topics` (full names), over all partitions.
    async fn lag(&self, group: &str, topics: &[String]) -> Result<u64, LagError>;
}

/// Asks Kafka.
pub struct KafkaLag {
    config: ClientConfig,
    /// One idle consumer per group (it never joins the group; it only asks for its offsets).
    consumers: Mutex<HashMap<String, Arc<BaseConsumer>>>,
}

impl KafkaLag {
    /// A probe with the admin's client settings.
    pub fn new(config: ClientConfig) -> Self {
        Self { config, consumers: Mutex::new(HashMap::new()) }
    }

    fn consumer(&self, group: &str) -> Result<Arc<BaseConsumer>, KafkaError> {
        let mut consumers = self.consumers.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(consumer) = consumers.get(group) {
            return Ok(consumer.clone());
        }
        let consumer: BaseConsumer = self
            .config
            .clone()
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            .set("client.id", "mysimbdp-monitor-lag")
            .create()?;
        let consumer = Arc::new(consumer);
        consumers.insert(group.to_owned(), consumer.clone());
        Ok(consumer)
    }
}

/// Lag of one partition: from the committed offset (or the log start, when the group has
/// committed nothing) to the high watermark.
pub fn partition_lag(committed: Option<i64>, low: i64, high: i64) -> u64 {
    let from = committed.unwrap_or(low).max(low);
    u64::try_from(high - from).unwrap_or(0)
}

fn measure(consumer: &BaseConsumer, topics: &[String]) -> Result<u64, KafkaError> {
    let mut partitions = TopicPartitionList::new();
    for topic in topics {
        let metadata = consumer.fetch_metadata(Some(topic), TIMEOUT)?;
        for described in metadata.topics() {
            for partition in described.partitions() {
                partitions.add_partition(topic, partition.id());
            }
        }
    }
    let committed = consumer.committed_offsets(partitions, TIMEOUT)?;
    let mut total = 0;
    for element in committed.elements() {
        let (low, high) = consumer.fetch_watermarks(element.topic(), element.partition(), TIMEOUT)?;
        let offset = match element.offset() {
            Offset::Offset(n) => Some(n),
            _ => None,
        };
        total += partition_lag(offset, low, high);
    }
    Ok(total)
}

#[async_trait]
impl LagProbe for KafkaLag {
    async fn lag(&self, group: &str, topics: &[String]) -> Result<u64, LagError> {
        let error = |source| LagError { group: group.to_owned(), topics: topics.to_vec(), source };
        let consumer = self.consumer(group).map_err(error)?;
        let topics_owned = topics.to_vec();
        tokio::task::spawn_blocking(move || measure(&consumer, &topics_owned))
            .await
            .unwrap_or(Err(KafkaError::Canceled))
            .map_err(error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lag_counts_from_the_commit_or_the_log_start() {
        assert_eq!(partition_lag(Some(90), 0, 100), 10);
        assert_eq!(partition_lag(None, 40, 100), 60, "nothing committed: all that is kept");
        assert_eq!(partition_lag(Some(10), 40, 100), 60, "a commit older than the log start");
        assert_eq!(partition_lag(Some(100), 0, 100), 0);
    }
}
