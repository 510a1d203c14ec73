//! Random fleets and bindings for property tests of the whole pipeline:
//! labels, taints, API enablements, resource summaries, names, exclusions,
//! selectors, spread constraints, current assignments, evictions and every
//! strategy, drawn from small pools so that matches and ties are common.
#![allow(dead_code)]

use std::collections::BTreeSet;

use hami_api::binding::TargetCluster;
use hami_api::propagation::{
    ClusterAffinity, ClusterAffinityTerm, ClusterPreferences, DynamicWeightFactor, FieldSelector,
    Placement, ReplicaDivisionPreference, ReplicaSchedulingStrategy, ReplicaSchedulingType,
    SpreadByField, SpreadConstraint, StaticClusterWeight,
};
use hami_placement::{BindingView, ClusterView, Shape};
use k8s_openapi::api::core::v1::{NodeSelectorRequirement, Toleration};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement};
use proptest::prelude::*;

/// A fleet and bindings to decide over it, each with its estimates.
pub type Fleet = (Vec<ClusterView>, Vec<(BindingView, Vec<Option<i32>>)>);

const NAMES: [&str; 8] = ["a", "b", "c", "d", "east", "west", "x1", "zz"];
const KEYS: [&str; 3] = ["env", "tier", "gpu"];
const VALUES: [&str; 3] = ["prod", "dev", "a100"];
const RESOURCES: [&str; 5] = [
    "cpu",
    "memory",
    "pods",
    "nvidia.com/gpu",
    "nvidia.com/gpumem",
];

fn pick<T: Clone + std::fmt::Debug + 'static>(pool: &'static [T]) -> impl Strategy<Value = T> {
    prop::sample::select(pool)
}

pub fn cluster() -> impl Strategy<Value = ClusterView> {
    (
        (
            pick(&NAMES),
            prop::collection::vec((pick(&KEYS), pick(&VALUES)), 0..3),
            prop::option::of((
                pick(&["aws", "gcp"]),
                pick(&["us", "eu"]),
                pick(&["z1", "z2"]),
            )),
            prop::collection::vec(
                (
                    pick(&["gpu", "maint"]),
                    pick(&["NoSchedule", "NoExecute", "PreferNoSchedule"]),
                ),
                0..2,
            ),
        ),
        (
            prop::bool::weighted(0.85),
            prop::option::of(prop::collection::btree_set(
                (pick(&["apps/v1", "batch/v1"]), pick(&["Deployment", "Job"])),
                0..4,
            )),
            prop::option::of(prop::collection::vec(
                (pick(&RESOURCES), -1000i128..20_000),
                0..4,
            )),
        ),
    )
        .prop_map(|((name, labels, loc, taints), (ready, apis, free))| {
            let mut v = ClusterView::new(name);
            for (k, val) in labels {
                v = v.with_label(k, val);
            }
            if let Some((p, r, z)) = loc {
                v = v.with_location(p, r, z);
            }
            for (k, e) in taints {
                v = v.with_taint(k, "", e);
            }
            v.ready = ready;
            v.api_enablements = apis.map(|s| {
                s.into_iter()
                    .map(|(g, k)| (g.to_string(), k.to_string()))
                    .collect::<BTreeSet<_>>()
            });
            if let Some(f) = free {
                v = v.with_free(f);
            }
            v
        })
}

pub fn affinity() -> impl Strategy<Value = ClusterAffinity> {
    let expr = (
        pick(&KEYS),
        pick(&["In", "NotIn", "Exists", "DoesNotExist", "Gt"]),
        prop::collection::vec(pick(&VALUES), 0..3),
    )
        .prop_map(|(k, op, vals)| LabelSelectorRequirement {
            key: k.into(),
            operator: op.into(),
            values: Some(vals.into_iter().map(String::from).collect()),
        });
    let selector = (
        prop::option::of(prop::collection::btree_map(
            pick(&KEYS).prop_map(String::from),
            pick(&["prod", "dev", "a100", "nope"]).prop_map(String::from),
            0..2,
        )),
        prop::option::of(prop::collection::vec(expr, 0..2)),
    )
        .prop_map(|(ml, me)| LabelSelector {
            match_labels: ml,
            match_expressions: me,
        });
    let field = (
        pick(&["provider", "region", "zone", "rack"]),
        pick(&["In", "NotIn"]),
        prop::collection::vec(pick(&["aws", "us", "z1", "eu"]), 0..2),
    )
        .prop_map(|(k, op, vals)| FieldSelector {
            match_expressions: vec![NodeSelectorRequirement {
                key: k.into(),
                operator: op.into(),
                values: Some(vals.into_iter().map(String::from).collect()),
            }],
        });
    (
        prop::option::weighted(
            0.3,
            prop::collection::vec(pick(&["a", "b", "east", "nope"]), 0..3),
        ),
        prop::option::weighted(
            0.3,
            prop::collection::vec(pick(&["c", "west", "nope"]), 0..2),
        ),
        prop::option::weighted(0.4, selector),
        prop::option::weighted(0.3, field),
    )
        .prop_map(|(names, exclude, sel, field)| ClusterAffinity {
            cluster_names: names.into_iter().flatten().map(String::from).collect(),
            exclude: exclude.into_iter().flatten().map(String::from).collect(),
            label_selector: sel,
            field_selector: field,
        })
}

pub fn scheduling() -> impl Strategy<Value = Option<ReplicaSchedulingStrategy>> {
    let weights = prop::collection::vec((affinity(), -1i64..4), 0..3).prop_map(|rules| {
        rules
            .into_iter()
            .map(|(target_cluster, weight)| StaticClusterWeight {
                target_cluster,
                weight,
            })
            .collect::<Vec<_>>()
    });
    prop_oneof![
        Just(None),
        Just(Some(ReplicaSchedulingStrategy {
            replica_scheduling_type: ReplicaSchedulingType::Duplicated,
            ..Default::default()
        })),
        weights.prop_map(|list| Some(ReplicaSchedulingStrategy {
            replica_scheduling_type: ReplicaSchedulingType::Divided,
            replica_division_preference: Some(ReplicaDivisionPreference::Weighted),
            weight_preference: Some(ClusterPreferences {
                static_weight_list: list,
                dynamic_weight: None,
            }),
        })),
        Just(Some(ReplicaSchedulingStrategy {
            replica_scheduling_type: ReplicaSchedulingType::Divided,
            replica_division_preference: Some(ReplicaDivisionPreference::Weighted),
            weight_preference: Some(ClusterPreferences {
                dynamic_weight: Some(DynamicWeightFactor::AvailableReplicas),
                ..Default::default()
            }),
        })),
        Just(Some(ReplicaSchedulingStrategy {
            replica_scheduling_type: ReplicaSchedulingType::Divided,
            replica_division_preference: Some(ReplicaDivisionPreference::Aggregated),
            weight_preference: None,
        })),
    ]
}

pub fn binding() -> impl Strategy<Value = BindingView> {
    (
        (
            pick(&["default/web", "ns/job", "x"]),
            0i32..40,
            prop::option::of(affinity()),
            prop::collection::vec(affinity(), 0..3)
                .prop_map(|t| if t.len() == 1 { vec![] } else { t }),
            scheduling(),
        ),
        (
            prop::collection::vec(
                (
                    any::<bool>(),
                    pick(&[
                        SpreadByField::Region,
                        SpreadByField::Zone,
                        SpreadByField::Provider,
                        SpreadByField::Cluster,
                    ]),
                    0i32..3,
                    1i32..4,
                ),
                0..2,
            ),
            prop::collection::vec(
                (pick(&["", "gpu", "maint"]), pick(&["Exists", "Equal"])),
                0..2,
            ),
            prop::collection::vec((pick(&NAMES), 0i32..10), 0..3),
            prop::collection::vec(pick(&NAMES), 0..2),
            prop::collection::vec((pick(&RESOURCES), 0i128..3000), 0..3),
            (
                pick(&["apps/v1", "batch/v1"]),
                pick(&["Deployment", "Job"]),
                any::<bool>(),
            ),
        ),
    )
        .prop_map(
            |(
                (key, replicas, aff, terms, rs),
                (spread, tols, current, evicting, request, (gv, kind, reschedule)),
            )| {
                let placement = Placement {
                    cluster_affinity: aff,
                    cluster_affinities: terms
                        .into_iter()
                        .enumerate()
                        .map(|(i, affinity)| ClusterAffinityTerm {
                            affinity_name: format!("t{i}"),
                            affinity,
                        })
                        .collect(),
                    cluster_tolerations: tols
                        .into_iter()
                        .map(|(k, op)| Toleration {
                            key: (!k.is_empty()).then(|| k.to_string()),
                            operator: Some(op.to_string()),
                            ..Default::default()
                        })
                        .collect(),
                    spread_constraints: spread
                        .into_iter()
                        .map(|(by_label, field, min, max)| SpreadConstraint {
                            spread_by_field: (!by_label).then_some(field),
                            spread_by_label: by_label.then(|| "tier".to_string()),
                            min_groups: Some(min),
                            max_groups: Some(max),
                        })
                        .collect(),
                    replica_scheduling: rs,
                };
                let mut b = BindingView::new(key, replicas, placement);
                b.api_version = gv.to_string();
                b.kind = kind.to_string();
                b.reschedule = reschedule;
                b.current = current
                    .into_iter()
                    .map(|(name, replicas)| TargetCluster {
                        name: name.to_string(),
                        replicas,
                    })
                    .collect();
                b.evicting = evicting.into_iter().map(String::from).collect();
                b.request = Shape::from_milli(request);
                b
            },
        )
}

/// Per binding, an estimate per cluster (`None`: unreachable).
pub fn estimates(clusters: usize) -> impl Strategy<Value = Vec<Option<i32>>> {
    prop::collection::vec(prop::option::weighted(0.8, -2i32..30), clusters..=clusters)
}

pub fn fleet_and_bindings() -> impl Strategy<Value = Fleet> {
    prop::collection::vec(cluster(), 0..9).prop_flat_map(|clusters| {
        let n = clusters.len();
        (
            Just(clusters),
            prop::collection::vec((binding(), estimates(n)), 1..6),
        )
    })
}
