//! Rules for FederatedResourceQuota: well-formed, non-negative quantities and
//! static assignments that fit within `overall`, resource by resource.

use std::collections::{BTreeMap, BTreeSet};

use super::FieldError;
use super::names::is_dns1123_label;
use super::selector::label_key;
use crate::common::ResourceList;
use crate::quantity::{format_milli, parse_quantity};
use crate::quota::FederatedResourceQuotaSpec;

/// Checks a quota spec; `path` is where it sits (usually `spec`).
pub fn validate_quota_spec(spec: &FederatedResourceQuotaSpec, path: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let overall = resource_list(&spec.overall, &format!("{path}.overall"), &mut errs);
    let mut sums: BTreeMap<&str, i128> = BTreeMap::new();
    let mut clusters = BTreeSet::new();
    for (i, a) in spec.static_assignments.iter().enumerate() {
        let p = format!("{path}.staticAssignments[{i}]");
        if a.cluster_name.is_empty() {
            errs.push(FieldError::required(
                format!("{p}.clusterName"),
                "Required value",
            ));
        } else if !is_dns1123_label(&a.cluster_name) {
            errs.push(FieldError::invalid(
                format!("{p}.clusterName"),
                format!("{:?}: must be a DNS-1123 label", a.cluster_name),
            ));
        } else if !clusters.insert(a.cluster_name.as_str()) {
            errs.push(FieldError::duplicate(
                format!("{p}.clusterName"),
                &a.cluster_name,
            ));
        }
        let hard = resource_list(&a.hard, &format!("{p}.hard"), &mut errs);
        for (name, v) in hard {
            if !spec.overall.contains_key(name) {
                errs.push(FieldError::invalid(
                    format!("{p}.hard[{name}]"),
                    format!("resource {name} is not limited in {path}.overall"),
                ));
                continue;
            }
            let s = sums.entry(name).or_insert(0);
            *s = s.saturating_add(v);
        }
    }
    for (name, sum) in sums {
        if let Some(limit) = overall.get(name)
            && sum > *limit
        {
            errs.push(FieldError::invalid(
                format!("{path}.staticAssignments"),
                format!(
                    "the static assignments of {name} sum to {}, above {path}.overall[{name}] = {}",
                    format_milli(sum),
                    format_milli(*limit)
                ),
            ));
        }
    }
    errs
}

/// Parses every quantity of a resource list, reporting names and values that
/// are malformed or negative; answers the parsed values.
pub(super) fn resource_list<'a>(
    list: &'a ResourceList,
    path: &str,
    errs: &mut Vec<FieldError>,
) -> BTreeMap<&'a str, i128> {
    let mut out = BTreeMap::new();
    for (name, q) in list {
        let p = format!("{path}[{name}]");
        label_key(name, &p, errs);
        match parse_quantity(&q.0) {
            Ok(v) if v < 0 => errs.push(FieldError::invalid(
                p,
                format!("{:?}: must be greater than or equal to 0", q.0),
            )),
            Ok(v) => {
                out.insert(name.as_str(), v);
            }
            Err(e) => errs.push(FieldError::invalid(p, e.to_string())),
        }
    }
    out
}
