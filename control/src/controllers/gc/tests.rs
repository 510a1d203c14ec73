//! The collector in process, over the API server's state on a memory
//! store: background, foreground and orphan deletion end to end, the
//! recreated-owner race, and the partial-view rules (an index that misses
//! an owner or a blocking dependent deletes nothing: the store decides).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use hami_apiserver::deletion::Propagation;
use prometheus_client::registry::Registry;
use serde_json::json;

use super::*;
use crate::controllers::testing::{self, FeedCase};

const CM: &str = "/registry/core/configmaps/default/";

fn shared_with(objects: Objects, options: GcOptions) -> Arc<Shared> {
    let metrics = GcMetrics::register(&mut Registry::default());
    Arc::new(Shared::new(
        objects,
        metrics,
        options,
        Tracker::standalone("gc"),
    ))
}

/// A running collector (feed and reconcile loop) over a fresh state.
async fn running(options: GcOptions) -> (Arc<Shared>, watch::Sender<bool>) {
    let s = shared_with(testing::objects().await, options);
    let stop = start(&s).await;
    (s, stop)
}

/// Starts `s`'s feed and reconcile loop; waits for the first list.
async fn start(s: &Arc<Shared>) -> watch::Sender<bool> {
    let (stop, rx) = watch::channel(false);
    feed::spawn(
        s.objects.store(),
        ["/registry/".to_string()],
        s,
        Shared::on_change,
        &s.tracker,
        &rx,
    );
    runner::spawn(s.clone(), rx);
    s.tracker.wait_synced().await;
    stop
}

fn reference(owner: &Value, block: bool) -> Value {
    json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "name": owner["metadata"]["name"], "uid": owner["metadata"]["uid"],
        "controller": false, "blockOwnerDeletion": block,
    })
}

fn configmap(name: &str, owners: Vec<Value>, finalizers: &[&str]) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap",
           "metadata": {"name": name, "namespace": "default",
                        "ownerReferences": owners, "finalizers": finalizers}})
}

async fn create(s: &Shared, name: &str, owners: Vec<Value>, finalizers: &[&str]) -> Value {
    testing::create(&s.objects, configmap(name, owners, finalizers)).await
}

fn kind(s: &Shared) -> Arc<ResourceKind> {
    s.objects.kind("v1", "ConfigMap").unwrap()
}

fn get(s: &Shared, name: &str) -> Option<Value> {
    s.objects
        .get(&kind(s), Some("default"), name)
        .unwrap()
        .map(|st| st.object)
}

/// Deletes `name` with `propagation` through the API's own delete (what
/// kubectl's DELETE reaches).
async fn delete(s: &Shared, name: &str, propagation: Option<Propagation>) {
    let k = kind(s);
    let current = s.objects.get(&k, Some("default"), name).unwrap().unwrap();
    s.objects
        .delete_pinned_with(
            &k,
            Some("default"),
            name,
            &Precondition::of(&current),
            propagation,
        )
        .await
        .unwrap();
}

async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !check() {
        assert!(Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn owner_uids(o: &Value) -> Vec<String> {
    o["metadata"]["ownerReferences"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|r| r["uid"].as_str().unwrap().to_string())
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn background_deletion_removes_dependents_and_only_dangling_references() {
    let (s, _stop) = running(GcOptions::default()).await;
    let owner = create(&s, "owner", vec![], &[]).await;
    let keeper = create(&s, "keeper", vec![], &[]).await;
    create(&s, "a", vec![reference(&owner, true)], &[]).await;
    create(&s, "b", vec![reference(&owner, false)], &[]).await;
    create(
        &s,
        "shared",
        vec![reference(&owner, true), reference(&keeper, false)],
        &[],
    )
    .await;
    // Nothing goes while the owner is there.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(get(&s, "a").is_some() && get(&s, "b").is_some());

    delete(&s, "owner", None).await;
    assert!(
        get(&s, "owner").is_none(),
        "background: the owner goes at once"
    );
    eventually("the dependents are deleted", || {
        get(&s, "a").is_none() && get(&s, "b").is_none()
    })
    .await;
    eventually("the shared dependent loses the dangling reference", || {
        get(&s, "shared").is_some_and(|o| {
            owner_uids(&o) == vec![keeper["metadata"]["uid"].as_str().unwrap().to_string()]
        })
    })
    .await;
    assert_eq!(s.metrics.deletes(Propagation::Background), 2);
    assert!(get(&s, "keeper").is_some());
}

#[tokio::test]
async fn foreground_keeps_the_owner_while_a_blocking_dependent_is_held() {
    let (s, _stop) = running(GcOptions::default()).await;
    let owner = create(&s, "owner", vec![], &[]).await;
    create(
        &s,
        "held",
        vec![reference(&owner, true)],
        &["example.io/hold"],
    )
    .await;
    create(&s, "free", vec![reference(&owner, true)], &[]).await;
    create(&s, "loose", vec![reference(&owner, false)], &[]).await;

    delete(&s, "owner", Some(Propagation::Foreground)).await;
    let marked = get(&s, "owner").unwrap();
    assert!(marked["metadata"]["deletionTimestamp"].is_string());
    assert_eq!(
        marked["metadata"]["finalizers"],
        json!(["foregroundDeletion"])
    );
    eventually("the free dependents are deleted", || {
        get(&s, "free").is_none() && get(&s, "loose").is_none()
    })
    .await;
    eventually("the held dependent is being deleted", || {
        get(&s, "held").is_some_and(|o| o["metadata"]["deletionTimestamp"].is_string())
    })
    .await;
    // The held dependent blocks the owner: it stays, finalizer and all.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let still = get(&s, "owner").expect("the owner waits for its blocking dependent");
    assert_eq!(
        still["metadata"]["finalizers"],
        json!(["foregroundDeletion"])
    );

    // The dependent's own finalizer goes: then it, then the owner.
    let k = kind(&s);
    let held = s.objects.get(&k, Some("default"), "held").unwrap().unwrap();
    let mut released = held.object.clone();
    released["metadata"]["finalizers"] = json!([]);
    s.objects
        .write(&k, Some("default"), "held", &held, released, |_| {})
        .await
        .unwrap();
    eventually("the owner goes once no blocking dependent is left", || {
        get(&s, "held").is_none() && get(&s, "owner").is_none()
    })
    .await;
    assert_eq!(s.metrics.finalizers_removed(), 1);
}

#[tokio::test]
async fn orphan_keeps_dependents_and_removes_the_references() {
    let (s, _stop) = running(GcOptions::default()).await;
    let owner = create(&s, "owner", vec![], &[]).await;
    let keeper = create(&s, "keeper", vec![], &[]).await;
    create(&s, "a", vec![reference(&owner, true)], &[]).await;
    create(
        &s,
        "b",
        vec![reference(&owner, true), reference(&keeper, true)],
        &[],
    )
    .await;
    delete(&s, "owner", Some(Propagation::Orphan)).await;
    eventually("the owner goes once its dependents are orphaned", || {
        get(&s, "owner").is_none()
    })
    .await;
    // Kept, without the reference; and not collected later either.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let a = get(&s, "a").expect("an orphan stays");
    assert!(a["metadata"].get("ownerReferences").is_none(), "{a}");
    let b = get(&s, "b").expect("an orphan stays");
    assert_eq!(
        owner_uids(&b),
        vec![keeper["metadata"]["uid"].as_str().unwrap().to_string()]
    );
    assert_eq!(s.metrics.deletes(Propagation::Background), 0);
}

#[tokio::test]
async fn a_dependent_of_a_recreated_owner_waits_and_a_repointed_one_is_never_deleted() {
    let grace = Duration::from_millis(800);
    let s = shared_with(
        testing::objects().await,
        GcOptions {
            recreate_grace: grace,
            ..GcOptions::default()
        },
    );
    // A template and its binding (the detector's reference: controller,
    // blockOwnerDeletion), and another dependent nobody re-points.
    let old = create(&s, "template", vec![], &[]).await;
    let mut r = reference(&old, true);
    r["controller"] = json!(true);
    create(&s, "binding", vec![r.clone()], &[]).await;
    create(&s, "stale", vec![r], &[]).await;
    // Deleted and recreated under the same name before the collector
    // looks: the store holds `template` with a new uid.
    let k = kind(&s);
    s.objects
        .store()
        .delete(&format!("{CM}template"), None)
        .await
        .unwrap();
    let new = create(&s, "template", vec![], &[]).await;
    assert_ne!(new["metadata"]["uid"], old["metadata"]["uid"]);
    let _stop = start(&s).await;
    eventually("the wait is counted", || {
        s.metrics.refusals("owner_recreated") >= 1
    })
    .await;
    assert!(get(&s, "binding").is_some() && get(&s, "stale").is_some());
    // The detector re-points the binding within the grace (a write of its
    // own: a new resourceVersion).
    let b = s
        .objects
        .get(&k, Some("default"), "binding")
        .unwrap()
        .unwrap();
    let mut repointed = b.object.clone();
    repointed["metadata"]["ownerReferences"][0]["uid"] = new["metadata"]["uid"].clone();
    s.objects
        .write(&k, Some("default"), "binding", &b, repointed, |_| {})
        .await
        .unwrap();
    // After the grace: the stale dependent goes, the binding stays.
    eventually("the stale dependent goes after the grace", || {
        get(&s, "stale").is_none()
    })
    .await;
    tokio::time::sleep(grace).await;
    let b = get(&s, "binding").expect("the re-pointed binding is never deleted");
    assert_eq!(
        owner_uids(&b),
        vec![new["metadata"]["uid"].as_str().unwrap().to_string()]
    );
}

#[tokio::test]
async fn a_recreated_owner_is_not_counted_gone_before_the_grace() {
    let s = shared_with(testing::objects().await, GcOptions::default());
    let old = create(&s, "template", vec![], &[]).await;
    create(&s, "binding", vec![reference(&old, true)], &[]).await;
    s.objects
        .store()
        .delete(&format!("{CM}template"), None)
        .await
        .unwrap();
    create(&s, "template", vec![], &[]).await;
    let listed = s.objects.store().list("/registry/", None, 0).unwrap();
    s.on_change(Change::Reset(listed.items));
    let key = format!("{CM}binding");
    assert_eq!(s.reconcile_key(&key).await.unwrap(), "waiting");
    assert_eq!(s.reconcile_key(&key).await.unwrap(), "waiting");
    assert_eq!(
        s.metrics.refusals("owner_recreated"),
        1,
        "one wait, counted once"
    );
    assert!(get(&s, "binding").is_some());
}

#[tokio::test]
async fn an_owner_missing_from_the_index_deletes_nothing() {
    let s = shared_with(testing::objects().await, GcOptions::default());
    let owner = create(&s, "owner", vec![], &[]).await;
    create(&s, "dependent", vec![reference(&owner, true)], &[]).await;
    // The index as a partial relist leaves it: the dependent, not its owner.
    let listed = s.objects.store().list("/registry/", None, 0).unwrap();
    let partial: Vec<_> = listed
        .items
        .into_iter()
        .filter(|kv| kv.key != format!("{CM}owner"))
        .collect();
    s.on_change(Change::Reset(partial));
    let key = format!("{CM}dependent");
    assert_eq!(s.reconcile_key(&key).await.unwrap(), "unchanged");
    assert_eq!(s.metrics.refusals("owner_in_store"), 1);
    assert!(get(&s, "dependent").is_some(), "the store decides");

    // With the owner really gone, the dependent goes.
    s.objects
        .store()
        .delete(&format!("{CM}owner"), None)
        .await
        .unwrap();
    assert_eq!(s.reconcile_key(&key).await.unwrap(), "deleted");
    assert!(get(&s, "dependent").is_none());
}

#[tokio::test]
async fn a_blocking_dependent_missing_from_the_index_keeps_the_foreground_owner() {
    let s = shared_with(testing::objects().await, GcOptions::default());
    let owner = create(&s, "owner", vec![], &[]).await;
    create(
        &s,
        "held",
        vec![reference(&owner, true)],
        &["example.io/hold"],
    )
    .await;
    delete(&s, "owner", Some(Propagation::Foreground)).await;
    let listed = s.objects.store().list("/registry/", None, 0).unwrap();
    let partial: Vec<_> = listed
        .items
        .into_iter()
        .filter(|kv| kv.key != format!("{CM}held"))
        .collect();
    s.on_change(Change::Reset(partial));
    let key = format!("{CM}owner");
    assert!(matches!(
        s.reconcile_key(&key).await,
        Err(ObjectError::Incomplete(_))
    ));
    assert_eq!(s.metrics.refusals("blocking_dependent_in_store"), 1);
    let kept = get(&s, "owner").expect("the owner stays");
    assert_eq!(
        kept["metadata"]["finalizers"],
        json!(["foregroundDeletion"])
    );
}

#[tokio::test]
async fn a_delete_pinned_to_an_older_read_is_refused() {
    let s = shared_with(testing::objects().await, GcOptions::default());
    let owner = create(&s, "owner", vec![], &[]).await;
    create(&s, "dependent", vec![reference(&owner, true)], &[]).await;
    let k = kind(&s);
    let read = s
        .objects
        .get(&k, Some("default"), "dependent")
        .unwrap()
        .unwrap();
    // Rewritten after the collector's read (a controller adopting it).
    let mut adopted = read.object.clone();
    adopted["metadata"]["labels"] = json!({"adopted": "yes"});
    s.objects
        .write(&k, Some("default"), "dependent", &read, adopted, |_| {})
        .await
        .unwrap();
    let pinned = s
        .objects
        .delete_pinned_with(
            &k,
            Some("default"),
            "dependent",
            &Precondition::of(&read),
            Some(Propagation::Background),
        )
        .await;
    assert!(matches!(pinned, Err(ObjectError::Conflict)));
    assert!(get(&s, "dependent").is_some());
}

#[tokio::test]
async fn an_owner_of_a_kind_not_served_keeps_its_dependent() {
    let s = shared_with(testing::objects().await, GcOptions::default());
    let unknown = json!({"apiVersion": "example.io/v1", "kind": "Widget",
                         "name": "w", "uid": "w-1"});
    let cluster_scoped_owner = json!({"apiVersion": "v1", "kind": "Namespace",
                         "name": "gone", "uid": "n-1"});
    create(&s, "widgety", vec![unknown, cluster_scoped_owner], &[]).await;
    let listed = s.objects.store().list("/registry/", None, 0).unwrap();
    s.on_change(Change::Reset(listed.items));
    assert_eq!(
        s.reconcile_key(&format!("{CM}widgety")).await.unwrap(),
        "unknown_owner"
    );
    assert!(get(&s, "widgety").is_some());
    // An invalid reference (no uid) never makes its dependent garbage.
    create(
        &s,
        "nouid",
        vec![json!({"apiVersion": "v1", "kind": "ConfigMap", "name": "x"})],
        &[],
    )
    .await;
    let listed = s.objects.store().list("/registry/", None, 0).unwrap();
    s.on_change(Change::Reset(listed.items));
    assert_eq!(
        s.reconcile_key(&format!("{CM}nouid")).await.unwrap(),
        "unchanged"
    );
    assert!(get(&s, "nouid").is_some());
}

#[tokio::test]
async fn a_relist_mid_burst_leaves_the_index_equal_to_a_fresh_list() {
    let objects = testing::objects().await;
    testing::check_relists(
        || {
            let objects = objects.clone();
            async move { shared_with(objects, GcOptions::default()) }
        },
        |_| {
            let owner = |uid: &str| json!({"apiVersion": "v1", "kind": "ConfigMap", "name": "o", "uid": uid});
            let mut deleting = configmap("o", vec![], &["foregroundDeletion"]);
            deleting["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
            deleting["metadata"]["uid"] = json!("o-1");
            let mut plain = configmap("o", vec![], &[]);
            plain["metadata"]["uid"] = json!("o-1");
            let dependent = |name: &str| {
                let versions = [vec![owner("o-1")], vec![owner("o-2")], vec![]];
                versions
                    .into_iter()
                    .enumerate()
                    .map(|(i, owners)| {
                        let mut c = configmap(name, owners, &[]);
                        c["metadata"]["uid"] = json!(format!("{name}-{i}"));
                        c
                    })
                    .collect::<Vec<_>>()
            };
            let mut pool = vec![(format!("{CM}o"), vec![plain, deleting])];
            for d in ["a", "b", "c"] {
                pool.push((format!("{CM}{d}"), dependent(d)));
            }
            vec![FeedCase {
                pool,
                handle: |s: &Arc<Shared>, c| s.on_change(c),
            }]
        },
        |s| {
            let index = s.index.read();
            (index.of_interest(), index.dependents("o-1"), index.dependents("o-2"), index.objects())
        },
    )
    .await;
}
