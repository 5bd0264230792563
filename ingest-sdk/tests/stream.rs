//! The stream runner in-process against the local stack's Kafka and coredms: while coredms
//! cannot be written, nothing is committed, skipped or dead-lettered, the replica keeps
//! reporting to its sidecar, and a stop leaves the messages for the next replica, which stores
//! them all.

use std::{
    collections::HashMap,
    io::{BufRead, BufReader},
    net::TcpListener,
    sync::{Arc, Mutex},
    time::Duration,
};

use mongodb::bson::{Document, doc};
use mysimbdp_e2e::{Stack, unique, wait_for};
use mysimbdp_ingest_sdk::{
    config::StreamConfig,
    contract::{Measurement, env},
    rdkafka::{
        Offset, TopicPartitionList,
        admin::{AdminClient, AdminOptions, NewTopic, TopicReplication},
        client::DefaultClientContext,
        consumer::{BaseConsumer, Consumer},
        producer::{FutureProducer, FutureRecord},
    },
    stream::{IncomingMessage, Stream, StreamError, StreamOptions, Wrangled},
};

const DEADLINE: Duration = Duration::from_secs(60);

/// Uncommitted messages of `group` on `topic` (one partition).
fn lag(stack: &Stack, topic: &str, group: &str) -> i64 {
    let consumer: BaseConsumer = stack.kafka_admin_config().set("group.id", group).create().unwrap();
    let timeout = Duration::from_secs(10);
    let mut list = TopicPartitionList::new();
    list.add_partition(topic, 0);
    let committed = consumer.committed_offsets(list, timeout).unwrap();
    let done = match committed.find_partition(topic, 0).map(|p| p.offset()) {
        Some(Offset::Offset(offset)) => offset,
        _ => 0,
    };
    consumer.fetch_watermarks(topic, 0, timeout).unwrap().1 - done
}

fn hook(message: &IncomingMessage) -> Wrangled {
    let n = message.json()["n"].as_i64().ok_or("n is missing")?;
    Ok((message.default_id(), doc! { "n": n }))
}

/// A stand-in for the sidecar that keeps the measurement lines it receives.
fn fake_sidecar() -> (String, Arc<Mutex<Vec<Measurement>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let lines = Arc::new(Mutex::new(Vec::new()));
    let kept = Arc::clone(&lines);
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            for line in BufReader::new(stream).lines().map_while(Result::ok) {
                kept.lock().unwrap().push(serde_json::from_str(&line).expect("a measurement line"));
            }
        }
    });
    (addr, lines)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_write_commits_nothing_and_the_next_replica_stores_everything() {
    let stack = Stack::load();
    let prefix = format!("{}.", unique("it-sdk-stream"));
    let (topic, dead_letter, group) =
        (format!("{prefix}events"), format!("{prefix}mysimbdp.dead-letter"), format!("{prefix}group"));
    let admin: AdminClient<DefaultClientContext> = stack.kafka_admin_config().create().unwrap();
    let topics = [&topic, &dead_letter].map(|t| NewTopic::new(t, 1, TopicReplication::Fixed(1)));
    for result in admin.create_topics(&topics, &AdminOptions::new()).await.unwrap() {
        result.unwrap();
    }
    let producer: FutureProducer = stack.kafka_admin_config().create().unwrap();
    for n in 0..5 {
        let value = format!("{{\"n\":{n}}}");
        producer.send(FutureRecord::<(), _>::to(&topic).payload(&value), Duration::from_secs(10)).await.unwrap();
    }

    let database = unique("it_sdk_stream").replace('-', "_");
    let (sidecar, measurements) = fake_sidecar();
    let vars: HashMap<&str, String> = [
        (env::TENANT, "t"),
        (env::APP, "events"),
        (env::INSTANCE, "events-0"),
        (env::DELIVERY, "AtLeastOnce"),
        (env::COLLECTION, "events"),
        (env::COREDMS_USERNAME, stack.var("MYSIMBDP_COREDMS_ADMIN_USER")),
        (env::COREDMS_PASSWORD, stack.var("MYSIMBDP_COREDMS_ADMIN_PASSWORD")),
        (env::COREDMS_DATABASE, &database),
        (env::COREDMS_AUTH_MECHANISM, stack.var("MYSIMBDP_COREDMS_AUTH_MECHANISM")),
        (env::COREDMS_AUTH_SOURCE, stack.var("MYSIMBDP_COREDMS_AUTH_SOURCE")),
        (env::KAFKA_BOOTSTRAP, stack.var("MYSIMBDP_KAFKA_BOOTSTRAP")),
        (env::KAFKA_SECURITY_PROTOCOL, "SASL_PLAINTEXT"),
        (env::KAFKA_SASL_MECHANISM, stack.var("MYSIMBDP_KAFKA_SASL_MECHANISM")),
        (env::KAFKA_USERNAME, stack.var("MYSIMBDP_KAFKA_ADMIN_USER")),
        (env::KAFKA_PASSWORD, stack.var("MYSIMBDP_KAFKA_ADMIN_PASSWORD")),
        (env::KAFKA_PREFIX, &prefix),
        (env::TOPICS, &topic),
        (env::CONSUMER_GROUP, &group),
        (env::DEAD_LETTER_TOPIC, &dead_letter),
        (env::SIDECAR_ADDR, &sidecar),
        (env::REPORT_INTERVAL_MS, "400"),
    ]
    .into_iter()
    .map(|(k, v)| (k, v.to_owned()))
    .collect();
    let config = |coredms_url: &str| {
        let mut vars = vars.clone();
        vars.insert(env::COREDMS_URL, coredms_url.to_owned());
        StreamConfig::from_lookup(|name| vars.get(name).cloned()).unwrap()
    };
    let options = StreamOptions {
        min_backoff: Duration::from_millis(200),
        max_backoff: Duration::from_millis(400),
        stop_timeout: Duration::from_millis(500),
        ..StreamOptions::default()
    };

    // coredms unreachable (a closed port): the replica retries, reports zeros, commits nothing.
    let closed = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let unreachable = format!("mongodb://127.0.0.1:{closed}/?serverSelectionTimeoutMS=300");
    let stream = Stream::new(config(&unreachable)).await.unwrap().options(options);
    let lines = Arc::clone(&measurements);
    let outcome = stream
        .run_until(hook, async move {
            wait_for("measurements from the failing replica", DEADLINE, || async {
                (lines.lock().unwrap().len() >= 4).then_some(())
            })
            .await;
        })
        .await;
    assert!(matches!(outcome.error, Some(StreamError::Unfinished { .. })), "{:?}", outcome.error);
    assert_eq!(outcome.exit_code(), std::process::ExitCode::FAILURE);
    assert_eq!((outcome.summary.stored(), outcome.summary.dead_lettered), (0, 0));
    assert!(measurements.lock().unwrap().iter().all(|m| m.messages == 0 && m.dead_lettered == 0));
    let (s, t, g) = (stack.clone(), topic.clone(), group.clone());
    assert_eq!(tokio::task::spawn_blocking(move || lag(&s, &t, &g)).await.unwrap(), 5, "nothing committed");

    // The next replica, with coredms back, stores every message once and commits.
    let client = stack.coredms_admin().await;
    let collection = client.database(&database).collection::<Document>("events");
    let stream = Stream::new(config(stack.var("MYSIMBDP_COREDMS_URL"))).await.unwrap();
    let outcome = stream
        .run_until(hook, async {
            wait_for("5 documents", DEADLINE, || async {
                (collection.count_documents(doc! {}).await.unwrap_or(0) == 5).then_some(())
            })
            .await;
        })
        .await;
    assert!(outcome.error.is_none(), "{:?}", outcome.error);
    assert_eq!((outcome.summary.written, outcome.summary.dead_lettered), (5, 0));
    let ids: Vec<String> = (0..5).map(|offset| format!("{topic}/0/{offset}")).collect();
    assert_eq!(collection.count_documents(doc! { "_id": { "$in": &ids } }).await.unwrap(), 5);
    let stored: u64 = measurements.lock().unwrap().iter().map(|m| m.messages).sum();
    assert_eq!(stored, 5, "the last counts reach the sidecar before the replica stops");
    let (s, t, g) = (stack.clone(), topic.clone(), group.clone());
    assert_eq!(tokio::task::spawn_blocking(move || lag(&s, &t, &g)).await.unwrap(), 0, "all committed");

    client.database(&database).drop().await.unwrap();
    let _ = admin.delete_topics(&[&topic, &dead_letter], &AdminOptions::new()).await;
}
