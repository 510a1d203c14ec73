//! The estimator's metrics (prefix `hami_estimator_`).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// gRPC method (fixed set).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MethodLabels {
    /// `max_available_replicas`, `get_unschedulable_replicas` or `max_available_replicas_batch`.
    pub method: &'static str,
}

/// gRPC method and outcome (fixed sets).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// As in [`MethodLabels`].
    pub method: &'static str,
    /// `ok` or `invalid_argument`.
    pub code: &'static str,
}

/// Estimator metrics.
#[derive(Debug, Clone)]
pub struct EstimatorMetrics {
    /// Requests by method and outcome.
    pub requests: Family<RequestLabels, Counter>,
    /// Request latency by method, seconds.
    pub latency: Family<MethodLabels, Histogram>,
    /// Nodes in the snapshot.
    pub nodes: Gauge,
    /// Pods in the snapshot.
    pub pods: Gauge,
    /// Capacity classes in the index.
    pub classes: Gauge,
}

impl EstimatorMetrics {
    /// Registers the metrics under `hami_estimator_`.
    pub fn register(registry: &mut Registry) -> Self {
        let r = registry.sub_registry_with_prefix("hami_estimator");
        let requests = Family::<RequestLabels, Counter>::default();
        r.register(
            "requests",
            "gRPC requests by method and outcome",
            requests.clone(),
        );
        // An indexed query takes microseconds; a cold one over a large
        // cluster up to milliseconds. Buckets from 5 µs doubling to ~80 ms
        // cover both with resolution where the answers usually fall.
        let latency = Family::<MethodLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
                5e-6, 2.0, 15,
            ))
        });
        r.register(
            "request_duration_seconds",
            "gRPC request latency",
            latency.clone(),
        );
        let nodes = Gauge::default();
        r.register("snapshot_nodes", "Nodes in the snapshot", nodes.clone());
        let pods = Gauge::default();
        r.register("snapshot_pods", "Pods in the snapshot", pods.clone());
        let classes = Gauge::default();
        r.register(
            "index_classes",
            "Capacity classes in the index",
            classes.clone(),
        );
        Self {
            requests,
            latency,
            nodes,
            pods,
            classes,
        }
    }

    /// Records one request.
    pub fn observe(&self, method: &'static str, ok: bool, seconds: f64) {
        let code = if ok { "ok" } else { "invalid_argument" };
        self.requests
            .get_or_create(&RequestLabels { method, code })
            .inc();
        self.latency
            .get_or_create(&MethodLabels { method })
            .observe(seconds);
    }

    /// Updates the snapshot gauges.
    pub fn set_snapshot(&self, s: crate::SnapshotStats) {
        self.nodes.set(i64::try_from(s.nodes).unwrap_or(i64::MAX));
        self.pods.set(i64::try_from(s.pods).unwrap_or(i64::MAX));
        self.classes
            .set(i64::try_from(s.classes).unwrap_or(i64::MAX));
    }
}
