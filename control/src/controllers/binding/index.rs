//! The binding controller's synchronous index: what it needs to know which
//! bindings to requeue when something changes, and which Works a binding
//! has. One writer (the store feed), readers copy out under a short lock.
//! Keys are store keys; only the fields read are kept (hashes stand in for
//! contents that are only compared).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use hami_api::override_policy::OverrideSpec;
use hami_placement::ClusterView;

/// One binding.
#[derive(Clone, Debug, PartialEq)]
pub struct BindingEntry {
    /// Hash of the spec, deletion mark and the scheduler's verdict
    /// (observed generation, `Scheduled` status): a change requeues the
    /// binding; other status changes do not.
    pub hash: u64,
    /// Store key of the template.
    pub template_key: Option<String>,
    pub api_version: String,
    pub kind: String,
    pub namespace: Option<String>,
    /// Target cluster names.
    pub clusters: Vec<String>,
}

/// One Work that names a binding.
#[derive(Clone, Debug, PartialEq)]
pub struct WorkEntry {
    /// Store key of its binding.
    pub binding: String,
    /// Its execution namespace.
    pub namespace: String,
    /// Hash of spec, labels and annotations.
    pub hash: u64,
}

/// An override policy: `(namespace, name)` (namespace `None` for a
/// ClusterOverridePolicy) and its spec.
pub type PolicyEntry = (Option<String>, String, OverrideSpec);

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Index {
    pub bindings: HashMap<String, BindingEntry>,
    /// Template key -> (hash of its manifest, bindings using it).
    pub templates: HashMap<String, (Option<u64>, BTreeSet<String>)>,
    pub works: HashMap<String, WorkEntry>,
    pub works_by_binding: HashMap<String, BTreeSet<String>>,
    pub works_per_namespace: HashMap<String, usize>,
    /// Clusters by name: only what override targeting reads.
    pub clusters: BTreeMap<String, ClusterView>,
    pub policies: BTreeMap<(Option<String>, String), OverrideSpec>,
    /// The policies, copied out once per change for reconciles to share.
    pub policy_snapshot: Arc<Vec<PolicyEntry>>,
}

/// What override targeting reads of a cluster (name, labels, provider,
/// region, zones); resources and readiness change often and matter not.
pub fn targeting_view(mut v: ClusterView) -> ClusterView {
    v.taints.clear();
    v.ready = true;
    v.api_enablements = None;
    v.free = None;
    v
}

impl Index {
    /// Records a binding; true when its spec changed (or it is new).
    pub fn put_binding(&mut self, key: &str, entry: BindingEntry) -> bool {
        let old = self.bindings.insert(key.to_string(), entry.clone());
        if old.as_ref() == Some(&entry) {
            return false;
        }
        if let Some(old_t) = old.and_then(|o| o.template_key)
            && Some(&old_t) != entry.template_key.as_ref()
        {
            self.unlink_template(&old_t, key);
        }
        if let Some(t) = entry.template_key {
            self.templates
                .entry(t)
                .or_default()
                .1
                .insert(key.to_string());
        }
        true
    }

    pub fn remove_binding(&mut self, key: &str) {
        if let Some(t) = self.bindings.remove(key).and_then(|o| o.template_key) {
            self.unlink_template(&t, key);
        }
    }

    fn unlink_template(&mut self, template: &str, binding: &str) {
        if let Some((_, set)) = self.templates.get_mut(template) {
            set.remove(binding);
            if set.is_empty() {
                self.templates.remove(template);
            }
        }
    }

    /// Records a template's manifest hash; the bindings to requeue when it
    /// changed (empty for templates no binding uses).
    pub fn put_template(&mut self, key: &str, hash: u64) -> Vec<String> {
        match self.templates.get_mut(key) {
            Some((h, set)) if *h != Some(hash) => {
                *h = Some(hash);
                set.iter().cloned().collect()
            }
            _ => Vec::new(),
        }
    }

    /// Records a Work; true when its content changed (or it is new).
    pub fn put_work(&mut self, key: &str, entry: WorkEntry) -> bool {
        let old = self.works.get(key).cloned();
        if old.as_ref() == Some(&entry) {
            return false;
        }
        self.remove_work(key);
        self.works_by_binding
            .entry(entry.binding.clone())
            .or_default()
            .insert(key.to_string());
        *self
            .works_per_namespace
            .entry(entry.namespace.clone())
            .or_default() += 1;
        self.works.insert(key.to_string(), entry);
        true
    }

    /// Forgets a Work; returns what it was.
    pub fn remove_work(&mut self, key: &str) -> Option<WorkEntry> {
        let old = self.works.remove(key)?;
        if let Some(set) = self.works_by_binding.get_mut(&old.binding) {
            set.remove(key);
            if set.is_empty() {
                self.works_by_binding.remove(&old.binding);
            }
        }
        if let Some(n) = self.works_per_namespace.get_mut(&old.namespace) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.works_per_namespace.remove(&old.namespace);
            }
        }
        Some(old)
    }

    /// Bindings that target `cluster`.
    pub fn bindings_on(&self, cluster: &str) -> Vec<String> {
        let mut keys: Vec<String> = self
            .bindings
            .iter()
            .filter(|(_, b)| b.clusters.iter().any(|c| c == cluster))
            .map(|(k, _)| k.clone())
            .collect();
        keys.sort();
        keys
    }

    /// Bindings whose template a policy could select: same apiVersion and
    /// kind as one of its selectors (any, without selectors), in its
    /// namespace for an OverridePolicy. A superset of what the policy
    /// applies to; the reconcile decides exactly.
    pub fn bindings_selected_by(
        &self,
        namespace: Option<&str>,
        spec: &OverrideSpec,
    ) -> Vec<String> {
        let mut keys: Vec<String> = self
            .bindings
            .iter()
            .filter(|(_, b)| namespace.is_none() || b.namespace.as_deref() == namespace)
            .filter(|(_, b)| {
                spec.resource_selectors.is_empty()
                    || spec
                        .resource_selectors
                        .iter()
                        .any(|s| s.api_version == b.api_version && s.kind == b.kind)
            })
            .map(|(k, _)| k.clone())
            .collect();
        keys.sort();
        keys
    }

    /// Rebuilds [`Self::policy_snapshot`] from [`Self::policies`].
    pub fn refresh_policies(&mut self) {
        self.policy_snapshot = Arc::new(
            self.policies
                .iter()
                .map(|((ns, name), spec)| (ns.clone(), name.clone(), spec.clone()))
                .collect(),
        );
    }
}

/// Queue key of an execution namespace's reconcile (binding keys are
/// store keys, which start with `/`).
pub const NAMESPACE_KEY: &str = "ns:";

/// What a relist must requeue: every binding whose entry, Works, template
/// or target clusters differ between the index it replaces (`old`) and the
/// fresh one (`new`), every binding an override policy that differs could
/// select, and the namespace of every cluster that came or went. Changes
/// the watch missed are exactly these differences.
pub fn relisted(old: &Index, new: &Index) -> BTreeSet<String> {
    let mut keys = BTreeSet::new();
    let works_of = |i: &Index, b: &str| -> Vec<(String, WorkEntry)> {
        i.works_by_binding
            .get(b)
            .into_iter()
            .flatten()
            .filter_map(|k| i.works.get(k).map(|w| (k.clone(), w.clone())))
            .collect()
    };
    let template_hash = |i: &Index, b: Option<&BindingEntry>| {
        b.and_then(|b| b.template_key.as_ref())
            .and_then(|t| i.templates.get(t))
            .map(|(h, _)| *h)
    };
    let bindings: BTreeSet<&String> = old
        .bindings
        .keys()
        .chain(new.bindings.keys())
        .chain(old.works_by_binding.keys())
        .chain(new.works_by_binding.keys())
        .collect();
    for b in bindings {
        let (o, n) = (old.bindings.get(b), new.bindings.get(b));
        let template_moved = match (template_hash(old, o), template_hash(new, n)) {
            (Some(Some(x)), Some(Some(y))) => x != y,
            // Unknown on either side: the template may have changed.
            (None, None) => false,
            _ => true,
        };
        if o != n || template_moved || works_of(old, b) != works_of(new, b) {
            keys.insert(b.clone());
        }
    }
    let clusters: BTreeSet<&String> = old.clusters.keys().chain(new.clusters.keys()).collect();
    for c in clusters {
        match (old.clusters.get(c), new.clusters.get(c)) {
            (Some(o), Some(n)) if o == n => {}
            (Some(_), Some(_)) => {
                keys.extend(old.bindings_on(c));
                keys.extend(new.bindings_on(c));
            }
            _ => {
                keys.insert(format!("{NAMESPACE_KEY}{c}"));
                keys.extend(old.bindings_on(c));
                keys.extend(new.bindings_on(c));
            }
        }
    }
    let policies: BTreeSet<&(Option<String>, String)> =
        old.policies.keys().chain(new.policies.keys()).collect();
    for p in policies {
        let (o, n) = (old.policies.get(p), new.policies.get(p));
        if o == n {
            continue;
        }
        for spec in o.into_iter().chain(n) {
            keys.extend(new.bindings_selected_by(p.0.as_deref(), spec));
            keys.extend(old.bindings_selected_by(p.0.as_deref(), spec));
        }
    }
    keys
}

impl Index {
    /// The index without the template manifest hashes, which are a cache
    /// for change detection: a template seen before its binding is hashed
    /// by a fresh listing but unknown (None) to an index fed by events,
    /// and an unknown hash only makes the next template event requeue.
    pub fn without_template_hashes(&self) -> Index {
        let mut i = self.clone();
        for (h, _) in i.templates.values_mut() {
            *h = None;
        }
        i
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn binding(template: &str, clusters: &[&str], hash: u64) -> BindingEntry {
        BindingEntry {
            hash,
            template_key: Some(template.into()),
            api_version: "apps/v1".into(),
            kind: "Deployment".into(),
            namespace: Some("default".into()),
            clusters: clusters.iter().map(|c| c.to_string()).collect(),
        }
    }

    fn work(binding: &str, ns: &str, hash: u64) -> WorkEntry {
        WorkEntry {
            binding: binding.into(),
            namespace: ns.into(),
            hash,
        }
    }

    #[test]
    fn bindings_follow_templates_and_clusters() {
        let mut i = Index::default();
        assert!(i.put_binding("b1", binding("t1", &["a", "b"], 1)));
        assert!(
            !i.put_binding("b1", binding("t1", &["a", "b"], 1)),
            "same spec"
        );
        assert!(i.put_binding("b2", binding("t1", &["b"], 2)));
        assert_eq!(i.put_template("t1", 10), ["b1", "b2"], "first sighting");
        assert!(i.put_template("t1", 10).is_empty(), "unchanged template");
        assert_eq!(i.put_template("t1", 11), ["b1", "b2"]);
        assert!(i.put_template("other", 1).is_empty(), "unused template");
        assert_eq!(i.bindings_on("b"), ["b1", "b2"]);
        assert_eq!(i.bindings_on("a"), ["b1"]);
        // Moving to another template unlinks the first.
        assert!(i.put_binding("b2", binding("t2", &["b"], 3)));
        assert_eq!(i.put_template("t1", 12), ["b1"]);
        i.remove_binding("b1");
        assert!(!i.templates.contains_key("t1"));
    }

    #[test]
    fn works_are_counted_per_binding_and_namespace() {
        let mut i = Index::default();
        assert!(i.put_work("w1", work("b1", "hami-es-a", 1)));
        assert!(i.put_work("w2", work("b1", "hami-es-b", 1)));
        assert!(!i.put_work("w2", work("b1", "hami-es-b", 1)));
        assert!(
            i.put_work("w2", work("b1", "hami-es-b", 2)),
            "content changed"
        );
        assert_eq!(i.works_by_binding["b1"].len(), 2);
        assert_eq!(i.works_per_namespace["hami-es-b"], 1, "replaced, not added");
        i.remove_work("w1");
        i.remove_work("w2");
        assert!(i.works_by_binding.is_empty() && i.works_per_namespace.is_empty());
    }

    #[test]
    fn policies_select_by_kind_and_namespace() {
        let mut i = Index::default();
        i.put_binding("default/dep", binding("t1", &["a"], 1));
        let mut job = binding("t2", &["a"], 2);
        job.kind = "Job".into();
        job.api_version = "batch/v1".into();
        i.put_binding("default/job", job);
        let mut other_ns = binding("t3", &["a"], 3);
        other_ns.namespace = Some("prod".into());
        i.put_binding("prod/dep", other_ns);
        let spec = |v| serde_json::from_value::<OverrideSpec>(v).unwrap();
        let deps =
            spec(json!({"resourceSelectors": [{"apiVersion": "apps/v1", "kind": "Deployment"}]}));
        assert_eq!(
            i.bindings_selected_by(None, &deps),
            ["default/dep", "prod/dep"]
        );
        assert_eq!(
            i.bindings_selected_by(Some("default"), &deps),
            ["default/dep"]
        );
        assert_eq!(
            i.bindings_selected_by(Some("default"), &spec(json!({}))),
            ["default/dep", "default/job"]
        );
    }

    #[test]
    fn targeting_view_keeps_only_what_rules_match() {
        let mut v = ClusterView::new("a");
        v.labels.insert("region".into(), "eu".into());
        v.ready = false;
        let mut w = v.clone();
        w.ready = true;
        assert_eq!(targeting_view(v), targeting_view(w));
    }
}
