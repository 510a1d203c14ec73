//! CustomResourceDefinitions at run time, as kube-apiserver's
//! apiextensions-apiserver serves them.
//!
//! * A CRD is checked when it is written ([`validate`]): names, scope,
//!   exactly one storage version, a structural schema per version
//!   ([`schema::check_structural`]); CEL rules and conversion webhooks are
//!   refused with a message saying so; a CRD cannot add kinds to a group hami
//!   serves itself (the CRDs of hami's own kinds, `hami crds`, are accepted
//!   and change nothing).
//! * The served kinds are rebuilt from the stored CRDs after every CRD write
//!   ([`refresh`], in the writing request, so `kubectl get <plural>` works as
//!   soon as `kubectl apply` answered) and by [`run`] on every replica (a CRD
//!   written through another replica, a restart).
//! * [`run`] also keeps each CRD's `status` as kube-apiserver does
//!   (`NamesAccepted`, `Established`, `Terminating`, `acceptedNames`,
//!   `storedVersions`) and, when a CRD is deleted, deletes its objects before
//!   letting the CRD go (the `customresourcecleanup.apiextensions.k8s.io`
//!   finalizer, which kube-apiserver adds when the CRD is deleted and hami
//!   adds when it is created; creates are refused meanwhile).
//! * Objects of a custom kind are pruned, defaulted and validated by their
//!   version's schema ([`schema`]; `fields::check`, `objects::validate`).

pub mod schema;

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::watch as signal;

use super::State;
use super::deletion::{self, DeleteOptions};
use super::keys;
use super::meta;
use super::objects::{self, UpdateScope};
use super::registry::{Registry, ResourceKind, kinds_from_crd};
use super::status::{ApiError, Cause};

pub const GROUP: &str = "apiextensions.k8s.io";
pub const VERSION: &str = "v1";
pub const KIND: &str = "CustomResourceDefinition";
pub const PLURAL: &str = "customresourcedefinitions";
/// Held by a CRD being deleted until its objects are gone.
pub const CLEANUP_FINALIZER: &str = "customresourcecleanup.apiextensions.k8s.io";
/// The field manager of the status and finalizer writes.
const MANAGER: &str = "hami-apiextensions";

/// The CustomResourceDefinition kind itself (cluster-scoped, with status).
pub fn definition_kind() -> ResourceKind {
    ResourceKind {
        group: GROUP.into(),
        version: VERSION.into(),
        kind: KIND.into(),
        list_kind: format!("{KIND}List"),
        plural: PLURAL.into(),
        singular: "customresourcedefinition".into(),
        short_names: vec!["crd".into(), "crds".into()],
        categories: vec!["api-extensions".into()],
        namespaced: false,
        status_subresource: true,
        scale: None,
        schema: None,
        printer_columns: vec![super::registry::PrinterColumn {
            name: "Created At".into(),
            type_: "date".into(),
            format: String::new(),
            description: String::new(),
            json_path: ".metadata.creationTimestamp".into(),
            priority: 0,
        }],
        custom: false,
        terminating: false,
    }
}

/// Whether `kind` is the CustomResourceDefinition kind.
pub fn is_definition(kind: &ResourceKind) -> bool {
    kind.group == GROUP && kind.plural == PLURAL
}

fn text<'a>(v: &'a Value, pointer: &str) -> &'a str {
    v.pointer(pointer).and_then(Value::as_str).unwrap_or("")
}

/// A lowercase RFC 1123 label (plural, singular and version names).
fn dns_label(s: &str) -> bool {
    hami_api::validation::is_dns1123_label(s)
}

/// Whether the base kinds (built-in and hami's) already serve this CRD's
/// group and plural as the same kind: a CRD of hami's own kinds.
fn served_by_hami(base: &Registry, crd: &Value) -> bool {
    let (group, plural, kind) = (
        text(crd, "/spec/group"),
        text(crd, "/spec/names/plural"),
        text(crd, "/spec/names/kind"),
    );
    base.by_store_resource(group, plural)
        .is_some_and(|k| k.kind == kind && k.group == group)
}

/// The causes a CustomResourceDefinition is refused for (kube-apiserver's
/// wording where it has the rule; hami's own limits say so).
pub fn validate(base: &Registry, crd: &Value) -> Vec<Cause> {
    let mut causes = Vec::new();
    let mut bad = |reason: &str, field: &str, message: String| {
        causes.push(Cause::new(reason, field, message));
    };
    let group = text(crd, "/spec/group");
    let plural = text(crd, "/spec/names/plural");
    let kind = text(crd, "/spec/names/kind");
    let name = text(crd, "/metadata/name");
    if group.is_empty() {
        bad("FieldValueRequired", "spec.group", "Required value".into());
    } else if !group.contains('.') {
        bad(
            "FieldValueInvalid",
            "spec.group",
            format!("Invalid value: {group:?}: should be a domain with at least one dot"),
        );
    }
    if plural.is_empty() {
        bad(
            "FieldValueRequired",
            "spec.names.plural",
            "Required value".into(),
        );
    } else if !dns_label(plural) {
        bad(
            "FieldValueInvalid",
            "spec.names.plural",
            format!(
                "Invalid value: {plural:?}: a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-'"
            ),
        );
    }
    let singular = text(crd, "/spec/names/singular");
    if !singular.is_empty() && !dns_label(singular) {
        bad(
            "FieldValueInvalid",
            "spec.names.singular",
            format!(
                "Invalid value: {singular:?}: a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-'"
            ),
        );
    }
    if kind.is_empty() {
        bad(
            "FieldValueRequired",
            "spec.names.kind",
            "Required value".into(),
        );
    }
    if !group.is_empty() && !plural.is_empty() && name != format!("{plural}.{group}") {
        bad(
            "FieldValueInvalid",
            "metadata.name",
            format!("Invalid value: {name:?}: must be spec.names.plural+\".\"+spec.group"),
        );
    }
    match text(crd, "/spec/scope") {
        "Namespaced" | "Cluster" => {}
        "" => bad("FieldValueRequired", "spec.scope", "Required value".into()),
        other => bad(
            "FieldValueNotSupported",
            "spec.scope",
            format!("Unsupported value: {other:?}: supported values: \"Cluster\", \"Namespaced\""),
        ),
    }
    let builtin = served_by_hami(base, crd);
    if !builtin && !group.is_empty() && base.groups().iter().any(|g| g.name == group) {
        bad(
            "FieldValueForbidden",
            "spec.group",
            format!(
                "Forbidden: group {group:?} is served by hami itself; a CustomResourceDefinition cannot add kinds to it"
            ),
        );
    }
    match text(crd, "/spec/conversion/strategy") {
        "" | "None" => {}
        other => bad(
            "FieldValueForbidden",
            "spec.conversion.strategy",
            format!(
                "Forbidden: conversion strategy {other:?} is not supported by hami: versions of a custom resource differ only in apiVersion (strategy None)"
            ),
        ),
    }
    let versions = crd
        .pointer("/spec/versions")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    if versions.is_empty() {
        bad(
            "FieldValueRequired",
            "spec.versions",
            "Required value: must have at least one version".into(),
        );
    }
    let storage = versions
        .iter()
        .filter(|v| v.get("storage").and_then(Value::as_bool) == Some(true))
        .count();
    if !versions.is_empty() && storage != 1 {
        bad(
            "FieldValueInvalid",
            "spec.versions",
            format!(
                "Invalid value: {storage}: must have exactly one version marked as storage version"
            ),
        );
    }
    if !versions.is_empty()
        && !versions
            .iter()
            .any(|v| v.get("served").and_then(Value::as_bool) == Some(true))
    {
        bad(
            "FieldValueInvalid",
            "spec.versions",
            "Invalid value: must have at least one version served".into(),
        );
    }
    for (i, version) in versions.iter().enumerate() {
        let at = format!("spec.versions[{i}]");
        let vname = text(version, "/name");
        if !dns_label(vname) {
            bad(
                "FieldValueInvalid",
                &format!("{at}.name"),
                format!(
                    "Invalid value: {vname:?}: a DNS-1035 label must consist of lower case alphanumeric characters or '-'"
                ),
            );
        }
        if versions[..i].iter().any(|v| text(v, "/name") == vname) {
            bad(
                "FieldValueDuplicate",
                &format!("{at}.name"),
                format!("Duplicate value: {vname:?}"),
            );
        }
        match version.pointer("/schema/openAPIV3Schema") {
            None => bad(
                "FieldValueRequired",
                &format!("{at}.schema.openAPIV3Schema"),
                "Required value: schemas are required".into(),
            ),
            Some(s) => {
                for problem in schema::check_structural(s, &format!("{at}.schema.openAPIV3Schema"))
                {
                    let (field, message) = problem
                        .split_once(": ")
                        .map(|(f, m)| (f.to_owned(), m.to_owned()))
                        .unwrap_or_else(|| {
                            (format!("{at}.schema.openAPIV3Schema"), problem.clone())
                        });
                    let reason = if message.starts_with("Forbidden") {
                        "FieldValueForbidden"
                    } else if message.starts_with("Required") {
                        "FieldValueRequired"
                    } else {
                        "FieldValueInvalid"
                    };
                    bad(reason, &field, message);
                }
            }
        }
        if let Some(scale) = version.pointer("/subresources/scale") {
            for (field, prefix) in [
                ("specReplicasPath", ".spec."),
                ("statusReplicasPath", ".status."),
            ] {
                let path = text(scale, &format!("/{field}"));
                if !path.starts_with(prefix) {
                    bad(
                        "FieldValueInvalid",
                        &format!("{at}.subresources.scale.{field}"),
                        format!(
                            "Invalid value: {path:?}: should be a json path under {}",
                            prefix.trim_end_matches('.')
                        ),
                    );
                }
            }
        }
    }
    causes
}

/// Fills what kube-apiserver fills in a CRD when it is created: the cleanup
/// finalizer (hami adds it at create time, so a delete always waits for the
/// objects to go), `served`/`storage` defaults, and the default scope.
pub fn prepare_create(crd: &mut Value) {
    meta::metadata_mut(crd)
        .entry("finalizers")
        .or_insert_with(|| json!([]));
    if let Some(list) = crd
        .pointer_mut("/metadata/finalizers")
        .and_then(Value::as_array_mut)
        && !list.iter().any(|f| f.as_str() == Some(CLEANUP_FINALIZER))
    {
        list.push(json!(CLEANUP_FINALIZER));
    }
    if let Some(spec) = crd.get_mut("spec").and_then(Value::as_object_mut)
        && let Some(conversion) = spec
            .entry("conversion")
            .or_insert_with(|| json!({"strategy": "None"}))
            .as_object_mut()
    {
        conversion
            .entry("strategy")
            .or_insert_with(|| json!("None"));
    }
}

/// What the stored CRDs make of the served kinds, and what each CRD's
/// status should say.
#[derive(Debug, Default)]
pub struct Built {
    pub registry: Registry,
    pub verdicts: Vec<Verdict>,
}

/// One CRD's state as [`build`] decided it.
#[derive(Clone, Debug, PartialEq)]
pub struct Verdict {
    pub name: String,
    /// `Err(why)` when its names conflict with a kind served already.
    pub accepted: Result<(), String>,
    /// Its kinds are hami's own (base) kinds: nothing is added or removed.
    pub builtin: bool,
    pub terminating: bool,
    /// The storage version's kind (what cleanup deletes through).
    pub storage: Option<ResourceKind>,
}

fn created_at(crd: &Value) -> (String, String) {
    (
        text(crd, "/metadata/creationTimestamp").to_owned(),
        text(crd, "/metadata/name").to_owned(),
    )
}

/// Registers the kinds of `crds` on top of `base`, oldest CRD first (an
/// older CRD keeps names a newer one asks for, as kube-apiserver's naming
/// controller decides). Pure.
pub fn build(base: &Registry, crds: &[Value]) -> Built {
    let mut ordered: Vec<&Value> = crds.iter().collect();
    ordered.sort_by_key(|c| created_at(c));
    let mut registry = base.clone();
    let mut verdicts = Vec::new();
    for crd in ordered {
        let name = text(crd, "/metadata/name").to_owned();
        let terminating = crd.pointer("/metadata/deletionTimestamp").is_some();
        let builtin = served_by_hami(base, crd);
        let mut kinds = match kinds_from_crd(crd) {
            Ok(kinds) => kinds,
            Err(e) => {
                verdicts.push(Verdict {
                    name,
                    accepted: Err(e.to_string()),
                    builtin,
                    terminating,
                    storage: None,
                });
                continue;
            }
        };
        let storage_version = crd
            .pointer("/spec/versions")
            .and_then(Value::as_array)
            .and_then(|vs| {
                vs.iter()
                    .find(|v| v.get("storage").and_then(Value::as_bool) == Some(true))
            })
            .map(|v| text(v, "/name").to_owned())
            .unwrap_or_default();
        // The storage version first: it names the store's copy (the
        // detector's and the collector's view of the kind).
        kinds.sort_by_key(|k| k.version != storage_version);
        for k in &mut kinds {
            k.custom = true;
            k.terminating = terminating;
        }
        let storage = kinds.first().cloned();
        if builtin {
            verdicts.push(Verdict {
                name,
                accepted: Ok(()),
                builtin,
                terminating,
                storage,
            });
            continue;
        }
        let conflict = kinds.iter().find_map(|k| {
            if registry.lookup(&k.group, &k.version, &k.plural).is_some() {
                return Some(format!("{:?} is already in use", k.plural));
            }
            registry
                .kinds()
                .iter()
                .find(|other| {
                    other.group == k.group
                        && other.plural != k.plural
                        && (other.kind == k.kind
                            || other.short_names.iter().any(|s| k.short_names.contains(s)))
                })
                .map(|other| format!("names of {:?} conflict with {:?}", k.plural, other.plural))
        });
        let accepted = match conflict {
            Some(why) => Err(why),
            None => {
                let mut added = Ok(());
                for k in kinds {
                    if let Err(e) = registry.add(k) {
                        added = Err(e.to_string());
                    }
                }
                added
            }
        };
        verdicts.push(Verdict {
            name,
            accepted,
            builtin,
            terminating,
            storage,
        });
    }
    Built { registry, verdicts }
}

/// The stored CRDs.
fn stored_definitions(state: &State) -> Result<Vec<Value>, ApiError> {
    let kind = definition_kind();
    let prefix = keys::kind_prefix(&kind);
    let list = state
        .store
        .list(&prefix, None, 0)
        .map_err(|e| ApiError::from_store(e, GROUP, PLURAL, ""))?;
    Ok(list
        .items
        .iter()
        .filter_map(|kv| meta::decode_stored(&kv.value, kv.mod_revision))
        .collect())
}

/// Rebuilds the served kinds from the stored CRDs (a no-op when nothing
/// changed). Called after every CRD write and by [`run`].
pub fn refresh(state: &State) -> Result<Built, ApiError> {
    let crds = stored_definitions(state)?;
    let built = build(&state.registry.base(), &crds);
    if !state.dry_run && *state.registry.load() != built.registry {
        tracing::info!(
            kinds = built.registry.kinds().len(),
            "the served kinds changed (CustomResourceDefinitions)"
        );
        state.registry.replace(built.registry.clone());
    }
    Ok(built)
}

/// Keeps the served kinds, the CRDs' status and the deleted CRDs' objects
/// in step with the stored CRDs until `stop` turns true. Runs on every
/// replica (each serves the API); the writes are optimistic and the same
/// on every replica, so two replicas doing them agree.
pub async fn run(state: Arc<State>, mut stop: signal::Receiver<bool>) {
    let kind = definition_kind();
    let prefix = keys::kind_prefix(&kind);
    let mut backoff = Duration::from_millis(100);
    loop {
        if *stop.borrow() {
            return;
        }
        let revision = state.store.current_revision();
        let pending = match reconcile(&state).await {
            Ok(pending) => {
                backoff = Duration::from_millis(100);
                pending
            }
            Err(e) => {
                tracing::warn!(error = %e, retry_in = ?backoff, "CustomResourceDefinitions: reconcile failed");
                backoff = (backoff * 2).min(Duration::from_secs(10));
                true
            }
        };
        let mut watch = match state.store.watch(&prefix, revision) {
            Ok(w) => w,
            Err(e) => {
                tracing::warn!(error = %e, "CustomResourceDefinitions: watch failed");
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = stop.wait_for(|s| *s) => return,
                }
                continue;
            }
        };
        // Wait for a change; come back sooner while objects are being
        // cleaned up (their deletion is not a CRD event).
        let wait = if pending {
            backoff.min(Duration::from_millis(500))
        } else {
            Duration::from_secs(300)
        };
        tokio::select! {
            // Any event (or the watch ending) means: look again.
            _ = watch.events.recv() => {}
            _ = tokio::time::sleep(wait) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}

/// One pass: served kinds, statuses, cleanups. True when a cleanup is still
/// waiting for objects to go.
async fn reconcile(state: &Arc<State>) -> Result<bool, ApiError> {
    let built = refresh(state)?;
    let kind = definition_kind();
    let mut pending = false;
    for verdict in &built.verdicts {
        let current = match objects::get(state, &kind, None, &verdict.name) {
            Ok(c) => c,
            Err(ApiError::NotFound { .. }) => continue,
            Err(e) => return Err(e),
        };
        if verdict.terminating {
            pending |= !cleanup(state, verdict).await?;
            continue;
        }
        let status = desired_status(&current.object, verdict);
        if current.object.get("status") != Some(&status) {
            let mut new = current.object.clone();
            new["status"] = status;
            meta::set_resource_version(&mut new, current.revision);
            match objects::update(
                state,
                &kind,
                None,
                &verdict.name,
                new,
                UpdateScope::Status,
                Some(MANAGER),
            )
            .await
            {
                Ok(_) | Err(ApiError::Conflict { .. }) | Err(ApiError::NotFound { .. }) => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(pending)
}

fn condition(type_: &str, ok: bool, reason: &str, message: &str, previous: &Value) -> Value {
    let status = if ok { "True" } else { "False" };
    // The transition time moves only when the status does.
    let since = previous
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .and_then(|cs| {
            cs.iter()
                .find(|c| c.get("type").and_then(Value::as_str) == Some(type_))
        })
        .filter(|c| c.get("status").and_then(Value::as_str) == Some(status))
        .and_then(|c| c.get("lastTransitionTime").cloned())
        .unwrap_or_else(|| json!(meta::now_rfc3339()));
    json!({"type": type_, "status": status, "reason": reason, "message": message, "lastTransitionTime": since})
}

/// The status kube-apiserver's naming and establishing controllers give.
fn desired_status(crd: &Value, verdict: &Verdict) -> Value {
    let spec_names = crd
        .pointer("/spec/names")
        .cloned()
        .unwrap_or_else(|| json!({}));
    let kind = text(crd, "/spec/names/kind");
    let mut accepted_names = json!({
        "plural": text(crd, "/spec/names/plural"),
        "singular": spec_names.get("singular").and_then(Value::as_str).map(str::to_owned).unwrap_or_else(|| kind.to_lowercase()),
        "kind": kind,
        "listKind": spec_names.get("listKind").and_then(Value::as_str).map(str::to_owned).unwrap_or_else(|| format!("{kind}List")),
    });
    for field in ["shortNames", "categories"] {
        if let Some(v) = spec_names.get(field) {
            accepted_names[field] = v.clone();
        }
    }
    let mut stored: Vec<Value> = crd
        .pointer("/status/storedVersions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if let Some(storage) = &verdict.storage
        && !stored
            .iter()
            .any(|v| v.as_str() == Some(storage.version.as_str()))
    {
        stored.push(json!(storage.version));
    }
    let conditions = match &verdict.accepted {
        Ok(()) => vec![
            condition(
                "NamesAccepted",
                true,
                "NoConflicts",
                "no conflicts found",
                crd,
            ),
            condition(
                "Established",
                true,
                "InitialNamesAccepted",
                if verdict.builtin {
                    "the initial names have been accepted (served by hami itself)"
                } else {
                    "the initial names have been accepted"
                },
                crd,
            ),
        ],
        Err(why) => vec![
            condition("NamesAccepted", false, "NameConflict", why, crd),
            condition(
                "Established",
                false,
                "NotAccepted",
                "not all names are accepted",
                crd,
            ),
        ],
    };
    let accepted_names = if verdict.accepted.is_ok() {
        accepted_names
    } else {
        json!({"plural": "", "kind": ""})
    };
    json!({"conditions": conditions, "acceptedNames": accepted_names, "storedVersions": stored})
}

/// Deletes a terminating CRD's objects; once none is left, removes the
/// cleanup finalizer (and with it the CRD). True when done.
async fn cleanup(state: &Arc<State>, verdict: &Verdict) -> Result<bool, ApiError> {
    let definition = definition_kind();
    // hami's own kinds are not this CRD's to delete.
    if let (Some(kind), false) = (&verdict.storage, verdict.builtin) {
        let prefix = keys::kind_prefix(kind);
        let list = state
            .store
            .list(&prefix, None, 0)
            .map_err(|e| ApiError::from_store(e, &kind.group, &kind.plural, ""))?;
        if !list.items.is_empty() {
            set_terminating(state, &verdict.name, true).await?;
            for kv in &list.items {
                let Some((ns, name)) = keys::parse_key(kind, &kv.key) else {
                    continue;
                };
                match deletion::delete(state, kind, ns, name, &DeleteOptions::default()).await {
                    Ok(_) | Err(ApiError::NotFound { .. }) | Err(ApiError::Conflict { .. }) => {}
                    Err(e) => return Err(e),
                }
            }
            return Ok(false);
        }
    }
    for _ in 0..objects::MAX_RETRIES {
        let current = match objects::get(state, &definition, None, &verdict.name) {
            Ok(c) => c,
            Err(ApiError::NotFound { .. }) => return Ok(true),
            Err(e) => return Err(e),
        };
        let mut new = current.object.clone();
        if let Some(list) = new
            .pointer_mut("/metadata/finalizers")
            .and_then(Value::as_array_mut)
        {
            list.retain(|f| f.as_str() != Some(CLEANUP_FINALIZER));
        }
        meta::set_resource_version(&mut new, current.revision);
        match objects::update(
            state,
            &definition,
            None,
            &verdict.name,
            new,
            UpdateScope::Main,
            Some(MANAGER),
        )
        .await
        {
            Ok(_) | Err(ApiError::NotFound { .. }) => {
                refresh(state)?;
                return Ok(true);
            }
            Err(ApiError::Conflict { .. }) => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(false)
}

/// Sets the `Terminating` condition while objects are being deleted.
async fn set_terminating(state: &State, name: &str, deleting: bool) -> Result<(), ApiError> {
    let definition = definition_kind();
    let current = match objects::get(state, &definition, None, name) {
        Ok(c) => c,
        Err(ApiError::NotFound { .. }) => return Ok(()),
        Err(e) => return Err(e),
    };
    let mut new = current.object.clone();
    let terminating = condition(
        "Terminating",
        deleting,
        "InstanceDeletionInProgress",
        "CustomResource deletion is in progress",
        &current.object,
    );
    let status = meta::as_map(
        meta::as_map(&mut new)
            .entry("status")
            .or_insert_with(|| json!({})),
    );
    let conditions = status.entry("conditions").or_insert_with(|| json!([]));
    if let Some(list) = conditions.as_array_mut() {
        list.retain(|c| c.get("type").and_then(Value::as_str) != Some("Terminating"));
        list.push(terminating);
    }
    if new == current.object {
        return Ok(());
    }
    meta::set_resource_version(&mut new, current.revision);
    match objects::update(
        state,
        &definition,
        None,
        name,
        new,
        UpdateScope::Status,
        Some(MANAGER),
    )
    .await
    {
        Ok(_) | Err(ApiError::Conflict { .. }) | Err(ApiError::NotFound { .. }) => Ok(()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn crd(group: &str, plural: &str, kind: &str, created: &str) -> Value {
        json!({
            "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": format!("{plural}.{group}"), "creationTimestamp": created},
            "spec": {
                "group": group, "scope": "Namespaced",
                "names": {"plural": plural, "kind": kind, "shortNames": ["sn"]},
                "versions": [
                    {"name": "v1beta1", "served": true, "storage": false,
                     "schema": {"openAPIV3Schema": {"type": "object"}}},
                    {"name": "v1", "served": true, "storage": true,
                     "schema": {"openAPIV3Schema": {"type": "object"}}}
                ]
            }
        })
    }

    fn causes(base: &Registry, crd: &Value) -> Vec<String> {
        validate(base, crd)
            .into_iter()
            .map(|c| format!("{}: {}", c.field, c.message))
            .collect()
    }

    #[test]
    fn a_valid_crd_passes_and_each_broken_rule_is_named() {
        let base = Registry::builtin();
        let good = crd("ml.example.com", "jobs", "Job", "2026-01-01T00:00:00Z");
        assert_eq!(causes(&base, &good), Vec::<String>::new());

        let mut two_storage = good.clone();
        two_storage["spec"]["versions"][0]["storage"] = json!(true);
        assert_eq!(
            causes(&base, &two_storage),
            [
                "spec.versions: Invalid value: 2: must have exactly one version marked as storage version"
            ]
        );
        let mut wrong_name = good.clone();
        wrong_name["metadata"]["name"] = json!("jobs");
        assert_eq!(
            causes(&base, &wrong_name),
            ["metadata.name: Invalid value: \"jobs\": must be spec.names.plural+\".\"+spec.group"]
        );
        let mut webhook = good.clone();
        webhook["spec"]["conversion"] = json!({"strategy": "Webhook"});
        assert!(causes(&base, &webhook)[0].starts_with("spec.conversion.strategy: Forbidden"));
        let mut no_schema = good.clone();
        no_schema["spec"]["versions"][1]
            .as_object_mut()
            .unwrap()
            .remove("schema");
        assert_eq!(
            causes(&base, &no_schema),
            ["spec.versions[1].schema.openAPIV3Schema: Required value: schemas are required"]
        );
        let mut cel = good.clone();
        cel["spec"]["versions"][1]["schema"]["openAPIV3Schema"]["x-kubernetes-validations"] =
            json!([{"rule": "true"}]);
        assert!(
            causes(&base, &cel).iter().any(|c| c.contains("CEL")),
            "{:?}",
            causes(&base, &cel)
        );
    }

    #[test]
    fn groups_hami_serves_are_refused_unless_the_crd_is_hamis_own() {
        let base = Registry::builtin();
        let apps = crd("apps", "widgets", "Widget", "");
        assert!(
            causes(&base, &apps)
                .iter()
                .any(|c| c.contains("served by hami itself")),
            "{:?}",
            causes(&base, &apps)
        );
        // The same kind as a base kind (what `hami crds` prints for hami's
        // kinds): accepted, and it adds nothing.
        let mut own = crd("apps", "deployments", "Deployment", "");
        own["metadata"]["name"] = json!("deployments.apps");
        assert!(
            !causes(&base, &own)
                .iter()
                .any(|c| c.contains("served by hami itself"))
        );
        let built = build(&base, &[own]);
        assert_eq!(built.registry, base);
        assert!(built.verdicts[0].builtin && built.verdicts[0].accepted.is_ok());
    }

    #[test]
    fn build_serves_every_version_storage_first_and_the_older_crd_keeps_its_names() {
        let base = Registry::builtin();
        let older = crd("ml.example.com", "jobs", "Job", "2026-01-01T00:00:00Z");
        let mut newer = crd("ml.example.com", "tasks", "Task", "2026-02-01T00:00:00Z");
        // Wants the short name the older CRD has.
        newer["spec"]["names"]["shortNames"] = json!(["sn"]);
        let built = build(&base, &[newer, older]);
        let jobs: Vec<_> = built
            .registry
            .kinds()
            .iter()
            .filter(|k| k.plural == "jobs" && k.group == "ml.example.com")
            .collect();
        assert_eq!(jobs.len(), 2);
        assert!(jobs.iter().all(|k| k.custom));
        assert_eq!(
            built
                .registry
                .by_store_resource("ml.example.com", "jobs")
                .unwrap()
                .version,
            "v1",
            "the storage version names the stored copy"
        );
        let verdict = |name: &str| {
            built
                .verdicts
                .iter()
                .find(|v| v.name == name)
                .unwrap()
                .clone()
        };
        assert!(verdict("jobs.ml.example.com").accepted.is_ok());
        assert!(verdict("tasks.ml.example.com").accepted.is_err());
        assert!(
            built
                .registry
                .lookup("ml.example.com", "v1", "tasks")
                .is_none()
        );
    }

    #[test]
    fn a_terminating_crd_stays_served_for_reads_and_deletes_only() {
        let base = Registry::builtin();
        let mut gone = crd("ml.example.com", "jobs", "Job", "2026-01-01T00:00:00Z");
        gone["metadata"]["deletionTimestamp"] = json!("2026-03-01T00:00:00Z");
        let built = build(&base, &[gone]);
        let kind = built
            .registry
            .lookup("ml.example.com", "v1", "jobs")
            .unwrap();
        assert!(kind.terminating);
        assert!(built.verdicts[0].terminating);
    }

    #[test]
    fn status_says_established_with_accepted_names_and_stored_versions() {
        let base = Registry::builtin();
        let c = crd("ml.example.com", "jobs", "Job", "2026-01-01T00:00:00Z");
        let built = build(&base, std::slice::from_ref(&c));
        let status = desired_status(&c, &built.verdicts[0]);
        let types: Vec<(&str, &str)> = status["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| (c["type"].as_str().unwrap(), c["status"].as_str().unwrap()))
            .collect();
        assert_eq!(types, [("NamesAccepted", "True"), ("Established", "True")]);
        assert_eq!(status["acceptedNames"]["listKind"], "JobList");
        assert_eq!(status["acceptedNames"]["singular"], "job");
        assert_eq!(status["storedVersions"], json!(["v1"]));
        // A second pass with the same input keeps the transition times.
        let mut again = c.clone();
        again["status"] = status.clone();
        assert_eq!(desired_status(&again, &built.verdicts[0]), status);
    }
}
