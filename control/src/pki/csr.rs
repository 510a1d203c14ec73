//! Certificate signing requests (PKCS#10): what a request asks for
//! ([`inspect_csr`]) and signing one with the cluster CA
//! ([`Pki::sign_csr`]), as kube-controller-manager's csrsigning controller
//! signs for `kubernetes.io/kube-apiserver-client`: the requester's public
//! key and subject, the usages the CSR object lists, client auth only.

use std::time::{Duration, SystemTime};

use rcgen::{CertificateSigningRequestParams, ExtendedKeyUsagePurpose, KeyUsagePurpose};
use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::extensions::ParsedExtension;
use x509_parser::prelude::FromDer;

use super::{CA_CERT, Pki, PkiError, display_time, issue};

/// The subject and extensions a request asks for.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CsrSubject {
    /// The CN (kube's user name); empty when there is none.
    pub common_name: String,
    /// Every O (kube's groups), in order.
    pub organizations: Vec<String>,
    /// Whether the request asks for any subject alternative name.
    pub has_sans: bool,
}

fn invalid(what: impl Into<String>) -> PkiError {
    PkiError::Csr { what: what.into() }
}

/// The DER of the one `CERTIFICATE REQUEST` block of `pem_text`.
fn request_der(pem_text: &str) -> Result<Vec<u8>, PkiError> {
    let block = pem::parse(pem_text).map_err(|e| invalid(format!("is not PEM: {e}")))?;
    if block.tag() != "CERTIFICATE REQUEST" {
        return Err(invalid("PEM block type must be CERTIFICATE REQUEST"));
    }
    Ok(block.into_contents())
}

/// Reads a PEM PKCS#10 request and checks its signature.
pub fn inspect_csr(pem_text: &str) -> Result<CsrSubject, PkiError> {
    let der = request_der(pem_text)?;
    let (_, csr) = X509CertificationRequest::from_der(&der)
        .map_err(|e| invalid(format!("is not a certificate request: {e}")))?;
    csr.verify_signature()
        .map_err(|_| invalid("its signature does not verify"))?;
    let subject = &csr.certification_request_info.subject;
    let text = |v: Result<&str, _>| {
        v.map(str::to_owned)
            .map_err(|_| invalid("a subject value is not text"))
    };
    let common_name = match subject.iter_common_name().next() {
        Some(cn) => text(cn.as_str())?,
        None => String::new(),
    };
    let organizations = subject
        .iter_organization()
        .map(|o| text(o.as_str()))
        .collect::<Result<_, _>>()?;
    let has_sans = csr
        .requested_extensions()
        .is_some_and(|mut e| e.any(|x| matches!(x, ParsedExtension::SubjectAlternativeName(_))));
    Ok(CsrSubject {
        common_name,
        organizations,
        has_sans,
    })
}

/// kube's key usage names to rcgen's; extended usages other than client
/// auth are never signed here.
fn key_usage(usage: &str) -> Option<KeyUsagePurpose> {
    match usage {
        "digital signature" => Some(KeyUsagePurpose::DigitalSignature),
        "key encipherment" => Some(KeyUsagePurpose::KeyEncipherment),
        _ => None,
    }
}

impl Pki {
    /// Signs the PEM request `pem_text` as a client certificate: its key,
    /// its CN and every O (Go's order, as kube reads groups), the key usages
    /// of `usages` (kube's names) and the extended usage client auth. It
    /// ends at `now + valid_for` or when the CA does, whichever is first.
    /// Returns the certificate, PEM. The caller decides whether the request
    /// deserves it.
    pub fn sign_csr(
        &self,
        pem_text: &str,
        usages: &[String],
        valid_for: Duration,
        now: SystemTime,
    ) -> Result<String, PkiError> {
        if self.ca.not_after <= now {
            return Err(PkiError::Invalid {
                path: self.dir.join(CA_CERT),
                what: format!("expired at {}", display_time(self.ca.not_after)),
            });
        }
        let subject = inspect_csr(pem_text)?;
        if subject.common_name.is_empty() {
            return Err(invalid("the subject has no common name"));
        }
        let request = CertificateSigningRequestParams::from_pem(pem_text)
            .map_err(|e| invalid(e.to_string()))?;
        let not_after = issue::until(now, valid_for, self.ca.not_after);
        let der = issue::for_key(
            &self.ca.issuer,
            &request.public_key,
            &subject.common_name,
            &subject.organizations,
            issue::Profile {
                key_usages: usages.iter().filter_map(|u| key_usage(u)).collect(),
                extended: vec![ExtendedKeyUsagePurpose::ClientAuth],
            },
            (now, not_after),
        )?;
        Ok(super::cert::der_to_pem(&der))
    }
}
