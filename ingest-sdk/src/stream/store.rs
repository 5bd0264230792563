//! Storing: the storer writes each gathered batch through the idempotent writer (one by one
//! when coredms refuses a document, so that only that one is dead-lettered), sends dead
//! letters, commits the batch's offsets, counts, and retries a failed write with backoff for as
//! long as it takes, without skipping anything.

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use mongodb::{
    Collection,
    bson::RawDocumentBuf,
    error::{ErrorKind, WriteFailure},
};
use rdkafka::{
    consumer::{CommitMode, Consumer},
    error::KafkaError,
    producer::{FutureProducer, FutureRecord},
};
use tokio::sync::{mpsc, watch};
use tracing::{debug, info, warn};

use super::{
    Offsets, StreamError, StreamOptions, Summary, TenantConsumer,
    gather::Gathered,
    kafka::{describe, partition_list},
    message::{self, Envelope},
    report::Meter,
};
use crate::{
    config::StreamConfig,
    write::{Counts, DUPLICATE_KEY, WriteError, Writer},
};

/// Why one attempt at a batch failed.
pub(super) enum Failure {
    /// coredms failed or refused the batch.
    Write(WriteError),
    /// coredms failed while documents were written one by one.
    One(mongodb::error::Error),
    /// The attempt took longer than the write timeout.
    TimedOut(Duration),
    /// Kafka did not take the dead letters.
    DeadLetter(usize, KafkaError),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Write(e) => write!(f, "{e}"),
            Self::One(e) => write!(f, "writing documents one by one failed: {e}"),
            Self::TimedOut(after) => write!(f, "writing the batch took longer than {after:?}"),
            Self::DeadLetter(count, e) => write!(f, "{count} dead letters not accepted by Kafka: {e}"),
        }
    }
}

/// Writes batches, dead-letters, commits and counts.
pub(super) struct Storer {
    pub(super) collection: Collection<RawDocumentBuf>,
    pub(super) consumer: Arc<TenantConsumer>,
    pub(super) producer: FutureProducer,
    pub(super) options: StreamOptions,
    pub(super) meter: Arc<Meter>,
    pub(super) offsets: Arc<Mutex<Offsets>>,
    pub(super) commit_failed: Arc<AtomicBool>,
    pub(super) stop: watch::Receiver<Option<Instant>>,
    pub(super) config: StreamConfig,
    pub(super) summary: Summary,
}

/// How often a failed commit is tried again while no batch commits anew.
pub(super) const RECOMMIT_EVERY: Duration = Duration::from_secs(5);

impl Storer {
    /// Stores batches until the gatherer ends (or the stop deadline passes); what was stored,
    /// and why it stopped early, if it did.
    pub(super) async fn run(mut self, mut batches: mpsc::Receiver<Gathered>) -> (Summary, Option<StreamError>) {
        let mut recommit = tokio::time::interval(RECOMMIT_EVERY);
        recommit.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let deadline = *self.stop.borrow();
            let until_deadline = async move {
                match deadline {
                    Some(deadline) => tokio::time::sleep_until(deadline.into()).await,
                    None => std::future::pending().await,
                }
            };
            let batch = tokio::select! {
                batch = batches.recv() => match batch {
                    Some(batch) => batch,
                    None => break,
                },
                _ = recommit.tick() => {
                    if self.commit_failed.load(Ordering::Relaxed) {
                        self.commit_all(CommitMode::Async);
                    }
                    continue;
                }
                _ = self.stop.changed(), if deadline.is_none() => continue,
                () = until_deadline => break,
            };
            if let Err(e) = self.store(batch).await {
                return (self.summary, Some(e));
            }
        }
        // The last commit is synchronous: the next replica starts exactly after this one.
        let consumer = Arc::clone(&self.consumer);
        let offsets = self.offsets.lock().unwrap_or_else(|e| e.into_inner()).clone();
        if !offsets.is_empty() {
            let list = partition_list(&offsets);
            let commit = tokio::task::spawn_blocking(move || consumer.commit(&list, CommitMode::Sync));
            match tokio::time::timeout(Duration::from_secs(5), commit).await {
                Ok(Ok(Ok(()))) => info!(offsets = %describe(&partition_list(&offsets)), "final offsets committed"),
                Ok(Ok(Err(e))) => {
                    warn!(error = %e, "the final commit failed; the next replica redelivers messages already stored")
                }
                _ => warn!(
                    "the final commit did not finish in time; the next replica redelivers messages already stored"
                ),
            }
        }
        (self.summary, None)
    }

    /// Stores one batch: documents, then dead letters, retried until they succeed (or, once the
    /// replica stops, until the stop deadline); then commits and counts.
    pub(super) async fn store(&mut self, batch: Gathered) -> Result<(), StreamError> {
        let offsets = batch.offsets();
        let messages = batch.len();
        let Gathered { pending, mut dead, .. } = batch;
        let documents: Vec<RawDocumentBuf> = pending.iter().map(|p| p.document.clone()).collect();
        let mut backoff = self.options.min_backoff;
        let (counts, refused) = loop {
            match self.write(&documents).await {
                Ok(done) => break done,
                Err(failure) => backoff = self.pause(failure, backoff, messages).await?,
            }
        };
        let stored_at = Instant::now();
        let (mut bytes, mut ingestion_ms, mut refused_count) = (0u64, 0f64, 0u64);
        let mut refused = refused.into_iter().peekable();
        for (index, pending) in pending.into_iter().enumerate() {
            if refused.peek().is_some_and(|(i, _)| *i == index) {
                if let Some((_, reason)) = refused.next() {
                    dead.push((pending.envelope, reason));
                    refused_count += 1;
                }
                continue;
            }
            bytes += pending.envelope.value_len() as u64;
            ingestion_ms += stored_at.duration_since(pending.received).as_secs_f64() * 1000.0;
        }
        let mut unsent: Vec<usize> = (0..dead.len()).collect();
        while !unsent.is_empty() {
            match self.dead_letter(&dead, &unsent).await {
                Ok(()) => unsent.clear(),
                Err((failed, error)) => {
                    let count = failed.len();
                    unsent = failed;
                    backoff = self.pause(Failure::DeadLetter(count, error), backoff, messages).await?;
                }
            }
        }
        self.commit(offsets);
        let stored = counts.written + counts.duplicate;
        self.meter.stored(stored, bytes, ingestion_ms);
        self.meter.dead_lettered(dead.len() as u64);
        self.summary.written += counts.written;
        self.summary.duplicate += counts.duplicate;
        self.summary.dead_lettered += dead.len() as u64;
        self.summary.bytes += bytes;
        debug!(
            written = counts.written,
            duplicate = counts.duplicate,
            dead_lettered = dead.len(),
            refused = refused_count,
            "batch stored"
        );
        Ok(())
    }

    /// Logs a failure and waits before the next attempt; fails once the replica is stopping
    /// and its deadline would pass. Returns the next backoff.
    pub(super) async fn pause(
        &mut self,
        failure: Failure,
        backoff: Duration,
        messages: usize,
    ) -> Result<Duration, StreamError> {
        let deadline = *self.stop.borrow();
        if let Some(deadline) = deadline
            && Instant::now() + backoff >= deadline
        {
            return Err(StreamError::Unfinished {
                app: self.config.app.clone(),
                messages,
                reason: failure.to_string(),
            });
        }
        warn!(error = %failure, retry_in_ms = backoff.as_millis() as u64, "storing a batch failed; retrying (offsets stay uncommitted)");
        tokio::select! {
            () = tokio::time::sleep(backoff) => {}
            // A stop cuts the wait short: one more attempt, then the deadline rules.
            _ = self.stop.changed(), if deadline.is_none() => {}
        }
        Ok((backoff * 2).min(self.options.max_backoff))
    }

    /// One attempt at writing the documents; the refused ones (index, reason) when coredms
    /// refused some documents themselves (not a failure of the write).
    pub(super) async fn write(&self, documents: &[RawDocumentBuf]) -> Result<(Counts, Vec<(usize, String)>), Failure> {
        if documents.is_empty() {
            return Ok((Counts::default(), Vec::new()));
        }
        let attempt = async {
            let mut writer = Writer::start(&self.collection, self.options.writer);
            for document in documents {
                // A failed write means the writer stopped; finishing tells why.
                if writer.write_raw(0, document.clone()).await.is_err() {
                    break;
                }
            }
            writer.finish().await
        };
        let timeout = self.options.write_timeout;
        match tokio::time::timeout(timeout, attempt).await {
            Err(_) => Err(Failure::TimedOut(timeout)),
            Ok(Ok(counts)) => Ok((counts.first().copied().unwrap_or_default(), Vec::new())),
            Ok(Err(error)) if refuses_documents(&error) => {
                // Some documents are refused for themselves (not a duplicate, not an outage):
                // written one by one, the refused ones are found and dead-lettered, so that they
                // never hold their partition up.
                warn!(error = %error, "coredms refused documents of a batch; writing it one by one to find them");
                tokio::time::timeout(timeout, self.write_one_by_one(documents))
                    .await
                    .map_err(|_| Failure::TimedOut(timeout))?
                    .map_err(Failure::One)
            }
            Ok(Err(error)) => Err(Failure::Write(error)),
        }
    }

    pub(super) async fn write_one_by_one(
        &self,
        documents: &[RawDocumentBuf],
    ) -> Result<(Counts, Vec<(usize, String)>), mongodb::error::Error> {
        let mut counts = Counts::default();
        let mut refused = Vec::new();
        for (index, document) in documents.iter().enumerate() {
            match self.collection.insert_one(document.clone()).await {
                Ok(_) => counts.written += 1,
                Err(e) => match e.kind.as_ref() {
                    ErrorKind::Write(WriteFailure::WriteError(w)) if w.code == DUPLICATE_KEY => counts.duplicate += 1,
                    ErrorKind::Write(WriteFailure::WriteError(w)) => {
                        refused.push((index, format!("coredms refused the document (code {}): {}", w.code, w.message)))
                    }
                    _ => return Err(e),
                },
            }
        }
        Ok((counts, refused))
    }

    /// Sends the dead letters at `indexes`; on failure, the indexes not sent and the first error.
    pub(super) async fn dead_letter(
        &self,
        dead: &[(Envelope, String)],
        indexes: &[usize],
    ) -> Result<(), (Vec<usize>, KafkaError)> {
        let sends = indexes.iter().map(|&index| {
            let (envelope, reason) = &dead[index];
            let headers = message::dead_letter_headers(envelope, reason, &self.config.app, &self.config.instance);
            let mut record = FutureRecord::<[u8], [u8]>::to(&self.config.dead_letter_topic).headers(headers);
            if let Some(key) = &envelope.key {
                record = record.key(key.as_slice());
            }
            if let Some(value) = &envelope.value {
                record = record.payload(value.as_slice());
            }
            async move { (index, self.producer.send(record, Duration::from_secs(5)).await) }
        });
        let mut failed = Vec::new();
        let mut first = None;
        for (index, result) in futures::future::join_all(sends).await {
            if let Err((error, _)) = result {
                failed.push(index);
                first.get_or_insert(error);
            }
        }
        match first {
            None => Ok(()),
            Some(error) => Err((failed, error)),
        }
    }

    /// Commits the batch's offsets (asynchronously: a failed commit is retried later, and any
    /// later commit covers it).
    pub(super) fn commit(&self, batch: Offsets) {
        if batch.is_empty() {
            return;
        }
        let list = partition_list(&batch);
        self.offsets.lock().unwrap_or_else(|e| e.into_inner()).extend(batch);
        if let Err(e) = self.consumer.commit(&list, CommitMode::Async) {
            self.commit_failed.store(true, Ordering::Relaxed);
            debug!(error = %e, "commit not queued; retried shortly");
        }
    }

    pub(super) fn commit_all(&self, mode: CommitMode) {
        let offsets = self.offsets.lock().unwrap_or_else(|e| e.into_inner()).clone();
        if !offsets.is_empty()
            && let Err(e) = self.consumer.commit(&partition_list(&offsets), mode)
        {
            debug!(error = %e, "commit not queued; retried shortly");
        }
    }
}

/// Whether coredms refused some documents for themselves (a write error other than a duplicate
/// key), rather than failing the whole write.
pub(super) fn refuses_documents(error: &WriteError) -> bool {
    let WriteError::CoreDms { source, .. } = error else { return false };
    match source.kind.as_ref() {
        ErrorKind::InsertMany(failure) => {
            failure.write_concern_error.is_none()
                && failure.write_errors.as_deref().is_some_and(|errors| errors.iter().any(|e| e.code != DUPLICATE_KEY))
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_document_refusals_are_written_one_by_one() {
        let outage = WriteError::Stopped { collection: "c".into(), reason: "gone".into() };
        assert!(!refuses_documents(&outage));
        assert_eq!(
            StreamError::Unfinished { app: "a".into(), messages: 1, reason: "x".into() }.category(),
            "unfinished"
        );
    }
}
