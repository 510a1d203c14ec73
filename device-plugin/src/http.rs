//! `/metrics`, `/healthz` and `/readyz` over HTTP. Ready means registered with
//! kubelet; healthy means the process answers.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use parking_lot::Mutex;
use prometheus_client::registry::Registry;
use tokio::sync::watch;

use crate::backend::{Backend, GpuDevice};
use crate::metrics::Metrics;
use crate::slicing::SliceConfig;

/// What the HTTP handlers read.
pub struct HttpState {
    pub registry: Mutex<Registry>,
    pub metrics: Arc<Metrics>,
    pub backend: Arc<dyn Backend>,
    pub gpus: watch::Receiver<Vec<GpuDevice>>,
    pub cfg: SliceConfig,
    pub ready: Arc<AtomicBool>,
}

pub fn router(state: Arc<HttpState>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .with_state(state)
}

async fn metrics(State(state): State<Arc<HttpState>>) -> impl IntoResponse {
    // Sample usage first, outside the registry lock: NVML calls may take a while.
    let usage = state.backend.usage();
    let gpus = state.gpus.borrow().clone();
    let mut body = String::new();
    let encoded = {
        let registry = state.registry.lock();
        state.metrics.refresh(&gpus, &usage, &state.cfg);
        prometheus_client::encoding::text::encode(&mut body, &registry)
    };
    match encoded {
        Ok(()) => (
            StatusCode::OK,
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            body,
        )
            .into_response(),
        Err(err) => (StatusCode::INTERNAL_SERVER_ERROR, err.to_string()).into_response(),
    }
}

async fn readyz(State(state): State<Arc<HttpState>>) -> impl IntoResponse {
    if state.ready.load(Ordering::SeqCst) {
        (StatusCode::OK, "registered with kubelet")
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "not registered with kubelet",
        )
    }
}
