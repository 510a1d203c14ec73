//! ServiceAccount tokens end to end: `hami up` creates its signing key
//! (`DATA_DIR/pki/sa.key`, 0600, and `sa.pub`, kubeadm's names); the real
//! kubectl 1.32 asks for tokens with `kubectl create token` (which posts a
//! TokenRequest to `serviceaccounts/<name>/token` as protobuf, `Content-Type:
//! application/vnd.kubernetes.protobuf`, and prints `status.token`;
//! `--duration` sets `spec.expirationSeconds`, `--audience` adds to
//! `spec.audiences`, a duration under 10 minutes is kube's 422); kube-rs
//! over TLS with such a token as its bearer token is the ServiceAccount,
//! allowed what its RoleBinding gives, forbidden the rest, and refused
//! (401) as soon as the ServiceAccount is deleted.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::os::unix::fs::PermissionsExt as _;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use base64::Engine as _;
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::Api;
use kube::api::{ListParams, PostParams};
use serde_json::{Value, json};
use support::{Hami, kubectl_ok, kubectl_with};

const ISSUER: &str = "https://kubernetes.default.svc.cluster.local";

/// The admin kubeconfig's server and CA with `token` as the user.
fn token_kubeconfig(hami: &Hami, name: &str, token: &str) -> PathBuf {
    let admin = std::fs::read_to_string(hami.kubeconfig()).unwrap();
    let cluster = admin.split("users:").next().unwrap();
    let text = format!(
        "{cluster}users:\n- name: hami\n  user:\n    token: {token}\ncontexts:\n- name: hami\n  context:\n    cluster: hami\n    user: hami\n    namespace: team\ncurrent-context: hami\n"
    );
    let path = hami.data_dir.join(format!("{name}.kubeconfig"));
    std::fs::write(&path, text).unwrap();
    path
}

async fn client_with(kubeconfig: &PathBuf) -> kube::Client {
    let kc = kube::config::Kubeconfig::read_from(kubeconfig).unwrap();
    let config = kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .unwrap();
    assert!(config.auth_info.token.is_some());
    assert!(config.auth_info.client_certificate_data.is_none());
    kube::Client::try_from(config).unwrap()
}

fn claims(token: &str) -> Value {
    let payload = token.split('.').nth(1).unwrap();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

fn code(err: kube::Error) -> u16 {
    match err {
        kube::Error::Api(status) => status.code,
        other => panic!("expected an API error, got {other}"),
    }
}

#[tokio::test]
async fn kubectl_create_token_then_kube_rs_as_the_service_account() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("hami");
    let hami = Hami::start_with_args(&data, "127.0.0.1:0", &["--in-memory", "--no-controllers"]);

    // The signing key, as kubeadm lays it out.
    let key = data.join("pki/sa.key");
    let mode = std::fs::metadata(&key).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let key_text = std::fs::read_to_string(&key).unwrap();
    assert!(key_text.starts_with("-----BEGIN PRIVATE KEY-----"));
    let public = std::fs::read_to_string(data.join("pki/sa.pub")).unwrap();
    assert!(public.starts_with("-----BEGIN PUBLIC KEY-----"));

    kubectl_ok(&hami, &["create", "namespace", "team"]);
    kubectl_ok(&hami, &["-n", "team", "create", "serviceaccount", "robot"]);
    kubectl_ok(
        &hami,
        &[
            "-n",
            "team",
            "create",
            "rolebinding",
            "robot-view",
            "--clusterrole=view",
            "--serviceaccount=team:robot",
        ],
    );
    kubectl_ok(&hami, &["-n", "team", "create", "secret", "generic", "s"]);

    // `kubectl create token`: the token alone on stdout.
    let token = kubectl_ok(&hami, &["-n", "team", "create", "token", "robot"])
        .trim()
        .to_owned();
    let c = claims(&token);
    assert_eq!(c["iss"], ISSUER);
    assert_eq!(c["sub"], "system:serviceaccount:team:robot");
    assert_eq!(c["aud"], json!([ISSUER]));
    assert_eq!(
        c["exp"].as_i64().unwrap() - c["iat"].as_i64().unwrap(),
        3600
    );
    // --duration and --audience.
    let other = kubectl_ok(
        &hami,
        &[
            "-n",
            "team",
            "create",
            "token",
            "robot",
            "--duration",
            "20m",
            "--audience",
            "vault",
            "--audience",
            ISSUER,
        ],
    );
    let c = claims(other.trim());
    assert_eq!(
        c["exp"].as_i64().unwrap() - c["iat"].as_i64().unwrap(),
        1200
    );
    assert_eq!(c["aud"], json!(["vault", ISSUER]));
    // Under 10 minutes: kube's validation message.
    let (ok, _, err) = kubectl_with(
        &hami.kubeconfig(),
        &["-n", "team", "create", "token", "robot", "--duration", "5m"],
    );
    assert!(!ok);
    assert!(
        err.contains("may not specify a duration less than 10 minutes"),
        "{err}"
    );
    // No such ServiceAccount.
    let (ok, _, err) = kubectl_with(
        &hami.kubeconfig(),
        &["-n", "team", "create", "token", "ghost"],
    );
    assert!(!ok);
    assert!(err.contains("serviceaccounts \"ghost\" not found"), "{err}");

    // kube-rs over TLS, hami's CA, the token as bearer.
    let kubeconfig = token_kubeconfig(&hami, "robot", &token);
    let robot = client_with(&kubeconfig).await;
    let pods: Api<Pod> = Api::namespaced(robot.clone(), "team");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        // The RoleBinding reaches the authorizer through a watch.
        match pods.list(&ListParams::default()).await {
            Ok(list) => {
                assert!(list.items.is_empty());
                break;
            }
            Err(e) if Instant::now() > deadline => panic!("list pods: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    let pod: Pod = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
        "spec": {"containers": [{"name": "c", "image": "nginx"}]}
    }))
    .unwrap();
    let err = pods.create(&PostParams::default(), &pod).await.unwrap_err();
    assert_eq!(code(err), 403);
    let secrets: Api<Secret> = Api::namespaced(robot.clone(), "team");
    let err = secrets.list(&ListParams::default()).await.unwrap_err();
    assert_eq!(code(err), 403);
    // Another namespace: no binding there.
    let default_pods: Api<Pod> = Api::namespaced(robot.clone(), "default");
    let err = default_pods.list(&ListParams::default()).await.unwrap_err();
    assert_eq!(code(err), 403);
    // kubectl with the same token says who it is.
    let (ok, _, err) = kubectl_with(&kubeconfig, &["get", "secrets"]);
    assert!(!ok);
    assert!(
        err.contains("User \"system:serviceaccount:team:robot\" cannot list resource \"secrets\""),
        "{err}"
    );
    // The requests are counted as a ServiceAccount's.
    let metrics = hami.metrics();
    assert!(
        metrics.contains(
            r#"hami_apiserver_requests_total{verb="list",resource="pods",code="200",user_kind="serviceaccount"}"#
        ),
        "{metrics}"
    );

    // Deleted: the same token is 401 at once.
    kubectl_ok(&hami, &["-n", "team", "delete", "serviceaccount", "robot"]);
    let err = pods.list(&ListParams::default()).await.unwrap_err();
    assert_eq!(code(err), 401);
}
