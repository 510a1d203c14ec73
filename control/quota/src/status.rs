//! A quota's status from its ledger: `overall`, `overallUsed`, one
//! `aggregatedStatus` line per cluster with a static assignment or with usage,
//! and a condition that reports static assignments naming unknown clusters
//! (accepted by validation, enforced once the cluster registers).

use std::collections::{BTreeMap, BTreeSet};

use hami_api::common::ResourceList;

use hami_api::quota::{
    ClusterQuotaStatus, FederatedResourceQuotaSpec, FederatedResourceQuotaStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

use crate::ledger::QuotaLedger;

/// Condition type: every static assignment names a registered cluster.
pub const CONDITION_CLUSTERS_KNOWN: &str = "StaticAssignmentsKnown";
/// Reason when every cluster is known.
pub const REASON_ALL_KNOWN: &str = "AllClustersKnown";
/// Reason when some cluster is not registered.
pub const REASON_UNKNOWN_CLUSTER: &str = "UnknownCluster";

/// Builds the status. `known` holds the registered cluster names;
/// `previous` keeps a condition's transition time while its status stays;
/// `generation` is the quota's `metadata.generation`.
pub fn build_status(
    spec: &FederatedResourceQuotaSpec,
    ledger: &QuotaLedger,
    known: &BTreeSet<String>,
    previous: Option<&FederatedResourceQuotaStatus>,
    generation: Option<i64>,
    now: Time,
) -> FederatedResourceQuotaStatus {
    let names = ledger.limits().names();
    let names = || names.iter().map(String::as_str);
    let mut clusters: BTreeSet<&str> = ledger.clusters_used().map(|(c, _)| c).collect();
    clusters.extend(
        spec.static_assignments
            .iter()
            .map(|a| a.cluster_name.as_str()),
    );
    let aggregated_status = clusters
        .into_iter()
        .map(|c| ClusterQuotaStatus {
            cluster_name: c.to_string(),
            hard: spec
                .static_assignments
                .iter()
                .find(|a| a.cluster_name == c)
                .map(|a| a.hard.clone())
                .unwrap_or_default(),
            used: ledger.used_in(c).to_resource_list(names()),
            member_used: ResourceList::new(),
        })
        .collect();

    let unknown: Vec<&str> = spec
        .static_assignments
        .iter()
        .map(|a| a.cluster_name.as_str())
        .filter(|c| !known.contains(*c))
        .collect();
    let (status, reason, message) = if unknown.is_empty() {
        ("True", REASON_ALL_KNOWN, String::new())
    } else {
        (
            "False",
            REASON_UNKNOWN_CLUSTER,
            format!(
                "staticAssignments name clusters that are not registered: {}",
                unknown.join(", ")
            ),
        )
    };
    let before = previous.and_then(|p| {
        p.conditions
            .iter()
            .find(|c| c.type_ == CONDITION_CLUSTERS_KNOWN)
    });
    let last_transition_time = match before {
        Some(b) if b.status == status => b.last_transition_time.clone(),
        _ => now,
    };
    let mut conditions: Vec<Condition> = previous
        .map(|p| {
            p.conditions
                .iter()
                .filter(|c| c.type_ != CONDITION_CLUSTERS_KNOWN)
                .cloned()
                .collect()
        })
        .unwrap_or_default();
    conditions.push(Condition {
        type_: CONDITION_CLUSTERS_KNOWN.to_string(),
        status: status.to_string(),
        reason: reason.to_string(),
        message,
        observed_generation: generation,
        last_transition_time,
    });
    conditions.sort_by(|a, b| a.type_.cmp(&b.type_));

    FederatedResourceQuotaStatus {
        overall: spec.overall.clone(),
        overall_used: ledger
            .used()
            .to_resource_list(spec.overall.keys().map(String::as_str)),
        aggregated_status,
        conditions,
    }
}

/// Fills `aggregatedStatus[].memberUsed` from what the members' own
/// ResourceQuotas report (`reported`: cluster → `status.used`, in the
/// member's names), for clusters with a static assignment.
pub fn add_member_used(
    status: &mut FederatedResourceQuotaStatus,
    spec: &FederatedResourceQuotaSpec,
    reported: &BTreeMap<String, ResourceList>,
) {
    for line in &mut status.aggregated_status {
        let hard = spec
            .static_assignments
            .iter()
            .find(|a| a.cluster_name == line.cluster_name)
            .map(|a| &a.hard);
        line.member_used = match (hard, reported.get(&line.cluster_name)) {
            (Some(hard), Some(used)) => crate::member::used_from_member(hard, used),
            _ => ResourceList::new(),
        };
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::accounting::{Assignment, Charge};
    use crate::ledger::QuotaLimits;
    use crate::models::GpuModels;
    use crate::request::ReplicaRequest;
    use hami_api::common::ResourceList;
    use hami_api::quota::StaticClusterAssignment;
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

    fn list(items: &[(&str, &str)]) -> ResourceList {
        items
            .iter()
            .map(|(k, v)| (k.to_string(), Quantity(v.to_string())))
            .collect()
    }

    fn time(s: &str) -> Time {
        serde_json::from_value(serde_json::Value::String(s.into())).unwrap()
    }

    #[test]
    fn status_lines_and_unknown_clusters() {
        let spec = FederatedResourceQuotaSpec {
            overall: list(&[("nvidia.com/gpu", "8"), ("cpu", "10")]),
            static_assignments: vec![
                StaticClusterAssignment {
                    cluster_name: "east".into(),
                    hard: list(&[("nvidia.com/gpu", "4")]),
                },
                StaticClusterAssignment {
                    cluster_name: "ghost".into(),
                    hard: list(&[("nvidia.com/gpu", "1")]),
                },
            ],
        };
        let limits = QuotaLimits::from_spec(&spec).unwrap();
        let models = GpuModels::new();
        let acc = limits.accountant(&models);
        let mut ledger = crate::ledger::QuotaLedger::new(limits);
        let mut req = ReplicaRequest::default();
        req.gpu.count = 1;
        req.gpu.memory_mib = 1;
        req.resources.set("cpu", 1500);
        let charge: Charge = acc
            .charge(&req, &Assignment::of(&[("east", 2), ("west", 3)]))
            .unwrap();
        ledger.admit("ns/a", Some(charge)).unwrap();

        let known = BTreeSet::from(["east".to_string(), "west".to_string()]);
        let t0 = time("2025-01-01T00:00:00Z");
        let s = build_status(&spec, &ledger, &known, None, Some(3), t0.clone());
        assert_eq!(s.overall, spec.overall);
        assert_eq!(
            s.overall_used,
            list(&[("nvidia.com/gpu", "5"), ("cpu", "7500m")])
        );
        let lines: Vec<(&str, &ResourceList, &ResourceList)> = s
            .aggregated_status
            .iter()
            .map(|l| (l.cluster_name.as_str(), &l.hard, &l.used))
            .collect();
        assert_eq!(
            lines,
            vec![
                (
                    "east",
                    &list(&[("nvidia.com/gpu", "4")]),
                    &list(&[("nvidia.com/gpu", "2"), ("cpu", "3")])
                ),
                (
                    "ghost",
                    &list(&[("nvidia.com/gpu", "1")]),
                    &list(&[("nvidia.com/gpu", "0"), ("cpu", "0")])
                ),
                (
                    "west",
                    &list(&[]),
                    &list(&[("nvidia.com/gpu", "3"), ("cpu", "4500m")])
                ),
            ]
        );
        let c = &s.conditions[0];
        assert_eq!(
            (c.status.as_str(), c.reason.as_str()),
            ("False", REASON_UNKNOWN_CLUSTER)
        );
        assert!(c.message.contains("ghost") && !c.message.contains("east"));
        assert_eq!(c.observed_generation, Some(3));

        // Same status later: the transition time stays; a change moves it.
        let t1 = time("2025-01-01T00:05:00Z");
        let again = build_status(&spec, &ledger, &known, Some(&s), Some(3), t1.clone());
        assert_eq!(again.conditions[0].last_transition_time, t0);
        let mut all = known.clone();
        all.insert("ghost".into());
        let fixed = build_status(&spec, &ledger, &all, Some(&again), Some(3), t1.clone());
        assert_eq!(fixed.conditions.len(), 1);
        assert_eq!(fixed.conditions[0].status, "True");
        assert_eq!(fixed.conditions[0].last_transition_time, t1);

        // The member's own ResourceQuota reports in its names.
        let mut with_member = fixed.clone();
        let reported = BTreeMap::from([
            (
                "east".to_string(),
                list(&[("requests.nvidia.com/gpu", "1"), ("pods", "1")]),
            ),
            (
                "west".to_string(),
                list(&[("requests.nvidia.com/gpu", "3")]),
            ),
        ]);
        add_member_used(&mut with_member, &spec, &reported);
        let member: Vec<(&str, &ResourceList)> = with_member
            .aggregated_status
            .iter()
            .map(|l| (l.cluster_name.as_str(), &l.member_used))
            .collect();
        assert_eq!(
            member,
            vec![
                ("east", &list(&[("nvidia.com/gpu", "1")])),
                ("ghost", &list(&[])),
                // No static assignment in west: hami delivers no quota there.
                ("west", &list(&[])),
            ]
        );
    }
}
