#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Property tests: random bytes, random JSON and random specs inside valid
//! envelopes never make `validate` or `parse_quantity` panic, and every error
//! names a field under the part of the object that was random.

use hami_api::parse_quantity;
use proptest::prelude::*;
use serde_json::{Map, Value, json};

const KINDS: [(&str, &str); 9] = [
    ("cluster.hami.io/v1alpha1", "Cluster"),
    ("policy.hami.io/v1alpha1", "PropagationPolicy"),
    ("policy.hami.io/v1alpha1", "ClusterPropagationPolicy"),
    ("policy.hami.io/v1alpha1", "OverridePolicy"),
    ("policy.hami.io/v1alpha1", "ClusterOverridePolicy"),
    ("policy.hami.io/v1alpha1", "FederatedResourceQuota"),
    ("work.hami.io/v1alpha2", "ResourceBinding"),
    ("work.hami.io/v1alpha2", "ClusterResourceBinding"),
    ("work.hami.io/v1alpha2", "Work"),
];

/// Field names of the hami types, so random objects reach deep into them.
const KEYS: &[&str] = &[
    "apiVersion",
    "kind",
    "name",
    "namespace",
    "labelSelector",
    "matchLabels",
    "matchExpressions",
    "key",
    "operator",
    "values",
    "resourceSelectors",
    "placement",
    "clusterAffinity",
    "clusterAffinities",
    "affinityName",
    "clusterNames",
    "exclude",
    "fieldSelector",
    "clusterTolerations",
    "spreadConstraints",
    "spreadByField",
    "spreadByLabel",
    "minGroups",
    "maxGroups",
    "replicaScheduling",
    "replicaSchedulingType",
    "replicaDivisionPreference",
    "weightPreference",
    "staticWeightList",
    "targetCluster",
    "weight",
    "dynamicWeight",
    "failover",
    "application",
    "purgeMode",
    "gracePeriodSeconds",
    "decisionConditions",
    "tolerationSeconds",
    "overrideRules",
    "overriders",
    "plaintext",
    "path",
    "value",
    "imageOverrider",
    "component",
    "predicate",
    "argsOverrider",
    "commandOverrider",
    "containerName",
    "labelsOverrider",
    "annotationsOverrider",
    "overall",
    "staticAssignments",
    "clusterName",
    "hard",
    "cpu",
    "nvidia.com/gpu",
    "resource",
    "replicas",
    "replicaRequirements",
    "gpu",
    "count",
    "memoryMiB",
    "cores",
    "useTypes",
    "noUseTypes",
    "resourceRequest",
    "nodeClaim",
    "tolerations",
    "nodeSelector",
    "clusters",
    "gracefulEvictionTasks",
    "fromCluster",
    "reason",
    "producer",
    "workload",
    "manifests",
    "syncMode",
    "apiEndpoint",
    "secretRef",
    "taints",
    "effect",
    "zones",
    "status",
    "conditions",
    "aggregatedStatus",
    "health",
    "manifestStatuses",
    "identifier",
];

const WORDS: &[&str] = &[
    "",
    "In",
    "NotIn",
    "Exists",
    "DoesNotExist",
    "Divided",
    "Duplicated",
    "Weighted",
    "Aggregated",
    "AvailableReplicas",
    "cluster",
    "region",
    "zone",
    "provider",
    "add",
    "remove",
    "replace",
    "Registry",
    "Tag",
    "Gracefully",
    "Directly",
    "Never",
    "Push",
    "Pull",
    "NoSchedule",
    "NoExecute",
    "1",
    "-1",
    "500m",
    "2Gi",
    "1e40",
    "/spec/replicas",
    "~2",
    "a/b",
    "Healthy",
    "apps/v1",
    "Deployment",
];

fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => proptest::sample::select(KEYS).prop_map(str::to_string),
        1 => "[a-z/.~0-9]{0,6}",
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        prop_oneof![
            Just(-1i64),
            Just(0),
            Just(1),
            Just(i64::MAX),
            Just(i64::MIN)
        ]
        .prop_map(Value::from),
        any::<f64>().prop_map(|f| json!(f)),
        proptest::sample::select(WORDS).prop_map(|s| Value::String(s.to_string())),
        ".{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(6, 64, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            proptest::collection::vec((key(), inner), 0..6)
                .prop_map(|kv| Value::Object(kv.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

fn envelope(i: usize, spec: Value, status: Value) -> Value {
    let (api_version, kind) = KINDS[i];
    json!({
        "apiVersion": api_version,
        "kind": kind,
        "metadata": {"name": "x", "namespace": "default"},
        "spec": spec,
        "status": status,
    })
}

/// Valid, well-filled objects of every kind: the starting points of mutations.
fn bases() -> Vec<Value> {
    let placement = json!({
        "clusterAffinity": {
            "labelSelector": {"matchExpressions": [{"key": "gpu", "operator": "In", "values": ["a100"]}]},
            "fieldSelector": {"matchExpressions": [{"key": "region", "operator": "In", "values": ["east"]}]},
            "clusterNames": ["a", "b"], "exclude": ["c"]
        },
        "clusterTolerations": [{"key": "k", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 30}],
        "spreadConstraints": [{"spreadByField": "cluster", "minGroups": 1, "maxGroups": 2}, {"spreadByField": "region"}],
        "replicaScheduling": {
            "replicaSchedulingType": "Divided", "replicaDivisionPreference": "Weighted",
            "weightPreference": {"staticWeightList": [{"targetCluster": {"clusterNames": ["a"]}, "weight": 2}]}
        }
    });
    let selectors = json!([{"apiVersion": "apps/v1", "kind": "Deployment", "name": "web",
        "labelSelector": {"matchLabels": {"app": "web"}}}]);
    let pp_spec = json!({"resourceSelectors": selectors, "priority": 1, "placement": placement,
        "failover": {"application": {"purgeMode": "Gracefully", "gracePeriodSeconds": 60,
            "decisionConditions": {"tolerationSeconds": 10}}}});
    let op_spec = json!({"resourceSelectors": selectors, "overrideRules": [{
    "targetCluster": {"clusterNames": ["a"]},
    "overriders": {
        "plaintext": [{"path": "/spec/replicas", "operator": "replace", "value": 2}],
        "imageOverrider": [{"predicate": {"path": "/spec/template/spec/containers/0/image"},
            "component": "Registry", "operator": "replace", "value": "r.example.com"}],
        "argsOverrider": [{"containerName": "c", "operator": "add", "value": ["--x"]}],
        "labelsOverrider": [{"operator": "add", "value": {"a": "b"}}]
    }}]});
    let rb_spec = json!({
        "resource": {"apiVersion": "apps/v1", "kind": "Deployment", "namespace": "default", "name": "web"},
        "replicas": 3,
        "replicaRequirements": {"resourceRequest": {"cpu": "1", "nvidia.com/gpu": "1"},
            "gpu": {"count": 1, "memoryMiB": 8000, "cores": 50, "useTypes": ["A100"]},
            "nodeClaim": {"nodeSelector": {"zone": "a"}, "tolerations": [{"operator": "Exists"}]}},
        "placement": placement,
        "clusters": [{"name": "a", "replicas": 2}, {"name": "b", "replicas": 1}],
        "gracefulEvictionTasks": [{"fromCluster": "c", "reason": "TaintUntolerated", "producer": "failover",
            "purgeMode": "Gracefully", "gracePeriodSeconds": 60}]
    });
    let specs = [
        json!({"syncMode": "Push", "apiEndpoint": "https://a:6443", "secretRef": {"namespace": "n", "name": "s"},
            "zones": ["z1"], "taints": [{"key": "k", "effect": "NoSchedule"}]}),
        pp_spec.clone(),
        pp_spec,
        op_spec.clone(),
        op_spec,
        json!({"overall": {"cpu": "10", "nvidia.com/gpu": "8"},
            "staticAssignments": [{"clusterName": "a", "hard": {"nvidia.com/gpu": "4"}}]}),
        rb_spec.clone(),
        rb_spec,
        json!({"workload": {"manifests": [{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}}]}}),
    ];
    specs
        .into_iter()
        .enumerate()
        .map(|(i, spec)| envelope(i, spec, json!({})))
        .collect()
}

/// JSON pointers of every node of `v`.
fn pointers(v: &Value, at: String, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, c) in m {
                pointers(
                    c,
                    format!("{at}/{}", k.replace('~', "~0").replace('/', "~1")),
                    out,
                );
            }
        }
        Value::Array(a) => {
            for (n, c) in a.iter().enumerate() {
                pointers(c, format!("{at}/{n}"), out);
            }
        }
        _ => {}
    }
    out.push(at);
}

#[test]
fn bases_are_valid() {
    for (i, b) in bases().iter().enumerate() {
        let (api_version, kind) = KINDS[i];
        assert_eq!(hami_api::validate(api_version, kind, b), Ok(()), "{kind}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512), i in 0..KINDS.len()) {
        if let Ok(v) = serde_json::from_slice::<Value>(&bytes) {
            let (api_version, kind) = KINDS[i];
            let _ = hami_api::validate(api_version, kind, &v);
        }
        if let Ok(s) = std::str::from_utf8(&bytes) {
            let _ = parse_quantity(s);
        }
    }

    #[test]
    fn random_json_never_panics(v in json_value(), i in 0..KINDS.len()) {
        let (api_version, kind) = KINDS[i];
        let _ = hami_api::validate(api_version, kind, &v);
    }

    #[test]
    fn random_specs_report_fields_under_spec(spec in json_value(), status in json_value(), i in 0..KINDS.len()) {
        let obj = envelope(i, spec, status);
        let (api_version, kind) = KINDS[i];
        if let Err(errs) = hami_api::validate(api_version, kind, &obj) {
            prop_assert!(!errs.is_empty());
            for e in errs {
                prop_assert!(
                    e.field.starts_with("spec") || e.field.starts_with("status"),
                    "{} at {:?}", e.message, e.field
                );
                prop_assert!(!e.message.is_empty());
            }
        }
    }

    #[test]
    fn mutated_valid_objects_never_panic(
        i in 0..KINDS.len(),
        at in any::<proptest::sample::Index>(),
        replacement in json_value(),
    ) {
        let mut obj = bases().swap_remove(i);
        let mut ptrs = Vec::new();
        pointers(&obj, String::new(), &mut ptrs);
        let ptr = at.get(&ptrs).clone();
        if let Some(node) = obj.pointer_mut(&ptr) {
            *node = replacement;
        }
        let (api_version, kind) = KINDS[i];
        if let Err(errs) = hami_api::validate(api_version, kind, &obj) {
            prop_assert!(!errs.is_empty());
            for e in &errs {
                prop_assert!(!e.message.is_empty());
            }
        }
    }

    #[test]
    fn quantity_strings_never_panic(s in "[-+]?[0-9.]{0,45}[eEinumkKMGTP]{0,2}[-+]?[0-9]{0,8}") {
        let _ = parse_quantity(&s);
    }

    #[test]
    fn whole_numbers_parse_exactly(n in -1_000_000_000_000i64..1_000_000_000_000i64) {
        let n = i128::from(n);
        prop_assert_eq!(parse_quantity(&n.to_string()), Ok(n * 1000));
        prop_assert_eq!(parse_quantity(&format!("{n}m")), Ok(n));
        prop_assert_eq!(parse_quantity(&format!("{n}Ki")), Ok(n * 1024 * 1000));
        prop_assert_eq!(parse_quantity(&format!("{n}k")), Ok(n * 1_000_000));
        prop_assert_eq!(parse_quantity(&format!("{n}e3")), Ok(n * 1_000_000));
    }
}
