//! Rules for ResourceBinding / ClusterResourceBinding and Work specs.

use std::collections::BTreeSet;

use super::FieldError;
use super::names::is_label_value;
use super::policy::validate_placement;
use super::quota::resource_list;
use super::selector::{label_key, label_value_message, toleration};
use crate::binding::{GpuRequirement, ReplicaRequirements, ResourceBindingSpec};
use crate::work::WorkSpec;

/// Checks a binding spec; `path` is where it sits (usually `spec`).
pub fn validate_binding_spec(spec: &ResourceBindingSpec, path: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let r = &spec.resource;
    let rp = format!("{path}.resource");
    for (value, name) in [
        (&r.api_version, "apiVersion"),
        (&r.kind, "kind"),
        (&r.name, "name"),
    ] {
        if value.is_empty() {
            errs.push(FieldError::required(
                format!("{rp}.{name}"),
                "Required value",
            ));
        }
    }
    non_negative(
        i64::from(spec.replicas),
        &format!("{path}.replicas"),
        &mut errs,
    );
    if let Some(req) = &spec.replica_requirements {
        replica_requirements(req, &format!("{path}.replicaRequirements"), &mut errs);
    }
    if let Some(p) = &spec.placement {
        errs.extend(validate_placement(p, &format!("{path}.placement")));
    }
    let mut seen = BTreeSet::new();
    for (i, c) in spec.clusters.iter().enumerate() {
        let p = format!("{path}.clusters[{i}]");
        if c.name.is_empty() {
            errs.push(FieldError::required(format!("{p}.name"), "Required value"));
        } else if !seen.insert(c.name.as_str()) {
            errs.push(FieldError::duplicate(format!("{p}.name"), &c.name));
        }
        non_negative(i64::from(c.replicas), &format!("{p}.replicas"), &mut errs);
    }
    for (i, t) in spec.graceful_eviction_tasks.iter().enumerate() {
        let p = format!("{path}.gracefulEvictionTasks[{i}]");
        for (value, name) in [
            (&t.from_cluster, "fromCluster"),
            (&t.reason, "reason"),
            (&t.producer, "producer"),
        ] {
            if value.is_empty() {
                errs.push(FieldError::required(
                    format!("{p}.{name}"),
                    "Required value",
                ));
            }
        }
        if let Some(r) = t.replicas {
            non_negative(i64::from(r), &format!("{p}.replicas"), &mut errs);
        }
        if let Some(g) = t.grace_period_seconds.filter(|g| *g <= 0) {
            errs.push(FieldError::invalid(
                format!("{p}.gracePeriodSeconds"),
                format!("{g}: must be greater than 0"),
            ));
        }
    }
    errs
}

fn replica_requirements(req: &ReplicaRequirements, path: &str, errs: &mut Vec<FieldError>) {
    if let Some(claim) = &req.node_claim {
        let cp = format!("{path}.nodeClaim");
        for (k, v) in &claim.node_selector {
            let kp = format!("{cp}.nodeSelector[{k}]");
            label_key(k, &kp, errs);
            if !is_label_value(v) {
                errs.push(FieldError::invalid(kp, label_value_message(v)));
            }
        }
        for (i, t) in claim.tolerations.iter().enumerate() {
            toleration(t, &format!("{cp}.tolerations[{i}]"), errs);
        }
    }
    resource_list(
        &req.resource_request,
        &format!("{path}.resourceRequest"),
        errs,
    );
    if let Some(gpu) = &req.gpu {
        gpu_requirement(gpu, &format!("{path}.gpu"), errs);
    }
}

fn gpu_requirement(gpu: &GpuRequirement, path: &str, errs: &mut Vec<FieldError>) {
    non_negative(gpu.count, &format!("{path}.count"), errs);
    if let Some(m) = gpu.memory_mib {
        non_negative(m, &format!("{path}.memoryMiB"), errs);
    }
    for (v, name) in [
        (gpu.memory_percentage, "memoryPercentage"),
        (gpu.cores, "cores"),
    ] {
        if let Some(v) = v.filter(|v| !(0..=100).contains(v)) {
            errs.push(FieldError::invalid(
                format!("{path}.{name}"),
                format!("{v}: must be between 0 and 100"),
            ));
        }
    }
    let shares = gpu.memory_mib.is_some() || gpu.memory_percentage.is_some() || gpu.cores.is_some();
    if gpu.count == 0 && shares {
        errs.push(FieldError::invalid(
            format!("{path}.count"),
            "must be at least 1 when GPU memory or cores are requested",
        ));
    }
    let used: BTreeSet<&str> = gpu.use_types.iter().map(String::as_str).collect();
    for (i, t) in gpu.no_use_types.iter().enumerate() {
        if used.contains(t.as_str()) {
            errs.push(FieldError::invalid(
                format!("{path}.noUseTypes[{i}]"),
                format!("{t:?} is also in useTypes"),
            ));
        }
    }
}

fn non_negative(v: i64, field: &str, errs: &mut Vec<FieldError>) {
    if v < 0 {
        errs.push(FieldError::invalid(
            field,
            format!("{v}: must be greater than or equal to 0"),
        ));
    }
}

/// Checks a Work spec: every manifest is an object with apiVersion, kind and
/// metadata.name.
pub fn validate_work_spec(spec: &WorkSpec, path: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    for (i, m) in spec.workload.manifests.iter().enumerate() {
        let p = format!("{path}.workload.manifests[{i}]");
        if !m.is_object() {
            errs.push(FieldError::invalid(p, "a manifest must be a JSON object"));
            continue;
        }
        let text = |ptr: &str| m.pointer(ptr).and_then(|v| v.as_str()).unwrap_or_default();
        for (ptr, name) in [
            ("/apiVersion", "apiVersion"),
            ("/kind", "kind"),
            ("/metadata/name", "metadata.name"),
        ] {
            if text(ptr).is_empty() {
                errs.push(FieldError::required(
                    format!("{p}.{name}"),
                    "Required value",
                ));
            }
        }
    }
    errs
}
