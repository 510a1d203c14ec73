//! ServiceAccount tokens over real loopback HTTP: the TokenRequest
//! subresource (`serviceaccounts/<name>/token`) validated and answered as
//! kube-apiserver's `TokenREST` answers, authorized by RBAC `create` on
//! `serviceaccounts/token`, listed by discovery, read from JSON and from
//! the protobuf body kubectl sends; and the tokens it issues accepted as
//! bearer tokens (RBAC on `system:serviceaccount:<ns>:<name>`, the
//! `user_kind="serviceaccount"` metric label) until their audience, their
//! ServiceAccount or their bound object says otherwise.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use hami_apiserver::server::auth::AuthOptions;
use hami_apiserver::server::auth::service_account::keys::{SigningKey, pem_encode};
use hami_apiserver::server::auth::service_account::{DEFAULT_ISSUER, ServiceAccountOptions};
use hami_apiserver::server::{RunningServer, ServerConfig, hami_kinds, spawn};
use hami_store::{MemoryStore, Store};
use http::Method;
use kube::client::Body;
use prost::Message as _;
use serde_json::{Value, json};

const ADMIN: &str = "admin-token";
const ALICE: &str = "alice-token";
const TOKEN: &str = "/api/v1/namespaces/default/serviceaccounts/robot/token";

struct Server {
    running: RunningServer,
    client: kube::Client,
    _dir: tempfile::TempDir,
}

async fn start() -> Server {
    let dir = tempfile::tempdir().unwrap();
    let tokens = dir.path().join("tokens.csv");
    std::fs::write(
        &tokens,
        "admin-token,admin,uid-admin,system:masters\nalice-token,alice,uid-alice\n",
    )
    .unwrap();
    let key = dir.path().join("sa.key");
    let pkcs8 = SigningKey::generate_pkcs8().unwrap();
    std::fs::write(&key, pem_encode("PRIVATE KEY", &pkcs8)).unwrap();
    let config = ServerConfig {
        validator: Some(hami_kinds::validator()),
        auth: Some(AuthOptions {
            token_auth_file: Some(tokens),
            service_accounts: Some(ServiceAccountOptions {
                issuers: vec![DEFAULT_ISSUER.to_owned()],
                signing_key_file: key,
                key_files: Vec::new(),
                api_audiences: Vec::new(),
                max_token_expiration: Some(Duration::from_secs(7200)),
            }),
            ..AuthOptions::default()
        }),
        ..ServerConfig::default()
    };
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let running = spawn(listener, store, hami_kinds::registry().unwrap(), config)
        .await
        .unwrap();
    let client = kube::Client::try_from(kube::Config::new(running.url().parse().unwrap())).unwrap();
    Server {
        running,
        client,
        _dir: dir,
    }
}

impl Server {
    async fn send(
        &self,
        token: &str,
        method: Method,
        path: &str,
        body: Option<(&str, Vec<u8>)>,
    ) -> (u16, Value) {
        let mut request = http::Request::builder()
            .method(method)
            .uri(path)
            .header("authorization", format!("Bearer {token}"));
        let bytes = match body {
            Some((content_type, bytes)) => {
                request = request.header("content-type", content_type);
                bytes
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

    async fn get(&self, token: &str, path: &str) -> (u16, Value) {
        self.send(token, Method::GET, path, None).await
    }

    async fn post(&self, token: &str, path: &str, body: &Value) -> (u16, Value) {
        let bytes = body.to_string().into_bytes();
        self.send(token, Method::POST, path, Some(("application/json", bytes)))
            .await
    }

    async fn create(&self, path: &str, body: Value) -> Value {
        let (code, created) = self.post(ADMIN, path, &body).await;
        assert_eq!(code, 201, "{path}: {created}");
        created
    }

    /// Retries `GET path` with `token` until it answers `want` (RBAC writes
    /// reach the authorizer through a watch), at most 5 s.
    async fn eventually(&self, token: &str, path: &str, want: u16) -> Value {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let (code, body) = self.get(token, path).await;
            if code == want {
                return body;
            }
            assert!(Instant::now() < deadline, "GET {path}: {code} {body}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

fn request(spec: Value) -> Value {
    json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": spec})
}

fn claims(token: &str) -> Value {
    use base64::Engine as _;
    let payload = token.split('.').nth(1).unwrap();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

fn seconds(rfc3339: &Value) -> i64 {
    let at: k8s_openapi::jiff::Timestamp = rfc3339.as_str().unwrap().parse().unwrap();
    at.as_second()
}

async fn with_objects() -> (Server, Value) {
    let s = start().await;
    let sa = s
        .create(
            "/api/v1/namespaces/default/serviceaccounts",
            json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "robot"}}),
        )
        .await;
    s.create(
        "/api/v1/namespaces/default/secrets",
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}}),
    )
    .await;
    for (pod, account) in [("p", "robot"), ("q", "default")] {
        s.create(
            "/api/v1/namespaces/default/pods",
            json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": pod},
                   "spec": {"serviceAccountName": account,
                            "containers": [{"name": "c", "image": "nginx"}]}}),
        )
        .await;
    }
    (s, sa)
}

#[tokio::test]
async fn token_requests_are_defaulted_capped_and_signed() {
    let (s, sa) = with_objects().await;
    let (code, answer) = s.post(ADMIN, TOKEN, &request(json!({}))).await;
    assert_eq!(code, 201, "{answer}");
    assert_eq!(answer["kind"], "TokenRequest");
    assert_eq!(answer["apiVersion"], "authentication.k8s.io/v1");
    assert_eq!(answer["metadata"]["name"], "robot");
    assert_eq!(answer["metadata"]["namespace"], "default");
    assert_eq!(
        answer["spec"],
        json!({"audiences": [DEFAULT_ISSUER], "expirationSeconds": 3600})
    );
    let created = seconds(&answer["metadata"]["creationTimestamp"]);
    assert_eq!(
        seconds(&answer["status"]["expirationTimestamp"]),
        created + 3600
    );
    let token = answer["status"]["token"].as_str().unwrap();
    let c = claims(token);
    assert_eq!(c["iss"], DEFAULT_ISSUER);
    assert_eq!(c["sub"], "system:serviceaccount:default:robot");
    assert_eq!(c["exp"], created + 3600);
    assert_eq!(
        c["kubernetes.io"]["serviceaccount"],
        json!({"name": "robot", "uid": sa["metadata"]["uid"]})
    );
    // Longer than --service-account-max-token-expiration (2h): cut to it.
    let asked = request(json!({"expirationSeconds": 86400, "audiences": ["a", "b"]}));
    let (code, answer) = s.post(ADMIN, TOKEN, &asked).await;
    assert_eq!(code, 201, "{answer}");
    assert_eq!(
        answer["spec"],
        json!({"audiences": ["a", "b"], "expirationSeconds": 7200})
    );
    assert_eq!(
        claims(answer["status"]["token"].as_str().unwrap())["aud"],
        json!(["a", "b"])
    );
    // Bound to a Secret and to a Pod running as the ServiceAccount.
    for (kind, name) in [("Secret", "s"), ("Pod", "p")] {
        let asked =
            request(json!({"boundObjectRef": {"kind": kind, "apiVersion": "v1", "name": name}}));
        let (code, answer) = s.post(ADMIN, TOKEN, &asked).await;
        assert_eq!(code, 201, "{kind}: {answer}");
        assert_eq!(answer["spec"]["boundObjectRef"]["name"], name);
        let c = claims(answer["status"]["token"].as_str().unwrap());
        let claim = kind.to_lowercase();
        assert_eq!(c["kubernetes.io"][&claim]["name"], name, "{c}");
        assert!(
            !c["kubernetes.io"][&claim]["uid"]
                .as_str()
                .unwrap()
                .is_empty()
        );
    }
}

#[tokio::test]
async fn invalid_token_requests_get_kubes_answers() {
    let (s, _) = with_objects().await;
    let bound = |kind: &str, name: &str, uid: &str| {
        request(
            json!({"boundObjectRef": {"kind": kind, "apiVersion": "v1", "name": name, "uid": uid}}),
        )
    };
    let cases = [
        (
            TOKEN,
            request(json!({"expirationSeconds": 599})),
            422,
            "TokenRequest.authentication.k8s.io \"\" is invalid: [spec.expirationSeconds: Invalid value: 599: may not specify a duration less than 10 minutes]",
        ),
        (
            TOKEN,
            request(json!({"expirationSeconds": 4_294_967_297_i64})),
            422,
            "may not specify a duration larger than 2^32 seconds",
        ),
        (
            TOKEN,
            json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                   "metadata": {"name": "other"}, "spec": {}}),
            422,
            "metadata.name: Invalid value: \"other\": must match the service account name if specified",
        ),
        (
            TOKEN,
            json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                   "metadata": {"namespace": "kube-system"}, "spec": {}}),
            422,
            "must match the service account namespace if specified",
        ),
        (
            "/api/v1/namespaces/default/serviceaccounts/ghost/token",
            request(json!({})),
            404,
            "serviceaccounts \"ghost\" not found",
        ),
        (
            TOKEN,
            bound("Secret", "nope", ""),
            404,
            "secrets \"nope\" not found",
        ),
        (
            TOKEN,
            bound("Secret", "s", "not-its-uid"),
            409,
            "the UID in the bound object reference (not-its-uid) does not match the UID in record",
        ),
        (
            TOKEN,
            bound("Pod", "q", ""),
            400,
            "cannot bind token for serviceaccount \"robot\" to pod running with serviceaccount \"default\"",
        ),
        (
            TOKEN,
            bound("ConfigMap", "c", ""),
            400,
            "cannot bind token to object of type /v1, Kind=ConfigMap",
        ),
        (
            TOKEN,
            json!({"apiVersion": "v1", "kind": "Pod"}),
            400,
            "not a TokenRequest",
        ),
        (
            TOKEN,
            request(json!({"expirationSeconds": "3600"})),
            400,
            "spec.expirationSeconds must be an integer",
        ),
    ];
    for (path, body, code, message) in cases {
        let (got, answer) = s.post(ADMIN, path, &body).await;
        assert_eq!(got, code, "{body}: {answer}");
        let text = answer["message"].as_str().unwrap_or_default();
        assert!(text.contains(message), "{body}: {answer}");
    }
    // Only POST.
    let (code, _) = s.get(ADMIN, TOKEN).await;
    assert_eq!(code, 405);
    // RBAC: alice may not create serviceaccounts/token.
    let (code, answer) = s.post(ALICE, TOKEN, &request(json!({}))).await;
    assert_eq!(code, 403, "{answer}");
    let message = answer["message"].as_str().unwrap();
    assert!(
        message.contains(
            "User \"alice\" cannot create resource \"serviceaccounts/token\" in API group \"\" in the namespace \"default\""
        ),
        "{message}"
    );
}

/// What kubectl 1.32's `kubectl create token robot --duration 20m` posts
/// (client-go's protobuf serializer: `Content-Type: application/vnd.
/// kubernetes.protobuf`, the `k8s\0` envelope around the TokenRequest).
fn kubectl_protobuf_body() -> Vec<u8> {
    use k8s_pb::api::authentication::v1 as pb;
    use k8s_pb::apimachinery::pkg::runtime::{TypeMeta, Unknown};
    let request = pb::TokenRequest {
        metadata: Some(Default::default()),
        spec: Some(pb::TokenRequestSpec {
            audiences: Vec::new(),
            expiration_seconds: Some(1200),
            bound_object_ref: None,
        }),
        status: Some(Default::default()),
    };
    let unknown = Unknown {
        type_meta: Some(TypeMeta {
            api_version: Some("authentication.k8s.io/v1".to_owned()),
            kind: Some("TokenRequest".to_owned()),
        }),
        raw: Some(request.encode_to_vec()),
        content_encoding: Some(String::new()),
        content_type: Some(String::new()),
    };
    let mut body = b"k8s\0".to_vec();
    body.extend(unknown.encode_to_vec());
    body
}

#[tokio::test]
async fn issued_tokens_authenticate_the_service_account() {
    let (s, sa) = with_objects().await;
    // The protobuf body kubectl sends.
    let body = Some((
        "application/vnd.kubernetes.protobuf",
        kubectl_protobuf_body(),
    ));
    let (code, answer) = s.send(ADMIN, Method::POST, TOKEN, body).await;
    assert_eq!(code, 201, "{answer}");
    assert_eq!(answer["spec"]["expirationSeconds"], 1200);
    let token = answer["status"]["token"].as_str().unwrap().to_owned();
    // Authenticated, but nothing is allowed yet.
    let pods = "/api/v1/namespaces/default/pods";
    let (code, answer) = s.get(&token, pods).await;
    assert_eq!(code, 403, "{answer}");
    assert!(
        answer["message"]
            .as_str()
            .unwrap()
            .contains("User \"system:serviceaccount:default:robot\" cannot list"),
        "{answer}"
    );
    // view in default, through the ServiceAccount subject.
    s.create(
        "/apis/rbac.authorization.k8s.io/v1/namespaces/default/rolebindings",
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
               "metadata": {"name": "robot-view"},
               "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view"},
               "subjects": [{"kind": "ServiceAccount", "name": "robot", "namespace": "default"}]}),
    )
    .await;
    s.eventually(&token, pods, 200).await;
    let (code, _) = s.get(&token, "/api/v1/namespaces/default/secrets").await;
    assert_eq!(code, 403);
    // A token for another audience is 401.
    let (_, answer) = s
        .post(ADMIN, TOKEN, &request(json!({"audiences": ["vault"]})))
        .await;
    let vault = answer["status"]["token"].as_str().unwrap();
    let (code, _) = s.get(vault, pods).await;
    assert_eq!(code, 401);
    // A token bound to the Secret stops with it.
    let asked =
        request(json!({"boundObjectRef": {"kind": "Secret", "apiVersion": "v1", "name": "s"}}));
    let (_, answer) = s.post(ADMIN, TOKEN, &asked).await;
    let bound = answer["status"]["token"].as_str().unwrap().to_owned();
    s.eventually(&bound, pods, 200).await;
    let (code, _) = s
        .send(
            ADMIN,
            Method::DELETE,
            "/api/v1/namespaces/default/secrets/s",
            None,
        )
        .await;
    assert_eq!(code, 200);
    s.eventually(&bound, pods, 401).await;
    // Discovery lists the subresource, as kubectl expects it.
    let (code, core) = s.get(ADMIN, "/api/v1").await;
    assert_eq!(code, 200);
    let entry = core["resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "serviceaccounts/token")
        .cloned();
    assert_eq!(
        entry,
        Some(
            json!({"name": "serviceaccounts/token", "singularName": "", "namespaced": true,
                    "group": "authentication.k8s.io", "version": "v1",
                    "kind": "TokenRequest", "verbs": ["create"]})
        )
    );
    // The metric label.
    let (_, metrics) = s.get(ADMIN, "/metrics").await;
    let text = metrics["raw"].as_str().unwrap();
    assert!(
        text.contains(
            r#"hami_apiserver_requests_total{verb="list",resource="pods",code="200",user_kind="serviceaccount"}"#
        ),
        "{text}"
    );
    // Deleted: the token is 401 at once; recreated: still 401 (new uid).
    let sa_path = "/api/v1/namespaces/default/serviceaccounts/robot";
    let (code, _) = s.send(ADMIN, Method::DELETE, sa_path, None).await;
    assert_eq!(code, 200);
    let (code, _) = s.get(&token, pods).await;
    assert_eq!(code, 401);
    let again = s
        .create(
            "/api/v1/namespaces/default/serviceaccounts",
            json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "robot"}}),
        )
        .await;
    assert_ne!(again["metadata"]["uid"], sa["metadata"]["uid"]);
    let (code, _) = s.get(&token, pods).await;
    assert_eq!(code, 401);
    s.running.shutdown().await.unwrap();
}
