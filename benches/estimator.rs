//! Estimator benches: named scale cases, every node with 8 GPUs in mixed
//! use. Each case measures the indexed query beside a baseline that scans
//! every node the way Karmada's accurate estimator does (node affinity and
//! taints per node, allocatable cloned into a resource map, requested
//! subtracted, divided by the request), plus the cost of one pod event,
//! and the snapshot's memory per node and per pod (counting allocator).
//!
//! Run: `cargo bench -p hami-benches --bench estimator`
#![allow(clippy::unwrap_used, clippy::expect_used)]
// The counting allocator below needs `unsafe impl GlobalAlloc`; it only
// forwards to the system allocator and adds to two counters.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::HashMap;
use std::hint::black_box;
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use hami_estimator::fit::node_max_replicas;
use hami_estimator::fleet::{GenerateOptions, Rng, generate, random_shape};
use hami_estimator::{NodeInfo, PodInfo, ReplicaShape, Snapshot};

struct Counting;
static LIVE: AtomicIsize = AtomicIsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        LIVE.fetch_add(l.size() as isize, Ordering::Relaxed);
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        LIVE.fetch_sub(l.size() as isize, Ordering::Relaxed);
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        LIVE.fetch_add(new as isize - l.size() as isize, Ordering::Relaxed);
        unsafe { System.realloc(p, l, new) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

struct Case {
    name: &'static str,
    nodes: usize,
    pods_per_node: usize,
    claims: bool,
}

const CASES: [Case; 4] = [
    Case {
        name: "500 nodes, 10000 pods",
        nodes: 500,
        pods_per_node: 20,
        claims: false,
    },
    Case {
        name: "5000 nodes, 100000 pods",
        nodes: 5000,
        pods_per_node: 20,
        claims: false,
    },
    Case {
        name: "5000 nodes, 100000 pods, with taints and affinity",
        nodes: 5000,
        pods_per_node: 20,
        claims: true,
    },
    Case {
        name: "20000 nodes, 400000 pods",
        nodes: 20000,
        pods_per_node: 20,
        claims: false,
    },
];

/// Karmada's per-call scan: every node, claim checked, a resource map
/// cloned from allocatable, requested subtracted, divided by the request.
/// GPUs are fitted per device (Karmada would divide `nvidia.com/gpu` as a
/// plain count) so that both sides give the same, exact answer.
fn karmada_scan(snap: &Snapshot, shape: &ReplicaShape) -> u64 {
    let allowed = snap.models_allowed(shape);
    let mut total = 0u64;
    for v in snap.node_views() {
        if !v.schedulable || !shape.claim.matches(v.name, v.labels, v.taints) {
            continue;
        }
        let mut rest: HashMap<String, i64> =
            HashMap::with_capacity(4 + v.allocatable.extended.len());
        rest.insert("cpu".into(), v.allocatable.cpu_milli as i64);
        rest.insert("memory".into(), v.allocatable.memory as i64);
        rest.insert(
            "ephemeral-storage".into(),
            v.allocatable.ephemeral_storage as i64,
        );
        rest.insert("pods".into(), v.allocatable.pods as i64);
        for (k, x) in &v.allocatable.extended {
            rest.insert(k.clone(), *x as i64);
        }
        *rest.get_mut("cpu").unwrap() -= v.requested.cpu_milli as i64;
        *rest.get_mut("memory").unwrap() -= v.requested.memory as i64;
        *rest.get_mut("ephemeral-storage").unwrap() -= v.requested.ephemeral_storage as i64;
        *rest.get_mut("pods").unwrap() -= v.requested.pods as i64;
        let mut k = rest["pods"].max(0) as u64;
        let r = &shape.requests;
        for (name, want) in [
            ("cpu", r.cpu_milli),
            ("memory", r.memory),
            ("ephemeral-storage", r.ephemeral_storage),
        ] {
            if let Some(n) = (rest[name].max(0) as u64).checked_div(want) {
                k = k.min(n);
            }
        }
        for (name, want) in &r.extended {
            k = k.min(rest.get(name).copied().unwrap_or(0).max(0) as u64 / want);
        }
        if k > 0 && shape.gpu.is_some() {
            k = k.min(node_max_replicas(
                v.allocatable,
                v.requested,
                v.devices,
                shape,
                |m| allowed[m as usize],
            ));
        }
        total += k;
    }
    total
}

fn build(case: &Case) -> (Vec<NodeInfo>, Vec<PodInfo>) {
    let fleet = generate(&GenerateOptions {
        nodes: case.nodes,
        pods_per_node: case.pods_per_node,
        gpus_per_node: Some(8),
        slots_per_gpu: Some(10),
        taints: case.claims,
        seed: 42,
        ..GenerateOptions::default()
    });
    fleet.objects(0).unwrap()
}

fn percentile(mut v: Vec<Duration>, p: f64) -> Duration {
    v.sort_unstable();
    v[((v.len() - 1) as f64 * p) as usize]
}

fn bench(c: &mut Criterion) {
    for case in &CASES {
        let (nodes, pods) = build(case);
        let pod_count = pods.len();
        let node_count = nodes.len();
        let sample_pods: Vec<PodInfo> = pods.iter().step_by(97).cloned().collect();
        // Memory: the bytes a snapshot frees when dropped, nodes alone and
        // then with pods (inputs are cloned first so their frees do not count).
        let size_of = |nodes: Vec<NodeInfo>, pods: Vec<PodInfo>| {
            let snap = Snapshot::from_objects(nodes, pods);
            let before = LIVE.load(Ordering::Relaxed);
            drop(snap);
            (before - LIVE.load(Ordering::Relaxed)) as f64
        };
        let node_bytes = size_of(nodes.clone(), vec![]);
        let all_bytes = size_of(nodes.clone(), pods.clone());
        let per_node = node_bytes / node_count as f64;
        let per_pod = (all_bytes - node_bytes) / pod_count as f64;
        let snap_pods = pods;
        let mut snap = Snapshot::from_objects(nodes, vec![]);
        for p in snap_pods {
            snap.apply_pod(p);
        }
        let mut rng = Rng::new(7);
        let shapes: Vec<ReplicaShape> = (0..16)
            .map(|_| random_shape(&mut rng, case.claims))
            .collect();
        for s in &shapes {
            assert_eq!(
                snap.max_available_replicas(s),
                karmada_scan(&snap, s),
                "answers differ"
            );
        }

        // Per-query latency distribution (criterion reports means).
        let mut warm = Vec::with_capacity(4000);
        for i in 0..4000 {
            let s = &shapes[i % shapes.len()];
            let t = Instant::now();
            black_box(snap.max_available_replicas(s));
            warm.push(t.elapsed());
        }
        let mut evented = Vec::with_capacity(2000);
        let mut events = Vec::with_capacity(2000);
        for i in 0..2000 {
            let p = &sample_pods[i % sample_pods.len()];
            let t = Instant::now();
            if i.is_multiple_of(2) {
                snap.delete_pod(&p.namespace, &p.name);
            } else {
                snap.apply_pod(p.clone());
            }
            events.push(t.elapsed());
            let s = &shapes[i % shapes.len()];
            let t = Instant::now();
            black_box(snap.max_available_replicas(s));
            evented.push(t.elapsed());
        }
        let mut scans = Vec::with_capacity(32);
        for i in 0..32 {
            let t = Instant::now();
            black_box(karmada_scan(&snap, &shapes[i % shapes.len()]));
            scans.push(t.elapsed());
        }
        let stats = snap.stats();
        println!(
            "estimator | {} | classes {} groups {} | memory {:.0} B/node {:.0} B/pod | \
             indexed warm p50 {:?} p99 {:?} | indexed after 1 event p50 {:?} p99 {:?} | \
             pod event p50 {:?} p99 {:?} | karmada scan p50 {:?}",
            case.name,
            stats.classes,
            stats.groups,
            per_node,
            per_pod,
            percentile(warm.clone(), 0.5),
            percentile(warm, 0.99),
            percentile(evented.clone(), 0.5),
            percentile(evented, 0.99),
            percentile(events.clone(), 0.5),
            percentile(events, 0.99),
            percentile(scans, 0.5),
        );

        let mut g = c.benchmark_group(case.name);
        g.sample_size(10)
            .warm_up_time(Duration::from_millis(300))
            .measurement_time(Duration::from_secs(2));
        let mut i = 0usize;
        g.bench_function("indexed query", |b| {
            b.iter(|| {
                i += 1;
                black_box(snap.max_available_replicas(&shapes[i % shapes.len()]))
            })
        });
        let mut i = 0usize;
        g.bench_function("indexed query after one pod event", |b| {
            b.iter(|| {
                i += 1;
                let p = &sample_pods[i % sample_pods.len()];
                if i.is_multiple_of(2) {
                    snap.delete_pod(&p.namespace, &p.name);
                } else {
                    snap.apply_pod(p.clone());
                }
                black_box(snap.max_available_replicas(&shapes[i % shapes.len()]))
            })
        });
        let mut i = 0usize;
        g.bench_function("pod event update", |b| {
            b.iter(|| {
                i += 1;
                let p = &sample_pods[i % sample_pods.len()];
                if i.is_multiple_of(2) {
                    snap.delete_pod(&p.namespace, &p.name);
                } else {
                    snap.apply_pod(p.clone());
                }
            })
        });
        let mut cold_rng = Rng::new(99);
        let mut n = 0u64;
        g.bench_function("indexed query, new shape (cold)", |b| {
            b.iter(|| {
                n += 1;
                let mut s = random_shape(&mut cold_rng, case.claims);
                s.requests.cpu_milli = 1 + n; // never seen before
                black_box(snap.max_available_replicas(&s))
            })
        });
        let mut i = 0usize;
        g.bench_function("baseline: karmada per-node scan", |b| {
            b.iter(|| {
                i += 1;
                black_box(karmada_scan(&snap, &shapes[i % shapes.len()]))
            })
        });
        g.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
