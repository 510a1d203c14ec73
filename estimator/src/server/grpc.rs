//! The estimator gRPC services over a shared snapshot: Karmada's
//! `Estimator` (MaxAvailableReplicas, MaxAvailableComponentSets,
//! GetUnschedulableReplicas) and hami's `BatchEstimator`. The snapshot lock
//! is held only for the query itself (microseconds through the index;
//! longer for a placement on a scratch copy, which assumed workloads and
//! component sets need), never across an await.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use hami_proto::github::com::karmada_io::karmada::pkg::estimator::{pb, service};
use hami_proto::hami::estimator::v1 as batch;
use parking_lot::Mutex;
use tonic::{Request, Response, Status};

use super::convert::{self, ConvertError};
use super::metrics::EstimatorMetrics;
use crate::model::WorkloadRef;
use crate::shape::ReplicaShape;
use crate::simulate::{DEFAULT_SEARCH_BUDGET, Placeable, Scratch};
use crate::snapshot::Snapshot;

/// Serves one cluster's snapshot.
#[derive(Clone)]
pub struct EstimatorService {
    cluster: String,
    snapshot: Arc<Mutex<Snapshot>>,
    metrics: Arc<EstimatorMetrics>,
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

fn clamp(n: u64) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

fn invalid(e: ConvertError) -> Status {
    Status::invalid_argument(e.to_string())
}

impl EstimatorService {
    /// A service for `cluster` over `snapshot`.
    pub fn new(
        cluster: String,
        snapshot: Arc<Mutex<Snapshot>>,
        metrics: Arc<EstimatorMetrics>,
    ) -> Self {
        metrics.track(&cluster, &snapshot);
        Self {
            cluster,
            snapshot,
            metrics,
        }
    }

    /// The Karmada-compatible service, ready for a tonic router.
    pub fn karmada(self) -> service::estimator_server::EstimatorServer<Self> {
        service::estimator_server::EstimatorServer::new(self)
    }

    /// hami's batch service.
    pub fn batch(self) -> batch::batch_estimator_server::BatchEstimatorServer<Self> {
        batch::batch_estimator_server::BatchEstimatorServer::new(self)
    }

    fn finish<T>(
        &self,
        method: &'static str,
        start: Instant,
        r: Result<T, ConvertError>,
    ) -> Result<Response<T>, Status> {
        self.metrics.observe(
            &self.cluster,
            method,
            r.is_ok(),
            start.elapsed().as_secs_f64(),
        );
        r.map(Response::new).map_err(invalid)
    }
}

/// Places the assumed workloads' replicas first-fit on a scratch copy.
fn deduct<'a>(snap: &'a Snapshot, assumed: &[(ReplicaShape, u64)]) -> Scratch<'a> {
    let mut scratch = Scratch::new(snap);
    for (shape, replicas) in assumed {
        scratch.place_first_fit(&Placeable::new(snap, shape), *replicas);
    }
    scratch
}

impl EstimatorService {
    /// Replicas of `shape` that fit once `assumed` is placed.
    fn replicas_after(
        snap: &mut Snapshot,
        shape: &ReplicaShape,
        assumed: &[(ReplicaShape, u64)],
    ) -> u64 {
        if assumed.is_empty() {
            return snap.max_available_replicas(shape);
        }
        let snap = &*snap;
        deduct(snap, assumed).max_replicas(&Placeable::new(snap, shape))
    }

    /// Complete sets of `components` that fit once `assumed` is placed.
    fn sets_after(
        &self,
        method: &'static str,
        snap: &Snapshot,
        components: &[(ReplicaShape, u64)],
        assumed: &[(ReplicaShape, u64)],
    ) -> u64 {
        let scratch = deduct(snap, assumed);
        let placeable: Vec<(Placeable<'_>, u64)> = components
            .iter()
            .map(|(s, r)| (Placeable::new(snap, s), *r))
            .collect();
        let answer = scratch.max_component_sets(&placeable, DEFAULT_SEARCH_BUDGET);
        if !answer.exact {
            self.metrics
                .sets_search_truncated
                .get_or_create(&super::metrics::MethodLabels {
                    cluster: self.cluster.clone(),
                    method,
                })
                .inc();
        }
        answer.sets
    }
}

#[tonic::async_trait]
impl service::estimator_server::Estimator for EstimatorService {
    async fn max_available_replicas(
        &self,
        request: Request<pb::MaxAvailableReplicasRequest>,
    ) -> Result<Response<pb::MaxAvailableReplicasResponse>, Status> {
        let start = Instant::now();
        let req = request.into_inner();
        let r = convert::check_cluster(&self.cluster, req.cluster.as_deref()).and_then(|()| {
            let shape = convert::shape(req.replica_requirements.as_ref(), &BTreeMap::new())?;
            let assumed = convert::assumed(&req.assumed_workloads)?;
            let n = Self::replicas_after(&mut self.snapshot.lock(), &shape, &assumed);
            Ok(pb::MaxAvailableReplicasResponse {
                max_replicas: Some(clamp(n)),
            })
        });
        self.finish("max_available_replicas", start, r)
    }

    async fn max_available_component_sets(
        &self,
        request: Request<pb::MaxAvailableComponentSetsRequest>,
    ) -> Result<Response<pb::MaxAvailableComponentSetsResponse>, Status> {
        let start = Instant::now();
        let req = request.into_inner();
        let method = "max_available_component_sets";
        let r = convert::check_cluster(&self.cluster, req.cluster.as_deref()).and_then(|()| {
            if req.components.is_empty() {
                return Err(ConvertError::MissingComponents);
            }
            let components = convert::components(&req.components, &BTreeMap::new(), "components")?;
            let assumed = convert::assumed(&req.assumed_workloads)?;
            let n = self.sets_after(method, &self.snapshot.lock(), &components, &assumed);
            Ok(pb::MaxAvailableComponentSetsResponse {
                max_sets: Some(clamp(n)),
            })
        });
        self.finish(method, start, r)
    }

    async fn get_unschedulable_replicas(
        &self,
        request: Request<pb::UnschedulableReplicasRequest>,
    ) -> Result<Response<pb::UnschedulableReplicasResponse>, Status> {
        let start = Instant::now();
        let req = request.into_inner();
        let r = convert::check_cluster(&self.cluster, req.cluster.as_deref()).and_then(|()| {
            let res = req.resource.as_ref().ok_or(ConvertError::MissingResource)?;
            let threshold_ns = req.unschedulable_threshold.unwrap_or(0);
            if threshold_ns < 0 {
                return Err(ConvertError::NegativeThreshold);
            }
            let workload = WorkloadRef {
                kind: res.kind.clone().unwrap_or_default(),
                namespace: res.namespace.clone().unwrap_or_default(),
                name: res.name.clone().unwrap_or_default(),
            };
            let n = self.snapshot.lock().unschedulable_replicas(
                &workload,
                threshold_ns / 1_000_000,
                now_ms(),
            );
            Ok(pb::UnschedulableReplicasResponse {
                unschedulable_replicas: Some(clamp(n)),
            })
        });
        self.finish("get_unschedulable_replicas", start, r)
    }
}

#[tonic::async_trait]
impl batch::batch_estimator_server::BatchEstimator for EstimatorService {
    async fn max_available_replicas_batch(
        &self,
        request: Request<batch::MaxAvailableReplicasBatchRequest>,
    ) -> Result<Response<batch::MaxAvailableReplicasBatchResponse>, Status> {
        let start = Instant::now();
        let req = request.into_inner();
        let r = convert::check_cluster(&self.cluster, Some(&req.cluster)).and_then(|()| {
            // Validate every shape before taking the lock once for all.
            let shapes = req
                .shapes
                .iter()
                .map(|s| {
                    let ann: BTreeMap<String, String> = s
                        .annotations
                        .iter()
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect();
                    convert::shape(s.replica_requirements.as_ref(), &ann)
                })
                .collect::<Result<Vec<_>, _>>()?;
            let mut snap = self.snapshot.lock();
            let max_replicas = shapes
                .iter()
                .map(|s| clamp(snap.max_available_replicas(s)))
                .collect();
            Ok(batch::MaxAvailableReplicasBatchResponse { max_replicas })
        });
        self.finish("max_available_replicas_batch", start, r)
    }

    async fn max_available_component_sets_batch(
        &self,
        request: Request<batch::MaxAvailableComponentSetsBatchRequest>,
    ) -> Result<Response<batch::MaxAvailableComponentSetsBatchResponse>, Status> {
        let start = Instant::now();
        let req = request.into_inner();
        let method = "max_available_component_sets_batch";
        let r = convert::check_cluster(&self.cluster, Some(&req.cluster)).and_then(|()| {
            let workloads = req
                .workloads
                .iter()
                .enumerate()
                .map(|(i, w)| {
                    if w.components.is_empty() {
                        return Err(ConvertError::MissingComponents);
                    }
                    let ann: BTreeMap<String, String> = w
                        .annotations
                        .iter()
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect();
                    convert::components(&w.components, &ann, &format!("workloads[{i}].components"))
                })
                .collect::<Result<Vec<_>, _>>()?;
            let assumed = convert::assumed(&req.assumed_workloads)?;
            let snap = self.snapshot.lock();
            let max_sets = workloads
                .iter()
                .map(|components| clamp(self.sets_after(method, &snap, components, &assumed)))
                .collect();
            Ok(batch::MaxAvailableComponentSetsBatchResponse { max_sets })
        });
        self.finish(method, start, r)
    }
}
