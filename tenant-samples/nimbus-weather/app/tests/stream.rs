//! Nimbus Weather's stream app against the local stack, as the platform runs it: the real
//! `nimbus-weather-ingest` beside a real `mysimbdp-sidecar`, with the contract's environment.
//! Every good observation lands once (redelivered and republished ones included), malformed
//! ones are dead-lettered with their reason, reports add up, and a stopped, stalled or slow app
//! shows in the reports.

mod common;

use std::{
    collections::{BTreeSet, HashMap},
    time::Duration,
};

use common::{Expected, Replica, STATION_STARTS, Tenant, header, wait_all_stored};
use mysimbdp_e2e::wait_for;
use mysimbdp_ingest_sdk::{
    contract::{Report, dead_letter},
    rdkafka::Message,
};
use nimbus_weather::feed::Malformed;

const DEADLINE: Duration = Duration::from_secs(120);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn good_observations_land_once_bad_ones_are_dead_lettered_and_reports_add_up() {
    let tenant = Tenant::create("it-nimbus", 3).await;
    // Three stations (three keys, spread over the partitions), a malformed message after every
    // 250 good ones; then the first 300 rows of each station again: duplicates by business key.
    let (per_station, every, again) = (1000u64, 250u64, 300u64);
    let mut published = 0;
    let mut malformed = 0;
    for start in STATION_STARTS {
        let summary = tenant.publish(&[
            "--skip",
            &start.to_string(),
            "--limit",
            &per_station.to_string(),
            "--malformed-every",
            &every.to_string(),
        ]);
        assert_eq!(summary["good"], per_station, "{summary}");
        published += per_station;
        malformed += summary["malformed"].as_u64().expect("malformed count");
    }
    assert_eq!(malformed, 3 * per_station / every);

    let mut replica = Replica::start(&tenant, "observations-0", 1000, &[]);
    let first = Expected::of(&STATION_STARTS.map(|s| (s, per_station)));
    assert_eq!(first.rows, published);
    wait_all_stored(&tenant, first.ids.len(), DEADLINE).await;

    for start in STATION_STARTS {
        tenant.publish(&["--skip", &start.to_string(), "--limit", &again.to_string()]);
    }
    let repeated = Expected::of(&STATION_STARTS.map(|s| (s, again)));
    assert!(repeated.ids.is_subset(&first.ids));
    wait_all_stored(&tenant, first.ids.len(), DEADLINE).await;
    let ids: Vec<String> = tenant.stored_ids().await;
    let unique: BTreeSet<String> = ids.iter().cloned().collect();
    assert_eq!(unique.len(), ids.len(), "no document twice");
    assert_eq!(unique, first.ids, "exactly the good observations, each once");

    // Dead letters: every malformed message with the reason of its kind, the rows the app
    // refuses (weather.csv has implausible values) with theirs, each with its source.
    let refused = first.refused.len() + repeated.refused.len();
    let dead = tenant.read_all(&tenant.dead_letter).await;
    assert_eq!(dead.len() as u64, malformed + refused as u64, "one dead letter per bad message");
    let mut kinds = HashMap::new();
    for message in &dead {
        let reason = header(message, dead_letter::ERROR).expect("a reason");
        assert_eq!(header(message, dead_letter::SOURCE_TOPIC).as_deref(), Some(tenant.topic.as_str()));
        assert!(header(message, dead_letter::SOURCE_PARTITION).is_some_and(|p| p.parse::<i32>().is_ok()));
        assert!(header(message, dead_letter::SOURCE_OFFSET).is_some_and(|o| o.parse::<i64>().is_ok()));
        assert_eq!(header(message, dead_letter::APP).as_deref(), Some("observations"));
        let key = String::from_utf8_lossy(message.key().expect("the original key")).into_owned();
        match key.strip_prefix("malformed-").and_then(|n| n.parse::<u64>().ok()) {
            Some(n) => {
                let kind = Malformed::nth(n);
                assert!(reason.starts_with(kind.expected_reason()), "{key}: {reason}");
                *kinds.entry(format!("{kind:?}")).or_insert(0) += 1;
            }
            None => assert!(first.refused.contains(&reason), "{key}: unexpected refusal {reason}"),
        }
        assert!(message.payload().is_some_and(|p| !p.is_empty()), "the original value is kept");
    }
    assert_eq!(kinds.len(), 4, "every kind of malformed message: {kinds:?}");

    // Reports: every stored message (duplicates included) and every dead letter counted once.
    let stored_messages = (published - first.refused.len() as u64) + (3 * again - repeated.refused.len() as u64);
    let reports = wait_for("reports covering every message", DEADLINE, || async {
        let reports = tenant.reports().await;
        reports.iter().any(|r| r.total_messages == stored_messages).then_some(reports)
    })
    .await;
    let live: Vec<&Report> = reports.iter().filter(|r| !r.silent).collect();
    assert_eq!(live.iter().map(|r| r.messages).sum::<u64>(), stored_messages);
    assert_eq!(live.iter().map(|r| r.dead_lettered).sum::<u64>(), dead.len() as u64);
    for report in &live {
        assert_eq!(report.instance, "observations-0");
        let start: times::Millis = report.window_start.parse().expect("RFC 3339 window start");
        let end: times::Millis = report.window_end.parse().expect("RFC 3339 window end");
        let seconds = (end.0 - start.0) as f64 / 1000.0;
        assert!(seconds > 0.5 && seconds < 5.0, "a window of about the interval: {report:?}");
        assert!(
            (report.processing_rate - report.messages as f64 / seconds).abs() < 1e-6 * (1.0 + report.processing_rate)
        );
        if report.messages > 0 {
            assert!(report.bytes > report.messages * 100, "observations are a few hundred bytes: {report:?}");
            assert!(report.avg_ingestion_ms > 0.0 && report.avg_ingestion_ms < 30_000.0, "{report:?}");
        } else {
            assert_eq!(report.avg_ingestion_ms, 0.0);
        }
    }
    let rss = (replica.app.peak_rss_kib(), replica.sidecar.peak_rss_kib());
    eprintln!("peak RSS (KiB): app {:?}, sidecar {:?}", rss.0, rss.1);

    // A clean stop exits 0; from then on the sidecar reports the replica silent.
    replica.app.signal("TERM");
    let status = replica.app.wait(Duration::from_secs(20));
    assert!(status.success(), "SIGTERM: {status}\n{}", replica.app.log_tail());
    let before = tenant.reports().await.len();
    wait_for("a silent report after the app stopped", DEADLINE, || async {
        let reports = tenant.reports().await;
        reports[before.min(reports.len())..].iter().any(|r| r.silent).then_some(())
    })
    .await;
    assert_eq!(tenant.count().await, first.ids.len() as u64, "nothing changed on the way out");
    replica.sidecar.signal("TERM");
    let status = replica.sidecar.wait(Duration::from_secs(20));
    assert!(status.success(), "the sidecar on SIGTERM: {status}");
    tenant.remove().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_app_goes_silent_while_it_stays_alive() {
    let tenant = Tenant::create("it-nimbus-stall", 1).await;
    tenant.publish(&["--limit", "200"]);
    let mut replica = Replica::start(&tenant, "observations-0", 500, &["--stall-after", "50"]);
    wait_for("a report from the app before it stalls", DEADLINE, || async {
        tenant.reports().await.iter().any(|r| !r.silent).then_some(())
    })
    .await;
    wait_for("a silent report while the stalled app is alive", DEADLINE, || async {
        tenant.reports().await.iter().any(|r| r.silent).then_some(())
    })
    .await;
    assert!(replica.app.is_running(), "the stalled app stays alive:\n{}", replica.app.log_tail());
    assert!(tenant.count().await <= 50, "no progress after 50 messages");
    assert!(tenant.lag().await > 0, "a stalled app commits nothing it did not store");
    // Its wrangling never comes back, yet it stops when told, as a failure: the messages it held
    // stay uncommitted for the next replica.
    replica.app.signal("TERM");
    let status = replica.app.wait(Duration::from_secs(30));
    assert_eq!(status.code(), Some(1), "{}", replica.app.log_tail());
    tenant.remove().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_app_reports_its_long_ingestion_time() {
    let tenant = Tenant::create("it-nimbus-slow", 1).await;
    tenant.publish(&["--limit", "60"]);
    let _replica = Replica::start(&tenant, "observations-0", 1000, &["--slow-ms", "60"]);
    let report = wait_for("a report of the slow app's messages", DEADLINE, || async {
        tenant.reports().await.into_iter().find(|r| r.messages > 0)
    })
    .await;
    // Every message spends at least the 60 ms of the hook between receipt and storage.
    assert!(report.avg_ingestion_ms >= 60.0, "{report:?}");
    assert!(report.processing_rate < 1000.0 / 60.0 + 1.0, "{report:?}");
    wait_all_stored(&tenant, 60, DEADLINE).await;
    tenant.remove().await;
}

/// Milliseconds since the epoch of an RFC 3339 time, parsed by the BSON crate the SDK re-exports.
mod times {
    pub struct Millis(pub i64);

    impl std::str::FromStr for Millis {
        type Err = String;

        fn from_str(text: &str) -> Result<Self, String> {
            mysimbdp_ingest_sdk::bson::DateTime::parse_rfc3339_str(text)
                .map(|t| Millis(t.timestamp_millis()))
                .map_err(|e| e.to_string())
        }
    }
}
