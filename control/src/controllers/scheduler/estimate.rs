//! Accurate estimates from each cluster's estimator over gRPC: hami's
//! `BatchEstimator` (every shape of a pass for one cluster in one call), or
//! Karmada's `MaxAvailableReplicas` one shape at a time where the batch
//! method is not served. Calls time out; a failing endpoint is left alone for
//! a while; answers are cached briefly, keyed by (cluster, shape, the
//! cluster's resourceVersion), so a cluster that reports new capacity is
//! asked again. A cluster without an answer gets `None`, and the placement
//! core falls back to the general estimate from its resource summary.
//! Endpoints are dialed as [`EstimatorDial`] says (plain gRPC or TLS).

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use hami_api::binding::ReplicaRequirements;
use hami_api::common::{NOUSE_GPU_TYPE, USE_GPU_TYPE};
use hami_proto::github::com::karmada_io::karmada::pkg::estimator::{pb, service};
use hami_proto::hami::estimator::v1 as batch;
use hami_proto::k8s::io::api::core::v1 as corepb;
use hami_proto::k8s::io::apimachinery::pkg::api::resource as qpb;
use parking_lot::Mutex;
use prost::Message;
use tokio::time::Instant;
use tonic::transport::Channel;

use super::metrics::SchedulerMetrics;
use crate::controllers::estimator_dial::{DialError, EstimatorDial};

/// Settings of estimator calls.
#[derive(Clone, Copy, Debug)]
pub struct EstimateConfig {
    /// Longest wait for one call.
    pub timeout: Duration,
    /// How long an answer stays valid (the revision key also invalidates it).
    pub ttl: Duration,
    /// How long a failing endpoint is not asked again.
    pub down_for: Duration,
}

impl Default for EstimateConfig {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(1),
            ttl: Duration::from_secs(2),
            down_for: Duration::from_secs(5),
        }
    }
}

/// One shape to estimate in one cluster.
#[derive(Clone, Debug)]
pub struct Query {
    pub cluster: String,
    pub endpoint: String,
    /// The Cluster object's resourceVersion (cache key).
    pub revision: u64,
    /// A stable text of the requirements (cache key).
    pub shape_key: String,
    pub requirements: ReplicaRequirements,
}

type CacheKey = (String, String, u64);

/// Estimator clients and the answer cache.
pub struct Estimators {
    config: EstimateConfig,
    dial: EstimatorDial,
    metrics: SchedulerMetrics,
    channels: Mutex<HashMap<String, Channel>>,
    cache: Mutex<HashMap<CacheKey, (i32, Instant)>>,
    down_until: Mutex<HashMap<String, Instant>>,
    /// Endpoints that answered Unimplemented to the batch method.
    no_batch: Mutex<std::collections::HashSet<String>>,
}

impl Estimators {
    pub fn new(config: EstimateConfig, metrics: SchedulerMetrics) -> Self {
        Self {
            config,
            dial: EstimatorDial::plain(),
            metrics,
            channels: Mutex::default(),
            cache: Mutex::default(),
            down_until: Mutex::default(),
            no_batch: Mutex::default(),
        }
    }

    /// Dials the estimators as `dial` says (default: plain gRPC).
    pub fn with_dial(mut self, dial: EstimatorDial) -> Self {
        self.dial = dial;
        self
    }

    /// A cached answer, if still fresh.
    pub fn cached(&self, cluster: &str, shape_key: &str, revision: u64) -> Option<i32> {
        let key = (cluster.to_string(), shape_key.to_string(), revision);
        let cache = self.cache.lock();
        cache
            .get(&key)
            .filter(|(_, at)| at.elapsed() < self.config.ttl)
            .map(|(v, _)| *v)
    }

    fn channel(&self, endpoint: &str) -> Result<Channel, DialError> {
        if let Some(c) = self.channels.lock().get(endpoint) {
            return Ok(c.clone());
        }
        let channel = self.dial.connect_lazy(endpoint, self.config.timeout)?;
        self.channels
            .lock()
            .insert(endpoint.to_string(), channel.clone());
        Ok(channel)
    }

    /// Asks every uncached query, one concurrent call per cluster, and
    /// caches the answers. Failures leave no answer (the caller falls back).
    pub async fn fill(&self, queries: Vec<Query>) {
        let now = Instant::now();
        self.cache
            .lock()
            .retain(|_, (_, at)| now.duration_since(*at) < self.config.ttl);
        let mut by_cluster: BTreeMap<(String, String), Vec<Query>> = BTreeMap::new();
        for q in queries {
            if self.cached(&q.cluster, &q.shape_key, q.revision).is_some() {
                continue;
            }
            let group = by_cluster
                .entry((q.cluster.clone(), q.endpoint.clone()))
                .or_default();
            if !group.iter().any(|g| g.shape_key == q.shape_key) {
                group.push(q);
            }
        }
        let calls = by_cluster
            .into_iter()
            .filter(|((_, endpoint), _)| {
                self.down_until
                    .lock()
                    .get(endpoint)
                    .is_none_or(|until| *until <= now)
            })
            .map(|((cluster, endpoint), qs)| self.ask(cluster, endpoint, qs));
        futures::future::join_all(calls).await;
    }

    async fn ask(&self, cluster: String, endpoint: String, qs: Vec<Query>) {
        let channel = match self.channel(&endpoint) {
            Ok(channel) => channel,
            Err(e) => {
                tracing::warn!(cluster, error = %e, "estimator not dialed; using the general estimate");
                self.metrics.estimator_errors.inc();
                self.mark_down(&endpoint);
                return;
            }
        };
        let start = Instant::now();
        let answers = if self.no_batch.lock().contains(&endpoint) {
            self.ask_one_by_one(channel, &cluster, &qs).await
        } else {
            match self.ask_batch(channel.clone(), &cluster, &qs).await {
                Err(status) if status.code() == tonic::Code::Unimplemented => {
                    self.no_batch.lock().insert(endpoint.clone());
                    self.ask_one_by_one(channel, &cluster, &qs).await
                }
                other => other,
            }
        };
        self.metrics
            .estimator_seconds
            .observe(start.elapsed().as_secs_f64());
        match answers {
            Ok(values) if values.len() == qs.len() => {
                let at = Instant::now();
                let mut cache = self.cache.lock();
                for (q, v) in qs.into_iter().zip(values) {
                    cache.insert((q.cluster, q.shape_key, q.revision), (v.max(0), at));
                }
            }
            other => {
                self.metrics.estimator_errors.inc();
                self.mark_down(&endpoint);
                tracing::debug!(
                    cluster,
                    endpoint,
                    error = ?other.err(),
                    "estimator did not answer; using the general estimate"
                );
            }
        }
    }

    fn mark_down(&self, endpoint: &str) {
        self.down_until
            .lock()
            .insert(endpoint.to_string(), Instant::now() + self.config.down_for);
    }

    async fn ask_batch(
        &self,
        channel: Channel,
        cluster: &str,
        qs: &[Query],
    ) -> Result<Vec<i32>, tonic::Status> {
        let mut client = batch::batch_estimator_client::BatchEstimatorClient::new(channel);
        let request = batch::MaxAvailableReplicasBatchRequest {
            cluster: cluster.to_string(),
            shapes: qs
                .iter()
                .map(|q| batch::ShapeRequest {
                    replica_requirements: Some(to_pb(&q.requirements)),
                    annotations: gpu_annotations(&q.requirements),
                })
                .collect(),
        };
        let call = client.max_available_replicas_batch(request);
        match tokio::time::timeout(self.config.timeout, call).await {
            Ok(r) => Ok(r?.into_inner().max_replicas),
            Err(_) => Err(tonic::Status::deadline_exceeded("estimator timeout")),
        }
    }

    async fn ask_one_by_one(
        &self,
        channel: Channel,
        cluster: &str,
        qs: &[Query],
    ) -> Result<Vec<i32>, tonic::Status> {
        let mut client = service::estimator_client::EstimatorClient::new(channel);
        let mut out = Vec::with_capacity(qs.len());
        for q in qs {
            let request = pb::MaxAvailableReplicasRequest {
                cluster: Some(cluster.to_string()),
                replica_requirements: Some(to_pb(&q.requirements)),
                assumed_workloads: Vec::new(),
            };
            let call = client.max_available_replicas(request);
            let answer = match tokio::time::timeout(self.config.timeout, call).await {
                Ok(r) => r?.into_inner().max_replicas.unwrap_or(0),
                Err(_) => return Err(tonic::Status::deadline_exceeded("estimator timeout")),
            };
            out.push(answer);
        }
        Ok(out)
    }
}

/// HAMi's GPU type annotations for the batch method (Karmada's message has
/// no place for them).
fn gpu_annotations(r: &ReplicaRequirements) -> HashMap<String, String> {
    let mut out = HashMap::new();
    if let Some(g) = &r.gpu {
        if !g.use_types.is_empty() {
            out.insert(USE_GPU_TYPE.to_string(), g.use_types.join(","));
        }
        if !g.no_use_types.is_empty() {
            out.insert(NOUSE_GPU_TYPE.to_string(), g.no_use_types.join(","));
        }
    }
    out
}

/// The estimator endpoint a Cluster advertises (its
/// `cluster.hami.io/estimator-endpoint` annotation), if any and not empty.
pub fn estimator_endpoint(cluster: &hami_api::cluster::Cluster) -> Option<String> {
    cluster
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(hami_api::cluster::ESTIMATOR_ENDPOINT_ANNOTATION))
        .filter(|e| !e.is_empty())
        .cloned()
}

/// hami's requirements as Karmada's wire message, in both encodings as
/// Karmada v1.18's writers send them: the embedded Kubernetes messages (read
/// by estimators up to v1.18) and the same values serialized into the bytes
/// fields (read by v1.18+, the only ones v1.19 reads).
pub fn to_pb(r: &ReplicaRequirements) -> pb::ReplicaRequirements {
    let mut out = to_pb_embedded(r);
    out.resource_request_bytes = out
        .resource_request
        .iter()
        .map(|(k, q)| (k.clone(), q.encode_to_vec()))
        .collect();
    if let Some(c) = out.node_claim.as_mut() {
        c.node_affinity_bytes = c.node_affinity.as_ref().map(Message::encode_to_vec);
        c.tolerations_bytes = c.tolerations.iter().map(Message::encode_to_vec).collect();
    }
    out
}

fn to_pb_embedded(r: &ReplicaRequirements) -> pb::ReplicaRequirements {
    let node_claim = r.node_claim.as_ref().map(|c| pb::NodeClaim {
        node_affinity: c
            .hard_node_affinity
            .as_ref()
            .map(|ns| corepb::NodeSelector {
                node_selector_terms: ns
                    .node_selector_terms
                    .iter()
                    .map(|t| corepb::NodeSelectorTerm {
                        match_expressions: t.match_expressions.iter().flatten().map(req).collect(),
                        match_fields: t.match_fields.iter().flatten().map(req).collect(),
                    })
                    .collect(),
            }),
        node_selector: c
            .node_selector
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        tolerations: c
            .tolerations
            .iter()
            .map(|t| corepb::Toleration {
                key: t.key.clone(),
                operator: t.operator.clone(),
                value: t.value.clone(),
                effect: t.effect.clone(),
                toleration_seconds: t.toleration_seconds,
            })
            .collect(),
        ..Default::default()
    });
    pb::ReplicaRequirements {
        node_claim,
        resource_request: r
            .resource_request
            .iter()
            .map(|(k, q)| {
                (
                    k.clone(),
                    qpb::Quantity {
                        string: Some(q.0.clone()),
                    },
                )
            })
            .collect(),
        namespace: r.namespace.clone(),
        priority_class_name: r.priority_class_name.clone(),
        resource_request_bytes: HashMap::new(),
    }
}

fn req(r: &k8s_openapi::api::core::v1::NodeSelectorRequirement) -> corepb::NodeSelectorRequirement {
    corepb::NodeSelectorRequirement {
        key: Some(r.key.clone()),
        operator: Some(r.operator.clone()),
        values: r.values.clone().unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{
        NodeSelector, NodeSelectorRequirement, NodeSelectorTerm, Toleration,
    };

    /// Every Karmada release reads what hami's scheduler sends: the
    /// embedded forms (up to v1.18) and the bytes (v1.18+), the same values.
    #[test]
    fn requirements_go_out_in_both_encodings() {
        let r = ReplicaRequirements {
            node_claim: Some(hami_api::binding::NodeClaim {
                hard_node_affinity: Some(NodeSelector {
                    node_selector_terms: vec![NodeSelectorTerm {
                        match_expressions: Some(vec![NodeSelectorRequirement {
                            key: "zone".into(),
                            operator: "In".into(),
                            values: Some(vec!["a".into()]),
                        }]),
                        match_fields: None,
                    }],
                }),
                node_selector: BTreeMap::new(),
                tolerations: vec![Toleration {
                    key: Some("dedicated".into()),
                    operator: Some("Exists".into()),
                    ..Default::default()
                }],
            }),
            resource_request: [(
                "nvidia.com/gpu".to_string(),
                k8s_openapi::apimachinery::pkg::api::resource::Quantity("2".into()),
            )]
            .into_iter()
            .collect(),
            ..Default::default()
        };
        let pb = to_pb(&r);
        let q = &pb.resource_request["nvidia.com/gpu"];
        assert_eq!(q.string.as_deref(), Some("2"));
        assert_eq!(
            qpb::Quantity::decode(pb.resource_request_bytes["nvidia.com/gpu"].as_slice()).unwrap(),
            *q
        );
        let claim = pb.node_claim.unwrap();
        let affinity = claim.node_affinity.unwrap();
        assert_eq!(
            affinity.node_selector_terms[0].match_expressions[0]
                .key
                .as_deref(),
            Some("zone")
        );
        assert_eq!(
            corepb::NodeSelector::decode(claim.node_affinity_bytes.unwrap().as_slice()).unwrap(),
            affinity
        );
        assert_eq!(claim.tolerations_bytes.len(), 1);
        assert_eq!(
            corepb::Toleration::decode(claim.tolerations_bytes[0].as_slice()).unwrap(),
            claim.tolerations[0]
        );
    }
}
