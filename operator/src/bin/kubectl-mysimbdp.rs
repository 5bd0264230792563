//! `kubectl-mysimbdp` (or `kubectl mysimbdp` when on PATH): what tenants and the platform team
//! ask of the platform, answered from its ledger in coredms.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use mongodb::bson::{Document, doc};
use mysimbdp_operator::{
    batch::{
        checks::human,
        ledger::{FileRecord, Ledger},
        stats::{Stats, compute},
    },
    config::CoreDmsArgs,
};

/// Statistics and records of the mysimbdp ingestion platform.
///
/// Reads the platform's ledger in coredms; the connection comes from the same environment
/// variables as the operator's (with the local stack: `. ~/.local/state/mysimbdp/env`).
#[derive(Debug, Parser)]
#[command(name = "kubectl-mysimbdp", version, about, long_about)]
struct Cli {
    #[command(flatten)]
    coredms: CoreDmsArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Batch ingestion statistics per tenant and for the platform: files, success rate, bytes,
    /// rows, p50/p95 time per file, throughput.
    Stats {
        /// Only this tenant.
        #[arg(long)]
        tenant: Option<String>,
    },
    /// Staged files and what happened to them, newest last.
    Files {
        /// Only this tenant.
        #[arg(long)]
        tenant: Option<String>,
        /// Only files in this state (Queued, Running, RetryWait, Ingested, Rejected, DeadLettered).
        #[arg(long)]
        status: Option<String>,
        /// Show at most this many.
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
}

fn filter(tenant: &Option<String>, status: &Option<String>) -> Document {
    let mut filter = doc! {};
    if let Some(tenant) = tenant {
        filter.insert("tenant", tenant);
    }
    if let Some(status) = status {
        filter.insert("status", status);
    }
    filter
}

fn duration(ms: Option<u64>) -> String {
    ms.map_or("-".into(), |ms| if ms >= 1000 { format!("{:.1}s", ms as f64 / 1000.0) } else { format!("{ms}ms") })
}

fn stats_row(s: &Stats) -> String {
    format!(
        "{:<20} {:>6} {:>9} {:>9} {:>7} {:>8} {:>8} {:>11} {:>10} {:>8} {:>8} {:>10} {:>8}",
        s.tenant,
        s.files,
        s.ingested,
        s.rejected,
        s.dead_lettered,
        s.in_progress,
        s.success_rate.map_or("-".into(), |r| format!("{:.1}%", r * 100.0)),
        human(s.bytes),
        s.rows,
        duration(s.p50_ms),
        duration(s.p95_ms),
        s.rows_per_second.map_or("-".into(), |r| format!("{r:.0}")),
        s.bytes_per_second.map_or("-".into(), |b| format!("{:.2}", b / 1_048_576.0)),
    )
}

fn print_stats(files: &[FileRecord]) {
    let (tenants, all) = compute(files);
    println!(
        "{:<20} {:>6} {:>9} {:>9} {:>7} {:>8} {:>8} {:>11} {:>10} {:>8} {:>8} {:>10} {:>8}",
        "TENANT",
        "FILES",
        "INGESTED",
        "REJECTED",
        "FAILED",
        "WAITING",
        "SUCCESS",
        "BYTES",
        "ROWS",
        "P50",
        "P95",
        "ROWS/S",
        "MIB/S"
    );
    for tenant in &tenants {
        println!("{}", stats_row(tenant));
    }
    if tenants.len() > 1 {
        println!("{}", stats_row(&Stats { tenant: "(platform)".into(), ..all }));
    }
}

fn print_files(files: &[FileRecord], limit: usize) {
    println!(
        "{:<26} {:<16} {:<24} {:<13} {:>3} {:>10} {:>9}  REASON",
        "ID", "TENANT", "FILE", "STATUS", "TRY", "BYTES", "ROWS"
    );
    for f in files.iter().rev().take(limit).rev() {
        println!(
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
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let ledger = match cli.coredms.admin_client().await {
        Ok(client) => match Ledger::open(&client, &cli.coredms.platform_database).await {
            Ok(ledger) => ledger,
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::FAILURE;
            }
        },
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let (query, limit) = match &cli.command {
        Command::Stats { tenant } => (filter(tenant, &None), None),
        Command::Files { tenant, status, limit } => (filter(tenant, status), Some(*limit)),
    };
    let files = match ledger.files(query).await {
        Ok(files) => files,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    match limit {
        None => print_stats(&files),
        Some(limit) => print_files(&files, limit),
    }
    ExitCode::SUCCESS
}
