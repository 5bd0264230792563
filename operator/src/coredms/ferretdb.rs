//! coredms on FerretDB v1 over PostgreSQL. FerretDB keeps each MongoDB database in a PostgreSQL
//! schema of the same name and authenticates every client as a PostgreSQL role (MongoDB's
//! PLAIN mechanism), so a tenant user is a login role that owns its database's schema and
//! tables and has no rights on any other schema.
//!
//! Databases are created through FerretDB (so its catalogue knows them) as the platform admin,
//! then handed to the tenant role; roles and ownership are managed in PostgreSQL directly, over
//! the admin sessions of [`PostgresConnector`] (TLS as its URL asks). A role's password is set
//! as a SCRAM-SHA-256 verifier computed here: the password itself never reaches PostgreSQL.

use async_trait::async_trait;
use mongodb::bson::doc;
use tracing::info;

use super::{AppAuth, CoreDmsAdmin, CoreDmsError, Result, check_name, postgres::PostgresConnector};
use crate::{scram, secret::SecretString};

/// Collection every tenant database is created with; it marks the database as the platform's.
pub const MARKER_COLLECTION: &str = "_mysimbdp";
/// MongoDB's error code for "collection already exists".
const NAMESPACE_EXISTS: i32 = 48;

/// The FerretDB-on-PostgreSQL adapter.
pub struct FerretDbAdmin {
    /// FerretDB, authenticated as the platform admin.
    mongo: mongodb::Client,
    /// Sessions with the PostgreSQL database FerretDB uses, as a superuser.
    postgres: PostgresConnector,
}

impl FerretDbAdmin {
    /// An adapter that administers through `mongo` (FerretDB as the platform admin) and
    /// `postgres` (the PostgreSQL database under it, as a superuser).
    pub fn new(mongo: mongodb::Client, postgres: PostgresConnector) -> Self {
        Self { mongo, postgres }
    }

    async fn postgres(&self, object: &str) -> Result<tokio_postgres::Client> {
        self.postgres.connect().await.map_err(|source| CoreDmsError::Postgres {
            operation: "connect",
            object: object.to_owned(),
            source,
        })
    }

    async fn create_database(&self, database: &str) -> Result<()> {
        let created = self.mongo.database(database).run_command(doc! { "create": MARKER_COLLECTION }).await;
        match created {
            Ok(_) => Ok(()),
            Err(e) if command_code(&e) == Some(NAMESPACE_EXISTS) => Ok(()),
            Err(source) => Err(CoreDmsError::Mongo { operation: "create database", database: database.into(), source }),
        }
    }
}

/// Ends every PostgreSQL session of `user`.
async fn end_sessions(pg: &tokio_postgres::Client, user: &str) -> Result<()> {
    pg.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1", &[&user])
        .await
        .map_err(|source| CoreDmsError::Postgres { operation: "end sessions", object: user.into(), source })?;
    Ok(())
}

fn command_code(error: &mongodb::error::Error) -> Option<i32> {
    match &*error.kind {
        mongodb::error::ErrorKind::Command(c) => Some(c.code),
        _ => None,
    }
}

/// A PostgreSQL string literal; quoting stays correct for any value.
fn literal(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

/// `CREATE ROLE` (`create`) or `ALTER ROLE` of a login role `user` with `password`, given as a
/// fresh SCRAM-SHA-256 verifier: the statement, which PostgreSQL may log, never holds the
/// password.
fn role_statement(create: bool, user: &str, password: &SecretString) -> Result<String> {
    let verifier = scram::postgres_verifier(password)
        .map_err(|source| CoreDmsError::Password { user: user.to_owned(), source })?;
    let verb = if create { "CREATE ROLE" } else { "ALTER ROLE" };
    let login = if create { " LOGIN" } else { "" };
    Ok(format!("{verb} \"{user}\"{login} PASSWORD {}", literal(&verifier)))
}

#[async_trait]
impl CoreDmsAdmin for FerretDbAdmin {
    async fn ensure_tenant_database(
        &self,
        database: &str,
        user: &str,
        password: &SecretString,
        reset_password: bool,
    ) -> Result<()> {
        check_name("database", database)?;
        check_name("user", user)?;
        let pg = self.postgres(user).await?;
        let pg_err = |operation: &'static str, object: &str| {
            let object = object.to_owned();
            move |source| CoreDmsError::Postgres { operation, object, source }
        };

        let exists = pg
            .query_opt("SELECT 1 FROM pg_roles WHERE rolname = $1", &[&user])
            .await
            .map_err(pg_err("find role", user))?;
        if exists.is_none() {
            info!(user, "creating coredms user");
            pg.batch_execute(&role_statement(true, user, password)?).await.map_err(pg_err("create role", user))?;
        } else if reset_password {
            info!(user, "setting a new password for coredms user");
            pg.batch_execute(&role_statement(false, user, password)?).await.map_err(pg_err("set password", user))?;
            // Sessions opened with the old password would stay usable in FerretDB's pool.
            end_sessions(&pg, user).await?;
        }
        let connect: bool = pg
            .query_one("SELECT has_database_privilege($1, current_database(), 'CONNECT')", &[&user])
            .await
            .map_err(pg_err("check connect", user))?
            .get(0);
        if !connect {
            pg.batch_execute(&format!(
                "DO $$ BEGIN EXECUTE format('GRANT CONNECT ON DATABASE %I TO \"{user}\"', current_database()); END $$"
            ))
            .await
            .map_err(pg_err("grant connect", user))?;
        }

        let schema = pg
            .query_opt("SELECT pg_get_userbyid(nspowner) FROM pg_namespace WHERE nspname = $1", &[&database])
            .await
            .map_err(pg_err("find schema", database))?;
        if schema.is_none() {
            info!(database, "creating coredms database");
            self.create_database(database).await?;
        }
        // Hand the schema and every table in it to the tenant role; only what is not yet its.
        if schema.map(|row| row.get::<_, String>(0)).as_deref() != Some(user) {
            pg.batch_execute(&format!("ALTER SCHEMA \"{database}\" OWNER TO \"{user}\""))
                .await
                .map_err(pg_err("give schema", database))?;
        }
        let foreign = pg
            .query(
                "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
                 WHERE n.nspname = $1 AND c.relkind IN ('r', 'p') AND pg_get_userbyid(c.relowner) <> $2",
                &[&database, &user],
            )
            .await
            .map_err(pg_err("list tables", database))?;
        for row in foreign {
            let table: String = row.get(0);
            let statement =
                format!("ALTER TABLE \"{database}\".\"{}\" OWNER TO \"{user}\"", table.replace('"', "\"\""));
            pg.batch_execute(&statement).await.map_err(pg_err("give table", database))?;
        }
        Ok(())
    }

    async fn user_exists(&self, user: &str) -> Result<bool> {
        check_name("user", user)?;
        let pg = self.postgres(user).await?;
        let row = pg
            .query_opt("SELECT 1 FROM pg_roles WHERE rolname = $1", &[&user])
            .await
            .map_err(|source| CoreDmsError::Postgres { operation: "find role", object: user.into(), source })?;
        Ok(row.is_some())
    }

    async fn drop_user(&self, user: &str) -> Result<()> {
        if !self.user_exists(user).await? {
            return Ok(());
        }
        info!(user, "removing coredms user");
        let pg = self.postgres(user).await?;
        // No new sessions, and none left: FerretDB pools connections per user, and a pooled
        // session would outlive the role otherwise. The data the role owns goes to the admin
        // before the role goes, so removing a user never removes data.
        pg.batch_execute(&format!("ALTER ROLE \"{user}\" NOLOGIN")).await.map_err(|source| CoreDmsError::Postgres {
            operation: "disable role",
            object: user.into(),
            source,
        })?;
        end_sessions(&pg, user).await?;
        pg.batch_execute(&format!(
            "REASSIGN OWNED BY \"{user}\" TO CURRENT_USER; DROP OWNED BY \"{user}\"; DROP ROLE IF EXISTS \"{user}\""
        ))
        .await
        .map_err(|source| CoreDmsError::Postgres { operation: "drop role", object: user.into(), source })
    }

    async fn drop_database(&self, database: &str) -> Result<()> {
        check_name("database", database)?;
        info!(database, "deleting coredms database");
        self.mongo.database(database).drop().await.map_err(|source| CoreDmsError::Mongo {
            operation: "drop database",
            database: database.into(),
            source,
        })
    }

    async fn database_size(&self, database: &str) -> Result<u64> {
        check_name("database", database)?;
        let pg = self.postgres(database).await?;
        let row = pg
            .query_one(
                "SELECT COALESCE(SUM(pg_total_relation_size(c.oid)), 0)::bigint FROM pg_class c \
                 JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 AND c.relkind IN ('r', 'p')",
                &[&database],
            )
            .await
            .map_err(|source| CoreDmsError::Postgres { operation: "measure", object: database.into(), source })?;
        Ok(u64::try_from(row.get::<_, i64>(0)).unwrap_or(0))
    }

    fn app_auth(&self, _database: &str) -> AppAuth {
        AppAuth { mechanism: Some("PLAIN".into()), source: "$external".into() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::ExposeSecret;

    #[test]
    fn literals_double_their_quotes() {
        assert_eq!(literal("abc"), "'abc'");
        assert_eq!(literal("o'clock"), "'o''clock'");
    }

    #[test]
    fn role_statements_carry_a_verifier_never_the_password() {
        let password = crate::secret::generate();
        for create in [true, false] {
            let statement = role_statement(create, "tenant_acme", &password).unwrap();
            assert!(!statement.contains(password.expose_secret()), "{statement}");
            let prefix = if create {
                "CREATE ROLE \"tenant_acme\" LOGIN PASSWORD 'SCRAM-SHA-256$4096:"
            } else {
                "ALTER ROLE \"tenant_acme\" PASSWORD 'SCRAM-SHA-256$4096:"
            };
            assert!(statement.starts_with(prefix), "{statement}");
        }
        let error = role_statement(true, "tenant_acme", &SecretString::from("naïve")).unwrap_err();
        assert!(error.to_string().contains("tenant_acme") && error.to_string().contains("ASCII"), "{error}");
    }
}
