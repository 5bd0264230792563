//! Two tenants' owners, each with a kubeconfig of their own (a client certificate of the
//! cluster's CA, as an identity provider would issue), on the platform installed by its chart
//! (the operator a pod on the real node, staging on S3). Each owner does what a tenant does on
//! its own tenant, and every attempt on the other tenant is refused: Kubernetes objects,
//! staging and the platform's records through the tenant API, the object store, Kafka and
//! coredms. The table of attempts and outcomes is printed.
//!
//! A batch run on the real node reads its own file through the link it was given, and is
//! refused the other tenant's object, bare or with its own link's signature: asserted inside
//! the run, whose exit decides the file's state.

use std::{fmt, process::Command, time::Duration};

use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use mongodb::bson::{Document, doc};
use mysimbdp_api::Tenant;
use mysimbdp_e2e::Stack;
use mysimbdp_operator::{
    batch::ledger::{FileRecord, FileStatus},
    kafka::{ByteRates, KafkaAdmin, TopicSpec, Transport, protocol::ProtocolAdmin},
    secret::SecretString,
    tenant::names::TenantNames,
};
use rdkafka::{
    ClientConfig,
    consumer::{BaseConsumer, Consumer},
    producer::{FutureProducer, FutureRecord},
};

mod common;

/// The tenants: alice owns the first, bob the second.
const A: &str = "iso-air";
const B: &str = "iso-sky";
const PREFIX: &str = "isolation";
const TIMEOUT: Duration = Duration::from_secs(300);

fn tenant_manifest(name: &str, owner: &str) -> String {
    format!(
        "apiVersion: mysimbdp.io/v1alpha1
kind: Tenant
metadata: {{name: {name}}}
spec:
  owners: [{{kind: User, name: {owner}}}]
  agreement:
    files: {{formats: [Csv], filenamePattern: '^[a-z]+_[0-9]+\\.csv$', maxFileSize: 1Mi, maxFilesPerDay: 100, maxBytesPerDay: 100Mi}}
    delivery: AtLeastOnce
    compute: {{cpu: '1', memory: 1Gi, maxConcurrentBatchRuns: 2, maxStreamReplicas: 1}}
    kafka:
      topics: [{{name: events, partitions: 1}}]
      producerByteRate: 1Mi
      consumerByteRate: 1Mi
    coredms: {{storageQuota: 1Gi}}
    retention: {{onOffboarding: Delete}}
"
    )
}

/// A batch app of the toolbox image running `script`, taking files that match `pattern`.
fn shell_app(namespace: &str, name: &str, pattern: &str, toolbox: &str, script: &str, env: &[(&str, &str)]) -> String {
    let script: String = script.lines().map(|l| format!("\n        {l}")).collect();
    let env = if env.is_empty() {
        String::new()
    } else {
        let vars: String = env.iter().map(|(k, v)| format!("\n      - name: {k}\n        value: '{v}'")).collect();
        format!("\n    env:{vars}")
    };
    format!(
        "apiVersion: mysimbdp.io/v1alpha1
kind: BatchIngestApp
metadata: {{name: {name}, namespace: {namespace}}}
spec:
  container:
    image: '{toolbox}'
    command: [sh, -c]
    args:
      - |{script}{env}
    resources: {{cpu: 100m, memory: 32Mi}}
  files: {{pattern: '{pattern}'}}
  target: {{collection: {name}}}
  retry: {{maxAttempts: 1}}
"
    )
}

/// What the reader's run checks, from inside its pod: its own file through its link, then the
/// other tenant's object bare and with the run's own signature. The run's exit is the verdict.
const READER_SCRIPT: &str = r#"fail() { printf '{"error":"%s"}' "$1" >"$MYSIMBDP_RESULT_FILE"; exit 1; }
own=$(printf '%s' "$MYSIMBDP_INPUT" | sed -n 's/.*"url":"\([^"]*\)".*/\1/p')
[ -n "$own" ] || fail "no link in MYSIMBDP_INPUT"
content=$(wget -q -O- "$own") || fail "its own file could not be read through its link"
printf '%s' "$content" | grep -q '^1,own' || fail "its own link served other content"
if wget -q -O- "$OTHER_URL" >/dev/null 2>&1; then fail "the other tenant's object was served bare"; fi
if wget -q -O- "$OTHER_URL?${own#*\?}" >/dev/null 2>&1; then fail "the other tenant's object was served with this run's signature"; fi
printf '{"files":[]}' >"$MYSIMBDP_RESULT_FILE""#;

/// An owner: their kubeconfig and their tenant's credentials (read with that kubeconfig).
struct Actor {
    name: &'static str,
    kubeconfig: String,
    kafka: (String, String),
    coredms: (String, String),
}

/// What an attempt came to.
enum Outcome {
    /// It was done; what it gave.
    Done(String),
    /// The platform refused it; why.
    Refused(String),
    /// It failed for a reason that is not a refusal (a broken test or platform).
    Failed(String),
}

impl Outcome {
    fn of(result: Result<String, String>) -> Self {
        match result {
            Ok(done) => Outcome::Done(done),
            Err(error) if is_refusal(&error) => Outcome::Refused(error),
            Err(error) => Outcome::Failed(error),
        }
    }

    fn word(&self) -> &'static str {
        match self {
            Outcome::Done(_) => "done",
            Outcome::Refused(_) => "refused",
            Outcome::Failed(_) => "FAILED",
        }
    }

    fn detail(&self) -> &str {
        match self {
            Outcome::Done(s) | Outcome::Refused(s) | Outcome::Failed(s) => s,
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let detail: String = self.detail().split_whitespace().collect::<Vec<_>>().join(" ").chars().take(70).collect();
        write!(f, "{} ({detail})", self.word())
    }
}

fn is_refusal(text: &str) -> bool {
    let text = text.to_lowercase();
    [
        "forbidden",
        "unauthorized",
        "not authorized",
        "authorization failed",
        "authorizationfailed",
        "authorization_failed",
        "permission denied",
        "accessdenied",
        "access denied",
        "signaturedoesnotmatch",
        "403",
    ]
    .iter()
    .any(|word| text.contains(word))
}

/// What the other tenant's owner is expected to meet.
#[derive(Clone, Copy, PartialEq)]
enum Other {
    Refused,
    /// Answered, as a documented limit of the store (collection names under FerretDB v1).
    KnownLimit,
}

/// One attempt, made by each owner on the first tenant.
#[derive(Clone, Copy, Debug)]
enum Attempt {
    ListApps,
    CreateApp,
    DeleteApp,
    ReadCredentials,
    ListPods,
    ReadLogs,
    ListEvents,
    ListJobs,
    CreatePod,
    CreateTenant,
    ChangeAgreement,
    Upload,
    ListFiles,
    DownloadRejected,
    Stats,
    Reports,
    Decisions,
    EveryTenantsStats,
    BareObject,
    Produce,
    Consume,
    JoinGroup,
    ListTopics,
    CreateTopic,
    DescribeAcls,
    RaiseQuota,
    TakeOverKafkaUser,
    ProduceReport,
    ReadDeadLetters,
    ReadDocuments,
    WriteDocuments,
    ListCollections,
    DropCollection,
    ReadPlatformDatabase,
}

impl Attempt {
    const ALL: [Attempt; 34] = [
        Attempt::ListApps,
        Attempt::CreateApp,
        Attempt::DeleteApp,
        Attempt::ReadCredentials,
        Attempt::ListPods,
        Attempt::ReadLogs,
        Attempt::ListEvents,
        Attempt::ListJobs,
        Attempt::CreatePod,
        Attempt::CreateTenant,
        Attempt::ChangeAgreement,
        Attempt::Upload,
        Attempt::ListFiles,
        Attempt::DownloadRejected,
        Attempt::Stats,
        Attempt::Reports,
        Attempt::Decisions,
        Attempt::EveryTenantsStats,
        Attempt::BareObject,
        Attempt::Produce,
        Attempt::Consume,
        Attempt::JoinGroup,
        Attempt::ListTopics,
        Attempt::CreateTopic,
        Attempt::DescribeAcls,
        Attempt::RaiseQuota,
        Attempt::TakeOverKafkaUser,
        Attempt::ProduceReport,
        Attempt::ReadDeadLetters,
        Attempt::ReadDocuments,
        Attempt::WriteDocuments,
        Attempt::ListCollections,
        Attempt::DropCollection,
        Attempt::ReadPlatformDatabase,
    ];

    fn area(self) -> &'static str {
        use Attempt::*;
        match self {
            ListApps | CreateApp | DeleteApp | ReadCredentials | ListPods | ReadLogs | ListEvents | ListJobs
            | CreatePod | CreateTenant | ChangeAgreement => "kubernetes",
            Upload | ListFiles | DownloadRejected | Stats | Reports | Decisions | EveryTenantsStats => "tenant API",
            BareObject => "object store",
            Produce | Consume | JoinGroup | ListTopics | CreateTopic | DescribeAcls | RaiseQuota
            | TakeOverKafkaUser | ProduceReport | ReadDeadLetters => "kafka",
            ReadDocuments | WriteDocuments | ListCollections | DropCollection | ReadPlatformDatabase => "coredms",
        }
    }

    /// Whether a tenant's owner may do it on their own tenant (some are the platform team's).
    fn owner_may(self) -> bool {
        use Attempt::*;
        !matches!(
            self,
            CreatePod
                | CreateTenant
                | ChangeAgreement
                | EveryTenantsStats
                | BareObject
                | CreateTopic
                | DescribeAcls
                | RaiseQuota
                | TakeOverKafkaUser
                | ReadPlatformDatabase
        )
    }

    fn other(self, ferretdb: bool) -> Other {
        if ferretdb && matches!(self, Attempt::ListCollections) { Other::KnownLimit } else { Other::Refused }
    }
}

/// What the attempts aim at: the first tenant's things.
struct Target {
    names: TenantNames,
    rejected_id: String,
    ingested_object: String,
    run_pod: String,
}

fn kubectl(stack: &Stack, actor: &Actor, args: &[&str], stdin: Option<&str>) -> Result<String, String> {
    let mut cmd = stack.kubectl();
    cmd.env("KUBECONFIG", &actor.kubeconfig).args(args);
    run(cmd, stdin)
}

fn cli(actor: &Actor, args: &[&str]) -> Result<String, String> {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_kubectl-mysimbdp"));
    cmd.env("KUBECONFIG", &actor.kubeconfig).args(args);
    run(cmd, None)
}

fn run(mut cmd: Command, stdin: Option<&str>) -> Result<String, String> {
    use std::io::Write;
    cmd.stdin(std::process::Stdio::piped()).stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().map_err(|e| format!("cannot start: {e}"))?;
    let mut input = child.stdin.take().expect("stdin is piped");
    input.write_all(stdin.unwrap_or_default().as_bytes()).map_err(|e| e.to_string())?;
    drop(input);
    let output = child.wait_with_output().map_err(|e| e.to_string())?;
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    if output.status.success() { Ok(text.trim().to_owned()) } else { Err(text.trim().to_owned()) }
}

fn kafka_config(stack: &Stack, actor: &Actor) -> ClientConfig {
    let mut config = stack.kafka_config(&actor.kafka.0, &actor.kafka.1);
    config.set("message.timeout.ms", "10000").set("socket.timeout.ms", "10000");
    config
}

async fn produce(stack: &Stack, actor: &Actor, topic: &str) -> Result<String, String> {
    let producer: FutureProducer = kafka_config(stack, actor).create().map_err(|e| e.to_string())?;
    let record = FutureRecord::to(topic).key("probe").payload("{\"probe\":1}");
    match producer.send(record, Duration::from_secs(10)).await {
        Ok(delivery) => Ok(format!("written at offset {}", delivery.offset)),
        Err((error, _)) => Err(error.to_string()),
    }
}

/// Reads one record of `topic` from its start as a member of consumer group `group`.
fn consume(stack: &Stack, actor: &Actor, group: &str, topic: &str) -> Result<String, String> {
    let consumer: BaseConsumer = kafka_config(stack, actor)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .create()
        .map_err(|e| e.to_string())?;
    consumer.subscribe(&[topic]).map_err(|e| e.to_string())?;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while std::time::Instant::now() < deadline {
        match consumer.poll(Duration::from_millis(500)) {
            Some(Ok(message)) => return Ok(format!("read offset {}", rdkafka::Message::offset(&message))),
            Some(Err(error)) => return Err(error.to_string()),
            None => {}
        }
    }
    Err("no record and no error within 30 s".into())
}

fn topics(stack: &Stack, actor: &Actor, prefix: &str) -> Result<String, String> {
    let consumer: BaseConsumer = kafka_config(stack, actor).create().map_err(|e| e.to_string())?;
    let metadata = consumer.fetch_metadata(None, Duration::from_secs(10)).map_err(|e| e.to_string())?;
    let seen: Vec<String> =
        metadata.topics().iter().map(|t| t.name().to_owned()).filter(|t| t.starts_with(prefix)).collect();
    if seen.is_empty() {
        Err(format!("not authorized: no topic under {prefix} is listed"))
    } else {
        Ok(format!("listed {}", seen.join(", ")))
    }
}

async fn kafka_admin(stack: &Stack, actor: &Actor) -> Result<ProtocolAdmin, String> {
    ProtocolAdmin::connect(
        stack.var("MYSIMBDP_KAFKA_BOOTSTRAP"),
        &actor.kafka.0,
        SecretString::from(actor.kafka.1.clone()),
        &Transport::Plaintext,
    )
    .await
    .map_err(|e| e.to_string())
}

async fn coredms(stack: &Stack, actor: &Actor) -> mongodb::Client {
    stack.coredms_client(&actor.coredms.0, &actor.coredms.1).await
}

fn mongo<T>(result: mongodb::error::Result<T>, done: impl FnOnce(T) -> String) -> Result<String, String> {
    result.map(done).map_err(|e| e.to_string())
}

/// Makes `attempt` as `actor` against `target` (the first tenant); `own` names the actor's own
/// tenant, whose consumer group and scratch names the attempts use where they need one.
async fn make(stack: &Stack, attempt: Attempt, actor: &Actor, own: &str, target: &Target) -> Outcome {
    let ns = target.names.namespace.as_str();
    let tenant = target.names.tenant.as_str();
    let database = target.names.database.as_str();
    let events = target.names.topic("events");
    let probe_app = format!(
        "apiVersion: mysimbdp.io/v1alpha1\nkind: BatchIngestApp\nmetadata: {{name: probe-{}, namespace: {ns}}}\n\
         spec:\n  container: {{image: probe, command: [ingest]}}\n  files: {{pattern: 'probe_*.csv'}}\n  target: {{collection: probe}}\n",
        actor.name
    );
    let result = match attempt {
        Attempt::ListApps => kubectl(stack, actor, &["-n", ns, "get", "batchingestapps", "-o", "name"], None),
        Attempt::CreateApp => kubectl(stack, actor, &["create", "-f", "-"], Some(&probe_app)).and_then(|done| {
            kubectl(stack, actor, &["-n", ns, "delete", "batchingestapp", &format!("probe-{}", actor.name)], None)
                .map(|_| done)
        }),
        Attempt::DeleteApp => {
            kubectl(stack, actor, &["-n", ns, "delete", "batchingestapp", "reader", "--dry-run=server"], None)
        }
        Attempt::ReadCredentials => kubectl(
            stack,
            actor,
            &["-n", ns, "get", "secret", "mysimbdp-credentials", "-o", "jsonpath={.data.MYSIMBDP_KAFKA_USERNAME}"],
            None,
        ),
        Attempt::ListPods => kubectl(stack, actor, &["-n", ns, "get", "pods", "-o", "name"], None),
        Attempt::ReadLogs => kubectl(stack, actor, &["-n", ns, "logs", &target.run_pod, "-c", "app"], None)
            .map(|log| format!("{} bytes of log", log.len())),
        Attempt::ListEvents => kubectl(stack, actor, &["-n", ns, "get", "events", "-o", "name"], None)
            .map(|events| format!("{} events", events.lines().count())),
        Attempt::ListJobs => kubectl(stack, actor, &["-n", ns, "get", "jobs", "-o", "name"], None),
        Attempt::CreatePod => kubectl(
            stack,
            actor,
            &["-n", ns, "run", "intruder", "--image", "busybox", "--restart=Never", "--dry-run=server"],
            None,
        ),
        Attempt::CreateTenant => kubectl(
            stack,
            actor,
            &["create", "--dry-run=server", "-f", "-"],
            Some(&tenant_manifest(&format!("{own}-twin"), actor.name)),
        ),
        Attempt::ChangeAgreement => kubectl(
            stack,
            actor,
            &[
                "patch",
                "tenant",
                tenant,
                "--type=merge",
                "--dry-run=server",
                "-p",
                r#"{"spec":{"agreement":{"compute":{"cpu":"8"}}}}"#,
            ],
            None,
        ),
        Attempt::Upload => {
            let file = std::env::temp_dir().join(format!("probe_{}.csv", actor.name));
            std::fs::write(&file, "id,value\n1,probe\n").expect("probe file");
            cli(actor, &["upload", "--tenant", tenant, file.to_str().expect("UTF-8 path")])
        }
        Attempt::ListFiles => cli(actor, &["files", "--tenant", tenant])
            .map(|list| format!("{} files listed", list.lines().count().saturating_sub(1))),
        Attempt::DownloadRejected => {
            let out = std::env::temp_dir().join(format!("isolation-download-{}", actor.name));
            cli(actor, &["download", "--tenant", tenant, &target.rejected_id, "--out", out.to_str().expect("UTF-8")])
        }
        Attempt::Stats => cli(actor, &["stats", "--tenant", tenant]).map(|_| "statistics shown".into()),
        Attempt::Reports => cli(actor, &["reports", "--tenant", tenant]).map(|_| "reports listed".into()),
        Attempt::Decisions => cli(actor, &["decisions", "--tenant", tenant]).map(|_| "decisions listed".into()),
        Attempt::EveryTenantsStats => cli(actor, &["stats"]).map(|_| "every tenant's statistics".into()),
        Attempt::BareObject => {
            let url = format!(
                "{}/{}/{}",
                stack.var("MYSIMBDP_S3_ENDPOINT"),
                stack.var("MYSIMBDP_S3_BUCKET"),
                target.ingested_object
            );
            match ureq::get(&url).call() {
                Ok(response) => Ok(format!("served: {}", response.status())),
                Err(error) => Err(error.to_string()),
            }
        }
        Attempt::Produce => produce(stack, actor, &events).await,
        Attempt::Consume => consume(stack, actor, &format!("{own}.isolation-probe"), &events),
        // The first tenant's consumer group, on a topic of the actor's own.
        Attempt::JoinGroup => consume(stack, actor, &format!("{tenant}.reader"), &format!("{own}.events")),
        Attempt::ListTopics => topics(stack, actor, &target.names.kafka_prefix),
        Attempt::CreateTopic => match kafka_admin(stack, actor).await {
            Ok(admin) => admin
                .create_topic(&TopicSpec { name: target.names.topic("extra"), partitions: 1, retention_ms: 60_000 })
                .await
                .map(|()| "created".into())
                .map_err(|e| e.to_string()),
            Err(error) => Err(error),
        },
        Attempt::DescribeAcls => match kafka_admin(stack, actor).await {
            Ok(admin) => admin
                .acls_of(&target.names.kafka_principal())
                .await
                .map(|acls| format!("{} ACLs", acls.len()))
                .map_err(|e| e.to_string()),
            Err(error) => Err(error),
        },
        Attempt::RaiseQuota => match kafka_admin(stack, actor).await {
            Ok(admin) => admin
                .set_quotas(&actor.kafka.0, ByteRates { producer: Some(1e12), consumer: Some(1e12) })
                .await
                .map(|()| "quota raised".into())
                .map_err(|e| e.to_string()),
            Err(error) => Err(error),
        },
        Attempt::TakeOverKafkaUser => match kafka_admin(stack, actor).await {
            Ok(admin) => admin
                .upsert_scram_user(&target.names.kafka_user, &SecretString::from("taken-over".to_owned()))
                .await
                .map(|()| "password replaced".into())
                .map_err(|e| e.to_string()),
            Err(error) => Err(error),
        },
        Attempt::ProduceReport => produce(stack, actor, &target.names.topic("mysimbdp.reports")).await,
        Attempt::ReadDeadLetters => {
            // A record is put there first (when the actor may), so that there is one to read.
            let _ = produce(stack, actor, &target.names.topic("mysimbdp.dead-letter")).await;
            consume(stack, actor, &format!("{own}.isolation-probe"), &target.names.topic("mysimbdp.dead-letter"))
        }
        Attempt::ReadDocuments => mongo(
            coredms(stack, actor).await.database(database).collection::<Document>("notes").find_one(doc! {}).await,
            |found| format!("read {}", if found.is_some() { "a document" } else { "nothing" }),
        ),
        Attempt::WriteDocuments => mongo(
            coredms(stack, actor)
                .await
                .database(database)
                .collection::<Document>("notes")
                .insert_one(doc! { "by": actor.name })
                .await,
            |_| "written".into(),
        ),
        Attempt::ListCollections => {
            mongo(coredms(stack, actor).await.database(database).list_collection_names().await, |names| {
                format!("names: {}", names.join(", "))
            })
        }
        Attempt::DropCollection => mongo(
            coredms(stack, actor)
                .await
                .database(database)
                .collection::<Document>(&format!("scratch_{}", actor.name.replace('-', "_")))
                .drop()
                .await,
            |()| "dropped".into(),
        ),
        Attempt::ReadPlatformDatabase => mongo(
            coredms(stack, actor).await.database("mysimbdp").collection::<Document>("files").find_one(doc! {}).await,
            |_| "read the platform's ledger".into(),
        ),
    };
    Outcome::of(result)
}

/// An owner's view of their tenant: their kubeconfig, and the credentials Secret read with it.
async fn actor(name: &'static str, tenant: &str) -> Actor {
    let kubeconfig = common::Platform::user(name);
    let kube = kube::Client::try_from(
        kube::Config::from_custom_kubeconfig(
            kube::config::Kubeconfig::read_from(&kubeconfig).expect("the owner's kubeconfig"),
            &Default::default(),
        )
        .await
        .expect("a usable kubeconfig"),
    )
    .expect("a client");
    let secret = Api::<Secret>::namespaced(kube, &format!("tenant-{tenant}"))
        .get("mysimbdp-credentials")
        .await
        .unwrap_or_else(|e| panic!("{name} cannot read their own credentials: {e}"));
    let data = secret.data.expect("credentials");
    let value = |key: &str| String::from_utf8(data[key].0.clone()).expect("UTF-8 credential");
    Actor {
        name,
        kubeconfig,
        kafka: (value("MYSIMBDP_KAFKA_USERNAME"), value("MYSIMBDP_KAFKA_PASSWORD")),
        coredms: (value("MYSIMBDP_COREDMS_USERNAME"), value("MYSIMBDP_COREDMS_PASSWORD")),
    }
}

async fn settled_file(ledger: &mysimbdp_operator::batch::ledger::Ledger, tenant: &str, name: &str) -> FileRecord {
    common::settled(ledger, tenant, &[name], TIMEOUT).await.remove(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_owner_runs_their_tenant_and_nothing_of_the_other() {
    let stack = Stack::load();
    let client = stack.kube_client().await;
    let _platform = common::Platform::install(PREFIX);
    let tenants: Api<Tenant> = Api::all(client.clone());
    common::reset(&stack, &tenants, &[A, B]).await;
    let ledger = common::ledger(&stack).await;
    common::apply(&stack, &format!("{}---\n{}", tenant_manifest(A, "iso-alice"), tenant_manifest(B, "iso-bob")));
    common::wait_ready(&tenants, A).await;
    common::wait_ready(&tenants, B).await;
    let alice = actor("iso-alice", A).await;
    let bob = actor("iso-bob", B).await;
    let (a, b) = (TenantNames::new(A, None), TenantNames::new(B, None));
    let toolbox = stack.var("MYSIMBDP_TOOLBOX_IMAGE");

    // Bob runs an app in his tenant and stages its file, with his own kubeconfig.
    let taker = shell_app(
        &b.namespace,
        "taker",
        "taken_*.csv",
        toolbox,
        "printf '{\"files\":[]}' >\"$MYSIMBDP_RESULT_FILE\"",
        &[],
    );
    kubectl(&stack, &bob, &["apply", "-f", "-"], Some(&taker)).expect("bob applies his app");
    let staged = std::env::temp_dir().join("taken_1.csv");
    std::fs::write(&staged, "id,value\n1,other\n").expect("bob's file");
    cli(&bob, &["upload", "--tenant", B, staged.to_str().expect("UTF-8")]).expect("bob stages his file");
    let taken = settled_file(&ledger, B, "taken_1.csv").await;
    assert_eq!(taken.status, FileStatus::Ingested, "bob's run: {:?}", taken.reason);
    let other_object = format!("{PREFIX}/{B}/ingested/{}/taken_1.csv", taken.id);

    // Alice's run reads its own file and is refused bob's, from inside its pod.
    let other_url =
        format!("{}/{}/{other_object}", stack.var("MYSIMBDP_POD_S3_ENDPOINT"), stack.var("MYSIMBDP_S3_BUCKET"));
    let reader = shell_app(&a.namespace, "reader", "read_*.csv", toolbox, READER_SCRIPT, &[("OTHER_URL", &other_url)]);
    kubectl(&stack, &alice, &["apply", "-f", "-"], Some(&reader)).expect("alice applies her app");
    let mine = std::env::temp_dir().join("read_1.csv");
    std::fs::write(&mine, "id,value\n1,own\n").expect("alice's file");
    let rejected = std::env::temp_dir().join("read_2.txt");
    std::fs::write(&rejected, "not, a, name the agreement allows\n").expect("alice's bad file");
    // A name the store cannot hold is refused with its reason; the files after it are staged.
    let partial = std::env::temp_dir().join("read_3.csv.part");
    std::fs::write(&partial, "id,value\n3,never staged\n").expect("alice's oddly named file");
    let paths = [&mine, &partial, &rejected].map(|p| p.to_str().expect("UTF-8").to_owned());
    let upload = cli(&alice, &["upload", "--tenant", A, &paths[0], &paths[1], &paths[2]]);
    let output = upload.expect_err("an upload with a refused file fails");
    assert!(output.contains("read_3.csv.part") && output.contains("partial upload"), "{output}");
    let read = settled_file(&ledger, A, "read_1.csv").await;
    assert_eq!(
        read.status,
        FileStatus::Ingested,
        "inside the run: {}",
        read.reason.as_deref().unwrap_or("no reason recorded")
    );
    println!(
        "a run of {A} read its own file through its link; {B}'s object was refused to it, bare and with its link's signature"
    );
    let bad = settled_file(&ledger, A, "read_2.txt").await;
    assert_eq!(bad.status, FileStatus::Rejected);
    let pods = stack.kubectl_ok(&["-n", &a.namespace, "get", "pods", "-l", "mysimbdp.io/run", "-o", "name"]);
    let run_pod = pods.lines().next().expect("the reader's run pod").trim_start_matches("pod/").to_owned();
    // Something of alice's to read in her database.
    coredms(&stack, &alice)
        .await
        .database(&a.database)
        .collection::<Document>("notes")
        .insert_one(doc! { "n": 1 })
        .await
        .expect("alice writes her data");
    coredms(&stack, &alice).await.database(&a.database).create_collection("scratch_iso_bob").await.ok();
    coredms(&stack, &alice).await.database(&a.database).create_collection("scratch_iso_alice").await.ok();

    let ferretdb = stack.var("MYSIMBDP_COREDMS_AUTH_MECHANISM") == "PLAIN";
    let target = Target {
        names: a,
        rejected_id: bad.id.clone(),
        ingested_object: format!("{PREFIX}/{A}/ingested/{}/read_1.csv", read.id),
        run_pod,
    };
    let mut rows = Vec::new();
    for attempt in Attempt::ALL {
        // The other tenant first, so that the owner's own attempt finds the target intact.
        let other = make(&stack, attempt, &bob, B, &target).await;
        let own = make(&stack, attempt, &alice, A, &target).await;
        rows.push((attempt, own, other));
    }

    println!("\n| # | area | attempt | {A}'s owner on {A} | {B}'s owner on {A} |\n|---|---|---|---|---|");
    for (i, (attempt, own, other)) in rows.iter().enumerate() {
        println!("| {} | {} | {attempt:?} | {own} | {other} |", i + 1, attempt.area());
    }
    let mut wrong = Vec::new();
    for (attempt, own, other) in &rows {
        let own_ok = match own {
            Outcome::Done(_) => attempt.owner_may(),
            Outcome::Refused(_) => !attempt.owner_may(),
            Outcome::Failed(_) => false,
        };
        let other_ok = matches!(
            (other, attempt.other(ferretdb)),
            (Outcome::Refused(_), _) | (Outcome::Done(_), Other::KnownLimit)
        );
        if !own_ok {
            wrong.push(format!("{attempt:?} by {A}'s owner: {}", own.detail()));
        }
        if !other_ok {
            wrong.push(format!("{attempt:?} by {B}'s owner: {}", other.detail()));
        }
    }
    let refused = rows.iter().filter(|(_, _, other)| matches!(other, Outcome::Refused(_))).count();
    println!("\n{refused} of {} attempts on another tenant refused", rows.len());
    assert!(wrong.is_empty(), "unexpected outcomes:\n{}", wrong.join("\n"));
    assert!(refused >= 20, "at least 20 refusals");

    // Nothing bob tried changed alice's tenant: her Kafka password still works.
    produce(&stack, &alice, &target.names.topic("events")).await.expect("alice's credentials still work");
    common::reset(&stack, &tenants, &[A, B]).await;
}
