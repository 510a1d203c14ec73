//! The agent's metrics (prefix `hami_agent_`). Every series carries the
//! member `cluster` (bounded by the fleet): one process may run the agents
//! of several clusters (hami-control's Push agents, the simulated Pull
//! members of `hami up --sim-clusters`) over one registry. The other labels
//! come from fixed sets: result from [`ApplyResult`], watch from the
//! agent's watch names, object from `cluster` / `work`.
//!
//! [`AgentMetrics::register`] registers the families once;
//! [`AgentMetrics::for_cluster`] gives the handle one agent writes through.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

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
    /// Every result, so that each has a series from the start.
    pub const ALL: [ApplyResult; 4] = [
        ApplyResult::Applied,
        ApplyResult::Failed,
        ApplyResult::Deleted,
        ApplyResult::DeleteFailed,
    ];

    /// The `result` label value.
    pub fn as_str(self) -> &'static str {
        match self {
            ApplyResult::Applied => "applied",
            ApplyResult::Failed => "failed",
            ApplyResult::Deleted => "deleted",
            ApplyResult::DeleteFailed => "delete_failed",
        }
    }
}

/// `cluster` label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ClusterLabels {
    /// The member cluster.
    pub cluster: String,
}

/// `cluster` and `result` labels.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    /// The member cluster.
    pub cluster: String,
    /// applied, failed, deleted, delete_failed.
    pub result: &'static str,
}

/// `cluster` and `watch` labels.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WatchLabels {
    /// The member cluster.
    pub cluster: String,
    /// nodes, pods, works, deployments, replicasets, statefulsets, daemonsets, jobs.
    pub watch: &'static str,
}

/// `cluster` and `object` labels.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ObjectLabels {
    /// The member cluster.
    pub cluster: String,
    /// cluster or work.
    pub object: &'static str,
}

/// Status writes are of these objects.
const OBJECTS: [&str; 2] = ["cluster", "work"];

/// The agent's watches: the member's Nodes and Pods, the control plane's
/// Works, and the kinds whose status it reflects
/// ([`super::status::WATCHED_KINDS`]).
fn watches() -> impl Iterator<Item = &'static str> {
    ["nodes", "pods", "works"]
        .into_iter()
        .chain(super::status::WATCHED_KINDS.iter().map(|k| k.2))
}

/// The agent's metric families. Cloning shares them, so hami-control
/// registers them once and binds a clone to every agent it runs
/// ([`AgentMetrics::for_cluster`]).
#[derive(Clone, Debug)]
pub struct AgentMetrics {
    /// Manifest applies and deletes by cluster and result.
    pub applies: Family<ResultLabels, Counter>,
    /// Latency of one server-side apply to the member cluster, seconds.
    pub apply_duration: Family<ClusterLabels, Histogram>,
    /// Watch failures (each restarts the watch after a backoff).
    pub watch_restarts: Family<WatchLabels, Counter>,
    /// Lease renewals that failed or were skipped (member unreachable).
    pub lease_renew_failures: Family<ClusterLabels, Counter>,
    /// Status writes to the control plane by object.
    pub status_writes: Family<ObjectLabels, Counter>,
    /// 1 while the member cluster's API answers.
    pub member_reachable: Family<ClusterLabels, Gauge>,
    /// The cluster this handle writes for ("" until bound).
    cluster: String,
}

impl AgentMetrics {
    /// Metrics registered nowhere (tests, or a caller without /metrics).
    pub fn unregistered() -> Self {
        Self {
            applies: Family::default(),
            apply_duration: Family::new_with_constructor(|| Histogram::new(apply_buckets())),
            watch_restarts: Family::default(),
            lease_renew_failures: Family::default(),
            status_writes: Family::default(),
            member_reachable: Family::default(),
            cluster: String::new(),
        }
    }

    /// Registers the families under `hami_agent_`.
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self::unregistered();
        let r = registry.sub_registry_with_prefix("hami_agent");
        r.register(
            "applies",
            "Manifest applies and deletes in the member cluster by result",
            m.applies.clone(),
        );
        r.register_with_unit(
            "apply_duration",
            "Latency of one server-side apply to the member cluster",
            Unit::Seconds,
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

    /// The same families, writing for `cluster`. Every counter of the
    /// cluster gets its series at once (at 0), so a rate over it is 0
    /// rather than absent before the first event (member_reachable waits
    /// for the first probe: 0 would claim the member is down).
    pub fn for_cluster(&self, cluster: &str) -> Self {
        let bound = Self {
            cluster: cluster.to_string(),
            ..self.clone()
        };
        for r in ApplyResult::ALL {
            drop(bound.applies.get_or_create(&bound.result(r)));
        }
        for object in OBJECTS {
            drop(bound.status_writes.get_or_create(&bound.object(object)));
        }
        for watch in watches() {
            drop(bound.watch_restarts.get_or_create(&bound.watch(watch)));
        }
        drop(bound.apply_duration.get_or_create(&bound.labels()));
        drop(bound.lease_renew_failures.get_or_create(&bound.labels()));
        bound
    }

    /// The cluster this handle writes for.
    pub fn cluster(&self) -> &str {
        &self.cluster
    }

    fn labels(&self) -> ClusterLabels {
        ClusterLabels {
            cluster: self.cluster.clone(),
        }
    }

    fn result(&self, result: ApplyResult) -> ResultLabels {
        ResultLabels {
            cluster: self.cluster.clone(),
            result: result.as_str(),
        }
    }

    fn object(&self, object: &'static str) -> ObjectLabels {
        ObjectLabels {
            cluster: self.cluster.clone(),
            object,
        }
    }

    fn watch(&self, watch: &'static str) -> WatchLabels {
        WatchLabels {
            cluster: self.cluster.clone(),
            watch,
        }
    }

    /// Counts one apply or delete.
    pub fn applied(&self, result: ApplyResult) {
        self.applies.get_or_create(&self.result(result)).inc();
    }

    /// Records the latency of one server-side apply.
    pub fn observe_apply(&self, seconds: f64) {
        self.apply_duration
            .get_or_create(&self.labels())
            .observe(seconds);
    }

    /// Counts one watch failure.
    pub fn watch_restart(&self, watch: &'static str) {
        self.watch_restarts.get_or_create(&self.watch(watch)).inc();
    }

    /// Counts one failed or skipped Lease renewal.
    pub fn lease_renew_failed(&self) {
        self.lease_renew_failures
            .get_or_create(&self.labels())
            .inc();
    }

    /// Sets whether the member's API answers.
    pub fn set_member_reachable(&self, reachable: bool) {
        self.member_reachable
            .get_or_create(&self.labels())
            .set(i64::from(reachable));
    }

    /// Counts one status write.
    pub fn status_written(&self, object: &'static str) {
        self.status_writes.get_or_create(&self.object(object)).inc();
    }

    /// Applies and deletes of this cluster with `result` so far.
    pub fn applies_of(&self, result: ApplyResult) -> u64 {
        self.applies.get_or_create(&self.result(result)).get()
    }

    /// Failures of this cluster's watch `watch` so far.
    pub fn watch_restarts_of(&self, watch: &'static str) -> u64 {
        self.watch_restarts.get_or_create(&self.watch(watch)).get()
    }

    /// Failed or skipped Lease renewals of this cluster so far.
    pub fn lease_renew_failures_of(&self) -> u64 {
        self.lease_renew_failures
            .get_or_create(&self.labels())
            .get()
    }

    /// Status writes of `object` (`cluster` or `work`) so far.
    pub fn status_writes_of(&self, object: &'static str) -> u64 {
        self.status_writes.get_or_create(&self.object(object)).get()
    }
}

/// A server-side apply is one round trip plus an object merge on the member
/// API server: ~1 ms on loopback, 10-100 ms across regions, seconds when the
/// member struggles. Buckets from 1 ms doubling to ~8 s (14 buckets) cover
/// the three with useful resolution and a tail for timeouts.
fn apply_buckets() -> impl Iterator<Item = f64> {
    exponential_buckets(0.001, 2.0, 14)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn two_agents_share_the_families_with_their_own_cluster_label() {
        let mut registry = Registry::default();
        let families = AgentMetrics::register(&mut registry);
        let a = families.for_cluster("member-1");
        let b = families.for_cluster("member-2");
        a.applied(ApplyResult::Applied);
        a.applied(ApplyResult::Applied);
        b.applied(ApplyResult::Failed);
        a.lease_renew_failed();
        b.set_member_reachable(true);
        a.observe_apply(0.003);
        a.watch_restart("pods");
        a.status_written("work");
        assert_eq!(a.applies_of(ApplyResult::Applied), 2);
        assert_eq!(b.applies_of(ApplyResult::Applied), 0);
        assert_eq!(a.watch_restarts_of("pods"), 1);
        assert_eq!(b.watch_restarts_of("pods"), 0);
        assert_eq!(
            (a.status_writes_of("work"), a.status_writes_of("cluster")),
            (1, 0)
        );

        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        for line in [
            r#"hami_agent_applies_total{cluster="member-1",result="applied"} 2"#,
            r#"hami_agent_applies_total{cluster="member-1",result="failed"} 0"#,
            r#"hami_agent_applies_total{cluster="member-2",result="failed"} 1"#,
            r#"hami_agent_lease_renew_failures_total{cluster="member-1"} 1"#,
            r#"hami_agent_lease_renew_failures_total{cluster="member-2"} 0"#,
            r#"hami_agent_member_reachable{cluster="member-2"} 1"#,
            r#"hami_agent_apply_duration_seconds_count{cluster="member-1"} 1"#,
            r#"hami_agent_watch_restarts_total{cluster="member-1",watch="pods"} 1"#,
            r#"hami_agent_watch_restarts_total{cluster="member-2",watch="jobs"} 0"#,
            r#"hami_agent_watch_restarts_total{cluster="member-2",watch="works"} 0"#,
            r#"hami_agent_status_writes_total{cluster="member-2",object="cluster"} 0"#,
        ] {
            assert!(text.contains(line), "{line} missing in\n{text}");
        }
    }
}
