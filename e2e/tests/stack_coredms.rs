//! The local stack's coredms (FerretDB on PostgreSQL) speaks the MongoDB API to the `mongodb`
//! crate: authenticated inserts, unique indexes and aggregations work; bad credentials do not.

use futures::TryStreamExt;
use mongodb::{
    IndexModel,
    bson::{Bson, Document, doc},
    error::{ErrorKind, WriteFailure},
    options::{IndexOptions, InsertManyOptions},
};
use mysimbdp_e2e::{Stack, unique};

/// Runs `$group` with the given stage, sorted by group key.
async fn aggregate(collection: &mongodb::Collection<Document>, group: Document) -> Vec<Document> {
    collection
        .aggregate([doc! { "$group": group }, doc! { "$sort": { "_id": 1 } }])
        .await
        .expect("aggregate")
        .try_collect()
        .await
        .expect("aggregate results")
}

/// A whole number of a result document, whichever numeric type the server chose for it.
fn integer(doc: &Document, key: &str) -> i64 {
    match doc.get(key) {
        Some(Bson::Int32(n)) => i64::from(*n),
        Some(Bson::Int64(n)) => *n,
        Some(Bson::Double(n)) if n.fract() == 0.0 => *n as i64,
        other => panic!("{key} of {doc} is not a whole number: {other:?}"),
    }
}

#[tokio::test]
async fn documents_are_inserted_indexed_and_aggregated() {
    let stack = Stack::load();
    let client = stack.coredms_admin().await;
    let db = client.database(&unique("it_docs").replace('-', "_"));
    let flights = db.collection::<Document>("flights");

    let docs: Vec<Document> = (0..300)
        .map(|i| {
            let carrier = ["UA", "AA", "DL"][i % 3];
            doc! { "_id": format!("f{i}"), "carrier": carrier, "delay": (i % 7) as i32 }
        })
        .collect();
    let inserted = flights.insert_many(&docs).await.expect("insert_many");
    assert_eq!(inserted.inserted_ids.len(), 300);

    flights
        .create_index(IndexModel::builder().keys(doc! { "carrier": 1, "delay": -1 }).build())
        .await
        .expect("compound index");
    flights
        .create_index(
            IndexModel::builder()
                .keys(doc! { "flight_no": 1 })
                .options(IndexOptions::builder().unique(true).sparse(true).build())
                .build(),
        )
        .await
        .expect("unique index");
    let names = flights.list_index_names().await.expect("index names");
    assert!(names.len() >= 3, "indexes: {names:?}");

    // Re-inserting the same ids unordered fails per document with duplicate keys (code 11000)
    // and leaves the count unchanged: the basis of idempotent ingestion.
    let again =
        flights.insert_many(&docs[..10]).with_options(InsertManyOptions::builder().ordered(false).build()).await;
    match again.map_err(|e| *e.kind) {
        Err(ErrorKind::InsertMany(failure)) => {
            let errors = failure.write_errors.expect("per-document errors");
            assert_eq!(errors.len(), 10);
            assert!(errors.iter().all(|e| e.code == 11000), "codes: {errors:?}");
        }
        Err(ErrorKind::Write(WriteFailure::WriteError(e))) => assert_eq!(e.code, 11000),
        other => panic!("re-inserting existing ids: expected duplicate-key errors, got {other:?}"),
    }
    assert_eq!(flights.count_documents(doc! {}).await.expect("count"), 300);

    // One accumulator per $group: FerretDB 1.24 computes only the first $sum of a $group
    // and returns 0 for the others.
    let per_carrier = aggregate(&flights, doc! { "_id": "$carrier", "flights": { "$sum": 1 } }).await;
    let carriers: Vec<(&str, i64)> =
        per_carrier.iter().map(|d| (d.get_str("_id").unwrap(), integer(d, "flights"))).collect();
    assert_eq!(carriers, vec![("AA", 100), ("DL", 100), ("UA", 100)]);
    let delays = aggregate(&flights, doc! { "_id": "$carrier", "delay": { "$sum": "$delay" } }).await;
    let total_delay: i64 = delays.iter().map(|d| integer(d, "delay")).sum();
    assert_eq!(total_delay, (0..300).map(|i| (i % 7) as i64).sum::<i64>());

    db.drop().await.expect("drop test database");
}

#[tokio::test]
async fn wrong_credentials_are_refused() {
    let stack = Stack::load();
    let client = stack.coredms_client(stack.var("MYSIMBDP_COREDMS_ADMIN_USER"), "not-the-password").await;
    let result = client.database("anything").list_collection_names().await;
    let err = result.expect_err("a wrong password listed collections");
    // FerretDB v1 accepts the PLAIN handshake and checks the password against PostgreSQL on
    // the first command, so the refusal arrives as that command's error.
    let refused = match &*err.kind {
        ErrorKind::Authentication { .. } => true,
        ErrorKind::Command(e) => e.message.contains("password authentication failed"),
        _ => false,
    };
    assert!(refused, "expected the password to be refused, got {err}");
}
