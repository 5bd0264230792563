//! Restarting the local stack's shared Kafka broker from a test with the stack's own scripts,
//! which wait until it is healthy (and restore the admin's login, see `e2e/stack/kafka.sh`).

use std::process::{Command, Output};

use mysimbdp_e2e::Stack;

/// Runs a function of the stack's Kafka script (`kafka_down`, `kafka_up`) with the stack's settings.
fn kafka_script(stack: &Stack, function: &str) -> Output {
    let dir = Stack::repo_dir().join("e2e/stack");
    let script = format!("set -euo pipefail; . {0}/lib.sh; . {0}/kafka.sh; {function}", dir.display());
    Command::new("bash").args(["-c", &script]).envs(stack.vars()).output().expect("bash runs")
}

fn text(output: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr))
}

/// Stops the broker (its state is kept).
pub fn stop(stack: &Stack) {
    let output = kafka_script(stack, "kafka_down");
    assert!(output.status.success(), "kafka_down failed: {}", text(&output));
}

/// Starts the broker and waits until it is healthy.
pub fn start(stack: &Stack) -> Result<(), String> {
    let output = kafka_script(stack, "kafka_up");
    if output.status.success() { Ok(()) } else { Err(format!("kafka_up failed: {}", text(&output))) }
}
