//! The writer and the batch runner against the real coredms of the local stack: idempotent
//! writes, and whole runs from input files to the result file and exit code.

use std::{collections::HashMap, path::PathBuf};

use mongodb::bson::{Document, doc};
use mysimbdp_e2e::{Stack, unique};
use mysimbdp_ingest_sdk::{
    batch::{Batch, Outcome},
    config::BatchConfig,
    contract::{Format, InputFile, RunResult, env, exit},
    write::{Counts, Writer, WriterOptions},
};

/// A database of its own for a test; coredms names allow no dashes.
fn test_database(prefix: &str) -> String {
    unique(prefix).replace('-', "_")
}

fn temp_dir(prefix: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(unique(prefix));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rewriting_stores_each_document_once_and_counts_duplicates() {
    let stack = Stack::load();
    let client = stack.coredms_admin().await;
    let database = client.database(&test_database("sdk_writer"));
    let collection = database.collection::<Document>("items");
    let options = WriterOptions { batch_size: 300, in_flight: 2 };

    let mut writer = Writer::start(&collection, options);
    for i in 0..2500 {
        // Two parts, to see the counts kept apart.
        writer.write(usize::from(i >= 2000), &doc! { "_id": i, "n": i }).await.unwrap();
    }
    let counts = writer.finish().await.unwrap();
    assert_eq!(counts, [Counts { written: 2000, duplicate: 0 }, Counts { written: 500, duplicate: 0 }]);

    // An overlapping rewrite, as a retried run does: 1000 already stored, 700 new.
    let mut writer = Writer::start(&collection, options);
    for i in 1500..3200 {
        writer.write(0, &doc! { "_id": i, "n": i }).await.unwrap();
    }
    let counts = writer.finish().await.unwrap();
    assert_eq!(counts, [Counts { written: 700, duplicate: 1000 }]);
    assert_eq!(collection.count_documents(doc! {}).await.unwrap(), 3200);

    database.drop().await.unwrap();
}

struct Run {
    vars: HashMap<&'static str, String>,
    dir: PathBuf,
}

impl Run {
    fn new(stack: &Stack, database: &str, files: &[(&str, Format, &str)]) -> Self {
        let dir = temp_dir("sdk-run");
        let input: Vec<InputFile> = files
            .iter()
            .map(|(name, format, content)| {
                let path = dir.join(name);
                std::fs::write(&path, content).unwrap();
                InputFile {
                    url: format!("file://{}", path.display()),
                    name: (*name).to_owned(),
                    format: *format,
                    bytes: content.len() as u64,
                    sha256: String::new(),
                }
            })
            .collect();
        let vars = [
            (env::TENANT, "acme-air".to_owned()),
            (env::APP, "test".to_owned()),
            (env::RUN_ID, unique("run")),
            (env::DELIVERY, "AtLeastOnce".to_owned()),
            (env::INPUT, serde_json::to_string(&input).unwrap()),
            (env::RESULT_FILE, dir.join("result.json").display().to_string()),
            (env::COLLECTION, "rows".to_owned()),
            (env::COREDMS_URL, stack.var("MYSIMBDP_COREDMS_URL").to_owned()),
            (env::COREDMS_USERNAME, stack.var("MYSIMBDP_COREDMS_ADMIN_USER").to_owned()),
            (env::COREDMS_PASSWORD, stack.var("MYSIMBDP_COREDMS_ADMIN_PASSWORD").to_owned()),
            (env::COREDMS_DATABASE, database.to_owned()),
            (env::COREDMS_AUTH_MECHANISM, stack.var("MYSIMBDP_COREDMS_AUTH_MECHANISM").to_owned()),
            (env::COREDMS_AUTH_SOURCE, stack.var("MYSIMBDP_COREDMS_AUTH_SOURCE").to_owned()),
        ]
        .into_iter()
        .collect();
        Self { vars, dir }
    }

    fn config(&self) -> BatchConfig {
        BatchConfig::from_lookup(|name| self.vars.get(name).cloned()).unwrap()
    }

    /// Runs with the test app: `_id` from column/member `id`, `value` must be a number.
    async fn run(&self) -> (Outcome, RunResult) {
        let batch = Batch::new(self.config())
            .await
            .unwrap()
            .require_fields(["id"])
            .writer_options(WriterOptions { batch_size: 2, in_flight: 2 });
        let outcome = batch
            .run(|file, record| {
                let id = record.get("id").ok_or("no id")?;
                let value = match record.json() {
                    Some(object) => object.get("value").and_then(|v| v.as_f64()),
                    None => record.get("value").and_then(|v| v.parse::<f64>().ok()),
                };
                let value = value.ok_or_else(|| format!("value is not a number: {:?}", record.get("value")))?;
                Ok(doc! { "_id": id, "value": value, "file": &file.name, "line": record.line() as i64 })
            })
            .await;
        let text = std::fs::read_to_string(self.dir.join("result.json")).unwrap();
        assert!(text.len() <= 4096);
        (outcome, serde_json::from_str(&text).unwrap())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_ingests_its_files_and_a_retry_stores_nothing_twice() {
    let stack = Stack::load();
    let database = test_database("sdk_run");
    let csv = "id,value\na,1\nb,NA\nc,\"3.5\"\nd,4,extra\ne,5\n";
    let jsonl = "{\"id\":\"f\",\"value\":6}\n{\"id\":\"g\",\"value\":\"x\"}\nnot json\n{\"id\":\"h\",\"value\":8}\n";
    let run = Run::new(&stack, &database, &[("a.csv", Format::Csv, csv), ("b.jsonl", Format::JsonLines, jsonl)]);

    let (outcome, result) = run.run().await;
    assert_eq!(outcome.code, exit::OK, "{result:?}");
    assert_eq!(outcome.result, result, "the result file holds the outcome");
    assert_eq!(result.error, None);
    let counts: Vec<_> = result
        .files
        .iter()
        .map(|f| (f.name.as_str(), f.rows_read, f.rows_written, f.rows_duplicate, f.rows_rejected))
        .collect();
    assert_eq!(counts, [("a.csv", 5, 3, 0, 2), ("b.jsonl", 4, 2, 0, 2)]);
    assert_eq!(result.files[0].bytes, csv.len() as u64);
    let rejected: Vec<_> = result.rejections.iter().map(|r| (r.file.as_str(), r.line)).collect();
    assert_eq!(rejected, [("a.csv", 3), ("a.csv", 5), ("b.jsonl", 2), ("b.jsonl", 3)]);
    assert!(result.rejections[1].reason.contains("3 fields where the header has 2"), "{:?}", result.rejections);

    let client = stack.coredms_admin().await;
    let rows = client.database(&database).collection::<Document>("rows");
    assert_eq!(rows.count_documents(doc! {}).await.unwrap(), 5);
    let c = rows.find_one(doc! { "_id": "c" }).await.unwrap().unwrap();
    assert_eq!((c.get_f64("value").unwrap(), c.get_i64("line").unwrap()), (3.5, 4));

    // The same run again, as after a lost result: everything is already there.
    let (outcome, result) = run.run().await;
    assert_eq!(outcome.code, exit::OK);
    assert_eq!((result.rows_read(), result.rows_stored(), result.rows_rejected()), (9, 5, 4));
    assert!(result.files.iter().all(|f| f.rows_written == 0), "{result:?}");
    assert_eq!(rows.count_documents(doc! {}).await.unwrap(), 5);

    client.database(&database).drop().await.unwrap();
    std::fs::remove_dir_all(&run.dir).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_and_unreachable_coredms_answer_with_their_exit_codes() {
    let stack = Stack::load();
    let database = test_database("sdk_bad");
    let mut run = Run::new(
        &stack,
        &database,
        &[("good.csv", Format::Csv, "id,value\na,1\n"), ("bad.csv", Format::Csv, "key,value\na,1\n")],
    );
    // A file the platform listed but that is gone.
    let mut input: Vec<InputFile> = serde_json::from_str(&run.vars[env::INPUT]).unwrap();
    input.push(InputFile {
        url: format!("file://{}/gone.csv", run.dir.display()),
        name: "gone.csv".into(),
        ..input[0].clone()
    });
    run.vars.insert(env::INPUT, serde_json::to_string(&input).unwrap());

    let (outcome, result) = run.run().await;
    assert_eq!(outcome.code, exit::BAD_INPUT, "{result:?}");
    let error = result.error.clone().unwrap();
    assert!(error.contains("bad.csv: missing column(s) id in the header"), "{error}");
    assert!(error.contains("gone.csv: cannot open"), "{error}");
    assert_eq!(result.rows_stored(), 0, "a run with a bad file ingests nothing");

    // Nothing listens on port 1: a transient failure, to be retried.
    run.vars.insert(env::COREDMS_URL, "mongodb://127.0.0.1:1/?serverSelectionTimeoutMS=300".into());
    let (outcome, result) = run.run().await;
    assert_eq!(outcome.code, exit::RETRY, "{result:?}");
    assert!(result.error.unwrap().contains("not reachable"));

    stack.coredms_admin().await.database(&database).drop().await.unwrap();
    std::fs::remove_dir_all(&run.dir).unwrap();
}
