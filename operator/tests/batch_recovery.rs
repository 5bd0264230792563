//! Crashes during batch ingestion, on the real stack: the app killed mid-file, the operator
//! killed mid-run (alone, and together with its run), and the operator stopped between
//! recording a decision and moving the file. After recovery every file is ingested exactly
//! once in effect: exact document counts, nothing lost, nothing doubled.

use std::{path::Path, time::Duration};

use kube::Api;
use mongodb::bson::{Document, doc};
use mysimbdp_api::Tenant;
use mysimbdp_e2e::{OperatorProcess, Stack, sample_data, stage, wait_for};
use mysimbdp_operator::{
    batch::ledger::{FileRecord, FileStatus, Ledger},
    tenant::names::TenantNames,
};
use nix::{
    sys::signal::{Signal, kill, killpg},
    unistd::Pid,
};

mod common;

const TENANT: &str = "recover-air";
const TIMEOUT: Duration = Duration::from_secs(300);

/// The first line of a run's pid record: the wrapper's pid, leader of the run's process group.
fn run_leader(runs: &Path, run: &str) -> i32 {
    let record = std::fs::read_to_string(runs.join(run).join("pid")).expect("the run's pid record");
    record.split_whitespace().next().and_then(|p| p.parse().ok()).expect("a pid")
}

/// The app process: the wrapper's child.
fn app_pid(leader: i32) -> i32 {
    let children = std::fs::read_to_string(format!("/proc/{leader}/task/{leader}/children")).unwrap_or_default();
    children.split_whitespace().next().and_then(|p| p.parse().ok()).expect("the app runs under its wrapper")
}

/// Documents in the tenant's `flights` collection, counted in PostgreSQL under FerretDB: a
/// count through the MongoDB API scans every document, too slowly to catch a run mid-way.
async fn stored(stack: &Stack) -> u64 {
    let url = mysimbdp_operator::secret::SecretString::from(stack.var("MYSIMBDP_POSTGRES_URL"));
    let connector = mysimbdp_operator::coredms::postgres::PostgresConnector::new(&url, None).expect("the stack's URL");
    let pg = connector.connect().await.expect("PostgreSQL under coredms");
    let schema = TenantNames::new(TENANT, None).database;
    let table: Option<String> = pg
        .query_opt(
            "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname = $1 AND c.relname LIKE 'flights\\_%' AND c.relkind = 'r'",
            &[&schema],
        )
        .await
        .expect("find the collection's table")
        .map(|row| row.get(0));
    let Some(table) = table else { return 0 };
    let row = pg.query_one(&format!("SELECT count(*) FROM \"{schema}\".\"{table}\""), &[]).await.expect("count");
    u64::try_from(row.get::<_, i64>(0)).unwrap_or(0)
}

/// Waits until `file` is in a run that has written some, but not all, of its documents;
/// `before` is the collection's count when the file was staged.
async fn mid_file(stack: &Stack, ledger: &Ledger, file: &str, before: u64, rows: u64) -> FileRecord {
    wait_for(&format!("{file} to be half-way through a run"), TIMEOUT, || async {
        let record = ledger.files(doc! { "tenant": TENANT, "name": file }).await.ok()?.into_iter().next()?;
        let written = stored(stack).await.saturating_sub(before);
        (record.status == FileStatus::Running && written > 0 && written < rows).then_some(record)
    })
    .await
}

async fn assert_exactly_once(
    ledger: &Ledger,
    flights: &mongodb::Collection<Document>,
    file: &str,
    rows: u64,
    attempts: i32,
) {
    let record = common::settled(ledger, TENANT, &[file], TIMEOUT).await.remove(0);
    assert_eq!(record.status, FileStatus::Ingested, "{file}: {:?}", record.reason);
    assert_eq!(record.attempts, attempts, "{file}: attempts");
    assert_eq!(record.rows_written, Some(rows as i64), "{file}: rows the last attempt stored");
    let documents = flights.count_documents(doc! { "source.file": file }).await.unwrap();
    assert_eq!(documents, rows, "{file}: documents = rows, nothing lost and nothing doubled");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crashes_of_the_app_and_the_operator_lose_and_double_nothing() {
    let stack = Stack::load();
    let data = sample_data();
    let client = stack.kube_client().await;
    common::install_crds(&stack);
    let mut operator = OperatorProcess::start(env!("CARGO_BIN_EXE_mysimbdp-operator").as_ref(), &stack, &[]);
    let tenants: Api<Tenant> = Api::all(client);
    common::reset(&stack, &tenants, &[TENANT]).await;
    let ledger = common::ledger(&stack).await;
    let (tenant, app) =
        common::flights_tenant(TENANT, Some(8000), "  retry: {maxAttempts: 3, backoff: 1s, maxBackoff: 2s}\n");
    common::apply(&stack, &tenant);
    common::wait_ready(&tenants, TENANT).await;
    common::apply(&stack, &app);
    let flights = stack
        .coredms_admin()
        .await
        .database(&TenantNames::new(TENANT, None).database)
        .collection::<Document>("flights");

    // 1. The app is killed mid-file: the run fails, the retry completes the file.
    let file = "flights_2013_02.csv";
    let rows = common::data_rows(&data.join(file));
    let before = stored(&stack).await;
    stage(&operator.staging_dir, TENANT, file, &std::fs::read(data.join(file)).unwrap());
    let record = mid_file(&stack, &ledger, file, before, rows).await;
    let leader = run_leader(&operator.runs_dir, record.run.as_deref().unwrap());
    kill(Pid::from_raw(app_pid(leader)), Signal::SIGKILL).expect("kill the app");
    assert_exactly_once(&ledger, &flights, file, rows, 2).await;

    // 2. The operator is killed mid-run; the run goes on and a new operator settles it.
    let file = "flights_2013_03.csv";
    let rows = common::data_rows(&data.join(file));
    let before = stored(&stack).await;
    stage(&operator.staging_dir, TENANT, file, &std::fs::read(data.join(file)).unwrap());
    mid_file(&stack, &ledger, file, before, rows).await;
    operator.restart();
    assert_exactly_once(&ledger, &flights, file, rows, 1).await;

    // 3. The operator and its run die together (a machine crash): the run left no exit code;
    //    the new operator counts the attempt as failed and retries it.
    let file = "flights_2013_04.csv";
    let rows = common::data_rows(&data.join(file));
    let before = stored(&stack).await;
    stage(&operator.staging_dir, TENANT, file, &std::fs::read(data.join(file)).unwrap());
    let record = mid_file(&stack, &ledger, file, before, rows).await;
    operator.kill();
    let leader = run_leader(&operator.runs_dir, record.run.as_deref().unwrap());
    killpg(Pid::from_raw(leader), Signal::SIGKILL).expect("kill the run's processes");
    operator.restart();
    assert_exactly_once(&ledger, &flights, file, rows, 2).await;

    // 4. The operator stopped after recording an acceptance but before moving the file: the
    //    next one finishes the move instead of taking the file in again.
    operator.kill();
    let file = "flights_2013_05.csv";
    let rows = common::data_rows(&data.join(file));
    stage(&operator.staging_dir, TENANT, file, &std::fs::read(data.join(file)).unwrap());
    let mut recorded = record.clone();
    recorded.id = format!("{}-crash", record.id);
    recorded.name = file.into();
    recorded.status = FileStatus::Queued;
    recorded.attempts = 0;
    recorded.run = None;
    recorded.filed = false;
    recorded.records = Some(rows as i64);
    ledger.insert_file(&recorded).await.unwrap();
    operator.restart();
    assert_exactly_once(&ledger, &flights, file, rows, 1).await;
    let same_name = ledger.files(doc! { "tenant": TENANT, "name": file }).await.unwrap();
    assert_eq!(same_name.len(), 1, "the file was not taken in a second time: {same_name:#?}");
    assert!(operator.staging_dir.join(TENANT).join("ingested").join(&recorded.id).join(file).is_file());

    // Offboard what the test made, so that no later operator runs its apps.
    common::reset(&stack, &tenants, &[TENANT]).await;
}
