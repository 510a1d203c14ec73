//! Status aggregation's index after relists mid-burst equals a fresh list.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use prometheus_client::registry::Registry;

use super::*;
use crate::controllers::testing::{self, FeedCase};

async fn shared() -> Shared {
    let objects = testing::objects().await;
    let (rb, crb) = objects.binding_kinds().unwrap();
    Shared {
        objects,
        rb,
        crb,
        index: RwLock::default(),
        queue: WorkQueue::new(),
        metrics: StatusMetrics::register(&mut Registry::default()),
        tracker: Tracker::standalone("status"),
    }
}

#[tokio::test]
async fn a_relist_mid_burst_leaves_the_index_equal_to_a_fresh_list() {
    testing::check_relists(
        shared,
        |s| {
            let work = s.objects.kind("work.hami.io/v1alpha2", "Work").unwrap();
            let works = ["a", "b", "c"]
                .iter()
                .flat_map(|c| ["web-deployment", "api-deployment"].map(|b| (*c, b)))
                .map(|(c, b)| {
                    (
                        Objects::key(&work, Some(&format!("hami-es-{c}")), &format!("{b}-w")),
                        vec![
                            testing::reported_work(c, b, 0),
                            testing::reported_work(c, b, 2),
                            testing::work(c, "default", b, "v2"),
                        ],
                    )
                })
                .collect();
            vec![
                FeedCase {
                    pool: works,
                    handle: Shared::on_work,
                },
                FeedCase {
                    pool: testing::binding_pool(&s.rb),
                    handle: Shared::on_binding,
                },
            ]
        },
        |s| s.index.read().clone(),
    )
    .await;
}
