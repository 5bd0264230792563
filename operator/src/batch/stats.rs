//! Per-tenant and platform statistics of batch ingestion, computed from ledger records (pure).

use std::collections::BTreeMap;

use super::ledger::{FileRecord, FileStatus};

/// What one tenant (or the whole platform) ingested.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Stats {
    /// The tenant, or `*` for the platform.
    pub tenant: String,
    /// Files staged.
    pub files: u64,
    /// Files ingested.
    pub ingested: u64,
    /// Files refused by the agreement's checks.
    pub rejected: u64,
    /// Files that failed every attempt.
    pub dead_lettered: u64,
    /// Files queued, running or waiting for a retry.
    pub in_progress: u64,
    /// Bytes of the files ingested.
    pub bytes: u64,
    /// Documents stored.
    pub rows: u64,
    /// Ingested over ingested and dead-lettered (files the platform tried to ingest).
    pub success_rate: Option<f64>,
    /// Median time to ingest a file, in milliseconds.
    pub p50_ms: Option<u64>,
    /// 95th percentile of that time.
    pub p95_ms: Option<u64>,
    /// Documents per second from the first run's start to the last run's end.
    pub rows_per_second: Option<f64>,
    /// Bytes per second over the same span.
    pub bytes_per_second: Option<f64>,
}

/// The nearest-rank percentile of sorted values.
fn percentile(sorted: &[u64], p: f64) -> Option<u64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted.get(rank.clamp(1, sorted.len()) - 1).copied()
}

fn summarize(tenant: &str, files: &[&FileRecord]) -> Stats {
    let count = |status: FileStatus| files.iter().filter(|f| f.status == status).count() as u64;
    let ingested: Vec<&&FileRecord> = files.iter().filter(|f| f.status == FileStatus::Ingested).collect();
    let bytes: u64 = ingested.iter().map(|f| u64::try_from(f.bytes).unwrap_or(0)).sum();
    let rows: u64 = ingested.iter().filter_map(|f| f.rows_written).map(|r| u64::try_from(r).unwrap_or(0)).sum();
    let mut durations: Vec<u64> =
        ingested.iter().filter_map(|f| f.duration_ms).map(|d| u64::try_from(d).unwrap_or(0)).collect();
    durations.sort_unstable();
    let first = ingested.iter().filter_map(|f| f.started_at).min();
    let last = ingested.iter().filter_map(|f| f.finished_at).max();
    let span = match (first, last) {
        (Some(a), Some(b)) if b > a => Some((b.timestamp_millis() - a.timestamp_millis()) as f64 / 1000.0),
        _ => None,
    };
    let (done, failed) = (ingested.len() as u64, count(FileStatus::DeadLettered));
    Stats {
        tenant: tenant.to_owned(),
        files: files.len() as u64,
        ingested: done,
        rejected: count(FileStatus::Rejected),
        dead_lettered: failed,
        in_progress: count(FileStatus::Queued) + count(FileStatus::Running) + count(FileStatus::RetryWait),
        bytes,
        rows,
        success_rate: (done + failed > 0).then(|| done as f64 / (done + failed) as f64),
        p50_ms: percentile(&durations, 50.0),
        p95_ms: percentile(&durations, 95.0),
        rows_per_second: span.map(|s| rows as f64 / s),
        bytes_per_second: span.map(|s| bytes as f64 / s),
    }
}

/// Statistics per tenant (by name) and for the whole platform.
pub fn compute(files: &[FileRecord]) -> (Vec<Stats>, Stats) {
    let mut by_tenant: BTreeMap<&str, Vec<&FileRecord>> = BTreeMap::new();
    for file in files {
        by_tenant.entry(&file.tenant).or_default().push(file);
    }
    let tenants = by_tenant.iter().map(|(tenant, files)| summarize(tenant, files)).collect();
    let all: Vec<&FileRecord> = files.iter().collect();
    (tenants, summarize("*", &all))
}

#[cfg(test)]
mod tests {
    use mongodb::bson::DateTime;

    use super::*;

    fn file(tenant: &str, status: FileStatus, bytes: i64, rows: i64, start_s: i64, end_s: i64) -> FileRecord {
        FileRecord {
            id: format!("{tenant}-{start_s}"),
            tenant: tenant.into(),
            app: Some("a".into()),
            name: "f.csv".into(),
            sha256: String::new(),
            bytes,
            format: Some("Csv".into()),
            records: Some(rows),
            status,
            attempts: 1,
            run: None,
            received_at: DateTime::from_millis(0),
            decided_at: DateTime::from_millis(0),
            started_at: Some(DateTime::from_millis(start_s * 1000)),
            finished_at: Some(DateTime::from_millis(end_s * 1000)),
            next_attempt_at: None,
            duration_ms: Some((end_s - start_s) * 1000),
            rows_read: Some(rows),
            rows_written: Some(rows),
            rows_duplicate: Some(0),
            rows_rejected: Some(0),
            reason: None,
            filed: true,
        }
    }

    #[test]
    fn stats_count_rate_percentiles_and_throughput() {
        let files = vec![
            file("a", FileStatus::Ingested, 1000, 100, 0, 2),
            file("a", FileStatus::Ingested, 3000, 300, 1, 5),
            file("a", FileStatus::Rejected, 10, 0, 0, 0),
            file("a", FileStatus::DeadLettered, 10, 0, 0, 1),
            file("b", FileStatus::Queued, 10, 0, 0, 0),
        ];
        let (tenants, all) = compute(&files);
        let a = &tenants[0];
        assert_eq!((a.files, a.ingested, a.rejected, a.dead_lettered, a.in_progress), (4, 2, 1, 1, 0));
        assert_eq!((a.bytes, a.rows), (4000, 400));
        assert_eq!(a.success_rate, Some(2.0 / 3.0));
        assert_eq!((a.p50_ms, a.p95_ms), (Some(2000), Some(4000)));
        assert_eq!(a.rows_per_second, Some(80.0), "400 rows over 5 seconds");
        assert_eq!(tenants[1].in_progress, 1);
        assert_eq!(tenants[1].success_rate, None);
        assert_eq!((all.files, all.ingested), (5, 2));
    }

    #[test]
    fn percentiles_use_the_nearest_rank() {
        let values: Vec<u64> = (1..=20).collect();
        assert_eq!(percentile(&values, 50.0), Some(10));
        assert_eq!(percentile(&values, 95.0), Some(19));
        assert_eq!(percentile(&[7], 95.0), Some(7));
        assert_eq!(percentile(&[], 50.0), None);
    }
}
