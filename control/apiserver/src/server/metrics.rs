//! API server metrics (prefix `hami_apiserver`). Labels come from fixed sets
//! only: the verb, the resource as registered (or "other"), the HTTP code.

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// get, list, watch, create, update, patch, delete, deletecollection, discovery.
    pub verb: &'static str,
    /// `deployments.apps`, `pods`, or "other" for paths outside the registry.
    pub resource: String,
    pub code: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct VerbLabels {
    pub verb: &'static str,
}

/// Handles to the API server's metrics.
#[derive(Clone)]
pub struct ApiMetrics {
    pub requests: Family<RequestLabels, Counter>,
    pub latency: Family<VerbLabels, Histogram>,
    pub open_watches: Gauge,
    pub store_revision: Gauge<u64, AtomicU64>,
}

fn latency_histogram() -> Histogram {
    // 0.5 ms .. ~4 s in powers of two: store reads answer in well under a
    // millisecond, durable writes in a few ms, large lists in 100s of ms.
    Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
        0.0005, 2.0, 14,
    ))
}

impl ApiMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let sub = registry.sub_registry_with_prefix("hami_apiserver");
        let requests = Family::<RequestLabels, Counter>::default();
        sub.register(
            "requests",
            "API requests by verb, resource and HTTP code",
            requests.clone(),
        );
        let latency = Family::<VerbLabels, Histogram>::new_with_constructor(
            latency_histogram as fn() -> Histogram,
        );
        sub.register_with_unit(
            "request_duration",
            "Time to answer a request (watches: time to start streaming)",
            prometheus_client::registry::Unit::Seconds,
            latency.clone(),
        );
        let open_watches = Gauge::default();
        sub.register(
            "open_watches",
            "Watch streams currently open",
            open_watches.clone(),
        );
        let store_revision = Gauge::<u64, AtomicU64>::default();
        sub.register(
            "store_revision",
            "The store's current global revision",
            store_revision.clone(),
        );
        Self {
            requests,
            latency,
            open_watches,
            store_revision,
        }
    }
}

/// Decrements the open-watch gauge when a watch stream ends.
pub struct WatchGuard(Gauge);

impl WatchGuard {
    pub fn new(gauge: &Gauge) -> Self {
        gauge.inc();
        Self(gauge.clone())
    }
}

impl Drop for WatchGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}
