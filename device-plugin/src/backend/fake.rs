//! A backend read from a file: a YAML (or JSON, which YAML parsing also
//! accepts) list of GPUs. The file is polled for changes so that a test can flip
//! a device's health by rewriting it. A file that becomes invalid while the
//! plugin runs is logged and ignored: the last good list stays in force.
//!
//! ```yaml
//! devices:
//!   - uuid: GPU-0000-a
//!     model: NVIDIA A100-SXM4-40GB
//!     memoryMiB: 40960
//!     health: Healthy      # or Unhealthy; default Healthy
//!     numa: 0              # optional
//!     memoryUsedMiB: 1024  # optional, metrics only
//!     utilization: 30      # optional, percent, metrics only
//! ```
//! A bare list (without `devices:`) is accepted as well.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use parking_lot::RwLock;

use serde::Deserialize;
use tokio::sync::watch;

use super::{Backend, BackendError, DeviceUsage, GpuDevice, publish};

/// How often the file's modification time is checked. Short enough that a
/// health flip reaches kubelet well within a second.
pub const POLL_INTERVAL: Duration = Duration::from_millis(200);

/// The file with its `devices:` key (a bare list is read as the list).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FakeFile {
    devices: Vec<FakeGpu>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct FakeGpu {
    uuid: String,
    model: String,
    #[serde(rename = "memoryMiB")]
    memory_mib: u64,
    #[serde(default)]
    health: Option<String>,
    #[serde(default)]
    numa: Option<i64>,
    #[serde(default)]
    pci_bus_id: Option<String>,
    #[serde(default)]
    compute_capability: Option<String>,
    #[serde(default, rename = "memoryUsedMiB")]
    memory_used_mib: Option<u64>,
    #[serde(default)]
    utilization: Option<u32>,
}

/// Devices parsed from one read of the file.
#[derive(Clone, Debug, Default)]
struct Snapshot {
    devices: Vec<GpuDevice>,
    usage: Vec<DeviceUsage>,
}

/// The file-backed backend.
#[derive(Debug)]
pub struct FakeBackend {
    path: PathBuf,
    latest: Arc<RwLock<Snapshot>>,
}

impl FakeBackend {
    /// Reads and validates the file once; a missing or invalid file is an error.
    pub fn open(path: impl Into<PathBuf>) -> Result<Self, BackendError> {
        let path = path.into();
        let snapshot = load(&path)?;
        Ok(Self {
            path,
            latest: Arc::new(RwLock::new(snapshot)),
        })
    }
}

impl Backend for FakeBackend {
    fn name(&self) -> &'static str {
        "fake"
    }

    fn list(&self) -> Result<Vec<GpuDevice>, BackendError> {
        let snapshot = load(&self.path)?;
        let devices = snapshot.devices.clone();
        *self.latest.write() = snapshot;
        Ok(devices)
    }

    fn usage(&self) -> Vec<DeviceUsage> {
        self.latest.read().usage.clone()
    }

    fn watch(&self, tx: watch::Sender<Vec<GpuDevice>>) -> Result<(), BackendError> {
        let snapshot = load(&self.path)?;
        publish(&tx, snapshot.devices.clone());
        *self.latest.write() = snapshot;
        tokio::spawn(poll(self.path.clone(), Arc::clone(&self.latest), tx));
        Ok(())
    }
}

async fn poll(path: PathBuf, latest: Arc<RwLock<Snapshot>>, tx: watch::Sender<Vec<GpuDevice>>) {
    let mut last_seen = modified(&path);
    let mut last_error: Option<String> = None;
    let mut ticker = tokio::time::interval(POLL_INTERVAL);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        if tx.is_closed() {
            return;
        }
        let now = modified(&path);
        if now == last_seen && last_error.is_none() {
            continue;
        }
        last_seen = now;
        match load(&path) {
            Ok(snapshot) => {
                last_error = None;
                let devices = snapshot.devices.clone();
                *latest.write() = snapshot;
                if publish(&tx, devices) {
                    tracing::info!(path = %path.display(), "fake devices changed");
                }
            }
            Err(err) => {
                let text = err.to_string();
                if last_error.as_deref() != Some(text.as_str()) {
                    tracing::warn!(error = %text, "keeping the last good fake device list");
                }
                last_error = Some(text);
            }
        }
    }
}

fn modified(path: &Path) -> Option<(SystemTime, u64)> {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}

fn load(path: &Path) -> Result<Snapshot, BackendError> {
    let text = std::fs::read_to_string(path).map_err(|source| BackendError::FakeRead {
        path: path.to_path_buf(),
        source,
    })?;
    parse(&text).map_err(|detail| BackendError::FakeInvalid {
        path: path.to_path_buf(),
        detail,
    })
}

/// Parses and validates the file's text; the error names the offending device.
fn parse(text: &str) -> Result<Snapshot, String> {
    // Strict reading: an unknown key, a wrong type or a missing field names
    // its path (`devices[1].memoryMiB: ...`).
    let bare = matches!(
        serde_saphyr::from_str::<serde_json::Value>(text),
        Ok(serde_json::Value::Array(_))
    );
    let gpus = if bare {
        hami_api::yaml::from_str::<Vec<FakeGpu>>(text).map_err(|e| {
            if e.starts_with('[') {
                format!("devices{e}")
            } else {
                e
            }
        })?
    } else {
        hami_api::yaml::from_str::<FakeFile>(text)?.devices
    };
    if gpus.is_empty() {
        return Err("the device list is empty".to_string());
    }
    let mut seen = BTreeSet::new();
    let mut snapshot = Snapshot::default();
    for (i, gpu) in gpus.into_iter().enumerate() {
        let uuid = gpu.uuid.trim().to_string();
        if uuid.is_empty() {
            return Err(format!("devices[{i}].uuid is empty"));
        }
        if let Some(bad) = uuid
            .chars()
            .find(|c| matches!(c, ',' | ':' | ';') || c.is_whitespace())
        {
            return Err(format!(
                "devices[{i}].uuid {uuid:?} contains {bad:?}, which the annotation formats reserve"
            ));
        }
        if !seen.insert(uuid.clone()) {
            return Err(format!("devices[{i}].uuid {uuid:?} appears twice"));
        }
        if gpu.memory_mib == 0 {
            return Err(format!("devices[{i}].memoryMiB must be greater than 0"));
        }
        if gpu.model.trim().is_empty() {
            return Err(format!("devices[{i}].model is empty"));
        }
        let healthy = match gpu.health.as_deref() {
            None | Some("Healthy") | Some("healthy") => true,
            Some("Unhealthy") | Some("unhealthy") => false,
            Some(other) => {
                return Err(format!(
                    "devices[{i}].health {other:?} is neither Healthy nor Unhealthy"
                ));
            }
        };
        if let Some(u) = gpu.utilization.filter(|u| *u > 100) {
            return Err(format!("devices[{i}].utilization {u} is over 100"));
        }
        snapshot.usage.push(DeviceUsage {
            uuid: uuid.clone(),
            memory_used_mib: gpu.memory_used_mib.unwrap_or(0),
            utilization_percent: gpu.utilization.unwrap_or(0),
        });
        snapshot.devices.push(GpuDevice {
            uuid,
            model: gpu.model.trim().to_string(),
            memory_mib: gpu.memory_mib,
            numa: gpu.numa,
            healthy,
            pci_bus_id: gpu.pci_bus_id,
            compute_capability: gpu.compute_capability,
        });
    }
    Ok(snapshot)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn parses_wrapped_and_bare_lists() {
        let wrapped =
            "devices:\n  - uuid: GPU-a\n    model: A100\n    memoryMiB: 40960\n    numa: 1\n";
        let s = parse(wrapped).unwrap();
        assert_eq!(s.devices.len(), 1);
        assert_eq!(s.devices[0].numa, Some(1));
        assert!(s.devices[0].healthy);
        let bare =
            r#"[{"uuid": "GPU-b", "model": "T4", "memoryMiB": 15360, "health": "Unhealthy"}]"#;
        let s = parse(bare).unwrap();
        assert_eq!(s.devices[0].uuid, "GPU-b");
        assert!(!s.devices[0].healthy);
    }

    #[test]
    fn rejects_bad_files_with_a_clear_reason() {
        let cases = [
            ("devices: []\n", "empty"),
            ("- uuid: GPU-a\n  model: A\n  memoryMiB: 0\n", "memoryMiB"),
            (
                "- uuid: GPU-a\n  model: A\n  memoryMiB: 1\n  health: Sick\n",
                "Sick",
            ),
            (
                "- {uuid: GPU-a, model: A, memoryMiB: 1}\n- {uuid: GPU-a, model: B, memoryMiB: 1}\n",
                "twice",
            ),
            ("- uuid: 'GPU,a'\n  model: A\n  memoryMiB: 1\n", "reserve"),
            ("not: [valid\n", ""),
        ];
        for (text, needle) in cases {
            let err = parse(text).expect_err(text);
            assert!(err.contains(needle), "{text:?} -> {err}");
        }
    }

    /// An unknown key, a wrong type or a missing field: the error starts
    /// with the field's path, in both the wrapped and the bare form.
    #[test]
    fn errors_name_the_field() {
        let cases = [
            (
                "- uuid: GPU-a\n  model: A\n  memoryMib: 1\n",
                "devices[0].memoryMib: ",
                "unknown field",
            ),
            (
                "devices:\n  - uuid: GPU-a\n    model: A\n    memoryMiB: lots\n",
                "devices[0].memoryMiB: ",
                "invalid",
            ),
            (
                "devices:\n  - {uuid: GPU-a, model: A, memoryMiB: 1}\n  - {uuid: GPU-b, memoryMiB: 1}\n",
                "devices[1]: ",
                "missing field `model`",
            ),
            ("gpus: []\n", "", "unknown field `gpus`"),
        ];
        for (text, path, what) in cases {
            let err = parse(text).expect_err(text);
            assert!(
                err.starts_with(path) && err.contains(what),
                "{text:?} -> {err}"
            );
            assert!(!err.contains("untagged"), "{err}");
        }
    }
}
