//! The Works that deliver a quota's static assignments to the member
//! clusters (pure): one per assignment whose cluster is registered, in
//! `hami-es-<cluster>`, carrying a plain core/v1 ResourceQuota named like
//! the FederatedResourceQuota, in its namespace, with the assignment's
//! limits in the names Kubernetes counts ([`hami_quota::member`]). The agent
//! applies it and reports its `status` (hard, used) back on the Work.

use std::collections::BTreeSet;

use hami_api::common::{ResourceList, WORK_GROUP, WORK_VERSION, execution_namespace};
use hami_api::quota::FederatedResourceQuotaSpec;
use serde_json::{Value, json};

use super::super::binding::works::fnv1a;
use super::QuotaRef;

/// Annotation on a Work: the FederatedResourceQuota (`namespace/name`) it
/// delivers.
pub const QUOTA_ANNOTATION: &str = "quota.hami.io/federated-resource-quota";
/// Label on those Works (a fixed value; names can be longer than a label).
pub const QUOTA_LABEL: &str = "quota.hami.io/member-quota";

/// One Work to hold.
#[derive(Clone, Debug, PartialEq)]
pub struct DesiredWork {
    pub cluster: String,
    pub namespace: String,
    pub name: String,
    pub object: Value,
}

/// The Work name of quota `q` in every execution namespace: the quota's
/// name (cut to leave room) and a stable hash of `namespace/name`, since
/// quotas of two namespaces may share a name.
pub fn work_name(q: &QuotaRef) -> String {
    let hash = fnv1a(format!("{}/{}", q.namespace, q.name).as_bytes()) as u32;
    let base: String = q.name.chars().take(200).collect();
    format!("{base}-quota-{hash:08x}")
}

/// The Works quota `q` with `spec` wants, for the registered `clusters`.
pub fn desired_works(
    q: &QuotaRef,
    spec: &FederatedResourceQuotaSpec,
    clusters: &BTreeSet<String>,
) -> Vec<DesiredWork> {
    let name = work_name(q);
    spec.static_assignments
        .iter()
        .filter(|a| clusters.contains(&a.cluster_name))
        .map(|a| {
            let namespace = execution_namespace(&a.cluster_name);
            DesiredWork {
                cluster: a.cluster_name.clone(),
                object: work_object(q, &namespace, &name, &a.hard),
                namespace,
                name: name.clone(),
            }
        })
        .collect()
}

fn work_object(q: &QuotaRef, namespace: &str, name: &str, hard: &ResourceList) -> Value {
    json!({
        "apiVersion": format!("{WORK_GROUP}/{WORK_VERSION}"),
        "kind": "Work",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {QUOTA_LABEL: "true"},
            "annotations": {QUOTA_ANNOTATION: format!("{}/{}", q.namespace, q.name)},
        },
        "spec": {"workload": {"manifests": [{
            "apiVersion": "v1",
            "kind": "ResourceQuota",
            "metadata": {"name": q.name, "namespace": q.namespace},
            "spec": {"hard": hami_quota::member::member_hard(hard)},
        }]}},
    })
}

/// The quota a Work delivers, from its annotation.
pub fn quota_of_work(work: &Value) -> Option<QuotaRef> {
    let a = work
        .pointer("/metadata/annotations")?
        .get(QUOTA_ANNOTATION)?
        .as_str()?;
    let (namespace, name) = a.split_once('/')?;
    Some(QuotaRef {
        namespace: namespace.to_string(),
        name: name.to_string(),
    })
}

/// What the member's ResourceQuota reports as used (its own names), from
/// the Work status the agent writes.
pub fn member_used(work: &Value) -> Option<ResourceList> {
    let statuses = work.pointer("/status/manifestStatuses")?.as_array()?;
    let s = statuses
        .iter()
        .find(|s| s.pointer("/identifier/kind").and_then(Value::as_str) == Some("ResourceQuota"))?;
    serde_json::from_value(s.pointer("/status/used")?.clone()).ok()
}

/// Whether a stored Work already holds what `want` says (spec, labels and
/// annotations).
pub fn same_work(have: &Value, want: &Value) -> bool {
    have.get("spec") == want.get("spec")
        && have.pointer("/metadata/labels") == want.pointer("/metadata/labels")
        && have.pointer("/metadata/annotations") == want.pointer("/metadata/annotations")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use hami_api::quota::StaticClusterAssignment;
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

    fn q(ns: &str, name: &str) -> QuotaRef {
        QuotaRef {
            namespace: ns.into(),
            name: name.into(),
        }
    }

    #[test]
    fn one_work_per_known_assignment_with_a_plain_resource_quota() {
        let spec = FederatedResourceQuotaSpec {
            overall: [("nvidia.com/gpu".to_string(), Quantity("16".into()))].into(),
            static_assignments: vec![
                StaticClusterAssignment {
                    cluster_name: "east".into(),
                    hard: [
                        ("nvidia.com/gpu".to_string(), Quantity("8".into())),
                        ("cpu".to_string(), Quantity("32".into())),
                    ]
                    .into(),
                },
                StaticClusterAssignment {
                    cluster_name: "ghost".into(),
                    hard: Default::default(),
                },
            ],
        };
        let known = BTreeSet::from(["east".to_string(), "west".to_string()]);
        let works = desired_works(&q("team-a", "budget"), &spec, &known);
        assert_eq!(works.len(), 1, "no Work for an unregistered cluster");
        let w = &works[0];
        assert_eq!(w.namespace, "hami-es-east");
        assert!(w.name.starts_with("budget-quota-"));
        let m = &w.object["spec"]["workload"]["manifests"][0];
        assert_eq!(m["kind"], "ResourceQuota");
        assert_eq!(m["metadata"]["namespace"], "team-a");
        assert_eq!(m["metadata"]["name"], "budget");
        assert_eq!(m["spec"]["hard"]["requests.nvidia.com/gpu"], "8");
        assert_eq!(m["spec"]["hard"]["cpu"], "32");
        assert_eq!(quota_of_work(&w.object), Some(q("team-a", "budget")));
        // Same name in another namespace: another Work name.
        assert_ne!(work_name(&q("team-b", "budget")), w.name);
    }

    #[test]
    fn reads_the_member_usage_from_the_work_status() {
        let work = json!({"status": {"manifestStatuses": [{
            "identifier": {"version": "v1", "kind": "ResourceQuota", "name": "budget"},
            "status": {"hard": {"requests.nvidia.com/gpu": "8"}, "used": {"requests.nvidia.com/gpu": "3"}}
        }]}});
        let used = member_used(&work).unwrap();
        assert_eq!(used["requests.nvidia.com/gpu"].0, "3");
        assert!(member_used(&json!({"status": {}})).is_none());
    }
}
