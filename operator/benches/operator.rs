//! `make bench-operator`: what the operator costs as apps and tenants grow, on the running local
//! stack with a release build. Not a test: it asserts nothing about time.
//!
//! For 10 and then 100 tenants, and 10, 100 and 1,000 BatchIngestApps spread over them (apps
//! that select no staged file, as most apps are most of the time), it measures:
//! - the time from creating the apps until every one has a status with its Ready condition;
//! - then, idle, over [`IDLE`]: the operator's CPU seconds per minute, its reconciliations per
//!   minute (all controllers, from its metrics), the CPU seconds per minute of coredms
//!   (FerretDB and PostgreSQL), and the operator's resident memory at the end.
//!
//! The table goes to stdout. The figures are only as steady as the machine is quiet.

use std::{
    path::{Path, PathBuf},
    process::ExitCode,
    time::{Duration, Instant},
};

use kube::Api;
use mysimbdp_api::{BatchIngestApp, Tenant};
use mysimbdp_e2e::{OperatorProcess, Stack, wait_for};

#[path = "../tests/common/mod.rs"]
mod common;

/// How long the operator is watched idle in each scenario.
const IDLE: Duration = Duration::from_secs(60);
const TIMEOUT: Duration = Duration::from_secs(900);

fn tenant_name(i: usize) -> String {
    format!("bench-op-{i:03}")
}

fn tenant_yaml(name: &str) -> String {
    format!(
        "apiVersion: mysimbdp.io/v1alpha1
kind: Tenant
metadata: {{name: {name}}}
spec:
  agreement:
    files: {{formats: [Csv], maxFileSize: 1Mi, maxFilesPerDay: 10, maxBytesPerDay: 10Mi}}
    compute: {{cpu: '1', memory: 1Gi}}
    kafka: {{producerByteRate: 1Mi, consumerByteRate: 1Mi}}
    coredms: {{storageQuota: 1Gi}}
"
    )
}

fn apps_yaml(tenants: usize, apps: usize) -> String {
    (0..apps)
        .map(|i| {
            format!(
                "---
apiVersion: mysimbdp.io/v1alpha1
kind: BatchIngestApp
metadata: {{name: app-{i:04}, namespace: tenant-{}}}
spec:
  container: {{image: registry.example.com/bench/app:1, command: [acme-flights-ingest]}}
  files: {{pattern: 'app-{i:04}_*.csv'}}
  target: {{collection: c{i}}}
",
                tenant_name(i % tenants)
            )
        })
        .collect()
}

/// User plus system CPU time of a process, in seconds.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rfind(')').map_or("", |i| &stat[i + 2..]);
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok()).unwrap_or(0.0);
    // utime and stime are fields 14 and 15 of the line, 11 and 12 after the command.
    (ticks(11) + ticks(12)) / 100.0
}

/// Pids of a stack process and its children (PostgreSQL forks one backend per connection).
fn process_tree(root: u32) -> Vec<u32> {
    let mut pids = vec![root];
    let mut i = 0;
    while i < pids.len() {
        let children = std::fs::read_to_string(format!("/proc/{0}/task/{0}/children", pids[i])).unwrap_or_default();
        pids.extend(children.split_whitespace().filter_map(|p| p.parse::<u32>().ok()));
        i += 1;
    }
    pids
}

fn stack_pid(stack: &Stack, name: &str) -> Option<u32> {
    let path = Path::new(stack.var("MYSIMBDP_STATE")).join("run").join(format!("{name}.pid"));
    std::fs::read_to_string(path).ok()?.split_whitespace().next()?.parse().ok()
}

fn coredms_cpu(stack: &Stack) -> f64 {
    ["coredms-ferretdb", "coredms-postgres"]
        .iter()
        .filter_map(|name| stack_pid(stack, name))
        .flat_map(process_tree)
        .map(cpu_seconds)
        .sum()
}

fn rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0.0);
    kib / 1024.0
}

fn reconciliations(operator: &OperatorProcess) -> f64 {
    let metrics = operator.http_get("/metrics").unwrap_or_default();
    metrics
        .lines()
        .filter(|l| l.starts_with("mysimbdp_reconciliations_total"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

struct Row {
    tenants: usize,
    apps: usize,
    to_status: Duration,
    cpu_per_min: f64,
    reconciles_per_min: f64,
    coredms_per_min: f64,
    rss: f64,
}

fn main() -> ExitCode {
    common::bench_main("operator", "make bench-operator", bench())
}

async fn bench() -> ExitCode {
    let binary = PathBuf::from(env!("CARGO_BIN_EXE_mysimbdp-operator"));
    let stack = Stack::load();
    common::install_crds(&stack);
    let client = stack.kube_client().await;
    let tenants: Api<Tenant> = Api::all(client.clone());
    let names: Vec<String> = (0..100).map(tenant_name).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    common::reset(&stack, &tenants, &refs).await;
    let operator =
        OperatorProcess::start(&binary, &stack, &[("RUST_LOG", "warn"), ("MYSIMBDP_BATCH_POLL_INTERVAL", "1s")]);
    let mut rows = Vec::new();
    let mut onboarded = 0;
    for tenant_count in [10, 100] {
        let started = Instant::now();
        for name in &names[onboarded..tenant_count] {
            common::apply(&stack, &tenant_yaml(name));
        }
        for name in &names[onboarded..tenant_count] {
            common::wait_ready(&tenants, name).await;
        }
        println!("{} tenants onboarded in {:.1} s", tenant_count - onboarded, started.elapsed().as_secs_f64());
        onboarded = tenant_count;
        for app_count in [10, 100, 1000] {
            let started = Instant::now();
            common::apply(&stack, &apps_yaml(tenant_count, app_count));
            let apps: Api<BatchIngestApp> = Api::all(client.clone());
            wait_for(&format!("{app_count} apps to have a status"), TIMEOUT, || async {
                let list = apps.list(&Default::default()).await.ok()?;
                let done = list
                    .items
                    .iter()
                    .filter(|a| a.status.as_ref().is_some_and(|s| s.conditions.iter().any(|c| c.type_ == "Ready")))
                    .count();
                (list.items.len() == app_count && done == app_count).then_some(())
            })
            .await;
            let to_status = started.elapsed();
            // Let the burst of work settle before watching the idle cost.
            tokio::time::sleep(Duration::from_secs(10)).await;
            let (cpu0, rec0, db0, t0) =
                (cpu_seconds(operator.pid()), reconciliations(&operator), coredms_cpu(&stack), Instant::now());
            tokio::time::sleep(IDLE).await;
            let minutes = t0.elapsed().as_secs_f64() / 60.0;
            let row = Row {
                tenants: tenant_count,
                apps: app_count,
                to_status,
                cpu_per_min: (cpu_seconds(operator.pid()) - cpu0) / minutes,
                reconciles_per_min: (reconciliations(&operator) - rec0) / minutes,
                coredms_per_min: (coredms_cpu(&stack) - db0) / minutes,
                rss: rss_mib(operator.pid()),
            };
            println!(
                "{:>7} tenants {:>5} apps: every status in {:>6.1} s; idle: {:.2} CPU s/min, {:.0} reconciliations/min, coredms {:.2} CPU s/min; RSS {:.1} MiB",
                row.tenants,
                row.apps,
                row.to_status.as_secs_f64(),
                row.cpu_per_min,
                row.reconciles_per_min,
                row.coredms_per_min,
                row.rss
            );
            rows.push(row);
            stack.kubectl_ok(&["delete", "batchingestapps", "--all-namespaces", "--all", "--wait=true"]);
        }
    }
    println!();
    println!(
        "| tenants | apps | every app has a status | operator CPU s/min (idle) | reconciliations/min (idle) | coredms CPU s/min (idle) | operator RSS |"
    );
    println!("| ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    for r in &rows {
        println!(
            "| {} | {} | {:.1} s | {:.2} | {:.0} | {:.2} | {:.1} MiB |",
            r.tenants,
            r.apps,
            r.to_status.as_secs_f64(),
            r.cpu_per_min,
            r.reconciles_per_min,
            r.coredms_per_min,
            r.rss
        );
    }
    let base = &rows[0];
    if let Some(top) = rows.iter().find(|r| r.tenants == 10 && r.apps == 1000) {
        println!(
            "\nfrom 10 to 1,000 apps (10 tenants): idle CPU ×{:.2}, reconciliations ×{:.2}, RSS ×{:.2}",
            top.cpu_per_min / base.cpu_per_min.max(1e-9),
            top.reconciles_per_min / base.reconciles_per_min.max(1e-9),
            top.rss / base.rss.max(1e-9)
        );
    }
    common::reset(&stack, &tenants, &refs).await;
    ExitCode::SUCCESS
}
