//! The `kube` crate's typed client and watcher against `hami up`:
//! create/get/list/patch(apply)/replace/delete for a built-in kind (Deployment)
//! and a hami kind (PropagationPolicy), and a watcher that sees ADDED, MODIFIED
//! and DELETED in order and resumes after the server restarts.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::watcher;
use serde_json::json;
use std::time::Duration;
use support::Hami;

fn deployment(name: &str, replicas: i32) -> Deployment {
    serde_json::from_value(json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": "default", "labels": {"app": name}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{
                    "name": "main",
                    "image": "nginx:1.27",
                    "resources": {"limits": {"nvidia.com/gpu": "1"}}
                }]}
            }
        }
    }))
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typed_deployment_crud() {
    let tmp = tempfile::tempdir().unwrap();
    let hami = Hami::start(tmp.path(), "127.0.0.1:0");
    let api: Api<Deployment> = Api::namespaced(hami.client().await, "default");

    let created = api
        .create(&PostParams::default(), &deployment("web", 2))
        .await
        .unwrap();
    assert_eq!(created.metadata.generation, Some(1));
    assert!(created.metadata.uid.is_some());
    let got = api.get("web").await.unwrap();
    assert_eq!(got.spec.as_ref().unwrap().replicas, Some(2));

    let list = api
        .list(&ListParams::default().labels("app=web"))
        .await
        .unwrap();
    assert_eq!(list.items.len(), 1);
    let none = api
        .list(&ListParams::default().labels("app=other"))
        .await
        .unwrap();
    assert!(none.items.is_empty());

    // Server-side apply changes replicas and records the manager.
    let applied = api
        .patch(
            "web",
            &PatchParams::apply("hami-test").force(),
            &Patch::Apply(deployment("web", 3)),
        )
        .await
        .unwrap();
    assert_eq!(applied.spec.as_ref().unwrap().replicas, Some(3));
    assert!(
        applied
            .metadata
            .managed_fields
            .unwrap_or_default()
            .iter()
            .any(|m| m.manager.as_deref() == Some("hami-test"))
    );

    // Replace with the current resourceVersion succeeds, with a stale one conflicts.
    let mut cur = api.get("web").await.unwrap();
    let stale = cur.clone();
    cur.spec.as_mut().unwrap().replicas = Some(4);
    let replaced = api
        .replace("web", &PostParams::default(), &cur)
        .await
        .unwrap();
    assert_eq!(replaced.spec.unwrap().replicas, Some(4));
    assert!(replaced.metadata.generation > stale.metadata.generation);
    let err = api
        .replace("web", &PostParams::default(), &stale)
        .await
        .unwrap_err();
    match err {
        kube::Error::Api(s) => assert_eq!(s.code, 409, "{s:?}"),
        other => panic!("expected a 409 conflict, got {other:?}"),
    }

    api.delete("web", &DeleteParams::default()).await.unwrap();
    match api.get("web").await.unwrap_err() {
        kube::Error::Api(s) => assert_eq!(s.code, 404),
        other => panic!("expected 404, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typed_propagation_policy_crud() {
    use hami_api::PropagationPolicy;
    let tmp = tempfile::tempdir().unwrap();
    let hami = Hami::start(tmp.path(), "127.0.0.1:0");
    let api: Api<PropagationPolicy> = Api::namespaced(hami.client().await, "default");
    let pp: PropagationPolicy = serde_json::from_value(json!({
        "apiVersion": "policy.hami.io/v1alpha1",
        "kind": "PropagationPolicy",
        "metadata": {"name": "gpu", "namespace": "default"},
        "spec": {
            "resourceSelectors": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"}],
            "placement": {"replicaScheduling": {
                "replicaSchedulingType": "Divided",
                "replicaDivisionPreference": "Weighted",
                "weightPreference": {"dynamicWeight": "AvailableReplicas"}
            }}
        }
    }))
    .unwrap();
    api.create(&PostParams::default(), &pp).await.unwrap();
    let got = api.get("gpu").await.unwrap();
    assert_eq!(got.spec.resource_selectors.len(), 1);
    assert_eq!(
        api.list(&ListParams::default()).await.unwrap().items.len(),
        1
    );

    let mut applied = pp.clone();
    applied.spec.priority = Some(5);
    let out = api
        .patch(
            "gpu",
            &PatchParams::apply("hami-test"),
            &Patch::Apply(&applied),
        )
        .await
        .unwrap();
    assert_eq!(out.spec.priority, Some(5));

    let mut cur = api.get("gpu").await.unwrap();
    cur.spec.priority = Some(9);
    let replaced = api
        .replace("gpu", &PostParams::default(), &cur)
        .await
        .unwrap();
    assert_eq!(replaced.spec.priority, Some(9));

    // An invalid policy is refused with 422 and nothing is stored.
    let mut bad = pp.clone();
    bad.metadata.name = Some("bad".into());
    bad.spec.resource_selectors.clear();
    match api.create(&PostParams::default(), &bad).await.unwrap_err() {
        kube::Error::Api(s) => assert_eq!(s.code, 422, "{s:?}"),
        other => panic!("expected 422, got {other:?}"),
    }
    assert!(api.get_opt("bad").await.unwrap().is_none());

    api.delete("gpu", &DeleteParams::default()).await.unwrap();
    assert!(api.get_opt("gpu").await.unwrap().is_none());
}

/// Event names in the order the watcher reports them (initial sync included).
async fn next_change(
    stream: &mut (
             impl futures::Stream<Item = Result<watcher::Event<Deployment>, watcher::Error>> + Unpin
         ),
) -> (String, String, Option<i32>) {
    loop {
        let ev = tokio::time::timeout(Duration::from_secs(30), stream.next())
            .await
            .expect("watcher event within 30 s")
            .expect("stream open");
        match ev {
            Ok(watcher::Event::Apply(d)) | Ok(watcher::Event::InitApply(d)) => {
                let r = d.spec.as_ref().and_then(|s| s.replicas);
                return ("apply".into(), d.metadata.name.unwrap_or_default(), r);
            }
            Ok(watcher::Event::Delete(d)) => {
                return ("delete".into(), d.metadata.name.unwrap_or_default(), None);
            }
            Ok(watcher::Event::Init) | Ok(watcher::Event::InitDone) => continue,
            // The watcher retries by itself (with the backoff below) while the
            // server restarts; errors surface here and are not fatal.
            Err(_) => continue,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watcher_sees_changes_in_order_and_resumes_after_restart() {
    use kube::runtime::WatchStreamExt;
    let tmp = tempfile::tempdir().unwrap();
    let mut hami = Hami::start(tmp.path(), "127.0.0.1:0");
    let client = hami.client().await;
    let api: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let mut stream = watcher(api.clone(), watcher::Config::default())
        .default_backoff()
        .boxed();

    api.create(&PostParams::default(), &deployment("a", 1))
        .await
        .unwrap();
    assert_eq!(
        next_change(&mut stream).await,
        ("apply".into(), "a".into(), Some(1))
    );
    let mut d = api.get("a").await.unwrap();
    d.spec.as_mut().unwrap().replicas = Some(2);
    api.replace("a", &PostParams::default(), &d).await.unwrap();
    assert_eq!(
        next_change(&mut stream).await,
        ("apply".into(), "a".into(), Some(2))
    );
    api.delete("a", &DeleteParams::default()).await.unwrap();
    assert_eq!(
        next_change(&mut stream).await,
        ("delete".into(), "a".into(), None)
    );

    // Restart the server (SIGKILL, same port, same data). The watcher reconnects
    // and sees what happens afterwards, in order.
    hami.restart();
    api.create(&PostParams::default(), &deployment("b", 1))
        .await
        .unwrap();
    let mut d = api.get("b").await.unwrap();
    d.spec.as_mut().unwrap().replicas = Some(7);
    api.replace("b", &PostParams::default(), &d).await.unwrap();
    api.delete("b", &DeleteParams::default()).await.unwrap();
    // After a reconnect the watcher may relist (an InitApply of b); collect
    // until the delete and check the order of what was seen.
    let mut seen = Vec::new();
    loop {
        let ev = next_change(&mut stream).await;
        let done = ev.0 == "delete" && ev.1 == "b";
        seen.push(ev);
        if done {
            break;
        }
    }
    let b_events: Vec<_> = seen.iter().filter(|e| e.1 == "b").cloned().collect();
    assert!(
        b_events.iter().any(|e| e.0 == "apply"),
        "no apply of b seen: {seen:?}"
    );
    assert_eq!(b_events.last().unwrap().0, "delete", "{seen:?}");
    // Replicas only ever go up for b before its delete: events are in order.
    let reps: Vec<i32> = b_events.iter().filter_map(|e| e.2).collect();
    assert!(reps.windows(2).all(|w| w[0] <= w[1]), "{seen:?}");
}
