//! The agent's metrics (prefix `hami_agent_`). Labels come from fixed sets:
//! result from [`ApplyResult`], watch from the agent's watch names, object
//! from `cluster` / `work`.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Outcome of one manifest apply or delete.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum ApplyResult {
    /// Server-side apply succeeded.
    Applied,
    /// Server-side apply failed.
    Failed,
    /// A manifest dropped from a Work (or of a deleted Work) was deleted.
    Deleted,
    /// Deleting failed.
    DeleteFailed,
}

impl ApplyResult {
    fn as_str(self) -> &'static str {
        match self {
            ApplyResult::Applied => "applied",
            ApplyResult::Failed => "failed",
            ApplyResult::Deleted => "deleted",
            ApplyResult::DeleteFailed => "delete_failed",
        }
    }
}

/// `result` label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    /// applied, failed, deleted, delete_failed.
    pub result: &'static str,
}

/// `watch` label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WatchLabels {
    /// nodes, pods, works, deployments, replicasets, statefulsets, daemonsets, jobs.
    pub watch: &'static str,
}

/// `object` label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ObjectLabels {
    /// cluster or work.
    pub object: &'static str,
}

/// The agent's metrics. Cloning shares the counters, so hami-control can
/// register them once and hand a clone to the agent logic of every Push
/// cluster.
#[derive(Clone, Debug)]
pub struct AgentMetrics {
    /// Manifest applies and deletes by result.
    pub applies: Family<ResultLabels, Counter>,
    /// Latency of one server-side apply to the member cluster, seconds.
    pub apply_duration: Histogram,
    /// Watch failures (each restarts the watch after a backoff).
    pub watch_restarts: Family<WatchLabels, Counter>,
    /// Lease renewals that failed or were skipped (member unreachable).
    pub lease_renew_failures: Counter,
    /// Status writes to the control plane by object.
    pub status_writes: Family<ObjectLabels, Counter>,
    /// 1 while the member cluster's API answers.
    pub member_reachable: Gauge,
}

impl AgentMetrics {
    /// Metrics registered nowhere (tests, or a caller without /metrics).
    pub fn unregistered() -> Self {
        Self {
            applies: Family::default(),
            apply_duration: Histogram::new(apply_buckets()),
            watch_restarts: Family::default(),
            lease_renew_failures: Counter::default(),
            status_writes: Family::default(),
            member_reachable: Gauge::default(),
        }
    }

    /// Registers the metrics under `hami_agent_`.
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self::unregistered();
        let r = registry.sub_registry_with_prefix("hami_agent");
        r.register(
            "applies",
            "Manifest applies and deletes in the member cluster by result",
            m.applies.clone(),
        );
        r.register(
            "apply_duration_seconds",
            "Latency of one server-side apply to the member cluster",
            m.apply_duration.clone(),
        );
        r.register(
            "watch_restarts",
            "Watch failures; each restarts its watch after a backoff",
            m.watch_restarts.clone(),
        );
        r.register(
            "lease_renew_failures",
            "Lease renewals that failed or were skipped because the member was unreachable",
            m.lease_renew_failures.clone(),
        );
        r.register(
            "status_writes",
            "Status writes to the control plane by object",
            m.status_writes.clone(),
        );
        r.register(
            "member_reachable",
            "1 while the member cluster's API answers",
            m.member_reachable.clone(),
        );
        m
    }

    /// Counts one apply or delete.
    pub fn applied(&self, result: ApplyResult) {
        self.applies
            .get_or_create(&ResultLabels {
                result: result.as_str(),
            })
            .inc();
    }

    /// Counts one watch failure.
    pub fn watch_restart(&self, watch: &'static str) {
        self.watch_restarts
            .get_or_create(&WatchLabels { watch })
            .inc();
    }

    /// Counts one status write.
    pub fn status_written(&self, object: &'static str) {
        self.status_writes
            .get_or_create(&ObjectLabels { object })
            .inc();
    }
}

/// A server-side apply is one round trip plus an object merge on the member
/// API server: ~1 ms on loopback, 10-100 ms across regions, seconds when the
/// member struggles. Buckets from 1 ms doubling to ~8 s (14 buckets) cover
/// the three with useful resolution and a tail for timeouts.
fn apply_buckets() -> impl Iterator<Item = f64> {
    exponential_buckets(0.001, 2.0, 14)
}
