//! Status aggregation: what members report on Works flows into the binding's
//! `status.aggregatedStatus` (with a `FullyApplied` condition), then into
//! the template's status (Deployment, StatefulSet, ReplicaSet, DaemonSet,
//! Job: summed over clusters, see [`aggregate`]), so `kubectl get deploy` on
//! the control plane shows the federated truth.
//!
//! State: per Work, the [`aggregate::WorkReport`] (cluster, Applied
//! condition, the manifest's member status, health) and per binding a hash
//! of its target list (eviction tasks included), fed by store watches over Works and both binding
//! kinds. A report that changes, a Work that goes, or a binding whose
//! targets change queues the binding. A reconcile reads the binding and the
//! template and writes each only when its status changes (status only: the
//! spec is written back as read, so the generation stays).
//!
//! While a graceful eviction task stands, the cluster being left keeps an
//! item in `aggregatedStatus` and its copies count in the template's status
//! (they still serve); `FullyApplied` and `observedGeneration` are about the
//! targets only.
//!
//! `observedGeneration` of the template is its generation once every target
//! cluster applied a Work built from that generation (the Work's
//! `Applied` condition names the Work's current generation); until then it
//! keeps its previous value.

pub mod aggregate;
#[cfg(test)]
mod relist_tests;

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use hami_api::binding::ResourceBindingSpec;
use hami_api::common::{WORK_GROUP, WORK_VERSION};
use hami_apiserver::ResourceKind;
use hami_apiserver::keys::{kind_prefix, object_key, parse_key};
use hami_apiserver::meta::now_rfc3339;
use hami_store::KeyValue;
use parking_lot::RwLock;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use serde_json::{Value, json};
use tokio::sync::watch;

use super::binding::works::{BindingRef, fnv1a};
use super::feed::{self, Change};
use super::objects::{ObjectError, Objects, spec_of};
use super::queue::WorkQueue;
use super::runner::{self, Reconciler, ResultLabel};
use super::tracker::Tracker;
use aggregate::{
    WorkReport, aggregated_items, all_observed, binding_status, evicting_items, template_status,
};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TargetLabel {
    target: &'static str,
}

/// Status aggregation metrics (prefix `hami_status_`).
#[derive(Clone)]
pub struct StatusMetrics {
    reconciles: Family<ResultLabel, Counter>,
    writes: Family<TargetLabel, Counter>,
    bad_objects: Counter,
}

impl StatusMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self {
            reconciles: Family::default(),
            writes: Family::default(),
            bad_objects: Counter::default(),
        };
        let sub = registry.sub_registry_with_prefix("hami_status");
        sub.register(
            "reconciles",
            "Binding status reconciles by result (changed, unchanged, error)",
            m.reconciles.clone(),
        );
        sub.register(
            "writes",
            "Status writes by target (binding, template)",
            m.writes.clone(),
        );
        sub.register(
            "bad_objects",
            "Works or bindings skipped because they could not be read",
            m.bad_objects.clone(),
        );
        m
    }

    fn write(&self, target: &'static str) {
        self.writes.get_or_create(&TargetLabel { target }).inc();
    }
}

#[derive(Clone, Debug, Default, PartialEq)]
struct Index {
    /// Work key -> (binding key, report).
    works: HashMap<String, (String, WorkReport)>,
    by_binding: HashMap<String, BTreeSet<String>>,
    /// Binding key -> hash of its target clusters, eviction tasks and template reference.
    bindings: HashMap<String, u64>,
}

impl Index {
    fn remove_work(&mut self, key: &str) -> Option<String> {
        let (binding, _) = self.works.remove(key)?;
        if let Some(set) = self.by_binding.get_mut(&binding) {
            set.remove(key);
            if set.is_empty() {
                self.by_binding.remove(&binding);
            }
        }
        Some(binding)
    }

    fn reports(&self, binding: &str) -> Vec<WorkReport> {
        self.by_binding
            .get(binding)
            .into_iter()
            .flatten()
            .filter_map(|k| self.works.get(k).map(|(_, r)| r.clone()))
            .collect()
    }
}

struct Shared {
    objects: Objects,
    rb: Arc<ResourceKind>,
    crb: Arc<ResourceKind>,
    index: RwLock<Index>,
    queue: WorkQueue,
    metrics: StatusMetrics,
    tracker: Tracker,
}

/// Starts status aggregation; it runs until `stop` turns true.
pub fn spawn(
    objects: Objects,
    metrics: StatusMetrics,
    tracker: Tracker,
    stop: watch::Receiver<bool>,
) -> Result<tokio::task::JoinHandle<()>, ObjectError> {
    let (rb, crb) = objects.binding_kinds()?;
    let work = objects.kind(&format!("{WORK_GROUP}/{WORK_VERSION}"), "Work")?;
    let shared = Arc::new(Shared {
        objects,
        rb: rb.clone(),
        crb: crb.clone(),
        index: RwLock::default(),
        queue: WorkQueue::new(),
        metrics,
        tracker,
    });
    let store = shared.objects.store();
    feed::spawn(
        store,
        [kind_prefix(&work)],
        &shared,
        Shared::on_work,
        &shared.tracker,
        &stop,
    );
    feed::spawn(
        store,
        [kind_prefix(&rb), kind_prefix(&crb)],
        &shared,
        Shared::on_binding,
        &shared.tracker,
        &stop,
    );
    Ok(runner::spawn(shared, stop))
}

impl Reconciler for Shared {
    const NAME: &'static str = "status";

    fn queue(&self) -> &WorkQueue {
        &self.queue
    }

    fn tracker(&self) -> &Tracker {
        &self.tracker
    }

    async fn reconcile(&self, key: &str) -> Result<&'static str, ObjectError> {
        self.reconcile_binding(key).await
    }

    fn count(&self, outcome: &'static str) {
        self.metrics
            .reconciles
            .get_or_create(&ResultLabel { result: outcome })
            .inc();
    }
}

impl Shared {
    fn binding_key(&self, b: &BindingRef) -> String {
        match &b.namespace {
            Some(ns) => object_key(&self.rb, Some(ns), &b.name),
            None => object_key(&self.crb, None, &b.name),
        }
    }

    /// Indexes one Work; the binding to requeue when its report changed.
    fn put_work(&self, index: &mut Index, kv: &KeyValue) -> Option<String> {
        let parsed = serde_json::from_slice::<Value>(&kv.value)
            .ok()
            .and_then(|w| WorkReport::from_work(&w));
        let Some((binding, report)) = parsed else {
            // Not a Work of a binding (or unreadable): forget it.
            return index.remove_work(&kv.key);
        };
        let binding = self.binding_key(&binding);
        if index.works.get(&kv.key) == Some(&(binding.clone(), report.clone())) {
            return None;
        }
        let previous = index.remove_work(&kv.key);
        index
            .by_binding
            .entry(binding.clone())
            .or_default()
            .insert(kv.key.clone());
        index
            .works
            .insert(kv.key.clone(), (binding.clone(), report));
        if let Some(p) = previous.filter(|p| *p != binding) {
            self.queue.add(p);
        }
        Some(binding)
    }

    fn on_work(&self, change: Change) {
        let mut queue = BTreeSet::new();
        {
            let mut index = self.index.write();
            match change {
                Change::Reset(items) => {
                    let old: BTreeSet<String> = index.by_binding.keys().cloned().collect();
                    index.works.clear();
                    index.by_binding.clear();
                    queue.extend(old);
                    for kv in &items {
                        queue.extend(self.put_work(&mut index, kv));
                    }
                }
                Change::Apply(kv) => queue.extend(self.put_work(&mut index, &kv)),
                Change::Delete(kv) => queue.extend(index.remove_work(&kv.key)),
            }
        }
        for k in queue {
            self.queue.add(k);
        }
    }

    fn on_binding(&self, change: Change) {
        let hash_of = |kv: &KeyValue| -> Option<u64> {
            let object: Value = serde_json::from_slice(&kv.value).ok()?;
            let spec = object.get("spec")?;
            Some(fnv1a(
                &serde_json::to_vec(&json!([
                    spec.get("clusters"),
                    spec.get("resource"),
                    spec.get("gracefulEvictionTasks")
                ]))
                .unwrap_or_default(),
            ))
        };
        let mut queue = Vec::new();
        {
            let mut index = self.index.write();
            let mut put = |index: &mut Index, kv: &KeyValue| match hash_of(kv) {
                Some(h) => {
                    if index.bindings.insert(kv.key.clone(), h) != Some(h) {
                        queue.push(kv.key.clone());
                    }
                }
                None => {
                    self.metrics.bad_objects.inc();
                    tracing::warn!(key = kv.key, "status: unreadable binding skipped");
                }
            };
            match change {
                Change::Reset(items) => {
                    index.bindings.clear();
                    for kv in &items {
                        put(&mut index, kv);
                    }
                }
                Change::Apply(kv) => put(&mut index, &kv),
                Change::Delete(kv) => {
                    index.bindings.remove(&kv.key);
                }
            }
        }
        for k in queue {
            self.queue.add(k);
        }
    }

    async fn reconcile_binding(&self, key: &str) -> Result<&'static str, ObjectError> {
        let (kind, ns, name) = if let Some((ns, name)) = parse_key(&self.rb, key) {
            (&self.rb, ns, name)
        } else if let Some((_, name)) = parse_key(&self.crb, key) {
            (&self.crb, None, name)
        } else {
            return Ok("unchanged");
        };
        let Some(binding) = self.objects.get(kind, ns, name)? else {
            return Ok("unchanged");
        };
        let spec: ResourceBindingSpec = match spec_of(&binding.object) {
            Some(spec) => spec,
            None => {
                self.metrics.bad_objects.inc();
                return Err(ObjectError::Incomplete(
                    "the binding's spec is unreadable".into(),
                ));
            }
        };
        let reports = self.index.read().reports(key);
        let items = aggregated_items(&spec.clusters, &reports);
        let evicting: Vec<String> = spec
            .graceful_eviction_tasks
            .iter()
            .map(|t| t.from_cluster.clone())
            .collect();
        let leaving = evicting_items(&spec.clusters, &evicting, &reports);
        let mut changed = false;

        let status = binding_status(
            binding.object.get("status"),
            &items,
            &leaving,
            &now_rfc3339(),
        );
        if binding.object.get("status").unwrap_or(&json!({})) != &status {
            let mut new = binding.object.clone();
            new["status"] = status;
            self.objects
                .write(kind, ns, name, &binding, new, |_| {})
                .await?;
            self.metrics.write("binding");
            changed = true;
        }

        let r = &spec.resource;
        let Some(tkind) = self
            .objects
            .registry()
            .by_gvk(&r.api_version, &r.kind)
            .cloned()
        else {
            return Ok(if changed { "changed" } else { "unchanged" });
        };
        let tns = r.namespace.as_deref();
        let Some(template) = self.objects.get(&tkind, tns, &r.name)? else {
            return Ok(if changed { "changed" } else { "unchanged" });
        };
        let generation = template
            .object
            .pointer("/metadata/generation")
            .and_then(Value::as_i64)
            .unwrap_or(0);
        let observed = all_observed(&spec.clusters, &reports, generation).then_some(generation);
        let current = template.object.get("status");
        // The old copies of clusters being left serve until their task
        // ends: they count, so the template does not under-report a move.
        let serving: Vec<_> = items.iter().chain(&leaving).cloned().collect();
        if let Some(status) = template_status(&tkind.kind, &serving, observed, current)
            && current.unwrap_or(&json!({})) != &status
        {
            let mut new = template.object.clone();
            new["status"] = status;
            self.objects
                .write(&tkind, tns, &r.name, &template, new, |_| {})
                .await?;
            self.metrics.write("template");
            changed = true;
        }
        Ok(if changed { "changed" } else { "unchanged" })
    }
}
