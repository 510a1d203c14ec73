//! The agent logic, one code path for both homes: the `hami-agent` binary
//! inside a member cluster (Pull) and hami-control for a Push cluster. It
//! talks only Kubernetes API, through two kube clients:
//!
//! - `control`: the hami control plane. The agent only ever addresses its
//!   own Cluster and the namespace `hami-es-<cluster>` (Lease, Works).
//! - `member`: the member cluster's kube-apiserver.
//!
//! Loops (each the single writer of what it decides; see the modules):
//! [`reflect`] (Nodes and Pods into the estimator snapshot and the status
//! totals), [`cluster`] (registration, Lease, Cluster status), [`works`]
//! (apply Works, report their status) and the estimator gRPC server over the
//! same snapshot.
//!
//! ```no_run
//! # async fn demo(control: kube::Client, member: kube::Client) -> Result<(), hami_agent::pull::AgentError> {
//! use hami_agent::pull::{AgentConfig, run};
//! let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
//! let mut config = AgentConfig::new("gpu-east");
//! config.estimator_addr = Some("127.0.0.1:0".parse().unwrap());
//! let task = tokio::spawn(run(control, member, config, stop_rx));
//! // ... later:
//! let _ = stop_tx.send(true);
//! task.await.ok();
//! # Ok(()) }
//! ```

pub mod backoff;
pub mod cluster;
pub mod http;
pub mod metrics;
pub mod reflect;
pub mod status;
pub mod summary;
pub mod works;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use hami_api::SyncMode;
use hami_estimator::Snapshot;
use hami_estimator::server::{EstimatorMetrics, EstimatorService};
use parking_lot::Mutex;
use tokio::net::TcpListener;
use tokio::sync::watch;

use backoff::{Backoff, FailureLog};
pub use metrics::AgentMetrics;

/// Field manager of every write the agent makes (both sides).
pub const MANAGER: &str = "hami-agent";

/// Why the agent could not run. Everything else (unreachable APIs, bad
/// manifests) is retried with backoff and reported in status, never fatal.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The configuration is unusable.
    #[error("invalid agent configuration: {0}")]
    Config(String),
    /// The estimator's listen address cannot be bound.
    #[error("estimator listen on {addr}: {source}")]
    Listen {
        /// Address.
        addr: SocketAddr,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
}

/// What the agent does for one member cluster.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// The Cluster's name; Works are read from `hami-es-<name>`.
    pub cluster_name: String,
    /// Create or update the Cluster's spec (syncMode, apiEndpoint). True for
    /// Pull agents; hami-control running a Push cluster sets false (the
    /// Cluster is the user's object then) and only the estimator annotation
    /// is written.
    pub register: bool,
    /// Sync mode written when registering.
    pub sync_mode: SyncMode,
    /// The member's API endpoint written when registering (informational
    /// for Pull clusters).
    pub api_endpoint: Option<String>,
    /// Where to serve the estimator gRPC (None: not served, no annotation).
    pub estimator_addr: Option<SocketAddr>,
    /// The address written in the estimator annotation (default: the bound
    /// address, unless it is unspecified like 0.0.0.0).
    pub estimator_advertise: Option<String>,
    /// TLS of the estimator gRPC port (None: plain gRPC); from Karmada's
    /// `--grpc-auth-cert-file`, `--grpc-auth-key-file`, `--grpc-client-ca-file`
    /// (see `hami_estimator::server::tls::GrpcTlsArgs`). The scheduler dials
    /// every estimator with hami up's `--scheduler-estimator-*` TLS flags.
    pub estimator_tls: Option<tonic::transport::ServerTlsConfig>,
    /// How often the Lease is renewed (and the member probed).
    pub lease_renew_interval: Duration,
    /// How long the member may be unreachable before Ready turns False.
    pub member_grace: Duration,
    /// Longest time between Cluster status checks (writes happen only on change).
    pub status_interval: Duration,
    /// How long to gather changes before one status write.
    pub status_debounce: Duration,
    /// Timeout of one API request.
    pub request_timeout: Duration,
    /// First retry delay after a failure.
    pub backoff_initial: Duration,
    /// Longest retry delay.
    pub backoff_max: Duration,
}

impl AgentConfig {
    /// Defaults for a Pull agent of `cluster_name` (Karmada's lease timing:
    /// renew every 10 s, unready after 40 s).
    pub fn new(cluster_name: &str) -> Self {
        Self {
            cluster_name: cluster_name.to_string(),
            register: true,
            sync_mode: SyncMode::Pull,
            api_endpoint: None,
            estimator_addr: Some(SocketAddr::from(([0, 0, 0, 0], 10352))),
            estimator_advertise: None,
            estimator_tls: None,
            lease_renew_interval: Duration::from_secs(10),
            member_grace: Duration::from_secs(40),
            status_interval: Duration::from_secs(10),
            status_debounce: Duration::from_millis(500),
            request_timeout: Duration::from_secs(30),
            backoff_initial: Duration::from_millis(500),
            backoff_max: Duration::from_secs(30),
        }
    }

    fn validate(&self) -> Result<(), AgentError> {
        let n = &self.cluster_name;
        let dns = !n.is_empty()
            && n.len() <= 63 - hami_api::EXECUTION_NAMESPACE_PREFIX.len()
            && n.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !n.starts_with('-')
            && !n.ends_with('-');
        if !dns {
            return Err(AgentError::Config(format!(
                "cluster name {n:?} must be a DNS label of at most {} characters",
                63 - hami_api::EXECUTION_NAMESPACE_PREFIX.len()
            )));
        }
        for (what, d) in [
            ("lease renew interval", self.lease_renew_interval),
            ("status interval", self.status_interval),
            ("request timeout", self.request_timeout),
        ] {
            if d.is_zero() {
                return Err(AgentError::Config(format!("{what} must be positive")));
            }
        }
        Ok(())
    }

    pub(crate) fn backoff(&self) -> Backoff {
        Backoff::new(self.backoff_initial, self.backoff_max)
    }
}

/// Readiness of a running agent, for /readyz.
#[derive(Debug, Clone, Default)]
pub struct Health {
    inner: Arc<HealthInner>,
}

#[derive(Debug, Default)]
struct HealthInner {
    registered: AtomicBool,
    nodes_synced: AtomicBool,
    pods_synced: AtomicBool,
    works_synced: AtomicBool,
}

impl Health {
    /// Registered, and the first lists of Nodes, Pods and Works are in.
    pub fn ready(&self) -> bool {
        let i = &self.inner;
        i.registered.load(Ordering::Relaxed)
            && i.nodes_synced.load(Ordering::Relaxed)
            && i.pods_synced.load(Ordering::Relaxed)
            && i.works_synced.load(Ordering::Relaxed)
    }

    pub(crate) fn members_synced(&self) -> bool {
        self.inner.nodes_synced.load(Ordering::Relaxed)
            && self.inner.pods_synced.load(Ordering::Relaxed)
    }
}

/// What the loops share. Locks are held only to read or update, never
/// across an await.
pub(crate) struct Shared {
    pub config: AgentConfig,
    pub namespace: String,
    pub metrics: AgentMetrics,
    pub failures: FailureLog,
    pub snapshot: Arc<Mutex<Snapshot>>,
    pub inventory: Mutex<summary::Inventory>,
    pub reach: Mutex<cluster::Reach>,
    pub health: Health,
    /// Signalled when anything in Cluster status may have changed.
    pub changed: tokio::sync::Notify,
}

/// One agent: configuration, metrics and readiness.
pub struct Agent {
    config: AgentConfig,
    metrics: AgentMetrics,
    estimator_metrics: Arc<EstimatorMetrics>,
    health: Health,
}

impl Agent {
    /// An agent whose metrics are registered by the caller (hami-control
    /// registers them once and shares them between every agent it runs);
    /// the agent writes its series under its cluster's name.
    pub fn new(
        config: AgentConfig,
        metrics: AgentMetrics,
        estimator_metrics: Arc<EstimatorMetrics>,
    ) -> Self {
        let metrics = metrics.for_cluster(&config.cluster_name);
        Self {
            config,
            metrics,
            estimator_metrics,
            health: Health::default(),
        }
    }

    /// Readiness, to serve at /readyz.
    pub fn health(&self) -> Health {
        self.health.clone()
    }

    /// Runs until `stop` turns true (or its sender is dropped). Returns an
    /// error only for a bad configuration or an estimator address that
    /// cannot be bound; every API failure is retried with backoff.
    pub async fn run(
        self,
        control: kube::Client,
        member: kube::Client,
        mut stop: watch::Receiver<bool>,
    ) -> Result<(), AgentError> {
        self.config.validate()?;
        let namespace = hami_api::execution_namespace(&self.config.cluster_name);
        let listener = match self.config.estimator_addr {
            Some(addr) => Some(
                TcpListener::bind(addr)
                    .await
                    .map_err(|source| AgentError::Listen { addr, source })?,
            ),
            None => None,
        };
        let estimator_endpoint = match &listener {
            Some(l) => advertised(&self.config, l),
            None => None,
        };
        let shared = Arc::new(Shared {
            config: self.config,
            namespace,
            metrics: self.metrics,
            failures: FailureLog::default(),
            snapshot: Arc::new(Mutex::new(Snapshot::new())),
            inventory: Mutex::new(summary::Inventory::default()),
            reach: Mutex::new(cluster::Reach::default()),
            health: self.health,
            changed: tokio::sync::Notify::new(),
        });
        let mut tasks = Vec::new();
        if let Some(listener) = listener {
            let mut grpc = tonic::transport::Server::builder();
            if let Some(tls) = shared.config.estimator_tls.clone() {
                grpc = grpc
                    .tls_config(tls)
                    .map_err(|e| AgentError::Config(format!("estimator gRPC TLS settings: {e}")))?;
            }
            let service = EstimatorService::new(
                shared.config.cluster_name.clone(),
                shared.snapshot.clone(),
                self.estimator_metrics,
            );
            tasks.push(tokio::spawn(serve_estimator(
                grpc,
                listener,
                service,
                stop.clone(),
            )));
        }
        tasks.push(tokio::spawn(reflect::run_nodes(
            shared.clone(),
            member.clone(),
            stop.clone(),
        )));
        tasks.push(tokio::spawn(reflect::run_pods(
            shared.clone(),
            member.clone(),
            stop.clone(),
        )));
        tasks.push(tokio::spawn(cluster::run_heartbeat(
            shared.clone(),
            control.clone(),
            member.clone(),
            stop.clone(),
        )));
        // Works and Cluster status need the namespace and the Cluster.
        let registered =
            cluster::register(&shared, &control, estimator_endpoint.as_deref(), &mut stop).await;
        if registered {
            shared
                .health
                .inner
                .registered
                .store(true, Ordering::Relaxed);
            tasks.push(tokio::spawn(cluster::run_status(
                shared.clone(),
                control.clone(),
                member.clone(),
                stop.clone(),
            )));
            tasks.push(tokio::spawn(works::run(
                shared.clone(),
                control,
                member,
                stop.clone(),
            )));
            let _ = stop.wait_for(|s| *s).await;
        }
        for t in tasks {
            let _ = t.await;
        }
        tracing::info!(cluster = shared.config.cluster_name, "agent stopped");
        Ok(())
    }
}

/// Runs the agent logic for one member cluster with metrics registered
/// nowhere (see [`Agent`] to serve them).
pub async fn run(
    control: kube::Client,
    member: kube::Client,
    config: AgentConfig,
    stop: watch::Receiver<bool>,
) -> Result<(), AgentError> {
    let mut scratch = prometheus_client::registry::Registry::default();
    let estimator_metrics = Arc::new(EstimatorMetrics::register(&mut scratch));
    Agent::new(config, AgentMetrics::unregistered(), estimator_metrics)
        .run(control, member, stop)
        .await
}

/// The estimator address to publish on the Cluster.
fn advertised(config: &AgentConfig, listener: &TcpListener) -> Option<String> {
    if let Some(a) = &config.estimator_advertise {
        return Some(a.clone());
    }
    match listener.local_addr() {
        Ok(a) if !a.ip().is_unspecified() => Some(a.to_string()),
        Ok(a) => {
            tracing::warn!(
                addr = %a,
                "estimator listens on an unspecified address and no advertise address is set: \
                 the Cluster gets no estimator annotation (the scheduler falls back to its resource summary)"
            );
            None
        }
        Err(e) => {
            tracing::warn!(error = %e, "estimator address unknown");
            None
        }
    }
}

async fn serve_estimator(
    mut grpc: tonic::transport::Server,
    listener: TcpListener,
    service: EstimatorService,
    mut stop: watch::Receiver<bool>,
) {
    let addr = listener.local_addr().ok();
    tracing::info!(?addr, "serving estimator gRPC");
    let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
    let result = grpc
        .add_service(service.clone().karmada())
        .add_service(service.batch())
        .serve_with_incoming_shutdown(incoming, async move {
            let _ = stop.wait_for(|s| *s).await;
        })
        .await;
    if let Err(e) = result {
        tracing::error!(error = %e, "estimator gRPC server failed");
    }
}

/// Sleeps `d`; false when `stop` turned true first.
pub(crate) async fn sleep_or_stop(d: Duration, stop: &mut watch::Receiver<bool>) -> bool {
    if *stop.borrow() {
        return false;
    }
    tokio::select! {
        _ = tokio::time::sleep(d) => true,
        _ = stop.wait_for(|s| *s) => false,
    }
}

/// Runs `fut` with the configured request timeout.
pub(crate) async fn timed<T>(
    d: Duration,
    fut: impl std::future::Future<Output = Result<T, kube::Error>>,
) -> Result<T, CallError> {
    match tokio::time::timeout(d, fut).await {
        Ok(r) => r.map_err(CallError::Api),
        Err(_) => Err(CallError::Timeout(d)),
    }
}

/// One failed API call.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// The API answered with an error or could not be reached.
    #[error(transparent)]
    Api(#[from] kube::Error),
    /// No answer in time.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
}

impl CallError {
    /// The HTTP status code of an API error answer.
    pub fn code(&self) -> Option<u16> {
        match self {
            CallError::Api(kube::Error::Api(s)) => Some(s.code),
            _ => None,
        }
    }
}
