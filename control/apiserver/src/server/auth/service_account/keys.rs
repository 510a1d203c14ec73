//! The keys of ServiceAccount tokens: one ECDSA P-256 private key signs
//! (kube-apiserver's `--service-account-signing-key-file`), its public key
//! and any others given (`--service-account-key-file`) verify.
//!
//! Files are PEM. A signing key is a PKCS#8 `PRIVATE KEY` (what `hami up`
//! writes to `pki/sa.key`, and what `openssl genpkey -algorithm EC -pkeyopt
//! ec_paramgen_curve:P-256` writes). A verification file holds `PUBLIC KEY`
//! blocks (SubjectPublicKeyInfo, kubeadm's `sa.pub`) or PKCS#8 private keys,
//! whose public halves are used. Only P-256 is supported, so only ES256
//! tokens verify: RSA keys (kubeadm's default `sa.key`), SEC1 `EC PRIVATE
//! KEY` blocks and certificates are refused with a message that says so.
//!
//! Each key's id is kube's `keyIDFromPublicKey`: the unpadded base64url
//! SHA-256 of the DER SubjectPublicKeyInfo, sent as the token's `kid`.

use std::path::{Path, PathBuf};

use base64::Engine as _;
use ring::rand::SystemRandom;
use ring::signature::{self, EcdsaKeyPair, KeyPair as _};

/// The DER SubjectPublicKeyInfo of a P-256 key before its 65-byte point:
/// SEQUENCE { SEQUENCE { id-ecPublicKey, prime256v1 }, BIT STRING (0 unused) }.
const P256_SPKI_PREFIX: [u8; 26] = [
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a,
    0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];
/// The DER of OID rsaEncryption (1.2.840.113549.1.1.1).
const RSA_OID: [u8; 11] = [
    0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01,
];
const NOT_P256: &str = "only ECDSA P-256 keys are supported (ES256 tokens)";

/// Why a key file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("reading {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: {what}", path.display())]
    Invalid { path: PathBuf, what: String },
}

/// A P-256 public key that verifies ES256 signatures.
#[derive(Clone, PartialEq, Eq)]
pub struct PublicKey {
    /// The uncompressed point (65 bytes, `04 X Y`).
    point: Vec<u8>,
    kid: String,
}

impl std::fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PublicKey").field("kid", &self.kid).finish()
    }
}

impl PublicKey {
    /// The key of an uncompressed P-256 point.
    pub fn from_point(point: &[u8]) -> Result<Self, String> {
        if point.len() != 65 || point[0] != 4 {
            return Err("not an uncompressed P-256 point".to_owned());
        }
        let mut spki = P256_SPKI_PREFIX.to_vec();
        spki.extend_from_slice(point);
        let digest = ring::digest::digest(&ring::digest::SHA256, &spki);
        Ok(Self {
            point: point.to_vec(),
            kid: base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest.as_ref()),
        })
    }

    /// The key of a DER SubjectPublicKeyInfo.
    pub fn from_spki(der: &[u8]) -> Result<Self, String> {
        match der.strip_prefix(&P256_SPKI_PREFIX[..]) {
            Some(point) => Self::from_point(point),
            None if contains(der, &RSA_OID) => Err(format!("an RSA public key: {NOT_P256}")),
            None => Err(format!("not a P-256 public key: {NOT_P256}")),
        }
    }

    /// kube's key id of this key.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The DER SubjectPublicKeyInfo.
    pub fn spki(&self) -> Vec<u8> {
        let mut der = P256_SPKI_PREFIX.to_vec();
        der.extend_from_slice(&self.point);
        der
    }

    /// Whether `signature` (JWS's fixed `r || s`, 64 bytes) signs `message`.
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        signature::UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, &self.point)
            .verify(message, signature)
            .is_ok()
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// The key that signs tokens.
pub struct SigningKey {
    pair: EcdsaKeyPair,
    public: PublicKey,
    rng: SystemRandom,
}

impl std::fmt::Debug for SigningKey {
    // Never prints the private key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.public.kid)
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    /// Reads a PKCS#8 DER P-256 private key.
    pub fn from_pkcs8(der: &[u8]) -> Result<Self, String> {
        let rng = SystemRandom::new();
        let pair = EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, der, &rng)
            .map_err(|e| {
                if contains(der, &RSA_OID) {
                    format!("an RSA private key: {NOT_P256}")
                } else {
                    format!("not a PKCS#8 P-256 private key ({e}): {NOT_P256}")
                }
            })?;
        let public = PublicKey::from_point(pair.public_key().as_ref())?;
        Ok(Self { pair, public, rng })
    }

    /// A new random key (PKCS#8 DER), as `hami up` creates one.
    pub fn generate_pkcs8() -> Result<Vec<u8>, String> {
        EcdsaKeyPair::generate_pkcs8(
            &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
            &SystemRandom::new(),
        )
        .map(|doc| doc.as_ref().to_vec())
        .map_err(|_| "the system random number generator failed".to_owned())
    }

    pub fn public(&self) -> &PublicKey {
        &self.public
    }

    /// The ES256 signature (`r || s`) of `message`.
    pub fn sign(&self, message: &[u8]) -> Result<Vec<u8>, String> {
        self.pair
            .sign(&self.rng, message)
            .map(|s| s.as_ref().to_vec())
            .map_err(|_| "signing failed".to_owned())
    }
}

/// The (label, DER) blocks of a PEM text, in order.
pub fn pem_blocks(text: &str) -> Result<Vec<(String, Vec<u8>)>, String> {
    let mut blocks = Vec::new();
    let mut lines = text.lines().map(str::trim);
    while let Some(line) = lines.next() {
        let Some(label) = line
            .strip_prefix("-----BEGIN ")
            .and_then(|l| l.strip_suffix("-----"))
        else {
            continue;
        };
        let end = format!("-----END {label}-----");
        let mut body = String::new();
        loop {
            match lines.next() {
                None => return Err(format!("the PEM block {label} is not closed")),
                Some(l) if l == end => break,
                // RFC 1421 headers (encrypted keys) have a colon.
                Some(l) if l.contains(':') => {
                    return Err(format!("the PEM block {label} is encrypted or has headers"));
                }
                Some(l) => body.push_str(l),
            }
        }
        let der = base64::engine::general_purpose::STANDARD
            .decode(body.as_bytes())
            .map_err(|e| format!("the PEM block {label} is not base64: {e}"))?;
        blocks.push((label.to_owned(), der));
    }
    Ok(blocks)
}

fn read(path: &Path) -> Result<String, KeyError> {
    std::fs::read_to_string(path).map_err(|source| KeyError::Read {
        path: path.to_owned(),
        source,
    })
}

fn refused(label: &str) -> String {
    match label {
        "RSA PRIVATE KEY" | "RSA PUBLIC KEY" => format!("an RSA key: {NOT_P256}"),
        "EC PRIVATE KEY" => format!(
            "a SEC1 EC PRIVATE KEY: convert it to PKCS#8 (openssl pkcs8 -topk8 -nocrypt); {NOT_P256}"
        ),
        "CERTIFICATE" => "a certificate: give its public key as a PUBLIC KEY block".to_owned(),
        other => format!("a PEM block {other}, not a key"),
    }
}

/// Reads the signing key: the file's first PEM block, a PKCS#8 P-256 key.
pub fn load_signing_key(path: &Path) -> Result<SigningKey, KeyError> {
    let invalid = |what: String| KeyError::Invalid {
        path: path.to_owned(),
        what,
    };
    let blocks = pem_blocks(&read(path)?).map_err(invalid)?;
    match blocks.first() {
        None => Err(invalid("no PEM block".to_owned())),
        Some((label, der)) if label == "PRIVATE KEY" => {
            SigningKey::from_pkcs8(der).map_err(invalid)
        }
        Some((label, _)) => Err(invalid(format!("the signing key is {}", refused(label)))),
    }
}

/// Reads every public key of a verification file (at least one).
pub fn load_public_keys(path: &Path) -> Result<Vec<PublicKey>, KeyError> {
    let invalid = |what: String| KeyError::Invalid {
        path: path.to_owned(),
        what,
    };
    let blocks = pem_blocks(&read(path)?).map_err(invalid)?;
    if blocks.is_empty() {
        return Err(invalid("no PEM block".to_owned()));
    }
    blocks
        .iter()
        .enumerate()
        .map(|(i, (label, der))| {
            let key = match label.as_str() {
                "PUBLIC KEY" => PublicKey::from_spki(der),
                "PRIVATE KEY" => SigningKey::from_pkcs8(der).map(|k| k.public.clone()),
                other => Err(refused(other)),
            };
            key.map_err(|e| invalid(format!("PEM block {}: {e}", i + 1)))
        })
        .collect()
}

/// PEM text of `der` under `label` (64 characters a line).
pub fn pem_encode(label: &str, der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(chunk));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}
