//! The scheduler: binding × clusters × estimates → `spec.clusters` and the
//! `Scheduled` condition, in one store write per decision.
//!
//! * State: a cluster index (placement views, estimator endpoints,
//!   revisions) fed by a store watch, read as an `Arc` snapshot copied out
//!   under a lock held only for the copy; the set of bindings whose last
//!   decision was unschedulable; the over-commit [`Reservations`].
//! * Work: a queue of binding keys (dedup, per-key backoff). A pass takes up
//!   to [`SchedulerConfig::batch`] keys, asks each estimator once for every
//!   shape of the pass ([`estimate`]), decides each binding with the pure
//!   placement core, and hands the writes to one writer task.
//! * Writes: the writer keeps up to [`SchedulerConfig::max_in_flight`]
//!   writes in flight, so the embedded store's group commit puts many
//!   decisions in one fsync. A conflict (the binding moved on) retries the
//!   key; unschedulable bindings retry with backoff and whenever a cluster
//!   changes.
//! * Cluster changes requeue only the bindings whose last decision was
//!   unschedulable; a cluster whose free resources changed has reported what
//!   was assigned to it, so its reservations are released.
//! * Fresh reschedule: a binding whose `spec.rescheduleTriggeredAt` (copied
//!   by the detector from its policy) is later than `status.lastScheduledTime`
//!   (set by every successful decision) is divided as if it were new,
//!   ignoring where its replicas run ([`status::reschedule_required`]);
//!   otherwise a decision keeps the current placement as far as it can.
//! * Quota: the scheduler is the single writer that raises `spec.clusters`,
//!   so it holds the quota accountant ([`QuotaGate`]). For a binding in a
//!   namespace with a FederatedResourceQuota, each cluster's estimate is
//!   capped by what the quotas still allow there (overall remainder and the
//!   cluster's static assignment, the binding's own usage given back); the
//!   decision is then admitted and reserved in one step before its write,
//!   confirmed when written, given back when the write fails. A binding
//!   that cannot be placed within quota gets `Scheduled=False`, reason
//!   `QuotaExceeded` (the quota, resource and numbers in the message) and a
//!   Warning Event, keeps what it has, and is queued again only when usage
//!   in its namespace drops or a limit changes. Nothing is decided before
//!   the quota, binding and cluster lists are in, so a restart never
//!   over-admits.

pub mod estimate;
pub mod metrics;
pub mod quota;
#[cfg(test)]
mod relist_tests;
pub mod status;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use hami_api::binding::{ResourceBindingSpec, TargetCluster};
use hami_api::cluster::Cluster;
use hami_api::common::{CLUSTER_GROUP, CLUSTER_VERSION, POLICY_GROUP, POLICY_VERSION};
use hami_api::propagation::Placement;
use hami_apiserver::ResourceKind;
use hami_apiserver::keys::{kind_prefix, parse_key};
use hami_apiserver::objects::Stored;
use hami_placement::capacity::general_estimate;
use hami_placement::{
    BindingView, ClusterView, Decision, PreparedClusters, Reservations, Shape, Strategy,
    Unschedulable, schedule_prepared, strategy_of,
};
use hami_quota::ReplicaRequest;
use hami_store::KeyValue;
use parking_lot::{Mutex, RwLock};
use serde::Deserialize;
use serde_json::Value;
use tokio::sync::{Semaphore, mpsc, watch};
use tokio::time::Instant;

use super::estimator_dial::EstimatorDial;
use super::events::{EventRecorder, EventType, Involved};
use super::feed::{self, Change};
use super::objects::{ObjectError, Objects, spec_of};
use super::queue::WorkQueue;
use super::quota::admission::QuotaGate;
use super::tracker::Tracker;
use estimate::{EstimateConfig, Estimators, Query};
use metrics::{AttemptResult, SchedulerMetrics};

/// Scheduler settings.
#[derive(Clone, Debug)]
pub struct SchedulerConfig {
    /// Bindings decided per pass (one estimator call per cluster per pass).
    pub batch: usize,
    /// Decision writes in flight at once (they share store commits).
    pub max_in_flight: usize,
    pub estimates: EstimateConfig,
    /// How the estimators are dialed (plain gRPC or TLS).
    pub dial: EstimatorDial,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        Self {
            batch: 256,
            max_in_flight: 64,
            estimates: EstimateConfig::default(),
            dial: EstimatorDial::plain(),
        }
    }
}

/// One cluster as the scheduler sees it.
#[derive(Clone, Debug, PartialEq)]
struct ClusterEntry {
    view: ClusterView,
    endpoint: Option<String>,
    revision: u64,
}

/// The clusters at one moment, sorted by name; the placement views are
/// prepared once here, on each cluster change, not once per decision.
#[derive(Default)]
struct Snapshot {
    views: PreparedClusters<'static>,
    endpoints: Vec<Option<String>>,
    revisions: Vec<u64>,
}

struct Shared {
    objects: Objects,
    rb: Arc<ResourceKind>,
    crb: Arc<ResourceKind>,
    clusters: RwLock<(BTreeMap<String, ClusterEntry>, Arc<Snapshot>)>,
    unschedulable: Mutex<BTreeSet<String>>,
    /// Duplicated bindings placed now, with the clusters they run in: a
    /// cluster that becomes eligible (Ready, untainted, newly serving the
    /// kind, relabelled) is added to those it is missing from.
    duplicated: Mutex<BTreeMap<String, BTreeSet<String>>>,
    /// Keys queued only to be widened that way (see [`Shared::widen`]).
    widen: Mutex<BTreeSet<String>>,
    reservations: Mutex<Reservations>,
    queue: WorkQueue,
    estimators: Estimators,
    metrics: SchedulerMetrics,
    quota: QuotaGate,
    events: Option<EventRecorder>,
    tracker: Tracker,
}

/// Whether a cluster's change may let it take bindings it could not take
/// before (what the placement filters read; not its free resources).
fn eligibility_changed(old: &ClusterView, new: &ClusterView) -> bool {
    old.ready != new.ready
        || old.taints != new.taints
        || old.labels != new.labels
        || old.api_enablements != new.api_enablements
        || old.provider != new.provider
        || old.region != new.region
        || old.zones != new.zones
}

/// A Duplicated decision widened: the current clusters kept, the new ones
/// added; `None` when it adds nothing (or is not a Duplicated placement).
fn widened(placed: Placed, current: &[TargetCluster]) -> Option<Placed> {
    let Placed::Decided(Ok(mut d)) = placed else {
        return None;
    };
    if d.strategy != Strategy::Duplicated {
        return None;
    }
    let added = d
        .clusters
        .iter()
        .any(|c| !current.iter().any(|o| o.name == c.name));
    if !added {
        return None;
    }
    for c in current {
        if !d.clusters.iter().any(|n| n.name == c.name) {
            d.clusters.push(c.clone());
        }
    }
    d.clusters.sort_by(|a, b| a.name.cmp(&b.name));
    Some(Placed::Decided(Ok(d)))
}

/// What a decision came to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Verdict2 {
    Scheduled,
    Unschedulable,
    QuotaExceeded,
}

/// One decision on its way to the store.
struct WriteJob {
    key: String,
    stored: Stored,
    new: Value,
    verdict: Verdict2,
    /// The decision holds a quota reservation (confirm or cancel it).
    quota_reserved: bool,
    /// Events to record once the write is stored: (about, reason, message).
    events: Vec<(Involved, &'static str, String)>,
    started: Instant,
    /// What the decision reserved: (shape, old assignment, new assignment).
    reserved: Option<(
        Shape,
        Vec<hami_api::binding::TargetCluster>,
        Vec<hami_api::binding::TargetCluster>,
    )>,
}

/// Starts the scheduler without Events; it runs until `stop` turns true.
pub fn spawn(
    objects: Objects,
    metrics: SchedulerMetrics,
    config: SchedulerConfig,
    stop: watch::Receiver<bool>,
) -> Result<tokio::task::JoinHandle<()>, ObjectError> {
    spawn_with(
        objects,
        metrics,
        config,
        None,
        Tracker::standalone("scheduler"),
        stop,
    )
}

/// Starts the scheduler, recording `QuotaExceeded` Events with `events`;
/// it runs until `stop` turns true.
pub fn spawn_with(
    objects: Objects,
    metrics: SchedulerMetrics,
    config: SchedulerConfig,
    events: Option<EventRecorder>,
    tracker: Tracker,
    stop: watch::Receiver<bool>,
) -> Result<tokio::task::JoinHandle<()>, ObjectError> {
    let (rb, crb) = objects.binding_kinds()?;
    let cluster_kind = objects.kind(&format!("{CLUSTER_GROUP}/{CLUSTER_VERSION}"), "Cluster")?;
    let quota_kind = objects.kind(
        &format!("{POLICY_GROUP}/{POLICY_VERSION}"),
        "FederatedResourceQuota",
    )?;
    let shared = Arc::new(Shared {
        objects,
        rb: rb.clone(),
        crb: crb.clone(),
        clusters: RwLock::default(),
        unschedulable: Mutex::default(),
        duplicated: Mutex::default(),
        widen: Mutex::default(),
        reservations: Mutex::default(),
        queue: WorkQueue::new(),
        estimators: Estimators::new(config.estimates, metrics.clone()).with_dial(config.dial),
        metrics,
        quota: QuotaGate::new(),
        events,
        tracker,
    });
    let store = shared.objects.store();
    // Clusters first, so the first bindings meet a populated index.
    feed::spawn(
        store,
        [kind_prefix(&cluster_kind)],
        &shared,
        Shared::on_cluster,
        &shared.tracker,
        &stop,
    );
    feed::spawn(
        store,
        [kind_prefix(&quota_kind)],
        &shared,
        Shared::on_quota,
        &shared.tracker,
        &stop,
    );
    feed::spawn(
        store,
        [kind_prefix(&rb)],
        &shared,
        Shared::on_rb,
        &shared.tracker,
        &stop,
    );
    feed::spawn(
        store,
        [kind_prefix(&crb)],
        &shared,
        Shared::on_crb,
        &shared.tracker,
        &stop,
    );
    let (tx, rx) = mpsc::channel::<WriteJob>(config.max_in_flight.max(1) * 2);
    tokio::spawn(writer(shared.clone(), rx, config.max_in_flight.max(1)));
    let mut stop = stop;
    shared
        .tracker
        .spawn_sampler(shared.clone(), |s| &s.queue, stop.clone());
    Ok(tokio::spawn(async move {
        // Decide nothing before every watch listed once (clusters, quotas,
        // bindings) and the quota accountant has every list.
        tokio::select! {
            _ = async {
                shared.tracker.wait_synced().await;
                shared.quota.synced().await;
            } => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        loop {
            let batch = tokio::select! {
                b = shared.queue.pop(config.batch) => b,
                _ = stop.wait_for(|s| *s) => return,
            };
            if batch.is_empty() {
                return;
            }
            if shared.pass(batch, &tx).await.is_err() {
                return;
            }
        }
    }))
}

/// Where a binding's placement stands before its write.
enum Placed {
    /// The placement core's answer (no quota admission needed, or not yet).
    Decided(Result<Decision, Unschedulable>),
    /// Placed and reserved within quota.
    Admitted(Decision),
    /// Refused by a quota of the namespace: the condition's reason and
    /// message.
    Refused {
        reason: &'static str,
        message: String,
    },
}

/// The `Scheduled` condition's reason and message for a quota refusal.
fn refusal(r: &hami_quota::Refusal) -> (&'static str, String) {
    let reason = if r.is_exceeded() {
        status::REASON_QUOTA_EXCEEDED
    } else {
        status::REASON_QUOTA_UNCOUNTABLE
    };
    (reason, r.to_string())
}

/// What reading a queued binding came to.
enum Read {
    Item(Box<Item>),
    /// Gone, or nothing to decide.
    Nothing,
    /// The read failed: retried.
    Failed,
}

/// A binding read for a pass.
struct Item {
    key: String,
    stored: Stored,
    spec: ResourceBindingSpec,
    shape: Shape,
    shape_key: String,
    /// Queued only to add newly eligible clusters to a Duplicated
    /// placement: only a decision that adds clusters is written.
    widen_only: bool,
}

impl Shared {
    fn requeue(&self, keys: Vec<String>) {
        for k in keys {
            self.queue.add(k);
        }
    }

    fn on_quota(&self, change: Change) {
        let keys = self.quota.on_quota(change);
        self.requeue(keys);
    }

    /// ResourceBindings: quota usage, then what [`on_binding`] does.
    fn on_rb(&self, change: Change) {
        let ns_of = |key: &str| -> Option<String> {
            parse_key(&self.rb, key).and_then(|(ns, _)| ns.map(str::to_string))
        };
        let keys = match &change {
            Change::Reset(items) => {
                let parsed: Vec<(&str, String, u64, Value)> = items
                    .iter()
                    .filter_map(|kv| {
                        let object = serde_json::from_slice::<Value>(&kv.value).ok()?;
                        Some((kv.key.as_str(), ns_of(&kv.key)?, kv.mod_revision, object))
                    })
                    .collect();
                let refs: Vec<(&str, &str, u64, &Value)> = parsed
                    .iter()
                    .map(|(k, ns, r, o)| (*k, ns.as_str(), *r, o))
                    .collect();
                self.quota.bindings_listed(&refs)
            }
            Change::Apply(kv) => match (
                ns_of(&kv.key),
                serde_json::from_slice::<Value>(&kv.value).ok(),
            ) {
                (Some(ns), Some(object)) => {
                    self.quota
                        .binding_changed(&kv.key, &ns, kv.mod_revision, &object)
                }
                _ => Vec::new(),
            },
            Change::Delete(kv) => self.quota.binding_deleted(&kv.key),
        };
        self.requeue(keys);
        self.on_binding(change, true);
    }

    fn on_cluster(&self, change: Change) {
        let keys = self.quota.on_cluster(&change);
        self.requeue(keys);
        let entry_of = |kv: &KeyValue| -> Option<ClusterEntry> {
            let cluster: Cluster = serde_json::from_slice(&kv.value).ok()?;
            let endpoint = estimate::estimator_endpoint(&cluster);
            Some(ClusterEntry {
                view: ClusterView::from_cluster(&cluster),
                endpoint,
                revision: kv.mod_revision,
            })
        };
        let mut changed = Vec::new();
        // Clusters that may now take bindings they could not before.
        let mut eligible = Vec::new();
        {
            let mut guard = self.clusters.write();
            let (index, snapshot) = &mut *guard;
            match change {
                Change::Reset(items) => {
                    index.clear();
                    for kv in &items {
                        match entry_of(kv) {
                            Some(e) => {
                                changed.push(e.view.name.clone());
                                eligible.push(e.view.name.clone());
                                index.insert(e.view.name.clone(), e);
                            }
                            None => tracing::warn!(
                                key = kv.key,
                                "scheduler: unreadable Cluster skipped"
                            ),
                        }
                    }
                }
                Change::Apply(kv) => match entry_of(&kv) {
                    Some(e) => {
                        let name = e.view.name.clone();
                        let old = index.insert(name.clone(), e.clone());
                        if old
                            .as_ref()
                            .is_none_or(|o| eligibility_changed(&o.view, &e.view))
                        {
                            eligible.push(name.clone());
                        }
                        if old.as_ref().map(|o| &o.view) != Some(&e.view) {
                            changed.push(name);
                        }
                    }
                    None => tracing::warn!(key = kv.key, "scheduler: unreadable Cluster skipped"),
                },
                Change::Delete(kv) => {
                    if let Some(e) = entry_of(&kv) {
                        index.remove(&e.view.name);
                        changed.push(e.view.name);
                    }
                }
            }
            let mut snap = Snapshot::default();
            let mut views = Vec::with_capacity(index.len());
            for e in index.values() {
                views.push(e.view.clone());
                snap.endpoints.push(e.endpoint.clone());
                snap.revisions.push(e.revision);
            }
            snap.views = PreparedClusters::owned(views);
            *snapshot = Arc::new(snap);
        }
        if changed.is_empty() {
            return;
        }
        {
            let mut r = self.reservations.lock();
            for name in &changed {
                r.release_cluster(name);
            }
        }
        let keys: Vec<String> = self.unschedulable.lock().iter().cloned().collect();
        for k in keys {
            self.queue.add(k);
        }
        self.widen(&eligible);
    }

    /// Queues every Duplicated binding missing one of `clusters`, to be
    /// placed again and widened, never narrowed (Karmada requeues its
    /// bindings only on a Cluster's label or generation change, so a member
    /// that starts serving a kind later, say a CRD propagated beside its
    /// objects, never gets them; hami adds it).
    fn widen(&self, clusters: &[String]) {
        if clusters.is_empty() {
            return;
        }
        let keys: Vec<String> = self
            .duplicated
            .lock()
            .iter()
            .filter(|(_, targets)| clusters.iter().any(|c| !targets.contains(c)))
            .map(|(k, _)| k.clone())
            .collect();
        if keys.is_empty() {
            return;
        }
        self.widen.lock().extend(keys.iter().cloned());
        self.requeue(keys);
    }

    fn on_crb(&self, change: Change) {
        self.on_binding(change, false);
    }

    /// Bindings of one kind (`namespaced`: ResourceBindings).
    fn on_binding(&self, change: Change, namespaced: bool) {
        let consider = |kv: KeyValue| {
            let Ok(object) = serde_json::from_slice::<Value>(&kv.value) else {
                tracing::warn!(key = kv.key, "scheduler: unreadable binding skipped");
                return;
            };
            let mut unsched = self.unschedulable.lock();
            if status::scheduled_condition(&object) == Some("False") {
                unsched.insert(kv.key.clone());
            } else {
                unsched.remove(&kv.key);
            }
            self.metrics.unschedulable.set(unsched.len() as i64);
            drop(unsched);
            // Every binding event passes here: read only the placement and
            // the target names, not the whole spec.
            let duplicated = (status::scheduled_condition(&object) == Some("True")
                && object.pointer("/spec/placement").is_none_or(|p| {
                    Placement::deserialize(p).is_ok_and(|p| strategy_of(&p) == Strategy::Duplicated)
                }))
            .then(|| {
                object
                    .pointer("/spec/clusters")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(|c| c.get("name")?.as_str().map(str::to_owned))
                    .collect::<BTreeSet<String>>()
            });
            match duplicated {
                Some(targets) => {
                    self.duplicated.lock().insert(kv.key.clone(), targets);
                }
                None => {
                    self.duplicated.lock().remove(&kv.key);
                }
            }
            if status::needs_scheduling(&object) {
                self.queue.add(kv.key);
            }
        };
        match change {
            Change::Reset(items) => {
                // The listing replaces what was known of this kind.
                let prefix = kind_prefix(if namespaced { &self.rb } else { &self.crb });
                let listed: BTreeSet<&str> = items.iter().map(|kv| kv.key.as_str()).collect();
                self.unschedulable
                    .lock()
                    .retain(|k| !k.starts_with(&prefix) || listed.contains(k.as_str()));
                self.duplicated
                    .lock()
                    .retain(|k, _| !k.starts_with(&prefix) || listed.contains(k.as_str()));
                items.into_iter().for_each(consider)
            }
            Change::Apply(kv) => consider(kv),
            Change::Delete(kv) => {
                self.duplicated.lock().remove(&kv.key);
                let mut unsched = self.unschedulable.lock();
                unsched.remove(&kv.key);
                self.metrics.unschedulable.set(unsched.len() as i64);
            }
        }
    }

    /// (kind, namespace, name) of a binding key.
    fn parse_key<'k>(
        &self,
        key: &'k str,
    ) -> Option<(&Arc<ResourceKind>, Option<&'k str>, &'k str)> {
        if let Some(rest) = key.strip_prefix(&kind_prefix(&self.rb)) {
            let (ns, name) = rest.split_once('/')?;
            return Some((&self.rb, Some(ns), name));
        }
        let rest = key.strip_prefix(&kind_prefix(&self.crb))?;
        Some((&self.crb, None, rest))
    }

    /// Reads a queued binding: what to decide, nothing to do, or a read
    /// that failed (retried with the key's backoff, never dropped).
    fn read(&self, key: &str) -> Read {
        let Some((kind, ns, name)) = self.parse_key(key) else {
            return Read::Nothing;
        };
        let stored = match self.objects.get(kind, ns, name) {
            Ok(Some(s)) => s,
            Ok(None) => return Read::Nothing,
            Err(e) => {
                tracing::warn!(key, error = %e, "scheduler: reading a binding failed; retrying");
                return Read::Failed;
            }
        };
        // A new generation, or a binding waiting to be placed (unschedulable
        // or over quota) queued again by a change that may let it in.
        let widen = self.widen.lock().remove(key);
        let widen_only = !status::needs_scheduling(&stored.object)
            && status::scheduled_condition(&stored.object) != Some("False");
        if widen_only && !widen {
            return Read::Nothing;
        }
        let spec: ResourceBindingSpec = match spec_of(&stored.object) {
            Some(spec) => spec,
            None => {
                tracing::warn!(key, "scheduler: binding spec unreadable; retrying");
                self.metrics.attempt(AttemptResult::Error);
                return Read::Failed;
            }
        };
        let shape = spec
            .replica_requirements
            .as_ref()
            .map(|r| Shape::from_resource_list(&r.resource_request))
            .unwrap_or_default();
        let shape_key = spec
            .replica_requirements
            .as_ref()
            .and_then(|r| serde_json::to_string(r).ok())
            .unwrap_or_default();
        Read::Item(Box::new(Item {
            key: key.to_string(),
            stored,
            spec,
            shape,
            shape_key,
            widen_only,
        }))
    }

    async fn pass(&self, batch: Vec<String>, tx: &mpsc::Sender<WriteJob>) -> Result<(), ()> {
        let started = Instant::now();
        let mut items = Vec::with_capacity(batch.len());
        for key in batch {
            match self.read(&key) {
                Read::Item(item) => items.push(*item),
                Read::Nothing => {
                    self.queue.done(&key);
                    self.queue.forget(&key);
                }
                Read::Failed => {
                    self.queue.done(&key);
                    self.tracker.retried();
                    self.queue.retry(&key);
                }
            }
        }
        let snapshot = self.clusters.read().1.clone();
        // One estimator call per cluster for all shapes of the pass.
        let mut queries = Vec::new();
        for (i, endpoint) in snapshot.endpoints.iter().enumerate() {
            let Some(endpoint) = endpoint else { continue };
            let mut seen = BTreeSet::new();
            for item in &items {
                let Some(req) = &item.spec.replica_requirements else {
                    continue;
                };
                if item.spec.replicas == 0 || !seen.insert(item.shape_key.as_str()) {
                    continue;
                }
                queries.push(Query {
                    cluster: snapshot.views.views()[i].name.clone(),
                    endpoint: endpoint.clone(),
                    revision: snapshot.revisions[i],
                    shape_key: item.shape_key.clone(),
                    requirements: req.clone(),
                });
            }
        }
        if !queries.is_empty() {
            self.estimators.fill(queries).await;
        }
        let now = hami_apiserver::meta::now_rfc3339();
        for item in items {
            let Item {
                key,
                stored,
                spec,
                shape,
                shape_key,
                widen_only,
            } = item;
            let view_key = match self.parse_key(&key) {
                Some((_, Some(ns), name)) => format!("{ns}/{name}"),
                Some((_, None, name)) => name.to_string(),
                None => key.clone(),
            };
            // A fresh reschedule trigger divides anew, as for a new
            // binding; otherwise the current placement is kept as far as
            // it can be (recovery never pulls replicas back).
            let fresh = status::reschedule_required(&stored.object);
            if fresh {
                self.metrics.fresh_reschedules.inc();
                tracing::info!(
                    key,
                    "scheduler: rescheduleTriggeredAt is later than the last scheduling; dividing afresh"
                );
            }
            let view = BindingView::from_spec(&view_key, &spec, fresh);
            let ns = self
                .parse_key(&key)
                .and_then(|(_, ns, _)| ns)
                .map(str::to_string);
            let request = ReplicaRequest::from_requirements(spec.replica_requirements.as_ref());
            // Quota room per cluster, when the namespace has a quota.
            let room = match (&ns, &request) {
                (Some(ns), Ok(req)) if self.quota.limits(ns) => {
                    let names: Vec<&str> = snapshot
                        .views
                        .views()
                        .iter()
                        .map(|c| c.name.as_str())
                        .collect();
                    Some(self.quota.room(&key, ns, req, &names).map_err(|r| {
                        self.quota.wait(&key, ns);
                        refusal(&r)
                    }))
                }
                (Some(ns), Err(e)) if self.quota.limits(ns) => {
                    self.quota.wait(&key, ns);
                    Some(Err((
                        status::REASON_QUOTA_UNCOUNTABLE,
                        format!(
                            "the request of a replica cannot be counted against the quotas of namespace {ns}: {e}"
                        ),
                    )))
                }
                _ => None,
            };
            let placed = {
                let reservations = self.reservations.lock();
                let available: Vec<Option<i32>> = snapshot
                    .views
                    .views()
                    .iter()
                    .enumerate()
                    .map(|(i, c)| {
                        let accurate = snapshot.endpoints[i].as_ref().and_then(|_| {
                            self.estimators
                                .cached(&c.name, &shape_key, snapshot.revisions[i])
                        });
                        match accurate {
                            Some(a) => reservations.adjust(&c.name, &shape, Some(a)),
                            None => {
                                // No estimator (or no answer): the general
                                // estimate, less what was just assigned here.
                                let reserved = reservations.reserved_for(&c.name, &shape);
                                if snapshot.endpoints[i].is_some() && reserved == 0 {
                                    return None;
                                }
                                general_estimate(c.free.as_ref(), &shape).map(|g| {
                                    i32::try_from((g - reserved).max(0)).unwrap_or(i32::MAX)
                                })
                            }
                        }
                    })
                    .collect();
                drop(reservations);
                let t = std::time::Instant::now();
                let placed = match room {
                    None => Placed::Decided(schedule_prepared(&view, &snapshot.views, &available)),
                    Some(Err((reason, message))) => Placed::Refused { reason, message },
                    Some(Ok(room)) => {
                        let capped = quota::cap_available(
                            &available,
                            &room,
                            &view.current,
                            snapshot.views.views(),
                            &shape,
                        );
                        match schedule_prepared(&view, &snapshot.views, &capped) {
                            Ok(d) => Placed::Decided(Ok(d)),
                            // Within quota it does not fit: without the
                            // caps, either capacity is short too (say so) or
                            // admission says which quota line refuses.
                            Err(_) => Placed::Decided(schedule_prepared(
                                &view,
                                &snapshot.views,
                                &available,
                            )),
                        }
                    }
                };
                self.metrics
                    .algorithm_seconds
                    .observe(t.elapsed().as_secs_f64());
                placed
            };
            // Widening only: keep every current cluster and add the new
            // ones; anything else (no new cluster, no fit) writes nothing.
            let placed = if widen_only {
                match widened(placed, &view.current) {
                    Some(p) => p,
                    None => {
                        self.queue.done(&key);
                        self.queue.forget(&key);
                        continue;
                    }
                }
            } else {
                placed
            };
            // Admission: check and reserve in one step, before the write.
            let placed = match (placed, &ns, request) {
                (Placed::Decided(Ok(d)), Some(ns), Ok(req)) => {
                    let after = quota::state_after(&spec, req, &d.clusters);
                    match self.quota.admit(&key, ns, after) {
                        Ok(()) => Placed::Admitted(d),
                        Err(r) => {
                            let (reason, message) = refusal(&r);
                            Placed::Refused { reason, message }
                        }
                    }
                }
                (other, _, _) => other,
            };
            let quota_reserved = matches!(placed, Placed::Admitted(_));
            let mut events = Vec::new();
            let (new, verdict, reserved) = match placed {
                Placed::Decided(Ok(d)) | Placed::Admitted(d) => {
                    let reserved = {
                        let mut r = self.reservations.lock();
                        r.apply_decision(&shape, &view.current, &d.clusters);
                        Some((shape, view.current.clone(), d.clusters.clone()))
                    };
                    let result: Result<Decision, Unschedulable> = Ok(d);
                    (
                        status::apply(&stored.object, &result, &now),
                        Verdict2::Scheduled,
                        reserved,
                    )
                }
                Placed::Decided(Err(u)) => (
                    status::apply(&stored.object, &Err(u), &now),
                    Verdict2::Unschedulable,
                    None,
                ),
                Placed::Refused { reason, message } => {
                    // An Event when the binding starts waiting, not on every
                    // retry while it waits.
                    if status::scheduled_reason(&stored.object) != Some(reason) {
                        events.extend(
                            Involved::of(&stored.object).map(|i| (i, reason, message.clone())),
                        );
                        events.push((Involved::template(&spec.resource), reason, message.clone()));
                    }
                    (
                        status::refuse(&stored.object, reason, &message, &now),
                        Verdict2::QuotaExceeded,
                        None,
                    )
                }
            };
            let job = WriteJob {
                key,
                stored,
                new,
                verdict,
                quota_reserved,
                events,
                started,
                reserved,
            };
            if tx.send(job).await.is_err() {
                return Err(());
            }
        }
        Ok(())
    }

    async fn write(&self, job: WriteJob) {
        let WriteJob {
            key,
            stored,
            new,
            verdict,
            quota_reserved,
            events,
            started,
            reserved,
        } = job;
        let Some((kind, ns, name)) = self.parse_key(&key) else {
            if quota_reserved {
                let keys = self.quota.cancel(&key);
                self.requeue(keys);
            }
            self.queue.done(&key);
            return;
        };
        let result = self
            .objects
            .write(kind, ns, name, &stored, new, status::observe_generation)
            .await;
        if quota_reserved {
            // Settle the reservation before the key can be decided again.
            let keys = match &result {
                Ok(written) => {
                    let revision = written
                        .pointer("/metadata/resourceVersion")
                        .and_then(Value::as_str)
                        .and_then(|v| v.parse().ok())
                        .unwrap_or(stored.revision);
                    self.quota.confirm(&key, revision)
                }
                Err(_) => self.quota.cancel(&key),
            };
            self.requeue(keys);
        }
        self.queue.done(&key);
        match result {
            Ok(_) => {
                self.metrics
                    .e2e_seconds
                    .observe(started.elapsed().as_secs_f64());
                match verdict {
                    Verdict2::Scheduled => {
                        self.metrics.attempt(AttemptResult::Scheduled);
                        self.queue.forget(&key);
                    }
                    Verdict2::Unschedulable => {
                        // Decided (Scheduled=False is written): tried again
                        // with backoff for capacity that may come, but not
                        // a failing reconcile, so its wait starts over.
                        self.metrics.attempt(AttemptResult::Unschedulable);
                        self.queue.retry(&key);
                        self.queue.restart_age(&key);
                    }
                    Verdict2::QuotaExceeded => {
                        // No retry timer: the quota gate queues it again
                        // when usage in its namespace drops.
                        self.metrics.attempt(AttemptResult::QuotaExceeded);
                        self.queue.forget(&key);
                        if let Some(recorder) = &self.events {
                            for (about, reason, message) in &events {
                                recorder.record(about, EventType::Warning, reason, message.clone());
                            }
                        }
                    }
                }
            }
            Err(e) => {
                if let Some((shape, old, new)) = reserved {
                    // Give back what this decision reserved beyond the old assignment.
                    let mut r = self.reservations.lock();
                    for t in &new {
                        let before: i64 = old
                            .iter()
                            .filter(|o| o.name == t.name)
                            .map(|o| i64::from(o.replicas))
                            .sum();
                        r.release(&t.name, &shape, i64::from(t.replicas) - before);
                    }
                }
                self.metrics.attempt(AttemptResult::Error);
                self.tracker.retried();
                let delay = self.queue.retry(&key);
                if !matches!(e, ObjectError::Conflict) {
                    tracing::warn!(key, error = %e, ?delay, "scheduler: writing a decision failed");
                }
            }
        }
    }
}

/// The one writer: takes decisions in order and keeps up to
/// `max_in_flight` of them in the store at once.
async fn writer(shared: Arc<Shared>, mut rx: mpsc::Receiver<WriteJob>, max_in_flight: usize) {
    let slots = Arc::new(Semaphore::new(max_in_flight));
    while let Some(job) = rx.recv().await {
        let Ok(permit) = slots.clone().acquire_owned().await else {
            return;
        };
        let shared = shared.clone();
        shared.metrics.writes_in_flight.inc();
        tokio::spawn(async move {
            shared.write(job).await;
            shared.metrics.writes_in_flight.dec();
            drop(permit);
        });
    }
}

#[cfg(test)]
mod widen_tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use hami_placement::Mode;

    fn decision(strategy: Strategy, names: &[&str]) -> Placed {
        Placed::Decided(Ok(Decision {
            clusters: names
                .iter()
                .map(|n| TargetCluster {
                    name: (*n).into(),
                    replicas: 2,
                })
                .collect(),
            affinity_name: None,
            strategy,
            mode: Mode::Fresh,
            feasible: names.len(),
            considered: names.len(),
            notes: Vec::new(),
        }))
    }

    fn names(p: Option<Placed>) -> Option<Vec<String>> {
        match p? {
            Placed::Decided(Ok(d)) => Some(d.clusters.into_iter().map(|c| c.name).collect()),
            _ => None,
        }
    }

    #[test]
    fn a_duplicated_placement_only_grows() {
        let current = vec![TargetCluster {
            name: "a".into(),
            replicas: 2,
        }];
        // b newly eligible; a no longer chosen (say, tainted): a stays,
        // failover decides about it, not a widening.
        assert_eq!(
            names(widened(decision(Strategy::Duplicated, &["b"]), &current)),
            Some(vec!["a".to_string(), "b".to_string()])
        );
        // Nothing new: nothing to write.
        assert_eq!(
            names(widened(decision(Strategy::Duplicated, &["a"]), &current)),
            None
        );
        // Divided placements are never widened.
        assert_eq!(
            names(widened(
                decision(Strategy::DynamicWeight, &["a", "b"]),
                &current
            )),
            None
        );
        assert!(
            widened(
                Placed::Decided(Err(Unschedulable {
                    attempts: Vec::new()
                })),
                &current
            )
            .is_none()
        );
    }

    #[test]
    fn only_what_the_filters_read_makes_a_cluster_newly_eligible() {
        let old = ClusterView::new("a");
        let mut more_free = old.clone();
        more_free.free = Some(Default::default());
        assert!(!eligibility_changed(&old, &more_free));
        let mut serving = old.clone();
        serving.api_enablements = Some(
            [("ml.example.com/v1".to_string(), "TrainingJob".to_string())]
                .into_iter()
                .collect(),
        );
        assert!(eligibility_changed(&old, &serving));
        let mut not_ready = old.clone();
        not_ready.ready = false;
        assert!(eligibility_changed(&old, &not_ready));
    }
}
