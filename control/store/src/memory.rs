//! [`MemoryStore`]: the simple, obviously-correct, non-durable backend.
//!
//! Everything sits behind one mutex: the objects in a `BTreeMap`, a bounded
//! event history and the watchers. It serves tests, simulations and as the
//! model the embedded backend is checked against.

use std::collections::{BTreeMap, VecDeque};
use std::ops::Bound;

use async_trait::async_trait;
use parking_lot::Mutex;

use crate::hub::Hub;
use crate::{Event, KeyValue, ListResult, Result, Revision, Store, StoreError, Watch};

/// Tuning for [`MemoryStore`].
#[derive(Clone, Debug)]
pub struct MemoryOptions {
    /// Events kept for watches that resume from an older revision.
    pub history: usize,
    /// Live events a watcher may have unread before it is dropped.
    pub watcher_capacity: usize,
}

impl Default for MemoryOptions {
    fn default() -> Self {
        MemoryOptions {
            history: 10_000,
            watcher_capacity: crate::DEFAULT_WATCHER_CAPACITY,
        }
    }
}

struct State {
    revision: Revision,
    /// Events with revision <= this have been dropped from `history`.
    compacted: Revision,
    objects: BTreeMap<String, KeyValue>,
    history: VecDeque<Event>,
    hub: Hub,
}

/// A non-durable [`Store`] held entirely in memory.
pub struct MemoryStore {
    options: MemoryOptions,
    state: Mutex<State>,
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::with_options(MemoryOptions::default())
    }

    pub fn with_options(options: MemoryOptions) -> Self {
        MemoryStore {
            options,
            state: Mutex::new(State {
                revision: 0,
                compacted: 0,
                objects: BTreeMap::new(),
                history: VecDeque::new(),
                hub: Hub::new(0),
            }),
        }
    }

    /// Number of live watchers.
    pub fn watcher_count(&self) -> usize {
        self.state.lock().hub.len()
    }

    /// Stores `value` at `key` as the next revision (keeping the creation
    /// revision of `prev`, the value it replaces) and records the event.
    fn put(
        &self,
        state: &mut State,
        key: &str,
        value: Vec<u8>,
        prev: Option<KeyValue>,
    ) -> KeyValue {
        state.revision += 1;
        let kv = KeyValue {
            key: key.to_owned(),
            value,
            create_revision: prev.as_ref().map_or(state.revision, |p| p.create_revision),
            mod_revision: state.revision,
        };
        state.objects.insert(key.to_owned(), kv.clone());
        let event = Event::Put {
            kv: kv.clone(),
            prev,
        };
        self.record(state, event);
        kv
    }

    fn record(&self, state: &mut State, event: Event) {
        state.history.push_back(event.clone());
        while state.history.len() > self.options.history {
            if let Some(old) = state.history.pop_front() {
                state.compacted = old.revision();
            }
        }
        if self.options.history == 0 {
            state.compacted = state.revision;
        }
        state.hub.publish(std::slice::from_ref(&event));
    }
}

#[async_trait]
impl Store for MemoryStore {
    async fn create(&self, key: &str, value: Vec<u8>) -> Result<KeyValue> {
        let mut state = self.state.lock();
        if state.objects.contains_key(key) {
            return Err(StoreError::AlreadyExists(key.to_owned()));
        }
        Ok(self.put(&mut state, key, value, None))
    }

    async fn update(
        &self,
        key: &str,
        value: Vec<u8>,
        expected: Option<Revision>,
    ) -> Result<KeyValue> {
        let mut state = self.state.lock();
        let prev = match state.objects.get(key) {
            None => return Err(StoreError::NotFound(key.to_owned())),
            Some(prev) => prev.clone(),
        };
        check_expected(&prev, expected)?;
        Ok(self.put(&mut state, key, value, Some(prev)))
    }

    async fn delete(&self, key: &str, expected: Option<Revision>) -> Result<(KeyValue, Revision)> {
        let mut state = self.state.lock();
        let prev = match state.objects.get(key) {
            None => return Err(StoreError::NotFound(key.to_owned())),
            Some(prev) => prev.clone(),
        };
        check_expected(&prev, expected)?;
        state.revision += 1;
        let revision = state.revision;
        state.objects.remove(key);
        let event = Event::Delete {
            prev: prev.clone(),
            revision,
        };
        self.record(&mut state, event);
        Ok((prev, revision))
    }

    fn get(&self, key: &str) -> Result<Option<KeyValue>> {
        Ok(self.state.lock().objects.get(key).cloned())
    }

    fn list(&self, prefix: &str, start_after: Option<&str>, limit: usize) -> Result<ListResult> {
        let state = self.state.lock();
        let lower = match start_after {
            Some(after) if after >= prefix => Bound::Excluded(after),
            _ => Bound::Included(prefix),
        };
        let mut result = ListResult {
            items: Vec::new(),
            revision: state.revision,
            more: false,
        };
        let range = state.objects.range::<str, _>((lower, Bound::Unbounded));
        for (key, kv) in range {
            if !key.starts_with(prefix) {
                break;
            }
            if limit > 0 && result.items.len() == limit {
                result.more = true;
                break;
            }
            result.items.push(kv.clone());
        }
        Ok(result)
    }

    fn watch(&self, prefix: &str, after: Revision) -> Result<Watch> {
        let mut state = self.state.lock();
        if after < state.compacted {
            return Err(StoreError::Compacted {
                requested: after,
                oldest: state.compacted + 1,
            });
        }
        let replay: Vec<Event> = state
            .history
            .iter()
            .filter(|e| e.revision() > after && e.key().starts_with(prefix))
            .cloned()
            .collect();
        Ok(state
            .hub
            .register(prefix, after, replay, self.options.watcher_capacity))
    }

    fn current_revision(&self) -> Revision {
        self.state.lock().revision
    }
}

/// Fail with Conflict when the caller's expected revision is stale.
pub(crate) fn check_expected(current: &KeyValue, expected: Option<Revision>) -> Result<()> {
    match expected {
        Some(rev) if rev != current.mod_revision => Err(StoreError::Conflict {
            key: current.key.clone(),
            expected: rev,
            actual: current.mod_revision,
        }),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[tokio::test]
    async fn create_update_delete_watch() {
        let store = MemoryStore::new();
        let a = store.create("a/1", b"x".to_vec()).await.unwrap();
        assert_eq!(a.mod_revision, 1);
        let b = store.update("a/1", b"y".to_vec(), Some(1)).await.unwrap();
        assert_eq!((b.create_revision, b.mod_revision), (1, 2));
        assert!(matches!(
            store.update("a/1", b"z".to_vec(), Some(1)).await,
            Err(StoreError::Conflict { .. })
        ));
        let mut w = store.watch("a/", 0).unwrap();
        store.delete("a/1", None).await.unwrap();
        let revs: Vec<_> = [(); 3]
            .iter()
            .map(|_| w.events.try_recv().unwrap().unwrap().revision())
            .collect();
        assert_eq!(revs, vec![1, 2, 3]);
    }
}
