//! The reconcile loop the queue-driven controllers share: wait until every
//! feed has listed, then take up to [`BATCH`] keys, reconcile them
//! concurrently, count each outcome, forget the key's failures on success
//! and retry it with its backoff on failure.
//!
//! A reconcile that could not do all it should (a write failed, an input is
//! missing or not readable yet) must answer `Err`, never `Ok`: only an
//! error brings the key back. [`Incomplete`] names such a reconcile.

use std::future::Future;
use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use tokio::sync::watch;

use super::objects::ObjectError;
use super::queue::WorkQueue;
use super::tracker::Tracker;

/// Keys handled per pass (reconciled concurrently).
pub const BATCH: usize = 64;

/// Label of a reconcile counter: its outcome (a fixed set per controller).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabel {
    pub result: &'static str,
}

/// A controller driven by a [`WorkQueue`] of keys.
pub trait Reconciler: Send + Sync + 'static {
    /// Prefix of this controller's log lines.
    const NAME: &'static str;

    fn queue(&self) -> &WorkQueue;

    /// The controller's feeds and queue state.
    fn tracker(&self) -> &Tracker;

    /// Reconciles one key; the outcome names what happened.
    fn reconcile(
        &self,
        key: &str,
    ) -> impl Future<Output = Result<&'static str, ObjectError>> + Send;

    /// Counts one reconcile by outcome (`"error"` for a failure).
    fn count(&self, outcome: &'static str);

    /// Whether `e` is final, so that retrying cannot help (the
    /// implementation logs why). By default every failure is retried.
    fn give_up(&self, _key: &str, _e: &ObjectError) -> bool {
        false
    }
}

/// Runs `shared`'s reconcile loop until `stop` turns true or its queue
/// closes; nothing is reconciled before the controller's feeds synced.
pub fn spawn<R: Reconciler>(
    shared: Arc<R>,
    mut stop: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    shared
        .tracker()
        .spawn_sampler(shared.clone(), R::queue, stop.clone());
    tokio::spawn(async move {
        tokio::select! {
            _ = shared.tracker().wait_synced() => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        loop {
            let batch = tokio::select! {
                b = shared.queue().pop(BATCH) => b,
                _ = stop.wait_for(|s| *s) => return,
            };
            if batch.is_empty() {
                return;
            }
            futures::future::join_all(batch.iter().map(|k| reconcile_key(&*shared, k))).await;
        }
    })
}

async fn reconcile_key<R: Reconciler>(shared: &R, key: &str) {
    let result = shared.reconcile(key).await;
    let queue = shared.queue();
    queue.done(key);
    match result {
        Ok(outcome) => {
            queue.forget(key);
            shared.count(outcome);
        }
        Err(e) => {
            shared.count("error");
            if shared.give_up(key, &e) {
                queue.forget(key);
                return;
            }
            shared.tracker().retried();
            let delay = queue.retry(key);
            tracing::debug!(key, error = %e, ?delay, "{}: retrying", R::NAME);
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use std::time::Duration;

    use parking_lot::Mutex;

    use super::*;

    /// A controller that records what it reconciled and fails a key the
    /// first `failures` times, as one with an input not yet known does.
    struct Fake {
        queue: WorkQueue,
        tracker: Tracker,
        seen: Mutex<Vec<String>>,
        failures: Mutex<u32>,
    }

    impl Reconciler for Fake {
        const NAME: &'static str = "fake";

        fn queue(&self) -> &WorkQueue {
            &self.queue
        }

        fn tracker(&self) -> &Tracker {
            &self.tracker
        }

        async fn reconcile(&self, key: &str) -> Result<&'static str, ObjectError> {
            self.seen.lock().push(key.to_string());
            let mut f = self.failures.lock();
            if *f > 0 {
                *f -= 1;
                return Err(ObjectError::Incomplete("cluster b not known yet".into()));
            }
            Ok("changed")
        }

        fn count(&self, _outcome: &'static str) {}
    }

    fn fake(failures: u32) -> Arc<Fake> {
        Arc::new(Fake {
            queue: WorkQueue::new(),
            tracker: Tracker::standalone("binding"),
            seen: Mutex::default(),
            failures: Mutex::new(failures),
        })
    }

    #[tokio::test(start_paused = true)]
    async fn nothing_is_reconciled_before_every_feed_listed() {
        let f = fake(0);
        let mut clusters = f.tracker.feed_started();
        let mut bindings = f.tracker.feed_started();
        f.queue.add("/b/web");
        let (_stop, rx) = watch::channel(false);
        let _task = spawn(f.clone(), rx);
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(f.seen.lock().is_empty(), "decided before any feed listed");
        clusters.listed();
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(
            f.seen.lock().is_empty(),
            "decided with one feed still unlisted"
        );
        bindings.listed();
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert_eq!(*f.seen.lock(), vec!["/b/web".to_string()]);
    }

    #[tokio::test(start_paused = true)]
    async fn an_incomplete_reconcile_comes_back_until_it_succeeds() {
        let f = fake(3);
        f.tracker.feed_started().listed();
        f.queue.add("/b/web");
        let (_stop, rx) = watch::channel(false);
        let _task = spawn(f.clone(), rx);
        // 5 + 10 + 20 ms of backoff, then the fourth try succeeds.
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(f.seen.lock().len(), 4, "three failures, then success");
        assert_eq!(f.tracker.retries(), 3);
        assert_eq!(f.queue.oldest_age(), None, "the success ended its wait");
        assert!(f.queue.is_empty());
    }
}
