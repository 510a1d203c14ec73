//! A stopped agent: its replicas move, its Work goes once the
//! replacements are ready, nothing moves back when it returns.

use crate::common::*;

/// Issue 6, first "done when": 3 clusters, a GPU Deployment spread over
/// them; member-1's agent stops (its outage file). Sampled every 100 ms the
/// template's readyReplicas never reaches 0; the Lease lapses (renewed
/// every second here, lasting 4 s, 2 s grace), member-1 is tainted
/// unreachable NoExecute, the binding leaves it; all 6 replicas become
/// ready in member-2/3 and only then member-1's Work is deleted. The Work
/// keeps its deletion pending (the agent's finalizer) until the agent is
/// back; then it goes, member-1's copy is deleted, member-1 is healthy
/// again (its taints go after 2 s of health, `--cluster-success-threshold`)
/// and nothing moves back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_agent_moves_its_gpu_replicas_without_dropping_to_zero() {
    let dir = tempfile::tempdir().unwrap();
    let hami = Hami::start_with_args(
        dir.path(),
        "127.0.0.1:0",
        &[
            "--in-memory",
            "--sim-clusters",
            "3",
            "--sim-lease-renew",
            "1s",
            "--cluster-grace",
            "2s",
            "--cluster-success-threshold",
            "2s",
            "--no-execute-on-unready",
        ],
    );
    let client = hami.client().await;
    let mut tl = Timeline::new("dead-agent");
    let clusters: Api<Cluster> = Api::all(client.clone());
    clusters_ready(&clusters, 3).await;
    tl.mark("3 member clusters Ready");

    let pps: Api<PropagationPolicy> = Api::namespaced(client.clone(), "default");
    let deps: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let rbs: Api<ResourceBinding> = Api::namespaced(client.clone(), "default");
    let works: Api<Work> = Api::all(client.clone());
    let pp = PostParams::default();
    let failover = json!({"application": {"purgeMode": "Gracefully", "gracePeriodSeconds": 300}});
    pps.create(&pp, &policy("llm", equal_weights(&MEMBERS), Some(failover)))
        .await
        .unwrap();
    deps.create(&pp, &gpu_deployment("llm", 6)).await.unwrap();
    eventually("llm 6/6 ready", 90, || async {
        let d = deps.get("llm").await.map_err(|e| e.to_string())?;
        (ready_of(&d) == 6)
            .then_some(())
            .ok_or(format!("{} ready", ready_of(&d)))
    })
    .await;
    let before = targets(&rbs.get("llm-deployment").await.unwrap());
    tl.mark(format!("llm 6/6 ready, placed {before:?}"));
    assert!(before.contains(&("member-1".to_string(), 2)), "{before:?}");

    // Sampled every 100 ms: the template's readyReplicas; when the
    // replacements were all ready; when member-1's Work was first deleted;
    // whether it was deleted while the task stood.
    let t0 = std::time::Instant::now();
    let min_ready = Arc::new(AtomicI64::new(i64::MAX));
    let replaced_ms = Arc::new(AtomicI64::new(-1));
    let deleted_ms = Arc::new(AtomicI64::new(-1));
    let early = Arc::new(AtomicI64::new(0));
    let ready_when_deleted = Arc::new(AtomicI64::new(-1));
    let min_live = Arc::new(AtomicI64::new(i64::MAX));
    let sampling = Arc::new(AtomicBool::new(true));
    let sampler = {
        let (deps, rbs, works) = (deps.clone(), rbs.clone(), works.clone());
        let (min_ready, replaced_ms, deleted_ms, early, sampling) = (
            min_ready.clone(),
            replaced_ms.clone(),
            deleted_ms.clone(),
            early.clone(),
            sampling.clone(),
        );
        let ready_when_deleted = ready_when_deleted.clone();
        let min_live = min_live.clone();
        tokio::spawn(async move {
            let mut samples = 0u64;
            while sampling.load(Ordering::Relaxed) {
                let ms = i64::try_from(t0.elapsed().as_millis()).unwrap();
                if let Ok(d) = deps.get("llm").await {
                    let r = d.status.and_then(|s| s.ready_replicas).unwrap_or(0);
                    min_ready.fetch_min(i64::from(r), Ordering::Relaxed);
                    samples += 1;
                }
                let b = rbs.get("llm-deployment").await.ok();
                if let Some(b) = &b {
                    // What runs where the agents report live (member-1's
                    // copies count in readyReplicas as last reported).
                    let live: i64 = ready_by_cluster(b)
                        .into_iter()
                        .filter(|(c, _)| c != "member-1")
                        .map(|(_, r)| r)
                        .sum();
                    min_live.fetch_min(live, Ordering::Relaxed);
                }
                let standing = b.as_ref().is_some_and(|b| {
                    b.spec
                        .graceful_eviction_tasks
                        .iter()
                        .any(|t| t.from_cluster == "member-1")
                });
                if let Some(b) = &b
                    && !b.spec.clusters.iter().any(|t| t.name == "member-1")
                    && ready_in_targets(b) >= 6
                    && replaced_ms.load(Ordering::Relaxed) < 0
                {
                    replaced_ms.store(ms, Ordering::Relaxed);
                }
                if let Ok(l) = works.list(&ListParams::default()).await {
                    let w = work_in(&l.items, "member-1", "llm-deployment");
                    if w != Some(false) {
                        // Read again: what the binding says once the Work went.
                        let now = rbs.get("llm-deployment").await.ok();
                        let still = now.as_ref().is_some_and(|b| {
                            b.spec
                                .graceful_eviction_tasks
                                .iter()
                                .any(|t| t.from_cluster == "member-1")
                        });
                        if standing && still {
                            early.fetch_add(1, Ordering::Relaxed);
                        }
                        if deleted_ms.load(Ordering::Relaxed) < 0 && !before_stop(&b) {
                            deleted_ms.store(ms, Ordering::Relaxed);
                            let ready = now.as_ref().map_or(0, ready_in_targets);
                            ready_when_deleted.store(ready, Ordering::Relaxed);
                            if replaced_ms.load(Ordering::Relaxed) < 0 && ready >= 6 {
                                replaced_ms.store(ms, Ordering::Relaxed);
                            }
                        }
                    }
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            samples
        })
    };

    outage(&hami, "member-1", Some("agent"));
    tl.mark("member-1's agent stopped");
    let lapsed = eventually("member-1 tainted unreachable", 40, || async {
        let c = clusters.get("member-1").await.map_err(|e| e.to_string())?;
        c.spec
            .taints
            .iter()
            .any(|t| t.key == "cluster.hami.io/unreachable" && t.effect == "NoExecute")
            .then(|| c.clone())
            .ok_or(format!("taints {:?}", taint_names(&c)))
    })
    .await;
    tl.mark(format!(
        "member-1 {:?}, taints {:?}",
        ready_of_cluster(&lapsed),
        taint_names(&lapsed)
    ));
    let task_rb = eventually("an eviction task for member-1", 30, || async {
        let b = rbs.get("llm-deployment").await.map_err(|e| e.to_string())?;
        b.spec
            .graceful_eviction_tasks
            .iter()
            .any(|t| t.from_cluster == "member-1")
            .then(|| b.clone())
            .ok_or("no task".to_string())
    })
    .await;
    tl.mark(format!(
        "eviction task for member-1; targets {:?}",
        targets(&task_rb)
    ));
    let moved = eventually("6 replicas placed on member-2/3", 30, || async {
        let b = rbs.get("llm-deployment").await.map_err(|e| e.to_string())?;
        let sum: i32 = b.spec.clusters.iter().map(|t| t.replicas).sum();
        (sum == 6)
            .then(|| targets(&b))
            .ok_or(format!("targets {:?}", targets(&b)))
    })
    .await;
    tl.mark(format!("replacements placed: {moved:?}"));
    let done = eventually("task ended and member-1's Work deleted", 60, || async {
        let b = rbs.get("llm-deployment").await.map_err(|e| e.to_string())?;
        if !b.spec.graceful_eviction_tasks.is_empty() {
            return Err(format!("task standing; ready {:?}", ready_by_cluster(&b)));
        }
        let l = works
            .list(&ListParams::default())
            .await
            .map_err(|e| e.to_string())?;
        match work_in(&l.items, "member-1", "llm-deployment") {
            Some(false) => Err("member-1's Work not deleted".into()),
            _ => Ok(b.clone()),
        }
    })
    .await;
    tl.mark(format!(
        "task ended, member-1's Work deleting; ready per cluster {:?}",
        ready_by_cluster(&done)
    ));
    assert_eq!(ready_in_targets(&done), 6, "{:?}", ready_by_cluster(&done));
    let c = condition(&done, "GracefulEviction").expect("the binding says how the task ended");
    assert_eq!(
        (c.status.as_str(), c.reason.as_str()),
        ("True", "ReplacementsReady"),
        "{}",
        c.message
    );
    let rb_events = events_about(&client, "default", "ResourceBinding", "llm-deployment").await;
    assert!(
        has_event(&rb_events, "EvictWorkloadFromCluster"),
        "{rb_events:?}"
    );
    assert!(has_event(&rb_events, "ReplacementsReady"), "{rb_events:?}");
    let dep_events = events_about(&client, "default", "Deployment", "llm").await;
    assert!(
        has_event(&dep_events, "EvictWorkloadFromCluster"),
        "{dep_events:?}"
    );
    let cluster_events = events_about(&client, "default", "Cluster", "member-1").await;
    assert!(
        has_event(&cluster_events, "ClusterUnreachable"),
        "{cluster_events:?}"
    );
    tl.mark(format!(
        "binding events: {:?}",
        rb_events.iter().map(|e| &e.1).collect::<Vec<_>>()
    ));

    // A few more samples, so the sampler sees the deletion too.
    tokio::time::sleep(Duration::from_millis(500)).await;
    sampling.store(false, Ordering::Relaxed);
    let samples = sampler.await.unwrap();
    let (min, replaced, deleted) = (
        min_ready.load(Ordering::Relaxed),
        replaced_ms.load(Ordering::Relaxed),
        deleted_ms.load(Ordering::Relaxed),
    );
    tl.mark(format!(
        "{samples} samples at 100 ms: lowest readyReplicas {min} (member-1's as last reported; {} in member-2/3); replacements all ready seen at {:.1}s, member-1's Work deleted seen at {:.1}s (since the agent stopped)",
        min_live.load(Ordering::Relaxed),
        replaced as f64 / 1000.0,
        deleted as f64 / 1000.0
    ));
    assert!(samples > 10, "enough samples");
    assert!(min > 0, "llm's readyReplicas reached 0");
    assert_eq!(
        early.load(Ordering::Relaxed),
        0,
        "Work deleted while the task stood"
    );
    assert!(deleted >= 0, "the sampler saw the deletion");
    assert_eq!(
        ready_when_deleted.load(Ordering::Relaxed),
        6,
        "when member-1's Work went, the replacements were all ready"
    );
    assert!(replaced >= 0 && replaced <= deleted);

    // The agent comes back: the Work's deletion completes, member-1's copy
    // goes, member-1 is healthy again, and nothing moves back.
    outage(&hami, "member-1", None);
    tl.mark("member-1's agent started again");
    let member_deps: Api<Deployment> =
        Api::namespaced(member_client(&hami, "member-1").await, "default");
    eventually("member-1 healthy, its Work and copy gone", 60, || async {
        let c = clusters.get("member-1").await.map_err(|e| e.to_string())?;
        if has_our_taints(&c) || ready_of_cluster(&c).is_none_or(|(s, _)| s != "True") {
            return Err(format!("{:?} {:?}", ready_of_cluster(&c), taint_names(&c)));
        }
        let l = works
            .list(&ListParams::default())
            .await
            .map_err(|e| e.to_string())?;
        if work_in(&l.items, "member-1", "llm-deployment").is_some() {
            return Err("Work still there".into());
        }
        match member_deps
            .get_opt("llm")
            .await
            .map_err(|e| e.to_string())?
        {
            None => Ok(()),
            Some(_) => Err("copy still in member-1".into()),
        }
    })
    .await;
    tl.mark("member-1 Ready again, no taints of ours; its Work and copy are gone");
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = rbs.get("llm-deployment").await.unwrap();
    assert_eq!(targets(&after), moved, "nothing moved back");
    assert!(after.spec.graceful_eviction_tasks.is_empty());
    assert_eq!(ready_of(&deps.get("llm").await.unwrap()), 6);
    tl.mark(format!("3 s later: placement still {moved:?}, 6/6 ready"));
    tl.print();
}

/// True while the binding still targets member-1 (before the eviction: a
/// Work being replaced then is no deletion).
fn before_stop(b: &Option<ResourceBinding>) -> bool {
    b.as_ref()
        .is_some_and(|b| b.spec.clusters.iter().any(|t| t.name == "member-1"))
}
