//! Issuing certificates: the CA, the API server's serving certificate and
//! client certificates, with kubeadm's profiles (ECDSA P-256 keys, random
//! serials, `notBefore` back-dated for clock skew).

use std::collections::BTreeSet;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, PublicKeyData, SerialNumber, SigningKey,
};
use ring::rand::{SecureRandom, SystemRandom};
use time::OffsetDateTime;
use yasna::models::ObjectIdentifier;

use super::PkiError;
use super::sans::San;

/// kubeadm back-dates `notBefore` by five minutes so that a member whose
/// clock lags a little still accepts a fresh certificate.
const BACKDATE: Duration = Duration::from_secs(5 * 60);

const OID_COMMON_NAME: &[u64] = &[2, 5, 4, 3];
const OID_ORGANIZATION: &[u64] = &[2, 5, 4, 10];

/// A certificate and its private key, both PEM.
pub(super) struct Issued {
    pub cert_pem: String,
    pub key_pem: String,
}

pub(super) fn ca(cn: &str, now: SystemTime, valid_for: Duration) -> Result<Issued, PkiError> {
    let what = "CA";
    let key = KeyPair::generate().map_err(|source| PkiError::Issue { what, source })?;
    let mut params = base(cn, now, until(now, valid_for, UNIX_EPOCH + MAX_NOT_AFTER))?;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
    ];
    let cert = params
        .self_signed(&key)
        .map_err(|source| PkiError::Issue { what, source })?;
    Ok(Issued {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

pub(super) fn serving(
    ca: &Issuer<'_, KeyPair>,
    cn: &str,
    sans: &BTreeSet<San>,
    now: SystemTime,
    not_after: SystemTime,
) -> Result<Issued, PkiError> {
    let what = "serving";
    let key = KeyPair::generate().map_err(|source| PkiError::Issue { what, source })?;
    let mut params = base(cn, now, not_after)?;
    params.subject_alt_names = sans
        .iter()
        .map(San::to_rcgen)
        .collect::<Result<_, _>>()
        .map_err(|source| PkiError::Issue { what, source })?;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.use_authority_key_identifier_extension = true;
    let cert = params
        .signed_by(&key, ca)
        .map_err(|source| PkiError::Issue { what, source })?;
    Ok(Issued {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// A client certificate for `user` (CN) in `groups` (one O each).
pub(super) fn client(
    ca: &Issuer<'_, KeyPair>,
    user: &str,
    groups: &[String],
    now: SystemTime,
    not_after: SystemTime,
) -> Result<Issued, PkiError> {
    let what = "client";
    if user.is_empty() {
        return Err(PkiError::InvalidIdentity {
            what: "the user name (CN) is empty".to_owned(),
        });
    }
    if groups.iter().any(String::is_empty) {
        return Err(PkiError::InvalidIdentity {
            what: "a group name (O) is empty".to_owned(),
        });
    }
    let key = KeyPair::generate().map_err(|source| PkiError::Issue { what, source })?;
    let mut params = base(user, now, not_after)?;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    params.use_authority_key_identifier_extension = true;
    let cert = params
        .signed_by(&key, ca)
        .map_err(|source| PkiError::Issue { what, source })?;
    // rcgen 0.14 keeps one value per attribute type in a subject
    // (rustls/rcgen#81), and Kubernetes reads one group per O: put the real
    // subject in and sign again.
    let der = resubject(cert.der(), &subject(user, groups), ca.key())?;
    Ok(Issued {
        cert_pem: super::cert::der_to_pem(&der),
        key_pem: key.serialize_pem(),
    })
}

/// The usages of a certificate signed for someone else's key.
pub(super) struct Profile {
    pub key_usages: Vec<KeyUsagePurpose>,
    pub extended: Vec<ExtendedKeyUsagePurpose>,
}

/// A certificate for `public_key` (a signing request's) as `user` (CN) in
/// `groups` (one O each), valid over `(now, not_after)`. Returns its DER.
pub(super) fn for_key(
    ca: &Issuer<'_, KeyPair>,
    public_key: &impl PublicKeyData,
    user: &str,
    groups: &[String],
    profile: Profile,
    (now, not_after): (SystemTime, SystemTime),
) -> Result<Vec<u8>, PkiError> {
    let what = "requested";
    let mut params = base(user, now, not_after)?;
    params.key_usages = profile.key_usages;
    params.extended_key_usages = profile.extended;
    params.use_authority_key_identifier_extension = true;
    let cert = params
        .signed_by(public_key, ca)
        .map_err(|source| PkiError::Issue { what, source })?;
    // One O per group, as `client` does (rcgen keeps one value per type).
    resubject(cert.der(), &subject(user, groups), ca.key())
}

/// The latest `notAfter` X.509 can say: 9999-12-31T23:59:59Z.
pub(super) const MAX_NOT_AFTER: Duration = Duration::from_secs(253_402_300_799);

/// `now + d`, but no later than `cap`.
pub(super) fn until(now: SystemTime, d: Duration, cap: SystemTime) -> SystemTime {
    now.checked_add(d).map_or(cap, |t| t.min(cap))
}

fn base(cn: &str, now: SystemTime, not_after: SystemTime) -> Result<CertificateParams, PkiError> {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    params.distinguished_name = dn;
    params.not_before = OffsetDateTime::from(now.checked_sub(BACKDATE).unwrap_or(now));
    params.not_after = OffsetDateTime::from(not_after);
    params.serial_number = Some(random_serial()?);
    Ok(params)
}

/// 128 random bits, positive, as Go's crypto/x509 callers use.
fn random_serial() -> Result<SerialNumber, PkiError> {
    let mut bytes = [0u8; 16];
    SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| PkiError::Random)?;
    bytes[0] &= 0x7f;
    bytes[0] |= 0x01;
    Ok(SerialNumber::from_slice(&bytes))
}

/// The subject Name kube-apiserver maps to `user` and `groups`, in Go's
/// order: every O, then CN.
fn subject(user: &str, groups: &[String]) -> Vec<u8> {
    let rdn = |w: yasna::DERWriter<'_>, oid: &[u64], value: &str| {
        w.write_set(|w| {
            w.next().write_sequence(|w| {
                w.next().write_oid(&ObjectIdentifier::from_slice(oid));
                w.next().write_utf8_string(value);
            })
        })
    };
    yasna::construct_der(|w| {
        w.write_sequence(|w| {
            for group in groups {
                rdn(w.next(), OID_ORGANIZATION, group);
            }
            rdn(w.next(), OID_COMMON_NAME, user);
        })
    })
}

/// Replaces the subject of the certificate `der` by `subject` (a DER Name)
/// and signs it again with `signer`, the key that signed it.
fn resubject(der: &[u8], subject: &[u8], signer: &KeyPair) -> Result<Vec<u8>, PkiError> {
    let malformed = || PkiError::Resubject;
    // Certificate ::= SEQUENCE { tbsCertificate, signatureAlgorithm, signatureValue }
    let cert = content(der).ok_or_else(malformed)?;
    let tbs_len = tlv_len(cert).ok_or_else(malformed)?;
    let (tbs, rest) = cert.split_at(tbs_len);
    let sig_alg = rest
        .get(..tlv_len(rest).ok_or_else(malformed)?)
        .ok_or_else(malformed)?;
    // TBSCertificate ::= SEQUENCE { [0] version, serialNumber, signature,
    //     issuer, validity, subject, ... }; rcgen always writes the version.
    let fields = content(tbs).ok_or_else(malformed)?;
    if fields.first() != Some(&0xa0) {
        return Err(malformed());
    }
    let mut at = 0;
    for _ in 0..5 {
        at += tlv_len(fields.get(at..).ok_or_else(malformed)?).ok_or_else(malformed)?;
    }
    let old_subject = tlv_len(fields.get(at..).ok_or_else(malformed)?).ok_or_else(malformed)?;
    let after = fields.get(at + old_subject..).ok_or_else(malformed)?;
    let new_tbs = yasna::construct_der(|w| {
        w.write_sequence(|w| {
            w.next().write_der(&fields[..at]);
            w.next().write_der(subject);
            w.next().write_der(after);
        })
    });
    let signature = signer.sign(&new_tbs).map_err(|source| PkiError::Issue {
        what: "client",
        source,
    })?;
    Ok(yasna::construct_der(|w| {
        w.write_sequence(|w| {
            w.next().write_der(&new_tbs);
            w.next().write_der(sig_alg);
            w.next().write_bitvec_bytes(&signature, signature.len() * 8);
        })
    }))
}

/// (header length, content length) of the DER TLV at the start of `tlv`.
fn header(tlv: &[u8]) -> Option<(usize, usize)> {
    let first = *tlv.get(1)?;
    if first < 0x80 {
        return Some((2, usize::from(first)));
    }
    let n = usize::from(first & 0x7f);
    if n == 0 || n > 4 {
        return None;
    }
    let len = tlv
        .get(2..2 + n)?
        .iter()
        .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
    Some((2 + n, len))
}

/// The whole length (header and content) of the TLV at the start of `tlv`.
fn tlv_len(tlv: &[u8]) -> Option<usize> {
    let (h, c) = header(tlv)?;
    (tlv.len() >= h + c).then_some(h + c)
}

/// The content of the TLV at the start of `tlv`.
fn content(tlv: &[u8]) -> Option<&[u8]> {
    let (h, c) = header(tlv)?;
    tlv.get(h..h + c)
}

#[cfg(test)]
pub(super) mod tests_support {
    use super::*;

    /// A subject Name with an O and no CN.
    pub(in super::super) fn subject_without_cn() -> Vec<u8> {
        yasna::construct_der(|w| {
            w.write_sequence(|w| {
                w.next().write_set(|w| {
                    w.next().write_sequence(|w| {
                        w.next()
                            .write_oid(&ObjectIdentifier::from_slice(OID_ORGANIZATION));
                        w.next().write_utf8_string("group-only");
                    })
                })
            })
        })
    }

    pub(in super::super) fn resubject(der: &[u8], subject: &[u8], signer: &KeyPair) -> Vec<u8> {
        super::resubject(der, subject, signer).unwrap()
    }
}
