//! `work.hami.io/v1alpha2` ResourceBinding and ClusterResourceBinding: one
//! resource template, what one replica needs, and the clusters it was given.

use std::collections::BTreeMap;
use std::ops::{Deref, DerefMut};

use k8s_openapi::api::core::v1::{NodeSelector, Toleration};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::common::{
    RESOURCE_GPU, RESOURCE_GPU_CORES, RESOURCE_GPU_MEM, RESOURCE_GPU_MEM_PERCENTAGE,
    ResourceHealth, ResourceList,
};
use crate::gpu::split_type_list;
use crate::propagation::{Placement, PurgeMode};
use crate::quantity::{QuantityError, parse_quantity};

/// Desired scheduling of one resource template (shared by both binding kinds).
// The derive's repeated printcolumn(...) keys trip this lint.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "work.hami.io",
    version = "v1alpha2",
    kind = "ResourceBinding",
    namespaced,
    shortname = "rb",
    category = "hami",
    status = "ResourceBindingStatus",
    derive = "PartialEq",
    doc = "Binds a namespaced resource template to target clusters.",
    printcolumn(
        name = "Scheduled",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Scheduled\")].status"
    ),
    printcolumn(
        name = "FullyApplied",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"FullyApplied\")].status"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct ResourceBindingSpec {
    /// The resource template.
    pub resource: ObjectReference,
    /// Replica count of the template (0 for kinds without replicas).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub replicas: i32,
    /// What one replica needs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replica_requirements: Option<ReplicaRequirements>,
    /// The placement of the policy that claimed the template.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub placement: Option<Placement>,
    /// Clusters chosen by the scheduler and their replica counts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub clusters: Vec<TargetCluster>,
    /// Clusters being left; their copies stay until the new ones are up.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub graceful_eviction_tasks: Vec<GracefulEvictionTask>,
    /// A reschedule is due when this is later than the last scheduling.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reschedule_triggered_at: Option<Time>,
}

fn is_zero(v: &i32) -> bool {
    *v == 0
}

/// Spec of a ClusterResourceBinding: the same as a ResourceBinding's
/// (reach the fields through `Deref`).
// The derive's repeated printcolumn(...) keys trip this lint.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "work.hami.io",
    version = "v1alpha2",
    kind = "ClusterResourceBinding",
    shortname = "crb",
    category = "hami",
    status = "ResourceBindingStatus",
    derive = "PartialEq",
    doc = "Binds a cluster-scoped resource template to target clusters.",
    printcolumn(
        name = "Scheduled",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Scheduled\")].status"
    ),
    printcolumn(
        name = "FullyApplied",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"FullyApplied\")].status"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(transparent)]
pub struct ClusterResourceBindingSpec(pub ResourceBindingSpec);

impl Deref for ClusterResourceBindingSpec {
    type Target = ResourceBindingSpec;
    fn deref(&self) -> &ResourceBindingSpec {
        &self.0
    }
}

impl DerefMut for ClusterResourceBindingSpec {
    fn deref_mut(&mut self) -> &mut ResourceBindingSpec {
        &mut self.0
    }
}

impl From<ResourceBindingSpec> for ClusterResourceBindingSpec {
    fn from(spec: ResourceBindingSpec) -> Self {
        Self(spec)
    }
}

/// Reference to a resource template.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ObjectReference {
    /// apiVersion of the template.
    pub api_version: String,
    /// Kind of the template.
    pub kind: String,
    /// Namespace (empty for cluster-scoped templates).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Name of the template.
    pub name: String,
    /// UID of the template.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
    /// resourceVersion of the template the binding was made from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_version: Option<String>,
}

/// What one replica needs.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReplicaRequirements {
    /// Node constraints of the pod template.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_claim: Option<NodeClaim>,
    /// Resource requests of one replica (GPU lines included, as HAMi names them).
    #[serde(default, skip_serializing_if = "ResourceList::is_empty")]
    pub resource_request: ResourceList,
    /// Namespace of the template (for per-namespace quota in members).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// priorityClassName of the pod template.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority_class_name: Option<String>,
    /// The GPU shape of one replica, parsed from HAMi's resource names.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu: Option<GpuRequirement>,
}

/// Node constraints of a pod template.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NodeClaim {
    /// requiredDuringSchedulingIgnoredDuringExecution node affinity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hard_node_affinity: Option<NodeSelector>,
    /// nodeSelector labels.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,
    /// Tolerations of the pod template.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tolerations: Vec<Toleration>,
}

/// The GPU shape of one replica, in HAMi's terms.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GpuRequirement {
    /// GPUs per replica (`nvidia.com/gpu`).
    #[serde(default)]
    pub count: i64,
    /// MiB of device memory per GPU (`nvidia.com/gpumem`).
    #[serde(default, rename = "memoryMiB", skip_serializing_if = "Option::is_none")]
    pub memory_mib: Option<i64>,
    /// Percent of a device's memory per GPU (`nvidia.com/gpumem-percentage`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_percentage: Option<i32>,
    /// Percent of one GPU's cores per GPU (`nvidia.com/gpucores`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cores: Option<i32>,
    /// GPU models the replica may use (`nvidia.com/use-gputype`); empty means any.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub use_types: Vec<String>,
    /// GPU models the replica must not use (`nvidia.com/nouse-gputype`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub no_use_types: Vec<String>,
}

impl GpuRequirement {
    /// The GPU shape of one replica from its resource list (limits, or requests
    /// where limits lack the GPU lines) and HAMi's use/nouse type annotations;
    /// `None` when it asks for no `nvidia.com/gpu`.
    pub fn from_resources(
        resources: &ResourceList,
        use_types: Option<&str>,
        no_use_types: Option<&str>,
    ) -> Result<Option<Self>, GpuRequirementError> {
        let value = |name: &str| -> Result<Option<i64>, GpuRequirementError> {
            let Some(q) = resources.get(name) else {
                return Ok(None);
            };
            let milli = parse_quantity(&q.0).map_err(|source| GpuRequirementError::Quantity {
                resource: name.to_string(),
                source,
            })?;
            if milli < 0 || milli % 1000 != 0 {
                return Err(GpuRequirementError::NotWhole {
                    resource: name.to_string(),
                    value: q.0.clone(),
                });
            }
            i64::try_from(milli / 1000)
                .map(Some)
                .map_err(|_| GpuRequirementError::NotWhole {
                    resource: name.to_string(),
                    value: q.0.clone(),
                })
        };
        let Some(count) = value(RESOURCE_GPU)?.filter(|c| *c > 0) else {
            return Ok(None);
        };
        let percent = |name: &str| -> Result<Option<i32>, GpuRequirementError> {
            value(name)?
                .map(|v| {
                    i32::try_from(v).map_err(|_| GpuRequirementError::NotWhole {
                        resource: name.to_string(),
                        value: v.to_string(),
                    })
                })
                .transpose()
        };
        Ok(Some(Self {
            count,
            memory_mib: value(RESOURCE_GPU_MEM)?,
            memory_percentage: percent(RESOURCE_GPU_MEM_PERCENTAGE)?,
            cores: percent(RESOURCE_GPU_CORES)?,
            use_types: use_types.map(split_type_list).unwrap_or_default(),
            no_use_types: no_use_types.map(split_type_list).unwrap_or_default(),
        }))
    }
}

/// Why a resource list does not give a GPU shape.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GpuRequirementError {
    /// A GPU line is not a quantity.
    #[error("{resource}: {source}")]
    Quantity {
        /// The resource name.
        resource: String,
        /// The parse error.
        source: QuantityError,
    },
    /// A GPU line is negative, fractional or too large.
    #[error("{resource}: {value:?} must be a non-negative whole number")]
    NotWhole {
        /// The resource name.
        resource: String,
        /// The value given.
        value: String,
    },
}

/// A cluster chosen by the scheduler and its replica count.
#[derive(
    Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, JsonSchema,
)]
#[serde(rename_all = "camelCase")]
pub struct TargetCluster {
    /// Name of the member cluster.
    pub name: String,
    /// Replicas assigned to it.
    #[serde(default)]
    pub replicas: i32,
}

/// A cluster being left: its copy stays until the replacement is up.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GracefulEvictionTask {
    /// The cluster being left.
    pub from_cluster: String,
    /// Replicas it held.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<i32>,
    /// Machine-readable reason, e.g. `TaintUntolerated`.
    pub reason: String,
    /// Human-readable message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Controller that created the task.
    pub producer: String,
    /// How the old copy is removed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub purge_mode: Option<PurgeMode>,
    /// Longest wait before the old copy goes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grace_period_seconds: Option<i32>,
    /// Keep the old copy until this is cleared.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suppress_deletion: Option<bool>,
    /// When the task was created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub creation_timestamp: Option<Time>,
}

/// Observed scheduling and per-cluster status of a binding.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ResourceBindingStatus {
    /// metadata.generation the scheduler last acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheduler_observed_generation: Option<i64>,
    /// When the scheduler last wrote a placement (a fresh reschedule is due
    /// when `spec.rescheduleTriggeredAt` is later).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_scheduled_time: Option<Time>,
    /// Conditions: Scheduled, FullyApplied.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// Status of the resource in each target cluster.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub aggregated_status: Vec<AggregatedStatusItem>,
}

/// Status of the resource in one member cluster.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AggregatedStatusItem {
    /// Name of the member cluster.
    pub cluster_name: String,
    /// The resource's status there, as reported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::common::free_object_schema")]
    pub status: Option<serde_json::Value>,
    /// Whether the manifest was applied.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub applied: bool,
    /// Why applying failed, if it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub applied_message: Option<String>,
    /// Health of the resource there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<ResourceHealth>,
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

    use super::*;

    fn list(items: &[(&str, &str)]) -> ResourceList {
        items
            .iter()
            .map(|(k, v)| (k.to_string(), Quantity(v.to_string())))
            .collect()
    }

    #[test]
    fn gpu_shape_from_resources() {
        let r = list(&[
            ("cpu", "2"),
            (RESOURCE_GPU, "2"),
            (RESOURCE_GPU_MEM, "8000"),
            (RESOURCE_GPU_CORES, "50"),
        ]);
        let g = GpuRequirement::from_resources(&r, Some("A100, H100"), Some("T4"))
            .unwrap()
            .unwrap();
        assert_eq!(g.count, 2);
        assert_eq!(g.memory_mib, Some(8000));
        assert_eq!(g.memory_percentage, None);
        assert_eq!(g.cores, Some(50));
        assert_eq!(g.use_types, ["A100", "H100"]);
        assert_eq!(g.no_use_types, ["T4"]);

        assert_eq!(
            GpuRequirement::from_resources(&list(&[("cpu", "1")]), None, None),
            Ok(None)
        );
        assert_eq!(
            GpuRequirement::from_resources(&list(&[(RESOURCE_GPU, "0")]), None, None),
            Ok(None)
        );
        assert!(matches!(
            GpuRequirement::from_resources(&list(&[(RESOURCE_GPU, "1"), (RESOURCE_GPU_MEM, "1.5")]), None, None),
            Err(GpuRequirementError::NotWhole { resource, .. }) if resource == RESOURCE_GPU_MEM
        ));
        assert!(matches!(
            GpuRequirement::from_resources(&list(&[(RESOURCE_GPU, "x")]), None, None),
            Err(GpuRequirementError::Quantity { resource, .. }) if resource == RESOURCE_GPU
        ));
    }
}
