use hami_api::override_policy::OverrideSpec;
use hami_overrides::{Scope, applicable_policies};
use serde_json::json;

use super::*;

fn template() -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": "train", "namespace": "default",
            "uid": "u-1", "resourceVersion": "42", "generation": 3,
            "creationTimestamp": "2025-01-01T00:00:00Z",
            "managedFields": [{"manager": "kubectl"}],
            "ownerReferences": [{"kind": "X", "name": "y"}],
            "finalizers": ["f"],
            "labels": {"app": "train"},
            "annotations": {"note": "kept"},
        },
        "spec": {"replicas": 6, "template": {"spec": {"containers": [
            {"name": "main", "image": "hub.local/ml/trainer:1"}
        ]}}},
        "status": {"readyReplicas": 6},
    })
}

fn binding() -> BindingRef {
    BindingRef {
        namespace: Some("default".into()),
        name: "train-deployment".into(),
    }
}

fn target(name: &str, replicas: i32) -> TargetCluster {
    TargetCluster {
        name: name.into(),
        replicas,
    }
}

fn view(name: &str, region: &str) -> ClusterView {
    let mut v = ClusterView::new(name);
    v.labels.insert("region".into(), region.into());
    v
}

/// A rule per region label: its own image registry.
fn registry_policy() -> OverrideSpec {
    serde_json::from_value(json!({
        "resourceSelectors": [{"apiVersion": "apps/v1", "kind": "Deployment"}],
        "overrideRules": [
            {"targetCluster": {"labelSelector": {"matchLabels": {"region": "eu"}}},
             "overriders": {"imageOverrider": [{"component": "Registry", "operator": "replace", "value": "eu.registry.io"}]}},
            {"targetCluster": {"labelSelector": {"matchLabels": {"region": "us"}}},
             "overriders": {"imageOverrider": [{"component": "Registry", "operator": "replace", "value": "us.registry.io"}]}},
        ],
    }))
    .unwrap()
}

fn image(work: &Value) -> &str {
    work.pointer("/spec/workload/manifests/0/spec/template/spec/containers/0/image")
        .and_then(Value::as_str)
        .unwrap()
}

#[test]
fn binding_annotation_round_trips() {
    let cases = [
        (
            "default/web-deployment",
            Some(("default", "web-deployment")),
        ),
        ("gpus-clusterrole", None),
        ("", None),
        ("/x", None),
        ("a/", None),
        ("a/b/c", None),
    ];
    for (text, want) in cases {
        let got = BindingRef::from_annotation(text);
        match (want, text) {
            (Some((ns, name)), _) => {
                let g = got.unwrap();
                assert_eq!((g.namespace.as_deref(), g.name.as_str()), (Some(ns), name));
                assert_eq!(g.annotation(), text);
            }
            (None, "gpus-clusterrole") => {
                assert_eq!(got.unwrap().namespace, None, "cluster binding");
            }
            (None, _) => assert_eq!(got, None, "{text:?}"),
        }
    }
}

#[test]
fn work_names_are_stable_distinct_and_bounded() {
    let a = work_name(&binding());
    assert_eq!(a, work_name(&binding()), "deterministic");
    assert!(a.starts_with("train-deployment-") && a.len() == "train-deployment-".len() + 8);
    let other_ns = BindingRef {
        namespace: Some("prod".into()),
        ..binding()
    };
    assert_ne!(a, work_name(&other_ns), "same name, other namespace");
    let cluster_scoped = BindingRef {
        namespace: None,
        name: "train-deployment".into(),
    };
    assert_ne!(a, work_name(&cluster_scoped));
    let long = BindingRef {
        namespace: Some("ns".into()),
        name: format!("{}-{}", "a".repeat(243), "b".repeat(9)),
    };
    let n = work_name(&long);
    assert!(n.len() <= 253, "{}", n.len());
    assert!(
        !n.contains("--"),
        "trailing dash trimmed before the suffix: {n}"
    );
}

#[test]
fn manifest_strips_server_fields_and_sets_replicas() {
    let m = cluster_manifest(&template(), true, 4);
    assert_eq!(m.get("status"), None);
    let meta = m["metadata"].as_object().unwrap();
    for f in SERVER_METADATA {
        assert!(!meta.contains_key(f), "{f} kept");
    }
    assert_eq!(meta["labels"], json!({"app": "train"}));
    assert_eq!(meta["annotations"], json!({"note": "kept"}));
    assert_eq!(m["spec"]["replicas"], 4);

    // Duplicated: every cluster runs the template's count.
    assert_eq!(
        cluster_manifest(&template(), false, 4)["spec"]["replicas"],
        6
    );

    // Per kind: which field carries replicas, and kinds without one.
    let cases = [
        (
            json!({"kind": "StatefulSet", "spec": {}}),
            "/spec/replicas",
            Some(2),
        ),
        (json!({"kind": "ReplicaSet"}), "/spec/replicas", Some(2)),
        (
            json!({"kind": "Job", "spec": {"parallelism": 5}}),
            "/spec/parallelism",
            Some(2),
        ),
        (
            json!({"kind": "Widget", "spec": {"replicas": 5}}),
            "/spec/replicas",
            Some(2),
        ),
        (
            json!({"kind": "DaemonSet", "spec": {}}),
            "/spec/replicas",
            None,
        ),
        (json!({"kind": "ConfigMap", "data": {}}), "/spec", None),
    ];
    for (t, path, want) in cases {
        let m = cluster_manifest(&t, true, 2);
        assert_eq!(
            m.pointer(path).and_then(Value::as_i64),
            want.map(i64::from),
            "{t}"
        );
    }
}

#[test]
fn each_cluster_gets_its_replicas_and_its_registry() {
    let spec = registry_policy();
    let refs = [PolicyRef {
        scope: Scope::Namespace("default"),
        name: "registries",
        spec: &spec,
    }];
    let t = template();
    let ordered = applicable_policies(&t, &refs);
    let (ta, tb, tc) = (target("a", 4), target("b", 2), target("c", 1));
    let (va, vb, vc) = (view("a", "eu"), view("b", "us"), view("c", "ap"));
    let input = BindingInput {
        binding: &binding(),
        template: &t,
        divided: true,
    };
    let works: Vec<DesiredWork> =
        desired_works(&input, &[(&ta, &va), (&tb, &vb), (&tc, &vc)], &ordered)
            .into_iter()
            .map(Result::unwrap)
            .collect();
    let got: Vec<(&str, &str, i64, &str)> = works
        .iter()
        .map(|w| {
            (
                w.namespace.as_str(),
                w.cluster.as_str(),
                w.object
                    .pointer("/spec/workload/manifests/0/spec/replicas")
                    .and_then(Value::as_i64)
                    .unwrap(),
                image(&w.object),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("hami-es-a", "a", 4, "eu.registry.io/ml/trainer:1"),
            ("hami-es-b", "b", 2, "us.registry.io/ml/trainer:1"),
            ("hami-es-c", "c", 1, "hub.local/ml/trainer:1"),
        ]
    );
    let w = &works[0].object;
    assert_eq!(w["metadata"]["name"], json!(work_name(&binding())));
    assert_eq!(
        w["metadata"]["labels"],
        json!({
            LABEL_RB_NAMESPACE: "default",
            LABEL_RB_NAME: "train-deployment",
            LABEL_TEMPLATE_UID: "u-1",
        })
    );
    let ann = &w["metadata"]["annotations"];
    assert_eq!(ann[BINDING_ANNOTATION], "default/train-deployment");
    assert_eq!(ann[TEMPLATE_GENERATION_ANNOTATION], "3");
    assert!(
        ann[APPLIED_OVERRIDES_ANNOTATION]
            .as_str()
            .unwrap()
            .contains("registries")
    );
    assert_eq!(
        works[2].object["metadata"]["annotations"].get(APPLIED_OVERRIDES_ANNOTATION),
        None,
        "no rule targeted c"
    );
    assert_eq!(works[0].applied.len(), 1);
    assert!(works[2].applied.is_empty());
}

#[test]
fn a_failing_override_fails_only_its_cluster() {
    let spec: OverrideSpec = serde_json::from_value(json!({
        "overrideRules": [{
            "targetCluster": {"clusterNames": ["b"]},
            "overriders": {"plaintext": [{"path": "/spec/missing/deep", "operator": "remove"}]},
        }],
    }))
    .unwrap();
    let refs = [PolicyRef {
        scope: Scope::Cluster,
        name: "broken",
        spec: &spec,
    }];
    let t = template();
    let (ta, tb) = (target("a", 1), target("b", 1));
    let (va, vb) = (view("a", "eu"), view("b", "us"));
    let out = desired_works(
        &BindingInput {
            binding: &binding(),
            template: &t,
            divided: false,
        },
        &[(&ta, &va), (&tb, &vb)],
        &refs,
    );
    assert!(out[0].is_ok());
    let err = out[1].as_ref().unwrap_err();
    assert_eq!(err.cluster, "b");
    assert!(err.error.to_string().contains("broken"), "{}", err.error);
}

#[test]
fn update_replaces_spec_and_owned_metadata_only() {
    let t = template();
    let (ta, va) = (target("a", 2), view("a", "eu"));
    let desired = desired_works(
        &BindingInput {
            binding: &binding(),
            template: &t,
            divided: true,
        },
        &[(&ta, &va)],
        &[],
    )
    .remove(0)
    .unwrap()
    .object;
    let mut current = desired.clone();
    current["metadata"]["uid"] = json!("w-1");
    current["metadata"]["labels"]["team"] = json!("ml");
    current["status"] = json!({"conditions": [{"type": "Applied", "status": "True"}]});
    assert_eq!(
        updated_work(&current, &desired),
        None,
        "unchanged: no write"
    );

    let mut stale = current.clone();
    stale["spec"]["workload"]["manifests"][0]["spec"]["replicas"] = json!(9);
    stale["metadata"]["annotations"][APPLIED_OVERRIDES_ANNOTATION] = json!("[old]");
    let new = updated_work(&stale, &desired).unwrap();
    assert_eq!(new["spec"], desired["spec"]);
    assert_eq!(new["status"], current["status"], "status kept");
    assert_eq!(new["metadata"]["uid"], "w-1");
    assert_eq!(
        new["metadata"]["labels"]["team"], "ml",
        "foreign label kept"
    );
    assert_eq!(
        new["metadata"]["annotations"].get(APPLIED_OVERRIDES_ANNOTATION),
        None,
        "stale override annotation removed"
    );
}
