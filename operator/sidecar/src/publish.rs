//! The sidecar's way out: each report is one JSON message on the tenant's reports topic, keyed
//! by the app's name, produced as the tenant's Kafka user. Publishing never holds the window
//! loop up: a report is queued and its delivery checked on a task; while the broker is away,
//! librdkafka keeps it (bounded in count and bytes) and retries.

use std::time::Duration;

use mysimbdp_ingest_sdk::{config::KafkaConfig, contract::Report};
use rdkafka::{
    error::KafkaError,
    producer::{FutureProducer, FutureRecord, Producer},
};
use tracing::{debug, warn};

/// How long a report may wait for the broker before it is dropped: long enough for a broker
/// restart, short enough that a stale report is not worth keeping.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(120);

/// Publishes reports to one topic.
pub struct Publisher {
    producer: FutureProducer,
    topic: String,
}

impl Publisher {
    /// A producer of `topic` as the user of `kafka`, named `client_id`.
    pub fn new(kafka: &KafkaConfig, topic: &str, client_id: &str) -> Result<Self, KafkaError> {
        let producer = kafka
            .client_config()
            .set("client.id", client_id)
            .set("acks", "all")
            .set("linger.ms", "0")
            .set("message.timeout.ms", DELIVERY_TIMEOUT.as_millis().to_string())
            // A report is a few hundred bytes; a small queue keeps the sidecar small.
            .set("queue.buffering.max.messages", "1000")
            .set("queue.buffering.max.kbytes", "1024")
            .create()?;
        Ok(Self { producer, topic: topic.to_owned() })
    }

    /// Queues `report` and checks its delivery on a task of its own.
    pub fn publish(&self, report: &Report) {
        let payload = match serde_json::to_vec(report) {
            Ok(payload) => payload,
            Err(e) => {
                warn!(error = %e, "cannot encode a report");
                return;
            }
        };
        let record = FutureRecord::to(&self.topic).key(report.app.as_bytes()).payload(&payload);
        match self.producer.send_result(record) {
            Ok(delivery) => {
                let (topic, window_end, silent) = (self.topic.clone(), report.window_end.clone(), report.silent);
                tokio::spawn(async move {
                    match delivery.await {
                        Ok(Ok(_)) => debug!(%topic, %window_end, silent, "report delivered"),
                        Ok(Err((error, _))) => warn!(%topic, %window_end, %error, "a report was not delivered"),
                        Err(_) => warn!(%topic, %window_end, "a report's delivery was abandoned"),
                    }
                });
            }
            Err((error, _)) => warn!(topic = %self.topic, %error, "a report could not be queued; it is dropped"),
        }
    }

    /// Waits (blocking, at most `timeout`) until queued reports are delivered.
    pub fn flush(&self, timeout: Duration) -> Result<(), KafkaError> {
        self.producer.flush(timeout)
    }
}
