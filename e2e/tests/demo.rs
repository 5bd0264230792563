//! The whole story, as a newcomer sees it with `make demo`, as assertions: the demo script runs
//! to the end on the local stack with the platform installed by its chart (the operator a pod on
//! the real node, batch runs real Jobs, the stream app a Deployment whose pods carry the metrics
//! sidecar), and then the platform's state says what it should. acme-air's fourteen good files
//! are ingested (every flights row stored) by Jobs whose pods ran on the real node, each file
//! that breaks its agreement is rejected with its reason and kept in the S3 staging store;
//! nimbus-weather's observations are stored and the messages its app refused are on its
//! dead-letter topic with their reason; both tenants and the stream app are Ready; the charts
//! are written.

use std::{collections::BTreeMap, path::Path, process::Command, time::Duration};

use object_store::{ObjectMeta, ObjectStore, path::Path as ObjectPath};

use futures::StreamExt;
use mongodb::bson::{Document, doc};
use mysimbdp_e2e::{Stack, sample_data, unique, wait_for};
use rdkafka::{
    Message,
    consumer::{Consumer, StreamConsumer},
    message::Headers,
};

fn demo(args: &[&str]) -> std::process::Output {
    Command::new(Stack::repo_dir().join("e2e/demo.sh"))
        .args(args)
        .env("MYSIMBDP_DEMO_SKIP_BUILD", "1")
        .output()
        .expect("the demo script runs")
}

/// Offboards the demo's tenants and uninstalls its platform when the test ends (also when it
/// fails), so that no later test meets a second operator or the demo's tenants.
struct Cleanup;

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = demo(&["clean"]);
    }
}

/// The first pod matching `selector` in `namespace`, as JSON.
fn kubectl_pod(stack: &Stack, namespace: &str, selector: &str) -> serde_json::Value {
    let json = stack.kubectl_ok(&["-n", namespace, "get", "pods", "-l", selector, "-o", "json"]);
    let list: serde_json::Value = serde_json::from_str(&json).expect("a pod list");
    list["items"][0].clone()
}

fn text(output: &std::process::Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr))
}

/// Every message on a topic, read from the start by the admin, until none came for a while.
async fn dead_letters(stack: &Stack, topic: &str) -> Vec<(String, BTreeMap<String, String>)> {
    let consumer: StreamConsumer = stack
        .kafka_admin_config()
        .set("group.id", unique("demo-check"))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    consumer.subscribe(&[topic]).expect("subscribe");
    let mut messages = consumer.stream();
    let mut found = Vec::new();
    while let Ok(Some(Ok(message))) = tokio::time::timeout(Duration::from_secs(15), messages.next()).await {
        let headers = message
            .headers()
            .map(|h| {
                h.iter()
                    .map(|header| {
                        (header.key.to_owned(), String::from_utf8_lossy(header.value.unwrap_or_default()).into_owned())
                    })
                    .collect()
            })
            .unwrap_or_default();
        found.push((message.key().map(|k| String::from_utf8_lossy(k).into_owned()).unwrap_or_default(), headers));
    }
    found
}

#[tokio::test]
async fn the_demo_ingests_both_tenants_and_keeps_what_it_refuses() {
    let stack = Stack::load();
    let _cleanup = Cleanup;
    let run = demo(&[]);
    let output = text(&run);
    assert!(run.status.success(), "the demo failed:\n{output}");
    assert!(output.contains("Batch ingestion, per tenant and for the platform"), "{output}");

    let admin = stack.coredms_admin().await;
    let ledger = admin.database("mysimbdp").collection::<Document>("files");
    let cursor = ledger.find(doc! { "tenant": "acme-air" }).await.unwrap();
    let files: Vec<Document> = futures::TryStreamExt::try_collect(cursor).await.unwrap();
    let status = |name: &str| {
        let file =
            files.iter().find(|f| f.get_str("name") == Ok(name)).unwrap_or_else(|| panic!("{name} in the ledger"));
        (file.get_str("status").unwrap_or_default().to_owned(), file.get_str("reason").unwrap_or_default().to_owned())
    };
    let data = sample_data();
    let mut flights_rows = 0;
    for month in 1..=12 {
        let name = format!("flights_2013_{month:02}.csv");
        assert_eq!(status(&name).0, "Ingested", "{name}");
        let text = std::fs::read_to_string(data.join(&name)).unwrap();
        flights_rows += text.lines().count() as i64 - 1;
    }
    let stored: i64 = files
        .iter()
        .filter(|f| {
            f.get_str("name").is_ok_and(|n| n.starts_with("flights_2013_")) && f.get_str("status") == Ok("Ingested")
        })
        .map(|f| f.get_i64("rowsWritten").or_else(|_| f.get_i32("rowsWritten").map(i64::from)).unwrap_or(0))
        .sum();
    assert_eq!(stored, flights_rows, "every flights row is stored, as the runs recorded them");
    for name in ["airlines.csv", "planes.csv"] {
        assert_eq!(status(name).0, "Ingested", "{name}");
    }
    for (name, reason) in [
        ("flights_2099_01.csv", "allows at most 64.0 MiB per file"),
        ("flights_2099_02.csv", "accepts `Csv`"),
        ("flights_2099_03.csv", "lacks the required field(s)"),
        ("flights_2099_04.csv", "not UTF-8 text"),
        ("weather.csv", "filename pattern"),
        ("flights_2013_13.csv", "same content as `flights_2013_01.csv`"),
    ] {
        let (state, why) = status(name);
        assert_eq!(state, "Rejected", "{name}");
        assert!(why.contains(reason), "{name}: {why}");
    }
    // Every refused file is kept in the staging store with its reason beside it.
    let store = stack.s3_admin_store();
    let listed: Vec<ObjectMeta> = store
        .list(Some(&ObjectPath::from("demo/acme-air/rejected")))
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .map(|o| o.unwrap())
        .collect();
    // This run's refused files (an earlier run's are kept too: the sample agreement retains
    // the staging area on offboarding).
    let rejected_ids: Vec<String> = files
        .iter()
        .filter(|f| f.get_str("status") == Ok("Rejected"))
        .filter_map(|f| f.get_str("_id").ok().map(|id| format!("/rejected/{id}/")))
        .collect();
    let names: Vec<&str> = listed
        .iter()
        .map(|o| o.location.as_ref())
        .filter(|n| rejected_ids.iter().any(|id| n.contains(id.as_str())))
        .collect();
    let (reasons, files): (Vec<&str>, Vec<&str>) = names.iter().partition(|n| n.ends_with(".reason"));
    assert_eq!(files.len(), 6, "every refused file is kept: {names:?}");
    assert_eq!(reasons.len(), 6, "each with a reason beside it: {names:?}");

    // The runs were Jobs whose pods ran on the real node, and ended with a termination message.
    let node = stack.var("MYSIMBDP_NODE_NAME");
    let runs = admin.database("mysimbdp").collection::<Document>("runs");
    let flights_runs: Vec<Document> = futures::TryStreamExt::try_collect(
        runs.find(doc! { "tenant": "acme-air", "app": "flights", "outcome": "Succeeded" }).await.unwrap(),
    )
    .await
    .unwrap();
    assert!(flights_runs.len() >= 6, "12 flights files, at most 2 per run: {flights_runs:?}");
    let run = flights_runs[0].get_str("_id").unwrap();
    let job_pod = kubectl_pod(&stack, "tenant-acme-air", &format!("mysimbdp.io/run={run}"));
    assert_eq!(job_pod["spec"]["nodeName"], node, "run {run} ran on the real node");
    let terminated = &job_pod["status"]["containerStatuses"][0]["state"]["terminated"];
    assert_eq!(terminated["exitCode"], 0, "{terminated}");
    assert!(terminated["message"].as_str().is_some_and(|m| m.contains("rowsWritten")), "{terminated}");
    // The stream app's pods: the app beside the platform's native sidecar, on the real node.
    let stream_pod = kubectl_pod(&stack, "tenant-nimbus-weather", "app.kubernetes.io/instance=observations");
    assert_eq!(stream_pod["spec"]["nodeName"], node);
    assert_eq!(stream_pod["spec"]["initContainers"][0]["restartPolicy"], "Always", "a native sidecar");
    assert_eq!(stream_pod["status"]["phase"], "Running");

    let observations = admin.database("nimbus_weather").collection::<Document>("observations");
    let weather_rows = std::fs::read_to_string(data.join("weather.csv")).unwrap().lines().count() as u64 - 1;
    let refused = dead_letters(&stack, "nimbus-weather.mysimbdp.dead-letter").await;
    let malformed = refused.iter().filter(|(key, _)| key.starts_with("malformed-")).count();
    assert_eq!(malformed, 26, "every malformed message is dead-lettered: {refused:?}");
    assert!(refused.iter().all(|(_, headers)| headers.get("mysimbdp.error").is_some_and(|e| !e.is_empty())));
    let stored = wait_for("the observations to be counted", Duration::from_secs(180), || async {
        observations.count_documents(doc! {}).await.ok()
    })
    .await;
    let implausible = (refused.len() - malformed) as u64;
    assert_eq!(stored + implausible, weather_rows, "each observation is stored once or refused with its reason");

    let kubectl = |args: &[&str]| stack.kubectl_ok(args);
    for tenant in ["acme-air", "nimbus-weather"] {
        let ready =
            kubectl(&["get", "tenant", tenant, "-o", "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}"]);
        assert_eq!(ready, "True", "tenant {tenant}");
    }
    let ready = kubectl(&[
        "-n",
        "tenant-nimbus-weather",
        "get",
        "streamingestapp",
        "observations",
        "-o",
        "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}",
    ]);
    assert_eq!(ready, "True");
    for chart in ["acme-air.svg", "nimbus-weather.svg"] {
        let svg = std::fs::read_to_string(Path::new(stack.var("MYSIMBDP_STATE")).join("demo").join(chart)).unwrap();
        assert!(svg.starts_with("<svg") && svg.contains("<rect x="), "{chart} has bars");
    }

    let clean = demo(&["clean"]);
    assert!(clean.status.success(), "offboarding the demo's tenants failed:\n{}", text(&clean));
}
