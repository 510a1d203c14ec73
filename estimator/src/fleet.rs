//! The fleet description: one member cluster's nodes, GPUs and running pods
//! as YAML, used by the `hami-estimator` binary, tests, benches and the
//! member-cluster simulator; and [`generate`], a seeded random fleet.
//!
//! ```yaml
//! cluster: member-1
//! nodes:
//!   - name: gpu-0
//!     labels: {topology.kubernetes.io/zone: zone-a}
//!     taints: [{key: dedicated, value: ml, effect: NoSchedule}]
//!     allocatable: {cpu: "64", memory: 512Gi, pods: "110"}
//!     gpus:
//!       - {id: GPU-0, model: NVIDIA-A100-SXM4-80GB, memoryMiB: 81920, cores: 100, slots: 10}
//!     pods:
//!       - name: train-0
//!         requests: {cpu: "4", memory: 16Gi}
//!         gpus: [{device: GPU-0, memoryMiB: 20480, cores: 30}]
//! pending:
//!   - {name: web-7, workload: {kind: Deployment, name: web}, unschedulableForSeconds: 300}
//! ```
//!
//! Quantities use Kubernetes' notation. `ready` defaults to true, `slots`
//! to 1, `cores` to 100, `healthy` to true, namespaces to `default`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::model::{
    GpuDevice, GpuUse, NodeInfo, PodInfo, PodPhase, ResourceError, Resources, Taint, TaintEffect,
    WorkloadRef,
};
use crate::snapshot::Snapshot;

/// Why a fleet description cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    /// YAML syntax or shape.
    #[error("fleet YAML: {0}")]
    Yaml(String),
    /// A quantity is malformed.
    #[error("node {node}: {source}")]
    Resource {
        /// Node (or pending pod) name.
        node: String,
        /// What was wrong.
        #[source]
        source: ResourceError,
    },
    /// A taint effect is unknown.
    #[error("node {node}: unknown taint effect {effect:?}")]
    Effect {
        /// Node name.
        node: String,
        /// The effect given.
        effect: String,
    },
    /// A pod names a GPU its node does not have.
    #[error("pod {pod} on node {node}: no GPU {device:?}")]
    UnknownDevice {
        /// Node.
        node: String,
        /// Pod.
        pod: String,
        /// Device id.
        device: String,
    },
}

fn yes() -> bool {
    true
}
fn one() -> u32 {
    1
}
fn hundred() -> u32 {
    100
}
fn default_ns() -> String {
    "default".into()
}

/// One member cluster.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Fleet {
    /// Cluster name.
    #[serde(default)]
    pub cluster: String,
    /// Nodes.
    #[serde(default)]
    pub nodes: Vec<FleetNode>,
    /// Pods not bound to a node.
    #[serde(default)]
    pub pending: Vec<FleetPendingPod>,
}

/// A node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FleetNode {
    /// Name.
    pub name: String,
    /// Labels.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Taints.
    #[serde(default)]
    pub taints: Vec<FleetTaint>,
    /// Allocatable resources (quantities).
    #[serde(default)]
    pub allocatable: BTreeMap<String, String>,
    /// Cordoned.
    #[serde(default)]
    pub unschedulable: bool,
    /// Ready.
    #[serde(default = "yes")]
    pub ready: bool,
    /// GPUs.
    #[serde(default)]
    pub gpus: Vec<FleetGpu>,
    /// Pods running here.
    #[serde(default)]
    pub pods: Vec<FleetPod>,
}

/// A taint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FleetTaint {
    /// Key.
    pub key: String,
    /// Value.
    #[serde(default)]
    pub value: String,
    /// NoSchedule, PreferNoSchedule or NoExecute.
    pub effect: String,
}

/// A GPU.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FleetGpu {
    /// UUID.
    pub id: String,
    /// Model.
    #[serde(default)]
    pub model: String,
    /// Memory, MiB.
    #[serde(rename = "memoryMiB", default)]
    pub memory_mib: u64,
    /// Compute, percent of one GPU.
    #[serde(default = "hundred")]
    pub cores: u32,
    /// Share slots.
    #[serde(default = "one")]
    pub slots: u32,
    /// Healthy.
    #[serde(default = "yes")]
    pub healthy: bool,
}

/// A pod on a node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FleetPod {
    /// Name.
    pub name: String,
    /// Namespace.
    #[serde(default = "default_ns")]
    pub namespace: String,
    /// Requests (quantities; GPU resources are ignored here, use `gpus`).
    #[serde(default)]
    pub requests: BTreeMap<String, String>,
    /// GPU use, one entry per container per device.
    #[serde(default)]
    pub gpus: Vec<FleetGpuUse>,
}

/// One pod's use of one device.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FleetGpuUse {
    /// Device UUID (a [`FleetGpu::id`] of the same node).
    pub device: String,
    /// Memory, MiB.
    #[serde(rename = "memoryMiB", default)]
    pub memory_mib: u64,
    /// Compute, percent.
    #[serde(default)]
    pub cores: u32,
}

/// A pod that is not bound to a node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FleetPendingPod {
    /// Name.
    pub name: String,
    /// Namespace.
    #[serde(default = "default_ns")]
    pub namespace: String,
    /// Owning workload.
    pub workload: FleetWorkload,
    /// Requests.
    #[serde(default)]
    pub requests: BTreeMap<String, String>,
    /// How long it has been unschedulable, seconds (absent: not marked unschedulable).
    #[serde(default)]
    pub unschedulable_for_seconds: Option<u64>,
}

/// A workload reference (namespace is the pod's).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FleetWorkload {
    /// Kind.
    pub kind: String,
    /// Name.
    pub name: String,
}

impl Fleet {
    /// Parses YAML strictly: an unknown key, a wrong type or a missing
    /// field is an error naming the field's path (a `hami sim` scenario
    /// given as a fleet is refused, not read as a fleet without nodes).
    pub fn from_yaml(text: &str) -> Result<Self, FleetError> {
        hami_api::yaml::from_str(text).map_err(FleetError::Yaml)
    }

    /// Writes YAML.
    pub fn to_yaml(&self) -> Result<String, FleetError> {
        serde_saphyr::to_string(self).map_err(|e| FleetError::Yaml(e.to_string()))
    }

    /// The snapshot's input objects. `now_ms` dates pending pods'
    /// unschedulable condition.
    pub fn objects(&self, now_ms: i64) -> Result<(Vec<NodeInfo>, Vec<PodInfo>), FleetError> {
        let mut nodes = Vec::with_capacity(self.nodes.len());
        let mut pods = Vec::new();
        for n in &self.nodes {
            let res_err = |source| FleetError::Resource {
                node: n.name.clone(),
                source,
            };
            let (allocatable, amounts) =
                Resources::parse(n.allocatable.iter().map(|(k, v)| (k.as_str(), v.as_str())))
                    .map_err(res_err)?;
            let mut taints = Vec::with_capacity(n.taints.len());
            for t in &n.taints {
                let effect = TaintEffect::parse(&t.effect).ok_or_else(|| FleetError::Effect {
                    node: n.name.clone(),
                    effect: t.effect.clone(),
                })?;
                taints.push(Taint {
                    key: t.key.clone(),
                    value: t.value.clone(),
                    effect,
                });
            }
            let gpus = if n.gpus.is_empty() {
                crate::k8s::whole_gpus(&n.name, amounts.count)
            } else {
                n.gpus
                    .iter()
                    .map(|g| GpuDevice {
                        id: g.id.clone(),
                        model: g.model.clone(),
                        memory_mib: g.memory_mib,
                        cores: g.cores,
                        slots: g.slots,
                        healthy: g.healthy,
                    })
                    .collect()
            };
            for p in &n.pods {
                let (requests, pod_amounts) =
                    Resources::parse(p.requests.iter().map(|(k, v)| (k.as_str(), v.as_str())))
                        .map_err(res_err)?;
                for u in &p.gpus {
                    if !gpus.iter().any(|g| g.id == u.device) {
                        return Err(FleetError::UnknownDevice {
                            node: n.name.clone(),
                            pod: p.name.clone(),
                            device: u.device.clone(),
                        });
                    }
                }
                pods.push(PodInfo {
                    namespace: p.namespace.clone(),
                    name: p.name.clone(),
                    node: Some(n.name.clone()),
                    requests,
                    whole_gpus: pod_amounts.count,
                    gpus: p
                        .gpus
                        .iter()
                        .map(|u| GpuUse {
                            uuid: u.device.clone(),
                            memory_mib: u.memory_mib,
                            cores: u.cores,
                        })
                        .collect(),
                    phase: PodPhase::Running,
                    ..PodInfo::default()
                });
            }
            nodes.push(NodeInfo {
                name: n.name.clone(),
                labels: n.labels.clone(),
                taints,
                allocatable,
                unschedulable: n.unschedulable,
                ready: n.ready,
                gpus,
            });
        }
        for p in &self.pending {
            let (requests, _) =
                Resources::parse(p.requests.iter().map(|(k, v)| (k.as_str(), v.as_str())))
                    .map_err(|source| FleetError::Resource {
                        node: p.name.clone(),
                        source,
                    })?;
            pods.push(PodInfo {
                namespace: p.namespace.clone(),
                name: p.name.clone(),
                requests,
                owner: Some(WorkloadRef {
                    kind: p.workload.kind.clone(),
                    namespace: p.namespace.clone(),
                    name: p.workload.name.clone(),
                }),
                unschedulable_since_ms: p.unschedulable_for_seconds.map(|s| {
                    now_ms.saturating_sub(i64::try_from(s.saturating_mul(1000)).unwrap_or(i64::MAX))
                }),
                ..PodInfo::default()
            });
        }
        Ok((nodes, pods))
    }

    /// Builds a snapshot.
    pub fn snapshot(&self, now_ms: i64) -> Result<Snapshot, FleetError> {
        let (nodes, pods) = self.objects(now_ms)?;
        Ok(Snapshot::from_objects(nodes, pods))
    }
}

pub use crate::generate::{GenerateOptions, Rng, generate, random_shape};
