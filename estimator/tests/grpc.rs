#![cfg(feature = "server")]
#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The estimator services over a real loopback socket: Karmada's client
//! stubs against hami's server, single and batch calls, bad input.

mod support;

use std::collections::HashMap;

use hami_proto::github::com::karmada_io::karmada::pkg::estimator::pb;
use hami_proto::github::com::karmada_io::karmada::pkg::estimator::service::estimator_client::EstimatorClient;
use hami_proto::hami::estimator::v1 as batch;
use hami_proto::k8s::io::api::core::v1 as corepb;
use hami_proto::k8s::io::apimachinery::pkg::api::resource::Quantity;
use tonic::Code;
use tonic::transport::Channel;

const FLEET: &str = r#"
cluster: member-1
nodes:
  - name: a
    labels: {zone: a}
    allocatable: {cpu: "8", memory: 32Gi, pods: "110"}
    gpus:
      - {id: GPU-a0, model: NVIDIA-A100, memoryMiB: 40960, slots: 4}
      - {id: GPU-a1, model: NVIDIA-A100, memoryMiB: 40960, slots: 4}
    pods:
      - name: p0
        requests: {cpu: "1", memory: 1Gi}
        gpus: [{device: GPU-a0, memoryMiB: 30000, cores: 0}]
  - name: b
    labels: {zone: b}
    taints: [{key: dedicated, value: ml, effect: NoSchedule}]
    allocatable: {cpu: "8", memory: 32Gi, pods: "110"}
    gpus:
      - {id: GPU-b0, model: NVIDIA-H100, memoryMiB: 81920, slots: 4}
pending:
  - {name: w-1, workload: {kind: Deployment, name: web}, unschedulableForSeconds: 600}
  - {name: w-2, workload: {kind: Deployment, name: web}, unschedulableForSeconds: 10}
"#;

async fn serve() -> Channel {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    support::serve(FLEET, now).await
}

fn q(s: &str) -> Quantity {
    Quantity {
        string: Some(s.into()),
    }
}

fn reqs(list: &[(&str, &str)], claim: Option<pb::NodeClaim>) -> pb::ReplicaRequirements {
    pb::ReplicaRequirements {
        node_claim: claim,
        resource_request: list.iter().map(|(k, v)| (k.to_string(), q(v))).collect(),
        ..Default::default()
    }
}

fn single(cluster: Option<&str>, r: pb::ReplicaRequirements) -> pb::MaxAvailableReplicasRequest {
    pb::MaxAvailableReplicasRequest {
        cluster: cluster.map(String::from),
        replica_requirements: Some(r),
        assumed_workloads: vec![],
    }
}

#[tokio::test]
async fn karmada_calls_and_batch() {
    let ch = serve().await;
    let mut c = EstimatorClient::new(ch.clone());
    // 20000 MiB GPUs: GPU-a0 has 10960 free (0), GPU-a1 2, GPU-b0 is tainted.
    let shape = reqs(
        &[
            ("cpu", "1"),
            ("nvidia.com/gpu", "1"),
            ("nvidia.com/gpumem", "20000"),
        ],
        None,
    );
    let r = c
        .max_available_replicas(single(Some("member-1"), shape.clone()))
        .await
        .unwrap();
    assert_eq!(r.into_inner().max_replicas, Some(2));
    let tolerate = pb::NodeClaim {
        tolerations: vec![corepb::Toleration {
            key: Some("dedicated".into()),
            operator: Some("Exists".into()),
            ..Default::default()
        }],
        ..Default::default()
    };
    let with_tol = reqs(
        &[
            ("cpu", "1"),
            ("nvidia.com/gpu", "1"),
            ("nvidia.com/gpumem", "20000"),
        ],
        Some(tolerate.clone()),
    );
    let r = c
        .max_available_replicas(single(Some("member-1"), with_tol.clone()))
        .await
        .unwrap();
    assert_eq!(r.into_inner().max_replicas, Some(6));
    let zone_b = pb::NodeClaim {
        node_affinity: Some(corepb::NodeSelector {
            node_selector_terms: vec![corepb::NodeSelectorTerm {
                match_expressions: vec![corepb::NodeSelectorRequirement {
                    key: Some("zone".into()),
                    operator: Some("In".into()),
                    values: vec!["b".into()],
                }],
                match_fields: vec![],
            }],
        }),
        ..tolerate
    };
    let r = c
        .max_available_replicas(single(
            Some("member-1"),
            reqs(&[("cpu", "1")], Some(zone_b)),
        ))
        .await
        .unwrap();
    assert_eq!(r.into_inner().max_replicas, Some(8));

    let r = c
        .get_unschedulable_replicas(pb::UnschedulableReplicasRequest {
            cluster: Some("member-1".into()),
            resource: Some(pb::ObjectReference {
                api_version: Some("apps/v1".into()),
                kind: Some("Deployment".into()),
                namespace: Some("default".into()),
                name: Some("web".into()),
            }),
            unschedulable_threshold: Some(60_000_000_000),
        })
        .await
        .unwrap();
    assert_eq!(r.into_inner().unschedulable_replicas, Some(1));

    let mut b = batch::batch_estimator_client::BatchEstimatorClient::new(ch);
    let shape_req = |r: pb::ReplicaRequirements, ann: &[(&str, &str)]| batch::ShapeRequest {
        replica_requirements: Some(r),
        annotations: ann
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<HashMap<_, _>>(),
    };
    let r = b
        .max_available_replicas_batch(batch::MaxAvailableReplicasBatchRequest {
            cluster: "member-1".into(),
            shapes: vec![
                shape_req(shape, &[]),
                shape_req(with_tol.clone(), &[]),
                shape_req(with_tol, &[("nvidia.com/use-gputype", "H100")]),
                shape_req(reqs(&[("cpu", "8")], None), &[]),
            ],
        })
        .await
        .unwrap();
    assert_eq!(r.into_inner().max_replicas, vec![2, 6, 4, 0]);
}

#[tokio::test]
async fn bad_input_is_invalid_argument() {
    let ch = serve().await;
    let mut c = EstimatorClient::new(ch.clone());
    let ok = reqs(&[("cpu", "1")], None);
    let cases = vec![
        ("missing cluster", single(None, ok.clone())),
        ("empty cluster", single(Some(""), ok.clone())),
        ("other cluster", single(Some("member-2"), ok.clone())),
        (
            "missing requirements",
            pb::MaxAvailableReplicasRequest {
                cluster: Some("member-1".into()),
                replica_requirements: None,
                assumed_workloads: vec![],
            },
        ),
        (
            "negative quantity",
            single(Some("member-1"), reqs(&[("cpu", "-1")], None)),
        ),
        (
            "unparsable quantity",
            single(Some("member-1"), reqs(&[("memory", "12 GB")], None)),
        ),
        (
            "empty quantity",
            single(Some("member-1"), reqs(&[("memory", "")], None)),
        ),
        (
            "huge quantity",
            single(Some("member-1"), reqs(&[("memory", "1e30")], None)),
        ),
        (
            "percentage over 100",
            single(
                Some("member-1"),
                reqs(
                    &[
                        ("nvidia.com/gpu", "1"),
                        ("nvidia.com/gpumem-percentage", "101"),
                    ],
                    None,
                ),
            ),
        ),
        (
            "bad operator",
            single(
                Some("member-1"),
                reqs(
                    &[("cpu", "1")],
                    Some(pb::NodeClaim {
                        node_affinity: Some(corepb::NodeSelector {
                            node_selector_terms: vec![corepb::NodeSelectorTerm {
                                match_expressions: vec![corepb::NodeSelectorRequirement {
                                    key: Some("zone".into()),
                                    operator: Some("Near".into()),
                                    values: vec![],
                                }],
                                match_fields: vec![],
                            }],
                        }),
                        ..Default::default()
                    }),
                ),
            ),
        ),
    ];
    for (why, req) in cases {
        let err = c.max_available_replicas(req).await.expect_err(why);
        assert_eq!(err.code(), Code::InvalidArgument, "{why}: {err:?}");
    }
    let err = c
        .get_unschedulable_replicas(pb::UnschedulableReplicasRequest {
            cluster: Some("member-1".into()),
            resource: None,
            unschedulable_threshold: None,
        })
        .await
        .expect_err("missing resource");
    assert_eq!(err.code(), Code::InvalidArgument);
    let err = c
        .get_unschedulable_replicas(pb::UnschedulableReplicasRequest {
            cluster: Some("member-1".into()),
            resource: Some(pb::ObjectReference::default()),
            unschedulable_threshold: Some(-1),
        })
        .await
        .expect_err("negative threshold");
    assert_eq!(err.code(), Code::InvalidArgument);
    let mut b = batch::batch_estimator_client::BatchEstimatorClient::new(ch);
    let err = b
        .max_available_replicas_batch(batch::MaxAvailableReplicasBatchRequest {
            cluster: "member-1".into(),
            shapes: vec![batch::ShapeRequest {
                replica_requirements: Some(reqs(&[("cpu", "x")], None)),
                annotations: HashMap::new(),
            }],
        })
        .await
        .expect_err("bad batch");
    assert_eq!(err.code(), Code::InvalidArgument);
    // The server is still up after all that.
    assert!(
        c.max_available_replicas(single(Some("member-1"), ok))
            .await
            .is_ok()
    );
}
