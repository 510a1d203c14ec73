//! TLS to etcd, as etcd's own clients take it (`--cacert`, `--cert`,
//! `--key`; `hami up` calls them `--etcd-cafile`, `--etcd-certfile`,
//! `--etcd-keyfile`): the CA that signs etcd's serving certificate, and the
//! client pair etcd asks for with `--client-cert-auth`.
//!
//! The endpoints and the settings must agree: with TLS every endpoint is
//! `https://` (or a bare `host:port`, dialed over TLS), without it an
//! `https://` endpoint is refused up front, since there is nothing to
//! verify etcd's certificate with.

use etcd_client::{Certificate, Identity, TlsOptions};

use crate::{Result, StoreError};

/// PEM settings of TLS to etcd.
#[derive(Clone, PartialEq, Eq)]
pub struct EtcdTls {
    /// CA bundle (PEM) that etcd's serving certificate must chain to.
    pub ca_pem: Vec<u8>,
    /// Client certificate chain and private key (PEM) presented to etcd,
    /// needed when etcd runs with `--client-cert-auth`.
    pub client: Option<(Vec<u8>, Vec<u8>)>,
}

impl std::fmt::Debug for EtcdTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key's bytes.
        f.debug_struct("EtcdTls")
            .field("ca_pem", &format_args!("{} bytes", self.ca_pem.len()))
            .field("client_certificate", &self.client.is_some())
            .finish()
    }
}

/// etcd-client's TLS options for `tls`, after checking that every endpoint
/// goes with it.
pub(crate) fn options(endpoints: &[String], tls: Option<&EtcdTls>) -> Result<Option<TlsOptions>> {
    for endpoint in endpoints {
        let https = endpoint.starts_with("https://");
        let http = endpoint.starts_with("http://");
        match tls {
            None if https => {
                return Err(StoreError::Backend(format!(
                    "etcd endpoint {endpoint} is https but no CA is given to verify etcd's \
                     certificate with (--etcd-cafile)"
                )));
            }
            Some(_) if http => {
                return Err(StoreError::Backend(format!(
                    "etcd endpoint {endpoint} is plain http while TLS to etcd is set up \
                     (--etcd-cafile): use https://"
                )));
            }
            _ => {}
        }
    }
    Ok(tls.map(|tls| {
        let options = TlsOptions::new().ca_certificate(Certificate::from_pem(&tls.ca_pem));
        match &tls.client {
            Some((cert, key)) => options.identity(Identity::from_pem(cert, key)),
            None => options,
        }
    }))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn tls() -> EtcdTls {
        EtcdTls {
            ca_pem: b"ca".to_vec(),
            client: Some((b"cert".to_vec(), b"secret key".to_vec())),
        }
    }

    #[test]
    fn endpoints_must_go_with_the_tls_settings() {
        let eps = |list: &[&str]| list.iter().map(|e| e.to_string()).collect::<Vec<_>>();
        assert!(
            options(&eps(&["http://a:2379", "b:2379"]), None)
                .unwrap()
                .is_none()
        );
        assert!(
            options(&eps(&["https://a:2379", "b:2379"]), Some(&tls()))
                .unwrap()
                .is_some()
        );
        let err = options(&eps(&["http://a:2379", "https://b:2379"]), None).unwrap_err();
        assert!(
            matches!(&err, StoreError::Backend(m) if m.contains("https://b:2379") && m.contains("--etcd-cafile")),
            "{err}"
        );
        let err = options(&eps(&["https://a:2379", "http://b:2379"]), Some(&tls())).unwrap_err();
        assert!(
            matches!(&err, StoreError::Backend(m) if m.contains("http://b:2379") && m.contains("https://")),
            "{err}"
        );
    }

    #[test]
    fn debug_never_shows_the_key() {
        let text = format!("{:?}", tls());
        assert!(!text.contains("secret"), "{text}");
        assert!(text.contains("client_certificate: true"), "{text}");
    }
}
