//! The stream runner's Kafka side: how the replica's consumer and dead-letter producer are
//! configured, and the consumer's callbacks (rebalances, commits, client errors).

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use rdkafka::{
    ClientContext, Offset, TopicPartitionList,
    consumer::{BaseConsumer, ConsumerContext, Rebalance},
    error::{KafkaError, KafkaResult, RDKafkaErrorCode},
};
use tracing::{debug, info, warn};

use super::Offsets;
use crate::config::StreamConfig;

pub(super) fn consumer_config(config: &StreamConfig) -> rdkafka::ClientConfig {
    let mut client = config.kafka.client_config();
    client
        .set("group.id", &config.consumer_group)
        .set("client.id", &config.instance)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("enable.partition.eof", "false")
        // A replica that crashed (no LeaveGroup) holds its partitions until its session expires;
        // 10 s rather than librdkafka's 45 s lets the others (or its restart) take over soon.
        .set("session.timeout.ms", "10000")
        .set("heartbeat.interval.ms", "3000")
        // Prefetched messages stay within a few MiB: the replica's memory is small.
        .set("queued.max.messages.kbytes", "4096");
    client
}

pub(super) fn producer_config(config: &StreamConfig) -> rdkafka::ClientConfig {
    let mut client = config.kafka.client_config();
    client
        .set("client.id", format!("{}-dead-letters", config.instance))
        .set("acks", "all")
        .set("linger.ms", "5")
        .set("message.timeout.ms", "30000")
        .set("queue.buffering.max.kbytes", "4096");
    client
}

/// The consumer's callbacks: logs rebalances, commit failures and client errors (the latter at
/// most every [`WARN_EVERY`], a broker restart otherwise floods the log).
pub(super) struct Hooks {
    pub(super) offsets: Arc<Mutex<Offsets>>,
    pub(super) commit_failed: Arc<AtomicBool>,
    pub(super) warned: Mutex<Option<Instant>>,
}

/// Shortest time between two warnings of the same kind.
pub(super) const WARN_EVERY: Duration = Duration::from_secs(10);

impl Hooks {
    pub(super) fn should_warn(&self) -> bool {
        let mut warned = self.warned.lock().unwrap_or_else(|e| e.into_inner());
        let due = warned.is_none_or(|at| at.elapsed() >= WARN_EVERY);
        if due {
            *warned = Some(Instant::now());
        }
        due
    }
}

impl ClientContext for Hooks {
    fn error(&self, error: KafkaError, reason: &str) {
        if self.should_warn() {
            warn!(%error, reason, "Kafka client error; the client retries by itself");
        } else {
            debug!(%error, reason, "Kafka client error");
        }
    }
}

impl ConsumerContext for Hooks {
    fn pre_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(partitions) => info!(partitions = %describe(partitions), "partitions assigned"),
            Rebalance::Revoke(partitions) => {
                // Their next owner starts from the last commit; offsets of this replica's
                // batches in flight are no longer its to commit again.
                let mut offsets = self.offsets.lock().unwrap_or_else(|e| e.into_inner());
                for p in partitions.elements() {
                    offsets.remove(&(p.topic().to_owned(), p.partition()));
                }
                info!(partitions = %describe(partitions), "partitions revoked");
            }
            Rebalance::Error(e) => warn!(error = %e, "rebalance failed"),
        }
    }

    fn commit_callback(&self, result: KafkaResult<()>, offsets: &TopicPartitionList) {
        match result {
            Ok(()) => {
                self.commit_failed.store(false, Ordering::Relaxed);
                debug!(offsets = %describe(offsets), "offsets committed");
            }
            Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => {}
            Err(error) => {
                self.commit_failed.store(true, Ordering::Relaxed);
                if self.should_warn() {
                    warn!(%error, "committing offsets failed; they are committed again shortly (meanwhile a restart would only redeliver messages already stored)");
                }
            }
        }
    }
}

pub(super) fn describe(partitions: &TopicPartitionList) -> String {
    let parts: Vec<String> = partitions
        .elements()
        .iter()
        .map(|p| match p.offset() {
            Offset::Offset(offset) => format!("{}[{}]@{offset}", p.topic(), p.partition()),
            _ => format!("{}[{}]", p.topic(), p.partition()),
        })
        .collect();
    parts.join(",")
}

pub(super) fn partition_list(offsets: &Offsets) -> TopicPartitionList {
    let mut list = TopicPartitionList::with_capacity(offsets.len());
    for ((topic, partition), next) in offsets {
        // Adding an offset to a fresh list cannot fail; a failure would only skip a commit,
        // which a later one covers.
        let _ = list.add_partition_offset(topic, *partition, Offset::Offset(*next));
    }
    list
}
