//! The single committer thread: group commit of queued writes.
//!
//! It takes every write request waiting in the queue (up to `max_batch`),
//! applies them in arrival order inside ONE redb write transaction — each
//! request gets its own revision and its own answer; a failed precondition
//! fails only that request and consumes no revision — trims the change log,
//! commits once with `Durability::Immediate` (one fsync for the group), then
//! answers every request and hands the events to the watchers.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use redb::{Durability, ReadableTable, WriteTransaction};
use tokio::sync::{mpsc, oneshot};

use super::codec::{decode_object, encode_event, encode_object};
use super::{LOG, META, META_COMPACTED, META_REVISION, OBJECTS, Shared, backend};
use crate::memory::check_expected;
use crate::{Event, KeyValue, Result, Revision, StoreError};

/// One write, as queued by a caller.
pub(super) enum Op {
    Create {
        key: String,
        value: Vec<u8>,
    },
    Update {
        key: String,
        value: Vec<u8>,
        expected: Option<Revision>,
    },
    Delete {
        key: String,
        expected: Option<Revision>,
    },
}

pub(super) struct Request {
    pub(super) op: Op,
    pub(super) reply: oneshot::Sender<Result<Event>>,
}

/// Revision counters as of the last successful commit.
pub(super) struct Committed {
    pub(super) revision: Revision,
    pub(super) compacted: Revision,
}

/// Run until every sender of `rx` is gone and the queue is drained.
pub(super) fn run(shared: Arc<Shared>, mut rx: mpsc::Receiver<Request>, mut committed: Committed) {
    let max_batch = shared.options.max_batch.max(1);
    let mut batch: Vec<Request> = Vec::with_capacity(max_batch);
    while let Some(first) = rx.blocking_recv() {
        batch.push(first);
        while batch.len() < max_batch {
            match rx.try_recv() {
                Ok(request) => batch.push(request),
                Err(_) => break,
            }
        }
        commit_batch(&shared, &mut batch, &mut committed);
    }
    shared.hub.lock().close_all();
}

fn commit_batch(shared: &Shared, batch: &mut Vec<Request>, committed: &mut Committed) {
    let mut results: Vec<Result<Event>> = Vec::with_capacity(batch.len());
    let start = Instant::now();
    let outcome = write_batch(shared, batch, committed, &mut results);
    match outcome {
        Ok(next) => {
            let rejected = results.iter().filter(|r| r.is_err()).count();
            shared
                .options
                .metrics
                .committed(batch.len(), rejected, start.elapsed().as_secs_f64());
            *committed = next;
            shared.revision.store(committed.revision, Ordering::Release);
            shared.commits.fetch_add(1, Ordering::Relaxed);
            let events: Vec<Event> = results
                .iter()
                .filter_map(|r| r.as_ref().ok().cloned())
                .collect();
            shared
                .writes
                .fetch_add(events.len() as u64, Ordering::Relaxed);
            for (request, result) in batch.drain(..).zip(results) {
                // A caller that gave up waiting is not an error.
                let _ = request.reply.send(result);
            }
            shared.hub.lock().publish(&events);
        }
        Err(err) => {
            shared.options.metrics.commit_failures.inc();
            tracing::error!(error = %err, requests = batch.len(), "store commit failed");
            for request in batch.drain(..) {
                let _ = request.reply.send(Err(err.clone()));
            }
        }
    }
}

/// Apply the batch in one transaction and commit it. Per-request outcomes go
/// to `results`; the returned error is for the whole transaction.
fn write_batch(
    shared: &Shared,
    batch: &[Request],
    committed: &Committed,
    results: &mut Vec<Result<Event>>,
) -> Result<Committed> {
    let mut txn = shared.db.begin_write().map_err(backend)?;
    txn.set_durability(Durability::Immediate).map_err(backend)?;
    let mut revision = committed.revision;
    let mut log_entries: Vec<(Revision, Vec<u8>)> = Vec::with_capacity(batch.len());
    {
        let mut objects = txn.open_table(OBJECTS).map_err(backend)?;
        for request in batch {
            match apply(&mut objects, &request.op, revision + 1) {
                Ok(event) => {
                    revision += 1;
                    log_entries.push((revision, encode_event(&event)));
                    results.push(Ok(event));
                }
                Err(ApplyError::Store(e)) => results.push(Err(e)),
                // The transaction is dropped uncommitted: nothing of the batch lands.
                Err(ApplyError::Backend(e)) => return Err(e),
            }
        }
    }
    let compacted = committed
        .compacted
        .max(revision.saturating_sub(shared.options.history));
    write_log_and_meta(&txn, &log_entries, committed.compacted, compacted, revision)?;
    txn.commit().map_err(backend)?;
    Ok(Committed {
        revision,
        compacted,
    })
}

fn write_log_and_meta(
    txn: &WriteTransaction,
    entries: &[(Revision, Vec<u8>)],
    old_compacted: Revision,
    compacted: Revision,
    revision: Revision,
) -> Result<()> {
    let mut log = txn.open_table(LOG).map_err(backend)?;
    for (rev, bytes) in entries {
        log.insert(*rev, bytes.as_slice()).map_err(backend)?;
    }
    if compacted > old_compacted {
        log.retain_in(..=compacted, |_, _| false).map_err(backend)?;
    }
    let mut meta = txn.open_table(META).map_err(backend)?;
    meta.insert(META_REVISION, revision).map_err(backend)?;
    meta.insert(META_COMPACTED, compacted).map_err(backend)?;
    Ok(())
}

enum ApplyError {
    /// The request's own failure (precondition); the batch goes on.
    Store(StoreError),
    /// The storage failed: the whole batch fails.
    Backend(StoreError),
}

fn apply(
    objects: &mut redb::Table<&str, &[u8]>,
    op: &Op,
    revision: Revision,
) -> Result<Event, ApplyError> {
    let key = match op {
        Op::Create { key, .. } | Op::Update { key, .. } | Op::Delete { key, .. } => key.as_str(),
    };
    let current = read(objects, key)?;
    let event = match (op, current) {
        (Op::Create { .. }, Some(_)) => {
            return Err(ApplyError::Store(StoreError::AlreadyExists(key.to_owned())));
        }
        (Op::Update { .. } | Op::Delete { .. }, None) => {
            return Err(ApplyError::Store(StoreError::NotFound(key.to_owned())));
        }
        (Op::Create { value, .. }, None) => Event::Put {
            kv: KeyValue {
                key: key.to_owned(),
                value: value.clone(),
                create_revision: revision,
                mod_revision: revision,
            },
            prev: None,
        },
        (
            Op::Update {
                value, expected, ..
            },
            Some(prev),
        ) => {
            check_expected(&prev, *expected).map_err(ApplyError::Store)?;
            Event::Put {
                kv: KeyValue {
                    key: key.to_owned(),
                    value: value.clone(),
                    create_revision: prev.create_revision,
                    mod_revision: revision,
                },
                prev: Some(prev),
            }
        }
        (Op::Delete { expected, .. }, Some(prev)) => {
            check_expected(&prev, *expected).map_err(ApplyError::Store)?;
            Event::Delete { prev, revision }
        }
    };
    match &event {
        Event::Put { kv, .. } => objects
            .insert(key, encode_object(kv).as_slice())
            .map(|_| ()),
        Event::Delete { .. } => objects.remove(key).map(|_| ()),
    }
    .map_err(|e| ApplyError::Backend(backend(e)))?;
    Ok(event)
}

fn read(objects: &redb::Table<&str, &[u8]>, key: &str) -> Result<Option<KeyValue>, ApplyError> {
    let guard = objects
        .get(key)
        .map_err(|e| ApplyError::Backend(backend(e)))?;
    match guard {
        None => Ok(None),
        Some(bytes) => decode_object(key, bytes.value())
            .map(Some)
            .map_err(|e| ApplyError::Backend(backend(e))),
    }
}
