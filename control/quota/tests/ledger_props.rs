//! Property test: random sequences of create / scale / delete / failover /
//! eviction end against random quotas. After every step the ledger's usage
//! equals the sum recomputed from scratch over the accepted bindings, no
//! limit is ever exceeded, and steps that raise nothing (scale-down, delete,
//! eviction end) or move replicas between clusters of equal cost into a
//! cluster without a static assignment (a first failover, where no replica of
//! the new assignment is cheaper than the copies left) are never refused.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;

use hami_api::quantity::format_milli;
use hami_api::quota::{FederatedResourceQuotaSpec, StaticClusterAssignment};
use hami_quota::{
    Assignment, Charge, GpuModels, LedgerError, QuotaLedger, QuotaLimits, ReplicaRequest, recompute,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use proptest::prelude::*;

const CLUSTERS: [&str; 4] = ["a", "b", "c", "d"];
const NAMES: [&str; 5] = [
    "cpu",
    "pods",
    "nvidia.com/gpu",
    "nvidia.com/gpumem",
    "nvidia.com/gpucores",
];

fn models() -> GpuModels {
    let mut m = GpuModels::new();
    m.insert("a", "NVIDIA-H100", 81920);
    m.insert("b", "NVIDIA-T4", 15360);
    m.insert("c", "NVIDIA-A100", 40960);
    // "d" reports no GPUs: the largest known model is used.
    m
}

#[derive(Clone, Debug)]
enum Op {
    Apply {
        key: u8,
        req: ReplicaRequest,
        replicas: [i32; 4],
    },
    Scale {
        key: u8,
        replicas: [i32; 4],
    },
    ScaleDown {
        key: u8,
        cluster: usize,
        by: i32,
    },
    Delete {
        key: u8,
    },
    Failover {
        key: u8,
        from: usize,
        to: usize,
    },
    EndEviction {
        key: u8,
    },
}

fn request() -> impl Strategy<Value = ReplicaRequest> {
    (
        0i128..3000,
        0i128..3,
        prop_oneof![
            Just((0i128, 100i128)),
            (1i128..20000).prop_map(|m| (m, 0)),
            (1i128..101).prop_map(|p| (0, p))
        ],
        prop::option::of(0i128..101),
    )
        .prop_map(|(cpu, count, (mem, pct), cores)| {
            let mut r = ReplicaRequest::default();
            r.resources.set("cpu", cpu);
            if count > 0 {
                r.gpu.count = count;
                r.gpu.memory_mib = mem * count;
                r.gpu.memory_percent = pct * count;
                r.gpu.cores = cores.unwrap_or(0) * count;
            }
            r
        })
}

fn op() -> impl Strategy<Value = Op> {
    let key = 0u8..5;
    let reps = prop::array::uniform4(0i32..5);
    prop_oneof![
        3 => (key.clone(), request(), reps.clone()).prop_map(|(key, req, replicas)| Op::Apply { key, req, replicas }),
        2 => (key.clone(), reps).prop_map(|(key, replicas)| Op::Scale { key, replicas }),
        2 => (key.clone(), 0usize..4, 0i32..4).prop_map(|(key, cluster, by)| Op::ScaleDown { key, cluster, by }),
        1 => key.clone().prop_map(|key| Op::Delete { key }),
        2 => (key.clone(), 0usize..4, 0usize..4).prop_map(|(key, from, to)| Op::Failover { key, from, to }),
        1 => key.prop_map(|key| Op::EndEviction { key }),
    ]
}

/// A quota: each name limited or not, overall limits, static assignments
/// that fit within them.
fn quota() -> impl Strategy<Value = FederatedResourceQuotaSpec> {
    (
        prop::array::uniform5(prop::option::of(0i128..60)),
        prop::array::uniform4(prop::option::of(prop::array::uniform5(0i128..=100))),
    )
        .prop_map(|(overall, statics)| {
            // Units: cpu in cores, gpumem in 4000 MiB steps, cores in 50s.
            let unit = [1000i128, 1000, 1000, 4_000_000, 50_000];
            let mut spec = FederatedResourceQuotaSpec::default();
            for (i, v) in overall.iter().enumerate() {
                if let Some(v) = v {
                    spec.overall
                        .insert(NAMES[i].to_string(), Quantity(format_milli(v * unit[i])));
                }
            }
            let mut left: Vec<i128> = overall
                .iter()
                .zip(unit)
                .map(|(v, u)| v.unwrap_or(0) * u)
                .collect();
            for (c, s) in CLUSTERS.iter().zip(statics) {
                let Some(share) = s else { continue };
                let mut hard = BTreeMap::new();
                for (i, pct) in share.iter().enumerate() {
                    if overall[i].is_none() || *pct == 100 {
                        continue;
                    }
                    let v = left[i] * pct / 100;
                    left[i] -= v;
                    hard.insert(NAMES[i].to_string(), Quantity(format_milli(v)));
                }
                spec.static_assignments.push(StaticClusterAssignment {
                    cluster_name: c.to_string(),
                    hard,
                });
            }
            spec
        })
}

fn of(replicas: [i32; 4]) -> Assignment {
    let pairs: Vec<(&str, i32)> = CLUSTERS
        .iter()
        .copied()
        .zip(replicas)
        .filter(|(_, n)| *n > 0)
        .collect();
    Assignment::of(&pairs)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn ledger_matches_recomputed_usage_and_never_exceeds(spec in quota(), ops in prop::collection::vec(op(), 1..60)) {
        prop_assert!(hami_api::validation::validate_quota_spec(&spec, "spec").is_empty());
        let limits = QuotaLimits::from_spec(&spec).unwrap();
        let models = models();
        let acc = limits.accountant(&models);
        let mut ledger = QuotaLedger::new(limits.clone());
        // The accepted state, kept apart from the ledger.
        let mut state: BTreeMap<String, (ReplicaRequest, Assignment)> = BTreeMap::new();

        for op in ops {
            let key_of = |k: u8| format!("ns/b{k}");
            // The proposed (request, assignment), and whether it must pass.
            let (key, next, must_pass): (String, Option<(ReplicaRequest, Assignment)>, bool) = match op {
                Op::Apply { key, req, replicas } => (key_of(key), Some((req, of(replicas))), false),
                Op::Scale { key, replicas } => {
                    let k = key_of(key);
                    let Some((req, cur)) = state.get(&k).cloned() else { continue };
                    let mut a = of(replicas);
                    a.evicting = cur.evicting.clone();
                    (k, Some((req, a)), false)
                }
                Op::ScaleDown { key, cluster, by } => {
                    let k = key_of(key);
                    let Some((req, mut a)) = state.get(&k).cloned() else { continue };
                    if let Some(n) = a.clusters.get_mut(CLUSTERS[cluster]) {
                        *n = (*n - by).max(0);
                    }
                    (k, Some((req, a)), true)
                }
                Op::Delete { key } => (key_of(key), None, true),
                Op::Failover { key, from, to } => {
                    let k = key_of(key);
                    let Some((req, mut a)) = state.get(&k).cloned() else { continue };
                    let first_eviction = a.evicting.is_empty();
                    let (from, to) = (CLUSTERS[from], CLUSTERS[to]);
                    if from == to || a.evicting.contains_key(from) {
                        continue;
                    }
                    let Some(n) = a.clusters.remove(from) else { continue };
                    *a.clusters.entry(to.to_string()).or_insert(0) += n;
                    a.evicting.insert(from.to_string(), n);
                    let from_rate = acc.rate(&req, from).unwrap();
                    let same_cost = from_rate == acc.rate(&req, to).unwrap();
                    // No replica of the new assignment is cheaper than the
                    // copies being left: no pairing can cost extra.
                    let none_cheaper = a.clusters.iter().filter(|(_, n)| **n > 0).all(|(c, _)| {
                        let r = acc.rate(&req, c).unwrap();
                        acc.names().iter().all(|name| r.get(name) >= from_rate.get(name))
                    });
                    let unassigned = !limits.static_assignments.contains_key(to);
                    (k, Some((req, a)), first_eviction && same_cost && none_cheaper && unassigned)
                }
                Op::EndEviction { key } => {
                    let k = key_of(key);
                    let Some((req, mut a)) = state.get(&k).cloned() else { continue };
                    a.evicting.clear();
                    (k, Some((req, a)), true)
                }
            };
            let charge: Option<Charge> = next.as_ref().map(|(r, a)| acc.charge(r, a).unwrap());
            match ledger.admit(&key, charge) {
                Ok(_) => match next {
                    Some(s) => { state.insert(key, s); }
                    None => { state.remove(&key); }
                },
                Err(LedgerError::Exceeded(e)) => {
                    prop_assert!(!must_pass, "refused a step that raises nothing it may not: {e}");
                    prop_assert!(e.requested > 0 && e.used + e.requested > e.hard);
                }
                Err(other) => prop_assert!(false, "unexpected error {other}"),
            }

            // Recompute from scratch over the accepted state.
            let charges: Vec<Charge> = state.values().map(|(r, a)| acc.charge(r, a).unwrap()).collect();
            let (used, by_cluster) = recompute(charges.iter()).unwrap();
            prop_assert_eq!(&used, ledger.used());
            for c in CLUSTERS {
                prop_assert_eq!(by_cluster.get(c).cloned().unwrap_or_default(), ledger.used_in(c));
            }
            for (name, hard) in limits.overall.iter() {
                prop_assert!(used.get(name) <= hard, "{name}: {} > {hard}", used.get(name));
            }
            for (c, hard) in &limits.static_assignments {
                let u = ledger.used_in(c);
                for (name, h) in hard.iter() {
                    prop_assert!(u.get(name) <= h, "{c}/{name}: {} > {h}", u.get(name));
                }
            }
        }
    }
}
