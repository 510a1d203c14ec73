//! Placements on a scratch copy of a snapshot's nodes: deducting in-flight
//! (assumed) workloads, and the exact number of complete sets of a
//! multi-component workload that fit at once.
//!
//! A replica goes on one node, taking its requests, one pod slot and, for
//! GPUs, the devices [`choose_devices`] picks (the ones [`node_max_replicas`]
//! counts on, so a node takes exactly as many replicas as it was said to
//! hold). Assumed workloads are placed first-fit in node order, as Karmada's
//! estimator and a scheduler without preferences would place them.
//!
//! Component sets: `k` sets fit when every component's `k · replicas` pods
//! can be given nodes at once, each node taking its pods component by
//! component. The answer is exact: a first-fit lower bound and a
//! per-component upper bound, then, where they differ, a depth-first search
//! over how many pods of each component each node takes (pruned by the
//! capacity left) for the largest feasible `k` (feasibility is monotone: a
//! set removed from a placement leaves a placement). The search has a step
//! budget; a search that runs out answers the largest `k` it proved
//! (never more than fits) and says so.

use crate::fit::{DeviceState, choose_devices, node_max_replicas};
use crate::model::Resources;
use crate::shape::ReplicaShape;
use crate::snapshot::{NodeView, Snapshot};

/// One node as placements change it.
#[derive(Clone)]
struct SimNode<'a> {
    view: NodeView<'a>,
    requested: Resources,
    devices: Vec<DeviceState>,
}

/// A shape with its model verdicts, ready to place.
pub struct Placeable<'s> {
    shape: &'s ReplicaShape,
    allowed: Vec<bool>,
}

impl<'s> Placeable<'s> {
    /// `shape` against `snapshot`'s GPU models.
    pub fn new(snapshot: &Snapshot, shape: &'s ReplicaShape) -> Self {
        Self {
            shape,
            allowed: snapshot.models_allowed(shape),
        }
    }
}

/// A scratch copy of a snapshot's nodes.
#[derive(Clone)]
pub struct Scratch<'a> {
    nodes: Vec<SimNode<'a>>,
}

/// The answer of [`Scratch::max_component_sets`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SetsAnswer {
    /// Complete sets that fit.
    pub sets: u64,
    /// False when the search ran out of steps (`sets` is then a proven lower
    /// bound, not the maximum).
    pub exact: bool,
}

/// Search steps one [`Scratch::max_component_sets`] may take.
pub const DEFAULT_SEARCH_BUDGET: u64 = 200_000;

impl<'a> Scratch<'a> {
    /// Every present node of `snapshot`, in slot order.
    pub fn new(snapshot: &'a Snapshot) -> Self {
        Self {
            nodes: snapshot
                .node_views()
                .map(|view| SimNode {
                    requested: view.requested.clone(),
                    devices: view.devices.to_vec(),
                    view,
                })
                .collect(),
        }
    }

    /// Replicas of `p` node `i` still holds.
    fn capacity(&self, i: usize, p: &Placeable<'_>) -> u64 {
        let n = &self.nodes[i];
        if !n.view.schedulable
            || !p
                .shape
                .claim
                .matches(n.view.name, n.view.labels, n.view.taints)
        {
            return 0;
        }
        node_max_replicas(n.view.allocatable, &n.requested, &n.devices, p.shape, |m| {
            p.allowed.get(m as usize).copied().unwrap_or(false)
        })
    }

    /// Puts `count` replicas of `p` on node `i` (at most its capacity).
    fn place_on(&mut self, i: usize, p: &Placeable<'_>, count: u64) {
        let allowed = &p.allowed;
        let n = &mut self.nodes[i];
        for _ in 0..count {
            if let Some(g) = &p.shape.gpu {
                let Some(chosen) = choose_devices(&n.devices, g, |m| {
                    allowed.get(m as usize).copied().unwrap_or(false)
                }) else {
                    return;
                };
                for d in chosen {
                    n.devices[d].take_one(g);
                }
            }
            n.requested.add(&p.shape.requests);
            n.requested.pods = n.requested.pods.saturating_add(1);
        }
    }

    /// Places up to `count` replicas first-fit in node order; how many found
    /// room.
    pub fn place_first_fit(&mut self, p: &Placeable<'_>, count: u64) -> u64 {
        self.place_first_fit_from(p, count, &mut 0)
    }

    /// [`Self::place_first_fit`] from node `*cursor` on, which it moves
    /// past the nodes that are full for `p` (placements only take room).
    fn place_first_fit_from(&mut self, p: &Placeable<'_>, count: u64, cursor: &mut usize) -> u64 {
        let mut left = count;
        while *cursor < self.nodes.len() && left > 0 {
            let take = self.capacity(*cursor, p).min(left);
            if take > 0 {
                self.place_on(*cursor, p, take);
                left -= take;
            }
            if left > 0 {
                *cursor += 1;
            }
        }
        count - left
    }

    /// Replicas of `p` the nodes still hold.
    pub fn max_replicas(&self, p: &Placeable<'_>) -> u64 {
        (0..self.nodes.len())
            .map(|i| self.capacity(i, p))
            .fold(0, u64::saturating_add)
    }

    /// Complete sets of `components` (each with its replicas per set) that
    /// fit at once; `budget` bounds the exact search.
    pub fn max_component_sets(
        &self,
        components: &[(Placeable<'_>, u64)],
        budget: u64,
    ) -> SetsAnswer {
        let comps: Vec<(&Placeable<'_>, u64)> = components
            .iter()
            .filter(|(_, r)| *r > 0)
            .map(|(p, r)| (p, *r))
            .collect();
        if comps.is_empty() {
            return SetsAnswer {
                sets: u64::MAX,
                exact: true,
            };
        }
        let upper = comps
            .iter()
            .map(|(p, r)| self.max_replicas(p) / r)
            .min()
            .unwrap_or(0);
        let lower = self.first_fit_sets(&comps, upper);
        if lower == upper {
            return SetsAnswer {
                sets: lower,
                exact: true,
            };
        }
        // Largest feasible k in (lower, upper]: binary search, lo feasible.
        let (mut lo, mut hi) = (lower, upper);
        let mut steps = 0u64;
        let mut exact = true;
        while lo < hi {
            let mid = lo + (hi - lo).div_ceil(2);
            let mut demand: Vec<u64> = comps.iter().map(|(_, r)| r.saturating_mul(mid)).collect();
            let mut scratch = self.clone();
            match scratch.feasible(&comps, &mut demand, 0, 0, &mut steps, budget) {
                Some(true) => lo = mid,
                Some(false) => hi = mid - 1,
                None => {
                    exact = false;
                    hi = mid - 1;
                }
            }
        }
        SetsAnswer { sets: lo, exact }
    }

    /// Sets placed one after another, each component first-fit, up to `upper`.
    fn first_fit_sets(&self, comps: &[(&Placeable<'_>, u64)], upper: u64) -> u64 {
        let mut scratch = self.clone();
        let mut cursors = vec![0usize; comps.len()];
        let mut sets = 0;
        while sets < upper {
            for ((p, r), cursor) in comps.iter().zip(&mut cursors) {
                if scratch.place_first_fit_from(p, *r, cursor) < *r {
                    return sets;
                }
            }
            sets += 1;
        }
        sets
    }

    /// Whether `demand[c..]` can be placed, component `c` from node `i` on;
    /// None when the step budget ran out.
    fn feasible(
        &mut self,
        comps: &[(&Placeable<'_>, u64)],
        demand: &mut [u64],
        c: usize,
        i: usize,
        steps: &mut u64,
        budget: u64,
    ) -> Option<bool> {
        let Some((p, _)) = comps.get(c) else {
            return Some(true);
        };
        if demand[c] == 0 {
            return self.feasible(comps, demand, c + 1, 0, steps, budget);
        }
        // Every node capacity read counts as a step.
        *steps += (self.nodes.len() - i.min(self.nodes.len())) as u64
            + (comps.len() - c) as u64 * self.nodes.len() as u64;
        if *steps > budget {
            return None;
        }
        // What the nodes left can take must cover what is asked.
        let here: u64 = (i..self.nodes.len())
            .map(|n| self.capacity(n, p))
            .fold(0, u64::saturating_add);
        if here < demand[c] {
            return Some(false);
        }
        for (later, (q, _)) in comps.iter().enumerate().skip(c + 1) {
            if self.max_replicas(q) < demand[later] {
                return Some(false);
            }
        }
        let cap = self.capacity(i, p).min(demand[c]);
        for take in (0..=cap).rev() {
            let saved = self.nodes[i].clone();
            self.place_on(i, p, take);
            demand[c] -= take;
            let r = self.feasible(comps, demand, c, i + 1, steps, budget);
            demand[c] += take;
            self.nodes[i] = saved;
            match r {
                Some(false) => {}
                other => return other,
            }
        }
        Some(false)
    }
}
