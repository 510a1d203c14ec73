//! RFC 7386 JSON merge patch.

use serde_json::Value;

use super::PatchError;

/// Applies an RFC 7386 merge patch: objects merge recursively, `null` deletes a member,
/// anything else (arrays included) replaces. The result of patching with a non-object is
/// the patch itself, as the RFC says; a Kubernetes object must stay an object, so that
/// case is answered with an error.
pub fn merge_patch(original: &Value, patch: &Value) -> Result<Value, PatchError> {
    if !patch.is_object() {
        return Err(PatchError::BadPatch {
            path: ".".to_owned(),
            reason: "a merge patch for an object must be a JSON object".to_owned(),
        });
    }
    let mut doc = original.clone();
    json_patch::merge(&mut doc, patch);
    Ok(doc)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    /// The examples of RFC 7386 appendix A whose patch is an object.
    #[test]
    fn rfc7386_examples() {
        let cases = [
            (json!({"a":"b"}), json!({"a":"c"}), json!({"a":"c"})),
            (json!({"a":"b"}), json!({"b":"c"}), json!({"a":"b","b":"c"})),
            (json!({"a":"b"}), json!({"a":null}), json!({})),
            (
                json!({"a":"b","b":"c"}),
                json!({"a":null}),
                json!({"b":"c"}),
            ),
            (json!({"a":["b"]}), json!({"a":"c"}), json!({"a":"c"})),
            (json!({"a":"c"}), json!({"a":["b"]}), json!({"a":["b"]})),
            (
                json!({"a":{"b":"c"}}),
                json!({"a":{"b":"d","c":null}}),
                json!({"a":{"b":"d"}}),
            ),
            (json!({"a":[{"b":"c"}]}), json!({"a":[1]}), json!({"a":[1]})),
            (json!({"e":null}), json!({"a":1}), json!({"e":null,"a":1})),
            (json!([1, 2]), json!({"a":"b","c":null}), json!({"a":"b"})),
            (
                json!({}),
                json!({"a":{"bb":{"ccc":null}}}),
                json!({"a":{"bb":{}}}),
            ),
        ];
        for (orig, patch, want) in cases {
            assert_eq!(
                merge_patch(&orig, &patch).unwrap(),
                want,
                "{orig} + {patch}"
            );
        }
    }

    #[test]
    fn non_object_patch_is_rejected() {
        for patch in [json!(["c"]), json!(null), json!("x")] {
            assert!(matches!(
                merge_patch(&json!({"a": 1}), &patch),
                Err(PatchError::BadPatch { .. })
            ));
        }
    }
}
