//! `nimbus-stations-ingest`: Nimbus Weather's batch app (the `stations` BatchIngestApp). The
//! platform starts it with a batch run's environment (see the ingest SDK's README); it ingests
//! station reference files (`stations.jsonl`), one document per station keyed by its FAA code.

use std::process::ExitCode;

use mysimbdp_ingest_sdk::batch;
use nimbus_weather::station;

#[tokio::main]
async fn main() -> ExitCode {
    mysimbdp_ingest_sdk::logging::init();
    if std::env::args().any(|a| a == "--help" || a == "-h") {
        println!(
            "nimbus-stations-ingest: ingests Nimbus Weather's station files (JSON lines with {}) into coredms.\n\
             Run by the platform with a batch run's environment (MYSIMBDP_INPUT, MYSIMBDP_RESULT_FILE...); takes no options.",
            station::REQUIRED_FIELDS.join(", ")
        );
        return ExitCode::SUCCESS;
    }
    batch::run_batch(|file, record| station::wrangle(&file.name, &record)).await.exit_code()
}
