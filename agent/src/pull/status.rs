//! Pure pieces of status reporting: what of a member object's status a Work
//! reflects, its health, manifest identifiers, and conditions that keep
//! their transition time while their status holds (so that an unchanged
//! status compares equal and is not written again).

use hami_api::ResourceHealth;
use hami_api::work::ResourceIdentifier;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use serde_json::{Map, Value, json};

/// The kinds whose status the agent watches and reflects: the workloads,
/// and the ResourceQuotas hami delivers for a FederatedResourceQuota's
/// static assignments (their `used` flows back into the quota's status).
pub const WATCHED_KINDS: [(&str, &str, &str); 6] = [
    ("apps", "Deployment", "deployments"),
    ("apps", "ReplicaSet", "replicasets"),
    ("apps", "StatefulSet", "statefulsets"),
    ("apps", "DaemonSet", "daemonsets"),
    ("batch", "Job", "jobs"),
    ("", "ResourceQuota", "resourcequotas"),
];

/// The status fields reflected per kind: what status aggregation reads,
/// nothing that changes without meaning (a Deployment's conditions carry
/// a lastUpdateTime that would cost a Work write each time).
fn reflected_fields(group: &str, kind: &str) -> Option<&'static [&'static str]> {
    match (group, kind) {
        ("apps", "Deployment") => Some(&[
            "replicas",
            "readyReplicas",
            "availableReplicas",
            "updatedReplicas",
            "unavailableReplicas",
            "observedGeneration",
        ]),
        ("apps", "StatefulSet") => Some(&[
            "replicas",
            "readyReplicas",
            "availableReplicas",
            "currentReplicas",
            "updatedReplicas",
            "observedGeneration",
        ]),
        ("apps", "ReplicaSet") => Some(&[
            "replicas",
            "readyReplicas",
            "availableReplicas",
            "fullyLabeledReplicas",
            "observedGeneration",
        ]),
        ("apps", "DaemonSet") => Some(&[
            "currentNumberScheduled",
            "desiredNumberScheduled",
            "numberAvailable",
            "numberReady",
            "numberMisscheduled",
            "numberUnavailable",
            "updatedNumberScheduled",
            "observedGeneration",
        ]),
        ("batch", "Job") => Some(&[
            "active",
            "ready",
            "succeeded",
            "failed",
            "startTime",
            "completionTime",
            // Complete / Failed: set once, read by status aggregation.
            "conditions",
        ]),
        ("", "ResourceQuota") => Some(&["hard", "used"]),
        _ => None,
    }
}

fn int(v: &Value, ptr: &str) -> i64 {
    v.pointer(ptr).and_then(Value::as_i64).unwrap_or(0)
}

/// The reflected status of `obj` (a member object of `group`/`kind`) and
/// its health. Unknown kinds reflect nothing and are `Unknown`.
pub fn reflect(group: &str, kind: &str, obj: &Value) -> (Option<Value>, ResourceHealth) {
    let Some(fields) = reflected_fields(group, kind) else {
        return (None, ResourceHealth::Unknown);
    };
    let empty = Map::new();
    let status = obj
        .get("status")
        .and_then(Value::as_object)
        .unwrap_or(&empty);
    let mut out = Map::new();
    for f in fields {
        if let Some(v) = status.get(*f) {
            out.insert((*f).to_string(), v.clone());
        }
    }
    let generation = int(obj, "/metadata/generation");
    out.insert("generation".into(), json!(generation));
    let observed = int(obj, "/status/observedGeneration");
    let spec_replicas = obj
        .pointer("/spec/replicas")
        .and_then(Value::as_i64)
        .unwrap_or(1);
    let healthy = match kind {
        "Deployment" => {
            observed >= generation
                && int(obj, "/status/updatedReplicas") == spec_replicas
                && int(obj, "/status/availableReplicas") == spec_replicas
                && int(obj, "/status/readyReplicas") == spec_replicas
        }
        "ReplicaSet" => {
            observed >= generation && int(obj, "/status/readyReplicas") == spec_replicas
        }
        "StatefulSet" => {
            observed >= generation
                && int(obj, "/status/readyReplicas") == spec_replicas
                && int(obj, "/status/updatedReplicas") == spec_replicas
        }
        "DaemonSet" => {
            let desired = int(obj, "/status/desiredNumberScheduled");
            observed >= generation
                && int(obj, "/status/numberAvailable") == desired
                && int(obj, "/status/updatedNumberScheduled") == desired
        }
        // A quota is healthy once its member counted usage for every line.
        "ResourceQuota" => status
            .get("hard")
            .and_then(Value::as_object)
            .is_some_and(|hard| {
                let used = status.get("used").and_then(Value::as_object);
                hard.keys().all(|k| used.is_some_and(|u| u.contains_key(k)))
            }),
        // A Job is healthy unless it failed.
        _ => !status
            .get("conditions")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .any(|c| c["type"] == "Failed" && c["status"] == "True"),
    };
    let health = if healthy {
        ResourceHealth::Healthy
    } else {
        ResourceHealth::Unhealthy
    };
    (Some(Value::Object(out)), health)
}

/// Why a manifest cannot be applied before asking the member.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManifestError {
    /// Not an object with apiVersion, kind and metadata.name.
    #[error("manifest {ordinal}: {reason}")]
    Malformed {
        /// Index in the Work.
        ordinal: usize,
        /// What is missing.
        reason: &'static str,
    },
}

/// `(group, version, kind, namespace as written, name)` of a manifest.
pub fn manifest_id(
    ordinal: usize,
    m: &Value,
) -> Result<(String, String, String, Option<String>, String), ManifestError> {
    let bad = |reason| ManifestError::Malformed { ordinal, reason };
    let api_version = m
        .get("apiVersion")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| bad("apiVersion is required"))?;
    let kind = m
        .get("kind")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| bad("kind is required"))?;
    let name = m
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| bad("metadata.name is required"))?;
    let ns = m
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_string);
    let (group, version) = match api_version.split_once('/') {
        Some((g, v)) => (g, v),
        None => ("", api_version),
    };
    Ok((
        group.to_string(),
        version.to_string(),
        kind.to_string(),
        ns,
        name.to_string(),
    ))
}

/// Whether two identifiers name the same object (the ordinal aside).
pub fn same_object(a: &ResourceIdentifier, b: &ResourceIdentifier) -> bool {
    a.group == b.group && a.kind == b.kind && a.namespace == b.namespace && a.name == b.name
}

/// A condition of `type_` with `status`, keeping the transition time of
/// `prev` when the status did not change.
pub fn condition(
    prev: Option<&Condition>,
    type_: &str,
    status: bool,
    reason: &str,
    message: String,
    observed_generation: Option<i64>,
) -> Condition {
    let status = if status { "True" } else { "False" }.to_string();
    let last_transition_time = match prev {
        Some(p) if p.status == status => p.last_transition_time.clone(),
        _ => Time(k8s_openapi::jiff::Timestamp::now()),
    };
    Condition {
        type_: type_.to_string(),
        status,
        reason: reason.to_string(),
        message,
        last_transition_time,
        observed_generation,
    }
}

/// Replaces (or adds) the condition of the same type, keeping the others.
pub fn set_condition(conditions: &mut Vec<Condition>, c: Condition) {
    match conditions.iter_mut().find(|x| x.type_ == c.type_) {
        Some(x) => *x = c,
        None => conditions.push(c),
    }
}

/// Whether two condition lists say the same, transition times aside (the
/// API may round times; a restarted agent must not rewrite equal status).
pub fn same_conditions(a: &[Condition], b: &[Condition]) -> bool {
    a.len() == b.len()
        && a.iter().all(|x| {
            b.iter().any(|y| {
                x.type_ == y.type_
                    && x.status == y.status
                    && x.reason == y.reason
                    && x.message == y.message
                    && x.observed_generation == y.observed_generation
            })
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deploy(spec: i64, gen_: i64, observed: i64, ready: i64) -> Value {
        json!({
            "metadata": {"generation": gen_},
            "spec": {"replicas": spec},
            "status": {"observedGeneration": observed, "replicas": ready, "readyReplicas": ready,
                       "availableReplicas": ready, "updatedReplicas": ready,
                       "conditions": [{"type": "Available", "lastUpdateTime": "x"}]}
        })
    }

    #[test]
    fn deployment_health_table() {
        let cases = [
            (deploy(3, 2, 2, 3), ResourceHealth::Healthy),
            (deploy(3, 2, 2, 2), ResourceHealth::Unhealthy),
            (deploy(3, 2, 1, 3), ResourceHealth::Unhealthy),
            (deploy(0, 1, 1, 0), ResourceHealth::Healthy),
        ];
        for (obj, want) in cases {
            let (status, health) = reflect("apps", "Deployment", &obj);
            assert_eq!(health, want, "{obj}");
            let status = status.unwrap_or_default();
            assert!(
                status.get("conditions").is_none(),
                "conditions are not reflected"
            );
            assert_eq!(status["readyReplicas"], obj["status"]["readyReplicas"]);
            assert_eq!(status["generation"], obj["metadata"]["generation"]);
        }
    }

    #[test]
    fn job_and_unknown_kinds() {
        let failed =
            json!({"status": {"failed": 1, "conditions": [{"type": "Failed", "status": "True"}]}});
        assert_eq!(
            reflect("batch", "Job", &failed).1,
            ResourceHealth::Unhealthy
        );
        let running = json!({"status": {"active": 1}});
        let (s, h) = reflect("batch", "Job", &running);
        assert_eq!(h, ResourceHealth::Healthy);
        assert_eq!(s.unwrap_or_default()["active"], 1);
        assert_eq!(
            reflect("", "ConfigMap", &json!({"data": {}})),
            (None, ResourceHealth::Unknown)
        );
    }

    #[test]
    fn resource_quota_reflects_hard_and_used() {
        let counted = json!({"metadata": {"generation": 1},
            "spec": {"hard": {"requests.nvidia.com/gpu": "8"}},
            "status": {"hard": {"requests.nvidia.com/gpu": "8"}, "used": {"requests.nvidia.com/gpu": "3"}}});
        let (s, h) = reflect("", "ResourceQuota", &counted);
        assert_eq!(h, ResourceHealth::Healthy);
        let s = s.unwrap_or_default();
        assert_eq!(s["used"]["requests.nvidia.com/gpu"], "3");
        assert_eq!(s["hard"]["requests.nvidia.com/gpu"], "8");
        let fresh = json!({"spec": {"hard": {"pods": "4"}}, "status": {"hard": {"pods": "4"}}});
        assert_eq!(
            reflect("", "ResourceQuota", &fresh).1,
            ResourceHealth::Unhealthy
        );
    }

    #[test]
    fn manifest_ids() {
        let m = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"}});
        assert_eq!(
            manifest_id(0, &m),
            Ok((
                "apps".into(),
                "v1".into(),
                "Deployment".into(),
                None,
                "web".into()
            ))
        );
        let core = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": "x"}});
        assert_eq!(
            manifest_id(1, &core).map(|t| (t.0, t.3)),
            Ok((String::new(), Some("x".into())))
        );
        assert!(manifest_id(2, &json!({"kind": "X"})).is_err());
        assert!(manifest_id(3, &json!([1])).is_err());
    }

    #[test]
    fn conditions_keep_their_transition_time() {
        let first = condition(None, "Ready", true, "Ok", "fine".into(), None);
        let again = condition(Some(&first), "Ready", true, "Ok", "fine".into(), None);
        assert_eq!(first, again);
        let flipped = condition(Some(&first), "Ready", false, "Down", "gone".into(), None);
        assert_eq!(flipped.status, "False");
        let mut list = vec![first.clone()];
        set_condition(&mut list, flipped.clone());
        assert_eq!(list, vec![flipped.clone()]);
        assert!(!same_conditions(&[first], &list));
        assert!(same_conditions(&list, &[flipped]));
    }
}
