//! The shape of Kubernetes' protobuf messages, as the transcoder reads it:
//! for each message (by its OpenAPI name, e.g.
//! `io.k8s.api.apps.v1.Deployment`) its fields' numbers, JSON names, labels
//! and types. The table itself ([`super::generated`]) is generated from the
//! message types of the `k8s-pb` crate (kube-rs' bindings of Kubernetes'
//! `generated.proto` files) with the JSON names of k8s-openapi's schemas; see
//! `tests/protobuf_schema.rs`.

use std::collections::HashMap;
use std::sync::LazyLock;

/// A field's value type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ty {
    Str,
    Bytes,
    Bool,
    I32,
    I64,
    U32,
    U64,
    F32,
    F64,
    /// Another message, by name.
    Msg(&'static str),
}

/// How often a field occurs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Label {
    /// `optional` (proto2, with presence).
    One,
    /// `repeated`.
    Many,
    /// `map<string, T>` where T is the field's [`Ty`].
    Map,
    /// A Go struct embedded in its parent: a message of its own on the
    /// wire, its fields among the parent's in JSON (the JSON name is empty).
    Inline,
}

/// One field: number, JSON name, label, type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Field(pub u32, pub &'static str, pub Label, pub Ty);

impl Field {
    pub fn number(&self) -> u32 {
        self.0
    }
    pub fn json_name(&self) -> &'static str {
        self.1
    }
    pub fn label(&self) -> Label {
        self.2
    }
    pub fn ty(&self) -> Ty {
        self.3
    }
}

/// A message's fields, by number and by JSON name.
pub struct Message {
    pub name: &'static str,
    pub fields: &'static [Field],
    by_json: HashMap<&'static str, usize>,
}

impl Message {
    pub fn by_number(&self, n: u64) -> Option<&'static Field> {
        self.fields.iter().find(|f| u64::from(f.0) == n)
    }
    pub fn by_json(&self, name: &str) -> Option<&'static Field> {
        self.by_json.get(name).map(|&i| &self.fields[i])
    }
}

/// By lowercased name: prost spells `PodIP` as `PodIp`.
static MESSAGES: LazyLock<HashMap<String, Message>> = LazyLock::new(|| {
    super::generated::MESSAGES
        .iter()
        .map(|&(name, fields)| {
            let by_json = fields.iter().enumerate().map(|(i, f)| (f.1, i)).collect();
            (
                name.to_ascii_lowercase(),
                Message {
                    name,
                    fields,
                    by_json,
                },
            )
        })
        .collect()
});

/// The message of that name, if the table has it.
pub fn message(name: &str) -> Option<&'static Message> {
    MESSAGES.get(&name.to_ascii_lowercase())
}

/// The message name of an object's kind: `apps/v1` + `Deployment` is
/// `io.k8s.api.apps.v1.Deployment` (a group `x.k8s.io` is `x`, the core group
/// is `core`, groups of other domains have none); kinds of `meta.k8s.io` (Status, DeleteOptions, WatchEvent),
/// which every group version carries, are found under apimachinery's `meta/v1`.
pub fn message_of(api_version: &str, kind: &str) -> Option<&'static Message> {
    let (group, version) = match api_version.split_once('/') {
        Some((g, v)) => (g, v),
        None => ("", api_version),
    };
    let short = match group {
        "" => Some("core"),
        "meta.k8s.io" => None,
        g if !g.contains('.') => Some(g),
        g => g.strip_suffix(".k8s.io").and_then(|g| g.split('.').next()),
    };
    if let Some(short) = short
        && let Some(m) = message(&format!("io.k8s.api.{short}.{version}.{kind}"))
    {
        return Some(m);
    }
    message(&format!("io.k8s.apimachinery.pkg.apis.meta.v1.{kind}"))
}
