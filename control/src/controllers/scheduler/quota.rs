//! Quota as capacity (pure): each cluster's estimate capped by what the
//! FederatedResourceQuotas of the binding's namespace still allow there, and
//! the state a decision would put the binding in, for admission.

use hami_api::binding::{ResourceBindingSpec, TargetCluster};
use hami_placement::capacity::general_estimate;
use hami_placement::{ClusterView, Shape};
use hami_quota::{ReplicaRequest, State};

/// `available` (replicas each cluster can still take beyond what the
/// binding holds there, `None` for "no accurate answer") capped by `room`
/// (replicas of the binding the quotas allow in each cluster, the binding's
/// own usage included; `None`: not limited). The placement core adds the
/// binding's current replicas to what it is given, so the cap is the room
/// beyond them. A cluster without an accurate answer gets the general
/// estimate from its resource summary, capped (the core would have used
/// that estimate itself).
pub fn cap_available(
    available: &[Option<i32>],
    room: &[Option<i64>],
    current: &[TargetCluster],
    views: &[ClusterView],
    shape: &Shape,
) -> Vec<Option<i32>> {
    views
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let a = available.get(i).copied().flatten();
            let Some(r) = room.get(i).copied().flatten() else {
                return a;
            };
            let held: i64 = current
                .iter()
                .filter(|t| t.name == c.name)
                .map(|t| i64::from(t.replicas))
                .sum();
            let beyond = (r - held).max(0);
            let base = match a {
                Some(a) => Some(i64::from(a)),
                None => general_estimate(c.free.as_ref(), shape),
            };
            base.map(|b| i32::try_from(b.min(beyond)).unwrap_or(i32::MAX))
        })
        .collect()
}

/// The binding's state once `clusters` is written (its eviction tasks and
/// request as they are).
pub fn state_after(
    spec: &ResourceBindingSpec,
    request: ReplicaRequest,
    clusters: &[TargetCluster],
) -> State {
    let mut after = ResourceBindingSpec {
        clusters: clusters.to_vec(),
        ..Default::default()
    };
    after.replicas = spec.replicas;
    after
        .graceful_eviction_tasks
        .clone_from(&spec.graceful_eviction_tasks);
    State {
        request,
        assignment: hami_quota::Assignment::from_binding(&after),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(name: &str, replicas: i32) -> TargetCluster {
        TargetCluster {
            name: name.into(),
            replicas,
        }
    }

    #[test]
    fn room_beyond_current_caps_each_estimate() {
        let views = [
            ClusterView::new("a"),
            ClusterView::new("b"),
            ClusterView::new("c"),
            ClusterView::new("d"),
        ];
        // a: estimator says 10 more, quota room 6 with 2 held: 4 more.
        // b: not limited by quota: 7 as is.
        // c: room 1 but 3 held (a lowered limit): nothing more, never below.
        // d: no accurate answer and no resource summary: stays unknown.
        let out = cap_available(
            &[Some(10), Some(7), Some(5), None],
            &[Some(6), None, Some(1), Some(4)],
            &[target("a", 2), target("c", 3)],
            &views,
            &Shape::default(),
        );
        assert_eq!(out, vec![Some(4), Some(7), Some(0), None]);
    }

    #[test]
    fn the_state_after_keeps_eviction_tasks() {
        let mut spec = ResourceBindingSpec {
            replicas: 4,
            ..Default::default()
        };
        spec.graceful_eviction_tasks = vec![hami_api::binding::GracefulEvictionTask {
            from_cluster: "old".into(),
            replicas: Some(2),
            ..Default::default()
        }];
        let s = state_after(&spec, ReplicaRequest::default(), &[target("new", 4)]);
        assert_eq!(s.assignment.clusters.get("new"), Some(&4));
        assert_eq!(s.assignment.evicting.get("old"), Some(&2));
    }
}
