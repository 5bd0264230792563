//! Batch ingestion end to end on the real stack with the local runtime: tenant A's whole
//! flights data set lands in its database exactly (documents = rows), every file has its
//! ledger record, and every kind of violation is rejected with its reason beside the kept file.

use std::time::Duration;

use kube::Api;
use mongodb::bson::{Document, doc};
use mysimbdp_api::Tenant;
use mysimbdp_e2e::{OperatorProcess, Stack, sample_data, stage};
use mysimbdp_operator::{batch::ledger::FileStatus, tenant::names::TenantNames};

mod common;
use common::{data_rows, reset, settled, wait_ready};

const A: &str = "acme-air";
const STRICT: &str = "strict-air";
const INGEST_TIMEOUT: Duration = Duration::from_secs(600);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flights_land_exactly_and_violations_are_rejected_and_kept() {
    let stack = Stack::load();
    let data = sample_data();
    let client = stack.kube_client().await;
    stack.kubectl_ok(&[
        "apply",
        "--server-side",
        "--force-conflicts",
        "-f",
        Stack::repo_dir().join("crds").to_str().unwrap(),
    ]);
    let operator = OperatorProcess::start(env!("CARGO_BIN_EXE_mysimbdp-operator").as_ref(), &stack, &[]);
    let tenants: Api<Tenant> = Api::all(client.clone());
    reset(&stack, &tenants, &[A, STRICT]).await;
    let ledger = common::ledger(&stack).await;

    let samples = Stack::repo_dir().join("tenant-samples/acme-air");
    let fixtures = Stack::repo_dir().join("operator/tests/fixtures");
    let path = |p: std::path::PathBuf| p.to_string_lossy().into_owned();
    stack.kubectl_ok(&[
        "apply",
        "-f",
        &path(samples.join("tenant.yaml")),
        "-f",
        &path(fixtures.join("strict-air-tenant.yaml")),
    ]);
    wait_ready(&tenants, A).await;
    wait_ready(&tenants, STRICT).await;
    // Apps live in the tenants' namespaces, which exist once the tenants are Ready.
    for app in ["batch-airlines.yaml", "batch-planes.yaml", "batch-flights.yaml"] {
        stack.kubectl_ok(&["apply", "-f", &path(samples.join(app))]);
    }
    stack.kubectl_ok(&["apply", "-f", &path(fixtures.join("strict-air-app.yaml"))]);
    let staging = &operator.staging_dir;

    // Reference files first: the flights app names carriers from the airlines collection.
    for name in ["airlines.csv", "planes.csv"] {
        stage(staging, A, name, &std::fs::read(data.join(name)).unwrap());
    }
    settled(&ledger, A, &["airlines.csv", "planes.csv"], INGEST_TIMEOUT).await;
    let months: Vec<String> = (1..=12).map(|m| format!("flights_2013_{m:02}.csv")).collect();
    for name in &months {
        stage(staging, A, name, &std::fs::read(data.join(name)).unwrap());
    }

    // Meanwhile the strict tenant gets three good files, then one of every violation.
    let good = |n: u32| format!("carrier,name\nZ{n},Zed Air {n}\nY{n},Why Air {n}\n").into_bytes();
    for n in 1..=3 {
        stage(staging, STRICT, &format!("ok_{n}.csv"), &good(n));
    }
    let ok: Vec<String> = (1..=3).map(|n| format!("ok_{n}.csv")).collect();
    let ok_names: Vec<&str> = ok.iter().map(String::as_str).collect();
    let accepted = settled(&ledger, STRICT, &ok_names, INGEST_TIMEOUT).await;
    assert!(accepted.iter().all(|f| f.status == FileStatus::Ingested), "{accepted:#?}");

    let mut big = b"carrier,name\n".to_vec();
    big.resize(100 * 1024, b'x');
    let violations: Vec<(&str, Vec<u8>, &str)> = vec![
        ("big.csv", big, "is 100.0 KiB (102400 bytes); tenant `strict-air` allows at most 64.0 KiB per file"),
        (
            "lines.csv",
            b"{\"carrier\":\"Q\",\"name\":\"Q Air\"}\n".to_vec(),
            "is JsonLines by its content; tenant `strict-air` accepts `Csv`",
        ),
        ("columns.csv", b"carrier,title\nQ,Q Air\n".to_vec(), "lacks the required field(s) `name`"),
        ("corrupt.csv", vec![0x43, 0x41, 0x00, 0xff, 0xfe, 0x00, 0x01], "is not a data file"),
        ("copy.csv", good(1), "has the same content as `ok_1.csv`"),
        ("Bad Name.csv", good(7), "does not match tenant `strict-air`'s filename pattern"),
        ("ok_4.csv", good(4), "has already had 3 files accepted today (UTC), its daily limit"),
    ];
    for (name, content, _) in &violations {
        stage(staging, STRICT, name, content);
    }
    let names: Vec<&str> = violations.iter().map(|(n, ..)| *n).collect();
    let rejected = settled(&ledger, STRICT, &names, INGEST_TIMEOUT).await;
    for (name, content, expected) in &violations {
        let record = rejected.iter().find(|f| f.name == *name).unwrap();
        let reason = record.reason.as_deref().unwrap_or_default();
        assert_eq!(record.status, FileStatus::Rejected, "{name}: {reason}");
        assert!(reason.contains(expected), "{name}: {reason:?} lacks {expected:?}");
        let kept = staging.join(STRICT).join("rejected").join(&record.id).join(name);
        assert_eq!(&std::fs::read(&kept).expect("the rejected file is kept"), content, "{name} is kept intact");
        let beside = std::fs::read_to_string(kept.with_file_name(format!("{name}.reason"))).expect("reason file");
        assert_eq!(beside, reason, "the reason beside the file is the ledger's");
    }

    // Tenant A: every month ingested, documents = rows, exactly.
    let month_names: Vec<&str> = months.iter().map(String::as_str).collect();
    let files = settled(&ledger, A, &month_names, INGEST_TIMEOUT).await;
    let mut rows = 0;
    for file in &files {
        let expected = data_rows(&data.join(&file.name));
        assert_eq!(file.status, FileStatus::Ingested, "{}: {:?}", file.name, file.reason);
        assert_eq!(file.records, Some(expected as i64), "{}: the platform counted the rows", file.name);
        assert_eq!(file.rows_written, Some(expected as i64), "{}: the app stored every row", file.name);
        assert!(staging.join(A).join("ingested").join(&file.id).join(&file.name).is_file(), "{} filed", file.name);
        rows += expected;
    }
    assert_eq!(rows, 336_776);
    let db = stack.coredms_admin().await.database(&TenantNames::new(A, None).database);
    let flights = db.collection::<Document>("flights").count_documents(doc! {}).await.unwrap();
    assert_eq!(flights, rows, "documents in acme_air.flights = rows in the monthly files");
    assert_eq!(
        db.collection::<Document>("airlines").count_documents(doc! {}).await.unwrap(),
        data_rows(&data.join("airlines.csv"))
    );
    assert_eq!(
        db.collection::<Document>("planes").count_documents(doc! {}).await.unwrap(),
        data_rows(&data.join("planes.csv"))
    );
    assert!(std::fs::read_dir(staging.join(A).join("incoming")).unwrap().next().is_none(), "incoming/ is empty");

    // The statistics the tenant API serves (kubectl mysimbdp stats), from the same ledger.
    let recorded = ledger.files(doc! { "tenant": A }).await.unwrap();
    let (per_tenant, _) = mysimbdp_operator::batch::stats::compute(&recorded);
    let stats = per_tenant.iter().find(|s| s.tenant == A).expect("statistics of tenant A");
    eprintln!("{stats:?}");
    let all_rows = rows + data_rows(&data.join("airlines.csv")) + data_rows(&data.join("planes.csv"));
    assert_eq!(stats.rows, all_rows, "documents stored, as the statistics count them");
    assert_eq!(stats.ingested, 14, "twelve months, airlines and planes");

    // Offboard what the test made, so that no later operator runs its apps.
    reset(&stack, &tenants, &[A, STRICT]).await;
}
