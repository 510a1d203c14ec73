//! Watcher registry shared by the backends: prefix filtering, bounded
//! per-watcher channels, and dropping a watcher that falls behind.
//!
//! A watcher's channel holds its replayed history plus `capacity` live events
//! plus one slot kept free for the final [`StoreError::WatcherTooSlow`], so a
//! slow watcher always learns why it was closed and the writer never waits.

use tokio::sync::mpsc;

use crate::{Event, Revision, StoreError, Watch};

struct Watcher {
    prefix: String,
    /// Only events newer than this are sent (a watch may start in the future).
    after: Revision,
    tx: mpsc::Sender<crate::Result<Event>>,
}

/// Live watchers and the last revision handed to them. Backends keep it behind
/// a lock that is also held while a new watcher replays history, so no event
/// is missed or sent twice between the replay and the live stream.
#[derive(Default)]
pub(crate) struct Hub {
    watchers: Vec<Watcher>,
    /// Every event with a revision up to this one has been published.
    published: Revision,
}

impl Hub {
    pub(crate) fn new(published: Revision) -> Self {
        Hub {
            watchers: Vec::new(),
            published,
        }
    }

    /// The last revision published to watchers.
    pub(crate) fn published(&self) -> Revision {
        self.published
    }

    /// Register a watcher that first receives `replay` (the events under
    /// `prefix` in `(after, published]` that the caller read from history while
    /// holding this hub's lock) and then every live event under `prefix` newer
    /// than `after`.
    pub(crate) fn register(
        &mut self,
        prefix: &str,
        after: Revision,
        replay: Vec<Event>,
        capacity: usize,
    ) -> Watch {
        let (tx, rx) = mpsc::channel(replay.len() + capacity.max(1) + 1);
        for event in replay {
            // Cannot fail: the channel was sized for the whole replay.
            let _ = tx.try_send(Ok(event));
        }
        self.watchers.push(Watcher {
            prefix: prefix.to_owned(),
            after,
            tx,
        });
        Watch { events: rx }
    }

    /// Hand `events` (ascending revisions, all newer than what was published)
    /// to every matching watcher. Never blocks: a watcher whose channel is full
    /// gets [`StoreError::WatcherTooSlow`] in its reserved slot and is dropped;
    /// one whose receiver is gone is dropped.
    pub(crate) fn publish(&mut self, events: &[Event]) {
        if let Some(last) = events.last() {
            self.published = last.revision();
        }
        if self.watchers.is_empty() {
            return;
        }
        self.watchers.retain(|w| {
            for event in events {
                if event.revision() <= w.after || !event.key().starts_with(&w.prefix) {
                    continue;
                }
                if w.tx.capacity() <= 1 {
                    let _ = w.tx.try_send(Err(StoreError::WatcherTooSlow));
                    return false;
                }
                if w.tx.try_send(Ok(event.clone())).is_err() {
                    return false;
                }
            }
            !w.tx.is_closed()
        });
    }

    /// Number of live watchers (for tests and metrics).
    pub(crate) fn len(&self) -> usize {
        self.watchers.len()
    }

    /// Close every watcher (their channels end).
    pub(crate) fn close_all(&mut self) {
        self.watchers.clear();
    }
}
