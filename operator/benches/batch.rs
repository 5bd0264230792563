//! `make bench-batch`: batch ingestion throughput through the platform against the store's own
//! ceiling, on the whole flights data set, on the running local stack. Not a test: it asserts
//! nothing about time, and `cargo test` never runs it.
//!
//! 1. The app's CPU work without the store: the sample app's `flights_raw_insert` example reads,
//!    wrangles and encodes every file on one thread (MB/s per core).
//! 2. The store's ceiling: the same example inserts the same documents, built in memory first,
//!    with plain unordered `insert_many` calls into a fresh collection of the tenant's database,
//!    as the tenant's user, at each `BENCH_RAW_IN_FLIGHT` level (default `2,4,8`), then at the
//!    best level once more after step 3; the best of all is the ceiling.
//! 3. The platform: the operator (release build, local runtime, its default pacing) with tenant
//!    `bench-air` (the acme-air sample's agreement and flights app). All twelve monthly files are
//!    staged at once; the time runs from staging to the last file's ledger record being final,
//!    and the tenant's collection must then hold exactly one document per row.
//!
//! `BENCH_OPERATOR` names another operator binary to measure in step 3 (the app is taken from
//! beside it), to compare a change with the build before it.
//!
//! The figures go to stdout as a table, with the ratio of the platform's rows/s to the ceiling.
//! They are only as steady as the machine is quiet: run it with nothing else busy.

use std::{
    path::{Path, PathBuf},
    process::{Command, ExitCode},
    time::{Duration, Instant},
};

use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use mongodb::bson::{DateTime, Document, doc};
use mysimbdp_api::Tenant;
use mysimbdp_e2e::{OperatorProcess, Stack, sample_data, stage};
use mysimbdp_operator::tenant::names::{CREDENTIALS_SECRET, TenantNames};

#[path = "../tests/common/mod.rs"]
mod common;

const TENANT: &str = "bench-air";
/// The collection the raw inserts fill, beside the app's `flights`.
const RAW_COLLECTION: &str = "raw_flights";
const TIMEOUT: Duration = Duration::from_secs(1200);
const MONTHS: usize = 12;

/// One line of the table.
struct Line {
    what: String,
    rows: u64,
    bytes: u64,
    seconds: f64,
}

impl Line {
    fn rows_per_second(&self) -> f64 {
        self.rows as f64 / self.seconds
    }

    fn print(&self) {
        println!(
            "  {:<50} {:>8.2} s {:>10.0} rows/s {:>8.2} MB/s",
            self.what,
            self.seconds,
            self.rows_per_second(),
            self.bytes as f64 / 1e6 / self.seconds
        );
    }
}

/// What the `flights_raw_insert` example printed with `--json`.
#[derive(serde::Deserialize)]
struct RawFigures {
    rows: u64,
    bytes: u64,
    seconds: f64,
}

fn main() -> ExitCode {
    common::bench_main("batch", "make bench-batch", bench())
}

/// Runs the `flights_raw_insert` example with `args` and `env`; its figures.
fn raw_insert(example: &Path, args: &[String], env: &[(String, String)]) -> RawFigures {
    let output = Command::new(example)
        .args(args)
        .arg("--json")
        .envs(env.iter().map(|(k, v)| (k, v)))
        .env("RUST_LOG", "warn")
        .output()
        .unwrap_or_else(|e| panic!("{} does not run: {e}", example.display()));
    assert!(
        output.status.success(),
        "{} {args:?} failed: {}",
        example.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(line).unwrap_or_else(|e| panic!("unexpected output of {}: {line:?}: {e}", example.display()))
}

/// The tenant's coredms settings, as its apps get them from its credentials Secret.
async fn tenant_coredms_env(client: kube::Client, namespace: &str) -> Vec<(String, String)> {
    let secret = Api::<Secret>::namespaced(client, namespace).get(CREDENTIALS_SECRET).await.expect("credentials");
    secret
        .data
        .unwrap_or_default()
        .into_iter()
        .filter(|(k, _)| k.starts_with("MYSIMBDP_COREDMS_"))
        .filter_map(|(k, v)| String::from_utf8(v.0).ok().map(|v| (k, v)))
        .collect()
}

/// One raw insert of every document at `level` inserts in flight, into a fresh collection.
async fn raw_ceiling(
    example: &Path,
    database: &mongodb::Database,
    env: &[(String, String)],
    files: &[String],
    level: usize,
    rows: u64,
    note: &str,
) -> (usize, Line) {
    let raw = database.collection::<Document>(RAW_COLLECTION);
    raw.drop().await.expect("drop the raw collection");
    let mut args = vec!["--collection".to_owned(), RAW_COLLECTION.to_owned(), "--in-flight".to_owned()];
    args.push(level.to_string());
    args.extend(files.iter().cloned());
    let figures = raw_insert(example, &args, env);
    assert_eq!(figures.rows, rows, "the raw insert built one document per row");
    raw.drop().await.expect("drop the raw collection");
    let what = format!("raw insert_many, batch 1000, {level} in flight{note}");
    (level, Line { what, rows: figures.rows, bytes: figures.bytes, seconds: figures.seconds })
}

fn seconds_between(from: DateTime, to: DateTime) -> f64 {
    (to.timestamp_millis() - from.timestamp_millis()) as f64 / 1000.0
}

async fn bench() -> ExitCode {
    let own_binary = PathBuf::from(env!("CARGO_BIN_EXE_mysimbdp-operator"));
    let example = own_binary.parent().expect("the binary is in a folder").join("examples").join("flights_raw_insert");
    // Another build of the operator (and the app beside it) may be measured instead, e.g. to
    // compare a change with the build before it.
    let operator_binary = std::env::var_os("BENCH_OPERATOR").map_or(own_binary.clone(), PathBuf::from);
    let app_binary = operator_binary.parent().expect("the binary is in a folder").join("acme-flights-ingest");
    for needed in [&operator_binary, &app_binary, &example] {
        assert!(
            needed.is_file(),
            "{} is missing: build it first with `cargo build --release --workspace --bins --examples` (make bench-batch does)",
            needed.display()
        );
    }
    let stack = Stack::load();
    let data = sample_data();
    let files: Vec<PathBuf> = (1..=MONTHS).map(|m| data.join(format!("flights_2013_{m:02}.csv"))).collect();
    let names: Vec<String> =
        files.iter().map(|f| f.file_name().expect("a file name").to_string_lossy().into_owned()).collect();
    let rows: u64 = files.iter().map(|f| common::data_rows(f)).sum();
    let bytes: u64 = files.iter().map(|f| f.metadata().expect("data file").len()).sum();
    let file_args: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
    println!("batch ingestion benchmark: {MONTHS} flights files, {rows} rows, {:.1} MB", bytes as f64 / 1e6);

    // 1. The app's CPU work alone, on one core.
    let mut args = vec!["--encode-only".to_owned()];
    args.extend(file_args.iter().cloned());
    let encode = raw_insert(&example, &args, &[]);
    let encode = Line {
        what: "read + wrangle + encode, 1 core, no store".into(),
        rows: encode.rows,
        bytes: encode.bytes,
        seconds: encode.seconds,
    };

    // The tenant, from the acme-air sample's agreement and flights app.
    common::install_crds(&stack);
    let operator = OperatorProcess::start(
        &operator_binary,
        &stack,
        // The operator's own defaults, not the tests' quick polling.
        &[
            ("MYSIMBDP_BATCH_POLL_INTERVAL", "2s"),
            ("MYSIMBDP_MAX_CONCURRENT_RUNS", "4"),
            ("RUST_LOG", "info,kube=warn"),
        ],
    );
    let client = stack.kube_client().await;
    let tenants: Api<Tenant> = Api::all(client.clone());
    common::reset(&stack, &tenants, &[TENANT]).await;
    let samples = Stack::repo_dir().join("tenant-samples/acme-air");
    let manifest =
        |file: &str| std::fs::read_to_string(samples.join(file)).expect("sample manifest").replace("acme-air", TENANT);
    common::apply(&stack, &manifest("tenant.yaml"));
    common::wait_ready(&tenants, TENANT).await;
    let app = manifest("batch-flights.yaml");
    common::apply(&stack, &app);
    let names_of = TenantNames::new(TENANT, None);
    let database = stack.coredms_admin().await.database(&names_of.database);

    // 2. The store's ceiling, as the tenant's user.
    let env = tenant_coredms_env(client, &names_of.namespace).await;
    let levels = std::env::var("BENCH_RAW_IN_FLIGHT").unwrap_or_else(|_| "2,4,8".into());
    let mut raws = Vec::new();
    for level in levels.split(',').filter_map(|l| l.trim().parse::<usize>().ok()) {
        raws.push(raw_ceiling(&example, &database, &env, &file_args, level, rows, "").await);
    }
    let best_level = raws.iter().max_by(|a, b| a.1.rows_per_second().total_cmp(&b.1.rows_per_second())).map(|r| r.0);

    // 3. The platform, end to end.
    let ledger = common::ledger(&stack).await;
    let staged_at = DateTime::now();
    let clock = Instant::now();
    for (name, file) in names.iter().zip(&files) {
        stage(&operator.staging_dir, TENANT, name, &std::fs::read(file).expect("data file"));
    }
    let staging = clock.elapsed().as_secs_f64();
    let name_refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let settled = common::settled(&ledger, TENANT, &name_refs, TIMEOUT).await;
    let finished = settled.iter().filter_map(|f| f.finished_at).max().expect("finished files");
    let failed: Vec<String> =
        settled.iter().filter(|f| f.rows_written != f.records).map(|f| format!("{}: {:?}", f.name, f.reason)).collect();
    assert!(failed.is_empty(), "files not fully ingested: {failed:?}");
    let documents = database.collection::<Document>("flights").count_documents(doc! {}).await.expect("count");
    assert_eq!(documents, rows, "documents in {}.flights = rows in the files", names_of.database);
    let platform = Line {
        what: "platform end to end (staging to last record)".into(),
        rows,
        bytes,
        seconds: seconds_between(staged_at, finished),
    };
    // The best level once more, after the platform: a ceiling measured on both sides of it.
    if let Some(level) = best_level {
        raws.push(raw_ceiling(&example, &database, &env, &file_args, level, rows, ", again").await);
    }
    let runs = ledger.runs(doc! { "tenant": TENANT }).await.expect("runs");
    let first_accepted = settled.iter().map(|f| f.decided_at).min().expect("files");
    let last_accepted = settled.iter().map(|f| f.decided_at).max().expect("files");
    let first_run = runs.iter().map(|r| r.started_at).min().expect("runs");
    let run_seconds: Vec<String> = {
        let mut runs = runs.clone();
        runs.sort_by_key(|r| r.started_at);
        runs.iter()
            .map(|r| {
                let end = r.finished_at.unwrap_or(finished);
                format!("+{:.1}..+{:.1}", seconds_between(staged_at, r.started_at), seconds_between(staged_at, end))
            })
            .collect()
    };
    let ceiling = raws.iter().map(|r| &r.1).max_by(|a, b| a.rows_per_second().total_cmp(&b.rows_per_second()));
    println!();
    println!("  {:<50} {:>10} {:>17} {:>13}", "", "time", "rows", "bytes");
    encode.print();
    for (_, raw) in &raws {
        raw.print();
    }
    platform.print();
    if let Some(ceiling) = ceiling {
        println!();
        println!(
            "  ratio platform / raw ceiling ({}): {:.2} (target >= 0.85)",
            ceiling.what,
            platform.rows_per_second() / ceiling.rows_per_second()
        );
    }
    println!("  documents in {}.flights: {documents} = rows: {rows}", names_of.database);
    println!(
        "  timeline (s from staging): staged in {staging:.2}; accepted +{:.1}..+{:.1}; first run +{:.1}; \
         runs {}; last record +{:.1}",
        seconds_between(staged_at, first_accepted),
        seconds_between(staged_at, last_accepted),
        seconds_between(staged_at, first_run),
        run_seconds.join(" "),
        seconds_between(staged_at, finished)
    );
    let app_args = app.lines().find(|l| l.contains("args:")).map(str::trim).unwrap_or_default().to_owned();
    let limits = app.lines().filter(|l| l.contains("filesPerRun") || l.contains("concurrency")).map(str::trim);
    println!(
        "  settings: operator {} (poll 2s, max 4 runs); app {app_args}, {}",
        operator_binary.display(),
        limits.collect::<Vec<_>>().join(", ")
    );
    // The operator offboards the tenant (its finalizer), so it stops only after that.
    common::reset(&stack, &tenants, &[TENANT]).await;
    let (staging_dir, runs_dir) = (operator.staging_dir.clone(), operator.runs_dir.clone());
    drop(operator);
    // The staged copies of the data set; the operator's log stays beside them.
    for dir in [staging_dir, runs_dir] {
        let _ = std::fs::remove_dir_all(dir);
    }
    ExitCode::SUCCESS
}
