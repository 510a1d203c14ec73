#![allow(clippy::unwrap_used)]
use super::*;
use proptest::prelude::*;
use serde_json::json;

fn w(manager: &str) -> Writer<'_> {
    Writer {
        manager,
        subresource: None,
        has_status_subresource: true,
        time: "2025-01-01T00:00:00Z",
    }
}

fn at(manager: &str, time: &'static str) -> Writer<'static> {
    let m: &'static str = Box::leak(manager.to_owned().into_boxed_str());
    Writer {
        manager: m,
        subresource: None,
        has_status_subresource: true,
        time,
    }
}

fn cfg(replicas: i64, image: &str) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default", "labels": {"app": "web"}},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "nginx", "image": image}]}}}
    })
}

fn managers(obj: &Value) -> Vec<(String, String)> {
    obj["metadata"]["managedFields"]
        .as_array()
        .map(|l| {
            l.iter()
                .map(|e| {
                    (
                        e["manager"].as_str().unwrap().to_owned(),
                        e["operation"].as_str().unwrap().to_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

fn fields_of<'a>(obj: &'a Value, manager: &str) -> &'a Value {
    let l = obj["metadata"]["managedFields"].as_array().unwrap();
    &l.iter().find(|e| e["manager"] == manager).unwrap()["fieldsV1"]
}

#[test]
fn create_records_apply_entry() {
    let obj = apply(None, &cfg(2, "nginx:1"), &w("kubectl"), false).unwrap();
    assert_eq!(obj["spec"]["replicas"], 2);
    assert_eq!(obj["kind"], "Deployment");
    assert_eq!(managers(&obj), [("kubectl".to_owned(), "Apply".to_owned())]);
    let e = &obj["metadata"]["managedFields"][0];
    assert_eq!(e["fieldsType"], "FieldsV1");
    assert_eq!(e["apiVersion"], "apps/v1");
    assert_eq!(e["time"], "2025-01-01T00:00:00Z");
    assert_eq!(
        e["fieldsV1"]["f:spec"]["f:template"]["f:spec"]["f:containers"],
        json!({"k:{\"name\":\"nginx\"}": {".": {}, "f:image": {}, "f:name": {}}})
    );
    assert!(e["fieldsV1"]["f:metadata"].get("f:name").is_none());
}

#[test]
fn reapply_unchanged_is_a_noop() {
    let obj = apply(None, &cfg(2, "nginx:1"), &w("kubectl"), false).unwrap();
    let again = apply(
        Some(&obj),
        &cfg(2, "nginx:1"),
        &at("kubectl", "2030-01-01T00:00:00Z"),
        false,
    )
    .unwrap();
    assert_eq!(again, obj);
}

#[test]
fn reapply_without_a_field_removes_it() {
    let mut c = cfg(2, "nginx:1");
    c["metadata"]["labels"]["tier"] = json!("fe");
    let obj = apply(None, &c, &w("kubectl"), false).unwrap();
    let obj = apply(Some(&obj), &cfg(2, "nginx:1"), &w("kubectl"), false).unwrap();
    assert_eq!(obj["metadata"]["labels"], json!({"app": "web"}));
    // and a whole list item
    let mut two = cfg(2, "nginx:1");
    two["spec"]["template"]["spec"]["containers"] =
        json!([{"name": "nginx", "image": "n"}, {"name": "side", "image": "s"}]);
    let obj = apply(Some(&obj), &two, &w("kubectl"), false).unwrap();
    assert_eq!(
        obj["spec"]["template"]["spec"]["containers"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    let obj = apply(Some(&obj), &cfg(2, "n"), &w("kubectl"), false).unwrap();
    assert_eq!(
        obj["spec"]["template"]["spec"]["containers"],
        json!([{"name": "nginx", "image": "n"}])
    );
}

#[test]
fn two_managers_co_own_and_removal_keeps_shared_fields() {
    let obj = apply(None, &cfg(2, "nginx:1"), &w("a"), false).unwrap();
    // b applies the same replicas: no conflict, both own it.
    let b_cfg = json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default"}, "spec": {"replicas": 2}});
    let obj = apply(Some(&obj), &b_cfg, &w("b"), false).unwrap();
    assert_eq!(managers(&obj).len(), 2);
    assert_eq!(fields_of(&obj, "b"), &json!({"f:spec": {"f:replicas": {}}}));
    // a stops applying replicas: b still owns it, so it stays.
    let mut a_cfg = cfg(2, "nginx:1");
    a_cfg["spec"].as_object_mut().unwrap().remove("replicas");
    let obj = apply(Some(&obj), &a_cfg, &w("a"), false).unwrap();
    assert_eq!(obj["spec"]["replicas"], 2);
    assert!(fields_of(&obj, "a")["f:spec"].get("f:replicas").is_none());
}

#[test]
fn conflict_without_force_and_takeover_with_force() {
    let obj = apply(None, &cfg(2, "nginx:1"), &w("a"), false).unwrap();
    let b_cfg = json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default"}, "spec": {"replicas": 5}});
    let err = apply(Some(&obj), &b_cfg, &w("b"), false).unwrap_err();
    let ApplyError::Conflicts(c) = &err else {
        panic!("{err:?}")
    };
    assert_eq!(
        c,
        &[Conflict {
            manager: "a".into(),
            api_version: "apps/v1".into(),
            field: ".spec.replicas".into()
        }]
    );
    assert_eq!(
        err.to_string(),
        "Apply failed with 1 conflict: conflict with \"a\" using apps/v1: .spec.replicas"
    );
    let obj = apply(Some(&obj), &b_cfg, &w("b"), true).unwrap();
    assert_eq!(obj["spec"]["replicas"], 5);
    assert!(fields_of(&obj, "a")["f:spec"].get("f:replicas").is_none());
    assert_eq!(fields_of(&obj, "b"), &json!({"f:spec": {"f:replicas": {}}}));
}

#[test]
fn list_items_by_key_are_owned_separately() {
    let obj = apply(None, &cfg(2, "nginx:1"), &w("a"), false).unwrap();
    let side = json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {"template": {"spec": {"containers": [{"name": "side", "image": "s:1"}]}}}});
    let obj = apply(Some(&obj), &side, &w("b"), false).unwrap();
    let names: Vec<&str> = obj["spec"]["template"]["spec"]["containers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["nginx", "side"]);
    // a changes its own container's image: no conflict with b.
    let obj = apply(Some(&obj), &cfg(2, "nginx:2"), &w("a"), false).unwrap();
    assert_eq!(
        obj["spec"]["template"]["spec"]["containers"][0]["image"],
        "nginx:2"
    );
    // b changing a's image conflicts on exactly that field.
    let steal = json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {"template": {"spec": {"containers": [{"name": "side", "image": "s:1"}, {"name": "nginx", "image": "evil"}]}}}});
    let ApplyError::Conflicts(c) = apply(Some(&obj), &steal, &w("b"), false).unwrap_err() else {
        panic!()
    };
    assert_eq!(
        c[0].field,
        ".spec.template.spec.containers[name=\"nginx\"].image"
    );
}

#[test]
fn update_then_apply_sees_ownership() {
    // kubectl create / client-side apply records an Update entry.
    let created = record_update(
        None,
        &cfg(2, "nginx:1"),
        &w("kubectl-client-side-apply"),
        "Update",
    )
    .unwrap();
    assert_eq!(
        managers(&created),
        [("kubectl-client-side-apply".to_owned(), "Update".to_owned())]
    );
    // server-side apply with the same values: co-ownership, no conflict.
    let obj = apply(Some(&created), &cfg(2, "nginx:1"), &w("kubectl"), false).unwrap();
    assert_eq!(managers(&obj).len(), 2);
    // changing replicas server-side conflicts with the client-side manager.
    let ApplyError::Conflicts(c) =
        apply(Some(&obj), &cfg(3, "nginx:1"), &w("kubectl"), false).unwrap_err()
    else {
        panic!()
    };
    assert_eq!(c[0].manager, "kubectl-client-side-apply");
    // a PUT by someone else that changes replicas takes it over without conflict.
    let mut put = obj.clone();
    put["spec"]["replicas"] = json!(7);
    let after = record_update(Some(&obj), &put, &w("scaler"), "Update").unwrap();
    assert_eq!(
        fields_of(&after, "scaler"),
        &json!({"f:spec": {"f:replicas": {}}})
    );
    assert!(
        fields_of(&after, "kubectl")["f:spec"]
            .get("f:replicas")
            .is_none()
    );
}

#[test]
fn update_keeps_or_replaces_given_managed_fields() {
    let created = record_update(None, &cfg(2, "nginx:1"), &w("m"), "Update").unwrap();
    // omitted managedFields are carried over
    let mut put = cfg(2, "nginx:1");
    put["metadata"]["labels"]["x"] = json!("y");
    let after = record_update(Some(&created), &put, &w("m"), "Update").unwrap();
    assert_eq!(managers(&after), [("m".to_owned(), "Update".to_owned())]);
    assert!(
        fields_of(&after, "m")["f:metadata"]["f:labels"]
            .get("f:x")
            .is_some()
    );
    // explicitly given ones are kept as given (kubectl's client-side-apply migration)
    let mut given = after.clone();
    given["metadata"]["managedFields"] = json!([{"manager": "kubectl", "operation": "Apply",
        "apiVersion": "apps/v1", "fieldsType": "FieldsV1", "fieldsV1": {"f:spec": {"f:replicas": {}}}}]);
    let kept = record_update(Some(&after), &given, &w("m"), "Update").unwrap();
    assert_eq!(kept, given);
    let mut bad = after.clone();
    bad["metadata"]["managedFields"] =
        json!([{"manager": "x", "operation": "Apply", "fieldsV1": {"zz": {}}}]);
    assert!(matches!(
        record_update(Some(&after), &bad, &w("m"), "Update"),
        Err(ApplyError::Invalid { .. })
    ));
    let mut clear = after.clone();
    clear["metadata"]["managedFields"] = json!([{}]);
    let cleared = record_update(Some(&after), &clear, &w("m"), "Update").unwrap();
    assert!(cleared["metadata"].get("managedFields").is_none());
}

#[test]
fn status_is_separate_from_the_main_resource() {
    let mut c = cfg(1, "n");
    c["status"] = json!({"replicas": 9});
    let obj = apply(None, &c, &w("a"), false).unwrap();
    assert!(
        obj.get("status").is_none(),
        "main-resource apply ignores status"
    );
    let st = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"}, "status": {"replicas": 1}});
    let sw = Writer {
        subresource: Some("status"),
        ..w("ctl")
    };
    let obj = apply(Some(&obj), &st, &sw, false).unwrap();
    assert_eq!(obj["status"]["replicas"], 1);
    assert_eq!(obj["spec"]["replicas"], 1);
    let e = obj["metadata"]["managedFields"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["manager"] == "ctl")
        .unwrap();
    assert_eq!(e["subresource"], "status");
}

#[test]
fn custom_resources_have_atomic_lists() {
    let pp = |sel: Value| {
        json!({"apiVersion": "policy.hami.io/v1alpha1", "kind": "PropagationPolicy",
        "metadata": {"name": "pp", "finalizers": ["x"]}, "spec": {"resourceSelectors": sel}})
    };
    let obj = apply(
        None,
        &pp(json!([{"kind": "Deployment", "name": "a"}])),
        &w("a"),
        false,
    )
    .unwrap();
    assert_eq!(
        fields_of(&obj, "a")["f:spec"],
        json!({"f:resourceSelectors": {}})
    );
    assert_eq!(
        fields_of(&obj, "a")["f:metadata"],
        json!({"f:finalizers": {"v:\"x\"": {}}})
    );
    let obj = apply(
        Some(&obj),
        &pp(json!([{"kind": "Deployment", "name": "b"}])),
        &w("a"),
        false,
    )
    .unwrap();
    assert_eq!(
        obj["spec"]["resourceSelectors"],
        json!([{"kind": "Deployment", "name": "b"}])
    );
}

#[test]
fn invalid_applied_configurations() {
    assert!(matches!(
        apply(None, &json!([1]), &w("a"), false),
        Err(ApplyError::Invalid { .. })
    ));
    let mut c = cfg(1, "n");
    c["metadata"]["managedFields"] = json!([]);
    assert!(matches!(
        apply(None, &c, &w("a"), false),
        Err(ApplyError::Invalid { .. })
    ));
}

fn arb_json() -> impl Strategy<Value = Value> {
    let key = prop_oneof![
        Just("spec".to_owned()),
        Just("template".to_owned()),
        Just("containers".to_owned()),
        Just("name".to_owned()),
        Just("metadata".to_owned()),
        Just("managedFields".to_owned()),
        Just("finalizers".to_owned()),
        Just("status".to_owned()),
        Just("fieldsV1".to_owned()),
        Just("operation".to_owned()),
        Just("manager".to_owned()),
        Just("f:spec".to_owned()),
        Just("k:{\"name\":1}".to_owned()),
        Just(".".to_owned()),
        "[a-z:.]{0,5}",
    ];
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        (0i64..3).prop_map(Value::from),
        prop_oneof![Just("Apply"), Just("Update"), Just("a")].prop_map(Value::from),
    ];
    leaf.prop_recursive(6, 80, 5, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(key.clone(), inner, 0..5)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn with_gvk(mut v: Value) -> Value {
    if let Value::Object(m) = &mut v {
        m.insert("apiVersion".into(), json!("apps/v1"));
        m.insert("kind".into(), json!("Deployment"));
    }
    v
}

proptest! {
    #[test]
    fn random_input_never_panics(live in arb_json(), applied in arb_json(), force in any::<bool>()) {
        let (live, applied) = (with_gvk(live), with_gvk(applied));
        let _ = apply(Some(&live), &applied, &w("a"), force);
        let _ = apply(None, &applied, &w("a"), force);
        let _ = record_update(Some(&live), &applied, &w("b"), "Update");
        let _ = record_update(None, &live, &w("b"), "Update");
    }

    /// Applying the same configuration twice gives the same object.
    #[test]
    fn apply_is_idempotent(live in arb_json(), applied in arb_json()) {
        let (live, applied) = (with_gvk(live), with_gvk(applied));
        if let Ok(once) = apply(Some(&live), &applied, &w("a"), true) {
            let twice = apply(Some(&once), &applied, &at("a", "2031-01-01T00:00:00Z"), true).unwrap();
            prop_assert_eq!(twice, once);
        }
    }
}
