//! Steps the operator's integration tests share: resetting tenants, applying manifests,
//! waiting for tenants and files.

#![allow(dead_code)]

use std::{path::Path, time::Duration};

use k8s_openapi::api::core::v1::{Namespace, Secret, ServiceAccount};
use kube::{Api, api::PostParams};
use mongodb::bson::{Document, doc};
use mysimbdp_api::Tenant;
use mysimbdp_e2e::{Stack, wait_for};
use mysimbdp_operator::{
    batch::ledger::{FileRecord, FileStatus, Ledger},
    tenant::names::TenantNames,
};

/// The platform installed by its chart for a test (e2e/platform.sh: the operator a pod on the
/// stack's real node, the kubernetes runtime, staging on S3 under `prefix`), removed when the
/// test ends (also when it fails), so that no other test meets a second operator.
pub struct Platform;

impl Platform {
    /// Installs it, or panics.
    pub fn install(prefix: &str) -> Self {
        let status =
            std::process::Command::new(Stack::repo_dir().join("e2e/platform.sh")).args(["install", prefix]).status();
        assert!(status.is_ok_and(|s| s.success()), "e2e/platform.sh install failed");
        Platform
    }

    /// A kubeconfig of user `name`, as the cluster's identity provider would issue one.
    pub fn user(name: &str) -> String {
        let output = std::process::Command::new(Stack::repo_dir().join("e2e/platform.sh"))
            .args(["user", name])
            .output()
            .expect("e2e/platform.sh runs");
        assert!(output.status.success(), "e2e/platform.sh user {name}: {}", String::from_utf8_lossy(&output.stderr));
        String::from_utf8_lossy(&output.stdout).trim().to_owned()
    }
}

impl Drop for Platform {
    fn drop(&mut self) {
        let _ = std::process::Command::new(Stack::repo_dir().join("e2e/platform.sh")).arg("uninstall").status();
    }
}

/// The platform's ledger.
pub async fn ledger(stack: &Stack) -> Ledger {
    Ledger::open(&stack.coredms_admin().await, "mysimbdp").await.expect("ledger")
}

/// Applies a manifest given as text.
pub fn apply(stack: &Stack, yaml: &str) {
    let path = std::env::temp_dir().join(format!("{}.yaml", mysimbdp_e2e::unique("manifest")));
    std::fs::write(&path, yaml).expect("write manifest");
    stack.kubectl_ok(&["apply", "-f", path.to_str().expect("UTF-8 path")]);
    let _ = std::fs::remove_file(path);
}

/// Installs the CRDs.
pub fn install_crds(stack: &Stack) {
    let crds = Stack::repo_dir().join("crds");
    stack.kubectl_ok(&["apply", "--server-side", "--force-conflicts", "-f", crds.to_str().expect("UTF-8 path")]);
}

/// A namespace made the way the tenant controller makes one, for tests that drive a runtime
/// directly: the restricted Pod Security profile, the tenant's credentials Secret holding
/// `credentials`, and the apps' ServiceAccount without a token. Installs the CRDs first.
pub async fn tenant_namespace(
    stack: &Stack,
    client: &kube::Client,
    prefix: &str,
    credentials: serde_json::Value,
) -> String {
    install_crds(stack);
    let ns = mysimbdp_e2e::unique(prefix);
    let create = PostParams::default();
    let namespace = object(serde_json::json!({
        "metadata": { "name": ns, "labels": {
            "pod-security.kubernetes.io/enforce": "restricted",
            "pod-security.kubernetes.io/enforce-version": "latest" } }
    }));
    Api::<Namespace>::all(client.clone()).create(&create, &namespace).await.expect("namespace");
    let secret: Secret = object(serde_json::json!({
        "metadata": { "name": "mysimbdp-credentials" }, "stringData": credentials
    }));
    Api::<Secret>::namespaced(client.clone(), &ns).create(&create, &secret).await.expect("credentials Secret");
    let sa: ServiceAccount =
        object(serde_json::json!({ "metadata": { "name": "mysimbdp-app" }, "automountServiceAccountToken": false }));
    Api::<ServiceAccount>::namespaced(client.clone(), &ns).create(&create, &sa).await.expect("ServiceAccount");
    ns
}

/// A Kubernetes object from its JSON.
pub fn object<T: serde::de::DeserializeOwned>(value: serde_json::Value) -> T {
    serde_json::from_value(value).expect("fixture")
}

/// Waits until a tenant is Ready.
pub async fn wait_ready(tenants: &Api<Tenant>, name: &str) {
    wait_for(&format!("tenant {name} to be Ready"), Duration::from_secs(120), || async move {
        let tenant = tenants.get_opt(name).await.ok()??;
        tenant.status?.conditions.iter().any(|c| c.type_ == "Ready" && c.status == "True").then_some(())
    })
    .await;
}

/// Deletes tenants (waiting for their offboarding), their data and their ledger records, so a
/// test starts from nothing whatever an earlier run left.
pub async fn reset(stack: &Stack, tenants: &Api<Tenant>, names: &[&str]) {
    let admin = stack.coredms_admin().await;
    for name in names {
        let _ = tenants.delete(name, &Default::default()).await;
        wait_for(&format!("tenant {name} to be gone"), Duration::from_secs(120), || async move {
            matches!(tenants.get_opt(name).await, Ok(None)).then_some(())
        })
        .await;
        admin.database(&TenantNames::new(name, None).database).drop().await.expect("drop old data");
        let platform = admin.database("mysimbdp");
        platform.collection::<Document>("files").delete_many(doc! { "tenant": *name }).await.expect("old files");
        platform.collection::<Document>("runs").delete_many(doc! { "tenant": *name }).await.expect("old runs");
    }
}

/// Waits until every named file of `tenant` has reached a final state and been filed.
pub async fn settled(ledger: &Ledger, tenant: &str, names: &[&str], timeout: Duration) -> Vec<FileRecord> {
    wait_for(&format!("{} files of {tenant} to settle", names.len()), timeout, || async {
        let files = ledger.files(doc! { "tenant": tenant, "name": { "$in": names } }).await.ok()?;
        let done = files.iter().filter(|f| {
            matches!(f.status, FileStatus::Ingested | FileStatus::Rejected | FileStatus::DeadLettered) && f.filed
        });
        (done.count() == names.len()).then_some(files)
    })
    .await
}

/// Data rows of a CSV file (lines after the header).
pub fn data_rows(path: &Path) -> u64 {
    let text = std::fs::read_to_string(path).expect("data file");
    text.lines().count() as u64 - 1
}

/// A tenant with generous limits whose one app ingests flights files, optionally slowed.
pub fn flights_tenant(name: &str, max_rows_per_second: Option<u32>, extra_app_spec: &str) -> (String, String) {
    let tenant = format!(
        "apiVersion: mysimbdp.io/v1alpha1
kind: Tenant
metadata: {{name: {name}}}
spec:
  agreement:
    files: {{formats: [Csv], maxFileSize: 64Mi, maxFilesPerDay: 100, maxBytesPerDay: 4Gi}}
    compute: {{cpu: '4', memory: 4Gi, maxConcurrentBatchRuns: 2}}
    kafka: {{producerByteRate: 1Mi, consumerByteRate: 1Mi}}
    coredms: {{storageQuota: 5Gi}}
"
    );
    let slow = max_rows_per_second.map(|r| format!(", --max-rows-per-second, '{r}'")).unwrap_or_default();
    let app = format!(
        "apiVersion: mysimbdp.io/v1alpha1
kind: BatchIngestApp
metadata: {{name: flights, namespace: tenant-{name}}}
spec:
  container: {{image: registry.example.com/acme-air/flights-ingest:0.1.0, command: [acme-flights-ingest], args: [--kind, flights{slow}]}}
  files: {{pattern: 'flights_*.csv'}}
  target: {{collection: flights}}
{extra_app_spec}"
    );
    (tenant, app)
}

/// The first `parts × rows` data rows of a CSV file, as `parts` files of `rows` rows, each
/// with the header.
pub fn csv_parts(path: &Path, rows: usize, parts: usize) -> Vec<Vec<u8>> {
    let text = std::fs::read_to_string(path).expect("data file");
    let mut lines = text.lines();
    let header = lines.next().expect("a header row");
    let body: Vec<&str> = lines.collect();
    assert!(body.len() >= rows * parts, "{} has {} rows, fewer than {parts} × {rows}", path.display(), body.len());
    body.chunks(rows)
        .take(parts)
        .map(|chunk| {
            let mut file = String::with_capacity((chunk.len() + 1) * (header.len() + 1));
            for line in std::iter::once(&header).chain(chunk) {
                file.push_str(line);
                file.push('\n');
            }
            file.into_bytes()
        })
        .collect()
}

/// The `main` of a benchmark: runs `bench` on a two-thread runtime under `cargo bench` (which
/// passes `--bench`); any other run (e.g. `cargo test --benches`) is not a benchmark run and
/// only says so.
pub fn bench_main<F>(name: &str, make_target: &str, bench: F) -> std::process::ExitCode
where
    F: Future<Output = std::process::ExitCode>,
{
    if !std::env::args().any(|a| a == "--bench") {
        eprintln!("the {name} benchmark runs only under `cargo bench` ({make_target}); skipped");
        return std::process::ExitCode::SUCCESS;
    }
    let runtime =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("a Tokio runtime");
    let code = runtime.block_on(bench);
    // The coredms clients' background tasks outlive the benchmark; the process ends here, so
    // the runtime is not torn down under them.
    std::mem::forget(runtime);
    code
}
