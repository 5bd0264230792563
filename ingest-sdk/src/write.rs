//! The idempotent coredms writer. Documents carry deterministic `_id`s chosen by the app, so
//! writing a document twice stores it once: batches are inserted unordered, and a duplicate-key
//! error (11000) on a document means an earlier attempt already wrote it. Any other error stops
//! the writer.
//!
//! Writing overlaps with the caller's work: full batches go through a bounded channel to a task
//! that keeps a few `insert_many` calls in flight, so the caller builds the next batches while
//! coredms stores the previous ones, and memory stays bounded when coredms is the slower side.

use std::sync::{Arc, OnceLock};

use futures::StreamExt;
use mongodb::{
    Collection,
    bson::{Document, RawDocumentBuf},
    error::ErrorKind,
    options::InsertManyOptions,
};
use tokio::{sync::mpsc, task::JoinHandle};

/// MongoDB's duplicate-key error code.
pub const DUPLICATE_KEY: i32 = 11000;

/// Writing to coredms failed; the run may succeed when retried.
#[derive(Debug, Clone, thiserror::Error)]
pub enum WriteError {
    /// coredms refused or failed a batch.
    #[error(
        "writing {count} documents to collection {collection} failed: {source}; the run can be retried, documents already written are skipped then"
    )]
    CoreDms {
        /// The collection.
        collection: String,
        /// Documents in the failed batch.
        count: usize,
        /// The driver's error.
        source: mongodb::error::Error,
    },
    /// A document could not be encoded as BSON (e.g. a field name with a NUL byte); it alone
    /// is not written.
    #[error("document with _id {id} for collection {collection} cannot be encoded as BSON: {reason}")]
    Encode {
        /// The collection.
        collection: String,
        /// The document's `_id`.
        id: String,
        /// Why.
        reason: String,
    },
    /// The writer task ended without a result (it panicked or the runtime shut down).
    #[error("the writer for collection {collection} stopped unexpectedly: {reason}")]
    Stopped {
        /// The collection.
        collection: String,
        /// What is known.
        reason: String,
    },
}

/// Tuning of a [`Writer`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriterOptions {
    /// Documents per `insert_many`.
    pub batch_size: usize,
    /// `insert_many` calls running at once; one more full batch may wait in the channel.
    pub in_flight: usize,
}

impl Default for WriterOptions {
    fn default() -> Self {
        Self { batch_size: 1000, in_flight: 2 }
    }
}

/// What a part (e.g. an input file) of the writes gave.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Documents stored now.
    pub written: u64,
    /// Documents found already stored (same `_id`).
    pub duplicate: u64,
}

struct Batch {
    part: usize,
    documents: Vec<RawDocumentBuf>,
}

/// Writes documents in unordered batches to one collection. Create it inside a Tokio runtime;
/// call [`finish`](Self::finish) at the end, which flushes and reports the counts.
pub struct Writer {
    collection: String,
    options: WriterOptions,
    part: usize,
    buffer: Vec<RawDocumentBuf>,
    sender: mpsc::Sender<Batch>,
    task: JoinHandle<Result<Vec<Counts>, WriteError>>,
    failure: Arc<OnceLock<WriteError>>,
}

impl Writer {
    /// Starts the writer's task on the current Tokio runtime.
    pub fn start<T: Send + Sync>(collection: &Collection<T>, options: WriterOptions) -> Self {
        let options = WriterOptions { batch_size: options.batch_size.max(1), in_flight: options.in_flight.max(1) };
        let (sender, receiver) = mpsc::channel(options.in_flight);
        let failure = Arc::new(OnceLock::new());
        let task = tokio::spawn(write_batches(
            collection.clone_with_type::<RawDocumentBuf>(),
            receiver,
            options.in_flight,
            Arc::clone(&failure),
        ));
        Self {
            collection: collection.name().to_owned(),
            options,
            part: 0,
            buffer: Vec::with_capacity(options.batch_size),
            sender,
            task,
            failure,
        }
    }

    /// Queues a document under `part` (any small index the caller groups counts by, e.g. the
    /// input file's position). Waits while the channel is full. [`WriteError::Encode`] concerns
    /// this document only and the writer goes on; any other error means the writer stopped:
    /// stop writing and call [`finish`](Self::finish) for the full report.
    pub async fn write(&mut self, part: usize, document: &Document) -> Result<(), WriteError> {
        for batch in self.push(part, document)?.into_iter().flatten() {
            let sent = self.sender.send(batch).await;
            self.check_sent(sent.is_ok())?;
        }
        Ok(())
    }

    /// [`write`](Self::write) for a document the caller encoded already (e.g. on a thread of
    /// its own); it cannot fail to encode.
    pub async fn write_raw(&mut self, part: usize, document: RawDocumentBuf) -> Result<(), WriteError> {
        for batch in self.push_raw(part, document)?.into_iter().flatten() {
            let sent = self.sender.send(batch).await;
            self.check_sent(sent.is_ok())?;
        }
        Ok(())
    }

    /// [`write`](Self::write) for a thread outside the runtime (e.g. a `spawn_blocking` task);
    /// it blocks while the channel is full. Panics when called on a runtime thread.
    pub fn write_blocking(&mut self, part: usize, document: &Document) -> Result<(), WriteError> {
        for batch in self.push(part, document)?.into_iter().flatten() {
            let sent = self.sender.blocking_send(batch);
            self.check_sent(sent.is_ok())?;
        }
        Ok(())
    }

    /// Sends the documents queued so far as one (partial) batch, e.g. at the end of a file.
    pub async fn flush(&mut self) -> Result<(), WriteError> {
        if let Some(batch) = self.take() {
            let sent = self.sender.send(batch).await;
            self.check_sent(sent.is_ok())?;
        }
        Ok(())
    }

    /// [`flush`](Self::flush) for a thread outside the runtime.
    pub fn flush_blocking(&mut self) -> Result<(), WriteError> {
        if let Some(batch) = self.take() {
            let sent = self.sender.blocking_send(batch);
            self.check_sent(sent.is_ok())?;
        }
        Ok(())
    }

    /// Flushes, waits for every batch, and returns the counts indexed by part (parts never
    /// written count zero), or the first error.
    pub async fn finish(mut self) -> Result<Vec<Counts>, WriteError> {
        // A flush that fails means the task has stopped; its own result says why.
        let flushed = self.flush().await;
        drop(self.sender);
        let outcome = match self.task.await {
            Ok(outcome) => outcome,
            Err(e) => Err(WriteError::Stopped { collection: self.collection.clone(), reason: e.to_string() }),
        };
        let counts = outcome?;
        flushed?;
        Ok(counts)
    }

    /// Adds a document; returns the batches that are ready to send: the previous part's when
    /// the part changes, and the current one when it is full.
    fn push(&mut self, part: usize, document: &Document) -> Result<[Option<Batch>; 2], WriteError> {
        if let Some(error) = self.failure.get() {
            return Err(error.clone());
        }
        // Encoding here, on the caller's thread, keeps the runtime's threads free for I/O.
        let raw = RawDocumentBuf::from_document(document).map_err(|e| WriteError::Encode {
            collection: self.collection.clone(),
            id: document.get("_id").map_or_else(|| "(none)".to_owned(), ToString::to_string),
            reason: e.to_string(),
        })?;
        self.push_raw(part, raw)
    }

    /// Adds an encoded document; see [`push`](Self::push).
    fn push_raw(&mut self, part: usize, raw: RawDocumentBuf) -> Result<[Option<Batch>; 2], WriteError> {
        if let Some(error) = self.failure.get() {
            return Err(error.clone());
        }
        // Batches never mix parts, so the counts of a batch belong to one part.
        let earlier = if part != self.part { self.take() } else { None };
        self.part = part;
        self.buffer.push(raw);
        let full = if self.buffer.len() >= self.options.batch_size { self.take() } else { None };
        Ok([earlier, full])
    }

    fn take(&mut self) -> Option<Batch> {
        if self.buffer.is_empty() {
            return None;
        }
        let documents = std::mem::replace(&mut self.buffer, Vec::with_capacity(self.options.batch_size));
        Some(Batch { part: self.part, documents })
    }

    fn check_sent(&self, sent: bool) -> Result<(), WriteError> {
        if sent {
            return Ok(());
        }
        Err(self.failure.get().cloned().unwrap_or_else(|| WriteError::Stopped {
            collection: self.collection.clone(),
            reason: "its task ended".into(),
        }))
    }
}

async fn write_batches(
    collection: Collection<RawDocumentBuf>,
    receiver: mpsc::Receiver<Batch>,
    in_flight: usize,
    failure: Arc<OnceLock<WriteError>>,
) -> Result<Vec<Counts>, WriteError> {
    let batches = futures::stream::unfold(receiver, |mut receiver| async move {
        receiver.recv().await.map(|batch| (batch, receiver))
    });
    let inserts = batches.map(|batch| insert(&collection, batch)).buffer_unordered(in_flight);
    let mut inserts = std::pin::pin!(inserts);
    let mut counts: Vec<Counts> = Vec::new();
    while let Some(result) = inserts.next().await {
        match result {
            Ok((part, batch)) => {
                if counts.len() <= part {
                    counts.resize(part + 1, Counts::default());
                }
                counts[part].written += batch.written;
                counts[part].duplicate += batch.duplicate;
            }
            Err(error) => {
                // Published before the receiver is dropped, so a sender that finds the channel
                // closed also finds the cause.
                let _ = failure.set(error.clone());
                return Err(error);
            }
        }
    }
    Ok(counts)
}

async fn insert(collection: &Collection<RawDocumentBuf>, batch: Batch) -> Result<(usize, Counts), WriteError> {
    let count = batch.documents.len();
    let options = InsertManyOptions::builder().ordered(false).build();
    match collection.insert_many(batch.documents).with_options(options).await {
        Ok(_) => Ok((batch.part, Counts { written: count as u64, duplicate: 0 })),
        Err(error) => match duplicates_only(&error) {
            Some(duplicate) => {
                Ok((batch.part, Counts { written: (count - duplicate) as u64, duplicate: duplicate as u64 }))
            }
            None => Err(WriteError::CoreDms { collection: collection.name().to_owned(), count, source: error }),
        },
    }
}

/// The number of documents refused as duplicates, when that is all that went wrong.
fn duplicates_only(error: &mongodb::error::Error) -> Option<usize> {
    match error.kind.as_ref() {
        ErrorKind::InsertMany(failure) if failure.write_concern_error.is_none() => {
            let errors = failure.write_errors.as_deref().unwrap_or_default();
            errors.iter().all(|e| e.code == DUPLICATE_KEY).then_some(errors.len())
        }
        _ => None,
    }
}
