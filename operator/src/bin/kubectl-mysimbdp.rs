//! `kubectl-mysimbdp` (or `kubectl mysimbdp` when on PATH): what tenants and the platform team
//! ask of the platform: staging files, and what happened to them, answered from the platform's
//! records in coredms (the ledger of files and runs, the stream reports, the monitor's
//! decisions).

use std::{path::PathBuf, process::ExitCode};

use clap::{Parser, Subcommand};
use mongodb::bson::{Document, doc};
use mysimbdp_operator::{
    batch::ledger::{FileStatus, Ledger},
    chart::{self, Series},
    cli,
    config::CoreDmsArgs,
    monitor::store::MonitorStore,
    staging::{self, Staging},
};

/// Stage files for a tenant and see what the mysimbdp ingestion platform did with them.
///
/// Reads the platform's records in coredms; the connection comes from the same environment
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
    /// Drop files into a tenant's staging area (each appears whole, never half-written).
    Upload {
        /// The tenant.
        #[arg(long)]
        tenant: String,
        /// The staging store, as the operator's --staging-url.
        #[arg(long, env = "MYSIMBDP_STAGING_URL")]
        staging_url: String,
        /// Files to upload; each keeps its name.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
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
    /// Reports of stream apps (one per replica and report interval), newest last.
    Reports {
        /// Only this tenant.
        #[arg(long)]
        tenant: Option<String>,
        /// Only this app.
        #[arg(long)]
        app: Option<String>,
        /// Show at most this many.
        #[arg(long, default_value_t = 30)]
        limit: i64,
    },
    /// The monitor's decisions (scale, restart, notify) and their reasons, newest last.
    Decisions {
        /// Only this tenant.
        #[arg(long)]
        tenant: Option<String>,
        /// Only this app.
        #[arg(long)]
        app: Option<String>,
        /// Show at most this many.
        #[arg(long, default_value_t = 30)]
        limit: i64,
    },
    /// Write an SVG chart of a tenant's ingestion over time: documents stored by batch runs and
    /// messages ingested by stream apps.
    Chart {
        /// The tenant.
        #[arg(long)]
        tenant: String,
        /// Where to write the SVG.
        #[arg(long, default_value = "ingestion.svg")]
        out: PathBuf,
        /// Width of a bar, in seconds.
        #[arg(long, default_value_t = 60)]
        bucket_seconds: i64,
    },
}

fn filter(pairs: &[(&str, &Option<String>)]) -> Document {
    let mut filter = doc! {};
    for (key, value) in pairs {
        if let Some(value) = value {
            filter.insert(*key, value);
        }
    }
    filter
}

async fn upload(tenant: &str, staging_url: &str, files: &[PathBuf]) -> Result<String, String> {
    let staging = staging::open(staging_url).map_err(|e| e.to_string())?;
    let mut out = String::new();
    for path in files {
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| format!("{} has no usable file name", path.display()))?;
        let content = tokio::fs::read(path).await.map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let size = content.len();
        let location = staging.upload(tenant, name, content.into()).await.map_err(|e| e.to_string())?;
        out.push_str(&format!("staged {name} ({size} bytes) at {}\n", staging.url(&location)));
    }
    Ok(out)
}

async fn run(cli: Cli) -> Result<String, String> {
    if let Command::Upload { tenant, staging_url, files } = &cli.command {
        return upload(tenant, staging_url, files).await;
    }
    let client = cli.coredms.admin_client().await.map_err(|e| e.to_string())?;
    let db = client.database(&cli.coredms.platform_database);
    let ledger = || async { Ledger::open(&client, &cli.coredms.platform_database).await.map_err(|e| e.to_string()) };
    let monitor = || async { MonitorStore::open(&db).await.map_err(|e| e.to_string()) };
    match &cli.command {
        Command::Upload { .. } => unreachable!("handled above"),
        Command::Stats { tenant } => {
            let files = ledger().await?.files(filter(&[("tenant", tenant)])).await.map_err(|e| e.to_string())?;
            Ok(cli::stats_table(&files))
        }
        Command::Files { tenant, status, limit } => {
            let files = ledger()
                .await?
                .files(filter(&[("tenant", tenant), ("status", status)]))
                .await
                .map_err(|e| e.to_string())?;
            Ok(cli::files_table(&files, *limit))
        }
        Command::Reports { tenant, app, limit } => {
            let found = monitor().await?.reports(filter(&[("tenant", tenant), ("app", app)]), *limit).await;
            Ok(cli::reports_table(&found.map_err(|e| e.to_string())?))
        }
        Command::Decisions { tenant, app, limit } => {
            let found = monitor().await?.decisions(filter(&[("tenant", tenant), ("app", app)]), *limit).await;
            Ok(cli::decisions_table(&found.map_err(|e| e.to_string())?))
        }
        Command::Chart { tenant, out, bucket_seconds } => {
            let files = ledger()
                .await?
                .files(doc! { "tenant": tenant, "status": FileStatus::Ingested.as_str() })
                .await
                .map_err(|e| e.to_string())?;
            let reports =
                monitor().await?.reports(doc! { "tenant": tenant }, 100_000).await.map_err(|e| e.to_string())?;
            let batch = files
                .iter()
                .filter_map(|f| Some((f.finished_at?.timestamp_millis(), f.rows_written? as f64)))
                .collect();
            let stream = reports.iter().map(|r| (r.window_end.timestamp_millis(), r.messages as f64)).collect();
            let series = [
                Series { name: "batch documents".into(), colour: "#1f77b4".into(), points: batch },
                Series { name: "stream messages".into(), colour: "#ff7f0e".into(), points: stream },
            ];
            let svg = chart::svg(&format!("ingestion of tenant {tenant}"), &series, bucket_seconds.max(&1) * 1000);
            std::fs::write(out, svg).map_err(|e| format!("cannot write {}: {e}", out.display()))?;
            Ok(format!("wrote {}\n", out.display()))
        }
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    match run(Cli::parse()).await {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}
