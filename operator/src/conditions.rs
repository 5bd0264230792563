//! Status conditions: building them and merging them into a resource's list the way
//! Kubernetes expects (one per type, `lastTransitionTime` kept while the status holds).

use k8s_openapi::{
    apimachinery::pkg::apis::meta::v1::{Condition, Time},
    jiff::Timestamp,
};

/// `Ready`, the summary condition every resource has.
pub const READY: &str = "Ready";

/// A condition's state as the controller sees it, before time and generation are stamped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct State {
    /// The condition type, e.g. `KafkaReady`.
    pub type_: &'static str,
    /// Whether it holds.
    pub ok: bool,
    /// CamelCase reason.
    pub reason: String,
    /// What it means for a human, and what to do when it does not hold.
    pub message: String,
}

impl State {
    /// A condition that holds.
    pub fn ok(type_: &'static str, reason: &str, message: impl Into<String>) -> Self {
        Self { type_, ok: true, reason: reason.into(), message: message.into() }
    }

    /// A condition that does not hold.
    pub fn failed(type_: &'static str, reason: &str, message: impl Into<String>) -> Self {
        Self { type_, ok: false, reason: reason.into(), message: message.into() }
    }
}

/// Merges `states` into `existing`: one entry per type, the transition time kept when the
/// status did not change, types not mentioned kept as they were.
pub fn merge(existing: &[Condition], states: &[State], generation: Option<i64>, now: Timestamp) -> Vec<Condition> {
    let mut out: Vec<Condition> = existing.to_vec();
    for state in states {
        let status = if state.ok { "True" } else { "False" };
        let previous = out.iter().position(|c| c.type_ == state.type_);
        let transition = match previous.map(|i| &out[i]) {
            Some(c) if c.status == status => c.last_transition_time.clone(),
            _ => Time(now),
        };
        let condition = Condition {
            type_: state.type_.to_owned(),
            status: status.to_owned(),
            reason: state.reason.clone(),
            message: state.message.clone(),
            observed_generation: generation,
            last_transition_time: transition,
        };
        match previous {
            Some(i) => out[i] = condition,
            None => out.push(condition),
        }
    }
    out
}

/// The `Ready` state that summarizes `parts`: ready when every part is, otherwise the first
/// part that is not, in its own words.
pub fn summary(parts: &[State]) -> State {
    match parts.iter().find(|p| !p.ok) {
        Some(p) => State::failed(READY, &p.reason, p.message.clone()),
        None => State::ok(READY, "Ready", "every part is ready"),
    }
}

/// Whether `conditions` says `type_` holds.
pub fn is_true(conditions: &[Condition], type_: &str) -> bool {
    conditions.iter().any(|c| c.type_ == type_ && c.status == "True")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_second(seconds).unwrap()
    }

    #[test]
    fn transition_time_changes_only_when_the_status_changes() {
        let first = merge(&[], &[State::ok("KafkaReady", "Ready", "ok")], Some(1), at(100));
        assert_eq!(first[0].last_transition_time, Time(at(100)));

        let same = merge(&first, &[State::ok("KafkaReady", "Ready", "still ok")], Some(2), at(200));
        assert_eq!(same[0].last_transition_time, Time(at(100)));
        assert_eq!(same[0].message, "still ok");
        assert_eq!(same[0].observed_generation, Some(2));

        let flipped = merge(&same, &[State::failed("KafkaReady", "Unreachable", "down")], Some(2), at(300));
        assert_eq!(flipped[0].last_transition_time, Time(at(300)));
        assert_eq!(flipped[0].status, "False");
    }

    #[test]
    fn other_types_are_kept_and_new_ones_appended() {
        let base = merge(&[], &[State::ok("A", "Ready", "a")], None, at(1));
        let more = merge(&base, &[State::failed("B", "Broken", "b")], None, at(2));
        assert_eq!(more.iter().map(|c| c.type_.as_str()).collect::<Vec<_>>(), ["A", "B"]);
    }

    #[test]
    fn summary_names_the_first_part_that_is_not_ready() {
        let parts = [
            State::ok("A", "Ready", "a"),
            State::failed("B", "NamespaceConflict", "fix b"),
            State::failed("C", "X", "c"),
        ];
        let ready = summary(&parts);
        assert!(!ready.ok);
        assert_eq!((ready.reason.as_str(), ready.message.as_str()), ("NamespaceConflict", "fix b"));
        assert!(summary(&parts[..1]).ok);
    }
}
