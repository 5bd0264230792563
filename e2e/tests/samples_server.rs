//! The real API server accepts `crds/` and the valid samples, and refuses every invalid sample
//! with the message its `# expect:` (or `# expect-server:`) line names, through
//! `kubectl apply --dry-run=server` as a tenant would see it.

use std::{
    io::Write,
    path::{Path, PathBuf},
    process::{Output, Stdio},
};

use mysimbdp_e2e::{Stack, unique};

fn samples() -> PathBuf {
    Stack::repo_dir().join("tenant-samples")
}

fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(yaml_files(&path));
        } else if path.extension().is_some_and(|x| x == "yaml") {
            out.push(path);
        }
    }
    out.sort();
    out
}

/// Runs kubectl with `stdin` as its input.
fn kubectl(stack: &Stack, args: &[&str], stdin: &str) -> Output {
    let mut child = stack
        .kubectl()
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kubectl starts");
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    child.wait_with_output().unwrap()
}

fn text(output: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr))
}

/// Moves a sample into the test's own namespace, so the test never touches a real tenant's.
fn in_namespace(yaml: &str, namespace: &str) -> String {
    yaml.lines()
        .map(|l| {
            if l.trim_start().starts_with("namespace: tenant-") {
                format!("  namespace: {namespace}")
            } else {
                l.into()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn the_api_server_accepts_the_crds_and_valid_samples_and_refuses_invalid_ones() {
    let stack = Stack::load();
    let crds = Stack::repo_dir().join("crds");
    let applied = stack
        .kubectl()
        .args(["apply", "--server-side", "--force-conflicts", "--field-manager=mysimbdp-tests", "-f"])
        .arg(&crds)
        .output()
        .unwrap();
    assert!(applied.status.success(), "applying crds/: {}", text(&applied));
    let established = stack
        .kubectl()
        .args(["wait", "--for=condition=Established", "--timeout=60s"])
        .args(["crd/tenants.mysimbdp.io", "crd/batchingestapps.mysimbdp.io", "crd/streamingestapps.mysimbdp.io"])
        .output()
        .unwrap();
    assert!(established.status.success(), "CRDs not established: {}", text(&established));

    let namespace = unique("samples");
    let created = kubectl(&stack, &["create", "namespace", &namespace], "");
    assert!(created.status.success(), "creating namespace {namespace}: {}", text(&created));

    let mut failures = Vec::new();
    for path in yaml_files(&samples()) {
        let yaml = in_namespace(&std::fs::read_to_string(&path).unwrap(), &namespace);
        let result = kubectl(&stack, &["apply", "--dry-run=server", "-f", "-"], &yaml);
        let message = text(&result);
        let expected: Vec<&str> = yaml
            .lines()
            .filter_map(|l| l.strip_prefix("# expect: ").or_else(|| l.strip_prefix("# expect-server: ")))
            .collect();
        let name = path.strip_prefix(samples()).unwrap().display().to_string();
        if path.starts_with(samples().join("invalid")) {
            eprintln!("{name}: {}", message.trim());
            if result.status.success() {
                failures.push(format!("{name} was accepted"));
            }
            for want in expected {
                if !message.contains(want) {
                    failures.push(format!("{name}: {message:?} does not contain {want:?}"));
                }
            }
        } else if !result.status.success() {
            failures.push(format!("{name} was refused: {message}"));
        }
    }
    let deleted = kubectl(&stack, &["delete", "namespace", &namespace, "--wait=false"], "");
    assert!(deleted.status.success(), "deleting namespace {namespace}: {}", text(&deleted));
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The CRDs of `crds/` moved to a group of their own, so that the server validates them as new
/// definitions without touching the installed ones.
fn crds_in_group(group: &str) -> String {
    let mut all = String::new();
    for path in yaml_files(&Stack::repo_dir().join("crds")) {
        all.push_str("---\n");
        all.push_str(&std::fs::read_to_string(&path).unwrap().replace("mysimbdp.io", group));
    }
    all
}

/// Creating the CRDs (a server-side dry run: validated and checked as new, never stored) draws
/// no warning. The same check sees the warning an unknown integer format draws, so it can fail.
#[test]
fn the_crds_draw_no_warning_from_the_api_server() {
    let stack = Stack::load();
    let group = format!("{}.example.com", unique("warncheck"));
    let clean = crds_in_group(&group);
    let created = kubectl(&stack, &["create", "--dry-run=server", "-f", "-"], &clean);
    let output = text(&created);
    assert!(created.status.success(), "creating the CRDs: {output}");
    assert!(!output.to_lowercase().contains("warning"), "the API server warned about crds/: {output}");

    let unsigned = clean.replacen("format: int32", "format: uint32", 1);
    assert_ne!(unsigned, clean, "the CRDs have an int32 field to turn into uint32");
    let warned = kubectl(&stack, &["create", "--dry-run=server", "-f", "-"], &unsigned);
    let output = text(&warned);
    assert!(output.contains("Warning") && output.contains("uint32"), "no warning for a uint32 format: {output}");
}
