//! What every pod the platform runs for a tenant has in common, pure: the recommended labels,
//! the app container (contract environment, credentials from the tenant's Secret, resources,
//! a locked-down security context) and the restricted pod security settings.

use std::collections::BTreeMap;

use k8s_openapi::{
    api::core::v1::{
        Capabilities, Container, EnvFromSource, EnvVar, Pod, PodSecurityContext, ResourceRequirements, SeccompProfile,
        SecretEnvSource, SecurityContext, Toleration,
    },
    apimachinery::pkg::{api::resource::Quantity, apis::meta::v1::OwnerReference},
};
use mysimbdp_api::{
    common::ContainerSpec,
    constants::{
        API_VERSION, LABEL_COMPONENT, LABEL_INSTANCE, LABEL_MANAGED_BY, LABEL_NAME, LABEL_PART_OF, LABEL_TENANT,
        MANAGED_BY, PART_OF,
    },
};

/// Where tenant pods may run and how their images are had: the nodes the platform dedicates to
/// them (a node selector), the taints those nodes carry (tolerations), and the image pull
/// policy (e.g. `Never` on a cluster whose images are loaded onto its nodes).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Placement {
    /// Node labels the pods must land on.
    pub node_selector: BTreeMap<String, String>,
    /// Taints the pods tolerate.
    pub tolerations: Vec<Toleration>,
    /// `Always`, `IfNotPresent` or `Never` for every container; the cluster's default when unset.
    pub image_pull_policy: Option<String>,
}

impl Placement {
    /// Sets the placement on a pod spec.
    pub fn apply(&self, spec: &mut k8s_openapi::api::core::v1::PodSpec) {
        if !self.node_selector.is_empty() {
            spec.node_selector = Some(self.node_selector.clone());
        }
        if !self.tolerations.is_empty() {
            spec.tolerations = Some(self.tolerations.clone());
        }
        if let Some(policy) = &self.image_pull_policy {
            for container in spec.containers.iter_mut().chain(spec.init_containers.iter_mut().flatten()) {
                container.image_pull_policy = Some(policy.clone());
            }
        }
    }
}

/// Parses a toleration written `KEY[=VALUE]:EFFECT` (`EFFECT` one of NoSchedule,
/// PreferNoSchedule, NoExecute), as `kubectl taint` writes taints.
pub fn parse_toleration(text: &str) -> Result<Toleration, String> {
    let (key_value, effect) = text
        .rsplit_once(':')
        .ok_or_else(|| format!("{text:?} is not KEY[=VALUE]:EFFECT (e.g. dedicated=tenants:NoSchedule)"))?;
    if !["NoSchedule", "PreferNoSchedule", "NoExecute"].contains(&effect) {
        return Err(format!("{text:?}: the effect {effect:?} is not NoSchedule, PreferNoSchedule or NoExecute"));
    }
    let (key, value) = match key_value.split_once('=') {
        Some((key, value)) => (key, Some(value.to_owned())),
        None => (key_value, None),
    };
    if key.is_empty() {
        return Err(format!("{text:?}: the key is empty"));
    }
    Ok(Toleration {
        key: Some(key.to_owned()),
        operator: Some(if value.is_some() { "Equal" } else { "Exists" }.to_owned()),
        value,
        effect: Some(effect.to_owned()),
        toleration_seconds: None,
    })
}

/// The user and group tenant containers run as.
pub const RUN_AS: i64 = 65532;

/// Recommended labels of an object that runs `app` of `tenant` as `component`.
pub fn labels(name: &str, component: &str, app: &str, tenant: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (LABEL_NAME.to_owned(), name.to_owned()),
        (LABEL_INSTANCE.to_owned(), app.to_owned()),
        (LABEL_COMPONENT.to_owned(), component.to_owned()),
        (LABEL_PART_OF.to_owned(), PART_OF.to_owned()),
        (LABEL_MANAGED_BY.to_owned(), MANAGED_BY.to_owned()),
        (LABEL_TENANT.to_owned(), tenant.to_owned()),
    ])
}

/// The controlling owner reference to a mysimbdp resource.
pub fn owner(kind: &str, name: &str, uid: &str) -> OwnerReference {
    OwnerReference {
        api_version: API_VERSION.into(),
        kind: kind.into(),
        name: name.into(),
        uid: uid.into(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// Plain environment variables, in order.
pub fn env_vars<'a>(vars: impl IntoIterator<Item = (&'a String, &'a String)>) -> Vec<EnvVar> {
    vars.into_iter().map(|(k, v)| EnvVar { name: k.clone(), value: Some(v.clone()), value_from: None }).collect()
}

/// No privilege, no capabilities, a read-only root file system, never root.
pub fn locked_down() -> SecurityContext {
    SecurityContext {
        allow_privilege_escalation: Some(false),
        capabilities: Some(Capabilities { drop: Some(vec!["ALL".into()]), add: None }),
        read_only_root_filesystem: Some(true),
        run_as_non_root: Some(true),
        ..SecurityContext::default()
    }
}

/// The pod-level half of the restricted Pod Security profile.
pub fn restricted_pod() -> PodSecurityContext {
    PodSecurityContext {
        run_as_non_root: Some(true),
        run_as_user: Some(RUN_AS),
        run_as_group: Some(RUN_AS),
        seccomp_profile: Some(SeccompProfile { type_: "RuntimeDefault".into(), localhost_profile: None }),
        ..PodSecurityContext::default()
    }
}

/// Requests equal to limits, from the app's resources.
pub fn resources(spec: &ContainerSpec) -> Option<ResourceRequirements> {
    spec.resources.as_ref().map(|r| {
        let amounts = BTreeMap::from([
            ("cpu".to_owned(), Quantity(r.cpu.to_string())),
            ("memory".to_owned(), Quantity(r.memory.to_string())),
        ]);
        ResourceRequirements {
            limits: Some(amounts.clone()),
            requests: Some(amounts),
            ..ResourceRequirements::default()
        }
    })
}

/// The tenant app's container: its image, command and args, its own variables then the
/// contract's `env`, and every key of `credentials_secret` as a variable.
pub fn app_container(spec: &ContainerSpec, env: Vec<EnvVar>, credentials_secret: &str) -> Container {
    let mut all = env_vars(spec.env.iter().map(|e| (&e.name, &e.value)));
    all.extend(env);
    Container {
        name: "app".into(),
        image: Some(spec.image.clone()),
        command: Some(spec.command.clone()),
        args: (!spec.args.is_empty()).then(|| spec.args.clone()),
        env: Some(all),
        env_from: Some(vec![secret_env(credentials_secret)]),
        resources: resources(spec),
        security_context: Some(locked_down()),
        ..Container::default()
    }
}

/// Every key of a Secret as environment variables.
pub fn secret_env(secret: &str) -> EnvFromSource {
    EnvFromSource {
        secret_ref: Some(SecretEnvSource { name: secret.to_owned(), optional: Some(false) }),
        ..EnvFromSource::default()
    }
}

/// Why a pod's containers are stuck rather than starting, in words that say what to fix: an
/// image that cannot be pulled or does not exist on the node, a configuration that cannot
/// be made, or a crash loop (pure). `None` while they are starting or running normally.
pub fn waiting_problem(pods: &[Pod]) -> Option<String> {
    pods.iter().find_map(|pod| {
        let name = pod.metadata.name.as_deref().unwrap_or("a pod");
        let status = pod.status.as_ref()?;
        let statuses = status.init_container_statuses.iter().flatten().chain(status.container_statuses.iter().flatten());
        statuses.into_iter().find_map(|container| {
            let waiting = container.state.as_ref()?.waiting.as_ref()?;
            let reason = waiting.reason.as_deref()?;
            let detail = waiting.message.as_deref().map(|m| format!(": {m}")).unwrap_or_default();
            let fix = match reason {
                "ErrImagePull" | "ImagePullBackOff" | "ErrImageNeverPull" | "InvalidImageName" => format!(
                    "image {:?} of container {} cannot be had; check spec.container.image (and that it is on the registry or the node)",
                    container.image, container.name
                ),
                "CreateContainerConfigError" | "CreateContainerError" | "RunContainerError" => {
                    format!("container {} cannot be created or started; check spec.container", container.name)
                }
                "CrashLoopBackOff" => format!(
                    "container {} keeps exiting ({} restarts); see `kubectl logs {name} -c {}`",
                    container.name, container.restart_count, container.name
                ),
                _ => return None,
            };
            Some(format!("pod {name}: {reason}{detail}; {fix}"))
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(yaml: &str) -> Pod {
        serde_yaml::from_str(yaml).unwrap()
    }

    #[test]
    fn tolerations_read_like_taints() {
        let t = parse_toleration("mysimbdp.io/node=real:NoSchedule").unwrap();
        assert_eq!(
            (t.key.as_deref(), t.operator.as_deref(), t.value.as_deref()),
            (Some("mysimbdp.io/node"), Some("Equal"), Some("real"))
        );
        assert_eq!(parse_toleration("gpu:NoExecute").unwrap().operator.as_deref(), Some("Exists"));
        assert!(parse_toleration("gpu").unwrap_err().contains("KEY[=VALUE]:EFFECT"));
        assert!(parse_toleration("gpu:Never").unwrap_err().contains("effect"));
    }

    #[test]
    fn stuck_containers_are_explained_and_starting_ones_are_not() {
        let missing = pod(
            "metadata: {name: obs-1}\nstatus:\n  containerStatuses:\n  - {name: app, image: 'r/missing:1', imageID: '', ready: false, restartCount: 0, state: {waiting: {reason: ErrImageNeverPull, message: 'image is not present with pull policy of Never'}}}\n",
        );
        let problem = waiting_problem(&[missing]).unwrap();
        assert!(problem.contains("ErrImageNeverPull") && problem.contains("r/missing:1"), "{problem}");
        assert!(problem.contains("spec.container.image"), "{problem}");
        let starting = pod(
            "metadata: {name: obs-2}\nstatus:\n  containerStatuses:\n  - {name: app, image: 'r/w:1', imageID: '', ready: false, restartCount: 0, state: {waiting: {reason: ContainerCreating}}}\n",
        );
        assert_eq!(waiting_problem(&[starting]), None);
        let crashing = pod(
            "metadata: {name: obs-3}\nstatus:\n  initContainerStatuses:\n  - {name: metrics-sidecar, image: 's:1', imageID: '', ready: false, restartCount: 4, state: {waiting: {reason: CrashLoopBackOff}}}\n",
        );
        assert!(waiting_problem(&[crashing]).unwrap().contains("4 restarts"));
    }
}
