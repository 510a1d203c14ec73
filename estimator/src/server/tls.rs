//! TLS of the estimator's gRPC port, with the flags of Karmada's
//! scheduler-estimator: `--grpc-auth-cert-file` and `--grpc-auth-key-file`
//! serve TLS, `--grpc-client-ca-file` also requires client certificates
//! signed by that CA (mutual TLS), and `--insecure-skip-grpc-client-verify`
//! serves TLS without asking for them. Without a certificate the port serves
//! plain gRPC.
//!
//! The files are read and checked once, at start, with errors that name the
//! flag and the file; the PEM readers are public so that other processes
//! reading TLS files for their flags (the control plane's estimator and etcd
//! clients) report them the same way. TLS itself is tonic's (rustls, ring).

use std::path::{Path, PathBuf};
use std::time::Duration;

use rustls::RootCertStore;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;
use tonic::transport::{Certificate, Identity, ServerTlsConfig};

/// Longest a client may take to complete the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// How the gRPC port is secured (Karmada's scheduler-estimator flags).
#[derive(clap::Args, Debug, Clone, Default)]
pub struct GrpcTlsArgs {
    /// Serve gRPC over TLS with this certificate (PEM; the chain, leaf
    /// first). Without it the port serves plain gRPC.
    #[arg(
        long,
        env = "HAMI_ESTIMATOR_GRPC_AUTH_CERT_FILE",
        requires = "grpc_auth_key_file"
    )]
    pub grpc_auth_cert_file: Option<PathBuf>,
    /// The private key of --grpc-auth-cert-file (PEM).
    #[arg(
        long,
        env = "HAMI_ESTIMATOR_GRPC_AUTH_KEY_FILE",
        requires = "grpc_auth_cert_file"
    )]
    pub grpc_auth_key_file: Option<PathBuf>,
    /// Require a client certificate signed by one of these CAs (PEM
    /// bundle) on every connection: mutual TLS (with --grpc-auth-cert-file).
    #[arg(
        long,
        env = "HAMI_ESTIMATOR_GRPC_CLIENT_CA_FILE",
        requires = "grpc_auth_cert_file"
    )]
    pub grpc_client_ca_file: Option<PathBuf>,
    /// Serve TLS without asking clients for a certificate, even when
    /// --grpc-client-ca-file is given.
    #[arg(long, env = "HAMI_ESTIMATOR_INSECURE_SKIP_GRPC_CLIENT_VERIFY")]
    pub insecure_skip_grpc_client_verify: bool,
}

/// What the flags ask for, for the log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GrpcSecurity {
    Plain,
    Tls,
    MutualTls,
}

impl std::fmt::Display for GrpcSecurity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            GrpcSecurity::Plain => "plain gRPC",
            GrpcSecurity::Tls => "TLS without client certificates",
            GrpcSecurity::MutualTls => "mutual TLS",
        })
    }
}

impl GrpcTlsArgs {
    /// Plain, TLS, or mutual TLS.
    pub fn security(&self) -> GrpcSecurity {
        match (
            &self.grpc_auth_cert_file,
            &self.grpc_client_ca_file,
            self.insecure_skip_grpc_client_verify,
        ) {
            (None, _, _) => GrpcSecurity::Plain,
            (Some(_), Some(_), false) => GrpcSecurity::MutualTls,
            (Some(_), _, _) => GrpcSecurity::Tls,
        }
    }

    /// The server TLS settings the flags ask for (`None`: plain gRPC),
    /// every file read and checked.
    pub fn server_config(&self) -> Result<Option<ServerTlsConfig>, TlsFileError> {
        let (Some(cert), Some(key)) = (&self.grpc_auth_cert_file, &self.grpc_auth_key_file) else {
            return Ok(None);
        };
        let pair = read_key_pair("--grpc-auth-cert-file", cert, "--grpc-auth-key-file", key)?;
        let mut config = ServerTlsConfig::new()
            .identity(Identity::from_pem(pair.cert_pem, pair.key_pem))
            .timeout(HANDSHAKE_TIMEOUT);
        if self.security() == GrpcSecurity::MutualTls
            && let Some(ca) = &self.grpc_client_ca_file
        {
            let ca = read_ca_bundle("--grpc-client-ca-file", ca)?;
            config = config.client_ca_root(Certificate::from_pem(ca));
        }
        Ok(Some(config))
    }
}

/// Why a TLS file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsFileError {
    #[error("{flag} {}: cannot read it: {error}", .path.display())]
    Read {
        flag: &'static str,
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("{flag} {}: {what}", .path.display())]
    Invalid {
        flag: &'static str,
        path: PathBuf,
        what: String,
    },
    #[error(
        "{key_flag} {} is not the key of {cert_flag} {}: {what}",
        .key.display(),
        .cert.display()
    )]
    Mismatch {
        cert_flag: &'static str,
        cert: PathBuf,
        key_flag: &'static str,
        key: PathBuf,
        what: String,
    },
}

/// A certificate chain and its private key, both PEM, checked to belong
/// together.
#[derive(Clone, PartialEq, Eq)]
pub struct KeyPairPem {
    pub cert_pem: Vec<u8>,
    pub key_pem: Vec<u8>,
}

impl std::fmt::Debug for KeyPairPem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key's bytes.
        f.debug_struct("KeyPairPem")
            .field("cert_pem", &format_args!("{} bytes", self.cert_pem.len()))
            .finish_non_exhaustive()
    }
}

fn read(flag: &'static str, path: &Path) -> Result<Vec<u8>, TlsFileError> {
    std::fs::read(path).map_err(|error| TlsFileError::Read {
        flag,
        path: path.to_owned(),
        error,
    })
}

fn invalid(flag: &'static str, path: &Path, what: impl std::fmt::Display) -> TlsFileError {
    TlsFileError::Invalid {
        flag,
        path: path.to_owned(),
        what: what.to_string(),
    }
}

fn certificates(
    flag: &'static str,
    path: &Path,
    pem: &[u8],
) -> Result<Vec<CertificateDer<'static>>, TlsFileError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid(flag, path, format_args!("not PEM: {e}")))?;
    if certs.is_empty() {
        return Err(invalid(flag, path, "no PEM CERTIFICATE block in it"));
    }
    Ok(certs)
}

/// A CA bundle (PEM): the file's bytes, checked to hold at least one
/// certificate and only certificates usable as trust anchors.
pub fn read_ca_bundle(flag: &'static str, path: &Path) -> Result<Vec<u8>, TlsFileError> {
    let pem = read(flag, path)?;
    let mut roots = RootCertStore::empty();
    for cert in certificates(flag, path, &pem)? {
        roots
            .add(cert)
            .map_err(|e| invalid(flag, path, format_args!("not a CA certificate: {e}")))?;
    }
    Ok(pem)
}

/// A certificate chain (PEM, leaf first) and its private key (PEM): the
/// files' bytes, checked to parse and to belong together.
pub fn read_key_pair(
    cert_flag: &'static str,
    cert: &Path,
    key_flag: &'static str,
    key: &Path,
) -> Result<KeyPairPem, TlsFileError> {
    let cert_pem = read(cert_flag, cert)?;
    let key_pem = read(key_flag, key)?;
    let chain = certificates(cert_flag, cert, &cert_pem)?;
    let private = PrivateKeyDer::from_pem_slice(&key_pem)
        .map_err(|e| invalid(key_flag, key, format_args!("no PEM private key in it: {e}")))?;
    CertifiedKey::from_der(chain, private, &rustls::crypto::ring::default_provider()).map_err(
        |e| TlsFileError::Mismatch {
            cert_flag,
            cert: cert.to_owned(),
            key_flag,
            key: key.to_owned(),
            what: e.to_string(),
        },
    )?;
    Ok(KeyPairPem { cert_pem, key_pem })
}
