//! A run's or replica's configuration, typed: what the platform put in the environment (see
//! [`contract::env`](crate::contract::env)), checked once at start so that a wrong variable is
//! reported by name before any file is read or any message consumed. [`BatchConfig`] is a batch
//! run's, [`StreamConfig`] a stream replica's; both share [`CoreDmsConfig`], and a stream replica
//! (and its metrics sidecar) reaches Kafka through [`KafkaConfig`].

use std::{path::PathBuf, str::FromStr, time::Duration};

use mongodb::options::{AuthMechanism, ClientOptions, Credential};
pub use secrecy::{ExposeSecret, SecretString};

use crate::contract::{InputFile, env};

/// A variable of the run's environment is missing or unusable. These are the platform's doing,
/// not the tenant's data.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ConfigError {
    /// A required variable is not set (or empty).
    #[error("{var} is not set; the platform sets it for every run, so check the app's environment")]
    Missing {
        /// The variable's name.
        var: &'static str,
    },
    /// A variable is set to something that cannot be used.
    #[error("{var} is invalid: {reason}")]
    Invalid {
        /// The variable's name.
        var: &'static str,
        /// What is wrong with it.
        reason: String,
    },
}

/// The tenant's delivery guarantee, as the platform passes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// A record may be lost, never duplicated.
    AtMostOnce,
    /// A record is never lost, and may be delivered again (the writer's ids make that harmless).
    AtLeastOnce,
    /// A record is never lost and stored once.
    EffectivelyOnce,
}

impl FromStr for Delivery {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "AtMostOnce" => Ok(Self::AtMostOnce),
            "AtLeastOnce" => Ok(Self::AtLeastOnce),
            "EffectivelyOnce" => Ok(Self::EffectivelyOnce),
            other => Err(format!("`{other}` is not one of AtMostOnce, AtLeastOnce, EffectivelyOnce")),
        }
    }
}

/// How to reach the tenant's database in coredms. `Debug` redacts the password.
#[derive(Debug, Clone)]
pub struct CoreDmsConfig {
    /// `mongodb://host:port/`, without credentials.
    pub url: String,
    /// The tenant's user.
    pub username: String,
    /// Its password.
    pub password: SecretString,
    /// The tenant's database.
    pub database: String,
    /// `PLAIN`, `SCRAM-SHA-256`...; `None` lets the driver negotiate.
    pub auth_mechanism: Option<String>,
    /// The database that holds the user (`$external` for PLAIN); `None` for the driver's default.
    pub auth_source: Option<String>,
}

impl CoreDmsConfig {
    /// Reads the `MYSIMBDP_COREDMS_*` variables through `lookup` (a variable's value by name).
    pub fn from_lookup(lookup: &impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        Ok(Self {
            url: required(lookup, env::COREDMS_URL)?,
            username: required(lookup, env::COREDMS_USERNAME)?,
            password: required(lookup, env::COREDMS_PASSWORD)?.into(),
            database: required(lookup, env::COREDMS_DATABASE)?,
            auth_mechanism: optional(lookup, env::COREDMS_AUTH_MECHANISM),
            auth_source: optional(lookup, env::COREDMS_AUTH_SOURCE),
        })
    }

    /// A client authenticated as the tenant's user. It connects lazily: the first operation
    /// reports an unreachable server, after a bounded server-selection wait.
    pub async fn client(&self, app_name: &str) -> Result<mongodb::Client, ConfigError> {
        let invalid = |var, reason: String| ConfigError::Invalid { var, reason };
        let mut options =
            ClientOptions::parse(&self.url).await.map_err(|e| invalid(env::COREDMS_URL, e.to_string()))?;
        let mechanism = match &self.auth_mechanism {
            Some(name) => {
                Some(name.parse::<AuthMechanism>().map_err(|e| invalid(env::COREDMS_AUTH_MECHANISM, e.to_string()))?)
            }
            None => None,
        };
        options.credential = Some(
            Credential::builder()
                .username(self.username.clone())
                .password(self.password.expose_secret().to_owned())
                .mechanism(mechanism)
                .source(self.auth_source.clone())
                .build(),
        );
        options.app_name = Some(app_name.to_owned());
        // A run should fail (and be retried) soon when coredms is down, rather than hang for the
        // driver's default 30 s per operation; the URL may still say otherwise.
        options.server_selection_timeout.get_or_insert(Duration::from_secs(15));
        mongodb::Client::with_options(options).map_err(|e| invalid(env::COREDMS_URL, e.to_string()))
    }
}

/// Everything a batch run is told by the platform.
#[derive(Debug, Clone)]
pub struct BatchConfig {
    /// The tenant's name.
    pub tenant: String,
    /// The app's name.
    pub app: String,
    /// This run's id.
    pub run_id: String,
    /// The tenant's delivery guarantee.
    pub delivery: Delivery,
    /// The files to ingest, in order.
    pub input: Vec<InputFile>,
    /// Where the result document goes.
    pub result_file: PathBuf,
    /// The collection to write, in the tenant's database.
    pub collection: String,
    /// The tenant's coredms database.
    pub coredms: CoreDmsConfig,
}

impl BatchConfig {
    /// Reads the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads the variables through `lookup` (a variable's value by name), e.g. from a map in a
    /// test.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let input_text = required(&lookup, env::INPUT)?;
        let input: Vec<InputFile> = serde_json::from_str(&input_text).map_err(|e| ConfigError::Invalid {
            var: env::INPUT,
            reason: format!("not a JSON array of input files ({e})"),
        })?;
        let delivery = required(&lookup, env::DELIVERY)?
            .parse()
            .map_err(|reason| ConfigError::Invalid { var: env::DELIVERY, reason })?;
        Ok(Self {
            tenant: required(&lookup, env::TENANT)?,
            app: required(&lookup, env::APP)?,
            run_id: required(&lookup, env::RUN_ID)?,
            delivery,
            input,
            result_file: required(&lookup, env::RESULT_FILE)?.into(),
            collection: required(&lookup, env::COLLECTION)?,
            coredms: CoreDmsConfig::from_lookup(&lookup)?,
        })
    }

    /// A client of the tenant's coredms database; see [`CoreDmsConfig::client`].
    pub async fn coredms_client(&self) -> Result<mongodb::Client, ConfigError> {
        self.coredms.client(&format!("mysimbdp-{}-{}", self.tenant, self.app)).await
    }
}

/// How to reach the shared Kafka cluster as the tenant's user (the `MYSIMBDP_KAFKA_*`
/// variables, from the tenant's credentials Secret). `Debug` redacts the password.
#[derive(Debug, Clone)]
pub struct KafkaConfig {
    /// Bootstrap servers, `host:port[,host:port...]`.
    pub bootstrap: String,
    /// `SASL_PLAINTEXT`, `SASL_SSL`, `SSL` or `PLAINTEXT`.
    pub security_protocol: String,
    /// SASL mechanism (`SCRAM-SHA-512`); `None` without SASL.
    pub sasl_mechanism: Option<String>,
    /// The tenant's Kafka user; required with SASL.
    pub username: Option<String>,
    /// Its password; required with SASL.
    pub password: Option<SecretString>,
    /// With `SSL`/`SASL_SSL`: PEM certificates of the CA to trust instead of the system's.
    pub ssl_ca_pem: Option<String>,
    /// The prefix of every topic and consumer group the user may use (`<tenant>.`), when known.
    pub prefix: Option<String>,
}

/// Security protocols librdkafka knows.
const SECURITY_PROTOCOLS: [&str; 4] = ["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"];

impl KafkaConfig {
    /// Reads the `MYSIMBDP_KAFKA_*` variables through `lookup` (a variable's value by name).
    pub fn from_lookup(lookup: &impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let security_protocol = required(lookup, env::KAFKA_SECURITY_PROTOCOL)?.trim().to_ascii_uppercase();
        if !SECURITY_PROTOCOLS.contains(&security_protocol.as_str()) {
            return Err(ConfigError::Invalid {
                var: env::KAFKA_SECURITY_PROTOCOL,
                reason: format!("`{security_protocol}` is not one of {}", SECURITY_PROTOCOLS.join(", ")),
            });
        }
        let sasl = security_protocol.starts_with("SASL_");
        let credential = |var| if sasl { required(lookup, var).map(Some) } else { Ok(optional(lookup, var)) };
        Ok(Self {
            bootstrap: required(lookup, env::KAFKA_BOOTSTRAP)?,
            sasl_mechanism: if sasl { Some(required(lookup, env::KAFKA_SASL_MECHANISM)?) } else { None },
            username: credential(env::KAFKA_USERNAME)?,
            password: credential(env::KAFKA_PASSWORD)?.map(SecretString::from),
            prefix: optional(lookup, env::KAFKA_PREFIX),
            ssl_ca_pem: optional(lookup, env::KAFKA_SSL_CA_PEM),
            security_protocol,
        })
    }

    /// librdkafka settings of a client authenticated as the tenant's user; callers add their
    /// role's settings (group, acks...).
    pub fn client_config(&self) -> rdkafka::ClientConfig {
        let mut config = rdkafka::ClientConfig::new();
        config.set("bootstrap.servers", &self.bootstrap).set("security.protocol", &self.security_protocol);
        if let Some(mechanism) = &self.sasl_mechanism {
            config.set("sasl.mechanism", mechanism);
        }
        if let Some(username) = &self.username {
            config.set("sasl.username", username);
        }
        if let Some(password) = &self.password {
            config.set("sasl.password", password.expose_secret());
        }
        if self.security_protocol.ends_with("SSL") {
            // The broker's certificate must name the host connected to (librdkafka's default,
            // spelled out).
            config.set("ssl.endpoint.identification.algorithm", "https");
            if let Some(pem) = &self.ssl_ca_pem {
                config.set("ssl.ca.pem", pem);
            }
        }
        config
    }

    /// Checks that `name` (a topic or consumer group given in `var`) is under the tenant's
    /// prefix: the tenant's Kafka user may use nothing else.
    pub fn check_prefixed(&self, var: &'static str, name: &str) -> Result<(), ConfigError> {
        match &self.prefix {
            Some(prefix) if !name.starts_with(prefix.as_str()) => Err(ConfigError::Invalid {
                var,
                reason: format!(
                    "`{name}` is not under the tenant's prefix `{prefix}` ({}); the tenant's Kafka user may only use topics and groups named `{prefix}...`",
                    env::KAFKA_PREFIX
                ),
            }),
            _ => Ok(()),
        }
    }
}

/// Report interval when `MYSIMBDP_REPORT_INTERVAL_MS` is not set.
pub const DEFAULT_REPORT_INTERVAL: Duration = Duration::from_secs(10);

/// Everything a stream replica is told by the platform. The app and its metrics sidecar get the
/// same environment; the sidecar reads only part of it.
#[derive(Debug, Clone)]
pub struct StreamConfig {
    /// The tenant's name.
    pub tenant: String,
    /// The app's name.
    pub app: String,
    /// This replica's name (`MYSIMBDP_INSTANCE`; `<app>-<pid>` when unset).
    pub instance: String,
    /// The tenant's delivery guarantee.
    pub delivery: Delivery,
    /// The collection to write, in the tenant's database.
    pub collection: String,
    /// The tenant's coredms database.
    pub coredms: CoreDmsConfig,
    /// The tenant's Kafka user.
    pub kafka: KafkaConfig,
    /// Topics to consume, full names.
    pub topics: Vec<String>,
    /// The consumer group, full name.
    pub consumer_group: String,
    /// Where messages that cannot be ingested go, full name.
    pub dead_letter_topic: String,
    /// `host:port` of the metrics sidecar; `None` when unset (nothing is reported then).
    pub sidecar_addr: Option<String>,
    /// How often measurements are reported.
    pub report_interval: Duration,
}

impl StreamConfig {
    /// Reads the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads the variables through `lookup` (a variable's value by name), e.g. from a map in a
    /// test.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let kafka = KafkaConfig::from_lookup(&lookup)?;
        let topics: Vec<String> = required(&lookup, env::TOPICS)?
            .split(',')
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(str::to_owned)
            .collect();
        if topics.is_empty() {
            return Err(ConfigError::Invalid {
                var: env::TOPICS,
                reason: "names no topic; give full topic names, comma-separated".into(),
            });
        }
        for topic in &topics {
            kafka.check_prefixed(env::TOPICS, topic)?;
        }
        let consumer_group = required(&lookup, env::CONSUMER_GROUP)?;
        kafka.check_prefixed(env::CONSUMER_GROUP, &consumer_group)?;
        let dead_letter_topic = required(&lookup, env::DEAD_LETTER_TOPIC)?;
        kafka.check_prefixed(env::DEAD_LETTER_TOPIC, &dead_letter_topic)?;
        let delivery = required(&lookup, env::DELIVERY)?
            .parse()
            .map_err(|reason| ConfigError::Invalid { var: env::DELIVERY, reason })?;
        let app = required(&lookup, env::APP)?;
        Ok(Self {
            tenant: required(&lookup, env::TENANT)?,
            instance: optional(&lookup, env::INSTANCE).unwrap_or_else(|| format!("{app}-{}", std::process::id())),
            app,
            delivery,
            collection: required(&lookup, env::COLLECTION)?,
            coredms: CoreDmsConfig::from_lookup(&lookup)?,
            kafka,
            topics,
            consumer_group,
            dead_letter_topic,
            sidecar_addr: sidecar_addr(&lookup)?,
            report_interval: report_interval(&lookup)?,
        })
    }

    /// A client of the tenant's coredms database; see [`CoreDmsConfig::client`].
    pub async fn coredms_client(&self) -> Result<mongodb::Client, ConfigError> {
        self.coredms.client(&format!("mysimbdp-{}-{}", self.tenant, self.app)).await
    }
}

/// `MYSIMBDP_SIDECAR_ADDR`, checked to be `host:port`; `None` when unset.
pub fn sidecar_addr(lookup: &impl Fn(&str) -> Option<String>) -> Result<Option<String>, ConfigError> {
    let Some(addr) = optional(lookup, env::SIDECAR_ADDR) else { return Ok(None) };
    let addr = addr.trim().to_owned();
    match addr.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0) => Ok(Some(addr)),
        _ => Err(ConfigError::Invalid {
            var: env::SIDECAR_ADDR,
            reason: format!("`{addr}` is not `host:port` (e.g. `127.0.0.1:9465`)"),
        }),
    }
}

/// `MYSIMBDP_REPORT_INTERVAL_MS`, a positive number of milliseconds;
/// [`DEFAULT_REPORT_INTERVAL`] when unset.
pub fn report_interval(lookup: &impl Fn(&str) -> Option<String>) -> Result<Duration, ConfigError> {
    let Some(text) = optional(lookup, env::REPORT_INTERVAL_MS) else { return Ok(DEFAULT_REPORT_INTERVAL) };
    match text.trim().parse::<u64>() {
        Ok(ms) if ms > 0 => Ok(Duration::from_millis(ms)),
        _ => Err(ConfigError::Invalid {
            var: env::REPORT_INTERVAL_MS,
            reason: format!("`{text}` is not a positive whole number of milliseconds"),
        }),
    }
}

fn required(lookup: &impl Fn(&str) -> Option<String>, var: &'static str) -> Result<String, ConfigError> {
    optional(lookup, var).ok_or(ConfigError::Missing { var })
}

fn optional(lookup: &impl Fn(&str) -> Option<String>, var: &'static str) -> Option<String> {
    lookup(var).filter(|value| !value.trim().is_empty())
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::contract::Format;

    fn vars() -> HashMap<&'static str, String> {
        [
            (env::TENANT, "acme-air"),
            (env::APP, "flights"),
            (env::RUN_ID, "flights-1"),
            (env::DELIVERY, "AtLeastOnce"),
            (env::INPUT, r#"[{"url":"file:///s/a.csv","name":"a.csv","format":"Csv","bytes":3,"sha256":"ab"}]"#),
            (env::RESULT_FILE, "/tmp/result.json"),
            (env::COLLECTION, "flights"),
            (env::COREDMS_URL, "mongodb://127.0.0.1:27018/"),
            (env::COREDMS_USERNAME, "tenant_acme_air"),
            (env::COREDMS_PASSWORD, "secret"),
            (env::COREDMS_DATABASE, "acme_air"),
            (env::COREDMS_AUTH_MECHANISM, "PLAIN"),
            (env::COREDMS_AUTH_SOURCE, "$external"),
        ]
        .into_iter()
        .map(|(k, v)| (k, v.to_owned()))
        .collect()
    }

    fn parse(vars: &HashMap<&'static str, String>) -> Result<BatchConfig, ConfigError> {
        BatchConfig::from_lookup(|name| vars.get(name).cloned())
    }

    #[test]
    fn a_complete_environment_is_typed() {
        let config = parse(&vars()).unwrap();
        assert_eq!(config.delivery, Delivery::AtLeastOnce);
        assert_eq!(config.input[0].format, Format::Csv);
        assert_eq!(config.coredms.auth_source.as_deref(), Some("$external"));
        assert!(!format!("{config:?}").contains("secret"), "the password is redacted");
    }

    #[test]
    fn errors_name_the_variable() {
        let mut missing = vars();
        missing.remove(env::COLLECTION);
        let error = parse(&missing).unwrap_err();
        assert!(error.to_string().contains("MYSIMBDP_COLLECTION"), "{error}");

        let mut bad = vars();
        bad.insert(env::INPUT, "{".into());
        let error = parse(&bad).unwrap_err();
        assert!(error.to_string().starts_with("MYSIMBDP_INPUT is invalid"), "{error}");

        let mut bad = vars();
        bad.insert(env::DELIVERY, "Twice".into());
        assert!(parse(&bad).unwrap_err().to_string().contains("MYSIMBDP_DELIVERY"));
    }

    fn stream_vars() -> HashMap<&'static str, String> {
        let mut vars = vars();
        vars.remove(env::INPUT);
        vars.remove(env::RESULT_FILE);
        vars.remove(env::RUN_ID);
        vars.extend(
            [
                (env::TENANT, "nimbus-weather"),
                (env::APP, "observations"),
                (env::INSTANCE, "observations-0"),
                (env::KAFKA_BOOTSTRAP, "127.0.0.1:19092"),
                (env::KAFKA_SECURITY_PROTOCOL, "SASL_PLAINTEXT"),
                (env::KAFKA_SASL_MECHANISM, "SCRAM-SHA-512"),
                (env::KAFKA_USERNAME, "tenant-nimbus-weather"),
                (env::KAFKA_PASSWORD, "kafka-secret"),
                (env::KAFKA_PREFIX, "nimbus-weather."),
                (env::TOPICS, "nimbus-weather.observations, nimbus-weather.late"),
                (env::CONSUMER_GROUP, "nimbus-weather.weather-ingest"),
                (env::DEAD_LETTER_TOPIC, "nimbus-weather.mysimbdp.dead-letter"),
                (env::REPORTS_TOPIC, "nimbus-weather.mysimbdp.reports"),
                (env::SIDECAR_ADDR, "127.0.0.1:9465"),
                (env::REPORT_INTERVAL_MS, "5000"),
            ]
            .map(|(k, v)| (k, v.to_owned())),
        );
        vars
    }

    fn parse_stream(vars: &HashMap<&'static str, String>) -> Result<StreamConfig, ConfigError> {
        StreamConfig::from_lookup(|name| vars.get(name).cloned())
    }

    #[test]
    fn a_stream_environment_is_typed() {
        let config = parse_stream(&stream_vars()).unwrap();
        assert_eq!(config.topics, ["nimbus-weather.observations", "nimbus-weather.late"]);
        assert_eq!(config.report_interval, Duration::from_secs(5));
        assert_eq!(config.sidecar_addr.as_deref(), Some("127.0.0.1:9465"));
        assert_eq!(config.instance, "observations-0");
        let debug = format!("{config:?}");
        assert!(!debug.contains("kafka-secret") && !debug.contains("\"secret\""), "passwords are redacted: {debug}");
        let client = config.kafka.client_config();
        assert_eq!(client.get("sasl.username"), Some("tenant-nimbus-weather"));
        assert_eq!(client.get("security.protocol"), Some("SASL_PLAINTEXT"));
        assert_eq!(client.get("ssl.ca.pem"), None);
    }

    #[test]
    fn sasl_ssl_clients_trust_the_platform_ca() {
        let pem = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
        let mut vars = stream_vars();
        vars.insert(env::KAFKA_SECURITY_PROTOCOL, "SASL_SSL".into());
        vars.insert(env::KAFKA_SSL_CA_PEM, pem.into());
        let client = parse_stream(&vars).unwrap().kafka.client_config();
        assert_eq!(client.get("security.protocol"), Some("SASL_SSL"));
        assert_eq!(client.get("ssl.ca.pem"), Some(pem));
        assert_eq!(client.get("ssl.endpoint.identification.algorithm"), Some("https"));
    }

    #[test]
    fn stream_errors_name_the_variable_and_the_fix() {
        let mut outside = stream_vars();
        outside.insert(env::TOPICS, "acme-air.flight-events".into());
        let error = parse_stream(&outside).unwrap_err().to_string();
        assert!(error.starts_with("MYSIMBDP_TOPICS is invalid") && error.contains("`nimbus-weather.`"), "{error}");

        let mut group = stream_vars();
        group.insert(env::CONSUMER_GROUP, "weather-ingest".into());
        assert!(parse_stream(&group).unwrap_err().to_string().contains("MYSIMBDP_CONSUMER_GROUP"));

        for (var, value) in [
            (env::SIDECAR_ADDR, "localhost"),
            (env::REPORT_INTERVAL_MS, "0"),
            (env::REPORT_INTERVAL_MS, "5s"),
            (env::KAFKA_SECURITY_PROTOCOL, "SCRAM"),
            (env::TOPICS, " , "),
        ] {
            let mut bad = stream_vars();
            bad.insert(var, value.into());
            let error = parse_stream(&bad).unwrap_err().to_string();
            assert!(error.starts_with(&format!("{var} is invalid")), "{var}={value}: {error}");
        }

        let mut no_password = stream_vars();
        no_password.remove(env::KAFKA_PASSWORD);
        assert!(parse_stream(&no_password).unwrap_err().to_string().contains("MYSIMBDP_KAFKA_PASSWORD is not set"));
    }

    #[test]
    fn optional_stream_settings_have_defaults() {
        let mut vars = stream_vars();
        for var in [env::SIDECAR_ADDR, env::REPORT_INTERVAL_MS, env::INSTANCE, env::KAFKA_PREFIX] {
            vars.remove(var);
        }
        let config = parse_stream(&vars).unwrap();
        assert_eq!((config.sidecar_addr, config.report_interval), (None, DEFAULT_REPORT_INTERVAL));
        assert!(config.instance.starts_with("observations-"));
    }

    #[test]
    fn empty_optional_auth_settings_mean_negotiate() {
        let mut vars = vars();
        vars.insert(env::COREDMS_AUTH_MECHANISM, String::new());
        vars.remove(env::COREDMS_AUTH_SOURCE);
        let config = parse(&vars).unwrap();
        assert_eq!((config.coredms.auth_mechanism, config.coredms.auth_source), (None, None));
    }
}
