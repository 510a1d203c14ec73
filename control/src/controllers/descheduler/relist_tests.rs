//! The descheduler's index (estimator endpoints, candidate bindings) after
//! relists mid-burst equals a fresh list.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use prometheus_client::registry::Registry;

use super::*;
use crate::controllers::testing::{self, FeedCase};

async fn shared() -> Shared {
    let objects = testing::objects().await;
    let (rb, crb) = objects.binding_kinds().unwrap();
    let cluster = objects
        .kind(&format!("{CLUSTER_GROUP}/{CLUSTER_VERSION}"), "Cluster")
        .unwrap();
    let recorder = testing::recorder(&objects);
    let options = DeschedulerOptions::default();
    Shared {
        objects,
        rb,
        crb,
        cluster,
        index: RwLock::default(),
        estimators: estimate::Unschedulable::new(options.timeout),
        options,
        metrics: DeschedulerMetrics::register(&mut Registry::default()),
        events: recorder,
        tracker: Tracker::standalone("descheduler"),
    }
}

#[tokio::test]
async fn a_relist_mid_burst_leaves_the_index_equal_to_a_fresh_list() {
    testing::check_relists(
        shared,
        |s| {
            vec![
                FeedCase {
                    pool: testing::cluster_pool(&s.cluster),
                    handle: Shared::on_cluster,
                },
                FeedCase {
                    pool: testing::binding_pool(&s.rb),
                    handle: Shared::on_rb,
                },
            ]
        },
        |s| s.index.read().clone(),
    )
    .await;
}
