//! The fit and max-replica math for one node (pure).
//!
//! A replica needs its node-level requests and `g` GPUs, each on a
//! different device. All GPUs of one shape are identical units, so for each
//! device we first compute `cap`: how many units of this shape it can still
//! take, applying HAMi's per-device checks unit by unit (health, model
//! lists, free share slot, free memory, free cores, exclusive use, compute
//! exhausted). `k` replicas then fit on the devices exactly when
//! `Σ_d min(cap_d, k) ≥ g·k`: each replica uses a device at most once, so a
//! device serves at most `min(cap_d, k)` replicas, and when the inequality
//! holds, filling replicas round-robin from the devices sorted by capacity
//! achieves it. The left side minus `g·k` is concave in `k` and zero at 0,
//! so the feasible `k` form a prefix and a binary search finds the largest.

use crate::model::Resources;
use crate::shape::{GpuRequest, ReplicaShape};

/// The state of one device as the fit reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct DeviceState {
    /// Interned model id (see the snapshot's model table).
    pub model: u32,
    /// Healthy.
    pub healthy: bool,
    /// Share slots.
    pub slots: u32,
    /// Slots in use.
    pub used: u32,
    /// Memory, MiB.
    pub total_mem: u64,
    /// Memory in use, MiB.
    pub used_mem: u64,
    /// Compute, percent of one GPU.
    pub total_cores: u32,
    /// Compute in use.
    pub used_cores: u32,
}

impl DeviceState {
    /// Whether one more unit of `g` fits, with HAMi's checks in HAMi's order.
    /// `model_ok` is the result of the model include/exclude lists.
    pub fn fits_one(&self, g: &GpuRequest, model_ok: bool) -> bool {
        let memreq = g.memory.of_device(self.total_mem);
        self.healthy
            && model_ok
            && self.used < self.slots
            && self.total_mem.saturating_sub(self.used_mem) >= memreq
            && self.total_cores.saturating_sub(self.used_cores) >= g.cores
            && !(self.total_cores == 100 && g.cores == 100 && self.used > 0)
            && !(self.total_cores != 0 && self.used_cores >= self.total_cores && g.cores == 0)
    }

    /// Takes one unit of `g`.
    pub fn take_one(&mut self, g: &GpuRequest) {
        self.used += 1;
        self.used_mem += g.memory.of_device(self.total_mem);
        self.used_cores += g.cores;
    }

    /// How many units of `g` this device can still take (closed form of
    /// repeating [`Self::fits_one`] and [`Self::take_one`]).
    pub fn capacity(&self, g: &GpuRequest, model_ok: bool) -> u64 {
        if !self.fits_one(g, model_ok) {
            return 0;
        }
        let mut cap = u64::from(self.slots - self.used);
        let memreq = g.memory.of_device(self.total_mem);
        if let Some(m) = self
            .total_mem
            .saturating_sub(self.used_mem)
            .checked_div(memreq)
        {
            cap = cap.min(m);
        }
        let free = self.total_cores.saturating_sub(self.used_cores);
        if let Some(c) = free.checked_div(g.cores) {
            cap = cap.min(u64::from(c));
        }
        if self.total_cores == 100 && g.cores == 100 {
            cap = cap.min(1);
        }
        cap
    }
}

/// Largest `k ≤ upper` with `Σ min(cap_d, k) ≥ g·k`.
pub fn gpu_replicas(caps: &[u64], per_replica: u32, upper: u64) -> u64 {
    let g = u64::from(per_replica);
    if g == 0 {
        return upper;
    }
    let total: u64 = caps.iter().sum();
    let feasible = |k: u64| caps.iter().map(|c| (*c).min(k)).sum::<u64>() >= g.saturating_mul(k);
    let mut hi = upper.min(total / g);
    if feasible(hi) {
        return hi;
    }
    let mut lo = 0;
    // invariant: feasible(lo), !feasible(hi)
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if feasible(mid) {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    lo
}

/// Replicas that the node's free resources hold, ignoring GPUs. Every
/// replica takes one pod slot; a requested resource the node lacks gives 0.
pub fn resource_replicas(alloc: &Resources, requested: &Resources, req: &Resources) -> u64 {
    let div = |cap: u64, used: u64, want: u64| -> u64 {
        cap.saturating_sub(used)
            .checked_div(want)
            .unwrap_or(u64::MAX)
    };
    let mut k = alloc.pods.saturating_sub(requested.pods);
    k = k.min(div(alloc.cpu_milli, requested.cpu_milli, req.cpu_milli));
    k = k.min(div(alloc.memory, requested.memory, req.memory));
    k = k.min(div(
        alloc.ephemeral_storage,
        requested.ephemeral_storage,
        req.ephemeral_storage,
    ));
    for (name, want) in &req.extended {
        let cap = alloc.extended.get(name).copied().unwrap_or(0);
        let used = requested.extended.get(name).copied().unwrap_or(0);
        k = k.min(div(cap, used, *want));
        if k == 0 {
            break;
        }
    }
    k
}

/// Exact number of additional replicas of `shape` one node holds (its node
/// claim is checked by the caller). `model_ok` answers the model lists for
/// an interned model id.
pub fn node_max_replicas(
    alloc: &Resources,
    requested: &Resources,
    devices: &[DeviceState],
    shape: &ReplicaShape,
    mut model_ok: impl FnMut(u32) -> bool,
) -> u64 {
    let k = resource_replicas(alloc, requested, &shape.requests);
    let Some(g) = &shape.gpu else {
        return k;
    };
    if k == 0 || devices.len() < g.count as usize {
        return 0;
    }
    let mut caps = [0u64; 16];
    if devices.len() <= caps.len() {
        for (c, d) in caps.iter_mut().zip(devices) {
            *c = d.capacity(g, model_ok(d.model));
        }
        gpu_replicas(&caps[..devices.len()], g.count, k)
    } else {
        let caps: Vec<u64> = devices
            .iter()
            .map(|d| d.capacity(g, model_ok(d.model)))
            .collect();
        gpu_replicas(&caps, g.count, k)
    }
}

/// The devices one more replica of `g` takes on a node: indices into
/// `devices` (a node's devices in its [`crate::GpuDevice`] order, as
/// [`crate::NodeView::devices`] lists them) of the `g.count` devices with
/// the most room for this shape, ties to the lower index; `None` when fewer
/// than `g.count` devices can take a unit. Taking the devices with the
/// largest capacity keeps [`gpu_replicas`]' count reachable: each placement
/// lowers every chosen capacity by exactly one, and the node then holds
/// exactly one replica fewer (the member-cluster simulator's binder relies
/// on this so that what it places matches the estimate).
pub fn choose_devices(
    devices: &[DeviceState],
    g: &GpuRequest,
    mut model_ok: impl FnMut(u32) -> bool,
) -> Option<Vec<usize>> {
    let mut caps: Vec<(u64, usize)> = devices
        .iter()
        .enumerate()
        .map(|(i, d)| (d.capacity(g, model_ok(d.model)), i))
        .filter(|(c, _)| *c > 0)
        .collect();
    if caps.len() < g.count as usize {
        return None;
    }
    caps.sort_unstable_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    let mut chosen: Vec<usize> = caps.iter().take(g.count as usize).map(|c| c.1).collect();
    chosen.sort_unstable();
    Some(chosen)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gpu_replicas_counts_distinct_devices() {
        // One device with room for 10 units cannot hold a 2-GPU replica.
        assert_eq!(gpu_replicas(&[10], 2, 100), 0);
        assert_eq!(gpu_replicas(&[10, 1], 2, 100), 1);
        assert_eq!(gpu_replicas(&[3, 3, 3], 2, 100), 4);
        assert_eq!(gpu_replicas(&[5, 1, 1, 1], 2, 100), 3);
        assert_eq!(gpu_replicas(&[5, 1, 1, 1], 2, 2), 2);
        assert_eq!(gpu_replicas(&[], 0, 7), 7);
        assert_eq!(gpu_replicas(&[4, 4, 4, 4], 4, 100), 4);
        assert_eq!(gpu_replicas(&[4, 4, 4, 3], 4, 100), 3);
    }

    #[test]
    fn choose_devices_reaches_the_counted_replicas() {
        use crate::shape::GpuMemory;
        let mut rng = crate::fleet::Rng::new(7);
        for _ in 0..500 {
            let n = 1 + rng.below(8) as usize;
            let mut devs: Vec<DeviceState> = (0..n)
                .map(|_| DeviceState {
                    model: 0,
                    healthy: true,
                    slots: 1 + rng.below(6) as u32,
                    used: 0,
                    total_mem: 1024 * (1 + rng.below(8)),
                    used_mem: 0,
                    total_cores: 100,
                    used_cores: 0,
                })
                .collect();
            let g = GpuRequest {
                count: 1 + rng.below(4) as u32,
                memory: GpuMemory::Mib(512 * (1 + rng.below(4))),
                cores: 10 * rng.below(6) as u32,
                use_types: Vec::new(),
                nouse_types: Vec::new(),
            };
            let caps: Vec<u64> = devs.iter().map(|d| d.capacity(&g, true)).collect();
            let expected = gpu_replicas(&caps, g.count, u64::MAX);
            let mut placed = 0;
            while let Some(chosen) = choose_devices(&devs, &g, |_| true) {
                assert_eq!(chosen.len(), g.count as usize);
                for i in chosen {
                    assert!(devs[i].fits_one(&g, true));
                    devs[i].take_one(&g);
                }
                placed += 1;
                assert!(placed <= expected, "placed more than counted");
            }
            assert_eq!(placed, expected, "caps {caps:?} shape {g:?}");
        }
    }
}
