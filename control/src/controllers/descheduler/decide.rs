//! The descheduler's decisions, pure: which bindings it looks at, which of
//! their clusters it asks about, and the lowered assignment once the
//! estimators said how many replicas stay unschedulable there.
//!
//! As Karmada's descheduler: only dynamically divided bindings (Divided
//! with the dynamic weight, or Aggregated) — a static division would put
//! the replicas straight back. A target cluster is asked about only when
//! fewer replicas are ready there than it was given. Its count drops by the
//! unschedulable replicas, never below what is ready there; the scheduler
//! then places the freed replicas by available replicas, which the full
//! cluster's estimator reports as none.

use std::collections::BTreeMap;

use hami_api::binding::{AggregatedStatusItem, ResourceBindingSpec, TargetCluster};
use hami_placement::{Strategy, strategy_of};

/// Reason label and Event reason of replicas moved because they stayed
/// unschedulable in their cluster.
pub const REASON_UNSCHEDULABLE: &str = "unschedulable";
/// Event reason of a descheduling write (Karmada's).
pub const EVENT_DESCHEDULED: &str = "DescheduleBindingSucceed";

/// Whether the descheduler looks at a binding: replicas divided by what
/// clusters can hold (dynamic weight or aggregated).
pub fn dynamically_divided(spec: &ResourceBindingSpec) -> bool {
    spec.replicas > 0
        && spec.placement.as_ref().is_some_and(|p| {
            matches!(
                strategy_of(p),
                Strategy::DynamicWeight | Strategy::Aggregated
            )
        })
}

/// The status field that counts ready replicas of `kind`.
fn ready_field(kind: &str) -> &'static str {
    match kind {
        "Job" => "ready",
        _ => "readyReplicas",
    }
}

/// Ready replicas per cluster from the binding's aggregated status; a
/// cluster that reported a status without the field has 0 ready, one that
/// reported nothing is absent (unknown).
pub fn ready_by_cluster(kind: &str, status: &[AggregatedStatusItem]) -> BTreeMap<String, i32> {
    let field = ready_field(kind);
    status
        .iter()
        .filter_map(|i| {
            let s = i.status.as_ref()?;
            let ready = s
                .get(field)
                .and_then(serde_json::Value::as_i64)
                .unwrap_or(0);
            Some((
                i.cluster_name.clone(),
                i32::try_from(ready.max(0)).unwrap_or(i32::MAX),
            ))
        })
        .collect()
}

/// Target clusters worth asking: fewer replicas ready than assigned (an
/// unknown count is not enough).
pub fn undesired<'a>(targets: &'a [TargetCluster], ready: &BTreeMap<String, i32>) -> Vec<&'a str> {
    targets
        .iter()
        .filter(|t| t.replicas > 0 && ready.get(&t.name).is_none_or(|r| *r < t.replicas))
        .map(|t| t.name.as_str())
        .collect()
}

/// A descheduling decision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    /// The new `spec.clusters` (clusters lowered to 0 leave it).
    pub clusters: Vec<TargetCluster>,
    /// Replicas taken from each cluster, by name.
    pub moved: Vec<(String, i32)>,
}

impl Plan {
    /// Replicas taken in all.
    pub fn total(&self) -> i64 {
        self.moved.iter().map(|(_, n)| i64::from(*n)).sum()
    }

    /// The Event message.
    pub fn message(&self, threshold_secs: u64) -> String {
        let parts: Vec<String> = self
            .moved
            .iter()
            .map(|(c, n)| format!("{n} in cluster {c}"))
            .collect();
        format!(
            "{} replica(s) descheduled, unschedulable for at least {threshold_secs} s: {}; the scheduler places them where they fit",
            self.total(),
            parts.join(", ")
        )
    }
}

/// The lowered assignment: each target loses the replicas its estimator
/// reports unschedulable (`unschedulable`, by cluster), but keeps at least
/// its ready ones. `None` when nothing changes.
pub fn plan(
    targets: &[TargetCluster],
    ready: &BTreeMap<String, i32>,
    unschedulable: &BTreeMap<String, i32>,
) -> Option<Plan> {
    let mut clusters = Vec::with_capacity(targets.len());
    let mut moved = Vec::new();
    for t in targets {
        let pending = unschedulable.get(&t.name).copied().unwrap_or(0).max(0);
        let mut keep = t.replicas;
        if pending > 0 && t.replicas >= pending {
            keep = t.replicas - pending;
            let r = ready.get(&t.name).copied().unwrap_or(0);
            if keep < r && r <= t.replicas {
                keep = r;
            }
        }
        if keep < t.replicas {
            moved.push((t.name.clone(), t.replicas - keep));
        }
        if keep > 0 {
            clusters.push(TargetCluster {
                name: t.name.clone(),
                replicas: keep,
            });
        }
    }
    (!moved.is_empty()).then_some(Plan { clusters, moved })
}

#[cfg(test)]
#[path = "decide_tests.rs"]
mod tests;
