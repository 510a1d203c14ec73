use std::collections::BTreeMap;

use hami_api::binding::{AggregatedStatusItem, ResourceBindingSpec, TargetCluster};
use hami_api::propagation::{
    ClusterPreferences, DynamicWeightFactor, Placement, ReplicaDivisionPreference,
    ReplicaSchedulingStrategy, ReplicaSchedulingType,
};
use serde_json::json;

use super::*;

fn targets(list: &[(&str, i32)]) -> Vec<TargetCluster> {
    list.iter()
        .map(|(n, r)| TargetCluster {
            name: (*n).into(),
            replicas: *r,
        })
        .collect()
}

fn counts(list: &[(&str, i32)]) -> BTreeMap<String, i32> {
    list.iter().map(|(n, r)| ((*n).to_string(), *r)).collect()
}

fn spec_with(rs: Option<ReplicaSchedulingStrategy>, replicas: i32) -> ResourceBindingSpec {
    ResourceBindingSpec {
        replicas,
        placement: Some(Placement {
            replica_scheduling: rs,
            ..Placement::default()
        }),
        ..ResourceBindingSpec::default()
    }
}

fn divided(
    preference: ReplicaDivisionPreference,
    dynamic: bool,
) -> Option<ReplicaSchedulingStrategy> {
    Some(ReplicaSchedulingStrategy {
        replica_scheduling_type: ReplicaSchedulingType::Divided,
        replica_division_preference: Some(preference),
        weight_preference: Some(ClusterPreferences {
            dynamic_weight: dynamic.then_some(DynamicWeightFactor::AvailableReplicas),
            ..ClusterPreferences::default()
        }),
    })
}

#[test]
fn only_dynamically_divided_bindings_with_replicas() {
    use ReplicaDivisionPreference::{Aggregated, Weighted};
    assert!(dynamically_divided(&spec_with(divided(Weighted, true), 4)));
    assert!(dynamically_divided(&spec_with(
        divided(Aggregated, false),
        4
    )));
    assert!(
        !dynamically_divided(&spec_with(divided(Weighted, false), 4)),
        "static weights would put the replicas straight back"
    );
    assert!(!dynamically_divided(&spec_with(divided(Weighted, true), 0)));
    let duplicated = Some(ReplicaSchedulingStrategy {
        replica_scheduling_type: ReplicaSchedulingType::Duplicated,
        ..ReplicaSchedulingStrategy::default()
    });
    assert!(!dynamically_divided(&spec_with(duplicated, 4)));
    assert!(!dynamically_divided(&spec_with(None, 4)));
}

#[test]
fn ready_counts_come_from_the_aggregated_status() {
    let item = |c: &str, s: Option<serde_json::Value>| AggregatedStatusItem {
        cluster_name: c.into(),
        status: s,
        ..AggregatedStatusItem::default()
    };
    let status = [
        item("a", Some(json!({"replicas": 3, "readyReplicas": 2}))),
        item("b", Some(json!({"replicas": 3}))),
        item("c", None),
    ];
    assert_eq!(
        ready_by_cluster("Deployment", &status),
        counts(&[("a", 2), ("b", 0)])
    );
    let job = [item("a", Some(json!({"active": 2, "ready": 1})))];
    assert_eq!(ready_by_cluster("Job", &job), counts(&[("a", 1)]));
}

#[test]
fn asks_only_where_fewer_are_ready_than_assigned() {
    let t = targets(&[("a", 3), ("b", 2), ("c", 2), ("d", 0)]);
    let ready = counts(&[("a", 3), ("b", 1)]);
    assert_eq!(undesired(&t, &ready), ["b", "c"], "c: nothing reported yet");
}

#[test]
fn lowers_by_the_unschedulable_never_below_ready() {
    // a: 4 assigned, 1 ready, 3 pending -> 1 stays.
    // b: 3 assigned, 2 ready, 3 "unschedulable" (stale answer) -> 2 stay.
    // c: 2 assigned, none pending -> unchanged.
    let t = targets(&[("a", 4), ("b", 3), ("c", 2)]);
    let ready = counts(&[("a", 1), ("b", 2), ("c", 2)]);
    let p = plan(&t, &ready, &counts(&[("a", 3), ("b", 3)])).unwrap();
    assert_eq!(p.clusters, targets(&[("a", 1), ("b", 2), ("c", 2)]));
    assert_eq!(p.moved, [("a".to_string(), 3), ("b".to_string(), 1)]);
    assert_eq!(p.total(), 4);
    let m = p.message(60);
    assert!(
        m.starts_with("4 replica(s) descheduled") && m.contains("3 in cluster a"),
        "{m}"
    );
}

#[test]
fn a_cluster_with_nothing_ready_leaves_the_assignment() {
    let t = targets(&[("a", 2), ("b", 2)]);
    let p = plan(&t, &counts(&[("b", 2)]), &counts(&[("a", 2)])).unwrap();
    assert_eq!(p.clusters, targets(&[("b", 2)]));
    assert_eq!(p.moved, [("a".to_string(), 2)]);
}

#[test]
fn nothing_to_do_is_no_plan() {
    let t = targets(&[("a", 2), ("b", 2)]);
    assert_eq!(plan(&t, &counts(&[]), &counts(&[])), None);
    assert_eq!(plan(&t, &counts(&[]), &counts(&[("a", 0)])), None);
    // More unschedulable than assigned: the answer is about other pods
    // (e.g. a scale-down in flight); left alone, as Karmada does.
    assert_eq!(plan(&t, &counts(&[]), &counts(&[("a", 5)])), None);
    // Everything pending is ready (the answer raced a start): unchanged.
    assert_eq!(plan(&t, &counts(&[("a", 2)]), &counts(&[("a", 1)])), None);
}
