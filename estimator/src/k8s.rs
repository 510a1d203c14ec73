//! Conversions from Kubernetes objects (k8s-openapi, pure types) into the
//! snapshot's input types and replica shapes. The agent feeds reflector
//! events through these into [`crate::Snapshot`]'s apply/delete methods.

use std::collections::BTreeMap;

use hami_api::gpu::{
    self, GpuAnnotationError, NODE_NVIDIA_REGISTER, POD_DEVICES_ALLOCATED, RESOURCE_GPU,
};
use k8s_openapi::api::core::v1 as core;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use crate::claim::{NodeClaim, Requirement, Term, Toleration};
use crate::model::{
    GpuAmounts, GpuDevice, GpuUse, NodeInfo, PodInfo, PodPhase, ResourceError, Resources, Taint,
    TaintEffect, WorkloadRef,
};
use crate::shape::{ReplicaShape, ShapeError};

/// Why a Kubernetes object could not be converted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConvertError {
    /// metadata.name is missing.
    #[error("object has no name")]
    NoName,
    /// A resource list is malformed.
    #[error(transparent)]
    Resource(#[from] ResourceError),
    /// A HAMi annotation is malformed.
    #[error("annotation: {0}")]
    Annotation(#[from] GpuAnnotationError),
}

fn list(map: Option<&BTreeMap<String, Quantity>>) -> impl Iterator<Item = (&str, &str)> {
    map.into_iter()
        .flatten()
        .map(|(k, v)| (k.as_str(), v.0.as_str()))
}

/// Converts a Node. GPUs come from HAMi's register annotation; without it,
/// `nvidia.com/gpu` in allocatable counts as that many whole GPUs of
/// unknown model and memory.
pub fn node_info(node: &core::Node) -> Result<NodeInfo, ConvertError> {
    let name = node.metadata.name.clone().ok_or(ConvertError::NoName)?;
    let status = node.status.as_ref();
    let (allocatable, amounts) =
        Resources::parse(list(status.and_then(|s| s.allocatable.as_ref())))?;
    let spec = node.spec.as_ref();
    let taints = spec
        .and_then(|s| s.taints.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|t| {
            Some(Taint {
                key: t.key.clone(),
                value: t.value.clone().unwrap_or_default(),
                effect: TaintEffect::parse(&t.effect)?,
            })
        })
        .collect();
    let ready = status
        .and_then(|s| s.conditions.as_ref())
        .into_iter()
        .flatten()
        .any(|c| c.type_ == "Ready" && c.status == "True");
    let annotations = node.metadata.annotations.as_ref();
    let gpus = match annotations.and_then(|a| a.get(NODE_NVIDIA_REGISTER)) {
        Some(v) => gpu::parse_node_devices(v)?
            .into_iter()
            .map(|d| GpuDevice {
                id: d.id,
                model: d.model,
                memory_mib: d.devmem,
                cores: d.devcore,
                slots: d.count,
                healthy: d.health,
            })
            .collect(),
        None => whole_gpus(&name, amounts.count),
    };
    Ok(NodeInfo {
        labels: node.metadata.labels.clone().unwrap_or_default(),
        name,
        taints,
        allocatable,
        unschedulable: spec.and_then(|s| s.unschedulable).unwrap_or(false),
        ready,
        gpus,
    })
}

/// `count` whole GPUs of unknown model: one slot, 100 cores, unknown memory.
pub fn whole_gpus(node: &str, count: u32) -> Vec<GpuDevice> {
    (0..count)
        .map(|i| GpuDevice {
            id: format!("{node}/gpu-{i}"),
            model: String::new(),
            memory_mib: 0,
            cores: 100,
            slots: 1,
            healthy: true,
        })
        .collect()
}

/// Requests of one container: requests, falling back to limits per
/// resource (Kubernetes defaults requests to limits).
fn container_requests(
    r: Option<&core::ResourceRequirements>,
) -> impl Iterator<Item = (&str, &str)> {
    let requests = r.and_then(|r| r.requests.as_ref());
    let limits = r.and_then(|r| r.limits.as_ref());
    let from_limits = limits
        .into_iter()
        .flatten()
        .filter(move |(k, _)| !requests.is_some_and(|req| req.contains_key(k.as_str())));
    requests
        .into_iter()
        .flatten()
        .chain(from_limits)
        .map(|(k, v)| (k.as_str(), v.0.as_str()))
}

fn max_into(acc: &mut Resources, r: &Resources) {
    acc.cpu_milli = acc.cpu_milli.max(r.cpu_milli);
    acc.memory = acc.memory.max(r.memory);
    acc.ephemeral_storage = acc.ephemeral_storage.max(r.ephemeral_storage);
    for (k, v) in &r.extended {
        let e = acc.extended.entry(k.clone()).or_insert(0);
        *e = (*e).max(*v);
    }
}

/// A pod spec's effective requests (sum of containers, at least each init
/// container, plus overhead) and its GPU amounts. Containers that ask for
/// GPUs must ask for the same memory and cores per GPU.
pub fn pod_requests(spec: &core::PodSpec) -> Result<(Resources, GpuAmounts), ShapeError> {
    let mut sum = Resources::default();
    let mut gpu: Option<GpuAmounts> = None;
    for c in &spec.containers {
        let (r, g) = Resources::parse(container_requests(c.resources.as_ref()))?;
        sum.add(&r);
        if g.count > 0 {
            gpu = Some(match gpu {
                None => g,
                Some(prev)
                    if prev.mem_mib == g.mem_mib
                        && prev.mem_percent == g.mem_percent
                        && prev.cores == g.cores =>
                {
                    GpuAmounts {
                        count: prev.count + g.count,
                        ..prev
                    }
                }
                Some(_) => return Err(ShapeError::MixedGpuShapes),
            });
        }
    }
    for c in spec.init_containers.iter().flatten() {
        let (r, _) = Resources::parse(container_requests(c.resources.as_ref()))?;
        max_into(&mut sum, &r);
    }
    let (overhead, _) = Resources::parse(list(spec.overhead.as_ref()))?;
    sum.add(&overhead);
    sum.pods = 0;
    Ok((sum, gpu.unwrap_or_default()))
}

/// Converts a Pod.
pub fn pod_info(pod: &core::Pod) -> Result<PodInfo, ConvertError> {
    let name = pod.metadata.name.clone().ok_or(ConvertError::NoName)?;
    let namespace = pod.metadata.namespace.clone().unwrap_or_default();
    let (requests, whole) = match &pod.spec {
        Some(spec) => pod_requests(spec).map_err(|e| match e {
            ShapeError::Resource(r) => ConvertError::Resource(r),
            other => ConvertError::Resource(ResourceError::Gpu {
                name: RESOURCE_GPU.into(),
                reason: if matches!(other, ShapeError::MixedGpuShapes) {
                    "containers ask for different GPU shapes"
                } else {
                    "invalid GPU request"
                },
            }),
        })?,
        None => (Resources::default(), GpuAmounts::default()),
    };
    let annotations = pod.metadata.annotations.as_ref();
    let gpus = match annotations.and_then(|a| a.get(POD_DEVICES_ALLOCATED)) {
        Some(v) => gpu::parse_pod_devices(v)?
            .into_iter()
            .flatten()
            .map(|d| GpuUse {
                uuid: d.uuid,
                memory_mib: d.mem_mib,
                cores: d.cores,
            })
            .collect(),
        None => Vec::new(),
    };
    let status = pod.status.as_ref();
    let phase = match status.and_then(|s| s.phase.as_deref()) {
        Some("Running") => PodPhase::Running,
        Some("Succeeded") => PodPhase::Succeeded,
        Some("Failed") => PodPhase::Failed,
        Some("Unknown") => PodPhase::Unknown,
        _ => PodPhase::Pending,
    };
    let unschedulable_since_ms = status
        .and_then(|s| s.conditions.as_ref())
        .into_iter()
        .flatten()
        .find(|c| {
            c.type_ == "PodScheduled"
                && c.status == "False"
                && c.reason.as_deref() == Some("Unschedulable")
        })
        .map(|c| {
            c.last_transition_time
                .as_ref()
                .map_or(0, |t| t.0.as_millisecond())
        });
    Ok(PodInfo {
        owner: owner(pod),
        namespace,
        name,
        node: pod.spec.as_ref().and_then(|s| s.node_name.clone()),
        requests,
        whole_gpus: whole.count,
        gpus,
        phase,
        terminating: pod.metadata.deletion_timestamp.is_some(),
        unschedulable_since_ms,
    })
}

/// The workload of a pod: its controller, with a ReplicaSet named
/// `<deployment>-<pod-template-hash>` mapped to its Deployment.
pub fn owner(pod: &core::Pod) -> Option<WorkloadRef> {
    let r = pod
        .metadata
        .owner_references
        .as_ref()?
        .iter()
        .find(|r| r.controller == Some(true))?;
    let namespace = pod.metadata.namespace.clone().unwrap_or_default();
    if r.kind == "ReplicaSet"
        && let Some(hash) = pod
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get("pod-template-hash"))
        && let Some(deploy) = r.name.strip_suffix(&format!("-{hash}"))
    {
        return Some(WorkloadRef {
            kind: "Deployment".into(),
            namespace,
            name: deploy.into(),
        });
    }
    Some(WorkloadRef {
        kind: r.kind.clone(),
        namespace,
        name: r.name.clone(),
    })
}

/// Converts a Kubernetes node selector (required node affinity).
pub fn affinity_terms(sel: &core::NodeSelector) -> Result<Vec<Term>, ShapeError> {
    let req = |r: &core::NodeSelectorRequirement| {
        Requirement::from_fields(&r.key, &r.operator, r.values.clone().unwrap_or_default())
    };
    sel.node_selector_terms
        .iter()
        .map(|t| {
            Term::convert(
                t.match_expressions.iter().flatten(),
                t.match_fields.iter().flatten(),
                req,
            )
        })
        .collect()
}

/// Converts a toleration.
pub fn toleration(t: &core::Toleration) -> Result<Toleration, ShapeError> {
    Toleration::from_fields(
        t.key.as_deref(),
        t.operator.as_deref(),
        t.value.as_deref(),
        t.effect.as_deref(),
    )
}

/// The replica shape of a pod template: its requests, node claim and GPU
/// request (with the type lists from the template's annotations).
pub fn shape_from_pod_spec(
    spec: &core::PodSpec,
    annotations: &BTreeMap<String, String>,
) -> Result<ReplicaShape, ShapeError> {
    let (requests, amounts) = pod_requests(spec)?;
    let affinity = spec
        .affinity
        .as_ref()
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|a| {
            a.required_during_scheduling_ignored_during_execution
                .as_ref()
        })
        .map(affinity_terms)
        .transpose()?;
    let claim = NodeClaim {
        node_selector: spec.node_selector.clone().unwrap_or_default(),
        affinity,
        tolerations: spec
            .tolerations
            .iter()
            .flatten()
            .map(toleration)
            .collect::<Result<_, _>>()?,
    };
    let shape = ReplicaShape::from_parts(requests, amounts, claim, annotations)?;

    Ok(shape)
}
