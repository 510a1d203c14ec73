//! Placement decisions per second: the whole pure pipeline of
//! `hami_placement::schedule_prepared` (filter, capacity, score/spread,
//! Webster division) at 10, 100, 1,000 and 5,000 clusters, for 10 and 1,000
//! replicas, per strategy, over a `PreparedClusters` snapshot built once per
//! cluster set outside the timed loop, as the scheduler keeps one between
//! cluster changes. The cost of preparing the snapshot is measured on its
//! own (`placement/prepare/N clusters`). Beside each case, in the same run, a baseline
//! that mirrors Karmada's division (`pkg/scheduler/core/division_algorithm.go`
//! and `helper.SpreadReplicasByTargetClusters`): build a weight list, sort it
//! by weight (then name), give each cluster `floor(weight * n / sum)`, then
//! hand the remainder out one replica at a time in sorted order. The
//! baseline does the division only (no filtering), so the ratio is an upper
//! bound on what the rest of hami's pipeline costs over Karmada's division.
//!
//! Run: `cargo bench -p hami-benches --bench placement`
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use hami_api::propagation::{
    ClusterAffinity, ClusterPreferences, DynamicWeightFactor, Placement, ReplicaDivisionPreference,
    ReplicaSchedulingStrategy, ReplicaSchedulingType, StaticClusterWeight,
};
use hami_placement::{
    BindingView, ClusterView, PreparedClusters, Shape, schedule, schedule_prepared,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

const SIZES: [usize; 4] = [10, 100, 1_000, 5_000];
const REPLICAS: [i32; 2] = [10, 1_000];

/// A fleet of `n` clusters in 4 providers, 8 regions and 3 zones per region,
/// each with a tier label, a resource summary and an estimate that varies.
fn fleet(n: usize) -> (Vec<ClusterView>, Vec<Option<i32>>) {
    let providers = ["aws", "gcp", "azure", "onprem"];
    let tiers = ["a", "b", "c"];
    let clusters = (0..n)
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
    // Every cluster can hold 1,000 (Duplicated fits), some much more.
    let avail = (0..n)
        .map(|i| Some(1_000 + ((i * 37) % 1_000) as i32))
        .collect();
    (clusters, avail)
}

fn divided(
    pref: ReplicaDivisionPreference,
    w: Option<ClusterPreferences>,
) -> Option<ReplicaSchedulingStrategy> {
    Some(ReplicaSchedulingStrategy {
        replica_scheduling_type: ReplicaSchedulingType::Divided,
        replica_division_preference: Some(pref),
        weight_preference: w,
    })
}

fn tier_weight(tier: &str, weight: i64) -> StaticClusterWeight {
    StaticClusterWeight {
        target_cluster: ClusterAffinity {
            label_selector: Some(LabelSelector {
                match_labels: Some([("tier".to_string(), tier.to_string())].into()),
                match_expressions: None,
            }),
            ..Default::default()
        },
        weight,
    }
}

fn strategies() -> Vec<(&'static str, Placement)> {
    let base = Placement {
        cluster_affinity: Some(ClusterAffinity {
            label_selector: Some(LabelSelector {
                match_labels: Some([("env".to_string(), "prod".to_string())].into()),
                match_expressions: None,
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    let with = |rs| Placement {
        replica_scheduling: rs,
        ..base.clone()
    };
    vec![
        (
            "duplicated",
            with(Some(ReplicaSchedulingStrategy {
                replica_scheduling_type: ReplicaSchedulingType::Duplicated,
                ..Default::default()
            })),
        ),
        (
            "static-weight",
            with(divided(
                ReplicaDivisionPreference::Weighted,
                Some(ClusterPreferences {
                    static_weight_list: vec![
                        tier_weight("a", 3),
                        tier_weight("b", 2),
                        tier_weight("c", 1),
                    ],
                    dynamic_weight: None,
                }),
            )),
        ),
        (
            "dynamic-weight",
            with(divided(
                ReplicaDivisionPreference::Weighted,
                Some(ClusterPreferences {
                    dynamic_weight: Some(DynamicWeightFactor::AvailableReplicas),
                    ..Default::default()
                }),
            )),
        ),
        (
            "aggregated",
            with(divided(ReplicaDivisionPreference::Aggregated, None)),
        ),
    ]
}

/// Karmada-style division: sort by weight desc then name, floor shares, then
/// the remainder one replica at a time in that order.
fn karmada_divide(names: &[&str], weights: &[i64], replicas: i64) -> Vec<(String, i64)> {
    let mut list: Vec<(&str, i64)> = names
        .iter()
        .copied()
        .zip(weights.iter().copied())
        .filter(|(_, w)| *w > 0)
        .collect();
    list.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(b.0)));
    let sum: i64 = list.iter().map(|(_, w)| w).sum();
    if sum == 0 {
        return vec![];
    }
    let mut out: Vec<(String, i64)> = list
        .iter()
        .map(|(n, w)| (n.to_string(), w * replicas / sum))
        .collect();
    let mut remain = replicas - out.iter().map(|(_, r)| r).sum::<i64>();
    let mut i = 0;
    while remain > 0 {
        let len = out.len();
        out[i % len].1 += 1;
        remain -= 1;
        i += 1;
    }
    out.retain(|(_, r)| *r > 0);
    out
}

fn karmada_baseline(
    strategy: &str,
    clusters: &[ClusterView],
    avail: &[Option<i32>],
    replicas: i64,
) -> Vec<(String, i64)> {
    let names: Vec<&str> = clusters.iter().map(|c| c.name.as_str()).collect();
    let available: Vec<i64> = avail.iter().map(|a| i64::from(a.unwrap_or(0))).collect();
    match strategy {
        "duplicated" => names.iter().map(|n| (n.to_string(), replicas)).collect(),
        "static-weight" => {
            let w: Vec<i64> = clusters
                .iter()
                .map(|c| match c.labels.get("tier").map(String::as_str) {
                    Some("a") => 3,
                    Some("b") => 2,
                    _ => 1,
                })
                .collect();
            karmada_divide(&names, &w, replicas)
        }
        "dynamic-weight" => karmada_divide(&names, &available, replicas),
        _ => {
            // Aggregated: sort by available desc, keep the prefix that holds
            // the replicas, then divide by available within it.
            let mut order: Vec<usize> = (0..names.len()).collect();
            order.sort_by(|&a, &b| {
                available[b]
                    .cmp(&available[a])
                    .then_with(|| names[a].cmp(names[b]))
            });
            let mut sum = 0;
            let mut keep = vec![];
            for k in order {
                if sum >= replicas {
                    break;
                }
                sum += available[k];
                keep.push(k);
            }
            let n: Vec<&str> = keep.iter().map(|&k| names[k]).collect();
            let w: Vec<i64> = keep.iter().map(|&k| available[k]).collect();
            karmada_divide(&n, &w, replicas)
        }
    }
}

fn bench(c: &mut Criterion) {
    let shape = Shape::from_milli([
        ("cpu", 1_000),
        ("memory", 1_000_000_000_000),
        ("nvidia.com/gpu", 1_000),
    ]);
    {
        let mut group = c.benchmark_group("placement/prepare");
        group
            .sample_size(10)
            .warm_up_time(Duration::from_millis(300))
            .measurement_time(Duration::from_millis(900))
            .throughput(Throughput::Elements(1));
        for &n in &SIZES {
            let (clusters, _) = fleet(n);
            group.bench_function(BenchmarkId::from_parameter(format!("{n} clusters")), |b| {
                b.iter(|| PreparedClusters::new(black_box(&clusters)))
            });
        }
        group.finish();
    }
    for (strategy, placement) in strategies() {
        let mut group = c.benchmark_group(format!("placement/{strategy}"));
        group
            .sample_size(10)
            .warm_up_time(Duration::from_millis(300))
            .measurement_time(Duration::from_millis(900))
            .throughput(Throughput::Elements(1));
        for &n in &SIZES {
            let (clusters, avail) = fleet(n);
            let prepared = PreparedClusters::new(&clusters);
            for &replicas in &REPLICAS {
                let mut binding = BindingView::new("default/bench", replicas, placement.clone());
                binding.request = shape.clone();
                let case = format!("{n} clusters, {replicas} replicas");
                // Sanity: the case is schedulable and the baseline agrees on the total.
                let d = schedule(&binding, &clusters, &avail).expect("schedulable");
                assert_eq!(
                    schedule_prepared(&binding, &prepared, &avail),
                    Ok(d.clone()),
                    "{strategy} {case}"
                );
                let base = karmada_baseline(strategy, &clusters, &avail, i64::from(replicas));
                assert_eq!(
                    d.total(),
                    base.iter().map(|(_, r)| r).sum::<i64>(),
                    "{strategy} {case}"
                );
                group.bench_function(BenchmarkId::new("hami", &case), |b| {
                    b.iter(|| {
                        schedule_prepared(
                            black_box(&binding),
                            black_box(&prepared),
                            black_box(&avail),
                        )
                    })
                });
                group.bench_function(BenchmarkId::new("karmada-division", &case), |b| {
                    b.iter(|| {
                        karmada_baseline(
                            strategy,
                            black_box(&clusters),
                            black_box(&avail),
                            i64::from(replicas),
                        )
                    })
                });
            }
        }
        group.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
