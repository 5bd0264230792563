//! `mysimbdp-sidecar`: the platform's metrics sidecar, one beside every stream app replica (a
//! native sidecar container of the pod, or a second local process). The app writes measurement
//! lines to it over TCP ([`listen`]); every report interval the sidecar sums them into a report
//! ([`aggregate`]) and publishes it to the tenant's reports topic ([`publish`]), where the
//! platform's monitor reads it. A window without any line is published with `silent: true`: the
//! app hung or died, which the app itself can no longer say.
//!
//! The sidecar sits between the app and Kafka so that a tenant's app needs nothing but a TCP
//! socket to be monitored, and a hung or dead app is still noticed: its sidecar keeps reporting.

#![forbid(unsafe_code)]

pub mod aggregate;
pub mod listen;
pub mod publish;

use std::time::Duration;

use clap::Parser;
use jiff::Timestamp;
use mysimbdp_ingest_sdk::{
    config::{KafkaConfig, SecretString},
    contract::env,
};
use tokio::{net::TcpListener, sync::mpsc};
use tracing::{info, warn};

use crate::{
    aggregate::{Aggregator, Identity},
    publish::Publisher,
};

const ABOUT: &str = "The mysimbdp metrics sidecar: sums a stream app's measurements into one report per interval and publishes it to the tenant's reports topic.";

const LONG_ABOUT: &str = "\
The mysimbdp metrics sidecar runs beside every stream app replica, with the same environment as
the app. It listens on MYSIMBDP_SIDECAR_ADDR for TCP connections from the app, which writes one
JSON measurement per line at least every report interval, e.g.

  {\"messages\":412,\"bytes\":98311,\"ingestionMs\":5120.5,\"deadLettered\":3}

(counts since the previous line; zeros when the app is idle). Every MYSIMBDP_REPORT_INTERVAL_MS
it publishes one report (JSON, key = the app's name) to MYSIMBDP_REPORTS_TOPIC as the tenant's
Kafka user: messages, bytes, processing rate, throughput, average ingestion time, dead letters,
totals since the start, the window and the instance. A window in which the app sent no line is
published with \"silent\": true, which tells the monitor the app hung or died. Until the app's
first line, windows within the start-up grace are not published.

Every option can be given by its environment variable, as the platform does. The sidecar stops
on SIGTERM or SIGINT, publishing the last window when the app spoke in it.";

/// The sidecar's command line; every option also reads the contract's environment variable.
#[derive(Parser, Debug, Clone)]
#[command(name = "mysimbdp-sidecar", version, about = ABOUT, long_about = LONG_ABOUT)]
pub struct Args {
    /// Where to listen for the app's measurement lines, host:port.
    #[arg(long, env = env::SIDECAR_ADDR, value_name = "HOST:PORT")]
    pub listen: String,
    /// Only check that a sidecar accepts connections at --listen, and exit: 0 when it does, 1
    /// when not (the pod's readiness probe, run inside the pod where the sidecar listens on
    /// loopback).
    #[arg(long)]
    pub probe: bool,
    /// The topic to publish reports to, full name (`<tenant>.mysimbdp.reports`).
    #[arg(long, env = env::REPORTS_TOPIC, value_name = "TOPIC")]
    pub reports_topic: String,
    /// Length of a report window, in milliseconds.
    #[arg(long, env = env::REPORT_INTERVAL_MS, default_value_t = 10_000, value_name = "MS",
          value_parser = clap::value_parser!(u64).range(1..))]
    pub interval_ms: u64,
    /// How long to wait for the app's first line before windows are published silent, in
    /// milliseconds; two intervals when not given.
    #[arg(long, value_name = "MS")]
    pub startup_grace_ms: Option<u64>,
    /// The tenant.
    #[arg(long, env = env::TENANT)]
    pub tenant: String,
    /// The app (its StreamIngestApp's name); the key of every report.
    #[arg(long, env = env::APP)]
    pub app: String,
    /// This replica's name.
    #[arg(long, env = env::INSTANCE)]
    pub instance: String,
    /// Kafka bootstrap servers.
    #[arg(long, env = env::KAFKA_BOOTSTRAP, value_name = "HOST:PORT[,...]")]
    pub kafka_bootstrap: String,
    /// Kafka security protocol.
    #[arg(long, env = env::KAFKA_SECURITY_PROTOCOL, default_value = "SASL_PLAINTEXT",
          value_parser = ["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"])]
    pub kafka_security_protocol: String,
    /// SASL mechanism.
    #[arg(long, env = env::KAFKA_SASL_MECHANISM, default_value = "SCRAM-SHA-512")]
    pub kafka_sasl_mechanism: String,
    /// The tenant's Kafka user (required with SASL).
    #[arg(long, env = env::KAFKA_USERNAME)]
    pub kafka_username: Option<String>,
    /// Its password (required with SASL); prefer the environment variable.
    #[arg(long, env = env::KAFKA_PASSWORD, hide_env_values = true)]
    pub kafka_password: Option<SecretString>,
    /// With SASL_SSL: PEM certificates of the CA that signed the brokers' certificates.
    #[arg(long, env = env::KAFKA_SSL_CA_PEM, hide_env_values = true)]
    pub kafka_ssl_ca_pem: Option<String>,
    /// The tenant's topic prefix; when given, the reports topic must be under it.
    #[arg(long, env = env::KAFKA_PREFIX)]
    pub kafka_prefix: Option<String>,
}

/// Why the sidecar could not run.
#[derive(Debug, thiserror::Error)]
pub enum SidecarError {
    /// An option is missing or unusable.
    #[error("{option} ({var}) {problem}")]
    Config {
        /// The command-line option.
        option: &'static str,
        /// Its environment variable.
        var: &'static str,
        /// What is wrong and how to fix it.
        problem: String,
    },
    /// The listening address cannot be bound.
    #[error("cannot listen on {addr} (--listen / MYSIMBDP_SIDECAR_ADDR): {source}; is another process using the port?")]
    Listen {
        /// The address.
        addr: String,
        /// Why.
        source: std::io::Error,
    },
    /// The Kafka producer cannot be created.
    #[error("cannot create the Kafka producer of {topic}: {source}; check the MYSIMBDP_KAFKA_* variables")]
    Producer {
        /// The reports topic.
        topic: String,
        /// librdkafka's error.
        source: rdkafka::error::KafkaError,
    },
}

impl SidecarError {
    /// A short, fixed name of the error's kind, for metric labels.
    pub fn category(&self) -> &'static str {
        match self {
            Self::Config { .. } => "config",
            Self::Listen { .. } => "listen",
            Self::Producer { .. } => "kafka",
        }
    }
}

impl Args {
    /// The Kafka settings, checked.
    pub fn kafka(&self) -> Result<KafkaConfig, SidecarError> {
        let sasl = self.kafka_security_protocol.starts_with("SASL_");
        let missing = |option, var| SidecarError::Config {
            option,
            var,
            problem: format!(
                "is required with {}; the tenant's credentials Secret has it",
                self.kafka_security_protocol
            ),
        };
        if sasl && self.kafka_username.is_none() {
            return Err(missing("--kafka-username", env::KAFKA_USERNAME));
        }
        if sasl && self.kafka_password.is_none() {
            return Err(missing("--kafka-password", env::KAFKA_PASSWORD));
        }
        let kafka = KafkaConfig {
            bootstrap: self.kafka_bootstrap.clone(),
            security_protocol: self.kafka_security_protocol.clone(),
            sasl_mechanism: sasl.then(|| self.kafka_sasl_mechanism.clone()),
            username: self.kafka_username.clone(),
            password: self.kafka_password.clone(),
            ssl_ca_pem: self.kafka_ssl_ca_pem.clone(),
            prefix: self.kafka_prefix.clone().filter(|p| !p.is_empty()),
        };
        kafka.check_prefixed(env::REPORTS_TOPIC, &self.reports_topic).map_err(|e| SidecarError::Config {
            option: "--reports-topic",
            var: env::REPORTS_TOPIC,
            problem: format!("is refused: {e}"),
        })?;
        Ok(kafka)
    }

    /// The report interval.
    pub fn interval(&self) -> Duration {
        Duration::from_millis(self.interval_ms.max(1))
    }

    /// The start-up grace.
    pub fn startup_grace(&self) -> Duration {
        self.startup_grace_ms.map_or(self.interval() * 2, Duration::from_millis)
    }
}

/// Runs the sidecar until `stop` completes.
pub async fn run(args: Args, stop: impl std::future::Future<Output = ()>) -> Result<(), SidecarError> {
    let kafka = args.kafka()?;
    let listener = TcpListener::bind(&args.listen)
        .await
        .map_err(|source| SidecarError::Listen { addr: args.listen.clone(), source })?;
    let publisher = Publisher::new(&kafka, &args.reports_topic, &format!("{}-sidecar", args.instance))
        .map_err(|source| SidecarError::Producer { topic: args.reports_topic.clone(), source })?;
    let (sink, mut measurements) = mpsc::channel(256);
    let server = tokio::spawn(listen::serve(listener, sink));
    let identity = Identity { tenant: args.tenant.clone(), app: args.app.clone(), instance: args.instance.clone() };
    let mut aggregator = Aggregator::new(identity, Timestamp::now(), args.startup_grace());
    let interval = args.interval();
    let mut windows = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
    windows.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    info!(
        listen = %args.listen,
        topic = %args.reports_topic,
        interval_ms = args.interval_ms,
        app = %args.app,
        instance = %args.instance,
        "metrics sidecar started"
    );
    tokio::pin!(stop);
    let mut corrected = 0;
    loop {
        tokio::select! {
            _ = windows.tick() => {
                if let Some(report) = aggregator.close(Timestamp::now()) {
                    if report.silent {
                        warn!(window_end = %report.window_end, "no measurement from the app in this window; reporting it silent");
                    }
                    publisher.publish(&report);
                }
                if aggregator.corrected > corrected {
                    warn!(lines = aggregator.corrected - corrected, "measurements with a negative or non-numeric ingestion time were counted as zero");
                    corrected = aggregator.corrected;
                }
            }
            Some(measurement) = measurements.recv() => aggregator.add(&measurement, Timestamp::now()),
            () = &mut stop => break,
        }
    }
    server.abort();
    // Lines already received still count in the last window.
    while let Ok(measurement) = measurements.try_recv() {
        aggregator.add(&measurement, Timestamp::now());
    }
    if let Some(report) = aggregator.close_last(Timestamp::now()) {
        publisher.publish(&report);
    }
    let flushed = tokio::task::spawn_blocking(move || publisher.flush(Duration::from_secs(5))).await;
    match flushed {
        Ok(Ok(())) => info!("metrics sidecar stopped"),
        Ok(Err(e)) => warn!(error = %e, "metrics sidecar stopped; the last reports may not have been delivered"),
        Err(e) => warn!(error = %e, "metrics sidecar stopped while flushing its reports"),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(extra: &[&str]) -> Result<Args, clap::Error> {
        let mut argv = vec![
            "mysimbdp-sidecar",
            "--listen",
            "127.0.0.1:9465",
            "--reports-topic",
            "nimbus-weather.mysimbdp.reports",
            "--tenant",
            "nimbus-weather",
            "--app",
            "observations",
            "--instance",
            "observations-0",
            "--kafka-bootstrap",
            "127.0.0.1:19092",
        ];
        argv.extend_from_slice(extra);
        Args::try_parse_from(argv)
    }

    #[test]
    fn options_are_checked_and_name_their_variable() {
        let with_credentials = ["--kafka-username", "tenant-nimbus-weather", "--kafka-password", "pw"];
        let ok = args(&with_credentials).unwrap();
        assert_eq!((ok.interval(), ok.startup_grace()), (Duration::from_secs(10), Duration::from_secs(20)));
        let kafka = ok.kafka().unwrap();
        assert_eq!(kafka.client_config().get("sasl.mechanism"), Some("SCRAM-SHA-512"));

        let error = args(&[]).unwrap().kafka().unwrap_err().to_string();
        assert!(error.starts_with("--kafka-username (MYSIMBDP_KAFKA_USERNAME) is required"), "{error}");

        let mut outside = with_credentials.to_vec();
        outside.extend(["--kafka-prefix", "acme-air."]);
        let error = args(&outside).unwrap().kafka().unwrap_err().to_string();
        assert!(error.contains("--reports-topic") && error.contains("`acme-air.`"), "{error}");

        assert!(args(&["--interval-ms", "0"]).is_err());
        assert!(args(&["--kafka-security-protocol", "SCRAM"]).is_err());
    }

    #[test]
    fn debug_output_redacts_the_password() {
        let parsed = args(&["--kafka-username", "tenant-nimbus-weather", "--kafka-password", "pw-7f3a9c"]).unwrap();
        let printed = format!("{parsed:?} {:?}", parsed.kafka().unwrap());
        assert!(!printed.contains("pw-7f3a9c"), "{printed}");
        assert!(printed.contains("tenant-nimbus-weather"), "{printed}");
    }

    #[test]
    fn help_explains_the_protocol_and_the_environment() {
        let help = <Args as clap::CommandFactory>::command().render_long_help().to_string();
        for needle in ["MYSIMBDP_SIDECAR_ADDR", "MYSIMBDP_REPORTS_TOPIC", "silent", "ingestionMs", "--interval-ms"] {
            assert!(help.contains(needle), "--help lacks {needle}:\n{help}");
        }
    }
}
