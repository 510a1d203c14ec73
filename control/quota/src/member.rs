//! The plain `ResourceQuota` a static assignment becomes in its member
//! cluster, and the way its `status.used` reads back.
//!
//! Kubernetes' quota counts an extended resource only as `requests.<name>`
//! (a hard line `nvidia.com/gpu` is accepted but never counted), so a quota
//! line with a domain (`nvidia.com/gpu`, `nvidia.com/gpumem`, ...) and no
//! `requests.`/`limits.` prefix is written as `requests.<name>`; standard
//! names (`cpu`, `memory`, `pods`, `requests.cpu`, `count/pods`, ...) stay.
//! The member counts what its pods request: for HAMi's per-GPU lines
//! (`nvidia.com/gpumem`, `nvidia.com/gpucores`) that is the per-GPU value
//! once per container, not × GPUs as hami accounts, which is why
//! `aggregatedStatus[].memberUsed` is reported beside hami's own `used`
//! rather than instead of it.

use hami_api::common::ResourceList;

/// The member ResourceQuota's name for quota line `name`.
pub fn member_resource_name(name: &str) -> String {
    let prefixed = name.starts_with("requests.") || name.starts_with("limits.");
    if !prefixed && name.contains('/') && !name.starts_with("count/") {
        format!("requests.{name}")
    } else {
        name.to_string()
    }
}

/// `spec.hard` of the member ResourceQuota for a static assignment's `hard`.
pub fn member_hard(hard: &ResourceList) -> ResourceList {
    hard.iter()
        .map(|(k, v)| (member_resource_name(k), v.clone()))
        .collect()
}

/// The member's `status.used` in the quota's own names: for each line of
/// `hard`, the member's line of the mapped name (absent lines stay absent).
pub fn used_from_member(hard: &ResourceList, member_used: &ResourceList) -> ResourceList {
    hard.keys()
        .filter_map(|k| {
            member_used
                .get(&member_resource_name(k))
                .map(|v| (k.clone(), v.clone()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

    fn list(items: &[(&str, &str)]) -> ResourceList {
        items
            .iter()
            .map(|(k, v)| (k.to_string(), Quantity(v.to_string())))
            .collect()
    }

    #[test]
    fn names_kubernetes_counts() {
        let cases = [
            ("cpu", "cpu"),
            ("memory", "memory"),
            ("pods", "pods"),
            ("count/pods", "count/pods"),
            ("requests.cpu", "requests.cpu"),
            ("limits.memory", "limits.memory"),
            ("nvidia.com/gpu", "requests.nvidia.com/gpu"),
            ("nvidia.com/gpumem", "requests.nvidia.com/gpumem"),
            ("requests.nvidia.com/gpu", "requests.nvidia.com/gpu"),
            ("example.com/fpga", "requests.example.com/fpga"),
        ];
        for (quota, member) in cases {
            assert_eq!(member_resource_name(quota), member, "{quota}");
        }
    }

    #[test]
    fn hard_and_used_round_trip() {
        let hard = list(&[("nvidia.com/gpu", "8"), ("cpu", "16")]);
        let m = member_hard(&hard);
        assert_eq!(m, list(&[("requests.nvidia.com/gpu", "8"), ("cpu", "16")]));
        let reported = list(&[
            ("requests.nvidia.com/gpu", "3"),
            ("cpu", "6"),
            ("pods", "3"),
        ]);
        assert_eq!(
            used_from_member(&hard, &reported),
            list(&[("nvidia.com/gpu", "3"), ("cpu", "6")])
        );
        assert_eq!(
            used_from_member(&hard, &ResourceList::new()),
            ResourceList::new()
        );
    }
}
