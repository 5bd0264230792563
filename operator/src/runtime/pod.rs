//! What every pod the platform runs for a tenant has in common, pure: the recommended labels,
//! the app container (contract environment, credentials from the tenant's Secret, resources,
//! a locked-down security context) and the restricted pod security settings.

use std::collections::BTreeMap;

use k8s_openapi::{
    api::core::v1::{
        Capabilities, Container, EnvFromSource, EnvVar, PodSecurityContext, ResourceRequirements, SeccompProfile,
        SecretEnvSource, SecurityContext,
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
