//! Joining the control plane with a bootstrap token, kubeadm join and
//! kubelet TLS bootstrap being the model:
//!
//! 1. A certificate kept in the cert dir from an earlier join and valid
//!    for more than a minute is used as is: a restarted agent does not
//!    join again ([`files`]).
//! 2. Otherwise [`discovery`] learns the control plane's server and CA
//!    from `kube-public/cluster-info`, trusting it only when the token's
//!    signature verifies and the CA matches a `--ca-cert-hash` pin.
//! 3. With that CA trusted and the token as bearer, the agent sends a
//!    CertificateSigningRequest for a fresh P-256 key ([`cert`], [`csr`])
//!    and writes key, certificate and a kubeconfig into the cert dir.
//! 4. The control-plane client authenticates with that pair through a
//!    swappable [`identity::Identity`]; the [`renew::Renewer`] replaces the
//!    pair at 70-90% of its lifetime without restarting anything.

pub mod cert;
pub mod csr;
pub mod discovery;
pub mod files;
pub mod identity;
pub mod metrics;
pub mod renew;
pub mod token;

#[cfg(test)]
mod testing;

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use serde_json::json;

use cert::{CertError, CertInfo};
use csr::CsrError;
use discovery::{ClusterInfo, DiscoveryError};
use files::{CertDir, FilesError, Stored};
use identity::{Identity, IdentityError};
pub use metrics::CertificateMetrics;
use renew::Renewer;
use token::{BootstrapToken, CaCertHash};

/// A kept certificate is used only if valid for longer than this.
pub const MIN_REMAINING: Duration = Duration::from_secs(60);

/// Default of `--cert-dir`.
pub const DEFAULT_CERT_DIR: &str = "/var/lib/hami-agent";

/// Why the agent could not join.
#[derive(Debug, thiserror::Error)]
pub enum JoinError {
    /// The control plane could not be trusted.
    #[error("discovery: {0}")]
    Discovery(#[from] DiscoveryError),
    /// No certificate was issued.
    #[error("TLS bootstrap: {0}")]
    Csr(#[from] CsrError),
    /// A key or request could not be made.
    #[error("TLS bootstrap: {0}")]
    Cert(#[from] CertError),
    /// The cert dir could not be written.
    #[error("cert dir: {0}")]
    Files(#[from] FilesError),
    /// The client could not be built.
    #[error("control-plane client: {0}")]
    Identity(#[from] IdentityError),
    /// The bootstrap client could not be built.
    #[error("bootstrap client for {server}: {source}")]
    Bootstrap {
        /// The server.
        server: String,
        /// Cause.
        #[source]
        source: kube::Error,
    },
}

/// How to join.
#[derive(Debug, Clone)]
pub struct JoinConfig {
    /// The member cluster (the certificate names `system:hami:agent:<it>`).
    pub cluster_name: String,
    /// Where to read cluster-info (`--join`).
    pub url: String,
    /// The bootstrap token.
    pub token: BootstrapToken,
    /// Pins of the control plane's CA.
    pub ca_cert_hashes: Vec<CaCertHash>,
    /// Where key, certificate and kubeconfig are kept.
    pub cert_dir: PathBuf,
    /// Longest wait for a certificate (`--join-timeout`).
    pub timeout: Duration,
    /// Timeout of one discovery request.
    pub request_timeout: Duration,
}

/// A joined agent: its control-plane client and the renewer to run.
pub struct Joined {
    /// Authenticates with the agent's certificate, renewed in place.
    pub client: kube::Client,
    /// Run it (`renewer.run(stop)`) to keep the certificate valid.
    pub renewer: Renewer,
}

/// Uses the kept identity or joins, and builds the control-plane client.
pub async fn join(config: &JoinConfig, metrics: CertificateMetrics) -> Result<Joined, JoinError> {
    let dir = CertDir::new(&config.cert_dir);
    let kept = match dir.load() {
        Ok(Some(s)) => match usable(&s.info, &config.cluster_name, SystemTime::now()) {
            Ok(()) => {
                tracing::info!(
                    dir = %config.cert_dir.display(),
                    serial = s.info.serial,
                    "using the certificate kept from an earlier join"
                );
                Some(s)
            }
            Err(why) => {
                tracing::info!(dir = %config.cert_dir.display(), "kept certificate {why}: joining again");
                None
            }
        },
        Ok(None) => None,
        Err(e) => {
            tracing::warn!(error = %e, "kept identity unusable: joining again");
            None
        }
    };
    let (stored, issued_at) = match kept {
        Some(s) => {
            // Received when written: the file's modification time.
            let written = std::fs::metadata(dir.cert_path())
                .and_then(|m| m.modified())
                .unwrap_or(s.info.not_before);
            (s, written)
        }
        None => (bootstrap(config, &dir).await?, SystemTime::now()),
    };
    let identity = Identity::new(&stored.cert_pem, &stored.key_pem)?;
    let client = identity::client(&stored.server, &stored.ca_pem, identity.clone())?;
    metrics.set_expiration(stored.info.not_after);
    Ok(Joined {
        renewer: Renewer {
            cluster: config.cluster_name.clone(),
            client: client.clone(),
            identity,
            dir,
            info: stored.info,
            issued_at,
            timeout: config.timeout,
            metrics,
        },
        client,
    })
}

/// Whether a kept certificate may be used at `now` by the agent of `cluster`.
pub fn usable(info: &CertInfo, cluster: &str, now: SystemTime) -> Result<(), String> {
    let want = cert::agent_user(cluster);
    if info.common_name.as_deref() != Some(want.as_str()) {
        return Err(format!(
            "is for {:?}, not {want:?}",
            info.common_name.as_deref().unwrap_or("")
        ));
    }
    if now + MIN_REMAINING >= info.not_after {
        return Err("expires within a minute (or has expired)".into());
    }
    Ok(())
}

/// Discovery, then TLS bootstrap; writes the cert dir.
async fn bootstrap(config: &JoinConfig, dir: &CertDir) -> Result<Stored, JoinError> {
    tracing::info!(
        url = config.url,
        token_id = config.token.id(),
        "joining the control plane"
    );
    let info = discovery::discover(
        &config.url,
        &config.token,
        &config.ca_cert_hashes,
        config.request_timeout,
    )
    .await?;
    tracing::info!(
        server = info.server,
        "control plane trusted (token signature and CA pin verified)"
    );
    let client = bootstrap_client(&info, &config.token).await?;
    let kr = cert::new_request(&config.cluster_name)?;
    let issued = csr::request_certificate(
        &client,
        &config.cluster_name,
        &kr,
        config.timeout,
        csr::POLL,
    )
    .await?;
    dir.write_pair(&issued.cert_pem, &kr.key_pem)?;
    dir.write_kubeconfig(&info.server, &info.ca_pem)?;
    tracing::info!(
        csr = issued.request_name,
        serial = issued.info.serial,
        kubeconfig = %dir.kubeconfig_path().display(),
        "joined: client certificate issued"
    );
    Ok(Stored {
        server: info.server,
        ca_pem: info.ca_pem,
        cert_pem: issued.cert_pem,
        key_pem: kr.key_pem,
        info: issued.info,
    })
}

/// A client trusting the discovered CA, authenticating with the token.
async fn bootstrap_client(
    info: &ClusterInfo,
    token: &BootstrapToken,
) -> Result<kube::Client, JoinError> {
    let failed = |source| JoinError::Bootstrap {
        server: info.server.clone(),
        source,
    };
    let ca = base64::engine::general_purpose::STANDARD.encode(&info.ca_pem);
    let kubeconfig = json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "hami", "cluster": {"server": info.server, "certificate-authority-data": ca}}],
        "users": [{"name": "bootstrap", "user": {"token": token.bearer()}}],
        "contexts": [{"name": "bootstrap", "context": {"cluster": "hami", "user": "bootstrap"}}],
        "current-context": "bootstrap",
    });
    let kubeconfig: kube::config::Kubeconfig = serde_json::from_value(kubeconfig)
        .map_err(|e| failed(kube::Error::Service(Box::new(e))))?;
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .map_err(|e| failed(kube::Error::InferKubeconfig(e)))?;
    kube::Client::try_from(config).map_err(failed)
}

#[cfg(test)]
#[path = "join_tests.rs"]
mod tests;
