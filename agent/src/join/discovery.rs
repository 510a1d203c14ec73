//! Token discovery, as kubeadm's `discovery/token`: read the anonymously
//! readable ConfigMap `kube-public/cluster-info` without trusting the
//! server (its CA is what we are here to learn), check the detached JWS
//! the control plane signed its kubeconfig with under the token's secret,
//! pin the CA it names against `--ca-cert-hash`, then read the ConfigMap
//! once more over TLS verified with that CA and require the same content.

use std::collections::BTreeMap;
use std::time::Duration;

use base64::Engine as _;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::Api;

use super::cert::{self, CertError};
use super::token::{BootstrapToken, CaCertHash};

/// Namespace and name of the discovery ConfigMap.
pub const NAMESPACE: &str = "kube-public";
/// Name of the discovery ConfigMap.
pub const NAME: &str = "cluster-info";
/// Key of the kubeconfig in it.
pub const KUBECONFIG_KEY: &str = "kubeconfig";
/// Prefix of the per-token signatures in it.
pub const SIGNATURE_PREFIX: &str = "jws-kubeconfig-";

/// The control plane as cluster-info describes it, once trusted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterInfo {
    /// Server URL the agent talks to from now on.
    pub server: String,
    /// The CA bundle (PEM) the server's certificate chains to.
    pub ca_pem: String,
}

/// Why the control plane cannot be trusted.
#[derive(Debug, thiserror::Error)]
pub enum DiscoveryError {
    /// `--join` is not a URL.
    #[error("--join {url:?} is not a URL: {reason}")]
    Url {
        /// The argument.
        url: String,
        /// Why.
        reason: String,
    },
    /// No client could be built.
    #[error("client for {url}: {source}")]
    Client {
        /// The URL.
        url: String,
        /// Cause.
        #[source]
        source: kube::Error,
    },
    /// The ConfigMap could not be read.
    #[error("read {NAMESPACE}/{NAME} from {url} ({how}): {source}")]
    Fetch {
        /// The URL.
        url: String,
        /// "unverified" or "verified with the pinned CA".
        how: &'static str,
        /// Cause.
        #[source]
        source: kube::Error,
    },
    /// No answer in time.
    #[error("read {NAMESPACE}/{NAME} from {url}: no answer within {timeout:?}")]
    Timeout {
        /// The URL.
        url: String,
        /// The limit.
        timeout: Duration,
    },
    /// The ConfigMap has no kubeconfig.
    #[error("{NAMESPACE}/{NAME} has no {KUBECONFIG_KEY:?} key: is this a hami control plane?")]
    NoKubeconfig,
    /// No signature for this token.
    #[error(
        "{NAMESPACE}/{NAME} holds no signature for token id {id:?}: the token is unknown to this control plane or has expired (create one with `hami token create --cluster <name>`)"
    )]
    NoSignature {
        /// The token id.
        id: String,
    },
    /// The signature does not verify with this token's secret.
    #[error(
        "the {NAMESPACE}/{NAME} signature for token id {id:?} does not verify with the token's secret: refusing to trust this control plane (wrong token secret, or someone in the middle)"
    )]
    BadSignature {
        /// The token id.
        id: String,
    },
    /// The signed kubeconfig is unusable.
    #[error("the kubeconfig in {NAMESPACE}/{NAME}: {0}")]
    Kubeconfig(String),
    /// The CA in the kubeconfig is unusable.
    #[error("the CA in {NAMESPACE}/{NAME}: {0}")]
    Ca(#[from] CertError),
    /// The CA is not the pinned one.
    #[error(
        "the control plane's CA in {NAMESPACE}/{NAME} has public key hash {actual} but --ca-cert-hash expects {expected}: refusing to trust it (wrong hash, or not the control plane you meant)",
        actual = join(actual), expected = join(expected)
    )]
    CaMismatch {
        /// The pins given.
        expected: Vec<CaCertHash>,
        /// The hash of each CA certificate found.
        actual: Vec<CaCertHash>,
    },
    /// The second, verified read differs from the first.
    #[error(
        "{NAMESPACE}/{NAME} read over verified TLS differs from the first read: refusing to trust it"
    )]
    Changed,
}

fn join(hashes: &[CaCertHash]) -> String {
    hashes
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Checks cluster-info's data: the token's signature over the kubeconfig,
/// one cluster with a server and a CA, and the CA against the pins (any CA
/// certificate matching any pin, as kubeadm's `pubkeypin.Set.CheckAny`).
pub fn verify(
    data: &BTreeMap<String, String>,
    token: &BootstrapToken,
    pins: &[CaCertHash],
) -> Result<ClusterInfo, DiscoveryError> {
    let kubeconfig = data
        .get(KUBECONFIG_KEY)
        .ok_or(DiscoveryError::NoKubeconfig)?;
    let id = token.id().to_owned();
    let signature = data
        .get(&format!("{SIGNATURE_PREFIX}{id}"))
        .ok_or_else(|| DiscoveryError::NoSignature { id: id.clone() })?;
    if !hami_apiserver::server::auth::bootstrap::signature_valid(
        signature,
        kubeconfig,
        token.id(),
        token.secret(),
    ) {
        return Err(DiscoveryError::BadSignature { id });
    }
    let info = parse_kubeconfig(kubeconfig)?;
    let ders = cert::pem_certificates(&info.ca_pem)?;
    let mut actual = Vec::new();
    for der in &ders {
        actual.push(CaCertHash::of_spki(&cert::inspect(der)?.spki));
    }
    if !actual.iter().any(|a| pins.contains(a)) {
        return Err(DiscoveryError::CaMismatch {
            expected: pins.to_vec(),
            actual,
        });
    }
    Ok(info)
}

/// The single cluster's server and CA of a cluster-info kubeconfig.
fn parse_kubeconfig(text: &str) -> Result<ClusterInfo, DiscoveryError> {
    let bad = |m: String| DiscoveryError::Kubeconfig(m);
    let kc = kube::config::Kubeconfig::from_yaml(text).map_err(|e| bad(e.to_string()))?;
    let [named] = kc.clusters.as_slice() else {
        return Err(bad(format!(
            "expected exactly one cluster, found {}",
            kc.clusters.len()
        )));
    };
    let cluster = named
        .cluster
        .as_ref()
        .ok_or_else(|| bad("the cluster has no fields".into()))?;
    let server = cluster
        .server
        .clone()
        .filter(|s| s.starts_with("https://"))
        .ok_or_else(|| bad("the cluster has no https:// server".into()))?;
    let data = cluster
        .certificate_authority_data
        .as_deref()
        .ok_or_else(|| bad("the cluster has no certificate-authority-data".into()))?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(data.trim())
        .map_err(|e| bad(format!("certificate-authority-data is not base64: {e}")))?;
    let ca_pem = String::from_utf8(bytes)
        .map_err(|_| bad("certificate-authority-data is not PEM text".into()))?;
    Ok(ClusterInfo { server, ca_pem })
}

/// Reads cluster-info from `url` unverified, checks it ([`verify`]), reads
/// it again verified with the pinned CA and returns the trusted result.
pub async fn discover(
    url: &str,
    token: &BootstrapToken,
    pins: &[CaCertHash],
    timeout: Duration,
) -> Result<ClusterInfo, DiscoveryError> {
    let uri: http::Uri = url
        .parse()
        .map_err(|e: http::uri::InvalidUri| DiscoveryError::Url {
            url: url.to_owned(),
            reason: e.to_string(),
        })?;
    let mut insecure = kube::Config::new(uri.clone());
    insecure.accept_invalid_certs = true;
    let first = fetch(url, insecure, "unverified", timeout).await?;
    let info = verify(&first, token, pins)?;

    let mut secure = kube::Config::new(uri);
    secure.root_cert = Some(cert::pem_certificates(&info.ca_pem)?);
    let second = fetch(url, secure, "verified with the pinned CA", timeout).await?;
    if second.get(KUBECONFIG_KEY) != first.get(KUBECONFIG_KEY) {
        return Err(DiscoveryError::Changed);
    }
    Ok(info)
}

async fn fetch(
    url: &str,
    config: kube::Config,
    how: &'static str,
    timeout: Duration,
) -> Result<BTreeMap<String, String>, DiscoveryError> {
    let client = kube::Client::try_from(config).map_err(|source| DiscoveryError::Client {
        url: url.to_owned(),
        source,
    })?;
    let api: Api<ConfigMap> = Api::namespaced(client, NAMESPACE);
    match tokio::time::timeout(timeout, api.get(NAME)).await {
        Ok(Ok(cm)) => Ok(cm.data.unwrap_or_default()),
        Ok(Err(source)) => Err(DiscoveryError::Fetch {
            url: url.to_owned(),
            how,
            source,
        }),
        Err(_) => Err(DiscoveryError::Timeout {
            url: url.to_owned(),
            timeout,
        }),
    }
}

#[cfg(test)]
#[path = "discovery_tests.rs"]
mod tests;
