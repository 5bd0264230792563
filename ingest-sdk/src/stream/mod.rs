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
mod gather;
mod kafka;
mod message;
mod report;
mod store;

use std::{
    collections::HashMap,
    future::Future,
    process::ExitCode,
    sync::{Arc, Mutex, atomic::AtomicBool},
    time::{Duration, Instant},
};

pub use batching::BatchPolicy;
pub use message::{IncomingMessage, MAX_DOCUMENT_BYTES, Wrangled, decode, default_id};
use mongodb::bson::{RawDocumentBuf, doc};
use rdkafka::{
    consumer::{Consumer, StreamConsumer},
    error::KafkaError,
    producer::FutureProducer,
};
use report::Meter;
use tokio::{
    runtime::Handle,
    sync::{mpsc, oneshot, watch},
};
use tracing::{error, info, warn};

use crate::{
    config::{ConfigError, StreamConfig},
    write::WriterOptions,
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
        let hooks = kafka::Hooks {
            offsets: Arc::clone(&offsets),
            commit_failed: Arc::clone(&commit_failed),
            warned: Mutex::new(None),
        };
        let consumer: Arc<TenantConsumer> = match kafka::consumer_config(&config).create_with_context(hooks) {
            Ok(consumer) => Arc::new(consumer),
            Err(e) => return Outcome::failed(kafka_error("create its Kafka consumer", e)),
        };
        let topics: Vec<&str> = config.topics.iter().map(String::as_str).collect();
        if let Err(e) = consumer.subscribe(&topics) {
            return Outcome::failed(kafka_error("subscribe to its topics", e));
        }
        let producer: FutureProducer = match kafka::producer_config(&config).create() {
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
        let gatherer = gather::Gatherer {
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
        let storer = store::Storer {
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

/// The replica's consumer, with its callbacks.
type TenantConsumer = StreamConsumer<kafka::Hooks>;
/// Next offset to commit, by topic and partition.
type Offsets = HashMap<(String, i32), i64>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_tuning_is_coherent() {
        let options = StreamOptions::default();
        assert!(options.batch.max_messages >= options.writer.batch_size);
        assert!(options.min_backoff < options.max_backoff);
        assert!(options.stop_timeout < Duration::from_secs(10), "within the local runtime's stop grace");
    }
}
