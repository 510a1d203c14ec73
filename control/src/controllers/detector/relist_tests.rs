//! The detector against a stale or half-fed policy index: relists
//! mid-burst leave it equal to a fresh list, and a binding the index says
//! no policy claims is kept while a policy in the store claims it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use prometheus_client::registry::Registry;
use serde_json::json;

use super::*;
use crate::controllers::testing::{self, FeedCase};

async fn shared() -> Shared {
    let objects = testing::objects().await;
    let metrics = DetectorMetrics::register(&mut Registry::default());
    Shared::new(objects, metrics, Tracker::standalone("detector")).unwrap()
}

fn policy(name: &str, kind: &str, priority: i64) -> Value {
    json!({
        "apiVersion": "policy.hami.io/v1alpha1",
        "kind": "PropagationPolicy",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "priority": priority,
            "resourceSelectors": [{"apiVersion": "apps/v1", "kind": kind}],
            "placement": {"replicaScheduling": {"replicaSchedulingType": "Duplicated"}},
        },
    })
}

#[tokio::test]
async fn a_relist_mid_burst_leaves_the_policy_index_equal_to_a_fresh_list() {
    testing::check_relists(
        shared,
        |s| {
            let pp = s
                .objects
                .kind("policy.hami.io/v1alpha1", "PropagationPolicy")
                .unwrap();
            let deploy = s.objects.kind("apps/v1", "Deployment").unwrap();
            let mut pool: Vec<(String, Vec<Value>)> = ["p1", "p2", "p3"]
                .iter()
                .map(|p| {
                    (
                        Objects::key(&pp, Some("default"), p),
                        vec![policy(p, "Deployment", 1), policy(p, "StatefulSet", 2)],
                    )
                })
                .collect();
            pool.push((
                Objects::key(&deploy, Some("default"), "web"),
                vec![testing::deployment("default", "web", 2)],
            ));
            vec![FeedCase {
                pool,
                handle: Shared::on_change,
            }]
        },
        |s| s.policies.read().clone(),
    )
    .await;
}

#[tokio::test]
async fn a_binding_the_index_calls_unclaimed_stays_while_a_stored_policy_claims_it() {
    let s = shared().await;
    testing::create(&s.objects, testing::deployment("default", "web", 2)).await;
    testing::create(&s.objects, policy("pp", "Deployment", 0)).await;
    let mut b = testing::binding("default", "web", &[("a", 2)]);
    b["metadata"]["labels"] = json!({LABEL_PP_NAMESPACE: "default", LABEL_PP_NAME: "pp"});
    testing::create(&s.objects, b).await;
    let deploy = s.objects.kind("apps/v1", "Deployment").unwrap();
    let key = Objects::key(&deploy, Some("default"), "web");
    // The policy index is empty (not fed, as after a relist that has not
    // reached the policies yet): the index says nothing claims `web`.
    assert_eq!(s.reconcile_template(&key).await.unwrap(), "unchanged");
    assert_eq!(s.metrics.deletes_refused.get(), 1);
    assert!(
        s.objects
            .get(&s.rb, Some("default"), "web-deployment")
            .unwrap()
            .is_some()
    );

    // With the policy really gone, the binding goes.
    let pp = s
        .objects
        .kind("policy.hami.io/v1alpha1", "PropagationPolicy")
        .unwrap();
    s.objects.delete(&pp, Some("default"), "pp").await.unwrap();
    assert_eq!(s.reconcile_template(&key).await.unwrap(), "deleted");
    assert!(
        s.objects
            .get(&s.rb, Some("default"), "web-deployment")
            .unwrap()
            .is_none()
    );
}
