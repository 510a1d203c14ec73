//! Taint-based failover end to end, with the real `hami up --sim-clusters 3`.
//!
//! A Deployment `web` (6 replicas, 2 per cluster by static weights) runs on
//! member-1..3. A user taints member-1 `maintenance:NoExecute` through the
//! API (kube-rs, as `kubectl taint` would). Then:
//!
//! * the binding gets a graceful eviction task for member-1 (producer
//!   TaintManager, reason TaintUntolerated) and member-1 leaves
//!   `spec.clusters`; the scheduler places its replicas on member-2/3;
//! * sampled every 100 ms from the first sample after the taint, the
//!   template's readyReplicas never reaches 0;
//! * member-1's Work stays while the task stands (sampled too) and is gone after the
//!   replacements are ready (the task then gone too), and the member's own
//!   Deployment is deleted;
//! * a second Deployment `pinned`, whose policy tolerates the taint, keeps
//!   its replicas on member-1.
//!
//! A second test drives cluster health with a Lease written by hand.
//! Each test prints its timeline.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::Duration;

use hami_api::binding::ResourceBinding;
use hami_api::cluster::Cluster;
use hami_api::propagation::PropagationPolicy;
use hami_api::work::Work;
use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;
use support::{Hami, Timeline, eventually};

const MEMBERS: [&str; 3] = ["member-1", "member-2", "member-3"];

fn deployment(name: &str, replicas: i32) -> Deployment {
    serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{
                    "name": "main", "image": "nginx:1",
                    "resources": {"requests": {"cpu": "100m"}}
                }]}
            }
        }
    }))
    .unwrap()
}

fn web_policy() -> PropagationPolicy {
    serde_json::from_value(json!({
        "apiVersion": "policy.hami.io/v1alpha1", "kind": "PropagationPolicy",
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {
            "resourceSelectors": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"}],
            "placement": {
                "clusterAffinity": {"clusterNames": MEMBERS},
                "replicaScheduling": {
                    "replicaSchedulingType": "Divided",
                    "replicaDivisionPreference": "Weighted",
                    "weightPreference": {"staticWeightList": [
                        {"targetCluster": {"clusterNames": MEMBERS}, "weight": 1}
                    ]}
                }
            },
            "failover": {"application": {"purgeMode": "Gracefully", "gracePeriodSeconds": 300}}
        }
    }))
    .unwrap()
}

fn pinned_policy() -> PropagationPolicy {
    serde_json::from_value(json!({
        "apiVersion": "policy.hami.io/v1alpha1", "kind": "PropagationPolicy",
        "metadata": {"name": "pinned", "namespace": "default"},
        "spec": {
            "resourceSelectors": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": "pinned"}],
            "placement": {
                "clusterAffinity": {"clusterNames": ["member-1"]},
                "clusterTolerations": [
                    {"key": "maintenance", "operator": "Exists", "effect": "NoExecute"}
                ],
                "replicaScheduling": {"replicaSchedulingType": "Duplicated"}
            }
        }
    }))
    .unwrap()
}

fn is_web_on_member1(w: &Work) -> bool {
    w.metadata.namespace.as_deref() == Some("hami-es-member-1")
        && w.metadata
            .name
            .as_deref()
            .is_some_and(|n| n.contains("web"))
}

fn targets(b: &ResourceBinding) -> Vec<(String, i32)> {
    b.spec
        .clusters
        .iter()
        .map(|t| (t.name.clone(), t.replicas))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn untolerated_no_execute_taint_moves_replicas_without_dropping_to_zero() {
    let dir = tempfile::tempdir().unwrap();
    let hami = Hami::start_with_args(
        dir.path(),
        "127.0.0.1:0",
        &["--in-memory", "--sim-clusters", "3", "--eviction-rate", "5"],
    );
    let client = hami.client().await;
    let mut tl = Timeline::new("failover");
    let clusters: Api<Cluster> = Api::all(client.clone());
    eventually("3 clusters ready", 60, || async {
        let list = clusters
            .list(&ListParams::default())
            .await
            .map_err(|e| e.to_string())?;
        let ready = list
            .items
            .iter()
            .filter(|c| {
                c.status.as_ref().is_some_and(|s| {
                    s.conditions
                        .iter()
                        .any(|c| c.type_ == "Ready" && c.status == "True")
                })
            })
            .count();
        (ready == 3).then_some(()).ok_or(format!("{ready} ready"))
    })
    .await;
    tl.mark("3 member clusters Ready");

    let pps: Api<PropagationPolicy> = Api::namespaced(client.clone(), "default");
    let deps: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let rbs: Api<ResourceBinding> = Api::namespaced(client.clone(), "default");
    let works: Api<Work> = Api::all(client.clone());
    let pp = PostParams::default();
    pps.create(&pp, &web_policy()).await.unwrap();
    pps.create(&pp, &pinned_policy()).await.unwrap();
    deps.create(&pp, &deployment("web", 6)).await.unwrap();
    deps.create(&pp, &deployment("pinned", 1)).await.unwrap();

    let ready_of = |d: &Deployment| {
        d.status
            .as_ref()
            .and_then(|s| s.ready_replicas)
            .unwrap_or(0)
    };
    eventually("web 6/6 ready and pinned 1/1", 90, || async {
        let web = deps.get("web").await.map_err(|e| e.to_string())?;
        let pinned = deps.get("pinned").await.map_err(|e| e.to_string())?;
        (ready_of(&web) == 6 && ready_of(&pinned) == 1)
            .then_some(())
            .ok_or(format!(
                "web {} pinned {}",
                ready_of(&web),
                ready_of(&pinned)
            ))
    })
    .await;
    let web_rb = rbs.get("web-deployment").await.unwrap();
    let before = targets(&web_rb);
    tl.mark(format!(
        "web 6/6 ready, placed {before:?}; pinned 1/1 on member-1"
    ));
    assert!(
        before.iter().any(|(c, r)| c == "member-1" && *r > 0),
        "member-1 holds web replicas: {before:?}"
    );

    // Sample readyReplicas every 100 ms from here on.
    let min_ready = Arc::new(AtomicI64::new(i64::MAX));
    let sampling = Arc::new(AtomicBool::new(true));
    // Also: while a task names member-1, member-1's Work must be there.
    let early_deletions = Arc::new(AtomicI64::new(0));
    let sampler = {
        let (deps, min_ready, sampling) = (deps.clone(), min_ready.clone(), sampling.clone());
        let (rbs, works, early) = (rbs.clone(), works.clone(), early_deletions.clone());
        tokio::spawn(async move {
            let mut samples = 0u64;
            while sampling.load(Ordering::Relaxed) {
                if let Ok(d) = deps.get("web").await {
                    let r = d
                        .status
                        .as_ref()
                        .and_then(|s| s.ready_replicas)
                        .unwrap_or(0);
                    min_ready.fetch_min(i64::from(r), Ordering::Relaxed);
                    samples += 1;
                }
                let standing = rbs.get("web-deployment").await.is_ok_and(|b| {
                    b.spec
                        .graceful_eviction_tasks
                        .iter()
                        .any(|t| t.from_cluster == "member-1")
                });
                if standing
                    && let Ok(l) = works.list(&ListParams::default()).await
                    && !l.items.iter().any(is_web_on_member1)
                {
                    // The task may have ended between the two reads.
                    let still = rbs
                        .get("web-deployment")
                        .await
                        .is_ok_and(|b| !b.spec.graceful_eviction_tasks.is_empty());
                    if still {
                        early.fetch_add(1, Ordering::Relaxed);
                    }
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            samples
        })
    };

    // The user taints member-1 (a user taint: no timeAdded).
    clusters
        .patch(
            "member-1",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"taints": [
                {"key": "maintenance", "effect": "NoExecute"}
            ]}})),
        )
        .await
        .unwrap();
    tl.mark("tainted member-1 maintenance:NoExecute");

    let task_rb = eventually("web gets an eviction task for member-1", 30, || async {
        let b = rbs.get("web-deployment").await.map_err(|e| e.to_string())?;
        b.spec
            .graceful_eviction_tasks
            .iter()
            .any(|t| t.from_cluster == "member-1")
            .then_some(b.clone())
            .ok_or(format!("tasks {:?}", b.spec.graceful_eviction_tasks))
    })
    .await;
    let task = &task_rb.spec.graceful_eviction_tasks[0];
    assert_eq!(task.producer, "TaintManager");
    assert_eq!(task.reason, "TaintUntolerated");
    assert_eq!(task.grace_period_seconds, Some(300), "from the policy");
    assert!(
        !task_rb.spec.clusters.iter().any(|t| t.name == "member-1"),
        "member-1 left spec.clusters in the same write: {:?}",
        targets(&task_rb)
    );
    tl.mark(format!(
        "eviction task for member-1 ({:?}), targets {:?}",
        task.message,
        targets(&task_rb)
    ));
    eventually("the evicted cluster's Work still there", 5, || async {
        let l = works
            .list(&ListParams::default())
            .await
            .map_err(|e| e.to_string())?;
        l.items
            .iter()
            .any(is_web_on_member1)
            .then_some(())
            .ok_or_else(|| "no Work of web in hami-es-member-1".to_string())
    })
    .await;

    let moved = eventually("replicas placed on member-2/3", 30, || async {
        let b = rbs.get("web-deployment").await.map_err(|e| e.to_string())?;
        let sum: i32 = b.spec.clusters.iter().map(|t| t.replicas).sum();
        (sum == 6 && !b.spec.clusters.iter().any(|t| t.name == "member-1"))
            .then(|| targets(&b))
            .ok_or(format!("targets {:?}", targets(&b)))
    })
    .await;
    tl.mark(format!("scheduler placed replacements: {moved:?}"));

    eventually("task gone and member-1's Work deleted", 90, || async {
        let b = rbs.get("web-deployment").await.map_err(|e| e.to_string())?;
        if !b.spec.graceful_eviction_tasks.is_empty() {
            return Err("task still standing".into());
        }
        let l = works
            .list(&ListParams::default())
            .await
            .map_err(|e| e.to_string())?;
        let left = l.items.iter().any(is_web_on_member1);
        (!left)
            .then_some(())
            .ok_or_else(|| "old Work still there".into())
    })
    .await;
    let web = deps.get("web").await.unwrap();
    tl.mark(format!(
        "task finished (replacements ready: web {}/6), member-1's Work deleted",
        ready_of(&web)
    ));
    assert_eq!(
        ready_of(&web),
        6,
        "the replacements were ready when the task ended"
    );

    // The old copy goes from member-1 itself.
    let member1 = kube::Client::try_from(
        kube::Config::from_custom_kubeconfig(
            kube::config::Kubeconfig::read_from(
                dir.path().join("members").join("member-1.kubeconfig"),
            )
            .unwrap(),
            &Default::default(),
        )
        .await
        .unwrap(),
    )
    .unwrap();
    let member_deps: Api<Deployment> = Api::namespaced(member1, "default");
    eventually("web deleted from member-1", 30, || async {
        match member_deps
            .get_opt("web")
            .await
            .map_err(|e| e.to_string())?
        {
            None => Ok(()),
            Some(_) => Err("still in member-1".into()),
        }
    })
    .await;
    tl.mark("web deleted from member-1; pinned still there");
    assert!(member_deps.get_opt("pinned").await.unwrap().is_some());

    sampling.store(false, Ordering::Relaxed);
    let samples = sampler.await.unwrap();
    let min = min_ready.load(Ordering::Relaxed);
    tl.mark(format!(
        "{samples} samples at 100 ms, lowest readyReplicas {min}"
    ));
    assert!(samples > 10, "enough samples");
    assert!(min > 0, "web's readyReplicas reached 0");
    assert_eq!(
        early_deletions.load(Ordering::Relaxed),
        0,
        "member-1's Work was gone while its eviction task stood"
    );

    // The tolerating policy kept its replicas on member-1, with no task.
    let pinned = rbs.get("pinned-deployment").await.unwrap();
    assert_eq!(targets(&pinned), [("member-1".to_string(), 1)]);
    assert!(pinned.spec.graceful_eviction_tasks.is_empty());
    assert_eq!(ready_of(&deps.get("pinned").await.unwrap()), 1);
    tl.mark("pinned (tolerates maintenance:NoExecute) kept on member-1");

    tl.print();
}

fn taint_names(c: &Cluster) -> Vec<String> {
    c.spec
        .taints
        .iter()
        .map(|t| format!("{}:{}:{}", t.key, t.effect, t.time_added.is_some()))
        .collect()
}

fn ready_of_cluster(c: &Cluster) -> Option<(String, String)> {
    c.status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == "Ready")
        .map(|c| (c.status.clone(), c.reason.clone()))
}

/// A Pull cluster whose agent Lease lapsed: Ready=Unknown and the
/// unreachable taints (NoExecute too with `--no-execute-on-unready`); once
/// the Lease is renewed only those taints go, the user's stays. The Lease
/// says "renewed an hour ago", yet the verdict comes only a Lease duration
/// plus the grace after the controller started (2 s + 1 s here).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lapsed_lease_taints_the_cluster_and_renewal_untaints_only_ours() {
    use k8s_openapi::api::coordination::v1::Lease;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
    use k8s_openapi::jiff::{SignedDuration, Timestamp};

    let dir = tempfile::tempdir().unwrap();
    let hami = Hami::start_with_args(
        dir.path(),
        "127.0.0.1:0",
        &[
            "--in-memory",
            "--cluster-grace",
            "1s",
            "--no-execute-on-unready",
        ],
    );
    let client = hami.client().await;
    let mut tl = Timeline::new("failover");
    let clusters: Api<Cluster> = Api::all(client.clone());
    let ghost: Cluster = serde_json::from_value(json!({
        "apiVersion": "cluster.hami.io/v1alpha1", "kind": "Cluster",
        "metadata": {"name": "ghost"},
        "spec": {"syncMode": "Pull", "taints": [{"key": "dedicated", "effect": "NoSchedule"}]}
    }))
    .unwrap();
    clusters
        .create(&PostParams::default(), &ghost)
        .await
        .unwrap();
    let leases: Api<Lease> = Api::namespaced(client.clone(), "hami-es-ghost");
    let lease = |renewed: Timestamp| -> Lease {
        serde_json::from_value(json!({
            "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": {"name": "ghost", "namespace": "hami-es-ghost"},
            "spec": {
                "holderIdentity": "test",
                "leaseDurationSeconds": 2,
                "renewTime": MicroTime(renewed),
            }
        }))
        .unwrap()
    };
    // The execution namespace appears with the Cluster.
    let stale = Timestamp::now() - SignedDuration::from_secs(3600);
    eventually("Lease created in hami-es-ghost", 20, || async {
        leases
            .create(&PostParams::default(), &lease(stale))
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    })
    .await;
    tl.mark("ghost's Lease written, renewed an hour ago");

    let lapsed = eventually("ghost tainted unreachable", 20, || async {
        let c = clusters.get("ghost").await.map_err(|e| e.to_string())?;
        (taint_names(&c).len() == 3)
            .then(|| c.clone())
            .ok_or(format!("taints {:?}", taint_names(&c)))
    })
    .await;
    assert_eq!(
        taint_names(&lapsed),
        [
            "dedicated:NoSchedule:false",
            "cluster.hami.io/unreachable:NoSchedule:true",
            "cluster.hami.io/unreachable:NoExecute:true"
        ]
    );
    assert_eq!(
        ready_of_cluster(&lapsed),
        Some(("Unknown".into(), "ClusterStatusUnknown".into()))
    );
    tl.mark(format!(
        "ghost Ready=Unknown, taints {:?}",
        taint_names(&lapsed)
    ));

    // The agent is back: a fresh renewal.
    let mut current = leases.get("ghost").await.unwrap();
    current.spec.as_mut().unwrap().renew_time = Some(MicroTime(Timestamp::now()));
    leases
        .replace("ghost", &PostParams::default(), &current)
        .await
        .unwrap();
    tl.mark("ghost's Lease renewed");
    let healthy = eventually("our taints removed", 20, || async {
        let c = clusters.get("ghost").await.map_err(|e| e.to_string())?;
        (taint_names(&c).len() == 1)
            .then(|| c.clone())
            .ok_or(format!("taints {:?}", taint_names(&c)))
    })
    .await;
    assert_eq!(taint_names(&healthy), ["dedicated:NoSchedule:false"]);
    assert_eq!(
        ready_of_cluster(&healthy),
        Some(("True".into(), "ClusterLeaseRenewed".into()))
    );
    tl.mark("ghost Ready=True; only the user's taint left");
    tl.print();
}
