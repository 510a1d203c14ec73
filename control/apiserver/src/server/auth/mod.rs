//! Authentication and authorization of API requests, as kube-apiserver's
//! filters do them, in kube's order ([`filter`] for 1 and 2, [`authorize`]
//! for 3, with the per-user limits between them as kube's APF is):
//!
//! 1. **Authentication** ([`authenticate`]): the verified TLS client
//!    certificate ([`PeerIdentity`], CN = user, O = groups), else
//!    `Authorization: Bearer <token>` checked by each [`Authenticator`] in
//!    turn, in kube's order: `--token-auth-file` ([`tokens`]), ServiceAccount
//!    tokens ([`service_account`]), bootstrap tokens ([`bootstrap`]). Authenticated users
//!    get `system:authenticated`. A token no authenticator knows is 401; a
//!    request without credentials is `system:anonymous` only on the health
//!    probes, `/version` and kubeadm's `cluster-info` ConfigMap, and 401
//!    everywhere else (kube 1.32's anonymous endpoints).
//! 2. **Impersonation** ([`impersonation`]): `Impersonate-User`, `-Group`,
//!    `-Uid`, `-Extra-*`, each allowed by RBAC verb `impersonate`.
//! 3. **Authorization**: the request's attributes ([`request_info`], kube's
//!    RequestInfo) against the RBAC [`Policy`], held whole in an `Arc` and
//!    swapped by the follower ([`follower::run`]) after every change to the
//!    stored Roles, ClusterRoles and their bindings.
//!
//! The effective [`UserInfo`] (and the policy snapshot that authorized the
//! request, [`PolicySnapshot`]) are put in the request's extensions;
//! [`request_user`] reads the user back (`system:unsecured` in
//! `system:masters` when authentication is off). The access reviews of
//! `authorization.k8s.io/v1` are answered from that snapshot ([`reviews`]).

pub mod bootstrap;
pub mod filter;
pub mod follower;
pub mod impersonation;
pub mod request_info;
mod review_protobuf;
pub mod reviews;
pub mod service_account;
pub mod signer;
pub mod tokens;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use axum::http::Extensions;

use super::metrics::ApiMetrics;
use super::rbac::{Policy, SYSTEM_MASTERS, UserInfo};

pub use filter::{authorize, filter};
pub use follower::ensure_default_rbac;
pub use service_account::{ServiceAccountOptions, TokenSigner};
pub use tokens::{Authenticator, TokenFile};

/// Every authenticated user's group.
pub const AUTHENTICATED: &str = "system:authenticated";
/// The anonymous user's group.
pub const UNAUTHENTICATED: &str = "system:unauthenticated";
/// The user of a request without credentials.
pub const ANONYMOUS: &str = "system:anonymous";
/// The user of every request when authentication is off.
pub const UNSECURED: &str = "system:unsecured";

/// The identity of a client whose TLS certificate the serving loop verified
/// (CN = user, O = groups). The loop inserts it into the extensions of every
/// request of that connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerIdentity(pub UserInfo);

/// Turns authentication and RBAC on (see [`super::ServerConfig::auth`]).
#[derive(Clone, Debug, Default)]
pub struct AuthOptions {
    /// kube-apiserver's `--token-auth-file`: CSV lines
    /// `token,user,uid,"group1,group2"`.
    pub token_auth_file: Option<PathBuf>,
    /// kube-apiserver's `--enable-bootstrap-token-auth`: bootstrap tokens
    /// (Secrets `kube-system/bootstrap-token-*`, see [`bootstrap`]).
    pub bootstrap_tokens: bool,
    /// ServiceAccount tokens: issued by `serviceaccounts/token` and
    /// accepted as bearer tokens (see [`service_account`]).
    pub service_accounts: Option<ServiceAccountOptions>,
}

impl AuthOptions {
    /// Reads what the options name (the token file), as the server will at
    /// start-up: callers may check their flags with it before starting.
    pub fn load(&self) -> Result<Vec<Authenticator>, AuthError> {
        let mut authenticators = Vec::new();
        if let Some(path) = &self.token_auth_file {
            authenticators.push(Authenticator::StaticTokens(TokenFile::load(path)?));
        }
        Ok(authenticators)
    }

    /// Reads the ServiceAccount token keys, when they are on.
    pub fn load_service_accounts(
        &self,
    ) -> Result<Option<service_account::ServiceAccountConfig>, AuthError> {
        self.service_accounts
            .as_ref()
            .map(service_account::ServiceAccountConfig::load)
            .transpose()
            .map_err(AuthError::from)
    }
}

/// Why the authentication settings cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("reading token file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("token file {path}, line {line}: {message}")]
    TokenLine {
        path: PathBuf,
        line: usize,
        message: String,
    },
    #[error("service account tokens: {0}")]
    ServiceAccounts(#[from] service_account::ServiceAccountError),
}

/// Who a request authenticated as (before impersonation).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    pub user: UserInfo,
    /// The token file's uid column, a ServiceAccount's uid or
    /// `Impersonate-Uid` (`""`: none).
    pub uid: String,
    /// kube's `user.Info` extra (a ServiceAccount token's credential id).
    pub extra: BTreeMap<String, Vec<String>>,
}

/// The extra of the request's user, in the extensions when it has some.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestExtra(pub BTreeMap<String, Vec<String>>);

/// The uid of the request's user, in the extensions when there is one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestUid(pub String);

/// The RBAC policy that authorized the request (in its extensions).
#[derive(Clone, Debug)]
pub struct PolicySnapshot(pub Arc<Policy>);

/// The user of every request when authentication is off.
pub fn unsecured() -> UserInfo {
    UserInfo {
        name: UNSECURED.to_owned(),
        groups: vec![SYSTEM_MASTERS.to_owned()],
    }
}

/// The user a request is served as: what [`filter`] put in the extensions,
/// or `system:unsecured` in `system:masters` when authentication is off.
pub fn request_user(extensions: &Extensions) -> UserInfo {
    extensions
        .get::<UserInfo>()
        .cloned()
        .unwrap_or_else(unsecured)
}

/// Authentication and RBAC at run time: the authenticators and the current
/// policy (replaced whole; readers clone the `Arc` under a short read lock).
pub struct Auth {
    authenticators: Vec<Authenticator>,
    /// The ServiceAccount token settings, when on.
    service_accounts: Option<Arc<service_account::ServiceAccountConfig>>,
    policy: parking_lot::RwLock<Arc<Policy>>,
    /// Set when the options could not be loaded: every token is refused and
    /// start-up ([`super::ApiServer::ensure_default_namespaces`]) fails with it.
    startup_error: Option<String>,
    metrics: ApiMetrics,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auth")
            .field("authenticators", &self.authenticators.len())
            .field("startup_error", &self.startup_error)
            .finish_non_exhaustive()
    }
}

impl Auth {
    /// Loads `options`; a failure leaves a server that refuses every token
    /// and reports the error at start-up (see [`Auth::startup_error`]).
    pub fn new(options: &AuthOptions, metrics: ApiMetrics) -> Self {
        let loaded = options
            .load()
            .and_then(|list| Ok((list, options.load_service_accounts()?)));
        let (authenticators, service_accounts, startup_error) = match loaded {
            Ok((list, accounts)) => (list, accounts.map(Arc::new), None),
            Err(e) => {
                tracing::error!(error = %e, "authentication settings");
                (Vec::new(), None, Some(e.to_string()))
            }
        };
        Self {
            authenticators,
            service_accounts,
            policy: parking_lot::RwLock::new(Arc::new(Policy::default())),
            startup_error,
            metrics,
        }
    }

    /// Also accepts the bootstrap tokens stored in `store` (after the
    /// static tokens, as kube-apiserver orders its token authenticators).
    pub fn with_bootstrap_tokens(mut self, store: Arc<dyn hami_store::Store>) -> Self {
        self.authenticators
            .push(Authenticator::Bootstrap(bootstrap::BootstrapTokens::new(
                store,
            )));
        self
    }

    /// Also accepts the ServiceAccount tokens the options turned on,
    /// checking the ServiceAccounts they name in `store` (after the static
    /// tokens and before the bootstrap tokens, kube-apiserver's order).
    pub fn with_service_account_tokens(mut self, store: Arc<dyn hami_store::Store>) -> Self {
        if let Some(config) = &self.service_accounts {
            let at = self
                .authenticators
                .iter()
                .position(|a| matches!(a, Authenticator::Bootstrap(_)))
                .unwrap_or(self.authenticators.len());
            self.authenticators.insert(
                at,
                Authenticator::ServiceAccount(service_account::ServiceAccountTokens::new(
                    config.clone(),
                    store,
                )),
            );
        }
        self
    }

    /// What signs the tokens of TokenRequests (`None`: not served).
    pub fn token_signer(&self) -> Option<TokenSigner> {
        self.service_accounts.clone().map(TokenSigner)
    }

    /// Why the options could not be loaded, if they could not.
    pub fn startup_error(&self) -> Option<&str> {
        self.startup_error.as_deref()
    }

    /// The policy requests are authorized with now.
    pub fn policy(&self) -> Arc<Policy> {
        self.policy.read().clone()
    }

    /// Swaps in `policy`, logging the objects it skipped that the previous
    /// one did not.
    pub fn set_policy(&self, policy: Policy) {
        let policy = Arc::new(policy);
        let previous = std::mem::replace(&mut *self.policy.write(), policy.clone());
        for why in policy.skipped() {
            if !previous.skipped().contains(why) {
                tracing::warn!(object = %why, "RBAC: object skipped");
            }
        }
        self.metrics
            .rbac_skipped_objects
            .set(i64::try_from(policy.skipped().len()).unwrap_or(i64::MAX));
    }

    /// The identity a bearer token stands for: the first authenticator that
    /// knows it decides.
    pub fn authenticate_token(&self, token: &str) -> Option<Identity> {
        self.authenticators
            .iter()
            .find_map(|a| a.authenticate(token))
    }
}

/// What [`authenticate`] made of a request's credentials.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Credentials {
    /// A verified certificate or a known token (with `system:authenticated`).
    User(Identity),
    /// No credentials.
    None,
    /// Credentials no authenticator accepts; the text is logged, not sent.
    Invalid(&'static str),
}

/// Authenticates a request from its certificate identity or bearer token
/// (kube's union: x509 first, then tokens).
pub fn authenticate(
    auth: &Auth,
    peer: Option<&PeerIdentity>,
    authorization: Option<&axum::http::HeaderValue>,
) -> Credentials {
    let with_authenticated = |mut identity: Identity| {
        if !identity.user.groups.iter().any(|g| g == AUTHENTICATED) {
            identity.user.groups.push(AUTHENTICATED.to_owned());
        }
        Credentials::User(identity)
    };
    if let Some(PeerIdentity(user)) = peer
        && !user.name.is_empty()
    {
        return with_authenticated(Identity {
            user: user.clone(),
            uid: String::new(),
            extra: BTreeMap::new(),
        });
    }
    let Some(header) = authorization else {
        return Credentials::None;
    };
    let Ok(text) = header.to_str() else {
        return Credentials::Invalid("the Authorization header is not text");
    };
    // kube's bearer-token authenticator: `Bearer <token>`, the scheme in any
    // case; another scheme or an empty token is no bearer token at all.
    let mut parts = text.splitn(3, ' ');
    let (scheme, token) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() {
        return Credentials::None;
    }
    match auth.authenticate_token(token) {
        Some(identity) => with_authenticated(identity),
        None => Credentials::Invalid("invalid bearer token"),
    }
}

/// The requests an anonymous client may make (then authorized by RBAC like
/// any other): GET or HEAD of the health probes and `/version`, and GET of
/// kubeadm's `cluster-info` ConfigMap, which joining agents read.
pub fn anonymous_allowed(method: &axum::http::Method, path: &str) -> bool {
    use axum::http::Method;
    let probe = ["/healthz", "/livez", "/readyz"].iter().any(|p| {
        path == *p
            || path
                .strip_prefix(p)
                .is_some_and(|rest| rest.starts_with('/'))
    });
    match *method {
        Method::GET | Method::HEAD if probe || path == "/version" => true,
        Method::GET => path == "/api/v1/namespaces/kube-public/configmaps/cluster-info",
        _ => false,
    }
}

/// The anonymous user.
pub fn anonymous() -> Identity {
    Identity {
        user: UserInfo {
            name: ANONYMOUS.to_owned(),
            groups: vec![UNAUTHENTICATED.to_owned()],
        },
        uid: String::new(),
        extra: BTreeMap::new(),
    }
}

#[cfg(test)]
mod tests;
