//! Over-commit guard (Karmada issue #1385): replicas just assigned to a
//! cluster count as used until the cluster reports them, so a burst of
//! bindings decided against the same estimate does not oversubscribe it.
//!
//! The ledger keeps, per cluster, replicas per [`Shape`] assigned but not yet
//! reported. The caller subtracts [`Reservations::reserved_for`] from each
//! accurate estimate before calling [`crate::schedule`], applies the
//! decision with [`Reservations::apply_decision`], and releases replicas
//! when the cluster's estimate reflects them (or the binding goes away).
//!
//! Replicas of another shape are converted conservatively: reserved
//! resources R block `max over resources r of ceil(R_r / request_r)`
//! replicas of a shape requesting `request_r` (exact for the same shape).

use std::collections::BTreeMap;

use hami_api::binding::TargetCluster;

use crate::view::Shape;

/// Replicas assigned but not yet reported, per cluster and shape.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Reservations {
    by_cluster: BTreeMap<String, BTreeMap<Shape, i64>>,
}

impl Reservations {
    /// An empty ledger.
    pub fn new() -> Self {
        Self::default()
    }

    /// Reserves `replicas` of `shape` on `cluster` (non-positive: no-op).
    pub fn apply(&mut self, cluster: &str, shape: &Shape, replicas: i64) {
        if replicas <= 0 {
            return;
        }
        let shapes = self.by_cluster.entry(cluster.to_string()).or_default();
        let n = shapes.entry(shape.clone()).or_insert(0);
        *n = n.saturating_add(replicas);
    }

    /// Releases up to `replicas` of `shape` on `cluster` (never below zero).
    pub fn release(&mut self, cluster: &str, shape: &Shape, replicas: i64) {
        let Some(shapes) = self.by_cluster.get_mut(cluster) else {
            return;
        };
        if let Some(n) = shapes.get_mut(shape) {
            *n -= replicas.clamp(0, *n);
            if *n == 0 {
                shapes.remove(shape);
            }
        }
        if shapes.is_empty() {
            self.by_cluster.remove(cluster);
        }
    }

    /// Forgets everything reserved on `cluster` (it reported a fresh estimate).
    pub fn release_cluster(&mut self, cluster: &str) {
        self.by_cluster.remove(cluster);
    }

    /// Reserves what a decision adds over the previous assignment: for each
    /// cluster, `max(0, new - old)` replicas of `shape`.
    pub fn apply_decision(&mut self, shape: &Shape, old: &[TargetCluster], new: &[TargetCluster]) {
        for t in new {
            let before = old
                .iter()
                .filter(|o| o.name == t.name)
                .map(|o| i64::from(o.replicas))
                .sum::<i64>();
            self.apply(&t.name, shape, i64::from(t.replicas) - before);
        }
    }

    /// Replicas of `shape` on `cluster` that the reservations block.
    pub fn reserved_for(&self, cluster: &str, shape: &Shape) -> i64 {
        let Some(shapes) = self.by_cluster.get(cluster) else {
            return 0;
        };
        if shapes.len() == 1
            && let Some(n) = shapes.get(shape)
        {
            return *n;
        }
        if shape.is_empty() {
            // A replica that requests nothing is blocked by nothing.
            return 0;
        }
        let mut blocked = 0i64;
        for (name, &per_replica) in &shape.0 {
            let reserved: i128 = shapes
                .iter()
                .map(|(s, n)| s.0.get(name).copied().unwrap_or(0) * i128::from(*n))
                .sum();
            let b = (reserved + per_replica - 1) / per_replica;
            blocked = blocked.max(i64::try_from(b).unwrap_or(i64::MAX));
        }
        blocked
    }

    /// `accurate` less the reservations for `shape` on `cluster` (never below 0).
    pub fn adjust(&self, cluster: &str, shape: &Shape, accurate: Option<i32>) -> Option<i32> {
        accurate.map(|a| {
            let left = i64::from(a) - self.reserved_for(cluster, shape);
            i32::try_from(left.max(0)).unwrap_or(0)
        })
    }

    /// Total replicas reserved on `cluster`, all shapes.
    pub fn replicas_on(&self, cluster: &str) -> i64 {
        self.by_cluster.get(cluster).map_or(0, |s| s.values().sum())
    }

    /// True when nothing is reserved.
    pub fn is_empty(&self) -> bool {
        self.by_cluster.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gpu() -> Shape {
        Shape::from_milli([("cpu", 1000), ("nvidia.com/gpu", 1000)])
    }

    fn t(name: &str, replicas: i32) -> TargetCluster {
        TargetCluster {
            name: name.into(),
            replicas,
        }
    }

    #[test]
    fn burst_does_not_oversubscribe() {
        // Cluster a can hold 4 replicas; two bindings of 3 each decided
        // back to back against the same estimate.
        let mut r = Reservations::new();
        assert_eq!(r.adjust("a", &gpu(), Some(4)), Some(4));
        r.apply_decision(&gpu(), &[], &[t("a", 3)]);
        assert_eq!(r.adjust("a", &gpu(), Some(4)), Some(1));
        r.apply_decision(&gpu(), &[], &[t("a", 1)]);
        assert_eq!(r.adjust("a", &gpu(), Some(4)), Some(0));
        assert_eq!(
            r.adjust("a", &gpu(), None),
            None,
            "unreachable stays unreachable"
        );
        r.release("a", &gpu(), 3);
        assert_eq!(r.replicas_on("a"), 1);
        r.release("a", &gpu(), 10);
        assert!(r.is_empty());
    }

    #[test]
    fn apply_decision_reserves_only_growth() {
        let mut r = Reservations::new();
        r.apply_decision(
            &gpu(),
            &[t("a", 2), t("b", 5)],
            &[t("a", 4), t("b", 3), t("c", 1)],
        );
        assert_eq!(r.replicas_on("a"), 2);
        assert_eq!(r.replicas_on("b"), 0);
        assert_eq!(r.replicas_on("c"), 1);
        r.release_cluster("a");
        assert_eq!(r.replicas_on("a"), 0);
    }

    #[test]
    fn other_shapes_block_conservatively() {
        let mut r = Reservations::new();
        let big = Shape::from_milli([("cpu", 4000), ("nvidia.com/gpu", 2000)]);
        r.apply("a", &big, 1);
        // 4 cpu and 2 GPUs reserved: blocks 4 replicas of 1 cpu + 1 GPU.
        assert_eq!(r.reserved_for("a", &gpu()), 4);
        // A cpu-only half-core shape: 8 blocked.
        assert_eq!(r.reserved_for("a", &Shape::from_milli([("cpu", 500)])), 8);
        // A shape needing only memory is not blocked by cpu and GPUs.
        assert_eq!(
            r.reserved_for("a", &Shape::from_milli([("memory", 1000)])),
            0
        );
        assert_eq!(r.reserved_for("a", &Shape::default()), 0);
        assert_eq!(r.reserved_for("b", &gpu()), 0);
    }
}
