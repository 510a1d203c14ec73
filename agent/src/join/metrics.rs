//! The join metrics (prefix `hami_agent_`): when the client certificate
//! expires and how renewals went. The `result` label comes from a fixed
//! set ([`RenewalResult`]); a binary runs one agent, so no cluster label.

use std::time::{SystemTime, UNIX_EPOCH};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Registry, Unit};

/// Outcome of one renewal attempt.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum RenewalResult {
    /// A new certificate is in use.
    Success,
    /// The attempt failed; it is retried with backoff.
    Failure,
}

impl RenewalResult {
    /// The `result` label value.
    pub fn as_str(self) -> &'static str {
        match self {
            RenewalResult::Success => "success",
            RenewalResult::Failure => "failure",
        }
    }
}

/// `result` label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    /// success, failure.
    pub result: &'static str,
}

/// Handles of the certificate metrics.
#[derive(Clone, Debug, Default)]
pub struct CertificateMetrics {
    expiration: Gauge,
    renewals: Family<ResultLabels, Counter>,
}

impl CertificateMetrics {
    /// Metrics registered nowhere (tests, callers without /metrics).
    pub fn unregistered() -> Self {
        let m = Self::default();
        for r in [RenewalResult::Success, RenewalResult::Failure] {
            m.renewals
                .get_or_create(&ResultLabels { result: r.as_str() })
                .inc_by(0);
        }
        m
    }

    /// Registers `hami_agent_certificate_expiration_seconds` and
    /// `hami_agent_certificate_renewals_total`.
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self::unregistered();
        let r = registry.sub_registry_with_prefix("hami_agent");
        r.register_with_unit(
            "certificate_expiration",
            "When the agent's client certificate on the control plane expires (unix time)",
            Unit::Seconds,
            m.expiration.clone(),
        );
        r.register(
            "certificate_renewals",
            "Client certificate renewals by result",
            m.renewals.clone(),
        );
        m
    }

    /// Records the current certificate's expiry.
    pub fn set_expiration(&self, not_after: SystemTime) {
        let secs = not_after
            .duration_since(UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
            .unwrap_or(0);
        self.expiration.set(secs);
    }

    /// Counts one renewal attempt.
    pub fn renewal(&self, result: RenewalResult) {
        self.renewals
            .get_or_create(&ResultLabels {
                result: result.as_str(),
            })
            .inc();
    }

    /// The expiry recorded (unix seconds).
    pub fn expiration(&self) -> i64 {
        self.expiration.get()
    }

    /// Renewals counted with `result`.
    pub fn renewals(&self, result: RenewalResult) -> u64 {
        self.renewals
            .get_or_create(&ResultLabels {
                result: result.as_str(),
            })
            .get()
    }
}
