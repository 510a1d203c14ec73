//! Cluster affinity: names, exclusions, a label selector and a field selector
//! over provider, region and zone. Every part that is set must match.

use std::collections::BTreeMap;

use hami_api::propagation::{
    ClusterAffinity, FIELD_PROVIDER, FIELD_REGION, FIELD_ZONE, FieldSelector,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

use crate::prepared::PreparedClusters;
use crate::view::ClusterView;

/// Whether `cluster` is in the set `affinity` describes.
pub fn matches(affinity: &ClusterAffinity, cluster: &ClusterView) -> bool {
    names_match(affinity, cluster)
        && affinity
            .label_selector
            .as_ref()
            .is_none_or(|sel| labels_match(sel, &cluster.labels))
        && affinity
            .field_selector
            .as_ref()
            .is_none_or(|sel| fields_match(sel, cluster))
}

/// [`matches`] for many clusters: the selector's matchLabels are read once
/// into a list, so that matching a cluster does not walk the selector's map.
#[derive(Clone, Debug)]
pub struct Compiled<'a> {
    affinity: &'a ClusterAffinity,
    match_labels: Vec<(&'a str, &'a str)>,
}

impl<'a> Compiled<'a> {
    /// Reads `affinity` once.
    pub fn new(affinity: &'a ClusterAffinity) -> Self {
        let match_labels = affinity
            .label_selector
            .as_ref()
            .and_then(|sel| sel.match_labels.as_ref())
            .map(|ml| ml.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect())
            .unwrap_or_default();
        Compiled {
            affinity,
            match_labels,
        }
    }

    /// [`matches`] for this affinity.
    pub fn matches(&self, cluster: &ClusterView) -> bool {
        let a = self.affinity;
        names_match(a, cluster)
            && a.label_selector.as_ref().is_none_or(|sel| {
                let labels = &cluster.labels;
                self.match_labels
                    .iter()
                    .all(|&(k, v)| labels.get(k).is_some_and(|have| have == v))
                    && expressions_match(sel, labels)
            })
            && a.field_selector
                .as_ref()
                .is_none_or(|sel| fields_match(sel, cluster))
    }
}

/// [`matches`] against a [`PreparedClusters`] snapshot: names resolved to
/// positions and labels to interned ids once, so matching a cluster
/// compares numbers. Equal to [`matches`] on the snapshot's views.
#[derive(Clone, Debug)]
pub struct Resolved<'a> {
    affinity: &'a ClusterAffinity,
    /// Per cluster: passes clusterNames and exclude; `None` when both are empty.
    names: Option<Vec<bool>>,
    labels: Labels,
}

#[derive(Clone, Debug)]
enum Labels {
    /// No label selector.
    Any,
    /// A part of the selector no cluster can meet.
    Never,
    /// matchLabels as `(key, value)` ids, then the expressions.
    Check(Vec<(u32, u32)>, Vec<Expr>),
}

#[derive(Clone, Debug)]
enum Expr {
    In(u32, Vec<u32>),
    NotIn(u32, Vec<u32>),
    Exists(u32),
    DoesNotExist(u32),
}

impl<'a> Resolved<'a> {
    /// Resolves `affinity` against `clusters`.
    pub fn new(affinity: &'a ClusterAffinity, clusters: &PreparedClusters<'_>) -> Self {
        let names =
            (!affinity.cluster_names.is_empty() || !affinity.exclude.is_empty()).then(|| {
                let mut ok = if affinity.cluster_names.is_empty() {
                    vec![true; clusters.len()]
                } else {
                    clusters.mask_of(&affinity.cluster_names)
                };
                for n in &affinity.exclude {
                    for i in clusters.positions_of(n) {
                        ok[i] = false;
                    }
                }
                ok
            });
        let labels = match &affinity.label_selector {
            None => Labels::Any,
            Some(sel) => resolve_selector(sel, clusters).unwrap_or(Labels::Never),
        };
        Resolved {
            affinity,
            names,
            labels,
        }
    }

    /// [`matches`] for cluster `c` of the snapshot.
    pub fn matches(&self, clusters: &PreparedClusters<'_>, c: usize) -> bool {
        if let Some(names) = &self.names
            && !names[c]
        {
            return false;
        }
        let labels_ok = match &self.labels {
            Labels::Any => true,
            Labels::Never => false,
            Labels::Check(eq, exprs) => {
                eq.iter().all(|&(k, v)| clusters.label(c, k) == Some(v))
                    && exprs.iter().all(|e| match e {
                        Expr::In(k, vals) => {
                            clusters.label(c, *k).is_some_and(|v| vals.contains(&v))
                        }
                        Expr::NotIn(k, vals) => {
                            clusters.label(c, *k).is_none_or(|v| !vals.contains(&v))
                        }
                        Expr::Exists(k) => clusters.label(c, *k).is_some(),
                        Expr::DoesNotExist(k) => clusters.label(c, *k).is_none(),
                    })
            }
        };
        labels_ok
            && self
                .affinity
                .field_selector
                .as_ref()
                .is_none_or(|sel| fields_match(sel, &clusters.views()[c]))
    }
}

/// The selector in interned ids; `None` when no cluster of the snapshot can
/// meet it (a key or value no cluster has where one is required, or an
/// unknown operator). Requirements every cluster meets are left out.
fn resolve_selector(sel: &LabelSelector, clusters: &PreparedClusters<'_>) -> Option<Labels> {
    let mut eq = Vec::new();
    for (k, v) in sel.match_labels.iter().flatten() {
        eq.push((clusters.string_id(k)?, clusters.string_id(v)?));
    }
    let mut exprs = Vec::new();
    for e in sel.match_expressions.iter().flatten() {
        let key = clusters.string_id(&e.key);
        let values = || -> Vec<u32> {
            e.values
                .iter()
                .flatten()
                .filter_map(|v| clusters.string_id(v))
                .collect()
        };
        match (e.operator.as_str(), key) {
            ("In", Some(k)) => exprs.push(Expr::In(k, values())),
            ("NotIn", Some(k)) => exprs.push(Expr::NotIn(k, values())),
            ("Exists", Some(k)) => exprs.push(Expr::Exists(k)),
            ("DoesNotExist", Some(k)) => exprs.push(Expr::DoesNotExist(k)),
            // No cluster has the key: NotIn and DoesNotExist always hold.
            ("NotIn" | "DoesNotExist", None) => {}
            _ => return None,
        }
    }
    Some(Labels::Check(eq, exprs))
}

/// `clusterNames` (when set) lists the cluster and `exclude` does not.
fn names_match(affinity: &ClusterAffinity, cluster: &ClusterView) -> bool {
    (affinity.cluster_names.is_empty() || affinity.cluster_names.contains(&cluster.name))
        && !affinity.exclude.contains(&cluster.name)
}

/// Kubernetes label selector semantics: matchLabels and matchExpressions
/// (In, NotIn, Exists, DoesNotExist) all hold; an unknown operator never matches.
pub fn labels_match(sel: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
    if let Some(ml) = &sel.match_labels
        && !ml.iter().all(|(k, v)| labels.get(k) == Some(v))
    {
        return false;
    }
    expressions_match(sel, labels)
}

/// The matchExpressions part of [`labels_match`].
fn expressions_match(sel: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
    let exprs = sel.match_expressions.as_deref().unwrap_or_default();
    exprs.iter().all(|e| {
        let values = e.values.as_deref().unwrap_or_default();
        let have = labels.get(&e.key);
        match e.operator.as_str() {
            "In" => have.is_some_and(|v| values.contains(v)),
            "NotIn" => have.is_none_or(|v| !values.contains(v)),
            "Exists" => have.is_some(),
            "DoesNotExist" => have.is_none(),
            _ => false,
        }
    })
}

/// Field selector over `provider`, `region` and `zone` with In and NotIn.
/// A multi-zone cluster matches `zone In` only when all its zones are listed
/// (its replicas may land in any of them), and `zone NotIn` when none is.
/// A cluster without the field matches only NotIn. Unknown keys or operators
/// never match.
pub fn fields_match(sel: &FieldSelector, cluster: &ClusterView) -> bool {
    sel.match_expressions.iter().all(|e| {
        let values = e.values.as_deref().unwrap_or_default();
        let have: Vec<&str> = match e.key.as_str() {
            FIELD_PROVIDER => cluster.provider.as_deref().into_iter().collect(),
            FIELD_REGION => cluster.region.as_deref().into_iter().collect(),
            FIELD_ZONE => cluster.zones.iter().map(String::as_str).collect(),
            _ => return false,
        };
        let listed = |v: &&str| values.iter().any(|x| x == v);
        match e.operator.as_str() {
            "In" => !have.is_empty() && have.iter().all(listed),
            "NotIn" => !have.iter().any(listed),
            _ => false,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::NodeSelectorRequirement;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;

    fn expr(key: &str, op: &str, values: &[&str]) -> LabelSelectorRequirement {
        LabelSelectorRequirement {
            key: key.into(),
            operator: op.into(),
            values: Some(values.iter().map(|v| v.to_string()).collect()),
        }
    }

    fn field(key: &str, op: &str, values: &[&str]) -> FieldSelector {
        FieldSelector {
            match_expressions: vec![NodeSelectorRequirement {
                key: key.into(),
                operator: op.into(),
                values: Some(values.iter().map(|v| v.to_string()).collect()),
            }],
        }
    }

    #[test]
    fn table() {
        let east = ClusterView::new("east")
            .with_label("env", "prod")
            .with_location("aws", "us-east", "us-east-1a");
        let mut multi = ClusterView::new("multi").with_location("gcp", "eu", "eu-a");
        multi.zones.push("eu-b".into());
        let bare = ClusterView::new("bare");
        let labels = |ml: &[(&str, &str)], exprs: Vec<LabelSelectorRequirement>| ClusterAffinity {
            label_selector: Some(LabelSelector {
                match_labels: Some(
                    ml.iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect(),
                ),
                match_expressions: Some(exprs),
            }),
            ..Default::default()
        };
        let fields = |f: FieldSelector| ClusterAffinity {
            field_selector: Some(f),
            ..Default::default()
        };
        let names = |n: &[&str], x: &[&str]| ClusterAffinity {
            cluster_names: n.iter().map(|s| s.to_string()).collect(),
            exclude: x.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        };
        let cases: Vec<(&str, ClusterAffinity, &ClusterView, bool)> = vec![
            ("empty matches all", ClusterAffinity::default(), &bare, true),
            ("named", names(&["east"], &[]), &east, true),
            ("not named", names(&["west"], &[]), &east, false),
            (
                "excluded wins over named",
                names(&["east"], &["east"]),
                &east,
                false,
            ),
            ("exclude only", names(&[], &["west"]), &east, true),
            (
                "matchLabels",
                labels(&[("env", "prod")], vec![]),
                &east,
                true,
            ),
            (
                "matchLabels miss",
                labels(&[("env", "dev")], vec![]),
                &east,
                false,
            ),
            (
                "In",
                labels(&[], vec![expr("env", "In", &["dev", "prod"])]),
                &east,
                true,
            ),
            (
                "In without label",
                labels(&[], vec![expr("env", "In", &["prod"])]),
                &bare,
                false,
            ),
            (
                "NotIn",
                labels(&[], vec![expr("env", "NotIn", &["prod"])]),
                &east,
                false,
            ),
            (
                "NotIn without label",
                labels(&[], vec![expr("env", "NotIn", &["prod"])]),
                &bare,
                true,
            ),
            (
                "Exists",
                labels(&[], vec![expr("env", "Exists", &[])]),
                &east,
                true,
            ),
            (
                "DoesNotExist",
                labels(&[], vec![expr("env", "DoesNotExist", &[])]),
                &east,
                false,
            ),
            (
                "bad operator",
                labels(&[], vec![expr("env", "Gt", &["1"])]),
                &east,
                false,
            ),
            (
                "provider In",
                fields(field("provider", "In", &["aws"])),
                &east,
                true,
            ),
            (
                "region NotIn",
                fields(field("region", "NotIn", &["us-east"])),
                &east,
                false,
            ),
            (
                "zone In",
                fields(field("zone", "In", &["us-east-1a"])),
                &east,
                true,
            ),
            (
                "multi-zone In needs all",
                fields(field("zone", "In", &["eu-a"])),
                &multi,
                false,
            ),
            (
                "multi-zone In all",
                fields(field("zone", "In", &["eu-a", "eu-b"])),
                &multi,
                true,
            ),
            (
                "multi-zone NotIn any",
                fields(field("zone", "NotIn", &["eu-b"])),
                &multi,
                false,
            ),
            (
                "missing field In",
                fields(field("region", "In", &["eu"])),
                &bare,
                false,
            ),
            (
                "missing field NotIn",
                fields(field("region", "NotIn", &["eu"])),
                &bare,
                true,
            ),
            (
                "unknown key",
                fields(field("rack", "In", &["r1"])),
                &east,
                false,
            ),
        ];
        for (name, aff, cluster, want) in cases {
            assert_eq!(matches(&aff, cluster), want, "{name}");
            assert_eq!(
                Compiled::new(&aff).matches(cluster),
                want,
                "compiled: {name}"
            );
        }
    }
}
