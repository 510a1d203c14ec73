//! The security boundary of `hami up`, with real clients: kubectl 1.32 and
//! kube-rs over HTTPS, against the certificates, tokens and RBAC a fresh
//! control plane sets up.
//!
//! What the clients do here is what they do against kube-apiserver:
//! kubectl reads the CA and the client pair (or a bearer token) from its
//! kubeconfig, says `error: You must be logged in to the server
//! (Unauthorized)` on a 401 and prints the Status message of a 403;
//! `kubectl auth can-i` posts a SelfSubjectAccessReview and prints yes/no
//! (exit 0/1); `--as` sends Impersonate-User.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

use support::{Hami, https_get, kubeconfig_tls, kubectl, kubectl_ok, kubectl_with};

/// A kubeconfig for the same server and CA as the admin's, with `user`
/// (YAML of the user entry's fields, indented four spaces) instead.
fn kubeconfig_for(hami: &Hami, name: &str, user: &str) -> PathBuf {
    let admin = std::fs::read_to_string(hami.kubeconfig()).unwrap();
    let cluster: String = admin.split("users:").next().unwrap().to_string();
    let text = format!(
        "{cluster}users:\n- name: hami\n  user:\n{user}contexts:\n- name: hami\n  context:\n    cluster: hami\n    user: hami\n    namespace: default\ncurrent-context: hami\n"
    );
    let path = hami.data_dir.join(format!("{name}.kubeconfig"));
    std::fs::write(&path, text).unwrap();
    path
}

/// Retries `probe` (RBAC changes reach the authorizer through a watch)
/// until it answers true, at most 10 s.
fn within_10s(what: &str, mut probe: impl FnMut() -> Result<(), String>) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match probe() {
            Ok(()) => return,
            Err(e) if Instant::now() > deadline => panic!("{what}: {e}"),
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

#[test]
fn kubectl_over_https_anonymous_401_viewer_403_and_can_i() {
    let dir = tempfile::tempdir().unwrap();
    let tokens = dir.path().join("tokens.csv");
    std::fs::write(
        &tokens,
        "viewer-token-0123456789,alice,uid-alice,\"viewers,team-a\"\n",
    )
    .unwrap();
    let data = dir.path().join("hami");
    let tokens_arg = tokens.to_str().unwrap().to_owned();
    let hami = Hami::start_with_args(
        &data,
        "127.0.0.1:0",
        &[
            "--in-memory",
            "--no-controllers",
            "--token-auth-file",
            &tokens_arg,
        ],
    );

    // The admin kubeconfig: HTTPS, hami's CA, a system:masters certificate.
    let kc = std::fs::read_to_string(hami.kubeconfig()).unwrap();
    assert!(kc.contains("server: https://127.0.0.1:"), "{kc}");
    assert!(kc.contains("certificate-authority-data:"), "{kc}");
    assert!(kc.contains("client-certificate-data:"), "{kc}");
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(hami.kubeconfig()).unwrap().permissions(),
    );
    assert_eq!(mode & 0o777, 0o600, "the admin kubeconfig holds a key");
    kubectl_ok(&hami, &["create", "deployment", "web", "--image=nginx"]);
    assert_eq!(
        kubectl_ok(&hami, &["auth", "can-i", "create", "deployments"]).trim(),
        "yes"
    );

    // A token the server does not know: kubectl's 401 message. (A
    // kubeconfig user with no credentials at all makes kubectl prompt for
    // a username; the anonymous requests below go without it.)
    let stranger = kubeconfig_for(&hami, "stranger", "    token: not-a-known-token\n");
    let (ok, _, err) = kubectl_with(&stranger, &["get", "pods"]);
    assert!(!ok);
    assert!(
        err.contains("You must be logged in to the server (Unauthorized)"),
        "{err}"
    );
    // No credentials: 401 on every resource; health and version answer.
    let tls = kubeconfig_tls(&hami.kubeconfig(), false).unwrap();
    for path in [
        "/api/v1/namespaces/default/pods",
        "/apis/apps/v1/deployments",
        "/api/v1/namespaces/kube-system/secrets",
        "/metrics",
        "/apis",
    ] {
        let (code, body) = https_get(&hami.listen, path, &[], tls.clone()).unwrap();
        assert_eq!(code, 401, "{path}: {body}");
        assert!(body.contains("\"reason\":\"Unauthorized\""), "{body}");
    }
    for path in ["/healthz", "/readyz", "/livez", "/version"] {
        let (code, body) = https_get(&hami.listen, path, &[], tls.clone()).unwrap();
        assert_eq!(code, 200, "{path}: {body}");
    }
    // A wrong token is 401 too, never anonymous.
    let (code, _) = https_get(
        &hami.listen,
        "/healthz",
        &[("Authorization", "Bearer not-a-token")],
        tls.clone(),
    )
    .unwrap();
    assert_eq!(code, 401);

    // A token user with no binding: 403 with kube-apiserver's message.
    let viewer = kubeconfig_for(&hami, "viewer", "    token: viewer-token-0123456789\n");
    let (ok, _, err) = kubectl_with(&viewer, &["get", "deployments"]);
    assert!(!ok);
    assert!(
        err.contains(
            "deployments.apps is forbidden: User \"alice\" cannot list resource \"deployments\" in API group \"apps\" in the namespace \"default\""
        ),
        "{err}"
    );
    // Bound to view in default: reads, but writes are 403 and can-i says no.
    kubectl_ok(
        &hami,
        &[
            "create",
            "rolebinding",
            "alice-view",
            "--clusterrole=view",
            "--user=alice",
        ],
    );
    within_10s("alice lists deployments", || {
        let (ok, out, err) = kubectl_with(&viewer, &["get", "deployments", "-o", "name"]);
        (ok && out.contains("deployment.apps/web"))
            .then_some(())
            .ok_or(err)
    });
    let (ok, _, err) = kubectl_with(&viewer, &["create", "deployment", "x", "--image=nginx"]);
    assert!(!ok);
    assert!(
        err.contains(
            "User \"alice\" cannot create resource \"deployments\" in API group \"apps\" in the namespace \"default\""
        ),
        "{err}"
    );
    let (ok, out, _) = kubectl_with(&viewer, &["auth", "can-i", "create", "deployments"]);
    assert!(!ok, "can-i exits 1 on no");
    assert_eq!(out.trim(), "no");
    let (ok, out, _) = kubectl_with(&viewer, &["auth", "can-i", "list", "deployments"]);
    assert!(ok);
    assert_eq!(out.trim(), "yes");
    let (ok, out, _) = kubectl_with(
        &viewer,
        &["auth", "can-i", "list", "deployments", "-n", "kube-system"],
    );
    assert!(!ok, "the RoleBinding is in default only: {out}");
    let (ok, out, err) = kubectl_with(&viewer, &["auth", "can-i", "--list"]);
    assert!(ok, "{err}");
    assert!(out.contains("deployments.apps"), "{out}");
    // Secrets are not in view.
    let (ok, _, err) = kubectl_with(&viewer, &["get", "secrets"]);
    assert!(!ok && err.contains("forbidden"), "{err}");

    // Impersonation: the admin acts as alice; alice may not act as anyone.
    let out = kubectl_ok(
        &hami,
        &["get", "deployments", "--as", "alice", "-o", "name"],
    );
    assert!(out.contains("deployment.apps/web"), "{out}");
    let (ok, _, err) = kubectl(
        &hami,
        &[
            "create",
            "deployment",
            "y",
            "--image=nginx",
            "--as",
            "alice",
        ],
    );
    assert!(!ok && err.contains("User \"alice\" cannot create"), "{err}");
    let (ok, _, err) = kubectl_with(&viewer, &["get", "deployments", "--as", "hami-admin"]);
    assert!(
        !ok && err.contains("cannot impersonate resource \"users\""),
        "{err}"
    );
}

/// kube-rs over TLS: the admin's kubeconfig, and a certificate hami's CA
/// issues for another user and group (CN and O are who it is).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kube_rs_with_client_certificates() {
    use k8s_openapi::api::core::v1::ConfigMap;
    use kube::api::{Api, ListParams, PostParams};

    let dir = tempfile::tempdir().unwrap();
    let hami = Hami::start_with_args(dir.path(), "127.0.0.1:0", &["--no-controllers"]);
    let admin = hami.client().await;
    let cms: Api<ConfigMap> = Api::namespaced(admin.clone(), "default");
    let cm: ConfigMap = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "settings"}, "data": {"a": "1"}
    }))
    .unwrap();
    cms.create(&PostParams::default(), &cm).await.unwrap();

    let pki = hami_control::pki::Pki::load_or_create(dir.path(), &[], SystemTime::now()).unwrap();
    let (cert, key) = pki
        .issue_client(
            "bob",
            &["devs".to_owned(), "ml".to_owned()],
            Duration::from_secs(3600),
            SystemTime::now(),
        )
        .unwrap();
    let b64 = |s: &str| {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(s)
    };
    let bob_kc = kubeconfig_for(
        &hami,
        "bob",
        &format!(
            "    client-certificate-data: {}\n    client-key-data: {}\n",
            b64(&cert),
            b64(&key)
        ),
    );
    let kc = kube::config::Kubeconfig::read_from(&bob_kc).unwrap();
    let config = kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .unwrap();
    let bob = kube::Client::try_from(config).unwrap();
    let bob_cms: Api<ConfigMap> = Api::namespaced(bob.clone(), "default");
    let err = bob_cms.list(&ListParams::default()).await.unwrap_err();
    match err {
        kube::Error::Api(s) => {
            assert_eq!(s.code, 403);
            assert!(
                s.message
                    .contains("User \"bob\" cannot list resource \"configmaps\""),
                "{}",
                s.message
            );
        }
        other => panic!("expected 403, got {other}"),
    }
    // Bind the group ml (an O of bob's certificate) to view.
    kubectl_ok(
        &hami,
        &[
            "create",
            "rolebinding",
            "ml-view",
            "--clusterrole=view",
            "--group=ml",
        ],
    );
    support::eventually("bob reads configmaps through group ml", 10, || async {
        bob_cms
            .list(&ListParams::default())
            .await
            .map_err(|e| e.to_string())
            .and_then(|l| {
                l.items
                    .iter()
                    .any(|c| c.metadata.name.as_deref() == Some("settings"))
                    .then_some(())
                    .ok_or("settings missing".into())
            })
    })
    .await;
    let err = bob_cms
        .create(&PostParams::default(), &cm)
        .await
        .unwrap_err();
    assert!(
        matches!(err, kube::Error::Api(ref s) if s.code == 403),
        "{err}"
    );
}

/// The serving certificate (DER) presented on a fresh connection, verified
/// against the kubeconfig's CA.
fn presented(hami: &Hami) -> Vec<u8> {
    let tls = kubeconfig_tls(&hami.kubeconfig(), false).unwrap();
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let mut conn = rustls::ClientConnection::new(tls, name).unwrap();
    let mut tcp = std::net::TcpStream::connect(&hami.listen).unwrap();
    while conn.is_handshaking() {
        conn.complete_io(&mut tcp).unwrap();
    }
    conn.peer_certificates().unwrap()[0].as_ref().to_vec()
}

/// A serving certificate replaced on disk (here: removed, so hami's CA
/// issues a new one, as it does 30 days before expiry) is served by the
/// running control plane without a restart, and clients keep working.
#[test]
fn a_rotated_serving_certificate_is_picked_up_without_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let hami = Hami::start_with_args(
        dir.path(),
        "127.0.0.1:0",
        &[
            "--in-memory",
            "--no-controllers",
            "--tls-reload-interval",
            "1s",
        ],
    );
    let before = presented(&hami);
    let pki = dir.path().join("pki");
    std::fs::remove_file(pki.join("apiserver.crt")).unwrap();
    std::fs::remove_file(pki.join("apiserver.key")).unwrap();
    within_10s("a new serving certificate", || {
        (presented(&hami) != before)
            .then_some(())
            .ok_or("still the old one".into())
    });
    assert!(pki.join("apiserver.crt").exists(), "re-issued on disk");
    kubectl_ok(&hami, &["get", "namespaces"]);
}

/// `--tls-cert-file`/`--tls-private-key-file`: the operator's certificate
/// is served and the kubeconfig trusts its chain; `--insecure-http` serves
/// plain HTTP with no authentication (said loudly in the log).
#[test]
fn bring_your_own_certificate_and_insecure_http() {
    let dir = tempfile::tempdir().unwrap();
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "operator-ca");
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let key = rcgen::KeyPair::generate().unwrap();
    let params =
        rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
            .unwrap();
    let cert = params.signed_by(&key, &issuer).unwrap();
    let cert_file = dir.path().join("serving.crt");
    let key_file = dir.path().join("serving.key");
    std::fs::write(&cert_file, format!("{}{}", cert.pem(), ca_cert.pem())).unwrap();
    std::fs::write(&key_file, key.serialize_pem()).unwrap();
    let data = dir.path().join("hami");
    let (c, k) = (
        cert_file.to_str().unwrap().to_owned(),
        key_file.to_str().unwrap().to_owned(),
    );
    let hami = Hami::start_with_args(
        &data,
        "127.0.0.1:0",
        &[
            "--in-memory",
            "--no-controllers",
            "--tls-cert-file",
            &c,
            "--tls-private-key-file",
            &k,
        ],
    );
    kubectl_ok(&hami, &["get", "namespaces"]);
    let presented_der = presented(&hami);
    assert_eq!(
        presented_der,
        cert.der().to_vec(),
        "the operator's certificate"
    );
    drop(hami);

    let plain = dir.path().join("plain");
    let hami = Hami::start_with_args(
        &plain,
        "127.0.0.1:0",
        &["--in-memory", "--no-controllers", "--insecure-http"],
    );
    assert!(hami.base_url().starts_with("http://"));
    kubectl_ok(&hami, &["create", "configmap", "x", "--from-literal=a=b"]);
    let (code, _) =
        support::http_get(&hami.listen, "/api/v1/namespaces/default/configmaps").unwrap();
    assert_eq!(code, 200, "no authentication with --insecure-http");
}

/// `hami token create`: a bootstrap token bound to one cluster name; the
/// anonymous `kube-public/cluster-info` carries the control plane's URL and
/// CA with the token's detached signature (kube's bootstrap signer), which
/// checks out with the token and with nothing else; the token
/// authenticates as `system:bootstrap:<id>` in its groups until it is
/// deleted (revoked) or expires, then it is 401.
#[test]
fn bootstrap_tokens_sign_cluster_info_and_stop_when_revoked_or_expired() {
    use base64::Engine as _;
    let dir = tempfile::tempdir().unwrap();
    let hami = Hami::start_with_args(
        dir.path(),
        "127.0.0.1:0",
        &["--in-memory", "--no-controllers"],
    );
    let hami_cmd = |args: &[&str]| hami.cli(args);
    let created = hami_cmd(&["token", "create", "--cluster", "east"]);
    let token = created.lines().next().unwrap().trim().to_owned();
    let (id, secret) = token.split_once('.').unwrap();
    assert_eq!((id.len(), secret.len()), (6, 16), "{created}");
    let hash_line = created
        .lines()
        .find_map(|l| l.trim().strip_prefix("ca-cert-hash:"))
        .unwrap()
        .trim()
        .to_owned();
    let own_hash = hami_control::pki::Pki::load_or_create(dir.path(), &[], SystemTime::now())
        .unwrap()
        .ca_cert_hash();
    assert_eq!(hash_line, own_hash);
    let listed = hami_cmd(&["token", "list"]);
    assert!(listed.contains(id) && listed.contains("east"), "{listed}");
    assert!(
        !listed.contains(secret),
        "list never shows secrets: {listed}"
    );

    // cluster-info, read anonymously (no client certificate, no token).
    let anonymous = kubeconfig_tls(&hami.kubeconfig(), false).unwrap();
    let jws_key = format!("jws-kubeconfig-{id}");
    let mut info = serde_json::Value::Null;
    within_10s("cluster-info signed for the new token", || {
        let (code, body) = https_get(
            &hami.listen,
            "/api/v1/namespaces/kube-public/configmaps/cluster-info",
            &[],
            anonymous.clone(),
        )?;
        info = serde_json::from_str(&body).map_err(|e| e.to_string())?;
        (code == 200 && info["data"][&jws_key].is_string())
            .then_some(())
            .ok_or(format!("{code}: {body}"))
    });
    let kubeconfig = info["data"]["kubeconfig"].as_str().unwrap();
    assert!(
        kubeconfig.contains(&format!("server: https://{}", hami.listen)),
        "{kubeconfig}"
    );
    let signature = info["data"][&jws_key].as_str().unwrap();
    use hami_control::apiserver::auth::bootstrap;
    assert!(bootstrap::signature_valid(
        signature, kubeconfig, id, secret
    ));
    assert!(!bootstrap::signature_valid(
        signature,
        kubeconfig,
        id,
        "0000000000000000"
    ));
    // The CA inside is the one the hash names.
    let ca_b64 = kubeconfig
        .lines()
        .find_map(|l| l.trim().strip_prefix("certificate-authority-data:"))
        .unwrap()
        .trim();
    let ca = String::from_utf8(
        base64::engine::general_purpose::STANDARD
            .decode(ca_b64)
            .unwrap(),
    )
    .unwrap();
    assert_eq!(
        hami_control::pki::ca_cert_hash_of_pem(&ca).unwrap(),
        own_hash
    );
    // Anything else stays closed to anonymous requests.
    let (code, _) = https_get(
        &hami.listen,
        "/api/v1/namespaces/kube-public/configmaps",
        &[],
        anonymous.clone(),
    )
    .unwrap();
    assert_eq!(code, 401);

    // The token authenticates, with its cluster's group.
    let bearer = format!("Bearer {token}");
    let review = |bearer: &str| {
        https_get(
            &hami.listen,
            "/apis/authorization.k8s.io/v1",
            &[("Authorization", bearer)],
            anonymous.clone(),
        )
        .unwrap()
        .0
    };
    assert_eq!(
        review(&bearer),
        200,
        "system:bootstrappers are authenticated (discovery)"
    );
    let tokened = kubeconfig_for(&hami, "bootstrap", &format!("    token: {token}\n"));
    let (ok, out, err) = kubectl_with(&tokened, &["auth", "can-i", "--list"]);
    assert!(ok, "{err}");
    assert!(out.contains("selfsubjectaccessreviews"), "{out}");

    // Revoked: deleting the Secret ends it at once, and its signature goes.
    hami_cmd(&["token", "delete", id]);
    assert_eq!(review(&bearer), 401);
    within_10s("the revoked token's signature removed", || {
        let (_, body) = https_get(
            &hami.listen,
            "/api/v1/namespaces/kube-public/configmaps/cluster-info",
            &[],
            anonymous.clone(),
        )?;
        (!body.contains(&jws_key)).then_some(()).ok_or(body)
    });

    // Expired: a 2 s token works, then is 401 and unsigned.
    let created = hami_cmd(&["token", "create", "--cluster", "west", "--ttl", "2s"]);
    let short = created.lines().next().unwrap().trim().to_owned();
    let short_bearer = format!("Bearer {short}");
    assert_eq!(review(&short_bearer), 200);
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(review(&short_bearer), 401, "expired");
    let listed = hami_cmd(&["token", "list"]);
    assert!(listed.contains("expired"), "{listed}");
}
