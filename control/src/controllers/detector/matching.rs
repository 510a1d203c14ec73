//! Which policy claims a resource template (pure).
//!
//! Order, best first: a PropagationPolicy in the template's namespace beats
//! any ClusterPropagationPolicy (as in Karmada); then how precisely a
//! selector names the template (name > label selector > kind only); then the
//! policy's `priority` (higher first); then the policy name (lexically
//! smallest), so the choice never depends on listing order.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use hami_api::propagation::{Placement, ResourceSelector};
use hami_placement::filter::affinity::labels_match;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

/// How precisely a selector names a template.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Precision {
    /// apiVersion and kind only.
    Kind,
    /// apiVersion, kind and a label selector.
    Label,
    /// apiVersion, kind and the name.
    Name,
}

/// What matching reads of a policy.
#[derive(Clone, Debug, PartialEq)]
pub struct Policy {
    /// Namespace of a PropagationPolicy; `None` for a ClusterPropagationPolicy.
    pub namespace: Option<String>,
    pub name: String,
    pub priority: i32,
    pub selectors: Vec<ResourceSelector>,
    pub placement: Placement,
    /// `spec.rescheduleTriggeredAt`, copied to the bindings it claims.
    pub reschedule_triggered_at: Option<Time>,
}

impl Policy {
    /// True for a ClusterPropagationPolicy.
    pub fn cluster_wide(&self) -> bool {
        self.namespace.is_none()
    }
}

/// What matching reads of a template.
#[derive(Clone, Copy, Debug)]
pub struct Template<'a> {
    pub api_version: &'a str,
    pub kind: &'a str,
    /// `None` for cluster-scoped templates.
    pub namespace: Option<&'a str>,
    pub name: &'a str,
    pub labels: &'a BTreeMap<String, String>,
}

/// How precisely `selector` of a policy in `policy_ns` names `t`; `None`
/// when it does not select it.
pub fn selector_match(
    selector: &ResourceSelector,
    policy_ns: Option<&str>,
    t: &Template<'_>,
) -> Option<Precision> {
    if selector.api_version != t.api_version || selector.kind != t.kind {
        return None;
    }
    // A PropagationPolicy only reaches its own namespace; a selector's
    // namespace narrows further (a cluster policy's to that namespace).
    let wanted_ns = match policy_ns {
        Some(ns) => Some(ns),
        None => selector.namespace.as_deref().filter(|n| !n.is_empty()),
    };
    if let Some(ns) = wanted_ns
        && t.namespace != Some(ns)
    {
        return None;
    }
    if policy_ns.is_some()
        && let Some(sel_ns) = selector.namespace.as_deref().filter(|n| !n.is_empty())
        && Some(sel_ns) != t.namespace
    {
        return None;
    }
    if let Some(name) = selector.name.as_deref().filter(|n| !n.is_empty()) {
        return (name == t.name).then_some(Precision::Name);
    }
    match &selector.label_selector {
        Some(ls) => labels_match(ls, t.labels).then_some(Precision::Label),
        None => Some(Precision::Kind),
    }
}

/// How precisely `policy` names `t` (its best selector); `None` when none does.
pub fn policy_match(policy: &Policy, t: &Template<'_>) -> Option<Precision> {
    // A namespaced policy cannot claim a cluster-scoped template.
    if policy.namespace.is_some() && t.namespace.is_none() {
        return None;
    }
    policy
        .selectors
        .iter()
        .filter_map(|s| selector_match(s, policy.namespace.as_deref(), t))
        .max()
}

/// Orders two matching policies: `Less` when `a` should win.
fn better(a: (&Policy, Precision), b: (&Policy, Precision)) -> Ordering {
    a.0.cluster_wide()
        .cmp(&b.0.cluster_wide())
        .then_with(|| b.1.cmp(&a.1))
        .then_with(|| b.0.priority.cmp(&a.0.priority))
        .then_with(|| a.0.name.cmp(&b.0.name))
        .then_with(|| a.0.namespace.cmp(&b.0.namespace))
}

/// The policy that claims `t`, if any.
pub fn best_policy<'p>(
    policies: impl IntoIterator<Item = &'p Policy>,
    t: &Template<'_>,
) -> Option<&'p Policy> {
    policies
        .into_iter()
        .filter_map(|p| policy_match(p, t).map(|m| (p, m)))
        .min_by(|a, b| better(*a, *b))
        .map(|(p, _)| p)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

    fn sel(name: Option<&str>, label: Option<(&str, &str)>) -> ResourceSelector {
        ResourceSelector {
            api_version: "apps/v1".into(),
            kind: "Deployment".into(),
            namespace: None,
            name: name.map(Into::into),
            label_selector: label.map(|(k, v)| LabelSelector {
                match_labels: Some([(k.to_string(), v.to_string())].into()),
                match_expressions: None,
            }),
        }
    }

    fn pp(ns: Option<&str>, name: &str, priority: i32, s: ResourceSelector) -> Policy {
        Policy {
            namespace: ns.map(Into::into),
            name: name.into(),
            priority,
            selectors: vec![s],
            placement: Placement::default(),
            reschedule_triggered_at: None,
        }
    }

    fn web(labels: &BTreeMap<String, String>) -> Template<'_> {
        Template {
            api_version: "apps/v1",
            kind: "Deployment",
            namespace: Some("prod"),
            name: "web",
            labels,
        }
    }

    #[test]
    fn name_beats_label_beats_kind_whatever_the_priority() {
        let labels: BTreeMap<_, _> = [("app".to_string(), "web".to_string())].into();
        let kind = pp(Some("prod"), "a-kind", 100, sel(None, None));
        let label = pp(Some("prod"), "b-label", 50, sel(None, Some(("app", "web"))));
        let name = pp(Some("prod"), "c-name", 0, sel(Some("web"), None));
        let all = [kind.clone(), label.clone(), name.clone()];
        assert_eq!(best_policy(&all, &web(&labels)), Some(&name));
        assert_eq!(best_policy([&kind, &label], &web(&labels)), Some(&label));
        // The label selector must match.
        let other = BTreeMap::new();
        assert_eq!(best_policy([&kind, &label], &web(&other)), Some(&kind));
    }

    #[test]
    fn then_priority_then_name() {
        let labels = BTreeMap::new();
        let low = pp(Some("prod"), "a", 1, sel(None, None));
        let high = pp(Some("prod"), "z", 2, sel(None, None));
        assert_eq!(best_policy([&low, &high], &web(&labels)), Some(&high));
        let b = pp(Some("prod"), "b", 1, sel(None, None));
        assert_eq!(best_policy([&b, &low], &web(&labels)), Some(&low));
        assert_eq!(best_policy([&low, &b], &web(&labels)), Some(&low));
    }

    #[test]
    fn namespaced_policy_beats_cluster_policy_and_stays_in_its_namespace() {
        let labels = BTreeMap::new();
        let cpp = pp(None, "c", 100, sel(Some("web"), None));
        let local = pp(Some("prod"), "p", 0, sel(None, None));
        let elsewhere = pp(Some("dev"), "d", 0, sel(Some("web"), None));
        assert_eq!(
            best_policy([&cpp, &local, &elsewhere], &web(&labels)),
            Some(&local)
        );
        assert_eq!(best_policy([&cpp, &elsewhere], &web(&labels)), Some(&cpp));
        let mut narrowed = sel(None, None);
        narrowed.namespace = Some("dev".into());
        assert_eq!(
            best_policy([&pp(None, "n", 0, narrowed)], &web(&labels)),
            None
        );
    }

    #[test]
    fn kind_and_api_version_must_match() {
        let labels = BTreeMap::new();
        let mut s = sel(None, None);
        s.kind = "StatefulSet".into();
        assert_eq!(
            best_policy([&pp(Some("prod"), "x", 0, s)], &web(&labels)),
            None
        );
        let mut s = sel(None, None);
        s.api_version = "apps/v1beta1".into();
        assert_eq!(
            best_policy([&pp(Some("prod"), "x", 0, s)], &web(&labels)),
            None
        );
    }
}
