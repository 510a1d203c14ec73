//! Device memory of the GPU models in each cluster, for converting
//! `nvidia.com/gpumem-percentage` into MiB of `nvidia.com/gpumem`.
//!
//! The lookup is conservative, so that quota is never under-counted:
//! 1. the largest model in the target cluster that the replica may use
//!    (HAMi's `use-gputype` / `nouse-gputype` lists), since the replica may
//!    land on it;
//! 2. when the cluster is unknown, reports no GPUs, or has no model the
//!    replica may use: the largest such model in any known cluster;
//! 3. then the largest model known anywhere;
//! 4. when no model is known at all: `None`, and accounting a percentage
//!    against a memory quota is an error (the binding waits for cluster
//!    status rather than being counted as zero).

use std::collections::BTreeMap;

use hami_api::cluster::GpuSummary;
use hami_api::gpu::gpu_type_allowed;

/// GPU models and their per-device memory (MiB), per cluster.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GpuModels {
    clusters: BTreeMap<String, BTreeMap<String, i64>>,
}

impl GpuModels {
    /// No models known.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records that `cluster` has GPUs of `model` with `memory_mib` each
    /// (the larger value wins when a model is recorded twice).
    pub fn insert(&mut self, cluster: &str, model: &str, memory_mib: i64) {
        if memory_mib <= 0 {
            return;
        }
        let e = self
            .clusters
            .entry(cluster.to_string())
            .or_default()
            .entry(model.to_string())
            .or_insert(0);
        *e = (*e).max(memory_mib);
    }

    /// Records a cluster's `status.gpuSummary` (memory per device is the
    /// model's total over its count); replaces what was known of it.
    pub fn set_cluster(&mut self, cluster: &str, summaries: &[GpuSummary]) {
        self.clusters.remove(cluster);
        for s in summaries {
            if s.count > 0 {
                self.insert(cluster, &s.model, s.memory_total_mib / s.count);
            }
        }
    }

    /// Forgets a cluster.
    pub fn remove_cluster(&mut self, cluster: &str) {
        self.clusters.remove(cluster);
    }

    /// The device memory (MiB) to convert a percentage with, by the rule in
    /// the module docs.
    pub fn memory_mib(
        &self,
        cluster: &str,
        use_types: &[String],
        no_use: &[String],
    ) -> Option<i64> {
        let allowed = |models: &BTreeMap<String, i64>| {
            models
                .iter()
                .filter(|(m, _)| gpu_type_allowed(m, use_types, no_use))
                .map(|(_, v)| *v)
                .max()
        };
        if let Some(v) = self.clusters.get(cluster).and_then(allowed) {
            return Some(v);
        }
        if let Some(v) = self.clusters.values().filter_map(allowed).max() {
            return Some(v);
        }
        self.clusters
            .values()
            .flat_map(|m| m.values())
            .copied()
            .max()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conservative_lookup() {
        let mut m = GpuModels::new();
        m.insert("east", "NVIDIA-A100-40GB", 40960);
        m.insert("east", "NVIDIA-T4", 15360);
        m.insert("west", "NVIDIA-H100-80GB", 81920);
        let none: &[String] = &[];
        let t = |s: &str| vec![s.to_string()];
        type Case = (&'static str, Vec<String>, Vec<String>, Option<i64>);
        let cases: &[Case] = &[
            ("east", vec![], vec![], Some(40960)),
            ("east", t("T4"), vec![], Some(15360)),
            ("east", vec![], t("A100"), Some(15360)),
            // No allowed model in east: largest allowed anywhere.
            ("east", t("H100"), vec![], Some(81920)),
            // Unknown cluster: largest known.
            ("north", vec![], vec![], Some(81920)),
            ("north", t("T4"), vec![], Some(15360)),
            // Nothing allowed anywhere: largest known at all.
            ("east", t("V100"), vec![], Some(81920)),
        ];
        for (cluster, use_t, no_use, want) in cases {
            assert_eq!(
                m.memory_mib(cluster, use_t, no_use),
                *want,
                "{cluster} {use_t:?} {no_use:?}"
            );
        }
        assert_eq!(GpuModels::new().memory_mib("east", none, none), None);
    }

    #[test]
    fn from_gpu_summary() {
        let mut m = GpuModels::new();
        m.insert("east", "old", 1);
        m.set_cluster(
            "east",
            &[
                GpuSummary {
                    model: "NVIDIA-A100".into(),
                    count: 8,
                    memory_total_mib: 8 * 81920,
                    ..Default::default()
                },
                GpuSummary {
                    model: "empty".into(),
                    count: 0,
                    ..Default::default()
                },
            ],
        );
        assert_eq!(m.memory_mib("east", &[], &[]), Some(81920));
        m.remove_cluster("east");
        assert_eq!(m.memory_mib("east", &[], &[]), None);
    }
}
