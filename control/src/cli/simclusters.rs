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

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use hami_agent::pull::{Agent, AgentMetrics};
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
    /// The fleet file is neither a fleet nor a list of fleets.
    #[error("fleet file {path}: neither a fleet nor a list of fleets: {message}")]
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
    /// The control plane's URL is unusable.
    #[error("control plane client: {0}")]
    Control(String),
}

/// The running members and their in-process Pull agents.
pub struct Members {
    sims: Vec<RunningSim>,
    agents: Vec<tokio::task::JoinHandle<()>>,
    stop: watch::Sender<bool>,
    kubeconfigs: Vec<(String, PathBuf)>,
}

impl Members {
    /// (name, kubeconfig path) of each member, in order.
    pub fn kubeconfigs(&self) -> &[(String, PathBuf)] {
        &self.kubeconfigs
    }

    /// Stops the Pull agents (first, while both sides still answer).
    pub async fn stop_agents(&mut self) {
        let _ = self.stop.send(true);
        for a in self.agents.drain(..) {
            let _ = tokio::time::timeout(Duration::from_secs(10), a).await;
        }
    }

    /// Stops the agents, then the simulated clusters (stop the control
    /// plane's Push agents in between).
    pub async fn stop(mut self) {
        self.stop_agents().await;
        for s in self.sims {
            s.stop().await;
        }
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
    let list: Vec<Fleet> = match serde_saphyr::from_str::<Vec<Fleet>>(&text) {
        Ok(list) => {
            if list.len() < n {
                return Err(SimClustersError::TooFew {
                    path: path.to_path_buf(),
                    found: list.len(),
                    wanted: n,
                });
            }
            list.into_iter().take(n).collect()
        }
        Err(list_err) => {
            let one = Fleet::from_yaml(&text)
                .map_err(|e| parse_err(format!("as a list: {list_err}; as one fleet: {e}")))?;
            vec![one; n]
        }
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

/// Starts the members and joins them to the control plane at `control_url`.
///
/// `agent_metrics`: where the in-process Pull agents report (`hami_agent_*`,
/// `hami_estimator_*` on the control plane's /metrics); `None` leaves their
/// metrics unregistered (e.g. with `--no-controllers`).
pub async fn start(
    fleets: Vec<Fleet>,
    control_url: &str,
    data_dir: &Path,
    agent_metrics: Option<(AgentMetrics, Arc<EstimatorMetrics>)>,
) -> Result<Members, SimClustersError> {
    let control = kube::Client::try_from(kube::Config::new(
        control_url
            .parse()
            .map_err(|e| SimClustersError::Control(format!("{control_url}: {e}")))?,
    ))
    .map_err(|e| SimClustersError::Control(e.to_string()))?;
    let (stop, stop_rx) = watch::channel(false);
    let mut members = Members {
        sims: Vec::new(),
        agents: Vec::new(),
        stop,
        kubeconfigs: Vec::new(),
    };
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
                members.stop().await;
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
                Ok(()) => join_pull(&sim, &control, &stop_rx, agent_metrics.clone())
                    .map(|t| members.agents.push(t)),
                Err(e) => Err(e),
            },
        };
        members.kubeconfigs.push((name.clone(), path));
        members.sims.push(sim);
        if let Err(e) = joined {
            members.stop().await;
            return Err(e);
        }
        tracing::info!(
            cluster = name,
            mode = if i + 1 < n { "Pull" } else { "Push" },
            "simulated member joined"
        );
    }
    Ok(members)
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

/// An in-process Pull agent for `sim`.
fn join_pull(
    sim: &RunningSim,
    control: &kube::Client,
    stop: &watch::Receiver<bool>,
    metrics: Option<(AgentMetrics, Arc<EstimatorMetrics>)>,
) -> Result<tokio::task::JoinHandle<()>, SimClustersError> {
    let name = sim.name().to_string();
    let member = sim.client().map_err(|source| SimClustersError::Sim {
        name: name.clone(),
        source,
    })?;
    let mut config = hami_agent::pull::AgentConfig::new(&name);
    config.api_endpoint = Some(sim.url());
    config.estimator_addr = Some(([127, 0, 0, 1], 0).into());
    let (control, stop) = (control.clone(), stop.clone());
    Ok(tokio::spawn(async move {
        let ran = match metrics {
            Some((agent, estimator)) => {
                Agent::new(config, agent, estimator)
                    .run(control, member, stop)
                    .await
            }
            None => hami_agent::pull::run(control, member, config, stop).await,
        };
        if let Err(e) = ran {
            tracing::error!(cluster = name, error = %e, "agent could not run");
        }
    }))
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
}
