//! Deterministic names: the pod-template-hash of a Deployment's template and
//! the random-looking suffixes of the pods a controller creates. They are
//! derived from a seed (the owner's UID) and an index, so two controller
//! passes that read the same (possibly stale) state pick the same names, and
//! a duplicate create is answered 409 instead of making a second pod.

use serde::Serialize;

/// Kubernetes' alphabet for generated suffixes (no vowels, no 0/1/3).
const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

/// FNV-1a, 64 bits.
pub fn fnv(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

fn encode(mut v: u64, len: usize) -> String {
    let mut s = String::with_capacity(len);
    for _ in 0..len {
        s.push(char::from(ALPHABET[(v % ALPHABET.len() as u64) as usize]));
        v /= ALPHABET.len() as u64;
    }
    s
}

/// The `i`-th pod name suffix for an owner (5 characters, as Kubernetes').
pub fn suffix(seed: &str, i: u64) -> String {
    let mut bytes = seed.as_bytes().to_vec();
    bytes.extend_from_slice(&i.to_le_bytes());
    encode(fnv(&bytes), 5)
}

/// A stable hash of a serialisable value (a pod template), 10 characters.
pub fn object_hash<T: Serialize>(value: &T) -> String {
    let bytes = serde_json::to_vec(value).unwrap_or_default();
    encode(fnv(&bytes), 10)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suffixes_are_stable_and_distinct() {
        assert_eq!(suffix("uid-1", 0), suffix("uid-1", 0));
        let mut seen: Vec<String> = (0..200).map(|i| suffix("uid-1", i)).collect();
        seen.sort();
        seen.dedup();
        assert_eq!(seen.len(), 200);
        assert_ne!(suffix("uid-1", 0), suffix("uid-2", 0));
        assert!(suffix("x", 3).bytes().all(|b| ALPHABET.contains(&b)));
        assert_eq!(object_hash(&serde_json::json!({"a": 1})).len(), 10);
        assert_ne!(
            object_hash(&serde_json::json!({"a": 1})),
            object_hash(&serde_json::json!({"a": 2}))
        );
    }
}
