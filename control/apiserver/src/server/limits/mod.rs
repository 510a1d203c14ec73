//! Limits on hostile or broken clients, per user: a token-bucket request
//! rate, requests in flight, open watches; and, for every request, the size
//! of its headers (431) and of its body (413, [`ServerConfig::body_limit`],
//! enforced by [`dispatch::read_body`](super::dispatch::read_body), through
//! which every route that reads a body goes).
//!
//! Two middleware layers around the router ([`super::dispatch::router`]):
//!
//! * [`headers`], outermost: a request whose request line and headers pass
//!   [`Limits::max_header_bytes`] is answered 431 before anything else reads
//!   them (the connection's own buffer is the first bound: see
//!   [`Limits::http1_max_buf_size`]).
//! * [`filter`], inside authentication and impersonation (the auth filter's
//!   `next`), so the user is known, and outside authorization, as
//!   kube-apiserver's APF (a user flooding forbidden requests is limited
//!   like any other): the request's user ([`crate::server::auth::request_user`],
//!   `system:unsecured` when authentication is off, `system:anonymous` for
//!   every anonymous request) is admitted by its bucket ([`buckets`]) or
//!   refused with kube's 429: `Retry-After` in whole seconds (at least 1) and
//!   a `Status` with `reason: TooManyRequests`, kube-apiserver's message and
//!   `details.retryAfterSeconds`. An admitted request holds its slot (in
//!   flight, or a watch) until its response body has been sent or dropped,
//!   so a client that stops reading holds only its own user's slots.
//!
//! The health probes (`/healthz`, `/livez`, `/readyz`) skip the per-user
//! limits: they read no store, and a flood of anonymous requests must not
//! fail the kubelet's probes (kube's APF exempts them too). Nobody else is
//! exempt — not loopback, not `system:masters`: the defaults are set high
//! enough for hami's own clients instead (see [`Limits`]). Refusals are
//! counted in `hami_apiserver_rejected_requests_total{reason}` and
//! `hami_apiserver_requests_total{code="429"|"431"}`; what is held, in
//! `hami_apiserver_inflight_requests{kind}`.
//!
//! Nothing here holds a lock across an await: the buckets' mutex is taken for
//! the arithmetic of one admission or release.
//!
//! [`ServerConfig::body_limit`]: super::ServerConfig::body_limit

pub mod buckets;

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::{Body, HttpBody};
use axum::extract::{Request, State as AxumState};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;
use futures::Stream;
use serde_json::json;

use super::State;
use super::auth::{self, request_info};
use super::metrics::{
    ApiMetrics, InflightLabels, RejectLabels, RequestLabels, request_labels, user_kind,
};
use super::rbac::{Attributes, UserInfo};
use buckets::{Buckets, Class, Refusal, Settings};

/// kube-apiserver's text for every 429 of its in-flight and APF filters.
pub const TOO_MANY_REQUESTS: &str = "Too many requests, please try again later.";

/// The per-user limits ([`super::ServerConfig::limits`]). A limit of 0
/// turns it off. The defaults are generous: one user may send 1,000
/// requests per second after a burst of 4,000, with 400 in flight and 1,000
/// watches; hami's own clients stay well below (its controllers read and
/// write the store directly; a Push or simulated agent, one user
/// `system:hami:control` or `system:unsecured` per member, writes at most
/// 16 to 64 at once and a burst of a few thousand objects), and a client
/// past them is broken or hostile. A control plane shared by teams should
/// set lower numbers (say 100 per second, burst 200).
#[derive(Clone, Debug, PartialEq)]
pub struct Limits {
    /// Sustained requests per second per user (watches count when they
    /// start); the user's token bucket refills at this rate.
    pub user_requests_per_second: f64,
    /// Requests a user may send at once before the rate applies (the size
    /// of its bucket).
    pub user_burst: u32,
    /// Requests other than watches a user may have in flight, from
    /// admission until the response has been sent (kube-apiserver's
    /// `--max-requests-inflight` is 400 for everyone together).
    pub user_max_in_flight: u32,
    /// Watch streams a user may hold open.
    pub user_max_watches: u32,
    /// Largest request line plus headers (name, value and 4 bytes per
    /// header) the router accepts; past it, 431 Request Header Fields Too
    /// Large. Connections read headers into a buffer of
    /// [`Limits::http1_max_buf_size`], which whoever builds them should set.
    pub max_header_bytes: usize,
    /// Users whose accounting is kept at once; idle users are forgotten
    /// (see [`buckets`]), so this bounds memory, not who may connect.
    pub max_users: usize,
    /// A watch whose client has left its buffer (256 events) full for this
    /// long is closed; the client resumes from its last resourceVersion, as
    /// after any watch kube-apiserver ends. Zero: never (the watch waits
    /// for its client until its own timeout).
    pub watch_stall_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            user_requests_per_second: 1_000.0,
            user_burst: 4_000,
            user_max_in_flight: 400,
            user_max_watches: 1_000,
            // Below hyper's default read buffer (~400 KiB), so the router's
            // 431 (with a Status body, counted) answers first; a bearer
            // token or a certificate-bound header is a few KiB.
            max_header_bytes: 256 * 1024,
            max_users: 10_000,
            watch_stall_timeout: Duration::from_secs(10),
        }
    }
}

impl Limits {
    /// The value for hyper's `http1::Builder::max_buf_size`: room for
    /// [`Limits::max_header_bytes`] and a little more, so that the router's
    /// 431 answers with a Status; never below hyper's minimum of 8 KiB (it
    /// panics below it). Without a header limit: hyper's default.
    pub fn http1_max_buf_size(&self) -> usize {
        const HYPER_MIN: usize = 8 * 1024;
        const HYPER_DEFAULT: usize = 8 * 1024 + 4096 * 100;
        if self.max_header_bytes == 0 {
            return HYPER_DEFAULT;
        }
        self.max_header_bytes
            .saturating_add(HYPER_MIN)
            .max(HYPER_MIN)
    }

    fn settings(&self) -> Settings {
        Settings {
            rate: self.user_requests_per_second,
            burst: f64::from(self.user_burst),
            max_in_flight: self.user_max_in_flight,
            max_watches: self.user_max_watches,
            max_users: self.max_users,
            // Often enough that idle users do not pile up, rarely enough
            // that the O(users) sweep costs nothing.
            idle_sweep: Duration::from_secs(60),
        }
    }
}

/// What an admitted request holds, and its `kind` label.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Held {
    ReadOnly,
    Mutating,
    Watch,
}

impl Held {
    fn of(method: &Method, attrs: &Attributes) -> Self {
        let verb = match attrs {
            Attributes::Resource { verb, .. } | Attributes::NonResource { verb, .. } => verb,
        };
        if verb == "watch" {
            Self::Watch
        } else if matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) {
            Self::ReadOnly
        } else {
            Self::Mutating
        }
    }

    fn class(self) -> Class {
        match self {
            Self::Watch => Class::Watch,
            Self::ReadOnly | Self::Mutating => Class::Request,
        }
    }

    fn label(self) -> &'static str {
        match self {
            Self::ReadOnly => "readonly",
            Self::Mutating => "mutating",
            Self::Watch => "watch",
        }
    }
}

/// The limits at run time: every user's accounting behind one mutex.
pub struct Limiter {
    buckets: parking_lot::Mutex<Buckets>,
    max_header_bytes: usize,
    metrics: ApiMetrics,
}

impl Limiter {
    pub fn new(limits: &Limits, metrics: ApiMetrics) -> Self {
        Self {
            buckets: parking_lot::Mutex::new(Buckets::new(limits.settings(), Instant::now())),
            max_header_bytes: limits.max_header_bytes,
            metrics,
        }
    }

    /// Admits a request of `user`, or says why not (and counts it).
    pub fn admit(self: &Arc<Self>, user: &str, held: Held) -> Result<Permit, Refusal> {
        let admitted = self
            .buckets
            .lock()
            .admit(user, held.class(), Instant::now());
        match admitted {
            Ok(()) => {
                self.metrics
                    .inflight_requests
                    .get_or_create(&InflightLabels { kind: held.label() })
                    .inc();
                Ok(Permit {
                    limiter: self.clone(),
                    user: user.to_owned(),
                    held,
                })
            }
            Err(refusal) => {
                self.metrics
                    .rejected_requests
                    .get_or_create(&RejectLabels {
                        reason: refusal.reason(),
                    })
                    .inc();
                Err(refusal)
            }
        }
    }

    /// Users whose accounting is kept now.
    pub fn tracked_users(&self) -> usize {
        self.buckets.lock().users()
    }

    /// (requests in flight, open watches) of `user`.
    pub fn held(&self, user: &str) -> (u32, u32) {
        self.buckets.lock().held(user)
    }
}

/// A slot an admitted request holds; released when dropped.
pub struct Permit {
    limiter: Arc<Limiter>,
    user: String,
    held: Held,
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.limiter
            .buckets
            .lock()
            .release(&self.user, self.held.class());
        self.limiter
            .metrics
            .inflight_requests
            .get_or_create(&InflightLabels {
                kind: self.held.label(),
            })
            .dec();
    }
}

/// What the two layers need.
#[derive(Clone)]
pub struct Gate {
    pub state: Arc<State>,
    pub limiter: Arc<Limiter>,
}

/// The health probes, which skip the per-user limits.
fn exempt(method: &Method, path: &str) -> bool {
    matches!(*method, Method::GET | Method::HEAD)
        && ["/healthz", "/livez", "/readyz"].iter().any(|p| {
            path == *p
                || path
                    .strip_prefix(p)
                    .is_some_and(|rest| rest.starts_with('/'))
        })
}

/// Counts a refused request in `hami_apiserver_requests_total`.
fn count(gate: &Gate, attrs: &Attributes, code: u16, user: Option<&UserInfo>) {
    let (verb, resource) = request_labels(&gate.state, attrs);
    gate.state
        .metrics
        .requests
        .get_or_create(&RequestLabels {
            verb,
            resource,
            code,
            user_kind: user.map(user_kind),
        })
        .inc();
}

/// kube's 429 (`errors.NewTooManyRequests`) with `Retry-After`.
pub fn too_many_requests(refusal: Refusal) -> Response {
    let seconds = refusal.retry_after_secs();
    let status = json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": TOO_MANY_REQUESTS,
        "reason": "TooManyRequests",
        "details": {"retryAfterSeconds": seconds},
        "code": 429,
    });
    let mut response = super::dispatch::json_response(StatusCode::TOO_MANY_REQUESTS, &status);
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    response
}

/// The per-user limits (see the module's documentation).
pub async fn filter(AxumState(gate): AxumState<Gate>, request: Request, next: Next) -> Response {
    if exempt(request.method(), request.uri().path()) {
        return next.run(request).await;
    }
    let attrs = request_info::attributes(request.method(), request.uri());
    let held = Held::of(request.method(), &attrs);
    let user = request.extensions().get::<UserInfo>();
    let name = user.map_or(auth::UNSECURED, |u| u.name.as_str());
    let permit = match gate.limiter.admit(name, held) {
        Ok(permit) => permit,
        Err(refusal) => {
            tracing::debug!(
                user = name,
                reason = refusal.reason(),
                path = request.uri().path(),
                "request refused by the per-user limits"
            );
            count(&gate, &attrs, 429, user);
            return too_many_requests(refusal);
        }
    };
    hold_until_sent(next.run(request).await, permit)
}

/// Size of the request line and headers as they came on the wire (HTTP/1).
fn header_bytes(request: &Request) -> usize {
    let target = request
        .uri()
        .path_and_query()
        .map_or(1, |p| p.as_str().len());
    // "METHOD TARGET HTTP/1.1\r\n", then "name: value\r\n" per header.
    let line = request.method().as_str().len() + 1 + target + 11;
    request.headers().iter().fold(line, |n, (name, value)| {
        n + name.as_str().len() + value.len() + 4
    })
}

/// The header size limit (see the module's documentation).
pub async fn headers(AxumState(gate): AxumState<Gate>, request: Request, next: Next) -> Response {
    let limit = gate.limiter.max_header_bytes;
    let size = header_bytes(&request);
    if limit == 0 || size <= limit {
        return next.run(request).await;
    }
    gate.limiter
        .metrics
        .rejected_requests
        .get_or_create(&RejectLabels {
            reason: "header_size",
        })
        .inc();
    let attrs = request_info::attributes(request.method(), request.uri());
    count(&gate, &attrs, 431, None);
    tracing::debug!(size, limit, "request headers too large");
    let status = json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": format!("request header fields too large: {size} bytes, the limit is {limit}"),
        "code": 431,
    });
    super::dispatch::json_response(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE, &status)
}

/// Keeps `permit` until the response body has been sent (or dropped, when
/// the client goes away). A body of known length keeps its Content-Length.
fn hold_until_sent(response: Response, permit: Permit) -> Response {
    let (mut parts, body) = response.into_parts();
    let exact = HttpBody::size_hint(&body).exact();
    if exact == Some(0) {
        return Response::from_parts(parts, body);
    }
    if let Some(length) = exact
        && !parts.headers.contains_key(header::CONTENT_LENGTH)
    {
        parts
            .headers
            .insert(header::CONTENT_LENGTH, HeaderValue::from(length));
    }
    let stream = Holding {
        inner: body.into_data_stream(),
        _permit: permit,
    };
    Response::from_parts(parts, Body::from_stream(stream))
}

/// A body stream that holds a [`Permit`] while it lives.
struct Holding<S> {
    inner: S,
    _permit: Permit,
}

impl<S: Stream + Unpin> Stream for Holding<S> {
    type Item = S::Item;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<S::Item>> {
        Pin::new(&mut self.inner).poll_next(cx)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn probes_and_only_probes_are_exempt() {
        assert!(exempt(&Method::GET, "/healthz"));
        assert!(exempt(&Method::HEAD, "/readyz"));
        assert!(exempt(&Method::GET, "/livez/ping"));
        assert!(!exempt(&Method::POST, "/healthz"));
        assert!(!exempt(&Method::GET, "/healthzz"));
        assert!(!exempt(&Method::GET, "/metrics"));
        assert!(!exempt(&Method::GET, "/api/v1/pods"));
    }

    #[test]
    fn watches_are_told_from_requests() {
        let held = |method: Method, uri: &str| {
            let uri: axum::http::Uri = uri.parse().unwrap();
            Held::of(&method, &request_info::attributes(&method, &uri))
        };
        assert_eq!(held(Method::GET, "/api/v1/pods?watch=1"), Held::Watch);
        assert_eq!(
            held(Method::GET, "/api/v1/namespaces/a/pods/p?watch=true"),
            Held::Watch
        );
        assert_eq!(held(Method::GET, "/api/v1/pods"), Held::ReadOnly);
        assert_eq!(held(Method::GET, "/metrics"), Held::ReadOnly);
        assert_eq!(
            held(Method::POST, "/api/v1/namespaces/a/pods"),
            Held::Mutating
        );
        assert_eq!(
            held(Method::PATCH, "/api/v1/namespaces/a/pods/p"),
            Held::Mutating
        );
    }

    #[test]
    fn the_429_is_kubes_status() {
        let response = too_many_requests(Refusal::Rate {
            retry_after_secs: 3,
        });
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(response.headers()[header::RETRY_AFTER], "3");
        let response = too_many_requests(Refusal::InFlight);
        assert_eq!(response.headers()[header::RETRY_AFTER], "1");
    }

    #[test]
    fn header_bytes_count_the_request_line_and_every_header() {
        let request = axum::http::Request::builder()
            .method(Method::GET)
            .uri("/api/v1/pods?limit=1")
            .header("authorization", "Bearer abc")
            .header("x-big", "y".repeat(1000))
            .body(Body::empty())
            .unwrap();
        let line = "GET /api/v1/pods?limit=1 HTTP/1.1\r\n".len();
        let headers = "authorization: Bearer abc\r\n".len() + "x-big: \r\n".len() + 1000;
        assert_eq!(header_bytes(&request), line + headers);
    }

    #[test]
    fn the_connection_buffer_fits_the_header_limit() {
        let limits = Limits::default();
        assert!(limits.http1_max_buf_size() > limits.max_header_bytes);
        let tiny = Limits {
            max_header_bytes: 10,
            ..Limits::default()
        };
        assert!(tiny.http1_max_buf_size() >= 8192);
        let off = Limits {
            max_header_bytes: 0,
            ..Limits::default()
        };
        assert_eq!(off.http1_max_buf_size(), 417_792);
    }
}
