//! How `hami up` serves its API: HTTPS by default, with hami's own PKI in
//! `DATA_DIR/pki` or the operator's certificates, or plain HTTP with
//! `--insecure-http`; and the credentials the kubeconfig and the
//! in-process clients (Push agents, simulated members' agents) carry.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use anyhow::Context;

use super::kubeconfig::{self, TlsCredentials};
use super::up::TlsArgs;
use crate::https::{self, CertFiles, ServingCert};
use crate::pki::{self, Pki};

/// hami-control's own identity towards its API (Push agents, the
/// simulated members' agents): a cluster administrator, as
/// kube-controller-manager's credentials are on a kubeadm cluster.
pub const CONTROL_USER: &str = "system:hami:control";

/// PEM credentials of a client of the API.
#[derive(Clone)]
pub struct Credentials {
    pub ca: String,
    pub cert: String,
    pub key: String,
}

impl Credentials {
    fn tls(&self) -> TlsCredentials<'_> {
        TlsCredentials {
            ca: &self.ca,
            client_cert: &self.cert,
            client_key: &self.key,
        }
    }
}

/// The API served over TLS.
pub struct Secure {
    pub tls: Arc<rustls::ServerConfig>,
    serving: Arc<ServingCert>,
    /// With hami's own PKI: its directory's parent and the SANs, to
    /// re-issue the serving certificate before it expires.
    managed: Option<(PathBuf, Vec<String>)>,
    /// The admin's credentials (the kubeconfig's user).
    pub admin: Credentials,
    /// hami-control's own ([`CONTROL_USER`]).
    pub control: Credentials,
    /// The cluster CA, which signs approved agent certificates (the CSR
    /// controller).
    pub pki: Arc<Pki>,
}

impl Secure {
    /// Loads or creates what serving needs. `listen` is the bound address:
    /// a specific IP joins the SANs.
    pub fn prepare(args: &TlsArgs, data_dir: &Path, listen: SocketAddr) -> anyhow::Result<Self> {
        let mut sans = args.tls_sans.clone();
        if !listen.ip().is_unspecified() {
            sans.push(listen.ip().to_string());
        }
        let now = SystemTime::now();
        let pki = Pki::load_or_create(data_dir, &sans, now)
            .with_context(|| format!("hami's PKI in {}", data_dir.join("pki").display()))?;
        let (files, managed, server_ca) = match (&args.tls_cert_file, &args.tls_private_key_file) {
            (Some(cert), Some(key)) => {
                let chain = https::pem_certificates(cert)?;
                // The kubeconfig trusts the last certificate of the chain
                // given (a root, or the top intermediate: both anchor).
                let top = chain
                    .last()
                    .map(|c| c.as_ref().to_vec())
                    .unwrap_or_default();
                let ca = pem::encode(&pem::Pem::new("CERTIFICATE", top));
                let files = CertFiles {
                    cert: cert.clone(),
                    key: key.clone(),
                };
                (files, None, ca)
            }
            _ => {
                let files = CertFiles {
                    cert: pki.dir().join(pki::SERVING_CERT),
                    key: pki.dir().join(pki::SERVING_KEY),
                };
                (files, Some((data_dir.to_owned(), sans)), pki.ca_pem())
            }
        };
        let serving = ServingCert::load(files)?;
        let client_cas = client_ca_bundle(&pki, args.client_ca_file.as_deref())?;
        let tls = https::server_config(serving.clone(), Some(&client_cas))?;
        let (cert, key) = pki.admin();
        let admin = Credentials {
            ca: server_ca.clone(),
            cert,
            key,
        };
        let (cert, key) = pki
            .issue_client(
                CONTROL_USER,
                &[pki::ADMIN_GROUP.to_owned()],
                pki::LEAF_VALIDITY,
                now,
            )
            .context("issue hami-control's own client certificate")?;
        let control = Credentials {
            ca: server_ca,
            cert,
            key,
        };
        Ok(Self {
            tls,
            serving,
            managed,
            admin,
            control,
            pki: Arc::new(pki),
        })
    }

    /// Re-reads the serving certificate every `interval` (see
    /// [`https::spawn_reloader`]).
    pub fn spawn_reloader(
        &self,
        interval: std::time::Duration,
        stop: tokio::sync::watch::Receiver<bool>,
    ) -> tokio::task::JoinHandle<()> {
        let managed = self.managed.clone();
        let refresh = move || match &managed {
            Some((dir, sans)) => Pki::load_or_create(dir, sans, SystemTime::now())
                .map(|_| ())
                .map_err(|e| e.to_string()),
            None => Ok(()),
        };
        https::spawn_reloader(self.serving.clone(), interval, refresh, stop)
    }

    pub fn kubeconfig(&self, url: &str) -> String {
        kubeconfig::render_tls(url, &self.admin.tls())
    }
}

/// hami's CA, then the operator's bundle, in one file under the PKI
/// directory (rustls reads a path).
fn client_ca_bundle(pki: &Pki, extra: Option<&Path>) -> anyhow::Result<PathBuf> {
    let own = pki.dir().join(pki::CA_CERT);
    let Some(extra) = extra else {
        return Ok(own);
    };
    let mut bundle = pki.ca_pem();
    let text = std::fs::read_to_string(extra)
        .with_context(|| format!("--client-ca-file {}", extra.display()))?;
    https::pem_certificates(extra)?;
    if !bundle.ends_with('\n') {
        bundle.push('\n');
    }
    bundle.push_str(&text);
    let path = pki.dir().join("client-ca-bundle.crt");
    kubeconfig::write_atomic(&path, &bundle)
        .with_context(|| format!("write {}", path.display()))?;
    Ok(path)
}

/// A client of the control plane at `url`: over TLS with `credentials`,
/// or plain HTTP without.
pub async fn client(url: &str, credentials: Option<&Credentials>) -> anyhow::Result<kube::Client> {
    let config = match credentials {
        None => kube::Config::new(url.parse().with_context(|| format!("URL {url}"))?),
        Some(c) => {
            let kc = kube::config::Kubeconfig::from_yaml(&kubeconfig::render_tls(url, &c.tls()))
                .context("in-process kubeconfig")?;
            kube::Config::from_custom_kubeconfig(kc, &Default::default())
                .await
                .context("in-process kubeconfig")?
        }
    };
    kube::Client::try_from(config).context("client to the control plane")
}
