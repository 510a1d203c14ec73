#![allow(clippy::unwrap_used, clippy::expect_used)]
//! One table row per validation rule, through the public entry point
//! `hami_api::validate`: each row states the exact set of (field path, kind)
//! errors the object must produce, so a rule that stops firing, fires at the
//! wrong path, or hides another error fails the test.
//! This file: FederatedResourceQuota, Cluster, bindings and Work rules.

mod common;

use common::*;
use hami_api::FieldErrorKind::{Duplicate, Invalid, NotSupported, Required};
use serde_json::{Value, json};

#[test]
fn quota() {
    let assign = |v: Value| with(frq(), "/spec/staticAssignments", v);
    check(vec![
        (
            "negative overall",
            with(frq(), "/spec/overall/cpu", json!("-1")),
            vec![("spec.overall[cpu]", Invalid)],
        ),
        (
            "malformed overall",
            with(frq(), "/spec/overall/nvidia.com~1gpu", json!("ten")),
            vec![("spec.overall[nvidia.com/gpu]", Invalid)],
        ),
        (
            "bad suffix",
            with(frq(), "/spec/overall/memory", json!("1GB")),
            vec![("spec.overall[memory]", Invalid)],
        ),
        (
            "bad resource name",
            with(frq(), "/spec/overall/bad name", json!("1")),
            vec![("spec.overall[bad name]", Invalid)],
        ),
        (
            "numbers are quantities",
            with(frq(), "/spec/overall/pods", json!(10)),
            vec![],
        ),
        (
            "sum above overall",
            assign(
                json!([{"clusterName": "a", "hard": {"nvidia.com/gpu": "5"}}, {"clusterName": "b", "hard": {"nvidia.com/gpu": "4"}}]),
            ),
            vec![("spec.staticAssignments", Invalid)],
        ),
        (
            "sum equal to overall, mixed units",
            assign(
                json!([{"clusterName": "a", "hard": {"cpu": "9500m"}}, {"clusterName": "b", "hard": {"cpu": "0.5"}}]),
            ),
            vec![],
        ),
        (
            "resource not in overall",
            assign(json!([{"clusterName": "a", "hard": {"pods": "3"}}])),
            vec![("spec.staticAssignments[0].hard[pods]", Invalid)],
        ),
        (
            "negative hard",
            assign(json!([{"clusterName": "a", "hard": {"cpu": "-2"}}])),
            vec![("spec.staticAssignments[0].hard[cpu]", Invalid)],
        ),
        (
            "duplicate cluster",
            assign(json!([{"clusterName": "a"}, {"clusterName": "a"}])),
            vec![("spec.staticAssignments[1].clusterName", Duplicate)],
        ),
        (
            "empty cluster",
            assign(json!([{"clusterName": ""}])),
            vec![("spec.staticAssignments[0].clusterName", Required)],
        ),
        (
            "bad cluster name",
            assign(json!([{"clusterName": "East_1"}])),
            vec![("spec.staticAssignments[0].clusterName", Invalid)],
        ),
        (
            "quantity not a string (decode)",
            with(frq(), "/spec/overall/cpu", json!({"v": 1})),
            vec![("spec.overall.cpu", Invalid)],
        ),
    ]);
}

#[test]
fn quota_message_names_the_resource() {
    let obj = with(
        frq(),
        "/spec/staticAssignments",
        json!([{"clusterName": "a", "hard": {"nvidia.com/gpu": "6"}}, {"clusterName": "b", "hard": {"nvidia.com/gpu": "3", "cpu": "1"}}]),
    );
    let errs = hami_api::validate(POLICY, "FederatedResourceQuota", &obj).unwrap_err();
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(
        errs[0].message.contains("nvidia.com/gpu"),
        "{}",
        errs[0].message
    );
    assert!(
        errs[0].message.contains('9') && errs[0].message.contains('8'),
        "{}",
        errs[0].message
    );
}

#[test]
fn cluster_rules() {
    let c = |ptr: &str, v: Value| with(cluster(), ptr, v);
    check(vec![
        (
            "name too long for a namespace",
            c("/metadata/name", json!("a".repeat(56))),
            vec![("metadata.name", Invalid)],
        ),
        (
            "longest name",
            c("/metadata/name", json!("a".repeat(55))),
            vec![],
        ),
        (
            "uppercase name",
            c("/metadata/name", json!("East")),
            vec![("metadata.name", Invalid)],
        ),
        (
            "bad endpoint",
            c("/spec/apiEndpoint", json!("ftp://x")),
            vec![("spec.apiEndpoint", Invalid)],
        ),
        (
            "good endpoint",
            c("/spec/apiEndpoint", json!("https://10.0.0.1:6443")),
            vec![],
        ),
        (
            "secret without name",
            c(
                "/spec/secretRef",
                json!({"namespace": "hami-system", "name": ""}),
            ),
            vec![("spec.secretRef.name", Required)],
        ),
        (
            "taint without key",
            c("/spec/taints", json!([{"key": "", "effect": "NoSchedule"}])),
            vec![("spec.taints[0].key", Required)],
        ),
        (
            "taint bad effect",
            c("/spec/taints", json!([{"key": "a", "effect": "Never"}])),
            vec![("spec.taints[0].effect", NotSupported)],
        ),
        (
            "duplicate taint",
            c(
                "/spec/taints",
                json!([{"key": "a", "effect": "NoSchedule"}, {"key": "a", "value": "x", "effect": "NoSchedule"}]),
            ),
            vec![("spec.taints[1]", Duplicate)],
        ),
        (
            "duplicate zone",
            c("/spec/zones", json!(["z1", "z1"])),
            vec![("spec.zones[1]", Duplicate)],
        ),
        (
            "unknown sync mode (decode)",
            c("/spec/syncMode", json!("Both")),
            vec![("spec.syncMode", NotSupported)],
        ),
        (
            "missing sync mode (decode)",
            c("/spec", json!({})),
            vec![("spec.syncMode", Required)],
        ),
    ]);
}

#[test]
fn binding_rules() {
    let b = |ptr: &str, v: Value| with(rb(), ptr, v);
    let gpu = |v: Value| b("/spec/replicaRequirements/gpu", v);
    let g = "spec.replicaRequirements.gpu";
    check(vec![
        (
            "no resource name",
            b("/spec/resource/name", json!("")),
            vec![("spec.resource.name", Required)],
        ),
        (
            "negative replicas",
            b("/spec/replicas", json!(-1)),
            vec![("spec.replicas", Invalid)],
        ),
        (
            "duplicate target",
            b(
                "/spec/clusters",
                json!([{"name": "a", "replicas": 1}, {"name": "a", "replicas": 2}]),
            ),
            vec![("spec.clusters[1].name", Duplicate)],
        ),
        (
            "negative target replicas",
            b("/spec/clusters", json!([{"name": "a", "replicas": -1}])),
            vec![("spec.clusters[0].replicas", Invalid)],
        ),
        (
            "gpu percentage above 100",
            gpu(json!({"count": 1, "memoryPercentage": 150})),
            vec![(leak(format!("{g}.memoryPercentage")), Invalid)],
        ),
        (
            "gpu negative cores",
            gpu(json!({"count": 1, "cores": -1})),
            vec![(leak(format!("{g}.cores")), Invalid)],
        ),
        (
            "gpu memory without gpus",
            gpu(json!({"count": 0, "memoryMiB": 4000})),
            vec![(leak(format!("{g}.count")), Invalid)],
        ),
        (
            "gpu negative count",
            gpu(json!({"count": -1})),
            vec![(leak(format!("{g}.count")), Invalid)],
        ),
        (
            "gpu negative memory",
            gpu(json!({"count": 1, "memoryMiB": -1})),
            vec![(leak(format!("{g}.memoryMiB")), Invalid)],
        ),
        (
            "gpu type in both lists",
            gpu(json!({"count": 1, "useTypes": ["A100"], "noUseTypes": ["A100"]})),
            vec![(leak(format!("{g}.noUseTypes[0]")), Invalid)],
        ),
        (
            "good gpu",
            gpu(json!({"count": 2, "memoryMiB": 8000, "cores": 50, "useTypes": ["A100"]})),
            vec![],
        ),
        (
            "bad request",
            b(
                "/spec/replicaRequirements/resourceRequest",
                json!({"cpu": "abc"}),
            ),
            vec![("spec.replicaRequirements.resourceRequest[cpu]", Invalid)],
        ),
        (
            "bad node selector",
            b(
                "/spec/replicaRequirements/nodeClaim/nodeSelector",
                json!({"zone": "a b"}),
            ),
            vec![(
                "spec.replicaRequirements.nodeClaim.nodeSelector[zone]",
                Invalid,
            )],
        ),
        (
            "bad pod toleration",
            b(
                "/spec/replicaRequirements/nodeClaim/tolerations",
                json!([{"key": "a", "operator": "Sometimes"}]),
            ),
            vec![(
                "spec.replicaRequirements.nodeClaim.tolerations[0].operator",
                NotSupported,
            )],
        ),
        (
            "eviction task",
            b(
                "/spec/gracefulEvictionTasks",
                json!([{"fromCluster": "a", "reason": "", "producer": "failover", "gracePeriodSeconds": 0}]),
            ),
            vec![
                ("spec.gracefulEvictionTasks[0].reason", Required),
                ("spec.gracefulEvictionTasks[0].gracePeriodSeconds", Invalid),
            ],
        ),
        (
            "placement checked",
            b(
                "/spec/placement/spreadConstraints",
                json!([{"spreadByField": "cluster", "minGroups": 2, "maxGroups": 1}]),
            ),
            vec![("spec.placement.spreadConstraints[0].minGroups", Invalid)],
        ),
        (
            "cluster binding shares the rules",
            with(
                with(rb(), "/kind", json!("ClusterResourceBinding")),
                "/spec/replicas",
                json!(-2),
            ),
            vec![("spec.replicas", Invalid)],
        ),
        (
            "unknown health (decode)",
            b(
                "/status/aggregatedStatus",
                json!([{"clusterName": "a", "health": "Great"}]),
            ),
            vec![("status.aggregatedStatus[0].health", NotSupported)],
        ),
    ]);
}

#[test]
fn work_rules() {
    let m = |v: Value| with(work(), "/spec/workload/manifests", v);
    let p = "spec.workload.manifests";
    check(vec![
        (
            "not an object",
            m(json!(["text"])),
            vec![(leak(format!("{p}[0]")), Invalid)],
        ),
        (
            "no kind",
            m(json!([{"apiVersion": "v1", "metadata": {"name": "a"}}])),
            vec![(leak(format!("{p}[0].kind")), Required)],
        ),
        (
            "no name",
            m(json!([{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {}}])),
            vec![(leak(format!("{p}[0].metadata.name")), Required)],
        ),
        (
            "second manifest",
            m(
                json!([{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"}}, {"kind": "Secret", "metadata": {"name": "b"}}]),
            ),
            vec![(leak(format!("{p}[1].apiVersion")), Required)],
        ),
        (
            "free status kept",
            with(
                work(),
                "/status/manifestStatuses",
                json!([{"identifier": {"ordinal": 0, "version": "v1", "kind": "ConfigMap", "name": "c"}, "status": {"anything": [1, 2]}, "health": "Healthy"}]),
            ),
            vec![],
        ),
    ]);
}
