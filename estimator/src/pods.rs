//! The snapshot's pod table: every known pod in a compact slot, found by
//! namespace and name.
//!
//! Pods outnumber nodes 20 to 100 times, so the bytes per pod are most of
//! a snapshot's memory. A slot keeps only what the estimator reads, in
//! fixed fields sized for the common case (64 bytes plus the name and the
//! GPU list):
//!
//! - **Key.** The namespace is an id into a table of interned namespaces
//!   (reference counted, freed with their last pod); the name is one boxed
//!   string in the slot. The lookup table is a `HashTable<u32>` of slot ids
//!   that hashes and compares the key stored in the slot, so a name is
//!   stored once and a table entry costs 4 bytes.
//! - **Requests** ([`PodUse`]): cpu millicores as `u32` and memory bytes.
//!   A pod asking for anything else (ephemeral storage, an extended
//!   resource, over `u32::MAX` millicores) keeps its full requests in a
//!   boxed wide part instead; answers never depend on which form is used.
//! - **GPU use**: per device the UUID's 64-bit hash (as the node's device
//!   list), MiB as `u32` and cores: 16 bytes. A use of more than
//!   `u32::MAX` MiB moves the pod's GPU list to the wide part too.
//! - **Slots** live in chunks of [`CHUNK`] that are never moved or
//!   regrown, so the table over-allocates at most one chunk where a `Vec`
//!   would over-allocate up to its whole length when it doubles. Freed
//!   slots are reused first.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};

use hashbrown::HashTable;

use crate::model::{GpuUse, Resources};

/// Slots per chunk (64 KiB of slots).
const CHUNK: usize = 1024;

/// FNV-1a, used to keep device UUIDs as 8 bytes instead of strings.
pub(crate) fn uuid_hash(s: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// One pod's use of one device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct PodGpu {
    uuid: u64,
    mem: u32,
    cores: u32,
}

/// Requests and GPU uses of a pod that do not fit the compact fields.
#[derive(Debug, Clone, PartialEq, Eq)]
struct WideUse {
    /// Full requests, `pods` = 1.
    requests: Resources,
    /// (UUID hash, MiB, cores) per device.
    gpus: Box<[(u64, u64, u32)]>,
}

/// What a pod holds on its node while bound: requests (it always counts
/// one pod) and device use. Equal inputs give equal values, so comparing
/// two `PodUse` tells whether an update changed anything the estimator
/// reads.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct PodUse {
    memory: u64,
    cpu_milli: u32,
    /// Whole GPUs requested, held on nodes whose GPUs are counted from
    /// allocatable (see [`crate::model::PodInfo::whole_gpus`]).
    pub whole_gpus: u32,
    gpus: Box<[PodGpu]>,
    /// When set, holds all requests and GPU uses (the fields above are zero
    /// and empty, except `whole_gpus`).
    wide: Option<Box<WideUse>>,
}

impl PodUse {
    /// The compact form of a pod's requests (`pods` is ignored) and GPU uses.
    pub fn new(mut requests: Resources, whole_gpus: u32, gpus: &[GpuUse]) -> Self {
        let cpu = u32::try_from(requests.cpu_milli).ok();
        let compact_requests = requests.ephemeral_storage == 0 && requests.extended.is_empty();
        let compact_gpus: Option<Box<[PodGpu]>> = gpus
            .iter()
            .map(|g| {
                Some(PodGpu {
                    uuid: uuid_hash(&g.uuid),
                    mem: u32::try_from(g.memory_mib).ok()?,
                    cores: g.cores,
                })
            })
            .collect();
        if let (Some(cpu_milli), true, Some(gpus)) = (cpu, compact_requests, compact_gpus) {
            return Self {
                memory: requests.memory,
                cpu_milli,
                whole_gpus,
                gpus,
                wide: None,
            };
        }
        requests.pods = 1;
        Self {
            whole_gpus,
            wide: Some(Box::new(WideUse {
                requests,
                gpus: gpus
                    .iter()
                    .map(|g| (uuid_hash(&g.uuid), g.memory_mib, g.cores))
                    .collect(),
            })),
            ..Self::default()
        }
    }

    /// Adds this pod's requests (and one pod) to a node's requested sum.
    pub fn add_to(&self, r: &mut Resources) {
        match &self.wide {
            Some(w) => r.add(&w.requests),
            None => {
                r.cpu_milli = r.cpu_milli.saturating_add(u64::from(self.cpu_milli));
                r.memory = r.memory.saturating_add(self.memory);
                r.pods = r.pods.saturating_add(1);
            }
        }
    }

    /// Subtracts what [`Self::add_to`] added.
    pub fn sub_from(&self, r: &mut Resources) {
        match &self.wide {
            Some(w) => r.sub(&w.requests),
            None => {
                r.cpu_milli = r.cpu_milli.saturating_sub(u64::from(self.cpu_milli));
                r.memory = r.memory.saturating_sub(self.memory);
                r.pods = r.pods.saturating_sub(1);
            }
        }
    }

    /// Whether the pod's devices are known by UUID.
    pub fn has_gpu_uses(&self) -> bool {
        !self.gpus.is_empty() || self.wide.as_ref().is_some_and(|w| !w.gpus.is_empty())
    }

    /// Device uses as (UUID hash, MiB, cores).
    pub fn gpu_uses(&self) -> impl Iterator<Item = (u64, u64, u32)> + '_ {
        let compact = self
            .gpus
            .iter()
            .map(|g| (g.uuid, u64::from(g.mem), g.cores));
        let wide = self.wide.iter().flat_map(|w| w.gpus.iter().copied());
        compact.chain(wide)
    }
}

/// One pod.
#[derive(Debug, Default)]
pub(crate) struct PodSlot {
    name: Box<str>,
    namespace: u32,
    /// Node slot the pod holds resources on, or `NO_NODE`.
    pub node: u32,
    /// What it holds there.
    pub used: PodUse,
}

#[derive(Debug)]
struct Namespace {
    name: Box<str>,
    pods: u32,
}

/// Pods by id (slot) and by namespace/name.
#[derive(Debug, Default)]
pub(crate) struct PodTable {
    chunks: Vec<Box<[PodSlot]>>,
    /// Slots handed out so far (ids below it are in use or free).
    high: u32,
    free: Vec<u32>,
    keys: HashTable<u32>,
    hasher: RandomState,
    namespaces: Vec<Option<Namespace>>,
    namespace_ids: HashMap<Box<str>, u32>,
    namespace_free: Vec<u32>,
}

fn split(id: u32) -> (usize, usize) {
    (id as usize / CHUNK, id as usize % CHUNK)
}

impl PodTable {
    /// Pods known.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// The slot of a pod id. Ids come from [`Self::find`] or [`Self::insert`].
    pub fn get(&self, id: u32) -> &PodSlot {
        let (c, i) = split(id);
        &self.chunks[c][i]
    }

    /// The slot of a pod id, to change its node or use.
    pub fn get_mut(&mut self, id: u32) -> &mut PodSlot {
        let (c, i) = split(id);
        &mut self.chunks[c][i]
    }

    fn key_hash(&self, namespace: u32, name: &str) -> u64 {
        self.hasher.hash_one((namespace, name))
    }

    /// The id of a known pod.
    pub fn find(&self, namespace: &str, name: &str) -> Option<u32> {
        let ns = *self.namespace_ids.get(namespace)?;
        let hash = self.key_hash(ns, name);
        self.keys
            .find(hash, |id| {
                let p = self.get(*id);
                p.namespace == ns && *p.name == *name
            })
            .copied()
    }

    /// Adds a pod that [`Self::find`] does not know, holding nothing and on
    /// no node; returns its id.
    pub fn insert(&mut self, namespace: &str, name: &str, no_node: u32) -> u32 {
        let ns = self.intern_namespace(namespace);
        let id = match self.free.pop() {
            Some(id) => id,
            None => {
                let id = self.high;
                if split(id).0 == self.chunks.len() {
                    self.chunks
                        .push((0..CHUNK).map(|_| PodSlot::default()).collect());
                }
                self.high += 1;
                id
            }
        };
        *self.get_mut(id) = PodSlot {
            name: name.into(),
            namespace: ns,
            node: no_node,
            used: PodUse::default(),
        };
        let hash = self.key_hash(ns, name);
        let Self {
            keys,
            chunks,
            hasher,
            ..
        } = self;
        keys.insert_unique(hash, id, |id| {
            let (c, i) = split(*id);
            let p = &chunks[c][i];
            hasher.hash_one((p.namespace, &*p.name))
        });
        id
    }

    /// Forgets a pod by id (the caller has detached it from its node).
    pub fn remove(&mut self, id: u32) {
        let p = std::mem::take(self.get_mut(id));
        let hash = self.key_hash(p.namespace, &p.name);
        if let Ok(entry) = self.keys.find_entry(hash, |x| *x == id) {
            entry.remove();
        }
        self.release_namespace(p.namespace);
        self.free.push(id);
    }

    fn intern_namespace(&mut self, namespace: &str) -> u32 {
        if let Some(id) = self.namespace_ids.get(namespace) {
            if let Some(Some(ns)) = self.namespaces.get_mut(*id as usize) {
                ns.pods += 1;
            }
            return *id;
        }
        let ns = Some(Namespace {
            name: namespace.into(),
            pods: 1,
        });
        let id = match self.namespace_free.pop() {
            Some(id) => {
                self.namespaces[id as usize] = ns;
                id
            }
            None => {
                self.namespaces.push(ns);
                (self.namespaces.len() - 1) as u32
            }
        };
        self.namespace_ids.insert(namespace.into(), id);
        id
    }

    fn release_namespace(&mut self, id: u32) {
        let Some(slot) = self.namespaces.get_mut(id as usize) else {
            return;
        };
        if let Some(ns) = slot {
            ns.pods = ns.pods.saturating_sub(1);
            if ns.pods == 0
                && let Some(ns) = slot.take()
            {
                self.namespace_ids.remove(&ns.name);
                self.namespace_free.push(id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const NO_NODE: u32 = u32::MAX;

    fn gpu(uuid: &str, mib: u64, cores: u32) -> GpuUse {
        GpuUse {
            uuid: uuid.into(),
            memory_mib: mib,
            cores,
        }
    }

    #[test]
    fn keys_find_insert_remove_and_reuse_slots() {
        let mut t = PodTable::default();
        let mut ids = Vec::new();
        for i in 0..3000 {
            let ns = if i % 3 == 0 { "a" } else { "b" };
            assert_eq!(t.find(ns, &format!("p{i}")), None);
            ids.push(t.insert(ns, &format!("p{i}"), NO_NODE));
        }
        assert_eq!(t.len(), 3000);
        assert_eq!(t.chunks.len(), 3);
        for (i, id) in ids.iter().enumerate() {
            let ns = if i % 3 == 0 { "a" } else { "b" };
            assert_eq!(t.find(ns, &format!("p{i}")), Some(*id));
            // Same name, other namespace: a different pod.
            let other = if ns == "a" { "b" } else { "a" };
            assert_ne!(t.find(other, &format!("p{i}")), Some(*id));
        }
        // Remove every pod of namespace "a": the namespace is forgotten.
        for (i, id) in ids.iter().enumerate().filter(|(i, _)| i % 3 == 0) {
            t.remove(*id);
            assert_eq!(t.find("a", &format!("p{i}")), None);
        }
        assert_eq!(t.len(), 2000);
        assert!(!t.namespace_ids.contains_key("a"));
        assert_eq!(t.find("b", "p1"), Some(ids[1]));
        // Freed slots are reused before new ones are handed out.
        let high = t.high;
        let again = t.insert("c", "new", NO_NODE);
        assert_eq!(t.high, high);
        assert_eq!(t.find("c", "new"), Some(again));
        assert_eq!(t.get(again).node, NO_NODE);
        assert_eq!(t.get(again).used, PodUse::default());
    }

    #[test]
    fn compact_and_wide_forms_account_the_same() {
        let mut small = Resources {
            cpu_milli: 1500,
            memory: 3 << 30,
            ..Resources::default()
        };
        let compact = PodUse::new(small.clone(), 0, &[gpu("g0", 4096, 30)]);
        assert!(compact.wide.is_none());
        // Each case that does not fit the compact fields.
        let mut ext = small.clone();
        ext.extended.insert("example.com/fpga".into(), 2);
        let mut eph = small.clone();
        eph.ephemeral_storage = 1 << 30;
        let mut big_cpu = small.clone();
        big_cpu.cpu_milli = u64::from(u32::MAX) + 1;
        let big_mem = [gpu("g0", u64::from(u32::MAX) + 1, 30), gpu("g1", 1, 0)];
        for (req, gpus) in [
            (ext, &[gpu("g0", 4096, 30)][..]),
            (eph, &[][..]),
            (big_cpu, &[][..]),
            (small.clone(), &big_mem[..]),
        ] {
            let u = PodUse::new(req.clone(), 2, gpus);
            assert!(u.wide.is_some());
            assert_eq!(u.whole_gpus, 2);
            let mut sum = Resources::default();
            u.add_to(&mut sum);
            let mut want = req.clone();
            want.pods = 1;
            assert_eq!(sum, want);
            u.sub_from(&mut sum);
            assert_eq!(sum, Resources::default());
            let uses: Vec<_> = u.gpu_uses().collect();
            let want: Vec<_> = gpus
                .iter()
                .map(|g| (uuid_hash(&g.uuid), g.memory_mib, g.cores))
                .collect();
            assert_eq!(uses, want);
            assert_eq!(u.has_gpu_uses(), !gpus.is_empty());
        }
        // The compact form: the same sums and uses.
        let mut sum = Resources::default();
        compact.add_to(&mut sum);
        small.pods = 1;
        assert_eq!(sum, small);
        assert_eq!(
            compact.gpu_uses().collect::<Vec<_>>(),
            vec![(uuid_hash("g0"), 4096, 30)]
        );
        assert!(compact.has_gpu_uses());
        assert!(!PodUse::new(Resources::default(), 1, &[]).has_gpu_uses());
    }

    #[test]
    fn slot_is_small() {
        assert_eq!(std::mem::size_of::<PodSlot>(), 64);
    }
}
