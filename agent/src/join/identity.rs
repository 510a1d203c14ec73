//! The agent's client identity on the control plane, swappable while the
//! agent runs: the kube client's TLS configuration resolves its client
//! certificate through [`Identity`] on every handshake
//! (`rustls::client::ResolvesClientCert`), so a renewed pair is used by the
//! next connection without rebuilding the client. On a swap the client
//! also starts a fresh connection pool and TLS session cache (as
//! client-go's cert rotation closes its connections): idle connections
//! and resumable sessions made with the old certificate are not reused;
//! requests in flight (watches) finish on theirs.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use http::{Request, Response};
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use kube::client::{Body, ConfigExt as _};
use parking_lot::{Mutex, RwLock};
use rustls::SignatureScheme;
use rustls::client::ResolvesClientCert;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;

use super::cert::{self, CertError};

/// A client identity or client that cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// The certificate PEM is unusable.
    #[error("client certificate: {0}")]
    Cert(#[from] CertError),
    /// The key PEM is unusable.
    #[error("client key: {0}")]
    Key(String),
    /// The server URL is not a URL.
    #[error("server URL {url:?}: {reason}")]
    Url {
        /// The URL.
        url: String,
        /// Why.
        reason: String,
    },
    /// kube could not build the TLS configuration.
    #[error("TLS configuration: {0}")]
    Tls(#[source] kube::Error),
}

/// The current client certificate and key, and how many times they changed.
#[derive(Debug)]
pub struct Identity {
    current: RwLock<Arc<CertifiedKey>>,
    generation: AtomicU64,
}

impl Identity {
    /// The identity of a PEM certificate (chain) and key.
    pub fn new(cert_pem: &str, key_pem: &str) -> Result<Arc<Self>, IdentityError> {
        Ok(Arc::new(Self {
            current: RwLock::new(certified(cert_pem, key_pem)?),
            generation: AtomicU64::new(0),
        }))
    }

    /// Swaps in a renewed pair: the next handshake presents it.
    pub fn replace(&self, cert_pem: &str, key_pem: &str) -> Result<(), IdentityError> {
        let key = certified(cert_pem, key_pem)?;
        *self.current.write() = key;
        self.generation.fetch_add(1, Ordering::AcqRel);
        Ok(())
    }

    /// The pair presented now.
    pub fn current(&self) -> Arc<CertifiedKey> {
        self.current.read().clone()
    }

    /// Bumped on every [`Identity::replace`].
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }
}

fn certified(cert_pem: &str, key_pem: &str) -> Result<Arc<CertifiedKey>, IdentityError> {
    let chain: Vec<CertificateDer<'static>> = cert::pem_certificates(cert_pem)?
        .into_iter()
        .map(CertificateDer::from)
        .collect();
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
        .map_err(|e| IdentityError::Key(e.to_string()))?;
    let signer = rustls::crypto::ring::sign::any_supported_type(&key)
        .map_err(|e| IdentityError::Key(e.to_string()))?;
    Ok(Arc::new(CertifiedKey::new(chain, signer)))
}

/// rustls' hook: every handshake asks for the current pair.
#[derive(Debug)]
struct Resolver(Arc<Identity>);

impl ResolvesClientCert for Resolver {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        Some(self.0.current())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// TLS sessions cached per generation (rustls' default size).
const SESSIONS: usize = 256;

type Https = hyper_rustls::HttpsConnector<HttpConnector>;

/// The HTTP service under the kube client: a hyper client over the
/// resolver-backed TLS configuration, replaced by a fresh one (new pool)
/// when the identity's generation moves.
#[derive(Clone)]
struct RotatingHttps {
    tls: Arc<rustls::ClientConfig>,
    identity: Arc<Identity>,
    connect_timeout: Option<Duration>,
    client: Arc<Mutex<(u64, HyperClient<Https, Body>)>>,
}

/// A hyper client over `tls` with its own connection pool and its own TLS
/// session cache: a resumed session carries the client certificate of
/// the session it resumes, so a renewed certificate needs fresh sessions.
fn hyper_client(
    tls: &rustls::ClientConfig,
    connect_timeout: Option<Duration>,
) -> HyperClient<Https, Body> {
    let mut tls = tls.clone();
    tls.resumption = rustls::client::Resumption::in_memory_sessions(SESSIONS);
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_connect_timeout(connect_timeout);
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_only()
        .enable_http1()
        .wrap_connector(http);
    HyperClient::builder(TokioExecutor::new()).build(https)
}

impl RotatingHttps {
    fn current(&self) -> HyperClient<Https, Body> {
        let generation = self.identity.generation();
        let mut slot = self.client.lock();
        if slot.0 != generation {
            *slot = (generation, hyper_client(&self.tls, self.connect_timeout));
        }
        slot.1.clone()
    }
}

impl tower::Service<Request<Body>> for RotatingHttps {
    type Response = Response<hyper::body::Incoming>;
    type Error = hyper_util::client::legacy::Error;
    type Future = hyper_util::client::legacy::ResponseFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        self.current().request(req)
    }
}

/// A kube client for `server` that trusts `ca_pem` and authenticates with
/// `identity`'s current pair.
pub fn client(
    server: &str,
    ca_pem: &str,
    identity: Arc<Identity>,
) -> Result<kube::Client, IdentityError> {
    let uri: http::Uri = server
        .parse()
        .map_err(|e: http::uri::InvalidUri| IdentityError::Url {
            url: server.to_owned(),
            reason: e.to_string(),
        })?;
    let mut config = kube::Config::new(uri);
    config.root_cert = Some(cert::pem_certificates(ca_pem)?);
    let mut tls = config.rustls_client_config().map_err(IdentityError::Tls)?;
    tls.client_auth_cert_resolver = Arc::new(Resolver(identity.clone()));
    let tls = Arc::new(tls);
    let first = hyper_client(&tls, config.connect_timeout);
    let service = RotatingHttps {
        tls,
        client: Arc::new(Mutex::new((identity.generation(), first))),
        identity,
        connect_timeout: config.connect_timeout,
    };
    let stack = tower::ServiceBuilder::new()
        .layer(config.base_uri_layer())
        .service(service);
    Ok(kube::Client::new(stack, config.default_namespace))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::join::testing::TestCa;

    #[test]
    fn the_resolver_presents_the_pair_swapped_in() {
        let ca = TestCa::new();
        let a = cert::new_request("gpu-a").unwrap();
        let b = cert::new_request("gpu-a").unwrap();
        let cert_a = ca.sign(&a.request_pem, Duration::from_secs(60));
        let cert_b = ca.sign(&b.request_pem, Duration::from_secs(60));
        let identity = Identity::new(&cert_a, &a.key_pem).unwrap();
        let resolver = Resolver(identity.clone());
        let der = |pem: &str| cert::pem_certificates(pem).unwrap().remove(0);
        let presented = resolver.resolve(&[], &[]).unwrap();
        assert_eq!(presented.cert[0].as_ref(), der(&cert_a).as_slice());
        assert_eq!(identity.generation(), 0);
        identity.replace(&cert_b, &b.key_pem).unwrap();
        let presented = resolver.resolve(&[], &[]).unwrap();
        assert_eq!(presented.cert[0].as_ref(), der(&cert_b).as_slice());
        assert_eq!(identity.generation(), 1);
        // A bad pair leaves the current one in place.
        assert!(identity.replace("junk", &b.key_pem).is_err());
        assert_eq!(identity.generation(), 1);
    }
}
