//! `hami up`'s ServiceAccount token flags, with kube-apiserver's names.
//! Without `--service-account-signing-key-file`, the key is hami's own
//! `DATA_DIR/pki/sa.key` (created once, with `sa.pub`, as kubeadm does).

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use clap::Args;

use crate::apiserver::auth::ServiceAccountOptions;
use crate::apiserver::auth::service_account::DEFAULT_ISSUER;

/// ServiceAccount tokens (`kubectl create token`), as kube-apiserver's flags.
#[derive(Args, Debug, Clone, Default)]
pub struct ServiceAccountArgs {
    /// The issuer (`iss`) of the tokens hami signs; repeat it to also accept
    /// tokens of earlier issuers (the first one signs).
    #[arg(
        long = "service-account-issuer",
        env = "HAMI_SERVICE_ACCOUNT_ISSUER",
        value_delimiter = ',',
        value_name = "URL",
        default_value = DEFAULT_ISSUER,
        conflicts_with = "insecure_http"
    )]
    pub issuers: Vec<String>,
    /// The key that signs tokens (PKCS#8 ECDSA P-256 PEM; default:
    /// DATA_DIR/pki/sa.key, created when missing).
    #[arg(
        long,
        env = "HAMI_SERVICE_ACCOUNT_SIGNING_KEY_FILE",
        value_name = "FILE",
        conflicts_with = "insecure_http"
    )]
    pub service_account_signing_key_file: Option<PathBuf>,
    /// More keys that verify tokens (PEM public keys or PKCS#8 private
    /// keys, ECDSA P-256), e.g. a previous signing key; repeatable.
    #[arg(
        long = "service-account-key-file",
        env = "HAMI_SERVICE_ACCOUNT_KEY_FILES",
        value_delimiter = ',',
        value_name = "FILE",
        conflicts_with = "insecure_http"
    )]
    pub key_files: Vec<PathBuf>,
    /// The audiences the API accepts in tokens, and gives tokens asked for
    /// none (default: the issuers).
    #[arg(
        long = "api-audiences",
        env = "HAMI_API_AUDIENCES",
        value_delimiter = ',',
        value_name = "AUDIENCE",
        conflicts_with = "insecure_http"
    )]
    pub api_audiences: Vec<String>,
    /// The longest token lifetime a TokenRequest gets (longer requests are
    /// cut to it; at least 1h), as Go writes durations: 24h, 1h30m, 3600s.
    #[arg(
        long,
        env = "HAMI_SERVICE_ACCOUNT_MAX_TOKEN_EXPIRATION",
        value_name = "DURATION",
        value_parser = parse_go_duration,
        conflicts_with = "insecure_http"
    )]
    pub service_account_max_token_expiration: Option<Duration>,
}

impl ServiceAccountArgs {
    /// The options the API server loads; creates `DATA_DIR/pki/sa.key`
    /// when no signing key file is given.
    pub fn options(&self, data_dir: &Path) -> anyhow::Result<ServiceAccountOptions> {
        let signing_key_file = match &self.service_account_signing_key_file {
            Some(path) => path.clone(),
            None => {
                crate::pki::load_or_create_service_account_key(data_dir)
                    .context("the service account signing key")?
                    .key
            }
        };
        let issuers = if self.issuers.is_empty() {
            vec![DEFAULT_ISSUER.to_owned()]
        } else {
            self.issuers.clone()
        };
        Ok(ServiceAccountOptions {
            issuers,
            signing_key_file,
            key_files: self.key_files.clone(),
            api_audiences: self.api_audiences.clone(),
            max_token_expiration: self.service_account_max_token_expiration,
        })
    }
}

/// kube-apiserver's duration flags take Go durations (`48h`, `1h30m`):
/// one parser for the whole binary.
pub use crate::controllers::csr::parse_go_duration;

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn go_durations() {
        let ok = [
            ("48h", 48 * 3600),
            ("1h30m", 5400),
            ("3600s", 3600),
            ("8760h0m0s", 8760 * 3600),
            ("90m", 5400),
        ];
        for (text, secs) in ok {
            assert_eq!(
                parse_go_duration(text),
                Ok(Duration::from_secs(secs)),
                "{text}"
            );
        }
        for bad in ["", "h", "10", "1d", "1.5h", "-1h", "99999999999999999999h"] {
            assert!(parse_go_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_default_key_is_created_in_the_data_dir() {
        let dir = tempfile::tempdir().unwrap();
        let options = ServiceAccountArgs::default().options(dir.path()).unwrap();
        assert_eq!(options.signing_key_file, dir.path().join("pki/sa.key"));
        assert_eq!(options.issuers, [DEFAULT_ISSUER]);
        assert!(options.signing_key_file.exists());
        assert!(dir.path().join("pki/sa.pub").exists());
        // A key given is used as it is; nothing is created.
        let other = tempfile::tempdir().unwrap();
        let args = ServiceAccountArgs {
            service_account_signing_key_file: Some(options.signing_key_file.clone()),
            ..Default::default()
        };
        let given = args.options(other.path()).unwrap();
        assert_eq!(given.signing_key_file, options.signing_key_file);
        assert!(!other.path().join("pki").exists());
    }
}
