//! What the monitor remembers of the apps' reports, with bounds a tenant cannot lift. Reports
//! come from a topic every replica of the tenant (and so the tenant's own code) can write, so
//! each one passes a gate first: it must decode within the contract's bounds
//! ([`Report::decode`]), name a StreamIngestApp of the tenant, and fit the tenant's report rate.
//! What passes is kept per app for [`MEMORY`] at most, for at most [`MAX_INSTANCES`] replicas
//! and [`MAX_POINTS`] windows; apps that no longer exist are forgotten. What is refused is
//! counted per tenant, with the last reason, so that the tenant's apps can say so in their
//! status. Everything here is pure and takes the time as an argument.

use std::{
    collections::{BTreeMap, HashMap},
    time::Duration,
};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use mysimbdp_api::stream::ReportSummary;
use mysimbdp_ingest_sdk::contract::{Refused, Report, decode::cut};

use super::evaluate::{LagPoint, ReportPoint};

/// Reports and lag samples are kept this long.
pub const MEMORY: Duration = Duration::from_secs(900);
/// Most replicas remembered per app; the one heard from least recently goes first.
pub const MAX_INSTANCES: usize = 64;
/// Most report windows remembered per app; the oldest go first.
pub const MAX_POINTS: usize = 4096;
/// Reports per second a tenant may publish, on average (an app with ten replicas reporting
/// every second uses half of it).
pub const REPORTS_PER_SECOND: f64 = 20.0;
/// Reports a tenant may publish at once above that rate.
pub const REPORT_BURST: f64 = 400.0;
/// How long a refusal is shown in the tenant's apps' status after the last one.
pub const REFUSALS_SHOWN_FOR: Duration = Duration::from_secs(600);

fn memory_ms() -> i64 {
    i64::try_from(MEMORY.as_millis()).unwrap_or(i64::MAX)
}

/// Why a report was refused.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Refusal {
    /// It broke a bound of the contract.
    Invalid,
    /// It named no StreamIngestApp of the tenant.
    UnknownApp,
    /// The tenant published reports faster than [`REPORTS_PER_SECOND`].
    RateLimited,
}

impl Refusal {
    fn describe(&self) -> &'static str {
        match self {
            Refusal::Invalid => "broke a bound of the contract",
            Refusal::UnknownApp => "named no StreamIngestApp of the tenant",
            Refusal::RateLimited => "came faster than the limit",
        }
    }
}

/// The refusals of one tenant's reports.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Refusals {
    /// How many, by reason.
    pub counts: BTreeMap<Refusal, u64>,
    /// When the first and the last of them happened.
    pub first_ms: i64,
    /// When the last happened.
    pub last_ms: i64,
    /// The last reason, in words (bounded).
    pub last_reason: String,
}

impl Refusals {
    /// A sentence for the apps' status: what was refused, why, and what to do.
    pub fn message(&self, topic: &str) -> String {
        let total = self.counts.values().fold(0u64, |a, b| a.saturating_add(*b));
        let parts: Vec<String> = self.counts.iter().map(|(r, n)| format!("{n} {}", r.describe())).collect();
        format!(
            "the monitor refused {total} report(s) on topic {topic} ({}); the last: {}. Reports must name one of the tenant's StreamIngestApps, stay within the contract's bounds (ingest-sdk/README.md, Reports) and come at most {REPORTS_PER_SECOND} per second per tenant",
            parts.join(", "),
            self.last_reason
        )
    }
}

/// A token bucket per tenant.
#[derive(Debug, Clone)]
struct Bucket {
    tokens: f64,
    at_ms: i64,
}

impl Bucket {
    fn take(&mut self, now_ms: i64) -> bool {
        let elapsed = now_ms.saturating_sub(self.at_ms).max(0) as f64 / 1000.0;
        self.tokens = (self.tokens + elapsed * REPORTS_PER_SECOND).min(REPORT_BURST);
        self.at_ms = self.at_ms.max(now_ms);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// What the monitor remembers of one app.
#[derive(Debug, Default)]
pub struct AppMemory {
    /// Report windows, any order.
    pub reports: Vec<ReportPoint>,
    /// The latest report of each replica.
    pub latest: HashMap<String, Report>,
    /// Lag samples.
    pub lags: Vec<LagPoint>,
    /// Since when the app has been healthy without interruption.
    pub healthy_since_ms: Option<i64>,
    /// When the monitor last judged it.
    pub last_judged_ms: i64,
    /// When this monitor last decided about the app, to the millisecond (the status keeps
    /// whole seconds only).
    pub last_decided_ms: Option<i64>,
}

impl AppMemory {
    fn add(&mut self, report: &Report, point: ReportPoint) {
        let oldest = point.end_ms.saturating_sub(memory_ms());
        self.reports.retain(|r| r.end_ms >= oldest && !(r.instance == point.instance && r.end_ms == point.end_ms));
        self.reports.push(point);
        if self.reports.len() > MAX_POINTS {
            self.reports.sort_by_key(|r| std::cmp::Reverse(r.end_ms));
            self.reports.truncate(MAX_POINTS);
        }
        let newer = self.latest.get(&report.instance).is_none_or(|l| l.window_end <= report.window_end);
        if newer {
            self.latest.insert(report.instance.clone(), report.clone());
        }
        self.latest.retain(|_, r| r.window_ms().is_ok_and(|(_, end)| end >= oldest));
        while self.latest.len() > MAX_INSTANCES {
            let stalest = self.latest.iter().min_by_key(|(_, r)| r.window_ms().map_or(i64::MIN, |w| w.1));
            let Some(key) = stalest.map(|(k, _)| k.clone()) else { break };
            self.latest.remove(&key);
        }
    }

    /// Adds a lag sample taken at `now_ms`, forgetting those older than [`MEMORY`].
    pub fn add_lag(&mut self, now_ms: i64, lag: u64) {
        self.lags.push(LagPoint { at_ms: now_ms, lag });
        let oldest = now_ms.saturating_sub(memory_ms());
        self.lags.retain(|l| l.at_ms >= oldest);
        if self.lags.len() > MAX_POINTS {
            self.lags.drain(..self.lags.len() - MAX_POINTS);
        }
    }
}

/// An app: its tenant and its name.
pub type Key = (String, String);

/// The reports, judgements and refusals of every app and tenant.
#[derive(Debug, Default)]
pub struct Memory {
    /// Per app.
    pub apps: HashMap<Key, AppMemory>,
    buckets: HashMap<String, Bucket>,
    refusals: HashMap<String, Refusals>,
}

/// A report's window as the monitor judges it; `None` when its times do not parse.
pub fn point(report: &Report) -> Option<ReportPoint> {
    let (start_ms, end_ms) = report.window_ms().ok()?;
    Some(ReportPoint {
        instance: report.instance.clone(),
        start_ms,
        end_ms,
        messages: report.messages,
        bytes: report.bytes,
        avg_ingestion_ms: report.avg_ingestion_ms,
        silent: report.silent,
        total_messages: report.total_messages,
        total_bytes: report.total_bytes,
    })
}

impl Memory {
    /// Takes in one report of `tenant` read at `now_ms`: the decoded report (or why it could
    /// not be decoded), and whether it names an app of the tenant. Returns the report when it
    /// was kept.
    pub fn admit(
        &mut self,
        tenant: &str,
        decoded: Result<Report, Refused>,
        app_exists: impl FnOnce(&str) -> bool,
        now_ms: i64,
    ) -> Result<Report, Refusal> {
        let bucket = self.buckets.entry(tenant.to_owned()).or_insert(Bucket { tokens: REPORT_BURST, at_ms: now_ms });
        if !bucket.take(now_ms) {
            let reason = format!("more than {REPORTS_PER_SECOND} reports per second");
            return Err(self.refuse(tenant, Refusal::RateLimited, reason, now_ms));
        }
        let report = match decoded {
            Ok(report) => report,
            Err(refused) => return Err(self.refuse(tenant, Refusal::Invalid, refused.to_string(), now_ms)),
        };
        if !app_exists(&report.app) {
            let reason = format!("app {:?} is not a StreamIngestApp of the tenant", report.app);
            return Err(self.refuse(tenant, Refusal::UnknownApp, reason, now_ms));
        }
        self.remember(tenant, &report);
        Ok(report)
    }

    /// Keeps a report that passed the gate (or one read back from the platform database).
    pub fn remember(&mut self, tenant: &str, report: &Report) {
        let Some(point) = point(report) else { return };
        self.apps.entry((tenant.to_owned(), report.app.clone())).or_default().add(report, point);
    }

    fn refuse(&mut self, tenant: &str, why: Refusal, reason: String, now_ms: i64) -> Refusal {
        let refusals = self.refusals.entry(tenant.to_owned()).or_default();
        if refusals.counts.is_empty() || now_ms.saturating_sub(refusals.last_ms) > shown_ms() {
            *refusals = Refusals { first_ms: now_ms, ..Refusals::default() };
        }
        let count = refusals.counts.entry(why.clone()).or_default();
        *count = count.saturating_add(1);
        refusals.last_ms = now_ms;
        refusals.last_reason = cut(&reason, 300);
        why
    }

    /// The tenant's refusals, while they are recent enough to show.
    pub fn refusals(&self, tenant: &str, now_ms: i64) -> Option<&Refusals> {
        self.refusals.get(tenant).filter(|r| now_ms.saturating_sub(r.last_ms) <= shown_ms())
    }

    /// Forgets apps and tenants that no longer exist.
    pub fn retain(&mut self, app_exists: impl Fn(&Key) -> bool, tenant_exists: impl Fn(&str) -> bool) {
        self.apps.retain(|key, _| app_exists(key));
        self.buckets.retain(|tenant, _| tenant_exists(tenant));
        self.refusals.retain(|tenant, _| tenant_exists(tenant));
    }

    /// How many apps, replicas and windows are remembered (for metrics and tests).
    pub fn size(&self) -> (usize, usize, usize) {
        let instances = self.apps.values().map(|a| a.latest.len()).sum();
        let points = self.apps.values().map(|a| a.reports.len()).sum();
        (self.apps.len(), instances, points)
    }
}

fn shown_ms() -> i64 {
    i64::try_from(REFUSALS_SHOWN_FOR.as_millis()).unwrap_or(i64::MAX)
}

/// The latest report of every replica that reported since `since_ms`, summed up (saturating).
pub fn summary(app: &AppMemory, since_ms: i64, lag: Option<u64>) -> Option<ReportSummary> {
    let latest: Vec<(&Report, (i64, i64))> = app
        .latest
        .values()
        .filter_map(|r| r.window_ms().ok().map(|w| (r, w)))
        .filter(|(_, (_, end))| *end >= since_ms)
        .collect();
    let start = latest.iter().map(|(_, (s, _))| *s).min()?;
    let end = latest.iter().map(|(_, (_, e))| *e).max()?;
    let sum = |f: fn(&Report) -> u64| latest.iter().fold(0u64, |acc, (r, _)| acc.saturating_add(f(r)));
    let messages = sum(|r| r.messages);
    let weighted: f64 = latest.iter().map(|(r, _)| r.avg_ingestion_ms * r.messages as f64).sum();
    let time = |ms: i64| k8s_openapi::jiff::Timestamp::from_millisecond(ms).ok().map(Time);
    Some(ReportSummary {
        window_start: time(start)?,
        window_end: time(end)?,
        processing_rate: latest.iter().map(|(r, _)| r.processing_rate).sum(),
        throughput: latest.iter().map(|(r, _)| r.throughput).sum(),
        avg_ingestion_ms: if messages > 0 { weighted / messages as f64 } else { 0.0 },
        messages: sum(|r| r.total_messages),
        bytes: sum(|r| r.total_bytes),
        lag,
        reporting_replicas: u32::try_from(latest.len()).unwrap_or(u32::MAX),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(app: &str, instance: &str, end_s: i64, messages: u64) -> Report {
        let at = |s: i64| k8s_openapi::jiff::Timestamp::from_second(1_700_000_000 + s).unwrap().to_string();
        Report {
            tenant: "ignored".into(),
            app: app.into(),
            instance: instance.into(),
            window_start: at(end_s - 5),
            window_end: at(end_s),
            ingestion_start: String::new(),
            messages,
            bytes: messages,
            processing_rate: 2.0,
            throughput: 200.0,
            avg_ingestion_ms: 3.0,
            dead_lettered: 0,
            total_messages: messages,
            total_bytes: messages,
            silent: false,
        }
    }

    const NOW: i64 = 1_700_000_000_000;

    #[test]
    fn one_point_per_replica_and_window() {
        let mut memory = Memory::default();
        let r = report("observations", "observations-0", 5, 10);
        memory.admit("nimbus", Ok(r.clone()), |_| true, NOW).unwrap();
        memory.admit("nimbus", Ok(r), |_| true, NOW).unwrap();
        let app = &memory.apps[&("nimbus".to_owned(), "observations".to_owned())];
        assert_eq!(app.reports.len(), 1, "a report read twice counts once");
        let summary = summary(app, 0, Some(7)).unwrap();
        assert_eq!((summary.messages, summary.reporting_replicas, summary.lag), (10, 1, Some(7)));
    }

    #[test]
    fn unknown_apps_are_refused_and_never_remembered() {
        let mut memory = Memory::default();
        for i in 0..10_000 {
            let refused = memory.admit("hostile", Ok(report(&format!("app-{i}"), "x-0", 5, 1)), |_| false, NOW + i);
            assert!(refused.is_err());
        }
        assert_eq!(memory.size(), (0, 0, 0));
        let refusals = memory.refusals("hostile", NOW + 10_000).expect("refusals are kept");
        assert_eq!(refusals.counts.values().sum::<u64>(), 10_000);
        assert!(refusals.counts[&Refusal::RateLimited] > 0, "10,000 reports in 10 s go over the rate");
        assert!(refusals.message("hostile.mysimbdp.reports").contains("named no StreamIngestApp"));
        assert!(memory.refusals("hostile", NOW + 10_000 + shown_ms() + 1).is_none(), "shown for a while only");
    }

    #[test]
    fn replicas_and_windows_are_bounded_and_gone_apps_forgotten() {
        let mut memory = Memory::default();
        for i in 0..(MAX_INSTANCES as i64 * 3) {
            memory.remember("t", &report("a", &format!("a-{i}"), i, 1));
        }
        let (apps, instances, _) = memory.size();
        assert_eq!((apps, instances), (1, MAX_INSTANCES), "the replicas heard from last are kept");
        for i in 0..(MAX_POINTS as i64 + 100) {
            memory.remember("t", &report("a", &format!("b-{}", i % 7), 1000 + i % 800, 1));
        }
        let (_, instances, points) = memory.size();
        assert!(points <= MAX_POINTS, "{points}");
        assert_eq!(instances, 7, "replicas not heard from for {MEMORY:?} are forgotten");
        memory.retain(|key| key.1 != "a", |_| true);
        assert_eq!(memory.size(), (0, 0, 0));
    }

    #[test]
    fn the_rate_limit_refills() {
        let mut bucket = Bucket { tokens: 0.0, at_ms: 0 };
        assert!(!bucket.take(0));
        assert!(bucket.take(1000), "a second brings {REPORTS_PER_SECOND} tokens");
        assert!(bucket.take(i64::MAX), "no overflow however long the wait");
    }
}
