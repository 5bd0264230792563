//! The stack's real node: a kubelet of the pinned release on containerd and runc, Ready beside
//! the KWOK nodes. Pods placed there run for real under restricted pod security, from images
//! imported without a registry: a native sidecar starts before the app, `kubectl exec` and
//! logs work, pods reach the API server, Kafka and coredms at the node's bridge address (and
//! have no route beyond it), a container over its memory limit is OOMKilled, and every image
//! `make images` built runs its binaries.

use std::{
    process::Command,
    time::{Duration, Instant},
};

use k8s_openapi::api::core::v1::{ContainerStatus, Node, Pod};
use kube::{
    Api,
    api::{DeleteParams, PostParams},
};
use mysimbdp_e2e::{Stack, real_node_placement, unique, wait_for};

/// A namespace enforcing the restricted Pod Security profile, deleted when dropped.
struct RestrictedNamespace {
    stack: Stack,
    name: String,
}

impl RestrictedNamespace {
    fn create(stack: &Stack, prefix: &str) -> Self {
        let name = unique(prefix);
        stack.kubectl_ok(&["create", "namespace", &name]);
        stack.kubectl_ok(&[
            "label",
            "namespace",
            &name,
            "pod-security.kubernetes.io/enforce=restricted",
            "pod-security.kubernetes.io/enforce-version=latest",
        ]);
        // Pods are admitted once the namespace's default service account exists.
        let deadline = Instant::now() + Duration::from_secs(30);
        while !stack
            .kubectl()
            .args(["get", "serviceaccount", "default", "-n", &name])
            .output()
            .is_ok_and(|o| o.status.success())
        {
            assert!(Instant::now() < deadline, "namespace {name} got no default service account in 30s");
            std::thread::sleep(Duration::from_millis(200));
        }
        Self { stack: stack.clone(), name }
    }
}

impl Drop for RestrictedNamespace {
    fn drop(&mut self) {
        let _ = self.stack.kubectl().args(["delete", "namespace", &self.name, "--wait=false"]).output();
    }
}

/// A container that complies with the restricted profile, running `command` from `image`
/// (never pulled: images here are imported, there is no registry).
fn container(name: &str, image: &str, command: &[&str], memory: &str) -> serde_json::Value {
    serde_json::json!({
        "name": name,
        "image": image,
        "imagePullPolicy": "Never",
        "command": command,
        "resources": { "requests": { "cpu": "10m", "memory": memory }, "limits": { "memory": memory } },
        "securityContext": {
            "allowPrivilegeEscalation": false,
            "capabilities": { "drop": ["ALL"] },
            "runAsNonRoot": true,
            "seccompProfile": { "type": "RuntimeDefault" }
        }
    })
}

/// A pod on the real node with the given containers (and init containers).
fn pod(
    stack: &Stack,
    name: &str,
    restart: &str,
    init: Vec<serde_json::Value>,
    containers: Vec<serde_json::Value>,
) -> Pod {
    let mut spec = serde_json::json!({
        "restartPolicy": restart,
        "terminationGracePeriodSeconds": 5,
        "automountServiceAccountToken": false,
        "securityContext": { "runAsNonRoot": true, "runAsUser": 65532, "runAsGroup": 65532 },
        "initContainers": init,
        "containers": containers,
    });
    let placement = real_node_placement(stack);
    spec["nodeSelector"] = placement["nodeSelector"].clone();
    spec["tolerations"] = placement["tolerations"].clone();
    serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "Pod", "metadata": { "name": name }, "spec": spec
    }))
    .expect("a valid pod")
}

/// Waits until the pod satisfies `done`, failing with its status (and events) at the deadline.
async fn wait_pod(
    stack: &Stack,
    pods: &Api<Pod>,
    name: &str,
    what: &str,
    timeout: Duration,
    done: fn(&Pod) -> bool,
) -> Pod {
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(pod) = pods.get(name).await
            && done(&pod)
        {
            return pod;
        }
        if Instant::now() >= deadline {
            let namespace = pods.get(name).await.ok().and_then(|p| p.metadata.namespace).unwrap_or_default();
            let describe = stack.kubectl().args(["describe", "pod", "-n", &namespace, name]).output();
            let describe = describe.map(|o| String::from_utf8_lossy(&o.stdout).into_owned()).unwrap_or_default();
            panic!("timed out after {timeout:?} waiting for pod {name} to be {what}:\n{describe}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn statuses(pod: &Pod) -> Vec<ContainerStatus> {
    let status = pod.status.clone().unwrap_or_default();
    status
        .init_container_statuses
        .unwrap_or_default()
        .into_iter()
        .chain(status.container_statuses.unwrap_or_default())
        .collect()
}

fn running_and_ready(pod: &Pod) -> bool {
    let all = statuses(pod);
    all.len() == 2 && all.iter().all(|s| s.ready && s.state.as_ref().is_some_and(|st| st.running.is_some()))
}

fn phase(pod: &Pod) -> &str {
    pod.status.as_ref().and_then(|s| s.phase.as_deref()).unwrap_or("")
}

/// Stays alive until told to stop; SIGTERM ends it at once (PID 1 has no default handlers).
const IDLE: &str = "trap 'exit 0' TERM; sleep 2147483647 & wait";

#[tokio::test]
async fn the_real_node_is_ready_with_the_pinned_kubelet_beside_the_fake_nodes() {
    let stack = Stack::load();
    let nodes: Api<Node> = Api::all(stack.kube_client().await);
    let node = nodes.get(stack.var("MYSIMBDP_NODE_NAME")).await.expect("the real node is registered");
    let status = node.status.clone().expect("node status");
    let ready =
        status.conditions.unwrap_or_default().into_iter().find(|c| c.type_ == "Ready").expect("a Ready condition");
    assert_eq!(ready.status, "True", "Ready: {ready:?}");
    let info = status.node_info.expect("node info");
    assert_eq!(info.kubelet_version, stack.var("MYSIMBDP_KUBE_VERSION"));
    assert!(
        info.container_runtime_version.starts_with("containerd://2."),
        "runtime {}",
        info.container_runtime_version
    );
    let addresses = status.addresses.unwrap_or_default();
    assert!(
        addresses.iter().any(|a| a.type_ == "InternalIP" && a.address == stack.var("MYSIMBDP_NODE_IP")),
        "node addresses {addresses:?}"
    );
    let (key, value) = stack.var("MYSIMBDP_NODE_SELECTOR").split_once('=').expect("key=value");
    assert_eq!(node.metadata.labels.unwrap_or_default().get(key).map(String::as_str), Some(value));
    let taint_key = stack.var("MYSIMBDP_NODE_TAINT").split('=').next().unwrap_or_default().to_owned();
    if !taint_key.is_empty() {
        let taints = node.spec.and_then(|s| s.taints).unwrap_or_default();
        assert!(
            taints.iter().any(|t| t.key == taint_key),
            "the node keeps pods that do not ask for it away: {taints:?}"
        );
    }
    // KWOK's fake nodes stay for scale tests.
    for fake in stack.var("MYSIMBDP_KWOK_NODES").split_whitespace() {
        nodes.get(fake).await.unwrap_or_else(|e| panic!("fake node {fake}: {e}"));
    }
}

#[tokio::test]
async fn a_restricted_pod_with_a_native_sidecar_runs_and_reaches_the_stack() {
    let stack = Stack::load();
    let namespace = RestrictedNamespace::create(&stack, "it-node");
    let pods: Api<Pod> = Api::namespaced(stack.kube_client().await, &namespace.name);
    let image = stack.var("MYSIMBDP_TOOLBOX_IMAGE");
    let mut sidecar = container("sidecar", image, &["sh", "-c", &format!("echo sidecar up; {IDLE}")], "16Mi");
    sidecar["restartPolicy"] = "Always".into();
    let app = container("app", image, &["sh", "-c", &format!("echo app up; {IDLE}")], "16Mi");
    let created = Instant::now();
    pods.create(&PostParams::default(), &pod(&stack, "toolbox", "Never", vec![sidecar], vec![app]))
        .await
        .expect("the restricted profile admits the pod");
    let pod = wait_pod(
        &stack,
        &pods,
        "toolbox",
        "running with both containers ready",
        Duration::from_secs(90),
        running_and_ready,
    )
    .await;
    eprintln!("pod running and ready {:?} after it was created", created.elapsed());
    assert_eq!(pod.spec.and_then(|s| s.node_name).as_deref(), Some(stack.var("MYSIMBDP_NODE_NAME")));
    let pod_ip = pod.status.and_then(|s| s.pod_ip).expect("a pod IP");
    let subnet = stack.var("MYSIMBDP_NODE_CIDR").rsplit_once('.').expect("a.b.c.0/n").0.to_owned();
    assert!(pod_ip.starts_with(&format!("{subnet}.")), "pod IP {pod_ip} in {}", stack.var("MYSIMBDP_NODE_CIDR"));

    let ns = namespace.name.as_str();
    let exec = |container: &str, command: &[&str]| {
        let mut args = vec!["exec", "-n", ns, "toolbox", "-c", container, "--"];
        args.extend_from_slice(command);
        stack.kubectl_ok(&args)
    };
    assert_eq!(exec("app", &["id", "-u"]).trim(), "65532", "the app runs as the non-root user");
    assert_eq!(exec("sidecar", &["id", "-u"]).trim(), "65532");
    let logs = stack.kubectl_ok(&["logs", "-n", ns, "toolbox", "-c", "sidecar"]);
    assert!(logs.contains("sidecar up"), "sidecar logs: {logs:?}");
    let logs = stack.kubectl_ok(&["logs", "-n", ns, "toolbox", "-c", "app"]);
    assert!(logs.contains("app up"), "app logs: {logs:?}");

    // Pods reach the stack's servers at the node address, and have no route anywhere else.
    let node_ip = stack.var("MYSIMBDP_NODE_IP");
    let endpoints = [
        ("the API server", format!("{}:{}", stack.var("MYSIMBDP_POD_KUBE_HOST"), stack.var("MYSIMBDP_POD_KUBE_PORT"))),
        ("Kafka", stack.var("MYSIMBDP_POD_KAFKA_BOOTSTRAP").to_owned()),
        (
            "coredms",
            stack.var("MYSIMBDP_POD_COREDMS_URL").trim_start_matches("mongodb://").trim_end_matches('/').to_owned(),
        ),
    ];
    for (what, endpoint) in endpoints {
        let (host, port) = endpoint.rsplit_once(':').expect("host:port");
        assert_eq!(host, node_ip, "{what} is reached at the node address");
        let args = ["exec", "-n", ns, "toolbox", "-c", "app", "--", "nc", "-w", "5", host, port, "-e", "true"];
        let output = stack.kubectl().args(args).output().expect("kubectl runs");
        assert!(
            output.status.success(),
            "a pod cannot connect to {what} at {endpoint}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let routes = exec("app", &["ip", "-4", "route"]);
    assert!(!routes.contains("default"), "pods have no default route: {routes}");

    // Deleting the pod stops both containers and takes its object away.
    pods.delete("toolbox", &DeleteParams::default()).await.expect("delete the pod");
    wait_for("the pod to be gone", Duration::from_secs(60), || {
        let pods = pods.clone();
        async move { pods.get_opt("toolbox").await.ok().and_then(|p| p.is_none().then_some(())) }
    })
    .await;
}

#[tokio::test]
async fn a_container_over_its_memory_limit_is_oom_killed() {
    let stack = Stack::load();
    let namespace = RestrictedNamespace::create(&stack, "it-oom");
    let pods: Api<Pod> = Api::namespaced(stack.kube_client().await, &namespace.name);
    let image = stack.var("MYSIMBDP_TOOLBOX_IMAGE");
    // tail keeps the current line, and /dev/zero has no line end: it grows until the limit.
    let hog = container("hog", image, &["sh", "-c", "exec tail /dev/zero"], "24Mi");
    pods.create(&PostParams::default(), &pod(&stack, "hog", "Never", vec![], vec![hog])).await.expect("create the pod");
    let pod = wait_pod(&stack, &pods, "hog", "failed", Duration::from_secs(120), |p| phase(p) == "Failed").await;
    let terminated = statuses(&pod)
        .into_iter()
        .find_map(|s| s.state.and_then(|st| st.terminated))
        .expect("the container terminated");
    assert_eq!(terminated.reason.as_deref(), Some("OOMKilled"), "{terminated:?}");
    assert_eq!(terminated.exit_code, 137, "{terminated:?}");
}

/// The images `make images` imported, run for real: every binary of each image prints its
/// help (so the dynamic loader, the shared libraries and the user entry are all there).
#[tokio::test]
async fn every_image_of_make_images_runs_its_binaries() {
    let stack = Stack::load();
    let plan =
        Command::new("bash").arg(Stack::repo_dir().join("e2e/stack/images.sh")).arg("plan").output().expect("bash");
    assert!(plan.status.success(), "{}", String::from_utf8_lossy(&plan.stderr));
    let namespace = RestrictedNamespace::create(&stack, "it-images");
    let pods: Api<Pod> = Api::namespaced(stack.kube_client().await, &namespace.name);
    let mut names = Vec::new();
    for (i, line) in String::from_utf8_lossy(&plan.stdout).lines().enumerate() {
        let fields: Vec<&str> = line.split('\t').collect();
        let field = |key: &str| fields.iter().position(|f| *f == key).map(|i| fields[i + 1]).unwrap_or_default();
        for (j, reference) in field("image").split_whitespace().enumerate() {
            let listed = Command::new(stack.var("MYSIMBDP_CTR"))
                .args(["--address", stack.var("MYSIMBDP_CONTAINERD_ADDRESS"), "-n", "k8s.io", "images", "ls", "-q"])
                .output()
                .expect("ctr runs");
            assert!(
                String::from_utf8_lossy(&listed.stdout).lines().any(|l| l == reference),
                "{reference} is not in the node's containerd; run `make images`"
            );
            let containers = field("binaries")
                .split_whitespace()
                .map(|bin| container(&bin.replace('_', "-"), reference, &[bin, "--help"], "64Mi"))
                .collect();
            let name = format!("image-{i}-{j}");
            pods.create(&PostParams::default(), &pod(&stack, &name, "Never", vec![], containers))
                .await
                .unwrap_or_else(|e| panic!("a pod of {reference}: {e}"));
            names.push((name, reference.to_owned()));
        }
    }
    assert!(names.len() >= 4, "make images plans the operator, the sidecar and both tenants' images");
    for (name, reference) in names {
        let pod = wait_pod(&stack, &pods, &name, "finished", Duration::from_secs(120), |p| {
            matches!(phase(p), "Succeeded" | "Failed")
        })
        .await;
        for status in statuses(&pod) {
            let terminated = status.state.and_then(|s| s.terminated).expect("terminated");
            assert_eq!(terminated.exit_code, 0, "{} --help in {reference}: {terminated:?}", status.name);
        }
        let logs = stack.kubectl_ok(&["logs", "-n", &namespace.name, &name, "--all-containers"]);
        assert!(!logs.trim().is_empty(), "{reference} printed no help");
    }
}
