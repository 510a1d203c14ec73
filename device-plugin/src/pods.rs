//! HAMi's scheduler hand-off. Kubelet's Allocate does not say which pod it
//! serves; HAMi's scheduler therefore marks the pod it bound to this node with
//! `hami.io/bind-phase: allocating` and lists, per container, the devices to
//! hand out in `hami.io/vgpu-devices-to-allocate` (it also writes the final
//! record, `hami.io/vgpu-devices-allocated`). The plugin takes the next
//! container's devices from that list, erases them, and marks the pod
//! `success` when none are left (or `failed`), then releases HAMi's node lock.
//! With this hand-off, memory and core limits come from the pod's
//! `nvidia.com/gpumem` / `nvidia.com/gpucores` requests exactly as under HAMi.

use std::collections::BTreeMap;

use hami_api::gpu::{
    ContainerDevice, GpuAnnotationError, POD_DEVICES_TO_ALLOCATE, encode_pod_devices,
    parse_pod_devices,
};
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, ListParams, Patch, PatchParams};

/// Pod annotation: where HAMi's bind stands (`allocating`, `success`, `failed`).
pub const BIND_PHASE: &str = "hami.io/bind-phase";
/// Pod annotation: Unix seconds of the bind; the oldest allocating pod goes first.
pub const BIND_TIME: &str = "hami.io/bind-time";
/// Node annotation HAMi's scheduler holds while a pod on the node is allocating.
pub const NODE_LOCK: &str = "hami.io/mutex.lock";
pub const PHASE_ALLOCATING: &str = "allocating";
pub const PHASE_SUCCESS: &str = "success";
pub const PHASE_FAILED: &str = "failed";

/// Errors of the hand-off.
#[derive(Debug, thiserror::Error)]
pub enum PodError {
    #[error("reading pods of node {node} failed: {source}")]
    List {
        node: String,
        #[source]
        source: kube::Error,
    },
    #[error("updating {target} failed: {source}")]
    Patch {
        target: String,
        #[source]
        source: kube::Error,
    },
    #[error("pod {pod}: {POD_DEVICES_TO_ALLOCATE} is invalid: {source}")]
    Annotation {
        pod: String,
        #[source]
        source: GpuAnnotationError,
    },
    #[error("pod {pod}: no container has devices left to allocate")]
    NothingLeft { pod: String },
}

/// A pod the scheduler bound here and whose devices are being handed out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PendingPod {
    pub namespace: String,
    pub name: String,
    pub annotations: BTreeMap<String, String>,
}

impl PendingPod {
    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }
}

/// The allocating pod that was bound first (by bind time, then namespace/name).
pub fn select_pending(pods: Vec<PendingPod>) -> Option<PendingPod> {
    pods.into_iter()
        .filter(|p| p.annotations.get(BIND_PHASE).map(String::as_str) == Some(PHASE_ALLOCATING))
        .min_by_key(|p| {
            let time: u64 = p
                .annotations
                .get(BIND_TIME)
                .and_then(|t| t.parse().ok())
                .unwrap_or(u64::MAX);
            (time, p.namespace.clone(), p.name.clone())
        })
}

/// The devices of the next container still to allocate, and the pod's
/// to-allocate list with that container erased.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Step {
    pub devices: Vec<ContainerDevice>,
    pub remaining: Vec<Vec<ContainerDevice>>,
}

impl Step {
    pub fn done(&self) -> bool {
        self.remaining.iter().all(Vec::is_empty)
    }
}

/// Takes the first container with devices from `to_allocate`.
pub fn next_container(
    pod: &str,
    mut to_allocate: Vec<Vec<ContainerDevice>>,
) -> Result<Step, PodError> {
    let slot = to_allocate
        .iter_mut()
        .find(|c| !c.is_empty())
        .ok_or_else(|| PodError::NothingLeft {
            pod: pod.to_string(),
        })?;
    let devices = std::mem::take(slot);
    Ok(Step {
        devices,
        remaining: to_allocate,
    })
}

/// Parses a pending pod's to-allocate list.
pub fn to_allocate(pod: &PendingPod) -> Result<Vec<Vec<ContainerDevice>>, PodError> {
    let value = pod
        .annotations
        .get(POD_DEVICES_TO_ALLOCATE)
        .map_or("", String::as_str);
    parse_pod_devices(value).map_err(|source| PodError::Annotation {
        pod: pod.key(),
        source,
    })
}

/// The annotation changes that finish (or continue) an allocation.
pub fn outcome(remaining: Option<&[Vec<ContainerDevice>]>) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    match remaining {
        Some(rest) => {
            out.insert(
                POD_DEVICES_TO_ALLOCATE.to_string(),
                encode_pod_devices(rest),
            );
            if rest.iter().all(Vec::is_empty) {
                out.insert(BIND_PHASE.to_string(), PHASE_SUCCESS.to_string());
            }
        }
        None => {
            out.insert(BIND_PHASE.to_string(), PHASE_FAILED.to_string());
        }
    }
    out
}

/// Where pending pods are read and their annotations written.
#[async_trait::async_trait]
pub trait PodAllocations: Send + Sync + 'static {
    /// The pod whose devices are being handed out on this node, if any.
    async fn pending(&self) -> Result<Option<PendingPod>, PodError>;
    /// Sets annotations on the pod; when the bind ended (success or failure)
    /// also releases HAMi's node lock.
    async fn finish(
        &self,
        pod: &PendingPod,
        annotations: BTreeMap<String, String>,
    ) -> Result<(), PodError>;
}

/// The hand-off through the Kubernetes API.
pub struct KubePods {
    pods: Api<Pod>,
    nodes: Api<Node>,
    node: String,
}

impl KubePods {
    pub fn new(client: kube::Client, node: String) -> Self {
        Self {
            pods: Api::all(client.clone()),
            nodes: Api::all(client),
            node,
        }
    }
}

#[async_trait::async_trait]
impl PodAllocations for KubePods {
    async fn pending(&self) -> Result<Option<PendingPod>, PodError> {
        let params = ListParams::default().fields(&format!("spec.nodeName={}", self.node));
        let list = self
            .pods
            .list(&params)
            .await
            .map_err(|source| PodError::List {
                node: self.node.clone(),
                source,
            })?;
        let pods = list
            .items
            .into_iter()
            .map(|p| PendingPod {
                namespace: p.metadata.namespace.unwrap_or_default(),
                name: p.metadata.name.unwrap_or_default(),
                annotations: p
                    .metadata
                    .annotations
                    .unwrap_or_default()
                    .into_iter()
                    .collect(),
            })
            .collect();
        Ok(select_pending(pods))
    }

    async fn finish(
        &self,
        pod: &PendingPod,
        annotations: BTreeMap<String, String>,
    ) -> Result<(), PodError> {
        let ended = annotations.contains_key(BIND_PHASE);
        let patch = serde_json::json!({ "metadata": { "annotations": annotations } });
        Api::<Pod>::namespaced(self.pods.clone().into_client(), &pod.namespace)
            .patch(&pod.name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map_err(|source| PodError::Patch {
                target: format!("pod {}", pod.key()),
                source,
            })?;
        if ended {
            let unlock = serde_json::json!({ "metadata": { "annotations": { NODE_LOCK: null } } });
            self.nodes
                .patch(&self.node, &PatchParams::default(), &Patch::Merge(&unlock))
                .await
                .map_err(|source| PodError::Patch {
                    target: format!("node {}", self.node),
                    source,
                })?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn pod(name: &str, phase: &str, time: &str) -> PendingPod {
        let mut annotations = BTreeMap::new();
        annotations.insert(BIND_PHASE.to_string(), phase.to_string());
        annotations.insert(BIND_TIME.to_string(), time.to_string());
        PendingPod {
            namespace: "default".into(),
            name: name.into(),
            annotations,
        }
    }

    #[test]
    fn the_oldest_allocating_pod_is_served_first() {
        let pods = vec![
            pod("c", PHASE_ALLOCATING, "30"),
            pod("a", PHASE_SUCCESS, "10"),
            pod("b", PHASE_ALLOCATING, "20"),
        ];
        assert_eq!(select_pending(pods).unwrap().name, "b");
        assert!(select_pending(vec![pod("a", PHASE_FAILED, "1")]).is_none());
    }

    #[test]
    fn containers_are_taken_in_order_until_none_is_left() {
        let list = parse_pod_devices(
            "GPU-a,NVIDIA,20000,30:;;GPU-b,NVIDIA,1000,10:GPU-c,NVIDIA,1000,10:;",
        )
        .unwrap();
        let first = next_container("default/p", list).unwrap();
        assert_eq!(first.devices[0].mem_mib, 20000);
        assert!(!first.done());
        assert_eq!(
            outcome(Some(&first.remaining)),
            BTreeMap::from([(
                POD_DEVICES_TO_ALLOCATE.to_string(),
                ";;GPU-b,NVIDIA,1000,10:GPU-c,NVIDIA,1000,10:;".to_string()
            )])
        );
        let second = next_container("default/p", first.remaining).unwrap();
        assert_eq!(second.devices.len(), 2);
        assert!(second.done());
        assert_eq!(outcome(Some(&second.remaining))[BIND_PHASE], PHASE_SUCCESS);
        assert!(matches!(
            next_container("default/p", second.remaining),
            Err(PodError::NothingLeft { .. })
        ));
        assert_eq!(outcome(None)[BIND_PHASE], PHASE_FAILED);
    }
}
