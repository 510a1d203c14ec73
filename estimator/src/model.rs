//! The snapshot's input types: plain structs for nodes, pods and GPUs. The
//! agent converts Kubernetes objects into these (see [`crate::k8s`]); the
//! fleet format ([`crate::fleet`]) builds them from YAML.

use std::collections::BTreeMap;

use hami_api::gpu::{
    GPU_RESOURCE_NAMES, RESOURCE_GPU, RESOURCE_GPU_CORES, RESOURCE_GPU_MEM,
    RESOURCE_GPU_MEM_PERCENTAGE,
};

use crate::quantity::{QuantityError, parse_milli, parse_value};

/// Why a resource list could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResourceError {
    /// A quantity is malformed or negative.
    #[error("resource {name}: {source}")]
    Quantity {
        /// Resource name.
        name: String,
        /// What was wrong.
        #[source]
        source: QuantityError,
    },
    /// A GPU amount is out of range.
    #[error("resource {name}: {reason}")]
    Gpu {
        /// Resource name.
        name: String,
        /// What was wrong.
        reason: &'static str,
    },
}

/// Node-level resources: the standard ones and any extended resource.
/// GPU resources (`nvidia.com/gpu*`) are never here: they are accounted per
/// device (see [`GpuDevice`] and [`GpuAmounts`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Resources {
    /// CPU in millicores.
    pub cpu_milli: u64,
    /// Memory in bytes.
    pub memory: u64,
    /// Ephemeral storage in bytes.
    pub ephemeral_storage: u64,
    /// Pod count.
    pub pods: u64,
    /// Extended resources in whole units (hugepages in bytes), by name.
    pub extended: BTreeMap<String, u64>,
}

impl Resources {
    /// Adds `other` into `self` (saturating).
    pub fn add(&mut self, other: &Resources) {
        self.cpu_milli = self.cpu_milli.saturating_add(other.cpu_milli);
        self.memory = self.memory.saturating_add(other.memory);
        self.ephemeral_storage = self
            .ephemeral_storage
            .saturating_add(other.ephemeral_storage);
        self.pods = self.pods.saturating_add(other.pods);
        for (k, v) in &other.extended {
            let e = self.extended.entry(k.clone()).or_insert(0);
            *e = e.saturating_add(*v);
        }
    }

    /// Subtracts `other` from `self` (saturating at zero; names that reach 0 are removed).
    pub fn sub(&mut self, other: &Resources) {
        self.cpu_milli = self.cpu_milli.saturating_sub(other.cpu_milli);
        self.memory = self.memory.saturating_sub(other.memory);
        self.ephemeral_storage = self
            .ephemeral_storage
            .saturating_sub(other.ephemeral_storage);
        self.pods = self.pods.saturating_sub(other.pods);
        for (k, v) in &other.extended {
            if let Some(e) = self.extended.get_mut(k) {
                *e = e.saturating_sub(*v);
                if *e == 0 {
                    self.extended.remove(k);
                }
            }
        }
    }

    /// Reads a Kubernetes resource list (name → quantity string). GPU
    /// resource names are returned separately.
    pub fn parse<'a, I>(list: I) -> Result<(Resources, GpuAmounts), ResourceError>
    where
        I: IntoIterator<Item = (&'a str, &'a str)>,
    {
        let mut r = Resources::default();
        let mut g = GpuAmounts::default();
        for (name, q) in list {
            let err = |source| ResourceError::Quantity {
                name: name.to_string(),
                source,
            };
            if GPU_RESOURCE_NAMES.contains(&name) {
                let v = parse_value(q).map_err(err)?;
                let small = u32::try_from(v).map_err(|_| ResourceError::Gpu {
                    name: name.to_string(),
                    reason: "value too large",
                });
                match name {
                    RESOURCE_GPU => g.count = small?,
                    RESOURCE_GPU_MEM => g.mem_mib = Some(v),
                    RESOURCE_GPU_MEM_PERCENTAGE => g.mem_percent = Some(small?),
                    RESOURCE_GPU_CORES => g.cores = Some(small?),
                    _ => {}
                }
                continue;
            }
            match name {
                "cpu" => r.cpu_milli = parse_milli(q).map_err(err)?,
                "memory" => r.memory = parse_value(q).map_err(err)?,
                "ephemeral-storage" => r.ephemeral_storage = parse_value(q).map_err(err)?,
                "pods" => r.pods = parse_value(q).map_err(err)?,
                other => {
                    let v = parse_value(q).map_err(err)?;
                    if v > 0 {
                        r.extended.insert(other.to_string(), v);
                    }
                }
            }
        }
        Ok((r, g))
    }
}

/// GPU amounts read from a resource list, with HAMi's names.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct GpuAmounts {
    /// `nvidia.com/gpu`: GPUs (or, on a node, allocatable GPU slots).
    pub count: u32,
    /// `nvidia.com/gpumem`: MiB per GPU.
    pub mem_mib: Option<u64>,
    /// `nvidia.com/gpumem-percentage`: percent of each GPU's memory.
    pub mem_percent: Option<u32>,
    /// `nvidia.com/gpucores`: percent of one GPU's compute.
    pub cores: Option<u32>,
}

/// A taint's effect.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TaintEffect {
    /// New pods that do not tolerate it are not scheduled.
    NoSchedule,
    /// A soft preference: ignored by the estimator.
    PreferNoSchedule,
    /// Like NoSchedule, and running pods are evicted.
    NoExecute,
}

impl TaintEffect {
    /// Parses Kubernetes' spelling.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "NoSchedule" => Some(Self::NoSchedule),
            "PreferNoSchedule" => Some(Self::PreferNoSchedule),
            "NoExecute" => Some(Self::NoExecute),
            _ => None,
        }
    }

    /// Kubernetes' spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NoSchedule => "NoSchedule",
            Self::PreferNoSchedule => "PreferNoSchedule",
            Self::NoExecute => "NoExecute",
        }
    }
}

/// A node taint.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Taint {
    /// Key.
    pub key: String,
    /// Value (may be empty).
    pub value: String,
    /// Effect.
    pub effect: TaintEffect,
}

/// One physical GPU on a node.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct GpuDevice {
    /// Device UUID (used to match pods' allocation annotations).
    pub id: String,
    /// Model string; empty when unknown.
    pub model: String,
    /// Device memory in MiB (0 when unknown).
    pub memory_mib: u64,
    /// Compute in percent of one GPU (100 = one whole GPU).
    pub cores: u32,
    /// Share slots: how many containers may use it at once.
    pub slots: u32,
    /// Whether it is healthy.
    pub healthy: bool,
}

/// A node as the snapshot sees it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NodeInfo {
    /// Node name.
    pub name: String,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Taints.
    pub taints: Vec<Taint>,
    /// Allocatable resources (GPU resources excluded).
    pub allocatable: Resources,
    /// `spec.unschedulable` (cordoned).
    pub unschedulable: bool,
    /// Ready condition is True.
    pub ready: bool,
    /// GPUs. Pods' GPU use is matched to these by [`GpuDevice::id`].
    pub gpus: Vec<GpuDevice>,
}

/// GPU use of one device by one pod (summed over its containers).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct GpuUse {
    /// Device UUID.
    pub uuid: String,
    /// MiB of device memory.
    pub memory_mib: u64,
    /// Percent of the device's compute.
    pub cores: u32,
}

/// A pod's phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum PodPhase {
    /// Not yet running (possibly not yet scheduled).
    #[default]
    Pending,
    /// Running.
    Running,
    /// Finished successfully: holds nothing.
    Succeeded,
    /// Finished with failure: holds nothing.
    Failed,
    /// Unknown.
    Unknown,
}

/// The workload a pod belongs to (the object Karmada propagates).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct WorkloadRef {
    /// Kind, e.g. `Deployment`.
    pub kind: String,
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
}

/// A pod as the snapshot sees it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PodInfo {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// Node the pod is bound to.
    pub node: Option<String>,
    /// Effective requests (GPU resources excluded); `pods` is ignored (each pod counts 1).
    pub requests: Resources,
    /// Whole GPUs requested (`nvidia.com/gpu`). Used only on nodes whose GPUs
    /// are counted from allocatable (no HAMi annotation): the pod then holds
    /// that many whole devices.
    pub whole_gpus: u32,
    /// Devices in use by this pod (from `hami.io/vgpu-devices-allocated`).
    pub gpus: Vec<GpuUse>,
    /// Phase.
    pub phase: PodPhase,
    /// Has a deletion timestamp. Still holds its resources until it is gone,
    /// as the Kubernetes scheduler counts it.
    pub terminating: bool,
    /// The workload that owns the pod, when known.
    pub owner: Option<WorkloadRef>,
    /// When the PodScheduled condition turned False with reason
    /// Unschedulable, in milliseconds since the Unix epoch.
    pub unschedulable_since_ms: Option<i64>,
}

impl PodInfo {
    /// Whether the pod holds node resources.
    pub fn holds_resources(&self) -> bool {
        self.node.is_some() && !matches!(self.phase, PodPhase::Succeeded | PodPhase::Failed)
    }
}
