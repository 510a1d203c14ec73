//! The controllers' write path: the API server's own object operations
//! (`hami_apiserver::objects`), called in process on the same [`State`].
//!
//! Why in process and not through the HTTP API with kube-rs: a scheduling
//! decision sets `spec.clusters` and the `Scheduled` condition together.
//! Through HTTP that is two requests (the main PUT ignores status for kinds
//! with a status subresource), two store writes and two watch events per
//! decision, the very pattern that holds Karmada near 20 bindings/s. Here
//! [`Objects::write`] stores both in ONE optimistic store write, with exactly
//! the rules the API applies (same keys, resourceVersion from the store's
//! mod revision, generation bumped when anything outside metadata and status
//! changes, uid and creationTimestamp kept, validation of hami's kinds), so a
//! controller's write is indistinguishable from a client's.

use std::sync::Arc;

use hami_api::common::{WORK_GROUP, WORK_VERSION};
use hami_apiserver::objects::{self, StoreOrApi, Stored, UpdateMode, UpdateScope};
use hami_apiserver::{ApiError, ResourceKind, State, deletion, keys};
use hami_store::{Store, StoreError};
use serde_json::Value;

/// Why a controller's read or write failed.
#[derive(Debug, thiserror::Error)]
pub enum ObjectError {
    /// The object moved on since it was read (optimistic concurrency).
    #[error("conflict: the object changed since it was read")]
    Conflict,
    /// The API rejected the write (validation, not found, ...).
    #[error(transparent)]
    Api(Box<ApiError>),
    /// The server does not serve the kind.
    #[error("kind {0} is not served")]
    UnknownKind(String),
    /// The reconcile could not do all it should (an input not known yet,
    /// a write that failed): it must come back, so it is an error.
    #[error("incomplete: {0}")]
    Incomplete(String),
}

impl From<ApiError> for ObjectError {
    fn from(e: ApiError) -> Self {
        Self::Api(Box::new(e))
    }
}

/// Typed access to objects in the store, sharing the API server's rules.
#[derive(Clone)]
pub struct Objects {
    state: Arc<State>,
}

impl Objects {
    /// Wraps the API server's state.
    pub fn new(state: Arc<State>) -> Self {
        Self { state }
    }

    /// The store underneath.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.state.store
    }

    /// The kinds served now (CustomResourceDefinitions change them).
    pub fn registry(&self) -> Arc<hami_apiserver::Registry> {
        self.state.registry.load()
    }

    /// The served kind of `(apiVersion, kind)`.
    pub fn kind(&self, api_version: &str, kind: &str) -> Result<Arc<ResourceKind>, ObjectError> {
        self.state
            .registry
            .load()
            .by_gvk(api_version, kind)
            .cloned()
            .ok_or_else(|| ObjectError::UnknownKind(format!("{api_version}/{kind}")))
    }

    /// The served ResourceBinding and ClusterResourceBinding kinds.
    pub fn binding_kinds(&self) -> Result<(Arc<ResourceKind>, Arc<ResourceKind>), ObjectError> {
        let gv = format!("{WORK_GROUP}/{WORK_VERSION}");
        Ok((
            self.kind(&gv, "ResourceBinding")?,
            self.kind(&gv, "ClusterResourceBinding")?,
        ))
    }

    /// The store key of an object.
    pub fn key(kind: &ResourceKind, ns: Option<&str>, name: &str) -> String {
        keys::object_key(kind, ns, name)
    }

    /// Reads one object; `None` when absent.
    pub fn get(
        &self,
        kind: &ResourceKind,
        ns: Option<&str>,
        name: &str,
    ) -> Result<Option<Stored>, ObjectError> {
        match objects::get(&self.state, kind, ns, name) {
            Ok(s) => Ok(Some(s)),
            Err(ApiError::NotFound { .. }) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Creates an object (status included: controllers may set it at birth).
    pub async fn create(
        &self,
        kind: &ResourceKind,
        ns: Option<&str>,
        object: Value,
    ) -> Result<Value, ObjectError> {
        Ok(objects::create(&self.state, kind, ns, object, None).await?)
    }

    /// Replaces `current` by `new`, spec and status together, in ONE store
    /// write at `current`'s revision. `finish` sees the object as it will be
    /// stored (generation already bumped when the spec changed) and may set
    /// status fields that depend on it, e.g. an observed generation.
    /// A write that changes nothing is not stored.
    pub async fn write(
        &self,
        kind: &ResourceKind,
        ns: Option<&str>,
        name: &str,
        current: &Stored,
        new: Value,
        finish: impl FnOnce(&mut Value),
    ) -> Result<Value, ObjectError> {
        let status = new.get("status").cloned();
        let mode = UpdateMode {
            scope: UpdateScope::Main,
            manager: None,
        };
        let prepared = objects::prepare_update(&self.state, kind, ns, name, current, new, mode)?
            .map(|mut o| {
                match status {
                    Some(s) => o["status"] = s,
                    None => {
                        if let Some(m) = o.as_object_mut() {
                            m.remove("status");
                        }
                    }
                }
                finish(&mut o);
                o
            });
        match objects::commit_update(&self.state, kind, ns, name, current, prepared).await {
            Ok(v) => Ok(v),
            Err(StoreOrApi::Store(StoreError::Conflict { .. })) => Err(ObjectError::Conflict),
            Err(e) => Err(e.into_api(kind, name).into()),
        }
    }

    /// Deletes an object (finalizers respected); absent is success.
    pub async fn delete(
        &self,
        kind: &ResourceKind,
        ns: Option<&str>,
        name: &str,
    ) -> Result<(), ObjectError> {
        match deletion::delete(&self.state, kind, ns, name, &Default::default()).await {
            Ok(_) | Err(ApiError::NotFound { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

/// What a destructive write is pinned to: the object exactly as it was read
/// (its uid and resourceVersion), so that a decision taken on an older or
/// other object fails instead of deleting.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Precondition {
    pub uid: Option<String>,
    pub resource_version: String,
}

impl Precondition {
    /// The precondition of a stored object as read.
    pub fn of(stored: &Stored) -> Self {
        Self {
            uid: stored
                .object
                .pointer("/metadata/uid")
                .and_then(Value::as_str)
                .map(str::to_string),
            resource_version: stored.revision.to_string(),
        }
    }
}

impl Objects {
    /// Deletes an object only if it still is what `pin` names (same uid,
    /// same resourceVersion), with the API's own rules (finalizers
    /// respected); absent is success. A changed object is
    /// [`ObjectError::Conflict`]: re-read and decide again.
    pub async fn delete_pinned(
        &self,
        kind: &ResourceKind,
        ns: Option<&str>,
        name: &str,
        pin: &Precondition,
    ) -> Result<(), ObjectError> {
        self.delete_pinned_with(kind, ns, name, pin, None).await
    }

    /// [`delete_pinned`](Self::delete_pinned) with a propagation policy
    /// (the garbage collector's deletes, as kube-controller-manager's).
    pub async fn delete_pinned_with(
        &self,
        kind: &ResourceKind,
        ns: Option<&str>,
        name: &str,
        pin: &Precondition,
        propagation: Option<deletion::Propagation>,
    ) -> Result<(), ObjectError> {
        let options = deletion::DeleteOptions {
            uid: pin.uid.clone(),
            resource_version: Some(pin.resource_version.clone()),
            propagation,
        };
        match deletion::delete(&self.state, kind, ns, name, &options).await {
            Ok(_) | Err(ApiError::NotFound { .. }) => Ok(()),
            Err(ApiError::Conflict { .. }) => Err(ObjectError::Conflict),
            Err(e) => Err(e.into()),
        }
    }
}

/// The `spec` of an object read as `T`; `None` when it is absent or does not
/// read as `T`.
pub fn spec_of<T: serde::de::DeserializeOwned>(object: &Value) -> Option<T> {
    T::deserialize(object.get("spec")?).ok()
}
