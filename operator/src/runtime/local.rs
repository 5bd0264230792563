//! The local runtime: a run is a process of the app's `command` (found on `PATH`) with the same
//! environment contract as a Job, in its own process group, its output and result in a run
//! folder. A small shell wrapper records the exit code, so a restarted operator can still learn
//! how a run it started has ended.
//!
//! Run folder `<runs>/<id>/`: `pid` (pid and kernel start time), `deadline` (Unix seconds),
//! `output.log`, `result.json` (the app's result document), `exit` (exit code), `timed-out`.

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    process::Stdio,
    sync::Mutex,
    time::{SystemTime, UNIX_EPOCH},
};

use async_trait::async_trait;
use mysimbdp_ingest_sdk::contract::{RunResult, decode::MAX_RESULT_BYTES, env};
use nix::{sys::signal::Signal, unistd::Pid};
use tokio::process::{Child, Command};
use tracing::{debug, info, warn};

use super::{
    Result, RunOutcome, RunSpec, RunState, Runtime, RuntimeError, decode_result,
    process::{live_pid, read_trimmed, start_time, stop_group},
};

/// How long a run stopped with the operator may take to end before it is killed.
const STOP_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

/// Runs as local processes.
pub struct LocalRuntime {
    runs: PathBuf,
    client: kube::Client,
    /// Children this process started, so that exited ones are reaped.
    children: Mutex<HashMap<String, Child>>,
}

impl LocalRuntime {
    /// Runs recorded under `runs`; credentials are read from the tenant's Secret through
    /// `client`.
    pub fn new(runs: impl Into<PathBuf>, client: kube::Client) -> Self {
        Self { runs: runs.into(), client, children: Mutex::new(HashMap::new()) }
    }

    fn dir(&self, id: &str) -> PathBuf {
        self.runs.join(id)
    }

    async fn credentials(&self, spec: &RunSpec) -> Result<Vec<(String, String)>> {
        super::secret_vars(&self.client, &spec.namespace, &spec.credentials_secret, &spec.id).await
    }
}

fn io_error(action: &'static str, run: &str, path: &Path) -> impl FnOnce(std::io::Error) -> RuntimeError {
    let (run, path) = (run.to_owned(), path.display().to_string());
    move |source| RuntimeError::Io { action, run, path, source }
}

fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

#[async_trait]
impl Runtime for LocalRuntime {
    fn name(&self) -> &'static str {
        "local"
    }

    async fn start(&self, spec: &RunSpec) -> Result<()> {
        let dir = self.dir(&spec.id);
        tokio::fs::create_dir_all(&dir).await.map_err(io_error("create", &spec.id, &dir))?;
        let log_path = dir.join("output.log");
        let log = std::fs::File::create(&log_path).map_err(io_error("create", &spec.id, &log_path))?;
        let log_err = log.try_clone().map_err(io_error("open", &spec.id, &log_path))?;
        let Some((program, rest)) = spec.container.command.split_first() else {
            return Err(RuntimeError::Start {
                run: spec.id.clone(),
                app: spec.app.clone(),
                message: "the app has no command".into(),
            });
        };

        let mut command = Command::new("/bin/sh");
        // "$0" is the exit file; the app's command line follows it.
        command
            .arg("-c")
            .arg(r#""$@"; echo $? > "$0""#)
            .arg(dir.join("exit"))
            .arg(program)
            .args(rest)
            .args(&spec.container.args)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", &dir)
            .env("LANG", "C.UTF-8")
            .envs(spec.container.env.iter().map(|e| (&e.name, &e.value)))
            .envs(self.credentials(spec).await?)
            .envs(&spec.env)
            .env(env::RESULT_FILE, dir.join("result.json"))
            .current_dir(&dir)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .process_group(0)
            .kill_on_drop(false);
        let child = command.spawn().map_err(|e| RuntimeError::Start {
            run: spec.id.clone(),
            app: spec.app.clone(),
            message: format!("/bin/sh could not start {program:?}: {e}"),
        })?;
        let pid = child.id().and_then(|p| i32::try_from(p).ok()).unwrap_or_default();
        let started = start_time(pid).unwrap_or_default();
        let deadline = now_secs() + spec.timeout.as_secs().max(1);
        let pid_path = dir.join("pid");
        tokio::fs::write(&pid_path, format!("{pid} {started}\n"))
            .await
            .map_err(io_error("write", &spec.id, &pid_path))?;
        let deadline_path = dir.join("deadline");
        tokio::fs::write(&deadline_path, format!("{deadline}\n")).await.map_err(io_error(
            "write",
            &spec.id,
            &deadline_path,
        ))?;
        info!(run = %spec.id, app = %spec.app, pid, program = %program, "started local run");
        self.children.lock().unwrap_or_else(|e| e.into_inner()).insert(spec.id.clone(), child);
        Ok(())
    }

    async fn state(&self, _namespace: &str, id: &str) -> Result<RunState> {
        let dir = self.dir(id);
        if !dir.is_dir() {
            return Ok(RunState::Unknown);
        }
        if let Some(child) = self.children.lock().unwrap_or_else(|e| e.into_inner()).get_mut(id) {
            // Reaps the wrapper once it exited; the exit file says how the app ended.
            let _ = child.try_wait();
        }
        let timed_out = dir.join("timed-out").exists();
        let exit = read_trimmed(&dir.join("exit"));
        if exit.is_none()
            && let Some(pid) = live_pid(&dir.join("pid"))
        {
            let deadline: u64 = read_trimmed(&dir.join("deadline")).and_then(|d| d.parse().ok()).unwrap_or(u64::MAX);
            if now_secs() > deadline && !timed_out {
                warn!(run = id, "run passed its timeout; stopping it");
                let marker = dir.join("timed-out");
                tokio::fs::write(&marker, b"").await.map_err(io_error("write", id, &marker))?;
                if let Err(e) = nix::sys::signal::killpg(Pid::from_raw(pid), Signal::SIGKILL) {
                    debug!(run = id, error = %e, "process group already gone");
                }
            }
            return Ok(RunState::Running);
        }
        let exit_code = exit.and_then(|e| e.parse().ok());
        let (result, refused) = read_result(&dir.join("result.json"));
        let message = match (exit_code, timed_out) {
            (_, true) => "the run passed its timeout and was stopped".to_owned(),
            (Some(0), _) => "the app exited with code 0".to_owned(),
            (Some(code), _) if code > 128 => format!("the app was killed by signal {}", code - 128),
            (Some(code), _) => format!("the app exited with code {code}"),
            (None, _) => {
                "the run's processes ended without recording an exit code (killed, or the machine restarted)".to_owned()
            }
        };
        Ok(RunState::Finished(RunOutcome { exit_code, result, refused, timed_out, message, cannot_start: false }))
    }

    async fn forget(&self, _namespace: &str, id: &str) -> Result<()> {
        self.children.lock().unwrap_or_else(|e| e.into_inner()).remove(id);
        Ok(())
    }

    async fn stop_all(&self) -> usize {
        let Ok(entries) = std::fs::read_dir(&self.runs) else { return 0 };
        let mut stopped = 0;
        for entry in entries.flatten() {
            let pid = entry.path().join("pid");
            if live_pid(&pid).is_some() {
                info!(run = %entry.file_name().to_string_lossy(), "stopping the run with the operator");
                stop_group(&pid, STOP_GRACE).await;
                stopped += 1;
            }
        }
        stopped
    }
}

/// The run's result file through the contract's checks, reading no more than the contract
/// allows (one byte more tells a file that is too large).
fn read_result(path: &Path) -> (Option<RunResult>, Option<String>) {
    use std::io::Read;
    let Ok(file) = std::fs::File::open(path) else { return (None, None) };
    let mut bytes = Vec::new();
    let limit = u64::try_from(MAX_RESULT_BYTES).unwrap_or(u64::MAX).saturating_add(1);
    if let Err(error) = file.take(limit).read_to_end(&mut bytes) {
        return (None, Some(format!("the result document cannot be read: {error}")));
    }
    decode_result(&bytes)
}

/// The last lines of a run's output, for error messages.
pub fn output_tail(runs: &Path, id: &str, lines: usize) -> String {
    let text = std::fs::read_to_string(runs.join(id).join("output.log")).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
