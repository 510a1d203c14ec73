//! Reading certificates: PEM to DER, the fields the PKI decides on, and the
//! client identity kube-apiserver's x509 authenticator derives.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;
use x509_parser::time::ASN1Time;

use super::PkiError;
use super::sans::San;

/// What the PKI reads from a certificate it holds.
pub(super) struct CertInfo {
    pub not_after: SystemTime,
    /// DER SubjectPublicKeyInfo.
    pub spki: Vec<u8>,
    pub sans: BTreeSet<San>,
    pub is_ca: bool,
}

/// The DER of the one `CERTIFICATE` block in `pem_text`.
pub(super) fn pem_to_der(pem_text: &str) -> Result<Vec<u8>, String> {
    let block = pem::parse(pem_text).map_err(|e| format!("is not PEM: {e}"))?;
    if block.tag() != "CERTIFICATE" {
        return Err(format!("holds a {} block, not a CERTIFICATE", block.tag()));
    }
    Ok(block.into_contents())
}

pub(super) fn der_to_pem(der: &[u8]) -> String {
    let lf = pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF);
    pem::encode_config(&pem::Pem::new("CERTIFICATE", der), lf)
}

fn parse(der: &[u8]) -> Result<X509Certificate<'_>, String> {
    match x509_parser::parse_x509_certificate(der) {
        Ok(([], cert)) => Ok(cert),
        Ok(_) => Err("has trailing bytes after the certificate".to_owned()),
        Err(e) => Err(format!("is not an X.509 certificate: {e}")),
    }
}

pub(super) fn inspect(der: &[u8]) -> Result<CertInfo, String> {
    let cert = parse(der)?;
    let mut sans = BTreeSet::new();
    let ext = cert
        .subject_alternative_name()
        .map_err(|e| format!("has an invalid subjectAltName extension: {e}"))?;
    for name in ext.iter().flat_map(|e| e.value.general_names.iter()) {
        match name {
            GeneralName::DNSName(dns) => {
                sans.insert(San::Dns(dns.to_ascii_lowercase()));
            }
            GeneralName::IPAddress(bytes) => {
                if let Some(ip) = ip_from_bytes(bytes) {
                    sans.insert(San::Ip(ip));
                }
            }
            _ => {}
        }
    }
    Ok(CertInfo {
        not_after: system_time(cert.validity().not_after),
        spki: cert.public_key().raw.to_vec(),
        sans,
        is_ca: cert.is_ca(),
    })
}

/// Whether `der` carries a valid signature by the CA whose certificate is `ca_der`.
pub(super) fn signed_by(der: &[u8], ca_der: &[u8]) -> bool {
    match (parse(der), parse(ca_der)) {
        (Ok(cert), Ok(ca)) => {
            cert.issuer() == ca.subject() && cert.verify_signature(Some(ca.public_key())).is_ok()
        }
        _ => false,
    }
}

fn ip_from_bytes(bytes: &[u8]) -> Option<IpAddr> {
    if let Ok(v4) = <[u8; 4]>::try_from(bytes) {
        return Some(IpAddr::from(v4));
    }
    <[u8; 16]>::try_from(bytes).ok().map(IpAddr::from)
}

pub(super) fn system_time(t: ASN1Time) -> SystemTime {
    let secs = t.timestamp();
    let magnitude = Duration::from_secs(secs.unsigned_abs());
    if secs >= 0 {
        UNIX_EPOCH + magnitude
    } else {
        UNIX_EPOCH - magnitude
    }
}

/// Who a client certificate says its holder is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientIdentity {
    /// The subject's common name: the Kubernetes user name.
    pub user: String,
    /// The subject's organizations, in order: the Kubernetes groups.
    pub groups: Vec<String>,
    pub not_before: SystemTime,
    pub not_after: SystemTime,
}

/// Reads the user (CN) and groups (O) from a client certificate in DER, as
/// kube-apiserver's x509 authenticator does (`CommonNameUserConversion`: the
/// last CN, every O in order). It does not verify the chain or the validity
/// window: the TLS layer has done that before a certificate reaches here.
pub fn client_identity(der: &[u8]) -> Result<ClientIdentity, PkiError> {
    let cert = parse(der).map_err(|what| PkiError::ClientCert { what })?;
    let subject = cert.subject();
    let text = |attr: &x509_parser::x509::AttributeTypeAndValue<'_>| {
        attr.as_str()
            .map(str::to_owned)
            .map_err(|e| PkiError::ClientCert {
                what: format!("has a subject attribute that is not a string: {e}"),
            })
    };
    let mut user = None;
    for cn in subject.iter_common_name() {
        user = Some(text(cn)?);
    }
    let user = user
        .filter(|u| !u.is_empty())
        .ok_or_else(|| PkiError::ClientCert {
            what: "has no subject common name (the user name)".to_owned(),
        })?;
    let groups = subject
        .iter_organization()
        .map(text)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(ClientIdentity {
        user,
        groups,
        not_before: system_time(cert.validity().not_before),
        not_after: system_time(cert.validity().not_after),
    })
}
