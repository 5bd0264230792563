//! Fakes for unit tests of the controllers' failure paths: an API server that accepts what it
//! is sent and records it, and adapters (Kafka, coredms) that answer as a healthy system or as
//! one that is down. Integration tests use the real systems instead.

use std::{
    collections::BTreeMap,
    convert::Infallible,
    sync::{Arc, Mutex},
};

use async_trait::async_trait;
use http::{Request, Response, StatusCode};
use kube::client::Body;
use serde_json::{Value, json};

use crate::{
    batch::ledger::Ledger,
    context::{AppEndpoints, Context},
    coredms::{AppAuth, CoreDmsAdmin, CoreDmsError},
    kafka::{ByteRates, KafkaAdmin, KafkaAdminError, PrefixedAllow, TopicSpec, TopicState},
    metrics::Metrics,
    secret::SecretString,
    staging::ObjectStaging,
    tenant::plan::Platform,
};

/// One request the fake API server received.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// `GET`, `PATCH`, `POST`...
    pub method: String,
    /// The path, e.g. `/apis/mysimbdp.io/v1alpha1/tenants/acme/status`.
    pub path: String,
    /// The JSON body, or null.
    pub body: Value,
}

/// An API server that knows the objects it is given, answers a GET of anything else with 404,
/// takes every PATCH and POST (answering with the object as patched), and records every
/// request.
#[derive(Clone, Default)]
pub struct FakeApiServer {
    objects: Arc<Mutex<BTreeMap<String, Value>>>,
    /// Every request, in order.
    pub requests: Arc<Mutex<Vec<Recorded>>>,
}

impl FakeApiServer {
    /// Knows `object` at `path` (without `/status`).
    pub fn with(self, path: &str, object: Value) -> Self {
        self.objects.lock().unwrap().insert(path.to_owned(), object);
        self
    }

    /// A client whose every request this server answers.
    pub fn client(&self) -> kube::Client {
        let server = self.clone();
        let service = tower::service_fn(move |request: Request<Body>| {
            let server = server.clone();
            async move { Ok::<_, Infallible>(server.answer(request).await) }
        });
        kube::Client::new(service, "default")
    }

    /// The bodies of the requests with `method` whose path ends with `suffix`.
    pub fn bodies(&self, method: &str, suffix: &str) -> Vec<Value> {
        let requests = self.requests.lock().unwrap();
        requests.iter().filter(|r| r.method == method && r.path.ends_with(suffix)).map(|r| r.body.clone()).collect()
    }

    async fn answer(&self, request: Request<Body>) -> Response<Body> {
        let method = request.method().to_string();
        let path = request.uri().path().to_owned();
        let bytes = request.into_body().collect_bytes().await.unwrap_or_default();
        let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        self.requests.lock().unwrap().push(Recorded { method: method.clone(), path: path.clone(), body: body.clone() });
        let base = path.strip_suffix("/status").unwrap_or(&path).to_owned();
        let (status, answer) = match method.as_str() {
            "GET" => match self.objects.lock().unwrap().get(&base) {
                Some(object) => (StatusCode::OK, object.clone()),
                None => (StatusCode::NOT_FOUND, not_found(&base)),
            },
            "PATCH" | "PUT" | "POST" => {
                let mut objects = self.objects.lock().unwrap();
                let mut object = objects.get(&base).cloned().unwrap_or_else(|| json!({}));
                merge(&mut object, &body);
                object["metadata"]["resourceVersion"] = json!("2");
                if method != "POST" {
                    objects.insert(base, object.clone());
                }
                (if method == "POST" { StatusCode::CREATED } else { StatusCode::OK }, object)
            }
            _ => (StatusCode::OK, json!({ "kind": "Status", "apiVersion": "v1", "status": "Success" })),
        };
        Response::builder()
            .status(status)
            .header("content-type", "application/json")
            .body(Body::from(serde_json::to_vec(&answer).unwrap_or_default()))
            .unwrap_or_else(|_| Response::new(Body::from(Vec::new())))
    }
}

fn not_found(path: &str) -> Value {
    json!({ "kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404,
            "message": format!("{path} not found") })
}

/// Merges `patch` into `object` (JSON merge, objects recursively).
fn merge(object: &mut Value, patch: &Value) {
    match (object, patch) {
        (Value::Object(object), Value::Object(patch)) => {
            for (key, value) in patch {
                merge(object.entry(key.clone()).or_insert(Value::Null), value);
            }
        }
        (object, patch) => *object = patch.clone(),
    }
}

/// Kafka administration that succeeds (an empty cluster), or fails every call as a broker
/// that cannot be reached.
#[derive(Default)]
pub struct FakeKafka {
    /// Every call fails.
    pub down: bool,
}

impl FakeKafka {
    fn check(&self) -> Result<(), KafkaAdminError> {
        if self.down {
            return Err(KafkaAdminError::Connect {
                bootstrap: "kafka.test:9092".into(),
                source: std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "connection refused"),
            });
        }
        Ok(())
    }
}

#[async_trait]
impl KafkaAdmin for FakeKafka {
    async fn scram_user_exists(&self, _: &str) -> Result<bool, KafkaAdminError> {
        self.check().map(|()| false)
    }
    async fn upsert_scram_user(&self, _: &str, _: &SecretString) -> Result<(), KafkaAdminError> {
        self.check()
    }
    async fn delete_scram_user(&self, _: &str) -> Result<(), KafkaAdminError> {
        self.check()
    }
    async fn acls_of(&self, _: &str) -> Result<Vec<PrefixedAllow>, KafkaAdminError> {
        self.check().map(|()| Vec::new())
    }
    async fn create_acls(&self, _: &[PrefixedAllow]) -> Result<(), KafkaAdminError> {
        self.check()
    }
    async fn delete_acls(&self, _: &[PrefixedAllow]) -> Result<(), KafkaAdminError> {
        self.check()
    }
    async fn quotas_of(&self, _: &str) -> Result<ByteRates, KafkaAdminError> {
        self.check().map(|()| ByteRates::default())
    }
    async fn set_quotas(&self, _: &str, _: ByteRates) -> Result<(), KafkaAdminError> {
        self.check()
    }
    async fn topics_with_prefix(&self, _: &str) -> Result<Vec<TopicState>, KafkaAdminError> {
        self.check().map(|()| Vec::new())
    }
    async fn create_topic(&self, _: &TopicSpec) -> Result<(), KafkaAdminError> {
        self.check()
    }
    async fn add_partitions(&self, _: &str, _: i32) -> Result<(), KafkaAdminError> {
        self.check()
    }
    async fn set_topic_configs(&self, _: &str, _: &BTreeMap<String, String>) -> Result<(), KafkaAdminError> {
        self.check()
    }
    async fn delete_topics(&self, _: &[String]) -> Result<(), KafkaAdminError> {
        self.check()
    }
}

/// coredms administration that succeeds, or fails every call as a server that cannot be
/// reached.
#[derive(Default)]
pub struct FakeCoreDms {
    /// Every call fails.
    pub down: bool,
}

impl FakeCoreDms {
    fn check(&self, database: &str) -> Result<(), CoreDmsError> {
        if self.down {
            let refused = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "connection refused");
            return Err(CoreDmsError::Mongo {
                operation: "connect",
                database: database.to_owned(),
                source: mongodb::error::Error::from(refused),
            });
        }
        Ok(())
    }
}

#[async_trait]
impl CoreDmsAdmin for FakeCoreDms {
    async fn ensure_tenant_database(
        &self,
        database: &str,
        _: &str,
        _: &SecretString,
        _: bool,
    ) -> Result<(), CoreDmsError> {
        self.check(database)
    }
    async fn user_exists(&self, user: &str) -> Result<bool, CoreDmsError> {
        self.check(user).map(|()| true)
    }
    async fn drop_user(&self, user: &str) -> Result<(), CoreDmsError> {
        self.check(user)
    }
    async fn drop_database(&self, database: &str) -> Result<(), CoreDmsError> {
        self.check(database)
    }
    async fn database_size(&self, database: &str) -> Result<u64, CoreDmsError> {
        self.check(database).map(|()| 0)
    }
    fn app_auth(&self, _: &str) -> AppAuth {
        AppAuth { mechanism: Some("PLAIN".into()), source: "$external".into() }
    }
}

/// A platform with room for the test tenants.
pub fn platform() -> Platform {
    Platform {
        max_cpu: 64.0,
        max_memory: 1e12,
        max_partitions: 100,
        max_storage: 1e12,
        default_app_cpu: "500m".parse().expect("a quantity"),
        default_app_memory: "256Mi".parse().expect("a quantity"),
        egress: Vec::new(),
        platform_topic_partitions: 1,
        staging_claim: false,
        owner_role: mysimbdp_api::constants::TENANT_OWNER_ROLE.into(),
        viewer_role: mysimbdp_api::constants::TENANT_VIEWER_ROLE.into(),
    }
}

/// A context over the fake API server and adapters, a staging store in a fresh folder, and a
/// ledger on a coredms address where nothing listens (every ledger call fails fast).
pub fn context(api: &FakeApiServer, kafka: FakeKafka, coredms: FakeCoreDms) -> Arc<Context> {
    let client = api.client();
    let folder = std::env::temp_dir().join(format!("mysimbdp-test-{}", rand::random::<u64>()));
    let staging = ObjectStaging::open(&format!("file://{}", folder.display())).expect("a staging folder");
    let options = mongodb::options::ClientOptions::builder()
        .hosts(vec![mongodb::options::ServerAddress::Tcp { host: "127.0.0.1".into(), port: Some(1) }])
        .server_selection_timeout(std::time::Duration::from_millis(100))
        .build();
    let mongo = mongodb::Client::with_options(options).expect("a client (it connects lazily)");
    let platform_db = mongo.database("mysimbdp");
    Arc::new(Context {
        recorder: kube::runtime::events::Recorder::new(client.clone(), "mysimbdp-test".into()),
        client,
        kafka: Arc::new(kafka),
        coredms: Arc::new(coredms),
        staging: Arc::new(staging),
        platform: platform(),
        endpoints: AppEndpoints {
            kafka_bootstrap: "kafka.test:9092".into(),
            kafka_security_protocol: "SASL_PLAINTEXT".into(),
            kafka_sasl_mechanism: "SCRAM-SHA-512".into(),
            kafka_ssl_ca_pem: None,
            coredms_url: "mongodb://coredms.test:27017/".into(),
        },
        metrics: Arc::new(Metrics::default()),
        ledger: Ledger::attach(&platform_db),
        platform_db,
    })
}
