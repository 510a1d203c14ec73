//! The simulator's IO: one watch per kind feeding a reflector store (and, for
//! Nodes and Pods, the binder), a workload loop that runs the pure
//! reconcilers of [`super::workloads`] plus a garbage collector, and a binder
//! loop that runs [`Binder::decide`]. Each loop is the single writer of its
//! decisions. A watch that fails retries with backoff; an object that cannot
//! be read is skipped with a warning and a counter.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use futures::{FutureExt, StreamExt};
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Node, Pod, ResourceQuota};
use kube::Resource;
use kube::api::Api;
use kube::runtime::WatchStreamExt;
use kube::runtime::reflector::{self, Store};
use kube::runtime::watcher::{self, Event};
use parking_lot::Mutex;
use tokio::sync::{Notify, watch};

use super::binder::Binder;
use super::metrics::{KindLabels, SimMetrics, WriteLabels};
use super::workloads;
use super::write::{self, Kind, Outcome, Write};

/// Field manager of the simulator's writes.
pub const MANAGER: &str = "hami-sim";

/// Writes sent at once by one loop.
const CONCURRENT_WRITES: usize = 16;

/// What the loops share.
pub(crate) struct Ctx {
    pub client: kube::Client,
    pub metrics: SimMetrics,
    pub binder: Mutex<Binder>,
    pub workloads_changed: Notify,
    pub binder_changed: Notify,
    pub stop: watch::Receiver<bool>,
}

fn now_ms() -> i64 {
    k8s_openapi::jiff::Timestamp::now().as_millisecond()
}

fn now_str() -> String {
    format!("{:.0}", k8s_openapi::jiff::Timestamp::now())
}

/// Sends writes with bounded concurrency; returns those that failed.
async fn send_all(ctx: &Ctx, writes: Vec<Write>) -> Vec<Write> {
    let results: Vec<(Write, Outcome)> = futures::stream::iter(writes)
        .map(|w| async move {
            let o = write::send(&ctx.client, &w, MANAGER).await;
            (w, o)
        })
        .buffer_unordered(CONCURRENT_WRITES)
        .collect()
        .await;
    let mut failed = Vec::new();
    for (w, o) in results {
        let outcome = match &o {
            Outcome::Done => "done",
            Outcome::Moot => "moot",
            Outcome::Failed(e) => {
                tracing::debug!(kind = w.kind().as_str(), verb = w.verb(), error = %e, "write failed");
                "failed"
            }
        };
        ctx.metrics
            .writes
            .get_or_create(&WriteLabels {
                kind: w.kind().as_str(),
                verb: w.verb(),
                outcome,
            })
            .inc();
        if matches!(o, Outcome::Failed(_)) {
            failed.push(w);
        }
    }
    failed
}

/// Runs a reflector over `api` until stop, calling `on` for each event.
async fn reflect<K>(
    ctx: Arc<Ctx>,
    api: Api<K>,
    writer: reflector::store::Writer<K>,
    kind: &'static str,
    mut on: impl FnMut(&Ctx, &Event<K>),
) where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + Send
        + Sync
        + 'static,
{
    let stream = reflector::reflector(
        writer,
        watcher::watcher(api, watcher::Config::default()).default_backoff(),
    );
    let mut stream = std::pin::pin!(stream);
    let mut stop = ctx.stop.clone();
    let mut failing = false;
    loop {
        tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            item = stream.next() => match item {
                None => return,
                Some(Ok(ev)) => {
                    failing = false;
                    on(&ctx, &ev);
                }
                Some(Err(e)) => {
                    ctx.metrics.watch_errors.get_or_create(&KindLabels { kind }).inc();
                    if !failing {
                        tracing::warn!(kind, error = %e, "watch failed; retrying with backoff");
                    }
                    failing = true;
                }
            }
        }
    }
}

/// The stores the workload loop reads.
pub(crate) struct Stores {
    pub deployments: Store<Deployment>,
    pub replicasets: Store<ReplicaSet>,
    pub statefulsets: Store<StatefulSet>,
    pub jobs: Store<Job>,
    pub pods: Store<Pod>,
    pub quotas: Store<ResourceQuota>,
}

/// Starts every watch and loop; they end when `ctx.stop` turns true.
pub(crate) fn spawn_all(ctx: Arc<Ctx>) -> Vec<tokio::task::JoinHandle<()>> {
    let client = ctx.client.clone();
    let mut tasks = Vec::new();
    macro_rules! workload_store {
        ($t:ty, $kind:expr) => {{
            let (reader, writer) = reflector::store::<$t>();
            tasks.push(tokio::spawn(reflect(
                ctx.clone(),
                Api::<$t>::all(client.clone()),
                writer,
                $kind,
                |c, _| c.workloads_changed.notify_one(),
            )));
            reader
        }};
    }
    let deployments = workload_store!(Deployment, "Deployment");
    let replicasets = workload_store!(ReplicaSet, "ReplicaSet");
    let statefulsets = workload_store!(StatefulSet, "StatefulSet");
    let jobs = workload_store!(Job, "Job");
    let quotas = workload_store!(ResourceQuota, "ResourceQuota");

    let (pods, pod_writer) = reflector::store::<Pod>();
    let mut seen: BTreeSet<(String, String)> = BTreeSet::new();
    tasks.push(tokio::spawn(reflect(
        ctx.clone(),
        Api::<Pod>::all(client.clone()),
        pod_writer,
        "Pod",
        move |c, ev| {
            {
                let mut b = c.binder.lock();
                let apply = |b: &mut Binder, p: &Pod| {
                    if let Err(e) = b.apply_pod(p) {
                        c.metrics
                            .skipped
                            .get_or_create(&KindLabels { kind: "Pod" })
                            .inc();
                        tracing::warn!(pod = ?p.metadata.name, error = %e, "pod skipped");
                    }
                };
                match ev {
                    Event::Apply(p) => apply(&mut b, p),
                    Event::Delete(p) => b.delete_pod(
                        p.metadata.namespace.as_deref().unwrap_or_default(),
                        p.metadata.name.as_deref().unwrap_or_default(),
                    ),
                    Event::Init => seen.clear(),
                    Event::InitApply(p) => {
                        seen.insert((
                            p.metadata.namespace.clone().unwrap_or_default(),
                            p.metadata.name.clone().unwrap_or_default(),
                        ));
                        apply(&mut b, p);
                    }
                    Event::InitDone => {
                        for (ns, name) in b.pod_keys() {
                            if !seen.contains(&(ns.clone(), name.clone())) {
                                b.delete_pod(&ns, &name);
                            }
                        }
                    }
                }
            }
            c.binder_changed.notify_one();
            c.workloads_changed.notify_one();
        },
    )));

    let (_nodes, node_writer) = reflector::store::<Node>();
    let mut seen_nodes: BTreeSet<String> = BTreeSet::new();
    tasks.push(tokio::spawn(reflect(
        ctx.clone(),
        Api::<Node>::all(client.clone()),
        node_writer,
        "Node",
        move |c, ev| {
            {
                let mut b = c.binder.lock();
                let apply = |b: &mut Binder, n: &Node| {
                    if let Err(e) = b.apply_node(n) {
                        c.metrics
                            .skipped
                            .get_or_create(&KindLabels { kind: "Node" })
                            .inc();
                        tracing::warn!(node = ?n.metadata.name, error = %e, "node skipped");
                    }
                };
                match ev {
                    Event::Apply(n) => apply(&mut b, n),
                    Event::Delete(n) => {
                        b.delete_node(n.metadata.name.as_deref().unwrap_or_default())
                    }
                    Event::Init => seen_nodes.clear(),
                    Event::InitApply(n) => {
                        seen_nodes.insert(n.metadata.name.clone().unwrap_or_default());
                        apply(&mut b, n);
                    }
                    Event::InitDone => {
                        for name in b.node_names() {
                            if !seen_nodes.contains(&name) {
                                b.delete_node(&name);
                            }
                        }
                    }
                }
            }
            c.binder_changed.notify_one();
        },
    )));

    let stores = Stores {
        deployments,
        replicasets,
        statefulsets,
        jobs,
        pods,
        quotas,
    };
    tasks.push(tokio::spawn(workload_loop(ctx.clone(), stores)));
    tasks.push(tokio::spawn(binder_loop(ctx)));
    tasks
}

/// Waits for a change (or `tick`), then a short pause so that a burst of
/// events makes one pass. False when stopping.
async fn next_pass(ctx: &Ctx, notify: &Notify, tick: Duration) -> bool {
    let mut stop = ctx.stop.clone();
    tokio::select! {
        _ = stop.wait_for(|s| *s) => return false,
        _ = notify.notified() => {}
        _ = tokio::time::sleep(tick) => {}
    }
    tokio::time::sleep(Duration::from_millis(20)).await;
    !*ctx.stop.borrow()
}

async fn workload_loop(ctx: Arc<Ctx>, s: Stores) {
    for ready in [
        s.deployments.wait_until_ready().boxed(),
        s.replicasets.wait_until_ready().boxed(),
        s.statefulsets.wait_until_ready().boxed(),
        s.jobs.wait_until_ready().boxed(),
        s.pods.wait_until_ready().boxed(),
        s.quotas.wait_until_ready().boxed(),
    ] {
        let mut stop = ctx.stop.clone();
        tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            r = ready => if r.is_err() { return },
        }
    }
    while next_pass(&ctx, &ctx.workloads_changed, Duration::from_secs(1)).await {
        let writes = workload_pass(&s, &now_str());
        let gc = garbage(&s);
        let mut confirmed = Vec::new();
        for (w, owner) in gc {
            if owner_gone(&ctx.client, &owner).await {
                confirmed.push(w);
            }
        }
        let failed = send_all(&ctx, writes.into_iter().chain(confirmed).collect()).await;
        if !failed.is_empty() {
            // Try again soon; the API may be away.
            tokio::time::sleep(Duration::from_millis(200)).await;
            ctx.workloads_changed.notify_one();
        }
    }
}

/// One pass of every workload reconciler over the stores (pure but for the clock).
pub(crate) fn workload_pass(s: &Stores, now: &str) -> Vec<Write> {
    let pods = s.pods.state();
    let mut by_owner: HashMap<&str, Vec<&Pod>> = HashMap::new();
    for p in &pods {
        for r in p.metadata.owner_references.iter().flatten() {
            if r.controller == Some(true) {
                by_owner.entry(r.uid.as_str()).or_default().push(p);
            }
        }
    }
    let sets = s.replicasets.state();
    let mut sets_by_owner: HashMap<&str, Vec<&ReplicaSet>> = HashMap::new();
    for rs in &sets {
        for r in rs.metadata.owner_references.iter().flatten() {
            if r.controller == Some(true) {
                sets_by_owner.entry(r.uid.as_str()).or_default().push(rs);
            }
        }
    }
    let owned = |uid: &Option<String>| -> Vec<&Pod> {
        uid.as_deref()
            .and_then(|u| by_owner.get(u))
            .map(|v| v.iter().map(|p| &**p).collect())
            .unwrap_or_default()
    };
    let mut out = Vec::new();
    let mut deployments = s.deployments.state();
    deployments.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    for d in &deployments {
        let mine: Vec<&ReplicaSet> = d
            .metadata
            .uid
            .as_deref()
            .and_then(|u| sets_by_owner.get(u))
            .map(|v| v.iter().map(|r| &**r).collect())
            .unwrap_or_default();
        out.extend(workloads::reconcile_deployment(d, &mine, now));
    }
    for rs in &sets {
        out.extend(workloads::reconcile_replicaset(
            rs,
            &owned(&rs.metadata.uid),
        ));
    }
    for st in &s.statefulsets.state() {
        out.extend(workloads::reconcile_statefulset(
            st,
            &owned(&st.metadata.uid),
        ));
    }
    for j in &s.jobs.state() {
        out.extend(workloads::reconcile_job(j, &owned(&j.metadata.uid), now));
    }
    for q in &s.quotas.state() {
        let ns = q.metadata.namespace.as_deref();
        let in_ns: Vec<&Pod> = pods
            .iter()
            .filter(|p| p.metadata.namespace.as_deref() == ns)
            .map(|p| &**p)
            .collect();
        out.extend(super::quota::reconcile_quota(q, &in_ns));
    }
    out
}

/// An owner an object names as its controller.
#[derive(Debug, Clone)]
pub(crate) struct OwnerKey {
    kind: Kind,
    namespace: String,
    name: String,
    uid: String,
}

/// Objects whose controller is not in its store: candidates for deletion,
/// each with the owner to confirm gone first.
pub(crate) fn garbage(s: &Stores) -> Vec<(Write, OwnerKey)> {
    let uids = |v: Vec<Option<String>>| -> BTreeSet<String> { v.into_iter().flatten().collect() };
    let deploy = uids(
        s.deployments
            .state()
            .iter()
            .map(|o| o.meta().uid.clone())
            .collect(),
    );
    let rs = uids(
        s.replicasets
            .state()
            .iter()
            .map(|o| o.meta().uid.clone())
            .collect(),
    );
    let sts = uids(
        s.statefulsets
            .state()
            .iter()
            .map(|o| o.meta().uid.clone())
            .collect(),
    );
    let jobs = uids(
        s.jobs
            .state()
            .iter()
            .map(|o| o.meta().uid.clone())
            .collect(),
    );
    let mut out = Vec::new();
    let mut check = |meta: &kube::api::ObjectMeta, kind: Kind| {
        let ns = meta.namespace.clone().unwrap_or_default();
        for r in meta.owner_references.iter().flatten() {
            if r.controller != Some(true) {
                continue;
            }
            let (owner_kind, known) = match r.kind.as_str() {
                "Deployment" => (Kind::Deployment, &deploy),
                "ReplicaSet" => (Kind::ReplicaSet, &rs),
                "StatefulSet" => (Kind::StatefulSet, &sts),
                "Job" => (Kind::Job, &jobs),
                _ => continue,
            };
            if !known.contains(&r.uid) {
                out.push((
                    Write::Delete {
                        kind,
                        namespace: ns.clone(),
                        name: meta.name.clone().unwrap_or_default(),
                    },
                    OwnerKey {
                        kind: owner_kind,
                        namespace: ns.clone(),
                        name: r.name.clone(),
                        uid: r.uid.clone(),
                    },
                ));
            }
        }
    };
    for o in s.replicasets.state() {
        check(o.meta(), Kind::ReplicaSet);
    }
    for o in s.pods.state() {
        check(o.meta(), Kind::Pod);
    }
    out
}

/// Whether the owner is really gone (a GET answers 404 or another UID).
async fn owner_gone(client: &kube::Client, o: &OwnerKey) -> bool {
    async fn uid_of<K>(client: &kube::Client, ns: &str, name: &str) -> Result<Option<String>, ()>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
            + Clone
            + std::fmt::Debug
            + serde::de::DeserializeOwned,
    {
        match Api::<K>::namespaced(client.clone(), ns).get_opt(name).await {
            Ok(found) => Ok(found.and_then(|k| k.meta().uid.clone())),
            Err(_) => Err(()),
        }
    }
    let got = match o.kind {
        Kind::Deployment => uid_of::<Deployment>(client, &o.namespace, &o.name).await,
        Kind::ReplicaSet => uid_of::<ReplicaSet>(client, &o.namespace, &o.name).await,
        Kind::StatefulSet => uid_of::<StatefulSet>(client, &o.namespace, &o.name).await,
        Kind::Job => uid_of::<Job>(client, &o.namespace, &o.name).await,
        Kind::Pod => uid_of::<Pod>(client, &o.namespace, &o.name).await,
        Kind::ResourceQuota => uid_of::<ResourceQuota>(client, &o.namespace, &o.name).await,
    };
    matches!(got, Ok(uid) if uid.as_deref() != Some(o.uid.as_str()))
}

async fn binder_loop(ctx: Arc<Ctx>) {
    while next_pass(&ctx, &ctx.binder_changed, Duration::from_millis(100)).await {
        let writes = {
            let mut b = ctx.binder.lock();
            let w = b.decide(now_ms());
            ctx.metrics.pending.set(b.pending() as i64);
            w
        };
        if writes.is_empty() {
            continue;
        }
        let binds = writes
            .iter()
            .filter(|w| matches!(w, Write::Merge { .. }))
            .count();
        let failed = send_all(&ctx, writes).await;
        let failed_binds = failed
            .iter()
            .filter(|w| matches!(w, Write::Merge { .. }))
            .count();
        ctx.metrics.bound.inc_by((binds - failed_binds) as u64);
        let mut b = ctx.binder.lock();
        for w in &failed {
            if let Write::Merge {
                namespace, name, ..
            }
            | Write::Status {
                namespace, name, ..
            } = w
            {
                b.write_failed(namespace, name);
            }
        }
    }
}
