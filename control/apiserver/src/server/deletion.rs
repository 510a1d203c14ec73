//! Deletion: DeleteOptions (preconditions, propagationPolicy and the
//! deprecated orphanDependents), the garbage collector's finalizers
//! (`orphan`, `foregroundDeletion`), finalizers in general (deletionTimestamp
//! until the last one is removed), namespace termination with its content,
//! and the namespaces every server starts with.
//!
//! What kube-apiserver does and this reproduces
//! (k8s.io/apiserver `pkg/registry/generic/registry/store.go`, `Store.Delete`):
//!
//! * `propagationPolicy` Orphan | Background | Foreground, or the deprecated
//!   `orphanDependents` (true = Orphan, false = Background); both set, or
//!   another policy, is 422 Invalid worded as `ValidateDeleteOptions` words
//!   it (a body of the wrong type is 400, as kube's decoder answers).
//! * `deletionFinalizersForGarbageCollection`: the options decide which of
//!   `orphan` / `foregroundDeletion` the object carries (the other one is
//!   taken off); without a policy the object's own GC finalizer stands.
//! * An object left with finalizers gets `deletionTimestamp` (kept when it
//!   already has one: `markAsDeleting`) and `deletionGracePeriodSeconds: 0`
//!   and stays until its finalizers are removed (the garbage collector in
//!   `hami-control` removes the two above); one left with none is deleted at
//!   once (`errDeleteNow`), also when it was already being deleted and the
//!   new policy took its last finalizer off (kube updates the finalizers of
//!   an object already being deleted when the policy differs).
//! * Preconditions (uid, resourceVersion) are checked on the object read,
//!   and every write is pinned to that read's revision.
//!
//! Not reproduced: the generation bump of `markAsDeleting`; DeleteOptions
//! given as query parameters (kubectl and kube-rs send a body); graceful
//! deletion (`gracePeriodSeconds`, pods). Namespaces keep their own path
//! (Terminating, then their content): their propagationPolicy is checked
//! and otherwise has no effect.

use std::sync::Arc;

use hami_store::StoreError;
use serde_json::{Value, json};

use super::State;
use super::keys;
use super::meta;
use super::objects::{MAX_RETRIES, create, get, store_err};
use super::registry::ResourceKind;
use super::status::{ApiError, Cause, Target};

/// The finalizer by which the garbage collector orphans dependents before
/// the object goes (kube's `metav1.FinalizerOrphanDependents`).
pub const FINALIZER_ORPHAN: &str = "orphan";
/// The finalizer that keeps the object until the garbage collector deleted
/// its blocking dependents (kube's `metav1.FinalizerDeleteDependents`).
pub const FINALIZER_FOREGROUND: &str = "foregroundDeletion";

/// kube's `metav1.DeletionPropagation`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Propagation {
    /// Dependents are kept; their references to the object are removed.
    Orphan,
    /// The object goes now; the garbage collector deletes its dependents.
    Background,
    /// The object stays (deletionTimestamp, `foregroundDeletion`) until the
    /// garbage collector deleted its dependents that block it.
    Foreground,
}

impl Propagation {
    /// The policy's name in DeleteOptions.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Orphan => "Orphan",
            Self::Background => "Background",
            Self::Foreground => "Foreground",
        }
    }

    fn parse(text: &str) -> Option<Self> {
        match text {
            "Orphan" => Some(Self::Orphan),
            "Background" => Some(Self::Background),
            "Foreground" => Some(Self::Foreground),
            _ => None,
        }
    }
}

/// Options of a DELETE (the DeleteOptions body).
#[derive(Clone, Debug, Default)]
pub struct DeleteOptions {
    pub uid: Option<String>,
    pub resource_version: Option<String>,
    /// `propagationPolicy` (or `orphanDependents`); `None`: the object's own
    /// garbage-collector finalizer decides, else Background.
    pub propagation: Option<Propagation>,
}

/// 422 on DeleteOptions, worded as kube-apiserver's `errors.NewInvalid`
/// over `ValidateDeleteOptions` (group `meta.k8s.io`, no name).
fn invalid_options(field: &str, reason: &str, message: String) -> ApiError {
    ApiError::Invalid {
        message: format!("DeleteOptions.meta.k8s.io \"\" is invalid: {field}: {message}"),
        target: Target {
            name: String::new(),
            group: "meta.k8s.io".into(),
            kind: "DeleteOptions".into(),
        },
        causes: vec![Cause::new(reason, field, message)],
    }
}

impl DeleteOptions {
    /// Reads the optional DeleteOptions body: preconditions, and the
    /// propagation as kube-apiserver reads it (`gracePeriodSeconds` is
    /// accepted and has no effect).
    pub fn from_body(body: Option<&Value>) -> Result<Self, ApiError> {
        let field = |p: &str| body.and_then(|b| b.pointer(p)).filter(|v| !v.is_null());
        let text = |p: &str| field(p).and_then(Value::as_str).map(str::to_owned);
        // A value of the wrong type fails kube's decoder: 400.
        let policy = match field("/propagationPolicy") {
            None => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(other) => {
                return Err(ApiError::bad_request(format!(
                    "json: cannot unmarshal {} into Go struct field DeleteOptions.propagationPolicy of type v1.DeletionPropagation",
                    json_type(other)
                )));
            }
        };
        let orphan = match field("/orphanDependents") {
            None => None,
            Some(Value::Bool(b)) => Some(*b),
            Some(other) => {
                return Err(ApiError::bad_request(format!(
                    "json: cannot unmarshal {} into Go struct field DeleteOptions.orphanDependents of type bool",
                    json_type(other)
                )));
            }
        };
        // ValidateDeleteOptions: 422.
        if let (Some(p), Some(_)) = (&policy, orphan) {
            return Err(invalid_options(
                "propagationPolicy",
                "FieldValueInvalid",
                format!(
                    "Invalid value: {p:?}: orphanDependents and deletionPropagation cannot be both set"
                ),
            ));
        }
        let propagation = match (policy, orphan) {
            (Some(p), _) => Some(Propagation::parse(&p).ok_or_else(|| {
                invalid_options(
                    "propagationPolicy",
                    "FieldValueNotSupported",
                    format!(
                        "Unsupported value: {p:?}: supported values: \"Foreground\", \"Background\", \"Orphan\", \"nil\""
                    ),
                )
            })?),
            // shouldOrphanDependents / shouldDeleteDependents: an explicit
            // orphanDependents overrides; false means neither finalizer.
            (None, Some(true)) => Some(Propagation::Orphan),
            (None, Some(false)) => Some(Propagation::Background),
            (None, None) => None,
        };
        Ok(Self {
            uid: text("/preconditions/uid"),
            resource_version: text("/preconditions/resourceVersion"),
            propagation,
        })
    }
}

/// How Go's JSON decoder names a value's type in its errors.
fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// The finalizers an object carries once deleted with `propagation`, as
/// kube-apiserver's `deletionFinalizersForGarbageCollection` computes them:
/// the two GC finalizers are taken off, then the one the policy asks for
/// (without a policy: the one the object had) is put back at the end.
/// Answers the new list and whether it differs (as a set) from `current`.
pub fn gc_finalizers(current: &[String], propagation: Option<Propagation>) -> (Vec<String>, bool) {
    let had = |f: &str| current.iter().any(|c| c == f);
    // shouldOrphanDependents: options first, then the object's finalizers
    // (orphan wins when it comes first), default no.
    let first_gc = current
        .iter()
        .find(|f| *f == FINALIZER_ORPHAN || *f == FINALIZER_FOREGROUND);
    let (orphan, foreground) = match propagation {
        Some(Propagation::Orphan) => (true, false),
        Some(Propagation::Background) => (false, false),
        Some(Propagation::Foreground) => (false, true),
        None => match first_gc.map(String::as_str) {
            Some(FINALIZER_ORPHAN) => (true, false),
            Some(_) => (false, true),
            None => (false, false),
        },
    };
    let mut out: Vec<String> = current
        .iter()
        .filter(|f| *f != FINALIZER_ORPHAN && *f != FINALIZER_FOREGROUND)
        .cloned()
        .collect();
    if orphan {
        out.push(FINALIZER_ORPHAN.to_owned());
    }
    if foreground {
        out.push(FINALIZER_FOREGROUND.to_owned());
    }
    let same = out.iter().all(|f| had(f)) && current.iter().all(|c| out.contains(c));
    (out, !same)
}

impl DeleteOptions {
    /// 409 Conflict, worded as kube-apiserver words it, when `current` is
    /// not the object the preconditions name.
    fn check(
        &self,
        kind: &ResourceKind,
        name: &str,
        current: &super::objects::Stored,
    ) -> Result<(), ApiError> {
        let conflict = |why: &str| Err(ApiError::conflict(&kind.group, &kind.plural, name, why));
        if self
            .uid
            .as_ref()
            .is_some_and(|uid| Some(uid.as_str()) != meta::meta_str(&current.object, "uid"))
        {
            return conflict(
                "Precondition failed: UID in precondition does not match the UID of the object",
            );
        }
        if self
            .resource_version
            .as_ref()
            .is_some_and(|rv| *rv != current.revision.to_string())
        {
            return conflict(
                "Precondition failed: ResourceVersion in precondition does not match the object",
            );
        }
        Ok(())
    }
}

/// DELETE: removes the object, or marks it with deletionTimestamp while
/// finalizers remain (the garbage collector's among them, as the
/// propagation asks). A namespace turns Terminating at once and is removed,
/// with everything in it, in the background after [`NAMESPACE_GRACE`]
/// (so `kubectl delete -f` of a namespace and its content succeeds, as it
/// does against Kubernetes). Returns the object and whether it is gone.
pub async fn delete(
    state: &Arc<State>,
    kind: &ResourceKind,
    ns: Option<&str>,
    name: &str,
    options: &DeleteOptions,
) -> Result<(Value, bool), ApiError> {
    if !(kind.group.is_empty() && kind.kind == "Namespace") {
        return delete_object(state, kind, ns, name, options).await;
    }
    for _ in 0..MAX_RETRIES {
        let current = get(state, kind, None, name)?;
        if current
            .object
            .pointer("/metadata/deletionTimestamp")
            .is_some()
        {
            return Ok((current.object, false));
        }
        options.check(kind, name, &current)?;
        let mut object = current.object.clone();
        meta::metadata_mut(&mut object)
            .insert("deletionTimestamp".into(), json!(meta::now_rfc3339()));
        object["status"] = json!({"phase": "Terminating"});
        let key = keys::object_key(kind, None, name);
        match state
            .store
            .update(
                &key,
                meta::encode_for_store(&object),
                Some(current.revision),
            )
            .await
        {
            Ok(kv) => {
                meta::set_resource_version(&mut object, kv.mod_revision);
                let state = state.clone();
                let kind = Arc::new(kind.clone());
                let name = name.to_owned();
                tokio::spawn(async move {
                    tokio::time::sleep(NAMESPACE_GRACE).await;
                    delete_namespace_content(&state, &name).await;
                    if let Err(e) =
                        delete_object(&state, &kind, None, &name, &DeleteOptions::default()).await
                    {
                        tracing::warn!(namespace = name, error = %e, "removing a terminated namespace");
                    }
                });
                return Ok((object, false));
            }
            Err(StoreError::Conflict { .. }) => continue,
            Err(e) => return Err(store_err(e, kind, name)),
        }
    }
    Err(ApiError::too_many_updates(kind, name))
}

/// How long a deleted namespace stays Terminating before its content goes.
pub const NAMESPACE_GRACE: std::time::Duration = std::time::Duration::from_secs(2);

/// Deletes one object; true when it is gone (false: finalizers hold it).
/// kube-apiserver's `Store.Delete` for kinds without graceful deletion.
async fn delete_object(
    state: &State,
    kind: &ResourceKind,
    ns: Option<&str>,
    name: &str,
    options: &DeleteOptions,
) -> Result<(Value, bool), ApiError> {
    for _ in 0..MAX_RETRIES {
        let current = get(state, kind, ns, name)?;
        options.check(kind, name, &current)?;
        let key = keys::object_key(kind, ns, name);
        let deleting = current
            .object
            .pointer("/metadata/deletionTimestamp")
            .is_some();
        let (finalizers, changed) =
            gc_finalizers(&meta::finalizers(&current.object), options.propagation);
        let result = if finalizers.is_empty() {
            // No finalizer left (none at all, or the policy took the last
            // GC finalizer off an object already being deleted): gone now.
            state
                .store
                .delete(&key, Some(current.revision))
                .await
                .map(|(kv, revision)| {
                    let mut object =
                        meta::decode_stored(&kv.value, revision).unwrap_or(Value::Null);
                    meta::set_resource_version(&mut object, revision);
                    (object, true)
                })
        } else if deleting && !changed {
            // Already being deleted, same finalizers: nothing to write.
            return Ok((current.object, false));
        } else {
            // markAsDeleting, with the finalizers the policy asks for.
            let mut object = current.object.clone();
            let m = meta::metadata_mut(&mut object);
            if !deleting {
                m.insert("deletionTimestamp".into(), json!(meta::now_rfc3339()));
                m.insert("deletionGracePeriodSeconds".into(), json!(0));
            }
            if changed {
                m.insert("finalizers".into(), json!(finalizers));
            }
            state
                .store
                .update(
                    &key,
                    meta::encode_for_store(&object),
                    Some(current.revision),
                )
                .await
                .map(|kv| {
                    meta::set_resource_version(&mut object, kv.mod_revision);
                    (object, false)
                })
        };
        match result {
            Ok(done) => return Ok(done),
            // Lost a race with another writer: read again (a pinned
            // resourceVersion then fails its precondition: 409).
            Err(StoreError::Conflict { .. }) => continue,
            Err(e) => return Err(store_err(e, kind, name)),
        }
    }
    Err(ApiError::too_many_updates(kind, name))
}

/// Deletes every namespaced object in `ns` (best effort, logged), with
/// Background propagation as kube's namespace controller deletes content.
async fn delete_namespace_content(state: &State, ns: &str) {
    let kinds: Vec<Arc<ResourceKind>> = state
        .registry
        .load()
        .namespaced_storage_kinds()
        .into_iter()
        .cloned()
        .collect();
    let background = DeleteOptions {
        propagation: Some(Propagation::Background),
        ..DeleteOptions::default()
    };
    for kind in kinds {
        let prefix = keys::list_prefix(&kind, Some(ns));
        let Ok(list) = state.store.list(&prefix, None, 0) else {
            continue;
        };
        for kv in list.items {
            let Some((_, name)) = keys::parse_key(&kind, &kv.key) else {
                continue;
            };
            if let Err(e) = delete_object(state, &kind, Some(ns), name, &background).await {
                tracing::warn!(namespace = ns, name, error = %e, "deleting namespace content");
            }
        }
    }
}

/// Creates `default` and `kube-system` when they do not exist yet.
pub async fn ensure_default_namespaces(state: &State) -> Result<(), ApiError> {
    ensure_namespaces(state, &["default", "kube-system"]).await
}

/// Creates the namespaces `names` that do not exist yet (e.g. `kube-public`,
/// which the server creates when authentication is on).
pub async fn ensure_namespaces(state: &State, names: &[&str]) -> Result<(), ApiError> {
    let Some(kind) = state
        .registry
        .load()
        .lookup("", "v1", "namespaces")
        .cloned()
    else {
        return Ok(());
    };
    for name in names {
        let object = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}});
        match create(state, &kind, None, object, None).await {
            Ok(_) | Err(ApiError::AlreadyExists { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::server::{ApiMetrics, ApiServer, Registry, ServerConfig};

    fn state() -> Arc<State> {
        let mut registry = prometheus_client::registry::Registry::default();
        let metrics = ApiMetrics::register(&mut registry);
        let (stop, rx) = tokio::sync::watch::channel(false);
        std::mem::forget(stop);
        let server = ApiServer::new(
            Arc::new(hami_store::MemoryStore::new()),
            Registry::builtin(),
            ServerConfig::default(),
            metrics,
            Arc::new(registry),
            rx,
        );
        server.state().clone()
    }

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn options_read_the_policy_as_kube_apiserver_does() {
        let read = |body: Value| DeleteOptions::from_body(Some(&body));
        let p = |body: Value| read(body).unwrap().propagation;
        assert_eq!(p(json!({})), None);
        assert_eq!(
            p(json!({"propagationPolicy": "Foreground"})),
            Some(Propagation::Foreground)
        );
        assert_eq!(
            p(json!({"propagationPolicy": "Orphan"})),
            Some(Propagation::Orphan)
        );
        assert_eq!(
            p(json!({"propagationPolicy": "Background"})),
            Some(Propagation::Background)
        );
        // The deprecated field: true orphans, false is neither finalizer.
        assert_eq!(
            p(json!({"orphanDependents": true})),
            Some(Propagation::Orphan)
        );
        assert_eq!(
            p(json!({"orphanDependents": false})),
            Some(Propagation::Background)
        );
        assert_eq!(p(json!({"propagationPolicy": null})), None);
        let e = read(json!({"propagationPolicy": "Later"})).unwrap_err();
        assert_eq!(e.code(), 422);
        assert_eq!(
            e.to_string(),
            "DeleteOptions.meta.k8s.io \"\" is invalid: propagationPolicy: Unsupported value: \"Later\": supported values: \"Foreground\", \"Background\", \"Orphan\", \"nil\""
        );
        let both = read(json!({"propagationPolicy": "Orphan", "orphanDependents": true}));
        let e = both.unwrap_err();
        assert_eq!(e.code(), 422);
        assert!(e.to_string().contains("cannot be both set"), "{e}");
        assert_eq!(
            read(json!({"propagationPolicy": 3})).unwrap_err().code(),
            400
        );
        assert_eq!(
            read(json!({"orphanDependents": "yes"})).unwrap_err().code(),
            400
        );
        let pre = read(json!({"preconditions": {"uid": "u", "resourceVersion": "7"}})).unwrap();
        assert_eq!(pre.uid.as_deref(), Some("u"));
        assert_eq!(pre.resource_version.as_deref(), Some("7"));
    }

    #[test]
    fn gc_finalizers_follow_deletion_finalizers_for_garbage_collection() {
        // (finalizers, policy, finalizers after, changed)
        type Case = (
            &'static [&'static str],
            Option<Propagation>,
            &'static [&'static str],
            bool,
        );
        let cases: &[Case] = &[
            (&[], None, &[], false),
            (&[], Some(Propagation::Background), &[], false),
            (&[], Some(Propagation::Orphan), &["orphan"], true),
            (
                &[],
                Some(Propagation::Foreground),
                &["foregroundDeletion"],
                true,
            ),
            (
                &["x"],
                Some(Propagation::Foreground),
                &["x", "foregroundDeletion"],
                true,
            ),
            // The policy replaces the other GC finalizer.
            (
                &["orphan", "x"],
                Some(Propagation::Foreground),
                &["x", "foregroundDeletion"],
                true,
            ),
            (
                &["foregroundDeletion"],
                Some(Propagation::Background),
                &[],
                true,
            ),
            // Without a policy the object's own GC finalizer stands.
            (&["orphan"], None, &["orphan"], false),
            (
                &["x", "foregroundDeletion"],
                None,
                &["x", "foregroundDeletion"],
                false,
            ),
            // Same set in another order is no change.
            (
                &["orphan", "x"],
                Some(Propagation::Orphan),
                &["x", "orphan"],
                false,
            ),
        ];
        for (have, policy, want, changed) in cases {
            let got = gc_finalizers(&strings(have), *policy);
            assert_eq!(got, (strings(want), *changed), "{have:?} {policy:?}");
        }
    }

    async fn configmap(state: &State, name: &str, finalizers: &[&str]) -> Arc<ResourceKind> {
        let kind = state
            .registry
            .load()
            .lookup("", "v1", "configmaps")
            .cloned()
            .unwrap();
        ensure_default_namespaces(state).await.unwrap();
        let object = json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": name, "namespace": "default", "finalizers": finalizers}});
        create(state, &kind, Some("default"), object, None)
            .await
            .unwrap();
        kind
    }

    fn policy(p: Propagation) -> DeleteOptions {
        DeleteOptions {
            propagation: Some(p),
            ..DeleteOptions::default()
        }
    }

    #[tokio::test]
    async fn foreground_and_orphan_mark_the_object_and_keep_it() {
        let state = state();
        let kind = configmap(&state, "fg", &[]).await;
        let (object, gone) = delete(
            &state,
            &kind,
            Some("default"),
            "fg",
            &policy(Propagation::Foreground),
        )
        .await
        .unwrap();
        assert!(!gone);
        assert!(object["metadata"]["deletionTimestamp"].is_string());
        assert_eq!(object["metadata"]["deletionGracePeriodSeconds"], 0);
        assert_eq!(
            object["metadata"]["finalizers"],
            json!(["foregroundDeletion"])
        );
        let stored = get(&state, &kind, Some("default"), "fg").unwrap();
        assert_eq!(
            stored.object["metadata"]["finalizers"],
            json!(["foregroundDeletion"])
        );
        // Deleted again with another policy: the finalizers follow it and
        // the first deletionTimestamp stays.
        let (again, gone) = delete(
            &state,
            &kind,
            Some("default"),
            "fg",
            &policy(Propagation::Orphan),
        )
        .await
        .unwrap();
        assert!(!gone);
        assert_eq!(again["metadata"]["finalizers"], json!(["orphan"]));
        assert_eq!(
            again["metadata"]["deletionTimestamp"],
            object["metadata"]["deletionTimestamp"]
        );
        // Deleted again without a policy: nothing changes.
        let (same, _) = delete(
            &state,
            &kind,
            Some("default"),
            "fg",
            &DeleteOptions::default(),
        )
        .await
        .unwrap();
        assert_eq!(
            same["metadata"]["resourceVersion"],
            again["metadata"]["resourceVersion"]
        );
        // Background takes the last (GC) finalizer off: gone now.
        let (_, gone) = delete(
            &state,
            &kind,
            Some("default"),
            "fg",
            &policy(Propagation::Background),
        )
        .await
        .unwrap();
        assert!(gone);
        assert!(get(&state, &kind, Some("default"), "fg").is_err());
    }

    #[tokio::test]
    async fn background_deletes_at_once_and_other_finalizers_still_hold() {
        let state = state();
        let kind = configmap(&state, "plain", &[]).await;
        let (_, gone) = delete(
            &state,
            &kind,
            Some("default"),
            "plain",
            &policy(Propagation::Background),
        )
        .await
        .unwrap();
        assert!(gone);
        let kind = configmap(&state, "held", &["example.io/keep"]).await;
        let (object, gone) = delete(
            &state,
            &kind,
            Some("default"),
            "held",
            &policy(Propagation::Orphan),
        )
        .await
        .unwrap();
        assert!(!gone);
        assert_eq!(
            object["metadata"]["finalizers"],
            json!(["example.io/keep", "orphan"])
        );
    }

    #[tokio::test]
    async fn a_dry_run_delete_marks_nothing() {
        let state = state();
        let kind = configmap(&state, "dry", &[]).await;
        let dry = Arc::new(state.dry_run());
        let (object, gone) = delete(
            &dry,
            &kind,
            Some("default"),
            "dry",
            &policy(Propagation::Foreground),
        )
        .await
        .unwrap();
        assert!(!gone);
        assert_eq!(
            object["metadata"]["finalizers"],
            json!(["foregroundDeletion"])
        );
        let stored = get(&state, &kind, Some("default"), "dry").unwrap();
        assert!(stored.object["metadata"].get("deletionTimestamp").is_none());
        assert!(meta::finalizers(&stored.object).is_empty());
    }
}
