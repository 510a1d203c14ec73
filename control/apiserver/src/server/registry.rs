//! The kind registry: every resource the API server serves, described by data
//! (group, version, names, scope, subresources, schema, printer columns).
//!
//! The server has no handler per kind: it looks a request's path up here and
//! treats every object as JSON. Built-in Kubernetes kinds come from
//! [`Registry::builtin`]; custom kinds are added from CustomResourceDefinitions
//! ([`Registry::add_crd`]), so a member-cluster simulator can reuse the server
//! with a different set of kinds.

use std::sync::Arc;

use serde_json::Value;

/// One extra column a Table response shows (a CRD's additionalPrinterColumn).
#[derive(Clone, Debug, PartialEq)]
pub struct PrinterColumn {
    pub name: String,
    /// OpenAPI type of the cell: string, integer, number, boolean or date.
    pub type_: String,
    pub format: String,
    pub description: String,
    /// Simple JSONPath into the object, e.g. `.spec.replicas`.
    pub json_path: String,
    /// 0 = shown by default; higher = only with `-o wide`.
    pub priority: i32,
}

/// Where a kind keeps what its scale subresource shows (simple dotted paths
/// like `.spec.replicas`, as in a CRD's `subresources.scale`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScalePaths {
    pub spec_replicas: String,
    pub status_replicas: String,
    pub label_selector: Option<String>,
}

impl ScalePaths {
    /// `.spec.replicas` / `.status.replicas` / `.status.selector`.
    pub fn standard() -> Self {
        Self {
            spec_replicas: ".spec.replicas".into(),
            status_replicas: ".status.replicas".into(),
            label_selector: Some(".status.selector".into()),
        }
    }
}

/// Everything the server knows about one served resource.
#[derive(Clone, Debug, PartialEq)]
pub struct ResourceKind {
    /// API group; "" for the core group.
    pub group: String,
    pub version: String,
    pub kind: String,
    pub list_kind: String,
    pub plural: String,
    pub singular: String,
    pub short_names: Vec<String>,
    pub categories: Vec<String>,
    pub namespaced: bool,
    /// Serves `{plural}/status`; the main resource then ignores status changes.
    pub status_subresource: bool,
    /// Serves `{plural}/scale` (autoscaling/v1 Scale) when set.
    pub scale: Option<ScalePaths>,
    /// OpenAPI v3 schema of the object, when known.
    pub schema: Option<Value>,
    pub printer_columns: Vec<PrinterColumn>,
    /// Served from a CustomResourceDefinition applied at run time: its
    /// objects are pruned, defaulted and validated by `schema`, and shown in
    /// the version they are read through (conversion strategy None).
    pub custom: bool,
    /// Its CRD is being deleted: objects are read and deleted, not created.
    pub terminating: bool,
}

impl ResourceKind {
    /// Shows a stored object in this kind's version: a custom resource
    /// written through another served version of its CRD differs only in
    /// `apiVersion` (conversion strategy None, as kube-apiserver converts).
    pub fn present(&self, object: &mut Value) {
        if !self.custom {
            return;
        }
        let api_version = self.api_version();
        if let Some(map) = object.as_object_mut()
            && map.get("apiVersion").and_then(Value::as_str) != Some(api_version.as_str())
        {
            map.insert("apiVersion".into(), Value::String(api_version));
        }
    }

    /// `apps/v1`, or `v1` for the core group.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// The group as it appears in store keys ("core" for the core group).
    pub fn store_group(&self) -> &str {
        if self.group.is_empty() {
            "core"
        } else {
            &self.group
        }
    }

    /// `deployments.apps`, the name Kubernetes uses in error messages.
    pub fn group_resource(&self) -> String {
        if self.group.is_empty() {
            self.plural.clone()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }
}

/// A group and the versions it serves, for discovery.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupVersions {
    pub name: String,
    /// Served versions, the preferred one first.
    pub versions: Vec<String>,
}

/// The kinds a server serves now: a [`Registry`] that CustomResourceDefinitions
/// replace at run time. Readers take a snapshot ([`Kinds::load`]) and use it
/// for the whole request; a change swaps in a new registry whole and bumps
/// a generation (what the OpenAPI documents are cached under).
#[derive(Debug)]
pub struct Kinds {
    /// What the server serves without any CRD (built-in and hami's kinds).
    base: Arc<Registry>,
    current: parking_lot::RwLock<Arc<Registry>>,
    generation: std::sync::atomic::AtomicU64,
}

impl Kinds {
    pub fn new(registry: Registry) -> Self {
        let base = Arc::new(registry);
        Self {
            base: base.clone(),
            current: parking_lot::RwLock::new(base),
            generation: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// The kinds served without any CustomResourceDefinition.
    pub fn base(&self) -> Arc<Registry> {
        self.base.clone()
    }

    /// The registry as it is now.
    pub fn load(&self) -> Arc<Registry> {
        self.current.read().clone()
    }

    /// Swaps in `registry` and bumps the generation.
    pub fn replace(&self, registry: Registry) {
        *self.current.write() = Arc::new(registry);
        self.generation
            .fetch_add(1, std::sync::atomic::Ordering::Release);
    }

    /// Counts replacements (0 before the first).
    pub fn generation(&self) -> u64 {
        self.generation.load(std::sync::atomic::Ordering::Acquire)
    }
}

/// Why a CRD could not be added.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RegistryError {
    #[error("CustomResourceDefinition is missing field {0}")]
    MissingField(&'static str),
    #[error("resource {0} is already registered")]
    Duplicate(String),
}

/// The set of served kinds. Iteration order is deterministic: groups in
/// insertion order (core first), kinds in insertion order within a group.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Registry {
    kinds: Vec<Arc<ResourceKind>>,
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// The built-in Kubernetes kinds hami serves (see [`super::builtin`]).
    pub fn builtin() -> Self {
        let mut registry = Self::new();
        for kind in super::builtin::kinds() {
            // Built-in kinds are distinct by construction.
            let _ = registry.add(kind);
        }
        let _ = registry.add(super::crd::definition_kind());
        registry
    }

    /// Adds one kind; fails if its group/version/plural is taken.
    pub fn add(&mut self, kind: ResourceKind) -> Result<(), RegistryError> {
        if self
            .lookup(&kind.group, &kind.version, &kind.plural)
            .is_some()
        {
            return Err(RegistryError::Duplicate(format!(
                "{}/{}",
                kind.api_version(),
                kind.plural
            )));
        }
        self.kinds.push(Arc::new(kind));
        Ok(())
    }

    /// Adds every served version of a CustomResourceDefinition given as JSON
    /// (any `apiextensions.k8s.io/v1` CRD serialised with serde).
    pub fn add_crd(&mut self, crd: &Value) -> Result<(), RegistryError> {
        for kind in kinds_from_crd(crd)? {
            self.add(kind)?;
        }
        Ok(())
    }

    /// The kind stored under `/registry/{store_group}/{plural}/` (the first
    /// version registered for it: a CRD's storage version).
    pub fn by_store_resource(&self, store_group: &str, plural: &str) -> Option<&Arc<ResourceKind>> {
        self.kinds
            .iter()
            .find(|k| k.plural == plural && k.store_group() == store_group)
    }

    /// All kinds, in registration order.
    pub fn kinds(&self) -> &[Arc<ResourceKind>] {
        &self.kinds
    }

    /// The kind served at `/apis/{group}/{version}/{plural}`.
    pub fn lookup(&self, group: &str, version: &str, plural: &str) -> Option<&Arc<ResourceKind>> {
        self.kinds
            .iter()
            .find(|k| k.group == group && k.version == version && k.plural == plural)
    }

    /// The kind with this apiVersion and kind.
    pub fn by_gvk(&self, api_version: &str, kind: &str) -> Option<&Arc<ResourceKind>> {
        self.kinds
            .iter()
            .find(|k| k.kind == kind && k.api_version() == api_version)
    }

    /// Kinds served under one group version.
    pub fn resources(&self, group: &str, version: &str) -> Vec<&Arc<ResourceKind>> {
        self.kinds
            .iter()
            .filter(|k| k.group == group && k.version == version)
            .collect()
    }

    /// Groups with their versions (core group excluded), in registration order.
    pub fn groups(&self) -> Vec<GroupVersions> {
        let mut groups: Vec<GroupVersions> = Vec::new();
        for kind in self.kinds.iter().filter(|k| !k.group.is_empty()) {
            match groups.iter_mut().find(|g| g.name == kind.group) {
                Some(group) => {
                    if !group.versions.contains(&kind.version) {
                        group.versions.push(kind.version.clone());
                    }
                }
                None => groups.push(GroupVersions {
                    name: kind.group.clone(),
                    versions: vec![kind.version.clone()],
                }),
            }
        }
        groups
    }

    /// True when the core group (`/api/v1`) serves anything.
    pub fn has_core(&self) -> bool {
        self.kinds.iter().any(|k| k.group.is_empty())
    }

    /// Namespaced kinds, one entry per group and plural (first version wins),
    /// e.g. for deleting a namespace's content.
    pub fn namespaced_storage_kinds(&self) -> Vec<&Arc<ResourceKind>> {
        let mut out: Vec<&Arc<ResourceKind>> = Vec::new();
        for kind in self.kinds.iter().filter(|k| k.namespaced) {
            if !out
                .iter()
                .any(|o| o.group == kind.group && o.plural == kind.plural)
            {
                out.push(kind);
            }
        }
        out
    }
}

fn str_field<'a>(value: &'a Value, pointer: &str) -> Option<&'a str> {
    value.pointer(pointer).and_then(Value::as_str)
}

fn string_list(value: Option<&Value>) -> Vec<String> {
    value
        .and_then(Value::as_array)
        .map(|items| {
            items
                .iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// One [`ResourceKind`] per served version of a CRD.
pub fn kinds_from_crd(crd: &Value) -> Result<Vec<ResourceKind>, RegistryError> {
    let group = str_field(crd, "/spec/group").ok_or(RegistryError::MissingField("spec.group"))?;
    let kind =
        str_field(crd, "/spec/names/kind").ok_or(RegistryError::MissingField("spec.names.kind"))?;
    let plural = str_field(crd, "/spec/names/plural")
        .ok_or(RegistryError::MissingField("spec.names.plural"))?;
    let singular = str_field(crd, "/spec/names/singular")
        .map(str::to_owned)
        .unwrap_or_else(|| kind.to_lowercase());
    let list_kind = str_field(crd, "/spec/names/listKind")
        .map(str::to_owned)
        .unwrap_or_else(|| format!("{kind}List"));
    let namespaced = str_field(crd, "/spec/scope") != Some("Cluster");
    let short_names = string_list(crd.pointer("/spec/names/shortNames"));
    let categories = string_list(crd.pointer("/spec/names/categories"));
    let versions = crd
        .pointer("/spec/versions")
        .and_then(Value::as_array)
        .ok_or(RegistryError::MissingField("spec.versions"))?;
    let mut out = Vec::new();
    for version in versions {
        if version.get("served").and_then(Value::as_bool) == Some(false) {
            continue;
        }
        let name = version
            .get("name")
            .and_then(Value::as_str)
            .ok_or(RegistryError::MissingField("spec.versions[].name"))?;
        let printer_columns = version
            .get("additionalPrinterColumns")
            .and_then(Value::as_array)
            .map(|cols| cols.iter().filter_map(printer_column).collect())
            .unwrap_or_default();
        out.push(ResourceKind {
            group: group.to_owned(),
            version: name.to_owned(),
            kind: kind.to_owned(),
            list_kind: list_kind.clone(),
            plural: plural.to_owned(),
            singular: singular.clone(),
            short_names: short_names.clone(),
            categories: categories.clone(),
            namespaced,
            status_subresource: version.pointer("/subresources/status").is_some(),
            scale: version.pointer("/subresources/scale").and_then(|s| {
                Some(ScalePaths {
                    spec_replicas: s.get("specReplicasPath")?.as_str()?.to_owned(),
                    status_replicas: s.get("statusReplicasPath")?.as_str()?.to_owned(),
                    label_selector: s
                        .get("labelSelectorPath")
                        .and_then(Value::as_str)
                        .map(str::to_owned),
                })
            }),
            schema: version.pointer("/schema/openAPIV3Schema").cloned(),
            printer_columns,
            custom: false,
            terminating: false,
        });
    }
    Ok(out)
}

fn printer_column(col: &Value) -> Option<PrinterColumn> {
    Some(PrinterColumn {
        name: col.get("name")?.as_str()?.to_owned(),
        type_: col
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or("string")
            .to_owned(),
        format: col
            .get("format")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned(),
        description: col
            .get("description")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned(),
        json_path: col.get("jsonPath")?.as_str()?.to_owned(),
        priority: col
            .get("priority")
            .and_then(Value::as_i64)
            .and_then(|p| i32::try_from(p).ok())
            .unwrap_or(0),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sample_crd() -> Value {
        json!({
            "apiVersion": "apiextensions.k8s.io/v1",
            "kind": "CustomResourceDefinition",
            "metadata": {"name": "widgets.example.io"},
            "spec": {
                "group": "example.io",
                "scope": "Namespaced",
                "names": {"kind": "Widget", "plural": "widgets", "shortNames": ["wd"], "categories": ["all"]},
                "versions": [
                    {"name": "v1", "served": true, "storage": true,
                     "subresources": {"status": {}},
                     "schema": {"openAPIV3Schema": {"type": "object"}},
                     "additionalPrinterColumns": [{"name": "Size", "type": "integer", "jsonPath": ".spec.size"}]},
                    {"name": "v0", "served": false, "storage": false}
                ]
            }
        })
    }

    #[test]
    fn crd_becomes_one_kind_per_served_version() {
        let kinds = kinds_from_crd(&sample_crd()).unwrap();
        assert_eq!(kinds.len(), 1);
        let k = &kinds[0];
        assert_eq!(k.api_version(), "example.io/v1");
        assert_eq!(k.singular, "widget");
        assert_eq!(k.list_kind, "WidgetList");
        assert!(k.namespaced && k.status_subresource);
        assert_eq!(k.short_names, vec!["wd"]);
        assert_eq!(k.printer_columns[0].json_path, ".spec.size");
        assert_eq!(k.schema, Some(json!({"type": "object"})));
    }

    #[test]
    fn crd_without_group_is_rejected() {
        let mut crd = sample_crd();
        crd["spec"].as_object_mut().unwrap().remove("group");
        assert_eq!(
            kinds_from_crd(&crd),
            Err(RegistryError::MissingField("spec.group"))
        );
    }

    #[test]
    fn builtin_registry_serves_core_and_groups() {
        let r = Registry::builtin();
        assert!(r.lookup("", "v1", "pods").is_some());
        assert!(
            r.lookup("apps", "v1", "deployments")
                .unwrap()
                .status_subresource
        );
        assert!(!r.lookup("", "v1", "namespaces").unwrap().namespaced);
        assert!(r.by_gvk("batch/v1", "Job").is_some());
        assert!(
            r.by_gvk("autoscaling/v2", "HorizontalPodAutoscaler")
                .is_some()
        );
        assert!(
            r.lookup("batch", "v1", "cronjobs")
                .unwrap()
                .status_subresource
        );
        let groups: Vec<String> = r.groups().into_iter().map(|g| g.name).collect();
        assert_eq!(
            groups,
            vec![
                "apps",
                "batch",
                "certificates.k8s.io",
                "coordination.k8s.io",
                "networking.k8s.io",
                "discovery.k8s.io",
                "autoscaling",
                "policy",
                "scheduling.k8s.io",
                "storage.k8s.io",
                "rbac.authorization.k8s.io",
                "apiextensions.k8s.io"
            ]
        );
        let mut dup = r.clone();
        let pods = r.lookup("", "v1", "pods").unwrap().as_ref().clone();
        assert!(dup.add(pods).is_err());
    }
}
