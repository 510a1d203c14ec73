//! /metrics, /healthz and /readyz.

use std::sync::Arc;

use axum::Router;
use prometheus_client::registry::Registry;

/// The router: /metrics (the snapshot gauges are read from the tracked
/// snapshots on scrape), /healthz, /readyz.
pub fn router(registry: Arc<Registry>) -> Router {
    hami_telemetry::router(registry, hami_telemetry::always_ready)
}
