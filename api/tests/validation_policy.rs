#![allow(clippy::unwrap_used, clippy::expect_used)]
//! One table row per validation rule, through the public entry point
//! `hami_api::validate`: each row states the exact set of (field path, kind)
//! errors the object must produce, so a rule that stops firing, fires at the
//! wrong path, or hides another error fails the test.
//! This file: PropagationPolicy and OverridePolicy rules.

mod common;

use common::*;
use hami_api::FieldErrorKind::{Duplicate, Invalid, NotSupported, Required};
use serde_json::{Value, json};

#[test]
fn valid_bases_pass() {
    check(vec![
        ("pp", pp(), vec![]),
        ("op", op(), vec![]),
        ("frq", frq(), vec![]),
        ("rb", rb(), vec![]),
        ("cluster", cluster(), vec![]),
        ("work", work(), vec![]),
    ]);
}

#[test]
fn resource_selectors() {
    let sel = "/spec/resourceSelectors/0";
    check(vec![
        (
            "empty selectors",
            with(pp(), "/spec/resourceSelectors", json!([])),
            vec![("spec.resourceSelectors", Required)],
        ),
        (
            "missing kind",
            with(pp(), &format!("{sel}/kind"), json!("")),
            vec![("spec.resourceSelectors[0].kind", Required)],
        ),
        (
            "missing apiVersion",
            with(pp(), &format!("{sel}/apiVersion"), json!("")),
            vec![("spec.resourceSelectors[0].apiVersion", Required)],
        ),
        (
            "bad apiVersion",
            with(pp(), &format!("{sel}/apiVersion"), json!("a/b/c")),
            vec![("spec.resourceSelectors[0].apiVersion", Invalid)],
        ),
        (
            "bad namespace",
            with(pp(), &format!("{sel}/namespace"), json!("Bad_NS")),
            vec![("spec.resourceSelectors[0].namespace", Invalid)],
        ),
        (
            "kind absent at decode",
            with(pp(), sel, json!({"apiVersion": "v1"})),
            vec![("spec.resourceSelectors[0].kind", Required)],
        ),
        (
            "cluster policy shares the rules",
            with(
                with(pp(), "/kind", json!("ClusterPropagationPolicy")),
                "/spec/resourceSelectors",
                json!([]),
            ),
            vec![("spec.resourceSelectors", Required)],
        ),
    ]);
}

#[test]
fn label_selectors() {
    let ls = "/spec/resourceSelectors/0/labelSelector";
    let p = "spec.resourceSelectors[0].labelSelector";
    let expr = |e: Value| with(pp(), &format!("{ls}/matchExpressions"), json!([e]));
    check(vec![
        (
            "unknown operator",
            expr(json!({"key": "app", "operator": "Has"})),
            vec![(
                leak(format!("{p}.matchExpressions[0].operator")),
                NotSupported,
            )],
        ),
        (
            "In without values",
            expr(json!({"key": "app", "operator": "In"})),
            vec![(leak(format!("{p}.matchExpressions[0].values")), Required)],
        ),
        (
            "NotIn with empty values",
            expr(json!({"key": "app", "operator": "NotIn", "values": []})),
            vec![(leak(format!("{p}.matchExpressions[0].values")), Required)],
        ),
        (
            "Exists with values",
            expr(json!({"key": "app", "operator": "Exists", "values": ["a"]})),
            vec![(leak(format!("{p}.matchExpressions[0].values")), Invalid)],
        ),
        (
            "bad key",
            expr(json!({"key": "-app", "operator": "Exists"})),
            vec![(leak(format!("{p}.matchExpressions[0].key")), Invalid)],
        ),
        (
            "bad prefix",
            expr(json!({"key": "Ex_ample.com/app", "operator": "DoesNotExist"})),
            vec![(leak(format!("{p}.matchExpressions[0].key")), Invalid)],
        ),
        (
            "bad value",
            expr(json!({"key": "app", "operator": "In", "values": ["ok", "not ok"]})),
            vec![(leak(format!("{p}.matchExpressions[0].values[1]")), Invalid)],
        ),
        (
            "good selector",
            expr(json!({"key": "app.kubernetes.io/name", "operator": "In", "values": ["web", ""]})),
            vec![],
        ),
        (
            "bad matchLabels key",
            with(pp(), &format!("{ls}/matchLabels"), json!({"a/b/c": "x"})),
            vec![(leak(format!("{p}.matchLabels[a/b/c]")), Invalid)],
        ),
        (
            "bad matchLabels value",
            with(pp(), &format!("{ls}/matchLabels"), json!({"app": "-x"})),
            vec![(leak(format!("{p}.matchLabels[app]")), Invalid)],
        ),
        (
            "long label value",
            with(
                pp(),
                &format!("{ls}/matchLabels"),
                json!({"app": "v".repeat(64)}),
            ),
            vec![(leak(format!("{p}.matchLabels[app]")), Invalid)],
        ),
    ]);
}

#[test]
fn cluster_affinity() {
    let aff = "/spec/placement/clusterAffinity";
    let p = "spec.placement.clusterAffinity";
    let field = |e: Value| {
        with(
            pp(),
            &format!("{aff}/fieldSelector/matchExpressions"),
            json!([e]),
        )
    };
    check(vec![
        (
            "unknown field key",
            field(json!({"key": "color", "operator": "In", "values": ["red"]})),
            vec![(
                leak(format!("{p}.fieldSelector.matchExpressions[0].key")),
                NotSupported,
            )],
        ),
        (
            "unknown field operator",
            field(json!({"key": "region", "operator": "Exists", "values": ["x"]})),
            vec![(
                leak(format!("{p}.fieldSelector.matchExpressions[0].operator")),
                NotSupported,
            )],
        ),
        (
            "field without values",
            field(json!({"key": "zone", "operator": "NotIn"})),
            vec![(
                leak(format!("{p}.fieldSelector.matchExpressions[0].values")),
                Required,
            )],
        ),
        (
            "good field selector",
            field(json!({"key": "provider", "operator": "In", "values": ["aws"]})),
            vec![],
        ),
        (
            "duplicate cluster name",
            with(pp(), &format!("{aff}/clusterNames"), json!(["a", "b", "a"])),
            vec![(leak(format!("{p}.clusterNames[2]")), Duplicate)],
        ),
        (
            "empty cluster name",
            with(pp(), &format!("{aff}/exclude"), json!([""])),
            vec![(leak(format!("{p}.exclude[0]")), Required)],
        ),
        (
            "affinity and affinities together",
            with(
                with(pp(), &format!("{aff}/clusterNames"), json!(["a"])),
                "/spec/placement/clusterAffinities",
                json!([{"affinityName": "x"}]),
            ),
            vec![("spec.placement.clusterAffinities", Invalid)],
        ),
        (
            "duplicate and empty affinity names, nested errors",
            with(
                pp(),
                "/spec/placement/clusterAffinities",
                json!([
                    {"affinityName": "primary", "clusterNames": ["a"]},
                    {"affinityName": "primary"},
                    {"affinityName": "", "clusterNames": ["b", "b"]},
                ]),
            ),
            vec![
                (
                    "spec.placement.clusterAffinities[1].affinityName",
                    Duplicate,
                ),
                ("spec.placement.clusterAffinities[2].affinityName", Required),
                (
                    "spec.placement.clusterAffinities[2].clusterNames[1]",
                    Duplicate,
                ),
            ],
        ),
    ]);
}

#[test]
fn tolerations() {
    let t = |v: Value| with(pp(), "/spec/placement/clusterTolerations", json!([v]));
    let p = "spec.placement.clusterTolerations[0]";
    check(vec![
        (
            "unknown operator",
            t(json!({"key": "a", "operator": "Maybe"})),
            vec![(leak(format!("{p}.operator")), NotSupported)],
        ),
        (
            "Exists with value",
            t(json!({"key": "a", "operator": "Exists", "value": "v"})),
            vec![(leak(format!("{p}.value")), Invalid)],
        ),
        (
            "Equal without key",
            t(json!({"operator": "Equal", "value": "v"})),
            vec![(leak(format!("{p}.operator")), Invalid)],
        ),
        (
            "unknown effect",
            t(json!({"key": "a", "operator": "Exists", "effect": "Sometimes"})),
            vec![(leak(format!("{p}.effect")), NotSupported)],
        ),
        (
            "seconds without NoExecute",
            t(
                json!({"key": "a", "operator": "Exists", "effect": "NoSchedule", "tolerationSeconds": 5}),
            ),
            vec![(leak(format!("{p}.effect")), Invalid)],
        ),
        (
            "negative seconds",
            t(
                json!({"key": "a", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": -5}),
            ),
            vec![(leak(format!("{p}.tolerationSeconds")), Invalid)],
        ),
        (
            "bad key",
            t(json!({"key": "a b", "operator": "Exists"})),
            vec![(leak(format!("{p}.key")), Invalid)],
        ),
        (
            "tolerate everything",
            t(json!({"operator": "Exists"})),
            vec![],
        ),
    ]);
}

#[test]
fn spread_constraints() {
    let s = |v: Value| with(pp(), "/spec/placement/spreadConstraints", v);
    let p = "spec.placement.spreadConstraints";
    check(vec![
        (
            "min above max",
            s(json!([{"spreadByField": "cluster", "minGroups": 3, "maxGroups": 2}])),
            vec![(leak(format!("{p}[0].minGroups")), Invalid)],
        ),
        (
            "min equals max",
            s(json!([{"spreadByField": "cluster", "minGroups": 2, "maxGroups": 2}])),
            vec![],
        ),
        (
            "negative groups",
            s(json!([{"spreadByField": "cluster", "minGroups": -1, "maxGroups": -2}])),
            vec![
                (leak(format!("{p}[0].maxGroups")), Invalid),
                (leak(format!("{p}[0].minGroups")), Invalid),
                (leak(format!("{p}[0].minGroups")), Invalid),
            ],
        ),
        (
            "field and label",
            s(json!([{"spreadByField": "cluster", "spreadByLabel": "rack"}])),
            vec![(leak(format!("{p}[0].spreadByLabel")), Invalid)],
        ),
        (
            "neither field nor label",
            s(json!([{"maxGroups": 2}])),
            vec![(leak(format!("{p}[0].spreadByField")), Required)],
        ),
        (
            "bad label",
            s(json!([{"spreadByLabel": "not a label"}])),
            vec![(leak(format!("{p}[0].spreadByLabel")), Invalid)],
        ),
        (
            "duplicate field",
            s(json!([{"spreadByField": "cluster"}, {"spreadByField": "cluster"}])),
            vec![(leak(format!("{p}[1].spreadByField")), Duplicate)],
        ),
        (
            "region without cluster",
            s(json!([{"spreadByField": "region", "maxGroups": 2}])),
            vec![(p, Invalid)],
        ),
        (
            "region with cluster",
            s(json!([{"spreadByField": "region"}, {"spreadByField": "cluster"}])),
            vec![],
        ),
        (
            "unknown field (decode)",
            s(json!([{"spreadByField": "rack"}])),
            vec![(leak(format!("{p}[0].spreadByField")), NotSupported)],
        ),
    ]);
}

#[test]
fn replica_scheduling_and_weights() {
    let rs = "/spec/placement/replicaScheduling";
    let weights = |list: Value| {
        with(
            pp(),
            rs,
            json!({"replicaSchedulingType": "Divided", "replicaDivisionPreference": "Weighted", "weightPreference": {"staticWeightList": list}}),
        )
    };
    let p = "spec.placement.replicaScheduling.weightPreference.staticWeightList";
    let target = |name: &str| json!({"clusterNames": [name]});
    check(vec![
        (
            "negative weight",
            weights(
                json!([{"targetCluster": target("a"), "weight": -1}, {"targetCluster": target("b"), "weight": 2}]),
            ),
            vec![(leak(format!("{p}[0].weight")), Invalid)],
        ),
        (
            "zero sum",
            weights(
                json!([{"targetCluster": target("a"), "weight": 0}, {"targetCluster": target("b"), "weight": 0}]),
            ),
            vec![(p, Invalid)],
        ),
        (
            "one zero weight is fine",
            weights(
                json!([{"targetCluster": target("a"), "weight": 0}, {"targetCluster": target("b"), "weight": 1}]),
            ),
            vec![],
        ),
        (
            "overflowing sum",
            weights(
                json!([{"targetCluster": target("a"), "weight": i64::MAX}, {"targetCluster": target("b"), "weight": 1}]),
            ),
            vec![(p, Invalid)],
        ),
        (
            "bad target cluster",
            weights(json!([{"targetCluster": {"clusterNames": ["a", "a"]}, "weight": 1}])),
            vec![(
                leak(format!("{p}[0].targetCluster.clusterNames[1]")),
                Duplicate,
            )],
        ),
        (
            "unknown type (decode)",
            with(pp(), &format!("{rs}/replicaSchedulingType"), json!("Split")),
            vec![(
                "spec.placement.replicaScheduling.replicaSchedulingType",
                NotSupported,
            )],
        ),
        (
            "unknown preference (decode)",
            with(
                pp(),
                &format!("{rs}/replicaDivisionPreference"),
                json!("Random"),
            ),
            vec![(
                "spec.placement.replicaScheduling.replicaDivisionPreference",
                NotSupported,
            )],
        ),
        (
            "unknown dynamic weight (decode)",
            with(
                pp(),
                &format!("{rs}/weightPreference/dynamicWeight"),
                json!("Cost"),
            ),
            vec![(
                "spec.placement.replicaScheduling.weightPreference.dynamicWeight",
                NotSupported,
            )],
        ),
        (
            "weight not a number (decode)",
            weights(json!([{"targetCluster": target("a"), "weight": "heavy"}])),
            vec![(leak(format!("{p}[0].weight")), Invalid)],
        ),
    ]);
}

#[test]
fn failover() {
    let f = |v: Value| with(pp(), "/spec/failover/application", v);
    let p = "spec.failover.application";
    check(vec![
        (
            "graceful without period",
            f(json!({"purgeMode": "Gracefully"})),
            vec![(leak(format!("{p}.gracePeriodSeconds")), Required)],
        ),
        (
            "directly with period",
            f(json!({"purgeMode": "Directly", "gracePeriodSeconds": 30})),
            vec![(leak(format!("{p}.gracePeriodSeconds")), Invalid)],
        ),
        (
            "zero period",
            f(json!({"gracePeriodSeconds": 0})),
            vec![(leak(format!("{p}.gracePeriodSeconds")), Invalid)],
        ),
        (
            "negative toleration",
            f(json!({"decisionConditions": {"tolerationSeconds": -1}})),
            vec![(
                leak(format!("{p}.decisionConditions.tolerationSeconds")),
                Invalid,
            )],
        ),
        (
            "unknown purge mode (decode)",
            f(json!({"purgeMode": "Later"})),
            vec![(leak(format!("{p}.purgeMode")), NotSupported)],
        ),
        (
            "good",
            f(
                json!({"purgeMode": "Gracefully", "gracePeriodSeconds": 60, "decisionConditions": {"tolerationSeconds": 30}}),
            ),
            vec![],
        ),
    ]);
}

#[test]
fn every_error_is_returned_at_once() {
    let obj = with(
        with(
            with(pp(), "/spec/resourceSelectors", json!([])),
            "/spec/placement/spreadConstraints",
            json!([{"spreadByField": "cluster", "minGroups": 5, "maxGroups": 1}]),
        ),
        "/spec/placement/replicaScheduling/weightPreference/staticWeightList",
        json!([{"targetCluster": {}, "weight": -3}]),
    );
    check(vec![(
        "three problems",
        obj,
        vec![
            ("spec.resourceSelectors", Required),
            ("spec.placement.spreadConstraints[0].minGroups", Invalid),
            (
                "spec.placement.replicaScheduling.weightPreference.staticWeightList[0].weight",
                Invalid,
            ),
        ],
    )]);
}

#[test]
fn overriders() {
    let o = |field: &str, v: Value| {
        with(
            op(),
            &format!("/spec/overrideRules/0/overriders/{field}"),
            v,
        )
    };
    let p = "spec.overrideRules[0].overriders";
    check(vec![
        (
            "pointer without slash",
            o(
                "plaintext",
                json!([{"path": "spec/replicas", "operator": "replace", "value": 1}]),
            ),
            vec![(leak(format!("{p}.plaintext[0].path")), Invalid)],
        ),
        (
            "pointer with bad escape",
            o(
                "plaintext",
                json!([{"path": "/metadata/labels/a~2b", "operator": "remove"}]),
            ),
            vec![(leak(format!("{p}.plaintext[0].path")), Invalid)],
        ),
        (
            "pointer with good escape",
            o(
                "plaintext",
                json!([{"path": "/metadata/labels/a~1b", "operator": "remove"}]),
            ),
            vec![],
        ),
        (
            "empty pointer",
            o("plaintext", json!([{"path": "", "operator": "remove"}])),
            vec![(leak(format!("{p}.plaintext[0].path")), Required)],
        ),
        (
            "add without value",
            o("plaintext", json!([{"path": "/spec/x", "operator": "add"}])),
            vec![(leak(format!("{p}.plaintext[0].value")), Required)],
        ),
        (
            "remove with value",
            o(
                "plaintext",
                json!([{"path": "/spec/x", "operator": "remove", "value": 1}]),
            ),
            vec![(leak(format!("{p}.plaintext[0].value")), Invalid)],
        ),
        (
            "unknown operator (decode)",
            o(
                "plaintext",
                json!([{"path": "/spec/x", "operator": "patch", "value": 1}]),
            ),
            vec![(leak(format!("{p}.plaintext[0].operator")), NotSupported)],
        ),
        (
            "image bad predicate",
            o(
                "imageOverrider",
                json!([{"predicate": {"path": "image"}, "component": "Tag", "operator": "replace", "value": "v2"}]),
            ),
            vec![(
                leak(format!("{p}.imageOverrider[0].predicate.path")),
                Invalid,
            )],
        ),
        (
            "image replace without value",
            o(
                "imageOverrider",
                json!([{"component": "Registry", "operator": "replace"}]),
            ),
            vec![(leak(format!("{p}.imageOverrider[0].value")), Required)],
        ),
        (
            "image value with space",
            o(
                "imageOverrider",
                json!([{"component": "Registry", "operator": "replace", "value": "a b"}]),
            ),
            vec![(leak(format!("{p}.imageOverrider[0].value")), Invalid)],
        ),
        (
            "image unknown component (decode)",
            o(
                "imageOverrider",
                json!([{"component": "Digest", "operator": "replace", "value": "x"}]),
            ),
            vec![(
                leak(format!("{p}.imageOverrider[0].component")),
                NotSupported,
            )],
        ),
        (
            "command without container",
            o(
                "commandOverrider",
                json!([{"containerName": "", "operator": "add", "value": ["--x"]}]),
            ),
            vec![(
                leak(format!("{p}.commandOverrider[0].containerName")),
                Required,
            )],
        ),
        (
            "args without items",
            o(
                "argsOverrider",
                json!([{"containerName": "c", "operator": "remove"}]),
            ),
            vec![(leak(format!("{p}.argsOverrider[0].value")), Required)],
        ),
        (
            "args replace (decode)",
            o(
                "argsOverrider",
                json!([{"containerName": "c", "operator": "replace", "value": ["x"]}]),
            ),
            vec![(leak(format!("{p}.argsOverrider[0].operator")), NotSupported)],
        ),
        (
            "label bad key",
            o(
                "labelsOverrider",
                json!([{"operator": "add", "value": {"a b": "x"}}]),
            ),
            vec![(leak(format!("{p}.labelsOverrider[0].value[a b]")), Invalid)],
        ),
        (
            "label bad value",
            o(
                "labelsOverrider",
                json!([{"operator": "add", "value": {"a": "x y"}}]),
            ),
            vec![(leak(format!("{p}.labelsOverrider[0].value[a]")), Invalid)],
        ),
        (
            "label empty",
            o("labelsOverrider", json!([{"operator": "add"}])),
            vec![(leak(format!("{p}.labelsOverrider[0].value")), Required)],
        ),
        (
            "annotation value is free text",
            o(
                "annotationsOverrider",
                json!([{"operator": "add", "value": {"example.com/note": "any text at all"}}]),
            ),
            vec![],
        ),
        (
            "annotation bad key",
            o(
                "annotationsOverrider",
                json!([{"operator": "replace", "value": {"/x": "y"}}]),
            ),
            vec![(
                leak(format!("{p}.annotationsOverrider[0].value[/x]")),
                Invalid,
            )],
        ),
        (
            "target cluster checked",
            with(
                op(),
                "/spec/overrideRules/0/targetCluster",
                json!({"fieldSelector": {"matchExpressions": [{"key": "rack", "operator": "In", "values": ["1"]}]}}),
            ),
            vec![(
                "spec.overrideRules[0].targetCluster.fieldSelector.matchExpressions[0].key",
                NotSupported,
            )],
        ),
        (
            "cluster override policy shares the rules",
            with(
                with(op(), "/kind", json!("ClusterOverridePolicy")),
                "/spec/overrideRules/0/overriders/plaintext",
                json!([{"path": "x", "operator": "remove"}]),
            ),
            vec![(leak(format!("{p}.plaintext[0].path")), Invalid)],
        ),
        (
            "selectors checked",
            with(
                op(),
                "/spec/resourceSelectors",
                json!([{"apiVersion": "", "kind": "Deployment"}]),
            ),
            vec![("spec.resourceSelectors[0].apiVersion", Required)],
        ),
    ]);
}
