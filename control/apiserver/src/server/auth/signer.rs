//! kube-controller-manager's bootstrap signer (and kubeadm's `cluster-info`
//! phase): ConfigMap `kube-public/cluster-info` holds `kubeconfig` (the
//! control plane's URL and CA, no credentials), readable anonymously, and
//! one `jws-kubeconfig-<token-id>` per live bootstrap token that allows
//! signing: the detached JWS of `kubeconfig` with that token, so that a
//! joining agent that holds the token knows the ConfigMap is genuine.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde_json::{Map, Value, json};
use tokio::sync::watch as signal;

use super::bootstrap::{self, JWS_KEY_PREFIX, TokenSecret};
use crate::server::objects::{self, UpdateScope};
use crate::server::status::ApiError;
use crate::server::{State, keys, meta};

pub const CLUSTER_INFO: &str = "cluster-info";
pub const CLUSTER_INFO_NAMESPACE: &str = "kube-public";
const MANAGER: &str = "hami-bootstrap-signer";

/// The `data` the ConfigMap should hold at `now`: `kubeconfig` and a
/// signature per live signing token, given the token Secrets.
pub fn desired_data(kubeconfig: &str, secrets: &[Value], now: SystemTime) -> Map<String, Value> {
    let mut data = Map::new();
    data.insert("kubeconfig".into(), json!(kubeconfig));
    for secret in secrets {
        let Some(token) = TokenSecret::from_object(secret) else {
            continue;
        };
        if token.signing && !token.expired(now) {
            data.insert(
                format!("{JWS_KEY_PREFIX}{}", token.id),
                json!(bootstrap::detached_signature(
                    kubeconfig,
                    &token.id,
                    &token.secret
                )),
            );
        }
    }
    data
}

/// When the next of `secrets` expires after `now`, if any does.
fn next_expiry(secrets: &[Value], now: SystemTime) -> Option<SystemTime> {
    secrets
        .iter()
        .filter_map(TokenSecret::from_object)
        .filter_map(|t| t.expiration)
        .filter(|at| *at > now)
        .min()
}

fn kind(state: &State, plural: &str) -> Option<Arc<crate::server::ResourceKind>> {
    state
        .registry
        .load()
        .by_store_resource("core", plural)
        .cloned()
}

fn token_secrets(state: &State) -> Result<Vec<Value>, ApiError> {
    let prefix = format!(
        "/registry/core/secrets/{}/{}",
        bootstrap::NAMESPACE,
        bootstrap::SECRET_PREFIX
    );
    let list = state
        .store
        .list(&prefix, None, 0)
        .map_err(|e| ApiError::from_store(e, "", "secrets", ""))?;
    Ok(list
        .items
        .iter()
        .filter_map(|kv| meta::decode_stored(&kv.value, kv.mod_revision))
        .collect())
}

/// One pass: writes the ConfigMap when its data differs from what it
/// should be. Returns when it should be looked at again at the latest (a
/// token expires).
pub async fn reconcile(state: &State, kubeconfig: &str) -> Result<Option<SystemTime>, ApiError> {
    let Some(configmaps) = kind(state, "configmaps") else {
        return Ok(None);
    };
    let now = SystemTime::now();
    let secrets = token_secrets(state)?;
    let data = desired_data(kubeconfig, &secrets, now);
    let wake = next_expiry(&secrets, now);
    let ns = Some(CLUSTER_INFO_NAMESPACE);
    match objects::get(state, &configmaps, ns, CLUSTER_INFO) {
        Ok(current) => {
            if current.object.get("data").and_then(Value::as_object) == Some(&data) {
                return Ok(wake);
            }
            let mut new = current.object.clone();
            new["data"] = Value::Object(data);
            meta::set_resource_version(&mut new, current.revision);
            objects::update(
                state,
                &configmaps,
                ns,
                CLUSTER_INFO,
                new,
                UpdateScope::Main,
                Some(MANAGER),
            )
            .await?;
        }
        Err(ApiError::NotFound { .. }) => {
            let object = json!({
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": CLUSTER_INFO, "namespace": CLUSTER_INFO_NAMESPACE},
                "data": data,
            });
            objects::create(state, &configmaps, ns, object, Some(MANAGER)).await?;
        }
        Err(e) => return Err(e),
    }
    Ok(wake)
}

/// Keeps `cluster-info` in step with `kubeconfig` and the bootstrap tokens
/// until `stop` turns true: after every change to a Secret in kube-system
/// or to the ConfigMap, and when a token expires.
pub async fn run(state: Arc<State>, kubeconfig: String, mut stop: signal::Receiver<bool>) {
    let watched = [
        format!("/registry/core/secrets/{}/", bootstrap::NAMESPACE),
        match kind(&state, "configmaps") {
            Some(k) => keys::object_key(&k, Some(CLUSTER_INFO_NAMESPACE), CLUSTER_INFO),
            None => return,
        },
    ];
    let mut backoff = Duration::from_millis(100);
    loop {
        if *stop.borrow() {
            return;
        }
        let revision = state.store.current_revision();
        let wait = match reconcile(&state, &kubeconfig).await {
            Ok(wake) => {
                backoff = Duration::from_millis(100);
                wake.and_then(|at| at.duration_since(SystemTime::now()).ok())
                    .map_or(Duration::from_secs(300), |d| {
                        d.min(Duration::from_secs(300)) + Duration::from_millis(10)
                    })
            }
            Err(e) => {
                tracing::warn!(error = %e, retry_in = ?backoff, "bootstrap signer: writing cluster-info failed");
                backoff = (backoff * 2).min(Duration::from_secs(10));
                backoff
            }
        };
        let mut watches = Vec::new();
        for prefix in &watched {
            match state.store.watch(prefix, revision) {
                Ok(w) => watches.push(w),
                Err(e) => tracing::warn!(error = %e, "bootstrap signer: watch failed"),
            }
        }
        // Any event on either watch (or one ending) means: look again.
        let changed = async {
            if watches.is_empty() {
                return std::future::pending().await;
            }
            let events = watches.iter_mut().map(|w| Box::pin(w.events.recv()));
            futures::future::select_all(events).await;
        };
        tokio::select! {
            _ = changed => {}
            _ = tokio::time::sleep(wait) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;

    fn secret(id: &str, expiration: Option<&str>, signing: bool) -> Value {
        let b = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        let mut data = json!({
            "token-id": b(id),
            "token-secret": b("0123456789abcdef"),
            "usage-bootstrap-authentication": b("true"),
            "usage-bootstrap-signing": b(if signing { "true" } else { "false" }),
        });
        if let Some(at) = expiration {
            data["expiration"] = json!(b(at));
        }
        json!({
            "type": bootstrap::SECRET_TYPE,
            "metadata": {"name": format!("bootstrap-token-{id}"), "namespace": "kube-system"},
            "data": data,
        })
    }

    #[test]
    fn one_signature_per_live_signing_token() {
        let now = bootstrap::parse_rfc3339("2026-06-01T00:00:00Z").unwrap();
        let secrets = vec![
            secret("aaaaaa", None, true),
            secret("bbbbbb", Some("2026-05-01T00:00:00Z"), true),
            secret("cccccc", Some("2026-07-01T00:00:00Z"), true),
            secret("dddddd", None, false),
            json!({"type": "Opaque", "metadata": {"name": "other"}}),
        ];
        let data = desired_data("KC", &secrets, now);
        let keys: Vec<&String> = data.keys().collect();
        assert_eq!(
            keys,
            vec![
                "jws-kubeconfig-aaaaaa",
                "jws-kubeconfig-cccccc",
                "kubeconfig"
            ]
        );
        assert!(bootstrap::signature_valid(
            data["jws-kubeconfig-aaaaaa"].as_str().unwrap(),
            "KC",
            "aaaaaa",
            "0123456789abcdef"
        ));
        assert_eq!(
            next_expiry(&secrets, now),
            bootstrap::parse_rfc3339("2026-07-01T00:00:00Z")
        );
    }
}
