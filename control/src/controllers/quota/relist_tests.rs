//! The quota controller against a stale or half-fed index: relists
//! mid-burst leave its maps equal to a fresh list (the accountant's book is
//! checked on its own in hami-quota), and a member ResourceQuota Work is
//! not deleted while the store still has its Cluster and the quota still
//! assigns it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use prometheus_client::registry::Registry;
use serde_json::json;

use super::*;
use crate::controllers::testing::{self, FeedCase};

async fn shared() -> Shared {
    let objects = testing::objects().await;
    let metrics = QuotaMetrics::register(&mut Registry::default());
    Shared::new(objects, metrics, Tracker::standalone("quota")).unwrap()
}

fn quota(cpu: &str, assigned: &[&str]) -> Value {
    json!({
        "apiVersion": "policy.hami.io/v1alpha1",
        "kind": "FederatedResourceQuota",
        "metadata": {"name": "q", "namespace": "default"},
        "spec": {
            "overall": {"cpu": cpu},
            "staticAssignments": assigned
                .iter()
                .map(|c| json!({"clusterName": c, "hard": {"cpu": "2"}}))
                .collect::<Vec<_>>(),
        },
    })
}

fn quota_work(cluster: &str, cpu_used: &str) -> Value {
    let q = QuotaRef {
        namespace: "default".into(),
        name: "q".into(),
    };
    let mut w = json!({
        "apiVersion": "work.hami.io/v1alpha2",
        "kind": "Work",
        "metadata": {
            "name": works::work_name(&q),
            "namespace": format!("hami-es-{cluster}"),
            "labels": {works::QUOTA_LABEL: "true"},
            "annotations": {works::QUOTA_ANNOTATION: "default/q"},
        },
        "spec": {"workload": {"manifests": [{"apiVersion": "v1", "kind": "ResourceQuota", "metadata": {"name": "q", "namespace": "default"}, "spec": {"hard": {"cpu": "2"}}}]}},
    });
    w["status"] = json!({"manifestStatuses": [{
        "identifier": {"ordinal": 0, "group": "", "version": "v1", "kind": "ResourceQuota", "namespace": "default", "name": "q"},
        "status": {"used": {"cpu": cpu_used}},
    }]});
    w
}

/// The maps of the index a relist must rebuild.
fn maps(s: &Shared) -> String {
    let i = s.index.read();
    format!("{:?}", (&i.quotas, &i.clusters, &i.works))
}

#[tokio::test]
async fn a_relist_mid_burst_leaves_the_index_equal_to_a_fresh_list() {
    testing::check_relists(
        shared,
        |s| {
            let k = &s.kinds;
            let clusters = ["a", "b"]
                .iter()
                .map(|c| {
                    let mut with_gpu = testing::cluster(c, json!({}));
                    with_gpu["status"] = json!({"gpuSummary": [{"model": "A100", "count": 8, "memoryMiB": 40960, "memoryFreeMiB": 40960}]});
                    (
                        Objects::key(&k.cluster, None, c),
                        vec![testing::cluster(c, json!({})), with_gpu],
                    )
                })
                .collect();
            let quotas = vec![(
                Objects::key(&k.quota, Some("default"), "q"),
                vec![quota("8", &["a"]), quota("4", &["a", "b"])],
            )];
            let works = ["a", "b"]
                .iter()
                .map(|c| {
                    let w = quota_work(c, "1");
                    let name = w["metadata"]["name"].as_str().unwrap().to_string();
                    (
                        Objects::key(&k.work, Some(&format!("hami-es-{c}")), &name),
                        vec![w, quota_work(c, "2")],
                    )
                })
                .collect();
            vec![
                FeedCase {
                    pool: clusters,
                    handle: Shared::on_cluster,
                },
                FeedCase {
                    pool: quotas,
                    handle: Shared::on_quota,
                },
                FeedCase {
                    pool: works,
                    handle: Shared::on_work,
                },
            ]
        },
        maps,
    )
    .await;
}

#[tokio::test]
async fn a_member_quota_work_stays_while_the_store_has_its_assigned_cluster() {
    let s = shared().await;
    testing::create(&s.objects, testing::namespace("hami-es-a", json!({}))).await;
    testing::create(&s.objects, testing::cluster("a", json!({}))).await;
    testing::create(&s.objects, quota("8", &["a"])).await;
    let mut w = quota_work("a", "1");
    w.as_object_mut().unwrap().remove("status");
    let created = testing::create(&s.objects, w).await;
    let name = created["metadata"]["name"].as_str().unwrap().to_string();
    // The index has the quota and its Work, not the Cluster (behind).
    let store = s.objects.store().clone();
    let qkey = Objects::key(&s.kinds.quota, Some("default"), "q");
    let wkey = Objects::key(&s.kinds.work, Some("hami-es-a"), &name);
    s.on_quota(Change::Apply(store.get(&qkey).unwrap().unwrap()));
    s.on_work(Change::Apply(store.get(&wkey).unwrap().unwrap()));
    let q = QuotaRef {
        namespace: "default".into(),
        name: "q".into(),
    };
    s.reconcile_quota(&q).await.unwrap();
    assert_eq!(s.metrics.deletes_refused.get(), 1);
    assert!(
        store.get(&wkey).unwrap().is_some(),
        "the Work was deleted on a stale index"
    );

    // The Cluster is really gone: the Work goes.
    s.objects.delete(&s.kinds.cluster, None, "a").await.unwrap();
    s.reconcile_quota(&q).await.unwrap();
    assert!(store.get(&wkey).unwrap().is_none());
}
