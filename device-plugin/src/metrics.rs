//! Prometheus metrics, prefix `hami_device_plugin`. Per-device gauges carry one
//! label, `uuid`: the series identity of a GPU, bounded by the GPUs in the node.
//! There are no histograms, so no bucket choices.

use std::collections::BTreeMap;
use std::sync::atomic::AtomicU64;

use parking_lot::Mutex;
use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::backend::{DeviceUsage, GpuDevice};
use crate::slicing::SliceConfig;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DeviceLabels {
    pub uuid: String,
}

#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
pub enum RpcResult {
    Ok,
    Error,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    pub result: RpcResult,
}

const MIB: i64 = 1024 * 1024;

/// All of the plugin's metrics.
#[derive(Debug)]
pub struct Metrics {
    memory_total_bytes: Family<DeviceLabels, Gauge>,
    memory_used_bytes: Family<DeviceLabels, Gauge>,
    utilization_ratio: Family<DeviceLabels, Gauge<f64, AtomicU64>>,
    healthy: Family<DeviceLabels, Gauge>,
    share_slots: Family<DeviceLabels, Gauge>,
    allocated_shares: Family<DeviceLabels, Gauge>,
    pub registrations: Counter,
    pub registration_failures: Counter,
    pub allocations: Family<ResultLabels, Counter>,
    pub inventory_writes: Counter,
    pub inventory_write_errors: Counter,
    /// Share slots handed out by Allocate, per GPU. Kubelet has no release
    /// call, so this counts distinct slots given out since the plugin started:
    /// an upper bound of what is in use.
    allocated: Mutex<BTreeMap<String, std::collections::BTreeSet<String>>>,
}

impl Metrics {
    pub fn register(registry: &mut Registry) -> Self {
        let r = registry.sub_registry_with_prefix("hami_device_plugin");
        let m = Self {
            memory_total_bytes: Family::default(),
            memory_used_bytes: Family::default(),
            utilization_ratio: Family::default(),
            healthy: Family::default(),
            share_slots: Family::default(),
            allocated_shares: Family::default(),
            registrations: Counter::default(),
            registration_failures: Counter::default(),
            allocations: Family::default(),
            inventory_writes: Counter::default(),
            inventory_write_errors: Counter::default(),
            allocated: Mutex::new(BTreeMap::new()),
        };
        r.register(
            "device_memory_total_bytes",
            "GPU memory installed",
            m.memory_total_bytes.clone(),
        );
        r.register(
            "device_memory_used_bytes",
            "GPU memory in use",
            m.memory_used_bytes.clone(),
        );
        r.register(
            "device_utilization_ratio",
            "Share of the last sample period a kernel ran on the GPU (0-1)",
            m.utilization_ratio.clone(),
        );
        r.register(
            "device_healthy",
            "1 when the GPU is healthy, 0 when not",
            m.healthy.clone(),
        );
        r.register(
            "device_share_slots",
            "Share slots offered to kubelet per GPU",
            m.share_slots.clone(),
        );
        r.register(
            "device_allocated_shares",
            "Distinct share slots of the GPU handed out by Allocate since start (kubelet sends no release)",
            m.allocated_shares.clone(),
        );
        r.register(
            "kubelet_registrations",
            "Successful registrations with kubelet",
            m.registrations.clone(),
        );
        r.register(
            "kubelet_registration_failures",
            "Registrations kubelet refused or did not answer in time (each retried on a freshly served socket)",
            m.registration_failures.clone(),
        );
        r.register(
            "allocate_requests",
            "Allocate calls by result",
            m.allocations.clone(),
        );
        r.register(
            "inventory_writes",
            "Node inventory annotation writes",
            m.inventory_writes.clone(),
        );
        r.register(
            "inventory_write_errors",
            "Failed node inventory annotation writes",
            m.inventory_write_errors.clone(),
        );
        m
    }

    /// Records device IDs given to a container, grouped by GPU UUID.
    pub fn record_allocation<'a>(&self, slots: impl IntoIterator<Item = (&'a str, &'a str)>) {
        let mut allocated = self.allocated.lock();
        for (uuid, id) in slots {
            allocated
                .entry(uuid.to_string())
                .or_default()
                .insert(id.to_string());
        }
    }

    /// Sets the per-device gauges from the current devices and a usage sample.
    /// Devices that are gone lose their series.
    pub fn refresh(&self, gpus: &[GpuDevice], usage: &[DeviceUsage], cfg: &SliceConfig) {
        for family in [
            &self.memory_total_bytes,
            &self.memory_used_bytes,
            &self.healthy,
            &self.share_slots,
            &self.allocated_shares,
        ] {
            family.clear();
        }
        self.utilization_ratio.clear();
        let allocated = self.allocated.lock();
        for gpu in gpus {
            let labels = DeviceLabels {
                uuid: gpu.uuid.clone(),
            };
            let bytes = i64::try_from(gpu.memory_mib).unwrap_or(i64::MAX / MIB) * MIB;
            self.memory_total_bytes.get_or_create(&labels).set(bytes);
            self.healthy
                .get_or_create(&labels)
                .set(i64::from(gpu.healthy));
            self.share_slots
                .get_or_create(&labels)
                .set(i64::from(cfg.slots_per_gpu()));
            let shares = allocated.get(&gpu.uuid).map_or(0, |s| s.len());
            self.allocated_shares
                .get_or_create(&labels)
                .set(i64::try_from(shares).unwrap_or(i64::MAX));
            if let Some(u) = usage.iter().find(|u| u.uuid == gpu.uuid) {
                let used = i64::try_from(u.memory_used_mib).unwrap_or(i64::MAX / MIB) * MIB;
                self.memory_used_bytes.get_or_create(&labels).set(used);
                self.utilization_ratio
                    .get_or_create(&labels)
                    .set(f64::from(u.utilization_percent) / 100.0);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn refresh_exports_per_device_gauges_and_drops_lost_devices() {
        let mut registry = Registry::default();
        let m = Metrics::register(&mut registry);
        let gpu = |uuid: &str| GpuDevice {
            uuid: uuid.into(),
            model: "T4".into(),
            memory_mib: 2,
            numa: None,
            healthy: true,
            pci_bus_id: None,
            compute_capability: None,
        };
        let usage = [DeviceUsage {
            uuid: "GPU-a".into(),
            memory_used_mib: 1,
            utilization_percent: 50,
        }];
        m.record_allocation([
            ("GPU-a", "GPU-a::0"),
            ("GPU-a", "GPU-a::1"),
            ("GPU-a", "GPU-a::0"),
        ]);
        m.refresh(
            &[gpu("GPU-a"), gpu("GPU-b")],
            &usage,
            &SliceConfig::default(),
        );
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        assert!(
            text.contains("hami_device_plugin_device_memory_total_bytes{uuid=\"GPU-a\"} 2097152"),
            "{text}"
        );
        assert!(
            text.contains("hami_device_plugin_device_memory_used_bytes{uuid=\"GPU-a\"} 1048576"),
            "{text}"
        );
        assert!(
            text.contains("hami_device_plugin_device_utilization_ratio{uuid=\"GPU-a\"} 0.5"),
            "{text}"
        );
        assert!(
            text.contains("hami_device_plugin_device_allocated_shares{uuid=\"GPU-a\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("hami_device_plugin_device_share_slots{uuid=\"GPU-b\"} 10"),
            "{text}"
        );
        m.refresh(&[gpu("GPU-a")], &usage, &SliceConfig::default());
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        assert!(!text.contains("GPU-b"), "{text}");
    }
}
