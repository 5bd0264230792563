//! The local runtime of stream apps: each replica is two processes, the platform's metrics
//! sidecar and the tenant's app (its `command`, found on `PATH`), with the same environment
//! contract as in a pod. A replica whose process ended is started again at the next apply, the
//! way a Deployment replaces a failed pod; a new restart token or new settings restart it.
//!
//! Replica folder `<runs>/stream/<namespace>/<app>/<index>/`: `app.pid` and `sidecar.pid`
//! (pid and kernel start time, so a restarted operator adopts running replicas), `settings`
//! (a digest of what the replica was started with), `app.log`, `sidecar.log`.

use std::{
    collections::HashMap,
    net::TcpListener,
    path::{Path, PathBuf},
    process::Stdio,
    sync::Mutex,
    time::Duration,
};

use async_trait::async_trait;
use mysimbdp_ingest_sdk::contract::env;
use tokio::process::{Child, Command};
use tracing::{info, warn};

use super::{
    Result, RuntimeError,
    process::{live_pid, read_trimmed, record, stop_group},
    replicas::{ReplicaRuntime, ReplicasSpec, ReplicasState},
};

/// How long a stopping replica may take to commit its offsets before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// Runs stream apps as local processes.
pub struct LocalReplicas {
    root: PathBuf,
    sidecar_command: String,
    client: kube::Client,
    /// Processes this operator started, reaped when they end.
    children: Mutex<HashMap<PathBuf, Child>>,
}

impl LocalReplicas {
    /// Replicas recorded under `<runs>/stream`, sidecars started with `sidecar_command`, the
    /// credentials read from the tenant's Secret through `client`.
    pub fn new(runs: &Path, sidecar_command: String, client: kube::Client) -> Self {
        Self { root: runs.join("stream"), sidecar_command, client, children: Mutex::new(HashMap::new()) }
    }

    fn app_dir(&self, namespace: &str, app: &str) -> PathBuf {
        self.root.join(namespace).join(app)
    }

    async fn credentials(&self, spec: &ReplicasSpec) -> Result<Vec<(String, String)>> {
        super::secret_vars(&self.client, &spec.namespace, &spec.credentials_secret, &spec.app).await
    }

    /// Reaps ended children so that their pids do not linger as zombies.
    fn reap(&self) {
        let mut children = self.children.lock().unwrap_or_else(|e| e.into_inner());
        children.retain(|_, child| matches!(child.try_wait(), Ok(None)));
    }

    async fn start_replica(&self, spec: &ReplicasSpec, index: u32, dir: &Path, settings: &str) -> Result<()> {
        let instance = format!("{}-{index}", spec.app);
        let io = |action: &'static str, path: &Path| {
            let (run, path) = (instance.clone(), path.display().to_string());
            move |source| RuntimeError::Io { action, run, path, source }
        };
        tokio::fs::create_dir_all(dir).await.map_err(io("create", dir))?;
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(io("find a free port for the sidecar of", dir))?
            .port();
        let mut vars = self.credentials(spec).await?;
        vars.extend(spec.env.iter().map(|(k, v)| (k.clone(), v.clone())));
        vars.push((env::INSTANCE.into(), instance.clone()));
        vars.push((env::SIDECAR_ADDR.into(), format!("127.0.0.1:{port}")));

        let sidecar = [self.sidecar_command.clone()];
        for (role, command) in [("sidecar", &sidecar[..]), ("app", &spec.container.command[..])] {
            let Some((program, rest)) = command.split_first() else {
                return Err(RuntimeError::Start {
                    run: instance.clone(),
                    app: spec.app.clone(),
                    message: "the app has no command".into(),
                });
            };
            let log_path = dir.join(format!("{role}.log"));
            let log =
                std::fs::OpenOptions::new().create(true).append(true).open(&log_path).map_err(io("open", &log_path))?;
            let log_err = log.try_clone().map_err(io("open", &log_path))?;
            let mut command = Command::new(program);
            command
                .args(rest)
                .env_clear()
                .env("PATH", std::env::var_os("PATH").unwrap_or_default())
                .env("HOME", dir)
                .env("LANG", "C.UTF-8")
                .current_dir(dir)
                .stdin(Stdio::null())
                .stdout(log)
                .stderr(log_err)
                .process_group(0)
                .kill_on_drop(false);
            if role == "app" {
                command.args(&spec.container.args).envs(spec.container.env.iter().map(|e| (&e.name, &e.value)));
            }
            command.envs(vars.iter().map(|(k, v)| (k, v)));
            let child = command.spawn().map_err(|e| RuntimeError::Start {
                run: instance.clone(),
                app: spec.app.clone(),
                message: format!("cannot start the {role} {program:?} (is it on the operator's PATH?): {e}"),
            })?;
            let pid = child.id().and_then(|p| i32::try_from(p).ok()).unwrap_or_default();
            let pid_path = dir.join(format!("{role}.pid"));
            tokio::fs::write(&pid_path, record(pid)).await.map_err(io("write", &pid_path))?;
            self.children.lock().unwrap_or_else(|e| e.into_inner()).insert(pid_path, child);
        }
        let settings_path = dir.join("settings");
        tokio::fs::write(&settings_path, settings).await.map_err(io("write", &settings_path))?;
        info!(app = %spec.app, namespace = %spec.namespace, %instance, "started local replica");
        Ok(())
    }
}

/// A digest of everything a replica is started with; a change restarts it.
fn settings_digest(spec: &ReplicasSpec) -> String {
    use sha2::Digest;
    let env: Vec<(&str, &str)> = spec.container.env.iter().map(|e| (e.name.as_str(), e.value.as_str())).collect();
    let settings = serde_json::json!([
        spec.container.command,
        spec.container.args,
        env,
        spec.env,
        spec.restart_token,
        spec.credentials_digest
    ]);
    hex::encode(&sha2::Sha256::digest(settings.to_string().as_bytes())[..8])
}

async fn stop_replica(dir: &Path) {
    // The app first, so that it can still hand its last measurement to the sidecar.
    stop_group(&dir.join("app.pid"), STOP_GRACE).await;
    stop_group(&dir.join("sidecar.pid"), STOP_GRACE).await;
}

fn replica_indexes(app_dir: &Path) -> Vec<u32> {
    std::fs::read_dir(app_dir)
        .map(|entries| entries.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok()).collect())
        .unwrap_or_default()
}

#[async_trait]
impl ReplicaRuntime for LocalReplicas {
    fn name(&self) -> &'static str {
        "local"
    }

    async fn apply(&self, spec: &ReplicasSpec) -> Result<ReplicasState> {
        self.reap();
        let app_dir = self.app_dir(&spec.namespace, &spec.app);
        let settings = settings_digest(spec);
        let mut ready = 0;
        let mut problem = None;
        for index in 0..spec.replicas {
            let dir = app_dir.join(index.to_string());
            let app = live_pid(&dir.join("app.pid"));
            let sidecar = live_pid(&dir.join("sidecar.pid"));
            let current = read_trimmed(&dir.join("settings")).as_deref() == Some(settings.as_str());
            if app.is_some() && sidecar.is_some() && current {
                ready += 1;
                continue;
            }
            if app.is_some() || sidecar.is_some() {
                let why = if current { "one of its processes ended" } else { "its settings or restart token changed" };
                info!(app = %spec.app, index, why, "restarting local replica");
                stop_replica(&dir).await;
            } else if dir.exists() {
                warn!(app = %spec.app, index, "local replica is not running; starting it again");
                problem = Some(format!(
                    "replica {index} had stopped and was started again; its output is in {}",
                    dir.join("app.log").display()
                ));
            }
            self.start_replica(spec, index, &dir, &settings).await?;
            ready += 1;
        }
        for index in replica_indexes(&app_dir).into_iter().filter(|i| *i >= spec.replicas) {
            let dir = app_dir.join(index.to_string());
            info!(app = %spec.app, index, "stopping local replica beyond the desired count");
            stop_replica(&dir).await;
            let _ = tokio::fs::remove_dir_all(&dir).await;
        }
        Ok(ReplicasState { desired: spec.replicas, ready, problem })
    }

    async fn stop_all(&self) -> usize {
        let mut stopped = 0;
        let dirs = |dir: &Path| -> Vec<PathBuf> {
            std::fs::read_dir(dir)
                .map(|e| e.flatten().map(|e| e.path()).filter(|p| p.is_dir()).collect())
                .unwrap_or_default()
        };
        for namespace in dirs(&self.root) {
            for app in dirs(&namespace) {
                for index in replica_indexes(&app) {
                    let dir = app.join(index.to_string());
                    if live_pid(&dir.join("app.pid")).is_some() || live_pid(&dir.join("sidecar.pid")).is_some() {
                        stop_replica(&dir).await;
                        stopped += 1;
                    }
                }
            }
        }
        self.reap();
        stopped
    }

    async fn remove(&self, namespace: &str, app: &str) -> Result<()> {
        let app_dir = self.app_dir(namespace, app);
        for index in replica_indexes(&app_dir) {
            stop_replica(&app_dir.join(index.to_string())).await;
        }
        self.reap();
        match tokio::fs::remove_dir_all(&app_dir).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(RuntimeError::Io {
                action: "remove",
                run: app.to_owned(),
                path: app_dir.display().to_string(),
                source,
            }),
        }
    }
}
