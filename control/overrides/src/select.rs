//! Which OverridePolicy and ClusterOverridePolicy objects apply to a resource
//! template, and in which order their rules run.
//!
//! Order (Karmada's): every ClusterOverridePolicy before every OverridePolicy;
//! within each, less specific before more specific (no selectors < apiVersion
//! and kind < label selector < name), then by name. Rules run in that order,
//! so the most specific policy of the narrowest scope has the last word.

use std::collections::BTreeMap;
use std::fmt;

use hami_api::override_policy::{ClusterOverridePolicy, OverridePolicy, OverrideSpec};
use hami_api::propagation::ResourceSelector;
use hami_placement::filter::affinity::labels_match;
use serde_json::Value;

/// Where a policy reaches. `Cluster` sorts before `Namespace`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Scope<'a> {
    /// A ClusterOverridePolicy: any namespace and cluster-scoped resources.
    Cluster,
    /// An OverridePolicy: only resources of its own namespace.
    Namespace(&'a str),
}

/// A borrowed view of either override policy kind.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PolicyRef<'a> {
    pub scope: Scope<'a>,
    pub name: &'a str,
    pub spec: &'a OverrideSpec,
}

impl<'a> From<&'a OverridePolicy> for PolicyRef<'a> {
    /// An OverridePolicy without a namespace reaches nothing namespaced
    /// (its scope is the empty namespace).
    fn from(p: &'a OverridePolicy) -> Self {
        PolicyRef {
            scope: Scope::Namespace(p.metadata.namespace.as_deref().unwrap_or_default()),
            name: p.metadata.name.as_deref().unwrap_or_default(),
            spec: &p.spec,
        }
    }
}

impl<'a> From<&'a ClusterOverridePolicy> for PolicyRef<'a> {
    fn from(p: &'a ClusterOverridePolicy) -> Self {
        PolicyRef {
            scope: Scope::Cluster,
            name: p.metadata.name.as_deref().unwrap_or_default(),
            spec: &p.spec.0,
        }
    }
}

impl PolicyRef<'_> {
    /// `ClusterOverridePolicy` or `OverridePolicy`.
    pub fn kind(&self) -> &'static str {
        match self.scope {
            Scope::Cluster => "ClusterOverridePolicy",
            Scope::Namespace(_) => "OverridePolicy",
        }
    }

    /// Namespace of an OverridePolicy.
    pub fn namespace(&self) -> Option<&str> {
        match self.scope {
            Scope::Cluster => None,
            Scope::Namespace(ns) => Some(ns),
        }
    }
}

/// `ClusterOverridePolicy/name` or `OverridePolicy/namespace/name`.
impl fmt::Display for PolicyRef<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.scope {
            Scope::Cluster => write!(f, "{}/{}", self.kind(), self.name),
            Scope::Namespace(ns) => write!(f, "{}/{ns}/{}", self.kind(), self.name),
        }
    }
}

/// How precisely a policy names a template: its implicit priority.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Precision {
    /// The policy has no resource selectors: every resource in scope.
    All,
    /// apiVersion and kind.
    Kind,
    /// apiVersion, kind and a label selector.
    Label,
    /// apiVersion, kind and the name.
    Name,
}

/// What selection reads of a template.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Template<'a> {
    pub api_version: &'a str,
    pub kind: &'a str,
    /// `None` for a cluster-scoped resource (an empty namespace counts as none).
    pub namespace: Option<&'a str>,
    pub name: &'a str,
    /// String-valued labels; others are ignored.
    pub labels: BTreeMap<String, String>,
}

impl<'a> Template<'a> {
    /// Reads a manifest; missing or ill-typed fields read as empty.
    pub fn of(manifest: &'a Value) -> Self {
        let s = |p: &str| {
            manifest
                .pointer(p)
                .and_then(Value::as_str)
                .unwrap_or_default()
        };
        let labels = manifest
            .pointer("/metadata/labels")
            .and_then(Value::as_object)
            .map(|m| {
                m.iter()
                    .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                    .collect()
            })
            .unwrap_or_default();
        Template {
            api_version: s("/apiVersion"),
            kind: s("/kind"),
            namespace: Some(s("/metadata/namespace")).filter(|n| !n.is_empty()),
            name: s("/metadata/name"),
            labels,
        }
    }
}

/// How precisely `selector` of a policy with `scope` names `t`; `None` when
/// it does not select it. A name, when set, decides alone (the label
/// selector is then ignored, as the API documents).
pub fn selector_match(
    selector: &ResourceSelector,
    scope: Scope<'_>,
    t: &Template<'_>,
) -> Option<Precision> {
    if selector.api_version != t.api_version || selector.kind != t.kind {
        return None;
    }
    if let Scope::Namespace(ns) = scope
        && t.namespace != Some(ns)
    {
        return None;
    }
    if let Some(ns) = selector.namespace.as_deref().filter(|n| !n.is_empty())
        && t.namespace != Some(ns)
    {
        return None;
    }
    if let Some(name) = selector.name.as_deref().filter(|n| !n.is_empty()) {
        return (name == t.name).then_some(Precision::Name);
    }
    match &selector.label_selector {
        Some(ls) => labels_match(ls, &t.labels).then_some(Precision::Label),
        None => Some(Precision::Kind),
    }
}

/// How precisely `policy` names `t` (its best selector); `None` when it does
/// not apply. An OverridePolicy applies only in its own namespace, so never
/// to a cluster-scoped resource.
pub fn policy_match(policy: &PolicyRef<'_>, t: &Template<'_>) -> Option<Precision> {
    if let Scope::Namespace(ns) = policy.scope
        && t.namespace != Some(ns)
    {
        return None;
    }
    if policy.spec.resource_selectors.is_empty() {
        return Some(Precision::All);
    }
    policy
        .spec
        .resource_selectors
        .iter()
        .filter_map(|s| selector_match(s, policy.scope, t))
        .max()
}

/// The policies that apply to `template`, in the order their rules run.
pub fn applicable_policies<'a>(template: &Value, policies: &[PolicyRef<'a>]) -> Vec<PolicyRef<'a>> {
    let t = Template::of(template);
    let mut matched: Vec<(PolicyRef<'a>, Precision)> = policies
        .iter()
        .filter_map(|p| policy_match(p, &t).map(|m| (*p, m)))
        .collect();
    matched.sort_by(|(a, pa), (b, pb)| {
        let cluster_first = |p: &PolicyRef<'_>| !matches!(p.scope, Scope::Cluster);
        cluster_first(a)
            .cmp(&cluster_first(b))
            .then(pa.cmp(pb))
            .then_with(|| a.name.cmp(b.name))
            .then_with(|| a.scope.cmp(&b.scope))
    });
    matched.into_iter().map(|(p, _)| p).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec(selectors: Value) -> OverrideSpec {
        serde_json::from_value(json!({ "resourceSelectors": selectors })).unwrap()
    }

    fn web() -> Value {
        json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "prod", "labels": {"app": "web", "n": 1}},
        })
    }

    fn names(v: &[PolicyRef<'_>]) -> Vec<String> {
        v.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn selector_table() {
        let t_val = web();
        let t = Template::of(&t_val);
        let cases: Vec<(&str, Value, Scope<'_>, Option<Precision>)> = vec![
            (
                "kind",
                json!({"apiVersion": "apps/v1", "kind": "Deployment"}),
                Scope::Cluster,
                Some(Precision::Kind),
            ),
            (
                "other kind",
                json!({"apiVersion": "apps/v1", "kind": "StatefulSet"}),
                Scope::Cluster,
                None,
            ),
            (
                "other apiVersion",
                json!({"apiVersion": "apps/v1beta1", "kind": "Deployment"}),
                Scope::Cluster,
                None,
            ),
            (
                "name",
                json!({"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"}),
                Scope::Cluster,
                Some(Precision::Name),
            ),
            (
                "other name",
                json!({"apiVersion": "apps/v1", "kind": "Deployment", "name": "api"}),
                Scope::Cluster,
                None,
            ),
            (
                "name wins over a label selector that misses",
                json!({"apiVersion": "apps/v1", "kind": "Deployment", "name": "web", "labelSelector": {"matchLabels": {"app": "x"}}}),
                Scope::Cluster,
                Some(Precision::Name),
            ),
            (
                "labels",
                json!({"apiVersion": "apps/v1", "kind": "Deployment", "labelSelector": {"matchLabels": {"app": "web"}}}),
                Scope::Cluster,
                Some(Precision::Label),
            ),
            (
                "non-string label values are not labels",
                json!({"apiVersion": "apps/v1", "kind": "Deployment", "labelSelector": {"matchExpressions": [{"key": "n", "operator": "Exists"}]}}),
                Scope::Cluster,
                None,
            ),
            (
                "namespace",
                json!({"apiVersion": "apps/v1", "kind": "Deployment", "namespace": "prod"}),
                Scope::Cluster,
                Some(Precision::Kind),
            ),
            (
                "other namespace",
                json!({"apiVersion": "apps/v1", "kind": "Deployment", "namespace": "dev"}),
                Scope::Cluster,
                None,
            ),
            (
                "own namespace",
                json!({"apiVersion": "apps/v1", "kind": "Deployment"}),
                Scope::Namespace("prod"),
                Some(Precision::Kind),
            ),
            (
                "policy elsewhere",
                json!({"apiVersion": "apps/v1", "kind": "Deployment"}),
                Scope::Namespace("dev"),
                None,
            ),
            (
                "selector names another namespace",
                json!({"apiVersion": "apps/v1", "kind": "Deployment", "namespace": "dev"}),
                Scope::Namespace("prod"),
                None,
            ),
        ];
        for (name, sel, scope, want) in cases {
            let sel: ResourceSelector = serde_json::from_value(sel).unwrap();
            assert_eq!(selector_match(&sel, scope, &t), want, "{name}");
        }
    }

    #[test]
    fn cluster_scoped_before_namespaced_then_less_specific_first_then_name() {
        let by_name = spec(json!([{"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"}]));
        let by_kind = spec(json!([{"apiVersion": "apps/v1", "kind": "Deployment"}]));
        let by_label = spec(
            json!([{"apiVersion": "apps/v1", "kind": "Deployment", "labelSelector": {"matchLabels": {"app": "web"}}}]),
        );
        let all = OverrideSpec::default();
        let miss = spec(json!([{"apiVersion": "apps/v1", "kind": "Deployment", "name": "api"}]));
        let ns = Scope::Namespace("prod");
        let p = |scope, name, spec| PolicyRef { scope, name, spec };
        let policies = [
            p(ns, "a-name", &by_name),
            p(ns, "b-kind", &by_kind),
            p(ns, "c-all", &all),
            p(ns, "d-label", &by_label),
            p(ns, "e-miss", &miss),
            p(Scope::Namespace("dev"), "f-elsewhere", &all),
            p(Scope::Cluster, "z-name", &by_name),
            p(Scope::Cluster, "y-kind", &by_kind),
            p(Scope::Cluster, "x-kind", &by_kind),
        ];
        let got = applicable_policies(&web(), &policies);
        assert_eq!(
            names(&got),
            [
                "ClusterOverridePolicy/x-kind",
                "ClusterOverridePolicy/y-kind",
                "ClusterOverridePolicy/z-name",
                "OverridePolicy/prod/c-all",
                "OverridePolicy/prod/b-kind",
                "OverridePolicy/prod/d-label",
                "OverridePolicy/prod/a-name",
            ]
        );
        // Listing order does not matter.
        let mut reversed = policies;
        reversed.reverse();
        assert_eq!(applicable_policies(&web(), &reversed), got);
    }

    #[test]
    fn best_selector_of_a_policy_counts() {
        let two = spec(json!([
            {"apiVersion": "apps/v1", "kind": "Deployment"},
            {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
        ]));
        let label = spec(
            json!([{"apiVersion": "apps/v1", "kind": "Deployment", "labelSelector": {"matchLabels": {"app": "web"}}}]),
        );
        let policies = [
            PolicyRef {
                scope: Scope::Cluster,
                name: "a",
                spec: &two,
            },
            PolicyRef {
                scope: Scope::Cluster,
                name: "b",
                spec: &label,
            },
        ];
        let got = applicable_policies(&web(), &policies);
        assert_eq!(
            names(&got),
            ["ClusterOverridePolicy/b", "ClusterOverridePolicy/a"]
        );
    }

    #[test]
    fn cluster_scoped_template_takes_only_cluster_policies() {
        let ns_obj = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "prod"}});
        let all = OverrideSpec::default();
        let named_ns =
            spec(json!([{"apiVersion": "v1", "kind": "Namespace", "namespace": "prod"}]));
        let policies = [
            PolicyRef {
                scope: Scope::Namespace("prod"),
                name: "op",
                spec: &all,
            },
            PolicyRef {
                scope: Scope::Namespace(""),
                name: "no-namespace",
                spec: &all,
            },
            PolicyRef {
                scope: Scope::Cluster,
                name: "cop",
                spec: &all,
            },
            PolicyRef {
                scope: Scope::Cluster,
                name: "narrowed",
                spec: &named_ns,
            },
        ];
        let got = applicable_policies(&ns_obj, &policies);
        assert_eq!(names(&got), ["ClusterOverridePolicy/cop"]);
    }

    #[test]
    fn from_api_objects() {
        let op: OverridePolicy = serde_json::from_value(json!({
            "apiVersion": "policy.hami.io/v1alpha1", "kind": "OverridePolicy",
            "metadata": {"name": "op", "namespace": "prod"}, "spec": {},
        }))
        .unwrap();
        let cop: ClusterOverridePolicy = serde_json::from_value(json!({
            "apiVersion": "policy.hami.io/v1alpha1", "kind": "ClusterOverridePolicy",
            "metadata": {"name": "cop"}, "spec": {},
        }))
        .unwrap();
        let policies = [PolicyRef::from(&op), PolicyRef::from(&cop)];
        assert_eq!(policies[0].namespace(), Some("prod"));
        assert_eq!(policies[1].namespace(), None);
        let got = applicable_policies(&web(), &policies);
        assert_eq!(
            names(&got),
            ["ClusterOverridePolicy/cop", "OverridePolicy/prod/op"]
        );
    }
}
