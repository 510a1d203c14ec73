//! One generic path between a message's protobuf bytes and its JSON form,
//! driven by the generated table: no conversion is written per kind.
//!
//! The types whose JSON is not a message of their fields are handled here by
//! name, as apimachinery marshals them: `Quantity` (a string), `Time` and
//! `MicroTime` (RFC 3339), `Duration` (Go's duration string), `IntOrString`,
//! `RawExtension` and `FieldsV1` (embedded JSON; a `RawExtension` holding a
//! `k8s\0` envelope, as watch events do, is decoded as one).
//!
//! Go's protobuf marshaller writes every non-pointer field, empty or not, and
//! its JSON marshaller leaves empty strings out (`omitempty`); decoding
//! leaves out empty strings and zero times the same way, so an object sent
//! as protobuf reads back as the same object sent as JSON. Zero numbers and
//! `false` are kept: for pointer fields (`replicas: 0`) they are the value,
//! and the messages do not say which Go fields are pointers (kube-apiserver
//! knows from its Go types, so its JSON leaves out a non-pointer `stdin:
//! false` that hami's keeps). ObjectMeta's `generation: 0` is left out.

use k8s_openapi::ByteString;
use k8s_openapi::jiff::Timestamp;
use serde_json::{Map, Value};

use super::ProtobufError;
use super::schema::{self, Field, Label, Message, Ty};
use super::wire::{
    Reader, Wire, bytes_of, invalid, put_bytes, put_key, put_uint, string, varint_of,
};

const QUANTITY: &str = "io.k8s.apimachinery.pkg.api.resource.Quantity";
const TIME: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.Time";
const MICRO_TIME: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.MicroTime";
const DURATION: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.Duration";
const FIELDS_V1: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.FieldsV1";
const INT_OR_STRING: &str = "io.k8s.apimachinery.pkg.util.intstr.IntOrString";
const RAW_EXTENSION: &str = "io.k8s.apimachinery.pkg.runtime.RawExtension";
const OBJECT_META: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta";

/// Nesting deeper than this is refused (no built-in kind comes close).
const MAX_DEPTH: usize = 64;

fn message_named(name: &str) -> Result<&'static Message, ProtobufError> {
    schema::message(name).ok_or_else(|| invalid(format!("no message {name} in the table")))
}

/// The JSON object of a message's bytes.
pub fn to_json(m: &Message, bytes: &[u8]) -> Result<Map<String, Value>, ProtobufError> {
    to_json_at(m, bytes, 0)
}

/// [`to_json`] at a nesting depth (envelopes inside RawExtensions count).
pub(super) fn to_json_at(
    m: &Message,
    bytes: &[u8],
    depth: usize,
) -> Result<Map<String, Value>, ProtobufError> {
    let mut out = Map::new();
    decode_into(m, bytes, &mut out, depth)?;
    Ok(out)
}

fn decode_into(
    m: &Message,
    bytes: &[u8],
    out: &mut Map<String, Value>,
    depth: usize,
) -> Result<(), ProtobufError> {
    if depth > MAX_DEPTH {
        return Err(invalid("message nested too deeply"));
    }
    let mut r = Reader::new(bytes);
    while let Some((n, w)) = r.next_field()? {
        let Some(f) = m.by_number(n) else { continue };
        match f.label() {
            Label::Inline => {
                let Ty::Msg(child) = f.ty() else { continue };
                decode_into(message_named(child)?, bytes_of(&w)?, out, depth + 1)?;
            }
            Label::One => match value(f.ty(), &w, depth)? {
                Some(v) => {
                    out.insert(f.json_name().to_owned(), v);
                }
                None => {
                    out.remove(f.json_name());
                }
            },
            Label::Many => {
                let items = repeated(f.ty(), &w, depth)?;
                if let Value::Array(a) = out
                    .entry(f.json_name())
                    .or_insert_with(|| Value::Array(Vec::new()))
                {
                    a.extend(items);
                }
            }
            Label::Map => {
                let (k, v) = entry(f.ty(), bytes_of(&w)?, depth)?;
                if let Value::Object(o) = out
                    .entry(f.json_name())
                    .or_insert_with(|| Value::Object(Map::new()))
                {
                    o.insert(k, v);
                }
            }
        }
    }
    // ObjectMeta's generation is a plain int64 in Go: 0 is "unset" (a pod
    // template's metadata carries it on the wire).
    if m.name == OBJECT_META && out.get("generation").is_some_and(|g| g == 0) {
        out.remove("generation");
    }
    Ok(())
}

/// A repeated field's values from one occurrence (packed or not).
fn repeated(ty: Ty, w: &Wire<'_>, depth: usize) -> Result<Vec<Value>, ProtobufError> {
    let packed = matches!(
        ty,
        Ty::Bool | Ty::I32 | Ty::I64 | Ty::U32 | Ty::U64 | Ty::F32 | Ty::F64
    );
    if let (true, Wire::Bytes(b)) = (packed, w) {
        let mut r = Reader::new(b);
        let mut out = Vec::new();
        while !r.buf.is_empty() {
            let item = match ty {
                Ty::F32 => {
                    let (head, rest) = r
                        .buf
                        .split_at_checked(4)
                        .ok_or_else(|| invalid("truncated packed float"))?;
                    r.buf = rest;
                    Wire::Fixed32(u32::from_le_bytes([head[0], head[1], head[2], head[3]]))
                }
                Ty::F64 => {
                    let (head, rest) = r
                        .buf
                        .split_at_checked(8)
                        .ok_or_else(|| invalid("truncated packed double"))?;
                    r.buf = rest;
                    let mut a = [0u8; 8];
                    a.copy_from_slice(head);
                    Wire::Fixed64(u64::from_le_bytes(a))
                }
                _ => Wire::Varint(r.varint()?),
            };
            out.extend(value(ty, &item, depth)?);
        }
        return Ok(out);
    }
    // An element is never left out of a list (an empty string stays "").
    Ok(vec![value(ty, w, depth)?.unwrap_or_else(|| empty_of(ty))])
}

fn empty_of(ty: Ty) -> Value {
    match ty {
        Ty::Str => Value::String(String::new()),
        Ty::Msg(_) => Value::Object(Map::new()),
        _ => Value::Null,
    }
}

/// A map entry {key = 1, value = 2}.
fn entry(ty: Ty, b: &[u8], depth: usize) -> Result<(String, Value), ProtobufError> {
    let mut r = Reader::new(b);
    let (mut key, mut v) = (String::new(), None);
    while let Some((n, w)) = r.next_field()? {
        match n {
            1 => key = string(bytes_of(&w)?)?,
            2 => v = Some(value(ty, &w, depth)?.unwrap_or_else(|| empty_of(ty))),
            _ => {}
        }
    }
    let v = match (v, ty) {
        (Some(v), _) => v,
        (None, Ty::Msg(QUANTITY)) => Value::String("0".into()),
        (None, Ty::Bytes) => Value::String(String::new()),
        (None, ty) => empty_of(ty),
    };
    Ok((key, v))
}

fn fixed32(w: &Wire<'_>) -> Result<u32, ProtobufError> {
    match w {
        Wire::Fixed32(v) => Ok(*v),
        _ => Err(invalid("expected a 32-bit field")),
    }
}

fn fixed64(w: &Wire<'_>) -> Result<u64, ProtobufError> {
    match w {
        Wire::Fixed64(v) => Ok(*v),
        _ => Err(invalid("expected a 64-bit field")),
    }
}

/// One value; None where Go's JSON would leave the field out.
fn value(ty: Ty, w: &Wire<'_>, depth: usize) -> Result<Option<Value>, ProtobufError> {
    Ok(Some(match ty {
        Ty::Str => {
            let s = string(bytes_of(w)?)?;
            if s.is_empty() {
                return Ok(None);
            }
            Value::String(s)
        }
        Ty::Bytes => serde_json::to_value(ByteString(bytes_of(w)?.to_vec()))
            .map_err(|e| invalid(e.to_string()))?,
        Ty::Bool => Value::Bool(varint_of(w)? != 0),
        // int32 travels sign-extended to 64 bits.
        Ty::I32 => Value::from(varint_of(w)? as i64 as i32),
        Ty::I64 => Value::from(varint_of(w)? as i64),
        Ty::U32 => Value::from(varint_of(w)? as u32),
        Ty::U64 => Value::from(varint_of(w)?),
        Ty::F32 => Value::from(f64::from(f32::from_bits(fixed32(w)?))),
        Ty::F64 => Value::from(f64::from_bits(fixed64(w)?)),
        Ty::Msg(name) => return special_or_message(name, bytes_of(w)?, depth),
    }))
}

fn scalar_fields(b: &[u8]) -> Result<Vec<(u64, Wire<'_>)>, ProtobufError> {
    let mut r = Reader::new(b);
    let mut out = Vec::new();
    while let Some(f) = r.next_field()? {
        out.push(f);
    }
    Ok(out)
}

fn string_field(b: &[u8], n: u64) -> Result<String, ProtobufError> {
    let mut s = String::new();
    for (k, w) in scalar_fields(b)? {
        if k == n {
            s = string(bytes_of(&w)?)?;
        }
    }
    Ok(s)
}

fn int_field(b: &[u8], n: u64) -> Result<i64, ProtobufError> {
    let mut v = 0;
    for (k, w) in scalar_fields(b)? {
        if k == n {
            v = varint_of(&w)? as i64;
        }
    }
    Ok(v)
}

fn raw_field(b: &[u8]) -> Result<&[u8], ProtobufError> {
    let mut raw: &[u8] = &[];
    for (k, w) in scalar_fields(b)? {
        if k == 1 {
            raw = bytes_of(&w)?;
        }
    }
    Ok(raw)
}

fn special_or_message(name: &str, b: &[u8], depth: usize) -> Result<Option<Value>, ProtobufError> {
    Ok(Some(match name {
        QUANTITY => {
            let s = string_field(b, 1)?;
            Value::String(if s.is_empty() { "0".into() } else { s })
        }
        TIME | MICRO_TIME => {
            let (seconds, nanos) = (int_field(b, 1)?, int_field(b, 2)?);
            if b.is_empty() || (seconds == 0 && nanos == 0) {
                return Ok(None);
            }
            let t = Timestamp::new(seconds, i32::try_from(nanos).unwrap_or(0))
                .map_err(|_| invalid("time out of range"))?;
            if name == TIME {
                Value::String(format!("{t:.0}"))
            } else {
                Value::String(format!("{t:.6}"))
            }
        }
        DURATION => Value::String(go_duration(int_field(b, 1)?)),
        INT_OR_STRING => {
            if int_field(b, 1)? == 1 {
                Value::String(string_field(b, 3)?)
            } else {
                Value::from(int_field(b, 2)? as i32)
            }
        }
        RAW_EXTENSION | FIELDS_V1 => {
            let raw = raw_field(b)?;
            if raw.is_empty() {
                return Ok(None);
            }
            if raw.starts_with(super::MAGIC) {
                super::decode_at(raw, depth + 1)?
            } else {
                serde_json::from_slice(raw)
                    .map_err(|e| invalid(format!("embedded JSON of {name}: {e}")))?
            }
        }
        _ => {
            let mut out = Map::new();
            decode_into(message_named(name)?, b, &mut out, depth + 1)?;
            Value::Object(out)
        }
    }))
}

/// Go's `time.Duration.String()`: `1h2m3s`, `1.5s`, `300ms`, `0s`.
pub fn go_duration(ns: i64) -> String {
    if ns == 0 {
        return "0s".into();
    }
    let sign = if ns < 0 { "-" } else { "" };
    let ns = ns.unsigned_abs();
    if ns < 1_000_000_000 {
        let (unit, div) = if ns < 1_000 {
            ("ns", 1)
        } else if ns < 1_000_000 {
            ("µs", 1_000)
        } else {
            ("ms", 1_000_000)
        };
        return format!("{sign}{}{unit}", fraction(ns, div));
    }
    let (h, rest) = (ns / 3_600_000_000_000, ns % 3_600_000_000_000);
    let (m, rest) = (rest / 60_000_000_000, rest % 60_000_000_000);
    let s = fraction(rest, 1_000_000_000);
    match (h, m) {
        (0, 0) => format!("{sign}{s}s"),
        (0, m) => format!("{sign}{m}m{s}s"),
        (h, m) => format!("{sign}{h}h{m}m{s}s"),
    }
}

fn fraction(v: u64, div: u64) -> String {
    let (whole, frac) = (v / div, v % div);
    if frac == 0 {
        return whole.to_string();
    }
    let width = div.ilog10() as usize;
    let digits = format!("{frac:0width$}");
    format!("{whole}.{}", digits.trim_end_matches('0'))
}

/// Parses Go's duration strings (`1h30m`, `1.5s`, `300ms`) to nanoseconds.
pub fn parse_go_duration(s: &str) -> Option<i64> {
    let (neg, mut rest) = match s.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    if rest == "0" {
        return Some(0);
    }
    let mut total: f64 = 0.0;
    while !rest.is_empty() {
        let num_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let num: f64 = rest.get(..num_end)?.parse().ok()?;
        rest = rest.get(num_end..)?;
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let unit = rest.get(..unit_end)?;
        rest = rest.get(unit_end..)?;
        let scale = match unit {
            "ns" => 1.0,
            "us" | "µs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return None,
        };
        total += num * scale;
    }
    let v = total.round() as i64;
    Some(if neg { -v } else { v })
}

/// Writes the message of a JSON object; `path` names the field for errors.
pub fn from_json(
    m: &Message,
    object: &Map<String, Value>,
    out: &mut Vec<u8>,
    path: &str,
) -> Result<(), ProtobufError> {
    for f in m.fields {
        match f.label() {
            Label::Inline => {
                let Ty::Msg(child) = f.ty() else { continue };
                let mut b = Vec::new();
                from_json(message_named(child)?, object, &mut b, path)?;
                put_bytes(f.number(), &b, out);
            }
            _ => {
                let Some(v) = object.get(f.json_name()).filter(|v| !v.is_null()) else {
                    continue;
                };
                let here = format!("{path}.{}", f.json_name());
                field_from_json(f, v, out, &here)?;
            }
        }
    }
    Ok(())
}

fn mismatch(path: &str, want: &str) -> ProtobufError {
    invalid(format!("{}: expected {want}", path.trim_start_matches('.')))
}

fn field_from_json(
    f: &Field,
    v: &Value,
    out: &mut Vec<u8>,
    path: &str,
) -> Result<(), ProtobufError> {
    match f.label() {
        Label::One | Label::Inline => put_value(f.number(), f.ty(), v, out, path),
        Label::Many => {
            let items = v.as_array().ok_or_else(|| mismatch(path, "a list"))?;
            for (i, item) in items.iter().enumerate() {
                put_value(f.number(), f.ty(), item, out, &format!("{path}[{i}]"))?;
            }
            Ok(())
        }
        Label::Map => {
            let map = v.as_object().ok_or_else(|| mismatch(path, "an object"))?;
            // Go writes map entries sorted by key.
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            for k in keys {
                let mut e = Vec::new();
                put_bytes(1, k.as_bytes(), &mut e);
                if let Some(item) = map.get(k).filter(|v| !v.is_null()) {
                    put_value(2, f.ty(), item, &mut e, &format!("{path}[{k}]"))?;
                }
                put_bytes(f.number(), &e, out);
            }
            Ok(())
        }
    }
}

fn int_of(v: &Value, path: &str) -> Result<i64, ProtobufError> {
    v.as_i64()
        .or_else(|| v.as_f64().filter(|f| f.fract() == 0.0).map(|f| f as i64))
        .ok_or_else(|| mismatch(path, "an integer"))
}

fn put_value(
    number: u32,
    ty: Ty,
    v: &Value,
    out: &mut Vec<u8>,
    path: &str,
) -> Result<(), ProtobufError> {
    match ty {
        Ty::Str => {
            let s = v.as_str().ok_or_else(|| mismatch(path, "a string"))?;
            put_bytes(number, s.as_bytes(), out);
        }
        Ty::Bytes => {
            let b: ByteString =
                serde_json::from_value(v.clone()).map_err(|_| mismatch(path, "base64 data"))?;
            put_bytes(number, &b.0, out);
        }
        Ty::Bool => put_uint(
            number,
            u64::from(v.as_bool().ok_or_else(|| mismatch(path, "a boolean"))?),
            out,
        ),
        Ty::I32 | Ty::I64 => put_uint(number, int_of(v, path)? as u64, out),
        Ty::U32 | Ty::U64 => put_uint(
            number,
            v.as_u64()
                .ok_or_else(|| mismatch(path, "an unsigned integer"))?,
            out,
        ),
        Ty::F32 => {
            let f = v.as_f64().ok_or_else(|| mismatch(path, "a number"))?;
            put_key(number, 5, out);
            out.extend_from_slice(&(f as f32).to_bits().to_le_bytes());
        }
        Ty::F64 => {
            let f = v.as_f64().ok_or_else(|| mismatch(path, "a number"))?;
            put_key(number, 1, out);
            out.extend_from_slice(&f.to_bits().to_le_bytes());
        }
        Ty::Msg(name) => {
            let b = special_or_message_bytes(name, v, path)?;
            put_bytes(number, &b, out);
        }
    }
    Ok(())
}

fn special_or_message_bytes(name: &str, v: &Value, path: &str) -> Result<Vec<u8>, ProtobufError> {
    let mut b = Vec::new();
    match name {
        QUANTITY => {
            let s = match v {
                Value::String(s) => s.clone(),
                Value::Number(n) => n.to_string(),
                _ => return Err(mismatch(path, "a quantity")),
            };
            put_bytes(1, s.as_bytes(), &mut b);
        }
        TIME | MICRO_TIME => {
            let t: Timestamp = v
                .as_str()
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| mismatch(path, "an RFC 3339 time"))?;
            put_uint(1, t.as_second() as u64, &mut b);
            put_uint(2, i64::from(t.subsec_nanosecond()) as u64, &mut b);
        }
        DURATION => {
            let ns = v
                .as_str()
                .and_then(parse_go_duration)
                .ok_or_else(|| mismatch(path, "a duration"))?;
            put_uint(1, ns as u64, &mut b);
        }
        INT_OR_STRING => match v {
            Value::String(s) => {
                put_uint(1, 1, &mut b);
                put_uint(2, 0, &mut b);
                put_bytes(3, s.as_bytes(), &mut b);
            }
            _ => {
                put_uint(1, 0, &mut b);
                put_uint(2, int_of(v, path)? as u64, &mut b);
                put_bytes(3, b"", &mut b);
            }
        },
        RAW_EXTENSION | FIELDS_V1 => {
            let raw = serde_json::to_vec(v).map_err(|e| invalid(e.to_string()))?;
            put_bytes(1, &raw, &mut b);
        }
        _ => {
            let object = v.as_object().ok_or_else(|| mismatch(path, "an object"))?;
            from_json(message_named(name)?, object, &mut b, path)?;
        }
    }
    Ok(b)
}
