//! A store watch turned into index updates: list a prefix (a reset), then
//! follow its events (apply / delete). A watch that falls behind or is
//! compacted lists again, so the index never misses a change; one bad object
//! is the handler's to skip, never a reason to stop.

use std::sync::Arc;
use std::time::Duration;

use hami_store::{Event, KeyValue, Store, StoreError};
use tokio::sync::watch;

/// One change under the watched prefix.
#[derive(Debug)]
pub enum Change {
    /// Everything under the prefix, at one revision: replace the index.
    Reset(Vec<KeyValue>),
    /// A key was created or updated.
    Apply(KeyValue),
    /// A key was deleted (its last value).
    Delete(KeyValue),
}

/// Pause before listing again after a failed watch.
const RELIST_DELAY: Duration = Duration::from_millis(200);

/// Feeds `handle` with the changes under `prefix` until `stop` turns true
/// or the store closes: list, then watch from the list's revision, all in
/// this one task (the index's single writer).
pub async fn run(
    store: Arc<dyn Store>,
    prefix: String,
    mut handle: impl FnMut(Change) + Send,
    mut stop: watch::Receiver<bool>,
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
            let next = tokio::select! {
                next = w.events.recv() => next,
                _ = stop.wait_for(|s| *s) => return,
            };
            match next {
                Some(Ok(Event::Put { kv, .. })) => handle(Change::Apply(kv)),
                Some(Ok(Event::Delete { prev, .. })) => handle(Change::Delete(prev)),
                Some(Err(StoreError::Closed)) | None => return,
                Some(Err(e)) => {
                    tracing::warn!(%prefix, error = %e, "controller watch ended; relisting");
                    break;
                }
            }
        }
    }
}

/// Spawns one [`run`] per prefix, each handing its changes to `handle` on
/// `shared` (the index's writer for that prefix).
pub fn spawn<S: Send + Sync + 'static>(
    store: &Arc<dyn Store>,
    prefixes: impl IntoIterator<Item = String>,
    shared: &Arc<S>,
    handle: fn(&S, Change),
    stop: &watch::Receiver<bool>,
) {
    for prefix in prefixes {
        let s = shared.clone();
        tokio::spawn(run(
            store.clone(),
            prefix,
            move |c| handle(&s, c),
            stop.clone(),
        ));
    }
}
