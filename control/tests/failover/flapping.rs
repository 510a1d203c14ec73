//! A flapping cluster: evictions within the rate, no ping-pong.

use crate::common::*;

/// Issue 6, a flapping cluster: member-1's API server goes down for 5 s and
/// up for 5 s, three times (its agent keeps running but cannot reach it, so
/// it stops renewing its Lease — renewed every second here, lasting 4 s, no
/// extra grace — and reports Ready=False; its health taints go once it has
/// been healthy for 2 s, `--cluster-success-threshold`). Six Deployments without
/// tolerations have a replica there; evictions are limited to 1 per second.
/// Sampled every 100 ms: evictions in any stretch of time stay within the
/// rate (plus the one-eviction burst); no binding is evicted from member-1
/// twice (what left stays away: no ping-pong); a seventh Deployment that
/// tolerates the health taints for 20 s never moves (each taint lasts less).
/// Afterwards the placement is stable: no task, everything ready, nothing
/// changes for 5 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flapping_cluster_causes_no_eviction_storm() {
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
            "0s",
            "--cluster-success-threshold",
            "2s",
            "--no-execute-on-unready",
            "--eviction-rate",
            "1",
        ],
    );
    let client = hami.client().await;
    let mut tl = Timeline::new("flapping");
    let clusters: Api<Cluster> = Api::all(client.clone());
    clusters_ready(&clusters, 3).await;
    tl.mark("3 member clusters Ready");

    let pps: Api<PropagationPolicy> = Api::namespaced(client.clone(), "default");
    let deps: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let rbs: Api<ResourceBinding> = Api::namespaced(client.clone(), "default");
    let pp = PostParams::default();
    let names: Vec<String> = (1..=6).map(|i| format!("app-{i}")).collect();
    for n in &names {
        pps.create(&pp, &policy(n, equal_weights(&MEMBERS), None))
            .await
            .unwrap();
        deps.create(&pp, &deployment(n, 3)).await.unwrap();
    }
    let mut steady_placement = equal_weights(&MEMBERS);
    steady_placement["clusterTolerations"] = json!([
        {"key": "cluster.hami.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 20},
        {"key": "cluster.hami.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 20}
    ]);
    pps.create(&pp, &policy("steady", steady_placement, None))
        .await
        .unwrap();
    deps.create(&pp, &deployment("steady", 3)).await.unwrap();
    let all: Vec<String> = names
        .iter()
        .cloned()
        .chain(["steady".to_string()])
        .collect();
    let all_ready = || async {
        let list = deps
            .list(&ListParams::default())
            .await
            .map_err(|e| e.to_string())?;
        let ready = list
            .items
            .iter()
            .filter(|d| d.status.as_ref().and_then(|s| s.ready_replicas) == Some(3))
            .count();
        (ready == all.len())
            .then_some(())
            .ok_or(format!("{ready} of {} Deployments 3/3", all.len()))
    };
    eventually("7 Deployments 3/3 ready", 90, all_ready).await;
    tl.mark("7 Deployments 3/3 ready, one replica of each per cluster");

    // Sampled every 100 ms: the eviction counter, and every task seen.
    let t0 = std::time::Instant::now();
    let sampling = Arc::new(AtomicBool::new(true));
    let sampler = {
        let (rbs, sampling) = (rbs.clone(), sampling.clone());
        let listen = hami.endpoint();
        tokio::spawn(async move {
            let mut counts: Vec<(f64, f64)> = Vec::new();
            // (binding, cluster, task creation) seen.
            let mut tasks: std::collections::BTreeSet<(String, String, String)> =
                std::collections::BTreeSet::new();
            while sampling.load(Ordering::Relaxed) {
                let at = t0.elapsed().as_secs_f64();
                let listen = listen.clone();
                let c = tokio::task::spawn_blocking(move || {
                    metric_at(
                        &listen,
                        "hami_failover_evictions_total{reason=\"TaintUntolerated\"}",
                    )
                })
                .await
                .unwrap();
                counts.push((at, c.unwrap_or(0.0)));
                if let Ok(l) = rbs.list(&ListParams::default()).await {
                    for b in l.items {
                        for t in b.spec.graceful_eviction_tasks {
                            let created = t
                                .creation_timestamp
                                .map(|c| c.0.to_string())
                                .unwrap_or_default();
                            tasks.insert((
                                b.metadata.name.clone().unwrap_or_default(),
                                t.from_cluster,
                                created,
                            ));
                        }
                    }
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            (counts, tasks)
        })
    };

    for cycle in 1..=3 {
        outage(&hami, "member-1", Some("api"));
        tl.mark(format!("cycle {cycle}: member-1's API down"));
        tokio::time::sleep(Duration::from_secs(5)).await;
        let c = clusters.get("member-1").await.unwrap();
        outage(&hami, "member-1", None);
        let up = std::time::Instant::now();
        tl.mark(format!(
            "cycle {cycle}: member-1's API up (it had {:?}, taints {:?})",
            ready_of_cluster(&c),
            taint_names(&c)
        ));
        // Up for 5 s; when do the health taints go?
        let mut cleared = !has_our_taints(&c);
        while up.elapsed() < Duration::from_secs(5) {
            if !cleared && let Ok(c) = clusters.get("member-1").await {
                cleared = !has_our_taints(&c);
                if cleared {
                    let after = up.elapsed();
                    tl.mark(format!(
                        "cycle {cycle}: member-1's health taints removed {:.1}s after its API came back",
                        after.as_secs_f64()
                    ));
                    assert!(
                        after >= Duration::from_secs(2),
                        "removed before the success threshold"
                    );
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    eventually("member-1 healthy, no task, all ready", 60, || async {
        let c = clusters.get("member-1").await.map_err(|e| e.to_string())?;
        if has_our_taints(&c) {
            return Err(format!("taints {:?}", taint_names(&c)));
        }
        let l = rbs
            .list(&ListParams::default())
            .await
            .map_err(|e| e.to_string())?;
        if l.items
            .iter()
            .any(|b| !b.spec.graceful_eviction_tasks.is_empty())
        {
            return Err("a task stands".into());
        }
        all_ready().await
    })
    .await;
    let settled: Vec<(String, Vec<(String, i32)>)> = rbs
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .iter()
        .map(|b| (b.metadata.name.clone().unwrap(), targets(b)))
        .collect();
    tl.mark(format!("settled: {settled:?}"));
    tokio::time::sleep(Duration::from_secs(5)).await;
    let later: Vec<(String, Vec<(String, i32)>)> = rbs
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .iter()
        .map(|b| (b.metadata.name.clone().unwrap(), targets(b)))
        .collect();
    sampling.store(false, Ordering::Relaxed);
    let (counts, tasks) = sampler.await.unwrap();
    assert_eq!(later, settled, "the placement changed after settling");
    all_ready().await.unwrap();

    let total = counts.last().map_or(0.0, |c| c.1) - counts.first().map_or(0.0, |c| c.1);
    tl.mark(format!(
        "{} samples; {total} evictions in {:.1}s; tasks seen: {tasks:?}",
        counts.len(),
        t0.elapsed().as_secs_f64()
    ));
    // The rate: 1 per second, a burst of 1; sampling adds up to 0.2 s.
    let (rate, burst) = (1.0, 1.0);
    for (i, (ti, ci)) in counts.iter().enumerate() {
        for (tj, cj) in &counts[i + 1..] {
            assert!(
                cj - ci <= burst + rate * (tj - ti + 0.2),
                "{} evictions between {ti:.1}s and {tj:.1}s",
                cj - ci
            );
        }
    }
    assert!(
        total >= 1.0,
        "the flaps evicted nothing: the test shows nothing"
    );
    // Each binding left member-1 at most once, and stayed away.
    for n in &names {
        let b = format!("{n}-deployment");
        let from_member1 = tasks
            .iter()
            .filter(|(name, c, _)| *name == b && c == "member-1")
            .count();
        assert!(
            from_member1 <= 1,
            "{b} evicted from member-1 {from_member1} times"
        );
        let placed = &settled.iter().find(|(name, _)| *name == b).unwrap().1;
        assert_eq!(placed.iter().map(|(_, r)| r).sum::<i32>(), 3);
        if from_member1 == 1 {
            assert!(
                !placed.iter().any(|(c, _)| c == "member-1"),
                "{b} moved back to member-1: {placed:?}"
            );
        }
    }
    assert!(
        !tasks.iter().any(|(name, _, _)| name == "steady-deployment"),
        "steady tolerates each taint longer than it lasts"
    );
    let steady = &settled
        .iter()
        .find(|(name, _)| name == "steady-deployment")
        .unwrap()
        .1;
    assert!(steady.contains(&("member-1".to_string(), 1)), "{steady:?}");
    tl.mark("rate held, no binding evicted twice, steady stayed, placement stable for 5 s");
    tl.print();
}
