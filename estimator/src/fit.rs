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
}
