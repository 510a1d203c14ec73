//! Asking the control plane for a client certificate, as client-go's
//! `util/certificate/csr`: create a `certificates.k8s.io/v1`
//! CertificateSigningRequest for the `kubernetes.io/kube-apiserver-client`
//! signer, wait until it is Approved and carries a certificate (Denied and
//! Failed end the wait with their reason and message), and check that the
//! certificate is for the key the agent holds and names the agent.

use std::time::Duration;

use k8s_openapi::ByteString;
use k8s_openapi::api::certificates::v1::{
    CertificateSigningRequest, CertificateSigningRequestSpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, PostParams};
use tokio::time::Instant;

use super::cert::{self, CertError, CertInfo, KeyAndRequest};

/// The signer of client certificates for the control plane's API.
pub const SIGNER: &str = "kubernetes.io/kube-apiserver-client";

/// How often the request is read while waiting.
pub const POLL: Duration = Duration::from_secs(1);

/// How often "waiting for approval" is logged again.
const PROGRESS: Duration = Duration::from_secs(10);

/// Why no certificate came.
#[derive(Debug, thiserror::Error)]
pub enum CsrError {
    /// The request could not be created.
    #[error("create a CertificateSigningRequest: {0}")]
    Create(#[source] kube::Error),
    /// The control plane denied it.
    #[error("CertificateSigningRequest {name} was denied ({reason}): {message}")]
    Denied {
        /// The object.
        name: String,
        /// Condition reason.
        reason: String,
        /// Condition message.
        message: String,
    },
    /// Signing failed.
    #[error("CertificateSigningRequest {name} failed ({reason}): {message}")]
    Failed {
        /// The object.
        name: String,
        /// Condition reason.
        reason: String,
        /// Condition message.
        message: String,
    },
    /// The request disappeared while waiting.
    #[error("CertificateSigningRequest {name} was deleted before it was signed")]
    Gone {
        /// The object.
        name: String,
    },
    /// Not signed in time.
    #[error(
        "CertificateSigningRequest {name} was not approved and signed within {timeout:?} (last state: {last})"
    )]
    Timeout {
        /// The object.
        name: String,
        /// The limit.
        timeout: Duration,
        /// What was last seen.
        last: String,
    },
    /// The issued certificate is not usable.
    #[error("CertificateSigningRequest {name}: the issued certificate: {source}")]
    Certificate {
        /// The object.
        name: String,
        /// Cause.
        #[source]
        source: CertError,
    },
    /// The issued certificate names someone else.
    #[error(
        "CertificateSigningRequest {name}: the issued certificate is for {got:?}, not {want:?}"
    )]
    WrongSubject {
        /// The object.
        name: String,
        /// Its common name.
        got: Option<String>,
        /// The agent's user.
        want: String,
    },
}

/// A signed certificate for the agent's new key.
#[derive(Debug, Clone)]
pub struct Issued {
    /// PEM.
    pub cert_pem: String,
    /// What it says.
    pub info: CertInfo,
    /// The CertificateSigningRequest's name.
    pub request_name: String,
}

/// The CertificateSigningRequest of `kr` for the agent of `cluster`.
pub fn request_object(cluster: &str, kr: &KeyAndRequest) -> CertificateSigningRequest {
    CertificateSigningRequest {
        metadata: ObjectMeta {
            generate_name: Some(format!("hami-agent-{cluster}-")),
            ..ObjectMeta::default()
        },
        spec: CertificateSigningRequestSpec {
            request: ByteString(kr.request_pem.clone().into_bytes()),
            signer_name: SIGNER.to_owned(),
            usages: Some(vec!["digital signature".into(), "client auth".into()]),
            ..CertificateSigningRequestSpec::default()
        },
        status: None,
    }
}

/// What a read request says.
#[derive(Debug, PartialEq, Eq)]
pub enum State {
    /// Approved, with the certificate (PEM).
    Issued(String),
    /// Denied: reason, message.
    Denied(String, String),
    /// Failed: reason, message.
    Failed(String, String),
    /// Approved, certificate not there yet.
    Approved,
    /// Not decided.
    Pending,
}

/// The state of a request, as client-go's `WaitForCertificate` reads it.
pub fn state(csr: &CertificateSigningRequest) -> State {
    let Some(status) = &csr.status else {
        return State::Pending;
    };
    let mut approved = false;
    for c in status.conditions.iter().flatten() {
        let text = || {
            (
                c.reason.clone().unwrap_or_default(),
                c.message.clone().unwrap_or_default(),
            )
        };
        match c.type_.as_str() {
            "Denied" => {
                let (r, m) = text();
                return State::Denied(r, m);
            }
            "Failed" => {
                let (r, m) = text();
                return State::Failed(r, m);
            }
            "Approved" => approved = true,
            _ => {}
        }
    }
    match (&status.certificate, approved) {
        (Some(c), true) if !c.0.is_empty() => {
            State::Issued(String::from_utf8_lossy(&c.0).into_owned())
        }
        (_, true) => State::Approved,
        _ => State::Pending,
    }
}

/// Creates the request for `kr` and waits up to `timeout` for its
/// certificate, reading it every `poll`.
pub async fn request_certificate(
    client: &kube::Client,
    cluster: &str,
    kr: &KeyAndRequest,
    timeout: Duration,
    poll: Duration,
) -> Result<Issued, CsrError> {
    let api: Api<CertificateSigningRequest> = Api::all(client.clone());
    let deadline = Instant::now() + timeout;
    let object = request_object(cluster, kr);
    let created = match tokio::time::timeout_at(
        deadline,
        api.create(&PostParams::default(), &object),
    )
    .await
    {
        Ok(r) => r.map_err(CsrError::Create)?,
        Err(_) => {
            return Err(CsrError::Timeout {
                name: "(not created)".into(),
                timeout,
                last: "creating".into(),
            });
        }
    };
    let name = created.metadata.name.clone().unwrap_or_default();
    tracing::info!(
        csr = name,
        signer = SIGNER,
        "waiting for approval of CertificateSigningRequest"
    );
    let mut last_progress = Instant::now();
    let mut current = created;
    let mut last = String::from("pending");
    loop {
        match state(&current) {
            State::Issued(pem) => return checked(name, pem, cluster, &kr.key_pem),
            State::Denied(reason, message) => {
                return Err(CsrError::Denied {
                    name,
                    reason,
                    message,
                });
            }
            State::Failed(reason, message) => {
                return Err(CsrError::Failed {
                    name,
                    reason,
                    message,
                });
            }
            State::Approved => last = "approved, waiting for the certificate".into(),
            State::Pending => {}
        }
        if Instant::now() + poll > deadline {
            return Err(CsrError::Timeout {
                name,
                timeout,
                last,
            });
        }
        tokio::time::sleep(poll).await;
        if last_progress.elapsed() >= PROGRESS {
            tracing::info!(
                csr = name,
                state = last,
                "waiting for approval of CertificateSigningRequest"
            );
            last_progress = Instant::now();
        }
        match tokio::time::timeout_at(deadline, api.get_opt(&name)).await {
            Ok(Ok(Some(csr))) => current = csr,
            Ok(Ok(None)) => return Err(CsrError::Gone { name }),
            Ok(Err(e)) => {
                // Unreachable for a moment: keep waiting until the deadline.
                tracing::warn!(csr = name, error = %e, "reading CertificateSigningRequest");
                last = format!("read failed: {e}");
            }
            Err(_) => {
                return Err(CsrError::Timeout {
                    name,
                    timeout,
                    last,
                });
            }
        }
    }
}

/// The issued certificate, checked against the key and the agent's name.
fn checked(name: String, pem: String, cluster: &str, key_pem: &str) -> Result<Issued, CsrError> {
    let info = match cert::inspect_pair(&pem, key_pem) {
        Ok(i) => i,
        Err(source) => return Err(CsrError::Certificate { name, source }),
    };
    let want = cert::agent_user(cluster);
    if info.common_name.as_deref() != Some(want.as_str()) {
        return Err(CsrError::WrongSubject {
            name,
            got: info.common_name,
            want,
        });
    }
    Ok(Issued {
        cert_pem: pem,
        info,
        request_name: name,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::certificates::v1::{
        CertificateSigningRequestCondition, CertificateSigningRequestStatus,
    };

    fn with(conditions: &[&str], cert: Option<&str>) -> CertificateSigningRequest {
        let kr = cert::new_request("gpu-a").unwrap();
        let mut csr = request_object("gpu-a", &kr);
        csr.status = Some(CertificateSigningRequestStatus {
            conditions: Some(
                conditions
                    .iter()
                    .map(|t| CertificateSigningRequestCondition {
                        type_: (*t).to_owned(),
                        status: "True".into(),
                        reason: Some("R".into()),
                        message: Some("M".into()),
                        ..Default::default()
                    })
                    .collect(),
            ),
            certificate: cert.map(|c| ByteString(c.as_bytes().to_vec())),
        });
        csr
    }

    #[test]
    fn the_request_object_follows_the_signer_contract() {
        let kr = cert::new_request("gpu-a").unwrap();
        let csr = request_object("gpu-a", &kr);
        assert_eq!(
            csr.metadata.generate_name.as_deref(),
            Some("hami-agent-gpu-a-")
        );
        assert_eq!(csr.spec.signer_name, SIGNER);
        assert_eq!(
            csr.spec.usages.as_deref(),
            Some(&["digital signature".to_owned(), "client auth".to_owned()][..])
        );
        assert!(String::from_utf8_lossy(&csr.spec.request.0).contains("CERTIFICATE REQUEST"));
    }

    #[test]
    fn states() {
        assert_eq!(state(&with(&[], None)), State::Pending);
        assert_eq!(state(&with(&["Approved"], None)), State::Approved);
        assert_eq!(state(&with(&["Approved"], Some(""))), State::Approved);
        assert_eq!(
            state(&with(&["Approved"], Some("PEM"))),
            State::Issued("PEM".into())
        );
        assert_eq!(
            state(&with(&["Approved", "Failed"], Some("PEM"))),
            State::Failed("R".into(), "M".into())
        );
        assert_eq!(
            state(&with(&["Denied"], None)),
            State::Denied("R".into(), "M".into())
        );
        // A certificate without approval is not taken.
        assert_eq!(state(&with(&[], Some("PEM"))), State::Pending);
    }
}
