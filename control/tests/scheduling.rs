//! Detector and scheduler inside the real `hami up`: three Clusters
//! registered as objects with resource summaries, a GPU Deployment and a
//! dynamic-weight PropagationPolicy applied with kube-rs. The binding appears
//! with replicas and the GPU shape, gets spec.clusters that follow the
//! clusters' free GPUs and Scheduled=True; an impossible policy gets
//! Scheduled=False naming the reason; scaling and deleting the Deployment
//! follow through to the binding.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use hami_api::binding::ResourceBinding;
use hami_api::cluster::Cluster;
use hami_api::propagation::PropagationPolicy;
use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use serde_json::json;
use support::Hami;

fn ready_cluster(name: &str, gpus: u32, gpus_used: u32) -> (Cluster, serde_json::Value) {
    let cluster: Cluster = serde_json::from_value(json!({
        "apiVersion": "cluster.hami.io/v1alpha1",
        "kind": "Cluster",
        "metadata": {"name": name, "labels": {"gpu": "yes"}},
        "spec": {"syncMode": "Pull", "region": "eu"},
    }))
    .unwrap();
    let status = json!({"status": {
        "conditions": [{
            "type": "Ready", "status": "True", "reason": "AgentReported",
            "message": "", "lastTransitionTime": "2025-01-01T00:00:00Z",
        }],
        "resourceSummary": {
            "allocatable": {"cpu": "64", "memory": "256Gi", "pods": "110", "nvidia.com/gpu": gpus.to_string()},
            "allocated": {"cpu": "4", "memory": "8Gi", "nvidia.com/gpu": gpus_used.to_string()},
        },
        "gpuSummary": [{
            "model": "NVIDIA-A100-SXM4-80GB", "count": gpus, "healthy": gpus,
            "memoryTotalMiB": gpus * 81920, "memoryFreeMiB": (gpus - gpus_used) * 81920,
            "coresTotal": gpus * 100, "coresFree": (gpus - gpus_used) * 100,
            "shareSlotsFree": (gpus - gpus_used) * 10,
        }],
    }});
    (cluster, status)
}

fn gpu_deployment(name: &str, replicas: i32) -> Deployment {
    serde_json::from_value(json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": "default", "labels": {"app": name}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name},
                             "annotations": {"nvidia.com/use-gputype": "A100"}},
                "spec": {"containers": [{
                    "name": "main",
                    "image": "trainer:1",
                    "resources": {
                        "requests": {"cpu": "1", "memory": "4Gi"},
                        "limits": {"nvidia.com/gpu": "1", "nvidia.com/gpumem": "20000"}
                    }
                }]}
            }
        }
    }))
    .unwrap()
}

fn policy(name: &str, target: &str, affinity: serde_json::Value) -> PropagationPolicy {
    serde_json::from_value(json!({
        "apiVersion": "policy.hami.io/v1alpha1",
        "kind": "PropagationPolicy",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "resourceSelectors": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": target}],
            "placement": {
                "clusterAffinity": affinity,
                "replicaScheduling": {
                    "replicaSchedulingType": "Divided",
                    "replicaDivisionPreference": "Weighted",
                    "weightPreference": {"dynamicWeight": "AvailableReplicas"}
                }
            }
        }
    }))
    .unwrap()
}

/// Polls `name` until `ok` holds (20 s at most); returns the last version.
async fn wait_for(
    api: &Api<ResourceBinding>,
    name: &str,
    what: &str,
    ok: impl Fn(&ResourceBinding) -> bool,
) -> ResourceBinding {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut last = None;
    loop {
        if let Some(rb) = api.get_opt(name).await.unwrap() {
            if ok(&rb) {
                return rb;
            }
            last = Some(rb);
        }
        assert!(
            Instant::now() < deadline,
            "{what}: binding {name} is {}",
            serde_json::to_string_pretty(&last).unwrap()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn scheduled(rb: &ResourceBinding) -> Option<(&str, &str, &str)> {
    let c = rb
        .status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == "Scheduled")?;
    Some((c.status.as_str(), c.reason.as_str(), c.message.as_str()))
}

fn assignment(rb: &ResourceBinding) -> BTreeMap<String, i32> {
    rb.spec
        .clusters
        .iter()
        .map(|t| (t.name.clone(), t.replicas))
        .collect()
}

fn observed_current(rb: &ResourceBinding) -> bool {
    rb.status
        .as_ref()
        .and_then(|s| s.scheduler_observed_generation)
        .is_some_and(|g| Some(g) == rb.metadata.generation)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gpu_deployment_is_bound_scheduled_scaled_and_unbound() {
    let tmp = tempfile::tempdir().unwrap();
    let hami = Hami::start(tmp.path(), "127.0.0.1:0");
    let client = hami.client().await;

    let clusters: Api<Cluster> = Api::all(client.clone());
    // Free GPUs: a 8, b 4, c 0.
    for (name, gpus, used) in [("a", 8, 0), ("b", 8, 4), ("c", 4, 4)] {
        let (c, status) = ready_cluster(name, gpus, used);
        clusters.create(&PostParams::default(), &c).await.unwrap();
        clusters
            .patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
            .await
            .unwrap();
    }

    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let policies: Api<PropagationPolicy> = Api::namespaced(client.clone(), "default");
    let bindings: Api<ResourceBinding> = Api::namespaced(client.clone(), "default");
    deployments
        .create(&PostParams::default(), &gpu_deployment("train", 6))
        .await
        .unwrap();
    policies
        .create(
            &PostParams::default(),
            &policy(
                "gpu",
                "train",
                json!({"labelSelector": {"matchLabels": {"gpu": "yes"}}}),
            ),
        )
        .await
        .unwrap();

    let rb = wait_for(&bindings, "train-deployment", "scheduled", |rb| {
        scheduled(rb).is_some_and(|s| s.0 == "True") && observed_current(rb)
    })
    .await;
    assert_eq!(rb.spec.replicas, 6);
    assert_eq!(rb.spec.resource.kind, "Deployment");
    assert_eq!(rb.spec.resource.name, "train");
    let req = rb.spec.replica_requirements.as_ref().unwrap();
    let gpu = req.gpu.as_ref().unwrap();
    assert_eq!(gpu.count, 1);
    assert_eq!(gpu.memory_mib, Some(20000));
    assert_eq!(gpu.use_types, ["A100"]);
    assert_eq!(req.resource_request["cpu"].0, "1");
    assert_eq!(
        rb.metadata.labels.as_ref().unwrap()["propagationpolicy.hami.io/name"],
        "gpu"
    );
    assert_eq!(scheduled(&rb).unwrap().1, "Success");
    // Dynamic weight by free GPUs 8:4:0 over 6 replicas.
    assert_eq!(
        assignment(&rb),
        BTreeMap::from([("a".to_string(), 4), ("b".to_string(), 2)])
    );

    // A policy that cannot be satisfied: affinity to a cluster that does not exist.
    deployments
        .create(&PostParams::default(), &gpu_deployment("pinned", 2))
        .await
        .unwrap();
    policies
        .create(
            &PostParams::default(),
            &policy("pin", "pinned", json!({"clusterNames": ["missing"]})),
        )
        .await
        .unwrap();
    let rb = wait_for(&bindings, "pinned-deployment", "unschedulable", |rb| {
        scheduled(rb).is_some_and(|s| s.0 == "False")
    })
    .await;
    let (_, reason, message) = scheduled(&rb).unwrap();
    assert_eq!(reason, "Unschedulable");
    assert!(
        message.contains("0/3 clusters are available")
            && message.contains("did not match the placement cluster affinity"),
        "{message}"
    );
    assert!(rb.spec.clusters.is_empty());

    // Scaling the Deployment updates the binding and its assignment; the
    // clusters keep what they had (scale-up adds) and stay within free GPUs.
    deployments
        .patch(
            "train",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 9}})),
        )
        .await
        .unwrap();
    let rb = wait_for(&bindings, "train-deployment", "scaled", |rb| {
        rb.spec.replicas == 9 && observed_current(rb) && assignment(rb).values().sum::<i32>() == 9
    })
    .await;
    let a = assignment(&rb);
    assert!(
        a["a"] >= 4 && a["a"] <= 8 && a["b"] >= 2 && a["b"] <= 4,
        "{a:?}"
    );
    assert!(!a.contains_key("c"), "{a:?}");
    assert_eq!(scheduled(&rb).unwrap().0, "True");

    // Deleting the template deletes its binding.
    deployments
        .delete("train", &DeleteParams::default())
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while bindings
        .get_opt("train-deployment")
        .await
        .unwrap()
        .is_some()
    {
        assert!(Instant::now() < deadline, "binding not deleted");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        bindings
            .get_opt("pinned-deployment")
            .await
            .unwrap()
            .is_some()
    );
}
