//! The scheduler's indexes (clusters with their estimator endpoints, the
//! unschedulable bindings it retries) after relists mid-burst equal a fresh
//! list.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use prometheus_client::registry::Registry;
use serde_json::json;

use super::*;
use crate::controllers::testing::{self, FeedCase};

async fn shared() -> Shared {
    let objects = testing::objects().await;
    let (rb, crb) = objects.binding_kinds().unwrap();
    let metrics = SchedulerMetrics::register(&mut Registry::default());
    Shared {
        objects,
        rb,
        crb,
        clusters: RwLock::default(),
        unschedulable: Mutex::default(),
        duplicated: Mutex::default(),
        widen: Mutex::default(),
        reservations: Mutex::default(),
        queue: WorkQueue::new(),
        estimators: Estimators::new(SchedulerConfig::default().estimates, metrics.clone()),
        metrics,
        quota: QuotaGate::new(),
        events: None,
        tracker: Tracker::standalone("scheduler"),
    }
}

fn read(s: &Shared) -> String {
    format!(
        "{:?}",
        (
            &s.clusters.read().0,
            &*s.unschedulable.lock(),
            &*s.duplicated.lock()
        )
    )
}

#[tokio::test]
async fn a_relist_mid_burst_leaves_the_indexes_equal_to_a_fresh_list() {
    testing::check_relists(
        shared,
        |s| {
            let cluster = s
                .objects
                .kind(&format!("{CLUSTER_GROUP}/{CLUSTER_VERSION}"), "Cluster")
                .unwrap();
            let mut bindings = testing::binding_pool(&s.rb);
            // A binding the scheduler could not place.
            let mut refused = testing::scheduled_binding("gpu", &[], 0, None);
            refused["status"]["conditions"][0]["status"] = json!("False");
            refused["status"]["conditions"][0]["reason"] = json!("NoClusterFit");
            bindings.push((
                Objects::key(&s.rb, Some("default"), "gpu-deployment"),
                vec![
                    refused,
                    testing::scheduled_binding("gpu", &[("a", 1)], 1, None),
                ],
            ));
            vec![
                FeedCase {
                    pool: testing::cluster_pool(&cluster),
                    handle: Shared::on_cluster,
                },
                FeedCase {
                    pool: bindings,
                    handle: Shared::on_rb,
                },
            ]
        },
        read,
    )
    .await;
}
