//! A small driver for instruction counts: the benchmark's 100-cluster fleet,
//! one strategy and replica count, `ITERS` decisions over a snapshot
//! prepared once.
//!
//! ```sh
//! cargo build --release -p hami-placement --example decide
//! valgrind --tool=callgrind target/release/examples/decide static-weight 1000 200
//! ```
//! Instructions per decision = (total - the same run with 0 iterations) / 200.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;

use hami_api::propagation::{
    ClusterAffinity, ClusterPreferences, DynamicWeightFactor, Placement, ReplicaDivisionPreference,
    ReplicaSchedulingStrategy, ReplicaSchedulingType, StaticClusterWeight,
};
use hami_placement::{BindingView, ClusterView, PreparedClusters, Shape, schedule_prepared};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

fn selector(key: &str, value: &str) -> Option<LabelSelector> {
    Some(LabelSelector {
        match_labels: Some([(key.to_string(), value.to_string())].into()),
        match_expressions: None,
    })
}

fn placement(strategy: &str) -> Placement {
    let divided = |pref, w| {
        Some(ReplicaSchedulingStrategy {
            replica_scheduling_type: ReplicaSchedulingType::Divided,
            replica_division_preference: Some(pref),
            weight_preference: w,
        })
    };
    let tier = |t: &str, weight| StaticClusterWeight {
        target_cluster: ClusterAffinity {
            label_selector: selector("tier", t),
            ..Default::default()
        },
        weight,
    };
    let rs = match strategy {
        "duplicated" => Some(ReplicaSchedulingStrategy {
            replica_scheduling_type: ReplicaSchedulingType::Duplicated,
            ..Default::default()
        }),
        "static-weight" => divided(
            ReplicaDivisionPreference::Weighted,
            Some(ClusterPreferences {
                static_weight_list: vec![tier("a", 3), tier("b", 2), tier("c", 1)],
                dynamic_weight: None,
            }),
        ),
        "dynamic-weight" => divided(
            ReplicaDivisionPreference::Weighted,
            Some(ClusterPreferences {
                dynamic_weight: Some(DynamicWeightFactor::AvailableReplicas),
                ..Default::default()
            }),
        ),
        _ => divided(ReplicaDivisionPreference::Aggregated, None),
    };
    Placement {
        cluster_affinity: Some(ClusterAffinity {
            label_selector: selector("env", "prod"),
            ..Default::default()
        }),
        replica_scheduling: rs,
        ..Default::default()
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let strategy = args.get(1).map_or("static-weight", String::as_str);
    let replicas: i32 = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(1000);
    let iters: usize = args.get(3).and_then(|a| a.parse().ok()).unwrap_or(200);
    let n = 100;
    let providers = ["aws", "gcp", "azure", "onprem"];
    let tiers = ["a", "b", "c"];
    let clusters: Vec<ClusterView> = (0..n)
        .map(|i| {
            let region = format!("region-{}", i % 8);
            let zone = format!("{region}-{}", (i / 8) % 3);
            ClusterView::new(format!("member-{i:05}"))
                .with_location(providers[i % 4], &region, &zone)
                .with_label("tier", tiers[i % 3])
                .with_label("env", "prod")
                .with_free([
                    ("cpu", 4_096_000),
                    ("memory", 4_000_000_000_000_000),
                    ("nvidia.com/gpu", 4_096_000),
                ])
        })
        .collect();
    let avail: Vec<Option<i32>> = (0..n)
        .map(|i| Some(1_000 + ((i * 37) % 1_000) as i32))
        .collect();
    let mut binding = BindingView::new("default/bench", replicas, placement(strategy));
    binding.request = Shape::from_milli([
        ("cpu", 1_000),
        ("memory", 1_000_000_000_000),
        ("nvidia.com/gpu", 1_000),
    ]);
    // Prepared once per cluster set, as the scheduler does.
    let prepared = PreparedClusters::new(&clusters);
    let mut total = 0i64;
    for _ in 0..iters {
        let d = schedule_prepared(black_box(&binding), black_box(&prepared), black_box(&avail));
        total += d.map_or(-1, |d| d.total());
    }
    println!("{strategy} {replicas}: {iters} decisions, {total} replicas");
}
