//! Object metadata helpers: timestamps, uids, resourceVersion injection and
//! the "did anything but metadata/status change" test behind `generation`.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};

use k8s_openapi::jiff::Timestamp;
use serde_json::{Map, Value, json};

/// Now as RFC 3339 with second precision, like Kubernetes' metav1.Time.
pub fn now_rfc3339() -> String {
    let now = Timestamp::now();
    let secs = Timestamp::from_second(now.as_second()).unwrap_or(now);
    secs.to_string()
}

/// A random version-4 style UUID (no external RNG: std's per-process random
/// hasher keys mixed with a counter and the time).
pub fn new_uid() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = Timestamp::now().as_nanosecond();
    let mut words = [0u64; 2];
    for (i, word) in words.iter_mut().enumerate() {
        let mut h = RandomState::new().build_hasher();
        h.write_u64(n);
        h.write_i128(nanos);
        h.write_usize(i);
        *word = h.finish();
    }
    let b = (u128::from(words[0]) << 64) | u128::from(words[1]);
    let b = (b & !(0xF000u128 << 64)) | (0x4000u128 << 64);
    let b = (b & !(0xC000u128 << 48)) | (0x8000u128 << 48);
    let hex = format!("{b:032x}");
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// A random lowercase alphanumeric suffix for `generateName` (5 chars).
pub fn random_suffix() -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let seed = new_uid();
    let mut h = RandomState::new().build_hasher();
    h.write(seed.as_bytes());
    let mut x = h.finish();
    let len = ALPHABET.len() as u64;
    (0..5)
        .map(|_| {
            let c = ALPHABET[usize::try_from(x % len).unwrap_or(0)] as char;
            x /= len;
            c
        })
        .collect()
}

/// `value` as a mutable map, replacing it with `{}` when it is not one.
pub fn as_map(value: &mut Value) -> &mut Map<String, Value> {
    match value {
        Value::Object(map) => map,
        other => {
            *other = Value::Object(Map::new());
            as_map(other)
        }
    }
}

/// `metadata` as a mutable map, created when absent or not an object.
pub fn metadata_mut(object: &mut Value) -> &mut Map<String, Value> {
    as_map(
        as_map(object)
            .entry("metadata")
            .or_insert_with(|| json!({})),
    )
}

/// A string field of `metadata`.
pub fn meta_str<'a>(object: &'a Value, field: &str) -> Option<&'a str> {
    object.get("metadata")?.get(field)?.as_str()
}

/// Sets `metadata.resourceVersion`.
pub fn set_resource_version(object: &mut Value, revision: u64) {
    metadata_mut(object).insert("resourceVersion".into(), json!(revision.to_string()));
}

/// Parses the object's stored JSON and injects its resourceVersion.
pub fn decode_stored(value: &[u8], revision: u64) -> Option<Value> {
    let mut object: Value = serde_json::from_slice(value).ok()?;
    set_resource_version(&mut object, revision);
    Some(object)
}

/// Serialises an object for the store, without `metadata.resourceVersion`.
pub fn encode_for_store(object: &Value) -> Vec<u8> {
    let mut copy = object.clone();
    metadata_mut(&mut copy).remove("resourceVersion");
    serde_json::to_vec(&copy).unwrap_or_default()
}

/// The finalizers listed in `metadata.finalizers`.
pub fn finalizers(object: &Value) -> Vec<String> {
    object
        .pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// True when the two objects differ outside `metadata` and `status`
/// (Kubernetes bumps `generation` then).
pub fn spec_changed(old: &Value, new: &Value) -> bool {
    let strip = |v: &Value| -> Map<String, Value> {
        v.as_object()
            .map(|m| {
                m.iter()
                    .filter(|(k, _)| !matches!(k.as_str(), "metadata" | "status"))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect()
            })
            .unwrap_or_default()
    };
    strip(old) != strip(new)
}

/// Parses a timestamp as Kubernetes writes them.
pub fn parse_time(text: &str) -> Option<Timestamp> {
    text.parse().ok()
}

/// Kubernetes' short human duration ("5s", "3m20s", "4h", "12d", "2y").
pub fn human_age(created: &str) -> String {
    let Some(t) = parse_time(created) else {
        return "<unknown>".to_owned();
    };
    let secs = Timestamp::now().as_second() - t.as_second();
    human_duration(secs)
}

pub fn human_duration(secs: i64) -> String {
    if secs < -1 {
        return "<invalid>".to_owned();
    }
    let secs = secs.max(0);
    let (m, h, d) = (secs / 60, secs / 3600, secs / 86400);
    if secs < 120 {
        format!("{secs}s")
    } else if m < 10 {
        let s = secs % 60;
        if s == 0 {
            format!("{m}m")
        } else {
            format!("{m}m{s}s")
        }
    } else if h < 3 {
        format!("{m}m")
    } else if h < 8 {
        let mm = m % 60;
        if mm == 0 {
            format!("{h}h")
        } else {
            format!("{h}h{mm}m")
        }
    } else if h < 48 {
        format!("{h}h")
    } else if d < 8 {
        let hh = h % 24;
        if hh == 0 {
            format!("{d}d")
        } else {
            format!("{d}d{hh}h")
        }
    } else if d < 365 * 2 {
        format!("{d}d")
    } else {
        format!("{}y", d / 365)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uids_are_unique_and_shaped() {
        let a = new_uid();
        let b = new_uid();
        assert_ne!(a, b);
        assert_eq!(a.len(), 36);
        assert_eq!(&a[14..15], "4");
        assert_eq!(random_suffix().len(), 5);
    }

    #[test]
    fn durations_like_kubernetes() {
        assert_eq!(human_duration(5), "5s");
        assert_eq!(human_duration(200), "3m20s");
        assert_eq!(human_duration(3600), "60m");
        assert_eq!(human_duration(4 * 3600 + 60), "4h1m");
        assert_eq!(human_duration(30 * 3600), "30h");
        assert_eq!(human_duration(3 * 86400), "3d");
        assert_eq!(human_duration(-5), "<invalid>");
    }

    #[test]
    fn generation_ignores_metadata_and_status() {
        let a = json!({"metadata": {"labels": {"a": "1"}}, "spec": {"x": 1}, "status": {"y": 1}});
        let b = json!({"metadata": {"labels": {"a": "2"}}, "spec": {"x": 1}, "status": {"y": 2}});
        let c = json!({"metadata": {}, "spec": {"x": 2}});
        assert!(!spec_changed(&a, &b));
        assert!(spec_changed(&a, &c));
    }

    #[test]
    fn store_encoding_drops_resource_version() {
        let mut o = json!({"metadata": {"name": "a"}});
        set_resource_version(&mut o, 7);
        let bytes = encode_for_store(&o);
        assert!(
            !String::from_utf8(bytes.clone())
                .unwrap()
                .contains("resourceVersion")
        );
        assert_eq!(
            decode_stored(&bytes, 9).unwrap()["metadata"]["resourceVersion"],
            "9"
        );
        assert!(parse_time(&now_rfc3339()).is_some());
    }
}
