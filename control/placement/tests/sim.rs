//! The scenario engine: the sample scenario runs, its output is the same run
//! after run and whatever order the clusters are listed in, and bad
//! scenarios are refused with a clear error.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use hami_placement::sim::{self, Outcome, Scenario, SimError};

const SAMPLE: &str = include_str!("../../../samples/sim/gpu-fleet.yaml");

fn sample() -> Scenario {
    serde_saphyr::from_str(SAMPLE).expect("the sample parses")
}

#[test]
fn sample_runs_and_is_deterministic() {
    let s = sample();
    let a = sim::run(&s).unwrap();
    let b = sim::run(&s).unwrap();
    assert_eq!(a.to_table(), b.to_table());
    assert_eq!(a.to_json(), b.to_json());

    let mut shuffled = s.clone();
    shuffled.clusters.reverse();
    shuffled.clusters.rotate_left(1);
    let c = sim::run(&shuffled).unwrap();
    assert_eq!(a.to_json(), c.to_json());
    assert_eq!(a.to_table(), c.to_table());
    assert_eq!(a.steps.len(), 4);
}

#[test]
fn sample_outcomes() {
    let r = sim::run(&sample()).unwrap();
    let outcome = |step: usize, name: &str| {
        r.steps[step]
            .workloads
            .iter()
            .find(|w| w.name == name)
            .map(|w| w.outcome.clone())
            .unwrap()
    };
    let clusters = |o: &Outcome| match o {
        Outcome::Scheduled { clusters, .. } => clusters
            .iter()
            .map(|t| (t.name.clone(), t.replicas))
            .collect::<Vec<_>>(),
        Outcome::Unschedulable { message, .. } => panic!("unschedulable: {message}"),
    };
    let owned = |v: &[(&str, i32)]| {
        v.iter()
            .map(|(n, r)| (n.to_string(), *r))
            .collect::<Vec<_>>()
    };
    // 10 trainers by available replicas 16:8 over the a100 clusters.
    assert_eq!(
        clusters(&outcome(0, "ml/trainer")),
        owned(&[("aws-us-east", 7), ("aws-us-west", 3)])
    );
    // The notebook falls back to the research term and its tainted cluster.
    match outcome(0, "research/notebook") {
        Outcome::Scheduled {
            affinity, notes, ..
        } => {
            assert_eq!(affinity.as_deref(), Some("research"));
            assert_eq!(
                notes,
                vec!["estimator unreachable for onprem-asia: general estimate used".to_string()]
            );
        }
        other => panic!("{other:?}"),
    }
    // Scale to 20 adds 10 to the existing 7/3, by what is left there (9:5).
    assert_eq!(
        clusters(&outcome(1, "ml/trainer")),
        owned(&[("aws-us-east", 13), ("aws-us-west", 7)])
    );
    // NoExecute on the west cluster: its 7 trainers must move; east has 3 left.
    match outcome(2, "ml/trainer") {
        Outcome::Unschedulable { reasons, .. } => {
            assert_eq!(
                reasons["aws-us-west"],
                vec!["had untolerated taint {maintenance:NoExecute}".to_string()]
            );
            assert_eq!(
                reasons["gcp-eu"],
                vec!["did not match the placement cluster affinity constraint".to_string()]
            );
        }
        other => panic!("{other:?}"),
    }
    let table = r.to_table();
    assert!(table.contains("== cluster gcp-eu down =="), "{table}");
}

#[test]
fn bad_scenarios_are_refused() {
    let mut s = sample();
    s.clusters.push(s.clusters[0].clone());
    assert_eq!(
        sim::run(&s),
        Err(SimError::DuplicateCluster("aws-us-east".into()))
    );
    let mut s = sample();
    s.events.push(sim::Event::ClusterDown {
        cluster: "nowhere".into(),
    });
    assert_eq!(
        sim::run(&s),
        Err(SimError::UnknownCluster {
            index: 3,
            name: "nowhere".into()
        })
    );
    let typo = "clusters: []\nworkload: []\n";
    assert!(
        serde_saphyr::from_str::<Scenario>(typo).is_err(),
        "unknown fields are refused"
    );
}
