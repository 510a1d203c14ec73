//! The replica shape: what one replica asks of a node, with HAMi's GPU
//! semantics.

use std::collections::BTreeMap;

use hami_api::gpu::{NOUSE_GPU_TYPE, USE_GPU_TYPE, gpu_type_allowed, split_type_list};

use crate::claim::NodeClaim;
use crate::model::{GpuAmounts, ResourceError, Resources};

/// Why a shape is invalid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShapeError {
    /// A resource quantity is malformed.
    #[error(transparent)]
    Resource(#[from] ResourceError),
    /// GPU memory, cores or type given without `nvidia.com/gpu`.
    #[error("{0} given without nvidia.com/gpu")]
    GpuWithoutCount(&'static str),
    /// Percentage above 100.
    #[error("nvidia.com/gpumem-percentage must be at most 100, got {0}")]
    Percentage(u32),
    /// Containers of one pod ask for different GPU shapes.
    #[error(
        "containers ask for different GPU memory or cores; one GPU shape per replica is supported"
    )]
    MixedGpuShapes,
    /// An affinity operator or toleration is malformed.
    #[error("{0}")]
    Claim(String),
}

/// Device memory asked for each GPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GpuMemory {
    /// MiB per GPU (`nvidia.com/gpumem`).
    Mib(u64),
    /// Percent of each device's memory (`nvidia.com/gpumem-percentage`;
    /// HAMi's default is 100 when neither is given).
    Percent(u32),
}

impl GpuMemory {
    /// MiB this asks of a device with `total_mib` MiB (HAMi rounds down).
    pub fn of_device(self, total_mib: u64) -> u64 {
        match self {
            GpuMemory::Mib(m) => m,
            GpuMemory::Percent(p) => total_mib.saturating_mul(u64::from(p)) / 100,
        }
    }
}

/// The GPU part of a replica.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct GpuRequest {
    /// GPUs per replica, each on a different physical device.
    pub count: u32,
    /// Memory per GPU.
    pub memory: GpuMemory,
    /// Percent of one GPU's compute per GPU (100 = exclusive use).
    pub cores: u32,
    /// Allowed models (case-insensitive substrings); empty = any.
    pub use_types: Vec<String>,
    /// Excluded models.
    pub nouse_types: Vec<String>,
}

impl GpuRequest {
    /// Whether a model passes the include/exclude lists.
    pub fn model_allowed(&self, model: &str) -> bool {
        gpu_type_allowed(model, &self.use_types, &self.nouse_types)
    }
}

/// What one replica asks for.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct ReplicaShape {
    /// Node-level requests (GPU resources excluded; `pods` ignored: each replica is one pod).
    pub requests: Resources,
    /// GPUs, when any.
    pub gpu: Option<GpuRequest>,
    /// Node selector, affinity and tolerations.
    pub claim: NodeClaim,
}

impl ReplicaShape {
    /// Builds a shape from a Kubernetes resource list (name → quantity), a
    /// claim and the workload's annotations (for the GPU type lists).
    pub fn from_resource_list<'a, I>(
        list: I,
        claim: NodeClaim,
        annotations: &BTreeMap<String, String>,
    ) -> Result<Self, ShapeError>
    where
        I: IntoIterator<Item = (&'a str, &'a str)>,
    {
        let (requests, amounts) = Resources::parse(list)?;
        Self::from_parts(requests, amounts, claim, annotations)
    }

    /// Builds a shape from parsed requests and GPU amounts.
    pub fn from_parts(
        mut requests: Resources,
        amounts: GpuAmounts,
        claim: NodeClaim,
        annotations: &BTreeMap<String, String>,
    ) -> Result<Self, ShapeError> {
        requests.pods = 0;
        let use_types = annotations
            .get(USE_GPU_TYPE)
            .map(|v| split_type_list(v))
            .unwrap_or_default();
        let nouse_types = annotations
            .get(NOUSE_GPU_TYPE)
            .map(|v| split_type_list(v))
            .unwrap_or_default();
        let gpu = gpu_request(amounts, use_types, nouse_types)?;
        Ok(ReplicaShape {
            requests,
            gpu,
            claim,
        })
    }
}

/// Turns GPU amounts into a request with HAMi's defaults: memory 100% when
/// neither gpumem nor gpumem-percentage is given, cores 0, cores above 100
/// clamped to 100.
pub fn gpu_request(
    a: GpuAmounts,
    use_types: Vec<String>,
    nouse_types: Vec<String>,
) -> Result<Option<GpuRequest>, ShapeError> {
    if a.count == 0 {
        if a.mem_mib.is_some_and(|m| m > 0) {
            return Err(ShapeError::GpuWithoutCount("nvidia.com/gpumem"));
        }
        if a.cores.is_some_and(|c| c > 0) {
            return Err(ShapeError::GpuWithoutCount("nvidia.com/gpucores"));
        }
        return Ok(None);
    }
    if let Some(p) = a.mem_percent
        && p > 100
    {
        return Err(ShapeError::Percentage(p));
    }
    let memory = match (a.mem_mib, a.mem_percent) {
        (Some(m), _) if m > 0 => GpuMemory::Mib(m),
        (_, Some(p)) => GpuMemory::Percent(p),
        _ => GpuMemory::Percent(100),
    };
    Ok(Some(GpuRequest {
        count: a.count,
        memory,
        cores: a.cores.unwrap_or(0).min(100),
        use_types,
        nouse_types,
    }))
}
