//! OpenAPI v3 documents as kubectl reads them: the `/openapi/v3` root listing one
//! document per group-version, and each document with `paths` (operations carrying
//! `x-kubernetes-group-version-kind` and `x-kubernetes-action`) and `components.schemas`
//! (each kind's schema carrying `x-kubernetes-group-version-kind`).
//!
//! What kubectl does with them: `kubectl explain` walks the schemas; `kubectl apply` and
//! `create` look for the `fieldValidation` query parameter on the kind's PATCH operation
//! (QueryParamVerifierV3) and, finding it, leave validation to the server; and `kubectl
//! apply` decides how to compute its patch from the PATCH request body's content types.
//!
//! Pure: the server maps its kind registry onto [`OpenApiResource`] and serves the bytes
//! of [`OpenApiV3`].

mod paths;
mod schemas;

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

pub use schemas::{ObjectSchema, builtin_schema, inline_schema};

/// One resource (kind) served by the API, as the documents describe it.
#[derive(Clone, Debug, PartialEq)]
pub struct OpenApiResource {
    /// API group; empty for the core group.
    pub group: String,
    pub version: String,
    pub kind: String,
    /// Lower-case plural, the resource's URL segment.
    pub plural: String,
    pub namespaced: bool,
    /// Whether the `/status` subresource is served.
    pub has_status: bool,
    /// The whole object's schema.
    pub schema: ObjectSchema,
}

impl OpenApiResource {
    /// `api/v1` for the core group, else `apis/<group>/<version>`.
    pub fn group_version_path(&self) -> String {
        if self.group.is_empty() {
            format!("api/{}", self.version)
        } else {
            format!("apis/{}/{}", self.group, self.version)
        }
    }

    fn gvk(&self) -> Value {
        json!({"group": self.group, "kind": self.kind, "version": self.version})
    }
}

/// Built documents: the root and one document per group-version, serialized once.
#[derive(Clone, Debug)]
pub struct OpenApiV3 {
    root: Vec<u8>,
    documents: BTreeMap<String, Document>,
}

#[derive(Clone, Debug)]
struct Document {
    json: Vec<u8>,
    hash: String,
}

impl OpenApiV3 {
    /// Builds every document. Resources are grouped by group-version; their order
    /// within the input does not change the output.
    pub fn build(resources: &[OpenApiResource]) -> Result<OpenApiV3, serde_json::Error> {
        let mut by_gv: BTreeMap<String, Vec<&OpenApiResource>> = BTreeMap::new();
        for r in resources {
            by_gv.entry(r.group_version_path()).or_default().push(r);
        }
        let mut documents = BTreeMap::new();
        let mut root_paths = Map::new();
        for (gv, rs) in by_gv {
            let json = serde_json::to_vec(&document(&rs))?;
            let hash = fnv1a_hex(&json);
            root_paths.insert(
                gv.clone(),
                json!({"serverRelativeURL": format!("/openapi/v3/{gv}?hash={hash}")}),
            );
            documents.insert(gv, Document { json, hash });
        }
        let root = serde_json::to_vec(&json!({"paths": root_paths}))?;
        Ok(OpenApiV3 { root, documents })
    }

    /// The body of `GET /openapi/v3`.
    pub fn root_json(&self) -> &[u8] {
        &self.root
    }

    /// The body of `GET /openapi/v3/<gv_path>` (`api/v1`, `apis/apps/v1`; a leading
    /// `/` is accepted), or `None` for a group-version not served.
    pub fn document_json(&self, gv_path: &str) -> Option<&[u8]> {
        self.documents
            .get(gv_path.trim_start_matches('/'))
            .map(|d| d.json.as_slice())
    }

    /// The hash in the document's `serverRelativeURL`; a request whose `hash` matches
    /// may be answered as immutable (`Cache-Control: public, immutable`).
    pub fn document_hash(&self, gv_path: &str) -> Option<&str> {
        self.documents
            .get(gv_path.trim_start_matches('/'))
            .map(|d| d.hash.as_str())
    }

    /// The group-version paths served, in order.
    pub fn group_versions(&self) -> impl Iterator<Item = &str> {
        self.documents.keys().map(String::as_str)
    }
}

/// One group-version's document.
fn document(resources: &[&OpenApiResource]) -> Value {
    let mut schemas = schemas::common_definitions();
    let mut all_paths = Map::new();
    for r in resources {
        for (name, def) in &r.schema.definitions {
            schemas.entry(name.clone()).or_insert_with(|| def.clone());
        }
        let gvk = r.gvk();
        if let Some(Value::Object(own)) = schemas.get_mut(&r.schema.name) {
            own.insert(
                "x-kubernetes-group-version-kind".into(),
                json!([gvk.clone()]),
            );
        }
        let list_name = format!("{}List", r.schema.name);
        let list_kind = format!("{}List", r.kind);
        schemas.insert(
            list_name.clone(),
            schemas::list_schema(&r.schema.name, &gvk, &list_kind),
        );
        paths::resource_paths(r, &list_name, &mut all_paths);
    }
    json!({
        "openapi": "3.0.0",
        "info": {"title": "hami", "version": env!("CARGO_PKG_VERSION")},
        "paths": all_paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {"BearerToken": {"type": "apiKey", "name": "authorization", "in": "header",
                "description": "Bearer Token authentication"}}
        }
    })
}

/// FNV-1a, 64 bits, as upper-case hex: stable across runs and builds, so a client's
/// cached document stays valid until the document itself changes.
fn fnv1a_hex(bytes: &[u8]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{h:016X}")
}

#[cfg(test)]
mod tests;
