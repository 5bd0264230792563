//! Leader election among replicas of the operator, on a `coordination.k8s.io/v1` Lease.
//!
//! Every replica is a candidate. A candidate looks at the Lease every retry period: it creates
//! it when there is none, takes it over when it is free (given up) or expired, and otherwise
//! waits. Whether a lease has expired is judged on the candidate's own clock: a lease whose
//! record has not changed for its whole duration, as this candidate saw it, is expired; the
//! holder's clock is never compared with ours. The leader renews every retry period and gives
//! leadership up when it could not renew for the renew deadline (shorter than the lease
//! duration, so it stops before anyone else may start); a process that lost leadership exits so
//! that it starts clean. On shutdown the leader frees the lease so that another replica takes
//! over at its next look instead of waiting out the duration.
//!
//! The decisions (who holds the lease, whether it expired, what to do, when to give up) are
//! pure functions; [`LeaderElector`] carries them out through the API.

use std::time::{Duration, Instant};

use k8s_openapi::{
    api::coordination::v1::{Lease, LeaseSpec},
    apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta},
    jiff::Timestamp,
};
use kube::{
    Api,
    api::{PostParams, ResourceExt},
};
use tokio::{
    sync::{oneshot, watch},
    task::JoinHandle,
};
use tracing::{error, info, warn};

use crate::{config::LeaderElectionArgs, shutdown::Shutdown};

/// Why leader election cannot go on.
#[derive(Debug, thiserror::Error)]
pub enum LeaderError {
    /// A call to the Lease API failed.
    #[error("cannot {action} Lease {namespace}/{name}: {source}")]
    Kube {
        /// What was being done (`read`, `create`, `update`).
        action: &'static str,
        /// The Lease's namespace.
        namespace: String,
        /// The Lease's name.
        name: String,
        /// The client's error.
        source: kube::Error,
    },
    /// The timings contradict each other.
    #[error(
        "leader election needs retry period < renew deadline < lease duration, got {retry_period:?} < {renew_deadline:?} < {lease_duration:?}; \
         change --leader-election-retry-period, --leader-election-renew-deadline or --leader-election-lease-duration"
    )]
    Timing {
        /// The lease duration.
        lease_duration: Duration,
        /// The renew deadline.
        renew_deadline: Duration,
        /// The retry period.
        retry_period: Duration,
    },
}

impl LeaderError {
    /// Low-cardinality label for metrics.
    pub fn category(&self) -> &'static str {
        match self {
            LeaderError::Kube { .. } => "kubernetes",
            LeaderError::Timing { .. } => "config",
        }
    }
}

/// How long a lease lasts and how often it is looked at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// How long a lease that is not renewed keeps others waiting.
    pub lease_duration: Duration,
    /// How long the leader keeps trying to renew before it gives leadership up.
    pub renew_deadline: Duration,
    /// How often candidates and the leader look at the lease.
    pub retry_period: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Self {
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }
}

impl Timing {
    /// The timings, when `retry_period < renew_deadline < lease_duration`: the leader must give
    /// up before the lease can expire for others, and must get more than one try before that.
    pub fn new(
        lease_duration: Duration,
        renew_deadline: Duration,
        retry_period: Duration,
    ) -> Result<Self, LeaderError> {
        if retry_period.is_zero() || retry_period >= renew_deadline || renew_deadline >= lease_duration {
            return Err(LeaderError::Timing { lease_duration, renew_deadline, retry_period });
        }
        Ok(Self { lease_duration, renew_deadline, retry_period })
    }

    /// Whole seconds of the lease duration, as the Lease records it (at least one).
    pub fn lease_seconds(&self) -> i32 {
        i32::try_from(self.lease_duration.as_secs().max(1)).unwrap_or(i32::MAX)
    }
}

/// What the lease says, as far as the election is concerned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Who holds it; `None` when nobody does (never held, or given up).
    pub holder: Option<String>,
    /// How long it lasts without renewal.
    pub lease_duration: Duration,
    /// When its holder last renewed it.
    pub renew_time: Option<Timestamp>,
    /// How many times it changed hands.
    pub transitions: i32,
}

/// Who holds `lease`: `None` when nobody does (an empty holder is a given-up lease).
pub fn holder(lease: &Lease) -> Option<&str> {
    lease.spec.as_ref().and_then(|s| s.holder_identity.as_deref()).filter(|h| !h.is_empty())
}

/// The election's view of `lease`; a lease without a duration lasts `fallback`.
pub fn record(lease: &Lease, fallback: Duration) -> Record {
    let spec = lease.spec.clone().unwrap_or_default();
    Record {
        holder: holder(lease).map(str::to_owned),
        lease_duration: spec
            .lease_duration_seconds
            .and_then(|s| u64::try_from(s).ok())
            .filter(|&s| s > 0)
            .map_or(fallback, Duration::from_secs),
        renew_time: spec.renew_time.map(|t| t.0),
        transitions: spec.lease_transitions.unwrap_or(0),
    }
}

/// Whether a lease whose record this candidate has seen unchanged for `unchanged_for` has
/// expired: its holder has not renewed it for a whole lease duration.
pub fn is_expired(record: &Record, unchanged_for: Duration) -> bool {
    unchanged_for >= record.lease_duration
}

/// What a candidate does after one look at the lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// There is no lease: create it, held by us.
    Create,
    /// We hold it: renew it.
    Renew,
    /// It is free or expired: take it.
    TakeOver,
    /// Someone else holds it and renews it: wait.
    Follow {
        /// The holder.
        holder: String,
    },
}

/// What candidate `identity` does about `record` (`None`: no lease exists), which it has seen
/// unchanged for `unchanged_for`.
pub fn decide(identity: &str, record: Option<&Record>, unchanged_for: Duration) -> Decision {
    let Some(record) = record else {
        return Decision::Create;
    };
    match record.holder.as_deref() {
        Some(holder) if holder == identity => Decision::Renew,
        Some(holder) if !is_expired(record, unchanged_for) => Decision::Follow { holder: holder.to_owned() },
        _ => Decision::TakeOver,
    }
}

/// Whether a leader that last renewed `since_renewed` ago must give leadership up: past the
/// renew deadline, the lease may expire for others before the next renewal lands.
pub fn must_give_up(since_renewed: Duration, timing: &Timing) -> bool {
    since_renewed >= timing.renew_deadline
}

/// How long a leader that last renewed `since_renewed` ago waits before its next renewal:
/// the retry period, cut short so that a renewal is still tried before the renew deadline.
pub fn next_renewal_in(since_renewed: Duration, timing: &Timing) -> Duration {
    let left = timing.renew_deadline.saturating_sub(since_renewed);
    timing.retry_period.min(left / 2).max(Duration::from_millis(10))
}

/// `existing` (or a new Lease named `name`) held by `identity` from `now`; a change of holder
/// counts as a transition and restarts the acquire time.
pub fn claimed(existing: Option<Lease>, name: &str, identity: &str, timing: &Timing, now: Timestamp) -> Lease {
    let mut lease = existing.unwrap_or_else(|| Lease {
        metadata: ObjectMeta { name: Some(name.to_owned()), ..ObjectMeta::default() },
        spec: None,
    });
    let previous = holder(&lease).map(str::to_owned);
    let had_record = lease.spec.is_some();
    let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
    if previous.as_deref() != Some(identity) {
        spec.acquire_time = Some(MicroTime(now));
        spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + i32::from(had_record));
    }
    spec.holder_identity = Some(identity.to_owned());
    spec.lease_duration_seconds = Some(timing.lease_seconds());
    spec.renew_time = Some(MicroTime(now));
    lease
}

/// `lease` given up: no holder, so that the next candidate to look takes it at once.
pub fn released(mut lease: Lease, now: Timestamp) -> Lease {
    let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
    spec.holder_identity = None;
    spec.renew_time = Some(MicroTime(now));
    lease
}

/// A name for this process among the candidates: the pod's (or host's) name and a random
/// suffix, so that a restarted process never mistakes its predecessor's lease for its own.
pub fn identity() -> String {
    let host = std::env::var("POD_NAME")
        .or_else(|_| std::env::var("HOSTNAME"))
        .unwrap_or_else(|_| "mysimbdp-operator".to_owned());
    format!("{host}_{:08x}", rand::random::<u32>())
}

/// What one look at the lease came to.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Standing {
    Leading,
    Following(Option<String>),
}

/// The record last seen and since when (on this process's clock) it has not changed.
struct Observation {
    record: Record,
    since: Instant,
}

/// A candidate for the leadership held in one Lease.
#[derive(Clone)]
pub struct LeaderElector {
    api: Api<Lease>,
    namespace: String,
    name: String,
    identity: String,
    timing: Timing,
}

impl LeaderElector {
    /// Candidate `identity` for the Lease `namespace/name`.
    pub fn new(client: kube::Client, namespace: &str, name: &str, identity: String, timing: Timing) -> Self {
        Self {
            api: Api::namespaced(client, namespace),
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            identity,
            timing,
        }
    }

    /// This candidate's identity, as the Lease names its holder.
    pub fn identity(&self) -> &str {
        &self.identity
    }

    fn kube_error(&self, action: &'static str) -> impl FnOnce(kube::Error) -> LeaderError + '_ {
        move |source| LeaderError::Kube { action, namespace: self.namespace.clone(), name: self.name.clone(), source }
    }

    /// Waits until this candidate leads, looking at the lease every retry period; API errors
    /// are logged and retried. The returned leadership is kept by renewing in the background.
    pub async fn acquire(&self) -> Leadership {
        let mut observed = None;
        let mut last_holder: Option<String> = None;
        loop {
            match self.try_lead(&mut observed).await {
                Ok(Standing::Leading) => {
                    info!(lease = %format!("{}/{}", self.namespace, self.name), identity = %self.identity, "leading");
                    return self.keep(observed);
                }
                Ok(Standing::Following(holder)) => {
                    if holder != last_holder {
                        info!(leader = holder.as_deref().unwrap_or("unknown"), "another replica leads; waiting");
                        last_holder = holder;
                    }
                }
                Err(error) => warn!(%error, "leader election"),
            }
            tokio::time::sleep(self.timing.retry_period).await;
        }
    }

    /// One look at the lease, and the create, renewal or take-over it calls for.
    async fn try_lead(&self, observed: &mut Option<Observation>) -> Result<Standing, LeaderError> {
        let existing = self.api.get_opt(&self.name).await.map_err(self.kube_error("read"))?;
        let now = Instant::now();
        let current = existing.as_ref().map(|l| record(l, self.timing.lease_duration));
        // The clock starts when the record is first seen as it is now.
        let unchanged_for = match observed.as_ref() {
            Some(seen) if current.as_ref() == Some(&seen.record) => now.duration_since(seen.since),
            _ => {
                *observed = current.clone().map(|record| Observation { record, since: now });
                Duration::ZERO
            }
        };
        match decide(&self.identity, current.as_ref(), unchanged_for) {
            Decision::Follow { holder } => Ok(Standing::Following(Some(holder))),
            Decision::Create => {
                let lease = claimed(None, &self.name, &self.identity, &self.timing, Timestamp::now());
                match self.api.create(&PostParams::default(), &lease).await {
                    Ok(_) => Ok(Standing::Leading),
                    // Another candidate created it first.
                    Err(kube::Error::Api(status)) if status.is_already_exists() => Ok(Standing::Following(None)),
                    Err(e) => Err(self.kube_error("create")(e)),
                }
            }
            Decision::Renew | Decision::TakeOver => {
                let Some(existing) = existing else {
                    return Ok(Standing::Following(None));
                };
                // The resource version read above makes this a compare-and-swap.
                let lease = claimed(Some(existing), &self.name, &self.identity, &self.timing, Timestamp::now());
                match self.api.replace(&self.name, &PostParams::default(), &lease).await {
                    Ok(_) => Ok(Standing::Leading),
                    // Someone else wrote it since it was read; look again next time.
                    Err(kube::Error::Api(status)) if status.is_conflict() => Ok(Standing::Following(None)),
                    Err(e) => Err(self.kube_error("update")(e)),
                }
            }
        }
    }

    /// Frees the lease if this candidate still holds it.
    async fn release(&self) -> Result<(), LeaderError> {
        let Some(lease) = self.api.get_opt(&self.name).await.map_err(self.kube_error("read"))? else {
            return Ok(());
        };
        if holder(&lease) != Some(self.identity.as_str()) {
            return Ok(());
        }
        let name = lease.name_any();
        self.api
            .replace(&name, &PostParams::default(), &released(lease, Timestamp::now()))
            .await
            .map_err(self.kube_error("update"))?;
        info!(lease = %format!("{}/{}", self.namespace, self.name), "gave the leadership up");
        Ok(())
    }

    /// Starts renewing in the background.
    fn keep(&self, observed: Option<Observation>) -> Leadership {
        let (lost_tx, lost_rx) = watch::channel(false);
        let (stop_tx, stop_rx) = oneshot::channel();
        let elector = self.clone();
        let task = tokio::spawn(async move { elector.renew(observed, lost_tx, stop_rx).await });
        Leadership { running: Some(Running { lost: lost_rx, stop: Some(stop_tx), task }) }
    }

    /// Renews until told to stop (then frees the lease) or until the leadership is lost.
    async fn renew(
        self,
        mut observed: Option<Observation>,
        lost: watch::Sender<bool>,
        mut stop: oneshot::Receiver<()>,
    ) {
        let mut renewed = Instant::now();
        loop {
            let wait = next_renewal_in(renewed.elapsed(), &self.timing);
            tokio::select! {
                _ = &mut stop => {
                    if let Err(error) = self.release().await {
                        warn!(%error, "cannot give the leadership up; it passes on when the lease expires");
                    }
                    return;
                }
                () = tokio::time::sleep(wait) => {}
            }
            let budget = self.timing.renew_deadline.saturating_sub(renewed.elapsed());
            match tokio::time::timeout(budget, self.try_lead(&mut observed)).await {
                Ok(Ok(Standing::Leading)) => renewed = Instant::now(),
                Ok(Ok(Standing::Following(Some(holder)))) => {
                    error!(leader = %holder, "another replica took the lease; leadership lost");
                    let _ = lost.send(true);
                    return;
                }
                Ok(Ok(Standing::Following(None))) => warn!("the lease changed while it was renewed; trying again"),
                Ok(Err(error)) => warn!(%error, "cannot renew the lease"),
                Err(_) => warn!("renewing the lease took too long"),
            }
            if must_give_up(renewed.elapsed(), &self.timing) {
                error!(deadline = ?self.timing.renew_deadline, "could not renew the lease in time; leadership lost");
                let _ = lost.send(true);
                return;
            }
        }
    }
}

struct Running {
    lost: watch::Receiver<bool>,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

/// Leadership held by this process, kept by renewing the lease in the background. Dropping it
/// stops the renewals without freeing the lease, as a crash would: others take over once it
/// expires. [`Leadership::release`] frees it.
pub struct Leadership {
    running: Option<Running>,
}

impl Leadership {
    /// Leadership without an election: the only replica leads, and never loses it.
    pub fn unelected() -> Self {
        Self { running: None }
    }

    /// Completes when the leadership is lost (or renewing it stopped for any other reason);
    /// never, without an election.
    pub async fn lost(&mut self) {
        match self.running.as_mut() {
            Some(running) => {
                // An error means the renewing task ended without a word: lost as well.
                let _ = running.lost.wait_for(|&lost| lost).await;
            }
            None => std::future::pending().await,
        }
    }

    /// Stops renewing and frees the lease (when still held), waiting at most a few seconds.
    pub async fn release(mut self) {
        let Some(mut running) = self.running.take() else {
            return;
        };
        if let Some(stop) = running.stop.take() {
            let _ = stop.send(());
        }
        if tokio::time::timeout(Duration::from_secs(5), &mut running.task).await.is_err() {
            running.task.abort();
        }
    }
}

impl Drop for Leadership {
    fn drop(&mut self) {
        if let Some(running) = &self.running {
            running.task.abort();
        }
    }
}

/// Leadership as the flags ask: without election at once; with it, once this replica leads.
/// `Ok(None)` when the process was told to stop before it led.
pub async fn lead(
    args: &LeaderElectionArgs,
    client: kube::Client,
    shutdown: &Shutdown,
) -> Result<Option<Leadership>, LeaderError> {
    if !args.leader_election {
        return Ok(Some(Leadership::unelected()));
    }
    let timing = Timing::new(
        args.leader_election_lease_duration.get(),
        args.leader_election_renew_deadline.get(),
        args.leader_election_retry_period.get(),
    )?;
    let namespace = args.leader_election_namespace.clone().unwrap_or_else(|| client.default_namespace().to_owned());
    let elector = LeaderElector::new(client, &namespace, &args.leader_election_lease_name, identity(), timing);
    info!(lease = %format!("{namespace}/{}", args.leader_election_lease_name), identity = %elector.identity(), "waiting to lead");
    tokio::select! {
        leadership = elector.acquire() => Ok(Some(leadership)),
        () = shutdown.wait() => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    fn lease(yaml: &str) -> Lease {
        serde_yaml::from_str(yaml).expect("lease fixture")
    }

    fn timing() -> Timing {
        Timing::new(secs(15), secs(10), secs(2)).unwrap()
    }

    #[test]
    fn the_holder_is_the_named_identity_and_an_empty_one_is_nobody() {
        let held = lease("{metadata: {name: l}, spec: {holderIdentity: pod-a_1, leaseDurationSeconds: 15}}");
        assert_eq!(holder(&held), Some("pod-a_1"));
        assert_eq!(holder(&lease("{metadata: {name: l}, spec: {holderIdentity: ''}}")), None);
        assert_eq!(holder(&lease("{metadata: {name: l}, spec: {}}")), None);
        assert_eq!(holder(&lease("{metadata: {name: l}}")), None);
    }

    #[test]
    fn a_record_takes_the_lease_duration_or_the_fallback() {
        let r = record(
            &lease(
                "{metadata: {name: l}, spec: {holderIdentity: a, leaseDurationSeconds: 7, leaseTransitions: 3, renewTime: '2026-12-01T10:00:00.000000Z'}}",
            ),
            secs(15),
        );
        assert_eq!(
            r,
            Record {
                holder: Some("a".into()),
                lease_duration: secs(7),
                renew_time: Some("2026-12-01T10:00:00Z".parse().unwrap()),
                transitions: 3
            }
        );
        for spec in ["{}", "{leaseDurationSeconds: 0}", "{leaseDurationSeconds: -4}"] {
            let r = record(&lease(&format!("{{metadata: {{name: l}}, spec: {spec}}}")), secs(15));
            assert_eq!(r.lease_duration, secs(15), "{spec}");
        }
    }

    #[test]
    fn a_lease_expires_after_its_duration_unchanged_on_our_clock() {
        let r = Record { holder: Some("a".into()), lease_duration: secs(15), renew_time: None, transitions: 0 };
        for (unchanged, expired) in [(0, false), (14, false), (15, true), (60, true)] {
            assert_eq!(is_expired(&r, secs(unchanged)), expired, "unchanged for {unchanged}s");
        }
    }

    #[test]
    fn decisions_follow_the_holder_and_the_expiry() {
        let held = |holder: Option<&str>| Record {
            holder: holder.map(str::to_owned),
            lease_duration: secs(15),
            renew_time: None,
            transitions: 1,
        };
        let cases = [
            ("no lease", None, 0, Decision::Create),
            ("ours, fresh", Some(held(Some("me"))), 0, Decision::Renew),
            ("ours, even when old", Some(held(Some("me"))), 100, Decision::Renew),
            ("theirs, fresh", Some(held(Some("them"))), 3, Decision::Follow { holder: "them".into() }),
            ("theirs, just before expiry", Some(held(Some("them"))), 14, Decision::Follow { holder: "them".into() }),
            ("theirs, expired", Some(held(Some("them"))), 15, Decision::TakeOver),
            ("given up", Some(held(None)), 0, Decision::TakeOver),
        ];
        for (what, record, unchanged, expected) in cases {
            assert_eq!(decide("me", record.as_ref(), secs(unchanged)), expected, "{what}");
        }
    }

    #[test]
    fn the_leader_gives_up_at_the_renew_deadline_and_renews_before_it() {
        let t = timing();
        assert!(!must_give_up(secs(0), &t));
        assert!(!must_give_up(Duration::from_millis(9_999), &t));
        assert!(must_give_up(secs(10), &t));
        assert_eq!(next_renewal_in(secs(0), &t), secs(2), "the retry period while the deadline is far");
        assert_eq!(next_renewal_in(secs(7), &t), Duration::from_millis(1_500), "half of what is left near it");
        assert_eq!(next_renewal_in(secs(11), &t), Duration::from_millis(10), "at once past it");
    }

    #[test]
    fn timings_must_nest() {
        assert!(Timing::new(secs(15), secs(10), secs(2)).is_ok());
        for (lease, renew, retry) in [(10, 10, 2), (15, 20, 2), (15, 10, 10), (15, 10, 0)] {
            let error = Timing::new(secs(lease), secs(renew), secs(retry)).unwrap_err();
            assert!(error.to_string().contains("--leader-election-renew-deadline"), "{error}");
        }
        assert_eq!(
            Timing::new(Duration::from_millis(900), Duration::from_millis(600), Duration::from_millis(100))
                .unwrap()
                .lease_seconds(),
            1
        );
    }

    #[test]
    fn claiming_counts_transitions_and_keeps_the_acquire_time_on_renewal() {
        let t = timing();
        let first: Timestamp = "2026-12-01T10:00:00Z".parse().unwrap();
        let later: Timestamp = "2026-12-01T10:00:02Z".parse().unwrap();
        let created = claimed(None, "op", "a", &t, first);
        let spec = created.spec.clone().unwrap();
        assert_eq!(created.metadata.name.as_deref(), Some("op"));
        assert_eq!(spec.holder_identity.as_deref(), Some("a"));
        assert_eq!((spec.lease_transitions, spec.lease_duration_seconds), (Some(0), Some(15)));
        assert_eq!(spec.acquire_time.map(|t| t.0), Some(first));

        let renewed = claimed(Some(created.clone()), "op", "a", &t, later).spec.unwrap();
        assert_eq!(renewed.acquire_time.map(|t| t.0), Some(first), "a renewal is no new acquisition");
        assert_eq!(renewed.renew_time.map(|t| t.0), Some(later));
        assert_eq!(renewed.lease_transitions, Some(0));

        let taken = claimed(Some(created.clone()), "op", "b", &t, later).spec.unwrap();
        assert_eq!((taken.holder_identity.as_deref(), taken.lease_transitions), (Some("b"), Some(1)));
        assert_eq!(taken.acquire_time.map(|t| t.0), Some(later));

        let freed = released(created, later);
        assert_eq!(holder(&freed), None);
        let retaken = claimed(Some(freed), "op", "a", &t, later).spec.unwrap();
        assert_eq!(retaken.lease_transitions, Some(1), "taking a given-up lease is a transition");
    }

    #[test]
    fn identities_differ_between_processes_of_one_pod() {
        let (a, b) = (identity(), identity());
        assert_ne!(a, b);
        assert!(a.contains('_'), "{a}");
    }
}
