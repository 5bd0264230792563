//! `nimbus-weather-ingest`: Nimbus Weather's stream app (the `observations` StreamIngestApp).
//! The platform starts it with a stream replica's environment (see the ingest SDK's README); it
//! consumes hourly observations and stores them in SI units, one document per station and hour.
//!
//! ```text
//! nimbus-weather-ingest [--slow-ms N] [--stall-after N]
//! ```
//!
//! The two flags misbehave on purpose, to watch the platform react: `--slow-ms` makes every
//! message take longer than the app's ingestion-time threshold allows (the monitor scales out),
//! `--stall-after` makes the app stop making progress while it stays alive (its sidecar reports
//! it silent and the monitor restarts it).

use std::{process::ExitCode, time::Duration};

use clap::Parser;
use mysimbdp_ingest_sdk::stream::Stream;
use nimbus_weather::observation;
use tracing::{error, warn};

/// Ingests Nimbus Weather's hourly observations from Kafka into coredms.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// Sleeps this many milliseconds on every message: a deliberately slow app.
    #[arg(long, default_value_t = 0, value_name = "N")]
    slow_ms: u64,
    /// Stops making progress after this many messages, staying alive and sending no more
    /// measurements: a deliberately stalled app.
    #[arg(long, value_name = "N")]
    stall_after: Option<u64>,
}

#[tokio::main]
async fn main() -> ExitCode {
    mysimbdp_ingest_sdk::logging::init();
    let args = Args::parse();
    let stream = match Stream::from_env().await {
        Ok(stream) => stream,
        Err(e) => {
            error!(error = %e, "cannot start");
            return ExitCode::FAILURE;
        }
    };
    let slow = Duration::from_millis(args.slow_ms);
    let mut seen: u64 = 0;
    stream
        .run(move |message| {
            seen += 1;
            if let Some(limit) = args.stall_after
                && seen > limit
            {
                warn!(after = limit, "stalling on purpose (--stall-after): no more progress from here");
                // The wrangling runs on a thread of its own: parking it stalls the app without
                // burning CPU, and the process stays alive.
                loop {
                    std::thread::park();
                }
            }
            if !slow.is_zero() {
                std::thread::sleep(slow);
            }
            observation::wrangle(message.json())
        })
        .await
        .exit_code()
}
