//! The pipeline: filter, capacity, score and spread, divide; one attempt per
//! `clusterAffinities` term until one can hold the workload.

use std::collections::BTreeMap;

use hami_api::binding::TargetCluster;
use hami_api::propagation::{
    ClusterAffinity, Placement, ReplicaDivisionPreference, ReplicaSchedulingType,
    StaticClusterWeight,
};

use crate::capacity::{self, Demand};
use crate::divide::{self, Slot};
use crate::filter::{self, affinity};
use crate::outcome::{Attempt, Decision, Note, Problem, Reason, Strategy, Unschedulable};
use crate::prepared::PreparedClusters;
use crate::spread::{self, Item};
use crate::view::{BindingView, ClusterView};

/// The division strategy a placement asks for. Divided with the Weighted
/// preference uses the dynamic weight when set, else the static weights
/// (an empty list, or one whose rules match none of the candidates, weighs
/// every candidate 1). No strategy means Duplicated.
pub fn strategy_of(placement: &Placement) -> Strategy {
    let Some(rs) = &placement.replica_scheduling else {
        return Strategy::Duplicated;
    };
    match rs.replica_scheduling_type {
        ReplicaSchedulingType::Duplicated => Strategy::Duplicated,
        ReplicaSchedulingType::Divided => {
            match rs.replica_division_preference.unwrap_or_default() {
                ReplicaDivisionPreference::Aggregated => Strategy::Aggregated,
                ReplicaDivisionPreference::Weighted => {
                    if rs
                        .weight_preference
                        .as_ref()
                        .is_some_and(|w| w.dynamic_weight.is_some())
                    {
                        Strategy::DynamicWeight
                    } else {
                        Strategy::StaticWeight
                    }
                }
            }
        }
    }
}

/// A cluster's static weight on its own: the largest weight of the rules
/// matching it; 0 when none matches; 1 for every cluster when the list is
/// empty. [`schedule()`] also weighs every candidate 1 when no rule matches
/// any of them, which one cluster alone cannot tell.
pub fn static_weight_of(rules: &[StaticClusterWeight], cluster: &ClusterView) -> u64 {
    let clusters = std::slice::from_ref(cluster);
    let prepared = PreparedClusters::new(clusters);
    StaticWeights::new(rules, &prepared)
        .positive(&prepared, 0)
        .unwrap_or(0)
}

/// Static weight rules read once per decision for [`static_weight_of`]:
/// rules of weight 0 or less cannot raise the maximum above 0, so they are
/// kept apart (they still count as a match), and the rest are ordered by
/// weight, largest first, so the first rule that matches a cluster gives
/// its weight.
struct StaticWeights<'a> {
    /// The list is empty: every cluster weighs 1.
    uniform: bool,
    rules: Vec<(affinity::Resolved<'a>, u64)>,
    /// Rules of weight 0 or less: a cluster they match weighs 0 but is
    /// matched, which keeps the no-match fallback (see [`attempt`]) away.
    zero: Vec<affinity::Resolved<'a>>,
}

impl<'a> StaticWeights<'a> {
    fn new(rules: &'a [StaticClusterWeight], clusters: &PreparedClusters<'_>) -> Self {
        let mut kept: Vec<(affinity::Resolved<'a>, u64)> = Vec::with_capacity(rules.len());
        let mut zero = Vec::new();
        for r in rules {
            let target = affinity::Resolved::new(&r.target_cluster, clusters);
            match u64::try_from(r.weight).ok().filter(|&w| w > 0) {
                Some(w) => kept.push((target, w)),
                None => zero.push(target),
            }
        }
        kept.sort_by_key(|&(_, w)| std::cmp::Reverse(w));
        StaticWeights {
            uniform: rules.is_empty(),
            rules: kept,
            zero,
        }
    }

    /// No rules at all.
    fn none() -> Self {
        StaticWeights {
            uniform: true,
            rules: Vec::new(),
            zero: Vec::new(),
        }
    }

    /// The weight of cluster `c` when a rule of positive weight matches it.
    fn positive(&self, clusters: &PreparedClusters<'_>, c: usize) -> Option<u64> {
        if self.uniform {
            return Some(1);
        }
        self.rules
            .iter()
            .find(|(target, _)| target.matches(clusters, c))
            .map(|&(_, w)| w)
    }

    /// Whether a rule of weight 0 or less matches cluster `c`.
    fn zero_matches(&self, clusters: &PreparedClusters<'_>, c: usize) -> bool {
        self.zero.iter().any(|target| target.matches(clusters, c))
    }
}

/// Decides the placement of `binding` over `clusters`. `available[i]` is the
/// accurate estimate for `clusters[i]` (replicas of the binding's shape it
/// can still take, after the caller subtracted its reservations); `None`, or
/// a missing entry, means the estimator did not answer. Prepares the
/// clusters and calls [`schedule_prepared`]; a caller deciding many bindings
/// over the same clusters prepares them once.
pub fn schedule(
    binding: &BindingView,
    clusters: &[ClusterView],
    available: &[Option<i32>],
) -> Result<Decision, Unschedulable> {
    schedule_prepared(binding, &PreparedClusters::new(clusters), available)
}

/// [`schedule()`] over a snapshot prepared once for many decisions:
/// `available[i]` is the accurate estimate for `clusters.views()[i]`.
pub fn schedule_prepared(
    binding: &BindingView,
    clusters: &PreparedClusters<'_>,
    available: &[Option<i32>],
) -> Result<Decision, Unschedulable> {
    let placement = &binding.placement;
    let replicas = i64::from(binding.replicas.max(0));
    let strategy = if replicas == 0 {
        // Kinds without replicas (or scaled to zero) propagate as they are.
        Strategy::Duplicated
    } else {
        strategy_of(placement)
    };
    let demand = Demand::new(&binding.request);
    let ctx = Context {
        binding,
        clusters,
        available,
        facts: filter::Facts::new(binding, clusters),
        replicas,
        strategy,
        demand: capacity::Resolved::new(&demand, clusters),
        weights: if strategy == Strategy::StaticWeight {
            StaticWeights::new(
                placement
                    .replica_scheduling
                    .as_ref()
                    .and_then(|r| r.weight_preference.as_ref())
                    .map_or(&[], |w| w.static_weight_list.as_slice()),
                clusters,
            )
        } else {
            StaticWeights::none()
        },
    };
    let mut attempts = Vec::new();
    if placement.cluster_affinities.is_empty() {
        match attempt(&ctx, placement.cluster_affinity.as_ref()) {
            Ok(d) => return Ok(d),
            Err(a) => attempts.push(a),
        }
    } else {
        for term in &placement.cluster_affinities {
            match attempt(&ctx, Some(&term.affinity)) {
                Ok(mut d) => {
                    d.affinity_name = Some(term.affinity_name.clone());
                    return Ok(d);
                }
                Err(mut a) => {
                    a.affinity_name = Some(term.affinity_name.clone());
                    attempts.push(a);
                }
            }
        }
    }
    Err(Unschedulable { attempts })
}

/// What every attempt of one decision shares, read once.
struct Context<'a, 'c> {
    binding: &'a BindingView,
    clusters: &'a PreparedClusters<'c>,
    available: &'a [Option<i32>],
    facts: filter::Facts,
    replicas: i64,
    strategy: Strategy,
    demand: capacity::Resolved,
    weights: StaticWeights<'a>,
}

fn attempt(ctx: &Context<'_, '_>, aff: Option<&ClusterAffinity>) -> Result<Decision, Attempt> {
    let Context {
        binding,
        available,
        replicas,
        strategy,
        ..
    } = *ctx;
    let prepared = ctx.clusters;
    let clusters = prepared.views();
    let placement = &binding.placement;

    let mut rejected: Vec<(usize, Reason)> = Vec::new();
    let aff = aff.map(|a| affinity::Resolved::new(a, prepared));
    let passed = filter::run_prepared(binding, prepared, &ctx.facts, aff.as_ref(), &mut rejected);

    // Static weights of the clusters that passed. When no rule matches any
    // of them, every one weighs 1, as Karmada's getStaticWeightInfoList
    // does when the weights add up to 0 (its weights are at least 1, so
    // that is exactly when nothing matches). A rule of weight 0 that
    // matches keeps its cluster at 0.
    let static_weights: Vec<u64> = if strategy == Strategy::StaticWeight {
        let mut matched = false;
        let mut w: Vec<u64> = passed
            .iter()
            .map(|p| match ctx.weights.positive(prepared, p.index) {
                Some(w) => {
                    matched = true;
                    w
                }
                None => {
                    // Zero rules matter only until something has matched.
                    matched = matched || ctx.weights.zero_matches(prepared, p.index);
                    0
                }
            })
            .collect();
        if !matched {
            w.fill(1);
        }
        w
    } else {
        Vec::new()
    };

    // Capacity and strategy-specific eligibility.
    let mut items: Vec<Item> = Vec::with_capacity(passed.len());
    let mut extra: Vec<(i64, u64, bool)> = Vec::with_capacity(passed.len()); // (available, weight, unreachable)
    for (k, p) in passed.iter().enumerate() {
        let cap = ctx
            .demand
            .capacity(prepared, p.index, available.get(p.index).copied().flatten());
        let effective = cap.replicas.saturating_add(p.current);
        let mut weight = 0;
        let ok = match strategy {
            Strategy::Duplicated => {
                if effective >= replicas {
                    true
                } else {
                    rejected.push((
                        p.index,
                        if cap.unknown {
                            Reason::NoCapacityData
                        } else {
                            Reason::InsufficientCapacity {
                                available: effective,
                                needed: replicas,
                            }
                        },
                    ));
                    false
                }
            }
            Strategy::StaticWeight => {
                weight = static_weights.get(k).copied().unwrap_or(0);
                if weight == 0 {
                    rejected.push((p.index, Reason::ZeroStaticWeight));
                }
                weight > 0
            }
            Strategy::DynamicWeight | Strategy::Aggregated => {
                if cap.unknown && p.current == 0 {
                    rejected.push((p.index, Reason::NoCapacityData));
                }
                !(cap.unknown && p.current == 0)
            }
        };
        if ok {
            items.push(Item {
                cluster: p.index,
                locality: p.current > 0,
                capacity: effective,
            });
            extra.push((cap.replicas, weight, cap.estimator_unreachable));
        }
    }

    let need = match strategy {
        Strategy::DynamicWeight | Strategy::Aggregated => replicas,
        Strategy::Duplicated | Strategy::StaticWeight => 0,
    };
    let fail = |rejected: Vec<(usize, Reason)>, problems: Vec<Problem>| Attempt {
        affinity_name: None,
        considered: clusters.len(),
        rejected: group(clusters, rejected),
        problems,
    };
    if items.is_empty() {
        return Err(fail(rejected, vec![]));
    }
    let chosen = match spread::select(
        &placement.spread_constraints,
        clusters,
        &items,
        need,
        &mut rejected,
    ) {
        Ok(c) if !c.is_empty() => c,
        Ok(_) => return Err(fail(rejected, vec![])),
        Err(p) => return Err(fail(rejected, vec![p])),
    };

    let slots: Vec<Slot<'_>> = chosen
        .iter()
        .map(|&pos| {
            let it = &items[pos];
            Slot {
                name: clusters[it.cluster].name.as_str(),
                current: it.capacity - extra[pos].0,
                available: extra[pos].0,
                weight: extra[pos].1,
            }
        })
        .collect();
    let division = match strategy {
        Strategy::Duplicated => Ok(divide::duplicated(&slots, replicas)),
        Strategy::StaticWeight => Ok(divide::static_weight(&binding.key, &slots, replicas)),
        Strategy::DynamicWeight => {
            divide::dynamic(&binding.key, &slots, replicas, binding.reschedule)
        }
        Strategy::Aggregated => {
            divide::aggregated(&binding.key, &slots, replicas, binding.reschedule)
        }
    };
    let division = division.map_err(|p| fail(std::mem::take(&mut rejected), vec![p]))?;

    let mut out = Vec::with_capacity(slots.len());
    let mut notes = Vec::new();
    for ((slot, &pos), &n) in slots.iter().zip(&chosen).zip(&division.replicas) {
        if n == 0 && strategy != Strategy::Duplicated {
            continue;
        }
        let (avail, _, unreachable) = extra[pos];
        if unreachable {
            notes.push(Note::EstimatorUnreachable {
                cluster: slot.name.to_string(),
            });
        }
        let estimate = avail.saturating_add(slot.current);
        if strategy == Strategy::StaticWeight && n > estimate {
            notes.push(Note::ExceedsEstimate {
                cluster: slot.name.to_string(),
                assigned: n,
                available: estimate,
            });
        }
        out.push(TargetCluster {
            name: slot.name.to_string(),
            replicas: i32::try_from(n).unwrap_or(i32::MAX),
        });
    }
    // Names are unique; fleets usually come sorted, and checking that costs
    // one comparison per cluster instead of a sort's several.
    if !out.is_sorted_by(|a, b| a.name < b.name) {
        out.sort_unstable_by(|a, b| a.name.cmp(&b.name));
    }
    notes.sort_by(|a, b| note_key(a).cmp(note_key(b)));
    Ok(Decision {
        clusters: out,
        affinity_name: None,
        strategy,
        mode: division.mode,
        feasible: items.len(),
        considered: clusters.len(),
        notes,
    })
}

fn note_key(n: &Note) -> &str {
    match n {
        Note::EstimatorUnreachable { cluster } | Note::ExceedsEstimate { cluster, .. } => cluster,
    }
}

fn group(
    clusters: &[ClusterView],
    rejected: Vec<(usize, Reason)>,
) -> BTreeMap<String, Vec<Reason>> {
    let mut out: BTreeMap<String, Vec<Reason>> = BTreeMap::new();
    for (i, r) in rejected {
        out.entry(clusters[i].name.clone()).or_default().push(r);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The definition: the largest weight of the matching rules, 0 without
    /// a match, 1 for all when there are no rules.
    fn by_definition(rules: &[StaticClusterWeight], cluster: &ClusterView) -> u64 {
        if rules.is_empty() {
            return 1;
        }
        rules
            .iter()
            .filter(|r| affinity::matches(&r.target_cluster, cluster))
            .map(|r| u64::try_from(r.weight.max(0)).unwrap_or(0))
            .max()
            .unwrap_or(0)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn first_match_by_weight_is_the_largest(
            rules in prop::collection::vec(
                (prop::collection::vec(0usize..4, 0..3), prop::collection::vec(0usize..4, 0..2), -3i64..6),
                0..6,
            ),
            cluster in 0usize..4,
        ) {
            let name = |i: usize| format!("c{i}");
            let rules: Vec<StaticClusterWeight> = rules
                .into_iter()
                .map(|(names, exclude, weight)| StaticClusterWeight {
                    target_cluster: ClusterAffinity {
                        cluster_names: names.into_iter().map(name).collect(),
                        exclude: exclude.into_iter().map(name).collect(),
                        ..Default::default()
                    },
                    weight,
                })
                .collect();
            let view = ClusterView::new(name(cluster));
            prop_assert_eq!(static_weight_of(&rules, &view), by_definition(&rules, &view));
        }
    }
}
