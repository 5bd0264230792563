//! The stream runner: everything of a stream app except its wrangling. It reads the replica's
//! configuration, consumes the app's topics as the tenant's Kafka user, hands each message to the
//! app's wrangle hook, writes the documents through the idempotent [`Writer`], sends what cannot
//! be ingested to the dead-letter topic, commits offsets only once all of that is done, and
//! reports measurements to the metrics sidecar.
//!
//! ```no_run
//! use mysimbdp_ingest_sdk::{bson::doc, stream};
//!
//! #[tokio::main]
//! async fn main() -> std::process::ExitCode {
//!     stream::run_stream(|message| {
//!         let station = message.json()["station"].as_str().ok_or("station is missing")?;
//!         Ok((message.default_id(), doc! { "station": station }))
//!     })
//!     .await
//!     .exit_code()
//! }
//! ```
//!
//! Delivery: offsets are committed after the documents of every message below them are stored
//! (or the message dead-lettered), so a crash loses nothing and redelivers at most the messages
//! of the last batches; the documents' ids are deterministic and a duplicate key counts as
//! already written, so redelivery stores nothing twice: consumption is at least once, the effect
//! exactly once. A write that fails is retried, with backoff, for as long as it takes; the
//! consumer keeps its place meanwhile, and nothing is skipped.
//!
//! Three parts run side by side: the *gatherer* (a thread of its own, like the batch runner's
//! reader, so a slow hook never stalls the runtime) receives messages, runs the hook and gathers
//! batches ([`BatchPolicy`]); the *storer* (a task) writes a batch, dead-letters, commits and
//! counts while the next batch is gathered; the *reporter* (a task) sends the counts to the
//! sidecar. SIGTERM or SIGINT stops the gatherer, the storer finishes the batches in hand and
//! commits, and the app exits 0.

pub mod batching;
mod message;
mod report;

use std::{
    collections::HashMap,
    future::Future,
    process::ExitCode,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

pub use batching::BatchPolicy;
use message::{Disposition, Envelope};
pub use message::{IncomingMessage, MAX_DOCUMENT_BYTES, Wrangled, decode, default_id};
use mongodb::{
    Collection,
    bson::{RawDocumentBuf, doc},
    error::{ErrorKind, WriteFailure},
};
use rdkafka::{
    ClientContext, Offset, TopicPartitionList,
    consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer},
    error::{KafkaError, KafkaResult, RDKafkaErrorCode},
    producer::{FutureProducer, FutureRecord},
};
use report::Meter;
use tokio::{
    runtime::Handle,
    sync::{mpsc, oneshot, watch},
};
use tracing::{debug, error, info, warn};

use crate::{
    config::{ConfigError, StreamConfig},
    write::{Counts, DUPLICATE_KEY, WriteError, Writer, WriterOptions},
};

/// Tuning of a stream replica.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamOptions {
    /// When gathered messages are written.
    pub batch: BatchPolicy,
    /// How a batch is written: documents per `insert_many` and inserts at once.
    pub writer: WriterOptions,
    /// Longest one attempt to write a batch may take before it is retried.
    pub write_timeout: Duration,
    /// First wait before a failed write or dead letter is retried; doubled at every failure.
    pub min_backoff: Duration,
    /// Longest wait between two retries.
    pub max_backoff: Duration,
    /// After SIGTERM, how long the batches in hand may take to be stored and committed; past
    /// that the app exits 1 and the next replica consumes them again.
    pub stop_timeout: Duration,
    /// How long the wrangle hook may take on one message before the app counts as hung and
    /// stops sending measurements; `None` for three report intervals (at least 3 s).
    pub hang_after: Option<Duration>,
}

impl Default for StreamOptions {
    fn default() -> Self {
        Self {
            batch: BatchPolicy::default(),
            writer: WriterOptions { batch_size: 500, in_flight: 4 },
            write_timeout: Duration::from_secs(60),
            min_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(10),
            stop_timeout: Duration::from_secs(8),
            hang_after: None,
        }
    }
}

/// What a replica did until it stopped.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Summary {
    /// Documents stored.
    pub written: u64,
    /// Documents found already stored (a redelivered message, or the same business key twice).
    pub duplicate: u64,
    /// Messages sent to the dead-letter topic.
    pub dead_lettered: u64,
    /// Bytes of the stored messages' values.
    pub bytes: u64,
}

impl Summary {
    /// Messages ingested: written or found already written.
    pub fn stored(&self) -> u64 {
        self.written + self.duplicate
    }
}

/// Why a stream replica could not start or did not stop cleanly.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    /// The environment is missing a variable or has a bad one.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A Kafka client could not be set up.
    #[error("app {app} cannot {action}: {source}; check the MYSIMBDP_KAFKA_* variables and MYSIMBDP_TOPICS")]
    Kafka {
        /// The app.
        app: String,
        /// What it tried.
        action: &'static str,
        /// librdkafka's error.
        source: KafkaError,
    },
    /// Kafka reported an error the consumer cannot recover from.
    #[error("app {app} got a fatal error from Kafka: {source}; the replica must be restarted")]
    Fatal {
        /// The app.
        app: String,
        /// librdkafka's error.
        source: KafkaError,
    },
    /// The replica stopped before everything it had received was stored or dead-lettered.
    #[error(
        "app {app} stopped with {messages} messages neither stored nor dead-lettered ({reason}); their offsets are not committed, so the next replica consumes them again"
    )]
    Unfinished {
        /// The app.
        app: String,
        /// Messages in hand.
        messages: usize,
        /// Why they were not finished.
        reason: String,
    },
    /// A part of the pipeline ended unexpectedly.
    #[error("app {app}: the {part} ended unexpectedly: {reason}")]
    Stopped {
        /// The app.
        app: String,
        /// `gatherer`, `storer`...
        part: &'static str,
        /// What is known.
        reason: String,
    },
}

impl StreamError {
    /// A short, fixed name of the error's kind, for metric labels.
    pub fn category(&self) -> &'static str {
        match self {
            Self::Config(_) => "config",
            Self::Kafka { .. } => "kafka",
            Self::Fatal { .. } => "kafka_fatal",
            Self::Unfinished { .. } => "unfinished",
            Self::Stopped { .. } => "stopped",
        }
    }
}

/// How a replica ended.
#[derive(Debug)]
pub struct Outcome {
    /// What it did.
    pub summary: Summary,
    /// Why it did not stop cleanly, when it did not.
    pub error: Option<StreamError>,
}

impl Outcome {
    fn failed(error: StreamError) -> Self {
        Self { summary: Summary::default(), error: Some(error) }
    }

    /// The exit code to return from `main`: 0 after a clean stop, 1 otherwise (the platform
    /// starts the replica again).
    pub fn exit_code(&self) -> ExitCode {
        if self.error.is_none() { ExitCode::SUCCESS } else { ExitCode::FAILURE }
    }
}

/// A prepared stream replica: its configuration and a coredms client of the tenant's database.
pub struct Stream {
    config: StreamConfig,
    client: mongodb::Client,
    options: StreamOptions,
}

impl Stream {
    /// Prepares a replica from the process environment.
    pub async fn from_env() -> Result<Self, StreamError> {
        Self::new(StreamConfig::from_env()?).await
    }

    /// Prepares a replica from a configuration.
    pub async fn new(config: StreamConfig) -> Result<Self, StreamError> {
        let client = config.coredms_client().await?;
        Ok(Self { config, client, options: StreamOptions::default() })
    }

    /// The replica's configuration.
    pub fn config(&self) -> &StreamConfig {
        &self.config
    }

    /// The tenant's database, e.g. to load reference data before consuming.
    pub fn database(&self) -> mongodb::Database {
        self.client.database(&self.config.coredms.database)
    }

    /// Sets the replica's tuning.
    pub fn options(mut self, options: StreamOptions) -> Self {
        self.options = options;
        self
    }

    /// Consumes until SIGTERM or SIGINT, then finishes the batches in hand, commits and returns.
    pub async fn run<W>(self, wrangle: W) -> Outcome
    where
        W: FnMut(&IncomingMessage) -> Wrangled + Send + 'static,
    {
        self.run_until(wrangle, shutdown_signal()).await
    }

    /// Consumes until `stop` completes, then finishes the batches in hand, commits and returns.
    pub async fn run_until<W, S>(self, wrangle: W, stop: S) -> Outcome
    where
        W: FnMut(&IncomingMessage) -> Wrangled + Send + 'static,
        S: Future<Output = ()>,
    {
        let outcome = self.pipeline(wrangle, stop).await;
        let s = &outcome.summary;
        match &outcome.error {
            None => info!(
                written = s.written,
                duplicate = s.duplicate,
                dead_lettered = s.dead_lettered,
                bytes = s.bytes,
                "stream replica stopped"
            ),
            Some(e) => error!(
                error = %e,
                written = s.written,
                duplicate = s.duplicate,
                dead_lettered = s.dead_lettered,
                "stream replica failed"
            ),
        }
        outcome
    }

    async fn pipeline<W, S>(self, wrangle: W, stop: S) -> Outcome
    where
        W: FnMut(&IncomingMessage) -> Wrangled + Send + 'static,
        S: Future<Output = ()>,
    {
        let Self { config, client, options } = self;
        let app = config.app.clone();
        let kafka_error = |action, source| StreamError::Kafka { app: app.clone(), action, source };
        let offsets = Arc::new(Mutex::new(HashMap::new()));
        let commit_failed = Arc::new(AtomicBool::new(false));
        let hooks = Hooks {
            offsets: Arc::clone(&offsets),
            commit_failed: Arc::clone(&commit_failed),
            warned: Mutex::new(None),
        };
        let consumer: Arc<TenantConsumer> = match consumer_config(&config).create_with_context(hooks) {
            Ok(consumer) => Arc::new(consumer),
            Err(e) => return Outcome::failed(kafka_error("create its Kafka consumer", e)),
        };
        let topics: Vec<&str> = config.topics.iter().map(String::as_str).collect();
        if let Err(e) = consumer.subscribe(&topics) {
            return Outcome::failed(kafka_error("subscribe to its topics", e));
        }
        let producer: FutureProducer = match producer_config(&config).create() {
            Ok(producer) => producer,
            Err(e) => return Outcome::failed(kafka_error("create its dead-letter producer", e)),
        };
        let database = client.database(&config.coredms.database);
        if let Err(e) = database.run_command(doc! { "ping": 1 }).await {
            // Not fatal: coredms may come back, and every write is retried until it does.
            warn!(url = %config.coredms.url, user = %config.coredms.username, error = %e, "coredms is not reachable yet");
        }

        let meter = Arc::new(Meter::new());
        meter.beat();
        let (done_tx, done_rx) = watch::channel(false);
        let hang_after = options.hang_after.unwrap_or_else(|| report::default_hang_after(config.report_interval));
        let reporter = match &config.sidecar_addr {
            Some(addr) => Some(tokio::spawn(report::report(
                Arc::clone(&meter),
                addr.clone(),
                config.report_interval,
                hang_after,
                done_rx,
            ))),
            None => {
                warn!("MYSIMBDP_SIDECAR_ADDR is not set: no measurements are reported");
                None
            }
        };

        let (stop_tx, stop_rx) = watch::channel(None::<Instant>);
        let (batches_tx, batches_rx) = mpsc::channel(1);
        let (gathered_tx, mut gathered_rx) = oneshot::channel();
        let gatherer = Gatherer {
            handle: Handle::current(),
            consumer: Arc::clone(&consumer),
            policy: options.batch,
            batches: batches_tx,
            stop: stop_rx.clone(),
            meter: Arc::clone(&meter),
            app: app.clone(),
        };
        let spawned = std::thread::Builder::new().name("mysimbdp-gather".into()).spawn(move || {
            let _ = gathered_tx.send(gatherer.run(wrangle));
        });
        if let Err(e) = spawned {
            let reason = format!("cannot start the gatherer thread: {e}");
            return Outcome::failed(StreamError::Stopped { app, part: "gatherer", reason });
        }
        let storer = Storer {
            collection: database.collection::<RawDocumentBuf>(&config.collection),
            consumer: Arc::clone(&consumer),
            producer,
            options,
            meter: Arc::clone(&meter),
            offsets,
            commit_failed,
            stop: stop_rx,
            config: config.clone(),
            summary: Summary::default(),
        };
        let mut storing = tokio::spawn(storer.run(batches_rx));
        info!(
            app = %config.app,
            instance = %config.instance,
            topics = %config.topics.join(","),
            group = %config.consumer_group,
            collection = %config.collection,
            "stream replica consuming"
        );

        let mut early = None;
        tokio::select! {
            () = stop => info!("stopping: finishing the batches in hand"),
            gathered = &mut gathered_rx => early = Some(gathered),
        }
        let deadline = Instant::now() + options.stop_timeout;
        let _ = stop_tx.send(Some(deadline));
        let grace = tokio::time::sleep_until((deadline + Duration::from_secs(2)).into());
        tokio::pin!(grace);

        let gathered = match early {
            Some(gathered) => gathered,
            None => tokio::select! {
                gathered = &mut gathered_rx => gathered,
                () = &mut grace => Ok(Err(StreamError::Stopped {
                    app: app.clone(),
                    part: "gatherer",
                    reason: format!(
                        "the app's wrangle hook did not come back within {:?} of the stop",
                        options.stop_timeout
                    ),
                })),
            },
        };
        let gathered = gathered.unwrap_or_else(|_| {
            Err(StreamError::Stopped { app: app.clone(), part: "gatherer", reason: "its thread panicked".into() })
        });
        let stopped = |reason: String| StreamError::Stopped { app: app.clone(), part: "storer", reason };
        let (summary, stored_error) = tokio::select! {
            stored = &mut storing => stored.unwrap_or_else(|e| (Summary::default(), Some(stopped(e.to_string())))),
            () = &mut grace => (Summary::default(), Some(stopped("it did not finish in time".into()))),
        };
        let _ = done_tx.send(true);
        if let Some(reporter) = reporter {
            let _ = tokio::time::timeout(Duration::from_secs(2), reporter).await;
        }
        Outcome { summary, error: stored_error.or(gathered.err()) }
    }
}

/// Runs a stream replica configured by the process environment with `wrangle`, until SIGTERM or
/// SIGINT; see [`Stream::run`].
pub async fn run_stream<W>(wrangle: W) -> Outcome
where
    W: FnMut(&IncomingMessage) -> Wrangled + Send + 'static,
{
    match Stream::from_env().await {
        Ok(stream) => stream.run(wrangle).await,
        Err(e) => {
            error!(error = %e, "stream replica not configured");
            Outcome::failed(e)
        }
    }
}

/// Completes at the first SIGTERM (the platform stopping the replica) or SIGINT (Ctrl-C).
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut terminate) => {
                tokio::select! {
                    _ = terminate.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
                return;
            }
            Err(e) => warn!(error = %e, "cannot listen for SIGTERM; only SIGINT stops the replica cleanly"),
        }
    }
    if let Err(e) = tokio::signal::ctrl_c().await {
        warn!(error = %e, "cannot listen for SIGINT");
        std::future::pending::<()>().await;
    }
}

type TenantConsumer = StreamConsumer<Hooks>;
/// Next offset to commit, by topic and partition.
type Offsets = HashMap<(String, i32), i64>;

fn consumer_config(config: &StreamConfig) -> rdkafka::ClientConfig {
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

fn producer_config(config: &StreamConfig) -> rdkafka::ClientConfig {
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
struct Hooks {
    offsets: Arc<Mutex<Offsets>>,
    commit_failed: Arc<AtomicBool>,
    warned: Mutex<Option<Instant>>,
}

/// Shortest time between two warnings of the same kind.
const WARN_EVERY: Duration = Duration::from_secs(10);

impl Hooks {
    fn should_warn(&self) -> bool {
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

fn describe(partitions: &TopicPartitionList) -> String {
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

/// A message waiting to be stored.
struct Pending {
    document: RawDocumentBuf,
    envelope: Envelope,
    received: Instant,
}

/// Messages gathered for one write, and the dead letters among them.
#[derive(Default)]
struct Gathered {
    pending: Vec<Pending>,
    dead: Vec<(Envelope, String)>,
    oldest: Option<Instant>,
}

impl Gathered {
    fn len(&self) -> usize {
        self.pending.len() + self.dead.len()
    }

    fn add(&mut self, envelope: Envelope, disposition: Disposition, received: Instant) {
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
    fn offsets(&self) -> Offsets {
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
struct Gatherer {
    handle: Handle,
    consumer: Arc<TenantConsumer>,
    policy: BatchPolicy,
    batches: mpsc::Sender<Gathered>,
    stop: watch::Receiver<Option<Instant>>,
    meter: Arc<Meter>,
    app: String,
}

enum Event {
    Stop,
    Message(Envelope),
    Failed(KafkaError),
    Quiet,
}

impl Gatherer {
    fn run<W>(mut self, mut hook: W) -> Result<(), StreamError>
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
    fn hand_over(&self, batch: Gathered) -> bool {
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

/// Why one attempt at a batch failed.
enum Failure {
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
struct Storer {
    collection: Collection<RawDocumentBuf>,
    consumer: Arc<TenantConsumer>,
    producer: FutureProducer,
    options: StreamOptions,
    meter: Arc<Meter>,
    offsets: Arc<Mutex<Offsets>>,
    commit_failed: Arc<AtomicBool>,
    stop: watch::Receiver<Option<Instant>>,
    config: StreamConfig,
    summary: Summary,
}

/// How often a failed commit is tried again while no batch commits anew.
const RECOMMIT_EVERY: Duration = Duration::from_secs(5);

impl Storer {
    /// Stores batches until the gatherer ends (or the stop deadline passes); what was stored,
    /// and why it stopped early, if it did.
    async fn run(mut self, mut batches: mpsc::Receiver<Gathered>) -> (Summary, Option<StreamError>) {
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
    async fn store(&mut self, batch: Gathered) -> Result<(), StreamError> {
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
    async fn pause(&mut self, failure: Failure, backoff: Duration, messages: usize) -> Result<Duration, StreamError> {
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
    async fn write(&self, documents: &[RawDocumentBuf]) -> Result<(Counts, Vec<(usize, String)>), Failure> {
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

    async fn write_one_by_one(
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
    async fn dead_letter(
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
    fn commit(&self, batch: Offsets) {
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

    fn commit_all(&self, mode: CommitMode) {
        let offsets = self.offsets.lock().unwrap_or_else(|e| e.into_inner()).clone();
        if !offsets.is_empty()
            && let Err(e) = self.consumer.commit(&partition_list(&offsets), mode)
        {
            debug!(error = %e, "commit not queued; retried shortly");
        }
    }
}

fn partition_list(offsets: &Offsets) -> TopicPartitionList {
    let mut list = TopicPartitionList::with_capacity(offsets.len());
    for ((topic, partition), next) in offsets {
        // Adding an offset to a fresh list cannot fail; a failure would only skip a commit,
        // which a later one covers.
        let _ = list.add_partition_offset(topic, *partition, Offset::Offset(*next));
    }
    list
}

/// Whether coredms refused some documents for themselves (a write error other than a duplicate
/// key), rather than failing the whole write.
fn refuses_documents(error: &WriteError) -> bool {
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

    #[test]
    fn only_document_refusals_are_written_one_by_one() {
        let outage = WriteError::Stopped { collection: "c".into(), reason: "gone".into() };
        assert!(!refuses_documents(&outage));
        assert_eq!(
            StreamError::Unfinished { app: "a".into(), messages: 1, reason: "x".into() }.category(),
            "unfinished"
        );
    }

    #[test]
    fn the_default_tuning_is_coherent() {
        let options = StreamOptions::default();
        assert!(options.batch.max_messages >= options.writer.batch_size);
        assert!(options.min_backoff < options.max_backoff);
        assert!(options.stop_timeout < Duration::from_secs(10), "within the local runtime's stop grace");
    }
}
