//! `ProtocolAdmin` against the local stack's real Kafka broker: SCRAM users, prefixed ACLs,
//! client quotas and topics, each checked both through the adapter and, where it matters,
//! through an rdkafka client of the tenant's user. Names are unique per run. The adapter is also
//! tested over the stack's SASL_SSL listener, whose certificate the stack's own CA signed:
//! trusted with that CA, refused with any other or when the certificate does not name the host.
//!
//! The broker answers reads from a metadata cache that follows the controller's log, so
//! read-backs after a write wait (with a deadline) instead of expecting the change at once.

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use futures::{StreamExt, stream::FuturesUnordered};
use mysimbdp_e2e::{Stack, unique, wait_for};
use mysimbdp_operator::{
    kafka::{
        ByteRates, KafkaAdmin, KafkaAdminError, Operation, PrefixedAllow, ResourceKind, TopicSpec, TopicState,
        Transport, protocol::ProtocolAdmin,
    },
    secret::{self, ExposeSecret, SecretString},
};
use rdkafka::{
    ClientContext, Message, Statistics,
    consumer::{Consumer, StreamConsumer},
    error::{KafkaError, RDKafkaErrorCode},
    producer::{BaseProducer, FutureProducer, FutureRecord, Producer},
    util::Timeout,
};
use tokio::{
    net::{TcpListener, TcpStream},
    task::JoinHandle,
};

const TIMEOUT: Duration = Duration::from_secs(60);
const RETENTION_MS: i64 = 3_600_000;

async fn admin(stack: &Stack) -> ProtocolAdmin {
    ProtocolAdmin::connect(
        stack.var("MYSIMBDP_KAFKA_BOOTSTRAP"),
        stack.var("MYSIMBDP_KAFKA_ADMIN_USER"),
        SecretString::from(stack.var("MYSIMBDP_KAFKA_ADMIN_PASSWORD")),
        &Transport::Plaintext,
    )
    .await
    .expect("the platform admin connects")
}

/// Creates a SCRAM user and waits until an rdkafka client authenticates with it.
async fn new_user(stack: &Stack, admin: &ProtocolAdmin, prefix: &str) -> (String, SecretString) {
    let (user, password) = (unique(prefix), secret::generate());
    admin.upsert_scram_user(&user, &password).await.expect("upsert SCRAM user");
    wait_for("the new SCRAM user to authenticate through rdkafka", TIMEOUT, || authenticates(stack, &user, &password))
        .await;
    (user, password)
}

/// `Some(())` when an rdkafka client of `user` can fetch cluster metadata, i.e. authenticates.
async fn authenticates(stack: &Stack, user: &str, password: &SecretString) -> Option<()> {
    let config = stack.kafka_config(user, password.expose_secret());
    tokio::task::spawn_blocking(move || {
        let producer: BaseProducer = config.create().ok()?;
        producer.client().fetch_metadata(None, Timeout::After(Duration::from_secs(5))).ok().map(drop)
    })
    .await
    .expect("metadata task")
}

async fn produce(
    stack: &Stack,
    user: &str,
    password: &SecretString,
    topic: &str,
    payload: &str,
) -> Result<(), KafkaError> {
    let producer: FutureProducer = stack
        .kafka_config(user, password.expose_secret())
        .set("acks", "all")
        .set("message.timeout.ms", "5000")
        .create()
        .expect("producer");
    producer
        .send(FutureRecord::<(), _>::to(topic).payload(payload), Duration::from_secs(5))
        .await
        .map(drop)
        .map_err(|(e, _)| e)
}

fn tenant_acls(principal: &str, prefix: &str) -> Vec<PrefixedAllow> {
    use {Operation::*, ResourceKind::*};
    let grants = [
        (Topic, Read),
        (Topic, Write),
        (Topic, Describe),
        (Group, Read),
        (Group, Describe),
        (TransactionalId, Write),
        (TransactionalId, Describe),
    ];
    let mut acls: Vec<PrefixedAllow> = grants
        .into_iter()
        .map(|(resource, operation)| PrefixedAllow {
            resource,
            prefix: prefix.to_owned(),
            principal: principal.to_owned(),
            operation,
        })
        .collect();
    acls.sort();
    acls
}

async fn wait_for_acls(admin: &ProtocolAdmin, principal: &str, expected: &[PrefixedAllow]) {
    wait_for(&format!("the ACLs of {principal} to be {expected:?}"), TIMEOUT, || async {
        (admin.acls_of(principal).await.expect("acls_of") == expected).then_some(())
    })
    .await;
}

async fn wait_for_topics(admin: &ProtocolAdmin, prefix: &str, expected: &[TopicState]) {
    wait_for(&format!("topics under {prefix:?} to be {expected:?}"), TIMEOUT, || async {
        (admin.topics_with_prefix(prefix).await.expect("topics_with_prefix") == expected).then_some(())
    })
    .await;
}

fn topic(name: &str, partitions: i32) -> TopicSpec {
    TopicSpec { name: name.to_owned(), partitions, retention_ms: RETENTION_MS }
}

#[tokio::test]
async fn the_admin_connects_and_a_wrong_password_is_refused() {
    let stack = Stack::load();
    let admin = admin(&stack).await;
    let versions = admin.negotiated_versions().await.expect("negotiated versions");
    eprintln!("negotiated Kafka API versions: {versions:?}");
    assert!(versions.iter().all(|(_, v)| v.is_some()), "an API has no common version: {versions:?}");

    let refused = ProtocolAdmin::connect(
        stack.var("MYSIMBDP_KAFKA_BOOTSTRAP"),
        stack.var("MYSIMBDP_KAFKA_ADMIN_USER"),
        SecretString::from("not-the-password"),
        &Transport::Plaintext,
    )
    .await;
    match refused {
        Err(KafkaAdminError::Authentication { user, message }) => {
            assert_eq!(user, stack.var("MYSIMBDP_KAFKA_ADMIN_USER"));
            assert!(message.contains("Authentication failed"), "broker message: {message}");
        }
        other => panic!("a wrong password: expected an Authentication error, got {other:?}"),
    }

    let unreachable =
        ProtocolAdmin::connect("127.0.0.1:1", "admin", SecretString::from("x"), &Transport::Plaintext).await;
    assert!(matches!(unreachable, Err(KafkaAdminError::Connect { .. })), "{unreachable:?}");
}

/// A TCP relay to the broker whose connections the test can cut, to break the adapter's
/// connection the way a broker restart or an idle timeout does.
struct Relay {
    address: String,
    accepting: JoinHandle<()>,
    connections: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl Relay {
    async fn to(target: &str) -> Self {
        Self::from_address("127.0.0.1", target).await
    }

    /// A relay listening on `ip` (any loopback address), e.g. one a certificate does not name.
    async fn from_address(ip: &str, target: &str) -> Self {
        let listener = TcpListener::bind((ip, 0)).await.expect("bind relay");
        let address = listener.local_addr().expect("relay address").to_string();
        let connections = Arc::new(Mutex::new(Vec::new()));
        let (target, registry) = (target.to_owned(), connections.clone());
        let accepting = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let target = target.clone();
                let relay = tokio::spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(&target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                registry.lock().unwrap().push(relay);
            }
        });
        Self { address, accepting, connections }
    }

    /// Closes every relayed connection.
    async fn cut(&self) {
        let connections: Vec<_> = self.connections.lock().unwrap().drain(..).collect();
        for connection in connections {
            connection.abort();
            // An aborted task has dropped (and so closed) its sockets once awaiting it returns.
            let _ = connection.await;
        }
    }
}

#[tokio::test]
async fn a_broken_connection_is_reopened_once() {
    let stack = Stack::load();
    let relay = Relay::to(stack.var("MYSIMBDP_KAFKA_BOOTSTRAP")).await;
    // The unreachable first server shows that connecting falls through the bootstrap list.
    let admin = ProtocolAdmin::connect(
        &format!("127.0.0.1:1,{}", relay.address),
        stack.var("MYSIMBDP_KAFKA_ADMIN_USER"),
        SecretString::from(stack.var("MYSIMBDP_KAFKA_ADMIN_PASSWORD")),
        &Transport::Plaintext,
    )
    .await
    .expect("the admin connects through the relay");
    let user = unique("ka-relay");
    assert!(!admin.scram_user_exists(&user).await.expect("describe before the cut"));

    relay.cut().await;
    assert!(!admin.scram_user_exists(&user).await.expect("describe after the cut: the adapter reconnects"));
    assert_eq!(relay.connections.lock().unwrap().len(), 1, "the adapter opened a new connection");

    relay.accepting.abort();
    relay.cut().await;
    match admin.scram_user_exists(&user).await {
        Err(KafkaAdminError::Connect { bootstrap, .. }) => assert!(bootstrap.contains(&relay.address), "{bootstrap}"),
        other => panic!("with the relay gone: expected a Connect error, got {other:?}"),
    }
}

#[tokio::test]
async fn scram_users_are_created_used_and_deleted() {
    let stack = Stack::load();
    let admin = admin(&stack).await;
    let user = unique("ka-scram");
    assert!(!admin.scram_user_exists(&user).await.expect("describe"), "a new user already exists");

    let password = secret::generate();
    admin.upsert_scram_user(&user, &password).await.expect("upsert");
    wait_for("the user to exist", TIMEOUT, || async {
        admin.scram_user_exists(&user).await.expect("describe").then_some(())
    })
    .await;
    wait_for("the user to authenticate through rdkafka", TIMEOUT, || authenticates(&stack, &user, &password)).await;

    admin.delete_scram_user(&user).await.expect("delete");
    wait_for("the user to be gone", TIMEOUT, || async {
        (!admin.scram_user_exists(&user).await.expect("describe")).then_some(())
    })
    .await;
    admin.delete_scram_user(&user).await.expect("deleting a deleted user succeeds");
}

#[tokio::test]
async fn prefixed_acls_let_a_tenant_use_its_topics_only() {
    let stack = Stack::load();
    let admin = admin(&stack).await;
    let (user, password) = new_user(&stack, &admin, "ka-acl").await;
    let principal = format!("User:{user}");
    let prefix = format!("{}.", unique("ka-acl"));
    let acls = tenant_acls(&principal, &prefix);

    // Another principal's binding on the same prefix must survive deleting the tenant's.
    let bystander = format!("User:{}", unique("ka-bystander"));
    let bystander_acls = vec![PrefixedAllow {
        resource: ResourceKind::Topic,
        prefix: prefix.clone(),
        principal: bystander.clone(),
        operation: Operation::DescribeConfigs,
    }];
    admin.create_acls(&acls).await.expect("create ACLs");
    admin.create_acls(&bystander_acls).await.expect("create the bystander's ACL");
    wait_for_acls(&admin, &principal, &acls).await;
    wait_for_acls(&admin, &bystander, &bystander_acls).await;

    let own = format!("{prefix}x");
    let foreign = format!("{}.y", unique("ka-foreign"));
    admin.create_topic(&topic(&own, 1)).await.expect("create own topic");
    admin.create_topic(&topic(&foreign, 1)).await.expect("create foreign topic");

    wait_for("the tenant to produce to its topic", TIMEOUT, || async {
        produce(&stack, &user, &password, &own, "hello").await.ok()
    })
    .await;
    let consumer: StreamConsumer = stack
        .kafka_config(&user, password.expose_secret())
        .set("group.id", format!("{prefix}group"))
        .set("auto.offset.reset", "earliest")
        .create()
        .expect("consumer");
    consumer.subscribe(&[&own]).expect("subscribe");
    let message = tokio::time::timeout(TIMEOUT, consumer.recv())
        .await
        .expect("a message arrives in time")
        .expect("the tenant consumes from its topic");
    assert_eq!(message.payload(), Some(&b"hello"[..]));
    drop(message);
    drop(consumer);

    match produce(&stack, &user, &password, &foreign, "intrusion").await {
        Err(KafkaError::MessageProduction(RDKafkaErrorCode::TopicAuthorizationFailed)) => {}
        other => panic!("producing to another prefix: expected TopicAuthorizationFailed, got {other:?}"),
    }

    admin.delete_acls(&acls).await.expect("delete ACLs");
    wait_for_acls(&admin, &principal, &[]).await;
    assert_eq!(admin.acls_of(&bystander).await.expect("bystander ACLs"), bystander_acls);
    admin.delete_acls(&acls).await.expect("deleting deleted ACLs succeeds");

    admin.delete_acls(&bystander_acls).await.expect("delete the bystander's ACL");
    admin.delete_topics(&[own, foreign]).await.expect("delete topics");
    admin.delete_scram_user(&user).await.expect("delete user");
}

#[tokio::test]
async fn quotas_are_set_read_back_and_removed() {
    let stack = Stack::load();
    let admin = admin(&stack).await;
    let user = unique("ka-quota");
    assert_eq!(admin.quotas_of(&user).await.expect("quotas"), ByteRates::default());

    let both = ByteRates { producer: Some(1_048_576.0), consumer: Some(2_097_152.0) };
    admin.set_quotas(&user, both).await.expect("set quotas");
    wait_for("both quotas to read back", TIMEOUT, || async {
        (admin.quotas_of(&user).await.expect("quotas") == both).then_some(())
    })
    .await;

    let producer_only = ByteRates { producer: Some(524_288.0), consumer: None };
    admin.set_quotas(&user, producer_only).await.expect("change quotas");
    wait_for("the consumer quota to be removed", TIMEOUT, || async {
        (admin.quotas_of(&user).await.expect("quotas") == producer_only).then_some(())
    })
    .await;

    admin.set_quotas(&user, ByteRates::default()).await.expect("remove quotas");
    wait_for("all quotas to be removed", TIMEOUT, || async {
        (admin.quotas_of(&user).await.expect("quotas") == ByteRates::default()).then_some(())
    })
    .await;
}

/// Records the broker throttling that librdkafka reports in its statistics.
#[derive(Clone, Default)]
struct ThrottleStats(Arc<Mutex<Throttle>>);

#[derive(Debug, Default, Clone, Copy)]
struct Throttle {
    /// Statistics reports received.
    reports: u32,
    /// Reports whose throttle window for some broker had a non-zero maximum.
    throttled_reports: u32,
    /// The largest throttle time seen, in ms.
    max_ms: i64,
}

impl ClientContext for ThrottleStats {
    fn stats(&self, statistics: Statistics) {
        let mut throttle = self.0.lock().unwrap();
        throttle.reports += 1;
        let max = statistics.brokers.values().filter_map(|b| b.throttle.as_ref()).map(|w| w.max).max().unwrap_or(0);
        if max > 0 {
            throttle.throttled_reports += 1;
            throttle.max_ms = throttle.max_ms.max(max);
        }
    }
}

#[tokio::test]
async fn a_producer_quota_throttles_the_tenant() {
    const QUOTA: f64 = 65_536.0;
    const PAYLOAD_BYTES: usize = 16 * 1024;
    const PRODUCE_FOR: Duration = Duration::from_secs(10);

    let stack = Stack::load();
    let admin = admin(&stack).await;
    let (user, password) = new_user(&stack, &admin, "ka-throttle").await;
    let prefix = format!("{}.", unique("ka-throttle"));
    let acls = tenant_acls(&format!("User:{user}"), &prefix);
    admin.create_acls(&acls).await.expect("create ACLs");
    let load = format!("{prefix}load");
    admin.create_topic(&topic(&load, 1)).await.expect("create topic");
    let quota = ByteRates { producer: Some(QUOTA), consumer: None };
    admin.set_quotas(&user, quota).await.expect("set quota");
    wait_for("the quota to read back", TIMEOUT, || async {
        (admin.quotas_of(&user).await.expect("quotas") == quota).then_some(())
    })
    .await;
    wait_for("the tenant to produce", TIMEOUT, || async {
        produce(&stack, &user, &password, &load, "warm-up").await.ok()
    })
    .await;

    let stats = ThrottleStats::default();
    let producer: FutureProducer<ThrottleStats> = stack
        .kafka_config(&user, password.expose_secret())
        .set("acks", "all")
        .set("statistics.interval.ms", "500")
        .set("message.timeout.ms", "60000")
        .create_with_context(stats.clone())
        .expect("producer");
    let payload = "x".repeat(PAYLOAD_BYTES);
    let (start, mut delivered, mut in_flight) = (Instant::now(), 0usize, FuturesUnordered::new());
    // Keep 256 KiB queued so the client always has more to send than the quota allows.
    while start.elapsed() < PRODUCE_FOR {
        while in_flight.len() < 16 {
            in_flight.push(producer.send(FutureRecord::<(), _>::to(&load).payload(&payload), Duration::from_secs(10)));
        }
        match tokio::time::timeout(PRODUCE_FOR.saturating_sub(start.elapsed()), in_flight.next()).await {
            Ok(Some(Ok(_))) => delivered += PAYLOAD_BYTES,
            Ok(Some(Err((e, _)))) => panic!("producing under the quota: {e}"),
            Ok(None) | Err(_) => break,
        }
    }
    let elapsed = start.elapsed();
    drop(in_flight);
    // The statistics of the last interval arrive one interval later.
    let reports = stats.0.lock().unwrap().reports;
    wait_for("the last statistics report", TIMEOUT, || async {
        (stats.0.lock().unwrap().reports > reports).then_some(())
    })
    .await;
    drop(producer);

    let throttle = *stats.0.lock().unwrap();
    let rate = delivered as f64 / elapsed.as_secs_f64();
    // Kafka measures the rate over its quota window (11 samples of 1 s: about 10 s of history), so
    // a run this short may deliver up to about quota × (elapsed + 10 s) / elapsed before the
    // throttling evens it out; longer runs converge on the quota.
    let windowed = QUOTA * (elapsed.as_secs_f64() + 10.0) / elapsed.as_secs_f64();
    eprintln!(
        "producer quota {QUOTA:.0} B/s: delivered {delivered} bytes in {:.2} s = {rate:.0} B/s (the quota window \
         allows about {windowed:.0} B/s over this run); broker throttle max {} ms, throttled in {} of {} \
         statistics reports",
        elapsed.as_secs_f64(),
        throttle.max_ms,
        throttle.throttled_reports,
        throttle.reports
    );
    assert!(throttle.reports > 0, "librdkafka reported no statistics");
    assert!(throttle.max_ms > 0, "the broker never throttled a producer above its quota: {throttle:?}");

    admin.set_quotas(&user, ByteRates::default()).await.expect("remove quota");
    admin.delete_acls(&acls).await.expect("delete ACLs");
    admin.delete_topics(&[load]).await.expect("delete topic");
    admin.delete_scram_user(&user).await.expect("delete user");
}

#[tokio::test]
async fn topics_are_created_grown_configured_and_deleted() {
    let stack = Stack::load();
    let admin = admin(&stack).await;
    let prefix = format!("{}.", unique("ka-topics"));
    let name = format!("{prefix}orders");
    let state = |partitions, retention_ms| vec![TopicState { name: name.clone(), partitions, retention_ms }];

    admin.create_topic(&topic(&name, 2)).await.expect("create topic");
    wait_for_topics(&admin, &prefix, &state(2, Some(RETENTION_MS))).await;
    admin.create_topic(&topic(&name, 2)).await.expect("creating an existing topic succeeds");

    admin.add_partitions(&name, 3).await.expect("add partitions");
    wait_for_topics(&admin, &prefix, &state(3, Some(RETENTION_MS))).await;
    match admin.add_partitions(&name, 2).await {
        Err(KafkaAdminError::Request { operation: "CreatePartitions", resource, code, .. }) => {
            assert_eq!((resource.as_str(), code.as_str()), (name.as_str(), "InvalidPartitions"));
        }
        other => panic!("shrinking partitions: expected a CreatePartitions request error, got {other:?}"),
    }

    let configs = BTreeMap::from([("retention.ms".to_owned(), "7200000".to_owned())]);
    admin.set_topic_configs(&name, &configs).await.expect("set configs");
    wait_for_topics(&admin, &prefix, &state(3, Some(7_200_000))).await;

    admin.delete_topics(std::slice::from_ref(&name)).await.expect("delete topic");
    wait_for_topics(&admin, &prefix, &[]).await;
    admin.delete_topics(&[name]).await.expect("deleting a deleted topic succeeds");
}

/// The stack's SASL_SSL listener, trusting `ca_file`.
async fn tls_admin(stack: &Stack, bootstrap: &str, ca_file: Option<&str>) -> Result<ProtocolAdmin, KafkaAdminError> {
    ProtocolAdmin::connect(
        bootstrap,
        stack.var("MYSIMBDP_KAFKA_ADMIN_USER"),
        SecretString::from(stack.var("MYSIMBDP_KAFKA_ADMIN_PASSWORD")),
        &Transport::Tls { ca_file: ca_file.map(Into::into) },
    )
    .await
}

/// `Some(())` when an rdkafka client of `user` fetches metadata over SASL_SSL with the settings
/// the monitor and apps get: the stack's CA and host name verification.
async fn authenticates_over_tls(stack: &Stack, user: &str, password: &SecretString) -> Option<()> {
    let mut config = stack.kafka_config(user, password.expose_secret());
    config
        .set("bootstrap.servers", stack.var("MYSIMBDP_KAFKA_SSL_BOOTSTRAP"))
        .set("security.protocol", "SASL_SSL")
        .set("ssl.ca.location", stack.var("MYSIMBDP_KAFKA_CA_FILE"))
        .set("ssl.endpoint.identification.algorithm", "https");
    tokio::task::spawn_blocking(move || {
        let producer: BaseProducer = config.create().ok()?;
        producer.client().fetch_metadata(None, Timeout::After(Duration::from_secs(5))).ok().map(drop)
    })
    .await
    .expect("metadata task")
}

#[tokio::test]
async fn the_admin_works_over_sasl_ssl_with_the_stack_ca() {
    let stack = Stack::load();
    let (bootstrap, ca) = (stack.var("MYSIMBDP_KAFKA_SSL_BOOTSTRAP"), stack.var("MYSIMBDP_KAFKA_CA_FILE"));
    let admin = tls_admin(&stack, bootstrap, Some(ca)).await.expect("the admin connects over SASL_SSL");
    let versions = admin.negotiated_versions().await.expect("negotiated versions");
    assert!(versions.iter().all(|(_, v)| v.is_some()), "an API has no common version: {versions:?}");

    // A full round trip over TLS: a SCRAM user made by the admin authenticates, over TLS too.
    let (user, password) = (unique("ka-tls"), secret::generate());
    admin.upsert_scram_user(&user, &password).await.expect("upsert over TLS");
    wait_for("the user to exist", TIMEOUT, || async {
        admin.scram_user_exists(&user).await.expect("describe over TLS").then_some(())
    })
    .await;
    wait_for("the user to authenticate through rdkafka over SASL_SSL", TIMEOUT, || {
        authenticates_over_tls(&stack, &user, &password)
    })
    .await;
    admin.delete_scram_user(&user).await.expect("delete over TLS");

    // The certificate names localhost as well as 127.0.0.1.
    let port = bootstrap.rsplit_once(':').expect("host:port").1;
    tls_admin(&stack, &format!("localhost:{port}"), Some(ca)).await.expect("the admin connects by name");
}

#[tokio::test]
async fn sasl_ssl_refuses_brokers_it_cannot_trust() {
    let stack = Stack::load();
    let bootstrap = stack.var("MYSIMBDP_KAFKA_SSL_BOOTSTRAP");
    let refused = |outcome: Result<ProtocolAdmin, KafkaAdminError>, case: &str| match outcome {
        Err(KafkaAdminError::Tls { message, .. }) => message,
        other => panic!("{case}: expected a TLS error, got {other:?}"),
    };

    // A CA file without the stack's CA (the system's bundle), and the system's CAs themselves.
    let message = refused(tls_admin(&stack, bootstrap, Some("/etc/ssl/certs/ca-certificates.crt")).await, "wrong CA");
    assert!(message.contains("not trusted") && message.contains("--kafka-ca-file"), "{message}");
    let message = refused(tls_admin(&stack, bootstrap, None).await, "system CAs");
    assert!(message.contains("not trusted"), "{message}");

    // The right CA, but an address the certificate does not name.
    let relay = Relay::from_address("127.0.0.2", bootstrap).await;
    let outcome = tls_admin(&stack, &relay.address, Some(stack.var("MYSIMBDP_KAFKA_CA_FILE"))).await;
    let message = refused(outcome, "a host the certificate does not name");
    assert!(message.contains("must name 127.0.0.2"), "{message}");

    // TLS toward the SASL_PLAINTEXT listener.
    let outcome =
        tls_admin(&stack, stack.var("MYSIMBDP_KAFKA_BOOTSTRAP"), Some(stack.var("MYSIMBDP_KAFKA_CA_FILE"))).await;
    let message = refused(outcome, "a plaintext listener");
    assert!(message.contains("is it a SASL_SSL listener"), "{message}");

    let error = tls_admin(&stack, bootstrap, Some("/nonexistent/ca.crt")).await.expect_err("a missing CA file");
    assert!(error.to_string().contains("cannot use the CA file /nonexistent/ca.crt"), "{error}");
}
