//! [`EmbeddedStore`]: the default, durable backend, one file under a data
//! directory.
//!
//! # Why redb
//!
//! [redb](https://docs.rs/redb) is a pure-Rust embedded key-value store (no C
//! toolchain, no background compaction threads) with ACID transactions. Its
//! copy-on-write B-trees and checksummed commit slots make a crash mid-write
//! recover to the last committed transaction; its MVCC read transactions see a
//! snapshot and never block the single writer, so `get`/`list`/`watch` replay
//! never wait behind a commit. Everything lives in one file, `DIR/hami.redb`.
//!
//! # Layout
//!
//! * `objects`: key -> `create_revision | mod_revision | value`
//! * `meta`: `revision` (the last committed revision) and `compacted` (change
//!   log entries at or below it have been dropped)
//! * `log`: revision -> event, trimmed to the last `history` revisions in the
//!   same transaction that appends to it, so a watch can resume from a
//!   revision after a restart.
//!
//! # Writes
//!
//! Every write goes through one committer thread that commits queued requests
//! in groups (see `committer.rs`), one fsync per group. A request is answered
//! only after its group is durable.

mod codec;
mod committer;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::JoinHandle;

use async_trait::async_trait;
use parking_lot::Mutex;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use tokio::sync::{mpsc, oneshot};

pub use codec::CodecError;
use codec::{decode_event, decode_object};
use committer::{Committed, Op, Request};

use crate::hub::Hub;
use crate::{Event, KeyValue, ListResult, Result, Revision, Store, StoreError, Watch};

const OBJECTS: TableDefinition<&str, &[u8]> = TableDefinition::new("objects");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("log");
const META_REVISION: &str = "revision";
const META_COMPACTED: &str = "compacted";

/// The database file's name inside the data directory.
pub const FILE_NAME: &str = "hami.redb";

/// Tuning for [`EmbeddedStore`].
#[derive(Clone, Debug)]
pub struct EmbeddedOptions {
    /// Revisions kept in the change log for watches that resume from an older
    /// revision (older ones answer [`StoreError::Compacted`]).
    pub history: u64,
    /// Most write requests committed in one transaction. 1 disables group
    /// commit (one fsync per write; the benchmark's baseline).
    pub max_batch: usize,
    /// Write requests that may wait for the committer before writers wait.
    pub queue_capacity: usize,
    /// Live events a watcher may leave unread before it is dropped with
    /// [`StoreError::WatcherTooSlow`].
    pub watcher_capacity: usize,
    /// redb's page cache, in bytes.
    pub cache_size_bytes: usize,
    /// Where the committer reports (default: registered nowhere).
    pub metrics: crate::StoreMetrics,
}

impl Default for EmbeddedOptions {
    fn default() -> Self {
        EmbeddedOptions {
            history: 10_000,
            max_batch: 1024,
            queue_capacity: 4096,
            watcher_capacity: crate::DEFAULT_WATCHER_CAPACITY,
            cache_size_bytes: 256 * 1024 * 1024,
            metrics: crate::StoreMetrics::unregistered(),
        }
    }
}

/// Counters of the committer, for tests and metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EmbeddedStats {
    /// Successful write transactions (each one fsync).
    pub commits: u64,
    /// Successful writes (revisions) they carried.
    pub writes: u64,
}

struct Shared {
    db: Database,
    options: EmbeddedOptions,
    /// Last committed revision.
    revision: AtomicU64,
    hub: Mutex<Hub>,
    commits: AtomicU64,
    writes: AtomicU64,
}

/// The durable, group-committing [`Store`] on redb.
pub struct EmbeddedStore {
    shared: Arc<Shared>,
    requests: Mutex<Option<mpsc::Sender<Request>>>,
    committer: Mutex<Option<JoinHandle<()>>>,
}

fn backend(e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(e.to_string())
}

impl EmbeddedStore {
    /// Open (or create) the store in `dir/hami.redb`, creating `dir`.
    pub fn open(dir: &Path, options: EmbeddedOptions) -> Result<Self> {
        std::fs::create_dir_all(dir)
            .map_err(|e| StoreError::Backend(format!("create {}: {e}", dir.display())))?;
        let path = dir.join(FILE_NAME);
        let db = Database::builder()
            .set_cache_size(options.cache_size_bytes)
            .create(&path)
            .map_err(|e| StoreError::Backend(format!("open {}: {e}", path.display())))?;
        let committed = init_tables(&db)?;
        let shared = Arc::new(Shared {
            db,
            options: options.clone(),
            revision: AtomicU64::new(committed.revision),
            hub: Mutex::new(Hub::new(committed.revision)),
            commits: AtomicU64::new(0),
            writes: AtomicU64::new(0),
        });
        let (tx, rx) = mpsc::channel(options.queue_capacity.max(1));
        let thread_shared = shared.clone();
        let committer = std::thread::Builder::new()
            .name("hami-store-commit".into())
            .spawn(move || committer::run(thread_shared, rx, committed))
            .map_err(|e| StoreError::Backend(format!("start committer: {e}")))?;
        Ok(EmbeddedStore {
            shared,
            requests: Mutex::new(Some(tx)),
            committer: Mutex::new(Some(committer)),
        })
    }

    /// Stop accepting writes, let the committer finish what is queued, and
    /// wait for it. Watches end. Later writes answer [`StoreError::Closed`].
    /// Called by `Drop` too.
    pub fn close(&self) {
        drop(self.requests.lock().take());
        let handle = self.committer.lock().take();
        if let Some(handle) = handle
            && handle.join().is_err()
        {
            tracing::error!("store committer thread panicked");
        }
    }

    /// Committer counters since open.
    pub fn stats(&self) -> EmbeddedStats {
        EmbeddedStats {
            commits: self.shared.commits.load(Ordering::Relaxed),
            writes: self.shared.writes.load(Ordering::Relaxed),
        }
    }

    /// Number of live watchers.
    pub fn watcher_count(&self) -> usize {
        self.shared.hub.lock().len()
    }

    async fn submit(&self, op: Op) -> Result<Event> {
        let sender = self.requests.lock().clone().ok_or(StoreError::Closed)?;
        let (reply, answer) = oneshot::channel();
        sender
            .send(Request { op, reply })
            .await
            .map_err(|_| StoreError::Closed)?;
        answer.await.map_err(|_| StoreError::Closed)?
    }
}

impl Drop for EmbeddedStore {
    fn drop(&mut self) {
        self.close();
    }
}

/// Create the tables on first open and read the revision counters.
fn init_tables(db: &Database) -> Result<Committed> {
    let txn = db.begin_write().map_err(backend)?;
    let committed = {
        txn.open_table(OBJECTS).map_err(backend)?;
        txn.open_table(LOG).map_err(backend)?;
        let meta = txn.open_table(META).map_err(backend)?;
        let get = |name: &str| -> Result<u64> {
            Ok(meta
                .get(name)
                .map_err(backend)?
                .map(|v| v.value())
                .unwrap_or(0))
        };
        Committed {
            revision: get(META_REVISION)?,
            compacted: get(META_COMPACTED)?,
        }
    };
    txn.commit().map_err(backend)?;
    Ok(committed)
}

fn unexpected(event: &Event) -> StoreError {
    StoreError::Backend(format!(
        "committer answered an unexpected event for {}",
        event.key()
    ))
}

#[async_trait]
impl Store for EmbeddedStore {
    async fn create(&self, key: &str, value: Vec<u8>) -> Result<KeyValue> {
        let op = Op::Create {
            key: key.to_owned(),
            value,
        };
        match self.submit(op).await? {
            Event::Put { kv, .. } => Ok(kv),
            other => Err(unexpected(&other)),
        }
    }

    async fn update(
        &self,
        key: &str,
        value: Vec<u8>,
        expected: Option<Revision>,
    ) -> Result<KeyValue> {
        let op = Op::Update {
            key: key.to_owned(),
            value,
            expected,
        };
        match self.submit(op).await? {
            Event::Put { kv, .. } => Ok(kv),
            other => Err(unexpected(&other)),
        }
    }

    async fn delete(&self, key: &str, expected: Option<Revision>) -> Result<(KeyValue, Revision)> {
        let op = Op::Delete {
            key: key.to_owned(),
            expected,
        };
        match self.submit(op).await? {
            Event::Delete { prev, revision } => Ok((prev, revision)),
            other => Err(unexpected(&other)),
        }
    }

    fn get(&self, key: &str) -> Result<Option<KeyValue>> {
        let txn = self.shared.db.begin_read().map_err(backend)?;
        let objects = txn.open_table(OBJECTS).map_err(backend)?;
        match objects.get(key).map_err(backend)? {
            None => Ok(None),
            Some(bytes) => decode_object(key, bytes.value()).map(Some).map_err(backend),
        }
    }

    fn list(&self, prefix: &str, start_after: Option<&str>, limit: usize) -> Result<ListResult> {
        use std::ops::Bound;
        let txn = self.shared.db.begin_read().map_err(backend)?;
        let meta = txn.open_table(META).map_err(backend)?;
        let revision = meta
            .get(META_REVISION)
            .map_err(backend)?
            .map(|v| v.value())
            .unwrap_or(0);
        let objects = txn.open_table(OBJECTS).map_err(backend)?;
        let lower = match start_after {
            Some(after) if after >= prefix => Bound::Excluded(after),
            _ => Bound::Included(prefix),
        };
        let mut result = ListResult {
            items: Vec::new(),
            revision,
            more: false,
        };
        for entry in objects
            .range::<&str>((lower, Bound::Unbounded))
            .map_err(backend)?
        {
            let (key, value) = entry.map_err(backend)?;
            let key = key.value();
            if !key.starts_with(prefix) {
                break;
            }
            if limit > 0 && result.items.len() == limit {
                result.more = true;
                break;
            }
            result
                .items
                .push(decode_object(key, value.value()).map_err(backend)?);
        }
        Ok(result)
    }

    fn watch(&self, prefix: &str, after: Revision) -> Result<Watch> {
        // Hold the hub while reading the log: the committer cannot publish in
        // between, so the replay ends exactly where live events begin.
        let mut hub = self.shared.hub.lock();
        if self.requests.lock().is_none() {
            return Err(StoreError::Closed);
        }
        let published = hub.published();
        let txn = self.shared.db.begin_read().map_err(backend)?;
        let meta = txn.open_table(META).map_err(backend)?;
        let compacted = meta
            .get(META_COMPACTED)
            .map_err(backend)?
            .map(|v| v.value())
            .unwrap_or(0);
        if after < compacted {
            return Err(StoreError::Compacted {
                requested: after,
                oldest: compacted + 1,
            });
        }
        let mut replay = Vec::new();
        if after < published {
            let log = txn.open_table(LOG).map_err(backend)?;
            for entry in log.range(after + 1..=published).map_err(backend)? {
                let (_, bytes) = entry.map_err(backend)?;
                let event = decode_event(bytes.value()).map_err(backend)?;
                if event.key().starts_with(prefix) {
                    replay.push(event);
                }
            }
        }
        Ok(hub.register(prefix, after, replay, self.shared.options.watcher_capacity))
    }

    fn current_revision(&self) -> Revision {
        self.shared.revision.load(Ordering::Acquire)
    }
}
