//! A work queue of object keys, as client-go's: a key is queued at most once;
//! a key added while it is being processed is processed again afterwards
//! (never twice at the same time); a failing key comes back after an
//! exponential backoff of its own.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::Notify;
use tokio::time::Instant;

/// First retry delay of a failing key.
pub const BACKOFF_BASE: Duration = Duration::from_millis(5);
/// Longest retry delay.
pub const BACKOFF_MAX: Duration = Duration::from_secs(60);

/// Delay before retry number `failures` (1 = first retry): base * 2^(n-1),
/// capped at [`BACKOFF_MAX`].
pub fn backoff_delay(failures: u32) -> Duration {
    let exp = failures.saturating_sub(1).min(31);
    BACKOFF_BASE.saturating_mul(1u32 << exp).min(BACKOFF_MAX)
}

#[derive(Default)]
struct Inner {
    ready: VecDeque<String>,
    /// Keys in `ready` (dedup).
    queued: HashSet<String>,
    /// Keys handed out and not yet `done`.
    processing: HashSet<String>,
    /// Keys added while processing: queued again on `done`.
    dirty: HashSet<String>,
    /// Keys waiting for their time, ordered by due time then sequence.
    delayed: BTreeMap<(Instant, u64), String>,
    /// Earliest due time per delayed key (a later add_after does not postpone).
    delayed_at: HashMap<String, (Instant, u64)>,
    failures: HashMap<String, u32>,
    /// When each key was queued without a success since (for the oldest
    /// item's age): set when it becomes ready, kept across retries,
    /// cleared by `forget`.
    since: HashMap<String, Instant>,
    seq: u64,
    closed: bool,
}

impl Inner {
    fn add(&mut self, key: String) {
        if !self.since.contains_key(&key) {
            self.since.insert(key.clone(), Instant::now());
        }
        if self.processing.contains(&key) {
            self.dirty.insert(key);
        } else if self.queued.insert(key.clone()) {
            self.ready.push_back(key);
        }
    }

    fn promote(&mut self, now: Instant) {
        while let Some(entry) = self.delayed.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let key = entry.remove();
            self.delayed_at.remove(&key);
            self.add(key);
        }
    }
}

/// The queue (share it in an `Arc`).
#[derive(Default)]
pub struct WorkQueue {
    inner: Mutex<Inner>,
    notify: Notify,
}

impl WorkQueue {
    pub fn new() -> Self {
        Self::default()
    }

    /// Queues `key` now.
    pub fn add(&self, key: impl Into<String>) {
        self.inner.lock().add(key.into());
        self.notify.notify_one();
    }

    /// Queues `key` after `delay` (an earlier pending time wins).
    pub fn add_after(&self, key: impl Into<String>, delay: Duration) {
        let key = key.into();
        let at = Instant::now() + delay;
        let mut inner = self.inner.lock();
        if let Some(&(prev, _)) = inner.delayed_at.get(&key)
            && prev <= at
        {
            return;
        }
        if let Some(old) = inner.delayed_at.remove(&key) {
            inner.delayed.remove(&old);
        }
        inner.seq += 1;
        let slot = (at, inner.seq);
        inner.delayed.insert(slot, key.clone());
        inner.delayed_at.insert(key, slot);
        drop(inner);
        self.notify.notify_one();
    }

    /// Queues `key` after its next backoff delay; returns the delay.
    pub fn retry(&self, key: &str) -> Duration {
        let delay = {
            let mut inner = self.inner.lock();
            let n = inner.failures.entry(key.to_string()).or_insert(0);
            *n = n.saturating_add(1);
            backoff_delay(*n)
        };
        self.add_after(key, delay);
        delay
    }

    /// Clears `key`'s failure count and age (it succeeded, or was given
    /// up). A key queued again meanwhile counts its age from now.
    pub fn forget(&self, key: &str) {
        let mut inner = self.inner.lock();
        inner.failures.remove(key);
        let again = inner.queued.contains(key)
            || inner.dirty.contains(key)
            || inner.delayed_at.contains_key(key);
        if again {
            inner.since.insert(key.to_string(), Instant::now());
        } else {
            inner.since.remove(key);
        }
    }

    /// Counts `key`'s wait from now (it was decided, even if it is queued
    /// again later, e.g. an unschedulable binding tried again for capacity).
    pub fn restart_age(&self, key: &str) {
        let mut inner = self.inner.lock();
        if let Some(t) = inner.since.get_mut(key) {
            *t = Instant::now();
        }
    }

    /// How long the key queued longest without a success has waited
    /// (ready, being processed, or waiting for a retry); `None` when none.
    pub fn oldest_age(&self) -> Option<Duration> {
        let inner = self.inner.lock();
        let oldest = inner.since.values().min().copied()?;
        Some(Instant::now().saturating_duration_since(oldest))
    }

    /// Marks `key` processed; queues it again if it was added meanwhile.
    pub fn done(&self, key: &str) {
        let mut inner = self.inner.lock();
        inner.processing.remove(key);
        if inner.dirty.remove(key) {
            inner.add(key.to_string());
            drop(inner);
            self.notify.notify_one();
        }
    }

    /// Keys ready now plus keys waiting for a retry.
    pub fn len(&self) -> usize {
        let inner = self.inner.lock();
        inner.ready.len() + inner.delayed.len()
    }

    /// True when nothing is queued or delayed.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Ends `pop` for good (it answers an empty batch).
    pub fn close(&self) {
        self.inner.lock().closed = true;
        self.notify.notify_waiters();
        self.notify.notify_one();
    }

    /// Waits for at least one key and takes up to `max` ready keys; each
    /// must be given back with [`done`](Self::done). Empty once closed.
    pub async fn pop(&self, max: usize) -> Vec<String> {
        loop {
            let next_due = {
                let mut inner = self.inner.lock();
                if inner.closed {
                    return Vec::new();
                }
                inner.promote(Instant::now());
                if !inner.ready.is_empty() {
                    let n = max.max(1).min(inner.ready.len());
                    let batch: Vec<String> = inner.ready.drain(..n).collect();
                    for k in &batch {
                        inner.queued.remove(k);
                        inner.processing.insert(k.clone());
                    }
                    return batch;
                }
                inner.delayed.first_key_value().map(|((at, _), _)| *at)
            };
            match next_due {
                Some(at) => {
                    tokio::select! {
                        _ = self.notify.notified() => {}
                        _ = tokio::time::sleep_until(at) => {}
                    }
                }
                None => self.notify.notified().await,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_caps() {
        assert_eq!(backoff_delay(1), Duration::from_millis(5));
        assert_eq!(backoff_delay(2), Duration::from_millis(10));
        assert_eq!(backoff_delay(5), Duration::from_millis(80));
        assert_eq!(backoff_delay(40), BACKOFF_MAX);
        assert_eq!(backoff_delay(0), Duration::from_millis(5));
    }

    #[tokio::test]
    async fn dedups_and_requeues_keys_added_while_processing() {
        let q = WorkQueue::new();
        q.add("a");
        q.add("b");
        q.add("a");
        assert_eq!(q.len(), 2);
        let batch = q.pop(10).await;
        assert_eq!(batch, vec!["a".to_string(), "b".to_string()]);
        // Added while processing: not handed out twice at once...
        q.add("a");
        assert_eq!(q.len(), 0);
        q.done("b");
        assert_eq!(q.len(), 0);
        // ...but queued again when done.
        q.done("a");
        assert_eq!(q.pop(10).await, vec!["a".to_string()]);
    }

    #[tokio::test(start_paused = true)]
    async fn failing_key_comes_back_after_growing_backoff() {
        let q = WorkQueue::new();
        q.add("k");
        let _ = q.pop(1).await;
        q.done("k");
        assert_eq!(q.retry("k"), Duration::from_millis(5));
        assert_eq!(q.retry("k"), Duration::from_millis(10), "earlier time kept");
        let start = Instant::now();
        assert_eq!(q.pop(1).await, vec!["k".to_string()]);
        assert_eq!(start.elapsed(), Duration::from_millis(5));
        q.done("k");
        assert_eq!(q.retry("k"), Duration::from_millis(20));
        q.forget("k");
        assert_eq!(q.retry("k"), Duration::from_millis(5), "forget resets");
    }

    #[tokio::test(start_paused = true)]
    async fn the_oldest_age_spans_retries_and_ends_with_success() {
        let q = WorkQueue::new();
        assert_eq!(q.oldest_age(), None);
        q.add("a");
        tokio::time::advance(Duration::from_secs(3)).await;
        q.add("b");
        assert_eq!(q.oldest_age(), Some(Duration::from_secs(3)));
        let _ = q.pop(10).await;
        q.done("a");
        q.done("b");
        // "a" failed: it keeps its age while it waits for the retry.
        q.retry("a");
        q.forget("b");
        tokio::time::advance(Duration::from_secs(2)).await;
        assert_eq!(q.oldest_age(), Some(Duration::from_secs(5)));
        assert_eq!(q.pop(10).await, vec!["a".to_string()]);
        q.done("a");
        q.forget("a");
        assert_eq!(q.oldest_age(), None, "success ends the wait");
        // A key added again while it was processed counts from then.
        q.add("c");
        let _ = q.pop(1).await;
        tokio::time::advance(Duration::from_secs(4)).await;
        q.add("c");
        q.done("c");
        q.forget("c");
        assert_eq!(q.oldest_age(), Some(Duration::ZERO));
    }
}
