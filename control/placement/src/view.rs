//! The inputs of a decision: what the core reads of a cluster ([`ClusterView`])
//! and of a binding ([`BindingView`]), with quantities parsed once, so that a
//! decision does no parsing and no map-order iteration.

use std::collections::{BTreeMap, BTreeSet};

use hami_api::binding::{ResourceBinding, ResourceBindingSpec, TargetCluster};
use hami_api::cluster::{Cluster, ResourceSummary};
use hami_api::common::{CONDITION_READY, ResourceList};
use hami_api::propagation::Placement;
use hami_api::quantity::parse_quantity;
use k8s_openapi::api::core::v1::Taint;

/// Resource name to amount in milli-units (`cpu: 1` is 1000).
pub type Amounts = BTreeMap<String, i128>;

/// What one replica requests, in milli-units per resource name. Ordered, so
/// it can key a map (see [`crate::reservations::Reservations`]).
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Shape(pub Amounts);

impl Shape {
    /// Parses a Kubernetes resource list; lines that do not parse, and zero or
    /// negative amounts, are left out (validation rejects them earlier).
    pub fn from_resource_list(list: &ResourceList) -> Self {
        Shape(
            parse_amounts(list)
                .into_iter()
                .filter(|(_, v)| *v > 0)
                .collect(),
        )
    }

    /// Builds a shape from `(name, milli-units)` pairs.
    pub fn from_milli<'a>(pairs: impl IntoIterator<Item = (&'a str, i128)>) -> Self {
        Shape(
            pairs
                .into_iter()
                .filter(|(_, v)| *v > 0)
                .map(|(k, v)| (k.to_string(), v))
                .collect(),
        )
    }

    /// True when the replica requests nothing.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

fn parse_amounts(list: &ResourceList) -> Amounts {
    list.iter()
        .filter_map(|(k, q)| parse_quantity(&q.0).ok().map(|v| (k.clone(), v)))
        .collect()
}

/// What the core reads of one member cluster.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ClusterView {
    /// Cluster name (unique).
    pub name: String,
    /// Cluster labels.
    pub labels: BTreeMap<String, String>,
    /// Cloud provider.
    pub provider: Option<String>,
    /// Region.
    pub region: Option<String>,
    /// Zones the cluster spans (the legacy single `zone` folded in), sorted.
    pub zones: Vec<String>,
    /// Taints (only NoSchedule and NoExecute matter to placement).
    pub taints: Vec<Taint>,
    /// Whether the Ready condition is True.
    pub ready: bool,
    /// `(groupVersion, kind)` pairs the cluster serves; `None` when not reported yet.
    pub api_enablements: Option<BTreeSet<(String, String)>>,
    /// Free resources (allocatable - allocated - allocating); `None` without a summary.
    pub free: Option<Amounts>,
}

impl ClusterView {
    /// A ready cluster with no labels, taints or resource summary.
    pub fn new(name: impl Into<String>) -> Self {
        ClusterView {
            name: name.into(),
            ready: true,
            ..Default::default()
        }
    }

    /// Reads a Cluster object. A missing name gives an empty name.
    pub fn from_cluster(cluster: &Cluster) -> Self {
        let spec = &cluster.spec;
        let mut zones: Vec<String> = spec.zones.clone();
        if let Some(z) = &spec.zone {
            zones.push(z.clone());
        }
        zones.sort();
        zones.dedup();
        let status = cluster.status.as_ref();
        let ready = status.is_some_and(|s| {
            s.conditions
                .iter()
                .any(|c| c.type_ == CONDITION_READY && c.status == "True")
        });
        let api_enablements = status.filter(|s| !s.api_enablements.is_empty()).map(|s| {
            s.api_enablements
                .iter()
                .flat_map(|e| {
                    e.resources
                        .iter()
                        .map(|r| (e.group_version.clone(), r.kind.clone()))
                })
                .collect()
        });
        ClusterView {
            name: cluster.metadata.name.clone().unwrap_or_default(),
            labels: cluster.metadata.labels.clone().unwrap_or_default(),
            provider: spec.provider.clone(),
            region: spec.region.clone(),
            zones,
            taints: spec.taints.clone(),
            ready,
            api_enablements,
            free: status
                .and_then(|s| s.resource_summary.as_ref())
                .map(free_of),
        }
    }

    /// Sets free resources from `(name, milli-units)` pairs.
    pub fn with_free<'a>(mut self, pairs: impl IntoIterator<Item = (&'a str, i128)>) -> Self {
        self.free = Some(pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect());
        self
    }

    /// Adds a label.
    pub fn with_label(mut self, key: &str, value: &str) -> Self {
        self.labels.insert(key.to_string(), value.to_string());
        self
    }

    /// Sets provider, region and zone.
    pub fn with_location(mut self, provider: &str, region: &str, zone: &str) -> Self {
        self.provider = Some(provider.to_string());
        self.region = Some(region.to_string());
        self.zones = vec![zone.to_string()];
        self
    }

    /// Adds a taint.
    pub fn with_taint(mut self, key: &str, value: &str, effect: &str) -> Self {
        self.taints.push(Taint {
            key: key.to_string(),
            value: (!value.is_empty()).then(|| value.to_string()),
            effect: effect.to_string(),
            time_added: None,
        });
        self
    }
}

/// allocatable - allocated - allocating, per resource listed as allocatable.
fn free_of(summary: &ResourceSummary) -> Amounts {
    let allocated = parse_amounts(&summary.allocated);
    let allocating = parse_amounts(&summary.allocating);
    parse_amounts(&summary.allocatable)
        .into_iter()
        .map(|(k, v)| {
            let used =
                allocated.get(&k).copied().unwrap_or(0) + allocating.get(&k).copied().unwrap_or(0);
            let free = v - used;
            (k, free.max(0))
        })
        .collect()
}

/// What the core reads of one binding.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct BindingView {
    /// `namespace/name`: seeds the tie-break, so remainders rotate over bindings.
    pub key: String,
    /// apiVersion of the template (checked against API enablements).
    pub api_version: String,
    /// Kind of the template.
    pub kind: String,
    /// Desired replicas (0 for kinds without replicas).
    pub replicas: i32,
    /// What one replica requests.
    pub request: Shape,
    /// Where the binding may go and how replicas are divided.
    pub placement: Placement,
    /// The current assignment (spec.clusters).
    pub current: Vec<TargetCluster>,
    /// Clusters the binding is being evicted from.
    pub evicting: Vec<String>,
    /// Recompute from scratch instead of scaling the current assignment.
    pub reschedule: bool,
}

impl BindingView {
    /// Reads a ResourceBinding. `reschedule` asks for a fresh placement (the
    /// caller compares `rescheduleTriggeredAt` with its last decision).
    pub fn from_binding(binding: &ResourceBinding, reschedule: bool) -> Self {
        let ns = binding.metadata.namespace.as_deref().unwrap_or_default();
        let name = binding.metadata.name.as_deref().unwrap_or_default();
        Self::from_spec(&format!("{ns}/{name}"), &binding.spec, reschedule)
    }

    /// Reads a binding spec under a given key (`namespace/name`, or `name` for
    /// a ClusterResourceBinding).
    pub fn from_spec(key: &str, spec: &ResourceBindingSpec, reschedule: bool) -> Self {
        BindingView {
            key: key.to_string(),
            api_version: spec.resource.api_version.clone(),
            kind: spec.resource.kind.clone(),
            replicas: spec.replicas,
            request: spec
                .replica_requirements
                .as_ref()
                .map(|r| Shape::from_resource_list(&r.resource_request))
                .unwrap_or_default(),
            placement: spec.placement.clone().unwrap_or_default(),
            current: spec.clusters.clone(),
            evicting: spec
                .graceful_eviction_tasks
                .iter()
                .map(|t| t.from_cluster.clone())
                .collect(),
            reschedule,
        }
    }

    /// A binding of `replicas` Deployment replicas under `placement`.
    pub fn new(key: &str, replicas: i32, placement: Placement) -> Self {
        BindingView {
            key: key.to_string(),
            api_version: "apps/v1".to_string(),
            kind: "Deployment".to_string(),
            replicas,
            placement,
            ..Default::default()
        }
    }

    /// Replicas currently assigned to `cluster`.
    pub fn current_on(&self, cluster: &str) -> i32 {
        self.current
            .iter()
            .find(|t| t.name == cluster)
            .map_or(0, |t| t.replicas)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hami_api::cluster::{ApiEnablement, ApiResourceRef, ClusterSpec, ClusterStatus};
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;

    fn list(pairs: &[(&str, &str)]) -> ResourceList {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), Quantity(v.to_string())))
            .collect()
    }

    #[test]
    fn cluster_view_reads_summary_ready_and_enablements() {
        let mut c = Cluster::new(
            "east",
            ClusterSpec {
                region: Some("eu".into()),
                zone: Some("eu-1b".into()),
                zones: vec!["eu-1a".into()],
                ..Default::default()
            },
        );
        c.status = Some(ClusterStatus {
            conditions: vec![Condition {
                type_: "Ready".into(),
                status: "True".into(),
                last_transition_time: k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                    Default::default(),
                ),
                message: String::new(),
                observed_generation: None,
                reason: "Ok".into(),
            }],
            api_enablements: vec![ApiEnablement {
                group_version: "apps/v1".into(),
                resources: vec![ApiResourceRef {
                    name: "deployments".into(),
                    kind: "Deployment".into(),
                }],
            }],
            resource_summary: Some(ResourceSummary {
                allocatable: list(&[("cpu", "10"), ("memory", "10Gi"), ("nvidia.com/gpu", "8")]),
                allocated: list(&[("cpu", "2500m"), ("nvidia.com/gpu", "9")]),
                allocating: list(&[("cpu", "500m"), ("memory", "bad")]),
            }),
            ..Default::default()
        });
        let v = ClusterView::from_cluster(&c);
        assert_eq!(v.name, "east");
        assert!(v.ready);
        assert_eq!(v.zones, vec!["eu-1a".to_string(), "eu-1b".to_string()]);
        let free = v.free.unwrap();
        assert_eq!(free["cpu"], 7000);
        assert_eq!(free["memory"], 10 * 1024 * 1024 * 1024 * 1000);
        assert_eq!(free["nvidia.com/gpu"], 0, "never negative");
        let api = v.api_enablements.unwrap();
        assert!(api.contains(&("apps/v1".to_string(), "Deployment".to_string())));
    }

    #[test]
    fn cluster_without_status_is_not_ready_and_unreported() {
        let v = ClusterView::from_cluster(&Cluster::new("x", ClusterSpec::default()));
        assert!(!v.ready);
        assert!(v.api_enablements.is_none());
        assert!(v.free.is_none());
    }

    #[test]
    fn shape_drops_zero_and_unparseable() {
        let s = Shape::from_resource_list(&list(&[("cpu", "250m"), ("memory", "0"), ("x", "??")]));
        assert_eq!(s, Shape::from_milli([("cpu", 250)]));
    }
}
