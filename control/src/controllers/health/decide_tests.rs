use std::time::Duration;

use hami_api::cluster::{Cluster, ClusterSpec, ClusterStatus};
use k8s_openapi::api::core::v1::Taint;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::{SignedDuration, Timestamp};

use super::*;

fn t(secs: i64) -> Timestamp {
    Timestamp::UNIX_EPOCH + SignedDuration::from_secs(1_700_000_000 + secs)
}

fn ready(status: &str, reason: &str) -> Condition {
    Condition {
        type_: CONDITION_READY.into(),
        status: status.into(),
        reason: reason.into(),
        message: String::new(),
        last_transition_time: Time(t(0)),
        observed_generation: None,
    }
}

fn cluster(taints: Vec<Taint>, ready_cond: Option<Condition>) -> Cluster {
    let mut c = Cluster::new(
        "member-1",
        ClusterSpec {
            taints,
            ..ClusterSpec::default()
        },
    );
    c.status = Some(ClusterStatus {
        conditions: ready_cond.into_iter().collect(),
        ..ClusterStatus::default()
    });
    c
}

fn user_taint(key: &str, effect: &str) -> Taint {
    Taint {
        key: key.into(),
        value: None,
        effect: effect.into(),
        time_added: None,
    }
}

fn our_taint(key: &str, effect: &str, at: i64) -> Taint {
    Taint {
        time_added: Some(Time(t(at))),
        ..user_taint(key, effect)
    }
}

/// Renewed at 0, lasting 40 s; grace 40 s: lapsed after 80 s.
fn lease() -> LeaseView {
    LeaseView {
        renew_time: t(0),
        duration: Duration::from_secs(40),
        renewed: t(0),
    }
}

fn keys(taints: &[Taint]) -> Vec<String> {
    taints
        .iter()
        .map(|t| format!("{}:{}:{}", t.key, t.effect, t.time_added.is_some()))
        .collect()
}

#[test]
fn fresh_lease_on_a_ready_cluster_changes_nothing() {
    let c = cluster(vec![], Some(ready("True", "ClusterReady")));
    let opts = HealthOptions::default();
    assert_eq!(
        decide(&c, Some(&lease()), t(80), &opts),
        None,
        "at the edge"
    );
    assert_eq!(health(&c, Some(&lease()), t(80), &opts), Health::Healthy);
    assert_eq!(
        decide(&c, None, t(10_000), &opts),
        None,
        "no lease: nothing to judge"
    );
}

#[test]
fn lapsed_lease_sets_unknown_and_no_schedule() {
    let c = cluster(
        vec![user_taint("dedicated", "NoSchedule")],
        Some(ready("True", "ClusterReady")),
    );
    let d = decide(&c, Some(&lease()), t(81), &HealthOptions::default()).unwrap();
    assert_eq!(
        keys(&d.taints),
        [
            "dedicated:NoSchedule:false",
            "cluster.hami.io/unreachable:NoSchedule:true"
        ]
    );
    let r = d.conditions.iter().find(|c| c.type_ == "Ready").unwrap();
    assert_eq!(
        (r.status.as_str(), r.reason.as_str()),
        ("Unknown", REASON_UNKNOWN)
    );
    assert_eq!(r.last_transition_time, Time(t(81)));
    // Written once: deciding again on the result changes nothing.
    let mut after = c.clone();
    after.spec.taints = d.taints;
    after.status.as_mut().unwrap().conditions = d.conditions;
    assert_eq!(
        decide(&after, Some(&lease()), t(200), &HealthOptions::default()),
        None
    );
}

#[test]
fn lapsed_lease_with_no_execute_option_adds_both_effects() {
    let c = cluster(vec![], Some(ready("True", "ClusterReady")));
    let opts = HealthOptions {
        grace: Duration::from_secs(5),
        no_execute: true,
        ..HealthOptions::default()
    };
    assert_eq!(
        decide(&c, Some(&lease()), t(45), &opts),
        None,
        "within grace"
    );
    let d = decide(&c, Some(&lease()), t(46), &opts).unwrap();
    assert_eq!(
        keys(&d.taints),
        [
            "cluster.hami.io/unreachable:NoSchedule:true",
            "cluster.hami.io/unreachable:NoExecute:true"
        ]
    );
}

#[test]
fn agent_reported_not_ready_gets_the_not_ready_taint() {
    let c = cluster(vec![], Some(ready("False", "MemberUnreachable")));
    let d = decide(&c, Some(&lease()), t(10), &HealthOptions::default()).unwrap();
    assert_eq!(
        keys(&d.taints),
        ["cluster.hami.io/not-ready:NoSchedule:true"]
    );
    assert_eq!(
        d.conditions[0].status, "False",
        "the agent's condition is left as it reported it"
    );
    // Lapsing then: not-ready gives way to unreachable.
    let mut after = c.clone();
    after.spec.taints = d.taints;
    let d = decide(&after, Some(&lease()), t(100), &HealthOptions::default()).unwrap();
    assert_eq!(
        keys(&d.taints),
        ["cluster.hami.io/unreachable:NoSchedule:true"]
    );
}

#[test]
fn recovery_removes_only_our_taints() {
    let c = cluster(
        vec![
            user_taint("cluster.hami.io/unreachable", "NoExecute"),
            our_taint("cluster.hami.io/unreachable", "NoSchedule", 81),
            our_taint("cluster.hami.io/unreachable", "NoExecute", 81),
            user_taint("dedicated", "NoSchedule"),
        ],
        Some(ready("Unknown", REASON_UNKNOWN)),
    );
    let renewed = LeaseView {
        renew_time: t(300),
        ..lease()
    };
    let opts = HealthOptions {
        no_execute: true,
        ..HealthOptions::default()
    };
    let d = decide(&c, Some(&renewed), t(301), &opts).unwrap();
    assert_eq!(
        keys(&d.taints),
        [
            "cluster.hami.io/unreachable:NoExecute:false",
            "dedicated:NoSchedule:false"
        ],
        "the user's taint of the same key stays"
    );
    let r = &d.conditions[0];
    assert_eq!(
        (r.status.as_str(), r.reason.as_str()),
        ("True", REASON_RENEWED)
    );
}

#[test]
fn turning_the_no_execute_option_off_drops_our_no_execute_taint() {
    let c = cluster(
        vec![
            our_taint("cluster.hami.io/unreachable", "NoSchedule", 81),
            our_taint("cluster.hami.io/unreachable", "NoExecute", 81),
        ],
        Some(ready("Unknown", REASON_UNKNOWN)),
    );
    let d = decide(&c, Some(&lease()), t(500), &HealthOptions::default()).unwrap();
    assert_eq!(
        keys(&d.taints),
        ["cluster.hami.io/unreachable:NoSchedule:true"]
    );
    assert_eq!(d.taints[0].time_added, Some(Time(t(81))), "timeAdded kept");
}

#[test]
fn a_restarted_controller_counts_old_leases_from_its_start() {
    let c = cluster(vec![], Some(ready("True", "ClusterReady")));
    let opts = HealthOptions::default();
    // Renewed at 0 (lapses after 80 s), but the controller started at 1000.
    let l = lease().seen_since(t(1000));
    assert_eq!(decide(&c, Some(&l), t(1001), &opts), None, "no verdict yet");
    assert!(
        decide(&c, Some(&l), t(1081), &opts).is_some(),
        "still not renewed"
    );
    assert_eq!(
        lease().seen_since(t(-5)),
        lease(),
        "a newer renewal is kept"
    );
}

#[test]
fn lapsed_lease_keeps_an_agent_reported_false() {
    // The agent runs but cannot reach its member: it stops renewing and
    // reports Ready=False itself; only the taint changes.
    let c = cluster(vec![], Some(ready("False", "MemberUnreachable")));
    let d = decide(&c, Some(&lease()), t(81), &HealthOptions::default()).unwrap();
    assert_eq!(
        keys(&d.taints),
        ["cluster.hami.io/unreachable:NoSchedule:true"]
    );
    assert_eq!(
        (
            d.conditions[0].status.as_str(),
            d.conditions[0].reason.as_str()
        ),
        ("False", "MemberUnreachable")
    );
}

#[test]
fn events_name_the_verdict_and_our_taints() {
    let c = cluster(
        vec![Taint {
            key: "dedicated".into(),
            effect: "NoSchedule".into(),
            ..Taint::default()
        }],
        None,
    );
    let opts = HealthOptions {
        no_execute: true,
        ..HealthOptions::default()
    };
    let d = decide(&c, Some(&lease()), t(81), &opts).unwrap();
    let (type_, reason, message) = event(Health::Unreachable, &d.taints);
    assert_eq!(type_, crate::controllers::events::EventType::Warning);
    assert_eq!(reason, "ClusterUnreachable");
    assert!(
        message.ends_with("cluster.hami.io/unreachable:NoSchedule,NoExecute"),
        "{message}"
    );
    assert_eq!(event(Health::Healthy, &[]).1, "ClusterHealthy");
}

#[test]
fn a_renewal_after_the_agents_false_makes_it_stale() {
    // The agent said Ready=False at 0 (member out of reach) and the Lease
    // lapsed; now the member answers again: the agent renews at 120 and
    // writes Ready=True a moment later. In between, the cluster is judged
    // healthy, not not-ready: no fresh NoExecute taint at recovery.
    let opts = HealthOptions {
        no_execute: true,
        ..HealthOptions::default()
    };
    let c = cluster(
        vec![
            our_taint(TAINT_UNREACHABLE, "NoSchedule", 81),
            our_taint(TAINT_UNREACHABLE, "NoExecute", 81),
        ],
        Some(ready("False", "MemberUnreachable")),
    );
    let renewed = LeaseView {
        renew_time: t(120),
        renewed: t(120),
        ..lease()
    };
    assert_eq!(health(&c, Some(&renewed), t(121), &opts), Health::Healthy);
    let d = decide(&c, Some(&renewed), t(121), &opts).unwrap();
    assert!(d.taints.is_empty(), "{:?}", keys(&d.taints));
    // A False newer than the last renewal still counts.
    let mut newer = c.clone();
    newer.status.as_mut().unwrap().conditions[0].last_transition_time = Time(t(130));
    assert_eq!(
        health(&newer, Some(&renewed), t(131), &opts),
        Health::NotReady
    );
    // A renewal counted from a controller restart is not a renewal.
    let restarted = lease().seen_since(t(120));
    assert_eq!(
        health(&c, Some(&restarted), t(121), &opts),
        Health::NotReady
    );
}

/// What one step of the damped judgement sees: at `at`, the Lease renewed
/// at `renewed` (lasting 4 s, no grace: lapsed 4 s later) and the agent's
/// Ready condition (status, since).
struct Seen {
    at: i64,
    renewed: i64,
    agent_ready: (&'static str, i64),
}

/// After one step: (its time, the taint keys of ours, whether held).
type StepOut = (i64, Vec<String>, bool);

/// Runs `steps` through [`step`] as the controller does (each write
/// applied to the cluster, `healthy_since` carried over) and returns, per
/// step, the taint keys the cluster carries afterwards and whether the
/// verdict was held.
fn run_steps(threshold: u64, steps: &[Seen]) -> Vec<StepOut> {
    let opts = HealthOptions {
        grace: Duration::ZERO,
        no_execute: true,
        success_threshold: Duration::from_secs(threshold),
    };
    let mut c = cluster(vec![user_taint("dedicated", "NoSchedule")], None);
    let mut since = None;
    let mut out = Vec::new();
    for s in steps {
        let (status, at) = s.agent_ready;
        let cond = Condition {
            last_transition_time: Time(t(at)),
            ..ready(status, "Agent")
        };
        // The agent's own condition, unless ours (Unknown) replaced it.
        let conditions = &mut c.status.as_mut().unwrap().conditions;
        match conditions.first() {
            Some(r) if r.reason == REASON_UNKNOWN && status == "True" => {}
            _ => *conditions = vec![cond],
        }
        let lease = LeaseView {
            renew_time: t(s.renewed),
            duration: Duration::from_secs(4),
            renewed: t(s.renewed),
        };
        let v = step(&c, Some(&lease), t(s.at), &opts, since);
        since = v.healthy_since;
        if let Some(d) = v.desired {
            c.spec.taints = d.taints;
            c.status.as_mut().unwrap().conditions = d.conditions;
        }
        let ours: Vec<String> = keys(&c.spec.taints)
            .into_iter()
            .filter(|k| k.ends_with(":true"))
            .collect();
        out.push((s.at, ours, v.held));
    }
    out
}

fn seen(at: i64, renewed: i64, agent_ready: (&'static str, i64)) -> Seen {
    Seen {
        at,
        renewed,
        agent_ready,
    }
}

#[test]
fn health_taints_go_only_after_the_success_threshold_of_unbroken_health() {
    const UNREACHABLE: [&str; 2] = [
        "cluster.hami.io/unreachable:NoSchedule:true",
        "cluster.hami.io/unreachable:NoExecute:true",
    ];
    let ok = ("True", 0);
    // The agent stops renewing at 0; lapsed after 4 s; renews again from 10.
    let outage = [
        seen(1, 0, ok),
        seen(5, 0, ok),   // lapsed: tainted
        seen(10, 10, ok), // renewed: healthy from 10, held
        seen(12, 12, ok),
        seen(14, 14, ok),
    ];
    // (threshold, [(after step at, taints of ours, held)])
    let tainted = |at, held| (at, UNREACHABLE.map(String::from).to_vec(), held);
    let clean = |at| (at, Vec::<String>::new(), false);
    let cases: Vec<(u64, Vec<StepOut>)> = vec![
        (
            0,
            vec![clean(1), tainted(5, false), clean(10), clean(12), clean(14)],
        ),
        (
            2,
            vec![
                clean(1),
                tainted(5, false),
                tainted(10, true),
                clean(12),
                clean(14),
            ],
        ),
        (
            4,
            vec![
                clean(1),
                tainted(5, false),
                tainted(10, true),
                tainted(12, true),
                clean(14),
            ],
        ),
        (
            30,
            vec![
                clean(1),
                tainted(5, false),
                tainted(10, true),
                tainted(12, true),
                tainted(14, true),
            ],
        ),
    ];
    for (threshold, want) in cases {
        assert_eq!(
            run_steps(threshold, &outage),
            want,
            "threshold {threshold}s"
        );
    }
}

#[test]
fn a_break_in_health_starts_the_count_again_and_keeps_the_first_time_added() {
    // Lapsed at 5, renewed at 10 and 12, lapsed again at 17 (renewed at 12,
    // lasting 4 s), renewed from 18 on. Threshold 4 s: the healthy stretch
    // 10..16 is broken at 17, so the taints stay until 22 (18 + 4).
    let ok = ("True", 0);
    let steps = [
        seen(5, 0, ok),
        seen(10, 10, ok),
        seen(12, 12, ok),
        seen(17, 12, ok),
        seen(18, 18, ok),
        seen(21, 21, ok),
        seen(22, 22, ok),
    ];
    let got = run_steps(4, &steps);
    let tainted: Vec<i64> = got
        .iter()
        .filter(|(_, ours, _)| !ours.is_empty())
        .map(|(at, _, _)| *at)
        .collect();
    assert_eq!(tainted, [5, 10, 12, 17, 18, 21]);
    let held: Vec<i64> = got.iter().filter(|s| s.2).map(|s| s.0).collect();
    assert_eq!(held, [10, 12, 18, 21], "held only while healthy");
    // Never re-added while held: the flap did not restart tolerationSeconds.
    let opts = HealthOptions {
        grace: Duration::ZERO,
        no_execute: true,
        success_threshold: Duration::from_secs(4),
    };
    let c = cluster(
        vec![
            our_taint(TAINT_UNREACHABLE, "NoSchedule", 5),
            our_taint(TAINT_UNREACHABLE, "NoExecute", 5),
        ],
        Some(ready("Unknown", REASON_UNKNOWN)),
    );
    let lapsed = LeaseView {
        renew_time: t(12),
        duration: Duration::from_secs(4),
        renewed: t(12),
    };
    let v = step(&c, Some(&lapsed), t(17), &opts, Some(t(10)));
    assert_eq!(
        (v.health, v.healthy_since, v.desired),
        (Health::Unreachable, None, None)
    );
}

#[test]
fn an_agents_not_ready_is_damped_too_and_a_healthy_cluster_is_never_held() {
    // The agent reports Ready=False at 3 (member out of reach) while still
    // renewing; True again at 8. Threshold 3 s: not-ready until 11.
    let steps = [
        seen(3, 3, ("False", 3)),
        seen(8, 8, ("True", 8)),
        seen(10, 10, ("True", 8)),
        seen(11, 11, ("True", 8)),
    ];
    let got = run_steps(3, &steps);
    let not_ready = || {
        vec![
            "cluster.hami.io/not-ready:NoSchedule:true".to_string(),
            "cluster.hami.io/not-ready:NoExecute:true".to_string(),
        ]
    };
    assert_eq!(
        got,
        [
            (3, not_ready(), false),
            (8, not_ready(), true),
            (10, not_ready(), true),
            (11, vec![], false),
        ]
    );
    // A cluster with nothing of ours is not held, whatever the count.
    let c = cluster(
        vec![user_taint("dedicated", "NoSchedule")],
        Some(ready("True", "ClusterReady")),
    );
    let v = step(&c, Some(&lease()), t(1), &HealthOptions::default(), None);
    assert_eq!(
        v,
        Verdict {
            health: Health::Healthy,
            healthy_since: Some(t(1)),
            held: false,
            desired: None
        }
    );
}

#[test]
fn our_ready_unknown_stays_while_held_and_turns_true_after() {
    let c = cluster(
        vec![our_taint(TAINT_UNREACHABLE, "NoSchedule", 81)],
        Some(ready("Unknown", REASON_UNKNOWN)),
    );
    let renewed = LeaseView {
        renew_time: t(300),
        renewed: t(300),
        ..lease()
    };
    let opts = HealthOptions::default();
    let held = step(&c, Some(&renewed), t(301), &opts, None);
    assert!(held.held && held.desired.is_none());
    assert_eq!(held.healthy_since, Some(t(301)));
    let still = step(&c, Some(&renewed), t(330), &opts, held.healthy_since);
    assert!(still.held, "29 s of 30");
    let done = step(&c, Some(&renewed), t(331), &opts, still.healthy_since)
        .desired
        .unwrap();
    assert!(done.taints.is_empty());
    assert_eq!(
        (
            done.conditions[0].status.as_str(),
            done.conditions[0].reason.as_str()
        ),
        ("True", REASON_RENEWED)
    );
}
