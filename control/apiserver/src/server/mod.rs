//! A Kubernetes-compatible API server over a [`hami_store::Store`].
//!
//! Generic over kinds: a [`Registry`] describes what is served, and every
//! object is handled as JSON. Start one in-process with [`spawn`] (tests, the
//! member-cluster simulator) or build the router with [`ApiServer::router`].

pub mod auth;
pub mod builtin;
pub mod crd;
pub mod csr;
pub mod deletion;
mod discovery;
mod dispatch;
mod dryrun;
pub mod fields;
pub mod hami_kinds;
pub mod keys;
pub mod limits;
pub mod meta;
pub mod metrics;
pub mod objects;
mod patching;
pub mod protobuf;
pub mod rbac;
mod read;
pub mod readiness;
pub mod registry;
pub mod request;
mod scale;
pub mod selector;
pub mod status;
mod table;
mod validation;
mod watch;
mod write;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hami_store::Store;
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::watch as signal;

pub use limits::Limits;
pub use metrics::ApiMetrics;
pub use registry::{Kinds, Registry, ResourceKind};
pub use status::{ApiError, Cause};

/// Validates an object of (apiVersion, kind); returns every field error.
pub type Validator = Arc<dyn Fn(&str, &str, &Value) -> Result<(), Vec<Cause>> + Send + Sync>;

/// Server settings.
#[derive(Clone)]
pub struct ServerConfig {
    /// Largest accepted request body (bigger: 413), on every route that
    /// reads one.
    pub body_limit: usize,
    /// Interval of BOOKMARK events on watches that allow them.
    pub bookmark_interval: Duration,
    /// Extra validation of created and updated objects (hami's kinds).
    pub validator: Option<Validator>,
    /// Authentication and RBAC; `None` serves every request as
    /// `system:unsecured` in `system:masters` (kube's old insecure port):
    /// simulated members, tests, `hami up --insecure-http`.
    pub auth: Option<auth::AuthOptions>,
    /// Per-user request rate, requests in flight and open watches (429 with
    /// `Retry-After`), the header size limit (431) and how long a watch may
    /// leave its buffer full: see [`limits`]. They apply with or without
    /// authentication (without it, every request is one user).
    pub limits: Limits,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            body_limit: 3 * 1024 * 1024,
            bookmark_interval: Duration::from_secs(30),
            validator: None,
            auth: None,
            limits: Limits::default(),
        }
    }
}

/// Everything a request handler needs.
pub struct State {
    pub store: Arc<dyn Store>,
    /// The served kinds; CustomResourceDefinitions change them at run time.
    pub registry: Arc<registry::Kinds>,
    pub config: ServerConfig,
    pub metrics: ApiMetrics,
    /// The process' metric registry, encoded at `/metrics`.
    pub metric_registry: Arc<prometheus_client::registry::Registry>,
    /// Becomes true when the server shuts down; open watches end then.
    pub shutdown: signal::Receiver<bool>,
    /// OpenAPI v3 documents, built from the registry on first request and
    /// again after the served kinds changed (keyed by their generation).
    pub openapi: parking_lot::Mutex<Option<(u64, Arc<Option<crate::openapi::OpenApiV3>>)>>,
    /// Checks `/readyz` runs besides "serving" (see [`readiness`]).
    pub readiness: readiness::Readiness,
    /// A `dryRun=All` request's state: nothing it does is kept or served.
    pub dry_run: bool,
}

/// The API server: state plus its router.
#[derive(Clone)]
pub struct ApiServer {
    state: Arc<State>,
    /// Authentication and RBAC, when [`ServerConfig::auth`] turns them on.
    auth: Option<Arc<auth::Auth>>,
    /// The per-user limits ([`ServerConfig::limits`]).
    limiter: Arc<limits::Limiter>,
}

impl ApiServer {
    /// Builds the server. `metrics` are registered by the caller
    /// ([`ApiMetrics::register`]) in `metric_registry` before it is frozen in an Arc.
    pub fn new(
        store: Arc<dyn Store>,
        registry: Registry,
        config: ServerConfig,
        metrics: ApiMetrics,
        metric_registry: Arc<prometheus_client::registry::Registry>,
        shutdown: signal::Receiver<bool>,
    ) -> Self {
        let auth = config.auth.as_ref().map(|options| {
            let auth = auth::Auth::new(options, metrics.clone())
                .with_service_account_tokens(store.clone());
            Arc::new(if options.bootstrap_tokens {
                auth.with_bootstrap_tokens(store.clone())
            } else {
                auth
            })
        });
        let limiter = Arc::new(limits::Limiter::new(&config.limits, metrics.clone()));
        let server = Self {
            auth,
            limiter,
            state: Arc::new(State {
                store,
                registry: Arc::new(registry::Kinds::new(registry)),
                config,
                metrics,
                metric_registry,
                shutdown,
                openapi: parking_lot::Mutex::new(None),
                readiness: readiness::Readiness::default(),
                dry_run: false,
            }),
        };
        // The CRDs stored before a restart are served from the first request.
        if let Err(e) = crd::refresh(&server.state) {
            tracing::warn!(error = %e, "reading the stored CustomResourceDefinitions");
        }
        // The RBAC objects stored before a restart authorize the first request.
        if let Some(auth) = &server.auth
            && let Err(e) = auth::follower::refresh(&server.state, auth)
        {
            tracing::warn!(error = %e, "reading the stored RBAC objects");
        }
        server
    }

    /// Keeps the served kinds and the CRDs' status in step with the stored
    /// CustomResourceDefinitions until `stop` turns true (see [`crd::run`]),
    /// and, when authentication is on, the RBAC policy in step with the
    /// stored Roles, ClusterRoles and bindings ([`auth::follower::run`]).
    /// The handle ends when both have stopped.
    pub fn spawn_crd_controller(
        &self,
        stop: signal::Receiver<bool>,
    ) -> tokio::task::JoinHandle<()> {
        let crds = crd::run(self.state.clone(), stop.clone());
        let rbac = self
            .auth
            .clone()
            .map(|auth| auth::follower::run(self.state.clone(), auth, stop));
        tokio::spawn(async move {
            match rbac {
                Some(rbac) => {
                    tokio::join!(crds, rbac);
                }
                None => crds.await,
            }
        })
    }

    pub fn state(&self) -> &Arc<State> {
        &self.state
    }

    /// Authentication and RBAC at run time (`None` when off).
    pub fn auth(&self) -> Option<&Arc<auth::Auth>> {
        self.auth.as_ref()
    }

    /// The per-user limits at run time.
    pub fn limiter(&self) -> &Arc<limits::Limiter> {
        &self.limiter
    }

    /// Creates `default` and `kube-system` if missing; with authentication
    /// on, also `kube-public` and kube's default RBAC objects
    /// ([`auth::ensure_default_rbac`]), then reads the policy. Fails when the
    /// authentication settings could not be loaded (e.g. a bad line in the
    /// token file), so a server never starts without its users.
    pub async fn ensure_default_namespaces(&self) -> Result<(), ApiError> {
        if let Some(error) = self.auth.as_ref().and_then(|a| a.startup_error()) {
            return Err(ApiError::internal(error));
        }
        deletion::ensure_default_namespaces(&self.state).await?;
        if let Some(auth) = &self.auth {
            auth::ensure_default_rbac(&self.state).await?;
            auth::follower::refresh(&self.state, auth)?;
        }
        Ok(())
    }

    /// The HTTP router (API, discovery, /healthz, /readyz, /metrics), behind
    /// the header size limit, authentication and authorization when they are
    /// on, and the per-user limits (see [`limits`]).
    pub fn router(&self) -> axum::Router {
        dispatch::router(self.state.clone(), self.auth.clone(), self.limiter.clone())
    }

    /// Serves on `listener` until `shutdown` resolves.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        axum::serve(listener, self.router())
            .with_graceful_shutdown(shutdown)
            .await
    }
}

/// A server running in a background task (see [`spawn`]).
pub struct RunningServer {
    pub addr: SocketAddr,
    pub server: ApiServer,
    stop: signal::Sender<bool>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl RunningServer {
    /// `http://ADDR`
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Ends open watches, stops accepting, and waits for the server to finish.
    pub async fn shutdown(self) -> std::io::Result<()> {
        let _ = self.stop.send(true);
        match self.task.await {
            Ok(result) => result,
            Err(e) => Err(std::io::Error::other(e)),
        }
    }
}

/// Starts a server on `listener` in a background task with its own metric
/// registry, after creating the default namespaces.
pub async fn spawn(
    listener: TcpListener,
    store: Arc<dyn Store>,
    registry: Registry,
    config: ServerConfig,
) -> Result<RunningServer, ApiError> {
    let mut metric_registry = prometheus_client::registry::Registry::default();
    let metrics = ApiMetrics::register(&mut metric_registry);
    let addr = listener
        .local_addr()
        .map_err(|e| ApiError::internal(e.to_string()))?;
    let (stop, stopped) = signal::channel(false);
    let server = ApiServer::new(
        store,
        registry,
        config,
        metrics,
        Arc::new(metric_registry),
        stopped.clone(),
    );
    server.ensure_default_namespaces().await?;
    server.spawn_crd_controller(stopped.clone());
    let mut stopped_rx = stopped;
    let task = tokio::spawn(server.clone().serve(listener, async move {
        let _ = stopped_rx.wait_for(|s| *s).await;
    }));
    Ok(RunningServer {
        addr,
        server,
        stop,
        task,
    })
}
