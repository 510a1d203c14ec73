#![allow(clippy::unwrap_used, clippy::expect_used)]
//! `MaxAvailableComponentSets` against brute force: on small random fleets
//! (GPUs shared by memory and slots, labels, a taint) and random
//! multi-component workloads, with and without an in-flight workload, the
//! number of complete sets the estimator answers equals the largest `k`
//! for which some assignment of every pod of `k` sets to nodes fits, found
//! by trying every assignment. On each node the brute force places pods one
//! at a time, component by component, each taking the devices a replica
//! takes (`choose_devices`), and checks the node's room before each one.

use std::collections::BTreeMap;

use hami_estimator::claim::NodeClaim;
use hami_estimator::fit::{DeviceState, choose_devices, node_max_replicas};
use hami_estimator::fleet::Fleet;
use hami_estimator::simulate::{DEFAULT_SEARCH_BUDGET, Placeable, Scratch, SetsAnswer};
use hami_estimator::{NodeView, ReplicaShape, Resources, Snapshot};
use proptest::prelude::*;

/// One node's state as the brute force changes it.
#[derive(Clone)]
struct Node<'a> {
    view: NodeView<'a>,
    requested: Resources,
    devices: Vec<DeviceState>,
}

impl Node<'_> {
    fn room(&self, shape: &ReplicaShape, allowed: &[bool]) -> u64 {
        if !self.view.schedulable
            || !shape
                .claim
                .matches(self.view.name, self.view.labels, self.view.taints)
        {
            return 0;
        }
        node_max_replicas(
            self.view.allocatable,
            &self.requested,
            &self.devices,
            shape,
            |m| allowed[m as usize],
        )
    }

    /// Places one replica; false when it does not fit.
    fn place_one(&mut self, shape: &ReplicaShape, allowed: &[bool]) -> bool {
        if self.room(shape, allowed) == 0 {
            return false;
        }
        if let Some(g) = &shape.gpu {
            let Some(chosen) = choose_devices(&self.devices, g, |m| allowed[m as usize]) else {
                return false;
            };
            for d in chosen {
                self.devices[d].take_one(g);
            }
        }
        self.requested.add(&shape.requests);
        self.requested.pods += 1;
        true
    }
}

/// Tries every way to give `demand[c..]` to the nodes.
fn brute_feasible(
    nodes: &[Node<'_>],
    comps: &[(ReplicaShape, Vec<bool>, u64)],
    counts: &mut Vec<Vec<u64>>,
    demand: &[u64],
    c: usize,
    i: usize,
    left: u64,
) -> bool {
    if c == comps.len() {
        // Every node takes its pods, component by component.
        return nodes.iter().enumerate().all(|(n, node)| {
            let mut node = node.clone();
            comps.iter().enumerate().all(|(ci, (shape, allowed, _))| {
                (0..counts[n][ci]).all(|_| node.place_one(shape, allowed))
            })
        });
    }
    if i == nodes.len() - 1 {
        counts[i][c] = left;
        let next = demand.get(c + 1).copied().unwrap_or(0);
        let ok = brute_feasible(nodes, comps, counts, demand, c + 1, 0, next);
        counts[i][c] = 0;
        return ok;
    }
    for x in 0..=left {
        counts[i][c] = x;
        if brute_feasible(nodes, comps, counts, demand, c, i + 1, left - x) {
            counts[i][c] = 0;
            return true;
        }
    }
    counts[i][c] = 0;
    false
}

fn brute_max_sets(nodes: &[Node<'_>], comps: &[(ReplicaShape, Vec<bool>, u64)]) -> u64 {
    let mut k = 0;
    loop {
        let demand: Vec<u64> = comps.iter().map(|(_, _, r)| r * (k + 1)).collect();
        let mut counts = vec![vec![0; comps.len()]; nodes.len()];
        if !brute_feasible(nodes, comps, &mut counts, &demand, 0, 0, demand[0]) {
            return k;
        }
        k += 1;
    }
}

/// The in-flight workload placed first-fit in node order.
fn first_fit(nodes: &mut [Node<'_>], shape: &ReplicaShape, allowed: &[bool], mut count: u64) {
    for node in nodes {
        let take = node.room(shape, allowed).min(count);
        for _ in 0..take {
            assert!(node.place_one(shape, allowed));
        }
        count -= take;
    }
}

#[derive(Debug, Clone)]
struct GenNode {
    cpu: u32,
    pods: u32,
    zone_b: bool,
    tainted: bool,
    gpus: Vec<(u32, u32, bool)>,
}

#[derive(Debug, Clone)]
struct GenShape {
    cpu_half: u32,
    gpus: u32,
    gpumem: u32,
    zone_b_only: bool,
    tolerates: bool,
    replicas: u64,
}

fn fleet_yaml(nodes: &[GenNode]) -> String {
    let mut y = String::from("cluster: c\nnodes:\n");
    for (i, n) in nodes.iter().enumerate() {
        y.push_str(&format!(
            "  - name: n{i}\n    labels: {{zone: {}}}\n    allocatable: {{cpu: \"{}\", memory: 16Gi, pods: \"{}\"}}\n",
            if n.zone_b { "b" } else { "a" },
            n.cpu,
            n.pods
        ));
        if n.tainted {
            y.push_str("    taints: [{key: dedicated, value: ml, effect: NoSchedule}]\n");
        }
        if !n.gpus.is_empty() {
            y.push_str("    gpus:\n");
            for (j, (mem, slots, h100)) in n.gpus.iter().enumerate() {
                y.push_str(&format!(
                    "      - {{id: GPU-{i}-{j}, model: {}, memoryMiB: {mem}, slots: {slots}}}\n",
                    if *h100 { "NVIDIA-H100" } else { "NVIDIA-A100" }
                ));
            }
        }
    }
    y
}

fn shape_of(g: &GenShape) -> ReplicaShape {
    let cpu = format!("{}m", g.cpu_half * 500);
    let gpus = g.gpus.to_string();
    let mem = g.gpumem.to_string();
    let mut list = vec![("cpu", cpu.as_str())];
    if g.gpus > 0 {
        list.push(("nvidia.com/gpu", gpus.as_str()));
        list.push(("nvidia.com/gpumem", mem.as_str()));
    }
    let mut claim = NodeClaim::default();
    if g.zone_b_only {
        claim.node_selector = BTreeMap::from([("zone".to_owned(), "b".to_owned())]);
    }
    if g.tolerates {
        claim.tolerations = vec![
            hami_estimator::claim::Toleration::from_fields(
                Some("dedicated"),
                Some("Exists"),
                None,
                None,
            )
            .unwrap(),
        ];
    }
    ReplicaShape::from_resource_list(list, claim, &BTreeMap::new()).unwrap()
}

fn gen_node() -> impl Strategy<Value = GenNode> {
    (
        1u32..=4,
        1u32..=4,
        any::<bool>(),
        prop::bool::weighted(0.25),
        prop::collection::vec(
            (
                prop::sample::select(vec![4000u32, 8000]),
                1u32..=3,
                any::<bool>(),
            ),
            0..=2,
        ),
    )
        .prop_map(|(cpu, pods, zone_b, tainted, gpus)| GenNode {
            cpu,
            pods,
            zone_b,
            tainted,
            gpus,
        })
}

fn gen_shape() -> impl Strategy<Value = GenShape> {
    (
        0u32..=2,
        0u32..=2,
        prop::sample::select(vec![2000u32, 4000]),
        prop::bool::weighted(0.2),
        prop::bool::weighted(0.3),
        1u64..=2,
    )
        .prop_map(
            |(cpu_half, gpus, gpumem, zone_b_only, tolerates, replicas)| GenShape {
                cpu_half,
                gpus,
                gpumem,
                zone_b_only,
                tolerates,
                replicas,
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn component_sets_equal_brute_force(
        nodes in prop::collection::vec(gen_node(), 1..=3),
        comps in prop::collection::vec(gen_shape(), 1..=3),
        assumed in prop::option::of((gen_shape(), 1u64..=2)),
    ) {
        let fleet = Fleet::from_yaml(&fleet_yaml(&nodes)).unwrap();
        let snap: Snapshot = fleet.snapshot(0).unwrap();
        let shapes: Vec<(ReplicaShape, u64)> =
            comps.iter().map(|g| (shape_of(g), g.replicas)).collect();
        let assumed = assumed.map(|(g, n)| (shape_of(&g), n));

        let mut scratch = Scratch::new(&snap);
        let mut brute: Vec<Node<'_>> = snap
            .node_views()
            .map(|view| Node { requested: view.requested.clone(), devices: view.devices.to_vec(), view })
            .collect();
        if let Some((shape, n)) = &assumed {
            scratch.place_first_fit(&Placeable::new(&snap, shape), *n);
            first_fit(&mut brute, shape, &snap.models_allowed(shape), *n);
        }
        let placeable: Vec<(Placeable<'_>, u64)> =
            shapes.iter().map(|(s, r)| (Placeable::new(&snap, s), *r)).collect();
        let got = scratch.max_component_sets(&placeable, DEFAULT_SEARCH_BUDGET);
        let reference: Vec<(ReplicaShape, Vec<bool>, u64)> = shapes
            .iter()
            .map(|(s, r)| (s.clone(), snap.models_allowed(s), *r))
            .collect();
        let want = brute_max_sets(&brute, &reference);
        prop_assert_eq!(got, SetsAnswer { sets: want, exact: true });
    }
}

/// A case first-fit gets wrong: the first component fits anywhere, the
/// second only on the GPU node, and first fit puts the first on the GPU
/// node. The answer is the exact one, not first fit's.
#[test]
fn the_search_beats_first_fit_where_it_must() {
    let nodes = vec![
        GenNode {
            cpu: 1,
            pods: 4,
            zone_b: false,
            tainted: false,
            gpus: vec![(8000, 1, false)],
        },
        GenNode {
            cpu: 1,
            pods: 4,
            zone_b: false,
            tainted: false,
            gpus: vec![],
        },
    ];
    let fleet = Fleet::from_yaml(&fleet_yaml(&nodes)).unwrap();
    let snap = fleet.snapshot(0).unwrap();
    let cpu_only = shape_of(&GenShape {
        cpu_half: 2,
        gpus: 0,
        gpumem: 2000,
        zone_b_only: false,
        tolerates: false,
        replicas: 1,
    });
    let gpu = shape_of(&GenShape {
        cpu_half: 2,
        gpus: 1,
        gpumem: 2000,
        zone_b_only: false,
        tolerates: false,
        replicas: 1,
    });
    let scratch = Scratch::new(&snap);
    let comps = vec![
        (Placeable::new(&snap, &cpu_only), 1),
        (Placeable::new(&snap, &gpu), 1),
    ];
    assert_eq!(
        scratch.max_component_sets(&comps, DEFAULT_SEARCH_BUDGET),
        SetsAnswer {
            sets: 1,
            exact: true
        }
    );
    // With no budget the search cannot run: the answer is first fit's
    // proven 0, said to be inexact.
    assert_eq!(
        scratch.max_component_sets(&comps, 0),
        SetsAnswer {
            sets: 0,
            exact: false
        }
    );
}
