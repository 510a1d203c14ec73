//! Between etcd's shapes and the store's: keys under the store's prefix,
//! revisions (etcd's are i64), events and errors.

use crate::{Event, KeyValue, Revision, StoreError};

/// The store's keys live under one etcd prefix (`/hami/` by default), so
/// several control planes, or other applications, can share an etcd cluster.
#[derive(Clone, Debug)]
pub(crate) struct Keys {
    prefix: String,
}

impl Keys {
    pub(crate) fn new(prefix: &str) -> Self {
        Keys {
            prefix: prefix.to_owned(),
        }
    }

    /// The etcd key of a store key.
    pub(crate) fn full(&self, key: &str) -> Vec<u8> {
        let mut full = Vec::with_capacity(self.prefix.len() + key.len());
        full.extend_from_slice(self.prefix.as_bytes());
        full.extend_from_slice(key.as_bytes());
        full
    }

    /// The store key of an etcd key; `None` for keys outside the prefix or
    /// not UTF-8 (written by someone else: never ours).
    pub(crate) fn strip(&self, key: &[u8]) -> Option<String> {
        let rest = key.strip_prefix(self.prefix.as_bytes())?;
        String::from_utf8(rest.to_vec()).ok()
    }

    /// `(start, end)` of etcd's range for every store key starting with
    /// `prefix`: `end` is the first key past the prefix (etcd's convention:
    /// `\0` means "to the end of the keyspace").
    pub(crate) fn range(&self, prefix: &str) -> (Vec<u8>, Vec<u8>) {
        let start = self.full(prefix);
        (start.clone(), range_end(start))
    }

    /// The store key converted from etcd's, with etcd's revisions.
    pub(crate) fn kv(&self, kv: &etcd_client::KeyValue) -> Option<KeyValue> {
        Some(KeyValue {
            key: self.strip(kv.key())?,
            value: kv.value().to_vec(),
            create_revision: revision(kv.create_revision()),
            mod_revision: revision(kv.mod_revision()),
        })
    }

    /// One etcd watch event as the store's. A deletion is told by the
    /// version etcd reports (zero for a deleted key, at least one for a put);
    /// for an update `prev` is the previous value when etcd still had it.
    pub(crate) fn event(&self, event: &etcd_client::Event) -> Option<Event> {
        let kv = event.kv()?;
        if kv.version() == 0 {
            let key = self.strip(kv.key())?;
            let prev = match event.prev_kv().and_then(|p| self.kv(p)) {
                Some(prev) => prev,
                // Only if etcd lost the previous value (compacted away):
                // the key is still reported deleted, with no value.
                None => KeyValue {
                    key,
                    value: Vec::new(),
                    create_revision: 0,
                    mod_revision: 0,
                },
            };
            Some(Event::Delete {
                prev,
                revision: revision(kv.mod_revision()),
            })
        } else {
            let prev = if kv.version() == 1 {
                None
            } else {
                event.prev_kv().and_then(|p| self.kv(p))
            };
            Some(Event::Put {
                kv: self.kv(kv)?,
                prev,
            })
        }
    }
}

/// The smallest key greater than every key starting with `prefix`.
fn range_end(mut prefix: Vec<u8>) -> Vec<u8> {
    while let Some(&last) = prefix.last() {
        if last < 0xff {
            if let Some(l) = prefix.last_mut() {
                *l = last + 1;
            }
            return prefix;
        }
        prefix.pop();
    }
    vec![0]
}

/// etcd's revisions are positive i64s; anything else reads as 0.
pub(crate) fn revision(r: i64) -> Revision {
    Revision::try_from(r).unwrap_or(0)
}

/// A store revision as etcd's (saturating: no etcd revision is that high).
pub(crate) fn etcd_revision(r: Revision) -> i64 {
    i64::try_from(r).unwrap_or(i64::MAX)
}

/// Maps a client error: out of reach or no answer is `Unavailable`, the
/// rest is a backend error with etcd's message.
pub(crate) fn error(e: etcd_client::Error) -> StoreError {
    use etcd_client::Error as E;
    use tonic::Code;
    match &e {
        E::GRpcStatus(status) => match status.code() {
            // With the cause when there is one (a refused TLS handshake
            // says why); a stream cut by a dropped connection is a
            // "transport error".
            Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled | Code::Aborted => {
                StoreError::Unavailable(format!("etcd: {}{}", status.message(), root_cause(status)))
            }
            _ if from_transport(status) => {
                StoreError::Unavailable(format!("etcd: {}{}", status.message(), root_cause(status)))
            }
            _ => StoreError::Backend(format!("etcd: {}", status.message())),
        },
        E::TransportError(_) | E::IoError(_) | E::EndpointError(_) => {
            StoreError::Unavailable(format!("etcd: {e}"))
        }
        _ => StoreError::Backend(format!("etcd: {e}")),
    }
}

/// True when the status stands for a failed connection, not an answer.
fn from_transport(status: &tonic::Status) -> bool {
    let mut source = std::error::Error::source(status);
    while let Some(e) = source {
        if e.is::<tonic::transport::Error>() || e.is::<std::io::Error>() {
            return true;
        }
        source = e.source();
    }
    false
}

/// `": "` and the innermost error under `status`, or nothing.
fn root_cause(status: &tonic::Status) -> String {
    let mut last = None;
    let mut source = std::error::Error::source(status);
    while let Some(e) = source {
        last = Some(e);
        source = e.source();
    }
    last.map(|e| format!(": {e}")).unwrap_or_default()
}

/// True for etcd's "required revision has been compacted" answer.
pub(crate) fn is_compacted(e: &etcd_client::Error) -> bool {
    matches!(e, etcd_client::Error::GRpcStatus(s)
        if s.code() == tonic::Code::OutOfRange && s.message().contains("compacted"))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn ranges_cover_exactly_the_prefix() {
        let keys = Keys::new("/hami/");
        assert_eq!(
            keys.range("a/"),
            (b"/hami/a/".to_vec(), b"/hami/a0".to_vec())
        );
        assert_eq!(keys.range(""), (b"/hami/".to_vec(), b"/hami0".to_vec()));
        assert_eq!(range_end(vec![b'a', 0xff, 0xff]), b"b".to_vec());
        assert_eq!(range_end(vec![0xff]), vec![0]);
        assert_eq!(range_end(Vec::new()), vec![0]);
    }

    #[test]
    fn keys_outside_the_prefix_are_not_ours() {
        let keys = Keys::new("/hami/");
        assert_eq!(keys.strip(b"/hami/x/y"), Some("x/y".into()));
        assert_eq!(keys.strip(b"/other/x"), None);
        assert_eq!(keys.strip(b"/hami/\xff"), None);
        assert_eq!(keys.full("x"), b"/hami/x".to_vec());
    }

    #[test]
    fn revisions_convert_without_wrapping() {
        assert_eq!(revision(-1), 0);
        assert_eq!(revision(7), 7);
        assert_eq!(etcd_revision(u64::MAX), i64::MAX);
    }

    #[test]
    fn errors_keep_their_meaning() {
        let unavailable = etcd_client::Error::GRpcStatus(tonic::Status::unavailable("down"));
        assert!(matches!(error(unavailable), StoreError::Unavailable(m) if m.contains("down")));
        let compacted = etcd_client::Error::GRpcStatus(tonic::Status::out_of_range(
            "etcdserver: mvcc: required revision has been compacted",
        ));
        assert!(is_compacted(&compacted));
        assert!(matches!(error(compacted), StoreError::Backend(_)));
    }
}
