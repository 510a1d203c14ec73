//! `hami up --sim-clusters N [--fleet FILE]`: N simulated GPU member
//! clusters beside the control plane, joined the way real ones are.
//!
//! * `member-1` .. `member-N`, each a [`hami_agent::sim`] cluster (a real
//!   Kubernetes API on a free loopback port), its kubeconfig written to
//!   `DATA_DIR/members/<name>.kubeconfig`.
//! * Fleets: with `--fleet FILE`, the file is either ONE fleet (the
//!   estimator's fleet format) used for every member, or a YAML list of
//!   fleets, member-i taking the i-th (the list must have at least N). The
//!   fleet's `cluster` field is ignored: members are always `member-i`.
//!   Without it, each member gets a generated fleet from a profile that
//!   cycles A100 / H100 / T4 ([`generated_fleet`]), so clusters differ in
//!   GPU model and free capacity.
//! * `member-1` .. `member-(N-1)` join in Pull mode: an agent each, in this
//!   process, talking to the control plane over its HTTP API exactly as the
//!   `hami-agent` binary would. `member-N` joins in Push mode: its
//!   kubeconfig goes into Secret `hami-system/member-N-kubeconfig` (key
//!   `kubeconfig`) and a Cluster with `syncMode: Push` names it, so the
//!   control plane's Push controller runs its agent.
//!
//! The simulated clusters live in this process's memory: a restarted
//! `hami up` starts them empty; the agents then apply the Works again.
//!
//! Timing: the Pull agents renew their Lease every
//! [`SimOptions::lease_renew_interval`] (`hami up --sim-lease-renew`,
//! default 10 s as Karmada's); the Lease lasts four intervals, and an agent
//! that cannot reach its member reports Ready=False after four intervals
//! too.
//!
//! Outages, for failover demos and tests: while the file
//! `DATA_DIR/members/<name>.down` exists, that member is down. Its first
//! word says how: `agent` (or an empty file) stops the member's Pull agent
//! (no Lease renewal, no estimator, no Work sync; the member keeps running
//! what it has), `api` makes the member's API server refuse connections
//! (its agent keeps running but cannot reach it). Removing the file starts
//! a fresh agent, or serves the API again over the same state. The files
//! are looked at every [`OUTAGE_POLL`]. `agent` has no meaning for the Push
//! member (its agent runs in the control plane); use `api` there.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use hami_agent::pull::{Agent, AgentConfig, AgentMetrics};
use hami_agent::sim::{RunningSim, SimCluster, SimError};
use hami_estimator::fleet::{Fleet, FleetGpu, FleetGpuUse, FleetNode, FleetPod};
use hami_estimator::server::EstimatorMetrics;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;
use tokio::sync::watch;

use crate::controllers::push::desired::KUBECONFIG_KEY;

/// Namespace of the Push member's Secret.
pub const PUSH_SECRET_NAMESPACE: &str = "hami-system";
/// Field manager of what `hami up` writes for its simulated members.
const MANAGER: &str = "hami-up";
/// How often the outage files are looked at.
pub const OUTAGE_POLL: Duration = Duration::from_millis(200);

/// Settings of the simulated members.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SimOptions {
    /// How often a Pull agent renews its Lease.
    pub lease_renew_interval: Duration,
}

impl Default for SimOptions {
    fn default() -> Self {
        Self {
            lease_renew_interval: Duration::from_secs(10),
        }
    }
}

/// Why the simulated members could not start.
#[derive(Debug, thiserror::Error)]
pub enum SimClustersError {
    /// The fleet file cannot be read.
    #[error("fleet file {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The fleet file is not a valid fleet (or list of fleets).
    #[error("fleet file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    /// A list of fleets shorter than the number of members.
    #[error(
        "fleet file {path} lists {found} fleets; --sim-clusters {wanted} needs at least that many (or give one fleet for all)"
    )]
    TooFew {
        path: PathBuf,
        found: usize,
        wanted: usize,
    },
    /// A simulated cluster failed to start or write its kubeconfig.
    #[error("simulated cluster {name}: {source}")]
    Sim {
        name: String,
        #[source]
        source: SimError,
    },
    /// The control plane refused a write.
    #[error("joining {name} to the control plane: {source}")]
    Join {
        name: String,
        #[source]
        source: kube::Error,
    },
}

/// An in-process Pull agent, with what it takes to start it again.
struct PullAgent {
    /// Index of its member in [`Members::sims`].
    member: usize,
    control: kube::Client,
    client: kube::Client,
    config: AgentConfig,
    metrics: Option<(AgentMetrics, Arc<EstimatorMetrics>)>,
    running: Option<(watch::Sender<bool>, tokio::task::JoinHandle<()>)>,
}

impl PullAgent {
    fn start(&mut self) {
        if self.running.is_some() {
            return;
        }
        let (stop, stop_rx) = watch::channel(false);
        let (control, member) = (self.control.clone(), self.client.clone());
        let (config, metrics) = (self.config.clone(), self.metrics.clone());
        let name = config.cluster_name.clone();
        let task = tokio::spawn(async move {
            let ran = match metrics {
                Some((agent, estimator)) => {
                    Agent::new(config, agent, estimator)
                        .run(control, member, stop_rx)
                        .await
                }
                None => hami_agent::pull::run(control, member, config, stop_rx).await,
            };
            if let Err(e) = ran {
                tracing::error!(cluster = name, error = %e, "agent could not run");
            }
        });
        self.running = Some((stop, task));
    }

    async fn stop(&mut self) {
        if let Some((stop, task)) = self.running.take() {
            let _ = stop.send(true);
            let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
        }
    }
}

/// How a member is down (see the module doc).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outage {
    /// Its Pull agent is stopped.
    Agent,
    /// Its API server refuses connections.
    Api,
}

impl Outage {
    /// The outage an outage file's text asks for.
    pub fn parse(text: &str) -> Option<Self> {
        match text.split_whitespace().next() {
            None | Some("agent") => Some(Self::Agent),
            Some("api") => Some(Self::Api),
            Some(_) => None,
        }
    }
}

/// The outage file of member `name`.
pub fn outage_file(data_dir: &Path, name: &str) -> PathBuf {
    data_dir.join("members").join(format!("{name}.down"))
}

/// What the members share with the outage watcher.
struct Running {
    sims: Vec<RunningSim>,
    agents: Vec<PullAgent>,
    /// The outage in force per member.
    down: Vec<Option<Outage>>,
}

impl Running {
    fn agent_of(&mut self, member: usize) -> Option<&mut PullAgent> {
        self.agents.iter_mut().find(|a| a.member == member)
    }

    /// Brings member `i` from its current outage to `want`.
    async fn set(&mut self, i: usize, want: Option<Outage>) {
        let Some(now) = self.down.get(i).copied() else {
            return;
        };
        if now == want {
            return;
        }
        let name = self.sims[i].name().to_string();
        if want == Some(Outage::Agent) && self.agent_of(i).is_none() {
            tracing::warn!(
                cluster = name,
                "outage file asks to stop the agent of a Push member; write \"api\" in it instead"
            );
            return;
        }
        // Undo what is in force, then apply what is asked.
        match now {
            Some(Outage::Agent) => {
                if let Some(a) = self.agent_of(i) {
                    a.start();
                }
            }
            Some(Outage::Api) => {
                if let Err(e) = self.sims[i].resume_api().await {
                    tracing::warn!(cluster = name, error = %e, "simulated API could not serve again");
                    return;
                }
            }
            None => {}
        }
        match want {
            Some(Outage::Agent) => {
                if let Some(a) = self.agent_of(i) {
                    a.stop().await;
                }
            }
            Some(Outage::Api) => self.sims[i].pause_api().await,
            None => {}
        }
        self.down[i] = want;
        tracing::info!(cluster = name, outage = ?want, "simulated member outage changed");
    }
}

/// The running members and their in-process Pull agents.
pub struct Members {
    running: Arc<tokio::sync::Mutex<Running>>,
    watcher: Option<(watch::Sender<bool>, tokio::task::JoinHandle<()>)>,
    kubeconfigs: Vec<(String, PathBuf)>,
}

impl Members {
    /// (name, kubeconfig path) of each member, in order.
    pub fn kubeconfigs(&self) -> &[(String, PathBuf)] {
        &self.kubeconfigs
    }

    /// Stops the outage watcher and the Pull agents (first, while both
    /// sides still answer).
    pub async fn stop_agents(&mut self) {
        if let Some((stop, task)) = self.watcher.take() {
            let _ = stop.send(true);
            let _ = task.await;
        }
        let mut running = self.running.lock().await;
        for a in &mut running.agents {
            a.stop().await;
        }
    }

    /// Stops the agents, then the simulated clusters (stop the control
    /// plane's Push agents in between).
    pub async fn stop(mut self) {
        self.stop_agents().await;
        let sims = std::mem::take(&mut self.running.lock().await.sims);
        for s in sims {
            s.stop().await;
        }
    }

    /// Follows the outage files of `data_dir` until the members stop.
    fn watch_outages(&mut self, data_dir: &Path) {
        let files: Vec<PathBuf> = self
            .kubeconfigs
            .iter()
            .map(|(name, _)| outage_file(data_dir, name))
            .collect();
        let running = self.running.clone();
        let (stop, mut stopped) = watch::channel(false);
        let task = tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(OUTAGE_POLL) => {}
                    _ = stopped.wait_for(|s| *s) => return,
                }
                let wanted: Vec<Option<Outage>> = files
                    .iter()
                    .map(|f| match std::fs::read_to_string(f) {
                        Ok(text) => Outage::parse(&text).or_else(|| {
                            tracing::warn!(file = %f.display(), "outage file: write \"agent\" or \"api\"");
                            None
                        }),
                        Err(_) => None,
                    })
                    .collect();
                let mut r = running.lock().await;
                for (i, want) in wanted.into_iter().enumerate() {
                    r.set(i, want).await;
                }
            }
        });
        self.watcher = Some((stop, task));
    }
}

/// The fleets of `n` members: from `file`, or generated.
pub fn fleets(n: usize, file: Option<&Path>) -> Result<Vec<Fleet>, SimClustersError> {
    let Some(path) = file else {
        return Ok((1..=n).map(generated_fleet).collect());
    };
    let text = std::fs::read_to_string(path).map_err(|source| SimClustersError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let parse_err = |message: String| SimClustersError::Parse {
        path: path.to_path_buf(),
        message,
    };
    // A YAML list is one fleet per member; anything else is one fleet for
    // every member. Either is read strictly (errors name the field's path).
    let is_list = matches!(
        serde_saphyr::from_str::<serde_json::Value>(&text),
        Ok(serde_json::Value::Array(_))
    );
    let list: Vec<Fleet> = if is_list {
        let list: Vec<Fleet> = hami_api::yaml::from_str(&text).map_err(parse_err)?;
        if list.len() < n {
            return Err(SimClustersError::TooFew {
                path: path.to_path_buf(),
                found: list.len(),
                wanted: n,
            });
        }
        list.into_iter().take(n).collect()
    } else {
        let one = Fleet::from_yaml(&text).map_err(|e| parse_err(e.to_string()))?;
        if one.nodes.is_empty() {
            return Err(parse_err(
                "the fleet has no nodes (is this a `hami sim` scenario? --fleet takes the estimator's fleet format, e.g. samples/fleet/gpu-members.yaml)".into(),
            ));
        }
        vec![one; n]
    };
    Ok(list
        .into_iter()
        .enumerate()
        .map(|(i, mut f)| {
            f.cluster = member_name(i + 1);
            f
        })
        .collect())
}

/// `member-i`.
pub fn member_name(i: usize) -> String {
    format!("member-{i}")
}

struct Profile {
    model: &'static str,
    memory_mib: u64,
    gpus_per_node: usize,
    nodes: usize,
    slots: u32,
    cpu: &'static str,
    memory: &'static str,
    /// GPUs already taken whole by a running pod on the first node.
    busy: usize,
}

const PROFILES: [Profile; 3] = [
    Profile {
        model: "NVIDIA-A100-SXM4-80GB",
        memory_mib: 81920,
        gpus_per_node: 4,
        nodes: 2,
        slots: 4,
        cpu: "96",
        memory: "768Gi",
        busy: 2,
    },
    Profile {
        model: "NVIDIA-H100-80GB-HBM3",
        memory_mib: 81920,
        gpus_per_node: 8,
        nodes: 1,
        slots: 4,
        cpu: "128",
        memory: "1024Gi",
        busy: 4,
    },
    Profile {
        model: "NVIDIA-Tesla-T4",
        memory_mib: 15360,
        gpus_per_node: 2,
        nodes: 3,
        slots: 2,
        cpu: "32",
        memory: "128Gi",
        busy: 0,
    },
];

/// The generated fleet of member `i` (1-based): A100, H100, T4, then again
/// with one node more each round, plus a running pod that holds some GPUs.
pub fn generated_fleet(i: usize) -> Fleet {
    let p = &PROFILES[(i.max(1) - 1) % PROFILES.len()];
    let round = (i.max(1) - 1) / PROFILES.len();
    let name = member_name(i);
    let nodes = (0..p.nodes + round)
        .map(|n| {
            let node = format!("{name}-gpu-{n}");
            let gpus: Vec<FleetGpu> = (0..p.gpus_per_node)
                .map(|g| FleetGpu {
                    id: format!("GPU-{node}-{g}"),
                    model: p.model.to_string(),
                    memory_mib: p.memory_mib,
                    cores: 100,
                    slots: p.slots,
                    healthy: true,
                })
                .collect();
            let pods = if n == 0 && p.busy > 0 {
                vec![FleetPod {
                    name: "existing-train-0".into(),
                    namespace: "default".into(),
                    requests: [("cpu".to_string(), "8".to_string())].into(),
                    gpus: gpus
                        .iter()
                        .take(p.busy)
                        .map(|g| FleetGpuUse {
                            device: g.id.clone(),
                            memory_mib: g.memory_mib,
                            cores: 100,
                        })
                        .collect(),
                }]
            } else {
                Vec::new()
            };
            FleetNode {
                name: node,
                labels: [(
                    "topology.kubernetes.io/zone".to_string(),
                    format!("zone-{}", (b'a' + (n % 3) as u8) as char),
                )]
                .into(),
                allocatable: [
                    ("cpu".to_string(), p.cpu.to_string()),
                    ("memory".to_string(), p.memory.to_string()),
                    ("pods".to_string(), "110".to_string()),
                ]
                .into(),
                ready: true,
                gpus,
                pods,
                ..FleetNode::default()
            }
        })
        .collect();
    Fleet {
        cluster: name,
        nodes,
        pending: Vec::new(),
    }
}

/// Starts the members and joins them to the control plane `control` talks to.
///
/// `agent_metrics`: where the in-process Pull agents report (`hami_agent_*`,
/// `hami_estimator_*` on the control plane's /metrics); `None` leaves their
/// metrics unregistered (e.g. with `--no-controllers`).
pub async fn start(
    fleets: Vec<Fleet>,
    control: kube::Client,
    data_dir: &Path,
    options: SimOptions,
    agent_metrics: Option<(AgentMetrics, Arc<EstimatorMetrics>)>,
) -> Result<Members, SimClustersError> {
    let mut running = Running {
        sims: Vec::new(),
        agents: Vec::new(),
        down: Vec::new(),
    };
    let mut kubeconfigs = Vec::new();
    let n = fleets.len();
    for (i, fleet) in fleets.into_iter().enumerate() {
        let name = fleet.cluster.clone();
        let traits = gpu_model(&fleet);
        let sim_err = |source| SimClustersError::Sim {
            name: name.clone(),
            source,
        };
        let started = SimCluster::start(&name, fleet, ([127, 0, 0, 1], 0).into()).await;
        let sim = match started {
            Ok(s) => s,
            Err(e) => {
                stop_all(running).await;
                return Err(sim_err(e));
            }
        };
        let path = data_dir.join("members").join(format!("{name}.kubeconfig"));
        let push = i + 1 == n;
        let joined = match sim.write_kubeconfig(&path) {
            Err(e) => Err(sim_err(e)),
            // Push: the Secret before the Cluster that names it.
            Ok(()) if push => match write_secret(&sim, &control).await {
                Ok(()) => apply_cluster(&sim, &control, &traits, i, true).await,
                Err(e) => Err(e),
            },
            Ok(()) => match apply_cluster(&sim, &control, &traits, i, false).await {
                Ok(()) => {
                    join_pull(&sim, i, &control, options, agent_metrics.clone()).map(|mut a| {
                        a.start();
                        running.agents.push(a);
                    })
                }
                Err(e) => Err(e),
            },
        };
        kubeconfigs.push((name.clone(), path));
        running.sims.push(sim);
        running.down.push(None);
        if let Err(e) = joined {
            stop_all(running).await;
            return Err(e);
        }
        tracing::info!(
            cluster = name,
            mode = if i + 1 < n { "Pull" } else { "Push" },
            "simulated member joined"
        );
    }
    let mut members = Members {
        running: Arc::new(tokio::sync::Mutex::new(running)),
        watcher: None,
        kubeconfigs,
    };
    members.watch_outages(data_dir);
    Ok(members)
}

/// Stops what started (a start that failed half way).
async fn stop_all(mut running: Running) {
    for a in &mut running.agents {
        a.stop().await;
    }
    for s in running.sims {
        s.stop().await;
    }
}

/// The first GPU model of a fleet, shortened for a label value
/// (`NVIDIA-A100-SXM4-80GB` -> `A100`).
fn gpu_model(fleet: &Fleet) -> String {
    let model = fleet
        .nodes
        .iter()
        .flat_map(|n| n.gpus.iter())
        .map(|g| g.model.as_str())
        .next()
        .unwrap_or("none");
    let short = ["A100", "H100", "H200", "L40S", "L4", "T4", "V100", "A10"]
        .into_iter()
        .find(|m| model.contains(m));
    short.map_or_else(
        || {
            model
                .chars()
                .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
                .take(63)
                .collect()
        },
        str::to_string,
    )
}

/// Regions given to members in turn (so region-targeted overrides show).
const REGIONS: [&str; 3] = ["us-east", "eu-west", "ap-south"];

/// Creates (or updates) the member's Cluster with what the samples select
/// on: label `hami.io/gpu` (the GPU model), a region, the sync mode.
async fn apply_cluster(
    sim: &RunningSim,
    control: &kube::Client,
    model: &str,
    index: usize,
    push: bool,
) -> Result<(), SimClustersError> {
    let name = sim.name().to_string();
    let mut spec = json!({
        "syncMode": if push { "Push" } else { "Pull" },
        "apiEndpoint": sim.url(),
        "region": REGIONS[index % REGIONS.len()],
    });
    if push {
        spec["secretRef"] = json!({"namespace": PUSH_SECRET_NAMESPACE, "name": secret_name(&name)});
    }
    let cluster = json!({
        "apiVersion": "cluster.hami.io/v1alpha1", "kind": "Cluster",
        "metadata": {"name": name, "labels": {"hami.io/gpu": model, "hami.io/simulated": "true"}},
        "spec": spec,
    });
    Api::<hami_api::cluster::Cluster>::all(control.clone())
        .patch(
            &name,
            &PatchParams::apply(MANAGER).force(),
            &Patch::Apply(&cluster),
        )
        .await
        .map_err(|source| SimClustersError::Join { name, source })?;
    Ok(())
}

fn secret_name(cluster: &str) -> String {
    format!("{cluster}-kubeconfig")
}

/// The configuration of the Pull agent of member `name`: Lease renewal
/// every `renew`, Ready=False after four intervals out of reach (Karmada's
/// 10 s / 40 s ratio), status looked at every interval.
fn agent_config(name: &str, api_endpoint: String, renew: Duration) -> AgentConfig {
    let mut config = AgentConfig::new(name);
    config.api_endpoint = Some(api_endpoint);
    config.estimator_addr = Some(([127, 0, 0, 1], 0).into());
    config.lease_renew_interval = renew;
    config.member_grace = renew.saturating_mul(4);
    config.status_interval = renew.min(config.status_interval);
    config
}

/// An in-process Pull agent for `sim` (member number `index`), not started.
fn join_pull(
    sim: &RunningSim,
    index: usize,
    control: &kube::Client,
    options: SimOptions,
    metrics: Option<(AgentMetrics, Arc<EstimatorMetrics>)>,
) -> Result<PullAgent, SimClustersError> {
    let name = sim.name().to_string();
    let client = sim.client().map_err(|source| SimClustersError::Sim {
        name: name.clone(),
        source,
    })?;
    Ok(PullAgent {
        member: index,
        control: control.clone(),
        client,
        config: agent_config(&name, sim.url(), options.lease_renew_interval),
        metrics,
        running: None,
    })
}

/// The Push member's kubeconfig in Secret `hami-system/<name>-kubeconfig`
/// (namespace created when missing).
async fn write_secret(sim: &RunningSim, control: &kube::Client) -> Result<(), SimClustersError> {
    let name = sim.name().to_string();
    let err = |source| SimClustersError::Join {
        name: name.clone(),
        source,
    };
    let namespaces: Api<Namespace> = Api::all(control.clone());
    let ns = Namespace {
        metadata: ObjectMeta {
            name: Some(PUSH_SECRET_NAMESPACE.into()),
            ..ObjectMeta::default()
        },
        ..Namespace::default()
    };
    match namespaces.create(&PostParams::default(), &ns).await {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 409 => {}
        Err(e) => return Err(err(e)),
    }
    let secret_name = secret_name(&name);
    let pp = PatchParams::apply(MANAGER).force();
    let secret = Secret {
        metadata: ObjectMeta {
            name: Some(secret_name.clone()),
            namespace: Some(PUSH_SECRET_NAMESPACE.into()),
            ..ObjectMeta::default()
        },
        type_: Some("Opaque".into()),
        data: Some(
            [(
                KUBECONFIG_KEY.to_string(),
                ByteString(sim.kubeconfig().into_bytes()),
            )]
            .into(),
        ),
        ..Secret::default()
    };
    Api::<Secret>::namespaced(control.clone(), PUSH_SECRET_NAMESPACE)
        .patch(&secret_name, &pp, &Patch::Apply(&secret))
        .await
        .map_err(err)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outage_files_say_agent_or_api() {
        assert_eq!(Outage::parse(""), Some(Outage::Agent));
        assert_eq!(Outage::parse("agent\n"), Some(Outage::Agent));
        assert_eq!(Outage::parse(" api "), Some(Outage::Api));
        assert_eq!(Outage::parse("everything"), None);
        assert_eq!(
            outage_file(Path::new("/d"), "member-2"),
            Path::new("/d/members/member-2.down")
        );
    }

    #[test]
    fn agent_timing_follows_the_renew_interval() {
        let c = agent_config("member-1", "http://x".into(), Duration::from_millis(500));
        assert_eq!(c.lease_renew_interval, Duration::from_millis(500));
        assert_eq!(c.member_grace, Duration::from_secs(2));
        assert_eq!(c.status_interval, Duration::from_millis(500));
        let d = agent_config("member-1", "http://x".into(), Duration::from_secs(10));
        assert_eq!(d.member_grace, Duration::from_secs(40));
        assert_eq!(d.status_interval, Duration::from_secs(10));
    }

    #[test]
    fn generated_members_differ_in_model_and_capacity() {
        let models: Vec<String> = (1..=4)
            .map(|i| generated_fleet(i).nodes[0].gpus[0].model.clone())
            .collect();
        assert_eq!(models[0], "NVIDIA-A100-SXM4-80GB");
        assert_eq!(models[1], "NVIDIA-H100-80GB-HBM3");
        assert_eq!(models[2], "NVIDIA-Tesla-T4");
        assert_eq!(models[3], models[0]);
        assert_eq!(
            generated_fleet(4).nodes.len(),
            generated_fleet(1).nodes.len() + 1
        );
        for i in 1..=4 {
            let f = generated_fleet(i);
            assert_eq!(f.cluster, format!("member-{i}"));
            // Every fleet is valid for the simulator.
            f.snapshot(0).unwrap();
        }
    }

    #[test]
    fn fleet_file_one_or_a_list() {
        let dir = tempfile::tempdir().unwrap();
        let one = dir.path().join("one.yaml");
        let yaml = generated_fleet(2).to_yaml().unwrap();
        std::fs::write(&one, &yaml).unwrap();
        let got = fleets(3, Some(&one)).unwrap();
        assert_eq!(got.len(), 3);
        assert_eq!(got[2].cluster, "member-3");
        assert_eq!(got[0].nodes, got[2].nodes);

        let list = dir.path().join("list.yaml");
        let text = format!(
            "- {}\n- {}\n",
            serde_json::to_string(&generated_fleet(1)).unwrap(),
            serde_json::to_string(&generated_fleet(3)).unwrap()
        );
        std::fs::write(&list, text).unwrap();
        let got = fleets(2, Some(&list)).unwrap();
        assert_eq!(got[1].nodes[0].gpus[0].model, "NVIDIA-Tesla-T4");
        let e = fleets(3, Some(&list)).unwrap_err().to_string();
        assert!(e.contains("lists 2 fleets"), "{e}");

        let bad = dir.path().join("bad.yaml");
        std::fs::write(&bad, "nodes: 7").unwrap();
        assert!(matches!(
            fleets(1, Some(&bad)),
            Err(SimClustersError::Parse { .. })
        ));
        assert!(matches!(
            fleets(1, Some(&dir.path().join("absent.yaml"))),
            Err(SimClustersError::Read { .. })
        ));
    }

    /// The README's quick start: the sample fleet gives every member GPUs;
    /// the `hami sim` scenario beside it is refused, naming the key.
    #[test]
    fn the_sample_fleet_works_and_a_sim_scenario_is_refused() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        let got = fleets(3, Some(&root.join("samples/fleet/gpu-members.yaml"))).unwrap();
        assert!(
            got.iter()
                .all(|f| f.nodes.iter().any(|n| !n.gpus.is_empty()))
        );
        let e = fleets(3, Some(&root.join("samples/sim/gpu-fleet.yaml")))
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown field `clusters`"), "{e}");
        let dir = tempfile::tempdir().unwrap();
        let list = dir.path().join("list.yaml");
        std::fs::write(
            &list,
            "- nodes:\n    - name: a\n      gpus: [{id: g, memoryMib: 1}]\n",
        )
        .unwrap();
        let e = fleets(1, Some(&list)).unwrap_err().to_string();
        assert!(e.contains("[0].nodes[0].gpus[0].memoryMib: "), "{e}");
    }
}
