//! What a decision writes (pure): `spec.clusters` and the `Scheduled`
//! condition, into a copy of the binding, so that one store write carries
//! both. The observed generation is set by the writer, once the generation
//! the write will store is known.

use hami_api::common::CONDITION_SCHEDULED;
use hami_placement::{Decision, Unschedulable};
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
/// decision's; either way the `Scheduled` condition says what happened
/// (its lastTransitionTime moves only when its status flips).
pub fn apply(current: &Value, result: &Result<Decision, Unschedulable>, now: &str) -> Value {
    let mut new = current.clone();
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
        assert!(!needs_scheduling(&out));
        let again = apply(&out, &d, "t2");
        assert_eq!(again, out, "same decision, same object: no write");
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
