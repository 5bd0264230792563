//! The tenant controller against the real local stack: the two sample tenants are onboarded
//! with every object, fenced from each other, left alone by a second reconciliation, and
//! offboarded with (or without) their data; bad specs become conditions, never crashes.
//!
//! One test drives the whole story so that exactly one operator runs against the cluster.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::PathBuf,
    time::{Duration, Instant},
};

use k8s_openapi::api::{
    core::v1::{LimitRange, Namespace, ResourceQuota, Secret, ServiceAccount},
    networking::v1::NetworkPolicy,
};
use kube::{
    Api, ResourceExt,
    api::{DeleteParams, Patch, PatchParams},
};
use mongodb::bson::{Document, doc};
use mysimbdp_api::Tenant;
use mysimbdp_e2e::{OperatorProcess, Stack, unique, wait_for};
use mysimbdp_operator::{
    kafka::{KafkaAdmin, Transport, protocol::ProtocolAdmin},
    secret::SecretString as Password,
    tenant::{credentials::keys, names::TenantNames, plan},
};
use rdkafka::{
    ClientConfig,
    consumer::{Consumer, StreamConsumer},
    error::{KafkaError, RDKafkaErrorCode},
    producer::{FutureProducer, FutureRecord, Producer},
};

const READY_TIMEOUT: Duration = Duration::from_secs(120);
const A: &str = "acme-air";
const B: &str = "nimbus-weather";

fn samples() -> PathBuf {
    Stack::repo_dir().join("tenant-samples")
}

/// The tenant's credentials Secret as a map of strings.
async fn credentials(client: &kube::Client, names: &TenantNames) -> BTreeMap<String, String> {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &names.namespace);
    let secret = secrets.get("mysimbdp-credentials").await.expect("credentials Secret");
    secret.data.unwrap_or_default().into_iter().map(|(k, v)| (k, String::from_utf8(v.0).expect("UTF-8"))).collect()
}

fn kafka_client(creds: &BTreeMap<String, String>) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", &creds[keys::KAFKA_BOOTSTRAP])
        .set("security.protocol", &creds[keys::KAFKA_SECURITY_PROTOCOL])
        .set("sasl.mechanism", &creds[keys::KAFKA_SASL_MECHANISM])
        .set("sasl.username", &creds[keys::KAFKA_USERNAME])
        .set("sasl.password", &creds[keys::KAFKA_PASSWORD])
        .set("message.timeout.ms", "15000");
    config
}

async fn coredms_client(stack: &Stack, creds: &BTreeMap<String, String>) -> mongodb::Client {
    let mut options = mongodb::options::ClientOptions::parse(&creds[keys::COREDMS_URL]).await.unwrap();
    let mechanism = Some(&creds[keys::COREDMS_AUTH_MECHANISM]).filter(|m| !m.is_empty()).map(|m| m.parse().unwrap());
    options.credential = Some(
        mongodb::options::Credential::builder()
            .username(creds[keys::COREDMS_USERNAME].clone())
            .password(creds[keys::COREDMS_PASSWORD].clone())
            .mechanism(mechanism)
            .source(creds[keys::COREDMS_AUTH_SOURCE].clone())
            .build(),
    );
    options.server_selection_timeout = Some(Duration::from_secs(10));
    let _ = stack;
    mongodb::Client::with_options(options).unwrap()
}

async fn kafka_admin(stack: &Stack) -> ProtocolAdmin {
    ProtocolAdmin::connect(
        stack.var("MYSIMBDP_KAFKA_BOOTSTRAP"),
        stack.var("MYSIMBDP_KAFKA_ADMIN_USER"),
        Password::from(stack.var("MYSIMBDP_KAFKA_ADMIN_PASSWORD")),
        &Transport::Plaintext,
    )
    .await
    .expect("admin connection")
}

fn condition<'a>(
    tenant: &'a Tenant,
    type_: &str,
) -> Option<&'a k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition> {
    tenant.status.as_ref()?.conditions.iter().find(|c| c.type_ == type_)
}

async fn wait_ready(tenants: &Api<Tenant>, name: &str) -> Tenant {
    wait_for(&format!("tenant {name} to be Ready"), READY_TIMEOUT, || async move {
        let tenant = tenants.get_opt(name).await.ok()??;
        (condition(&tenant, "Ready")?.status == "True").then_some(tenant)
    })
    .await
}

async fn wait_condition(tenants: &Api<Tenant>, name: &str, type_: &str, reason: &str) -> String {
    wait_for(&format!("tenant {name} to report {type_}={reason}"), READY_TIMEOUT, || async move {
        let tenant = tenants.get_opt(name).await.ok()??;
        let c = condition(&tenant, type_)?;
        (c.status == "False" && c.reason == reason).then(|| c.message.clone())
    })
    .await
}

async fn delete_and_wait_gone(tenants: &Api<Tenant>, name: &str) {
    match tenants.delete(name, &DeleteParams::default()).await {
        Ok(_) => {}
        Err(kube::Error::Api(status)) if status.is_not_found() => {}
        Err(e) => panic!("deleting tenant {name}: {e}"),
    }
    wait_for(&format!("tenant {name} to be gone"), READY_TIMEOUT, || async move {
        matches!(tenants.get_opt(name).await, Ok(None)).then_some(())
    })
    .await;
}

/// The reconciliations the operator has finished without error, from its metrics.
fn ok_reconciliations(operator: &OperatorProcess) -> u64 {
    let metrics = operator.http_get("/metrics").expect("metrics endpoint");
    metrics
        .lines()
        .find(|l| l.starts_with("mysimbdp_reconciliations_total{controller=\"tenant\",outcome=\"ok\"}"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sample_tenants_onboard_stay_isolated_and_offboard() {
    let stack = Stack::load();
    let client = stack.kube_client().await;
    stack.kubectl_ok(&[
        "apply",
        "--server-side",
        "--force-conflicts",
        "-f",
        Stack::repo_dir().join("crds").to_str().unwrap(),
    ]);
    let mut operator = OperatorProcess::start(env!("CARGO_BIN_EXE_mysimbdp-operator").as_ref(), &stack, &[]);
    let tenants: Api<Tenant> = Api::all(client.clone());
    for name in [A, B, "conflicted", "greedy"] {
        delete_and_wait_gone(&tenants, name).await;
    }
    // A tenant whose agreement retains data leaves its database behind; start from none.
    let coredms_admin = stack.coredms_admin().await;
    for name in [A, B] {
        coredms_admin.database(&TenantNames::new(name, None).database).drop().await.unwrap();
    }

    // Onboarding.
    for name in [A, B] {
        stack.kubectl_ok(&["apply", "-f", samples().join(name).join("tenant.yaml").to_str().unwrap()]);
    }
    let started = Instant::now();
    for name in [A, B] {
        let tenant = wait_ready(&tenants, name).await;
        check_onboarded(&stack, &client, &operator, &tenant).await;
    }
    eprintln!("both sample tenants Ready {:?} after apply", started.elapsed());

    check_second_reconcile_changes_nothing(&stack, &client, &operator, &tenants).await;
    check_isolation(&stack, &client).await;
    check_bad_specs(&stack, &client, &tenants, &mut operator).await;
    check_offboarding(&stack, &client, &operator, &tenants).await;
}

async fn check_onboarded(stack: &Stack, client: &kube::Client, operator: &OperatorProcess, tenant: &Tenant) {
    let names = TenantNames::of(tenant);
    let status = tenant.status.as_ref().unwrap();
    assert_eq!(status.namespace.as_deref(), Some(names.namespace.as_str()));
    assert_eq!(status.observed_generation, tenant.metadata.generation);
    for part in ["SpecValid", "NamespaceReady", "KafkaReady", "CoreDmsReady", "StagingReady", "CredentialsReady"] {
        assert_eq!(condition(tenant, part).map(|c| c.status.as_str()), Some("True"), "{part} of {}", names.tenant);
    }

    let ns: Api<Namespace> = Api::all(client.clone());
    let labels = ns.get(&names.namespace).await.unwrap().metadata.labels.unwrap();
    assert_eq!(labels["pod-security.kubernetes.io/enforce"], "restricted");
    assert_eq!(labels["mysimbdp.io/tenant"], names.tenant);
    let n = names.namespace.as_str();
    let quota = Api::<ResourceQuota>::namespaced(client.clone(), n).get("mysimbdp-quota").await.unwrap();
    let hard = quota.spec.unwrap().hard.unwrap();
    assert_eq!(hard["limits.cpu"].0, tenant.spec.agreement.compute.cpu.as_str());
    assert_eq!(hard["limits.memory"].0, tenant.spec.agreement.compute.memory.as_str());
    Api::<LimitRange>::namespaced(client.clone(), n).get("mysimbdp-limits").await.unwrap();
    let policy = Api::<NetworkPolicy>::namespaced(client.clone(), n).get("mysimbdp-default-deny").await.unwrap();
    let policy = policy.spec.unwrap();
    assert!(policy.policy_types.unwrap().contains(&"Ingress".to_owned()) && policy.ingress.is_none(), "deny all in");
    let sa = Api::<ServiceAccount>::namespaced(client.clone(), n).get("mysimbdp-app").await.unwrap();
    assert_eq!(sa.automount_service_account_token, Some(false));

    let creds = credentials(client, &names).await;
    assert_eq!(creds[keys::KAFKA_USERNAME], names.kafka_user);
    assert_eq!(creds[keys::COREDMS_DATABASE], names.database);

    let admin = kafka_admin(stack).await;
    assert!(admin.scram_user_exists(&names.kafka_user).await.unwrap());
    let acls: BTreeSet<_> = admin.acls_of(&names.kafka_principal()).await.unwrap().into_iter().collect();
    assert_eq!(acls, plan::acls(&names));
    assert_eq!(admin.quotas_of(&names.kafka_user).await.unwrap(), plan::byte_rates(tenant));
    let topics: BTreeSet<String> =
        admin.topics_with_prefix(&names.kafka_prefix).await.unwrap().into_iter().map(|t| t.name).collect();
    for topic in &tenant.spec.agreement.kafka.topics {
        assert!(topics.contains(&names.topic(&topic.name)), "{topics:?}");
    }
    assert!(topics.contains(&names.topic("mysimbdp.reports")) && topics.contains(&names.topic("mysimbdp.dead-letter")));

    let coredms = coredms_client(stack, &creds).await;
    let collection = coredms.database(&names.database).collection::<Document>("onboarding_check");
    collection.insert_one(doc! { "_id": 1, "ok": true }).await.expect("the tenant writes its own database");
    assert_eq!(collection.count_documents(doc! {}).await.unwrap(), 1);

    assert!(operator.staging_dir.join(&names.tenant).join("incoming").is_dir(), "staging area");
}

async fn check_second_reconcile_changes_nothing(
    stack: &Stack,
    client: &kube::Client,
    operator: &OperatorProcess,
    tenants: &Api<Tenant>,
) {
    let names = TenantNames::new(A, None);
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &names.namespace);
    let before = secrets.get("mysimbdp-credentials").await.unwrap().resource_version();
    let quota_before = Api::<ResourceQuota>::namespaced(client.clone(), &names.namespace)
        .get("mysimbdp-quota")
        .await
        .unwrap()
        .resource_version();
    let conditions_before = tenants.get(A).await.unwrap().status.unwrap().conditions;
    let admin = kafka_admin(stack).await;
    let acls_before = admin.acls_of(&names.kafka_principal()).await.unwrap();

    let count = ok_reconciliations(operator);
    for i in 0..2 {
        let patch = serde_json::json!({ "metadata": { "annotations": { "test.mysimbdp.io/poke": format!("{}-{i}", unique("p")) } } });
        tenants.patch(A, &PatchParams::default(), &Patch::Merge(&patch)).await.unwrap();
        let target = count + i + 1;
        wait_for("another reconciliation", Duration::from_secs(60), || async move {
            (ok_reconciliations(operator) >= target).then_some(())
        })
        .await;
    }

    assert_eq!(secrets.get("mysimbdp-credentials").await.unwrap().resource_version(), before, "Secret untouched");
    let quota_after = Api::<ResourceQuota>::namespaced(client.clone(), &names.namespace)
        .get("mysimbdp-quota")
        .await
        .unwrap()
        .resource_version();
    assert_eq!(quota_after, quota_before, "quota untouched");
    let conditions_after = tenants.get(A).await.unwrap().status.unwrap().conditions;
    assert_eq!(conditions_after, conditions_before, "conditions untouched");
    assert_eq!(admin.acls_of(&names.kafka_principal()).await.unwrap(), acls_before, "ACLs untouched");
    // The password in the Secret still works: the SCRAM credential was not replaced.
    let creds = credentials(client, &names).await;
    let producer: FutureProducer = kafka_client(&creds).create().unwrap();
    producer
        .send(FutureRecord::to(&names.topic("flight-events")).key("k").payload("{}"), Duration::from_secs(15))
        .await
        .expect("the tenant produces to its own topic with its unchanged password");
}

async fn check_isolation(stack: &Stack, client: &kube::Client) {
    let (a, b) = (TenantNames::new(A, None), TenantNames::new(B, None));
    let a_creds = credentials(client, &a).await;
    let b_topic = b.topic("observations");

    let producer: FutureProducer = kafka_client(&a_creds).create().unwrap();
    match producer.send(FutureRecord::<(), _>::to(&b_topic).payload("x"), Duration::from_secs(15)).await {
        Err((KafkaError::MessageProduction(RDKafkaErrorCode::TopicAuthorizationFailed), _)) => {}
        other => panic!("A producing to B's topic: expected TopicAuthorizationFailed, got {other:?}"),
    }

    let describe = {
        let config = kafka_client(&a_creds);
        let topic = b_topic.clone();
        tokio::task::spawn_blocking(move || {
            let p: rdkafka::producer::BaseProducer = config.create().unwrap();
            let metadata = p.client().fetch_metadata(Some(&topic), Duration::from_secs(10)).unwrap();
            metadata.topics()[0].error().map(RDKafkaErrorCode::from)
        })
        .await
        .unwrap()
    };
    assert_eq!(describe, Some(RDKafkaErrorCode::TopicAuthorizationFailed), "A describing B's topic");

    // Consuming B's topic, even in a group of A's own.
    let consumer: StreamConsumer = kafka_client(&a_creds)
        .set("group.id", a.topic(&unique("spy")))
        .set("auto.offset.reset", "earliest")
        .create()
        .unwrap();
    consumer.subscribe(&[&b_topic]).unwrap();
    let err = tokio::time::timeout(Duration::from_secs(30), consumer.recv())
        .await
        .expect("an answer")
        .expect_err("A read B's topic");
    assert!(err.to_string().to_lowercase().contains("authorization failed"), "{err}");

    // Joining B's consumer group on A's own topic.
    let joiner: StreamConsumer = kafka_client(&a_creds)
        .set("group.id", b.topic("weather-ingest"))
        .set("auto.offset.reset", "earliest")
        .create()
        .unwrap();
    joiner.subscribe(&[&a.topic("flight-events")]).unwrap();
    let err = tokio::time::timeout(Duration::from_secs(30), joiner.recv())
        .await
        .expect("an answer")
        .expect_err("A joined B's group");
    assert!(
        err.to_string().contains("GroupAuthorizationFailed")
            || err.to_string().to_lowercase().contains("group authorization failed"),
        "{err}"
    );

    // coredms: A cannot read or write B's database (which holds data).
    let b_db = coredms_client(stack, &credentials(client, &b).await).await;
    b_db.database(&b.database).collection::<Document>("observations").insert_one(doc! { "t": 0 }).await.unwrap();
    let a_db = coredms_client(stack, &a_creds).await;
    let b_obs = a_db.database(&b.database).collection::<Document>("observations");
    let read = b_obs.find_one(doc! {}).await;
    assert!(read.as_ref().is_err_and(|e| e.to_string().contains("permission denied")), "A read B's database: {read:?}");
    assert!(b_obs.insert_one(doc! { "x": 1 }).await.is_err(), "A wrote B's database");
    a_db.database(&a.database)
        .collection::<Document>("onboarding_check")
        .find_one(doc! {})
        .await
        .expect("A reads its own");

    // The apps' ServiceAccount has no API rights.
    let sa = format!("system:serviceaccount:{}:mysimbdp-app", a.namespace);
    for (verb, resource) in [
        ("get", "secrets"),
        ("list", "secrets"),
        ("list", "pods"),
        ("get", "tenants.mysimbdp.io"),
        ("create", "jobs.batch"),
    ] {
        let out =
            stack.kubectl().args(["auth", "can-i", verb, resource, "-n", &a.namespace, "--as", &sa]).output().unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "no", "{sa} can {verb} {resource}");
    }
}

async fn check_bad_specs(stack: &Stack, client: &kube::Client, tenants: &Api<Tenant>, operator: &mut OperatorProcess) {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let taken = "taken-by-someone-else";
    if namespaces.get_opt(taken).await.unwrap().is_none() {
        stack.kubectl_ok(&["create", "namespace", taken]);
    }
    let base = std::fs::read_to_string(samples().join(A).join("tenant.yaml")).unwrap();
    let conflicted = base
        .replace("name: acme-air", "name: conflicted")
        .replace("  agreement:", &format!("  namespace: {taken}\n  agreement:"));
    let greedy = base.replace("name: acme-air", "name: greedy").replace("cpu: \"4\"", "cpu: \"64\"");
    for yaml in [&conflicted, &greedy] {
        let path = std::env::temp_dir().join(format!("{}.yaml", unique("bad-tenant")));
        std::fs::write(&path, yaml).unwrap();
        stack.kubectl_ok(&["apply", "-f", path.to_str().unwrap()]);
    }
    let message = wait_condition(tenants, "conflicted", "NamespaceReady", "NamespaceConflict").await;
    assert!(message.contains(taken) && message.contains("spec.namespace"), "{message}");
    let ready = condition(&tenants.get("conflicted").await.unwrap(), "Ready").cloned().unwrap();
    assert_eq!((ready.status.as_str(), ready.reason.as_str()), ("False", "NamespaceConflict"));
    let message = wait_condition(tenants, "greedy", "SpecValid", "InvalidSpec").await;
    assert!(message.contains("spec.agreement.compute.cpu asks for 64"), "{message}");
    // A human sees both as Warning Events on the tenant.
    let events: Api<k8s_openapi::api::events::v1::Event> = Api::all(client.clone());
    for (name, reason) in [("conflicted", "NamespaceConflict"), ("greedy", "InvalidSpec")] {
        wait_for(&format!("a {reason} Event on {name}"), Duration::from_secs(30), || {
            let events = events.clone();
            async move {
                let list = events.list(&Default::default()).await.ok()?;
                list.items.into_iter().find(|e| {
                    e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name)
                        && e.reason.as_deref() == Some(reason)
                        && e.type_.as_deref() == Some("Warning")
                })
            }
        })
        .await;
    }

    assert!(operator.is_running(), "the operator keeps running");
    wait_ready(tenants, A).await;
    wait_ready(tenants, B).await;

    for name in ["conflicted", "greedy"] {
        delete_and_wait_gone(tenants, name).await;
    }
    let still = namespaces.get(taken).await.unwrap();
    assert!(
        still.metadata.deletion_timestamp.is_none(),
        "offboarding never deletes a namespace that is not the tenant's"
    );
    stack.kubectl_ok(&["delete", "namespace", taken, "--wait=false"]);
}

async fn check_offboarding(stack: &Stack, client: &kube::Client, operator: &OperatorProcess, tenants: &Api<Tenant>) {
    let (a, b) = (TenantNames::new(A, None), TenantNames::new(B, None));
    let b_creds = credentials(client, &b).await;
    let b_db = coredms_client(stack, &b_creds).await;
    b_db.database(&b.database).collection::<Document>("observations").insert_one(doc! { "t": 1 }).await.unwrap();
    assert_eq!(
        b_db.database(&b.database).collection::<Document>("observations").count_documents(doc! {}).await.unwrap(),
        2
    );

    delete_and_wait_gone(tenants, B).await;
    let admin = kafka_admin(stack).await;
    assert!(!admin.scram_user_exists(&b.kafka_user).await.unwrap(), "B's Kafka user is gone");
    assert!(admin.acls_of(&b.kafka_principal()).await.unwrap().is_empty(), "B's ACLs are gone");
    assert_eq!(admin.quotas_of(&b.kafka_user).await.unwrap(), Default::default(), "B's quotas are gone");
    assert!(admin.topics_with_prefix(&b.kafka_prefix).await.unwrap().is_empty(), "B's topics are gone");
    let coredms_admin = stack.coredms_admin().await;
    let databases = coredms_admin.list_database_names().await.unwrap();
    assert!(!databases.contains(&b.database), "B's data is deleted (onOffboarding: Delete): {databases:?}");
    assert!(!operator.staging_dir.join(B).exists(), "B's staging area is deleted");
    let namespace = Api::<Namespace>::all(client.clone()).get_opt(&b.namespace).await.unwrap();
    assert!(namespace.is_none_or(|n| n.metadata.deletion_timestamp.is_some()), "B's namespace is going");

    // A is untouched.
    wait_ready(tenants, A).await;
    let a_creds = credentials(client, &a).await;
    let a_db = coredms_client(stack, &a_creds).await;
    assert_eq!(
        a_db.database(&a.database).collection::<Document>("onboarding_check").count_documents(doc! {}).await.unwrap(),
        1
    );
    assert!(!admin.topics_with_prefix(&a.kafka_prefix).await.unwrap().is_empty());

    delete_and_wait_gone(tenants, A).await;
    let databases = coredms_admin.list_database_names().await.unwrap();
    assert!(databases.contains(&a.database), "A's data is kept (onOffboarding: Retain): {databases:?}");
    assert!(operator.staging_dir.join(A).join("incoming").is_dir(), "A's staging area is kept");
    assert!(!admin.scram_user_exists(&a.kafka_user).await.unwrap(), "A's Kafka user is gone");
    let login = coredms_client(stack, &a_creds).await;
    let read = login.database(&a.database).collection::<Document>("onboarding_check").find_one(doc! {}).await;
    assert!(read.is_err(), "A's coredms user is gone, yet it read {read:?}");
    coredms_admin.database(&a.database).drop().await.unwrap();
}
