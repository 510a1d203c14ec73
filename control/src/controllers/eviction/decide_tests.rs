use std::collections::BTreeMap;
use std::time::Duration;

use hami_api::binding::{
    AggregatedStatusItem, GracefulEvictionTask, ObjectReference, ResourceBindingSpec, TargetCluster,
};
use hami_api::common::ResourceHealth;
use hami_api::propagation::{Placement, PurgeMode};
use k8s_openapi::api::core::v1::{Taint, Toleration};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use serde_json::json;

use super::*;

fn t(secs: i64) -> Timestamp {
    Timestamp::UNIX_EPOCH + SignedDuration::from_secs(1_700_000_000 + secs)
}

fn spec(clusters: &[(&str, i32)], tolerations: Vec<Toleration>) -> ResourceBindingSpec {
    ResourceBindingSpec {
        resource: ObjectReference {
            api_version: "apps/v1".into(),
            kind: "Deployment".into(),
            namespace: Some("default".into()),
            name: "web".into(),
            ..ObjectReference::default()
        },
        replicas: clusters.iter().map(|(_, r)| r).sum(),
        placement: Some(Placement {
            cluster_tolerations: tolerations,
            ..Placement::default()
        }),
        clusters: clusters
            .iter()
            .map(|(n, r)| TargetCluster {
                name: (*n).into(),
                replicas: *r,
            })
            .collect(),
        ..ResourceBindingSpec::default()
    }
}

fn no_execute(key: &str, added: i64) -> Taint {
    Taint {
        key: key.into(),
        value: None,
        effect: "NoExecute".into(),
        time_added: Some(Time(t(added))),
    }
}

fn tolerate(key: &str, seconds: Option<i64>) -> Toleration {
    Toleration {
        key: Some(key.into()),
        operator: Some("Exists".into()),
        effect: Some("NoExecute".into()),
        toleration_seconds: seconds,
        value: None,
    }
}

fn tainted(cluster: &str, taint: Taint) -> BTreeMap<String, Vec<Taint>> {
    BTreeMap::from([(cluster.to_string(), vec![taint])])
}

#[test]
fn untolerated_no_execute_evicts_now() {
    let s = spec(&[("a", 2), ("b", 2)], vec![]);
    let taints = tainted("b", no_execute("maintenance", 0));
    match evictions(&s, &taints, t(0)) {
        Eviction::Now(leave) => {
            assert_eq!(leave.len(), 1);
            assert_eq!(leave[0].0, "b");
        }
        other => panic!("expected an eviction, got {other:?}"),
    }
    assert_eq!(evictions(&s, &BTreeMap::new(), t(0)), Eviction::None);
}

#[test]
fn tolerated_forever_stays() {
    let s = spec(&[("a", 2), ("b", 2)], vec![tolerate("maintenance", None)]);
    let taints = tainted("b", no_execute("maintenance", 0));
    assert_eq!(evictions(&s, &taints, t(1_000_000)), Eviction::None);
    // Another key is not tolerated.
    let other = tainted("b", no_execute("cluster.hami.io/unreachable", 0));
    assert!(matches!(evictions(&s, &other, t(0)), Eviction::Now(_)));
}

#[test]
fn tolerated_for_n_seconds_evicts_after_they_elapse() {
    let s = spec(
        &[("a", 2), ("b", 2)],
        vec![tolerate("maintenance", Some(30))],
    );
    let taints = tainted("b", no_execute("maintenance", 100));
    assert_eq!(evictions(&s, &taints, t(129)), Eviction::Later(t(130)));
    assert!(matches!(evictions(&s, &taints, t(130)), Eviction::Now(_)));
}

#[test]
fn a_cluster_already_being_left_is_not_evicted_twice() {
    let mut s = spec(&[("a", 2), ("b", 2)], vec![]);
    let taints = tainted("b", no_execute("maintenance", 0));
    let Eviction::Now(leave) = evictions(&s, &taints, t(5)) else {
        panic!("expected an eviction");
    };
    let next = evicted_spec(&s, &leave, PurgeSettings::default(), t(5));
    assert_eq!(next.clusters.len(), 1, "b dropped from the targets");
    let task = &next.graceful_eviction_tasks[0];
    assert_eq!(task.from_cluster, "b");
    assert_eq!(task.replicas, Some(2));
    assert_eq!(task.producer, PRODUCER);
    assert_eq!(task.reason, REASON_TAINT);
    assert_eq!(task.purge_mode, Some(PurgeMode::Gracefully));
    assert_eq!(task.grace_period_seconds, Some(600));
    assert_eq!(task.creation_timestamp, Some(Time(t(5))));
    assert_eq!(evictions(&next, &taints, t(6)), Eviction::None);
    // Even if a target named b came back while the task stands.
    s.graceful_eviction_tasks = next.graceful_eviction_tasks;
    assert_eq!(evictions(&s, &taints, t(6)), Eviction::None);
}

#[test]
fn rate_limit_spaces_evictions() {
    let mut bucket = TokenBucket::new(2.0, 2);
    assert_eq!(bucket.take(t(0)), Ok(()));
    assert_eq!(bucket.take(t(0)), Ok(()));
    assert_eq!(bucket.take(t(0)), Err(Duration::from_millis(500)));
    let half = t(0) + SignedDuration::from_millis(500);
    assert_eq!(bucket.take(half), Ok(()), "refilled at 2/s");
    assert!(bucket.take(half).is_err());
    // A long pause refills to the burst, not beyond.
    assert_eq!(bucket.take(t(100)), Ok(()));
    assert_eq!(bucket.take(t(100)), Ok(()));
    assert!(bucket.take(t(100)).is_err());
}

fn task(mode: PurgeMode, created: i64, grace: i32) -> GracefulEvictionTask {
    GracefulEvictionTask {
        from_cluster: "b".into(),
        replicas: Some(2),
        reason: REASON_TAINT.into(),
        producer: PRODUCER.into(),
        purge_mode: Some(mode),
        grace_period_seconds: Some(grace),
        creation_timestamp: Some(Time(t(created))),
        ..GracefulEvictionTask::default()
    }
}

fn ready(cluster: &str, n: i64) -> AggregatedStatusItem {
    AggregatedStatusItem {
        cluster_name: cluster.into(),
        status: Some(json!({"replicas": n, "readyReplicas": n})),
        applied: true,
        health: Some(ResourceHealth::Healthy),
        ..AggregatedStatusItem::default()
    }
}

#[test]
fn graceful_task_ends_when_replacements_are_ready() {
    // 4 replicas, now all on a and c; b is being left.
    let s = spec(&[("a", 2), ("c", 2)], vec![]);
    let tk = task(PurgeMode::Gracefully, 0, 600);
    let partial = [ready("a", 2), ready("c", 1), ready("b", 2)];
    assert_eq!(
        task_done(&tk, &s, &partial, t(10)),
        Err(Some(t(600))),
        "the old cluster's ready replicas do not count"
    );
    let full = [ready("a", 2), ready("c", 2), ready("b", 2)];
    assert_eq!(task_done(&tk, &s, &full, t(10)), Ok(Done::Ready));
}

#[test]
fn graceful_task_ends_when_the_grace_period_elapses() {
    let s = spec(&[("a", 2), ("c", 2)], vec![]);
    let tk = task(PurgeMode::Gracefully, 0, 30);
    let never_ready = [ready("a", 2), ready("c", 0)];
    assert_eq!(task_done(&tk, &s, &never_ready, t(29)), Err(Some(t(30))));
    assert_eq!(
        task_done(&tk, &s, &never_ready, t(30)),
        Ok(Done::GraceElapsed)
    );
}

#[test]
fn directly_ends_at_once_and_never_stays() {
    let s = spec(&[("a", 2), ("c", 2)], vec![]);
    let full = [ready("a", 2), ready("c", 2)];
    assert_eq!(
        task_done(&task(PurgeMode::Directly, 0, 600), &s, &[], t(0)),
        Ok(Done::Directly)
    );
    let never = task(PurgeMode::Never, 0, 1);
    assert_eq!(task_done(&never, &s, &full, t(10_000)), Err(None));
    let mut suppressed = task(PurgeMode::Gracefully, 0, 1);
    suppressed.suppress_deletion = Some(true);
    assert_eq!(task_done(&suppressed, &s, &full, t(10_000)), Err(None));
}

#[test]
fn kinds_without_replicas_wait_for_healthy_everywhere() {
    let mut s = spec(&[("a", 0), ("c", 0)], vec![]);
    s.replicas = 0;
    let mut c = ready("c", 0);
    c.health = Some(ResourceHealth::Unknown);
    assert!(!replacements_ready(&s, &[ready("a", 0), c.clone()]));
    c.health = Some(ResourceHealth::Healthy);
    assert!(replacements_ready(&s, &[ready("a", 0), c]));
    s.clusters.clear();
    assert!(!replacements_ready(&s, &[]), "nowhere to run is not ready");
}

#[test]
fn a_finished_task_says_why_and_how_ready_the_replacements_were() {
    let s = spec(&[("a", 2), ("c", 2)], vec![]);
    let status = [ready("a", 2), ready("c", 0), ready("b", 2)];
    let readyish = ready_in_targets(&s, &status);
    assert_eq!(readyish, 2, "the old cluster b does not count");
    let forced = finished(
        &task(PurgeMode::Gracefully, 0, 30),
        Done::GraceElapsed,
        readyish,
        s.replicas,
    );
    assert!(!forced.ok);
    assert_eq!(forced.reason, REASON_GRACE_ELAPSED);
    assert!(
        forced.message.contains("after the 30 s grace period")
            && forced.message.contains("2 of 4 replicas ready"),
        "{}",
        forced.message
    );
    let clean = finished(&task(PurgeMode::Gracefully, 0, 30), Done::Ready, 4, 4);
    assert!(clean.ok);
    assert_eq!(clean.reason, REASON_REPLACEMENTS_READY);
    assert!(clean.message.contains("cluster b"), "{}", clean.message);
    let direct = finished(&task(PurgeMode::Directly, 0, 30), Done::Directly, 0, 4);
    assert_eq!(direct.reason, REASON_PURGED_DIRECTLY);
    let no_replicas = finished(
        &task(PurgeMode::Gracefully, 0, 30),
        Done::GraceElapsed,
        0,
        0,
    );
    assert!(
        no_replicas.message.contains("healthy"),
        "{}",
        no_replicas.message
    );
}
