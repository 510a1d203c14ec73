//! Property test of the scheduler's accountant ([`QuotaBook`]) against a
//! model store, with the interleavings the control plane has: the scheduler
//! reserves a decision, its write lands (or fails) and the watch event comes
//! before or after the write's answer; other controllers lower bindings
//! without the scheduler (a graceful eviction moving a cluster into an
//! eviction task, a descheduler lowering a cluster); users delete bindings.
//! Per-replica requests are equal across clusters (GPU count and CPU), so
//! the lowering writes raise nothing.
//!
//! After every step: the store's usage, summed from scratch, never exceeds
//! the quota (overall, and the static assignment), the book holds at least
//! the store's usage (it never under-counts), and once every write has
//! landed and every binding is settled again, the book equals the store.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;

use hami_api::quota::{FederatedResourceQuotaSpec, StaticClusterAssignment};
use hami_quota::{Assignment, Charge, GpuModels, QuotaBook, QuotaLimits, ReplicaRequest, State};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use proptest::prelude::*;

const CLUSTERS: [&str; 3] = ["a", "b", "c"];
const GPU: &str = "nvidia.com/gpu";

#[derive(Clone, Debug)]
enum Op {
    /// The scheduler decides `replicas` for binding `key` and reserves.
    Decide { key: u8, replicas: [i32; 3] },
    /// The write of `key`'s decision lands (`ok`) or fails; the watch event
    /// comes first when `event_first`.
    Land {
        key: u8,
        ok: bool,
        event_first: bool,
    },
    /// A graceful eviction: `key` leaves cluster `from` (unsettled write).
    Evict { key: u8, from: usize },
    /// A descheduler lowers `key` in `cluster` by one (unsettled write).
    Lower { key: u8, cluster: usize },
    /// The scheduler places the replacements of an eviction on cluster c
    /// (no static assignment there): never refused, since the replaced
    /// replicas count once and the binding's quota was kept for them.
    Replace { key: u8 },
    /// The scheduler settles `key` as it is (e.g. the eviction task ended).
    Settle { key: u8 },
    /// The binding is deleted.
    Delete { key: u8 },
}

fn op() -> impl Strategy<Value = Op> {
    let key = 0u8..3;
    prop_oneof![
        3 => (key.clone(), prop::array::uniform3(0i32..6))
            .prop_map(|(key, replicas)| Op::Decide { key, replicas }),
        3 => (key.clone(), prop::bool::weighted(0.85), any::<bool>())
            .prop_map(|(key, ok, event_first)| Op::Land { key, ok, event_first }),
        2 => (key.clone(), 0usize..3).prop_map(|(key, from)| Op::Evict { key, from }),
        1 => (key.clone(), 0usize..3).prop_map(|(key, cluster)| Op::Lower { key, cluster }),
        3 => key.clone().prop_map(|key| Op::Replace { key }),
        1 => key.clone().prop_map(|key| Op::Settle { key }),
        1 => key.prop_map(|key| Op::Delete { key }),
    ]
}

fn request(gpus: i128) -> ReplicaRequest {
    let mut r = ReplicaRequest::default();
    r.gpu.count = gpus;
    r.gpu.memory_mib = 1000;
    r.resources.set("cpu", 500);
    r
}

fn spec(overall: i64, in_a: i64) -> FederatedResourceQuotaSpec {
    let q = |n: i64| Quantity(n.to_string());
    FederatedResourceQuotaSpec {
        overall: [
            (GPU.to_string(), q(overall)),
            ("cpu".to_string(), q(overall)),
        ]
        .into(),
        static_assignments: vec![StaticClusterAssignment {
            cluster_name: "a".into(),
            hard: [(GPU.to_string(), q(in_a))].into(),
        }],
    }
}

/// The model store: each binding's state and whether it is settled.
#[derive(Default)]
struct Store {
    revision: u64,
    bindings: BTreeMap<String, (State, bool)>,
}

fn usage(limits: &QuotaLimits, store: &Store) -> (i128, i128) {
    let models = GpuModels::new();
    let acc = limits.accountant(&models);
    let charges: Vec<Charge> = store
        .bindings
        .values()
        .map(|(s, _)| acc.charge(&s.request, &s.assignment).unwrap())
        .collect();
    let (overall, clusters) = hami_quota::recompute(&charges).unwrap();
    let in_a = clusters.get("a").map_or(0, |a| a.get(GPU));
    (overall.get(GPU), in_a)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    #[test]
    fn store_never_exceeds_and_book_never_undercounts(
        overall in 4i64..20,
        in_a in 0i64..6,
        gpus in prop::array::uniform3(1i128..3),
        ops in prop::collection::vec(op(), 1..60),
    ) {
        let in_a = in_a.min(overall);
        let spec = spec(overall, in_a);
        let limits = QuotaLimits::from_spec(&spec).unwrap();
        let mut book = QuotaBook::new();
        book.set_quota("ns", "q", &spec).unwrap();
        let mut store = Store::default();
        // Decisions reserved and not yet landed.
        let mut pending: BTreeMap<String, State> = BTreeMap::new();
        // Bindings whose last write was an eviction out of a settled state
        // without copies being left.
        let mut evicted: BTreeMap<String, ()> = BTreeMap::new();

        for op in ops {
            match op {
                Op::Decide { key, replicas } => {
                    let k = format!("b{key}");
                    if pending.contains_key(&k) {
                        continue; // one decision in flight per binding
                    }
                    let mut s = State {
                        request: request(gpus[usize::from(key)]),
                        assignment: Assignment::of(
                            &CLUSTERS.iter().copied().zip(replicas).collect::<Vec<_>>(),
                        ),
                    };
                    // Copies being left stay being left.
                    if let Some((old, _)) = store.bindings.get(&k) {
                        s.assignment.evicting = old.assignment.evicting.clone();
                        for c in s.assignment.clusters.keys() {
                            s.assignment.evicting.remove(c);
                        }
                    }
                    if book.reserve(&k, "ns", s.clone()).is_ok() {
                        evicted.remove(&k);
                        pending.insert(k, s);
                    }
                }
                Op::Land { key, ok, event_first } => {
                    let k = format!("b{key}");
                    let Some(s) = pending.remove(&k) else { continue };
                    if !ok {
                        book.cancel(&k);
                        continue;
                    }
                    store.revision += 1;
                    let rev = store.revision;
                    store.bindings.insert(k.clone(), (s.clone(), true));
                    if event_first {
                        book.observe(&k, "ns", rev, s, true);
                        book.confirm(&k, rev);
                    } else {
                        book.confirm(&k, rev);
                        book.observe(&k, "ns", rev, s, true);
                    }
                }
                Op::Evict { key, from } => {
                    let k = format!("b{key}");
                    let Some((s, settled)) = store.bindings.get(&k) else { continue };
                    let settled = *settled && !pending.contains_key(&k);
                    // A second eviction while one runs charges copies of
                    // copies in full (the accountant's documented
                    // over-count, a raise no admission sees): one at a time.
                    if !s.assignment.evicting.is_empty() {
                        continue;
                    }
                    let mut s = s.clone();
                    let c = CLUSTERS[from].to_string();
                    let Some(n) = s.assignment.clusters.remove(&c) else { continue };
                    s.assignment.evicting.insert(c, n);
                    store.revision += 1;
                    store.bindings.insert(k.clone(), (s.clone(), false));
                    book.observe(&k, "ns", store.revision, s, false);
                    if settled && n > 0 {
                        evicted.insert(k, ());
                    } else {
                        evicted.remove(&k);
                    }
                }
                Op::Replace { key } => {
                    let k = format!("b{key}");
                    if evicted.remove(&k).is_none() || pending.contains_key(&k) {
                        continue;
                    }
                    let Some((s, _)) = store.bindings.get(&k) else { continue };
                    let mut s = s.clone();
                    let moved: i32 = s.assignment.evicting.values().sum();
                    *s.assignment.clusters.entry("c".to_string()).or_insert(0) += moved;
                    let r = book.reserve(&k, "ns", s.clone());
                    prop_assert!(r.is_ok(), "failover refused: {r:?}");
                    pending.insert(k, s);
                }
                Op::Lower { key, cluster } => {
                    let k = format!("b{key}");
                    let Some((s, _)) = store.bindings.get(&k) else { continue };
                    let mut s = s.clone();
                    let c = CLUSTERS[cluster];
                    let Some(n) = s.assignment.clusters.get_mut(c) else { continue };
                    *n = (*n - 1).max(0);
                    evicted.remove(&k);
                    store.revision += 1;
                    store.bindings.insert(k.clone(), (s.clone(), false));
                    book.observe(&k, "ns", store.revision, s, false);
                }
                Op::Settle { key } => {
                    // The scheduler writes the binding as it stands (its
                    // decision raised nothing), e.g. after the eviction
                    // task ended: only when no decision is in flight.
                    let k = format!("b{key}");
                    if pending.contains_key(&k) {
                        continue;
                    }
                    let Some((s, _)) = store.bindings.get(&k) else { continue };
                    let mut s = s.clone();
                    s.assignment.evicting.clear();
                    if book.reserve(&k, "ns", s.clone()).is_err() {
                        continue;
                    }
                    evicted.remove(&k);
                    store.revision += 1;
                    store.bindings.insert(k.clone(), (s.clone(), true));
                    book.confirm(&k, store.revision);
                    book.observe(&k, "ns", store.revision, s, true);
                }
                Op::Delete { key } => {
                    let k = format!("b{key}");
                    store.bindings.remove(&k);
                    evicted.remove(&k);
                    if pending.remove(&k).is_some() {
                        // The write answers not found.
                        book.cancel(&k);
                    }
                    book.forget(&k);
                }
            }

            let (used, used_a) = usage(&limits, &store);
            prop_assert!(used <= i128::from(overall) * 1000, "store {} > {overall}", used / 1000);
            prop_assert!(used_a <= i128::from(in_a) * 1000, "store in a {} > {in_a}", used_a / 1000);
            let (_, ledger) = book.quota("ns", "q").unwrap();
            prop_assert!(ledger.used().get(GPU) >= used, "book under-counts");
            prop_assert!(ledger.used_in("a").get(GPU) >= used_a, "book under-counts in a");
        }

        // Quiesce: every write lands, every binding is settled.
        let keys: Vec<String> = pending.keys().cloned().collect();
        for k in keys {
            let s = pending.remove(&k).unwrap();
            store.revision += 1;
            store.bindings.insert(k.clone(), (s.clone(), true));
            book.confirm(&k, store.revision);
            book.observe(&k, "ns", store.revision, s, true);
        }
        let unsettled: Vec<(String, State)> = store
            .bindings
            .iter()
            .filter(|(_, (_, settled))| !settled)
            .map(|(k, (s, _))| (k.clone(), s.clone()))
            .collect();
        for (k, s) in unsettled {
            store.revision += 1;
            store.bindings.insert(k.clone(), (s.clone(), true));
            book.observe(&k, "ns", store.revision, s, true);
        }
        let (used, used_a) = usage(&limits, &store);
        let (_, ledger) = book.quota("ns", "q").unwrap();
        prop_assert_eq!(ledger.used().get(GPU), used);
        prop_assert_eq!(ledger.used_in("a").get(GPU), used_a);
    }
}
