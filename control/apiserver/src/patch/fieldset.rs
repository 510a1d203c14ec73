//! Sets of field paths in the `FieldsV1` form of `metadata.managedFields`.
//!
//! A path is a list of encoded elements, exactly as they appear as keys in `fieldsV1`:
//! `f:<field>` (a map member), `k:<json object of key fields>` (an item of a list merged
//! by key), `v:<json value>` (an item of a set list) and `i:<index>`. A node that is
//! itself a member and has children carries the key `"."`; a member without children is
//! `{}`. This is the format structured-merge-diff reads, so kubectl's client-side-apply
//! migration (`csaupgrade`) can parse what hami writes.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::strategy::{Builtin, ListKind, list_kind};

/// A set of field paths; see the module documentation for the encoding.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FieldSet {
    member: bool,
    children: BTreeMap<String, FieldSet>,
}

/// A path of encoded elements (`f:spec`, `k:{"name":"a"}`, ...).
pub type Path = Vec<String>;

/// Which part of an object a write covers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// The main resource. With a status subresource, `status` is not part of it.
    Main { has_status_subresource: bool },
    /// The status subresource: only `status`.
    Status,
}

/// `metadata` fields the server owns; they are never part of a field set.
pub const SERVER_METADATA: [&str; 10] = [
    "name",
    "namespace",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "selfLink",
    "managedFields",
];

/// Whether the top-level field `key` of an object belongs to `scope`.
pub fn in_scope(scope: Scope, key: &str) -> bool {
    match (scope, key) {
        (_, "apiVersion" | "kind") => false,
        (Scope::Status, k) => k == "status",
        (
            Scope::Main {
                has_status_subresource,
            },
            "status",
        ) => !has_status_subresource,
        (Scope::Main { .. }, _) => true,
    }
}

impl FieldSet {
    /// The fields of object `obj` within `scope`, lists encoded by `builtin`'s strategies.
    pub fn from_object(obj: &Value, builtin: Option<Builtin>, scope: Scope) -> FieldSet {
        let mut set = FieldSet::default();
        let Value::Object(top) = obj else {
            return set;
        };
        for (k, v) in top {
            if !in_scope(scope, k) {
                continue;
            }
            let child = set.children.entry(format!("f:{k}")).or_default();
            if k == "metadata"
                && let Value::Object(meta) = v
            {
                for (mk, mv) in meta {
                    if SERVER_METADATA.contains(&mk.as_str()) {
                        continue;
                    }
                    let mut schema = vec!["metadata".to_owned(), mk.clone()];
                    let c = child.children.entry(format!("f:{mk}")).or_default();
                    c.walk(mv, builtin, &mut schema);
                }
            } else {
                let mut schema = vec![k.clone()];
                child.walk(v, builtin, &mut schema);
            }
        }
        set.prune();
        set
    }

    fn walk(&mut self, v: &Value, builtin: Option<Builtin>, schema: &mut Vec<String>) {
        match v {
            Value::Object(m) if !m.is_empty() => {
                for (k, cv) in m {
                    schema.push(k.clone());
                    self.children
                        .entry(format!("f:{k}"))
                        .or_default()
                        .walk(cv, builtin, schema);
                    schema.pop();
                }
            }
            Value::Array(items) if !items.is_empty() => match list_kind(builtin, schema) {
                ListKind::Keyed(key) if items.iter().all(|i| i.get(key).is_some()) => {
                    for item in items {
                        let Some(pe) = key_element(key, item) else {
                            continue;
                        };
                        let child = self.children.entry(pe).or_default();
                        child.member = true;
                        if let Value::Object(m) = item {
                            for (k, cv) in m {
                                schema.push(k.clone());
                                let c = child.children.entry(format!("f:{k}")).or_default();
                                c.walk(cv, builtin, schema);
                                schema.pop();
                            }
                        }
                    }
                }
                ListKind::Set if items.iter().all(|i| !i.is_object() && !i.is_array()) => {
                    for item in items {
                        self.children.entry(format!("v:{item}")).or_default().member = true;
                    }
                }
                _ => self.member = true,
            },
            _ => self.member = true,
        }
    }

    /// Parses a `fieldsV1` value; `None` when it is not in that format.
    pub fn from_fields_v1(v: &Value) -> Option<FieldSet> {
        let mut set = FieldSet::parse(v)?;
        set.member = false;
        Some(set)
    }

    fn parse(v: &Value) -> Option<FieldSet> {
        let Value::Object(m) = v else { return None };
        let mut set = FieldSet {
            member: m.is_empty(),
            children: BTreeMap::new(),
        };
        for (k, cv) in m {
            if k == "." {
                set.member = true;
                continue;
            }
            let valid = k.starts_with("f:")
                || k.starts_with("k:")
                || k.starts_with("v:")
                || k.starts_with("i:");
            if !valid {
                return None;
            }
            set.children.insert(k.clone(), FieldSet::parse(cv)?);
        }
        Some(set)
    }

    /// The `fieldsV1` value of this set.
    pub fn to_fields_v1(&self) -> Value {
        let mut m = Map::new();
        if self.member && !self.children.is_empty() {
            m.insert(".".to_owned(), Value::Object(Map::new()));
        }
        for (k, c) in &self.children {
            m.insert(k.clone(), c.to_fields_v1());
        }
        Value::Object(m)
    }

    /// Whether the set has no members.
    pub fn is_empty(&self) -> bool {
        !self.member && self.children.values().all(FieldSet::is_empty)
    }

    /// Every member path, parents before children.
    pub fn members(&self) -> Vec<Path> {
        let mut out = Vec::new();
        self.collect(&mut Vec::new(), &mut out, false);
        out
    }

    /// Member paths that have no children (the values themselves).
    pub fn leaves(&self) -> Vec<Path> {
        let mut out = Vec::new();
        self.collect(&mut Vec::new(), &mut out, true);
        out
    }

    fn collect(&self, at: &mut Path, out: &mut Vec<Path>, leaves_only: bool) {
        if self.member && (!leaves_only || self.children.is_empty()) && !at.is_empty() {
            out.push(at.clone());
        }
        for (k, c) in &self.children {
            at.push(k.clone());
            c.collect(at, out, leaves_only);
            at.pop();
        }
    }

    fn node(&self, path: &[String]) -> Option<&FieldSet> {
        let mut n = self;
        for pe in path {
            n = n.children.get(pe)?;
        }
        Some(n)
    }

    /// Whether `path` is a member.
    pub fn has(&self, path: &[String]) -> bool {
        self.node(path).is_some_and(|n| n.member)
    }

    /// Whether `path` has members below it.
    pub fn has_children(&self, path: &[String]) -> bool {
        self.node(path)
            .is_some_and(|n| n.children.values().any(|c| !c.is_empty()))
    }

    /// Whether `path` or anything below it is a member.
    pub fn has_at_or_below(&self, path: &[String]) -> bool {
        self.node(path).is_some_and(|n| !n.is_empty())
    }

    /// Adds `path` as a member.
    pub fn insert(&mut self, path: &[String]) {
        let mut n = self;
        for pe in path {
            n = n.children.entry(pe.clone()).or_default();
        }
        n.member = true;
    }

    /// Removes `path` as a member (its children stay).
    pub fn remove(&mut self, path: &[String]) {
        fn go(n: &mut FieldSet, path: &[String]) {
            match path.split_first() {
                None => n.member = false,
                Some((pe, rest)) => {
                    if let Some(c) = n.children.get_mut(pe) {
                        go(c, rest);
                    }
                }
            }
        }
        go(self, path);
        self.prune();
    }

    /// Adds every member of `other`.
    pub fn union(&mut self, other: &FieldSet) {
        self.member |= other.member;
        for (k, c) in &other.children {
            self.children.entry(k.clone()).or_default().union(c);
        }
    }

    /// Drops nodes with no member at or below them.
    fn prune(&mut self) {
        for c in self.children.values_mut() {
            c.prune();
        }
        self.children.retain(|_, c| !c.is_empty());
    }
}

/// The `k:` element of a list item merged by `key`, or `None` when it lacks the key.
pub fn key_element(key: &str, item: &Value) -> Option<String> {
    let kv = item.get(key)?;
    let mut m = Map::new();
    m.insert(key.to_owned(), kv.clone());
    Some(format!("k:{}", Value::Object(m)))
}

/// The value at `path` within `obj`, if there is one.
pub fn get<'a>(obj: &'a Value, path: &[String]) -> Option<&'a Value> {
    let mut v = obj;
    for pe in path {
        v = step(v, pe)?;
    }
    Some(v)
}

fn step<'a>(v: &'a Value, pe: &str) -> Option<&'a Value> {
    if let Some(f) = pe.strip_prefix("f:") {
        return v.as_object()?.get(f);
    }
    let items = v.as_array()?;
    items.get(item_index(items, pe)?)
}

fn item_index(items: &[Value], pe: &str) -> Option<usize> {
    if let Some(k) = pe.strip_prefix("k:") {
        let Ok(Value::Object(keys)) = serde_json::from_str::<Value>(k) else {
            return None;
        };
        return items
            .iter()
            .position(|i| keys.iter().all(|(kk, kv)| i.get(kk) == Some(kv)));
    }
    if let Some(val) = pe.strip_prefix("v:") {
        let val: Value = serde_json::from_str(val).ok()?;
        return items.iter().position(|i| *i == val);
    }
    pe.strip_prefix("i:")?
        .parse()
        .ok()
        .filter(|i| *i < items.len())
}

/// Removes the value at `path` from `obj`; answers whether something was removed.
pub fn remove(obj: &mut Value, path: &[String]) -> bool {
    let Some((last, parents)) = path.split_last() else {
        return false;
    };
    let mut v = obj;
    for pe in parents {
        let next = if let Some(f) = pe.strip_prefix("f:") {
            v.as_object_mut().and_then(|m| m.get_mut(f))
        } else {
            match v.as_array_mut() {
                Some(items) => match item_index(items, pe) {
                    Some(i) => items.get_mut(i),
                    None => None,
                },
                None => None,
            }
        };
        match next {
            Some(n) => v = n,
            None => return false,
        }
    }
    if let Some(f) = last.strip_prefix("f:") {
        return v.as_object_mut().and_then(|m| m.remove(f)).is_some();
    }
    match v.as_array_mut() {
        Some(items) => match item_index(items, last) {
            Some(i) => {
                items.remove(i);
                true
            }
            None => false,
        },
        None => false,
    }
}

/// Renders a path the way Kubernetes names fields in conflicts:
/// `.spec.template.spec.containers[name="nginx"].image`.
pub fn display(path: &[String]) -> String {
    let mut s = String::new();
    for pe in path {
        if let Some(f) = pe.strip_prefix("f:") {
            s.push('.');
            s.push_str(f);
        } else if let Some(k) = pe.strip_prefix("k:") {
            let fields = match serde_json::from_str::<Value>(k) {
                Ok(Value::Object(m)) => m
                    .iter()
                    .map(|(kk, kv)| format!("{kk}={kv}"))
                    .collect::<Vec<_>>()
                    .join(","),
                _ => k.to_owned(),
            };
            s.push_str(&format!("[{fields}]"));
        } else if let Some(v) = pe.strip_prefix("v:") {
            s.push_str(&format!("[={v}]"));
        } else if let Some(i) = pe.strip_prefix("i:") {
            s.push_str(&format!("[{i}]"));
        }
    }
    s
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    fn p(s: &[&str]) -> Path {
        s.iter().map(|x| (*x).to_owned()).collect()
    }

    #[test]
    fn deployment_fields_v1() {
        let d = json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "uid": "u", "labels": {"app": "web"}, "finalizers": ["f"]},
            "spec": {"replicas": 2, "template": {"spec": {"containers": [
                {"name": "nginx", "image": "nginx", "args": ["a"]}
            ]}}},
            "status": {"replicas": 1}
        });
        let b = Builtin::from_gvk("apps/v1", "Deployment");
        let set = FieldSet::from_object(
            &d,
            b,
            Scope::Main {
                has_status_subresource: true,
            },
        );
        assert_eq!(
            set.to_fields_v1(),
            json!({
                "f:metadata": {"f:labels": {"f:app": {}}, "f:finalizers": {"v:\"f\"": {}}},
                "f:spec": {"f:replicas": {}, "f:template": {"f:spec": {"f:containers": {
                    "k:{\"name\":\"nginx\"}": {".": {}, "f:args": {}, "f:image": {}, "f:name": {}}
                }}}}
            })
        );
        assert_eq!(
            FieldSet::from_fields_v1(&set.to_fields_v1()),
            Some(set.clone())
        );
        let status = FieldSet::from_object(&d, b, Scope::Status);
        assert_eq!(
            status.to_fields_v1(),
            json!({"f:status": {"f:replicas": {}}})
        );
    }

    #[test]
    fn paths_navigate_and_remove() {
        let mut d = json!({"spec": {"containers": [{"name": "a", "image": "x"}, {"name": "b"}]},
            "metadata": {"finalizers": ["f", "g"]}});
        let img = p(&["f:spec", "f:containers", "k:{\"name\":\"a\"}", "f:image"]);
        assert_eq!(get(&d, &img), Some(&json!("x")));
        assert_eq!(display(&img), ".spec.containers[name=\"a\"].image");
        assert!(remove(&mut d, &img));
        assert!(remove(
            &mut d,
            &p(&["f:spec", "f:containers", "k:{\"name\":\"b\"}"])
        ));
        assert!(remove(
            &mut d,
            &p(&["f:metadata", "f:finalizers", "v:\"f\""])
        ));
        assert!(!remove(&mut d, &p(&["f:nope", "f:x"])));
        assert_eq!(
            d,
            json!({"spec": {"containers": [{"name": "a"}]}, "metadata": {"finalizers": ["g"]}})
        );
    }

    #[test]
    fn set_operations() {
        let mut a = FieldSet::default();
        a.insert(&p(&["f:spec", "f:replicas"]));
        a.insert(&p(&["f:spec", "f:paused"]));
        assert!(a.has(&p(&["f:spec", "f:replicas"])));
        assert!(!a.has(&p(&["f:spec"])));
        assert!(a.has_at_or_below(&p(&["f:spec"])));
        a.remove(&p(&["f:spec", "f:replicas"]));
        assert_eq!(a.leaves(), vec![p(&["f:spec", "f:paused"])]);
        a.remove(&p(&["f:spec", "f:paused"]));
        assert!(a.is_empty());
        assert_eq!(a.to_fields_v1(), json!({}));
        assert_eq!(FieldSet::from_fields_v1(&json!({"x": {}})), None);
        assert_eq!(FieldSet::from_fields_v1(&json!([])), None);
    }
}
