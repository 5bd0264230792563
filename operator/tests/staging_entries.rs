//! Staged entries that are not regular files, with the local runtime and a `file://` staging
//! store: a symbolic link to a file outside the tenant's area, a directory and a FIFO, each
//! named as the tenant's app expects, are refused with a reason that says what they are and
//! what to do; the link is moved as a link and its target is never read (its access time,
//! set in the past, is unchanged); the FIFO never blocks the batch manager; a regular file
//! staged beside them is still ingested.

use std::{
    fs::FileTimes,
    time::{Duration, SystemTime},
};

use kube::Api;
use mysimbdp_api::Tenant;
use mysimbdp_e2e::{OperatorProcess, Stack, sample_data, stage};
use mysimbdp_operator::batch::ledger::FileStatus;

mod common;

const TENANT: &str = "entries-air";
const TIMEOUT: Duration = Duration::from_secs(300);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn links_directories_and_fifos_are_refused_and_never_opened() {
    let stack = Stack::load();
    let client = stack.kube_client().await;
    common::install_crds(&stack);
    let operator = OperatorProcess::start(env!("CARGO_BIN_EXE_mysimbdp-operator").as_ref(), &stack, &[]);
    let tenants: Api<Tenant> = Api::all(client.clone());
    common::reset(&stack, &tenants, &[TENANT]).await;
    let ledger = common::ledger(&stack).await;
    let (tenant, app) = common::flights_tenant(TENANT, None, "");
    common::apply(&stack, &tenant);
    common::wait_ready(&tenants, TENANT).await;
    common::apply(&stack, &app);

    // A file of the operator's host, outside every tenant's area, last read two days ago.
    let secret_dir = operator.staging_dir.parent().expect("a folder").join("host");
    std::fs::create_dir_all(&secret_dir).unwrap();
    let secret = secret_dir.join("secret.csv");
    std::fs::write(&secret, "carrier,name\nXX,the host's own data\n").unwrap();
    let long_ago = SystemTime::now() - Duration::from_secs(2 * 24 * 3600);
    std::fs::File::options()
        .write(true)
        .open(&secret)
        .unwrap()
        .set_times(FileTimes::new().set_accessed(long_ago).set_modified(long_ago))
        .unwrap();
    let accessed = std::fs::metadata(&secret).unwrap().accessed().unwrap();

    let incoming = operator.staging_dir.join(TENANT).join("incoming");
    std::fs::create_dir_all(&incoming).unwrap();
    std::os::unix::fs::symlink(&secret, incoming.join("flights_link.csv")).unwrap();
    std::fs::create_dir(incoming.join("flights_folder.csv")).unwrap();
    std::fs::write(incoming.join("flights_folder.csv").join("inside.csv"), "carrier,name\n").unwrap();
    nix::unistd::mkfifo(
        &incoming.join("flights_fifo.csv"),
        nix::sys::stat::Mode::S_IRUSR | nix::sys::stat::Mode::S_IWUSR,
    )
    .unwrap();
    let flights = common::csv_parts(&sample_data().join("flights_2013_01.csv"), 50, 1).remove(0);
    stage(&operator.staging_dir, TENANT, "flights_ok.csv", &flights);

    let names = ["flights_link.csv", "flights_folder.csv", "flights_fifo.csv", "flights_ok.csv"];
    let files = common::settled(&ledger, TENANT, &names, TIMEOUT).await;
    let by_name = |name: &str| files.iter().find(|f| f.name == name).expect("a record");
    for (name, kind) in
        [("flights_link.csv", "a symbolic link"), ("flights_folder.csv", "a directory"), ("flights_fifo.csv", "a FIFO")]
    {
        let record = by_name(name);
        let reason = record.reason.as_deref().unwrap_or_default();
        println!("{name}: {:?}: {reason}", record.status);
        assert_eq!(record.status, FileStatus::Rejected, "{name}");
        assert!(reason.contains(&format!("is {kind}, not a regular file")), "{name}: {reason}");
        assert!(reason.contains("stage the file itself"), "{name}: {reason}");
        let kept = operator.staging_dir.join(TENANT).join("rejected").join(&record.id);
        assert!(std::fs::symlink_metadata(kept.join(name)).is_ok(), "{name} is kept under rejected/");
        let beside = std::fs::read_to_string(kept.join(format!("{name}.reason"))).expect("the reason beside it");
        assert!(beside.contains(kind), "{beside}");
    }
    let link = operator
        .staging_dir
        .join(TENANT)
        .join("rejected")
        .join(&by_name("flights_link.csv").id)
        .join("flights_link.csv");
    assert!(std::fs::symlink_metadata(&link).unwrap().file_type().is_symlink(), "the link was moved as a link");
    assert_eq!(std::fs::metadata(&secret).unwrap().accessed().unwrap(), accessed, "the link's target was read");
    assert_eq!(std::fs::read_to_string(&secret).unwrap(), "carrier,name\nXX,the host's own data\n");
    let ok = by_name("flights_ok.csv");
    assert_eq!(ok.status, FileStatus::Ingested, "{:?}", ok.reason);
    println!("flights_ok.csv beside them: {:?}; the link's target untouched (access time {accessed:?})", ok.status);

    common::reset(&stack, &tenants, &[TENANT]).await;
}
