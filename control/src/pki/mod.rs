//! The control plane's PKI, laid out as kubeadm lays out
//! `/etc/kubernetes/pki`: one self-signed CA, created once and never
//! replaced, and the certificates it signs — the API server's serving
//! certificate, an admin client certificate, and client certificates issued
//! on demand (for the CSR flow and agents).
//!
//! Files under `<dir>/pki/`: `ca.crt`, `ca.key`, `apiserver.crt`,
//! `apiserver.key`, `admin.crt`, `admin.key`. Certificates are PEM (0644),
//! keys PKCS#8 PEM (0600), all ECDSA P-256. A serving or admin certificate
//! that no longer fits (missing, not signed by the CA, not matching its key,
//! expiring within [`ROTATE_BEFORE`], or — for serving — not covering the
//! asked SANs) is re-issued from the CA on load. Files that cannot be read
//! or parsed are errors naming the file: nothing an operator placed is
//! overwritten because it was unreadable.
//!
//! Nothing here reads the clock: whatever depends on time takes `now`.

mod cert;
mod csr;
mod files;
mod issue;
mod sans;
mod service_account;
mod tls;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tls_tests;

use std::collections::BTreeSet;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use rcgen::{Issuer, KeyPair, PublicKeyData};

pub use cert::{ClientIdentity, client_identity};
pub use csr::{CsrSubject, inspect_csr};
pub use service_account::{
    SA_KEY, SA_PUB, ServiceAccountKeyFiles, load_or_create_service_account_key,
};

use cert::CertInfo;
use issue::Issued;
use sans::San;

pub const CA_CERT: &str = "ca.crt";
pub const CA_KEY: &str = "ca.key";
pub const SERVING_CERT: &str = "apiserver.crt";
pub const SERVING_KEY: &str = "apiserver.key";
pub const ADMIN_CERT: &str = "admin.crt";
pub const ADMIN_KEY: &str = "admin.key";

pub const CA_COMMON_NAME: &str = "hami-ca";
pub const SERVING_COMMON_NAME: &str = "hami-apiserver";
pub const ADMIN_USER: &str = "hami-admin";
/// The group kube-apiserver's default RBAC binds to `cluster-admin`.
pub const ADMIN_GROUP: &str = "system:masters";

/// kubeadm's CA lifetime.
pub const CA_VALIDITY: Duration = Duration::from_secs(10 * 365 * 24 * 3600);
/// kubeadm's lifetime for the certificates the CA signs.
pub const LEAF_VALIDITY: Duration = Duration::from_secs(365 * 24 * 3600);
/// A certificate expiring within this is re-issued.
pub const ROTATE_BEFORE: Duration = Duration::from_secs(30 * 24 * 3600);

#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: {what}", path.display())]
    Invalid { path: PathBuf, what: String },
    #[error(
        "{} exists but {} does not: restore it, or remove both to create a new CA \
         (every certificate the old one signed then stops working)",
        present.display(),
        missing.display()
    )]
    CaIncomplete { present: PathBuf, missing: PathBuf },
    #[error("subject alternative name {san:?}: {reason}")]
    InvalidSan { san: String, reason: String },
    #[error("client identity: {what}")]
    InvalidIdentity { what: String },
    #[error("client certificate {what}")]
    ClientCert { what: String },
    #[error("certificate signing request {what}")]
    Csr { what: String },
    #[error("CA certificate: {what}")]
    CaCert { what: String },
    #[error("issuing the {what} certificate: {source}")]
    Issue {
        what: &'static str,
        #[source]
        source: rcgen::Error,
    },
    #[error("re-encoding a client certificate's subject: rcgen's output is not the DER expected")]
    Resubject,
    #[error("the system random number generator failed")]
    Random,
    #[error("building the TLS configuration: {what}")]
    Tls { what: String },
}

/// The loaded PKI: the CA (with its key, to sign), the serving pair and the
/// admin pair, all as they are on disk.
pub struct Pki {
    dir: PathBuf,
    ca: Ca,
    serving: Pair,
    admin: Pair,
}

struct Ca {
    pem: String,
    der: Vec<u8>,
    issuer: Issuer<'static, KeyPair>,
    not_after: SystemTime,
    /// DER SubjectPublicKeyInfo of the CA certificate.
    spki: Vec<u8>,
}

struct Pair {
    cert_pem: String,
    key_pem: String,
    not_after: SystemTime,
}

impl fmt::Debug for Pki {
    // Keys stay out of logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pki")
            .field("dir", &self.dir)
            .field("ca_not_after", &self.ca.not_after)
            .field("serving_not_after", &self.serving.not_after)
            .field("admin_not_after", &self.admin.not_after)
            .finish_non_exhaustive()
    }
}

impl Pki {
    /// Loads `dir/pki/` or creates it: a self-signed CA (CN `hami-ca`, 10
    /// years), a serving certificate for `sans` plus `localhost`,
    /// `127.0.0.1` and `::1` (1 year), and an admin client certificate (CN
    /// `hami-admin`, O `system:masters`, 1 year). Serving and admin
    /// certificates that no longer fit are re-issued from the same CA; the
    /// CA is never replaced.
    pub fn load_or_create(dir: &Path, sans: &[String], now: SystemTime) -> Result<Self, PkiError> {
        let wanted = sans::wanted(sans)?;
        let dir = dir.join("pki");
        files::ensure_dir(&dir)?;
        let ca = Ca::load_or_create(&dir, now)?;
        let serving = ca.leaf(
            &dir,
            (SERVING_CERT, SERVING_KEY),
            now,
            |info| missing_sans(info, &wanted),
            |not_after| issue::serving(&ca.issuer, SERVING_COMMON_NAME, &wanted, now, not_after),
        )?;
        let admin = ca.leaf(
            &dir,
            (ADMIN_CERT, ADMIN_KEY),
            now,
            |_| None,
            |not_after| {
                issue::client(
                    &ca.issuer,
                    ADMIN_USER,
                    &[ADMIN_GROUP.to_owned()],
                    now,
                    not_after,
                )
            },
        )?;
        Ok(Self {
            dir,
            ca,
            serving,
            admin,
        })
    }

    /// The PKI directory (`<dir>/pki`); files in it are named by the
    /// constants of this module, e.g. `pki.dir().join(CA_CERT)` for
    /// `--client-ca-file`.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn ca_pem(&self) -> String {
        self.ca.pem.clone()
    }

    /// The serving certificate and key, PEM.
    pub fn serving(&self) -> (String, String) {
        (self.serving.cert_pem.clone(), self.serving.key_pem.clone())
    }

    /// The admin client certificate and key, PEM.
    pub fn admin(&self) -> (String, String) {
        (self.admin.cert_pem.clone(), self.admin.key_pem.clone())
    }

    /// kubeadm's `--discovery-token-ca-cert-hash`: `sha256:` and the hex
    /// SHA-256 of the CA certificate's DER SubjectPublicKeyInfo.
    pub fn ca_cert_hash(&self) -> String {
        spki_hash(&self.ca.spki)
    }

    /// Issues a client certificate signed by the CA: `user` as CN, each of
    /// `groups` as an O. It ends at `now + valid_for` or when the CA does,
    /// whichever is first. Returns (certificate, key), PEM.
    pub fn issue_client(
        &self,
        user: &str,
        groups: &[String],
        valid_for: Duration,
        now: SystemTime,
    ) -> Result<(String, String), PkiError> {
        if self.ca.not_after <= now {
            return Err(PkiError::Invalid {
                path: self.dir.join(CA_CERT),
                what: format!("expired at {}", display_time(self.ca.not_after)),
            });
        }
        let not_after = issue::until(now, valid_for, self.ca.not_after);
        let Issued { cert_pem, key_pem } =
            issue::client(&self.ca.issuer, user, groups, now, not_after)?;
        Ok((cert_pem, key_pem))
    }

    /// Whether the serving certificate must be rotated at `now`: it expires
    /// within [`ROTATE_BEFORE`].
    pub fn serving_needs_rotation(&self, now: SystemTime) -> bool {
        expires_soon(self.serving.not_after, now)
    }
}

fn spki_hash(spki: &[u8]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, spki);
    let hex: String = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

/// kubeadm's CA cert hash ([`Pki::ca_cert_hash`]) of the first certificate
/// of a PEM text, e.g. a kubeconfig's `certificate-authority-data`.
pub fn ca_cert_hash_of_pem(pem_text: &str) -> Result<String, PkiError> {
    let invalid = |what: String| PkiError::CaCert { what };
    let der = cert::pem_to_der(pem_text).map_err(invalid)?;
    let info = cert::inspect(&der).map_err(invalid)?;
    Ok(spki_hash(&info.spki))
}

fn expires_soon(not_after: SystemTime, now: SystemTime) -> bool {
    now.checked_add(ROTATE_BEFORE)
        .is_none_or(|limit| limit >= not_after)
}

fn missing_sans(info: &CertInfo, wanted: &BTreeSet<San>) -> Option<String> {
    let missing: Vec<String> = wanted
        .difference(&info.sans)
        .map(|san| match san {
            San::Ip(ip) => ip.to_string(),
            San::Dns(name) => name.clone(),
        })
        .collect();
    (!missing.is_empty()).then(|| format!("does not cover {}", missing.join(", ")))
}

fn display_time(t: SystemTime) -> String {
    // RFC 3339 to the second, as `openssl x509 -enddate` readers expect.
    let t = time::OffsetDateTime::from(t);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

impl Ca {
    fn load_or_create(dir: &Path, now: SystemTime) -> Result<Self, PkiError> {
        let crt = dir.join(CA_CERT);
        let key = dir.join(CA_KEY);
        match (files::read(&crt)?, files::read(&key)?) {
            (Some(cert_pem), Some(key_pem)) => Self::load(&crt, cert_pem, &key, &key_pem, now),
            (None, None) => {
                let issued = issue::ca(CA_COMMON_NAME, now, CA_VALIDITY)?;
                files::write(&key, &issued.key_pem, files::KEY_MODE)?;
                files::write(&crt, &issued.cert_pem, files::CERT_MODE)?;
                tracing::info!(path = %crt.display(), "created the cluster CA");
                Self::load(&crt, issued.cert_pem, &key, &issued.key_pem, now)
            }
            (Some(_), None) => Err(PkiError::CaIncomplete {
                present: crt,
                missing: key,
            }),
            (None, Some(_)) => Err(PkiError::CaIncomplete {
                present: key,
                missing: crt,
            }),
        }
    }

    fn load(
        crt: &Path,
        pem: String,
        key: &Path,
        key_pem: &str,
        now: SystemTime,
    ) -> Result<Self, PkiError> {
        let invalid = |path: &Path, what: String| PkiError::Invalid {
            path: path.to_owned(),
            what,
        };
        let signing_key = KeyPair::from_pem(key_pem)
            .map_err(|e| invalid(key, format!("is not a usable private key: {e}")))?;
        let der = cert::pem_to_der(&pem).map_err(|what| invalid(crt, what))?;
        let info = cert::inspect(&der).map_err(|what| invalid(crt, what))?;
        if !info.is_ca {
            return Err(invalid(
                crt,
                "is not a CA certificate (no basicConstraints CA:TRUE)".to_owned(),
            ));
        }
        if info.spki != signing_key.subject_public_key_info() {
            return Err(invalid(key, format!("is not the key of {}", crt.display())));
        }
        if info.not_after <= now {
            return Err(invalid(
                crt,
                format!("expired at {}", display_time(info.not_after)),
            ));
        }
        let issuer = Issuer::from_ca_cert_der(&der.as_slice().into(), signing_key)
            .map_err(|e| invalid(crt, format!("cannot sign with it: {e}")))?;
        Ok(Self {
            pem,
            der,
            issuer,
            not_after: info.not_after,
            spki: info.spki,
        })
    }

    /// Loads the pair `names` (certificate, key) from `dir`, or issues it
    /// again when it is missing or does not fit: not this CA's, not its
    /// key's, expiring soon, or `unfit` says why.
    fn leaf(
        &self,
        dir: &Path,
        (crt_name, key_name): (&str, &str),
        now: SystemTime,
        unfit: impl Fn(&CertInfo) -> Option<String>,
        issue: impl FnOnce(SystemTime) -> Result<Issued, PkiError>,
    ) -> Result<Pair, PkiError> {
        let crt = dir.join(crt_name);
        let key = dir.join(key_name);
        let reason = match (files::read(&crt)?, files::read(&key)?) {
            (Some(cert_pem), Some(key_pem)) => {
                let (pair, info, der) = load_pair(&crt, cert_pem, &key, key_pem)?;
                let reason = if !info.key_matches {
                    Some(format!("{} is not its key", key.display()))
                } else if !cert::signed_by(&der, &self.der) {
                    Some("it is not signed by the current CA".to_owned())
                } else if expires_soon(info.cert.not_after, now) {
                    Some(format!(
                        "it expires at {}",
                        display_time(info.cert.not_after)
                    ))
                } else {
                    unfit(&info.cert)
                };
                match reason {
                    None => return Ok(pair),
                    Some(reason) => reason,
                }
            }
            _ => "it is missing".to_owned(),
        };
        let issued = issue(issue::until(now, LEAF_VALIDITY, self.not_after))?;
        files::write(&key, &issued.key_pem, files::KEY_MODE)?;
        files::write(&crt, &issued.cert_pem, files::CERT_MODE)?;
        tracing::info!(path = %crt.display(), %reason, "issued certificate");
        let (pair, _, _) = load_pair(&crt, issued.cert_pem, &key, issued.key_pem)?;
        Ok(pair)
    }
}

struct LeafInfo {
    cert: CertInfo,
    key_matches: bool,
}

fn load_pair(
    crt: &Path,
    cert_pem: String,
    key: &Path,
    key_pem: String,
) -> Result<(Pair, LeafInfo, Vec<u8>), PkiError> {
    let signing_key = KeyPair::from_pem(&key_pem).map_err(|e| PkiError::Invalid {
        path: key.to_owned(),
        what: format!("is not a usable private key: {e}"),
    })?;
    let invalid = |what| PkiError::Invalid {
        path: crt.to_owned(),
        what,
    };
    let der = cert::pem_to_der(&cert_pem).map_err(invalid)?;
    let info = cert::inspect(&der).map_err(invalid)?;
    let key_matches = info.spki == signing_key.subject_public_key_info();
    let pair = Pair {
        cert_pem,
        key_pem,
        not_after: info.not_after,
    };
    Ok((
        pair,
        LeafInfo {
            cert: info,
            key_matches,
        },
        der,
    ))
}
