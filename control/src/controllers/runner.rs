//! The reconcile loop the queue-driven controllers share: take up to
//! [`BATCH`] keys, reconcile them concurrently, count each outcome, forget
//! the key's failures on success and retry it with its backoff on failure.

use std::future::Future;
use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use tokio::sync::watch;

use super::objects::ObjectError;
use super::queue::WorkQueue;

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

/// Runs `shared`'s reconcile loop until `stop` turns true or its queue closes.
pub fn spawn<R: Reconciler>(
    shared: Arc<R>,
    mut stop: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
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
                return;
            }
            let delay = queue.retry(key);
            tracing::debug!(key, error = %e, ?delay, "{}: retrying", R::NAME);
        }
    }
}
