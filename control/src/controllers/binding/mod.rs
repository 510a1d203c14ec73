//! The binding controller: each scheduled binding becomes one Work per
//! target cluster in `hami-es-<cluster>`, with that cluster's replicas and
//! the override rules that target it ([`works`], pure). A cluster dropped
//! from `spec.clusters` loses its Work once no graceful eviction task names
//! it (until then the Work stays as it was); a deleted binding (the detector
//! deletes it with its template) loses all of them, found by the Work's
//! binding annotation in the index.
//!
//! Execution namespaces: `hami-es-<cluster>` is created when the Cluster
//! appears. When the Cluster goes, its namespace stays while it still holds
//! Works (a cluster that rejoins finds them; bindings drop the cluster when
//! rescheduled, and their Works go then) and is deleted once empty.
//!
//! State: [`index::Index`], fed by one store watch over `/registry/`
//! (bindings, Works, Clusters, override policies, and the templates bindings
//! name). It requeues a binding when its spec changes, its template's
//! manifest changes, a Work of it changes or goes, a policy that could
//! select it changes, a cluster it targets changes its labels, or the
//! scheduler's verdict on it lands (`status.schedulerObservedGeneration`,
//! the `Scheduled` condition's status). A reconcile reads the binding and
//! template, decides with the pure code, and writes only the Works that
//! differ (one write each).
//!
//! Admission ([`gate`]): a Work carries a new shape (per-replica request,
//! a Duplicated replica count) or a new cluster gets its first Work only
//! once the scheduler, which holds the quota accountant, placed the
//! binding's current generation and the detector has caught up with the
//! template. Until then only writes that raise nothing go out (an image, a
//! scale-down); held Works keep what they run.

pub mod gate;
pub mod index;
pub mod works;

#[cfg(test)]
mod relist_tests;

use std::collections::BTreeSet;
use std::sync::Arc;

use hami_api::binding::ResourceBindingSpec;
use hami_api::cluster::Cluster;
use hami_api::common::{
    CLUSTER_GROUP, CLUSTER_VERSION, POLICY_GROUP, POLICY_VERSION, WORK_GROUP, WORK_VERSION,
    cluster_of_execution_namespace, execution_namespace,
};
use hami_api::override_policy::OverrideSpec;
use hami_api::propagation::ReplicaSchedulingType;
use hami_apiserver::keys::{kind_prefix, object_key, parse_key};
use hami_apiserver::{ApiError, ResourceKind};
use hami_overrides::{PolicyRef, Scope, applicable_policies};
use hami_placement::ClusterView;
use hami_store::KeyValue;
use parking_lot::RwLock;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use serde_json::{Value, json};
use tokio::sync::watch;

use super::feed::{self, Change};
use super::objects::{ObjectError, Objects, Precondition, spec_of};
use super::queue::WorkQueue;
use super::runner::{self, Reconciler, ResultLabel};
use super::scheduler::status::scheduled_condition;
use super::tracker::Tracker;
use gate::{Admission, manifests, may_write};
use index::{BindingEntry, Index, NAMESPACE_KEY, WorkEntry, targeting_view};
use works::{BindingInput, BindingRef, desired_works, fnv1a, strip_server_fields, updated_work};

/// Label on an execution namespace: the cluster it serves.
pub const LABEL_NAMESPACE_CLUSTER: &str = "cluster.hami.io/name";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OpLabel {
    op: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HoldLabel {
    reason: &'static str,
}

/// Why a delete the index asked for was not done (the store said
/// otherwise): the fixed set of `hami_binding_deletes_refused_total`.
const REFUSED: [&str; 4] = [
    "cluster_exists",
    "works_left",
    "other_owner",
    "precondition",
];

/// Binding controller metrics (prefix `hami_binding_`).
#[derive(Clone)]
pub struct BindingMetrics {
    reconciles: Family<ResultLabel, Counter>,
    work_writes: Family<OpLabel, Counter>,
    works_held: Family<HoldLabel, Counter>,
    deletes_refused: Family<HoldLabel, Counter>,
    override_errors: Counter,
    bad_objects: Counter,
}

impl BindingMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self {
            reconciles: Family::default(),
            work_writes: Family::default(),
            works_held: Family::default(),
            deletes_refused: Family::default(),
            override_errors: Counter::default(),
            bad_objects: Counter::default(),
        };
        let sub = registry.sub_registry_with_prefix("hami_binding");
        sub.register(
            "reconciles",
            "Binding and execution namespace reconciles by result (changed, unchanged, error)",
            m.reconciles.clone(),
        );
        sub.register(
            "work_writes",
            "Work and execution namespace writes by operation (create, update, delete, namespace_create, namespace_delete)",
            m.work_writes.clone(),
        );
        sub.register(
            "works_held",
            "Work writes held back because the scheduler has not admitted the template's shape, by reason (not_decided, not_scheduled, detector_behind)",
            m.works_held.clone(),
        );
        for reason in REFUSED {
            drop(m.deletes_refused.get_or_create(&HoldLabel { reason }));
        }
        sub.register(
            "deletes_refused",
            "Deletes of Works or execution namespaces the index asked for and the store refuted, by reason (cluster_exists, works_left, other_owner, precondition)",
            m.deletes_refused.clone(),
        );
        sub.register(
            "override_errors",
            "Works not written because an override rule failed for their cluster",
            m.override_errors.clone(),
        );
        sub.register(
            "bad_objects",
            "Objects skipped because they could not be read",
            m.bad_objects.clone(),
        );
        m
    }

    fn write(&self, op: &'static str) {
        self.work_writes.get_or_create(&OpLabel { op }).inc();
    }

    fn confirm_refused(&self, reason: &'static str) {
        self.deletes_refused
            .get_or_create(&HoldLabel { reason })
            .inc();
    }
}

struct Kinds {
    rb: Arc<ResourceKind>,
    crb: Arc<ResourceKind>,
    work: Arc<ResourceKind>,
    cluster: Arc<ResourceKind>,
    op: Arc<ResourceKind>,
    cop: Arc<ResourceKind>,
    namespace: Arc<ResourceKind>,
}

struct Shared {
    objects: Objects,
    kinds: Kinds,
    index: RwLock<Index>,
    queue: WorkQueue,
    metrics: BindingMetrics,
    tracker: Tracker,
}

/// Starts the binding controller; it runs until `stop` turns true.
pub fn spawn(
    objects: Objects,
    metrics: BindingMetrics,
    tracker: Tracker,
    stop: watch::Receiver<bool>,
) -> Result<tokio::task::JoinHandle<()>, ObjectError> {
    let shared = Arc::new(Shared::new(objects, metrics, tracker)?);
    feed::spawn(
        shared.objects.store(),
        ["/registry/".to_string()],
        &shared,
        Shared::on_change,
        &shared.tracker,
        &stop,
    );
    Ok(runner::spawn(shared, stop))
}

impl Shared {
    fn new(
        objects: Objects,
        metrics: BindingMetrics,
        tracker: Tracker,
    ) -> Result<Self, ObjectError> {
        let work_gv = format!("{WORK_GROUP}/{WORK_VERSION}");
        let policy_gv = format!("{POLICY_GROUP}/{POLICY_VERSION}");
        let (rb, crb) = objects.binding_kinds()?;
        let kinds = Kinds {
            rb,
            crb,
            work: objects.kind(&work_gv, "Work")?,
            cluster: objects.kind(&format!("{CLUSTER_GROUP}/{CLUSTER_VERSION}"), "Cluster")?,
            op: objects.kind(&policy_gv, "OverridePolicy")?,
            cop: objects.kind(&policy_gv, "ClusterOverridePolicy")?,
            namespace: objects.kind("v1", "Namespace")?,
        };
        Ok(Shared {
            objects,
            kinds,
            index: RwLock::new(Index::default()),
            queue: WorkQueue::new(),
            metrics,
            tracker,
        })
    }
}

impl Reconciler for Shared {
    const NAME: &'static str = "binding controller";

    fn queue(&self) -> &WorkQueue {
        &self.queue
    }

    fn tracker(&self) -> &Tracker {
        &self.tracker
    }

    async fn reconcile(&self, key: &str) -> Result<&'static str, ObjectError> {
        match key.strip_prefix(NAMESPACE_KEY) {
            Some(cluster) => self.reconcile_namespace(cluster).await,
            None => self.reconcile_binding(key).await,
        }
    }

    fn count(&self, outcome: &'static str) {
        self.metrics
            .reconciles
            .get_or_create(&ResultLabel { result: outcome })
            .inc();
    }
}

/// What the store says of an execution namespace the index calls unused.
enum Unused {
    Yes,
    ClusterExists,
    HoldsWorks,
}

/// What a store key names.
enum Class<'k> {
    Binding,
    Work,
    Cluster(&'k str),
    Policy {
        namespace: Option<&'k str>,
        name: &'k str,
    },
    Other,
}

fn parse_json(kv: &KeyValue) -> Option<Value> {
    serde_json::from_slice(&kv.value).ok()
}

fn hash_json(v: &Value) -> u64 {
    fnv1a(&serde_json::to_vec(v).unwrap_or_default())
}

impl Shared {
    fn classify<'k>(&self, key: &'k str) -> Class<'k> {
        let k = &self.kinds;
        if parse_key(&k.rb, key).is_some() || parse_key(&k.crb, key).is_some() {
            return Class::Binding;
        }
        if parse_key(&k.work, key).is_some() {
            return Class::Work;
        }
        if let Some((_, name)) = parse_key(&k.cluster, key) {
            return Class::Cluster(name);
        }
        for kind in [&k.op, &k.cop] {
            if let Some((namespace, name)) = parse_key(kind, key) {
                return Class::Policy { namespace, name };
            }
        }
        Class::Other
    }

    /// The store key of a binding.
    fn binding_key(&self, b: &BindingRef) -> String {
        match &b.namespace {
            Some(ns) => object_key(&self.kinds.rb, Some(ns), &b.name),
            None => object_key(&self.kinds.crb, None, &b.name),
        }
    }

    fn binding_entry(&self, object: &Value) -> Option<BindingEntry> {
        let spec: ResourceBindingSpec = spec_of(object)?;
        let r = &spec.resource;
        let template_key = self
            .objects
            .registry()
            .by_gvk(&r.api_version, &r.kind)
            .map(|k| object_key(k, r.namespace.as_deref(), &r.name));
        let deleting = object.pointer("/metadata/deletionTimestamp").is_some();
        // The scheduler's verdict too: a binding held back by the gate goes
        // out when its generation is decided and placed.
        let verdict = json!([
            object.pointer("/status/schedulerObservedGeneration"),
            scheduled_condition(object),
        ]);
        Some(BindingEntry {
            hash: hash_json(&json!([object.get("spec"), deleting, verdict])),
            template_key,
            api_version: r.api_version.clone(),
            kind: r.kind.clone(),
            namespace: r.namespace.clone(),
            clusters: spec.clusters.iter().map(|t| t.name.clone()).collect(),
        })
    }

    fn work_entry(&self, object: &Value) -> Option<WorkEntry> {
        let binding = BindingRef::of_work(object)?;
        let meta = object.get("metadata")?;
        Some(WorkEntry {
            binding: self.binding_key(&binding),
            namespace: meta.get("namespace")?.as_str()?.to_string(),
            hash: hash_json(&json!([
                object.get("spec"),
                meta.get("labels"),
                meta.get("annotations"),
                meta.get("deletionTimestamp").is_some(),
            ])),
        })
    }

    fn cluster_view(kv: &KeyValue) -> Option<ClusterView> {
        let cluster: Cluster = serde_json::from_slice(&kv.value).ok()?;
        Some(targeting_view(ClusterView::from_cluster(&cluster)))
    }

    fn policy_spec(object: &Value) -> Option<OverrideSpec> {
        spec_of(object)
    }

    fn on_change(&self, change: Change) {
        let mut queue: BTreeSet<String> = BTreeSet::new();
        match change {
            Change::Reset(items) => self.reset(items, &mut queue),
            Change::Apply(kv) => self.apply(&mut self.index.write(), kv, &mut queue),
            Change::Delete(kv) => self.delete(&mut self.index.write(), kv, &mut queue),
        }
        for k in queue {
            self.queue.add(k);
        }
    }

    /// The index of a full listing, built from nothing (no lock held).
    fn build(&self, items: Vec<KeyValue>) -> Index {
        let mut fresh = Index::default();
        let mut ignored = BTreeSet::new();
        // Bindings first, so that templates listed before them are known.
        let (bindings, rest): (Vec<KeyValue>, Vec<KeyValue>) = items
            .into_iter()
            .partition(|kv| matches!(self.classify(&kv.key), Class::Binding));
        for kv in bindings.into_iter().chain(rest) {
            self.apply(&mut fresh, kv, &mut ignored);
        }
        fresh
    }

    /// A relist: the new index is built beside the old one and swapped in
    /// whole; what differs between them is queued (reconciles meanwhile
    /// read the old index, never a partial one).
    fn reset(&self, items: Vec<KeyValue>, queue: &mut BTreeSet<String>) {
        let ns_prefix = kind_prefix(&self.kinds.namespace);
        let namespaces: Vec<String> = items
            .iter()
            .filter_map(|kv| kv.key.strip_prefix(&ns_prefix))
            .filter_map(cluster_of_execution_namespace)
            .map(|c| format!("{NAMESPACE_KEY}{c}"))
            .collect();
        let fresh = self.build(items);
        let old = feed::swap_in(&self.index, fresh);
        let index = self.index.read();
        queue.extend(index::relisted(&old, &index));
        queue.extend(namespaces);
    }

    fn apply(&self, index: &mut Index, kv: KeyValue, queue: &mut BTreeSet<String>) {
        let class = self.classify(&kv.key);
        if let Some(cluster) = kv
            .key
            .strip_prefix(&kind_prefix(&self.kinds.namespace))
            .and_then(cluster_of_execution_namespace)
        {
            // An execution namespace changed (e.g. it is being deleted).
            queue.insert(format!("{NAMESPACE_KEY}{cluster}"));
            return;
        }
        if matches!(class, Class::Other) && !index.templates.contains_key(&kv.key) {
            return;
        }
        let Some(object) = parse_json(&kv) else {
            self.metrics.bad_objects.inc();
            tracing::warn!(
                key = kv.key,
                "binding controller: unreadable object skipped"
            );
            return;
        };
        match class {
            Class::Binding => match self.binding_entry(&object) {
                Some(e) => {
                    if index.put_binding(&kv.key, e) {
                        queue.insert(kv.key);
                    }
                }
                None => {
                    self.metrics.bad_objects.inc();
                    tracing::warn!(
                        key = kv.key,
                        "binding controller: unreadable binding skipped"
                    );
                }
            },
            Class::Work => match self.work_entry(&object) {
                Some(e) => {
                    let binding = e.binding.clone();
                    if index.put_work(&kv.key, e) {
                        queue.insert(binding);
                    }
                }
                None => {
                    index.remove_work(&kv.key);
                }
            },
            Class::Cluster(name) => match Self::cluster_view(&kv) {
                Some(view) => {
                    let old = index.clusters.insert(name.to_string(), view.clone());
                    if old.is_none() {
                        queue.insert(format!("{NAMESPACE_KEY}{name}"));
                    }
                    if old.as_ref() != Some(&view) {
                        queue.extend(index.bindings_on(name));
                    }
                }
                None => {
                    self.metrics.bad_objects.inc();
                    tracing::warn!(
                        key = kv.key,
                        "binding controller: unreadable Cluster skipped"
                    );
                }
            },
            Class::Policy { namespace, name } => {
                let Some(spec) = Self::policy_spec(&object) else {
                    self.metrics.bad_objects.inc();
                    tracing::warn!(
                        key = kv.key,
                        "binding controller: unreadable policy skipped"
                    );
                    return;
                };
                let pkey = (namespace.map(str::to_string), name.to_string());
                let old = index.policies.insert(pkey, spec.clone());
                if old.as_ref() != Some(&spec) {
                    if let Some(old) = &old {
                        queue.extend(index.bindings_selected_by(namespace, old));
                    }
                    queue.extend(index.bindings_selected_by(namespace, &spec));
                    index.refresh_policies();
                }
            }
            Class::Other => {
                let hash = hash_json(&strip_server_fields(&object));
                queue.extend(index.put_template(&kv.key, hash));
            }
        }
    }

    fn delete(&self, index: &mut Index, kv: KeyValue, queue: &mut BTreeSet<String>) {
        match self.classify(&kv.key) {
            Class::Binding => {
                index.remove_binding(&kv.key);
                if index.works_by_binding.contains_key(&kv.key) {
                    queue.insert(kv.key);
                }
            }
            Class::Work => {
                if let Some(old) = index.remove_work(&kv.key) {
                    if let Some(cluster) = cluster_of_execution_namespace(&old.namespace)
                        && !index.clusters.contains_key(cluster)
                    {
                        queue.insert(format!("{NAMESPACE_KEY}{cluster}"));
                    }
                    queue.insert(old.binding);
                }
            }
            Class::Cluster(name) => {
                index.clusters.remove(name);
                queue.insert(format!("{NAMESPACE_KEY}{name}"));
            }
            Class::Policy { namespace, name } => {
                let pkey = (namespace.map(str::to_string), name.to_string());
                if let Some(old) = index.policies.remove(&pkey) {
                    queue.extend(index.bindings_selected_by(namespace, &old));
                    index.refresh_policies();
                }
            }
            Class::Other => {}
        }
    }

    /// `hami-es-<cluster>` exists while the Cluster does; once it is gone,
    /// the namespace goes when no Work is left in it. Deleting it is
    /// confirmed against the store, whatever the index says: the Cluster
    /// is absent and no Work is left in the namespace now (a revision at
    /// least the index's), and the delete is pinned to the namespace as
    /// read (uid, resourceVersion).
    async fn reconcile_namespace(&self, cluster: &str) -> Result<&'static str, ObjectError> {
        let ns = execution_namespace(cluster);
        let kind = &self.kinds.namespace;
        let (known, works) = {
            let index = self.index.read();
            (
                index.clusters.contains_key(cluster),
                index.works_per_namespace.get(&ns).copied().unwrap_or(0),
            )
        };
        let existing = self.objects.get(kind, None, &ns)?;
        if known {
            if existing.is_some() {
                return Ok("unchanged");
            }
            let object = json!({
                "apiVersion": "v1",
                "kind": "Namespace",
                "metadata": {"name": ns, "labels": {LABEL_NAMESPACE_CLUSTER: cluster}},
            });
            return match self.objects.create(kind, None, object).await {
                Ok(_) => {
                    self.metrics.write("namespace_create");
                    Ok("changed")
                }
                Err(ObjectError::Api(e)) if matches!(*e, ApiError::AlreadyExists { .. }) => {
                    Ok("unchanged")
                }
                Err(e) => Err(e),
            };
        }
        let Some(existing) = existing else {
            return Ok("unchanged");
        };
        let ours = existing
            .object
            .pointer("/metadata/labels")
            .and_then(|l| l.get(LABEL_NAMESPACE_CLUSTER))
            .and_then(Value::as_str)
            == Some(cluster);
        let deleting = existing
            .object
            .pointer("/metadata/deletionTimestamp")
            .is_some();
        if !ours || deleting || works > 0 {
            return Ok("unchanged");
        }
        match self.namespace_unused(cluster, &ns)? {
            Unused::Yes => {}
            Unused::ClusterExists => {
                // The index is behind the store: the Cluster's event comes.
                self.metrics.confirm_refused("cluster_exists");
                return Ok("unchanged");
            }
            Unused::HoldsWorks => {
                // Their deletion events requeue the namespace.
                self.metrics.confirm_refused("works_left");
                return Ok("unchanged");
            }
        }
        self.delete_pinned(kind, None, &ns, &existing).await?;
        self.metrics.write("namespace_delete");
        Ok("changed")
    }

    /// Deletes `current` only as it was read (uid, resourceVersion); a
    /// precondition that fails is counted and retried.
    async fn delete_pinned(
        &self,
        kind: &ResourceKind,
        ns: Option<&str>,
        name: &str,
        current: &hami_apiserver::objects::Stored,
    ) -> Result<(), ObjectError> {
        let result = self
            .objects
            .delete_pinned(kind, ns, name, &Precondition::of(current))
            .await;
        if matches!(result, Err(ObjectError::Conflict)) {
            self.metrics.confirm_refused("precondition");
        }
        result
    }

    /// Whether the store (not the index) says `hami-es-<cluster>` is unused:
    /// no Cluster of that name, no Work in it.
    fn namespace_unused(&self, cluster: &str, ns: &str) -> Result<Unused, ObjectError> {
        if self
            .objects
            .get(&self.kinds.cluster, None, cluster)?
            .is_some()
        {
            return Ok(Unused::ClusterExists);
        }
        let prefix = hami_apiserver::keys::list_prefix(&self.kinds.work, Some(ns));
        let works = self
            .objects
            .store()
            .list(&prefix, None, 1)
            .map_err(|e| ObjectError::Incomplete(format!("listing Works in {ns}: {e}")))?;
        Ok(if works.items.is_empty() {
            Unused::Yes
        } else {
            Unused::HoldsWorks
        })
    }

    async fn reconcile_binding(&self, key: &str) -> Result<&'static str, ObjectError> {
        let (kind, ns, name) = if let Some((ns, name)) = parse_key(&self.kinds.rb, key) {
            (&self.kinds.rb, ns, name)
        } else if let Some((_, name)) = parse_key(&self.kinds.crb, key) {
            (&self.kinds.crb, None, name)
        } else {
            return Ok("unchanged");
        };
        let existing: Vec<String> = self
            .index
            .read()
            .works_by_binding
            .get(key)
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default();
        let binding = self
            .objects
            .get(kind, ns, name)?
            .filter(|b| b.object.pointer("/metadata/deletionTimestamp").is_none());
        let Some(binding) = binding else {
            return self.delete_works(key, &existing, &BTreeSet::new()).await;
        };
        let spec: ResourceBindingSpec = match spec_of(&binding.object) {
            Some(spec) => spec,
            None => {
                self.metrics.bad_objects.inc();
                tracing::warn!(key, "binding controller: binding spec unreadable");
                return Err(ObjectError::Incomplete(
                    "the binding's spec is unreadable".into(),
                ));
            }
        };
        let r = &spec.resource;
        let Some(tkind) = self
            .objects
            .registry()
            .by_gvk(&r.api_version, &r.kind)
            .cloned()
        else {
            tracing::warn!(
                key,
                kind = r.kind,
                "binding controller: template kind not served"
            );
            return Err(ObjectError::Incomplete(format!(
                "the template's kind {}/{} is not served",
                r.api_version, r.kind
            )));
        };
        let template = self
            .objects
            .get(&tkind, r.namespace.as_deref(), &r.name)?
            .filter(|t| t.object.pointer("/metadata/deletionTimestamp").is_none());
        let Some(template) = template else {
            // The detector deletes the binding next; its Works go then.
            return Ok("unchanged");
        };
        let divided = spec
            .placement
            .as_ref()
            .and_then(|p| p.replica_scheduling.as_ref())
            .is_some_and(|rs| rs.replica_scheduling_type == ReplicaSchedulingType::Divided);
        let (policies, views) = {
            let index = self.index.read();
            let views: Vec<Option<ClusterView>> = spec
                .clusters
                .iter()
                .map(|t| index.clusters.get(&t.name).cloned())
                .collect();
            (index.policy_snapshot.clone(), views)
        };
        let refs: Vec<PolicyRef<'_>> = policies
            .iter()
            .map(|(pns, pname, pspec)| PolicyRef {
                scope: match pns {
                    Some(n) => Scope::Namespace(n),
                    None => Scope::Cluster,
                },
                name: pname,
                spec: pspec,
            })
            .collect();
        let ordered = applicable_policies(&template.object, &refs);
        let targets: Vec<_> = spec
            .clusters
            .iter()
            .zip(&views)
            .filter_map(|(t, v)| v.as_ref().map(|v| (t, v)))
            .collect();
        // A target the index does not know yet gets its Work on a retry
        // (never silently dropped; its Cluster event may also requeue it).
        let unknown: Vec<&str> = spec
            .clusters
            .iter()
            .zip(&views)
            .filter(|(_, v)| v.is_none())
            .map(|(t, _)| t.name.as_str())
            .collect();
        let bref = BindingRef {
            namespace: ns.map(str::to_string),
            name: name.to_string(),
        };
        let input = BindingInput {
            binding: &bref,
            template: &template.object,
            divided,
        };
        let admission = gate::admission(&binding.object, &spec, &template.object);
        let mut changed = false;
        let mut failed: Option<ObjectError> = None;
        for desired in desired_works(&input, &targets, &ordered) {
            let d = match desired {
                Ok(d) => d,
                Err(f) => {
                    self.metrics.override_errors.inc();
                    tracing::warn!(key, cluster = f.cluster, error = %f.error, "binding controller: overrides failed; the cluster's Work is left as it was");
                    failed = Some(ObjectError::Incomplete(format!(
                        "overrides for cluster {} failed: {}",
                        f.cluster, f.error
                    )));
                    continue;
                }
            };
            match self.put_work(&bref, d, admission).await {
                Ok(c) => changed |= c,
                Err(e) => failed = Some(e),
            }
        }
        // A cluster being left keeps its Work while its graceful eviction
        // task stands: the old replicas run until the replacements do.
        let keep: BTreeSet<String> = spec
            .clusters
            .iter()
            .map(|t| t.name.clone())
            .chain(
                spec.graceful_eviction_tasks
                    .iter()
                    .map(|t| t.from_cluster.clone()),
            )
            .collect();
        let deleted = self.delete_works(key, &existing, &keep).await?;
        if let Some(e) = failed {
            return Err(e);
        }
        if !unknown.is_empty() {
            return Err(ObjectError::Incomplete(format!(
                "target clusters not known yet: {}",
                unknown.join(", ")
            )));
        }
        Ok(if changed || deleted == "changed" {
            "changed"
        } else {
            "unchanged"
        })
    }

    /// Creates or updates one Work; true when written. Under a held
    /// `admission` only writes that raise nothing go out ([`gate`]).
    async fn put_work(
        &self,
        binding: &BindingRef,
        d: works::DesiredWork,
        admission: Admission,
    ) -> Result<bool, ObjectError> {
        let kind = &self.kinds.work;
        let Some(current) = self.objects.get(kind, Some(&d.namespace), &d.name)? else {
            if !may_write(admission, None, manifests(&d.object)) {
                self.held(binding, &d.cluster, admission);
                return Ok(false);
            }
            self.objects
                .create(kind, Some(&d.namespace), d.object)
                .await
                .map_err(|e| match e {
                    ObjectError::Api(a) if matches!(*a, ApiError::AlreadyExists { .. }) => {
                        ObjectError::Conflict
                    }
                    e => e,
                })?;
            self.metrics.write("create");
            return Ok(true);
        };
        if BindingRef::of_work(&current.object).as_ref() != Some(binding) {
            tracing::warn!(
                namespace = d.namespace,
                name = d.name,
                "binding controller: a Work of that name belongs to something else; not touched"
            );
            return Ok(false);
        }
        if current
            .object
            .pointer("/metadata/deletionTimestamp")
            .is_some()
        {
            // Still being removed from the member: write the new one after.
            return Err(ObjectError::Conflict);
        }
        let Some(new) = updated_work(&current.object, &d.object) else {
            return Ok(false);
        };
        if !may_write(
            admission,
            Some(manifests(&current.object)),
            manifests(&d.object),
        ) {
            self.held(binding, &d.cluster, admission);
            return Ok(false);
        }
        self.objects
            .write(kind, Some(&d.namespace), &d.name, &current, new, |_| {})
            .await?;
        self.metrics.write("update");
        Ok(true)
    }

    fn held(&self, binding: &BindingRef, cluster: &str, admission: Admission) {
        let Admission::Held(why) = admission else {
            return;
        };
        self.metrics
            .works_held
            .get_or_create(&HoldLabel {
                reason: why.label(),
            })
            .inc();
        tracing::debug!(
            binding = binding.annotation(),
            cluster,
            reason = why.label(),
            "binding controller: the template's shape is not admitted yet; the cluster's Work is left as it was"
        );
    }

    /// Deletes the Works (store keys, from the index) whose cluster is not
    /// in `keep` (decided on the binding as just read from the store).
    /// Each is read again and deleted only if it still belongs to
    /// `binding`, pinned to its uid and resourceVersion: a Work the index
    /// knows in an older state, or that now belongs to something else, is
    /// not deleted on that stale view.
    async fn delete_works(
        &self,
        binding: &str,
        works: &[String],
        keep: &BTreeSet<String>,
    ) -> Result<&'static str, ObjectError> {
        let mut changed = false;
        for key in works {
            let Some((Some(ns), name)) = parse_key(&self.kinds.work, key) else {
                continue;
            };
            if cluster_of_execution_namespace(ns).is_some_and(|c| keep.contains(c)) {
                continue;
            }
            let Some(current) = self.objects.get(&self.kinds.work, Some(ns), name)? else {
                continue;
            };
            let owner = BindingRef::of_work(&current.object).map(|b| self.binding_key(&b));
            if owner.as_deref() != Some(binding) {
                self.metrics.confirm_refused("other_owner");
                continue;
            }
            self.delete_pinned(&self.kinds.work, Some(ns), name, &current)
                .await?;
            self.metrics.write("delete");
            changed = true;
        }
        Ok(if changed { "changed" } else { "unchanged" })
    }
}
