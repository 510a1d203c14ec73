#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Property tests: random manifests and random overriders never panic, an
//! accepted result is still an object, no rule means no change, and image
//! references round-trip through parse, edit and display.

use hami_api::override_policy::{
    CommandArgsOperator, CommandArgsOverrider, ImageComponent, ImageOverrider, ImagePredicate,
    LabelAnnotationOverrider, OverrideSpec, OverriderOperator, Overriders, PlaintextOverrider,
    RuleWithCluster,
};
use hami_api::propagation::{ClusterAffinity, ResourceSelector};
use hami_overrides::{ImageRef, PolicyRef, Scope, applicable_policies, apply_overrides_to};
use hami_placement::ClusterView;
use proptest::prelude::*;
use serde_json::{Map, Value};

const KEYS: &[&str] = &[
    "apiVersion",
    "kind",
    "metadata",
    "name",
    "namespace",
    "labels",
    "annotations",
    "spec",
    "template",
    "jobTemplate",
    "containers",
    "initContainers",
    "image",
    "command",
    "args",
    "replicas",
    "0",
    "-",
    "a/b",
    "~",
];
const STRINGS: &[&str] = &[
    "",
    "nginx",
    "nginx:1.25",
    "docker.io/library/nginx",
    "reg.io:5000/a/b:v1",
    "localhost/app@sha256:50d858e0985ecc7f60418aaf0cc5ab587f42c2570a884095a9e8ccacd0f6545c",
    "Bad Image",
    "main",
    "Deployment",
    "Pod",
    "CronJob",
    "apps/v1",
    "prod",
    "/",
    ":",
    "@",
];
const POINTERS: &[&str] = &[
    "",
    "/",
    "/spec",
    "/spec/replicas",
    "/metadata/labels/x",
    "/metadata/labels",
    "/spec/template/spec/containers/0/image",
    "/spec/template/spec/containers/-",
    "/spec/template/spec/containers/99",
    "/a~1b",
    "/~2",
    "spec",
    "/spec/0/-/x",
    "/spec/template/spec/containers/0/args/-",
];
const KINDS: &[&str] = &[
    "Deployment",
    "Pod",
    "CronJob",
    "Job",
    "StatefulSet",
    "Widget",
    "",
];

fn pick(list: &'static [&'static str]) -> impl Strategy<Value = String> {
    prop::sample::select(list).prop_map(str::to_string)
}

fn any_string() -> impl Strategy<Value = String> {
    prop_oneof![pick(STRINGS), "[a-zA-Z0-9.:/@_~\\[\\] -]{0,24}"]
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any_string().prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::vec((pick(KEYS), inner), 0..6)
                .prop_map(|kv| Value::Object(kv.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// A workload with containers, or anything at all.
fn manifest() -> impl Strategy<Value = Value> {
    let container = (pick(&["main", "side", "x"]), any_string(), json_value())
        .prop_map(|(n, img, args)| serde_json::json!({"name": n, "image": img, "args": args}));
    let workload = (
        pick(KINDS),
        prop::collection::vec(container, 0..3),
        json_value(),
        json_value(),
    )
        .prop_map(|(kind, cs, labels, extra)| {
            serde_json::json!({
                "apiVersion": "apps/v1", "kind": kind,
                "metadata": {"name": "web", "namespace": "prod", "labels": labels},
                "spec": {"containers": cs.clone(), "extra": extra,
                         "template": {"spec": {"containers": cs.clone(), "initContainers": cs.clone()}},
                         "jobTemplate": {"spec": {"template": {"spec": {"containers": cs}}}}},
            })
        });
    prop_oneof![3 => workload, 1 => json_value()]
}

fn operator() -> impl Strategy<Value = OverriderOperator> {
    prop::sample::select(vec![
        OverriderOperator::Add,
        OverriderOperator::Remove,
        OverriderOperator::Replace,
    ])
}

fn component() -> impl Strategy<Value = ImageComponent> {
    prop::sample::select(vec![
        ImageComponent::Registry,
        ImageComponent::Repository,
        ImageComponent::Tag,
    ])
}

fn command_args() -> impl Strategy<Value = CommandArgsOverrider> {
    (
        pick(&["main", "side", "nope"]),
        prop::sample::select(vec![CommandArgsOperator::Add, CommandArgsOperator::Remove]),
        prop::collection::vec(any_string(), 0..3),
    )
        .prop_map(|(container_name, operator, value)| CommandArgsOverrider {
            container_name,
            operator,
            value,
        })
}

fn label_annotation() -> impl Strategy<Value = LabelAnnotationOverrider> {
    (
        operator(),
        prop::collection::btree_map(any_string(), any_string(), 0..3),
    )
        .prop_map(|(operator, value)| LabelAnnotationOverrider { operator, value })
}

fn overriders() -> impl Strategy<Value = Overriders> {
    let plaintext = (pick(POINTERS), operator(), prop::option::of(json_value())).prop_map(
        |(path, operator, value)| PlaintextOverrider {
            path,
            operator,
            value,
        },
    );
    let image = (
        prop::option::of(pick(POINTERS)),
        component(),
        operator(),
        prop::option::of(any_string()),
    )
        .prop_map(|(p, component, operator, value)| ImageOverrider {
            predicate: p.map(|path| ImagePredicate { path }),
            component,
            operator,
            value,
        });
    (
        prop::collection::vec(plaintext, 0..3),
        prop::collection::vec(image, 0..3),
        prop::collection::vec(command_args(), 0..2),
        prop::collection::vec(command_args(), 0..2),
        prop::collection::vec(label_annotation(), 0..2),
        prop::collection::vec(label_annotation(), 0..2),
    )
        .prop_map(
            |(
                plaintext,
                image_overrider,
                command_overrider,
                args_overrider,
                labels_overrider,
                annotations_overrider,
            )| {
                Overriders {
                    plaintext,
                    image_overrider,
                    command_overrider,
                    args_overrider,
                    labels_overrider,
                    annotations_overrider,
                }
            },
        )
}

fn spec() -> impl Strategy<Value = OverrideSpec> {
    let selector =
        (pick(KINDS), prop::option::of(pick(&["web", "api"]))).prop_map(|(kind, name)| {
            ResourceSelector {
                api_version: "apps/v1".into(),
                kind,
                name,
                ..Default::default()
            }
        });
    let target = prop::option::of(prop::collection::vec(pick(&["c1", "c2"]), 0..2).prop_map(
        |names| ClusterAffinity {
            cluster_names: names,
            ..Default::default()
        },
    ));
    let rule = (target, overriders()).prop_map(|(target_cluster, overriders)| RuleWithCluster {
        target_cluster,
        overriders,
    });
    (
        prop::collection::vec(selector, 0..2),
        prop::collection::vec(rule, 0..3),
    )
        .prop_map(|(resource_selectors, override_rules)| OverrideSpec {
            resource_selectors,
            override_rules,
        })
}

proptest! {

    #[test]
    fn random_policies_never_panic(
        m in manifest(),
        specs in prop::collection::vec((any::<bool>(), pick(&["a", "b", "c"]), spec()), 0..4),
    ) {
        let refs: Vec<PolicyRef<'_>> = specs
            .iter()
            .map(|(cluster, name, spec)| PolicyRef {
                scope: if *cluster { Scope::Cluster } else { Scope::Namespace("prod") },
                name,
                spec,
            })
            .collect();
        let ordered = applicable_policies(&m, &refs);
        prop_assert!(ordered.len() <= refs.len());
        for c in [ClusterView::new("c1"), ClusterView::new("c2")] {
            if let Ok((out, applied)) = apply_overrides_to(&m, &c, &ordered) {
                prop_assert!(out.is_object() || !m.is_object(), "{out}");
                prop_assert!(applied.len() <= ordered.len());
            }
        }
    }

    #[test]
    fn no_rule_no_change(m in manifest()) {
        let empty = OverrideSpec::default();
        let refs = [PolicyRef { scope: Scope::Cluster, name: "x", spec: &empty }];
        let (out, applied) = apply_overrides_to(&m, &ClusterView::new("c1"), &refs).unwrap();
        prop_assert_eq!(out, m);
        prop_assert!(applied.is_empty());
    }

    #[test]
    fn image_parse_round_trips(s in "[a-z0-9.:/@_\\[\\]-]{0,40}|[a-zA-Z0-9 .:/@_-]{0,40}") {
        if let Ok(r) = ImageRef::parse(&s) {
            prop_assert_eq!(r.to_string(), s);
        }
    }

    #[test]
    fn image_edits_yield_valid_images(
        s in prop_oneof![pick(STRINGS), "[a-z0-9]{1,6}(\\.[a-z]{2,3}(:[0-9]{1,5})?/)?[a-z0-9]{1,6}(/[a-z0-9]{1,4})?(:[a-zA-Z0-9._-]{1,8})?"],
        c in component(),
        op in operator(),
        v in prop::option::of(any_string()),
    ) {
        if let Ok(mut r) = ImageRef::parse(&s)
            && r.edit(c, op, v.as_deref()).is_ok()
        {
            let text = r.to_string();
            prop_assert_eq!(ImageRef::parse(&text), Ok(r), "{}", text);
        }
    }
}

#[test]
fn labels_of_other_types_are_not_selected() {
    // A template whose labels are not strings still gets policies without
    // label selectors, and never panics.
    let m = serde_json::json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"namespace": "prod", "labels": {"a": 1}}});
    let spec = OverrideSpec::default();
    let refs = [PolicyRef {
        scope: Scope::Namespace("prod"),
        name: "x",
        spec: &spec,
    }];
    assert_eq!(applicable_policies(&m, &refs).len(), 1);
}
