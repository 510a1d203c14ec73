//! `policy.hami.io/v1alpha1` PropagationPolicy and ClusterPropagationPolicy:
//! which resources go where, and how replicas are divided.

use std::ops::{Deref, DerefMut};

use k8s_openapi::api::core::v1::{NodeSelectorRequirement, Toleration};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, Time};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Desired propagation of the selected resources (shared by both policy kinds).
// The derive's repeated printcolumn(...) keys trip this lint.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "policy.hami.io",
    version = "v1alpha1",
    kind = "PropagationPolicy",
    namespaced,
    shortname = "pp",
    category = "hami",
    derive = "PartialEq",
    doc = "Selects resources in its namespace and says to which clusters they propagate.",
    printcolumn(
        name = "Conflict-Resolution",
        type_ = "string",
        json_path = ".spec.conflictResolution"
    ),
    printcolumn(name = "Priority", type_ = "integer", json_path = ".spec.priority"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct PropagationSpec {
    /// Resources this policy applies to (at least one).
    pub resource_selectors: Vec<ResourceSelector>,
    /// Higher priority wins when several policies match one resource.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<i32>,
    /// Whether this policy may take resources from a lower-priority policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preemption: Option<PreemptionPolicy>,
    /// What to do when the resource already exists in a member cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conflict_resolution: Option<ConflictResolution>,
    /// Where the resources may run and how replicas are divided.
    #[serde(default)]
    pub placement: Placement,
    /// How to move the application away from a failed cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failover: Option<FailoverBehavior>,
    /// Setting or raising this time asks for a fresh scheduling of bound resources.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reschedule_triggered_at: Option<Time>,
}

/// Spec of a ClusterPropagationPolicy: the same as a PropagationPolicy's
/// (reach the fields through `Deref`, e.g. `cpp.spec.placement`).
// The derive's repeated printcolumn(...) keys trip this lint.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "policy.hami.io",
    version = "v1alpha1",
    kind = "ClusterPropagationPolicy",
    shortname = "cpp",
    category = "hami",
    derive = "PartialEq",
    doc = "Selects resources in any namespace, or cluster-scoped ones, and says to which clusters they propagate.",
    printcolumn(
        name = "Conflict-Resolution",
        type_ = "string",
        json_path = ".spec.conflictResolution"
    ),
    printcolumn(name = "Priority", type_ = "integer", json_path = ".spec.priority"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(transparent)]
pub struct ClusterPropagationSpec(pub PropagationSpec);

impl Deref for ClusterPropagationSpec {
    type Target = PropagationSpec;
    fn deref(&self) -> &PropagationSpec {
        &self.0
    }
}

impl DerefMut for ClusterPropagationSpec {
    fn deref_mut(&mut self) -> &mut PropagationSpec {
        &mut self.0
    }
}

impl From<PropagationSpec> for ClusterPropagationSpec {
    fn from(spec: PropagationSpec) -> Self {
        Self(spec)
    }
}

/// Selects resource templates by apiVersion and kind, then namespace, name or labels.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ResourceSelector {
    /// apiVersion of the target resources, e.g. `apps/v1`.
    pub api_version: String,
    /// Kind of the target resources, e.g. `Deployment`.
    pub kind: String,
    /// Namespace of the target resources; empty means the policy's own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Name of the target resource; when set, labelSelector is ignored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Label query over the target resources.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label_selector: Option<LabelSelector>,
}

/// Whether a policy may preempt resources claimed by a lower-priority one.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum PreemptionPolicy {
    /// Take resources from lower-priority policies.
    Always,
    /// Never take resources already claimed.
    #[default]
    Never,
}

/// What to do when a propagated resource already exists in the member cluster.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum ConflictResolution {
    /// Take the existing resource over.
    Overwrite,
    /// Refuse and report the conflict.
    #[default]
    Abort,
}

/// Where resources may run and how their replicas are divided.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Placement {
    /// Clusters that may be chosen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_affinity: Option<ClusterAffinity>,
    /// Ordered alternatives: the first term with a feasible placement wins.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cluster_affinities: Vec<ClusterAffinityTerm>,
    /// Cluster taints these resources tolerate.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cluster_tolerations: Vec<Toleration>,
    /// How to spread over clusters, regions, zones or providers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub spread_constraints: Vec<SpreadConstraint>,
    /// How replicas are assigned to the chosen clusters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replica_scheduling: Option<ReplicaSchedulingStrategy>,
}

/// A set of clusters, by labels, fields, names and exclusions (all must match).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClusterAffinity {
    /// Label query over clusters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label_selector: Option<LabelSelector>,
    /// Query over cluster fields (provider, region, zone).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field_selector: Option<FieldSelector>,
    /// Clusters named explicitly.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cluster_names: Vec<String>,
    /// Clusters never chosen.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exclude: Vec<String>,
}

/// A named ClusterAffinity, one alternative of `clusterAffinities`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClusterAffinityTerm {
    /// Name of this alternative, unique within the list.
    pub affinity_name: String,
    /// The clusters of this alternative.
    #[serde(flatten)]
    pub affinity: ClusterAffinity,
}

/// Requirements over cluster fields; keys are `provider`, `region` or `zone`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FieldSelector {
    /// Requirements, all of which must hold (operators In and NotIn).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub match_expressions: Vec<NodeSelectorRequirement>,
}

/// Field selector key: the cluster's provider.
pub const FIELD_PROVIDER: &str = "provider";
/// Field selector key: the cluster's region.
pub const FIELD_REGION: &str = "region";
/// Field selector key: the cluster's zone(s).
pub const FIELD_ZONE: &str = "zone";

/// Spread over groups of clusters.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SpreadConstraint {
    /// Group clusters by this field (exclusive with spreadByLabel).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spread_by_field: Option<SpreadByField>,
    /// Group clusters by the value of this label (exclusive with spreadByField).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spread_by_label: Option<String>,
    /// At most this many groups.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_groups: Option<i32>,
    /// At least this many groups.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_groups: Option<i32>,
}

/// Cluster field used to group clusters for spreading.
#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum SpreadByField {
    /// Each cluster is its own group.
    #[default]
    Cluster,
    /// Group by region.
    Region,
    /// Group by zone.
    Zone,
    /// Group by provider.
    Provider,
}

/// How replicas are assigned to the chosen clusters.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReplicaSchedulingStrategy {
    /// Every cluster gets all replicas (Duplicated) or they are split (Divided).
    #[serde(default)]
    pub replica_scheduling_type: ReplicaSchedulingType,
    /// With Divided: pack into few clusters (Aggregated) or split by weight (Weighted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replica_division_preference: Option<ReplicaDivisionPreference>,
    /// With Weighted: static weights or a dynamic weight.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight_preference: Option<ClusterPreferences>,
}

/// Whether replicas are duplicated to or divided among clusters.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum ReplicaSchedulingType {
    /// Each chosen cluster runs the full replica count.
    Duplicated,
    /// The replica count is split among the chosen clusters (Karmada's default).
    #[default]
    Divided,
}

/// How divided replicas are split.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum ReplicaDivisionPreference {
    /// Use as few clusters as capacity allows.
    Aggregated,
    /// Split by static or dynamic weights.
    #[default]
    Weighted,
}

/// Weights for Weighted division.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClusterPreferences {
    /// Fixed weights per cluster set.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub static_weight_list: Vec<StaticClusterWeight>,
    /// Weights computed at scheduling time (takes precedence over static weights).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dynamic_weight: Option<DynamicWeightFactor>,
}

/// A weight for the clusters matched by `targetCluster`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StaticClusterWeight {
    /// Clusters that get this weight.
    pub target_cluster: ClusterAffinity,
    /// Weight, at least 1.
    pub weight: i64,
}

/// Source of dynamic weights.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum DynamicWeightFactor {
    /// Weight each cluster by how many replicas it can still hold.
    #[default]
    AvailableReplicas,
}

/// Failover behaviour of a propagated application.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FailoverBehavior {
    /// Application-level failover.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub application: Option<ApplicationFailoverBehavior>,
}

/// When and how an application is moved away from an unhealthy cluster.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApplicationFailoverBehavior {
    /// Conditions that trigger failover.
    #[serde(default)]
    pub decision_conditions: DecisionConditions,
    /// How the old copy is removed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub purge_mode: Option<PurgeMode>,
    /// With Gracefully: longest wait for the new copy before the old one goes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grace_period_seconds: Option<i32>,
}

/// Conditions that trigger application failover.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DecisionConditions {
    /// Seconds the application may stay unhealthy before failover.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub toleration_seconds: Option<i32>,
}

/// How the copy in the cluster being left is removed.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum PurgeMode {
    /// Remove at once.
    Directly,
    /// Remove once the new copy is healthy or the grace period ends.
    #[default]
    Gracefully,
    /// Never remove automatically.
    Never,
}
