//! The scheduler's quota gate: the single-writer accountant that decides
//! whether a placement fits the FederatedResourceQuotas of its namespace and
//! reserves it before the binding is written.
//!
//! It lives inside the scheduler, the one writer that raises
//! `spec.clusters`, and holds a [`QuotaBook`] fed by the scheduler's own
//! watches (bindings, clusters for the GPU models) plus one over
//! FederatedResourceQuotas. Every admission is `reserve` under one lock:
//! check and reservation are one step, never a read-then-write race. The
//! book is rebuilt from the store's lists when the watches start, so a
//! restarted control plane counts everything already placed and never
//! over-admits; the scheduler decides nothing before the three lists are in
//! ([`QuotaGate::synced`]).
//!
//! Bindings refused for quota wait in a per-namespace set and are queued
//! again only when that namespace's usage drops or its limits change (a
//! delete, a scale-down written, an eviction task ending, a quota raise):
//! no polling.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};

use hami_api::binding::ResourceBindingSpec;
use hami_api::cluster::Cluster;
use hami_api::quota::FederatedResourceQuotaSpec;
use hami_quota::{GpuModels, Outcome, QuotaBook, Refusal, ReplicaRequest, State};
use hami_store::KeyValue;
use parking_lot::Mutex;
use serde_json::Value;
use tokio::sync::Notify;

use super::super::feed::Change;
use super::super::objects::spec_of;
use super::super::scheduler::status::{
    REASON_QUOTA_EXCEEDED, REASON_QUOTA_UNCOUNTABLE, needs_scheduling, scheduled_condition,
    scheduled_reason,
};
use super::QuotaRef;

/// Which list the gate has seen (the scheduler waits for all three).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Feed {
    Quotas,
    Bindings,
    Clusters,
}

#[derive(Default)]
struct Inner {
    book: QuotaBook,
    /// Namespace → bindings waiting for quota there.
    waiting: BTreeMap<String, BTreeSet<String>>,
    /// Per-cluster GPU models, as the book's.
    models: GpuModels,
    /// Quota store key → (namespace, name), to forget deleted quotas.
    quota_keys: BTreeMap<String, (String, String)>,
}

/// The gate (share it in an `Arc`).
#[derive(Default)]
pub struct QuotaGate {
    inner: Mutex<Inner>,
    synced: [AtomicBool; 3],
    synced_notify: Notify,
}

impl QuotaGate {
    pub fn new() -> Self {
        Self::default()
    }

    fn index(feed: Feed) -> usize {
        match feed {
            Feed::Quotas => 0,
            Feed::Bindings => 1,
            Feed::Clusters => 2,
        }
    }

    fn mark_synced(&self, feed: Feed) {
        self.synced[Self::index(feed)].store(true, Ordering::Release);
        self.synced_notify.notify_waiters();
    }

    /// Whether every list has been seen once.
    pub fn is_synced(&self) -> bool {
        self.synced.iter().all(|s| s.load(Ordering::Acquire))
    }

    /// Waits until every list has been seen once.
    pub async fn synced(&self) {
        loop {
            let notified = self.synced_notify.notified();
            if self.is_synced() {
                return;
            }
            notified.await;
        }
    }

    /// Keys to queue again for an outcome: the waiters of freed namespaces.
    fn waiters(inner: &Inner, out: &Outcome) -> Vec<String> {
        for u in &out.uncounted {
            tracing::warn!(binding = u.key, quota = u.quota, error = %u.error,
                "quota: a binding's usage cannot be counted; its charge stays as it was");
        }
        out.freed
            .iter()
            .filter_map(|ns| inner.waiting.get(ns))
            .flatten()
            .cloned()
            .collect()
    }

    /// A FederatedResourceQuota watch change; answers keys to queue again.
    pub fn on_quota(&self, change: Change) -> Vec<String> {
        let mut inner = self.inner.lock();
        let mut requeue = Vec::new();
        let apply = |inner: &mut Inner, kv: &KeyValue| -> Vec<String> {
            let Some((r, spec)) = read_quota(kv) else {
                tracing::warn!(
                    key = kv.key,
                    "quota: unreadable FederatedResourceQuota skipped"
                );
                return Vec::new();
            };
            let out = match inner.book.set_quota(&r.namespace, &r.name, &spec) {
                Ok(out) => out,
                Err(e) => {
                    tracing::warn!(key = kv.key, error = %e, "quota: limits unreadable; not enforced");
                    inner.book.remove_quota(&r.namespace, &r.name)
                }
            };
            inner
                .quota_keys
                .insert(kv.key.clone(), (r.namespace, r.name));
            Self::waiters(inner, &out)
        };
        let forget = |inner: &mut Inner, key: &str| -> Vec<String> {
            match inner.quota_keys.remove(key) {
                Some((ns, name)) => {
                    let out = inner.book.remove_quota(&ns, &name);
                    Self::waiters(inner, &out)
                }
                None => Vec::new(),
            }
        };
        match change {
            Change::Reset(items) => {
                let keep: BTreeSet<&str> = items.iter().map(|kv| kv.key.as_str()).collect();
                let gone: Vec<String> = inner
                    .quota_keys
                    .keys()
                    .filter(|k| !keep.contains(k.as_str()))
                    .cloned()
                    .collect();
                for k in gone {
                    requeue.extend(forget(&mut inner, &k));
                }
                for kv in &items {
                    requeue.extend(apply(&mut inner, kv));
                }
                drop(inner);
                self.mark_synced(Feed::Quotas);
            }
            Change::Apply(kv) => requeue.extend(apply(&mut inner, &kv)),
            Change::Delete(kv) => requeue.extend(forget(&mut inner, &kv.key)),
        }
        requeue
    }

    /// A Cluster watch change (the scheduler's): GPU models for
    /// `nvidia.com/gpumem-percentage`. Answers keys to queue again.
    pub fn on_cluster(&self, change: &Change) -> Vec<String> {
        let mut inner = self.inner.lock();
        let mut models = inner.models.clone();
        let name_of = |kv: &KeyValue| -> Option<(String, Cluster)> {
            let c: Cluster = serde_json::from_slice(&kv.value).ok()?;
            Some((c.metadata.name.clone()?, c))
        };
        let reset = matches!(change, Change::Reset(_));
        match change {
            Change::Reset(items) => {
                models = GpuModels::new();
                for kv in items {
                    if let Some((name, c)) = name_of(kv) {
                        let gpus = c.status.map(|s| s.gpu_summary).unwrap_or_default();
                        models.set_cluster(&name, &gpus);
                    }
                }
            }
            Change::Apply(kv) => {
                if let Some((name, c)) = name_of(kv) {
                    let gpus = c.status.map(|s| s.gpu_summary).unwrap_or_default();
                    models.set_cluster(&name, &gpus);
                }
            }
            Change::Delete(kv) => {
                if let Some((name, _)) = name_of(kv) {
                    models.remove_cluster(&name);
                }
            }
        }
        let mut requeue = Vec::new();
        if models != inner.models {
            inner.models = models.clone();
            let out = inner.book.set_models(models);
            requeue = Self::waiters(&inner, &out);
        }
        drop(inner);
        if reset {
            self.mark_synced(Feed::Clusters);
        }
        requeue
    }

    fn observe(
        inner: &mut Inner,
        key: &str,
        ns: &str,
        revision: u64,
        object: &Value,
        out: &mut Outcome,
    ) {
        let Some(spec) = spec_of::<ResourceBindingSpec>(object) else {
            return;
        };
        match State::from_spec(&spec) {
            Ok(state) => {
                // Settled means admitted: the scheduler placed this
                // generation. A refusal (quota or capacity) of a new request
                // or shape is held beside the last admitted state, never
                // granted by being written.
                let settled =
                    !needs_scheduling(object) && scheduled_condition(object) == Some("True");
                let o = inner.book.observe(key, ns, revision, state, settled);
                out.freed.extend(o.freed);
                out.uncounted.extend(o.uncounted);
            }
            Err(e) => {
                tracing::warn!(key, error = %e, "quota: binding request unreadable; not counted");
            }
        }
    }

    /// The scheduler listed the ResourceBindings: `(key, namespace,
    /// revision, object)` each. Bindings not listed are gone. Answers keys
    /// to queue again.
    pub fn bindings_listed(&self, items: &[(&str, &str, u64, &Value)]) -> Vec<String> {
        let mut inner = self.inner.lock();
        let mut out = Outcome::default();
        let keep: BTreeSet<&str> = items.iter().map(|i| i.0).collect();
        for key in inner.book.binding_keys() {
            if !keep.contains(key.as_str()) {
                let o = inner.book.forget(&key);
                out.freed.extend(o.freed);
            }
        }
        for set in inner.waiting.values_mut() {
            set.retain(|k| keep.contains(k.as_str()));
        }
        // Bindings that were waiting for quota before a restart wait again,
        // and are decided once now (usage may have dropped meanwhile).
        let mut requeue = Vec::new();
        for (key, ns, revision, object) in items {
            Self::observe(&mut inner, key, ns, *revision, object, &mut out);
            if matches!(
                scheduled_reason(object),
                Some(REASON_QUOTA_EXCEEDED | REASON_QUOTA_UNCOUNTABLE)
            ) {
                inner
                    .waiting
                    .entry(ns.to_string())
                    .or_default()
                    .insert(key.to_string());
                requeue.push(key.to_string());
            }
        }
        requeue.extend(Self::waiters(&inner, &out));
        drop(inner);
        self.mark_synced(Feed::Bindings);
        requeue
    }

    /// A ResourceBinding was created or updated. Answers keys to queue again.
    pub fn binding_changed(
        &self,
        key: &str,
        ns: &str,
        revision: u64,
        object: &Value,
    ) -> Vec<String> {
        let mut inner = self.inner.lock();
        let mut out = Outcome::default();
        Self::observe(&mut inner, key, ns, revision, object, &mut out);
        Self::waiters(&inner, &out)
    }

    /// A ResourceBinding was deleted: its quota is released. Answers keys to
    /// queue again.
    pub fn binding_deleted(&self, key: &str) -> Vec<String> {
        let mut inner = self.inner.lock();
        for set in inner.waiting.values_mut() {
            set.remove(key);
        }
        let out = inner.book.forget(key);
        Self::waiters(&inner, &out)
    }

    /// Whether namespace `ns` has a quota.
    pub fn limits(&self, ns: &str) -> bool {
        self.inner.lock().book.limits_namespace(ns)
    }

    /// Per cluster, how many replicas of `request` the quotas still let
    /// binding `key` hold there (`None`: not limited).
    pub fn room(
        &self,
        key: &str,
        ns: &str,
        request: &ReplicaRequest,
        clusters: &[&str],
    ) -> Result<Vec<Option<i64>>, Refusal> {
        let inner = self.inner.lock();
        clusters
            .iter()
            .map(|c| inner.book.room(key, ns, request, c))
            .collect()
    }

    /// Admits and reserves `new` for binding `key`, or refuses it (then the
    /// binding waits in `ns` until usage drops). One step under the lock.
    /// Every decision of a namespaced binding goes through here, limited or
    /// not, so that a quota created while a write is in flight counts it.
    pub fn admit(&self, key: &str, ns: &str, new: State) -> Result<(), Refusal> {
        let mut inner = self.inner.lock();
        match inner.book.reserve(key, ns, new) {
            Ok(_) => {
                if let Some(set) = inner.waiting.get_mut(ns) {
                    set.remove(key);
                }
                Ok(())
            }
            Err(r) => {
                inner
                    .waiting
                    .entry(ns.to_string())
                    .or_default()
                    .insert(key.to_string());
                Err(r)
            }
        }
    }

    /// Refuses binding `key` without a reservation attempt (its placement
    /// failed only within the quota's room): it waits like a refused one.
    pub fn wait(&self, key: &str, ns: &str) {
        self.inner
            .lock()
            .waiting
            .entry(ns.to_string())
            .or_default()
            .insert(key.to_string());
    }

    /// The reserved decision of `key` was written at `revision`. Answers
    /// keys to queue again.
    pub fn confirm(&self, key: &str, revision: u64) -> Vec<String> {
        let mut inner = self.inner.lock();
        let out = inner.book.confirm(key, revision);
        Self::waiters(&inner, &out)
    }

    /// The reserved decision of `key` was not written. Answers keys to queue
    /// again.
    pub fn cancel(&self, key: &str) -> Vec<String> {
        let mut inner = self.inner.lock();
        let out = inner.book.cancel(key);
        Self::waiters(&inner, &out)
    }

    /// Bindings waiting for quota, over all namespaces.
    pub fn waiting(&self) -> usize {
        self.inner.lock().waiting.values().map(BTreeSet::len).sum()
    }
}

/// (namespace, name) and spec of a stored FederatedResourceQuota.
pub fn read_quota(kv: &KeyValue) -> Option<(QuotaRef, FederatedResourceQuotaSpec)> {
    let object: Value = serde_json::from_slice(&kv.value).ok()?;
    let meta = object.get("metadata")?;
    let r = QuotaRef {
        namespace: meta.get("namespace")?.as_str()?.to_string(),
        name: meta.get("name")?.as_str()?.to_string(),
    };
    let spec = spec_of::<FederatedResourceQuotaSpec>(&object)?;
    Some((r, spec))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use hami_store::KeyValue;
    use serde_json::json;

    fn kv(key: &str, revision: u64, value: Value) -> KeyValue {
        KeyValue {
            key: key.to_string(),
            value: serde_json::to_vec(&value).unwrap(),
            create_revision: 1,
            mod_revision: revision,
        }
    }

    fn quota(gpus: &str) -> Value {
        json!({"metadata": {"namespace": "ns", "name": "q"},
               "spec": {"overall": {"nvidia.com/gpu": gpus}}})
    }

    /// A settled binding of `gpus` one-GPU replicas in cluster a.
    fn binding(gpus: i32) -> Value {
        json!({
            "metadata": {"namespace": "ns", "name": "b", "generation": 1},
            "spec": {
                "resource": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "b"},
                "replicas": gpus,
                "replicaRequirements": {"resourceRequest": {"nvidia.com/gpu": "1"}},
                "clusters": [{"name": "a", "replicas": gpus}]
            },
            "status": {"schedulerObservedGeneration": 1,
                       "conditions": [{"type": "Scheduled", "status": "True"}]}
        })
    }

    fn state(gpus: i32) -> State {
        let spec: ResourceBindingSpec =
            serde_json::from_value(binding(gpus)["spec"].clone()).unwrap();
        State::from_spec(&spec).unwrap()
    }

    #[test]
    fn synced_only_after_every_list_and_waiters_come_back_when_usage_drops() {
        let gate = QuotaGate::new();
        gate.on_quota(Change::Reset(vec![kv("/q", 1, quota("4"))]));
        assert!(!gate.is_synced());
        let b = binding(3);
        gate.bindings_listed(&[("/b", "ns", 2, &b)]);
        gate.on_cluster(&Change::Reset(Vec::new()));
        assert!(gate.is_synced());

        // 3 of 4 GPUs are held: 2 more are refused and wait.
        let refused = gate.admit("/c", "ns", state(2)).unwrap_err();
        assert!(refused.is_exceeded(), "{refused}");
        assert_eq!(gate.waiting(), 1);
        // Another binding's scale-down, once written, lets it try again.
        assert_eq!(
            gate.binding_changed("/b", "ns", 3, &binding(1)),
            vec!["/c".to_string()]
        );
        gate.admit("/c", "ns", state(2)).unwrap();
        assert_eq!(gate.waiting(), 0);
        // Its reservation holds until the write answers; a failed write
        // gives it back (and wakes nobody: no one waits).
        assert!(gate.admit("/d", "ns", state(2)).is_err());
        assert_eq!(gate.cancel("/c"), vec!["/d".to_string()]);
        // A quota raise wakes the waiters too.
        assert_eq!(
            gate.on_quota(Change::Apply(kv("/q", 5, quota("8")))),
            vec!["/d".to_string()]
        );
    }

    #[test]
    fn a_written_refusal_of_a_larger_request_grants_nothing() {
        let gate = QuotaGate::new();
        gate.on_quota(Change::Reset(vec![kv("/q", 1, quota("4"))]));
        gate.bindings_listed(&[("/b", "ns", 2, &binding(2))]);
        gate.on_cluster(&Change::Reset(Vec::new()));
        // The detector writes 3 GPUs per replica: a new generation.
        let mut bigger = binding(2);
        bigger["metadata"]["generation"] = json!(2);
        bigger["spec"]["replicaRequirements"]["resourceRequest"]["nvidia.com/gpu"] = json!("3");
        gate.binding_changed("/b", "ns", 3, &bigger);
        let spec: ResourceBindingSpec = serde_json::from_value(bigger["spec"].clone()).unwrap();
        let state = State::from_spec(&spec).unwrap();
        assert!(gate.admit("/b", "ns", state.clone()).is_err());
        // The refusal is written for that generation: still not admitted,
        // however often it is decided again.
        let mut refused = bigger.clone();
        refused["status"] = json!({"schedulerObservedGeneration": 2, "conditions": [
            {"type": "Scheduled", "status": "False", "reason": "QuotaExceeded"}]});
        gate.binding_changed("/b", "ns", 4, &refused);
        assert!(gate.admit("/b", "ns", state.clone()).is_err());
        // A capacity refusal grants nothing either.
        refused["status"]["conditions"][0]["reason"] = json!("Unschedulable");
        gate.binding_changed("/b", "ns", 5, &refused);
        assert!(gate.admit("/b", "ns", state).is_err());
    }

    #[test]
    fn a_restart_finds_the_waiting_bindings_again() {
        let gate = QuotaGate::new();
        gate.on_quota(Change::Reset(vec![kv("/q", 1, quota("1"))]));
        let mut waiting = binding(0);
        waiting["status"]["conditions"][0] =
            json!({"type": "Scheduled", "status": "False", "reason": "QuotaExceeded"});
        let requeue = gate.bindings_listed(&[("/w", "ns", 2, &waiting)]);
        assert_eq!(requeue, vec!["/w".to_string()]);
        assert_eq!(gate.waiting(), 1);
        assert_eq!(gate.binding_deleted("/w"), Vec::<String>::new());
        assert_eq!(gate.waiting(), 0);
    }
}
