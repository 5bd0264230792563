//! Property tests of the decoders: whatever bytes or values a hostile app or tenant sends,
//! decoding never panics, and whatever passes keeps the contract's bounds, so that the sums
//! the platform makes of it cannot overflow.

use proptest::prelude::*;

use super::{
    MAX_REJECTIONS, Measurement, Report, RunResult,
    decode::{MAX_COUNT, MAX_TEXT_CHARS, MAX_WINDOW_MS, is_dns_label},
};

/// Counts as a hostile app picks them: small, near the bounds, or anything.
fn count() -> impl Strategy<Value = u64> {
    prop_oneof![0..1000u64, Just(MAX_COUNT), Just(MAX_COUNT + 1), Just(u64::MAX), any::<u64>()]
}

/// Numbers as JSON text: plain, huge, negative, fractional, exponent.
fn number() -> impl Strategy<Value = String> {
    prop_oneof![
        count().prop_map(|n| n.to_string()),
        any::<f64>().prop_filter("JSON has no NaN or infinity", |f| f.is_finite()).prop_map(|f| format!("{f:?}")),
        Just("-1".to_owned()),
        Just("1e400".to_owned()),
        Just("-0.0".to_owned()),
    ]
}

fn time() -> impl Strategy<Value = String> {
    prop_oneof![
        (0i64..4_000_000_000_000)
            .prop_map(|ms| { jiff::Timestamp::from_millisecond(ms).map(|t| t.to_string()).unwrap_or_default() }),
        Just("9999-12-31T23:59:59Z".to_owned()),
        Just("-009999-01-01T00:00:00Z".to_owned()),
        ".{0,40}",
    ]
}

fn name() -> impl Strategy<Value = String> {
    prop_oneof!["[a-z][a-z0-9-]{0,70}", ".{0,300}"]
}

prop_compose! {
    fn report_json()(
        app in name(), instance in name(), tenant in ".{0,20}",
        start in time(), end in time(), ingestion in time(),
        numbers in proptest::collection::vec(number(), 8),
        silent in any::<bool>(),
    ) -> String {
        let quoted = |s: &str| serde_json::to_string(s).unwrap_or_default();
        format!(
            r#"{{"tenant":{},"app":{},"instance":{},"windowStart":{},"windowEnd":{},"ingestionStart":{},"messages":{},"bytes":{},"processingRate":{},"throughput":{},"avgIngestionMs":{},"deadLettered":{},"totalMessages":{},"totalBytes":{},"silent":{silent}}}"#,
            quoted(&tenant), quoted(&app), quoted(&instance), quoted(&start), quoted(&end), quoted(&ingestion),
            numbers[0], numbers[1], numbers[2], numbers[3], numbers[4], numbers[5], numbers[6], numbers[7],
        )
    }
}

prop_compose! {
    fn file_json()(name in ".{0,300}", counts in proptest::collection::vec(number(), 5)) -> String {
        format!(
            r#"{{"name":{},"rowsRead":{},"rowsWritten":{},"rowsDuplicate":{},"rowsRejected":{},"bytes":{}}}"#,
            serde_json::to_string(&name).unwrap_or_default(), counts[0], counts[1], counts[2], counts[3], counts[4]
        )
    }
}

prop_compose! {
    fn result_json()(
        files in proptest::collection::vec(file_json(), 0..40),
        duration in number(),
        reasons in proptest::collection::vec(".{0,3000}", 0..15),
        error in proptest::option::of(".{0,3000}"),
    ) -> String {
        let rejections: Vec<String> = reasons
            .iter()
            .map(|r| format!(r#"{{"file":"f","line":1,"reason":{}}}"#, serde_json::to_string(r).unwrap_or_default()))
            .collect();
        format!(
            r#"{{"files":[{}],"durationMs":{duration},"rejections":[{}],"error":{}}}"#,
            files.join(","),
            rejections.join(","),
            serde_json::to_string(&error).unwrap_or_default()
        )
    }
}

proptest! {
    #[test]
    fn any_bytes_decode_without_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let _ = Report::decode(&bytes);
        let _ = RunResult::decode(&bytes);
        let _ = Measurement::decode(&bytes);
    }

    #[test]
    fn a_report_that_passes_keeps_every_bound(json in report_json()) {
        if let Ok(report) = Report::decode(json.as_bytes()) {
            prop_assert!(is_dns_label(&report.app));
            for count in [report.messages, report.bytes, report.dead_lettered, report.total_messages, report.total_bytes] {
                prop_assert!(count <= MAX_COUNT);
            }
            for rate in [report.processing_rate, report.throughput, report.avg_ingestion_ms] {
                prop_assert!(rate.is_finite() && rate >= 0.0);
            }
            let (start, end) = report.window_ms().expect("checked");
            prop_assert!(start <= end && end - start <= MAX_WINDOW_MS);
        }
    }

    #[test]
    fn a_result_that_passes_sums_without_overflow(json in result_json()) {
        if let Ok(result) = RunResult::decode(json.as_bytes()) {
            for file in &result.files {
                prop_assert!(file.rows_stored() <= MAX_COUNT);
                prop_assert!(file.rows_stored().saturating_add(file.rows_rejected) <= MAX_COUNT);
            }
            // Sums over files saturate rather than overflow.
            let _ = (result.rows_read(), result.rows_stored(), result.rows_rejected());
            prop_assert!(result.rejections.len() <= MAX_REJECTIONS);
            prop_assert!(result.error.as_ref().is_none_or(|e| e.chars().count() <= MAX_TEXT_CHARS + 1));
        }
    }

    #[test]
    fn a_measurement_that_passes_has_recordable_counts(messages in count(), bytes in count(), dead in count(), ms in number()) {
        let line = format!(r#"{{"messages":{messages},"bytes":{bytes},"deadLettered":{dead},"ingestionMs":{ms}}}"#);
        if let Ok(Some(m)) = Measurement::decode(line.as_bytes()) {
            prop_assert!(m.messages <= MAX_COUNT && m.bytes <= MAX_COUNT && m.dead_lettered <= MAX_COUNT);
        }
    }
}
