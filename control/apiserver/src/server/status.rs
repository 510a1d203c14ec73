//! API errors and their Kubernetes `Status` bodies.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use hami_store::StoreError;
use serde_json::{Value, json};

/// One field-level cause inside a Status' details.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cause {
    /// Kubernetes cause type, e.g. `FieldValueInvalid`, `FieldValueRequired`.
    pub reason: String,
    pub message: String,
    /// Field path, e.g. `spec.placement.replicaScheduling.weightPreference`.
    pub field: String,
}

impl Cause {
    pub fn new(reason: &str, field: &str, message: impl Into<String>) -> Self {
        Self {
            reason: reason.to_owned(),
            message: message.into(),
            field: field.to_owned(),
        }
    }
}

/// What a failed request names: the object and its kind.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Target {
    pub name: String,
    pub group: String,
    /// The resource (plural) or kind named in messages and details.
    pub kind: String,
}

/// Every error the API server answers; each becomes a `Status` body.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum ApiError {
    #[error("{message}")]
    BadRequest { message: String },
    /// 401: no valid credentials (kube-apiserver's body says only
    /// "Unauthorized"; why is logged, never told to the client).
    #[error("Unauthorized")]
    Unauthorized,
    #[error("{message}")]
    NotFound { message: String, target: Target },
    /// 403: the request is understood and refused (e.g. new content in a
    /// namespace being terminated).
    #[error("{message}")]
    Forbidden { message: String, target: Target },
    #[error("{message}")]
    AlreadyExists { message: String, target: Target },
    #[error("{message}")]
    Conflict { message: String, target: Target },
    #[error("{message}")]
    Invalid {
        message: String,
        target: Target,
        causes: Vec<Cause>,
    },
    /// Server-side apply conflicts: 409 with a cause per field.
    #[error("{message}")]
    ManagerConflict {
        message: String,
        target: Target,
        causes: Vec<Cause>,
    },
    #[error("{message}")]
    Gone { message: String },
    #[error("request entity too large: limit is {limit} bytes")]
    TooLarge { limit: usize },
    #[error("{message}")]
    UnsupportedMediaType { message: String },
    #[error("{message}")]
    MethodNotAllowed { message: String },
    #[error("{message}")]
    NotAcceptable { message: String },
    #[error("{message}")]
    Unavailable { message: String },
    #[error("{message}")]
    Internal { message: String },
}

impl ApiError {
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::BadRequest {
            message: message.into(),
        }
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::Internal {
            message: message.into(),
        }
    }

    /// `resource "name" not found`, as Kubernetes words it.
    pub fn not_found(group: &str, resource: &str, name: &str) -> Self {
        Self::NotFound {
            message: format!("{} \"{name}\" not found", group_resource(group, resource)),
            target: Target {
                name: name.to_owned(),
                group: group.to_owned(),
                kind: resource.to_owned(),
            },
        }
    }

    /// 403 from an authorizer: `message` is kube's whole text; the details
    /// name the object, the API group and the resource, as kube's
    /// `responsewriters.Forbidden` fills them.
    pub fn forbidden(message: impl Into<String>, group: &str, resource: &str, name: &str) -> Self {
        Self::Forbidden {
            message: message.into(),
            target: Target {
                name: name.to_owned(),
                group: group.to_owned(),
                kind: resource.to_owned(),
            },
        }
    }

    /// 403, worded as Kubernetes' NamespaceLifecycle admission words it
    /// when a namespace is being terminated.
    pub fn namespace_terminating(group: &str, resource: &str, name: &str, ns: &str) -> Self {
        Self::Forbidden {
            message: format!(
                "{} \"{name}\" is forbidden: unable to create new content in namespace {ns} because it is being terminated",
                group_resource(group, resource)
            ),
            target: Target {
                name: name.to_owned(),
                group: group.to_owned(),
                kind: resource.to_owned(),
            },
        }
    }

    pub fn already_exists(group: &str, resource: &str, name: &str) -> Self {
        Self::AlreadyExists {
            message: format!(
                "{} \"{name}\" already exists",
                group_resource(group, resource)
            ),
            target: Target {
                name: name.to_owned(),
                group: group.to_owned(),
                kind: resource.to_owned(),
            },
        }
    }

    pub fn conflict(group: &str, resource: &str, name: &str, why: &str) -> Self {
        Self::Conflict {
            message: format!(
                "Operation cannot be fulfilled on {} \"{name}\": {why}",
                group_resource(group, resource)
            ),
            target: Target {
                name: name.to_owned(),
                group: group.to_owned(),
                kind: resource.to_owned(),
            },
        }
    }

    /// 409 after a read-modify-write lost the race to other writers too
    /// many times in a row.
    pub fn too_many_updates(kind: &super::registry::ResourceKind, name: &str) -> Self {
        Self::conflict(
            &kind.group,
            &kind.plural,
            name,
            "too many concurrent updates",
        )
    }

    /// 422 with one cause per field; `kind` is the object's Kind.
    pub fn invalid(group: &str, kind: &str, name: &str, causes: Vec<Cause>) -> Self {
        let summary: Vec<String> = causes
            .iter()
            .map(|c| {
                if c.field.is_empty() {
                    c.message.clone()
                } else {
                    format!("{}: {}", c.field, c.message)
                }
            })
            .collect();
        let gk = if group.is_empty() {
            kind.to_owned()
        } else {
            format!("{kind}.{group}")
        };
        Self::Invalid {
            message: format!("{gk} \"{name}\" is invalid: [{}]", summary.join(", ")),
            target: Target {
                name: name.to_owned(),
                group: group.to_owned(),
                kind: kind.to_owned(),
            },
            causes,
        }
    }

    /// Maps a store error on one object.
    pub fn from_store(err: StoreError, group: &str, resource: &str, name: &str) -> Self {
        match err {
            StoreError::AlreadyExists(_) => Self::already_exists(group, resource, name),
            StoreError::NotFound(_) => Self::not_found(group, resource, name),
            StoreError::Conflict { .. } => Self::conflict(
                group,
                resource,
                name,
                "the object has been modified; please apply your changes to the latest version and try again",
            ),
            StoreError::Compacted { requested, oldest } => Self::Gone {
                message: format!("too old resource version: {requested} ({oldest})"),
            },
            StoreError::Closed | StoreError::WatcherTooSlow | StoreError::Unavailable(_) => {
                Self::Unavailable {
                    message: err.to_string(),
                }
            }
            StoreError::Backend(m) => Self::Internal { message: m },
        }
    }

    /// The same error answered as 409 Conflict (field manager conflicts).
    pub fn into_conflict(self) -> Self {
        match self {
            Self::Invalid {
                message,
                target,
                causes,
            } => Self::ManagerConflict {
                message,
                target,
                causes,
            },
            other => other,
        }
    }

    pub fn code(&self) -> u16 {
        match self {
            Self::BadRequest { .. } => 400,
            Self::Unauthorized => 401,
            Self::Forbidden { .. } => 403,
            Self::NotFound { .. } => 404,
            Self::MethodNotAllowed { .. } => 405,
            Self::NotAcceptable { .. } => 406,
            Self::AlreadyExists { .. } | Self::Conflict { .. } | Self::ManagerConflict { .. } => {
                409
            }
            Self::Gone { .. } => 410,
            Self::TooLarge { .. } => 413,
            Self::UnsupportedMediaType { .. } => 415,
            Self::Invalid { .. } => 422,
            Self::Internal { .. } => 500,
            Self::Unavailable { .. } => 503,
        }
    }

    /// The Kubernetes StatusReason.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::BadRequest { .. } => "BadRequest",
            Self::Unauthorized => "Unauthorized",
            Self::Forbidden { .. } => "Forbidden",
            Self::NotFound { .. } => "NotFound",
            Self::MethodNotAllowed { .. } => "MethodNotAllowed",
            Self::NotAcceptable { .. } => "NotAcceptable",
            Self::AlreadyExists { .. } => "AlreadyExists",
            Self::Conflict { .. } | Self::ManagerConflict { .. } => "Conflict",
            Self::Gone { .. } => "Expired",
            Self::TooLarge { .. } => "RequestEntityTooLarge",
            Self::UnsupportedMediaType { .. } => "UnsupportedMediaType",
            Self::Invalid { .. } => "Invalid",
            Self::Internal { .. } => "InternalError",
            Self::Unavailable { .. } => "ServiceUnavailable",
        }
    }

    /// The `Status` object for this error.
    pub fn status(&self) -> Value {
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.to_string(),
            "reason": self.reason(),
            "code": self.code(),
        });
        let details = match self {
            Self::NotFound { target, .. }
            | Self::Forbidden { target, .. }
            | Self::AlreadyExists { target, .. }
            | Self::Conflict { target, .. } => Some(target_json(target, &[])),
            Self::Invalid { target, causes, .. } | Self::ManagerConflict { target, causes, .. } => {
                Some(target_json(target, causes))
            }
            _ => None,
        };
        if let Some(details) = details {
            status["details"] = details;
        }
        status
    }
}

fn group_resource(group: &str, resource: &str) -> String {
    if group.is_empty() {
        resource.to_owned()
    } else {
        format!("{resource}.{group}")
    }
}

/// kube's `StatusDetails`: empty fields are left out (Go's omitempty).
fn target_json(target: &Target, causes: &[Cause]) -> Value {
    let mut details = json!({});
    for (field, value) in [
        ("name", &target.name),
        ("group", &target.group),
        ("kind", &target.kind),
    ] {
        if !value.is_empty() {
            details[field] = json!(value);
        }
    }
    if !causes.is_empty() {
        details["causes"] = causes
            .iter()
            .map(|c| json!({"reason": c.reason, "message": c.message, "field": c.field}))
            .collect();
    }
    details
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let code = StatusCode::from_u16(self.code()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        // A Status has a protobuf message: it answers in the request's encoding.
        super::dispatch::json_response(code, &self.status())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_names_each_field() {
        let err = ApiError::invalid(
            "policy.hami.io",
            "PropagationPolicy",
            "p",
            vec![
                Cause::new("FieldValueInvalid", "spec.a", "must be >= 0"),
                Cause::new("FieldValueRequired", "spec.b", "Required value"),
            ],
        );
        let s = err.status();
        assert_eq!(s["code"], 422);
        assert_eq!(s["reason"], "Invalid");
        assert_eq!(s["details"]["causes"][1]["field"], "spec.b");
        assert_eq!(
            s["message"],
            "PropagationPolicy.policy.hami.io \"p\" is invalid: [spec.a: must be >= 0, spec.b: Required value]"
        );
    }

    #[test]
    fn store_conflict_is_409() {
        let err = ApiError::from_store(
            StoreError::Conflict {
                key: "k".into(),
                expected: 1,
                actual: 2,
            },
            "apps",
            "deployments",
            "d",
        );
        assert_eq!(err.code(), 409);
        assert_eq!(err.status()["details"]["group"], "apps");
        let gone = ApiError::from_store(
            StoreError::Compacted {
                requested: 1,
                oldest: 5,
            },
            "",
            "pods",
            "",
        );
        assert_eq!(gone.status()["code"], 410);
        assert_eq!(gone.reason(), "Expired");
    }

    #[test]
    fn unauthorized_is_kubes_exact_body() {
        assert_eq!(
            ApiError::Unauthorized.status().to_string(),
            r#"{"apiVersion":"v1","code":401,"kind":"Status","message":"Unauthorized","metadata":{},"reason":"Unauthorized","status":"Failure"}"#
        );
    }
}
