//! Names shared by every hami kind: API groups, the execution-namespace rule,
//! HAMi's GPU resource names, condition types, and schema helpers for free JSON.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Serialize};

/// API group of Cluster.
pub const CLUSTER_GROUP: &str = "cluster.hami.io";
/// Version of the cluster group.
pub const CLUSTER_VERSION: &str = "v1alpha1";
/// API group of the policies and FederatedResourceQuota.
pub const POLICY_GROUP: &str = "policy.hami.io";
/// Version of the policy group.
pub const POLICY_VERSION: &str = "v1alpha1";
/// API group of ResourceBinding, ClusterResourceBinding and Work.
pub const WORK_GROUP: &str = "work.hami.io";
/// Version of the work group.
pub const WORK_VERSION: &str = "v1alpha2";
/// Category every hami CRD carries, so `kubectl get hami` lists them all.
pub const CATEGORY: &str = "hami";

/// Prefix of the namespace that holds a member cluster's Works.
pub const EXECUTION_NAMESPACE_PREFIX: &str = "hami-es-";

/// The namespace that holds the Works for `cluster`: `hami-es-<cluster>`.
pub fn execution_namespace(cluster: &str) -> String {
    format!("{EXECUTION_NAMESPACE_PREFIX}{cluster}")
}

/// The cluster a execution namespace belongs to, if `namespace` is one.
pub fn cluster_of_execution_namespace(namespace: &str) -> Option<&str> {
    namespace
        .strip_prefix(EXECUTION_NAMESPACE_PREFIX)
        .filter(|c| !c.is_empty())
}

// HAMi's GPU resource and annotation names, defined once in `gpu`.
pub use crate::gpu::{
    NOUSE_GPU_TYPE, RESOURCE_GPU, RESOURCE_GPU_CORES, RESOURCE_GPU_MEM,
    RESOURCE_GPU_MEM_PERCENTAGE, USE_GPU_TYPE,
};

/// Condition type: a Cluster is reachable and healthy.
pub const CONDITION_READY: &str = "Ready";
/// Condition type: a binding has been given target clusters.
pub const CONDITION_SCHEDULED: &str = "Scheduled";
/// Condition type: every Work of a binding has been applied.
pub const CONDITION_FULLY_APPLIED: &str = "FullyApplied";
/// Condition type: a Work's manifests have been applied in its cluster.
pub const CONDITION_APPLIED: &str = "Applied";
/// Condition type: a Work's resources are available in its cluster.
pub const CONDITION_AVAILABLE: &str = "Available";

/// Resource name to quantity, as Kubernetes' `ResourceList`.
pub type ResourceList = BTreeMap<String, Quantity>;

/// Health of a resource in a member cluster, as Karmada reports it.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
pub enum ResourceHealth {
    /// The resource works as intended.
    Healthy,
    /// The resource does not work as intended.
    Unhealthy,
    /// No health interpreter knows this resource, or it was not reported yet.
    #[default]
    Unknown,
}

/// Schema for a free JSON object kept as-is (`type: object` with
/// `x-kubernetes-preserve-unknown-fields`), e.g. a manifest or a status.
pub fn free_object_schema(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": true,
    })
}

/// Schema for a list of free JSON objects kept as-is.
pub fn free_object_list_schema(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "array",
        "items": {
            "type": "object",
            "x-kubernetes-preserve-unknown-fields": true,
        },
    })
}

/// Schema for any JSON value kept as-is (no type, preserve unknown fields).
pub fn any_json_schema(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "x-kubernetes-preserve-unknown-fields": true,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn execution_namespace_round_trips() {
        assert_eq!(execution_namespace("east"), "hami-es-east");
        assert_eq!(cluster_of_execution_namespace("hami-es-east"), Some("east"));
        assert_eq!(cluster_of_execution_namespace("hami-es-"), None);
        assert_eq!(cluster_of_execution_namespace("default"), None);
    }
}
