//! The simulator's ResourceQuota status (pure): what Kubernetes' quota
//! controller reports, `status.hard` = `spec.hard` and `status.used` per
//! hard line, from the namespace's pods that are not finished.
//!
//! Counted: `pods` and `count/pods` (one per pod); `requests.<r>` and a
//! bare standard name (`cpu`, `memory`, `ephemeral-storage`) as the pod's
//! request of `<r>` (a container's limit where it has no request, as
//! Kubernetes defaults it; containers summed, at least the largest init
//! container, plus overhead); `limits.<r>` likewise from limits. Other lines
//! (object counts, storage classes) report 0. Admission (refusing a pod
//! over quota) is not simulated: hami's placement keeps within the quota.

use std::collections::BTreeMap;

use hami_api::quantity::{format_milli, parse_quantity};
use k8s_openapi::api::core::v1::{Container, Pod, ResourceQuota};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use serde_json::{Value, json};

use super::workloads::is_active;
use super::write::{Kind, Write};

fn amount(list: Option<&BTreeMap<String, Quantity>>, name: &str) -> i128 {
    list.and_then(|l| l.get(name))
        .and_then(|q| parse_quantity(&q.0).ok())
        .unwrap_or(0)
        .max(0)
}

/// One container's request (or limit, with `limits`) of `name`.
fn container(c: &Container, name: &str, limits: bool) -> i128 {
    let r = c.resources.as_ref();
    let lim = amount(r.and_then(|r| r.limits.as_ref()), name);
    if limits {
        return lim;
    }
    match r
        .and_then(|r| r.requests.as_ref())
        .and_then(|l| l.get(name))
    {
        Some(_) => amount(r.and_then(|r| r.requests.as_ref()), name),
        None => lim,
    }
}

/// A pod's request (or limit) of `name`, as Kubernetes' quota counts it.
fn pod_amount(p: &Pod, name: &str, limits: bool) -> i128 {
    let Some(spec) = &p.spec else {
        return 0;
    };
    let sum: i128 = spec
        .containers
        .iter()
        .map(|c| container(c, name, limits))
        .sum();
    let init = spec
        .init_containers
        .iter()
        .flatten()
        .map(|c| container(c, name, limits))
        .max()
        .unwrap_or(0);
    sum.max(init) + amount(spec.overhead.as_ref(), name)
}

/// `status.used` of a quota with `hard` over `pods` (one namespace's).
pub fn used(hard: &BTreeMap<String, Quantity>, pods: &[&Pod]) -> BTreeMap<String, Quantity> {
    let active: Vec<&&Pod> = pods.iter().filter(|p| is_active(p)).collect();
    hard.keys()
        .map(|name| {
            let milli: i128 = match name.as_str() {
                "pods" | "count/pods" => 1000 * active.len() as i128,
                n => {
                    let (resource, limits) = if let Some(r) = n.strip_prefix("requests.") {
                        (r, false)
                    } else if let Some(r) = n.strip_prefix("limits.") {
                        (r, true)
                    } else if matches!(n, "cpu" | "memory" | "ephemeral-storage") {
                        (n, false)
                    } else {
                        ("", false)
                    };
                    if resource.is_empty() {
                        0
                    } else {
                        active.iter().map(|p| pod_amount(p, resource, limits)).sum()
                    }
                }
            };
            (name.clone(), Quantity(format_milli(milli)))
        })
        .collect()
}

/// The status write a quota needs, if its status differs from what it
/// should say.
pub fn reconcile_quota(q: &ResourceQuota, pods: &[&Pod]) -> Option<Write> {
    let hard = q
        .spec
        .as_ref()
        .and_then(|s| s.hard.clone())
        .unwrap_or_default();
    let want = json!({"hard": hard, "used": used(&hard, pods)});
    let have = q
        .status
        .as_ref()
        .and_then(|s| serde_json::to_value(s).ok())
        .unwrap_or(Value::Null);
    let same = have.get("hard") == want.get("hard") && have.get("used") == want.get("used");
    (!same).then(|| Write::Status {
        kind: Kind::ResourceQuota,
        namespace: q.metadata.namespace.clone().unwrap_or_default(),
        name: q.metadata.name.clone().unwrap_or_default(),
        status: want,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn pod(phase: &str, requests: Value, limits: Value) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "p", "namespace": "t"},
            "spec": {"containers": [{"name": "c", "image": "i",
                "resources": {"requests": requests, "limits": limits}}]},
            "status": {"phase": phase}
        }))
        .unwrap()
    }

    #[test]
    fn counts_requests_limits_and_pods_of_unfinished_pods() {
        let a = pod(
            "Running",
            json!({"cpu": "500m"}),
            json!({"nvidia.com/gpu": "2"}),
        );
        let b = pod(
            "Pending",
            json!({"cpu": "1"}),
            json!({"nvidia.com/gpu": "1", "cpu": "2"}),
        );
        let done = pod(
            "Succeeded",
            json!({"cpu": "4"}),
            json!({"nvidia.com/gpu": "4"}),
        );
        let hard: BTreeMap<String, Quantity> = [
            ("requests.nvidia.com/gpu", "8"),
            ("cpu", "10"),
            ("limits.cpu", "10"),
            ("pods", "5"),
            ("count/services", "1"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), Quantity(v.to_string())))
        .collect();
        let u = used(&hard, &[&a, &b, &done]);
        // The GPU request defaults from the limit.
        assert_eq!(u["requests.nvidia.com/gpu"].0, "3");
        assert_eq!(u["cpu"].0, "1500m");
        assert_eq!(u["limits.cpu"].0, "2");
        assert_eq!(u["pods"].0, "2");
        assert_eq!(u["count/services"].0, "0");

        let q: ResourceQuota = serde_json::from_value(json!({
            "metadata": {"name": "q", "namespace": "t"},
            "spec": {"hard": {"pods": "5"}}
        }))
        .unwrap();
        let w = reconcile_quota(&q, &[&a]).unwrap();
        let Write::Status { status, .. } = &w else {
            panic!("{w:?}")
        };
        assert_eq!(status["used"]["pods"], "1");
        let mut settled = q.clone();
        settled.status = serde_json::from_value(status.clone()).unwrap();
        assert!(
            reconcile_quota(&settled, &[&a]).is_none(),
            "no write when it says the same"
        );
    }
}
