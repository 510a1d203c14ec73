//! [`EtcdStore`]: the store kept in an etcd cluster, so that several
//! hami-control replicas share one state (DESIGN.md, "Stores").
//!
//! * Revisions are etcd's: a key's `mod_revision` (the object's
//!   `resourceVersion`) is the etcd revision of its last write; `create`,
//!   `update` and `delete` each take one etcd revision.
//! * Writes are etcd transactions: `create` puts only if the key's
//!   `create_revision` is 0, `update` and `delete` only if its
//!   `mod_revision` is the one read (the caller's expected revision, else
//!   the cache's, confirmed by etcd), so etcd decides every race.
//! * Reads (`get`, `list`, `current_revision`) come from the replica's
//!   cache of the prefix, kept by one etcd watch (see [`cache`](self)): the
//!   trait reads synchronously. Each list page is a snapshot at one
//!   revision. A write returns once the cache has it (read your writes).
//! * `watch` is an etcd watch from the asked revision with previous values;
//!   a revision etcd has compacted away answers [`StoreError::Compacted`]
//!   (at once when this store knows of the compaction, else as the watch's
//!   only item).
//! * History: etcd keeps every revision until compacted. The store
//!   compacts to its last `history` revisions every `compact_interval`
//!   (compaction is etcd-wide: leave it to etcd's own
//!   `--auto-compaction-*` by setting `compact_interval` to `None`).
//! * TLS (see [`tls`](self)): with [`EtcdOptions::tls`] the client verifies
//!   etcd's certificate with the given CA and presents the client pair, if
//!   any; endpoints are `https://` then.
//! * Errors: an unreachable or silent etcd is [`StoreError::Unavailable`]
//!   (for a write, the outcome is unknown); failed preconditions are
//!   AlreadyExists, NotFound and Conflict as in the other backends.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use etcd_client::{Client, Compare, CompareOp, ConnectOptions, Txn, TxnOp, TxnResponse};
use tokio::sync::{mpsc, watch};

mod cache;
mod convert;
mod leader;
mod tls;
mod watch_forward;

pub use leader::Leadership;
pub use tls::EtcdTls;

use cache::Cache;
use convert::Keys;

use crate::{KeyValue, ListResult, Result, Revision, Store, StoreError, StoreMetrics, Watch};

/// Attempts of one update or delete whose key keeps changing under it
/// (only when the caller gave no expected revision).
const WRITE_ATTEMPTS: usize = 16;

/// Longest a write waits for the cache to show it before answering anyway.
const SETTLE_LIMIT: Duration = Duration::from_secs(2);

/// Where and how to reach etcd.
#[derive(Clone, Debug)]
pub struct EtcdOptions {
    /// etcd client URLs (`http://host:2379`, `https://host:2379` with
    /// `tls`, or `host:2379`: over TLS when `tls` is set).
    pub endpoints: Vec<String>,
    /// TLS to etcd: the CA of etcd's certificate and a client pair.
    pub tls: Option<EtcdTls>,
    /// Every key of the store lives under this etcd prefix (not empty).
    pub prefix: String,
    /// Revisions kept by the store's own compaction.
    pub history: u64,
    /// How often the store compacts etcd; `None` leaves it to etcd.
    pub compact_interval: Option<Duration>,
    /// Events a watcher may leave unread before it is dropped with
    /// [`StoreError::WatcherTooSlow`].
    pub watcher_capacity: usize,
    /// Longest wait for one etcd request (and for connecting).
    pub request_timeout: Duration,
    /// Write metrics (`hami_store_`); one etcd transaction is one commit.
    pub metrics: StoreMetrics,
    /// Tests only: how long the cache waits before applying each batch of
    /// its watch's events, to make the lag it always may have visible.
    pub cache_lag: Duration,
}

impl Default for EtcdOptions {
    fn default() -> Self {
        EtcdOptions {
            endpoints: vec!["http://127.0.0.1:2379".into()],
            tls: None,
            prefix: "/hami/".into(),
            history: 10_000,
            compact_interval: Some(Duration::from_secs(300)),
            watcher_capacity: crate::DEFAULT_WATCHER_CAPACITY,
            request_timeout: Duration::from_secs(10),
            metrics: StoreMetrics::unregistered(),
            cache_lag: Duration::ZERO,
        }
    }
}

/// A [`Store`] in etcd. Cheap to share behind an `Arc`; background tasks
/// (the cache's watch, the compactor, each watch) stop on [`close`](Self::close)
/// or drop.
pub struct EtcdStore {
    client: Client,
    keys: Keys,
    options: EtcdOptions,
    cache: Arc<Cache>,
    /// etcd's compaction revision as far as this store knows (0: none).
    compacted: Arc<AtomicU64>,
    closed: AtomicBool,
    stop: watch::Sender<bool>,
    runtime: tokio::runtime::Handle,
}

/// An update's new value, or a delete.
enum Change {
    Put(Vec<u8>),
    Delete,
}

impl EtcdStore {
    /// Connects, loads every key under the prefix into the cache and starts
    /// following etcd. Fails with Unavailable when etcd does not answer
    /// within `request_timeout`.
    pub async fn connect(options: EtcdOptions) -> Result<Self> {
        if options.prefix.is_empty() {
            return Err(StoreError::Backend(
                "the etcd prefix must not be empty".into(),
            ));
        }
        if options.endpoints.is_empty() {
            return Err(StoreError::Backend("no etcd endpoints given".into()));
        }
        let runtime = tokio::runtime::Handle::try_current().map_err(|e| {
            StoreError::Backend(format!("the etcd store needs a tokio runtime: {e}"))
        })?;
        let timeout = options.request_timeout;
        let mut connect = ConnectOptions::new()
            .with_connect_timeout(timeout)
            .with_keep_alive(Duration::from_secs(10), Duration::from_secs(5));
        if let Some(tls) = tls::options(&options.endpoints, options.tls.as_ref())? {
            connect = connect.with_tls(tls);
        }
        let client = tokio::time::timeout(
            timeout,
            Client::connect(options.endpoints.as_slice(), Some(connect)),
        )
        .await
        .map_err(|_| cache::timed_out(timeout))?
        .map_err(convert::error)?;
        let keys = Keys::new(&options.prefix);
        let (objects, revision) = cache::load(&client, &keys, timeout).await?;
        let cache = Arc::new(Cache::new(objects, revision));
        let compacted = Arc::new(AtomicU64::new(0));
        let (stop, stopped) = watch::channel(false);
        runtime.spawn(cache::follow(
            client.clone(),
            keys.clone(),
            cache.clone(),
            compacted.clone(),
            timeout,
            options.cache_lag,
            stopped.clone(),
        ));
        let store = EtcdStore {
            client,
            keys,
            options,
            cache,
            compacted,
            closed: AtomicBool::new(false),
            stop,
            runtime,
        };
        if let Some(every) = store.options.compact_interval {
            store
                .runtime
                .spawn(compactor(store.compactor(), every, stopped));
        }
        tracing::info!(
            endpoints = ?store.options.endpoints,
            tls = store.options.tls.is_some(),
            prefix = store.options.prefix,
            revision,
            keys = store.cache.list("", None, 0).items.len(),
            "etcd store connected"
        );
        Ok(store)
    }

    /// Compacts etcd to the last `history` revisions now. The revision
    /// compacted to, or `None` when there was nothing to do.
    pub async fn compact(&self) -> Result<Option<Revision>> {
        self.compactor().run().await
    }

    /// Stops the background tasks; every watch ends and later calls fail
    /// with [`StoreError::Closed`].
    pub fn close(&self) {
        self.closed.store(true, Ordering::Relaxed);
        self.stop.send_replace(true);
    }

    /// The etcd prefix every key lives under.
    pub fn prefix(&self) -> &str {
        &self.options.prefix
    }

    fn compactor(&self) -> Compactor {
        Compactor {
            client: self.client.clone(),
            cache: self.cache.clone(),
            compacted: self.compacted.clone(),
            history: self.options.history,
            timeout: self.options.request_timeout,
        }
    }

    fn check_open(&self) -> Result<()> {
        if self.closed.load(Ordering::Relaxed) {
            Err(StoreError::Closed)
        } else {
            Ok(())
        }
    }

    /// One transaction, within the request timeout; its header revision.
    async fn txn(&self, txn: Txn) -> Result<(TxnResponse, Revision)> {
        let limit = self.options.request_timeout;
        let answer = tokio::time::timeout(limit, self.client.kv_client().txn(txn)).await;
        let response = match answer {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => {
                self.options.metrics.commit_failures.inc();
                return Err(convert::error(e));
            }
            Err(_) => {
                self.options.metrics.commit_failures.inc();
                return Err(cache::timed_out(limit));
            }
        };
        let revision = response
            .header()
            .map(|h| convert::revision(h.revision()))
            .ok_or_else(|| StoreError::Backend("etcd answered without a header".into()))?;
        Ok((response, revision))
    }

    /// The key as etcd has it now (a linearizable read).
    async fn fetch(&self, key: &str) -> Result<Option<KeyValue>> {
        let limit = self.options.request_timeout;
        let response = tokio::time::timeout(
            limit,
            self.client.kv_client().get(self.keys.full(key), None),
        )
        .await
        .map_err(|_| cache::timed_out(limit))?
        .map_err(convert::error)?;
        Ok(response.kvs().first().and_then(|kv| self.keys.kv(kv)))
    }

    fn observe(&self, started: Instant, rejected: bool) {
        self.options
            .metrics
            .committed(1, usize::from(rejected), started.elapsed().as_secs_f64());
    }

    /// Waits (briefly) until the cache satisfies `done`: what this replica
    /// reads next reflects what etcd just answered.
    async fn settle(
        &self,
        done: impl Fn(&std::collections::BTreeMap<String, KeyValue>, Revision) -> bool,
    ) {
        if !self.cache.wait_until(SETTLE_LIMIT, done).await {
            tracing::warn!(
                cache_revision = self.cache.revision(),
                "the etcd store's cache is behind etcd; answering without it"
            );
        }
    }

    /// An update or delete of `key`: compare on the `mod_revision` read
    /// (from the cache first, from etcd when the cache is stale), so the
    /// previous value returned is exactly the one replaced.
    async fn change(
        &self,
        key: &str,
        expected: Option<Revision>,
        change: Change,
    ) -> Result<(KeyValue, Revision)> {
        self.check_open()?;
        let started = Instant::now();
        let full = self.keys.full(key);
        let mut fresh = false;
        for _ in 0..WRITE_ATTEMPTS {
            let current = if fresh {
                self.fetch(key).await?
            } else {
                self.cache.get(key)
            };
            let Some(current) = current else {
                if fresh {
                    self.observe(started, true);
                    self.settle(|objects, _| !objects.contains_key(key)).await;
                    return Err(StoreError::NotFound(key.to_owned()));
                }
                fresh = true;
                continue;
            };
            if let Some(expected) = expected
                && expected != current.mod_revision
            {
                if fresh {
                    self.observe(started, true);
                    let actual = current.mod_revision;
                    self.settle(|objects, _| {
                        objects.get(key).is_none_or(|kv| kv.mod_revision >= actual)
                    })
                    .await;
                    return Err(StoreError::Conflict {
                        key: key.to_owned(),
                        expected,
                        actual,
                    });
                }
                fresh = true;
                continue;
            }
            let then = match &change {
                Change::Put(value) => TxnOp::put(full.clone(), value.clone(), None),
                Change::Delete => TxnOp::delete(full.clone(), None),
            };
            let txn = Txn::new()
                .when([Compare::mod_revision(
                    full.clone(),
                    CompareOp::Equal,
                    convert::etcd_revision(current.mod_revision),
                )])
                .and_then([then]);
            let (response, revision) = self.txn(txn).await?;
            if response.succeeded() {
                self.observe(started, false);
                self.settle(|_, applied| applied >= revision).await;
                return Ok((current, revision));
            }
            fresh = true;
        }
        // The key changed under every attempt: answer as a conflict.
        self.observe(started, true);
        let actual = self.fetch(key).await?.map_or(0, |kv| kv.mod_revision);
        Err(StoreError::Conflict {
            key: key.to_owned(),
            expected: expected.unwrap_or(0),
            actual,
        })
    }
}

impl Drop for EtcdStore {
    fn drop(&mut self) {
        self.stop.send_replace(true);
    }
}

#[async_trait]
impl Store for EtcdStore {
    async fn create(&self, key: &str, value: Vec<u8>) -> Result<KeyValue> {
        self.check_open()?;
        let started = Instant::now();
        let full = self.keys.full(key);
        let txn = Txn::new()
            .when([Compare::create_revision(full.clone(), CompareOp::Equal, 0)])
            .and_then([TxnOp::put(full, value.clone(), None)]);
        let (response, revision) = self.txn(txn).await?;
        if !response.succeeded() {
            self.observe(started, true);
            self.settle(|objects, _| objects.contains_key(key)).await;
            return Err(StoreError::AlreadyExists(key.to_owned()));
        }
        self.observe(started, false);
        self.settle(|_, applied| applied >= revision).await;
        Ok(KeyValue {
            key: key.to_owned(),
            value,
            create_revision: revision,
            mod_revision: revision,
        })
    }

    async fn update(
        &self,
        key: &str,
        value: Vec<u8>,
        expected: Option<Revision>,
    ) -> Result<KeyValue> {
        let (prev, revision) = self
            .change(key, expected, Change::Put(value.clone()))
            .await?;
        Ok(KeyValue {
            key: key.to_owned(),
            value,
            create_revision: prev.create_revision,
            mod_revision: revision,
        })
    }

    async fn delete(&self, key: &str, expected: Option<Revision>) -> Result<(KeyValue, Revision)> {
        self.change(key, expected, Change::Delete).await
    }

    fn get(&self, key: &str) -> Result<Option<KeyValue>> {
        self.check_open()?;
        Ok(self.cache.get(key))
    }

    fn list(&self, prefix: &str, start_after: Option<&str>, limit: usize) -> Result<ListResult> {
        self.check_open()?;
        Ok(self.cache.list(prefix, start_after, limit))
    }

    fn watch(&self, prefix: &str, after: Revision) -> Result<Watch> {
        self.check_open()?;
        let oldest = self.compacted.load(Ordering::Relaxed);
        if after.saturating_add(1) < oldest {
            return Err(StoreError::Compacted {
                requested: after,
                oldest,
            });
        }
        let (tx, rx) = mpsc::channel(self.options.watcher_capacity.max(1) + 1);
        let forward = watch_forward::Forward {
            client: self.client.clone(),
            keys: self.keys.clone(),
            prefix: prefix.to_owned(),
            after,
            compacted: self.compacted.clone(),
            stop: self.stop.subscribe(),
            cache: self.cache.clone(),
            settle: SETTLE_LIMIT,
        };
        self.runtime.spawn(watch_forward::forward(forward, tx));
        Ok(Watch { events: rx })
    }

    fn current_revision(&self) -> Revision {
        self.cache.revision()
    }
}

/// What compaction needs, apart from the store (the periodic task owns one).
struct Compactor {
    client: Client,
    cache: Arc<Cache>,
    compacted: Arc<AtomicU64>,
    history: u64,
    timeout: Duration,
}

impl Compactor {
    /// Compacts to keep the revisions after `cache revision - history`.
    async fn run(&self) -> Result<Option<Revision>> {
        let current = self.cache.revision();
        let target = current
            .saturating_sub(self.history)
            .saturating_add(1)
            .min(current);
        if target <= 1 || target <= self.compacted.load(Ordering::Relaxed) {
            return Ok(None);
        }
        let answer = tokio::time::timeout(
            self.timeout,
            self.client
                .kv_client()
                .compact(convert::etcd_revision(target), None),
        )
        .await
        .map_err(|_| cache::timed_out(self.timeout))?;
        match answer {
            Ok(_) => {
                self.compacted.fetch_max(target, Ordering::Relaxed);
                tracing::debug!(revision = target, "compacted etcd");
                Ok(Some(target))
            }
            // Another replica compacted as far already.
            Err(e) if convert::is_compacted(&e) => {
                self.compacted.fetch_max(target, Ordering::Relaxed);
                Ok(None)
            }
            Err(e) => Err(convert::error(e)),
        }
    }
}

async fn compactor(compactor: Compactor, every: Duration, mut stop: watch::Receiver<bool>) {
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        if let Err(e) = compactor.run().await {
            tracing::warn!(error = %e, "compacting etcd failed");
        }
    }
}
