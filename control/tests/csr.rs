//! The agent's CSR flow against `hami up` (TLS, controllers on), no agent
//! needed: a bootstrap token of cluster `gpu-x` submits a CSR for
//! `system:hami:agent:gpu-x`, the approver approves it, the signer signs
//! it, and the certificate authenticates as that agent, confined to its
//! own cluster; a second request for the same cluster waits for
//! `kubectl certificate approve` (real kubectl, protobuf); a request for
//! another cluster's name is never auto-approved.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::Value;
use support::{Hami, kubectl, kubectl_with};

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// A kubeconfig for the admin's server and CA with `user` (YAML fields of
/// the user entry, indented four spaces).
fn kubeconfig_for(hami: &Hami, dir: &Path, name: &str, user: &str) -> PathBuf {
    let admin = std::fs::read_to_string(hami.kubeconfig()).unwrap();
    let cluster = admin.split("users:").next().unwrap();
    let text = format!(
        "{cluster}users:\n- name: u\n  user:\n{user}contexts:\n- name: c\n  context:\n    cluster: hami\n    user: u\n    namespace: default\ncurrent-context: c\n"
    );
    let path = dir.join(format!("{name}.kubeconfig"));
    std::fs::write(&path, text).unwrap();
    path
}

fn token_for(hami: &Hami, cluster: &str) -> String {
    hami.cli(&["token", "create", "--cluster", cluster])
        .lines()
        .next()
        .unwrap()
        .trim()
        .to_owned()
}

/// A new key and a PEM request for `cn` in `orgs`.
fn request(cn: &str, orgs: &[&str]) -> (rcgen::KeyPair, String) {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, cn);
    for o in orgs {
        params
            .distinguished_name
            .push(rcgen::DnType::OrganizationName, *o);
    }
    let pem = params.serialize_request(&key).unwrap().pem().unwrap();
    (key, pem)
}

fn submit(kubeconfig: &Path, dir: &Path, name: &str, pem: &str) -> (bool, String) {
    let manifest = serde_json::json!({
        "apiVersion": "certificates.k8s.io/v1",
        "kind": "CertificateSigningRequest",
        "metadata": {"name": name},
        "spec": {
            "request": b64(pem.as_bytes()),
            "signerName": "kubernetes.io/kube-apiserver-client",
            "usages": ["digital signature", "key encipherment", "client auth"],
            "username": "system:admin",
            "groups": ["system:masters"],
        },
    });
    let file = dir.join(format!("{name}.json"));
    std::fs::write(&file, manifest.to_string()).unwrap();
    let (ok, out, err) = kubectl_with(kubeconfig, &["create", "-f", file.to_str().unwrap()]);
    (ok, format!("{out}{err}"))
}

fn get_csr(hami: &Hami, name: &str) -> Value {
    let (ok, out, err) = kubectl(hami, &["get", "csr", name, "-o", "json"]);
    assert!(ok, "{err}");
    serde_json::from_str(&out).unwrap()
}

fn conditions(csr: &Value) -> Vec<String> {
    csr.pointer("/status/conditions")
        .and_then(Value::as_array)
        .map(|c| {
            c.iter()
                .map(|c| c["type"].as_str().unwrap_or_default().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// Waits (10 s at most) for the CSR's certificate, PEM.
fn wait_issued(hami: &Hami, name: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let csr = get_csr(hami, name);
        if let Some(cert) = csr.pointer("/status/certificate").and_then(Value::as_str) {
            let pem = base64::engine::general_purpose::STANDARD
                .decode(cert)
                .unwrap();
            return String::from_utf8(pem).unwrap();
        }
        assert!(Instant::now() < deadline, "{name} not issued: {csr:#}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn agent_kubeconfig(
    hami: &Hami,
    dir: &Path,
    name: &str,
    cert: &str,
    key: &rcgen::KeyPair,
) -> PathBuf {
    let user = format!(
        "    client-certificate-data: {}\n    client-key-data: {}\n",
        b64(cert.as_bytes()),
        b64(key.serialize_pem().as_bytes())
    );
    kubeconfig_for(hami, dir, name, &user)
}

fn forbidden(kubeconfig: &Path, args: &[&str]) {
    let (ok, out, err) = kubectl_with(kubeconfig, args);
    let refused = err.contains("Forbidden") || err.contains("forbidden");
    assert!(!ok && refused, "{args:?}: {out}{err}");
}

#[test]
fn bootstrap_token_gets_a_confined_agent_certificate() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let hami = Hami::start_with_args(&dir.join("data"), "127.0.0.1:0", &["--in-memory"]);
    let token = token_for(&hami, "gpu-x");
    let bootstrap = kubeconfig_for(&hami, dir, "boot", &format!("    token: {token}\n"));

    // 1. The first request of gpu-x: stamped, approved, signed.
    let (key, pem) = request("system:hami:agent:gpu-x", &["system:hami:agents"]);
    let (ok, out) = submit(&bootstrap, dir, "agent-gpu-x", &pem);
    assert!(ok, "{out}");
    let cert = wait_issued(&hami, "agent-gpu-x");
    let csr = get_csr(&hami, "agent-gpu-x");
    let id = token.split('.').next().unwrap();
    assert_eq!(csr["spec"]["username"], format!("system:bootstrap:{id}"));
    let groups = csr["spec"]["groups"].to_string();
    assert!(
        groups.contains("system:bootstrappers:hami:cluster:gpu-x"),
        "{groups}"
    );
    assert!(!groups.contains("system:masters"), "{groups}");
    assert_eq!(conditions(&csr), vec!["Approved"]);
    assert_eq!(csr["status"]["conditions"][0]["reason"], "AutoApproved");
    let der = pem::parse(&cert).unwrap().into_contents();
    let identity = hami_control::pki::client_identity(&der).unwrap();
    assert_eq!(identity.user, "system:hami:agent:gpu-x");
    assert_eq!(identity.groups, vec!["system:hami:agents"]);
    let (_, table, _) = kubectl(&hami, &["get", "csr", "agent-gpu-x"]);
    assert!(table.contains("Approved,Issued"), "{table}");

    // 2. The certificate is the agent, confined to gpu-x.
    let agent = agent_kubeconfig(&hami, dir, "agent", &cert, &key);
    kubectl(&hami, &["create", "namespace", "hami-es-gpu-y"]);
    let (ok, out, err) = kubectl_with(
        &agent,
        &["get", "works.work.hami.io", "-n", "hami-es-gpu-x"],
    );
    assert!(ok, "{out}{err}");
    let lease = dir.join("lease.json");
    std::fs::write(
        &lease,
        r#"{"apiVersion":"coordination.k8s.io/v1","kind":"Lease","metadata":{"name":"gpu-x","namespace":"hami-es-gpu-x"},"spec":{"holderIdentity":"agent/gpu-x"}}"#,
    )
    .unwrap();
    let (ok, out, err) = kubectl_with(
        &agent,
        &[
            "apply",
            "--server-side",
            "--field-manager=agent",
            "-f",
            lease.to_str().unwrap(),
        ],
    );
    assert!(ok, "{out}{err}");
    forbidden(
        &agent,
        &["get", "works.work.hami.io", "-n", "hami-es-gpu-y"],
    );
    forbidden(&agent, &["get", "secrets", "-n", "default"]);
    forbidden(&agent, &["get", "clusters.cluster.hami.io", "other"]);

    // 3. A second request for gpu-x (another token) waits for an administrator.
    let token2 = token_for(&hami, "gpu-x");
    let bootstrap2 = kubeconfig_for(&hami, dir, "boot2", &format!("    token: {token2}\n"));
    let (key2, pem2) = request("system:hami:agent:gpu-x", &["system:hami:agents"]);
    let (ok, out) = submit(&bootstrap2, dir, "agent-gpu-x-2", &pem2);
    assert!(ok, "{out}");
    std::thread::sleep(Duration::from_secs(2));
    assert!(conditions(&get_csr(&hami, "agent-gpu-x-2")).is_empty());
    let (ok, out, err) = kubectl(&hami, &["certificate", "approve", "agent-gpu-x-2"]);
    assert!(ok, "{out}{err}");
    let cert2 = wait_issued(&hami, "agent-gpu-x-2");
    let agent2 = agent_kubeconfig(&hami, dir, "agent2", &cert2, &key2);
    let (ok, out, err) = kubectl_with(
        &agent2,
        &["get", "works.work.hami.io", "-n", "hami-es-gpu-x"],
    );
    assert!(ok, "{out}{err}");

    // 4. A token of gpu-x asking for another cluster's name: never auto-approved.
    let (_, pem3) = request("system:hami:agent:other", &["system:hami:agents"]);
    let (ok, out) = submit(&bootstrap, dir, "agent-other", &pem3);
    assert!(ok, "{out}");
    std::thread::sleep(Duration::from_secs(2));
    let other = get_csr(&hami, "agent-other");
    assert!(conditions(&other).is_empty(), "{other:#}");

    // 5. The bootstrap token cannot approve, nor set a certificate.
    let (ok, _, err) = kubectl_with(&bootstrap, &["certificate", "approve", "agent-other"]);
    assert!(!ok && err.contains("forbidden"), "{err}");
}
