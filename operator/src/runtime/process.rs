//! Local processes the runtimes start: recording a process so that a later operator can tell
//! whether it still runs (a pid alone can be reused; the kernel's start time cannot), and
//! stopping a process group politely, then firmly.

use std::{path::Path, time::Duration};

use nix::{sys::signal::Signal, unistd::Pid};

/// The kernel's start time of a live process (ticks since boot), or `None` when it is gone or
/// a zombie. A pid with another start time is another process.
pub fn start_time(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: count from the last ')'.
    let after = &stat[stat.rfind(')')? + 2..];
    let mut fields = after.split_whitespace();
    if fields.next()? == "Z" {
        return None;
    }
    fields.nth(18)?.parse().ok()
}

/// The text of a small file, trimmed; `None` when missing or empty.
pub fn read_trimmed(path: &Path) -> Option<String> {
    std::fs::read_to_string(path).ok().map(|s| s.trim().to_owned()).filter(|s| !s.is_empty())
}

/// The record of a started process: its pid and start time.
pub fn record(pid: i32) -> String {
    format!("{pid} {}\n", start_time(pid).unwrap_or_default())
}

/// The pid recorded in `path`, if that very process still runs.
pub fn live_pid(path: &Path) -> Option<i32> {
    let record = read_trimmed(path)?;
    let mut parts = record.split_whitespace();
    let pid: i32 = parts.next()?.parse().ok()?;
    let started: u64 = parts.next()?.parse().ok()?;
    (start_time(pid) == Some(started)).then_some(pid)
}

/// Stops the process group led by the process recorded in `path`: SIGTERM, then SIGKILL when
/// it has not ended within `grace`. Nothing to do when it is gone already.
pub async fn stop_group(path: &Path, grace: Duration) {
    let Some(pid) = live_pid(path) else { return };
    let group = Pid::from_raw(pid);
    let _ = nix::sys::signal::killpg(group, Signal::SIGTERM);
    let deadline = tokio::time::Instant::now() + grace;
    while live_pid(path).is_some() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    if live_pid(path).is_some() {
        let _ = nix::sys::signal::killpg(group, Signal::SIGKILL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_times_identify_processes() {
        let me = i32::try_from(std::process::id()).unwrap();
        assert!(start_time(me).is_some());
        assert_eq!(start_time(i32::MAX), None);
        let dir = std::env::temp_dir().join(format!("mysimbdp-process-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("pid");
        std::fs::write(&path, record(me)).unwrap();
        assert_eq!(live_pid(&path), Some(me));
        std::fs::write(&path, format!("{me} 1\n")).unwrap();
        assert_eq!(live_pid(&path), None, "same pid, another start time: another process");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
