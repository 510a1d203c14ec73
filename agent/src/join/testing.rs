//! Test fixtures: a CA that signs requests, cluster-info content and a
//! fake control plane (HTTPS, client certificates optional) that serves
//! cluster-info and approves or denies CertificateSigningRequests,
//! recording who asked.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::Extension;
use axum::extract::{Path, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine as _;
use parking_lot::Mutex;
use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DnType, IsCa, Issuer,
    KeyPair,
};
use serde_json::{Value, json};

use super::token::BootstrapToken;

pub const TOKEN: &str = "abcdef.0123456789abcdef";

pub fn token() -> BootstrapToken {
    TOKEN.parse().unwrap()
}

/// A CA that signs agent requests.
pub struct TestCa {
    pub cert_pem: String,
    pub spki: Vec<u8>,
    issuer: Issuer<'static, KeyPair>,
}

impl TestCa {
    pub fn new() -> TestCa {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut params = CertificateParams::default();
        params
            .distinguished_name
            .push(DnType::CommonName, "test-ca");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let cert = params.self_signed(&key).unwrap();
        let info = super::cert::inspect(cert.der()).unwrap();
        TestCa {
            cert_pem: cert.pem(),
            spki: info.spki,
            issuer: Issuer::new(params, key),
        }
    }

    /// Signs a PEM request for `lifetime` from now.
    pub fn sign(&self, request_pem: &str, lifetime: Duration) -> String {
        let mut csr = CertificateSigningRequestParams::from_pem(request_pem).unwrap();
        let now = time::OffsetDateTime::now_utc();
        csr.params.not_before = now - time::Duration::seconds(1);
        csr.params.not_after = now + lifetime;
        csr.signed_by(&self.issuer).unwrap().pem()
    }
}

impl TestCa {
    /// A serving certificate for 127.0.0.1: (cert PEM, key PEM).
    pub fn serving(&self) -> (String, String) {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let params = CertificateParams::new(vec!["127.0.0.1".to_owned()]).unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    }
}

/// The kubeconfig cluster-info publishes.
pub fn cluster_info_kubeconfig(server: &str, ca_pem: &str) -> String {
    let ca = base64::engine::general_purpose::STANDARD.encode(ca_pem);
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: hami\n  cluster:\n    server: {server}\n    certificate-authority-data: {ca}\n"
    )
}

/// cluster-info's data, signed for `token`.
pub fn cluster_info_data(kubeconfig: &str, token: &BootstrapToken) -> BTreeMap<String, String> {
    let sig = hami_apiserver::server::auth::bootstrap::detached_signature(
        kubeconfig,
        token.id(),
        token.secret(),
    );
    BTreeMap::from([
        ("kubeconfig".to_owned(), kubeconfig.to_owned()),
        (format!("jws-kubeconfig-{}", token.id()), sig),
    ])
}

/// What the fake control plane does with a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Approve,
    Deny,
}

/// A fake control plane over HTTPS.
pub struct FakeControl {
    pub url: String,
    pub state: Arc<FakeState>,
}

pub struct FakeState {
    pub ca: TestCa,
    pub verdict: Mutex<Verdict>,
    pub lifetime: Mutex<Duration>,
    /// Every request created: (name, spec).
    pub requests: Mutex<Vec<(String, Value)>>,
    /// Who created each request: the Authorization header, or the serial
    /// of the client certificate presented.
    pub creators: Mutex<Vec<String>>,
    pub cluster_info: Mutex<BTreeMap<String, String>>,
}

impl FakeControl {
    pub async fn start() -> FakeControl {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("https://{}", listener.local_addr().unwrap());
        let state = Arc::new(FakeState {
            ca: TestCa::new(),
            verdict: Mutex::new(Verdict::Approve),
            lifetime: Mutex::new(Duration::from_secs(3600)),
            requests: Mutex::new(Vec::new()),
            creators: Mutex::new(Vec::new()),
            cluster_info: Mutex::new(BTreeMap::new()),
        });
        let router = Router::new()
            .route(
                "/api/v1/namespaces/kube-public/configmaps/cluster-info",
                get(cluster_info),
            )
            .route(
                "/apis/certificates.k8s.io/v1/certificatesigningrequests",
                post(create),
            )
            .route(
                "/apis/certificates.k8s.io/v1/certificatesigningrequests/{name}",
                get(read),
            )
            .with_state(state.clone());
        let tls = Arc::new(server_tls(&state.ca));
        tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let (tls, router) = (tls.clone(), router.clone());
                tokio::spawn(async move {
                    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
                    let Ok(stream) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let peer = stream
                        .get_ref()
                        .1
                        .peer_certificates()
                        .and_then(|c| c.first())
                        .and_then(|c| super::cert::inspect(c).ok())
                        .map(|i| i.serial);
                    let router = router.layer(Extension(Peer(peer)));
                    let service = hyper_util::service::TowerToHyperService::new(router);
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        FakeControl { url, state }
    }
}

/// The serial of the client certificate of a connection.
#[derive(Clone)]
struct Peer(Option<String>);

fn server_tls(ca: &TestCa) -> rustls::ServerConfig {
    use rustls::pki_types::pem::PemObject as _;
    let (cert, key) = ca.serving();
    let chain = super::cert::pem_certificates(&cert)
        .unwrap()
        .into_iter()
        .map(rustls::pki_types::CertificateDer::from)
        .collect();
    let key = rustls::pki_types::PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    for der in super::cert::pem_certificates(&ca.cert_pem).unwrap() {
        roots.add(der.into()).unwrap();
    }
    let verifier = rustls::server::WebPkiClientVerifier::builder(Arc::new(roots))
        .allow_unauthenticated()
        .build()
        .unwrap();
    rustls::ServerConfig::builder()
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .unwrap()
}

async fn cluster_info(State(s): State<Arc<FakeState>>) -> Json<Value> {
    let data = s.cluster_info.lock().clone();
    Json(json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "cluster-info", "namespace": "kube-public"},
        "data": data,
    }))
}

async fn create(
    State(s): State<Arc<FakeState>>,
    Extension(Peer(peer)): Extension<Peer>,
    headers: axum::http::HeaderMap,
    Json(mut body): Json<Value>,
) -> (axum::http::StatusCode, Json<Value>) {
    let bearer = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    s.creators.lock().push(
        bearer
            .or(peer.map(|p| format!("cert:{p}")))
            .unwrap_or_default(),
    );
    let mut requests = s.requests.lock();
    let prefix = body["metadata"]["generateName"].as_str().unwrap_or("csr-");
    let name = format!("{prefix}{}", requests.len());
    body["metadata"]["name"] = json!(name);
    requests.push((name, body["spec"].clone()));
    (axum::http::StatusCode::CREATED, Json(body))
}

async fn read(
    State(s): State<Arc<FakeState>>,
    Path(name): Path<String>,
) -> (axum::http::StatusCode, Json<Value>) {
    let spec = s
        .requests
        .lock()
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, spec)| spec.clone());
    let Some(spec) = spec else {
        return (axum::http::StatusCode::NOT_FOUND, Json(json!({})));
    };
    let mut object = json!({
        "apiVersion": "certificates.k8s.io/v1", "kind": "CertificateSigningRequest",
        "metadata": {"name": name}, "spec": spec, "status": {},
    });
    match *s.verdict.lock() {
        Verdict::Deny => {
            object["status"]["conditions"] = json!([{
                "type": "Denied", "status": "True", "reason": "NotAllowed",
                "message": "cluster gpu-a already has an agent identity",
            }]);
        }
        Verdict::Approve => {
            let request = base64::engine::general_purpose::STANDARD
                .decode(spec["request"].as_str().unwrap_or_default())
                .unwrap();
            let pem = String::from_utf8(request).unwrap();
            let cert = s.ca.sign(&pem, *s.lifetime.lock());
            object["status"]["conditions"] = json!([{
                "type": "Approved", "status": "True", "reason": "AutoApproved", "message": "ok",
            }]);
            object["status"]["certificate"] =
                json!(base64::engine::general_purpose::STANDARD.encode(cert));
        }
    }
    (axum::http::StatusCode::OK, Json(object))
}
