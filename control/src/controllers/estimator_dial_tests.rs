//! The scheduler's and the descheduler's estimator clients against a real
//! estimator served over mutual TLS on a loopback socket (certificates from
//! hami's own PKI): with the CA and a client pair they get answers; without
//! the CA, without a client pair, or trusting another CA they get none, and
//! an https endpoint without a CA says what is missing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use hami_api::binding::{ObjectReference, ReplicaRequirements};
use hami_estimator::fleet::Fleet;
use hami_estimator::server::{EstimatorMetrics, EstimatorService};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use prometheus_client::registry::Registry;
use tonic::transport::{Certificate, Identity, ServerTlsConfig};

use super::*;
use crate::controllers::descheduler::estimate::{AskError, Unschedulable};
use crate::controllers::scheduler::estimate::{EstimateConfig, Estimators, Query};
use crate::controllers::scheduler::metrics::SchedulerMetrics;
use crate::pki::Pki;

const FLEET: &str = r#"
cluster: member-1
nodes:
  - name: a
    allocatable: {cpu: "8", memory: 32Gi, pods: "110"}
pending:
  - {name: w-1, workload: {kind: Deployment, name: web}, unschedulableForSeconds: 600}
"#;

/// An estimator for member-1 over mutual TLS with `pki`'s serving pair,
/// requiring client certificates of `pki`'s CA; its address.
async fn serve_mutual_tls(pki: &Pki) -> SocketAddr {
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let snapshot = Fleet::from_yaml(FLEET).unwrap().snapshot(now).unwrap();
    let metrics = Arc::new(EstimatorMetrics::register(&mut Registry::default()));
    let service = EstimatorService::new(
        "member-1".into(),
        Arc::new(parking_lot::Mutex::new(snapshot)),
        metrics,
    );
    let (cert, key) = pki.serving();
    let tls = ServerTlsConfig::new()
        .identity(Identity::from_pem(cert, key))
        .client_ca_root(Certificate::from_pem(pki.ca_pem()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tonic::transport::Server::builder()
        .tls_config(tls)
        .unwrap()
        .add_service(service.clone().karmada())
        .add_service(service.batch())
        .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener));
    tokio::spawn(server);
    addr
}

fn pki(dir: &tempfile::TempDir) -> Pki {
    Pki::load_or_create(dir.path(), &[], SystemTime::now()).unwrap()
}

/// TLS with `pki`'s CA and, when `client`, its admin pair.
fn dial_with(pki: &Pki, client: bool) -> EstimatorDial {
    let identity = client.then(|| {
        let (cert, key) = pki.admin();
        (cert.into_bytes(), key.into_bytes())
    });
    EstimatorDial::tls(pki.ca_pem().into_bytes(), identity)
}

/// The scheduler's answer for one CPU in member-1 at `endpoint`.
async fn scheduler_answer(dial: EstimatorDial, endpoint: &str) -> (Option<i32>, u64) {
    let metrics = SchedulerMetrics::register(&mut Registry::default());
    let config = EstimateConfig {
        timeout: Duration::from_secs(5),
        ..EstimateConfig::default()
    };
    let estimators = Estimators::new(config, metrics.clone()).with_dial(dial);
    let requirements = ReplicaRequirements {
        resource_request: [("cpu".to_string(), Quantity("1".into()))]
            .into_iter()
            .collect(),
        ..Default::default()
    };
    estimators
        .fill(vec![Query {
            cluster: "member-1".into(),
            endpoint: endpoint.into(),
            revision: 1,
            shape_key: "cpu=1".into(),
            requirements,
        }])
        .await;
    (
        estimators.cached("member-1", "cpu=1", 1),
        metrics.estimator_errors.get(),
    )
}

/// The descheduler's answer for Deployment web in member-1 at `endpoint`.
async fn descheduler_answer(dial: EstimatorDial, endpoint: &str) -> Result<i32, AskError> {
    let web = ObjectReference {
        api_version: "apps/v1".into(),
        kind: "Deployment".into(),
        namespace: Some("default".into()),
        name: "web".into(),
        ..Default::default()
    };
    Unschedulable::new(Duration::from_secs(5))
        .with_dial(dial)
        .ask(endpoint, "member-1", &web, Duration::from_secs(60))
        .await
}

#[test]
fn the_scheme_decides_and_a_bare_endpoint_follows_the_ca() {
    let dir = tempfile::tempdir().unwrap();
    let tls = dial_with(&pki(&dir), false);
    let plain = EstimatorDial::plain();
    assert!(tls.is_tls() && !plain.is_tls());
    assert_eq!(plain.uri("10.0.0.1:10352"), "http://10.0.0.1:10352");
    assert_eq!(tls.uri("10.0.0.1:10352"), "https://10.0.0.1:10352");
    assert_eq!(tls.uri("http://10.0.0.1:10352"), "http://10.0.0.1:10352");
    assert_eq!(plain.uri("https://e:10352"), "https://e:10352");
    // Debug output never holds key material.
    let dir = tempfile::tempdir().unwrap();
    let text = format!("{:?}", dial_with(&pki(&dir), true));
    assert!(!text.contains("PRIVATE KEY"), "{text}");
}

#[tokio::test]
async fn https_without_a_ca_is_refused_saying_what_is_missing() {
    let err = EstimatorDial::plain()
        .connect_lazy("https://10.0.0.1:10352", Duration::from_secs(1))
        .unwrap_err();
    assert!(matches!(err, DialError::NoCa(_)), "{err:?}");
    assert_eq!(
        err.to_string(),
        "estimator endpoint https://10.0.0.1:10352 is https but the control plane has no CA \
         to verify it with (--scheduler-estimator-ca-file)"
    );
    let err = descheduler_answer(EstimatorDial::plain(), "https://10.0.0.1:10352")
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("--scheduler-estimator-ca-file"),
        "{err}"
    );
}

#[tokio::test]
async fn the_scheduler_reaches_a_mutual_tls_estimator_with_the_ca_and_a_client_pair() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki(&dir);
    let addr = serve_mutual_tls(&pki).await;
    let bare = addr.to_string();
    let https = format!("https://{addr}");

    // With the CA and the client pair: bare host:port and https:// answer.
    for endpoint in [&bare, &https] {
        assert_eq!(
            scheduler_answer(dial_with(&pki, true), endpoint).await,
            (Some(8), 0),
            "{endpoint}"
        );
        assert_eq!(
            descheduler_answer(dial_with(&pki, true), endpoint)
                .await
                .unwrap(),
            1,
            "{endpoint}"
        );
    }

    // No CA: plain gRPC to a TLS port gets nothing; https is not dialed.
    assert_eq!(
        scheduler_answer(EstimatorDial::plain(), &bare).await,
        (None, 1)
    );
    assert_eq!(
        scheduler_answer(EstimatorDial::plain(), &https).await,
        (None, 1)
    );
    assert!(matches!(
        descheduler_answer(EstimatorDial::plain(), &bare).await,
        Err(AskError::Call(_) | AskError::Timeout)
    ));
    // The CA without a client pair: the estimator refuses the client.
    assert_eq!(
        scheduler_answer(dial_with(&pki, false), &bare).await,
        (None, 1)
    );
    // Another CA: the estimator's certificate is not trusted.
    let other_dir = tempfile::tempdir().unwrap();
    let other = dial_with(&self::pki(&other_dir), true);
    assert_eq!(scheduler_answer(other.clone(), &bare).await, (None, 1));
    // (Both CAs are named hami-ca: the signature is what fails.)
    let err = descheduler_answer(other, &bare).await.unwrap_err();
    assert!(
        err.to_string().contains("invalid peer certificate"),
        "{err}"
    );
}
