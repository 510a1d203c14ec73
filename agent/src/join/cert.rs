//! Reading certificates and keys: PEM blocks, validity, serial, public
//! key, and the agent's key pair and certificate signing request (P-256,
//! as kubelet's client certificates).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair, PublicKeyData};

/// The user the control plane knows a joined agent of cluster X as.
pub fn agent_user(cluster: &str) -> String {
    format!("system:hami:agent:{cluster}")
}

/// The group of every joined agent.
pub const AGENT_GROUP: &str = "system:hami:agents";

/// A certificate or key that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    /// No `CERTIFICATE` PEM block.
    #[error("no PEM CERTIFICATE block")]
    NoCertificate,
    /// A PEM block that does not parse.
    #[error("bad PEM: {0}")]
    Pem(String),
    /// A certificate that does not parse.
    #[error("bad certificate: {0}")]
    Certificate(String),
    /// A private key that does not parse, or a key or request that cannot be made.
    #[error("private key: {0}")]
    Key(#[from] rcgen::Error),
    /// The certificate is not for the key the agent holds.
    #[error("the certificate's public key is not the agent's key")]
    KeyMismatch,
}

/// What the agent reads from a certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    /// Start of validity.
    pub not_before: SystemTime,
    /// End of validity.
    pub not_after: SystemTime,
    /// Serial number, hex with colons.
    pub serial: String,
    /// Subject common name.
    pub common_name: Option<String>,
    /// The SubjectPublicKeyInfo, DER.
    pub spki: Vec<u8>,
}

/// The DER of every `CERTIFICATE` block of `pem`, in order.
pub fn pem_certificates(pem: &str) -> Result<Vec<Vec<u8>>, CertError> {
    let mut out = Vec::new();
    for block in x509_parser::pem::Pem::iter_from_buffer(pem.as_bytes()) {
        let block = block.map_err(|e| CertError::Pem(e.to_string()))?;
        if block.label == "CERTIFICATE" {
            out.push(block.contents);
        }
    }
    if out.is_empty() {
        return Err(CertError::NoCertificate);
    }
    Ok(out)
}

/// Validity, serial, subject and public key of one certificate (DER).
pub fn inspect(der: &[u8]) -> Result<CertInfo, CertError> {
    let (_, cert) = x509_parser::parse_x509_certificate(der)
        .map_err(|e| CertError::Certificate(e.to_string()))?;
    let at = |secs: i64| UNIX_EPOCH + Duration::from_secs(u64::try_from(secs).unwrap_or(0));
    let validity = cert.validity();
    Ok(CertInfo {
        not_before: at(validity.not_before.timestamp()),
        not_after: at(validity.not_after.timestamp()),
        serial: cert.raw_serial_as_string(),
        common_name: cert
            .subject()
            .iter_common_name()
            .next()
            .and_then(|cn| cn.as_str().ok())
            .map(str::to_owned),
        spki: cert.public_key().raw.to_vec(),
    })
}

/// The first certificate of `cert_pem`, checked to belong to `key_pem`.
pub fn inspect_pair(cert_pem: &str, key_pem: &str) -> Result<CertInfo, CertError> {
    let ders = pem_certificates(cert_pem)?;
    let info = inspect(&ders[0])?;
    let key = KeyPair::from_pem(key_pem)?;
    if key.subject_public_key_info() != info.spki {
        return Err(CertError::KeyMismatch);
    }
    Ok(info)
}

/// A fresh key and the PEM certificate request of the agent of `cluster`:
/// CN `system:hami:agent:<cluster>`, O `system:hami:agents`, no SANs.
pub struct KeyAndRequest {
    /// PKCS#8 PEM of the new P-256 key.
    pub key_pem: String,
    /// PEM `CERTIFICATE REQUEST`.
    pub request_pem: String,
}

/// A new P-256 key and its certificate request for the agent of `cluster`.
pub fn new_request(cluster: &str) -> Result<KeyAndRequest, CertError> {
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, AGENT_GROUP);
    dn.push(DnType::CommonName, agent_user(cluster));
    params.distinguished_name = dn;
    let request = params.serialize_request(&key)?;
    Ok(KeyAndRequest {
        key_pem: key.serialize_pem(),
        request_pem: request.pem()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_carry_the_agent_identity_and_match_their_key() {
        let kr = new_request("gpu-a").unwrap();
        assert!(kr.request_pem.contains("BEGIN CERTIFICATE REQUEST"));
        let parsed = rcgen::CertificateSigningRequestParams::from_pem(&kr.request_pem).unwrap();
        let dn = &parsed.params.distinguished_name;
        assert_eq!(
            dn.get(&DnType::CommonName),
            Some(&rcgen::DnValue::Utf8String(
                "system:hami:agent:gpu-a".into()
            ))
        );
        assert!(parsed.params.subject_alt_names.is_empty());
        // Self-sign to get a certificate of that key.
        let key = KeyPair::from_pem(&kr.key_pem).unwrap();
        let mut params = CertificateParams::default();
        params.distinguished_name.push(DnType::CommonName, "x");
        let cert = params.self_signed(&key).unwrap();
        let info = inspect_pair(&cert.pem(), &kr.key_pem).unwrap();
        assert_eq!(info.common_name.as_deref(), Some("x"));
        assert!(info.not_after > info.not_before);
        let other = new_request("gpu-a").unwrap();
        assert!(matches!(
            inspect_pair(&cert.pem(), &other.key_pem),
            Err(CertError::KeyMismatch)
        ));
        assert!(matches!(
            pem_certificates("nothing"),
            Err(CertError::NoCertificate)
        ));
    }
}
