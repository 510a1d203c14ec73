//! /metrics, /healthz and /readyz of the `hami-agent` binary.

use std::sync::Arc;

use axum::Router;
use prometheus_client::registry::Registry;

use super::Health;

/// The router: metrics from `registry`, readiness from `health`.
pub fn router(registry: Arc<Registry>, health: Health) -> Router {
    hami_telemetry::router(registry, move || {
        if health.ready() {
            Ok("ok")
        } else {
            Err("not ready: registering or first lists of Nodes, Pods and Works not in yet")
        }
    })
}
