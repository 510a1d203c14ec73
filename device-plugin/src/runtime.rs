//! Flags and wiring: builds the backend, starts the inventory writer, the HTTP
//! endpoints and the kubelet loop, and stops them on SIGTERM or Ctrl-C.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use anyhow::Context;
use prometheus_client::registry::Registry;
use tokio::sync::watch;

use crate::backend::fake::FakeBackend;
use crate::backend::nvml::NvmlBackend;
use crate::backend::{Backend, BackendError, GpuDevice};
use crate::http::{HttpState, router};
use crate::inventory::{FileSink, InventorySink, KubeNodeSink};
use crate::kubelet::{DEFAULT_KUBELET_SOCKET, KubeletConfig};
use crate::metrics::Metrics;
use crate::pods::{KubePods, PodAllocations};
use crate::service::PluginState;
use crate::slicing::{Mode, Policy, SliceConfig};

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum BackendKind {
    /// NVIDIA's management library (needs the driver's libnvidia-ml.so.1).
    Nvml,
    /// GPUs listed in a file (--fake-devices); for tests and machines without a GPU.
    Fake,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum InventoryKind {
    /// Patch the annotation onto the Node named by --node-name.
    Kube,
    /// Write the annotation's value to --inventory-file.
    File,
    /// Do not publish the inventory.
    None,
}

/// hami's kubelet device plugin: offers the node's NVIDIA GPUs to kubelet,
/// whole or as shares, and publishes the node's GPU inventory.
#[derive(Clone, Debug, clap::Parser)]
#[command(name = "hami-device-plugin", version)]
pub struct Args {
    /// Where GPUs come from.
    #[arg(long, env = "HAMI_DP_BACKEND", value_enum, default_value = "nvml")]
    pub backend: BackendKind,
    /// The fake backend's device file (YAML or JSON list of GPUs: uuid, model, memoryMiB, health, numa).
    #[arg(long, env = "HAMI_FAKE_DEVICES")]
    pub fake_devices: Option<PathBuf>,
    /// Print the backend's devices (model, memory, UUID) and exit.
    #[arg(long)]
    pub list_devices: bool,
    /// Kubelet's registration socket.
    #[arg(long, env = "KUBELET_SOCKET", default_value = DEFAULT_KUBELET_SOCKET)]
    pub kubelet_socket: PathBuf,
    /// File name of the plugin's socket, created beside kubelet's socket.
    #[arg(long, env = "HAMI_DP_SOCKET_NAME", default_value = "hami-nvidia.sock")]
    pub socket_name: String,
    /// Extended resource the plugin offers.
    #[arg(long, env = "HAMI_DP_RESOURCE_NAME", default_value = hami_api::gpu::RESOURCE_GPU)]
    pub resource_name: String,
    /// Offer each GPU whole, or as --device-split-count share slots.
    #[arg(long, env = "HAMI_DP_MODE", value_enum, default_value = "shared")]
    pub mode: Mode,
    /// Share slots per GPU in shared mode.
    #[arg(long, env = "DEVICE_SPLIT_COUNT", default_value_t = 10,
          value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub device_split_count: u32,
    /// Factor on each GPU's memory before it is divided into shares (above 1 over-subscribes).
    #[arg(long, env = "DEVICE_MEMORY_SCALING", default_value_t = 1.0, value_parser = parse_scaling)]
    pub device_memory_scaling: f64,
    /// How GetPreferredAllocation places shares: on the fewest GPUs, or over as many as possible.
    #[arg(
        long,
        env = "HAMI_DP_ALLOCATION_POLICY",
        value_enum,
        default_value = "pack"
    )]
    pub allocation_policy: Policy,
    /// Where the node's GPU inventory annotation goes.
    #[arg(long, env = "HAMI_DP_INVENTORY", value_enum, default_value = "kube")]
    pub inventory: InventoryKind,
    /// Node whose annotation is written (with --inventory kube).
    #[arg(long, env = "NODE_NAME")]
    pub node_name: Option<String>,
    /// File the annotation's value is written to (with --inventory file).
    #[arg(long, env = "HAMI_DP_INVENTORY_FILE")]
    pub inventory_file: Option<PathBuf>,
    /// Follow HAMi's scheduler hand-off: take each container's devices, memory and
    /// cores from the pod it marked `hami.io/bind-phase: allocating` on this node
    /// (needs --node-name and API access); without such a pod, share slots decide.
    #[arg(long, env = "HAMI_SCHEDULER")]
    pub hami_scheduler: bool,
    /// Address of /metrics, /healthz and /readyz.
    #[arg(long, env = "HAMI_DP_HTTP_ADDR", default_value = "0.0.0.0:9394")]
    pub http_addr: SocketAddr,
    /// Log as JSON lines.
    #[arg(long, env = "HAMI_DP_LOG_JSON")]
    pub log_json: bool,
}

fn parse_scaling(text: &str) -> Result<f64, String> {
    let v: f64 = text
        .parse()
        .map_err(|e| format!("{text:?} is not a number: {e}"))?;
    if v.is_finite() && v > 0.0 && v <= 100.0 {
        Ok(v)
    } else {
        Err(format!("{v} must be greater than 0 and at most 100"))
    }
}

impl Args {
    pub fn slice_config(&self) -> SliceConfig {
        SliceConfig {
            mode: self.mode,
            split_count: self.device_split_count,
            memory_scaling: self.device_memory_scaling,
        }
    }

    pub fn kubelet_config(&self) -> KubeletConfig {
        let dir = self
            .kubelet_socket
            .parent()
            .map(PathBuf::from)
            .unwrap_or_default();
        KubeletConfig {
            kubelet_socket: self.kubelet_socket.clone(),
            plugin_socket: dir.join(&self.socket_name),
            resource_name: self.resource_name.clone(),
        }
    }
}

/// Opens the backend the flags name.
pub fn open_backend(args: &Args) -> Result<Arc<dyn Backend>, BackendError> {
    match args.backend {
        BackendKind::Nvml => Ok(Arc::new(NvmlBackend::init()?)),
        BackendKind::Fake => {
            let path = args
                .fake_devices
                .clone()
                .ok_or_else(|| BackendError::FakeInvalid {
                    path: PathBuf::new(),
                    detail: "--backend fake needs --fake-devices FILE (or HAMI_FAKE_DEVICES)"
                        .to_string(),
                })?;
            Ok(Arc::new(FakeBackend::open(path)?))
        }
    }
}

/// One line per device, for `--list-devices`.
pub fn describe(index: usize, gpu: &GpuDevice) -> String {
    let opt = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".to_string());
    format!(
        "GPU {index}: {model}  memory {mem} MiB  UUID {uuid}  numa {numa}  pci {pci}  compute {cc}  {health}",
        model = gpu.model,
        mem = gpu.memory_mib,
        uuid = gpu.uuid,
        numa = gpu.numa.map_or_else(|| "-".to_string(), |n| n.to_string()),
        pci = opt(&gpu.pci_bus_id),
        cc = opt(&gpu.compute_capability),
        health = if gpu.healthy { "Healthy" } else { "Unhealthy" },
    )
}

/// Runs the plugin until SIGTERM or Ctrl-C.
pub async fn run(args: Args) -> anyhow::Result<()> {
    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("stopping");
        let _ = stop_tx.send(true);
    });
    run_until(args, stop_rx).await
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

/// Runs the plugin until `shutdown` turns true; tests drive it in-process.
pub async fn run_until(args: Args, shutdown: watch::Receiver<bool>) -> anyhow::Result<()> {
    let backend = open_backend(&args)?;
    if args.list_devices {
        let devices = backend.list()?;
        println!("{} backend: {} GPU(s)", backend.name(), devices.len());
        for (i, gpu) in devices.iter().enumerate() {
            println!("{}", describe(i, gpu));
        }
        return Ok(());
    }
    let cfg = args.slice_config();
    let (gpus_tx, gpus_rx) = watch::channel(Vec::new());
    backend.watch(gpus_tx)?;
    tracing::info!(
        backend = backend.name(),
        gpus = gpus_rx.borrow().len(),
        mode = ?cfg.mode,
        split = cfg.split_count,
        "devices found"
    );

    let mut registry = Registry::default();
    let metrics = Arc::new(Metrics::register(&mut registry));

    let needs_api = args.inventory == InventoryKind::Kube || args.hami_scheduler;
    let api = if needs_api {
        let node = args.node_name.clone().context(
            "--inventory kube and --hami-scheduler need --node-name or NODE_NAME \
             (use --inventory none or file to run without a cluster)",
        )?;
        let client = kube::Client::try_default()
            .await
            .context("connecting to the Kubernetes API")?;
        Some((client, node))
    } else {
        None
    };
    let sink: Option<Arc<dyn InventorySink>> = match args.inventory {
        InventoryKind::None => None,
        InventoryKind::File => {
            let path = args
                .inventory_file
                .clone()
                .context("--inventory file needs --inventory-file PATH")?;
            Some(Arc::new(FileSink::new(path)))
        }
        InventoryKind::Kube => api.clone().map(|(client, node)| {
            Arc::new(KubeNodeSink::new(client, node)) as Arc<dyn InventorySink>
        }),
    };
    let pods: Option<Arc<dyn PodAllocations>> = match (&api, args.hami_scheduler) {
        (Some((client, node)), true) => Some(Arc::new(KubePods::new(client.clone(), node.clone()))),
        _ => None,
    };
    if let Some(sink) = sink {
        tokio::spawn(crate::inventory::run(
            gpus_rx.clone(),
            cfg.clone(),
            sink,
            Arc::clone(&metrics),
        ));
    }

    let ready = Arc::new(AtomicBool::new(false));
    let http_state = Arc::new(HttpState {
        registry: parking_lot::Mutex::new(registry),
        metrics: Arc::clone(&metrics),
        backend: Arc::clone(&backend),
        gpus: gpus_rx.clone(),
        cfg: cfg.clone(),
        ready: Arc::clone(&ready),
    });
    let listener = tokio::net::TcpListener::bind(args.http_addr)
        .await
        .with_context(|| format!("binding {}", args.http_addr))?;
    tracing::info!(addr = %listener.local_addr()?, "serving /metrics, /healthz, /readyz");
    let mut http_stop = shutdown.clone();
    let http = tokio::spawn(async move {
        let served = axum::serve(listener, router(http_state))
            .with_graceful_shutdown(async move {
                let _ = http_stop.wait_for(|s| *s).await;
            })
            .await;
        if let Err(err) = served {
            tracing::warn!(error = %err, "HTTP server ended");
        }
    });

    let state = Arc::new(PluginState {
        cfg,
        policy: args.allocation_policy,
        gpus: gpus_rx,
        metrics,
        pods,
    });
    let result = crate::kubelet::run(args.kubelet_config(), state, ready, shutdown).await;
    http.abort();
    // Keep the backend alive until the kubelet loop has stopped.
    drop(backend);
    result.map_err(anyhow::Error::from)
}
