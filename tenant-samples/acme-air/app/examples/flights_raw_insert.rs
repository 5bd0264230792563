//! The ceilings the app's throughput is measured against, on the same flights files:
//!
//! * the store's: the same flights documents, built in memory first, inserted with plain
//!   unordered `insert_many` calls into a fresh collection;
//! * the app's own CPU work without the store (`--encode-only`): reading the CSV, wrangling each
//!   row and encoding its document as BSON, one file after another on one thread.
//!
//! ```text
//! MYSIMBDP_COREDMS_{URL,USERNAME,PASSWORD,DATABASE,AUTH_MECHANISM,AUTH_SOURCE}=... \
//!   cargo run --release -p acme-flights-ingest --example flights_raw_insert -- \
//!   --collection raw --batch-size 1000 --in-flight 1 flights_2013_01.csv ...
//! cargo run --release -p acme-flights-ingest --example flights_raw_insert -- --encode-only flights_2013_*.csv
//! ```
//!
//! With `--json` the figures are printed as one JSON object (`mode`, `rows`, `bytes`,
//! `seconds`, `batch_size`, `in_flight`), for the benchmark that compares them.

use std::{collections::HashMap, path::PathBuf, time::Instant};

use acme_flights_ingest::{Kind, Wrangler};
use clap::Parser;
use futures::StreamExt;
use mysimbdp_ingest_sdk::{
    bson::{Document, RawDocumentBuf},
    config::CoreDmsConfig,
    contract::{Format, InputFile},
    mongodb::options::InsertManyOptions,
    read::Records,
};

/// Inserts pre-built flights documents and reports the rate.
#[derive(Parser, Debug)]
struct Args {
    /// The collection to fill (it should not exist).
    #[arg(long, required_unless_present = "encode_only")]
    collection: Option<String>,
    /// Documents per insert.
    #[arg(long, default_value_t = 1000)]
    batch_size: usize,
    /// Inserts running at once.
    #[arg(long, default_value_t = 1)]
    in_flight: usize,
    /// Only read, wrangle and encode the files on one thread; no store.
    #[arg(long)]
    encode_only: bool,
    /// Print the figures as one JSON object.
    #[arg(long)]
    json: bool,
    /// Flights CSV files.
    files: Vec<PathBuf>,
}

/// What a pass over the files measured.
struct Figures {
    mode: &'static str,
    rows: usize,
    bytes: u64,
    seconds: f64,
}

/// The files as the app receives them.
fn inputs(files: &[PathBuf]) -> std::io::Result<Vec<InputFile>> {
    files
        .iter()
        .map(|path| {
            Ok(InputFile {
                url: format!("file://{}", std::fs::canonicalize(path)?.display()),
                name: path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
                format: Format::Csv,
                bytes: 0,
                sha256: String::new(),
            })
        })
        .collect()
}

/// Reads and wrangles every file, handing each document to `sink`; returns rows and bytes.
fn wrangle_all(
    inputs: &[InputFile],
    mut sink: impl FnMut(Document) -> Result<(), Box<dyn std::error::Error>>,
) -> Result<(usize, u64), Box<dyn std::error::Error>> {
    let wrangler = Wrangler::new(Kind::Flights, HashMap::new());
    let (mut rows, mut bytes) = (0, 0);
    for input in inputs {
        let mut records = Records::open(input)?;
        for record in records.by_ref() {
            sink(wrangler.wrangle(&input.name, &record?)?)?;
            rows += 1;
        }
        bytes += records.bytes_read();
    }
    Ok((rows, bytes))
}

/// Reads, wrangles and encodes every file on this thread, as the app's reading thread does.
fn encode_only(inputs: &[InputFile]) -> Result<Figures, Box<dyn std::error::Error>> {
    let started = Instant::now();
    let mut encoded = 0usize;
    let (rows, bytes) = wrangle_all(inputs, |document| {
        encoded += RawDocumentBuf::from_document(&document)?.as_bytes().len();
        Ok(())
    })?;
    let seconds = started.elapsed().as_secs_f64();
    eprintln!("encoded {rows} documents, {:.1} MB of BSON", encoded as f64 / 1e6);
    Ok(Figures { mode: "encode-only", rows, bytes, seconds })
}

async fn insert(args: &Args, collection: &str, inputs: &[InputFile]) -> Result<Figures, Box<dyn std::error::Error>> {
    let config = CoreDmsConfig::from_lookup(&|name| std::env::var(name).ok())?;
    let client = config.client("raw-insert").await?;
    let collection = client.database(&config.database).collection::<Document>(collection);

    let built = Instant::now();
    let mut documents = Vec::new();
    let (rows, bytes) = wrangle_all(inputs, |document| {
        documents.push(document);
        Ok(())
    })?;
    eprintln!("built {rows} documents in {:.2} s", built.elapsed().as_secs_f64());

    let started = Instant::now();
    let mut batches = Vec::new();
    while !documents.is_empty() {
        let rest = documents.split_off(documents.len().min(args.batch_size.max(1)));
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
    Ok(Figures { mode: "insert", rows, bytes, seconds })
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let inputs = inputs(&args.files)?;
    let figures = match &args.collection {
        Some(collection) if !args.encode_only => insert(&args, collection, &inputs).await?,
        _ => encode_only(&inputs)?,
    };
    let Figures { mode, rows, bytes, seconds } = figures;
    if args.json {
        println!(
            "{{\"mode\":\"{mode}\",\"rows\":{rows},\"bytes\":{bytes},\"seconds\":{seconds:.4},\"batch_size\":{},\"in_flight\":{}}}",
            args.batch_size, args.in_flight
        );
    } else if mode == "insert" {
        println!(
            "raw insert_many: {rows} rows, {:.1} MB, batch {} x{} in flight: {seconds:.2} s, {:.0} rows/s, {:.2} MB/s",
            bytes as f64 / 1e6,
            args.batch_size,
            args.in_flight,
            rows as f64 / seconds,
            bytes as f64 / 1e6 / seconds
        );
    } else {
        println!(
            "read + wrangle + encode on one thread: {rows} rows, {:.1} MB: {seconds:.2} s, {:.0} rows/s, {:.2} MB/s",
            bytes as f64 / 1e6,
            rows as f64 / seconds,
            bytes as f64 / 1e6 / seconds
        );
    }
    Ok(())
}
