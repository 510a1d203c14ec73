//! The Pull-mode agent end to end over real loopback HTTP and gRPC
//! (control plane in-process, a simulated GPU member, the agent as a
//! library): registration, Lease, Cluster status against the sim fleet, the
//! estimator answering like a snapshot read straight from the member, a
//! member whose API goes down, and the namespace the agent keeps to.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod agent_support;

use agent_support::*;
use std::time::Duration;

use hami_api::cluster::ESTIMATOR_ENDPOINT_ANNOTATION;
use hami_api::work::Work;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, ListParams, PostParams};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registers_reports_cluster_status_renews_lease_and_serves_the_estimator() {
    let h = Harness::start().await;
    let cluster = eventually("Cluster Ready=True with summaries", || async {
        let c = h.cluster().await?;
        let s = c.status.as_ref()?;
        let ready = s
            .conditions
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "True");
        (ready && s.gpu_summary.len() == 2 && s.node_summary.is_some()).then_some(c)
    })
    .await;
    assert_eq!(cluster.spec.sync_mode, hami_api::SyncMode::Pull);
    let status = cluster.status.clone().unwrap();
    let nodes = status.node_summary.unwrap();
    assert_eq!((nodes.total_num, nodes.ready_num), (2, 2));
    let rs = status.resource_summary.unwrap();
    assert_eq!(rs.allocatable["cpu"].0, "48");
    assert!(rs.allocated.is_empty(), "no pods yet: {:?}", rs.allocated);
    let a100 = &status.gpu_summary[0];
    assert_eq!(a100.model, "NVIDIA-A100-SXM4-80GB");
    assert_eq!((a100.count, a100.healthy), (2, 2));
    assert_eq!(a100.memory_total_mib, 2 * 81920);
    assert_eq!(a100.memory_free_mib, 2 * 81920);
    assert_eq!((a100.cores_total, a100.cores_free), (200, 200));
    assert_eq!(a100.share_slots_free, 8);
    let t4 = &status.gpu_summary[1];
    assert_eq!((t4.model.as_str(), t4.count), ("NVIDIA-Tesla-T4", 2));
    assert!(status.kubernetes_version.is_some());
    assert!(
        status
            .api_enablements
            .iter()
            .any(|e| e.group_version == "apps/v1"
                && e.resources.iter().any(|r| r.kind == "Deployment")),
        "apiEnablements from member discovery"
    );

    // The estimator annotation names the real bound address, and the
    // estimator answers like a snapshot read straight from the member.
    let endpoint = cluster.metadata.annotations.unwrap()[ESTIMATOR_ENDPOINT_ANNOTATION].clone();
    assert!(endpoint.starts_with("127.0.0.1:") && !endpoint.ends_with(":0"));
    let want = member_snapshot(&h.member)
        .await
        .max_available_replicas(&shape());
    // A100s: 4 slots of 25 cores each; a T4 (15360 MiB) holds one 10000 MiB slice.
    assert_eq!(want, 2 * 4 + 2, "member's own view");
    assert_eq!(ask_estimator(&endpoint).await, 10);

    // The lease is renewed: renewTime moves.
    let leases: Api<Lease> = Api::namespaced(h.control.clone(), NS);
    let first = eventually("lease exists", || async {
        leases.get_opt(CLUSTER).await.unwrap()?.spec?.renew_time
    })
    .await;
    let later = eventually("lease renewed", || async {
        let t = leases.get_opt(CLUSTER).await.unwrap()?.spec?.renew_time?;
        (t.0 > first.0).then_some(t)
    })
    .await;
    assert!(later.0 > first.0);

    // Status is not rewritten while nothing changes.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let writes = || h.metrics().status_writes_of("cluster");
    let before = writes();
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(writes(), before, "no-op Cluster status writes were skipped");
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_member_turns_ready_false_after_the_grace_period() {
    let mut h = Harness::start().await;
    eventually("Ready=True", || async {
        let (s, _) = h.ready().await?;
        (s == "True").then_some(())
    })
    .await;
    let leases: Api<Lease> = Api::namespaced(h.control.clone(), NS);
    eventually("lease exists", || async {
        leases.get_opt(CLUSTER).await.unwrap()
    })
    .await;

    h.sim.pause_api().await;
    let down_at = tokio::time::Instant::now();
    let (_, reason) = eventually("Ready=False", || async {
        let (s, r) = h.ready().await?;
        (s == "False").then_some(((), r))
    })
    .await;
    assert_eq!(reason, "MemberUnreachable");
    assert!(
        down_at.elapsed() >= Duration::from_millis(900),
        "not before the 1 s grace"
    );
    // The lease is no longer renewed while the member is down.
    let held = leases.get(CLUSTER).await.unwrap().spec.unwrap().renew_time;
    tokio::time::sleep(Duration::from_millis(700)).await;
    let still = leases.get(CLUSTER).await.unwrap().spec.unwrap().renew_time;
    assert_eq!(
        held, still,
        "lease not renewed while the member is unreachable"
    );
    assert!(h.metrics().lease_renew_failures_of() >= 2);
    assert!(h.metrics().watch_restarts_of("pods") >= 1);

    // Back up: Ready again and the lease moves.
    h.sim.resume_api().await.unwrap();
    eventually("Ready=True again", || async {
        let (s, _) = h.ready().await?;
        (s == "True").then_some(())
    })
    .await;
    eventually("lease renewed again", || async {
        let t = leases.get(CLUSTER).await.unwrap().spec?.renew_time;
        (t != still).then_some(())
    })
    .await;
    h.shutdown().await;
}

/// What the agent itself does, whatever its credentials allow: it only
/// acts on `hami-es-<its cluster>`. A Work put in another cluster's
/// namespace is never applied, given a finalizer or a status by this agent,
/// and the only Lease it writes is its own. This harness's API server runs
/// in process without authentication or authorization; that the control
/// plane refuses a joined agent's identity everything else (403 on another
/// cluster's Works, on Secrets, on other Clusters) is asserted end to end
/// in `control/tests/join.rs`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_only_acts_in_its_own_namespace() {
    let h = Harness::start().await;
    let other_ns = "hami-es-other";
    Api::<Namespace>::all(h.control.clone())
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": other_ns}})).unwrap(),
        )
        .await
        .unwrap();
    let other: Api<Work> = Api::namespaced(h.control.clone(), other_ns);
    other
        .create(
            &PostParams::default(),
            &work("foreign", other_ns, vec![gpu_deployment("foreign", 1)]),
        )
        .await
        .unwrap();
    let own: Api<Work> = Api::namespaced(h.control.clone(), NS);
    h.registered().await;
    own.create(
        &PostParams::default(),
        &work("mine", NS, vec![gpu_deployment("mine", 1)]),
    )
    .await
    .unwrap();
    eventually("own Work applied", || async {
        (running_pods(&h.member, "mine").await.len() == 1).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let foreign = other.get("foreign").await.unwrap();
    assert!(
        foreign.status.is_none(),
        "no status written on another cluster's Work"
    );
    assert!(foreign.metadata.finalizers.unwrap_or_default().is_empty());
    assert!(
        Api::<Deployment>::namespaced(h.member.clone(), "default")
            .get_opt("foreign")
            .await
            .unwrap()
            .is_none(),
        "another cluster's Work is not applied here"
    );
    // Leases: only the agent's own exists.
    let leases = Api::<Lease>::all(h.control.clone())
        .list(&ListParams::default())
        .await
        .unwrap();
    let names: Vec<(String, String)> = leases
        .items
        .iter()
        .map(|l| {
            (
                l.metadata.namespace.clone().unwrap(),
                l.metadata.name.clone().unwrap(),
            )
        })
        .collect();
    assert_eq!(names, vec![(NS.to_string(), CLUSTER.to_string())]);
    h.shutdown().await;
}

/// The estimator hosted by the agent over mutual TLS (Karmada's
/// `--grpc-auth-cert-file`, `--grpc-auth-key-file`, `--grpc-client-ca-file`):
/// the scheduler's dial with the CA and a client certificate is answered; a
/// client without a certificate, or one that does not trust the CA, is not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hosted_estimator_serves_mutual_tls() {
    use hami_estimator::server::tls::GrpcTlsArgs;
    use rcgen::{CertificateParams, IsCa, Issuer, KeyPair};
    use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};

    let dir = tempfile::tempdir().unwrap();
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let leaf = |names: Vec<String>| {
        let key = KeyPair::generate().unwrap();
        let cert = CertificateParams::new(names)
            .unwrap()
            .signed_by(&key, &issuer)
            .unwrap();
        (cert.pem(), key.serialize_pem())
    };
    let (server_cert, server_key) = leaf(vec!["localhost".into(), "127.0.0.1".into()]);
    let (client_cert, client_key) = leaf(vec!["hami-scheduler".into()]);
    let write = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path
    };
    let args = GrpcTlsArgs {
        grpc_auth_cert_file: Some(write("tls.crt", &server_cert)),
        grpc_auth_key_file: Some(write("tls.key", &server_key)),
        grpc_client_ca_file: Some(write("ca.crt", &ca_cert.pem())),
        insecure_skip_grpc_client_verify: false,
    };
    let mut h = Harness::start().await;
    h.stop_agent().await;
    let mut tls_config = config();
    tls_config.estimator_tls = args.server_config().unwrap();
    h.start_agent_with(tls_config);
    let cluster = eventually("Cluster with estimator annotation and GPUs", || async {
        let c = h.cluster().await?;
        (c.status.as_ref()?.gpu_summary.len() == 2).then_some(c)
    })
    .await;
    let endpoint = cluster.metadata.annotations.unwrap()[ESTIMATOR_ENDPOINT_ANNOTATION].clone();
    let port = endpoint.rsplit(':').next().unwrap().to_string();
    let dial = |tls: ClientTlsConfig| {
        let port = port.clone();
        async move {
            let channel = Endpoint::from_shared(format!("https://127.0.0.1:{port}"))?
                .connect_timeout(Duration::from_secs(5))
                .timeout(Duration::from_secs(5))
                .tls_config(tls)?
                .connect()
                .await?;
            Ok::<_, tonic::transport::Error>(channel)
        }
    };
    let trusted = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(ca_cert.pem()));
    let scheduler = trusted
        .clone()
        .identity(Identity::from_pem(&client_cert, &client_key));
    let channel = dial(scheduler).await.expect("the scheduler's dial");
    assert_eq!(
        ask_estimator_over(channel).await.unwrap(),
        10,
        "answered over mutual TLS"
    );
    // No client certificate: the handshake or the first call fails.
    let refused = match dial(trusted).await {
        Err(_) => true,
        Ok(channel) => ask_estimator_over(channel).await.is_err(),
    };
    assert!(refused, "a client without a certificate is refused");
    // Plain gRPC against the TLS port fails.
    let plain = Endpoint::from_shared(format!("http://127.0.0.1:{port}"))
        .unwrap()
        .timeout(Duration::from_secs(5))
        .connect()
        .await;
    let plain_refused = match plain {
        Err(_) => true,
        Ok(channel) => ask_estimator_over(channel).await.is_err(),
    };
    assert!(plain_refused, "plain gRPC is refused on the TLS port");
    h.shutdown().await;
}
