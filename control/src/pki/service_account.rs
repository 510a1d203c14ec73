//! The ServiceAccount token signing key, kept as kubeadm keeps it:
//! `pki/sa.key` (the private key, PKCS#8 PEM, 0600) and `pki/sa.pub` (its
//! public key, SubjectPublicKeyInfo PEM, 0644). hami's key is ECDSA P-256
//! (kubeadm's is RSA), so its tokens are ES256.
//!
//! Created once, when `sa.key` is missing, and never replaced: every token
//! it signed would stop working. An `sa.key` that cannot be read or used is
//! an error naming it; an `sa.pub` that is missing is written again from the
//! key, one that does not match it is an error (restore it or remove it).

use std::path::{Path, PathBuf};

use hami_apiserver::server::auth::service_account::keys::{self, SigningKey};

use super::PkiError;
use super::files::{self, CERT_MODE, KEY_MODE};

/// kubeadm's file names.
pub const SA_KEY: &str = "sa.key";
pub const SA_PUB: &str = "sa.pub";

/// Where the signing key and its public key are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceAccountKeyFiles {
    pub key: PathBuf,
    pub public: PathBuf,
}

/// Loads `dir/pki/sa.key` and `sa.pub`, creating them when the key is
/// missing (see the module's documentation).
pub fn load_or_create_service_account_key(dir: &Path) -> Result<ServiceAccountKeyFiles, PkiError> {
    let dir = dir.join("pki");
    files::ensure_dir(&dir)?;
    let paths = ServiceAccountKeyFiles {
        key: dir.join(SA_KEY),
        public: dir.join(SA_PUB),
    };
    let invalid = |path: &Path, what: String| PkiError::Invalid {
        path: path.to_owned(),
        what,
    };
    let key = match files::read(&paths.key)? {
        Some(_) => {
            keys::load_signing_key(&paths.key).map_err(|e| invalid(&paths.key, e.to_string()))?
        }
        None => {
            let pkcs8 = SigningKey::generate_pkcs8().map_err(|_| PkiError::Random)?;
            let key = SigningKey::from_pkcs8(&pkcs8).map_err(|e| invalid(&paths.key, e))?;
            // The public key first: a crash between the two leaves a stale
            // sa.pub beside no key, which the next start replaces.
            files::write(&paths.public, &public_pem(&key), CERT_MODE)?;
            files::write(
                &paths.key,
                &keys::pem_encode("PRIVATE KEY", &pkcs8),
                KEY_MODE,
            )?;
            tracing::info!(path = %paths.key.display(), "created the service account signing key");
            return Ok(paths);
        }
    };
    match files::read(&paths.public)? {
        None => files::write(&paths.public, &public_pem(&key), CERT_MODE)?,
        Some(_) => {
            let found = keys::load_public_keys(&paths.public)
                .map_err(|e| invalid(&paths.public, e.to_string()))?;
            if found.first() != Some(key.public()) {
                return Err(invalid(
                    &paths.public,
                    format!(
                        "is not the public key of {}: restore it, or remove it to write it again",
                        paths.key.display()
                    ),
                ));
            }
        }
    }
    Ok(paths)
}

fn public_pem(key: &SigningKey) -> String {
    keys::pem_encode("PUBLIC KEY", &key.public().spki())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn created_once_then_kept() {
        let dir = tempfile::tempdir().unwrap();
        let files = load_or_create_service_account_key(dir.path()).unwrap();
        assert_eq!(files.key, dir.path().join("pki/sa.key"));
        assert_eq!(mode(&files.key), 0o600);
        assert_eq!(mode(&files.public), 0o644);
        let key = std::fs::read_to_string(&files.key).unwrap();
        assert!(key.starts_with("-----BEGIN PRIVATE KEY-----\n"), "{key}");
        let public = std::fs::read_to_string(&files.public).unwrap();
        assert!(
            public.starts_with("-----BEGIN PUBLIC KEY-----\n"),
            "{public}"
        );
        // The same key on the next start.
        load_or_create_service_account_key(dir.path()).unwrap();
        assert_eq!(std::fs::read_to_string(&files.key).unwrap(), key);
        // A missing sa.pub is written again from the key.
        std::fs::remove_file(&files.public).unwrap();
        load_or_create_service_account_key(dir.path()).unwrap();
        assert_eq!(std::fs::read_to_string(&files.public).unwrap(), public);
        // Another key's sa.pub is an error naming it.
        let other = tempfile::tempdir().unwrap();
        let other = load_or_create_service_account_key(other.path()).unwrap();
        std::fs::copy(&other.public, &files.public).unwrap();
        let err = load_or_create_service_account_key(dir.path())
            .unwrap_err()
            .to_string();
        assert!(err.contains("sa.pub: is not the public key of"), "{err}");
        // An unusable sa.key is never overwritten.
        std::fs::write(&files.key, "garbage").unwrap();
        let err = load_or_create_service_account_key(dir.path())
            .unwrap_err()
            .to_string();
        assert!(err.contains("sa.key"), "{err}");
        assert_eq!(std::fs::read_to_string(&files.key).unwrap(), "garbage");
    }
}
