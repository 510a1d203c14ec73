#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Whole-engine tables: policies as users write them (JSON of the API
//! objects), selection, order, cluster targeting, errors and the summary.

use hami_api::Cluster;
use hami_api::override_policy::{ClusterOverridePolicy, OverridePolicy};
use hami_overrides::{
    AppliedOverride, Cause, OverrideError, Overrider, PolicyRef, applicable_policies,
    applied_annotation, apply_overrides,
};
use serde_json::{Value, json};

fn cop(name: &str, spec: Value) -> ClusterOverridePolicy {
    serde_json::from_value(json!({
        "apiVersion": "policy.hami.io/v1alpha1", "kind": "ClusterOverridePolicy",
        "metadata": {"name": name}, "spec": spec,
    }))
    .unwrap()
}

fn op(ns: &str, name: &str, spec: Value) -> OverridePolicy {
    serde_json::from_value(json!({
        "apiVersion": "policy.hami.io/v1alpha1", "kind": "OverridePolicy",
        "metadata": {"name": name, "namespace": ns}, "spec": spec,
    }))
    .unwrap()
}

fn cluster(name: &str, labels: Value, mut spec: Value) -> Cluster {
    spec["syncMode"] = json!("Pull");
    serde_json::from_value(json!({
        "apiVersion": "cluster.hami.io/v1alpha1", "kind": "Cluster",
        "metadata": {"name": name, "labels": labels}, "spec": spec,
    }))
    .unwrap()
}

fn deployment() -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "prod", "labels": {"app": "web"}},
        "spec": {"replicas": 3, "template": {"spec": {"containers": [
            {"name": "main", "image": "nginx:1.25", "args": ["--port=80"]},
        ]}}},
    })
}

const DEPLOY_SEL: &str = r#"{"apiVersion": "apps/v1", "kind": "Deployment"}"#;

fn sel_kind() -> Value {
    serde_json::from_str(DEPLOY_SEL).unwrap()
}

fn set_label(value: &str) -> Value {
    json!([{"overriders": {"labelsOverrider": [{"operator": "add", "value": {"tier": value}}]}}])
}

fn refs<'a>(cops: &'a [ClusterOverridePolicy], ops: &'a [OverridePolicy]) -> Vec<PolicyRef<'a>> {
    ops.iter()
        .map(PolicyRef::from)
        .chain(cops.iter().map(PolicyRef::from))
        .collect()
}

fn run(
    cops: &[ClusterOverridePolicy],
    ops: &[OverridePolicy],
    c: &Cluster,
) -> Result<(Value, Vec<AppliedOverride>), OverrideError> {
    let all = refs(cops, ops);
    let ordered = applicable_policies(&deployment(), &all);
    apply_overrides(&deployment(), c, &ordered)
}

fn plain() -> Cluster {
    cluster("member1", json!({}), json!({}))
}

#[test]
fn namespaced_policy_wins_over_cluster_policy() {
    // Listed namespaced first: the order comes from scope, not the list.
    let ops = [op("prod", "a", json!({"overrideRules": set_label("ns")}))];
    let cops = [cop(
        "z",
        json!({"resourceSelectors": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"}], "overrideRules": set_label("cluster")}),
    )];
    let (m, applied) = run(&cops, &ops, &plain()).unwrap();
    assert_eq!(m.pointer("/metadata/labels/tier"), Some(&json!("ns")));
    let order: Vec<&str> = applied.iter().map(|a| a.kind).collect();
    assert_eq!(order, ["ClusterOverridePolicy", "OverridePolicy"]);
}

#[test]
fn by_name_beats_by_label_beats_by_kind_in_one_scope() {
    let kind = op(
        "prod",
        "c-kind",
        json!({"resourceSelectors": [sel_kind()], "overrideRules": set_label("kind")}),
    );
    let label = op(
        "prod",
        "b-label",
        json!({"resourceSelectors": [{"apiVersion": "apps/v1", "kind": "Deployment", "labelSelector": {"matchLabels": {"app": "web"}}}], "overrideRules": set_label("label")}),
    );
    let name = op(
        "prod",
        "a-name",
        json!({"resourceSelectors": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"}], "overrideRules": set_label("name")}),
    );
    // Names sort the other way round, so only specificity explains the result.
    let (m, applied) = run(&[], &[name.clone(), label.clone(), kind.clone()], &plain()).unwrap();
    assert_eq!(m.pointer("/metadata/labels/tier"), Some(&json!("name")));
    let names: Vec<&str> = applied.iter().map(|a| a.name.as_str()).collect();
    assert_eq!(names, ["c-kind", "b-label", "a-name"]);
    let (m, _) = run(&[], &[kind.clone(), label], &plain()).unwrap();
    assert_eq!(m.pointer("/metadata/labels/tier"), Some(&json!("label")));
    // Same specificity: by name, so "d" runs after "c-kind" and wins.
    let d = op(
        "prod",
        "d-kind",
        json!({"resourceSelectors": [sel_kind()], "overrideRules": set_label("d")}),
    );
    let (m, _) = run(&[], &[d, kind], &plain()).unwrap();
    assert_eq!(m.pointer("/metadata/labels/tier"), Some(&json!("d")));
}

#[test]
fn policies_that_do_not_select_the_template_are_skipped() {
    let elsewhere = op("dev", "x", json!({"overrideRules": set_label("dev")}));
    let other_kind = cop(
        "y",
        json!({"resourceSelectors": [{"apiVersion": "apps/v1", "kind": "StatefulSet"}], "overrideRules": set_label("sts")}),
    );
    let (m, applied) = run(&[other_kind], &[elsewhere], &plain()).unwrap();
    assert_eq!(m, deployment());
    assert!(applied.is_empty());
}

#[test]
fn cluster_targeting_table() {
    let gpu_east = cluster(
        "gpu-east",
        json!({"gpu": "a100", "env": "prod"}),
        json!({"provider": "aws", "region": "us-east-1", "zone": "us-east-1a"}),
    );
    let cpu_west = cluster(
        "cpu-west",
        json!({"env": "dev"}),
        json!({"provider": "gcp", "region": "us-west1"}),
    );
    let bare = cluster("bare", json!({}), json!({}));
    let cases: Vec<(&str, Value, [bool; 3])> = vec![
        ("no targetCluster: all", Value::Null, [true, true, true]),
        (
            "names",
            json!({"clusterNames": ["gpu-east", "bare"]}),
            [true, false, true],
        ),
        ("exclude", json!({"exclude": ["bare"]}), [true, true, false]),
        (
            "names and exclude",
            json!({"clusterNames": ["gpu-east", "bare"], "exclude": ["gpu-east"]}),
            [false, false, true],
        ),
        (
            "matchLabels",
            json!({"labelSelector": {"matchLabels": {"gpu": "a100"}}}),
            [true, false, false],
        ),
        (
            "matchExpressions NotIn",
            json!({"labelSelector": {"matchExpressions": [{"key": "env", "operator": "NotIn", "values": ["prod"]}]}}),
            [false, true, true],
        ),
        (
            "provider In",
            json!({"fieldSelector": {"matchExpressions": [{"key": "provider", "operator": "In", "values": ["aws", "gcp"]}]}}),
            [true, true, false],
        ),
        (
            "region NotIn",
            json!({"fieldSelector": {"matchExpressions": [{"key": "region", "operator": "NotIn", "values": ["us-east-1"]}]}}),
            [false, true, true],
        ),
        (
            "zone In (spec.zone)",
            json!({"fieldSelector": {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["us-east-1a"]}]}}),
            [true, false, false],
        ),
        (
            "labels and fields both hold",
            json!({"labelSelector": {"matchLabels": {"env": "dev"}}, "fieldSelector": {"matchExpressions": [{"key": "provider", "operator": "In", "values": ["aws"]}]}}),
            [false, false, false],
        ),
    ];
    for (name, target, want) in cases {
        let mut rule = json!({"overriders": {"imageOverrider": [{"component": "Registry", "operator": "replace", "value": "mirror.local"}]}});
        if !target.is_null() {
            rule["targetCluster"] = target;
        }
        let p = [cop("p", json!({"overrideRules": [rule]}))];
        for (c, want) in [&gpu_east, &cpu_west, &bare].into_iter().zip(want) {
            let (m, applied) = run(&p, &[], c).unwrap();
            let image = m.pointer("/spec/template/spec/containers/0/image").unwrap();
            let expected = if want {
                "mirror.local/library/nginx:1.25"
            } else {
                "nginx:1.25"
            };
            assert_eq!(image, expected, "{name} on {:?}", c.metadata.name);
            assert_eq!(
                applied.len(),
                usize::from(want),
                "{name} on {:?}",
                c.metadata.name
            );
        }
    }
}

#[test]
fn a_registry_per_cluster_and_the_summary() {
    let p = cop(
        "registries",
        json!({"resourceSelectors": [sel_kind()], "overrideRules": [
            {"targetCluster": {"clusterNames": ["a"]}, "overriders": {"imageOverrider": [{"component": "Registry", "operator": "add", "value": "reg-a.example"}]}},
            {"targetCluster": {"clusterNames": ["b"]}, "overriders": {"imageOverrider": [{"component": "Registry", "operator": "add", "value": "reg-b.example"}]}},
            {"overriders": {"argsOverrider": [{"containerName": "main", "operator": "add", "value": ["--gpu"]}]}},
        ]}),
    );
    let local = op(
        "prod",
        "tag",
        json!({"overrideRules": [{"targetCluster": {"clusterNames": ["b"]}, "overriders": {"imageOverrider": [{"component": "Tag", "operator": "replace", "value": "1.27"}]}}]}),
    );
    let cops = [p];
    let ops = [local];
    let (a, applied_a) = run(&cops, &ops, &cluster("a", json!({}), json!({}))).unwrap();
    let (b, applied_b) = run(&cops, &ops, &cluster("b", json!({}), json!({}))).unwrap();
    assert_eq!(
        a.pointer("/spec/template/spec/containers/0/image"),
        Some(&json!("reg-a.example/library/nginx:1.25"))
    );
    assert_eq!(
        b.pointer("/spec/template/spec/containers/0/image"),
        Some(&json!("reg-b.example/library/nginx:1.27"))
    );
    assert_eq!(
        a.pointer("/spec/template/spec/containers/0/args"),
        Some(&json!(["--port=80", "--gpu"]))
    );
    assert_eq!(
        applied_annotation(&applied_a),
        r#"[{"kind":"ClusterOverridePolicy","name":"registries","rules":[0,2]}]"#
    );
    assert_eq!(
        applied_annotation(&applied_b),
        r#"[{"kind":"ClusterOverridePolicy","name":"registries","rules":[1,2]},{"kind":"OverridePolicy","name":"tag","namespace":"prod","rules":[0]}]"#
    );
    assert_eq!(applied_annotation(&[]), "[]");
}

#[test]
fn errors_name_policy_rule_overrider_and_path() {
    let bad = op(
        "prod",
        "bad",
        json!({"overrideRules": [
            {"targetCluster": {"clusterNames": ["other"]}, "overriders": {}},
            {"overriders": {
                "labelsOverrider": [{"operator": "add", "value": {"a": "b"}}],
                "plaintext": [
                    {"path": "/spec/replicas", "operator": "replace", "value": 1},
                    {"path": "/spec/strategy/type", "operator": "replace", "value": "Recreate"},
                ],
            }},
        ]}),
    );
    let err = run(&[], &[bad], &plain()).unwrap_err();
    assert_eq!(
        err,
        OverrideError {
            policy: "OverridePolicy/prod/bad".into(),
            rule: 1,
            overrider: Overrider::Plaintext,
            index: 1,
            path: "/spec/strategy/type".into(),
            cause: Cause::Patch("path is invalid".into()),
        }
    );
    let msg = err.to_string();
    assert!(
        msg.starts_with(r#"OverridePolicy/prod/bad: overrideRules[1].overriders.plaintext[1] at "/spec/strategy/type": JSON patch failed"#),
        "{msg}"
    );
}

#[test]
fn image_error_in_a_cluster_policy() {
    let p = cop(
        "tags",
        json!({"overrideRules": [{"overriders": {"imageOverrider": [{"component": "Tag", "operator": "replace", "value": "not a tag"}]}}]}),
    );
    let err = run(&[p], &[], &plain()).unwrap_err();
    assert_eq!(err.policy, "ClusterOverridePolicy/tags");
    assert_eq!(
        (err.rule, err.overrider, err.index),
        (0, Overrider::Image, 0)
    );
    assert_eq!(err.path, "/spec/template/spec/containers/0/image");
    assert!(matches!(err.cause, Cause::Image { .. }), "{:?}", err.cause);
}

#[test]
fn unknown_container_is_a_no_op_but_recorded() {
    let p = op(
        "prod",
        "p",
        json!({"overrideRules": [{"overriders": {"commandOverrider": [{"containerName": "sidecar", "operator": "add", "value": ["x"]}]}}]}),
    );
    let (m, applied) = run(&[], &[p], &plain()).unwrap();
    assert_eq!(m, deployment());
    assert_eq!(applied.len(), 1);
}

#[test]
fn overriders_of_a_rule_run_image_first_and_plaintext_last() {
    // The plaintext replaces the image after the imageOverrider has run, so
    // the plaintext value stands.
    let p = op(
        "prod",
        "p",
        json!({"overrideRules": [{"overriders": {
            "plaintext": [{"path": "/spec/template/spec/containers/0/image", "operator": "replace", "value": "busybox"}],
            "imageOverrider": [{"component": "Tag", "operator": "replace", "value": "9"}],
        }}]}),
    );
    let (m, _) = run(&[], &[p], &plain()).unwrap();
    assert_eq!(
        m.pointer("/spec/template/spec/containers/0/image"),
        Some(&json!("busybox"))
    );
}
