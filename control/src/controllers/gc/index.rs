//! The collector's index, kube-controller-manager's dependency graph
//! (`graph_builder.go`: `uidToNode`, `node.dependents`) kept as a plain
//! synchronous struct: for every stored object its uid, its
//! ownerReferences and its deletion state (key → [`Node`]), and for every
//! uid the objects that name it as owner (owner uid → dependent keys).
//!
//! Only what the collector reads is kept (habit 4): no spec, no status, no
//! managedFields. An object whose metadata cannot be read is skipped by the
//! caller and counted.

use std::collections::{BTreeMap, BTreeSet};

use hami_apiserver::deletion::{FINALIZER_FOREGROUND, FINALIZER_ORPHAN};
use hami_store::KeyValue;
use serde::Deserialize;
use serde_json::Value;

/// One entry of `metadata.ownerReferences` (the fields the collector reads).
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OwnerRef {
    #[serde(default)]
    pub api_version: String,
    #[serde(default)]
    pub kind: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub uid: String,
    #[serde(default)]
    pub controller: Option<bool>,
    #[serde(default)]
    pub block_owner_deletion: Option<bool>,
}

impl OwnerRef {
    /// `blockOwnerDeletion: true`: a foreground deletion of the owner waits
    /// for this dependent.
    pub fn blocks(&self) -> bool {
        self.block_owner_deletion == Some(true)
    }

    /// A reference kube-apiserver's validation would have refused (no
    /// apiVersion, kind, name or uid): it names no owner, so it never makes
    /// the dependent garbage.
    pub fn is_valid(&self) -> bool {
        !(self.api_version.is_empty()
            || self.kind.is_empty()
            || self.name.is_empty()
            || self.uid.is_empty())
    }
}

/// What the collector knows of one stored object.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Node {
    pub uid: String,
    pub owners: Vec<OwnerRef>,
    /// `metadata.deletionTimestamp` is set.
    pub deleting: bool,
    /// Carries the `orphan` finalizer.
    pub orphan: bool,
    /// Carries the `foregroundDeletion` finalizer.
    pub foreground: bool,
}

#[derive(Deserialize)]
struct Head {
    #[serde(default)]
    metadata: MetaHead,
}

#[derive(Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct MetaHead {
    #[serde(default)]
    uid: Option<String>,
    #[serde(default)]
    owner_references: Option<Vec<OwnerRef>>,
    #[serde(default)]
    finalizers: Option<Vec<String>>,
    #[serde(default)]
    deletion_timestamp: Option<serde::de::IgnoredAny>,
}

impl From<Head> for Node {
    fn from(h: Head) -> Self {
        let m = h.metadata;
        let finalizers = m.finalizers.unwrap_or_default();
        let has = |f: &str| finalizers.iter().any(|x| x == f);
        Node {
            uid: m.uid.unwrap_or_default(),
            owners: m.owner_references.unwrap_or_default(),
            deleting: m.deletion_timestamp.is_some(),
            orphan: has(FINALIZER_ORPHAN),
            foreground: has(FINALIZER_FOREGROUND),
        }
    }
}

impl Node {
    /// The node of a stored value; `None` when its metadata does not read.
    pub fn parse(value: &[u8]) -> Option<Node> {
        serde_json::from_slice::<Head>(value).ok().map(Node::from)
    }

    /// The node of an object read through the API.
    pub fn of(object: &Value) -> Option<Node> {
        Head::deserialize(object).ok().map(Node::from)
    }

    /// Deleted in the foreground: being deleted and held by
    /// `foregroundDeletion` (kube's `isDeletingDependents`; the GC calls
    /// such an owner "waitingForDependentsDeletion").
    pub fn waiting_for_dependents(&self) -> bool {
        self.deleting && self.foreground
    }

    /// Being deleted and held by a finalizer only the collector removes.
    pub fn gc_pending(&self) -> bool {
        self.deleting && (self.orphan || self.foreground)
    }

    /// Whether the collector has anything to look at for this object, as a
    /// dependent (it names owners) or as an owner (a GC finalizer holds it).
    pub fn of_interest(&self) -> bool {
        !self.owners.is_empty() || self.gc_pending()
    }

    /// Whether this object's reference to owner `uid` blocks the owner's
    /// foreground deletion.
    pub fn blocks(&self, uid: &str) -> bool {
        self.owners.iter().any(|r| r.uid == uid && r.blocks())
    }
}

/// Every stored object's node, and the dependents of every uid.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Index {
    nodes: BTreeMap<String, Node>,
    dependents: BTreeMap<String, BTreeSet<String>>,
}

impl Index {
    /// The index of a whole listing; answers it and how many values did
    /// not read (skipped).
    pub fn build(items: &[KeyValue]) -> (Self, usize) {
        let mut index = Index::default();
        let mut bad = 0;
        for kv in items {
            match Node::parse(&kv.value) {
                Some(node) => {
                    index.apply(kv.key.clone(), node);
                }
                None => bad += 1,
            }
        }
        (index, bad)
    }

    /// Files `node` under `key`; answers the node it replaced.
    pub fn apply(&mut self, key: String, node: Node) -> Option<Node> {
        let old = self.remove(&key);
        for r in &node.owners {
            self.dependents
                .entry(r.uid.clone())
                .or_default()
                .insert(key.clone());
        }
        self.nodes.insert(key, node);
        old
    }

    /// Forgets `key`; answers its node.
    pub fn remove(&mut self, key: &str) -> Option<Node> {
        let old = self.nodes.remove(key)?;
        for r in &old.owners {
            if let Some(set) = self.dependents.get_mut(&r.uid) {
                set.remove(key);
                if set.is_empty() {
                    self.dependents.remove(&r.uid);
                }
            }
        }
        Some(old)
    }

    pub fn get(&self, key: &str) -> Option<&Node> {
        self.nodes.get(key)
    }

    /// Keys of the objects that name `uid` as an owner, in key order.
    pub fn dependents(&self, uid: &str) -> Vec<String> {
        self.dependents
            .get(uid)
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Whether some object names `uid` as an owner.
    pub fn has_dependents(&self, uid: &str) -> bool {
        self.dependents.contains_key(uid)
    }

    /// Keys the collector must look at after a (re)list: every object that
    /// names owners (one may have gone while the watch was behind) and
    /// every owner a GC finalizer holds.
    pub fn of_interest(&self) -> Vec<String> {
        self.nodes
            .iter()
            .filter(|(_, n)| n.of_interest())
            .map(|(k, _)| k.clone())
            .collect()
    }

    /// Objects indexed (tests).
    #[cfg(test)]
    pub fn objects(&self) -> usize {
        self.nodes.len()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use serde_json::json;

    use super::*;

    fn kv(key: &str, value: Value) -> KeyValue {
        KeyValue {
            key: key.into(),
            value: serde_json::to_vec(&value).unwrap(),
            create_revision: 1,
            mod_revision: 1,
        }
    }

    fn object(uid: &str, owners: Value) -> Value {
        json!({"apiVersion": "v1", "kind": "ConfigMap",
               "metadata": {"name": "x", "uid": uid, "ownerReferences": owners,
                            "managedFields": [{"manager": "kubectl"}]},
               "data": {"big": "ignored"}})
    }

    #[test]
    fn reads_only_the_metadata_it_needs() {
        let mut o = object(
            "u1",
            json!([{"apiVersion": "v1", "kind": "ConfigMap",
            "name": "owner", "uid": "o1", "controller": true, "blockOwnerDeletion": true}]),
        );
        o["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
        o["metadata"]["finalizers"] = json!(["example.io/x", "foregroundDeletion"]);
        let n = Node::parse(&serde_json::to_vec(&o).unwrap()).unwrap();
        assert_eq!(n.uid, "u1");
        assert!(n.deleting && n.foreground && !n.orphan);
        assert!(n.waiting_for_dependents() && n.gc_pending());
        assert!(n.blocks("o1") && !n.blocks("o2"));
        assert_eq!(Node::of(&o), Some(n));
        // null lists read as absent; a bad type does not read.
        let plain = json!({"metadata": {"uid": "u", "ownerReferences": null, "finalizers": null}});
        assert_eq!(Node::of(&plain).unwrap().owners, vec![]);
        assert!(Node::of(&json!({"metadata": {"finalizers": [1]}})).is_none());
        assert!(Node::parse(b"not json").is_none());
        let bad_ref = OwnerRef {
            uid: String::new(),
            ..OwnerRef::default()
        };
        assert!(!bad_ref.is_valid());
    }

    #[test]
    fn dependents_follow_applies_and_removes() {
        let (mut index, bad) = Index::build(&[
            kv(
                "/registry/core/configmaps/default/owner",
                object("o1", json!([])),
            ),
            kv(
                "/registry/core/configmaps/default/a",
                object(
                    "a1",
                    json!([{"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": "o1"}]),
                ),
            ),
            KeyValue {
                key: "/registry/core/configmaps/default/bad".into(),
                value: b"{".to_vec(),
                create_revision: 1,
                mod_revision: 1,
            },
        ]);
        assert_eq!(bad, 1);
        assert_eq!(index.objects(), 2);
        assert_eq!(
            index.dependents("o1"),
            vec!["/registry/core/configmaps/default/a".to_string()]
        );
        assert_eq!(
            index.of_interest(),
            vec!["/registry/core/configmaps/default/a".to_string()]
        );
        // The dependent moves to another owner.
        let node = Node::of(&object(
            "a1",
            json!([{"apiVersion": "v1", "kind": "ConfigMap", "name": "other", "uid": "o2"}]),
        ))
        .unwrap();
        index.apply("/registry/core/configmaps/default/a".into(), node);
        assert!(!index.has_dependents("o1"));
        assert!(index.has_dependents("o2"));
        index.remove("/registry/core/configmaps/default/a");
        assert!(!index.has_dependents("o2"));
        assert_eq!(index.objects(), 1);
    }
}
