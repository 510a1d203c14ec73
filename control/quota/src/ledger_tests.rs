#![allow(clippy::unwrap_used, clippy::expect_used)]

use hami_api::common::ResourceList;
use hami_api::quota::StaticClusterAssignment;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use super::*;
use crate::accounting::Assignment;

const W: i128 = 1000;

fn list(items: &[(&str, &str)]) -> ResourceList {
    items
        .iter()
        .map(|(k, v)| (k.to_string(), Quantity(v.to_string())))
        .collect()
}

/// 10 GPUs overall, at most 4 in east.
fn spec(overall: &str, east: &str) -> FederatedResourceQuotaSpec {
    FederatedResourceQuotaSpec {
        overall: list(&[("nvidia.com/gpu", overall)]),
        static_assignments: vec![StaticClusterAssignment {
            cluster_name: "east".into(),
            hard: list(&[("nvidia.com/gpu", east)]),
        }],
    }
}

fn one_gpu() -> ReplicaRequest {
    let mut r = ReplicaRequest::default();
    r.gpu.count = 1;
    r.gpu.memory_mib = 1000;
    r
}

struct Fixture {
    ledger: QuotaLedger,
    models: GpuModels,
}

impl Fixture {
    fn new(overall: &str, east: &str) -> Self {
        Self {
            ledger: QuotaLedger::new(QuotaLimits::from_spec(&spec(overall, east)).unwrap()),
            models: GpuModels::new(),
        }
    }

    fn charge(&self, a: Assignment) -> Charge {
        self.ledger
            .limits()
            .accountant(&self.models)
            .charge(&one_gpu(), &a)
            .unwrap()
    }

    fn admit(&mut self, key: &str, a: Option<Assignment>) -> Result<Delta, LedgerError> {
        let c = a.map(|a| self.charge(a));
        self.ledger.admit(key, c)
    }

    fn gpus(&self) -> (i128, i128) {
        (
            self.ledger.used().get("nvidia.com/gpu") / W,
            self.ledger.used_in("east").get("nvidia.com/gpu") / W,
        )
    }
}

#[test]
fn check_and_commit_table() {
    // (why, overall hard, east hard, steps, expected verdict of the last step, (used, used in east) after)
    type Step = (&'static str, Option<Assignment>);
    type Case = (
        &'static str,
        &'static str,
        &'static str,
        Vec<Step>,
        Result<(), QuotaExceeded>,
        (i128, i128),
    );
    let exceeded = |requested: i128, used: i128, hard: i128, cluster: Option<&str>| {
        Err(QuotaExceeded {
            resource: "nvidia.com/gpu".into(),
            requested: requested * W,
            used: used * W,
            hard: hard * W,
            cluster: cluster.map(str::to_string),
        })
    };
    let cases: Vec<Case> = vec![
        (
            "fits",
            "10",
            "4",
            vec![("a", Some(Assignment::of(&[("west", 6), ("east", 4)])))],
            Ok(()),
            (10, 4),
        ),
        (
            "exceeds overall",
            "10",
            "4",
            vec![
                ("a", Some(Assignment::of(&[("west", 8)]))),
                ("b", Some(Assignment::of(&[("west", 3)]))),
            ],
            exceeded(3, 8, 10, None),
            (8, 0),
        ),
        (
            "exceeds the static assignment of east though overall has room",
            "10",
            "4",
            vec![
                ("a", Some(Assignment::of(&[("east", 3)]))),
                ("b", Some(Assignment::of(&[("east", 2)]))),
            ],
            exceeded(2, 3, 4, Some("east")),
            (3, 3),
        ),
        (
            "scale-up of one binding counts only what it adds",
            "10",
            "4",
            vec![
                ("a", Some(Assignment::of(&[("west", 6)]))),
                ("a", Some(Assignment::of(&[("west", 10)]))),
            ],
            Ok(()),
            (10, 0),
        ),
        (
            "moving out of east is allowed while east is full",
            "10",
            "4",
            vec![
                ("a", Some(Assignment::of(&[("east", 4)]))),
                ("a", Some(Assignment::of(&[("east", 1), ("west", 3)]))),
            ],
            Ok(()),
            (4, 1),
        ),
        (
            "delete frees",
            "10",
            "4",
            vec![
                ("a", Some(Assignment::of(&[("east", 4), ("west", 6)]))),
                ("a", None),
            ],
            Ok(()),
            (0, 0),
        ),
        (
            "failover at a full quota is accepted and counted once",
            "10",
            "4",
            vec![
                ("a", Some(Assignment::of(&[("west", 6), ("east", 4)]))),
                (
                    "a",
                    Some(Assignment::of(&[("west", 6), ("north", 4)]).evicting(&[("east", 4)])),
                ),
            ],
            Ok(()),
            (10, 4),
        ),
        (
            "eviction ends",
            "10",
            "4",
            vec![
                ("a", Some(Assignment::of(&[("west", 6), ("east", 4)]))),
                (
                    "a",
                    Some(Assignment::of(&[("west", 6), ("north", 4)]).evicting(&[("east", 4)])),
                ),
                ("a", Some(Assignment::of(&[("west", 6), ("north", 4)]))),
            ],
            Ok(()),
            (10, 0),
        ),
    ];
    for (why, overall, east, steps, want, after) in cases {
        let mut f = Fixture::new(overall, east);
        let n = steps.len();
        for (i, (key, a)) in steps.into_iter().enumerate() {
            let got = f.admit(key, a);
            if i + 1 < n {
                got.unwrap_or_else(|e| panic!("{why}: step {i}: {e}"));
            } else {
                let got = got.map(|_| ()).map_err(|e| match e {
                    LedgerError::Exceeded(x) => x,
                    other => panic!("{why}: {other}"),
                });
                assert_eq!(got, want, "{why}");
            }
        }
        assert_eq!(f.gpus(), after, "{why}");
        let (used, by) = recompute(f.ledger.charges().map(|(_, c)| c)).unwrap();
        assert_eq!(&used, f.ledger.used(), "{why}");
        assert_eq!(
            by.get("east").cloned().unwrap_or_default(),
            f.ledger.used_in("east")
        );
    }
}

#[test]
fn scale_down_and_delete_are_never_refused_when_over() {
    let mut f = Fixture::new("10", "4");
    f.admit("a", Some(Assignment::of(&[("east", 4), ("west", 6)])))
        .unwrap();
    // The quota is lowered below usage.
    f.ledger
        .set_limits(QuotaLimits::from_spec(&spec("2", "1")).unwrap())
        .unwrap();
    assert!(matches!(
        f.admit("b", Some(Assignment::of(&[("west", 1)]))),
        Err(LedgerError::Exceeded(_))
    ));
    f.admit("a", Some(Assignment::of(&[("east", 3), ("west", 6)])))
        .unwrap();
    assert_eq!(f.gpus(), (9, 3));
    // Still over, still no increase: a move west→west of fewer replicas passes.
    f.admit("a", Some(Assignment::of(&[("east", 3), ("west", 1)])))
        .unwrap();
    // But moving a replica into east (over its lowered assignment) is refused.
    let err = f
        .admit("a", Some(Assignment::of(&[("east", 4)])))
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "exceeded quota in cluster east: nvidia.com/gpu: requested 1, used 3, limited 1"
    );
    f.admit("a", None).unwrap();
    assert_eq!(f.gpus(), (0, 0));
    assert_eq!(f.ledger.charges().count(), 0);
}

#[test]
fn only_the_granted_part_of_a_held_charge_is_exempt() {
    // Binding a holds 6 GPUs (a larger request written by another
    // controller, held at once), of which 2 were admitted; b holds 3. The
    // quota is 8 overall (usage 9 is over it), 4 in east.
    let mut f = Fixture::new("8", "4");
    f.ledger
        .set_charge("a", Some(f.charge(Assignment::of(&[("west", 6)]))))
        .unwrap();
    f.ledger
        .set_charge("b", Some(f.charge(Assignment::of(&[("west", 3)]))))
        .unwrap();
    let granted = f.charge(Assignment::of(&[("west", 2)]));
    // (why, a's new replicas, refused as (requested, used) or admitted)
    let cases = [
        ("what was granted", 2, None),
        ("less than granted", 1, None),
        ("above the grant, fits once a's 6 are given back", 5, None),
        ("all it holds: 3 + 6 > 8", 6, Some((4, 5))),
        ("more than it holds", 7, Some((5, 5))),
    ];
    for (why, replicas, want) in cases {
        let c = f.charge(Assignment::of(&[("west", replicas)]));
        match (
            f.ledger.check_from("a", Some(c.clone()), Some(&granted)),
            want,
        ) {
            (Ok(_), None) => {}
            (Err(LedgerError::Exceeded(e)), Some((requested, used))) => assert_eq!(
                (e.requested / W, e.used / W, e.hard / W),
                (requested, used, 8),
                "{why}"
            ),
            (got, want) => panic!("{why}: {got:?}, want {want:?}"),
        }
        // Plain check grants all that is held: the held 6 pass unchecked.
        assert_eq!(f.ledger.check("a", Some(c)).is_ok(), replicas <= 6, "{why}");
    }
    // Nothing granted (no admitted state): everything must fit.
    let none = Charge::default();
    let c5 = f.charge(Assignment::of(&[("west", 5)]));
    let c6 = f.charge(Assignment::of(&[("west", 6)]));
    assert!(f.ledger.check_from("a", Some(c5), Some(&none)).is_ok());
    assert!(matches!(
        f.ledger.check_from("a", Some(c6), Some(&none)),
        Err(LedgerError::Exceeded(_))
    ));
    // A static assignment's line counts the same way: a holds 4 in east,
    // 1 of them granted.
    f.ledger
        .set_charge("a", Some(f.charge(Assignment::of(&[("east", 4)]))))
        .unwrap();
    f.ledger.set_charge("b", None).unwrap();
    let east = f.charge(Assignment::of(&[("east", 1)]));
    let c = f.charge(Assignment::of(&[("east", 5)]));
    let e = f.ledger.check_from("a", Some(c), Some(&east)).unwrap_err();
    assert_eq!(
        e.to_string(),
        "exceeded quota in cluster east: nvidia.com/gpu: requested 4, used 1, limited 4"
    );
}

#[test]
fn commit_rechecks_and_refuses_stale_deltas() {
    let mut f = Fixture::new("10", "4");
    let c6 = f.charge(Assignment::of(&[("west", 6)]));
    let c5 = f.charge(Assignment::of(&[("west", 5)]));
    // Two checks against the same empty ledger both pass...
    let da = f.ledger.check("a", Some(c6.clone())).unwrap();
    let db = f.ledger.check("b", Some(c5)).unwrap();
    f.ledger.commit(da.clone()).unwrap();
    // ...but only one fits: the second commit is checked again.
    assert!(matches!(f.ledger.commit(db), Err(LedgerError::Exceeded(_))));
    // The first delta again: the ledger holds another charge for "a" now.
    assert!(matches!(
        f.ledger.commit(da),
        Err(LedgerError::Stale { .. })
    ));
    assert_eq!(f.gpus(), (6, 0));
    assert!(f.ledger.check("a", None).unwrap().frees_quota());
    assert!(!f.ledger.check("a", Some(c6)).unwrap().frees_quota());
}

#[test]
fn remaining_for_is_the_smaller_of_overall_and_static_room() {
    let mut f = Fixture::new("10", "4");
    f.admit("a", Some(Assignment::of(&[("east", 1), ("west", 5)])))
        .unwrap();
    let acc = f.ledger.limits().accountant(&f.models);
    let req = one_gpu();
    let r = |c: &str, ex: Option<&str>| f.ledger.remaining_for(&acc, c, &req, ex).unwrap();
    assert_eq!(r("east", None), Some(3));
    assert_eq!(r("west", None), Some(4));
    // Re-placing "a" itself: its own charge is given back.
    assert_eq!(r("east", Some("a")), Some(4));
    assert_eq!(r("west", Some("a")), Some(10));
    let mut two = one_gpu();
    two.gpu.count = 2;
    assert_eq!(
        f.ledger.remaining_for(&acc, "west", &two, None).unwrap(),
        Some(2)
    );
    // A request using nothing the quota names is not limited.
    let cpu_only = ReplicaRequest::default();
    assert_eq!(
        f.ledger
            .remaining_for(&acc, "west", &cpu_only, None)
            .unwrap(),
        None
    );
}

#[test]
fn rebuild_and_limit_changes() {
    let mut f = Fixture::new("10", "4");
    f.admit("a", Some(Assignment::of(&[("east", 2)]))).unwrap();
    f.admit("b", Some(Assignment::of(&[("west", 3)]))).unwrap();
    let charges: Vec<(String, Charge)> = f
        .ledger
        .charges()
        .map(|(k, c)| (k.to_string(), c.clone()))
        .collect();
    let rebuilt = QuotaLedger::rebuild(f.ledger.limits().clone(), charges).unwrap();
    assert_eq!(rebuilt, f.ledger);
    // Above the limits on restart: kept as placed.
    let over = QuotaLedger::rebuild(
        QuotaLimits::from_spec(&spec("1", "1")).unwrap(),
        rebuilt.charges().map(|(k, c)| (k.to_string(), c.clone())),
    )
    .unwrap();
    assert_eq!(over.used().get("nvidia.com/gpu"), 5 * W);
    let mut other = spec("10", "4");
    other.overall.insert("cpu".into(), Quantity("4".into()));
    assert_eq!(
        f.ledger.set_limits(QuotaLimits::from_spec(&other).unwrap()),
        Err(LedgerError::NamesChanged)
    );
    let mut dup = spec("10", "4");
    dup.static_assignments
        .push(dup.static_assignments[0].clone());
    assert_eq!(
        QuotaLimits::from_spec(&dup),
        Err(LedgerError::DuplicateCluster("east".into()))
    );
}
