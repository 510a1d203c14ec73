//! A user's NoExecute taint: the replicas move without the service
//! dropping to zero; a tolerating policy stays.

use crate::common::*;

fn web_policy() -> PropagationPolicy {
    serde_json::from_value(json!({
        "apiVersion": "policy.hami.io/v1alpha1", "kind": "PropagationPolicy",
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {
            "resourceSelectors": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"}],
            "placement": {
                "clusterAffinity": {"clusterNames": MEMBERS},
                "replicaScheduling": {
                    "replicaSchedulingType": "Divided",
                    "replicaDivisionPreference": "Weighted",
                    "weightPreference": {"staticWeightList": [
                        {"targetCluster": {"clusterNames": MEMBERS}, "weight": 1}
                    ]}
                }
            },
            "failover": {"application": {"purgeMode": "Gracefully", "gracePeriodSeconds": 300}}
        }
    }))
    .unwrap()
}

fn pinned_policy() -> PropagationPolicy {
    serde_json::from_value(json!({
        "apiVersion": "policy.hami.io/v1alpha1", "kind": "PropagationPolicy",
        "metadata": {"name": "pinned", "namespace": "default"},
        "spec": {
            "resourceSelectors": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": "pinned"}],
            "placement": {
                "clusterAffinity": {"clusterNames": ["member-1"]},
                "clusterTolerations": [
                    {"key": "maintenance", "operator": "Exists", "effect": "NoExecute"}
                ],
                "replicaScheduling": {"replicaSchedulingType": "Duplicated"}
            }
        }
    }))
    .unwrap()
}

fn is_web_on_member1(w: &Work) -> bool {
    w.metadata.namespace.as_deref() == Some("hami-es-member-1")
        && w.metadata
            .name
            .as_deref()
            .is_some_and(|n| n.contains("web"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn untolerated_no_execute_taint_moves_replicas_without_dropping_to_zero() {
    let dir = tempfile::tempdir().unwrap();
    let hami = Hami::start_with_args(
        dir.path(),
        "127.0.0.1:0",
        &["--in-memory", "--sim-clusters", "3", "--eviction-rate", "5"],
    );
    let client = hami.client().await;
    let mut tl = Timeline::new("failover");
    let clusters: Api<Cluster> = Api::all(client.clone());
    eventually("3 clusters ready", 60, || async {
        let list = clusters
            .list(&ListParams::default())
            .await
            .map_err(|e| e.to_string())?;
        let ready = list
            .items
            .iter()
            .filter(|c| {
                c.status.as_ref().is_some_and(|s| {
                    s.conditions
                        .iter()
                        .any(|c| c.type_ == "Ready" && c.status == "True")
                })
            })
            .count();
        (ready == 3).then_some(()).ok_or(format!("{ready} ready"))
    })
    .await;
    tl.mark("3 member clusters Ready");

    let pps: Api<PropagationPolicy> = Api::namespaced(client.clone(), "default");
    let deps: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let rbs: Api<ResourceBinding> = Api::namespaced(client.clone(), "default");
    let works: Api<Work> = Api::all(client.clone());
    let pp = PostParams::default();
    pps.create(&pp, &web_policy()).await.unwrap();
    pps.create(&pp, &pinned_policy()).await.unwrap();
    deps.create(&pp, &deployment("web", 6)).await.unwrap();
    deps.create(&pp, &deployment("pinned", 1)).await.unwrap();

    eventually("web 6/6 ready and pinned 1/1", 90, || async {
        let web = deps.get("web").await.map_err(|e| e.to_string())?;
        let pinned = deps.get("pinned").await.map_err(|e| e.to_string())?;
        (ready_of(&web) == 6 && ready_of(&pinned) == 1)
            .then_some(())
            .ok_or(format!(
                "web {} pinned {}",
                ready_of(&web),
                ready_of(&pinned)
            ))
    })
    .await;
    let web_rb = rbs.get("web-deployment").await.unwrap();
    let before = targets(&web_rb);
    tl.mark(format!(
        "web 6/6 ready, placed {before:?}; pinned 1/1 on member-1"
    ));
    assert!(
        before.iter().any(|(c, r)| c == "member-1" && *r > 0),
        "member-1 holds web replicas: {before:?}"
    );

    // Sample readyReplicas every 100 ms from here on.
    let min_ready = Arc::new(AtomicI64::new(i64::MAX));
    let sampling = Arc::new(AtomicBool::new(true));
    // Also: while a task names member-1, member-1's Work must be there.
    let early_deletions = Arc::new(AtomicI64::new(0));
    let sampler = {
        let (deps, min_ready, sampling) = (deps.clone(), min_ready.clone(), sampling.clone());
        let (rbs, works, early) = (rbs.clone(), works.clone(), early_deletions.clone());
        tokio::spawn(async move {
            let mut samples = 0u64;
            while sampling.load(Ordering::Relaxed) {
                if let Ok(d) = deps.get("web").await {
                    let r = d
                        .status
                        .as_ref()
                        .and_then(|s| s.ready_replicas)
                        .unwrap_or(0);
                    min_ready.fetch_min(i64::from(r), Ordering::Relaxed);
                    samples += 1;
                }
                let standing = rbs.get("web-deployment").await.is_ok_and(|b| {
                    b.spec
                        .graceful_eviction_tasks
                        .iter()
                        .any(|t| t.from_cluster == "member-1")
                });
                if standing
                    && let Ok(l) = works.list(&ListParams::default()).await
                    && !l.items.iter().any(is_web_on_member1)
                {
                    // The task may have ended between the two reads.
                    let still = rbs
                        .get("web-deployment")
                        .await
                        .is_ok_and(|b| !b.spec.graceful_eviction_tasks.is_empty());
                    if still {
                        early.fetch_add(1, Ordering::Relaxed);
                    }
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            samples
        })
    };

    // The user taints member-1 (a user taint: no timeAdded).
    clusters
        .patch(
            "member-1",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"taints": [
                {"key": "maintenance", "effect": "NoExecute"}
            ]}})),
        )
        .await
        .unwrap();
    tl.mark("tainted member-1 maintenance:NoExecute");

    let task_rb = eventually("web gets an eviction task for member-1", 30, || async {
        let b = rbs.get("web-deployment").await.map_err(|e| e.to_string())?;
        b.spec
            .graceful_eviction_tasks
            .iter()
            .any(|t| t.from_cluster == "member-1")
            .then_some(b.clone())
            .ok_or(format!("tasks {:?}", b.spec.graceful_eviction_tasks))
    })
    .await;
    let task = &task_rb.spec.graceful_eviction_tasks[0];
    assert_eq!(task.producer, "TaintManager");
    assert_eq!(task.reason, "TaintUntolerated");
    assert_eq!(task.grace_period_seconds, Some(300), "from the policy");
    assert!(
        !task_rb.spec.clusters.iter().any(|t| t.name == "member-1"),
        "member-1 left spec.clusters in the same write: {:?}",
        targets(&task_rb)
    );
    tl.mark(format!(
        "eviction task for member-1 ({:?}), targets {:?}",
        task.message,
        targets(&task_rb)
    ));
    eventually("the evicted cluster's Work still there", 5, || async {
        let l = works
            .list(&ListParams::default())
            .await
            .map_err(|e| e.to_string())?;
        l.items
            .iter()
            .any(is_web_on_member1)
            .then_some(())
            .ok_or_else(|| "no Work of web in hami-es-member-1".to_string())
    })
    .await;

    let moved = eventually("replicas placed on member-2/3", 30, || async {
        let b = rbs.get("web-deployment").await.map_err(|e| e.to_string())?;
        let sum: i32 = b.spec.clusters.iter().map(|t| t.replicas).sum();
        (sum == 6 && !b.spec.clusters.iter().any(|t| t.name == "member-1"))
            .then(|| targets(&b))
            .ok_or(format!("targets {:?}", targets(&b)))
    })
    .await;
    tl.mark(format!("scheduler placed replacements: {moved:?}"));

    eventually("task gone and member-1's Work deleted", 90, || async {
        let b = rbs.get("web-deployment").await.map_err(|e| e.to_string())?;
        if !b.spec.graceful_eviction_tasks.is_empty() {
            return Err("task still standing".into());
        }
        let l = works
            .list(&ListParams::default())
            .await
            .map_err(|e| e.to_string())?;
        let left = l.items.iter().any(is_web_on_member1);
        (!left)
            .then_some(())
            .ok_or_else(|| "old Work still there".into())
    })
    .await;
    let ended = rbs.get("web-deployment").await.unwrap();
    assert_eq!(
        ready_in_targets(&ended),
        6,
        "the replacements were ready when the task ended: {:?}",
        ready_by_cluster(&ended)
    );
    // The template counted the old copies while they served; without
    // them it settles at 6.
    eventually("web's readyReplicas settles at 6", 10, || async {
        let web = deps.get("web").await.map_err(|e| e.to_string())?;
        (ready_of(&web) == 6)
            .then_some(())
            .ok_or(format!("{} ready", ready_of(&web)))
    })
    .await;
    tl.mark(format!(
        "task finished (replacements ready: {:?}), member-1's Work deleted",
        ready_by_cluster(&ended)
    ));

    // The old copy goes from member-1 itself.
    let member1 = kube::Client::try_from(
        kube::Config::from_custom_kubeconfig(
            kube::config::Kubeconfig::read_from(
                dir.path().join("members").join("member-1.kubeconfig"),
            )
            .unwrap(),
            &Default::default(),
        )
        .await
        .unwrap(),
    )
    .unwrap();
    let member_deps: Api<Deployment> = Api::namespaced(member1, "default");
    eventually("web deleted from member-1", 30, || async {
        match member_deps
            .get_opt("web")
            .await
            .map_err(|e| e.to_string())?
        {
            None => Ok(()),
            Some(_) => Err("still in member-1".into()),
        }
    })
    .await;
    tl.mark("web deleted from member-1; pinned still there");
    assert!(member_deps.get_opt("pinned").await.unwrap().is_some());

    sampling.store(false, Ordering::Relaxed);
    let samples = sampler.await.unwrap();
    let min = min_ready.load(Ordering::Relaxed);
    tl.mark(format!(
        "{samples} samples at 100 ms, lowest readyReplicas {min}"
    ));
    assert!(samples > 10, "enough samples");
    assert!(min > 0, "web's readyReplicas reached 0");
    assert_eq!(
        early_deletions.load(Ordering::Relaxed),
        0,
        "member-1's Work was gone while its eviction task stood"
    );

    // The tolerating policy kept its replicas on member-1, with no task.
    let pinned = rbs.get("pinned-deployment").await.unwrap();
    assert_eq!(targets(&pinned), [("member-1".to_string(), 1)]);
    assert!(pinned.spec.graceful_eviction_tasks.is_empty());
    assert_eq!(ready_of(&deps.get("pinned").await.unwrap()), 1);
    tl.mark("pinned (tolerates maintenance:NoExecute) kept on member-1");

    tl.print();
}
