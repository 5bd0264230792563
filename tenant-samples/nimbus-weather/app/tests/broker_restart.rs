//! Nothing lost, nothing doubled through crashes: the stream app is killed (SIGKILL) in the
//! middle of a run and started again, and the shared Kafka broker is restarted while the app and
//! the publishers are busy. Afterwards coredms holds every good observation exactly once.
//!
//! This file restarts the local stack's broker, so it holds this one test: run it on its own
//! (`cargo test -p nimbus-weather --test broker_restart`), not beside other tests that use
//! Kafka. The broker is brought back up and healthy even when the test fails.

mod common;

use std::{collections::BTreeSet, time::Duration};

use common::{Expected, Replica, STATION_STARTS, Tenant, broker, header, wait_all_stored};
use mysimbdp_e2e::{Stack, wait_for};
use mysimbdp_ingest_sdk::contract::dead_letter;

const DEADLINE: Duration = Duration::from_secs(180);

/// The broker, stopped: started again (and waited for until healthy) when dropped, so that a
/// failing test leaves the stack as it found it.
struct BrokerDown(Stack);

impl BrokerDown {
    fn stop(stack: &Stack) -> Self {
        broker::stop(stack);
        Self(stack.clone())
    }

    /// Starts the broker and waits until it is healthy.
    fn start(self) {
        let started = broker::start(&self.0);
        std::mem::forget(self);
        started.unwrap_or_else(|e| panic!("the broker did not come back: {e}"));
    }
}

impl Drop for BrokerDown {
    fn drop(&mut self) {
        if let Err(e) = broker::start(&self.0) {
            eprintln!("the broker did not come back: {e}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_app_and_a_restarted_broker_lose_and_double_nothing() {
    let tenant = Tenant::create("it-nimbus-restart", 3).await;
    let (per_station, every) = (1500u64, 300u64);
    let expected = Expected::of(&STATION_STARTS.map(|s| (s, per_station)));
    // Three publishers at a steady pace for a minute, so that the app is mid-run at every step
    // below, the rebalance after the kill included.
    let mut publishers: Vec<_> = STATION_STARTS
        .iter()
        .map(|start| {
            tenant.start_publisher(&[
                "--skip",
                &start.to_string(),
                "--limit",
                &per_station.to_string(),
                "--rate",
                "25",
                "--malformed-every",
                &every.to_string(),
            ])
        })
        .collect();
    let mut replica = Replica::start(&tenant, "observations-0", 1000, &[]);

    wait_for("300 documents stored", DEADLINE, || async { (tenant.count().await >= 300).then_some(()) }).await;
    replica.app.kill();
    let at_kill = tenant.count().await;
    assert!(at_kill < expected.ids.len() as u64, "the app was killed mid-run");
    replica.restart_app(&tenant, "observations-0-app-2", &[]);
    wait_for("the restarted app to store more", DEADLINE, || async {
        (tenant.count().await >= at_kill + 200).then_some(())
    })
    .await;

    let stack = tenant.stack.clone();
    let down = tokio::task::block_in_place(|| BrokerDown::stop(&stack));
    let during = tenant.count().await;
    assert!(publishers.iter_mut().any(|p| p.is_running()), "the broker went down while messages were still coming");
    tokio::task::block_in_place(|| down.start());
    assert!(replica.app.is_running(), "the app rides out the broker's restart:\n{}", replica.app.log_tail());

    for publisher in &mut publishers {
        let status = publisher.wait(DEADLINE);
        assert!(status.success(), "a publisher lost messages ({status}):\n{}", publisher.log_tail());
        assert_eq!(publisher.summary()["good"], per_station);
    }
    wait_all_stored(&tenant, expected.ids.len(), DEADLINE).await;
    assert!(during < expected.ids.len() as u64, "the broker restarted mid-run ({during} documents then)");
    let ids = tenant.stored_ids().await;
    let unique: BTreeSet<String> = ids.iter().cloned().collect();
    assert_eq!(unique.len(), ids.len(), "no document twice");
    assert_eq!(unique, expected.ids, "every good observation, once");

    // A dead letter may be sent again after a crash (at least once), but every bad message has
    // one, and there are no others.
    let dead = tenant.read_all(&tenant.dead_letter).await;
    let sources: BTreeSet<(String, String)> = dead
        .iter()
        .map(|m| {
            let source = |name| header(m, name).expect("source headers");
            (source(dead_letter::SOURCE_PARTITION), source(dead_letter::SOURCE_OFFSET))
        })
        .collect();
    let malformed = 3 * per_station / every;
    assert_eq!(sources.len() as u64, malformed + expected.refused.len() as u64, "one dead letter per bad message");

    replica.app.signal("TERM");
    let status = replica.app.wait(Duration::from_secs(20));
    assert!(status.success(), "SIGTERM after the restarts: {status}\n{}", replica.app.log_tail());
    tenant.remove().await;
}
