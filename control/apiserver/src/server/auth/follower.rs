//! The RBAC policy in step with the store: [`refresh`] builds a [`Policy`]
//! from the stored Roles, ClusterRoles, RoleBindings and ClusterRoleBindings
//! and swaps it in whole; [`run`] calls it at start and again after every
//! change the store's watch on `/registry/rbac.authorization.k8s.io/`
//! reports (one rebuild per wake-up, however many writes it brings: changes
//! made while a rebuild runs wake it once more). [`ensure_default_rbac`]
//! creates kube's default objects when they are missing.
//!
//! The store keys come from the served kinds (like the CRD follower finds
//! CRDs): a server whose registry has no RBAC kinds keeps an empty policy,
//! where only `system:masters` is allowed anything.

use std::sync::Arc;
use std::time::Duration;

use hami_store::StoreError;
use serde_json::{Value, json};
use tokio::sync::watch as signal;

use super::Auth;
use crate::server::State;
use crate::server::deletion;
use crate::server::keys;
use crate::server::meta;
use crate::server::rbac::{
    KUBE_PUBLIC, Policy, default_cluster_role_bindings, default_cluster_roles,
    default_namespaced_rbac,
};
use crate::server::registry::ResourceKind;
use crate::server::status::ApiError;

const RBAC_GROUP: &str = "rbac.authorization.k8s.io";

/// The served RBAC kinds: roles, clusterroles, rolebindings,
/// clusterrolebindings (`None` when the registry lacks one).
fn rbac_kinds(state: &State) -> Option<[Arc<ResourceKind>; 4]> {
    let registry = state.registry.load();
    let kind = |plural: &str| registry.by_store_resource(RBAC_GROUP, plural).cloned();
    Some([
        kind("roles")?,
        kind("clusterroles")?,
        kind("rolebindings")?,
        kind("clusterrolebindings")?,
    ])
}

fn stored(state: &State, kind: &ResourceKind) -> Result<Vec<Value>, ApiError> {
    let list = state
        .store
        .list(&keys::kind_prefix(kind), None, 0)
        .map_err(|e| ApiError::from_store(e, &kind.group, &kind.plural, ""))?;
    Ok(list
        .items
        .iter()
        .filter_map(|kv| {
            let object = meta::decode_stored(&kv.value, kv.mod_revision);
            if object.is_none() {
                tracing::warn!(key = %kv.key, "RBAC: stored object is not JSON: skipped");
            }
            object
        })
        .collect())
}

/// Rebuilds the policy from the store and swaps it in.
pub fn refresh(state: &State, auth: &Auth) -> Result<(), ApiError> {
    let Some([roles, cluster_roles, role_bindings, cluster_role_bindings]) = rbac_kinds(state)
    else {
        auth.set_policy(Policy::default());
        return Ok(());
    };
    let policy = Policy::build(
        &stored(state, &roles)?,
        &stored(state, &cluster_roles)?,
        &stored(state, &role_bindings)?,
        &stored(state, &cluster_role_bindings)?,
    );
    auth.set_policy(policy);
    Ok(())
}

/// Keeps `auth`'s policy in step with the stored RBAC objects until `stop`
/// turns true. Runs on every replica (each authorizes its own requests).
pub async fn run(state: Arc<State>, auth: Arc<Auth>, mut stop: signal::Receiver<bool>) {
    let mut backoff = Duration::from_millis(100);
    loop {
        if *stop.borrow() {
            return;
        }
        let Some([kind, ..]) = rbac_kinds(&state) else {
            // Nothing to follow; the served kinds may change (CRDs never
            // add RBAC kinds, but look again now and then).
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(300)) => continue,
                _ = stop.wait_for(|s| *s) => return,
            }
        };
        let prefix = format!("/registry/{}/", kind.store_group());
        let revision = state.store.current_revision();
        match refresh(&state, &auth) {
            Ok(()) => backoff = Duration::from_millis(100),
            Err(e) => {
                tracing::warn!(error = %e, retry_in = ?backoff, "RBAC: reading the policy failed");
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = stop.wait_for(|s| *s) => return,
                }
                backoff = (backoff * 2).min(Duration::from_secs(10));
                continue;
            }
        }
        let mut watch = match state.store.watch(&prefix, revision) {
            Ok(w) => w,
            Err(e) => {
                tracing::warn!(error = %e, "RBAC: watch failed");
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = stop.wait_for(|s| *s) => return,
                }
                backoff = (backoff * 2).min(Duration::from_secs(10));
                continue;
            }
        };
        let watch_ended = tokio::select! {
            // Any event means: read again. The periodic pass is a safety
            // net, not the way changes arrive.
            event = watch.events.recv() => !matches!(event, Some(Ok(_))),
            _ = tokio::time::sleep(Duration::from_secs(300)) => false,
            _ = stop.wait_for(|s| *s) => return,
        };
        if watch_ended {
            // The watch ended or failed (compacted, too slow): read again
            // after a pause, so a failing store is not spun on.
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = stop.wait_for(|s| *s) => return,
            }
        }
    }
}

/// Stores `object` unless an object of that name exists. Written to the
/// store directly, as kube-apiserver's bootstrap controllers write through
/// their storage: kube's default names (`system:discovery`,
/// `kubeadm:bootstrap-signer-clusterinfo`) are RBAC path-segment names,
/// which the generic create path's DNS-subdomain name rule refuses.
async fn create_if_missing(
    state: &State,
    kind: &ResourceKind,
    namespace: Option<&str>,
    mut object: Value,
) -> Result<(), ApiError> {
    let name = meta::meta_str(&object, "name")
        .unwrap_or_default()
        .to_owned();
    {
        let metadata = meta::metadata_mut(&mut object);
        if let Some(ns) = namespace {
            metadata.insert("namespace".into(), json!(ns));
        }
        metadata.insert("uid".into(), json!(meta::new_uid()));
        metadata.insert("creationTimestamp".into(), json!(meta::now_rfc3339()));
    }
    let key = keys::object_key(kind, namespace, &name);
    match state
        .store
        .create(&key, meta::encode_for_store(&object))
        .await
    {
        Ok(_) | Err(StoreError::AlreadyExists(_)) => Ok(()),
        Err(e) => Err(ApiError::from_store(e, &kind.group, &kind.plural, &name)),
    }
}

/// Creates what kube-apiserver and kubeadm create when missing (existing
/// objects are never changed): the `kube-public` namespace; kube's default
/// ClusterRoles and ClusterRoleBindings (`cluster-admin`, `admin`, `edit`,
/// `view`, `system:discovery`, `system:basic-user`,
/// `system:public-info-viewer`, `system:monitoring`, the aggregated parts);
/// kubeadm's Role and RoleBinding that let `system:anonymous` read the
/// `cluster-info` ConfigMap of `kube-public`.
pub async fn ensure_default_rbac(state: &State) -> Result<(), ApiError> {
    let Some([roles, cluster_roles, role_bindings, cluster_role_bindings]) = rbac_kinds(state)
    else {
        return Ok(());
    };
    deletion::ensure_namespaces(state, &[KUBE_PUBLIC]).await?;
    for role in default_cluster_roles() {
        create_if_missing(state, &cluster_roles, None, role).await?;
    }
    for binding in default_cluster_role_bindings() {
        create_if_missing(state, &cluster_role_bindings, None, binding).await?;
    }
    let (namespaced_roles, namespaced_bindings) = default_namespaced_rbac();
    for role in namespaced_roles {
        create_if_missing(state, &roles, Some(KUBE_PUBLIC), role).await?;
    }
    for binding in namespaced_bindings {
        create_if_missing(state, &role_bindings, Some(KUBE_PUBLIC), binding).await?;
    }
    Ok(())
}
