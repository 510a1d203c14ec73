//! Works through the Pull-mode agent over real loopback HTTP: a GPU
//! Deployment applied with status coming back, a dropped manifest and a
//! deleted Work cleaned up from the member, a bad manifest reported, a Job's
//! completion reported, and an agent restart that neither duplicates nor
//! drops the workload.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod agent_support;

use agent_support::*;
use std::time::Duration;

use hami_agent::pull::metrics::ApplyResult;
use hami_api::cluster::ESTIMATOR_ENDPOINT_ANNOTATION;
use hami_api::work::Work;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn applies_a_work_reports_its_status_and_cleans_up() {
    let h = Harness::start().await;
    let works: Api<Work> = Api::namespaced(h.control.clone(), NS);
    h.registered().await;
    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap",
                    "metadata": {"name": "settings", "namespace": "team"}, "data": {"a": "1"}});
    works
        .create(
            &PostParams::default(),
            &work("train", NS, vec![gpu_deployment("train", 3), cm]),
        )
        .await
        .unwrap();

    // Applied in the member: 3 pods Running, the ConfigMap (and its
    // namespace) created.
    eventually("3 pods Running in the member", || async {
        (running_pods(&h.member, "train").await.len() == 3).then_some(())
    })
    .await;
    Api::<ConfigMap>::namespaced(h.member.clone(), "team")
        .get("settings")
        .await
        .unwrap();
    let deploy = Api::<Deployment>::namespaced(h.member.clone(), "default")
        .get("train")
        .await
        .unwrap();
    assert_eq!(
        deploy.metadata.annotations.unwrap()["work.hami.io/name"],
        "train"
    );

    // Work status: Applied=True, the Deployment's observed status with
    // readyReplicas == replicas, Healthy; the finalizer is on.
    let w = eventually("Work status shows 3 ready replicas", || async {
        let w = works.get("train").await.unwrap();
        let s = w.status.as_ref()?;
        let ms = s
            .manifest_statuses
            .iter()
            .find(|m| m.identifier.kind == "Deployment")?;
        (ms.status.as_ref()?["readyReplicas"] == 3).then_some(w)
    })
    .await;
    let s = w.status.clone().unwrap();
    let applied = s.conditions.iter().find(|c| c.type_ == "Applied").unwrap();
    assert_eq!(applied.status, "True", "{applied:?}");
    let ms = &s.manifest_statuses;
    assert_eq!(ms.len(), 2);
    let d = ms
        .iter()
        .find(|m| m.identifier.kind == "Deployment")
        .unwrap();
    let st = d.status.as_ref().unwrap();
    assert_eq!(st["replicas"], 3);
    assert_eq!(st["availableReplicas"], 3);
    assert_eq!(st["updatedReplicas"], 3);
    assert_eq!(d.health, Some(hami_api::ResourceHealth::Healthy));
    assert_eq!(d.identifier.namespace, "default");
    assert!(
        w.metadata
            .finalizers
            .unwrap()
            .contains(&"work.hami.io/agent".to_string())
    );

    // The GPU summary and resource summary follow the pods.
    eventually("GPU summary shows 3 x 10000 MiB used", || async {
        let s = h.cluster().await?.status?;
        let free: i64 = s.gpu_summary.iter().map(|g| g.memory_free_mib).sum();
        let total: i64 = s.gpu_summary.iter().map(|g| g.memory_total_mib).sum();
        let cpu = s.resource_summary?.allocated.get("cpu")?.0.clone();
        (total - free == 30000 && cpu == "3").then_some(())
    })
    .await;
    // The estimator still matches the member's own view.
    let endpoint = h.cluster().await.unwrap().metadata.annotations.unwrap()
        [ESTIMATOR_ENDPOINT_ANNOTATION]
        .clone();
    let want = member_snapshot(&h.member)
        .await
        .max_available_replicas(&shape());
    // How much room is left depends on where the binder put the pods (a
    // 10000 MiB slice leaves a T4 too little memory for another).
    assert!(want <= 13, "3 pods take at least 3 of the 16 slots: {want}");
    eventually("estimator sees the 3 pods", || async {
        (ask_estimator(&endpoint).await == i32::try_from(want).unwrap()).then_some(())
    })
    .await;

    // A manifest dropped from the Work is deleted from the member.
    let patch = json!({"spec": {"workload": {"manifests": [gpu_deployment("train", 3)]}}});
    works
        .patch("train", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    eventually("dropped ConfigMap deleted", || async {
        Api::<ConfigMap>::namespaced(h.member.clone(), "team")
            .get_opt("settings")
            .await
            .unwrap()
            .is_none()
            .then_some(())
    })
    .await;
    eventually("status lists one manifest", || async {
        let s = works.get("train").await.unwrap().status?;
        (s.manifest_statuses.len() == 1).then_some(())
    })
    .await;

    // Deleting the Work deletes the Deployment (and its pods), then the Work.
    works
        .delete("train", &DeleteParams::default())
        .await
        .unwrap();
    eventually("Deployment gone from the member", || async {
        Api::<Deployment>::namespaced(h.member.clone(), "default")
            .get_opt("train")
            .await
            .unwrap()
            .is_none()
            .then_some(())
    })
    .await;
    eventually("Work gone (finalizer removed)", || async {
        works
            .get_opt("train")
            .await
            .unwrap()
            .is_none()
            .then_some(())
    })
    .await;
    eventually("pods gone", || async {
        let pods = Api::<Pod>::namespaced(h.member.clone(), "default")
            .list(&ListParams::default().labels("app=train"))
            .await
            .unwrap();
        pods.items.is_empty().then_some(())
    })
    .await;
    let m = h.metrics();
    assert!(m.applies_of(ApplyResult::Applied) >= 2);
    assert!(m.applies_of(ApplyResult::Deleted) >= 2);
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_manifest_is_reported_not_fatal() {
    let h = Harness::start().await;
    let works: Api<Work> = Api::namespaced(h.control.clone(), NS);
    h.registered().await;
    let unknown =
        json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}});
    works
        .create(
            &PostParams::default(),
            &work("mixed", NS, vec![unknown, gpu_deployment("ok", 1)]),
        )
        .await
        .unwrap();
    let cond = eventually("Applied=False naming the bad manifest", || async {
        let s = works.get("mixed").await.unwrap().status?;
        s.conditions
            .into_iter()
            .find(|c| c.type_ == "Applied" && c.status == "False")
    })
    .await;
    assert!(
        cond.message.contains("manifest 0") && cond.message.contains("Widget"),
        "{}",
        cond.message
    );
    // The good manifest is applied anyway.
    eventually("good manifest runs", || async {
        (running_pods(&h.member, "ok").await.len() == 1).then_some(())
    })
    .await;
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarting_the_agent_neither_duplicates_nor_drops_the_workload() {
    let mut h = Harness::start().await;
    let works: Api<Work> = Api::namespaced(h.control.clone(), NS);
    h.registered().await;
    works
        .create(
            &PostParams::default(),
            &work("serve", NS, vec![gpu_deployment("serve", 2)]),
        )
        .await
        .unwrap();
    eventually("Work reports 2 ready", || async {
        let s = works.get("serve").await.unwrap().status?;
        (s.manifest_statuses.first()?.status.as_ref()?["readyReplicas"] == 2).then_some(())
    })
    .await;
    let deployments: Api<Deployment> = Api::namespaced(h.member.clone(), "default");
    let uid = deployments.get("serve").await.unwrap().metadata.uid;
    let pods_before: Vec<String> = running_pods(&h.member, "serve")
        .await
        .into_iter()
        .map(|p| p.metadata.name.unwrap())
        .collect();
    let status_before = works.get("serve").await.unwrap().status;

    h.stop_agent().await;
    h.start_agent();
    eventually("new agent ready again", || async {
        let (status, _) = h.ready().await?;
        (status == "True").then_some(())
    })
    .await;
    // Let the new agent relist and re-apply (idempotent server-side apply).
    eventually("new agent re-applied", || async {
        (h.metrics().applies_of(ApplyResult::Applied) >= 1).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(800)).await;

    let d = deployments.get("serve").await.unwrap();
    assert_eq!(d.metadata.uid, uid, "same Deployment, not recreated");
    let list = deployments.list(&ListParams::default()).await.unwrap();
    assert_eq!(list.items.len(), 1, "no duplicate Deployment");
    let mut pods_after: Vec<String> = running_pods(&h.member, "serve")
        .await
        .into_iter()
        .map(|p| p.metadata.name.unwrap())
        .collect();
    pods_after.sort();
    let mut pods_before = pods_before;
    pods_before.sort();
    assert_eq!(pods_after, pods_before, "same pods, none added or dropped");
    let after = works.get("serve").await.unwrap();
    assert_eq!(after.status, status_before, "Work status unchanged");
    assert_eq!(
        h.metrics().status_writes_of("work"),
        0,
        "the restarted agent found Work status current and did not rewrite it"
    );
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_work_reports_completion() {
    let h = Harness::start().await;
    let works: Api<Work> = Api::namespaced(h.control.clone(), NS);
    h.registered().await;
    let job = json!({
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": "once", "namespace": "default"},
        "spec": {"completions": 1, "template": {"spec": {
            "restartPolicy": "Never",
            "containers": [{"name": "main", "image": "batch:1",
                            "resources": {"limits": {"nvidia.com/gpu": "1"}}}]}}}
    });
    works
        .create(&PostParams::default(), &work("once", NS, vec![job]))
        .await
        .unwrap();
    let st = eventually("Work shows the Job succeeded", || async {
        let s = works.get("once").await.unwrap().status?;
        let st = s.manifest_statuses.first()?.status.clone()?;
        (st["succeeded"] == 1).then_some(st)
    })
    .await;
    let complete = st["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| c["type"] == "Complete" && c["status"] == "True");
    assert!(complete, "Job conditions are reflected: {st}");
    h.shutdown().await;
}

/// The agent deletes from the member only what a Work being deleted (its
/// deletionTimestamp seen, the finalizer holding it) applied: a Work that
/// vanished while the agent was away (its finalizer removed by hand, so no
/// deletion was ever observed) is missing from the relisted cache and
/// deletes nothing; kube-apiserver behaves the same for a finalizer
/// stripped with `kubectl patch --type=merge -p '{"metadata":{"finalizers":null}}'`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_work_missing_from_the_relisted_cache_deletes_nothing_from_the_member() {
    let mut h = Harness::start().await;
    let works: Api<Work> = Api::namespaced(h.control.clone(), NS);
    h.registered().await;
    for name in ["keep", "orphan", "bye"] {
        works
            .create(
                &PostParams::default(),
                &work(name, NS, vec![gpu_deployment(name, 1)]),
            )
            .await
            .unwrap();
    }
    let deployments: Api<Deployment> = Api::namespaced(h.member.clone(), "default");
    eventually(
        "three Deployments applied with the finalizer on",
        || async {
            for name in ["keep", "orphan", "bye"] {
                deployments.get_opt(name).await.unwrap()?;
                let w = works.get(name).await.unwrap();
                w.metadata.finalizers.filter(|f| !f.is_empty())?;
            }
            Some(())
        },
    )
    .await;

    h.stop_agent().await;
    // `orphan` vanishes without a deletion the agent could see.
    works
        .patch(
            "orphan",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"finalizers": null}})),
        )
        .await
        .unwrap();
    works
        .delete("orphan", &DeleteParams::default())
        .await
        .unwrap();
    assert!(works.get_opt("orphan").await.unwrap().is_none());
    // `bye` is deleted the normal way: its finalizer holds it.
    works.delete("bye", &DeleteParams::default()).await.unwrap();

    h.start_agent();
    eventually("bye finalized and its Deployment deleted", || async {
        let gone = works.get_opt("bye").await.unwrap().is_none();
        let deleted = deployments.get_opt("bye").await.unwrap().is_none();
        (gone && deleted).then_some(())
    })
    .await;
    // Give the agent time to act on anything else it might (it re-applies
    // `keep` after the restart).
    eventually("keep re-applied", || async {
        (h.metrics().applies_of(ApplyResult::Applied) >= 1).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(
        deployments.get_opt("orphan").await.unwrap().is_some(),
        "deleted from the member because its Work was missing from the cache"
    );
    assert!(deployments.get_opt("keep").await.unwrap().is_some());
    assert_eq!(
        h.metrics().applies_of(ApplyResult::Deleted),
        1,
        "only bye's"
    );
    h.shutdown().await;
}
