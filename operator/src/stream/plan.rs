//! The stream ingest manager's pure steps: whether an app can run in its tenant, how many
//! replicas it may have and should have now, what a pending monitor decision asks for, and the
//! environment every replica gets.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;
use mysimbdp_api::{StreamIngestApp, Tenant, stream::Decision, tenant::DeliveryGuarantee};
use mysimbdp_ingest_sdk::contract::env;

use crate::{
    conditions::{self, State},
    tenant::names::{DEAD_LETTER_TOPIC, REPORTS_TOPIC, TenantNames},
};

/// Whether the app can run in `tenant`; a failed `Ready` state says what to fix.
pub fn check(app: &StreamIngestApp, tenant: Option<&Tenant>) -> Result<(), State> {
    let Some(tenant) = tenant else {
        let namespace = app.namespace().unwrap_or_default();
        return Err(State::failed(
            conditions::READY,
            "NoTenant",
            format!("namespace {namespace} belongs to no tenant; create the app in a tenant's namespace"),
        ));
    };
    if tenant.metadata.deletion_timestamp.is_some() {
        return Err(State::failed(
            conditions::READY,
            "TenantLeaving",
            format!("tenant {} is being offboarded; the app stops with it", tenant.name_any()),
        ));
    }
    if !tenant.status.as_ref().is_some_and(|s| conditions::is_true(&s.conditions, conditions::READY)) {
        return Err(State::failed(
            conditions::READY,
            "TenantNotReady",
            format!("tenant {} is not Ready yet; the app starts once it is", tenant.name_any()),
        ));
    }
    let declared = &tenant.spec.agreement.kafka.topics;
    if let Some(topic) = app.spec.topics.iter().find(|t| !declared.iter().any(|d| &d.name == *t)) {
        let names: Vec<&str> = declared.iter().map(|d| d.name.as_str()).collect();
        return Err(State::failed(
            conditions::READY,
            "UnknownTopic",
            format!(
                "spec.topics names {topic:?}, which tenant {} does not declare (it has {names:?}); add it to the tenant's spec.agreement.kafka.topics or remove it here",
                tenant.name_any()
            ),
        ));
    }
    Ok(())
}

/// The most replicas the app may have, and what bounds it: its own maximum, the partitions of
/// its topics (more consumers than partitions would idle), and what the tenant's stream
/// replica quota leaves after its other apps (`others`).
pub fn cap(app: &StreamIngestApp, tenant: &Tenant, others: u32) -> (u32, String) {
    let mut cap = (app.spec.replicas.max, "spec.replicas.max".to_owned());
    let partitions = tenant
        .spec
        .agreement
        .kafka
        .topics
        .iter()
        .filter(|t| app.spec.topics.contains(&t.name))
        .map(|t| t.partitions)
        .max();
    if let Some(partitions) = partitions
        && partitions < cap.0
    {
        cap = (partitions, format!("its topics have at most {partitions} partitions"));
    }
    let quota = tenant.spec.agreement.compute.max_stream_replicas;
    let left = quota.saturating_sub(others);
    if left < cap.0 {
        cap = (
            left,
            format!("tenant {} allows {quota} stream replicas and its other apps use {others}", tenant.name_any()),
        );
    }
    cap
}

/// A decision of the monitor the manager has not carried out yet.
pub fn pending(app: &StreamIngestApp) -> Option<&Decision> {
    app.status.as_ref()?.last_decision.as_ref().filter(|d| d.applied_at.is_none())
}

/// What the manager should run now.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    /// Replicas.
    pub replicas: u32,
    /// The restart token (the time of the last restart).
    pub last_restart: Option<Time>,
}

/// Replicas and restart token: zero when suspended; otherwise the monitor's choice (a pending
/// scale, else the current count, else the minimum) kept within the minimum and `cap`.
pub fn target(app: &StreamIngestApp, cap: u32) -> Target {
    let status = app.status.clone().unwrap_or_default();
    let mut replicas = if status.desired_replicas > 0 { status.desired_replicas } else { app.spec.replicas.min };
    let mut last_restart = status.last_restart.clone();
    if let Some(decision) = pending(app) {
        match decision.action.as_str() {
            "ScaleUp" | "ScaleDown" => replicas = decision.to_replicas,
            "Restart" => last_restart = Some(decision.decided_at.clone()),
            _ => {}
        }
    }
    let replicas = if app.spec.suspended { 0 } else { replicas.max(app.spec.replicas.min).min(cap.max(1)) };
    Target { replicas, last_restart }
}

/// A digest of the tenant's credentials Secret (every key and value), so that replicas started
/// with other credentials can be told apart.
pub fn credentials_digest(secret: &k8s_openapi::api::core::v1::Secret) -> String {
    use sha2::Digest;
    let mut hasher = sha2::Sha256::new();
    for (key, value) in secret.data.iter().flatten() {
        hasher.update(key.as_bytes());
        hasher.update([0]);
        hasher.update(&value.0);
        hasher.update([0]);
    }
    hex::encode(&hasher.finalize()[..8])
}

/// The contract's environment of every replica, credentials and per-replica variables aside.
pub fn environment(app: &StreamIngestApp, tenant: &Tenant) -> BTreeMap<String, String> {
    let names = TenantNames::of(tenant);
    let prefix = &names.kafka_prefix;
    let topics: Vec<String> = app.spec.topics.iter().map(|t| format!("{prefix}{t}")).collect();
    let delivery = match tenant.spec.agreement.delivery {
        DeliveryGuarantee::AtMostOnce => "AtMostOnce",
        DeliveryGuarantee::AtLeastOnce => "AtLeastOnce",
        DeliveryGuarantee::EffectivelyOnce => "EffectivelyOnce",
    };
    let interval_ms = app.spec.monitoring.report_interval.get().as_millis();
    BTreeMap::from([
        (env::TENANT.to_owned(), names.tenant.clone()),
        (env::APP.to_owned(), app.name_any()),
        (env::DELIVERY.to_owned(), delivery.to_owned()),
        (env::COLLECTION.to_owned(), app.spec.target.collection.clone()),
        (env::TOPICS.to_owned(), topics.join(",")),
        (env::CONSUMER_GROUP.to_owned(), format!("{prefix}{}", app.spec.consumer_group)),
        (env::DEAD_LETTER_TOPIC.to_owned(), format!("{prefix}{DEAD_LETTER_TOPIC}")),
        (env::REPORTS_TOPIC.to_owned(), format!("{prefix}{REPORTS_TOPIC}")),
        (env::REPORT_INTERVAL_MS.to_owned(), interval_ms.to_string()),
    ])
}

#[cfg(test)]
mod tests {
    use k8s_openapi::jiff::Timestamp;

    use super::*;

    const TENANT: &str = "
apiVersion: mysimbdp.io/v1alpha1
kind: Tenant
metadata: {name: nimbus-weather}
spec:
  agreement:
    files: {formats: [JsonLines], maxFileSize: 2Mi, maxFilesPerDay: 10, maxBytesPerDay: 20Mi}
    delivery: EffectivelyOnce
    compute: {cpu: '2', memory: 2Gi, maxStreamReplicas: 4}
    kafka:
      topics: [{name: observations, partitions: 3}, {name: alerts, partitions: 1}]
      producerByteRate: 1Mi
      consumerByteRate: 1Mi
    coredms: {storageQuota: 1Gi}
status:
  conditions: [{type: Ready, status: 'True', reason: Ready, message: '', lastTransitionTime: '2026-01-01T00:00:00Z'}]
";

    fn app(extra: &str) -> StreamIngestApp {
        serde_yaml::from_str(&format!(
            "
apiVersion: mysimbdp.io/v1alpha1
kind: StreamIngestApp
metadata: {{name: observations, namespace: tenant-nimbus-weather}}
spec:
  container: {{image: 'r/w:1', command: [nimbus-weather-ingest]}}
  topics: [observations]
  consumerGroup: weather-ingest
  target: {{collection: observations}}
  replicas: {{min: 1, max: 5}}
{extra}"
        ))
        .unwrap()
    }

    fn tenant() -> Tenant {
        serde_yaml::from_str(TENANT).unwrap()
    }

    fn decision(action: &str, to: u32) -> String {
        format!(
            "status:\n  desiredReplicas: 2\n  lastDecision: {{action: {action}, reason: r, decidedAt: '2026-12-01T10:00:00Z', fromReplicas: 2, toReplicas: {to}}}\n"
        )
    }

    #[test]
    fn apps_must_consume_declared_topics_of_a_ready_tenant() {
        assert!(check(&app(""), Some(&tenant())).is_ok());
        let unknown = app("").spec.topics.clone();
        let mut bad = app("");
        bad.spec.topics = vec!["weather".into()];
        let error = check(&bad, Some(&tenant())).unwrap_err();
        assert_eq!(error.reason, "UnknownTopic");
        assert!(error.message.contains("\"weather\"") && error.message.contains("spec.agreement.kafka.topics"));
        assert_eq!(check(&app(""), None).unwrap_err().reason, "NoTenant");
        let mut not_ready = tenant();
        not_ready.status = None;
        assert_eq!(check(&app(""), Some(&not_ready)).unwrap_err().reason, "TenantNotReady");
        assert_eq!(unknown, vec!["observations".to_owned()]);
    }

    #[test]
    fn the_cap_is_the_tightest_of_max_partitions_and_quota() {
        assert_eq!(cap(&app(""), &tenant(), 0).0, 3, "3 partitions");
        assert!(cap(&app(""), &tenant(), 0).1.contains("3 partitions"));
        let (n, why) = cap(&app(""), &tenant(), 2);
        assert_eq!(n, 2);
        assert!(why.contains("allows 4 stream replicas and its other apps use 2"), "{why}");
        let mut small = app("");
        small.spec.replicas.max = 1;
        assert_eq!(cap(&small, &tenant(), 0), (1, "spec.replicas.max".to_owned()));
    }

    #[test]
    fn targets_follow_pending_decisions_within_bounds() {
        let cases = [
            (String::new(), 3, 1, false),
            (decision("ScaleUp", 3), 3, 3, false),
            (decision("ScaleUp", 3), 2, 2, false),
            (decision("ScaleDown", 1), 3, 1, false),
            (decision("Restart", 2), 3, 2, true),
            (decision("Notify", 2), 3, 2, false),
            (format!("  suspended: true\n{}", decision("ScaleUp", 3)), 3, 0, false),
        ];
        for (extra, cap, replicas, restarted) in cases {
            let target = target(&app(&extra), cap);
            assert_eq!(target.replicas, replicas, "{extra}");
            assert_eq!(target.last_restart.is_some(), restarted, "{extra}");
        }
        let mut applied = app(&decision("ScaleUp", 3));
        applied.status.as_mut().unwrap().last_decision.as_mut().unwrap().applied_at = Some(Time(Timestamp::UNIX_EPOCH));
        assert_eq!(target(&applied, 3).replicas, 2, "an applied decision is not applied again");
    }

    #[test]
    fn replicas_get_full_topic_and_group_names() {
        let env = environment(&app(""), &tenant());
        assert_eq!(env[env::TOPICS], "nimbus-weather.observations");
        assert_eq!(env[env::CONSUMER_GROUP], "nimbus-weather.weather-ingest");
        assert_eq!(env[env::REPORTS_TOPIC], "nimbus-weather.mysimbdp.reports");
        assert_eq!(env[env::DEAD_LETTER_TOPIC], "nimbus-weather.mysimbdp.dead-letter");
        assert_eq!(env[env::REPORT_INTERVAL_MS], "10000");
        assert_eq!(env[env::DELIVERY], "EffectivelyOnce");
    }
}
