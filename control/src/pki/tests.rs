use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::time::UNIX_EPOCH;

use super::*;

const FILES: [&str; 6] = [
    CA_CERT,
    CA_KEY,
    SERVING_CERT,
    SERVING_KEY,
    ADMIN_CERT,
    ADMIN_KEY,
];

/// 2027-01-15: tests pass time in, so they do not depend on the clock.
fn t0() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_800_000_000)
}

fn files(dir: &Path) -> BTreeMap<&'static str, Vec<u8>> {
    FILES
        .iter()
        .map(|name| (*name, std::fs::read(dir.join("pki").join(name)).unwrap()))
        .collect()
}

fn sans_of(cert_pem: &str) -> BTreeSet<San> {
    cert::inspect(&cert::pem_to_der(cert_pem).unwrap())
        .unwrap()
        .sans
}

fn hex_sha256(bytes: &[u8]) -> String {
    let d = ring::digest::digest(&ring::digest::SHA256, bytes);
    d.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn creates_six_files_keys_private() {
    let tmp = tempfile::tempdir().unwrap();
    let pki = Pki::load_or_create(tmp.path(), &[], t0()).unwrap();
    assert_eq!(pki.dir(), tmp.path().join("pki"));
    for name in FILES {
        let meta = std::fs::metadata(pki.dir().join(name)).unwrap();
        let mode = meta.permissions().mode() & 0o777;
        let want = if name.ends_with(".key") { 0o600 } else { 0o644 };
        assert_eq!(mode, want, "{name}: {mode:o}");
    }
    let dir_mode = std::fs::metadata(pki.dir()).unwrap().permissions().mode() & 0o777;
    assert_eq!(dir_mode, 0o700);
    let on_disk = files(tmp.path());
    assert_eq!(on_disk[CA_CERT], pki.ca_pem().into_bytes());
    assert_eq!(on_disk[SERVING_CERT], pki.serving().0.into_bytes());
    assert_eq!(on_disk[ADMIN_KEY], pki.admin().1.into_bytes());
    assert_eq!(
        sans_of(&pki.serving().0),
        sans::wanted(&[]).unwrap(),
        "localhost, 127.0.0.1 and ::1 always"
    );
    let admin = client_identity(&cert::pem_to_der(&pki.admin().0).unwrap()).unwrap();
    assert_eq!(admin.user, ADMIN_USER);
    assert_eq!(admin.groups, vec![ADMIN_GROUP.to_owned()]);
    assert_eq!(
        admin.not_after,
        t0() + LEAF_VALIDITY,
        "one year from now, to the second"
    );
    assert_eq!(
        admin.not_before,
        t0() - Duration::from_secs(300),
        "back-dated"
    );
    assert!(!pki.serving_needs_rotation(t0()));
}

#[test]
fn second_load_reuses_files() {
    let tmp = tempfile::tempdir().unwrap();
    let sans = vec!["hami.example.com".to_owned(), "10.1.2.3".to_owned()];
    let first = Pki::load_or_create(tmp.path(), &sans, t0()).unwrap();
    let before = files(tmp.path());
    let later = t0() + 100 * 24 * 3600 * Duration::from_secs(1);
    let second = Pki::load_or_create(tmp.path(), &sans, later).unwrap();
    assert_eq!(files(tmp.path()), before);
    assert_eq!(first.serving(), second.serving());
    assert_eq!(first.ca_cert_hash(), second.ca_cert_hash());
    // A SAN already covered, spelt differently, changes nothing either.
    Pki::load_or_create(tmp.path(), &["HAMI.example.com".to_owned()], later).unwrap();
    assert_eq!(files(tmp.path()), before);
}

#[test]
fn added_san_reissues_serving_from_same_ca() {
    let tmp = tempfile::tempdir().unwrap();
    Pki::load_or_create(tmp.path(), &["a.example.com".to_owned()], t0()).unwrap();
    let before = files(tmp.path());
    let sans = vec!["a.example.com".to_owned(), "192.168.7.7".to_owned()];
    let pki = Pki::load_or_create(tmp.path(), &sans, t0()).unwrap();
    let after = files(tmp.path());
    for unchanged in [CA_CERT, CA_KEY, ADMIN_CERT, ADMIN_KEY] {
        assert_eq!(after[unchanged], before[unchanged], "{unchanged}");
    }
    assert_ne!(after[SERVING_CERT], before[SERVING_CERT]);
    assert_ne!(after[SERVING_KEY], before[SERVING_KEY]);
    let got = sans_of(&pki.serving().0);
    assert!(
        got.contains(&San::Ip("192.168.7.7".parse().unwrap())),
        "{got:?}"
    );
    assert!(
        got.contains(&San::Dns("a.example.com".to_owned())),
        "{got:?}"
    );
    let serving_der = cert::pem_to_der(&pki.serving().0).unwrap();
    assert!(cert::signed_by(&serving_der, &pki.ca.der));
}

#[test]
fn near_expiry_rotates_serving_on_load() {
    let tmp = tempfile::tempdir().unwrap();
    let pki = Pki::load_or_create(tmp.path(), &[], t0()).unwrap();
    let before = files(tmp.path());
    // About eleven months later: 25 days left.
    let t1 = t0() + 340 * 24 * 3600 * Duration::from_secs(1);
    assert!(!pki.serving_needs_rotation(t1 - 10 * 24 * 3600 * Duration::from_secs(1)));
    assert!(pki.serving_needs_rotation(t1));
    let rotated = Pki::load_or_create(tmp.path(), &[], t1).unwrap();
    let after = files(tmp.path());
    assert_eq!(after[CA_CERT], before[CA_CERT]);
    assert_eq!(after[CA_KEY], before[CA_KEY]);
    assert_ne!(after[SERVING_CERT], before[SERVING_CERT]);
    assert_ne!(after[ADMIN_CERT], before[ADMIN_CERT], "admin expires too");
    assert!(!rotated.serving_needs_rotation(t1));
    assert_eq!(rotated.serving.not_after, t1 + LEAF_VALIDITY);
}

#[test]
fn leaf_of_another_ca_or_key_is_reissued() {
    let tmp = tempfile::tempdir().unwrap();
    let other = tempfile::tempdir().unwrap();
    Pki::load_or_create(tmp.path(), &[], t0()).unwrap();
    Pki::load_or_create(other.path(), &[], t0()).unwrap();
    let pki_dir = tmp.path().join("pki");
    // A serving pair signed by another CA.
    for name in [SERVING_CERT, SERVING_KEY] {
        std::fs::copy(other.path().join("pki").join(name), pki_dir.join(name)).unwrap();
    }
    // An admin certificate beside a key that is not its own.
    std::fs::copy(
        other.path().join("pki").join(ADMIN_KEY),
        pki_dir.join(ADMIN_KEY),
    )
    .unwrap();
    let pki = Pki::load_or_create(tmp.path(), &[], t0()).unwrap();
    for pem in [pki.serving().0, pki.admin().0] {
        assert!(cert::signed_by(
            &cert::pem_to_der(&pem).unwrap(),
            &pki.ca.der
        ));
    }
    let stolen = std::fs::read(other.path().join("pki").join(ADMIN_KEY)).unwrap();
    assert_ne!(std::fs::read(pki_dir.join(ADMIN_KEY)).unwrap(), stolen);
}

#[test]
fn ca_cert_hash_is_stable_and_matches_key() {
    let tmp = tempfile::tempdir().unwrap();
    let pki = Pki::load_or_create(tmp.path(), &[], t0()).unwrap();
    let hash = pki.ca_cert_hash();
    assert_eq!(
        hash,
        Pki::load_or_create(tmp.path(), &[], t0())
            .unwrap()
            .ca_cert_hash()
    );
    assert!(
        hash.starts_with("sha256:") && hash.len() == 7 + 64,
        "{hash}"
    );

    // From the certificate, parsed here rather than by the module ...
    let ca_crt = std::fs::read_to_string(pki.dir().join(CA_CERT)).unwrap();
    let der = pem::parse(&ca_crt).unwrap().into_contents();
    let (_, parsed) = x509_parser::parse_x509_certificate(&der).unwrap();
    assert_eq!(
        hash,
        format!("sha256:{}", hex_sha256(parsed.public_key().raw))
    );
    // ... and from the private key alone.
    let key = KeyPair::from_pem(&std::fs::read_to_string(pki.dir().join(CA_KEY)).unwrap()).unwrap();
    assert_eq!(
        hash,
        format!("sha256:{}", hex_sha256(&key.subject_public_key_info()))
    );
}

#[test]
fn issue_client_round_trips_identity() {
    let tmp = tempfile::tempdir().unwrap();
    let pki = Pki::load_or_create(tmp.path(), &[], t0()).unwrap();
    let groups = vec![
        "system:nodes".to_owned(),
        "team-a".to_owned(),
        "Équipe b".to_owned(),
    ];
    let day = Duration::from_secs(24 * 3600);
    let (cert_pem, key_pem) = pki
        .issue_client("system:node:n1", &groups, day, t0())
        .unwrap();
    let der = cert::pem_to_der(&cert_pem).unwrap();
    assert!(
        cert::signed_by(&der, &pki.ca.der),
        "re-signed after the subject edit"
    );
    let id = client_identity(&der).unwrap();
    assert_eq!(id.user, "system:node:n1");
    assert_eq!(id.groups, groups);
    assert_eq!(id.not_after, t0() + day);
    let key = KeyPair::from_pem(&key_pem).unwrap();
    assert_eq!(
        cert::inspect(&der).unwrap().spki,
        key.subject_public_key_info()
    );

    let (no_groups, _) = pki.issue_client("alice", &[], day, t0()).unwrap();
    let id = client_identity(&cert::pem_to_der(&no_groups).unwrap()).unwrap();
    assert_eq!((id.user.as_str(), id.groups.len()), ("alice", 0));
}

#[test]
fn issue_client_stops_with_the_ca() {
    let tmp = tempfile::tempdir().unwrap();
    let pki = Pki::load_or_create(tmp.path(), &[], t0()).unwrap();
    let (cert_pem, _) = pki
        .issue_client("bob", &[], Duration::from_secs(u64::MAX), t0())
        .unwrap();
    let id = client_identity(&cert::pem_to_der(&cert_pem).unwrap()).unwrap();
    assert_eq!(id.not_after, pki.ca.not_after);
    assert!(matches!(
        pki.issue_client("", &[], Duration::from_secs(60), t0()),
        Err(PkiError::InvalidIdentity { .. })
    ));
    let err = pki
        .issue_client("bob", &[], Duration::from_secs(60), t0() + 2 * CA_VALIDITY)
        .unwrap_err();
    assert!(err.to_string().contains("ca.crt: expired at"), "{err}");
}

#[test]
fn corrupt_or_incomplete_ca_is_an_error_naming_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    Pki::load_or_create(tmp.path(), &[], t0()).unwrap();
    let ca_crt = tmp.path().join("pki").join(CA_CERT);
    let good = std::fs::read(&ca_crt).unwrap();

    std::fs::write(&ca_crt, "not a certificate").unwrap();
    let err = Pki::load_or_create(tmp.path(), &[], t0()).unwrap_err();
    assert!(
        matches!(&err, PkiError::Invalid { path, .. } if *path == ca_crt),
        "{err:?}"
    );
    assert!(
        err.to_string().contains(&*ca_crt.to_string_lossy()),
        "{err}"
    );

    // The serving certificate in place of the CA's.
    let serving = std::fs::read(tmp.path().join("pki").join(SERVING_CERT)).unwrap();
    std::fs::write(&ca_crt, serving).unwrap();
    let err = Pki::load_or_create(tmp.path(), &[], t0()).unwrap_err();
    assert!(err.to_string().contains("is not a CA certificate"), "{err}");

    std::fs::write(&ca_crt, good).unwrap();
    std::fs::remove_file(tmp.path().join("pki").join(CA_KEY)).unwrap();
    let err = Pki::load_or_create(tmp.path(), &[], t0()).unwrap_err();
    assert!(matches!(err, PkiError::CaIncomplete { .. }), "{err:?}");
    assert!(err.to_string().contains("ca.key does not"), "{err}");
}

#[test]
fn corrupt_leaf_key_is_an_error_not_a_silent_overwrite() {
    let tmp = tempfile::tempdir().unwrap();
    Pki::load_or_create(tmp.path(), &[], t0()).unwrap();
    let key = tmp.path().join("pki").join(SERVING_KEY);
    std::fs::write(&key, "garbage").unwrap();
    let err = Pki::load_or_create(tmp.path(), &[], t0()).unwrap_err();
    assert!(
        err.to_string().starts_with(&*key.to_string_lossy()),
        "{err}"
    );
    assert_eq!(std::fs::read(&key).unwrap(), b"garbage");
}

#[test]
fn invalid_san_is_rejected_before_anything_is_written() {
    let tmp = tempfile::tempdir().unwrap();
    let err = Pki::load_or_create(tmp.path(), &["not a name".to_owned()], t0()).unwrap_err();
    assert!(err.to_string().contains("\"not a name\""), "{err}");
    assert!(!tmp.path().join("pki").exists());
}

#[test]
fn client_identity_rejects_garbage_and_missing_cn() {
    assert!(matches!(
        client_identity(b"junk"),
        Err(PkiError::ClientCert { .. })
    ));
    let tmp = tempfile::tempdir().unwrap();
    let pki = Pki::load_or_create(tmp.path(), &[], t0()).unwrap();
    // The CA certificate has a CN; a DN with only an O has none.
    let subject = issue::tests_support::subject_without_cn();
    let (cert_pem, _) = pki
        .issue_client("x", &[], Duration::from_secs(60), t0())
        .unwrap();
    let der = cert::pem_to_der(&cert_pem).unwrap();
    let no_cn = issue::tests_support::resubject(&der, &subject, pki.ca.issuer.key());
    let err = client_identity(&no_cn).unwrap_err();
    assert!(err.to_string().contains("no subject common name"), "{err}");
}

#[test]
fn sign_csr_keeps_the_requesters_key_and_subject() {
    let dir = tempfile::tempdir().unwrap();
    let now = SystemTime::now();
    let pki = Pki::load_or_create(dir.path(), &[], now).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "system:hami:agent:gpu-x");
    params
        .distinguished_name
        .push(rcgen::DnType::OrganizationName, "system:hami:agents");
    let request = params.serialize_request(&key).unwrap().pem().unwrap();
    let subject = super::inspect_csr(&request).unwrap();
    assert_eq!(subject.common_name, "system:hami:agent:gpu-x");
    assert_eq!(subject.organizations, vec!["system:hami:agents"]);
    assert!(!subject.has_sans);
    let usages = vec!["digital signature".to_owned(), "client auth".to_owned()];
    let cert = pki
        .sign_csr(&request, &usages, Duration::from_secs(3600), now)
        .unwrap();
    let der = cert::pem_to_der(&cert).unwrap();
    let identity = client_identity(&der).unwrap();
    assert_eq!(identity.user, "system:hami:agent:gpu-x");
    assert_eq!(identity.groups, vec!["system:hami:agents"]);
    let info = cert::inspect(&der).unwrap();
    assert_eq!(info.spki, key.subject_public_key_info());
    assert!(info.not_after <= now + Duration::from_secs(3600));
    assert!(cert::signed_by(&der, &pki.ca.der));
    assert!(
        pki.sign_csr("not pem", &usages, Duration::from_secs(60), now)
            .is_err()
    );
}
