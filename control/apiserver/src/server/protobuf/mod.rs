//! Kubernetes' protobuf encoding (`application/vnd.kubernetes.protobuf`) of
//! every built-in kind the server serves, in request bodies, responses,
//! lists and watch streams, as kube-apiserver speaks it to kubectl and
//! client-go's typed clients (which send built-in kinds as protobuf).
//!
//! Wire format: the 4-byte magic `k8s\0`, then a `runtime.Unknown` message
//! (`typeMeta` = 1 {apiVersion = 1, kind = 2}, `raw` = 2, `contentEncoding`
//! = 3, `contentType` = 4) whose `raw` is the object in the messages of
//! `k8s.io/api/.../generated.proto`. A watch stream is a sequence of frames,
//! each a 4-byte big-endian length and a `metav1.WatchEvent` {type = 1,
//! object = 2 (a RawExtension holding the object's own envelope)}.
//!
//! The messages come from [`generated`], a table generated from the k8s-pb
//! crate's types; [`transcode`] turns bytes into the JSON object the rest of
//! the server handles and back. Kinds without a message (hami's own, custom
//! resources) answer 415 in a body, and JSON in a response, as
//! kube-apiserver does for custom resources.

pub mod generated;
pub mod schema;
pub mod transcode;
mod wire;

use serde_json::{Map, Value};

use wire::{Reader, bytes_of, invalid, put_bytes, string};

/// The magic bytes before the envelope.
pub const MAGIC: &[u8] = b"k8s\0";

/// The media type.
pub const MEDIA_TYPE: &str = "application/vnd.kubernetes.protobuf";

/// The media type of a watch stream.
pub const WATCH_MEDIA_TYPE: &str = "application/vnd.kubernetes.protobuf;stream=watch";

/// Why a protobuf body cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ProtobufError {
    /// Not protobuf of the expected shape.
    #[error("invalid protobuf body: {0}")]
    Invalid(String),
    /// Valid, but of a kind that has no protobuf message (hami's kinds,
    /// custom resources): JSON or YAML only.
    #[error(
        "{0} has no protobuf encoding on this server (built-in Kubernetes kinds only); send application/json or application/yaml"
    )]
    UnsupportedKind(String),
}

/// The JSON object of a protobuf-encoded body.
pub fn decode(body: &[u8]) -> Result<Value, ProtobufError> {
    decode_at(body, 0)
}

fn decode_at(body: &[u8], depth: usize) -> Result<Value, ProtobufError> {
    let envelope = body
        .strip_prefix(MAGIC)
        .ok_or_else(|| invalid("missing the k8s\\0 prefix"))?;
    let (mut api_version, mut kind, mut raw) = (String::new(), String::new(), &[][..]);
    let mut r = Reader::new(envelope);
    while let Some((n, w)) = r.next_field()? {
        match n {
            1 => {
                let mut t = Reader::new(bytes_of(&w)?);
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
    if kind.is_empty() {
        return Err(invalid("no kind in the envelope"));
    }
    let message = schema::message_of(&api_version, &kind)
        .ok_or_else(|| ProtobufError::UnsupportedKind(format!("{kind} ({api_version})")))?;
    let mut object = Map::new();
    object.insert("apiVersion".into(), Value::String(api_version));
    object.insert("kind".into(), Value::String(kind));
    object.extend(transcode::to_json_at(message, raw, depth)?);
    Ok(Value::Object(object))
}

/// The protobuf envelope of a JSON object that names its `apiVersion` and
/// `kind`.
pub fn encode(object: &Value) -> Result<Vec<u8>, ProtobufError> {
    let map = object
        .as_object()
        .ok_or_else(|| invalid("not a JSON object"))?;
    let api_version = map.get("apiVersion").and_then(Value::as_str).unwrap_or("");
    let kind = map.get("kind").and_then(Value::as_str).unwrap_or("");
    let message = schema::message_of(api_version, kind)
        .ok_or_else(|| ProtobufError::UnsupportedKind(format!("{kind} ({api_version})")))?;
    let mut raw = Vec::new();
    transcode::from_json(message, map, &mut raw, "")?;
    let mut type_meta = Vec::new();
    put_bytes(1, api_version.as_bytes(), &mut type_meta);
    put_bytes(2, kind.as_bytes(), &mut type_meta);
    let mut out = MAGIC.to_vec();
    put_bytes(1, &type_meta, &mut out);
    put_bytes(2, &raw, &mut out);
    put_bytes(3, b"", &mut out);
    put_bytes(4, b"", &mut out);
    Ok(out)
}

/// One frame of a protobuf watch stream: the length, then the WatchEvent.
pub fn watch_frame(type_: &str, object: &Value) -> Result<Vec<u8>, ProtobufError> {
    let inner = encode(object)?;
    let mut raw_extension = Vec::new();
    put_bytes(1, &inner, &mut raw_extension);
    let mut event = Vec::new();
    put_bytes(1, type_.as_bytes(), &mut event);
    put_bytes(2, &raw_extension, &mut event);
    let len = u32::try_from(event.len()).map_err(|_| invalid("watch event too large"))?;
    let mut frame = len.to_be_bytes().to_vec();
    frame.extend_from_slice(&event);
    Ok(frame)
}

/// The type and object of one watch frame's `WatchEvent` (the bytes after
/// the length), as a client reads them.
pub fn decode_watch_event(event: &[u8]) -> Result<(String, Value), ProtobufError> {
    let (mut type_, mut object) = (String::new(), None);
    let mut r = Reader::new(event);
    while let Some((n, w)) = r.next_field()? {
        match n {
            1 => type_ = string(bytes_of(&w)?)?,
            2 => {
                let mut ext = Reader::new(bytes_of(&w)?);
                while let Some((n, w)) = ext.next_field()? {
                    if n == 1 {
                        object = Some(decode(bytes_of(&w)?)?);
                    }
                }
            }
            _ => {}
        }
    }
    Ok((
        type_,
        object.ok_or_else(|| invalid("a watch event without an object"))?,
    ))
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
            decode(&envelope(
                "policy.hami.io/v1alpha1",
                "PropagationPolicy",
                &[]
            )),
            Err(ProtobufError::UnsupportedKind(
                "PropagationPolicy (policy.hami.io/v1alpha1)".into()
            ))
        );
        assert!(matches!(decode(b"{}"), Err(ProtobufError::Invalid(_))));
        let mut truncated = envelope("v1", "Secret", &[]);
        truncated.extend_from_slice(&[0x12, 0x05, 1]);
        assert!(matches!(decode(&truncated), Err(ProtobufError::Invalid(_))));
        let mut bad_wire = MAGIC.to_vec();
        bad_wire.push(0x0b); // field 1, wire type 3 (groups are not used)
        assert!(matches!(decode(&bad_wire), Err(ProtobufError::Invalid(_))));
    }

    /// Embedded Go structs (a probe's handler, a volume's source, a key
    /// selector's LocalObjectReference) are messages of their own on the
    /// wire and flat in JSON; IntOrString, Quantity and Duration-free times
    /// take their JSON forms; a pointer's zero (`replicas: 0`) is kept.
    #[test]
    fn embedded_structs_and_special_types_round_trip() {
        let deployment = json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "default", "labels": {"app": "web"},
                         "creationTimestamp": "2024-05-01T10:00:00Z"},
            "spec": {
                "replicas": 0,
                "selector": {"matchLabels": {"app": "web"}},
                "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": 1}},
                "template": {
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {
                        "containers": [{
                            "name": "web", "image": "nginx", "args": ["-g", ""],
                            "ports": [{"containerPort": 80, "protocol": "TCP"}],
                            "resources": {"limits": {"nvidia.com/gpu": "1", "memory": "1Gi"},
                                          "requests": {"cpu": "100m"}},
                            "readinessProbe": {"httpGet": {"path": "/", "port": "http"}, "periodSeconds": 5},
                            "env": [{"name": "A", "valueFrom": {"configMapKeyRef": {"name": "cm", "key": "k"}}}]
                        }],
                        "volumes": [{"name": "v", "emptyDir": {"sizeLimit": "1Gi"}}],
                        "hostIPC": false
                    }
                }
            }
        });
        let bytes = encode(&deployment).unwrap();
        assert!(bytes.starts_with(MAGIC));
        assert_eq!(decode(&bytes).unwrap(), deployment);
    }

    #[test]
    fn lists_status_and_watch_frames_encode() {
        let list = json!({"apiVersion": "v1", "kind": "ConfigMapList",
            "metadata": {"resourceVersion": "7"},
            "items": [{"metadata": {"name": "a"}, "data": {"k": "v"}}]});
        assert_eq!(decode(&encode(&list).unwrap()).unwrap(), list);
        let status = json!({"apiVersion": "v1", "kind": "Status", "metadata": {},
            "status": "Failure", "reason": "Invalid", "code": 422,
            "details": {"name": "web", "kind": "Deployment",
                        "causes": [{"reason": "FieldValueInvalid", "field": "spec.replicas", "message": "m"}]}});
        assert_eq!(decode(&encode(&status).unwrap()).unwrap(), status);

        let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"}});
        let frame = watch_frame("ADDED", &cm).unwrap();
        let len = u32::from_be_bytes([frame[0], frame[1], frame[2], frame[3]]) as usize;
        assert_eq!(len, frame.len() - 4);
        assert_eq!(
            decode_watch_event(&frame[4..]).unwrap(),
            ("ADDED".to_owned(), cm)
        );
    }

    /// A meta `List` whose item is a `List` whose item is ..., each in its
    /// own envelope: refused at the depth limit, not a stack overflow.
    #[test]
    fn envelopes_nested_without_end_are_refused() {
        let mut body = envelope("v1", "ConfigMap", &[]);
        for _ in 0..200 {
            let mut ext = Vec::new();
            len_field(1, &body, &mut ext);
            let mut list = Vec::new();
            len_field(2, &ext, &mut list);
            body = envelope("meta.k8s.io/v1", "List", &list);
        }
        assert!(matches!(decode(&body), Err(ProtobufError::Invalid(_))));
    }

    #[test]
    fn go_durations_format_and_parse() {
        use super::transcode::{go_duration, parse_go_duration};
        for (ns, s) in [
            (0, "0s"),
            (1_500_000_000, "1.5s"),
            (300_000_000, "300ms"),
            (3_723_000_000_000, "1h2m3s"),
            (90_000_000_000, "1m30s"),
            (-2_000_000_000, "-2s"),
        ] {
            assert_eq!(go_duration(ns), s);
            assert_eq!(parse_go_duration(s), Some(ns), "{s}");
        }
        assert_eq!(parse_go_duration("5x"), None);
    }

    #[test]
    fn a_value_of_the_wrong_type_is_an_error_not_a_panic() {
        let bad =
            json!({"apiVersion": "apps/v1", "kind": "Deployment", "spec": {"replicas": "two"}});
        assert_eq!(
            encode(&bad),
            Err(ProtobufError::Invalid(
                "spec.replicas: expected an integer".into()
            ))
        );
    }
}
