//! Property tests of the monitor's aggregates: whatever reports a tenant publishes (counts up to
//! the contract's bound, any window, any number of replicas and app names) and whatever
//! monitoring settings it declares, remembering, summing and judging never panic, and memory
//! stays within its bounds.

use proptest::prelude::*;

use super::{
    evaluate::{AppView, LagPoint, ReportPoint, evaluate},
    memory::{MAX_INSTANCES, MAX_POINTS, Memory, summary},
};
use mysimbdp_api::stream::Monitoring;
use mysimbdp_ingest_sdk::contract::{Report, decode::MAX_COUNT};

const NOW: i64 = 1_780_000_000_000;

fn count() -> impl Strategy<Value = u64> {
    prop_oneof![0..100u64, Just(MAX_COUNT), MAX_COUNT - 10..=MAX_COUNT]
}

fn rate() -> impl Strategy<Value = f64> {
    prop_oneof![Just(0.0), 0.0..1e6, Just(MAX_COUNT as f64)]
}

prop_compose! {
    fn report()(
        app in "[a-c]",
        instance in "[a-z]{1,3}-[0-9]{1,2}",
        end in -1_000_000i64..1_000_000,
        length in 0i64..86_400_000,
        counts in proptest::collection::vec(count(), 5),
        rates in proptest::collection::vec(rate(), 3),
        silent in any::<bool>(),
    ) -> Report {
        let at = |ms: i64| k8s_openapi::jiff::Timestamp::from_millisecond(ms).unwrap().to_string();
        Report {
            tenant: "t".into(),
            app,
            instance,
            window_start: at(NOW + end - length),
            window_end: at(NOW + end),
            ingestion_start: String::new(),
            messages: counts[0],
            bytes: counts[1],
            processing_rate: rates[0],
            throughput: rates[1],
            avg_ingestion_ms: rates[2],
            dead_lettered: counts[2],
            total_messages: counts[3],
            total_bytes: counts[4],
            silent,
        }
    }
}

fn duration() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("1ms".to_owned()),
        Just("5s".to_owned()),
        Just("100000000h".to_owned()),
        (1u64..10_000).prop_map(|s| format!("{s}s"))
    ]
}

prop_compose! {
    fn monitoring()(
        interval in duration(), window in duration(), stabilization in duration(),
        missed in prop_oneof![Just(1u32), Just(u32::MAX), 1u32..10],
        lag in prop_oneof![Just(0u64), Just(u64::MAX)],
    ) -> Monitoring {
        serde_yaml::from_str(&format!(
            "{{reportInterval: {interval}, window: {window}, stabilization: {stabilization}, missedReports: {missed}, thresholds: {{minProcessingRate: 1, maxAvgIngestionTime: 1ms, maxLag: {lag}}}}}"
        ))
        .expect("a valid monitoring spec")
    }
}

proptest! {
    #[test]
    fn remembering_summing_and_judging_never_panic(
        reports in proptest::collection::vec(report(), 0..200),
        lags in proptest::collection::vec((-1_000_000i64..1_000_000, any::<u64>()), 0..20),
        monitoring in monitoring(),
        replicas in prop_oneof![Just(0u32), Just(u32::MAX), 0u32..5],
        cap in prop_oneof![Just(0u32), Just(u32::MAX), 0u32..5],
        since in prop_oneof![Just(i64::MIN), Just(i64::MAX), Just(NOW), -1_000_000i64..1_000_000],
        decided in proptest::option::of(prop_oneof![Just(i64::MIN), Just(i64::MAX), Just(NOW)]),
    ) {
        let mut memory = Memory::default();
        for report in &reports {
            let _ = memory.admit("t", Ok(report.clone()), |_| true, NOW);
        }
        let (_, instances, points) = memory.size();
        prop_assert!(instances <= 3 * MAX_INSTANCES && points <= 3 * MAX_POINTS);
        for app in memory.apps.values_mut() {
            for (at, lag) in &lags {
                app.add_lag(NOW + at, *lag);
            }
            let _ = summary(app, since, Some(u64::MAX));
            let view = AppView {
                monitoring: &monitoring,
                min_replicas: 1,
                cap,
                cap_reason: "test".into(),
                replicas,
                running_since_ms: since,
                last_decision_ms: decided,
                healthy_since_ms: decided,
            };
            let _ = evaluate(&view, &app.reports, &app.lags, NOW);
        }
        let points: Vec<ReportPoint> = Vec::new();
        let lags: Vec<LagPoint> = Vec::new();
        let view = AppView {
            monitoring: &monitoring, min_replicas: 0, cap, cap_reason: String::new(), replicas,
            running_since_ms: since, last_decision_ms: decided, healthy_since_ms: decided,
        };
        let _ = evaluate(&view, &points, &lags, NOW);
    }
}
