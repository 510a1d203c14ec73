//! rustls configurations built from the PKI, with the ring provider.

use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};

use super::{Pki, PkiError};

fn tls_error(what: impl std::fmt::Display) -> PkiError {
    PkiError::Tls {
        what: what.to_string(),
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn certs(pem: &str) -> Result<Vec<CertificateDer<'static>>, PkiError> {
    CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(tls_error)
}

fn key(pem: &str) -> Result<PrivateKeyDer<'static>, PkiError> {
    PrivateKeyDer::from_pem_slice(pem.as_bytes()).map_err(tls_error)
}

impl Pki {
    fn roots(&self) -> Result<Arc<RootCertStore>, PkiError> {
        let mut roots = RootCertStore::empty();
        for cert in certs(&self.ca.pem)? {
            roots.add(cert).map_err(tls_error)?;
        }
        Ok(Arc::new(roots))
    }

    /// The API server's TLS configuration: presents the serving pair, asks
    /// for a client certificate and verifies any it gets against the CA, and
    /// admits clients without one (they authenticate otherwise, e.g. with a
    /// bearer token), as kube-apiserver does with `--client-ca-file`. Read
    /// the identity of a verified client with
    /// [`client_identity`](super::client_identity) on its first peer
    /// certificate. ALPN is left to the caller.
    pub fn server_config(&self) -> Result<ServerConfig, PkiError> {
        let provider = provider();
        let verifier = WebPkiClientVerifier::builder_with_provider(self.roots()?, provider.clone())
            .allow_unauthenticated()
            .build()
            .map_err(tls_error)?;
        let (cert_pem, key_pem) = (&self.serving.cert_pem, &self.serving.key_pem);
        ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(tls_error)?
            .with_client_cert_verifier(verifier)
            .with_single_cert(certs(cert_pem)?, key(key_pem)?)
            .map_err(tls_error)
    }

    /// A client TLS configuration that trusts only the CA and, given a
    /// (certificate, key) PEM pair such as [`Pki::admin`], presents it.
    pub fn client_config(&self, identity: Option<(&str, &str)>) -> Result<ClientConfig, PkiError> {
        let builder = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(tls_error)?
            .with_root_certificates(self.roots()?);
        match identity {
            Some((cert_pem, key_pem)) => builder
                .with_client_auth_cert(certs(cert_pem)?, key(key_pem)?)
                .map_err(tls_error),
            None => Ok(builder.with_no_client_auth()),
        }
    }
}
