//! The snapshot's index: node groups, capacity classes, an event log and a
//! per-shape answer cache.
//!
//! **Groups.** Nodes with the same labels, taints and schedulability form a
//! group; a node claim (selector, affinity on labels, tolerations) gives the
//! same verdict for every node of a group, so it is evaluated once per
//! group, not once per node. Groups are few (node pools).
//!
//! **Classes.** Inside a group, nodes whose free resources and multiset of
//! device states are identical form a class: every shape gets the same
//! per-node answer from each of them, so one representative answers for
//! the class. A class is found by a hash of that state and confirmed by an
//! exact comparison with its representative (no answer rests on a hash).
//!
//! **Log.** Every node event that moves a node between classes (a pod bound
//! or gone, a node changed) appends one `(old class, new class)` entry to a
//! log (none while no shape is cached) and costs O(devices) plus a
//! hash-map move: nothing is recomputed at event time.
//!
//! **Cache.** For each recently asked shape the cache keeps the cluster
//! total, the log position it reflects, and the per-class answers. A query
//! replays the log entries since that position as net per-class count
//! changes and adjusts the total by `Δcount × answer(class)`, computing an
//! answer only for classes it has not seen. A new shape (or one whose log
//! position was trimmed away) is answered by one pass over the classes, not
//! the nodes. So a repeated query costs O(events since it was last asked),
//! independent of the number of nodes.

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap, VecDeque};

use crate::model::Taint;
use crate::shape::ReplicaShape;

/// Entries the log keeps at most; a cached shape that falls further behind
/// is recomputed from the classes.
const LOG_CAP: usize = 1 << 16;
/// Shapes the cache keeps at most (least recently used is evicted).
const CACHE_CAP: usize = 256;

/// What makes nodes equal for a node claim.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct GroupKey {
    pub labels: BTreeMap<String, String>,
    pub taints: Vec<Taint>,
    pub schedulable: bool,
}

#[derive(Debug)]
pub(crate) struct Group {
    pub key: GroupKey,
    nodes: u32,
}

#[derive(Debug)]
pub(crate) struct Class {
    pub group: u32,
    hash: u64,
    pub members: Vec<u32>,
}

#[derive(Debug, Default)]
pub(crate) struct CachedShape {
    pub total: u64,
    pub seq: u64,
    pub memo: HashMap<u64, u64>,
    last_used: u64,
}

/// A class id that no class has.
pub(crate) const NO_CLASS: u64 = 0;

#[derive(Debug, Default)]
pub(crate) struct Index {
    pub groups: Vec<Option<Group>>,
    group_free: Vec<u32>,
    group_ids: HashMap<GroupKey, u32>,
    pub classes: HashMap<u64, Class>,
    class_lookup: HashMap<(u32, u64), Vec<u64>>,
    next_class: u64,
    log: VecDeque<(u64, u64)>,
    log_base: u64,
    pub cache: HashMap<ReplicaShape, CachedShape>,
    tick: u64,
}

impl Index {
    /// Interns a group key and counts one more node in it.
    pub fn join_group(&mut self, key: GroupKey) -> u32 {
        if let Some(id) = self.group_ids.get(&key) {
            if let Some(Some(g)) = self.groups.get_mut(*id as usize) {
                g.nodes += 1;
            }
            return *id;
        }
        let group = Group {
            key: key.clone(),
            nodes: 1,
        };
        let id = match self.group_free.pop() {
            Some(id) => {
                self.groups[id as usize] = Some(group);
                id
            }
            None => {
                self.groups.push(Some(group));
                (self.groups.len() - 1) as u32
            }
        };
        self.group_ids.insert(key, id);
        id
    }

    /// Counts one node less in a group, dropping it when empty.
    pub fn leave_group(&mut self, id: u32) {
        let Some(slot) = self.groups.get_mut(id as usize) else {
            return;
        };
        let empty = match slot {
            Some(g) => {
                g.nodes = g.nodes.saturating_sub(1);
                g.nodes == 0
            }
            None => false,
        };
        if empty && let Some(g) = slot.take() {
            self.group_ids.remove(&g.key);
            self.group_free.push(id);
        }
    }

    pub fn group(&self, id: u32) -> Option<&Group> {
        self.groups.get(id as usize).and_then(Option::as_ref)
    }

    /// Puts a node into the class of its state; `same` compares the node
    /// with a class representative exactly. Returns (class, position).
    pub fn enter_class(
        &mut self,
        node: u32,
        group: u32,
        hash: u64,
        mut same: impl FnMut(u32) -> bool,
    ) -> (u64, u32) {
        let candidates = self.class_lookup.entry((group, hash)).or_default();
        for id in candidates.iter() {
            if let Some(class) = self.classes.get_mut(id)
                && let Some(rep) = class.members.first()
                && same(*rep)
            {
                class.members.push(node);
                return (*id, (class.members.len() - 1) as u32);
            }
        }
        self.next_class += 1;
        let id = self.next_class;
        candidates.push(id);
        self.classes.insert(
            id,
            Class {
                group,
                hash,
                members: vec![node],
            },
        );
        (id, 0)
    }

    /// Takes a node out of its class. Returns the node that moved into its
    /// position (whose stored position must be updated), if any.
    pub fn leave_class(&mut self, class: u64, pos: u32) -> Option<u32> {
        let Entry::Occupied(mut e) = self.classes.entry(class) else {
            return None;
        };
        let members = &mut e.get_mut().members;
        let pos = pos as usize;
        if pos >= members.len() {
            return None;
        }
        members.swap_remove(pos);
        let moved = members.get(pos).copied();
        if members.is_empty() {
            let c = e.remove();
            if let Entry::Occupied(mut l) = self.class_lookup.entry((c.group, c.hash)) {
                l.get_mut().retain(|id| *id != class);
                if l.get().is_empty() {
                    l.remove();
                }
            }
        }
        moved
    }

    /// Records that a node moved from `old` to `new` (either may be NO_CLASS).
    /// With no cached shape nobody will replay it: nothing is kept (a shape
    /// cached later starts from the log position at that time).
    pub fn log_move(&mut self, old: u64, new: u64) {
        if old == new || self.cache.is_empty() {
            return;
        }
        self.log.push_back((old, new));
        if self.log.len() > LOG_CAP {
            self.log.pop_front();
            self.log_base += 1;
        }
    }

    /// Log position after the last entry.
    pub fn seq(&self) -> u64 {
        self.log_base + self.log.len() as u64
    }

    /// Net class count changes since `seq`, or None when `seq` was trimmed.
    pub fn deltas_since(&self, seq: u64) -> Option<Vec<(u64, i64)>> {
        if seq < self.log_base {
            return None;
        }
        let start = (seq - self.log_base) as usize;
        let mut d: HashMap<u64, i64> = HashMap::new();
        for (old, new) in self.log.iter().skip(start) {
            if *old != NO_CLASS {
                *d.entry(*old).or_default() -= 1;
            }
            if *new != NO_CLASS {
                *d.entry(*new).or_default() += 1;
            }
        }
        let mut d: Vec<(u64, i64)> = d.into_iter().filter(|(_, n)| *n != 0).collect();
        // Deterministic order (not needed for the sum, but keeps replays reproducible).
        d.sort_unstable();
        Some(d)
    }

    /// Marks a cache entry used, evicting the least recently used one when full.
    pub fn touch(&mut self, shape: &ReplicaShape) -> bool {
        self.tick += 1;
        let tick = self.tick;
        if let Some(e) = self.cache.get_mut(shape) {
            e.last_used = tick;
            return true;
        }
        if self.cache.len() >= CACHE_CAP
            && let Some(victim) = self
                .cache
                .iter()
                .min_by_key(|(_, e)| e.last_used)
                .map(|(k, _)| k.clone())
        {
            self.cache.remove(&victim);
        }
        false
    }

    /// Drops log entries every cached shape has already replayed.
    pub fn trim_log(&mut self) {
        let min = self
            .cache
            .values()
            .map(|e| e.seq)
            .min()
            .unwrap_or_else(|| self.seq());
        while self.log_base < min && !self.log.is_empty() {
            self.log.pop_front();
            self.log_base += 1;
        }
    }

    pub fn new_cache_entry(&mut self, shape: ReplicaShape, total: u64, memo: HashMap<u64, u64>) {
        let seq = self.seq();
        self.cache.insert(
            shape,
            CachedShape {
                total,
                seq,
                memo,
                last_used: self.tick,
            },
        );
    }

    pub fn live_classes(&self) -> usize {
        self.classes.len()
    }

    pub fn live_groups(&self) -> usize {
        self.group_ids.len()
    }
}
