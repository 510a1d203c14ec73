//! Kubernetes protobuf request bodies (`application/vnd.kubernetes.protobuf`)
//! for the few kinds typed Go clients send that way to this server: client-go
//! (1.33+) encodes built-in kinds as protobuf by default, and Helm keeps its
//! releases in Secrets (or ConfigMaps) through such a client. The body is
//! turned into the JSON object the rest of the server handles.
//!
//! Wire format: the 4-byte magic `k8s\0`, then a `runtime.Unknown` message
//! (`typeMeta` = 1 {apiVersion = 1, kind = 2}, `raw` = 2) whose `raw` is the
//! object in the messages of `k8s.io/api/.../generated.proto`. Each kind is
//! decoded from a table of its fields (number, JSON name, type); fields not in
//! the table are skipped, as protobuf allows. Kinds without a table answer
//! 415 and name the media types that work.

use k8s_openapi::ByteString;
use serde_json::{Map, Value};

/// The magic bytes before the envelope.
const MAGIC: &[u8] = b"k8s\0";

/// Why a protobuf body cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ProtobufError {
    /// Not protobuf of the expected shape.
    #[error("invalid protobuf body: {0}")]
    Invalid(String),
    /// Valid, but of a kind this server decodes only from JSON or YAML.
    #[error(
        "protobuf bodies are decoded for Secret, ConfigMap and DeleteOptions only (got {0}); send application/json or application/yaml"
    )]
    UnsupportedKind(String),
}

fn invalid(what: &str) -> ProtobufError {
    ProtobufError::Invalid(what.to_string())
}

/// One field's value on the wire.
enum Wire<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
    /// Fixed 32/64-bit values (no k8s field here uses them; skipped).
    Fixed,
}

/// Reads (field number, value) pairs of one message.
struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn varint(&mut self) -> Result<u64, ProtobufError> {
        let mut v: u64 = 0;
        for i in 0..10 {
            let (&b, rest) = self
                .buf
                .split_first()
                .ok_or_else(|| invalid("truncated varint"))?;
            self.buf = rest;
            v |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(invalid("varint longer than 10 bytes"))
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], ProtobufError> {
        if self.buf.len() < n {
            return Err(invalid("truncated field"));
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }

    fn next_field(&mut self) -> Result<Option<(u64, Wire<'a>)>, ProtobufError> {
        if self.buf.is_empty() {
            return Ok(None);
        }
        let key = self.varint()?;
        let wire = match key & 7 {
            0 => Wire::Varint(self.varint()?),
            1 => {
                self.take(8)?;
                Wire::Fixed
            }
            2 => {
                let n = usize::try_from(self.varint()?).map_err(|_| invalid("length"))?;
                Wire::Bytes(self.take(n)?)
            }
            5 => {
                self.take(4)?;
                Wire::Fixed
            }
            t => return Err(invalid(&format!("wire type {t}"))),
        };
        Ok(Some((key >> 3, wire)))
    }
}

/// How a field maps to JSON.
#[derive(Clone, Copy)]
enum Kind {
    Str,
    /// Base64 in JSON (Kubernetes' `[]byte`).
    Bytes,
    Int,
    Bool,
    /// `metav1.Time` {seconds = 1, nanos = 2}, as RFC 3339.
    Time,
    Message(&'static [Field]),
    /// `map<string, string>` (entries {key = 1, value = 2}).
    MapStr,
    /// `map<string, bytes>`.
    MapBytes,
    /// Repeated (each occurrence appends).
    Repeated(&'static Kind),
}

type Field = (u64, &'static str, Kind);

const OWNER_REFERENCE: &[Field] = &[
    (1, "kind", Kind::Str),
    (3, "name", Kind::Str),
    (4, "uid", Kind::Str),
    (5, "apiVersion", Kind::Str),
    (6, "controller", Kind::Bool),
    (7, "blockOwnerDeletion", Kind::Bool),
];

/// `ObjectMeta` without managedFields (the server keeps its own).
const OBJECT_META: &[Field] = &[
    (1, "name", Kind::Str),
    (2, "generateName", Kind::Str),
    (3, "namespace", Kind::Str),
    (5, "uid", Kind::Str),
    (6, "resourceVersion", Kind::Str),
    (7, "generation", Kind::Int),
    (8, "creationTimestamp", Kind::Time),
    (9, "deletionTimestamp", Kind::Time),
    (10, "deletionGracePeriodSeconds", Kind::Int),
    (11, "labels", Kind::MapStr),
    (12, "annotations", Kind::MapStr),
    (
        13,
        "ownerReferences",
        Kind::Repeated(&Kind::Message(OWNER_REFERENCE)),
    ),
    (14, "finalizers", Kind::Repeated(&Kind::Str)),
];

const SECRET: &[Field] = &[
    (1, "metadata", Kind::Message(OBJECT_META)),
    (2, "data", Kind::MapBytes),
    (3, "type", Kind::Str),
    (4, "stringData", Kind::MapStr),
    (5, "immutable", Kind::Bool),
];

const CONFIG_MAP: &[Field] = &[
    (1, "metadata", Kind::Message(OBJECT_META)),
    (2, "data", Kind::MapStr),
    (3, "binaryData", Kind::MapBytes),
    (4, "immutable", Kind::Bool),
];

const PRECONDITIONS: &[Field] = &[(1, "uid", Kind::Str), (2, "resourceVersion", Kind::Str)];

const DELETE_OPTIONS: &[Field] = &[
    (1, "gracePeriodSeconds", Kind::Int),
    (2, "preconditions", Kind::Message(PRECONDITIONS)),
    (3, "orphanDependents", Kind::Bool),
    (4, "propagationPolicy", Kind::Str),
    (5, "dryRun", Kind::Repeated(&Kind::Str)),
];

fn string(b: &[u8]) -> Result<String, ProtobufError> {
    String::from_utf8(b.to_vec()).map_err(|_| invalid("string is not UTF-8"))
}

fn bytes_of<'a>(w: &Wire<'a>) -> Result<&'a [u8], ProtobufError> {
    match w {
        Wire::Bytes(b) => Ok(b),
        _ => Err(invalid("expected a length-delimited field")),
    }
}

fn varint_of(w: &Wire<'_>) -> Result<u64, ProtobufError> {
    match w {
        Wire::Varint(v) => Ok(*v),
        _ => Err(invalid("expected a varint field")),
    }
}

/// A map entry's key and value bytes.
fn entry(b: &[u8]) -> Result<(String, &[u8]), ProtobufError> {
    let mut r = Reader { buf: b };
    let (mut key, mut value) = (String::new(), &[][..]);
    while let Some((n, w)) = r.next_field()? {
        match n {
            1 => key = string(bytes_of(&w)?)?,
            2 => value = bytes_of(&w)?,
            _ => {}
        }
    }
    Ok((key, value))
}

fn time(b: &[u8]) -> Result<Value, ProtobufError> {
    let mut r = Reader { buf: b };
    let mut seconds = 0i64;
    while let Some((n, w)) = r.next_field()? {
        if n == 1 {
            // int64 on the wire: two's complement in a u64.
            seconds = varint_of(&w)? as i64;
        }
    }
    let t = k8s_openapi::jiff::Timestamp::from_second(seconds)
        .map_err(|_| invalid("time out of range"))?;
    Ok(Value::String(format!("{t:.0}")))
}

fn single(kind: Kind, w: &Wire<'_>) -> Result<Value, ProtobufError> {
    Ok(match kind {
        Kind::Str => Value::String(string(bytes_of(w)?)?),
        Kind::Bytes => serde_json::to_value(ByteString(bytes_of(w)?.to_vec()))
            .map_err(|e| ProtobufError::Invalid(e.to_string()))?,
        Kind::Int => Value::from(varint_of(w)? as i64),
        Kind::Bool => Value::Bool(varint_of(w)? != 0),
        Kind::Time => time(bytes_of(w)?)?,
        Kind::Message(fields) => Value::Object(message(bytes_of(w)?, fields)?),
        Kind::MapStr | Kind::MapBytes | Kind::Repeated(_) => {
            return Err(invalid("nested repeated field"));
        }
    })
}

/// Decodes one message by its field table.
fn message(b: &[u8], fields: &[Field]) -> Result<Map<String, Value>, ProtobufError> {
    let mut out = Map::new();
    let mut r = Reader { buf: b };
    while let Some((n, w)) = r.next_field()? {
        let Some(&(_, name, kind)) = fields.iter().find(|f| f.0 == n) else {
            continue;
        };
        match kind {
            Kind::MapStr | Kind::MapBytes => {
                let (k, v) = entry(bytes_of(&w)?)?;
                let v = if matches!(kind, Kind::MapStr) {
                    Value::String(string(v)?)
                } else {
                    single(Kind::Bytes, &Wire::Bytes(v))?
                };
                if let Value::Object(m) =
                    out.entry(name).or_insert_with(|| Value::Object(Map::new()))
                {
                    m.insert(k, v);
                }
            }
            Kind::Repeated(item) => {
                let v = single(*item, &w)?;
                if let Value::Array(a) = out.entry(name).or_insert_with(|| Value::Array(Vec::new()))
                {
                    a.push(v);
                }
            }
            _ => {
                out.insert(name.to_string(), single(kind, &w)?);
            }
        }
    }
    Ok(out)
}

/// The JSON object of a protobuf-encoded body.
pub fn decode(body: &[u8]) -> Result<Value, ProtobufError> {
    let envelope = body
        .strip_prefix(MAGIC)
        .ok_or_else(|| invalid("missing the k8s\\0 prefix"))?;
    let (mut api_version, mut kind, mut raw) = (String::new(), String::new(), &[][..]);
    let mut r = Reader { buf: envelope };
    while let Some((n, w)) = r.next_field()? {
        match n {
            1 => {
                let mut t = Reader { buf: bytes_of(&w)? };
                while let Some((n, w)) = t.next_field()? {
                    match n {
                        1 => api_version = string(bytes_of(&w)?)?,
                        2 => kind = string(bytes_of(&w)?)?,
                        _ => {}
                    }
                }
            }
            2 => raw = bytes_of(&w)?,
            _ => {}
        }
    }
    let fields = match kind.as_str() {
        "Secret" => SECRET,
        "ConfigMap" => CONFIG_MAP,
        "DeleteOptions" => DELETE_OPTIONS,
        "" => return Err(invalid("no kind in the envelope")),
        _ => return Err(ProtobufError::UnsupportedKind(kind)),
    };
    let mut object = message(raw, fields)?;
    object.insert("apiVersion".into(), Value::String(api_version));
    object.insert("kind".into(), Value::String(kind));
    Ok(Value::Object(object))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use serde_json::json;

    use super::*;

    fn varint(mut v: u64, out: &mut Vec<u8>) {
        while v >= 0x80 {
            out.push((v as u8) | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
    }

    fn len_field(n: u64, b: &[u8], out: &mut Vec<u8>) {
        varint(n << 3 | 2, out);
        varint(b.len() as u64, out);
        out.extend_from_slice(b);
    }

    fn int_field(n: u64, v: u64, out: &mut Vec<u8>) {
        varint(n << 3, out);
        varint(v, out);
    }

    fn map_entry(n: u64, k: &str, v: &[u8], out: &mut Vec<u8>) {
        let mut e = Vec::new();
        len_field(1, k.as_bytes(), &mut e);
        len_field(2, v, &mut e);
        len_field(n, &e, out);
    }

    fn envelope(api_version: &str, kind: &str, raw: &[u8]) -> Vec<u8> {
        let mut tm = Vec::new();
        len_field(1, api_version.as_bytes(), &mut tm);
        len_field(2, kind.as_bytes(), &mut tm);
        let mut out = MAGIC.to_vec();
        len_field(1, &tm, &mut out);
        len_field(2, raw, &mut out);
        len_field(4, b"application/vnd.kubernetes.protobuf", &mut out);
        out
    }

    /// A Secret as Helm's release storage writes it (encoded by hand per
    /// k8s.io/api/core/v1/generated.proto).
    #[test]
    fn a_helm_release_secret_decodes_to_its_json() {
        let mut meta = Vec::new();
        len_field(1, b"sh.helm.release.v1.agent.v1", &mut meta);
        len_field(3, b"hami-system", &mut meta);
        map_entry(11, "owner", b"helm", &mut meta);
        map_entry(11, "status", b"deployed", &mut meta);
        len_field(14, b"f1", &mut meta);
        len_field(14, b"f2", &mut meta);
        let mut ts = Vec::new();
        int_field(1, 1_700_000_000, &mut ts);
        len_field(8, &ts, &mut meta);
        let mut owner = Vec::new();
        len_field(1, b"Deployment", &mut owner);
        len_field(5, b"apps/v1", &mut owner);
        int_field(6, 1, &mut owner);
        len_field(13, &owner, &mut meta);
        len_field(99, b"a field this table does not know", &mut meta);
        let mut secret = Vec::new();
        len_field(1, &meta, &mut secret);
        map_entry(2, "release", &[0, 159, 146, 150], &mut secret);
        len_field(3, b"helm.sh/release.v1", &mut secret);
        int_field(5, 0, &mut secret);

        let got = decode(&envelope("v1", "Secret", &secret)).unwrap();
        assert_eq!(
            got,
            json!({
                "apiVersion": "v1", "kind": "Secret",
                "metadata": {
                    "name": "sh.helm.release.v1.agent.v1", "namespace": "hami-system",
                    "labels": {"owner": "helm", "status": "deployed"},
                    "finalizers": ["f1", "f2"],
                    "creationTimestamp": "2023-11-14T22:13:20Z",
                    "ownerReferences": [{"kind": "Deployment", "apiVersion": "apps/v1", "controller": true}],
                },
                "data": {"release": "AJ+Slg=="},
                "type": "helm.sh/release.v1",
                "immutable": false,
            })
        );
    }

    #[test]
    fn config_maps_and_delete_options_decode() {
        let mut cm = Vec::new();
        map_entry(2, "k", b"v", &mut cm);
        map_entry(3, "b", b"\x01", &mut cm);
        let got = decode(&envelope("v1", "ConfigMap", &cm)).unwrap();
        assert_eq!(got["data"], json!({"k": "v"}));
        assert_eq!(got["binaryData"], json!({"b": "AQ=="}));

        let mut opts = Vec::new();
        len_field(4, b"Background", &mut opts);
        int_field(1, 0, &mut opts);
        let mut pre = Vec::new();
        len_field(2, b"42", &mut pre);
        len_field(2, &pre, &mut opts);
        let got = decode(&envelope("meta.k8s.io/v1", "DeleteOptions", &opts)).unwrap();
        assert_eq!(got["propagationPolicy"], "Background");
        assert_eq!(got["gracePeriodSeconds"], 0);
        assert_eq!(got["preconditions"]["resourceVersion"], "42");
    }

    #[test]
    fn other_kinds_and_broken_bodies_are_refused() {
        assert_eq!(
            decode(&envelope("apps/v1", "Deployment", &[])),
            Err(ProtobufError::UnsupportedKind("Deployment".into()))
        );
        assert!(matches!(decode(b"{}"), Err(ProtobufError::Invalid(_))));
        let mut truncated = envelope("v1", "Secret", &[]);
        truncated.extend_from_slice(&[0x12, 0x05, 1]);
        assert!(matches!(decode(&truncated), Err(ProtobufError::Invalid(_))));
        let mut bad_wire = MAGIC.to_vec();
        bad_wire.push(0x0b); // field 1, wire type 3 (groups are not used)
        assert!(matches!(decode(&bad_wire), Err(ProtobufError::Invalid(_))));
    }
}
