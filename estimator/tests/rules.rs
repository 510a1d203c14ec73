#![allow(clippy::unwrap_used, clippy::expect_used)]
//! One table per rule: each case is a one-node cluster and a shape, with
//! the exact number of replicas it must hold. Every case is checked on the
//! indexed query and on the scan.

use std::collections::BTreeMap;

use hami_estimator::claim::{Operator, Requirement, Term, Toleration, TolerationOperator};
use hami_estimator::{
    GpuDevice, GpuMemory, GpuRequest, GpuUse, NodeClaim, NodeInfo, PodInfo, PodPhase, ReplicaShape,
    Resources, Snapshot, Taint, TaintEffect, WorkloadRef,
};

const GIB: u64 = 1 << 30;

fn node() -> NodeInfo {
    let mut labels = BTreeMap::new();
    labels.insert("zone".to_string(), "a".to_string());
    labels.insert("gpus".to_string(), "4".to_string());
    NodeInfo {
        name: "n".into(),
        labels,
        allocatable: Resources {
            cpu_milli: 16_000,
            memory: 64 * GIB,
            pods: 110,
            ephemeral_storage: 100 * GIB,
            ..Default::default()
        },
        ready: true,
        gpus: (0..4)
            .map(|i| gpu(&format!("g{i}"), "NVIDIA-A100", 40960, 4))
            .collect(),
        ..Default::default()
    }
}

fn gpu(id: &str, model: &str, mib: u64, slots: u32) -> GpuDevice {
    GpuDevice {
        id: id.into(),
        model: model.into(),
        memory_mib: mib,
        cores: 100,
        slots,
        healthy: true,
    }
}

fn cpu(milli: u64) -> ReplicaShape {
    ReplicaShape {
        requests: Resources {
            cpu_milli: milli,
            ..Default::default()
        },
        ..Default::default()
    }
}

fn gpus(count: u32, memory: GpuMemory, cores: u32) -> ReplicaShape {
    ReplicaShape {
        gpu: Some(GpuRequest {
            count,
            memory,
            cores,
            use_types: vec![],
            nouse_types: vec![],
        }),
        ..Default::default()
    }
}

fn pod_on(name: &str, uses: &[(&str, u64, u32)]) -> PodInfo {
    PodInfo {
        namespace: "d".into(),
        name: name.into(),
        node: Some("n".into()),
        phase: PodPhase::Running,
        gpus: uses
            .iter()
            .map(|(u, m, c)| GpuUse {
                uuid: (*u).into(),
                memory_mib: *m,
                cores: *c,
            })
            .collect(),
        ..Default::default()
    }
}

fn answer(n: NodeInfo, pods: Vec<PodInfo>, shape: &ReplicaShape) -> u64 {
    let mut s = Snapshot::from_objects(vec![n], pods);
    let scan = s.scan_max_available_replicas(shape);
    let indexed = s.max_available_replicas(shape);
    assert_eq!(scan, indexed);
    scan
}

fn req(key: &str, op: Operator, values: &[&str]) -> Requirement {
    Requirement {
        key: key.into(),
        operator: op,
        values: values.iter().map(|v| v.to_string()).collect(),
    }
}

fn with_affinity(terms: Vec<Vec<Requirement>>) -> ReplicaShape {
    let mut s = cpu(1000);
    s.claim.affinity = Some(
        terms
            .into_iter()
            .map(|t| Term {
                match_expressions: t,
                match_fields: vec![],
            })
            .collect(),
    );
    s
}

#[test]
fn node_resources() {
    assert_eq!(answer(node(), vec![], &cpu(1000)), 16);
    assert_eq!(answer(node(), vec![], &cpu(0)), 110, "pods limit");
    let mut mem = cpu(0);
    mem.requests.memory = 10 * GIB;
    assert_eq!(answer(node(), vec![], &mem), 6);
    let mut ext = cpu(0);
    ext.requests.extended.insert("example.com/fpga".into(), 1);
    assert_eq!(answer(node(), vec![], &ext), 0, "missing extended resource");
    let mut n = node();
    n.allocatable.extended.insert("example.com/fpga".into(), 3);
    assert_eq!(answer(n, vec![], &ext), 3);
    let mut busy = pod_on("p", &[]);
    busy.requests.cpu_milli = 15_000;
    assert_eq!(answer(node(), vec![busy.clone()], &cpu(1000)), 1);
    busy.phase = PodPhase::Succeeded;
    assert_eq!(
        answer(node(), vec![busy], &cpu(1000)),
        16,
        "finished pods hold nothing"
    );
}

#[test]
fn selector() {
    let mut s = cpu(1000);
    s.claim.node_selector.insert("zone".into(), "a".into());
    assert_eq!(answer(node(), vec![], &s), 16);
    s.claim.node_selector.insert("zone".into(), "b".into());
    assert_eq!(answer(node(), vec![], &s), 0);
    let mut s = cpu(1000);
    s.claim.node_selector.insert("missing".into(), "x".into());
    assert_eq!(answer(node(), vec![], &s), 0);
}

#[test]
fn affinity_operators() {
    let cases = [
        (req("zone", Operator::In, &["a", "b"]), 16),
        (req("zone", Operator::In, &["b"]), 0),
        (req("zone", Operator::NotIn, &["b"]), 16),
        (req("zone", Operator::NotIn, &["a"]), 0),
        (req("absent", Operator::NotIn, &["a"]), 16),
        (req("zone", Operator::Exists, &[]), 16),
        (req("absent", Operator::Exists, &[]), 0),
        (req("absent", Operator::DoesNotExist, &[]), 16),
        (req("zone", Operator::DoesNotExist, &[]), 0),
        (req("gpus", Operator::Gt, &["3"]), 16),
        (req("gpus", Operator::Gt, &["4"]), 0),
        (req("gpus", Operator::Lt, &["5"]), 16),
        (req("gpus", Operator::Lt, &["4"]), 0),
        (req("zone", Operator::Gt, &["1"]), 0),
        (req("gpus", Operator::Gt, &["x"]), 0),
    ];
    for (r, want) in cases {
        assert_eq!(
            answer(node(), vec![], &with_affinity(vec![vec![r.clone()]])),
            want,
            "{r:?}"
        );
    }
    // Terms are ORed, requirements in a term ANDed, an empty term matches nothing.
    let or = with_affinity(vec![
        vec![req("zone", Operator::In, &["b"])],
        vec![req("zone", Operator::In, &["a"])],
    ]);
    assert_eq!(answer(node(), vec![], &or), 16);
    let and = with_affinity(vec![vec![
        req("zone", Operator::In, &["a"]),
        req("gpus", Operator::Lt, &["2"]),
    ]]);
    assert_eq!(answer(node(), vec![], &and), 0);
    assert_eq!(answer(node(), vec![], &with_affinity(vec![vec![]])), 0);
    assert_eq!(answer(node(), vec![], &with_affinity(vec![])), 0);
    // matchFields on metadata.name.
    let mut by_name = cpu(1000);
    by_name.claim.affinity = Some(vec![Term {
        match_expressions: vec![],
        match_fields: vec![req("metadata.name", Operator::In, &["n"])],
    }]);
    assert_eq!(answer(node(), vec![], &by_name), 16);
    by_name.claim.affinity = Some(vec![Term {
        match_expressions: vec![],
        match_fields: vec![req("metadata.name", Operator::NotIn, &["n"])],
    }]);
    assert_eq!(answer(node(), vec![], &by_name), 0);
}

#[test]
fn taints() {
    let tainted = |effect| {
        let mut n = node();
        n.taints.push(Taint {
            key: "k".into(),
            value: "v".into(),
            effect,
        });
        n
    };
    let tol = |key: &str, op, value: &str, effect| Toleration {
        key: key.into(),
        operator: op,
        value: value.into(),
        effect,
    };
    let with = |t: Vec<Toleration>| {
        let mut s = cpu(1000);
        s.claim.tolerations = t;
        s
    };
    use TaintEffect::*;
    use TolerationOperator::*;
    let cases: Vec<(TaintEffect, Vec<Toleration>, u64)> = vec![
        (NoSchedule, vec![], 0),
        (NoExecute, vec![], 0),
        (PreferNoSchedule, vec![], 16),
        (NoSchedule, vec![tol("k", Equal, "v", None)], 16),
        (NoSchedule, vec![tol("k", Equal, "w", None)], 0),
        (NoSchedule, vec![tol("k", Exists, "", None)], 16),
        (NoSchedule, vec![tol("", Exists, "", None)], 16),
        (NoSchedule, vec![tol("k", Equal, "v", Some(NoExecute))], 0),
        (NoExecute, vec![tol("k", Equal, "v", Some(NoExecute))], 16),
        (NoSchedule, vec![tol("other", Exists, "", None)], 0),
    ];
    for (effect, t, want) in cases {
        assert_eq!(
            answer(tainted(effect), vec![], &with(t.clone())),
            want,
            "{effect:?} {t:?}"
        );
    }
}

#[test]
fn unschedulable_and_not_ready() {
    let mut n = node();
    n.unschedulable = true;
    assert_eq!(answer(n, vec![], &cpu(1000)), 0);
    let mut n = node();
    n.ready = false;
    assert_eq!(answer(n, vec![], &cpu(1000)), 0);
}

#[test]
fn gpu_rules() {
    use GpuMemory::*;
    let frag = vec![
        pod_on("a", &[("g0", 30000, 0)]),
        pod_on("b", &[("g1", 30000, 0)]),
        pod_on("c", &[("g2", 30000, 0)]),
    ];
    let cases: Vec<(&str, Vec<PodInfo>, ReplicaShape, u64)> = vec![
        (
            "whole memory, one per device",
            vec![],
            gpus(1, Percent(100), 0),
            4,
        ),
        ("count spans devices", vec![], gpus(2, Percent(100), 0), 2),
        ("count above devices", vec![], gpus(5, Mib(1), 0), 0),
        ("slots bound sharing", vec![], gpus(1, Mib(1000), 0), 16),
        ("memory bounds sharing", vec![], gpus(1, Mib(20000), 0), 8),
        ("memory percentage", vec![], gpus(1, Percent(25), 0), 16),
        ("memory percentage 50", vec![], gpus(1, Percent(50), 0), 8),
        ("exclusive cores", vec![], gpus(1, Mib(1), 100), 4),
        ("cores share", vec![], gpus(1, Mib(1), 30), 12),
        // Fragmented: 3 devices have 10960 MiB free, one 40960. A 2-GPU
        // replica of 20000 MiB fits nowhere (only one device has room):
        // the totals (73840 MiB free) would wrongly say 1.
        ("fragmented memory", frag.clone(), gpus(2, Mib(20000), 0), 0),
        ("fragmented small", frag.clone(), gpus(2, Mib(10000), 0), 3),
        (
            "exclusive blocked by sharer",
            vec![pod_on("a", &[("g0", 1, 0)])],
            gpus(1, Mib(1), 100),
            3,
        ),
        (
            "compute exhausted blocks zero-core",
            vec![pod_on("a", &[("g0", 1, 100)])],
            gpus(1, Mib(1), 0),
            12,
        ),
        (
            "slots exhausted",
            vec![
                pod_on("a", &[("g0", 1, 0)]),
                pod_on("b", &[("g0", 1, 0)]),
                pod_on("c", &[("g0", 1, 0)]),
                pod_on("d", &[("g0", 1, 0)]),
            ],
            gpus(1, Mib(1), 0),
            12,
        ),
    ];
    for (why, pods, shape, want) in cases {
        assert_eq!(answer(node(), pods, &shape), want, "{why}");
    }
}

#[test]
fn gpu_models_and_health() {
    let mut n = node();
    n.gpus[0].model = "NVIDIA-H100".into();
    n.gpus[1].healthy = false;
    let mut s = gpus(1, GpuMemory::Percent(100), 0);
    assert_eq!(
        answer(n.clone(), vec![], &s),
        3,
        "unhealthy GPU is not used"
    );
    s.gpu.as_mut().unwrap().use_types = vec!["h100".into()];
    assert_eq!(answer(n.clone(), vec![], &s), 1, "include list");
    s.gpu.as_mut().unwrap().use_types = vec![];
    s.gpu.as_mut().unwrap().nouse_types = vec!["A100".into()];
    assert_eq!(answer(n.clone(), vec![], &s), 1, "exclude list");
    s.gpu.as_mut().unwrap().nouse_types = vec!["H100".into(), "A100".into()];
    assert_eq!(answer(n, vec![], &s), 0);
}

#[test]
fn whole_gpus_without_hami() {
    let mut n = node();
    n.gpus = hami_estimator::k8s::whole_gpus("n", 4);
    let mut p = pod_on("a", &[]);
    p.whole_gpus = 3;
    assert_eq!(
        answer(
            n.clone(),
            vec![p.clone()],
            &gpus(1, GpuMemory::Percent(100), 0)
        ),
        1
    );
    assert_eq!(
        answer(n.clone(), vec![], &gpus(2, GpuMemory::Percent(100), 0)),
        2
    );
    assert_eq!(
        answer(n.clone(), vec![], &gpus(1, GpuMemory::Mib(1000), 0)),
        0,
        "unknown memory"
    );
    let mut s = Snapshot::from_objects(vec![n], vec![p]);
    let shape = gpus(1, GpuMemory::Percent(100), 0);
    assert_eq!(s.max_available_replicas(&shape), 1);
    s.delete_pod("d", "a");
    assert_eq!(s.max_available_replicas(&shape), 4);
}

#[test]
fn events_update_cached_answers() {
    let mut s = Snapshot::from_objects(vec![node()], vec![]);
    let shape = gpus(1, GpuMemory::Mib(20000), 0);
    assert_eq!(s.max_available_replicas(&shape), 8);
    s.apply_pod(pod_on("a", &[("g0", 30000, 0)]));
    assert_eq!(
        s.max_available_replicas(&shape),
        6,
        "g0 keeps 10960 MiB: no room for 20000"
    );
    // Pod arrives before its node; node removed and re-added.
    let mut other = node();
    other.name = "m".into();
    let mut early = pod_on("e", &[("g0", 40960, 0)]);
    early.node = Some("m".into());
    s.apply_pod(early);
    assert_eq!(s.max_available_replicas(&shape), 6);
    s.apply_node(other.clone());
    assert_eq!(s.max_available_replicas(&shape), 12);
    s.delete_node("n");
    assert_eq!(s.max_available_replicas(&shape), 6);
    s.apply_node(node());
    assert_eq!(s.max_available_replicas(&shape), 12);
    s.delete_pod("d", "a");
    s.delete_pod("d", "e");
    assert_eq!(s.max_available_replicas(&shape), 16);
    assert_eq!(s.stats().classes, 1, "identical nodes share a class");
}

#[test]
fn unschedulable_replicas() {
    let w = WorkloadRef {
        kind: "Deployment".into(),
        namespace: "d".into(),
        name: "web".into(),
    };
    let pending = |name: &str, since: Option<i64>| PodInfo {
        namespace: "d".into(),
        name: name.into(),
        owner: Some(w.clone()),
        unschedulable_since_ms: since,
        ..Default::default()
    };
    let mut s = Snapshot::from_objects(
        vec![node()],
        vec![
            pending("a", Some(1_000)),
            pending("b", Some(50_000)),
            pending("c", None),
        ],
    );
    assert_eq!(s.unschedulable_replicas(&w, 30_000, 60_000), 1);
    assert_eq!(s.unschedulable_replicas(&w, 0, 60_000), 2);
    let mut other = w.clone();
    other.name = "api".into();
    assert_eq!(s.unschedulable_replicas(&other, 0, 60_000), 0);
    // Once bound, it no longer counts.
    let mut bound = pending("a", Some(1_000));
    bound.node = Some("n".into());
    bound.phase = PodPhase::Running;
    s.apply_pod(bound);
    assert_eq!(s.unschedulable_replicas(&w, 0, 60_000), 1);
}

#[test]
fn shapes_from_resource_lists() {
    let ann: BTreeMap<String, String> = [(
        "nvidia.com/use-gputype".to_string(),
        "A100, H100".to_string(),
    )]
    .into();
    let s = ReplicaShape::from_resource_list(
        [
            ("cpu", "500m"),
            ("memory", "1Gi"),
            ("nvidia.com/gpu", "2"),
            ("nvidia.com/gpumem-percentage", "50"),
        ],
        NodeClaim::default(),
        &ann,
    )
    .unwrap();
    let g = s.gpu.unwrap();
    assert_eq!((g.count, g.memory, g.cores), (2, GpuMemory::Percent(50), 0));
    assert_eq!(g.use_types, vec!["A100".to_string(), "H100".to_string()]);
    assert_eq!(s.requests.cpu_milli, 500);
    let s = ReplicaShape::from_resource_list(
        [
            ("nvidia.com/gpu", "1"),
            ("nvidia.com/gpumem", "3000"),
            ("nvidia.com/gpucores", "150"),
        ],
        NodeClaim::default(),
        &BTreeMap::new(),
    )
    .unwrap();
    let g = s.gpu.unwrap();
    assert_eq!((g.memory, g.cores), (GpuMemory::Mib(3000), 100));
    for bad in [
        vec![("cpu", "-1")],
        vec![("memory", "lots")],
        vec![("nvidia.com/gpumem", "100")],
        vec![
            ("nvidia.com/gpu", "1"),
            ("nvidia.com/gpumem-percentage", "150"),
        ],
    ] {
        assert!(
            ReplicaShape::from_resource_list(bad.clone(), NodeClaim::default(), &BTreeMap::new())
                .is_err(),
            "{bad:?}"
        );
    }
}
