#![cfg(feature = "server")]
#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The estimator's gRPC port over TLS, on real loopback sockets, with
//! certificates made here: mutual TLS answers as plain gRPC does; a client
//! without a certificate, a client that does not trust the CA and a plain
//! client are refused; bad files are named; and the `hami-estimator`
//! binary serves mutual TLS from its flags (Karmada's names).

mod support;
#[path = "../../control/store/tests/common/test_certs.rs"]
mod test_certs;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use hami_estimator::server::tls::{GrpcSecurity, GrpcTlsArgs, TlsFileError};
use hami_proto::github::com::karmada_io::karmada::pkg::estimator::pb;
use hami_proto::github::com::karmada_io::karmada::pkg::estimator::service::estimator_client::EstimatorClient;
use hami_proto::hami::estimator::v1 as batch;
use hami_proto::k8s::io::apimachinery::pkg::api::resource::Quantity;
use test_certs::{Pair, TestPki};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

const FLEET: &str = r#"
cluster: member-1
nodes:
  - name: a
    allocatable: {cpu: "8", memory: 32Gi, pods: "110"}
    gpus:
      - {id: GPU-a0, model: NVIDIA-A100, memoryMiB: 40960, slots: 4}
      - {id: GPU-a1, model: NVIDIA-A100, memoryMiB: 40960, slots: 4}
    pods:
      - name: p0
        requests: {cpu: "1", memory: 1Gi}
        gpus: [{device: GPU-a0, memoryMiB: 30000, cores: 0}]
  - name: b
    allocatable: {cpu: "4", memory: 16Gi, pods: "110"}
pending:
  - {name: w-1, workload: {kind: Deployment, name: web}, unschedulableForSeconds: 600}
"#;

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn mutual(pki: &TestPki) -> GrpcTlsArgs {
    GrpcTlsArgs {
        grpc_auth_cert_file: Some(pki.server.cert.clone()),
        grpc_auth_key_file: Some(pki.server.key.clone()),
        grpc_client_ca_file: Some(pki.ca.clone()),
        insecure_skip_grpc_client_verify: false,
    }
}

/// The estimator over the TLS the flags describe; its address.
async fn serve_tls(args: &GrpcTlsArgs) -> SocketAddr {
    let tls = args.server_config().unwrap().expect("TLS flags given");
    support::listen(FLEET, now_ms(), Some(tls)).await
}

/// A channel over TLS trusting `ca_pem`, presenting `identity` if given.
async fn tls_channel(
    addr: SocketAddr,
    ca_pem: &str,
    identity: Option<&Pair>,
) -> Result<Channel, tonic::transport::Error> {
    let mut tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(ca_pem));
    if let Some(p) = identity {
        tls = tls.identity(Identity::from_pem(&p.cert_pem, &p.key_pem));
    }
    Endpoint::from_shared(format!("https://{addr}"))?
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(5))
        .tls_config(tls)?
        .connect()
        .await
}

fn cpu(n: &str) -> pb::ReplicaRequirements {
    pb::ReplicaRequirements {
        resource_request: [(
            "cpu".to_string(),
            Quantity {
                string: Some(n.into()),
            },
        )]
        .into_iter()
        .collect(),
        ..Default::default()
    }
}

fn gpu(mem_mib: &str) -> pb::ReplicaRequirements {
    let mut r = cpu("1");
    for (k, v) in [("nvidia.com/gpu", "1"), ("nvidia.com/gpumem", mem_mib)] {
        r.resource_request.insert(
            k.into(),
            Quantity {
                string: Some(v.into()),
            },
        );
    }
    r
}

/// One Karmada call: max replicas of `r` in member-1.
async fn max_replicas(ch: Channel, r: pb::ReplicaRequirements) -> Result<i32, tonic::Status> {
    let answer = EstimatorClient::new(ch)
        .max_available_replicas(pb::MaxAvailableReplicasRequest {
            cluster: Some("member-1".into()),
            replica_requirements: Some(r),
            assumed_workloads: vec![],
        })
        .await?;
    Ok(answer.into_inner().max_replicas.unwrap_or(-1))
}

/// What one client is told: Karmada's single calls, its descheduler's
/// call, and hami's batch call.
async fn answers(ch: Channel) -> (Vec<i32>, Option<i32>, Vec<i32>) {
    let mut single = Vec::new();
    for r in [cpu("1"), cpu("6"), gpu("20000"), gpu("50000")] {
        single.push(max_replicas(ch.clone(), r).await.unwrap());
    }
    let unschedulable = EstimatorClient::new(ch.clone())
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
        .unwrap()
        .into_inner()
        .unschedulable_replicas;
    let batched = batch::batch_estimator_client::BatchEstimatorClient::new(ch)
        .max_available_replicas_batch(batch::MaxAvailableReplicasBatchRequest {
            cluster: "member-1".into(),
            shapes: [cpu("1"), gpu("20000")]
                .into_iter()
                .map(|r| batch::ShapeRequest {
                    replica_requirements: Some(r),
                    annotations: Default::default(),
                })
                .collect(),
        })
        .await
        .unwrap()
        .into_inner()
        .max_replicas;
    (single, unschedulable, batched)
}

/// Refused: either the connection or the first call fails (with TLS 1.3 a
/// client learns that its certificate was refused only after its
/// handshake, on the first read).
async fn assert_refused(what: &str, channel: Result<Channel, tonic::transport::Error>) -> String {
    match channel {
        Err(e) => format!("{e:?}"),
        Ok(ch) => match max_replicas(ch, cpu("1")).await {
            Err(status) => format!("{status:?}"),
            Ok(n) => panic!("{what}: answered {n}"),
        },
    }
}

#[tokio::test]
async fn mutual_tls_answers_as_plain_grpc_does() {
    let pki = TestPki::new("estimator");
    let args = mutual(&pki);
    assert_eq!(args.security(), GrpcSecurity::MutualTls);
    let plain = support::serve(FLEET, now_ms()).await;
    let addr = serve_tls(&args).await;
    let secure = tls_channel(addr, &pki.ca_pem, Some(&pki.client))
        .await
        .unwrap();
    let expected = answers(plain).await;
    // Node a: 7 CPUs, GPU-a1 (40960 MiB) two 20000 MiB shares, GPU-a0
    // 10960 free; node b: 4 CPUs and no GPU; w-1 pending for 10 minutes.
    assert_eq!(expected, (vec![11, 1, 2, 0], Some(1), vec![11, 2]));
    assert_eq!(answers(secure).await, expected);
}

#[tokio::test]
async fn a_client_without_a_certificate_is_refused_when_a_client_ca_is_set() {
    let pki = TestPki::new("estimator");
    let addr = serve_tls(&mutual(&pki)).await;
    let why = assert_refused(
        "no client certificate",
        tls_channel(addr, &pki.ca_pem, None).await,
    )
    .await;
    assert!(why.contains("CertificateRequired"), "{why}");
    // A certificate from another CA is refused the same way.
    let other = TestPki::new("other");
    assert_refused(
        "client certificate of another CA",
        tls_channel(addr, &pki.ca_pem, Some(&other.client)).await,
    )
    .await;
    // The right one still works.
    let ch = tls_channel(addr, &pki.ca_pem, Some(&pki.client))
        .await
        .unwrap();
    assert_eq!(max_replicas(ch, cpu("1")).await.unwrap(), 11);
}

#[tokio::test]
async fn a_client_that_does_not_trust_the_ca_fails_the_handshake() {
    let pki = TestPki::new("estimator");
    let addr = serve_tls(&mutual(&pki)).await;
    let other = TestPki::new("other");
    let err = tls_channel(addr, &other.ca_pem, Some(&pki.client))
        .await
        .expect_err("the server's certificate is not from a trusted CA");
    let text = format!("{err:?}");
    assert!(text.contains("UnknownIssuer"), "{text}");
}

#[tokio::test]
async fn a_plain_text_client_fails_against_the_tls_server() {
    let pki = TestPki::new("estimator");
    let addr = serve_tls(&mutual(&pki)).await;
    let plain = Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(5))
        .connect()
        .await;
    assert_refused("plain text against TLS", plain).await;
}

#[tokio::test]
async fn tls_without_a_client_ca_or_with_skip_verify_takes_any_client() {
    let pki = TestPki::new("estimator");
    let tls_only = GrpcTlsArgs {
        grpc_client_ca_file: None,
        ..mutual(&pki)
    };
    let skip = GrpcTlsArgs {
        insecure_skip_grpc_client_verify: true,
        ..mutual(&pki)
    };
    for args in [tls_only, skip] {
        assert_eq!(args.security(), GrpcSecurity::Tls);
        let addr = serve_tls(&args).await;
        let ch = tls_channel(addr, &pki.ca_pem, None).await.unwrap();
        assert_eq!(max_replicas(ch, cpu("1")).await.unwrap(), 11, "{args:?}");
    }
    assert_eq!(GrpcTlsArgs::default().security(), GrpcSecurity::Plain);
    assert!(GrpcTlsArgs::default().server_config().unwrap().is_none());
}

#[test]
fn unusable_files_are_named_with_their_flag() {
    let pki = TestPki::new("estimator");
    let other = TestPki::new("other");
    let missing = pki.dir.path().join("missing.crt");
    let not_pem = pki.file("not-pem.crt", "hello\n");
    let err = |args: GrpcTlsArgs| args.server_config().unwrap_err();

    let e = err(GrpcTlsArgs {
        grpc_auth_cert_file: Some(missing.clone()),
        ..mutual(&pki)
    });
    assert!(matches!(e, TlsFileError::Read { .. }), "{e:?}");
    let text = e.to_string();
    assert!(
        text.starts_with(&format!("--grpc-auth-cert-file {}:", missing.display())),
        "{text}"
    );

    let e = err(GrpcTlsArgs {
        grpc_auth_cert_file: Some(not_pem.clone()),
        ..mutual(&pki)
    });
    assert_eq!(
        e.to_string(),
        format!(
            "--grpc-auth-cert-file {}: no PEM CERTIFICATE block in it",
            not_pem.display()
        )
    );

    let e = err(GrpcTlsArgs {
        grpc_auth_key_file: Some(pki.server.cert.clone()),
        ..mutual(&pki)
    });
    assert!(
        e.to_string().starts_with(&format!(
            "--grpc-auth-key-file {}: no PEM private key",
            pki.server.cert.display()
        )),
        "{e}"
    );

    let e = err(GrpcTlsArgs {
        grpc_auth_key_file: Some(other.server.key.clone()),
        ..mutual(&pki)
    });
    assert!(matches!(e, TlsFileError::Mismatch { .. }), "{e:?}");
    assert!(
        e.to_string().starts_with(&format!(
            "--grpc-auth-key-file {} is not the key of --grpc-auth-cert-file {}",
            other.server.key.display(),
            pki.server.cert.display()
        )),
        "{e}"
    );

    let e = err(GrpcTlsArgs {
        grpc_client_ca_file: Some(not_pem.clone()),
        ..mutual(&pki)
    });
    assert!(
        e.to_string()
            .starts_with(&format!("--grpc-client-ca-file {}:", not_pem.display())),
        "{e}"
    );
    // The client CA file is not read when client certificates are skipped.
    let skip = GrpcTlsArgs {
        grpc_client_ca_file: Some(missing),
        insecure_skip_grpc_client_verify: true,
        ..mutual(&pki)
    };
    assert!(skip.server_config().unwrap().is_some());
}

/// The `hami-estimator` process, killed on drop.
struct Estimator(Child);

impl Drop for Estimator {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn estimator_command(extra: &[&std::ffi::OsStr]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_hami-estimator"));
    cmd.args(["--generate-nodes", "3", "--cluster", "member-1"])
        .args(extra)
        .env_remove("HAMI_ESTIMATOR_GRPC_CLIENT_CA_FILE")
        .env_remove("HAMI_ESTIMATOR_INSECURE_SKIP_GRPC_CLIENT_VERIFY")
        .stdin(Stdio::null());
    cmd
}

#[tokio::test]
async fn the_binary_serves_mutual_tls_from_its_flags() {
    let pki = TestPki::new("estimator");
    let path = |p: &PathBuf| p.as_os_str().to_owned();
    let (cert, key, ca) = (path(&pki.server.cert), path(&pki.server.key), path(&pki.ca));
    // A port picked here may be taken before the binary binds it: try again.
    for attempt in 0.. {
        let grpc: SocketAddr = ([127, 0, 0, 1], free_port()).into();
        let http = format!("127.0.0.1:{}", free_port());
        let grpc_s = grpc.to_string();
        let child = estimator_command(&[
            "--grpc-addr".as_ref(),
            grpc_s.as_ref(),
            "--http-addr".as_ref(),
            http.as_ref(),
            "--grpc-auth-cert-file".as_ref(),
            &cert,
            "--grpc-auth-key-file".as_ref(),
            &key,
            "--grpc-client-ca-file".as_ref(),
            &ca,
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
        let mut estimator = Estimator(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        let answered = loop {
            if let Ok(ch) = tls_channel(grpc, &pki.ca_pem, Some(&pki.client)).await
                && let Ok(n) = max_replicas(ch, cpu("1")).await
            {
                break Some(n);
            }
            if estimator.0.try_wait().unwrap().is_some() || Instant::now() > deadline {
                break None;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let Some(n) = answered else {
            assert!(attempt < 3, "hami-estimator never answered over mutual TLS");
            continue;
        };
        assert!(n > 0, "a generated fleet holds a 1-CPU replica: {n}");
        assert_refused(
            "the binary, no client certificate",
            tls_channel(grpc, &pki.ca_pem, None).await,
        )
        .await;
        let plain = Endpoint::from_shared(format!("http://{grpc}"))
            .unwrap()
            .timeout(Duration::from_secs(5))
            .connect()
            .await;
        assert_refused("the binary, plain text", plain).await;
        return;
    }
}

#[test]
fn the_binary_names_an_unreadable_file_and_exits() {
    let pki = TestPki::new("estimator");
    let missing = pki.dir.path().join("missing.key");
    let out = estimator_command(&[
        "--grpc-addr".as_ref(),
        "127.0.0.1:0".as_ref(),
        "--http-addr".as_ref(),
        "127.0.0.1:0".as_ref(),
        "--grpc-auth-cert-file".as_ref(),
        pki.server.cert.as_os_str(),
        "--grpc-auth-key-file".as_ref(),
        missing.as_os_str(),
    ])
    .output()
    .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "--grpc-auth-key-file {}: cannot read it",
            missing.display()
        )),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    // A CA without the serving pair is refused by the flags' parser.
    let out = estimator_command(&["--grpc-client-ca-file".as_ref(), pki.ca.as_os_str()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--grpc-auth-cert-file"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
