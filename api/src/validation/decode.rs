//! The single entry point: decode any hami object from JSON and validate it.
//! Decode errors name the field too (serde_path_to_error tracks the path).

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::{FieldError, FieldErrorKind, into_result};
use crate::binding::{ClusterResourceBinding, ResourceBinding};
use crate::cluster::Cluster;
use crate::common::{
    CLUSTER_GROUP, CLUSTER_VERSION, POLICY_GROUP, POLICY_VERSION, WORK_GROUP, WORK_VERSION,
};
use crate::override_policy::{ClusterOverridePolicy, OverridePolicy};
use crate::propagation::{ClusterPropagationPolicy, PropagationPolicy};
use crate::quota::FederatedResourceQuota;
use crate::work::Work;

/// Decodes `obj` as the hami kind named by `api_version` and `kind` and
/// validates it, returning every problem found. Kinds hami does not define
/// answer `Ok(())`: whether to serve them is the caller's decision.
pub fn validate(api_version: &str, kind: &str, obj: &Value) -> Result<(), Vec<FieldError>> {
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    match (group, version, kind) {
        (CLUSTER_GROUP, CLUSTER_VERSION, "Cluster") => {
            let c: Cluster = decode_strict(obj)?;
            into_result(super::validate_cluster(&c))
        }
        (POLICY_GROUP, POLICY_VERSION, "PropagationPolicy") => {
            let p: PropagationPolicy = decode_strict(obj)?;
            into_result(super::validate_propagation_spec(&p.spec, "spec"))
        }
        (POLICY_GROUP, POLICY_VERSION, "ClusterPropagationPolicy") => {
            let p: ClusterPropagationPolicy = decode_strict(obj)?;
            into_result(super::validate_propagation_spec(&p.spec, "spec"))
        }
        (POLICY_GROUP, POLICY_VERSION, "OverridePolicy") => {
            let p: OverridePolicy = decode_strict(obj)?;
            into_result(super::validate_override_spec(&p.spec, "spec"))
        }
        (POLICY_GROUP, POLICY_VERSION, "ClusterOverridePolicy") => {
            let p: ClusterOverridePolicy = decode_strict(obj)?;
            into_result(super::validate_override_spec(&p.spec, "spec"))
        }
        (POLICY_GROUP, POLICY_VERSION, "FederatedResourceQuota") => {
            let q: FederatedResourceQuota = decode_strict(obj)?;
            into_result(super::validate_quota_spec(&q.spec, "spec"))
        }
        (WORK_GROUP, WORK_VERSION, "ResourceBinding") => {
            let b: ResourceBinding = decode_strict(obj)?;
            into_result(super::validate_binding_spec(&b.spec, "spec"))
        }
        (WORK_GROUP, WORK_VERSION, "ClusterResourceBinding") => {
            let b: ClusterResourceBinding = decode_strict(obj)?;
            into_result(super::validate_binding_spec(&b.spec, "spec"))
        }
        (WORK_GROUP, WORK_VERSION, "Work") => {
            let w: Work = decode_strict(obj)?;
            into_result(super::validate_work_spec(&w.spec, "spec"))
        }
        _ => Ok(()),
    }
}

/// Decodes `obj` into `T`; a failure becomes one FieldError naming the field.
pub fn decode<T: DeserializeOwned>(obj: &Value) -> Result<T, Vec<FieldError>> {
    // serde also reads a struct from an array; an object must be an object.
    if !obj.is_object() {
        return Err(vec![FieldError {
            field: String::new(),
            kind: FieldErrorKind::Invalid,
            message: "an object must be a JSON object".to_string(),
        }]);
    }
    let typed: T = serde_path_to_error::deserialize(obj).map_err(|e| vec![decode_error(&e)])?;
    Ok(typed)
}

/// Decodes `obj` into `T` as [`decode`] does, and also rejects arrays where the
/// type has an object: serde's derive reads a struct from a sequence of its
/// field values, which Kubernetes never accepts.
fn decode_strict<T: DeserializeOwned + Serialize>(obj: &Value) -> Result<T, Vec<FieldError>> {
    let typed: T = decode(obj)?;
    let mut errs = Vec::new();
    if let Ok(out) = serde_json::to_value(&typed) {
        check_shapes(obj, &out, "", &mut errs);
    }
    if errs.is_empty() {
        Ok(typed)
    } else {
        Err(errs)
    }
}

/// Walks the input beside the re-serialized typed value and reports every
/// place where the input held an array but the type holds an object.
fn check_shapes(input: &Value, typed: &Value, path: &str, errs: &mut Vec<FieldError>) {
    match (input, typed) {
        (Value::Array(_), Value::Object(_)) => errs.push(FieldError {
            field: path.to_string(),
            kind: FieldErrorKind::Invalid,
            message: "must be an object, not an array".to_string(),
        }),
        (Value::Object(i), Value::Object(t)) => {
            for (k, tv) in t {
                if let Some(iv) = i.get(k) {
                    let p = if path.is_empty() {
                        k.clone()
                    } else {
                        format!("{path}.{k}")
                    };
                    check_shapes(iv, tv, &p, errs);
                }
            }
        }
        (Value::Array(i), Value::Array(t)) => {
            for (n, (iv, tv)) in i.iter().zip(t).enumerate() {
                check_shapes(iv, tv, &format!("{path}[{n}]"), errs);
            }
        }
        _ => {}
    }
}

fn decode_error(e: &serde_path_to_error::Error<serde_json::Error>) -> FieldError {
    let path = e.path().to_string();
    let path = if path == "." { String::new() } else { path };
    let message = e.inner().to_string();
    if let Some(name) = message
        .strip_prefix("missing field `")
        .and_then(|rest| rest.strip_suffix('`'))
    {
        let field = if path.is_empty() {
            name.to_string()
        } else {
            format!("{path}.{name}")
        };
        return FieldError {
            field,
            kind: FieldErrorKind::Required,
            message: "Required value".to_string(),
        };
    }
    let kind = if message.starts_with("unknown variant") {
        FieldErrorKind::NotSupported
    } else {
        FieldErrorKind::Invalid
    };
    FieldError {
        field: path,
        kind,
        message,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn pp(spec: Value) -> Value {
        json!({
            "apiVersion": "policy.hami.io/v1alpha1",
            "kind": "PropagationPolicy",
            "metadata": {"name": "p", "namespace": "default"},
            "spec": spec,
        })
    }

    fn one_error(api_version: &str, kind: &str, obj: &Value) -> FieldError {
        let errs = validate(api_version, kind, obj).expect_err("must fail");
        assert_eq!(errs.len(), 1, "{errs:?}");
        errs.into_iter().next().expect("one error")
    }

    #[test]
    fn unknown_enum_names_field() {
        let obj = pp(json!({
            "resourceSelectors": [{"apiVersion": "apps/v1", "kind": "Deployment"}],
            "placement": {"replicaScheduling": {"replicaSchedulingType": "Split"}},
        }));
        let e = one_error("policy.hami.io/v1alpha1", "PropagationPolicy", &obj);
        assert_eq!(
            e.field,
            "spec.placement.replicaScheduling.replicaSchedulingType"
        );
        assert_eq!(e.kind, FieldErrorKind::NotSupported);
        assert!(e.message.contains("Split"), "{}", e.message);
    }

    #[test]
    fn missing_field_is_required() {
        let obj = pp(json!({"resourceSelectors": [{"apiVersion": "apps/v1"}]}));
        let e = one_error("policy.hami.io/v1alpha1", "PropagationPolicy", &obj);
        assert_eq!(e.field, "spec.resourceSelectors[0].kind");
        assert_eq!(e.kind, FieldErrorKind::Required);

        let obj = json!({"apiVersion": "cluster.hami.io/v1alpha1", "kind": "Cluster", "metadata": {"name": "a"}});
        let e = one_error("cluster.hami.io/v1alpha1", "Cluster", &obj);
        assert_eq!(e.field, "spec");
    }

    #[test]
    fn wrong_type_is_invalid() {
        let obj = pp(json!({
            "resourceSelectors": [{"apiVersion": "apps/v1", "kind": "Deployment"}],
            "priority": "high",
        }));
        let e = one_error("policy.hami.io/v1alpha1", "PropagationPolicy", &obj);
        assert_eq!(e.field, "spec.priority");
        assert_eq!(e.kind, FieldErrorKind::Invalid);
    }

    #[test]
    fn not_an_object_is_invalid_at_root() {
        let e = one_error("work.hami.io/v1alpha2", "Work", &json!([1, 2]));
        assert_eq!(e.field, "");
        assert_eq!(e.kind, FieldErrorKind::Invalid);
    }

    #[test]
    fn arrays_are_not_objects() {
        let obj = pp(json!([[{"apiVersion": "apps/v1", "kind": "Deployment"}]]));
        let e = one_error("policy.hami.io/v1alpha1", "PropagationPolicy", &obj);
        assert_eq!(e.field, "spec");
        let obj = pp(json!({
            "resourceSelectors": [["apps/v1", "Deployment"]],
        }));
        let e = one_error("policy.hami.io/v1alpha1", "PropagationPolicy", &obj);
        assert_eq!(e.field, "spec.resourceSelectors[0]");
        assert_eq!(e.kind, FieldErrorKind::Invalid);
    }

    #[test]
    fn unknown_kinds_pass() {
        assert_eq!(validate("apps/v1", "Deployment", &json!(null)), Ok(()));
        assert_eq!(
            validate("policy.hami.io/v9", "PropagationPolicy", &json!(null)),
            Ok(())
        );
        assert_eq!(validate("v1", "Pod", &json!({})), Ok(()));
    }
}
