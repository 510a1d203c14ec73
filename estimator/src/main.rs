//! `hami-estimator`: serves one member cluster's estimator gRPC (Karmada's
//! `Estimator` service and hami's `BatchEstimator`) from a fleet
//! description, plus /metrics, /healthz and /readyz over HTTP. The gRPC
//! port serves plain gRPC, TLS or mutual TLS (Karmada's
//! `--grpc-auth-cert-file` flags, see `server::tls`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context;
use clap::Parser;
use hami_estimator::fleet::{Fleet, GenerateOptions, generate};
use hami_estimator::server::tls::{GrpcSecurity, GrpcTlsArgs};
use hami_estimator::server::{EstimatorMetrics, EstimatorService, http};
use parking_lot::Mutex;
use prometheus_client::registry::Registry;

/// Serve one cluster's GPU-exact replica estimates.
#[derive(Debug, Parser)]
#[command(name = "hami-estimator", version)]
struct Args {
    /// Fleet description (YAML) of the cluster to serve.
    #[arg(long, env = "HAMI_ESTIMATOR_FLEET", conflicts_with = "generate_nodes")]
    fleet: Option<PathBuf>,
    /// Serve a generated random fleet of this many nodes instead of a file.
    #[arg(long, env = "HAMI_ESTIMATOR_GENERATE_NODES")]
    generate_nodes: Option<usize>,
    /// Seed of the generated fleet.
    #[arg(long, env = "HAMI_ESTIMATOR_SEED", default_value_t = 1)]
    seed: u64,
    /// Cluster name to answer for (default: the fleet's `cluster`).
    #[arg(long, env = "HAMI_ESTIMATOR_CLUSTER")]
    cluster: Option<String>,
    /// gRPC listen address (Karmada's estimator port is 10352).
    #[arg(
        long,
        env = "HAMI_ESTIMATOR_GRPC_ADDR",
        default_value = "0.0.0.0:10352"
    )]
    grpc_addr: SocketAddr,
    /// HTTP listen address for /metrics, /healthz, /readyz.
    #[arg(
        long,
        env = "HAMI_ESTIMATOR_HTTP_ADDR",
        default_value = "0.0.0.0:10351"
    )]
    http_addr: SocketAddr,
    /// Log as JSON.
    #[arg(long, env = "HAMI_ESTIMATOR_LOG_JSON")]
    log_json: bool,
    #[command(flatten)]
    tls: GrpcTlsArgs,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    hami_telemetry::init_tracing(args.log_json);
    // Bad TLS files stop the start before anything else is loaded.
    let mut grpc = tonic::transport::Server::builder();
    if let Some(tls) = args.tls.server_config()? {
        grpc = grpc.tls_config(tls).context("gRPC TLS settings")?;
    }
    let fleet = match (&args.fleet, args.generate_nodes) {
        (Some(path), _) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            Fleet::from_yaml(&text).with_context(|| format!("parsing {}", path.display()))?
        }
        (None, Some(nodes)) => generate(&GenerateOptions {
            nodes,
            seed: args.seed,
            ..GenerateOptions::default()
        }),
        (None, None) => anyhow::bail!("give --fleet FILE or --generate-nodes N"),
    };
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis();
    let snapshot = fleet.snapshot(i64::try_from(now)?)?;
    let cluster = args
        .cluster
        .clone()
        .unwrap_or_else(|| fleet.cluster.clone());
    anyhow::ensure!(
        !cluster.is_empty(),
        "no cluster name: set `cluster` in the fleet or --cluster"
    );
    let stats = snapshot.stats();
    tracing::info!(
        cluster,
        nodes = stats.nodes,
        pods = stats.pods,
        classes = stats.classes,
        "snapshot loaded"
    );

    let mut registry = Registry::default();
    let metrics = Arc::new(EstimatorMetrics::register(&mut registry));
    let snapshot = Arc::new(Mutex::new(snapshot));
    let service = EstimatorService::new(cluster, snapshot, metrics);

    let http_listener = tokio::net::TcpListener::bind(args.http_addr).await?;
    let router = http::router(Arc::new(registry));
    tracing::info!(addr = %args.http_addr, "serving /metrics, /healthz, /readyz");
    let http = tokio::spawn(async move { axum::serve(http_listener, router).await });

    let security = args.tls.security();
    if security == GrpcSecurity::Tls && args.tls.grpc_client_ca_file.is_some() {
        tracing::warn!(
            "--insecure-skip-grpc-client-verify: client certificates are not asked for, any client may call"
        );
    }
    tracing::info!(addr = %args.grpc_addr, %security, "serving estimator gRPC");
    grpc.add_service(service.clone().karmada())
        .add_service(service.batch())
        .serve_with_shutdown(args.grpc_addr, async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    http.abort();
    Ok(())
}
