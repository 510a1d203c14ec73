//! Authentication, impersonation and RBAC over real loopback HTTP, as
//! kube-apiserver's filters answer: 401 with kube's body, 403 with kube's
//! message, the policy following RBAC writes, the access reviews (also
//! through the real kubectl), discovery, the `user_kind` metric label, the
//! default RBAC objects, and `auth: None` serving everyone as before.
//!
//! Client certificates are verified by the TLS loop of `hami up` (another
//! crate), which puts a `PeerIdentity` in each request; here a test-only
//! layer outside the server's router does the same from an `x-test-peer:
//! user;group1,group2` header. Bearer tokens come from a temporary token
//! file, as `--token-auth-file` gives them.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;
use hami_apiserver::server::auth::{AuthOptions, PeerIdentity};
use hami_apiserver::server::rbac::UserInfo;
use hami_apiserver::server::{ApiMetrics, ApiServer, ServerConfig, hami_kinds};
use hami_store::{MemoryStore, Store};
use http::Method;
use kube::client::Body;
use serde_json::{Value, json};
use tokio::sync::watch;

const TOKENS: &str = "\
alice-token,alice,uid-alice,\"team-a,team-b\"
imp-token,imp,uid-imp
mon-token,prometheus,uid-mon,system:monitoring
agent-token,system:hami:agent:member1,uid-agent,system:hami:agents
sa-token,system:serviceaccount:ns1:robot,uid-sa
";

/// The admin: a certificate in system:masters (what `hami up` issues).
const ADMIN: Who = Who::Peer("kubernetes-admin;system:masters");
const ALICE: Who = Who::Token("alice-token");
const IMP: Who = Who::Token("imp-token");
const MONITOR: Who = Who::Token("mon-token");
const NOBODY: Who = Who::Anonymous;

#[derive(Clone, Copy, Debug)]
enum Who {
    Anonymous,
    Token(&'static str),
    /// `user;group1,group2` as a verified certificate would say it.
    Peer(&'static str),
}

/// The test-only stand-in for the TLS loop: a verified certificate's identity.
async fn test_peer(mut request: Request, next: Next) -> Response {
    if let Some(value) = request.headers_mut().remove("x-test-peer") {
        let text = value.to_str().unwrap().to_owned();
        let (name, groups) = text.split_once(';').unwrap_or((&text, ""));
        let groups = groups
            .split(',')
            .filter(|g| !g.is_empty())
            .map(str::to_owned)
            .collect();
        request.extensions_mut().insert(PeerIdentity(UserInfo {
            name: name.to_owned(),
            groups,
        }));
    }
    next.run(request).await
}

struct Server {
    server: ApiServer,
    client: kube::Client,
    stop: watch::Sender<bool>,
    dir: tempfile::TempDir,
}

fn write_tokens(dir: &Path) -> PathBuf {
    let path = dir.join("tokens.csv");
    std::fs::write(&path, TOKENS).unwrap();
    path
}

async fn start_with(auth: Option<AuthOptions>, dir: tempfile::TempDir) -> Server {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let mut metric_registry = prometheus_client::registry::Registry::default();
    let metrics = ApiMetrics::register(&mut metric_registry);
    let (stop, stopped) = watch::channel(false);
    let config = ServerConfig {
        validator: Some(hami_kinds::validator()),
        auth,
        ..ServerConfig::default()
    };
    let server = ApiServer::new(
        store,
        hami_kinds::registry().unwrap(),
        config,
        metrics,
        Arc::new(metric_registry),
        stopped.clone(),
    );
    server.ensure_default_namespaces().await.unwrap();
    server.spawn_crd_controller(stopped.clone());
    let router = server.router().layer(axum::middleware::from_fn(test_peer));
    let url = serve(router, stopped).await;
    let client = kube::Client::try_from(kube::Config::new(url.parse().unwrap())).unwrap();
    Server {
        server,
        client,
        stop,
        dir,
    }
}

/// Serves `router` on a free loopback port until `stopped` turns true.
async fn serve(router: axum::Router, mut stopped: watch::Receiver<bool>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        axum::serve(listener, router)
            .with_graceful_shutdown(async move {
                let _ = stopped.wait_for(|s| *s).await;
            })
            .await
    });
    url
}

/// A server with authentication on and the token file above.
async fn start() -> Server {
    let dir = tempfile::tempdir().unwrap();
    let tokens = write_tokens(dir.path());
    start_with(
        Some(AuthOptions {
            token_auth_file: Some(tokens),
            ..AuthOptions::default()
        }),
        dir,
    )
    .await
}

impl Server {
    async fn send(
        &self,
        who: Who,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&Value>,
    ) -> (u16, Value) {
        let mut request = http::Request::builder().method(method).uri(path);
        match who {
            Who::Anonymous => {}
            Who::Token(t) => request = request.header("authorization", format!("Bearer {t}")),
            Who::Peer(p) => request = request.header("x-test-peer", p),
        }
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        let bytes = match body {
            Some(b) => {
                request = request.header("content-type", "application/json");
                b.to_string().into_bytes()
            }
            None => Vec::new(),
        };
        let response = self
            .client
            .send(request.body(Body::from(bytes)).unwrap())
            .await
            .unwrap();
        let code = response.status().as_u16();
        let bytes = response.into_body().collect_bytes().await.unwrap();
        let value = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| json!({"raw": String::from_utf8_lossy(&bytes)}));
        (code, value)
    }

    async fn get(&self, who: Who, path: &str) -> (u16, Value) {
        self.send(who, Method::GET, path, &[], None).await
    }

    async fn post(&self, who: Who, path: &str, body: &Value) -> (u16, Value) {
        self.send(who, Method::POST, path, &[], Some(body)).await
    }

    /// Retries `GET path` as `who` until it answers `want` (RBAC writes
    /// reach the authorizer through the store's watch), at most 5 s.
    async fn eventually(&self, who: Who, path: &str, want: u16) -> Value {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let (code, body) = self.get(who, path).await;
            if code == want {
                return body;
            }
            assert!(
                Instant::now() < deadline,
                "GET {path} as {who:?}: {code} {body}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Another port whose every connection is `user` with `groups`, as a
    /// TLS listener makes every request of a connection the certificate's
    /// user (for clients that cannot send the test header: kubectl, which
    /// also sends no bearer token over plain HTTP).
    async fn listen_as(&self, user: &str, groups: &[&str]) -> String {
        let peer = PeerIdentity(UserInfo {
            name: user.to_owned(),
            groups: groups.iter().map(|g| (*g).to_owned()).collect(),
        });
        let router = self.server.router().layer(axum::Extension(peer));
        serve(router, self.stop.subscribe()).await
    }

    async fn metrics(&self) -> String {
        let (code, body) = self.get(MONITOR, "/metrics").await;
        assert_eq!(code, 200, "{body}");
        body["raw"].as_str().unwrap().to_owned()
    }
}

const PODS: &str = "/api/v1/namespaces/default/pods";
const RBAC: &str = "/apis/rbac.authorization.k8s.io/v1";

fn unauthorized() -> Value {
    json!({"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure",
           "message":"Unauthorized","reason":"Unauthorized","code":401})
}

fn role_binding(ns: &str, name: &str, role: &str, subject: Value) -> Value {
    json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
           "metadata": {"name": name, "namespace": ns},
           "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
           "subjects": [subject]})
}

fn user_subject(name: &str) -> Value {
    json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": name})
}

fn pod(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
           "spec": {"containers": [{"name": "c", "image": "nginx"}]}})
}

#[tokio::test]
async fn anonymous_requests_reach_only_probes_version_and_cluster_info() {
    let s = start().await;
    for path in [PODS, "/metrics", "/apis", "/api", "/openapi/v3"] {
        let (code, body) = s.get(NOBODY, path).await;
        assert_eq!((code, &body), (401, &unauthorized()), "{path}");
    }
    let (code, body) = s.post(NOBODY, PODS, &pod("p")).await;
    assert_eq!((code, body), (401, unauthorized()));
    for path in ["/healthz", "/livez", "/readyz", "/version"] {
        let (code, body) = s.get(NOBODY, path).await;
        assert_eq!(code, 200, "{path}: {body}");
    }
    let (code, _) = s.send(NOBODY, Method::HEAD, "/healthz", &[], None).await;
    assert_eq!(code, 200);
    // kubeadm's cluster-info ConfigMap: anonymous may read it, nothing else there.
    const INFO: &str = "/api/v1/namespaces/kube-public/configmaps/cluster-info";
    assert_eq!(
        s.get(NOBODY, INFO).await.0,
        404,
        "readable, not created yet"
    );
    let (code, body) = s
        .post(
            ADMIN,
            "/api/v1/namespaces/kube-public/configmaps",
            &json!({"apiVersion": "v1", "kind": "ConfigMap",
                    "metadata": {"name": "cluster-info"}, "data": {"kubeconfig": "x"}}),
        )
        .await;
    assert_eq!(code, 201, "{body}");
    let (code, body) = s.get(NOBODY, INFO).await;
    assert_eq!(
        (code, body["data"]["kubeconfig"].as_str()),
        (200, Some("x"))
    );
    let (code, _) = s
        .get(NOBODY, "/api/v1/namespaces/kube-public/configmaps")
        .await;
    assert_eq!(code, 401);
    // kubeadm's Role names system:anonymous only: a signed-in user without
    // a binding may not read it (as on a kubeadm cluster).
    let (code, body) = s.get(ALICE, INFO).await;
    assert_eq!(code, 403, "{body}");
}

#[tokio::test]
async fn a_bad_token_is_401_everywhere_and_never_anonymous() {
    let s = start().await;
    for path in ["/healthz", "/version", PODS] {
        let (code, body) = s.get(Who::Token("not-a-token"), path).await;
        assert_eq!((code, &body), (401, &unauthorized()), "{path}");
    }
    // A certificate wins over a bad token (kube tries x509 first).
    let (code, _) = s
        .send(
            ADMIN,
            Method::GET,
            PODS,
            &[("authorization", "Bearer not-a-token")],
            None,
        )
        .await;
    assert_eq!(code, 200);
}

#[tokio::test]
async fn a_user_without_bindings_is_forbidden_until_bound() {
    let s = start().await;
    let (code, body) = s.get(ALICE, PODS).await;
    assert_eq!(code, 403, "{body}");
    assert_eq!(
        body,
        json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
               "message": "pods is forbidden: User \"alice\" cannot list resource \"pods\" in API group \"\" in the namespace \"default\"",
               "reason": "Forbidden", "details": {"kind": "pods"}, "code": 403})
    );
    let (code, body) = s
        .get(ALICE, "/apis/apps/v1/namespaces/default/deployments/web")
        .await;
    assert_eq!(code, 403);
    assert_eq!(
        body["message"],
        "deployments.apps \"web\" is forbidden: User \"alice\" cannot get resource \"deployments\" in API group \"apps\" in the namespace \"default\""
    );
    assert_eq!(
        body["details"],
        json!({"name": "web", "group": "apps", "kind": "deployments"})
    );
    // A non-resource path: kube's wording, no details to name.
    let (code, body) = s.get(ALICE, "/metrics").await;
    assert_eq!(code, 403);
    assert_eq!(
        (&body["message"], &body["details"]),
        (
            &json!("forbidden: User \"alice\" cannot get path \"/metrics\""),
            &json!({})
        )
    );
    // Discovery and the self reviews need no binding (system:authenticated).
    assert_eq!(s.get(ALICE, "/apis").await.0, 200);
    assert_eq!(s.get(ALICE, "/api/v1").await.0, 200);

    // An admin binds alice to view in default.
    let (code, body) = s
        .post(
            ADMIN,
            &format!("{RBAC}/namespaces/default/rolebindings"),
            &role_binding("default", "alice-view", "view", user_subject("alice")),
        )
        .await;
    assert_eq!(code, 201, "{body}");
    let started = Instant::now();
    let list = s.eventually(ALICE, PODS, 200).await;
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(list["kind"], "PodList");
    let (code, body) = s.post(ALICE, PODS, &pod("p")).await;
    assert_eq!(code, 403);
    assert_eq!(
        body["message"],
        "pods is forbidden: User \"alice\" cannot create resource \"pods\" in API group \"\" in the namespace \"default\""
    );
    // Other namespaces stay closed; secrets are not in view.
    assert_eq!(
        s.get(ALICE, "/api/v1/namespaces/kube-system/pods").await.0,
        403
    );
    assert_eq!(
        s.get(ALICE, "/api/v1/namespaces/default/secrets").await.0,
        403
    );
    // A group binding works through the token file's groups.
    let (code, _) = s
        .post(
            ADMIN,
            &format!("{RBAC}/namespaces/kube-system/rolebindings"),
            &role_binding(
                "kube-system",
                "team-b-view",
                "view",
                json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": "team-b"}),
            ),
        )
        .await;
    assert_eq!(code, 201);
    s.eventually(ALICE, "/api/v1/namespaces/kube-system/pods", 200)
        .await;
    // Removing the binding takes the grant back.
    let (code, _) = s
        .send(
            ADMIN,
            Method::DELETE,
            &format!("{RBAC}/namespaces/default/rolebindings/alice-view"),
            &[],
            None,
        )
        .await;
    assert_eq!(code, 200);
    s.eventually(ALICE, PODS, 403).await;
}

#[tokio::test]
async fn masters_may_do_everything() {
    let s = start().await;
    let (code, body) = s
        .post(
            ADMIN,
            "/api/v1/namespaces",
            &json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "ns1"}}),
        )
        .await;
    assert_eq!(code, 201, "{body}");
    assert_eq!(
        s.post(ADMIN, "/api/v1/namespaces/ns1/pods", &pod("p"))
            .await
            .0,
        201
    );
    for path in [
        "/api/v1/namespaces/ns1/pods/p",
        "/api/v1/nodes",
        "/apis/cluster.hami.io/v1alpha1/clusters",
        "/api/v1/namespaces/kube-system/secrets",
        "/metrics",
        "/openapi/v3",
    ] {
        let (code, body) = s.get(ADMIN, path).await;
        assert_eq!(code, 200, "{path}: {body}");
    }
    let (code, _) = s
        .send(
            ADMIN,
            Method::DELETE,
            "/api/v1/namespaces/ns1/pods/p",
            &[],
            None,
        )
        .await;
    assert_eq!(code, 200);
}

#[tokio::test]
async fn impersonation_is_authorized_like_kube() {
    let s = start().await;
    // The admin acts as alice: alice's (missing) permissions apply.
    let (code, body) = s
        .send(
            ADMIN,
            Method::GET,
            PODS,
            &[("impersonate-user", "alice")],
            None,
        )
        .await;
    assert_eq!(code, 403);
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("User \"alice\" cannot list resource \"pods\""),
        "{body}"
    );
    // imp may impersonate user bob (and nobody else); bob may view default.
    let role = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
        "metadata": {"name": "impersonate-bob"},
        "rules": [{"apiGroups": [""], "resources": ["users"], "verbs": ["impersonate"], "resourceNames": ["bob"]}]});
    assert_eq!(
        s.post(ADMIN, &format!("{RBAC}/clusterroles"), &role)
            .await
            .0,
        201
    );
    let binding = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
        "metadata": {"name": "imp-impersonates-bob"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "impersonate-bob"},
        "subjects": [user_subject("imp")]});
    assert_eq!(
        s.post(ADMIN, &format!("{RBAC}/clusterrolebindings"), &binding)
            .await
            .0,
        201
    );
    assert_eq!(
        s.post(
            ADMIN,
            &format!("{RBAC}/namespaces/default/rolebindings"),
            &role_binding("default", "bob-view", "view", user_subject("bob")),
        )
        .await
        .0,
        201
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (code, body) = s
            .send(IMP, Method::GET, PODS, &[("impersonate-user", "bob")], None)
            .await;
        if code == 200 {
            assert_eq!(body["kind"], "PodList");
            break;
        }
        assert!(Instant::now() < deadline, "{code} {body}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // imp itself has no access; impersonating carol or a group is refused.
    assert_eq!(s.get(IMP, PODS).await.0, 403);
    let (code, body) = s
        .send(
            IMP,
            Method::GET,
            PODS,
            &[("impersonate-user", "carol")],
            None,
        )
        .await;
    assert_eq!(code, 403);
    assert_eq!(
        body["message"],
        "users \"carol\" is forbidden: User \"imp\" cannot impersonate resource \"users\" in API group \"\" at the cluster scope"
    );
    assert_eq!(body["details"], json!({"name": "carol", "kind": "users"}));
    let (code, body) = s
        .send(
            IMP,
            Method::GET,
            PODS,
            &[
                ("impersonate-user", "bob"),
                ("impersonate-group", "system:masters"),
            ],
            None,
        )
        .await;
    assert_eq!(code, 403);
    assert_eq!(
        body["message"],
        "groups \"system:masters\" is forbidden: User \"imp\" cannot impersonate resource \"groups\" in API group \"\" at the cluster scope"
    );
    // alice may not impersonate anyone.
    let (code, _) = s
        .send(
            ALICE,
            Method::GET,
            PODS,
            &[("impersonate-user", "bob")],
            None,
        )
        .await;
    assert_eq!(code, 403);
    // Groups without a user: 400.
    let (code, body) = s
        .send(
            ADMIN,
            Method::GET,
            PODS,
            &[("impersonate-group", "x")],
            None,
        )
        .await;
    assert_eq!(code, 400, "{body}");
    // The admin may act as a ServiceAccount and its groups.
    let review = json!({"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectRulesReview",
                        "spec": {"namespace": "default"}});
    let (code, _) = s
        .send(
            ADMIN,
            Method::POST,
            "/apis/authorization.k8s.io/v1/selfsubjectrulesreviews",
            &[("impersonate-user", "system:serviceaccount:ns1:robot")],
            Some(&review),
        )
        .await;
    assert_eq!(code, 201);
}

const SSAR: &str = "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews";
const SSRR: &str = "/apis/authorization.k8s.io/v1/selfsubjectrulesreviews";
const SAR: &str = "/apis/authorization.k8s.io/v1/subjectaccessreviews";

fn ssar(verb: &str, group: &str, resource: &str, ns: &str) -> Value {
    json!({"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
           "spec": {"resourceAttributes": {"verb": verb, "group": group, "resource": resource, "namespace": ns}}})
}

#[tokio::test]
async fn access_reviews_answer_from_the_policy() {
    let s = start().await;
    assert_eq!(
        s.post(
            ADMIN,
            &format!("{RBAC}/namespaces/default/rolebindings"),
            &role_binding("default", "alice-view", "view", user_subject("alice")),
        )
        .await
        .0,
        201
    );
    s.eventually(ALICE, PODS, 200).await;
    // SelfSubjectAccessReview: yes and no, 201 with the object echoed.
    let (code, yes) = s
        .post(ALICE, SSAR, &ssar("list", "apps", "deployments", "default"))
        .await;
    assert_eq!(code, 201, "{yes}");
    assert_eq!(yes["kind"], "SelfSubjectAccessReview");
    assert_eq!(yes["spec"]["resourceAttributes"]["resource"], "deployments");
    assert_eq!(yes["status"]["allowed"], true);
    assert_eq!(
        yes["status"]["reason"],
        "RBAC: allowed by RoleBinding \"alice-view/default\" of ClusterRole \"view\" to User \"alice\""
    );
    let (code, no) = s
        .post(
            ALICE,
            SSAR,
            &ssar("create", "apps", "deployments", "default"),
        )
        .await;
    assert_eq!((code, &no["status"]), (201, &json!({"allowed": false})));
    let url = json!({"spec": {"nonResourceAttributes": {"verb": "get", "path": "/metrics"}}});
    assert_eq!(
        s.post(ALICE, SSAR, &url).await.1["status"]["allowed"],
        false
    );
    assert_eq!(
        s.post(MONITOR, SSAR, &url).await.1["status"]["allowed"],
        true
    );
    // Invalid: 422 naming the field.
    let (code, body) = s.post(ALICE, SSAR, &json!({"spec": {}})).await;
    assert_eq!(code, 422, "{body}");
    assert_eq!(
        body["details"]["causes"][0]["field"],
        "spec.resourceAttributes"
    );
    // Only POST (authorization comes first, as in kube: alice may not "list" them).
    assert_eq!(s.get(ADMIN, SSAR).await.0, 405);
    assert_eq!(s.get(ALICE, SSAR).await.0, 403);

    // SelfSubjectRulesReview: the rules of view plus the cluster-wide ones.
    let (code, rules) = s
        .post(ALICE, SSRR, &json!({"spec": {"namespace": "default"}}))
        .await;
    assert_eq!(code, 201, "{rules}");
    assert_eq!(rules["status"]["incomplete"], false);
    let resource_rules = rules["status"]["resourceRules"].as_array().unwrap();
    assert!(
        resource_rules
            .iter()
            .any(|r| r["apiGroups"] == json!(["apps"])
                && r["resources"]
                    .as_array()
                    .unwrap()
                    .contains(&json!("deployments"))
                && r["verbs"] == json!(["get", "list", "watch"])),
        "{rules}"
    );
    assert!(
        resource_rules
            .iter()
            .any(|r| r["resources"]
                == json!(["selfsubjectaccessreviews", "selfsubjectrulesreviews"])),
        "{rules}"
    );
    assert!(
        rules["status"]["nonResourceRules"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["nonResourceURLs"]
                .as_array()
                .unwrap()
                .contains(&json!("/apis/*"))),
        "{rules}"
    );

    // SubjectAccessReview: admins may ask about anyone; a viewer may not ask.
    let sar = json!({"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
        "spec": {"user": "alice", "groups": ["system:authenticated"],
                 "resourceAttributes": {"verb": "get", "resource": "pods", "namespace": "default"}}});
    let (code, body) = s.post(ADMIN, SAR, &sar).await;
    assert_eq!(
        (code, body["status"]["allowed"].as_bool()),
        (201, Some(true)),
        "{body}"
    );
    let mut delete = sar.clone();
    delete["spec"]["resourceAttributes"]["verb"] = json!("delete");
    assert_eq!(
        s.post(ADMIN, SAR, &delete).await.1["status"]["allowed"],
        false
    );
    let (code, body) = s.post(ALICE, SAR, &sar).await;
    assert_eq!(code, 403);
    assert_eq!(
        body["message"],
        "subjectaccessreviews.authorization.k8s.io is forbidden: User \"alice\" cannot create resource \"subjectaccessreviews\" in API group \"authorization.k8s.io\" at the cluster scope"
    );
    // LocalSubjectAccessReview: namespaced, allowed to namespace admins.
    let local = json!({"spec": {"user": "alice",
        "resourceAttributes": {"verb": "list", "resource": "pods", "namespace": "default"}}});
    let (code, body) = s
        .post(
            ADMIN,
            "/apis/authorization.k8s.io/v1/namespaces/default/localsubjectaccessreviews",
            &local,
        )
        .await;
    assert_eq!(code, 201, "{body}");
    assert_eq!(body["metadata"]["namespace"], "default");
    assert_eq!(body["status"]["allowed"], true);
    let (code, _) = s
        .post(
            ALICE,
            "/apis/authorization.k8s.io/v1/namespaces/default/localsubjectaccessreviews",
            &local,
        )
        .await;
    assert_eq!(code, 403);
}

#[tokio::test]
async fn discovery_lists_the_authorization_group() {
    let s = start().await;
    let (code, groups) = s.get(ALICE, "/apis").await;
    assert_eq!(code, 200);
    let group = groups["groups"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["name"] == "authorization.k8s.io")
        .unwrap_or_else(|| panic!("{groups}"));
    assert_eq!(
        group["preferredVersion"]["groupVersion"],
        "authorization.k8s.io/v1"
    );
    let (code, group) = s.get(ALICE, "/apis/authorization.k8s.io").await;
    assert_eq!((code, group["kind"].as_str()), (200, Some("APIGroup")));
    let (code, list) = s.get(ALICE, "/apis/authorization.k8s.io/v1").await;
    assert_eq!(code, 200);
    let mut names: Vec<&str> = list["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            assert_eq!(r["verbs"], json!(["create"]));
            r["name"].as_str().unwrap()
        })
        .collect();
    names.sort_unstable();
    assert_eq!(
        names,
        [
            "localsubjectaccessreviews",
            "selfsubjectaccessreviews",
            "selfsubjectrulesreviews",
            "subjectaccessreviews"
        ]
    );
    // The RBAC kinds are where they were.
    let (code, rbac) = s.get(ALICE, RBAC).await;
    assert_eq!(code, 200);
    assert!(
        rbac["resources"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["name"] == "clusterroles")
    );
}

#[tokio::test]
async fn requests_are_counted_by_user_kind() {
    let s = start().await;
    assert_eq!(s.get(ADMIN, PODS).await.0, 200);
    assert_eq!(s.get(ALICE, PODS).await.0, 403);
    assert_eq!(s.get(NOBODY, PODS).await.0, 401);
    assert_eq!(s.get(Who::Token("agent-token"), PODS).await.0, 403);
    assert_eq!(s.get(Who::Token("sa-token"), PODS).await.0, 403);
    assert_eq!(
        s.post(ALICE, SSAR, &ssar("get", "", "pods", "default"))
            .await
            .0,
        201
    );
    let text = s.metrics().await;
    for line in [
        r#"hami_apiserver_requests_total{verb="list",resource="pods",code="200",user_kind="admin"} 1"#,
        r#"hami_apiserver_requests_total{verb="list",resource="pods",code="403",user_kind="user"} 1"#,
        r#"hami_apiserver_requests_total{verb="list",resource="pods",code="401",user_kind="anonymous"} 1"#,
        r#"hami_apiserver_requests_total{verb="list",resource="pods",code="403",user_kind="agent"} 1"#,
        r#"hami_apiserver_requests_total{verb="list",resource="pods",code="403",user_kind="serviceaccount"} 1"#,
        r#"hami_apiserver_requests_total{verb="create",resource="selfsubjectaccessreviews.authorization.k8s.io",code="201",user_kind="user"} 1"#,
        "hami_apiserver_rbac_skipped_objects 0",
    ] {
        assert!(text.contains(line), "{line} missing from\n{text}");
    }
    // A 401 on a path outside the API is counted without echoing the path.
    assert_eq!(s.get(NOBODY, "/no/such/thing").await.0, 401);
    let text = s.metrics().await;
    assert!(
        text.contains(r#"hami_apiserver_requests_total{verb="get",resource="other",code="401",user_kind="anonymous"} 1"#),
        "{text}"
    );
    assert!(!text.contains("no/such"), "{text}");
}

#[tokio::test]
async fn default_rbac_is_created_once_and_never_overwritten() {
    let s = start().await;
    for path in [
        "/api/v1/namespaces/kube-public",
        "/api/v1/namespaces/default",
        "/api/v1/namespaces/kube-system",
    ] {
        assert_eq!(s.get(ADMIN, path).await.0, 200, "{path}");
    }
    for name in [
        "cluster-admin",
        "admin",
        "edit",
        "view",
        "system:discovery",
        "system:basic-user",
        "system:public-info-viewer",
        "system:monitoring",
    ] {
        let (code, role) = s.get(ADMIN, &format!("{RBAC}/clusterroles/{name}")).await;
        assert_eq!(code, 200, "{name}: {role}");
    }
    let (_, monitoring) = s
        .get(ADMIN, &format!("{RBAC}/clusterroles/system:monitoring"))
        .await;
    assert_eq!(
        monitoring["rules"][0]["nonResourceURLs"],
        json!([
            "/metrics",
            "/metrics/slis",
            "/livez",
            "/readyz",
            "/healthz",
            "/livez/*",
            "/readyz/*",
            "/healthz/*"
        ])
    );
    let (_, binding) = s
        .get(
            ADMIN,
            &format!("{RBAC}/clusterrolebindings/system:monitoring"),
        )
        .await;
    assert_eq!(binding["subjects"][0]["name"], "system:monitoring");
    let (code, role) = s
        .get(
            ADMIN,
            &format!("{RBAC}/namespaces/kube-public/roles/kubeadm:bootstrap-signer-clusterinfo"),
        )
        .await;
    assert_eq!(code, 200);
    assert_eq!(role["rules"][0]["resourceNames"], json!(["cluster-info"]));
    let (code, binding) = s
        .get(
            ADMIN,
            &format!(
                "{RBAC}/namespaces/kube-public/rolebindings/kubeadm:bootstrap-signer-clusterinfo"
            ),
        )
        .await;
    assert_eq!(code, 200);
    assert_eq!(binding["subjects"][0]["name"], "system:anonymous");

    // An admin changes view and deletes edit; a restart's defaults put
    // edit back and leave view as the admin wrote it.
    let (_, mut view) = s.get(ADMIN, &format!("{RBAC}/clusterroles/view")).await;
    view["metadata"]["labels"]["changed-by"] = json!("admin");
    let (code, body) = s
        .send(
            ADMIN,
            Method::PUT,
            &format!("{RBAC}/clusterroles/view"),
            &[],
            Some(&view),
        )
        .await;
    assert_eq!(code, 200, "{body}");
    let (_, admin_before) = s
        .get(ADMIN, &format!("{RBAC}/clusterroles/cluster-admin"))
        .await;
    assert_eq!(
        s.send(
            ADMIN,
            Method::DELETE,
            &format!("{RBAC}/clusterroles/edit"),
            &[],
            None
        )
        .await
        .0,
        200
    );
    s.server.ensure_default_namespaces().await.unwrap();
    let (_, view) = s.get(ADMIN, &format!("{RBAC}/clusterroles/view")).await;
    assert_eq!(view["metadata"]["labels"]["changed-by"], "admin");
    assert_eq!(
        s.get(ADMIN, &format!("{RBAC}/clusterroles/edit")).await.0,
        200
    );
    let (_, admin_after) = s
        .get(ADMIN, &format!("{RBAC}/clusterroles/cluster-admin"))
        .await;
    assert_eq!(
        admin_before["metadata"]["resourceVersion"],
        admin_after["metadata"]["resourceVersion"]
    );
    // The token file lies in the server's directory (kept for the test's life).
    assert!(s.dir.path().join("tokens.csv").exists());
}

#[tokio::test]
async fn a_bad_token_file_stops_start_up_naming_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tokens.csv");
    std::fs::write(&path, "good,alice,1\n\"unclosed,bob,2\n").unwrap();
    let mut metric_registry = prometheus_client::registry::Registry::default();
    let metrics = ApiMetrics::register(&mut metric_registry);
    let (_stop, stopped) = watch::channel(false);
    let server = ApiServer::new(
        Arc::new(MemoryStore::new()),
        hami_kinds::registry().unwrap(),
        ServerConfig {
            auth: Some(AuthOptions {
                token_auth_file: Some(path.clone()),
                ..AuthOptions::default()
            }),
            ..ServerConfig::default()
        },
        metrics,
        Arc::new(metric_registry),
        stopped,
    );
    let err = server.ensure_default_namespaces().await.unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "token file {}, line 2: a quoted field is not closed",
            path.display()
        )
    );
}

#[tokio::test]
async fn without_auth_everyone_is_served_as_before() {
    let s = start_with(None, tempfile::tempdir().unwrap()).await;
    assert_eq!(s.get(NOBODY, PODS).await.0, 200);
    assert_eq!(s.post(NOBODY, PODS, &pod("p")).await.0, 201);
    // A token or certificate changes nothing.
    assert_eq!(s.get(Who::Token("whatever"), PODS).await.0, 200);
    // No defaults beyond the two namespaces.
    assert_eq!(s.get(NOBODY, "/api/v1/namespaces/kube-public").await.0, 404);
    let (_, roles) = s.get(NOBODY, &format!("{RBAC}/clusterroles")).await;
    assert_eq!(roles["items"], json!([]));
    // Metrics keep their labels (no user_kind).
    let (code, body) = s.get(NOBODY, "/metrics").await;
    assert_eq!(code, 200);
    let text = body["raw"].as_str().unwrap();
    assert!(
        text.contains(r#"hami_apiserver_requests_total{verb="list",resource="pods",code="200"} 2"#),
        "{text}"
    );
    assert!(!text.contains("user_kind"), "{text}");
    // Reviews answer yes: every request is served.
    let (code, body) = s.post(NOBODY, SSAR, &ssar("delete", "", "nodes", "")).await;
    assert_eq!(
        (code, body["status"]["allowed"].as_bool()),
        (201, Some(true))
    );
    let (code, body) = s
        .post(NOBODY, SSRR, &json!({"spec": {"namespace": "default"}}))
        .await;
    assert_eq!(code, 201);
    assert_eq!(
        body["status"]["resourceRules"][0],
        json!({"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]})
    );
    let (_, groups) = s.get(NOBODY, "/apis").await;
    assert!(
        groups["groups"]
            .as_array()
            .unwrap()
            .iter()
            .any(|g| g["name"] == "authorization.k8s.io")
    );
}

/// A kubeconfig (no credentials: the port says who the client is) for `url`.
fn kubeconfig(dir: &Path, name: &str, url: &str) -> PathBuf {
    let path = dir.join(format!("{name}.kubeconfig"));
    std::fs::write(
        &path,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: t\n  cluster:\n    server: {url}\n\
             users:\n- name: {name}\n  user: {{}}\n\
             contexts:\n- name: t\n  context:\n    cluster: t\n    user: {name}\n    namespace: default\n\
             current-context: t\n"
        ),
    )
    .unwrap();
    path
}

/// `kubectl --kubeconfig KC ARGS` (blocking): (success, stdout, stderr).
fn kubectl(kubeconfig: &Path, cache: &Path, args: &[&str]) -> (bool, String, String) {
    let out = std::process::Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .arg("--cache-dir")
        .arg(cache)
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run kubectl");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn kubectl_present() -> bool {
    std::process::Command::new("kubectl")
        .args(["version", "--client"])
        .output()
        .is_ok_and(|o| o.status.success())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_kubectl_auth_can_i() {
    if !kubectl_present() {
        eprintln!("kubectl not found: skipped");
        return;
    }
    let s = start().await;
    assert_eq!(
        s.post(
            ADMIN,
            &format!("{RBAC}/namespaces/default/rolebindings"),
            &role_binding("default", "alice-view", "view", user_subject("alice")),
        )
        .await
        .0,
        201
    );
    s.eventually(ALICE, PODS, 200).await;
    let url = s.listen_as("alice", &["team-a"]).await;
    let alice = kubeconfig(s.dir.path(), "alice", &url);
    let admin = kubeconfig(
        s.dir.path(),
        "admin",
        &s.listen_as("kubernetes-admin", &["system:masters"]).await,
    );
    let cache = s.dir.path().join("kube-cache");
    let run_as = |kubeconfig: &PathBuf, args: &'static [&'static str]| {
        let (kubeconfig, cache) = (kubeconfig.clone(), cache.clone());
        tokio::task::spawn_blocking(move || kubectl(&kubeconfig, &cache, args))
    };
    let run = |args: &'static [&'static str]| run_as(&alice, args);
    let (ok, out, err) = run(&["auth", "can-i", "list", "deployments"])
        .await
        .unwrap();
    assert!(ok, "{out} {err}");
    assert_eq!(out.trim(), "yes");
    let (ok, out, err) = run(&["auth", "can-i", "create", "deployments"])
        .await
        .unwrap();
    assert!(!ok, "exit 1 on no: {out} {err}");
    assert_eq!(out.trim(), "no");
    let (ok, out, _) = run(&["auth", "can-i", "list", "pods", "-n", "kube-system"])
        .await
        .unwrap();
    assert!(!ok);
    assert_eq!(out.trim(), "no");
    let (ok, out, err) = run(&["auth", "can-i", "--list"]).await.unwrap();
    assert!(ok, "{out} {err}");
    assert!(out.contains("deployments.apps"), "{out}");
    assert!(
        out.contains("selfsubjectaccessreviews.authorization.k8s.io"),
        "{out}"
    );
    let (ok, _, err) = run(&["get", "secrets"]).await.unwrap();
    assert!(!ok);
    assert!(
        err.contains("secrets is forbidden: User \"alice\" cannot list resource \"secrets\" in API group \"\" in the namespace \"default\""),
        "{err}"
    );
    // Impersonation as kubectl sends it (--as): the admin acts as alice.
    let (ok, out, err) = run_as(&admin, &["get", "pods", "--as", "alice"])
        .await
        .unwrap();
    assert!(ok, "{out} {err}");
    let (ok, out, _) = run_as(
        &admin,
        &["auth", "can-i", "create", "pods", "--as", "alice"],
    )
    .await
    .unwrap();
    assert!(!ok);
    assert_eq!(out.trim(), "no");
    let (ok, _, err) = run(&["get", "pods", "--as", "kubernetes-admin"])
        .await
        .unwrap();
    assert!(!ok);
    assert!(
        err.contains("users \"kubernetes-admin\" is forbidden: User \"alice\" cannot impersonate resource \"users\" in API group \"\" at the cluster scope"),
        "{err}"
    );
}
