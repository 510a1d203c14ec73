//! Stores on a real etcd server (see [`etcd_server`]): one server per
//! test, each store under a prefix of its own.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use hami_store::{EtcdOptions, EtcdStore};

pub use super::etcd_server::EtcdServer;
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
    count: AtomicUsize,
}

impl Etcd {
    /// `None` when the test is skipped (no etcd, not CI).
    pub async fn start() -> Option<Etcd> {
        Some(Etcd {
            server: EtcdServer::start()?,
            count: AtomicUsize::new(0),
        })
    }
}

impl Factory for Etcd {
    type S = EtcdStore;
    async fn make(&self, opts: Opts) -> EtcdStore {
        let n = self.count.fetch_add(1, Ordering::Relaxed);
        EtcdStore::connect(options(&self.server, &format!("/test-{n}/"), opts))
            .await
            .unwrap()
    }

    async fn trim_history(&self, store: &EtcdStore) {
        store.compact().await.unwrap();
    }
}
