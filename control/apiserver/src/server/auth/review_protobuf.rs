//! The protobuf bodies of the access reviews, which kubectl sends
//! (`kubectl auth can-i` posts its SelfSubjectAccessReview as
//! `application/vnd.kubernetes.protobuf`). The server's protobuf table holds
//! the stored built-in kinds only, so the few messages of
//! `k8s.io/api/authorization/v1/generated.proto` a review carries are read
//! here: the `k8s\0` envelope (`runtime.Unknown`: typeMeta = 1 {apiVersion =
//! 1, kind = 2}, raw = 2), then
//!
//! * the review: metadata = 1, spec = 2 (status is the server's to fill);
//! * `ObjectMeta`: name = 1, generateName = 2, namespace = 3;
//! * `SubjectAccessReviewSpec` (also the local review's): resourceAttributes
//!   = 1, nonResourceAttributes = 2, user = 3, groups = 4 (repeated), uid = 6;
//!   `SelfSubjectAccessReviewSpec` has fields 1 and 2 only;
//! * `SelfSubjectRulesReviewSpec`: namespace = 1;
//! * `ResourceAttributes`: namespace = 1, verb = 2, group = 3, version = 4,
//!   resource = 5, subresource = 6, name = 7;
//! * `NonResourceAttributes`: path = 1, verb = 2.
//!
//! Other fields (extra, field and label selectors) are skipped. Answers go
//! out as JSON, which kubectl accepts (it asks for protobuf, then `*/*`).

use serde_json::{Map, Value, json};

use super::reviews::{GROUP, VERSION};

/// One field's value on the wire.
pub(super) enum Wire<'a> {
    Varint(u64),
    Fixed,
    Bytes(&'a [u8]),
}

fn varint(bytes: &[u8], pos: &mut usize) -> Result<u64, String> {
    let mut value: u64 = 0;
    for shift in (0..64).step_by(7) {
        let byte = *bytes.get(*pos).ok_or("truncated varint")?;
        *pos += 1;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Ok(value);
        }
    }
    Err("varint longer than 10 bytes".to_owned())
}

/// The fields of one message, in wire order.
pub(super) fn fields(bytes: &[u8]) -> Result<Vec<(u64, Wire<'_>)>, String> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < bytes.len() {
        let key = varint(bytes, &mut pos)?;
        let (number, wire_type) = (key >> 3, key & 7);
        let value = match wire_type {
            0 => Wire::Varint(varint(bytes, &mut pos)?),
            1 | 5 => {
                let width = if wire_type == 1 { 8 } else { 4 };
                pos = pos
                    .checked_add(width)
                    .filter(|end| *end <= bytes.len())
                    .ok_or("truncated fixed-width field")?;
                Wire::Fixed
            }
            2 => {
                let len = usize::try_from(varint(bytes, &mut pos)?)
                    .map_err(|_| "length out of range".to_owned())?;
                let end = pos
                    .checked_add(len)
                    .filter(|end| *end <= bytes.len())
                    .ok_or("truncated length-delimited field")?;
                let value = &bytes[pos..end];
                pos = end;
                Wire::Bytes(value)
            }
            other => return Err(format!("unsupported wire type {other}")),
        };
        out.push((number, value));
    }
    Ok(out)
}

pub(super) fn text(wire: &Wire<'_>) -> Result<String, String> {
    match wire {
        Wire::Bytes(b) => std::str::from_utf8(b)
            .map(str::to_owned)
            .map_err(|_| "a string field is not UTF-8".to_owned()),
        _ => Err("a string field has the wrong wire type".to_owned()),
    }
}

pub(super) fn message<'a>(wire: &Wire<'a>) -> Result<&'a [u8], String> {
    match wire {
        Wire::Bytes(b) => Ok(b),
        _ => Err("a message field has the wrong wire type".to_owned()),
    }
}

/// The string fields `names` (by number) of a message, as a JSON object;
/// `repeated` numbers collect into an array.
pub(super) fn strings(
    bytes: &[u8],
    names: &[(u64, &str)],
    repeated: &[(u64, &str)],
) -> Result<Map<String, Value>, String> {
    let mut out = Map::new();
    for (number, wire) in fields(bytes)? {
        if let Some((_, name)) = names.iter().find(|(n, _)| *n == number) {
            out.insert((*name).to_owned(), json!(text(&wire)?));
        } else if let Some((_, name)) = repeated.iter().find(|(n, _)| *n == number) {
            let list = out.entry(*name).or_insert_with(|| json!([]));
            if let Some(list) = list.as_array_mut() {
                list.push(json!(text(&wire)?));
            }
        }
    }
    Ok(out)
}

fn resource_attributes(bytes: &[u8]) -> Result<Value, String> {
    let names = [
        (1, "namespace"),
        (2, "verb"),
        (3, "group"),
        (4, "version"),
        (5, "resource"),
        (6, "subresource"),
        (7, "name"),
    ];
    Ok(Value::Object(strings(bytes, &names, &[])?))
}

fn non_resource_attributes(bytes: &[u8]) -> Result<Value, String> {
    Ok(Value::Object(strings(
        bytes,
        &[(1, "path"), (2, "verb")],
        &[],
    )?))
}

fn spec(kind: &str, bytes: &[u8]) -> Result<Value, String> {
    if kind == "SelfSubjectRulesReview" {
        return Ok(Value::Object(strings(bytes, &[(1, "namespace")], &[])?));
    }
    let subject = kind != "SelfSubjectAccessReview";
    let mut out = if subject {
        strings(bytes, &[(3, "user"), (6, "uid")], &[(4, "groups")])?
    } else {
        Map::new()
    };
    for (number, wire) in fields(bytes)? {
        match number {
            1 => {
                out.insert(
                    "resourceAttributes".into(),
                    resource_attributes(message(&wire)?)?,
                );
            }
            2 => {
                out.insert(
                    "nonResourceAttributes".into(),
                    non_resource_attributes(message(&wire)?)?,
                );
            }
            _ => {}
        }
    }
    Ok(Value::Object(out))
}

/// The `k8s\0` envelope of a protobuf body: (apiVersion, kind, the
/// object's message).
pub(super) fn envelope(body: &[u8]) -> Result<(String, String, &[u8]), String> {
    let envelope = body
        .strip_prefix(crate::server::protobuf::MAGIC)
        .ok_or("missing the k8s\\0 prefix")?;
    let (mut api_version, mut kind, mut raw) = (String::new(), String::new(), &[][..]);
    for (number, wire) in fields(envelope)? {
        match number {
            1 => {
                let meta = strings(message(&wire)?, &[(1, "apiVersion"), (2, "kind")], &[])?;
                let field = |k: &str| meta.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
                api_version = field("apiVersion");
                kind = field("kind");
            }
            2 => raw = message(&wire)?,
            _ => {}
        }
    }
    Ok((api_version, kind, raw))
}

/// The JSON object of a protobuf review body (`Err`: why it cannot be read).
pub fn decode(body: &[u8]) -> Result<Value, String> {
    let (api_version, kind, raw) = envelope(body)?;
    if api_version != format!("{GROUP}/{VERSION}")
        || !super::reviews::RESOURCES
            .iter()
            .any(|r| r.kind_name == kind)
    {
        return Err(format!(
            "{kind} ({api_version}) is not an access review of {GROUP}/{VERSION}"
        ));
    }
    let mut object = Map::new();
    object.insert("apiVersion".into(), json!(api_version));
    object.insert("kind".into(), json!(kind));
    for (number, wire) in fields(raw)? {
        match number {
            1 => {
                let names = [(1, "name"), (2, "generateName"), (3, "namespace")];
                object.insert(
                    "metadata".into(),
                    Value::Object(strings(message(&wire)?, &names, &[])?),
                );
            }
            2 => {
                object.insert("spec".into(), spec(&kind, message(&wire)?)?);
            }
            _ => {}
        }
    }
    Ok(Value::Object(object))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn key(number: u64, wire_type: u64) -> Vec<u8> {
        let mut out = Vec::new();
        put_varint(&mut out, (number << 3) | wire_type);
        out
    }

    fn put_varint(out: &mut Vec<u8>, mut v: u64) {
        while v >= 0x80 {
            out.push((v as u8) | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
    }

    fn bytes_field(number: u64, value: &[u8]) -> Vec<u8> {
        let mut out = key(number, 2);
        put_varint(&mut out, value.len() as u64);
        out.extend_from_slice(value);
        out
    }

    fn envelope(kind: &str, raw: &[u8]) -> Vec<u8> {
        let mut type_meta = bytes_field(1, b"authorization.k8s.io/v1");
        type_meta.extend(bytes_field(2, kind.as_bytes()));
        let mut body = b"k8s\0".to_vec();
        body.extend(bytes_field(1, &type_meta));
        body.extend(bytes_field(2, raw));
        body.extend(bytes_field(4, b"application/vnd.kubernetes.protobuf"));
        body
    }

    #[test]
    fn self_subject_access_review_as_kubectl_sends_it() {
        let mut attrs = bytes_field(1, b"default");
        attrs.extend(bytes_field(2, b"create"));
        attrs.extend(bytes_field(3, b"apps"));
        attrs.extend(bytes_field(5, b"deployments"));
        let spec = bytes_field(1, &attrs);
        let mut raw = bytes_field(1, b"");
        raw.extend(bytes_field(2, &spec));
        raw.extend(bytes_field(3, b""));
        let got = decode(&envelope("SelfSubjectAccessReview", &raw)).unwrap();
        assert_eq!(
            got,
            json!({"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
                   "metadata": {},
                   "spec": {"resourceAttributes": {"namespace": "default", "verb": "create",
                                                   "group": "apps", "resource": "deployments"}}})
        );
    }

    #[test]
    fn subject_reviews_and_rules_reviews() {
        let mut spec = bytes_field(2, &{
            let mut n = bytes_field(1, b"/metrics");
            n.extend(bytes_field(2, b"get"));
            n
        });
        spec.extend(bytes_field(3, b"alice"));
        spec.extend(bytes_field(4, b"g1"));
        spec.extend(bytes_field(4, b"g2"));
        // A varint and a fixed field the reader skips.
        spec.extend(key(9, 0));
        spec.push(5);
        spec.extend(key(10, 5));
        spec.extend([0, 0, 0, 0]);
        let raw = bytes_field(2, &spec);
        let got = decode(&envelope("SubjectAccessReview", &raw)).unwrap();
        assert_eq!(
            got["spec"],
            json!({"user": "alice", "groups": ["g1", "g2"],
                   "nonResourceAttributes": {"path": "/metrics", "verb": "get"}})
        );
        let raw = bytes_field(2, &bytes_field(1, b"kube-system"));
        let got = decode(&envelope("SelfSubjectRulesReview", &raw)).unwrap();
        assert_eq!(got["spec"], json!({"namespace": "kube-system"}));
    }

    #[test]
    fn damaged_bodies_are_errors_not_panics() {
        let good = envelope("SelfSubjectAccessReview", &bytes_field(2, &[]));
        assert!(decode(&good).is_ok());
        for cut in 0..good.len() {
            let _ = decode(&good[..cut]);
        }
        assert!(decode(b"k8s\0\x0a\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01").is_err());
        assert!(decode(b"{}").is_err());
        let other = envelope("Pod", &[]);
        assert!(
            decode(&other)
                .unwrap_err()
                .contains("is not an access review")
        );
        // A string that is not UTF-8.
        let bad = envelope(
            "SelfSubjectRulesReview",
            &bytes_field(2, &bytes_field(1, &[0xff])),
        );
        assert!(decode(&bad).is_err());
    }
}
