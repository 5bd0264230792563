//! Nimbus Weather's batch app against the local stack's coredms: the real
//! `nimbus-stations-ingest` run twice on the real `stations.jsonl`, as the platform runs it.
//! Every station is stored once; the second run finds them all already written.

use std::process::Command;

use mysimbdp_e2e::{Stack, sample_data, unique};
use mysimbdp_ingest_sdk::{
    bson::{Document, doc},
    contract::{Format, InputFile, RunResult, env},
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stations_are_stored_once_however_often_the_file_is_ingested() {
    let stack = Stack::load();
    let database = unique("it_stations").replace('-', "_");
    let dir = std::env::temp_dir().join(unique("it-stations"));
    std::fs::create_dir_all(&dir).unwrap();
    let file = sample_data().join("stations.jsonl");
    let lines = std::fs::read_to_string(&file).unwrap().lines().count() as u64;
    let input = vec![InputFile {
        url: format!("file://{}", file.display()),
        name: "stations.jsonl".into(),
        format: Format::JsonLines,
        bytes: std::fs::metadata(&file).unwrap().len(),
        sha256: String::new(),
    }];
    let run = |attempt: u32| -> (i32, RunResult) {
        let result_file = dir.join(format!("result-{attempt}.json"));
        let status = Command::new(env!("CARGO_BIN_EXE_nimbus-stations-ingest"))
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env(env::TENANT, "nimbus-weather")
            .env(env::APP, "stations")
            .env(env::RUN_ID, format!("stations-{attempt}"))
            .env(env::DELIVERY, "EffectivelyOnce")
            .env(env::INPUT, serde_json::to_string(&input).unwrap())
            .env(env::RESULT_FILE, &result_file)
            .env(env::COLLECTION, "stations")
            .env(env::COREDMS_URL, stack.var("MYSIMBDP_COREDMS_URL"))
            .env(env::COREDMS_USERNAME, stack.var("MYSIMBDP_COREDMS_ADMIN_USER"))
            .env(env::COREDMS_PASSWORD, stack.var("MYSIMBDP_COREDMS_ADMIN_PASSWORD"))
            .env(env::COREDMS_DATABASE, &database)
            .env(env::COREDMS_AUTH_MECHANISM, stack.var("MYSIMBDP_COREDMS_AUTH_MECHANISM"))
            .env(env::COREDMS_AUTH_SOURCE, stack.var("MYSIMBDP_COREDMS_AUTH_SOURCE"))
            .status()
            .expect("the batch app runs");
        let result = serde_json::from_str(&std::fs::read_to_string(&result_file).unwrap()).unwrap();
        (status.code().unwrap_or(-1), result)
    };

    let (code, first) = run(1);
    assert_eq!(code, 0, "{first:?}");
    assert_eq!(
        (first.files[0].rows_read, first.files[0].rows_written, first.files[0].rows_rejected),
        (lines, lines, 0),
        "{first:?}"
    );
    let (code, second) = run(2);
    assert_eq!(code, 0, "{second:?}");
    assert_eq!((second.files[0].rows_written, second.files[0].rows_duplicate), (0, lines));

    let client = stack.coredms_admin().await;
    let stations = client.database(&database).collection::<Document>("stations");
    assert_eq!(stations.count_documents(doc! {}).await.unwrap(), lines);
    let jfk = stations.find_one(doc! { "_id": "JFK" }).await.unwrap().expect("JFK is a station");
    assert_eq!(jfk.get_str("name").unwrap(), "John F Kennedy Intl");
    assert_eq!(jfk.get_document("location").unwrap().get_str("type").unwrap(), "Point");
    client.database(&database).drop().await.unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}
