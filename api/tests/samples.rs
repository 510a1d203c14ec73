#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Every sample under samples/ decodes; the hami kinds validate and say what
//! the samples promise (Divided, dynamic weight, per-cluster registry, GPU quota).

use std::path::PathBuf;

use hami_api::binding::GpuRequirement;
use hami_api::propagation::{
    DynamicWeightFactor, ReplicaDivisionPreference, ReplicaSchedulingType,
};
use hami_api::validation::decode;
use hami_api::{FederatedResourceQuota, OverridePolicy, PropagationPolicy};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Namespace;
use serde_json::Value;

fn samples() -> Vec<(String, Value)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../samples");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no samples in {}", dir.display());
    let mut out = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        let docs: Vec<Value> =
            serde_saphyr::from_multiple(&text).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        for doc in docs.into_iter().filter(|d| !d.is_null()) {
            out.push((f.file_name().unwrap().to_string_lossy().into_owned(), doc));
        }
    }
    out
}

fn find<'a>(all: &'a [(String, Value)], kind: &str) -> &'a Value {
    &all.iter()
        .find(|(_, d)| d["kind"] == kind)
        .unwrap_or_else(|| panic!("no {kind}"))
        .1
}

#[test]
fn every_sample_decodes_and_validates() {
    let all = samples();
    for (file, doc) in &all {
        let api_version = doc["apiVersion"]
            .as_str()
            .unwrap_or_else(|| panic!("{file}: apiVersion"));
        let kind = doc["kind"]
            .as_str()
            .unwrap_or_else(|| panic!("{file}: kind"));
        assert!(doc["metadata"]["name"].is_string(), "{file}: metadata.name");
        assert_eq!(hami_api::validate(api_version, kind, doc), Ok(()), "{file}");
        match kind {
            "Namespace" => {
                decode::<Namespace>(doc).unwrap();
            }
            "Deployment" => {
                decode::<Deployment>(doc).unwrap();
            }
            _ => assert!(
                api_version.contains(".hami.io/"),
                "{file}: unexpected {api_version} {kind}"
            ),
        }
    }
    let kinds: Vec<&str> = all
        .iter()
        .map(|(_, d)| d["kind"].as_str().unwrap())
        .collect();
    for want in [
        "Namespace",
        "Deployment",
        "PropagationPolicy",
        "OverridePolicy",
        "FederatedResourceQuota",
    ] {
        assert!(kinds.contains(&want), "samples lack a {want}");
    }
}

#[test]
fn deployment_asks_for_gpus_in_hamis_names() {
    let all = samples();
    let d: Deployment = decode(find(&all, "Deployment")).unwrap();
    let pod = d.spec.unwrap().template.spec.unwrap();
    let limits = pod.containers[0]
        .resources
        .as_ref()
        .unwrap()
        .limits
        .clone()
        .unwrap();
    assert_eq!(limits[hami_api::RESOURCE_GPU].0, "1");
    assert!(limits.contains_key(hami_api::RESOURCE_GPU_MEM));
    // The shape the detector will put in a binding.
    let gpu = GpuRequirement {
        count: 1,
        memory_mib: Some(
            hami_api::parse_quantity(&limits[hami_api::RESOURCE_GPU_MEM].0).unwrap() as i64 / 1000,
        ),
        ..Default::default()
    };
    assert_eq!(gpu.memory_mib, Some(8000));
}

#[test]
fn propagation_policy_divides_by_available_replicas() {
    let all = samples();
    let pp: PropagationPolicy = decode(find(&all, "PropagationPolicy")).unwrap();
    let rs = pp.spec.placement.replica_scheduling.unwrap();
    assert_eq!(rs.replica_scheduling_type, ReplicaSchedulingType::Divided);
    assert_eq!(
        rs.replica_division_preference,
        Some(ReplicaDivisionPreference::Weighted)
    );
    assert_eq!(
        rs.weight_preference.unwrap().dynamic_weight,
        Some(DynamicWeightFactor::AvailableReplicas)
    );
    let d = find(&all, "Deployment");
    assert_eq!(
        pp.spec.resource_selectors[0].name.as_deref(),
        d["metadata"]["name"].as_str()
    );
    assert_eq!(
        pp.metadata.namespace.as_deref(),
        d["metadata"]["namespace"].as_str()
    );
}

#[test]
fn override_policy_sets_registry_per_cluster() {
    let all = samples();
    let op: OverridePolicy = decode(find(&all, "OverridePolicy")).unwrap();
    assert!(op.spec.override_rules.len() >= 2);
    for rule in &op.spec.override_rules {
        assert!(rule.target_cluster.is_some());
        let img = &rule.overriders.image_overrider[0];
        assert_eq!(
            img.component,
            hami_api::override_policy::ImageComponent::Registry
        );
    }
}

#[test]
fn quota_limits_gpus_and_fits_its_assignments() {
    let all = samples();
    let q: FederatedResourceQuota = decode(find(&all, "FederatedResourceQuota")).unwrap();
    assert!(q.spec.overall.contains_key(hami_api::RESOURCE_GPU));
    assert!(q.spec.overall.contains_key(hami_api::RESOURCE_GPU_MEM));
    assert!(!q.spec.static_assignments.is_empty());
    assert!(hami_api::validation::validate_quota_spec(&q.spec, "spec").is_empty());
}
