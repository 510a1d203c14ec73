//! A seeded random fleet and random replica shapes, for tests, benches,
//! the binary's demo mode and the member-cluster simulator. The same seed
//! and options always give the same fleet.

use std::collections::BTreeMap;

use crate::claim::{NodeClaim, Operator, Requirement, Term, Toleration, TolerationOperator};
use crate::fit::DeviceState;
use crate::fleet::{
    Fleet, FleetGpu, FleetGpuUse, FleetNode, FleetPendingPod, FleetPod, FleetTaint, FleetWorkload,
};
use crate::model::Resources;
use crate::shape::{GpuMemory, GpuRequest, ReplicaShape};

/// SplitMix64: small, fast, deterministic; not for cryptography.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator from a seed.
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (0 when n is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next_u64() % n }
    }

    /// True with probability `percent`/100.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    /// One element of a non-empty slice (the first when empty is impossible).
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        let i = self.below(items.len() as u64) as usize;
        &items[i.min(items.len().saturating_sub(1))]
    }
}

/// What [`generate`] builds.
#[derive(Debug, Clone)]
pub struct GenerateOptions {
    /// Cluster name.
    pub cluster: String,
    /// Nodes.
    pub nodes: usize,
    /// Pods to try to place per node (fewer land when a node is full).
    pub pods_per_node: usize,
    /// GPUs per node; `None` picks 0 to 8 per node.
    pub gpus_per_node: Option<u32>,
    /// Share slots per GPU; `None` picks 1 to 4 per GPU.
    pub slots_per_gpu: Option<u32>,
    /// Taints, cordoned / NotReady nodes and unhealthy GPUs.
    pub taints: bool,
    /// Seed.
    pub seed: u64,
}

impl Default for GenerateOptions {
    fn default() -> Self {
        Self {
            cluster: "member".into(),
            nodes: 100,
            pods_per_node: 20,
            gpus_per_node: Some(8),
            slots_per_gpu: Some(10),
            taints: false,
            seed: 1,
        }
    }
}

struct NodeType {
    name: &'static str,
    cpu: &'static str,
    cpu_milli: u64,
    memory: &'static str,
    memory_bytes: u64,
    model: &'static str,
    gpu_mib: u64,
}

const GIB: u64 = 1 << 30;
const NODE_TYPES: [NodeType; 3] = [
    NodeType {
        name: "a100",
        cpu: "96",
        cpu_milli: 96_000,
        memory: "768Gi",
        memory_bytes: 768 * GIB,
        model: "NVIDIA-A100-SXM4-80GB",
        gpu_mib: 81920,
    },
    NodeType {
        name: "h100",
        cpu: "128",
        cpu_milli: 128_000,
        memory: "1024Gi",
        memory_bytes: 1024 * GIB,
        model: "NVIDIA-H100-80GB-HBM3",
        gpu_mib: 81920,
    },
    NodeType {
        name: "l4",
        cpu: "48",
        cpu_milli: 48_000,
        memory: "192Gi",
        memory_bytes: 192 * GIB,
        model: "NVIDIA-L4",
        gpu_mib: 23034,
    },
];
const ZONES: [&str; 3] = ["zone-a", "zone-b", "zone-c"];
const POD_CPU: [(&str, u64); 5] = [
    ("250m", 250),
    ("500m", 500),
    ("1", 1000),
    ("2", 2000),
    ("4", 4000),
];
const POD_MEM: [(&str, u64); 4] = [
    ("1Gi", GIB),
    ("4Gi", 4 * GIB),
    ("8Gi", 8 * GIB),
    ("16Gi", 16 * GIB),
];
const POD_GPU_MIB: [u64; 5] = [2048, 4096, 8192, 20480, 40960];
const POD_GPU_CORES: [u32; 5] = [0, 10, 25, 50, 100];

/// A random fleet: nodes of three machine types in three zones, each with
/// its GPUs, and pods placed on them with fragmented GPU use (each pod's
/// GPUs on randomly chosen devices that fit, HAMi's checks applied).
pub fn generate(opts: &GenerateOptions) -> Fleet {
    let mut rng = Rng::new(opts.seed);
    let mut nodes = Vec::with_capacity(opts.nodes);
    for i in 0..opts.nodes {
        let t = rng.pick(&NODE_TYPES);
        let name = format!("{}-{}-{i:05}", opts.cluster, t.name);
        let gpu_count = opts.gpus_per_node.unwrap_or_else(|| rng.below(9) as u32);
        let mut labels = BTreeMap::new();
        labels.insert(
            "topology.kubernetes.io/zone".to_string(),
            rng.pick(&ZONES).to_string(),
        );
        labels.insert(
            "node.kubernetes.io/instance-type".to_string(),
            t.name.to_string(),
        );
        labels.insert("hami.io/gpu-count".to_string(), gpu_count.to_string());
        if rng.chance(50) {
            labels.insert(
                "hami.io/pool".to_string(),
                rng.pick(&["train", "infer"]).to_string(),
            );
        }
        let mut taints = Vec::new();
        let (mut unschedulable, mut ready) = (false, true);
        if opts.taints {
            if rng.chance(25) {
                taints.push(FleetTaint {
                    key: "dedicated".into(),
                    value: "train".into(),
                    effect: "NoSchedule".into(),
                });
            }
            if rng.chance(5) {
                taints.push(FleetTaint {
                    key: "maintenance".into(),
                    value: String::new(),
                    effect: "NoExecute".into(),
                });
            }
            if rng.chance(10) {
                taints.push(FleetTaint {
                    key: "spot".into(),
                    value: "true".into(),
                    effect: "PreferNoSchedule".into(),
                });
            }
            unschedulable = rng.chance(2);
            ready = !rng.chance(2);
        }
        let mut gpus = Vec::new();
        let mut states = Vec::new();
        for d in 0..gpu_count {
            let slots = opts
                .slots_per_gpu
                .unwrap_or_else(|| 1 + rng.below(4) as u32);
            let healthy = !(opts.taints && rng.chance(2));
            gpus.push(FleetGpu {
                id: format!("GPU-{i:06}-{d}"),
                model: t.model.into(),
                memory_mib: t.gpu_mib,
                cores: 100,
                slots,
                healthy,
            });
            states.push(DeviceState {
                model: 0,
                healthy,
                slots,
                used: 0,
                total_mem: t.gpu_mib,
                used_mem: 0,
                total_cores: 100,
                used_cores: 0,
            });
        }
        let (mut cpu_left, mut mem_left) = (t.cpu_milli, t.memory_bytes);
        let mut pods = Vec::new();
        for p in 0..opts.pods_per_node {
            let (cpu, cpu_m) = *rng.pick(&POD_CPU);
            let (mem, mem_b) = *rng.pick(&POD_MEM);
            if cpu_m > cpu_left || mem_b > mem_left || pods.len() >= 100 {
                continue;
            }
            let mut uses = Vec::new();
            if gpu_count > 0 && rng.chance(50) {
                let want = *rng.pick(&[1u32, 1, 1, 2, 4]);
                let g = GpuRequest {
                    count: want,
                    memory: GpuMemory::Mib(*rng.pick(&POD_GPU_MIB)),
                    cores: *rng.pick(&POD_GPU_CORES),
                    use_types: vec![],
                    nouse_types: vec![],
                };
                let mut fitting: Vec<usize> = (0..states.len())
                    .filter(|d| states[*d].fits_one(&g, true))
                    .collect();
                if (fitting.len() as u32) < want {
                    continue;
                }
                for _ in 0..want {
                    let k = rng.below(fitting.len() as u64) as usize;
                    let d = fitting.swap_remove(k);
                    states[d].take_one(&g);
                    uses.push(FleetGpuUse {
                        device: gpus[d].id.clone(),
                        memory_mib: g.memory.of_device(t.gpu_mib),
                        cores: g.cores,
                    });
                }
            }
            cpu_left -= cpu_m;
            mem_left -= mem_b;
            let mut requests = BTreeMap::new();
            requests.insert("cpu".to_string(), cpu.to_string());
            requests.insert("memory".to_string(), mem.to_string());
            pods.push(FleetPod {
                name: format!("p-{i:05}-{p}"),
                namespace: "default".into(),
                requests,
                gpus: uses,
            });
        }
        let mut allocatable = BTreeMap::new();
        allocatable.insert("cpu".to_string(), t.cpu.to_string());
        allocatable.insert("memory".to_string(), t.memory.to_string());
        allocatable.insert("pods".to_string(), "110".to_string());
        allocatable.insert("ephemeral-storage".to_string(), "1Ti".to_string());
        nodes.push(FleetNode {
            name,
            labels,
            taints,
            allocatable,
            unschedulable,
            ready,
            gpus,
            pods,
        });
    }
    let pending = (0..opts.nodes.div_ceil(50))
        .map(|i| FleetPendingPod {
            name: format!("pending-{i}"),
            namespace: "default".into(),
            workload: FleetWorkload {
                kind: "Deployment".into(),
                name: format!("web-{}", i % 3),
            },
            requests: BTreeMap::new(),
            unschedulable_for_seconds: Some(rng.below(600)),
        })
        .collect();
    Fleet {
        cluster: opts.cluster.clone(),
        nodes,
        pending,
    }
}

/// A random replica shape over the generator's labels, taints and models.
/// With `claims`, shapes also carry selectors, affinity (every operator)
/// and tolerations.
pub fn random_shape(rng: &mut Rng, claims: bool) -> ReplicaShape {
    let mut requests = Resources::default();
    if rng.chance(80) {
        requests.cpu_milli = *rng.pick(&[100u64, 500, 1000, 2000, 8000]);
    }
    if rng.chance(80) {
        requests.memory = *rng.pick(&[GIB / 2, GIB, 4 * GIB, 32 * GIB]);
    }
    let gpu = rng.chance(75).then(|| GpuRequest {
        count: *rng.pick(&[1u32, 1, 2, 3, 4, 8]),
        memory: if rng.chance(60) {
            GpuMemory::Mib(*rng.pick(&[1024u64, 4096, 8192, 20480, 40960, 81920]))
        } else {
            GpuMemory::Percent(*rng.pick(&[10u32, 25, 50, 100]))
        },
        cores: *rng.pick(&[0u32, 0, 10, 25, 50, 100]),
        use_types: if rng.chance(15) {
            vec![rng.pick(&["a100", "H100"]).to_string()]
        } else {
            vec![]
        },
        nouse_types: if rng.chance(10) {
            vec!["L4".into()]
        } else {
            vec![]
        },
    });
    let mut claim = NodeClaim::default();
    if claims {
        if rng.chance(20) {
            claim.node_selector.insert(
                "topology.kubernetes.io/zone".into(),
                rng.pick(&ZONES).to_string(),
            );
        }
        if rng.chance(40) {
            let req = |key: &str, operator: Operator, values: &[&str]| Requirement {
                key: key.into(),
                operator,
                values: values.iter().map(|v| v.to_string()).collect(),
            };
            let all = [
                req(
                    "node.kubernetes.io/instance-type",
                    Operator::In,
                    &["a100", "h100"],
                ),
                req("topology.kubernetes.io/zone", Operator::NotIn, &["zone-c"]),
                req("hami.io/pool", Operator::Exists, &[]),
                req("hami.io/pool", Operator::DoesNotExist, &[]),
                req("hami.io/gpu-count", Operator::Gt, &["3"]),
                req("hami.io/gpu-count", Operator::Lt, &["6"]),
            ];
            let mut terms = vec![Term {
                match_expressions: vec![rng.pick(&all).clone()],
                match_fields: vec![],
            }];
            if rng.chance(30) {
                terms.push(Term {
                    match_expressions: vec![rng.pick(&all).clone(), rng.pick(&all).clone()],
                    match_fields: vec![],
                });
            }
            claim.affinity = Some(terms);
        }
        if rng.chance(40) {
            claim.tolerations.push(Toleration {
                key: "dedicated".into(),
                operator: TolerationOperator::Equal,
                value: "train".into(),
                effect: None,
            });
        }
        if rng.chance(10) {
            claim.tolerations.push(Toleration {
                key: String::new(),
                operator: TolerationOperator::Exists,
                value: String::new(),
                effect: None,
            });
        }
    }
    ReplicaShape {
        requests,
        gpu,
        claim,
    }
}
