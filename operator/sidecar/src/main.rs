//! `mysimbdp-sidecar`: the metrics sidecar's entry point (see the library for what it does and
//! `mysimbdp-sidecar --help` for its options). Exit code 0 after SIGTERM or SIGINT, 1 when it
//! cannot start, 2 for a bad command line.

#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::Parser;
use mysimbdp_ingest_sdk::stream::shutdown_signal;
use mysimbdp_sidecar::{Args, run};

// One thread: the sidecar handles one app's lines and a report per interval.
#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args = Args::parse();
    if args.probe {
        let timeout = std::time::Duration::from_secs(2);
        let accepts = tokio::time::timeout(timeout, tokio::net::TcpStream::connect(&args.listen)).await;
        return if matches!(accepts, Ok(Ok(_))) { ExitCode::SUCCESS } else { ExitCode::FAILURE };
    }
    mysimbdp_ingest_sdk::logging::init();
    match run(args, shutdown_signal()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, category = e.category(), "metrics sidecar cannot run");
            ExitCode::FAILURE
        }
    }
}
