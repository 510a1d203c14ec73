//! The agent's certificate directory (`--cert-dir`): its key (0600), its
//! certificate and a kubeconfig naming both, with the control plane's
//! server and CA. Every file is written to a temporary name, synced and
//! renamed over the old one, so a reader sees the old file or the new one,
//! never half of either. The key and the certificate are two renames: a
//! crash between them leaves a pair that does not match, which [`CertDir::load`]
//! reports (the agent then joins again, as kubelet bootstraps again).

use std::fs;
use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use base64::Engine as _;

use super::cert::{self, CertError, CertInfo};

/// File name of the kubeconfig in the cert dir.
pub const KUBECONFIG: &str = "hami-agent.kubeconfig";
/// File name of the private key.
pub const KEY: &str = "hami-agent.key";
/// File name of the certificate.
pub const CERT: &str = "hami-agent.crt";

/// A cert dir that cannot be read or written.
#[derive(Debug, thiserror::Error)]
pub enum FilesError {
    /// A file operation failed.
    #[error("{what} {path}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// The kubeconfig is not the agent's.
    #[error("{path}: {reason}")]
    Kubeconfig {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The certificate or key is unusable.
    #[error("{path}: {source}")]
    Cert {
        /// The certificate file.
        path: PathBuf,
        /// Cause.
        #[source]
        source: CertError,
    },
}

/// The agent's identity as stored.
#[derive(Debug, Clone)]
pub struct Stored {
    /// The control plane's URL.
    pub server: String,
    /// Its CA (PEM).
    pub ca_pem: String,
    /// The agent's certificate (PEM).
    pub cert_pem: String,
    /// The agent's key (PEM).
    pub key_pem: String,
    /// What the certificate says.
    pub info: CertInfo,
}

/// The directory the agent keeps its identity in.
#[derive(Debug, Clone)]
pub struct CertDir {
    dir: PathBuf,
}

impl CertDir {
    /// The directory `dir` (created on first write, mode 0700).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// Path of the kubeconfig.
    pub fn kubeconfig_path(&self) -> PathBuf {
        self.dir.join(KUBECONFIG)
    }

    /// Path of the certificate.
    pub fn cert_path(&self) -> PathBuf {
        self.dir.join(CERT)
    }

    /// Path of the key.
    pub fn key_path(&self) -> PathBuf {
        self.dir.join(KEY)
    }

    /// The stored identity; None when there is no kubeconfig yet.
    pub fn load(&self) -> Result<Option<Stored>, FilesError> {
        let path = self.kubeconfig_path();
        let text = match fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(FilesError::Io {
                    what: "read",
                    path,
                    source,
                });
            }
        };
        let bad = |reason: String| FilesError::Kubeconfig {
            path: path.clone(),
            reason,
        };
        let kc = kube::config::Kubeconfig::from_yaml(&text).map_err(|e| bad(e.to_string()))?;
        let cluster = kc
            .clusters
            .first()
            .and_then(|c| c.cluster.as_ref())
            .ok_or_else(|| bad("no cluster".into()))?;
        let server = cluster
            .server
            .clone()
            .ok_or_else(|| bad("no server".into()))?;
        let ca_b64 = cluster
            .certificate_authority_data
            .as_deref()
            .ok_or_else(|| bad("no certificate-authority-data".into()))?;
        let ca_pem = base64::engine::general_purpose::STANDARD
            .decode(ca_b64.trim())
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .ok_or_else(|| bad("certificate-authority-data is not base64 PEM".into()))?;
        let user = kc
            .auth_infos
            .first()
            .and_then(|u| u.auth_info.as_ref())
            .ok_or_else(|| bad("no user".into()))?;
        let cert_path = user
            .client_certificate
            .as_deref()
            .map(PathBuf::from)
            .ok_or_else(|| bad("no client-certificate".into()))?;
        let key_path = user
            .client_key
            .as_deref()
            .map(PathBuf::from)
            .ok_or_else(|| bad("no client-key".into()))?;
        let cert_pem = read(&cert_path)?;
        let key_pem = read(&key_path)?;
        let info = cert::inspect_pair(&cert_pem, &key_pem).map_err(|source| FilesError::Cert {
            path: cert_path,
            source,
        })?;
        Ok(Some(Stored {
            server,
            ca_pem,
            cert_pem,
            key_pem,
            info,
        }))
    }

    /// Writes a new key (0600) and certificate over the old ones.
    pub fn write_pair(&self, cert_pem: &str, key_pem: &str) -> Result<(), FilesError> {
        self.ensure_dir()?;
        let (key, cert) = (self.key_path(), self.cert_path());
        let key_tmp = write_temp(&key, key_pem.as_bytes(), 0o600)?;
        let cert_tmp = write_temp(&cert, cert_pem.as_bytes(), 0o644)?;
        rename(&key_tmp, &key)?;
        rename(&cert_tmp, &cert)
    }

    /// Writes the kubeconfig: `server`, the CA embedded, the client
    /// certificate and key by their paths in this directory.
    pub fn write_kubeconfig(&self, server: &str, ca_pem: &str) -> Result<(), FilesError> {
        self.ensure_dir()?;
        let path = self.kubeconfig_path();
        let text = render_kubeconfig(server, ca_pem, &self.cert_path(), &self.key_path());
        let tmp = write_temp(&path, text.as_bytes(), 0o600)?;
        rename(&tmp, &path)
    }

    fn ensure_dir(&self) -> Result<(), FilesError> {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.dir)
            .map_err(|source| FilesError::Io {
                what: "create directory",
                path: self.dir.clone(),
                source,
            })
    }
}

/// The agent's kubeconfig text.
pub fn render_kubeconfig(server: &str, ca_pem: &str, cert: &Path, key: &Path) -> String {
    let q = |s: &str| serde_json::Value::from(s).to_string();
    let ca = base64::engine::general_purpose::STANDARD.encode(ca_pem);
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: hami\n  cluster:\n    server: {}\n    certificate-authority-data: {ca}\nusers:\n- name: hami-agent\n  user:\n    client-certificate: {}\n    client-key: {}\ncontexts:\n- name: hami-agent\n  context:\n    cluster: hami\n    user: hami-agent\ncurrent-context: hami-agent\n",
        q(server),
        q(&cert.to_string_lossy()),
        q(&key.to_string_lossy()),
    )
}

fn read(path: &Path) -> Result<String, FilesError> {
    fs::read_to_string(path).map_err(|source| FilesError::Io {
        what: "read",
        path: path.to_owned(),
        source,
    })
}

/// Writes `bytes` to a temporary file beside `path` with `mode`, synced.
fn write_temp(path: &Path, bytes: &[u8], mode: u32) -> Result<PathBuf, FilesError> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.tmp"));
    let io = |what: &'static str| {
        let tmp = tmp.clone();
        move |source| FilesError::Io {
            what,
            path: tmp,
            source,
        }
    };
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)
        .map_err(io("create"))?;
    // An older temporary file keeps its mode through `open`: set it.
    f.set_permissions(fs::Permissions::from_mode(mode))
        .map_err(io("chmod"))?;
    f.write_all(bytes).map_err(io("write"))?;
    f.sync_all().map_err(io("sync"))?;
    Ok(tmp)
}

fn rename(from: &Path, to: &Path) -> Result<(), FilesError> {
    fs::rename(from, to).map_err(|source| FilesError::Io {
        what: "rename into",
        path: to.to_owned(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::join::testing::TestCa;

    #[test]
    fn an_identity_written_is_loaded_back_with_private_modes() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = CertDir::new(tmp.path().join("pki"));
        assert!(dir.load().unwrap().is_none());
        let ca = TestCa::new();
        let kr = cert::new_request("gpu-a").unwrap();
        let cert_pem = ca.sign(&kr.request_pem, std::time::Duration::from_secs(600));
        dir.write_pair(&cert_pem, &kr.key_pem).unwrap();
        dir.write_kubeconfig("https://h:1", &ca.cert_pem).unwrap();
        let stored = dir.load().unwrap().unwrap();
        assert_eq!(stored.server, "https://h:1");
        assert_eq!(stored.ca_pem, ca.cert_pem);
        assert_eq!(stored.cert_pem, cert_pem);
        assert_eq!(
            stored.info.common_name.as_deref(),
            Some("system:hami:agent:gpu-a")
        );
        let mode = |p: PathBuf| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(dir.key_path()), 0o600);
        assert_eq!(mode(dir.kubeconfig_path()), 0o600);
        assert_eq!(mode(tmp.path().join("pki")), 0o700);

        // A key that is not the certificate's is reported, not used.
        let other = cert::new_request("gpu-a").unwrap();
        dir.write_pair(&cert_pem, &other.key_pem).unwrap();
        assert!(matches!(
            dir.load(),
            Err(FilesError::Cert {
                source: CertError::KeyMismatch,
                ..
            })
        ));
        // No temporary files are left behind.
        let names: Vec<_> = fs::read_dir(tmp.path().join("pki"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(names.iter().all(|n| !n.ends_with(".tmp")), "{names:?}");
    }
}
