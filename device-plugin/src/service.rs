//! The DevicePlugin gRPC service kubelet calls on the plugin's socket. It reads
//! the current GPUs from a watch channel and validates every request at the
//! edge: unknown or malformed device IDs answer InvalidArgument, unhealthy ones
//! FailedPrecondition.

use std::pin::Pin;
use std::sync::Arc;

use crate::pods::{self, PodAllocations};
use futures::Stream;
use hami_api::gpu::{ContainerDevice, NVIDIA_VENDOR, POD_DEVICES_ALLOCATED, encode_pod_devices};
use hami_proto::v1beta1 as pb;
use tokio::sync::watch;
use tonic::{Request, Response, Status};

use crate::backend::GpuDevice;
use crate::metrics::{Metrics, ResultLabels, RpcResult};
use crate::slicing::{self, Policy, SliceConfig, SliceError};

/// Grants from the devices HAMi's scheduler assigned to one container, checked
/// against the node's GPUs and the number of devices kubelet asked for.
fn planned_grants(
    pod: &str,
    index: usize,
    devices: &[ContainerDevice],
    requested: usize,
    gpus: &[GpuDevice],
) -> Result<Vec<slicing::DeviceGrant>, Status> {
    if devices.len() != requested {
        return Err(Status::failed_precondition(format!(
            "pod {pod} container {index}: the scheduler assigned {} devices, kubelet asked for {requested}",
            devices.len()
        )));
    }
    devices
        .iter()
        .map(|d| match gpus.iter().find(|g| g.uuid == d.uuid) {
            None => Err(Status::invalid_argument(format!(
                "pod {pod} container {index}: assigned device {:?} is not on this node",
                d.uuid
            ))),
            Some(g) if !g.healthy => Err(Status::failed_precondition(format!(
                "pod {pod} container {index}: assigned device {:?} is unhealthy",
                d.uuid
            ))),
            Some(_) => Ok(slicing::DeviceGrant {
                uuid: d.uuid.clone(),
                memory_mib: d.mem_mib,
                cores: d.cores.min(100),
            }),
        })
        .collect()
}

/// Kubelet's health strings.
pub const HEALTHY: &str = "Healthy";
pub const UNHEALTHY: &str = "Unhealthy";

/// The service's shared state; one per plugin, shared by every server restart.
pub struct PluginState {
    pub cfg: SliceConfig,
    pub policy: Policy,
    pub gpus: watch::Receiver<Vec<GpuDevice>>,
    pub metrics: Arc<Metrics>,
    /// HAMi's scheduler hand-off; when set and a pod is allocating on this
    /// node, its annotation decides each container's memory and cores.
    pub pods: Option<Arc<dyn PodAllocations>>,
}

/// One server's view of the plugin: the state plus the signal that ends its
/// ListAndWatch streams when the server stops (a stream never ends by itself).
#[derive(Clone)]
pub struct DevicePluginService {
    state: Arc<PluginState>,
    stop: watch::Receiver<bool>,
}

impl DevicePluginService {
    pub fn new(state: Arc<PluginState>, stop: watch::Receiver<bool>) -> Self {
        Self { state, stop }
    }

    pub fn options() -> pb::DevicePluginOptions {
        pb::DevicePluginOptions {
            pre_start_required: false,
            get_preferred_allocation_available: true,
        }
    }
}

/// The kubelet device list for the given GPUs.
pub fn kubelet_devices(gpus: &[GpuDevice], cfg: &SliceConfig) -> Vec<pb::Device> {
    slicing::plugin_devices(gpus, cfg)
        .into_iter()
        .map(|d| pb::Device {
            id: d.id,
            health: if d.healthy { HEALTHY } else { UNHEALTHY }.to_string(),
            topology: d.numa.map(|id| pb::TopologyInfo {
                nodes: vec![pb::NumaNode { id }],
            }),
        })
        .collect()
}

fn status(err: SliceError) -> Status {
    match err {
        SliceError::Unhealthy { .. } => Status::failed_precondition(err.to_string()),
        _ => Status::invalid_argument(err.to_string()),
    }
}

type DeviceStream = Pin<Box<dyn Stream<Item = Result<pb::ListAndWatchResponse, Status>> + Send>>;

#[tonic::async_trait]
impl pb::device_plugin_server::DevicePlugin for DevicePluginService {
    async fn get_device_plugin_options(
        &self,
        _request: Request<pb::Empty>,
    ) -> Result<Response<pb::DevicePluginOptions>, Status> {
        Ok(Response::new(Self::options()))
    }

    type ListAndWatchStream = DeviceStream;

    async fn list_and_watch(
        &self,
        _request: Request<pb::Empty>,
    ) -> Result<Response<Self::ListAndWatchStream>, Status> {
        let gpus = self.state.gpus.clone();
        let stop = self.stop.clone();
        let cfg = self.state.cfg.clone();
        // Sends the list at once, then again whenever the kubelet view of the
        // devices changes (health included); ends when the server stops.
        let start = (gpus, stop, None::<Vec<pb::Device>>);
        let stream = futures::stream::unfold(start, move |(mut gpus, mut stop, last)| {
            let cfg = cfg.clone();
            async move {
                loop {
                    if last.is_some() {
                        tokio::select! {
                            changed = gpus.changed() => if changed.is_err() { return None },
                            stopped = stop.changed() => if stopped.is_err() { return None },
                        }
                    }
                    if *stop.borrow() {
                        return None;
                    }
                    let devices = kubelet_devices(&gpus.borrow_and_update(), &cfg);
                    if last.as_ref() != Some(&devices) {
                        let response = pb::ListAndWatchResponse {
                            devices: devices.clone(),
                        };
                        return Some((Ok(response), (gpus, stop, Some(devices))));
                    }
                }
            }
        });
        Ok(Response::new(Box::pin(stream)))
    }

    async fn get_preferred_allocation(
        &self,
        request: Request<pb::PreferredAllocationRequest>,
    ) -> Result<Response<pb::PreferredAllocationResponse>, Status> {
        let gpus = self.state.gpus.borrow().clone();
        let mut container_responses = Vec::new();
        for req in request.into_inner().container_requests {
            let ids = slicing::preferred_allocation(
                &req.available_device_i_ds,
                &req.must_include_device_i_ds,
                req.allocation_size,
                self.state.policy,
                &gpus,
                &self.state.cfg,
            )
            .map_err(status)?;
            container_responses.push(pb::ContainerPreferredAllocationResponse { device_i_ds: ids });
        }
        Ok(Response::new(pb::PreferredAllocationResponse {
            container_responses,
        }))
    }

    async fn allocate(
        &self,
        request: Request<pb::AllocateRequest>,
    ) -> Result<Response<pb::AllocateResponse>, Status> {
        let request = request.into_inner();
        let result = match self.state.pods.clone() {
            Some(pods) => self.allocate_from_pod(pods.as_ref(), request).await,
            None => self.allocate_all(request, None),
        };
        let labels = ResultLabels {
            result: if result.is_ok() {
                RpcResult::Ok
            } else {
                RpcResult::Error
            },
        };
        self.state.metrics.allocations.get_or_create(&labels).inc();
        if let Err(err) = &result {
            tracing::warn!(error = %err.message(), "Allocate refused");
        }
        result.map(Response::new)
    }

    async fn pre_start_container(
        &self,
        _request: Request<pb::PreStartContainerRequest>,
    ) -> Result<Response<pb::PreStartContainerResponse>, Status> {
        Ok(Response::new(pb::PreStartContainerResponse {}))
    }
}

impl DevicePluginService {
    /// Allocates from the pod HAMi's scheduler marked as allocating on this
    /// node; without one, the share slots decide. The pod's annotations are
    /// written once, after the whole request is decided.
    async fn allocate_from_pod(
        &self,
        pods: &dyn PodAllocations,
        request: pb::AllocateRequest,
    ) -> Result<pb::AllocateResponse, Status> {
        let pending = pods
            .pending()
            .await
            .map_err(|e| Status::unavailable(e.to_string()))?;
        let Some(pod) = pending else {
            return self.allocate_all(request, None);
        };
        let mut remaining = None;
        let result = pods::to_allocate(&pod)
            .and_then(|mut list| {
                let mut planned = Vec::with_capacity(request.container_requests.len());
                for _ in &request.container_requests {
                    let step = pods::next_container(&pod.key(), list)?;
                    planned.push(step.devices);
                    list = step.remaining;
                }
                remaining = Some(list);
                Ok(planned)
            })
            .map_err(|e| Status::failed_precondition(e.to_string()))
            .and_then(|planned| self.allocate_all(request, Some((&pod.key(), &planned))));
        let remaining = if result.is_ok() { remaining } else { None };
        let annotations = pods::outcome(remaining.as_deref());
        pods.finish(&pod, annotations)
            .await
            .map_err(|e| Status::unavailable(e.to_string()))?;
        result
    }

    /// Validates every container first and answers nothing unless all pass,
    /// so a bad request allocates nothing. `planned` carries the devices
    /// HAMi's scheduler chose per container, when it chose.
    fn allocate_all(
        &self,
        request: pb::AllocateRequest,
        planned: Option<(&str, &[Vec<ContainerDevice>])>,
    ) -> Result<pb::AllocateResponse, Status> {
        let gpus = self.state.gpus.borrow().clone();
        let cfg = &self.state.cfg;
        let mut responses = Vec::with_capacity(request.container_requests.len());
        let mut slots: Vec<(String, String)> = Vec::new();
        for (index, container) in request.container_requests.iter().enumerate() {
            let mut grants = slicing::grants(&container.devices_ids, &gpus, cfg).map_err(|e| {
                Status::new(status(e.clone()).code(), format!("container {index}: {e}"))
            })?;
            if let Some((pod, planned)) = planned {
                let devices = planned.get(index).map_or(&[][..], Vec::as_slice);
                grants = planned_grants(pod, index, devices, container.devices_ids.len(), &gpus)?;
            }
            for id in &container.devices_ids {
                if let Ok((gpu, _)) = slicing::resolve(id, &gpus, cfg) {
                    slots.push((gpu.uuid.clone(), id.clone()));
                }
            }
            let record: Vec<ContainerDevice> = grants
                .iter()
                .map(|g| ContainerDevice {
                    uuid: g.uuid.clone(),
                    vendor: NVIDIA_VENDOR.to_string(),
                    mem_mib: g.memory_mib,
                    cores: g.cores,
                })
                .collect();
            let envs = slicing::container_env(&grants, cfg).into_iter().collect();
            // The container's devices in HAMi's pod annotation form, handed to the
            // runtime as a container annotation so node tooling can see the grant.
            let annotations = [(
                POD_DEVICES_ALLOCATED.to_string(),
                encode_pod_devices(&[record]),
            )]
            .into_iter()
            .collect();
            responses.push(pb::ContainerAllocateResponse {
                envs,
                annotations,
                ..Default::default()
            });
        }
        self.state
            .metrics
            .record_allocation(slots.iter().map(|(u, i)| (u.as_str(), i.as_str())));
        Ok(pb::AllocateResponse {
            container_responses: responses,
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use std::collections::BTreeMap;

    use super::*;
    use crate::pods::{
        BIND_PHASE, PHASE_ALLOCATING, PHASE_FAILED, PHASE_SUCCESS, PendingPod, PodError,
    };
    use hami_api::gpu::POD_DEVICES_TO_ALLOCATE;
    use pb::device_plugin_server::DevicePlugin;
    use prometheus_client::registry::Registry;

    /// One pending pod in memory; records what the plugin writes back.
    struct FakePods {
        pod: parking_lot::Mutex<Option<PendingPod>>,
        written: parking_lot::Mutex<Vec<BTreeMap<String, String>>>,
    }

    #[async_trait::async_trait]
    impl PodAllocations for FakePods {
        async fn pending(&self) -> Result<Option<PendingPod>, PodError> {
            Ok(self.pod.lock().clone())
        }
        async fn finish(
            &self,
            pod: &PendingPod,
            annotations: BTreeMap<String, String>,
        ) -> Result<(), PodError> {
            let mut current = self.pod.lock();
            if let Some(p) = current.as_mut() {
                assert_eq!(p.name, pod.name);
                p.annotations.extend(annotations.clone());
            }
            self.written.lock().push(annotations);
            Ok(())
        }
    }

    fn service(pods: Option<Arc<dyn PodAllocations>>) -> DevicePluginService {
        let gpu = |uuid: &str| GpuDevice {
            uuid: uuid.into(),
            model: "A100".into(),
            memory_mib: 40000,
            numa: None,
            healthy: true,
            pci_bus_id: None,
            compute_capability: None,
        };
        let (_tx, gpus) = watch::channel(vec![gpu("GPU-a"), gpu("GPU-b")]);
        let (_stop_tx, stop) = watch::channel(false);
        let state = PluginState {
            cfg: SliceConfig::default(),
            policy: Policy::Pack,
            gpus,
            metrics: Arc::new(Metrics::register(&mut Registry::default())),
            pods,
        };
        DevicePluginService::new(Arc::new(state), stop)
    }

    fn request(containers: &[&[&str]]) -> Request<pb::AllocateRequest> {
        Request::new(pb::AllocateRequest {
            container_requests: containers
                .iter()
                .map(|ids| pb::ContainerAllocateRequest {
                    devices_ids: ids.iter().map(|s| s.to_string()).collect(),
                })
                .collect(),
        })
    }

    fn pending(to_allocate: &str) -> Arc<FakePods> {
        let annotations = BTreeMap::from([
            (BIND_PHASE.to_string(), PHASE_ALLOCATING.to_string()),
            (POD_DEVICES_TO_ALLOCATE.to_string(), to_allocate.to_string()),
        ]);
        Arc::new(FakePods {
            pod: parking_lot::Mutex::new(Some(PendingPod {
                namespace: "ml".into(),
                name: "train-0".into(),
                annotations,
            })),
            written: parking_lot::Mutex::new(Vec::new()),
        })
    }

    #[tokio::test]
    async fn hami_hand_off_sets_limits_from_the_pod_and_marks_it_done() {
        let pods = pending("GPU-b,NVIDIA,20000,30:;GPU-a,NVIDIA,5000,0:;");
        let svc = service(Some(pods.clone()));
        // First container: the scheduler's 20000 MiB / 30 % win over the slot arithmetic.
        let resp = svc
            .allocate(request(&[&["GPU-b::7"]]))
            .await
            .unwrap()
            .into_inner();
        let env = &resp.container_responses[0].envs;
        assert_eq!(env["NVIDIA_VISIBLE_DEVICES"], "GPU-b");
        assert_eq!(env["CUDA_DEVICE_MEMORY_LIMIT_0"], "20000m");
        assert_eq!(env["CUDA_DEVICE_SM_LIMIT"], "30");
        let first = pods.written.lock()[0].clone();
        assert_eq!(first[POD_DEVICES_TO_ALLOCATE], ";GPU-a,NVIDIA,5000,0:;");
        assert!(!first.contains_key(BIND_PHASE));
        // Second container empties the list: the bind succeeded.
        let resp = svc
            .allocate(request(&[&["GPU-a::1"]]))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            resp.container_responses[0].envs["CUDA_DEVICE_MEMORY_LIMIT_0"],
            "5000m"
        );
        assert_eq!(pods.written.lock()[1][BIND_PHASE], PHASE_SUCCESS);
    }

    #[tokio::test]
    async fn hami_hand_off_fails_the_pod_when_counts_disagree() {
        let pods = pending("GPU-b,NVIDIA,20000,30:;");
        let svc = service(Some(pods.clone()));
        let err = svc
            .allocate(request(&[&["GPU-a::0", "GPU-b::0"]]))
            .await
            .unwrap_err();
        assert_eq!(err.code(), tonic::Code::FailedPrecondition);
        assert!(
            err.message()
                .contains("assigned 1 devices, kubelet asked for 2"),
            "{}",
            err.message()
        );
        assert_eq!(pods.written.lock()[0][BIND_PHASE], PHASE_FAILED);
    }

    #[tokio::test]
    async fn without_a_pending_pod_share_slots_decide() {
        let pods = Arc::new(FakePods {
            pod: parking_lot::Mutex::new(None),
            written: parking_lot::Mutex::new(Vec::new()),
        });
        let svc = service(Some(pods.clone()));
        let resp = svc
            .allocate(request(&[&["GPU-a::0"]]))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            resp.container_responses[0].envs["CUDA_DEVICE_MEMORY_LIMIT_0"],
            "4000m"
        );
        assert!(pods.written.lock().is_empty());
    }
}
