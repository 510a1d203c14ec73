//! The `hami_cluster_*` gauges, encoded on scrape from the [`ClusterIndex`]
//! (a prometheus-client [`Collector`]): nothing is kept per cluster between
//! scrapes, so a deleted Cluster's series are gone at the next scrape.
//!
//! Labels: `cluster` (Cluster names, bounded by the fleet) and, on the GPU
//! gauges, `model` (GPU models, bounded by the fleet). Every family is
//! described even when no cluster reports it, so the names are always there.

use std::sync::Arc;

use parking_lot::RwLock;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Unit;

use super::index::{ClusterIndex, ClusterSample, GpuSample, Resources};

/// Encodes the index on every scrape (registered under `hami_cluster`).
#[derive(Debug)]
pub struct ClusterCollector {
    index: Arc<RwLock<ClusterIndex>>,
}

impl ClusterCollector {
    pub fn new(index: Arc<RwLock<ClusterIndex>>) -> Self {
        Self { index }
    }
}

/// A per-cluster gauge: name, help, unit, value (None: no sample).
type ClusterGauge = (
    &'static str,
    &'static str,
    Option<Unit>,
    fn(&ClusterSample) -> Option<f64>,
);

/// A per-(cluster, model) gauge.
type GpuGauge = (
    &'static str,
    &'static str,
    Option<Unit>,
    fn(&GpuSample) -> f64,
);

fn cores() -> Option<Unit> {
    Some(Unit::Other("cores".into()))
}

fn resource(
    s: &ClusterSample,
    pick: fn(&super::index::ResourceStates) -> Resources,
) -> Option<Resources> {
    s.resources.as_ref().map(pick)
}

fn cluster_gauges() -> Vec<ClusterGauge> {
    vec![
        (
            "ready",
            "1 while the Cluster's Ready condition is True, else 0",
            None,
            |s| Some(if s.ready { 1.0 } else { 0.0 }),
        ),
        ("nodes", "Nodes in the cluster", None, |s| {
            s.nodes.map(|n| n.0 as f64)
        }),
        (
            "nodes_ready",
            "Nodes whose Ready condition is True",
            None,
            |s| s.nodes.map(|n| n.1 as f64),
        ),
        (
            "allocatable_cpu",
            "CPU allocatable over all nodes",
            cores(),
            |s| resource(s, |r| r.allocatable).map(|r| r.cpu_cores),
        ),
        (
            "allocated_cpu",
            "CPU requested by pods bound to nodes",
            cores(),
            |s| resource(s, |r| r.allocated).map(|r| r.cpu_cores),
        ),
        (
            "allocating_cpu",
            "CPU requested by pods not yet bound to a node",
            cores(),
            |s| resource(s, |r| r.allocating).map(|r| r.cpu_cores),
        ),
        (
            "allocatable_memory",
            "Memory allocatable over all nodes",
            Some(Unit::Bytes),
            |s| resource(s, |r| r.allocatable).map(|r| r.memory_bytes),
        ),
        (
            "allocated_memory",
            "Memory requested by pods bound to nodes",
            Some(Unit::Bytes),
            |s| resource(s, |r| r.allocated).map(|r| r.memory_bytes),
        ),
        (
            "allocating_memory",
            "Memory requested by pods not yet bound to a node",
            Some(Unit::Bytes),
            |s| resource(s, |r| r.allocating).map(|r| r.memory_bytes),
        ),
        (
            "allocatable_pods",
            "Pods allocatable over all nodes",
            None,
            |s| resource(s, |r| r.allocatable).map(|r| r.pods),
        ),
        (
            "allocated_pods",
            "Pods bound to nodes (as counted in requests)",
            None,
            |s| resource(s, |r| r.allocated).map(|r| r.pods),
        ),
        (
            "allocating_pods",
            "Pods not yet bound to a node (as counted in requests)",
            None,
            |s| resource(s, |r| r.allocating).map(|r| r.pods),
        ),
    ]
}

fn gpu_gauges() -> Vec<GpuGauge> {
    vec![
        ("gpus", "GPUs of this model", None, |g| g.count as f64),
        (
            "gpus_healthy",
            "GPUs of this model that report healthy",
            None,
            |g| g.healthy as f64,
        ),
        (
            "gpu_memory",
            "Device memory over the GPUs of this model",
            Some(Unit::Bytes),
            |g| g.memory_bytes,
        ),
        (
            "gpu_memory_free",
            "Device memory not yet allocated on the GPUs of this model",
            Some(Unit::Bytes),
            |g| g.memory_free_bytes,
        ),
        (
            "gpu_cores",
            "GPU cores of this model in percent of one GPU (100 per GPU)",
            Some(Unit::Other("percent".into())),
            |g| g.cores_percent as f64,
        ),
        (
            "gpu_cores_free",
            "GPU cores not yet allocated, in percent of one GPU (100 per GPU)",
            Some(Unit::Other("percent".into())),
            |g| g.cores_free_percent as f64,
        ),
        (
            "gpu_share_slots_free",
            "Share slots still free on the GPUs of this model",
            None,
            |g| g.share_slots_free as f64,
        ),
    ]
}

impl Collector for ClusterCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        // Copy out under the read lock; encode without it.
        let index = self.index.read().clone();
        for (name, help, unit, value) in cluster_gauges() {
            let mut family =
                encoder.encode_descriptor(name, help, unit.as_ref(), MetricType::Gauge)?;
            for (cluster, sample) in index.iter() {
                if let Some(v) = value(sample) {
                    let labels = [("cluster", cluster)];
                    family.encode_family(&labels)?.encode_gauge(&v)?;
                }
            }
        }
        for (name, help, unit, value) in gpu_gauges() {
            let mut family =
                encoder.encode_descriptor(name, help, unit.as_ref(), MetricType::Gauge)?;
            for (cluster, sample) in index.iter() {
                for g in &sample.gpus {
                    let labels = [("cluster", cluster), ("model", g.model.as_str())];
                    family.encode_family(&labels)?.encode_gauge(&value(g))?;
                }
            }
        }
        Ok(())
    }
}
