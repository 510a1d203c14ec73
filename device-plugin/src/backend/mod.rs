//! GPU discovery behind one trait. A backend lists the node's GPUs and keeps a
//! watch channel current with the full list whenever a device appears,
//! disappears or changes health. The NVML backend talks to the driver; the fake
//! backend reads a file and serves tests, the simulator and machines without a GPU.

pub mod fake;
pub mod nvml;

use std::path::PathBuf;

use tokio::sync::watch;

/// One physical GPU as a backend sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GpuDevice {
    /// Driver UUID, e.g. `GPU-6f3c...`; the device's identity everywhere.
    pub uuid: String,
    /// Model string, e.g. `NVIDIA A100-SXM4-40GB`.
    pub model: String,
    /// Total device memory in MiB.
    pub memory_mib: u64,
    /// NUMA node the device is attached to, when known.
    pub numa: Option<i64>,
    /// Whether the device may be handed to containers.
    pub healthy: bool,
    /// PCI bus id, when known.
    pub pci_bus_id: Option<String>,
    /// CUDA compute capability as `major.minor`, when known.
    pub compute_capability: Option<String>,
}

/// A sample of how busy a device is; read for metrics only, never sent to kubelet.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DeviceUsage {
    pub uuid: String,
    pub memory_used_mib: u64,
    pub utilization_percent: u32,
}

/// Errors a user reads when a backend cannot start or answer.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error(
        "NVML is not available ({detail}). This machine has no usable NVIDIA driver \
         (libnvidia-ml.so.1 could not be loaded or initialised). To run without a GPU, \
         use the fake backend: --backend fake --fake-devices FILE (a YAML or JSON list of GPUs \
         with uuid, model, memoryMiB, health, numa)"
    )]
    NvmlUnavailable { detail: String },
    #[error("NVML call {call} failed: {detail}")]
    Nvml { call: &'static str, detail: String },
    #[error("cannot read fake device file {path}: {source}")]
    FakeRead {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("fake device file {path} is not valid: {detail}")]
    FakeInvalid { path: PathBuf, detail: String },
}

/// A source of GPUs.
pub trait Backend: Send + Sync + 'static {
    /// Short name for logs, e.g. `nvml` or `fake`.
    fn name(&self) -> &'static str;

    /// The devices as they are now.
    fn list(&self) -> Result<Vec<GpuDevice>, BackendError>;

    /// Memory in use and utilization per device, for metrics. Devices that
    /// cannot be sampled are left out.
    fn usage(&self) -> Vec<DeviceUsage>;

    /// Starts watching in the background: `tx` receives the full device list
    /// whenever anything in it changes (health included). Runs until every
    /// receiver of `tx` is gone.
    fn watch(&self, tx: watch::Sender<Vec<GpuDevice>>) -> Result<(), BackendError>;
}

/// Replaces the value in `tx` only when it differs, so receivers wake only on change.
pub(crate) fn publish(tx: &watch::Sender<Vec<GpuDevice>>, devices: Vec<GpuDevice>) -> bool {
    tx.send_if_modified(|current| {
        if *current == devices {
            false
        } else {
            *current = devices;
            true
        }
    })
}
