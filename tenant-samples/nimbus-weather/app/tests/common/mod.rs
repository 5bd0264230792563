//! Support of Nimbus Weather's stream tests against the local stack: a throw-away tenant
//! (topics and a database with unique names, used with the admin's credentials), the contract
//! environment of a replica, the real app, sidecar and publisher processes, and readers of what
//! landed in coredms and Kafka.

#![allow(dead_code)]

pub mod broker;

use std::{
    collections::{BTreeSet, HashMap},
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    time::{Duration, Instant},
};

use futures::TryStreamExt;
use mysimbdp_e2e::{Stack, sample_data, unique, wait_for};
use mysimbdp_ingest_sdk::{
    bson::{Document, doc},
    contract::{Report, env},
    rdkafka::{
        Message, Offset, TopicPartitionList,
        admin::{AdminClient, AdminOptions, NewTopic, TopicReplication},
        client::DefaultClientContext,
        consumer::{BaseConsumer, Consumer},
        message::OwnedMessage,
    },
    read::Records,
};
use nimbus_weather::{feed, observation};

/// Rows of `weather.csv` where each station's observations start (the file is sorted by
/// station: EWR, JFK, LGA).
pub const STATION_STARTS: [u64; 3] = [0, 8703, 17409];

/// A tenant of its own for one test.
pub struct Tenant {
    pub stack: Stack,
    pub coredms: mysimbdp_ingest_sdk::mongodb::Client,
    pub name: String,
    pub prefix: String,
    pub topic: String,
    pub dead_letter: String,
    pub reports: String,
    pub group: String,
    pub database: String,
    pub dir: PathBuf,
}

impl Tenant {
    /// Creates the tenant's topics (observations with `partitions` partitions) and names its
    /// database. The sidecar is built first, so that no build runs while a test's publishers
    /// are on the clock.
    pub async fn create(name: &str, partitions: i32) -> Self {
        tokio::task::block_in_place(sidecar_binary);
        let stack = Stack::load();
        let name = unique(name);
        let prefix = format!("{name}.");
        let coredms = stack.coredms_admin().await;
        let tenant = Self {
            coredms,
            topic: format!("{prefix}observations"),
            dead_letter: format!("{prefix}mysimbdp.dead-letter"),
            reports: format!("{prefix}mysimbdp.reports"),
            group: format!("{prefix}weather-ingest"),
            database: name.replace('-', "_"),
            dir: std::env::temp_dir().join(&name),
            prefix,
            name,
            stack,
        };
        std::fs::create_dir_all(&tenant.dir).expect("test folder");
        let admin: AdminClient<DefaultClientContext> =
            tenant.stack.kafka_admin_config().create().expect("admin client");
        let topics = [
            NewTopic::new(&tenant.topic, partitions, TopicReplication::Fixed(1)),
            NewTopic::new(&tenant.dead_letter, 1, TopicReplication::Fixed(1)),
            NewTopic::new(&tenant.reports, 1, TopicReplication::Fixed(1)),
        ];
        for result in admin.create_topics(&topics, &AdminOptions::new()).await.expect("create_topics") {
            result.unwrap_or_else(|(topic, code)| panic!("creating topic {topic}: {code}"));
        }
        tenant
    }

    /// Deletes the topics, the database and the logs (a test that fails keeps them all).
    pub async fn remove(&self) {
        let admin: AdminClient<DefaultClientContext> = self.stack.kafka_admin_config().create().expect("admin client");
        let _ = admin.delete_topics(&[&self.topic, &self.dead_letter, &self.reports], &AdminOptions::new()).await;
        let _ = self.coredms.database(&self.database).drop().await;
        let _ = std::fs::remove_dir_all(&self.dir);
    }

    /// The environment the platform gives a replica, with the admin's credentials.
    pub fn replica_env(&self, instance: &str, sidecar_addr: &str, interval_ms: u64) -> Vec<(String, String)> {
        let s = &self.stack;
        [
            (env::TENANT, self.name.as_str()),
            (env::APP, "observations"),
            (env::INSTANCE, instance),
            (env::DELIVERY, "EffectivelyOnce"),
            (env::COLLECTION, "observations"),
            (env::COREDMS_URL, s.var("MYSIMBDP_COREDMS_URL")),
            (env::COREDMS_USERNAME, s.var("MYSIMBDP_COREDMS_ADMIN_USER")),
            (env::COREDMS_PASSWORD, s.var("MYSIMBDP_COREDMS_ADMIN_PASSWORD")),
            (env::COREDMS_DATABASE, &self.database),
            (env::COREDMS_AUTH_MECHANISM, s.var("MYSIMBDP_COREDMS_AUTH_MECHANISM")),
            (env::COREDMS_AUTH_SOURCE, s.var("MYSIMBDP_COREDMS_AUTH_SOURCE")),
            (env::KAFKA_BOOTSTRAP, s.var("MYSIMBDP_KAFKA_BOOTSTRAP")),
            (env::KAFKA_SECURITY_PROTOCOL, s.var("MYSIMBDP_KAFKA_SECURITY_PROTOCOL")),
            (env::KAFKA_SASL_MECHANISM, s.var("MYSIMBDP_KAFKA_SASL_MECHANISM")),
            (env::KAFKA_USERNAME, s.var("MYSIMBDP_KAFKA_ADMIN_USER")),
            (env::KAFKA_PASSWORD, s.var("MYSIMBDP_KAFKA_ADMIN_PASSWORD")),
            (env::KAFKA_PREFIX, &self.prefix),
            (env::TOPICS, &self.topic),
            (env::CONSUMER_GROUP, &self.group),
            (env::DEAD_LETTER_TOPIC, &self.dead_letter),
            (env::REPORTS_TOPIC, &self.reports),
            (env::SIDECAR_ADDR, sidecar_addr),
            (env::REPORT_INTERVAL_MS, &interval_ms.to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
    }

    /// Starts the publisher (`nimbus-weather-publish`) with `args`, as a child process.
    pub fn start_publisher(&self, args: &[&str]) -> Process {
        let file = sample_data().join("weather.csv");
        let mut all = vec!["--file".to_owned(), file.display().to_string(), "--topic".to_owned(), self.topic.clone()];
        all.extend(args.iter().map(|a| (*a).to_owned()));
        let env = self.replica_env("publisher", "127.0.0.1:1", 1000);
        Process::start("publisher", env!("CARGO_BIN_EXE_nimbus-weather-publish").as_ref(), &all, &env, &self.dir)
    }

    /// Publishes and waits for the publisher; returns its summary line.
    pub fn publish(&self, args: &[&str]) -> serde_json::Value {
        let mut publisher = self.start_publisher(args);
        let status = publisher.wait(Duration::from_secs(120));
        assert!(status.success(), "the publisher failed ({status}):\n{}", publisher.log_tail());
        publisher.summary()
    }

    /// The documents' ids in coredms.
    pub async fn stored_ids(&self) -> Vec<String> {
        let collection = self.coredms.database(&self.database).collection::<Document>("observations");
        let options =
            mysimbdp_ingest_sdk::mongodb::options::FindOptions::builder().projection(doc! { "_id": 1 }).build();
        let cursor = collection.find(doc! {}).with_options(options).await.expect("find");
        let documents: Vec<Document> = cursor.try_collect().await.expect("read the documents");
        documents.iter().map(|d| d.get_str("_id").expect("string ids").to_owned()).collect()
    }

    /// The number of stored documents.
    pub async fn count(&self) -> u64 {
        let collection = self.coredms.database(&self.database).collection::<Document>("observations");
        collection.count_documents(doc! {}).await.unwrap_or(0)
    }

    /// Messages of the observations topic not yet committed by the app's group.
    pub async fn lag(&self) -> i64 {
        let config = self.stack.kafka_admin_config().set("group.id", &self.group).clone();
        let topic = self.topic.clone();
        tokio::task::spawn_blocking(move || {
            let consumer: BaseConsumer = config.create().expect("consumer");
            let timeout = Duration::from_secs(10);
            let metadata = consumer.fetch_metadata(Some(&topic), timeout).expect("metadata");
            let partitions: Vec<i32> = metadata.topics()[0].partitions().iter().map(|p| p.id()).collect();
            let mut list = TopicPartitionList::new();
            for p in &partitions {
                list.add_partition(&topic, *p);
            }
            let committed = consumer.committed_offsets(list, timeout).expect("committed offsets");
            partitions
                .iter()
                .map(|p| {
                    let (_, high) = consumer.fetch_watermarks(&topic, *p, timeout).expect("watermarks");
                    let done = match committed.find_partition(&topic, *p).map(|e| e.offset()) {
                        Some(Offset::Offset(o)) => o,
                        _ => 0,
                    };
                    high - done
                })
                .sum()
        })
        .await
        .expect("lag task")
    }

    /// Every message now in `topic`, from the start.
    pub async fn read_all(&self, topic: &str) -> Vec<OwnedMessage> {
        let config = self.stack.kafka_admin_config().set("group.id", unique("it-reader")).clone();
        let topic = topic.to_owned();
        tokio::task::spawn_blocking(move || {
            let consumer: BaseConsumer = config.create().expect("consumer");
            let timeout = Duration::from_secs(10);
            let metadata = consumer.fetch_metadata(Some(&topic), timeout).expect("metadata");
            let mut list = TopicPartitionList::new();
            let mut remaining = HashMap::new();
            for partition in metadata.topics()[0].partitions() {
                let (low, high) = consumer.fetch_watermarks(&topic, partition.id(), timeout).expect("watermarks");
                if high > low {
                    remaining.insert(partition.id(), high);
                }
                list.add_partition_offset(&topic, partition.id(), Offset::Beginning).expect("offset");
            }
            consumer.assign(&list).expect("assign");
            let mut messages = Vec::new();
            let deadline = Instant::now() + Duration::from_secs(30);
            while !remaining.is_empty() {
                assert!(Instant::now() < deadline, "reading {topic} took more than 30s");
                if let Some(message) = consumer.poll(Duration::from_millis(200)) {
                    let message = message.expect("consumed message").detach();
                    if remaining.get(&message.partition()).is_some_and(|high| message.offset() + 1 >= *high) {
                        remaining.remove(&message.partition());
                    }
                    messages.push(message);
                }
            }
            messages
        })
        .await
        .expect("reader task")
    }

    /// Every report now on the reports topic, checked to be keyed by the app and to be this
    /// tenant's.
    pub async fn reports(&self) -> Vec<Report> {
        self.read_all(&self.reports)
            .await
            .iter()
            .map(|m| {
                assert_eq!(m.key(), Some(&b"observations"[..]), "reports are keyed by the app");
                let report: Report = serde_json::from_slice(m.payload().expect("a report")).expect("a report's JSON");
                assert_eq!((report.tenant.as_str(), report.app.as_str()), (self.name.as_str(), "observations"));
                report
            })
            .collect()
    }
}

/// What the app makes of published rows: the ids it stores, and the rows it refuses
/// (with the reason), for `--skip skip --limit limit`.
pub struct Expected {
    pub ids: BTreeSet<String>,
    pub refused: Vec<String>,
    pub rows: u64,
}

impl Expected {
    pub fn of(slices: &[(u64, u64)]) -> Self {
        let file = sample_data().join("weather.csv");
        let mut expected = Self { ids: BTreeSet::new(), refused: Vec::new(), rows: 0 };
        for &(skip, limit) in slices {
            let reader = std::fs::File::open(&file).expect("weather.csv");
            let records = Records::csv("weather.csv", reader).expect("weather.csv header");
            for record in records.skip(skip as usize).take(limit as usize) {
                let message = serde_json::Value::Object(feed::message_of_row(&record.expect("a row")));
                expected.rows += 1;
                match observation::wrangle(&message) {
                    Ok((id, _)) => {
                        expected.ids.insert(id);
                    }
                    Err(reason) => expected.refused.push(reason),
                }
            }
        }
        expected
    }
}

/// A child process with its output in a log file; killed when dropped, and its log shown when
/// the test fails.
pub struct Process {
    pub name: String,
    child: Child,
    log: PathBuf,
    exited: Option<ExitStatus>,
}

impl Process {
    pub fn start(name: &str, program: &Path, args: &[String], env: &[(String, String)], dir: &Path) -> Self {
        let log = dir.join(format!("{name}.log"));
        let file = std::fs::OpenOptions::new().create(true).append(true).open(&log).expect("log file");
        let mut command = Command::new(program);
        command
            .args(args)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("RUST_LOG", "info,mysimbdp_ingest_sdk=debug,librdkafka=warn,rdkafka=warn")
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stderr(file.try_clone().expect("log handle"));
        // The publisher's summary is its stdout; the others log to stderr only.
        if name.starts_with("publisher") {
            command.stdout(Stdio::piped());
        } else {
            command.stdout(file);
        }
        let child = command.spawn().unwrap_or_else(|e| panic!("starting {}: {e}", program.display()));
        Self { name: name.to_owned(), child, log, exited: None }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends a signal (`TERM`, `KILL`...).
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill").arg(format!("-{signal}")).arg(self.pid().to_string()).status().expect("kill");
        assert!(status.success(), "kill -{signal} {} failed", self.pid());
    }

    /// Kills it without warning, as a crash would, and reaps it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        self.exited = self.child.wait().ok();
    }

    pub fn is_running(&mut self) -> bool {
        if self.exited.is_some() {
            return false;
        }
        match self.child.try_wait() {
            Ok(None) => true,
            Ok(Some(status)) => {
                self.exited = Some(status);
                false
            }
            Err(_) => false,
        }
    }

    /// Waits until it exits, at most `timeout` (blocking; on a runtime's thread, the runtime
    /// is told so).
    pub fn wait(&mut self, timeout: Duration) -> ExitStatus {
        tokio::task::block_in_place(|| {
            let deadline = Instant::now() + timeout;
            while self.is_running() {
                assert!(
                    Instant::now() < deadline,
                    "{} did not exit within {timeout:?}:\n{}",
                    self.name,
                    self.log_tail()
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        });
        self.exited.expect("exited")
    }

    /// The publisher's summary (its last stdout line).
    pub fn summary(&mut self) -> serde_json::Value {
        let mut out = String::new();
        if let Some(stdout) = self.child.stdout.as_mut() {
            std::io::Read::read_to_string(stdout, &mut out).expect("publisher output");
        }
        let last = out.lines().last().unwrap_or_else(|| panic!("the publisher printed nothing:\n{}", self.log_tail()));
        serde_json::from_str(last).expect("the summary is JSON")
    }

    /// Peak resident memory so far (VmHWM), in KiB.
    pub fn peak_rss_kib(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).ok()?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
    }

    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if self.is_running() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if std::thread::panicking() {
            eprintln!("--- {} ({}) ---\n{}", self.name, self.log.display(), self.log_tail());
        }
    }
}

/// A replica as the platform runs it: the metrics sidecar and the app, with the same
/// environment.
pub struct Replica {
    pub sidecar: Process,
    pub app: Process,
    pub env: Vec<(String, String)>,
}

impl Replica {
    pub fn start(tenant: &Tenant, instance: &str, interval_ms: u64, app_args: &[&str]) -> Self {
        let addr = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port");
        let env = tenant.replica_env(instance, &addr.to_string(), interval_ms);
        let sidecar = Process::start(&format!("{instance}-sidecar"), &sidecar_binary(), &[], &env, &tenant.dir);
        let app = start_app(tenant, &format!("{instance}-app"), &env, app_args);
        Self { sidecar, app, env }
    }

    /// Starts the app again beside the same sidecar, as after a crash.
    pub fn restart_app(&mut self, tenant: &Tenant, name: &str, app_args: &[&str]) {
        self.app = start_app(tenant, name, &self.env, app_args);
    }
}

fn start_app(tenant: &Tenant, name: &str, env: &[(String, String)], args: &[&str]) -> Process {
    let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    Process::start(name, env!("CARGO_BIN_EXE_nimbus-weather-ingest").as_ref(), &args, env, &tenant.dir)
}

/// The `mysimbdp-sidecar` binary of this build, built when needed: it belongs to another
/// package of the workspace, which `cargo test -p nimbus-weather` alone does not build. It is
/// built with the workspace's features, as `cargo build --workspace` builds it, so that after
/// such a build there is nothing to do.
pub fn sidecar_binary() -> PathBuf {
    static BUILT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BUILT
        .get_or_init(|| {
            let app = Path::new(env!("CARGO_BIN_EXE_nimbus-weather-ingest"));
            let profile_dir = app.parent().expect("the binaries' folder");
            let target_dir = profile_dir.parent().expect("the target folder");
            let cargo = std::env::var_os("CARGO").unwrap_or_else(|| env!("CARGO").into());
            let mut build = Command::new(cargo);
            build
                .args(["build", "--quiet", "--workspace", "--bin", "mysimbdp-sidecar"])
                .env("CARGO_TARGET_DIR", target_dir)
                .current_dir(env!("CARGO_MANIFEST_DIR"));
            if profile_dir.file_name().is_some_and(|n| n == "release") {
                build.arg("--release");
            }
            let output = build.output().expect("cargo runs");
            assert!(
                output.status.success(),
                "building mysimbdp-sidecar failed:\n{}",
                String::from_utf8_lossy(&output.stderr)
            );
            let binary = profile_dir.join("mysimbdp-sidecar");
            assert!(binary.is_file(), "{} was not built", binary.display());
            binary
        })
        .clone()
}

/// Waits until coredms holds `count` documents and the app's group has committed everything.
pub async fn wait_all_stored(tenant: &Tenant, count: usize, timeout: Duration) {
    wait_for(&format!("{count} documents stored in {}", tenant.database), timeout, || async {
        (tenant.count().await == count as u64).then_some(())
    })
    .await;
    wait_for("the app's offsets committed up to the end of the topic", timeout, || async {
        (tenant.lag().await == 0).then_some(())
    })
    .await;
}

/// The value of a message's last header called `name`, as text.
pub fn header(message: &OwnedMessage, name: &str) -> Option<String> {
    use mysimbdp_ingest_sdk::rdkafka::message::Headers;
    let headers = message.headers()?;
    headers
        .iter()
        .filter(|h| h.key == name)
        .last()
        .and_then(|h| h.value)
        .map(|v| String::from_utf8_lossy(v).into_owned())
}
