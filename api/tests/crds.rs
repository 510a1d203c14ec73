#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Every CRD serializes, carries the names kubectl needs, and has a structural
//! schema (every node typed or explicitly free, no $ref, no untyped unions).

use serde_json::Value;

fn check_structural(node: &Value, path: &str, problems: &mut Vec<String>) {
    let Some(obj) = node.as_object() else {
        problems.push(format!("{path}: schema node is not an object"));
        return;
    };
    for banned in [
        "$ref",
        "oneOf",
        "anyOf",
        "allOf",
        "not",
        "definitions",
        "$defs",
    ] {
        if obj.contains_key(banned) {
            problems.push(format!("{path}: has {banned}"));
        }
    }
    let free = obj.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true))
        || obj.get("x-kubernetes-int-or-string") == Some(&Value::Bool(true));
    if !obj.contains_key("type") && !free {
        problems.push(format!("{path}: no type"));
    }
    if let Some(props) = obj.get("properties").and_then(Value::as_object) {
        for (k, v) in props {
            check_structural(v, &format!("{path}.{k}"), problems);
        }
    }
    if let Some(items) = obj.get("items") {
        check_structural(items, &format!("{path}[]"), problems);
    }
    if let Some(ap) = obj.get("additionalProperties")
        && ap.is_object()
    {
        check_structural(ap, &format!("{path}{{}}"), problems);
    }
}

fn schema_at<'a>(schema: &'a Value, path: &[&str]) -> &'a Value {
    let mut node = schema;
    for p in path {
        node = if *p == "[]" {
            &node["items"]
        } else {
            &node["properties"][*p]
        };
    }
    node
}

#[test]
fn every_crd_is_structural_and_named() {
    let crds = hami_api::crds();
    assert_eq!(crds.len(), 9);
    let mut kinds = Vec::new();
    for crd in &crds {
        let v = serde_json::to_value(crd).unwrap();
        let yaml = serde_saphyr::to_string(crd).unwrap();
        assert!(yaml.contains("CustomResourceDefinition"));
        let names = &v["spec"]["names"];
        let kind = names["kind"].as_str().unwrap().to_string();
        assert_eq!(names["categories"], serde_json::json!(["hami"]), "{kind}");
        assert!(v["spec"]["group"].as_str().unwrap().ends_with(".hami.io"));
        let version = &v["spec"]["versions"][0];
        assert_eq!(version["served"], true);
        assert_eq!(version["storage"], true);
        let columns = version["additionalPrinterColumns"].as_array().unwrap();
        assert!(
            columns.iter().any(|c| c["name"] == "Age"),
            "{kind}: no Age column"
        );
        let schema = &version["schema"]["openAPIV3Schema"];
        let mut problems = Vec::new();
        check_structural(schema, &kind, &mut problems);
        assert!(problems.is_empty(), "{kind}: {problems:#?}");
        assert!(
            schema["properties"].get("spec").is_some(),
            "{kind}: no spec"
        );
        kinds.push(kind);
    }
    assert_eq!(
        kinds,
        [
            "Cluster",
            "PropagationPolicy",
            "ClusterPropagationPolicy",
            "OverridePolicy",
            "ClusterOverridePolicy",
            "FederatedResourceQuota",
            "ResourceBinding",
            "ClusterResourceBinding",
            "Work"
        ]
    );
}

#[test]
fn names_scope_and_subresources() {
    let by_kind = |kind: &str| {
        let crd = hami_api::crds()
            .into_iter()
            .find(|c| c.spec.names.kind == kind)
            .unwrap();
        serde_json::to_value(crd).unwrap()
    };
    let cases = [
        ("Cluster", "Cluster", None, true),
        ("PropagationPolicy", "Namespaced", Some("pp"), false),
        ("ClusterPropagationPolicy", "Cluster", Some("cpp"), false),
        ("OverridePolicy", "Namespaced", Some("op"), false),
        ("ClusterOverridePolicy", "Cluster", Some("cop"), false),
        ("FederatedResourceQuota", "Namespaced", Some("frq"), true),
        ("ResourceBinding", "Namespaced", Some("rb"), true),
        ("ClusterResourceBinding", "Cluster", Some("crb"), true),
        ("Work", "Namespaced", None, true),
    ];
    for (kind, scope, short, status) in cases {
        let v = by_kind(kind);
        assert_eq!(v["spec"]["scope"], scope, "{kind}");
        match short {
            Some(s) => assert_eq!(
                v["spec"]["names"]["shortNames"],
                serde_json::json!([s]),
                "{kind}"
            ),
            None => assert!(v["spec"]["names"].get("shortNames").is_none(), "{kind}"),
        }
        let has_status = v["spec"]["versions"][0]["subresources"]
            .get("status")
            .is_some();
        assert_eq!(has_status, status, "{kind}");
    }
}

#[test]
fn free_json_fields_preserve_unknown_fields() {
    let crds: Vec<Value> = hami_api::crds()
        .iter()
        .map(|c| serde_json::to_value(c).unwrap())
        .collect();
    let schema = |kind: &str| {
        let v = crds
            .iter()
            .find(|c| c["spec"]["names"]["kind"] == kind)
            .unwrap();
        v["spec"]["versions"][0]["schema"]["openAPIV3Schema"].clone()
    };
    let preserve = |node: &Value| node["x-kubernetes-preserve-unknown-fields"] == true;
    let work = schema("Work");
    assert!(preserve(schema_at(
        &work,
        &["spec", "workload", "manifests", "[]"]
    )));
    assert!(preserve(schema_at(
        &work,
        &["status", "manifestStatuses", "[]", "status"]
    )));
    let rb = schema("ResourceBinding");
    assert!(preserve(schema_at(
        &rb,
        &["status", "aggregatedStatus", "[]", "status"]
    )));
    let op = schema("OverridePolicy");
    assert!(preserve(schema_at(
        &op,
        &[
            "spec",
            "overrideRules",
            "[]",
            "overriders",
            "plaintext",
            "[]",
            "value"
        ]
    )));
    // The flattened ClusterAffinityTerm keeps the affinity's fields beside affinityName.
    let pp = schema("PropagationPolicy");
    let term = schema_at(&pp, &["spec", "placement", "clusterAffinities", "[]"]);
    assert!(term["properties"].get("affinityName").is_some());
    assert!(term["properties"].get("clusterNames").is_some());
    // ClusterPropagationPolicy's spec has the same shape as PropagationPolicy's.
    let cpp = schema("ClusterPropagationPolicy");
    assert_eq!(
        schema_at(&cpp, &["spec"])["properties"],
        schema_at(&pp, &["spec"])["properties"]
    );
}
