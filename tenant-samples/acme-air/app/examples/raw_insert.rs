//! The ceiling the app's throughput is measured against: the same flights documents, built in
//! memory first, inserted with plain unordered `insert_many` calls into a fresh collection.
//!
//! ```text
//! MYSIMBDP_COREDMS_{URL,USERNAME,PASSWORD,DATABASE,AUTH_MECHANISM,AUTH_SOURCE}=... \
//!   cargo run --release -p acme-flights-ingest --example raw_insert -- \
//!   --collection raw --batch-size 1000 --in-flight 1 flights_2013_01.csv ...
//! ```

use std::{collections::HashMap, path::PathBuf, time::Instant};

use acme_flights_ingest::{Kind, Wrangler};
use clap::Parser;
use futures::StreamExt;
use mysimbdp_ingest_sdk::{
    bson::Document,
    config::CoreDmsConfig,
    contract::{Format, InputFile},
    mongodb::options::InsertManyOptions,
    read::Records,
};

/// Inserts pre-built flights documents and reports the rate.
#[derive(Parser, Debug)]
struct Args {
    /// The collection to fill (it should not exist).
    #[arg(long)]
    collection: String,
    /// Documents per insert.
    #[arg(long, default_value_t = 1000)]
    batch_size: usize,
    /// Inserts running at once.
    #[arg(long, default_value_t = 1)]
    in_flight: usize,
    /// Flights CSV files.
    files: Vec<PathBuf>,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let config = CoreDmsConfig::from_lookup(&|name| std::env::var(name).ok())?;
    let client = config.client("raw-insert").await?;
    let collection = client.database(&config.database).collection::<Document>(&args.collection);

    let built = Instant::now();
    let wrangler = Wrangler::new(Kind::Flights, HashMap::new());
    let (mut documents, mut bytes) = (Vec::new(), 0);
    for path in &args.files {
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let input = InputFile {
            url: format!("file://{}", std::fs::canonicalize(path)?.display()),
            name: name.clone(),
            format: Format::Csv,
            bytes: 0,
            sha256: String::new(),
        };
        let mut records = Records::open(&input)?;
        for record in records.by_ref() {
            documents.push(wrangler.wrangle(&name, &record?)?);
        }
        bytes += records.bytes_read();
    }
    let rows = documents.len();
    eprintln!("built {rows} documents in {:.2} s", built.elapsed().as_secs_f64());

    let started = Instant::now();
    let mut batches = Vec::new();
    while !documents.is_empty() {
        let rest = documents.split_off(documents.len().min(args.batch_size));
        batches.push(std::mem::replace(&mut documents, rest));
    }
    let options = InsertManyOptions::builder().ordered(false).build();
    let inserts = futures::stream::iter(batches)
        .map(|batch| collection.insert_many(batch).with_options(options.clone()).into_future())
        .buffer_unordered(args.in_flight.max(1));
    let results: Vec<_> = inserts.collect().await;
    let seconds = started.elapsed().as_secs_f64();
    for result in results {
        result?;
    }
    println!(
        "raw insert_many: {rows} rows, {:.1} MB, batch {} x{} in flight: {seconds:.2} s, {:.0} rows/s, {:.2} MB/s",
        bytes as f64 / 1e6,
        args.batch_size,
        args.in_flight,
        rows as f64 / seconds,
        bytes as f64 / 1e6 / seconds
    );
    Ok(())
}
