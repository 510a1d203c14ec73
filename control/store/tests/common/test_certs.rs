//! Certificates for TLS tests, made with rcgen: a CA, a serving
//! certificate for `127.0.0.1` and `localhost` and a client certificate it
//! signs, as PEM text and as files in a temp dir.
//!
//! Only std, rcgen and tempfile: the estimator's TLS tests include this
//! file too (`#[path]`).
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use tempfile::TempDir;

/// A certificate and its key: PEM text, and the files holding them.
pub struct Pair {
    pub cert_pem: String,
    pub key_pem: String,
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// A CA with one serving and one client certificate, in `dir`.
pub struct TestPki {
    pub dir: TempDir,
    pub ca_pem: String,
    pub ca: PathBuf,
    pub server: Pair,
    pub client: Pair,
}

impl TestPki {
    /// A fresh CA named `name` and its two certificates.
    pub fn new(name: &str) -> TestPki {
        let dir = tempfile::tempdir().unwrap();
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        ca_params
            .distinguished_name
            .push(DnType::CommonName, format!("{name}-ca"));
        let ca_pem = ca_params.self_signed(&ca_key).unwrap().pem();
        let issuer = Issuer::new(ca_params, ca_key);
        let ca = write(dir.path(), "ca.crt", &ca_pem);

        // Server and client usage both: etcd dials itself with its serving
        // certificate (its gateway) when client certificates are required.
        let server = issue(
            &issuer,
            dir.path(),
            "server",
            vec!["127.0.0.1".into(), "localhost".into()],
            vec![
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ],
        );
        let client = issue(
            &issuer,
            dir.path(),
            "client",
            Vec::new(),
            vec![ExtendedKeyUsagePurpose::ClientAuth],
        );
        TestPki {
            dir,
            ca_pem,
            ca,
            server,
            client,
        }
    }

    /// A file in this PKI's dir with `text` in it (bad files for tests).
    pub fn file(&self, name: &str, text: &str) -> PathBuf {
        write(self.dir.path(), name, text)
    }
}

fn issue(
    issuer: &Issuer<'_, KeyPair>,
    dir: &Path,
    name: &str,
    sans: Vec<String>,
    usages: Vec<ExtendedKeyUsagePurpose>,
) -> Pair {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(sans).unwrap();
    params
        .distinguished_name
        .push(DnType::CommonName, format!("hami-test-{name}"));
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = usages;
    let cert_pem = params.signed_by(&key, issuer).unwrap().pem();
    let key_pem = key.serialize_pem();
    Pair {
        cert: write(dir, &format!("{name}.crt"), &cert_pem),
        key: write(dir, &format!("{name}.key"), &key_pem),
        cert_pem,
        key_pem,
    }
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}
