//! The operator on secured connections, against the local stack: its Kafka admin client and
//! monitor on the SASL_SSL listener (trusting the stack's CA, MYSIMBDP_KAFKA_CA_FILE), its
//! PostgreSQL admin sessions on verify-full TLS (the env file's MYSIMBDP_POSTGRES_URL). A tenant
//! onboards; its apps are told SASL_SSL and given the CA, with which the tenant's Kafka user
//! works over TLS; its coredms role, set from a SCRAM verifier, takes its password.

mod common;

use std::{collections::BTreeMap, time::Duration};

use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use mysimbdp_api::Tenant;
use mysimbdp_e2e::{OperatorProcess, Stack, wait_for};
use mysimbdp_ingest_sdk::config::KafkaConfig;
use mysimbdp_operator::tenant::{credentials::keys, names::TenantNames};
use rdkafka::{
    producer::{BaseProducer, Producer},
    util::Timeout,
};

const TENANT: &str = "tls-air";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_onboards_with_the_operator_on_tls() {
    let stack = Stack::load();
    let client = stack.kube_client().await;
    common::install_crds(&stack);
    let tenants: Api<Tenant> = Api::all(client.clone());
    let ssl_bootstrap = stack.var("MYSIMBDP_KAFKA_SSL_BOOTSTRAP").to_owned();
    let operator = OperatorProcess::start(
        env!("CARGO_BIN_EXE_mysimbdp-operator").as_ref(),
        &stack,
        &[("MYSIMBDP_KAFKA_BOOTSTRAP", &ssl_bootstrap), ("MYSIMBDP_KAFKA_SECURITY_PROTOCOL", "SASL_SSL")],
    );
    common::reset(&stack, &tenants, &[TENANT]).await;

    let (tenant, _) = common::flights_tenant(TENANT, None, "");
    common::apply(&stack, &tenant);
    common::wait_ready(&tenants, TENANT).await;

    // The apps' settings: SASL_SSL toward the TLS listener, and the stack's CA.
    let names = TenantNames::new(TENANT, None);
    let secret = Api::<Secret>::namespaced(client.clone(), &names.namespace)
        .get("mysimbdp-credentials")
        .await
        .expect("credentials Secret");
    let creds: BTreeMap<String, String> =
        secret.data.unwrap_or_default().into_iter().map(|(k, v)| (k, String::from_utf8(v.0).expect("UTF-8"))).collect();
    assert_eq!(creds[keys::KAFKA_SECURITY_PROTOCOL], "SASL_SSL");
    assert_eq!(creds[keys::KAFKA_BOOTSTRAP], ssl_bootstrap);
    let ca = std::fs::read_to_string(stack.var("MYSIMBDP_KAFKA_CA_FILE")).expect("the stack's CA");
    assert_eq!(creds[keys::KAFKA_SSL_CA_PEM], ca);

    // The tenant's Kafka user, made by the admin over TLS, works over TLS with exactly those
    // settings, as the SDK reads them.
    let kafka = KafkaConfig::from_lookup(&|name| creds.get(name).cloned()).expect("the apps' Kafka settings");
    let config = kafka.client_config();
    wait_for("the tenant's Kafka user to work over SASL_SSL", Duration::from_secs(60), || {
        let config = config.clone();
        async move {
            tokio::task::spawn_blocking(move || {
                let producer: BaseProducer = config.create().ok()?;
                producer.client().fetch_metadata(None, Timeout::After(Duration::from_secs(5))).ok().map(drop)
            })
            .await
            .expect("metadata task")
        }
    })
    .await;

    // The coredms role, created over TLS from a verifier, takes the tenant's password.
    let mongo = stack.coredms_client(&creds[keys::COREDMS_USERNAME], &creds[keys::COREDMS_PASSWORD]).await;
    mongo.database(&names.database).run_command(mongodb::bson::doc! { "ping": 1 }).await.expect("tenant login");

    common::reset(&stack, &tenants, &[TENANT]).await;
    drop(operator);
}
