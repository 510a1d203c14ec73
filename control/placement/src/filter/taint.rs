//! Taints and tolerations. NoSchedule keeps new replicas away; NoExecute
//! also moves existing ones, so a cluster that already holds replicas of the
//! binding is checked for NoExecute only. PreferNoSchedule is ignored.

use k8s_openapi::api::core::v1::{Taint, Toleration};

/// Taint effect that keeps new replicas away.
pub const NO_SCHEDULE: &str = "NoSchedule";
/// Taint effect that keeps new replicas away and evicts existing ones.
pub const NO_EXECUTE: &str = "NoExecute";

/// Kubernetes toleration semantics: an empty key with Exists tolerates every
/// taint; otherwise keys match, and Exists ignores the value while Equal (the
/// default) compares it; an empty effect tolerates every effect.
pub fn tolerates(toleration: &Toleration, taint: &Taint) -> bool {
    if let Some(effect) = toleration.effect.as_deref()
        && !effect.is_empty()
        && effect != taint.effect
    {
        return false;
    }
    let key = toleration.key.as_deref().unwrap_or_default();
    let op = toleration.operator.as_deref().unwrap_or("Equal");
    if key.is_empty() {
        return op == "Exists";
    }
    if key != taint.key {
        return false;
    }
    match op {
        "Exists" => true,
        "Equal" => {
            toleration.value.as_deref().unwrap_or_default()
                == taint.value.as_deref().unwrap_or_default()
        }
        _ => false,
    }
}

/// Indexes of the taints in `taints` that keep the binding away. `holds`
/// says the cluster already holds replicas of the binding.
pub fn untolerated<'a>(
    taints: &'a [Taint],
    tolerations: &'a [Toleration],
    holds: bool,
) -> impl Iterator<Item = usize> + 'a {
    taints.iter().enumerate().filter_map(move |(i, t)| {
        let relevant = t.effect == NO_EXECUTE || (t.effect == NO_SCHEDULE && !holds);
        (relevant && !tolerations.iter().any(|tol| tolerates(tol, t))).then_some(i)
    })
}

/// `{key=value:Effect}` as Karmada prints a taint.
pub fn describe(taint: &Taint) -> String {
    match taint.value.as_deref() {
        Some(v) if !v.is_empty() => format!("{{{}={}:{}}}", taint.key, v, taint.effect),
        _ => format!("{{{}:{}}}", taint.key, taint.effect),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn taint(key: &str, value: &str, effect: &str) -> Taint {
        Taint {
            key: key.into(),
            value: (!value.is_empty()).then(|| value.into()),
            effect: effect.into(),
            time_added: None,
        }
    }

    fn tol(key: &str, op: &str, value: &str, effect: &str) -> Toleration {
        let opt = |s: &str| (!s.is_empty()).then(|| s.to_string());
        Toleration {
            key: opt(key),
            operator: opt(op),
            value: opt(value),
            effect: opt(effect),
            toleration_seconds: None,
        }
    }

    #[test]
    fn tolerates_table() {
        let t = taint("gpu", "a100", "NoSchedule");
        let cases = [
            ("equal", tol("gpu", "Equal", "a100", "NoSchedule"), true),
            ("default op is Equal", tol("gpu", "", "a100", ""), true),
            ("value differs", tol("gpu", "Equal", "h100", ""), false),
            ("exists", tol("gpu", "Exists", "", ""), true),
            ("other key", tol("disk", "Exists", "", ""), false),
            (
                "effect differs",
                tol("gpu", "Exists", "", "NoExecute"),
                false,
            ),
            ("wildcard", tol("", "Exists", "", ""), true),
            ("empty key with Equal", tol("", "Equal", "", ""), false),
            ("bad operator", tol("gpu", "Gt", "a100", ""), false),
        ];
        for (name, tol, want) in cases {
            assert_eq!(tolerates(&tol, &t), want, "{name}");
        }
    }

    #[test]
    fn untolerated_table() {
        let taints = vec![
            taint("a", "", "NoSchedule"),
            taint("b", "x", "NoExecute"),
            taint("c", "", "PreferNoSchedule"),
        ];
        let none: Vec<Toleration> = vec![];
        let tol_a = vec![tol("a", "Exists", "", "")];
        let cases = [
            ("new: both hard taints", &none, false, vec![0, 1]),
            ("holding: NoExecute only", &none, true, vec![1]),
            ("tolerated NoSchedule", &tol_a, false, vec![1]),
        ];
        for (name, tols, holds, want) in cases {
            assert_eq!(
                untolerated(&taints, tols, holds).collect::<Vec<_>>(),
                want,
                "{name}"
            );
        }
        assert_eq!(describe(&taints[1]), "{b=x:NoExecute}");
        assert_eq!(describe(&taints[0]), "{a:NoSchedule}");
    }
}
