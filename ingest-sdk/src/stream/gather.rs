//! Gathering: on a thread of its own, the gatherer receives messages, runs the app's wrangle
//! hook on each and gathers them into batches as the [`BatchPolicy`] says, each batch knowing
//! the offsets to commit once it is stored.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use mongodb::bson::RawDocumentBuf;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use tokio::{
    runtime::Handle,
    sync::{mpsc, watch},
};
use tracing::{debug, warn};

use super::{
    BatchPolicy, IncomingMessage, Offsets, StreamError, TenantConsumer, Wrangled, batching,
    kafka::WARN_EVERY,
    message::{self, Disposition, Envelope},
    report::Meter,
};

/// A message waiting to be stored.
pub(super) struct Pending {
    pub(super) document: RawDocumentBuf,
    pub(super) envelope: Envelope,
    pub(super) received: Instant,
}

/// Messages gathered for one write, and the dead letters among them.
#[derive(Default)]
pub(super) struct Gathered {
    pub(super) pending: Vec<Pending>,
    pub(super) dead: Vec<(Envelope, String)>,
    pub(super) oldest: Option<Instant>,
}

impl Gathered {
    pub(super) fn len(&self) -> usize {
        self.pending.len() + self.dead.len()
    }

    pub(super) fn add(&mut self, envelope: Envelope, disposition: Disposition, received: Instant) {
        self.oldest.get_or_insert(received);
        match disposition {
            Disposition::Store { document } => self.pending.push(Pending { document, envelope, received }),
            Disposition::DeadLetter { reason } => {
                debug!(topic = %envelope.topic, partition = envelope.partition, offset = envelope.offset, %reason, "dead letter");
                self.dead.push((envelope, reason));
            }
        }
    }

    /// The next offset to commit per partition once the batch is done.
    pub(super) fn offsets(&self) -> Offsets {
        let mut offsets = Offsets::new();
        let envelopes = self.pending.iter().map(|p| &p.envelope).chain(self.dead.iter().map(|(e, _)| e));
        for envelope in envelopes {
            let next = offsets.entry((envelope.topic.clone(), envelope.partition)).or_insert(0);
            *next = (*next).max(envelope.offset + 1);
        }
        offsets
    }
}

/// Receives messages, runs the hook and gathers batches, on a thread of its own.
pub(super) struct Gatherer {
    pub(super) handle: Handle,
    pub(super) consumer: Arc<TenantConsumer>,
    pub(super) policy: BatchPolicy,
    pub(super) batches: mpsc::Sender<Gathered>,
    pub(super) stop: watch::Receiver<Option<Instant>>,
    pub(super) meter: Arc<Meter>,
    pub(super) app: String,
}

pub(super) enum Event {
    Stop,
    Message(Envelope),
    Failed(KafkaError),
    Quiet,
}

impl Gatherer {
    pub(super) fn run<W>(mut self, mut hook: W) -> Result<(), StreamError>
    where
        W: FnMut(&IncomingMessage) -> Wrangled,
    {
        // Timers made on this thread belong to the runtime the pipeline runs on.
        let _runtime = self.handle.enter();
        let mut batch = Gathered::default();
        let mut warned: Option<Instant> = None;
        loop {
            self.meter.beat();
            let age = batch.oldest.map_or(Duration::ZERO, |oldest| oldest.elapsed());
            let Some(wait) = self.policy.wait(batch.len(), age) else {
                if !self.hand_over(std::mem::take(&mut batch)) {
                    return Ok(());
                }
                continue;
            };
            let (consumer, stop) = (&self.consumer, &mut self.stop);
            let event = self.handle.block_on(async {
                tokio::select! {
                    biased;
                    _ = stop.wait_for(Option::is_some) => Event::Stop,
                    received = tokio::time::timeout(wait, consumer.recv()) => match received {
                        Ok(Ok(message)) => Event::Message(Envelope::of(&message)),
                        Ok(Err(e)) => Event::Failed(e),
                        Err(_) => Event::Quiet,
                    },
                }
            });
            match event {
                Event::Stop => {
                    if batch.len() > 0 {
                        self.hand_over(batch);
                    }
                    return Ok(());
                }
                Event::Message(envelope) => {
                    let received = Instant::now();
                    let (envelope, disposition) = message::dispose(envelope, &mut hook);
                    batch.add(envelope, disposition, received);
                }
                Event::Quiet => {
                    if batch.len() > 0 && !self.hand_over(std::mem::take(&mut batch)) {
                        return Ok(());
                    }
                }
                Event::Failed(e) => {
                    if e.rdkafka_error_code() == Some(RDKafkaErrorCode::Fatal) {
                        return Err(StreamError::Fatal { app: self.app.clone(), source: e });
                    }
                    if warned.is_none_or(|at| at.elapsed() >= WARN_EVERY) {
                        warn!(error = %e, "consuming failed; retrying (nothing is skipped)");
                        warned = Some(Instant::now());
                    }
                }
            }
        }
    }

    /// Hands a batch to the storer, waiting while it is busy (and staying visibly alive);
    /// `false` when the storer has ended.
    pub(super) fn hand_over(&self, batch: Gathered) -> bool {
        loop {
            self.meter.beat();
            let reserved =
                self.handle.block_on(async { tokio::time::timeout(batching::IDLE_TICK, self.batches.reserve()).await });
            match reserved {
                Ok(Ok(permit)) => {
                    permit.send(batch);
                    return true;
                }
                Ok(Err(_)) => return false,
                Err(_) => continue,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use mongodb::bson::doc;

    use super::*;

    fn envelope(topic: &str, partition: i32, offset: i64) -> Envelope {
        Envelope {
            topic: topic.into(),
            partition,
            offset,
            timestamp_ms: None,
            key: None,
            value: Some(b"{}".to_vec()),
            headers: Vec::new(),
        }
    }
    #[test]
    fn a_batch_commits_past_its_highest_offset_per_partition_dead_letters_included() {
        let mut batch = Gathered::default();
        let now = Instant::now();
        let document = RawDocumentBuf::from_document(&doc! { "_id": "a" }).unwrap();
        for (partition, offset) in [(0, 5), (0, 3), (1, 10)] {
            batch.add(envelope("t.obs", partition, offset), Disposition::Store { document: document.clone() }, now);
        }
        batch.add(envelope("t.obs", 0, 6), Disposition::DeadLetter { reason: "bad".into() }, now);
        batch.add(envelope("t.late", 0, 1), Disposition::DeadLetter { reason: "bad".into() }, now);
        let offsets = batch.offsets();
        let expected: Offsets =
            [(("t.obs".into(), 0), 7), (("t.obs".into(), 1), 11), (("t.late".into(), 0), 2)].into_iter().collect();
        assert_eq!(offsets, expected);
        assert_eq!(batch.len(), 5);
        assert_eq!(batch.oldest, Some(now));
    }
}
