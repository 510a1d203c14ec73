//! The cluster snapshot: nodes, pods and GPUs of one member cluster, kept
//! up to date by apply/delete events per node and per pod (never rebuilt
//! per query), with the indexed and the scanning max-replica queries.
//!
//! The snapshot is a plain synchronous struct. Its owner (the agent's
//! reflector task, or the estimator server) applies events; a query takes
//! `&mut self` because it updates the per-shape cache (see [`crate::index`]).
//! Pods are kept in compact slots (see [`crate::pods`]): that is most of the
//! snapshot's memory.

use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeMap, HashMap};
use std::hash::{Hash, Hasher};

use crate::fit::{DeviceState, node_max_replicas};
use crate::index::{GroupKey, Index, NO_CLASS};
use crate::model::{NodeInfo, PodInfo, Resources, Taint, WorkloadRef};
use crate::pods::{PodTable, PodUse, uuid_hash};
use crate::shape::ReplicaShape;

const NO_NODE: u32 = u32::MAX;

#[derive(Debug, Default)]
struct NodeSlot {
    name: Box<str>,
    present: bool,
    synthetic_gpus: bool,
    group: u32,
    class: u64,
    class_pos: u32,
    alloc: Resources,
    requested: Resources,
    device_ids: Box<[u64]>,
    devices: Box<[DeviceState]>,
    pods: Vec<u32>,
}

/// Counts that describe the snapshot and its index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SnapshotStats {
    /// Nodes present.
    pub nodes: usize,
    /// Pods known (bound or not).
    pub pods: usize,
    /// Node groups (same labels, taints, schedulability).
    pub groups: usize,
    /// Capacity classes.
    pub classes: usize,
    /// Shapes in the answer cache.
    pub cached_shapes: usize,
}

/// A read-only view of one node, for scans written outside the crate
/// (benchmark baselines, brute-force checks).
#[derive(Debug, Clone, Copy)]
pub struct NodeView<'a> {
    /// Name.
    pub name: &'a str,
    /// Labels.
    pub labels: &'a BTreeMap<String, String>,
    /// Taints.
    pub taints: &'a [Taint],
    /// Not cordoned and Ready.
    pub schedulable: bool,
    /// Allocatable.
    pub allocatable: &'a Resources,
    /// Sum of requests of pods holding resources (`pods` = their count).
    pub requested: &'a Resources,
    /// Device states (model ids resolve through [`Snapshot::model_name`]).
    pub devices: &'a [DeviceState],
}

/// One member cluster's snapshot.
#[derive(Debug, Default)]
pub struct Snapshot {
    nodes: Vec<NodeSlot>,
    node_free: Vec<u32>,
    node_names: HashMap<Box<str>, u32>,
    present_nodes: usize,
    pods: PodTable,
    models: Vec<Box<str>>,
    model_ids: HashMap<Box<str>, u32>,
    unschedulable: HashMap<u32, (WorkloadRef, i64)>,
    index: Index,
}

impl Snapshot {
    /// An empty snapshot.
    pub fn new() -> Self {
        Self::default()
    }

    /// Builds a snapshot from nodes and pods.
    pub fn from_objects(nodes: Vec<NodeInfo>, pods: Vec<PodInfo>) -> Self {
        let mut s = Self::new();
        for n in nodes {
            s.apply_node(n);
        }
        for p in pods {
            s.apply_pod(p);
        }
        s
    }

    /// Counts.
    pub fn stats(&self) -> SnapshotStats {
        SnapshotStats {
            nodes: self.present_nodes,
            pods: self.pods.len(),
            groups: self.index.live_groups(),
            classes: self.index.live_classes(),
            cached_shapes: self.index.cache.len(),
        }
    }

    /// The model string of an interned model id.
    pub fn model_name(&self, id: u32) -> &str {
        self.models.get(id as usize).map_or("", |m| m)
    }

    fn intern_model(&mut self, m: &str) -> u32 {
        if let Some(id) = self.model_ids.get(m) {
            return *id;
        }
        let id = self.models.len() as u32;
        self.models.push(m.into());
        self.model_ids.insert(m.into(), id);
        id
    }

    fn node_slot(&mut self, name: &str) -> u32 {
        if let Some(s) = self.node_names.get(name) {
            return *s;
        }
        let slot = NodeSlot {
            name: name.into(),
            ..NodeSlot::default()
        };
        let id = match self.node_free.pop() {
            Some(id) => {
                self.nodes[id as usize] = slot;
                id
            }
            None => {
                self.nodes.push(slot);
                (self.nodes.len() - 1) as u32
            }
        };
        self.node_names.insert(name.into(), id);
        id
    }

    fn release_node_slot_if_unused(&mut self, id: u32) {
        let n = &self.nodes[id as usize];
        if !n.present && n.pods.is_empty() {
            self.node_names.remove(&n.name);
            self.nodes[id as usize] = NodeSlot::default();
            self.node_free.push(id);
        }
    }

    /// Adds or replaces a node.
    pub fn apply_node(&mut self, info: NodeInfo) {
        let id = self.node_slot(&info.name);
        let old_class = self.unclassify(id);
        let schedulable = info.ready && !info.unschedulable;
        let synthetic = info.gpus.iter().all(|g| g.model.is_empty()) && !info.gpus.is_empty();
        let mut ids = Vec::with_capacity(info.gpus.len());
        let mut devices = Vec::with_capacity(info.gpus.len());
        for g in &info.gpus {
            ids.push(uuid_hash(&g.id));
            devices.push(DeviceState {
                model: self.intern_model(&g.model),
                healthy: g.healthy,
                slots: g.slots,
                used: 0,
                total_mem: g.memory_mib,
                used_mem: 0,
                total_cores: g.cores,
                used_cores: 0,
            });
        }
        let key = GroupKey {
            labels: info.labels,
            taints: info.taints,
            schedulable,
        };
        let n = &mut self.nodes[id as usize];
        let old_group = n.present.then_some(n.group);
        if !n.present {
            self.present_nodes += 1;
        }
        n.present = true;
        n.synthetic_gpus = synthetic;
        n.alloc = info.allocatable;
        n.device_ids = ids.into();
        n.devices = devices.into();
        let group = self.index.join_group(key);
        if let Some(g) = old_group {
            self.index.leave_group(g);
        }
        self.nodes[id as usize].group = group;
        self.recompute_devices(id);
        let new_class = self.classify(id);
        self.index.log_move(old_class, new_class);
    }

    /// Removes a node. Pods bound to it stay known (and count again if the node returns).
    pub fn delete_node(&mut self, name: &str) {
        let Some(id) = self.node_names.get(name).copied() else {
            return;
        };
        if !self.nodes[id as usize].present {
            return;
        }
        let old_class = self.unclassify(id);
        self.index.log_move(old_class, NO_CLASS);
        let n = &mut self.nodes[id as usize];
        n.present = false;
        n.devices = Box::default();
        n.device_ids = Box::default();
        let group = n.group;
        self.present_nodes -= 1;
        self.index.leave_group(group);
        self.release_node_slot_if_unused(id);
    }

    /// Adds or replaces a pod.
    pub fn apply_pod(&mut self, pod: PodInfo) {
        let holds = pod.holds_resources();
        let used = PodUse::new(pod.requests, pod.whole_gpus, &pod.gpus);
        let node_name = if holds { pod.node.as_deref() } else { None };
        let id = match self.pods.find(&pod.namespace, &pod.name) {
            Some(id) => {
                let p = self.pods.get(id);
                let same_node = match node_name {
                    None => p.node == NO_NODE,
                    Some(n) => p.node != NO_NODE && &*self.nodes[p.node as usize].name == n,
                };
                if same_node && p.used == used {
                    // A status-only update: nothing the estimator reads changed.
                    self.track_unschedulable(id, &pod.owner, pod.unschedulable_since_ms, holds);
                    return;
                }
                self.detach_pod(id);
                id
            }
            None => self.pods.insert(&pod.namespace, &pod.name, NO_NODE),
        };
        let node = match node_name {
            Some(n) => self.node_slot(n),
            None => NO_NODE,
        };
        let p = self.pods.get_mut(id);
        p.node = node;
        p.used = used;
        self.attach_pod(id);
        self.track_unschedulable(id, &pod.owner, pod.unschedulable_since_ms, holds);
    }

    /// Removes a pod.
    pub fn delete_pod(&mut self, namespace: &str, name: &str) {
        let Some(id) = self.pods.find(namespace, name) else {
            return;
        };
        self.detach_pod(id);
        self.unschedulable.remove(&id);
        self.pods.remove(id);
    }

    fn track_unschedulable(
        &mut self,
        id: u32,
        owner: &Option<WorkloadRef>,
        since: Option<i64>,
        holds: bool,
    ) {
        match (owner, since, holds) {
            (Some(o), Some(t), false) => {
                self.unschedulable.insert(id, (o.clone(), t));
            }
            _ => {
                self.unschedulable.remove(&id);
            }
        }
    }

    fn attach_pod(&mut self, id: u32) {
        let p = self.pods.get(id);
        let node = p.node;
        if node == NO_NODE {
            return;
        }
        let n = &mut self.nodes[node as usize];
        p.used.add_to(&mut n.requested);
        n.pods.push(id);
        take_devices(n, &p.used, 1);
        self.reclassify(node);
    }

    fn detach_pod(&mut self, id: u32) {
        let p = self.pods.get(id);
        let node = p.node;
        if node == NO_NODE {
            return;
        }
        let n = &mut self.nodes[node as usize];
        p.used.sub_from(&mut n.requested);
        if let Some(pos) = n.pods.iter().position(|x| *x == id) {
            n.pods.swap_remove(pos);
        }
        take_devices(n, &p.used, -1);
        self.pods.get_mut(id).node = NO_NODE;
        self.reclassify(node);
        self.release_node_slot_if_unused(node);
    }

    fn recompute_devices(&mut self, node: u32) {
        let n = &mut self.nodes[node as usize];
        for d in n.devices.iter_mut() {
            d.used = 0;
            d.used_mem = 0;
            d.used_cores = 0;
        }
        for p in &n.pods {
            take_devices_of(
                &n.device_ids,
                &mut n.devices,
                n.synthetic_gpus,
                &self.pods.get(*p).used,
                1,
            );
        }
    }

    fn state_hash(&self, node: u32) -> u64 {
        let n = &self.nodes[node as usize];
        let mut h = DefaultHasher::new();
        n.group.hash(&mut h);
        free_key(n).hash(&mut h);
        for (name, cap) in &n.alloc.extended {
            name.hash(&mut h);
            cap.saturating_sub(n.requested.extended.get(name).copied().unwrap_or(0))
                .hash(&mut h);
        }
        with_sorted(&n.devices, |d| d.hash(&mut h));
        h.finish()
    }

    /// Takes a node out of its class; returns that class (NO_CLASS if none).
    /// The caller logs the move once the node's new class is known.
    fn unclassify(&mut self, node: u32) -> u64 {
        let n = &self.nodes[node as usize];
        if !n.present || n.class == NO_CLASS {
            return NO_CLASS;
        }
        let (class, pos) = (n.class, n.class_pos);
        if let Some(moved) = self.index.leave_class(class, pos) {
            self.nodes[moved as usize].class_pos = pos;
        }
        self.nodes[node as usize].class = NO_CLASS;
        class
    }

    /// Puts a node into the class of its state; returns that class.
    fn classify(&mut self, node: u32) -> u64 {
        let hash = self.state_hash(node);
        let group = self.nodes[node as usize].group;
        let nodes = &self.nodes;
        let (class, pos) = self.index.enter_class(node, group, hash, |rep| {
            same_state(&nodes[rep as usize], &nodes[node as usize])
        });
        let n = &mut self.nodes[node as usize];
        n.class = class;
        n.class_pos = pos;
        class
    }

    fn reclassify(&mut self, node: u32) {
        if !self.nodes[node as usize].present {
            return;
        }
        let old = self.unclassify(node);
        let new = self.classify(node);
        self.index.log_move(old, new);
    }

    fn view<'a>(&'a self, n: &'a NodeSlot) -> Option<NodeView<'a>> {
        if !n.present {
            return None;
        }
        let g = self.index.group(n.group)?;
        Some(NodeView {
            name: &n.name,
            labels: &g.key.labels,
            taints: &g.key.taints,
            schedulable: g.key.schedulable,
            allocatable: &n.alloc,
            requested: &n.requested,
            devices: &n.devices,
        })
    }

    /// Every present node, in slot order.
    pub fn node_views(&self) -> impl Iterator<Item = NodeView<'_>> {
        self.nodes.iter().filter_map(|n| self.view(n))
    }

    /// The model-list verdict for every interned model.
    pub fn models_allowed(&self, shape: &ReplicaShape) -> Vec<bool> {
        self.models
            .iter()
            .map(|m| shape.gpu.as_ref().is_none_or(|g| g.model_allowed(m)))
            .collect()
    }

    /// Max additional replicas by scanning every node (no index, no cache).
    pub fn scan_max_available_replicas(&self, shape: &ReplicaShape) -> u64 {
        let allowed = self.models_allowed(shape);
        self.node_views()
            .filter(|v| v.schedulable && shape.claim.matches(v.name, v.labels, v.taints))
            .map(|v| {
                node_max_replicas(v.allocatable, v.requested, v.devices, shape, |m| {
                    allowed.get(m as usize).copied().unwrap_or(false)
                })
            })
            .fold(0u64, u64::saturating_add)
    }

    /// Max additional replicas through the index (see [`crate::index`]).
    pub fn max_available_replicas(&mut self, shape: &ReplicaShape) -> u64 {
        if shape.claim.uses_fields() {
            return self.scan_max_available_replicas(shape);
        }
        let mut answers = ClassAnswers::new(self, shape);
        if self.index.touch(shape)
            && let Some((key, entry)) = self.index.cache.remove_entry(shape)
            && let Some(total) = self.replay(&mut answers, key, entry)
        {
            return total;
        }
        let mut memo = HashMap::with_capacity(self.index.live_classes());
        let mut total: u64 = 0;
        let mut ids: Vec<u64> = self.index.classes.keys().copied().collect();
        ids.sort_unstable();
        for id in ids {
            let a = answers.class(self, id);
            memo.insert(id, a);
            let members = self.index.classes.get(&id).map_or(0, |c| c.members.len());
            total = total.saturating_add(a.saturating_mul(members as u64));
        }
        self.index.new_cache_entry(shape.clone(), total, memo);
        self.index.trim_log();
        total
    }

    /// Brings a cached answer up to date from the log; None when it cannot
    /// (log trimmed, or a class answer missing), then the caller recomputes.
    fn replay(
        &mut self,
        answers: &mut ClassAnswers<'_>,
        key: ReplicaShape,
        mut entry: crate::index::CachedShape,
    ) -> Option<u64> {
        let deltas = self.index.deltas_since(entry.seq)?;
        let mut total = i128::from(entry.total);
        for (class, n) in deltas {
            let ans = match entry.memo.get(&class) {
                Some(a) => *a,
                None if n > 0 => {
                    let a = answers.class(self, class);
                    entry.memo.insert(class, a);
                    a
                }
                None => return None,
            };
            total += i128::from(n) * i128::from(ans);
        }
        entry.total = u64::try_from(total).ok()?;
        entry.seq = self.index.seq();
        let live = self.index.live_classes();
        if entry.memo.len() > 2 * live + 1024 {
            let classes = &self.index.classes;
            entry.memo.retain(|id, _| classes.contains_key(id));
        }
        let t = entry.total;
        self.index.cache.insert(key, entry);
        self.index.trim_log();
        Some(t)
    }

    /// Pods of `workload` that have been unschedulable for at least
    /// `threshold_ms` at `now_ms` (both in milliseconds).
    pub fn unschedulable_replicas(
        &self,
        workload: &WorkloadRef,
        threshold_ms: i64,
        now_ms: i64,
    ) -> u64 {
        self.unschedulable
            .values()
            .filter(|(w, since)| w == workload && now_ms.saturating_sub(*since) >= threshold_ms)
            .count() as u64
    }
}

/// Per-query memo of group verdicts and model verdicts.
struct ClassAnswers<'s> {
    shape: &'s ReplicaShape,
    groups: HashMap<u32, bool>,
    models: Vec<Option<bool>>,
}

impl<'s> ClassAnswers<'s> {
    fn new(snap: &Snapshot, shape: &'s ReplicaShape) -> Self {
        Self {
            shape,
            groups: HashMap::new(),
            models: vec![None; snap.models.len()],
        }
    }

    fn class(&mut self, snap: &Snapshot, class: u64) -> u64 {
        let Some(c) = snap.index.classes.get(&class) else {
            return 0;
        };
        let Some(rep) = c.members.first() else {
            return 0;
        };
        let shape = self.shape;
        let ok = *self.groups.entry(c.group).or_insert_with(|| {
            snap.index.group(c.group).is_some_and(|g| {
                g.key.schedulable && shape.claim.matches("", &g.key.labels, &g.key.taints)
            })
        });
        if !ok {
            return 0;
        }
        let n = &snap.nodes[*rep as usize];
        let models = &mut self.models;
        node_max_replicas(&n.alloc, &n.requested, &n.devices, shape, |m| {
            let Some(slot) = models.get_mut(m as usize) else {
                return false;
            };
            *slot.get_or_insert_with(|| {
                shape
                    .gpu
                    .as_ref()
                    .is_none_or(|g| g.model_allowed(snap.model_name(m)))
            })
        })
    }
}

fn free_key(n: &NodeSlot) -> (u64, u64, u64, u64) {
    (
        n.alloc.cpu_milli.saturating_sub(n.requested.cpu_milli),
        n.alloc.memory.saturating_sub(n.requested.memory),
        n.alloc
            .ephemeral_storage
            .saturating_sub(n.requested.ephemeral_storage),
        n.alloc.pods.saturating_sub(n.requested.pods),
    )
}

fn with_sorted(devices: &[DeviceState], f: impl FnMut(&DeviceState)) {
    let mut buf = [DeviceState::default(); 16];
    if devices.len() <= buf.len() {
        let b = &mut buf[..devices.len()];
        b.copy_from_slice(devices);
        b.sort_unstable();
        b.iter().for_each(f);
    } else {
        let mut v = devices.to_vec();
        v.sort_unstable();
        v.iter().for_each(f);
    }
}

fn same_state(a: &NodeSlot, b: &NodeSlot) -> bool {
    if a.group != b.group || free_key(a) != free_key(b) || a.devices.len() != b.devices.len() {
        return false;
    }
    let free_ext = |n: &NodeSlot| -> Vec<(String, u64)> {
        n.alloc
            .extended
            .iter()
            .map(|(k, v)| {
                let used = n.requested.extended.get(k).copied().unwrap_or(0);
                (k.clone(), v.saturating_sub(used))
            })
            .filter(|(_, v)| *v > 0)
            .collect()
    };
    if (!a.alloc.extended.is_empty() || !b.alloc.extended.is_empty()) && free_ext(a) != free_ext(b)
    {
        return false;
    }
    let mut da = Vec::with_capacity(a.devices.len());
    with_sorted(&a.devices, |d| da.push(*d));
    let mut i = 0;
    let mut equal = true;
    with_sorted(&b.devices, |d| {
        equal &= da.get(i) == Some(d);
        i += 1;
    });
    equal
}

/// Adds (`sign = 1`) or removes (`sign = -1`) a pod's device use on its node.
fn take_devices(n: &mut NodeSlot, p: &PodUse, sign: i32) {
    take_devices_of(&n.device_ids, &mut n.devices, n.synthetic_gpus, p, sign);
}

fn take_devices_of(
    device_ids: &[u64],
    devices: &mut [DeviceState],
    synthetic_gpus: bool,
    p: &PodUse,
    sign: i32,
) {
    if synthetic_gpus && !p.has_gpu_uses() {
        // GPUs counted from allocatable: the pod holds whole devices.
        let mut left = p.whole_gpus;
        for d in devices.iter_mut() {
            if left == 0 {
                break;
            }
            if sign > 0 && d.used == 0 {
                d.used = 1;
                d.used_cores = d.total_cores;
                left -= 1;
            } else if sign < 0 && d.used > 0 {
                d.used = 0;
                d.used_cores = 0;
                left -= 1;
            }
        }
        return;
    }
    for (uuid, mem, cores) in p.gpu_uses() {
        let Some(i) = device_ids.iter().position(|id| *id == uuid) else {
            continue;
        };
        let d = &mut devices[i];
        if sign > 0 {
            d.used = d.used.saturating_add(1);
            d.used_mem = d.used_mem.saturating_add(mem);
            d.used_cores = d.used_cores.saturating_add(cores);
        } else {
            d.used = d.used.saturating_sub(1);
            d.used_mem = d.used_mem.saturating_sub(mem);
            d.used_cores = d.used_cores.saturating_sub(cores);
        }
    }
}
