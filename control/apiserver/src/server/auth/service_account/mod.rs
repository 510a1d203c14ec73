//! ServiceAccount tokens, as kube-apiserver issues and checks them
//! (`pkg/serviceaccount/jwt.go` and `claims.go`): ES256 JWTs signed with
//! the `--service-account-signing-key-file` key, issued by the TokenRequest
//! subresource `serviceaccounts/token` ([`token_request`]) and accepted as
//! bearer tokens by [`ServiceAccountTokens`].
//!
//! A token is accepted when, in kube's order: it is a compact JWS whose
//! `iss` is one of the accepted issuers (else it is not ours and the next
//! authenticator is asked, silently); its header says `ES256` (other
//! algorithms, `none` and HS256 among them, are refused); its signature
//! checks out with a key of that `kid` (any key when it has none); its
//! `aud` (the API audiences when empty) meets the API audiences; `exp`,
//! `nbf` and `iat` allow now, give or take [`jwt::LEEWAY_SECONDS`]; and the
//! ServiceAccount it names still exists with the same uid (so a deleted
//! ServiceAccount's tokens stop at once), as do the Secret, Pod or Node it
//! is bound to. It then stands for `system:serviceaccount:<ns>:<name>`
//! (uid: the ServiceAccount's), in groups `system:serviceaccounts` and
//! `system:serviceaccounts:<ns>`, with extra `authentication.kubernetes.io/
//! credential-id` = `JTI=<jti>` (and the pod's name and uid when bound to
//! one), as kube 1.32 has it.

pub mod jwt;
pub mod keys;
pub mod token_request;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use hami_store::Store;
use serde_json::{Value, json};

use super::Identity;
use crate::server::rbac::UserInfo;
use jwt::{Claims, TimeError};
use keys::{KeyError, PublicKey, SigningKey};

/// kubeadm's (and kube-apiserver's usual) issuer.
pub const DEFAULT_ISSUER: &str = "https://kubernetes.default.svc.cluster.local";
/// Every ServiceAccount's group.
pub const ALL_GROUP: &str = "system:serviceaccounts";
pub const USER_PREFIX: &str = "system:serviceaccount:";
pub const CREDENTIAL_ID: &str = "authentication.kubernetes.io/credential-id";
pub const POD_NAME: &str = "authentication.kubernetes.io/pod-name";
pub const POD_UID: &str = "authentication.kubernetes.io/pod-uid";
pub const NODE_NAME: &str = "authentication.kubernetes.io/node-name";
pub const NODE_UID: &str = "authentication.kubernetes.io/node-uid";

/// `system:serviceaccount:<ns>:<name>`
pub fn user_name(namespace: &str, name: &str) -> String {
    format!("{USER_PREFIX}{namespace}:{name}")
}

/// The groups of a ServiceAccount of `namespace`.
pub fn groups(namespace: &str) -> Vec<String> {
    vec![ALL_GROUP.to_owned(), format!("{ALL_GROUP}:{namespace}")]
}

/// kube-apiserver's flags for ServiceAccount tokens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceAccountOptions {
    /// `--service-account-issuer` (repeatable): the first signs, all are
    /// accepted.
    pub issuers: Vec<String>,
    /// `--service-account-signing-key-file`: PKCS#8 P-256 PEM.
    pub signing_key_file: PathBuf,
    /// `--service-account-key-file` (repeatable): more keys that verify.
    pub key_files: Vec<PathBuf>,
    /// `--api-audiences` (default: the issuers).
    pub api_audiences: Vec<String>,
    /// `--service-account-max-token-expiration`: longer requests are cut.
    pub max_token_expiration: Option<Duration>,
}

/// Why the ServiceAccount token settings cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ServiceAccountError {
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error("--service-account-issuer: at least one issuer is needed, none may be empty")]
    NoIssuer,
    #[error("--service-account-max-token-expiration {0:?}: must be at least 1h")]
    MaxExpiration(Duration),
}

/// The loaded settings: what signs, what verifies, who issues and for whom.
#[derive(Debug)]
pub struct ServiceAccountConfig {
    signing: SigningKey,
    /// The signing key's public key first, then the key files' keys.
    verifying: Vec<PublicKey>,
    issuers: Vec<String>,
    audiences: Vec<String>,
    max_expiration_seconds: Option<i64>,
}

impl ServiceAccountConfig {
    /// Reads the key files named by `options`.
    pub fn load(options: &ServiceAccountOptions) -> Result<Self, ServiceAccountError> {
        if options.issuers.is_empty() || options.issuers.iter().any(String::is_empty) {
            return Err(ServiceAccountError::NoIssuer);
        }
        let max_expiration_seconds = match options.max_token_expiration {
            // kube-apiserver refuses a maximum under an hour too.
            Some(max) if max < Duration::from_secs(3600) => {
                return Err(ServiceAccountError::MaxExpiration(max));
            }
            Some(max) => Some(i64::try_from(max.as_secs()).unwrap_or(i64::MAX)),
            None => None,
        };
        let signing = keys::load_signing_key(&options.signing_key_file)?;
        let mut verifying = vec![signing.public().clone()];
        for path in &options.key_files {
            for key in keys::load_public_keys(path)? {
                if !verifying.contains(&key) {
                    verifying.push(key);
                }
            }
        }
        Ok(Self::new(
            signing,
            verifying,
            options.issuers.clone(),
            options.api_audiences.clone(),
            max_expiration_seconds,
        ))
    }

    /// Settings from keys already read (empty `audiences`: the issuers).
    pub fn new(
        signing: SigningKey,
        verifying: Vec<PublicKey>,
        issuers: Vec<String>,
        audiences: Vec<String>,
        max_expiration_seconds: Option<i64>,
    ) -> Self {
        let audiences = if audiences.is_empty() {
            issuers.clone()
        } else {
            audiences
        };
        Self {
            signing,
            verifying,
            issuers,
            audiences,
            max_expiration_seconds,
        }
    }

    /// The API audiences (`--api-audiences`).
    pub fn audiences(&self) -> &[String] {
        &self.audiences
    }

    /// `--service-account-max-token-expiration` in seconds.
    pub fn max_expiration_seconds(&self) -> Option<i64> {
        self.max_expiration_seconds
    }

    /// Signs a token for `subject` (kube's `serviceaccount.Claims` and
    /// `GenerateToken`): issued and valid from `now`, expiring
    /// `expiration_seconds` later, with a fresh `jti`.
    pub fn issue(&self, subject: &Subject, now: i64) -> Result<String, String> {
        let mut kubernetes = json!({
            "namespace": subject.namespace,
            "serviceaccount": {"name": subject.name, "uid": subject.uid},
        });
        if let Some(bound) = &subject.bound {
            kubernetes[bound.kind.claim()] = json!({"name": bound.name, "uid": bound.uid});
        }
        let claims = json!({
            "aud": subject.audiences,
            "exp": now.saturating_add(subject.expiration_seconds),
            "iat": now,
            "iss": self.issuers.first().cloned().unwrap_or_default(),
            "jti": crate::server::meta::new_uid(),
            "kubernetes.io": kubernetes,
            "nbf": now,
            "sub": user_name(&subject.namespace, &subject.name),
        });
        jwt::sign(&self.signing, &claims)
    }
}

/// The kinds a token may be bound to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BoundKind {
    Pod,
    Secret,
}

impl BoundKind {
    fn claim(self) -> &'static str {
        match self {
            BoundKind::Pod => "pod",
            BoundKind::Secret => "secret",
        }
    }
}

/// The object a token is bound to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bound {
    pub kind: BoundKind,
    pub name: String,
    pub uid: String,
}

/// Whom a token is issued to, for how long and for which audiences.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Subject {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub audiences: Vec<String>,
    pub expiration_seconds: i64,
    pub bound: Option<Bound>,
}

/// The signer a TokenRequest uses, put in every authorized request's
/// extensions when ServiceAccount tokens are on.
#[derive(Clone, Debug)]
pub struct TokenSigner(pub Arc<ServiceAccountConfig>);

/// Why a token is refused (logged, never sent: the client sees 401).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    /// Not a JWT of one of our issuers: the next authenticator decides.
    #[error("not a service account token")]
    NotOurs,
    #[error("unsupported signing algorithm {0:?} (only ES256 is accepted)")]
    Algorithm(String),
    #[error("invalid signature, no keys found")]
    NoKey,
    #[error("invalid signature")]
    Signature,
    #[error("the claims are malformed: {0}")]
    Malformed(String),
    #[error("token audiences {token:?} is invalid for the target audiences {api:?}")]
    Audience {
        token: Vec<String>,
        api: Vec<String>,
    },
    #[error("service account token has expired")]
    Expired,
    #[error("service account token is not valid yet")]
    NotValidYet,
    #[error("service account token is issued in the future")]
    IssuedInTheFuture,
    #[error("service account {0} not found")]
    ServiceAccountMissing(String),
    #[error("service account {0} has been deleted")]
    ServiceAccountDeleted(String),
    #[error("service account UID ({stored}) does not match claim ({claimed})")]
    ServiceAccountUid { stored: String, claimed: String },
    #[error("service account token has been invalidated")]
    Invalidated,
    #[error("{kind} UID ({stored}) does not match service account {kind} ref claim ({claimed})")]
    BoundUid {
        kind: &'static str,
        stored: String,
        claimed: String,
    },
    #[error("reading the store: {0}")]
    Store(String),
}

impl From<TimeError> for TokenError {
    fn from(e: TimeError) -> Self {
        match e {
            TimeError::Expired => TokenError::Expired,
            TimeError::NotValidYet => TokenError::NotValidYet,
            TimeError::IssuedInTheFuture => TokenError::IssuedInTheFuture,
        }
    }
}

/// The ServiceAccount token authenticator: checks each token's signature
/// and claims, then reads the objects it names from the store on every
/// request (kube's `validator` with its getter).
#[derive(Clone)]
pub struct ServiceAccountTokens {
    config: Arc<ServiceAccountConfig>,
    store: Arc<dyn Store>,
}

impl std::fmt::Debug for ServiceAccountTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceAccountTokens")
            .field("issuers", &self.config.issuers)
            .field("keys", &self.config.verifying.len())
            .finish_non_exhaustive()
    }
}

fn epoch_seconds(at: SystemTime) -> i64 {
    match at.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_secs()).unwrap_or(i64::MAX),
    }
}

impl ServiceAccountTokens {
    pub fn new(config: Arc<ServiceAccountConfig>, store: Arc<dyn Store>) -> Self {
        Self { config, store }
    }

    /// The identity of `token`, if it is a live ServiceAccount token. A
    /// token of ours that is refused is logged with the reason.
    pub fn authenticate(&self, token: &str) -> Option<Identity> {
        match self.verify(token, SystemTime::now()) {
            Ok(identity) => Some(identity),
            Err(TokenError::NotOurs) => None,
            Err(why) => {
                tracing::info!(reason = %why, "service account token refused");
                None
            }
        }
    }

    /// Checks `token` at `now` (see the module's documentation).
    pub fn verify(&self, token: &str, now: SystemTime) -> Result<Identity, TokenError> {
        let config = &self.config;
        let parts = jwt::peek(token, &config.issuers).ok_or(TokenError::NotOurs)?;
        if parts.alg() != "ES256" {
            return Err(TokenError::Algorithm(parts.alg().to_owned()));
        }
        let keys: Vec<&PublicKey> = match parts.kid() {
            Some(kid) => config.verifying.iter().filter(|k| k.kid() == kid).collect(),
            None => config.verifying.iter().collect(),
        };
        if keys.is_empty() {
            return Err(TokenError::NoKey);
        }
        let input = parts.signing_input.as_bytes();
        if !keys.iter().any(|k| k.verify(input, &parts.signature)) {
            return Err(TokenError::Signature);
        }
        let claims: Claims = serde_json::from_slice(&parts.payload)
            .map_err(|e| TokenError::Malformed(e.to_string()))?;
        if !config.issuers.contains(&claims.iss) {
            return Err(TokenError::Malformed(format!(
                "token issuer {:?} is invalid",
                claims.iss
            )));
        }
        let mut token_audiences = claims.aud.list();
        if token_audiences.is_empty() {
            token_audiences = config.audiences.clone();
        }
        if !token_audiences.iter().any(|a| config.audiences.contains(a)) {
            return Err(TokenError::Audience {
                token: token_audiences,
                api: config.audiences.clone(),
            });
        }
        let now = epoch_seconds(now);
        claims.check_times(now)?;
        self.validate(&claims, now)
    }

    /// kube's `validator.Validate` after the times: the named objects.
    fn validate(&self, claims: &Claims, now: i64) -> Result<Identity, TokenError> {
        let k8s = &claims.kubernetes;
        let (ns, sa) = (&k8s.namespace, &k8s.serviceaccount);
        if ns.is_empty() || sa.name.is_empty() {
            return Err(TokenError::Malformed(
                "the kubernetes.io claim names no service account".to_owned(),
            ));
        }
        // Objects deleted before now - leeway no longer count.
        let deleted_before = now.saturating_sub(jwt::LEEWAY_SECONDS);
        let who = format!("{ns}/{}", sa.name);
        let account = self
            .read("serviceaccounts", ns, &sa.name)?
            .ok_or_else(|| TokenError::ServiceAccountMissing(who.clone()))?;
        if deleted(&account, deleted_before) {
            return Err(TokenError::ServiceAccountDeleted(who));
        }
        let stored_uid = uid(&account);
        if stored_uid != sa.uid {
            return Err(TokenError::ServiceAccountUid {
                stored: stored_uid.to_owned(),
                claimed: sa.uid.clone(),
            });
        }
        let mut extra = BTreeMap::new();
        if let Some(secret) = &k8s.secret {
            self.check_bound("secrets", "secret", Some(ns), secret, deleted_before)?;
        }
        if let Some(pod) = &k8s.pod {
            self.check_bound("pods", "pod", Some(ns), pod, deleted_before)?;
            extra.insert(POD_NAME.to_owned(), vec![pod.name.clone()]);
            extra.insert(POD_UID.to_owned(), vec![pod.uid.clone()]);
        }
        if let Some(node) = &k8s.node {
            self.check_bound("nodes", "node", None, node, deleted_before)?;
            extra.insert(NODE_NAME.to_owned(), vec![node.name.clone()]);
            if !node.uid.is_empty() {
                extra.insert(NODE_UID.to_owned(), vec![node.uid.clone()]);
            }
        }
        if !claims.jti.is_empty() {
            extra.insert(
                CREDENTIAL_ID.to_owned(),
                vec![format!("JTI={}", claims.jti)],
            );
        }
        Ok(Identity {
            user: UserInfo {
                name: user_name(ns, &sa.name),
                groups: groups(ns),
            },
            uid: sa.uid.clone(),
            extra,
        })
    }

    fn check_bound(
        &self,
        plural: &str,
        kind: &'static str,
        namespace: Option<&str>,
        claimed: &jwt::Ref,
        deleted_before: i64,
    ) -> Result<(), TokenError> {
        let object = self
            .read(plural, namespace.unwrap_or(""), &claimed.name)?
            .ok_or(TokenError::Invalidated)?;
        if deleted(&object, deleted_before) {
            return Err(TokenError::Invalidated);
        }
        // A node claim may leave the uid out; the others always name it.
        if !(kind == "node" && claimed.uid.is_empty()) && uid(&object) != claimed.uid {
            return Err(TokenError::BoundUid {
                kind,
                stored: uid(&object).to_owned(),
                claimed: claimed.uid.clone(),
            });
        }
        Ok(())
    }

    fn read(&self, plural: &str, namespace: &str, name: &str) -> Result<Option<Value>, TokenError> {
        read_core(self.store.as_ref(), plural, namespace, name).map_err(TokenError::Store)
    }
}

/// A core (`""` group) object from the store; `namespace` empty for a
/// cluster-scoped one. A name that cannot be one is simply not found.
pub fn read_core(
    store: &dyn Store,
    plural: &str,
    namespace: &str,
    name: &str,
) -> Result<Option<Value>, String> {
    if name.is_empty() || name.contains('/') || namespace.contains('/') {
        return Ok(None);
    }
    let key = if namespace.is_empty() {
        format!("/registry/core/{plural}/{name}")
    } else {
        format!("/registry/core/{plural}/{namespace}/{name}")
    };
    let Some(stored) = store.get(&key).map_err(|e| e.to_string())? else {
        return Ok(None);
    };
    serde_json::from_slice(&stored.value)
        .map(Some)
        .map_err(|e| format!("{key}: {e}"))
}

/// `metadata.uid` of a stored object.
pub fn uid(object: &Value) -> &str {
    object
        .pointer("/metadata/uid")
        .and_then(Value::as_str)
        .unwrap_or("")
}

/// Whether `object` was being deleted before `before` (epoch seconds).
fn deleted(object: &Value, before: i64) -> bool {
    object
        .pointer("/metadata/deletionTimestamp")
        .and_then(Value::as_str)
        .and_then(super::bootstrap::parse_rfc3339)
        .is_some_and(|at| epoch_seconds(at) < before)
}
