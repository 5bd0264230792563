//! `mysimbdp-operator`: runs the platform's controllers against the cluster in KUBECONFIG (or
//! the one it runs in), administering the shared Kafka and coredms.

use std::{process::ExitCode, sync::Arc};

use clap::{Parser, ValueEnum};
use mysimbdp_operator::{
    batch,
    config::{BatchArgs, LeaderElectionArgs, PlatformArgs, RuntimeKind, StreamArgs},
    leader,
    metrics::Metrics,
    monitor,
    shutdown::Shutdown,
    stream, tenant,
};
use tokio::task::JoinSet;
use tracing::{error, info};
use tracing_subscriber::EnvFilter;

/// Log line format.
#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// A part of the operator that can run on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Part {
    /// Onboarding and offboarding of tenants.
    Tenant,
    /// The batch ingest manager.
    Batch,
    /// The stream ingest manager: runs stream apps and carries out the monitor's decisions.
    Stream,
    /// The monitor: reads the stream apps' reports and decides to scale or restart them.
    Monitor,
}

/// The mysimbdp operator: onboards and offboards tenants (namespace, quotas, network fence,
/// Kafka user, ACLs, quotas and topics, coredms database and user, staging area, credentials),
/// runs batch ingestion (checks staged files against each tenant's agreement, runs the
/// tenant's apps on the accepted ones, records every file in the ledger), runs stream apps
/// beside their metrics sidecars, and monitors them (reads their reports, scales or restarts
/// them when they break their thresholds or stall).
///
/// Every flag can also be set through the environment variable shown; credentials are read
/// from the environment only (MYSIMBDP_KAFKA_ADMIN_PASSWORD, MYSIMBDP_COREDMS_ADMIN_PASSWORD,
/// MYSIMBDP_POSTGRES_URL). With the local stack: `. ~/.local/state/mysimbdp/env` first.
#[derive(Debug, Parser)]
#[command(name = "mysimbdp-operator", version, about, long_about)]
struct Cli {
    #[command(flatten)]
    platform: PlatformArgs,
    #[command(flatten)]
    batch: BatchArgs,
    #[command(flatten)]
    stream: StreamArgs,
    #[command(flatten)]
    leader: LeaderElectionArgs,
    /// Which parts to run.
    #[arg(
        long,
        env = "MYSIMBDP_CONTROLLERS",
        value_enum,
        value_delimiter = ',',
        default_value = "tenant,batch,stream,monitor"
    )]
    controllers: Vec<Part>,
    /// Log format.
    #[arg(long, env = "MYSIMBDP_LOG_FORMAT", value_enum, default_value = "text")]
    log_format: LogFormat,
}

#[tokio::main]
async fn main() -> ExitCode {
    let mut cli = Cli::parse();
    // Tenant namespaces hold the staging claim when runs mount it.
    cli.platform.tenant_staging_claim = cli.batch.kubernetes_staging_claim.is_some();
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,kube=warn,tower=warn"));
    let logs = tracing_subscriber::fmt().with_env_filter(filter).with_target(false);
    match cli.log_format {
        LogFormat::Text => logs.init(),
        LogFormat::Json => logs.json().init(),
    }

    let shutdown = Shutdown::on_signals();
    let metrics = Arc::new(Metrics::default());
    let ctx = match cli.platform.context(metrics.clone()).await {
        Ok(ctx) => ctx,
        Err(e) => {
            error!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let addr = cli.platform.metrics_addr;
    tokio::spawn(async move {
        if let Err(e) = mysimbdp_operator::metrics::serve(addr, metrics).await {
            error!("metrics endpoint on {addr}: {e}");
        }
    });
    // Every replica serves the tenant API, the leader and those waiting alike: it keeps no
    // state of its own.
    if let Some(api) = cli.platform.tenant_api() {
        tokio::spawn(mysimbdp_operator::tenant_api::run(ctx.clone(), api, shutdown.clone()));
    }
    // A replica that does not lead waits here, healthy, until it does.
    let mut leadership = match leader::lead(&cli.leader, ctx.client.clone(), &shutdown).await {
        Ok(Some(leadership)) => leadership,
        Ok(None) => return ExitCode::SUCCESS,
        Err(e) => {
            error!("{e}");
            return ExitCode::FAILURE;
        }
    };
    info!(metrics = %addr, staging = %cli.platform.staging_url, parts = ?cli.controllers, "mysimbdp operator started");
    let mut parts = JoinSet::new();
    let runtime = cli.batch.runtime(ctx.client.clone());
    let replicas =
        cli.stream.runtime(cli.batch.runtime, &cli.batch.runs_dir, ctx.client.clone(), cli.batch.placement());
    if cli.controllers.contains(&Part::Batch) {
        parts.spawn(batch::run(
            ctx.clone(),
            ctx.ledger.clone(),
            runtime.clone(),
            cli.batch.manager(),
            shutdown.clone(),
        ));
    }
    if cli.controllers.contains(&Part::Stream) {
        parts.spawn(stream::run(ctx.clone(), replicas.clone(), cli.stream.stream_resync.get(), shutdown.clone()));
    }
    if cli.controllers.contains(&Part::Monitor) {
        let config =
            monitor::MonitorConfig { kafka: cli.platform.kafka_admin_client(), tick: cli.stream.monitor_tick.get() };
        parts.spawn(monitor::run(ctx.clone(), config, shutdown.clone()));
    }
    if cli.controllers.contains(&Part::Tenant) {
        parts.spawn(tenant::run(ctx.clone(), shutdown.clone()));
    }
    // Every part runs until the shutdown signal; one that ends early stops the others.
    let lost = tokio::select! {
        _ = parts.join_next() => false,
        () = shutdown.wait() => false,
        () = leadership.lost() => true,
    };
    shutdown.trigger();
    while parts.join_next().await.is_some() {}
    if lost {
        error!("leadership lost; exiting so that this replica starts again clean");
        return ExitCode::FAILURE;
    }
    if cli.batch.local_stop_on_exit {
        let (runs, replicas) = (runtime.stop_all().await, replicas.stop_all().await);
        info!(runs, replicas, "stopped what the operator started");
    } else if cli.batch.runtime == RuntimeKind::Local {
        info!(runs = %cli.batch.runs_dir.display(), "the local runtime's runs and replicas keep running; a restarted operator adopts them (--local-stop-on-exit stops them with the operator)");
    }
    leadership.release().await;
    info!("mysimbdp operator stopped");
    ExitCode::SUCCESS
}
