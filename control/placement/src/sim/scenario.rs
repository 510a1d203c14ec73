//! The scenario file: a described fleet, workloads with placements, and
//! events. Field names are camelCase, as in Kubernetes objects; unknown
//! fields are refused so that a typo is not silently ignored.

use std::collections::BTreeMap;

use hami_api::common::ResourceList;
use hami_api::propagation::Placement;
use k8s_openapi::api::core::v1::Taint;
use serde::{Deserialize, Serialize};

/// A what-if scenario.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Scenario {
    /// The member clusters.
    pub clusters: Vec<SimCluster>,
    /// The workloads, placed in this order.
    #[serde(default)]
    pub workloads: Vec<SimWorkload>,
    /// Changes applied one after another; every workload is placed again after each.
    #[serde(default)]
    pub events: Vec<Event>,
}

/// One member cluster.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SimCluster {
    /// Unique name.
    pub name: String,
    /// Labels.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Cloud provider.
    #[serde(default)]
    pub provider: Option<String>,
    /// Region.
    #[serde(default)]
    pub region: Option<String>,
    /// A single zone.
    #[serde(default)]
    pub zone: Option<String>,
    /// Zones the cluster spans.
    #[serde(default)]
    pub zones: Vec<String>,
    /// Taints.
    #[serde(default)]
    pub taints: Vec<Taint>,
    /// Whether the cluster is Ready (default true).
    #[serde(default = "yes")]
    pub ready: bool,
    /// Replicas of each named shape the cluster can hold (what its
    /// estimator would answer); a shape not listed falls back to `free`.
    #[serde(default)]
    pub capacity: BTreeMap<String, i32>,
    /// Free resources, pooled over nodes (the cluster's resource summary).
    #[serde(default)]
    pub free: Option<ResourceList>,
    /// The cluster's estimator does not answer.
    #[serde(default)]
    pub estimator_down: bool,
}

fn yes() -> bool {
    true
}

/// One workload.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SimWorkload {
    /// Unique name, `namespace/name` (seeds the tie-break).
    pub name: String,
    /// Desired replicas.
    pub replicas: i32,
    /// Named shape looked up in each cluster's `capacity`.
    #[serde(default)]
    pub shape: Option<String>,
    /// What one replica requests (checked against `free`).
    #[serde(default)]
    pub request: ResourceList,
    /// Where it may go and how replicas are divided.
    #[serde(default)]
    pub placement: Placement,
}

/// A change to the fleet or a workload.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub enum Event {
    /// A workload's replica count changes.
    Scale {
        /// The workload.
        workload: String,
        /// New replica count.
        replicas: i32,
    },
    /// A cluster gets a taint.
    Taint {
        /// The cluster.
        cluster: String,
        /// Taint key.
        key: String,
        /// Taint value.
        #[serde(default)]
        value: Option<String>,
        /// NoSchedule, PreferNoSchedule or NoExecute.
        effect: String,
    },
    /// A cluster stops being Ready.
    #[serde(rename = "clusterDown")]
    ClusterDown {
        /// The cluster.
        cluster: String,
    },
}

impl Event {
    /// The taint a Taint event adds.
    pub fn taint(&self) -> Option<Taint> {
        match self {
            Event::Taint {
                key, value, effect, ..
            } => Some(Taint {
                key: key.clone(),
                value: value.clone(),
                effect: effect.clone(),
                time_added: None,
            }),
            _ => None,
        }
    }

    /// One line saying what happened.
    pub fn describe(&self) -> String {
        match self {
            Event::Scale { workload, replicas } => format!("scale {workload} to {replicas}"),
            Event::Taint { cluster, .. } => {
                format!(
                    "taint {cluster} {}",
                    crate::filter::taint::describe(&self.taint().unwrap_or_default())
                )
            }
            Event::ClusterDown { cluster } => format!("cluster {cluster} down"),
        }
    }
}
