//! `/metrics`, `/healthz` and `/readyz` over HTTP. Ready means registered with
//! kubelet; healthy means the process answers.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::response::Response;
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

/// The router: /metrics samples the devices, then encodes; /readyz
/// follows `ready`.
pub fn router(state: Arc<HttpState>) -> Router {
    let ready = Arc::clone(&state.ready);
    Router::new()
        .route("/metrics", get(metrics))
        .merge(hami_telemetry::probes(move || {
            if ready.load(Ordering::SeqCst) {
                Ok("registered with kubelet")
            } else {
                Err("not registered with kubelet")
            }
        }))
        .with_state(state)
}

async fn metrics(State(state): State<Arc<HttpState>>) -> Response {
    // Sample usage first, outside the registry lock: NVML calls may take a while.
    let usage = state.backend.usage();
    let gpus = state.gpus.borrow().clone();
    let registry = state.registry.lock();
    state.metrics.refresh(&gpus, &usage, &state.cfg);
    hami_telemetry::metrics_response(&registry)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::backend::fake::FakeBackend;
    use axum::body::Body;
    use axum::http::Request;
    use axum::http::StatusCode;
    use tower::ServiceExt;

    async fn get(app: &Router, path: &str) -> (StatusCode, String) {
        let resp = app
            .clone()
            .oneshot(Request::get(path).body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = resp.status();
        let body = axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .unwrap();
        (status, String::from_utf8(body.to_vec()).unwrap())
    }

    #[tokio::test]
    async fn probes_follow_registration_and_metrics_show_devices() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("gpus.yaml");
        std::fs::write(
            &file,
            "- {uuid: GPU-a, model: T4, memoryMiB: 100, memoryUsedMiB: 25, utilization: 40}\n",
        )
        .unwrap();
        let backend: Arc<dyn Backend> = Arc::new(FakeBackend::open(&file).unwrap());
        let (_tx, gpus) = watch::channel(backend.list().unwrap());
        let mut registry = Registry::default();
        let metrics = Arc::new(Metrics::register(&mut registry));
        let ready = Arc::new(AtomicBool::new(false));
        let app = router(Arc::new(HttpState {
            registry: Mutex::new(registry),
            metrics,
            backend,
            gpus,
            cfg: SliceConfig::default(),
            ready: Arc::clone(&ready),
        }));
        assert_eq!(get(&app, "/healthz").await.0, StatusCode::OK);
        assert_eq!(
            get(&app, "/readyz").await.0,
            StatusCode::SERVICE_UNAVAILABLE
        );
        ready.store(true, Ordering::SeqCst);
        assert_eq!(get(&app, "/readyz").await.0, StatusCode::OK);
        let (status, text) = get(&app, "/metrics").await;
        assert_eq!(status, StatusCode::OK);
        assert!(
            text.contains("hami_device_plugin_device_memory_used_bytes{uuid=\"GPU-a\"} 26214400"),
            "{text}"
        );
        assert!(
            text.contains("hami_device_plugin_device_utilization_ratio{uuid=\"GPU-a\"} 0.4"),
            "{text}"
        );
        assert!(
            text.contains("hami_device_plugin_device_healthy{uuid=\"GPU-a\"} 1"),
            "{text}"
        );
    }
}
