//! coredms administration: one database per tenant and a user that can use only that
//! database, behind the small [`CoreDmsAdmin`] trait.
//!
//! Two adapters: [`mongo::MongoAdmin`] for MongoDB (users and roles), and
//! [`ferretdb::FerretDbAdmin`] for FerretDB on PostgreSQL, which has no per-database roles of its
//! own: there each tenant user is a PostgreSQL role that owns the schema holding its database.

use async_trait::async_trait;

use crate::secret::SecretString;

pub mod ferretdb;
pub mod mongo;
pub mod postgres;

/// Why a coredms administration call failed.
#[derive(Debug, thiserror::Error)]
pub enum CoreDmsError {
    /// The MongoDB API refused or failed a command.
    #[error("coredms {operation} for database {database:?}: {source}")]
    Mongo {
        /// What was being done.
        operation: &'static str,
        /// The tenant database concerned.
        database: String,
        /// The driver's error.
        source: mongodb::error::Error,
    },
    /// PostgreSQL (under FerretDB) refused or failed a statement.
    #[error("coredms PostgreSQL {operation} for {object:?}: {source}")]
    Postgres {
        /// What was being done.
        operation: &'static str,
        /// The role or schema concerned.
        object: String,
        /// The driver's error.
        source: tokio_postgres::Error,
    },
    /// A password that cannot be turned into the backend's verifier.
    #[error(
        "coredms password of user {user:?}: {source}; delete the coredms password from the tenant's credentials \
         Secret and the operator generates a new one"
    )]
    Password {
        /// The role.
        user: String,
        /// Why.
        source: crate::scram::ScramError,
    },
    /// A name the backend cannot hold.
    #[error("{what} {name:?} cannot be used in coredms: {reason}")]
    InvalidName {
        /// `database` or `user`.
        what: &'static str,
        /// The name.
        name: String,
        /// Why.
        reason: &'static str,
    },
}

impl CoreDmsError {
    /// Low-cardinality label for metrics.
    pub fn category(&self) -> &'static str {
        match self {
            CoreDmsError::Mongo { .. } => "coredms_mongo",
            CoreDmsError::Postgres { .. } => "coredms_postgres",
            CoreDmsError::InvalidName { .. } => "coredms_name",
            CoreDmsError::Password { .. } => "coredms_password",
        }
    }
}

/// Result of coredms administration.
pub type Result<T, E = CoreDmsError> = std::result::Result<T, E>;

/// How an app authenticates to its tenant database with this backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppAuth {
    /// Authentication mechanism (`PLAIN`, `SCRAM-SHA-256`); `None` lets the driver negotiate.
    pub mechanism: Option<String>,
    /// Database that holds the user (`$external` for PLAIN).
    pub source: String,
}

/// What the platform needs from coredms administration. Every call is idempotent: creating what
/// exists and dropping what is gone succeed.
#[async_trait]
pub trait CoreDmsAdmin: Send + Sync {
    /// Creates `database` and `user`, a user that can use that database and no other. A user
    /// that exists keeps its password unless `reset_password` is set.
    async fn ensure_tenant_database(
        &self,
        database: &str,
        user: &str,
        password: &SecretString,
        reset_password: bool,
    ) -> Result<()>;
    /// Whether `user` exists.
    async fn user_exists(&self, user: &str) -> Result<bool>;
    /// Removes `user`; its database and data stay.
    async fn drop_user(&self, user: &str) -> Result<()>;
    /// Deletes `database` and all its data.
    async fn drop_database(&self, database: &str) -> Result<()>;
    /// Bytes `database` occupies (data and indexes), or 0 when it does not exist.
    async fn database_size(&self, database: &str) -> Result<u64>;
    /// How a tenant's apps authenticate to `database`.
    fn app_auth(&self, database: &str) -> AppAuth;
}

/// Checks a database or user name against what both backends accept: letters, digits and
/// underscores, starting with a letter, at most 63 bytes (PostgreSQL's identifier limit).
pub fn check_name(what: &'static str, name: &str) -> Result<()> {
    let reason = if name.is_empty() || name.len() > 63 {
        Some("it must be 1 to 63 characters long")
    } else if !name.starts_with(|c: char| c.is_ascii_lowercase()) {
        Some("it must start with a lowercase letter")
    } else if !name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_') {
        Some("it may contain only lowercase letters, digits and '_'")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(CoreDmsError::InvalidName { what, name: name.to_owned(), reason }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked_before_they_reach_sql_or_commands() {
        for ok in ["acme_air", "t1", "tenant_nimbus_weather"] {
            check_name("database", ok).unwrap();
        }
        for bad in ["", "Acme", "1abc", "a-b", "a;drop", "a\"b", &"x".repeat(64)] {
            assert!(check_name("database", bad).is_err(), "{bad:?}");
        }
    }
}
