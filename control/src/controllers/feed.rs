//! A store watch turned into index updates: list a prefix (a reset), then
//! follow its events (apply / delete). A watch that falls behind or is
//! compacted lists again, so the index never misses a change; one bad object
//! is the handler's to skip, never a reason to stop.
//!
//! Two rules every controller inherits from here (the kube-rs reflector's
//! `Init` … `InitDone`, and client-go's `WaitForCacheSync`):
//!
//! * **A relist never shows a partial world.** The whole listing, taken at
//!   one revision, is handed over as ONE [`Change::Reset`]; a handler builds
//!   the new state beside the old one and swaps it in whole under one write
//!   lock ([`swap_in`]), so a reconcile reads either the old world or the
//!   new one, never a half-emptied index.
//! * **Nothing is decided before every feed has listed.** Each feed
//!   registers with its controller's [`Tracker`] and marks its first list;
//!   the runner waits for all of them ([`Tracker::wait_synced`]). Relists
//!   after the first are counted (`hami_feed_relists_total{controller}`).
//!
//! Events that arrive together are handed over back to back without
//! yielding in between, up to [`DRAIN`] at a time, so a burst is consumed
//! at the pace it is produced.

use std::sync::Arc;
use std::time::Duration;

use hami_store::{Event, KeyValue, Store, StoreError};
use parking_lot::RwLock;
use tokio::sync::watch;

use super::tracker::{FeedToken, Tracker};

/// One change under the watched prefix.
#[derive(Debug)]
pub enum Change {
    /// Everything under the prefix, at one revision: replace the index
    /// (build the new one beside, then [`swap_in`]).
    Reset(Vec<KeyValue>),
    /// A key was created or updated.
    Apply(KeyValue),
    /// A key was deleted (its last value).
    Delete(KeyValue),
}

/// Pause before listing again after a failed watch.
const RELIST_DELAY: Duration = Duration::from_millis(200);

/// Events handed over in one go when they are already waiting.
pub const DRAIN: usize = 256;

/// Replaces the index behind `lock` with `fresh` in one write; answers the
/// old one (to tell what changed).
pub fn swap_in<I>(lock: &RwLock<I>, fresh: I) -> I {
    std::mem::replace(&mut *lock.write(), fresh)
}

/// Feeds `handle` with the changes under `prefix` until `stop` turns true
/// or the store closes: list, then watch from the list's revision, all in
/// this one task (the index's single writer). `feed` marks each list.
pub async fn run(
    store: Arc<dyn Store>,
    prefix: String,
    mut handle: impl FnMut(Change) + Send,
    mut stop: watch::Receiver<bool>,
    mut feed: FeedToken,
) {
    loop {
        if *stop.borrow() {
            return;
        }
        let listed = match store.list(&prefix, None, 0) {
            Ok(l) => l,
            Err(StoreError::Closed) => return,
            Err(e) => {
                tracing::warn!(%prefix, error = %e, "listing for a controller failed; retrying");
                tokio::time::sleep(RELIST_DELAY).await;
                continue;
            }
        };
        let revision = listed.revision;
        handle(Change::Reset(listed.items));
        feed.listed();
        let mut w = match store.watch(&prefix, revision) {
            Ok(w) => w,
            Err(StoreError::Closed) => return,
            Err(e) => {
                tracing::warn!(%prefix, error = %e, "watch for a controller failed; relisting");
                tokio::time::sleep(RELIST_DELAY).await;
                continue;
            }
        };
        loop {
            let first = tokio::select! {
                next = w.events.recv() => next,
                _ = stop.wait_for(|s| *s) => return,
            };
            // The first event, then whatever is already waiting (up to
            // DRAIN in all) before yielding again.
            let mut next = first;
            let mut handed = 0;
            let relist = loop {
                match next {
                    Some(Ok(Event::Put { kv, .. })) => handle(Change::Apply(kv)),
                    Some(Ok(Event::Delete { prev, .. })) => handle(Change::Delete(prev)),
                    Some(Err(StoreError::Closed)) | None => return,
                    Some(Err(e)) => {
                        tracing::warn!(%prefix, error = %e, "controller watch ended; relisting");
                        break true;
                    }
                }
                handed += 1;
                if handed == DRAIN {
                    break false;
                }
                match w.events.try_recv() {
                    Ok(e) => next = Some(e),
                    Err(_) => break false,
                }
            };
            if relist {
                break;
            }
        }
    }
}

/// Spawns one [`run`] per prefix, each handing its changes to `handle` on
/// `shared` (the index's writer for that prefix) and registered with
/// `tracker`, so the controller waits for their first lists.
pub fn spawn<S: Send + Sync + 'static>(
    store: &Arc<dyn Store>,
    prefixes: impl IntoIterator<Item = String>,
    shared: &Arc<S>,
    handle: fn(&S, Change),
    tracker: &Tracker,
    stop: &watch::Receiver<bool>,
) {
    for prefix in prefixes {
        let s = shared.clone();
        let token = tracker.feed_started();
        tokio::spawn(run(
            store.clone(),
            prefix,
            move |c| handle(&s, c),
            stop.clone(),
            token,
        ));
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use std::collections::BTreeMap;

    use hami_store::{FaultMetrics, FaultPlan, FaultyStore, MemoryStore};
    use parking_lot::Mutex;

    use super::*;

    /// An index of key -> value bytes kept by a feed the way a controller
    /// keeps one: a relist builds the new map beside the old and swaps it.
    #[derive(Default)]
    struct Mirror {
        map: RwLock<BTreeMap<String, Vec<u8>>>,
        /// Sizes the index was seen at by a concurrent reader.
        seen: Mutex<Vec<usize>>,
    }

    impl Mirror {
        fn on(&self, change: Change) {
            match change {
                Change::Reset(items) => {
                    let fresh = items.into_iter().map(|kv| (kv.key, kv.value)).collect();
                    swap_in(&self.map, fresh);
                }
                Change::Apply(kv) => {
                    self.map.write().insert(kv.key, kv.value);
                }
                Change::Delete(kv) => {
                    self.map.write().remove(&kv.key);
                }
            }
        }
    }

    /// What a fresh list of `/r/` holds.
    fn listed(store: &dyn Store) -> BTreeMap<String, Vec<u8>> {
        store
            .list("/r/", None, 0)
            .unwrap()
            .items
            .into_iter()
            .map(|kv| (kv.key, kv.value))
            .collect()
    }

    #[tokio::test]
    async fn a_burst_of_many_drains_loses_no_event_without_a_relist() {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
        let mirror = Arc::new(Mirror::default());
        let tracker = Tracker::standalone("binding");
        let (_stop_tx, stop) = watch::channel(false);
        spawn(
            &store,
            ["/r/".to_string()],
            &mirror,
            Mirror::on,
            &tracker,
            &stop,
        );
        tracker.wait_synced().await;
        // Written without yielding: the feed finds them all waiting and
        // hands them over DRAIN at a time.
        for i in 0..(DRAIN * 5 + 7) {
            let key = format!("/r/{:04}", i % 300);
            let value = i.to_be_bytes().to_vec();
            if i < 300 {
                store.create(&key, value).await.unwrap();
            } else {
                store.update(&key, value, None).await.unwrap();
            }
        }
        let want = listed(&*store);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while *mirror.map.read() != want {
            assert!(
                tokio::time::Instant::now() < deadline,
                "an event was lost between drains"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(tracker.relists(), 0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn relists_mid_burst_converge_on_the_store_and_never_show_a_partial_index() {
        let memory: Arc<dyn Store> = Arc::new(MemoryStore::new());
        // 100 objects that stay for the whole test.
        for i in 0..100 {
            memory
                .create(&format!("/r/keep-{i:03}"), vec![0])
                .await
                .unwrap();
        }
        let metrics = FaultMetrics::default();
        let plan = FaultPlan {
            watch_behind_after: Some(40),
            seed: 3,
            ..FaultPlan::default()
        };
        let store: Arc<dyn Store> =
            Arc::new(FaultyStore::new(memory.clone(), plan, metrics.clone()));
        let mirror = Arc::new(Mirror::default());
        let tracker = Tracker::standalone("binding");
        let (stop_tx, stop) = watch::channel(false);
        spawn(
            &store,
            ["/r/".to_string()],
            &mirror,
            Mirror::on,
            &tracker,
            &stop,
        );
        tracker.wait_synced().await;
        // A reader that samples the index's size all along: it must never
        // see fewer than the 100 objects that never go away.
        let reader = {
            let mirror = mirror.clone();
            let mut stop = stop.clone();
            tokio::spawn(async move {
                loop {
                    let n = mirror
                        .map
                        .read()
                        .keys()
                        .filter(|k| k.starts_with("/r/keep"))
                        .count();
                    mirror.seen.lock().push(n);
                    tokio::select! {
                        _ = tokio::task::yield_now() => {}
                        _ = stop.wait_for(|s| *s) => return,
                    }
                }
            })
        };
        // The burst: creates, updates and deletes of other keys, spread
        // out so that the feed falls behind (and relists) in its middle.
        for i in 0..600u32 {
            if i % 10 == 0 {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            let key = format!("/r/burst-{:03}", (i * 7) % 60);
            let value = i.to_be_bytes().to_vec();
            if memory.get(&key).unwrap().is_none() {
                memory.create(&key, value).await.unwrap();
            } else if i % 4 == 0 {
                memory.delete(&key, None).await.unwrap();
            } else {
                memory.update(&key, value, None).await.unwrap();
            }
        }
        let want = listed(&*memory);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        // Converged, and every watch that fell behind has been relisted.
        while *mirror.map.read() != want || tracker.relists() != metrics.count("watch_behind") {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the index never matched a fresh list"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let _ = stop_tx.send(true);
        reader.await.unwrap();
        let relists = tracker.relists();
        assert!(relists >= 3, "relists forced mid-burst: {relists}");
        let seen = mirror.seen.lock();
        assert!(!seen.is_empty());
        assert!(
            seen.iter().all(|n| *n == 100),
            "a reader saw a partial index: {:?}",
            seen.iter()
                .filter(|n| **n != 100)
                .take(5)
                .collect::<Vec<_>>()
        );
    }
}
