//! Cluster health from a hand-written agent Lease.

use crate::common::*;

/// A Pull cluster whose agent Lease lapsed: Ready=Unknown and the
/// unreachable taints (NoExecute too with `--no-execute-on-unready`); once
/// the Lease is renewed (every 500 ms from then on) only those taints go,
/// the user's stays, and only after the cluster has been healthy for
/// `--cluster-success-threshold` (3 s here). The Lease says "renewed an
/// hour ago", yet the verdict comes only a Lease duration plus the grace
/// after the controller started (2 s + 1 s here).
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
            "--cluster-success-threshold",
            "3s",
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

    // The agent is back: it renews every 500 ms from now on.
    let renewed_at = std::time::Instant::now();
    let renewing = Arc::new(AtomicBool::new(true));
    let renewer = {
        let (leases, renewing) = (leases.clone(), renewing.clone());
        tokio::spawn(async move {
            while renewing.load(Ordering::Relaxed) {
                if let Ok(mut current) = leases.get("ghost").await {
                    current.spec.as_mut().unwrap().renew_time = Some(MicroTime(Timestamp::now()));
                    let _ = leases
                        .replace("ghost", &PostParams::default(), &current)
                        .await;
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        })
    };
    tl.mark("ghost's Lease renewed (every 500 ms from now on)");
    let healthy = eventually("our taints removed", 20, || async {
        let c = clusters.get("ghost").await.map_err(|e| e.to_string())?;
        if taint_names(&c).len() == 1 {
            return Ok(c.clone());
        }
        Err(format!("taints {:?}", taint_names(&c)))
    })
    .await;
    let untainted = renewed_at.elapsed();
    renewing.store(false, Ordering::Relaxed);
    renewer.await.unwrap();
    tl.mark(format!(
        "our taints removed {:.1}s after the first renewal",
        untainted.as_secs_f64()
    ));
    assert!(
        untainted >= Duration::from_secs(3),
        "healthy for less than the success threshold: {untainted:?}"
    );
    assert_eq!(taint_names(&healthy), ["dedicated:NoSchedule:false"]);
    assert_eq!(
        ready_of_cluster(&healthy),
        Some(("True".into(), "ClusterLeaseRenewed".into()))
    );
    tl.mark("ghost Ready=True; only the user's taint left");
    tl.print();
}
