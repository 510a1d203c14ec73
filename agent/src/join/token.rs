//! What the user hands the agent to join: the bootstrap token
//! (`ID.SECRET`, kubeadm's format) and the pins of the control plane's CA
//! (`sha256:<hex>`, kubeadm's `--discovery-token-ca-cert-hash`), parsed at
//! the edge into typed values.

use std::fmt;
use std::str::FromStr;

/// A malformed `--token` or `--ca-cert-hash`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Not `[a-z0-9]{6}.[a-z0-9]{16}`.
    #[error(
        "the bootstrap token must look like abcdef.0123456789abcdef (6 and 16 lower-case letters or digits, as `hami token create` prints it)"
    )]
    Token,
    /// Not `sha256:<64 hex digits>`.
    #[error(
        "{0:?}: a CA certificate hash must look like sha256:<64 hex digits> (`hami token create` prints it)"
    )]
    Hash(String),
}

/// A bootstrap token. Its secret never appears in `Debug` or `Display`.
#[derive(Clone, PartialEq, Eq)]
pub struct BootstrapToken {
    id: String,
    secret: String,
}

impl BootstrapToken {
    /// The public half (the Secret is `bootstrap-token-<id>`).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The private half (the HMAC key of the cluster-info signature).
    pub fn secret(&self) -> &str {
        &self.secret
    }

    /// `ID.SECRET`, the bearer token.
    pub fn bearer(&self) -> String {
        format!("{}.{}", self.id, self.secret)
    }
}

impl fmt::Debug for BootstrapToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BootstrapToken({}.<redacted>)", self.id)
    }
}

impl FromStr for BootstrapToken {
    type Err = TokenError;

    fn from_str(s: &str) -> Result<Self, TokenError> {
        let (id, secret) = s.trim().split_once('.').ok_or(TokenError::Token)?;
        let ok = |part: &str, len: usize| {
            part.len() == len
                && part
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        };
        if !ok(id, 6) || !ok(secret, 16) {
            return Err(TokenError::Token);
        }
        Ok(Self {
            id: id.to_owned(),
            secret: secret.to_owned(),
        })
    }
}

/// A pin of the CA's public key: the SHA-256 of its SubjectPublicKeyInfo.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct CaCertHash {
    /// Lower-case hex.
    hex: String,
}

impl CaCertHash {
    /// The pin of a certificate (DER): SHA-256 of its SubjectPublicKeyInfo,
    /// kubeadm's `pubkeypin.Hash`.
    pub fn of_spki(spki_der: &[u8]) -> Self {
        let digest = ring::digest::digest(&ring::digest::SHA256, spki_der);
        let hex = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
        Self { hex }
    }
}

impl fmt::Display for CaCertHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.hex)
    }
}

impl FromStr for CaCertHash {
    type Err = TokenError;

    fn from_str(s: &str) -> Result<Self, TokenError> {
        let bad = || TokenError::Hash(s.to_owned());
        let (alg, hex) = s.trim().split_once(':').ok_or_else(bad)?;
        if !alg.eq_ignore_ascii_case("sha256")
            || hex.len() != 64
            || !hex.bytes().all(|b| b.is_ascii_hexdigit())
        {
            return Err(bad());
        }
        Ok(Self {
            hex: hex.to_ascii_lowercase(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens() {
        let t: BootstrapToken = "abcdef.0123456789abcdef".parse().unwrap();
        assert_eq!(t.id(), "abcdef");
        assert_eq!(t.secret(), "0123456789abcdef");
        assert_eq!(t.bearer(), "abcdef.0123456789abcdef");
        assert!(!format!("{t:?}").contains("0123456789abcdef"));
        for bad in [
            "",
            "abcdef",
            "abcdef.",
            "ABCDEF.0123456789abcdef",
            "abcde.0123456789abcdef",
            "abcdef.0123456789abcde",
            "abcdef.0123456789abcdef0",
            "abc-ef.0123456789abcdef",
        ] {
            assert_eq!(
                bad.parse::<BootstrapToken>(),
                Err(TokenError::Token),
                "{bad}"
            );
        }
    }

    #[test]
    fn hashes() {
        let hex = "AB".repeat(32);
        let h: CaCertHash = format!("sha256:{hex}").parse().unwrap();
        assert_eq!(h.to_string(), format!("sha256:{}", "ab".repeat(32)));
        for bad in [
            "ab".repeat(32),
            format!("sha1:{}", "ab".repeat(32)),
            format!("sha256:{}", "ab".repeat(31)),
            format!("sha256:{}", "zz".repeat(32)),
        ] {
            assert!(bad.parse::<CaCertHash>().is_err(), "{bad}");
        }
        // Known vector: SHA-256 of the empty string.
        assert_eq!(
            CaCertHash::of_spki(b"").to_string(),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}
