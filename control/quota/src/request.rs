//! What one replica asks for, in the terms quota counts: plain resources in
//! milli-units and the GPU demand summed over the replica's containers, kept
//! apart so that `nvidia.com/gpumem-percentage` can be converted per cluster.

use std::collections::BTreeMap;

use hami_api::binding::{GpuRequirement, GpuRequirementError, ReplicaRequirements};
use hami_api::common::{
    NOUSE_GPU_TYPE, RESOURCE_GPU, RESOURCE_GPU_CORES, RESOURCE_GPU_MEM,
    RESOURCE_GPU_MEM_PERCENTAGE, ResourceList, USE_GPU_TYPE,
};
use hami_api::gpu::{GPU_RESOURCE_NAMES, split_type_list};
use k8s_openapi::api::core::v1::{Container, PodSpec};

use crate::amounts::{AmountError, Amounts, overflow};

/// Why a replica's request cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// A resource quantity is malformed, negative or out of range.
    #[error("{0}")]
    Amount(#[from] AmountError),
    /// A GPU line is not a whole non-negative number.
    #[error("GPU resources: {0}")]
    Gpu(#[from] GpuRequirementError),
    /// A GPU shape holds a negative value.
    #[error("GPU shape: {field} is negative")]
    NegativeGpu {
        /// The field of the shape.
        field: &'static str,
    },
}

/// The GPU demand of one replica, summed over its containers (HAMi meaning:
/// memory and cores are per GPU, so each container adds `count × value`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GpuDemand {
    /// GPUs (`nvidia.com/gpu`).
    pub count: i128,
    /// MiB of device memory asked as a fixed amount (`nvidia.com/gpumem`),
    /// summed over GPUs.
    pub memory_mib: i128,
    /// Percent of one device's memory (`nvidia.com/gpumem-percentage`),
    /// summed over GPUs. A GPU without either memory line counts 100 here:
    /// HAMi gives such a GPU the whole device memory.
    pub memory_percent: i128,
    /// Percent of one GPU's cores (`nvidia.com/gpucores`), summed over GPUs;
    /// absent means 0, HAMi's default.
    pub cores: i128,
    /// GPU models the replica may use (empty: any).
    pub use_types: Vec<String>,
    /// GPU models the replica must not use.
    pub no_use_types: Vec<String>,
}

impl GpuDemand {
    /// Adds one container's GPU shape (its `count` GPUs, each with the
    /// shape's memory and cores).
    pub fn add(&mut self, g: &GpuRequirement) -> Result<(), RequestError> {
        let neg = |field| RequestError::NegativeGpu { field };
        if g.count < 0 {
            return Err(neg("count"));
        }
        let n = i128::from(g.count);
        let per = |v: i128, name: &str| n.checked_mul(v).ok_or_else(|| overflow(name));
        let add = |acc: &mut i128, v: i128, name: &str| -> Result<(), AmountError> {
            *acc = acc.checked_add(v).ok_or_else(|| overflow(name))?;
            Ok(())
        };
        add(&mut self.count, n, RESOURCE_GPU)?;
        match (g.memory_mib, g.memory_percentage) {
            (Some(m), _) if m < 0 => return Err(neg("memoryMiB")),
            (_, Some(p)) if p < 0 => return Err(neg("memoryPercentage")),
            // HAMi reads the fixed amount first and the percentage only without it.
            (Some(m), _) => add(
                &mut self.memory_mib,
                per(i128::from(m), RESOURCE_GPU_MEM)?,
                RESOURCE_GPU_MEM,
            )?,
            (None, Some(p)) => add(
                &mut self.memory_percent,
                per(i128::from(p), RESOURCE_GPU_MEM_PERCENTAGE)?,
                RESOURCE_GPU_MEM_PERCENTAGE,
            )?,
            (None, None) => add(
                &mut self.memory_percent,
                per(100, RESOURCE_GPU_MEM_PERCENTAGE)?,
                RESOURCE_GPU_MEM_PERCENTAGE,
            )?,
        }
        match g.cores {
            Some(c) if c < 0 => return Err(neg("cores")),
            Some(c) => add(
                &mut self.cores,
                per(i128::from(c), RESOURCE_GPU_CORES)?,
                RESOURCE_GPU_CORES,
            )?,
            None => {}
        }
        if self.use_types.is_empty() {
            self.use_types = g.use_types.clone();
        }
        if self.no_use_types.is_empty() {
            self.no_use_types = g.no_use_types.clone();
        }
        Ok(())
    }
}

/// What one replica asks for.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReplicaRequest {
    /// Requests of every non-GPU resource, milli-units.
    pub resources: Amounts,
    /// GPU demand.
    pub gpu: GpuDemand,
}

impl ReplicaRequest {
    /// From a binding's `replicaRequirements`: `resourceRequest` for every
    /// non-GPU line (the detector already defaulted requests from limits), and
    /// the GPU shape `gpu` for the GPU lines (read from `resourceRequest`'s GPU
    /// lines when the shape is absent). `None` requirements ask for nothing.
    pub fn from_requirements(req: Option<&ReplicaRequirements>) -> Result<Self, RequestError> {
        let Some(req) = req else {
            return Ok(Self::default());
        };
        let mut resources = Amounts::new();
        for (name, v) in Amounts::from_resource_list(&req.resource_request)?.iter() {
            if !GPU_RESOURCE_NAMES.contains(&name) {
                resources.set(name, v);
            }
        }
        let shape = match &req.gpu {
            Some(g) => Some(g.clone()),
            None => GpuRequirement::from_resources(&req.resource_request, None, None)?,
        };
        let mut gpu = GpuDemand::default();
        if let Some(g) = shape {
            gpu.add(&g)?;
        }
        Ok(Self { resources, gpu })
    }

    /// From a pod template's spec and annotations, as Kubernetes and HAMi
    /// read it: each container's request, or its limit where the request is
    /// absent; the sum over containers, at least the largest init container's
    /// (they run one at a time), plus the pod overhead. GPU lines are taken
    /// per container, init containers included (HAMi gives them devices too),
    /// so two containers with 1 × 8000 MiB and 2 × 4000 MiB ask 16000 MiB.
    pub fn from_pod_spec(
        spec: &PodSpec,
        annotations: Option<&BTreeMap<String, String>>,
    ) -> Result<Self, RequestError> {
        let annotation = |k: &str| annotations.and_then(|a| a.get(k)).map(String::as_str);
        let use_types = annotation(USE_GPU_TYPE).map(split_type_list);
        let no_use_types = annotation(NOUSE_GPU_TYPE).map(split_type_list);
        let mut resources = Amounts::new();
        let mut gpu = GpuDemand::default();
        for c in &spec.containers {
            let (plain, lines) = effective(c)?;
            resources.add_all(&plain)?;
            add_gpu(&mut gpu, &lines, &use_types, &no_use_types)?;
        }
        for c in spec.init_containers.iter().flatten() {
            let (plain, lines) = effective(c)?;
            for (name, v) in plain.iter() {
                if v > resources.get(name) {
                    resources.set(name, v);
                }
            }
            add_gpu(&mut gpu, &lines, &use_types, &no_use_types)?;
        }
        if let Some(overhead) = &spec.overhead {
            resources.add_all(&Amounts::from_resource_list(overhead)?)?;
        }
        Ok(Self {
            resources: resources.without_zeros(),
            gpu,
        })
    }
}

fn add_gpu(
    gpu: &mut GpuDemand,
    lines: &ResourceList,
    use_types: &Option<Vec<String>>,
    no_use_types: &Option<Vec<String>>,
) -> Result<(), RequestError> {
    if let Some(mut g) = GpuRequirement::from_resources(lines, None, None)? {
        g.use_types = use_types.clone().unwrap_or_default();
        g.no_use_types = no_use_types.clone().unwrap_or_default();
        gpu.add(&g)?;
    }
    Ok(())
}

/// A container's effective requests (request, else limit): the non-GPU
/// amounts, and the GPU lines as a ResourceList for the GPU shape parser.
fn effective(c: &Container) -> Result<(Amounts, ResourceList), RequestError> {
    let mut merged = ResourceList::new();
    if let Some(r) = &c.resources {
        for (k, q) in r.limits.iter().flatten() {
            merged.insert(k.clone(), q.clone());
        }
        for (k, q) in r.requests.iter().flatten() {
            merged.insert(k.clone(), q.clone());
        }
    }
    let (gpu, plain): (ResourceList, ResourceList) = merged
        .into_iter()
        .partition(|(k, _)| GPU_RESOURCE_NAMES.contains(&k.as_str()));
    Ok((Amounts::from_resource_list(&plain)?, gpu))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use serde_json::json;

    fn pod(v: serde_json::Value) -> PodSpec {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn requests_default_from_limits_and_init_containers_take_the_max() {
        let spec = pod(json!({
            "initContainers": [{"name": "i", "resources": {"limits": {"cpu": "4", "memory": "1Gi"}}}],
            "containers": [
                {"name": "a", "resources": {"limits": {"cpu": "2", "memory": "2Gi"}, "requests": {"cpu": "1"}}},
                {"name": "b", "resources": {"requests": {"cpu": "500m"}}},
                {"name": "c"}
            ],
            "overhead": {"cpu": "100m"}
        }));
        let r = ReplicaRequest::from_pod_spec(&spec, None).unwrap();
        // cpu: max(1 + 0.5, 4) + 0.1; memory: the limit of a (no request), above init's.
        assert_eq!(r.resources.get("cpu"), 4100);
        assert_eq!(r.resources.get("memory"), 2 * 1024 * 1024 * 1024 * 1000);
        assert_eq!(r.gpu, GpuDemand::default());
    }

    #[test]
    fn gpu_lines_per_container() {
        let spec = pod(json!({"containers": [
            {"name": "a", "resources": {"limits": {"nvidia.com/gpu": "1", "nvidia.com/gpumem": "8000", "nvidia.com/gpucores": "30"}}},
            {"name": "b", "resources": {"limits": {"nvidia.com/gpu": "2", "nvidia.com/gpumem": "4000"}}},
            {"name": "c", "resources": {"limits": {"nvidia.com/gpu": "1", "nvidia.com/gpumem-percentage": "25"}}},
            {"name": "d", "resources": {"limits": {"nvidia.com/gpu": "1"}}}
        ]}));
        let ann = BTreeMap::from([(USE_GPU_TYPE.to_string(), "A100".to_string())]);
        let r = ReplicaRequest::from_pod_spec(&spec, Some(&ann)).unwrap();
        assert_eq!(r.gpu.count, 5);
        assert_eq!(r.gpu.memory_mib, 8000 + 2 * 4000);
        assert_eq!(r.gpu.memory_percent, 25 + 100);
        assert_eq!(r.gpu.cores, 30);
        assert_eq!(r.gpu.use_types, ["A100"]);
        assert!(r.resources.is_zero(), "GPU lines are not plain resources");
    }

    #[test]
    fn from_requirements_uses_the_shape_or_the_gpu_lines() {
        let rl = |items: &[(&str, &str)]| -> ResourceList {
            items
                .iter()
                .map(|(k, v)| {
                    (
                        k.to_string(),
                        k8s_openapi::apimachinery::pkg::api::resource::Quantity(v.to_string()),
                    )
                })
                .collect()
        };
        let with_shape = ReplicaRequirements {
            resource_request: rl(&[("cpu", "2"), ("nvidia.com/gpu", "2")]),
            gpu: Some(GpuRequirement {
                count: 2,
                memory_mib: Some(8000),
                ..Default::default()
            }),
            ..Default::default()
        };
        let r = ReplicaRequest::from_requirements(Some(&with_shape)).unwrap();
        assert_eq!(r.resources.get("cpu"), 2000);
        assert_eq!(r.resources.get("nvidia.com/gpu"), 0);
        assert_eq!((r.gpu.count, r.gpu.memory_mib), (2, 16000));

        let lines_only = ReplicaRequirements {
            resource_request: rl(&[("nvidia.com/gpu", "1"), ("nvidia.com/gpucores", "50")]),
            ..Default::default()
        };
        let r = ReplicaRequest::from_requirements(Some(&lines_only)).unwrap();
        assert_eq!(
            (r.gpu.count, r.gpu.cores, r.gpu.memory_percent),
            (1, 50, 100)
        );

        assert_eq!(
            ReplicaRequest::from_requirements(None).unwrap(),
            ReplicaRequest::default()
        );
        let bad = ReplicaRequirements {
            resource_request: rl(&[("cpu", "-1")]),
            ..Default::default()
        };
        assert!(ReplicaRequest::from_requirements(Some(&bad)).is_err());
    }
}
