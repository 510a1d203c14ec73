//! /metrics, /healthz and /readyz.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::response::Response;
use axum::routing::get;
use parking_lot::Mutex;
use prometheus_client::registry::Registry;

use super::metrics::EstimatorMetrics;
use crate::snapshot::Snapshot;

/// What the HTTP handlers read.
#[derive(Clone)]
pub struct HttpState {
    /// The metrics registry.
    pub registry: Arc<Registry>,
    /// Metrics (snapshot gauges are refreshed on scrape).
    pub metrics: Arc<EstimatorMetrics>,
    /// The snapshot.
    pub snapshot: Arc<Mutex<Snapshot>>,
}

/// The router: /metrics refreshes the snapshot gauges, then encodes.
pub fn router(state: HttpState) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .merge(hami_telemetry::probes(hami_telemetry::always_ready))
        .with_state(state)
}

async fn metrics(State(s): State<HttpState>) -> Response {
    let stats = s.snapshot.lock().stats();
    s.metrics.set_snapshot(stats);
    hami_telemetry::metrics_response(&s.registry)
}
