//! Serving the API over TLS, as kube-apiserver's secure port does: the
//! serving certificate is read from files and swapped in while the server
//! runs when they change (rotation without a restart); a client certificate
//! is optional, and one that verifies against the client CA becomes the
//! connection's identity (CN = user, O = groups), handed to the API server
//! as [`PeerIdentity`] in every request of that connection.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use hami_apiserver::server::auth::PeerIdentity;
use hami_apiserver::server::rbac::UserInfo;
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use parking_lot::RwLock;
use rustls::RootCertStore;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt as _;

/// What one connection may hold, as kube-apiserver's secure port sets
/// Go's `http.Server` (`MaxHeaderBytes` 1 MiB, `ReadHeaderTimeout` 32 s,
/// `IdleTimeout` 90 s; Go bounds the TLS handshake by the read timeouts).
/// Each connection is served in its own task from the moment it is
/// accepted, handshake included, so a client that stalls holds only its own
/// connection, never the accept loop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// The TLS handshake must finish within this, or the connection is
    /// dropped (a client that connects and sends nothing, or stops half
    /// way through its hello).
    pub handshake_timeout: Duration,
    /// A request's headers must arrive within this from when the
    /// connection starts waiting for them (a slowloris client). hyper runs
    /// the same timer while a kept-alive connection waits for its next
    /// request, so this is the idle keep-alive timeout too: an idle
    /// connection is closed after it (sooner than Go's 90 s `IdleTimeout`;
    /// clients reconnect, as they must after any idle close).
    pub header_read_timeout: Duration,
    /// What one connection may send before a request's headers end
    /// (hyper's read buffer; at least 8 KiB, hyper's minimum).
    pub max_buf_size: usize,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self {
            handshake_timeout: Duration::from_secs(10),
            header_read_timeout: Duration::from_secs(32),
            max_buf_size: 1024 * 1024,
        }
    }
}

/// Raises this process's soft limit on open files to its hard limit, as
/// Go's runtime does at start-up for kube-apiserver (since Go 1.19): every
/// connection and watch holds a descriptor, and the usual soft limit of
/// 1,024 would refuse connections long before the per-user limits apply.
/// Logs what it did; a failure is logged and start-up goes on.
pub fn raise_open_files_limit() {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => tracing::info!(limit, "open files limit (RLIMIT_NOFILE)"),
        Err(e) => tracing::warn!(
            error = %e,
            "could not raise the open files limit (RLIMIT_NOFILE); connections may be refused past it"
        ),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: {what}", path.display())]
    Invalid { path: PathBuf, what: String },
    #[error("building the TLS configuration: {0}")]
    Config(String),
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_owned(),
        source,
    })
}

/// Every certificate of a PEM file, in order (at least one).
pub fn pem_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bytes = read(path)?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Invalid {
            path: path.to_owned(),
            what: format!("not PEM certificates: {e}"),
        })?;
    if certs.is_empty() {
        return Err(TlsError::Invalid {
            path: path.to_owned(),
            what: "holds no CERTIFICATE block".into(),
        });
    }
    Ok(certs)
}

/// The serving certificate and key files; what [`ServingCert`] reads.
#[derive(Clone, Debug)]
pub struct CertFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl CertFiles {
    fn load(&self) -> Result<Loaded, TlsError> {
        let cert_bytes = read(&self.cert)?;
        let key_bytes = read(&self.key)?;
        let chain = pem_certificates(&self.cert)?;
        let key = PrivateKeyDer::from_pem_slice(&key_bytes).map_err(|e| TlsError::Invalid {
            path: self.key.clone(),
            what: format!("not a PEM private key: {e}"),
        })?;
        let certified =
            CertifiedKey::from_der(chain, key, &provider()).map_err(|e| TlsError::Invalid {
                path: self.key.clone(),
                what: format!("does not fit {}: {e}", self.cert.display()),
            })?;
        Ok(Loaded {
            cert_bytes,
            key_bytes,
            key: Arc::new(certified),
        })
    }
}

/// The serving certificate, swapped whole when its files change.
pub struct ServingCert {
    files: CertFiles,
    current: RwLock<Loaded>,
}

struct Loaded {
    cert_bytes: Vec<u8>,
    key_bytes: Vec<u8>,
    key: Arc<CertifiedKey>,
}

impl std::fmt::Debug for ServingCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServingCert")
            .field("files", &self.files)
            .finish_non_exhaustive()
    }
}

impl ServingCert {
    /// Reads the pair; an unreadable or mismatched pair is an error.
    pub fn load(files: CertFiles) -> Result<Arc<Self>, TlsError> {
        let loaded = files.load()?;
        Ok(Arc::new(Self {
            files,
            current: RwLock::new(loaded),
        }))
    }

    /// Reads the files again and swaps the pair in when either changed.
    /// Returns whether it changed. A pair that does not load (half written,
    /// mismatched) is an error and the old pair stays.
    pub fn reload(&self) -> Result<bool, TlsError> {
        let cert_bytes = read(&self.files.cert)?;
        let key_bytes = read(&self.files.key)?;
        {
            let current = self.current.read();
            if current.cert_bytes == cert_bytes && current.key_bytes == key_bytes {
                return Ok(false);
            }
        }
        let loaded = self.files.load()?;
        *self.current.write() = loaded;
        Ok(true)
    }
}

impl ResolvesServerCert for ServingCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.read().key.clone())
    }
}

/// The server's TLS configuration: the (reloading) serving certificate,
/// client certificates asked for and verified against `client_ca` when
/// given (clients without one still connect and authenticate otherwise),
/// HTTP/1.1 by ALPN.
pub fn server_config(
    serving: Arc<ServingCert>,
    client_ca: Option<&Path>,
) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let provider = provider();
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?;
    let builder = match client_ca {
        Some(path) => {
            let mut roots = RootCertStore::empty();
            for cert in pem_certificates(path)? {
                roots.add(cert).map_err(|e| TlsError::Invalid {
                    path: path.to_owned(),
                    what: format!("not a usable CA certificate: {e}"),
                })?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .allow_unauthenticated()
                .build()
                .map_err(|e| TlsError::Config(e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_cert_resolver(serving);
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Reloads `serving` every `interval` until `stop` turns true; `refresh`
/// runs first each time (for hami's own PKI: re-issue a certificate about
/// to expire, which writes the files this then reads).
pub fn spawn_reloader(
    serving: Arc<ServingCert>,
    interval: Duration,
    refresh: impl Fn() -> Result<(), String> + Send + 'static,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.wait_for(|s| *s) => return,
            }
            if let Err(e) = refresh() {
                tracing::warn!(error = %e, "checking the serving certificate");
            }
            match serving.reload() {
                Ok(true) => tracing::info!(
                    cert = %serving.files.cert.display(),
                    "serving certificate changed on disk: new connections get the new one"
                ),
                Ok(false) => {}
                Err(e) => tracing::warn!(
                    error = %e,
                    "the serving certificate's files do not load; still serving the previous one"
                ),
            }
        }
    })
}

/// The identity of a verified client certificate, if the connection
/// presented one. The chain was verified in the handshake; a certificate
/// whose subject names no user gives no identity (the request may still
/// carry a token).
fn peer_identity(connection: &rustls::ServerConnection) -> Option<PeerIdentity> {
    let leaf = connection.peer_certificates()?.first()?;
    match crate::pki::client_identity(leaf.as_ref()) {
        Ok(id) => Some(PeerIdentity(UserInfo {
            name: id.user,
            groups: id.groups,
        })),
        Err(e) => {
            tracing::info!(error = %e, "client certificate carries no usable identity");
            None
        }
    }
}

/// Serves `router` over TLS on `listener` until `shutdown` resolves, then
/// waits (at most 10 s) for open connections to finish. Each connection is
/// bounded by `limits` (see [`ConnectionLimits`]).
pub async fn serve(
    listener: TcpListener,
    router: axum::Router,
    tls: Arc<rustls::ServerConfig>,
    limits: ConnectionLimits,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let max_buf_size = limits.max_buf_size.max(8 * 1024);
    let acceptor = TlsAcceptor::from(tls);
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // EMFILE and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "accepting a connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let router = router.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let handshake = acceptor.accept(tcp);
            let stream = match tokio::time::timeout(limits.handshake_timeout, handshake).await {
                Ok(Ok(stream)) => stream,
                Ok(Err(e)) => {
                    tracing::debug!(%peer, error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!(%peer, "TLS handshake timed out");
                    return;
                }
            };
            let identity = peer_identity(stream.get_ref().1);
            let service = router.map_request(move |mut request: axum::extract::Request<_>| {
                if let Some(identity) = &identity {
                    request.extensions_mut().insert(identity.clone());
                }
                request
            });
            let service = TowerToHyperService::new(service);
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(limits.header_read_timeout)
                .max_buf_size(max_buf_size)
                .serve_connection(TokioIo::new(stream), service);
            if let Err(e) = watcher.watch(connection).await {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(Duration::from_secs(10), graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("TLS connections did not close within 10 s");
    }
    Ok(())
}
