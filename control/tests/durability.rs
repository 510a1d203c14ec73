//! Acknowledged writes survive SIGKILL, and concurrent read-modify-write
//! updates with retry on 409 lose nothing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ListParams, PostParams};
use serde_json::json;
use std::collections::BTreeMap;
use support::Hami;

fn config_map(name: &str, value: &str) -> ConfigMap {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": "default"},
        "data": {"value": value}
    }))
    .unwrap()
}

fn rv(cm: &ConfigMap) -> u64 {
    cm.metadata
        .resource_version
        .as_deref()
        .unwrap()
        .parse()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_sigkill() {
    const N: usize = 400;
    let tmp = tempfile::tempdir().unwrap();
    let mut hami = Hami::start(tmp.path(), "127.0.0.1:0");
    let api: Api<ConfigMap> = Api::namespaced(hami.client().await, "default");

    // 16 concurrent writers, N objects in all; remember each acknowledgement.
    let mut tasks = Vec::new();
    for w in 0..16 {
        let api = api.clone();
        tasks.push(tokio::spawn(async move {
            let mut acked = Vec::new();
            for i in (w..N).step_by(16) {
                let name = format!("cm-{i:04}");
                let cm = api
                    .create(&PostParams::default(), &config_map(&name, &i.to_string()))
                    .await
                    .unwrap();
                acked.push((name, rv(&cm)));
            }
            acked
        }));
    }
    let mut acked = BTreeMap::new();
    for t in tasks {
        acked.extend(t.await.unwrap());
    }
    // SIGKILL right after the last acknowledgement: no clean shutdown.
    hami.kill();
    let max_acked = *acked.values().max().unwrap();

    hami.restart();
    let api: Api<ConfigMap> = Api::namespaced(hami.client().await, "default");
    let list = api.list(&ListParams::default()).await.unwrap();
    let found: BTreeMap<String, u64> = list
        .items
        .iter()
        .map(|cm| (cm.metadata.name.clone().unwrap(), rv(cm)))
        .filter(|(n, _)| n.starts_with("cm-"))
        .collect();
    assert_eq!(found.len(), N, "objects lost across SIGKILL");
    assert_eq!(found, acked, "revisions changed across SIGKILL");
    let list_rv: u64 = list.metadata.resource_version.unwrap().parse().unwrap();
    assert!(list_rv >= max_acked, "store revision went backwards");

    // The next write gets a higher revision than anything acknowledged before.
    let next = api
        .create(&PostParams::default(), &config_map("after", "x"))
        .await
        .unwrap();
    assert!(rv(&next) > max_acked);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_read_modify_write_counts_exactly() {
    const CLIENTS: usize = 8;
    const UPDATES: usize = 500;
    let tmp = tempfile::tempdir().unwrap();
    let hami = Hami::start(tmp.path(), "127.0.0.1:0");
    let api: Api<ConfigMap> = Api::namespaced(hami.client().await, "default");
    api.create(&PostParams::default(), &config_map("counter", "0"))
        .await
        .unwrap();

    let mut tasks = Vec::new();
    for _ in 0..CLIENTS {
        let api = api.clone();
        tasks.push(tokio::spawn(async move {
            let mut conflicts = 0u64;
            for _ in 0..UPDATES {
                loop {
                    let mut cm = api.get("counter").await.unwrap();
                    let data = cm.data.get_or_insert_with(Default::default);
                    let n: u64 = data["value"].parse().unwrap();
                    data.insert("value".into(), (n + 1).to_string());
                    match api.replace("counter", &PostParams::default(), &cm).await {
                        Ok(_) => break,
                        Err(kube::Error::Api(s)) if s.code == 409 => conflicts += 1,
                        Err(e) => panic!("unexpected error: {e}"),
                    }
                }
            }
            conflicts
        }));
    }
    let mut conflicts = 0;
    for t in tasks {
        conflicts += t.await.unwrap();
    }
    let cm = api.get("counter").await.unwrap();
    let value: usize = cm.data.unwrap()["value"].parse().unwrap();
    println!(
        "{} updates, {conflicts} conflicts retried",
        CLIENTS * UPDATES
    );
    assert_eq!(value, CLIENTS * UPDATES);
}
