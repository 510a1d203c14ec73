//! Stores on a real etcd server (see [`etcd_server`]): one server per
//! test, each store under a prefix of its own; over TLS with client
//! certificates required when started with [`Etcd::start_tls`].

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use hami_store::{EtcdOptions, EtcdStore, EtcdTls};

pub use super::etcd_server::{EtcdServer, EtcdServerTls};
use super::test_certs::TestPki;
use super::{Factory, Opts};

/// Store options for `server` under `prefix`.
pub fn options(server: &EtcdServer, prefix: &str, opts: Opts) -> EtcdOptions {
    EtcdOptions {
        endpoints: vec![server.endpoint.clone()],
        prefix: prefix.to_owned(),
        history: opts.history,
        compact_interval: None,
        watcher_capacity: opts.watcher_capacity,
        request_timeout: Duration::from_secs(10),
        ..EtcdOptions::default()
    }
}

/// The store's TLS settings for etcd of `pki`: its CA, and its client
/// pair when `with_client`.
pub fn tls(pki: &TestPki, with_client: bool) -> EtcdTls {
    EtcdTls {
        ca_pem: pki.ca_pem.clone().into_bytes(),
        client: with_client.then(|| {
            (
                pki.client.cert_pem.clone().into_bytes(),
                pki.client.key_pem.clone().into_bytes(),
            )
        }),
    }
}

/// An etcd serving its clients over TLS with certificates of a fresh
/// `pki`, requiring client certificates when `client_cert_auth`.
pub fn start_tls(client_cert_auth: bool) -> Option<(EtcdServer, TestPki)> {
    let pki = TestPki::new("etcd");
    let server = EtcdServer::start_tls(EtcdServerTls {
        cert: pki.server.cert.clone(),
        key: pki.server.key.clone(),
        ca: pki.ca.clone(),
        client_cert_auth,
    })?;
    Some((server, pki))
}

/// A raw client, for what the store does not do (compacting, writing
/// outside the prefix, looking at the keys as etcd has them).
pub async fn client(server: &EtcdServer) -> etcd_client::Client {
    etcd_client::Client::connect([&server.endpoint], None)
        .await
        .unwrap()
}

/// Stores on one etcd server, each `make` under a prefix of its own.
pub struct Etcd {
    pub server: EtcdServer,
    /// With TLS: the certificates (stores present its client pair).
    pub pki: Option<TestPki>,
    count: AtomicUsize,
}

impl Etcd {
    /// `None` when the test is skipped (no etcd, not CI).
    pub async fn start() -> Option<Etcd> {
        Some(Etcd {
            server: EtcdServer::start()?,
            pki: None,
            count: AtomicUsize::new(0),
        })
    }

    /// The same over TLS, client certificates required.
    pub async fn start_tls() -> Option<Etcd> {
        let (server, pki) = start_tls(true)?;
        Some(Etcd {
            server,
            pki: Some(pki),
            count: AtomicUsize::new(0),
        })
    }
}

impl Factory for Etcd {
    type S = EtcdStore;
    async fn make(&self, opts: Opts) -> EtcdStore {
        let n = self.count.fetch_add(1, Ordering::Relaxed);
        let options = EtcdOptions {
            tls: self.pki.as_ref().map(|pki| tls(pki, true)),
            ..options(&self.server, &format!("/test-{n}/"), opts)
        };
        EtcdStore::connect(options).await.unwrap()
    }

    async fn trim_history(&self, store: &EtcdStore) {
        store.compact().await.unwrap();
    }
}
