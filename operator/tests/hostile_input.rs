//! A tenant attacks the shared control plane with what it controls, on the real stack: it
//! publishes hostile reports on its reports topic with its own Kafka credentials (counts at
//! u64::MAX, 10,000 distinct app names, garbage) and its batch app hands in a result document
//! whose counts overflow. The operator keeps serving another tenant (whose file lands exactly),
//! its memory stays bounded (printed), and the offending tenant's apps get conditions and
//! Events that say what was refused.

use std::time::Duration;

use k8s_openapi::api::core::v1::{Event, Secret};
use kube::{Api, api::ListParams};
use mysimbdp_api::{BatchIngestApp, StreamIngestApp, Tenant};
use mysimbdp_e2e::{OperatorProcess, Stack, sample_data, stage, wait_for};
use mysimbdp_operator::batch::ledger::FileStatus;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};

mod common;

const HOSTILE: &str = "hostile-air";
const CALM: &str = "steady-air";
const HOSTILE_NS: &str = "tenant-hostile-air";
const TIMEOUT: Duration = Duration::from_secs(120);
/// Distinct app names the hostile tenant invents.
const INVENTED_APPS: usize = 10_000;

fn hostile_tenant() -> String {
    format!(
        "apiVersion: mysimbdp.io/v1alpha1
kind: Tenant
metadata: {{name: {HOSTILE}}}
spec:
  agreement:
    files: {{formats: [Csv], maxFileSize: 1Mi, maxFilesPerDay: 10, maxBytesPerDay: 10Mi}}
    compute: {{cpu: '2', memory: 2Gi, maxConcurrentBatchRuns: 1, maxStreamReplicas: 1}}
    kafka: {{topics: [{{name: events, partitions: 1}}], producerByteRate: 8Mi, consumerByteRate: 8Mi}}
    coredms: {{storageQuota: 1Gi}}
"
    )
}

/// A batch app that claims to have written u64::MAX rows, and a stream app that only idles
/// (its sidecar reports for it).
fn hostile_apps() -> String {
    let result = r#"{"files":[{"name":"overflow.csv","rowsRead":1,"rowsWritten":18446744073709551615,"rowsDuplicate":18446744073709551615}]}"#;
    format!(
        "apiVersion: mysimbdp.io/v1alpha1
kind: BatchIngestApp
metadata: {{name: liar, namespace: {HOSTILE_NS}}}
spec:
  container: {{image: registry.example.com/hostile/liar:1, command: [sh], args: ['-c', 'printf %s ''{result}'' > \"$MYSIMBDP_RESULT_FILE\"']}}
  files: {{formats: [Csv]}}
  target: {{collection: lies}}
---
apiVersion: mysimbdp.io/v1alpha1
kind: StreamIngestApp
metadata: {{name: idler, namespace: {HOSTILE_NS}}}
spec:
  container: {{image: registry.example.com/hostile/idler:1, command: [sleep], args: ['3600']}}
  topics: [events]
  consumerGroup: idler
  target: {{collection: idle}}
  replicas: {{min: 1, max: 1}}
  monitoring: {{reportInterval: 1s, window: 10s, onStall: Notify}}
"
    )
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn condition(
    conditions: &[k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition],
    type_: &str,
) -> Option<(String, String)> {
    conditions.iter().find(|c| c.type_ == type_).map(|c| (c.status.clone(), c.message.clone()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_tenant_cannot_hurt_the_operator_or_another_tenant() {
    let stack = Stack::load();
    let client = stack.kube_client().await;
    common::install_crds(&stack);
    let operator = OperatorProcess::start(env!("CARGO_BIN_EXE_mysimbdp-operator").as_ref(), &stack, &[]);
    let tenants: Api<Tenant> = Api::all(client.clone());
    common::reset(&stack, &tenants, &[HOSTILE, CALM]).await;
    let ledger = common::ledger(&stack).await;
    common::apply(&stack, &hostile_tenant());
    let (calm_tenant, calm_app) = common::flights_tenant(CALM, None, "");
    common::apply(&stack, &calm_tenant);
    common::wait_ready(&tenants, HOSTILE).await;
    common::wait_ready(&tenants, CALM).await;
    common::apply(&stack, &hostile_apps());
    common::apply(&stack, &calm_app);
    let idle_rss = rss_kib(operator.pid());

    // The hostile tenant's reports, with its own credentials, on its own reports topic.
    let secret = Api::<Secret>::namespaced(client.clone(), HOSTILE_NS).get("mysimbdp-credentials").await.unwrap();
    let value = |key: &str| String::from_utf8(secret.data.as_ref().unwrap()[key].0.clone()).unwrap();
    let producer: FutureProducer = stack
        .kafka_config(&value("MYSIMBDP_KAFKA_USERNAME"), &value("MYSIMBDP_KAFKA_PASSWORD"))
        .set("linger.ms", "20")
        .create()
        .expect("a producer");
    let topic = format!("{HOSTILE}.mysimbdp.reports");
    let now = k8s_openapi::jiff::Timestamp::now();
    let report = |app: &str, messages: &str| {
        format!(
            r#"{{"tenant":"{CALM}","app":"{app}","instance":"x-0","windowStart":"{}","windowEnd":"{now}","ingestionStart":"","messages":{messages},"bytes":1,"processingRate":1.0,"throughput":1.0,"avgIngestionMs":1.0,"deadLettered":0,"totalMessages":{messages},"totalBytes":1,"silent":false}}"#,
            now - k8s_openapi::jiff::SignedDuration::from_secs(1)
        )
    };
    // Out of bounds first, then names of apps that do not exist: more than the tenant's report
    // rate, so that the last ones are refused for the rate alone.
    let mut payloads: Vec<String> = (0..50).map(|_| report("idler", "18446744073709551615")).collect();
    payloads.extend((0..50).map(|i| format!("garbage {i} \u{0} {{")));
    payloads.extend((0..INVENTED_APPS).map(|i| report(&format!("invented-{i}"), "1")));
    // Sent all at once, as a flood would be: the broker acknowledges each.
    let sends = payloads.iter().map(|payload| {
        producer.send(FutureRecord::<(), _>::to(&topic).payload(payload.as_bytes()), Duration::from_secs(60))
    });
    for sent in futures::future::join_all(sends).await {
        sent.map_err(|(e, _)| e).expect("the broker takes the report");
    }
    producer.flush(Duration::from_secs(30)).expect("flushed");

    // The lying batch app's file, and the calm tenant's real one, staged at the same time.
    stage(&operator.staging_dir, HOSTILE, "overflow.csv", b"a,b\n1,2\n");
    let data = sample_data();
    let part = common::csv_parts(&data.join("flights_2013_01.csv"), 500, 1).remove(0);
    stage(&operator.staging_dir, CALM, "flights_2013_01_calm.csv", &part);

    let calm = common::settled(&ledger, CALM, &["flights_2013_01_calm.csv"], TIMEOUT).await;
    assert_eq!(calm[0].status, FileStatus::Ingested, "{:#?}", calm[0]);
    assert_eq!(calm[0].rows_written, Some(500), "the calm tenant's file lands exactly");

    let lied = common::settled(&ledger, HOSTILE, &["overflow.csv"], TIMEOUT).await;
    assert_eq!(lied[0].status, FileStatus::Ingested, "the exit code settles the file: {:#?}", lied[0]);
    assert_eq!(lied[0].rows_written, None, "counts from a refused result are not recorded");
    let batch_apps: Api<BatchIngestApp> = Api::namespaced(client.clone(), HOSTILE_NS);
    let (status, message) = wait_for("the lying app's ResultsAccepted condition", TIMEOUT, || async {
        let app = batch_apps.get("liar").await.ok()?;
        condition(&app.status?.conditions, "ResultsAccepted").filter(|(s, _)| s == "False")
    })
    .await;
    println!("BatchIngestApp liar: ResultsAccepted={status}: {message}");
    assert!(message.contains("files[0].rowsWritten"), "{message}");

    let stream_apps: Api<StreamIngestApp> = Api::namespaced(client.clone(), HOSTILE_NS);
    // The monitor reads the flood in a few seconds; the condition names each kind of refusal
    // once it has seen one.
    let reasons = ["broke a bound of the contract", "named no StreamIngestApp", "came faster than the limit"];
    let (status, message) =
        wait_for("the idler's ReportsAccepted condition to name every refusal", TIMEOUT, || async {
            let app = stream_apps.get("idler").await.ok()?;
            condition(&app.status?.conditions, "ReportsAccepted")
                .filter(|(s, m)| s == "False" && reasons.iter().all(|r| m.contains(r)))
        })
        .await;
    println!("StreamIngestApp idler: ReportsAccepted={status}: {message}");
    assert!(message.contains(&topic), "{message}");
    let events: Api<Event> = Api::namespaced(client.clone(), HOSTILE_NS);
    for reason in ["ResultRefused", "ReportsRefused"] {
        wait_for(&format!("a {reason} Event"), TIMEOUT, || async {
            let list = events.list(&ListParams::default()).await.ok()?;
            list.items.iter().any(|e| e.reason.as_deref() == Some(reason)).then_some(())
        })
        .await;
    }

    // Every hostile report is read and refused (the idler's own sidecar reports are accepted).
    let expected = (INVENTED_APPS + 100) as f64;
    let refused = wait_for("every hostile report to be refused", TIMEOUT, || async {
        let metrics = operator.http_get("/metrics")?;
        let refused: f64 = metrics
            .lines()
            .filter(|l| l.starts_with("mysimbdp_refused_input_total") && l.contains(HOSTILE) && l.contains("report"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum();
        (refused >= expected).then_some(refused)
    })
    .await;
    let after_rss = rss_kib(operator.pid());
    println!(
        "operator RSS: {} KiB before the attack, {} KiB after {} hostile reports ({} refused)",
        idle_rss,
        after_rss,
        payloads.len(),
        refused
    );
    // The reports refused are not remembered: what is left grows by far less than the reports'
    // own size would (10,000 × ~350 bytes), whatever the allocator keeps.
    assert!(after_rss < idle_rss + 64 * 1024, "RSS grew from {idle_rss} to {after_rss} KiB");
    assert!(operator.log_tail().lines().all(|l| !l.contains("panicked")), "{}", operator.log_tail());
    common::reset(&stack, &tenants, &[HOSTILE, CALM]).await;
}
