//! Component schemas: built-in kinds from k8s-openapi's schemars schemas, hami kinds from
//! their CRD's `openAPIV3Schema`, and the apimachinery types every document refers to.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{DeleteOptions, ListMeta, ObjectMeta, Status};
use schemars::generate::SchemaSettings;
use schemars::{JsonSchema, SchemaGenerator};
use serde_json::{Value, json};

/// Prefix of a component reference.
pub const REF_PREFIX: &str = "#/components/schemas/";
/// The component every PATCH request body refers to, as Kubernetes names it.
pub const PATCH_SCHEMA: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.Patch";

/// The OpenAPI v3 schema of one kind: the name of its component and every component it
/// needs (its own included), with references of the form `#/components/schemas/NAME`.
#[derive(Clone, Debug, PartialEq)]
pub struct ObjectSchema {
    /// Component name of the object's schema, e.g. `io.k8s.api.apps.v1.Deployment`.
    pub name: String,
    /// Component schemas by name: the object's and all it refers to.
    pub definitions: BTreeMap<String, Value>,
}

fn generator() -> SchemaGenerator {
    SchemaSettings::openapi3().into_generator()
}

fn definitions(mut g: SchemaGenerator) -> BTreeMap<String, Value> {
    g.take_definitions(true).into_iter().collect()
}

/// The schema of built-in kind `K` (any k8s-openapi resource type), e.g.
/// `builtin_schema::<Deployment>()`.
pub fn builtin_schema<K: JsonSchema>() -> ObjectSchema {
    let mut g = generator();
    let _ = g.subschema_for::<K>();
    ObjectSchema {
        name: K::schema_name().into_owned(),
        definitions: definitions(g),
    }
}

/// The schema of a kind from one self-contained OpenAPI v3 schema of the whole object: a
/// CRD's `openAPIV3Schema`, or a built-in's schema with its references inlined.
/// `metadata` is pointed at ObjectMeta (as Kubernetes publishes CRDs), so `kubectl
/// explain` shows its fields. For built-ins, [`builtin_schema`] shares the components
/// between kinds instead (a PodSpec once per document, not once per workload kind).
pub fn inline_schema(
    group: &str,
    version: &str,
    kind: &str,
    open_api_v3_schema: &Value,
) -> ObjectSchema {
    let mut schema = open_api_v3_schema.clone();
    if let Some(props) = schema.get_mut("properties").and_then(Value::as_object_mut) {
        props.insert(
            "metadata".into(),
            json!({
                "allOf": [{"$ref": format!("{REF_PREFIX}{}", ObjectMeta::schema_name())}],
                "description": "Standard object's metadata. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata"
            }),
        );
    }
    let name = component_name(group, version, kind);
    let mut g = generator();
    let _ = g.subschema_for::<ObjectMeta>();
    let mut defs = definitions(g);
    defs.insert(name.clone(), schema);
    ObjectSchema {
        name,
        definitions: defs,
    }
}

/// Component names as Kubernetes gives them: `io.k8s.api.core.v1.Pod`,
/// `io.k8s.api.apps.v1.Deployment`, and the reversed group for CRDs
/// (`io.hami.policy.v1alpha1.PropagationPolicy`).
fn component_name(group: &str, version: &str, kind: &str) -> String {
    let prefix = match group {
        "" => "io.k8s.api.core".to_owned(),
        g if !g.contains('.') => format!("io.k8s.api.{g}"),
        g => g.split('.').rev().collect::<Vec<_>>().join("."),
    };
    format!("{prefix}.{version}.{kind}")
}

/// Components every group-version document holds: ObjectMeta, ListMeta, Status,
/// DeleteOptions and the PATCH body placeholder.
pub fn common_definitions() -> BTreeMap<String, Value> {
    let mut g = generator();
    let _ = g.subschema_for::<ObjectMeta>();
    let _ = g.subschema_for::<ListMeta>();
    let _ = g.subschema_for::<Status>();
    let _ = g.subschema_for::<DeleteOptions>();
    let mut defs = definitions(g);
    defs.insert(
        PATCH_SCHEMA.into(),
        json!({
            "description": "Patch is provided to give a concrete name and type to the Kubernetes PATCH request body.",
            "type": "object"
        }),
    );
    defs
}

/// The `<Kind>List` component for a kind whose component is `item_name`.
pub fn list_schema(item_name: &str, gvk: &Value, list_kind: &str) -> Value {
    json!({
        "description": format!("{list_kind} is a list of {}.", gvk["kind"].as_str().unwrap_or_default()),
        "type": "object",
        "required": ["items"],
        "properties": {
            "apiVersion": {"type": "string", "description": "APIVersion defines the versioned schema of this representation of an object."},
            "kind": {"type": "string", "description": "Kind is a string value representing the REST resource this object represents."},
            "items": {"type": "array", "items": {"$ref": format!("{REF_PREFIX}{item_name}")}},
            "metadata": {
                "allOf": [{"$ref": format!("{REF_PREFIX}{}", ListMeta::schema_name())}],
                "description": "Standard list metadata."
            }
        },
        "x-kubernetes-group-version-kind": [{
            "group": gvk["group"], "kind": list_kind, "version": gvk["version"]
        }]
    })
}
