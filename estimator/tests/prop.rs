#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Random fleets with fragmented GPU use and random shapes: the indexed
//! answer, the per-node scan and a brute force that places replicas one at
//! a time on a copy of the snapshot must agree, also after random events.

use hami_estimator::fit::DeviceState;
use hami_estimator::fleet::{GenerateOptions, Rng, generate, random_shape};
use hami_estimator::{PodInfo, PodPhase, ReplicaShape, Snapshot};
use proptest::prelude::*;

/// Places replicas one at a time until none fits; each replica's GPUs go
/// to the fitting devices with the most room left (simulated unit by unit).
fn brute_force(snap: &Snapshot, shape: &ReplicaShape) -> u64 {
    let allowed = snap.models_allowed(shape);
    let mut total = 0;
    for v in snap.node_views() {
        if !v.schedulable || !shape.claim.matches(v.name, v.labels, v.taints) {
            continue;
        }
        let mut requested = v.requested.clone();
        let mut devices: Vec<DeviceState> = v.devices.to_vec();
        loop {
            let r = &shape.requests;
            let a = v.allocatable;
            // As the Kubernetes scheduler: a resource the replica does not
            // ask for never blocks it, even on an over-committed node.
            let room = |used: u64, want: u64, cap: u64| want == 0 || used + want <= cap;
            let fits_node = requested.pods < a.pods
                && room(requested.cpu_milli, r.cpu_milli, a.cpu_milli)
                && room(requested.memory, r.memory, a.memory)
                && room(
                    requested.ephemeral_storage,
                    r.ephemeral_storage,
                    a.ephemeral_storage,
                )
                && r.extended.iter().all(|(k, want)| {
                    room(
                        requested.extended.get(k).copied().unwrap_or(0),
                        *want,
                        a.extended.get(k).copied().unwrap_or(0),
                    )
                });
            if !fits_node {
                break;
            }
            if let Some(g) = &shape.gpu {
                let ok = |d: &DeviceState| allowed[d.model as usize];
                let room = |d: &DeviceState| {
                    let mut c = *d;
                    let mut n = 0;
                    while c.fits_one(g, ok(d)) && n < 1000 {
                        c.take_one(g);
                        n += 1;
                    }
                    n
                };
                let mut candidates: Vec<(u32, usize)> = devices
                    .iter()
                    .enumerate()
                    .filter(|(_, d)| d.fits_one(g, ok(d)))
                    .map(|(i, d)| (room(d), i))
                    .collect();
                if candidates.len() < g.count as usize {
                    break;
                }
                candidates.sort_by(|a, b| b.cmp(a));
                for (_, i) in candidates.into_iter().take(g.count as usize) {
                    devices[i].take_one(g);
                }
            }
            let mut one = r.clone();
            one.pods = 1;
            requested.add(&one);
            total += 1;
        }
    }
    total
}

fn check(snap: &mut Snapshot, shape: &ReplicaShape) {
    let scan = snap.scan_max_available_replicas(shape);
    let indexed = snap.max_available_replicas(shape);
    let brute = brute_force(snap, shape);
    assert_eq!(indexed, scan, "indexed vs scan for {shape:?}");
    assert_eq!(scan, brute, "scan vs brute force for {shape:?}");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, .. ProptestConfig::default() })]
    #[test]
    fn indexed_equals_scan_equals_brute_force(seed in any::<u64>(), nodes in 1usize..24, pods in 0usize..30, claims in any::<bool>()) {
        let fleet = generate(&GenerateOptions {
            nodes,
            pods_per_node: pods,
            gpus_per_node: None,
            slots_per_gpu: None,
            taints: claims,
            seed,
            ..GenerateOptions::default()
        });
        let mut snap = fleet.snapshot(0).unwrap();
        let mut rng = Rng::new(seed ^ 0x5eed);
        let shapes: Vec<ReplicaShape> = (0..12).map(|_| random_shape(&mut rng, claims)).collect();
        for s in &shapes {
            check(&mut snap, s);
        }
        // Random events: delete pods, move pods, delete and re-add nodes;
        // cached answers must follow.
        let (node_infos, pod_infos) = fleet.objects(0).unwrap();
        for round in 0..6 {
            for _ in 0..4 {
                match rng.below(4) {
                    0 if !pod_infos.is_empty() => {
                        let p = rng.pick(&pod_infos);
                        snap.delete_pod(&p.namespace, &p.name);
                    }
                    1 if !pod_infos.is_empty() => {
                        let p = rng.pick(&pod_infos).clone();
                        snap.apply_pod(p);
                    }
                    2 => {
                        let n = rng.pick(&node_infos);
                        snap.delete_node(&n.name);
                    }
                    _ => {
                        let n = rng.pick(&node_infos).clone();
                        snap.apply_node(n);
                    }
                }
            }
            if round % 2 == 0 {
                let n = rng.pick(&node_infos);
                snap.apply_pod(PodInfo {
                    namespace: "x".into(),
                    name: format!("extra-{round}"),
                    node: Some(n.name.clone()),
                    requests: hami_estimator::Resources { cpu_milli: 1000, ..Default::default() },
                    phase: PodPhase::Running,
                    ..PodInfo::default()
                });
            }
            for s in &shapes {
                check(&mut snap, s);
            }
        }
    }
}
