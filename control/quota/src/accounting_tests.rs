#![allow(clippy::unwrap_used, clippy::expect_used)]

use hami_api::binding::{GracefulEvictionTask, ResourceBindingSpec, TargetCluster};
use k8s_openapi::api::core::v1::PodSpec;
use serde_json::json;

use super::*;

fn models() -> GpuModels {
    let mut m = GpuModels::new();
    m.insert("a100", "NVIDIA-A100-80GB", 81920);
    m.insert("t4", "NVIDIA-T4", 15360);
    m
}

fn pod(v: serde_json::Value) -> ReplicaRequest {
    let spec: PodSpec = serde_json::from_value(v).unwrap();
    ReplicaRequest::from_pod_spec(&spec, None).unwrap()
}

fn gpu_pod(lines: serde_json::Value) -> ReplicaRequest {
    pod(json!({"containers": [{"name": "c", "resources": {"limits": lines}}]}))
}

const W: i128 = 1000;

/// One table: request × assignment → overall charge, for a few quota lines.
#[test]
fn usage_table() {
    let m = models();
    let names = [
        "cpu",
        "requests.memory",
        "pods",
        "nvidia.com/gpu",
        "nvidia.com/gpumem",
        "nvidia.com/gpucores",
        "nvidia.com/gpumem-percentage",
    ];
    let acc = Accountant::new(names.map(String::from), &m);
    type Case = (
        &'static str,
        ReplicaRequest,
        Assignment,
        &'static [(&'static str, i128)],
    );
    let cases: Vec<Case> = vec![
        (
            "cpu and memory from requests, defaulted from limits, × replicas × clusters",
            pod(json!({"containers": [{"name": "c", "resources": {
                "limits": {"cpu": "2", "memory": "1Gi"}, "requests": {"cpu": "500m"}}}]})),
            Assignment::of(&[("a100", 2), ("t4", 1)]),
            &[
                ("cpu", 1500),
                ("requests.memory", 3 * 1024 * 1024 * 1024 * W),
                ("pods", 3 * W),
            ],
        ),
        (
            "2 GPUs × 8000 MiB = 16000 MiB per replica, cores per GPU",
            gpu_pod(
                json!({"nvidia.com/gpu": "2", "nvidia.com/gpumem": "8000", "nvidia.com/gpucores": "30"}),
            ),
            Assignment::of(&[("a100", 3)]),
            &[
                ("nvidia.com/gpu", 6 * W),
                ("nvidia.com/gpumem", 48000 * W),
                ("nvidia.com/gpucores", 180 * W),
                // 8000 MiB of an 80 GiB device = 9.765625 % → rounded up in milli.
                ("nvidia.com/gpumem-percentage", 6 * 9766),
            ],
        ),
        (
            "percentage converts through each target cluster's model memory",
            gpu_pod(json!({"nvidia.com/gpu": "1", "nvidia.com/gpumem-percentage": "50"})),
            Assignment::of(&[("a100", 1), ("t4", 2)]),
            &[
                ("nvidia.com/gpumem", (40960 + 2 * 7680) * W),
                ("nvidia.com/gpumem-percentage", 150 * W),
                ("nvidia.com/gpucores", 0),
            ],
        ),
        (
            "a GPU without memory lines takes the whole device",
            gpu_pod(json!({"nvidia.com/gpu": "2"})),
            Assignment::of(&[("t4", 1)]),
            &[
                ("nvidia.com/gpumem", 2 * 15360 * W),
                ("nvidia.com/gpumem-percentage", 200 * W),
            ],
        ),
        (
            "unknown cluster: the largest known model",
            gpu_pod(json!({"nvidia.com/gpu": "1", "nvidia.com/gpumem-percentage": "10"})),
            Assignment::of(&[("nowhere", 1)]),
            &[("nvidia.com/gpumem", 8192 * W)],
        ),
        (
            "no replicas, no usage",
            gpu_pod(json!({"nvidia.com/gpu": "1"})),
            Assignment::of(&[("a100", 0)]),
            &[("nvidia.com/gpu", 0), ("pods", 0)],
        ),
    ];
    for (why, req, assignment, want) in cases {
        let c = acc.charge(&req, &assignment).unwrap();
        for (name, v) in want {
            assert_eq!(c.overall.get(name), *v, "{why}: {name}");
        }
        let (sum, _) = crate::ledger::recompute([&c]).unwrap();
        let mut per_cluster = Amounts::new();
        for a in c.clusters.values() {
            per_cluster.add_all(a).unwrap();
        }
        assert_eq!(
            sum,
            per_cluster.without_zeros(),
            "{why}: no eviction: overall = Σ clusters"
        );
    }
}

#[test]
fn only_named_resources_are_counted() {
    let m = models();
    let acc = Accountant::new(["nvidia.com/gpu".to_string()], &m);
    let req = pod(
        json!({"containers": [{"name": "c", "resources": {"limits": {
        "cpu": "4", "memory": "1Gi", "nvidia.com/gpu": "1", "nvidia.com/gpumem": "100"}}}]}),
    );
    let c = acc.charge(&req, &Assignment::of(&[("a100", 2)])).unwrap();
    assert_eq!(c.overall.names().collect::<Vec<_>>(), ["nvidia.com/gpu"]);
    assert_eq!(c.overall.get("nvidia.com/gpu"), 2 * W);
    assert_eq!(
        c.in_cluster("a100").names().collect::<Vec<_>>(),
        ["nvidia.com/gpu"]
    );
}

#[test]
fn percentage_without_any_known_model_is_an_error_only_when_counted() {
    let none = GpuModels::new();
    let req = gpu_pod(json!({"nvidia.com/gpu": "1", "nvidia.com/gpumem-percentage": "50"}));
    let a = Assignment::of(&[("east", 1)]);
    let gpu_only = Accountant::new(["nvidia.com/gpu".to_string()], &none);
    assert_eq!(
        gpu_only
            .charge(&req, &a)
            .unwrap()
            .overall
            .get("nvidia.com/gpu"),
        W
    );
    let mem = Accountant::new(["nvidia.com/gpumem".to_string()], &none);
    assert!(matches!(
        mem.charge(&req, &a),
        Err(AccountingError::UnknownGpuMemory { cluster, .. }) if cluster == "east"
    ));
}

#[test]
fn overflow_and_negative_replicas_are_errors() {
    let m = models();
    let acc = Accountant::new(["cpu".to_string()], &m);
    let mut req = ReplicaRequest::default();
    req.resources.set("cpu", i128::MAX / 2);
    assert!(matches!(
        acc.charge(&req, &Assignment::of(&[("a100", 3)])),
        Err(AccountingError::Amount(AmountError::Overflow { resource })) if resource == "cpu"
    ));
    assert!(matches!(
        acc.charge(&ReplicaRequest::default(), &Assignment::of(&[("a100", -1)])),
        Err(AccountingError::NegativeReplicas { .. })
    ));
}

#[test]
fn eviction_counts_replaced_replicas_once() {
    let m = models();
    let acc = Accountant::new(
        [
            "nvidia.com/gpu".to_string(),
            "nvidia.com/gpumem".to_string(),
        ],
        &m,
    );
    let fixed = gpu_pod(json!({"nvidia.com/gpu": "1", "nvidia.com/gpumem": "10000"}));
    let pct = gpu_pod(json!({"nvidia.com/gpu": "1", "nvidia.com/gpumem-percentage": "50"}));
    // (why, request, assignment, overall gpu, overall gpumem MiB, per-cluster gpu)
    type Case = (
        &'static str,
        ReplicaRequest,
        Assignment,
        i128,
        i128,
        &'static [(&'static str, i128)],
    );
    let cases: Vec<Case> = vec![
        (
            "move 4 from t4 to a100, y keeps 2: equal rates, the new assignment only",
            fixed.clone(),
            Assignment::of(&[("y", 2), ("a100", 4)]).evicting(&[("t4", 4)]),
            6,
            60000,
            &[("y", 2), ("a100", 4), ("t4", 4)],
        ),
        (
            "scale-down during eviction: the unpaired old copies count in full",
            fixed.clone(),
            Assignment::of(&[("a100", 1)]).evicting(&[("t4", 4)]),
            4,
            40000,
            &[("a100", 1), ("t4", 4)],
        ),
        (
            "nothing new yet: the old copies count",
            fixed.clone(),
            Assignment::of(&[]).evicting(&[("t4", 3)]),
            3,
            30000,
            &[("t4", 3)],
        ),
        (
            "percentage: a pair counts at the dearer rate (a100 copies, t4 replacements)",
            pct.clone(),
            Assignment::of(&[("t4", 2)]).evicting(&[("a100", 2)]),
            2,
            2 * 40960,
            &[("t4", 2), ("a100", 2)],
        ),
        (
            "percentage: cheap copies, dear replacements: the replacements",
            pct,
            Assignment::of(&[("a100", 2)]).evicting(&[("t4", 2)]),
            2,
            2 * 40960,
            &[("a100", 2), ("t4", 2)],
        ),
        (
            "a task for a cluster still targeted is ignored",
            fixed,
            Assignment::of(&[("t4", 2)]).evicting(&[("t4", 5)]),
            2,
            20000,
            &[("t4", 2)],
        ),
    ];
    for (why, req, a, gpu, mem, per) in cases {
        let c = acc.charge(&req, &a).unwrap();
        assert_eq!(c.overall.get("nvidia.com/gpu"), gpu * W, "{why}");
        assert_eq!(c.overall.get("nvidia.com/gpumem"), mem * W, "{why}");
        let got: Vec<(&str, i128)> = c
            .clusters
            .iter()
            .map(|(k, v)| (k.as_str(), v.get("nvidia.com/gpu") / W))
            .collect();
        let mut want = per.to_vec();
        want.sort();
        assert_eq!(got, want, "{why}: per cluster is what runs there");
    }
}

#[test]
fn assignment_from_binding() {
    let spec = ResourceBindingSpec {
        replicas: 6,
        clusters: vec![
            TargetCluster {
                name: "b".into(),
                replicas: 2,
            },
            TargetCluster {
                name: "c".into(),
                replicas: 4,
            },
        ],
        graceful_eviction_tasks: vec![
            GracefulEvictionTask {
                from_cluster: "a".into(),
                replicas: Some(4),
                ..Default::default()
            },
            GracefulEvictionTask {
                from_cluster: "d".into(),
                replicas: None,
                ..Default::default()
            },
            GracefulEvictionTask {
                from_cluster: "b".into(),
                replicas: Some(1),
                ..Default::default()
            },
        ],
        ..Default::default()
    };
    let a = Assignment::from_binding(&spec);
    assert_eq!(
        a,
        Assignment::of(&[("b", 2), ("c", 4)]).evicting(&[("a", 4), ("d", 6)])
    );
}

/// The largest extra over every way to pair the k cheapest old copies with k
/// of the new replicas (brute force over permutations, small inputs only).
fn brute_extra(olds: &[(i128, i128)], news: &[(i128, i128)]) -> i128 {
    let mut xs: Vec<i128> = olds
        .iter()
        .flat_map(|(x, n)| std::iter::repeat_n(*x, *n as usize))
        .collect();
    let ys: Vec<i128> = news
        .iter()
        .flat_map(|(y, n)| std::iter::repeat_n(*y, *n as usize))
        .collect();
    xs.sort();
    let k = xs.len().min(ys.len());
    let full: i128 = xs[k..].iter().sum();
    let paired = &xs[..k];
    // Every injective map of the paired copies into the new replicas.
    fn best(paired: &[i128], ys: &[i128], used: &mut Vec<bool>) -> i128 {
        let Some((x, rest)) = paired.split_first() else {
            return 0;
        };
        let mut top = i128::MIN;
        for j in 0..ys.len() {
            if used[j] {
                continue;
            }
            used[j] = true;
            top = top.max((x - ys[j]).max(0) + best(rest, ys, used));
            used[j] = false;
        }
        top
    }
    full + best(paired, &ys, &mut vec![false; ys.len()])
}

#[test]
fn eviction_extra_is_the_least_favourable_pairing() {
    // (old runs, new runs, extra)
    type Runs = &'static [(i128, i128)];
    let cases: &[(Runs, Runs, i128)] = &[
        (&[(10, 4)], &[(10, 6)], 0),
        (&[(10, 4)], &[(3, 2), (10, 6)], 14),
        (&[(10, 4)], &[(3, 1)], 7 + 30),
        (&[(10, 2), (4, 2)], &[(5, 1), (12, 3)], 5),
        (&[(10, 1)], &[], 10),
        (&[(0, 3)], &[(7, 1)], 0),
    ];
    for (olds, news, want) in cases {
        assert_eq!(
            eviction_extra(olds.to_vec(), news.to_vec()),
            Some(*want),
            "{olds:?} {news:?}"
        );
        assert_eq!(brute_extra(olds, news), *want, "brute {olds:?} {news:?}");
    }
    // Exhaustive over small runs: the fast rule equals the brute maximum.
    let rates = [0i128, 3, 7];
    let runs = |seed: u32| -> Vec<(i128, i128)> {
        (0..3)
            .map(|i| (rates[i], i128::from((seed / 3u32.pow(i as u32)) % 3)))
            .filter(|(_, n)| *n > 0)
            .collect()
    };
    for a in 0..27 {
        for b in 0..27 {
            let (olds, news) = (runs(a), runs(b));
            assert_eq!(
                eviction_extra(olds.clone(), news.clone()),
                Some(brute_extra(&olds, &news)),
                "{olds:?} {news:?}"
            );
        }
    }
}
