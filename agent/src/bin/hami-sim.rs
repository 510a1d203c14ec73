//! `hami-sim`: one simulated member cluster with GPU nodes, served over the
//! Kubernetes REST API (kubectl and kube clients work against it).

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use hami_agent::sim::{SimCluster, SimOptions, Timing};
use hami_estimator::fleet::{Fleet, GenerateOptions, generate};

/// A simulated member cluster: hami's API server with the nodes and GPUs of
/// a fleet description, workload controllers and a GPU-exact binder. It also
/// serves /metrics, /healthz and /readyz.
#[derive(Debug, Parser)]
#[command(name = "hami-sim", version)]
struct Args {
    /// Fleet description (YAML, the estimator's fleet format).
    #[arg(long, env = "HAMI_SIM_FLEET", conflicts_with = "generate_nodes")]
    fleet: Option<PathBuf>,
    /// Generate a fleet of this many GPU nodes instead (8 GPUs each).
    #[arg(long, env = "HAMI_SIM_GENERATE_NODES")]
    generate_nodes: Option<usize>,
    /// Seed of the generated fleet.
    #[arg(long, env = "HAMI_SIM_SEED", default_value_t = 1)]
    seed: u64,
    /// Address to serve the API on.
    #[arg(long, env = "HAMI_SIM_LISTEN", default_value = "127.0.0.1:6444")]
    listen: SocketAddr,
    /// Cluster name (default: the fleet's, else `member`).
    #[arg(long, env = "HAMI_SIM_NAME")]
    name: Option<String>,
    /// Where to write the kubeconfig.
    #[arg(
        long,
        env = "HAMI_SIM_KUBECONFIG",
        default_value = "hami-sim.kubeconfig"
    )]
    kubeconfig: PathBuf,
    /// Milliseconds from binding to Running.
    #[arg(long, default_value_t = 500)]
    start_delay_ms: u64,
    /// Milliseconds a Job's pod runs before it succeeds.
    #[arg(long, default_value_t = 3000)]
    job_run_ms: u64,
    /// Log as JSON.
    #[arg(long, env = "HAMI_LOG_JSON")]
    log_json: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    hami_telemetry::init_tracing(args.log_json);
    let fleet = match (&args.fleet, args.generate_nodes) {
        (Some(path), _) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("read {}", path.display()))?;
            Fleet::from_yaml(&text).with_context(|| format!("fleet {}", path.display()))?
        }
        (None, n) => generate(&GenerateOptions {
            cluster: args.name.clone().unwrap_or_else(|| "member".into()),
            nodes: n.unwrap_or(4),
            pods_per_node: 0,
            seed: args.seed,
            ..GenerateOptions::default()
        }),
    };
    let name = args
        .name
        .clone()
        .or_else(|| (!fleet.cluster.is_empty()).then(|| fleet.cluster.clone()))
        .unwrap_or_else(|| "member".into());
    let options = SimOptions {
        timing: Timing {
            start_delay_ms: i64::try_from(args.start_delay_ms).unwrap_or(i64::MAX),
            job_run_ms: i64::try_from(args.job_run_ms).unwrap_or(i64::MAX),
            ..Timing::default()
        },
    };
    let sim = SimCluster::start_with(&name, fleet, args.listen, options).await?;
    sim.write_kubeconfig(&args.kubeconfig)?;
    println!(
        "simulated cluster {name} at {}\nexport KUBECONFIG={}",
        sim.url(),
        args.kubeconfig.display()
    );
    tokio::signal::ctrl_c().await.context("wait for Ctrl-C")?;
    sim.stop().await;
    Ok(())
}
