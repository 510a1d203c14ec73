//! The real backend: NVML through `nvml-wrapper`, which loads
//! `libnvidia-ml.so.1` at run time, so the binary builds and starts on machines
//! without a driver and answers one clear error there.
//!
//! Health follows NVIDIA's device plugin: a thread waits on NVML's critical XID
//! events and marks the device unhealthy, except for XIDs that an application
//! causes and that leave the device usable.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use nvml_wrapper::Nvml;
use nvml_wrapper::bitmasks::event::EventTypes;
use nvml_wrapper::enums::event::XidError;
use nvml_wrapper::error::NvmlError;
use parking_lot::Mutex;
use tokio::sync::watch;

use super::{Backend, BackendError, DeviceUsage, GpuDevice, publish};

/// XIDs caused by applications (illegal address, MMU fault from user code,
/// reset channel verification, preemptive cleanup, video decoder, and a
/// context-switch fault); they do not make the device unusable.
const APPLICATION_XIDS: [u64; 6] = [13, 31, 43, 45, 68, 109];

/// How long one wait for events blocks before the thread re-lists devices and
/// checks whether anyone still listens.
const EVENT_WAIT_MS: u32 = 5_000;

const MIB: u64 = 1024 * 1024;

/// NVML-backed discovery.
pub struct NvmlBackend {
    nvml: Arc<Nvml>,
    unhealthy: Arc<Mutex<BTreeSet<String>>>,
}

impl std::fmt::Debug for NvmlBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NvmlBackend").finish_non_exhaustive()
    }
}

impl NvmlBackend {
    /// Loads libnvidia-ml and initialises NVML.
    pub fn init() -> Result<Self, BackendError> {
        let nvml = Nvml::init().map_err(|e| BackendError::NvmlUnavailable {
            detail: e.to_string(),
        })?;
        Ok(Self {
            nvml: Arc::new(nvml),
            unhealthy: Arc::new(Mutex::new(BTreeSet::new())),
        })
    }
}

fn nvml_err(call: &'static str) -> impl Fn(NvmlError) -> BackendError {
    move |e| BackendError::Nvml {
        call,
        detail: e.to_string(),
    }
}

fn list_devices(nvml: &Nvml, unhealthy: &BTreeSet<String>) -> Result<Vec<GpuDevice>, BackendError> {
    let count = nvml
        .device_count()
        .map_err(nvml_err("nvmlDeviceGetCount"))?;
    let mut out = Vec::with_capacity(count as usize);
    for index in 0..count {
        let device = nvml
            .device_by_index(index)
            .map_err(nvml_err("nvmlDeviceGetHandleByIndex"))?;
        let uuid = device.uuid().map_err(nvml_err("nvmlDeviceGetUUID"))?;
        let model = device.name().map_err(nvml_err("nvmlDeviceGetName"))?;
        let memory = device
            .memory_info()
            .map_err(nvml_err("nvmlDeviceGetMemoryInfo"))?;
        // NUMA, PCI and compute capability are informative; a driver that
        // cannot answer them does not make the device unusable.
        let numa = device.numa_node_id().ok().map(i64::from);
        let pci_bus_id = device.pci_info().ok().map(|p| p.bus_id);
        let compute_capability = device
            .cuda_compute_capability()
            .ok()
            .map(|c| format!("{}.{}", c.major, c.minor));
        out.push(GpuDevice {
            healthy: !unhealthy.contains(&uuid),
            uuid,
            model,
            memory_mib: memory.total / MIB,
            numa,
            pci_bus_id,
            compute_capability,
        });
    }
    Ok(out)
}

impl Backend for NvmlBackend {
    fn name(&self) -> &'static str {
        "nvml"
    }

    fn list(&self) -> Result<Vec<GpuDevice>, BackendError> {
        let unhealthy = self.unhealthy.lock().clone();
        list_devices(&self.nvml, &unhealthy)
    }

    fn usage(&self) -> Vec<DeviceUsage> {
        let Ok(count) = self.nvml.device_count() else {
            return Vec::new();
        };
        (0..count)
            .filter_map(|index| {
                let device = self.nvml.device_by_index(index).ok()?;
                Some(DeviceUsage {
                    uuid: device.uuid().ok()?,
                    memory_used_mib: device.memory_info().ok()?.used / MIB,
                    utilization_percent: device.utilization_rates().map(|u| u.gpu).unwrap_or(0),
                })
            })
            .collect()
    }

    fn watch(&self, tx: watch::Sender<Vec<GpuDevice>>) -> Result<(), BackendError> {
        publish(&tx, self.list()?);
        let nvml = Arc::clone(&self.nvml);
        let unhealthy = Arc::clone(&self.unhealthy);
        std::thread::Builder::new()
            .name("nvml-health".to_string())
            .spawn(move || health_loop(&nvml, &unhealthy, &tx))
            .map_err(|e| BackendError::Nvml {
                call: "spawn health thread",
                detail: e.to_string(),
            })?;
        Ok(())
    }
}

/// Waits for critical XID events until no receiver is left. NVML handles are
/// blocking, so this runs on its own OS thread rather than the async runtime.
fn health_loop(
    nvml: &Nvml,
    unhealthy: &Mutex<BTreeSet<String>>,
    tx: &watch::Sender<Vec<GpuDevice>>,
) {
    let events = match register_xid_events(nvml) {
        Ok(set) => Some(set),
        Err(detail) => {
            tracing::warn!(%detail, "NVML health events unavailable; devices stay healthy unless listed otherwise");
            None
        }
    };
    while !tx.is_closed() {
        match &events {
            Some(set) => match set.wait(EVENT_WAIT_MS) {
                Ok(event) => {
                    let xid = match event.event_data {
                        Some(XidError::Value(v)) => Some(v),
                        _ => None,
                    };
                    if xid.is_some_and(|x| APPLICATION_XIDS.contains(&x)) {
                        tracing::debug!(?xid, "ignoring application XID");
                    } else if let Ok(uuid) = event.device.uuid() {
                        tracing::warn!(%uuid, ?xid, "critical XID: marking device unhealthy");
                        unhealthy.lock().insert(uuid);
                    }
                }
                Err(NvmlError::Timeout) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "waiting for NVML events failed");
                    std::thread::sleep(Duration::from_secs(1));
                }
            },
            None => std::thread::sleep(Duration::from_millis(u64::from(EVENT_WAIT_MS))),
        }
        let marked = unhealthy.lock().clone();
        match list_devices(nvml, &marked) {
            Ok(devices) => {
                publish(tx, devices);
            }
            Err(e) => tracing::warn!(error = %e, "listing NVML devices failed"),
        }
    }
}

fn register_xid_events(nvml: &Nvml) -> Result<nvml_wrapper::EventSet<'_>, String> {
    let mut set = nvml.create_event_set().map_err(|e| e.to_string())?;
    let count = nvml.device_count().map_err(|e| e.to_string())?;
    for index in 0..count {
        let device = nvml.device_by_index(index).map_err(|e| e.to_string())?;
        let supported = device
            .supported_event_types()
            .map(|t| t.contains(EventTypes::CRITICAL_XID_ERROR))
            .unwrap_or(false);
        if !supported {
            tracing::warn!(index, "device does not report XID events");
            continue;
        }
        set = device
            .register_events(EventTypes::CRITICAL_XID_ERROR, set)
            .map_err(|e| e.error.to_string())?;
    }
    Ok(set)
}
