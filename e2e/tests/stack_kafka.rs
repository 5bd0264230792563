//! The local stack's Kafka is real and locked down: SCRAM-SHA-512 clients produce and consume;
//! a client without credentials, with a wrong password, or without ACLs gets nothing.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use futures::StreamExt;
use mysimbdp_e2e::{Stack, unique, wait_for};
use rdkafka::{
    ClientConfig, ClientContext, Message,
    admin::{AdminClient, AdminOptions, NewTopic, TopicReplication},
    client::DefaultClientContext,
    consumer::{Consumer, StreamConsumer},
    error::{KafkaError, RDKafkaErrorCode},
    producer::{BaseProducer, DeliveryResult, FutureProducer, FutureRecord, Producer, ProducerContext},
    util::Timeout,
};

const TIMEOUT: Duration = Duration::from_secs(30);

/// Keeps the errors librdkafka reports in the background (authentication failures arrive here).
#[derive(Clone, Default)]
struct Errors(Arc<Mutex<Vec<String>>>);

impl ClientContext for Errors {
    fn error(&self, error: KafkaError, reason: &str) {
        self.0.lock().unwrap().push(format!("{error}: {reason}"));
    }
}

impl ProducerContext for Errors {
    type DeliveryOpaque = ();
    fn delivery(&self, _: &DeliveryResult<'_>, _: Self::DeliveryOpaque) {}
}

impl Errors {
    fn joined(&self) -> String {
        self.0.lock().unwrap().join("\n")
    }
}

async fn create_topic(stack: &Stack, name: &str, partitions: i32) {
    let admin: AdminClient<DefaultClientContext> = stack.kafka_admin_config().create().expect("admin client");
    let topic = NewTopic::new(name, partitions, TopicReplication::Fixed(1));
    let results = admin.create_topics([&topic], &AdminOptions::new()).await.expect("create_topics request");
    for result in results {
        result.unwrap_or_else(|(topic, code)| panic!("creating topic {topic}: {code}"));
    }
}

/// Fetches metadata on a blocking thread (librdkafka's call blocks). On failure, serves the
/// client's queue until librdkafka has reported why (errors arrive through `poll`).
async fn metadata_of(config: ClientConfig, errors: Errors, topic: String) -> Result<Vec<String>, String> {
    tokio::task::spawn_blocking(move || {
        let producer: BaseProducer<Errors> = config.create_with_context(errors.clone()).map_err(|e| e.to_string())?;
        match producer.client().fetch_metadata(Some(&topic), Timeout::After(Duration::from_secs(8))) {
            Ok(metadata) => Ok(metadata
                .topics()
                .iter()
                .map(|t| {
                    let state = t.error().map_or("ok".into(), |e| RDKafkaErrorCode::from(e).to_string());
                    format!("{}: {state}", t.name())
                })
                .collect()),
            Err(e) => {
                for _ in 0..50 {
                    if !errors.joined().is_empty() {
                        break;
                    }
                    producer.poll(Duration::from_millis(100));
                }
                Err(e.to_string())
            }
        }
    })
    .await
    .expect("metadata task")
}

#[tokio::test]
async fn scram_clients_produce_and_consume() {
    let stack = Stack::load();
    let topic = unique("it-roundtrip");
    create_topic(&stack, &topic, 2).await;

    let producer: FutureProducer = stack.kafka_admin_config().set("acks", "all").create().expect("producer");
    for i in 0..20 {
        let payload = format!("{{\"n\":{i}}}");
        let key = i.to_string();
        producer
            .send(FutureRecord::to(&topic).key(&key).payload(&payload), TIMEOUT)
            .await
            .unwrap_or_else(|(e, _)| panic!("producing message {i}: {e}"));
    }
    producer.flush(TIMEOUT).expect("flush");

    let consumer: StreamConsumer = stack
        .kafka_admin_config()
        .set("group.id", unique("it-group"))
        .set("auto.offset.reset", "earliest")
        .create()
        .expect("consumer");
    consumer.subscribe(&[&topic]).expect("subscribe");
    let mut seen: Vec<i64> = tokio::time::timeout(
        TIMEOUT,
        consumer
            .stream()
            .take(20)
            .map(|m| {
                let m = m.expect("consumed message");
                let v: serde_json::Value = serde_json::from_slice(m.payload().expect("payload")).expect("JSON payload");
                v["n"].as_i64().expect("n")
            })
            .collect(),
    )
    .await
    .expect("all 20 messages arrive in time");
    seen.sort_unstable();
    assert_eq!(seen, (0..20).collect::<Vec<_>>());
}

#[tokio::test]
async fn a_client_without_credentials_is_refused() {
    let stack = Stack::load();
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", stack.var("MYSIMBDP_KAFKA_BOOTSTRAP")).set("security.protocol", "PLAINTEXT");
    let errors = Errors::default();
    let result = metadata_of(config, errors.clone(), "anything".into()).await;
    assert!(result.is_err(), "an unauthenticated client read metadata: {result:?}");
}

#[tokio::test]
async fn a_wrong_password_is_refused() {
    let stack = Stack::load();
    let config = stack.kafka_config(stack.var("MYSIMBDP_KAFKA_ADMIN_USER"), "not-the-password");
    let errors = Errors::default();
    let result = metadata_of(config, errors.clone(), "anything".into()).await;
    assert!(result.is_err(), "a wrong password read metadata: {result:?}");
    assert!(errors.joined().contains("Authentication failed"), "errors reported: {}", errors.joined());
}

#[tokio::test]
async fn a_user_without_acls_gets_nothing() {
    let stack = Stack::load();
    let topic = unique("it-guarded");
    create_topic(&stack, &topic, 1).await;
    let user = unique("it-no-acl");
    let password = "no-acl-password-1";
    stack.kafka_tool(
        "kafka.admin.ConfigCommand",
        &[
            "--bootstrap-server",
            stack.var("MYSIMBDP_KAFKA_BOOTSTRAP"),
            "--command-config",
            stack.var("MYSIMBDP_KAFKA_ADMIN_CONFIG"),
            "--alter",
            "--entity-type",
            "users",
            "--entity-name",
            &user,
            "--add-config",
            &format!("SCRAM-SHA-512=[iterations=4096,password={password}]"),
        ],
    );

    // The new credential reaches the broker through its metadata log; wait until it
    // authenticates, then check that authorization refuses the topic.
    let topics = wait_for("the new SCRAM user to authenticate", TIMEOUT, || {
        let config = stack.kafka_config(&user, password);
        let topic = topic.clone();
        async move { metadata_of(config, Errors::default(), topic).await.ok() }
    })
    .await;
    assert_eq!(topics, vec![format!("{topic}: {}", RDKafkaErrorCode::TopicAuthorizationFailed)]);

    let producer: FutureProducer =
        stack.kafka_config(&user, password).set("message.timeout.ms", "10000").create().expect("producer");
    let sent = producer.send(FutureRecord::<(), _>::to(&topic).payload("x"), TIMEOUT).await;
    match sent {
        Err((KafkaError::MessageProduction(RDKafkaErrorCode::TopicAuthorizationFailed), _)) => {}
        other => panic!("producing without ACLs: expected TopicAuthorizationFailed, got {other:?}"),
    }

    let consumer: StreamConsumer = stack
        .kafka_config(&user, password)
        .set("group.id", unique("it-no-acl-group"))
        .set("auto.offset.reset", "earliest")
        .create()
        .expect("consumer");
    consumer.subscribe(&[&topic]).expect("subscribe");
    let first = tokio::time::timeout(TIMEOUT, consumer.recv()).await.expect("the consumer reports an error in time");
    let err = first.expect_err("consuming without ACLs delivered a message");
    let text = err.to_string();
    assert!(text.contains("authorization failed") || text.contains("Authorization failed"), "consumer error: {text}");
}
