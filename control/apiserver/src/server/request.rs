//! Decoding a request: the resource path, query options, the body (JSON or
//! YAML, size-limited) and the representation the client accepts.

use std::sync::Arc;

use axum::http::{HeaderMap, header};
use serde_json::Value;

use super::registry::{Registry, ResourceKind};
use super::selector::{FieldSelector, LabelSelector, Selectors};
use super::status::ApiError;

/// A request for a resource (not discovery).
#[derive(Clone, Debug)]
pub struct ResourcePath {
    pub kind: Arc<ResourceKind>,
    /// Namespace from the URL (`/namespaces/{ns}/...`), when any.
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub subresource: Option<String>,
}

/// What a path under `/api` or `/apis` addresses.
#[derive(Clone, Debug)]
pub enum ApiPath {
    /// `/api`
    CoreVersions,
    /// `/apis`
    Groups,
    /// `/apis/{group}`
    Group(String),
    /// `/api/v1` or `/apis/{group}/{version}`
    GroupVersion {
        group: String,
        version: String,
    },
    Resource(ResourcePath),
}

/// Parses a request path. `None` means nothing is served there.
pub fn parse_path(registry: &Registry, path: &str) -> Result<Option<ApiPath>, ApiError> {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, version, rest) = match segments.as_slice() {
        ["api"] => return Ok(Some(ApiPath::CoreVersions)),
        ["apis"] => return Ok(Some(ApiPath::Groups)),
        ["apis", group] => return Ok(Some(ApiPath::Group((*group).to_owned()))),
        ["api", version, rest @ ..] => ("", *version, rest),
        ["apis", group, version, rest @ ..] => (*group, *version, rest),
        _ => return Ok(None),
    };
    if rest.is_empty() {
        return Ok(Some(ApiPath::GroupVersion {
            group: group.to_owned(),
            version: version.to_owned(),
        }));
    }
    // Mirrors Kubernetes' RequestInfo: `namespaces/{ns}/{resource}...` unless
    // the third segment is a namespace subresource.
    let (namespace, rest) = match rest {
        ["namespaces", ns, resource, tail @ ..] if !matches!(*resource, "status" | "finalize") => {
            (Some((*ns).to_owned()), {
                let mut v = vec![*resource];
                v.extend_from_slice(tail);
                v
            })
        }
        other => (None, other.to_vec()),
    };
    let (plural, name, subresource) = match rest.as_slice() {
        [plural] => (*plural, None, None),
        [plural, name] => (*plural, Some(*name), None),
        [plural, name, sub] => (*plural, Some(*name), Some(*sub)),
        _ => return Ok(None),
    };
    let Some(kind) = registry.lookup(group, version, plural) else {
        return Err(ApiError::NotFound {
            message: format!("the server could not find the requested resource ({path})"),
            target: super::status::Target::default(),
        });
    };
    if name.is_some_and(str::is_empty) || namespace.as_deref().is_some_and(str::is_empty) {
        return Err(ApiError::bad_request("empty name or namespace in the path"));
    }
    if namespace.is_some() && !kind.namespaced {
        return Err(ApiError::NotFound {
            message: format!(
                "the server could not find the requested resource: {} is not namespaced",
                kind.plural
            ),
            target: super::status::Target::default(),
        });
    }
    Ok(Some(ApiPath::Resource(ResourcePath {
        kind: kind.clone(),
        namespace,
        name: name.map(str::to_owned),
        subresource: subresource.map(str::to_owned),
    })))
}

/// Options of list and watch requests.
#[derive(Clone, Debug, Default)]
pub struct ListOptions {
    pub selectors: Selectors,
    pub limit: usize,
    pub continue_token: Option<String>,
    pub resource_version: Option<String>,
    pub watch: bool,
    pub allow_bookmarks: bool,
    pub timeout_seconds: Option<u64>,
    pub send_initial_events: bool,
}

fn truthy(v: &str) -> bool {
    matches!(v, "1" | "true" | "True")
}

/// Options of every request, parsed from the query string.
#[derive(Clone, Debug, Default)]
pub struct Query {
    pub list: ListOptions,
    pub field_manager: Option<String>,
    pub force: bool,
    pub dry_run: bool,
    /// What to do with fields the kind's schema does not have.
    pub field_validation: FieldValidation,
    pub include_object: Option<String>,
}

impl Query {
    pub fn parse(pairs: &[(String, String)]) -> Result<Self, ApiError> {
        let mut q = Query::default();
        for (key, value) in pairs {
            let bad = |what: &str| ApiError::bad_request(format!("invalid {what}: {value:?}"));
            match key.as_str() {
                "labelSelector" => {
                    q.list.selectors.labels = LabelSelector::parse(value)
                        .map_err(|e| ApiError::bad_request(e.to_string()))?
                }
                "fieldSelector" => {
                    q.list.selectors.fields = FieldSelector::parse(value)
                        .map_err(|e| ApiError::bad_request(e.to_string()))?
                }
                "limit" => q.list.limit = value.parse().map_err(|_| bad("limit"))?,
                "continue" if !value.is_empty() => q.list.continue_token = Some(value.clone()),
                "resourceVersion" if !value.is_empty() => {
                    q.list.resource_version = Some(value.clone())
                }
                "watch" => q.list.watch = truthy(value),
                "allowWatchBookmarks" => q.list.allow_bookmarks = truthy(value),
                "sendInitialEvents" => q.list.send_initial_events = truthy(value),
                "timeoutSeconds" => {
                    q.list.timeout_seconds = Some(value.parse().map_err(|_| bad("timeoutSeconds"))?)
                }
                "fieldManager" => q.field_manager = Some(value.clone()),
                "force" => q.force = truthy(value),
                // kube-apiserver accepts only "All" (and repeats of it).
                "dryRun" => match value.as_str() {
                    "All" => q.dry_run = true,
                    "" => {}
                    other => {
                        return Err(ApiError::bad_request(format!(
                            "unsupported dry run value: {other:?}; supported values: \"All\""
                        )));
                    }
                },
                "fieldValidation" => {
                    q.field_validation = match value.as_str() {
                        "Strict" => FieldValidation::Strict,
                        "Warn" | "" => FieldValidation::Warn,
                        "Ignore" => FieldValidation::Ignore,
                        other => {
                            return Err(ApiError::bad_request(format!(
                                "invalid fieldValidation value: {other:?}; supported values: \"Ignore\", \"Warn\", \"Strict\""
                            )));
                        }
                    }
                }
                "includeObject" => q.include_object = Some(value.clone()),
                _ => {}
            }
        }
        Ok(q)
    }
}

/// Parses a resourceVersion given by a client.
pub fn parse_revision(text: &str) -> Result<u64, ApiError> {
    text.parse()
        .map_err(|_| ApiError::bad_request(format!("invalid resource version: {text:?}")))
}

/// Encodes a continue token (hex of the last key returned).
pub fn encode_continue(last_key: &str) -> String {
    last_key.bytes().map(|b| format!("{b:02x}")).collect()
}

/// Decodes a continue token; a malformed one is a 400.
pub fn decode_continue(token: &str) -> Result<String, ApiError> {
    let bad = || ApiError::bad_request("invalid continue token");
    if !token.len().is_multiple_of(2) {
        return Err(bad());
    }
    let bytes = (0..token.len())
        .step_by(2)
        .map(|i| {
            token
                .get(i..i + 2)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        })
        .collect::<Option<Vec<u8>>>()
        .ok_or_else(bad)?;
    String::from_utf8(bytes).map_err(|_| bad())
}

/// The body's media type, lowercased, without parameters.
pub fn content_type(headers: &HeaderMap) -> String {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .unwrap_or_default()
}

/// Decodes an object body: JSON, or YAML when the media type says so.
/// The result must be a JSON object.
pub fn decode_object(body: &[u8], media_type: &str) -> Result<Value, ApiError> {
    let value = decode_value(body, media_type)?;
    if !value.is_object() {
        return Err(ApiError::bad_request(
            "the request body must be a JSON object",
        ));
    }
    Ok(value)
}

/// Decodes any JSON or YAML value.
pub fn decode_value(body: &[u8], media_type: &str) -> Result<Value, ApiError> {
    if media_type.contains("protobuf") {
        return super::protobuf::decode(body).map_err(|e| match e {
            super::protobuf::ProtobufError::Invalid(_) => ApiError::bad_request(e.to_string()),
            super::protobuf::ProtobufError::UnsupportedKind(_) => {
                ApiError::UnsupportedMediaType {
                    message: format!(
                        "the body of the request was in an unknown format - accepted media types include: application/json, application/yaml (got {media_type}): {e}"
                    ),
                }
            }
        });
    }
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::bad_request("the request body is empty"));
    }
    if media_type.contains("yaml") {
        let text = std::str::from_utf8(body)
            .map_err(|_| ApiError::bad_request("the YAML body is not valid UTF-8"))?;
        serde_saphyr::from_str::<Value>(text)
            .map_err(|e| ApiError::bad_request(format!("error decoding YAML: {e}")))
    } else {
        serde_json::from_slice(body)
            .map_err(|e| ApiError::bad_request(format!("error decoding JSON: {e}")))
    }
}

/// `fieldValidation`: unknown fields (and duplicates) in a write's body are
/// refused (`Strict`, kubectl's default), answered with a warning (`Warn`,
/// the server's default, as kube-apiserver's) or dropped silently (`Ignore`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum FieldValidation {
    Strict,
    #[default]
    Warn,
    Ignore,
}

/// How a response body is encoded, from `Accept`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Encoding {
    Json,
    /// Kubernetes' protobuf; `json_too` when Accept also takes JSON (what
    /// client-go sends: `application/vnd.kubernetes.protobuf,
    /// application/json`), for kinds that have no protobuf message.
    Protobuf {
        json_too: bool,
    },
}

/// The first media type of `Accept` the server can write, as kube-apiserver
/// negotiates it: protobuf for objects (not for `as=Table` and other
/// transformed representations, which are JSON only), else JSON (also for
/// `*/*`, an absent header, or types this server does not write).
pub fn response_encoding(headers: &HeaderMap) -> Encoding {
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let json_like = |media: &str| {
        matches!(
            media,
            "application/json" | "*/*" | "application/*" | "application/yaml"
        )
    };
    let entries: Vec<(String, bool)> = accept
        .split(',')
        .map(|entry| {
            let mut params = entry.split(';').map(str::trim);
            let media = params.next().unwrap_or("").to_ascii_lowercase();
            let transformed = params.any(|p| p.starts_with("as="));
            (media, transformed)
        })
        .collect();
    for (i, (media, transformed)) in entries.iter().enumerate() {
        if media == super::protobuf::MEDIA_TYPE && !transformed {
            let json_too = entries[i + 1..].iter().any(|(m, _)| json_like(m));
            return Encoding::Protobuf { json_too };
        }
        if json_like(media) {
            return Encoding::Json;
        }
    }
    Encoding::Json
}

/// The representation a client asked for in `Accept`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Representation {
    Object,
    /// `as=Table;g=meta.k8s.io;v=v1` (or v1beta1).
    Table,
    /// `as=PartialObjectMetadata` / `PartialObjectMetadataList`.
    Metadata,
}

/// Picks the first representation of `Accept` that the server serves.
pub fn representation(headers: &HeaderMap) -> Representation {
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    for entry in accept.split(',') {
        let params: Vec<&str> = entry.split(';').map(str::trim).collect();
        let as_ = params.iter().find_map(|p| p.strip_prefix("as="));
        let group = params.iter().find_map(|p| p.strip_prefix("g="));
        match (as_, group) {
            (None, _) => return Representation::Object,
            (Some("Table"), Some("meta.k8s.io")) => return Representation::Table,
            (Some("PartialObjectMetadata" | "PartialObjectMetadataList"), Some("meta.k8s.io")) => {
                return Representation::Metadata;
            }
            _ => {}
        }
    }
    Representation::Object
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn path(p: &str) -> Option<ApiPath> {
        parse_path(&Registry::builtin(), p).unwrap()
    }

    #[test]
    fn paths_resolve_like_kubernetes() {
        let Some(ApiPath::Resource(r)) = path("/api/v1/namespaces/default/pods/p1/status") else {
            panic!("not a resource")
        };
        assert_eq!(
            (r.kind.plural.as_str(), r.namespace.as_deref()),
            ("pods", Some("default"))
        );
        assert_eq!(
            (r.name.as_deref(), r.subresource.as_deref()),
            (Some("p1"), Some("status"))
        );
        let Some(ApiPath::Resource(r)) = path("/api/v1/namespaces/kube-system") else {
            panic!("not a resource")
        };
        assert_eq!(
            (r.kind.plural.as_str(), r.name.as_deref()),
            ("namespaces", Some("kube-system"))
        );
        let Some(ApiPath::Resource(r)) = path("/api/v1/namespaces/x/status") else {
            panic!("not a resource")
        };
        assert_eq!(
            (r.name.as_deref(), r.subresource.as_deref()),
            (Some("x"), Some("status"))
        );
        let Some(ApiPath::Resource(r)) = path("/apis/apps/v1/deployments") else {
            panic!("not a resource")
        };
        assert!(r.namespace.is_none() && r.name.is_none());
        assert!(matches!(
            path("/apis/apps/v1"),
            Some(ApiPath::GroupVersion { .. })
        ));
        assert!(matches!(path("/apis"), Some(ApiPath::Groups)));
        assert!(parse_path(&Registry::builtin(), "/apis/apps/v1/widgets").is_err());
        assert!(parse_path(&Registry::builtin(), "/api/v1/namespaces/a/nodes/x").is_err());
    }

    #[test]
    fn continue_tokens_round_trip() {
        let t = encode_continue("/registry/apps/deployments/ns/a");
        assert_eq!(
            decode_continue(&t).unwrap(),
            "/registry/apps/deployments/ns/a"
        );
        assert!(decode_continue("zz").is_err());
        assert!(decode_continue("abc").is_err());
    }

    #[test]
    fn accept_negotiation() {
        let mut h = HeaderMap::new();
        assert_eq!(representation(&h), Representation::Object);
        h.insert(
            header::ACCEPT,
            HeaderValue::from_static(
                "application/json;as=Table;v=v1;g=meta.k8s.io,application/json",
            ),
        );
        assert_eq!(representation(&h), Representation::Table);
        h.insert(
            header::ACCEPT,
            HeaderValue::from_static("application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json"),
        );
        assert_eq!(representation(&h), Representation::Object);
    }

    #[test]
    fn protobuf_is_answered_first_when_asked_first() {
        let enc = |accept: &'static str| {
            let mut h = HeaderMap::new();
            h.insert(header::ACCEPT, HeaderValue::from_static(accept));
            response_encoding(&h)
        };
        // client-go's typed clients with protobuf.
        assert_eq!(
            enc("application/vnd.kubernetes.protobuf, */*"),
            Encoding::Protobuf { json_too: true }
        );
        assert_eq!(
            enc("application/vnd.kubernetes.protobuf"),
            Encoding::Protobuf { json_too: false }
        );
        assert_eq!(
            enc("application/json, application/vnd.kubernetes.protobuf"),
            Encoding::Json
        );
        // Tables and partial metadata are JSON only.
        assert_eq!(
            enc("application/vnd.kubernetes.protobuf;as=Table;v=v1;g=meta.k8s.io,application/json"),
            Encoding::Json
        );
        assert_eq!(response_encoding(&HeaderMap::new()), Encoding::Json);
    }

    #[test]
    fn bodies_decode_or_fail_cleanly() {
        assert!(decode_object(b"{\"a\":1}", "application/json").is_ok());
        assert!(decode_object(b"a: 1\n", "application/yaml").is_ok());
        assert_eq!(
            decode_object(b"[1]", "application/json")
                .unwrap_err()
                .code(),
            400
        );
        assert_eq!(decode_object(b"{", "").unwrap_err().code(), 400);
        // Protobuf: built-in kinds only; hami's kinds 415, garbage 400.
        assert_eq!(
            decode_object(b"x", "application/vnd.kubernetes.protobuf")
                .unwrap_err()
                .code(),
            400
        );
        let policy = b"k8s\0\x0a\x2c\x0a\x17policy.hami.io/v1alpha1\x12\x11PropagationPolicy";
        assert_eq!(
            decode_object(policy, "application/vnd.kubernetes.protobuf")
                .unwrap_err()
                .code(),
            415
        );
    }
}
