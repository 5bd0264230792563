//! Leader election against the real API server: of two candidates for one Lease only one
//! leads while the other waits; when the leader gives the lease up the other takes over at its
//! next look, and when the leader vanishes without a word (a crash) the other takes over once
//! the lease has gone unrenewed for its duration; a leader whose lease is taken loses
//! leadership.

use std::time::Duration;

use k8s_openapi::{api::coordination::v1::Lease, apimachinery::pkg::apis::meta::v1::MicroTime, jiff::Timestamp};
use kube::{Api, api::PostParams};
use mysimbdp_e2e::{Stack, unique, wait_for};
use mysimbdp_operator::leader::{self, LeaderElector, Leadership, Timing};
use tokio::task::JoinHandle;

const NAMESPACE: &str = "default";

/// Short timings, so that a take-over after a crash comes within seconds.
fn timing() -> Timing {
    Timing::new(Duration::from_secs(3), Duration::from_secs(2), Duration::from_millis(250)).expect("timings nest")
}

fn candidate(client: &kube::Client, lease: &str, identity: &str) -> LeaderElector {
    LeaderElector::new(client.clone(), NAMESPACE, lease, identity.to_owned(), timing())
}

fn campaign(elector: &LeaderElector) -> JoinHandle<Leadership> {
    let elector = elector.clone();
    tokio::spawn(async move { elector.acquire().await })
}

async fn lease(api: &Api<Lease>, name: &str) -> Lease {
    api.get(name).await.expect("the lease exists")
}

fn renew_time(lease: &Lease) -> Option<Timestamp> {
    lease.spec.as_ref()?.renew_time.as_ref().map(|t| t.0)
}

/// Waits until the holder of `name` has renewed it `times` more times.
async fn renewals(api: &Api<Lease>, name: &str, holder: &str, times: usize) {
    let mut seen = renew_time(&lease(api, name).await);
    for n in 1..=times {
        seen = wait_for(&format!("renewal {n} of the lease by {holder}"), Duration::from_secs(10), || async {
            let current = api.get(name).await.ok()?;
            assert_eq!(leader::holder(&current), Some(holder), "the leader keeps the lease");
            let renewed = renew_time(&current);
            (renewed > seen).then_some(renewed)
        })
        .await;
    }
}

#[tokio::test]
async fn one_of_two_candidates_leads_and_the_other_takes_over_when_it_stops() {
    let stack = Stack::load();
    let client = stack.kube_client().await;
    let name = unique("it-lease");
    let api: Api<Lease> = Api::namespaced(client.clone(), NAMESPACE);
    let (a, b) = (candidate(&client, &name, "candidate-a"), candidate(&client, &name, "candidate-b"));

    // Both campaign at once; exactly one wins.
    let (mut campaign_a, mut campaign_b) = (campaign(&a), campaign(&b));
    let (leadership, leader, follower, mut waiting) = tokio::select! {
        won = &mut campaign_a => (won.expect("a campaigns"), &a, &b, campaign_b),
        won = &mut campaign_b => (won.expect("b campaigns"), &b, &a, campaign_a),
    };
    assert_eq!(leader::holder(&lease(&api, &name).await), Some(leader.identity()));

    // While the leader renews, the other only waits.
    renewals(&api, &name, leader.identity(), 3).await;
    assert!(!waiting.is_finished(), "{} leads beside {}", follower.identity(), leader.identity());

    // The leader stops and gives the lease up: the other takes over at its next look, well
    // within the lease duration.
    leadership.release().await;
    let successor = tokio::time::timeout(timing().lease_duration, &mut waiting)
        .await
        .expect("the other candidate leads within the lease duration of the release")
        .expect("the other candidate campaigns");
    let taken = lease(&api, &name).await;
    assert_eq!(leader::holder(&taken), Some(follower.identity()));
    assert_eq!(taken.spec.as_ref().and_then(|s| s.lease_transitions), Some(1));

    // The new leader vanishes without giving the lease up, as a crash would: a third candidate
    // takes over once it has seen the lease unrenewed for the lease duration.
    let c = candidate(&client, &name, "candidate-c");
    let mut campaign_c = campaign(&c);
    renewals(&api, &name, follower.identity(), 1).await;
    assert!(!campaign_c.is_finished(), "c leads beside {}", follower.identity());
    drop(successor);
    let t = timing();
    let grace = t.lease_duration + 4 * t.retry_period;
    let third = tokio::time::timeout(grace, &mut campaign_c)
        .await
        .expect("a candidate leads once the abandoned lease expires")
        .expect("c campaigns");
    assert_eq!(leader::holder(&lease(&api, &name).await), Some("candidate-c"));
    third.release().await;
    assert_eq!(leader::holder(&lease(&api, &name).await), None, "a released lease has no holder");
    let _ = api.delete(&name, &Default::default()).await;
}

#[tokio::test]
async fn a_leader_whose_lease_is_taken_loses_leadership() {
    let stack = Stack::load();
    let client = stack.kube_client().await;
    let name = unique("it-lease");
    let api: Api<Lease> = Api::namespaced(client.clone(), NAMESPACE);
    let a = candidate(&client, &name, "candidate-a");
    let mut leadership = a.acquire().await;

    // Someone else writes itself into the lease, freshly renewed.
    let mut stolen = lease(&api, &name).await;
    let spec = stolen.spec.as_mut().expect("a held lease has a spec");
    spec.holder_identity = Some("intruder".into());
    spec.renew_time = Some(MicroTime(Timestamp::now()));
    api.replace(&name, &PostParams::default(), &stolen).await.expect("overwrite the lease");

    let t = timing();
    tokio::time::timeout(t.renew_deadline + t.retry_period, leadership.lost())
        .await
        .expect("the leader notices at its next renewal that it lost the lease");
    assert_eq!(leader::holder(&lease(&api, &name).await), Some("intruder"), "a lost leader does not fight back");
    leadership.release().await;
    assert_eq!(leader::holder(&lease(&api, &name).await), Some("intruder"), "releasing frees only one's own lease");
    let _ = api.delete(&name, &Default::default()).await;
}
