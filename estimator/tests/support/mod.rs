//! The estimator's gRPC services on a real loopback socket, for the gRPC tests.

use std::net::SocketAddr;
use std::sync::Arc;

use hami_estimator::fleet::Fleet;
use hami_estimator::server::{EstimatorMetrics, EstimatorService};
use parking_lot::Mutex;
use prometheus_client::registry::Registry;
use tonic::transport::{Channel, ServerTlsConfig};

/// Serves Karmada's `Estimator` and hami's `BatchEstimator` for cluster
/// `member-1` over the snapshot of `fleet` (pending pods dated by `now_ms`);
/// a channel to them.
pub async fn serve(fleet: &str, now_ms: i64) -> Channel {
    let addr = listen(fleet, now_ms, None).await;
    Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap()
}

/// The same services, over TLS when `tls` is given; their address.
pub async fn listen(fleet: &str, now_ms: i64, tls: Option<ServerTlsConfig>) -> SocketAddr {
    let fleet = Fleet::from_yaml(fleet).unwrap();
    let snap = Arc::new(Mutex::new(fleet.snapshot(now_ms).unwrap()));
    let mut reg = Registry::default();
    let metrics = Arc::new(EstimatorMetrics::register(&mut reg));
    let svc = EstimatorService::new("member-1".into(), snap, metrics);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let mut server = tonic::transport::Server::builder();
    if let Some(tls) = tls {
        server = server.tls_config(tls).unwrap();
    }
    tokio::spawn(
        server
            .add_service(svc.clone().karmada())
            .add_service(svc.batch())
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    addr
}
