#![allow(clippy::unwrap_used)]
use super::*;
use proptest::prelude::*;
use serde_json::json;

fn deploy(containers: Value) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default", "labels": {"app": "web"}},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": containers}
            }
        }
    })
}

fn smp(orig: &Value, patch: Value) -> Value {
    strategic_merge_patch(orig, &patch, "apps/v1", "Deployment").unwrap()
}

fn containers(v: &Value) -> &Value {
    &v["spec"]["template"]["spec"]["containers"]
}

#[test]
fn container_list_merges_by_name() {
    let orig = deploy(json!([
        {"name": "a", "image": "a:1", "args": ["x"]},
        {"name": "b", "image": "b:1"}
    ]));
    let got = smp(
        &orig,
        json!({"spec": {"template": {"spec": {"containers": [
            {"name": "b", "image": "b:2"},
            {"name": "c", "image": "c:1"}
        ]}}}}),
    );
    assert_eq!(
        containers(&got),
        &json!([
            {"name": "a", "image": "a:1", "args": ["x"]},
            {"name": "b", "image": "b:2"},
            {"name": "c", "image": "c:1"}
        ])
    );
}

/// kubectl apply after editing the image: exactly the patch kubectl 1.32 computes.
#[test]
fn kubectl_change_image() {
    let orig =
        deploy(json!([{"name": "nginx", "image": "nginx:1.25", "ports": [{"containerPort": 80}]}]));
    let got = smp(
        &orig,
        json!({
            "metadata": {"annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}\n"}},
            "spec": {"template": {"spec": {
                "$setElementOrder/containers": [{"name": "nginx"}],
                "containers": [{"image": "nginx:1.27", "name": "nginx"}]
            }}}
        }),
    );
    assert_eq!(
        containers(&got),
        &json!([{"name": "nginx", "image": "nginx:1.27", "ports": [{"containerPort": 80}]}])
    );
    assert_eq!(
        got["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"],
        "{}\n"
    );
    assert_eq!(got["metadata"]["labels"], json!({"app": "web"}));
}

#[test]
fn kubectl_add_env_var() {
    let orig =
        deploy(json!([{"name": "nginx", "image": "nginx", "env": [{"name": "A", "value": "1"}]}]));
    let got = smp(
        &orig,
        json!({"spec": {"template": {"spec": {
            "$setElementOrder/containers": [{"name": "nginx"}],
            "containers": [{
                "$setElementOrder/env": [{"name": "B"}, {"name": "A"}],
                "env": [{"name": "B", "value": "2"}],
                "name": "nginx"
            }]
        }}}}),
    );
    assert_eq!(
        containers(&got)[0]["env"],
        json!([{"name": "B", "value": "2"}, {"name": "A", "value": "1"}])
    );
}

#[test]
fn kubectl_remove_env_var_with_patch_delete() {
    let orig = deploy(json!([{"name": "nginx", "image": "nginx",
        "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]}]));
    let got = smp(
        &orig,
        json!({"spec": {"template": {"spec": {
            "$setElementOrder/containers": [{"name": "nginx"}],
            "containers": [{
                "$setElementOrder/env": [{"name": "A"}],
                "env": [{"$patch": "delete", "name": "B"}],
                "name": "nginx"
            }]
        }}}}),
    );
    assert_eq!(
        containers(&got)[0]["env"],
        json!([{"name": "A", "value": "1"}])
    );
}

#[test]
fn kubectl_remove_container() {
    let orig = deploy(json!([{"name": "a", "image": "a"}, {"name": "b", "image": "b"}]));
    let got = smp(
        &orig,
        json!({"spec": {"template": {"spec": {
            "$setElementOrder/containers": [{"name": "a"}],
            "containers": [{"$patch": "delete", "name": "b"}]
        }}}}),
    );
    assert_eq!(containers(&got), &json!([{"name": "a", "image": "a"}]));
}

#[test]
fn kubectl_change_replicas() {
    let orig = deploy(json!([{"name": "a", "image": "a"}]));
    let got = smp(&orig, json!({"spec": {"replicas": 5}}));
    assert_eq!(got["spec"]["replicas"], 5);
    assert_eq!(got["spec"]["template"], orig["spec"]["template"]);
}

#[test]
fn null_deletes_a_key() {
    let orig = deploy(json!([]));
    let got = smp(
        &orig,
        json!({"metadata": {"labels": {"app": null, "tier": "fe"}}, "spec": {"replicas": null}}),
    );
    assert_eq!(got["metadata"]["labels"], json!({"tier": "fe"}));
    assert!(got["spec"].get("replicas").is_none());
}

#[test]
fn set_element_order_reorders_and_keeps_server_only_items() {
    let orig = deploy(json!([{"name": "a"}, {"name": "s"}, {"name": "b"}]));
    let got = smp(
        &orig,
        json!({"spec": {"template": {"spec": {
            "$setElementOrder/containers": [{"name": "b"}, {"name": "a"}],
            "containers": [{"name": "b", "image": "b"}]
        }}}}),
    );
    // b and a follow the order given; the server-only s is interleaved by original
    // position: it sat before b, so it stays before b (as apimachinery orders it).
    let names: Vec<&str> = containers(&got)
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["s", "b", "a"]);
    assert_eq!(containers(&got)[1]["image"], "b");
}

#[test]
fn retain_keys_clears_other_keys() {
    let mut orig = deploy(json!([]));
    orig["spec"]["strategy"] = json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}});
    let got = smp(
        &orig,
        json!({"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate"}}}),
    );
    assert_eq!(got["spec"]["strategy"], json!({"type": "Recreate"}));
}

#[test]
fn retain_keys_rejects_unlisted_field() {
    let orig = deploy(json!([]));
    let err = strategic_merge_patch(
        &orig,
        &json!({"spec": {"strategy": {"$retainKeys": ["type"], "rollingUpdate": {}}}}),
        "apps/v1",
        "Deployment",
    );
    assert!(matches!(err, Err(PatchError::BadPatch { .. })), "{err:?}");
}

#[test]
fn finalizers_merge_as_primitive_set() {
    let mut orig = deploy(json!([]));
    orig["metadata"]["finalizers"] = json!(["a", "b"]);
    let got = smp(&orig, json!({"metadata": {"finalizers": ["c", "a"]}}));
    // Union, without duplicates; the server-only "b" sorts before the patch's items
    // whose original position is unknown or later (apimachinery's mergeSortedSlice).
    assert_eq!(got["metadata"]["finalizers"], json!(["b", "c", "a"]));
}

#[test]
fn delete_from_primitive_list_with_order() {
    let mut orig = deploy(json!([]));
    orig["metadata"]["finalizers"] = json!(["a", "b", "c"]);
    let got = smp(
        &orig,
        json!({"metadata": {
            "$setElementOrder/finalizers": ["c", "a"],
            "$deleteFromPrimitiveList/finalizers": ["b"]
        }}),
    );
    assert_eq!(got["metadata"]["finalizers"], json!(["c", "a"]));
}

#[test]
fn atomic_list_is_replaced() {
    let orig = deploy(json!([{"name": "a", "args": ["x", "y"]}]));
    let got = smp(
        &orig,
        json!({"spec": {"template": {"spec": {"containers": [{"name": "a", "args": ["z"]}]}}}}),
    );
    assert_eq!(containers(&got)[0]["args"], json!(["z"]));
    let mut orig = deploy(json!([]));
    orig["spec"]["template"]["spec"]["tolerations"] = json!([{"key": "a"}, {"key": "b"}]);
    let got = smp(
        &orig,
        json!({"spec": {"template": {"spec": {"tolerations": [{"key": "c"}]}}}}),
    );
    assert_eq!(
        got["spec"]["template"]["spec"]["tolerations"],
        json!([{"key": "c"}])
    );
}

#[test]
fn patch_replace_directives() {
    let orig = deploy(json!([{"name": "a"}, {"name": "b"}]));
    let got = smp(
        &orig,
        json!({"spec": {"template": {"spec": {"containers": [{"name": "c"}, {"$patch": "replace"}]}}}}),
    );
    assert_eq!(containers(&got), &json!([{"name": "c"}]));
    let got = smp(
        &orig,
        json!({"metadata": {"labels": {"$patch": "replace", "x": "y"}}}),
    );
    assert_eq!(got["metadata"]["labels"], json!({"x": "y"}));
    let got = smp(&orig, json!({"metadata": {"labels": {"$patch": "delete"}}}));
    assert_eq!(got["metadata"]["labels"], json!({}));
}

#[test]
fn ports_merge_by_container_port_and_service_ports_by_port() {
    let orig = deploy(json!([{"name": "a", "ports": [{"containerPort": 80, "name": "http"}]}]));
    let got = smp(
        &orig,
        json!({"spec": {"template": {"spec": {"containers": [
        {"name": "a", "ports": [{"containerPort": 443, "name": "https"}]}]}}}}),
    );
    assert_eq!(containers(&got)[0]["ports"].as_array().unwrap().len(), 2);

    let svc = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"},
        "spec": {"ports": [{"port": 80, "targetPort": 8080}]}});
    let got = strategic_merge_patch(
        &svc,
        &json!({"spec": {"ports": [{"port": 80, "targetPort": 9090}]}}),
        "v1",
        "Service",
    )
    .unwrap();
    assert_eq!(
        got["spec"]["ports"],
        json!([{"port": 80, "targetPort": 9090}])
    );
}

#[test]
fn new_field_directives_are_resolved() {
    let orig = deploy(json!([]));
    let got = smp(
        &orig,
        json!({"spec": {"template": {"spec": {"volumes": [
        {"name": "v", "emptyDir": {}}, {"name": "gone", "$patch": "delete"}]}}}}),
    );
    assert_eq!(
        got["spec"]["template"]["spec"]["volumes"],
        json!([{"name": "v", "emptyDir": {}}])
    );
}

#[test]
fn custom_resources_are_unsupported() {
    let pp = json!({"apiVersion": "policy.hami.io/v1alpha1", "kind": "PropagationPolicy"});
    let err = strategic_merge_patch(
        &pp,
        &json!({"spec": {}}),
        "policy.hami.io/v1alpha1",
        "PropagationPolicy",
    );
    assert!(matches!(err, Err(PatchError::UnsupportedMediaType { .. })));
}

#[test]
fn malformed_patches_are_bad_requests() {
    let orig = deploy(json!([{"name": "a"}]));
    let cases = [
        json!([1]),
        json!({"spec": {"template": {"spec": {"containers": [{"image": "no-name"}]}}}}),
        json!({"spec": {"template": {"spec": {"containers": ["str"]}}}}),
        json!({"spec": {"template": {"spec": {"containers": [{"$patch": "bogus", "name": "a"}]}}}}),
        json!({"metadata": {"$patch": "bogus"}}),
        json!({"metadata": {"$unknown": 1}}),
        json!({"metadata": {"finalizers": [{"a": 1}]}}),
        json!({"spec": {"template": {"spec": {"$setElementOrder/containers": [{"x": 1}], "containers": []}}}}),
    ];
    for p in cases {
        let r = strategic_merge_patch(&orig, &p, "apps/v1", "Deployment");
        assert!(
            matches!(r, Err(PatchError::BadPatch { .. })),
            "{p} gave {r:?}"
        );
    }
}

fn arb_json() -> impl Strategy<Value = Value> {
    let key = prop_oneof![
        Just("spec".to_owned()),
        Just("template".to_owned()),
        Just("containers".to_owned()),
        Just("name".to_owned()),
        Just("env".to_owned()),
        Just("metadata".to_owned()),
        Just("finalizers".to_owned()),
        Just("$patch".to_owned()),
        Just("$retainKeys".to_owned()),
        Just("$setElementOrder/containers".to_owned()),
        Just("$deleteFromPrimitiveList/finalizers".to_owned()),
        Just("replace".to_owned()),
        Just("delete".to_owned()),
        "[a-z$/]{0,6}",
    ];
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        prop_oneof![Just("replace"), Just("delete"), Just("merge"), Just("a")]
            .prop_map(Value::from),
    ];
    leaf.prop_recursive(5, 64, 6, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::btree_map(key.clone(), inner, 0..5)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #[test]
    fn random_input_never_panics(orig in arb_json(), patch in arb_json()) {
        let _ = strategic_merge_patch(&orig, &patch, "apps/v1", "Deployment");
        let _ = strategic_merge_patch(&orig, &patch, "v1", "Pod");
        let _ = super::super::merge::merge_patch(&orig, &patch);
    }
}
