//! The monitor's judgement, pure: given an app's monitoring settings, its recent reports and
//! lag samples, and its last decision, is it healthy, has it broken a threshold over a whole
//! window, has it stalled, and what (if anything) should be done about it.
//!
//! Times are Unix milliseconds so that tables of cases read plainly.

use std::time::Duration;

use mysimbdp_api::stream::{BreachAction, Monitoring, StallAction};

/// One replica's report over one measurement window.
#[derive(Debug, Clone, PartialEq)]
pub struct ReportPoint {
    /// The replica.
    pub instance: String,
    /// Window start.
    pub start_ms: i64,
    /// Window end.
    pub end_ms: i64,
    /// Messages ingested in the window.
    pub messages: u64,
    /// Bytes ingested in the window.
    pub bytes: u64,
    /// Average ingestion time of the window's messages.
    pub avg_ingestion_ms: f64,
    /// The app sent no measurement in the window.
    pub silent: bool,
    /// Messages since the replica started.
    pub total_messages: u64,
    /// Bytes since the replica started.
    pub total_bytes: u64,
}

/// The consumer group's lag behind the ends of its topics, at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LagPoint {
    /// When it was measured.
    pub at_ms: i64,
    /// Messages behind.
    pub lag: u64,
}

/// What the monitor decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// One more replica.
    ScaleUp,
    /// One fewer replica.
    ScaleDown,
    /// Restart every replica.
    Restart,
    /// Only record and tell.
    Notify,
}

impl Action {
    /// The name used in status, Events and the platform database.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::ScaleUp => "ScaleUp",
            Action::ScaleDown => "ScaleDown",
            Action::Restart => "Restart",
            Action::Notify => "Notify",
        }
    }
}

/// The app's health over the current window.
#[derive(Debug, Clone, PartialEq)]
pub enum Health {
    /// Not enough reports yet to judge a whole window.
    Unknown(String),
    /// Within every threshold.
    Healthy(String),
    /// A threshold broken over the whole window.
    Breach(String),
    /// No progress while lag grows, a hung replica, or no reports at all.
    Stalled(String),
}

impl Health {
    /// The condition reason.
    pub fn reason(&self) -> &'static str {
        match self {
            Health::Unknown(_) => "NotEnoughReports",
            Health::Healthy(_) => "WithinThresholds",
            Health::Breach(_) => "ThresholdBreached",
            Health::Stalled(_) => "Stalled",
        }
    }

    /// The explanation.
    pub fn message(&self) -> &str {
        match self {
            Health::Unknown(m) | Health::Healthy(m) | Health::Breach(m) | Health::Stalled(m) => m,
        }
    }
}

/// A decision to record.
#[derive(Debug, Clone, PartialEq)]
pub struct Proposal {
    /// What to do.
    pub action: Action,
    /// Why, in words.
    pub reason: String,
    /// Replicas after it.
    pub to_replicas: u32,
}

/// What the monitor knows of the app besides its reports.
#[derive(Debug, Clone)]
pub struct AppView<'a> {
    /// The app's monitoring settings.
    pub monitoring: &'a Monitoring,
    /// Fewest replicas.
    pub min_replicas: u32,
    /// Most replicas the app may have now: its maximum, its topics' partitions and what the
    /// tenant's stream replica quota leaves.
    pub cap: u32,
    /// What bounds `cap`, in words, for messages.
    pub cap_reason: String,
    /// Replicas the platform wants now.
    pub replicas: u32,
    /// Since when the current replicas run: the app's start, or the last scale or restart.
    pub running_since_ms: i64,
    /// When the last decision other than none was taken.
    pub last_decision_ms: Option<i64>,
    /// Since when the app has been healthy without interruption, when it is.
    pub healthy_since_ms: Option<i64>,
}

/// The outcome of one evaluation.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    /// Health over the window.
    pub health: Health,
    /// The decision, when one is due.
    pub proposal: Option<Proposal>,
}

/// How long replicas may take to send their first report before their silence counts.
pub const STARTUP_GRACE_MS: i64 = 30_000;

fn ms(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

fn secs(ms: i64) -> String {
    let s = ms as f64 / 1000.0;
    if s.fract() == 0.0 { format!("{s:.0}s") } else { format!("{s:.1}s") }
}

/// Judges the app at `now_ms` from the reports and lag samples the monitor holds (any order;
/// older ones are ignored).
pub fn evaluate(view: &AppView<'_>, reports: &[ReportPoint], lags: &[LagPoint], now_ms: i64) -> Verdict {
    let health = health(view, reports, lags, now_ms);
    let proposal = propose(view, &health, lags, now_ms);
    Verdict { health, proposal }
}

fn health(view: &AppView<'_>, reports: &[ReportPoint], lags: &[LagPoint], now_ms: i64) -> Health {
    let monitoring = view.monitoring;
    let interval = ms(monitoring.report_interval.get());
    let window = ms(monitoring.window.get());
    // Only what the current replicas did counts: reports from before a scale or restart
    // describe another deployment of the app.
    let since = now_ms.saturating_sub(window).max(view.running_since_ms);
    let recent: Vec<&ReportPoint> = reports
        .iter()
        .filter(|r| r.end_ms > since && r.end_ms <= now_ms && r.start_ms >= since.saturating_sub(interval))
        .collect();

    let missed = i64::from(monitoring.missed_reports);
    let silence_limit = missed.saturating_mul(interval);
    let last_report = reports.iter().filter(|r| r.end_ms >= view.running_since_ms).map(|r| r.end_ms).max();
    // Replicas that have not reported yet may still be starting (joining their consumer group,
    // their sidecar's first report finding the monitor): they get a grace period first.
    let limit = if last_report.is_some() { silence_limit } else { silence_limit.saturating_add(STARTUP_GRACE_MS) };
    if view.replicas > 0 && now_ms.saturating_sub(view.running_since_ms) > limit {
        let quiet_for = now_ms.saturating_sub(last_report.unwrap_or(view.running_since_ms));
        if quiet_for > limit {
            return Health::Stalled(format!(
                "no replica has reported for {} ({} report intervals of {})",
                secs(quiet_for),
                monitoring.missed_reports,
                secs(interval)
            ));
        }
        if let Some(instance) = hung_instance(reports, view.running_since_ms, monitoring.missed_reports) {
            return Health::Stalled(format!(
                "replica {instance} sent no measurement for its last {} report intervals of {}: the app is hung",
                monitoring.missed_reports,
                secs(interval)
            ));
        }
    }

    let observed_from = recent.iter().map(|r| r.start_ms).min();
    let covered = observed_from.is_some_and(|from| from <= now_ms.saturating_sub(window).saturating_add(interval));
    if !covered {
        return Health::Unknown(format!(
            "waiting for reports covering a whole window of {} since the replicas started",
            secs(window)
        ));
    }

    let messages = recent.iter().fold(0u64, |sum, r| sum.saturating_add(r.messages));
    let rate = messages as f64 * 1000.0 / window.max(1) as f64;
    let weighted: f64 = recent.iter().map(|r| r.avg_ingestion_ms * r.messages as f64).sum();
    let avg_ms = if messages > 0 { weighted / messages as f64 } else { 0.0 };
    let window_lags: Vec<&LagPoint> =
        lags.iter().filter(|l| l.at_ms > now_ms.saturating_sub(window) && l.at_ms <= now_ms).collect();
    let first_lag = window_lags.iter().min_by_key(|l| l.at_ms).map(|l| l.lag);
    let last_lag = window_lags.iter().max_by_key(|l| l.at_ms).map(|l| l.lag);
    let min_lag = window_lags.iter().map(|l| l.lag).min();

    if messages == 0
        && let (Some(first), Some(last)) = (first_lag, last_lag)
        && last > first
    {
        let ever =
            reports.iter().any(|r| r.start_ms >= view.running_since_ms.saturating_sub(interval) && r.messages > 0);
        let running_for = now_ms.saturating_sub(view.running_since_ms);
        if !ever && running_for < window.saturating_add(STARTUP_GRACE_MS) {
            return Health::Unknown(format!(
                "the replicas have not ingested anything since they started {} ago (joining the consumer group may take a while)",
                secs(running_for)
            ));
        }
        return Health::Stalled(format!(
            "no message ingested in the last {} while the lag grew from {first} to {last}",
            secs(window)
        ));
    }

    let thresholds = &monitoring.thresholds;
    let mut breaches = Vec::new();
    if let Some(limit) = &thresholds.max_avg_ingestion_time
        && messages > 0
        && avg_ms > limit.get().as_secs_f64() * 1000.0
    {
        breaches.push(format!(
            "average ingestion time {avg_ms:.1}ms over the last {} is above maxAvgIngestionTime {limit}",
            secs(window)
        ));
    }
    if let Some(limit) = thresholds.min_processing_rate
        && min_lag.is_some_and(|lag| lag > 0)
        && rate < limit
    {
        breaches.push(format!(
            "{rate:.1} msg/s over the last {} with a backlog throughout is below minProcessingRate {limit}",
            secs(window)
        ));
    }
    if let Some(limit) = thresholds.max_lag
        && let Some(lowest) = min_lag
        && lowest > limit
    {
        breaches.push(format!("the lag stayed above maxLag {limit} for the last {} (at least {lowest})", secs(window)));
    }
    if breaches.is_empty() {
        Health::Healthy(format!(
            "{rate:.1} msg/s, {avg_ms:.1}ms average ingestion time{} over the last {}",
            last_lag.map(|l| format!(", lag {l}")).unwrap_or_default(),
            secs(window)
        ))
    } else {
        Health::Breach(breaches.join("; "))
    }
}

/// A replica whose last `missed` reports (since `since_ms`) were all silent.
fn hung_instance(reports: &[ReportPoint], since_ms: i64, missed: u32) -> Option<String> {
    let mut instances: Vec<&str> = reports.iter().map(|r| r.instance.as_str()).collect();
    instances.sort_unstable();
    instances.dedup();
    instances.into_iter().find_map(|instance| {
        let mut own: Vec<&ReportPoint> =
            reports.iter().filter(|r| r.instance == instance && r.start_ms >= since_ms).collect();
        own.sort_by_key(|r| std::cmp::Reverse(r.end_ms));
        let last = &own[..own.len().min(missed as usize)];
        (last.len() == missed as usize && last.iter().all(|r| r.silent)).then(|| instance.to_owned())
    })
}

fn propose(view: &AppView<'_>, health: &Health, lags: &[LagPoint], now_ms: i64) -> Option<Proposal> {
    let monitoring = view.monitoring;
    let stabilization = ms(monitoring.stabilization.get());
    if view.last_decision_ms.is_some_and(|at| now_ms.saturating_sub(at) < stabilization) {
        return None;
    }
    let replicas = view.replicas;
    let keep = |action: Action, reason: String| Some(Proposal { action, reason, to_replicas: replicas });
    match health {
        Health::Unknown(_) => None,
        Health::Stalled(why) => match monitoring.on_stall {
            StallAction::Restart => keep(Action::Restart, format!("{why}; restarting its replicas")),
            StallAction::Notify => keep(Action::Notify, format!("{why}; onStall is Notify")),
        },
        Health::Breach(why) => match monitoring.on_breach {
            BreachAction::Scale if replicas < view.cap => Some(Proposal {
                action: Action::ScaleUp,
                reason: format!("{why}; scaling from {replicas} to {} replicas", replicas + 1),
                to_replicas: replicas + 1,
            }),
            BreachAction::Scale => {
                keep(Action::Notify, format!("{why}; cannot scale beyond {} replicas ({})", view.cap, view.cap_reason))
            }
            BreachAction::Restart => keep(Action::Restart, format!("{why}; onBreach is Restart")),
            BreachAction::Notify => keep(Action::Notify, format!("{why}; onBreach is Notify")),
        },
        Health::Healthy(why) => {
            let calm = view.healthy_since_ms.is_some_and(|since| now_ms.saturating_sub(since) >= stabilization);
            let latest_lag = lags.iter().filter(|l| l.at_ms <= now_ms).max_by_key(|l| l.at_ms).map(|l| l.lag);
            let drained = latest_lag == Some(0);
            (monitoring.on_breach == BreachAction::Scale && calm && drained && replicas > view.min_replicas).then(
                || Proposal {
                    action: Action::ScaleDown,
                    reason: format!(
                        "within every threshold for {} with no backlog ({why}); scaling from {replicas} to {} replicas",
                        secs(stabilization),
                        replicas - 1
                    ),
                    to_replicas: replicas - 1,
                },
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i64 = 1000;

    fn monitoring(yaml: &str) -> Monitoring {
        serde_yaml::from_str(yaml).unwrap()
    }

    /// One report per replica per 5 s interval, from `from` to `to` (seconds).
    fn reports(instances: &[&str], from: i64, to: i64, messages: u64, avg_ms: f64, silent: bool) -> Vec<ReportPoint> {
        let mut out = Vec::new();
        for instance in instances {
            let mut t = from;
            while t + 5 <= to {
                out.push(ReportPoint {
                    instance: (*instance).into(),
                    start_ms: t * S,
                    end_ms: (t + 5) * S,
                    messages,
                    bytes: messages * 100,
                    avg_ingestion_ms: avg_ms,
                    silent,
                    total_messages: 0,
                    total_bytes: 0,
                });
                t += 5;
            }
        }
        out
    }

    fn lags(points: &[(i64, u64)]) -> Vec<LagPoint> {
        points.iter().map(|&(at, lag)| LagPoint { at_ms: at * S, lag }).collect()
    }

    const SETTINGS: &str = "
reportInterval: 5s
window: 30s
stabilization: 60s
missedReports: 3
thresholds: {minProcessingRate: 100, maxAvgIngestionTime: 50ms, maxLag: 5000}
";

    fn view(monitoring: &Monitoring) -> AppView<'_> {
        AppView {
            monitoring,
            min_replicas: 1,
            cap: 3,
            cap_reason: "spec.replicas.max".into(),
            replicas: 1,
            running_since_ms: 0,
            last_decision_ms: None,
            healthy_since_ms: None,
        }
    }

    #[test]
    fn the_table_of_cases() {
        let m = monitoring(SETTINGS);
        let on_notify = monitoring(&format!("{SETTINGS}onBreach: Notify\nonStall: Notify\n"));
        struct Case<'a> {
            name: &'a str,
            view: AppView<'a>,
            reports: Vec<ReportPoint>,
            lags: Vec<LagPoint>,
            now: i64,
            health: &'a str,
            action: Option<(Action, u32)>,
        }
        let base = view(&m);
        let cases = [
            Case {
                name: "too early to judge",
                view: base.clone(),
                reports: reports(&["a"], 0, 10, 1000, 80.0, false),
                lags: lags(&[(10, 10)]),
                now: 10 * S,
                health: "NotEnoughReports",
                action: None,
            },
            Case {
                name: "slow messages over a whole window scale up",
                view: base.clone(),
                reports: reports(&["a"], 0, 40, 1000, 80.0, false),
                lags: lags(&[(15, 10), (40, 10)]),
                now: 40 * S,
                health: "ThresholdBreached",
                action: Some((Action::ScaleUp, 2)),
            },
            Case {
                name: "a slow rate without backlog is fine",
                view: base.clone(),
                reports: reports(&["a"], 0, 40, 10, 2.0, false),
                lags: lags(&[(15, 0), (40, 0)]),
                now: 40 * S,
                health: "WithinThresholds",
                action: None,
            },
            Case {
                name: "a slow rate with a backlog throughout scales up",
                view: base.clone(),
                reports: reports(&["a"], 0, 40, 10, 2.0, false),
                lags: lags(&[(15, 300), (40, 200)]),
                now: 40 * S,
                health: "ThresholdBreached",
                action: Some((Action::ScaleUp, 2)),
            },
            Case {
                name: "lag above maxLag throughout scales up",
                view: base.clone(),
                reports: reports(&["a"], 0, 40, 5000, 2.0, false),
                lags: lags(&[(15, 9000), (40, 8000)]),
                now: 40 * S,
                health: "ThresholdBreached",
                action: Some((Action::ScaleUp, 2)),
            },
            Case {
                name: "at the cap a breach only notifies",
                view: AppView { replicas: 3, ..base.clone() },
                reports: reports(&["a", "b", "c"], 0, 40, 1000, 80.0, false),
                lags: lags(&[(40, 0)]),
                now: 40 * S,
                health: "ThresholdBreached",
                action: Some((Action::Notify, 3)),
            },
            Case {
                name: "inside the stabilization period nothing is decided",
                view: AppView { last_decision_ms: Some(-20 * S), ..base.clone() },
                reports: reports(&["a"], 0, 40, 1000, 80.0, false),
                lags: lags(&[(40, 10)]),
                now: 30 * S,
                health: "ThresholdBreached",
                action: None,
            },
            Case {
                name: "reports from before a scale-up do not count",
                view: AppView { running_since_ms: 30 * S, last_decision_ms: Some(-100 * S), ..base.clone() },
                reports: reports(&["a"], 0, 40, 1000, 80.0, false),
                lags: lags(&[(40, 10)]),
                now: 40 * S,
                health: "NotEnoughReports",
                action: None,
            },
            Case {
                name: "no progress while lag grows is a stall",
                view: base.clone(),
                reports: [reports(&["a"], 0, 20, 500, 2.0, false), reports(&["a"], 20, 55, 0, 0.0, false)].concat(),
                lags: lags(&[(26, 100), (55, 900)]),
                now: 55 * S,
                health: "Stalled",
                action: Some((Action::Restart, 1)),
            },
            Case {
                name: "replicas that have ingested nothing yet may still be joining their group",
                view: AppView { running_since_ms: 0, ..base.clone() },
                reports: reports(&["a"], 0, 20, 0, 0.0, false),
                lags: lags(&[(11, 100), (20, 900)]),
                now: 20 * S,
                health: "NotEnoughReports",
                action: None,
            },
            Case {
                name: "idle without lag is healthy",
                view: base.clone(),
                reports: reports(&["a"], 0, 40, 0, 0.0, false),
                lags: lags(&[(15, 0), (40, 0)]),
                now: 40 * S,
                health: "WithinThresholds",
                action: None,
            },
            Case {
                name: "a silent replica is hung",
                view: base.clone(),
                reports: [reports(&["a"], 0, 20, 500, 2.0, false), reports(&["a"], 20, 40, 0, 0.0, true)].concat(),
                lags: lags(&[(40, 0)]),
                now: 40 * S,
                health: "Stalled",
                action: Some((Action::Restart, 1)),
            },
            Case {
                name: "reports that stop are a stall",
                view: base.clone(),
                reports: reports(&["a"], 0, 15, 500, 2.0, false),
                lags: vec![],
                now: 40 * S,
                health: "Stalled",
                action: Some((Action::Restart, 1)),
            },
            Case {
                name: "replicas that never reported get a grace period first",
                view: base.clone(),
                reports: vec![],
                lags: vec![],
                now: 20 * S,
                health: "NotEnoughReports",
                action: None,
            },
            Case {
                name: "replicas that never reported after the grace period are stalled",
                view: base.clone(),
                reports: vec![],
                lags: vec![],
                now: 50 * S,
                health: "Stalled",
                action: Some((Action::Restart, 1)),
            },
            Case {
                name: "notify policies only notify",
                view: view(&on_notify),
                reports: reports(&["a"], 0, 40, 1000, 80.0, false),
                lags: lags(&[(40, 10)]),
                now: 40 * S,
                health: "ThresholdBreached",
                action: Some((Action::Notify, 1)),
            },
            Case {
                name: "calm for a whole stabilization period with no backlog scales down",
                view: AppView { replicas: 2, healthy_since_ms: Some(-30 * S), ..base.clone() },
                reports: reports(&["a", "b"], 0, 40, 100, 2.0, false),
                lags: lags(&[(15, 0), (40, 0)]),
                now: 40 * S,
                health: "WithinThresholds",
                action: Some((Action::ScaleDown, 1)),
            },
            Case {
                name: "never below the minimum",
                view: AppView { healthy_since_ms: Some(-300 * S), ..base.clone() },
                reports: reports(&["a"], 0, 40, 100, 2.0, false),
                lags: lags(&[(40, 0)]),
                now: 40 * S,
                health: "WithinThresholds",
                action: None,
            },
        ];
        for case in cases {
            let verdict = evaluate(&case.view, &case.reports, &case.lags, case.now);
            assert_eq!(verdict.health.reason(), case.health, "{}: {:?}", case.name, verdict.health);
            assert_eq!(
                verdict.proposal.as_ref().map(|p| (p.action, p.to_replicas)),
                case.action,
                "{}: {verdict:?}",
                case.name
            );
        }
    }

    #[test]
    fn reasons_name_the_threshold_and_the_value() {
        let m = monitoring(SETTINGS);
        let verdict = evaluate(&view(&m), &reports(&["a"], 0, 40, 1000, 80.0, false), &lags(&[(40, 10)]), 40 * S);
        let reason = verdict.proposal.unwrap().reason;
        assert!(reason.contains("80.0ms") && reason.contains("maxAvgIngestionTime 50ms"), "{reason}");
        assert!(reason.contains("from 1 to 2 replicas"), "{reason}");
    }
}
