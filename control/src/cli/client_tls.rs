//! `hami up`'s TLS settings of its own clients: to the estimators (Karmada
//! scheduler's `--scheduler-estimator-*-file` flags) and to etcd (etcd's
//! `--etcd-cafile`, `--etcd-certfile`, `--etcd-keyfile`). The files are read
//! and checked at start, errors naming the flag and the file (the readers
//! are the estimator's, which reads its own TLS flags the same way).

use std::path::PathBuf;

use clap::Args;
use hami_estimator::server::tls::{TlsFileError, read_ca_bundle, read_key_pair};
use hami_store::EtcdTls;

use crate::controllers::estimator_dial::EstimatorDial;

/// How the scheduler, the descheduler and the capacity-shape metrics dial
/// the estimators the Clusters advertise.
#[derive(Args, Debug, Clone, Default)]
pub struct EstimatorTlsArgs {
    /// Dial the estimators over TLS, verifying them with this CA (PEM
    /// bundle): bare host:port endpoints and https:// ones; http://
    /// endpoints stay plain. Without it, https:// endpoints are not dialed.
    #[arg(long, env = "HAMI_SCHEDULER_ESTIMATOR_CA_FILE")]
    pub scheduler_estimator_ca_file: Option<PathBuf>,
    /// Present this client certificate (PEM; the chain, leaf first) to the
    /// estimators, for those that require one (mutual TLS).
    #[arg(
        long,
        env = "HAMI_SCHEDULER_ESTIMATOR_CERT_FILE",
        requires_all = ["scheduler_estimator_key_file", "scheduler_estimator_ca_file"]
    )]
    pub scheduler_estimator_cert_file: Option<PathBuf>,
    /// The private key of --scheduler-estimator-cert-file (PEM).
    #[arg(
        long,
        env = "HAMI_SCHEDULER_ESTIMATOR_KEY_FILE",
        requires = "scheduler_estimator_cert_file"
    )]
    pub scheduler_estimator_key_file: Option<PathBuf>,
}

impl EstimatorTlsArgs {
    /// Plain gRPC, or TLS with the CA and the client pair read and checked.
    pub fn dial(&self) -> Result<EstimatorDial, TlsFileError> {
        let Some(ca) = &self.scheduler_estimator_ca_file else {
            return Ok(EstimatorDial::plain());
        };
        let ca_pem = read_ca_bundle("--scheduler-estimator-ca-file", ca)?;
        let identity = match (
            &self.scheduler_estimator_cert_file,
            &self.scheduler_estimator_key_file,
        ) {
            (Some(cert), Some(key)) => {
                let pair = read_key_pair(
                    "--scheduler-estimator-cert-file",
                    cert,
                    "--scheduler-estimator-key-file",
                    key,
                )?;
                Some((pair.cert_pem, pair.key_pem))
            }
            _ => None,
        };
        Ok(EstimatorDial::tls(ca_pem, identity))
    }
}

/// TLS to etcd (with --etcd-endpoints).
#[derive(Args, Debug, Clone, Default)]
pub struct EtcdTlsArgs {
    /// Verify etcd's serving certificate with this CA (PEM bundle); needed
    /// for https:// etcd endpoints (bare host:port ones are then dialed
    /// over TLS too).
    #[arg(long, env = "HAMI_ETCD_CAFILE")]
    pub etcd_cafile: Option<PathBuf>,
    /// Present this client certificate (PEM; the chain, leaf first) to
    /// etcd, for an etcd started with --client-cert-auth.
    #[arg(
        long,
        env = "HAMI_ETCD_CERTFILE",
        requires_all = ["etcd_keyfile", "etcd_cafile"]
    )]
    pub etcd_certfile: Option<PathBuf>,
    /// The private key of --etcd-certfile (PEM).
    #[arg(long, env = "HAMI_ETCD_KEYFILE", requires = "etcd_certfile")]
    pub etcd_keyfile: Option<PathBuf>,
}

impl EtcdTlsArgs {
    /// The store's TLS settings (`None`: plain), the files read and checked.
    pub fn options(&self) -> Result<Option<EtcdTls>, TlsFileError> {
        let Some(ca) = &self.etcd_cafile else {
            return Ok(None);
        };
        let ca_pem = read_ca_bundle("--etcd-cafile", ca)?;
        let client = match (&self.etcd_certfile, &self.etcd_keyfile) {
            (Some(cert), Some(key)) => {
                let pair = read_key_pair("--etcd-certfile", cert, "--etcd-keyfile", key)?;
                Some((pair.cert_pem, pair.key_pem))
            }
            _ => None,
        };
        Ok(Some(EtcdTls { ca_pem, client }))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use clap::Parser;

    #[derive(Parser, Debug)]
    struct Cli {
        #[command(flatten)]
        estimator: EstimatorTlsArgs,
        #[command(flatten)]
        etcd: EtcdTlsArgs,
    }

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("hami").chain(args.iter().copied()))
    }

    #[test]
    fn a_client_pair_needs_its_key_and_a_ca() {
        for args in [
            &["--scheduler-estimator-cert-file", "c"][..],
            &[
                "--scheduler-estimator-cert-file",
                "c",
                "--scheduler-estimator-key-file",
                "k",
            ],
            &["--scheduler-estimator-key-file", "k"],
            &["--etcd-certfile", "c", "--etcd-keyfile", "k"],
            &["--etcd-keyfile", "k", "--etcd-cafile", "ca"],
        ] {
            assert!(parse(args).is_err(), "{args:?}");
        }
        let cli = parse(&[
            "--scheduler-estimator-ca-file",
            "ca",
            "--etcd-cafile",
            "etcd-ca",
            "--etcd-certfile",
            "c",
            "--etcd-keyfile",
            "k",
        ])
        .unwrap();
        assert_eq!(
            cli.estimator.scheduler_estimator_ca_file,
            Some(PathBuf::from("ca"))
        );
        assert_eq!(cli.etcd.etcd_keyfile, Some(PathBuf::from("k")));
    }

    #[test]
    fn without_flags_everything_is_plain() {
        let cli = parse(&[]).unwrap();
        assert_eq!(cli.estimator.dial().unwrap(), EstimatorDial::plain());
        assert_eq!(cli.etcd.options().unwrap(), None);
    }

    #[test]
    fn an_unreadable_file_is_named_with_its_flag() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.crt");
        let not_pem = dir.path().join("ca.txt");
        std::fs::write(&not_pem, "not a certificate\n").unwrap();
        let e = EtcdTlsArgs {
            etcd_cafile: Some(missing.clone()),
            ..Default::default()
        }
        .options()
        .unwrap_err();
        assert!(
            e.to_string().starts_with(&format!(
                "--etcd-cafile {}: cannot read it",
                missing.display()
            )),
            "{e}"
        );
        let e = EstimatorTlsArgs {
            scheduler_estimator_ca_file: Some(not_pem.clone()),
            ..Default::default()
        }
        .dial()
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "--scheduler-estimator-ca-file {}: no PEM CERTIFICATE block in it",
                not_pem.display()
            )
        );
    }
}
