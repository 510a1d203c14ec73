//! Label selectors, field selectors, tolerations and taints, with the rules
//! Kubernetes applies to them.

use k8s_openapi::api::core::v1::{NodeSelectorRequirement, Taint, Toleration};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

use super::FieldError;
use super::names::{is_label_value, is_qualified_name};
use crate::propagation::{FIELD_PROVIDER, FIELD_REGION, FIELD_ZONE, FieldSelector};

const LABEL_OPERATORS: [&str; 4] = ["In", "NotIn", "Exists", "DoesNotExist"];
const FIELD_KEYS: [&str; 3] = [FIELD_PROVIDER, FIELD_REGION, FIELD_ZONE];
const FIELD_OPERATORS: [&str; 2] = ["In", "NotIn"];
const TAINT_EFFECTS: [&str; 3] = ["NoSchedule", "PreferNoSchedule", "NoExecute"];
const TOLERATION_OPERATORS: [&str; 2] = ["Exists", "Equal"];

/// Checks a label selector: key and value syntax, operators, and the values
/// each operator needs.
pub fn validate_label_selector(sel: &LabelSelector, path: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    label_selector(sel, path, &mut errs);
    errs
}

pub(super) fn label_selector(sel: &LabelSelector, path: &str, errs: &mut Vec<FieldError>) {
    for (key, value) in sel.match_labels.iter().flatten() {
        let p = format!("{path}.matchLabels[{key}]");
        label_key(key, &p, errs);
        if !is_label_value(value) {
            errs.push(FieldError::invalid(p, label_value_message(value)));
        }
    }
    for (i, req) in sel.match_expressions.iter().flatten().enumerate() {
        let p = format!("{path}.matchExpressions[{i}]");
        label_key(&req.key, &format!("{p}.key"), errs);
        let values = req.values.as_deref().unwrap_or_default();
        match req.operator.as_str() {
            "In" | "NotIn" => {
                if values.is_empty() {
                    errs.push(FieldError::required(
                        format!("{p}.values"),
                        "must be specified when `operator` is 'In' or 'NotIn'",
                    ));
                }
            }
            "Exists" | "DoesNotExist" => {
                if !values.is_empty() {
                    errs.push(FieldError::invalid(
                        format!("{p}.values"),
                        "may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
                    ));
                }
            }
            other => errs.push(FieldError::not_supported(
                format!("{p}.operator"),
                other,
                &LABEL_OPERATORS,
            )),
        }
        for (j, v) in values.iter().enumerate() {
            if !is_label_value(v) {
                errs.push(FieldError::invalid(
                    format!("{p}.values[{j}]"),
                    label_value_message(v),
                ));
            }
        }
    }
}

/// Checks a cluster field selector: keys provider|region|zone, operators In|NotIn,
/// at least one value.
pub fn validate_field_selector(sel: &FieldSelector, path: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    field_selector(sel, path, &mut errs);
    errs
}

pub(super) fn field_selector(sel: &FieldSelector, path: &str, errs: &mut Vec<FieldError>) {
    for (i, req) in sel.match_expressions.iter().enumerate() {
        field_requirement(req, &format!("{path}.matchExpressions[{i}]"), errs);
    }
}

fn field_requirement(req: &NodeSelectorRequirement, p: &str, errs: &mut Vec<FieldError>) {
    if !FIELD_KEYS.contains(&req.key.as_str()) {
        errs.push(FieldError::not_supported(
            format!("{p}.key"),
            &req.key,
            &FIELD_KEYS,
        ));
    }
    if !FIELD_OPERATORS.contains(&req.operator.as_str()) {
        errs.push(FieldError::not_supported(
            format!("{p}.operator"),
            &req.operator,
            &FIELD_OPERATORS,
        ));
    }
    if req.values.as_deref().unwrap_or_default().is_empty() {
        errs.push(FieldError::required(
            format!("{p}.values"),
            "at least one value is required",
        ));
    }
}

/// Checks a toleration as Kubernetes does.
pub(super) fn toleration(t: &Toleration, p: &str, errs: &mut Vec<FieldError>) {
    let key = t.key.as_deref().unwrap_or_default();
    if !key.is_empty() {
        label_key(key, &format!("{p}.key"), errs);
    }
    let value = t.value.as_deref().unwrap_or_default();
    match t.operator.as_deref().unwrap_or("Equal") {
        "Equal" => {
            if key.is_empty() {
                errs.push(FieldError::invalid(
                    format!("{p}.operator"),
                    "operator must be Exists when `key` is empty",
                ));
            }
            if !is_label_value(value) {
                errs.push(FieldError::invalid(
                    format!("{p}.value"),
                    label_value_message(value),
                ));
            }
        }
        "Exists" => {
            if !value.is_empty() {
                errs.push(FieldError::invalid(
                    format!("{p}.value"),
                    "value must be empty when `operator` is 'Exists'",
                ));
            }
        }
        other => errs.push(FieldError::not_supported(
            format!("{p}.operator"),
            other,
            &TOLERATION_OPERATORS,
        )),
    }
    let effect = t.effect.as_deref().unwrap_or_default();
    if !effect.is_empty() && !TAINT_EFFECTS.contains(&effect) {
        errs.push(FieldError::not_supported(
            format!("{p}.effect"),
            effect,
            &TAINT_EFFECTS,
        ));
    }
    if let Some(secs) = t.toleration_seconds {
        if effect != "NoExecute" {
            errs.push(FieldError::invalid(
                format!("{p}.effect"),
                "effect must be 'NoExecute' when `tolerationSeconds` is set",
            ));
        }
        if secs < 0 {
            errs.push(FieldError::invalid(
                format!("{p}.tolerationSeconds"),
                format!("{secs}: must be non-negative"),
            ));
        }
    }
}

/// Checks a taint as Kubernetes does.
pub(super) fn taint(t: &Taint, p: &str, errs: &mut Vec<FieldError>) {
    if t.key.is_empty() {
        errs.push(FieldError::required(format!("{p}.key"), "Required value"));
    } else {
        label_key(&t.key, &format!("{p}.key"), errs);
    }
    let value = t.value.as_deref().unwrap_or_default();
    if !is_label_value(value) {
        errs.push(FieldError::invalid(
            format!("{p}.value"),
            label_value_message(value),
        ));
    }
    if t.effect.is_empty() {
        errs.push(FieldError::required(
            format!("{p}.effect"),
            "Required value",
        ));
    } else if !TAINT_EFFECTS.contains(&t.effect.as_str()) {
        errs.push(FieldError::not_supported(
            format!("{p}.effect"),
            &t.effect,
            &TAINT_EFFECTS,
        ));
    }
}

pub(super) fn label_key(key: &str, p: &str, errs: &mut Vec<FieldError>) {
    if !is_qualified_name(key) {
        errs.push(FieldError::invalid(
            p,
            format!(
                "{key:?}: a qualified name must be at most 63 characters of [A-Za-z0-9_.-], \
                 starting and ending alphanumeric, with an optional DNS subdomain prefix and '/'"
            ),
        ));
    }
}

pub(super) fn label_value_message(value: &str) -> String {
    format!(
        "{value:?}: a label value must be empty or at most 63 characters of [A-Za-z0-9_.-], \
         starting and ending alphanumeric"
    )
}
