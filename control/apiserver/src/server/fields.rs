//! Unknown fields in a write's body, as kube-apiserver treats them for the
//! built-in kinds (decoded into Go types, so an unknown field can never be
//! stored): they are dropped, and `fieldValidation` says what else happens:
//! `Strict` refuses the request (400, `strict decoding error: unknown field
//! "spec.foo"`), `Warn` answers a `Warning: 299` header per field, `Ignore`
//! says nothing. hami's own kinds keep their own strict validation.

use axum::http::HeaderValue;
use axum::response::Response;
use serde_json::Value;

use super::protobuf::schema::message_of;
use super::registry::ResourceKind;
use super::request::FieldValidation;
use super::status::ApiError;

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

/// Removes what `schema` (an inlined OpenAPI v3 schema) does not describe
/// from `value`; the paths of what was removed, in document order.
pub fn prune_unknown(schema: &Value, value: &mut Value) -> Vec<String> {
    let mut out = Vec::new();
    walk(schema, value, "", &mut out);
    out
}

fn walk(schema: &Value, value: &mut Value, path: &str, out: &mut Vec<String>) {
    if schema
        .get("x-kubernetes-preserve-unknown-fields")
        .and_then(Value::as_bool)
        == Some(true)
    {
        return;
    }
    match value {
        Value::Object(map) => {
            let extra = schema.get("additionalProperties");
            let Some(props) = schema.get("properties").and_then(Value::as_object) else {
                // A map (additionalProperties) or a free-form object (RawExtension, FieldsV1).
                if let Some(item) = extra.filter(|e| e.is_object()) {
                    for (k, v) in map.iter_mut() {
                        walk(item, v, &join(path, k), out);
                    }
                }
                return;
            };
            let keys: Vec<String> = map.keys().cloned().collect();
            for k in keys {
                let here = join(path, &k);
                if let Some(sub) = props.get(&k) {
                    if let Some(v) = map.get_mut(&k) {
                        walk(sub, v, &here, out);
                    }
                } else if let Some(item) = extra.filter(|e| e.is_object()) {
                    if let Some(v) = map.get_mut(&k) {
                        walk(item, v, &here, out);
                    }
                } else if extra.and_then(Value::as_bool) != Some(true) {
                    map.remove(&k);
                    out.push(here);
                }
            }
        }
        Value::Array(items) => {
            if let Some(item) = schema.get("items") {
                for (i, v) in items.iter_mut().enumerate() {
                    walk(item, v, &format!("{path}[{i}]"), out);
                }
            }
        }
        _ => {}
    }
}

/// Drops the unknown fields of a built-in object and applies `mode`:
/// `Err` for Strict, the warnings to send for Warn.
pub fn check(
    kind: &ResourceKind,
    mode: FieldValidation,
    object: &mut Value,
) -> Result<Vec<String>, ApiError> {
    let Some(schema) = &kind.schema else {
        return Ok(Vec::new());
    };
    let unknown = if kind.custom {
        // A custom resource: pruned and defaulted by its CRD's structural
        // schema, as kube-apiserver decodes it.
        let pruned = super::crd::schema::prune(schema, object);
        super::crd::schema::apply_defaults(schema, object);
        pruned
    } else if message_of(&kind.api_version(), &kind.kind).is_none() {
        return Ok(Vec::new());
    } else {
        prune_unknown(schema, object)
    };
    if unknown.is_empty() {
        return Ok(unknown);
    }
    let listed: Vec<String> = unknown
        .iter()
        .map(|f| format!("unknown field {f:?}"))
        .collect();
    match mode {
        FieldValidation::Strict => Err(ApiError::bad_request(format!(
            "{kind} in version {version:?} cannot be handled as a {kind}: strict decoding error: {fields}",
            kind = kind.kind,
            version = kind.version,
            fields = listed.join(", ")
        ))),
        FieldValidation::Warn => Ok(listed),
        FieldValidation::Ignore => Ok(Vec::new()),
    }
}

/// Adds one `Warning: 299 - "..."` header per warning, as kube-apiserver
/// does (kubectl prints them as `Warning: ...`).
pub fn with_warnings(mut response: Response, warnings: &[String]) -> Response {
    for w in warnings {
        let text = format!("299 - {:?}", w);
        if let Ok(v) = HeaderValue::from_str(&text) {
            response.headers_mut().append("warning", v);
        }
    }
    response
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use serde_json::json;

    use super::*;

    #[test]
    fn unknown_fields_are_found_at_every_depth_and_removed() {
        let schema =
            crate::server::builtin::openapi_schema::<k8s_openapi::api::apps::v1::Deployment>()
                .unwrap();
        let mut d = json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "labels": {"any": "label"}, "colour": "red"},
            "spec": {
                "replicas": 1, "replica": 2,
                "selector": {"matchLabels": {"app": "web"}},
                "strategy": {"rollingUpdate": {"maxSurge": "25%"}},
                "template": {"metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [
                        {"name": "a", "image": "x", "resources": {"limits": {"cpu": "1"}}},
                        {"name": "b", "image": "y", "imagePullPolice": "Always"}
                    ]}}
            }
        });
        let unknown = prune_unknown(&schema, &mut d);
        assert_eq!(
            unknown,
            [
                "metadata.colour",
                "spec.replica",
                "spec.template.spec.containers[1].imagePullPolice"
            ]
        );
        assert!(d["spec"].get("replica").is_none());
        assert_eq!(d["spec"]["replicas"], 1);
        assert_eq!(d["metadata"]["labels"]["any"], "label");
        assert_eq!(d["spec"]["strategy"]["rollingUpdate"]["maxSurge"], "25%");
    }
}
