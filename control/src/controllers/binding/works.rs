//! The pure half of the binding controller: from a binding, its template,
//! the target clusters and the ordered override policies, the Work each
//! cluster gets. No IO: the controller reads, calls [`desired_works`], and
//! writes what differs.
//!
//! A Work is named `<binding name>-<8 hex digits>` (FNV-1a of the binding's
//! kind, namespace and name, so bindings of the same name in two namespaces
//! never meet in one execution namespace), lives in `hami-es-<cluster>`, and
//! links back with:
//!
//! * annotation [`BINDING_ANNOTATION`]: `namespace/name` of a
//!   ResourceBinding, `name` of a ClusterResourceBinding (always set; the
//!   controllers find a Work's binding by it);
//! * labels [`LABEL_RB_NAMESPACE`] + [`LABEL_RB_NAME`] or [`LABEL_CRB_NAME`]
//!   (for `kubectl get works -l ...`; a name longer than a label value's 63
//!   characters is left out) and [`LABEL_TEMPLATE_UID`];
//! * annotation [`TEMPLATE_GENERATION_ANNOTATION`]: the template generation
//!   the manifest was built from (the status controller compares it);
//! * annotation [`hami_overrides::APPLIED_OVERRIDES_ANNOTATION`] when any
//!   override rule applied.

use std::collections::BTreeMap;

use hami_api::binding::TargetCluster;
use hami_api::common::{WORK_GROUP, WORK_VERSION, execution_namespace};
use hami_overrides::{
    APPLIED_OVERRIDES_ANNOTATION, AppliedOverride, OverrideError, PolicyRef, applied_annotation,
    apply_overrides_to,
};
use hami_placement::ClusterView;
use serde_json::{Map, Value, json};

/// Annotation on a Work: the binding it belongs to (see the module doc).
pub const BINDING_ANNOTATION: &str = "work.hami.io/binding";
/// Annotation on a Work: the template generation its manifest came from.
pub const TEMPLATE_GENERATION_ANNOTATION: &str = "resourcetemplate.hami.io/generation";
/// Label on a Work: namespace of its ResourceBinding.
pub const LABEL_RB_NAMESPACE: &str = "resourcebinding.hami.io/namespace";
/// Label on a Work: name of its ResourceBinding.
pub const LABEL_RB_NAME: &str = "resourcebinding.hami.io/name";
/// Label on a Work: name of its ClusterResourceBinding.
pub const LABEL_CRB_NAME: &str = "clusterresourcebinding.hami.io/name";
/// Label on a Work: uid of the resource template.
pub const LABEL_TEMPLATE_UID: &str = "resourcetemplate.hami.io/uid";

/// The labels and annotations this module owns on a Work: an update sets
/// them and leaves every other key alone.
pub const OWNED_LABELS: [&str; 4] = [
    LABEL_RB_NAMESPACE,
    LABEL_RB_NAME,
    LABEL_CRB_NAME,
    LABEL_TEMPLATE_UID,
];
pub const OWNED_ANNOTATIONS: [&str; 3] = [
    BINDING_ANNOTATION,
    TEMPLATE_GENERATION_ANNOTATION,
    APPLIED_OVERRIDES_ANNOTATION,
];

/// Metadata the API server sets: never part of a member's manifest.
const SERVER_METADATA: [&str; 10] = [
    "resourceVersion",
    "uid",
    "creationTimestamp",
    "generation",
    "managedFields",
    "ownerReferences",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "selfLink",
    "finalizers",
];

/// Which binding: a ResourceBinding has a namespace, a
/// ClusterResourceBinding none.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BindingRef {
    pub namespace: Option<String>,
    pub name: String,
}

impl BindingRef {
    /// The value of [`BINDING_ANNOTATION`].
    pub fn annotation(&self) -> String {
        match &self.namespace {
            Some(ns) => format!("{ns}/{}", self.name),
            None => self.name.clone(),
        }
    }

    /// Reads [`BINDING_ANNOTATION`] (names never hold a `/`).
    pub fn from_annotation(text: &str) -> Option<Self> {
        let (namespace, name) = match text.split_once('/') {
            Some((ns, name)) => (Some(ns.to_string()), name),
            None => (None, text),
        };
        if name.is_empty() || name.contains('/') || namespace.as_deref() == Some("") {
            return None;
        }
        Some(Self {
            namespace,
            name: name.to_string(),
        })
    }

    /// The binding a Work object names in its annotation.
    pub fn of_work(work: &Value) -> Option<Self> {
        work.pointer("/metadata/annotations")
            .and_then(|a| a.get(BINDING_ANNOTATION))
            .and_then(Value::as_str)
            .and_then(Self::from_annotation)
    }
}

/// FNV-1a, 64 bits: a stable hash (the same on every build and platform).
pub fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// Longest object name (a DNS-1123 subdomain).
const MAX_NAME: usize = 253;

/// The Work name of `binding` (the same in every execution namespace).
pub fn work_name(binding: &BindingRef) -> String {
    let kind = if binding.namespace.is_some() {
        "ResourceBinding"
    } else {
        "ClusterResourceBinding"
    };
    let hash = fnv1a(format!("{kind}/{}", binding.annotation()).as_bytes()) as u32;
    let suffix = format!("-{hash:08x}");
    let mut base: String = binding.name.chars().take(MAX_NAME - suffix.len()).collect();
    while base.ends_with(['-', '.']) {
        base.pop();
    }
    format!("{base}{suffix}")
}

/// `value` when it fits a label value (at most 63 characters; names and
/// namespaces already use only label characters).
fn label_value(value: &str) -> Option<Value> {
    (!value.is_empty() && value.len() <= 63).then(|| json!(value))
}

/// The template as a member receives it: server-set metadata and status
/// removed.
pub fn strip_server_fields(template: &Value) -> Value {
    let mut m = template.clone();
    if let Some(obj) = m.as_object_mut() {
        obj.remove("status");
        if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
            for f in SERVER_METADATA {
                meta.remove(f);
            }
        }
    }
    m
}

/// The field that carries a kind's replica count, for kinds whose replicas
/// are divided among clusters (a Job's parallelism).
fn replica_field(kind: &str, template: &Value) -> Option<&'static str> {
    match kind {
        "Deployment" | "StatefulSet" | "ReplicaSet" => Some("replicas"),
        "Job" => Some("parallelism"),
        _ => template
            .pointer("/spec/replicas")
            .filter(|v| v.is_number())
            .map(|_| "replicas"),
    }
}

/// The manifest for one cluster before overrides: the stripped template with
/// the cluster's replica count when replicas are divided (Duplicated keeps
/// the template's count everywhere).
pub fn cluster_manifest(template: &Value, divided: bool, replicas: i32) -> Value {
    let mut m = strip_server_fields(template);
    let kind = template.get("kind").and_then(Value::as_str).unwrap_or("");
    if divided
        && let Some(field) = replica_field(kind, template)
        && let Some(obj) = m.as_object_mut()
    {
        let spec = obj.entry("spec").or_insert_with(|| json!({}));
        if let Some(spec) = spec.as_object_mut() {
            spec.insert(field.into(), json!(replicas));
        }
    }
    m
}

/// Everything [`desired_works`] reads of one binding.
#[derive(Clone, Debug)]
pub struct BindingInput<'a> {
    pub binding: &'a BindingRef,
    /// The resource template as stored.
    pub template: &'a Value,
    /// Whether the placement divides replicas (Duplicated otherwise).
    pub divided: bool,
}

/// The Work one cluster should hold.
#[derive(Clone, Debug, PartialEq)]
pub struct DesiredWork {
    pub cluster: String,
    pub namespace: String,
    pub name: String,
    /// The complete Work object (apiVersion, kind, metadata, spec).
    pub object: Value,
    pub applied: Vec<AppliedOverride>,
}

/// A cluster whose overrides failed: it keeps whatever Work it had.
#[derive(Clone, Debug, PartialEq)]
pub struct ClusterFailure {
    pub cluster: String,
    pub error: Box<OverrideError>,
}

/// The Work of each target cluster (in the order given), with its replica
/// count and the override rules that target it applied.
pub fn desired_works(
    input: &BindingInput<'_>,
    targets: &[(&TargetCluster, &ClusterView)],
    policies: &[PolicyRef<'_>],
) -> Vec<Result<DesiredWork, ClusterFailure>> {
    let name = work_name(input.binding);
    let generation = input
        .template
        .pointer("/metadata/generation")
        .and_then(Value::as_i64);
    let uid = input
        .template
        .pointer("/metadata/uid")
        .and_then(Value::as_str);
    let mut labels = Map::new();
    match &input.binding.namespace {
        Some(ns) => {
            labels.insert(LABEL_RB_NAMESPACE.into(), json!(ns));
            if let Some(v) = label_value(&input.binding.name) {
                labels.insert(LABEL_RB_NAME.into(), v);
            }
        }
        None => {
            if let Some(v) = label_value(&input.binding.name) {
                labels.insert(LABEL_CRB_NAME.into(), v);
            }
        }
    }
    if let Some(v) = uid.and_then(label_value) {
        labels.insert(LABEL_TEMPLATE_UID.into(), v);
    }
    targets
        .iter()
        .map(|(target, view)| {
            let base = cluster_manifest(input.template, input.divided, target.replicas);
            let (manifest, applied) =
                apply_overrides_to(&base, view, policies).map_err(|error| ClusterFailure {
                    cluster: target.name.clone(),
                    error: Box::new(error),
                })?;
            let mut annotations = BTreeMap::new();
            annotations.insert(BINDING_ANNOTATION, json!(input.binding.annotation()));
            if let Some(g) = generation {
                annotations.insert(TEMPLATE_GENERATION_ANNOTATION, json!(g.to_string()));
            }
            if !applied.is_empty() {
                annotations.insert(
                    APPLIED_OVERRIDES_ANNOTATION,
                    json!(applied_annotation(&applied)),
                );
            }
            let namespace = execution_namespace(&target.name);
            let object = json!({
                "apiVersion": format!("{WORK_GROUP}/{WORK_VERSION}"),
                "kind": "Work",
                "metadata": {
                    "name": name,
                    "namespace": namespace,
                    "labels": labels,
                    "annotations": annotations,
                },
                "spec": {"workload": {"manifests": [manifest]}},
            });
            Ok(DesiredWork {
                cluster: target.name.clone(),
                namespace,
                name: name.clone(),
                object,
                applied,
            })
        })
        .collect()
}

/// The update of `current` (a stored Work) that makes it `desired`: spec
/// replaced, this module's labels and annotations set (others kept), status
/// kept. `None` when nothing would change.
pub fn updated_work(current: &Value, desired: &Value) -> Option<Value> {
    let mut new = current.clone();
    let obj = new.as_object_mut()?;
    obj.insert(
        "spec".into(),
        desired.get("spec").cloned().unwrap_or_else(|| json!({})),
    );
    let meta = obj
        .entry("metadata")
        .or_insert_with(|| json!({}))
        .as_object_mut()?;
    for (field, owned) in [
        ("labels", &OWNED_LABELS[..]),
        ("annotations", &OWNED_ANNOTATIONS[..]),
    ] {
        let want = desired
            .pointer(&format!("/metadata/{field}"))
            .and_then(Value::as_object);
        let map = meta.entry(field).or_insert_with(|| json!({}));
        let Some(map) = map.as_object_mut() else {
            continue;
        };
        for k in owned {
            match want.and_then(|w| w.get(*k)) {
                Some(v) => map.insert((*k).to_string(), v.clone()),
                None => map.remove(*k),
            };
        }
        if map.is_empty() {
            meta.remove(field);
        }
    }
    (new != *current).then_some(new)
}

#[cfg(test)]
#[path = "works_tests.rs"]
mod tests;
