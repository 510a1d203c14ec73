//! Federated quota and failover together, on the samples' GPU Deployment
//! (6 replicas of 1 GPU; only member-1 (A100) and member-2 (H100) match
//! its GPU types) with member-2 tainted `maintenance:NoExecute`:
//!
//! * the replacements fit (overall 6 GPUs, member-1 may hold 6): the
//!   graceful eviction task is written, the replicas move to member-1, the
//!   task ends with the replacements ready, and sampled every 100 ms the
//!   quota's used GPUs never pass 6 overall or in member-1 (a replaced
//!   replica and its replacement count once) and readyReplicas never
//!   reaches 0;
//! * they do not (the sample quota: member-1 at most 4): the task is
//!   written all the same, the binding says `Scheduled=False`,
//!   `QuotaExceeded`, and the old copies in member-2 keep serving (the task
//!   stands, 6 ready) instead of being dropped; the eviction is counted
//!   (`hami_failover_evictions_total`) and stands
//!   (`hami_failover_evictions_in_progress`) but does not end within
//!   minutes: it ends when the grace period (600 s) passes.

use std::collections::BTreeMap;

use crate::common::*;
use crate::support::{kubectl, repo_root};
use hami_api::quota::FederatedResourceQuota;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

const NS: &str = "demo";
const RB: &str = "llm-inference-deployment";

fn gpus(list: &BTreeMap<String, Quantity>) -> i64 {
    list.get("nvidia.com/gpu")
        .and_then(|q| q.0.parse().ok())
        .unwrap_or(0)
}

/// (overall, member-1) GPUs the quota's status counts as used.
fn used(q: &FederatedResourceQuota) -> (i64, i64) {
    let Some(s) = q.status.as_ref() else {
        return (0, 0);
    };
    let m1 = s
        .aggregated_status
        .iter()
        .find(|c| c.cluster_name == "member-1")
        .map_or(0, |c| gpus(&c.used));
    (gpus(&s.overall_used), m1)
}

fn ready_of(d: &Deployment) -> i32 {
    d.status
        .as_ref()
        .and_then(|s| s.ready_replicas)
        .unwrap_or(0)
}

/// A running `hami up --sim-clusters 3` with the samples' namespace,
/// Deployment and policy and the quota `quota_yaml`, 6/6 ready; member-2
/// holds replicas.
async fn start(dir: &std::path::Path, quota_yaml: &str, tl: &mut Timeline) -> (Hami, kube::Client) {
    let hami = Hami::start_with_args(dir, "127.0.0.1:0", &["--in-memory", "--sim-clusters", "3"]);
    let client = hami.client().await;
    let clusters: Api<Cluster> = Api::all(client.clone());
    clusters_ready(&clusters, 3).await;
    tl.mark("3 member clusters Ready");
    let quota_file = dir.join("quota.yaml");
    std::fs::write(&quota_file, quota_yaml).unwrap();
    let samples = repo_root().join("samples");
    for path in [
        samples.join("00-namespace.yaml"),
        quota_file,
        samples.join("10-gpu-deployment.yaml"),
        samples.join("20-propagation-policy.yaml"),
    ] {
        let (ok, _, err) = kubectl(&hami, &["apply", "-f", path.to_str().unwrap()]);
        assert!(ok, "{}: {err}", path.display());
    }
    let deps: Api<Deployment> = Api::namespaced(client.clone(), NS);
    let rbs: Api<ResourceBinding> = Api::namespaced(client.clone(), NS);
    eventually("llm-inference 6/6 ready", 90, || async {
        let d = deps.get("llm-inference").await.map_err(|e| e.to_string())?;
        (ready_of(&d) == 6)
            .then_some(())
            .ok_or(format!("{} ready", ready_of(&d)))
    })
    .await;
    let before = targets(&rbs.get(RB).await.unwrap());
    tl.mark(format!("6/6 ready, placed {before:?}"));
    assert!(
        before.iter().any(|(c, r)| c == "member-2" && *r > 0),
        "member-2 holds replicas: {before:?}"
    );
    (hami, client)
}

fn taint_member2(hami: &Hami, tl: &mut Timeline) {
    let (ok, _, err) = kubectl(
        hami,
        &[
            "patch",
            "cluster",
            "member-2",
            "--type",
            "merge",
            "-p",
            r#"{"spec":{"taints":[{"key":"maintenance","effect":"NoExecute"}]}}"#,
        ],
    );
    assert!(ok, "{err}");
    tl.mark("member-2 tainted maintenance:NoExecute");
}

async fn eviction_task(rbs: &Api<ResourceBinding>, tl: &mut Timeline) {
    let b = eventually("an eviction task from member-2", 60, || async {
        let b = rbs.get(RB).await.map_err(|e| e.to_string())?;
        b.spec
            .graceful_eviction_tasks
            .iter()
            .any(|t| t.from_cluster == "member-2" && t.producer == "TaintManager")
            .then_some(b.clone())
            .ok_or(format!("targets {:?}", targets(&b)))
    })
    .await;
    tl.mark(format!(
        "eviction task from member-2; targets {:?}",
        targets(&b)
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn taint_under_quota_moves_replicas_within_quota() {
    let dir = tempfile::tempdir().unwrap();
    let mut tl = Timeline::new("failover-quota");
    let quota = r#"
apiVersion: policy.hami.io/v1alpha1
kind: FederatedResourceQuota
metadata: {name: demo-quota, namespace: demo}
spec:
  overall: {nvidia.com/gpu: "6"}
  staticAssignments:
    - clusterName: member-1
      hard: {nvidia.com/gpu: "6"}
"#;
    let (hami, client) = start(dir.path(), quota, &mut tl).await;
    let deps: Api<Deployment> = Api::namespaced(client.clone(), NS);
    let rbs: Api<ResourceBinding> = Api::namespaced(client.clone(), NS);
    let quotas: Api<FederatedResourceQuota> = Api::namespaced(client.clone(), NS);

    // Sample the quota's usage and readyReplicas every 100 ms from here on.
    let sampling = Arc::new(AtomicBool::new(true));
    let max_overall = Arc::new(AtomicI64::new(0));
    let max_member1 = Arc::new(AtomicI64::new(0));
    let min_ready = Arc::new(AtomicI64::new(i64::MAX));
    let sampler = {
        let (quotas, deps, sampling) = (quotas.clone(), deps.clone(), sampling.clone());
        let (max_overall, max_member1, min_ready) =
            (max_overall.clone(), max_member1.clone(), min_ready.clone());
        tokio::spawn(async move {
            let mut samples = 0u64;
            while sampling.load(Ordering::Relaxed) {
                if let Ok(q) = quotas.get("demo-quota").await {
                    let (o, m1) = used(&q);
                    max_overall.fetch_max(o, Ordering::Relaxed);
                    max_member1.fetch_max(m1, Ordering::Relaxed);
                }
                if let Ok(d) = deps.get("llm-inference").await {
                    min_ready.fetch_min(i64::from(ready_of(&d)), Ordering::Relaxed);
                    samples += 1;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            samples
        })
    };

    taint_member2(&hami, &mut tl);
    eviction_task(&rbs, &mut tl).await;
    let b = eventually("replicas all in member-1, task ended", 90, || async {
        let b = rbs.get(RB).await.map_err(|e| e.to_string())?;
        (targets(&b) == [("member-1".to_string(), 6)] && b.spec.graceful_eviction_tasks.is_empty())
            .then_some(b.clone())
            .ok_or(format!(
                "targets {:?}, tasks {}, ready {:?}",
                targets(&b),
                b.spec.graceful_eviction_tasks.len(),
                ready_by_cluster(&b)
            ))
    })
    .await;
    let ended = condition(&b, "GracefulEviction").map(|c| c.reason.clone());
    tl.mark(format!("task ended ({ended:?}); targets {:?}", targets(&b)));
    assert_eq!(ended.as_deref(), Some("ReplacementsReady"));
    eventually("quota used 6 (member-1 6)", 30, || async {
        let q = quotas.get("demo-quota").await.map_err(|e| e.to_string())?;
        (used(&q) == (6, 6))
            .then_some(())
            .ok_or(format!("{:?}", used(&q)))
    })
    .await;
    sampling.store(false, Ordering::Relaxed);
    let samples = sampler.await.unwrap();
    tl.mark(format!(
        "{samples} samples: used GPUs at most {} overall, {} in member-1; readyReplicas at least {}",
        max_overall.load(Ordering::Relaxed),
        max_member1.load(Ordering::Relaxed),
        min_ready.load(Ordering::Relaxed)
    ));
    tl.print();
    assert!(samples > 5, "{samples} samples");
    assert!(
        max_overall.load(Ordering::Relaxed) <= 6,
        "overall quota exceeded"
    );
    assert!(
        max_member1.load(Ordering::Relaxed) <= 6,
        "member-1 quota exceeded"
    );
    assert!(
        min_ready.load(Ordering::Relaxed) > 0,
        "readyReplicas reached 0"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn taint_under_sample_quota_keeps_old_copies_when_replacements_do_not_fit() {
    let dir = tempfile::tempdir().unwrap();
    let mut tl = Timeline::new("failover-quota-exceeded");
    let sample =
        std::fs::read_to_string(repo_root().join("samples/40-federated-resource-quota.yaml"))
            .unwrap();
    let (hami, client) = start(dir.path(), &sample, &mut tl).await;
    let deps: Api<Deployment> = Api::namespaced(client.clone(), NS);
    let rbs: Api<ResourceBinding> = Api::namespaced(client.clone(), NS);
    let works: Api<Work> = Api::all(client.clone());

    taint_member2(&hami, &mut tl);
    eviction_task(&rbs, &mut tl).await;
    let b = eventually("Scheduled=False QuotaExceeded", 60, || async {
        let b = rbs.get(RB).await.map_err(|e| e.to_string())?;
        let c = condition(&b, "Scheduled").map(|c| (c.status.clone(), c.reason.clone()));
        (c == Some(("False".into(), "QuotaExceeded".into())))
            .then_some(b.clone())
            .ok_or(format!("{c:?}, targets {:?}", targets(&b)))
    })
    .await;
    tl.mark(format!(
        "QuotaExceeded: {}; targets {:?}",
        condition(&b, "Scheduled").unwrap().message,
        targets(&b)
    ));
    assert!(
        targets(&b).iter().map(|(_, r)| r).sum::<i32>() <= 4,
        "member-1 beyond its 4 GPUs: {:?}",
        targets(&b)
    );
    // What the report watched: the eviction counted and standing.
    assert_eq!(
        metric(
            &hami,
            r#"hami_failover_evictions_total{reason="TaintUntolerated"}"#
        ),
        Some(1.0)
    );
    assert_eq!(
        metric(&hami, "hami_failover_evictions_in_progress"),
        Some(1.0)
    );
    // The old copies keep serving while the task stands: for 3 s, still 6
    // ready, member-2's Work there, the task standing.
    for _ in 0..30 {
        let d = deps.get("llm-inference").await.unwrap();
        let b = rbs.get(RB).await.unwrap();
        let list = works.list(&ListParams::default()).await.unwrap().items;
        assert_eq!(ready_of(&d), 6, "readyReplicas dropped");
        assert!(
            b.spec
                .graceful_eviction_tasks
                .iter()
                .any(|t| t.from_cluster == "member-2"),
            "the task ended early"
        );
        assert_eq!(
            work_in(&list, "member-2", RB),
            Some(false),
            "member-2's Work went"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tl.mark("3 s later: 6 ready, member-2's Work and the task stand");
    tl.print();
}
