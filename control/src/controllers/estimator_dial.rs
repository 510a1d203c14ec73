//! How the control plane dials the estimators the Clusters advertise (the
//! scheduler, the descheduler and the capacity-shape metrics): plain gRPC,
//! or TLS as Karmada's scheduler dials with `--scheduler-estimator-ca-file`
//! (and `--scheduler-estimator-cert-file`/`--scheduler-estimator-key-file`
//! for estimators that require client certificates).
//!
//! An endpoint's scheme decides: `https://` is TLS (and needs the CA),
//! `http://` is plain; a bare `host:port` is TLS when a CA is given and
//! plain otherwise, so endpoints advertised as `host:port` keep working
//! without TLS settings.

use std::sync::Arc;
use std::time::Duration;

use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

/// TLS settings of estimator calls (none: plain gRPC).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EstimatorDial {
    tls: Option<Arc<ClientTls>>,
}

#[derive(PartialEq, Eq)]
struct ClientTls {
    ca_pem: Vec<u8>,
    /// Certificate chain and key (PEM) presented to the estimators.
    identity: Option<(Vec<u8>, Vec<u8>)>,
}

impl std::fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key's bytes.
        f.debug_struct("ClientTls")
            .field("ca_pem", &format_args!("{} bytes", self.ca_pem.len()))
            .field("client_certificate", &self.identity.is_some())
            .finish()
    }
}

/// Why an estimator endpoint cannot be dialed.
#[derive(Debug, thiserror::Error)]
pub enum DialError {
    #[error("estimator endpoint {0:?} is not a URI")]
    Endpoint(String),
    #[error(
        "estimator endpoint {0} is https but the control plane has no CA to verify it with \
         (--scheduler-estimator-ca-file)"
    )]
    NoCa(String),
    #[error("estimator endpoint {endpoint}: TLS settings refused: {source}")]
    Tls {
        endpoint: String,
        #[source]
        source: tonic::transport::Error,
    },
}

impl EstimatorDial {
    /// Plain gRPC (`https://` endpoints are refused).
    pub fn plain() -> Self {
        Self::default()
    }

    /// TLS trusting the CA bundle `ca_pem`, presenting the (certificate
    /// chain, key) PEM pair `identity` when given.
    pub fn tls(ca_pem: Vec<u8>, identity: Option<(Vec<u8>, Vec<u8>)>) -> Self {
        Self {
            tls: Some(Arc::new(ClientTls { ca_pem, identity })),
        }
    }

    /// Whether a CA is set (bare `host:port` endpoints are dialed over TLS).
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// The URI `endpoint` is dialed at.
    pub fn uri(&self, endpoint: &str) -> String {
        if endpoint.contains("://") {
            endpoint.to_string()
        } else if self.is_tls() {
            format!("https://{endpoint}")
        } else {
            format!("http://{endpoint}")
        }
    }

    /// A channel to `endpoint` that connects on first use; each call and
    /// each connection attempt times out after `timeout`.
    pub fn connect_lazy(&self, endpoint: &str, timeout: Duration) -> Result<Channel, DialError> {
        let uri = self.uri(endpoint);
        let https = uri.starts_with("https://");
        let mut channel = Endpoint::from_shared(uri)
            .map_err(|_| DialError::Endpoint(endpoint.to_string()))?
            .connect_timeout(timeout)
            .timeout(timeout);
        if https {
            let Some(tls) = &self.tls else {
                return Err(DialError::NoCa(endpoint.to_string()));
            };
            let mut config = ClientTlsConfig::new()
                .ca_certificate(Certificate::from_pem(&tls.ca_pem))
                .timeout(timeout);
            if let Some((cert, key)) = &tls.identity {
                config = config.identity(Identity::from_pem(cert, key));
            }
            channel = channel
                .tls_config(config)
                .map_err(|source| DialError::Tls {
                    endpoint: endpoint.to_string(),
                    source,
                })?;
        }
        Ok(channel.connect_lazy())
    }
}

#[cfg(test)]
#[path = "estimator_dial_tests.rs"]
mod tests;
