//! The ceiling the stream app's throughput is measured against: every observation of
//! `weather.csv`, wrangled as the app does and built in memory first, inserted with plain
//! unordered `insert_many` calls into a fresh collection. Prints its figures as one JSON line.
//!
//! ```text
//! MYSIMBDP_COREDMS_{URL,USERNAME,PASSWORD,DATABASE,AUTH_MECHANISM,AUTH_SOURCE}=... \
//!   cargo run --release -p nimbus-weather --example weather_raw_insert -- --collection raw weather.csv
//! ```

use std::{path::PathBuf, time::Instant};

use clap::Parser;
use futures::StreamExt;
use mysimbdp_ingest_sdk::{
    bson::Document,
    config::CoreDmsConfig,
    contract::{Format, InputFile},
    mongodb::options::InsertManyOptions,
    read::Records,
};
use nimbus_weather::{feed::message_of_row, observation::wrangle};

/// Inserts pre-built observation documents and reports the rate.
#[derive(Parser, Debug)]
struct Args {
    /// The collection to fill (it should not exist).
    #[arg(long)]
    collection: String,
    /// Documents per insert.
    #[arg(long, default_value_t = 1000)]
    batch_size: usize,
    /// Inserts running at once.
    #[arg(long, default_value_t = 2)]
    in_flight: usize,
    /// The weather.csv file.
    file: PathBuf,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let input = InputFile {
        url: format!("file://{}", std::fs::canonicalize(&args.file)?.display()),
        name: "weather.csv".into(),
        format: Format::Csv,
        bytes: 0,
        sha256: String::new(),
    };
    let mut documents = Vec::new();
    let mut bytes = 0;
    for record in Records::open(&input)? {
        let message = serde_json::Value::Object(message_of_row(&record?));
        bytes += serde_json::to_vec(&message)?.len();
        // The app refuses implausible rows; so does the ceiling.
        if let Ok((_, document)) = wrangle(&message) {
            documents.push(document);
        }
    }
    let rows = documents.len();

    let config = CoreDmsConfig::from_lookup(&|name| std::env::var(name).ok())?;
    let client = config.client("raw-insert").await?;
    let collection = client.database(&config.database).collection::<Document>(&args.collection);
    let started = Instant::now();
    let mut batches = Vec::new();
    while !documents.is_empty() {
        let rest = documents.split_off(documents.len().min(args.batch_size.max(1)));
        batches.push(std::mem::replace(&mut documents, rest));
    }
    let options = InsertManyOptions::builder().ordered(false).build();
    let mut inserts = futures::stream::iter(batches)
        .map(|batch| collection.insert_many(batch).with_options(options.clone()).into_future())
        .buffer_unordered(args.in_flight.max(1));
    while let Some(result) = inserts.next().await {
        result?;
    }
    let seconds = started.elapsed().as_secs_f64();
    println!("{}", serde_json::json!({ "rows": rows, "bytes": bytes, "seconds": seconds }));
    Ok(())
}
