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
use crate::prepared::PreparedClusters;
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
    let prepared = PreparedClusters::new(clusters);
    let mut held = vec![0; clusters.len()];
    for (name, &n) in current {
        for i in prepared.positions_of(name) {
            held[i] += n;
        }
    }
    let facts = Facts::with_held(binding, &prepared, held);
    let affinity = affinity.map(|a| affinity::Resolved::new(a, &prepared));
    run_prepared(binding, &prepared, &facts, affinity.as_ref(), rejected)
}

/// What the filters read of a binding, resolved once per decision against a
/// snapshot.
#[derive(Clone, Debug)]
pub struct Facts {
    /// Replicas of the binding each cluster holds (empty: none anywhere).
    held: Vec<i64>,
    /// Per cluster: the binding is being evicted from it (empty: from none).
    evicting: Vec<bool>,
    /// The template's API, interned; `None` when no cluster reports it.
    api: Option<u32>,
}

impl Facts {
    /// Resolves `binding`'s current assignment, evictions and API.
    pub fn new(binding: &BindingView, clusters: &PreparedClusters<'_>) -> Self {
        let mut held = Vec::new();
        if !binding.current.is_empty() {
            held = vec![0; clusters.len()];
            for t in &binding.current {
                for i in clusters.positions_of(&t.name) {
                    held[i] += i64::from(t.replicas.max(0));
                }
            }
        }
        Self::with_held(binding, clusters, held)
    }

    fn with_held(binding: &BindingView, clusters: &PreparedClusters<'_>, held: Vec<i64>) -> Self {
        Facts {
            held,
            evicting: if binding.evicting.is_empty() {
                Vec::new()
            } else {
                clusters.mask_of(&binding.evicting)
            },
            api: clusters.api_id(&binding.api_version, &binding.kind),
        }
    }

    /// Replicas of the binding cluster `c` holds.
    pub fn held(&self, c: usize) -> i64 {
        self.held.get(c).copied().unwrap_or(0)
    }
}

/// [`run`] over a prepared snapshot, with the binding's facts and the
/// affinity resolved against it.
pub fn run_prepared(
    binding: &BindingView,
    clusters: &PreparedClusters<'_>,
    facts: &Facts,
    affinity: Option<&affinity::Resolved<'_>>,
    rejected: &mut Vec<(usize, Reason)>,
) -> Vec<Passed> {
    let tolerations = &binding.placement.cluster_tolerations;
    let views = clusters.views();
    let mut passed = Vec::with_capacity(views.len());
    for (index, c) in views.iter().enumerate() {
        let before = rejected.len();
        let held = facts.held(index);
        if !c.ready {
            rejected.push((index, Reason::NotReady));
        }
        if let Some(a) = affinity
            && !a.matches(clusters, index)
        {
            rejected.push((index, Reason::AffinityMismatch));
        }
        if clusters.hard_taints[index] {
            for t in taint::untolerated(&c.taints, tolerations, held > 0) {
                rejected.push((
                    index,
                    Reason::UntoleratedTaint {
                        taint: taint::describe(&c.taints[t]),
                    },
                ));
            }
        }
        if !clusters.api_enabled(index, facts.api) {
            rejected.push((
                index,
                Reason::ApiNotEnabled {
                    api_version: binding.api_version.clone(),
                    kind: binding.kind.clone(),
                },
            ));
        }
        if facts.evicting.get(index).copied().unwrap_or(false) {
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
