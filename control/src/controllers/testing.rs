//! Test support for the controllers (compiled for tests only): an API
//! server state over a memory store, objects to put in it, and the relist
//! harness every controller's index is checked with.
//!
//! The relist harness plays a watch that falls behind mid-burst the way the
//! store's watch does: from some point on its events are lost (the channel
//! was closed), the feed lists again at the current revision and hands that
//! over as ONE `Reset`, then follows the events after it. Whatever the
//! controller makes of that must equal an index built from a fresh list of
//! the final state.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::sync::Arc;

use hami_apiserver::{ApiServer, ServerConfig, State, hami_kinds};
use hami_store::{KeyValue, MemoryStore, Store};
use serde_json::{Value, json};

use super::feed::Change;
use super::objects::Objects;

/// An API server state over a fresh memory store, with hami's kinds.
pub fn state() -> Arc<State> {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let mut registry = prometheus_client::registry::Registry::default();
    let metrics = hami_apiserver::metrics::ApiMetrics::register(&mut registry);
    let config = ServerConfig {
        validator: Some(hami_kinds::validator()),
        ..ServerConfig::default()
    };
    let (stop, rx) = tokio::sync::watch::channel(false);
    std::mem::forget(stop);
    let server = ApiServer::new(
        store,
        hami_kinds::registry().unwrap(),
        config,
        metrics,
        Arc::new(registry),
        rx,
    );
    server.state().clone()
}

/// [`Objects`] over [`state`], with `default` and `kube-system` created.
pub async fn objects() -> Objects {
    let s = state();
    hami_apiserver::deletion::ensure_default_namespaces(&s)
        .await
        .unwrap();
    Objects::new(s)
}

/// An Event recorder on `objects` whose writer runs as long as the test.
pub fn recorder(objects: &Objects) -> super::events::EventRecorder {
    let (stop, rx) = tokio::sync::watch::channel(false);
    std::mem::forget(stop);
    let metrics = super::events::EventMetrics::register(
        &mut prometheus_client::registry::Registry::default(),
    );
    super::events::spawn(objects.clone(), metrics, rx)
        .unwrap()
        .0
}

/// Creates `object` (its kind from apiVersion/kind) and answers it as stored.
pub async fn create(objects: &Objects, object: Value) -> Value {
    let kind = objects
        .kind(
            object["apiVersion"].as_str().unwrap(),
            object["kind"].as_str().unwrap(),
        )
        .unwrap();
    let ns = object
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .map(str::to_string);
    objects.create(&kind, ns.as_deref(), object).await.unwrap()
}

pub fn namespace(name: &str, labels: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}})
}

pub fn cluster(name: &str, labels: Value) -> Value {
    json!({
        "apiVersion": "cluster.hami.io/v1alpha1",
        "kind": "Cluster",
        "metadata": {"name": name, "labels": labels},
        "spec": {"syncMode": "Pull"},
    })
}

pub fn deployment(ns: &str, name: &str, replicas: i64) -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "c", "image": "nginx"}]},
            },
        },
    })
}

/// A ResourceBinding of Deployment `ns/name` placed on `clusters`.
pub fn binding(ns: &str, name: &str, clusters: &[(&str, i64)]) -> Value {
    json!({
        "apiVersion": "work.hami.io/v1alpha2",
        "kind": "ResourceBinding",
        "metadata": {
            "name": format!("{name}-deployment"),
            "namespace": ns,
            "labels": {"propagationpolicy.hami.io/namespace": ns, "propagationpolicy.hami.io/name": "pp"},
        },
        "spec": {
            "resource": {"apiVersion": "apps/v1", "kind": "Deployment", "namespace": ns, "name": name},
            "replicas": clusters.iter().map(|c| c.1).sum::<i64>(),
            "clusters": clusters.iter().map(|(c, r)| json!({"name": c, "replicas": r})).collect::<Vec<_>>(),
        },
    })
}

/// A Work of binding `ns/name` (its annotation) in `hami-es-<cluster>`.
pub fn work(cluster: &str, binding_ns: &str, binding_name: &str, image: &str) -> Value {
    json!({
        "apiVersion": "work.hami.io/v1alpha2",
        "kind": "Work",
        "metadata": {
            "name": format!("{binding_name}-w"),
            "namespace": format!("hami-es-{cluster}"),
            "annotations": {"work.hami.io/binding": format!("{binding_ns}/{binding_name}")},
        },
        "spec": {"workload": {"manifests": [{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": image}}]}},
    })
}

/// A store key → value map with revisions, in which the harness plays a
/// burst of writes.
#[derive(Default)]
pub struct Model {
    revision: u64,
    objects: BTreeMap<String, KeyValue>,
}

impl Model {
    pub fn put(&mut self, key: &str, value: &Value) -> Change {
        self.revision += 1;
        let create = self
            .objects
            .get(key)
            .map_or(self.revision, |kv| kv.create_revision);
        let kv = KeyValue {
            key: key.to_string(),
            value: serde_json::to_vec(value).unwrap(),
            create_revision: create,
            mod_revision: self.revision,
        };
        self.objects.insert(key.to_string(), kv.clone());
        Change::Apply(kv)
    }

    pub fn delete(&mut self, key: &str) -> Option<Change> {
        self.revision += 1;
        self.objects.remove(key).map(Change::Delete)
    }

    pub fn list(&self) -> Vec<KeyValue> {
        self.objects.values().cloned().collect()
    }
}

/// One write of a burst: put `value` at `key`, or delete `key`.
pub type Write = (String, Option<Value>);

/// Plays `writes` into `model`, handing each change to `feed`, except that
/// the watch falls behind at write `behind` and relists at write `relist`
/// (the changes in between are lost, the relist is one `Reset` of
/// everything at that point).
pub fn play(
    model: &mut Model,
    writes: &[Write],
    behind: usize,
    relist: usize,
    mut feed: impl FnMut(Change),
) {
    for (i, (key, value)) in writes.iter().enumerate() {
        if i == relist {
            feed(Change::Reset(model.list()));
        }
        let change = match value {
            Some(v) => Some(model.put(key, v)),
            None => model.delete(key),
        };
        let lost = i >= behind && i < relist;
        if let (Some(c), false) = (change, lost) {
            feed(c);
        }
    }
    if relist >= writes.len() {
        feed(Change::Reset(model.list()));
    }
}

/// SplitMix64, for reproducible bursts.
pub struct Rng(pub u64);

impl Rng {
    pub fn below(&mut self, n: usize) -> usize {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        ((z ^ (z >> 31)) % n.max(1) as u64) as usize
    }
}

/// A random burst of `len` writes over `pool` (key, versions of its
/// object): puts of a random version, and deletes.
pub fn burst(rng: &mut Rng, pool: &[(String, Vec<Value>)], len: usize) -> Vec<Write> {
    (0..len)
        .map(|_| {
            let (key, versions) = &pool[rng.below(pool.len())];
            if rng.below(5) == 0 {
                (key.clone(), None)
            } else {
                (
                    key.clone(),
                    Some(versions[rng.below(versions.len())].clone()),
                )
            }
        })
        .collect()
}

/// The table every controller's index is checked against: (seed, writes,
/// falls behind at, relists at). Relisting at the very end stands for a
/// watch that fell behind and listed once the burst was over.
pub const RELIST_CASES: [(u64, usize, usize, usize); 6] = [
    (1, 60, 0, 0),
    (2, 60, 10, 30),
    (3, 60, 30, 31),
    (4, 120, 5, 100),
    (5, 120, 60, 120),
    (6, 200, 150, 160),
];

/// One feed of a controller: the pool its burst draws from, and the
/// handler its changes go to.
pub struct FeedCase<S> {
    pub pool: Vec<(String, Vec<Value>)>,
    pub handle: fn(&S, Change),
}

/// Checks a controller's index against [`RELIST_CASES`]: for each case a
/// fresh state from `make`, a burst per feed played with the watch falling
/// behind and relisting mid-burst, then `read` of it must equal `read` of
/// another fresh state given one `Reset` per feed of the final lists.
pub async fn check_relists<S, T, F>(
    make: impl Fn() -> F,
    feeds: impl Fn(&S) -> Vec<FeedCase<S>>,
    read: impl Fn(&S) -> T,
) where
    F: std::future::Future<Output = S>,
    T: PartialEq + std::fmt::Debug,
{
    let empty = read(&make().await);
    let mut filled = 0;
    for (seed, len, behind, relist) in RELIST_CASES {
        let s = make().await;
        let fresh = make().await;
        let mut rng = Rng(seed);
        for feed in feeds(&s) {
            let burst = burst(&mut rng, &feed.pool, len);
            let mut model = Model::default();
            play(&mut model, &burst, behind, relist, |c| (feed.handle)(&s, c));
            (feed.handle)(&fresh, Change::Reset(model.list()));
        }
        let (got, want) = (read(&s), read(&fresh));
        filled += usize::from(want != empty);
        assert_eq!(
            got, want,
            "case seed {seed}: {len} writes, behind at {behind}, relist at {relist}"
        );
    }
    assert!(
        filled > 0,
        "every burst left the index empty: the pools index nothing"
    );
}

/// [`binding`] as the scheduler leaves it: generation 1 observed,
/// `Scheduled=True`, divided by available replicas, with `ready` replicas
/// reported per cluster and an eviction task from `evicting` when given.
pub fn scheduled_binding(
    name: &str,
    clusters: &[(&str, i64)],
    ready: i64,
    evicting: Option<&str>,
) -> Value {
    let mut b = binding("default", name, clusters);
    b["metadata"]["generation"] = json!(1);
    b["spec"]["placement"] = json!({"replicaScheduling": {
        "replicaSchedulingType": "Divided",
        "replicaDivisionPreference": "Weighted",
        "weightPreference": {"dynamicWeight": "AvailableReplicas"},
    }});
    if let Some(from) = evicting {
        b["spec"]["gracefulEvictionTasks"] = json!([{
            "fromCluster": from, "replicas": 1, "reason": "TaintUntolerated",
            "producer": "TaintManager", "creationTimestamp": "2026-01-01T00:00:00Z",
        }]);
    }
    b["status"] = json!({
        "schedulerObservedGeneration": 1,
        "conditions": [{"type": "Scheduled", "status": "True", "reason": "Success",
                        "message": "", "lastTransitionTime": "2026-01-01T00:00:00Z"}],
        "aggregatedStatus": clusters.iter().map(|(c, _)| json!({
            "clusterName": c, "applied": true,
            "status": {"replicas": ready, "readyReplicas": ready},
        })).collect::<Vec<_>>(),
    });
    b
}

/// A Work of binding `default/<binding>` in `hami-es-<cluster>` as the
/// agent reports it: applied at generation 1, `ready` replicas ready.
pub fn reported_work(cluster: &str, binding: &str, ready: i64) -> Value {
    let mut w = work(cluster, "default", binding, "v1");
    w["metadata"]["generation"] = json!(1);
    w["status"] = json!({
        "conditions": [{"type": "Applied", "status": "True", "reason": "AppliedSuccessful",
                        "message": "", "observedGeneration": 1,
                        "lastTransitionTime": "2026-01-01T00:00:00Z"}],
        "manifestStatuses": [{
            "identifier": {"ordinal": 0, "group": "apps", "version": "v1", "kind": "Deployment",
                           "namespace": "default", "name": binding},
            "status": {"replicas": 2, "readyReplicas": ready},
            "health": "Healthy",
        }],
    });
    w
}

/// Pool entries for the ResourceBindings `web` and `api` in `default`,
/// keyed under `kind`, in versions a burst moves between.
pub fn binding_pool(kind: &hami_apiserver::ResourceKind) -> Vec<(String, Vec<Value>)> {
    ["web", "api"]
        .iter()
        .map(|app| {
            (
                Objects::key(kind, Some("default"), &format!("{app}-deployment")),
                vec![
                    scheduled_binding(app, &[("a", 1), ("b", 1)], 1, None),
                    scheduled_binding(app, &[("b", 2)], 0, Some("a")),
                    scheduled_binding(app, &[("a", 2)], 2, None),
                    binding("default", app, &[("c", 2)]),
                ],
            )
        })
        .collect()
}

/// Pool entries for the Clusters a, b and c, with and without a NoExecute
/// taint (its timeAdded set, as the health controller writes it).
pub fn cluster_pool(kind: &hami_apiserver::ResourceKind) -> Vec<(String, Vec<Value>)> {
    ["a", "b", "c"]
        .iter()
        .map(|c| {
            let mut tainted = cluster(c, json!({}));
            tainted["spec"]["taints"] = json!([{
                "key": "cluster.hami.io/unreachable", "effect": "NoExecute",
                "timeAdded": "2026-01-01T00:00:00Z",
            }]);
            let mut with_estimator = cluster(c, json!({}));
            with_estimator["metadata"]["annotations"] =
                json!({hami_api::cluster::ESTIMATOR_ENDPOINT_ANNOTATION: format!("127.0.0.1:{}", 10000 + u16::from(c.as_bytes()[0]))});
            (
                Objects::key(kind, None, c),
                vec![cluster(c, json!({})), tainted, with_estimator],
            )
        })
        .collect()
}
