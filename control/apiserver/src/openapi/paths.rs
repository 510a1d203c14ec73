//! The `paths` of one resource: collection, item and status, namespaced and
//! cluster-wide, with Kubernetes' operation extensions and query parameters.

use serde_json::{Map, Value, json};

use super::OpenApiResource;
use super::schemas::{PATCH_SCHEMA, REF_PREFIX};

/// Content types of the PATCH request body.
///
/// `application/strategic-merge-patch+json` is accepted by the server for built-in
/// kinds but deliberately not listed here. kubectl apply (1.32) computes its patch from
/// the OpenAPI v3 schemas when this list names strategic merge patch, reading the
/// `x-kubernetes-patch-strategy` / `x-kubernetes-patch-merge-key` extensions, which the
/// k8s-openapi schemas do not carry; it would then replace whole container lists and
/// never send `$retainKeys`. Without it, kubectl uses the merge keys compiled into its
/// own Go types for built-in kinds, which are Kubernetes' own, and a JSON merge patch for
/// custom kinds. The server's strategic merge patch implements the same keys.
const PATCH_CONTENT_TYPES: [&str; 3] = [
    "application/json-patch+json",
    "application/merge-patch+json",
    "application/apply-patch+yaml",
];

fn query(name: &str, description: &str, ty: &str) -> Value {
    json!({"name": name, "in": "query", "description": description,
        "schema": {"type": ty, "uniqueItems": true}})
}

fn path_param(name: &str, description: &str) -> Value {
    json!({"name": name, "in": "path", "required": true, "description": description,
        "schema": {"type": "string", "uniqueItems": true}})
}

fn write_params(patch: bool) -> Vec<Value> {
    let mut v = vec![
        query(
            "dryRun",
            "When present, indicates that modifications should not be persisted. Valid value: All",
            "string",
        ),
        query(
            "fieldManager",
            "fieldManager is a name associated with the actor or entity that is making these changes.",
            "string",
        ),
        query(
            "fieldValidation",
            "How the server handles unknown or duplicate fields in the request: Ignore, Warn or Strict.",
            "string",
        ),
    ];
    if patch {
        v.push(query("force", "Force is going to \"force\" Apply requests: conflicting fields owned by other managers are taken over.", "boolean"));
    }
    v
}

fn list_params() -> Vec<Value> {
    vec![
        query(
            "allowWatchBookmarks",
            "requests watch events with type BOOKMARK.",
            "boolean",
        ),
        query(
            "continue",
            "The continue option should be set when retrieving more results from the server.",
            "string",
        ),
        query(
            "fieldSelector",
            "A selector to restrict the list of returned objects by their fields.",
            "string",
        ),
        query(
            "labelSelector",
            "A selector to restrict the list of returned objects by their labels.",
            "string",
        ),
        query(
            "limit",
            "limit is a maximum number of responses to return for a list call.",
            "integer",
        ),
        query(
            "resourceVersion",
            "resourceVersion sets a constraint on what resource versions a request may be served from.",
            "string",
        ),
        query(
            "resourceVersionMatch",
            "resourceVersionMatch determines how resourceVersion is applied to list calls.",
            "string",
        ),
        query(
            "timeoutSeconds",
            "Timeout for the list/watch call.",
            "integer",
        ),
        query(
            "watch",
            "Watch for changes to the described resources and return them as a stream of add, update, and remove notifications.",
            "boolean",
        ),
    ]
}

fn delete_params() -> Vec<Value> {
    vec![
        query(
            "dryRun",
            "When present, indicates that modifications should not be persisted. Valid value: All",
            "string",
        ),
        query(
            "gracePeriodSeconds",
            "The duration in seconds before the object should be deleted.",
            "integer",
        ),
        query(
            "propagationPolicy",
            "Whether and how garbage collection will be performed: Orphan, Background or Foreground.",
            "string",
        ),
    ]
}

fn schema_ref(name: &str) -> Value {
    json!({"$ref": format!("{REF_PREFIX}{name}")})
}

fn ok(name: &str) -> Value {
    json!({"200": {"description": "OK", "content": {"application/json": {"schema": schema_ref(name)}}},
        "401": {"description": "Unauthorized"}})
}

fn json_body(name: &str) -> Value {
    json!({"required": true, "content": {"application/json": {"schema": schema_ref(name)}}})
}

struct Op<'a> {
    r: &'a OpenApiResource,
    /// `Namespaced` or empty, `ForAllNamespaces` suffix, `Status` suffix: parts of the id.
    scope: &'a str,
    suffix: &'a str,
}

impl Op<'_> {
    fn op(
        &self,
        verb: &str,
        action: &str,
        description: String,
        params: Vec<Value>,
        body: Option<Value>,
        response: Value,
    ) -> Value {
        let r = self.r;
        let mut m = Map::new();
        m.insert("description".into(), description.into());
        m.insert(
            "operationId".into(),
            format!("{verb}{}{}{}{}", gv_id(r), self.scope, r.kind, self.suffix).into(),
        );
        m.insert("tags".into(), json!([gv_id(r)]));
        m.insert("parameters".into(), Value::Array(params));
        if let Some(b) = body {
            m.insert("requestBody".into(), b);
        }
        m.insert("responses".into(), response);
        m.insert("x-kubernetes-action".into(), action.into());
        m.insert("x-kubernetes-group-version-kind".into(), r.gvk());
        Value::Object(m)
    }
}

/// `AppsV1`, `CoreV1`, `PolicyHamiIoV1alpha1`: the group-version part of operation ids.
fn gv_id(r: &OpenApiResource) -> String {
    let group = if r.group.is_empty() {
        "core"
    } else {
        r.group.as_str()
    };
    let mut s = String::new();
    for part in group
        .split(['.', '-'])
        .chain(std::iter::once(r.version.as_str()))
    {
        let mut c = part.chars();
        if let Some(f) = c.next() {
            s.extend(f.to_uppercase());
            s.push_str(c.as_str());
        }
    }
    s
}

/// Adds the paths of resource `r` (whose list component is `list_name`) to `out`.
pub fn resource_paths(r: &OpenApiResource, list_name: &str, out: &mut Map<String, Value>) {
    let base = format!("/{}", r.group_version_path());
    let kind = &r.kind;
    let item = r.schema.name.as_str();
    let status = "io.k8s.apimachinery.pkg.apis.meta.v1.Status";
    let delete_body = Some(
        json!({"content": {"application/json": {"schema": schema_ref("io.k8s.apimachinery.pkg.apis.meta.v1.DeleteOptions")}}}),
    );
    let patch_body = {
        let content: Map<String, Value> = PATCH_CONTENT_TYPES
            .iter()
            .map(|t| ((*t).to_owned(), json!({"schema": schema_ref(PATCH_SCHEMA)})))
            .collect();
        Some(json!({"required": true, "content": content}))
    };
    let (coll, scope, mut ns_param) = if r.namespaced {
        (
            format!("{base}/namespaces/{{namespace}}/{}", r.plural),
            "Namespaced",
            vec![path_param(
                "namespace",
                "object name and auth scope, such as for teams and projects",
            )],
        )
    } else {
        (format!("{base}/{}", r.plural), "", Vec::new())
    };
    let o = Op {
        r,
        scope,
        suffix: "",
    };
    out.insert(coll.clone(), json!({
        "parameters": ns_param.clone(),
        "get": o.op("list", "list", format!("list or watch objects of kind {kind}"), list_params(), None, ok(list_name)),
        "post": o.op("create", "post", format!("create a {kind}"), write_params(false), Some(json_body(item)), ok(item)),
        "delete": o.op("deleteCollection", "deletecollection", format!("delete collection of {kind}"), [delete_params(), list_params()].concat(), delete_body.clone(), ok(status)),
    }));
    ns_param.insert(0, path_param("name", &format!("name of the {kind}")));
    out.insert(format!("{coll}/{{name}}"), json!({
        "parameters": ns_param.clone(),
        "get": o.op("read", "get", format!("read the specified {kind}"), Vec::new(), None, ok(item)),
        "put": o.op("replace", "put", format!("replace the specified {kind}"), write_params(false), Some(json_body(item)), ok(item)),
        "patch": o.op("patch", "patch", format!("partially update the specified {kind}"), write_params(true), patch_body.clone(), ok(item)),
        "delete": o.op("delete", "delete", format!("delete a {kind}"), delete_params(), delete_body, ok(status)),
    }));
    if r.has_status {
        let s = Op {
            r,
            scope,
            suffix: "Status",
        };
        out.insert(format!("{coll}/{{name}}/status"), json!({
            "parameters": ns_param,
            "get": s.op("read", "get", format!("read status of the specified {kind}"), Vec::new(), None, ok(item)),
            "put": s.op("replace", "put", format!("replace status of the specified {kind}"), write_params(false), Some(json_body(item)), ok(item)),
            "patch": s.op("patch", "patch", format!("partially update status of the specified {kind}"), write_params(true), patch_body, ok(item)),
        }));
    }
    if r.namespaced {
        let all = Op {
            r,
            scope: "",
            suffix: "ForAllNamespaces",
        };
        out.insert(format!("{base}/{}", r.plural), json!({
            "get": all.op("list", "list", format!("list or watch objects of kind {kind}"), list_params(), None, ok(list_name)),
        }));
    }
}
