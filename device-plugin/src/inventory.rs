//! The node's GPU inventory, published in HAMi's node annotation
//! (`hami.io/node-nvidia-register`) so that HAMi's scheduler and hami's
//! estimator read the same devices. The annotation is rewritten only when its
//! content changes: a new device, a lost one, or a health flip.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use hami_api::gpu::{NODE_NVIDIA_REGISTER, NodeDevice, encode_node_devices};
use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, Patch, PatchParams};
use tokio::sync::watch;

use crate::backend::GpuDevice;
use crate::metrics::Metrics;
use crate::slicing::SliceConfig;

/// The sharing mode HAMi's scheduler expects for devices limited by HAMi-core.
pub const HAMI_CORE_MODE: &str = "hami-core";

/// How long to wait before retrying a failed write.
const RETRY_AFTER: Duration = Duration::from_secs(2);

/// Why the inventory could not be written.
#[derive(Debug, thiserror::Error)]
pub enum InventoryError {
    #[error("patching node {node} failed: {source}")]
    Kube {
        node: String,
        #[source]
        source: kube::Error,
    },
    #[error("writing inventory file {path} failed: {source}")]
    File {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The annotation's devices for the given GPUs: one entry per GPU, with the
/// share slots and scaled memory this plugin offers.
pub fn node_devices(gpus: &[GpuDevice], cfg: &SliceConfig) -> Vec<NodeDevice> {
    gpus.iter()
        .enumerate()
        .map(|(index, gpu)| NodeDevice {
            id: gpu.uuid.clone(),
            index: u32::try_from(index).unwrap_or(u32::MAX),
            count: cfg.slots_per_gpu(),
            devmem: cfg.scaled_memory_mib(gpu),
            devcore: 100,
            model: gpu.model.clone(),
            numa: gpu.numa.and_then(|n| i32::try_from(n).ok()).unwrap_or(0),
            mode: HAMI_CORE_MODE.to_string(),
            health: gpu.healthy,
        })
        .collect()
}

/// Where the annotation goes.
#[async_trait::async_trait]
pub trait InventorySink: Send + Sync + 'static {
    /// Writes the annotation's value (the whole JSON array).
    async fn write(&self, value: &str) -> Result<(), InventoryError>;
}

/// Patches the annotation onto a Node object.
pub struct KubeNodeSink {
    api: Api<Node>,
    node: String,
}

impl KubeNodeSink {
    pub fn new(client: kube::Client, node: String) -> Self {
        Self {
            api: Api::all(client),
            node,
        }
    }
}

#[async_trait::async_trait]
impl InventorySink for KubeNodeSink {
    async fn write(&self, value: &str) -> Result<(), InventoryError> {
        let patch = serde_json::json!({
            "metadata": { "annotations": { NODE_NVIDIA_REGISTER: value } }
        });
        self.api
            .patch(&self.node, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map(|_| ())
            .map_err(|source| InventoryError::Kube {
                node: self.node.clone(),
                source,
            })
    }
}

/// Writes the annotation's value to a file (atomically, by rename); for tests
/// and for running without a cluster.
pub struct FileSink {
    path: PathBuf,
}

impl FileSink {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }
}

#[async_trait::async_trait]
impl InventorySink for FileSink {
    async fn write(&self, value: &str) -> Result<(), InventoryError> {
        let err = |source| InventoryError::File {
            path: self.path.clone(),
            source,
        };
        let mut tmp = self.path.clone().into_os_string();
        tmp.push(".tmp");
        tokio::fs::write(&tmp, value).await.map_err(err)?;
        tokio::fs::rename(&tmp, &self.path).await.map_err(err)
    }
}

/// Keeps the annotation current until the device channel closes. Writes once
/// at start, then only when the encoded value changes; a failed write is
/// retried until it succeeds or a newer value replaces it.
pub async fn run(
    mut gpus: watch::Receiver<Vec<GpuDevice>>,
    cfg: SliceConfig,
    sink: Arc<dyn InventorySink>,
    metrics: Arc<Metrics>,
) {
    let mut written: Option<String> = None;
    loop {
        let value = encode_node_devices(&node_devices(&gpus.borrow_and_update(), &cfg));
        if written.as_deref() != Some(value.as_str()) {
            match sink.write(&value).await {
                Ok(()) => {
                    tracing::info!(
                        annotation = NODE_NVIDIA_REGISTER,
                        "node GPU inventory written"
                    );
                    metrics.inventory_writes.inc();
                    written = Some(value);
                }
                Err(err) => {
                    tracing::warn!(error = %err, "writing node GPU inventory failed; retrying");
                    metrics.inventory_write_errors.inc();
                    tokio::select! {
                        changed = gpus.changed() => if changed.is_err() { return },
                        () = tokio::time::sleep(RETRY_AFTER) => {}
                    }
                    continue;
                }
            }
        }
        if gpus.changed().await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::slicing::Mode;
    use hami_api::gpu::parse_node_devices;

    fn gpus() -> Vec<GpuDevice> {
        vec![
            GpuDevice {
                uuid: "GPU-a".into(),
                model: "NVIDIA A100-SXM4-40GB".into(),
                memory_mib: 40960,
                numa: Some(1),
                healthy: true,
                pci_bus_id: None,
                compute_capability: None,
            },
            GpuDevice {
                uuid: "GPU-b".into(),
                model: "Tesla T4".into(),
                memory_mib: 15360,
                numa: None,
                healthy: false,
                pci_bus_id: None,
                compute_capability: None,
            },
        ]
    }

    #[test]
    fn annotation_round_trips_through_the_shared_parser() {
        let cfg = SliceConfig {
            mode: Mode::Shared,
            split_count: 10,
            memory_scaling: 1.5,
        };
        let devices = node_devices(&gpus(), &cfg);
        let parsed = parse_node_devices(&encode_node_devices(&devices)).unwrap();
        assert_eq!(parsed, devices);
        assert_eq!(parsed[0].count, 10);
        assert_eq!(parsed[0].devmem, 61440);
        assert_eq!(parsed[0].numa, 1);
        assert_eq!(parsed[0].mode, HAMI_CORE_MODE);
        assert!(parsed[0].health);
        assert!(!parsed[1].health);
        assert_eq!(parsed[1].index, 1);
    }

    #[test]
    fn hand_written_hami_annotation_parses_to_the_same_devices() {
        // As HAMi's device plugin writes it (Go field order, omitempty drops index 0).
        let by_hand = r#"[{"id":"GPU-a","count":10,"devmem":40960,"devcore":100,"type":"NVIDIA A100-SXM4-40GB","numa":1,"mode":"hami-core","health":true},{"id":"GPU-b","index":1,"count":10,"devmem":15360,"devcore":100,"type":"Tesla T4","numa":0,"mode":"hami-core","customField":"ignored"}]"#;
        let cfg = SliceConfig::default();
        assert_eq!(
            parse_node_devices(by_hand).unwrap(),
            node_devices(&gpus(), &cfg)
        );
    }

    #[test]
    fn whole_mode_offers_one_slot_and_real_memory() {
        let cfg = SliceConfig {
            mode: Mode::Whole,
            split_count: 10,
            memory_scaling: 2.0,
        };
        let devices = node_devices(&gpus(), &cfg);
        assert_eq!(devices[0].count, 1);
        assert_eq!(devices[0].devmem, 40960);
    }
}
