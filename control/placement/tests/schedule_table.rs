//! The whole pipeline, case by case: the cases issue 4 lists under "Done when".
#![allow(clippy::unwrap_used, clippy::expect_used)]

use hami_api::binding::TargetCluster;
use hami_api::propagation::{
    ClusterAffinity, ClusterAffinityTerm, ClusterPreferences, DynamicWeightFactor, Placement,
    ReplicaDivisionPreference, ReplicaSchedulingStrategy, ReplicaSchedulingType, SpreadByField,
    SpreadConstraint, StaticClusterWeight,
};
use hami_placement::{
    BindingView, ClusterView, Mode, Note, Problem, Reason, Reservations, Shape, Strategy, schedule,
};

fn divided(
    pref: ReplicaDivisionPreference,
    weights: Option<ClusterPreferences>,
) -> Option<ReplicaSchedulingStrategy> {
    Some(ReplicaSchedulingStrategy {
        replica_scheduling_type: ReplicaSchedulingType::Divided,
        replica_division_preference: Some(pref),
        weight_preference: weights,
    })
}

fn dynamic() -> Placement {
    Placement {
        replica_scheduling: divided(
            ReplicaDivisionPreference::Weighted,
            Some(ClusterPreferences {
                dynamic_weight: Some(DynamicWeightFactor::AvailableReplicas),
                ..Default::default()
            }),
        ),
        ..Default::default()
    }
}

fn aggregated() -> Placement {
    Placement {
        replica_scheduling: divided(ReplicaDivisionPreference::Aggregated, None),
        ..Default::default()
    }
}

fn static_weights(weights: &[(&str, i64)]) -> Placement {
    Placement {
        replica_scheduling: divided(
            ReplicaDivisionPreference::Weighted,
            Some(ClusterPreferences {
                static_weight_list: weights
                    .iter()
                    .map(|(c, w)| StaticClusterWeight {
                        target_cluster: ClusterAffinity {
                            cluster_names: vec![c.to_string()],
                            ..Default::default()
                        },
                        weight: *w,
                    })
                    .collect(),
                ..Default::default()
            }),
        ),
        ..Default::default()
    }
}

fn names(n: &[&str]) -> ClusterAffinity {
    ClusterAffinity {
        cluster_names: n.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    }
}

fn fleet(n: &[&str]) -> Vec<ClusterView> {
    n.iter().map(|c| ClusterView::new(*c)).collect()
}

fn got(d: &hami_placement::Decision) -> Vec<(&str, i32)> {
    d.clusters
        .iter()
        .map(|t| (t.name.as_str(), t.replicas))
        .collect()
}

fn targets(pairs: &[(&str, i32)]) -> Vec<TargetCluster> {
    pairs
        .iter()
        .map(|(n, r)| TargetCluster {
            name: n.to_string(),
            replicas: *r,
        })
        .collect()
}

#[test]
fn static_weights_two_to_one_with_two_replicas() {
    let b = BindingView::new("default/web", 2, static_weights(&[("a", 2), ("b", 1)]));
    let d = schedule(&b, &fleet(&["a", "b"]), &[Some(10), Some(10)]).unwrap();
    assert_eq!(got(&d), vec![("a", 1), ("b", 1)]);
    assert_eq!(d.strategy, Strategy::StaticWeight);
}

#[test]
fn static_weights_with_a_zero_weight_and_over_estimate() {
    let b = BindingView::new(
        "default/web",
        6,
        static_weights(&[("a", 1), ("b", 0), ("c", 2)]),
    );
    let d = schedule(&b, &fleet(&["a", "b", "c"]), &[Some(10), Some(10), Some(3)]).unwrap();
    assert_eq!(got(&d), vec![("a", 2), ("c", 4)]);
    assert_eq!(
        d.notes,
        vec![Note::ExceedsEstimate {
            cluster: "c".into(),
            assigned: 4,
            available: 3
        }]
    );
    // Only zero weights: unschedulable, and it says so per cluster. The rule
    // of weight 0 matches a, so the no-match fallback to equal weights does
    // not apply (Karmada requires weights of at least 1 and has no such case).
    let b = BindingView::new("default/web", 6, static_weights(&[("a", 0)]));
    let e = schedule(&b, &fleet(&["a", "b"]), &[Some(10), Some(10)]).unwrap_err();
    assert_eq!(e.reasons_for("a"), &[Reason::ZeroStaticWeight]);
    assert_eq!(e.reasons_for("b"), &[Reason::ZeroStaticWeight]);
}

/// Karmada's getStaticWeightInfoList (pkg/scheduler/core/division_algorithm.go):
/// when the candidates' weights add up to 0, i.e. no rule matches any of
/// them, every candidate weighs 1.
#[test]
fn static_weights_matching_no_candidate_divide_equally() {
    let clusters = fleet(&["a", "b", "c"]);
    let avail = [Some(10), Some(10), Some(10)];
    let b = BindingView::new("default/web", 6, static_weights(&[("x", 3)]));
    let d = schedule(&b, &clusters, &avail).unwrap();
    assert_eq!(got(&d), vec![("a", 2), ("b", 2), ("c", 2)]);
    assert_eq!(d.strategy, Strategy::StaticWeight);
    // The remainder goes by tie key: b has the smallest in "default/web".
    let b = BindingView::new("default/web", 7, static_weights(&[("x", 3), ("y", 1)]));
    let d = schedule(&b, &clusters, &avail).unwrap();
    assert_eq!(got(&d), vec![("a", 2), ("b", 3), ("c", 2)]);

    // Some rule matches a candidate: the others keep weight 0, as before.
    let b = BindingView::new("default/web", 6, static_weights(&[("a", 2), ("x", 5)]));
    let d = schedule(&b, &clusters, &avail).unwrap();
    assert_eq!(got(&d), vec![("a", 6)]);
    let b = BindingView::new("default/web", 6, static_weights(&[("a", 1), ("b", 2)]));
    let d = schedule(&b, &clusters, &avail).unwrap();
    assert_eq!(got(&d), vec![("a", 2), ("b", 4)]);

    // The candidates are those of the affinity term being tried: the rule
    // names c, which the first term leaves out, so a and b weigh 1 each.
    let mut p = static_weights(&[("c", 1)]);
    p.cluster_affinities = vec![ClusterAffinityTerm {
        affinity_name: "primary".into(),
        affinity: names(&["a", "b"]),
    }];
    let b = BindingView::new("default/web", 4, p);
    let d = schedule(&b, &clusters, &avail).unwrap();
    assert_eq!(d.affinity_name.as_deref(), Some("primary"));
    assert_eq!(got(&d), vec![("a", 2), ("b", 2)]);
}

#[test]
fn remainders_spread_fairly_over_repeated_workloads() {
    let clusters = fleet(&["a", "b", "c"]);
    for placement in [static_weights(&[]), dynamic()] {
        let mut per_cluster = [0i32; 3];
        for w in 0..300 {
            let b = BindingView::new(&format!("team/app-{w}"), 1, placement.clone());
            let d = schedule(&b, &clusters, &[Some(50), Some(50), Some(50)]).unwrap();
            for (i, c) in ["a", "b", "c"].iter().enumerate() {
                per_cluster[i] += d.replicas_on(c);
            }
        }
        assert_eq!(per_cluster.iter().sum::<i32>(), 300);
        for n in per_cluster {
            assert!((70..=130).contains(&n), "uneven: {per_cluster:?}");
        }
    }
}

#[test]
fn scale_three_six_four_keeps_clusters() {
    let clusters = fleet(&["a", "b", "c"]);
    let mut free = [10i32, 10, 10];
    let mut b = BindingView::new("default/web", 3, dynamic());
    let mut modes = vec![];
    for replicas in [3, 6, 4] {
        b.replicas = replicas;
        let avail: Vec<Option<i32>> = free.iter().map(|f| Some(*f)).collect();
        let d = schedule(&b, &clusters, &avail).unwrap();
        assert_eq!(d.total(), i64::from(replicas));
        // Update what is free and the current assignment, as the controller would.
        for (i, c) in ["a", "b", "c"].iter().enumerate() {
            free[i] -= d.replicas_on(c) - b.current_on(c);
        }
        let before: Vec<&str> = b
            .current
            .iter()
            .map(|t| t.name.as_str())
            .collect::<Vec<_>>();
        let after: Vec<&str> = d.clusters.iter().map(|t| t.name.as_str()).collect();
        if !before.is_empty() {
            assert_eq!(before, after, "clusters kept at {replicas}");
        }
        modes.push(d.mode);
        b.current = d.clusters.clone();
    }
    assert_eq!(modes, vec![Mode::Fresh, Mode::ScaleUp, Mode::ScaleDown]);
    assert!(b.current.iter().all(|t| (1..=2).contains(&t.replicas)));
}

#[test]
fn dynamic_weight_with_a_cluster_at_zero_available() {
    let b = BindingView::new("default/web", 6, dynamic());
    let d = schedule(&b, &fleet(&["a", "b", "c"]), &[Some(4), Some(0), Some(8)]).unwrap();
    assert_eq!(got(&d), vec![("a", 2), ("c", 4)]);
    let e = schedule(&b, &fleet(&["a", "b"]), &[Some(4), Some(0)]).unwrap_err();
    assert_eq!(
        e.attempts[0].problems,
        vec![Problem::CapacityShort {
            needed: 6,
            available: 4
        }]
    );
}

#[test]
fn aggregated_picks_the_fewest_clusters() {
    let b = BindingView::new("default/web", 12, aggregated());
    let d = schedule(&b, &fleet(&["a", "b", "c"]), &[Some(5), Some(8), Some(7)]).unwrap();
    // 8 + 7 >= 12 with two clusters; a is not needed. Webster by 8:7 gives 6/6.
    assert_eq!(got(&d), vec![("b", 6), ("c", 6)]);
    let b = BindingView::new("default/web", 4, aggregated());
    let d = schedule(&b, &fleet(&["a", "b", "c"]), &[Some(5), Some(8), Some(7)]).unwrap();
    assert_eq!(got(&d), vec![("b", 4)]);
}

/// Karmada's Test_dynamicScale (pkg/scheduler/core/assignment_test.go),
/// "replica 12 -> 6, aggregated 1:1:1" and "replica 12 -> 8, aggregated
/// 100:100": the scale-down keeps the larger cluster and empties the other.
#[test]
fn aggregated_scale_down_keeps_the_fewest_clusters() {
    let mut b = BindingView::new("default/web", 6, aggregated());
    b.current = targets(&[("member1", 4), ("member2", 8)]);
    let members = fleet(&["member1", "member2", "member3"]);
    let d = schedule(&b, &members, &[Some(1), Some(1), Some(1)]).unwrap();
    assert_eq!(got(&d), vec![("member2", 6)]);
    assert_eq!(d.mode, Mode::ScaleDown);

    b.replicas = 8;
    let d = schedule(&b, &members[..2], &[Some(100), Some(100)]).unwrap();
    assert_eq!(got(&d), vec![("member2", 8)]);

    // 6/3/1 to 7: a and b cover it, in proportion 6:3; c is emptied.
    b.replicas = 7;
    b.current = targets(&[("a", 6), ("b", 3), ("c", 1)]);
    let d = schedule(&b, &fleet(&["a", "b", "c"]), &[Some(0), Some(0), Some(0)]).unwrap();
    assert_eq!(got(&d), vec![("a", 5), ("b", 2)]);
    assert_eq!(d.mode, Mode::ScaleDown);
}

#[test]
fn cluster_affinities_fall_back_to_the_second_group() {
    let mut p = dynamic();
    p.cluster_affinities = vec![
        ClusterAffinityTerm {
            affinity_name: "primary".into(),
            affinity: names(&["a", "b"]),
        },
        ClusterAffinityTerm {
            affinity_name: "backup".into(),
            affinity: names(&["c"]),
        },
    ];
    let clusters = fleet(&["a", "b", "c"]);
    let b = BindingView::new("default/web", 5, p.clone());
    let d = schedule(&b, &clusters, &[Some(2), Some(2), Some(9)]).unwrap();
    assert_eq!(d.affinity_name.as_deref(), Some("backup"));
    assert_eq!(got(&d), vec![("c", 5)]);
    let b = BindingView::new("default/web", 4, p);
    let d = schedule(&b, &clusters, &[Some(2), Some(2), Some(9)]).unwrap();
    assert_eq!(d.affinity_name.as_deref(), Some("primary"));
    assert_eq!(got(&d), vec![("a", 2), ("b", 2)]);
}

fn geo() -> Vec<ClusterView> {
    vec![
        ClusterView::new("aws-us-1").with_location("aws", "us", "us-1"),
        ClusterView::new("aws-us-2").with_location("aws", "us", "us-2"),
        ClusterView::new("aws-eu-1").with_location("aws", "eu", "eu-1"),
        ClusterView::new("gcp-eu-2").with_location("gcp", "eu", "eu-2"),
        ClusterView::new("gcp-as-1").with_location("gcp", "asia", "as-1"),
    ]
}

fn spread(field: SpreadByField, min: i32, max: i32) -> SpreadConstraint {
    SpreadConstraint {
        spread_by_field: Some(field),
        min_groups: Some(min),
        max_groups: Some(max),
        ..Default::default()
    }
}

#[test]
fn spread_by_region_zone_and_provider() {
    let avail = [Some(10), Some(30), Some(5), Some(20), Some(8)];
    type Case<'a> = (
        &'a str,
        Vec<SpreadConstraint>,
        i32,
        Result<Vec<&'a str>, &'a str>,
    );
    let cases: Vec<Case> = vec![
        (
            "region max 1",
            vec![spread(SpreadByField::Region, 1, 1)],
            20,
            Ok(vec!["aws-us-1", "aws-us-2"]),
        ),
        (
            "regions min 2 max 2",
            vec![spread(SpreadByField::Region, 2, 2)],
            60,
            Ok(vec!["aws-eu-1", "aws-us-1", "aws-us-2", "gcp-eu-2"]),
        ),
        (
            "regions min 4",
            vec![spread(SpreadByField::Region, 4, 4)],
            3,
            Err("3 region group(s) available, minGroups is 4"),
        ),
        (
            "zones max 2: the two largest",
            vec![spread(SpreadByField::Zone, 2, 2)],
            40,
            Ok(vec!["aws-us-2", "gcp-eu-2"]),
        ),
        (
            "provider max 1",
            vec![spread(SpreadByField::Provider, 1, 1)],
            40,
            Ok(vec!["aws-eu-1", "aws-us-1", "aws-us-2"]),
        ),
        (
            "provider too small",
            vec![spread(SpreadByField::Provider, 1, 1)],
            50,
            Err("the 1 chosen provider group(s) can hold 45 replicas, 50 needed"),
        ),
        (
            "two regions, one cluster each",
            vec![
                spread(SpreadByField::Region, 2, 2),
                spread(SpreadByField::Cluster, 2, 2),
            ],
            40,
            Ok(vec!["aws-us-2", "gcp-eu-2"]),
        ),
    ];
    for (name, constraints, replicas, want) in cases {
        let mut p = dynamic();
        p.spread_constraints = constraints;
        let b = BindingView::new("default/web", replicas, p);
        let result = schedule(&b, &geo(), &avail);
        match (result, want) {
            (Ok(d), Ok(want)) => {
                let chosen: Vec<&str> = d.clusters.iter().map(|t| t.name.as_str()).collect();
                assert_eq!(chosen, want, "{name}");
                assert_eq!(d.total(), i64::from(replicas), "{name}");
            }
            (Err(e), Err(want)) => {
                assert_eq!(
                    e.attempts[0].problems,
                    vec![Problem::Spread {
                        message: want.into()
                    }],
                    "{name}"
                );
            }
            (other, want) => panic!("{name}: got {other:?}, want {want:?}"),
        }
    }
}

#[test]
fn unschedulable_lists_every_reason_per_cluster() {
    let mut down = ClusterView::new("down");
    down.ready = false;
    let mut old = ClusterView::new("old");
    old.api_enablements = Some([("apps/v1beta1".to_string(), "Deployment".to_string())].into());
    let clusters = vec![
        ClusterView::new("tainted").with_taint("gpu", "a100", "NoSchedule"),
        down,
        old,
        ClusterView::new("elsewhere").with_label("env", "dev"),
        ClusterView::new("small"),
    ];
    let mut p = Placement {
        cluster_affinity: Some(ClusterAffinity {
            exclude: vec!["elsewhere".into()],
            ..Default::default()
        }),
        ..Default::default()
    };
    p.replica_scheduling = Some(ReplicaSchedulingStrategy {
        replica_scheduling_type: ReplicaSchedulingType::Duplicated,
        ..Default::default()
    });
    let b = BindingView::new("default/web", 4, p);
    let e = schedule(
        &b,
        &clusters,
        &[Some(9), Some(9), Some(9), Some(9), Some(3)],
    )
    .unwrap_err();
    assert_eq!(
        e.reasons_for("tainted"),
        &[Reason::UntoleratedTaint {
            taint: "{gpu=a100:NoSchedule}".into()
        }]
    );
    assert_eq!(e.reasons_for("down"), &[Reason::NotReady]);
    assert_eq!(
        e.reasons_for("old"),
        &[Reason::ApiNotEnabled {
            api_version: "apps/v1".into(),
            kind: "Deployment".into()
        }]
    );
    assert_eq!(e.reasons_for("elsewhere"), &[Reason::AffinityMismatch]);
    assert_eq!(
        e.reasons_for("small"),
        &[Reason::InsufficientCapacity {
            available: 3,
            needed: 4
        }]
    );
    assert_eq!(
        e.to_string(),
        "0/5 clusters are available: 1 cluster(s) did not match the placement cluster affinity constraint, \
         1 cluster(s) did not serve apps/v1 Deployment, 1 cluster(s) had insufficient capacity, \
         1 cluster(s) had untolerated taint {gpu=a100:NoSchedule}, 1 cluster(s) were not ready."
    );
}

#[test]
fn unreachable_estimator_falls_back_to_the_resource_summary() {
    let clusters = vec![
        ClusterView::new("a").with_free([("cpu", 4000)]),
        ClusterView::new("b").with_free([("cpu", 2000)]),
    ];
    let mut b = BindingView::new("default/web", 5, dynamic());
    b.request = Shape::from_milli([("cpu", 1000)]);
    let d = schedule(&b, &clusters, &[None, Some(9)]).unwrap();
    // a: general estimate 4; b: min(9, 2) = 2.
    assert_eq!(got(&d), vec![("a", 3), ("b", 2)]);
    assert_eq!(
        d.notes,
        vec![Note::EstimatorUnreachable {
            cluster: "a".into()
        }]
    );
}

#[test]
fn duplicated_and_evictions() {
    let mut b = BindingView::new("default/web", 3, Placement::default());
    b.evicting = vec!["b".into()];
    let d = schedule(&b, &fleet(&["a", "b", "c"]), &[Some(3), Some(3), Some(3)]).unwrap();
    assert_eq!(got(&d), vec![("a", 3), ("c", 3)]);
    assert_eq!(d.strategy, Strategy::Duplicated);
}

#[test]
fn clusters_that_left_the_placement_are_replaced_by_a_scale_up() {
    let mut b = BindingView::new("default/web", 4, dynamic());
    b.current = targets(&[("a", 2), ("gone", 2)]);
    let d = schedule(&b, &fleet(&["a", "b"]), &[Some(0), Some(5)]).unwrap();
    assert_eq!(got(&d), vec![("a", 2), ("b", 2)]);
    assert_eq!(d.mode, Mode::ScaleUp);
}

#[test]
fn reservations_keep_a_burst_within_capacity() {
    let clusters = fleet(&["a", "b"]);
    let shape = Shape::from_milli([("nvidia.com/gpu", 1000)]);
    let estimate = [4, 4];
    let mut ledger = Reservations::new();
    let mut placed = 0;
    for w in 0..5 {
        let mut b = BindingView::new(&format!("default/job-{w}"), 2, dynamic());
        b.request = shape.clone();
        let avail: Vec<Option<i32>> = clusters
            .iter()
            .zip(estimate)
            .map(|(c, e)| ledger.adjust(&c.name, &shape, Some(e)))
            .collect();
        if let Ok(d) = schedule(&b, &clusters, &avail) {
            ledger.apply_decision(&shape, &b.current, &d.clusters);
            placed += d.total();
        }
    }
    assert_eq!(placed, 8, "8 GPUs in all: the fifth binding must wait");
    assert_eq!(ledger.replicas_on("a") + ledger.replicas_on("b"), 8);
}

#[test]
fn same_input_in_another_cluster_order_gives_the_same_decision() {
    let mut p = dynamic();
    p.spread_constraints = vec![spread(SpreadByField::Region, 2, 2)];
    let b = BindingView::new("default/web", 17, p);
    let clusters = geo();
    let avail = [Some(10), Some(30), Some(5), Some(20), Some(8)];
    let d1 = schedule(&b, &clusters, &avail).unwrap();
    let mut rev = clusters.clone();
    rev.reverse();
    let mut avail_rev = avail.to_vec();
    avail_rev.reverse();
    let d2 = schedule(&b, &rev, &avail_rev).unwrap();
    assert_eq!(d1, d2);
}
