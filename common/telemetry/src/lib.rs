//! The wiring every hami binary shares, written once:
//!
//! * [`init_tracing`]: a `tracing` subscriber filtered by `RUST_LOG`
//!   (default `info`), as text or JSON lines, from the binary's log flag.
//! * [`router`]: `/metrics` (a prometheus-client [`Registry`] as OpenMetrics
//!   text when the scraper asks for it, as Prometheus does, else in the
//!   Prometheus text format 0.0.4 that `promtool check metrics` and older
//!   scrapers read), `/healthz` and `/readyz` (from a readiness check).
//!   Binaries that refresh gauges on scrape serve their own `/metrics` with
//!   [`negotiated_metrics_response`] (or [`metrics_response`]) and merge
//!   [`probes`].

mod text;

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use prometheus_client::registry::Registry;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

/// Content type of the OpenMetrics text format.
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

pub use text::{TEXT_CONTENT_TYPE, openmetrics_to_text};

/// Installs the process's subscriber, writing to stdout: JSON lines when
/// `json`, else text. A subscriber already installed is left in place.
pub fn init_tracing(json: bool) {
    init_tracing_with_writer(json, std::io::stdout);
}

/// [`init_tracing`] writing to `writer` (e.g. `std::io::stderr`).
pub fn init_tracing_with_writer<W>(json: bool, writer: W)
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer);
    let _ = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}

/// What `/readyz` answers: `Ok(body)` is 200, `Err(body)` is 503.
pub type Readiness = Result<&'static str, &'static str>;

/// A process that is ready as soon as it serves.
pub fn always_ready() -> Readiness {
    Ok("ok")
}

/// `registry` in the Prometheus text format (0.0.4): 200 with the text, or
/// 500 when encoding fails. For handlers that do not see the request's
/// `Accept` header.
pub fn metrics_response(registry: &Registry) -> Response {
    encoded(registry, false)
}

/// `registry` as OpenMetrics text when the request's `Accept` names
/// `application/openmetrics-text` (Prometheus asks for it), else in the
/// Prometheus text format (0.0.4).
pub fn negotiated_metrics_response(registry: &Registry, headers: &HeaderMap) -> Response {
    encoded(registry, wants_openmetrics(headers))
}

/// Whether `Accept` asks for OpenMetrics.
pub fn wants_openmetrics(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|media| {
            let mut parts = media.split(';').map(str::trim);
            let openmetrics = parts
                .next()
                .is_some_and(|t| t.eq_ignore_ascii_case("application/openmetrics-text"));
            let refused = parts.any(|p| {
                p.strip_prefix("q=")
                    .and_then(|q| q.parse::<f64>().ok())
                    .is_some_and(|q| q <= 0.0)
            });
            openmetrics && !refused
        })
}

fn encoded(registry: &Registry, openmetrics: bool) -> Response {
    let mut body = String::new();
    if prometheus_client::encoding::text::encode(&mut body, registry).is_err() {
        return (StatusCode::INTERNAL_SERVER_ERROR, "encoding failed").into_response();
    }
    let (content_type, body) = if openmetrics {
        (OPENMETRICS_CONTENT_TYPE, body)
    } else {
        (TEXT_CONTENT_TYPE, openmetrics_to_text(&body))
    };
    (StatusCode::OK, [(header::CONTENT_TYPE, content_type)], body).into_response()
}

/// `/healthz` (200 `ok` while the process answers) and `/readyz` (from
/// `ready`), for any router state.
pub fn probes<S, F>(ready: F) -> Router<S>
where
    S: Clone + Send + Sync + 'static,
    F: Fn() -> Readiness + Clone + Send + Sync + 'static,
{
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/readyz",
            get(move || async move {
                match ready() {
                    Ok(body) => (StatusCode::OK, body),
                    Err(body) => (StatusCode::SERVICE_UNAVAILABLE, body),
                }
            }),
        )
}

/// `/metrics` from `registry` plus [`probes`].
pub fn router<F>(registry: Arc<Registry>, ready: F) -> Router
where
    F: Fn() -> Readiness + Clone + Send + Sync + 'static,
{
    Router::new()
        .route(
            "/metrics",
            get(
                |State(r): State<Arc<Registry>>, headers: HeaderMap| async move {
                    negotiated_metrics_response(&r, &headers)
                },
            ),
        )
        .merge(probes(ready))
        .with_state(registry)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::sync::atomic::{AtomicBool, Ordering};

    use axum::body::Body;
    use axum::http::Request;
    use prometheus_client::metrics::counter::Counter;
    use tower::ServiceExt;

    use super::*;

    async fn get(app: &Router, path: &str) -> (StatusCode, Option<String>, String) {
        get_accepting(app, path, "*/*").await
    }

    async fn get_accepting(
        app: &Router,
        path: &str,
        accept: &str,
    ) -> (StatusCode, Option<String>, String) {
        let resp = app
            .clone()
            .oneshot(
                Request::get(path)
                    .header(header::ACCEPT, accept)
                    .body(Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        let status = resp.status();
        let ctype = resp
            .headers()
            .get(header::CONTENT_TYPE)
            .map(|v| v.to_str().unwrap().to_string());
        let body = axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .unwrap();
        (status, ctype, String::from_utf8(body.to_vec()).unwrap())
    }

    #[tokio::test]
    async fn serves_metrics_and_probes_that_follow_readiness() {
        let mut registry = Registry::default();
        let counter = Counter::<u64>::default();
        registry.register("hami_test_things", "Things", counter.clone());
        counter.inc();
        let ready = Arc::new(AtomicBool::new(false));
        let flag = ready.clone();
        let app = router(Arc::new(registry), move || {
            if flag.load(Ordering::SeqCst) {
                Ok("ok")
            } else {
                Err("not ready: warming up")
            }
        });

        // Prometheus asks for OpenMetrics; a plain GET gets the text format.
        let prometheus = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
        let (status, ctype, text) = get_accepting(&app, "/metrics", prometheus).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(ctype.as_deref(), Some(OPENMETRICS_CONTENT_TYPE));
        assert!(text.contains("# TYPE hami_test_things counter"), "{text}");
        assert!(text.contains("hami_test_things_total 1"), "{text}");
        assert!(text.ends_with("# EOF\n"), "{text}");
        let (status, ctype, text) = get(&app, "/metrics").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(ctype.as_deref(), Some(TEXT_CONTENT_TYPE));
        assert!(
            text.contains("# TYPE hami_test_things_total counter"),
            "{text}"
        );
        assert!(text.contains("hami_test_things_total 1"), "{text}");
        assert!(!text.contains("# EOF"), "{text}");
        let refused = "application/openmetrics-text;q=0,text/plain";
        let (_, ctype, _) = get_accepting(&app, "/metrics", refused).await;
        assert_eq!(ctype.as_deref(), Some(TEXT_CONTENT_TYPE));

        assert_eq!(get(&app, "/healthz").await.0, StatusCode::OK);
        let (status, _, body) = get(&app, "/readyz").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(body, "not ready: warming up");
        ready.store(true, Ordering::SeqCst);
        let (status, _, body) = get(&app, "/readyz").await;
        assert_eq!((status, body.as_str()), (StatusCode::OK, "ok"));
        assert_eq!(get(&app, "/nope").await.0, StatusCode::NOT_FOUND);
    }
}
