//! `FerretDbAdmin` and its PostgreSQL admin sessions against the local stack's real FerretDB
//! and PostgreSQL: the sessions use TLS verified against the stack's CA (as the env file's
//! `sslmode=verify-full` URL asks), and refuse a server they cannot trust; tenant roles get
//! SCRAM-SHA-256 verifiers computed by the operator, with which their passwords then work, over
//! PostgreSQL and through FerretDB. Names are unique per run.

use std::time::Duration;

use mysimbdp_e2e::{Stack, unique, wait_for};
use mysimbdp_operator::{
    coredms::{
        CoreDmsAdmin,
        ferretdb::FerretDbAdmin,
        postgres::{PostgresConnector, TlsMode},
    },
    secret::{self, ExposeSecret, SecretString},
};

const TIMEOUT: Duration = Duration::from_secs(30);

fn admin_url(stack: &Stack) -> SecretString {
    SecretString::from(stack.var("MYSIMBDP_POSTGRES_URL"))
}

/// Whether the session `client` runs over TLS, as PostgreSQL itself sees it.
async fn session_uses_tls(client: &tokio_postgres::Client) -> bool {
    client.query_one("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()", &[]).await.expect("pg_stat_ssl").get(0)
}

#[tokio::test]
async fn admin_sessions_use_verified_tls() {
    let stack = Stack::load();
    let connector = PostgresConnector::new(&admin_url(&stack), None).expect("the stack's PostgreSQL URL");
    assert_eq!(connector.mode(), TlsMode::VerifyFull, "the stack's URL asks for verify-full");
    let pg = connector.connect().await.expect("an admin session over TLS");
    assert!(session_uses_tls(&pg).await, "the admin session is encrypted");

    // --postgres-ca-file overrides the URL's sslrootcert: a bundle without the stack's CA fails.
    let wrong = PostgresConnector::new(&admin_url(&stack), Some("/etc/ssl/certs/ca-certificates.crt".as_ref()))
        .expect("a readable CA file");
    let error = wrong.connect().await.expect_err("a server signed by another CA is refused");
    assert!(format!("{error:?}").contains("certificate verify failed"), "{error:?}");

    // The certificate names localhost too.
    let url = stack.var("MYSIMBDP_POSTGRES_URL").replace("@127.0.0.1:", "@localhost:");
    let by_name = PostgresConnector::new(&SecretString::from(url), None).expect("URL with a host name");
    assert!(session_uses_tls(&by_name.connect().await.expect("localhost is named")).await);
}

#[tokio::test]
async fn tenant_roles_get_verifiers_and_their_passwords_work() {
    let stack = Stack::load();
    let connector = PostgresConnector::new(&admin_url(&stack), None).expect("the stack's PostgreSQL URL");
    let coredms = FerretDbAdmin::new(stack.coredms_admin().await, connector);
    let name = unique("fdb_tls").replace('-', "_");
    let (database, user) = (name.clone(), format!("tenant_{name}"));
    let password = secret::generate();
    coredms.ensure_tenant_database(&database, &user, &password, false).await.expect("tenant database and role");

    // PostgreSQL holds exactly a SCRAM-SHA-256 verifier.
    let admin = PostgresConnector::new(&admin_url(&stack), None).unwrap().connect().await.unwrap();
    let stored: String =
        admin.query_one("SELECT rolpassword FROM pg_authid WHERE rolname = $1", &[&user]).await.unwrap().get(0);
    assert!(stored.starts_with("SCRAM-SHA-256$4096:"), "{stored}");
    assert!(!stored.contains(password.expose_secret()));

    // The tenant logs in to PostgreSQL with its password, over TLS...
    // The stack's PostgreSQL superuser is the coredms admin.
    let admin_credentials =
        format!("{}:{}@", stack.var("MYSIMBDP_COREDMS_ADMIN_USER"), stack.var("MYSIMBDP_COREDMS_ADMIN_PASSWORD"));
    let as_tenant = |password: &SecretString| {
        let credentials = format!("{user}:{}@", password.expose_secret());
        let url = stack.var("MYSIMBDP_POSTGRES_URL").replacen(&admin_credentials, &credentials, 1);
        async move { PostgresConnector::new(&SecretString::from(url), None).unwrap().connect().await }
    };
    let session = as_tenant(&password).await.expect("the tenant's password works");
    assert!(session_uses_tls(&session).await);
    // ...and through FerretDB, which authenticates it as that role.
    let mongo = stack.coredms_client(&user, password.expose_secret()).await;
    mongo.database(&database).run_command(mongodb::bson::doc! { "ping": 1 }).await.expect("FerretDB login");

    // A new password replaces the old one.
    let renewed = secret::generate();
    coredms.ensure_tenant_database(&database, &user, &renewed, true).await.expect("reset the password");
    as_tenant(&renewed).await.expect("the new password works");
    wait_for("the old password to stop working", TIMEOUT, || async { as_tenant(&password).await.err().map(drop) })
        .await;

    coredms.drop_user(&user).await.expect("drop the role");
    coredms.drop_database(&database).await.expect("drop the database");
}
