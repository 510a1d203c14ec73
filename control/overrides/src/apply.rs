//! Applying the rules of ordered policies to one cluster's manifest.
//!
//! For each policy in order (see [`crate::applicable_policies`]), each rule
//! whose `targetCluster` matches the cluster (all clusters when absent) runs
//! its overriders in Karmada's order: imageOverrider, commandOverrider,
//! argsOverrider, labelsOverrider, annotationsOverrider, then plaintext, so
//! a plaintext patch has the last word within its rule. The first failure
//! stops everything: the result is all rules or an error, never half.

use hami_api::Cluster;
use hami_api::override_policy::Overriders;
use hami_api::propagation::ClusterAffinity;
use hami_placement::ClusterView;
use hami_placement::filter::affinity;
use serde_json::{Value, json};

use crate::error::{Failure, OverrideError, Overrider};
use crate::meta::{MetaMap, apply_meta};
use crate::plaintext::apply_plaintext;
use crate::select::PolicyRef;
use crate::workload::{Field, apply_command_args, apply_image};

/// Annotation on a Work that lists the override policies applied to its
/// manifest (the value of [`applied_annotation`]).
pub const APPLIED_OVERRIDES_ANNOTATION: &str = "policy.hami.io/applied-overrides";

/// One policy that had at least one rule for the cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppliedOverride {
    /// `ClusterOverridePolicy` or `OverridePolicy`.
    pub kind: &'static str,
    /// Namespace of an OverridePolicy.
    pub namespace: Option<String>,
    pub name: String,
    /// Indices of the rules that targeted the cluster, in order.
    pub rules: Vec<usize>,
}

/// Whether a rule's `targetCluster` takes `cluster`: the same affinity
/// semantics as placement (names, exclude, labels, provider/region/zone).
pub fn targets(target: Option<&ClusterAffinity>, cluster: &ClusterView) -> bool {
    target.is_none_or(|a| affinity::matches(a, cluster))
}

/// Applies `policies` (already ordered) to `manifest` for `cluster`.
/// Returns the new manifest and the policies that had rules for it.
pub fn apply_overrides(
    manifest: &Value,
    cluster: &Cluster,
    policies: &[PolicyRef<'_>],
) -> Result<(Value, Vec<AppliedOverride>), OverrideError> {
    apply_overrides_to(manifest, &ClusterView::from_cluster(cluster), policies)
}

/// [`apply_overrides`] for a caller that already holds the cluster's view.
pub fn apply_overrides_to(
    manifest: &Value,
    cluster: &ClusterView,
    policies: &[PolicyRef<'_>],
) -> Result<(Value, Vec<AppliedOverride>), OverrideError> {
    let mut out = manifest.clone();
    let mut applied = Vec::new();
    for p in policies {
        let mut rules = Vec::new();
        for (i, rule) in p.spec.override_rules.iter().enumerate() {
            if !targets(rule.target_cluster.as_ref(), cluster) {
                continue;
            }
            apply_overriders(&mut out, &rule.overriders).map_err(|f| OverrideError {
                policy: p.to_string(),
                rule: i,
                overrider: f.overrider,
                index: f.index,
                path: f.path,
                cause: f.cause,
            })?;
            rules.push(i);
        }
        if !rules.is_empty() {
            applied.push(AppliedOverride {
                kind: p.kind(),
                namespace: p.namespace().map(str::to_string),
                name: p.name.to_string(),
                rules,
            });
        }
    }
    Ok((out, applied))
}

/// Runs the overriders of one rule on `m`, in Karmada's order.
fn apply_overriders(m: &mut Value, o: &Overriders) -> Result<(), Failure> {
    fn each<T>(
        m: &mut Value,
        list: &[T],
        overrider: Overrider,
        f: impl Fn(&mut Value, &T) -> Result<(), (String, crate::error::Cause)>,
    ) -> Result<(), Failure> {
        for (index, item) in list.iter().enumerate() {
            f(m, item).map_err(|(path, cause)| Failure {
                overrider,
                index,
                path,
                cause,
            })?;
        }
        Ok(())
    }
    each(m, &o.image_overrider, Overrider::Image, apply_image)?;
    each(m, &o.command_overrider, Overrider::Command, |m, c| {
        apply_command_args(m, Field::Command, c)
    })?;
    each(m, &o.args_overrider, Overrider::Args, |m, c| {
        apply_command_args(m, Field::Args, c)
    })?;
    each(m, &o.labels_overrider, Overrider::Labels, |m, l| {
        apply_meta(m, MetaMap::Labels, l)
    })?;
    each(
        m,
        &o.annotations_overrider,
        Overrider::Annotations,
        |m, l| apply_meta(m, MetaMap::Annotations, l),
    )?;
    each(m, &o.plaintext, Overrider::Plaintext, apply_plaintext)
}

/// The value of [`APPLIED_OVERRIDES_ANNOTATION`]: a JSON list of
/// `{"kind", "namespace"?, "name", "rules"}` in the order applied.
pub fn applied_annotation(applied: &[AppliedOverride]) -> String {
    let items: Vec<Value> = applied
        .iter()
        .map(|a| {
            // Keys inserted in sorted order: the same text whether or not
            // serde_json keeps insertion order.
            let mut obj = serde_json::Map::new();
            obj.insert("kind".into(), json!(a.kind));
            obj.insert("name".into(), json!(a.name));
            if let Some(ns) = &a.namespace {
                obj.insert("namespace".into(), json!(ns));
            }
            obj.insert("rules".into(), json!(a.rules));
            Value::Object(obj)
        })
        .collect();
    Value::Array(items).to_string()
}
