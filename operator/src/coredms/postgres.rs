//! Admin sessions with the PostgreSQL under FerretDB, secured as the URL asks in libpq's terms:
//! `sslmode` (`disable`, `prefer`, `require`, `verify-ca`, `verify-full`) and `sslrootcert`
//! (the CA that signed the server's certificate; `--postgres-ca-file` overrides it).
//! tokio-postgres itself knows neither `verify-*` nor `sslrootcert`, so both are taken out of
//! the URL here and turned into an OpenSSL connector (`postgres-openssl`).
//!
//! As in libpq, `prefer` and `require` encrypt without checking whom they talk to, except that
//! `require` with a CA file verifies the chain (like `verify-ca`); `verify-full` also checks
//! that the certificate names the host. Platforms should use `verify-full`.

use std::path::{Path, PathBuf};

use openssl::ssl::SslVerifyMode;
use postgres_openssl::MakeTlsConnector;
use tokio_postgres::{Client, Config, NoTls, config::SslMode};
use tracing::debug;

use crate::{
    secret::{ExposeSecret, SecretString},
    tls,
};

/// How the admin sessions are secured (libpq's `sslmode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsMode {
    /// No TLS.
    Disable,
    /// TLS when the server offers it, unverified.
    Prefer,
    /// TLS or no session; the chain is verified only when a CA file is given.
    Require,
    /// TLS with the server's chain verified.
    VerifyCa,
    /// TLS with the chain verified and the host name checked against the certificate.
    VerifyFull,
}

impl TlsMode {
    const NAMES: [(&str, TlsMode); 5] = [
        ("disable", TlsMode::Disable),
        ("prefer", TlsMode::Prefer),
        ("require", TlsMode::Require),
        ("verify-ca", TlsMode::VerifyCa),
        ("verify-full", TlsMode::VerifyFull),
    ];

    fn parse(value: &str) -> Result<Self, PostgresUrlError> {
        Self::NAMES
            .iter()
            .find(|(name, _)| *name == value)
            .map(|&(_, mode)| mode)
            .ok_or_else(|| PostgresUrlError::SslMode { value: value.to_owned() })
    }
}

/// Why the PostgreSQL URL (with its TLS settings) cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum PostgresUrlError {
    /// `sslmode` has a value libpq does not know either.
    #[error(
        "MYSIMBDP_POSTGRES_URL has sslmode={value:?}; use one of disable, prefer, require, verify-ca, verify-full \
         (verify-full with sslrootcert=<CA file> on a production platform)"
    )]
    SslMode {
        /// The value given.
        value: String,
    },
    /// The rest of the URL does not parse.
    #[error(
        "MYSIMBDP_POSTGRES_URL is not a usable PostgreSQL URL (postgres://user:password@host:port/database): {source}"
    )]
    Parse {
        /// tokio-postgres's error (it never contains the password).
        source: tokio_postgres::Error,
    },
    /// The CA file cannot be used.
    #[error(
        "{source}; --postgres-ca-file (or sslrootcert in MYSIMBDP_POSTGRES_URL) must name the PEM certificate of the CA that signed PostgreSQL's"
    )]
    CaFile {
        /// What is wrong with it.
        source: tls::CaFileError,
    },
}

/// Opens admin sessions with PostgreSQL: the URL's settings and the TLS they ask for.
pub struct PostgresConnector {
    config: Config,
    mode: TlsMode,
    tls: Option<MakeTlsConnector>,
}

impl std::fmt::Debug for PostgresConnector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // tokio-postgres's Config redacts the password itself.
        f.debug_struct("PostgresConnector").field("config", &self.config).field("mode", &self.mode).finish()
    }
}

impl PostgresConnector {
    /// Reads `url` (`postgres://…`, or libpq's `key=value` form without the TLS extensions) and
    /// sets up the TLS its `sslmode` asks for (libpq's default, `prefer`, when it has none),
    /// trusting `ca_file` or else the URL's `sslrootcert`.
    pub fn new(url: &SecretString, ca_file: Option<&Path>) -> Result<Self, PostgresUrlError> {
        let (rest, sslmode, sslrootcert) = split_tls_params(url.expose_secret());
        let mut config: Config = rest.parse().map_err(|source| PostgresUrlError::Parse { source })?;
        let mode = match sslmode {
            Some(value) => TlsMode::parse(&value)?,
            None => match config.get_ssl_mode() {
                SslMode::Disable => TlsMode::Disable,
                SslMode::Require => TlsMode::Require,
                _ => TlsMode::Prefer,
            },
        };
        let ca_file = ca_file.map(Path::to_owned).or(sslrootcert.map(PathBuf::from));
        config.ssl_mode(match mode {
            TlsMode::Disable => SslMode::Disable,
            TlsMode::Prefer => SslMode::Prefer,
            TlsMode::Require | TlsMode::VerifyCa | TlsMode::VerifyFull => SslMode::Require,
        });
        let tls = match mode {
            TlsMode::Disable => None,
            _ => {
                let verify_chain = match mode {
                    TlsMode::Prefer => false,
                    TlsMode::Require => ca_file.is_some(),
                    _ => true,
                };
                let mut builder =
                    tls::client(ca_file.as_deref()).map_err(|source| PostgresUrlError::CaFile { source })?;
                if !verify_chain {
                    builder.set_verify(SslVerifyMode::NONE);
                }
                let mut connector = MakeTlsConnector::new(builder.build());
                let check_host = mode == TlsMode::VerifyFull;
                connector.set_callback(move |configuration, _| {
                    configuration.set_verify_hostname(check_host);
                    Ok(())
                });
                Some(connector)
            }
        };
        Ok(Self { config, mode, tls })
    }

    /// The TLS mode in force.
    pub fn mode(&self) -> TlsMode {
        self.mode
    }

    /// A new admin session; its connection runs on a task of its own until the client is dropped.
    pub async fn connect(&self) -> Result<Client, tokio_postgres::Error> {
        match &self.tls {
            None => {
                let (client, connection) = self.config.connect(NoTls).await?;
                tokio::spawn(async move {
                    if let Err(error) = connection.await {
                        debug!(%error, "PostgreSQL admin connection closed");
                    }
                });
                Ok(client)
            }
            Some(tls) => {
                let (client, connection) = self.config.connect(tls.clone()).await?;
                tokio::spawn(async move {
                    if let Err(error) = connection.await {
                        debug!(%error, "PostgreSQL admin connection closed");
                    }
                });
                Ok(client)
            }
        }
    }
}

/// Takes `sslmode` and `sslrootcert` out of a `postgres://` URL's query (percent-decoded);
/// other forms are returned unchanged.
fn split_tls_params(url: &str) -> (String, Option<String>, Option<String>) {
    let is_url = url.starts_with("postgres://") || url.starts_with("postgresql://");
    let Some((base, query)) = url.split_once('?').filter(|_| is_url) else { return (url.to_owned(), None, None) };
    let (mut sslmode, mut sslrootcert, mut kept) = (None, None, Vec::new());
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some(("sslmode", value)) => sslmode = Some(percent_decode(value)),
            Some(("sslrootcert", value)) => sslrootcert = Some(percent_decode(value)),
            _ => kept.push(pair),
        }
    }
    let rest = if kept.is_empty() { base.to_owned() } else { format!("{base}?{}", kept.join("&")) };
    (rest, sslmode, sslrootcert)
}

fn percent_decode(value: &str) -> String {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok());
        match (bytes[i], hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_parameters_are_taken_out_of_the_url() {
        let (rest, mode, ca) =
            split_tls_params("postgres://u:p@127.0.0.1:15432/db?sslmode=verify-full&sslrootcert=/a%20b/ca.crt");
        assert_eq!(rest, "postgres://u:p@127.0.0.1:15432/db");
        assert_eq!((mode.as_deref(), ca.as_deref()), (Some("verify-full"), Some("/a b/ca.crt")));

        let (rest, mode, ca) =
            split_tls_params("postgresql://h/db?application_name=x&sslmode=require&connect_timeout=5");
        assert_eq!(rest, "postgresql://h/db?application_name=x&connect_timeout=5");
        assert_eq!((mode.as_deref(), ca), (Some("require"), None));

        let key_value = "host=h dbname=db sslmode=disable";
        assert_eq!(split_tls_params(key_value), (key_value.to_owned(), None, None));
    }

    #[test]
    fn modes_follow_libpq() {
        let connector = |url: &str| PostgresConnector::new(&SecretString::from(url), None);
        let mode = |url: &str| connector(url).map(|c| c.mode()).map_err(|e| e.to_string());
        assert_eq!(mode("postgres://u:p@h/db"), Ok(TlsMode::Prefer), "libpq's default");
        assert_eq!(mode("postgres://u:p@h/db?sslmode=disable"), Ok(TlsMode::Disable));
        assert_eq!(mode("postgres://u:p@h/db?sslmode=verify-full"), Ok(TlsMode::VerifyFull));
        assert_eq!(mode("host=h user=u sslmode=require"), Ok(TlsMode::Require));
        let error = mode("postgres://u:secret-pw@h/db?sslmode=always").unwrap_err();
        assert!(error.contains("sslmode=\"always\"") && error.contains("verify-full"), "{error}");
        let error = mode("postgres://u:p@h/db?sslmode=verify-ca&sslrootcert=/nonexistent/ca.crt").unwrap_err();
        assert!(error.contains("/nonexistent/ca.crt") && error.contains("--postgres-ca-file"), "{error}");
        let printed = format!("{:?}", connector("postgres://u:secret-pw@h/db").unwrap());
        assert!(!printed.contains("secret-pw"), "{printed}");
    }
}
