use super::testing::{
    FakeControl, TOKEN, Verdict, cluster_info_data, cluster_info_kubeconfig, token,
};
use super::*;
use std::time::UNIX_EPOCH;

async fn fake() -> FakeControl {
    let fake = FakeControl::start().await;
    let kc = cluster_info_kubeconfig(&fake.url, &fake.state.ca.cert_pem);
    *fake.state.cluster_info.lock() = cluster_info_data(&kc, &token());
    fake
}

fn config(fake: &FakeControl, dir: &std::path::Path) -> JoinConfig {
    JoinConfig {
        cluster_name: "gpu-a".into(),
        url: fake.url.clone(),
        token: token(),
        ca_cert_hashes: vec![CaCertHash::of_spki(&fake.state.ca.spki)],
        cert_dir: dir.to_owned(),
        timeout: Duration::from_secs(10),
        request_timeout: Duration::from_secs(5),
    }
}

#[tokio::test]
async fn joins_with_the_token_then_reuses_the_kept_certificate() {
    let fake = fake().await;
    let tmp = tempfile::tempdir().unwrap();
    let cfg = config(&fake, tmp.path());
    let metrics = CertificateMetrics::unregistered();
    let joined = join(&cfg, metrics.clone()).await.unwrap();
    assert_eq!(*fake.state.creators.lock(), vec![format!("Bearer {TOKEN}")]);
    let (_, spec) = fake.state.requests.lock()[0].clone();
    assert_eq!(spec["signerName"], "kubernetes.io/kube-apiserver-client");
    let stored = CertDir::new(tmp.path()).load().unwrap().unwrap();
    assert_eq!(stored.server, fake.url);
    assert_eq!(stored.info, joined.renewer.info);
    let expiry = stored
        .info
        .not_after
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert_eq!(metrics.expiration(), i64::try_from(expiry).unwrap());

    // A restart does not join again.
    let again = join(&cfg, CertificateMetrics::unregistered())
        .await
        .unwrap();
    assert_eq!(fake.state.requests.lock().len(), 1);
    assert_eq!(again.renewer.info.serial, stored.info.serial);
}

#[tokio::test]
async fn renewal_asks_with_the_current_certificate_and_swaps_it_in_place() {
    let fake = fake().await;
    let tmp = tempfile::tempdir().unwrap();
    let mut renewer = join(
        &config(&fake, tmp.path()),
        CertificateMetrics::unregistered(),
    )
    .await
    .unwrap()
    .renewer;
    let first = renewer.info.serial.clone();
    renewer.renew_once().await.unwrap();
    let second = renewer.info.serial.clone();
    assert_ne!(first, second);
    assert_eq!(renewer.identity.generation(), 1);
    let stored = CertDir::new(tmp.path()).load().unwrap().unwrap();
    assert_eq!(stored.info.serial, second);
    // The next request presents the renewed certificate, over the same client.
    renewer.renew_once().await.unwrap();
    assert_eq!(
        fake.state.creators.lock()[1..],
        [format!("cert:{first}"), format!("cert:{second}")]
    );
}

#[tokio::test]
async fn the_renewer_renews_a_short_certificate_on_its_own() {
    let fake = fake().await;
    *fake.state.lifetime.lock() = Duration::from_secs(3);
    let tmp = tempfile::tempdir().unwrap();
    let mut cfg = config(&fake, tmp.path());
    cfg.timeout = Duration::from_secs(5);
    let metrics = CertificateMetrics::unregistered();
    let joined = join(&cfg, metrics.clone()).await.unwrap();
    let first = joined.renewer.info.serial.clone();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(joined.renewer.run(stop_rx));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while metrics.renewals(metrics::RenewalResult::Success) < 1 {
        assert!(tokio::time::Instant::now() < deadline, "no renewal");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = stop_tx.send(true);
    task.await.unwrap();
    let stored = CertDir::new(tmp.path()).load().unwrap().unwrap();
    assert_ne!(stored.info.serial, first);
    assert_eq!(fake.state.creators.lock()[1], format!("cert:{first}"));
}

#[tokio::test]
async fn a_denied_request_names_the_reason_and_message() {
    let fake = fake().await;
    *fake.state.verdict.lock() = Verdict::Deny;
    let tmp = tempfile::tempdir().unwrap();
    let Err(err) = join(
        &config(&fake, tmp.path()),
        CertificateMetrics::unregistered(),
    )
    .await
    else {
        panic!("joined")
    };
    let text = err.to_string();
    assert!(text.contains("denied (NotAllowed)"), "{text}");
    assert!(text.contains("already has an agent identity"), "{text}");
    assert!(CertDir::new(tmp.path()).load().unwrap().is_none());
}

#[tokio::test]
async fn a_wrong_pin_stops_before_any_request() {
    let fake = fake().await;
    let tmp = tempfile::tempdir().unwrap();
    let mut cfg = config(&fake, tmp.path());
    let wrong: CaCertHash = format!("sha256:{}", "12".repeat(32)).parse().unwrap();
    cfg.ca_cert_hashes = vec![wrong.clone()];
    let Err(err) = join(&cfg, CertificateMetrics::unregistered()).await else {
        panic!("joined")
    };
    let text = err.to_string();
    assert!(text.contains(&wrong.to_string()), "{text}");
    assert!(
        text.contains(&CaCertHash::of_spki(&fake.state.ca.spki).to_string()),
        "{text}"
    );
    assert!(fake.state.requests.lock().is_empty());
}

#[tokio::test]
async fn a_kept_certificate_about_to_expire_is_replaced_by_joining_again() {
    let fake = fake().await;
    *fake.state.lifetime.lock() = Duration::from_secs(30);
    let tmp = tempfile::tempdir().unwrap();
    let cfg = config(&fake, tmp.path());
    join(&cfg, CertificateMetrics::unregistered())
        .await
        .unwrap();
    join(&cfg, CertificateMetrics::unregistered())
        .await
        .unwrap();
    assert_eq!(fake.state.requests.lock().len(), 2);
}

#[test]
fn kept_certificates_must_name_the_agent_and_last_a_minute() {
    let now = UNIX_EPOCH + Duration::from_secs(10_000);
    let info = |cn: &str, left: u64| CertInfo {
        not_before: UNIX_EPOCH,
        not_after: now + Duration::from_secs(left),
        serial: "01".into(),
        common_name: Some(cn.into()),
        spki: Vec::new(),
    };
    assert!(usable(&info("system:hami:agent:gpu-a", 61), "gpu-a", now).is_ok());
    assert!(usable(&info("system:hami:agent:gpu-a", 60), "gpu-a", now).is_err());
    assert!(usable(&info("system:hami:agent:gpu-b", 3600), "gpu-a", now).is_err());
}
