//! The descheduler moves replicas that stay Pending.

use crate::common::*;

/// Issue 6, the descheduler: `train` (5 GPU replicas, divided by available
/// replicas over member-1 and member-2) runs; then member-1 fills up — its
/// own users start `filler` pods that take every free GPU, and two of
/// `train`'s pods there are restarted, so the replacements the member makes
/// stay Pending behind `filler`'s. Within two descheduler periods
/// (`--descheduler-interval 4s`, pods unschedulable for 1 s) the binding
/// gives member-1 two fewer, the scheduler puts them on member-2 (member-1's
/// estimator reports no room, so not straight back) and they run; none of
/// the ready pods was touched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_descheduler_moves_replicas_that_stay_pending() {
    use k8s_openapi::api::core::v1::Pod;
    use kube::api::DeleteParams;

    let interval = 4;
    let dir = tempfile::tempdir().unwrap();
    let hami = Hami::start_with_args(
        dir.path(),
        "127.0.0.1:0",
        &[
            "--in-memory",
            "--sim-clusters",
            "3",
            "--descheduler-interval",
            &format!("{interval}s"),
            "--descheduler-unschedulable-threshold",
            "1s",
        ],
    );
    let client = hami.client().await;
    let mut tl = Timeline::new("descheduler");
    let clusters: Api<Cluster> = Api::all(client.clone());
    clusters_ready(&clusters, 3).await;
    tl.mark("3 member clusters Ready");

    let pps: Api<PropagationPolicy> = Api::namespaced(client.clone(), "default");
    let deps: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let rbs: Api<ResourceBinding> = Api::namespaced(client.clone(), "default");
    let pp = PostParams::default();
    let placement = json!({
        "clusterAffinity": {"clusterNames": ["member-1", "member-2"]},
        "replicaScheduling": {
            "replicaSchedulingType": "Divided",
            "replicaDivisionPreference": "Weighted",
            "weightPreference": {"dynamicWeight": "AvailableReplicas"}
        }
    });
    pps.create(&pp, &policy("train", placement, None))
        .await
        .unwrap();
    deps.create(&pp, &gpu_deployment("train", 5)).await.unwrap();
    eventually("train 5/5 ready", 60, || async {
        let d = deps.get("train").await.map_err(|e| e.to_string())?;
        (ready_of(&d) == 5)
            .then_some(())
            .ok_or(format!("{} ready", ready_of(&d)))
    })
    .await;
    let placed = targets(&rbs.get("train-deployment").await.unwrap());
    tl.mark(format!("train 5/5 ready, placed {placed:?}"));
    let on = |c: &str, t: &[(String, i32)]| t.iter().find(|(n, _)| n == c).map_or(0, |(_, r)| *r);
    let k1 = on("member-1", &placed);
    assert!(
        k1 >= 3,
        "member-1 (6 free A100s) takes at least 3 of 5, member-2 (4 free H100s) the rest: {placed:?}"
    );
    let moved = 2;

    // member-1's users take every free GPU, and more: `filler` pods that
    // stay Pending queue ahead of anything created later.
    let m1 = member_client(&hami, "member-1").await;
    let m1_pods: Api<Pod> = Api::namespaced(m1.clone(), "default");
    let m1_deps: Api<Deployment> = Api::namespaced(m1.clone(), "default");
    let free = 6 - k1;
    m1_deps
        .create(&pp, &gpu_deployment("filler", free + moved))
        .await
        .unwrap();
    let pods_of = |app: &'static str| {
        let m1_pods = m1_pods.clone();
        async move {
            m1_pods
                .list(&ListParams::default().labels(&format!("app={app}")))
                .await
                .map(|l| l.items)
                .map_err(|e| e.to_string())
        }
    };
    eventually(
        "filler: the free GPUs taken, 2 pods Unschedulable",
        30,
        || async {
            let pods = pods_of("filler").await?;
            let ready = pods.iter().filter(|p| pod_ready(p)).count();
            let pending = pods.iter().filter(|p| pod_unschedulable(p)).count();
            (ready == usize::try_from(free).unwrap() && pending == 2)
                .then_some(())
                .ok_or(format!("{ready} ready, {pending} unschedulable"))
        },
    )
    .await;
    tl.mark(format!("member-1 full: filler {free} running, 2 Pending"));

    // Two of train's pods on member-1 restart (as after a node problem):
    // their GPUs go to filler's older pending pods, the new ones wait.
    let train_pods = pods_of("train").await.unwrap();
    assert_eq!(train_pods.len(), usize::try_from(k1).unwrap());
    for p in train_pods.iter().take(2) {
        m1_pods
            .delete(
                p.metadata.name.as_deref().unwrap(),
                &DeleteParams::default(),
            )
            .await
            .unwrap();
    }
    let kept: Vec<String> = train_pods
        .iter()
        .skip(2)
        .map(|p| p.metadata.uid.clone().unwrap())
        .collect();
    let m2_pods: Api<Pod> = Api::namespaced(member_client(&hami, "member-2").await, "default");
    let m2_before: Vec<String> = m2_pods
        .list(&ListParams::default().labels("app=train"))
        .await
        .unwrap()
        .items
        .iter()
        .filter(|p| pod_ready(p))
        .map(|p| p.metadata.uid.clone().unwrap())
        .collect();
    eventually("train: 2 pods Unschedulable in member-1", 30, || async {
        let pods = pods_of("train").await?;
        let pending = pods.iter().filter(|p| pod_unschedulable(p)).count();
        (pending == 2)
            .then_some(())
            .ok_or(format!("{pending} unschedulable of {}", pods.len()))
    })
    .await;
    let t_pending = std::time::Instant::now();
    tl.mark("2 of train's pods restarted in member-1 and stay Unschedulable (filler's went first)");

    // Two periods after the threshold, the binding gave them up.
    let lowered = eventually(
        "member-1's count lowered by the descheduler",
        1 + 2 * interval + 5,
        || async {
            let b = rbs
                .get("train-deployment")
                .await
                .map_err(|e| e.to_string())?;
            (on("member-1", &targets(&b)) == k1 - moved)
                .then(|| targets(&b))
                .ok_or(format!("targets {:?}", targets(&b)))
        },
    )
    .await;
    let t_lowered = t_pending.elapsed();
    tl.mark(format!(
        "descheduled after {:.1}s: targets {lowered:?}",
        t_lowered.as_secs_f64()
    ));
    let placed_again = eventually("5/5 ready again, 2 more on member-2", 30, || async {
        let b = rbs
            .get("train-deployment")
            .await
            .map_err(|e| e.to_string())?;
        let d = deps.get("train").await.map_err(|e| e.to_string())?;
        let t = targets(&b);
        (on("member-1", &t) == k1 - moved
            && on("member-2", &t) == 5 - k1 + moved
            && ready_of(&d) == 5
            && ready_in_targets(&b) == 5)
            .then_some(t.clone())
            .ok_or(format!("targets {t:?}, ready {:?}", ready_by_cluster(&b)))
    })
    .await;
    let t_running = t_pending.elapsed();
    tl.mark(format!(
        "running elsewhere after {:.1}s: {placed_again:?}, 5/5 ready",
        t_running.as_secs_f64()
    ));
    assert!(
        t_lowered <= Duration::from_secs(1 + 2 * interval + 2),
        "descheduled after {t_lowered:?}: more than two periods past the threshold"
    );

    // Nothing that was ready was touched: member-1 keeps its running train
    // pods (its pending ones went), member-2 its earlier ones.
    let m1_now = pods_of("train").await.unwrap();
    let m1_uids: Vec<String> = m1_now
        .iter()
        .map(|p| p.metadata.uid.clone().unwrap())
        .collect();
    assert_eq!(
        m1_uids.len(),
        kept.len(),
        "member-1 runs only the kept pods"
    );
    for uid in &kept {
        assert!(
            m1_uids.contains(uid),
            "a ready train pod in member-1 was deleted"
        );
    }
    let m2_now: Vec<String> = m2_pods
        .list(&ListParams::default().labels("app=train"))
        .await
        .unwrap()
        .items
        .iter()
        .map(|p| p.metadata.uid.clone().unwrap())
        .collect();
    for uid in &m2_before {
        assert!(
            m2_now.contains(uid),
            "a ready train pod in member-2 was deleted"
        );
    }
    let events = events_about(&client, "default", "ResourceBinding", "train-deployment").await;
    assert!(has_event(&events, "DescheduleBindingSucceed"), "{events:?}");
    let dep_events = events_about(&client, "default", "Deployment", "train").await;
    assert!(
        has_event(&dep_events, "DescheduleBindingSucceed"),
        "{dep_events:?}"
    );
    let descheduled = metric(
        &hami,
        "hami_descheduler_replicas_descheduled_total{reason=\"unschedulable\"}",
    );
    assert_eq!(descheduled, Some(f64::from(moved)));
    assert!(metric(&hami, "hami_descheduler_runs_total").is_some_and(|r| r >= 1.0));
    tl.mark(format!(
        "ready pods untouched; event: {:?}",
        events
            .iter()
            .find(|e| e.1 == "DescheduleBindingSucceed")
            .map(|e| &e.2)
    ));
    tl.print();
}
