//! The member-cluster simulator: hami's API server (over a memory store)
//! serving a simulated cluster — the Nodes of a [`Fleet`] with their GPU
//! inventory in HAMi's node annotation, the fleet's pods — plus small
//! controllers that talk to it only through its Kubernetes REST API with the
//! kube crate: Deployment → ReplicaSet → Pods, StatefulSet → Pods, Job →
//! Pods, a garbage collector for owned objects, and a binder that places
//! pods with the estimator's GPU-exact fit and plays the kubelet.
//!
//! ```no_run
//! # async fn demo() -> Result<(), hami_agent::sim::SimError> {
//! use hami_agent::sim::SimCluster;
//! use hami_estimator::fleet::{generate, GenerateOptions};
//! let fleet = generate(&GenerateOptions { nodes: 4, pods_per_node: 0, ..Default::default() });
//! let sim = SimCluster::start("member-1", fleet, "127.0.0.1:0".parse().unwrap()).await?;
//! let client = sim.client()?; // kube::Client for the simulated cluster
//! sim.write_kubeconfig(std::path::Path::new("/tmp/member-1.kubeconfig"))?;
//! sim.stop().await;
//! # Ok(()) }
//! ```

pub mod binder;
mod controllers;
pub mod metrics;
pub mod names;
pub mod objects;
pub mod quota;
pub mod workloads;
pub mod write;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use hami_apiserver::{ApiMetrics, ApiServer, Registry, ServerConfig};
use hami_estimator::fleet::{Fleet, FleetError};
use hami_store::{MemoryStore, Store};
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, Patch, PatchParams, PostParams};
use parking_lot::Mutex;
use tokio::net::TcpListener;
use tokio::sync::{Notify, watch};

pub use binder::{Binder, Timing};
pub use controllers::MANAGER;
pub use metrics::SimMetrics;

/// Why the simulator could not start or act.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// The fleet description is unusable.
    #[error(transparent)]
    Fleet(#[from] FleetError),
    /// Binding or serving the listen address failed.
    #[error("listen on {addr}: {source}")]
    Listen {
        /// Address.
        addr: SocketAddr,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// The API server could not be set up.
    #[error("API server: {0}")]
    Server(String),
    /// A request to the simulated cluster failed.
    #[error("simulated cluster API: {0}")]
    Kube(#[from] kube::Error),
    /// Writing the kubeconfig failed.
    #[error("kubeconfig {path}: {source}")]
    Kubeconfig {
        /// Path.
        path: String,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
}

/// Settings of a simulated cluster.
#[derive(Debug, Clone, Copy, Default)]
pub struct SimOptions {
    /// Kubelet timing: start delay, Job pods' run time.
    pub timing: Timing,
}

/// Starts simulated clusters.
pub struct SimCluster;

impl SimCluster {
    /// Starts a simulated cluster named `name` serving `fleet` on `listen`
    /// (port 0 picks a free one), with default timing.
    pub async fn start(
        name: &str,
        fleet: Fleet,
        listen: SocketAddr,
    ) -> Result<RunningSim, SimError> {
        Self::start_with(name, fleet, listen, SimOptions::default()).await
    }

    /// Like [`SimCluster::start`] with options.
    pub async fn start_with(
        name: &str,
        fleet: Fleet,
        listen: SocketAddr,
        options: SimOptions,
    ) -> Result<RunningSim, SimError> {
        let now = format!("{:.0}", k8s_openapi::jiff::Timestamp::now());
        let nodes = objects::fleet_nodes(&fleet, &now)?;
        let pods = objects::fleet_pods(&fleet, &now);
        let registry =
            hami_apiserver::hami_kinds::registry().map_err(|e| SimError::Server(e.to_string()))?;
        let mut metric_registry = prometheus_client::registry::Registry::default();
        let api_metrics = ApiMetrics::register(&mut metric_registry);
        let metrics = SimMetrics::register(&mut metric_registry);
        let api = ApiHost {
            store: Arc::new(MemoryStore::new()),
            registry,
            api_metrics,
            metric_registry: Arc::new(metric_registry),
        };
        let listener = TcpListener::bind(listen)
            .await
            .map_err(|source| SimError::Listen {
                addr: listen,
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| SimError::Listen {
            addr: listen,
            source,
        })?;
        let server = api.serve(listener).await?;
        let client = client_for(addr)?;
        populate(&client, &nodes, &pods).await?;
        let (stop_tx, stop_rx) = watch::channel(false);
        let ctx = Arc::new(controllers::Ctx {
            client,
            metrics: metrics.clone(),
            binder: Mutex::new(Binder::new(options.timing)),
            workloads_changed: Notify::new(),
            binder_changed: Notify::new(),
            stop: stop_rx,
        });
        let tasks = controllers::spawn_all(ctx);
        tracing::info!(cluster = name, %addr, nodes = nodes.len(), "simulated cluster up");
        Ok(RunningSim {
            name: name.to_string(),
            addr,
            api,
            server: Some(server),
            stop: stop_tx,
            tasks,
            metrics,
        })
    }
}

/// What it takes to (re)start the API server over the same store.
struct ApiHost {
    store: Arc<dyn Store>,
    registry: Registry,
    api_metrics: ApiMetrics,
    metric_registry: Arc<prometheus_client::registry::Registry>,
}

/// A serving API server.
struct Serving {
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl ApiHost {
    async fn serve(&self, listener: TcpListener) -> Result<Serving, SimError> {
        let (stop, stopped) = watch::channel(false);
        let server = ApiServer::new(
            self.store.clone(),
            self.registry.clone(),
            ServerConfig::default(),
            self.api_metrics.clone(),
            self.metric_registry.clone(),
            stopped.clone(),
        );
        server
            .ensure_default_namespaces()
            .await
            .map_err(|e| SimError::Server(e.to_string()))?;
        // A member serves the CRDs propagated to it, as a real one does.
        server.spawn_crd_controller(stopped.clone());
        let mut rx = stopped;
        let task = tokio::spawn(server.serve(listener, async move {
            let _ = rx.wait_for(|s| *s).await;
        }));
        Ok(Serving { stop, task })
    }
}

impl Serving {
    async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

fn client_for(addr: SocketAddr) -> Result<kube::Client, SimError> {
    let url = format!("http://{addr}")
        .parse()
        .map_err(|e| SimError::Server(format!("url: {e}")))?;
    let mut config = kube::Config::new(url);
    config.read_timeout = Some(Duration::from_secs(300));
    Ok(kube::Client::try_from(config)?)
}

/// Creates the fleet's Nodes and pods, each followed by its status.
async fn populate(
    client: &kube::Client,
    nodes: &[serde_json::Value],
    pods: &[serde_json::Value],
) -> Result<(), SimError> {
    let pp = PostParams {
        field_manager: Some(MANAGER.into()),
        ..PostParams::default()
    };
    let status_patch = PatchParams::default();
    let node_api: Api<Node> = Api::all(client.clone());
    for v in nodes {
        let node: Node =
            serde_json::from_value(v.clone()).map_err(|e| SimError::Server(e.to_string()))?;
        let name = node.metadata.name.clone().unwrap_or_default();
        node_api.create(&pp, &node).await?;
        let patch = serde_json::json!({ "status": v["status"] });
        node_api
            .patch_status(&name, &status_patch, &Patch::Merge(&patch))
            .await?;
    }
    for v in pods {
        let pod: Pod =
            serde_json::from_value(v.clone()).map_err(|e| SimError::Server(e.to_string()))?;
        let ns = pod
            .metadata
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into());
        let name = pod.metadata.name.clone().unwrap_or_default();
        let api: Api<Pod> = Api::namespaced(client.clone(), &ns);
        api.create(&pp, &pod).await?;
        if !v["status"].is_null() {
            let patch = serde_json::json!({ "status": v["status"] });
            api.patch_status(&name, &status_patch, &Patch::Merge(&patch))
                .await?;
        }
    }
    Ok(())
}

/// A running simulated cluster.
pub struct RunningSim {
    name: String,
    addr: SocketAddr,
    api: ApiHost,
    server: Option<Serving>,
    stop: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    metrics: SimMetrics,
}

impl RunningSim {
    /// The cluster's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The address the API listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://ADDR`
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A kube client for the simulated cluster.
    pub fn client(&self) -> Result<kube::Client, SimError> {
        client_for(self.addr)
    }

    /// The simulator's metrics.
    pub fn metrics(&self) -> &SimMetrics {
        &self.metrics
    }

    /// A kubeconfig for kubectl and kube clients: one plain-HTTP cluster,
    /// user and context, all named after the cluster.
    pub fn kubeconfig(&self) -> String {
        let n = &self.name;
        let server = self.url();
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: {n}\n  cluster:\n    server: {server}\nusers:\n- name: {n}\n  user: {{}}\ncontexts:\n- name: {n}\n  context:\n    cluster: {n}\n    user: {n}\n    namespace: default\ncurrent-context: {n}\npreferences: {{}}\n"
        )
    }

    /// Writes [`RunningSim::kubeconfig`] to `path` (temporary file, then rename).
    pub fn write_kubeconfig(&self, path: &Path) -> Result<(), SimError> {
        let err = |source| SimError::Kubeconfig {
            path: path.display().to_string(),
            source,
        };
        if let Some(dir) = path.parent()
            && !dir.as_os_str().is_empty()
        {
            std::fs::create_dir_all(dir).map_err(err)?;
        }
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, self.kubeconfig()).map_err(err)?;
        std::fs::rename(&tmp, path).map_err(err)
    }

    /// Whether the API is being served (not paused).
    pub fn api_available(&self) -> bool {
        self.server.is_some()
    }

    /// Makes the API unavailable (connections refused, open watches end),
    /// as when a member cluster's API server is down. The cluster's state is
    /// kept; its controllers retry with backoff.
    pub async fn pause_api(&mut self) {
        if let Some(s) = self.server.take() {
            s.shutdown().await;
        }
    }

    /// Serves the API again on the same address, over the same state.
    pub async fn resume_api(&mut self) -> Result<(), SimError> {
        if self.server.is_some() {
            return Ok(());
        }
        let listener = bind_retrying(self.addr).await?;
        self.server = Some(self.api.serve(listener).await?);
        Ok(())
    }

    /// Stops the controllers and the API server.
    pub async fn stop(mut self) {
        let _ = self.stop.send(true);
        for t in self.tasks.drain(..) {
            let _ = t.await;
        }
        if let Some(s) = self.server.take() {
            s.shutdown().await;
        }
    }
}

/// Binds an address that was just released (retrying for a few seconds).
async fn bind_retrying(addr: SocketAddr) -> Result<TcpListener, SimError> {
    let mut last = None;
    for _ in 0..50 {
        match TcpListener::bind(addr).await {
            Ok(l) => return Ok(l),
            Err(e) => last = Some(e),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(SimError::Listen {
        addr,
        source: last.unwrap_or_else(|| std::io::Error::other("bind failed")),
    })
}
