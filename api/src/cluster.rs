//! `cluster.hami.io/v1alpha1` Cluster: one member cluster, how to reach it, and
//! what it holds (nodes, resources, GPUs per model).

use k8s_openapi::api::core::v1::Taint;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::common::ResourceList;

/// Annotation on a Cluster naming its estimator's gRPC address
/// (`host:port` or `http://host:port`). The scheduler asks it for accurate
/// max-replica estimates; without it, the Cluster's resource summary is used.
pub const ESTIMATOR_ENDPOINT_ANNOTATION: &str = "cluster.hami.io/estimator-endpoint";

/// Desired state of a member cluster.
// The derive's repeated printcolumn(...) keys trip this lint.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "cluster.hami.io",
    version = "v1alpha1",
    kind = "Cluster",
    status = "ClusterStatus",
    category = "hami",
    derive = "PartialEq",
    doc = "A member cluster of the federation.",
    printcolumn(
        name = "Version",
        type_ = "string",
        json_path = ".status.kubernetesVersion"
    ),
    printcolumn(name = "Mode", type_ = "string", json_path = ".spec.syncMode"),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "GPUs",
        type_ = "string",
        json_path = ".status.gpuSummary[*].count"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct ClusterSpec {
    /// How hami reaches the cluster: it pushes (Push) or an agent pulls (Pull).
    pub sync_mode: SyncMode,
    /// URL of the member cluster's kube-apiserver (Push mode).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_endpoint: Option<String>,
    /// Secret holding the credentials to reach the cluster (Push mode).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<LocalSecretReference>,
    /// Skip TLS verification of the apiEndpoint (testing only).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub insecure_skip_tls_verification: bool,
    /// Cloud provider name, matched by fieldSelector key `provider`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    /// Region, matched by fieldSelector key `region`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// Single zone (deprecated in Karmada in favour of `zones`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zone: Option<String>,
    /// Zones the cluster spans, matched by fieldSelector key `zone`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub zones: Vec<String>,
    /// Taints that keep workloads away unless they tolerate them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub taints: Vec<Taint>,
}

/// How the control plane and a member cluster exchange Works and status.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum SyncMode {
    /// The control plane applies Works to the cluster's apiserver itself.
    #[default]
    Push,
    /// An agent inside the cluster pulls Works and reports status.
    Pull,
}

/// Reference to a Secret by namespace and name.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LocalSecretReference {
    /// Namespace of the Secret.
    pub namespace: String,
    /// Name of the Secret.
    pub name: String,
}

/// Observed state of a member cluster.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClusterStatus {
    /// Conditions, `Ready` among them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// Kubernetes version of the member cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubernetes_version: Option<String>,
    /// API groups and resources the member cluster serves.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub api_enablements: Vec<ApiEnablement>,
    /// Node counts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_summary: Option<NodeSummary>,
    /// Resource totals over all nodes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_summary: Option<ResourceSummary>,
    /// GPU capacity per GPU model.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gpu_summary: Vec<GpuSummary>,
}

/// One group/version the member cluster serves and its resources.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApiEnablement {
    /// Group and version, e.g. `apps/v1`.
    pub group_version: String,
    /// Resources served in that group/version.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resources: Vec<ApiResourceRef>,
}

/// A resource name and its kind.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApiResourceRef {
    /// Plural resource name, e.g. `deployments`.
    pub name: String,
    /// Kind, e.g. `Deployment`.
    pub kind: String,
}

/// Node counts of a member cluster.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NodeSummary {
    /// All nodes.
    #[serde(default)]
    pub total_num: i32,
    /// Nodes whose Ready condition is True.
    #[serde(default)]
    pub ready_num: i32,
}

/// Resource totals of a member cluster.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ResourceSummary {
    /// Sum of node allocatable.
    #[serde(default, skip_serializing_if = "ResourceList::is_empty")]
    pub allocatable: ResourceList,
    /// Requests of pods not yet scheduled to a node.
    #[serde(default, skip_serializing_if = "ResourceList::is_empty")]
    pub allocating: ResourceList,
    /// Requests of pods bound to nodes.
    #[serde(default, skip_serializing_if = "ResourceList::is_empty")]
    pub allocated: ResourceList,
}

/// GPU capacity of one GPU model in a member cluster.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GpuSummary {
    /// GPU model, e.g. `NVIDIA-A100-SXM4-80GB`.
    pub model: String,
    /// Number of GPUs of this model.
    #[serde(default)]
    pub count: i64,
    /// GPUs of this model that report healthy.
    #[serde(default)]
    pub healthy: i64,
    /// Total device memory over these GPUs, in MiB.
    #[serde(default, rename = "memoryTotalMiB")]
    pub memory_total_mib: i64,
    /// Device memory not yet allocated, in MiB.
    #[serde(default, rename = "memoryFreeMiB")]
    pub memory_free_mib: i64,
    /// Total cores in percent units (100 per GPU).
    #[serde(default)]
    pub cores_total: i64,
    /// Cores not yet allocated, in percent units.
    #[serde(default)]
    pub cores_free: i64,
    /// Share slots still free (a GPU can be split into several slots).
    #[serde(default)]
    pub share_slots_free: i64,
}
