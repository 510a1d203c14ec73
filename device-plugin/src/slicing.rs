//! How physical GPUs become kubelet devices, and back. Pure: no IO, no async.
//!
//! In whole mode each GPU is one kubelet device whose ID is its UUID. In shared
//! mode each GPU is offered as `split_count` share slots with IDs
//! `<uuid>::<slot>`; a container that receives k slots of one GPU may use
//! k/split_count of its (scaled) memory and k*100/split_count percent of its
//! cores, limits that HAMi-core enforces inside the container.

use std::collections::{BTreeMap, BTreeSet};

use crate::backend::GpuDevice;

/// Separator between a GPU's UUID and its slot number in a share's device ID.
pub const SLOT_SEPARATOR: &str = "::";

/// Whether GPUs are offered whole or as share slots.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    Whole,
    Shared,
}

/// How GetPreferredAllocation chooses among available devices.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Policy {
    /// Use as few GPUs (whole mode: NUMA nodes) as possible, preferring the busiest that fit.
    Pack,
    /// Use as many GPUs (whole mode: NUMA nodes) as possible, preferring the least busy.
    Spread,
}

/// Slicing settings, parsed from flags.
#[derive(Clone, Debug, PartialEq)]
pub struct SliceConfig {
    pub mode: Mode,
    /// Share slots per GPU in shared mode (at least 1).
    pub split_count: u32,
    /// Factor applied to a GPU's memory before dividing it into shares;
    /// above 1 over-subscribes memory, as HAMi's `--device-memory-scaling`.
    pub memory_scaling: f64,
}

impl Default for SliceConfig {
    fn default() -> Self {
        Self {
            mode: Mode::Shared,
            split_count: 10,
            memory_scaling: 1.0,
        }
    }
}

impl SliceConfig {
    /// Slots offered per GPU: `split_count` when shared, 1 when whole.
    pub fn slots_per_gpu(&self) -> u32 {
        match self.mode {
            Mode::Whole => 1,
            Mode::Shared => self.split_count.max(1),
        }
    }

    /// Memory offered for one GPU after scaling, in MiB.
    pub fn scaled_memory_mib(&self, gpu: &GpuDevice) -> u64 {
        match self.mode {
            Mode::Whole => gpu.memory_mib,
            // Float math is fine here: the result is floored and memory sizes
            // are far below 2^53 MiB.
            Mode::Shared => (gpu.memory_mib as f64 * self.memory_scaling).floor() as u64,
        }
    }
}

/// Errors in a request's device IDs; each becomes gRPC InvalidArgument or
/// FailedPrecondition at the server edge.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SliceError {
    #[error(
        "unknown device ID {id:?}: this plugin offers {expected} (see ListAndWatch for the current list)"
    )]
    UnknownDevice { id: String, expected: &'static str },
    #[error("device ID {0:?} is listed twice")]
    Duplicate(String),
    #[error("device {id:?} is unhealthy and cannot be allocated")]
    Unhealthy { id: String },
    #[error("must_include device {0:?} is not among the available devices")]
    MustIncludeNotAvailable(String),
    #[error("allocation_size {size} is invalid: {reason}")]
    BadSize { size: i32, reason: String },
    #[error("a container request names no devices")]
    Empty,
}

/// One kubelet device: a whole GPU or one share slot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PluginDevice {
    pub id: String,
    pub healthy: bool,
    pub numa: Option<i64>,
}

/// The kubelet devices for the given GPUs, GPU by GPU, slot by slot.
pub fn plugin_devices(gpus: &[GpuDevice], cfg: &SliceConfig) -> Vec<PluginDevice> {
    let mut out = Vec::new();
    for gpu in gpus {
        match cfg.mode {
            Mode::Whole => out.push(PluginDevice {
                id: gpu.uuid.clone(),
                healthy: gpu.healthy,
                numa: gpu.numa,
            }),
            Mode::Shared => {
                for slot in 0..cfg.slots_per_gpu() {
                    out.push(PluginDevice {
                        id: format!("{}{SLOT_SEPARATOR}{slot}", gpu.uuid),
                        healthy: gpu.healthy,
                        numa: gpu.numa,
                    });
                }
            }
        }
    }
    out
}

/// A parsed device ID: the GPU it belongs to and, in shared mode, the slot.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct DeviceRef<'a> {
    pub uuid: &'a str,
    pub slot: u32,
}

/// Finds the GPU an ID refers to and checks that the ID has this mode's shape.
pub fn resolve<'g>(
    id: &str,
    gpus: &'g [GpuDevice],
    cfg: &SliceConfig,
) -> Result<(&'g GpuDevice, u32), SliceError> {
    let unknown = || SliceError::UnknownDevice {
        id: id.to_string(),
        expected: match cfg.mode {
            Mode::Whole => "whole GPUs named by UUID",
            Mode::Shared => "share slots named <gpu-uuid>::<slot>",
        },
    };
    let (uuid, slot) = match cfg.mode {
        Mode::Whole => (id, 0),
        Mode::Shared => {
            let (uuid, slot) = id.rsplit_once(SLOT_SEPARATOR).ok_or_else(unknown)?;
            let slot: u32 = slot.parse().map_err(|_| unknown())?;
            if slot >= cfg.slots_per_gpu() {
                return Err(unknown());
            }
            (uuid, slot)
        }
    };
    let gpu = gpus.iter().find(|g| g.uuid == uuid).ok_or_else(unknown)?;
    Ok((gpu, slot))
}

/// Chooses `size` devices among `available`, always keeping `must_include`.
///
/// Devices are grouped by GPU in shared mode and by NUMA node in whole mode.
/// Pack fills the groups already chosen, then the group that best fits what is
/// left (the fullest one that still fits), then the largest; Spread takes one
/// device at a time from the group with the most devices still free. Ties
/// break by group key, then by device order, so answers are deterministic.
pub fn preferred_allocation(
    available: &[String],
    must_include: &[String],
    size: i32,
    policy: Policy,
    gpus: &[GpuDevice],
    cfg: &SliceConfig,
) -> Result<Vec<String>, SliceError> {
    let bad_size = |reason: String| SliceError::BadSize { size, reason };
    let wanted = usize::try_from(size).map_err(|_| bad_size("it is negative".to_string()))?;
    if wanted < must_include.len() {
        return Err(bad_size(format!(
            "it is smaller than the {} must_include devices",
            must_include.len()
        )));
    }
    let mut seen = BTreeSet::new();
    // group key -> free devices in that group, ordered by slot then ID.
    let mut groups: BTreeMap<String, Vec<(u32, String)>> = BTreeMap::new();
    for id in available {
        if !seen.insert(id.as_str()) {
            return Err(SliceError::Duplicate(id.clone()));
        }
        let (gpu, slot) = resolve(id, gpus, cfg)?;
        groups
            .entry(group_key(gpu, cfg))
            .or_default()
            .push((slot, id.clone()));
    }
    if wanted > available.len() {
        return Err(bad_size(format!(
            "only {} devices are available",
            available.len()
        )));
    }
    for free in groups.values_mut() {
        free.sort();
    }
    let mut chosen: Vec<String> = Vec::with_capacity(wanted);
    let mut used_groups: BTreeSet<String> = BTreeSet::new();
    for id in must_include {
        if !seen.contains(id.as_str()) {
            return Err(SliceError::MustIncludeNotAvailable(id.clone()));
        }
        let (gpu, _) = resolve(id, gpus, cfg)?;
        let key = group_key(gpu, cfg);
        if let Some(free) = groups.get_mut(&key) {
            free.retain(|(_, other)| other != id);
        }
        used_groups.insert(key);
        if !chosen.contains(id) {
            chosen.push(id.clone());
        }
    }
    let take = |groups: &mut BTreeMap<String, Vec<(u32, String)>>,
                key: &str,
                n: usize,
                chosen: &mut Vec<String>| {
        if let Some(free) = groups.get_mut(key) {
            let n = n.min(free.len());
            chosen.extend(free.drain(..n).map(|(_, id)| id));
        }
    };
    match policy {
        Policy::Pack => {
            for key in &used_groups {
                let left = wanted - chosen.len();
                take(&mut groups, key, left, &mut chosen);
            }
            while chosen.len() < wanted {
                let left = wanted - chosen.len();
                let best_fit = groups
                    .iter()
                    .filter(|(_, free)| free.len() >= left)
                    .min_by_key(|(_, free)| free.len())
                    .map(|(k, _)| k.clone());
                let key = match best_fit {
                    Some(k) => k,
                    None => match groups
                        .iter()
                        .max_by(|a, b| a.1.len().cmp(&b.1.len()).then(b.0.cmp(a.0)))
                    {
                        Some((k, free)) if !free.is_empty() => k.clone(),
                        _ => break,
                    },
                };
                take(&mut groups, &key, left, &mut chosen);
            }
        }
        Policy::Spread => {
            while chosen.len() < wanted {
                // Prefer groups this container does not use yet, then the most free.
                let next = groups
                    .iter()
                    .filter(|(_, free)| !free.is_empty())
                    .max_by(|a, b| {
                        let a_new = !used_groups.contains(a.0);
                        let b_new = !used_groups.contains(b.0);
                        a_new
                            .cmp(&b_new)
                            .then(a.1.len().cmp(&b.1.len()))
                            .then(b.0.cmp(a.0))
                    })
                    .map(|(k, _)| k.clone());
                let Some(key) = next else { break };
                take(&mut groups, &key, 1, &mut chosen);
                used_groups.insert(key);
            }
        }
    }
    Ok(chosen)
}

fn group_key(gpu: &GpuDevice, cfg: &SliceConfig) -> String {
    match cfg.mode {
        Mode::Shared => gpu.uuid.clone(),
        // Zero-padded so that the BTreeMap orders NUMA nodes numerically.
        Mode::Whole => format!("{:020}", gpu.numa.unwrap_or(-1).saturating_add(1)),
    }
}

/// What one container receives on one physical GPU.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceGrant {
    pub uuid: String,
    /// Memory the container may use on this GPU, MiB.
    pub memory_mib: u64,
    /// Percent of this GPU's cores the container may use.
    pub cores: u32,
}

/// Checks a container's device IDs and works out its grants, one per GPU in
/// the order the GPUs first appear in the request.
pub fn grants(
    ids: &[String],
    gpus: &[GpuDevice],
    cfg: &SliceConfig,
) -> Result<Vec<DeviceGrant>, SliceError> {
    if ids.is_empty() {
        return Err(SliceError::Empty);
    }
    let mut seen = BTreeSet::new();
    let mut order: Vec<&GpuDevice> = Vec::new();
    let mut slots: BTreeMap<&str, u64> = BTreeMap::new();
    for id in ids {
        if !seen.insert(id.as_str()) {
            return Err(SliceError::Duplicate(id.clone()));
        }
        let (gpu, _) = resolve(id, gpus, cfg)?;
        if !gpu.healthy {
            return Err(SliceError::Unhealthy { id: id.clone() });
        }
        let count = slots.entry(gpu.uuid.as_str()).or_insert(0);
        if *count == 0 {
            order.push(gpu);
        }
        *count += 1;
    }
    let split = u64::from(cfg.slots_per_gpu());
    Ok(order
        .into_iter()
        .map(|gpu| {
            let k = slots.get(gpu.uuid.as_str()).copied().unwrap_or(1);
            let (memory_mib, cores) = match cfg.mode {
                Mode::Whole => (gpu.memory_mib, 100),
                Mode::Shared => (
                    cfg.scaled_memory_mib(gpu) / split * k,
                    u32::try_from((k * 100 / split).min(100)).unwrap_or(100),
                ),
            };
            DeviceGrant {
                uuid: gpu.uuid.clone(),
                memory_mib,
                cores,
            }
        })
        .collect())
}

/// The container environment for a set of grants: visible devices always;
/// in shared mode the per-device memory limits and the core limit HAMi-core reads.
/// HAMi-core takes one core limit for the container, so the lowest grant applies.
pub fn container_env(grants: &[DeviceGrant], cfg: &SliceConfig) -> BTreeMap<String, String> {
    let mut env = BTreeMap::new();
    let visible: Vec<&str> = grants.iter().map(|g| g.uuid.as_str()).collect();
    env.insert("NVIDIA_VISIBLE_DEVICES".to_string(), visible.join(","));
    if cfg.mode == Mode::Shared {
        for (i, grant) in grants.iter().enumerate() {
            env.insert(
                format!("CUDA_DEVICE_MEMORY_LIMIT_{i}"),
                format!("{}m", grant.memory_mib),
            );
        }
        if let Some(cores) = grants.iter().map(|g| g.cores).min() {
            env.insert("CUDA_DEVICE_SM_LIMIT".to_string(), cores.to_string());
        }
    }
    env
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn gpu(uuid: &str, mem: u64, numa: i64) -> GpuDevice {
        GpuDevice {
            uuid: uuid.to_string(),
            model: "NVIDIA A100".to_string(),
            memory_mib: mem,
            numa: Some(numa),
            healthy: true,
            pci_bus_id: None,
            compute_capability: None,
        }
    }

    fn shared(split: u32) -> SliceConfig {
        SliceConfig {
            mode: Mode::Shared,
            split_count: split,
            memory_scaling: 1.0,
        }
    }

    fn ids(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn shared_mode_offers_split_count_slots_per_gpu() {
        let gpus = [gpu("GPU-a", 1000, 0), gpu("GPU-b", 1000, 1)];
        let devs = plugin_devices(&gpus, &shared(3));
        let got: Vec<&str> = devs.iter().map(|d| d.id.as_str()).collect();
        assert_eq!(
            got,
            [
                "GPU-a::0", "GPU-a::1", "GPU-a::2", "GPU-b::0", "GPU-b::1", "GPU-b::2"
            ]
        );
        let whole = SliceConfig {
            mode: Mode::Whole,
            ..shared(3)
        };
        let devs = plugin_devices(&gpus, &whole);
        assert_eq!(devs.len(), 2);
        assert_eq!(devs[1].id, "GPU-b");
    }

    #[test]
    fn resolve_rejects_ids_of_the_wrong_shape() {
        let gpus = [gpu("GPU-a", 1000, 0)];
        let cfg = shared(4);
        assert_eq!(resolve("GPU-a::3", &gpus, &cfg).unwrap().1, 3);
        for bad in ["GPU-a", "GPU-a::4", "GPU-a::x", "GPU-z::0", ""] {
            let err = resolve(bad, &gpus, &cfg).unwrap_err();
            assert!(matches!(err, SliceError::UnknownDevice { .. }), "{bad}");
        }
        let whole = SliceConfig {
            mode: Mode::Whole,
            ..cfg
        };
        assert!(resolve("GPU-a", &gpus, &whole).is_ok());
        assert!(resolve("GPU-a::0", &gpus, &whole).is_err());
    }

    #[test]
    fn grants_scale_memory_and_cores_by_slots() {
        let gpus = [gpu("GPU-a", 10_000, 0), gpu("GPU-b", 16_000, 0)];
        let cfg = SliceConfig {
            memory_scaling: 1.5,
            ..shared(10)
        };
        let g = grants(&ids(&["GPU-b::0", "GPU-a::3", "GPU-a::4"]), &gpus, &cfg).unwrap();
        assert_eq!(
            g,
            vec![
                DeviceGrant {
                    uuid: "GPU-b".into(),
                    memory_mib: 2400,
                    cores: 10
                },
                DeviceGrant {
                    uuid: "GPU-a".into(),
                    memory_mib: 3000,
                    cores: 20
                },
            ]
        );
        let env = container_env(&g, &cfg);
        assert_eq!(env["NVIDIA_VISIBLE_DEVICES"], "GPU-b,GPU-a");
        assert_eq!(env["CUDA_DEVICE_MEMORY_LIMIT_0"], "2400m");
        assert_eq!(env["CUDA_DEVICE_MEMORY_LIMIT_1"], "3000m");
        assert_eq!(env["CUDA_DEVICE_SM_LIMIT"], "10");
    }

    #[test]
    fn whole_mode_grants_full_devices_without_limits() {
        let gpus = [gpu("GPU-a", 10_000, 0), gpu("GPU-b", 16_000, 0)];
        let cfg = SliceConfig {
            mode: Mode::Whole,
            ..shared(10)
        };
        let g = grants(&ids(&["GPU-a", "GPU-b"]), &gpus, &cfg).unwrap();
        let env = container_env(&g, &cfg);
        assert_eq!(env.len(), 1);
        assert_eq!(env["NVIDIA_VISIBLE_DEVICES"], "GPU-a,GPU-b");
        assert_eq!(g[1].memory_mib, 16_000);
    }

    #[test]
    fn grants_reject_unknown_duplicate_unhealthy_and_empty() {
        let mut sick = gpu("GPU-s", 100, 0);
        sick.healthy = false;
        let gpus = [gpu("GPU-a", 100, 0), sick];
        let cfg = shared(2);
        assert!(matches!(
            grants(&ids(&["GPU-q::0"]), &gpus, &cfg),
            Err(SliceError::UnknownDevice { .. })
        ));
        assert!(matches!(
            grants(&ids(&["GPU-a::0", "GPU-a::0"]), &gpus, &cfg),
            Err(SliceError::Duplicate(_))
        ));
        assert!(matches!(
            grants(&ids(&["GPU-s::1"]), &gpus, &cfg),
            Err(SliceError::Unhealthy { .. })
        ));
        assert_eq!(grants(&[], &gpus, &cfg), Err(SliceError::Empty));
    }

    #[test]
    fn pack_uses_the_fewest_gpus_and_prefers_the_fullest_that_fits() {
        let gpus = [
            gpu("GPU-a", 100, 0),
            gpu("GPU-b", 100, 0),
            gpu("GPU-c", 100, 0),
        ];
        let cfg = shared(4);
        // a has 4 free, b has 2 free, c has 3 free.
        let avail = ids(&[
            "GPU-a::0", "GPU-a::1", "GPU-a::2", "GPU-a::3", "GPU-b::2", "GPU-b::3", "GPU-c::1",
            "GPU-c::2", "GPU-c::3",
        ]);
        let got = preferred_allocation(&avail, &[], 2, Policy::Pack, &gpus, &cfg).unwrap();
        assert_eq!(got, ids(&["GPU-b::2", "GPU-b::3"]));
        let got = preferred_allocation(&avail, &[], 3, Policy::Pack, &gpus, &cfg).unwrap();
        assert_eq!(got, ids(&["GPU-c::1", "GPU-c::2", "GPU-c::3"]));
        // Nothing fits 6 at once: largest first, then the best fit for the rest.
        let got = preferred_allocation(&avail, &[], 6, Policy::Pack, &gpus, &cfg).unwrap();
        assert_eq!(
            got,
            ids(&[
                "GPU-a::0", "GPU-a::1", "GPU-a::2", "GPU-a::3", "GPU-b::2", "GPU-b::3"
            ])
        );
        // must_include pulls its GPU in first.
        let got = preferred_allocation(&avail, &ids(&["GPU-c::2"]), 3, Policy::Pack, &gpus, &cfg)
            .unwrap();
        assert_eq!(got, ids(&["GPU-c::2", "GPU-c::1", "GPU-c::3"]));
    }

    #[test]
    fn spread_takes_one_slot_per_gpu_least_busy_first() {
        let gpus = [
            gpu("GPU-a", 100, 0),
            gpu("GPU-b", 100, 0),
            gpu("GPU-c", 100, 0),
        ];
        let cfg = shared(4);
        let avail = ids(&[
            "GPU-a::0", "GPU-a::1", "GPU-b::0", "GPU-b::1", "GPU-b::2", "GPU-c::3",
        ]);
        let got = preferred_allocation(&avail, &[], 3, Policy::Spread, &gpus, &cfg).unwrap();
        assert_eq!(got, ids(&["GPU-b::0", "GPU-a::0", "GPU-c::3"]));
        let got = preferred_allocation(&avail, &ids(&["GPU-b::2"]), 2, Policy::Spread, &gpus, &cfg)
            .unwrap();
        assert_eq!(got, ids(&["GPU-b::2", "GPU-a::0"]));
    }

    #[test]
    fn whole_mode_packs_by_numa_node() {
        let gpus = [
            gpu("GPU-a", 100, 0),
            gpu("GPU-b", 100, 1),
            gpu("GPU-c", 100, 1),
            gpu("GPU-d", 100, 0),
        ];
        let cfg = SliceConfig {
            mode: Mode::Whole,
            ..shared(1)
        };
        let avail = ids(&["GPU-a", "GPU-b", "GPU-c"]);
        let got = preferred_allocation(&avail, &[], 2, Policy::Pack, &gpus, &cfg).unwrap();
        assert_eq!(got, ids(&["GPU-b", "GPU-c"]));
        let got = preferred_allocation(&avail, &[], 2, Policy::Spread, &gpus, &cfg).unwrap();
        assert_eq!(got, ids(&["GPU-b", "GPU-a"]));
    }

    #[test]
    fn preferred_allocation_rejects_bad_requests() {
        let gpus = [gpu("GPU-a", 100, 0)];
        let cfg = shared(2);
        let avail = ids(&["GPU-a::0", "GPU-a::1"]);
        let err = preferred_allocation(&avail, &[], 3, Policy::Pack, &gpus, &cfg).unwrap_err();
        assert!(err.to_string().contains("only 2 devices"), "{err}");
        assert!(preferred_allocation(&avail, &[], -1, Policy::Pack, &gpus, &cfg).is_err());
        assert!(matches!(
            preferred_allocation(&avail, &ids(&["GPU-a::9"]), 1, Policy::Pack, &gpus, &cfg),
            Err(SliceError::MustIncludeNotAvailable(_))
        ));
        assert!(matches!(
            preferred_allocation(&ids(&["nope"]), &[], 1, Policy::Pack, &gpus, &cfg),
            Err(SliceError::UnknownDevice { .. })
        ));
    }
}
