//! End to end: "10,000 bindings, 20 clusters, embedded store". The bindings
//! are created directly in a durable EmbeddedStore (temp dir), then the
//! scheduler starts; the clock stops when a store watch has seen the last
//! binding's decision written (a write is acknowledged only once durable).
//!
//! Baseline in the same run, mirroring Karmada's pattern: one binding at a
//! time, each decision written as three sequential writes (spec.clusters,
//! then the Scheduled condition, then the observed generation), over a
//! smaller set of bindings (sequential fsyncs are slow); the result is a
//! ratio of bindings/s.
//!
//! `cargo bench -p hami-benches --bench scheduling` (set `HAMI_BENCH_BINDINGS`
//! and `HAMI_BENCH_BASELINE_BINDINGS` to change the sizes).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use hami_apiserver::{ApiMetrics, ApiServer, ServerConfig, hami_kinds, meta};
use hami_control::controllers::Objects;
use hami_control::controllers::scheduler::{self, SchedulerConfig, metrics::SchedulerMetrics};
use hami_placement::{BindingView, ClusterView, schedule};
use hami_store::{EmbeddedOptions, EmbeddedStore, Event, Store};
use serde_json::{Value, json};

const CLUSTERS: usize = 20;
const RB_PREFIX: &str = "/registry/work.hami.io/resourcebindings/";

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

struct Plane {
    _dir: tempfile::TempDir,
    embedded: Arc<EmbeddedStore>,
    objects: Objects,
    _stop: tokio::sync::watch::Sender<bool>,
    stopped: tokio::sync::watch::Receiver<bool>,
}

async fn plane() -> Plane {
    let dir = tempfile::tempdir().unwrap();
    let embedded = Arc::new(EmbeddedStore::open(dir.path(), EmbeddedOptions::default()).unwrap());
    let store: Arc<dyn Store> = embedded.clone();
    let mut registry = prometheus_client::registry::Registry::default();
    let metrics = ApiMetrics::register(&mut registry);
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let server = ApiServer::new(
        store,
        hami_kinds::registry().unwrap(),
        ServerConfig {
            validator: Some(hami_kinds::validator()),
            ..ServerConfig::default()
        },
        metrics,
        Arc::new(registry),
        stopped.clone(),
    );
    server.ensure_default_namespaces().await.unwrap();
    let objects = Objects::new(server.state().clone());
    // Clusters: each with plenty of GPUs, so every binding fits.
    let kind = objects.kind("cluster.hami.io/v1alpha1", "Cluster").unwrap();
    for i in 0..CLUSTERS {
        let name = format!("member-{i:02}");
        objects
            .create(
                &kind,
                None,
                json!({
                    "apiVersion": "cluster.hami.io/v1alpha1", "kind": "Cluster",
                    "metadata": {"name": name},
                    "spec": {"syncMode": "Pull", "region": format!("r{}", i % 4)},
                }),
            )
            .await
            .unwrap();
        let current = objects.get(&kind, None, &name).unwrap().unwrap();
        let mut new = current.object.clone();
        new["status"] = json!({
            "conditions": [{"type": "Ready", "status": "True", "reason": "Bench",
                            "message": "", "lastTransitionTime": "2025-01-01T00:00:00Z"}],
            "resourceSummary": {"allocatable": {
                "cpu": "100000", "memory": "1000Ti", "pods": "1000000",
                "nvidia.com/gpu": "100000"}},
        });
        objects
            .write(&kind, None, &name, &current, new, |_| {})
            .await
            .unwrap();
    }
    Plane {
        _dir: dir,
        embedded,
        objects,
        _stop: stop,
        stopped,
    }
}

fn binding(i: usize) -> Value {
    json!({
        "apiVersion": "work.hami.io/v1alpha2", "kind": "ResourceBinding",
        "metadata": {"name": format!("app-{i:05}-deployment"), "namespace": "default",
                     "uid": meta::new_uid(), "creationTimestamp": meta::now_rfc3339(), "generation": 1},
        "spec": {
            "resource": {"apiVersion": "apps/v1", "kind": "Deployment", "namespace": "default",
                         "name": format!("app-{i:05}")},
            "replicas": 1 + (i % 10) as i32,
            "replicaRequirements": {"resourceRequest": {"cpu": "1", "memory": "2Gi", "nvidia.com/gpu": "1"}},
            "placement": {"replicaScheduling": {
                "replicaSchedulingType": "Divided", "replicaDivisionPreference": "Weighted",
                "weightPreference": {"dynamicWeight": "AvailableReplicas"}}},
        }
    })
}

/// Creates `n` bindings straight in the store, 256 writes in flight.
async fn create_bindings(store: &Arc<dyn Store>, n: usize) {
    futures::stream::iter(0..n)
        .map(|i| {
            let store = store.clone();
            async move {
                let b = binding(i);
                let key = format!(
                    "{RB_PREFIX}default/{}",
                    b["metadata"]["name"].as_str().unwrap()
                );
                store
                    .create(&key, meta::encode_for_store(&b))
                    .await
                    .unwrap();
            }
        })
        .buffer_unordered(256)
        .collect::<Vec<_>>()
        .await;
}

fn is_scheduled(value: &[u8]) -> bool {
    let v: Value = serde_json::from_slice(value).unwrap_or_default();
    v.pointer("/status/conditions")
        .and_then(Value::as_array)
        .is_some_and(|c| {
            c.iter()
                .any(|c| c["type"] == "Scheduled" && c["status"] == "True")
        })
        && v.pointer("/status/schedulerObservedGeneration") == v.pointer("/metadata/generation")
}

async fn hami_run(n: usize) -> (Duration, u64, u64) {
    let p = plane().await;
    create_bindings(p.objects.store(), n).await;
    let before = p.embedded.stats();
    let mut watch = p
        .objects
        .store()
        .watch(RB_PREFIX, p.objects.store().current_revision())
        .unwrap();
    let mut registry = prometheus_client::registry::Registry::default();
    let metrics = SchedulerMetrics::register(&mut registry);
    let start = Instant::now();
    let _task = scheduler::spawn(
        p.objects.clone(),
        metrics,
        SchedulerConfig::default(),
        p.stopped.clone(),
    )
    .unwrap();
    let mut done = HashSet::new();
    while done.len() < n {
        match tokio::time::timeout(Duration::from_secs(120), watch.events.recv()).await {
            Ok(Some(Ok(Event::Put { kv, .. }))) => {
                if is_scheduled(&kv.value) {
                    done.insert(kv.key);
                }
            }
            Ok(Some(Ok(_))) => {}
            other => panic!("watch ended after {} scheduled: {other:?}", done.len()),
        }
    }
    let elapsed = start.elapsed();
    let after = p.embedded.stats();
    (
        elapsed,
        after.commits - before.commits,
        after.writes - before.writes,
    )
}

/// Karmada's pattern: one binding at a time, three sequential writes each.
async fn baseline_run(n: usize) -> Duration {
    let p = plane().await;
    create_bindings(p.objects.store(), n).await;
    let rb = p
        .objects
        .kind("work.hami.io/v1alpha2", "ResourceBinding")
        .unwrap();
    let start = Instant::now();
    let clusters: Vec<ClusterView> = p
        .objects
        .store()
        .list("/registry/cluster.hami.io/clusters/", None, 0)
        .unwrap()
        .items
        .iter()
        .map(|kv| ClusterView::from_cluster(&serde_json::from_slice(&kv.value).unwrap()))
        .collect();
    let names: Vec<String> = p
        .objects
        .store()
        .list(RB_PREFIX, None, 0)
        .unwrap()
        .items
        .iter()
        .map(|kv| kv.key.rsplit('/').next().unwrap().to_string())
        .collect();
    for name in names {
        let ns = Some("default");
        let current = p.objects.get(&rb, ns, &name).unwrap().unwrap();
        let spec = serde_json::from_value(current.object["spec"].clone()).unwrap();
        let view = BindingView::from_spec(&format!("default/{name}"), &spec, false);
        let d = schedule(&view, &clusters, &vec![None; clusters.len()]).unwrap();
        // Write 1: spec.clusters.
        let mut new = current.object.clone();
        new["spec"]["clusters"] = json!(d.clusters);
        p.objects
            .write(&rb, ns, &name, &current, new, |_| {})
            .await
            .unwrap();
        // Write 2: the Scheduled condition.
        let current = p.objects.get(&rb, ns, &name).unwrap().unwrap();
        let mut new = current.object.clone();
        new["status"] = json!({"conditions": [{"type": "Scheduled", "status": "True",
            "reason": "Success", "message": "", "lastTransitionTime": meta::now_rfc3339()}]});
        p.objects
            .write(&rb, ns, &name, &current, new, |_| {})
            .await
            .unwrap();
        // Write 3: the observed generation.
        let current = p.objects.get(&rb, ns, &name).unwrap().unwrap();
        let mut new = current.object.clone();
        new["status"]["schedulerObservedGeneration"] =
            current.object["metadata"]["generation"].clone();
        p.objects
            .write(&rb, ns, &name, &current, new, |_| {})
            .await
            .unwrap();
    }
    start.elapsed()
}

fn main() {
    // `cargo bench` passes `--bench`; a filter that names another bench skips this one.
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    if args.iter().any(|a| !"scheduling".contains(a.as_str())) {
        return;
    }
    let n = env_usize("HAMI_BENCH_BINDINGS", 10_000);
    let base_n = env_usize("HAMI_BENCH_BASELINE_BINDINGS", 1_000);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let (elapsed, commits, writes) = hami_run(n).await;
        let rate = n as f64 / elapsed.as_secs_f64();
        println!(
            "scheduling/hami: {n} bindings, {CLUSTERS} clusters, embedded store: {:.2} s, {rate:.0} bindings/s ({writes} writes in {commits} commits, {:.1} writes/commit)",
            elapsed.as_secs_f64(),
            writes as f64 / commits.max(1) as f64
        );
        let base = baseline_run(base_n).await;
        let base_rate = base_n as f64 / base.as_secs_f64();
        println!(
            "scheduling/baseline (3 sequential writes per decision): {base_n} bindings: {:.2} s, {base_rate:.0} bindings/s",
            base.as_secs_f64()
        );
        println!("scheduling: hami / baseline = {:.1}x", rate / base_rate);
    });
}
