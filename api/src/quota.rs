//! `policy.hami.io/v1alpha1` FederatedResourceQuota: a namespace's budget over
//! all member clusters, GPUs included, with optional per-cluster assignments.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::common::ResourceList;

/// Desired quota of a namespace across all clusters.
// The derive's repeated printcolumn(...) keys trip this lint.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "policy.hami.io",
    version = "v1alpha1",
    kind = "FederatedResourceQuota",
    namespaced,
    shortname = "frq",
    category = "hami",
    status = "FederatedResourceQuotaStatus",
    derive = "PartialEq",
    doc = "A namespace's resource budget across all member clusters.",
    printcolumn(
        name = "GPU-Used",
        type_ = "string",
        json_path = ".status.overallUsed.nvidia\\.com/gpu"
    ),
    printcolumn(
        name = "GPU-Hard",
        type_ = "string",
        json_path = ".status.overall.nvidia\\.com/gpu"
    ),
    printcolumn(
        name = "GPUMem-Used",
        type_ = "string",
        json_path = ".status.overallUsed.nvidia\\.com/gpumem"
    ),
    printcolumn(
        name = "GPUMem-Hard",
        type_ = "string",
        json_path = ".status.overall.nvidia\\.com/gpumem"
    ),
    printcolumn(
        name = "CPU-Used",
        type_ = "string",
        json_path = ".status.overallUsed.cpu"
    ),
    printcolumn(name = "CPU-Hard", type_ = "string", json_path = ".status.overall.cpu"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct FederatedResourceQuotaSpec {
    /// Hard limits over all clusters together.
    #[serde(default)]
    pub overall: ResourceList,
    /// Hard limits for single clusters; their sum per resource stays within `overall`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub static_assignments: Vec<StaticClusterAssignment>,
}

/// A hard limit for one member cluster.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StaticClusterAssignment {
    /// Name of the member cluster.
    pub cluster_name: String,
    /// Hard limits in that cluster.
    #[serde(default)]
    pub hard: ResourceList,
}

/// Observed quota and usage.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FederatedResourceQuotaStatus {
    /// The enforced overall limits.
    #[serde(default, skip_serializing_if = "ResourceList::is_empty")]
    pub overall: ResourceList,
    /// Usage over all clusters.
    #[serde(default, skip_serializing_if = "ResourceList::is_empty")]
    pub overall_used: ResourceList,
    /// Limits and usage per cluster.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub aggregated_status: Vec<ClusterQuotaStatus>,
    /// Conditions, e.g. unknown cluster names in static assignments.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

/// Limits and usage in one member cluster.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClusterQuotaStatus {
    /// Name of the member cluster.
    pub cluster_name: String,
    /// Hard limits in that cluster.
    #[serde(default, skip_serializing_if = "ResourceList::is_empty")]
    pub hard: ResourceList,
    /// Usage in that cluster as hami accounts it (what admission counts).
    #[serde(default, skip_serializing_if = "ResourceList::is_empty")]
    pub used: ResourceList,
    /// Usage the member cluster's own ResourceQuota reports (clusters with a
    /// static assignment; the member counts the pods it runs, so this lags
    /// `used` while replicas start or stop).
    #[serde(default, skip_serializing_if = "ResourceList::is_empty")]
    pub member_used: ResourceList,
}
