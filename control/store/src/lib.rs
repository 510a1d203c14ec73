//! A revisioned object store in etcd's model.
//!
//! * One global revision increases by one on every successful write (create,
//!   update or delete). A key remembers the revision that created it and the one
//!   that last modified it; the API server turns `mod_revision` into
//!   `metadata.resourceVersion`.
//! * Writes are optimistic: `update` and `delete` may carry the `mod_revision`
//!   the caller read, and fail with [`StoreError::Conflict`] if the key moved on.
//! * `watch(prefix, after)` yields every event with a revision greater than
//!   `after`, in revision order, first from the retained history and then live.
//!   History is bounded: asking for a revision older than what is kept answers
//!   [`StoreError::Compacted`] (the API turns it into 410 Gone).
//! * A write is acknowledged only after it is durable.
//!
//! Values are opaque bytes (the API server stores JSON without
//! `metadata.resourceVersion`, which it injects on read).
//!
//! Backends: [`EmbeddedStore`] (the durable default: one redb file, group
//! commit, see [`embedded`]), [`MemoryStore`] (non-durable, the model the
//! embedded store is tested against) and, with the `etcd` feature,
//! `EtcdStore` (several control planes on one etcd cluster; revisions are
//! etcd's, see `etcd`). In both, `watch(prefix, 0)` replays the
//! whole retained history; to start "from now", pass [`Store::current_revision`]
//! (or a list's `revision`). `Compacted { oldest }` names the oldest retained
//! event, so any `after >= oldest - 1` is accepted.

use async_trait::async_trait;

pub mod embedded;
#[cfg(feature = "etcd")]
pub mod etcd;
pub mod fault;
mod hub;
pub mod memory;
pub mod metrics;

pub use embedded::{EmbeddedOptions, EmbeddedStats, EmbeddedStore};
#[cfg(feature = "etcd")]
pub use etcd::{EtcdOptions, EtcdStore, EtcdTls, Leadership};
pub use fault::{FaultMetrics, FaultPlan, FaultyStore};
pub use memory::{MemoryOptions, MemoryStore};
pub use metrics::StoreMetrics;

/// Live events a watcher may leave unread before it is dropped with
/// [`StoreError::WatcherTooSlow`], by default in every backend. Large enough
/// that a controller's watch over the whole registry rides out a burst of a
/// few thousand writes (2,000 templates become 2,000 bindings and 4,000
/// Works within seconds, each written several times) while the process is
/// busy; tokio allocates a channel's slots as they fill, so an idle
/// watcher costs nothing for it.
pub const DEFAULT_WATCHER_CAPACITY: usize = 16_384;

/// The store's global revision counter. 0 means "nothing written yet".
pub type Revision = u64;

/// One stored key and its value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyValue {
    pub key: String,
    pub value: Vec<u8>,
    /// Revision of the write that created this key (unchanged by updates).
    pub create_revision: Revision,
    /// Revision of the last write to this key.
    pub mod_revision: Revision,
}

/// A change to one key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// The key was created (`prev` is `None`) or updated (`prev` is its old value).
    Put {
        kv: KeyValue,
        prev: Option<KeyValue>,
    },
    /// The key was deleted at `revision`; `prev` is the value it had.
    Delete { prev: KeyValue, revision: Revision },
}

impl Event {
    /// The revision at which this event happened.
    pub fn revision(&self) -> Revision {
        match self {
            Event::Put { kv, .. } => kv.mod_revision,
            Event::Delete { revision, .. } => *revision,
        }
    }

    /// The key this event is about.
    pub fn key(&self) -> &str {
        match self {
            Event::Put { kv, .. } => &kv.key,
            Event::Delete { prev, .. } => &prev.key,
        }
    }
}

/// A page of a prefix listing, taken at one revision.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ListResult {
    /// Matching keys in ascending key order.
    pub items: Vec<KeyValue>,
    /// The store revision the listing reflects.
    pub revision: Revision,
    /// True when `limit` cut the listing short; continue after the last key.
    pub more: bool,
}

/// Everything that can go wrong in a store call. A caller maps these onto API
/// errors: AlreadyExists -> 409, NotFound -> 404, Conflict -> 409,
/// Compacted -> 410, Unavailable and Closed -> 503, the rest -> 500.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum StoreError {
    #[error("key {0} already exists")]
    AlreadyExists(String),
    #[error("key {0} not found")]
    NotFound(String),
    #[error("conflict on {key}: expected revision {expected}, current revision {actual}")]
    Conflict {
        key: String,
        expected: Revision,
        actual: Revision,
    },
    #[error("revision {requested} has been compacted; the oldest retained revision is {oldest}")]
    Compacted {
        requested: Revision,
        oldest: Revision,
    },
    #[error("the watcher fell too far behind and was closed")]
    WatcherTooSlow,
    #[error("storage backend error: {0}")]
    Backend(String),
    /// The backend could not be reached or did not answer in time (a
    /// remote store such as etcd); for a write, its outcome is unknown.
    #[error("storage backend unavailable: {0}")]
    Unavailable(String),
    #[error("the store is closed")]
    Closed,
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// A live watch: events in revision order. The channel closes when the store
/// shuts down; an `Err` item (e.g. [`StoreError::WatcherTooSlow`]) is the last one.
pub struct Watch {
    pub events: tokio::sync::mpsc::Receiver<Result<Event>>,
}

/// The store interface every backend implements (embedded now, etcd later).
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Create `key`; fails with AlreadyExists if present. Returns the stored entry.
    async fn create(&self, key: &str, value: Vec<u8>) -> Result<KeyValue>;

    /// Replace the value of an existing `key`. With `expected = Some(rev)` the
    /// write happens only if the key's `mod_revision` is `rev` (else Conflict).
    /// NotFound if the key does not exist.
    async fn update(
        &self,
        key: &str,
        value: Vec<u8>,
        expected: Option<Revision>,
    ) -> Result<KeyValue>;

    /// Delete `key`, optionally only at `expected` revision. Returns the deleted
    /// entry and the revision of the delete.
    async fn delete(&self, key: &str, expected: Option<Revision>) -> Result<(KeyValue, Revision)>;

    /// Read one key at the current revision.
    fn get(&self, key: &str) -> Result<Option<KeyValue>>;

    /// Keys starting with `prefix`, in key order, strictly after `start_after`
    /// when given, at most `limit` of them when `limit > 0`.
    fn list(&self, prefix: &str, start_after: Option<&str>, limit: usize) -> Result<ListResult>;

    /// Events for keys under `prefix` with revision > `after`.
    fn watch(&self, prefix: &str, after: Revision) -> Result<Watch>;

    /// The current global revision.
    fn current_revision(&self) -> Revision;
}
