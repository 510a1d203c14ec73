//! Byte layouts of the values kept in redb's tables. redb owns the file format,
//! the B-trees and crash safety; this module only turns our records into value
//! bytes and back. Every decode checks lengths and answers an error on a short
//! or malformed record instead of panicking.
//!
//! * object value: `create_revision u64 LE | mod_revision u64 LE | value`
//! * change-log entry: `tag u8` then, for a put (tag 0): `kv`, `has_prev u8`,
//!   `[kv]`; for a delete (tag 1): `revision u64 LE`, `kv`
//! * `kv`: `key_len u32 LE | key | create u64 | mod u64 | value_len u32 LE | value`

use crate::{Event, KeyValue, Revision};

/// A stored record could not be decoded.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CodecError {
    #[error("stored record is truncated")]
    Truncated,
    #[error("stored record has unknown tag {0}")]
    UnknownTag(u8),
    #[error("stored key is not UTF-8")]
    KeyNotUtf8,
    #[error("stored record has {0} trailing bytes")]
    Trailing(usize),
}

pub(crate) fn encode_object(kv: &KeyValue) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + kv.value.len());
    out.extend_from_slice(&kv.create_revision.to_le_bytes());
    out.extend_from_slice(&kv.mod_revision.to_le_bytes());
    out.extend_from_slice(&kv.value);
    out
}

pub(crate) fn decode_object(key: &str, bytes: &[u8]) -> Result<KeyValue, CodecError> {
    let mut r = Reader(bytes);
    let create_revision = r.u64()?;
    let mod_revision = r.u64()?;
    Ok(KeyValue {
        key: key.to_owned(),
        value: r.0.to_vec(),
        create_revision,
        mod_revision,
    })
}

pub(crate) fn encode_event(event: &Event) -> Vec<u8> {
    let mut out = Vec::new();
    match event {
        Event::Put { kv, prev } => {
            out.push(0);
            put_kv(&mut out, kv);
            match prev {
                None => out.push(0),
                Some(prev) => {
                    out.push(1);
                    put_kv(&mut out, prev);
                }
            }
        }
        Event::Delete { prev, revision } => {
            out.push(1);
            out.extend_from_slice(&revision.to_le_bytes());
            put_kv(&mut out, prev);
        }
    }
    out
}

pub(crate) fn decode_event(bytes: &[u8]) -> Result<Event, CodecError> {
    let mut r = Reader(bytes);
    let event = match r.u8()? {
        0 => {
            let kv = r.kv()?;
            let prev = match r.u8()? {
                0 => None,
                1 => Some(r.kv()?),
                tag => return Err(CodecError::UnknownTag(tag)),
            };
            Event::Put { kv, prev }
        }
        1 => {
            let revision: Revision = r.u64()?;
            let prev = r.kv()?;
            Event::Delete { prev, revision }
        }
        tag => return Err(CodecError::UnknownTag(tag)),
    };
    if !r.0.is_empty() {
        return Err(CodecError::Trailing(r.0.len()));
    }
    Ok(event)
}

fn put_kv(out: &mut Vec<u8>, kv: &KeyValue) {
    put_bytes(out, kv.key.as_bytes());
    out.extend_from_slice(&kv.create_revision.to_le_bytes());
    out.extend_from_slice(&kv.mod_revision.to_le_bytes());
    put_bytes(out, &kv.value);
}

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    // Keys and values are far below 4 GiB (the API server caps bodies at a few MiB).
    let len = u32::try_from(bytes.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(bytes);
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], CodecError> {
        if self.0.len() < n {
            return Err(CodecError::Truncated);
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn u8(&mut self) -> Result<u8, CodecError> {
        Ok(self.take(1)?[0])
    }

    fn u32(&mut self) -> Result<u32, CodecError> {
        let mut b = [0u8; 4];
        b.copy_from_slice(self.take(4)?);
        Ok(u32::from_le_bytes(b))
    }

    fn u64(&mut self) -> Result<u64, CodecError> {
        let mut b = [0u8; 8];
        b.copy_from_slice(self.take(8)?);
        Ok(u64::from_le_bytes(b))
    }

    fn bytes(&mut self) -> Result<&'a [u8], CodecError> {
        let len = self.u32()? as usize;
        self.take(len)
    }

    fn kv(&mut self) -> Result<KeyValue, CodecError> {
        let key = std::str::from_utf8(self.bytes()?).map_err(|_| CodecError::KeyNotUtf8)?;
        let create_revision = self.u64()?;
        let mod_revision = self.u64()?;
        let value = self.bytes()?.to_vec();
        Ok(KeyValue {
            key: key.to_owned(),
            value,
            create_revision,
            mod_revision,
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn kv(key: &str, value: &[u8], c: u64, m: u64) -> KeyValue {
        KeyValue {
            key: key.into(),
            value: value.to_vec(),
            create_revision: c,
            mod_revision: m,
        }
    }

    #[test]
    fn events_round_trip() {
        let events = [
            Event::Put {
                kv: kv("a/b", b"{}", 3, 3),
                prev: None,
            },
            Event::Put {
                kv: kv("a/b", b"{\"x\":1}", 3, 7),
                prev: Some(kv("a/b", b"{}", 3, 3)),
            },
            Event::Delete {
                prev: kv("a/b", b"", 3, 7),
                revision: 9,
            },
        ];
        for event in events {
            assert_eq!(decode_event(&encode_event(&event)).unwrap(), event);
        }
        let o = kv("k", b"value", 1, 2);
        assert_eq!(decode_object("k", &encode_object(&o)).unwrap(), o);
    }

    #[test]
    fn damaged_records_are_errors_not_panics() {
        let bytes = encode_event(&Event::Put {
            kv: kv("a", b"xyz", 1, 1),
            prev: Some(kv("a", b"w", 1, 1)),
        });
        for cut in 0..bytes.len() {
            assert!(decode_event(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        let mut extra = bytes.clone();
        extra.push(0);
        assert_eq!(decode_event(&extra), Err(CodecError::Trailing(1)));
        assert_eq!(decode_event(&[7]), Err(CodecError::UnknownTag(7)));
        assert_eq!(decode_object("k", &[1, 2, 3]), Err(CodecError::Truncated));
    }
}
