//! Object operations over the store, shared by every verb: read, create,
//! update (main resource and status), managedFields, and the namespace
//! rules (deletion lives in `deletion`). Objects are JSON; the store holds them without
//! `metadata.resourceVersion`.

use hami_store::{KeyValue, Revision, StoreError};
use serde_json::{Value, json};

use super::State;
use super::keys;
use super::meta;
use super::registry::ResourceKind;
use super::status::{ApiError, Cause};
use super::validation;

/// How many times a write retries a lost optimistic race before giving up.
pub const MAX_RETRIES: usize = 16;

/// An object read from the store with its revision.
#[derive(Clone, Debug)]
pub struct Stored {
    pub object: Value,
    pub revision: Revision,
}

fn stored(kv: &KeyValue) -> Result<Stored, ApiError> {
    let object = meta::decode_stored(&kv.value, kv.mod_revision)
        .ok_or_else(|| ApiError::internal(format!("stored object {} is not JSON", kv.key)))?;
    Ok(Stored {
        object,
        revision: kv.mod_revision,
    })
}

pub(super) fn store_err(err: StoreError, kind: &ResourceKind, name: &str) -> ApiError {
    ApiError::from_store(err, &kind.group, &kind.plural, name)
}

/// DNS-1123 subdomain, the rule for most object names.
fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        && name
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphanumeric())
        && name
            .bytes()
            .last()
            .is_some_and(|b| b.is_ascii_alphanumeric())
}

/// kube's `path.IsValidPathSegmentName`: why `name` cannot be a path segment.
fn invalid_path_segment(name: &str) -> Option<String> {
    if name.is_empty() {
        return Some("name or generateName is required".into());
    }
    if name == "." || name == ".." {
        return Some(format!("may not be '{name}'"));
    }
    ["/", "%"]
        .iter()
        .find(|bad| name.contains(*bad))
        .map(|bad| format!("may not contain '{bad}'"))
}

/// Reads one object.
pub fn get(
    state: &State,
    kind: &ResourceKind,
    ns: Option<&str>,
    name: &str,
) -> Result<Stored, ApiError> {
    let key = keys::object_key(kind, ns, name);
    match state
        .store
        .get(&key)
        .map_err(|e| store_err(e, kind, name))?
    {
        Some(kv) => stored(&kv).map(|mut s| {
            kind.present(&mut s.object);
            s
        }),
        None => Err(ApiError::not_found(&kind.group, &kind.plural, name)),
    }
}

/// Checks the body's apiVersion and kind against the URL's kind, filling
/// them in when absent.
pub fn check_type(kind: &ResourceKind, object: &mut Value) -> Result<(), ApiError> {
    let api_version = kind.api_version();
    let map = meta::as_map(object);
    match map.get("apiVersion").and_then(Value::as_str) {
        None | Some("") => {
            map.insert("apiVersion".into(), json!(api_version));
        }
        Some(v) if v == api_version => {}
        Some(v) => {
            return Err(ApiError::bad_request(format!(
                "the API version in the data ({v}) does not match the expected API version ({api_version})"
            )));
        }
    }
    match map.get("kind").and_then(Value::as_str) {
        None | Some("") => {
            map.insert("kind".into(), json!(kind.kind));
        }
        Some(k) if k == kind.kind => {}
        Some(k) => {
            return Err(ApiError::bad_request(format!(
                "the kind in the data ({k}) does not match the expected kind ({})",
                kind.kind
            )));
        }
    }
    Ok(())
}

/// Makes the body's namespace agree with the URL's (400 on a mismatch).
fn check_namespace(
    kind: &ResourceKind,
    ns: Option<&str>,
    object: &mut Value,
) -> Result<(), ApiError> {
    let metadata = meta::metadata_mut(object);
    if !kind.namespaced {
        metadata.remove("namespace");
        return Ok(());
    }
    let Some(ns) = ns else {
        return Err(ApiError::bad_request(format!(
            "{} is namespaced: the request must name a namespace",
            kind.plural
        )));
    };
    match metadata.get("namespace").and_then(Value::as_str) {
        None | Some("") => {
            metadata.insert("namespace".into(), json!(ns));
            Ok(())
        }
        Some(body_ns) if body_ns == ns => Ok(()),
        Some(_) => Err(ApiError::bad_request(
            "the namespace of the provided object does not match the namespace sent on the request",
        )),
    }
}

/// Runs the name rule, kube-apiserver's rules for the built-in kinds and the
/// configured validator (hami's kinds); a 422 names every failed field.
fn validate(state: &State, kind: &ResourceKind, object: &Value) -> Result<(), ApiError> {
    let name = meta::meta_str(object, "name").unwrap_or_default();
    let mut causes = Vec::new();
    if kind.group == "rbac.authorization.k8s.io" {
        // kube's ValidateRBACName (path.IsValidPathSegmentName): any name
        // a URL path segment can carry, `system:masters`-style included.
        if let Some(why) = invalid_path_segment(name) {
            causes.push(Cause::new(
                "FieldValueInvalid",
                "metadata.name",
                format!("Invalid value: {name:?}: {why}"),
            ));
        }
    } else if !valid_name(name) {
        causes.push(Cause::new(
            "FieldValueInvalid",
            "metadata.name",
            format!(
                "Invalid value: {name:?}: a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character"
            ),
        ));
    }
    causes.extend(validation::builtin(&kind.group, &kind.kind, object));
    if super::csr::is_csr(kind) {
        causes.extend(super::csr::validate(object));
    }
    if super::crd::is_definition(kind) {
        causes.extend(super::crd::validate(&state.registry.base(), object));
    }
    if kind.custom
        && let Some(schema) = &kind.schema
    {
        causes.extend(super::crd::schema::validate(schema, object));
    }
    if causes.is_empty()
        && let Some(validator) = &state.config.validator
        && let Err(found) = validator(&kind.api_version(), &kind.kind, object)
    {
        causes = found;
    }
    if causes.is_empty() {
        Ok(())
    } else {
        Err(ApiError::invalid(&kind.group, &kind.kind, name, causes))
    }
}

/// A namespaced object may be created only in a namespace that exists and
/// is not being terminated (Kubernetes' NamespaceLifecycle admission): the
/// content of a terminating namespace is about to be deleted, new content
/// with it.
fn ensure_namespace_exists(
    state: &State,
    kind: &ResourceKind,
    ns: Option<&str>,
    name: &str,
) -> Result<(), ApiError> {
    let (true, Some(ns)) = (kind.namespaced, ns) else {
        return Ok(());
    };
    let key = format!("/registry/core/namespaces/{ns}");
    match state.store.get(&key) {
        Ok(Some(kv)) => {
            let terminating = serde_json::from_slice::<Value>(&kv.value)
                .ok()
                .is_some_and(|n| n.pointer("/metadata/deletionTimestamp").is_some());
            if terminating {
                return Err(ApiError::namespace_terminating(
                    &kind.group,
                    &kind.plural,
                    name,
                    ns,
                ));
            }
            Ok(())
        }
        Ok(None) => Err(ApiError::not_found("", "namespaces", ns)),
        Err(e) => Err(store_err(e, kind, ns)),
    }
}

/// Creates an object from a client's body. `ns` is the URL's namespace.
pub async fn create(
    state: &State,
    kind: &ResourceKind,
    ns: Option<&str>,
    mut object: Value,
    manager: Option<&str>,
) -> Result<Value, ApiError> {
    check_type(kind, &mut object)?;
    check_namespace(kind, ns, &mut object)?;
    if kind.terminating {
        // kube-apiserver's answer while a CRD's objects are being deleted.
        return Err(ApiError::MethodNotAllowed {
            message: format!(
                "create not allowed while custom resource definition is terminating ({})",
                kind.group_resource()
            ),
        });
    }
    if super::crd::is_definition(kind) {
        super::crd::prepare_create(&mut object);
    }
    if super::csr::is_csr(kind) {
        super::csr::prepare_create(&mut object)?;
    }
    let name = meta::meta_str(&object, "name")
        .unwrap_or_default()
        .to_owned();
    let generate_name = meta::meta_str(&object, "generateName")
        .unwrap_or_default()
        .to_owned();
    if name.is_empty() && generate_name.is_empty() {
        return Err(ApiError::invalid(
            &kind.group,
            &kind.kind,
            "",
            vec![Cause::new(
                "FieldValueRequired",
                "metadata.name",
                "Required value: name or generateName is required",
            )],
        ));
    }
    ensure_namespace_exists(state, kind, ns, &name)?;
    {
        let metadata = meta::metadata_mut(&mut object);
        for field in [
            "resourceVersion",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "selfLink",
        ] {
            metadata.remove(field);
        }
        metadata.insert("uid".into(), json!(meta::new_uid()));
        metadata.insert("creationTimestamp".into(), json!(meta::now_rfc3339()));
        metadata.insert("generation".into(), json!(1));
    }
    if kind.status_subresource {
        meta::as_map(&mut object).remove("status");
    }
    if kind.group.is_empty() && kind.kind == "Namespace" {
        object["status"] = json!({"phase": "Active"});
    }
    let attempts = if name.is_empty() { 5 } else { 1 };
    let mut last = None;
    for _ in 0..attempts {
        let mut candidate = object.clone();
        let name = if name.is_empty() {
            format!("{generate_name}{}", meta::random_suffix())
        } else {
            name.clone()
        };
        meta::metadata_mut(&mut candidate).insert("name".into(), json!(name));
        if let Some(manager) = manager {
            candidate = record_ownership(kind, None, &candidate, manager, None)?;
        }
        validate(state, kind, &candidate)?;
        let key = keys::object_key(kind, ns, &name);
        match state
            .store
            .create(&key, meta::encode_for_store(&candidate))
            .await
        {
            Ok(kv) => {
                meta::set_resource_version(&mut candidate, kv.mod_revision);
                definitions_changed(state, kind);
                return Ok(candidate);
            }
            Err(e) => last = Some(store_err(e, kind, &name)),
        }
    }
    Err(last.unwrap_or_else(|| ApiError::internal("create failed")))
}

/// Which part of an object an update may change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UpdateScope {
    /// The main resource: everything but status (for kinds with a status subresource).
    Main,
    /// The status subresource: only status.
    Status,
    /// CertificateSigningRequests' `approval` subresource: status, as the
    /// kind's rules allow (see `csr`).
    Approval,
}

impl UpdateScope {
    /// The scope of a write to `subresource`.
    pub fn of_subresource(subresource: Option<&str>) -> Self {
        match subresource {
            Some("status") => Self::Status,
            Some("approval") => Self::Approval,
            _ => Self::Main,
        }
    }
}

/// Which part an update changes and who makes it (`manager: None` leaves
/// managedFields as they are, e.g. after server-side apply set them).
#[derive(Clone, Copy, Debug)]
pub struct UpdateMode<'a> {
    pub scope: UpdateScope,
    pub manager: Option<&'a str>,
}

/// Builds the object an update stores from the current one and the client's
/// version, applying Kubernetes' rules. Returns the new object, or `None`
/// when the update removes the last finalizer of an object being deleted.
pub fn prepare_update(
    state: &State,
    kind: &ResourceKind,
    ns: Option<&str>,
    name: &str,
    current: &Stored,
    mut new: Value,
    mode: UpdateMode<'_>,
) -> Result<Option<Value>, ApiError> {
    let UpdateMode { scope, manager } = mode;
    check_type(kind, &mut new)?;
    check_namespace(kind, ns, &mut new)?;
    let body_name = meta::meta_str(&new, "name").unwrap_or_default();
    if body_name.is_empty() {
        meta::metadata_mut(&mut new).insert("name".into(), json!(name));
    } else if body_name != name {
        return Err(ApiError::bad_request(format!(
            "the name of the object ({body_name}) does not match the name on the URL ({name})"
        )));
    }
    if let Some(rv) = meta::meta_str(&new, "resourceVersion").filter(|rv| !rv.is_empty())
        && rv != current.revision.to_string()
    {
        return Err(ApiError::conflict(
            &kind.group,
            &kind.plural,
            name,
            "the object has been modified; please apply your changes to the latest version and try again",
        ));
    }
    let old = &current.object;
    let mut result = match scope {
        UpdateScope::Status | UpdateScope::Approval => {
            let mut r = old.clone();
            match new.get("status") {
                Some(status) => r["status"] = status.clone(),
                None => {
                    meta::as_map(&mut r).remove("status");
                }
            }
            r
        }
        UpdateScope::Main => {
            let mut r = new;
            if kind.status_subresource {
                match old.get("status") {
                    Some(status) => r["status"] = status.clone(),
                    None => {
                        meta::as_map(&mut r).remove("status");
                    }
                }
            }
            r
        }
    };
    if super::csr::is_csr(kind) {
        super::csr::prepare_update(old, &mut result, scope)?;
    }
    // Fields a client cannot change.
    let old_meta = old.get("metadata").cloned().unwrap_or_else(|| json!({}));
    {
        let m = meta::metadata_mut(&mut result);
        for field in [
            "uid",
            "creationTimestamp",
            "generation",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
        ] {
            match old_meta.get(field) {
                Some(v) => m.insert(field.into(), v.clone()),
                None => m.remove(field),
            };
        }
        m.remove("resourceVersion");
    }
    if meta::spec_changed(old, &result) {
        let generation = old_meta
            .get("generation")
            .and_then(Value::as_i64)
            .unwrap_or(0);
        meta::metadata_mut(&mut result).insert("generation".into(), json!(generation + 1));
    }
    let deleting = old_meta.get("deletionTimestamp").is_some();
    if deleting {
        let old_finalizers = meta::finalizers(old);
        if meta::finalizers(&result)
            .iter()
            .any(|f| !old_finalizers.contains(f))
        {
            return Err(ApiError::invalid(
                &kind.group,
                &kind.kind,
                name,
                vec![Cause::new(
                    "FieldValueForbidden",
                    "metadata.finalizers",
                    "Forbidden: no new finalizers can be added if the object is being deleted",
                )],
            ));
        }
        if meta::finalizers(&result).is_empty() {
            return Ok(None);
        }
    }
    if let Some(manager) = manager {
        let sub = match scope {
            UpdateScope::Main => None,
            UpdateScope::Status => Some("status"),
            UpdateScope::Approval => Some("approval"),
        };
        result = record_ownership(kind, Some(old), &result, manager, sub)?;
    }
    if scope == UpdateScope::Main {
        validate(state, kind, &result)?;
    }
    Ok(Some(result))
}

/// The patch module's writer for `manager` on `kind`.
pub fn writer<'a>(
    kind: &ResourceKind,
    manager: &'a str,
    subresource: Option<&'a str>,
    time: &'a str,
) -> crate::patch::apply::Writer<'a> {
    crate::patch::apply::Writer {
        manager,
        subresource,
        has_status_subresource: kind.status_subresource,
        time,
    }
}

/// Maps a server-side apply error: conflicts are 409 with one cause each.
pub fn apply_error(
    kind: &ResourceKind,
    name: &str,
    err: crate::patch::apply::ApplyError,
) -> ApiError {
    use crate::patch::apply::ApplyError;
    match err {
        ApplyError::Conflicts(conflicts) => {
            let causes = conflicts
                .iter()
                .map(|c| Cause::new("FieldManagerConflict", &c.field, c.cause_message()))
                .collect();
            let message = ApplyError::Conflicts(conflicts).to_string();
            ApiError::Invalid {
                message,
                target: super::status::Target {
                    name: name.to_owned(),
                    group: kind.group.clone(),
                    kind: kind.kind.clone(),
                },
                causes,
            }
            .into_conflict()
        }
        ApplyError::Invalid { path, reason } => ApiError::invalid(
            &kind.group,
            &kind.kind,
            name,
            vec![Cause::new("FieldValueInvalid", &path, reason)],
        ),
    }
}

/// Records `manager` as the owner of what this write changed (metadata.managedFields).
fn record_ownership(
    kind: &ResourceKind,
    old: Option<&Value>,
    new: &Value,
    manager: &str,
    subresource: Option<&str>,
) -> Result<Value, ApiError> {
    let time = meta::now_rfc3339();
    let name = meta::meta_str(new, "name").unwrap_or_default().to_owned();
    crate::patch::apply::record_update(
        old,
        new,
        &writer(kind, manager, subresource, &time),
        "Update",
    )
    .map_err(|e| apply_error(kind, &name, e))
}

/// After a CRD write: serve what the CRDs say now, before answering (so a
/// client's next request finds the kind).
fn definitions_changed(state: &State, kind: &ResourceKind) {
    if super::crd::is_definition(kind)
        && let Err(e) = super::crd::refresh(state)
    {
        tracing::warn!(error = %e, "refreshing the served kinds after a CRD write");
    }
}

/// Writes a prepared update (or the final delete) at `current.revision`.
pub async fn commit_update(
    state: &State,
    kind: &ResourceKind,
    ns: Option<&str>,
    name: &str,
    current: &Stored,
    prepared: Option<Value>,
) -> Result<Value, StoreOrApi> {
    let key = keys::object_key(kind, ns, name);
    match prepared {
        Some(object) if same_object(&object, &current.object) => Ok(current.object.clone()),
        Some(mut object) => {
            let kv = state
                .store
                .update(
                    &key,
                    meta::encode_for_store(&object),
                    Some(current.revision),
                )
                .await?;
            meta::set_resource_version(&mut object, kv.mod_revision);
            definitions_changed(state, kind);
            Ok(object)
        }
        None => {
            let (kv, revision) = state.store.delete(&key, Some(current.revision)).await?;
            let mut object = stored(&kv)?.object;
            meta::set_resource_version(&mut object, revision);
            definitions_changed(state, kind);
            Ok(object)
        }
    }
}

/// True when two versions of an object differ at most in resourceVersion
/// (a no-op write, which Kubernetes does not store).
fn same_object(a: &Value, b: &Value) -> bool {
    let strip = |v: &Value| {
        let mut v = v.clone();
        meta::metadata_mut(&mut v).remove("resourceVersion");
        v
    };
    strip(a) == strip(b)
}

/// A failed write: a store error (the caller may retry a conflict) or an API error.
#[derive(Debug)]
pub enum StoreOrApi {
    Store(StoreError),
    Api(ApiError),
}

impl From<StoreError> for StoreOrApi {
    fn from(e: StoreError) -> Self {
        Self::Store(e)
    }
}

impl From<ApiError> for StoreOrApi {
    fn from(e: ApiError) -> Self {
        Self::Api(e)
    }
}

impl StoreOrApi {
    pub fn into_api(self, kind: &ResourceKind, name: &str) -> ApiError {
        match self {
            Self::Store(e) => store_err(e, kind, name),
            Self::Api(e) => e,
        }
    }
}

/// PUT: replace an object (409 when the body's resourceVersion is stale).
pub async fn update(
    state: &State,
    kind: &ResourceKind,
    ns: Option<&str>,
    name: &str,
    new: Value,
    scope: UpdateScope,
    manager: Option<&str>,
) -> Result<Value, ApiError> {
    let pinned = meta::meta_str(&new, "resourceVersion").is_some_and(|rv| !rv.is_empty());
    for _ in 0..MAX_RETRIES {
        let current = get(state, kind, ns, name)?;
        let prepared = prepare_update(
            state,
            kind,
            ns,
            name,
            &current,
            new.clone(),
            UpdateMode { scope, manager },
        )?;
        match commit_update(state, kind, ns, name, &current, prepared).await {
            Ok(object) => return Ok(object),
            Err(StoreOrApi::Store(StoreError::Conflict { .. })) if !pinned => continue,
            Err(e) => return Err(e.into_api(kind, name)),
        }
    }
    Err(ApiError::too_many_updates(kind, name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_rfc1123() {
        assert!(valid_name("web-1.a"));
        for bad in ["", "Web", "-a", "a-", "a_b", &"a".repeat(254)] {
            assert!(!valid_name(bad), "{bad}");
        }
    }
}
