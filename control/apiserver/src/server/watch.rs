//! watch: newline-delimited `{"type","object"}` events streamed over a chunked
//! response, with Kubernetes' resourceVersion rules:
//!
//! * absent or "0" (or `sendInitialEvents=true`): synthetic ADDED events for
//!   the current state, then changes after it;
//! * N: every change after revision N; a compacted N answers one ERROR event
//!   carrying a 410 Expired Status;
//! * `allowWatchBookmarks=true`: BOOKMARK events every bookmark interval
//!   (and after the initial events when `sendInitialEvents=true`);
//! * `timeoutSeconds` ends the stream; so does server shutdown.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use hami_store::{Event, StoreError};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use super::State;
use super::dispatch::Ctx;
use super::keys;
use super::meta;
use super::metrics::WatchGuard;
use super::protobuf;
use super::read;
use super::registry::ResourceKind;
use super::request::{self, ListOptions, Representation};
use super::selector::{FieldSelector, Selectors};
use super::status::ApiError;
use super::table;

/// Longest a watch stays open without `timeoutSeconds` (Kubernetes picks 30-60 min).
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30 * 60);

/// Events buffered per watch before the writer waits for the client; a
/// client that leaves them all unread for the stall timeout
/// ([`super::limits::Limits::watch_stall_timeout`]) is closed.
const BUFFER: usize = 256;

/// Why [`Out::send`] stopped.
#[derive(Debug, PartialEq, Eq)]
enum Sent {
    /// The line is queued for the client.
    Queued,
    /// The client went away, the watch timed out or the server stops.
    Ended,
    /// The client left its buffer full for the stall timeout.
    Stalled,
}

impl Sent {
    /// Whether the watch goes on; counts and logs a stalled client.
    fn open(self, state: &State) -> bool {
        match self {
            Self::Queued => true,
            Self::Ended => false,
            Self::Stalled => {
                state.metrics.slow_watches_closed.inc();
                tracing::info!(
                    stall = ?state.config.limits.watch_stall_timeout,
                    "closing a watch whose client takes no events"
                );
                false
            }
        }
    }
}

/// The way to the client: a bounded buffer, drained by the HTTP body as the
/// client reads. A full buffer makes the watch wait for the client, at most
/// `stall`, and never past the watch's deadline or the server's shutdown;
/// the store's fan-out never waits for it (the store drops a watcher whose
/// own queue fills, [`StoreError::WatcherTooSlow`]).
struct Out<'a> {
    tx: mpsc::Sender<Result<Bytes, Infallible>>,
    stall: Duration,
    deadline: std::pin::Pin<&'a mut tokio::time::Sleep>,
    shutdown: &'a mut tokio::sync::watch::Receiver<bool>,
}

impl Out<'_> {
    async fn send(&mut self, line: Bytes) -> Sent {
        let line = match self.tx.try_send(Ok(line)) {
            Ok(()) => return Sent::Queued,
            Err(mpsc::error::TrySendError::Closed(_)) => return Sent::Ended,
            Err(mpsc::error::TrySendError::Full(line)) => line,
        };
        // A zero stall timeout turns the limit off (as 0 does every limit).
        let stall = if self.stall.is_zero() {
            Duration::from_secs(365 * 24 * 3600)
        } else {
            self.stall
        };
        tokio::select! {
            sent = tokio::time::timeout(stall, self.tx.send(line)) => match sent {
                Ok(Ok(())) => Sent::Queued,
                Ok(Err(_)) => Sent::Ended,
                Err(_) => Sent::Stalled,
            },
            _ = self.deadline.as_mut() => Sent::Ended,
            _ = async { let _ = self.shutdown.wait_for(|s| *s).await; } => Sent::Ended,
        }
    }
}

/// Watch of a single object (`GET .../name?watch=1`).
pub fn watch_one(state: &Arc<State>, ctx: &Ctx) -> Result<Response, ApiError> {
    let name = ctx.path.name.as_deref().unwrap_or_default();
    let mut options = ctx.query.list.clone();
    let by_name = FieldSelector::parse(&format!("metadata.name={name}"))
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    options.selectors = Selectors {
        labels: options.selectors.labels,
        fields: by_name,
    };
    start(state, ctx, options)
}

/// Watch of a collection.
pub fn watch(state: &Arc<State>, ctx: &Ctx) -> Result<Response, ApiError> {
    start(state, ctx, ctx.query.list.clone())
}

struct Encoder {
    kind: Arc<ResourceKind>,
    repr: Representation,
    include_object: Option<String>,
    /// Length-prefixed protobuf WatchEvents instead of JSON lines.
    protobuf: bool,
}

impl Encoder {
    fn line(&self, type_: &str, mut object: Value) -> Bytes {
        if type_ != "ERROR" && type_ != "BOOKMARK" {
            self.kind.present(&mut object);
        }
        let object = match (type_, self.repr) {
            ("ERROR" | "BOOKMARK", _) | (_, Representation::Object) => object,
            (_, Representation::Metadata) => table::partial_metadata(&object),
            (_, Representation::Table) => table::table(
                &self.kind,
                &[object],
                json!({}),
                self.include_object.as_deref(),
            ),
        };
        if self.protobuf {
            let mut object = object;
            // List items and store copies may lack their type; the envelope needs it.
            if let Some(o) = object.as_object_mut()
                && !o.contains_key("kind")
            {
                o.insert("apiVersion".into(), json!(self.kind.api_version()));
                o.insert("kind".into(), json!(self.kind.kind));
            }
            match protobuf::watch_frame(type_, &object) {
                Ok(frame) => return Bytes::from(frame),
                Err(e) => {
                    tracing::warn!(kind = %self.kind.kind, error = %e, "watch event has no protobuf form; closing with an error event");
                    let status = ApiError::Internal {
                        message: format!("encoding a watch event: {e}"),
                    }
                    .status();
                    return Bytes::from(
                        protobuf::watch_frame("ERROR", &status).unwrap_or_default(),
                    );
                }
            }
        }
        let mut line =
            serde_json::to_vec(&json!({"type": type_, "object": object})).unwrap_or_default();
        line.push(b'\n');
        Bytes::from(line)
    }

    fn bookmark(&self, revision: u64, initial_end: bool) -> Bytes {
        let mut metadata = json!({"resourceVersion": revision.to_string()});
        if initial_end {
            metadata["annotations"] = json!({"k8s.io/initial-events-end": "true"});
        }
        self.line(
            "BOOKMARK",
            json!({"kind": self.kind.kind, "apiVersion": self.kind.api_version(), "metadata": metadata}),
        )
    }
}

/// The watch event (type, object) for a store event under a selector, or
/// None when the selector hides it. A change that moves an object into or
/// out of the selection is ADDED or DELETED, as Kubernetes reports it.
fn translate(event: &Event, selectors: &Selectors) -> Option<(&'static str, Value)> {
    match event {
        Event::Put { kv, prev } => {
            let object = meta::decode_stored(&kv.value, kv.mod_revision)?;
            let now = selectors.matches(&object);
            let before = prev
                .as_ref()
                .and_then(|p| meta::decode_stored(&p.value, p.mod_revision))
                .map(|p| selectors.matches(&p));
            match (before, now) {
                (None, true) => Some(("ADDED", object)),
                (Some(true), true) => Some(("MODIFIED", object)),
                (Some(false), true) => Some(("ADDED", object)),
                (Some(true), false) => Some(("DELETED", object)),
                (_, false) => None,
            }
        }
        Event::Delete { prev, revision } => {
            let object = meta::decode_stored(&prev.value, *revision)?;
            selectors.matches(&object).then_some(("DELETED", object))
        }
    }
}

fn start(state: &Arc<State>, ctx: &Ctx, options: ListOptions) -> Result<Response, ApiError> {
    let kind = ctx.path.kind.clone();
    let ns = ctx.path.namespace.clone();
    let protobuf = match request::response_encoding(&ctx.headers) {
        request::Encoding::Protobuf { json_too } => {
            let has_message =
                protobuf::schema::message_of(&kind.api_version(), &kind.kind).is_some();
            if !has_message && !json_too {
                return Err(ApiError::NotAcceptable {
                    message: format!(
                        "{} has no protobuf encoding; only the following media types are accepted: application/json",
                        kind.kind
                    ),
                });
            }
            has_message && ctx.repr == Representation::Object
        }
        request::Encoding::Json => false,
    };
    let encoder = Encoder {
        kind: kind.clone(),
        repr: ctx.repr,
        include_object: ctx.query.include_object.clone(),
        protobuf,
    };
    let from_now = matches!(options.resource_version.as_deref(), None | Some("0"));
    let initial = from_now || options.send_initial_events;
    let (initial_items, start_revision) = if initial {
        let mut list_options = options.clone();
        list_options.limit = 0;
        list_options.continue_token = None;
        let page = read::list_page(state, &kind, ns.as_deref(), &list_options)?;
        (page.items, page.revision)
    } else {
        let rv = options.resource_version.as_deref().unwrap_or("0");
        (Vec::new(), request::parse_revision(rv)?)
    };
    let prefix = keys::list_prefix(&kind, ns.as_deref());
    let (tx, rx) = mpsc::channel::<Result<Bytes, Infallible>>(BUFFER);
    let watch = state.store.watch(&prefix, start_revision);
    let state = state.clone();
    let timeout = options
        .timeout_seconds
        .map(Duration::from_secs)
        .unwrap_or(DEFAULT_TIMEOUT);
    let stall = state.config.limits.watch_stall_timeout;
    tokio::spawn(async move {
        let _guard = WatchGuard::new(&state.metrics.open_watches);
        let mut shutdown = state.shutdown.clone();
        let deadline = tokio::time::sleep(timeout);
        tokio::pin!(deadline);
        let mut out = Out {
            tx,
            stall,
            deadline: deadline.as_mut(),
            shutdown: &mut shutdown,
        };
        let mut store_watch = match watch {
            Ok(w) => w,
            Err(e) => {
                let err = ApiError::from_store(e, &kind.group, &kind.plural, "");
                out.send(encoder.line("ERROR", err.status())).await;
                return;
            }
        };
        for object in initial_items {
            if !out.send(encoder.line("ADDED", object)).await.open(&state) {
                return;
            }
        }
        let mut last_revision = start_revision;
        if options.send_initial_events
            && options.allow_bookmarks
            && !out
                .send(encoder.bookmark(last_revision, true))
                .await
                .open(&state)
        {
            return;
        }
        let interval = state
            .config
            .bookmark_interval
            .max(Duration::from_millis(10));
        let mut bookmarks =
            tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
        loop {
            let line = tokio::select! {
                event = store_watch.events.recv() => {
                    match event {
                        Some(Ok(event)) => {
                            last_revision = event.revision();
                            match translate(&event, &options.selectors) {
                                Some((type_, object)) => encoder.line(type_, object),
                                None => continue,
                            }
                        }
                        Some(Err(e)) => {
                            let status = match e {
                                StoreError::WatcherTooSlow | StoreError::Compacted { .. } => ApiError::Gone {
                                    message: format!("watch closed: {e}"),
                                },
                                other => ApiError::from_store(other, &kind.group, &kind.plural, ""),
                            };
                            out.send(encoder.line("ERROR", status.status())).await;
                            return;
                        }
                        None => return,
                    }
                }
                _ = bookmarks.tick(), if options.allow_bookmarks => {
                    encoder.bookmark(last_revision, false)
                }
                _ = out.deadline.as_mut() => return,
                _ = async { let _ = out.shutdown.wait_for(|s| *s).await; } => return,
                _ = out.tx.closed() => return,
            };
            if !out.send(line).await.open(&state) {
                return;
            }
        }
    });
    let mut response = (StatusCode::OK, Body::from_stream(ReceiverStream::new(rx))).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(if protobuf {
            protobuf::WATCH_MEDIA_TYPE
        } else {
            "application/json"
        }),
    );
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::selector::LabelSelector;
    use hami_store::KeyValue;

    fn kv(labels: Value, rev: u64) -> KeyValue {
        KeyValue {
            key: "/registry/core/pods/ns/a".into(),
            value: serde_json::to_vec(
                &json!({"metadata": {"name": "a", "namespace": "ns", "labels": labels}}),
            )
            .unwrap(),
            create_revision: 1,
            mod_revision: rev,
        }
    }

    #[test]
    fn selector_transitions_become_added_and_deleted() {
        let sel = Selectors {
            labels: LabelSelector::parse("app=web").unwrap(),
            fields: FieldSelector::default(),
        };
        let web = || json!({"app": "web"});
        let api = || json!({"app": "api"});
        let put = |prev: Option<KeyValue>, now: KeyValue| Event::Put { kv: now, prev };
        let kind = |e: Event| translate(&e, &sel).map(|(t, _)| t);
        assert_eq!(kind(put(None, kv(web(), 2))), Some("ADDED"));
        assert_eq!(
            kind(put(Some(kv(web(), 2)), kv(web(), 3))),
            Some("MODIFIED")
        );
        assert_eq!(kind(put(Some(kv(web(), 2)), kv(api(), 3))), Some("DELETED"));
        assert_eq!(kind(put(Some(kv(api(), 2)), kv(web(), 3))), Some("ADDED"));
        assert_eq!(kind(put(Some(kv(api(), 2)), kv(api(), 3))), None);
        let deleted = Event::Delete {
            prev: kv(web(), 3),
            revision: 4,
        };
        let (t, o) = translate(&deleted, &sel).unwrap();
        assert_eq!(
            (t, o["metadata"]["resourceVersion"].as_str()),
            ("DELETED", Some("4"))
        );
    }
}
