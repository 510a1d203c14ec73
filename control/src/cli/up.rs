//! `hami up`: the control plane in one process.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::{Args, ValueEnum};
use hami_store::{EmbeddedOptions, EmbeddedStore, EtcdOptions, EtcdStore, MemoryStore, Store};
use tokio::net::TcpListener;

use super::{kubeconfig, serving, simclusters};
use crate::apiserver::auth::AuthOptions;
use crate::apiserver::{ApiMetrics, ApiServer, ServerConfig, hami_kinds};

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Args, Debug)]
pub struct UpArgs {
    /// Address the API server listens on (port 0 picks a free one).
    #[arg(long, env = "HAMI_LISTEN", default_value = "127.0.0.1:7443")]
    pub listen: SocketAddr,
    /// Directory for the store and the kubeconfig.
    #[arg(long, env = "HAMI_DATA_DIR", default_value = "hami-data")]
    pub data_dir: PathBuf,
    /// Keep everything in memory (lost on exit; for tests and demos).
    #[arg(long, env = "HAMI_IN_MEMORY")]
    pub in_memory: bool,
    /// Keep the objects in etcd instead of DATA_DIR, so that several
    /// control planes share them: etcd client URLs, comma separated
    /// (`http://10.0.0.1:2379,http://10.0.0.2:2379`).
    #[arg(
        long,
        env = "HAMI_ETCD_ENDPOINTS",
        value_delimiter = ',',
        conflicts_with = "in_memory"
    )]
    pub etcd_endpoints: Vec<String>,
    /// The etcd key prefix the objects live under (with --etcd-endpoints).
    #[arg(long, env = "HAMI_ETCD_PREFIX", default_value = "/hami/")]
    pub etcd_prefix: String,
    /// With etcd, one control plane runs the controllers: the holder of an
    /// etcd lease of this TTL (the others serve the API and wait; a dead
    /// leader is replaced within it).
    #[arg(long, env = "HAMI_ETCD_LEADER_TTL", default_value = "15s", value_parser = parse_positive_duration)]
    pub etcd_leader_ttl: std::time::Duration,
    /// Log format.
    #[arg(long, env = "HAMI_LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: LogFormat,
    /// Serve the API only: no detector, no scheduler.
    #[arg(long, env = "HAMI_NO_CONTROLLERS")]
    pub no_controllers: bool,
    /// The longest validity of a certificate the CSR signer issues
    /// (kube-controller-manager's flag; a CSR's expirationSeconds may ask
    /// for less). Go durations: 8760h, 30m, 1h30m.
    #[arg(long, env = "HAMI_CLUSTER_SIGNING_DURATION", default_value = "8760h", value_parser = crate::controllers::csr::parse_go_duration)]
    pub cluster_signing_duration: std::time::Duration,
    /// Also start this many simulated GPU member clusters (member-1..N; the
    /// last joins in Push mode, the others in Pull mode with an agent);
    /// their kubeconfigs go to DATA_DIR/members/<name>.kubeconfig. While
    /// DATA_DIR/members/<name>.down exists that member is down: its Pull
    /// agent stopped (the file is empty or says `agent`) or its API server
    /// refusing connections (`api`).
    #[arg(long, env = "HAMI_SIM_CLUSTERS", default_value_t = 0)]
    pub sim_clusters: usize,
    /// Fleet of the simulated clusters: one fleet for all, or a YAML list
    /// with one per cluster (default: generated A100 / H100 / T4 fleets).
    #[arg(long, env = "HAMI_SIM_FLEET", requires = "sim_clusters")]
    pub fleet: Option<PathBuf>,
    /// Time after a cluster agent's Lease expires before the cluster is
    /// called unreachable (Ready=Unknown, taint cluster.hami.io/unreachable).
    #[arg(long, env = "HAMI_CLUSTER_GRACE", default_value = "40s", value_parser = parse_duration)]
    pub cluster_grace: std::time::Duration,
    /// How long a cluster must stay healthy without a break before the
    /// health taints and Ready=Unknown of an earlier outage go (Karmada's
    /// --cluster-success-threshold), so a flapping cluster is not let back
    /// in at its first renewal.
    #[arg(long, env = "HAMI_CLUSTER_SUCCESS_THRESHOLD", default_value = "30s", value_parser = parse_duration)]
    pub cluster_success_threshold: std::time::Duration,
    /// Also taint unreachable and not-ready clusters NoExecute, so that
    /// bindings that do not tolerate it move away (graceful eviction).
    #[arg(long, env = "HAMI_NO_EXECUTE_ON_UNREADY")]
    pub no_execute_on_unready: bool,
    /// Graceful evictions started per second at most (a partition does not
    /// move the whole fleet at once).
    #[arg(long, env = "HAMI_EVICTION_RATE", default_value_t = 10.0)]
    pub eviction_rate: f64,
    /// Time between two descheduler passes (replicas that stay
    /// unschedulable in a cluster move where they fit); 0 turns it off.
    #[arg(long, env = "HAMI_DESCHEDULER_INTERVAL", default_value = "1m", value_parser = parse_duration)]
    pub descheduler_interval: std::time::Duration,
    /// How long a replica must have been unschedulable before the
    /// descheduler moves it.
    #[arg(long, env = "HAMI_DESCHEDULER_UNSCHEDULABLE_THRESHOLD", default_value = "1m", value_parser = parse_duration)]
    pub descheduler_unschedulable_threshold: std::time::Duration,
    /// How often the simulated Pull agents renew their Lease (it lasts four
    /// intervals; out of reach of their member for four intervals they
    /// report Ready=False).
    #[arg(long, env = "HAMI_SIM_LEASE_RENEW", default_value = "10s", value_parser = parse_positive_duration)]
    pub sim_lease_renew: std::time::Duration,
    /// A named replica shape whose capacity per member cluster is reported
    /// as hami_cluster_shape_max_replicas{cluster,shape}: NAME=SPEC, SPEC
    /// like gpu=1,gpumem=8000,cpu=1,memory=4Gi (gpumem in MiB per GPU).
    /// Repeatable; replaces the default set (1gpu=gpu=1,
    /// gpu-8g=gpu=1,gpumem=8000, gpu-24g=gpu=1,gpumem=24000, 8gpu=gpu=8).
    /// In the env variable, separate shapes with ';'.
    #[arg(long = "capacity-shape", env = "HAMI_CAPACITY_SHAPES", value_delimiter = ';', value_name = "NAME=SPEC", value_parser = crate::metrics::shapes::parse_capacity_shape)]
    pub capacity_shapes: Vec<crate::metrics::shapes::CapacityShape>,
    #[command(flatten)]
    pub tls: TlsArgs,
    #[command(flatten)]
    pub limits: LimitArgs,
    #[command(flatten)]
    pub service_accounts: super::service_accounts::ServiceAccountArgs,
    #[command(flatten)]
    pub faults: FaultArgs,
    #[command(flatten)]
    pub estimator_tls: super::client_tls::EstimatorTlsArgs,
    #[command(flatten)]
    pub etcd_tls: super::client_tls::EtcdTlsArgs,
}

/// Limits per user on the API (a user is who authenticated, after
/// impersonation); 0 turns a limit off. Refusals are 429 with Retry-After.
#[derive(Args, Debug, Clone)]
pub struct LimitArgs {
    /// Requests per second each user may sustain.
    #[arg(long, env = "HAMI_USER_REQUESTS_PER_SECOND", default_value_t = 1000.0)]
    pub user_requests_per_second: f64,
    /// Requests each user may send at once above the sustained rate.
    #[arg(long, env = "HAMI_USER_BURST", default_value_t = 4000)]
    pub user_burst: u32,
    /// Requests (watches aside) each user may have in flight.
    #[arg(long, env = "HAMI_USER_MAX_IN_FLIGHT", default_value_t = 400)]
    pub user_max_in_flight: u32,
    /// Watches each user may hold open.
    #[arg(long, env = "HAMI_USER_MAX_WATCHES", default_value_t = 1000)]
    pub user_max_watches: u32,
}

impl LimitArgs {
    fn limits(&self) -> anyhow::Result<crate::apiserver::limits::Limits> {
        let rate = self.user_requests_per_second;
        if !rate.is_finite() || rate < 0.0 {
            anyhow::bail!("--user-requests-per-second {rate}: must be 0 or more");
        }
        Ok(crate::apiserver::limits::Limits {
            user_requests_per_second: rate,
            user_burst: self.user_burst,
            user_max_in_flight: self.user_max_in_flight,
            user_max_watches: self.user_max_watches,
            ..Default::default()
        })
    }
}

/// How the API is served: HTTPS with hami's own PKI (default), HTTPS with
/// certificates brought by the operator, or plain HTTP for experiments.
#[derive(Args, Debug, Clone, Default)]
pub struct TlsArgs {
    /// Serve plain HTTP with no authentication and no authorization: every
    /// request acts as a cluster administrator. For local experiments only.
    #[arg(long, env = "HAMI_INSECURE_HTTP")]
    pub insecure_http: bool,
    /// Extra DNS names and IP addresses the serving certificate covers
    /// (comma separated; loopback and a specific --listen address always).
    #[arg(
        long = "tls-san",
        env = "HAMI_TLS_SANS",
        value_delimiter = ',',
        value_name = "NAME"
    )]
    pub tls_sans: Vec<String>,
    /// Serve this certificate (PEM; the chain, leaf first) instead of one
    /// signed by hami's CA in DATA_DIR/pki. Reloaded when the file changes.
    #[arg(
        long,
        env = "HAMI_TLS_CERT_FILE",
        requires = "tls_private_key_file",
        conflicts_with = "insecure_http"
    )]
    pub tls_cert_file: Option<PathBuf>,
    /// The key of --tls-cert-file (PEM).
    #[arg(
        long,
        env = "HAMI_TLS_PRIVATE_KEY_FILE",
        requires = "tls_cert_file",
        conflicts_with = "insecure_http"
    )]
    pub tls_private_key_file: Option<PathBuf>,
    /// Also accept client certificates signed by these CAs (PEM bundle);
    /// hami's own CA, which signs the admin's and the agents'
    /// certificates, is always accepted.
    #[arg(long, env = "HAMI_CLIENT_CA_FILE", conflicts_with = "insecure_http")]
    pub client_ca_file: Option<PathBuf>,
    /// Static bearer tokens, as kube-apiserver's --token-auth-file: CSV
    /// lines token,user,uid,"group1,group2".
    #[arg(long, env = "HAMI_TOKEN_AUTH_FILE", conflicts_with = "insecure_http")]
    pub token_auth_file: Option<PathBuf>,
    /// The URL member clusters' agents reach this control plane at,
    /// published with the CA in the anonymously readable ConfigMap
    /// kube-public/cluster-info that joining agents check against their
    /// bootstrap token (default: the serving URL).
    #[arg(long, env = "HAMI_ADVERTISE_URL", conflicts_with = "insecure_http")]
    pub advertise_url: Option<String>,
    /// How often the serving certificate's files are read again (and
    /// hami's own certificate re-issued when it expires within 30 days).
    #[arg(long, env = "HAMI_TLS_RELOAD_INTERVAL", hide = true, default_value = "1m", value_parser = parse_positive_duration)]
    pub tls_reload_interval: std::time::Duration,
    /// A connection whose TLS handshake has not finished after this is
    /// dropped (see `https::ConnectionLimits`); shorter in tests.
    #[arg(long, env = "HAMI_TLS_HANDSHAKE_TIMEOUT", hide = true, default_value = "10s", value_parser = parse_positive_duration)]
    pub tls_handshake_timeout: std::time::Duration,
    /// A request's headers must arrive within this; also how long a
    /// kept-alive connection may wait idle for its next request.
    #[arg(long, env = "HAMI_HTTP_HEADER_READ_TIMEOUT", hide = true, default_value = "32s", value_parser = parse_positive_duration)]
    pub http_header_read_timeout: std::time::Duration,
}

/// Fault injection for tests (hidden from --help): watches that fall
/// behind and store writes that fail, on purpose (see
/// `hami_store::fault`). Never for production.
#[derive(Args, Debug, Clone, Default)]
pub struct FaultArgs {
    /// Close every store watch as fallen behind after N to 2N events.
    #[arg(long, env = "HAMI_FAULT_WATCH_BEHIND_AFTER", hide = true, value_parser = clap::value_parser!(u64).range(1..))]
    pub fault_watch_behind_after: Option<u64>,
    /// Fraction (0 to 1) of store writes under --fault-write-prefix that
    /// fail (half of them after taking effect).
    #[arg(
        long,
        env = "HAMI_FAULT_WRITE_FAIL_RATIO",
        hide = true,
        default_value_t = 0.0
    )]
    pub fault_write_fail_ratio: f64,
    /// Store key prefix of the writes that may fail (default: Works).
    #[arg(
        long,
        env = "HAMI_FAULT_WRITE_PREFIX",
        hide = true,
        default_value = "/registry/work.hami.io/works/"
    )]
    pub fault_write_prefix: String,
    /// Seed of the fault draws.
    #[arg(long, env = "HAMI_FAULT_SEED", hide = true, default_value_t = 1)]
    pub fault_seed: u64,
}

impl FaultArgs {
    fn plan(&self) -> hami_store::FaultPlan {
        hami_store::FaultPlan {
            watch_behind_after: self.fault_watch_behind_after,
            write_fail_ratio: self.fault_write_fail_ratio,
            write_prefix: self.fault_write_prefix.clone(),
            seed: self.fault_seed,
        }
    }
}

fn init_tracing(format: LogFormat) {
    hami_telemetry::init_tracing_with_writer(matches!(format, LogFormat::Json), std::io::stderr);
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

pub async fn run(args: UpArgs) -> anyhow::Result<()> {
    init_tracing(args.log_format);
    crate::https::raise_open_files_limit();
    // A bad fleet file is reported before anything starts.
    let fleets = simclusters::fleets(args.sim_clusters, args.fleet.as_deref())?;
    let estimator_dial = args.estimator_tls.dial()?;
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("create data directory {}", args.data_dir.display()))?;
    let mut metric_registry = prometheus_client::registry::Registry::default();
    let etcd = if args.etcd_endpoints.is_empty() {
        None
    } else {
        let options = EtcdOptions {
            endpoints: args.etcd_endpoints.clone(),
            prefix: args.etcd_prefix.clone(),
            metrics: hami_store::StoreMetrics::register(&mut metric_registry),
            tls: args.etcd_tls.options()?,
            ..EtcdOptions::default()
        };
        let store = EtcdStore::connect(options)
            .await
            .with_context(|| format!("connect to etcd at {}", args.etcd_endpoints.join(",")))?;
        Some(Arc::new(store))
    };
    let embedded = if args.in_memory || etcd.is_some() {
        None
    } else {
        let options = EmbeddedOptions {
            metrics: hami_store::StoreMetrics::register(&mut metric_registry),
            ..EmbeddedOptions::default()
        };
        let store = EmbeddedStore::open(&args.data_dir, options)
            .with_context(|| format!("open the store in {}", args.data_dir.display()))?;
        Some(Arc::new(store))
    };
    let store: Arc<dyn Store> = match (&embedded, &etcd) {
        (Some(store), _) => store.clone(),
        (None, Some(store)) => store.clone(),
        (None, None) => Arc::new(MemoryStore::new()),
    };
    let plan = args.faults.plan();
    plan.validate()
        .map_err(|e| anyhow::anyhow!("--fault-write-fail-ratio: {e}"))?;
    let store: Arc<dyn Store> = if plan.is_active() {
        tracing::warn!(
            ?plan,
            "FAULT INJECTION IS ON: store watches fall behind and writes fail on purpose (a test-only setting)"
        );
        let metrics = hami_store::FaultMetrics::register(&mut metric_registry);
        Arc::new(hami_store::FaultyStore::new(store, plan, metrics))
    } else {
        store
    };
    let store_kind = match (&embedded, &etcd) {
        (Some(_), _) => "embedded",
        (None, Some(_)) => "etcd",
        (None, None) => "memory",
    };
    let registry = hami_kinds::registry().context("build the kind registry")?;
    let service_accounts = (!args.tls.insecure_http)
        .then(|| args.service_accounts.options(&args.data_dir))
        .transpose()?;
    let config = ServerConfig {
        validator: Some(hami_kinds::validator()),
        auth: (!args.tls.insecure_http).then(|| AuthOptions {
            token_auth_file: args.tls.token_auth_file.clone(),
            bootstrap_tokens: true,
            service_accounts,
        }),
        limits: args.limits.limits()?,
        ..ServerConfig::default()
    };
    let metrics = ApiMetrics::register(&mut metric_registry);
    let cluster_metrics = crate::metrics::ClusterMetrics::register(&mut metric_registry);
    let shapes = if args.capacity_shapes.is_empty() {
        crate::metrics::shapes::default_shapes()
    } else {
        args.capacity_shapes.clone()
    };
    crate::metrics::shapes::check_unique(&shapes).map_err(anyhow::Error::msg)?;
    let shape_metrics =
        crate::metrics::shapes::ShapeMetrics::register(&mut metric_registry, shapes);
    let controller_metrics = (!args.no_controllers)
        .then(|| crate::controllers::ControllerMetrics::register(&mut metric_registry));
    let leading = prometheus_client::metrics::gauge::Gauge::<i64>::default();
    metric_registry.register(
        "hami_controllers_leader",
        "1 while this control plane runs the controllers (with etcd: holds the leader lease)",
        leading.clone(),
    );
    let listener = TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("listen on {}", args.listen))?;
    let addr = listener.local_addr()?;
    let secure = if args.tls.insecure_http {
        tracing::warn!(
            %addr,
            "INSECURE: serving plain HTTP with no authentication; anyone who reaches this address is a cluster administrator (--insecure-http)"
        );
        None
    } else {
        Some(serving::Secure::prepare(&args.tls, &args.data_dir, addr)?)
    };
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let server = ApiServer::new(
        store,
        registry,
        config,
        metrics,
        Arc::new(metric_registry),
        stopped.clone(),
    );
    server
        .ensure_default_namespaces()
        .await
        .context("create the default namespaces")?;
    // Every replica serves the API, so every replica follows the CRDs.
    server.spawn_crd_controller(stopped.clone());
    cluster_metrics
        .spawn(
            &crate::controllers::Objects::new(server.state().clone()),
            &stopped,
        )
        .context("start the cluster metrics")?;
    shape_metrics
        .spawn(
            &crate::controllers::Objects::new(server.state().clone()),
            estimator_dial.clone(),
            &stopped,
        )
        .context("start the capacity shape metrics")?;
    let scheme = if secure.is_some() { "https" } else { "http" };
    let url = format!("{scheme}://{}", loopback_if_unspecified(addr));
    let control_credentials = secure.as_ref().map(|s| s.control.clone());
    let mut controllers = Vec::new();
    // Why this replica must stop (it lost the controllers' lease).
    let (lost_tx, mut lost) = tokio::sync::oneshot::channel::<String>();
    // In-process agents (the simulated Pull members) report into the same
    // agent/estimator families as the Push agents.
    let agent_metrics = controller_metrics.as_ref().map(|m| m.push.agent_metrics());
    if let Some(m) = controller_metrics {
        let push = crate::controllers::push::PushOptions {
            control: serving::client(&url, control_credentials.as_ref())
                .await
                .context("client to the control plane for Push agents")?,
            estimator_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        };
        let failover = crate::controllers::FailoverOptions {
            health: crate::controllers::health::HealthOptions {
                grace: args.cluster_grace,
                no_execute: args.no_execute_on_unready,
                success_threshold: args.cluster_success_threshold,
            },
            eviction: crate::controllers::eviction::EvictionOptions {
                rate: args.eviction_rate,
                burst: eviction_burst(args.eviction_rate),
            },
            descheduler: crate::controllers::descheduler::DeschedulerOptions {
                interval: args.descheduler_interval,
                unschedulable_threshold: args.descheduler_unschedulable_threshold,
                ..Default::default()
            },
        };
        let state = server.state().clone();
        let stop_controllers = stopped.clone();
        // The CSR approver and signer need the CA: only when serving TLS.
        let csr = secure
            .as_ref()
            .map(|s| crate::controllers::csr::CsrOptions {
                pki: s.pki.clone(),
                signing_duration: args.cluster_signing_duration,
            });
        let start = move || {
            crate::controllers::start(
                state,
                m,
                push,
                failover,
                estimator_dial,
                csr,
                stop_controllers,
            )
            .context("start the controllers")
        };
        match &etcd {
            None => {
                controllers = start()?;
                leading.set(1);
            }
            Some(store) => {
                let lease = Lease {
                    store: store.clone(),
                    identity: format!("{url} (pid {})", std::process::id()),
                    ttl: args.etcd_leader_ttl,
                    leading,
                };
                controllers.push(tokio::spawn(lead(lease, start, stopped.clone(), lost_tx)));
            }
        }
    }
    let mut stopped_rx = stopped.clone();
    let until_stopped = async move {
        let _ = stopped_rx.wait_for(|s| *s).await;
    };
    let serving = match &secure {
        Some(secure) => {
            secure.spawn_reloader(args.tls.tls_reload_interval, stopped.clone());
            let advertised = args.tls.advertise_url.as_deref().unwrap_or(&url);
            let cluster_info = kubeconfig::render_cluster_info(advertised, &secure.admin.ca);
            tokio::spawn(crate::apiserver::auth::signer::run(
                server.state().clone(),
                cluster_info,
                stopped.clone(),
            ));
            let router = server.router();
            let connections = crate::https::ConnectionLimits {
                handshake_timeout: args.tls.tls_handshake_timeout,
                header_read_timeout: args.tls.http_header_read_timeout,
                max_buf_size: server.state().config.limits.http1_max_buf_size(),
            };
            tokio::spawn(crate::https::serve(
                listener,
                router,
                secure.tls.clone(),
                connections,
                until_stopped,
            ))
        }
        None => tokio::spawn(server.serve(listener, until_stopped)),
    };
    drop(stopped);

    let kubeconfig_path = args.data_dir.join("kubeconfig");
    let rendered = match &secure {
        Some(secure) => secure.kubeconfig(&url),
        None => kubeconfig::render(&url),
    };
    kubeconfig::write_atomic(&kubeconfig_path, &rendered)
        .with_context(|| format!("write {}", kubeconfig_path.display()))?;
    tracing::info!(%url, store = store_kind, "hami API server ready");
    outln!("hami is serving the Kubernetes API at {url}");
    outln!("  export KUBECONFIG={}", kubeconfig_path.display());
    outln!("  kubectl get namespaces");
    let members = if args.sim_clusters > 0 {
        let options = simclusters::SimOptions {
            lease_renew_interval: args.sim_lease_renew,
        };
        let control = serving::client(&url, control_credentials.as_ref())
            .await
            .context("client to the control plane for the simulated members")?;
        let members = simclusters::start(fleets, control, &args.data_dir, options, agent_metrics)
            .await
            .context("start the simulated clusters")?;
        print_members(&members, &kubeconfig_path)?;
        Some(members)
    } else {
        outln!("  kubectl apply -f samples/");
        None
    };

    let mut serving = serving;
    let mut fatal = None;
    tokio::select! {
        _ = shutdown_signal() => tracing::info!("shutting down"),
        result = &mut serving => return flatten(result),
        Ok(reason) = &mut lost => {
            tracing::error!(%reason, "shutting down: this control plane may no longer run the controllers");
            fatal = Some(reason);
        }
    }
    // Pull agents first, then the controllers (the Push agents among
    // them) while the members still answer, then the members.
    let mut members = members;
    if let Some(m) = members.as_mut() {
        m.stop_agents().await;
    }
    let _ = stop.send(true);
    let _ = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        futures::future::join_all(controllers),
    )
    .await;
    if let Some(m) = members {
        m.stop().await;
    }
    let finished = tokio::time::timeout(std::time::Duration::from_secs(10), serving).await;
    if let Some(store) = embedded {
        store.close();
    }
    if let Some(store) = etcd {
        store.close();
    }
    if let Some(reason) = fatal {
        anyhow::bail!("{reason}");
    }
    match finished {
        Ok(result) => flatten(result),
        Err(_) => {
            tracing::warn!("connections did not close within 10 s");
            Ok(())
        }
    }
}

/// The controllers' lease in etcd and who asks for it.
struct Lease {
    store: Arc<EtcdStore>,
    identity: String,
    ttl: std::time::Duration,
    leading: prometheus_client::metrics::gauge::Gauge<i64>,
}

/// With etcd, runs the controllers only while this replica holds the
/// lease: waits for it, starts them, and on shutdown stops them and
/// resigns (another replica takes over at once). Losing the lease (or
/// failing to ask for it) is reported on `lost`: the process then exits,
/// so that two replicas never run the controllers together.
async fn lead(
    lease: Lease,
    start: impl FnOnce() -> anyhow::Result<Vec<tokio::task::JoinHandle<()>>>,
    mut stopped: tokio::sync::watch::Receiver<bool>,
    lost: tokio::sync::oneshot::Sender<String>,
) {
    let campaign = lease
        .store
        .campaign("controllers", &lease.identity, lease.ttl);
    let leadership = tokio::select! {
        result = campaign => match result {
            Ok(l) => l,
            Err(e) => {
                let _ = lost.send(format!("asking etcd for the controllers' lease: {e}"));
                return;
            }
        },
        _ = stopped.wait_for(|s| *s) => return,
    };
    tracing::info!(
        identity = lease.identity,
        "leading: starting the controllers"
    );
    let controllers = match start() {
        Ok(c) => c,
        Err(e) => {
            let _ = lost.send(format!("{e:#}"));
            return;
        }
    };
    lease.leading.set(1);
    let stopping = tokio::select! {
        _ = stopped.wait_for(|s| *s) => true,
        _ = leadership.lost() => false,
    };
    if !stopping {
        lease.leading.set(0);
        let _ = lost.send("lost the controllers' etcd lease".into());
        return;
    }
    futures::future::join_all(controllers).await;
    lease.leading.set(0);
    if let Err(e) = leadership.resign().await {
        tracing::warn!(error = %e, "resigning the controllers' lease failed; it expires on its own");
    }
}

/// `40s`, `500ms`, `2m` or plain seconds.
fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (n, unit) = s.split_at(split);
    let n: u64 = n
        .parse()
        .map_err(|_| format!("{s:?} is not a duration like 40s, 500ms or 2m"))?;
    match unit {
        "" | "s" => Ok(std::time::Duration::from_secs(n)),
        "ms" => Ok(std::time::Duration::from_millis(n)),
        "m" => Ok(std::time::Duration::from_secs(n.saturating_mul(60))),
        _ => Err(format!("{s:?}: unit must be ms, s or m")),
    }
}

/// [`parse_duration`], more than zero.
fn parse_positive_duration(s: &str) -> Result<std::time::Duration, String> {
    match parse_duration(s)? {
        d if d.is_zero() => Err(format!("{s:?}: must be more than zero")),
        d => Ok(d),
    }
}

/// The eviction bucket holds one second's worth of evictions (at least one).
fn eviction_burst(rate: f64) -> u32 {
    if rate.is_finite() && rate >= 1.0 {
        // Saturating float-to-int cast: rates beyond u32 are "no limit".
        rate.ceil() as u32
    } else {
        1
    }
}

/// 127.0.0.1 (or ::1) for an unspecified listen address, so clients dial it.
fn loopback_if_unspecified(addr: SocketAddr) -> SocketAddr {
    match addr {
        SocketAddr::V4(a) if a.ip().is_unspecified() => {
            SocketAddr::from(([127, 0, 0, 1], a.port()))
        }
        SocketAddr::V6(a) if a.ip().is_unspecified() => {
            SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, a.port()))
        }
        a => a,
    }
}

fn print_members(
    members: &simclusters::Members,
    kubeconfig: &std::path::Path,
) -> anyhow::Result<()> {
    let list = members.kubeconfigs();
    outln!("{} simulated GPU clusters joined:", list.len());
    for (i, (name, path)) in list.iter().enumerate() {
        let mode = if i + 1 < list.len() {
            "Pull, agent in this process".to_string()
        } else {
            format!(
                "Push, kubeconfig in Secret {}/{name}-kubeconfig",
                simclusters::PUSH_SECRET_NAMESPACE
            )
        };
        outln!("  {name} ({mode})");
        outln!("    kubectl --kubeconfig {} get nodes,pods", path.display());
    }
    outln!(
        "GPUs per cluster, then placements (with KUBECONFIG={}):",
        kubeconfig.display()
    );
    outln!("  kubectl get clusters");
    outln!(
        "  kubectl get clusters -o custom-columns='NAME:.metadata.name,GPU:.status.gpuSummary[*].model,COUNT:.status.gpuSummary[*].count,FREE_MIB:.status.gpuSummary[*].memoryFreeMiB'"
    );
    outln!("  kubectl apply -f samples/");
    outln!(
        "  kubectl get resourcebindings -A -o custom-columns='NAME:.metadata.name,CLUSTERS:.spec.clusters[*].name,REPLICAS:.spec.clusters[*].replicas'"
    );
    outln!("  kubectl get works -A");
    outln!("  kubectl get deploy -A");
    Ok(())
}

fn flatten(result: Result<std::io::Result<()>, tokio::task::JoinError>) -> anyhow::Result<()> {
    match result {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(e.into()),
        Err(e) => Err(e.into()),
    }
}
