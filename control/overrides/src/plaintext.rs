//! plaintext: RFC 6902 JSON patch operations (add, remove, replace) at
//! RFC 6901 JSON pointers, applied one by one with the json-patch crate.

use hami_api::override_policy::{OverriderOperator, PlaintextOverrider};
use json_patch::PatchOperation;
use serde_json::{Value, json};

use crate::error::Cause;
use crate::workload::Failed;

/// The JSON patch operation of one plaintext overrider.
fn operation(o: &PlaintextOverrider) -> Result<PatchOperation, Cause> {
    let op = match o.operator {
        OverriderOperator::Add => "add",
        OverriderOperator::Remove => "remove",
        OverriderOperator::Replace => "replace",
    };
    let raw = match (o.operator, &o.value) {
        (OverriderOperator::Remove, _) => json!({"op": op, "path": o.path}),
        (_, Some(v)) => json!({"op": op, "path": o.path, "value": v}),
        (_, None) => return Err(Cause::MissingValue(op)),
    };
    serde_json::from_value(raw).map_err(|e| Cause::BadOperation(e.to_string()))
}

/// Applies one plaintext overrider. The manifest must stay a JSON object.
pub fn apply_plaintext(manifest: &mut Value, o: &PlaintextOverrider) -> Result<(), Failed> {
    let fail = |cause| (o.path.clone(), cause);
    let op = operation(o).map_err(fail)?;
    // The caller works on its own copy and drops it on error, so the
    // crate's undo log is not needed.
    json_patch::patch_unsafe(manifest, std::slice::from_ref(&op))
        .map_err(|e| fail(Cause::Patch(e.kind.to_string())))?;
    if !manifest.is_object() {
        return Err(fail(Cause::NotObject));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use OverriderOperator::{Add, Remove, Replace};

    fn pt(path: &str, operator: OverriderOperator, value: Option<Value>) -> PlaintextOverrider {
        PlaintextOverrider {
            path: path.into(),
            operator,
            value,
        }
    }

    #[test]
    fn table() {
        let base = || {
            json!({
                "kind": "Deployment",
                "metadata": {"name": "web", "labels": {"app.kubernetes.io/name": "web"}},
                "spec": {"replicas": 2, "template": {"spec": {"containers": [{"name": "a", "env": [{"name": "X"}]}]}}},
            })
        };
        let invalid = |p: &str| Err((p.to_string(), Cause::Patch("path is invalid".into())));
        type Case<'a> = (&'a str, PlaintextOverrider, &'a str, Result<Value, Failed>);
        let cases: Vec<Case<'_>> = vec![
            (
                "replace",
                pt("/spec/replicas", Replace, Some(json!(5))),
                "/spec/replicas",
                Ok(json!(5)),
            ),
            (
                "add a field",
                pt("/spec/paused", Add, Some(json!(true))),
                "/spec/paused",
                Ok(json!(true)),
            ),
            (
                "add appends to a list",
                pt(
                    "/spec/template/spec/containers/0/env/-",
                    Add,
                    Some(json!({"name": "Y"})),
                ),
                "/spec/template/spec/containers/0/env",
                Ok(json!([{"name": "X"}, {"name": "Y"}])),
            ),
            (
                "add overwrites",
                pt("/spec/replicas", Add, Some(json!(1))),
                "/spec/replicas",
                Ok(json!(1)),
            ),
            (
                "remove",
                pt("/spec/replicas", Remove, None),
                "/spec",
                Ok(
                    json!({"template": {"spec": {"containers": [{"name": "a", "env": [{"name": "X"}]}]}}}),
                ),
            ),
            (
                "escaped pointer",
                pt(
                    "/metadata/labels/app.kubernetes.io~1name",
                    Replace,
                    Some(json!("api")),
                ),
                "/metadata/labels",
                Ok(json!({"app.kubernetes.io/name": "api"})),
            ),
            (
                "replace a missing field",
                pt("/spec/nope", Replace, Some(json!(1))),
                "",
                invalid("/spec/nope"),
            ),
            (
                "remove a missing field",
                pt("/spec/nope", Remove, None),
                "",
                invalid("/spec/nope"),
            ),
            (
                "add under a missing parent",
                pt("/spec/a/b", Add, Some(json!(1))),
                "",
                invalid("/spec/a/b"),
            ),
            (
                "list index out of range",
                pt("/spec/template/spec/containers/3", Replace, Some(json!({}))),
                "",
                invalid("/spec/template/spec/containers/3"),
            ),
            (
                "replace needs a value",
                pt("/spec/replicas", Replace, None),
                "",
                Err(("/spec/replicas".into(), Cause::MissingValue("replace"))),
            ),
            (
                "replace the whole object with a scalar",
                pt("", Replace, Some(json!(1))),
                "",
                Err((String::new(), Cause::NotObject)),
            ),
        ];
        for (name, o, read, want) in cases {
            let mut m = base();
            let got = apply_plaintext(&mut m, &o)
                .map(|()| m.pointer(read).cloned().unwrap_or(Value::Null));
            assert_eq!(got, want, "{name}");
        }
    }

    #[test]
    fn pointer_without_leading_slash_is_a_bad_operation() {
        let mut m = json!({"spec": {}});
        let (path, cause) =
            apply_plaintext(&mut m, &pt("spec", Replace, Some(json!(1)))).unwrap_err();
        assert_eq!(path, "spec");
        assert!(matches!(cause, Cause::BadOperation(_)), "{cause:?}");
    }
}
