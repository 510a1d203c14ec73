//! The binding controller against a stale or half-fed index: a relist in
//! the middle of a burst leaves its index equal to a fresh list, and every
//! delete the index asks for is refuted by the store when the store
//! disagrees.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use prometheus_client::registry::Registry;
use serde_json::json;

use super::*;
use crate::controllers::testing::{self, FeedCase};

async fn shared() -> Shared {
    let objects = testing::objects().await;
    let metrics = BindingMetrics::register(&mut Registry::default());
    Shared::new(objects, metrics, Tracker::standalone("binding")).unwrap()
}

fn refused(s: &Shared, reason: &'static str) -> u64 {
    s.metrics
        .deletes_refused
        .get_or_create(&HoldLabel { reason })
        .get()
}

fn writes(s: &Shared, op: &'static str) -> u64 {
    s.metrics.work_writes.get_or_create(&OpLabel { op }).get()
}

/// Every kind the binding controller indexes, a few versions each.
fn pool(s: &Shared) -> Vec<(String, Vec<Value>)> {
    let k = &s.kinds;
    let deploy = s.objects.kind("apps/v1", "Deployment").unwrap();
    let mut pool = Vec::new();
    for c in ["a", "b", "c"] {
        pool.push((
            Objects::key(&k.cluster, None, c),
            vec![
                testing::cluster(c, json!({"region": "eu"})),
                testing::cluster(c, json!({"region": "us"})),
            ],
        ));
        pool.push((
            Objects::key(&k.namespace, None, &format!("hami-es-{c}")),
            vec![testing::namespace(
                &format!("hami-es-{c}"),
                json!({LABEL_NAMESPACE_CLUSTER: c}),
            )],
        ));
    }
    for app in ["web", "api"] {
        let b = testing::binding("default", app, &[("a", 1), ("b", 1)]);
        let name = format!("{app}-deployment");
        pool.push((
            Objects::key(&k.rb, Some("default"), &name),
            vec![
                b,
                testing::binding("default", app, &[("b", 2)]),
                testing::binding("default", app, &[("a", 1), ("c", 1)]),
            ],
        ));
        pool.push((
            Objects::key(&deploy, Some("default"), app),
            vec![
                testing::deployment("default", app, 2),
                testing::deployment("default", app, 3),
            ],
        ));
        for c in ["a", "b", "c"] {
            pool.push((
                Objects::key(&k.work, Some(&format!("hami-es-{c}")), &format!("{name}-w")),
                vec![
                    testing::work(c, "default", &name, "v1"),
                    testing::work(c, "default", &name, "v2"),
                ],
            ));
        }
    }
    let op = |image: &str| {
        json!({
            "apiVersion": "policy.hami.io/v1alpha1",
            "kind": "OverridePolicy",
            "metadata": {"name": "mirror", "namespace": "default"},
            "spec": {
                "resourceSelectors": [{"apiVersion": "apps/v1", "kind": "Deployment"}],
                "overrideRules": [{"overriders": {"imageOverrider": [{"component": "Registry", "operator": "replace", "value": image}]}}],
            },
        })
    };
    pool.push((
        Objects::key(&k.op, Some("default"), "mirror"),
        vec![op("mirror.a"), op("mirror.b")],
    ));
    pool
}

#[tokio::test]
async fn a_relist_mid_burst_leaves_the_index_equal_to_a_fresh_list() {
    testing::check_relists(
        shared,
        |s| {
            vec![FeedCase {
                pool: pool(s),
                handle: Shared::on_change,
            }]
        },
        |s| s.index.read().without_template_hashes(),
    )
    .await;
}

#[test]
fn a_relist_queues_exactly_what_changed_while_the_watch_was_away() {
    let entry = |clusters: &[&str], hash| BindingEntry {
        hash,
        template_key: Some("t".into()),
        api_version: "apps/v1".into(),
        kind: "Deployment".into(),
        namespace: Some("default".into()),
        clusters: clusters.iter().map(|c| c.to_string()).collect(),
    };
    let work = |b: &str, c: &str, hash| WorkEntry {
        binding: b.into(),
        namespace: format!("hami-es-{c}"),
        hash,
    };
    let mut old = Index::default();
    old.put_binding("/b/same", entry(&["a"], 1));
    old.put_binding("/b/spec", entry(&["a"], 1));
    old.put_binding("/b/gone", entry(&["a"], 1));
    old.put_binding("/b/work", entry(&["b"], 1));
    old.put_work("/w/work-b", work("/b/work", "b", 1));
    old.put_work("/w/orphan", work("/b/deleted-earlier", "a", 1));
    old.clusters.insert("a".into(), ClusterView::new("a"));
    let mut new = Index::default();
    new.put_binding("/b/same", entry(&["a"], 1));
    new.put_binding("/b/spec", entry(&["a"], 2));
    new.put_binding("/b/new", entry(&["a"], 1));
    new.put_binding("/b/work", entry(&["b"], 1));
    new.put_work("/w/work-b", work("/b/work", "b", 9));
    new.put_work("/w/orphan", work("/b/deleted-earlier", "a", 1));
    new.clusters.insert("a".into(), ClusterView::new("a"));
    new.clusters.insert("b".into(), ClusterView::new("b"));
    // Both sides hash the template: unchanged.
    old.put_template("t", 5);
    new.put_template("t", 5);
    let got: Vec<String> = index::relisted(&old, &new).into_iter().collect();
    assert_eq!(
        got,
        vec![
            "/b/gone".to_string(),
            "/b/new".into(),
            "/b/spec".into(),
            "/b/work".into(),
            "ns:b".into(),
        ],
        "not /b/same, not the orphan's binding (unchanged)"
    );
    // A template that changed while away requeues its bindings.
    new.put_template("t", 6);
    assert!(index::relisted(&old, &new).contains("/b/same"));
}

#[tokio::test]
async fn an_execution_namespace_the_index_calls_unused_stays_while_the_store_disagrees() {
    let s = shared().await;
    let ns = testing::namespace("hami-es-a", json!({LABEL_NAMESPACE_CLUSTER: "a"}));
    testing::create(&s.objects, ns).await;
    // The index knows neither the Cluster nor any Work (a relist emptied
    // it, or it is behind); the store has the Cluster.
    testing::create(&s.objects, testing::cluster("a", json!({}))).await;
    assert_eq!(s.reconcile_namespace("a").await.unwrap(), "unchanged");
    assert_eq!(refused(&s, "cluster_exists"), 1);
    let kind = s.kinds.namespace.clone();
    let stored = s.objects.get(&kind, None, "hami-es-a").unwrap().unwrap();
    assert!(
        stored
            .object
            .pointer("/metadata/deletionTimestamp")
            .is_none()
    );

    // The Cluster is gone but a Work is still there.
    s.objects.delete(&s.kinds.cluster, None, "a").await.unwrap();
    testing::create(
        &s.objects,
        testing::work("a", "default", "web-deployment", "v1"),
    )
    .await;
    assert_eq!(s.reconcile_namespace("a").await.unwrap(), "unchanged");
    assert_eq!(refused(&s, "works_left"), 1);
    assert_eq!(writes(&s, "namespace_delete"), 0);

    // Really unused: deleted.
    s.objects
        .delete(&s.kinds.work, Some("hami-es-a"), "web-deployment-w")
        .await
        .unwrap();
    assert_eq!(s.reconcile_namespace("a").await.unwrap(), "changed");
    assert_eq!(writes(&s, "namespace_delete"), 1);
    let stored = s.objects.get(&kind, None, "hami-es-a").unwrap().unwrap();
    assert!(
        stored
            .object
            .pointer("/metadata/deletionTimestamp")
            .is_some()
    );
}

#[tokio::test]
async fn a_delete_pinned_to_an_older_read_fails_and_deletes_nothing() {
    let s = shared().await;
    let ns = testing::namespace("hami-es-a", json!({LABEL_NAMESPACE_CLUSTER: "a"}));
    testing::create(&s.objects, ns).await;
    let kind = s.kinds.namespace.clone();
    let read = s.objects.get(&kind, None, "hami-es-a").unwrap().unwrap();
    // Someone writes it after the decision was taken on `read`.
    let mut changed = read.object.clone();
    changed["metadata"]["labels"]["touched"] = json!("yes");
    s.objects
        .write(&kind, None, "hami-es-a", &read, changed, |_| {})
        .await
        .unwrap();
    let e = s
        .objects
        .delete_pinned(&kind, None, "hami-es-a", &Precondition::of(&read))
        .await
        .unwrap_err();
    assert!(matches!(e, ObjectError::Conflict), "{e}");
    let now = s.objects.get(&kind, None, "hami-es-a").unwrap().unwrap();
    assert!(now.object.pointer("/metadata/deletionTimestamp").is_none());
    // The same for a Work.
    testing::create(
        &s.objects,
        testing::work("a", "default", "web-deployment", "v1"),
    )
    .await;
    let w = s
        .objects
        .get(&s.kinds.work, Some("hami-es-a"), "web-deployment-w")
        .unwrap()
        .unwrap();
    let mut newer = w.object.clone();
    newer["metadata"]["labels"] = json!({"x": "y"});
    s.objects
        .write(
            &s.kinds.work,
            Some("hami-es-a"),
            "web-deployment-w",
            &w,
            newer,
            |_| {},
        )
        .await
        .unwrap();
    let e = s
        .objects
        .delete_pinned(
            &s.kinds.work,
            Some("hami-es-a"),
            "web-deployment-w",
            &Precondition::of(&w),
        )
        .await
        .unwrap_err();
    assert!(matches!(e, ObjectError::Conflict));
    assert!(
        s.objects
            .get(&s.kinds.work, Some("hami-es-a"), "web-deployment-w")
            .unwrap()
            .is_some()
    );
}

#[tokio::test]
async fn a_work_the_index_files_under_a_deleted_binding_is_kept_when_it_names_another() {
    let s = shared().await;
    testing::create(&s.objects, testing::namespace("hami-es-a", json!({}))).await;
    // In the store, the Work belongs to `api-deployment`.
    let mut w = testing::work("a", "default", "api-deployment", "v1");
    w["metadata"]["name"] = json!("shared-w");
    testing::create(&s.objects, w).await;
    // The index (stale) files it under `web-deployment`, which is gone.
    let web = Objects::key(&s.kinds.rb, Some("default"), "web-deployment");
    let work_key = Objects::key(&s.kinds.work, Some("hami-es-a"), "shared-w");
    s.index.write().put_work(
        &work_key,
        WorkEntry {
            binding: web.clone(),
            namespace: "hami-es-a".into(),
            hash: 1,
        },
    );
    assert_eq!(s.reconcile_binding(&web).await.unwrap(), "unchanged");
    assert_eq!(refused(&s, "other_owner"), 1);
    assert!(
        s.objects
            .get(&s.kinds.work, Some("hami-es-a"), "shared-w")
            .unwrap()
            .is_some()
    );
    assert_eq!(writes(&s, "delete"), 0);
}

#[tokio::test]
async fn a_target_the_index_does_not_know_yet_is_an_error_to_retry_not_a_success() {
    let s = shared().await;
    testing::create(&s.objects, testing::deployment("default", "web", 2)).await;
    let b = testing::binding("default", "web", &[("a", 1), ("b", 1)]);
    testing::create(&s.objects, b).await;
    let key = Objects::key(&s.kinds.rb, Some("default"), "web-deployment");
    // Only cluster a is indexed.
    s.index
        .write()
        .clusters
        .insert("a".into(), ClusterView::new("a"));
    let e = s.reconcile_binding(&key).await.unwrap_err();
    assert!(
        matches!(&e, ObjectError::Incomplete(m) if m.contains("b")),
        "{e}"
    );
}
