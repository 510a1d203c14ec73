//! Cluster health: each Cluster's agent Lease (`hami-es-<cluster>/<cluster>`)
//! and reported Ready condition → the Ready condition and the
//! `cluster.hami.io/unreachable` / `not-ready` taints ([`decide`], pure).
//!
//! State: a synchronous index of Clusters (only taints and conditions kept)
//! and Lease renewals, fed by two store watches. A Lease lapses with time,
//! not with an event, so the controller also re-judges every cluster each
//! [`TICK`]; a change is written in one store write (spec taints and status
//! conditions together), after re-deciding on the freshly read object.
//! The index also keeps, per cluster, since when it has been judged healthy
//! without a break (in memory: after a restart a recovering cluster counts
//! from the restart), which damps recovery ([`decide::step`]).

pub mod decide;
#[cfg(test)]
mod relist_tests;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use hami_api::cluster::{Cluster, ClusterStatus};
use hami_api::common::{
    CLUSTER_GROUP, CLUSTER_VERSION, cluster_of_execution_namespace, execution_namespace,
};
use hami_apiserver::ResourceKind;
use hami_apiserver::keys::{kind_prefix, parse_key};
use hami_store::KeyValue;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::jiff::Timestamp;
use parking_lot::RwLock;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio::sync::{Notify, watch};

use super::events::{EventRecorder, Involved};
use super::feed::{self, Change};
use super::objects::{ObjectError, Objects};
use super::tracker::Tracker;
pub use decide::{Desired, Health, HealthOptions, LeaseView, Verdict};

/// How often every cluster is judged again (Leases lapse without events).
pub const TICK: Duration = Duration::from_secs(1);

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HealthLabel {
    health: &'static str,
}

/// Health controller metrics (prefix `hami_cluster_health_`).
#[derive(Clone)]
pub struct HealthMetrics {
    writes: Family<HealthLabel, Counter>,
    write_errors: Counter,
    bad_objects: Counter,
    recovering: Gauge,
}

impl HealthMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self {
            writes: Family::default(),
            write_errors: Counter::default(),
            bad_objects: Counter::default(),
            recovering: Gauge::default(),
        };
        let sub = registry.sub_registry_with_prefix("hami_cluster_health");
        sub.register(
            "writes",
            "Cluster condition and taint changes written, by the health judged (healthy, not_ready, unreachable)",
            m.writes.clone(),
        );
        sub.register(
            "write_errors",
            "Cluster health writes that failed (retried on the next tick)",
            m.write_errors.clone(),
        );
        sub.register(
            "bad_objects",
            "Clusters and Leases skipped because they could not be read",
            m.bad_objects.clone(),
        );
        sub.register(
            "recovering_clusters",
            "Clusters judged healthy that keep their health taints until they have been healthy for --cluster-success-threshold",
            m.recovering.clone(),
        );
        // Every verdict's series from the start (at 0), for dashboards.
        for health in ["healthy", "not_ready", "unreachable"] {
            drop(m.writes.get_or_create(&HealthLabel { health }));
        }
        m
    }
}

#[derive(Debug, Default, PartialEq)]
struct Index {
    clusters: BTreeMap<String, Cluster>,
    leases: BTreeMap<String, LeaseView>,
    /// Since when each cluster has been judged healthy without a break.
    healthy_since: BTreeMap<String, Timestamp>,
}

struct Shared {
    objects: Objects,
    cluster: Arc<ResourceKind>,
    lease: Arc<ResourceKind>,
    index: RwLock<Index>,
    changed: Notify,
    metrics: HealthMetrics,
    options: HealthOptions,
    events: EventRecorder,
    /// When this controller started (see [`LeaseView::seen_since`]).
    started: Timestamp,
    tracker: Tracker,
}

/// Starts the health controller; it runs until `stop` turns true.
pub fn spawn(
    objects: Objects,
    metrics: HealthMetrics,
    options: HealthOptions,
    events: EventRecorder,
    tracker: Tracker,
    mut stop: watch::Receiver<bool>,
) -> Result<tokio::task::JoinHandle<()>, ObjectError> {
    let shared = Arc::new(Shared::new(
        objects,
        metrics,
        options,
        events,
        tracker,
        Timestamp::now(),
    )?);
    let cluster_prefix = kind_prefix(&shared.cluster);
    let lease_prefix = kind_prefix(&shared.lease);
    feed::spawn(
        shared.objects.store(),
        [cluster_prefix],
        &shared,
        Shared::on_cluster_change,
        &shared.tracker,
        &stop,
    );
    feed::spawn(
        shared.objects.store(),
        [lease_prefix],
        &shared,
        Shared::on_lease_change,
        &shared.tracker,
        &stop,
    );
    Ok(tokio::spawn(async move {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // No cluster is judged before both watches listed: a Cluster
        // without its Lease in the index would look unreachable.
        tokio::select! {
            _ = shared.tracker.wait_synced() => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shared.changed.notified() => {}
                _ = stop.wait_for(|s| *s) => return,
            }
            shared.pass(Timestamp::now()).await;
        }
    }))
}

/// Keeps only what the decision reads.
fn slim(mut c: Cluster) -> Cluster {
    c.metadata.managed_fields = None;
    c.metadata.annotations = None;
    c.status = c.status.map(|s| ClusterStatus {
        conditions: s.conditions,
        ..ClusterStatus::default()
    });
    c
}

fn lease_view(kv: &KeyValue) -> Option<LeaseView> {
    view_of(serde_json::from_slice(&kv.value).ok()?)
}

fn view_of(lease: Lease) -> Option<LeaseView> {
    let spec = lease.spec?;
    let renewed = spec.renew_time?.0;
    Some(LeaseView {
        renew_time: renewed,
        duration: Duration::from_secs(u64::try_from(spec.lease_duration_seconds?).ok()?),
        renewed,
    })
}

impl Shared {
    fn new(
        objects: Objects,
        metrics: HealthMetrics,
        options: HealthOptions,
        events: EventRecorder,
        tracker: Tracker,
        started: Timestamp,
    ) -> Result<Self, ObjectError> {
        let cluster = objects.kind(&format!("{CLUSTER_GROUP}/{CLUSTER_VERSION}"), "Cluster")?;
        let lease = objects.kind("coordination.k8s.io/v1", "Lease")?;
        Ok(Shared {
            objects,
            cluster,
            lease,
            index: RwLock::new(Index::default()),
            changed: Notify::new(),
            metrics,
            options,
            events,
            started,
            tracker,
        })
    }

    /// The cluster whose agent Lease `key` is, if it is one.
    fn lease_cluster<'k>(&self, key: &'k str) -> Option<&'k str> {
        let (Some(ns), name) = parse_key(&self.lease, key)? else {
            return None;
        };
        (cluster_of_execution_namespace(ns) == Some(name)).then_some(name)
    }

    fn on_cluster_change(&self, change: Change) {
        self.on_change(change, true);
    }

    fn on_lease_change(&self, change: Change) {
        self.on_change(change, false);
    }

    /// One change under the Cluster prefix (`clusters`) or the Lease prefix.
    fn on_change(&self, change: Change, clusters: bool) {
        match change {
            Change::Reset(items) => {
                // Built beside the index, swapped in whole (one lock).
                let mut fresh = Index::default();
                for kv in &items {
                    self.apply(&mut fresh, kv);
                }
                let mut index = self.index.write();
                if clusters {
                    index.clusters = fresh.clusters;
                } else {
                    index.leases = fresh.leases;
                }
            }
            Change::Apply(kv) => self.apply(&mut self.index.write(), &kv),
            Change::Delete(kv) => {
                let mut index = self.index.write();
                if let Some((_, name)) = parse_key(&self.cluster, &kv.key) {
                    index.clusters.remove(name);
                } else if let Some(name) = self.lease_cluster(&kv.key) {
                    index.leases.remove(name);
                }
            }
        }
        self.changed.notify_one();
    }

    fn apply(&self, index: &mut Index, kv: &KeyValue) {
        if let Some((_, name)) = parse_key(&self.cluster, &kv.key) {
            match serde_json::from_slice::<Cluster>(&kv.value) {
                Ok(c) => {
                    index.clusters.insert(name.to_string(), slim(c));
                }
                Err(e) => {
                    self.metrics.bad_objects.inc();
                    tracing::warn!(key = kv.key, error = %e, "health: unreadable Cluster skipped");
                }
            }
        } else if let Some(name) = self.lease_cluster(&kv.key) {
            match lease_view(kv) {
                Some(l) => {
                    index.leases.insert(name.to_string(), l);
                }
                None => {
                    self.metrics.bad_objects.inc();
                    tracing::warn!(
                        key = kv.key,
                        "health: Lease without renewTime or duration skipped"
                    );
                }
            }
        }
    }

    /// Judges every cluster at `now`; writes those that change.
    async fn pass(&self, now: Timestamp) {
        let due: Vec<String> = {
            let mut index = self.index.write();
            let Index {
                clusters,
                leases,
                healthy_since,
            } = &mut *index;
            healthy_since.retain(|name, _| clusters.contains_key(name));
            let mut due = Vec::new();
            let mut recovering = 0i64;
            for (name, c) in clusters.iter() {
                let lease = leases.get(name).map(|l| l.seen_since(self.started));
                let since = healthy_since.get(name).copied();
                let v = decide::step(c, lease.as_ref(), now, &self.options, since);
                match v.healthy_since {
                    Some(s) => {
                        healthy_since.insert(name.clone(), s);
                    }
                    None => {
                        healthy_since.remove(name);
                    }
                }
                recovering += i64::from(v.held);
                if v.desired.is_some() {
                    due.push(name.clone());
                }
            }
            self.metrics.recovering.set(recovering);
            due
        };
        for name in due {
            if let Err(e) = self.write(&name, now).await {
                self.metrics.write_errors.inc();
                tracing::debug!(cluster = name, error = %e, "health: write failed; next tick retries");
            }
        }
    }

    /// Reads the Cluster and its agent's Lease from the store (not the
    /// index, which may be behind: a Lease the index has not seen renewed
    /// would taint a live cluster), decides again on them, writes once.
    async fn write(&self, name: &str, now: Timestamp) -> Result<(), ObjectError> {
        let Some(stored) = self.objects.get(&self.cluster, None, name)? else {
            return Ok(());
        };
        let Ok(cluster) = serde_json::from_value::<Cluster>(stored.object.clone()) else {
            self.metrics.bad_objects.inc();
            return Ok(());
        };
        let lease = self
            .objects
            .get(&self.lease, Some(&execution_namespace(name)), name)?
            .and_then(|l| view_of(serde_json::from_value(l.object).ok()?))
            .map(|l| l.seen_since(self.started));
        let since = self.index.read().healthy_since.get(name).copied();
        let verdict = decide::step(&cluster, lease.as_ref(), now, &self.options, since);
        let health = verdict.health;
        let Some(desired) = verdict.desired else {
            return Ok(());
        };
        let mut new = stored.object.clone();
        new["spec"]["taints"] = serde_json::to_value(&desired.taints).unwrap_or_default();
        if !new.get("status").is_some_and(|s| s.is_object()) {
            new["status"] = serde_json::json!({});
        }
        new["status"]["conditions"] = serde_json::to_value(&desired.conditions).unwrap_or_default();
        self.objects
            .write(&self.cluster, None, name, &stored, new, |_| {})
            .await?;
        let label = match health {
            Health::Healthy => "healthy",
            Health::NotReady => "not_ready",
            Health::Unreachable => "unreachable",
        };
        let taints: Vec<String> = desired
            .taints
            .iter()
            .map(|t| format!("{}:{}", t.key, t.effect))
            .collect();
        tracing::info!(
            cluster = name,
            health = label,
            ?taints,
            "cluster health changed"
        );
        if let Some(involved) = Involved::of(&stored.object) {
            let (type_, reason, message) = decide::event(health, &desired.taints);
            self.events.record(&involved, type_, reason, message);
        }
        self.metrics
            .writes
            .get_or_create(&HealthLabel { health: label })
            .inc();
        Ok(())
    }
}
