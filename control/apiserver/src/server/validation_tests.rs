//! One table per rule: each case names the exact field, cause type and
//! message kube-apiserver gives.

use serde_json::{Value, json};

use super::builtin;

/// (field, cause type, message) of every cause, in order.
fn causes(group: &str, kind: &str, object: &Value) -> Vec<(String, String, String)> {
    builtin(group, kind, object)
        .into_iter()
        .map(|c| (c.field, c.reason, c.message))
        .collect()
}

fn one(field: &str, reason: &str, message: &str) -> (String, String, String) {
    (field.to_owned(), reason.to_owned(), message.to_owned())
}

fn container(name: &str) -> Value {
    json!({"name": name, "image": "nginx:1"})
}

fn with_resources(requests: Value, limits: Value) -> Value {
    json!({"name": "main", "image": "nginx:1", "resources": {"requests": requests, "limits": limits}})
}

fn pod(containers: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {"containers": containers}})
}

fn deployment(spec: Value) -> Value {
    json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"}, "spec": spec})
}

fn workload_spec(containers: Value) -> Value {
    json!({
        "replicas": 2,
        "selector": {"matchLabels": {"app": "web"}},
        "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": containers}}
    })
}

fn pod_causes(containers: Value) -> Vec<(String, String, String)> {
    causes("", "Pod", &pod(containers))
}

#[test]
fn valid_objects_have_no_causes() {
    let spec = workload_spec(json!([with_resources(
        json!({"cpu": "500m", "memory": "1Gi", "nvidia.com/gpu": 1}),
        json!({"cpu": "1", "memory": "1Gi", "nvidia.com/gpu": "1"})
    )]));
    for (group, kind) in [
        ("apps", "Deployment"),
        ("apps", "ReplicaSet"),
        ("apps", "StatefulSet"),
        ("apps", "DaemonSet"),
        ("batch", "Job"),
    ] {
        let object = json!({"kind": kind, "spec": spec});
        assert_eq!(causes(group, kind, &object), vec![], "{kind}");
    }
    assert_eq!(pod_causes(json!([container("web")])), vec![]);
    // Kinds without these rules, and hami's own kinds, are left alone.
    assert_eq!(causes("", "ConfigMap", &json!({"data": {}})), vec![]);
    assert_eq!(
        causes("policy.hami.io", "PropagationPolicy", &json!({})),
        vec![]
    );
}

#[test]
fn replicas_and_counts_are_not_negative() {
    let mut spec = workload_spec(json!([container("web")]));
    spec["replicas"] = json!(-5);
    let want = one(
        "spec.replicas",
        "FieldValueInvalid",
        "Invalid value: -5: must be greater than or equal to 0",
    );
    for kind in ["Deployment", "ReplicaSet", "StatefulSet"] {
        let object = json!({"spec": spec});
        assert_eq!(causes("apps", kind, &object), vec![want.clone()], "{kind}");
    }
    let job = json!({"spec": {
        "parallelism": -1, "completions": -2,
        "template": {"spec": {"containers": [container("work")]}}
    }});
    assert_eq!(
        causes("batch", "Job", &job),
        vec![
            one(
                "spec.parallelism",
                "FieldValueInvalid",
                "Invalid value: -1: must be greater than or equal to 0"
            ),
            one(
                "spec.completions",
                "FieldValueInvalid",
                "Invalid value: -2: must be greater than or equal to 0"
            ),
        ]
    );
}

#[test]
fn quantities_are_well_formed_and_not_negative() {
    let got = pod_causes(json!([with_resources(
        json!({"cpu": "abc", "memory": "1Gb"}),
        json!({"nvidia.com/gpu": "-3", "memory": "1K"})
    )]));
    assert_eq!(
        got,
        vec![
            one(
                "spec.containers[0].resources.limits[memory]",
                "FieldValueInvalid",
                "Invalid value: \"1K\": unable to parse quantity's suffix"
            ),
            one(
                "spec.containers[0].resources.limits[nvidia.com/gpu]",
                "FieldValueInvalid",
                "Invalid value: \"-3\": must be greater than or equal to 0"
            ),
            one(
                "spec.containers[0].resources.requests[cpu]",
                "FieldValueInvalid",
                "Invalid value: \"abc\": quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"
            ),
            one(
                "spec.containers[0].resources.requests[memory]",
                "FieldValueInvalid",
                "Invalid value: \"1Gb\": quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"
            ),
        ]
    );
    // Init containers too, and a quantity prints as Quantity.String() does.
    let spec = json!({"containers": [container("web")], "initContainers": [{
        "name": "init", "image": "busybox",
        "resources": {"requests": {"cpu": "-0.5"}}
    }]});
    assert_eq!(
        causes("", "Pod", &json!({"spec": spec})),
        vec![one(
            "spec.initContainers[0].resources.requests[cpu]",
            "FieldValueInvalid",
            "Invalid value: \"-500m\": must be greater than or equal to 0"
        )]
    );
}

#[test]
fn requests_are_within_limits() {
    let got = pod_causes(json!([with_resources(
        json!({"cpu": "2", "memory": "512Mi"}),
        json!({"cpu": "1", "memory": "0.5Gi"})
    )]));
    assert_eq!(
        got,
        vec![one(
            "spec.containers[0].resources.requests",
            "FieldValueInvalid",
            "Invalid value: \"2\": must be less than or equal to cpu limit of 1"
        )]
    );
    // Compared exactly, below the milli-unit.
    let got = pod_causes(json!([with_resources(
        json!({"cpu": "1002u"}),
        json!({"cpu": "1001u"})
    )]));
    assert_eq!(
        got,
        vec![one(
            "spec.containers[0].resources.requests",
            "FieldValueInvalid",
            "Invalid value: \"1002u\": must be less than or equal to cpu limit of 1001u"
        )]
    );
    // A request alone, or below its limit, is fine for native resources.
    let ok = pod_causes(json!([with_resources(
        json!({"cpu": "500m", "memory": "1Gi", "kubernetes.io/foo": "1"}),
        json!({"cpu": "1"})
    )]));
    assert_eq!(ok, vec![]);
}

#[test]
fn extended_resources_equal_limits_whole_and_limited() {
    let got = pod_causes(json!([with_resources(
        json!({"nvidia.com/gpu": "1", "example.com/fpga": "1", "hugepages-2Mi": "2Mi"}),
        json!({"nvidia.com/gpu": "2", "example.com/dongle": "500m"})
    )]));
    assert_eq!(
        got,
        vec![
            one(
                "spec.containers[0].resources.limits[example.com/dongle]",
                "FieldValueInvalid",
                "Invalid value: \"500m\": must be an integer"
            ),
            one(
                "spec.containers[0].resources.limits",
                "FieldValueRequired",
                "Required value: Limit must be set for non overcommitable resources"
            ),
            one(
                "spec.containers[0].resources.limits",
                "FieldValueRequired",
                "Required value: Limit must be set for non overcommitable resources"
            ),
            one(
                "spec.containers[0].resources.requests",
                "FieldValueInvalid",
                "Invalid value: \"1\": must be equal to nvidia.com/gpu limit of 2"
            ),
            one(
                "spec.containers[0].resources",
                "FieldValueForbidden",
                "Forbidden: HugePages require cpu or memory"
            ),
        ]
    );
    // Hugepages come in whole pages.
    let got = pod_causes(json!([with_resources(
        json!({}),
        json!({"hugepages-2Mi": "3Mi", "memory": "1Gi"})
    )]));
    assert_eq!(
        got,
        vec![one(
            "spec.containers[0].resources.limits[hugepages-2Mi]",
            "FieldValueInvalid",
            "Invalid value: \"3Mi\": 3Mi is not positive integer multiple of hugepages-2Mi"
        )]
    );
    // Equal in value, written differently: fine.
    let ok = pod_causes(json!([with_resources(
        json!({"nvidia.com/gpu": "1"}),
        json!({"nvidia.com/gpu": "1000m"})
    )]));
    assert_eq!(ok, vec![]);
}

#[test]
fn container_names_are_present_labels_and_unique() {
    let spec = json!({
        "containers": [
            {"name": "web", "image": "nginx"},
            {"name": "web", "image": "nginx"},
            {"name": "Web", "image": "nginx"},
            {"image": "nginx"},
            {"name": "a.b", "image": "nginx"},
        ],
        "initContainers": [
            {"name": "web", "image": "busybox"},
            {"name": "setup", "image": "busybox"},
            {"name": "setup", "image": "busybox"},
        ]
    });
    let label = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')";
    assert_eq!(
        causes("", "Pod", &json!({"spec": spec})),
        vec![
            one(
                "spec.containers[1].name",
                "FieldValueDuplicate",
                "Duplicate value: \"web\""
            ),
            one(
                "spec.containers[2].name",
                "FieldValueInvalid",
                &format!("Invalid value: \"Web\": {label}")
            ),
            one(
                "spec.containers[3].name",
                "FieldValueRequired",
                "Required value"
            ),
            one(
                "spec.containers[4].name",
                "FieldValueInvalid",
                "Invalid value: \"a.b\": must not contain dots"
            ),
            one(
                "spec.initContainers[0].name",
                "FieldValueDuplicate",
                "Duplicate value: \"web\""
            ),
            one(
                "spec.initContainers[2].name",
                "FieldValueDuplicate",
                "Duplicate value: \"setup\""
            ),
        ]
    );
    let long = "a".repeat(64);
    assert_eq!(
        pod_causes(json!([container(&long)])),
        vec![one(
            "spec.containers[0].name",
            "FieldValueInvalid",
            &format!("Invalid value: \"{long}\": must be no more than 63 bytes")
        )]
    );
}

#[test]
fn containers_and_images_are_required() {
    assert_eq!(
        causes("", "Pod", &json!({"spec": {}})),
        vec![one(
            "spec.containers",
            "FieldValueRequired",
            "Required value"
        )]
    );
    assert_eq!(
        causes("", "Pod", &json!({})),
        vec![one(
            "spec.containers",
            "FieldValueRequired",
            "Required value"
        )]
    );
    let spec = workload_spec(json!([]));
    assert_eq!(
        causes("apps", "Deployment", &deployment(spec)),
        vec![one(
            "spec.template.spec.containers",
            "FieldValueRequired",
            "Required value"
        )]
    );
    let spec = workload_spec(json!([{"name": "web"}, {"name": "side", "image": ""}]));
    for (group, kind) in [
        ("apps", "Deployment"),
        ("apps", "ReplicaSet"),
        ("apps", "DaemonSet"),
        ("batch", "Job"),
    ] {
        assert_eq!(
            causes(group, kind, &json!({"spec": spec})),
            vec![
                one(
                    "spec.template.spec.containers[0].image",
                    "FieldValueRequired",
                    "Required value"
                ),
                one(
                    "spec.template.spec.containers[1].image",
                    "FieldValueRequired",
                    "Required value"
                ),
            ],
            "{kind}"
        );
    }
    // kube-apiserver leaves a StatefulSet's containers to its Pods' creation.
    assert_eq!(
        causes("apps", "StatefulSet", &json!({"spec": spec})),
        vec![]
    );
}

#[test]
fn selectors_are_required_and_match_the_template() {
    let mismatch = |labels: &str| {
        one(
            "spec.template.metadata.labels",
            "FieldValueInvalid",
            &format!("Invalid value: {labels}: `selector` does not match template `labels`"),
        )
    };
    // No selector: required, and (selecting nothing) unmatched.
    let mut spec = workload_spec(json!([container("web")]));
    spec.as_object_mut().unwrap().remove("selector");
    for kind in ["Deployment", "ReplicaSet", "StatefulSet"] {
        assert_eq!(
            causes("apps", kind, &json!({"spec": spec})),
            vec![
                one("spec.selector", "FieldValueRequired", "Required value"),
                mismatch("map[string]string{\"app\":\"web\"}"),
            ],
            "{kind}"
        );
    }
    // A DaemonSet is not told "Required", only that nothing matches.
    assert_eq!(
        causes("apps", "DaemonSet", &json!({"spec": spec})),
        vec![mismatch("map[string]string{\"app\":\"web\"}")]
    );

    // An empty selector: invalid, in each kind's words.
    spec["selector"] = json!({});
    let empty = "v1.LabelSelector{MatchLabels:map[string]string(nil), MatchExpressions:[]v1.LabelSelectorRequirement(nil)}";
    for (kind, noun) in [
        ("Deployment", "deployment"),
        ("ReplicaSet", "deployment"),
        ("StatefulSet", "statefulset"),
        ("DaemonSet", "daemonset"),
    ] {
        assert_eq!(
            causes("apps", kind, &json!({"spec": spec})),
            vec![one(
                "spec.selector",
                "FieldValueInvalid",
                &format!("Invalid value: {empty}: empty selector is invalid for {noun}")
            )],
            "{kind}"
        );
    }

    // A selector the template's labels do not satisfy.
    spec["selector"] = json!({
        "matchLabels": {"app": "web"},
        "matchExpressions": [{"key": "tier", "operator": "In", "values": ["front"]}]
    });
    spec["template"]["metadata"]["labels"] = json!({"app": "web", "tier": "back"});
    let want = mismatch("map[string]string{\"app\":\"web\", \"tier\":\"back\"}");
    for kind in ["Deployment", "ReplicaSet", "StatefulSet", "DaemonSet"] {
        assert_eq!(
            causes("apps", kind, &json!({"spec": spec})),
            vec![want.clone()],
            "{kind}"
        );
    }
    spec["template"]["metadata"]["labels"]["tier"] = json!("front");
    assert_eq!(causes("apps", "Deployment", &json!({"spec": spec})), vec![]);
    // No template labels at all.
    spec["template"]["metadata"] = json!({});
    assert_eq!(
        causes("apps", "Deployment", &json!({"spec": spec})),
        vec![mismatch("map[string]string(nil)")]
    );
    // Set operators.
    spec["selector"] = json!({"matchExpressions": [
        {"key": "app", "operator": "Exists"},
        {"key": "canary", "operator": "DoesNotExist"},
        {"key": "tier", "operator": "NotIn", "values": ["back"]}
    ]});
    spec["template"]["metadata"]["labels"] = json!({"app": "web"});
    assert_eq!(causes("apps", "Deployment", &json!({"spec": spec})), vec![]);
    // An expression LabelSelectorAsSelector refuses: the template is skipped.
    spec["selector"] = json!({"matchExpressions": [{"key": "app", "operator": "In"}]});
    assert_eq!(
        causes("apps", "Deployment", &json!({"spec": spec})),
        vec![one(
            "spec.selector",
            "FieldValueInvalid",
            "Invalid value: v1.LabelSelector{MatchLabels:map[string]string(nil), MatchExpressions:[]v1.LabelSelectorRequirement{v1.LabelSelectorRequirement{Key:\"app\", Operator:\"In\", Values:[]string(nil)}}}: invalid label selector"
        )]
    );
}

#[test]
fn every_cause_is_reported_at_once() {
    let spec = json!({
        "replicas": -5,
        "selector": {"matchLabels": {"app": "train"}},
        "template": {
            "metadata": {"labels": {"app": "train"}},
            "spec": {"containers": [{
                "name": "main", "image": "trainer:1",
                "resources": {"limits": {"nvidia.com/gpu": "-3"}}
            }]}
        }
    });
    let fields: Vec<String> = causes("apps", "Deployment", &deployment(spec))
        .into_iter()
        .map(|c| c.0)
        .collect();
    assert_eq!(
        fields,
        [
            "spec.replicas",
            "spec.template.spec.containers[0].resources.limits[nvidia.com/gpu]"
        ]
    );
}
