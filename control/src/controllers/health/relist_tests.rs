//! Cluster health against a stale or half-fed index: relists mid-burst
//! leave the index equal to a fresh list, and a Lease the index has not
//! seen renewed does not taint a cluster whose Lease in the store is fresh.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use k8s_openapi::jiff::SignedDuration;
use prometheus_client::registry::Registry;
use serde_json::{Value, json};

use super::*;
use crate::controllers::testing::{self, FeedCase, Model};

async fn shared(started: Timestamp) -> Shared {
    let objects = testing::objects().await;
    let recorder = testing::recorder(&objects);
    Shared::new(
        objects,
        HealthMetrics::register(&mut Registry::default()),
        HealthOptions {
            grace: Duration::from_secs(5),
            ..HealthOptions::default()
        },
        recorder,
        Tracker::standalone("health"),
        started,
    )
    .unwrap()
}

fn lease(cluster: &str, renewed: Timestamp) -> Value {
    json!({
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {"name": cluster, "namespace": format!("hami-es-{cluster}")},
        "spec": {
            "holderIdentity": format!("agent-{cluster}"),
            "leaseDurationSeconds": 10,
            "renewTime": renewed.strftime("%Y-%m-%dT%H:%M:%S%.6fZ").to_string(),
        },
    })
}

fn ready(cluster: &str, status: &str) -> Value {
    let mut c = testing::cluster(cluster, json!({}));
    c["status"] = json!({"conditions": [{
        "type": "Ready", "status": status, "reason": "AgentReported",
        "message": "", "lastTransitionTime": "2026-01-01T00:00:00Z",
    }]});
    c
}

#[tokio::test]
async fn a_relist_mid_burst_leaves_the_index_equal_to_a_fresh_list() {
    let now = Timestamp::now();
    testing::check_relists(
        || shared(now),
        |s| {
            let clusters = ["a", "b", "c"]
                .iter()
                .map(|c| {
                    (
                        Objects::key(&s.cluster, None, c),
                        vec![
                            ready(c, "True"),
                            ready(c, "False"),
                            testing::cluster(c, json!({})),
                        ],
                    )
                })
                .collect();
            let leases = ["a", "b", "c"]
                .iter()
                .map(|c| {
                    (
                        Objects::key(&s.lease, Some(&format!("hami-es-{c}")), c),
                        vec![lease(c, now), lease(c, now - SignedDuration::from_secs(60))],
                    )
                })
                .collect();
            vec![
                FeedCase {
                    pool: clusters,
                    handle: Shared::on_cluster_change,
                },
                FeedCase {
                    pool: leases,
                    handle: Shared::on_lease_change,
                },
            ]
        },
        |s| format!("{:?}", *s.index.read()),
    )
    .await;
}

#[tokio::test]
async fn a_lease_the_index_has_not_seen_renewed_does_not_taint_a_live_cluster() {
    let now = Timestamp::now();
    let s = shared(now - SignedDuration::from_secs(3600)).await;
    testing::create(&s.objects, testing::namespace("hami-es-a", json!({}))).await;
    testing::create(&s.objects, ready("a", "True")).await;
    testing::create(&s.objects, lease("a", now)).await;
    // The index is behind: it has the Cluster, and the Lease as it was an
    // hour ago (its renewals not seen yet).
    let stale = lease("a", now - SignedDuration::from_secs(3600));
    let key = Objects::key(&s.lease, Some("hami-es-a"), "a");
    let mut model = Model::default();
    s.on_lease_change(model.put(&key, &stale));
    let ckey = Objects::key(&s.cluster, None, "a");
    s.on_cluster_change(model.put(&ckey, &ready("a", "True")));
    s.pass(now).await;
    let stored = s.objects.get(&s.cluster, None, "a").unwrap().unwrap();
    assert!(
        stored
            .object
            .pointer("/spec/taints")
            .is_none_or(|t| t == &json!([])),
        "tainted on a stale Lease: {}",
        stored.object["spec"]
    );
    assert_eq!(s.metrics.write_errors.get(), 0);

    // The Lease in the store lapses too: now the verdict stands.
    let kind = s.lease.clone();
    let current = s
        .objects
        .get(&kind, Some("hami-es-a"), "a")
        .unwrap()
        .unwrap();
    s.objects
        .write(&kind, Some("hami-es-a"), "a", &current, stale, |_| {})
        .await
        .unwrap();
    s.pass(now).await;
    let stored = s.objects.get(&s.cluster, None, "a").unwrap().unwrap();
    let taints = stored
        .object
        .pointer("/spec/taints")
        .cloned()
        .unwrap_or_default();
    assert!(
        taints.to_string().contains("cluster.hami.io/unreachable"),
        "{taints}"
    );
}
