//! A batch run's configuration, typed: what the platform put in the environment (see
//! [`contract::env`](crate::contract::env)), checked once at start so that a wrong variable is
//! reported by name before any file is read.

use std::{fmt, path::PathBuf, str::FromStr, time::Duration};

use mongodb::options::{AuthMechanism, ClientOptions, Credential};

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

/// How to reach the tenant's database in coredms.
#[derive(Clone, PartialEq, Eq)]
pub struct CoreDmsConfig {
    /// `mongodb://host:port/`, without credentials.
    pub url: String,
    /// The tenant's user.
    pub username: String,
    /// Its password.
    pub password: String,
    /// The tenant's database.
    pub database: String,
    /// `PLAIN`, `SCRAM-SHA-256`...; `None` lets the driver negotiate.
    pub auth_mechanism: Option<String>,
    /// The database that holds the user (`$external` for PLAIN); `None` for the driver's default.
    pub auth_source: Option<String>,
}

// The password stays out of logs and panic messages.
impl fmt::Debug for CoreDmsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CoreDmsConfig")
            .field("url", &self.url)
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .field("database", &self.database)
            .field("auth_mechanism", &self.auth_mechanism)
            .field("auth_source", &self.auth_source)
            .finish()
    }
}

impl CoreDmsConfig {
    /// Reads the `MYSIMBDP_COREDMS_*` variables through `lookup` (a variable's value by name).
    pub fn from_lookup(lookup: &impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        Ok(Self {
            url: required(lookup, env::COREDMS_URL)?,
            username: required(lookup, env::COREDMS_USERNAME)?,
            password: required(lookup, env::COREDMS_PASSWORD)?,
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
                .password(self.password.clone())
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
#[derive(Debug, Clone, PartialEq, Eq)]
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

    #[test]
    fn empty_optional_auth_settings_mean_negotiate() {
        let mut vars = vars();
        vars.insert(env::COREDMS_AUTH_MECHANISM, String::new());
        vars.remove(env::COREDMS_AUTH_SOURCE);
        let config = parse(&vars).unwrap();
        assert_eq!((config.coredms.auth_mechanism, config.coredms.auth_source), (None, None));
    }
}
