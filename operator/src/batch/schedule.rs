//! The batch manager's pure decisions: which app takes a staged file, how long a failed file
//! waits and how many attempts it gets, which folder a file of each status lives in, and how
//! free run slots are shared out fairly among tenants and their apps. No I/O: table tests.

use std::{sync::Arc, time::Duration};

use kube::ResourceExt;
use mysimbdp_api::{BatchIngestApp, common::FileFormat, tenant::DeliveryGuarantee};

use super::ledger::FileStatus;
use crate::staging::FileState;

/// The app of `tenant` that takes a file: the first by name whose selection matches it.
pub fn select_app<'a>(apps: &'a [Arc<BatchIngestApp>], file: &str, format: FileFormat) -> Option<&'a BatchIngestApp> {
    let mut sorted: Vec<&BatchIngestApp> = apps.iter().map(AsRef::as_ref).collect();
    sorted.sort_by_key(|a| a.name_any());
    sorted.into_iter().find(|app| {
        let selector = &app.spec.files;
        let by_name = selector
            .pattern
            .as_deref()
            .is_none_or(|p| globset::Glob::new(p).is_ok_and(|g| g.compile_matcher().is_match(file)));
        let by_format = selector.formats.is_empty() || selector.formats.contains(&format);
        by_name && by_format
    })
}

/// The wait before attempt `attempts + 1`: `backoff` doubled per failed attempt, capped.
pub fn backoff(app: Option<&BatchIngestApp>, attempts: i32) -> Duration {
    let (first, cap) = app.map_or((Duration::from_secs(10), Duration::from_secs(300)), |a| {
        (a.spec.retry.backoff.get(), a.spec.retry.max_backoff.get())
    });
    let doublings = u32::try_from(attempts.saturating_sub(1)).unwrap_or(0).min(20);
    first.saturating_mul(2u32.saturating_pow(doublings)).min(cap)
}

/// Most attempts per file: the app's policy, or one when the tenant's delivery is at-most-once.
pub fn max_attempts(app: Option<&BatchIngestApp>, delivery: DeliveryGuarantee) -> i32 {
    match delivery {
        DeliveryGuarantee::AtMostOnce => 1,
        _ => app.map_or(3, |a| i32::try_from(a.spec.retry.max_attempts).unwrap_or(3)),
    }
}

/// What the scheduler knows of one tenant: its concurrency and its apps with waiting files.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(test, derive(serde::Deserialize))]
pub struct TenantQueue {
    /// The tenant.
    pub tenant: String,
    /// Most runs of the tenant at once (its agreement).
    pub limit: usize,
    /// Its runs in progress.
    pub running: usize,
    /// Its apps that have files waiting.
    #[cfg_attr(test, serde(default))]
    pub apps: Vec<AppQueue>,
}

/// What the scheduler knows of one app: its concurrency and its waiting files.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(test, derive(serde::Deserialize))]
#[cfg_attr(test, serde(rename_all = "camelCase"))]
pub struct AppQueue {
    /// The app.
    pub app: String,
    /// Most runs of the app at once (zero while it is suspended).
    pub limit: usize,
    /// Its runs in progress.
    pub running: usize,
    /// Most files per run.
    pub files_per_run: usize,
    /// When each waiting file was accepted (milliseconds), oldest first; runs take files from
    /// the front.
    pub waiting: Vec<i64>,
}

/// One run to start: the app of a tenant, on the first `files` of its waiting files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Start {
    /// The tenant.
    pub tenant: String,
    /// The app.
    pub app: String,
    /// How many of its waiting files the run takes.
    pub files: usize,
}

/// Shares `free` run slots out among tenants, one slot at a time (pure). Each slot goes to the
/// tenant with the fewest runs among those that can start one (below their own limit, with an
/// app below its concurrency that has files waiting); among tenants with as many runs, to the
/// first after `last_served` by name, round-robin. Within the tenant, the app with the fewest
/// runs goes first, then the one whose oldest waiting file was accepted first. A tenant with
/// many files therefore takes the slots no one else wants, and gives the next free slot up as
/// soon as another tenant has a file waiting.
pub fn plan_starts(free: usize, tenants: &[TenantQueue], last_served: Option<&str>) -> Vec<Start> {
    let mut tenants: Vec<TenantQueue> = tenants.to_vec();
    // Files already planned, per tenant and app.
    let mut taken: Vec<Vec<usize>> = tenants.iter().map(|t| vec![0; t.apps.len()]).collect();
    let mut last = last_served.map(str::to_owned);
    let mut starts = Vec::new();
    while starts.len() < free {
        let ready_app = |tenant: &TenantQueue, taken: &[usize]| {
            tenant
                .apps
                .iter()
                .enumerate()
                .filter(|(i, a)| a.running < a.limit && taken[*i] < a.waiting.len())
                .min_by_key(|(i, a)| (a.running, a.waiting[taken[*i]], a.app.as_str()))
                .map(|(i, _)| i)
        };
        // Round-robin among equals: the names after the last served one come first.
        let after_last = |name: &str| last.as_deref().is_some_and(|l| name <= l);
        let Some((t, a)) = tenants
            .iter()
            .enumerate()
            .filter(|(_, tenant)| tenant.running < tenant.limit)
            .filter_map(|(t, tenant)| ready_app(tenant, &taken[t]).map(|a| (t, a)))
            .min_by_key(|(t, _)| {
                let tenant = &tenants[*t];
                (tenant.running, after_last(&tenant.tenant), tenant.tenant.as_str())
            })
        else {
            break;
        };
        let tenant = &mut tenants[t];
        let app = &mut tenant.apps[a];
        let files = app.files_per_run.max(1).min(app.waiting.len() - taken[t][a]);
        taken[t][a] += files;
        app.running += 1;
        tenant.running += 1;
        last = Some(tenant.tenant.clone());
        starts.push(Start { tenant: tenant.tenant.clone(), app: app.app.clone(), files });
    }
    starts
}

/// The folder a file of a status lives in.
pub fn folder_of(status: FileStatus) -> FileState {
    match status {
        FileStatus::Queued | FileStatus::Running | FileStatus::RetryWait => FileState::Processing,
        FileStatus::Ingested => FileState::Ingested,
        FileStatus::Rejected => FileState::Rejected,
        FileStatus::DeadLettered => FileState::Failed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app(yaml_spec: &str) -> Arc<BatchIngestApp> {
        let yaml = format!(
            "apiVersion: mysimbdp.io/v1alpha1\nkind: BatchIngestApp\nmetadata: {{name: {}, namespace: t}}\nspec:\n  container: {{image: i, command: [c]}}\n  target: {{collection: c}}\n{yaml_spec}",
            yaml_spec.lines().next().unwrap_or_default().trim_start_matches("# ")
        );
        Arc::new(serde_yaml::from_str(&yaml).unwrap())
    }

    #[test]
    fn files_go_to_the_first_app_by_name_whose_selection_matches() {
        let apps = vec![
            app("# zeta\n  files: {formats: [Csv]}"),
            app("# flights\n  files: {pattern: 'flights_*.csv'}"),
            app("# stations\n  files: {formats: [JsonLines]}"),
        ];
        let pick = |name, format| select_app(&apps, name, format).map(|a| a.name_any());
        assert_eq!(pick("flights_2013_01.csv", FileFormat::Csv).as_deref(), Some("flights"));
        assert_eq!(pick("planes.csv", FileFormat::Csv).as_deref(), Some("zeta"));
        assert_eq!(pick("s.jsonl", FileFormat::JsonLines).as_deref(), Some("stations"));
        assert_eq!(select_app(&apps[..1], "s.jsonl", FileFormat::JsonLines).map(|a| a.name_any()), None);
    }

    #[test]
    fn backoff_doubles_up_to_the_cap_and_at_most_once_never_retries() {
        let a = app("# a\n  files: {formats: [Csv]}\n  retry: {maxAttempts: 4, backoff: 5s, maxBackoff: 12s}");
        let waits: Vec<u64> = (1..=4).map(|n| backoff(Some(&a), n).as_secs()).collect();
        assert_eq!(waits, [5, 10, 12, 12]);
        assert_eq!(max_attempts(Some(&a), DeliveryGuarantee::AtLeastOnce), 4);
        assert_eq!(max_attempts(Some(&a), DeliveryGuarantee::AtMostOnce), 1);
        assert_eq!(backoff(None, 1), Duration::from_secs(10));
    }

    /// The starts [`plan_starts`] gives for tenants written as YAML, as `tenant/app×files`.
    fn plan(free: usize, yaml: &str, last_served: Option<&str>) -> Vec<String> {
        let tenants: Vec<TenantQueue> = serde_yaml::from_str(yaml).unwrap();
        plan_starts(free, &tenants, last_served)
            .into_iter()
            .map(|s| format!("{}/{}×{}", s.tenant, s.app, s.files))
            .collect()
    }

    #[test]
    fn a_free_slot_goes_to_the_tenant_with_the_fewest_runs_whatever_its_queue() {
        // The flood holds every slot it may; one frees, and the calm tenant's single file
        // gets it, even though the flood was not the last served and has more waiting.
        let yaml = "
- tenant: flood-air
  limit: 2
  running: 1
  apps: [{app: flights, limit: 2, running: 1, filesPerRun: 1, waiting: [1, 2, 3, 4, 5, 6, 7, 8]}]
- tenant: calm-air
  limit: 2
  running: 0
  apps: [{app: flights, limit: 2, running: 0, filesPerRun: 1, waiting: [9]}]
";
        assert_eq!(plan(1, yaml, Some("calm-air")), ["calm-air/flights×1"]);
        assert_eq!(plan(1, yaml, Some("flood-air")), ["calm-air/flights×1"]);
        assert_eq!(plan(1, yaml, None), ["calm-air/flights×1"]);
        // With more slots, the flood takes what the calm tenant cannot use, up to its limit.
        assert_eq!(plan(4, yaml, None), ["calm-air/flights×1", "flood-air/flights×1"]);
    }

    #[test]
    fn tenants_with_as_many_runs_take_turns_after_the_last_served() {
        let yaml = "
- {tenant: a, limit: 9, running: 0, apps: [{app: x, limit: 9, running: 0, filesPerRun: 2, waiting: [1, 2, 3, 4, 5]}]}
- {tenant: b, limit: 9, running: 0, apps: [{app: x, limit: 9, running: 0, filesPerRun: 1, waiting: [1, 2]}]}
- {tenant: c, limit: 9, running: 0, apps: [{app: x, limit: 9, running: 0, filesPerRun: 1, waiting: [1]}]}
";
        assert_eq!(plan(3, yaml, None), ["a/x×2", "b/x×1", "c/x×1"]);
        assert_eq!(plan(3, yaml, Some("a")), ["b/x×1", "c/x×1", "a/x×2"]);
        assert_eq!(plan(2, yaml, Some("c")), ["a/x×2", "b/x×1"]);
        // A last served tenant that is gone: the turn goes on by name.
        assert_eq!(plan(1, yaml, Some("bb")), ["c/x×1"]);
        // Queues run dry one by one; the remaining slots go to whoever still has files.
        assert_eq!(plan(9, yaml, Some("c")), ["a/x×2", "b/x×1", "c/x×1", "a/x×2", "b/x×1", "a/x×1"]);
    }

    #[test]
    fn one_slot_at_a_time_the_tenants_alternate_across_polls() {
        // One platform slot; each poll starts one run, which ends before the next poll.
        let mut queues: Vec<TenantQueue> = serde_yaml::from_str(
            "
- {tenant: flood, limit: 4, running: 0, apps: [{app: x, limit: 4, running: 0, filesPerRun: 1, waiting: [1, 2, 3, 4, 5, 6]}]}
- {tenant: calm, limit: 1, running: 0, apps: [{app: x, limit: 1, running: 0, filesPerRun: 1, waiting: [7, 8]}]}
",
        )
        .unwrap();
        let mut last: Option<String> = None;
        let mut served = Vec::new();
        for _ in 0..8 {
            let starts = plan_starts(1, &queues, last.as_deref());
            let Some(start) = starts.first() else { break };
            let queue = queues.iter_mut().find(|t| t.tenant == start.tenant).unwrap();
            queue.apps[0].waiting.drain(..start.files);
            served.push(start.tenant.clone());
            last = Some(start.tenant.clone());
        }
        assert_eq!(served, ["calm", "flood", "calm", "flood", "flood", "flood", "flood", "flood"]);
    }

    #[test]
    fn every_limit_holds() {
        let cases = [
            // (free slots, tenants, expected starts)
            (
                0,
                "[{tenant: a, limit: 2, running: 0, apps: [{app: x, limit: 2, running: 0, filesPerRun: 1, waiting: [1]}]}]",
                vec![],
            ),
            // The tenant's limit.
            (
                4,
                "[{tenant: a, limit: 2, running: 1, apps: [{app: x, limit: 9, running: 1, filesPerRun: 1, waiting: [1, 2, 3]}]}]",
                vec!["a/x×1"],
            ),
            // The app's concurrency, and a suspended app (limit 0).
            (
                4,
                "[{tenant: a, limit: 9, running: 0, apps: [{app: x, limit: 1, running: 0, filesPerRun: 1, waiting: [1, 2]}, {app: y, limit: 0, running: 0, filesPerRun: 1, waiting: [1]}]}]",
                vec!["a/x×1"],
            ),
            // Files per run, the last run taking what is left.
            (
                4,
                "[{tenant: a, limit: 9, running: 0, apps: [{app: x, limit: 9, running: 0, filesPerRun: 3, waiting: [1, 2, 3, 4]}]}]",
                vec!["a/x×3", "a/x×1"],
            ),
            // Within a tenant: the app with fewer runs, then the one with the older file.
            (
                3,
                "[{tenant: a, limit: 9, running: 1, apps: [{app: x, limit: 9, running: 1, filesPerRun: 1, waiting: [1, 2]}, {app: y, limit: 9, running: 0, filesPerRun: 1, waiting: [5]}, {app: z, limit: 9, running: 0, filesPerRun: 1, waiting: [3]}]}]",
                vec!["a/z×1", "a/y×1", "a/x×1"],
            ),
            // A tenant with no waiting files takes nothing.
            (2, "[{tenant: a, limit: 2, running: 0}]", vec![]),
        ];
        for (free, yaml, expected) in cases {
            assert_eq!(plan(free, yaml, None), expected, "{yaml}");
        }
    }
}
