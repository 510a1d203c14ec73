//! Discovery documents (`/api`, `/apis`, `/apis/{group}`, the resource lists),
//! `/version`, and the OpenAPI endpoints.
//!
//! Discovery is served in the legacy format with `Content-Type:
//! application/json` whatever the client asks for: clients that first ask for
//! aggregated discovery (`as=APIGroupDiscoveryList`) see a plain document and
//! fall back to the legacy walk, as client-go does.

use std::sync::Arc;

use axum::Json;
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{Value, json};

use super::State;
use super::dispatch::json_response;
use super::registry::ResourceKind;
use super::request::ApiPath;
use super::status::ApiError;

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
    if kind.status_subresource {
        entries.push(json!({
            "name": format!("{}/status", kind.plural),
            "singularName": "",
            "namespaced": kind.namespaced,
            "kind": kind.kind,
            "verbs": ["get", "patch", "update"],
        }));
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

/// Serves a discovery path.
pub fn serve(state: &Arc<State>, path: &ApiPath) -> Result<Response, ApiError> {
    let registry = &state.registry;
    let body = match path {
        ApiPath::CoreVersions => json!({
            "kind": "APIVersions",
            "versions": if registry.has_core() { vec!["v1"] } else { Vec::new() },
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": ""}],
        }),
        ApiPath::Groups => json!({
            "kind": "APIGroupList",
            "apiVersion": "v1",
            "groups": registry.groups().iter().map(|g| group_json(&g.name, &g.versions)).collect::<Vec<_>>(),
        }),
        ApiPath::Group(name) => {
            let groups = registry.groups();
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

/// `/openapi/...`: not served yet (answers 404 so clients skip client-side
/// validation against it).
pub fn openapi(_state: &Arc<State>, path: &str) -> Option<Result<Response, ApiError>> {
    if path == "/openapi" || path.starts_with("/openapi/") {
        return Some(Err(not_found(path)));
    }
    None
}
