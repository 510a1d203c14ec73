//! The Pull-mode agent end to end over real loopback HTTP and gRPC: the
//! control plane (hami's API server over a memory store, in-process), one
//! simulated GPU member cluster, and the agent run as a library. Covers
//! registration, Lease, Cluster status against the sim fleet, the
//! estimator answering like a snapshot read straight from the member, a
//! GPU Deployment applied through a Work with status coming back, dropped
//! manifests and deleted Works cleaned up, an agent restart, a member whose
//! API goes down, and the namespace the agent keeps to.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use hami_agent::pull::{Agent, AgentConfig, AgentMetrics};
use hami_agent::sim::{RunningSim, SimCluster, SimOptions, Timing};
use hami_api::cluster::{Cluster, ESTIMATOR_ENDPOINT_ANNOTATION};
use hami_api::work::Work;
use hami_apiserver::server::{RunningServer, ServerConfig, hami_kinds};
use hami_estimator::server::EstimatorMetrics;
use hami_estimator::{ReplicaShape, Snapshot, k8s};
use hami_proto::github::com::karmada_io::karmada::pkg::estimator::{pb, service};
use hami_proto::k8s::io::apimachinery::pkg::api::resource as qpb;
use hami_store::{MemoryStore, Store};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Node, Pod};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use prometheus_client::metrics::family::Family;
use serde_json::{Value, json};
use tokio::sync::watch;

const FLEET: &str = r#"
cluster: gpu-a
nodes:
  - name: a100-0
    allocatable: {cpu: "32", memory: 128Gi, pods: "110"}
    gpus:
      - {id: GPU-a100-0-0, model: NVIDIA-A100-SXM4-80GB, memoryMiB: 81920, slots: 4}
      - {id: GPU-a100-0-1, model: NVIDIA-A100-SXM4-80GB, memoryMiB: 81920, slots: 4}
  - name: t4-0
    allocatable: {cpu: "16", memory: 64Gi, pods: "110"}
    gpus:
      - {id: GPU-t4-0-0, model: NVIDIA-Tesla-T4, memoryMiB: 15360, slots: 4}
      - {id: GPU-t4-0-1, model: NVIDIA-Tesla-T4, memoryMiB: 15360, slots: 4}
"#;

const CLUSTER: &str = "gpu-a";
const NS: &str = "hami-es-gpu-a";

struct Harness {
    control_server: RunningServer,
    control: kube::Client,
    sim: RunningSim,
    member: kube::Client,
    agent: Option<RunningAgent>,
}

struct RunningAgent {
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
    metrics: AgentMetrics,
}

fn config() -> AgentConfig {
    let mut c = AgentConfig::new(CLUSTER);
    c.estimator_addr = Some("127.0.0.1:0".parse().unwrap());
    c.lease_renew_interval = Duration::from_millis(200);
    c.member_grace = Duration::from_secs(1);
    c.status_interval = Duration::from_millis(200);
    c.status_debounce = Duration::from_millis(50);
    c.request_timeout = Duration::from_secs(5);
    c.backoff_initial = Duration::from_millis(100);
    c.backoff_max = Duration::from_secs(1);
    c
}

fn client_for(url: &str) -> kube::Client {
    kube::Client::try_from(kube::Config::new(url.parse().unwrap())).unwrap()
}

impl Harness {
    async fn start() -> Self {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let control_server = hami_apiserver::spawn(
            listener,
            store,
            hami_kinds::registry().unwrap(),
            ServerConfig {
                validator: Some(hami_kinds::validator()),
                ..ServerConfig::default()
            },
        )
        .await
        .unwrap();
        let control = client_for(&control_server.url());
        let fleet = hami_estimator::fleet::Fleet::from_yaml(FLEET).unwrap();
        let options = SimOptions {
            timing: Timing {
                start_delay_ms: 50,
                job_run_ms: 300,
                ..Timing::default()
            },
        };
        let sim = SimCluster::start_with(CLUSTER, fleet, "127.0.0.1:0".parse().unwrap(), options)
            .await
            .unwrap();
        let member = sim.client().unwrap();
        let mut h = Harness {
            control_server,
            control,
            sim,
            member,
            agent: None,
        };
        h.start_agent();
        h
    }

    fn start_agent(&mut self) {
        let mut scratch = prometheus_client::registry::Registry::default();
        let metrics = AgentMetrics::register(&mut scratch);
        let est = Arc::new(EstimatorMetrics::register(&mut scratch));
        let agent = Agent::new(config(), metrics.clone(), est);
        let (stop, rx) = watch::channel(false);
        let (control, member) = (self.control.clone(), self.member.clone());
        let task = tokio::spawn(async move {
            agent.run(control, member, rx).await.unwrap();
        });
        self.agent = Some(RunningAgent {
            stop,
            task,
            metrics,
        });
    }

    async fn stop_agent(&mut self) {
        if let Some(a) = self.agent.take() {
            let _ = a.stop.send(true);
            tokio::time::timeout(Duration::from_secs(15), a.task)
                .await
                .expect("agent stops promptly")
                .unwrap();
        }
    }

    fn metrics(&self) -> &AgentMetrics {
        &self.agent.as_ref().unwrap().metrics
    }

    async fn cluster(&self) -> Option<Cluster> {
        Api::<Cluster>::all(self.control.clone())
            .get_opt(CLUSTER)
            .await
            .unwrap()
    }

    async fn ready(&self) -> Option<(String, String)> {
        let c = self.cluster().await?;
        let cond = c
            .status?
            .conditions
            .into_iter()
            .find(|c| c.type_ == "Ready")?;
        Some((cond.status, cond.reason))
    }

    async fn shutdown(mut self) {
        self.stop_agent().await;
        self.sim.stop().await;
        self.control_server.shutdown().await.unwrap();
    }
}

/// Polls `check` until it returns Some, or panics after 30 s with `what`.
async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn gpu_deployment(name: &str, replicas: i32) -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{
                    "name": "main",
                    "image": "trainer:1",
                    "resources": {
                        "requests": {"cpu": "1"},
                        "limits": {
                            "nvidia.com/gpu": "1",
                            "nvidia.com/gpumem": "10000",
                            "nvidia.com/gpucores": "25",
                        }
                    }
                }]}
            }
        }
    })
}

fn work(name: &str, namespace: &str, manifests: Vec<Value>) -> Work {
    serde_json::from_value(json!({
        "apiVersion": "work.hami.io/v1alpha2",
        "kind": "Work",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"workload": {"manifests": manifests}},
    }))
    .unwrap()
}

async fn running_pods(member: &kube::Client, app: &str) -> Vec<Pod> {
    Api::<Pod>::namespaced(member.clone(), "default")
        .list(&ListParams::default().labels(&format!("app={app}")))
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
        .collect()
}

/// The member's snapshot, read straight from its API.
async fn member_snapshot(member: &kube::Client) -> Snapshot {
    let nodes = Api::<Node>::all(member.clone())
        .list(&ListParams::default())
        .await
        .unwrap();
    let pods = Api::<Pod>::all(member.clone())
        .list(&ListParams::default())
        .await
        .unwrap();
    Snapshot::from_objects(
        nodes
            .items
            .iter()
            .map(|n| k8s::node_info(n).unwrap())
            .collect(),
        pods.items
            .iter()
            .map(|p| k8s::pod_info(p).unwrap())
            .collect(),
    )
}

fn shape() -> ReplicaShape {
    let d: Deployment = serde_json::from_value(gpu_deployment("x", 1)).unwrap();
    let t = d.spec.unwrap().template;
    k8s::shape_from_pod_spec(&t.spec.unwrap(), &BTreeMap::new()).unwrap()
}

async fn ask_estimator(endpoint: &str) -> i32 {
    let mut client =
        service::estimator_client::EstimatorClient::connect(format!("http://{endpoint}"))
            .await
            .unwrap();
    let q = |s: &str| qpb::Quantity {
        string: Some(s.to_string()),
    };
    let request = pb::MaxAvailableReplicasRequest {
        cluster: Some(CLUSTER.to_string()),
        replica_requirements: Some(pb::ReplicaRequirements {
            resource_request: [
                ("cpu".to_string(), q("1")),
                ("nvidia.com/gpu".to_string(), q("1")),
                ("nvidia.com/gpumem".to_string(), q("10000")),
                ("nvidia.com/gpucores".to_string(), q("25")),
            ]
            .into(),
            ..Default::default()
        }),
    };
    client
        .max_available_replicas(request)
        .await
        .unwrap()
        .into_inner()
        .max_replicas
        .unwrap()
}

fn counter<L>(f: &Family<L, prometheus_client::metrics::counter::Counter>, l: &L) -> u64
where
    L: Clone + std::hash::Hash + Eq,
{
    f.get_or_create(l).get()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registers_reports_cluster_status_renews_lease_and_serves_the_estimator() {
    let h = Harness::start().await;
    let cluster = eventually("Cluster Ready=True with summaries", || async {
        let c = h.cluster().await?;
        let s = c.status.as_ref()?;
        let ready = s
            .conditions
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "True");
        (ready && s.gpu_summary.len() == 2 && s.node_summary.is_some()).then_some(c)
    })
    .await;
    assert_eq!(cluster.spec.sync_mode, hami_api::SyncMode::Pull);
    let status = cluster.status.clone().unwrap();
    let nodes = status.node_summary.unwrap();
    assert_eq!((nodes.total_num, nodes.ready_num), (2, 2));
    let rs = status.resource_summary.unwrap();
    assert_eq!(rs.allocatable["cpu"].0, "48");
    assert!(rs.allocated.is_empty(), "no pods yet: {:?}", rs.allocated);
    let a100 = &status.gpu_summary[0];
    assert_eq!(a100.model, "NVIDIA-A100-SXM4-80GB");
    assert_eq!((a100.count, a100.healthy), (2, 2));
    assert_eq!(a100.memory_total_mib, 2 * 81920);
    assert_eq!(a100.memory_free_mib, 2 * 81920);
    assert_eq!((a100.cores_total, a100.cores_free), (200, 200));
    assert_eq!(a100.share_slots_free, 8);
    let t4 = &status.gpu_summary[1];
    assert_eq!((t4.model.as_str(), t4.count), ("NVIDIA-Tesla-T4", 2));
    assert!(status.kubernetes_version.is_some());
    assert!(
        status
            .api_enablements
            .iter()
            .any(|e| e.group_version == "apps/v1"
                && e.resources.iter().any(|r| r.kind == "Deployment")),
        "apiEnablements from member discovery"
    );

    // The estimator annotation names the real bound address, and the
    // estimator answers like a snapshot read straight from the member.
    let endpoint = cluster.metadata.annotations.unwrap()[ESTIMATOR_ENDPOINT_ANNOTATION].clone();
    assert!(endpoint.starts_with("127.0.0.1:") && !endpoint.ends_with(":0"));
    let want = member_snapshot(&h.member)
        .await
        .max_available_replicas(&shape());
    // A100s: 4 slots of 25 cores each; a T4 (15360 MiB) holds one 10000 MiB slice.
    assert_eq!(want, 2 * 4 + 2, "member's own view");
    assert_eq!(ask_estimator(&endpoint).await, 10);

    // The lease is renewed: renewTime moves.
    let leases: Api<Lease> = Api::namespaced(h.control.clone(), NS);
    let first = eventually("lease exists", || async {
        leases.get_opt(CLUSTER).await.unwrap()?.spec?.renew_time
    })
    .await;
    let later = eventually("lease renewed", || async {
        let t = leases.get_opt(CLUSTER).await.unwrap()?.spec?.renew_time?;
        (t.0 > first.0).then_some(t)
    })
    .await;
    assert!(later.0 > first.0);

    // Status is not rewritten while nothing changes.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let writes = || {
        counter(
            &h.metrics().status_writes,
            &hami_agent::pull::metrics::ObjectLabels { object: "cluster" },
        )
    };
    let before = writes();
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(writes(), before, "no-op Cluster status writes were skipped");
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn applies_a_work_reports_its_status_and_cleans_up() {
    let h = Harness::start().await;
    let works: Api<Work> = Api::namespaced(h.control.clone(), NS);
    eventually("namespace registered", || async {
        Api::<Namespace>::all(h.control.clone())
            .get_opt(NS)
            .await
            .unwrap()
    })
    .await;
    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap",
                    "metadata": {"name": "settings", "namespace": "team"}, "data": {"a": "1"}});
    works
        .create(
            &PostParams::default(),
            &work("train", NS, vec![gpu_deployment("train", 3), cm]),
        )
        .await
        .unwrap();

    // Applied in the member: 3 pods Running, the ConfigMap (and its
    // namespace) created.
    eventually("3 pods Running in the member", || async {
        (running_pods(&h.member, "train").await.len() == 3).then_some(())
    })
    .await;
    Api::<ConfigMap>::namespaced(h.member.clone(), "team")
        .get("settings")
        .await
        .unwrap();
    let deploy = Api::<Deployment>::namespaced(h.member.clone(), "default")
        .get("train")
        .await
        .unwrap();
    assert_eq!(
        deploy.metadata.annotations.unwrap()["work.hami.io/name"],
        "train"
    );

    // Work status: Applied=True, the Deployment's observed status with
    // readyReplicas == replicas, Healthy; the finalizer is on.
    let w = eventually("Work status shows 3 ready replicas", || async {
        let w = works.get("train").await.unwrap();
        let s = w.status.as_ref()?;
        let ms = s
            .manifest_statuses
            .iter()
            .find(|m| m.identifier.kind == "Deployment")?;
        (ms.status.as_ref()?["readyReplicas"] == 3).then_some(w)
    })
    .await;
    let s = w.status.clone().unwrap();
    let applied = s.conditions.iter().find(|c| c.type_ == "Applied").unwrap();
    assert_eq!(applied.status, "True", "{applied:?}");
    let ms = &s.manifest_statuses;
    assert_eq!(ms.len(), 2);
    let d = ms
        .iter()
        .find(|m| m.identifier.kind == "Deployment")
        .unwrap();
    let st = d.status.as_ref().unwrap();
    assert_eq!(st["replicas"], 3);
    assert_eq!(st["availableReplicas"], 3);
    assert_eq!(st["updatedReplicas"], 3);
    assert_eq!(d.health, Some(hami_api::ResourceHealth::Healthy));
    assert_eq!(d.identifier.namespace, "default");
    assert!(
        w.metadata
            .finalizers
            .unwrap()
            .contains(&"work.hami.io/agent".to_string())
    );

    // The GPU summary and resource summary follow the pods.
    eventually("GPU summary shows 3 x 10000 MiB used", || async {
        let s = h.cluster().await?.status?;
        let free: i64 = s.gpu_summary.iter().map(|g| g.memory_free_mib).sum();
        let total: i64 = s.gpu_summary.iter().map(|g| g.memory_total_mib).sum();
        let cpu = s.resource_summary?.allocated.get("cpu")?.0.clone();
        (total - free == 30000 && cpu == "3").then_some(())
    })
    .await;
    // The estimator still matches the member's own view.
    let endpoint = h.cluster().await.unwrap().metadata.annotations.unwrap()
        [ESTIMATOR_ENDPOINT_ANNOTATION]
        .clone();
    let want = member_snapshot(&h.member)
        .await
        .max_available_replicas(&shape());
    // How much room is left depends on where the binder put the pods (a
    // 10000 MiB slice leaves a T4 too little memory for another).
    assert!(want <= 13, "3 pods take at least 3 of the 16 slots: {want}");
    eventually("estimator sees the 3 pods", || async {
        (ask_estimator(&endpoint).await == i32::try_from(want).unwrap()).then_some(())
    })
    .await;

    // A manifest dropped from the Work is deleted from the member.
    let patch = json!({"spec": {"workload": {"manifests": [gpu_deployment("train", 3)]}}});
    works
        .patch("train", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    eventually("dropped ConfigMap deleted", || async {
        Api::<ConfigMap>::namespaced(h.member.clone(), "team")
            .get_opt("settings")
            .await
            .unwrap()
            .is_none()
            .then_some(())
    })
    .await;
    eventually("status lists one manifest", || async {
        let s = works.get("train").await.unwrap().status?;
        (s.manifest_statuses.len() == 1).then_some(())
    })
    .await;

    // Deleting the Work deletes the Deployment (and its pods), then the Work.
    works
        .delete("train", &DeleteParams::default())
        .await
        .unwrap();
    eventually("Deployment gone from the member", || async {
        Api::<Deployment>::namespaced(h.member.clone(), "default")
            .get_opt("train")
            .await
            .unwrap()
            .is_none()
            .then_some(())
    })
    .await;
    eventually("Work gone (finalizer removed)", || async {
        works
            .get_opt("train")
            .await
            .unwrap()
            .is_none()
            .then_some(())
    })
    .await;
    eventually("pods gone", || async {
        let pods = Api::<Pod>::namespaced(h.member.clone(), "default")
            .list(&ListParams::default().labels("app=train"))
            .await
            .unwrap();
        pods.items.is_empty().then_some(())
    })
    .await;
    let m = h.metrics();
    use hami_agent::pull::metrics::ResultLabels;
    assert!(counter(&m.applies, &ResultLabels { result: "applied" }) >= 2);
    assert!(counter(&m.applies, &ResultLabels { result: "deleted" }) >= 2);
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_manifest_is_reported_not_fatal() {
    let h = Harness::start().await;
    let works: Api<Work> = Api::namespaced(h.control.clone(), NS);
    eventually("namespace registered", || async {
        Api::<Namespace>::all(h.control.clone())
            .get_opt(NS)
            .await
            .unwrap()
    })
    .await;
    let unknown =
        json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}});
    works
        .create(
            &PostParams::default(),
            &work("mixed", NS, vec![unknown, gpu_deployment("ok", 1)]),
        )
        .await
        .unwrap();
    let cond = eventually("Applied=False naming the bad manifest", || async {
        let s = works.get("mixed").await.unwrap().status?;
        s.conditions
            .into_iter()
            .find(|c| c.type_ == "Applied" && c.status == "False")
    })
    .await;
    assert!(
        cond.message.contains("manifest 0") && cond.message.contains("Widget"),
        "{}",
        cond.message
    );
    // The good manifest is applied anyway.
    eventually("good manifest runs", || async {
        (running_pods(&h.member, "ok").await.len() == 1).then_some(())
    })
    .await;
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarting_the_agent_neither_duplicates_nor_drops_the_workload() {
    let mut h = Harness::start().await;
    let works: Api<Work> = Api::namespaced(h.control.clone(), NS);
    eventually("namespace registered", || async {
        Api::<Namespace>::all(h.control.clone())
            .get_opt(NS)
            .await
            .unwrap()
    })
    .await;
    works
        .create(
            &PostParams::default(),
            &work("serve", NS, vec![gpu_deployment("serve", 2)]),
        )
        .await
        .unwrap();
    eventually("Work reports 2 ready", || async {
        let s = works.get("serve").await.unwrap().status?;
        (s.manifest_statuses.first()?.status.as_ref()?["readyReplicas"] == 2).then_some(())
    })
    .await;
    let deployments: Api<Deployment> = Api::namespaced(h.member.clone(), "default");
    let uid = deployments.get("serve").await.unwrap().metadata.uid;
    let pods_before: Vec<String> = running_pods(&h.member, "serve")
        .await
        .into_iter()
        .map(|p| p.metadata.name.unwrap())
        .collect();
    let status_before = works.get("serve").await.unwrap().status;

    h.stop_agent().await;
    h.start_agent();
    eventually("new agent ready again", || async {
        let (status, _) = h.ready().await?;
        (status == "True").then_some(())
    })
    .await;
    // Let the new agent relist and re-apply (idempotent server-side apply).
    eventually("new agent re-applied", || async {
        use hami_agent::pull::metrics::ResultLabels;
        (counter(&h.metrics().applies, &ResultLabels { result: "applied" }) >= 1).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(800)).await;

    let d = deployments.get("serve").await.unwrap();
    assert_eq!(d.metadata.uid, uid, "same Deployment, not recreated");
    let list = deployments.list(&ListParams::default()).await.unwrap();
    assert_eq!(list.items.len(), 1, "no duplicate Deployment");
    let mut pods_after: Vec<String> = running_pods(&h.member, "serve")
        .await
        .into_iter()
        .map(|p| p.metadata.name.unwrap())
        .collect();
    pods_after.sort();
    let mut pods_before = pods_before;
    pods_before.sort();
    assert_eq!(pods_after, pods_before, "same pods, none added or dropped");
    let after = works.get("serve").await.unwrap();
    assert_eq!(after.status, status_before, "Work status unchanged");
    assert_eq!(
        counter(
            &h.metrics().status_writes,
            &hami_agent::pull::metrics::ObjectLabels { object: "work" }
        ),
        0,
        "the restarted agent found Work status current and did not rewrite it"
    );
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_member_turns_ready_false_after_the_grace_period() {
    let mut h = Harness::start().await;
    eventually("Ready=True", || async {
        let (s, _) = h.ready().await?;
        (s == "True").then_some(())
    })
    .await;
    let leases: Api<Lease> = Api::namespaced(h.control.clone(), NS);
    eventually("lease exists", || async {
        leases.get_opt(CLUSTER).await.unwrap()
    })
    .await;

    h.sim.pause_api().await;
    let down_at = tokio::time::Instant::now();
    let (_, reason) = eventually("Ready=False", || async {
        let (s, r) = h.ready().await?;
        (s == "False").then_some(((), r))
    })
    .await;
    assert_eq!(reason, "MemberUnreachable");
    assert!(
        down_at.elapsed() >= Duration::from_millis(900),
        "not before the 1 s grace"
    );
    // The lease is no longer renewed while the member is down.
    let held = leases.get(CLUSTER).await.unwrap().spec.unwrap().renew_time;
    tokio::time::sleep(Duration::from_millis(700)).await;
    let still = leases.get(CLUSTER).await.unwrap().spec.unwrap().renew_time;
    assert_eq!(
        held, still,
        "lease not renewed while the member is unreachable"
    );
    assert!(h.metrics().lease_renew_failures.get() >= 2);
    assert!(
        h.metrics()
            .watch_restarts
            .get_or_create(&hami_agent::pull::metrics::WatchLabels { watch: "pods" })
            .get()
            >= 1
    );

    // Back up: Ready again and the lease moves.
    h.sim.resume_api().await.unwrap();
    eventually("Ready=True again", || async {
        let (s, _) = h.ready().await?;
        (s == "True").then_some(())
    })
    .await;
    eventually("lease renewed again", || async {
        let t = leases.get(CLUSTER).await.unwrap().spec?.renew_time;
        (t != still).then_some(())
    })
    .await;
    h.shutdown().await;
}

/// The control plane has no authorization yet: any client, an agent's
/// included, may read and write every namespace. This test documents what
/// the agent itself does: it only acts on `hami-es-<its cluster>`. A Work
/// put in another cluster's namespace is never applied, given a finalizer
/// or a status by this agent — while the control plane would have let it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_keeps_to_its_own_namespace_authorization_is_a_known_gap() {
    let h = Harness::start().await;
    let other_ns = "hami-es-other";
    Api::<Namespace>::all(h.control.clone())
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": other_ns}})).unwrap(),
        )
        .await
        .unwrap();
    let other: Api<Work> = Api::namespaced(h.control.clone(), other_ns);
    other
        .create(
            &PostParams::default(),
            &work("foreign", other_ns, vec![gpu_deployment("foreign", 1)]),
        )
        .await
        .unwrap();
    let own: Api<Work> = Api::namespaced(h.control.clone(), NS);
    eventually("namespace registered", || async {
        Api::<Namespace>::all(h.control.clone())
            .get_opt(NS)
            .await
            .unwrap()
    })
    .await;
    own.create(
        &PostParams::default(),
        &work("mine", NS, vec![gpu_deployment("mine", 1)]),
    )
    .await
    .unwrap();
    eventually("own Work applied", || async {
        (running_pods(&h.member, "mine").await.len() == 1).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let foreign = other.get("foreign").await.unwrap();
    assert!(
        foreign.status.is_none(),
        "no status written on another cluster's Work"
    );
    assert!(foreign.metadata.finalizers.unwrap_or_default().is_empty());
    assert!(
        Api::<Deployment>::namespaced(h.member.clone(), "default")
            .get_opt("foreign")
            .await
            .unwrap()
            .is_none(),
        "another cluster's Work is not applied here"
    );
    // The gap: the same credentials could have written there.
    let patch = json!({"metadata": {"labels": {"written-by": "gpu-a-agent-credentials"}}});
    other
        .patch("foreign", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("no authorization yet: a write to another cluster's namespace is accepted");
    // Leases: only the agent's own exists.
    let leases = Api::<Lease>::all(h.control.clone())
        .list(&ListParams::default())
        .await
        .unwrap();
    let names: Vec<(String, String)> = leases
        .items
        .iter()
        .map(|l| {
            (
                l.metadata.namespace.clone().unwrap(),
                l.metadata.name.clone().unwrap(),
            )
        })
        .collect();
    assert_eq!(names, vec![(NS.to_string(), CLUSTER.to_string())]);
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_work_reports_completion() {
    let h = Harness::start().await;
    let works: Api<Work> = Api::namespaced(h.control.clone(), NS);
    eventually("namespace registered", || async {
        Api::<Namespace>::all(h.control.clone())
            .get_opt(NS)
            .await
            .unwrap()
    })
    .await;
    let job = json!({
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": "once", "namespace": "default"},
        "spec": {"completions": 1, "template": {"spec": {
            "restartPolicy": "Never",
            "containers": [{"name": "main", "image": "batch:1",
                            "resources": {"limits": {"nvidia.com/gpu": "1"}}}]}}}
    });
    works
        .create(&PostParams::default(), &work("once", NS, vec![job]))
        .await
        .unwrap();
    let st = eventually("Work shows the Job succeeded", || async {
        let s = works.get("once").await.unwrap().status?;
        let st = s.manifest_statuses.first()?.status.clone()?;
        (st["succeeded"] == 1).then_some(st)
    })
    .await;
    let complete = st["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| c["type"] == "Complete" && c["status"] == "True");
    assert!(complete, "Job conditions are reflected: {st}");
    h.shutdown().await;
}
