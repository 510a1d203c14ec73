//! The simulated scheduler and kubelet (pure, synchronous): an estimator
//! [`Snapshot`] fed by Node and Pod events, and [`Binder::decide`], which
//! places each pending pod (in creation order) on a node where it fits with
//! the estimator's per-device GPU logic and picks its devices
//! ([`fit::choose_devices`]), marks bound pods Running after a start delay,
//! finishes Job pods after their run time, and reports pods that fit
//! nowhere as Unschedulable. A placement is applied to the snapshot at once
//! (a reservation), so the next pod of the same pass sees the GPUs taken.

use std::collections::{BTreeMap, HashMap};

use hami_api::gpu::{self, ContainerDevice, NVIDIA_VENDOR, POD_DEVICES_ALLOCATED, POD_VGPU_NODE};
use hami_estimator::fit::{self, node_max_replicas};
use hami_estimator::k8s::{self, ConvertError};
use hami_estimator::{GpuUse, PodInfo, PodPhase, ReplicaShape, Snapshot};
use k8s_openapi::api::core::v1::{Node, Pod};
use serde_json::{Value, json};

use super::objects::{finished_status, running_status, unschedulable_status};
use super::write::{Kind, Write};

/// Pod annotation: simulated run time of a Job's pod, in seconds.
pub const RUN_SECONDS: &str = "sim.hami.io/run-seconds";
/// Pod annotation: exit code of a Job's pod (default 0).
pub const EXIT_CODE: &str = "sim.hami.io/exit-code";

/// Timing of the simulated kubelet.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// From binding to Running and Ready, ms.
    pub start_delay_ms: i64,
    /// From Running to finished for a Job's pod, ms.
    pub job_run_ms: i64,
    /// A write sent and not yet seen back is not repeated for this long, ms.
    pub retry_ms: i64,
}

impl Default for Timing {
    fn default() -> Self {
        Self {
            start_delay_ms: 500,
            job_run_ms: 3000,
            retry_ms: 2000,
        }
    }
}

/// What the binder keeps of a pod.
#[derive(Debug, Clone)]
struct Tracked {
    created_ms: i64,
    pod: Pod,
    info: PodInfo,
    /// When it was first seen (or made) bound and not yet running.
    bound_ms: Option<i64>,
}

/// A placement sent and not yet seen back.
#[derive(Debug, Clone)]
struct Reservation {
    node: String,
    gpus: Vec<GpuUse>,
}

/// Why a pod does not fit on a node (message buckets).
#[derive(Debug, Default, Clone, Copy)]
struct Misfit {
    claim: usize,
    not_ready: usize,
    resources: usize,
}

/// The binder's state. One owner task applies events and calls
/// [`Binder::decide`]; nothing here does IO.
#[derive(Debug, Default)]
pub struct Binder {
    timing: Timing,
    snapshot: Snapshot,
    node_gpus: HashMap<String, Vec<String>>,
    pods: BTreeMap<String, Tracked>,
    reserved: HashMap<String, Reservation>,
    sent: HashMap<String, (&'static str, i64)>,
    /// Bumped by every event that can make room; a shape that failed at the
    /// current value is not searched again.
    room: u64,
    failed_shapes: HashMap<ReplicaShape, u64>,
    last_pending: usize,
}

fn key(ns: &str, name: &str) -> String {
    format!("{ns}/{name}")
}

fn rfc3339(ms: i64) -> String {
    k8s_openapi::jiff::Timestamp::from_millisecond(ms)
        .map(|t| format!("{t:.0}"))
        .unwrap_or_default()
}

impl Binder {
    /// An empty binder.
    pub fn new(timing: Timing) -> Self {
        Self {
            timing,
            ..Self::default()
        }
    }

    /// The snapshot (what the binder believes is used, reservations included).
    pub fn snapshot_mut(&mut self) -> &mut Snapshot {
        &mut self.snapshot
    }

    /// A Node was added or changed.
    pub fn apply_node(&mut self, node: &Node) -> Result<(), ConvertError> {
        let info = k8s::node_info(node)?;
        self.node_gpus.insert(
            info.name.clone(),
            info.gpus.iter().map(|g| g.id.clone()).collect(),
        );
        self.snapshot.apply_node(info);
        self.room += 1;
        Ok(())
    }

    /// A Node is gone.
    pub fn delete_node(&mut self, name: &str) {
        self.node_gpus.remove(name);
        self.snapshot.delete_node(name);
        self.room += 1;
    }

    /// A Pod was added or changed.
    pub fn apply_pod(&mut self, pod: &Pod) -> Result<(), ConvertError> {
        let mut info = k8s::pod_info(pod)?;
        let k = key(&info.namespace, &info.name);
        if info.node.is_some() {
            self.reserved.remove(&k);
        } else if let Some(r) = self.reserved.get(&k) {
            // Our placement is on its way: an older event must not undo it.
            info.node = Some(r.node.clone());
            info.gpus = r.gpus.clone();
        }
        let created_ms = pod
            .metadata
            .creation_timestamp
            .as_ref()
            .map_or(0, |t| t.0.as_millisecond());
        if !info.holds_resources() {
            self.room += 1;
        }
        let prev_bound = self.pods.get(&k).and_then(|t| t.bound_ms);
        let bound_ms = match (&info.node, info.phase) {
            (Some(_), PodPhase::Pending) => prev_bound.or(Some(0)),
            _ => None,
        };
        self.snapshot.apply_pod(info.clone());
        self.pods.insert(
            k,
            Tracked {
                created_ms,
                pod: pod.clone(),
                info,
                bound_ms,
            },
        );
        Ok(())
    }

    /// A Pod is gone.
    pub fn delete_pod(&mut self, namespace: &str, name: &str) {
        let k = key(namespace, name);
        self.pods.remove(&k);
        self.reserved.remove(&k);
        self.sent.remove(&k);
        self.snapshot.delete_pod(namespace, name);
        self.room += 1;
    }

    /// Keys (namespace, name) of the pods it knows.
    pub fn pod_keys(&self) -> Vec<(String, String)> {
        self.pods
            .values()
            .map(|t| (t.info.namespace.clone(), t.info.name.clone()))
            .collect()
    }

    /// Names of the nodes it knows.
    pub fn node_names(&self) -> Vec<String> {
        let mut v: Vec<String> = self.node_gpus.keys().cloned().collect();
        v.sort();
        v
    }

    /// Unbound pods waiting for a node at the last [`Binder::decide`].
    pub fn pending(&self) -> usize {
        self.last_pending
    }

    /// A write the binder asked for failed: forget it was sent, and drop a
    /// reservation it made so that the pod is placed again.
    pub fn write_failed(&mut self, namespace: &str, name: &str) {
        let k = key(namespace, name);
        self.sent.remove(&k);
        if self.reserved.remove(&k).is_some()
            && let Some(t) = self.pods.get_mut(&k)
        {
            let mut info = t.info.clone();
            info.node = None;
            info.gpus.clear();
            t.info = info.clone();
            t.bound_ms = None;
            self.snapshot.apply_pod(info);
            self.room += 1;
        }
    }

    fn recently_sent(&self, k: &str, what: &'static str, now_ms: i64) -> bool {
        self.sent
            .get(k)
            .is_some_and(|(w, at)| *w == what && now_ms - at < self.timing.retry_ms)
    }

    /// Every write due at `now_ms`: bindings, Unschedulable reports, Running
    /// and finished statuses. Milliseconds since the Unix epoch.
    pub fn decide(&mut self, now_ms: i64) -> Vec<Write> {
        let now = rfc3339(now_ms);
        let mut out = Vec::new();
        let mut pending: Vec<(i64, String)> = Vec::new();
        let mut starts: Vec<String> = Vec::new();
        let mut finishes: Vec<(String, i32)> = Vec::new();
        for (k, t) in self.pods.iter_mut() {
            if t.info.terminating {
                continue;
            }
            match (&t.info.node, t.info.phase) {
                (None, PodPhase::Pending) => pending.push((t.created_ms, k.clone())),
                (Some(_), PodPhase::Pending) => {
                    let b = *t.bound_ms.get_or_insert(now_ms);
                    let b = if b == 0 {
                        t.bound_ms = Some(now_ms);
                        now_ms
                    } else {
                        b
                    };
                    if now_ms - b >= self.timing.start_delay_ms {
                        starts.push(k.clone());
                    }
                }
                (Some(_), PodPhase::Running) if owned_by_job(&t.pod) => {
                    let started = t
                        .pod
                        .status
                        .as_ref()
                        .and_then(|s| s.start_time.as_ref())
                        .map_or(now_ms, |s| s.0.as_millisecond());
                    let run_ms = annotation(&t.pod, RUN_SECONDS)
                        .and_then(|v| v.parse::<f64>().ok())
                        .map_or(self.timing.job_run_ms, |s| (s * 1000.0) as i64);
                    if now_ms - started >= run_ms {
                        let code = annotation(&t.pod, EXIT_CODE)
                            .and_then(|v| v.parse().ok())
                            .unwrap_or(0);
                        finishes.push((k.clone(), code));
                    }
                }
                _ => {}
            }
        }
        for k in starts {
            if self.recently_sent(&k, "start", now_ms) {
                continue;
            }
            let Some(t) = self.pods.get(&k) else { continue };
            let started = rfc3339(t.bound_ms.unwrap_or(now_ms).max(now_ms));
            out.push(Write::Status {
                kind: Kind::Pod,
                namespace: t.info.namespace.clone(),
                name: t.info.name.clone(),
                status: running_status(&started, &now),
            });
            self.sent.insert(k, ("start", now_ms));
        }
        for (k, code) in finishes {
            if self.recently_sent(&k, "finish", now_ms) {
                continue;
            }
            let Some(t) = self.pods.get(&k) else { continue };
            let started = t
                .pod
                .status
                .as_ref()
                .and_then(|s| s.start_time.as_ref())
                .map_or_else(|| now.clone(), |s| rfc3339(s.0.as_millisecond()));
            out.push(Write::Status {
                kind: Kind::Pod,
                namespace: t.info.namespace.clone(),
                name: t.info.name.clone(),
                status: finished_status(&started, &now, code),
            });
            self.sent.insert(k, ("finish", now_ms));
        }
        pending.sort();
        self.last_pending = pending.len();
        for (_, k) in pending {
            if self.recently_sent(&k, "bind", now_ms) {
                continue;
            }
            if let Some(w) = self.schedule(&k, now_ms, &now) {
                out.push(w);
            }
        }
        out
    }

    /// Places one pending pod, or reports it Unschedulable.
    fn schedule(&mut self, k: &str, now_ms: i64, now: &str) -> Option<Write> {
        let t = self.pods.get(k)?;
        let empty = BTreeMap::new();
        let annotations = t.pod.metadata.annotations.as_ref().unwrap_or(&empty);
        let spec = t.pod.spec.clone().unwrap_or_default();
        let shape = match k8s::shape_from_pod_spec(&spec, annotations) {
            Ok(s) => s,
            Err(e) => return self.unschedulable(k, &format!("invalid pod: {e}"), now_ms, now),
        };
        if self.failed_shapes.get(&shape) == Some(&self.room) {
            return self.unschedulable(k, &self.last_message(k), now_ms, now);
        }
        let (choice, misfit, nodes) = self.find_node(&shape);
        let Some((node, devices)) = choice else {
            self.failed_shapes.insert(shape, self.room);
            let msg = format!(
                "0/{nodes} nodes are available: {} node(s) didn't match Pod's node affinity/selector or had untolerated taints, {} node(s) were unschedulable or not ready, {} node(s) had insufficient resources or GPUs.",
                misfit.claim, misfit.not_ready, misfit.resources
            );
            return self.unschedulable(k, &msg, now_ms, now);
        };
        self.bind(k, &shape, &spec, node, devices, now_ms)
    }

    fn last_message(&self, k: &str) -> String {
        self.pods
            .get(k)
            .and_then(|t| t.pod.status.as_ref())
            .and_then(|s| s.conditions.as_ref())
            .into_iter()
            .flatten()
            .find(|c| c.type_ == "PodScheduled")
            .and_then(|c| c.message.clone())
            .unwrap_or_else(|| "0 nodes are available".into())
    }

    /// The node (fewest replicas of this shape left, then name: pack) and
    /// the device indices, with the misfit counts and the node count.
    #[allow(clippy::type_complexity)]
    fn find_node(&self, shape: &ReplicaShape) -> (Option<(String, Vec<usize>)>, Misfit, usize) {
        let allowed = self.snapshot.models_allowed(shape);
        let model_ok = |m: u32| allowed.get(m as usize).copied().unwrap_or(false);
        let mut misfit = Misfit::default();
        let mut best: Option<(u64, &str, Vec<usize>)> = None;
        let mut nodes = 0;
        for v in self.snapshot.node_views() {
            nodes += 1;
            if !shape.claim.matches(v.name, v.labels, v.taints) {
                misfit.claim += 1;
                continue;
            }
            if !v.schedulable {
                misfit.not_ready += 1;
                continue;
            }
            let left = node_max_replicas(v.allocatable, v.requested, v.devices, shape, model_ok);
            if left == 0 {
                misfit.resources += 1;
                continue;
            }
            let devices = match &shape.gpu {
                Some(g) => match fit::choose_devices(v.devices, g, model_ok) {
                    Some(d) => d,
                    None => {
                        misfit.resources += 1;
                        continue;
                    }
                },
                None => Vec::new(),
            };
            if best
                .as_ref()
                .is_none_or(|(l, n, _)| (left, v.name) < (*l, *n))
            {
                best = Some((left, v.name, devices));
            }
        }
        (best.map(|(_, n, d)| (n.to_string(), d)), misfit, nodes)
    }

    fn bind(
        &mut self,
        k: &str,
        shape: &ReplicaShape,
        spec: &k8s_openapi::api::core::v1::PodSpec,
        node: String,
        devices: Vec<usize>,
        now_ms: i64,
    ) -> Option<Write> {
        let uuids = self.node_gpus.get(&node)?;
        let mut per_device: Vec<ContainerDevice> = Vec::with_capacity(devices.len());
        if let Some(g) = &shape.gpu {
            let views = self.snapshot.node_views().find(|v| v.name == node)?;
            for i in &devices {
                let d = views.devices.get(*i)?;
                per_device.push(ContainerDevice {
                    uuid: uuids.get(*i)?.clone(),
                    vendor: NVIDIA_VENDOR.into(),
                    mem_mib: g.memory.of_device(d.total_mem),
                    cores: g.cores,
                });
            }
        }
        // Split the devices over the containers that ask for GPUs, in order.
        let mut containers: Vec<Vec<ContainerDevice>> = Vec::with_capacity(spec.containers.len());
        let mut rest = per_device.iter().cloned();
        for c in &spec.containers {
            let want = c
                .resources
                .as_ref()
                .and_then(|r| {
                    r.limits
                        .as_ref()
                        .and_then(|l| l.get(gpu::RESOURCE_GPU))
                        .or_else(|| r.requests.as_ref().and_then(|l| l.get(gpu::RESOURCE_GPU)))
                })
                .and_then(|q| q.0.parse::<usize>().ok())
                .unwrap_or(0);
            containers.push(rest.by_ref().take(want).collect());
        }
        let gpus: Vec<GpuUse> = per_device
            .iter()
            .map(|d| GpuUse {
                uuid: d.uuid.clone(),
                memory_mib: d.mem_mib,
                cores: d.cores,
            })
            .collect();
        let t = self.pods.get_mut(k)?;
        let mut info = t.info.clone();
        info.node = Some(node.clone());
        info.gpus = gpus.clone();
        info.unschedulable_since_ms = None;
        t.info = info.clone();
        t.bound_ms = Some(now_ms);
        let (namespace, name) = (info.namespace.clone(), info.name.clone());
        self.snapshot.apply_pod(info);
        self.reserved.insert(
            k.to_string(),
            Reservation {
                node: node.clone(),
                gpus,
            },
        );
        self.sent.insert(k.to_string(), ("bind", now_ms));
        let mut annotations = serde_json::Map::new();
        if !per_device.is_empty() {
            annotations.insert(
                POD_DEVICES_ALLOCATED.into(),
                json!(gpu::encode_pod_devices(&containers)),
            );
            annotations.insert(POD_VGPU_NODE.into(), json!(node));
        }
        Some(Write::Merge {
            kind: Kind::Pod,
            namespace,
            name,
            patch: json!({"metadata": {"annotations": annotations}, "spec": {"nodeName": node}}),
        })
    }

    fn unschedulable(&mut self, k: &str, message: &str, now_ms: i64, now: &str) -> Option<Write> {
        let t = self.pods.get(k)?;
        let cond = t
            .pod
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .into_iter()
            .flatten()
            .find(|c| c.type_ == "PodScheduled" && c.status == "False");
        let since = match cond {
            Some(c) if c.message.as_deref() == Some(message) => return None,
            Some(c) => c
                .last_transition_time
                .as_ref()
                .map_or_else(|| now.to_string(), |t| rfc3339(t.0.as_millisecond())),
            None => now.to_string(),
        };
        if self.recently_sent(k, "unschedulable", now_ms) {
            return None;
        }
        self.sent.insert(k.to_string(), ("unschedulable", now_ms));
        Some(Write::Status {
            kind: Kind::Pod,
            namespace: t.info.namespace.clone(),
            name: t.info.name.clone(),
            status: unschedulable_status(message, &since),
        })
    }
}

fn annotation<'a>(pod: &'a Pod, name: &str) -> Option<&'a str> {
    pod.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(name))
        .map(String::as_str)
}

fn owned_by_job(pod: &Pod) -> bool {
    pod.metadata
        .owner_references
        .iter()
        .flatten()
        .any(|r| r.controller == Some(true) && r.kind == "Job")
}

/// The value of a status write, for tests and logs.
pub fn status_of(w: &Write) -> Option<&Value> {
    match w {
        Write::Status { status, .. } => Some(status),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, slots: u32) -> Node {
        let devices = [gpu::NodeDevice {
            id: format!("{name}-GPU-0"),
            count: slots,
            devmem: 16384,
            devcore: 100,
            model: "NVIDIA-T4".into(),
            health: true,
            ..Default::default()
        }];
        serde_json::from_value(json!({
            "metadata": {"name": name, "annotations": {
                gpu::NODE_NVIDIA_REGISTER: gpu::encode_node_devices(&devices)}},
            "status": {
                "allocatable": {"cpu": "8", "memory": "16Gi", "pods": "10"},
                "conditions": [{"type": "Ready", "status": "True"}]},
        }))
        .unwrap()
    }

    fn pod(name: &str, created: &str) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "default", "creationTimestamp": created},
            "spec": {"containers": [{"name": "c",
                "resources": {"limits": {"nvidia.com/gpu": "1"}}}]},
        }))
        .unwrap()
    }

    fn binds(writes: &[Write]) -> Vec<(String, Value)> {
        writes
            .iter()
            .filter_map(|w| match w {
                Write::Merge { name, patch, .. } => Some((name.clone(), patch.clone())),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn oldest_pod_gets_the_gpu_the_other_waits_then_binds() {
        let mut b = Binder::new(Timing::default());
        b.apply_node(&node("n1", 1)).unwrap();
        b.apply_pod(&pod("late", "2025-01-01T00:00:02Z")).unwrap();
        b.apply_pod(&pod("early", "2025-01-01T00:00:01Z")).unwrap();
        let writes = b.decide(1_000_000);
        let bound = binds(&writes);
        assert_eq!(bound.len(), 1);
        assert_eq!(bound[0].0, "early");
        assert_eq!(bound[0].1["spec"]["nodeName"], "n1");
        let alloc = bound[0].1["metadata"]["annotations"][POD_DEVICES_ALLOCATED]
            .as_str()
            .unwrap();
        let parsed = gpu::parse_pod_devices(alloc).unwrap();
        assert_eq!(parsed[0][0].uuid, "n1-GPU-0");
        assert_eq!(parsed[0][0].mem_mib, 16384);
        let late = writes
            .iter()
            .find(|w| matches!(w, Write::Status { name, .. } if name == "late"))
            .and_then(status_of)
            .unwrap();
        assert_eq!(late["conditions"][0]["reason"], "Unschedulable");
        assert!(
            late["conditions"][0]["message"]
                .as_str()
                .unwrap()
                .starts_with("0/1 nodes are available")
        );
        // The same pass again sends nothing new (the writes are in flight).
        assert!(binds(&b.decide(1_000_100)).is_empty());
        // The GPU is freed: the waiting pod binds.
        b.delete_pod("default", "early");
        let bound = binds(&b.decide(1_000_200));
        assert_eq!(bound.len(), 1);
        assert_eq!(bound[0].0, "late");
    }

    #[test]
    fn bound_pod_runs_after_the_start_delay() {
        let mut b = Binder::new(Timing {
            start_delay_ms: 500,
            ..Timing::default()
        });
        b.apply_node(&node("n1", 4)).unwrap();
        let mut p = pod("p", "2025-01-01T00:00:01Z");
        b.apply_pod(&p).unwrap();
        assert_eq!(binds(&b.decide(1_000_000)).len(), 1);
        p.spec.as_mut().unwrap().node_name = Some("n1".into());
        b.apply_pod(&p).unwrap();
        assert!(b.decide(1_000_100).is_empty());
        let writes = b.decide(1_000_600);
        assert_eq!(writes.len(), 1);
        assert_eq!(status_of(&writes[0]).unwrap()["phase"], "Running");
    }

    #[test]
    fn a_failed_bind_is_retried() {
        let mut b = Binder::new(Timing::default());
        b.apply_node(&node("n1", 1)).unwrap();
        b.apply_pod(&pod("p", "2025-01-01T00:00:01Z")).unwrap();
        assert_eq!(binds(&b.decide(1_000_000)).len(), 1);
        b.write_failed("default", "p");
        assert_eq!(binds(&b.decide(1_000_010)).len(), 1);
    }
}
