//! The burst harness: a fleet with room for every replica, member watches
//! that record every Deployment DELETE, the burst itself (N Deployments of
//! 2 replicas created concurrently, then one PropagationPolicy for all),
//! the wait until every binding is applied and every replica runs where it
//! was placed, and the checks at the end.
//!
//! What it plays, and how the real peers behave:
//! * The user is a kube-rs client creating Deployments 16 at a time, as a
//!   GitOps tool's apply burst does (each create a POST of its own).
//! * The member watches are what `kubectl get deploy -w` is: a list, then a
//!   watch from its resourceVersion with bookmarks, resumed from the last
//!   resourceVersion when the server ends it (kube-apiserver ends watches
//!   after their timeout), relisted on 410 Gone; a name that vanished
//!   between two lists counts as a DELETE too, so nothing slips through a
//!   gap.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use hami_api::binding::ResourceBinding;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Namespace;
use kube::Api;
use kube::api::{ListParams, PostParams, WatchEvent, WatchParams};
use parking_lot::Mutex;
use serde_json::json;

use crate::support::http_get;

/// The namespace of the burst.
pub const NS: &str = "burst";
/// Replicas per Deployment.
pub const REPLICAS: i32 = 2;

/// Deployments of a run: `HAMI_BURST_DEPLOYMENTS`, else `default`.
pub fn deployments(default: usize) -> usize {
    std::env::var("HAMI_BURST_DEPLOYMENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The fault plan every variant runs under: watches fall behind after 400
/// to 800 events (several times per controller during propagation), 5% of
/// Work writes fail (half of them after taking effect).
pub fn fault_env() -> Vec<(&'static str, String)> {
    if !faults_on() {
        return Vec::new();
    }
    vec![
        ("HAMI_FAULT_WATCH_BEHIND_AFTER", "400".into()),
        ("HAMI_FAULT_WRITE_FAIL_RATIO", "0.05".into()),
        ("HAMI_FAULT_SEED", seed().to_string()),
    ]
}

/// False with `HAMI_BURST_FAULTS=off`: the same burst with nothing
/// injected, to see whether the watches keep up on their own.
pub fn faults_on() -> bool {
    std::env::var("HAMI_BURST_FAULTS").as_deref() != Ok("off")
}

/// `HAMI_BURST_SEED`, else the clock (each run of the script differs).
pub fn seed() -> u64 {
    static SEED: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *SEED.get_or_init(|| {
        std::env::var("HAMI_BURST_SEED")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_secs())
                    .unwrap_or(1)
            })
    })
}

/// One member fleet: 20 CPU nodes with room for 250 pods each (5,000 per
/// member), so all replicas fit wherever they are placed.
pub fn write_fleet(dir: &Path) -> PathBuf {
    let mut text = String::from("cluster: member\nnodes:\n");
    for i in 0..20 {
        text.push_str(&format!(
            "  - name: node-{i:02}\n    allocatable: {{cpu: \"64\", memory: 256Gi, pods: \"250\"}}\n    ready: true\n"
        ));
    }
    let path = dir.join("fleet.yaml");
    std::fs::write(&path, text).expect("write the fleet");
    path
}

/// A kube client from a kubeconfig file.
pub async fn client(kubeconfig: &Path) -> kube::Client {
    let kc = kube::config::Kubeconfig::read_from(kubeconfig).expect("read kubeconfig");
    let config = kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .expect("kubeconfig");
    kube::Client::try_from(config).expect("client")
}

/// Waits until `n` Clusters are Ready (their kubeconfigs are written by
/// then).
pub async fn wait_members_ready(control: &kube::Client, n: usize) {
    crate::support::clusters_ready(&Api::all(control.clone()), n, 120).await;
}

/// What a member watch saw.
#[derive(Default)]
pub struct Seen {
    pub deletes: Vec<String>,
    pub events: u64,
    pub relists: u64,
}

/// A watch on one member's Deployments in every namespace, from before
/// the burst to the end.
pub struct MemberWatch {
    pub member: String,
    pub seen: Arc<Mutex<Seen>>,
    task: tokio::task::JoinHandle<()>,
}

impl MemberWatch {
    pub async fn start(member: &str, client: kube::Client) -> MemberWatch {
        let api: Api<Deployment> = Api::all(client);
        let seen = Arc::new(Mutex::new(Seen::default()));
        let first = api
            .list(&ListParams::default())
            .await
            .expect("list the member's Deployments");
        let rv = first.metadata.resource_version.clone().unwrap_or_default();
        let known: BTreeSet<String> = first.items.iter().map(key_of).collect();
        let task = tokio::spawn(watch_loop(api, rv, known, seen.clone()));
        MemberWatch {
            member: member.to_string(),
            seen,
            task,
        }
    }

    pub fn deletes(&self) -> Vec<String> {
        self.seen.lock().deletes.clone()
    }
}

impl Drop for MemberWatch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn key_of(d: &Deployment) -> String {
    format!(
        "{}/{}",
        d.metadata.namespace.as_deref().unwrap_or_default(),
        d.metadata.name.as_deref().unwrap_or_default()
    )
}

async fn watch_loop(
    api: Api<Deployment>,
    mut rv: String,
    mut known: BTreeSet<String>,
    seen: Arc<Mutex<Seen>>,
) {
    loop {
        let params = WatchParams::default().timeout(120);
        let stream = match api.watch(&params, &rv).await {
            Ok(s) => s,
            Err(_) => {
                // The member is out of reach for a moment: resume.
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        let mut stream = std::pin::pin!(stream);
        let mut gone = false;
        while let Some(event) = stream.next().await {
            match event {
                Ok(WatchEvent::Added(d)) | Ok(WatchEvent::Modified(d)) => {
                    known.insert(key_of(&d));
                    rv = d.metadata.resource_version.clone().unwrap_or(rv);
                    seen.lock().events += 1;
                }
                Ok(WatchEvent::Deleted(d)) => {
                    known.remove(&key_of(&d));
                    rv = d.metadata.resource_version.clone().unwrap_or(rv);
                    let mut s = seen.lock();
                    s.events += 1;
                    s.deletes.push(key_of(&d));
                }
                Ok(WatchEvent::Bookmark(b)) => rv = b.metadata.resource_version,
                Ok(WatchEvent::Error(e)) if e.code == 410 => {
                    gone = true;
                    break;
                }
                Ok(WatchEvent::Error(_)) | Err(_) => break,
            }
        }
        if gone {
            // Too old to resume: list again; what vanished was deleted.
            let Ok(list) = api.list(&ListParams::default()).await else {
                continue;
            };
            let now: BTreeSet<String> = list.items.iter().map(key_of).collect();
            let mut s = seen.lock();
            s.relists += 1;
            s.deletes.extend(known.difference(&now).cloned());
            known = now;
            rv = list.metadata.resource_version.unwrap_or_default();
        }
    }
}

/// Creates the namespace and `n` Deployments of [`REPLICAS`] (100m CPU,
/// 64Mi each), 16 requests at a time; retries a failed create.
pub async fn create_deployments(control: &kube::Client, n: usize) {
    let namespaces: Api<Namespace> = Api::all(control.clone());
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": NS}})).unwrap();
    match namespaces.create(&PostParams::default(), &ns).await {
        Ok(_) => {}
        Err(kube::Error::Api(e)) if e.code == 409 => {}
        Err(e) => panic!("create namespace {NS}: {e}"),
    }
    let api: Api<Deployment> = Api::namespaced(control.clone(), NS);
    futures::stream::iter(0..n)
        .map(|i| {
            let api = api.clone();
            async move {
                let name = deployment_name(i);
                let d: Deployment = serde_json::from_value(json!({
                    "metadata": {"name": name, "labels": {"app": "burst"}},
                    "spec": {
                        "replicas": REPLICAS,
                        "selector": {"matchLabels": {"app": name}},
                        "template": {
                            "metadata": {"labels": {"app": name}},
                            "spec": {"containers": [{
                                "name": "app",
                                "image": "nginx:1.27",
                                "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}},
                            }]},
                        },
                    },
                }))
                .unwrap();
                for attempt in 0.. {
                    match api.create(&PostParams::default(), &d).await {
                        Ok(_) => return,
                        Err(kube::Error::Api(e)) if e.code == 409 => return,
                        Err(e) if attempt < 20 => {
                            eprintln!("create {name}: {e}; again");
                            tokio::time::sleep(Duration::from_millis(200)).await;
                        }
                        Err(e) => panic!("create {name}: {e}"),
                    }
                }
            }
        })
        .buffer_unordered(16)
        .collect::<Vec<()>>()
        .await;
}

pub fn deployment_name(i: usize) -> String {
    format!("app-{i:04}")
}

/// One PropagationPolicy for every Deployment of the namespace, divided by
/// what each member's estimator says fits (dynamic weight).
pub async fn apply_policy(control: &kube::Client) {
    let api: Api<hami_api::propagation::PropagationPolicy> = Api::namespaced(control.clone(), NS);
    let pp = serde_json::from_value(json!({
        "apiVersion": "policy.hami.io/v1alpha1",
        "kind": "PropagationPolicy",
        "metadata": {"name": "burst", "namespace": NS},
        "spec": {
            "resourceSelectors": [{"apiVersion": "apps/v1", "kind": "Deployment"}],
            "placement": {"replicaScheduling": {
                "replicaSchedulingType": "Divided",
                "replicaDivisionPreference": "Weighted",
                "weightPreference": {"dynamicWeight": "AvailableReplicas"},
            }},
        },
    }))
    .expect("policy");
    api.create(&PostParams::default(), &pp)
        .await
        .expect("create the policy");
}

/// Where propagation stands.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Progress {
    pub bindings: usize,
    pub fully_applied: usize,
    /// Placements (binding × target cluster) whose member Deployment has
    /// as many ready replicas as placed there.
    pub placements: usize,
    pub placements_ready: usize,
    /// Bindings every one of whose placements is ready, replicas summing
    /// to [`REPLICAS`].
    pub bindings_running: usize,
    /// Works in the members' execution namespaces.
    pub works: usize,
}

impl Progress {
    pub fn done(&self, n: usize) -> bool {
        self.bindings == n && self.fully_applied == n && self.bindings_running == n
    }
}

/// Reads where propagation stands from the control plane and the members.
pub async fn progress(
    control: &kube::Client,
    members: &BTreeMap<String, kube::Client>,
) -> Result<Progress, String> {
    let rbs: Api<ResourceBinding> = Api::namespaced(control.clone(), NS);
    let bindings = rbs
        .list(&ListParams::default())
        .await
        .map_err(|e| format!("list bindings: {e}"))?;
    let works: Api<hami_api::work::Work> = Api::all(control.clone());
    let work_count = works
        .list(&ListParams::default())
        .await
        .map_err(|e| format!("list works: {e}"))?
        .items
        .iter()
        .filter(|w| {
            w.metadata
                .namespace
                .as_deref()
                .is_some_and(|n| n.starts_with("hami-es-"))
        })
        .count();
    let mut ready: BTreeMap<(String, String), i32> = BTreeMap::new();
    for (member, c) in members {
        let api: Api<Deployment> = Api::namespaced(c.clone(), NS);
        let list = api
            .list(&ListParams::default())
            .await
            .map_err(|e| format!("list {member}'s Deployments: {e}"))?;
        for d in list.items {
            let spec = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
            let r = d
                .status
                .as_ref()
                .and_then(|s| s.ready_replicas)
                .unwrap_or(0);
            // Ready as placed: the member runs what its Work asks for.
            ready.insert(
                (member.clone(), d.metadata.name.unwrap_or_default()),
                if r == spec { r } else { -1 },
            );
        }
    }
    let mut p = Progress {
        works: work_count,
        ..Progress::default()
    };
    for b in &bindings.items {
        p.bindings += 1;
        let applied = b.status.as_ref().is_some_and(|s| {
            s.conditions
                .iter()
                .any(|c| c.type_ == "FullyApplied" && c.status == "True")
        });
        p.fully_applied += usize::from(applied);
        let mut all = !b.spec.clusters.is_empty();
        let mut sum = 0;
        for t in &b.spec.clusters {
            p.placements += 1;
            let got = ready
                .get(&(t.name.clone(), b.spec.resource.name.clone()))
                .copied();
            if got == Some(t.replicas) {
                p.placements_ready += 1;
            } else {
                all = false;
            }
            sum += t.replicas;
        }
        p.bindings_running += usize::from(all && sum == REPLICAS);
    }
    Ok(p)
}

/// Waits until [`Progress::done`], printing progress every 10 s; fails
/// with the last progress after `limit`.
pub async fn wait_propagated(
    control: &kube::Client,
    members: &BTreeMap<String, kube::Client>,
    n: usize,
    limit: Duration,
    mut on_progress: impl FnMut(&Progress),
) -> Duration {
    let start = Instant::now();
    let mut last_print = Instant::now();
    let mut last = Progress::default();
    loop {
        match progress(control, members).await {
            Ok(p) => {
                on_progress(&p);
                if p.done(n) {
                    return start.elapsed();
                }
                last = p;
            }
            Err(e) => eprintln!("[burst] progress unreadable: {e}"),
        }
        if last_print.elapsed() > Duration::from_secs(10) {
            eprintln!("[burst] {:>5.0}s {last:?}", start.elapsed().as_secs_f64());
            last_print = Instant::now();
        }
        assert!(
            start.elapsed() < limit,
            "not propagated within {limit:?}: {last:?} of {n}"
        );
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

/// The sum of a metric's samples (all label sets matching `labels`, each
/// `key="value"`) on `/metrics` of `addr`; 0 when absent.
pub fn metric(addr: &str, name: &str, labels: &[&str]) -> f64 {
    let (_, body) = http_get(addr, "/metrics").unwrap_or_default();
    sum_metric(&body, name, labels)
}

pub fn sum_metric(text: &str, name: &str, labels: &[&str]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let bare = series.split('{').next()?;
            if bare != name || !labels.iter().all(|want| series.contains(want)) {
                return None;
            }
            value.parse::<f64>().ok()
        })
        .sum()
}

/// The result of one run, printed as one line the script collects.
#[derive(Debug, Default)]
pub struct Report {
    pub variant: &'static str,
    pub deployments: usize,
    pub seed: u64,
    pub create_s: f64,
    pub propagate_s: f64,
    pub relists: f64,
    pub watch_faults: f64,
    pub write_faults: f64,
    pub binding_retries: f64,
    pub work_creates: f64,
    pub namespace_deletes: f64,
    pub agent_deletes: f64,
    pub member_deletes: usize,
    pub deletes_refused: f64,
    pub restarts: u32,
}

impl Report {
    pub fn print(&self) {
        eprintln!(
            "BURST RESULT variant={}{} deployments={} seed={} create={:.0}s propagate={:.0}s relists={} watch_faults={} write_faults={} binding_retries={} work_creates={} namespace_deletes={} agent_deletes={} member_deletes={} deletes_refused={} restarts={}",
            self.variant,
            if faults_on() { "" } else { "-nofaults" },
            self.deployments,
            self.seed,
            self.create_s,
            self.propagate_s,
            self.relists,
            self.watch_faults,
            self.write_faults,
            self.binding_retries,
            self.work_creates,
            self.namespace_deletes,
            self.agent_deletes,
            self.member_deletes,
            self.deletes_refused,
            self.restarts,
        );
    }

    /// Reads the control plane's counters (added to what earlier control
    /// plane processes of the same run reported).
    pub fn add_control(&mut self, text: &str) {
        self.relists += sum_metric(text, "hami_feed_relists_total", &[]);
        self.watch_faults += sum_metric(
            text,
            "hami_store_injected_faults_total",
            &["fault=\"watch_behind\""],
        );
        self.write_faults += sum_metric(
            text,
            "hami_store_injected_faults_total",
            &["fault=\"write_failed"],
        );
        self.binding_retries += sum_metric(text, "hami_binding_retries_total", &[]);
        self.work_creates += sum_metric(text, "hami_binding_work_writes_total", &["op=\"create\""]);
        self.namespace_deletes += sum_metric(
            text,
            "hami_binding_work_writes_total",
            &["op=\"namespace_delete\""],
        );
        self.agent_deletes += sum_metric(text, "hami_agent_applies_total", &["result=\"deleted\""]);
        self.deletes_refused += sum_metric(text, "hami_binding_deletes_refused_total", &[])
            + sum_metric(text, "hami_detector_deletes_refused_total", &[]);
    }

    /// The checks every variant makes at the end.
    pub fn check(&self, watches: &[MemberWatch]) {
        for w in watches {
            let d = w.deletes();
            assert!(
                d.is_empty(),
                "{} saw {} Deployments deleted, e.g. {:?}",
                w.member,
                d.len(),
                &d[..d.len().min(5)]
            );
        }
        assert_eq!(self.member_deletes, 0);
        assert_eq!(self.namespace_deletes, 0.0, "execution namespaces deleted");
        assert_eq!(self.agent_deletes, 0.0, "agents deleted member objects");
        if faults_on() {
            assert!(
                self.watch_faults >= 3.0 && self.relists >= 3.0,
                "watches were to fall behind several times: {} faults, {} relists",
                self.watch_faults,
                self.relists
            );
            assert!(self.write_faults >= 1.0, "no Work write failed");
        } else {
            // Nothing injected: the watches keep up with the burst alone.
            assert_eq!(self.relists, 0.0, "a controller's watch fell behind");
        }
    }
}
