//! Filters: which clusters may take the binding at all. Each cluster is
//! checked against every filter, so a rejection lists every reason.
//!
//! - ready: the cluster's Ready condition is True;
//! - affinity ([`affinity`]): names, exclusions, labels, provider/region/zone;
//! - taints ([`taint`]): NoSchedule and NoExecute taints are tolerated;
//! - API enablement: the cluster serves the template's apiVersion and kind
//!   (a cluster that has not reported its APIs yet is given the benefit of
//!   the doubt);
//! - eviction: the binding is not being evicted from the cluster.

pub mod affinity;
pub mod taint;

use std::collections::BTreeMap;

use hami_api::propagation::ClusterAffinity;

use crate::outcome::Reason;
use crate::view::{BindingView, ClusterView};

/// A cluster that passed the filters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Passed {
    /// Index into the cluster list.
    pub index: usize,
    /// Replicas of the binding it holds now.
    pub current: i64,
}

/// Current replicas by cluster name (built once per decision).
pub fn current_map(binding: &BindingView) -> BTreeMap<&str, i64> {
    let mut m = BTreeMap::new();
    for t in &binding.current {
        *m.entry(t.name.as_str()).or_insert(0) += i64::from(t.replicas.max(0));
    }
    m
}

/// Whether `cluster` serves `api_version`/`kind`; unknown when not reported.
pub fn api_enabled(cluster: &ClusterView, api_version: &str, kind: &str) -> bool {
    match &cluster.api_enablements {
        None => true,
        Some(set) => set.iter().any(|(gv, k)| gv == api_version && k == kind),
    }
}

/// Runs every filter on every cluster. Clusters that pass are returned in
/// input order; rejected ones are appended to `rejected` with all reasons.
pub fn run(
    binding: &BindingView,
    clusters: &[ClusterView],
    affinity: Option<&ClusterAffinity>,
    current: &BTreeMap<&str, i64>,
    rejected: &mut Vec<(usize, Reason)>,
) -> Vec<Passed> {
    let tolerations = &binding.placement.cluster_tolerations;
    let affinity = affinity.map(affinity::Compiled::new);
    let mut passed = Vec::with_capacity(clusters.len());
    for (index, c) in clusters.iter().enumerate() {
        let before = rejected.len();
        let held = if current.is_empty() {
            0
        } else {
            current.get(c.name.as_str()).copied().unwrap_or(0)
        };
        if !c.ready {
            rejected.push((index, Reason::NotReady));
        }
        if let Some(a) = &affinity
            && !a.matches(c)
        {
            rejected.push((index, Reason::AffinityMismatch));
        }
        for t in taint::untolerated(&c.taints, tolerations, held > 0) {
            rejected.push((
                index,
                Reason::UntoleratedTaint {
                    taint: taint::describe(&c.taints[t]),
                },
            ));
        }
        if !api_enabled(c, &binding.api_version, &binding.kind) {
            rejected.push((
                index,
                Reason::ApiNotEnabled {
                    api_version: binding.api_version.clone(),
                    kind: binding.kind.clone(),
                },
            ));
        }
        if binding.evicting.contains(&c.name) {
            rejected.push((index, Reason::Evicting));
        }
        if rejected.len() == before {
            passed.push(Passed {
                index,
                current: held,
            });
        }
    }
    passed
}

#[cfg(test)]
mod tests {
    use super::*;
    use hami_api::binding::TargetCluster;
    use hami_api::propagation::Placement;
    use k8s_openapi::api::core::v1::Toleration;

    #[test]
    fn every_filter_and_every_reason() {
        let mut not_serving = ClusterView::new("no-api");
        not_serving.api_enablements = Some([("batch/v1".to_string(), "Job".to_string())].into());
        let mut serving = ClusterView::new("api");
        serving.api_enablements = Some([("apps/v1".to_string(), "Deployment".to_string())].into());
        let mut down = ClusterView::new("down").with_taint("x", "", "NoSchedule");
        down.ready = false;
        let clusters = vec![
            ClusterView::new("ok"),
            ClusterView::new("tainted").with_taint("gpu", "a100", "NoSchedule"),
            ClusterView::new("tolerated").with_taint("spot", "", "NoSchedule"),
            ClusterView::new("held-noschedule").with_taint("maint", "", "NoSchedule"),
            ClusterView::new("held-noexecute").with_taint("maint", "", "NoExecute"),
            not_serving,
            serving,
            ClusterView::new("leaving"),
            down,
            ClusterView::new("excluded"),
        ];
        let mut b = BindingView::new(
            "default/web",
            3,
            Placement {
                cluster_tolerations: vec![Toleration {
                    key: Some("spot".into()),
                    operator: Some("Exists".into()),
                    ..Default::default()
                }],
                ..Default::default()
            },
        );
        b.current = vec![
            TargetCluster {
                name: "held-noschedule".into(),
                replicas: 1,
            },
            TargetCluster {
                name: "held-noexecute".into(),
                replicas: 1,
            },
        ];
        b.evicting = vec!["leaving".into()];
        let affinity = ClusterAffinity {
            exclude: vec!["excluded".into(), "down".into()],
            ..Default::default()
        };
        let mut rejected = vec![];
        let current = current_map(&b);
        let passed = run(&b, &clusters, Some(&affinity), &current, &mut rejected);
        let names: Vec<&str> = passed
            .iter()
            .map(|p| clusters[p.index].name.as_str())
            .collect();
        assert_eq!(names, ["ok", "tolerated", "held-noschedule", "api"]);
        assert_eq!(passed[2].current, 1);
        let got: Vec<(&str, Reason)> = rejected
            .into_iter()
            .map(|(i, r)| (clusters[i].name.as_str(), r))
            .collect();
        let taint = |t: &str| Reason::UntoleratedTaint { taint: t.into() };
        assert_eq!(
            got,
            vec![
                ("tainted", taint("{gpu=a100:NoSchedule}")),
                ("held-noexecute", taint("{maint:NoExecute}")),
                (
                    "no-api",
                    Reason::ApiNotEnabled {
                        api_version: "apps/v1".into(),
                        kind: "Deployment".into()
                    }
                ),
                ("leaving", Reason::Evicting),
                ("down", Reason::NotReady),
                ("down", Reason::AffinityMismatch),
                ("down", taint("{x:NoSchedule}")),
                ("excluded", Reason::AffinityMismatch),
            ]
        );
    }
}
