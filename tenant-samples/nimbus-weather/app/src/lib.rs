//! Nimbus Weather (tenant B) on mysimbdp: how its data becomes documents. [`observation`]
//! wrangles the hourly observations its stream app consumes, [`station`] the station reference
//! files its batch app ingests, [`units`] converts to SI units, and [`feed`] turns the sample
//! data into the messages its publisher sends. The binaries (`src/bin/`) are thin: the ingest
//! SDK does the platform's side.

pub mod feed;
pub mod observation;
pub mod station;
pub mod units;

/// Sets up logging to stderr, `RUST_LOG` filtering (default `info`), colours on a terminal only.
pub fn init_logging() {
    use std::io::IsTerminal;
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}
