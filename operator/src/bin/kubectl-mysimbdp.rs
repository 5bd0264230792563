//! `kubectl-mysimbdp` (or `kubectl mysimbdp` when on PATH): what tenants and the platform team
//! ask of the platform: staging files, what happened to them, and the stream apps' reports and
//! the monitor's decisions. It speaks to the platform's tenant API (tenant.mysimbdp.io) through
//! the Kubernetes API server with the caller's own kubeconfig, so an owner sees and stages for
//! their tenant only, and a platform admin sees every tenant.

use std::{path::PathBuf, process::ExitCode};

use clap::{Parser, Subcommand};
use mysimbdp_operator::{
    batch::ledger::{FileRecord, FileStatus},
    chart::{self, Series},
    cli,
    monitor::store::{DecisionRecord, ReportRecord},
    tenant_client::{TenantClient, path},
};

/// Stage files for a tenant and see what the mysimbdp ingestion platform did with them.
///
/// Uses your kubeconfig (KUBECONFIG, ~/.kube/config, --context) like kubectl: a tenant's owner
/// acts for their tenant only; a platform admin sees every tenant when --tenant is left out.
/// A tenant's namespace is `tenant-<tenant>` unless --namespace says otherwise.
#[derive(Debug, Parser)]
#[command(name = "kubectl-mysimbdp", version, about, long_about)]
struct Cli {
    /// The kubeconfig context to use.
    #[arg(long, global = true)]
    context: Option<String>,
    #[command(subcommand)]
    command: Command,
}

/// Whose records: a tenant, by name or namespace.
#[derive(Debug, clap::Args)]
struct Scope {
    /// The tenant (left out: every tenant, for a platform admin).
    #[arg(long)]
    tenant: Option<String>,
    /// The tenant's namespace, when it is not `tenant-<tenant>`.
    #[arg(long)]
    namespace: Option<String>,
}

impl Scope {
    fn namespace(&self) -> Option<String> {
        self.namespace.clone().or_else(|| self.tenant.as_ref().map(|t| format!("tenant-{t}")))
    }

    fn required(&self) -> Result<String, String> {
        self.namespace().ok_or_else(|| "name the tenant with --tenant (or --namespace)".to_owned())
    }
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Stage files for a tenant (each is streamed and appears whole, never half-written; one
    /// refused file does not stop the others).
    Upload {
        #[command(flatten)]
        scope: Scope,
        /// Files to stage; each keeps its name.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Staged files and what happened to them, newest last.
    Files {
        #[command(flatten)]
        scope: Scope,
        /// Only files in this state (Queued, Running, RetryWait, Ingested, Rejected, DeadLettered).
        #[arg(long)]
        status: Option<String>,
        /// Show at most this many.
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    /// Download a staged file (e.g. a rejected one) by its id, and print why it was refused.
    Download {
        #[command(flatten)]
        scope: Scope,
        /// The file's id (the ID column of `files`).
        id: String,
        /// Where to write it; its id by default.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Batch ingestion statistics per tenant and for the platform: files, success rate, bytes,
    /// rows, p50/p95 time per file, throughput.
    Stats {
        #[command(flatten)]
        scope: Scope,
    },
    /// Reports of stream apps (one per replica and report interval), newest last.
    Reports {
        #[command(flatten)]
        scope: Scope,
        /// Only this app.
        #[arg(long)]
        app: Option<String>,
        /// Show at most this many.
        #[arg(long, default_value_t = 30)]
        limit: usize,
    },
    /// The monitor's decisions (scale, restart, notify) and their reasons, newest last.
    Decisions {
        #[command(flatten)]
        scope: Scope,
        /// Only this app.
        #[arg(long)]
        app: Option<String>,
        /// Show at most this many.
        #[arg(long, default_value_t = 30)]
        limit: usize,
    },
    /// Write an SVG chart of a tenant's ingestion over time: documents stored by batch runs and
    /// messages ingested by stream apps.
    Chart {
        #[command(flatten)]
        scope: Scope,
        /// Where to write the SVG.
        #[arg(long, default_value = "ingestion.svg")]
        out: PathBuf,
        /// Width of a bar, in seconds.
        #[arg(long, default_value_t = 60)]
        bucket_seconds: i64,
    },
}

fn query(pairs: &[(&str, Option<String>)]) -> Vec<(&'static str, String)> {
    pairs
        .iter()
        .filter_map(|(k, v)| {
            let key: &'static str = match *k {
                "status" => "status",
                "app" => "app",
                _ => "limit",
            };
            v.clone().map(|v| (key, v))
        })
        .collect()
}

async fn upload(client: &TenantClient, namespace: &str, files: &[PathBuf]) -> (String, bool) {
    let mut out = String::new();
    let mut failed = false;
    for file in files {
        let Some(name) = file.file_name().and_then(|n| n.to_str()) else {
            out.push_str(&format!("refused {}: it has no usable file name\n", file.display()));
            failed = true;
            continue;
        };
        match client.upload(namespace, name, file).await {
            Ok(bytes) => out.push_str(&format!("staged {name} ({bytes} bytes) for {namespace}\n")),
            Err(e) => {
                out.push_str(&format!("refused {name}: {e}\n"));
                failed = true;
            }
        }
    }
    (out, failed)
}

async fn run(cli: Cli) -> Result<String, String> {
    let client = TenantClient::new(cli.context).await.map_err(|e| e.to_string())?;
    let err = |e: mysimbdp_operator::tenant_client::ClientError| e.to_string();
    match cli.command {
        Command::Upload { scope, files } => {
            let (out, failed) = upload(&client, &scope.required()?, &files).await;
            if failed { Err(out.trim_end().to_owned()) } else { Ok(out) }
        }
        Command::Files { scope, status, limit } => {
            let ns = scope.namespace();
            let files: Vec<FileRecord> =
                client.list(&path(ns.as_deref(), "files"), &query(&[("status", status)])).await.map_err(err)?;
            Ok(cli::files_table(&files, limit))
        }
        Command::Download { scope, id, out } => {
            let out = out.unwrap_or_else(|| PathBuf::from(&id));
            let (bytes, reason) = client.download(&scope.required()?, &id, &out).await.map_err(err)?;
            let why = reason.map(|r| format!("; refused: {r}")).unwrap_or_default();
            Ok(format!("wrote {} ({bytes} bytes){why}\n", out.display()))
        }
        Command::Stats { scope } => {
            let files: Vec<FileRecord> =
                client.list(&path(scope.namespace().as_deref(), "files"), &[]).await.map_err(err)?;
            Ok(cli::stats_table(&files))
        }
        Command::Reports { scope, app, limit } => {
            let found: Vec<ReportRecord> = client
                .list(
                    &path(scope.namespace().as_deref(), "reports"),
                    &query(&[("app", app), ("limit", Some(limit.to_string()))]),
                )
                .await
                .map_err(err)?;
            Ok(cli::reports_table(&found))
        }
        Command::Decisions { scope, app, limit } => {
            let found: Vec<DecisionRecord> = client
                .list(
                    &path(scope.namespace().as_deref(), "decisions"),
                    &query(&[("app", app), ("limit", Some(limit.to_string()))]),
                )
                .await
                .map_err(err)?;
            Ok(cli::decisions_table(&found))
        }
        Command::Chart { scope, out, bucket_seconds } => {
            let ns = scope.required()?;
            let files: Vec<FileRecord> = client
                .list(&path(Some(&ns), "files"), &[("status", FileStatus::Ingested.as_str().to_owned())])
                .await
                .map_err(err)?;
            let reports: Vec<ReportRecord> =
                client.list(&path(Some(&ns), "reports"), &[("limit", "10000".to_owned())]).await.map_err(err)?;
            let batch = files
                .iter()
                .filter_map(|f| Some((f.finished_at?.timestamp_millis(), f.rows_written? as f64)))
                .collect();
            let stream = reports.iter().map(|r| (r.window_end.timestamp_millis(), r.messages as f64)).collect();
            let series = [
                Series { name: "batch documents".into(), colour: "#1f77b4".into(), points: batch },
                Series { name: "stream messages".into(), colour: "#ff7f0e".into(), points: stream },
            ];
            let tenant = scope.tenant.unwrap_or(ns);
            let svg = chart::svg(&format!("ingestion of tenant {tenant}"), &series, bucket_seconds.max(1) * 1000);
            std::fs::write(&out, svg).map_err(|e| format!("cannot write {}: {e}", out.display()))?;
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
