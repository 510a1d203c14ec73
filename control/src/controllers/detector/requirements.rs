//! What a resource template asks of each replica (pure): the replica count
//! and the pod template's requests, node constraints and GPU shape.

use std::collections::BTreeMap;

use hami_api::binding::{GpuRequirement, GpuRequirementError, NodeClaim, ReplicaRequirements};
use hami_api::common::{NOUSE_GPU_TYPE, RESOURCE_GPU, ResourceList, USE_GPU_TYPE};
use hami_api::quantity::parse_quantity;
use k8s_openapi::api::core::v1::{Container, PodSpec};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use serde_json::Value;

/// Why a template's requirements cannot be read.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RequirementsError {
    /// The pod template is not a PodSpec.
    #[error("{path}: not a pod spec: {message}")]
    PodSpec { path: &'static str, message: String },
    /// The GPU lines are malformed.
    #[error("GPU resources: {0}")]
    Gpu(#[from] GpuRequirementError),
}

/// Replicas and per-replica requirements of a template.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Extracted {
    /// 0 for kinds without replicas.
    pub replicas: i32,
    /// `None` for templates without a pod template.
    pub requirements: Option<ReplicaRequirements>,
}

/// Where the pod template sits, and the replica count field, per shape of
/// object: workloads (`spec.template`), CronJob (`spec.jobTemplate...`), Pod.
fn pod_template(template: &Value) -> Option<(&'static str, &Value, Option<&Value>)> {
    let kind = template.get("kind").and_then(Value::as_str).unwrap_or("");
    if kind == "Pod" {
        let spec = template.get("spec")?;
        return Some(("spec", spec, template.get("metadata")));
    }
    if let Some(t) = template
        .pointer("/spec/template")
        .filter(|t| t.get("spec").is_some())
    {
        return Some(("spec.template.spec", &t["spec"], t.get("metadata")));
    }
    if let Some(t) = template
        .pointer("/spec/jobTemplate/spec/template")
        .filter(|t| t.get("spec").is_some())
    {
        return Some((
            "spec.jobTemplate.spec.template.spec",
            &t["spec"],
            t.get("metadata"),
        ));
    }
    None
}

/// Replica count: `spec.replicas` (default 1 where the kind has a pod
/// template), a Job's `spec.parallelism` (default 1), 0 otherwise.
fn replicas_of(template: &Value, has_pods: bool) -> i32 {
    let kind = template.get("kind").and_then(Value::as_str).unwrap_or("");
    let field = |p: &str| {
        template
            .pointer(p)
            .and_then(Value::as_i64)
            .map(|v| i32::try_from(v.max(0)).unwrap_or(i32::MAX))
    };
    match kind {
        "Job" => field("/spec/parallelism").unwrap_or(1),
        "Pod" => 1,
        "DaemonSet" | "CronJob" => 0,
        _ if has_pods => field("/spec/replicas").unwrap_or(1),
        _ => field("/spec/replicas").unwrap_or(0),
    }
}

fn milli(q: &Quantity) -> Option<i128> {
    parse_quantity(&q.0).ok().filter(|v| *v >= 0)
}

/// Formats milli-units as a quantity: whole units when exact, else `m`.
fn quantity(milli: i128) -> Quantity {
    if milli % 1000 == 0 {
        Quantity((milli / 1000).to_string())
    } else {
        Quantity(format!("{milli}m"))
    }
}

/// A container's effective requests: each request, or its limit when the
/// request is absent (Kubernetes defaults requests from limits).
fn effective(c: &Container) -> BTreeMap<String, i128> {
    let mut out = BTreeMap::new();
    if let Some(r) = &c.resources {
        if let Some(limits) = &r.limits {
            for (k, q) in limits {
                if let Some(v) = milli(q) {
                    out.insert(k.clone(), v);
                }
            }
        }
        if let Some(requests) = &r.requests {
            for (k, q) in requests {
                if let Some(v) = milli(q) {
                    out.insert(k.clone(), v);
                }
            }
        }
    }
    out
}

/// One replica's requests: the sum over containers, at least the largest
/// init container's (they run one at a time, before the others), plus the
/// pod overhead.
fn pod_requests(spec: &PodSpec) -> ResourceList {
    let mut sum: BTreeMap<String, i128> = BTreeMap::new();
    for c in &spec.containers {
        for (k, v) in effective(c) {
            *sum.entry(k).or_default() += v;
        }
    }
    for c in spec.init_containers.iter().flatten() {
        for (k, v) in effective(c) {
            let e = sum.entry(k).or_default();
            *e = (*e).max(v);
        }
    }
    for (k, q) in spec.overhead.iter().flatten() {
        if let Some(v) = milli(q) {
            *sum.entry(k.clone()).or_default() += v;
        }
    }
    sum.into_iter()
        .filter(|(_, v)| *v > 0)
        .map(|(k, v)| (k, quantity(v)))
        .collect()
}

/// The GPU shape: per-GPU lines (memory, cores) from the first container
/// that asks for GPUs, the GPU count summed over containers; types from
/// the pod template's `nvidia.com/use-gputype` / `nouse-gputype` annotations.
fn gpu_of(
    spec: &PodSpec,
    total: &ResourceList,
    annotations: Option<&Value>,
) -> Result<Option<GpuRequirement>, GpuRequirementError> {
    let Some(first) = spec
        .containers
        .iter()
        .find(|c| effective(c).get(RESOURCE_GPU).is_some_and(|v| *v > 0))
    else {
        return Ok(None);
    };
    let mut lines: ResourceList = effective(first)
        .into_iter()
        .map(|(k, v)| (k, quantity(v)))
        .collect();
    if let Some(all) = total.get(RESOURCE_GPU) {
        lines.insert(RESOURCE_GPU.to_string(), all.clone());
    }
    let annotation = |k: &str| annotations.and_then(|a| a.get(k)).and_then(Value::as_str);
    GpuRequirement::from_resources(&lines, annotation(USE_GPU_TYPE), annotation(NOUSE_GPU_TYPE))
}

/// Reads replicas and requirements from a template (any kind, as JSON).
pub fn extract(template: &Value) -> Result<Extracted, RequirementsError> {
    let Some((path, spec, pod_meta)) = pod_template(template) else {
        return Ok(Extracted {
            replicas: replicas_of(template, false),
            requirements: None,
        });
    };
    let spec: PodSpec =
        serde_json::from_value(spec.clone()).map_err(|e| RequirementsError::PodSpec {
            path,
            message: e.to_string(),
        })?;
    let resource_request = pod_requests(&spec);
    let annotations = pod_meta.and_then(|m| m.get("annotations"));
    let gpu = gpu_of(&spec, &resource_request, annotations)?;
    let hard_node_affinity = spec
        .affinity
        .as_ref()
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|n| {
            n.required_during_scheduling_ignored_during_execution
                .clone()
        });
    let node_selector = spec.node_selector.clone().unwrap_or_default();
    let tolerations = spec.tolerations.clone().unwrap_or_default();
    let node_claim =
        (hard_node_affinity.is_some() || !node_selector.is_empty() || !tolerations.is_empty())
            .then_some(NodeClaim {
                hard_node_affinity,
                node_selector,
                tolerations,
            });
    Ok(Extracted {
        replicas: replicas_of(template, true),
        requirements: Some(ReplicaRequirements {
            node_claim,
            resource_request,
            namespace: template
                .pointer("/metadata/namespace")
                .and_then(Value::as_str)
                .map(str::to_owned),
            priority_class_name: spec.priority_class_name.clone(),
            gpu,
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn q(s: &str) -> Quantity {
        Quantity(s.into())
    }

    #[test]
    fn gpu_deployment_requirements() {
        let d = json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "train", "namespace": "ml"},
            "spec": {"replicas": 4, "template": {
                "metadata": {"annotations": {"nvidia.com/use-gputype": "A100,H100"}},
                "spec": {
                    "nodeSelector": {"gpu": "true"},
                    "tolerations": [{"key": "gpu", "operator": "Exists", "effect": "NoSchedule"}],
                    "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
                        "nodeSelectorTerms": [{"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]}]}}},
                    "priorityClassName": "high",
                    "initContainers": [{"name": "init", "resources": {"requests": {"cpu": "3"}}}],
                    "containers": [
                        {"name": "main", "resources": {
                            "requests": {"cpu": "500m", "memory": "1Gi"},
                            "limits": {"cpu": "1", "memory": "1Gi", "nvidia.com/gpu": "2",
                                       "nvidia.com/gpumem": "8000", "nvidia.com/gpucores": "50"}}},
                        {"name": "side", "resources": {"limits": {"cpu": "250m", "nvidia.com/gpu": "1"}}}
                    ]}}}
        });
        let e = extract(&d).unwrap();
        assert_eq!(e.replicas, 4);
        let r = e.requirements.unwrap();
        // cpu: max(500m + 250m (from limit), init 3) = 3; memory from the request.
        assert_eq!(r.resource_request["cpu"], q("3"));
        assert_eq!(r.resource_request["memory"], q("1073741824"));
        assert_eq!(r.resource_request[RESOURCE_GPU], q("3"));
        let gpu = r.gpu.unwrap();
        assert_eq!(gpu.count, 3);
        assert_eq!(gpu.memory_mib, Some(8000));
        assert_eq!(gpu.cores, Some(50));
        assert_eq!(gpu.use_types, ["A100", "H100"]);
        let claim = r.node_claim.unwrap();
        assert_eq!(claim.node_selector["gpu"], "true");
        assert_eq!(claim.tolerations.len(), 1);
        assert!(claim.hard_node_affinity.is_some());
        assert_eq!(r.namespace.as_deref(), Some("ml"));
        assert_eq!(r.priority_class_name.as_deref(), Some("high"));
    }

    #[test]
    fn replicas_default_per_kind() {
        let dep = json!({"kind": "Deployment", "spec": {"template": {"spec": {"containers": []}}}});
        assert_eq!(extract(&dep).unwrap().replicas, 1);
        let job = json!({"kind": "Job", "spec": {"parallelism": 5, "template": {"spec": {"containers": []}}}});
        assert_eq!(extract(&job).unwrap().replicas, 5);
        let cm = json!({"kind": "ConfigMap", "data": {"a": "b"}});
        let e = extract(&cm).unwrap();
        assert_eq!((e.replicas, e.requirements), (0, None));
        let ds = json!({"kind": "DaemonSet", "spec": {"template": {"spec": {"containers": []}}}});
        assert_eq!(extract(&ds).unwrap().replicas, 0);
        let cron = json!({"kind": "CronJob", "spec": {"jobTemplate": {"spec": {"template": {"spec": {
            "containers": [{"name": "c", "resources": {"requests": {"cpu": "100m"}}}]}}}}}});
        let e = extract(&cron).unwrap();
        assert_eq!(e.requirements.unwrap().resource_request["cpu"], q("100m"));
    }

    #[test]
    fn bad_pod_spec_and_gpu_lines_are_errors_not_panics() {
        let bad =
            json!({"kind": "Deployment", "spec": {"template": {"spec": {"containers": "x"}}}});
        assert!(matches!(
            extract(&bad),
            Err(RequirementsError::PodSpec { .. })
        ));
        let frac = json!({"kind": "Deployment", "spec": {"template": {"spec": {"containers": [
            {"name": "c", "resources": {"limits": {"nvidia.com/gpu": "1", "nvidia.com/gpumem": "1.5"}}}]}}}});
        assert!(matches!(extract(&frac), Err(RequirementsError::Gpu(_))));
    }
}
