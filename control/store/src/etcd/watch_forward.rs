//! `Store::watch` on etcd: one etcd watch per store watch, from the asked
//! revision, with previous values, forwarded into a bounded channel.
//!
//! An event is handed to the watcher only once this replica's cache (what
//! `get` and `list` answer from) has applied it, as the embedded store
//! publishes only what it committed: a controller that reads an object
//! after its watch said it changed reads that change, never an older copy
//! (the cache is fed by a watch of its own, which may be a little behind
//! this one).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use etcd_client::{Client, WatchOptions};
use tokio::sync::{mpsc, watch};

use super::cache::Cache;
use super::convert::{self, Keys};
use crate::{Event, Revision, StoreError};

pub(crate) struct Forward {
    pub client: Client,
    pub keys: Keys,
    pub prefix: String,
    pub after: Revision,
    pub compacted: Arc<AtomicU64>,
    pub stop: watch::Receiver<bool>,
    /// The replica's cache, which must have applied an event before the
    /// watcher gets it; a warning every `settle` while it has not.
    pub cache: Arc<Cache>,
    pub settle: Duration,
}

/// Runs until the receiver is dropped, the store stops or the watch ends;
/// an error (compacted, too slow, etcd out of reach) is the last item.
/// `tx` has one slot more than the watcher may leave unread, kept for it.
pub(crate) async fn forward(f: Forward, tx: mpsc::Sender<crate::Result<Event>>) {
    let mut stop = f.stop.clone();
    let ended = tokio::select! {
        ended = run(&f, &tx) => ended,
        _ = tx.closed() => Ok(()),
        _ = stop.wait_for(|s| *s) => Ok(()),
    };
    if let Err(e) = ended {
        let _ = tx.try_send(Err(e));
    }
}

async fn run(f: &Forward, tx: &mpsc::Sender<crate::Result<Event>>) -> crate::Result<()> {
    let (start, end) = f.keys.range(&f.prefix);
    let options = WatchOptions::new()
        .with_range(end)
        .with_start_revision(convert::etcd_revision(f.after.saturating_add(1)))
        .with_prev_key();
    let mut stream = f
        .client
        .watch_client()
        .watch(start, Some(options))
        .await
        .map_err(convert::error)?;
    loop {
        let response = match stream.message().await.map_err(convert::error)? {
            Some(r) => r,
            None => return Err(StoreError::Unavailable("etcd ended the watch".into())),
        };
        if response.compact_revision() > 0 {
            let oldest = convert::revision(response.compact_revision());
            f.compacted.fetch_max(oldest, Ordering::Relaxed);
            return Err(StoreError::Compacted {
                requested: f.after,
                oldest,
            });
        }
        if response.canceled() {
            return Err(StoreError::Backend(format!(
                "etcd canceled the watch: {}",
                response.cancel_reason()
            )));
        }
        let events: Vec<Event> = response
            .events()
            .iter()
            .filter_map(|e| f.keys.event(e))
            .collect();
        if let Some(last) = events.last().map(Event::revision) {
            // However long it takes: handing the event over before the
            // cache has it would let the watcher read an older copy (seen
            // on a loaded 2-core machine: 2 s were not enough). `forward`
            // ends the wait when the watcher or the store goes away.
            while !f
                .cache
                .wait_until(f.settle, |_, applied| applied >= last)
                .await
            {
                tracing::warn!(
                    revision = last,
                    cache_revision = f.cache.revision(),
                    "the etcd store's cache is behind its watchers; holding their events until it has them"
                );
            }
        }
        for event in events {
            if tx.capacity() <= 1 {
                return Err(StoreError::WatcherTooSlow);
            }
            if tx.try_send(Ok(event)).is_err() {
                return Ok(());
            }
        }
    }
}
