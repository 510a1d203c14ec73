//! What the failover tests share: a prelude of imports, object builders
//! and readers, the simulated members' outage switch, Events and metrics.

pub use std::sync::Arc;
pub use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
pub use std::time::Duration;

pub use hami_api::binding::ResourceBinding;
pub use hami_api::cluster::Cluster;
pub use hami_api::propagation::PropagationPolicy;
pub use hami_api::work::Work;
pub use k8s_openapi::api::apps::v1::Deployment;
pub use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
pub use serde_json::json;

pub use crate::support::{Hami, Timeline, eventually};

pub const MEMBERS: [&str; 3] = ["member-1", "member-2", "member-3"];

pub fn deployment(name: &str, replicas: i32) -> Deployment {
    serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{
                    "name": "main", "image": "nginx:1",
                    "resources": {"requests": {"cpu": "100m"}}
                }]}
            }
        }
    }))
    .unwrap()
}

/// A Deployment's `status.readyReplicas` (0 when absent).
pub fn ready_of(d: &Deployment) -> i32 {
    d.status
        .as_ref()
        .and_then(|s| s.ready_replicas)
        .unwrap_or(0)
}

pub fn targets(b: &ResourceBinding) -> Vec<(String, i32)> {
    b.spec
        .clusters
        .iter()
        .map(|t| (t.name.clone(), t.replicas))
        .collect()
}

pub fn taint_names(c: &Cluster) -> Vec<String> {
    c.spec
        .taints
        .iter()
        .map(|t| format!("{}:{}:{}", t.key, t.effect, t.time_added.is_some()))
        .collect()
}

pub fn ready_of_cluster(c: &Cluster) -> Option<(String, String)> {
    c.status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == "Ready")
        .map(|c| (c.status.clone(), c.reason.clone()))
}

/// Waits until `n` Clusters say Ready=True.
pub async fn clusters_ready(clusters: &Api<Cluster>, n: usize) {
    crate::support::clusters_ready(clusters, n, 60).await;
}

/// A Deployment whose replicas each take one whole GPU.
pub fn gpu_deployment(name: &str, replicas: i32) -> Deployment {
    serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{
                    "name": "main", "image": "vllm:1",
                    "resources": {
                        "requests": {"cpu": "1"},
                        "limits": {"nvidia.com/gpu": "1"}
                    }
                }]}
            }
        }
    }))
    .unwrap()
}

/// A PropagationPolicy for Deployment `name` with this `spec.placement`
/// (and `spec.failover`, when given).
pub fn policy(
    name: &str,
    placement: serde_json::Value,
    failover: Option<serde_json::Value>,
) -> PropagationPolicy {
    let mut spec = json!({
        "resourceSelectors": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": name}],
        "placement": placement,
    });
    if let Some(f) = failover {
        spec["failover"] = f;
    }
    serde_json::from_value(json!({
        "apiVersion": "policy.hami.io/v1alpha1", "kind": "PropagationPolicy",
        "metadata": {"name": name, "namespace": "default"},
        "spec": spec,
    }))
    .unwrap()
}

/// Divided by equal static weights over `clusters`.
pub fn equal_weights(clusters: &[&str]) -> serde_json::Value {
    json!({
        "clusterAffinity": {"clusterNames": clusters},
        "replicaScheduling": {
            "replicaSchedulingType": "Divided",
            "replicaDivisionPreference": "Weighted",
            "weightPreference": {"staticWeightList": [
                {"targetCluster": {"clusterNames": clusters}, "weight": 1}
            ]}
        }
    })
}

/// A kube client for simulated member `name`.
pub async fn member_client(hami: &Hami, name: &str) -> kube::Client {
    let path = hami
        .data_dir
        .join("members")
        .join(format!("{name}.kubeconfig"));
    let kc = kube::config::Kubeconfig::read_from(path).unwrap();
    let config = kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .unwrap();
    kube::Client::try_from(config).unwrap()
}

/// Takes member `name` down (`how`: "agent" or "api") or, with `None`,
/// brings it back (the outage files of `hami up --sim-clusters`).
pub fn outage(hami: &Hami, name: &str, how: Option<&str>) {
    let file = hami.data_dir.join("members").join(format!("{name}.down"));
    match how {
        Some(how) => std::fs::write(file, how).unwrap(),
        None => std::fs::remove_file(file).unwrap(),
    }
}

/// The Work of binding `binding` in `cluster`'s execution namespace, and
/// whether it is being deleted.
pub fn work_in(list: &[Work], cluster: &str, binding: &str) -> Option<bool> {
    let ns = format!("hami-es-{cluster}");
    let prefix = format!("{binding}-");
    list.iter()
        .find(|w| {
            w.metadata.namespace.as_deref() == Some(ns.as_str())
                && w.metadata
                    .name
                    .as_deref()
                    .is_some_and(|n| n.starts_with(&prefix))
        })
        .map(|w| w.metadata.deletion_timestamp.is_some())
}

/// Ready replicas the binding's aggregated status reports per cluster.
pub fn ready_by_cluster(b: &ResourceBinding) -> Vec<(String, i64)> {
    b.status
        .as_ref()
        .map(|s| {
            s.aggregated_status
                .iter()
                .map(|i| {
                    let ready = i
                        .status
                        .as_ref()
                        .and_then(|s| s.get("readyReplicas"))
                        .and_then(serde_json::Value::as_i64)
                        .unwrap_or(0);
                    (i.cluster_name.clone(), ready)
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Ready replicas in the binding's target clusters (not those being left).
pub fn ready_in_targets(b: &ResourceBinding) -> i64 {
    ready_by_cluster(b)
        .into_iter()
        .filter(|(c, _)| b.spec.clusters.iter().any(|t| t.name == *c))
        .map(|(_, r)| r)
        .sum()
}

/// (type, reason, message) of the Events about object `name` of `kind`
/// in `namespace`.
pub async fn events_about(
    client: &kube::Client,
    namespace: &str,
    kind: &str,
    name: &str,
) -> Vec<(String, String, String)> {
    use k8s_openapi::api::core::v1::Event;
    let events: Api<Event> = Api::namespaced(client.clone(), namespace);
    let list = events.list(&ListParams::default()).await.unwrap();
    list.items
        .into_iter()
        .filter(|e| {
            e.involved_object.kind.as_deref() == Some(kind)
                && e.involved_object.name.as_deref() == Some(name)
        })
        .map(|e| {
            (
                e.type_.unwrap_or_default(),
                e.reason.unwrap_or_default(),
                e.message.unwrap_or_default(),
            )
        })
        .collect()
}

pub fn has_event(events: &[(String, String, String)], reason: &str) -> bool {
    events.iter().any(|(_, r, _)| r == reason)
}

/// The value of a sample (`name{labels}`) on the control plane's /metrics.
pub fn metric(hami: &Hami, sample: &str) -> Option<f64> {
    metric_at(&hami.endpoint(), sample)
}

pub fn condition<'a>(
    b: &'a ResourceBinding,
    type_: &str,
) -> Option<&'a k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition> {
    b.status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
}

pub fn has_our_taints(c: &Cluster) -> bool {
    c.spec
        .taints
        .iter()
        .any(|t| t.key.starts_with("cluster.hami.io/") && t.time_added.is_some())
}

/// Whether a member pod is Running and Ready.
pub fn pod_ready(p: &k8s_openapi::api::core::v1::Pod) -> bool {
    p.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// Whether a member pod is Pending with PodScheduled=False/Unschedulable.
pub fn pod_unschedulable(p: &k8s_openapi::api::core::v1::Pod) -> bool {
    p.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| {
            cs.iter().any(|c| {
                c.type_ == "PodScheduled"
                    && c.status == "False"
                    && c.reason.as_deref() == Some("Unschedulable")
            })
        })
}

/// [`metric`] by address (for a blocking task).
pub fn metric_at(endpoint: &crate::support::Endpoint, sample: &str) -> Option<f64> {
    let (_, body) = endpoint.get("/metrics").ok()?;
    body.lines()
        .find_map(|l| l.strip_prefix(&format!("{sample} ")))
        .and_then(|v| v.trim().parse().ok())
}
