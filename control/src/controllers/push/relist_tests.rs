//! The Push controller's index (the Push fields of each Push Cluster) after
//! relists mid-burst equals a fresh list.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;

use prometheus_client::registry::Registry;
use serde_json::json;

use super::*;
use crate::controllers::testing::{self, FeedCase};

async fn shared() -> Shared {
    let objects = testing::objects().await;
    let cluster = objects
        .kind(&format!("{CLUSTER_GROUP}/{CLUSTER_VERSION}"), "Cluster")
        .unwrap();
    let secret = objects.kind("v1", "Secret").unwrap();
    // Never called: the test feeds the index and reconciles nothing.
    let control =
        kube::Client::try_from(kube::Config::new("http://127.0.0.1:9".parse().unwrap())).unwrap();
    Shared {
        objects,
        cluster,
        secret,
        specs: Mutex::default(),
        queue: WorkQueue::new(),
        metrics: PushMetrics::register(&mut Registry::default()),
        options: PushOptions {
            control,
            estimator_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        },
        tracker: Tracker::standalone("push"),
    }
}

fn push_cluster(name: &str, secret: &str, endpoint: &str) -> Value {
    let mut c = testing::cluster(name, json!({}));
    c["spec"] = json!({
        "syncMode": "Push",
        "apiEndpoint": endpoint,
        "secretRef": {"namespace": "hami-system", "name": secret},
    });
    c
}

#[tokio::test]
async fn a_relist_mid_burst_leaves_the_index_equal_to_a_fresh_list() {
    testing::check_relists(
        shared,
        |s| {
            let pool = ["a", "b", "c"]
                .iter()
                .map(|c| {
                    (
                        Objects::key(&s.cluster, None, c),
                        vec![
                            push_cluster(c, &format!("{c}-kubeconfig"), "https://10.0.0.1:6443"),
                            push_cluster(c, "shared", "https://10.0.0.2:6443"),
                            testing::cluster(c, json!({})),
                        ],
                    )
                })
                .collect();
            vec![FeedCase {
                pool,
                handle: Shared::on_cluster,
            }]
        },
        |s| s.specs.lock().clone(),
    )
    .await;
}
