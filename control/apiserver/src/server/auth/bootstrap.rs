//! Bootstrap tokens, as kube-apiserver's `--enable-bootstrap-token-auth`
//! and kube-controller-manager's bootstrap signer do them (kubeadm's join).
//!
//! A token `<id>.<secret>` (`[a-z0-9]{6}.[a-z0-9]{16}`) lives in Secret
//! `kube-system/bootstrap-token-<id>` of type `bootstrap.kubernetes.io/token`
//! with keys `token-id`, `token-secret`, `expiration` (RFC 3339, optional),
//! `usage-bootstrap-authentication`, `usage-bootstrap-signing`,
//! `auth-extra-groups` (comma separated, each `system:bootstrappers:*`) and
//! `description`. Used as a bearer token it authenticates as
//! `system:bootstrap:<id>` in `system:bootstrappers` plus its extra groups,
//! until it expires or its Secret is deleted (revoked). The signer's
//! detached JWS ([`detached_signature`]) lets a joining agent check the
//! `kube-public/cluster-info` ConfigMap with the token it holds.

use std::sync::Arc;
use std::time::SystemTime;

use base64::Engine as _;
use hami_store::Store;
use serde_json::Value;

use super::Identity;
use crate::server::rbac::UserInfo;

pub const SECRET_TYPE: &str = "bootstrap.kubernetes.io/token";
pub const SECRET_PREFIX: &str = "bootstrap-token-";
pub const NAMESPACE: &str = "kube-system";
/// Every bootstrap token's group.
pub const BOOTSTRAPPERS: &str = "system:bootstrappers";
pub const USER_PREFIX: &str = "system:bootstrap:";
/// The ConfigMap key prefix of the signer's signatures, one per token.
pub const JWS_KEY_PREFIX: &str = "jws-kubeconfig-";

/// The store key of the Secret of token `id`.
pub fn secret_key(id: &str) -> String {
    format!("/registry/core/secrets/{NAMESPACE}/{SECRET_PREFIX}{id}")
}

/// Splits `<id>.<secret>` when it has the bootstrap token's shape.
pub fn parse_token(token: &str) -> Option<(&str, &str)> {
    let (id, secret) = token.split_once('.')?;
    let ok = |s: &str, n: usize| {
        s.len() == n
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    };
    (ok(id, 6) && ok(secret, 16)).then_some((id, secret))
}

/// A bootstrap token's Secret, read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenSecret {
    pub id: String,
    pub secret: String,
    pub expiration: Option<SystemTime>,
    pub authentication: bool,
    pub signing: bool,
    pub extra_groups: Vec<String>,
}

impl TokenSecret {
    /// Reads a Secret object (its `data`, base64, or `stringData`).
    /// `None` when it is not a well-formed bootstrap token Secret: such a
    /// Secret authenticates nothing, as in kube.
    pub fn from_object(object: &Value) -> Option<Self> {
        if object.get("type").and_then(Value::as_str) != Some(SECRET_TYPE) {
            return None;
        }
        let field = |key: &str| -> Option<String> {
            if let Some(b64) = object
                .pointer(&format!("/data/{key}"))
                .and_then(Value::as_str)
            {
                let bytes = base64::engine::general_purpose::STANDARD.decode(b64).ok()?;
                return String::from_utf8(bytes).ok();
            }
            object
                .pointer(&format!("/stringData/{key}"))
                .and_then(Value::as_str)
                .map(str::to_owned)
        };
        let id = field("token-id")?;
        let secret = field("token-secret")?;
        parse_token(&format!("{id}.{secret}"))?;
        let name = object.pointer("/metadata/name").and_then(Value::as_str)?;
        if name != format!("{SECRET_PREFIX}{id}") {
            return None;
        }
        let expiration = match field("expiration") {
            None => None,
            // An expiration that does not parse makes the token unusable.
            Some(text) => Some(parse_rfc3339(&text)?),
        };
        let extra_groups = field("auth-extra-groups")
            .map(|g| {
                g.split(',')
                    .map(str::trim)
                    .filter(|g| !g.is_empty())
                    .map(str::to_owned)
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default();
        // kube refuses tokens whose extra groups leave system:bootstrappers:.
        if extra_groups
            .iter()
            .any(|g| !g.starts_with("system:bootstrappers:"))
        {
            return None;
        }
        Some(Self {
            id,
            secret,
            expiration,
            authentication: field("usage-bootstrap-authentication").as_deref() == Some("true"),
            signing: field("usage-bootstrap-signing").as_deref() == Some("true"),
            extra_groups,
        })
    }

    pub fn expired(&self, now: SystemTime) -> bool {
        self.expiration.is_some_and(|at| at <= now)
    }

    /// The user the token authenticates as.
    pub fn user(&self) -> UserInfo {
        let mut groups = vec![BOOTSTRAPPERS.to_owned()];
        groups.extend(self.extra_groups.iter().cloned());
        UserInfo {
            name: format!("{USER_PREFIX}{}", self.id),
            groups,
        }
    }
}

/// `2026-12-08T10:00:00Z` (or with an offset) as a time.
pub fn parse_rfc3339(text: &str) -> Option<SystemTime> {
    let parsed: k8s_openapi::jiff::Timestamp = text.trim().parse().ok()?;
    Some(SystemTime::from(parsed))
}

/// The bootstrap token authenticator: reads the token's Secret from the
/// store on every request (a revoked token stops at once).
#[derive(Clone)]
pub struct BootstrapTokens {
    store: Arc<dyn Store>,
}

impl std::fmt::Debug for BootstrapTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BootstrapTokens").finish_non_exhaustive()
    }
}

impl BootstrapTokens {
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self { store }
    }

    /// The identity of `token` at `now`, if it is a live bootstrap token.
    pub fn authenticate_at(&self, token: &str, now: SystemTime) -> Option<Identity> {
        let (id, secret) = parse_token(token)?;
        let stored = self.store.get(&secret_key(id)).ok()??;
        let object: Value = serde_json::from_slice(&stored.value).ok()?;
        if object.pointer("/metadata/deletionTimestamp").is_some() {
            return None;
        }
        let read = TokenSecret::from_object(&object)?;
        let matches = super::tokens::same_bytes(read.secret.as_bytes(), secret.as_bytes());
        if !matches || !read.authentication {
            return None;
        }
        if read.expired(now) {
            tracing::info!(token_id = id, "bootstrap token expired");
            return None;
        }
        Some(Identity {
            user: read.user(),
            uid: String::new(),
            extra: Default::default(),
        })
    }

    pub fn authenticate(&self, token: &str) -> Option<Identity> {
        self.authenticate_at(token, SystemTime::now())
    }
}

fn b64url(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// kube's bootstrap signer: the compact JWS (HS256, key = the token's
/// secret, header `{"alg":"HS256","kid":"<id>"}`) of `content`, with the
/// payload left out (`header..signature`).
pub fn detached_signature(content: &str, id: &str, secret: &str) -> String {
    let header = b64url(format!(r#"{{"alg":"HS256","kid":"{id}"}}"#).as_bytes());
    let input = format!("{header}.{}", b64url(content.as_bytes()));
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.as_bytes());
    let tag = ring::hmac::sign(&key, input.as_bytes());
    format!("{header}..{}", b64url(tag.as_ref()))
}

/// Whether `signature` is [`detached_signature`] of `content` for the
/// token (compared in constant time).
pub fn signature_valid(signature: &str, content: &str, id: &str, secret: &str) -> bool {
    let expected = detached_signature(content, id, secret);
    super::tokens::same_bytes(expected.as_bytes(), signature.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use hami_store::MemoryStore;
    use serde_json::json;
    use std::time::Duration;

    fn b(s: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(s)
    }

    fn secret(id: &str, secret: &str, extra: &[(&str, &str)]) -> Value {
        let mut data = json!({
            "token-id": b(id),
            "token-secret": b(secret),
            "usage-bootstrap-authentication": b("true"),
            "usage-bootstrap-signing": b("true"),
            "auth-extra-groups": b("system:bootstrappers:hami:cluster:east"),
        });
        for (k, v) in extra {
            data[*k] = json!(b(v));
        }
        json!({
            "apiVersion": "v1", "kind": "Secret", "type": SECRET_TYPE,
            "metadata": {"name": format!("{SECRET_PREFIX}{id}"), "namespace": NAMESPACE},
            "data": data,
        })
    }

    async fn store_with(id: &str, object: &Value) -> Arc<dyn Store> {
        let store = Arc::new(MemoryStore::new());
        store
            .create(&secret_key(id), serde_json::to_vec(object).unwrap())
            .await
            .unwrap();
        store
    }

    #[test]
    fn token_shape() {
        assert_eq!(
            parse_token("abcdef.0123456789abcdef"),
            Some(("abcdef", "0123456789abcdef"))
        );
        for bad in [
            "abcde.0123456789abcdef",
            "abcdef.0123456789abcde",
            "ABCDEF.0123456789abcdef",
            "abcdef0123456789abcdef",
            "abcdef.0123456789abcdef.x",
            "",
        ] {
            assert_eq!(parse_token(bad), None, "{bad}");
        }
    }

    #[tokio::test]
    async fn a_live_token_authenticates_with_its_groups_and_nothing_else_does() {
        let store = store_with("abcdef", &secret("abcdef", "0123456789abcdef", &[])).await;
        let tokens = BootstrapTokens::new(store.clone());
        let id = tokens.authenticate("abcdef.0123456789abcdef").unwrap();
        assert_eq!(id.user.name, "system:bootstrap:abcdef");
        assert_eq!(
            id.user.groups,
            vec![
                "system:bootstrappers".to_owned(),
                "system:bootstrappers:hami:cluster:east".to_owned()
            ]
        );
        assert!(tokens.authenticate("abcdef.0123456789abcdee").is_none());
        assert!(tokens.authenticate("zzzzzz.0123456789abcdef").is_none());
        // Revoked: the Secret is gone.
        store.delete(&secret_key("abcdef"), None).await.unwrap();
        assert!(tokens.authenticate("abcdef.0123456789abcdef").is_none());
    }

    #[tokio::test]
    async fn an_expired_token_or_one_without_the_authentication_usage_is_refused() {
        let object = secret(
            "abcdef",
            "0123456789abcdef",
            &[("expiration", "2026-01-01T00:00:00Z")],
        );
        let tokens = BootstrapTokens::new(store_with("abcdef", &object).await);
        let before = parse_rfc3339("2025-12-31T23:59:59Z").unwrap();
        let at = parse_rfc3339("2026-01-01T00:00:00Z").unwrap();
        let token = "abcdef.0123456789abcdef";
        assert!(tokens.authenticate_at(token, before).is_some());
        assert!(tokens.authenticate_at(token, at).is_none());
        assert!(
            tokens
                .authenticate_at(token, at + Duration::from_secs(1))
                .is_none()
        );

        let object = secret(
            "ghijkl",
            "0123456789abcdef",
            &[("usage-bootstrap-authentication", "false")],
        );
        let tokens = BootstrapTokens::new(store_with("ghijkl", &object).await);
        assert!(tokens.authenticate("ghijkl.0123456789abcdef").is_none());
        // An expiration that does not parse: unusable.
        let object = secret("mnopqr", "0123456789abcdef", &[("expiration", "tomorrow")]);
        let tokens = BootstrapTokens::new(store_with("mnopqr", &object).await);
        assert!(tokens.authenticate("mnopqr.0123456789abcdef").is_none());
    }

    #[test]
    fn extra_groups_outside_bootstrappers_or_a_wrong_name_make_the_secret_unusable() {
        let object = secret(
            "abcdef",
            "0123456789abcdef",
            &[("auth-extra-groups", "system:masters")],
        );
        assert_eq!(TokenSecret::from_object(&object), None);
        let mut named_wrong = secret("abcdef", "0123456789abcdef", &[]);
        named_wrong["metadata"]["name"] = json!("bootstrap-token-zzzzzz");
        assert_eq!(TokenSecret::from_object(&named_wrong), None);
        let mut typed_wrong = secret("abcdef", "0123456789abcdef", &[]);
        typed_wrong["type"] = json!("Opaque");
        assert_eq!(TokenSecret::from_object(&typed_wrong), None);
    }

    #[test]
    fn string_data_is_read_too() {
        let object = json!({
            "type": SECRET_TYPE,
            "metadata": {"name": "bootstrap-token-abcdef"},
            "stringData": {"token-id": "abcdef", "token-secret": "0123456789abcdef",
                           "usage-bootstrap-authentication": "true"},
        });
        let read = TokenSecret::from_object(&object).unwrap();
        assert!(read.authentication && !read.signing);
        assert_eq!(read.user().groups, vec!["system:bootstrappers".to_owned()]);
    }

    #[test]
    fn the_detached_signature_is_kubes_hs256_jws_without_payload() {
        let content = "apiVersion: v1\nkind: Config\n";
        let sig = detached_signature(content, "abcdef", "0123456789abcdef");
        let (header, rest) = sig.split_once("..").unwrap();
        assert!(!rest.contains('.'));
        let header = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(header)
            .unwrap();
        assert_eq!(header, br#"{"alg":"HS256","kid":"abcdef"}"#);
        // HMAC-SHA256 over header.payload, recomputed independently.
        let input = format!(
            "{}.{}",
            b64url(br#"{"alg":"HS256","kid":"abcdef"}"#),
            b64url(content.as_bytes())
        );
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, b"0123456789abcdef");
        let tag = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(rest)
            .unwrap();
        ring::hmac::verify(&key, input.as_bytes(), &tag).unwrap();
        assert!(signature_valid(&sig, content, "abcdef", "0123456789abcdef"));
        assert!(!signature_valid(
            &sig,
            "tampered",
            "abcdef",
            "0123456789abcdef"
        ));
        assert!(!signature_valid(
            &sig,
            content,
            "abcdef",
            "0123456789abcdee"
        ));
    }
}
