//! `hami-agent`: the Pull-mode agent of one member cluster. Registers the
//! Cluster on the hami control plane, renews its Lease, applies the Works
//! of `hami-es-<cluster>` to the member, reports Work and Cluster status,
//! and serves the estimator gRPC over a snapshot fed by watches. Serves
//! /metrics, /healthz and /readyz. It reaches the control plane with a
//! given kubeconfig, or joins with a bootstrap token and keeps its own
//! client certificate renewed (see `hami_agent::join`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use hami_agent::join::token::{BootstrapToken, CaCertHash};
use hami_agent::join::{self, CertificateMetrics, JoinConfig};
use hami_agent::pull::{Agent, AgentConfig, AgentMetrics, http};
use hami_estimator::server::EstimatorMetrics;
use hami_estimator::server::tls::GrpcTlsArgs;
use prometheus_client::registry::Registry;

/// The hami agent of one member cluster (Pull mode).
///
/// It reaches the control plane in one of two ways:
///
///   * --control-kubeconfig FILE: a kubeconfig you provide (and renew).
///
///   * --join URL --token ID.SECRET --ca-cert-hash sha256:HEX (as printed
///     by `hami token create --cluster NAME`): the agent checks the control
///     plane against the CA hash, asks for a client certificate with the
///     token, keeps key, certificate and kubeconfig in --cert-dir and
///     renews the certificate before it expires. A restart with a valid
///     certificate in --cert-dir does not join again.
#[derive(Debug, Parser)]
#[command(name = "hami-agent", version, verbatim_doc_comment)]
#[command(group(clap::ArgGroup::new("control").required(true).args(["control_kubeconfig", "join"])))]
struct Args {
    /// Name of the member cluster (its Cluster object on the control plane).
    #[arg(long, env = "HAMI_AGENT_CLUSTER_NAME")]
    cluster_name: String,
    /// Kubeconfig of the hami control plane (instead of --join).
    #[arg(long, env = "HAMI_AGENT_CONTROL_KUBECONFIG", conflicts_with = "join")]
    control_kubeconfig: Option<PathBuf>,
    /// Join the control plane at this URL (https://HOST:PORT) with a
    /// bootstrap token (instead of --control-kubeconfig).
    #[arg(long, env = "HAMI_AGENT_JOIN", requires_all = ["token", "ca_cert_hash"])]
    join: Option<String>,
    /// Bootstrap token for --join, ID.SECRET (`hami token create`).
    #[arg(
        long,
        env = "HAMI_AGENT_JOIN_TOKEN",
        hide_env_values = true,
        requires = "join"
    )]
    token: Option<BootstrapToken>,
    /// Hash of the control plane's CA public key for --join,
    /// sha256:HEX (`hami token create` prints it); repeatable, any may match.
    #[arg(
        long,
        env = "HAMI_AGENT_CA_CERT_HASH",
        value_delimiter = ',',
        requires = "join"
    )]
    ca_cert_hash: Vec<CaCertHash>,
    /// Where --join keeps the agent's key, certificate and kubeconfig
    /// (keep it on persistent storage to survive restarts without joining again).
    #[arg(long, env = "HAMI_AGENT_CERT_DIR", default_value = join::DEFAULT_CERT_DIR)]
    cert_dir: PathBuf,
    /// Longest wait for the control plane to approve and sign a
    /// certificate request (joining and each renewal).
    #[arg(long, env = "HAMI_AGENT_JOIN_TIMEOUT", default_value = "5m", value_parser = parse_duration)]
    join_timeout: Duration,
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
    /// TLS of the estimator gRPC port (Karmada's scheduler-estimator flags).
    #[command(flatten)]
    estimator_tls: GrpcTlsArgs,
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
    // Bad TLS files stop the start before anything else runs.
    let estimator_tls = args
        .estimator_tls
        .server_config()
        .context("estimator gRPC TLS")?;
    let mut registry = Registry::default();
    let (control, renewer) = match (&args.join, &args.token) {
        (Some(url), Some(token)) => {
            let config = JoinConfig {
                cluster_name: args.cluster_name.clone(),
                url: url.clone(),
                token: token.clone(),
                ca_cert_hashes: args.ca_cert_hash.clone(),
                cert_dir: args.cert_dir.clone(),
                timeout: args.join_timeout,
                request_timeout: args.request_timeout,
            };
            let metrics = CertificateMetrics::register(&mut registry);
            let joined = join::join(&config, metrics)
                .await
                .with_context(|| format!("joining {url}"))?;
            (joined.client, Some(joined.renewer))
        }
        _ => {
            let path = args
                .control_kubeconfig
                .as_ref()
                .context("one of --control-kubeconfig and --join is required")?;
            (client(Some(path)).await?, None)
        }
    };
    let member = client(args.member_kubeconfig.as_ref()).await?;

    let mut config = AgentConfig::new(&args.cluster_name);
    config.api_endpoint = args.api_endpoint;
    config.estimator_addr = Some(args.estimator_addr);
    config.estimator_advertise = args.estimator_advertise;
    config.estimator_tls = estimator_tls;
    config.lease_renew_interval = args.lease_renew_interval;
    config.member_grace = args.member_grace;
    config.status_interval = args.status_interval;
    config.status_debounce = args.status_debounce;
    config.request_timeout = args.request_timeout;
    config.backoff_max = args.backoff_max;

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
    let renewing = renewer.map(|r| tokio::spawn(r.run(stop_rx.clone())));
    agent.run(control, member, stop_rx).await?;
    if let Some(task) = renewing {
        let _ = task.await;
    }
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

    #[test]
    fn the_two_ways_to_the_control_plane_exclude_each_other() {
        let base = ["hami-agent", "--cluster-name", "a"];
        let with = |extra: &[&str]| {
            Args::try_parse_from(base.iter().chain(extra).copied())
                .map(|a| (a.join, a.control_kubeconfig))
        };
        let hash = format!("sha256:{}", "ab".repeat(32));
        let join = [
            "--join",
            "https://h:1",
            "--token",
            "abcdef.0123456789abcdef",
            "--ca-cert-hash",
            &hash,
        ];
        assert!(with(&[]).is_err(), "one of them is required");
        assert!(with(&["--control-kubeconfig", "k"]).is_ok());
        assert!(with(&join).is_ok());
        let mut both = join.to_vec();
        both.extend(["--control-kubeconfig", "k"]);
        assert!(with(&both).is_err());
        assert!(with(&join[..4]).is_err(), "--ca-cert-hash is required");
        assert!(
            with(&[
                "--join",
                "https://h:1",
                "--token",
                "bad",
                "--ca-cert-hash",
                &hash
            ])
            .is_err()
        );
        let a = Args::try_parse_from(base.iter().chain(&join).copied()).unwrap();
        assert_eq!(a.cert_dir, PathBuf::from("/var/lib/hami-agent"));
        assert_eq!(a.join_timeout, Duration::from_secs(300));
    }
}
