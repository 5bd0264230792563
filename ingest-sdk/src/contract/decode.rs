//! The one way the platform reads what an app (or anything holding a tenant's credentials)
//! hands it: run results, reports and measurement lines are decoded here, checked against
//! fixed bounds, and refused with a reason when they break one. Nothing that passes can make
//! the platform overflow a count, keep an unbounded string, or misread a time; text that is
//! merely long (an error message, a rejection's reason) is shortened instead of refused.
//!
//! The bounds are part of the contract (the crate's README lists them).

use jiff::Timestamp;
use serde::de::DeserializeOwned;

use super::{FileResult, MAX_MEASUREMENT_LINE, MAX_REJECTIONS, Measurement, Report, RunResult};

/// Largest count the platform records (its ledger stores signed 64-bit integers).
pub const MAX_COUNT: u64 = i64::MAX as u64;
/// Largest report, in bytes (a report is a few hundred).
pub const MAX_REPORT_BYTES: usize = 8 * 1024;
/// Largest result document, in bytes (4096 on Kubernetes, where it is the termination message).
pub const MAX_RESULT_BYTES: usize = 64 * 1024;
/// Most files a result document may describe.
pub const MAX_RESULT_FILES: usize = 10_000;
/// Longest name (app, replica, file), in characters.
pub const MAX_NAME_CHARS: usize = 255;
/// Longest free text kept (an error, a rejection's reason), in characters; longer text is cut.
pub const MAX_TEXT_CHARS: usize = 2_048;
/// Longest measurement window a report may cover.
pub const MAX_WINDOW_MS: i64 = 24 * 3_600_000;

/// Why a document was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// Over the size bound.
    #[error("the {what} is {bytes} bytes; at most {limit} are accepted")]
    TooLarge {
        /// What was read (`report`, `result document`, `measurement line`).
        what: &'static str,
        /// Its size.
        bytes: usize,
        /// The bound.
        limit: usize,
    },
    /// Not the JSON the contract describes.
    #[error("the {what} is not valid JSON of the contract: {reason}")]
    Malformed {
        /// What was read.
        what: &'static str,
        /// The decoder's words.
        reason: String,
    },
    /// One field breaks a bound.
    #[error("the {what}'s {field} {problem}")]
    Field {
        /// What was read.
        what: &'static str,
        /// The field (camelCase, as in the JSON).
        field: String,
        /// What is wrong and what is allowed.
        problem: String,
    },
}

impl Refused {
    /// Low-cardinality label for metrics.
    pub fn category(&self) -> &'static str {
        match self {
            Refused::TooLarge { .. } => "too_large",
            Refused::Malformed { .. } => "malformed",
            Refused::Field { .. } => "field",
        }
    }
}

fn json<T: DeserializeOwned>(what: &'static str, bytes: &[u8], limit: usize) -> Result<T, Refused> {
    if bytes.len() > limit {
        return Err(Refused::TooLarge { what, bytes: bytes.len(), limit });
    }
    serde_json::from_slice(bytes).map_err(|e| Refused::Malformed { what, reason: cut(&e.to_string(), 200) })
}

fn field(what: &'static str, field: &str, problem: impl Into<String>) -> Refused {
    Refused::Field { what, field: field.to_owned(), problem: problem.into() }
}

fn count(what: &'static str, name: &str, value: u64) -> Result<u64, Refused> {
    if value > MAX_COUNT {
        return Err(field(what, name, format!("is {value}, above the largest count recorded ({MAX_COUNT})")));
    }
    Ok(value)
}

fn rate(what: &'static str, name: &str, value: f64) -> Result<f64, Refused> {
    if !value.is_finite() || value < 0.0 || value > MAX_COUNT as f64 {
        return Err(field(what, name, format!("is {value}; it must be a number from 0 to {MAX_COUNT}")));
    }
    Ok(value)
}

/// `text` cut to `chars` characters, marked with an ellipsis when cut.
pub fn cut(text: &str, chars: usize) -> String {
    match text.char_indices().nth(chars) {
        None => text.to_owned(),
        Some((end, _)) => format!("{}…", &text[..end]),
    }
}

/// Whether `name` is a DNS label: 1 to 63 lowercase letters, digits and `-`, starting and
/// ending with a letter or digit (the names of Kubernetes objects such as apps).
pub fn is_dns_label(name: &str) -> bool {
    let bytes = name.as_bytes();
    (1..=63).contains(&bytes.len())
        && bytes.iter().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        && bytes.first().is_some_and(u8::is_ascii_alphanumeric)
        && bytes.last().is_some_and(u8::is_ascii_alphanumeric)
}

fn millis(what: &'static str, name: &str, text: &str) -> Result<i64, Refused> {
    if text.len() > 64 {
        return Err(field(what, name, "is not an RFC 3339 time (too long)"));
    }
    text.parse::<Timestamp>()
        .map(|t| t.as_millisecond())
        .map_err(|_| field(what, name, format!("{:?} is not an RFC 3339 time", cut(text, 40))))
}

impl Report {
    /// Decodes and checks a report as read from a reports topic. The app must be a DNS label,
    /// the replica a name of at most [`MAX_NAME_CHARS`] lowercase letters, digits, `.` and
    /// `-`, the window a valid span of at most a day, counts at most [`MAX_COUNT`] and rates
    /// finite and not negative. The `tenant` field is not trusted (the topic tells the tenant)
    /// and is only bounded.
    pub fn decode(bytes: &[u8]) -> Result<Report, Refused> {
        const WHAT: &str = "report";
        let report: Report = json(WHAT, bytes, MAX_REPORT_BYTES)?;
        if !is_dns_label(&report.app) {
            return Err(field(WHAT, "app", format!("{:?} is not the name of a StreamIngestApp", cut(&report.app, 70))));
        }
        let instance_ok = (1..=MAX_NAME_CHARS).contains(&report.instance.len())
            && report.instance.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.');
        if !instance_ok {
            return Err(field(
                WHAT,
                "instance",
                format!(
                    "{:?} is not a replica name (lowercase letters, digits, '.' and '-')",
                    cut(&report.instance, 70)
                ),
            ));
        }
        if report.tenant.len() > MAX_NAME_CHARS {
            return Err(field(WHAT, "tenant", format!("is longer than {MAX_NAME_CHARS} characters")));
        }
        let (start, end) = report.window_ms()?;
        if end < start || end - start > MAX_WINDOW_MS {
            return Err(field(
                WHAT,
                "windowEnd",
                format!("must not be before windowStart nor more than {} hours after it", MAX_WINDOW_MS / 3_600_000),
            ));
        }
        if !report.ingestion_start.is_empty() {
            millis(WHAT, "ingestionStart", &report.ingestion_start)?;
        }
        for (name, value) in [
            ("messages", report.messages),
            ("bytes", report.bytes),
            ("deadLettered", report.dead_lettered),
            ("totalMessages", report.total_messages),
            ("totalBytes", report.total_bytes),
        ] {
            count(WHAT, name, value)?;
        }
        for (name, value) in [
            ("processingRate", report.processing_rate),
            ("throughput", report.throughput),
            ("avgIngestionMs", report.avg_ingestion_ms),
        ] {
            rate(WHAT, name, value)?;
        }
        Ok(report)
    }

    /// The window's start and end, in Unix milliseconds.
    pub fn window_ms(&self) -> Result<(i64, i64), Refused> {
        Ok((millis("report", "windowStart", &self.window_start)?, millis("report", "windowEnd", &self.window_end)?))
    }
}

impl RunResult {
    /// Decodes and checks the result document of a batch run. Each file's counts, and their
    /// sum, must be at most [`MAX_COUNT`]; at most [`MAX_RESULT_FILES`] files with names of at
    /// most [`MAX_NAME_CHARS`] characters. The error and the rejections' text are cut to
    /// [`MAX_TEXT_CHARS`], and only the first [`MAX_REJECTIONS`] rejections are kept.
    pub fn decode(bytes: &[u8]) -> Result<RunResult, Refused> {
        const WHAT: &str = "result document";
        let mut result: RunResult = json(WHAT, bytes, MAX_RESULT_BYTES)?;
        if result.files.len() > MAX_RESULT_FILES {
            return Err(field(
                WHAT,
                "files",
                format!("lists {} files; at most {MAX_RESULT_FILES}", result.files.len()),
            ));
        }
        for (index, file) in result.files.iter().enumerate() {
            check_file(WHAT, index, file)?;
        }
        count(WHAT, "durationMs", result.duration_ms)?;
        result.rejections.truncate(MAX_REJECTIONS);
        for rejection in &mut result.rejections {
            rejection.file = cut(&rejection.file, MAX_NAME_CHARS);
            rejection.reason = cut(&rejection.reason, MAX_TEXT_CHARS);
        }
        result.error = result.error.map(|e| cut(&e, MAX_TEXT_CHARS));
        Ok(result)
    }
}

fn check_file(what: &'static str, index: usize, file: &FileResult) -> Result<(), Refused> {
    let at = |name: &str| format!("files[{index}].{name}");
    if file.name.chars().count() > MAX_NAME_CHARS {
        return Err(field(what, &at("name"), format!("is longer than {MAX_NAME_CHARS} characters")));
    }
    for (name, value) in [
        ("rowsRead", file.rows_read),
        ("rowsWritten", file.rows_written),
        ("rowsDuplicate", file.rows_duplicate),
        ("rowsRejected", file.rows_rejected),
        ("bytes", file.bytes),
    ] {
        count(what, &at(name), value)?;
    }
    let sum = file.rows_written.checked_add(file.rows_duplicate).and_then(|s| s.checked_add(file.rows_rejected));
    if sum.is_none_or(|s| s > MAX_COUNT) {
        return Err(field(
            what,
            &at("rowsWritten"),
            format!("plus rowsDuplicate and rowsRejected is above the largest count recorded ({MAX_COUNT})"),
        ));
    }
    Ok(())
}

impl Measurement {
    /// Decodes one measurement line (without its newline): `Ok(None)` for a blank line. Counts
    /// must be at most [`MAX_COUNT`]; an `ingestionMs` that makes no sense is left to the
    /// aggregation, which counts it as corrected.
    pub fn decode(line: &[u8]) -> Result<Option<Measurement>, Refused> {
        const WHAT: &str = "measurement line";
        if line.len() > MAX_MEASUREMENT_LINE {
            return Err(Refused::TooLarge { what: WHAT, bytes: line.len(), limit: MAX_MEASUREMENT_LINE });
        }
        if line.trim_ascii().is_empty() {
            return Ok(None);
        }
        let measurement: Measurement = json(WHAT, line.trim_ascii(), MAX_MEASUREMENT_LINE)?;
        for (name, value) in [
            ("messages", measurement.messages),
            ("bytes", measurement.bytes),
            ("deadLettered", measurement.dead_lettered),
        ] {
            count(WHAT, name, value)?;
        }
        Ok(Some(measurement))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report_json(app: &str, messages: &str) -> String {
        format!(
            r#"{{"tenant":"t","app":"{app}","instance":"obs-0","windowStart":"2026-12-01T10:00:00Z","windowEnd":"2026-12-01T10:00:05Z","ingestionStart":"","messages":{messages},"bytes":1,"processingRate":1.0,"throughput":1.0,"avgIngestionMs":0.5,"deadLettered":0,"totalMessages":1,"totalBytes":1,"silent":false}}"#
        )
    }

    #[test]
    fn reports_within_bounds_pass_and_each_broken_bound_is_named() {
        assert!(Report::decode(report_json("observations", "5").as_bytes()).is_ok());
        let cases = [
            (report_json("Observations", "5"), "app"),
            (report_json("x".repeat(64).as_str(), "5"), "app"),
            (report_json("observations", "18446744073709551615"), "messages"),
            (report_json("observations", "-1"), "not valid JSON"),
            (report_json("observations", "5").replace("10:00:05", "09:00:00"), "windowEnd"),
            (report_json("observations", "5").replace("2026-12-01T10:00:00Z", "yesterday"), "windowStart"),
            (report_json("observations", "5").replace("\"obs-0\"", "\"../../etc\""), "instance"),
            (report_json("observations", "5").replace("1.0,\"throughput\"", "-1.0,\"throughput\""), "processingRate"),
            (format!("{:width$}", "", width = MAX_REPORT_BYTES + 1), "bytes"),
        ];
        for (json, named) in cases {
            let refused = Report::decode(json.as_bytes()).expect_err(&json);
            assert!(refused.to_string().contains(named), "{refused} should name {named}");
        }
    }

    #[test]
    fn results_refuse_counts_the_ledger_cannot_hold_and_cut_long_text() {
        let ok = r#"{"files":[{"name":"a.csv","rowsRead":3,"rowsWritten":2,"rowsDuplicate":1}],"error":"ERR"}"#;
        assert_eq!(RunResult::decode(ok.as_bytes()).unwrap().rows_stored(), 3);
        let huge = r#"{"files":[{"name":"a.csv","rowsWritten":18446744073709551615}]}"#;
        let refused = RunResult::decode(huge.as_bytes()).unwrap_err();
        assert!(refused.to_string().contains("files[0].rowsWritten"), "{refused}");
        let sum = format!(r#"{{"files":[{{"name":"a.csv","rowsWritten":{MAX_COUNT},"rowsDuplicate":1}}]}}"#);
        assert!(RunResult::decode(sum.as_bytes()).unwrap_err().to_string().contains("plus rowsDuplicate"));
        let long = format!(r#"{{"error":"{}"}}"#, "é".repeat(MAX_TEXT_CHARS + 10));
        let error = RunResult::decode(long.as_bytes()).unwrap().error.unwrap();
        assert_eq!(error.chars().count(), MAX_TEXT_CHARS + 1, "cut, with an ellipsis");
    }

    #[test]
    fn measurement_lines_are_bounded() {
        assert_eq!(Measurement::decode(b"  ").unwrap(), None);
        assert_eq!(Measurement::decode(br#"{"messages":2}"#).unwrap().unwrap().messages, 2);
        assert!(Measurement::decode(br#"{"messages":18446744073709551615}"#).is_err());
        assert!(Measurement::decode(&vec![b' '; MAX_MEASUREMENT_LINE + 1]).is_err());
    }
}
