use super::*;
use crate::join::testing::{TestCa, cluster_info_data, cluster_info_kubeconfig, token};

fn pin(ca: &TestCa) -> CaCertHash {
    CaCertHash::of_spki(&ca.spki)
}

#[test]
fn a_signed_kubeconfig_with_the_pinned_ca_is_trusted() {
    let ca = TestCa::new();
    let kc = cluster_info_kubeconfig("https://10.0.0.1:6443", &ca.cert_pem);
    let data = cluster_info_data(&kc, &token());
    let other: CaCertHash = format!("sha256:{}", "00".repeat(32)).parse().unwrap();
    // Any of several pins may match.
    let info = verify(&data, &token(), &[other, pin(&ca)]).unwrap();
    assert_eq!(info.server, "https://10.0.0.1:6443");
    assert_eq!(info.ca_pem, ca.cert_pem);
}

#[test]
fn a_missing_signature_names_the_token_id() {
    let ca = TestCa::new();
    let kc = cluster_info_kubeconfig("https://h:1", &ca.cert_pem);
    let mut data = cluster_info_data(&kc, &token());
    data.remove("jws-kubeconfig-abcdef");
    let err = verify(&data, &token(), &[pin(&ca)]).unwrap_err();
    assert!(matches!(err, DiscoveryError::NoSignature { .. }), "{err}");
    assert!(err.to_string().contains("\"abcdef\""), "{err}");
}

#[test]
fn a_wrong_secret_or_a_tampered_kubeconfig_is_refused() {
    let ca = TestCa::new();
    let kc = cluster_info_kubeconfig("https://h:1", &ca.cert_pem);
    let signed_by_other: BootstrapToken = "abcdef.ffffffffffffffff".parse().unwrap();
    let data = cluster_info_data(&kc, &signed_by_other);
    let err = verify(&data, &token(), &[pin(&ca)]).unwrap_err();
    assert!(matches!(err, DiscoveryError::BadSignature { .. }), "{err}");
    assert!(err.to_string().contains("\"abcdef\""), "{err}");

    let mut data = cluster_info_data(&kc, &token());
    let evil = cluster_info_kubeconfig("https://evil:1", &ca.cert_pem);
    data.insert("kubeconfig".into(), evil);
    let err = verify(&data, &token(), &[pin(&ca)]).unwrap_err();
    assert!(matches!(err, DiscoveryError::BadSignature { .. }), "{err}");
}

#[test]
fn a_ca_that_is_not_pinned_names_both_hashes() {
    let ca = TestCa::new();
    let kc = cluster_info_kubeconfig("https://h:1", &ca.cert_pem);
    let data = cluster_info_data(&kc, &token());
    let wrong: CaCertHash = format!("sha256:{}", "ab".repeat(32)).parse().unwrap();
    let err = verify(&data, &token(), std::slice::from_ref(&wrong)).unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, DiscoveryError::CaMismatch { .. }), "{text}");
    assert!(text.contains(&wrong.to_string()), "{text}");
    assert!(text.contains(&pin(&ca).to_string()), "{text}");
}

#[test]
fn the_kubeconfig_must_name_one_https_cluster_with_a_ca() {
    let ca = TestCa::new();
    let http = cluster_info_kubeconfig("http://h:1", &ca.cert_pem);
    let two = format!(
        "{}- name: b\n  cluster:\n    server: https://b:1\n",
        cluster_info_kubeconfig("https://h:1", &ca.cert_pem)
    );
    let no_ca = "clusters:\n- name: a\n  cluster:\n    server: https://a:1\n".to_owned();
    for kc in [http, two, no_ca] {
        let data = cluster_info_data(&kc, &token());
        let err = verify(&data, &token(), &[pin(&ca)]).unwrap_err();
        assert!(matches!(err, DiscoveryError::Kubeconfig(_)), "{err}");
    }
    let err = verify(&BTreeMap::new(), &token(), &[pin(&ca)]).unwrap_err();
    assert!(matches!(err, DiscoveryError::NoKubeconfig), "{err}");
}
