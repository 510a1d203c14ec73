//! The member-cluster simulator over real loopback HTTP, driven only with
//! kube-rs as a user or an agent would: GPU Deployments placed with exact
//! per-device accounting, scale down and up, overflow left Unschedulable,
//! the estimator's count matching what the binder places, Jobs completing,
//! StatefulSets, cascading deletion, and the API paused and resumed.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

use hami_agent::sim::{RunningSim, SimCluster, SimOptions, Timing};
use hami_api::gpu::{self, NODE_NVIDIA_REGISTER, POD_DEVICES_ALLOCATED};
use hami_estimator::fleet::{Fleet, GenerateOptions, generate};
use hami_estimator::{ReplicaShape, Snapshot, WorkloadRef, k8s};
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;

const FLEET: &str = r#"
cluster: sim-a
nodes:
  - name: a100-0
    labels: {gpu.model: a100}
    allocatable: {cpu: "32", memory: 128Gi, pods: "110"}
    gpus:
      - {id: GPU-a100-0-0, model: NVIDIA-A100-SXM4-80GB, memoryMiB: 81920, slots: 4}
      - {id: GPU-a100-0-1, model: NVIDIA-A100-SXM4-80GB, memoryMiB: 81920, slots: 4}
  - name: a100-1
    labels: {gpu.model: a100}
    allocatable: {cpu: "32", memory: 128Gi, pods: "110"}
    gpus:
      - {id: GPU-a100-1-0, model: NVIDIA-A100-SXM4-80GB, memoryMiB: 81920, slots: 4}
      - {id: GPU-a100-1-1, model: NVIDIA-A100-SXM4-80GB, memoryMiB: 81920, slots: 4}
  - name: t4-0
    labels: {gpu.model: t4}
    allocatable: {cpu: "16", memory: 64Gi, pods: "110"}
    gpus:
      - {id: GPU-t4-0-0, model: NVIDIA-Tesla-T4, memoryMiB: 15360, slots: 4}
      - {id: GPU-t4-0-1, model: NVIDIA-Tesla-T4, memoryMiB: 15360, slots: 4}
  - name: cpu-0
    allocatable: {cpu: "8", memory: 32Gi, pods: "110"}
"#;

fn fast() -> SimOptions {
    SimOptions {
        timing: Timing {
            start_delay_ms: 50,
            job_run_ms: 300,
            ..Timing::default()
        },
    }
}

async fn start(fleet: Fleet) -> (RunningSim, kube::Client) {
    let sim = SimCluster::start_with("sim-a", fleet, "127.0.0.1:0".parse().unwrap(), fast())
        .await
        .unwrap();
    let client = sim.client().unwrap();
    (sim, client)
}

/// Polls `check` until it returns Some, or panics after 30 s with `what`.
async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn gpu_deployment(name: &str, replicas: i32, gpus: u32, mem: u64, cores: u32) -> Deployment {
    serde_json::from_value(json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{
                    "name": "main",
                    "image": "trainer:1",
                    "resources": {"limits": {
                        "nvidia.com/gpu": gpus.to_string(),
                        "nvidia.com/gpumem": mem.to_string(),
                        "nvidia.com/gpucores": cores.to_string(),
                    }}
                }]}
            }
        }
    }))
    .unwrap()
}

fn shape_of(d: &Deployment) -> ReplicaShape {
    let t = &d.spec.as_ref().unwrap().template;
    k8s::shape_from_pod_spec(t.spec.as_ref().unwrap(), &BTreeMap::new()).unwrap()
}

/// The estimator's snapshot of the cluster, read through its API.
async fn snapshot(client: &kube::Client) -> Snapshot {
    let nodes = Api::<Node>::all(client.clone())
        .list(&ListParams::default())
        .await
        .unwrap();
    let pods = Api::<Pod>::all(client.clone())
        .list(&ListParams::default())
        .await
        .unwrap();
    Snapshot::from_objects(
        nodes
            .items
            .iter()
            .map(|n| k8s::node_info(n).unwrap())
            .collect(),
        pods.items
            .iter()
            .map(|p| k8s::pod_info(p).unwrap())
            .collect(),
    )
}

fn phase(p: &Pod) -> &str {
    p.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("")
}

async fn pods_of(client: &kube::Client, app: &str) -> Vec<Pod> {
    Api::<Pod>::namespaced(client.clone(), "default")
        .list(&ListParams::default().labels(&format!("app={app}")))
        .await
        .unwrap()
        .items
}

fn unschedulable(p: &Pod) -> bool {
    p.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .into_iter()
        .flatten()
        .any(|c| {
            c.type_ == "PodScheduled"
                && c.status == "False"
                && c.reason.as_deref() == Some("Unschedulable")
                && c.message
                    .as_deref()
                    .is_some_and(|m| m.contains("nodes are available"))
                && c.last_transition_time.is_some()
        })
}

/// Every device's use (from the pods' allocation annotations) is within
/// what the node annotation registers; returns device UUID -> model of
/// every device in use.
async fn check_no_overcommit(client: &kube::Client) -> BTreeMap<String, String> {
    let nodes = Api::<Node>::all(client.clone())
        .list(&ListParams::default())
        .await
        .unwrap();
    let pods = Api::<Pod>::all(client.clone())
        .list(&ListParams::default())
        .await
        .unwrap();
    let mut used: BTreeMap<(String, String), (u64, u32, u32)> = BTreeMap::new();
    for p in &pods.items {
        if matches!(phase(p), "Succeeded" | "Failed") {
            continue;
        }
        let Some(a) = p
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(POD_DEVICES_ALLOCATED))
        else {
            continue;
        };
        let node = p
            .spec
            .as_ref()
            .unwrap()
            .node_name
            .clone()
            .expect("allocated pod is bound");
        let devices: Vec<_> = gpu::parse_pod_devices(a)
            .unwrap()
            .into_iter()
            .flatten()
            .collect();
        let distinct: std::collections::BTreeSet<_> = devices.iter().map(|d| &d.uuid).collect();
        assert_eq!(
            distinct.len(),
            devices.len(),
            "a replica uses a device twice"
        );
        for d in devices {
            let e = used.entry((node.clone(), d.uuid)).or_default();
            e.0 += d.mem_mib;
            e.1 += d.cores;
            e.2 += 1;
        }
    }
    let mut models = BTreeMap::new();
    for ((node, uuid), (mem, cores, n)) in used {
        let n_obj = nodes
            .items
            .iter()
            .find(|x| x.metadata.name.as_deref() == Some(&node))
            .unwrap();
        let reg = n_obj
            .metadata
            .annotations
            .as_ref()
            .unwrap()
            .get(NODE_NVIDIA_REGISTER)
            .unwrap();
        let dev = gpu::parse_node_devices(reg)
            .unwrap()
            .into_iter()
            .find(|d| d.id == uuid)
            .unwrap_or_else(|| panic!("pod names device {uuid} not on node {node}"));
        assert!(mem <= dev.devmem, "{uuid}: {mem} MiB > {}", dev.devmem);
        assert!(cores <= dev.devcore, "{uuid}: {cores}% > {}", dev.devcore);
        assert!(n <= dev.count, "{uuid}: {n} users > {} slots", dev.count);
        models.insert(uuid, dev.model);
    }
    models
}

async fn deployment_ready(api: &Api<Deployment>, name: &str, n: i32) -> Option<Deployment> {
    let d = api.get(name).await.ok()?;
    let s = d.status.as_ref()?;
    (s.ready_replicas.unwrap_or(0) == n
        && s.available_replicas.unwrap_or(0) == n
        && s.updated_replicas.unwrap_or(0) == n
        && s.replicas.unwrap_or(0) == n
        && s.observed_generation == d.metadata.generation)
        .then_some(d)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gpu_deployment_lifecycle() {
    let (sim, client) = start(Fleet::from_yaml(FLEET).unwrap()).await;
    let deploys: Api<Deployment> = Api::namespaced(client.clone(), "default");
    // 1 GPU, 20000 MiB, 30% cores: 3 per A100 (cores), none on a T4 (memory).
    let d = gpu_deployment("train", 5, 1, 20000, 30);
    let shape = shape_of(&d);
    assert_eq!(snapshot(&client).await.max_available_replicas(&shape), 12);

    deploys.create(&PostParams::default(), &d).await.unwrap();
    let got = eventually("5 ready", || deployment_ready(&deploys, "train", 5)).await;
    let conditions = got.status.unwrap().conditions.unwrap();
    assert!(
        conditions
            .iter()
            .any(|c| c.type_ == "Available" && c.status == "True")
    );
    let pods = pods_of(&client, "train").await;
    assert_eq!(pods.len(), 5);
    for p in &pods {
        assert_eq!(phase(p), "Running");
        let node = p.spec.as_ref().unwrap().node_name.as_deref().unwrap();
        assert!(node.starts_with("a100-"), "placed on {node}");
        let owner = &p.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!(owner.kind, "ReplicaSet");
        assert!(
            p.metadata
                .labels
                .as_ref()
                .unwrap()
                .contains_key("pod-template-hash")
        );
    }
    let models = check_no_overcommit(&client).await;
    assert!(models.values().all(|m| m.contains("A100")));
    assert_eq!(snapshot(&client).await.max_available_replicas(&shape), 7);
    let sets = Api::<ReplicaSet>::namespaced(client.clone(), "default")
        .list(&ListParams::default())
        .await
        .unwrap();
    assert_eq!(sets.items.len(), 1);
    assert!(
        sets.items[0]
            .metadata
            .name
            .as_deref()
            .unwrap()
            .starts_with("train-")
    );

    // Scale down frees GPUs.
    deploys
        .patch(
            "train",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 2}})),
        )
        .await
        .unwrap();
    eventually("2 ready", || deployment_ready(&deploys, "train", 2)).await;
    eventually("3 pods gone", || async {
        (pods_of(&client, "train").await.len() == 2).then_some(())
    })
    .await;
    assert_eq!(snapshot(&client).await.max_available_replicas(&shape), 10);

    // Larger than the fleet: 12 run, the rest stay Pending, Unschedulable.
    deploys
        .patch(
            "train",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 15}})),
        )
        .await
        .unwrap();
    let pods = eventually("12 running, 3 unschedulable", || async {
        let pods = pods_of(&client, "train").await;
        let running = pods.iter().filter(|p| phase(p) == "Running").count();
        let stuck = pods.iter().filter(|p| unschedulable(p)).count();
        (pods.len() == 15 && running == 12 && stuck == 3).then_some(pods)
    })
    .await;
    for p in pods.iter().filter(|p| unschedulable(p)) {
        assert!(p.spec.as_ref().unwrap().node_name.is_none());
    }
    check_no_overcommit(&client).await;
    let mut snap = snapshot(&client).await;
    assert_eq!(snap.max_available_replicas(&shape), 0);
    let workload = WorkloadRef {
        kind: "Deployment".into(),
        namespace: "default".into(),
        name: "train".into(),
    };
    let now = k8s_openapi::jiff::Timestamp::now().as_millisecond();
    assert_eq!(snap.unschedulable_replicas(&workload, 0, now), 3);
    eventually("status shows 12 ready of 15", || async {
        let s = deploys.get("train").await.ok()?.status?;
        (s.ready_replicas == Some(12)
            && s.replicas == Some(15)
            && s.unavailable_replicas == Some(3)
            && s.conditions
                .iter()
                .flatten()
                .any(|c| c.type_ == "Available" && c.status == "False"))
        .then_some(())
    })
    .await;

    // Deleting the Deployment removes its ReplicaSet and pods, freeing every GPU.
    deploys
        .delete("train", &DeleteParams::default())
        .await
        .unwrap();
    eventually("replica sets and pods gone", || async {
        let sets = Api::<ReplicaSet>::namespaced(client.clone(), "default")
            .list(&ListParams::default())
            .await
            .ok()?;
        (sets.items.is_empty() && pods_of(&client, "train").await.is_empty()).then_some(())
    })
    .await;
    assert_eq!(snapshot(&client).await.max_available_replicas(&shape), 12);
    sim.stop().await;
}

/// What the estimator says fits, computed from the simulated cluster's
/// state through its API, is exactly what the binder then places — on a
/// generated fleet with pods already running and a 2-GPU shape.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn estimate_equals_what_the_binder_places() {
    let mut fleet = generate(&GenerateOptions {
        cluster: "sim-a".into(),
        nodes: 6,
        pods_per_node: 4,
        gpus_per_node: Some(4),
        slots_per_gpu: Some(4),
        taints: false,
        seed: 11,
    });
    fleet.pending.clear();
    let (sim, client) = start(fleet).await;
    let d = gpu_deployment("fit", 1, 2, 12000, 20);
    let shape = shape_of(&d);
    let max = snapshot(&client).await.max_available_replicas(&shape);
    assert!(max > 2, "the generated fleet should hold a few: {max}");
    let want = i32::try_from(max).unwrap() + 3;
    let mut d = d;
    d.spec.as_mut().unwrap().replicas = Some(want);
    let deploys: Api<Deployment> = Api::namespaced(client.clone(), "default");
    deploys.create(&PostParams::default(), &d).await.unwrap();
    let running = eventually("binder settles", || async {
        let pods = pods_of(&client, "fit").await;
        let running = pods.iter().filter(|p| phase(p) == "Running").count();
        let stuck = pods.iter().filter(|p| unschedulable(p)).count();
        (pods.len() == want as usize && running + stuck == pods.len() && stuck >= 3)
            .then_some(running)
    })
    .await;
    assert_eq!(running as u64, max);
    check_no_overcommit(&client).await;
    assert_eq!(snapshot(&client).await.max_available_replicas(&shape), 0);
    sim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn job_completes_and_frees_its_gpus() {
    let (sim, client) = start(Fleet::from_yaml(FLEET).unwrap()).await;
    let jobs: Api<Job> = Api::namespaced(client.clone(), "default");
    let job: Job = serde_json::from_value(json!({
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "bench", "namespace": "default"},
        "spec": {
            "completions": 3,
            "parallelism": 2,
            "template": {
                "metadata": {"labels": {"app": "bench"}},
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [{"name": "main", "image": "bench:1",
                        "resources": {"limits": {"nvidia.com/gpu": "2"}}}]
                }
            }
        }
    }))
    .unwrap();
    jobs.create(&PostParams::default(), &job).await.unwrap();
    let done = eventually("job complete", || async {
        let j = jobs.get("bench").await.ok()?;
        let s = j.status.clone()?;
        let complete = s
            .conditions
            .iter()
            .flatten()
            .any(|c| c.type_ == "Complete" && c.status == "True");
        (complete && s.succeeded == Some(3)).then_some(s)
    })
    .await;
    assert!(done.completion_time.is_some());
    assert_eq!(done.active.unwrap_or(0), 0);
    let pods = pods_of(&client, "bench").await;
    assert_eq!(pods.len(), 3);
    assert!(pods.iter().all(|p| phase(p) == "Succeeded"));
    assert!(pods.iter().all(|p| {
        p.metadata
            .labels
            .as_ref()
            .unwrap()
            .get("job-name")
            .map(String::as_str)
            == Some("bench")
    }));
    // Finished pods hold nothing: a whole-GPU replica fits on all 6 GPUs again.
    let whole = k8s::shape_from_pod_spec(
        job.spec.as_ref().unwrap().template.spec.as_ref().unwrap(),
        &BTreeMap::new(),
    )
    .unwrap();
    assert_eq!(snapshot(&client).await.max_available_replicas(&whole), 3);
    // Deleting the Job removes its pods.
    jobs.delete("bench", &DeleteParams::default())
        .await
        .unwrap();
    eventually("job pods gone", || async {
        pods_of(&client, "bench").await.is_empty().then_some(())
    })
    .await;
    sim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statefulset_pods_by_ordinal() {
    let (sim, client) = start(Fleet::from_yaml(FLEET).unwrap()).await;
    let api: Api<StatefulSet> = Api::namespaced(client.clone(), "default");
    let sts: StatefulSet = serde_json::from_value(json!({
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": "db", "namespace": "default"},
        "spec": {
            "replicas": 3,
            "serviceName": "db",
            "selector": {"matchLabels": {"app": "db"}},
            "template": {
                "metadata": {"labels": {"app": "db"}},
                "spec": {
                    "nodeSelector": {"gpu.model": "t4"},
                    "containers": [{"name": "main", "image": "db:1",
                        "resources": {"limits": {"nvidia.com/gpu": "1", "nvidia.com/gpumem": "4000"}}}]
                }
            }
        }
    }))
    .unwrap();
    api.create(&PostParams::default(), &sts).await.unwrap();
    eventually("3 ready", || async {
        let s = api.get("db").await.ok()?.status?;
        (s.ready_replicas == Some(3)).then_some(())
    })
    .await;
    let mut names: Vec<String> = pods_of(&client, "db")
        .await
        .iter()
        .map(|p| {
            assert_eq!(p.spec.as_ref().unwrap().node_name.as_deref(), Some("t4-0"));
            p.metadata.name.clone().unwrap()
        })
        .collect();
    names.sort();
    assert_eq!(names, ["db-0", "db-1", "db-2"]);
    api.patch(
        "db",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"replicas": 1}})),
    )
    .await
    .unwrap();
    eventually("scaled to db-0", || async {
        let pods = pods_of(&client, "db").await;
        (pods.len() == 1 && pods[0].metadata.name.as_deref() == Some("db-0")).then_some(())
    })
    .await;
    sim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_pause_and_resume() {
    let (mut sim, client) = start(Fleet::from_yaml(FLEET).unwrap()).await;
    let nodes: Api<Node> = Api::all(client.clone());
    assert_eq!(
        nodes
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .len(),
        4
    );
    sim.pause_api().await;
    assert!(!sim.api_available());
    assert!(nodes.list(&ListParams::default()).await.is_err());
    sim.resume_api().await.unwrap();
    assert_eq!(
        nodes
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .len(),
        4
    );
    // The controllers came back too.
    let deploys: Api<Deployment> = Api::namespaced(client.clone(), "default");
    deploys
        .create(
            &PostParams::default(),
            &gpu_deployment("after", 2, 1, 1000, 10),
        )
        .await
        .unwrap();
    eventually("2 ready after resume", || {
        deployment_ready(&deploys, "after", 2)
    })
    .await;
    // The kubeconfig names the same server.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kubeconfig");
    sim.write_kubeconfig(&path).unwrap();
    let kc = kube::config::Kubeconfig::read_from(&path).unwrap();
    assert_eq!(
        kc.clusters[0].cluster.as_ref().unwrap().server.as_deref(),
        Some(sim.url().as_str())
    );
    sim.stop().await;
}
