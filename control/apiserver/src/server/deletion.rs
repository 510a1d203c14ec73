//! Deletion: DeleteOptions preconditions, finalizers (deletionTimestamp until
//! the last one is removed), namespace termination with its content, and the
//! namespaces every server starts with.

use std::sync::Arc;

use hami_store::StoreError;
use serde_json::{Value, json};

use super::State;
use super::keys;
use super::meta;
use super::objects::{MAX_RETRIES, create, get, store_err};
use super::registry::ResourceKind;
use super::status::ApiError;

/// Options of a DELETE (the DeleteOptions body).
#[derive(Clone, Debug, Default)]
pub struct DeleteOptions {
    pub uid: Option<String>,
    pub resource_version: Option<String>,
}

impl DeleteOptions {
    /// Reads the optional DeleteOptions body (propagationPolicy and grace
    /// period are accepted and have no effect: there is no garbage collector).
    pub fn from_body(body: Option<&Value>) -> Self {
        let text = |p: &str| {
            body.and_then(|b| b.pointer(p))
                .and_then(Value::as_str)
                .map(str::to_owned)
        };
        Self {
            uid: text("/preconditions/uid"),
            resource_version: text("/preconditions/resourceVersion"),
        }
    }
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
/// finalizers remain. A namespace turns Terminating at once and is removed,
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
        let result = if meta::finalizers(&current.object).is_empty() {
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
        } else if current
            .object
            .pointer("/metadata/deletionTimestamp")
            .is_some()
        {
            return Ok((current.object, false));
        } else {
            let mut object = current.object.clone();
            let m = meta::metadata_mut(&mut object);
            m.insert("deletionTimestamp".into(), json!(meta::now_rfc3339()));
            m.insert("deletionGracePeriodSeconds".into(), json!(0));
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
            Err(StoreError::Conflict { .. }) => continue,
            Err(e) => return Err(store_err(e, kind, name)),
        }
    }
    Err(ApiError::too_many_updates(kind, name))
}

/// Deletes every namespaced object in `ns` (best effort, logged).
async fn delete_namespace_content(state: &State, ns: &str) {
    let kinds: Vec<Arc<ResourceKind>> = state
        .registry
        .load()
        .namespaced_storage_kinds()
        .into_iter()
        .cloned()
        .collect();
    for kind in kinds {
        let prefix = keys::list_prefix(&kind, Some(ns));
        let Ok(list) = state.store.list(&prefix, None, 0) else {
            continue;
        };
        for kv in list.items {
            let Some((_, name)) = keys::parse_key(&kind, &kv.key) else {
                continue;
            };
            if let Err(e) =
                delete_object(state, &kind, Some(ns), name, &DeleteOptions::default()).await
            {
                tracing::warn!(namespace = ns, name, error = %e, "deleting namespace content");
            }
        }
    }
}

/// Creates `default` and `kube-system` when they do not exist yet.
pub async fn ensure_default_namespaces(state: &State) -> Result<(), ApiError> {
    let Some(kind) = state.registry.load().lookup("", "v1", "namespaces").cloned() else {
        return Ok(());
    };
    for name in ["default", "kube-system"] {
        let object = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}});
        match create(state, &kind, None, object, None).await {
            Ok(_) | Err(ApiError::AlreadyExists { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
