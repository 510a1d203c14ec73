//! labelsOverrider and annotationsOverrider: edits of the object's own
//! `metadata.labels` / `metadata.annotations` (not a pod template's).
//!
//! add sets each key (overwriting a present one, like a JSON patch add),
//! replace sets only keys already present, remove deletes the keys given.

use hami_api::override_policy::{LabelAnnotationOverrider, OverriderOperator};
use serde_json::{Map, Value};

use crate::error::Cause;
use crate::workload::Failed;

/// Which metadata map an overrider edits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MetaMap {
    Labels,
    Annotations,
}

impl MetaMap {
    fn key(self) -> &'static str {
        match self {
            MetaMap::Labels => "labels",
            MetaMap::Annotations => "annotations",
        }
    }
}

/// The map at `obj[key]`, created when `create`; `None` when absent and not created.
fn child_map<'a>(
    obj: &'a mut Map<String, Value>,
    key: &str,
    create: bool,
    path: &str,
) -> Result<Option<&'a mut Map<String, Value>>, Failed> {
    let absent = matches!(obj.get(key), None | Some(Value::Null));
    if absent {
        if !create {
            return Ok(None);
        }
        obj.insert(key.to_string(), Value::Object(Map::new()));
    }
    match obj.get_mut(key) {
        Some(Value::Object(m)) => Ok(Some(m)),
        _ => Err((path.to_string(), Cause::WrongType("an object"))),
    }
}

/// Applies one labelsOverrider or annotationsOverrider.
pub fn apply_meta(
    manifest: &mut Value,
    which: MetaMap,
    o: &LabelAnnotationOverrider,
) -> Result<(), Failed> {
    let create = o.operator == OverriderOperator::Add && !o.value.is_empty();
    let Value::Object(root) = manifest else {
        return Err((String::new(), Cause::WrongType("an object")));
    };
    let Some(meta) = child_map(root, "metadata", create, "/metadata")? else {
        return Ok(());
    };
    let path = format!("/metadata/{}", which.key());
    let Some(map) = child_map(meta, which.key(), create, &path)? else {
        return Ok(());
    };
    for (k, v) in &o.value {
        match o.operator {
            OverriderOperator::Add => {
                map.insert(k.clone(), Value::String(v.clone()));
            }
            OverriderOperator::Replace => {
                if let Some(slot) = map.get_mut(k) {
                    *slot = Value::String(v.clone());
                }
            }
            OverriderOperator::Remove => {
                map.remove(k);
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use OverriderOperator::{Add, Remove, Replace};
    use serde_json::json;

    #[test]
    fn table() {
        let o = |operator, kv: &[(&str, &str)]| LabelAnnotationOverrider {
            operator,
            value: kv
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        };
        let with = |labels: Value| json!({"kind": "Deployment", "metadata": {"name": "web", "labels": labels}});
        type Case<'a> = (
            &'a str,
            Value,
            LabelAnnotationOverrider,
            Result<Value, Failed>,
        );
        let cases: Vec<Case<'_>> = vec![
            (
                "add new key",
                with(json!({"a": "1"})),
                o(Add, &[("b", "2")]),
                Ok(json!({"a": "1", "b": "2"})),
            ),
            (
                "add overwrites",
                with(json!({"a": "1"})),
                o(Add, &[("a", "9")]),
                Ok(json!({"a": "9"})),
            ),
            (
                "add a key with a slash",
                with(json!({})),
                o(Add, &[("app.kubernetes.io/name", "web")]),
                Ok(json!({"app.kubernetes.io/name": "web"})),
            ),
            (
                "add creates the map",
                json!({"metadata": {"name": "web"}}),
                o(Add, &[("a", "1")]),
                Ok(json!({"a": "1"})),
            ),
            (
                "add creates metadata",
                json!({"kind": "X"}),
                o(Add, &[("a", "1")]),
                Ok(json!({"a": "1"})),
            ),
            (
                "add over null",
                with(Value::Null),
                o(Add, &[("a", "1")]),
                Ok(json!({"a": "1"})),
            ),
            (
                "replace present",
                with(json!({"a": "1", "b": "2"})),
                o(Replace, &[("a", "x")]),
                Ok(json!({"a": "x", "b": "2"})),
            ),
            (
                "replace absent is a no-op",
                with(json!({"a": "1"})),
                o(Replace, &[("z", "x")]),
                Ok(json!({"a": "1"})),
            ),
            (
                "replace without a map",
                json!({"metadata": {}}),
                o(Replace, &[("z", "x")]),
                Ok(Value::Null),
            ),
            (
                "remove",
                with(json!({"a": "1", "b": "2"})),
                o(Remove, &[("a", "")]),
                Ok(json!({"b": "2"})),
            ),
            (
                "remove absent",
                with(json!({"a": "1"})),
                o(Remove, &[("z", "")]),
                Ok(json!({"a": "1"})),
            ),
            (
                "labels not a map",
                with(json!(["a"])),
                o(Add, &[("a", "1")]),
                Err(("/metadata/labels".into(), Cause::WrongType("an object"))),
            ),
            (
                "metadata not a map",
                json!({"metadata": "x"}),
                o(Remove, &[("a", "")]),
                Err(("/metadata".into(), Cause::WrongType("an object"))),
            ),
        ];
        for (name, mut m, ov, want) in cases {
            let got = apply_meta(&mut m, MetaMap::Labels, &ov).map(|()| {
                m.pointer("/metadata/labels")
                    .cloned()
                    .unwrap_or(Value::Null)
            });
            assert_eq!(got, want, "{name}");
        }
    }

    #[test]
    fn annotations_are_their_own_map() {
        let mut m = json!({"metadata": {"labels": {"a": "1"}, "annotations": {"a": "1"}}});
        let o = LabelAnnotationOverrider {
            operator: Remove,
            value: [("a".to_string(), String::new())].into(),
        };
        apply_meta(&mut m, MetaMap::Annotations, &o).unwrap();
        assert_eq!(
            m,
            json!({"metadata": {"labels": {"a": "1"}, "annotations": {}}})
        );
    }
}
