//! The descheduler: replicas a member cluster could not start move to
//! clusters where they fit.
//!
//! Every [`DeschedulerOptions::interval`] (`hami up --descheduler-interval`,
//! default 1 minute) it looks at the dynamically divided bindings (every
//! kind with replicas; see [`decide`]) whose scheduler is up to date, and
//! for each target cluster with fewer replicas ready than assigned asks
//! that cluster's estimator how many of the workload's pods have been
//! unschedulable for at least [`DeschedulerOptions::unschedulable_threshold`]
//! (Karmada's `GetUnschedulableReplicas`, [`estimate`]). A binding with
//! such replicas gets its counts lowered in ONE write (never below what is
//! ready there), an Event on the binding and its template, and the
//! metrics `hami_descheduler_*`. The scheduler sees the new generation and
//! places the freed replicas as a scale-up, by available replicas: the
//! cluster that could not start them reports none free, so they go
//! elsewhere; the member cluster deletes its pending pods first when its
//! Deployment scales down, so running replicas are not touched.
//!
//! State: a synchronous index of clusters' estimator endpoints and of the
//! candidate bindings (only what the decision reads), fed by store watches
//! and copied out under the lock before any RPC.

pub mod decide;
pub mod estimate;
#[cfg(test)]
mod relist_tests;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use hami_api::binding::{
    ObjectReference, ResourceBindingSpec, ResourceBindingStatus, TargetCluster,
};
use hami_api::cluster::Cluster;
use hami_api::common::{CLUSTER_GROUP, CLUSTER_VERSION};
use hami_apiserver::ResourceKind;
use hami_apiserver::keys::{kind_prefix, parse_key};
use hami_store::KeyValue;
use parking_lot::RwLock;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use serde_json::Value;
use tokio::sync::watch;

use super::estimator_dial::EstimatorDial;
use super::events::{EventRecorder, EventType, Involved};
use super::feed::{self, Change};
use super::objects::{ObjectError, Objects, spec_of};
use super::runner::ResultLabel;
use super::scheduler::status::needs_scheduling;
use super::tracker::Tracker;

/// Descheduler settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeschedulerOptions {
    /// Time between two passes; zero turns the descheduler off.
    pub interval: Duration,
    /// How long a pod must have been unschedulable to be moved.
    pub unschedulable_threshold: Duration,
    /// Longest wait for one estimator call.
    pub timeout: Duration,
}

impl Default for DeschedulerOptions {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(60),
            unschedulable_threshold: Duration::from_secs(60),
            timeout: Duration::from_secs(2),
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: &'static str,
}

/// Descheduler metrics (prefix `hami_descheduler_`).
#[derive(Clone)]
pub struct DeschedulerMetrics {
    runs: Counter,
    replicas: Family<ReasonLabel, Counter>,
    writes: Family<ResultLabel, Counter>,
    estimator_errors: Counter,
}

impl DeschedulerMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self {
            runs: Counter::default(),
            replicas: Family::default(),
            writes: Family::default(),
            estimator_errors: Counter::default(),
        };
        let sub = registry.sub_registry_with_prefix("hami_descheduler");
        sub.register("runs", "Descheduler passes", m.runs.clone());
        sub.register(
            "replicas_descheduled",
            "Replicas taken from a cluster for the scheduler to place again, by reason (unschedulable)",
            m.replicas.clone(),
        );
        sub.register(
            "writes",
            "Binding writes by result (changed, conflict, error)",
            m.writes.clone(),
        );
        sub.register(
            "estimator_errors",
            "GetUnschedulableReplicas calls that failed or timed out (the cluster keeps its replicas)",
            m.estimator_errors.clone(),
        );
        // Touch the reason so the family shows before the first move.
        let _ = m.replicas.get_or_create(&ReasonLabel {
            reason: decide::REASON_UNSCHEDULABLE,
        });
        m
    }

    fn write(&self, result: &'static str) {
        self.writes.get_or_create(&ResultLabel { result }).inc();
    }
}

/// What the descheduler keeps of one candidate binding.
#[derive(Clone, Debug, PartialEq)]
struct Entry {
    resource: ObjectReference,
    targets: Vec<TargetCluster>,
    ready: BTreeMap<String, i32>,
}

#[derive(Clone, Debug, Default, PartialEq)]
struct Index {
    /// Cluster → its estimator endpoint.
    endpoints: BTreeMap<String, String>,
    /// Binding key → entry, for dynamically divided, scheduled bindings.
    bindings: BTreeMap<String, Entry>,
}

struct Shared {
    objects: Objects,
    rb: Arc<ResourceKind>,
    crb: Arc<ResourceKind>,
    cluster: Arc<ResourceKind>,
    index: RwLock<Index>,
    estimators: estimate::Unschedulable,
    options: DeschedulerOptions,
    metrics: DeschedulerMetrics,
    events: EventRecorder,
    tracker: Tracker,
}

/// Starts the descheduler (nothing when the interval is zero), dialing the
/// estimators as `dial` says; it runs until `stop` turns true.
pub fn spawn(
    objects: Objects,
    metrics: DeschedulerMetrics,
    options: DeschedulerOptions,
    dial: EstimatorDial,
    events: EventRecorder,
    tracker: Tracker,
    mut stop: watch::Receiver<bool>,
) -> Result<Option<tokio::task::JoinHandle<()>>, ObjectError> {
    if options.interval.is_zero() {
        return Ok(None);
    }
    let (rb, crb) = objects.binding_kinds()?;
    let cluster = objects.kind(&format!("{CLUSTER_GROUP}/{CLUSTER_VERSION}"), "Cluster")?;
    let prefixes = (kind_prefix(&cluster), kind_prefix(&rb), kind_prefix(&crb));
    let shared = Arc::new(Shared {
        objects,
        rb,
        crb,
        cluster,
        index: RwLock::default(),
        estimators: estimate::Unschedulable::new(options.timeout).with_dial(dial),
        options,
        metrics,
        events,
        tracker,
    });
    let store = shared.objects.store();
    feed::spawn(
        store,
        [prefixes.0],
        &shared,
        Shared::on_cluster,
        &shared.tracker,
        &stop,
    );
    feed::spawn(
        store,
        [prefixes.1],
        &shared,
        Shared::on_rb,
        &shared.tracker,
        &stop,
    );
    feed::spawn(
        store,
        [prefixes.2],
        &shared,
        Shared::on_crb,
        &shared.tracker,
        &stop,
    );
    Ok(Some(tokio::spawn(async move {
        let start = tokio::time::Instant::now() + options.interval;
        let mut tick = tokio::time::interval_at(start, options.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.wait_for(|s| *s) => return,
            }
            // Nothing is judged on a watch that has not listed yet.
            if !shared.tracker.is_synced() {
                continue;
            }
            shared.pass().await;
        }
    })))
}

/// The candidate entry of a stored binding, if it is one: dynamically
/// divided, not being deleted, and its current generation scheduled.
fn entry_of(object: &Value) -> Option<Entry> {
    if needs_scheduling(object) {
        return None;
    }
    let spec: ResourceBindingSpec = spec_of(object)?;
    if !decide::dynamically_divided(&spec) {
        return None;
    }
    let status: ResourceBindingStatus = object
        .get("status")
        .and_then(|s| serde_json::from_value(s.clone()).ok())
        .unwrap_or_default();
    Some(Entry {
        ready: decide::ready_by_cluster(&spec.resource.kind, &status.aggregated_status),
        resource: spec.resource,
        targets: spec.clusters,
    })
}

impl Shared {
    fn on_cluster(&self, change: Change) {
        let endpoint_of = |kv: &KeyValue| -> Option<(String, Option<String>)> {
            let (_, name) = parse_key(&self.cluster, &kv.key)?;
            let c: Cluster = serde_json::from_slice(&kv.value).ok()?;
            let endpoint = crate::controllers::scheduler::estimate::estimator_endpoint(&c);
            Some((name.to_string(), endpoint))
        };
        let mut index = self.index.write();
        let put = |index: &mut Index, kv: &KeyValue| match endpoint_of(kv) {
            Some((name, Some(e))) => {
                index.endpoints.insert(name, e);
            }
            Some((name, None)) => {
                index.endpoints.remove(&name);
            }
            None => tracing::warn!(key = kv.key, "descheduler: unreadable Cluster skipped"),
        };
        match change {
            Change::Reset(items) => {
                index.endpoints.clear();
                for kv in &items {
                    put(&mut index, kv);
                }
            }
            Change::Apply(kv) => put(&mut index, &kv),
            Change::Delete(kv) => {
                if let Some((_, name)) = parse_key(&self.cluster, &kv.key) {
                    index.endpoints.remove(name);
                }
            }
        }
    }

    fn on_rb(&self, change: Change) {
        self.on_binding(change, true);
    }

    fn on_crb(&self, change: Change) {
        self.on_binding(change, false);
    }

    fn on_binding(&self, change: Change, namespaced: bool) {
        let kind = if namespaced { &self.rb } else { &self.crb };
        let mut index = self.index.write();
        let put = |index: &mut Index, kv: &KeyValue| {
            let entry = serde_json::from_slice::<Value>(&kv.value)
                .ok()
                .and_then(|o| entry_of(&o));
            match entry {
                Some(e) => {
                    index.bindings.insert(kv.key.clone(), e);
                }
                None => {
                    index.bindings.remove(&kv.key);
                }
            }
        };
        match change {
            Change::Reset(items) => {
                index.bindings.retain(|k, _| parse_key(kind, k).is_none());
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

    /// One pass: ask, decide, write.
    async fn pass(&self) {
        self.metrics.runs.inc();
        // (cluster, endpoint) -> bindings to ask about, copied out of the lock.
        let mut asks: BTreeMap<(String, String), Vec<(String, ObjectReference)>> = BTreeMap::new();
        {
            let index = self.index.read();
            self.estimators.keep_only(index.endpoints.values());
            for (key, e) in &index.bindings {
                for cluster in decide::undesired(&e.targets, &e.ready) {
                    if let Some(endpoint) = index.endpoints.get(cluster) {
                        asks.entry((cluster.to_string(), endpoint.clone()))
                            .or_default()
                            .push((key.clone(), e.resource.clone()));
                    }
                }
            }
        }
        if asks.is_empty() {
            return;
        }
        let threshold = self.options.unschedulable_threshold;
        // One task per cluster, its bindings asked in turn.
        let per_cluster = asks.into_iter().map(|((cluster, endpoint), list)| async move {
            let mut found = Vec::new();
            for (key, resource) in list {
                match self
                    .estimators
                    .ask(&endpoint, &cluster, &resource, threshold)
                    .await
                {
                    Ok(n) if n > 0 => found.push((key, cluster.clone(), n)),
                    Ok(_) => {}
                    Err(e) => {
                        self.metrics.estimator_errors.inc();
                        tracing::debug!(cluster, error = %e, "descheduler: no answer; the cluster keeps its replicas");
                        // The rest of this cluster would fail the same way.
                        break;
                    }
                }
            }
            found
        });
        let mut unschedulable: BTreeMap<String, BTreeMap<String, i32>> = BTreeMap::new();
        for (key, cluster, n) in futures::future::join_all(per_cluster)
            .await
            .into_iter()
            .flatten()
        {
            unschedulable.entry(key).or_default().insert(cluster, n);
        }
        let keys: BTreeSet<String> = unschedulable.keys().cloned().collect();
        for key in keys {
            let counts = unschedulable.remove(&key).unwrap_or_default();
            match self.deschedule(&key, &counts).await {
                Ok(Some(result)) => self.metrics.write(result),
                Ok(None) => {}
                Err(e) => {
                    self.metrics.write(if matches!(e, ObjectError::Conflict) {
                        "conflict"
                    } else {
                        "error"
                    });
                    tracing::debug!(key, error = %e, "descheduler: write failed; the next pass decides again");
                }
            }
        }
    }

    /// Lowers `key`'s counts by `counts` (cluster → unschedulable replicas),
    /// deciding again on the binding as stored now.
    async fn deschedule(
        &self,
        key: &str,
        counts: &BTreeMap<String, i32>,
    ) -> Result<Option<&'static str>, ObjectError> {
        let (kind, ns, name) = if let Some((ns, name)) = parse_key(&self.rb, key) {
            (&self.rb, ns, name)
        } else if let Some((_, name)) = parse_key(&self.crb, key) {
            (&self.crb, None, name)
        } else {
            return Ok(None);
        };
        let Some(stored) = self.objects.get(kind, ns, name)? else {
            return Ok(None);
        };
        if stored
            .object
            .pointer("/metadata/deletionTimestamp")
            .is_some()
        {
            return Ok(None);
        }
        let Some(entry) = entry_of(&stored.object) else {
            return Ok(None);
        };
        let Some(plan) = decide::plan(&entry.targets, &entry.ready, counts) else {
            return Ok(None);
        };
        let mut new = stored.object.clone();
        new["spec"]["clusters"] = serde_json::to_value(&plan.clusters).map_err(|e| {
            ObjectError::Api(Box::new(hami_apiserver::ApiError::internal(e.to_string())))
        })?;
        self.objects
            .write(kind, ns, name, &stored, new, |_| {})
            .await?;
        for (cluster, n) in &plan.moved {
            self.metrics
                .replicas
                .get_or_create(&ReasonLabel {
                    reason: decide::REASON_UNSCHEDULABLE,
                })
                .inc_by(u64::try_from(*n).unwrap_or(0));
            tracing::info!(
                binding = key,
                cluster,
                replicas = n,
                "descheduler: unschedulable replicas freed for the scheduler"
            );
        }
        let message = plan.message(self.options.unschedulable_threshold.as_secs());
        let template = Involved::template(&entry.resource);
        for o in Involved::of(&stored.object).iter().chain([&template]) {
            self.events
                .record(o, EventType::Normal, decide::EVENT_DESCHEDULED, &message);
        }
        Ok(Some("changed"))
    }
}
