//! `hami-agent`: the Pull-mode agent of one member cluster. Registers the
//! Cluster on the hami control plane, renews its Lease, applies the Works
//! of `hami-es-<cluster>` to the member, reports Work and Cluster status,
//! and serves the estimator gRPC over a snapshot fed by watches. Serves
//! /metrics, /healthz and /readyz.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use hami_agent::pull::{Agent, AgentConfig, AgentMetrics, http};
use hami_estimator::server::EstimatorMetrics;
use prometheus_client::registry::Registry;

/// The hami agent of one member cluster (Pull mode).
#[derive(Debug, Parser)]
#[command(name = "hami-agent", version)]
struct Args {
    /// Name of the member cluster (its Cluster object on the control plane).
    #[arg(long, env = "HAMI_AGENT_CLUSTER_NAME")]
    cluster_name: String,
    /// Kubeconfig of the hami control plane.
    #[arg(long, env = "HAMI_AGENT_CONTROL_KUBECONFIG")]
    control_kubeconfig: PathBuf,
    /// Kubeconfig of the member cluster (default: in-cluster service account).
    #[arg(long, env = "HAMI_AGENT_MEMBER_KUBECONFIG")]
    member_kubeconfig: Option<PathBuf>,
    /// The member's API endpoint to record on the Cluster (informational).
    #[arg(long, env = "HAMI_AGENT_API_ENDPOINT")]
    api_endpoint: Option<String>,
    /// Estimator gRPC listen address (Karmada's estimator port is 10352).
    #[arg(
        long,
        env = "HAMI_AGENT_ESTIMATOR_ADDR",
        default_value = "0.0.0.0:10352"
    )]
    estimator_addr: SocketAddr,
    /// Estimator address the scheduler dials, written on the Cluster
    /// (default: the bound address unless it is 0.0.0.0 / ::).
    #[arg(long, env = "HAMI_AGENT_ESTIMATOR_ADVERTISE")]
    estimator_advertise: Option<String>,
    /// HTTP listen address for /metrics, /healthz, /readyz.
    #[arg(long, env = "HAMI_AGENT_HTTP_ADDR", default_value = "0.0.0.0:10353")]
    http_addr: SocketAddr,
    /// Lease renew interval (and member probe interval), e.g. 10s, 500ms.
    #[arg(long, env = "HAMI_AGENT_LEASE_RENEW_INTERVAL", default_value = "10s", value_parser = parse_duration)]
    lease_renew_interval: Duration,
    /// How long the member may be unreachable before Ready turns False.
    #[arg(long, env = "HAMI_AGENT_MEMBER_GRACE", default_value = "40s", value_parser = parse_duration)]
    member_grace: Duration,
    /// Longest time between Cluster status checks (writes only on change).
    #[arg(long, env = "HAMI_AGENT_STATUS_INTERVAL", default_value = "10s", value_parser = parse_duration)]
    status_interval: Duration,
    /// Time to gather changes before one status write.
    #[arg(long, env = "HAMI_AGENT_STATUS_DEBOUNCE", default_value = "500ms", value_parser = parse_duration)]
    status_debounce: Duration,
    /// Timeout of one API request.
    #[arg(long, env = "HAMI_AGENT_REQUEST_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    request_timeout: Duration,
    /// Longest retry delay after failures.
    #[arg(long, env = "HAMI_AGENT_BACKOFF_MAX", default_value = "30s", value_parser = parse_duration)]
    backoff_max: Duration,
    /// Log as JSON.
    #[arg(long, env = "HAMI_LOG_JSON")]
    log_json: bool,
}

/// `250ms`, `10s`, `2m` or plain seconds.
fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = match s.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?}: expected a number with ms, s or m"))?;
    match unit {
        "ms" => Ok(Duration::from_millis(n)),
        "s" => Ok(Duration::from_secs(n)),
        "m" => Ok(Duration::from_secs(n * 60)),
        _ => Err(format!("{s:?}: unit must be ms, s or m")),
    }
}

async fn client(path: Option<&PathBuf>) -> anyhow::Result<kube::Client> {
    let config = match path {
        Some(p) => {
            let kubeconfig = kube::config::Kubeconfig::read_from(p)
                .with_context(|| format!("reading {}", p.display()))?;
            kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
                .await
                .with_context(|| format!("using {}", p.display()))?
        }
        None => kube::Config::incluster().context("in-cluster configuration")?,
    };
    Ok(kube::Client::try_from(config)?)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    hami_telemetry::init_tracing(args.log_json);
    let control = client(Some(&args.control_kubeconfig)).await?;
    let member = client(args.member_kubeconfig.as_ref()).await?;

    let mut config = AgentConfig::new(&args.cluster_name);
    config.api_endpoint = args.api_endpoint;
    config.estimator_addr = Some(args.estimator_addr);
    config.estimator_advertise = args.estimator_advertise;
    config.lease_renew_interval = args.lease_renew_interval;
    config.member_grace = args.member_grace;
    config.status_interval = args.status_interval;
    config.status_debounce = args.status_debounce;
    config.request_timeout = args.request_timeout;
    config.backoff_max = args.backoff_max;

    let mut registry = Registry::default();
    let metrics = AgentMetrics::register(&mut registry);
    let estimator_metrics = Arc::new(EstimatorMetrics::register(&mut registry));
    let agent = Agent::new(config, metrics, estimator_metrics);

    let listener = tokio::net::TcpListener::bind(args.http_addr)
        .await
        .with_context(|| format!("listen on {}", args.http_addr))?;
    let router = http::router(Arc::new(registry), agent.health());
    tracing::info!(addr = %args.http_addr, "serving /metrics, /healthz, /readyz");
    let http = tokio::spawn(async move { axum::serve(listener, router).await });

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        let _ = tokio::signal::ctrl_c().await;
        tracing::info!("stopping");
        let _ = stop_tx.send(true);
    });
    agent.run(control, member, stop_rx).await?;
    http.abort();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("7"), Ok(Duration::from_secs(7)));
        assert!(parse_duration("1h").is_err());
        assert!(parse_duration("x").is_err());
    }
}
