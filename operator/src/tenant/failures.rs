//! The tenant reconciliation's failure paths, in milliseconds against fakes: with Kafka down,
//! coredms down or the ledger down, the tenant gets the condition that says which part failed
//! and why, the other parts are still set up, the error is returned for a retry, and nothing
//! panics. The same paths against the real servers are in `operator/tests/tenant_lifecycle.rs`.

use std::sync::Arc;

use mysimbdp_api::{Tenant, constants::TENANT_FINALIZER};
use serde_json::{Value, json};

use crate::testing::{FakeApiServer, FakeCoreDms, FakeKafka, context};

const TENANT: &str = "acme-air";
const TENANT_PATH: &str = "/apis/mysimbdp.io/v1alpha1/tenants/acme-air";

fn tenant() -> Value {
    json!({
        "apiVersion": "mysimbdp.io/v1alpha1",
        "kind": "Tenant",
        "metadata": { "name": TENANT, "uid": "uid-1", "generation": 1, "finalizers": [TENANT_FINALIZER] },
        "spec": { "agreement": {
            "files": { "formats": ["Csv"], "maxFileSize": "1Mi", "maxFilesPerDay": 10, "maxBytesPerDay": "10Mi" },
            "compute": { "cpu": "1", "memory": "1Gi" },
            "kafka": { "producerByteRate": "1Mi", "consumerByteRate": "1Mi" },
            "coredms": { "storageQuota": "1Gi" }
        } }
    })
}

/// The conditions of the last status the reconciliation wrote, by type: (status, reason, message).
fn conditions(api: &FakeApiServer) -> std::collections::BTreeMap<String, (String, String, String)> {
    let statuses = api.bodies("PATCH", "/tenants/acme-air/status");
    let last = statuses.last().expect("a status was written");
    last["status"]["conditions"]
        .as_array()
        .expect("conditions")
        .iter()
        .map(|c| {
            let text = |k: &str| c[k].as_str().unwrap_or_default().to_owned();
            (text("type"), (text("status"), text("reason"), text("message")))
        })
        .collect()
}

async fn reconcile(kafka: FakeKafka, coredms: FakeCoreDms) -> (FakeApiServer, crate::error::Result<()>) {
    let api = FakeApiServer::default().with(TENANT_PATH, tenant());
    let ctx = context(&api, kafka, coredms);
    let object: Tenant = serde_json::from_value(tenant()).expect("a tenant");
    let result = super::reconcile(Arc::new(object), ctx).await.map(|_| ());
    (api, result)
}

#[tokio::test]
async fn with_everything_up_the_tenant_is_ready() {
    let (api, result) = reconcile(FakeKafka::default(), FakeCoreDms::default()).await;
    result.expect("onboarded");
    let conditions = conditions(&api);
    assert_eq!(conditions["Ready"].0, "True", "{conditions:?}");
    assert_eq!(api.bodies("PATCH", "/secrets/mysimbdp-credentials").len(), 1, "the credentials Secret is applied");
}

#[tokio::test]
async fn kafka_down_fails_kafka_only_and_is_retried() {
    let (api, result) = reconcile(FakeKafka { down: true }, FakeCoreDms::default()).await;
    let error = result.expect_err("the reconciliation fails for a retry");
    assert_eq!(error.category(), "kafka_connect");
    let conditions = conditions(&api);
    let (status, reason, message) = &conditions["KafkaReady"];
    assert_eq!((status.as_str(), reason.as_str()), ("False", "KafkaError"));
    assert!(message.contains("cannot reach Kafka at kafka.test:9092"), "{message}");
    assert_eq!(conditions["CoreDmsReady"].0, "True", "coredms is still set up: {conditions:?}");
    assert_eq!(conditions["NamespaceReady"].0, "True");
    assert_eq!(conditions["Ready"].0, "False");
}

#[tokio::test]
async fn coredms_down_fails_coredms_only_and_is_retried() {
    let (api, result) = reconcile(FakeKafka::default(), FakeCoreDms { down: true }).await;
    let error = result.expect_err("the reconciliation fails for a retry");
    assert_eq!(error.category(), "coredms_mongo");
    let conditions = conditions(&api);
    let (status, reason, message) = &conditions["CoreDmsReady"];
    assert_eq!((status.as_str(), reason.as_str()), ("False", "CoreDmsError"));
    assert!(message.contains("connection refused"), "{message}");
    assert_eq!(conditions["KafkaReady"].0, "True", "Kafka is still set up: {conditions:?}");
    assert_eq!(conditions["CredentialsReady"].0, "False", "{conditions:?}");
}

#[tokio::test]
async fn the_ledger_down_fails_the_usage_refresh_alone() {
    let api = FakeApiServer::default().with(TENANT_PATH, tenant());
    let ctx = context(&api, FakeKafka::default(), FakeCoreDms::default());
    let object: Tenant = serde_json::from_value(tenant()).expect("a tenant");
    super::reconcile(Arc::new(object.clone()), ctx.clone()).await.expect("onboarding needs no ledger");
    let error = super::usage::refresh(&ctx, &object).await.expect_err("the usage needs the ledger");
    assert_eq!(error.category(), "ledger");
    assert!(error.to_string().contains("ledger"), "{error}");
    assert!(api.bodies("PATCH", "/tenants/acme-air/status").iter().all(|b| b["status"].get("usage").is_none()));
}
