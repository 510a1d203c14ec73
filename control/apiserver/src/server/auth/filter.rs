//! The middleware around the whole router (API, discovery, `/metrics`,
//! `/healthz`, ...): authentication and impersonation ([`filter`]), then,
//! after the per-user limits, authorization ([`authorize`]): kube-apiserver's
//! order (`DefaultBuildHandlerChain`: authentication, impersonation, APF,
//! authorization), so a user flooding forbidden requests is limited too. A
//! refused request is answered here with kube's
//! Status (401 `Unauthorized`, 403 `Forbidden`, 400 for malformed
//! impersonation), counted in `hami_apiserver_requests_total` and logged at
//! info; a request let through carries its [`UserInfo`], [`RequestUid`] and
//! [`PolicySnapshot`] in its extensions and is logged at debug.

use std::sync::Arc;

use axum::extract::{Request, State as AxumState};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::impersonation::{self, ImpersonationError};
use super::{
    Auth, Credentials, Identity, PeerIdentity, PolicySnapshot, RequestUid, anonymous,
    anonymous_allowed, authenticate, request_info,
};
use crate::server::State;
use crate::server::metrics::{RequestLabels, request_labels, user_kind};
use crate::server::rbac::{Attributes, Decision, UserInfo};
use crate::server::status::ApiError;

/// What the middleware needs: the server's state (metrics, served kinds)
/// and the authenticators with the current policy.
#[derive(Clone)]
pub struct Gate {
    pub state: Arc<State>,
    pub auth: Arc<Auth>,
}

fn verb_of(attrs: &Attributes) -> &str {
    match attrs {
        Attributes::Resource { verb, .. } | Attributes::NonResource { verb, .. } => verb,
    }
}

/// Answers a refusal, counts it and logs why.
fn refuse(
    gate: &Gate,
    attrs: &Attributes,
    user: Option<&UserInfo>,
    error: ApiError,
    why: &str,
) -> Response {
    let kind = user.map_or("anonymous", user_kind);
    tracing::info!(
        code = error.code(),
        user = user.map_or("", |u| u.name.as_str()),
        groups = ?user.map(|u| &u.groups),
        verb = verb_of(attrs),
        reason = why,
        "request refused"
    );
    let (verb, resource) = request_labels(&gate.state, attrs);
    gate.state
        .metrics
        .requests
        .get_or_create(&RequestLabels {
            verb,
            resource,
            code: error.code(),
            user_kind: Some(kind),
        })
        .inc();
    error.into_response()
}

fn forbidden(attrs: &Attributes, message: String) -> ApiError {
    match attrs {
        Attributes::Resource {
            api_group,
            resource,
            name,
            ..
        } => ApiError::forbidden(message, api_group, resource, name.as_deref().unwrap_or("")),
        Attributes::NonResource { .. } => ApiError::forbidden(message, "", "", ""),
    }
}

/// The middleware (see the module's documentation).
pub async fn filter(
    AxumState(gate): AxumState<Gate>,
    mut request: Request,
    next: Next,
) -> Response {
    let attrs = request_info::attributes(request.method(), request.uri());
    // 1. Authentication.
    let credentials = authenticate(
        &gate.auth,
        request.extensions().get::<PeerIdentity>(),
        request.headers().get(header::AUTHORIZATION),
    );
    let identity = match credentials {
        Credentials::User(identity) => identity,
        Credentials::None if anonymous_allowed(request.method(), request.uri().path()) => {
            anonymous()
        }
        Credentials::None => {
            return refuse(
                &gate,
                &attrs,
                None,
                ApiError::Unauthorized,
                "no credentials",
            );
        }
        Credentials::Invalid(why) => {
            return refuse(&gate, &attrs, None, ApiError::Unauthorized, why);
        }
    };
    // The credentials go no further than this filter, as in kube.
    request.headers_mut().remove(header::AUTHORIZATION);
    let policy = gate.auth.policy();
    // 2. Impersonation.
    let identity = match impersonation::impersonate(&policy, &identity.user, request.headers()) {
        Ok(None) => identity,
        Ok(Some(acting)) => {
            tracing::debug!(
                user = %identity.user.name,
                acting_as = %acting.user.name,
                groups = ?acting.user.groups,
                "impersonation"
            );
            impersonation::strip_headers(request.headers_mut());
            acting
        }
        Err(ImpersonationError::BadRequest(message)) => {
            let error = ApiError::bad_request(message.clone());
            return refuse(&gate, &attrs, Some(&identity.user), error, &message);
        }
        Err(ImpersonationError::Forbidden {
            message,
            group,
            resource,
            name,
        }) => {
            let error = ApiError::forbidden(message.clone(), &group, &resource, &name);
            let attrs = Attributes::Resource {
                verb: "impersonate".to_owned(),
                api_group: group,
                resource,
                subresource: None,
                namespace: None,
                name: None,
            };
            return refuse(&gate, &attrs, Some(&identity.user), error, &message);
        }
    };
    let Identity { user, uid, extra } = identity;
    tracing::debug!(
        user = %user.name,
        groups = ?user.groups,
        method = %request.method(),
        path = request.uri().path(),
        "request"
    );
    // 3. Authorization: in [`authorize`], inside the per-user limits.
    let extensions = request.extensions_mut();
    if !uid.is_empty() {
        extensions.insert(RequestUid(uid));
    }
    if !extra.is_empty() {
        extensions.insert(super::RequestExtra(extra));
    }
    // What signs the tokens of TokenRequests, when they are served.
    if let Some(signer) = gate.auth.token_signer() {
        extensions.insert(signer);
    }
    extensions.insert(user);
    extensions.insert(PolicySnapshot(policy));
    next.run(request).await
}

/// Authorization, the innermost middleware: the user and the policy
/// snapshot [`filter`] put in the request's extensions, against the
/// request's attributes. A request without them (never, behind [`filter`])
/// is refused.
pub async fn authorize(AxumState(gate): AxumState<Gate>, request: Request, next: Next) -> Response {
    let attrs = request_info::attributes(request.method(), request.uri());
    let extensions = request.extensions();
    let (Some(user), Some(PolicySnapshot(policy))) = (
        extensions.get::<UserInfo>(),
        extensions.get::<PolicySnapshot>(),
    ) else {
        let message = "the request carries no authenticated user".to_owned();
        let error = forbidden(&attrs, message.clone());
        return refuse(&gate, &attrs, None, error, &message);
    };
    if let Decision::Deny { message } = policy.authorize(user, &attrs) {
        let error = forbidden(&attrs, message.clone());
        return refuse(&gate, &attrs, Some(user), error, &message);
    }
    next.run(request).await
}
