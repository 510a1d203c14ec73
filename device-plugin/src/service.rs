//! The DevicePlugin gRPC service kubelet calls on the plugin's socket. It reads
//! the current GPUs from a watch channel and validates every request at the
//! edge: unknown or malformed device IDs answer InvalidArgument, unhealthy ones
//! FailedPrecondition.

use std::pin::Pin;
use std::sync::Arc;

use futures::Stream;
use hami_api::gpu::{ContainerDevice, NVIDIA_VENDOR, POD_DEVICES_ALLOCATED, encode_pod_devices};
use hami_proto::v1beta1 as pb;
use tokio::sync::watch;
use tonic::{Request, Response, Status};

use crate::backend::GpuDevice;
use crate::metrics::{Metrics, ResultLabels, RpcResult};
use crate::slicing::{self, Policy, SliceConfig, SliceError};

/// Kubelet's health strings.
pub const HEALTHY: &str = "Healthy";
pub const UNHEALTHY: &str = "Unhealthy";

/// The service's shared state; one per plugin, shared by every server restart.
#[derive(Debug)]
pub struct PluginState {
    pub cfg: SliceConfig,
    pub policy: Policy,
    pub gpus: watch::Receiver<Vec<GpuDevice>>,
    pub metrics: Arc<Metrics>,
}

/// One server's view of the plugin: the state plus the signal that ends its
/// ListAndWatch streams when the server stops (a stream never ends by itself).
#[derive(Clone, Debug)]
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
        let result = self.allocate_all(request.into_inner());
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
    /// Validates every container first and answers nothing unless all pass,
    /// so a bad request allocates nothing.
    fn allocate_all(&self, request: pb::AllocateRequest) -> Result<pb::AllocateResponse, Status> {
        let gpus = self.state.gpus.borrow().clone();
        let cfg = &self.state.cfg;
        let mut responses = Vec::with_capacity(request.container_requests.len());
        let mut slots: Vec<(String, String)> = Vec::new();
        for (index, container) in request.container_requests.iter().enumerate() {
            let grants = slicing::grants(&container.devices_ids, &gpus, cfg).map_err(|e| {
                Status::new(status(e.clone()).code(), format!("container {index}: {e}"))
            })?;
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
