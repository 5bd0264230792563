//! Fairness of batch ingestion between tenants, on the real stack with the local runtime: a
//! tenant that floods its staging area with files does not starve another tenant. The platform
//! has two run slots; `flood-air` stages twelve files for a slowed app allowed two runs at a
//! time, so it would keep both slots busy until its queue is empty. Once its runs hold both
//! slots, `calm-air` stages one file: it must get the next slot that frees, start while most of
//! the flood still waits, and finish long before the flood does. Every document lands exactly.

use std::time::Duration;

use kube::Api;
use mongodb::bson::{DateTime, Document, doc};
use mysimbdp_api::Tenant;
use mysimbdp_e2e::{OperatorProcess, Stack, sample_data, stage, wait_for};
use mysimbdp_operator::{
    batch::ledger::{FileRecord, FileStatus},
    tenant::names::TenantNames,
};

mod common;

const FLOOD: &str = "flood-air";
const CALM: &str = "calm-air";
/// Files the flood stages at once, and rows in each (and in calm-air's one file).
const FLOOD_FILES: usize = 12;
const ROWS: usize = 2000;
/// The flood's app reads this many rows per second: about two seconds a file.
const FLOOD_PACE: u32 = 1000;
const TIMEOUT: Duration = Duration::from_secs(150);

fn started(file: &FileRecord) -> DateTime {
    file.started_at.unwrap_or_else(|| panic!("{} has no startedAt: {file:#?}", file.name))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_files_from_one_tenant_does_not_starve_another() {
    let stack = Stack::load();
    let data = sample_data();
    common::install_crds(&stack);
    // Two slots for the whole platform: the flood alone could fill them.
    let operator = OperatorProcess::start(
        env!("CARGO_BIN_EXE_mysimbdp-operator").as_ref(),
        &stack,
        &[("MYSIMBDP_MAX_CONCURRENT_RUNS", "2")],
    );
    let tenants: Api<Tenant> = Api::all(stack.kube_client().await);
    common::reset(&stack, &tenants, &[FLOOD, CALM]).await;
    let ledger = common::ledger(&stack).await;
    let (flood_tenant, flood_app) = common::flights_tenant(FLOOD, Some(FLOOD_PACE), "  concurrency: 2\n");
    let (calm_tenant, calm_app) = common::flights_tenant(CALM, None, "");
    common::apply(&stack, &flood_tenant);
    common::apply(&stack, &calm_tenant);
    common::wait_ready(&tenants, FLOOD).await;
    common::wait_ready(&tenants, CALM).await;
    common::apply(&stack, &flood_app);
    common::apply(&stack, &calm_app);

    let flood_names: Vec<String> = (1..=FLOOD_FILES).map(|n| format!("flights_2013_01_part{n:02}.csv")).collect();
    for (name, content) in
        flood_names.iter().zip(common::csv_parts(&data.join("flights_2013_01.csv"), ROWS, FLOOD_FILES))
    {
        stage(&operator.staging_dir, FLOOD, name, &content);
    }
    wait_for("the flood's runs to hold both slots", TIMEOUT, || async {
        let running =
            ledger.count_files(doc! { "tenant": FLOOD, "status": FileStatus::Running.as_str() }).await.ok()?;
        (running == 2).then_some(())
    })
    .await;
    let calm_name = "flights_2013_02_part01.csv";
    let calm_content = common::csv_parts(&data.join("flights_2013_02.csv"), ROWS, 1).remove(0);
    stage(&operator.staging_dir, CALM, calm_name, &calm_content);

    let calm = common::settled(&ledger, CALM, &[calm_name], TIMEOUT).await.remove(0);
    let names: Vec<&str> = flood_names.iter().map(String::as_str).collect();
    let flood = common::settled(&ledger, FLOOD, &names, TIMEOUT).await;

    // Everything landed, exactly.
    assert_eq!(calm.status, FileStatus::Ingested, "{calm:#?}");
    assert_eq!(calm.rows_written, Some(ROWS as i64), "{calm:#?}");
    for file in &flood {
        assert_eq!(file.status, FileStatus::Ingested, "{file:#?}");
        assert_eq!(file.rows_written, Some(ROWS as i64), "{file:#?}");
    }
    let admin = stack.coredms_admin().await;
    let documents =
        |tenant: &str| admin.database(&TenantNames::new(tenant, None).database).collection::<Document>("flights");
    assert_eq!(documents(FLOOD).count_documents(doc! {}).await.unwrap(), (FLOOD_FILES * ROWS) as u64);
    assert_eq!(documents(CALM).count_documents(doc! {}).await.unwrap(), ROWS as u64);

    // Fairness, from the ledger's times.
    let calm_started = started(&calm);
    let mut timeline: Vec<(i64, &str)> =
        flood.iter().map(|f| (started(f).timestamp_millis(), f.name.as_str())).collect();
    timeline.push((calm_started.timestamp_millis(), calm_name));
    timeline.sort();
    let accepted = calm.decided_at.timestamp_millis();
    let starts: Vec<String> = timeline.iter().map(|(at, name)| format!("{:+} ms {name}", at - accepted)).collect();
    let report = format!("starts, from calm-air's file's acceptance:\n  {}", starts.join("\n  "));
    // Once calm-air's file waited, no flood run took a slot before it.
    let overtaking: Vec<&str> = flood
        .iter()
        .filter(|f| started(f) > calm.decided_at && started(f) < calm_started)
        .map(|f| f.name.as_str())
        .collect();
    assert!(overtaking.is_empty(), "flood files started while calm-air's file waited: {overtaking:?}; {report}");
    // It started while most of the flood was still queued...
    let flood_after = flood.iter().filter(|f| started(f) >= calm_started).count();
    assert!(
        flood_after >= FLOOD_FILES / 2,
        "only {flood_after} of the flood's {FLOOD_FILES} files were still waiting when calm-air's file started; {report}"
    );
    // ...and was ingested before the flood's last file even started.
    let calm_finished = calm.finished_at.expect("a finished file has finishedAt");
    let last_flood_start = flood.iter().map(started).max().expect("flood files");
    assert!(
        calm_finished < last_flood_start,
        "calm-air's file finished at {calm_finished}, after the flood's last file started at {last_flood_start}; {report}"
    );
    eprintln!("{report}");

    // Offboard what the test made, so that no later operator runs its apps.
    common::reset(&stack, &tenants, &[FLOOD, CALM]).await;
}
