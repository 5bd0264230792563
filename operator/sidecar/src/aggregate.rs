//! The sidecar's arithmetic, pure: the measurement lines of one report interval become one
//! [`Report`]. Times are passed in, so every rule (rates over the real window length, averages
//! over messages, totals since the start, silence, the start-up grace) is unit-tested without
//! clocks or sockets.

use std::time::Duration;

use jiff::Timestamp;
use mysimbdp_ingest_sdk::contract::{Measurement, Report};

/// Whose reports these are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The tenant.
    pub tenant: String,
    /// The app (its `StreamIngestApp`'s name).
    pub app: String,
    /// The replica.
    pub instance: String,
}

/// Sums the measurements of the current window and the totals since the start.
#[derive(Debug, Clone)]
pub struct Aggregator {
    identity: Identity,
    started: Timestamp,
    grace_until: Timestamp,
    /// When the first measurement arrived.
    first_heard: Option<Timestamp>,
    window_start: Timestamp,
    /// Lines received in the window.
    lines: u64,
    window: Measurement,
    total_messages: u64,
    total_bytes: u64,
    /// Lines with values that made no sense (negative or not a number), fixed to zero.
    pub corrected: u64,
}

impl Aggregator {
    /// An aggregator whose first window starts at `started`. Until the app's first measurement,
    /// windows are not reported during `grace` (the app is still starting); past it, they are
    /// reported silent.
    pub fn new(identity: Identity, started: Timestamp, grace: Duration) -> Self {
        let grace = jiff::SignedDuration::try_from(grace).unwrap_or(jiff::SignedDuration::MAX);
        Self {
            identity,
            started,
            grace_until: started.checked_add(grace).unwrap_or(Timestamp::MAX),
            first_heard: None,
            window_start: started,
            lines: 0,
            window: Measurement::default(),
            total_messages: 0,
            total_bytes: 0,
            corrected: 0,
        }
    }

    /// Adds one measurement line received at `at`.
    pub fn add(&mut self, measurement: &Measurement, at: Timestamp) {
        self.first_heard.get_or_insert(at);
        self.lines += 1;
        let window = &mut self.window;
        window.messages = window.messages.saturating_add(measurement.messages);
        window.bytes = window.bytes.saturating_add(measurement.bytes);
        window.dead_lettered = window.dead_lettered.saturating_add(measurement.dead_lettered);
        if measurement.ingestion_ms.is_finite() && measurement.ingestion_ms >= 0.0 {
            window.ingestion_ms += measurement.ingestion_ms;
        } else {
            self.corrected += 1;
        }
    }

    /// Ends the window at `at` and starts the next: the window's report, or `None` while the
    /// app has not spoken yet and is still within its start-up grace.
    pub fn close(&mut self, at: Timestamp) -> Option<Report> {
        if self.first_heard.is_none() && at < self.grace_until {
            self.window_start = at;
            return None;
        }
        Some(self.take(at))
    }

    /// Ends the last window when the sidecar stops: its report when the app sent anything in
    /// it (a planned stop is not silence).
    pub fn close_last(&mut self, at: Timestamp) -> Option<Report> {
        (self.lines > 0).then(|| self.take(at))
    }

    fn take(&mut self, at: Timestamp) -> Report {
        // Rates are computed over the window as published (to the millisecond), so that a
        // reader recomputes them exactly.
        let at = to_millisecond(at);
        let window = std::mem::take(&mut self.window);
        let lines = std::mem::take(&mut self.lines);
        let start = std::mem::replace(&mut self.window_start, at);
        self.total_messages = self.total_messages.saturating_add(window.messages);
        self.total_bytes = self.total_bytes.saturating_add(window.bytes);
        let seconds = at.duration_since(to_millisecond(start)).as_secs_f64();
        let per_second = |count: u64| if seconds > 0.0 { count as f64 / seconds } else { 0.0 };
        Report {
            tenant: self.identity.tenant.clone(),
            app: self.identity.app.clone(),
            instance: self.identity.instance.clone(),
            window_start: rfc3339(start),
            window_end: rfc3339(at),
            ingestion_start: rfc3339(self.first_heard.unwrap_or(self.started)),
            messages: window.messages,
            bytes: window.bytes,
            processing_rate: per_second(window.messages),
            throughput: per_second(window.bytes),
            avg_ingestion_ms: if window.messages > 0 { window.ingestion_ms / window.messages as f64 } else { 0.0 },
            dead_lettered: window.dead_lettered,
            total_messages: self.total_messages,
            total_bytes: self.total_bytes,
            silent: lines == 0,
        }
    }
}

/// RFC 3339 in UTC, to the millisecond.
pub fn rfc3339(at: Timestamp) -> String {
    to_millisecond(at).to_string()
}

fn to_millisecond(at: Timestamp) -> Timestamp {
    Timestamp::from_millisecond(at.as_millisecond()).unwrap_or(at)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + seconds).unwrap()
    }

    fn aggregator() -> Aggregator {
        let identity =
            Identity { tenant: "nimbus-weather".into(), app: "observations".into(), instance: "obs-0".into() };
        Aggregator::new(identity, at(0), Duration::from_secs(10))
    }

    fn measurement(messages: u64, bytes: u64, ingestion_ms: f64, dead_lettered: u64) -> Measurement {
        Measurement { messages, bytes, ingestion_ms, dead_lettered }
    }

    #[test]
    fn a_window_sums_its_lines_into_rates_averages_and_totals() {
        let mut aggregator = aggregator();
        aggregator.add(&measurement(100, 20_000, 500.0, 1), at(1));
        aggregator.add(&measurement(150, 30_000, 1000.0, 2), at(3));
        let report = aggregator.close(at(5)).expect("a report");
        assert_eq!(
            report,
            Report {
                tenant: "nimbus-weather".into(),
                app: "observations".into(),
                instance: "obs-0".into(),
                window_start: "2023-11-14T22:13:20Z".into(),
                window_end: "2023-11-14T22:13:25Z".into(),
                ingestion_start: "2023-11-14T22:13:21Z".into(),
                messages: 250,
                bytes: 50_000,
                processing_rate: 50.0,
                throughput: 10_000.0,
                avg_ingestion_ms: 6.0,
                dead_lettered: 3,
                total_messages: 250,
                total_bytes: 50_000,
                silent: false,
            }
        );

        aggregator.add(&measurement(10, 100, 10.0, 0), at(6));
        let next = aggregator.close(at(10)).unwrap();
        assert_eq!((next.window_start.as_str(), next.messages, next.total_messages), ("2023-11-14T22:13:25Z", 10, 260));
        assert_eq!((next.processing_rate, next.avg_ingestion_ms), (2.0, 1.0));
        assert_eq!(next.ingestion_start, report.ingestion_start, "the start stays put");
    }

    #[test]
    fn an_idle_app_is_not_silent_but_a_quiet_one_is() {
        let mut aggregator = aggregator();
        aggregator.add(&measurement(0, 0, 0.0, 0), at(1));
        let idle = aggregator.close(at(5)).unwrap();
        assert!(!idle.silent);
        assert_eq!((idle.messages, idle.processing_rate, idle.avg_ingestion_ms), (0, 0.0, 0.0));
        let quiet = aggregator.close(at(10)).unwrap();
        assert!(quiet.silent, "no line in the window: hung or gone");
        assert_eq!(quiet.total_messages, 0);
    }

    #[test]
    fn a_starting_app_gets_a_grace_then_counts_as_silent() {
        let mut aggregator = aggregator();
        assert_eq!(aggregator.close(at(5)), None, "within the grace, before the first line");
        let late = aggregator.close(at(10)).expect("the grace is over");
        assert!(late.silent);
        assert_eq!(late.window_start, rfc3339(at(5)), "windows stay contiguous");
        assert_eq!(late.ingestion_start, rfc3339(at(0)), "nothing heard yet: the sidecar's start");
    }

    #[test]
    fn nonsense_values_are_counted_and_left_out() {
        let mut aggregator = aggregator();
        aggregator.add(&measurement(2, 10, f64::NAN, 0), at(1));
        aggregator.add(&measurement(2, 10, -5.0, 0), at(1));
        aggregator.add(&measurement(u64::MAX, 0, 4.0, 0), at(1));
        let report = aggregator.close(at(2)).unwrap();
        assert_eq!(aggregator.corrected, 2);
        assert_eq!(report.messages, u64::MAX, "saturates rather than wrapping");
        assert!(report.avg_ingestion_ms.is_finite());
    }

    #[test]
    fn the_last_window_is_reported_only_when_the_app_spoke() {
        let mut aggregator = aggregator();
        assert_eq!(aggregator.close_last(at(3)), None);
        aggregator.add(&measurement(5, 50, 5.0, 0), at(4));
        let last = aggregator.close_last(at(4)).unwrap();
        assert_eq!((last.messages, last.silent, last.processing_rate), (5, false, 1.25));
        assert_eq!(rfc3339(Timestamp::from_millisecond(1_700_000_000_123).unwrap()), "2023-11-14T22:13:20.123Z");
    }
}

#[cfg(test)]
mod props {
    //! Whatever measurements an app sends (any counts, any ingestion time, any timing), the
    //! aggregation never panics and every report it makes passes the monitor's checks.

    use proptest::prelude::*;

    use super::*;

    fn measurement() -> impl Strategy<Value = Measurement> {
        let count = prop_oneof![0..1000u64, Just(u64::MAX), Just(i64::MAX as u64)];
        let ms = prop_oneof![Just(f64::NAN), Just(f64::INFINITY), Just(-1.0), 0.0..1e9, Just(f64::MAX)];
        (count.clone(), count.clone(), ms, count).prop_map(|(messages, bytes, ingestion_ms, dead_lettered)| {
            Measurement { messages, bytes, ingestion_ms, dead_lettered }
        })
    }

    proptest! {
        #[test]
        fn aggregation_never_panics_and_reports_pass_the_monitor(
            lines in proptest::collection::vec((measurement(), 0i64..100_000), 0..50),
            closes in proptest::collection::vec(0i64..100_000, 1..10),
        ) {
            let identity = Identity { tenant: "t".into(), app: "observations".into(), instance: "observations-0".into() };
            let start = Timestamp::from_second(1_700_000_000).unwrap();
            let mut aggregator = Aggregator::new(identity, start, Duration::from_secs(10));
            let mut events: Vec<(i64, Option<Measurement>)> =
                lines.into_iter().map(|(m, at)| (at, Some(m))).chain(closes.into_iter().map(|at| (at, None))).collect();
            events.sort_by_key(|(at, m)| (*at, m.is_none()));
            for (at, line) in events {
                let at = start + jiff::SignedDuration::from_millis(at);
                match line {
                    Some(m) => aggregator.add(&m, at),
                    None => {
                        if let Some(report) = aggregator.close(at) {
                            let json = serde_json::to_vec(&report).unwrap();
                            let decoded = Report::decode(&json);
                            // Only an app that sent counts beyond the contract (which the line
                            // decoder refuses first) makes a report the monitor refuses.
                            let max = i64::MAX as u64;
                            let counts = [report.messages, report.bytes, report.dead_lettered, report.total_messages, report.total_bytes];
                            let rates = [report.processing_rate, report.throughput, report.avg_ingestion_ms];
                            if counts.iter().all(|c| *c <= max) && rates.iter().all(|r| *r <= max as f64) {
                                prop_assert!(decoded.is_ok(), "{decoded:?}");
                            }
                        }
                    }
                }
            }
        }
    }
}
