//! Taint-based failover with graceful eviction.
//!
//! * A binding scheduled on a cluster with a NoExecute taint its
//!   `placement.clusterTolerations` do not tolerate (tolerationSeconds
//!   honoured) leaves it: the cluster is dropped from `spec.clusters` and a
//!   graceful eviction task names it, in ONE write. The scheduler then
//!   places the replacements elsewhere (it skips clusters being left), while
//!   the binding controller keeps the old Work as long as the task stands.
//! * A task ends when the replacements are ready, its grace period passed,
//!   or at once with purgeMode Directly; never with Never (a user removes
//!   it). Ending it is one write too (with the binding's `GracefulEviction`
//!   condition and Events saying how it ended); the binding controller then
//!   deletes the old Work. Ending a task does not ask the scheduler for a
//!   new decision (the write marks its generation observed when the
//!   scheduler was done), so nothing moves back to a recovered cluster
//!   until something else asks for a reschedule.
//! * Evictions are rate-limited by a token bucket, so a partition that
//!   taints many clusters at once does not move the whole fleet at once.
//!
//! State: a synchronous index of clusters' NoExecute taints (with the time
//! each was first seen, for taints without `timeAdded`) and of bindings'
//! target clusters, fed by store watches. Decisions are pure ([`decide`]).

pub mod decide;
#[cfg(test)]
mod relist_tests;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use hami_api::binding::{ResourceBindingSpec, ResourceBindingStatus};
use hami_api::cluster::Cluster;
use hami_api::common::{CLUSTER_GROUP, CLUSTER_VERSION, POLICY_GROUP, POLICY_VERSION};
use hami_api::propagation::PropagationSpec;
use hami_apiserver::ResourceKind;
use hami_apiserver::keys::{kind_prefix, parse_key};
use hami_placement::filter::taint::NO_EXECUTE;
use k8s_openapi::api::core::v1::Taint;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use parking_lot::{Mutex, RwLock};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use serde_json::Value;
use tokio::sync::watch;

use super::detector::{LABEL_CPP_NAME, LABEL_PP_NAME, LABEL_PP_NAMESPACE};
use super::events::{EventRecorder, EventType, Involved};
use super::feed::{self, Change};
use super::objects::{ObjectError, Objects, spec_of};
use super::queue::WorkQueue;
use super::runner::{self, Reconciler, ResultLabel};
use super::scheduler::status::{needs_scheduling, observe_generation};
use super::status::aggregate::set_condition;
use super::tracker::Tracker;
use decide::{Done, Eviction, Finished, PurgeSettings, TokenBucket};

/// Failover settings.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct EvictionOptions {
    /// Bindings evicted per second at most (token bucket refill rate).
    pub rate: f64,
    /// Evictions allowed at once before the rate applies.
    pub burst: u32,
}

impl Default for EvictionOptions {
    fn default() -> Self {
        Self {
            rate: 10.0,
            burst: 10,
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: &'static str,
}

/// Failover metrics (prefix `hami_failover_`).
#[derive(Clone)]
pub struct EvictionMetrics {
    reconciles: Family<ResultLabel, Counter>,
    evictions: Family<ReasonLabel, Counter>,
    finished: Family<ReasonLabel, Counter>,
    in_progress: Gauge,
    rate_limited: Counter,
}

impl EvictionMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self {
            reconciles: Family::default(),
            evictions: Family::default(),
            finished: Family::default(),
            in_progress: Gauge::default(),
            rate_limited: Counter::default(),
        };
        let sub = registry.sub_registry_with_prefix("hami_failover");
        sub.register(
            "evictions",
            "Clusters a binding was evicted from, by reason (TaintUntolerated)",
            m.evictions.clone(),
        );
        sub.register(
            "evictions_in_progress",
            "Graceful eviction tasks standing on bindings",
            m.in_progress.clone(),
        );
        sub.register(
            "tasks_finished",
            "Graceful eviction tasks ended, by reason (ready, grace_elapsed, directly)",
            m.finished.clone(),
        );
        sub.register(
            "rate_limited",
            "Evictions postponed by the eviction rate limit",
            m.rate_limited.clone(),
        );
        sub.register(
            "reconciles",
            "Failover reconciles by result (changed, unchanged, error)",
            m.reconciles.clone(),
        );
        // Every reason's series from the start (at 0): dashboards and alerts
        // read a rate of 0, not an absent family, before the first eviction.
        drop(m.evictions.get_or_create(&ReasonLabel {
            reason: decide::REASON_TAINT,
        }));
        for reason in ["ready", "grace_elapsed", "directly"] {
            drop(m.finished.get_or_create(&ReasonLabel { reason }));
        }
        m
    }
}

/// One binding in the index.
#[derive(Clone, Debug, Default, PartialEq)]
struct BindingEntry {
    /// Target clusters.
    clusters: Vec<String>,
    /// Graceful eviction tasks standing.
    tasks: usize,
}

#[derive(Clone, Debug, Default, PartialEq)]
struct Index {
    /// Cluster → its NoExecute taints, `timeAdded` filled with the time
    /// first seen when absent.
    taints: BTreeMap<String, Vec<Taint>>,
    bindings: HashMap<String, BindingEntry>,
}

impl Index {
    fn bindings_on(&self, cluster: &str) -> Vec<String> {
        let mut keys: Vec<String> = self
            .bindings
            .iter()
            .filter(|(_, b)| b.clusters.iter().any(|c| c == cluster))
            .map(|(k, _)| k.clone())
            .collect();
        keys.sort();
        keys
    }

    fn tasks(&self) -> i64 {
        self.bindings
            .values()
            .map(|b| i64::try_from(b.tasks).unwrap_or(i64::MAX))
            .sum()
    }
}

struct Kinds {
    rb: Arc<ResourceKind>,
    crb: Arc<ResourceKind>,
    cluster: Arc<ResourceKind>,
    pp: Arc<ResourceKind>,
    cpp: Arc<ResourceKind>,
}

struct Shared {
    objects: Objects,
    kinds: Kinds,
    index: RwLock<Index>,
    queue: WorkQueue,
    bucket: Mutex<TokenBucket>,
    metrics: EvictionMetrics,
    events: EventRecorder,
    tracker: Tracker,
}

/// Starts the failover controller; it runs until `stop` turns true.
pub fn spawn(
    objects: Objects,
    metrics: EvictionMetrics,
    options: EvictionOptions,
    events: EventRecorder,
    tracker: Tracker,
    stop: watch::Receiver<bool>,
) -> Result<tokio::task::JoinHandle<()>, ObjectError> {
    let (rb, crb) = objects.binding_kinds()?;
    let policy_gv = format!("{POLICY_GROUP}/{POLICY_VERSION}");
    let kinds = Kinds {
        rb,
        crb,
        cluster: objects.kind(&format!("{CLUSTER_GROUP}/{CLUSTER_VERSION}"), "Cluster")?,
        pp: objects.kind(&policy_gv, "PropagationPolicy")?,
        cpp: objects.kind(&policy_gv, "ClusterPropagationPolicy")?,
    };
    let cluster_prefix = kind_prefix(&kinds.cluster);
    let binding_prefixes = [kind_prefix(&kinds.rb), kind_prefix(&kinds.crb)];
    let shared = Arc::new(Shared {
        objects,
        kinds,
        index: RwLock::new(Index::default()),
        queue: WorkQueue::new(),
        bucket: Mutex::new(TokenBucket::new(options.rate, options.burst)),
        metrics,
        events,
        tracker,
    });
    feed::spawn(
        shared.objects.store(),
        [cluster_prefix],
        &shared,
        Shared::on_cluster,
        &shared.tracker,
        &stop,
    );
    let [rb_prefix, crb_prefix] = binding_prefixes;
    feed::spawn(
        shared.objects.store(),
        [rb_prefix],
        &shared,
        Shared::on_rb,
        &shared.tracker,
        &stop,
    );
    feed::spawn(
        shared.objects.store(),
        [crb_prefix],
        &shared,
        Shared::on_crb,
        &shared.tracker,
        &stop,
    );
    Ok(runner::spawn(shared, stop))
}

impl Reconciler for Shared {
    const NAME: &'static str = "failover";

    fn queue(&self) -> &WorkQueue {
        &self.queue
    }

    fn tracker(&self) -> &Tracker {
        &self.tracker
    }

    async fn reconcile(&self, key: &str) -> Result<&'static str, ObjectError> {
        self.reconcile_binding(key, Timestamp::now()).await
    }

    fn count(&self, outcome: &'static str) {
        self.metrics
            .reconciles
            .get_or_create(&ResultLabel { result: outcome })
            .inc();
    }
}

/// A cluster's NoExecute taints, `timeAdded` taken from `known` (the
/// index's copy) or `now` when the taint carries none.
fn no_execute_taints(cluster: &Cluster, known: Option<&Vec<Taint>>, now: Timestamp) -> Vec<Taint> {
    cluster
        .spec
        .taints
        .iter()
        .filter(|t| t.effect == NO_EXECUTE)
        .map(|t| {
            let mut t = t.clone();
            if t.time_added.is_none() {
                let seen = known
                    .and_then(|k| {
                        k.iter()
                            .find(|o| o.key == t.key && o.value == t.value)
                            .and_then(|o| o.time_added.clone())
                    })
                    .unwrap_or(Time(now));
                t.time_added = Some(seen);
            }
            t
        })
        .collect()
}

/// Sets the binding's `GracefulEviction` condition to what `f` says.
fn set_eviction_condition(binding: &mut Value, f: &Finished) {
    if !binding.get("status").is_some_and(Value::is_object) {
        binding["status"] = serde_json::json!({});
    }
    let mut conditions: Vec<Value> = binding["status"]
        .get("conditions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    set_condition(
        &mut conditions,
        decide::CONDITION_GRACEFUL_EVICTION,
        f.ok,
        f.reason,
        &f.message,
        &hami_apiserver::meta::now_rfc3339(),
    );
    binding["status"]["conditions"] = Value::Array(conditions);
}

impl Shared {
    fn on_cluster(&self, change: Change) {
        let now = Timestamp::now();
        let mut queue = BTreeSet::new();
        let mut index = self.index.write();
        let put = |index: &mut Index, kv: &hami_store::KeyValue, queue: &mut BTreeSet<String>| {
            let Some((_, name)) = parse_key(&self.kinds.cluster, &kv.key) else {
                return;
            };
            let Ok(cluster) = serde_json::from_slice::<Cluster>(&kv.value) else {
                tracing::warn!(key = kv.key, "failover: unreadable Cluster skipped");
                return;
            };
            let taints = no_execute_taints(&cluster, index.taints.get(name), now);
            let old = if taints.is_empty() {
                index.taints.remove(name)
            } else {
                index.taints.insert(name.to_string(), taints.clone())
            };
            if old.unwrap_or_default() != taints {
                queue.extend(index.bindings_on(name));
            }
        };
        match change {
            Change::Reset(items) => {
                let listed: BTreeSet<&str> = items
                    .iter()
                    .filter_map(|kv| parse_key(&self.kinds.cluster, &kv.key).map(|(_, n)| n))
                    .collect();
                index.taints.retain(|n, _| listed.contains(n.as_str()));
                for kv in &items {
                    put(&mut index, kv, &mut queue);
                }
            }
            Change::Apply(kv) => put(&mut index, &kv, &mut queue),
            Change::Delete(kv) => {
                if let Some((_, name)) = parse_key(&self.kinds.cluster, &kv.key) {
                    index.taints.remove(name);
                }
            }
        }
        drop(index);
        for k in queue {
            self.queue.add(k);
        }
    }

    fn on_rb(&self, change: Change) {
        self.on_binding(change, true);
    }

    fn on_crb(&self, change: Change) {
        self.on_binding(change, false);
    }

    fn on_binding(&self, change: Change, namespaced: bool) {
        let kind = if namespaced {
            &self.kinds.rb
        } else {
            &self.kinds.crb
        };
        let mut queue = BTreeSet::new();
        {
            let mut index = self.index.write();
            let mut put = |index: &mut Index, kv: &hami_store::KeyValue| {
                let Some(object) = serde_json::from_slice::<Value>(&kv.value).ok() else {
                    return;
                };
                let Some(spec) = spec_of::<ResourceBindingSpec>(&object) else {
                    return;
                };
                let entry = BindingEntry {
                    clusters: spec.clusters.iter().map(|t| t.name.clone()).collect(),
                    tasks: spec.graceful_eviction_tasks.len(),
                };
                // Worth a look: a task stands (status may have made it
                // done), or a target carries a NoExecute taint.
                if entry.tasks > 0 || entry.clusters.iter().any(|c| index.taints.contains_key(c)) {
                    queue.insert(kv.key.clone());
                }
                index.bindings.insert(kv.key.clone(), entry);
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
            self.metrics.in_progress.set(index.tasks());
        }
        for k in queue {
            self.queue.add(k);
        }
    }

    /// The policy's failover settings for a binding (defaults when none).
    fn purge_settings(&self, binding: &Value) -> PurgeSettings {
        let labels = binding.pointer("/metadata/labels");
        let label = |l: &str| labels.and_then(|m| m.get(l)).and_then(Value::as_str);
        let policy = match (
            label(LABEL_PP_NAMESPACE),
            label(LABEL_PP_NAME),
            label(LABEL_CPP_NAME),
        ) {
            (Some(ns), Some(name), _) => self.objects.get(&self.kinds.pp, Some(ns), name),
            (_, _, Some(name)) => self.objects.get(&self.kinds.cpp, None, name),
            _ => Ok(None),
        };
        let failover = policy
            .ok()
            .flatten()
            .and_then(|p| spec_of::<PropagationSpec>(&p.object))
            .and_then(|s| s.failover)
            .and_then(|f| f.application);
        let mut settings = PurgeSettings::default();
        if let Some(app) = failover {
            if let Some(m) = app.purge_mode {
                settings.purge_mode = m;
            }
            if let Some(g) = app.grace_period_seconds {
                settings.grace_period_seconds = g;
            }
        }
        settings
    }

    async fn reconcile_binding(
        &self,
        key: &str,
        now: Timestamp,
    ) -> Result<&'static str, ObjectError> {
        let (kind, ns, name) = if let Some((ns, name)) = parse_key(&self.kinds.rb, key) {
            (&self.kinds.rb, ns, name)
        } else if let Some((_, name)) = parse_key(&self.kinds.crb, key) {
            (&self.kinds.crb, None, name)
        } else {
            return Ok("unchanged");
        };
        let Some(stored) = self.objects.get(kind, ns, name)? else {
            return Ok("unchanged");
        };
        if stored
            .object
            .pointer("/metadata/deletionTimestamp")
            .is_some()
        {
            return Ok("unchanged");
        }
        let Some(spec) = spec_of::<ResourceBindingSpec>(&stored.object) else {
            return Err(ObjectError::Incomplete(
                "the binding's spec is unreadable".into(),
            ));
        };
        let status: ResourceBindingStatus = stored
            .object
            .get("status")
            .and_then(|s| serde_json::from_value(s.clone()).ok())
            .unwrap_or_default();
        let mut next = spec.clone();
        let mut finished: Vec<(&'static str, Finished)> = Vec::new();
        let ready = decide::ready_in_targets(&spec, &status.aggregated_status);
        let mut wake: Option<Timestamp> = None;
        next.graceful_eviction_tasks.retain(|task| {
            match decide::task_done(task, &spec, &status.aggregated_status, now) {
                Ok(done) => {
                    let reason = match done {
                        Done::Ready => "ready",
                        Done::GraceElapsed => "grace_elapsed",
                        Done::Directly => "directly",
                    };
                    finished.push((reason, decide::finished(task, done, ready, spec.replicas)));
                    false
                }
                Err(at) => {
                    if let Some(at) = at {
                        wake = Some(wake.map_or(at, |w| w.min(at)));
                    }
                    true
                }
            }
        });
        let taints = self.index.read().taints.clone();
        let mut evicted: Vec<(String, Taint)> = Vec::new();
        let mut purge = PurgeSettings::default();
        match decide::evictions(&next, &taints, now) {
            Eviction::None => {}
            Eviction::Later(at) => wake = Some(wake.map_or(at, |w| w.min(at))),
            Eviction::Now(leave) => {
                let taken = self.bucket.lock().take(now);
                match taken {
                    Ok(()) => {
                        purge = self.purge_settings(&stored.object);
                        next = decide::evicted_spec(&next, &leave, purge, now);
                        evicted = leave;
                    }
                    Err(wait) => {
                        self.metrics.rate_limited.inc();
                        self.queue.add_after(key, wait);
                    }
                }
            }
        }
        if let Some(at) = wake {
            let secs = at.duration_since(now).as_secs_f64().max(0.0);
            // A little past the moment, so the check sees it elapsed.
            self.queue.add_after(
                key,
                Duration::from_secs_f64(secs) + Duration::from_millis(50),
            );
        }
        if next == spec {
            return Ok("unchanged");
        }
        let mut new = stored.object.clone();
        new["spec"] = serde_json::to_value(&next).map_err(|e| {
            ObjectError::Api(Box::new(hami_apiserver::ApiError::internal(e.to_string())))
        })?;
        // The binding says how the last task ended (a forced end first).
        let said = finished
            .iter()
            .map(|(_, f)| f)
            .find(|f| !f.ok)
            .or_else(|| finished.last().map(|(_, f)| f));
        if let Some(f) = said {
            set_eviction_condition(&mut new, f);
        }
        // A task that ends is no scheduling input: when that is all this
        // write changes on a binding the scheduler is done with, the write
        // says so, or a static division would be computed afresh and put
        // replicas straight back on a cluster that just recovered (a
        // flapping cluster would then pull them back and forth). Moving
        // back takes a fresh reschedule trigger (a spec change).
        let only_ended = evicted.is_empty() && {
            let mut same = next.clone();
            same.graceful_eviction_tasks = spec.graceful_eviction_tasks.clone();
            same == spec
        };
        let scheduled = !needs_scheduling(&stored.object);
        self.objects
            .write(kind, ns, name, &stored, new, |o| {
                if only_ended && scheduled {
                    observe_generation(o);
                }
            })
            .await?;
        let binding = Involved::of(&stored.object);
        let template = Involved::template(&spec.resource);
        let tell = |type_: EventType, reason: &str, message: &str| {
            for o in binding.iter().chain([&template]) {
                self.events.record(o, type_, reason, message);
            }
        };
        for (cluster, taint) in &evicted {
            self.metrics
                .evictions
                .get_or_create(&ReasonLabel {
                    reason: decide::REASON_TAINT,
                })
                .inc();
            tracing::info!(
                binding = key,
                cluster,
                "failover: evicting (untolerated NoExecute taint)"
            );
            tell(
                EventType::Warning,
                decide::EVENT_EVICTING,
                &decide::eviction_message(cluster, taint, purge),
            );
        }
        for (reason, f) in finished {
            self.metrics
                .finished
                .get_or_create(&ReasonLabel { reason })
                .inc();
            tracing::info!(
                binding = key,
                reason,
                message = f.message,
                "failover: eviction task finished"
            );
            let type_ = if f.ok {
                EventType::Normal
            } else {
                EventType::Warning
            };
            tell(type_, f.reason, &f.message);
        }
        Ok("changed")
    }
}
