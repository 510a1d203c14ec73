//! Federated quota in the control plane.
//!
//! * [`admission`]: the scheduler's gate, the single-writer accountant that
//!   admits and reserves placements within every FederatedResourceQuota of
//!   the binding's namespace (see there).
//! * This module: the quota status controller. For every
//!   FederatedResourceQuota it writes `status.overall`, `overallUsed`,
//!   `aggregatedStatus` (per cluster: hard, used as hami accounts it, and
//!   `memberUsed` as the member's own ResourceQuota reports it) and the
//!   `StaticAssignmentsKnown` condition (static assignments naming clusters
//!   that are not registered), and keeps one Work per static assignment in
//!   `hami-es-<cluster>` that carries a plain ResourceQuota ([`works`]), so
//!   the member enforces its share locally too. The Work goes when the
//!   assignment, the cluster or the quota goes.
//! * [`metrics`]: `hami_quota_hard`, `hami_quota_used` and the controller's
//!   counters.
//!
//! State: a [`QuotaBook`] fed with every binding's stored state (settled
//! only: usage is exactly the sum over the store's bindings), the
//! registered clusters, and the Works that carry member quotas with what
//! their members report; all fed by store watches. A change queues the
//! quotas it touches (a binding: the quotas of its namespace; a cluster:
//! all; a Work: its quota) with a short debounce ([`DEBOUNCE`]), so a burst
//! of scheduling decisions makes one status write and a change shows in
//! status well within a second.

pub mod admission;
pub mod metrics;
pub mod works;

#[cfg(test)]
mod relist_tests;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use hami_api::binding::ResourceBindingSpec;
use hami_api::common::{
    CLUSTER_GROUP, CLUSTER_VERSION, POLICY_GROUP, POLICY_VERSION, ResourceList, WORK_GROUP,
    WORK_VERSION, cluster_of_execution_namespace,
};
use hami_api::quota::{FederatedResourceQuotaSpec, FederatedResourceQuotaStatus};
use hami_apiserver::ResourceKind;
use hami_apiserver::keys::{kind_prefix, parse_key};
use hami_apiserver::meta::now_rfc3339;
use hami_quota::{GpuModels, QuotaBook, State, add_member_used, build_status};
use hami_store::KeyValue;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use parking_lot::RwLock;
use serde_json::Value;
use tokio::sync::watch;

use super::feed::{self, Change};
use super::objects::{ObjectError, Objects, Precondition, spec_of};
use super::queue::WorkQueue;
use super::runner::{self, Reconciler, ResultLabel};
use super::tracker::Tracker;
pub use metrics::QuotaMetrics;
use works::{DesiredWork, desired_works, member_used, quota_of_work, same_work};

/// Wait after a change before a quota's status is computed, so that a burst
/// of changes makes one write.
pub const DEBOUNCE: Duration = Duration::from_millis(100);

/// A FederatedResourceQuota by namespace and name.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct QuotaRef {
    pub namespace: String,
    pub name: String,
}

impl QuotaRef {
    /// The queue key (`namespace/name`).
    fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    fn from_key(key: &str) -> Option<Self> {
        let (namespace, name) = key.split_once('/')?;
        Some(Self {
            namespace: namespace.to_string(),
            name: name.to_string(),
        })
    }
}

/// A Work that carries a member quota.
#[derive(Clone, Debug, PartialEq)]
struct MemberWork {
    quota: QuotaRef,
    cluster: String,
    used: Option<ResourceList>,
}

#[derive(Default)]
struct Index {
    book: QuotaBook,
    /// Quota store key → quota.
    quotas: BTreeMap<String, QuotaRef>,
    clusters: BTreeMap<String, GpuModelsEntry>,
    /// Work store key → what it carries.
    works: BTreeMap<String, MemberWork>,
}

type GpuModelsEntry = Vec<hami_api::cluster::GpuSummary>;

impl Index {
    fn known(&self) -> BTreeSet<String> {
        self.clusters.keys().cloned().collect()
    }

    fn quotas_in(&self, ns: &str) -> Vec<QuotaRef> {
        self.quotas
            .values()
            .filter(|q| q.namespace == ns)
            .cloned()
            .collect()
    }

    fn models(&self) -> GpuModels {
        let mut m = GpuModels::new();
        for (name, gpus) in &self.clusters {
            m.set_cluster(name, gpus);
        }
        m
    }
}

struct Kinds {
    quota: Arc<ResourceKind>,
    rb: Arc<ResourceKind>,
    work: Arc<ResourceKind>,
    cluster: Arc<ResourceKind>,
}

struct Shared {
    objects: Objects,
    kinds: Kinds,
    index: RwLock<Index>,
    queue: WorkQueue,
    metrics: QuotaMetrics,
    tracker: Tracker,
}

/// Starts the quota status controller; it runs until `stop` turns true.
pub fn spawn(
    objects: Objects,
    metrics: QuotaMetrics,
    tracker: Tracker,
    stop: watch::Receiver<bool>,
) -> Result<tokio::task::JoinHandle<()>, ObjectError> {
    let shared = Arc::new(Shared::new(objects, metrics, tracker)?);
    let (quota, rb, work, cluster) = (
        shared.kinds.quota.clone(),
        shared.kinds.rb.clone(),
        shared.kinds.work.clone(),
        shared.kinds.cluster.clone(),
    );
    let store = shared.objects.store();
    feed::spawn(
        store,
        [kind_prefix(&cluster)],
        &shared,
        Shared::on_cluster,
        &shared.tracker,
        &stop,
    );
    feed::spawn(
        store,
        [kind_prefix(&quota)],
        &shared,
        Shared::on_quota,
        &shared.tracker,
        &stop,
    );
    feed::spawn(
        store,
        [kind_prefix(&rb)],
        &shared,
        Shared::on_binding,
        &shared.tracker,
        &stop,
    );
    feed::spawn(
        store,
        [kind_prefix(&work)],
        &shared,
        Shared::on_work,
        &shared.tracker,
        &stop,
    );
    Ok(runner::spawn(shared, stop))
}

impl Reconciler for Shared {
    const NAME: &'static str = "quota";

    fn queue(&self) -> &WorkQueue {
        &self.queue
    }

    fn tracker(&self) -> &Tracker {
        &self.tracker
    }

    async fn reconcile(&self, key: &str) -> Result<&'static str, ObjectError> {
        match QuotaRef::from_key(key) {
            Some(q) => self.reconcile_quota(&q).await,
            None => Ok("unchanged"),
        }
    }

    fn count(&self, outcome: &'static str) {
        self.metrics
            .reconciles
            .get_or_create(&ResultLabel { result: outcome })
            .inc();
    }
}

impl Shared {
    fn new(objects: Objects, metrics: QuotaMetrics, tracker: Tracker) -> Result<Self, ObjectError> {
        let quota = objects.kind(
            &format!("{POLICY_GROUP}/{POLICY_VERSION}"),
            "FederatedResourceQuota",
        )?;
        let (rb, _) = objects.binding_kinds()?;
        let work = objects.kind(&format!("{WORK_GROUP}/{WORK_VERSION}"), "Work")?;
        let cluster = objects.kind(&format!("{CLUSTER_GROUP}/{CLUSTER_VERSION}"), "Cluster")?;
        Ok(Shared {
            objects,
            kinds: Kinds {
                quota,
                rb,
                work,
                cluster,
            },
            index: RwLock::default(),
            queue: WorkQueue::new(),
            metrics,
            tracker,
        })
    }

    fn enqueue(&self, quotas: impl IntoIterator<Item = QuotaRef>) {
        for q in quotas {
            self.queue.add_after(q.key(), DEBOUNCE);
        }
    }

    fn skip(&self, kind: &str, key: &str) {
        self.metrics.bad_objects.inc();
        tracing::warn!(key, "quota: unreadable {kind} skipped");
    }

    fn on_cluster(&self, change: Change) {
        let read = |kv: &KeyValue| -> Option<(String, GpuModelsEntry)> {
            let c: hami_api::cluster::Cluster = serde_json::from_slice(&kv.value).ok()?;
            let gpus = c.status.map(|s| s.gpu_summary).unwrap_or_default();
            Some((c.metadata.name?, gpus))
        };
        let mut index = self.index.write();
        let before = index.clusters.clone();
        match change {
            Change::Reset(items) => {
                index.clusters.clear();
                for kv in &items {
                    match read(kv) {
                        Some((n, g)) => {
                            index.clusters.insert(n, g);
                        }
                        None => self.skip("Cluster", &kv.key),
                    }
                }
            }
            Change::Apply(kv) => match read(&kv) {
                Some((n, g)) => {
                    index.clusters.insert(n, g);
                }
                None => self.skip("Cluster", &kv.key),
            },
            Change::Delete(kv) => {
                if let Some((n, _)) = read(&kv) {
                    index.clusters.remove(&n);
                }
            }
        }
        if index.clusters == before {
            return;
        }
        let models = index.models();
        index.book.set_models(models);
        let all: Vec<QuotaRef> = index.quotas.values().cloned().collect();
        drop(index);
        self.enqueue(all);
    }

    fn on_quota(&self, change: Change) {
        let mut touched = Vec::new();
        {
            let mut index = self.index.write();
            let apply = |index: &mut Index, kv: &KeyValue| -> Option<QuotaRef> {
                let Some((q, spec)) = admission::read_quota(kv) else {
                    self.skip("FederatedResourceQuota", &kv.key);
                    return None;
                };
                if let Err(e) = index.book.set_quota(&q.namespace, &q.name, &spec) {
                    tracing::warn!(key = kv.key, error = %e, "quota: limits unreadable");
                }
                index.quotas.insert(kv.key.clone(), q.clone());
                Some(q)
            };
            let forget = |index: &mut Index, key: &str| -> Option<QuotaRef> {
                let q = index.quotas.remove(key)?;
                index.book.remove_quota(&q.namespace, &q.name);
                Some(q)
            };
            match change {
                Change::Reset(items) => {
                    let keep: BTreeSet<&str> = items.iter().map(|kv| kv.key.as_str()).collect();
                    let gone: Vec<String> = index
                        .quotas
                        .keys()
                        .filter(|k| !keep.contains(k.as_str()))
                        .cloned()
                        .collect();
                    for k in gone {
                        touched.extend(forget(&mut index, &k));
                    }
                    for kv in &items {
                        touched.extend(apply(&mut index, kv));
                    }
                }
                Change::Apply(kv) => touched.extend(apply(&mut index, &kv)),
                Change::Delete(kv) => touched.extend(forget(&mut index, &kv.key)),
            }
        }
        // A deleted quota's Works go at once; a changed one's status soon.
        for q in touched {
            self.queue.add(q.key());
        }
    }

    fn on_binding(&self, change: Change) {
        let mut touched: BTreeSet<String> = BTreeSet::new();
        {
            let mut index = self.index.write();
            let mut observe = |index: &mut Index, kv: &KeyValue| {
                let Some((Some(ns), _)) = parse_key(&self.kinds.rb, &kv.key) else {
                    return;
                };
                let state = serde_json::from_slice::<Value>(&kv.value)
                    .ok()
                    .and_then(|o| spec_of::<ResourceBindingSpec>(&o))
                    .and_then(|spec| State::from_spec(&spec).ok());
                match state {
                    Some(s) => {
                        index.book.observe(&kv.key, ns, kv.mod_revision, s, true);
                        touched.insert(ns.to_string());
                    }
                    None => self.skip("ResourceBinding", &kv.key),
                }
            };
            match change {
                Change::Reset(items) => {
                    let keep: BTreeSet<&str> = items.iter().map(|kv| kv.key.as_str()).collect();
                    for key in index.book.binding_keys() {
                        if !keep.contains(key.as_str()) {
                            index.book.forget(&key);
                        }
                    }
                    for kv in &items {
                        observe(&mut index, kv);
                    }
                    touched.extend(index.quotas.values().map(|q| q.namespace.clone()));
                }
                Change::Apply(kv) => observe(&mut index, &kv),
                Change::Delete(kv) => {
                    if let Some((Some(ns), _)) = parse_key(&self.kinds.rb, &kv.key) {
                        index.book.forget(&kv.key);
                        touched.insert(ns.to_string());
                    }
                }
            }
        }
        let quotas: Vec<QuotaRef> = {
            let index = self.index.read();
            touched.iter().flat_map(|ns| index.quotas_in(ns)).collect()
        };
        self.enqueue(quotas);
    }

    fn on_work(&self, change: Change) {
        let read = |kv: &KeyValue| -> Option<MemberWork> {
            let w: Value = serde_json::from_slice(&kv.value).ok()?;
            let quota = quota_of_work(&w)?;
            let ns = w.pointer("/metadata/namespace")?.as_str()?;
            Some(MemberWork {
                quota,
                cluster: cluster_of_execution_namespace(ns)?.to_string(),
                used: member_used(&w),
            })
        };
        let mut touched = Vec::new();
        {
            let mut index = self.index.write();
            match change {
                Change::Reset(items) => {
                    touched.extend(index.works.values().map(|w| w.quota.clone()));
                    index.works.clear();
                    for kv in &items {
                        if let Some(w) = read(kv) {
                            touched.push(w.quota.clone());
                            index.works.insert(kv.key.clone(), w);
                        }
                    }
                }
                Change::Apply(kv) => {
                    if let Some(w) = read(&kv)
                        && index.works.get(&kv.key) != Some(&w)
                    {
                        touched.push(w.quota.clone());
                        index.works.insert(kv.key.clone(), w);
                    }
                }
                Change::Delete(kv) => {
                    if let Some(w) = index.works.remove(&kv.key) {
                        touched.push(w.quota);
                    }
                }
            }
        }
        self.enqueue(touched);
    }

    async fn reconcile_quota(&self, q: &QuotaRef) -> Result<&'static str, ObjectError> {
        let kind = &self.kinds.quota;
        let stored = self.objects.get(kind, Some(&q.namespace), &q.name)?;
        let Some(stored) = stored else {
            self.metrics
                .lines
                .write()
                .remove(&(q.namespace.clone(), q.name.clone()));
            let changed = self.sync_works(q, None, Vec::new()).await?;
            return Ok(if changed { "deleted" } else { "unchanged" });
        };
        let Some(spec) = spec_of::<FederatedResourceQuotaSpec>(&stored.object) else {
            self.metrics.bad_objects.inc();
            return Err(ObjectError::Incomplete(
                "the quota's spec is unreadable".into(),
            ));
        };
        let previous: Option<FederatedResourceQuotaStatus> = stored
            .object
            .get("status")
            .and_then(|s| serde_json::from_value(s.clone()).ok());
        let generation = stored
            .object
            .pointer("/metadata/generation")
            .and_then(Value::as_i64);
        let now: Time = match serde_json::from_value(Value::String(now_rfc3339())) {
            Ok(t) => t,
            Err(_) => {
                return Err(ObjectError::Incomplete(
                    "no timestamp for the status".into(),
                ));
            }
        };
        let (status, desired) = {
            let index = self.index.read();
            let Some((book_spec, ledger)) = index.book.quota(&q.namespace, &q.name) else {
                // The watch has not brought it yet: retried (its event
                // queues it too).
                return Err(ObjectError::Incomplete(
                    "the quota is not in the accountant's book yet".into(),
                ));
            };
            if *book_spec != spec {
                return Err(ObjectError::Incomplete(
                    "the accountant's book has an older spec of the quota".into(),
                ));
            }
            let known = index.known();
            let mut status =
                build_status(&spec, ledger, &known, previous.as_ref(), generation, now);
            let reported: BTreeMap<String, ResourceList> = index
                .works
                .values()
                .filter(|w| w.quota == *q)
                .filter_map(|w| w.used.clone().map(|u| (w.cluster.clone(), u)))
                .collect();
            add_member_used(&mut status, &spec, &reported);
            (status, desired_works(q, &spec, &known))
        };
        self.metrics
            .lines
            .write()
            .insert((q.namespace.clone(), q.name.clone()), metric_lines(&status));
        let mut changed = self.sync_works(q, Some(&spec), desired).await?;
        let status_value = serde_json::to_value(&status).unwrap_or(Value::Null);
        let empty = Value::Object(Default::default());
        if stored.object.get("status").unwrap_or(&empty) != &status_value {
            let mut new = stored.object.clone();
            new["status"] = status_value;
            self.objects
                .write(kind, Some(&q.namespace), &q.name, &stored, new, |_| {})
                .await?;
            self.metrics.status_writes.inc();
            changed = true;
        }
        Ok(if changed { "changed" } else { "unchanged" })
    }

    /// Makes quota `q`'s Works the `desired` ones; true when it wrote.
    /// `spec` is the quota as read from the store (`None`: gone). A Work
    /// the desired set lacks is deleted only if the store agrees: its
    /// cluster is gone or no longer assigned (the index may not know the
    /// Cluster yet), and pinned to the Work as read again.
    async fn sync_works(
        &self,
        q: &QuotaRef,
        spec: Option<&FederatedResourceQuotaSpec>,
        desired: Vec<DesiredWork>,
    ) -> Result<bool, ObjectError> {
        let kind = &self.kinds.work;
        let existing: Vec<String> = self
            .index
            .read()
            .works
            .iter()
            .filter(|(_, w)| w.quota == *q)
            .map(|(k, _)| k.clone())
            .collect();
        let mut changed = false;
        let wanted: BTreeSet<(String, String)> = desired
            .iter()
            .map(|d| (d.namespace.clone(), d.name.clone()))
            .collect();
        for key in existing {
            let Some((Some(ns), name)) = parse_key(kind, &key) else {
                continue;
            };
            if !wanted.contains(&(ns.to_string(), name.to_string())) {
                let cluster = cluster_of_execution_namespace(ns);
                let assigned = spec.is_some_and(|s| {
                    s.static_assignments
                        .iter()
                        .any(|a| Some(a.cluster_name.as_str()) == cluster)
                });
                if let Some(c) = cluster.filter(|_| assigned)
                    && self.objects.get(&self.kinds.cluster, None, c)?.is_some()
                {
                    // The Cluster's event is on its way; it requeues the quota.
                    self.metrics.deletes_refused.inc();
                    continue;
                }
                let Some(current) = self.objects.get(kind, Some(ns), name)? else {
                    continue;
                };
                self.objects
                    .delete_pinned(kind, Some(ns), name, &Precondition::of(&current))
                    .await?;
                self.metrics.work_write("delete");
                changed = true;
            }
        }
        for d in desired {
            match self.objects.get(kind, Some(&d.namespace), &d.name)? {
                None => {
                    match self
                        .objects
                        .create(kind, Some(&d.namespace), d.object)
                        .await
                    {
                        Ok(_) => {}
                        // The execution namespace is not there yet (the
                        // binding controller creates it with the Cluster):
                        // retried with backoff.
                        Err(e) => return Err(e),
                    }
                    self.metrics.work_write("create");
                    changed = true;
                }
                Some(current) if !same_work(&current.object, &d.object) => {
                    let mut new = current.object.clone();
                    new["spec"] = d.object["spec"].clone();
                    new["metadata"]["labels"] = d.object["metadata"]["labels"].clone();
                    new["metadata"]["annotations"] = d.object["metadata"]["annotations"].clone();
                    self.objects
                        .write(kind, Some(&d.namespace), &d.name, &current, new, |_| {})
                        .await?;
                    self.metrics.work_write("update");
                    changed = true;
                }
                Some(_) => {}
            }
        }
        Ok(changed)
    }
}

/// The gauge lines of a status: every resource of `overall`, hard and used
/// in the resource's own unit.
fn metric_lines(status: &FederatedResourceQuotaStatus) -> Vec<metrics::Line> {
    let value = |list: &ResourceList, name: &str| -> f64 {
        list.get(name)
            .and_then(|q| hami_api::quantity::parse_quantity(&q.0).ok())
            .map_or(0.0, |milli| milli as f64 / 1000.0)
    };
    status
        .overall
        .keys()
        .map(|name| {
            (
                name.clone(),
                value(&status.overall, name),
                value(&status.overall_used, name),
            )
        })
        .collect()
}
