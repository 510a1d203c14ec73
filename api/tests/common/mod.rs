//! Helpers shared by the validation table tests: valid base objects, a JSON
//! pointer setter, and the table checker.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use hami_api::FieldErrorKind;
use serde_json::{Value, json};

pub const POLICY: &str = "policy.hami.io/v1alpha1";
pub const WORK: &str = "work.hami.io/v1alpha2";
pub const CLUSTER: &str = "cluster.hami.io/v1alpha1";

pub fn object(api_version: &str, kind: &str, spec: Value) -> Value {
    json!({
        "apiVersion": api_version,
        "kind": kind,
        "metadata": {"name": "x", "namespace": "default"},
        "spec": spec,
    })
}

/// Sets `value` at the JSON pointer `ptr` in `base`, creating objects on the way.
pub fn with(mut base: Value, ptr: &str, value: Value) -> Value {
    let mut node = &mut base;
    let parts: Vec<String> = ptr
        .trim_start_matches('/')
        .split('/')
        .map(|p| p.replace("~1", "/").replace("~0", "~"))
        .collect();
    for (i, part) in parts.iter().enumerate() {
        if i + 1 == parts.len() {
            match node {
                Value::Array(a) => a[part.parse::<usize>().unwrap()] = value,
                _ => {
                    node.as_object_mut().unwrap().insert(part.clone(), value);
                }
            }
            return base;
        }
        node = match node {
            Value::Array(a) => &mut a[part.parse::<usize>().unwrap()],
            _ => node
                .as_object_mut()
                .unwrap()
                .entry(part.clone())
                .or_insert_with(|| json!({})),
        };
    }
    base
}

pub fn pp() -> Value {
    object(
        POLICY,
        "PropagationPolicy",
        json!({"resourceSelectors": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"}]}),
    )
}

pub fn op() -> Value {
    object(
        POLICY,
        "OverridePolicy",
        json!({"overrideRules": [{"overriders": {}}]}),
    )
}

pub fn frq() -> Value {
    object(
        POLICY,
        "FederatedResourceQuota",
        json!({"overall": {"cpu": "10", "nvidia.com/gpu": "8"}}),
    )
}

pub fn rb() -> Value {
    object(
        WORK,
        "ResourceBinding",
        json!({"resource": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"}, "replicas": 3}),
    )
}

pub fn cluster() -> Value {
    json!({
        "apiVersion": CLUSTER,
        "kind": "Cluster",
        "metadata": {"name": "east"},
        "spec": {"syncMode": "Pull"},
    })
}

pub fn work() -> Value {
    object(
        WORK,
        "Work",
        json!({"workload": {"manifests": [{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}}]}}),
    )
}

pub type Case = (&'static str, Value, Vec<(&'static str, FieldErrorKind)>);

pub fn check(cases: Vec<Case>) {
    let mut failures = Vec::new();
    for (name, obj, want) in cases {
        let api_version = obj["apiVersion"].as_str().unwrap().to_string();
        let kind = obj["kind"].as_str().unwrap().to_string();
        let got = match hami_api::validate(&api_version, &kind, &obj) {
            Ok(()) => Vec::new(),
            Err(errs) => {
                for e in &errs {
                    assert!(
                        !e.message.is_empty(),
                        "{name}: empty message at {}",
                        e.field
                    );
                }
                errs.into_iter().map(|e| (e.field, e.kind)).collect()
            }
        };
        let mut got_sorted = got.clone();
        got_sorted.sort_by(|a, b| a.0.cmp(&b.0));
        let mut want: Vec<(String, FieldErrorKind)> =
            want.into_iter().map(|(f, k)| (f.to_string(), k)).collect();
        want.sort_by(|a, b| a.0.cmp(&b.0));
        if got_sorted != want {
            failures.push(format!("{name}:\n  want {want:?}\n  got  {got:?}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

pub fn leak(s: String) -> &'static str {
    Box::leak(s.into_boxed_str())
}
