//! Helpers shared by the store's integration tests: one way to build each
//! backend with the same options, and a bounded wait for the next watch event.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

#[cfg(feature = "etcd")]
pub mod etcd;
#[cfg(feature = "etcd")]
pub mod etcd_server;
#[cfg(feature = "etcd")]
pub mod test_certs;

use std::time::Duration;

use hami_store::{
    EmbeddedOptions, EmbeddedStore, Event, MemoryOptions, MemoryStore, Store, StoreError, Watch,
};
use tempfile::TempDir;

/// Options both backends understand.
#[derive(Clone, Copy, Debug)]
pub struct Opts {
    pub history: u64,
    pub watcher_capacity: usize,
}

impl Default for Opts {
    fn default() -> Self {
        Opts {
            history: 1000,
            watcher_capacity: 1024,
        }
    }
}

/// Builds a fresh store of one backend.
pub trait Factory {
    type S: Store;
    fn make(&self, opts: Opts) -> impl Future<Output = Self::S>;
    /// Makes the store drop the history it no longer keeps (etcd compacts
    /// when told; the other backends drop it as they write).
    fn trim_history(&self, _store: &Self::S) -> impl Future<Output = ()> {
        async {}
    }
}

pub struct Memory;

impl Factory for Memory {
    type S = MemoryStore;
    async fn make(&self, opts: Opts) -> MemoryStore {
        MemoryStore::with_options(MemoryOptions {
            history: opts.history as usize,
            watcher_capacity: opts.watcher_capacity,
        })
    }
}

/// Each `make` opens a new store in its own folder under one temp dir.
pub struct Embedded {
    pub dir: TempDir,
    pub count: std::sync::atomic::AtomicUsize,
}

impl Embedded {
    pub fn new() -> Self {
        Embedded {
            dir: tempfile::tempdir().unwrap(),
            count: Default::default(),
        }
    }
}

pub fn embedded_options(opts: Opts) -> EmbeddedOptions {
    EmbeddedOptions {
        history: opts.history,
        watcher_capacity: opts.watcher_capacity,
        // Small cache: tests open many stores.
        cache_size_bytes: 4 * 1024 * 1024,
        ..EmbeddedOptions::default()
    }
}

impl Factory for Embedded {
    type S = EmbeddedStore;
    async fn make(&self, opts: Opts) -> EmbeddedStore {
        let n = self
            .count
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        EmbeddedStore::open(&self.dir.path().join(n.to_string()), embedded_options(opts)).unwrap()
    }
}

/// The next item of a watch; fails the test if none comes within 10 s (a
/// liveness guard, not a timing assertion).
pub async fn next(watch: &mut Watch) -> Option<Result<Event, StoreError>> {
    tokio::time::timeout(Duration::from_secs(10), watch.events.recv())
        .await
        .expect("watch stalled")
}

/// The next event, which must be Ok.
pub async fn next_event(watch: &mut Watch) -> Event {
    next(watch)
        .await
        .expect("watch closed")
        .expect("watch error")
}

/// `(revision, key, is_delete)` of an event, for compact comparisons.
pub fn brief(event: &Event) -> (u64, String, bool) {
    (
        event.revision(),
        event.key().to_owned(),
        matches!(event, Event::Delete { .. }),
    )
}
