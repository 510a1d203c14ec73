//! The member cluster's totals for Cluster status, kept incrementally from
//! Node and Pod events (never rebuilt per status write): node counts,
//! allocatable, the requests of scheduled pods (allocated) and of pods not
//! yet scheduled (allocating). Pure: no kube client, no tokio.
//!
//! Amounts are milli-units per resource name (`hami_api::parse_quantity`),
//! GPU resources (`nvidia.com/gpu`, ...) included, so that the control
//! plane's fallback (no estimator) sees them too.

use std::collections::{BTreeMap, HashMap};

use hami_api::cluster::{GpuSummary, NodeSummary, ResourceSummary};
use hami_api::quantity::format_milli;
use hami_api::{ResourceList, parse_quantity};
use hami_estimator::Snapshot;
use k8s_openapi::api::core::v1::{Node, Pod, PodSpec, ResourceRequirements};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

/// Milli-units per resource name.
pub type Amounts = BTreeMap<String, i128>;

/// Why an object was left out of the totals.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SummaryError {
    /// metadata.name is missing.
    #[error("object has no name")]
    NoName,
    /// A quantity cannot be read.
    #[error("resource {name}: {reason}")]
    Quantity {
        /// Resource name.
        name: String,
        /// What was wrong.
        reason: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PodState {
    /// Bound to a node and not finished.
    Allocated,
    /// Not bound, not finished, not being deleted.
    Allocating,
    /// Holds nothing.
    Idle,
}

#[derive(Debug)]
struct NodeEntry {
    ready: bool,
    allocatable: Amounts,
}

#[derive(Debug)]
struct PodEntry {
    state: PodState,
    requests: Amounts,
}

/// Node and pod totals of one member cluster.
#[derive(Debug, Default)]
pub struct Inventory {
    nodes: HashMap<String, NodeEntry>,
    pods: HashMap<(String, String), PodEntry>,
    ready_nodes: i32,
    allocatable: Amounts,
    allocated: Amounts,
    allocating: Amounts,
}

fn parse_list<'a>(
    list: impl IntoIterator<Item = (&'a String, &'a Quantity)>,
) -> Result<Amounts, SummaryError> {
    list.into_iter()
        .map(|(k, v)| {
            parse_quantity(&v.0)
                .map(|m| (k.clone(), m))
                .map_err(|e| SummaryError::Quantity {
                    name: k.clone(),
                    reason: e.to_string(),
                })
        })
        .collect()
}

fn add(into: &mut Amounts, from: &Amounts, sign: i128) {
    for (k, v) in from {
        let e = into.entry(k.clone()).or_insert(0);
        *e += sign * v;
        if *e == 0 {
            into.remove(k);
        }
    }
}

/// A container's requests, falling back to its limits per resource.
fn container_requests(r: Option<&ResourceRequirements>) -> Result<Amounts, SummaryError> {
    let mut out = match r.and_then(|r| r.limits.as_ref()) {
        Some(l) => parse_list(l)?,
        None => Amounts::new(),
    };
    if let Some(req) = r.and_then(|r| r.requests.as_ref()) {
        out.extend(parse_list(req)?);
    }
    Ok(out)
}

/// A pod's effective requests, as the Kubernetes scheduler counts them: the
/// sum over containers, at least each init container, plus overhead.
pub fn pod_requests(spec: &PodSpec) -> Result<Amounts, SummaryError> {
    let mut sum = Amounts::new();
    for c in &spec.containers {
        add(&mut sum, &container_requests(c.resources.as_ref())?, 1);
    }
    for c in spec.init_containers.iter().flatten() {
        for (k, v) in container_requests(c.resources.as_ref())? {
            let e = sum.entry(k).or_insert(0);
            *e = (*e).max(v);
        }
    }
    if let Some(o) = &spec.overhead {
        add(&mut sum, &parse_list(o)?, 1);
    }
    Ok(sum)
}

fn pod_state(pod: &Pod) -> PodState {
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
    if matches!(phase, Some("Succeeded") | Some("Failed")) {
        return PodState::Idle;
    }
    if pod
        .spec
        .as_ref()
        .and_then(|s| s.node_name.as_ref())
        .is_some()
    {
        PodState::Allocated
    } else if pod.metadata.deletion_timestamp.is_some() {
        PodState::Idle
    } else {
        PodState::Allocating
    }
}

fn to_list(a: &Amounts) -> ResourceList {
    a.iter()
        .filter(|(_, v)| **v > 0)
        .map(|(k, v)| (k.clone(), Quantity(format_milli(*v))))
        .collect()
}

impl Inventory {
    /// Adds or replaces a node.
    pub fn apply_node(&mut self, node: &Node) -> Result<(), SummaryError> {
        let name = node.metadata.name.clone().ok_or(SummaryError::NoName)?;
        let status = node.status.as_ref();
        let allocatable = match status.and_then(|s| s.allocatable.as_ref()) {
            Some(l) => parse_list(l)?,
            None => Amounts::new(),
        };
        let ready = status
            .and_then(|s| s.conditions.as_ref())
            .into_iter()
            .flatten()
            .any(|c| c.type_ == "Ready" && c.status == "True");
        self.delete_node(&name);
        add(&mut self.allocatable, &allocatable, 1);
        self.ready_nodes += i32::from(ready);
        self.nodes.insert(name, NodeEntry { ready, allocatable });
        Ok(())
    }

    /// Removes a node.
    pub fn delete_node(&mut self, name: &str) {
        if let Some(old) = self.nodes.remove(name) {
            add(&mut self.allocatable, &old.allocatable, -1);
            self.ready_nodes -= i32::from(old.ready);
        }
    }

    /// Names of the nodes held.
    pub fn node_names(&self) -> Vec<String> {
        self.nodes.keys().cloned().collect()
    }

    /// Adds or replaces a pod.
    pub fn apply_pod(&mut self, pod: &Pod) -> Result<(), SummaryError> {
        let name = pod.metadata.name.clone().ok_or(SummaryError::NoName)?;
        let ns = pod.metadata.namespace.clone().unwrap_or_default();
        let requests = match &pod.spec {
            Some(s) => pod_requests(s)?,
            None => Amounts::new(),
        };
        let state = pod_state(pod);
        self.delete_pod(&ns, &name);
        self.account(state, &requests, 1);
        self.pods.insert((ns, name), PodEntry { state, requests });
        Ok(())
    }

    /// Removes a pod.
    pub fn delete_pod(&mut self, namespace: &str, name: &str) {
        if let Some(old) = self.pods.remove(&(namespace.to_string(), name.to_string())) {
            self.account(old.state, &old.requests, -1);
        }
    }

    /// `(namespace, name)` of the pods held.
    pub fn pod_keys(&self) -> Vec<(String, String)> {
        self.pods.keys().cloned().collect()
    }

    fn account(&mut self, state: PodState, requests: &Amounts, sign: i128) {
        match state {
            PodState::Allocated => add(&mut self.allocated, requests, sign),
            PodState::Allocating => add(&mut self.allocating, requests, sign),
            PodState::Idle => {}
        }
    }

    /// Node counts.
    pub fn node_summary(&self) -> NodeSummary {
        NodeSummary {
            total_num: i32::try_from(self.nodes.len()).unwrap_or(i32::MAX),
            ready_num: self.ready_nodes,
        }
    }

    /// Allocatable, allocated and allocating totals.
    pub fn resource_summary(&self) -> ResourceSummary {
        ResourceSummary {
            allocatable: to_list(&self.allocatable),
            allocated: to_list(&self.allocated),
            allocating: to_list(&self.allocating),
        }
    }
}

/// GPUs per model from the estimator's snapshot (which holds each device's
/// use by the pods on it), by model name. Devices of unknown model are
/// summed under `unknown`.
pub fn gpu_summary(snapshot: &Snapshot) -> Vec<GpuSummary> {
    let mut by_model: BTreeMap<String, GpuSummary> = BTreeMap::new();
    for node in snapshot.node_views() {
        for d in node.devices {
            let model = match snapshot.model_name(d.model) {
                "" => "unknown",
                m => m,
            };
            let s = by_model
                .entry(model.to_string())
                .or_insert_with(|| GpuSummary {
                    model: model.to_string(),
                    ..GpuSummary::default()
                });
            let wide = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
            s.count += 1;
            s.healthy += i64::from(d.healthy);
            s.memory_total_mib += wide(d.total_mem);
            s.memory_free_mib += wide(d.total_mem.saturating_sub(d.used_mem));
            s.cores_total += i64::from(d.total_cores);
            s.cores_free += i64::from(d.total_cores.saturating_sub(d.used_cores));
            if d.healthy {
                s.share_slots_free += i64::from(d.slots.saturating_sub(d.used));
            }
        }
    }
    by_model.into_values().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn node(name: &str, cpu: &str, ready: bool) -> Node {
        serde_json::from_value(json!({
            "metadata": {"name": name},
            "status": {
                "allocatable": {"cpu": cpu, "memory": "1Gi", "nvidia.com/gpu": "2"},
                "conditions": [{"type": "Ready", "status": if ready {"True"} else {"False"}}]
            }
        }))
        .unwrap_or_default()
    }

    fn pod(name: &str, node: Option<&str>, phase: &str, cpu: &str) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "default"},
            "spec": {
                "nodeName": node,
                "initContainers": [{"name": "init", "resources": {"requests": {"cpu": "3"}}}],
                "containers": [
                    {"name": "a", "resources": {"requests": {"cpu": cpu}, "limits": {"nvidia.com/gpu": "1"}}},
                    {"name": "b", "resources": {"requests": {"cpu": cpu}}}
                ]
            },
            "status": {"phase": phase}
        }))
        .unwrap_or_default()
    }

    fn get(l: &ResourceList, k: &str) -> Option<String> {
        l.get(k).map(|q| q.0.clone())
    }

    #[test]
    fn totals_follow_events() {
        let mut inv = Inventory::default();
        inv.apply_node(&node("a", "4", true)).unwrap_or_default();
        inv.apply_node(&node("b", "2500m", false))
            .unwrap_or_default();
        assert_eq!(
            inv.node_summary(),
            NodeSummary {
                total_num: 2,
                ready_num: 1
            }
        );
        let r = inv.resource_summary();
        assert_eq!(get(&r.allocatable, "cpu").as_deref(), Some("6500m"));
        assert_eq!(get(&r.allocatable, "nvidia.com/gpu").as_deref(), Some("4"));

        // Containers sum to 2 CPUs; the init container asks 3: max(2, 3) = 3.
        inv.apply_pod(&pod("p1", Some("a"), "Running", "1"))
            .unwrap_or_default();
        inv.apply_pod(&pod("p2", None, "Pending", "2"))
            .unwrap_or_default();
        let r = inv.resource_summary();
        assert_eq!(get(&r.allocated, "cpu").as_deref(), Some("3"));
        assert_eq!(get(&r.allocated, "nvidia.com/gpu").as_deref(), Some("1"));
        assert_eq!(get(&r.allocating, "cpu").as_deref(), Some("4"));

        // p2 gets bound, p1 finishes: allocated moves, allocating empties.
        inv.apply_pod(&pod("p2", Some("b"), "Running", "2"))
            .unwrap_or_default();
        inv.apply_pod(&pod("p1", Some("a"), "Succeeded", "1"))
            .unwrap_or_default();
        let r = inv.resource_summary();
        assert_eq!(get(&r.allocated, "cpu").as_deref(), Some("4"));
        assert!(r.allocating.is_empty());

        inv.delete_pod("default", "p2");
        inv.delete_node("b");
        let r = inv.resource_summary();
        assert!(r.allocated.is_empty());
        assert_eq!(get(&r.allocatable, "cpu").as_deref(), Some("4"));
        assert_eq!(
            inv.node_summary(),
            NodeSummary {
                total_num: 1,
                ready_num: 1
            }
        );
    }

    #[test]
    fn a_bad_quantity_is_an_error_not_a_panic() {
        let mut bad = node("x", "4", true);
        if let Some(s) = bad.status.as_mut() {
            s.allocatable = Some([("cpu".to_string(), Quantity("lots".into()))].into());
        }
        let mut inv = Inventory::default();
        assert!(matches!(
            inv.apply_node(&bad),
            Err(SummaryError::Quantity { .. })
        ));
        assert_eq!(inv.node_summary().total_num, 0);
    }
}
