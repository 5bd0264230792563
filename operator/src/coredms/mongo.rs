//! coredms on MongoDB: each tenant user is created in its own database with the `dbOwner` role
//! on that database only, which MongoDB enforces itself.

use async_trait::async_trait;
use mongodb::bson::{Document, doc};
use tracing::info;

use super::{AppAuth, CoreDmsAdmin, CoreDmsError, Result, check_name};
use crate::secret::{ExposeSecret, SecretString};

/// The MongoDB adapter; `client` is authenticated as a user administrator.
pub struct MongoAdmin {
    client: mongodb::Client,
}

impl MongoAdmin {
    /// An adapter over an admin client.
    pub fn new(client: mongodb::Client) -> Self {
        Self { client }
    }

    async fn command(&self, operation: &'static str, database: &str, command: Document) -> Result<Document> {
        self.client.database(database).run_command(command).await.map_err(|source| CoreDmsError::Mongo {
            operation,
            database: database.into(),
            source,
        })
    }
}

/// The `createUser` command of a tenant user: owner of its database, nothing elsewhere.
pub fn create_user_command(database: &str, user: &str, password: &SecretString) -> Document {
    doc! {
        "createUser": user,
        "pwd": password.expose_secret(),
        "roles": [{ "role": "dbOwner", "db": database }],
    }
}

#[async_trait]
impl CoreDmsAdmin for MongoAdmin {
    async fn ensure_tenant_database(
        &self,
        database: &str,
        user: &str,
        password: &SecretString,
        reset_password: bool,
    ) -> Result<()> {
        check_name("database", database)?;
        check_name("user", user)?;
        let info = self.command("find user", database, doc! { "usersInfo": user }).await?;
        let exists = info.get_array("users").is_ok_and(|users| !users.is_empty());
        if !exists {
            info!(user, database, "creating coredms user");
            self.command("create user", database, create_user_command(database, user, password)).await?;
        } else if reset_password {
            self.command("set password", database, doc! { "updateUser": user, "pwd": password.expose_secret() })
                .await?;
        }
        Ok(())
    }

    async fn user_exists(&self, user: &str) -> Result<bool> {
        check_name("user", user)?;
        let info = self
            .command("find user", "admin", doc! { "usersInfo": { "forAllDBs": true }, "filter": { "user": user } })
            .await?;
        Ok(info.get_array("users").is_ok_and(|users| !users.is_empty()))
    }

    async fn drop_user(&self, user: &str) -> Result<()> {
        check_name("user", user)?;
        let info = self
            .command("find user", "admin", doc! { "usersInfo": { "forAllDBs": true }, "filter": { "user": user } })
            .await?;
        for entry in info.get_array("users").map(|u| u.as_slice()).unwrap_or_default() {
            if let Some(db) = entry.as_document().and_then(|d| d.get_str("db").ok()) {
                self.command("drop user", db, doc! { "dropUser": user }).await?;
            }
        }
        Ok(())
    }

    async fn drop_database(&self, database: &str) -> Result<()> {
        check_name("database", database)?;
        self.command("drop database", database, doc! { "dropDatabase": 1 }).await.map(drop)
    }

    async fn database_size(&self, database: &str) -> Result<u64> {
        check_name("database", database)?;
        let stats = self.command("measure", database, doc! { "dbStats": 1 }).await?;
        let number = |key: &str| {
            stats.get(key).and_then(|v| v.as_f64().or(v.as_i64().map(|n| n as f64)).or(v.as_i32().map(f64::from)))
        };
        Ok((number("storageSize").unwrap_or(0.0) + number("indexSize").unwrap_or(0.0)) as u64)
    }

    fn app_auth(&self, database: &str) -> AppAuth {
        AppAuth { mechanism: None, source: database.to_owned() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenant_users_own_their_database_and_nothing_else() {
        let cmd = create_user_command("acme_air", "tenant_acme_air", &SecretString::from("pw"));
        assert_eq!(cmd.get_str("createUser").unwrap(), "tenant_acme_air");
        let roles = cmd.get_array("roles").unwrap();
        assert_eq!(roles.len(), 1);
        assert_eq!(roles[0].as_document().unwrap(), &doc! { "role": "dbOwner", "db": "acme_air" });
    }
}
