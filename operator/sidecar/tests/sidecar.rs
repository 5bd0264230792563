//! The metrics sidecar binary against the local stack's Kafka: measurement lines in over TCP
//! (garbage and over-long lines included), reports out on the reports topic, silent windows once
//! the app goes quiet, and a clean exit on SIGTERM.

use std::{
    io::Write,
    net::TcpStream,
    process::{Command, Stdio},
    time::Duration,
};

use mysimbdp_e2e::{Stack, unique, wait_for};
use mysimbdp_ingest_sdk::contract::{MAX_MEASUREMENT_LINE, Report, env};
use rdkafka::{
    Message, Offset, TopicPartitionList,
    admin::{AdminClient, AdminOptions, NewTopic, TopicReplication},
    client::DefaultClientContext,
    consumer::{BaseConsumer, Consumer},
};

const DEADLINE: Duration = Duration::from_secs(60);

/// Every report now on `topic` (one partition), from the start.
fn reports(stack: &Stack, topic: &str) -> Vec<(Vec<u8>, Report)> {
    let consumer: BaseConsumer = stack.kafka_admin_config().set("group.id", unique("it-sidecar")).create().unwrap();
    let timeout = Duration::from_secs(10);
    let (_, high) = consumer.fetch_watermarks(topic, 0, timeout).unwrap();
    let mut list = TopicPartitionList::new();
    list.add_partition_offset(topic, 0, Offset::Beginning).unwrap();
    consumer.assign(&list).unwrap();
    let mut out = Vec::new();
    while (out.len() as i64) < high {
        let Some(message) = consumer.poll(timeout) else { panic!("reading {topic} stalled") };
        let message = message.unwrap();
        let report = serde_json::from_slice(message.payload().unwrap()).unwrap();
        out.push((message.key().unwrap_or_default().to_vec(), report));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn measurement_lines_become_reports_and_silence_is_reported() {
    let stack = Stack::load();
    let prefix = format!("{}.", unique("it-sidecar"));
    let topic = format!("{prefix}mysimbdp.reports");
    let admin: AdminClient<DefaultClientContext> = stack.kafka_admin_config().create().unwrap();
    let new = NewTopic::new(&topic, 1, TopicReplication::Fixed(1));
    for result in admin.create_topics([&new], &AdminOptions::new()).await.unwrap() {
        result.unwrap();
    }
    let addr = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).unwrap().to_string();
    let log = std::env::temp_dir().join(format!("{}.log", unique("it-sidecar")));
    let mut sidecar = Command::new(env!("CARGO_BIN_EXE_mysimbdp-sidecar"))
        .env_clear()
        .env(env::SIDECAR_ADDR, &addr)
        .env(env::REPORTS_TOPIC, &topic)
        .env(env::REPORT_INTERVAL_MS, "500")
        .env(env::TENANT, "nimbus-weather")
        .env(env::APP, "observations")
        .env(env::INSTANCE, "observations-0")
        .env(env::KAFKA_BOOTSTRAP, stack.var("MYSIMBDP_KAFKA_BOOTSTRAP"))
        .env(env::KAFKA_SECURITY_PROTOCOL, "SASL_PLAINTEXT")
        .env(env::KAFKA_SASL_MECHANISM, stack.var("MYSIMBDP_KAFKA_SASL_MECHANISM"))
        .env(env::KAFKA_USERNAME, stack.var("MYSIMBDP_KAFKA_ADMIN_USER"))
        .env(env::KAFKA_PASSWORD, stack.var("MYSIMBDP_KAFKA_ADMIN_PASSWORD"))
        .env(env::KAFKA_PREFIX, &prefix)
        .stdin(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();

    let mut app = wait_for("the sidecar to listen", DEADLINE, || async { TcpStream::connect(&addr).ok() }).await;
    let lines = [
        r#"{"messages":100,"bytes":25000,"ingestionMs":400.0,"deadLettered":1}"#,
        "not a measurement",
        r#"{"messages":50,"bytes":12500,"ingestionMs":100.0}"#,
        "",
    ];
    for line in lines {
        writeln!(app, "{line}").unwrap();
    }
    let totals = wait_for("a report of both measurements", DEADLINE, || async {
        reports(&stack, &topic).into_iter().map(|(_, r)| r).find(|r| r.total_messages == 150)
    })
    .await;
    assert_eq!(totals.total_bytes, 37_500);

    let all = reports(&stack, &topic);
    assert!(all.iter().all(|(key, _)| key == b"observations"), "reports are keyed by the app");
    let live: Vec<&Report> = all.iter().map(|(_, r)| r).filter(|r| !r.silent).collect();
    assert_eq!(live.iter().map(|r| r.messages).sum::<u64>(), 150);
    assert_eq!(live.iter().map(|r| r.dead_lettered).sum::<u64>(), 1);
    let with_messages: Vec<&&Report> = live.iter().filter(|r| r.messages > 0).collect();
    let ingestion: f64 = with_messages.iter().map(|r| r.avg_ingestion_ms * r.messages as f64).sum();
    assert!((ingestion - 500.0).abs() < 1e-6, "the ingestion times add up: {with_messages:?}");
    for report in &live {
        assert_eq!((report.tenant.as_str(), report.instance.as_str()), ("nimbus-weather", "observations-0"));
    }

    // An over-long line closes the connection; the app's next connection is served.
    app.write_all(&vec![b'x'; MAX_MEASUREMENT_LINE + 10]).unwrap();
    let mut app = TcpStream::connect(&addr).unwrap();
    writeln!(app, r#"{{"messages":7}}"#).unwrap();
    wait_for("the next connection's measurement", DEADLINE, || async {
        reports(&stack, &topic).iter().any(|(_, r)| r.total_messages == 157).then_some(())
    })
    .await;

    // No more lines: the windows are reported silent.
    drop(app);
    let before = reports(&stack, &topic).len();
    wait_for("a silent report", DEADLINE, || async {
        reports(&stack, &topic)[before..].iter().any(|(_, r)| r.silent).then_some(())
    })
    .await;

    let killed = Command::new("kill").args(["-TERM", &sidecar.id().to_string()]).status().unwrap();
    assert!(killed.success());
    let status = tokio::task::block_in_place(|| sidecar.wait()).unwrap();
    assert!(status.success(), "SIGTERM: {status}\n{}", std::fs::read_to_string(&log).unwrap_or_default());
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("skipping a line that is not a measurement"), "{text}");
    assert!(text.contains("measurement line too long"), "{text}");
    let _ = admin.delete_topics(&[&topic], &AdminOptions::new()).await;
    let _ = std::fs::remove_file(&log);
}
