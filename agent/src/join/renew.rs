//! Certificate renewal, as client-go's certificate manager: at a jittered
//! point between 70% and 90% of the certificate's lifetime, make a new key
//! and a CertificateSigningRequest authenticated with the current
//! certificate, wait for it, write the pair to the cert dir and swap it
//! into the running client ([`Identity::replace`]). Failures are retried
//! with backoff until the certificate expires and after.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::watch;

use super::cert::{self, CertError, CertInfo};
use super::csr::{self, CsrError};
use super::files::{CertDir, FilesError};
use super::identity::{Identity, IdentityError};
use super::metrics::{CertificateMetrics, RenewalResult};
use crate::pull::backoff::Backoff;

/// Share of the lifetime always waited before renewing.
const MIN_SHARE: f64 = 0.7;
/// Share of the lifetime spread by the jitter (70%..90%).
const JITTER_SHARE: f64 = 0.2;

/// Why one renewal failed.
#[derive(Debug, thiserror::Error)]
pub enum RenewError {
    /// No key or request.
    #[error(transparent)]
    Cert(#[from] CertError),
    /// The request was not signed.
    #[error(transparent)]
    Csr(#[from] CsrError),
    /// The files could not be written.
    #[error(transparent)]
    Files(#[from] FilesError),
    /// The new pair could not be loaded.
    #[error(transparent)]
    Identity(#[from] IdentityError),
}

/// When to renew a certificate valid from `not_before` to `not_after`:
/// `not_before + (0.7 + 0.2 * jitter) * lifetime`, `jitter` in [0, 1]
/// (client-go's `nextRotationDeadline` with a wider spread, so that many
/// agents joined together do not renew together).
pub fn rotation_deadline(not_before: SystemTime, not_after: SystemTime, jitter: f64) -> SystemTime {
    let lifetime = not_after.duration_since(not_before).unwrap_or_default();
    let share = MIN_SHARE + JITTER_SHARE * jitter.clamp(0.0, 1.0);
    not_before + lifetime.mul_f64(share)
}

/// A uniform number in [0, 1] (0 when the system has no randomness).
pub fn jitter() -> f64 {
    use ring::rand::SecureRandom as _;
    let mut b = [0u8; 4];
    match ring::rand::SystemRandom::new().fill(&mut b) {
        Ok(()) => f64::from(u32::from_le_bytes(b)) / f64::from(u32::MAX),
        Err(_) => 0.0,
    }
}

/// Renews the agent's certificate for as long as it runs.
pub struct Renewer {
    /// The member cluster.
    pub cluster: String,
    /// The control-plane client (authenticates with `identity`).
    pub client: kube::Client,
    /// The pair the client presents.
    pub identity: Arc<Identity>,
    /// Where the pair is kept.
    pub dir: CertDir,
    /// The current certificate.
    pub info: CertInfo,
    /// When the current certificate was received (signers back-date
    /// notBefore, kubeadm's and hami's by five minutes: the lifetime that
    /// counts starts at the later of the two).
    pub issued_at: SystemTime,
    /// Longest wait for one request to be signed.
    pub timeout: Duration,
    /// Metrics.
    pub metrics: CertificateMetrics,
}

impl Renewer {
    /// Renews at each rotation deadline until `stop` turns true.
    pub async fn run(mut self, mut stop: watch::Receiver<bool>) {
        let mut backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(60));
        loop {
            let start = self.info.not_before.max(self.issued_at);
            let deadline = rotation_deadline(start, self.info.not_after, jitter());
            let wait = deadline
                .duration_since(SystemTime::now())
                .unwrap_or_default();
            tracing::info!(
                serial = self.info.serial,
                renew_in = ?wait,
                "client certificate renewal scheduled"
            );
            if !crate::pull::sleep_or_stop(wait, &mut stop).await {
                return;
            }
            loop {
                let attempt = tokio::select! {
                    r = self.renew_once() => r,
                    _ = stop.wait_for(|s| *s) => return,
                };
                match attempt {
                    Ok(()) => {
                        self.metrics.renewal(RenewalResult::Success);
                        backoff.reset();
                        break;
                    }
                    Err(e) => {
                        self.metrics.renewal(RenewalResult::Failure);
                        let expired = SystemTime::now() >= self.info.not_after;
                        tracing::warn!(error = %e, expired, "client certificate renewal failed; retrying");
                        if !crate::pull::sleep_or_stop(backoff.next_delay(), &mut stop).await {
                            return;
                        }
                    }
                }
            }
        }
    }

    /// One renewal: new key, request, wait, write, swap.
    pub async fn renew_once(&mut self) -> Result<(), RenewError> {
        let kr = cert::new_request(&self.cluster)?;
        let issued =
            csr::request_certificate(&self.client, &self.cluster, &kr, self.timeout, csr::POLL)
                .await?;
        self.dir.write_pair(&issued.cert_pem, &kr.key_pem)?;
        self.identity.replace(&issued.cert_pem, &kr.key_pem)?;
        tracing::info!(
            csr = issued.request_name,
            old_serial = self.info.serial,
            serial = issued.info.serial,
            "client certificate renewed"
        );
        self.metrics.set_expiration(issued.info.not_after);
        self.info = issued.info;
        self.issued_at = SystemTime::now();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    fn at(s: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(s)
    }

    #[test]
    fn renewal_falls_between_70_and_90_percent_of_the_lifetime() {
        let (nb, na) = (at(1000), at(2000));
        assert_eq!(rotation_deadline(nb, na, 0.0), at(1700));
        assert_eq!(rotation_deadline(nb, na, 0.5), at(1800));
        assert_eq!(rotation_deadline(nb, na, 1.0), at(1900));
        // Out-of-range jitter is clamped.
        assert_eq!(rotation_deadline(nb, na, -3.0), at(1700));
        assert_eq!(rotation_deadline(nb, na, 7.0), at(1900));
        // A 30 s certificate renews after 21..27 s.
        assert_eq!(rotation_deadline(at(0), at(30), 0.0), at(21));
        assert_eq!(rotation_deadline(at(0), at(30), 1.0), at(27));
        // A certificate that ends before it starts renews at once.
        assert_eq!(rotation_deadline(na, nb, 0.5), na);
        for _ in 0..100 {
            let j = jitter();
            assert!((0.0..=1.0).contains(&j), "{j}");
        }
    }
}
