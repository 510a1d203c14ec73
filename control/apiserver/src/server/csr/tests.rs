#![allow(clippy::unwrap_used, clippy::expect_used)]

use base64::Engine;
use serde_json::{Value, json};

use super::validation::{object, parse_request, update};
use super::*;

fn request_pem(cn: &str, orgs: &[&str]) -> String {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    let mut dn = rcgen::DistinguishedName::new();
    dn.push(rcgen::DnType::CommonName, cn);
    for o in orgs {
        dn.push(rcgen::DnType::OrganizationName, *o);
    }
    params.distinguished_name = dn;
    params.serialize_request(&key).unwrap().pem().unwrap()
}

fn b64(text: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(text)
}

fn csr() -> Value {
    json!({
        "apiVersion": "certificates.k8s.io/v1",
        "kind": KIND,
        "metadata": {"name": "c1"},
        "spec": {
            "request": b64(&request_pem("system:hami:agent:x", &["system:hami:agents"])),
            "signerName": KUBE_APISERVER_CLIENT,
            "usages": ["digital signature", "client auth"],
            "username": "system:bootstrap:abcdef",
        },
    })
}

fn fields(causes: &[crate::server::status::Cause]) -> Vec<String> {
    causes
        .iter()
        .map(|c| format!("{}: {}", c.field, c.message))
        .collect()
}

fn condition(type_: &str) -> Value {
    json!({"type": type_, "status": "True", "reason": "R", "message": "m"})
}

fn with_conditions(mut csr: Value, types: &[&str]) -> Value {
    csr["status"]["conditions"] = types.iter().map(|t| condition(t)).collect();
    csr
}

#[test]
fn a_valid_request_passes_and_reads_its_organizations() {
    assert!(object(&csr()).is_empty(), "{:?}", object(&csr()));
    let pem = request_pem("u", &["system:masters"]);
    assert_eq!(
        parse_request(pem.as_bytes()).unwrap().organizations,
        vec!["system:masters"]
    );
}

#[test]
fn object_rules_use_kubes_messages() {
    let mut bad = csr();
    bad["spec"]["request"] = json!(b64(
        "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"
    ));
    bad["spec"]["usages"] = json!(["client auth", "client auth", "flying"]);
    bad["spec"]["signerName"] = json!("nodomain");
    bad["spec"]["expirationSeconds"] = json!(599);
    let got = fields(&object(&bad));
    for want in [
        "spec.request: Invalid value: \"<request data>\": PEM block type must be CERTIFICATE REQUEST",
        "spec.usages[1]: Duplicate value: \"client auth\"",
        "spec.signerName: Invalid value: \"nodomain\": must be a fully qualified domain and path of the form 'example.com/signer-name'",
        "spec.expirationSeconds: Invalid value: 599: may not specify a duration less than 600 seconds (10 minutes)",
    ] {
        assert!(got.iter().any(|g| g == want), "{want}\nin {got:#?}");
    }
    assert!(
        got.iter()
            .any(|g| g.starts_with("spec.usages[2]: Unsupported value: \"flying\""))
    );
    let mut empty = csr();
    empty["spec"] = json!({});
    assert_eq!(
        fields(&object(&empty)),
        vec![
            "spec.request: Required value",
            "spec.usages: Required value",
            "spec.signerName: Required value"
        ]
    );
}

#[test]
fn a_request_signed_by_another_key_is_refused() {
    let pem = request_pem("u", &[]);
    // Flip a byte of the signature (the end of the DER).
    let block = x509_parser::pem::parse_x509_pem(pem.as_bytes()).unwrap().1;
    let mut der = block.contents;
    let last = der.len() - 3;
    der[last] ^= 0xff;
    let b = base64::engine::general_purpose::STANDARD.encode(&der);
    let tampered =
        format!("-----BEGIN CERTIFICATE REQUEST-----\n{b}\n-----END CERTIFICATE REQUEST-----\n");
    assert!(parse_request(tampered.as_bytes()).is_err());
}

#[test]
fn conditions_are_true_unique_and_never_both_approved_and_denied() {
    let both = with_conditions(csr(), &["Approved", "Denied", "Approved"]);
    let got = fields(&object(&both));
    assert!(got.contains(&"status.conditions[1].type: Invalid value: \"Denied\": Approved and Denied conditions are mutually exclusive".to_owned()), "{got:#?}");
    assert!(got.contains(&"status.conditions[2].type: Duplicate value: \"Approved\"".to_owned()));
    let mut not_true = with_conditions(csr(), &["Approved"]);
    not_true["status"]["conditions"][0]["status"] = json!("False");
    assert_eq!(
        fields(&object(&not_true)),
        vec![
            "status.conditions[0].status: Unsupported value: \"False\": supported values: \"True\""
        ]
    );
}

#[test]
fn only_approval_adds_approved_and_only_status_sets_the_certificate() {
    let old = csr();
    let approved = with_conditions(csr(), &["Approved"]);
    let forbidden_add =
        "status.conditions: Forbidden: updates may not add a condition of type \"Approved\"";
    for scope in [UpdateScope::Main, UpdateScope::Status] {
        assert_eq!(fields(&update(&old, &approved, scope)), vec![forbidden_add]);
    }
    assert!(update(&old, &approved, UpdateScope::Approval).is_empty());
    // Never removed, whoever writes.
    for scope in [
        UpdateScope::Main,
        UpdateScope::Status,
        UpdateScope::Approval,
    ] {
        let got = fields(&update(&approved, &old, scope));
        assert!(
            got.contains(&"status.conditions: Forbidden: updates may not remove a condition of type \"Approved\"".to_owned()),
            "{scope:?}: {got:?}"
        );
    }
    let mut issued = approved.clone();
    issued["status"]["certificate"] = json!(b64("cert"));
    assert!(update(&approved, &issued, UpdateScope::Status).is_empty());
    assert_eq!(
        fields(&update(&approved, &issued, UpdateScope::Approval)),
        vec!["status.certificate: Forbidden: updates may not set certificate content"]
    );
    let mut reissued = issued.clone();
    reissued["status"]["certificate"] = json!(b64("other"));
    assert_eq!(
        fields(&update(&issued, &reissued, UpdateScope::Status)),
        vec!["status.certificate: Forbidden: updates may not modify existing certificate content"]
    );
}

#[test]
fn status_updates_keep_the_old_approval_and_the_spec() {
    let old = with_conditions(csr(), &["Approved"]);
    let mut new = old.clone();
    new["spec"]["signerName"] = json!("example.com/other");
    new["status"]["conditions"][0]["message"] = json!("rewritten");
    new["status"]["conditions"]
        .as_array_mut()
        .unwrap()
        .push(json!({"type": "Failed", "status": "True", "reason": "SignerFailed"}));
    prepare_update(&old, &mut new, UpdateScope::Status).unwrap();
    assert_eq!(new["spec"], old["spec"]);
    assert_eq!(
        new["status"]["conditions"][0],
        old["status"]["conditions"][0]
    );
    let failed = &new["status"]["conditions"][1];
    assert!(failed["lastUpdateTime"].is_string() && failed["lastTransitionTime"].is_string());
    assert_eq!(condition_text(&new), "Approved,Failed");
}

#[test]
fn approval_keeps_the_certificate_and_stamps_times() {
    let mut old = csr();
    old["status"]["certificate"] = json!(b64("cert"));
    let mut new = with_conditions(csr(), &["Denied"]);
    new["status"]["certificate"] = json!(b64("forged"));
    // The certificate is not a real one, but unchanged it is not judged.
    prepare_update(&old, &mut new, UpdateScope::Approval).unwrap();
    assert_eq!(new["status"]["certificate"], old["status"]["certificate"]);
    assert!(new["status"]["conditions"][0]["lastUpdateTime"].is_string());
    assert_eq!(condition_text(&new), "Denied,Issued");
    assert_eq!(condition_text(&csr()), "Pending");
}

#[test]
fn create_without_a_requester_clears_what_the_client_claimed() {
    let mut c = csr();
    c["spec"]["groups"] = json!(["system:masters"]);
    c["status"] = json!({"conditions": [condition("Approved")]});
    prepare_create(&mut c).unwrap();
    assert!(c["spec"].get("username").is_none() && c["spec"].get("groups").is_none());
    assert!(c.get("status").is_none());
    let mut masters = csr();
    masters["spec"]["request"] = json!(b64(&request_pem("u", &["system:masters"])));
    let err = prepare_create(&mut masters).unwrap_err();
    assert!(
        err.to_string()
            .contains("use of kubernetes.io/kube-apiserver-client signer with system:masters group is not allowed"),
        "{err}"
    );
}
