//! The mysimbdp ingest SDK: what a tenant's ingest app links.
//!
//! [`contract`] is the platform's contract with an app (environment in, exit code and result
//! document out), documented in plain words in this crate's README so that an app can be
//! written in any language.
//!
//! A batch app is a wrangle hook given to [`batch::run_batch`] (or a [`batch::Batch`] when it
//! needs to prepare): [`config`] reads the run's environment, [`read`] streams the input files,
//! [`write`] stores the documents idempotently.
//!
//! A stream app is a wrangle hook given to [`stream::run_stream`] (or a [`stream::Stream`]): the
//! runner consumes the app's topics, stores documents through the same writer, dead-letters what
//! cannot be ingested, commits offsets only after storing, and reports measurements to the
//! platform's metrics sidecar.
//!
//! [`logging`] sets up logs the way the platform's containers write them.

pub mod batch;
pub mod config;
pub mod contract;
pub mod logging;
pub mod read;
pub mod stream;
pub mod write;

/// The coredms driver, for apps that query their database (e.g. reference data).
pub use mongodb;
/// The BSON types documents are built with (the version the writer uses).
pub use mongodb::bson;
/// The Kafka client the stream runner uses, for apps and tools that produce or consume more.
pub use rdkafka;
