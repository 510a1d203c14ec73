//! The replica's view of etcd: every key under the store's prefix, kept by
//! one etcd watch (what kube-apiserver calls its watch cache).
//!
//! The [`Store`](crate::Store) trait reads synchronously (`get`, `list`,
//! `current_revision`), so reads are answered from here, at the revision of
//! the last event applied: every page is a consistent snapshot of one
//! revision. A write through this replica returns only once the cache has
//! applied it, so a replica reads its own writes; other replicas' writes
//! show up after the watch delivers them (milliseconds). Writes themselves
//! are decided by etcd (compare on `mod_revision`), so a stale read can
//! cost a conflict, never a lost update.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::Arc;
use std::time::Duration;

use etcd_client::{Client, GetOptions, WatchOptions};
use parking_lot::RwLock;
use tokio::sync::watch;

use super::convert::{self, Keys};
use crate::{Event, KeyValue, ListResult, Result, Revision, StoreError};

/// Keys per range request when (re)loading the cache.
const LOAD_PAGE: i64 = 1000;

#[derive(Default)]
struct State {
    objects: BTreeMap<String, KeyValue>,
    /// Every event under the prefix up to this revision has been applied.
    revision: Revision,
}

pub(crate) struct Cache {
    state: RwLock<State>,
    /// The applied revision, for writers waiting to read their own write.
    applied: watch::Sender<Revision>,
}

impl Cache {
    pub(crate) fn new(objects: BTreeMap<String, KeyValue>, revision: Revision) -> Self {
        Cache {
            state: RwLock::new(State { objects, revision }),
            applied: watch::Sender::new(revision),
        }
    }

    pub(crate) fn revision(&self) -> Revision {
        self.state.read().revision
    }

    pub(crate) fn get(&self, key: &str) -> Option<KeyValue> {
        self.state.read().objects.get(key).cloned()
    }

    /// The same answers as the memory store's `list`, from the cache.
    pub(crate) fn list(&self, prefix: &str, start_after: Option<&str>, limit: usize) -> ListResult {
        let state = self.state.read();
        let lower = match start_after {
            Some(after) if after >= prefix => Bound::Excluded(after),
            _ => Bound::Included(prefix),
        };
        let mut result = ListResult {
            items: Vec::new(),
            revision: state.revision,
            more: false,
        };
        for (key, kv) in state.objects.range::<str, _>((lower, Bound::Unbounded)) {
            if !key.starts_with(prefix) {
                break;
            }
            if limit > 0 && result.items.len() == limit {
                result.more = true;
                break;
            }
            result.items.push(kv.clone());
        }
        result
    }

    /// Applies one batch of watch events (ascending revisions).
    fn apply(&self, events: Vec<Event>) {
        let Some(last) = events.last().map(Event::revision) else {
            return;
        };
        {
            let mut state = self.state.write();
            for event in events {
                match event {
                    Event::Put { kv, .. } => {
                        state.objects.insert(kv.key.clone(), kv);
                    }
                    Event::Delete { prev, .. } => {
                        state.objects.remove(&prev.key);
                    }
                }
            }
            state.revision = state.revision.max(last);
        }
        self.applied.send_replace(last);
    }

    /// Replaces everything with a fresh listing (after the watch was compacted).
    fn reset(&self, objects: BTreeMap<String, KeyValue>, revision: Revision) {
        {
            let mut state = self.state.write();
            state.objects = objects;
            state.revision = state.revision.max(revision);
        }
        self.applied.send_replace(revision);
    }

    /// Waits, at most `limit`, until `done` holds for the cache. False if
    /// it did not in time (the caller answers anyway: this only makes a
    /// replica read its own writes).
    pub(crate) async fn wait_until(
        &self,
        limit: Duration,
        done: impl Fn(&BTreeMap<String, KeyValue>, Revision) -> bool,
    ) -> bool {
        // Subscribed before the first check, so no change is missed.
        let mut changes = self.applied.subscribe();
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            {
                let state = self.state.read();
                if done(&state.objects, state.revision) {
                    return true;
                }
            }
            match tokio::time::timeout_at(deadline, changes.changed()).await {
                Ok(Ok(())) => {}
                _ => return false,
            }
        }
    }
}

/// Everything under `prefix` at one revision, read in pages all pinned to
/// the first page's revision (a consistent snapshot however large).
pub(crate) async fn load(
    client: &Client,
    keys: &Keys,
    timeout: Duration,
) -> Result<(BTreeMap<String, KeyValue>, Revision)> {
    let (mut from, end) = keys.range("");
    let mut objects = BTreeMap::new();
    let mut revision = 0i64;
    let mut kv = client.kv_client();
    loop {
        let mut options = GetOptions::new()
            .with_range(end.clone())
            .with_limit(LOAD_PAGE);
        if revision > 0 {
            options = options.with_revision(revision);
        }
        let page = tokio::time::timeout(timeout, kv.get(from.clone(), Some(options)))
            .await
            .map_err(|_| timed_out(timeout))?
            .map_err(convert::error)?;
        if revision == 0 {
            revision = page
                .header()
                .map(|h| h.revision())
                .ok_or_else(|| StoreError::Backend("etcd answered without a header".into()))?;
        }
        for item in page.kvs() {
            match keys.kv(item) {
                Some(kv) => {
                    objects.insert(kv.key.clone(), kv);
                }
                None => tracing::warn!(key = ?item.key(), "skipping a key that is not UTF-8"),
            }
        }
        match page.kvs().last() {
            Some(last) if page.more() => {
                from = last.key().to_vec();
                from.push(0);
            }
            _ => return Ok((objects, convert::revision(revision))),
        }
    }
}

pub(crate) fn timed_out(limit: Duration) -> StoreError {
    StoreError::Unavailable(format!("etcd did not answer within {limit:?}"))
}

/// Why one watch of the cache ended.
enum Ended {
    Stopped,
    /// etcd no longer has the events after the cache's revision.
    Compacted(Revision),
    Failed(StoreError),
}

/// Keeps `cache` up to date until `stop` turns true: watch from the cache's
/// revision; after an error watch again (backing off); after compaction
/// load everything again.
pub(crate) async fn follow(
    client: Client,
    keys: Keys,
    cache: Arc<Cache>,
    compacted: Arc<std::sync::atomic::AtomicU64>,
    timeout: Duration,
    lag: Duration,
    mut stop: watch::Receiver<bool>,
) {
    let mut backoff = Duration::from_millis(100);
    loop {
        let ended = tokio::select! {
            ended = watch_once(&client, &keys, &cache, lag, &mut backoff) => ended,
            _ = stop.wait_for(|s| *s) => Ended::Stopped,
        };
        match ended {
            Ended::Stopped => return,
            Ended::Compacted(at) => {
                compacted.fetch_max(at, std::sync::atomic::Ordering::Relaxed);
                tracing::warn!(
                    cache_revision = cache.revision(),
                    compacted = at,
                    "etcd compacted past the store cache's revision; loading it again"
                );
                let loaded = tokio::select! {
                    loaded = load(&client, &keys, timeout) => loaded,
                    _ = stop.wait_for(|s| *s) => return,
                };
                match loaded {
                    Ok((objects, revision)) => {
                        cache.reset(objects, revision);
                        continue;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "loading the store cache from etcd failed")
                    }
                }
            }
            Ended::Failed(e) => {
                tracing::warn!(error = %e, retry_in = ?backoff, "the store cache's etcd watch failed")
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

async fn watch_once(
    client: &Client,
    keys: &Keys,
    cache: &Cache,
    lag: Duration,
    backoff: &mut Duration,
) -> Ended {
    let (start, end) = keys.range("");
    let options = WatchOptions::new()
        .with_range(end)
        .with_start_revision(convert::etcd_revision(cache.revision().saturating_add(1)));
    let mut stream = match client.watch_client().watch(start, Some(options)).await {
        Ok(s) => s,
        Err(e) => return Ended::Failed(convert::error(e)),
    };
    loop {
        let response = match stream.message().await {
            Ok(Some(r)) => r,
            Ok(None) => {
                return Ended::Failed(StoreError::Unavailable("etcd ended the watch".into()));
            }
            Err(e) => return Ended::Failed(convert::error(e)),
        };
        *backoff = Duration::from_millis(100);
        if response.compact_revision() > 0 {
            return Ended::Compacted(convert::revision(response.compact_revision()));
        }
        if response.canceled() {
            return Ended::Failed(StoreError::Backend(format!(
                "etcd canceled the watch: {}",
                response.cancel_reason()
            )));
        }
        let events: Vec<Event> = response
            .events()
            .iter()
            .filter_map(|e| keys.event(e))
            .collect();
        if !lag.is_zero() {
            tokio::time::sleep(lag).await;
        }
        cache.apply(events);
    }
}
