//! Server-side printing: `meta.k8s.io/v1` Table responses (what `kubectl get`
//! asks for), PartialObjectMetadata, and the small JSONPath dialect of
//! printer columns (`.spec.x`, `.items[0]`, `.items[*].x`,
//! `.status.conditions[?(@.type=="Ready")].status`).

use serde_json::{Value, json};

use super::meta;
use super::registry::ResourceKind;

/// One step of a printer column's path.
#[derive(Clone, Debug, PartialEq)]
enum Step {
    Field(String),
    Index(usize),
    /// `[*]`: every element of an array.
    All,
    /// `[?(@.a.b=="v")]`: array elements whose path equals the value.
    Filter(Vec<String>, Value),
}

fn parse_path(path: &str) -> Option<Vec<Step>> {
    let path = path.trim();
    let path = path
        .strip_prefix('{')
        .and_then(|p| p.strip_suffix('}'))
        .unwrap_or(path);
    let path = path.strip_prefix('$').unwrap_or(path);
    let mut steps = Vec::new();
    let mut rest = path;
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix('.') {
            // A field ends at the next unescaped `.` or `[`; `\.` is a dot
            // inside the name (`.status.used.nvidia\.com/gpu`).
            let mut end = r.len();
            let mut escaped = false;
            for (i, c) in r.char_indices() {
                match c {
                    '\\' if !escaped => escaped = true,
                    '.' | '[' if !escaped => {
                        end = i;
                        break;
                    }
                    _ => escaped = false,
                }
            }
            if end > 0 {
                steps.push(Step::Field(r[..end].replace("\\.", ".")));
            }
            rest = &r[end..];
        } else if let Some(r) = rest.strip_prefix('[') {
            let close = r.find(']')?;
            let inner = &r[..close];
            rest = &r[close + 1..];
            if let Some(filter) = inner.strip_prefix("?(").and_then(|f| f.strip_suffix(')')) {
                let (lhs, rhs) = filter.split_once("==")?;
                let fields = lhs
                    .trim()
                    .strip_prefix('@')?
                    .split('.')
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
                    .collect();
                let rhs = rhs.trim();
                let value = if let Some(s) = rhs
                    .strip_prefix('"')
                    .and_then(|s| s.strip_suffix('"'))
                    .or_else(|| rhs.strip_prefix('\'').and_then(|s| s.strip_suffix('\'')))
                {
                    json!(s)
                } else {
                    serde_json::from_str(rhs).ok()?
                };
                steps.push(Step::Filter(fields, value));
            } else if let Some(field) = inner
                .strip_prefix('\'')
                .and_then(|f| f.strip_suffix('\''))
                .or_else(|| inner.strip_prefix('"').and_then(|f| f.strip_suffix('"')))
            {
                steps.push(Step::Field(field.to_owned()));
            } else if inner.trim() == "*" {
                steps.push(Step::All);
            } else {
                steps.push(Step::Index(inner.trim().parse().ok()?));
            }
        } else {
            return None;
        }
    }
    Some(steps)
}

/// Evaluates a printer-column path; the first match, if any (as Kubernetes'
/// CRD table convertor prints the first result of a column's JSONPath).
pub fn eval(object: &Value, path: &str) -> Option<Value> {
    let steps = parse_path(path)?;
    let mut current: Vec<&Value> = vec![object];
    for step in &steps {
        let mut next = Vec::new();
        for value in current {
            match step {
                Step::Field(f) => next.extend(value.get(f.as_str())),
                Step::Index(i) => next.extend(value.get(*i)),
                Step::All => next.extend(value.as_array().into_iter().flatten()),
                Step::Filter(fields, want) => {
                    for item in value.as_array().into_iter().flatten() {
                        let got = fields.iter().try_fold(item, |v, f| v.get(f.as_str()));
                        if got == Some(want) {
                            next.push(item);
                        }
                    }
                }
            }
        }
        current = next;
    }
    current.first().map(|v| (*v).clone())
}

struct Column {
    name: String,
    type_: String,
    format: String,
    description: String,
    priority: i32,
    json_path: Option<String>,
}

fn columns(kind: &ResourceKind) -> Vec<Column> {
    let mut cols = vec![Column {
        name: "Name".into(),
        type_: "string".into(),
        format: "name".into(),
        description: "Name must be unique within a namespace.".into(),
        priority: 0,
        json_path: Some(".metadata.name".into()),
    }];
    let mut has_age = false;
    for c in &kind.printer_columns {
        has_age |= c.json_path == ".metadata.creationTimestamp";
        cols.push(Column {
            name: c.name.clone(),
            type_: c.type_.clone(),
            format: c.format.clone(),
            description: c.description.clone(),
            priority: c.priority,
            json_path: Some(c.json_path.clone()),
        });
    }
    if !has_age {
        cols.push(Column {
            name: "Age".into(),
            type_: "date".into(),
            format: String::new(),
            description: "Time since the object was created.".into(),
            priority: 0,
            json_path: Some(".metadata.creationTimestamp".into()),
        });
    }
    cols
}

fn cell(column: &Column, object: &Value) -> Value {
    if column.json_path.as_deref() == Some(super::csr::CONDITION_COLUMN) {
        return json!(super::csr::condition_text(object));
    }
    let value = column.json_path.as_deref().and_then(|p| eval(object, p));
    match (column.type_.as_str(), value) {
        (_, None) => Value::Null,
        ("date", Some(Value::String(s))) => json!(meta::human_age(&s)),
        (_, Some(v @ (Value::String(_) | Value::Number(_) | Value::Bool(_)))) => v,
        (_, Some(Value::Null)) => Value::Null,
        (_, Some(other)) => json!(other.to_string()),
    }
}

/// The object reduced to PartialObjectMetadata.
pub fn partial_metadata(object: &Value) -> Value {
    let mut metadata = object.get("metadata").cloned().unwrap_or_else(|| json!({}));
    meta::as_map(&mut metadata).remove("managedFields");
    json!({
        "kind": "PartialObjectMetadata",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": metadata,
    })
}

/// The object a Table row carries, per `includeObject` (None/Metadata/Object).
fn row_object(object: &Value, include: Option<&str>) -> Value {
    match include {
        Some("None") => Value::Null,
        Some("Object") => object.clone(),
        _ => partial_metadata(object),
    }
}

/// A Table of `objects` with list metadata `list_meta`.
pub fn table(
    kind: &ResourceKind,
    objects: &[Value],
    list_meta: Value,
    include: Option<&str>,
) -> Value {
    let cols = columns(kind);
    let rows: Vec<Value> = objects
        .iter()
        .map(|o| {
            json!({
                "cells": cols.iter().map(|c| cell(c, o)).collect::<Vec<_>>(),
                "object": row_object(o, include),
            })
        })
        .collect();
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": list_meta,
        "columnDefinitions": cols.iter().map(|c| json!({
            "name": c.name,
            "type": c.type_,
            "format": c.format,
            "description": c.description,
            "priority": c.priority,
        })).collect::<Vec<_>>(),
        "rows": rows,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::registry::Registry;

    #[test]
    fn jsonpath_subset() {
        let o = json!({
            "spec": {"replicas": 3, "items": ["a", "b"]},
            "status": {"conditions": [
                {"type": "Scheduled", "status": "True"},
                {"type": "Ready", "status": "False"}
            ]}
        });
        assert_eq!(eval(&o, ".spec.replicas"), Some(json!(3)));
        assert_eq!(eval(&o, "{.spec.items[1]}"), Some(json!("b")));
        assert_eq!(
            eval(&o, r#".status.conditions[?(@.type=="Ready")].status"#),
            Some(json!("False"))
        );
        assert_eq!(eval(&o, ".spec.items[*]"), Some(json!("a")));
        assert_eq!(
            eval(&o, ".status.conditions[*].status"),
            Some(json!("True"))
        );
        assert_eq!(eval(&o, ".spec.missing"), None);
        assert_eq!(eval(&o, ".spec[x"), None);
        // An escaped dot belongs to the field name (extended resources).
        let q = json!({"status": {"used": {"nvidia.com/gpu": "3", "cpu": "2"}}});
        assert_eq!(eval(&q, r".status.used.nvidia\.com/gpu"), Some(json!("3")));
        assert_eq!(eval(&q, r".status.used.cpu"), Some(json!("2")));
        assert_eq!(
            eval(&q, r".status.used['nvidia.com/gpu']"),
            Some(json!("3"))
        );
    }

    #[test]
    fn deployment_table_has_name_columns_and_age() {
        let r = Registry::builtin();
        let kind = r.lookup("apps", "v1", "deployments").unwrap();
        let obj = json!({"metadata": {"name": "web", "namespace": "default",
            "creationTimestamp": meta::now_rfc3339()}, "spec": {"replicas": 2}});
        let t = table(kind, &[obj], json!({"resourceVersion": "5"}), None);
        let names: Vec<&str> = t["columnDefinitions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, vec!["Name", "Desired", "Ready", "Age"]);
        assert_eq!(t["rows"][0]["cells"][0], "web");
        assert_eq!(t["rows"][0]["cells"][1], 2);
        assert_eq!(t["rows"][0]["cells"][2], Value::Null);
        assert!(t["rows"][0]["cells"][3].as_str().unwrap().ends_with('s'));
        assert_eq!(t["rows"][0]["object"]["kind"], "PartialObjectMetadata");
        assert_eq!(t["rows"][0]["object"]["metadata"]["namespace"], "default");
    }
}
