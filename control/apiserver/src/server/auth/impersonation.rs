//! Impersonation as kube-apiserver's `WithImpersonation` filter does it: the
//! authenticated user asks to act as someone else with `Impersonate-User`,
//! `Impersonate-Group` (repeatable), `Impersonate-Uid` and
//! `Impersonate-Extra-<key>`; each asked thing must be allowed by RBAC verb
//! `impersonate`:
//!
//! | header                                      | resource (API group)                       | name  |
//! |---------------------------------------------|--------------------------------------------|-------|
//! | `Impersonate-User: u`                       | `users` ("")                               | u     |
//! | `Impersonate-User: system:serviceaccount:N:S` | `serviceaccounts` ("") in namespace N    | S     |
//! | `Impersonate-Group: g`                      | `groups` ("")                              | g     |
//! | `Impersonate-Uid: x`                        | `uids` (`authentication.k8s.io`)           | x     |
//! | `Impersonate-Extra-k: v`                    | `userextras/k` (`authentication.k8s.io`)   | v     |
//!
//! The first refusal is a 403 with kube's message. The request then runs as
//! the impersonated user: its groups are the asked ones (a ServiceAccount
//! without asked groups gets `system:serviceaccounts` and
//! `system:serviceaccounts:N`), plus `system:authenticated` unless it already
//! has that or `system:unauthenticated` (impersonating `system:anonymous`
//! adds `system:unauthenticated` instead). Groups, a uid or extras without a
//! user are a 400 (kube answers 500). Extras are authorized and then
//! dropped: hami's users carry none.

use axum::http::HeaderMap;

use super::{ANONYMOUS, AUTHENTICATED, Identity, UNAUTHENTICATED};
use crate::server::rbac::{Attributes, Decision, Policy, UserInfo};

pub const USER: &str = "impersonate-user";
pub const GROUP: &str = "impersonate-group";
pub const UID: &str = "impersonate-uid";
pub const EXTRA_PREFIX: &str = "impersonate-extra-";
const SERVICE_ACCOUNT_PREFIX: &str = "system:serviceaccount:";
const AUTHENTICATION_GROUP: &str = "authentication.k8s.io";

/// Why impersonation was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ImpersonationError {
    #[error("{0}")]
    BadRequest(String),
    /// kube's 403 message; group, resource and name for the Status details.
    #[error("{message}")]
    Forbidden {
        message: String,
        group: String,
        resource: String,
        name: String,
    },
}

/// One thing the request asks to act as.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Ask {
    User(String),
    ServiceAccount { namespace: String, name: String },
    Group(String),
    Extra { key: String, value: String },
    Uid(String),
}

impl Ask {
    fn attributes(&self) -> Attributes {
        let (group, resource, subresource, namespace, name) = match self {
            Ask::User(name) => ("", "users", None, None, name),
            Ask::ServiceAccount { namespace, name } => {
                ("", "serviceaccounts", None, Some(namespace.clone()), name)
            }
            Ask::Group(name) => ("", "groups", None, None, name),
            Ask::Extra { key, value } => (
                AUTHENTICATION_GROUP,
                "userextras",
                Some(key.clone()),
                None,
                value,
            ),
            Ask::Uid(uid) => (AUTHENTICATION_GROUP, "uids", None, None, uid),
        };
        Attributes::Resource {
            verb: "impersonate".to_owned(),
            api_group: group.to_owned(),
            resource: resource.to_owned(),
            subresource: subresource.filter(|s| !s.is_empty()),
            namespace: namespace.filter(|n| !n.is_empty()),
            name: (!name.is_empty()).then(|| name.clone()),
        }
    }
}

/// `system:serviceaccount:NS:NAME` as (NS, NAME), kube's `SplitUsername`.
fn service_account(user: &str) -> Option<(&str, &str)> {
    let (namespace, name) = user.strip_prefix(SERVICE_ACCOUNT_PREFIX)?.split_once(':')?;
    (!namespace.is_empty() && !name.is_empty() && !name.contains(':')).then_some((namespace, name))
}

/// `%XX` decoding of an extra's key (kube's `unescapeExtraKey`; a malformed
/// escape keeps the key as it is).
fn unescape(key: &str) -> String {
    let bytes = key.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = key
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok());
            match hex {
                Some(b) => {
                    out.push(b);
                    i += 3;
                    continue;
                }
                None => return key.to_owned(),
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8(out).unwrap_or_else(|_| key.to_owned())
}

fn text<'a>(name: &str, value: &'a axum::http::HeaderValue) -> Result<&'a str, ImpersonationError> {
    value
        .to_str()
        .map_err(|_| ImpersonationError::BadRequest(format!("the {name} header is not text")))
}

/// What the headers ask for, in kube's order: the user, the groups, the
/// extras, the uid.
fn asks(headers: &HeaderMap) -> Result<Vec<Ask>, ImpersonationError> {
    let mut asks = Vec::new();
    let user = match headers.get(USER) {
        Some(v) => text(USER, v)?,
        None => "",
    };
    if !user.is_empty() {
        asks.push(match service_account(user) {
            Some((namespace, name)) => Ask::ServiceAccount {
                namespace: namespace.to_owned(),
                name: name.to_owned(),
            },
            None => Ask::User(user.to_owned()),
        });
    }
    for value in headers.get_all(GROUP) {
        asks.push(Ask::Group(text(GROUP, value)?.to_owned()));
    }
    for (name, value) in headers {
        if let Some(key) = name.as_str().strip_prefix(EXTRA_PREFIX) {
            asks.push(Ask::Extra {
                key: unescape(key),
                value: text(name.as_str(), value)?.to_owned(),
            });
        }
    }
    let uid = match headers.get(UID) {
        Some(v) => text(UID, v)?,
        None => "",
    };
    if !uid.is_empty() {
        asks.push(Ask::Uid(uid.to_owned()));
    }
    if user.is_empty() && !asks.is_empty() {
        return Err(ImpersonationError::BadRequest(
            "requested impersonation of groups, a uid or extras without impersonating a user"
                .to_owned(),
        ));
    }
    Ok(asks)
}

/// The identity the request runs as: `None` when it asks for no
/// impersonation; the impersonated identity when `policy` lets `requestor`
/// impersonate everything asked.
pub fn impersonate(
    policy: &Policy,
    requestor: &UserInfo,
    headers: &HeaderMap,
) -> Result<Option<Identity>, ImpersonationError> {
    let asks = asks(headers)?;
    if asks.is_empty() {
        return Ok(None);
    }
    let groups_given = headers.contains_key(GROUP);
    let mut name = String::new();
    let mut groups: Vec<String> = Vec::new();
    let mut uid = String::new();
    for ask in &asks {
        let attrs = ask.attributes();
        if let Decision::Deny { message } = policy.authorize(requestor, &attrs) {
            let Attributes::Resource {
                api_group,
                resource,
                name,
                ..
            } = attrs
            else {
                return Err(ImpersonationError::BadRequest(message));
            };
            return Err(ImpersonationError::Forbidden {
                message,
                group: api_group,
                resource,
                name: name.unwrap_or_default(),
            });
        }
        match ask {
            Ask::User(user) => name.clone_from(user),
            Ask::ServiceAccount {
                namespace,
                name: account,
            } => {
                name = format!("{SERVICE_ACCOUNT_PREFIX}{namespace}:{account}");
                if !groups_given {
                    groups = vec![
                        "system:serviceaccounts".to_owned(),
                        format!("system:serviceaccounts:{namespace}"),
                    ];
                }
            }
            Ask::Group(group) => groups.push(group.clone()),
            Ask::Extra { .. } => {}
            Ask::Uid(value) => uid.clone_from(value),
        }
    }
    let has = |groups: &[String], g: &str| groups.iter().any(|x| x == g);
    if name != ANONYMOUS {
        if !has(&groups, AUTHENTICATED) && !has(&groups, UNAUTHENTICATED) {
            groups.push(AUTHENTICATED.to_owned());
        }
    } else if !has(&groups, UNAUTHENTICATED) {
        groups.push(UNAUTHENTICATED.to_owned());
    }
    Ok(Some(Identity {
        user: UserInfo { name, groups },
        uid,
        extra: Default::default(),
    }))
}

/// Takes the impersonation headers off a request that was let through.
pub fn strip_headers(headers: &mut HeaderMap) {
    headers.remove(USER);
    headers.remove(GROUP);
    headers.remove(UID);
    let extras: Vec<_> = headers
        .keys()
        .filter(|k| k.as_str().starts_with(EXTRA_PREFIX))
        .cloned()
        .collect();
    for key in extras {
        headers.remove(key);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use axum::http::HeaderValue;
    use serde_json::json;

    fn user(name: &str, groups: &[&str]) -> UserInfo {
        UserInfo {
            name: name.to_owned(),
            groups: groups.iter().map(|g| (*g).to_owned()).collect(),
        }
    }

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_static(v));
        }
        h
    }

    /// `impersonator` may impersonate user `bob`, group `dev`, uid `42`,
    /// extra `scopes=read`, and ServiceAccount `ns/robot`.
    fn policy() -> Policy {
        let rbac = "rbac.authorization.k8s.io/v1";
        let role = json!({"apiVersion": rbac, "kind": "ClusterRole",
        "metadata": {"name": "impersonator"},
        "rules": [
            {"apiGroups": [""], "resources": ["users"], "verbs": ["impersonate"], "resourceNames": ["bob", "system:anonymous"]},
            {"apiGroups": [""], "resources": ["groups"], "verbs": ["impersonate"], "resourceNames": ["dev"]},
            {"apiGroups": ["authentication.k8s.io"], "resources": ["uids"], "verbs": ["impersonate"], "resourceNames": ["42"]},
            {"apiGroups": ["authentication.k8s.io"], "resources": ["userextras/scopes"], "verbs": ["impersonate"], "resourceNames": ["read"]},
        ]});
        let sa_role = json!({"apiVersion": rbac, "kind": "Role",
            "metadata": {"name": "sa", "namespace": "ns"},
            "rules": [{"apiGroups": [""], "resources": ["serviceaccounts"], "verbs": ["impersonate"], "resourceNames": ["robot"]}]});
        let subjects = json!([{"kind": "User", "name": "impersonator"}]);
        let binding = json!({"apiVersion": rbac, "kind": "ClusterRoleBinding",
            "metadata": {"name": "impersonator"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "impersonator"},
            "subjects": subjects});
        let sa_binding = json!({"apiVersion": rbac, "kind": "RoleBinding",
            "metadata": {"name": "sa", "namespace": "ns"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "sa"},
            "subjects": subjects});
        let p = Policy::build(&[sa_role], &[role], &[sa_binding], &[binding]);
        assert!(p.skipped().is_empty(), "{:?}", p.skipped());
        p
    }

    #[test]
    fn no_headers_no_impersonation() {
        let me = user("impersonator", &[AUTHENTICATED]);
        assert_eq!(impersonate(&policy(), &me, &HeaderMap::new()), Ok(None));
        assert_eq!(
            impersonate(&policy(), &me, &headers(&[(USER, "")])),
            Ok(None)
        );
    }

    #[test]
    fn allowed_impersonations_give_kubes_user() {
        let me = user("impersonator", &[AUTHENTICATED]);
        let p = policy();
        type Pairs = Vec<(&'static str, &'static str)>;
        let cases: Vec<(Pairs, &str, Vec<&str>, &str)> = vec![
            (vec![(USER, "bob")], "bob", vec![AUTHENTICATED], ""),
            (
                vec![(USER, "bob"), (GROUP, "dev")],
                "bob",
                vec!["dev", AUTHENTICATED],
                "",
            ),
            (
                vec![(USER, "bob"), (UID, "42")],
                "bob",
                vec![AUTHENTICATED],
                "42",
            ),
            (
                vec![(USER, "bob"), ("impersonate-extra-scopes", "read")],
                "bob",
                vec![AUTHENTICATED],
                "",
            ),
            (
                vec![(USER, "system:serviceaccount:ns:robot")],
                "system:serviceaccount:ns:robot",
                vec![
                    "system:serviceaccounts",
                    "system:serviceaccounts:ns",
                    AUTHENTICATED,
                ],
                "",
            ),
            (
                vec![(USER, "system:serviceaccount:ns:robot"), (GROUP, "dev")],
                "system:serviceaccount:ns:robot",
                vec!["dev", AUTHENTICATED],
                "",
            ),
            (
                vec![(USER, ANONYMOUS)],
                ANONYMOUS,
                vec![UNAUTHENTICATED],
                "",
            ),
        ];
        for (pairs, name, groups, uid) in cases {
            let got = impersonate(&p, &me, &headers(&pairs)).unwrap().unwrap();
            assert_eq!(got.user, user(name, &groups), "{pairs:?}");
            assert_eq!(got.uid, uid, "{pairs:?}");
        }
    }

    #[test]
    fn refusals_carry_kubes_message() {
        let me = user("impersonator", &[AUTHENTICATED]);
        let p = policy();
        let forbidden =
            |pairs: &[(&'static str, &'static str)]| match impersonate(&p, &me, &headers(pairs))
                .unwrap_err()
            {
                ImpersonationError::Forbidden { message, .. } => message,
                other => panic!("{other:?}"),
            };
        assert_eq!(
            forbidden(&[(USER, "carol")]),
            r#"users "carol" is forbidden: User "impersonator" cannot impersonate resource "users" in API group "" at the cluster scope"#
        );
        assert_eq!(
            forbidden(&[(USER, "bob"), (GROUP, "dev"), (GROUP, "system:masters")]),
            r#"groups "system:masters" is forbidden: User "impersonator" cannot impersonate resource "groups" in API group "" at the cluster scope"#
        );
        assert_eq!(
            forbidden(&[(USER, "bob"), (UID, "7")]),
            r#"uids.authentication.k8s.io "7" is forbidden: User "impersonator" cannot impersonate resource "uids" in API group "authentication.k8s.io" at the cluster scope"#
        );
        assert_eq!(
            forbidden(&[(USER, "system:serviceaccount:other:robot")]),
            r#"serviceaccounts "robot" is forbidden: User "impersonator" cannot impersonate resource "serviceaccounts" in API group "" in the namespace "other""#
        );
        assert_eq!(
            forbidden(&[(USER, "bob"), ("impersonate-extra-scopes", "write")]),
            r#"userextras.authentication.k8s.io "write" is forbidden: User "impersonator" cannot impersonate resource "userextras/scopes" in API group "authentication.k8s.io" at the cluster scope"#
        );
        // Someone with no grant at all.
        let other = user("mallory", &[AUTHENTICATED]);
        assert!(matches!(
            impersonate(&p, &other, &headers(&[(USER, "bob")])),
            Err(ImpersonationError::Forbidden { .. })
        ));
        // Groups without a user.
        assert!(matches!(
            impersonate(&p, &me, &headers(&[(GROUP, "dev")])),
            Err(ImpersonationError::BadRequest(_))
        ));
    }

    #[test]
    fn service_account_names_split_like_kube() {
        assert_eq!(
            service_account("system:serviceaccount:ns:sa"),
            Some(("ns", "sa"))
        );
        for not_one in [
            "system:serviceaccount:ns",
            "system:serviceaccount::sa",
            "system:serviceaccount:ns:",
            "system:serviceaccount:a:b:c",
            "bob",
        ] {
            assert_eq!(service_account(not_one), None, "{not_one}");
        }
        assert_eq!(unescape("example.org%2Fscope"), "example.org/scope");
        assert_eq!(unescape("bad%zz"), "bad%zz");
    }

    #[test]
    fn headers_are_stripped() {
        let mut h = headers(&[
            (USER, "bob"),
            (GROUP, "a"),
            (GROUP, "b"),
            (UID, "1"),
            ("impersonate-extra-x", "y"),
            ("accept", "application/json"),
        ]);
        strip_headers(&mut h);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key("accept"));
    }
}
