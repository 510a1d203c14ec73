//! Binding controller and status aggregation inside the real `hami up`:
//! three Clusters (regions eu, us, ap) registered as objects, a GPU
//! Deployment with a Divided policy and an OverridePolicy that gives each
//! region its own image registry. Execution namespaces appear with the
//! clusters; each cluster's Work carries its replica count and registry; a
//! fake agent's Work status flows into the binding's aggregatedStatus and
//! the Deployment's status; dropping a cluster from the policy deletes its
//! Work; deleting the Deployment deletes every Work.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::BTreeMap;

use hami_api::binding::ResourceBinding;
use hami_api::cluster::Cluster;
use hami_api::override_policy::OverridePolicy;
use hami_api::propagation::PropagationPolicy;
use hami_api::work::Work;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use support::{Hami, eventually};

const WORK_LABEL: &str = "resourcebinding.hami.io/name=train-deployment";

fn cluster(name: &str, region: &str, free_gpus: u32) -> (Cluster, Value) {
    let cluster: Cluster = serde_json::from_value(json!({
        "apiVersion": "cluster.hami.io/v1alpha1",
        "kind": "Cluster",
        "metadata": {"name": name, "labels": {"gpu": "yes", "region": region}},
        "spec": {"syncMode": "Pull"},
    }))
    .unwrap();
    let status = json!({"status": {
        "conditions": [{
            "type": "Ready", "status": "True", "reason": "AgentReported",
            "message": "", "lastTransitionTime": "2025-01-01T00:00:00Z",
        }],
        "resourceSummary": {
            "allocatable": {"cpu": "64", "memory": "256Gi", "pods": "110", "nvidia.com/gpu": "8"},
            "allocated": {"cpu": "4", "memory": "8Gi", "nvidia.com/gpu": (8 - free_gpus).to_string()},
        },
        "gpuSummary": [{
            "model": "NVIDIA-A100-SXM4-80GB", "count": 8, "healthy": 8,
            "memoryTotalMiB": 8 * 81920, "memoryFreeMiB": free_gpus * 81920,
            "coresTotal": 800, "coresFree": free_gpus * 100,
            "shareSlotsFree": free_gpus * 10,
        }],
    }});
    (cluster, status)
}

fn deployment() -> Deployment {
    serde_json::from_value(json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "train", "namespace": "default", "labels": {"app": "train"}},
        "spec": {
            "replicas": 8,
            "selector": {"matchLabels": {"app": "train"}},
            "template": {
                "metadata": {"labels": {"app": "train"}},
                "spec": {"containers": [{
                    "name": "main",
                    "image": "hub.local/ml/trainer:1",
                    "resources": {"limits": {"nvidia.com/gpu": "1"}}
                }]}
            }
        }
    }))
    .unwrap()
}

fn propagation(clusters: &[&str]) -> PropagationPolicy {
    serde_json::from_value(json!({
        "apiVersion": "policy.hami.io/v1alpha1",
        "kind": "PropagationPolicy",
        "metadata": {"name": "train", "namespace": "default"},
        "spec": {
            "resourceSelectors": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": "train"}],
            "placement": {
                "clusterAffinity": {"clusterNames": clusters},
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

fn overrides(eu_registry: &str) -> OverridePolicy {
    let rule = |region: &str, registry: &str| {
        json!({
            "targetCluster": {"labelSelector": {"matchLabels": {"region": region}}},
            "overriders": {"imageOverrider": [
                {"component": "Registry", "operator": "replace", "value": registry}
            ]},
        })
    };
    serde_json::from_value(json!({
        "apiVersion": "policy.hami.io/v1alpha1",
        "kind": "OverridePolicy",
        "metadata": {"name": "registries", "namespace": "default"},
        "spec": {
            "resourceSelectors": [{"apiVersion": "apps/v1", "kind": "Deployment"}],
            "overrideRules": [rule("eu", eu_registry), rule("us", "us.registry.io")],
        }
    }))
    .unwrap()
}

/// The binding's clusters and replicas once scheduled for the current spec.
fn assignment(rb: &ResourceBinding) -> Option<BTreeMap<String, i32>> {
    let status = rb.status.as_ref()?;
    let scheduled = status
        .conditions
        .iter()
        .any(|c| c.type_ == "Scheduled" && c.status == "True");
    (scheduled && status.scheduler_observed_generation == rb.metadata.generation).then(|| {
        rb.spec
            .clusters
            .iter()
            .map(|t| (t.name.clone(), t.replicas))
            .collect()
    })
}

fn manifest(w: &Work) -> &Value {
    &w.spec.workload.manifests[0]
}

/// The Works of the binding: cluster -> (replicas, image).
async fn works_by_cluster(works: &Api<Work>) -> BTreeMap<String, (i64, String)> {
    works
        .list(&ListParams::default().labels(WORK_LABEL))
        .await
        .unwrap()
        .items
        .iter()
        .map(|w| {
            let ns = w.metadata.namespace.clone().unwrap();
            let m = manifest(w);
            (
                ns.trim_start_matches("hami-es-").to_string(),
                (
                    m.pointer("/spec/replicas").and_then(Value::as_i64).unwrap(),
                    m.pointer("/spec/template/spec/containers/0/image")
                        .and_then(Value::as_str)
                        .unwrap()
                        .to_string(),
                ),
            )
        })
        .collect()
}

fn image_for(cluster: &str, eu: &str) -> String {
    match cluster {
        "a" => format!("{eu}/ml/trainer:1"),
        "b" => "us.registry.io/ml/trainer:1".into(),
        _ => "hub.local/ml/trainer:1".into(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn works_follow_bindings_and_status_flows_back() {
    let tmp = tempfile::tempdir().unwrap();
    let hami = Hami::start(tmp.path(), "127.0.0.1:0");
    let client = hami.client().await;

    let clusters: Api<Cluster> = Api::all(client.clone());
    for (name, region, free) in [("a", "eu", 8), ("b", "us", 4), ("c", "ap", 4)] {
        let (c, status) = cluster(name, region, free);
        clusters.create(&PostParams::default(), &c).await.unwrap();
        clusters
            .patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
            .await
            .unwrap();
    }
    // Execution namespaces appear with the clusters.
    let namespaces: Api<Namespace> = Api::all(client.clone());
    for c in ["a", "b", "c"] {
        let name = format!("hami-es-{c}");
        eventually(&format!("namespace {name}"), 20, || async {
            namespaces
                .get_opt(&name)
                .await
                .unwrap()
                .map(|_| ())
                .ok_or_else(|| "absent".to_string())
        })
        .await;
    }

    let ns = "default";
    Api::<OverridePolicy>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &overrides("eu.registry.io"))
        .await
        .unwrap();
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), ns);
    deployments
        .create(&PostParams::default(), &deployment())
        .await
        .unwrap();
    let policies: Api<PropagationPolicy> = Api::namespaced(client.clone(), ns);
    policies
        .create(&PostParams::default(), &propagation(&["a", "b", "c"]))
        .await
        .unwrap();

    let bindings: Api<ResourceBinding> = Api::namespaced(client.clone(), ns);
    let works: Api<Work> = Api::all(client.clone());
    let placed = eventually("binding scheduled", 20, || async {
        let rb = bindings.get_opt("train-deployment").await.unwrap();
        rb.as_ref()
            .and_then(assignment)
            .ok_or_else(|| format!("{rb:?}"))
    })
    .await;
    assert_eq!(placed.values().sum::<i32>(), 8, "{placed:?}");
    assert!(placed.len() >= 2, "{placed:?}");

    // One Work per target cluster, with its replicas and its registry.
    let want: BTreeMap<String, (i64, String)> = placed
        .iter()
        .map(|(c, r)| (c.clone(), (i64::from(*r), image_for(c, "eu.registry.io"))))
        .collect();
    eventually("Works match the placement", 20, || async {
        let got = works_by_cluster(&works).await;
        if got == want {
            Ok(())
        } else {
            Err(format!("got {got:?}, want {want:?}"))
        }
    })
    .await;
    let list = works
        .list(&ListParams::default().labels(WORK_LABEL))
        .await
        .unwrap();
    for w in &list.items {
        let meta = &manifest(w)["metadata"];
        assert_eq!(meta.get("uid"), None, "server fields stripped");
        assert_eq!(meta.get("resourceVersion"), None);
        assert_eq!(manifest(w).get("status"), None);
        let ann = w.metadata.annotations.as_ref().unwrap();
        assert_eq!(ann["work.hami.io/binding"], "default/train-deployment");
        let c = w.metadata.namespace.as_deref().unwrap();
        assert_eq!(
            ann.contains_key("policy.hami.io/applied-overrides"),
            c != "hami-es-c",
            "{c}"
        );
    }

    // An agent reports: applied, and the member Deployment's status.
    for w in &list.items {
        let wns = w.metadata.namespace.clone().unwrap();
        let replicas = manifest(w)["spec"]["replicas"].as_i64().unwrap();
        let status = json!({"status": {
            "conditions": [{
                "type": "Applied", "status": "True", "reason": "Applied", "message": "",
                "observedGeneration": w.metadata.generation,
                "lastTransitionTime": "2025-01-01T00:00:00Z",
            }],
            "manifestStatuses": [{
                "identifier": {"ordinal": 0, "group": "apps", "version": "v1",
                               "kind": "Deployment", "namespace": ns, "name": "train"},
                "status": {"replicas": replicas, "readyReplicas": replicas,
                           "availableReplicas": replicas, "updatedReplicas": replicas},
                "health": "Healthy",
            }],
        }});
        Api::<Work>::namespaced(client.clone(), &wns)
            .patch_status(
                w.metadata.name.as_deref().unwrap(),
                &PatchParams::default(),
                &Patch::Merge(&status),
            )
            .await
            .unwrap();
    }
    let rb = eventually("aggregatedStatus", 20, || async {
        let rb = bindings.get("train-deployment").await.unwrap();
        let items = &rb.status.as_ref().unwrap().aggregated_status;
        let ready: i64 = items
            .iter()
            .filter_map(|i| i.status.as_ref()?.get("readyReplicas")?.as_i64())
            .sum();
        if items.len() == placed.len() && items.iter().all(|i| i.applied) && ready == 8 {
            Ok(rb)
        } else {
            Err(format!("{items:?}"))
        }
    })
    .await;
    let names: Vec<&str> = rb
        .status
        .as_ref()
        .unwrap()
        .aggregated_status
        .iter()
        .map(|i| i.cluster_name.as_str())
        .collect();
    assert_eq!(names, placed.keys().map(String::as_str).collect::<Vec<_>>());
    assert!(
        rb.status
            .as_ref()
            .unwrap()
            .conditions
            .iter()
            .any(|c| c.type_ == "FullyApplied" && c.status == "True")
    );
    eventually("Deployment status is the federated sum", 20, || async {
        let d = deployments.get("train").await.unwrap();
        let s = d.status.clone().unwrap_or_default();
        if s.ready_replicas == Some(8)
            && s.available_replicas == Some(8)
            && s.replicas == Some(8)
            && s.observed_generation == d.metadata.generation
        {
            Ok(())
        } else {
            Err(format!("{s:?} at generation {:?}", d.metadata.generation))
        }
    })
    .await;

    // An override change rewrites only what it changes.
    Api::<OverridePolicy>::namespaced(client.clone(), ns)
        .replace("registries", &PostParams::default(), &{
            let mut p = overrides("eu2.registry.io");
            let cur = Api::<OverridePolicy>::namespaced(client.clone(), ns)
                .get("registries")
                .await
                .unwrap();
            p.metadata.resource_version = cur.metadata.resource_version;
            p
        })
        .await
        .unwrap();
    let want2: BTreeMap<String, (i64, String)> = placed
        .iter()
        .map(|(c, r)| (c.clone(), (i64::from(*r), image_for(c, "eu2.registry.io"))))
        .collect();
    eventually("override change reaches the Works", 20, || async {
        let got = works_by_cluster(&works).await;
        if got == want2 {
            Ok(())
        } else {
            Err(format!("got {got:?}, want {want2:?}"))
        }
    })
    .await;

    // Excluding a cluster from the policy deletes its Work.
    let dropped = placed.keys().next_back().unwrap().clone();
    let kept: Vec<&str> = ["a", "b", "c"]
        .into_iter()
        .filter(|c| *c != dropped)
        .collect();
    policies
        .patch(
            "train",
            &PatchParams::default(),
            &Patch::Merge(
                json!({"spec": {"placement": {"clusterAffinity": {"clusterNames": kept}}}}),
            ),
        )
        .await
        .unwrap();
    eventually("the dropped cluster's Work is deleted", 20, || async {
        let got = works_by_cluster(&works).await;
        let rb = bindings.get("train-deployment").await.unwrap();
        let a = assignment(&rb).unwrap_or_default();
        if !got.contains_key(&dropped)
            && !a.is_empty()
            && got.keys().eq(a.keys())
            && got.iter().all(|(c, (r, _))| i64::from(a[c]) == *r)
        {
            Ok(())
        } else {
            Err(format!("works {got:?}, assignment {a:?}"))
        }
    })
    .await;

    // Deleting the template deletes every Work.
    deployments
        .delete("train", &DeleteParams::default())
        .await
        .unwrap();
    eventually("every Work deleted", 20, || async {
        let got = works_by_cluster(&works).await;
        if got.is_empty() {
            Ok(())
        } else {
            Err(format!("{got:?}"))
        }
    })
    .await;
    // The execution namespaces stay while their clusters do.
    for c in ["a", "b", "c"] {
        assert!(
            namespaces
                .get_opt(&format!("hami-es-{c}"))
                .await
                .unwrap()
                .is_some()
        );
    }
}
