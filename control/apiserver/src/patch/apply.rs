//! Server-side apply (`application/apply-patch+yaml`) and field ownership
//! (`metadata.managedFields`) for every write.
//!
//! [`apply`] merges an applied configuration into the live object for one field manager:
//! maps merge, lists merged by key ([`super::strategy`]) merge item by item, set lists
//! (finalizers) merge as sets, every other list is atomic; custom resources have only
//! atomic lists besides their ObjectMeta's. Fields the manager applied before and no
//! longer applies are removed unless another manager owns them (or something below
//! them). A field another manager owns whose value the apply changes is a conflict;
//! `force` takes it over instead. [`record_update`] gives a non-apply write
//! (create, update, JSON/merge/strategic patch) its `Update` entry, so a later apply sees
//! who owns what.
//!
//! Simplified relative to Kubernetes' structured-merge-diff:
//! - lists are keyed by the single strategic-merge key (`k:{"containerPort":80}`), not
//!   by the `listMapKeys` of the OpenAPI schema (`containerPort` and `protocol`);
//! - there is no schema: a map is always granular (no atomic structs or maps), and
//!   conflicts are computed on leaf values, not on list items as wholes;
//! - `null` in an applied configuration means "not applied", never "set to null";
//! - no defaulting or conversion happens between apply and comparison, and a manager's
//!   entry is stamped with the applied `apiVersion` without converting field sets;
//! - a removed field whose parent map becomes empty leaves the empty map behind.

use serde_json::{Map, Value};

use super::fieldset::{self, FieldSet, Path, SERVER_METADATA, Scope, in_scope};
use super::strategy::{Builtin, ListKind, list_kind};

/// One field another manager owns with a value this apply would change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Conflict {
    /// The other manager's name.
    pub manager: String,
    /// The apiVersion the other manager wrote with.
    pub api_version: String,
    /// The field, as Kubernetes names it (`.spec.replicas`).
    pub field: String,
}

impl Conflict {
    /// The text of a `FieldManagerConflict` cause in a 409 Status.
    pub fn cause_message(&self) -> String {
        format!(
            "conflict with {:?} using {}",
            self.manager, self.api_version
        )
    }
}

/// Why an apply or an ownership update failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ApplyError {
    /// Fields owned by other managers would change (409, one cause per conflict).
    #[error("{}", conflicts_message(.0))]
    Conflicts(Vec<Conflict>),
    /// The applied configuration or the managedFields given are malformed (400/422).
    #[error("invalid {path}: {reason}")]
    Invalid { path: String, reason: String },
}

fn conflicts_message(c: &[Conflict]) -> String {
    let mut s = format!(
        "Apply failed with {} conflict{}:",
        c.len(),
        if c.len() == 1 { "" } else { "s" }
    );
    for x in c {
        s.push_str(&format!(" {}: {};", x.cause_message(), x.field));
    }
    s.pop();
    s
}

/// What an apply or update is done as.
#[derive(Clone, Copy, Debug)]
pub struct Writer<'a> {
    /// The field manager (`fieldManager` query parameter).
    pub manager: &'a str,
    /// `None` for the main resource, `Some("status")` for the status subresource.
    pub subresource: Option<&'a str>,
    /// Whether the kind has a status subresource (then the main resource excludes status).
    pub has_status_subresource: bool,
    /// The RFC 3339 time stamped on the manager's entry.
    pub time: &'a str,
}

impl Writer<'_> {
    fn scope(&self) -> Scope {
        match self.subresource {
            Some("status") => Scope::Status,
            _ => Scope::Main {
                has_status_subresource: self.has_status_subresource,
            },
        }
    }
}

/// One parsed `managedFields` entry.
#[derive(Clone, Debug)]
struct Entry {
    raw: Map<String, Value>,
    manager: String,
    operation: String,
    subresource: Option<String>,
    set: FieldSet,
}

impl Entry {
    fn parse(v: &Value) -> Option<Entry> {
        let raw = v.as_object()?.clone();
        let s = |k: &str| raw.get(k).and_then(Value::as_str).map(str::to_owned);
        let set = match raw.get("fieldsV1") {
            Some(f) => FieldSet::from_fields_v1(f)?,
            None => FieldSet::default(),
        };
        Some(Entry {
            manager: s("manager").unwrap_or_default(),
            operation: s("operation")?,
            subresource: s("subresource").filter(|x| !x.is_empty()),
            set,
            raw,
        })
    }

    fn is(&self, manager: &str, operation: &str, subresource: Option<&str>) -> bool {
        self.manager == manager
            && self.operation == operation
            && self.subresource.as_deref() == subresource
    }

    fn new(w: &Writer<'_>, operation: &str, api_version: &str, set: FieldSet) -> Entry {
        let mut raw = Map::new();
        raw.insert("manager".into(), w.manager.into());
        raw.insert("operation".into(), operation.into());
        raw.insert("apiVersion".into(), api_version.into());
        raw.insert("time".into(), w.time.into());
        raw.insert("fieldsType".into(), "FieldsV1".into());
        if let Some(s) = w.subresource {
            raw.insert("subresource".into(), s.into());
        }
        Entry {
            raw,
            manager: w.manager.to_owned(),
            operation: operation.to_owned(),
            subresource: w.subresource.map(str::to_owned),
            set,
        }
    }

    fn to_value(&self) -> Value {
        let mut raw = self.raw.clone();
        raw.insert("fieldsV1".into(), self.set.to_fields_v1());
        Value::Object(raw)
    }
}

fn managed_fields(obj: &Value) -> Option<&Value> {
    obj.get("metadata")?
        .get("managedFields")
        .filter(|v| !v.is_null())
}

/// Entries of an object's managedFields; entries that cannot be parsed are dropped.
fn entries(obj: Option<&Value>) -> Vec<Entry> {
    obj.and_then(managed_fields)
        .and_then(Value::as_array)
        .map(|l| l.iter().filter_map(Entry::parse).collect())
        .unwrap_or_default()
}

fn set_entries(obj: &mut Value, entries: &[Entry]) {
    let Some(Value::Object(meta)) = obj.get_mut("metadata") else {
        return;
    };
    let list: Vec<Value> = entries
        .iter()
        .filter(|e| !e.set.is_empty())
        .map(Entry::to_value)
        .collect();
    if list.is_empty() {
        meta.remove("managedFields");
    } else {
        meta.insert("managedFields".into(), Value::Array(list));
    }
}

fn str_field<'a>(obj: &'a Value, k: &str) -> &'a str {
    obj.get(k).and_then(Value::as_str).unwrap_or_default()
}

/// Applies `applied` for `writer` to `live` (`None`: the object is created), with
/// `force` taking over conflicting fields. Returns the new object with its
/// managedFields; when nothing changes the result equals `live` exactly (the entry's
/// time is kept), so the caller can skip the write.
pub fn apply(
    live: Option<&Value>,
    applied: &Value,
    writer: &Writer<'_>,
    force: bool,
) -> Result<Value, ApplyError> {
    let invalid = |path: &str, reason: &str| ApplyError::Invalid {
        path: path.into(),
        reason: reason.into(),
    };
    let Value::Object(top) = applied else {
        return Err(invalid(".", "an applied configuration must be an object"));
    };
    if top
        .get("metadata")
        .and_then(|m| m.get("managedFields"))
        .is_some_and(|v| !v.is_null())
    {
        return Err(invalid(
            "metadata.managedFields",
            "must be nil in an applied configuration",
        ));
    }
    let api_version = str_field(applied, "apiVersion");
    let builtin = Builtin::from_gvk(api_version, str_field(applied, "kind"));
    let scope = writer.scope();

    // What is merged: the applied configuration within scope, without nulls and
    // without the metadata the server owns (name and namespace stay: they identify).
    let mut content = Map::new();
    for (k, v) in top {
        if k == "apiVersion" || k == "kind" {
            if live.is_none() {
                content.insert(k.clone(), v.clone());
            }
            continue;
        }
        if !in_scope(scope, k) {
            continue;
        }
        let mut v = strip_nulls(v);
        if k == "metadata"
            && let Value::Object(meta) = &mut v
        {
            meta.retain(|mk, _| {
                !SERVER_METADATA.contains(&mk.as_str()) || mk == "name" || mk == "namespace"
            });
        }
        content.insert(k.clone(), v);
    }
    let content = Value::Object(content);
    let new_set = FieldSet::from_object(&content, builtin, scope);

    let base = live.cloned().unwrap_or_else(|| Value::Object(Map::new()));
    let mut all = entries(live);
    let mine = all
        .iter()
        .position(|e| e.is(writer.manager, "Apply", writer.subresource));
    let prev_set = mine.map(|i| all[i].set.clone()).unwrap_or_default();

    // Conflicts: leaves this apply changes that another manager owns.
    let changed: Vec<Path> = new_set
        .leaves()
        .into_iter()
        .filter(|p| fieldset::get(&content, p) != fieldset::get(&base, p))
        .collect();
    let mut conflicts = Vec::new();
    for (i, e) in all.iter_mut().enumerate() {
        if Some(i) == mine {
            continue;
        }
        for p in &changed {
            if e.set.has(p) {
                if force {
                    e.set.remove(p);
                } else {
                    conflicts.push(Conflict {
                        manager: e.manager.clone(),
                        api_version: str_field(&Value::Object(e.raw.clone()), "apiVersion")
                            .to_owned(),
                        field: fieldset::display(p),
                    });
                }
            }
        }
    }
    if !conflicts.is_empty() {
        return Err(ApplyError::Conflicts(conflicts));
    }

    let mut merged = merge(base.clone(), content, builtin, &mut Vec::new());
    // Fields this manager no longer applies go, unless someone still owns them.
    let mut others = FieldSet::default();
    for (i, e) in all.iter().enumerate() {
        if Some(i) != mine {
            others.union(&e.set);
        }
    }
    let mut gone: Vec<Path> = prev_set
        .members()
        .into_iter()
        .filter(|p| !new_set.has_at_or_below(p))
        .collect();
    // Parents first: removing a list item by key before its key field is gone.
    gone.sort_by_key(Vec::len);
    for p in &gone {
        if !others.has_at_or_below(p) {
            fieldset::remove(&mut merged, p);
        }
    }

    let unchanged = live.is_some_and(|l| without_managed(l) == without_managed(&merged));
    match mine {
        Some(i) if unchanged && all[i].set == new_set => {}
        Some(i) => {
            let mut e = Entry::new(writer, "Apply", api_version, new_set);
            e.raw = merge_raw(&all[i].raw, &e.raw);
            all[i] = e;
        }
        None => all.push(Entry::new(writer, "Apply", api_version, new_set)),
    }
    set_entries(&mut merged, &all);
    if let Some(l) = live
        && *l == without_time_change(&merged, l)
    {
        return Ok(l.clone());
    }
    Ok(merged)
}

/// Keeps the old entry's extra keys but takes the new identity, time and apiVersion.
fn merge_raw(old: &Map<String, Value>, new: &Map<String, Value>) -> Map<String, Value> {
    let mut m = old.clone();
    for (k, v) in new {
        m.insert(k.clone(), v.clone());
    }
    m
}

fn without_managed(obj: &Value) -> Value {
    let mut o = obj.clone();
    if let Some(Value::Object(meta)) = o.get_mut("metadata") {
        meta.remove("managedFields");
    }
    o
}

/// `merged` with each managedFields entry's time taken from `live` where the entry is
/// otherwise the same, so that a no-op apply is recognised as one.
fn without_time_change(merged: &Value, live: &Value) -> Value {
    let mut m = merged.clone();
    let (Some(Value::Array(new)), Some(Value::Array(old))) = (
        m.get_mut("metadata")
            .and_then(|x| x.get_mut("managedFields")),
        managed_fields(live),
    ) else {
        return m;
    };
    for (n, o) in new.iter_mut().zip(old) {
        let (Some(n), Some(o)) = (n.as_object_mut(), o.as_object()) else {
            continue;
        };
        let mut probe = n.clone();
        if let Some(t) = o.get("time") {
            probe.insert("time".into(), t.clone());
        }
        if probe == *o {
            *n = probe;
        }
    }
    m
}

fn strip_nulls(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(_, x)| !x.is_null())
                .map(|(k, x)| (k.clone(), strip_nulls(x)))
                .collect(),
        ),
        Value::Array(l) => Value::Array(l.iter().map(strip_nulls).collect()),
        x => x.clone(),
    }
}

/// Merges an applied configuration into a live value: maps merge, keyed lists merge by
/// key (new items appended), set lists union, anything else is replaced.
fn merge(live: Value, applied: Value, builtin: Option<Builtin>, schema: &mut Vec<String>) -> Value {
    match (live, applied) {
        (Value::Object(mut l), Value::Object(a)) => {
            for (k, av) in a {
                schema.push(k.clone());
                let v = match l.remove(&k) {
                    Some(lv) => merge(lv, av, builtin, schema),
                    None => av,
                };
                schema.pop();
                l.insert(k, v);
            }
            Value::Object(l)
        }
        (Value::Array(mut l), Value::Array(a)) => match list_kind(builtin, schema) {
            ListKind::Keyed(key) if a.iter().chain(l.iter()).all(|i| i.get(key).is_some()) => {
                for item in a {
                    match l.iter().position(|x| x.get(key) == item.get(key)) {
                        Some(i) => {
                            let old = std::mem::take(&mut l[i]);
                            l[i] = merge(old, item, builtin, schema);
                        }
                        None => l.push(item),
                    }
                }
                Value::Array(l)
            }
            ListKind::Set => {
                for item in a {
                    if !l.contains(&item) {
                        l.push(item);
                    }
                }
                Value::Array(l)
            }
            _ => Value::Array(a),
        },
        (_, a) => a,
    }
}

/// Records a non-apply write of `new` over `old` (`None`: a create) by `writer` with
/// `operation` (normally `"Update"`): the writer owns the fields it added or changed,
/// other managers lose them, and removed fields are owned by nobody. When the request
/// set managedFields itself (they differ from `old`'s), they are kept as given after
/// validation; when it omitted them, `old`'s are carried over.
pub fn record_update(
    old: Option<&Value>,
    new: &Value,
    writer: &Writer<'_>,
    operation: &str,
) -> Result<Value, ApplyError> {
    let mut out = new.clone();
    let given = managed_fields(new);
    if let Some(g) = given
        && Some(g) != old.and_then(managed_fields)
    {
        validate_managed_fields(g)?;
        let clear = g
            .as_array()
            .is_some_and(|l| l.iter().all(|e| e.as_object().is_some_and(Map::is_empty)));
        if clear && let Some(Value::Object(meta)) = out.get_mut("metadata") {
            meta.remove("managedFields");
        }
        return Ok(out);
    }
    let api_version = str_field(new, "apiVersion");
    let builtin = Builtin::from_gvk(api_version, str_field(new, "kind"));
    let scope = writer.scope();
    let new_set = FieldSet::from_object(new, builtin, scope);
    let mut all = entries(old);
    let (changed, removed) = match old {
        None => (new_set.members(), Vec::new()),
        Some(o) => {
            let old_set = FieldSet::from_object(o, builtin, scope);
            let changed: Vec<Path> = new_set
                .members()
                .into_iter()
                .filter(|p| {
                    !old_set.has(p)
                        || (!new_set.has_children(p)
                            && fieldset::get(new, p) != fieldset::get(o, p))
                })
                .collect();
            let removed: Vec<Path> = old_set
                .members()
                .into_iter()
                .filter(|p| !new_set.has(p))
                .collect();
            (changed, removed)
        }
    };
    if changed.is_empty() && removed.is_empty() {
        set_entries(&mut out, &all);
        return Ok(out);
    }
    for e in all.iter_mut() {
        for p in changed.iter().chain(&removed) {
            e.set.remove(p);
        }
    }
    match all
        .iter()
        .position(|e| e.is(writer.manager, operation, writer.subresource))
    {
        Some(i) => {
            let mut set = all[i].set.clone();
            for p in &changed {
                set.insert(p);
            }
            let mut e = Entry::new(writer, operation, api_version, set);
            e.raw = merge_raw(&all[i].raw, &e.raw);
            all[i] = e;
        }
        None => {
            let mut set = FieldSet::default();
            for p in &changed {
                set.insert(p);
            }
            all.push(Entry::new(writer, operation, api_version, set));
        }
    }
    set_entries(&mut out, &all);
    Ok(out)
}

/// Checks that explicitly given managedFields are entries in the FieldsV1 format.
pub fn validate_managed_fields(v: &Value) -> Result<(), ApplyError> {
    let invalid = |i: usize, reason: &str| ApplyError::Invalid {
        path: format!("metadata.managedFields[{i}]"),
        reason: reason.into(),
    };
    let Some(list) = v.as_array() else {
        return Err(ApplyError::Invalid {
            path: "metadata.managedFields".into(),
            reason: "must be a list".into(),
        });
    };
    for (i, e) in list.iter().enumerate() {
        if e.as_object().is_some_and(|m| m.is_empty()) {
            continue; // `[{}]` is how a client asks to clear managedFields
        }
        let Some(entry) = Entry::parse(e) else {
            return Err(invalid(i, "must have an operation and FieldsV1 fields"));
        };
        if entry.operation != "Apply" && entry.operation != "Update" {
            return Err(invalid(i, "operation must be Apply or Update"));
        }
        if e.get("fieldsType").is_some_and(|t| t != "FieldsV1") {
            return Err(invalid(i, "fieldsType must be FieldsV1"));
        }
    }
    Ok(())
}

#[cfg(test)]
#[path = "apply_tests.rs"]
mod tests;
