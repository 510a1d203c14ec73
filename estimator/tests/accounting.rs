#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The snapshot's per-node sums (requested resources, per-device use)
//! equal sums computed here from the pods last applied, through random
//! pod and node events, for pods in the compact form and for pods whose
//! requests or GPU use take the wide form (ephemeral storage, extended
//! resources, over `u32::MAX` millicores or MiB). The property test checks
//! the answers read from these sums; this one checks the sums themselves.

use std::collections::BTreeMap;

use hami_estimator::fleet::{GenerateOptions, Rng, generate};
use hami_estimator::{NodeInfo, PodInfo, Resources, Snapshot};

/// Makes some pods take the wide form, each for a different reason.
fn widen(pods: &mut [PodInfo]) {
    for (i, p) in pods.iter_mut().enumerate() {
        match i % 6 {
            1 => p.requests.ephemeral_storage = 1 << 30,
            2 => {
                p.requests.extended.insert("example.com/fpga".into(), 1);
            }
            3 => p.requests.cpu_milli += u64::from(u32::MAX),
            4 => {
                if let Some(g) = p.gpus.first_mut() {
                    g.memory_mib += u64::from(u32::MAX);
                }
            }
            _ => {}
        }
    }
}

fn check(snap: &Snapshot, nodes: &BTreeMap<String, NodeInfo>, pods: &BTreeMap<String, PodInfo>) {
    let mut seen = 0;
    for v in snap.node_views() {
        let node = &nodes[v.name];
        let mut requested = Resources::default();
        let mut mem = vec![0u64; node.gpus.len()];
        let mut cores = vec![0u32; node.gpus.len()];
        let mut used = vec![0u32; node.gpus.len()];
        for p in pods.values() {
            if !p.holds_resources() || p.node.as_deref() != Some(v.name) {
                continue;
            }
            let mut r = p.requests.clone();
            r.pods = 1;
            requested.add(&r);
            for u in &p.gpus {
                if let Some(d) = node.gpus.iter().position(|g| g.id == u.uuid) {
                    mem[d] += u.memory_mib;
                    cores[d] += u.cores;
                    used[d] += 1;
                }
            }
        }
        assert_eq!(v.requested, &requested, "requested on {}", v.name);
        for (d, state) in v.devices.iter().enumerate() {
            assert_eq!(
                (state.used_mem, state.used_cores, state.used),
                (mem[d], cores[d], used[d]),
                "device {d} of {}",
                v.name
            );
        }
        seen += 1;
    }
    assert_eq!(seen, nodes.len());
}

#[test]
fn node_sums_follow_compact_and_wide_pods_through_events() {
    for seed in 0..8 {
        let fleet = generate(&GenerateOptions {
            nodes: 12,
            pods_per_node: 16,
            gpus_per_node: Some(4),
            seed,
            ..GenerateOptions::default()
        });
        let (node_list, mut pod_list) = fleet.objects(0).unwrap();
        widen(&mut pod_list);
        let mut snap = Snapshot::from_objects(node_list.clone(), pod_list.clone());
        let mut nodes: BTreeMap<String, NodeInfo> = node_list
            .iter()
            .map(|n| (n.name.clone(), n.clone()))
            .collect();
        let mut pods: BTreeMap<String, PodInfo> = pod_list
            .iter()
            .map(|p| (format!("{}/{}", p.namespace, p.name), p.clone()))
            .collect();
        check(&snap, &nodes, &pods);
        let mut rng = Rng::new(seed ^ 0xacc0);
        for _ in 0..200 {
            let p = rng.pick(&pod_list).clone();
            let key = format!("{}/{}", p.namespace, p.name);
            match rng.below(5) {
                0 => {
                    snap.delete_pod(&p.namespace, &p.name);
                    pods.remove(&key);
                }
                1 => {
                    // Moved to another node (its GPU uses then match no device there).
                    let mut p = p;
                    p.node = Some(rng.pick(&node_list).name.clone());
                    snap.apply_pod(p.clone());
                    pods.insert(key, p);
                }
                2 => {
                    // Same pod in another namespace: a second, distinct pod.
                    let mut p = p;
                    p.namespace = "other".into();
                    snap.apply_pod(p.clone());
                    pods.insert(format!("other/{}", p.name), p);
                }
                3 => {
                    let n = rng.pick(&node_list).clone();
                    snap.delete_node(&n.name);
                    nodes.remove(&n.name);
                    if rng.chance(50) {
                        snap.apply_node(n.clone());
                        nodes.insert(n.name.clone(), n);
                    }
                }
                _ => {
                    snap.apply_pod(p.clone());
                    pods.insert(key, p);
                }
            }
            check(&snap, &nodes, &pods);
        }
        assert_eq!(snap.stats().pods, pods.len());
    }
}
