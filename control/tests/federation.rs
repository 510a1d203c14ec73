//! Member clusters end to end, with the real `hami up --sim-clusters 3`
//! over loopback HTTP and gRPC: three simulated GPU clusters (A100, H100,
//! T4, each with a different number of free GPUs), two joined in Pull mode
//! with an agent and the third in Push mode through a Secret.
//!
//! A GPU Deployment (8 replicas, 1 GPU + 8000 MiB each) with a
//! Divided/Weighted/dynamicWeight policy and an OverridePolicy giving each
//! cluster its own image registry must be divided within what each
//! cluster's estimator said fits (asked over gRPC before applying), run with
//! every pod Running in its member, carry each cluster's registry into the
//! member's Deployment, and report readyReplicas 8 on the control plane.
//! Then hami-control is SIGKILLed and started again on the same data
//! directory: bindings, Works and placement are unchanged, and the pods run
//! again in the members. Deleting the Deployment removes every pod from
//! every member.
//!
//! Honest note on the restart: the simulated members live inside the `hami
//! up` process, so they restart EMPTY (new ports, new kubeconfigs, no
//! workloads). What is checked is that the control plane resumes from its
//! store and the agents re-apply every Work to the fresh members.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::BTreeMap;

use hami_api::binding::ResourceBinding;
use hami_api::cluster::{Cluster, ESTIMATOR_ENDPOINT_ANNOTATION};
use hami_api::override_policy::OverridePolicy;
use hami_api::propagation::PropagationPolicy;
use hami_api::work::Work;
use hami_proto::github::com::karmada_io::karmada::pkg::estimator::{pb, service};
use hami_proto::k8s::io::apimachinery::pkg::api::resource as qpb;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use serde_json::{Value, json};
use support::{Hami, Timeline, eventually};

const MEMBERS: [&str; 3] = ["member-1", "member-2", "member-3"];
const REPLICAS: i32 = 8;

/// One fleet per member, sized so the estimates differ: A100 4 free GPUs,
/// H100 3 (one of four held by a running pod), T4 2. One whole GPU per
/// replica (one share slot per GPU).
const FLEETS: &str = r#"
- nodes:
  - name: a100-0
    allocatable: {cpu: "64", memory: 512Gi, pods: "110"}
    gpus:
    - {id: A100-0, model: NVIDIA-A100-SXM4-80GB, memoryMiB: 81920}
    - {id: A100-1, model: NVIDIA-A100-SXM4-80GB, memoryMiB: 81920}
    - {id: A100-2, model: NVIDIA-A100-SXM4-80GB, memoryMiB: 81920}
    - {id: A100-3, model: NVIDIA-A100-SXM4-80GB, memoryMiB: 81920}
- nodes:
  - name: h100-0
    allocatable: {cpu: "64", memory: 512Gi, pods: "110"}
    gpus:
    - {id: H100-0, model: NVIDIA-H100-80GB-HBM3, memoryMiB: 81920}
    - {id: H100-1, model: NVIDIA-H100-80GB-HBM3, memoryMiB: 81920}
    - {id: H100-2, model: NVIDIA-H100-80GB-HBM3, memoryMiB: 81920}
    - {id: H100-3, model: NVIDIA-H100-80GB-HBM3, memoryMiB: 81920}
    pods:
    - name: busy
      requests: {cpu: "4"}
      gpus: [{device: H100-0, memoryMiB: 81920, cores: 100}]
- nodes:
  - {name: t4-0, allocatable: {cpu: "16", memory: 64Gi, pods: "110"}, gpus: [{id: T4-0, model: NVIDIA-Tesla-T4, memoryMiB: 15360}]}
  - {name: t4-1, allocatable: {cpu: "16", memory: 64Gi, pods: "110"}, gpus: [{id: T4-1, model: NVIDIA-Tesla-T4, memoryMiB: 15360}]}
"#;

fn registry(cluster: &str) -> String {
    format!("registry.{cluster}.example.com")
}

fn deployment() -> Deployment {
    serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "train", "namespace": "default"},
        "spec": {
            "replicas": REPLICAS,
            "selector": {"matchLabels": {"app": "train"}},
            "template": {
                "metadata": {"labels": {"app": "train"}},
                "spec": {"containers": [{
                    "name": "main",
                    "image": "hub.local/ml/trainer:1",
                    "resources": {
                        "requests": {"cpu": "1"},
                        "limits": {"nvidia.com/gpu": "1", "nvidia.com/gpumem": "8000"}
                    }
                }]}
            }
        }
    }))
    .unwrap()
}

fn propagation() -> PropagationPolicy {
    serde_json::from_value(json!({
        "apiVersion": "policy.hami.io/v1alpha1", "kind": "PropagationPolicy",
        "metadata": {"name": "train", "namespace": "default"},
        "spec": {
            "resourceSelectors": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": "train"}],
            "placement": {
                "clusterAffinity": {"clusterNames": MEMBERS},
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

fn overrides() -> OverridePolicy {
    let rules: Vec<Value> = MEMBERS
        .iter()
        .map(|c| {
            json!({
                "targetCluster": {"clusterNames": [c]},
                "overriders": {"imageOverrider": [
                    {"component": "Registry", "operator": "replace", "value": registry(c)}
                ]},
            })
        })
        .collect();
    serde_json::from_value(json!({
        "apiVersion": "policy.hami.io/v1alpha1", "kind": "OverridePolicy",
        "metadata": {"name": "registries", "namespace": "default"},
        "spec": {
            "resourceSelectors": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": "train"}],
            "overrideRules": rules,
        }
    }))
    .unwrap()
}

/// Karmada's MaxAvailableReplicas for the Deployment's replica shape.
async fn estimate(cluster: &str, endpoint: &str) -> i32 {
    let mut client =
        service::estimator_client::EstimatorClient::connect(format!("http://{endpoint}"))
            .await
            .unwrap();
    let q = |s: &str| qpb::Quantity {
        string: Some(s.to_string()),
    };
    let request = pb::MaxAvailableReplicasRequest {
        cluster: Some(cluster.to_string()),
        replica_requirements: Some(pb::ReplicaRequirements {
            resource_request: [
                ("cpu".to_string(), q("1")),
                ("nvidia.com/gpu".to_string(), q("1")),
                ("nvidia.com/gpumem".to_string(), q("8000")),
            ]
            .into(),
            ..Default::default()
        }),
        assumed_workloads: Vec::new(),
    };
    client
        .max_available_replicas(request)
        .await
        .unwrap()
        .into_inner()
        .max_replicas
        .unwrap()
}

fn ready(c: &Cluster) -> bool {
    c.status.as_ref().is_some_and(|s| {
        s.conditions
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "True")
    })
}

async fn all_ready(clusters: &Api<Cluster>) -> Result<BTreeMap<String, Cluster>, String> {
    let list = clusters
        .list(&ListParams::default())
        .await
        .map_err(|e| e.to_string())?;
    let by_name: BTreeMap<String, Cluster> = list
        .items
        .into_iter()
        .map(|c| (c.metadata.name.clone().unwrap(), c))
        .collect();
    for m in MEMBERS {
        match by_name.get(m) {
            Some(c) if ready(c) => {}
            Some(c) => return Err(format!("{m} not Ready: {:?}", c.status)),
            None => return Err(format!("{m} not registered")),
        }
    }
    Ok(by_name)
}

async fn member_client(hami: &Hami, name: &str) -> kube::Client {
    let path = hami
        .data_dir
        .join("members")
        .join(format!("{name}.kubeconfig"));
    let kc = kube::config::Kubeconfig::read_from(&path).unwrap();
    let config = kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .unwrap();
    kube::Client::try_from(config).unwrap()
}

async fn member_clients(hami: &Hami) -> BTreeMap<String, kube::Client> {
    let mut out = BTreeMap::new();
    for m in MEMBERS {
        out.insert(m.to_string(), member_client(hami, m).await);
    }
    out
}

/// The binding's replicas per cluster once scheduled.
async fn placement(bindings: &Api<ResourceBinding>) -> Result<BTreeMap<String, i32>, String> {
    let rb = bindings
        .get("train-deployment")
        .await
        .map_err(|e| e.to_string())?;
    let scheduled = rb.status.as_ref().is_some_and(|s| {
        s.conditions
            .iter()
            .any(|c| c.type_ == "Scheduled" && c.status == "True")
    });
    if !scheduled || rb.spec.clusters.is_empty() {
        return Err(format!("not scheduled yet: {:?}", rb.status));
    }
    Ok(rb
        .spec
        .clusters
        .iter()
        .map(|t| (t.name.clone(), t.replicas))
        .collect())
}

/// Every `app=train` pod of every member is Running and each member holds
/// exactly its share; the member's Deployment carries its registry.
async fn pods_running(
    members: &BTreeMap<String, kube::Client>,
    want: &BTreeMap<String, i32>,
) -> Result<(), String> {
    for (name, client) in members {
        let pods: Vec<Pod> = Api::<Pod>::namespaced(client.clone(), "default")
            .list(&ListParams::default().labels("app=train"))
            .await
            .map_err(|e| format!("{name}: {e}"))?
            .items;
        let expected = want.get(name).copied().unwrap_or(0);
        let phases: Vec<String> = pods
            .iter()
            .map(|p| {
                p.status
                    .as_ref()
                    .and_then(|s| s.phase.clone())
                    .unwrap_or_default()
            })
            .collect();
        if pods.len() != expected as usize || phases.iter().any(|p| p != "Running") {
            return Err(format!("{name}: want {expected} Running, have {phases:?}"));
        }
        if expected > 0 {
            let d = Api::<Deployment>::namespaced(client.clone(), "default")
                .get("train")
                .await
                .map_err(|e| format!("{name}: {e}"))?;
            let image = d.spec.unwrap().template.spec.unwrap().containers[0]
                .image
                .clone()
                .unwrap();
            assert_eq!(image, format!("{}/ml/trainer:1", registry(name)), "{name}");
        }
    }
    Ok(())
}

/// The Works of the binding: cluster -> (replicas, image, uid).
async fn works(control: &kube::Client) -> BTreeMap<String, (i64, String, String)> {
    Api::<Work>::all(control.clone())
        .list(&ListParams::default().labels("resourcebinding.hami.io/name=train-deployment"))
        .await
        .unwrap()
        .items
        .iter()
        .map(|w| {
            let m = &w.spec.workload.manifests[0];
            (
                w.metadata
                    .namespace
                    .clone()
                    .unwrap()
                    .trim_start_matches("hami-es-")
                    .to_string(),
                (
                    m.pointer("/spec/replicas").and_then(Value::as_i64).unwrap(),
                    m.pointer("/spec/template/spec/containers/0/image")
                        .and_then(Value::as_str)
                        .unwrap()
                        .to_string(),
                    w.metadata.uid.clone().unwrap(),
                ),
            )
        })
        .collect()
}

async fn ready_replicas(deploys: &Api<Deployment>) -> Result<(), String> {
    let d = deploys.get("train").await.map_err(|e| e.to_string())?;
    let got = d.status.as_ref().and_then(|s| s.ready_replicas);
    (got == Some(REPLICAS))
        .then_some(())
        .ok_or(format!("template readyReplicas {got:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_simulated_clusters_run_a_divided_gpu_deployment() {
    let mut t = Timeline::new("federation");
    let tmp = tempfile::tempdir().unwrap();
    let fleet = tmp.path().join("fleets.yaml");
    std::fs::write(&fleet, FLEETS).unwrap();
    let data = tmp.path().join("data");
    let mut hami = Hami::start_with_args(
        &data,
        "127.0.0.1:0",
        &["--sim-clusters", "3", "--fleet", fleet.to_str().unwrap()],
    );
    t.mark("hami up --sim-clusters 3 --fleet: API ready");
    let control = hami.client().await;
    let clusters: Api<Cluster> = Api::all(control.clone());

    let by_name = eventually("3 Clusters Ready", 40, || all_ready(&clusters)).await;
    let modes: Vec<String> = MEMBERS
        .iter()
        .map(|m| format!("{:?}", by_name[*m].spec.sync_mode))
        .collect();
    assert_eq!(modes, ["Pull", "Pull", "Push"]);
    let models: Vec<String> = MEMBERS
        .iter()
        .map(|m| {
            by_name[*m].status.as_ref().unwrap().gpu_summary[0]
                .model
                .clone()
        })
        .collect();
    assert_eq!(
        models,
        [
            "NVIDIA-A100-SXM4-80GB",
            "NVIDIA-H100-80GB-HBM3",
            "NVIDIA-Tesla-T4"
        ]
    );
    t.mark("3 Clusters Ready=True (Pull, Pull, Push)");

    // What each cluster's estimator says fits, over gRPC, before applying.
    let mut estimates = BTreeMap::new();
    for m in MEMBERS {
        let endpoint = by_name[m]
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(ESTIMATOR_ENDPOINT_ANNOTATION))
            .cloned()
            .unwrap_or_else(|| panic!("{m} has no estimator endpoint"));
        estimates.insert(m.to_string(), estimate(m, &endpoint).await);
    }
    let want_estimates: BTreeMap<String, i32> = [("member-1", 4), ("member-2", 3), ("member-3", 2)]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
    assert_eq!(estimates, want_estimates, "estimates from the fleets");
    t.mark(format!(
        "estimator gRPC MaxAvailableReplicas: {estimates:?}"
    ));

    let pp = PostParams::default();
    let deploys: Api<Deployment> = Api::namespaced(control.clone(), "default");
    Api::<PropagationPolicy>::namespaced(control.clone(), "default")
        .create(&pp, &propagation())
        .await
        .unwrap();
    Api::<OverridePolicy>::namespaced(control.clone(), "default")
        .create(&pp, &overrides())
        .await
        .unwrap();
    deploys.create(&pp, &deployment()).await.unwrap();
    t.mark("applied Deployment (8 x 1 GPU + 8000 MiB), PropagationPolicy, OverridePolicy");

    let bindings: Api<ResourceBinding> = Api::namespaced(control.clone(), "default");
    let placed = eventually("binding scheduled", 20, || placement(&bindings)).await;
    assert_eq!(placed.values().sum::<i32>(), REPLICAS, "{placed:?}");
    for (c, r) in &placed {
        assert!(
            *r <= estimates[c],
            "{c}: {r} replicas > estimate {}",
            estimates[c]
        );
    }
    assert_eq!(
        placed.len(),
        3,
        "every cluster has room and a share: {placed:?}"
    );
    t.mark(format!("binding spec.clusters: {placed:?}"));

    let ws = works(&control).await;
    for (c, r) in &placed {
        let (replicas, image, _) = &ws[c];
        assert_eq!(*replicas, i64::from(*r), "{c}");
        assert_eq!(image, &format!("{}/ml/trainer:1", registry(c)), "{c}");
    }
    t.mark("each Work carries its replicas and its cluster's registry");

    let members = member_clients(&hami).await;
    eventually("pods Running in every member", 30, || {
        pods_running(&members, &placed)
    })
    .await;
    t.mark(
        "every pod Running in its member (none Pending); member Deployments carry their registry",
    );
    eventually("readyReplicas", 30, || ready_replicas(&deploys)).await;
    t.mark("template status.readyReplicas = 8 on the control plane");

    // Restart hami-control: SIGKILL, same data directory. The simulated
    // members restart empty (they live in the process).
    hami.kill();
    std::fs::remove_dir_all(hami.data_dir.join("members")).unwrap();
    hami.restart();
    t.mark("hami-control SIGKILLed and started again (members restart empty)");
    let control = hami.client().await;
    let clusters: Api<Cluster> = Api::all(control.clone());
    let bindings: Api<ResourceBinding> = Api::namespaced(control.clone(), "default");
    let deploys: Api<Deployment> = Api::namespaced(control.clone(), "default");
    let after = eventually("binding after restart", 20, || placement(&bindings)).await;
    assert_eq!(after, placed, "placement unchanged across the restart");
    let ws_after = works(&control).await;
    assert_eq!(
        ws_after, ws,
        "same Works (uids, replicas, images) after the restart"
    );
    t.mark("binding and Works unchanged after the restart");
    eventually("fresh member kubeconfigs", 20, || async {
        let dir = hami.data_dir.join("members");
        let n = MEMBERS
            .iter()
            .filter(|m| dir.join(format!("{m}.kubeconfig")).exists())
            .count();
        (n == MEMBERS.len())
            .then_some(())
            .ok_or(format!("{n} written"))
    })
    .await;
    let members = member_clients(&hami).await;
    eventually("pods Running again", 40, || pods_running(&members, &placed)).await;
    eventually("Clusters Ready after restart", 20, || all_ready(&clusters)).await;
    eventually("readyReplicas after restart", 20, || {
        ready_replicas(&deploys)
    })
    .await;
    t.mark("agents re-applied every Work: pods Running again, readyReplicas 8");

    // Deleting the template removes every pod from every member.
    deploys
        .delete("train", &DeleteParams::default())
        .await
        .unwrap();
    let none: BTreeMap<String, i32> = BTreeMap::new();
    eventually("pods gone from every member", 30, || {
        pods_running(&members, &none)
    })
    .await;
    eventually("Works gone", 20, || async {
        let n = works(&control).await.len();
        (n == 0).then_some(()).ok_or(format!("{n} Works left"))
    })
    .await;
    t.mark("Deployment deleted: no pod left in any member, no Work left");

    t.print();
}

/// The Ready condition's (status, reason, message) of a Cluster.
async fn ready_condition(clusters: &Api<Cluster>, name: &str) -> (String, String, String) {
    let Ok(c) = clusters.get(name).await else {
        return Default::default();
    };
    c.status
        .unwrap_or_default()
        .conditions
        .into_iter()
        .find(|c| c.type_ == "Ready")
        .map(|c| (c.status, c.reason, c.message))
        .unwrap_or_default()
}

fn has_estimator(c: &Cluster) -> bool {
    c.metadata
        .annotations
        .as_ref()
        .is_some_and(|a| a.contains_key(ESTIMATOR_ENDPOINT_ANNOTATION))
}

/// The value of an unlabelled metric on the control plane's /metrics.
fn metric(hami: &Hami, name: &str) -> Option<i64> {
    let (_, body) = hami.get("/metrics").ok()?;
    body.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .and_then(|v| v.trim().parse().ok())
}

/// Push mode through its Secret: a broken kubeconfig stops the agent and
/// says InvalidCredentials (estimator annotation dropped); restoring it
/// restarts the agent and Ready returns; a missing Secret says so; a switch
/// to Pull stops the in-process agent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_cluster_follows_its_secret() {
    use k8s_openapi::ByteString;
    use k8s_openapi::api::core::v1::Secret;
    use kube::api::{Patch, PatchParams};

    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    // One simulated cluster: member-1 is the Push one.
    let hami = Hami::start_with_args(&data, "127.0.0.1:0", &["--sim-clusters", "1"]);
    let control = hami.client().await;
    let clusters: Api<Cluster> = Api::all(control.clone());
    let secrets: Api<Secret> = Api::namespaced(control.clone(), "hami-system");
    let name = "member-1";
    let secret_name = "member-1-kubeconfig";
    let status = |want: &'static str, reason: &'static str, text: &'static str| {
        let clusters = clusters.clone();
        move || {
            let clusters = clusters.clone();
            async move {
                let got = ready_condition(&clusters, name).await;
                (got.0 == want && got.1 == reason && got.2.contains(text))
                    .then_some(())
                    .ok_or(format!("{got:?}"))
            }
        }
    };
    eventually("Push member Ready", 30, status("True", "ClusterReady", "")).await;
    assert!(has_estimator(&clusters.get(name).await.unwrap()));
    assert_eq!(metric(&hami, "hami_push_agents_running"), Some(1));

    let set_kubeconfig = |text: String| {
        let secrets = secrets.clone();
        async move {
            let mut s = secrets.get(secret_name).await.unwrap();
            s.metadata.managed_fields = None;
            s.data = Some([("kubeconfig".to_string(), ByteString(text.into_bytes()))].into());
            secrets
                .replace(secret_name, &PostParams::default(), &s)
                .await
                .unwrap();
        }
    };
    let good = std::fs::read_to_string(data.join("members/member-1.kubeconfig")).unwrap();

    // A broken kubeconfig: no agent, Ready=False InvalidCredentials.
    set_kubeconfig("not: [a kubeconfig".into()).await;
    eventually(
        "InvalidCredentials",
        20,
        status("False", "InvalidCredentials", "not a kubeconfig"),
    )
    .await;
    assert!(!has_estimator(&clusters.get(name).await.unwrap()));
    assert_eq!(metric(&hami, "hami_push_agents_running"), Some(0));
    assert_eq!(
        metric(&hami, "hami_push_invalid_credentials_clusters"),
        Some(1)
    );

    // Restored: the agent starts again and Ready returns with the estimator.
    set_kubeconfig(good).await;
    eventually("Ready again", 30, status("True", "ClusterReady", "")).await;
    eventually("estimator back", 10, || async {
        has_estimator(&clusters.get(name).await.unwrap())
            .then_some(())
            .ok_or("no annotation".to_string())
    })
    .await;
    assert_eq!(metric(&hami, "hami_push_agents_running"), Some(1));

    // The Secret deleted: says which one is missing.
    secrets
        .delete(secret_name, &DeleteParams::default())
        .await
        .unwrap();
    eventually(
        "missing secret",
        20,
        status(
            "False",
            "InvalidCredentials",
            "hami-system/member-1-kubeconfig not found",
        ),
    )
    .await;

    // Switched to Pull: the controller lets go (no agent, no write).
    let patch = json!({"spec": {"syncMode": "Pull"}});
    clusters
        .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    eventually("no Push agent, no invalid cluster", 10, || async {
        let gauges = (
            metric(&hami, "hami_push_agents_running"),
            metric(&hami, "hami_push_invalid_credentials_clusters"),
        );
        (gauges == (Some(0), Some(0)))
            .then_some(())
            .ok_or(format!("{gauges:?}"))
    })
    .await;
}
