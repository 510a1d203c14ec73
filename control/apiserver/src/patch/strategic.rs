//! Strategic merge patch for the built-in kinds, as kubectl (1.32) computes and sends it.
//!
//! Maps merge recursively and `null` deletes a key. Lists merge by their patch merge key
//! where Kubernetes declares one ([`super::strategy`]); other lists are replaced whole.
//! Directives: `$patch: replace | delete` (on a map, and as a list element), `$patch:
//! merge` on a map (the default, accepted as a no-op), `$retainKeys`,
//! `$deleteFromPrimitiveList/<field>` and `$setElementOrder/<field>`.
//!
//! Ordering of merged lists follows apimachinery: the items named in the patch (or in
//! `$setElementOrder`) in that order, interleaved with the items only the server has by
//! their position in the original list.
//!
//! Differences from apimachinery: unknown fields are merged as plain maps instead of
//! being rejected, directives inside values that are new to the object are resolved
//! (against an empty original) rather than stored verbatim, and `$patch: replace` on a
//! map resolves the directives of the rest of its patch.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::strategy::{Builtin, ListKind, list_kind};
use super::{PatchError, dotted};

const DIRECTIVE: &str = "$patch";
const RETAIN_KEYS: &str = "$retainKeys";
const DELETE_FROM_PRIMITIVE: &str = "$deleteFromPrimitiveList/";
const SET_ELEMENT_ORDER: &str = "$setElementOrder/";

/// Applies a strategic merge patch to `original`, a built-in object of `api_version` and
/// `kind`. Kinds without a declared strategy (custom resources) answer
/// [`PatchError::UnsupportedMediaType`], as Kubernetes answers 415 for them.
pub fn strategic_merge_patch(
    original: &Value,
    patch: &Value,
    api_version: &str,
    kind: &str,
) -> Result<Value, PatchError> {
    let Some(builtin) = Builtin::from_gvk(api_version, kind) else {
        return Err(PatchError::UnsupportedMediaType {
            api_version: api_version.to_owned(),
            kind: kind.to_owned(),
        });
    };
    let Value::Object(patch) = patch else {
        return Err(bad(
            &[] as &[String],
            "a strategic merge patch must be a JSON object",
        ));
    };
    let original = match original {
        Value::Object(m) => m.clone(),
        _ => Map::new(),
    };
    let mut m = Merger {
        builtin,
        path: Vec::new(),
    };
    m.merge_map(original, patch.clone()).map(Value::Object)
}

fn bad<S: AsRef<str>>(path: &[S], reason: impl Into<String>) -> PatchError {
    PatchError::BadPatch {
        path: dotted(path),
        reason: reason.into(),
    }
}

struct Merger {
    builtin: Builtin,
    /// Map keys from the root to the value being merged.
    path: Vec<String>,
}

impl Merger {
    fn err(&self, reason: impl Into<String>) -> PatchError {
        bad(&self.path, reason)
    }

    fn err_at(&self, field: &str, reason: impl Into<String>) -> PatchError {
        let mut p = self.path.clone();
        p.push(field.to_owned());
        bad(&p, reason)
    }

    fn kind_of(&self, field: &str) -> ListKind {
        let mut p: Vec<&str> = self.path.iter().map(String::as_str).collect();
        p.push(field);
        list_kind(Some(self.builtin), &p)
    }

    fn merge_map(
        &mut self,
        mut original: Map<String, Value>,
        mut patch: Map<String, Value>,
    ) -> Result<Map<String, Value>, PatchError> {
        if let Some(d) = patch.remove(DIRECTIVE) {
            match d.as_str() {
                Some("replace") => return self.merge_map(Map::new(), patch),
                Some("delete") => return Ok(Map::new()),
                Some("merge") => {}
                _ => return Err(self.err(format!("unknown $patch directive {d}"))),
            }
        }
        if let Some(retain) = patch.remove(RETAIN_KEYS) {
            self.retain_keys(&mut original, &patch, &retain)?;
        }
        self.set_element_orders(&mut original, &mut patch)?;
        for (k, v) in patch {
            if let Some(field) = k.strip_prefix(DELETE_FROM_PRIMITIVE) {
                let Value::Array(remove) = v else {
                    return Err(self.err_at(&k, "must be a list"));
                };
                if let Some(Value::Array(items)) = original.get_mut(field) {
                    items.retain(|i| !remove.contains(i));
                }
                continue;
            }
            if k.starts_with('$') {
                return Err(self.err_at(&k, "unknown patch directive"));
            }
            if v.is_null() {
                original.remove(&k);
                continue;
            }
            let merged = match original.remove(&k) {
                Some(o) => self.merge_value(&k, o, v)?,
                None => self.fresh_value(&k, v)?,
            };
            original.insert(k, merged);
        }
        Ok(original)
    }

    /// `$retainKeys`: keys of the original that the list does not name are cleared.
    fn retain_keys(
        &self,
        original: &mut Map<String, Value>,
        patch: &Map<String, Value>,
        retain: &Value,
    ) -> Result<(), PatchError> {
        let Some(list) = retain.as_array() else {
            return Err(self.err_at(RETAIN_KEYS, "must be a list of field names"));
        };
        let mut keep = Vec::with_capacity(list.len());
        for k in list {
            let Some(k) = k.as_str() else {
                return Err(self.err_at(RETAIN_KEYS, "must be a list of field names"));
            };
            keep.push(k);
        }
        for (k, v) in patch {
            if v.is_null() || k.starts_with('$') {
                continue;
            }
            if !keep.contains(&k.as_str()) {
                return Err(self.err_at(k, "field is set but not named in $retainKeys"));
            }
        }
        original.retain(|k, _| keep.contains(&k.as_str()));
        Ok(())
    }

    /// `$setElementOrder/<field>`: merges that field's list first and orders the result.
    fn set_element_orders(
        &mut self,
        original: &mut Map<String, Value>,
        patch: &mut Map<String, Value>,
    ) -> Result<(), PatchError> {
        let fields: Vec<String> = patch
            .keys()
            .filter_map(|k| k.strip_prefix(SET_ELEMENT_ORDER))
            .map(str::to_owned)
            .collect();
        for field in fields {
            let order_key = format!("{SET_ELEMENT_ORDER}{field}");
            let Some(Value::Array(order)) = patch.remove(&order_key) else {
                return Err(self.err_at(&order_key, "must be a list"));
            };
            let kind = self.kind_of(&field);
            let patch_list = match patch.remove(&field) {
                Some(Value::Array(l)) => Some(l),
                Some(Value::Null) | None => None,
                Some(_) => return Err(self.err_at(&field, "must be a list")),
            };
            let orig_list = match original.remove(&field) {
                Some(Value::Array(l)) => Some(l),
                _ => None,
            };
            let removals = match patch.remove(&format!("{DELETE_FROM_PRIMITIVE}{field}")) {
                Some(Value::Array(r)) => r,
                None => Vec::new(),
                Some(_) => {
                    return Err(self.err_at(&field, "$deleteFromPrimitiveList must be a list"));
                }
            };
            let orig_for_order = orig_list.clone().unwrap_or_default();
            let mut merged = match (orig_list, patch_list) {
                (None, None) => continue,
                (Some(o), None) => o,
                (o, Some(p)) => {
                    self.path.push(field.clone());
                    let r = self.merge_list(o.unwrap_or_default(), p, kind);
                    self.path.pop();
                    r?
                }
            };
            merged.retain(|i| !removals.contains(i));
            let ident = Ident::new(kind);
            for item in &order {
                if ident.of(item).is_none() {
                    return Err(self.err_at(&order_key, "element lacks the list's merge key"));
                }
            }
            let merged = normalize_order(merged, &order, &orig_for_order, &ident);
            original.insert(field, Value::Array(merged));
        }
        Ok(())
    }

    /// Merges a patch value into an existing value of field `k`.
    fn merge_value(&mut self, k: &str, orig: Value, patch: Value) -> Result<Value, PatchError> {
        self.path.push(k.to_owned());
        let r = match (orig, patch) {
            (Value::Object(o), Value::Object(p)) => self.merge_map(o, p).map(Value::Object),
            (Value::Array(o), Value::Array(p)) => {
                let kind = list_kind(Some(self.builtin), &self.path);
                self.merge_list(o, p, kind).map(Value::Array)
            }
            (_, p) => {
                self.path.pop();
                return self.fresh_value(k, p);
            }
        };
        self.path.pop();
        r
    }

    /// A value for a field the original lacks (or holds with another type): the patch,
    /// with its directives resolved against nothing.
    fn fresh_value(&mut self, k: &str, patch: Value) -> Result<Value, PatchError> {
        match patch {
            Value::Object(p) => self.merge_value(k, Value::Object(Map::new()), Value::Object(p)),
            Value::Array(p) => self.merge_value(k, Value::Array(Vec::new()), Value::Array(p)),
            scalar => Ok(scalar),
        }
    }

    fn merge_list(
        &mut self,
        original: Vec<Value>,
        patch: Vec<Value>,
        kind: ListKind,
    ) -> Result<Vec<Value>, PatchError> {
        match kind {
            ListKind::Atomic => Ok(patch),
            ListKind::Set => self.merge_set(original, patch),
            ListKind::Keyed(key) => self.merge_keyed(original, patch, key),
        }
    }

    fn merge_set(
        &mut self,
        mut original: Vec<Value>,
        patch: Vec<Value>,
    ) -> Result<Vec<Value>, PatchError> {
        let mut items = Vec::with_capacity(patch.len());
        for p in patch {
            match p {
                Value::Object(m) => match m.get(DIRECTIVE).and_then(Value::as_str) {
                    Some("replace") if m.len() == 1 => original.clear(),
                    _ => return Err(self.err("a list of scalars holds an object")),
                },
                Value::Array(_) => return Err(self.err("a list of scalars holds a list")),
                v => items.push(v),
            }
        }
        let orig_order = original.clone();
        let mut merged = original;
        for v in &items {
            if !merged.contains(v) {
                merged.push(v.clone());
            }
        }
        Ok(normalize_order(merged, &items, &orig_order, &Ident::Scalar))
    }

    fn merge_keyed(
        &mut self,
        original: Vec<Value>,
        patch: Vec<Value>,
        key: &'static str,
    ) -> Result<Vec<Value>, PatchError> {
        let mut merged = original;
        let mut plain = Vec::with_capacity(patch.len());
        for p in patch {
            let Value::Object(m) = p else {
                return Err(self.err(format!("list merged by {key:?} holds a non-object")));
            };
            match m.get(DIRECTIVE).map(|d| d.as_str()) {
                None => plain.push(m),
                Some(Some("replace")) => merged.clear(),
                Some(Some("delete")) => {
                    let Some(kv) = m.get(key) else {
                        return Err(self.err(format!("$patch: delete element lacks {key:?}")));
                    };
                    merged.retain(|i| i.get(key) != Some(kv));
                }
                Some(d) => {
                    return Err(self.err(format!("unsupported $patch directive {d:?} in a list")));
                }
            }
        }
        let orig_order = merged.clone();
        let mut order = Vec::with_capacity(plain.len());
        for p in plain {
            let Some(kv) = p.get(key).cloned() else {
                return Err(self.err(format!("element lacks the merge key {key:?}")));
            };
            let pos = merged.iter().position(|i| i.get(key) == Some(&kv));
            let base = match pos {
                Some(i) => match merged.remove(i) {
                    Value::Object(o) => o,
                    _ => Map::new(),
                },
                None => Map::new(),
            };
            let item = Value::Object(self.merge_map(base, p)?);
            match pos {
                Some(i) => merged.insert(i, item),
                None => merged.push(item),
            }
            let mut o = Map::new();
            o.insert(key.to_owned(), kv);
            order.push(Value::Object(o));
        }
        Ok(normalize_order(
            merged,
            &order,
            &orig_order,
            &Ident::Key(key),
        ))
    }
}

/// How list elements are identified for ordering.
enum Ident {
    Scalar,
    Key(&'static str),
}

impl Ident {
    fn new(kind: ListKind) -> Ident {
        match kind {
            ListKind::Keyed(k) => Ident::Key(k),
            ListKind::Set | ListKind::Atomic => Ident::Scalar,
        }
    }

    fn of(&self, v: &Value) -> Option<String> {
        match self {
            Ident::Scalar => Some(v.to_string()),
            Ident::Key(k) => v.get(*k).map(Value::to_string),
        }
    }
}

/// Orders `merged`: items named by `order` in that order, interleaved with the other
/// items by their position in `original` (an item the original lacks sorts after the
/// server's items, as apimachinery's `mergeSortedSlice` does).
fn normalize_order(
    merged: Vec<Value>,
    order: &[Value],
    original: &[Value],
    ident: &Ident,
) -> Vec<Value> {
    let index = |list: &[Value]| -> BTreeMap<String, usize> {
        let mut m = BTreeMap::new();
        for (i, v) in list.iter().enumerate() {
            if let Some(id) = ident.of(v) {
                m.entry(id).or_insert(i);
            }
        }
        m
    };
    let order_ix = index(order);
    let orig_ix = index(original);
    let pos =
        |v: &Value, ix: &BTreeMap<String, usize>| ident.of(v).and_then(|id| ix.get(&id).copied());
    let (mut named, mut server): (Vec<Value>, Vec<Value>) = merged
        .into_iter()
        .partition(|v| pos(v, &order_ix).is_some());
    named.sort_by_key(|v| pos(v, &order_ix));
    server.sort_by_key(|v| pos(v, &orig_ix).unwrap_or(usize::MAX));
    let mut out = Vec::with_capacity(named.len() + server.len());
    let (mut named, mut server) = (named.into_iter().peekable(), server.into_iter().peekable());
    loop {
        let take_named = match (named.peek(), server.peek()) {
            (None, None) => break,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (Some(n), Some(s)) => match (pos(n, &orig_ix), pos(s, &orig_ix)) {
                (Some(a), Some(b)) => a < b,
                _ => false,
            },
        };
        let next = if take_named {
            named.next()
        } else {
            server.next()
        };
        out.extend(next);
    }
    out
}

#[cfg(test)]
#[path = "strategic_tests.rs"]
mod tests;
