#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, SystemTime};

use base64::Engine as _;
use hami_store::MemoryStore;

use super::*;

const ISSUER: &str = DEFAULT_ISSUER;
const NOW: u64 = 1_800_000_000;

fn at(seconds: i64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(u64::try_from(seconds).unwrap())
}

fn key() -> SigningKey {
    SigningKey::from_pkcs8(&SigningKey::generate_pkcs8().unwrap()).unwrap()
}

fn config_with(signing: SigningKey, audiences: &[&str]) -> Arc<ServiceAccountConfig> {
    let public = signing.public().clone();
    Arc::new(ServiceAccountConfig::new(
        signing,
        vec![public],
        vec![ISSUER.to_owned()],
        audiences.iter().map(|a| (*a).to_owned()).collect(),
        None,
    ))
}

fn object(kind: &str, ns: &str, name: &str, uid: &str) -> Value {
    json!({"apiVersion": "v1", "kind": kind,
           "metadata": {"name": name, "namespace": ns, "uid": uid}})
}

async fn put(store: &MemoryStore, plural: &str, value: &Value) {
    let meta = &value["metadata"];
    let key = format!(
        "/registry/core/{plural}/{}/{}",
        meta["namespace"].as_str().unwrap(),
        meta["name"].as_str().unwrap()
    );
    let _ = store.delete(&key, None).await;
    store
        .create(&key, serde_json::to_vec(value).unwrap())
        .await
        .unwrap();
}

/// A store with ServiceAccount `ns/robot` (uid `sa-1`), Secret `ns/s` and
/// Pod `ns/p`, and an authenticator over it.
async fn setup() -> (
    Arc<MemoryStore>,
    Arc<ServiceAccountConfig>,
    ServiceAccountTokens,
) {
    let store = Arc::new(MemoryStore::new());
    put(
        &store,
        "serviceaccounts",
        &object("ServiceAccount", "ns", "robot", "sa-1"),
    )
    .await;
    put(&store, "secrets", &object("Secret", "ns", "s", "secret-1")).await;
    put(&store, "pods", &object("Pod", "ns", "p", "pod-1")).await;
    let config = config_with(key(), &[]);
    let tokens = ServiceAccountTokens::new(config.clone(), store.clone());
    (store, config, tokens)
}

fn subject() -> Subject {
    Subject {
        namespace: "ns".to_owned(),
        name: "robot".to_owned(),
        uid: "sa-1".to_owned(),
        audiences: vec![ISSUER.to_owned()],
        expiration_seconds: 3600,
        bound: None,
    }
}

fn now() -> i64 {
    i64::try_from(NOW).unwrap()
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn part(token: &str, i: usize) -> Value {
    let text = token.split('.').nth(i).unwrap();
    serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(text)
            .unwrap(),
    )
    .unwrap()
}

/// A token signed by `signing` with `header` and `claims` as given.
fn forge(signing: &SigningKey, header: &Value, claims: &Value) -> String {
    let input = format!(
        "{}.{}",
        b64(&serde_json::to_vec(header).unwrap()),
        b64(&serde_json::to_vec(claims).unwrap())
    );
    let signature = signing.sign(input.as_bytes()).unwrap();
    format!("{input}.{}", b64(&signature))
}

#[tokio::test]
async fn a_good_token_is_the_service_account() {
    let (_, config, tokens) = setup().await;
    let token = config.issue(&subject(), now()).unwrap();
    let header = part(&token, 0);
    assert_eq!(header["alg"], "ES256");
    assert_eq!(header["kid"], config.verifying[0].kid());
    let claims = part(&token, 1);
    assert_eq!(claims["iss"], ISSUER);
    assert_eq!(claims["sub"], "system:serviceaccount:ns:robot");
    assert_eq!(claims["aud"], json!([ISSUER]));
    assert_eq!(claims["exp"], now() + 3600);
    assert_eq!(claims["nbf"], now());
    assert_eq!(
        claims["kubernetes.io"],
        json!({"namespace": "ns", "serviceaccount": {"name": "robot", "uid": "sa-1"}})
    );
    let jti = claims["jti"].as_str().unwrap().to_owned();
    let identity = tokens.verify(&token, at(now() + 10)).unwrap();
    assert_eq!(identity.user.name, "system:serviceaccount:ns:robot");
    assert_eq!(
        identity.user.groups,
        vec!["system:serviceaccounts", "system:serviceaccounts:ns"]
    );
    assert_eq!(identity.uid, "sa-1");
    assert_eq!(
        identity.extra,
        BTreeMap::from([(CREDENTIAL_ID.to_owned(), vec![format!("JTI={jti}")])])
    );
    // The metric label of such a user.
    assert_eq!(
        crate::server::metrics::user_kind(&identity.user),
        "serviceaccount"
    );
    // Every token gets its own jti.
    let again = config.issue(&subject(), now()).unwrap();
    assert_ne!(part(&again, 1)["jti"], claims["jti"]);
}

#[tokio::test]
async fn times_are_checked_with_kubes_leeway() {
    let (_, config, tokens) = setup().await;
    let token = config.issue(&subject(), now()).unwrap();
    let exp = now() + 3600;
    let cases = [
        (exp + 59, Ok(())),
        (exp + 60, Err(TokenError::Expired)),
        (exp + 100_000, Err(TokenError::Expired)),
        (now() - 59, Ok(())),
        (now() - 61, Err(TokenError::NotValidYet)),
    ];
    for (when, want) in cases {
        let got = tokens.verify(&token, at(when)).map(|_| ());
        assert_eq!(got, want, "at {when}");
    }
    // iat after nbf: issued in the future.
    let signing = key();
    let config = config_with(signing, &[]);
    let mut claims = part(&config.issue(&subject(), now()).unwrap(), 1);
    claims["iat"] = json!(now() + 600);
    let forged = forge(&config.signing, &json!({"alg": "ES256"}), &claims);
    let tokens = ServiceAccountTokens::new(config.clone(), tokens.store.clone());
    assert_eq!(
        tokens.verify(&forged, at(now())).unwrap_err(),
        TokenError::IssuedInTheFuture
    );
}

#[tokio::test]
async fn issuer_audience_and_signature_are_checked() {
    let (store, config, tokens) = setup().await;
    let token = config.issue(&subject(), now()).unwrap();
    let when = at(now());
    // Another issuer: not ours, the next authenticator decides.
    let mut claims = part(&token, 1);
    claims["iss"] = json!("https://elsewhere.example");
    let other = forge(&config.signing, &json!({"alg": "ES256"}), &claims);
    assert_eq!(
        tokens.verify(&other, when).unwrap_err(),
        TokenError::NotOurs
    );
    // An audience the API is not.
    let mut wrong_audience = subject();
    wrong_audience.audiences = vec!["vault".to_owned()];
    let token_b = config.issue(&wrong_audience, now()).unwrap();
    assert!(matches!(
        tokens.verify(&token_b, when).unwrap_err(),
        TokenError::Audience { .. }
    ));
    // No audience at all: the API audiences (kube's legacy tokens).
    let mut claims = part(&token, 1);
    claims.as_object_mut().unwrap().remove("aud");
    let no_aud = forge(&config.signing, &json!({"alg": "ES256"}), &claims);
    assert!(tokens.verify(&no_aud, when).is_ok());
    // --api-audiences: a token for one of them is accepted, others not.
    let api = config_with(key(), &["api", "other"]);
    let api_tokens = ServiceAccountTokens::new(api.clone(), store.clone());
    let mut for_api = subject();
    for_api.audiences = vec!["x".to_owned(), "other".to_owned()];
    assert!(
        api_tokens
            .verify(&api.issue(&for_api, now()).unwrap(), when)
            .is_ok()
    );
    assert!(api_tokens.verify(&token, when).is_err());
    // A tampered payload or signature.
    let parts: Vec<&str> = token.split('.').collect();
    let mut claims = part(&token, 1);
    claims["kubernetes.io"]["serviceaccount"]["name"] = json!("admin");
    let tampered = format!(
        "{}.{}.{}",
        parts[0],
        b64(&serde_json::to_vec(&claims).unwrap()),
        parts[2]
    );
    assert_eq!(
        tokens.verify(&tampered, when).unwrap_err(),
        TokenError::Signature
    );
    let mut sig = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(parts[2])
        .unwrap();
    sig[10] ^= 1;
    let bad_sig = format!("{}.{}.{}", parts[0], parts[1], b64(&sig));
    assert_eq!(
        tokens.verify(&bad_sig, when).unwrap_err(),
        TokenError::Signature
    );
    // Signed by a key the server does not know, with or without a kid.
    let stranger = key();
    let claims = part(&token, 1);
    let unknown_kid = forge(
        &stranger,
        &json!({"alg": "ES256", "kid": stranger.public().kid()}),
        &claims,
    );
    assert_eq!(
        tokens.verify(&unknown_kid, when).unwrap_err(),
        TokenError::NoKey
    );
    let no_kid = forge(&stranger, &json!({"alg": "ES256"}), &claims);
    assert_eq!(
        tokens.verify(&no_kid, when).unwrap_err(),
        TokenError::Signature
    );
    // ... unless it is one of the extra verification keys.
    let verifying = vec![config.verifying[0].clone(), stranger.public().clone()];
    let both = Arc::new(ServiceAccountConfig::new(
        key(),
        verifying,
        vec![ISSUER.to_owned()],
        Vec::new(),
        None,
    ));
    let both = ServiceAccountTokens::new(both, store.clone());
    assert!(both.verify(&unknown_kid, when).is_ok());
    assert!(both.verify(&token, when).is_ok());
}

#[tokio::test]
async fn other_algorithms_are_refused() {
    let (_, config, tokens) = setup().await;
    let token = config.issue(&subject(), now()).unwrap();
    let claims = b64(&serde_json::to_vec(&part(&token, 1)).unwrap());
    let when = at(now());
    // alg none, no signature.
    let none = format!("{}.{claims}.", b64(br#"{"alg":"none"}"#));
    assert_eq!(
        tokens.verify(&none, when).unwrap_err(),
        TokenError::Algorithm("none".to_owned())
    );
    // HS256 keyed with the public key (the classic confusion attack).
    let header = b64(br#"{"alg":"HS256"}"#);
    let input = format!("{header}.{claims}");
    let hmac = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &config.verifying[0].spki());
    let tag = ring::hmac::sign(&hmac, input.as_bytes());
    let hs256 = format!("{input}.{}", b64(tag.as_ref()));
    assert_eq!(
        tokens.verify(&hs256, when).unwrap_err(),
        TokenError::Algorithm("HS256".to_owned())
    );
    // RS256 is not implemented: refused by name.
    let rs256 = format!("{}.{claims}.{}", b64(br#"{"alg":"RS256"}"#), b64(&[0; 256]));
    assert_eq!(
        tokens.verify(&rs256, when).unwrap_err(),
        TokenError::Algorithm("RS256".to_owned())
    );
}

#[tokio::test]
async fn deleted_or_recreated_service_accounts_end_their_tokens() {
    let (store, config, tokens) = setup().await;
    let token = config.issue(&subject(), now()).unwrap();
    let when = at(now());
    assert!(tokens.verify(&token, when).is_ok());
    // Being deleted for longer than the leeway.
    let mut deleting = object("ServiceAccount", "ns", "robot", "sa-1");
    deleting["metadata"]["deletionTimestamp"] = json!("2020-01-01T00:00:00Z");
    put(&store, "serviceaccounts", &deleting).await;
    assert_eq!(
        tokens.verify(&token, when).unwrap_err(),
        TokenError::ServiceAccountDeleted("ns/robot".to_owned())
    );
    // Deleted.
    store
        .delete("/registry/core/serviceaccounts/ns/robot", None)
        .await
        .unwrap();
    assert_eq!(
        tokens.verify(&token, when).unwrap_err(),
        TokenError::ServiceAccountMissing("ns/robot".to_owned())
    );
    assert_eq!(tokens.authenticate(&token), None);
    // Recreated under the same name: another uid, the old token stays dead.
    put(
        &store,
        "serviceaccounts",
        &object("ServiceAccount", "ns", "robot", "sa-2"),
    )
    .await;
    assert_eq!(
        tokens.verify(&token, when).unwrap_err(),
        TokenError::ServiceAccountUid {
            stored: "sa-2".to_owned(),
            claimed: "sa-1".to_owned()
        }
    );
}

#[tokio::test]
async fn bound_tokens_follow_their_object() {
    let (store, config, tokens) = setup().await;
    let when = at(now());
    let mut to_pod = subject();
    to_pod.bound = Some(Bound {
        kind: BoundKind::Pod,
        name: "p".to_owned(),
        uid: "pod-1".to_owned(),
    });
    let pod_token = config.issue(&to_pod, now()).unwrap();
    assert_eq!(
        part(&pod_token, 1)["kubernetes.io"]["pod"],
        json!({"name": "p", "uid": "pod-1"})
    );
    let identity = tokens.verify(&pod_token, when).unwrap();
    assert_eq!(identity.extra[POD_NAME], vec!["p"]);
    assert_eq!(identity.extra[POD_UID], vec!["pod-1"]);
    let mut to_secret = subject();
    to_secret.bound = Some(Bound {
        kind: BoundKind::Secret,
        name: "s".to_owned(),
        uid: "secret-1".to_owned(),
    });
    let secret_token = config.issue(&to_secret, now()).unwrap();
    assert!(tokens.verify(&secret_token, when).is_ok());
    // The Secret recreated, the Pod deleted.
    put(&store, "secrets", &object("Secret", "ns", "s", "secret-2")).await;
    assert!(matches!(
        tokens.verify(&secret_token, when).unwrap_err(),
        TokenError::BoundUid { kind: "secret", .. }
    ));
    store
        .delete("/registry/core/pods/ns/p", None)
        .await
        .unwrap();
    assert_eq!(
        tokens.verify(&pod_token, when).unwrap_err(),
        TokenError::Invalidated
    );
}

#[tokio::test]
async fn other_bearer_tokens_are_not_ours() {
    let (_, _, tokens) = setup().await;
    let when = at(now());
    for token in [
        "",
        "static-token",
        "abcdef.0123456789abcdef",
        "a.b.c",
        "a.b.c.d",
        "{\"alg\":\"none\"}.x.y",
        // A JWT of another issuer, unsigned.
        &format!(
            "{}.{}.",
            b64(br#"{"alg":"ES256"}"#),
            b64(br#"{"iss":"https://accounts.example"}"#)
        ),
        // A payload that is no JSON object.
        &format!("{}.{}.", b64(br#"{"alg":"ES256"}"#), b64(b"[1]")),
    ] {
        assert_eq!(
            tokens.verify(token, when).unwrap_err(),
            TokenError::NotOurs,
            "{token:?}"
        );
    }
}

#[test]
fn keys_load_from_pem_and_refuse_what_they_cannot_verify() {
    let dir = tempfile::tempdir().unwrap();
    let pkcs8 = SigningKey::generate_pkcs8().unwrap();
    let signing_path = dir.path().join("sa.key");
    std::fs::write(&signing_path, keys::pem_encode("PRIVATE KEY", &pkcs8)).unwrap();
    let signing = keys::load_signing_key(&signing_path).unwrap();
    let public_path = dir.path().join("sa.pub");
    std::fs::write(
        &public_path,
        keys::pem_encode("PUBLIC KEY", &signing.public().spki()),
    )
    .unwrap();
    assert_eq!(
        keys::load_public_keys(&public_path).unwrap(),
        vec![signing.public().clone()]
    );
    // A private key in a verification file gives its public key.
    assert_eq!(
        keys::load_public_keys(&signing_path).unwrap(),
        vec![signing.public().clone()]
    );
    // kube's kid: base64url(SHA-256(SPKI DER)).
    let digest = ring::digest::digest(&ring::digest::SHA256, &signing.public().spki());
    assert_eq!(signing.public().kid(), b64(digest.as_ref()));
    let refused = [
        ("RSA PRIVATE KEY", vec![1, 2, 3], "an RSA key"),
        ("EC PRIVATE KEY", vec![1, 2, 3], "SEC1"),
        ("CERTIFICATE", vec![1, 2, 3], "a certificate"),
        (
            "PRIVATE KEY",
            vec![1, 2, 3],
            "not a PKCS#8 P-256 private key",
        ),
    ];
    for (label, der, want) in refused {
        let path = dir.path().join("bad.pem");
        std::fs::write(&path, keys::pem_encode(label, &der)).unwrap();
        let err = keys::load_signing_key(&path).unwrap_err().to_string();
        assert!(err.contains(want), "{label}: {err}");
        assert!(err.starts_with(&path.display().to_string()), "{err}");
    }
    let options = ServiceAccountOptions {
        issuers: vec![ISSUER.to_owned()],
        signing_key_file: signing_path.clone(),
        key_files: vec![public_path],
        api_audiences: Vec::new(),
        max_token_expiration: None,
    };
    let config = ServiceAccountConfig::load(&options).unwrap();
    assert_eq!(config.verifying.len(), 1, "the same key once");
    assert_eq!(config.audiences(), [ISSUER]);
    let missing = ServiceAccountOptions {
        signing_key_file: dir.path().join("none.key"),
        ..options.clone()
    };
    assert!(
        ServiceAccountConfig::load(&missing)
            .unwrap_err()
            .to_string()
            .starts_with("reading ")
    );
    let short = ServiceAccountOptions {
        max_token_expiration: Some(Duration::from_secs(60)),
        ..options.clone()
    };
    assert!(ServiceAccountConfig::load(&short).is_err());
    let no_issuer = ServiceAccountOptions {
        issuers: Vec::new(),
        ..options
    };
    assert!(ServiceAccountConfig::load(&no_issuer).is_err());
}
