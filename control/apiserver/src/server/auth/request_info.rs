//! A request's authorization attributes from its method, path and query
//! alone, as kube-apiserver's `RequestInfoFactory` computes them (no lookup
//! of the served kinds: an unknown resource is authorized, then answered 404).
//!
//! * `/api/{v}/...` and `/apis/{g}/{v}/...` with at least one more segment
//!   are resource requests; everything else (`/api`, `/apis/apps/v1`,
//!   `/healthz`, `/metrics`, `/openapi/v3`) is a non-resource request whose
//!   verb is the lowercased method (HEAD reads as `get`).
//! * A leading `watch` segment (the legacy `/watch/` paths) makes the verb
//!   `watch`; otherwise POST create, GET/HEAD get, PUT update, PATCH patch,
//!   DELETE delete.
//! * `namespaces/{ns}/{resource}/...` sets the namespace, unless the third
//!   segment is a namespace subresource (`status`, `finalize`): then the
//!   resource is `namespaces` itself. `/api/v1/namespaces/{ns}` is the
//!   namespace `{ns}` in namespace `{ns}`, as kube has it.
//! * A GET without a name is `list`, or `watch` with `watch=true`; a
//!   `metadata.name=<n>` field selector gives it the name `<n>`. A DELETE
//!   without a name is `deletecollection`.
//!
//! One difference, so that authorization matches what is served: hami serves
//! a GET of a named object with `watch=true` as a watch of that object, so it
//! is authorized as `watch` (kube answers such a GET as a plain get).
//! Query parameters are read as the dispatcher reads them: the last
//! `watch` and the last `fieldSelector` count, `watch` is true for `1`,
//! `true` and `True`.

use axum::extract::Query as AxumQuery;
use axum::http::{Method, Uri};

use crate::server::rbac::Attributes;

/// The attributes `policy.authorize` is asked about for this request.
pub fn attributes(method: &Method, uri: &Uri) -> Attributes {
    let path = uri.path();
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, rest) = match segments.as_slice() {
        ["api", _version, rest @ ..] if !rest.is_empty() => ("", rest),
        ["apis", group, _version, rest @ ..] if !rest.is_empty() => (*group, rest),
        _ => {
            return Attributes::NonResource {
                verb: non_resource_verb(method),
                path: path.to_owned(),
            };
        }
    };
    let (mut verb, mut parts) = match rest {
        ["watch", tail @ ..] if !tail.is_empty() => ("watch".to_owned(), tail),
        _ => (resource_verb(method).to_owned(), rest),
    };
    let mut namespace = "";
    if parts.first() == Some(&"namespaces")
        && let Some(ns) = parts.get(1)
    {
        namespace = ns;
        if parts
            .get(2)
            .is_some_and(|third| !matches!(*third, "status" | "finalize"))
        {
            parts = &parts[2..];
        }
    }
    let resource = parts.first().copied().unwrap_or("");
    let mut name = parts.get(1).copied().unwrap_or("").to_owned();
    let subresource = parts.get(2).copied().unwrap_or("");
    let query = query_pairs(uri);
    let last = |key: &str| {
        query
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    };
    let watch = last("watch").is_some_and(|v| matches!(v, "1" | "true" | "True"));
    if verb == "get" {
        if name.is_empty() {
            verb = if watch { "watch" } else { "list" }.to_owned();
            if let Some(n) = last("fieldSelector").and_then(exact_name) {
                name = n.to_owned();
            }
        } else if watch {
            verb = "watch".to_owned();
        }
    }
    if verb == "delete" && name.is_empty() {
        verb = "deletecollection".to_owned();
    }
    let some = |s: &str| (!s.is_empty()).then(|| s.to_owned());
    Attributes::Resource {
        verb,
        api_group: group.to_owned(),
        resource: resource.to_owned(),
        subresource: some(subresource),
        namespace: some(namespace),
        name: some(&name),
    }
}

fn query_pairs(uri: &Uri) -> Vec<(String, String)> {
    AxumQuery::<Vec<(String, String)>>::try_from_uri(uri)
        .map(|q| q.0)
        .unwrap_or_default()
}

fn resource_verb(method: &Method) -> &'static str {
    match *method {
        Method::POST => "create",
        Method::GET | Method::HEAD => "get",
        Method::PUT => "update",
        Method::PATCH => "patch",
        Method::DELETE => "delete",
        // kube's empty verb: only a `*` rule allows it.
        _ => "",
    }
}

fn non_resource_verb(method: &Method) -> String {
    if *method == Method::HEAD {
        return "get".to_owned();
    }
    method.as_str().to_ascii_lowercase()
}

/// The name a field selector requires (`metadata.name=<n>` or `==`), when it
/// is a valid path segment (kube's `RequiresExactMatch` and
/// `IsValidPathSegmentName`).
fn exact_name(selector: &str) -> Option<&str> {
    selector.split(',').find_map(|term| {
        let term = term.trim();
        if term.contains("!=") {
            return None;
        }
        let (field, value) = term.split_once("==").or_else(|| term.split_once('='))?;
        let value = value.trim();
        (field.trim() == "metadata.name"
            && !value.is_empty()
            && value != "."
            && value != ".."
            && !value.contains(['/', '%']))
        .then_some(value)
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn res(verb: &str, group: &str, resource: &str, ns: &str, name: &str) -> Attributes {
        let (resource, subresource) = match resource.split_once('/') {
            Some((r, s)) => (r, Some(s.to_owned())),
            None => (resource, None),
        };
        let some = |s: &str| (!s.is_empty()).then(|| s.to_owned());
        Attributes::Resource {
            verb: verb.to_owned(),
            api_group: group.to_owned(),
            resource: resource.to_owned(),
            subresource,
            namespace: some(ns),
            name: some(name),
        }
    }

    fn url(verb: &str, path: &str) -> Attributes {
        Attributes::NonResource {
            verb: verb.to_owned(),
            path: path.to_owned(),
        }
    }

    #[test]
    fn attributes_follow_kubes_request_info() {
        use Method as M;
        let cases: Vec<(Method, &str, Attributes)> = vec![
            // Non-resource paths, including discovery.
            (M::GET, "/healthz", url("get", "/healthz")),
            (M::HEAD, "/readyz", url("get", "/readyz")),
            (M::GET, "/metrics", url("get", "/metrics")),
            (M::POST, "/metrics", url("post", "/metrics")),
            (M::PUT, "/x", url("put", "/x")),
            (M::PATCH, "/x", url("patch", "/x")),
            (M::DELETE, "/x", url("delete", "/x")),
            (M::GET, "/", url("get", "/")),
            (M::GET, "/api", url("get", "/api")),
            (M::GET, "/api/v1", url("get", "/api/v1")),
            (M::GET, "/apis", url("get", "/apis")),
            (M::GET, "/apis/apps", url("get", "/apis/apps")),
            (M::GET, "/apis/apps/v1", url("get", "/apis/apps/v1")),
            (
                M::GET,
                "/openapi/v3/apis/apps/v1",
                url("get", "/openapi/v3/apis/apps/v1"),
            ),
            (M::GET, "/version", url("get", "/version")),
            // Core resources.
            (M::GET, "/api/v1/pods", res("list", "", "pods", "", "")),
            (
                M::GET,
                "/api/v1/pods?watch=true",
                res("watch", "", "pods", "", ""),
            ),
            (
                M::GET,
                "/api/v1/pods?watch=1",
                res("watch", "", "pods", "", ""),
            ),
            (
                M::GET,
                "/api/v1/pods?watch=false",
                res("list", "", "pods", "", ""),
            ),
            (
                M::GET,
                "/api/v1/pods?watch=true&watch=false",
                res("list", "", "pods", "", ""),
            ),
            (
                M::GET,
                "/api/v1/namespaces/default/pods",
                res("list", "", "pods", "default", ""),
            ),
            (
                M::HEAD,
                "/api/v1/namespaces/default/pods/p1",
                res("get", "", "pods", "default", "p1"),
            ),
            (
                M::GET,
                "/api/v1/namespaces/default/pods/p1/status",
                res("get", "", "pods/status", "default", "p1"),
            ),
            (
                M::POST,
                "/api/v1/namespaces/default/pods",
                res("create", "", "pods", "default", ""),
            ),
            (
                M::PUT,
                "/api/v1/namespaces/default/pods/p1",
                res("update", "", "pods", "default", "p1"),
            ),
            (
                M::PATCH,
                "/api/v1/namespaces/default/pods/p1/status",
                res("patch", "", "pods/status", "default", "p1"),
            ),
            (
                M::DELETE,
                "/api/v1/namespaces/default/pods/p1",
                res("delete", "", "pods", "default", "p1"),
            ),
            (
                M::DELETE,
                "/api/v1/namespaces/default/pods",
                res("deletecollection", "", "pods", "default", ""),
            ),
            (M::OPTIONS, "/api/v1/pods", res("", "", "pods", "", "")),
            // Namespaces themselves.
            (
                M::GET,
                "/api/v1/namespaces",
                res("list", "", "namespaces", "", ""),
            ),
            (
                M::POST,
                "/api/v1/namespaces",
                res("create", "", "namespaces", "", ""),
            ),
            (
                M::GET,
                "/api/v1/namespaces/kube-system",
                res("get", "", "namespaces", "kube-system", "kube-system"),
            ),
            (
                M::PUT,
                "/api/v1/namespaces/x/status",
                res("update", "", "namespaces/status", "x", "x"),
            ),
            (
                M::PUT,
                "/api/v1/namespaces/x/finalize",
                res("update", "", "namespaces/finalize", "x", "x"),
            ),
            // Named groups, subresources, cluster scope.
            (
                M::GET,
                "/apis/apps/v1/namespaces/ns/deployments/web/scale",
                res("get", "apps", "deployments/scale", "ns", "web"),
            ),
            (
                M::GET,
                "/apis/apps/v1/deployments",
                res("list", "apps", "deployments", "", ""),
            ),
            (
                M::DELETE,
                "/apis/rbac.authorization.k8s.io/v1/clusterroles/view",
                res(
                    "delete",
                    "rbac.authorization.k8s.io",
                    "clusterroles",
                    "",
                    "view",
                ),
            ),
            (
                M::POST,
                "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
                res(
                    "create",
                    "authorization.k8s.io",
                    "selfsubjectaccessreviews",
                    "",
                    "",
                ),
            ),
            (
                M::POST,
                "/apis/authorization.k8s.io/v1/namespaces/ns/localsubjectaccessreviews",
                res(
                    "create",
                    "authorization.k8s.io",
                    "localsubjectaccessreviews",
                    "ns",
                    "",
                ),
            ),
            // Watches: the query, the legacy path, a named watch.
            (
                M::GET,
                "/api/v1/watch/namespaces/ns/pods",
                res("watch", "", "pods", "ns", ""),
            ),
            (
                M::GET,
                "/api/v1/watch/namespaces/ns/pods/p",
                res("watch", "", "pods", "ns", "p"),
            ),
            (
                M::GET,
                "/api/v1/watch/pods",
                res("watch", "", "pods", "", ""),
            ),
            (
                M::GET,
                "/api/v1/namespaces/ns/pods/p?watch=true",
                res("watch", "", "pods", "ns", "p"),
            ),
            // A field selector on metadata.name names the object.
            (
                M::GET,
                "/api/v1/namespaces/kube-public/configmaps?fieldSelector=metadata.name%3Dcluster-info",
                res("list", "", "configmaps", "kube-public", "cluster-info"),
            ),
            (
                M::GET,
                "/api/v1/namespaces/ns/configmaps?watch=true&fieldSelector=metadata.name%3D%3Dc",
                res("watch", "", "configmaps", "ns", "c"),
            ),
            (
                M::GET,
                "/api/v1/configmaps?fieldSelector=metadata.namespace%3Dx,metadata.name%3Dc",
                res("list", "", "configmaps", "", "c"),
            ),
            (
                M::GET,
                "/api/v1/configmaps?fieldSelector=metadata.name!%3Dc",
                res("list", "", "configmaps", "", ""),
            ),
            (
                M::GET,
                "/api/v1/configmaps?fieldSelector=metadata.name%3D..",
                res("list", "", "configmaps", "", ""),
            ),
            (
                M::GET,
                "/api/v1/configmaps?fieldSelector=metadata.name%3Da&fieldSelector=",
                res("list", "", "configmaps", "", ""),
            ),
            // A DELETE with a selector is still a collection.
            (
                M::DELETE,
                "/api/v1/namespaces/ns/configmaps?fieldSelector=metadata.name%3Dc",
                res("deletecollection", "", "configmaps", "ns", ""),
            ),
        ];
        for (method, uri, want) in cases {
            let got = attributes(&method, &uri.parse::<Uri>().unwrap());
            assert_eq!(got, want, "{method} {uri}");
        }
    }
}
