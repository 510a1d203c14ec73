//! Capacity per named shape: `hami_cluster_shape_max_replicas{cluster,
//! shape}`, how many replicas of each operator-configured shape
//! (`hami up --capacity-shape NAME=SPEC`) each member cluster can hold now,
//! and `hami_cluster_shape_gpu_memory_bytes{shape}`, the GPU memory one
//! replica of a memory-sized shape takes (so a dashboard can show stranded
//! memory: free GPU memory that no more replica of that shape can use).
//!
//! Shapes are a fixed set named by the operator, never taken from
//! workloads, so the `shape` label stays bounded. The numbers come from the
//! scheduler's estimate path: each cluster's estimator (one batch call per
//! cluster for all shapes), falling back to the general estimate from the
//! cluster's resource summary. A background task refreshes them every
//! [`REFRESH`] and soon after a Cluster changes; a scrape only copies the
//! last values out.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use hami_api::binding::{GpuRequirement, ReplicaRequirements};
use hami_api::cluster::Cluster;
use hami_api::common::{
    CLUSTER_GROUP, CLUSTER_VERSION, RESOURCE_GPU, RESOURCE_GPU_CORES, RESOURCE_GPU_MEM,
    RESOURCE_GPU_MEM_PERCENTAGE, ResourceList,
};
use hami_api::quantity::parse_quantity;
use hami_apiserver::ResourceKind;
use hami_apiserver::keys::{kind_prefix, parse_key};
use hami_placement::capacity::general_estimate;
use hami_placement::view::{ClusterView, Shape};
use hami_store::KeyValue;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use parking_lot::RwLock;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::{Registry, Unit};
use tokio::sync::{Notify, watch};

use crate::controllers::estimator_dial::EstimatorDial;
use crate::controllers::feed::{self, Change};
use crate::controllers::scheduler::estimate::{EstimateConfig, Estimators, Query};
use crate::controllers::scheduler::metrics::SchedulerMetrics;
use crate::controllers::{ObjectError, Objects};

/// How often the numbers are refreshed without a Cluster change.
pub const REFRESH: Duration = Duration::from_secs(10);

/// One MiB in bytes.
const MIB: f64 = 1024.0 * 1024.0;

/// A named replica shape whose capacity is reported per cluster.
#[derive(Clone, Debug, PartialEq)]
pub struct CapacityShape {
    /// The `shape` label.
    pub name: String,
    /// What one replica asks for, as the scheduler sees a binding's.
    pub requirements: ReplicaRequirements,
}

impl CapacityShape {
    /// GPU memory one replica takes (GPUs × `gpumem`), when the shape names
    /// its memory in MiB; `None` for whole-GPU or percentage shapes.
    pub fn gpu_memory_bytes(&self) -> Option<f64> {
        let g = self.requirements.gpu.as_ref()?;
        let mib = g.memory_mib?;
        Some(g.count as f64 * mib as f64 * MIB)
    }

    fn shape(&self) -> Shape {
        Shape::from_resource_list(&self.requirements.resource_request)
    }

    /// The estimator cache key (as the scheduler's: the requirements' JSON).
    fn key(&self) -> String {
        serde_json::to_string(&self.requirements).unwrap_or_else(|_| self.name.clone())
    }
}

/// The shapes reported when the operator names none: one whole GPU, one GPU
/// with 8000 or 24000 MiB of its memory, and eight whole GPUs.
pub fn default_shapes() -> Vec<CapacityShape> {
    [
        "1gpu=gpu=1",
        "gpu-8g=gpu=1,gpumem=8000",
        "gpu-24g=gpu=1,gpumem=24000",
        "8gpu=gpu=8",
    ]
    .into_iter()
    .filter_map(|s| parse_capacity_shape(s).ok())
    .collect()
}

/// Parses `NAME=SPEC`, SPEC a comma-separated list of `RESOURCE=QUANTITY`:
/// `gpu`, `gpumem` (MiB per GPU), `gpumem-percentage`, `gpucores`, `cpu`,
/// `memory`, `pods`, or any resource name with a `/` (`example.com/fpga`).
/// NAME is a label value: lowercase letters, digits and `-`, 63 at most.
pub fn parse_capacity_shape(text: &str) -> Result<CapacityShape, String> {
    let (name, spec) = text
        .split_once('=')
        .ok_or_else(|| format!("{text:?} is not NAME=SPEC (say 1gpu=gpu=1)"))?;
    let name = name.trim();
    let name_ok = !name.is_empty()
        && name.len() <= 63
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.starts_with('-')
        && !name.ends_with('-');
    if !name_ok {
        return Err(format!(
            "shape name {name:?}: use 1 to 63 lowercase letters, digits and '-', not at either end"
        ));
    }
    let mut list = ResourceList::new();
    for item in spec.split(',').map(str::trim) {
        if item.is_empty() {
            continue;
        }
        let (resource, value) = item
            .split_once('=')
            .ok_or_else(|| format!("shape {name}: {item:?} is not RESOURCE=QUANTITY"))?;
        let resource = match resource.trim() {
            "gpu" => RESOURCE_GPU,
            "gpumem" => RESOURCE_GPU_MEM,
            "gpumem-percentage" => RESOURCE_GPU_MEM_PERCENTAGE,
            "gpucores" => RESOURCE_GPU_CORES,
            r @ ("cpu" | "memory" | "pods" | "ephemeral-storage") => r,
            r if r.contains('/') => r,
            r => {
                return Err(format!(
                    "shape {name}: unknown resource {r:?} (gpu, gpumem, gpumem-percentage, \
                     gpucores, cpu, memory, pods, ephemeral-storage, or a name with a '/')"
                ));
            }
        };
        let value = value.trim();
        let milli = parse_quantity(value)
            .map_err(|e| format!("shape {name}: {resource}={value:?}: {e}"))?;
        if milli <= 0 {
            return Err(format!(
                "shape {name}: {resource}={value} must be more than 0"
            ));
        }
        if list
            .insert(resource.to_string(), Quantity(value.to_string()))
            .is_some()
        {
            return Err(format!("shape {name}: {resource} given twice"));
        }
    }
    if list.is_empty() {
        return Err(format!("shape {name}: asks for nothing"));
    }
    let gpu = GpuRequirement::from_resources(&list, None, None)
        .map_err(|e| format!("shape {name}: {e}"))?;
    let per_gpu = [
        RESOURCE_GPU_MEM,
        RESOURCE_GPU_MEM_PERCENTAGE,
        RESOURCE_GPU_CORES,
    ];
    if gpu.is_none() && per_gpu.iter().any(|r| list.contains_key(*r)) {
        return Err(format!(
            "shape {name}: gpumem, gpumem-percentage and gpucores are per GPU; add gpu=N"
        ));
    }
    Ok(CapacityShape {
        name: name.to_string(),
        requirements: ReplicaRequirements {
            resource_request: list,
            gpu,
            ..ReplicaRequirements::default()
        },
    })
}

/// Rejects two shapes with one name.
pub fn check_unique(shapes: &[CapacityShape]) -> Result<(), String> {
    let mut seen = std::collections::BTreeSet::new();
    for s in shapes {
        if !seen.insert(s.name.as_str()) {
            return Err(format!("capacity shape {} given twice", s.name));
        }
    }
    Ok(())
}

/// A cluster as the refresh reads it.
#[derive(Clone)]
struct Entry {
    view: ClusterView,
    endpoint: Option<String>,
    revision: u64,
}

/// Last values: per cluster, per shape (in `shapes` order); `None` where
/// neither estimate is available.
type Values = BTreeMap<String, Vec<Option<i64>>>;

struct State {
    shapes: Vec<CapacityShape>,
    clusters: RwLock<BTreeMap<String, Entry>>,
    values: RwLock<Values>,
    changed: Notify,
}

/// The shape gauges: registered once, fed by [`ShapeMetrics::spawn`].
#[derive(Clone)]
pub struct ShapeMetrics {
    state: Arc<State>,
}

impl ShapeMetrics {
    /// Registers the collector of both families under `hami_cluster`.
    pub fn register(registry: &mut Registry, shapes: Vec<CapacityShape>) -> Self {
        let m = Self {
            state: Arc::new(State {
                shapes,
                clusters: RwLock::default(),
                values: RwLock::default(),
                changed: Notify::new(),
            }),
        };
        registry
            .sub_registry_with_prefix("hami_cluster")
            .register_collector(Box::new(ShapeCollector {
                state: m.state.clone(),
            }));
        m
    }

    /// The configured shapes.
    pub fn shapes(&self) -> &[CapacityShape] {
        &self.state.shapes
    }

    /// Watches the Clusters and refreshes the values until `stop`, dialing
    /// their estimators as `dial` says.
    pub fn spawn(
        &self,
        objects: &Objects,
        dial: EstimatorDial,
        stop: &watch::Receiver<bool>,
    ) -> Result<(), ObjectError> {
        let kind = objects.kind(&format!("{CLUSTER_GROUP}/{CLUSTER_VERSION}"), "Cluster")?;
        let feeder = Arc::new(Feeder {
            kind: kind.clone(),
            state: self.state.clone(),
        });
        feed::spawn(
            objects.store(),
            [kind_prefix(&kind)],
            &feeder,
            Feeder::on_change,
            // A metric view, not a controller: nothing waits for its sync.
            &crate::controllers::tracker::Tracker::standalone("capacity_shapes"),
            stop,
        );
        // The estimator calls' latency and errors are the scheduler's
        // families; these calls are counted apart (not exported).
        let estimators = Estimators::new(
            EstimateConfig::default(),
            SchedulerMetrics::register(&mut Registry::default()),
        )
        .with_dial(dial);
        let state = self.state.clone();
        let mut stop = stop.clone();
        tokio::spawn(async move {
            loop {
                refresh(&state, &estimators).await;
                let changed = tokio::select! {
                    _ = tokio::time::sleep(REFRESH) => false,
                    _ = state.changed.notified() => true,
                    _ = stop.wait_for(|s| *s) => return,
                };
                if changed {
                    // Let a burst of status updates settle.
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        });
        Ok(())
    }
}

/// Asks every cluster's estimator for every shape (no lock held across the
/// calls), then replaces the values.
async fn refresh(state: &State, estimators: &Estimators) {
    let clusters: Vec<(String, Entry)> = state
        .clusters
        .read()
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let keys: Vec<String> = state.shapes.iter().map(CapacityShape::key).collect();
    let mut queries = Vec::new();
    for (name, e) in &clusters {
        let Some(endpoint) = &e.endpoint else {
            continue;
        };
        for (s, key) in state.shapes.iter().zip(&keys) {
            queries.push(Query {
                cluster: name.clone(),
                endpoint: endpoint.clone(),
                revision: e.revision,
                shape_key: key.clone(),
                requirements: s.requirements.clone(),
            });
        }
    }
    if !queries.is_empty() {
        estimators.fill(queries).await;
    }
    let shapes: Vec<Shape> = state.shapes.iter().map(CapacityShape::shape).collect();
    let values: Values = clusters
        .iter()
        .map(|(name, e)| {
            let per_shape = shapes
                .iter()
                .zip(&keys)
                .map(|(shape, key)| {
                    let accurate = e
                        .endpoint
                        .as_ref()
                        .and_then(|_| estimators.cached(name, key, e.revision));
                    match accurate {
                        Some(a) => Some(i64::from(a.max(0))),
                        None => general_estimate(e.view.free.as_ref(), shape),
                    }
                })
                .collect();
            (name.clone(), per_shape)
        })
        .collect();
    *state.values.write() = values;
}

struct Feeder {
    kind: Arc<ResourceKind>,
    state: Arc<State>,
}

impl Feeder {
    fn entry(kv: &KeyValue) -> Option<Entry> {
        let cluster: Cluster = serde_json::from_slice(&kv.value).ok()?;
        let endpoint = crate::controllers::scheduler::estimate::estimator_endpoint(&cluster);
        Some(Entry {
            view: ClusterView::from_cluster(&cluster),
            endpoint,
            revision: kv.mod_revision,
        })
    }

    fn on_change(&self, change: Change) {
        {
            let mut clusters = self.state.clusters.write();
            match change {
                Change::Reset(items) => {
                    clusters.clear();
                    for kv in &items {
                        if let Some(e) = Self::entry(kv) {
                            clusters.insert(e.view.name.clone(), e);
                        }
                    }
                }
                Change::Apply(kv) => {
                    if let Some(e) = Self::entry(&kv) {
                        clusters.insert(e.view.name.clone(), e);
                    }
                }
                Change::Delete(kv) => {
                    if let Some((_, name)) = parse_key(&self.kind, &kv.key) {
                        clusters.remove(name);
                    }
                }
            }
        }
        self.state.changed.notify_one();
    }
}

#[derive(Debug)]
struct ShapeCollector {
    state: Arc<State>,
}

impl std::fmt::Debug for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("State")
            .field("shapes", &self.shapes.len())
            .finish_non_exhaustive()
    }
}

impl Collector for ShapeCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        // Copy out under the read lock; encode without it.
        let values = self.state.values.read().clone();
        let mut family = encoder.encode_descriptor(
            "shape_max_replicas",
            "Replicas of each configured capacity shape (hami up --capacity-shape) the cluster can hold now, as the scheduler estimates them",
            None,
            MetricType::Gauge,
        )?;
        for (cluster, per_shape) in &values {
            for (s, v) in self.state.shapes.iter().zip(per_shape) {
                if let Some(v) = v {
                    let labels = [("cluster", cluster.as_str()), ("shape", s.name.as_str())];
                    ConstGauge::new(*v).encode(family.encode_family(&labels)?)?;
                }
            }
        }
        let mut family = encoder.encode_descriptor(
            "shape_gpu_memory",
            "GPU memory one replica of a capacity shape takes (GPUs times gpumem); only shapes that name gpumem",
            Some(&Unit::Bytes),
            MetricType::Gauge,
        )?;
        for s in &self.state.shapes {
            if let Some(b) = s.gpu_memory_bytes() {
                let labels = [("shape", s.name.as_str())];
                ConstGauge::new(b).encode(family.encode_family(&labels)?)?;
            }
        }
        Ok(())
    }
}

/// Free GPU memory a shape cannot use: what is free less what `replicas`
/// more replicas of the shape would take, never below 0 (the dashboard's
/// fragmentation panel computes the same in PromQL).
pub fn stranded_bytes(free_bytes: f64, replicas: i64, shape_bytes: f64) -> f64 {
    (free_bytes - replicas as f64 * shape_bytes).max(0.0)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn parses_good_specs() {
        let s = parse_capacity_shape("gpu-8g=gpu=1,gpumem=8000,cpu=1,memory=4Gi").unwrap();
        assert_eq!(s.name, "gpu-8g");
        let r = &s.requirements.resource_request;
        assert_eq!(r[RESOURCE_GPU].0, "1");
        assert_eq!(r[RESOURCE_GPU_MEM].0, "8000");
        assert_eq!(r["cpu"].0, "1");
        assert_eq!(r["memory"].0, "4Gi");
        let g = s.requirements.gpu.as_ref().unwrap();
        assert_eq!((g.count, g.memory_mib), (1, Some(8000)));
        assert_eq!(s.gpu_memory_bytes(), Some(8000.0 * MIB));

        let two = parse_capacity_shape("pair = gpu=2, gpumem=1000 ,").unwrap();
        assert_eq!(two.name, "pair");
        assert_eq!(two.gpu_memory_bytes(), Some(2000.0 * MIB));

        let whole = parse_capacity_shape("8gpu=gpu=8").unwrap();
        assert_eq!(whole.requirements.gpu.as_ref().unwrap().count, 8);
        assert_eq!(whole.gpu_memory_bytes(), None);

        let cpu = parse_capacity_shape("web=cpu=500m,example.com/fpga=1").unwrap();
        assert!(cpu.requirements.gpu.is_none());
        assert_eq!(cpu.requirements.resource_request["example.com/fpga"].0, "1");
        assert_eq!(cpu.gpu_memory_bytes(), None);
    }

    #[test]
    fn rejects_bad_specs_with_the_reason() {
        for (input, says) in [
            ("gpu=1", "\"1\" is not RESOURCE=QUANTITY"),
            ("1gpu", "not NAME=SPEC"),
            ("=gpu=1", "shape name"),
            ("Big=gpu=1", "shape name"),
            ("-x=gpu=1", "shape name"),
            ("x=", "asks for nothing"),
            ("x=gpu", "not RESOURCE=QUANTITY"),
            ("x=gpus=1", "unknown resource \"gpus\""),
            ("x=gpu=one", "nvidia.com/gpu"),
            ("x=gpu=0", "more than 0"),
            ("x=cpu=-1", "more than 0"),
            ("x=gpu=1.5", "nvidia.com/gpu"),
            ("x=gpu=1,gpu=2", "given twice"),
            ("x=gpumem=8000", "add gpu=N"),
        ] {
            let e = parse_capacity_shape(input).unwrap_err();
            assert!(e.contains(says), "{input:?}: {e:?} lacks {says:?}");
        }
        let dup = [
            parse_capacity_shape("a=gpu=1").unwrap(),
            parse_capacity_shape("a=gpu=2").unwrap(),
        ];
        assert!(check_unique(&dup).unwrap_err().contains("a given twice"));
    }

    #[test]
    fn default_shapes_all_parse() {
        let names: Vec<String> = default_shapes().into_iter().map(|s| s.name).collect();
        assert_eq!(names, ["1gpu", "gpu-8g", "gpu-24g", "8gpu"]);
    }

    #[test]
    fn stranded_memory_is_what_no_more_replica_can_use() {
        // A T4 with 15360 MiB free holds one 8000 MiB replica: 7360 stranded.
        assert_eq!(stranded_bytes(15360.0, 1, 8000.0), 7360.0);
        // Nothing fits: all of it is stranded.
        assert_eq!(stranded_bytes(15360.0, 0, 24000.0), 15360.0);
        // Never negative.
        assert_eq!(stranded_bytes(100.0, 2, 80.0), 0.0);
    }

    #[test]
    fn encodes_values_and_shape_memory() {
        let mut registry = Registry::default();
        let m = ShapeMetrics::register(&mut registry, default_shapes());
        m.state
            .values
            .write()
            .insert("member-3".into(), vec![Some(6), Some(6), Some(0), None]);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        for line in [
            "hami_cluster_shape_max_replicas{cluster=\"member-3\",shape=\"1gpu\"} 6",
            "hami_cluster_shape_max_replicas{cluster=\"member-3\",shape=\"gpu-24g\"} 0",
            "hami_cluster_shape_gpu_memory_bytes{shape=\"gpu-8g\"} 8388608000.0",
            "hami_cluster_shape_gpu_memory_bytes{shape=\"gpu-24g\"} 25165824000.0",
            "# TYPE hami_cluster_shape_max_replicas gauge",
            "# UNIT hami_cluster_shape_gpu_memory_bytes bytes",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in\n{text}"
            );
        }
        // No estimate: no sample; whole-GPU shapes have no memory line.
        assert!(!text.contains("shape=\"8gpu\"} "), "{text}");
        assert!(!text.contains("hami_cluster_shape_gpu_memory_bytes{shape=\"1gpu\"}"));
    }
}
