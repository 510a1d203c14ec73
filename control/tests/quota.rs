//! Federated quota end to end, against the real `hami up` and its API:
//!
//! * `bad_quotas_are_refused_with_422_naming_the_field`: negative and
//!   malformed quantities and static assignments above `overall` get a 422
//!   whose message names the field; nothing is stored.
//! * `concurrent_scaling_never_exceeds_the_quota`: 8 clients scale 40 GPU
//!   Deployments of one namespace up and down for 30 s against a quota of 64
//!   GPUs (two simulated members with 80 GPUs between them); a watch on the
//!   ResourceBindings sees every revision, and at none of them do the
//!   assigned GPU replicas sum above 64. At the end the quota's status
//!   equals the usage recomputed from the bindings, overall and per cluster.
//! * `static_assignment_member_quota_and_waiting_binding`: a static
//!   assignment of 8 GPUs keeps member-1 at 8 though it has 32 free, the
//!   rest goes to member-2; member-1 holds the plain ResourceQuota and its
//!   usage flows back into `aggregatedStatus[].memberUsed`; a binding over
//!   quota shows `QuotaExceeded` in `kubectl describe` (condition and
//!   Event), stays refused across a SIGKILL and restart of the control
//!   plane, and is placed as soon as the other workload is deleted;
//!   `kubectl get frq` shows used/hard; `hami_quota_*` gauges follow.
//! * `a_larger_request_per_replica_waits_for_admission`: a placed
//!   Deployment of 2 × 1 GPU under a quota of 4 is edited with kubectl to 3
//!   GPUs per replica; the binding shows `QuotaExceeded` and the members'
//!   Deployments (watched from before the edit) never show anything but 1
//!   GPU per replica; a quota raise to 6 admits it and the 3-GPU shape goes
//!   out. A refused scale-up then still lets an image change through.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt;
use hami_api::binding::ResourceBinding;
use hami_api::quota::FederatedResourceQuota;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, ResourceQuota};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use parking_lot::Mutex;
use serde_json::{Value, json};
use support::{Hami, Timeline, eventually, kubectl};

/// `nodes` nodes of 8 whole GPUs (one share slot each) per member.
fn fleet(nodes: usize, prefix: &str) -> String {
    let mut out = String::from("nodes:\n");
    for n in 0..nodes {
        out.push_str(&format!(
            "- name: {prefix}-{n}\n  allocatable: {{cpu: \"256\", memory: 2Ti, pods: \"250\"}}\n  gpus:\n"
        ));
        for g in 0..8 {
            out.push_str(&format!(
                "  - {{id: {prefix}-{n}-{g}, model: NVIDIA-A100-SXM4-80GB, memoryMiB: 81920}}\n"
            ));
        }
    }
    out
}

fn indent_list(fleets: &[String]) -> String {
    fleets
        .iter()
        .map(|f| {
            let mut lines = f.lines();
            let first = lines.next().unwrap_or_default();
            let rest: Vec<String> = lines.map(|l| format!("  {l}")).collect();
            format!("- {first}\n{}\n", rest.join("\n"))
        })
        .collect()
}

fn gpu_deployment(ns: &str, name: &str, replicas: i32, gpumem: Option<&str>) -> Deployment {
    let mut limits = json!({"nvidia.com/gpu": "1"});
    if let Some(m) = gpumem {
        limits["nvidia.com/gpumem"] = json!(m);
    }
    serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{
                    "name": "main", "image": "hub.local/infer:1",
                    "resources": {"requests": {"cpu": "1"}, "limits": limits}
                }]}
            }
        }
    }))
    .unwrap()
}

/// Every Deployment of `ns`, divided by free GPUs over both members.
fn policy(ns: &str) -> Value {
    json!({
        "apiVersion": "policy.hami.io/v1alpha1", "kind": "PropagationPolicy",
        "metadata": {"name": "all", "namespace": ns},
        "spec": {
            "resourceSelectors": [{"apiVersion": "apps/v1", "kind": "Deployment"}],
            "placement": {
                "clusterAffinity": {"clusterNames": ["member-1", "member-2"]},
                "replicaScheduling": {
                    "replicaSchedulingType": "Divided",
                    "replicaDivisionPreference": "Weighted",
                    "weightPreference": {"dynamicWeight": "AvailableReplicas"}
                }
            }
        }
    })
}

/// Waits until both members are Ready and report `gpus` GPUs each.
/// `hami up --sim-clusters 2` in `dir` with members of `a` and `b`
/// (nodes, name prefix) of 8 GPUs per node, once both report their GPUs.
async fn two_members(
    dir: &std::path::Path,
    a: (usize, &str),
    b: (usize, &str),
) -> (Hami, kube::Client) {
    let fleets = dir.join("fleets.yaml");
    std::fs::write(&fleets, indent_list(&[fleet(a.0, a.1), fleet(b.0, b.1)])).unwrap();
    let hami = Hami::start_with_args(
        dir,
        "127.0.0.1:0",
        &["--sim-clusters", "2", "--fleet", fleets.to_str().unwrap()],
    );
    let client = hami.client().await;
    members_ready(&client, [a.0 as i64 * 8, b.0 as i64 * 8]).await;
    (hami, client)
}

async fn members_ready(client: &kube::Client, gpus: [i64; 2]) {
    let clusters: Api<hami_api::cluster::Cluster> = Api::all(client.clone());
    eventually("members Ready with their GPUs", 60, || async {
        for (name, want) in ["member-1", "member-2"].iter().zip(gpus) {
            let c = clusters.get(name).await.map_err(|e| e.to_string())?;
            let s = c.status.unwrap_or_default();
            let ready = s
                .conditions
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "True");
            let have: i64 = s.gpu_summary.iter().map(|g| g.count).sum();
            if !ready || have != want {
                return Err(format!("{name}: ready {ready}, {have} GPUs"));
            }
        }
        Ok(())
    })
    .await;
}

async fn create_namespace(client: &kube::Client, ns: &str) {
    let api: Api<Namespace> = Api::all(client.clone());
    let object: Namespace = serde_json::from_value(json!({"metadata": {"name": ns}})).unwrap();
    api.create(&PostParams::default(), &object).await.unwrap();
}

async fn create_policy(client: &kube::Client, ns: &str) {
    let api: Api<hami_api::propagation::PropagationPolicy> = Api::namespaced(client.clone(), ns);
    api.create(
        &PostParams::default(),
        &serde_json::from_value(policy(ns)).unwrap(),
    )
    .await
    .unwrap();
}

/// GPUs a binding holds: replicas per cluster × GPUs per replica.
fn gpus_by_cluster(rb: &ResourceBinding) -> BTreeMap<String, i64> {
    let per = rb
        .spec
        .replica_requirements
        .as_ref()
        .and_then(|r| r.gpu.as_ref())
        .map_or(0, |g| g.count);
    rb.spec
        .clusters
        .iter()
        .map(|t| (t.name.clone(), i64::from(t.replicas) * per))
        .collect()
}

fn gpus(rb: &ResourceBinding) -> i64 {
    gpus_by_cluster(rb).values().sum()
}

fn scheduled(rb: &ResourceBinding) -> Option<(String, String, String)> {
    rb.status.as_ref()?.conditions.iter().find_map(|c| {
        (c.type_ == "Scheduled").then(|| (c.status.clone(), c.reason.clone(), c.message.clone()))
    })
}

fn settled(rb: &ResourceBinding) -> bool {
    rb.status
        .as_ref()
        .and_then(|s| s.scheduler_observed_generation)
        .is_some_and(|g| Some(g) == rb.metadata.generation)
}

fn quantity(
    list: &BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>,
    k: &str,
) -> Option<String> {
    list.get(k).map(|q| q.0.clone())
}

fn quota(ns: &str, name: &str, spec: Value) -> FederatedResourceQuota {
    serde_json::from_value(json!({
        "apiVersion": "policy.hami.io/v1alpha1", "kind": "FederatedResourceQuota",
        "metadata": {"name": name, "namespace": ns},
        "spec": spec,
    }))
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_quotas_are_refused_with_422_naming_the_field() {
    let tmp = tempfile::tempdir().unwrap();
    let hami = Hami::start_with_args(tmp.path(), "127.0.0.1:0", &["--no-controllers"]);
    let client = hami.client().await;
    let api: Api<FederatedResourceQuota> = Api::namespaced(client, "default");
    let cases = [
        (
            "negative",
            json!({"overall": {"nvidia.com/gpu": "-1"}}),
            "spec.overall[nvidia.com/gpu]",
        ),
        (
            "malformed",
            json!({"overall": {"cpu": "lots"}}),
            "spec.overall[cpu]",
        ),
        (
            "static-above-overall",
            json!({"overall": {"nvidia.com/gpu": "8"}, "staticAssignments": [
                {"clusterName": "east", "hard": {"nvidia.com/gpu": "6"}},
                {"clusterName": "west", "hard": {"nvidia.com/gpu": "4"}}
            ]}),
            "spec.staticAssignments",
        ),
        (
            "static-not-in-overall",
            json!({"overall": {"cpu": "8"}, "staticAssignments": [
                {"clusterName": "east", "hard": {"nvidia.com/gpumem": "1000"}}
            ]}),
            "spec.staticAssignments[0].hard[nvidia.com/gpumem]",
        ),
    ];
    for (name, spec, field) in cases {
        match api
            .create(&PostParams::default(), &quota("default", name, spec))
            .await
        {
            Err(kube::Error::Api(s)) => {
                assert_eq!(s.code, 422, "{name}: {s:?}");
                assert!(s.message.contains(field), "{name}: {}", s.message);
            }
            other => panic!("{name}: expected 422, got {other:?}"),
        }
        assert!(api.get_opt(name).await.unwrap().is_none(), "{name} stored");
    }
    // The sum message names the resource and both numbers.
    let spec = json!({"overall": {"nvidia.com/gpu": "8"}, "staticAssignments": [
        {"clusterName": "east", "hard": {"nvidia.com/gpu": "9"}}]});
    let Err(kube::Error::Api(s)) = api
        .create(&PostParams::default(), &quota("default", "x", spec))
        .await
    else {
        panic!("expected 422");
    };
    assert!(
        s.message.contains("nvidia.com/gpu") && s.message.contains('9') && s.message.contains('8'),
        "{}",
        s.message
    );
    // A good one is stored, unknown cluster names included.
    let spec = json!({"overall": {"nvidia.com/gpu": "8"}, "staticAssignments": [
        {"clusterName": "not-registered", "hard": {"nvidia.com/gpu": "2"}}]});
    api.create(&PostParams::default(), &quota("default", "ok", spec))
        .await
        .unwrap();
}

const NS: &str = "team";
const DEPLOYMENTS: usize = 40;
const CLIENTS: u64 = 8;
const LIMIT: i64 = 64;

/// xorshift64*: a small deterministic generator per client.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_scaling_never_exceeds_the_quota() {
    let mut t = Timeline::new("quota-concurrency");
    let tmp = tempfile::tempdir().unwrap();
    let (_hami, client) = two_members(tmp.path(), (5, "a"), (5, "b")).await;
    t.mark("hami up --sim-clusters 2 (80 GPUs): members Ready");
    create_namespace(&client, NS).await;
    let quotas: Api<FederatedResourceQuota> = Api::namespaced(client.clone(), NS);
    quotas
        .create(
            &PostParams::default(),
            &quota(
                NS,
                "gpus",
                json!({"overall": {"nvidia.com/gpu": LIMIT.to_string()}}),
            ),
        )
        .await
        .unwrap();
    create_policy(&client, NS).await;

    // Watch every ResourceBinding revision of the namespace from the start.
    let bindings: Api<ResourceBinding> = Api::namespaced(client.clone(), NS);
    let seen: Arc<Mutex<BTreeMap<String, i64>>> = Arc::default();
    let max_seen = Arc::new(AtomicU64::new(0));
    let events = Arc::new(AtomicU64::new(0));
    let exceeded_seen = Arc::new(AtomicBool::new(false));
    let over: Arc<Mutex<Vec<String>>> = Arc::default();
    let watch = {
        let (seen, max_seen, events, exceeded_seen, over) = (
            seen.clone(),
            max_seen.clone(),
            events.clone(),
            exceeded_seen.clone(),
            over.clone(),
        );
        let stream = watcher::watcher(bindings.clone(), watcher::Config::default());
        tokio::spawn(async move {
            let mut stream = std::pin::pin!(stream);
            while let Some(e) = stream.next().await {
                let Ok(e) = e else { continue };
                let mut map = seen.lock();
                match e {
                    watcher::Event::Apply(rb) | watcher::Event::InitApply(rb) => {
                        if scheduled(&rb).is_some_and(|s| s.1 == "QuotaExceeded") {
                            exceeded_seen.store(true, Ordering::Relaxed);
                        }
                        map.insert(rb.metadata.name.clone().unwrap(), gpus(&rb));
                    }
                    watcher::Event::Delete(rb) => {
                        map.remove(&rb.metadata.name.clone().unwrap());
                    }
                    watcher::Event::Init => map.clear(),
                    watcher::Event::InitDone => {}
                }
                events.fetch_add(1, Ordering::Relaxed);
                let total: i64 = map.values().sum();
                max_seen.fetch_max(total as u64, Ordering::Relaxed);
                if total > LIMIT {
                    over.lock().push(format!("{total} GPUs assigned: {map:?}"));
                }
            }
        })
    };

    let deployments: Api<Deployment> = Api::namespaced(client.clone(), NS);
    for i in 0..DEPLOYMENTS {
        deployments
            .create(
                &PostParams::default(),
                &gpu_deployment(NS, &format!("gpu-{i:02}"), 1, None),
            )
            .await
            .unwrap();
    }
    eventually("40 bindings scheduled", 60, || async {
        let list = bindings
            .list(&ListParams::default())
            .await
            .map_err(|e| e.to_string())?;
        let done = list
            .items
            .iter()
            .filter(|rb| settled(rb) && scheduled(rb).is_some_and(|s| s.0 == "True"))
            .count();
        (done == DEPLOYMENTS)
            .then_some(())
            .ok_or(format!("{done} scheduled"))
    })
    .await;
    t.mark("40 Deployments of 1 GPU scheduled");

    // 8 clients scale at random for 30 s: 0..=4 replicas each, 2 on average,
    // so the namespace asks for about 80 GPUs against 64.
    let stop = Instant::now() + Duration::from_secs(30);
    let patches = Arc::new(AtomicU64::new(0));
    let mut clients = Vec::new();
    for c in 0..CLIENTS {
        let deployments = deployments.clone();
        let patches = patches.clone();
        clients.push(tokio::spawn(async move {
            let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ (c + 1).wrapping_mul(0xD1B5_4A32_D192_ED03));
            while Instant::now() < stop {
                let d = rng.next() % DEPLOYMENTS as u64;
                let replicas = rng.next() % 5;
                let patch = json!({"spec": {"replicas": replicas}});
                if deployments
                    .patch(
                        &format!("gpu-{d:02}"),
                        &PatchParams::default(),
                        &Patch::Merge(&patch),
                    )
                    .await
                    .is_ok()
                {
                    patches.fetch_add(1, Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(20 + rng.next() % 60)).await;
            }
        }));
    }
    for c in clients {
        c.await.unwrap();
    }
    t.mark(format!(
        "30 s of scaling: {} patches, {} binding revisions watched so far, max {} GPUs assigned",
        patches.load(Ordering::Relaxed),
        events.load(Ordering::Relaxed),
        max_seen.load(Ordering::Relaxed)
    ));

    // Quiet: every binding settled, and the status equals the usage
    // recomputed from the bindings, overall and per cluster.
    let (total, by_cluster) = eventually("status matches the recomputed usage", 60, || async {
        let list = bindings
            .list(&ListParams::default())
            .await
            .map_err(|e| e.to_string())?;
        if let Some(rb) = list.items.iter().find(|rb| !settled(rb)) {
            return Err(format!("{:?} not settled", rb.metadata.name));
        }
        let mut by_cluster: BTreeMap<String, i64> = BTreeMap::new();
        for rb in &list.items {
            for (c, n) in gpus_by_cluster(rb) {
                *by_cluster.entry(c).or_default() += n;
            }
        }
        let total: i64 = by_cluster.values().sum();
        let q = quotas.get("gpus").await.map_err(|e| e.to_string())?;
        let status = q.status.unwrap_or_default();
        let used = quantity(&status.overall_used, "nvidia.com/gpu");
        if used != Some(total.to_string()) {
            return Err(format!("status says {used:?}, bindings hold {total}"));
        }
        let lines: BTreeMap<String, i64> = status
            .aggregated_status
            .iter()
            .map(|l| {
                let v = quantity(&l.used, "nvidia.com/gpu")
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(-1);
                (l.cluster_name.clone(), v)
            })
            .filter(|(_, v)| *v != 0)
            .collect();
        let want: BTreeMap<String, i64> = by_cluster
            .iter()
            .filter(|(_, v)| **v != 0)
            .map(|(k, v)| (k.clone(), *v))
            .collect();
        if lines != want {
            return Err(format!("per cluster: status {lines:?}, bindings {want:?}"));
        }
        Ok((total, by_cluster))
    })
    .await;
    t.mark(format!(
        "settled: {total} GPUs in use {by_cluster:?}; status equal"
    ));
    watch.abort();
    t.print();

    let over = over.lock();
    assert!(
        over.is_empty(),
        "quota exceeded at some revision: {:?}",
        &over[..over.len().min(5)]
    );
    assert!(total <= LIMIT);
    assert!(
        exceeded_seen.load(Ordering::Relaxed),
        "the quota never refused anything: the test did not press it"
    );
    assert!(
        events.load(Ordering::Relaxed) > 500,
        "too few revisions watched: {}",
        events.load(Ordering::Relaxed)
    );
}

async fn member_client(hami: &Hami, name: &str) -> kube::Client {
    let path = hami
        .data_dir
        .join("members")
        .join(format!("{name}.kubeconfig"));
    let kc = kube::config::Kubeconfig::read_from(&path).unwrap();
    let config = kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .unwrap();
    kube::Client::try_from(config).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn static_assignment_member_quota_and_waiting_binding() {
    const TENANT: &str = "tenant";
    let mut t = Timeline::new("quota-e2e");
    let tmp = tempfile::tempdir().unwrap();
    // member-1: 32 GPUs; member-2: 8.
    let (mut hami, client) = two_members(tmp.path(), (4, "big"), (1, "small")).await;
    t.mark("hami up --sim-clusters 2 (32 + 8 GPUs): members Ready");
    create_namespace(&client, TENANT).await;
    let quotas: Api<FederatedResourceQuota> = Api::namespaced(client.clone(), TENANT);
    quotas
        .create(
            &PostParams::default(),
            &quota(
                TENANT,
                "team-quota",
                json!({
                    "overall": {"nvidia.com/gpu": "20", "nvidia.com/gpumem": "400000", "cpu": "64"},
                    "staticAssignments": [{"clusterName": "member-1",
                        "hard": {"nvidia.com/gpu": "8", "nvidia.com/gpumem": "160000"}}]
                }),
            ),
        )
        .await
        .unwrap();
    create_policy(&client, TENANT).await;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), TENANT);
    let bindings: Api<ResourceBinding> = Api::namespaced(client.clone(), TENANT);
    deployments
        .create(
            &PostParams::default(),
            &gpu_deployment(TENANT, "train", 16, Some("20000")),
        )
        .await
        .unwrap();

    // Unlimited, dynamic weight by free GPUs (32:8) would put 13 of 16 on
    // member-1; its static assignment keeps it at 8 (quota room is capacity,
    // so the weights are 8:8), the rest goes to member-2.
    let placed = eventually("train placed", 60, || async {
        let rb = bindings
            .get("train-deployment")
            .await
            .map_err(|e| e.to_string())?;
        match scheduled(&rb) {
            Some((s, _, _)) if s == "True" && settled(&rb) => Ok(gpus_by_cluster(&rb)),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    t.mark(format!("train (16 GPUs) placed: {placed:?}"));
    assert_eq!(
        placed,
        BTreeMap::from([("member-1".to_string(), 8), ("member-2".to_string(), 8)])
    );

    // member-1 holds the plain ResourceQuota, member-2 none; member-1's
    // usage flows back into aggregatedStatus.
    let m1 = member_client(&hami, "member-1").await;
    let m2 = member_client(&hami, "member-2").await;
    let rq = eventually("ResourceQuota in member-1", 30, || async {
        Api::<ResourceQuota>::namespaced(m1.clone(), TENANT)
            .get("team-quota")
            .await
            .map_err(|e| e.to_string())
    })
    .await;
    let hard = rq.spec.unwrap().hard.unwrap();
    assert_eq!(hard["requests.nvidia.com/gpu"].0, "8");
    assert_eq!(hard["requests.nvidia.com/gpumem"].0, "160000");
    assert!(
        Api::<ResourceQuota>::namespaced(m2.clone(), TENANT)
            .get_opt("team-quota")
            .await
            .unwrap()
            .is_none()
    );
    let status = eventually("quota status with the member's usage", 30, || async {
        let q = quotas.get("team-quota").await.map_err(|e| e.to_string())?;
        let s = q.status.clone().unwrap_or_default();
        let line = s
            .aggregated_status
            .iter()
            .find(|l| l.cluster_name == "member-1")
            .cloned()
            .unwrap_or_default();
        let ok = quantity(&s.overall_used, "nvidia.com/gpu").as_deref() == Some("16")
            && quantity(&line.used, "nvidia.com/gpu").as_deref() == Some("8")
            && quantity(&line.member_used, "nvidia.com/gpu").as_deref() == Some("8");
        ok.then_some(s).ok_or(format!("{:?}", q.status))
    })
    .await;
    t.mark("member-1 holds ResourceQuota team-quota; memberUsed 8 GPUs flowed back");
    assert_eq!(
        quantity(&status.overall_used, "nvidia.com/gpumem").as_deref(),
        Some("320000")
    );
    let known = status
        .conditions
        .iter()
        .find(|c| c.type_ == "StaticAssignmentsKnown")
        .unwrap();
    assert_eq!(known.status, "True");

    // kubectl get shows used/hard at a glance.
    let (ok, out, err) = kubectl(&hami, &["get", "frq", "-n", TENANT]);
    assert!(ok, "{err}");
    let header: Vec<&str> = out.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(
        &header[..7],
        [
            "NAME",
            "GPU-USED",
            "GPU-HARD",
            "GPUMEM-USED",
            "GPUMEM-HARD",
            "CPU-USED",
            "CPU-HARD"
        ],
        "{out}"
    );
    let row: Vec<&str> = out.lines().nth(1).unwrap().split_whitespace().collect();
    assert_eq!(
        &row[..7],
        ["team-quota", "16", "20", "320000", "400000", "16", "64"],
        "{out}"
    );

    // Over quota: 6 more GPUs where 4 are left.
    deployments
        .create(
            &PostParams::default(),
            &gpu_deployment(TENANT, "extra", 6, Some("20000")),
        )
        .await
        .unwrap();
    let message = eventually("extra refused for quota", 30, || async {
        let rb = bindings
            .get("extra-deployment")
            .await
            .map_err(|e| e.to_string())?;
        match scheduled(&rb) {
            Some((s, r, m)) if s == "False" && r == "QuotaExceeded" => Ok(m),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    t.mark(format!("extra (6 GPUs) refused: {message}"));
    assert!(
        message.contains("team-quota")
            && message.contains("nvidia.com/gpu")
            && message.contains("requested 6")
            && message.contains("used 16")
            && message.contains("limited 20"),
        "{message}"
    );
    let (ok, out, err) = kubectl(&hami, &["describe", "rb", "extra-deployment", "-n", TENANT]);
    assert!(ok, "{err}");
    assert!(out.contains("QuotaExceeded"), "{out}");
    let described_event = eventually("the Event in kubectl describe", 15, || async {
        let (ok, out, err) = kubectl(&hami, &["describe", "rb", "extra-deployment", "-n", TENANT]);
        let events = out.split("Events:").nth(1).unwrap_or_default().to_string();
        (ok && events.contains("QuotaExceeded"))
            .then_some(events)
            .ok_or(format!("{err}{out}"))
    })
    .await;
    assert!(described_event.contains("Warning"), "{described_event}");

    // The gauges follow the status.
    let metrics = reqwest_metrics(&hami);
    assert!(
        metrics.contains(
            r#"hami_quota_used{namespace="tenant",quota="team-quota",resource="nvidia.com/gpu"} 16"#
        ),
        "{}",
        metrics
            .lines()
            .filter(|l| l.starts_with("hami_quota_"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(metrics.contains(
        r#"hami_quota_hard{namespace="tenant",quota="team-quota",resource="nvidia.com/gpu"} 20"#
    ));

    // A SIGKILLed and restarted control plane rebuilds the accountant from
    // the store before it decides anything: the waiting binding is decided
    // again and still refused (no over-admission), train keeps its place.
    hami.restart();
    t.mark("hami-control killed and restarted");
    let client = hami.client().await;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), TENANT);
    let bindings: Api<ResourceBinding> = Api::namespaced(client.clone(), TENANT);
    eventually("extra decided again after the restart", 60, || async {
        let m = reqwest_metrics(&hami);
        let refused = m
            .lines()
            .find(|l| l.starts_with(r#"hami_scheduler_attempts_total{result="quota_exceeded"}"#))
            .and_then(|l| l.split_whitespace().last())
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0);
        (refused >= 1)
            .then_some(())
            .ok_or(format!("{refused} refusals since the restart"))
    })
    .await;
    let extra = bindings.get("extra-deployment").await.unwrap();
    assert_eq!(scheduled(&extra).unwrap().1, "QuotaExceeded");
    assert!(extra.spec.clusters.is_empty(), "{:?}", extra.spec.clusters);
    let train = bindings.get("train-deployment").await.unwrap();
    assert_eq!(gpus(&train), 16);
    t.mark("after the restart: extra still refused, train still 16 GPUs");

    // Deleting the other workload lets it in, at once (no polling).
    let deleted = Instant::now();
    deployments
        .delete("train", &DeleteParams::default())
        .await
        .unwrap();
    let placed = eventually("extra placed after train is deleted", 30, || async {
        let rb = bindings
            .get("extra-deployment")
            .await
            .map_err(|e| e.to_string())?;
        match scheduled(&rb) {
            Some((s, _, _)) if s == "True" && settled(&rb) => Ok(gpus_by_cluster(&rb)),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    t.mark(format!(
        "extra placed {:.2} s after train was deleted: {placed:?}",
        deleted.elapsed().as_secs_f64()
    ));
    assert_eq!(placed.values().sum::<i64>(), 6);
    assert!(placed.get("member-1").copied().unwrap_or(0) <= 8);
    let quotas: Api<FederatedResourceQuota> = Api::namespaced(client.clone(), TENANT);
    eventually("status follows", 30, || async {
        let q = quotas.get("team-quota").await.map_err(|e| e.to_string())?;
        let s = q.status.unwrap_or_default();
        let used = quantity(&s.overall_used, "nvidia.com/gpu");
        (used.as_deref() == Some("6"))
            .then_some(())
            .ok_or(format!("{used:?}"))
    })
    .await;
    t.mark(format!(
        "status says 6 GPUs used {:.2} s after train was deleted",
        deleted.elapsed().as_secs_f64()
    ));
    t.print();
}

/// (replicas, GPUs per replica, image) of Deployment `name` in `ns` of a
/// member, if it has one.
fn member_view(d: &Deployment) -> (i32, String, String) {
    let spec = d.spec.clone().unwrap_or_default();
    let c = spec
        .template
        .spec
        .unwrap_or_default()
        .containers
        .into_iter()
        .next()
        .unwrap_or_default();
    let gpus = c
        .resources
        .and_then(|r| r.limits)
        .and_then(|l| l.get("nvidia.com/gpu").map(|q| q.0.clone()))
        .unwrap_or_default();
    (
        spec.replicas.unwrap_or(1),
        gpus,
        c.image.unwrap_or_default(),
    )
}

async fn member_deployments(
    members: &[(&str, kube::Client)],
    ns: &str,
    name: &str,
) -> Result<BTreeMap<String, (i32, String, String)>, String> {
    let mut out = BTreeMap::new();
    for (member, client) in members {
        let d = Api::<Deployment>::namespaced(client.clone(), ns)
            .get_opt(name)
            .await
            .map_err(|e| e.to_string())?;
        if let Some(d) = d {
            out.insert(member.to_string(), member_view(&d));
        }
    }
    Ok(out)
}

/// The value of a counter line of the control plane's /metrics.
fn metric(hami: &Hami, line_start: &str) -> u64 {
    reqwest_metrics(hami)
        .lines()
        .find(|l| l.starts_with(line_start))
        .and_then(|l| l.split_whitespace().last())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_larger_request_per_replica_waits_for_admission() {
    const NS: &str = "shape";
    let mut t = Timeline::new("quota-shape");
    let tmp = tempfile::tempdir().unwrap();
    let (hami, client) = two_members(tmp.path(), (1, "east"), (1, "west")).await;
    t.mark("hami up --sim-clusters 2 (8 + 8 GPUs): members Ready");
    create_namespace(&client, NS).await;
    let quotas: Api<FederatedResourceQuota> = Api::namespaced(client.clone(), NS);
    quotas
        .create(
            &PostParams::default(),
            &quota(NS, "gpus", json!({"overall": {"nvidia.com/gpu": "4"}})),
        )
        .await
        .unwrap();
    create_policy(&client, NS).await;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), NS);
    let bindings: Api<ResourceBinding> = Api::namespaced(client.clone(), NS);
    deployments
        .create(
            &PostParams::default(),
            &gpu_deployment(NS, "infer", 2, Some("8000")),
        )
        .await
        .unwrap();
    let placed_with = |gpus_per_replica: i64| {
        let bindings = bindings.clone();
        async move {
            let rb = bindings
                .get("infer-deployment")
                .await
                .map_err(|e| e.to_string())?;
            let per = rb
                .spec
                .replica_requirements
                .as_ref()
                .and_then(|r| r.gpu.as_ref())
                .map_or(0, |g| g.count);
            match scheduled(&rb) {
                Some((s, _, _)) if s == "True" && settled(&rb) && per == gpus_per_replica => {
                    Ok(gpus(&rb))
                }
                other => Err(format!("{per} GPUs per replica, {other:?}")),
            }
        }
    };
    let placed = eventually("infer placed", 60, || placed_with(1)).await;
    assert_eq!(placed, 2);
    let members = [
        ("member-1", member_client(&hami, "member-1").await),
        ("member-2", member_client(&hami, "member-2").await),
    ];
    let running = |want_gpus: &'static str, want_image: &'static str| {
        let members = &members;
        async move {
            let got = member_deployments(members, NS, "infer").await?;
            let replicas: i32 = got.values().map(|v| v.0).sum();
            let ok = replicas == 2
                && !got.is_empty()
                && got.values().all(|v| v.1 == want_gpus && v.2 == want_image);
            ok.then_some(got.clone()).ok_or(format!("{got:?}"))
        }
    };
    let before = eventually("members run 2 replicas of 1 GPU", 30, || {
        running("1", "hub.local/infer:1")
    })
    .await;
    t.mark(format!("infer placed: 2 replicas × 1 GPU of 4: {before:?}"));

    // From now on, every revision of the members' Deployments: the most
    // GPUs per replica any of them ever showed.
    let max_seen = Arc::new(AtomicU64::new(0));
    let watches: Vec<_> = members
        .iter()
        .map(|(_, c)| {
            let max_seen = max_seen.clone();
            let api: Api<Deployment> = Api::namespaced(c.clone(), NS);
            tokio::spawn(async move {
                // With backoff: once the members stop (at the end, or a
                // failed assertion), errors must not spin this task.
                let stream = watcher::watcher(api, watcher::Config::default()).default_backoff();
                let mut stream = std::pin::pin!(stream);
                while let Some(e) = stream.next().await {
                    let Ok(e) = e else { continue };
                    let ds = match e {
                        watcher::Event::Apply(d) | watcher::Event::InitApply(d) => vec![d],
                        _ => Vec::new(),
                    };
                    for d in ds {
                        let n = member_view(&d).1.parse::<u64>().unwrap_or(0);
                        max_seen.fetch_max(n, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    eventually("member watches see the Deployments", 10, || async {
        (max_seen.load(Ordering::Relaxed) == 1)
            .then_some(())
            .ok_or("not yet".to_string())
    })
    .await;

    // 3 GPUs per replica: 6 > 4.
    let held_before = metric(
        &hami,
        r#"hami_binding_works_held_total{reason="not_scheduled"}"#,
    );
    let (ok, _, err) = kubectl(
        &hami,
        &[
            "patch",
            "deployment",
            "infer",
            "-n",
            NS,
            "--type",
            "json",
            "-p",
            r#"[{"op":"replace","path":"/spec/template/spec/containers/0/resources/limits/nvidia.com~1gpu","value":"3"}]"#,
        ],
    );
    assert!(ok, "{err}");
    let message = eventually("the new shape refused for quota", 30, || async {
        let rb = bindings
            .get("infer-deployment")
            .await
            .map_err(|e| e.to_string())?;
        let per = rb
            .spec
            .replica_requirements
            .as_ref()
            .and_then(|r| r.gpu.as_ref())
            .map_or(0, |g| g.count);
        match scheduled(&rb) {
            Some((s, r, m)) if s == "False" && r == "QuotaExceeded" && settled(&rb) && per == 3 => {
                Ok(m)
            }
            other => Err(format!(
                "{per} GPUs per replica, {other:?}, {:?}",
                rb.spec.clusters
            )),
        }
    })
    .await;
    t.mark(format!("3 GPUs per replica refused: {message}"));
    assert!(
        message.contains("nvidia.com/gpu") && message.contains("limited 4"),
        "{message}"
    );
    // The binding controller saw the verdict and held the Works back.
    eventually("Works held for the refused shape", 30, || async {
        let held = metric(
            &hami,
            r#"hami_binding_works_held_total{reason="not_scheduled"}"#,
        );
        (held > held_before)
            .then_some(())
            .ok_or(format!("{held} held"))
    })
    .await;
    let kept = running("1", "hub.local/infer:1").await.unwrap();
    assert_eq!(kept, before, "the members keep the old shape");
    assert_eq!(
        max_seen.load(Ordering::Relaxed),
        1,
        "a member showed the refused shape"
    );
    let (ok, out, err) = kubectl(&hami, &["describe", "rb", "infer-deployment", "-n", NS]);
    assert!(ok && out.contains("QuotaExceeded"), "{err}{out}");
    t.mark("members still run 1 GPU per replica (watched throughout)");

    // A quota raise admits it: the 3-GPU shape goes out.
    let raised = Instant::now();
    quotas
        .patch(
            "gpus",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"overall": {"nvidia.com/gpu": "6"}}})),
        )
        .await
        .unwrap();
    let placed = eventually("the new shape admitted", 30, || placed_with(3)).await;
    assert_eq!(placed, 6);
    let after = eventually("members run 3 GPUs per replica", 30, || {
        running("3", "hub.local/infer:1")
    })
    .await;
    t.mark(format!(
        "quota raised to 6: the 3-GPU shape reached the members {:.2} s later: {after:?}",
        raised.elapsed().as_secs_f64()
    ));

    // A refused scale-up does not hold back an image change (its shape is
    // the admitted one).
    deployments
        .patch(
            "infer",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 3}})),
        )
        .await
        .unwrap();
    eventually("the scale-up refused for quota", 30, || async {
        let rb = bindings
            .get("infer-deployment")
            .await
            .map_err(|e| e.to_string())?;
        match scheduled(&rb) {
            Some((s, r, _)) if s == "False" && r == "QuotaExceeded" && rb.spec.replicas == 3 => {
                Ok(())
            }
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    let (ok, _, err) = kubectl(
        &hami,
        &[
            "set",
            "image",
            "deployment/infer",
            "main=hub.local/infer:2",
            "-n",
            NS,
        ],
    );
    assert!(ok, "{err}");
    let image = eventually("the image change reaches the members", 30, || {
        running("3", "hub.local/infer:2")
    })
    .await;
    t.mark(format!(
        "scale-up to 3 refused; the image change went out: {image:?}"
    ));
    assert_eq!(max_seen.load(Ordering::Relaxed), 3);
    for w in watches {
        w.abort();
    }
    t.print();
}

/// GET /metrics of the control plane.
fn reqwest_metrics(hami: &Hami) -> String {
    hami.metrics()
}
