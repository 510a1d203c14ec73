//! `policy.hami.io/v1alpha1` OverridePolicy and ClusterOverridePolicy: changes
//! applied to a resource for some clusters (image registry, args, labels, JSON patch).

use std::collections::BTreeMap;
use std::ops::{Deref, DerefMut};

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::propagation::{ClusterAffinity, ResourceSelector};

/// Overrides for the selected resources (shared by both override kinds).
// The derive's repeated printcolumn(...) keys trip this lint.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "policy.hami.io",
    version = "v1alpha1",
    kind = "OverridePolicy",
    namespaced,
    shortname = "op",
    category = "hami",
    derive = "PartialEq",
    doc = "Changes resources in its namespace per target cluster.",
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct OverrideSpec {
    /// Resources the overrides apply to; empty means every resource in scope.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resource_selectors: Vec<ResourceSelector>,
    /// Rules applied in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub override_rules: Vec<RuleWithCluster>,
}

/// Spec of a ClusterOverridePolicy: the same as an OverridePolicy's
/// (reach the fields through `Deref`).
// The derive's repeated printcolumn(...) keys trip this lint.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "policy.hami.io",
    version = "v1alpha1",
    kind = "ClusterOverridePolicy",
    shortname = "cop",
    category = "hami",
    derive = "PartialEq",
    doc = "Changes resources in any namespace, or cluster-scoped ones, per target cluster.",
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(transparent)]
pub struct ClusterOverrideSpec(pub OverrideSpec);

impl Deref for ClusterOverrideSpec {
    type Target = OverrideSpec;
    fn deref(&self) -> &OverrideSpec {
        &self.0
    }
}

impl DerefMut for ClusterOverrideSpec {
    fn deref_mut(&mut self) -> &mut OverrideSpec {
        &mut self.0
    }
}

impl From<OverrideSpec> for ClusterOverrideSpec {
    fn from(spec: OverrideSpec) -> Self {
        Self(spec)
    }
}

/// Overriders for the clusters matched by `targetCluster` (all clusters when absent).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RuleWithCluster {
    /// Clusters this rule applies to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_cluster: Option<ClusterAffinity>,
    /// What to change.
    #[serde(default)]
    pub overriders: Overriders,
}

/// The changes of one rule. They apply in Karmada's order: images, commands,
/// args, labels, annotations, and the plaintext JSON patch last.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Overriders {
    /// JSON patch operations on any field.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub plaintext: Vec<PlaintextOverrider>,
    /// Changes to container images.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub image_overrider: Vec<ImageOverrider>,
    /// Changes to container commands.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub command_overrider: Vec<CommandArgsOverrider>,
    /// Changes to container args.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args_overrider: Vec<CommandArgsOverrider>,
    /// Changes to labels.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub labels_overrider: Vec<LabelAnnotationOverrider>,
    /// Changes to annotations.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub annotations_overrider: Vec<LabelAnnotationOverrider>,
}

/// One JSON patch (RFC 6902) operation.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PlaintextOverrider {
    /// JSON pointer (RFC 6901) to the field, e.g. `/spec/replicas`.
    pub path: String,
    /// add, remove or replace.
    pub operator: OverriderOperator,
    /// New value (for add and replace).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::common::any_json_schema")]
    pub value: Option<serde_json::Value>,
}

/// Operation of an overrider.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum OverriderOperator {
    /// Add the value.
    Add,
    /// Remove the value.
    Remove,
    /// Replace the value.
    #[default]
    Replace,
}

/// Change to one part of container images.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ImageOverrider {
    /// Which image to change; absent means every container image of known kinds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub predicate: Option<ImagePredicate>,
    /// Part of the image: Registry, Repository or Tag.
    pub component: ImageComponent,
    /// add, remove or replace.
    pub operator: OverriderOperator,
    /// New value for the component.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
}

/// Selects one image field by JSON pointer.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ImagePredicate {
    /// JSON pointer to the image field, e.g. `/spec/template/spec/containers/0/image`.
    pub path: String,
}

/// Part of an image reference `registry/repository:tag`.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum ImageComponent {
    /// The registry host, e.g. `registry.k8s.io`.
    #[default]
    Registry,
    /// The repository path, e.g. `pause`.
    Repository,
    /// The tag, e.g. `3.9`.
    Tag,
}

/// Change to one container's command or args.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CommandArgsOverrider {
    /// Name of the container.
    pub container_name: String,
    /// add (append) or remove.
    pub operator: CommandArgsOperator,
    /// Items to append or remove.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub value: Vec<String>,
}

/// Operation of a command or args overrider.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum CommandArgsOperator {
    /// Append the items.
    #[default]
    Add,
    /// Remove the items.
    Remove,
}

/// Change to labels or annotations.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LabelAnnotationOverrider {
    /// add, remove or replace.
    pub operator: OverriderOperator,
    /// Keys and values (values are ignored by remove).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub value: BTreeMap<String, String>,
}
