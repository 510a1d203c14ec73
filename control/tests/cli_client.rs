//! `hami apply`, `hami get` and `hami delete` against an in-process server.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use clap::Parser;
use hami_control::apiserver::{self, ServerConfig, hami_kinds};
use hami_control::cli::{Cli, run};
use hami_store::{MemoryStore, Store};

fn kubeconfig(url: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: t\n  cluster:\n    server: {url}\nusers:\n- name: t\n  user: {{}}\ncontexts:\n- name: t\n  context: {{cluster: t, user: t}}\ncurrent-context: t\n"
    )
}

async fn hami(args: &[&str]) -> anyhow::Result<()> {
    let mut full = vec!["hami"];
    full.extend_from_slice(args);
    run(Cli::try_parse_from(full)?).await
}

#[tokio::test]
async fn apply_get_delete_samples() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let server = apiserver::spawn(
        listener,
        store.clone(),
        hami_kinds::registry().unwrap(),
        ServerConfig {
            validator: Some(hami_kinds::validator()),
            ..ServerConfig::default()
        },
    )
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let kc = dir.path().join("kubeconfig");
    std::fs::write(&kc, kubeconfig(&server.url())).unwrap();
    let kc = kc.to_str().unwrap();
    let samples = concat!(env!("CARGO_MANIFEST_DIR"), "/../samples");

    hami(&["apply", "-f", samples, "--kubeconfig", kc])
        .await
        .unwrap();
    let deployments = store.list("/registry/apps/deployments/", None, 0).unwrap();
    assert_eq!(deployments.items.len(), 1);
    let policies = store
        .list("/registry/policy.hami.io/propagationpolicies/", None, 0)
        .unwrap();
    assert_eq!(policies.items.len(), 1);
    // Applying again is a no-op: nothing is written.
    let revision = store.current_revision();
    hami(&["apply", "-f", samples, "--kubeconfig", kc])
        .await
        .unwrap();
    assert_eq!(store.current_revision(), revision);

    hami(&["get", "deploy", "-A", "--kubeconfig", kc])
        .await
        .unwrap();
    hami(&["get", "pp", "-A", "-o", "yaml", "--kubeconfig", kc])
        .await
        .unwrap();
    let err = hami(&["get", "widgets", "--kubeconfig", kc])
        .await
        .unwrap_err();
    assert!(err.to_string().contains("widgets"), "{err}");

    hami(&["delete", "-f", samples, "--kubeconfig", kc])
        .await
        .unwrap();
    let policies = store
        .list("/registry/policy.hami.io/propagationpolicies/", None, 0)
        .unwrap();
    assert!(policies.items.is_empty());
    let err = hami(&["delete", "cm", "nothing", "--kubeconfig", kc])
        .await
        .unwrap_err();
    assert!(format!("{err:#}").contains("not found"), "{err:#}");
    hami(&[
        "delete",
        "cm",
        "nothing",
        "--ignore-not-found",
        "--kubeconfig",
        kc,
    ])
    .await
    .unwrap();
    server.shutdown().await.unwrap();
}
