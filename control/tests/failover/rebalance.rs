//! Recovery without a trigger moves nothing back; a fresh
//! `rescheduleTriggeredAt` on the policy rebalances.

use crate::common::*;
use crate::support::kubectl;

/// Issue 6, "recovery": `web` (6 replicas, dynamic weight by available
/// replicas over the three members) leaves member-1 when a user taints it
/// NoExecute. The taint goes: nothing moves back (the scheduler keeps a
/// placement that works). Then `kubectl patch pp web` sets
/// `spec.rescheduleTriggeredAt` to now: the detector copies it to the
/// binding, the scheduler divides afresh as for a new binding (the same
/// division as at the start, member-1 included), and sampled every 100 ms
/// the template's readyReplicas never reaches 0 while replicas move.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fresh_reschedule_trigger_rebalances_onto_a_recovered_cluster() {
    use k8s_openapi::jiff::Timestamp;

    let dir = tempfile::tempdir().unwrap();
    let hami = Hami::start_with_args(
        dir.path(),
        "127.0.0.1:0",
        &["--in-memory", "--sim-clusters", "3"],
    );
    let client = hami.client().await;
    let mut tl = Timeline::new("rebalance");
    let clusters: Api<Cluster> = Api::all(client.clone());
    clusters_ready(&clusters, 3).await;
    tl.mark("3 member clusters Ready");

    let pps: Api<PropagationPolicy> = Api::namespaced(client.clone(), "default");
    let deps: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let rbs: Api<ResourceBinding> = Api::namespaced(client.clone(), "default");
    let works: Api<Work> = Api::all(client.clone());
    let pp = PostParams::default();
    let placement = json!({
        "clusterAffinity": {"clusterNames": MEMBERS},
        "replicaScheduling": {
            "replicaSchedulingType": "Divided",
            "replicaDivisionPreference": "Weighted",
            "weightPreference": {"dynamicWeight": "AvailableReplicas"}
        }
    });
    let failover = json!({"application": {"purgeMode": "Gracefully", "gracePeriodSeconds": 300}});
    pps.create(&pp, &policy("web", placement, Some(failover)))
        .await
        .unwrap();
    deps.create(&pp, &deployment("web", 6)).await.unwrap();
    let settled = |want_member1: bool| {
        let rbs = rbs.clone();
        let deps = deps.clone();
        let works = works.clone();
        async move {
            let b = rbs.get("web-deployment").await.map_err(|e| e.to_string())?;
            let on_member1 = b.spec.clusters.iter().any(|t| t.name == "member-1");
            if on_member1 != want_member1 || !b.spec.graceful_eviction_tasks.is_empty() {
                return Err(format!(
                    "targets {:?}, tasks {}",
                    targets(&b),
                    b.spec.graceful_eviction_tasks.len()
                ));
            }
            if ready_in_targets(&b) != 6 {
                return Err(format!("ready {:?}", ready_by_cluster(&b)));
            }
            let l = works
                .list(&ListParams::default())
                .await
                .map_err(|e| e.to_string())?;
            if (work_in(&l.items, "member-1", "web-deployment") == Some(false)) != want_member1 {
                return Err("member-1's Work not as placed yet".into());
            }
            let d = deps.get("web").await.map_err(|e| e.to_string())?;
            (ready_of(&d) == 6)
                .then(|| b.clone())
                .ok_or(format!("template {} ready", ready_of(&d)))
        }
    };
    let first = eventually("web 6/6 ready on the three members", 90, || settled(true)).await;
    let initial = targets(&first);
    tl.mark(format!("web 6/6 ready, placed {initial:?}"));

    // A user taint moves web away from member-1.
    let taint = |taints: serde_json::Value| {
        let clusters = clusters.clone();
        async move {
            clusters
                .patch(
                    "member-1",
                    &PatchParams::default(),
                    &Patch::Merge(json!({"spec": {"taints": taints}})),
                )
                .await
                .unwrap();
        }
    };
    taint(json!([{"key": "maintenance", "effect": "NoExecute"}])).await;
    tl.mark("tainted member-1 maintenance:NoExecute");
    let moved = eventually("web moved to member-2/3, task ended", 90, || settled(false)).await;
    let moved = targets(&moved);
    tl.mark(format!("web moved: {moved:?}"));

    // The taint goes: member-1 is schedulable again, nothing moves back.
    taint(json!(null)).await;
    tl.mark("member-1's taint removed");
    for _ in 0..30 {
        let b = rbs.get("web-deployment").await.unwrap();
        assert_eq!(targets(&b), moved, "something moved back without a trigger");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let b = rbs.get("web-deployment").await.unwrap();
    let last = b
        .status
        .as_ref()
        .and_then(|s| s.last_scheduled_time.clone())
        .expect("a scheduled binding says when")
        .0;
    tl.mark(format!(
        "3 s later: still {moved:?} (lastScheduledTime {last})"
    ));
    let fresh_before = metric(&hami, "hami_scheduler_fresh_reschedules_total").unwrap();

    // Sampled every 100 ms from here: the template's readyReplicas.
    let min_ready = Arc::new(AtomicI64::new(i64::MAX));
    let sampling = Arc::new(AtomicBool::new(true));
    let sampler = {
        let (deps, min_ready, sampling) = (deps.clone(), min_ready.clone(), sampling.clone());
        tokio::spawn(async move {
            let mut samples = 0u64;
            while sampling.load(Ordering::Relaxed) {
                if let Ok(d) = deps.get("web").await {
                    let r = d.status.and_then(|s| s.ready_replicas).unwrap_or(0);
                    min_ready.fetch_min(i64::from(r), Ordering::Relaxed);
                    samples += 1;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            samples
        })
    };

    // Times are whole seconds: the trigger must be a later second than
    // the last scheduling.
    let trigger = loop {
        let now = Timestamp::from_second(Timestamp::now().as_second()).unwrap();
        if now > last {
            break now;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let patch = format!(r#"{{"spec":{{"rescheduleTriggeredAt":"{trigger}"}}}}"#);
    let (ok, out, err) = kubectl(
        &hami,
        &[
            "patch",
            "propagationpolicy",
            "web",
            "-n",
            "default",
            "--type",
            "merge",
            "-p",
            &patch,
        ],
    );
    assert!(ok, "kubectl patch: {out} {err}");
    tl.mark(format!(
        "kubectl patch pp web rescheduleTriggeredAt={trigger}"
    ));
    let copied = eventually("the binding carries the trigger", 30, || async {
        let b = rbs.get("web-deployment").await.map_err(|e| e.to_string())?;
        (b.spec.reschedule_triggered_at.as_ref().map(|t| t.0) == Some(trigger))
            .then(|| b.clone())
            .ok_or(format!("{:?}", b.spec.reschedule_triggered_at))
    })
    .await;
    tl.mark(format!(
        "binding carries it; targets {:?}",
        targets(&copied)
    ));
    let rebalanced = eventually("web rebalanced onto member-1, 6 ready", 90, || {
        settled(true)
    })
    .await;
    let after = targets(&rebalanced);
    tl.mark(format!("rebalanced: {after:?}, 6/6 ready"));
    let last_after = rebalanced
        .status
        .as_ref()
        .and_then(|s| s.last_scheduled_time.clone())
        .unwrap()
        .0;
    assert!(last_after >= trigger, "{last_after} < {trigger}");
    assert_eq!(
        after, initial,
        "a fresh division is the one a new binding gets"
    );
    let fresh = metric(&hami, "hami_scheduler_fresh_reschedules_total").unwrap() - fresh_before;
    assert!(fresh >= 1.0, "fresh divisions counted: {fresh}");

    // The trigger is spent: nothing is divided afresh again, and the
    // placement stays (sampled 2 s more).
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        targets(&rbs.get("web-deployment").await.unwrap()),
        after,
        "the placement stays after the rebalance"
    );
    assert_eq!(
        metric(&hami, "hami_scheduler_fresh_reschedules_total").unwrap() - fresh_before,
        fresh,
        "a spent trigger divides nothing afresh"
    );
    sampling.store(false, Ordering::Relaxed);
    let samples = sampler.await.unwrap();
    let min = min_ready.load(Ordering::Relaxed);
    tl.mark(format!(
        "2 s later: still {after:?}; {samples} samples at 100 ms since the trigger, lowest readyReplicas {min}"
    ));
    assert!(samples > 10, "enough samples");
    assert!(min > 0, "web's readyReplicas reached 0");
    tl.print();
}
