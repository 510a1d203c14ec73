//! What a decision writes (pure): `spec.clusters` and the `Scheduled`
//! condition, into a copy of the binding, so that one store write carries
//! both. The observed generation is set by the writer, once the generation
//! the write will store is known.

use hami_api::common::CONDITION_SCHEDULED;
use hami_placement::{Decision, Unschedulable};
use k8s_openapi::jiff::Timestamp;
use serde_json::{Value, json};

/// Condition reason: the binding got clusters.
pub const REASON_SUCCESS: &str = "Success";
/// Condition reason: clusters exist but none can take the binding.
pub const REASON_UNSCHEDULABLE: &str = "Unschedulable";
/// Condition reason: there is no cluster at all.
pub const REASON_NO_CLUSTER: &str = "NoClusterAvailable";
/// Condition reason: placing the binding would exceed a
/// FederatedResourceQuota of its namespace.
pub const REASON_QUOTA_EXCEEDED: &str = "QuotaExceeded";
/// Condition reason: the binding's usage cannot be counted against the
/// quota of its namespace (e.g. a GPU memory percentage with no GPU model
/// known).
pub const REASON_QUOTA_UNCOUNTABLE: &str = "QuotaUncountable";

/// The `Scheduled` condition's reason, if any.
pub fn scheduled_reason(object: &Value) -> Option<&str> {
    object
        .pointer("/status/conditions")?
        .as_array()?
        .iter()
        .find(|c| c.get("type").and_then(Value::as_str) == Some(CONDITION_SCHEDULED))?
        .get("reason")?
        .as_str()
}

/// The binding as a refusal leaves it: `spec.clusters` as it was (what
/// runs keeps running), `Scheduled=False` with `reason` and `message`.
pub fn refuse(current: &Value, reason: &str, message: &str, now: &str) -> Value {
    let mut new = current.clone();
    set_condition(&mut new, "False", reason, message.to_string(), now);
    new
}

/// Whether a stored binding needs a decision: its generation was not
/// scheduled yet, or it never got a `Scheduled` condition.
pub fn needs_scheduling(object: &Value) -> bool {
    if object.pointer("/metadata/deletionTimestamp").is_some() {
        return false;
    }
    let generation = object
        .pointer("/metadata/generation")
        .and_then(Value::as_i64);
    let observed = object
        .pointer("/status/schedulerObservedGeneration")
        .and_then(Value::as_i64);
    generation != observed || scheduled_condition(object).is_none()
}

/// Whether the binding asks for a fresh division, ignoring where its
/// replicas run now (Karmada's `RescheduleRequired`): its
/// `spec.rescheduleTriggeredAt` is later than `status.lastScheduledTime`.
/// Never before a first successful scheduling (which is fresh anyway);
/// both times are whole seconds, so a trigger in the same second as the
/// last scheduling asks for nothing.
pub fn reschedule_required(object: &Value) -> bool {
    let time = |pointer: &str| {
        object
            .pointer(pointer)
            .and_then(Value::as_str)
            .and_then(|s| s.parse::<Timestamp>().ok())
    };
    match (
        time("/spec/rescheduleTriggeredAt"),
        time("/status/lastScheduledTime"),
    ) {
        (Some(triggered), Some(last)) => triggered > last,
        _ => false,
    }
}

/// The `Scheduled` condition's status ("True"/"False"), if any.
pub fn scheduled_condition(object: &Value) -> Option<&str> {
    object
        .pointer("/status/conditions")?
        .as_array()?
        .iter()
        .find(|c| c.get("type").and_then(Value::as_str) == Some(CONDITION_SCHEDULED))?
        .get("status")?
        .as_str()
}

/// The binding as the decision leaves it: on success `spec.clusters` is the
/// decision's and `status.lastScheduledTime` is `now`; either way the
/// `Scheduled` condition says what happened (its lastTransitionTime moves
/// only when its status flips).
pub fn apply(current: &Value, result: &Result<Decision, Unschedulable>, now: &str) -> Value {
    let mut new = current.clone();
    if result.is_ok() {
        let root = hami_apiserver::meta::as_map(&mut new);
        let status =
            hami_apiserver::meta::as_map(root.entry("status").or_insert_with(|| json!({})));
        status.insert("lastScheduledTime".into(), json!(now));
    }
    let (state, reason, message) = match result {
        Ok(d) => {
            let mut message = "Binding has been scheduled successfully.".to_string();
            for n in &d.notes {
                message.push(' ');
                message.push_str(&n.to_string());
                message.push('.');
            }
            if let Some(spec) = new.get_mut("spec").and_then(Value::as_object_mut) {
                if d.clusters.is_empty() {
                    spec.remove("clusters");
                } else {
                    spec.insert("clusters".into(), json!(d.clusters));
                }
            }
            ("True", REASON_SUCCESS, message)
        }
        Err(u) => {
            let none = u.attempts.iter().all(|a| a.considered == 0);
            let reason = if none {
                REASON_NO_CLUSTER
            } else {
                REASON_UNSCHEDULABLE
            };
            ("False", reason, u.message())
        }
    };
    set_condition(&mut new, state, reason, message, now);
    new
}

/// Sets the `Scheduled` condition (its lastTransitionTime moves only when
/// its status flips).
fn set_condition(new: &mut Value, state: &str, reason: &str, message: String, now: &str) {
    let root = hami_apiserver::meta::as_map(new);
    let status = hami_apiserver::meta::as_map(root.entry("status").or_insert_with(|| json!({})));
    let conditions = status.entry("conditions").or_insert_with(|| json!([]));
    if !conditions.is_array() {
        *conditions = json!([]);
    }
    let list = conditions.as_array_mut();
    let Some(list) = list else {
        return;
    };
    let old = list
        .iter()
        .position(|c| c.get("type").and_then(Value::as_str) == Some(CONDITION_SCHEDULED));
    let since = old
        .and_then(|i| list.get(i))
        .filter(|c| c.get("status").and_then(Value::as_str) == Some(state))
        .and_then(|c| c.get("lastTransitionTime").cloned())
        .unwrap_or_else(|| json!(now));
    let condition = json!({
        "type": CONDITION_SCHEDULED,
        "status": state,
        "reason": reason,
        "message": message,
        "lastTransitionTime": since,
    });
    match old {
        Some(i) => list[i] = condition,
        None => list.push(condition),
    }
}

/// Sets `status.schedulerObservedGeneration` to the object's generation.
pub fn observe_generation(object: &mut Value) {
    let generation = object
        .pointer("/metadata/generation")
        .cloned()
        .unwrap_or(json!(1));
    let root = hami_apiserver::meta::as_map(object);
    let status = hami_apiserver::meta::as_map(root.entry("status").or_insert_with(|| json!({})));
    status.insert("schedulerObservedGeneration".into(), generation);
}

#[cfg(test)]
mod tests {
    use super::*;
    use hami_placement::{BindingView, ClusterView, schedule};

    fn binding() -> Value {
        json!({"metadata": {"name": "b", "generation": 2}, "spec": {"replicas": 2}})
    }

    #[test]
    fn success_sets_clusters_and_condition_and_keeps_time_while_unchanged() {
        let b = binding();
        assert!(needs_scheduling(&b));
        let d = schedule(
            &BindingView::new("ns/b", 2, Default::default()),
            &[ClusterView::new("a")],
            &[Some(10)],
        );
        let mut out = apply(&b, &d, "t1");
        observe_generation(&mut out);
        assert_eq!(
            out["spec"]["clusters"],
            json!([{"name": "a", "replicas": 2}])
        );
        assert_eq!(scheduled_condition(&out), Some("True"));
        assert_eq!(out["status"]["schedulerObservedGeneration"], json!(2));
        assert_eq!(out["status"]["lastScheduledTime"], "t1");
        assert!(!needs_scheduling(&out));
        let again = apply(&out, &d, "t1");
        assert_eq!(again, out, "same decision, same object: no write");
        let later = apply(&out, &d, "t2");
        assert_eq!(later["status"]["lastScheduledTime"], "t2");
        assert_eq!(later["spec"], out["spec"]);
    }

    #[test]
    fn a_trigger_later_than_the_last_scheduling_asks_for_a_fresh_division() {
        // (rescheduleTriggeredAt, lastScheduledTime, fresh)
        let cases = [
            (None, None, false),
            (Some("2025-01-01T00:00:10Z"), None, false),
            (None, Some("2025-01-01T00:00:10Z"), false),
            (
                Some("2025-01-01T00:00:11Z"),
                Some("2025-01-01T00:00:10Z"),
                true,
            ),
            (
                Some("2025-01-01T00:00:10Z"),
                Some("2025-01-01T00:00:10Z"),
                false,
            ),
            (
                Some("2025-01-01T00:00:09Z"),
                Some("2025-01-01T00:00:10Z"),
                false,
            ),
            // Offsets are compared as instants, not as text.
            (
                Some("2025-01-01T01:00:11+01:00"),
                Some("2025-01-01T00:00:10Z"),
                true,
            ),
            (Some("not a time"), Some("2025-01-01T00:00:10Z"), false),
        ];
        for (triggered, last, want) in cases {
            let mut b = binding();
            if let Some(t) = triggered {
                b["spec"]["rescheduleTriggeredAt"] = json!(t);
            }
            if let Some(l) = last {
                b["status"] = json!({"lastScheduledTime": l});
            }
            assert_eq!(reschedule_required(&b), want, "{triggered:?} vs {last:?}");
        }
        // A successful scheduling consumes the trigger; a failed one does not.
        let mut b = binding();
        b["spec"]["rescheduleTriggeredAt"] = json!("2025-01-01T00:00:11Z");
        b["status"] = json!({"lastScheduledTime": "2025-01-01T00:00:10Z"});
        let none = schedule(&BindingView::new("ns/b", 2, Default::default()), &[], &[]);
        let failed = apply(&b, &none, "2025-01-01T00:00:12Z");
        assert!(reschedule_required(&failed));
        let d = schedule(
            &BindingView::new("ns/b", 2, Default::default()),
            &[ClusterView::new("a")],
            &[Some(10)],
        );
        let done = apply(&b, &d, "2025-01-01T00:00:12Z");
        assert!(!reschedule_required(&done));
    }

    #[test]
    fn unschedulable_keeps_clusters_and_names_the_reason() {
        let mut b = binding();
        b["spec"]["clusters"] = json!([{"name": "old", "replicas": 2}]);
        let none = schedule(&BindingView::new("ns/b", 2, Default::default()), &[], &[]);
        let out = apply(&b, &none, "t1");
        assert_eq!(out["spec"]["clusters"], b["spec"]["clusters"]);
        assert_eq!(scheduled_condition(&out), Some("False"));
        assert_eq!(out["status"]["conditions"][0]["reason"], REASON_NO_CLUSTER);
        let mut c = ClusterView::new("a");
        c.ready = false;
        let not_ready = schedule(
            &BindingView::new("ns/b", 2, Default::default()),
            &[c],
            &[None],
        );
        let out = apply(&b, &not_ready, "t2");
        assert_eq!(
            out["status"]["conditions"][0]["reason"],
            REASON_UNSCHEDULABLE
        );
        let message = out["status"]["conditions"][0]["message"].as_str().unwrap();
        assert!(message.contains("0/1 clusters are available"), "{message}");
    }

    #[test]
    fn a_quota_refusal_keeps_clusters_and_says_why() {
        let mut b = binding();
        b["spec"]["clusters"] = json!([{"name": "a", "replicas": 2}]);
        let ok = apply(
            &b,
            &schedule(
                &BindingView::new("ns/b", 2, Default::default()),
                &[ClusterView::new("a")],
                &[Some(10)],
            ),
            "t1",
        );
        let out = refuse(
            &ok,
            REASON_QUOTA_EXCEEDED,
            "FederatedResourceQuota ns/q: exceeded quota: nvidia.com/gpu: requested 2, used 8, limited 8",
            "t2",
        );
        assert_eq!(out["spec"]["clusters"], b["spec"]["clusters"]);
        assert_eq!(scheduled_condition(&out), Some("False"));
        assert_eq!(scheduled_reason(&out), Some(REASON_QUOTA_EXCEEDED));
        let c = &out["status"]["conditions"][0];
        assert_eq!(c["lastTransitionTime"], "t2");
        assert!(c["message"].as_str().unwrap().contains("limited 8"));
    }
}
