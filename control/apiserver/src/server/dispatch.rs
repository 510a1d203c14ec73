//! The router: health, metrics, version, OpenAPI, and one dispatcher for
//! every path under `/api` and `/apis` that maps method and path to a verb.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Query as AxumQuery, Request, State as AxumState};
use axum::http::{Extensions, HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures::StreamExt;
use serde_json::Value;

use super::State;
use super::auth::{self, Auth, reviews};
use super::discovery;
use super::limits::{self, Limiter};
use super::metrics::{RequestLabels, VerbLabels, user_kind};
use super::rbac::UserInfo;
use super::request::{self, ApiPath, Query, Representation, ResourcePath};
use super::status::ApiError;
use super::{csr, patching, read, scale, watch, write};

/// Everything a verb handler gets from the request.
pub struct Ctx {
    pub path: ResourcePath,
    pub query: Query,
    pub repr: Representation,
    pub headers: HeaderMap,
}

impl Ctx {
    pub fn ns(&self) -> Option<&str> {
        self.path.namespace.as_deref()
    }

    /// The field manager of a write: `fieldManager`, else the client's
    /// program name from User-Agent (as Kubernetes derives it).
    pub fn manager(&self) -> String {
        if let Some(m) = self
            .query
            .field_manager
            .as_deref()
            .filter(|m| !m.is_empty())
        {
            return m.to_owned();
        }
        self.headers
            .get(axum::http::header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .and_then(|ua| ua.split('/').next())
            .map(|p| p.trim().chars().take(128).collect::<String>())
            .filter(|p| !p.is_empty())
            .unwrap_or_else(|| "unknown".to_owned())
    }
}

tokio::task_local! {
    /// The encoding the request being served asked for (`Accept`).
    static ENCODING: request::Encoding;
}

/// A response with the given code, in the encoding the request asked for:
/// Kubernetes protobuf when `Accept` puts it first and the object's kind has
/// a message; otherwise JSON, or 406 when the client takes no JSON (as
/// kube-apiserver answers for kinds without protobuf).
pub fn json_response(code: StatusCode, value: &Value) -> Response {
    let encoding = ENCODING.try_with(|e| *e).unwrap_or(request::Encoding::Json);
    if let request::Encoding::Protobuf { json_too } = encoding {
        match super::protobuf::encode(value) {
            Ok(pb) => {
                let mut response = (code, pb).into_response();
                response.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static(super::protobuf::MEDIA_TYPE),
                );
                return response;
            }
            Err(_) if json_too => {}
            Err(e) => {
                // The 406 Status itself goes out as JSON (never round again).
                let refusal = ApiError::NotAcceptable {
                    message: format!(
                        "only the following media types are accepted: application/json, application/yaml ({e})"
                    ),
                };
                return plain_json(StatusCode::NOT_ACCEPTABLE, &refusal.status());
            }
        }
    }
    plain_json(code, value)
}

fn plain_json(code: StatusCode, value: &Value) -> Response {
    let body = serde_json::to_vec(value).unwrap_or_default();
    let mut response = (code, body).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// Every route, behind (outermost first) the header size limit
/// ([`limits::headers`]), with `auth` authentication and impersonation
/// ([`auth::filter`], also for `/metrics` and the probes), the per-user
/// limits ([`limits::filter`]), which so see the authenticated user, and
/// authorization ([`auth::authorize`]): kube-apiserver's order, where APF
/// runs before authorization, so forbidden requests count too.
pub fn router(state: Arc<State>, auth: Option<Arc<Auth>>, limiter: Arc<Limiter>) -> Router {
    let gate = limits::Gate {
        state: state.clone(),
        limiter,
    };
    let router = Router::new()
        .route("/healthz", get(health))
        .route("/livez", get(health))
        .route("/readyz", get(ready))
        .route("/metrics", get(metrics))
        .route("/version", get(discovery::version))
        .fallback(dispatch)
        .with_state(state.clone());
    let auth_gate = auth.map(|auth| auth::filter::Gate { state, auth });
    let router = match &auth_gate {
        Some(auth_gate) => router.layer(axum::middleware::from_fn_with_state(
            auth_gate.clone(),
            auth::authorize,
        )),
        None => router,
    };
    let router = router.layer(axum::middleware::from_fn_with_state(
        gate.clone(),
        limits::filter,
    ));
    let router = match auth_gate {
        Some(auth_gate) => router.layer(axum::middleware::from_fn_with_state(
            auth_gate,
            auth::filter,
        )),
        None => router,
    };
    router.layer(axum::middleware::from_fn_with_state(gate, limits::headers))
}

async fn health() -> &'static str {
    "ok"
}

async fn ready(AxumState(state): AxumState<Arc<State>>, uri: Uri) -> Response {
    if *state.shutdown.borrow() {
        return (StatusCode::SERVICE_UNAVAILABLE, "shutting down").into_response();
    }
    let verbose = uri.query().is_some_and(|q| {
        q.split('&')
            .any(|p| p == "verbose" || p.starts_with("verbose="))
    });
    match state.readiness.report(verbose) {
        (true, body) => body.into_response(),
        (false, body) => (StatusCode::SERVICE_UNAVAILABLE, body).into_response(),
    }
}

/// OpenMetrics for Prometheus (which asks for it), else the Prometheus text
/// format (`promtool check metrics`, curl).
async fn metrics(AxumState(state): AxumState<Arc<State>>, headers: HeaderMap) -> Response {
    state
        .metrics
        .store_revision
        .set(state.store.current_revision());
    hami_telemetry::negotiated_metrics_response(&state.metric_registry, &headers)
}

async fn dispatch(AxumState(state): AxumState<Arc<State>>, request: Request) -> Response {
    let started = Instant::now();
    let (parts, body) = request.into_parts();
    let (method, uri, headers, extensions) =
        (parts.method, parts.uri, parts.headers, parts.extensions);
    // Set by the auth filter; absent when authentication is off.
    let kind = extensions.get::<UserInfo>().map(user_kind);
    let encoding = request::response_encoding(&headers);
    let (verb, resource, response) = ENCODING
        .scope(encoding, async {
            let (verb, resource, result) = csr::with_requester(
                &extensions,
                uri.path(),
                route(&state, method, &uri, headers, &extensions, body),
            )
            .await;
            (
                verb,
                resource,
                result.unwrap_or_else(IntoResponse::into_response),
            )
        })
        .await;
    state
        .metrics
        .requests
        .get_or_create(&RequestLabels {
            verb,
            resource,
            code: response.status().as_u16(),
            user_kind: kind,
        })
        .inc();
    state
        .metrics
        .latency
        .get_or_create(&VerbLabels { verb })
        .observe(started.elapsed().as_secs_f64());
    response
}

/// How much of a body past the limit is read (and thrown away) before the
/// 413 goes out, and for how long at most: a client still writing its body
/// then reads the 413 instead of a reset connection. Go's net/http, and so
/// kube-apiserver, read 256 KiB the same way.
const DRAIN_BYTES: usize = 256 * 1024;
const DRAIN_TIME: Duration = Duration::from_secs(2);

/// Reads the body within the size limit (413 beyond it). Every route that
/// reads a body reads it here.
pub async fn read_body(state: &State, headers: &HeaderMap, body: Body) -> Result<Bytes, ApiError> {
    let limit = state.config.body_limit;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    let mut stream = body.into_data_stream();
    if let Some(length) = declared.filter(|n| *n > limit) {
        if length - limit <= DRAIN_BYTES {
            drain(&mut stream, length).await;
        }
        return Err(ApiError::TooLarge { limit });
    }
    let mut bytes = Vec::with_capacity(declared.unwrap_or(0));
    while let Some(chunk) = stream.next().await {
        let chunk =
            chunk.map_err(|e| ApiError::bad_request(format!("reading the request body: {e}")))?;
        if bytes.len() + chunk.len() > limit {
            drain(&mut stream, DRAIN_BYTES).await;
            return Err(ApiError::TooLarge { limit });
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(Bytes::from(bytes))
}

/// Reads and drops up to `at_most` bytes of what is left of a body, for at
/// most [`DRAIN_TIME`].
async fn drain(stream: &mut axum::body::BodyDataStream, at_most: usize) {
    let _ = tokio::time::timeout(DRAIN_TIME, async {
        let mut read = 0;
        while read < at_most
            && let Some(Ok(chunk)) = stream.next().await
        {
            read += chunk.len();
        }
    })
    .await;
}

type Routed = (&'static str, String, Result<Response, ApiError>);

async fn route(
    state: &Arc<State>,
    method: Method,
    uri: &Uri,
    headers: HeaderMap,
    extensions: &Extensions,
    body: Body,
) -> Routed {
    let other = || "other".to_owned();
    if let Some(openapi) = discovery::openapi(state, uri.path(), uri.query()) {
        return ("discovery", other(), openapi);
    }
    // The access reviews: create-only, never stored.
    if let Some(target) = reviews::match_path(uri.path()) {
        let resource = format!("{}.{}", target.resource.plural, reviews::GROUP);
        if method != Method::POST {
            return ("other", resource, Err(method_not_allowed(&method)));
        }
        let result = reviews::serve(state, &target, extensions, &headers, body).await;
        return ("create", resource, result);
    }
    let path = match request::parse_path(&state.registry.load(), uri.path()) {
        Ok(Some(path)) => path,
        Ok(None) => {
            return (
                "other",
                other(),
                Err(ApiError::NotFound {
                    message: format!(
                        "the server could not find the requested resource ({})",
                        uri.path()
                    ),
                    target: Default::default(),
                }),
            );
        }
        Err(e) => return ("other", other(), Err(e)),
    };
    let resource = match &path {
        ApiPath::Resource(r) => r.kind.group_resource(),
        _ => other(),
    };
    let path = match path {
        ApiPath::Resource(r) => r,
        discovery_path => {
            if method != Method::GET {
                return ("discovery", resource, Err(method_not_allowed(&method)));
            }
            return (
                "discovery",
                resource,
                discovery::serve(state, &discovery_path),
            );
        }
    };
    let pairs = AxumQuery::<Vec<(String, String)>>::try_from_uri(uri)
        .map(|q| q.0)
        .map_err(|e| ApiError::bad_request(format!("invalid query: {e}")));
    let query = match pairs.and_then(|p| Query::parse(&p)) {
        Ok(q) => q,
        Err(e) => return ("other", resource, Err(e)),
    };
    // dryRun=All: the same handlers over a store that keeps nothing.
    let dry_state;
    let state = if query.dry_run && method != Method::GET {
        dry_state = Arc::new(state.dry_run());
        &dry_state
    } else {
        state
    };
    let ctx = Ctx {
        repr: request::representation(&headers),
        path,
        query,
        headers,
    };
    let sub = ctx.path.subresource.clone();
    // ServiceAccount tokens: create-only, never stored.
    if sub.as_deref() == Some("token")
        && auth::service_account::token_request::serves(&ctx.path.kind)
    {
        let result = match method {
            Method::POST => {
                auth::service_account::token_request::serve(state, &ctx, extensions, body).await
            }
            _ => Err(method_not_allowed(&method)),
        };
        return ("create", resource, result);
    }
    if let Some(sub) = &sub
        && !((sub == "status" && ctx.path.kind.status_subresource)
            || (sub == "scale" && ctx.path.kind.scale.is_some())
            || (sub == csr::APPROVAL && csr::is_csr(&ctx.path.kind)))
    {
        return (
            "other",
            resource,
            Err(ApiError::NotFound {
                message: format!(
                    "the server could not find the requested resource ({})",
                    uri.path()
                ),
                target: Default::default(),
            }),
        );
    }
    if sub.as_deref() == Some("scale") {
        let (verb, result) = match method {
            Method::GET => ("get", scale::get(state, &ctx)),
            Method::PUT => (
                "update",
                with_raw_body(state, &ctx, body, scale::update).await,
            ),
            Method::PATCH => (
                "patch",
                with_raw_body(state, &ctx, body, scale::patch).await,
            ),
            _ => ("other", Err(method_not_allowed(&method))),
        };
        return (verb, resource, result);
    }
    if sub.as_deref() == Some(csr::APPROVAL)
        && let Err(e) = csr::authorize_approval(state, &ctx, extensions, &method)
    {
        return ("update", resource, Err(e));
    }
    let has_name = ctx.path.name.is_some();
    let (verb, result) = match (&method, has_name) {
        (&Method::GET, true) if ctx.query.list.watch => ("watch", watch::watch_one(state, &ctx)),
        (&Method::GET, true) => ("get", read::get(state, &ctx)),
        (&Method::GET, false) if ctx.query.list.watch => ("watch", watch::watch(state, &ctx)),
        (&Method::GET, false) => ("list", read::list(state, &ctx)),
        (&Method::POST, false) => ("create", with_body(state, &ctx, body, write::create).await),
        (&Method::PUT, true) => ("update", with_body(state, &ctx, body, write::update).await),
        (&Method::PATCH, true) => (
            "patch",
            with_raw_body(state, &ctx, body, patching::patch).await,
        ),
        (&Method::DELETE, true) => (
            "delete",
            with_raw_body(state, &ctx, body, write::delete).await,
        ),
        (&Method::DELETE, false) => (
            "deletecollection",
            with_raw_body(state, &ctx, body, write::delete_collection).await,
        ),
        _ => ("other", Err(method_not_allowed(&method))),
    };
    (verb, resource, result)
}

fn method_not_allowed(method: &Method) -> ApiError {
    ApiError::MethodNotAllowed {
        message: format!(
            "the server does not allow this method on the requested resource ({method})"
        ),
    }
}

async fn with_body<'a, F, Fut>(
    state: &Arc<State>,
    ctx: &'a Ctx,
    body: Body,
    handler: F,
) -> Result<Response, ApiError>
where
    F: FnOnce(Arc<State>, &'a Ctx, Value) -> Fut,
    Fut: Future<Output = Result<Response, ApiError>>,
{
    let bytes = read_body(state, &ctx.headers, body).await?;
    let object = request::decode_object(&bytes, &request::content_type(&ctx.headers))?;
    handler(state.clone(), ctx, object).await
}

async fn with_raw_body<'a, F, Fut>(
    state: &Arc<State>,
    ctx: &'a Ctx,
    body: Body,
    handler: F,
) -> Result<Response, ApiError>
where
    F: FnOnce(Arc<State>, &'a Ctx, Bytes) -> Fut,
    Fut: Future<Output = Result<Response, ApiError>>,
{
    let bytes = read_body(state, &ctx.headers, body).await?;
    handler(state.clone(), ctx, bytes).await
}
