//! The stack scripts recover from, or clearly report, the bad states a developer meets: a killed
//! component with its stale pid file, a port taken by another program, a half-built cache.

use std::{
    net::TcpListener,
    path::Path,
    process::{Command, Output},
    time::Duration,
};

use mysimbdp_e2e::{Stack, unique, wait_for};

fn stack_script() -> std::path::PathBuf {
    Stack::repo_dir().join("e2e/stack/stack.sh")
}

/// Runs bash with the stack's libraries sourced, then `script`.
fn stack_bash(script: &str) -> Command {
    let dir = Stack::repo_dir().join("e2e/stack");
    let mut cmd = Command::new("bash");
    cmd.args(["-c", &format!("set -euo pipefail; . {0}/lib.sh; . {0}/kafka.sh; {script}", dir.display())]);
    cmd
}

fn output_text(output: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr))
}

fn pid_of(stack: &Stack, name: &str) -> i32 {
    let file = Path::new(stack.var("MYSIMBDP_STATE")).join("run").join(format!("{name}.pid"));
    let text = std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    text.split_whitespace().next().and_then(|p| p.parse().ok()).expect("pid")
}

#[tokio::test]
async fn a_killed_component_is_restarted_and_its_stale_pid_file_replaced() {
    let stack = Stack::load();
    let before = pid_of(&stack, "coredms-ferretdb");
    let killed = Command::new("kill").args(["-KILL", &before.to_string()]).status().unwrap();
    assert!(killed.success());
    wait_for("the killed FerretDB to be gone", Duration::from_secs(10), || async move {
        (!Path::new(&format!("/proc/{before}")).exists()).then_some(())
    })
    .await;

    let up = Command::new(stack_script()).arg("up").output().unwrap();
    let text = output_text(&up);
    assert!(up.status.success(), "stack up after a kill failed: {text}");
    assert!(text.contains("removing stale pid file of coredms-ferretdb"), "{text}");
    assert_ne!(pid_of(&stack, "coredms-ferretdb"), before);

    let client = stack.coredms_admin().await;
    client.database("admin").run_command(mongodb::bson::doc! { "ping": 1 }).await.expect("coredms answers again");
}

#[test]
fn a_taken_port_is_named_with_its_owner_and_the_variable_that_moves_it() {
    let _stack = Stack::load();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port().to_string();
    let state = std::env::temp_dir().join(unique("stack-port"));
    let up = Command::new(stack_script())
        .arg("up")
        .env("MYSIMBDP_STATE", &state)
        .env("MYSIMBDP_ETCD_PORT", &port)
        .output()
        .unwrap();
    let text = output_text(&up);
    assert!(!up.status.success(), "stack up succeeded on a taken port: {text}");
    let expected = format!("port {port}, needed by etcd, is already in use by pid {}", std::process::id());
    assert!(text.contains(&expected), "{text}");
    assert!(text.contains("MYSIMBDP_ETCD_PORT=<port>"), "{text}");
    let _ = std::fs::remove_dir_all(state);
}

#[test]
fn a_half_built_cache_is_removed_and_rebuilt() {
    let stack = Stack::load();
    let cache = std::env::temp_dir().join(unique("stack-cache"));
    let versions = std::fs::read_to_string(Stack::repo_dir().join("e2e/stack/versions.env")).unwrap();
    let kafka = versions.lines().find_map(|l| l.strip_prefix("KAFKA_VERSION=")).unwrap();
    let half = cache.join(format!("kafka-{kafka}"));
    std::fs::create_dir_all(half.join("libs")).unwrap();
    std::fs::write(half.join("libs/truncated.jar"), b"PK").unwrap();

    let build = stack_bash("kafka_build")
        .env("MYSIMBDP_CACHE", &cache)
        .env("MYSIMBDP_STATE", stack.var("MYSIMBDP_STATE"))
        .output()
        .unwrap();
    let text = output_text(&build);
    assert!(build.status.success(), "{text}");
    assert!(text.contains("removing half-built cache"), "{text}");
    assert!(half.join(".complete").is_file(), "the rebuilt cache is marked complete");
    assert!(!half.join("libs/truncated.jar").exists(), "the half-built content is gone");
    let jars = std::fs::read_dir(half.join("libs")).unwrap().count();
    assert!(jars > 20, "the rebuilt cache holds Kafka's jars ({jars})");
    let _ = std::fs::remove_dir_all(cache);
}
