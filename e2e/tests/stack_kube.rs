//! The local control plane is a real Kubernetes of the pinned version: fake nodes are Ready,
//! a Job's pod runs to Succeeded on them, and kubectl and helm report real versions.

use std::time::Duration;

use k8s_openapi::api::{
    batch::v1::Job,
    core::v1::{Node, Pod},
};
use kube::{
    Api, Client, Config,
    api::{DeleteParams, ListParams, PostParams},
    config::{KubeConfigOptions, Kubeconfig},
};
use mysimbdp_e2e::{Stack, unique, wait_for};

async fn client(stack: &Stack) -> Client {
    let kubeconfig = Kubeconfig::read_from(stack.var("KUBECONFIG")).expect("kubeconfig");
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await.expect("config");
    Client::try_from(config).expect("client")
}

#[tokio::test]
async fn fake_nodes_are_ready() {
    let stack = Stack::load();
    let nodes: Api<Node> = Api::all(client(&stack).await);
    let ready: Vec<String> = nodes
        .list(&ListParams::default().labels("type=kwok"))
        .await
        .expect("list nodes")
        .into_iter()
        .filter(|n| {
            n.status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
        })
        .filter_map(|n| n.metadata.name)
        .collect();
    assert!(ready.len() >= 2, "Ready fake nodes: {ready:?}");
}

#[tokio::test]
async fn a_jobs_pod_succeeds_on_a_fake_node_with_its_termination_message() {
    let stack = Stack::load();
    let client = client(&stack).await;
    let name = unique("it-job");
    let job: Job = serde_json::from_value(serde_json::json!({
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": { "name": name },
        "spec": {
            "backoffLimit": 0,
            "template": {
                "metadata": { "annotations": { "mysimbdp.io/fake-termination-message": "{\"rows\":42}" } },
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [{ "name": "app", "image": "busybox", "command": ["true"] }]
                }
            }
        }
    }))
    .unwrap();
    let jobs: Api<Job> = Api::default_namespaced(client.clone());
    jobs.create(&PostParams::default(), &job).await.expect("create job");

    let pods: Api<Pod> = Api::default_namespaced(client);
    let selector = format!("job-name={name}");
    let pod = wait_for("the job's pod to succeed", Duration::from_secs(60), || {
        let (pods, selector) = (pods.clone(), selector.clone());
        async move {
            let list = pods.list(&ListParams::default().labels(&selector)).await.ok()?;
            list.into_iter().find(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Succeeded"))
        }
    })
    .await;
    let node = pod.spec.as_ref().and_then(|s| s.node_name.clone()).unwrap_or_default();
    assert!(node.starts_with("kwok-node-"), "scheduled on {node:?}");
    let terminated = pod
        .status
        .and_then(|s| s.container_statuses)
        .and_then(|c| c.into_iter().next())
        .and_then(|c| c.state)
        .and_then(|s| s.terminated)
        .expect("container terminated");
    assert_eq!(terminated.exit_code, 0);
    assert_eq!(terminated.message.as_deref(), Some("{\"rows\":42}"));

    let complete = wait_for("the job to complete", Duration::from_secs(60), || {
        let (jobs, name) = (jobs.clone(), name.clone());
        async move { jobs.get(&name).await.ok()?.status?.succeeded.filter(|&n| n == 1) }
    })
    .await;
    assert_eq!(complete, 1);
    jobs.delete(&name, &DeleteParams::background()).await.expect("delete job");
}

#[test]
fn kubectl_and_helm_report_the_pinned_versions() {
    let stack = Stack::load();
    let kubectl = stack.kubectl().args(["version", "-o", "json"]).output().expect("kubectl runs");
    assert!(kubectl.status.success(), "{}", String::from_utf8_lossy(&kubectl.stderr));
    let versions: serde_json::Value = serde_json::from_slice(&kubectl.stdout).expect("JSON");
    let pinned = stack.var("MYSIMBDP_KUBE_VERSION");
    assert_eq!(versions["clientVersion"]["gitVersion"], pinned);
    assert_eq!(versions["serverVersion"]["gitVersion"], pinned);

    let helm = std::process::Command::new(stack.var("MYSIMBDP_HELM"))
        .args(["version", "--template", "{{.Version}}"])
        .output()
        .expect("helm runs");
    let versions = std::fs::read_to_string(Stack::repo_dir().join("e2e/stack/versions.env")).unwrap();
    let pinned = versions.lines().find_map(|l| l.strip_prefix("HELM_VERSION=")).expect("HELM_VERSION pinned");
    assert_eq!(String::from_utf8_lossy(&helm.stdout), pinned);
}
