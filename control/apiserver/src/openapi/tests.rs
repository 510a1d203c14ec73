#![allow(clippy::unwrap_used)]
use super::*;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Pod};

fn res(
    group: &str,
    version: &str,
    kind: &str,
    plural: &str,
    namespaced: bool,
    schema: ObjectSchema,
) -> OpenApiResource {
    OpenApiResource {
        group: group.into(),
        version: version.into(),
        kind: kind.into(),
        plural: plural.into(),
        namespaced,
        has_status: true,
        schema,
    }
}

fn pp_schema() -> ObjectSchema {
    inline_schema(
        "policy.hami.io",
        "v1alpha1",
        "PropagationPolicy",
        &json!({
            "type": "object",
            "properties": {
                "apiVersion": {"type": "string"}, "kind": {"type": "string"}, "metadata": {"type": "object"},
                "spec": {"type": "object", "description": "Spec of the policy.", "properties": {
                    "placement": {"type": "object", "description": "Where to place.", "properties": {
                        "clusterAffinity": {"type": "object"}}}
                }}
            }
        }),
    )
}

fn fixture() -> OpenApiV3 {
    OpenApiV3::build(&[
        res(
            "apps",
            "v1",
            "Deployment",
            "deployments",
            true,
            builtin_schema::<Deployment>(),
        ),
        res("", "v1", "Pod", "pods", true, builtin_schema::<Pod>()),
        res(
            "",
            "v1",
            "Namespace",
            "namespaces",
            false,
            builtin_schema::<Namespace>(),
        ),
        // A built-in given as one inlined schema (how a registry may hold it).
        res(
            "",
            "v1",
            "ConfigMap",
            "configmaps",
            true,
            inline_schema(
                "",
                "v1",
                "ConfigMap",
                &json!({"type": "object", "properties": {
                    "data": {"type": "object", "additionalProperties": {"type": "string"}}}}),
            ),
        ),
        res(
            "policy.hami.io",
            "v1alpha1",
            "PropagationPolicy",
            "propagationpolicies",
            true,
            pp_schema(),
        ),
    ])
    .unwrap()
}

fn doc(o: &OpenApiV3, gv: &str) -> Value {
    serde_json::from_slice(o.document_json(gv).unwrap()).unwrap()
}

#[test]
fn root_lists_every_group_version_with_its_hash() {
    let o = fixture();
    let root: Value = serde_json::from_slice(o.root_json()).unwrap();
    let paths = root["paths"].as_object().unwrap();
    let gvs: Vec<&str> = paths.keys().map(String::as_str).collect();
    assert_eq!(
        gvs,
        ["api/v1", "apis/apps/v1", "apis/policy.hami.io/v1alpha1"]
    );
    for gv in gvs {
        let url = paths[gv]["serverRelativeURL"].as_str().unwrap();
        assert_eq!(
            url,
            format!("/openapi/v3/{gv}?hash={}", o.document_hash(gv).unwrap())
        );
    }
    assert!(o.document_json("/apis/apps/v1").is_some());
    assert!(o.document_json("apis/batch/v1").is_none());
    // Stable: building again gives the same bytes.
    assert_eq!(fixture().root_json(), o.root_json());
}

/// kubectl's QueryParamVerifierV3: the PATCH operation of the kind lists fieldValidation.
#[test]
fn every_patch_operation_has_field_validation() {
    let o = fixture();
    for gv in o.group_versions().map(str::to_owned).collect::<Vec<_>>() {
        let d = doc(&o, &gv);
        let mut patches = 0;
        for (path, item) in d["paths"].as_object().unwrap() {
            let Some(patch) = item.get("patch") else {
                continue;
            };
            patches += 1;
            let names: Vec<&str> = patch["parameters"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|p| p["in"] == "query")
                .map(|p| p["name"].as_str().unwrap())
                .collect();
            for want in ["fieldValidation", "dryRun", "fieldManager", "force"] {
                assert!(names.contains(&want), "{path} lacks {want}");
            }
            assert!(patch["x-kubernetes-group-version-kind"]["kind"].is_string());
            assert_eq!(patch["x-kubernetes-action"], "patch");
            let content: Vec<&str> = patch["requestBody"]["content"]
                .as_object()
                .unwrap()
                .keys()
                .map(String::as_str)
                .collect();
            assert_eq!(
                content,
                [
                    "application/apply-patch+yaml",
                    "application/json-patch+json",
                    "application/merge-patch+json"
                ]
            );
        }
        assert!(patches > 0, "{gv} has no PATCH operation");
    }
}

#[test]
fn paths_cover_namespaced_and_cluster_forms() {
    let d = doc(&fixture(), "api/v1");
    let paths = d["paths"].as_object().unwrap();
    for p in [
        "/api/v1/namespaces/{namespace}/pods",
        "/api/v1/namespaces/{namespace}/pods/{name}",
        "/api/v1/namespaces/{namespace}/pods/{name}/status",
        "/api/v1/pods",
        "/api/v1/namespaces",
        "/api/v1/namespaces/{name}",
        "/api/v1/namespaces/{name}/status",
    ] {
        assert!(paths.contains_key(p), "missing {p}");
    }
    let get = &paths["/api/v1/namespaces/{namespace}/pods/{name}"]["get"];
    assert_eq!(
        get["x-kubernetes-group-version-kind"],
        json!({"group": "", "kind": "Pod", "version": "v1"})
    );
    assert_eq!(get["operationId"], "readCoreV1NamespacedPod");
    assert_eq!(
        paths["/api/v1/pods"]["get"]["operationId"],
        "listCoreV1PodForAllNamespaces"
    );
    let cm = &d["components"]["schemas"]["io.k8s.api.core.v1.ConfigMap"];
    assert_eq!(
        cm["x-kubernetes-group-version-kind"],
        json!([{"group": "", "kind": "ConfigMap", "version": "v1"}])
    );
    assert!(paths.contains_key("/api/v1/namespaces/{namespace}/configmaps/{name}"));
}

/// What `kubectl explain deploy.spec.replicas` and `pp.spec.placement` do: find the
/// component whose GVK extension holds the kind, then follow properties through refs.
fn explain(d: &Value, gvk: Value, path: &[&str]) -> Option<Value> {
    let schemas = d["components"]["schemas"].as_object().unwrap();
    let mut s = schemas
        .values()
        .find(|s| {
            s["x-kubernetes-group-version-kind"]
                .as_array()
                .is_some_and(|l| l.contains(&gvk))
        })?
        .clone();
    for field in path {
        s = resolve(d, &s);
        s = s["properties"].get(*field)?.clone();
    }
    Some(resolve(d, &s))
}

fn resolve(d: &Value, s: &Value) -> Value {
    let r = s
        .get("$ref")
        .or_else(|| s.get("allOf").and_then(|a| a[0].get("$ref")));
    match r.and_then(Value::as_str) {
        Some(r) => d["components"]["schemas"][r.trim_start_matches(schemas::REF_PREFIX)].clone(),
        None => s.clone(),
    }
}

#[test]
fn schemas_support_explain() {
    let o = fixture();
    let apps = doc(&o, "apis/apps/v1");
    let gvk = json!({"group": "apps", "kind": "Deployment", "version": "v1"});
    let replicas = explain(&apps, gvk.clone(), &["spec", "replicas"]).unwrap();
    assert_eq!(replicas["type"], "integer");
    let image = explain(
        &apps,
        gvk.clone(),
        &["spec", "template", "spec", "containers"],
    )
    .unwrap();
    assert_eq!(image["type"], "array");
    assert!(explain(&apps, gvk, &["metadata", "labels"]).is_some());
    let list = &apps["components"]["schemas"]["io.k8s.api.apps.v1.DeploymentList"];
    assert_eq!(
        list["x-kubernetes-group-version-kind"][0]["kind"],
        "DeploymentList"
    );

    let pol = doc(&o, "apis/policy.hami.io/v1alpha1");
    let gvk =
        json!({"group": "policy.hami.io", "kind": "PropagationPolicy", "version": "v1alpha1"});
    let placement = explain(&pol, gvk.clone(), &["spec", "placement"]).unwrap();
    assert_eq!(placement["description"], "Where to place.");
    assert!(
        explain(&pol, gvk, &["metadata", "finalizers"]).is_some(),
        "CRD metadata is ObjectMeta"
    );
    assert!(
        pol["components"]["schemas"]
            .get("io.hami.policy.v1alpha1.PropagationPolicy")
            .is_some()
    );
}

fn refs(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            if let Some(Value::String(r)) = m.get("$ref") {
                assert_eq!(m.len(), 1, "OpenAPI 3.0 forbids siblings of $ref: {v}");
                out.push(r.clone());
            }
            m.values().for_each(|x| refs(x, out));
        }
        Value::Array(l) => l.iter().for_each(|x| refs(x, out)),
        _ => {}
    }
}

#[test]
fn every_reference_resolves() {
    let o = fixture();
    for gv in o.group_versions().map(str::to_owned).collect::<Vec<_>>() {
        let d = doc(&o, &gv);
        let mut all = Vec::new();
        refs(&d, &mut all);
        assert!(!all.is_empty());
        for r in all {
            let name = r
                .strip_prefix(schemas::REF_PREFIX)
                .unwrap_or_else(|| panic!("{r}"));
            assert!(
                d["components"]["schemas"].get(name).is_some(),
                "{gv}: dangling {r}"
            );
        }
    }
}
