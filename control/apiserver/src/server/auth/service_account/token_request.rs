//! The TokenRequest subresource: `POST /api/v1/namespaces/<ns>/
//! serviceaccounts/<name>/token` with an `authentication.k8s.io/v1`
//! TokenRequest, answered 201 with a signed token, as kube's
//! `pkg/registry/core/serviceaccount/storage/token.go` answers it. RBAC
//! has authorized `create` on `serviceaccounts/token` before this runs.
//!
//! * `metadata.name` / `.namespace`, when given, must be the URL's (422);
//! * the ServiceAccount must exist (404);
//! * `spec.audiences` defaults to the API audiences;
//! * `spec.expirationSeconds` defaults to 3600, may not be under 600 nor
//!   over 2^32 (422 with kube's messages), and is cut to
//!   `--service-account-max-token-expiration`;
//! * `spec.boundObjectRef`, when given, names a Pod (running as this
//!   ServiceAccount) or a Secret of the namespace, which must exist (404)
//!   and have the uid given, if one is (409); the token records its uid.
//!
//! The answer echoes the request with its defaults, `metadata.
//! creationTimestamp` and `status.token` / `status.expirationTimestamp`.
//! kubectl (`kubectl create token`, client-go's `CreateToken`) posts the
//! TokenRequest as protobuf (`application/vnd.kubernetes.protobuf`), which
//! [`decode_protobuf`] reads; the answer goes out as JSON, which it accepts.

use axum::body::Body;
use axum::http::{Extensions, StatusCode};
use axum::response::Response;
use serde_json::{Map, Value, json};

use super::{Bound, BoundKind, Subject, TokenSigner, read_core, uid};
use crate::server::State;
use crate::server::auth::review_protobuf::{Wire, envelope, fields, message, strings, text};
use crate::server::dispatch::{Ctx, json_response, read_body};
use crate::server::request;
use crate::server::status::{ApiError, Cause};

pub const GROUP: &str = "authentication.k8s.io";
pub const API_VERSION: &str = "authentication.k8s.io/v1";
pub const KIND: &str = "TokenRequest";
/// kube's defaults and bounds of `spec.expirationSeconds`.
pub const DEFAULT_EXPIRATION_SECONDS: i64 = 3600;
pub const MIN_EXPIRATION_SECONDS: i64 = 600;
pub const MAX_EXPIRATION_SECONDS: i64 = 1 << 32;

/// Whether `kind` (ServiceAccount) has the `token` subresource.
pub fn serves(kind: &crate::server::registry::ResourceKind) -> bool {
    kind.group.is_empty() && kind.plural == "serviceaccounts"
}

/// The discovery entry of the subresource (as kube-apiserver lists it).
pub fn discovery_entry() -> Value {
    json!({
        "name": "serviceaccounts/token",
        "singularName": "",
        "namespaced": true,
        "group": GROUP,
        "version": "v1",
        "kind": KIND,
        "verbs": ["create"],
    })
}

/// The JSON object of a protobuf TokenRequest (`k8s.io/api/authentication/
/// v1/generated.proto`): TokenRequest {metadata = 1, spec = 2};
/// TokenRequestSpec {audiences = 1 (repeated), boundObjectRef = 3,
/// expirationSeconds = 4 (int64)}; BoundObjectReference {kind = 1,
/// apiVersion = 2, name = 3, uid = 4}; ObjectMeta {name = 1, namespace = 3}.
pub fn decode_protobuf(body: &[u8]) -> Result<Value, String> {
    let (api_version, kind, raw) = envelope(body)?;
    let mut object = Map::new();
    object.insert("apiVersion".into(), json!(api_version));
    object.insert("kind".into(), json!(kind));
    for (number, wire) in fields(raw)? {
        match number {
            1 => {
                let names = [(1, "name"), (3, "namespace")];
                object.insert(
                    "metadata".into(),
                    Value::Object(strings(message(&wire)?, &names, &[])?),
                );
            }
            2 => {
                object.insert("spec".into(), spec(message(&wire)?)?);
            }
            _ => {}
        }
    }
    Ok(Value::Object(object))
}

fn spec(bytes: &[u8]) -> Result<Value, String> {
    let mut out = Map::new();
    let mut audiences = Vec::new();
    for (number, wire) in fields(bytes)? {
        match (number, &wire) {
            (1, _) => audiences.push(json!(text(&wire)?)),
            (3, _) => {
                let names = [(1, "kind"), (2, "apiVersion"), (3, "name"), (4, "uid")];
                out.insert(
                    "boundObjectRef".into(),
                    Value::Object(strings(message(&wire)?, &names, &[])?),
                );
            }
            // int64: two's complement in a varint.
            (4, Wire::Varint(v)) => {
                out.insert(
                    "expirationSeconds".into(),
                    json!(i64::from_ne_bytes(v.to_ne_bytes())),
                );
            }
            (4, _) => return Err("expirationSeconds has the wrong wire type".to_owned()),
            _ => {}
        }
    }
    if !audiences.is_empty() {
        out.insert("audiences".into(), Value::Array(audiences));
    }
    Ok(Value::Object(out))
}

/// What a TokenRequest asks for, read from its JSON.
#[derive(Debug, Default, PartialEq, Eq)]
struct Asked {
    name: String,
    namespace: String,
    audiences: Vec<String>,
    expiration_seconds: Option<i64>,
    bound: Option<Map<String, Value>>,
}

fn asked(object: &Value) -> Result<Asked, ApiError> {
    let bad = |what: &str| ApiError::bad_request(format!("TokenRequest: {what}"));
    let text_at = |pointer: &str| -> Result<String, ApiError> {
        match object.pointer(pointer) {
            None | Some(Value::Null) => Ok(String::new()),
            Some(Value::String(s)) => Ok(s.clone()),
            Some(_) => Err(bad(&format!(
                "{} must be a string",
                &pointer[1..].replace('/', ".")
            ))),
        }
    };
    let api_version = text_at("/apiVersion")?;
    let kind = text_at("/kind")?;
    if (!api_version.is_empty() && api_version != API_VERSION) || (!kind.is_empty() && kind != KIND)
    {
        return Err(ApiError::bad_request(format!(
            "the body is a {kind} of {api_version}, not a {KIND} of {API_VERSION}"
        )));
    }
    let audiences = match object.pointer("/spec/audiences") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(list)) => list
            .iter()
            .map(|a| a.as_str().map(str::to_owned))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| bad("spec.audiences must be a list of strings"))?,
        Some(_) => return Err(bad("spec.audiences must be a list of strings")),
    };
    let expiration_seconds = match object.pointer("/spec/expirationSeconds") {
        None | Some(Value::Null) => None,
        Some(v) => Some(
            v.as_i64()
                .ok_or_else(|| bad("spec.expirationSeconds must be an integer"))?,
        ),
    };
    let bound = match object.pointer("/spec/boundObjectRef") {
        None | Some(Value::Null) => None,
        Some(Value::Object(map)) => Some(map.clone()),
        Some(_) => return Err(bad("spec.boundObjectRef must be an object")),
    };
    Ok(Asked {
        name: text_at("/metadata/name")?,
        namespace: text_at("/metadata/namespace")?,
        audiences,
        expiration_seconds,
        bound,
    })
}

fn invalid(field: &str, value: &str, message: &str) -> ApiError {
    ApiError::invalid(
        GROUP,
        KIND,
        "",
        vec![Cause::new(
            "FieldValueInvalid",
            field,
            format!("Invalid value: {value}: {message}"),
        )],
    )
}

/// Serves a POST to `serviceaccounts/<name>/token`.
pub async fn serve(
    state: &State,
    ctx: &Ctx,
    extensions: &Extensions,
    body: Body,
) -> Result<Response, ApiError> {
    let not_served = || ApiError::NotFound {
        message: "the server could not find the requested resource (serviceaccounts/token)"
            .to_owned(),
        target: Default::default(),
    };
    let signer = extensions.get::<TokenSigner>().ok_or_else(not_served)?;
    let (Some(namespace), Some(name)) = (ctx.ns(), ctx.path.name.as_deref()) else {
        return Err(not_served());
    };
    let bytes = read_body(state, &ctx.headers, body).await?;
    let media_type = request::content_type(&ctx.headers);
    let object = if media_type.contains("protobuf") {
        decode_protobuf(&bytes)
            .map_err(|e| ApiError::bad_request(format!("invalid protobuf body: {e}")))?
    } else {
        request::decode_object(&bytes, &media_type)?
    };
    let asked = asked(&object)?;
    let answer = answer(state, &signer.0, namespace, name, asked, now())?;
    Ok(json_response(StatusCode::CREATED, &answer))
}

fn now() -> i64 {
    k8s_openapi::jiff::Timestamp::now().as_second()
}

fn rfc3339(seconds: i64) -> String {
    k8s_openapi::jiff::Timestamp::from_second(seconds)
        .map(|t| t.to_string())
        .unwrap_or_default()
}

/// The TokenRequest answered (kube's `TokenREST.Create`), at `now`.
fn answer(
    state: &State,
    signer: &super::ServiceAccountConfig,
    namespace: &str,
    name: &str,
    asked: Asked,
    now: i64,
) -> Result<Value, ApiError> {
    if !asked.name.is_empty() && asked.name != name {
        let value = format!("{:?}", asked.name);
        return Err(invalid(
            "metadata.name",
            &value,
            "must match the service account name if specified",
        ));
    }
    if !asked.namespace.is_empty() && asked.namespace != namespace {
        let value = format!("{:?}", asked.namespace);
        return Err(invalid(
            "metadata.namespace",
            &value,
            "must match the service account namespace if specified",
        ));
    }
    let read = |plural: &str, object: &str| {
        read_core(state.store.as_ref(), plural, namespace, object)
            .map_err(ApiError::internal)?
            .ok_or_else(|| ApiError::not_found("", plural, object))
    };
    let account = read("serviceaccounts", name)?;
    let audiences = if asked.audiences.is_empty() {
        signer.audiences().to_vec()
    } else {
        asked.audiences
    };
    let mut expiration = asked
        .expiration_seconds
        .unwrap_or(DEFAULT_EXPIRATION_SECONDS);
    if expiration < MIN_EXPIRATION_SECONDS {
        return Err(invalid(
            "spec.expirationSeconds",
            &expiration.to_string(),
            "may not specify a duration less than 10 minutes",
        ));
    }
    if expiration > MAX_EXPIRATION_SECONDS {
        return Err(invalid(
            "spec.expirationSeconds",
            &expiration.to_string(),
            "may not specify a duration larger than 2^32 seconds",
        ));
    }
    let bound = match &asked.bound {
        None => None,
        Some(reference) => Some(bound_object(&read, name, reference)?),
    };
    if let Some(max) = signer.max_expiration_seconds() {
        expiration = expiration.min(max);
    }
    let subject = Subject {
        namespace: namespace.to_owned(),
        name: name.to_owned(),
        uid: uid(&account).to_owned(),
        audiences: audiences.clone(),
        expiration_seconds: expiration,
        bound,
    };
    let token = signer
        .issue(&subject, now)
        .map_err(|e| ApiError::internal(format!("failed to generate token: {e}")))?;
    let mut spec = json!({"audiences": audiences, "expirationSeconds": expiration});
    if let Some(reference) = asked.bound {
        spec["boundObjectRef"] = Value::Object(reference);
    }
    Ok(json!({
        "kind": KIND,
        "apiVersion": API_VERSION,
        "metadata": {
            "name": name,
            "namespace": namespace,
            "creationTimestamp": rfc3339(now),
        },
        "spec": spec,
        "status": {
            "token": token,
            "expirationTimestamp": rfc3339(now.saturating_add(expiration)),
        },
    }))
}

/// The object `reference` binds the token to, checked as kube checks it.
fn bound_object(
    read: &dyn Fn(&str, &str) -> Result<Value, ApiError>,
    account: &str,
    reference: &Map<String, Value>,
) -> Result<Bound, ApiError> {
    let field = |k: &str| reference.get(k).and_then(Value::as_str).unwrap_or("");
    let (kind, api_version, name, want_uid) = (
        field("kind"),
        field("apiVersion"),
        field("name"),
        field("uid"),
    );
    // The group of the reference's apiVersion (`v1`: the core group).
    let group = api_version.rsplit_once('/').map_or("", |(g, _)| g);
    let (bound_kind, plural) = match (group, kind) {
        ("", "Pod") => (BoundKind::Pod, "pods"),
        ("", "Secret") => (BoundKind::Secret, "secrets"),
        _ => {
            let version = api_version.rsplit('/').next().unwrap_or("");
            return Err(ApiError::bad_request(format!(
                "cannot bind token to object of type {group}/{version}, Kind={kind}"
            )));
        }
    };
    let object = read(plural, name)?;
    if bound_kind == BoundKind::Pod {
        let runs_as = object
            .pointer("/spec/serviceAccountName")
            .and_then(Value::as_str)
            .unwrap_or("");
        if runs_as != account {
            return Err(ApiError::bad_request(format!(
                "cannot bind token for serviceaccount {account:?} to pod running with serviceaccount {runs_as:?}"
            )));
        }
    }
    let stored_uid = uid(&object);
    if !want_uid.is_empty() && want_uid != stored_uid {
        return Err(ApiError::conflict(
            "",
            kind,
            name,
            &format!(
                "the UID in the bound object reference ({want_uid}) does not match the UID in record ({stored_uid}). The object might have been deleted and then recreated"
            ),
        ));
    }
    Ok(Bound {
        kind: bound_kind,
        name: name.to_owned(),
        uid: stored_uid.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use prost::Message as _;

    use super::*;

    /// What `kubectl create token robot -n ns --duration 20m --audience a
    /// --bound-object-kind Secret --bound-object-name s` posts: client-go's
    /// protobuf serializer around k8s.io/api's TokenRequest.
    fn kubectl_body() -> Vec<u8> {
        use k8s_pb::api::authentication::v1 as pb;
        let request = pb::TokenRequest {
            metadata: Some(Default::default()),
            spec: Some(pb::TokenRequestSpec {
                audiences: vec!["a".to_owned()],
                expiration_seconds: Some(1200),
                bound_object_ref: Some(pb::BoundObjectReference {
                    kind: Some("Secret".to_owned()),
                    api_version: Some("v1".to_owned()),
                    name: Some("s".to_owned()),
                    u_id: Some(String::new()),
                }),
            }),
            status: Some(Default::default()),
        };
        let unknown = k8s_pb::apimachinery::pkg::runtime::Unknown {
            type_meta: Some(k8s_pb::apimachinery::pkg::runtime::TypeMeta {
                api_version: Some(API_VERSION.to_owned()),
                kind: Some(KIND.to_owned()),
            }),
            raw: Some(request.encode_to_vec()),
            content_encoding: Some(String::new()),
            content_type: Some(String::new()),
        };
        let mut body = b"k8s\0".to_vec();
        body.extend(unknown.encode_to_vec());
        body
    }

    #[test]
    fn protobuf_token_requests_read_as_json() {
        let got = decode_protobuf(&kubectl_body()).unwrap();
        assert_eq!(
            got,
            json!({"apiVersion": API_VERSION, "kind": KIND, "metadata": {},
                   "spec": {"audiences": ["a"], "expirationSeconds": 1200,
                            "boundObjectRef": {"kind": "Secret", "apiVersion": "v1",
                                               "name": "s", "uid": ""}}})
        );
        let body = kubectl_body();
        for cut in 0..body.len() {
            let _ = decode_protobuf(&body[..cut]);
        }
        assert!(decode_protobuf(b"{}").is_err());
    }

    #[test]
    fn requests_are_read_with_their_types_checked() {
        let ok = asked(&json!({"apiVersion": API_VERSION, "kind": KIND,
            "metadata": {"name": "robot"},
            "spec": {"audiences": ["x"], "expirationSeconds": 900}}))
        .unwrap();
        assert_eq!(
            ok,
            Asked {
                name: "robot".to_owned(),
                audiences: vec!["x".to_owned()],
                expiration_seconds: Some(900),
                ..Asked::default()
            }
        );
        assert_eq!(asked(&json!({})).unwrap(), Asked::default());
        for bad in [
            json!({"kind": "Pod"}),
            json!({"apiVersion": "v1"}),
            json!({"spec": {"audiences": "x"}}),
            json!({"spec": {"audiences": [1]}}),
            json!({"spec": {"expirationSeconds": "600"}}),
            json!({"spec": {"expirationSeconds": 600.5}}),
            json!({"spec": {"boundObjectRef": "pod"}}),
            json!({"metadata": {"name": 3}}),
        ] {
            assert_eq!(asked(&bad).unwrap_err().code(), 400, "{bad}");
        }
    }
}
