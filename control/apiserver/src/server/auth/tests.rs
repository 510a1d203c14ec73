#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;

use axum::http::{HeaderValue, Method};

use super::*;

fn user(name: &str, groups: &[&str]) -> UserInfo {
    UserInfo {
        name: name.to_owned(),
        groups: groups.iter().map(|g| (*g).to_owned()).collect(),
    }
}

fn auth_with_tokens(text: &str) -> Auth {
    let mut file = tempfile::NamedTempFile::new().unwrap();
    file.write_all(text.as_bytes()).unwrap();
    let options = AuthOptions {
        token_auth_file: Some(file.path().to_owned()),
        ..AuthOptions::default()
    };
    let mut registry = prometheus_client::registry::Registry::default();
    let auth = Auth::new(&options, ApiMetrics::register(&mut registry));
    assert_eq!(auth.startup_error(), None);
    auth
}

#[test]
fn certificates_come_first_then_bearer_tokens() {
    let auth = auth_with_tokens("secret,alice,1,dev\n");
    let bearer = |v: &'static str| HeaderValue::from_static(v);
    let peer = PeerIdentity(user("bob", &["ops"]));
    let nameless = PeerIdentity(user("", &["x"]));
    let cases: Vec<(Option<&PeerIdentity>, Option<HeaderValue>, Credentials)> = vec![
        (
            Some(&peer),
            Some(bearer("Bearer secret")),
            Credentials::User(Identity {
                user: user("bob", &["ops", AUTHENTICATED]),
                uid: String::new(),
                extra: Default::default(),
            }),
        ),
        (
            None,
            Some(bearer("Bearer secret")),
            Credentials::User(Identity {
                user: user("alice", &["dev", AUTHENTICATED]),
                uid: "1".into(),
                extra: Default::default(),
            }),
        ),
        // The scheme in any case, as kube reads it.
        (
            None,
            Some(bearer("bearer secret")),
            Credentials::User(Identity {
                user: user("alice", &["dev", AUTHENTICATED]),
                uid: "1".into(),
                extra: Default::default(),
            }),
        ),
        (
            None,
            Some(bearer("Bearer wrong")),
            Credentials::Invalid("invalid bearer token"),
        ),
        (None, None, Credentials::None),
        // Not a bearer token: no credentials.
        (None, Some(bearer("Basic YTpi")), Credentials::None),
        (None, Some(bearer("Bearer ")), Credentials::None),
        // A certificate without a user is no identity.
        (Some(&nameless), None, Credentials::None),
    ];
    for (peer, header, want) in cases {
        assert_eq!(
            authenticate(&auth, peer, header.as_ref()),
            want,
            "{peer:?} {header:?}"
        );
    }
    // system:authenticated is never added twice.
    let twice = PeerIdentity(user("carol", &[AUTHENTICATED]));
    assert_eq!(
        authenticate(&auth, Some(&twice), None),
        Credentials::User(Identity {
            user: user("carol", &[AUTHENTICATED]),
            uid: String::new(),
            extra: Default::default(),
        })
    );
}

#[test]
fn anonymous_requests_are_limited_to_probes_version_and_cluster_info() {
    let cases = [
        (Method::GET, "/healthz", true),
        (Method::HEAD, "/healthz", true),
        (Method::GET, "/livez", true),
        (Method::GET, "/readyz", true),
        (Method::GET, "/readyz/etcd", true),
        (Method::GET, "/version", true),
        (Method::HEAD, "/version", true),
        (
            Method::GET,
            "/api/v1/namespaces/kube-public/configmaps/cluster-info",
            true,
        ),
        (
            Method::HEAD,
            "/api/v1/namespaces/kube-public/configmaps/cluster-info",
            false,
        ),
        (
            Method::PUT,
            "/api/v1/namespaces/kube-public/configmaps/cluster-info",
            false,
        ),
        (Method::POST, "/healthz", false),
        (Method::GET, "/healthzx", false),
        (Method::GET, "/metrics", false),
        (Method::GET, "/api", false),
        (Method::GET, "/apis", false),
        (Method::GET, "/openapi/v3", false),
        (Method::GET, "/api/v1/namespaces/default/pods", false),
        (
            Method::GET,
            "/api/v1/namespaces/kube-public/configmaps",
            false,
        ),
    ];
    for (method, path, want) in cases {
        assert_eq!(anonymous_allowed(&method, path), want, "{method} {path}");
    }
}

#[test]
fn a_bad_token_file_fails_start_up_and_refuses_tokens() {
    let mut file = tempfile::NamedTempFile::new().unwrap();
    file.write_all(b"good,alice,1\nbad\n").unwrap();
    let options = AuthOptions {
        token_auth_file: Some(file.path().to_owned()),
        ..AuthOptions::default()
    };
    let err = options.load().unwrap_err().to_string();
    assert!(
        err.ends_with(
            ", line 2: must have at least 3 columns (token, user name, user uid), found 1"
        ),
        "{err}"
    );
    assert!(err.contains(&file.path().display().to_string()), "{err}");
    let mut registry = prometheus_client::registry::Registry::default();
    let auth = Auth::new(&options, ApiMetrics::register(&mut registry));
    assert_eq!(auth.startup_error(), Some(err.as_str()));
    assert_eq!(auth.authenticate_token("good"), None);
}

#[test]
fn request_user_defaults_to_unsecured_masters() {
    let mut extensions = Extensions::new();
    assert_eq!(
        request_user(&extensions),
        user(UNSECURED, &[SYSTEM_MASTERS])
    );
    extensions.insert(user("alice", &[AUTHENTICATED]));
    assert_eq!(request_user(&extensions).name, "alice");
}
