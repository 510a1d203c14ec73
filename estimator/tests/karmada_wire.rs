#![cfg(feature = "server")]
#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Karmada's scheduler as each supported release encodes its estimator
//! calls, over a real socket, against hami-estimator on a fragmented GPU
//! fleet. The messages below are written from Karmada's own definitions of
//! each release (karmada-io/karmada `pkg/estimator/pb`), not from hami's
//! superset `.proto`:
//!
//! - v1.17: proto2 `generated.proto`; the Kubernetes messages embedded
//!   (`resourceRequest` = 2, `nodeAffinity` = 1, `tolerations` = 3);
//! - v1.18: proto3 `estimator.proto` that writes both forms (its writers set
//!   the deprecated fields and the bytes fields, readers prefer the bytes);
//! - v1.19: the bytes only (`resourceRequestBytes` = 5, `nodeAffinityBytes`
//!   = 4, `tolerationsBytes` = 5, each a protobuf-serialized
//!   `resource.Quantity`, `corev1.NodeSelector`, `corev1.Toleration`, as
//!   Go's `Marshal()` writes them), plus `assumedWorkloads` and
//!   `MaxAvailableComponentSets`.
//!
//! The Kubernetes messages are k8s-pb's (kube-rs' bindings of Kubernetes'
//! `generated.proto`). Each answer must equal hami's native path (the
//! `BatchEstimator` call hami's own scheduler makes).

mod support;

use std::collections::{BTreeMap, HashMap};

use hami_proto::github::com::karmada_io::karmada::pkg::estimator::pb;
use hami_proto::hami::estimator::v1 as batch;
use k8s_pb::api::core::v1::{NodeSelector, NodeSelectorRequirement, NodeSelectorTerm, Toleration};
use k8s_pb::apimachinery::pkg::api::resource::Quantity;
use prost::Message;
use tonic::codegen::http::uri::PathAndQuery;
use tonic::transport::Channel;

/// Two A100 nodes with partly used GPUs, one tainted H100 node.
const FLEET: &str = r#"
cluster: member-1
nodes:
  - name: a
    labels: {zone: a}
    allocatable: {cpu: "16", memory: 64Gi, pods: "110"}
    gpus:
      - {id: GPU-a0, model: NVIDIA-A100, memoryMiB: 40960, slots: 4}
      - {id: GPU-a1, model: NVIDIA-A100, memoryMiB: 40960, slots: 4}
      - {id: GPU-a2, model: NVIDIA-A100, memoryMiB: 40960, slots: 4}
    pods:
      - name: p0
        requests: {cpu: "1", memory: 1Gi}
        gpus: [{device: GPU-a0, memoryMiB: 30000, cores: 0}]
      - name: p1
        requests: {cpu: "1", memory: 1Gi}
        gpus: [{device: GPU-a2, memoryMiB: 8000, cores: 60}]
  - name: c
    labels: {zone: a}
    allocatable: {cpu: "4", memory: 16Gi, pods: "110"}
    gpus:
      - {id: GPU-c0, model: NVIDIA-A100, memoryMiB: 40960, slots: 4}
  - name: b
    labels: {zone: b}
    taints: [{key: dedicated, value: ml, effect: NoSchedule}]
    allocatable: {cpu: "8", memory: 32Gi, pods: "110"}
    gpus:
      - {id: GPU-b0, model: NVIDIA-H100, memoryMiB: 81920, slots: 4}
      - {id: GPU-b1, model: NVIDIA-H100, memoryMiB: 81920, slots: 4}
"#;

/// Karmada v1.17's messages (proto2, go-to-protobuf).
mod v117 {
    use super::*;

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct NodeClaim {
        #[prost(message, optional, tag = "1")]
        pub node_affinity: Option<NodeSelector>,
        #[prost(btree_map = "string, string", tag = "2")]
        pub node_selector: BTreeMap<String, String>,
        #[prost(message, repeated, tag = "3")]
        pub tolerations: Vec<Toleration>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ReplicaRequirements {
        #[prost(message, optional, tag = "1")]
        pub node_claim: Option<NodeClaim>,
        #[prost(btree_map = "string, message", tag = "2")]
        pub resource_request: BTreeMap<String, Quantity>,
        #[prost(string, optional, tag = "3")]
        pub namespace: Option<String>,
        #[prost(string, optional, tag = "4")]
        pub priority_class_name: Option<String>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct MaxAvailableReplicasRequest {
        #[prost(string, optional, tag = "1")]
        pub cluster: Option<String>,
        #[prost(message, optional, tag = "2")]
        pub replica_requirements: Option<ReplicaRequirements>,
    }
}

/// Karmada v1.18's messages (proto3; both encodings).
mod v118 {
    use super::*;

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct NodeClaim {
        #[prost(message, optional, tag = "1")]
        pub node_affinity: Option<NodeSelector>,
        #[prost(btree_map = "string, string", tag = "2")]
        pub node_selector: BTreeMap<String, String>,
        #[prost(message, repeated, tag = "3")]
        pub tolerations: Vec<Toleration>,
        #[prost(bytes = "vec", tag = "4")]
        pub node_affinity_bytes: Vec<u8>,
        #[prost(bytes = "vec", repeated, tag = "5")]
        pub tolerations_bytes: Vec<Vec<u8>>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ReplicaRequirements {
        #[prost(message, optional, tag = "1")]
        pub node_claim: Option<NodeClaim>,
        #[prost(btree_map = "string, message", tag = "2")]
        pub resource_request: BTreeMap<String, Quantity>,
        #[prost(string, tag = "3")]
        pub namespace: String,
        #[prost(string, tag = "4")]
        pub priority_class_name: String,
        #[prost(btree_map = "string, bytes", tag = "5")]
        pub resource_request_bytes: BTreeMap<String, Vec<u8>>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct MaxAvailableReplicasRequest {
        #[prost(string, tag = "1")]
        pub cluster: String,
        #[prost(message, optional, tag = "2")]
        pub replica_requirements: Option<ReplicaRequirements>,
    }
}

/// Karmada v1.19's messages (proto3; bytes only, old numbers reserved).
mod v119 {
    use super::*;

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct NodeClaim {
        #[prost(btree_map = "string, string", tag = "2")]
        pub node_selector: BTreeMap<String, String>,
        #[prost(bytes = "vec", tag = "4")]
        pub node_affinity_bytes: Vec<u8>,
        #[prost(bytes = "vec", repeated, tag = "5")]
        pub tolerations_bytes: Vec<Vec<u8>>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ReplicaRequirements {
        #[prost(message, optional, tag = "1")]
        pub node_claim: Option<NodeClaim>,
        #[prost(string, tag = "3")]
        pub namespace: String,
        #[prost(string, tag = "4")]
        pub priority_class_name: String,
        #[prost(btree_map = "string, bytes", tag = "5")]
        pub resource_request_bytes: BTreeMap<String, Vec<u8>>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ComponentReplicaRequirements {
        #[prost(message, optional, tag = "1")]
        pub node_claim: Option<NodeClaim>,
        #[prost(string, tag = "3")]
        pub priority_class_name: String,
        #[prost(btree_map = "string, bytes", tag = "4")]
        pub resource_request_bytes: BTreeMap<String, Vec<u8>>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Component {
        #[prost(string, tag = "1")]
        pub name: String,
        #[prost(message, optional, tag = "2")]
        pub replica_requirements: Option<ComponentReplicaRequirements>,
        #[prost(int32, tag = "3")]
        pub replicas: i32,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct AssumedWorkload {
        #[prost(string, tag = "1")]
        pub namespace: String,
        #[prost(message, repeated, tag = "2")]
        pub components: Vec<Component>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct MaxAvailableReplicasRequest {
        #[prost(string, tag = "1")]
        pub cluster: String,
        #[prost(message, optional, tag = "2")]
        pub replica_requirements: Option<ReplicaRequirements>,
        #[prost(message, repeated, tag = "3")]
        pub assumed_workloads: Vec<AssumedWorkload>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct MaxAvailableComponentSetsRequest {
        #[prost(string, tag = "1")]
        pub cluster: String,
        #[prost(message, repeated, tag = "2")]
        pub components: Vec<Component>,
        #[prost(string, tag = "3")]
        pub namespace: String,
        #[prost(message, repeated, tag = "4")]
        pub assumed_workloads: Vec<AssumedWorkload>,
    }
}

#[derive(Clone, PartialEq, prost::Message)]
struct MaxReplicasResponse {
    #[prost(int32, tag = "1")]
    max_replicas: i32,
}

#[derive(Clone, PartialEq, prost::Message)]
struct MaxSetsResponse {
    #[prost(int32, tag = "1")]
    max_sets: i32,
}

const SERVICE: &str = "/github.com.karmada_io.karmada.pkg.estimator.service.Estimator";

async fn serve() -> Channel {
    support::serve(FLEET, 0).await
}

/// One unary call with the given messages, as Karmada's generated client
/// makes it (same path, same codec).
async fn call<Q, R>(ch: &Channel, method: &str, req: Q) -> Result<R, tonic::Status>
where
    Q: Message + Send + Sync + 'static,
    R: Message + Default + Send + Sync + 'static,
{
    let mut grpc = tonic::client::Grpc::new(ch.clone());
    grpc.ready().await.unwrap();
    let path = PathAndQuery::try_from(format!("{SERVICE}/{method}")).unwrap();
    grpc.unary(
        tonic::Request::new(req),
        path,
        tonic_prost::ProstCodec::<Q, R>::default(),
    )
    .await
    .map(tonic::Response::into_inner)
}

/// A shape as the tests state it.
#[derive(Clone)]
struct Shape {
    resources: Vec<(&'static str, &'static str)>,
    selector: Vec<(&'static str, &'static str)>,
    affinity: Option<NodeSelector>,
    tolerations: Vec<Toleration>,
}

fn quantity(s: &str) -> Quantity {
    Quantity {
        string: Some(s.to_owned()),
    }
}

fn zone_in(zone: &str) -> NodeSelector {
    NodeSelector {
        node_selector_terms: vec![NodeSelectorTerm {
            match_expressions: vec![NodeSelectorRequirement {
                key: Some("zone".into()),
                operator: Some("In".into()),
                values: vec![zone.into()],
            }],
            match_fields: vec![],
        }],
    }
}

fn tolerate_dedicated() -> Toleration {
    Toleration {
        key: Some("dedicated".into()),
        operator: Some("Exists".into()),
        ..Default::default()
    }
}

fn shapes() -> Vec<Shape> {
    let plain = |resources| Shape {
        resources,
        selector: vec![],
        affinity: None,
        tolerations: vec![],
    };
    vec![
        plain(vec![
            ("cpu", "1"),
            ("nvidia.com/gpu", "1"),
            ("nvidia.com/gpumem", "10000"),
        ]),
        plain(vec![
            ("nvidia.com/gpu", "2"),
            ("nvidia.com/gpumem-percentage", "50"),
        ]),
        Shape {
            selector: vec![("zone", "a")],
            ..plain(vec![
                ("cpu", "2"),
                ("nvidia.com/gpu", "1"),
                ("nvidia.com/gpucores", "50"),
            ])
        },
        Shape {
            tolerations: vec![tolerate_dedicated()],
            ..plain(vec![
                ("nvidia.com/gpu", "1"),
                ("nvidia.com/gpumem", "40000"),
            ])
        },
        Shape {
            affinity: Some(zone_in("b")),
            tolerations: vec![tolerate_dedicated()],
            ..plain(vec![("memory", "4Gi"), ("nvidia.com/gpu", "2")])
        },
    ]
}

fn v117_request(s: &Shape) -> v117::MaxAvailableReplicasRequest {
    v117::MaxAvailableReplicasRequest {
        cluster: Some("member-1".into()),
        replica_requirements: Some(v117::ReplicaRequirements {
            node_claim: Some(v117::NodeClaim {
                node_affinity: s.affinity.clone(),
                node_selector: s
                    .selector
                    .iter()
                    .map(|(k, v)| ((*k).into(), (*v).into()))
                    .collect(),
                tolerations: s.tolerations.clone(),
            }),
            resource_request: s
                .resources
                .iter()
                .map(|(k, v)| ((*k).into(), quantity(v)))
                .collect(),
            namespace: Some("default".into()),
            priority_class_name: Some(String::new()),
        }),
    }
}

/// A shape's resources, node affinity and tolerations as Go's `Marshal()`
/// writes them into the bytes fields.
type Serialized = (BTreeMap<String, Vec<u8>>, Vec<u8>, Vec<Vec<u8>>);

fn bytes_of(s: &Shape) -> Serialized {
    (
        s.resources
            .iter()
            .map(|(k, v)| ((*k).into(), quantity(v).encode_to_vec()))
            .collect(),
        s.affinity
            .as_ref()
            .map(Message::encode_to_vec)
            .unwrap_or_default(),
        s.tolerations.iter().map(Message::encode_to_vec).collect(),
    )
}

fn v118_request(s: &Shape) -> v118::MaxAvailableReplicasRequest {
    let (resources, affinity, tolerations) = bytes_of(s);
    v118::MaxAvailableReplicasRequest {
        cluster: "member-1".into(),
        replica_requirements: Some(v118::ReplicaRequirements {
            node_claim: Some(v118::NodeClaim {
                node_affinity: s.affinity.clone(),
                node_selector: s
                    .selector
                    .iter()
                    .map(|(k, v)| ((*k).into(), (*v).into()))
                    .collect(),
                tolerations: s.tolerations.clone(),
                node_affinity_bytes: affinity,
                tolerations_bytes: tolerations,
            }),
            resource_request: s
                .resources
                .iter()
                .map(|(k, v)| ((*k).into(), quantity(v)))
                .collect(),
            namespace: "default".into(),
            priority_class_name: String::new(),
            resource_request_bytes: resources,
        }),
    }
}

fn v119_claim(s: &Shape) -> v119::NodeClaim {
    let (_, affinity, tolerations) = bytes_of(s);
    v119::NodeClaim {
        node_selector: s
            .selector
            .iter()
            .map(|(k, v)| ((*k).into(), (*v).into()))
            .collect(),
        node_affinity_bytes: affinity,
        tolerations_bytes: tolerations,
    }
}

fn v119_request(
    s: &Shape,
    assumed: Vec<v119::AssumedWorkload>,
) -> v119::MaxAvailableReplicasRequest {
    v119::MaxAvailableReplicasRequest {
        cluster: "member-1".into(),
        replica_requirements: Some(v119::ReplicaRequirements {
            node_claim: Some(v119_claim(s)),
            namespace: "default".into(),
            priority_class_name: String::new(),
            resource_request_bytes: bytes_of(s).0,
        }),
        assumed_workloads: assumed,
    }
}

fn v119_component(name: &str, s: &Shape, replicas: i32) -> v119::Component {
    v119::Component {
        name: name.into(),
        replica_requirements: Some(v119::ComponentReplicaRequirements {
            node_claim: Some(v119_claim(s)),
            priority_class_name: String::new(),
            resource_request_bytes: bytes_of(s).0,
        }),
        replicas,
    }
}

/// hami's native path: the BatchEstimator call of hami's own scheduler,
/// with hami's messages (the embedded Kubernetes forms).
async fn native(ch: &Channel, list: &[Shape]) -> Vec<i32> {
    let pb_claim = |s: &Shape| pb::NodeClaim {
        node_affinity: s.affinity.as_ref().map(|a| {
            hami_proto::k8s::io::api::core::v1::NodeSelector::decode(a.encode_to_vec().as_slice())
                .unwrap()
        }),
        node_selector: s
            .selector
            .iter()
            .map(|(k, v)| ((*k).into(), (*v).into()))
            .collect(),
        tolerations: s
            .tolerations
            .iter()
            .map(|t| {
                hami_proto::k8s::io::api::core::v1::Toleration::decode(t.encode_to_vec().as_slice())
                    .unwrap()
            })
            .collect(),
        ..Default::default()
    };
    let shapes = list
        .iter()
        .map(|s| batch::ShapeRequest {
            replica_requirements: Some(pb::ReplicaRequirements {
                node_claim: Some(pb_claim(s)),
                resource_request: s
                    .resources
                    .iter()
                    .map(|(k, v)| {
                        (
                            (*k).to_owned(),
                            hami_proto::k8s::io::apimachinery::pkg::api::resource::Quantity {
                                string: Some((*v).to_owned()),
                            },
                        )
                    })
                    .collect(),
                ..Default::default()
            }),
            annotations: HashMap::new(),
        })
        .collect();
    batch::batch_estimator_client::BatchEstimatorClient::new(ch.clone())
        .max_available_replicas_batch(batch::MaxAvailableReplicasBatchRequest {
            cluster: "member-1".into(),
            shapes,
        })
        .await
        .unwrap()
        .into_inner()
        .max_replicas
}

#[tokio::test]
async fn every_karmada_release_gets_the_native_answer() {
    let ch = serve().await;
    let list = shapes();
    let want = native(&ch, &list).await;
    // The shapes are told apart by the fleet: not all answers alike.
    assert!(want.iter().any(|n| *n > 0), "{want:?}");
    assert!(want.windows(2).any(|w| w[0] != w[1]), "{want:?}");
    for (s, want) in list.iter().zip(&want) {
        let r: MaxReplicasResponse = call(&ch, "MaxAvailableReplicas", v117_request(s))
            .await
            .unwrap();
        assert_eq!(r.max_replicas, *want, "v1.17 {:?}", s.resources);
        let r: MaxReplicasResponse = call(&ch, "MaxAvailableReplicas", v118_request(s))
            .await
            .unwrap();
        assert_eq!(r.max_replicas, *want, "v1.18 {:?}", s.resources);
        let r: MaxReplicasResponse = call(&ch, "MaxAvailableReplicas", v119_request(s, vec![]))
            .await
            .unwrap();
        assert_eq!(r.max_replicas, *want, "v1.19 {:?}", s.resources);
    }
}

/// A v1.18 writer's two forms disagree: the bytes win, for resources, node
/// affinity and tolerations alike.
#[tokio::test]
async fn the_bytes_win_when_both_forms_arrive() {
    let ch = serve().await;
    let list = shapes();
    let want = native(&ch, &list).await;
    // Bytes of shape 4 (zone b, tolerating, 2 GPUs), embedded forms of shape 0.
    let mut mixed = v118_request(&list[4]);
    let old = v117_request(&list[0]).replica_requirements.unwrap();
    let rr = mixed.replica_requirements.as_mut().unwrap();
    rr.resource_request = old.resource_request;
    let claim = rr.node_claim.as_mut().unwrap();
    claim.node_affinity = Some(zone_in("a"));
    claim.tolerations = vec![];
    let r: MaxReplicasResponse = call(&ch, "MaxAvailableReplicas", mixed).await.unwrap();
    assert_eq!(r.max_replicas, want[4]);
    assert_ne!(want[4], want[0]);
}

/// v1.19's in-flight workloads are deducted before the answer.
#[tokio::test]
async fn assumed_workloads_are_deducted() {
    let ch = serve().await;
    let list = shapes();
    let want = native(&ch, &list).await;
    let whole = &list[3];
    for n in [1, 2, want[3] + 3] {
        let assumed = vec![v119::AssumedWorkload {
            namespace: "default".into(),
            components: vec![v119_component("main", whole, n)],
        }];
        let r: MaxReplicasResponse =
            call(&ch, "MaxAvailableReplicas", v119_request(whole, assumed))
                .await
                .unwrap();
        assert_eq!(r.max_replicas, (want[3] - n).max(0), "{n} assumed");
    }
}

#[tokio::test]
async fn component_sets_over_the_wire() {
    let ch = serve().await;
    let list = shapes();
    // One JobManager (2 CPU, zone a) and three 1-GPU TaskManagers per set.
    let jm = Shape {
        resources: vec![("cpu", "2"), ("memory", "2Gi")],
        selector: vec![("zone", "a")],
        affinity: None,
        tolerations: vec![],
    };
    let req = |assumed| v119::MaxAvailableComponentSetsRequest {
        cluster: "member-1".into(),
        components: vec![
            v119_component("jobmanager", &jm, 1),
            v119_component("taskmanager", &list[0], 3),
        ],
        namespace: "default".into(),
        assumed_workloads: assumed,
    };
    let r: MaxSetsResponse = call(&ch, "MaxAvailableComponentSets", req(vec![]))
        .await
        .unwrap();
    // Zone a: 20 CPUs left, 2 per JobManager and 1 per TaskManager, so at
    // most 4 sets by CPU (4·2 + 12·1 = 20); the GPUs hold 11 TaskManagers
    // of 10000 MiB (GPU-a0 1, GPU-a1 4, GPU-a2 3, GPU-c0 4 less the CPU of
    // node c): the answer is the tighter of the two, checked exactly by
    // the property test; here it must be positive and below both bounds.
    assert!(r.max_sets > 0 && r.max_sets <= 4, "{}", r.max_sets);
    let base = r.max_sets;
    let assumed = vec![v119::AssumedWorkload {
        namespace: "other".into(),
        components: vec![
            v119_component("jobmanager", &jm, 1),
            v119_component("taskmanager", &list[0], 3),
        ],
    }];
    let r: MaxSetsResponse = call(&ch, "MaxAvailableComponentSets", req(assumed))
        .await
        .unwrap();
    assert_eq!(r.max_sets, base - 1, "one set in flight leaves one fewer");

    // hami's batch call answers the same for each workload, in order.
    let gpu_only = Shape {
        resources: vec![("nvidia.com/gpu", "1"), ("nvidia.com/gpumem", "40000")],
        selector: vec![],
        affinity: None,
        tolerations: vec![tolerate_dedicated()],
    };
    let single: MaxSetsResponse = call(
        &ch,
        "MaxAvailableComponentSets",
        v119::MaxAvailableComponentSetsRequest {
            cluster: "member-1".into(),
            components: vec![v119_component("worker", &gpu_only, 2)],
            namespace: String::new(),
            assumed_workloads: vec![],
        },
    )
    .await
    .unwrap();
    let to_pb = |c: v119::Component| pb::Component::decode(c.encode_to_vec().as_slice()).unwrap();
    let workloads = vec![
        batch::ComponentSetsRequest {
            components: req(vec![]).components.into_iter().map(to_pb).collect(),
            annotations: HashMap::new(),
        },
        batch::ComponentSetsRequest {
            components: vec![to_pb(v119_component("worker", &gpu_only, 2))],
            annotations: HashMap::new(),
        },
    ];
    let answer = batch::batch_estimator_client::BatchEstimatorClient::new(ch.clone())
        .max_available_component_sets_batch(batch::MaxAvailableComponentSetsBatchRequest {
            cluster: "member-1".into(),
            workloads,
            assumed_workloads: vec![],
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(answer.max_sets, vec![base, single.max_sets]);
    assert!(single.max_sets > 0);
}

#[tokio::test]
async fn malformed_input_is_invalid_argument_naming_the_field() {
    let ch = serve().await;
    let list = shapes();
    let mut bad_bytes = v119_request(&list[0], vec![]);
    bad_bytes
        .replica_requirements
        .as_mut()
        .unwrap()
        .resource_request_bytes
        .insert("cpu".into(), vec![0x0a, 0xff]);
    let mut bad_quantity = v119_request(&list[0], vec![]);
    bad_quantity
        .replica_requirements
        .as_mut()
        .unwrap()
        .resource_request_bytes
        .insert("memory".into(), quantity("12zz").encode_to_vec());
    let mut bad_name = v119_request(&list[0], vec![]);
    bad_name
        .replica_requirements
        .as_mut()
        .unwrap()
        .resource_request_bytes
        .insert("not a resource".into(), quantity("1").encode_to_vec());
    let mut bad_toleration = v119_request(&list[3], vec![]);
    bad_toleration
        .replica_requirements
        .as_mut()
        .unwrap()
        .node_claim
        .as_mut()
        .unwrap()
        .tolerations_bytes = vec![vec![0x08]];
    let cases = [
        (bad_bytes, "replicaRequirements.resourceRequestBytes[cpu]"),
        (
            bad_quantity,
            "replicaRequirements.resourceRequestBytes[memory]",
        ),
        (
            bad_name,
            "replicaRequirements.resourceRequestBytes[not a resource]",
        ),
        (
            bad_toleration,
            "replicaRequirements.nodeClaim.tolerationsBytes[0]",
        ),
    ];
    for (req, field) in cases {
        let e = call::<_, MaxReplicasResponse>(&ch, "MaxAvailableReplicas", req)
            .await
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e:?}");
        assert!(e.message().starts_with(field), "{field}: {}", e.message());
    }
    let mut negative = v119::MaxAvailableComponentSetsRequest {
        cluster: "member-1".into(),
        components: vec![v119_component("a", &list[0], -1)],
        namespace: String::new(),
        assumed_workloads: vec![],
    };
    let e = call::<_, MaxSetsResponse>(&ch, "MaxAvailableComponentSets", negative.clone())
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    assert!(
        e.message().starts_with("components[0].replicas"),
        "{}",
        e.message()
    );
    negative.components.clear();
    let e = call::<_, MaxSetsResponse>(&ch, "MaxAvailableComponentSets", negative)
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
}
