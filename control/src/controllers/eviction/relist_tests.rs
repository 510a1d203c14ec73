//! The failover controller's index (NoExecute taints, bindings' targets
//! and tasks) after relists mid-burst equals a fresh list.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use prometheus_client::registry::Registry;

use super::*;
use crate::controllers::testing::{self, FeedCase};

async fn shared() -> Shared {
    let objects = testing::objects().await;
    let (rb, crb) = objects.binding_kinds().unwrap();
    let policy_gv = format!("{POLICY_GROUP}/{POLICY_VERSION}");
    let kinds = Kinds {
        rb,
        crb,
        cluster: objects
            .kind(&format!("{CLUSTER_GROUP}/{CLUSTER_VERSION}"), "Cluster")
            .unwrap(),
        pp: objects.kind(&policy_gv, "PropagationPolicy").unwrap(),
        cpp: objects
            .kind(&policy_gv, "ClusterPropagationPolicy")
            .unwrap(),
    };
    let recorder = testing::recorder(&objects);
    Shared {
        objects,
        kinds,
        index: RwLock::new(Index::default()),
        queue: WorkQueue::new(),
        bucket: Mutex::new(TokenBucket::new(10.0, 10)),
        metrics: EvictionMetrics::register(&mut Registry::default()),
        events: recorder,
        tracker: Tracker::standalone("failover"),
    }
}

#[tokio::test]
async fn a_relist_mid_burst_leaves_the_index_equal_to_a_fresh_list() {
    testing::check_relists(
        shared,
        |s| {
            vec![
                FeedCase {
                    pool: testing::cluster_pool(&s.kinds.cluster),
                    handle: Shared::on_cluster,
                },
                FeedCase {
                    pool: testing::binding_pool(&s.kinds.rb),
                    handle: Shared::on_rb,
                },
            ]
        },
        |s| s.index.read().clone(),
    )
    .await;
}
