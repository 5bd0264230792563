//! `acme-flights-ingest`: ACME Air's batch ingest app. The platform starts it with a run's
//! environment (see the ingest SDK's README); `--kind` says which export the run's files are.
//!
//! ```text
//! acme-flights-ingest --kind flights|planes|airlines
//! ```

use std::process::ExitCode;

use acme_flights_ingest::{Kind, Wrangler, load_airline_names};
use clap::Parser;
use mysimbdp_ingest_sdk::{batch::Batch, contract::exit, write::WriterOptions};

/// Ingests ACME Air's CSV exports into coredms.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// Which export the run's files are.
    #[arg(long, value_enum)]
    kind: Kind,
    /// The collection the airlines app writes, where flights find their carrier's name.
    #[arg(long, default_value = "airlines")]
    airlines_collection: String,
    /// Documents per insert.
    #[arg(long, default_value_t = WriterOptions::default().batch_size)]
    batch_size: usize,
    /// Inserts running at once.
    #[arg(long, default_value_t = WriterOptions::default().in_flight)]
    in_flight: usize,
    /// Reads at most this many rows per second: a deliberately slow app, to watch how the
    /// platform handles long, interrupted or competing runs.
    #[arg(long)]
    max_rows_per_second: Option<u32>,
}

#[tokio::main]
async fn main() -> ExitCode {
    mysimbdp_ingest_sdk::logging::init();
    let args = match Args::try_parse() {
        Ok(args) => Ok(args),
        // --help and --version.
        Err(e) if !e.use_stderr() => e.exit(),
        Err(e) => Err(e),
    };
    let batch = match Batch::from_env().await {
        Ok(batch) => batch,
        Err(outcome) => return outcome.exit_code(),
    };
    let args = match args {
        Ok(args) => args,
        // A wrong command line is the app's spec, not the files: exiting with clap's usual code
        // (2, bad input) would dead-letter them.
        Err(e) => return batch.abort(exit::RETRY, format!("bad command line: {}", e.render())).exit_code(),
    };
    let batch = batch
        .require_fields(args.kind.required_fields())
        .writer_options(WriterOptions { batch_size: args.batch_size, in_flight: args.in_flight });

    // Looked up once: a flight's carrier name is part of its document. A lookup that fails is
    // retried with the run rather than ingesting flights without names, which a retry could
    // not fix (the documents would then exist already).
    let airline_names = match args.kind {
        Kind::Flights => match load_airline_names(&batch.database(), &args.airlines_collection).await {
            Ok(names) => names,
            Err(e) => {
                let error = format!("cannot read carrier names from collection {}: {e}", args.airlines_collection);
                return batch.abort(exit::RETRY, error).exit_code();
            }
        },
        Kind::Planes | Kind::Airlines => Default::default(),
    };
    if args.kind == Kind::Flights && airline_names.is_empty() {
        tracing::warn!(collection = %args.airlines_collection, "no carrier names found; flights are stored without them");
    }
    let wrangler = Wrangler::new(args.kind, airline_names);
    let mut pace = args.max_rows_per_second.map(Pace::new);
    batch
        .run(move |file, record| {
            if let Some(pace) = pace.as_mut() {
                pace.wait();
            }
            wrangler.wrangle(&file.name, &record)
        })
        .await
        .exit_code()
}

/// Holds rows back to a fixed rate. The wrangling hook runs on a blocking thread, so it may
/// sleep.
struct Pace {
    per_second: f64,
    started: std::time::Instant,
    rows: u64,
}

impl Pace {
    fn new(per_second: u32) -> Self {
        Self { per_second: f64::from(per_second.max(1)), started: std::time::Instant::now(), rows: 0 }
    }

    fn wait(&mut self) {
        self.rows += 1;
        let due = std::time::Duration::from_secs_f64(self.rows as f64 / self.per_second);
        if let Some(ahead) = due.checked_sub(self.started.elapsed()) {
            std::thread::sleep(ahead);
        }
    }
}
