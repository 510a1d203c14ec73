//! Discovery documents (`/api`, `/apis`, `/apis/{group}`, the resource lists),
//! `/version`, and the OpenAPI endpoints.
//!
//! Besides the registry's kinds, `authorization.k8s.io/v1` lists the access
//! reviews (create only, see [`super::auth::reviews`]), which are served by
//! handlers of their own and stored nowhere (so not in the OpenAPI documents).
//!
//! Discovery is served in the legacy format with `Content-Type:
//! application/json` whatever the client asks for: clients that first ask for
//! aggregated discovery (`as=APIGroupDiscoveryList`) see a plain document and
//! fall back to the legacy walk, as client-go does.

use std::sync::Arc;

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::State;
use super::auth::reviews;
use super::dispatch::json_response;
use super::registry::ResourceKind;
use super::request::ApiPath;
use super::status::ApiError;
use crate::openapi::{OpenApiResource, OpenApiV3, inline_schema};

/// The Kubernetes version whose API shapes hami follows.
pub const KUBE_MAJOR: &str = "1";
pub const KUBE_MINOR: &str = "33";

pub async fn version() -> Json<Value> {
    Json(json!({
        "major": KUBE_MAJOR,
        "minor": KUBE_MINOR,
        "gitVersion": format!("v{KUBE_MAJOR}.{KUBE_MINOR}.0-hami.{}", env!("CARGO_PKG_VERSION")),
        "gitCommit": "",
        "gitTreeState": "clean",
        "buildDate": "",
        "goVersion": "",
        "compiler": "rustc",
        "platform": format!("{}/{}", std::env::consts::OS, std::env::consts::ARCH),
    }))
}

const VERBS: [&str; 8] = [
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];

fn resource_entries(kind: &ResourceKind) -> Vec<Value> {
    let mut main = json!({
        "name": kind.plural,
        "singularName": kind.singular,
        "namespaced": kind.namespaced,
        "kind": kind.kind,
        "verbs": VERBS,
    });
    if !kind.short_names.is_empty() {
        main["shortNames"] = json!(kind.short_names);
    }
    if !kind.categories.is_empty() {
        main["categories"] = json!(kind.categories);
    }
    let mut entries = vec![main];
    if kind.scale.is_some() {
        entries.push(json!({
            "name": format!("{}/scale", kind.plural),
            "singularName": "",
            "namespaced": kind.namespaced,
            "group": "autoscaling",
            "version": "v1",
            "kind": "Scale",
            "verbs": ["get", "patch", "update"],
        }));
    }
    if kind.status_subresource {
        entries.push(json!({
            "name": format!("{}/status", kind.plural),
            "singularName": "",
            "namespaced": kind.namespaced,
            "kind": kind.kind,
            "verbs": ["get", "patch", "update"],
        }));
    }
    if super::csr::is_csr(kind) {
        entries.push(json!({
            "name": format!("{}/{}", kind.plural, super::csr::APPROVAL),
            "singularName": "",
            "namespaced": kind.namespaced,
            "kind": kind.kind,
            "verbs": ["get", "patch", "update"],
        }));
    }
    // kube lists the TokenRequest subresource of ServiceAccounts.
    if super::auth::service_account::token_request::serves(kind) {
        entries.push(super::auth::service_account::token_request::discovery_entry());
    }
    entries
}

fn group_json(name: &str, versions: &[String]) -> Value {
    let gv = |v: &String| json!({"groupVersion": format!("{name}/{v}"), "version": v});
    json!({
        "name": name,
        "versions": versions.iter().map(gv).collect::<Vec<_>>(),
        "preferredVersion": versions.first().map(gv).unwrap_or(Value::Null),
    })
}

fn not_found(what: &str) -> ApiError {
    ApiError::NotFound {
        message: format!("the server could not find the requested resource ({what})"),
        target: Default::default(),
    }
}

/// The served groups: the registry's, then `authorization.k8s.io` (the
/// access reviews) unless the registry serves it itself.
fn served_groups(registry: &super::Registry) -> Vec<super::registry::GroupVersions> {
    let mut groups = registry.groups();
    if !groups.iter().any(|g| g.name == reviews::GROUP) {
        groups.push(super::registry::GroupVersions {
            name: reviews::GROUP.to_owned(),
            versions: vec![reviews::VERSION.to_owned()],
        });
    }
    groups
}

/// Serves a discovery path.
pub fn serve(state: &Arc<State>, path: &ApiPath) -> Result<Response, ApiError> {
    let registry = state.registry.load();
    let body = match path {
        ApiPath::CoreVersions => json!({
            "kind": "APIVersions",
            "versions": if registry.has_core() { vec!["v1"] } else { Vec::new() },
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": ""}],
        }),
        ApiPath::Groups => json!({
            "kind": "APIGroupList",
            "apiVersion": "v1",
            "groups": served_groups(&registry).iter().map(|g| group_json(&g.name, &g.versions)).collect::<Vec<_>>(),
        }),
        ApiPath::Group(name) => {
            let groups = served_groups(&registry);
            let group = groups
                .iter()
                .find(|g| &g.name == name)
                .ok_or_else(|| not_found(name))?;
            let mut body = group_json(&group.name, &group.versions);
            body["kind"] = json!("APIGroup");
            body["apiVersion"] = json!("v1");
            body
        }
        ApiPath::GroupVersion { group, version } => {
            let kinds = registry.resources(group, version);
            if kinds.is_empty() && group == reviews::GROUP && version == reviews::VERSION {
                return Ok(json_response(StatusCode::OK, &reviews::discovery_list()));
            }
            if kinds.is_empty() {
                return Err(not_found(&format!("{group}/{version}")));
            }
            let group_version = kinds[0].api_version();
            json!({
                "kind": "APIResourceList",
                "apiVersion": "v1",
                "groupVersion": group_version,
                "resources": kinds.iter().flat_map(|k| resource_entries(k)).collect::<Vec<_>>(),
            })
        }
        ApiPath::Resource(_) => return Err(not_found("discovery")),
    };
    Ok(json_response(StatusCode::OK, &body))
}

/// The registry as the OpenAPI builder describes it.
fn openapi_resources(state: &State) -> Vec<OpenApiResource> {
    state
        .registry
        .load()
        .kinds()
        .iter()
        .map(|k| {
            let schema = k.schema.clone().unwrap_or_else(
                || json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true}),
            );
            OpenApiResource {
                group: k.group.clone(),
                version: k.version.clone(),
                kind: k.kind.clone(),
                plural: k.plural.clone(),
                namespaced: k.namespaced,
                has_status: k.status_subresource,
                schema: inline_schema(&k.group, &k.version, &k.kind, &schema),
            }
        })
        .collect()
}

fn bytes_response(body: &[u8], immutable: bool) -> Response {
    let mut response = (StatusCode::OK, body.to_vec()).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if immutable {
        headers.insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static("public, immutable"),
        );
    }
    response
}

/// `/openapi/v3` and `/openapi/v3/{group-version}` (built once, on first use).
/// `/openapi/v2` is not served: clients use v3.
pub fn openapi(
    state: &Arc<State>,
    path: &str,
    query: Option<&str>,
) -> Option<Result<Response, ApiError>> {
    if path != "/openapi" && !path.starts_with("/openapi/") {
        return None;
    }
    let docs = {
        let generation = state.registry.generation();
        let mut cached = state.openapi.lock();
        match &*cached {
            Some((built_for, docs)) if *built_for == generation => docs.clone(),
            _ => {
                let docs = Arc::new(
                    OpenApiV3::build(&openapi_resources(state))
                        .map_err(|e| tracing::error!(error = %e, "building OpenAPI documents"))
                        .ok(),
                );
                *cached = Some((generation, docs.clone()));
                docs
            }
        }
    };
    let Some(docs) = docs.as_ref() else {
        return Some(Err(ApiError::internal(
            "OpenAPI documents could not be built",
        )));
    };
    let trimmed = path.trim_end_matches('/');
    if trimmed == "/openapi/v3" {
        return Some(Ok(bytes_response(docs.root_json(), false)));
    }
    let Some(gv) = trimmed.strip_prefix("/openapi/v3/") else {
        return Some(Err(not_found(path)));
    };
    Some(match docs.document_json(gv) {
        Some(body) => {
            let hash = docs.document_hash(gv).unwrap_or_default();
            let asked = query
                .into_iter()
                .flat_map(|q| q.split('&'))
                .any(|kv| kv == format!("hash={hash}"));
            Ok(bytes_response(body, asked))
        }
        None => Err(not_found(path)),
    })
}
