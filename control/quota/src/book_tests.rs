#![allow(clippy::unwrap_used, clippy::expect_used)]

use hami_api::common::ResourceList;
use hami_api::quota::StaticClusterAssignment;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use super::*;
use crate::ledger::QuotaExceeded;

const GPU: &str = "nvidia.com/gpu";

fn list(items: &[(&str, &str)]) -> ResourceList {
    items
        .iter()
        .map(|(k, v)| (k.to_string(), Quantity(v.to_string())))
        .collect()
}

fn quota(overall: &str, east: Option<&str>) -> FederatedResourceQuotaSpec {
    FederatedResourceQuotaSpec {
        overall: list(&[(GPU, overall)]),
        static_assignments: east
            .map(|e| StaticClusterAssignment {
                cluster_name: "east".into(),
                hard: list(&[(GPU, e)]),
            })
            .into_iter()
            .collect(),
    }
}

fn state(clusters: &[(&str, i32)], evicting: &[(&str, i32)]) -> State {
    let mut request = ReplicaRequest::default();
    request.gpu.count = 1;
    request.gpu.memory_mib = 1000;
    State {
        request,
        assignment: Assignment::of(clusters).evicting(evicting),
    }
}

fn used(book: &QuotaBook) -> i128 {
    book.quota("ns", "q").unwrap().1.used().get(GPU) / 1000
}

fn used_in(book: &QuotaBook, cluster: &str) -> i128 {
    book.quota("ns", "q").unwrap().1.used_in(cluster).get(GPU) / 1000
}

fn exceeded(r: Result<Outcome, Refusal>) -> QuotaExceeded {
    match r {
        Err(refusal) => match *refusal.error {
            LedgerError::Exceeded(e) => e,
            other => panic!("expected QuotaExceeded, got {other:?}"),
        },
        Ok(o) => panic!("expected QuotaExceeded, got {o:?}"),
    }
}

fn book(overall: &str, east: Option<&str>) -> QuotaBook {
    let mut b = QuotaBook::new();
    b.set_quota("ns", "q", &quota(overall, east)).unwrap();
    b
}

#[test]
fn reserve_admits_within_limits_and_refuses_beyond_with_numbers() {
    let mut b = book("10", Some("4"));
    b.reserve("a", "ns", state(&[("west", 3)], &[])).unwrap();
    b.confirm("a", 5);
    assert_eq!(used(&b), 3);
    // 8 more overall: 3 + 8 > 10.
    let e = exceeded(b.reserve("b", "ns", state(&[("west", 8)], &[])));
    assert_eq!(
        (e.resource.as_str(), e.requested, e.used, e.hard),
        (GPU, 8000, 3000, 10000)
    );
    assert_eq!(e.cluster, None);
    // 5 in east: within overall, but east's static assignment is 4.
    let r = b.reserve("b", "ns", state(&[("east", 5)], &[]));
    let e = exceeded(r.clone());
    assert_eq!(e.cluster.as_deref(), Some("east"));
    let message = r.unwrap_err().to_string();
    assert!(
        message.starts_with("FederatedResourceQuota ns/q: exceeded quota in cluster east: nvidia.com/gpu: requested 5, used 0, limited 4"),
        "{message}"
    );
    // Nothing of the refused steps is held.
    assert_eq!((used(&b), used_in(&b, "east")), (3, 0));
    b.reserve("b", "ns", state(&[("east", 4)], &[])).unwrap();
    assert_eq!((used(&b), used_in(&b, "east")), (7, 4));
    // Another namespace is not limited.
    b.reserve("c", "other", state(&[("east", 50)], &[]))
        .unwrap();
    assert_eq!(used(&b), 7);
}

#[test]
fn a_lowering_decision_frees_quota_only_once_written() {
    let mut b = book("4", None);
    b.observe("a", "ns", 3, state(&[("west", 4)], &[]), true);
    assert_eq!(used(&b), 4);
    // Scale-down to 1, in flight: the 4 stay held.
    let out = b.reserve("a", "ns", state(&[("west", 1)], &[])).unwrap();
    assert!(out.freed.is_empty());
    assert_eq!(used(&b), 4);
    exceeded(b.reserve("b", "ns", state(&[("west", 1)], &[])));
    // Written: freed.
    let out = b.confirm("a", 9);
    assert_eq!(out.freed, BTreeSet::from(["ns".to_string()]));
    assert_eq!(used(&b), 1);
    b.reserve("b", "ns", state(&[("west", 3)], &[])).unwrap();
    assert_eq!(used(&b), 4);
}

#[test]
fn a_failed_write_gives_its_reservation_back() {
    let mut b = book("4", None);
    b.reserve("a", "ns", state(&[("west", 4)], &[])).unwrap();
    exceeded(b.reserve("b", "ns", state(&[("west", 1)], &[])));
    let out = b.cancel("a");
    assert_eq!(out.freed, BTreeSet::from(["ns".to_string()]));
    assert_eq!(used(&b), 0);
    b.reserve("b", "ns", state(&[("west", 4)], &[])).unwrap();
}

#[test]
fn failover_keeps_its_quota_until_the_replacements_are_settled() {
    let mut b = book("4", None);
    // 2 in east, 2 in west, settled.
    b.observe("a", "ns", 1, state(&[("east", 2), ("west", 2)], &[]), true);
    assert_eq!(used(&b), 4);
    // The eviction controller moves east into an eviction task (unsettled):
    // alone, that state charges 2 + 2 paired... the held charge stays 4.
    let out = b.observe("a", "ns", 2, state(&[("west", 2)], &[("east", 2)]), false);
    assert!(out.freed.is_empty());
    assert_eq!(used(&b), 4);
    // Nobody else takes the 2 the eviction seems to free.
    exceeded(b.reserve("b", "ns", state(&[("west", 1)], &[])));
    // The scheduler places the replacements: 4 in west while east's copies
    // still run. The replaced replicas count once: 4, admitted at the limit.
    b.reserve("a", "ns", state(&[("west", 4)], &[("east", 2)]))
        .unwrap();
    b.confirm("a", 3);
    assert_eq!(
        (used(&b), used_in(&b, "east"), used_in(&b, "west")),
        (4, 2, 4)
    );
    // The task ends (eviction controller, unsettled, then settled by the
    // scheduler): east's copies are gone.
    b.observe("a", "ns", 4, state(&[("west", 4)], &[]), false);
    b.observe("a", "ns", 5, state(&[("west", 4)], &[]), true);
    assert_eq!((used(&b), used_in(&b, "east")), (4, 0));
}

#[test]
fn failover_into_a_full_static_assignment_is_refused_and_keeps_the_old_copies_counted() {
    // The sample quota's shape: 16 overall, east (the only other cluster
    // the workload may use) at most 4.
    let mut b = book("16", Some("4"));
    b.observe("a", "ns", 1, state(&[("east", 2), ("west", 4)], &[]), true);
    // The eviction controller moves west into an eviction task: the write
    // is observed like any other, nothing is refused or freed.
    let out = b.observe("a", "ns", 2, state(&[("east", 2)], &[("west", 4)]), false);
    assert!(out.freed.is_empty());
    assert_eq!(
        (used(&b), used_in(&b, "east"), used_in(&b, "west")),
        (6, 2, 4)
    );
    // East has room for 4 of the binding's replicas in all (its own 2
    // given back): the 4 replacements do not fit beside the 2.
    let req = state(&[], &[]).request;
    assert_eq!(b.room("a", "ns", &req, "east").unwrap(), Some(4));
    let e = exceeded(b.reserve("a", "ns", state(&[("east", 6)], &[("west", 4)])));
    assert_eq!(e.cluster.as_deref(), Some("east"));
    assert_eq!((e.requested, e.used, e.hard), (4000, 2000, 4000));
    // The refusal changes nothing: the old copies in west stay counted
    // until the task ends.
    assert_eq!(
        (used(&b), used_in(&b, "east"), used_in(&b, "west")),
        (6, 2, 4)
    );
    // The grace period ends the task: west's copies go.
    b.observe("a", "ns", 3, state(&[("east", 2)], &[]), false);
    b.observe("a", "ns", 4, state(&[("east", 2)], &[]), true);
    assert_eq!((used(&b), used_in(&b, "west")), (2, 0));
}

#[test]
fn a_larger_request_is_held_at_once_but_granted_only_when_admitted() {
    let mut b = book("4", None);
    // 2 replicas of 1 GPU, admitted and written.
    b.observe("a", "ns", 1, state(&[("west", 2)], &[]), true);
    // The detector writes 3 GPUs per replica (unsettled): held at once.
    let mut bigger = state(&[("west", 2)], &[]);
    bigger.request.gpu.count = 3;
    b.observe("a", "ns", 2, bigger.clone(), false);
    assert_eq!(used(&b), 6);
    // The scheduler's decision (2 replicas of 3) raises 2 to 6: refused,
    // though 6 are already held.
    let e = exceeded(b.reserve("a", "ns", bigger.clone()));
    assert_eq!((e.requested, e.used, e.hard), (4000, 2000, 4000));
    // The refusal written (the gate observes it unsettled) grants nothing:
    // a retry is refused again, nobody else gets in meanwhile.
    b.observe("a", "ns", 3, bigger.clone(), false);
    exceeded(b.reserve("a", "ns", bigger.clone()));
    exceeded(b.reserve("b", "ns", state(&[("west", 1)], &[])));
    // Going back to the admitted request is never refused, and once
    // written frees what the larger one held.
    b.observe("a", "ns", 4, state(&[("west", 2)], &[]), false);
    b.reserve("a", "ns", state(&[("west", 2)], &[])).unwrap();
    b.confirm("a", 5);
    b.observe("a", "ns", 5, state(&[("west", 2)], &[]), true);
    assert_eq!(used(&b), 2);
    // A quota raise lets the larger request in.
    b.observe("a", "ns", 6, bigger.clone(), false);
    b.set_quota("ns", "q", &quota("6", None)).unwrap();
    b.reserve("a", "ns", bigger.clone()).unwrap();
    b.confirm("a", 7);
    b.observe("a", "ns", 7, bigger, true);
    assert_eq!(used(&b), 6);
}

#[test]
fn old_events_do_not_replace_newer_states() {
    let mut b = book("10", None);
    b.observe("a", "ns", 5, state(&[("west", 3)], &[]), true);
    // An event from before (a relist replaying an older revision).
    b.observe("a", "ns", 4, state(&[("west", 9)], &[]), true);
    b.observe("a", "ns", 4, state(&[("west", 8)], &[]), false);
    assert_eq!(used(&b), 3);
    // Our write at 6 confirmed after the watch already showed 7.
    b.reserve("a", "ns", state(&[("west", 5)], &[])).unwrap();
    b.observe("a", "ns", 7, state(&[("west", 2)], &[]), true);
    b.confirm("a", 6);
    assert_eq!(used(&b), 2);
}

#[test]
fn deleting_releases_and_quota_changes_recount() {
    let mut b = QuotaBook::new();
    // Bindings exist before their quota (a restart lists them first).
    b.observe("a", "ns", 1, state(&[("east", 3), ("west", 2)], &[]), true);
    b.observe("b", "ns", 2, state(&[("east", 4)], &[]), true);
    let out = b.set_quota("ns", "q", &quota("8", Some("5"))).unwrap();
    assert_eq!(out.freed, BTreeSet::from(["ns".to_string()]));
    // What is placed is placed, even above the limits.
    assert_eq!((used(&b), used_in(&b, "east")), (9, 7));
    // Scale-down and deletion are never refused.
    b.reserve("b", "ns", state(&[("east", 1)], &[])).unwrap();
    b.confirm("b", 3);
    assert_eq!((used(&b), used_in(&b, "east")), (6, 4));
    let out = b.forget("a");
    assert_eq!(out.freed, BTreeSet::from(["ns".to_string()]));
    assert_eq!((used(&b), used_in(&b, "east")), (1, 1));
    // A raise of the limits (same names) keeps the charges.
    b.set_quota("ns", "q", &quota("20", Some("6"))).unwrap();
    assert_eq!(used(&b), 1);
    // Other names: the ledger is rebuilt from the bindings.
    let mut spec = quota("20", None);
    spec.overall.insert("cpu".into(), Quantity("4".into()));
    b.set_quota("ns", "q", &spec).unwrap();
    assert_eq!((used(&b), used_in(&b, "east")), (1, 1));
    assert!(b.remove_quota("ns", "q").freed.contains("ns"));
    assert!(!b.limits_namespace("ns"));
}

#[test]
fn room_is_the_smallest_over_the_namespace_quotas() {
    let mut b = book("10", Some("4"));
    let mut second = quota("6", None);
    second.overall.insert("cpu".into(), Quantity("100".into()));
    b.set_quota("ns", "r", &second).unwrap();
    b.observe("a", "ns", 1, state(&[("west", 3)], &[]), true);
    let req = state(&[], &[]).request;
    // q: 10 - 3 overall, 4 in east; r: 6 - 3.
    assert_eq!(b.room("new", "ns", &req, "east").unwrap(), Some(3));
    assert_eq!(b.room("new", "ns", &req, "west").unwrap(), Some(3));
    // Its own charge is given back when it is placed again.
    assert_eq!(b.room("a", "ns", &req, "west").unwrap(), Some(6));
    assert_eq!(b.room("a", "ns", &req, "east").unwrap(), Some(4));
    // A request the quotas do not limit.
    assert_eq!(
        b.room("x", "ns", &ReplicaRequest::default(), "east")
            .unwrap(),
        None
    );
    assert_eq!(b.room("x", "free", &req, "east").unwrap(), None);
    // Both quotas must admit.
    let e = b
        .reserve("n", "ns", state(&[("west", 4)], &[]))
        .unwrap_err();
    assert_eq!(e.quota, "r");
}

#[test]
fn settled_only_usage_is_the_sum_of_the_store() {
    // The status controller's use: every event settled.
    let mut b = book("100", None);
    type Step<'a> = (&'a str, u64, &'a [(&'a str, i32)]);
    let steps: &[Step] = &[
        ("a", 1, &[("east", 3)]),
        ("b", 2, &[("west", 5)]),
        ("a", 3, &[("east", 1), ("west", 1)]),
        ("c", 4, &[("east", 7)]),
        ("b", 5, &[]),
    ];
    for (key, rev, clusters) in steps {
        b.observe(key, "ns", *rev, state(clusters, &[]), true);
    }
    b.forget("c");
    assert_eq!(
        (used(&b), used_in(&b, "east"), used_in(&b, "west")),
        (2, 1, 1)
    );
    let (_, ledger) = b.quota("ns", "q").unwrap();
    let (overall, _) = crate::ledger::recompute(ledger.charges().map(|(_, c)| c)).unwrap();
    assert_eq!(&overall, ledger.used());
}

#[test]
fn gpu_memory_percentages_follow_the_models() {
    let spec = FederatedResourceQuotaSpec {
        overall: list(&[("nvidia.com/gpumem", "100000")]),
        static_assignments: vec![],
    };
    let mut b = QuotaBook::new();
    b.set_quota("ns", "q", &spec).unwrap();
    let mut request = ReplicaRequest::default();
    request.gpu.count = 1;
    request.gpu.memory_percent = 50;
    let s = State {
        request,
        assignment: Assignment::of(&[("east", 2)]),
    };
    // No model known: the charge cannot be computed, so it is not admitted.
    let r = b.reserve("a", "ns", s.clone()).unwrap_err();
    assert!(!r.is_exceeded());
    let mut models = GpuModels::new();
    models.insert("east", "A100", 40000);
    assert!(b.set_models(models).freed.contains("ns"));
    b.reserve("a", "ns", s).unwrap();
    let (_, ledger) = b.quota("ns", "q").unwrap();
    assert_eq!(ledger.used().get("nvidia.com/gpumem"), 40_000_000);
    // A larger model: the held charge is counted again.
    let mut models = GpuModels::new();
    models.insert("east", "H100", 80000);
    b.set_models(models);
    let (_, ledger) = b.quota("ns", "q").unwrap();
    assert_eq!(ledger.used().get("nvidia.com/gpumem"), 80_000_000);
}

#[test]
fn max_charge_is_line_by_line() {
    let mut a = Charge::default();
    a.overall.set(GPU, 4);
    a.overall.set("cpu", 1);
    a.clusters
        .insert("east".into(), [(GPU.to_string(), 4)].into_iter().collect());
    let mut b = Charge::default();
    b.overall.set(GPU, 2);
    b.overall.set("cpu", 3);
    b.clusters
        .insert("west".into(), [(GPU.to_string(), 2)].into_iter().collect());
    let m = max_charge(&a, &b);
    assert_eq!((m.overall.get(GPU), m.overall.get("cpu")), (4, 3));
    assert_eq!(m.in_cluster("east").get(GPU), 4);
    assert_eq!(m.in_cluster("west").get(GPU), 2);
}
