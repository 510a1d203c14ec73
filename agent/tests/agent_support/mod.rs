//! Shared harness of the agent's end-to-end tests: the control plane
//! (hami's API server over a memory store, in-process), one simulated GPU
//! member cluster, and the agent run as a library with short intervals.
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use hami_agent::pull::{Agent, AgentConfig, AgentMetrics};
use hami_agent::sim::{RunningSim, SimCluster, SimOptions, Timing};
use hami_api::cluster::Cluster;
use hami_api::work::Work;
use hami_apiserver::server::{RunningServer, ServerConfig, hami_kinds};
use hami_estimator::server::EstimatorMetrics;
use hami_estimator::{ReplicaShape, Snapshot, k8s};
use hami_proto::github::com::karmada_io::karmada::pkg::estimator::{pb, service};
use hami_proto::k8s::io::apimachinery::pkg::api::resource as qpb;
use hami_store::{MemoryStore, Store};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Node, Pod};
use kube::api::{Api, ListParams};
use serde_json::{Value, json};
use tokio::sync::watch;
pub const FLEET: &str = r#"
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

pub const CLUSTER: &str = "gpu-a";
pub const NS: &str = "hami-es-gpu-a";

pub struct Harness {
    pub control_server: RunningServer,
    pub control: kube::Client,
    pub sim: RunningSim,
    pub member: kube::Client,
    pub agent: Option<RunningAgent>,
}

pub struct RunningAgent {
    pub stop: watch::Sender<bool>,
    pub task: tokio::task::JoinHandle<()>,
    pub metrics: AgentMetrics,
}

pub fn config() -> AgentConfig {
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

pub fn client_for(url: &str) -> kube::Client {
    kube::Client::try_from(kube::Config::new(url.parse().unwrap())).unwrap()
}

impl Harness {
    pub async fn start() -> Self {
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

    pub fn start_agent(&mut self) {
        self.start_agent_with(config());
    }

    pub fn start_agent_with(&mut self, config: AgentConfig) {
        let mut scratch = prometheus_client::registry::Registry::default();
        let metrics = AgentMetrics::register(&mut scratch);
        let est = Arc::new(EstimatorMetrics::register(&mut scratch));
        let agent = Agent::new(config, metrics.clone(), est);
        let metrics = metrics.for_cluster(CLUSTER);
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

    pub async fn stop_agent(&mut self) {
        if let Some(a) = self.agent.take() {
            let _ = a.stop.send(true);
            tokio::time::timeout(Duration::from_secs(15), a.task)
                .await
                .expect("agent stops promptly")
                .unwrap();
        }
    }

    pub fn metrics(&self) -> &AgentMetrics {
        &self.agent.as_ref().unwrap().metrics
    }

    pub async fn cluster(&self) -> Option<Cluster> {
        Api::<Cluster>::all(self.control.clone())
            .get_opt(CLUSTER)
            .await
            .unwrap()
    }

    pub async fn ready(&self) -> Option<(String, String)> {
        let c = self.cluster().await?;
        let cond = c
            .status?
            .conditions
            .into_iter()
            .find(|c| c.type_ == "Ready")?;
        Some((cond.status, cond.reason))
    }

    /// Waits until the agent has registered (its execution namespace
    /// exists on the control plane).
    pub async fn registered(&self) {
        eventually("namespace registered", || async {
            Api::<Namespace>::all(self.control.clone())
                .get_opt(NS)
                .await
                .unwrap()
        })
        .await;
    }

    pub async fn shutdown(mut self) {
        self.stop_agent().await;
        self.sim.stop().await;
        self.control_server.shutdown().await.unwrap();
    }
}

/// Polls `check` until it returns Some, or panics after 30 s with `what`.
pub async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
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

pub fn gpu_deployment(name: &str, replicas: i32) -> Value {
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

pub fn work(name: &str, namespace: &str, manifests: Vec<Value>) -> Work {
    serde_json::from_value(json!({
        "apiVersion": "work.hami.io/v1alpha2",
        "kind": "Work",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"workload": {"manifests": manifests}},
    }))
    .unwrap()
}

pub async fn running_pods(member: &kube::Client, app: &str) -> Vec<Pod> {
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
pub async fn member_snapshot(member: &kube::Client) -> Snapshot {
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

pub fn shape() -> ReplicaShape {
    let d: Deployment = serde_json::from_value(gpu_deployment("x", 1)).unwrap();
    let t = d.spec.unwrap().template;
    k8s::shape_from_pod_spec(&t.spec.unwrap(), &BTreeMap::new()).unwrap()
}

pub async fn ask_estimator(endpoint: &str) -> i32 {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{endpoint}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    ask_estimator_over(channel).await.unwrap()
}

/// MaxAvailableReplicas of [`ask_estimator`]'s shape over `channel`.
pub async fn ask_estimator_over(channel: tonic::transport::Channel) -> Result<i32, tonic::Status> {
    let mut client = service::estimator_client::EstimatorClient::new(channel);
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
        assumed_workloads: Vec::new(),
    };
    Ok(client
        .max_available_replicas(request)
        .await?
        .into_inner()
        .max_replicas
        .unwrap())
}
