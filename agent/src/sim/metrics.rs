//! The simulator's metrics (prefix `hami_sim_`), served at `/metrics` beside
//! the API server's. Labels come from fixed sets: kind and verb from
//! [`super::write::Kind`] and [`super::write::Write::verb`], outcome from
//! [`super::write::Outcome`].

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// Labels of a write.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WriteLabels {
    /// Object kind.
    pub kind: &'static str,
    /// create, delete, patch, status.
    pub verb: &'static str,
    /// done, moot, failed.
    pub outcome: &'static str,
}

/// Labels naming a watched kind.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    /// Object kind.
    pub kind: &'static str,
}

/// The simulator's metrics.
#[derive(Clone, Default)]
pub struct SimMetrics {
    /// Writes sent by the controllers and the binder.
    pub writes: Family<WriteLabels, Counter>,
    /// Watch errors (the watch retries with backoff).
    pub watch_errors: Family<KindLabels, Counter>,
    /// Objects skipped because they could not be read.
    pub skipped: Family<KindLabels, Counter>,
    /// Pods bound by the binder.
    pub bound: Counter,
    /// Pods waiting for a node (unbound, not terminating), at the last pass.
    pub pending: Gauge,
}

impl SimMetrics {
    /// Registers every metric under `hami_sim_`.
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self::default();
        let r = registry.sub_registry_with_prefix("hami_sim");
        r.register("writes", "Writes sent to the API server", m.writes.clone());
        r.register(
            "watch_errors",
            "Watch errors, retried with backoff",
            m.watch_errors.clone(),
        );
        r.register(
            "objects_skipped",
            "Objects skipped because they could not be read",
            m.skipped.clone(),
        );
        r.register("pods_bound", "Pods bound to a node", m.bound.clone());
        r.register(
            "pods_pending",
            "Unbound pods at the binder's last pass",
            m.pending.clone(),
        );
        m
    }
}
