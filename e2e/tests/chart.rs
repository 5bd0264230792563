//! The Helm chart `charts/mysimbdp` against the local control plane: its CRDs are the generated
//! ones, `helm lint --strict` is clean, every object it renders is accepted by the API server,
//! an install makes the objects and pods that pass the restricted Pod Security profile, its
//! ServiceAccount may do what the controllers do and nothing it must not, a wrong value fails
//! the install naming the value, and the operator does its work with no more than the chart's
//! RBAC.

use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
    time::Duration,
};

use mysimbdp_e2e::{OperatorProcess, Stack, stage, unique, wait_for};
use serde_json::Value;

fn chart_dir() -> PathBuf {
    Stack::repo_dir().join("charts/mysimbdp")
}

fn text(output: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr))
}

/// `helm` of the local stack, talking to its control plane.
fn helm(stack: &Stack) -> Command {
    let mut cmd = Command::new(stack.var("MYSIMBDP_HELM"));
    // Helm keeps its caches and repository settings under these; a test leaves the user's alone.
    let home = std::env::temp_dir().join("mysimbdp-chart-test-helm");
    cmd.env("KUBECONFIG", stack.var("KUBECONFIG"))
        .env("HELM_CACHE_HOME", home.join("cache"))
        .env("HELM_CONFIG_HOME", home.join("config"))
        .env("HELM_DATA_HOME", home.join("data"));
    cmd
}

/// Runs `cmd`, feeding it `stdin`; returns its output.
fn run(mut cmd: Command, stdin: Option<&[u8]>) -> Output {
    use std::io::Write;
    cmd.stdin(if stdin.is_some() { std::process::Stdio::piped() } else { std::process::Stdio::null() })
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("{cmd:?} does not start: {e}"));
    if let Some(input) = stdin {
        child.stdin.take().expect("piped stdin").write_all(input).expect("write stdin");
    }
    child.wait_with_output().expect("the command ends")
}

/// Runs `cmd`; returns its stdout, or fails the test with its output.
fn run_ok(cmd: Command, stdin: Option<&[u8]>) -> String {
    let what = format!("{cmd:?}");
    let output = run(cmd, stdin);
    assert!(output.status.success(), "{what} failed:\n{}", text(&output));
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// `helm template` of the chart as release `release` in `namespace`, with the CRDs.
fn template(stack: &Stack, release: &str, namespace: &str, args: &[&str]) -> String {
    let mut cmd = helm(stack);
    cmd.args(["template", release]).arg(chart_dir()).args(["--namespace", namespace, "--include-crds"]).args(args);
    run_ok(cmd, None)
}

/// A namespace for one test, labelled like a production one (restricted Pod Security), and
/// everything a release made in and for it, removed when the test ends however it ends.
struct Scratch<'a> {
    stack: &'a Stack,
    namespace: String,
    releases: Vec<String>,
}

impl<'a> Scratch<'a> {
    fn new(stack: &'a Stack, prefix: &str) -> Self {
        let namespace = unique(prefix);
        stack.kubectl_ok(&["create", "namespace", &namespace]);
        stack.kubectl_ok(&[
            "label",
            "namespace",
            &namespace,
            "pod-security.kubernetes.io/enforce=restricted",
            "pod-security.kubernetes.io/enforce-version=latest",
        ]);
        Self { stack, namespace, releases: Vec::new() }
    }

    /// The admin credentials Secret the chart reads, with the keys its values name.
    fn admin_secret(&self, name: &str) {
        self.stack.kubectl_ok(&[
            "-n",
            &self.namespace,
            "create",
            "secret",
            "generic",
            name,
            &format!("--from-literal=kafka-admin-password={}", self.stack.var("MYSIMBDP_KAFKA_ADMIN_PASSWORD")),
            &format!("--from-literal=coredms-admin-password={}", self.stack.var("MYSIMBDP_COREDMS_ADMIN_PASSWORD")),
        ]);
    }

    /// `helm install` of the chart as `release`, with `args`.
    fn install(&mut self, release: &str, args: &[&str]) -> String {
        let mut cmd = helm(self.stack);
        cmd.args(["install", release]).arg(chart_dir()).args(["--namespace", &self.namespace]).args(args);
        self.releases.push(release.to_owned());
        run_ok(cmd, None)
    }
}

impl Drop for Scratch<'_> {
    fn drop(&mut self) {
        for release in &self.releases {
            let mut cmd = helm(self.stack);
            cmd.args(["uninstall", release, "--namespace", &self.namespace, "--ignore-not-found"]);
            let _ = run(cmd, None);
        }
        let _ = self.stack.kubectl().args(["delete", "namespace", &self.namespace, "--wait=false"]).output();
    }
}

/// The objects of `manifests` as the API server would store them (a server-side dry run),
/// failing the test when it refuses any.
fn dry_run(stack: &Stack, manifests: &str) -> Vec<Value> {
    let mut cmd = stack.kubectl();
    cmd.args(["apply", "--dry-run=server", "-o", "json", "-f", "-"]);
    let json = run_ok(cmd, Some(manifests.as_bytes()));
    let parsed: Value = serde_json::from_str(&json).expect("kubectl prints JSON");
    match parsed.get("items") {
        Some(Value::Array(items)) => items.clone(),
        _ => vec![parsed],
    }
}

fn kind_and_name(object: &Value) -> (String, String) {
    let s = |v: &Value| v.as_str().unwrap_or_default().to_owned();
    (s(&object["kind"]), s(&object["metadata"]["name"]))
}

fn find<'v>(objects: &'v [Value], kind: &str, name: &str) -> &'v Value {
    objects
        .iter()
        .find(|o| kind_and_name(o) == (kind.to_owned(), name.to_owned()))
        .unwrap_or_else(|| panic!("no {kind} {name} among {:?}", objects.iter().map(kind_and_name).collect::<Vec<_>>()))
}

/// The value of environment variable `name` of the Deployment's operator container.
fn env<'v>(deployment: &'v Value, name: &str) -> Option<&'v Value> {
    container(deployment)["env"].as_array()?.iter().find(|e| e["name"] == name)
}

fn env_value<'v>(deployment: &'v Value, name: &str) -> Option<&'v str> {
    env(deployment, name)?["value"].as_str()
}

fn container(deployment: &Value) -> &Value {
    &deployment["spec"]["template"]["spec"]["containers"][0]
}

#[test]
fn the_charts_crds_are_byte_copies_of_the_generated_ones() {
    let generated = Stack::repo_dir().join("crds");
    let chart = chart_dir().join("crds");
    let names = |dir: &Path| {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|e| e.expect("readable entry").file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    };
    assert_eq!(names(&chart), names(&generated), "run `make chart-crds`");
    for name in names(&generated) {
        let (a, b) = (std::fs::read(generated.join(&name)).unwrap(), std::fs::read(chart.join(&name)).unwrap());
        assert!(a == b, "charts/mysimbdp/crds/{name} differs from crds/{name}; run `make chart-crds`");
    }
}

#[test]
fn helm_lint_strict_is_clean() {
    let stack = Stack::load();
    for args in [&[][..], &["--set", "monitor.separate=true,replicas=2"], &["--set", "staging.url=s3://bucket/staging"]]
    {
        let mut cmd = helm(&stack);
        cmd.args(["lint", "--strict"]).arg(chart_dir()).args(args);
        let output = run(cmd, None);
        let out = text(&output);
        assert!(output.status.success(), "helm lint --strict {args:?}:\n{out}");
        assert!(!out.contains("[WARNING]") && !out.contains("[ERROR]"), "helm lint --strict {args:?}:\n{out}");
    }
}

#[test]
fn every_rendered_object_is_accepted_by_the_api_server() {
    let stack = Stack::load();
    let scratch = Scratch::new(&stack, "chart-render");
    let ns = scratch.namespace.as_str();

    // Defaults: one Deployment running every part, with leader election, a staging claim.
    let objects = dry_run(&stack, &template(&stack, "render", ns, &[]));
    let mut kinds: Vec<String> = objects.iter().map(|o| kind_and_name(o).0).collect();
    kinds.sort();
    kinds.dedup();
    assert_eq!(
        kinds,
        [
            "APIService",
            "ClusterRole",
            "ClusterRoleBinding",
            "CustomResourceDefinition",
            "Deployment",
            "PersistentVolumeClaim",
            "Role",
            "RoleBinding",
            "Secret",
            "Service",
            "ServiceAccount"
        ]
    );
    for role in ["render-mysimbdp-tenant-owner", "render-mysimbdp-tenant-viewer", "render-mysimbdp-platform-admin"] {
        find(&objects, "ClusterRole", role);
    }
    let operator = find(&objects, "Deployment", "render-mysimbdp");
    assert_eq!(objects.iter().filter(|o| o["kind"] == "Deployment").count(), 1, "no monitor apart by default");
    assert_eq!(container(operator)["command"], serde_json::json!(["mysimbdp-operator"]));
    assert_eq!(container(operator)["args"], serde_json::json!(["--controllers=tenant,batch,stream,monitor"]));
    for (name, value) in [
        ("MYSIMBDP_METRICS_ADDR", "0.0.0.0:9464"),
        ("MYSIMBDP_LEADER_ELECTION", "true"),
        ("MYSIMBDP_LEADER_ELECTION_LEASE_NAME", "render-mysimbdp"),
        ("MYSIMBDP_LEADER_ELECTION_NAMESPACE", ns),
        ("MYSIMBDP_RUNTIME", "kubernetes"),
        ("MYSIMBDP_COREDMS_BACKEND", "mongodb"),
        ("MYSIMBDP_STAGING_URL", "file:///var/lib/mysimbdp/staging"),
        ("MYSIMBDP_SIDECAR_IMAGE", "ghcr.io/mysimbdp/mysimbdp-sidecar:0.1.0"),
        ("MYSIMBDP_TENANT_OWNER_ROLE", "render-mysimbdp-tenant-owner"),
        ("MYSIMBDP_TENANT_VIEWER_ROLE", "render-mysimbdp-tenant-viewer"),
        ("MYSIMBDP_TENANT_API_ADDR", "0.0.0.0:8443"),
    ] {
        assert_eq!(env_value(operator, name), Some(value), "{name}");
    }
    let secret_ref = &env(operator, "MYSIMBDP_KAFKA_ADMIN_PASSWORD").expect("password variable")["valueFrom"];
    assert_eq!(secret_ref["secretKeyRef"]["name"], "mysimbdp-admin");
    assert!(env(operator, "MYSIMBDP_POSTGRES_URL").is_none(), "only the ferretdb-postgres backend reads it");
    let pod = &operator["spec"]["template"]["spec"];
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(pod["securityContext"]["seccompProfile"]["type"], "RuntimeDefault");
    let security = &container(operator)["securityContext"];
    assert_eq!(security["allowPrivilegeEscalation"], false);
    assert_eq!(security["readOnlyRootFilesystem"], true);
    assert_eq!(security["capabilities"]["drop"], serde_json::json!(["ALL"]));
    for probe in ["livenessProbe", "readinessProbe"] {
        assert_eq!(container(operator)[probe]["httpGet"]["path"], "/healthz", "{probe}");
        assert_eq!(container(operator)[probe]["httpGet"]["port"], "metrics", "{probe}");
    }
    assert_eq!(
        find(&objects, "PersistentVolumeClaim", "render-mysimbdp-staging")["spec"]["accessModes"][0],
        "ReadWriteMany"
    );

    // The monitor apart, two replicas of each, S3 staging, FerretDB, and every optional value.
    let objects = dry_run(
        &stack,
        &template(
            &stack,
            "apart",
            ns,
            &[
                "--set",
                "monitor.separate=true,replicas=2,monitor.replicas=2,coredms.backend=ferretdb-postgres",
                "--set",
                "staging.url=s3://bucket/staging,staging.s3.credentialsSecret=s3-keys,staging.s3.region=eu-north-1",
                "--set",
                "staging.s3.endpoint=http://minio.storage:9000,staging.s3.allowHttp=true",
                "--set",
                "kafka.appBootstrap=kafka-0.kafka:9092\\,kafka-1.kafka:9092,coredms.appUrl=mongodb://mongo.apps:27017/",
                "--set-json",
                r#"tenantLimits.appEgress=["10.0.0.0/16:9092"]"#,
                "--set-json",
                r#"batch.runPodAnnotations={"example.com/team":"data"}"#,
                "--set-json",
                r#"extraEnv=[{"name":"EXTRA","value":"1"}]"#,
                "--set",
                "metrics.serviceMonitor.enabled=true",
            ],
        ),
    );
    let operator = find(&objects, "Deployment", "apart-mysimbdp");
    let monitor = find(&objects, "Deployment", "apart-mysimbdp-monitor");
    assert!(!objects.iter().any(|o| o["kind"] == "PersistentVolumeClaim"), "S3 staging needs no volume");
    assert!(!objects.iter().any(|o| o["kind"] == "ServiceMonitor"), "no ServiceMonitor without its API");
    assert_eq!(container(operator)["args"], serde_json::json!(["--controllers=tenant,batch,stream"]));
    assert_eq!(container(monitor)["args"], serde_json::json!(["--controllers=monitor"]));
    assert_eq!(operator["spec"]["replicas"], 2);
    assert_eq!(monitor["spec"]["replicas"], 2);
    assert_eq!(env_value(operator, "MYSIMBDP_LEADER_ELECTION_LEASE_NAME"), Some("apart-mysimbdp"));
    assert_eq!(env_value(monitor, "MYSIMBDP_LEADER_ELECTION_LEASE_NAME"), Some("apart-mysimbdp-monitor"));
    for (name, value) in [
        ("MYSIMBDP_APP_KAFKA_BOOTSTRAP", "kafka-0.kafka:9092,kafka-1.kafka:9092"),
        ("MYSIMBDP_APP_COREDMS_URL", "mongodb://mongo.apps:27017/"),
        ("MYSIMBDP_APP_EGRESS", "10.0.0.0/16:9092"),
        ("MYSIMBDP_RUN_POD_ANNOTATIONS", "example.com/team=data"),
        ("AWS_REGION", "eu-north-1"),
        ("AWS_ENDPOINT", "http://minio.storage:9000"),
        ("AWS_ALLOW_HTTP", "true"),
        ("EXTRA", "1"),
    ] {
        assert_eq!(env_value(operator, name), Some(value), "{name}");
    }
    let postgres =
        &env(monitor, "MYSIMBDP_POSTGRES_URL").expect("the FerretDB backend reads the PostgreSQL URL")["valueFrom"];
    assert_eq!(postgres["secretKeyRef"]["key"], "postgres-url");
    assert_eq!(env(operator, "AWS_SECRET_ACCESS_KEY").unwrap()["valueFrom"]["secretKeyRef"]["name"], "s3-keys");

    // A ServiceMonitor only where the Prometheus Operator's API exists.
    let with_api = template(
        &stack,
        "scraped",
        ns,
        &["--set", "metrics.serviceMonitor.enabled=true", "--api-versions", "monitoring.coreos.com/v1/ServiceMonitor"],
    );
    assert!(with_api.contains("kind: ServiceMonitor"), "{with_api}");
    let without = template(&stack, "scraped", ns, &["--api-versions", "monitoring.coreos.com/v1/ServiceMonitor"]);
    assert!(!without.contains("kind: ServiceMonitor"), "only when enabled");
}

/// `kubectl auth can-i` as `user`: whether it may.
fn can_i(stack: &Stack, user: &str, namespace: Option<&str>, args: &[&str]) -> bool {
    let mut cmd = stack.kubectl();
    cmd.args(["auth", "can-i", "--as", user]).args(args);
    if let Some(ns) = namespace {
        cmd.args(["--namespace", ns]);
    }
    let output = run(cmd, None);
    match String::from_utf8_lossy(&output.stdout).trim() {
        "yes" => true,
        "no" => false,
        _ => panic!("kubectl auth can-i {args:?}: {}", text(&output)),
    }
}

#[tokio::test]
async fn an_install_makes_restricted_pods_and_grants_the_least_privilege() {
    let stack = Stack::load();
    let mut scratch = Scratch::new(&stack, "chart-install");
    let ns = scratch.namespace.clone();
    let release = unique("mysimbdp-it").replace('_', "-");
    scratch.admin_secret("mysimbdp-admin");
    // No storage class runs here: the staging store is an empty folder so that pods schedule.
    scratch.install(
        &release,
        &[
            "--set",
            // KWOK plays the pods: an APIService they cannot answer would hold up namespace
            // deletions cluster-wide, so the tenant API is left to the tests on real pods.
            "replicas=2,monitor.separate=true,monitor.replicas=2,staging.persistence.create=false,tenantApi.enabled=false",
            "--set",
            "image.tag=test",
        ],
    );

    for (kind, name) in [
        ("deployment", release.clone()),
        ("deployment", format!("{release}-monitor")),
        ("serviceaccount", release.clone()),
        ("service", format!("{release}-metrics")),
        ("role", format!("{release}-leader-election")),
        ("rolebinding", format!("{release}-leader-election")),
    ] {
        stack.kubectl_ok(&["-n", &ns, "get", kind, &name]);
    }
    stack.kubectl_ok(&["get", "clusterrole", &release]);
    stack.kubectl_ok(&["get", "clusterrolebinding", &release]);
    let owner_role = format!("{release}-tenant-owner");
    let viewer_role = format!("{release}-tenant-viewer");
    for role in [&owner_role, &viewer_role, &format!("{release}-platform-admin")] {
        stack.kubectl_ok(&["get", "clusterrole", role]);
    }

    // The ReplicaSets make every pod: each passed the namespace's restricted Pod Security
    // admission. KWOK plays them, so they turn Ready without running the image.
    let selector = format!("app.kubernetes.io/instance={release}");
    wait_for("4 Ready operator and monitor pods", Duration::from_secs(90), || async {
        let json = stack.kubectl_ok(&["-n", &ns, "get", "pods", "-l", &selector, "-o", "json"]);
        let pods: Value = serde_json::from_str(&json).ok()?;
        let ready = pods["items"]
            .as_array()?
            .iter()
            .filter(|p| {
                p["status"]["conditions"]
                    .as_array()
                    .is_some_and(|c| c.iter().any(|c| c["type"] == "Ready" && c["status"] == "True"))
            })
            .count();
        (ready == 4).then_some(())
    })
    .await;

    let sa = format!("system:serviceaccount:{ns}:{release}");
    let tenant_ns = Some("tenant-acme-air");
    let allowed: &[(Option<&str>, &[&str])] = &[
        (None, &["list", "tenants.mysimbdp.io"]),
        (None, &["watch", "batchingestapps.mysimbdp.io"]),
        (None, &["watch", "streamingestapps.mysimbdp.io"]),
        (None, &["patch", "tenants.mysimbdp.io"]),
        (None, &["patch", "tenants.mysimbdp.io", "--subresource=status"]),
        (tenant_ns, &["patch", "batchingestapps.mysimbdp.io", "--subresource=status"]),
        (tenant_ns, &["patch", "streamingestapps.mysimbdp.io", "--subresource=status"]),
        (None, &["update", "tenants.mysimbdp.io", "--subresource=finalizers"]),
        (tenant_ns, &["update", "streamingestapps.mysimbdp.io", "--subresource=finalizers"]),
        (None, &["create", "namespaces"]),
        (None, &["patch", "namespaces"]),
        (None, &["delete", "namespaces"]),
        (None, &["watch", "secrets"]),
        (tenant_ns, &["get", "secrets"]),
        (tenant_ns, &["patch", "secrets"]),
        (tenant_ns, &["create", "resourcequotas"]),
        (tenant_ns, &["patch", "limitranges"]),
        (tenant_ns, &["create", "networkpolicies.networking.k8s.io"]),
        (tenant_ns, &["create", "serviceaccounts"]),
        (tenant_ns, &["create", "jobs.batch"]),
        (tenant_ns, &["get", "jobs.batch"]),
        (tenant_ns, &["delete", "jobs.batch"]),
        (tenant_ns, &["list", "pods"]),
        (tenant_ns, &["create", "deployments.apps"]),
        (tenant_ns, &["patch", "deployments.apps"]),
        (tenant_ns, &["delete", "deployments.apps"]),
        (None, &["watch", "deployments.apps"]),
        (Some("default"), &["create", "events.events.k8s.io"]),
        (tenant_ns, &["patch", "events.events.k8s.io"]),
        (Some(&ns), &["create", "leases.coordination.k8s.io"]),
        (Some(&ns), &["update", &format!("leases.coordination.k8s.io/{release}")]),
        (Some(&ns), &["get", &format!("leases.coordination.k8s.io/{release}-monitor")]),
        (tenant_ns, &["create", "rolebindings.rbac.authorization.k8s.io"]),
        (None, &["bind", &format!("clusterroles.rbac.authorization.k8s.io/{owner_role}")]),
        (None, &["bind", &format!("clusterroles.rbac.authorization.k8s.io/{viewer_role}")]),
    ];
    let denied: &[(Option<&str>, &[&str])] = &[
        (None, &["create", "clusterrolebindings.rbac.authorization.k8s.io"]),
        (tenant_ns, &["delete", "rolebindings.rbac.authorization.k8s.io"]),
        (None, &["escalate", "clusterroles.rbac.authorization.k8s.io"]),
        (None, &["bind", "clusterroles.rbac.authorization.k8s.io"]),
        (None, &["bind", "clusterroles.rbac.authorization.k8s.io/cluster-admin"]),
        (None, &["bind", &format!("clusterroles.rbac.authorization.k8s.io/{release}-platform-admin")]),
        (tenant_ns, &["bind", "roles.rbac.authorization.k8s.io"]),
        (None, &["get", "nodes"]),
        (None, &["delete", "customresourcedefinitions.apiextensions.k8s.io"]),
        (None, &["create", "customresourcedefinitions.apiextensions.k8s.io"]),
        (None, &["impersonate", "users"]),
        (None, &["impersonate", "serviceaccounts"]),
        (tenant_ns, &["create", "pods", "--subresource=exec"]),
        (tenant_ns, &["create", "pods"]),
        (tenant_ns, &["get", "pods", "--subresource=log"]),
        (None, &["delete", "tenants.mysimbdp.io"]),
        (tenant_ns, &["create", "batchingestapps.mysimbdp.io"]),
        (tenant_ns, &["delete", "secrets"]),
        (Some("kube-system"), &["update", "leases.coordination.k8s.io/kube-controller-manager"]),
        (Some(&ns), &["update", "leases.coordination.k8s.io/someone-else"]),
        (Some(&ns), &["delete", "leases.coordination.k8s.io"]),
        (None, &["create", "certificatesigningrequests.certificates.k8s.io"]),
    ];
    for (namespace, args) in allowed {
        assert!(can_i(&stack, &sa, *namespace, args), "the operator may not {args:?} in {namespace:?}");
    }
    for (namespace, args) in denied {
        assert!(!can_i(&stack, &sa, *namespace, args), "the operator may {args:?} in {namespace:?}");
    }

    // Uninstalling removes the cluster-wide grants too.
    let mut cmd = helm(&stack);
    cmd.args(["uninstall", &release, "--namespace", &ns, "--wait"]);
    run_ok(cmd, None);
    for role in [&release, &owner_role] {
        let gone = stack.kubectl().args(["get", "clusterrole", role]).output().expect("kubectl runs");
        assert!(!gone.status.success(), "ClusterRole {role} outlived its release");
    }
}

#[test]
fn a_wrong_value_fails_the_install_naming_it() {
    let stack = Stack::load();
    let mut scratch = Scratch::new(&stack, "chart-wrong");
    let ns = scratch.namespace.clone();
    let cases: &[(&[&str], &[&str])] = &[
        (&["--set", "runtime=docker"], &["/runtime", "kubernetes", "local"]),
        (&["--set", "replicas=-1"], &["/replicas", "minimum"]),
        (&["--set", "staging.url=ftp://files.example/staging"], &["/staging/url", "ftp://files.example/staging"]),
        (&["--set", "staging.url=/var/lib/staging"], &["/staging/url"]),
        (&["--set", "kafka.bootstrap=kafka.example"], &["/kafka/bootstrap", "kafka.example"]),
        (&["--set", "coredms.url=mongodb://admin:secret@mongo:27017/"], &["/coredms/url"]),
        (&["--set", "coredms.backend=postgres"], &["/coredms/backend"]),
        (&["--set", "tenantLimits.maxMemory=lots"], &["/tenantLimits/maxMemory", "lots"]),
        (&["--set", "leaderElection.retryPeriod=often"], &["/leaderElection/retryPeriod", "often"]),
        (&["--set", "image.pullPolicy=Sometimes"], &["/image/pullPolicy"]),
        (&["--set", "replicaCount=2"], &["replicaCount"]),
        (&["--set", "replicas=2,leaderElection.enabled=false"], &["replicas: 2", "leaderElection.enabled"]),
        (&["--set", "staging.url=s3://bucket,staging.tenantClaim=staging"], &["staging.tenantClaim"]),
    ];
    for (i, (args, expected)) in cases.iter().enumerate() {
        let release = format!("wrong-{i}");
        let mut cmd = helm(&stack);
        cmd.args(["install", &release]).arg(chart_dir()).args(["--namespace", &ns]).args(*args);
        scratch.releases.push(release.clone());
        let output = run(cmd, None);
        let out = text(&output);
        assert!(!output.status.success(), "{args:?} installed:\n{out}");
        for part in *expected {
            assert!(out.contains(part), "the error of {args:?} does not name {part:?}:\n{out}");
        }
        let mut status = helm(&stack);
        status.args(["status", &release, "--namespace", &ns]);
        assert!(!run(status, None).status.success(), "{args:?} left a release behind");
    }
}

/// The operator binary of this build: `cargo test --workspace` builds it beside the tests.
fn operator_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("the test's path");
    let profile = exe.parent().and_then(Path::parent).expect("target/<profile>/deps/<test>");
    let binary = profile.join("mysimbdp-operator");
    assert!(
        binary.is_file(),
        "{} is missing; build it first with `cargo build -p mysimbdp-operator --bins` (make integration does)",
        binary.display()
    );
    binary
}

/// A file removed when dropped (it holds a token).
struct TempFile(PathBuf);

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// A kubeconfig that authenticates as the ServiceAccount `namespace/name`, with a fresh token.
fn service_account_kubeconfig(stack: &Stack, namespace: &str, name: &str) -> TempFile {
    let token = stack.kubectl_ok(&["-n", namespace, "create", "token", name, "--duration=1h"]);
    let path = std::env::temp_dir().join(format!("{}.kubeconfig", unique("chart-sa")));
    let config = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{ "name": "local", "cluster": {
            "server": stack.var("MYSIMBDP_KUBE_SERVER"),
            "certificate-authority": stack.var("MYSIMBDP_KUBE_CA") } }],
        "users": [{ "name": name, "user": { "token": token.trim() } }],
        "contexts": [{ "name": name, "context": { "cluster": "local", "user": name, "namespace": namespace } }],
        "current-context": name,
    });
    std::fs::write(&path, serde_json::to_string_pretty(&config).expect("JSON")).expect("write the kubeconfig");
    TempFile(path)
}

fn tenant_manifest(name: &str) -> String {
    format!(
        r#"apiVersion: mysimbdp.io/v1alpha1
kind: Tenant
metadata: {{name: {name}}}
spec:
  agreement:
    files: {{formats: [JsonLines], maxFileSize: 1Mi, maxFilesPerDay: 100, maxBytesPerDay: 64Mi}}
    delivery: AtLeastOnce
    retention: {{stagedFiles: 24h, onOffboarding: Delete}}
    compute: {{cpu: "2", memory: 2Gi, maxConcurrentBatchRuns: 1, maxStreamReplicas: 2}}
    kafka:
      topics: [{{name: observations, partitions: 1}}]
      producerByteRate: 512Ki
      consumerByteRate: 1Mi
    coredms: {{storageQuota: 1Gi}}
---
apiVersion: mysimbdp.io/v1alpha1
kind: BatchIngestApp
metadata: {{name: stations, namespace: tenant-{name}}}
spec:
  container: {{image: registry.example.com/chart/stations:1, command: [stations-ingest], resources: {{cpu: 250m, memory: 64Mi}}}}
  files: {{formats: [JsonLines]}}
  filesPerRun: 5
  retry: {{maxAttempts: 1, backoff: 1s, maxBackoff: 1s}}
  timeout: 5m
  target: {{collection: stations}}
---
apiVersion: mysimbdp.io/v1alpha1
kind: StreamIngestApp
metadata: {{name: observations, namespace: tenant-{name}}}
spec:
  container: {{image: registry.example.com/chart/weather:1, command: [weather-ingest], resources: {{cpu: 250m, memory: 64Mi}}}}
  topics: [observations]
  consumerGroup: weather-ingest
  target: {{collection: observations}}
  replicas: {{min: 1, max: 2}}
"#
    )
}

/// When the test fails half-way, the tenant it onboarded is removed by force: its finalizers
/// (and its stream app's) are dropped so that it and its namespace go without the operator.
/// Its Kafka user and coredms database, named uniquely, are left behind.
struct Leftovers<'a> {
    stack: &'a Stack,
    tenant: String,
}

impl Drop for Leftovers<'_> {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        let unfinalize = r#"{"metadata":{"finalizers":null}}"#;
        let namespace = format!("tenant-{}", self.tenant);
        let kubectl = |args: &[&str]| {
            let _ = self.stack.kubectl().args(args).output();
        };
        kubectl(&["delete", "tenant", &self.tenant, "--wait=false"]);
        kubectl(&["patch", "tenant", &self.tenant, "--type=merge", "-p", unfinalize]);
        kubectl(&["-n", &namespace, "delete", "streamingestapps", "--all", "--wait=false"]);
        kubectl(&["-n", &namespace, "patch", "streamingestapp", "observations", "--type=merge", "-p", unfinalize]);
        kubectl(&["delete", "namespace", &namespace, "--wait=false"]);
    }
}

fn lease_holder(stack: &Stack, namespace: &str, name: &str) -> Option<String> {
    let output = stack
        .kubectl()
        .args(["-n", namespace, "get", "lease", name, "-o", "jsonpath={.spec.holderIdentity}"])
        .output()
        .ok()?;
    let holder = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    (output.status.success() && !holder.is_empty()).then_some(holder)
}

/// The operator, authenticated as the chart's ServiceAccount, elects itself, onboards a tenant,
/// runs a batch app's Job and a stream app's Deployment in its namespace, records Events and
/// offboards it, and is never refused by the API server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_works_with_only_the_charts_rbac() {
    let stack = Stack::load();
    stack.kubectl_ok(&[
        "apply",
        "--server-side",
        "--force-conflicts",
        "-f",
        Stack::repo_dir().join("crds").to_str().unwrap(),
    ]);
    let mut scratch = Scratch::new(&stack, "chart-rbac");
    let ns = scratch.namespace.clone();
    let release = unique("mysimbdp-rbac").replace('_', "-");
    // The tenant API is left to the tests on real pods (see the install test).
    scratch.install(&release, &["--set", "staging.persistence.create=false,tenantApi.enabled=false"]);
    let kubeconfig_file = service_account_kubeconfig(&stack, &ns, &release);
    let kubeconfig = kubeconfig_file.0.to_str().expect("UTF-8 path");
    let denied = stack.kubectl().args(["--kubeconfig", kubeconfig, "get", "nodes"]).output().expect("kubectl runs");
    assert!(text(&denied).contains("forbidden"), "the kubeconfig is the ServiceAccount's: {}", text(&denied));

    let operator = OperatorProcess::start(
        &operator_binary(),
        &stack,
        &[
            ("KUBECONFIG", kubeconfig),
            ("MYSIMBDP_RUNTIME", "kubernetes"),
            ("MYSIMBDP_LEADER_ELECTION", "true"),
            ("MYSIMBDP_LEADER_ELECTION_NAMESPACE", &ns),
            ("MYSIMBDP_LEADER_ELECTION_LEASE_NAME", &release),
            ("MYSIMBDP_LEADER_ELECTION_RETRY_PERIOD", "500ms"),
            ("MYSIMBDP_TENANT_OWNER_ROLE", &format!("{release}-tenant-owner")),
            ("MYSIMBDP_TENANT_VIEWER_ROLE", &format!("{release}-tenant-viewer")),
        ],
    );
    wait_for("the operator to hold its lease", Duration::from_secs(30), || async {
        lease_holder(&stack, &ns, &release)
    })
    .await;

    let tenant = unique("chart").replace('_', "-");
    let tenant_ns = format!("tenant-{tenant}");
    let manifest = tenant_manifest(&tenant);
    let (tenant_doc, apps) = manifest.split_once("---\n").expect("a tenant, then its apps");
    let _leftovers = Leftovers { stack: &stack, tenant: tenant.clone() };
    let mut apply = stack.kubectl();
    apply.args(["apply", "-f", "-"]);
    run_ok(apply, Some(tenant_doc.as_bytes()));
    wait_for(&format!("tenant {tenant} to be Ready"), Duration::from_secs(120), || async {
        let ready = stack.kubectl_ok(&[
            "get",
            "tenant",
            &tenant,
            "-o",
            r#"jsonpath={.status.conditions[?(@.type=="Ready")].status}"#,
        ]);
        (ready == "True").then_some(())
    })
    .await;
    let mut apply = stack.kubectl();
    apply.args(["apply", "-f", "-"]);
    run_ok(apply, Some(apps.as_bytes()));

    // A staged file runs as a Job; the operator reads the Job and its pod, and files it.
    stage(&operator.staging_dir, &tenant, "stations.jsonl", b"{\"faa\":\"ABQ\",\"name\":\"Albuquerque\"}\n");
    let ingested = operator.staging_dir.join(&tenant).join("ingested");
    wait_for("the staged file to be ingested by a Job", Duration::from_secs(90), || async {
        let ids = std::fs::read_dir(&ingested).ok()?;
        ids.flatten().any(|id| id.path().join("stations.jsonl").is_file()).then_some(())
    })
    .await;
    stack.kubectl_ok(&["-n", &tenant_ns, "get", "jobs", "-l", "mysimbdp.io/run"]);

    // The stream app runs as a Deployment.
    wait_for("the stream app's Deployment", Duration::from_secs(60), || async {
        let output = stack.kubectl().args(["-n", &tenant_ns, "get", "deployment", "observations"]).output().ok()?;
        output.status.success().then_some(())
    })
    .await;

    // Events about the tenant (cluster-scoped: they land in `default`).
    let events = stack.kubectl_ok(&[
        "-n",
        "default",
        "get",
        "events.events.k8s.io",
        "--field-selector",
        &format!("regarding.name={tenant}"),
        "-o",
        "name",
    ]);
    assert!(!events.trim().is_empty(), "no Event about tenant {tenant}");

    // Offboarding: the finalizers run and the namespace goes, stream app and all.
    stack.kubectl_ok(&["delete", "tenant", &tenant, "--wait=false"]);
    wait_for(&format!("namespace {tenant_ns} to be gone"), Duration::from_secs(120), || async {
        let output = stack.kubectl().args(["get", "namespace", &tenant_ns]).output().ok()?;
        (!output.status.success()).then_some(())
    })
    .await;
    let tenant_gone = stack.kubectl().args(["get", "tenant", &tenant]).output().expect("kubectl runs");
    assert!(!tenant_gone.status.success(), "tenant {tenant} is still there");

    // The whole log, beside the operator's staging folder; its tail when it is elsewhere.
    let log = operator
        .staging_dir
        .parent()
        .and_then(|base| std::fs::read_to_string(base.join("operator.log")).ok())
        .unwrap_or_else(|| operator.log_tail());
    // An authorization refusal names the user; admission refusals (e.g. writing into a
    // terminating namespace) are not what this test is about.
    let refusal = format!("forbidden: User \"system:serviceaccount:{ns}:{release}\"");
    assert!(!log.contains(&refusal), "RBAC refused the operator something:\n{log}");
}
