//! The member clusters as the metrics see them: one [`ClusterSample`] per
//! Cluster, taken from its status (only the fields the metrics read), in a
//! synchronous index with one writer (the feed) and many readers (scrapes).

use std::collections::BTreeMap;

use hami_api::cluster::{ClusterStatus, ResourceSummary};
use hami_api::common::{CONDITION_READY, ResourceList};
use hami_api::parse_quantity;

/// One MiB in bytes (gpuSummary reports memory in MiB).
const MIB: f64 = 1024.0 * 1024.0;

/// Requests of one state (allocatable, allocated or allocating) in the
/// metrics' units.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Resources {
    /// CPU in cores.
    pub cpu_cores: f64,
    /// Memory in bytes.
    pub memory_bytes: f64,
    /// Pods.
    pub pods: f64,
}

impl Resources {
    /// From a resource list; a missing or unparsable entry counts 0 (the
    /// apiserver validates quantities, so this only meets hand-made data).
    pub fn from_list(list: &ResourceList) -> Self {
        let value = |name: &str| {
            list.get(name)
                .and_then(|q| parse_quantity(&q.0).ok())
                .map_or(0.0, |milli| milli as f64 / 1000.0)
        };
        Self {
            cpu_cores: value("cpu"),
            memory_bytes: value("memory"),
            pods: value("pods"),
        }
    }
}

/// The three resource states of a cluster's resource summary.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct ResourceStates {
    pub allocatable: Resources,
    pub allocated: Resources,
    pub allocating: Resources,
}

impl ResourceStates {
    fn from_summary(s: &ResourceSummary) -> Self {
        Self {
            allocatable: Resources::from_list(&s.allocatable),
            allocated: Resources::from_list(&s.allocated),
            allocating: Resources::from_list(&s.allocating),
        }
    }
}

/// GPUs of one model in one cluster.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct GpuSample {
    pub model: String,
    pub count: i64,
    pub healthy: i64,
    pub memory_bytes: f64,
    pub memory_free_bytes: f64,
    /// Percent units: 100 per GPU.
    pub cores_percent: i64,
    pub cores_free_percent: i64,
    pub share_slots_free: i64,
}

/// What the metrics report of one Cluster.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ClusterSample {
    /// The Ready condition is True.
    pub ready: bool,
    /// (total, ready) nodes, when the status has a node summary.
    pub nodes: Option<(i64, i64)>,
    /// When the status has a resource summary.
    pub resources: Option<ResourceStates>,
    /// Per GPU model, sorted by model.
    pub gpus: Vec<GpuSample>,
}

impl ClusterSample {
    /// From a Cluster's status (`None`: not reported yet).
    pub fn from_status(status: Option<&ClusterStatus>) -> Self {
        let Some(s) = status else {
            return Self::default();
        };
        let ready = s
            .conditions
            .iter()
            .any(|c| c.type_ == CONDITION_READY && c.status == "True");
        let mut gpus: Vec<GpuSample> = s
            .gpu_summary
            .iter()
            .map(|g| GpuSample {
                model: g.model.clone(),
                count: g.count,
                healthy: g.healthy,
                memory_bytes: g.memory_total_mib as f64 * MIB,
                memory_free_bytes: g.memory_free_mib as f64 * MIB,
                cores_percent: g.cores_total,
                cores_free_percent: g.cores_free,
                share_slots_free: g.share_slots_free,
            })
            .collect();
        gpus.sort_by(|a, b| a.model.cmp(&b.model));
        Self {
            ready,
            nodes: s
                .node_summary
                .map(|n| (i64::from(n.total_num), i64::from(n.ready_num))),
            resources: s
                .resource_summary
                .as_ref()
                .map(ResourceStates::from_summary),
            gpus,
        }
    }
}

/// Every Cluster by name (sorted, so the exposition is stable).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ClusterIndex {
    clusters: BTreeMap<String, ClusterSample>,
}

impl ClusterIndex {
    /// Replaces everything (a fresh list).
    pub fn reset(&mut self, clusters: impl IntoIterator<Item = (String, ClusterSample)>) {
        self.clusters = clusters.into_iter().collect();
    }

    /// Adds or replaces one cluster.
    pub fn apply(&mut self, name: String, sample: ClusterSample) {
        self.clusters.insert(name, sample);
    }

    /// Forgets a deleted cluster.
    pub fn delete(&mut self, name: &str) {
        self.clusters.remove(name);
    }

    /// The clusters in name order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &ClusterSample)> {
        self.clusters.iter().map(|(n, s)| (n.as_str(), s))
    }

    pub fn len(&self) -> usize {
        self.clusters.len()
    }

    pub fn is_empty(&self) -> bool {
        self.clusters.is_empty()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn status_fields_become_metric_units() {
        let status: ClusterStatus = serde_json::from_value(serde_json::json!({
            "conditions": [{"type": "Ready", "status": "True", "reason": "Ok", "message": "",
                            "lastTransitionTime": "2025-01-01T00:00:00Z"}],
            "nodeSummary": {"totalNum": 3, "readyNum": 2},
            "resourceSummary": {
                "allocatable": {"cpu": "96", "memory": "768Gi", "pods": "110"},
                "allocated": {"cpu": "8500m"}
            },
            "gpuSummary": [
                {"model": "T4", "count": 2, "healthy": 1, "memoryTotalMiB": 30720,
                 "memoryFreeMiB": 15360, "coresTotal": 200, "coresFree": 100, "shareSlotsFree": 3},
                {"model": "A100", "count": 1, "healthy": 1, "memoryTotalMiB": 81920}
            ]
        }))
        .unwrap();
        let s = ClusterSample::from_status(Some(&status));
        assert!(s.ready);
        assert_eq!(s.nodes, Some((3, 2)));
        let r = s.resources.unwrap();
        assert_eq!(r.allocatable.cpu_cores, 96.0);
        assert_eq!(r.allocatable.memory_bytes, 768.0 * 1024.0 * 1024.0 * 1024.0);
        assert_eq!(r.allocatable.pods, 110.0);
        assert_eq!(r.allocated.cpu_cores, 8.5);
        assert_eq!(r.allocated.memory_bytes, 0.0);
        assert_eq!(r.allocating, Resources::default());
        // Sorted by model.
        assert_eq!(s.gpus[0].model, "A100");
        assert_eq!(s.gpus[1].memory_free_bytes, 15360.0 * MIB);
        assert_eq!(s.gpus[1].cores_free_percent, 100);
        assert_eq!(s.gpus[1].share_slots_free, 3);
    }

    #[test]
    fn no_status_is_not_ready_and_reports_nothing_else() {
        let s = ClusterSample::from_status(None);
        assert!(!s.ready);
        assert_eq!(s.nodes, None);
        assert_eq!(s.resources, None);
        assert!(s.gpus.is_empty());
    }
}
