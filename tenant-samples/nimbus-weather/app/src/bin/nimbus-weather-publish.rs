//! `nimbus-weather-publish`: Nimbus Weather's producer tool. It reads `weather.csv` (from
//! `tenant-samples/fetch-data.sh`) and publishes each row as a JSON observation to the tenant's
//! observations topic, keyed by station, at a chosen rate, optionally mixing in malformed
//! messages. It prints a JSON summary of what it sent as its last stdout line.
//!
//! ```text
//! nimbus-weather-publish --file weather.csv [--rate 500] [--limit 1000] [--skip 0] [--malformed-every 100]
//! ```
//!
//! Exit code 0 when every message was delivered, 1 when some were not, 2 for a bad command line
//! or an unreadable file.

use std::{
    path::PathBuf,
    process::ExitCode,
    time::{Duration, Instant},
};

use clap::Parser;
use futures::{StreamExt, stream::FuturesUnordered};
use mysimbdp_ingest_sdk::{
    config::KafkaConfig,
    contract::{Format, InputFile, env},
    rdkafka::producer::{FutureProducer, FutureRecord},
    read::{ReadError, Records},
};
use nimbus_weather::feed;
use tracing::{info, warn};

/// Publishes weather.csv rows as JSON observations to the tenant's Kafka topic.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// The weather.csv file (tenant-samples/fetch-data.sh prints the folder it is in).
    #[arg(long, env = "NIMBUS_WEATHER_CSV")]
    file: PathBuf,
    /// Topic to publish to, full name; `<MYSIMBDP_KAFKA_PREFIX>observations` when not given.
    #[arg(long)]
    topic: Option<String>,
    /// Messages per second; 0 sends as fast as possible.
    #[arg(long, default_value_t = 0.0)]
    rate: f64,
    /// Good messages to send at most (rows of the file); all rows when not given.
    #[arg(long)]
    limit: Option<u64>,
    /// Rows of the file to skip first.
    #[arg(long, default_value_t = 0)]
    skip: u64,
    /// After every N good messages, one malformed message (not JSON, not UTF-8, a bad value,
    /// no time, in turn); 0 sends none.
    #[arg(long, default_value_t = 0, value_name = "N")]
    malformed_every: u64,
    /// Prints every message sent.
    #[arg(long)]
    verbose: bool,
    /// Kafka bootstrap servers.
    #[arg(long, env = env::KAFKA_BOOTSTRAP)]
    kafka_bootstrap: String,
    /// Kafka security protocol.
    #[arg(long, env = env::KAFKA_SECURITY_PROTOCOL, default_value = "SASL_PLAINTEXT")]
    kafka_security_protocol: String,
    /// SASL mechanism.
    #[arg(long, env = env::KAFKA_SASL_MECHANISM, default_value = "SCRAM-SHA-512")]
    kafka_sasl_mechanism: String,
    /// The tenant's Kafka user.
    #[arg(long, env = env::KAFKA_USERNAME)]
    kafka_username: Option<String>,
    /// Its password; prefer the environment variable.
    #[arg(long, env = env::KAFKA_PASSWORD, hide_env_values = true)]
    kafka_password: Option<mysimbdp_ingest_sdk::config::SecretString>,
    /// With SASL_SSL: PEM certificates of the CA that signed the brokers' certificates.
    #[arg(long, env = env::KAFKA_SSL_CA_PEM, hide_env_values = true)]
    kafka_ssl_ca_pem: Option<String>,
    /// The tenant's topic prefix (`<tenant>.`).
    #[arg(long, env = env::KAFKA_PREFIX)]
    kafka_prefix: Option<String>,
}

/// Deliveries awaited at once; the producer's queue holds the rest back.
const IN_FLIGHT: usize = 10_000;

#[tokio::main]
async fn main() -> ExitCode {
    mysimbdp_ingest_sdk::logging::init();
    let args = Args::parse();
    let topic = match (&args.topic, &args.kafka_prefix) {
        (Some(topic), _) => topic.clone(),
        (None, Some(prefix)) => format!("{prefix}observations"),
        (None, None) => {
            eprintln!(
                "error: give --topic, or --kafka-prefix / MYSIMBDP_KAFKA_PREFIX to publish to <prefix>observations"
            );
            return ExitCode::from(2);
        }
    };
    let input = InputFile {
        url: format!("file://{}", args.file.display()),
        name: args.file.file_name().map_or_else(|| "weather.csv".into(), |n| n.to_string_lossy().into_owned()),
        format: Format::Csv,
        bytes: 0,
        sha256: String::new(),
    };
    let records = match Records::open(&input) {
        Ok(records) => records,
        Err(e) => {
            eprintln!("error: {e}; run tenant-samples/fetch-data.sh and pass its folder's weather.csv");
            return ExitCode::from(2);
        }
    };
    let sasl = args.kafka_security_protocol.starts_with("SASL_");
    let kafka = KafkaConfig {
        bootstrap: args.kafka_bootstrap.clone(),
        security_protocol: args.kafka_security_protocol.clone(),
        sasl_mechanism: sasl.then(|| args.kafka_sasl_mechanism.clone()),
        username: args.kafka_username.clone(),
        password: args.kafka_password.clone(),
        ssl_ca_pem: args.kafka_ssl_ca_pem.clone(),
        prefix: args.kafka_prefix.clone(),
    };
    if let Err(e) = kafka.check_prefixed(env::KAFKA_PREFIX, &topic) {
        eprintln!("error: --topic {topic}: {e}");
        return ExitCode::from(2);
    }
    let producer: FutureProducer = match kafka
        .client_config()
        .set("client.id", "nimbus-weather-publish")
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .set("linger.ms", "5")
        // Long enough to ride out a broker restart.
        .set("message.timeout.ms", "300000")
        .create()
    {
        Ok(producer) => producer,
        Err(e) => {
            eprintln!("error: cannot create the Kafka producer: {e}; check the MYSIMBDP_KAFKA_* settings");
            return ExitCode::FAILURE;
        }
    };

    let started = Instant::now();
    let (mut good, mut malformed, mut failed, mut skipped_bad) = (0u64, 0u64, 0u64, 0u64);
    let mut good_bytes = 0u64;
    let mut deliveries = FuturesUnordered::new();
    let mut rows = records.skip(usize::try_from(args.skip).unwrap_or(usize::MAX));
    let limit = args.limit.unwrap_or(u64::MAX);
    let pace = (args.rate > 0.0).then(|| Duration::from_secs_f64(1.0 / args.rate));
    let mut sent: u64 = 0;
    while good < limit {
        let record = match rows.next() {
            None => break,
            Some(Ok(record)) => record,
            Some(Err(e @ ReadError::Malformed { .. })) => {
                warn!(error = %e, "skipping an unreadable row");
                skipped_bad += 1;
                continue;
            }
            Some(Err(e)) => {
                eprintln!("error: {e}");
                return ExitCode::from(2);
            }
        };
        let message = feed::message_of_row(&record);
        let key = message.get("origin").and_then(|o| o.as_str()).unwrap_or_default().to_owned();
        let mut outgoing =
            vec![(key.clone(), serde_json::Value::Object(message.clone()).to_string().into_bytes(), None)];
        if args.malformed_every > 0 && (good + 1) % args.malformed_every == 0 {
            let kind = feed::Malformed::nth(malformed);
            outgoing.push((format!("malformed-{malformed}"), kind.value(&message), Some(kind)));
        }
        for (key, value, kind) in outgoing {
            if let Some(pace) = pace {
                tokio::time::sleep_until((started + pace.mul_f64(sent as f64)).into()).await;
            }
            match kind {
                Some(kind) => {
                    malformed += 1;
                    info!(key, ?kind, "sending a malformed message on purpose");
                }
                None => {
                    good += 1;
                    good_bytes += value.len() as u64;
                }
            }
            if args.verbose {
                println!("{key} {}", String::from_utf8_lossy(&value));
            }
            let record = FutureRecord::to(&topic).key(key.as_bytes()).payload(&value);
            match producer.send_result(record) {
                Ok(delivery) => deliveries.push(delivery),
                Err((e, _)) => {
                    warn!(error = %e, "a message could not be queued");
                    failed += 1;
                }
            }
            sent += 1;
            while deliveries.len() >= IN_FLIGHT {
                failed += count_failed(deliveries.next().await);
            }
        }
    }
    while let Some(delivery) = deliveries.next().await {
        failed += count_failed(Some(delivery));
    }
    let seconds = started.elapsed().as_secs_f64();
    let summary = serde_json::json!({
        "topic": topic,
        "good": good,
        "goodBytes": good_bytes,
        "malformed": malformed,
        "failed": failed,
        "skippedRows": skipped_bad,
        "seconds": seconds,
        "ratePerSecond": if seconds > 0.0 { sent as f64 / seconds } else { 0.0 },
    });
    info!(%summary, "published");
    println!("{summary}");
    if failed == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE }
}

type Delivered = Result<
    mysimbdp_ingest_sdk::rdkafka::producer::future_producer::OwnedDeliveryResult,
    futures::channel::oneshot::Canceled,
>;

fn count_failed(delivery: Option<Delivered>) -> u64 {
    match delivery {
        Some(Ok(Ok(_))) | None => 0,
        Some(Ok(Err((e, _)))) => {
            warn!(error = %e, "a message was not delivered");
            1
        }
        Some(Err(_)) => {
            warn!("a delivery was abandoned");
            1
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_redacts_the_password() {
        let args = Args::try_parse_from([
            "nimbus-weather-publish",
            "--file=weather.csv",
            "--kafka-bootstrap=127.0.0.1:19092",
            "--kafka-username=tenant-nimbus-weather",
            "--kafka-password=pw-5d1e90",
        ])
        .expect("arguments");
        let printed = format!("{args:?}");
        assert!(!printed.contains("pw-5d1e90") && printed.contains("tenant-nimbus-weather"), "{printed}");
    }
}
