//! Replacements that never become ready: the grace period decides.

use crate::common::*;

/// Issue 6, "replacements that never become ready": `stuck` runs one
/// replica on member-1 and one on member-2, where an OverridePolicy gives
/// its pods a node selector no node has (they stay Pending). member-1 is
/// tainted NoExecute: the replacements go to member-2 and never become
/// ready, so the old copy on member-1 serves (and counts) until the 8 s
/// grace period, then goes; the binding's GracefulEviction condition and a
/// Warning Event say why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replacements_that_never_become_ready_wait_for_the_grace_period() {
    use hami_api::override_policy::OverridePolicy;

    let dir = tempfile::tempdir().unwrap();
    let hami = Hami::start_with_args(
        dir.path(),
        "127.0.0.1:0",
        &["--in-memory", "--sim-clusters", "3"],
    );
    let client = hami.client().await;
    let mut tl = Timeline::new("never-ready");
    let clusters: Api<Cluster> = Api::all(client.clone());
    clusters_ready(&clusters, 3).await;
    tl.mark("3 member clusters Ready");

    let pps: Api<PropagationPolicy> = Api::namespaced(client.clone(), "default");
    let ops: Api<OverridePolicy> = Api::namespaced(client.clone(), "default");
    let deps: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let rbs: Api<ResourceBinding> = Api::namespaced(client.clone(), "default");
    let works: Api<Work> = Api::all(client.clone());
    let pp = PostParams::default();
    let grace = 8;
    let failover = json!({"application": {"purgeMode": "Gracefully", "gracePeriodSeconds": grace}});
    pps.create(
        &pp,
        &policy(
            "stuck",
            equal_weights(&["member-1", "member-2"]),
            Some(failover),
        ),
    )
    .await
    .unwrap();
    let op: OverridePolicy = serde_json::from_value(json!({
        "apiVersion": "policy.hami.io/v1alpha1", "kind": "OverridePolicy",
        "metadata": {"name": "stuck-pending", "namespace": "default"},
        "spec": {
            "resourceSelectors": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": "stuck"}],
            "overrideRules": [{
                "targetCluster": {"clusterNames": ["member-2"]},
                "overriders": {"plaintext": [{
                    "path": "/spec/template/spec/nodeSelector",
                    "operator": "add",
                    "value": {"sim.hami.io/no-such-node": "true"}
                }]}
            }]
        }
    }))
    .unwrap();
    ops.create(&pp, &op).await.unwrap();
    deps.create(&pp, &deployment("stuck", 2)).await.unwrap();
    eventually(
        "stuck: member-1's replica ready, member-2's pending",
        60,
        || async {
            let b = rbs
                .get("stuck-deployment")
                .await
                .map_err(|e| e.to_string())?;
            let per = ready_by_cluster(&b);
            let d = deps.get("stuck").await.map_err(|e| e.to_string())?;
            (targets(&b) == [("member-1".to_string(), 1), ("member-2".to_string(), 1)]
                && per.contains(&("member-1".to_string(), 1))
                && per.iter().any(|(c, _)| c == "member-2")
                && ready_of(&d) == 1)
                .then_some(())
                .ok_or(format!("targets {:?} ready {per:?}", targets(&b)))
        },
    )
    .await;
    tl.mark("stuck 1/2 ready: member-1's replica runs, member-2's stays Pending (override)");

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
    let t_taint = std::time::Instant::now();
    tl.mark("tainted member-1 maintenance:NoExecute");
    eventually(
        "a task for member-1, 2 replicas on member-2",
        30,
        || async {
            let b = rbs
                .get("stuck-deployment")
                .await
                .map_err(|e| e.to_string())?;
            (b.spec
                .graceful_eviction_tasks
                .iter()
                .any(|t| t.from_cluster == "member-1")
                && targets(&b) == [("member-2".to_string(), 2)])
            .then_some(())
            .ok_or(format!("targets {:?}", targets(&b)))
        },
    )
    .await;
    let t_task = t_taint.elapsed();
    tl.mark("eviction task for member-1; both replicas now assigned to member-2 (Pending there)");

    // While the task stands, member-1's Work stays and its ready copy counts.
    let mut min_ready = i32::MAX;
    let mut samples = 0;
    let ended = loop {
        let b = rbs.get("stuck-deployment").await.unwrap();
        if b.spec.graceful_eviction_tasks.is_empty() {
            break b;
        }
        let l = works.list(&ListParams::default()).await.unwrap();
        assert_eq!(
            work_in(&l.items, "member-1", "stuck-deployment"),
            Some(false),
            "member-1's Work went while the task stood ({:.1}s after the taint)",
            t_taint.elapsed().as_secs_f64()
        );
        min_ready = min_ready.min(ready_of(&deps.get("stuck").await.unwrap()));
        samples += 1;
        assert!(
            t_taint.elapsed() < Duration::from_secs(grace + 30),
            "the task outlived its grace period"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let lasted = t_taint.elapsed();
    tl.mark(format!(
        "task ended {:.1}s after the taint ({samples} samples while it stood, lowest readyReplicas {min_ready})",
        lasted.as_secs_f64()
    ));
    assert!(samples > 10);
    assert_eq!(min_ready, 1, "the old copy counted while it served");
    // The task was created within t_task of the taint; its grace period
    // counts from its creationTimestamp (whole seconds).
    assert!(
        lasted + Duration::from_secs(1) >= Duration::from_secs(grace),
        "ended after {lasted:?}, before the {grace} s grace period"
    );
    assert!(t_task < Duration::from_secs(grace));
    let c = condition(&ended, "GracefulEviction").expect("the binding says why");
    assert_eq!(
        (c.status.as_str(), c.reason.as_str()),
        ("False", "GracePeriodElapsed")
    );
    assert!(
        c.message.contains("member-1") && c.message.contains("0 of 2 replicas ready"),
        "{}",
        c.message
    );
    tl.mark(format!(
        "binding condition GracefulEviction=False: {}",
        c.message
    ));
    let events = events_about(&client, "default", "ResourceBinding", "stuck-deployment").await;
    assert!(
        events
            .iter()
            .any(|(t, r, _)| t == "Warning" && r == "GracePeriodElapsed"),
        "{events:?}"
    );
    let member_deps: Api<Deployment> =
        Api::namespaced(member_client(&hami, "member-1").await, "default");
    eventually("member-1's Work and copy gone", 30, || async {
        let l = works
            .list(&ListParams::default())
            .await
            .map_err(|e| e.to_string())?;
        if work_in(&l.items, "member-1", "stuck-deployment").is_some() {
            return Err("Work still there".into());
        }
        match member_deps
            .get_opt("stuck")
            .await
            .map_err(|e| e.to_string())?
        {
            None => Ok(()),
            Some(_) => Err("copy still in member-1".into()),
        }
    })
    .await;
    tl.mark("member-1's Work and copy deleted");
    tl.print();
}
