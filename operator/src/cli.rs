//! The tables `kubectl-mysimbdp` prints, pure: ledger, report and decision records in, aligned
//! text out.

use std::fmt::Write;

use mongodb::bson;

use crate::{
    batch::{
        checks::human,
        ledger::FileRecord,
        stats::{Stats, compute},
    },
    monitor::store::{DecisionRecord, ReportRecord},
};

fn duration(ms: Option<u64>) -> String {
    ms.map_or("-".into(), |ms| if ms >= 1000 { format!("{:.1}s", ms as f64 / 1000.0) } else { format!("{ms}ms") })
}

fn time(at: bson::DateTime) -> String {
    k8s_openapi::jiff::Timestamp::from_millisecond(at.timestamp_millis())
        .map_or_else(|_| "-".into(), |t| t.strftime("%Y-%m-%d %H:%M:%S").to_string())
}

const STATS_HEADER: [&str; 13] = [
    "TENANT", "FILES", "INGESTED", "REJECTED", "FAILED", "WAITING", "SUCCESS", "BYTES", "ROWS", "P50", "P95", "ROWS/S",
    "MIB/S",
];

fn stats_row(out: &mut String, cells: [&str; 13]) {
    let [tenant, rest @ ..] = cells;
    let _ = write!(out, "{tenant:<20}");
    let widths = [6, 9, 9, 7, 8, 8, 11, 10, 8, 8, 10, 8];
    for (cell, width) in rest.iter().zip(widths) {
        let _ = write!(out, " {cell:>width$}");
    }
    out.push('\n');
}

fn stats_cells(s: &Stats, out: &mut String) {
    let cells = [
        s.tenant.clone(),
        s.files.to_string(),
        s.ingested.to_string(),
        s.rejected.to_string(),
        s.dead_lettered.to_string(),
        s.in_progress.to_string(),
        s.success_rate.map_or("-".into(), |r| format!("{:.1}%", r * 100.0)),
        human(s.bytes),
        s.rows.to_string(),
        duration(s.p50_ms),
        duration(s.p95_ms),
        s.rows_per_second.map_or("-".into(), |r| format!("{r:.0}")),
        s.bytes_per_second.map_or("-".into(), |b| format!("{:.2}", b / 1_048_576.0)),
    ];
    stats_row(out, cells.each_ref().map(String::as_str));
}

/// Batch statistics per tenant, and for the platform when there are several tenants.
pub fn stats_table(files: &[FileRecord]) -> String {
    let (tenants, all) = compute(files);
    let mut out = String::new();
    stats_row(&mut out, STATS_HEADER);
    for tenant in &tenants {
        stats_cells(tenant, &mut out);
    }
    if tenants.len() > 1 {
        stats_cells(&Stats { tenant: "(platform)".into(), ..all }, &mut out);
    }
    out
}

/// Staged files and what happened to them, the last `limit`.
pub fn files_table(files: &[FileRecord], limit: usize) -> String {
    let mut out = format!(
        "{:<26} {:<16} {:<24} {:<13} {:>3} {:>10} {:>9}  REASON\n",
        "ID", "TENANT", "FILE", "STATUS", "TRY", "BYTES", "ROWS"
    );
    for f in files.iter().rev().take(limit).rev() {
        let _ = writeln!(
            out,
            "{:<26} {:<16} {:<24} {:<13} {:>3} {:>10} {:>9}  {}",
            f.id,
            f.tenant,
            f.name,
            f.status.as_str(),
            f.attempts,
            human(u64::try_from(f.bytes).unwrap_or(0)),
            f.rows_written.map_or("-".into(), |r| r.to_string()),
            f.reason.as_deref().unwrap_or("")
        );
    }
    out
}

/// Stream app reports, oldest first.
pub fn reports_table(reports: &[ReportRecord]) -> String {
    let mut out = format!(
        "{:<19} {:<16} {:<16} {:<20} {:>7} {:>8} {:>8} {:>8} {:>10}  SILENT\n",
        "WINDOW END", "TENANT", "APP", "INSTANCE", "MSGS", "MSG/S", "KIB/S", "AVG MS", "TOTAL"
    );
    for r in reports {
        let _ = writeln!(
            out,
            "{:<19} {:<16} {:<16} {:<20} {:>7} {:>8.1} {:>8.1} {:>8.1} {:>10}  {}",
            time(r.window_end),
            r.tenant,
            r.app,
            r.instance,
            r.messages,
            r.processing_rate,
            r.throughput / 1024.0,
            r.avg_ingestion_ms,
            r.total_messages,
            if r.silent { "yes" } else { "" }
        );
    }
    out
}

/// Monitor decisions, oldest first.
pub fn decisions_table(decisions: &[DecisionRecord]) -> String {
    let mut out =
        format!("{:<19} {:<16} {:<16} {:<10} {:>8}  REASON\n", "DECIDED", "TENANT", "APP", "ACTION", "REPLICAS");
    for d in decisions {
        let _ = writeln!(
            out,
            "{:<19} {:<16} {:<16} {:<10} {:>8}  {}",
            time(d.decided_at),
            d.tenant,
            d.app,
            d.action,
            format!("{}->{}", d.from_replicas, d.to_replicas),
            d.reason
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decision_rows_show_the_replica_change_and_the_reason() {
        let table = decisions_table(&[DecisionRecord {
            tenant: "nimbus-weather".into(),
            namespace: "tenant-nimbus-weather".into(),
            app: "observations".into(),
            action: "ScaleUp".into(),
            reason: "average ingestion time 80.0ms".into(),
            from_replicas: 1,
            to_replicas: 2,
            decided_at: bson::DateTime::from_millis(0),
        }]);
        let row = table.lines().nth(1).unwrap();
        assert!(row.starts_with("1970-01-01 00:00:00 nimbus-weather"), "{row}");
        assert!(row.contains("ScaleUp") && row.contains("1->2") && row.ends_with("average ingestion time 80.0ms"));
    }

    #[test]
    fn an_empty_ledger_prints_only_the_header() {
        assert_eq!(stats_table(&[]).lines().count(), 1);
        assert!(stats_table(&[]).starts_with("TENANT"));
    }
}
