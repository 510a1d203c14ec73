//! Kubernetes objects the simulator writes, built from plain data (pure):
//! the fleet's Nodes (with HAMi's GPU register annotation, exactly as the
//! device plugin writes it) and running pods, a controller's pod from its
//! template, and the pod statuses the simulated kubelet and scheduler report.

use std::collections::BTreeMap;

use hami_api::gpu::{
    self, ContainerDevice, NODE_NVIDIA_REGISTER, NVIDIA_VENDOR, NodeDevice, POD_DEVICES_ALLOCATED,
    POD_VGPU_NODE, RESOURCE_GPU,
};
use hami_estimator::fleet::{Fleet, FleetError};
use k8s_openapi::api::core::v1::{Pod, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use serde_json::{Value, json};

/// Label HAMi's device plugin DaemonSet selects GPU nodes by.
pub const GPU_NODE_LABEL: &str = "gpu";

/// Node objects of a fleet: labels (plus hostname, os, arch and `gpu=on` on
/// GPU nodes), taints, cordon, allocatable and capacity (with
/// `nvidia.com/gpu` = the sum of the devices' share slots, as HAMi's device
/// plugin registers it), the GPU register annotation, and a Ready condition.
/// The status is included; the API server keeps it only through the status
/// subresource, so callers create and then write status.
pub fn fleet_nodes(fleet: &Fleet, now: &str) -> Result<Vec<Value>, FleetError> {
    let (infos, _) = fleet.objects(0)?;
    let mut out = Vec::with_capacity(infos.len());
    for (node, info) in fleet.nodes.iter().zip(infos) {
        let mut labels = node.labels.clone();
        labels
            .entry("kubernetes.io/hostname".into())
            .or_insert_with(|| node.name.clone());
        labels
            .entry("kubernetes.io/os".into())
            .or_insert_with(|| "linux".into());
        labels
            .entry("kubernetes.io/arch".into())
            .or_insert_with(|| "amd64".into());
        let mut allocatable: BTreeMap<String, String> = node.allocatable.clone();
        let mut annotations = BTreeMap::new();
        if !info.gpus.is_empty() {
            labels
                .entry(GPU_NODE_LABEL.into())
                .or_insert_with(|| "on".into());
            let slots: u64 = info.gpus.iter().map(|g| u64::from(g.slots)).sum();
            allocatable.insert(RESOURCE_GPU.into(), slots.to_string());
            let devices: Vec<NodeDevice> = info
                .gpus
                .iter()
                .enumerate()
                .map(|(i, g)| NodeDevice {
                    id: g.id.clone(),
                    index: i as u32,
                    count: g.slots,
                    devmem: g.memory_mib,
                    devcore: g.cores,
                    model: g.model.clone(),
                    numa: 0,
                    mode: "hami-core".into(),
                    health: g.healthy,
                })
                .collect();
            annotations.insert(
                NODE_NVIDIA_REGISTER.to_string(),
                gpu::encode_node_devices(&devices),
            );
        }
        let taints: Vec<Value> = node
            .taints
            .iter()
            .map(|t| json!({"key": t.key, "value": t.value, "effect": t.effect}))
            .collect();
        let ready = if node.ready { "True" } else { "False" };
        out.push(json!({
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": node.name, "labels": labels, "annotations": annotations},
            "spec": {"taints": taints, "unschedulable": node.unschedulable},
            "status": {
                "capacity": allocatable,
                "allocatable": allocatable,
                "conditions": [{
                    "type": "Ready",
                    "status": ready,
                    "reason": if node.ready { "KubeletReady" } else { "KubeletNotReady" },
                    "message": "simulated by hami-sim",
                    "lastHeartbeatTime": now,
                    "lastTransitionTime": now,
                }],
                "addresses": [{"type": "Hostname", "address": node.name}],
                "nodeInfo": {
                    "architecture": "amd64", "operatingSystem": "linux",
                    "kubeletVersion": "v1.33.0-hami-sim", "kubeProxyVersion": "",
                    "containerRuntimeVersion": "sim://1", "kernelVersion": "", "osImage": "hami-sim",
                    "machineID": "", "systemUUID": "", "bootID": "",
                },
            },
        }));
    }
    Ok(out)
}

/// The fleet's pods: those running on a node (bound, with their GPU use in
/// HAMi's allocation annotation) and the pending ones (unbound: the binder
/// places them if it can). Running pods carry a Running status.
pub fn fleet_pods(fleet: &Fleet, now: &str) -> Vec<Value> {
    let mut out = Vec::new();
    for node in &fleet.nodes {
        for p in &node.pods {
            let devices: Vec<ContainerDevice> = p
                .gpus
                .iter()
                .map(|u| ContainerDevice {
                    uuid: u.device.clone(),
                    vendor: NVIDIA_VENDOR.into(),
                    mem_mib: u.memory_mib,
                    cores: u.cores,
                })
                .collect();
            let mut requests: BTreeMap<String, String> = p.requests.clone();
            let mut annotations = BTreeMap::new();
            if !devices.is_empty() {
                requests.insert(RESOURCE_GPU.into(), devices.len().to_string());
                annotations.insert(
                    POD_DEVICES_ALLOCATED.to_string(),
                    gpu::encode_pod_devices(&[devices]),
                );
                annotations.insert(POD_VGPU_NODE.to_string(), node.name.clone());
            }
            out.push(json!({
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": p.name, "namespace": p.namespace, "annotations": annotations},
                "spec": {
                    "nodeName": node.name,
                    "containers": [{"name": "main", "image": "hami-sim", "resources": resources(&requests)}],
                },
                "status": running_status(now, now),
            }));
        }
    }
    for p in &fleet.pending {
        out.push(json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": p.name, "namespace": p.namespace,
                "labels": {"app": p.workload.name},
            },
            "spec": {
                "containers": [{"name": "main", "image": "hami-sim", "resources": resources(&p.requests)}],
            },
        }));
    }
    out
}

/// A fleet pod's container resources: its requests, and the same amounts as
/// limits for the resources Kubernetes cannot overcommit (extended ones such
/// as `nvidia.com/gpu`, and hugepages), which the API server refuses to
/// request without an equal limit.
fn resources(requests: &BTreeMap<String, String>) -> Value {
    let limits: BTreeMap<&String, &String> = requests
        .iter()
        .filter(|(name, _)| {
            (name.contains('/') && !name.starts_with("kubernetes.io/"))
                || name.starts_with("hugepages-")
        })
        .collect();
    if limits.is_empty() {
        json!({"requests": requests})
    } else {
        json!({"requests": requests, "limits": limits})
    }
}

/// A controller's pod from its template: the template's labels (plus
/// `extra_labels`), annotations and spec, a controller owner reference.
pub fn pod_from_template(
    template: &PodTemplateSpec,
    namespace: &str,
    name: &str,
    owner: OwnerReference,
    extra_labels: &[(&str, String)],
) -> Value {
    let meta = template.metadata.clone().unwrap_or_default();
    let mut labels = meta.labels.unwrap_or_default();
    for (k, v) in extra_labels {
        labels.insert((*k).to_string(), v.clone());
    }
    let pod = Pod {
        metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
            name: Some(name.to_string()),
            namespace: Some(namespace.to_string()),
            labels: Some(labels),
            annotations: meta.annotations,
            owner_references: Some(vec![owner]),
            ..Default::default()
        },
        spec: template.spec.clone(),
        status: None,
    };
    let mut v = serde_json::to_value(pod).unwrap_or(Value::Null);
    if let Some(o) = v.as_object_mut() {
        o.insert("apiVersion".into(), json!("v1"));
        o.insert("kind".into(), json!("Pod"));
    }
    v
}

/// A controller owner reference.
pub fn owner_ref(api_version: &str, kind: &str, name: &str, uid: &str) -> OwnerReference {
    OwnerReference {
        api_version: api_version.to_string(),
        kind: kind.to_string(),
        name: name.to_string(),
        uid: uid.to_string(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

fn condition(type_: &str, status: &str, at: &str) -> Value {
    json!({"type": type_, "status": status, "lastTransitionTime": at})
}

/// The status of a started, ready pod (`started` is its start time).
pub fn running_status(started: &str, now: &str) -> Value {
    json!({
        "phase": "Running",
        "startTime": started,
        "conditions": [
            condition("PodScheduled", "True", started),
            condition("Initialized", "True", now),
            condition("ContainersReady", "True", now),
            condition("Ready", "True", now),
        ],
        "containerStatuses": [{
            "name": "main", "ready": true, "started": true, "restartCount": 0,
            "image": "hami-sim", "imageID": "",
            "state": {"running": {"startedAt": started}},
        }],
    })
}

/// The status of a pod whose containers exited (`code` 0: Succeeded).
pub fn finished_status(started: &str, now: &str, code: i32) -> Value {
    let (phase, reason) = if code == 0 {
        ("Succeeded", "Completed")
    } else {
        ("Failed", "Error")
    };
    json!({
        "phase": phase,
        "startTime": started,
        "conditions": [
            condition("PodScheduled", "True", started),
            condition("Initialized", "True", started),
            condition("ContainersReady", "False", now),
            condition("Ready", "False", now),
        ],
        "containerStatuses": [{
            "name": "main", "ready": false, "started": false, "restartCount": 0,
            "image": "hami-sim", "imageID": "",
            "state": {"terminated": {"exitCode": code, "reason": reason, "startedAt": started, "finishedAt": now}},
        }],
    })
}

/// The status of a pod that fits on no node. `since` is when it first
/// became unschedulable (kept across retries, as Kubernetes keeps the
/// condition's transition time while its status does not change).
pub fn unschedulable_status(message: &str, since: &str) -> Value {
    json!({
        "phase": "Pending",
        "conditions": [{
            "type": "PodScheduled",
            "status": "False",
            "reason": "Unschedulable",
            "message": message,
            "lastTransitionTime": since,
        }],
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use hami_estimator::k8s;

    fn fleet() -> Fleet {
        Fleet::from_yaml(
            r#"
cluster: c
nodes:
  - name: gpu-0
    labels: {zone: a}
    taints: [{key: dedicated, value: ml, effect: NoSchedule}]
    allocatable: {cpu: "8", memory: 32Gi, pods: "110"}
    gpus:
      - {id: GPU-a, model: NVIDIA-A100, memoryMiB: 40960, slots: 4}
      - {id: GPU-b, model: NVIDIA-A100, memoryMiB: 40960, slots: 4}
    pods:
      - name: p
        requests: {cpu: "1"}
        gpus: [{device: GPU-a, memoryMiB: 1024, cores: 10}]
  - name: cpu-0
    allocatable: {cpu: "4", memory: 8Gi, pods: "10"}
"#,
        )
        .unwrap()
    }

    #[test]
    fn nodes_read_back_as_the_fleet_says() {
        let f = fleet();
        let nodes = fleet_nodes(&f, "2025-01-01T00:00:00Z").unwrap();
        let (want, _) = f.objects(0).unwrap();
        for (v, want) in nodes.iter().zip(want) {
            let node: k8s_openapi::api::core::v1::Node = serde_json::from_value(v.clone()).unwrap();
            let got = k8s::node_info(&node).unwrap();
            assert_eq!(got.gpus, want.gpus);
            assert_eq!(got.allocatable, want.allocatable);
            assert_eq!(got.taints, want.taints);
            assert!(got.ready);
        }
        assert_eq!(nodes[0]["status"]["allocatable"]["nvidia.com/gpu"], "8");
        assert_eq!(nodes[0]["metadata"]["labels"]["gpu"], "on");
        assert!(nodes[1]["metadata"]["labels"].get("gpu").is_none());
    }

    #[test]
    fn running_fleet_pods_carry_their_gpu_use() {
        let pods = fleet_pods(&fleet(), "2025-01-01T00:00:00Z");
        assert_eq!(pods.len(), 1);
        let pod: Pod = serde_json::from_value(pods[0].clone()).unwrap();
        let info = k8s::pod_info(&pod).unwrap();
        assert_eq!(info.node.as_deref(), Some("gpu-0"));
        assert_eq!(info.gpus.len(), 1);
        assert_eq!(info.gpus[0].uuid, "GPU-a");
        assert_eq!(info.gpus[0].memory_mib, 1024);
        assert!(info.holds_resources());
        // Kubernetes refuses a GPU request without an equal limit.
        let resources = &pods[0]["spec"]["containers"][0]["resources"];
        assert_eq!(resources["limits"]["nvidia.com/gpu"], "1");
        assert_eq!(resources["requests"]["nvidia.com/gpu"], "1");
    }
}
