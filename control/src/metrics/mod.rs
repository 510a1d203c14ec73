//! Fleet metrics of `hami up`: the `hami_cluster_*` gauges, per member
//! cluster (label `cluster`) and per GPU model (label `model`), read from
//! each Cluster's status.
//!
//! A store watch ([`feed`](crate::controllers::feed), the controllers' own)
//! keeps a synchronous [`ClusterIndex`]; the [`ClusterCollector`] encodes it
//! on every scrape. Units are in the names: `_bytes`, `_cores`, `_percent`
//! (GPU cores, 100 per GPU). All are gauges; there are no histograms here.

pub mod collector;
pub mod index;
pub mod shapes;

use std::sync::Arc;

use hami_api::cluster::ClusterStatus;
use hami_api::common::{CLUSTER_GROUP, CLUSTER_VERSION};
use hami_apiserver::ResourceKind;
use hami_apiserver::keys::{kind_prefix, parse_key};
use hami_store::KeyValue;
use parking_lot::RwLock;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::registry::Registry;
use serde::Deserialize;
use tokio::sync::watch;

use crate::controllers::feed::{self, Change};
use crate::controllers::{ObjectError, Objects};
pub use collector::ClusterCollector;
pub use index::{ClusterIndex, ClusterSample};

/// The `hami_cluster_*` metrics: the index the collector reads and the
/// counter of Clusters that could not be read.
#[derive(Clone)]
pub struct ClusterMetrics {
    index: Arc<RwLock<ClusterIndex>>,
    skipped: Counter,
}

impl ClusterMetrics {
    /// Registers the collector and `hami_cluster_objects_skipped_total`.
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self {
            index: Arc::default(),
            skipped: Counter::default(),
        };
        let sub = registry.sub_registry_with_prefix("hami_cluster");
        sub.register(
            "objects_skipped",
            "Stored Clusters the metrics could not read (skipped)",
            m.skipped.clone(),
        );
        sub.register_collector(Box::new(ClusterCollector::new(m.index.clone())));
        m
    }

    /// The index the gauges are encoded from.
    pub fn index(&self) -> &Arc<RwLock<ClusterIndex>> {
        &self.index
    }

    /// Feeds the index from the store's Clusters until `stop` turns true.
    pub fn spawn(
        &self,
        objects: &Objects,
        stop: &watch::Receiver<bool>,
    ) -> Result<(), ObjectError> {
        let kind = objects.kind(&format!("{CLUSTER_GROUP}/{CLUSTER_VERSION}"), "Cluster")?;
        let feeder = Arc::new(Feeder {
            kind: kind.clone(),
            metrics: self.clone(),
        });
        feed::spawn(
            objects.store(),
            [kind_prefix(&kind)],
            &feeder,
            Feeder::on_change,
            // A metric view, not a controller: nothing waits for its sync.
            &crate::controllers::tracker::Tracker::standalone("cluster_metrics"),
            stop,
        );
        Ok(())
    }
}

/// The feed's handler: the index's single writer.
struct Feeder {
    kind: Arc<ResourceKind>,
    metrics: ClusterMetrics,
}

/// The only part of a stored Cluster the metrics read.
#[derive(Deserialize)]
struct Stored {
    #[serde(default)]
    status: Option<ClusterStatus>,
}

impl Feeder {
    fn sample(&self, kv: &KeyValue) -> Option<(String, ClusterSample)> {
        let name = parse_key(&self.kind, &kv.key)?.1.to_string();
        match serde_json::from_slice::<Stored>(&kv.value) {
            Ok(s) => Some((name, ClusterSample::from_status(s.status.as_ref()))),
            Err(e) => {
                tracing::warn!(cluster = name, error = %e, "cluster metrics: skipping an unreadable Cluster");
                self.metrics.skipped.inc();
                None
            }
        }
    }

    fn on_change(&self, change: Change) {
        match change {
            Change::Reset(items) => {
                let samples: Vec<_> = items.iter().filter_map(|kv| self.sample(kv)).collect();
                self.metrics.index.write().reset(samples);
            }
            Change::Apply(kv) => {
                if let Some((name, sample)) = self.sample(&kv) {
                    self.metrics.index.write().apply(name, sample);
                }
            }
            Change::Delete(kv) => {
                if let Some((_, name)) = parse_key(&self.kind, &kv.key) {
                    self.metrics.index.write().delete(name);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::index::{GpuSample, ResourceStates, Resources};
    use super::*;

    fn encode(registry: &Registry) -> String {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, registry).unwrap();
        text
    }

    fn samples(text: &str) -> Vec<&str> {
        text.lines().filter(|l| !l.starts_with('#')).collect()
    }

    #[test]
    fn encodes_the_index_with_units_labels_and_values() {
        let mut registry = Registry::default();
        let m = ClusterMetrics::register(&mut registry);
        let gib = 1024.0 * 1024.0 * 1024.0;
        m.index().write().reset([
            (
                "b".to_string(),
                ClusterSample {
                    ready: true,
                    nodes: Some((3, 2)),
                    resources: Some(ResourceStates {
                        allocatable: Resources {
                            cpu_cores: 96.0,
                            memory_bytes: 768.0 * gib,
                            pods: 110.0,
                        },
                        allocated: Resources {
                            cpu_cores: 8.5,
                            memory_bytes: 0.0,
                            pods: 1.0,
                        },
                        allocating: Resources::default(),
                    }),
                    gpus: vec![GpuSample {
                        model: "T4".into(),
                        count: 2,
                        healthy: 1,
                        memory_bytes: 2.0 * 15360.0 * 1024.0 * 1024.0,
                        memory_free_bytes: 15360.0 * 1024.0 * 1024.0,
                        cores_percent: 200,
                        cores_free_percent: 100,
                        share_slots_free: 3,
                    }],
                },
            ),
            ("a".to_string(), ClusterSample::default()),
        ]);
        let text = encode(&registry);
        let lines = samples(&text);
        let expect = [
            "hami_cluster_ready{cluster=\"a\"} 0.0",
            "hami_cluster_ready{cluster=\"b\"} 1.0",
            "hami_cluster_nodes{cluster=\"b\"} 3.0",
            "hami_cluster_nodes_ready{cluster=\"b\"} 2.0",
            "hami_cluster_allocatable_cpu_cores{cluster=\"b\"} 96.0",
            "hami_cluster_allocated_cpu_cores{cluster=\"b\"} 8.5",
            "hami_cluster_allocating_cpu_cores{cluster=\"b\"} 0.0",
            "hami_cluster_allocatable_memory_bytes{cluster=\"b\"} 824633720832.0",
            "hami_cluster_allocatable_pods{cluster=\"b\"} 110.0",
            "hami_cluster_allocated_pods{cluster=\"b\"} 1.0",
            "hami_cluster_gpus{cluster=\"b\",model=\"T4\"} 2.0",
            "hami_cluster_gpus_healthy{cluster=\"b\",model=\"T4\"} 1.0",
            "hami_cluster_gpu_memory_bytes{cluster=\"b\",model=\"T4\"} 32212254720.0",
            "hami_cluster_gpu_memory_free_bytes{cluster=\"b\",model=\"T4\"} 16106127360.0",
            "hami_cluster_gpu_cores_percent{cluster=\"b\",model=\"T4\"} 200.0",
            "hami_cluster_gpu_cores_free_percent{cluster=\"b\",model=\"T4\"} 100.0",
            "hami_cluster_gpu_share_slots_free{cluster=\"b\",model=\"T4\"} 3.0",
            "hami_cluster_objects_skipped_total 0",
        ];
        for e in expect {
            assert!(lines.contains(&e), "missing {e:?} in\n{text}");
        }
        // Cluster "a" has no status: only its ready gauge.
        let of_a: Vec<_> = lines
            .iter()
            .filter(|l| l.contains("cluster=\"a\""))
            .collect();
        assert_eq!(of_a, [&"hami_cluster_ready{cluster=\"a\"} 0.0"]);
        // Families are gauges with units, described once each.
        assert!(text.contains("# TYPE hami_cluster_gpu_memory_free_bytes gauge"));
        assert!(text.contains("# UNIT hami_cluster_gpu_memory_free_bytes bytes"));
        assert!(text.contains("# TYPE hami_cluster_allocatable_cpu_cores gauge"));
        assert_eq!(text.matches("# TYPE hami_cluster_gpus gauge").count(), 1);

        // A deleted cluster's series are gone at the next scrape.
        m.index().write().delete("b");
        let text = encode(&registry);
        assert!(!text.contains("cluster=\"b\""), "{text}");
        // The families stay described with no samples.
        assert!(text.contains("# TYPE hami_cluster_gpus gauge"));
    }
}
