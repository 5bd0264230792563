//! Whether an app fits its tenant's agreement (pure): what it asks for (CPU and memory per run
//! or replica, concurrency, replicas) against what the tenant's compute quota allows. A misfit
//! names the field, the limit and the fix, and says whether the app cannot run at all
//! (`blocking`: its runs or replicas could never be admitted) or runs capped.

use mysimbdp_api::{BatchIngestApp, StreamIngestApp, Tenant, common::ComputeResources, quantity::PositiveQuantity};

use crate::tenant::plan::Platform;

/// CPU of the metrics sidecar beside every stream replica, in the units of a Kubernetes quantity.
pub const SIDECAR_CPU: &str = "50m";
/// Memory of the metrics sidecar.
pub const SIDECAR_MEMORY: &str = "32Mi";
const SIDECAR_CPU_CORES: f64 = 0.05;
const SIDECAR_MEMORY_BYTES: f64 = 32.0 * 1024.0 * 1024.0;

/// One way an app asks for more than its tenant allows.
#[derive(Debug, Clone, PartialEq)]
pub struct Misfit {
    /// Condition reason.
    pub reason: &'static str,
    /// What is wrong, the limit and the fix.
    pub message: String,
    /// The app cannot run at all (rather than run capped).
    pub blocking: bool,
}

/// CPU cores and memory bytes of one instance of a container, with the platform's defaults
/// for what it leaves unset, and how the container asked for them.
fn need(resources: Option<&ComputeResources>, platform: &Platform) -> ((f64, String), (f64, String)) {
    let (cpu, memory): (&PositiveQuantity, &PositiveQuantity) = match resources {
        Some(r) => (&r.cpu, &r.memory),
        None => (&platform.default_app_cpu, &platform.default_app_memory),
    };
    ((cpu.value(), cpu.to_string()), (memory.value(), memory.to_string()))
}

fn fmt(value: f64) -> String {
    if value.fract() == 0.0 { format!("{value:.0}") } else { format!("{value:.2}") }
}

/// Each instance's CPU and memory against the tenant's totals; `extra` is what the platform
/// adds beside each instance (the sidecar).
fn resources(
    resources: Option<&ComputeResources>,
    tenant: &Tenant,
    platform: &Platform,
    instances: u32,
    what: &str,
    extra: (f64, f64),
) -> Vec<Misfit> {
    let compute = &tenant.spec.agreement.compute;
    let name = tenant.metadata.name.as_deref().unwrap_or_default();
    let ((cpu, cpu_text), (memory, memory_text)) = need(resources, platform);
    let field = if resources.is_some() { "spec.container.resources" } else { "the platform's default resources" };
    let mut out = Vec::new();
    let n = f64::from(instances.max(1));
    for (resource, asked, asked_text, extra, allowed, allowed_text) in [
        ("cpu", cpu, cpu_text, extra.0, compute.cpu.value(), compute.cpu.to_string()),
        ("memory", memory, memory_text, extra.1, compute.memory.value(), compute.memory.to_string()),
    ] {
        let each = asked + extra;
        if each > allowed {
            out.push(Misfit {
                reason: "ExceedsQuota",
                message: format!(
                    "{field}.{resource} asks for {asked_text} per {what}{}; tenant {name} allows {allowed_text} in all (spec.agreement.compute.{resource}), so no {what} could ever start; lower {resource} below {allowed_text}",
                    if extra > 0.0 { " plus the metrics sidecar" } else { "" }
                ),
                blocking: true,
            });
        } else if each * n > allowed * (1.0 + 1e-9) {
            out.push(Misfit {
                reason: "ExceedsQuota",
                message: format!(
                    "{} {what}s of {asked_text} {resource} each{} need {} in all; tenant {name} allows {allowed_text} (spec.agreement.compute.{resource}), so at most {} run at once; lower {resource} or the number of {what}s",
                    instances,
                    if extra > 0.0 { " plus the metrics sidecar" } else { "" },
                    fmt(each * n),
                    fmt((allowed / each).floor()),
                ),
                blocking: false,
            });
        }
    }
    out
}

/// How a BatchIngestApp fits its tenant: its concurrency and each run's resources.
pub fn batch(app: &BatchIngestApp, tenant: &Tenant, platform: &Platform) -> Vec<Misfit> {
    let compute = &tenant.spec.agreement.compute;
    let name = tenant.metadata.name.as_deref().unwrap_or_default();
    let mut out = Vec::new();
    let allowed = compute.max_concurrent_batch_runs;
    if app.spec.concurrency > allowed {
        out.push(Misfit {
            reason: "ExceedsAgreement",
            message: format!(
                "spec.concurrency is {}; tenant {name} allows at most {allowed} concurrent batch run(s) (spec.agreement.compute.maxConcurrentBatchRuns), so runs are capped at {allowed}; lower spec.concurrency to {allowed}",
                app.spec.concurrency
            ),
            blocking: false,
        });
    }
    let runs = app.spec.concurrency.min(allowed);
    out.extend(resources(app.spec.container.resources.as_ref(), tenant, platform, runs, "run", (0.0, 0.0)));
    out
}

/// How a StreamIngestApp fits its tenant: its replicas and each replica's resources (the
/// app's and its metrics sidecar's).
pub fn stream(app: &StreamIngestApp, tenant: &Tenant, platform: &Platform) -> Vec<Misfit> {
    let compute = &tenant.spec.agreement.compute;
    let name = tenant.metadata.name.as_deref().unwrap_or_default();
    let mut out = Vec::new();
    let allowed = compute.max_stream_replicas;
    if app.spec.replicas.min > allowed {
        out.push(Misfit {
            reason: "ExceedsAgreement",
            message: format!(
                "spec.replicas.min is {}; tenant {name} allows at most {allowed} stream replica(s) in all (spec.agreement.compute.maxStreamReplicas), so the app runs at most {allowed}; lower spec.replicas.min to {allowed}",
                app.spec.replicas.min
            ),
            blocking: false,
        });
    }
    let replicas = app.spec.replicas.min.min(allowed);
    out.extend(resources(
        app.spec.container.resources.as_ref(),
        tenant,
        platform,
        replicas,
        "replica",
        (SIDECAR_CPU_CORES, SIDECAR_MEMORY_BYTES),
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn platform() -> Platform {
        Platform {
            max_cpu: 64.0,
            max_memory: 1e12,
            max_partitions: 100,
            max_storage: 1e12,
            default_app_cpu: "500m".parse().unwrap(),
            default_app_memory: "256Mi".parse().unwrap(),
            egress: vec![],
            platform_topic_partitions: 1,
            staging_claim: false,
            owner_role: mysimbdp_api::constants::TENANT_OWNER_ROLE.into(),
            viewer_role: mysimbdp_api::constants::TENANT_VIEWER_ROLE.into(),
        }
    }

    fn tenant() -> Tenant {
        serde_yaml::from_str(
            "apiVersion: mysimbdp.io/v1alpha1\nkind: Tenant\nmetadata: {name: small}\nspec:\n  agreement:\n    files: {formats: [Csv], maxFileSize: 1Mi, maxFilesPerDay: 10, maxBytesPerDay: 10Mi}\n    compute: {cpu: '1', memory: 1Gi, maxConcurrentBatchRuns: 1, maxStreamReplicas: 1}\n    kafka: {producerByteRate: 1Mi, consumerByteRate: 1Mi}\n    coredms: {storageQuota: 1Gi}\n",
        )
        .unwrap()
    }

    fn batch_app(extra: &str) -> BatchIngestApp {
        serde_yaml::from_str(&format!(
            "apiVersion: mysimbdp.io/v1alpha1\nkind: BatchIngestApp\nmetadata: {{name: a, namespace: t}}\nspec:\n  container: {{image: i, command: [c]{extra}}}\n  files: {{formats: [Csv]}}\n  target: {{collection: c}}\n"
        ))
        .unwrap()
    }

    #[test]
    fn the_silent_cases_name_the_field_the_limit_and_the_fix() {
        let (tenant, platform) = (tenant(), platform());
        assert_eq!(batch(&batch_app(""), &tenant, &platform), []);
        let memory = batch(&batch_app(", resources: {cpu: '1', memory: 1Pi}"), &tenant, &platform);
        assert_eq!(memory.len(), 1);
        assert!(memory[0].blocking);
        assert!(memory[0].message.contains("spec.container.resources.memory asks for 1Pi"), "{}", memory[0].message);
        assert!(memory[0].message.contains("spec.agreement.compute.memory"), "{}", memory[0].message);
        let cpu = batch(&batch_app(", resources: {cpu: '64', memory: 1Mi}"), &tenant, &platform);
        assert!(cpu[0].message.contains("cpu asks for 64") && cpu[0].blocking, "{cpu:?}");

        let mut concurrent = batch_app("");
        concurrent.spec.concurrency = 50;
        let misfits = batch(&concurrent, &tenant, &platform);
        assert_eq!(misfits.len(), 1);
        assert!(!misfits[0].blocking);
        assert!(misfits[0].message.contains("spec.concurrency is 50"), "{}", misfits[0].message);
        assert!(misfits[0].message.contains("maxConcurrentBatchRuns"), "{}", misfits[0].message);

        let stream_app: StreamIngestApp = serde_yaml::from_str(
            "apiVersion: mysimbdp.io/v1alpha1\nkind: StreamIngestApp\nmetadata: {name: s, namespace: t}\nspec:\n  container: {image: i, command: [c]}\n  topics: [o]\n  consumerGroup: g\n  target: {collection: c}\n  replicas: {min: 5, max: 6}\n",
        )
        .unwrap();
        let misfits = stream(&stream_app, &tenant, &platform);
        assert!(misfits[0].message.contains("spec.replicas.min is 5"), "{misfits:?}");
        assert!(misfits[0].message.contains("runs at most 1"), "{misfits:?}");
    }

    #[test]
    fn runs_that_fit_alone_but_not_together_are_capped_not_blocked() {
        let mut app = batch_app(", resources: {cpu: 600m, memory: 100Mi}");
        let mut roomy = tenant();
        roomy.spec.agreement.compute.max_concurrent_batch_runs = 2;
        app.spec.concurrency = 2;
        let misfits = batch(&app, &roomy, &platform());
        assert_eq!(misfits.len(), 1, "{misfits:?}");
        assert!(!misfits[0].blocking);
        assert!(misfits[0].message.contains("at most 1 run at once"), "{}", misfits[0].message);
    }
}
