//! Whether a Work may carry what the live template asks (pure).
//!
//! The scheduler holds the quota accountant, and it decides a binding's
//! generation after the detector wrote it; the binding controller must not
//! send members a template whose replicas or per-replica request the
//! scheduler has not admitted yet (else a Deployment edited from 1 to 2 GPUs
//! per replica would run on the members at once, whatever the quota says).
//!
//! The rule, per binding ([`admission`]): the template is **admitted** when
//!
//! 1. the scheduler decided the binding's generation
//!    (`status.schedulerObservedGeneration == metadata.generation`),
//! 2. and placed it (`Scheduled=True`: not refused for quota, capacity or
//!    lack of clusters),
//! 3. and the template asks what the binding says (its replicas and replica
//!    requirements, computed as the detector does, equal `spec.replicas` and
//!    `spec.replicaRequirements`; else the detector has not caught up yet:
//!    it will write the binding and the scheduler will decide).
//!
//! An admitted binding gets every target's Work as the template says.
//! Otherwise each Work is **held** unless writing it raises nothing
//! ([`may_write`]): the cluster already has a Work, and the new manifest asks
//! no more per replica than the one the member has (the same resource names,
//! none larger, the same node constraints, GPU types and priority class) and
//! no more replicas. So image, label, argument changes and scale-downs still
//! go out while a binding waits (for quota or capacity), a new or larger
//! shape and a Duplicated scale-up wait for the scheduler's admission, and a
//! cluster without a Work gets one only once the binding is admitted. Works
//! that stay keep running what they run; deleting the Works of clusters the
//! binding left is not gated at all.

use hami_api::binding::{GpuRequirement, ReplicaRequirements, ResourceBindingSpec};
use hami_api::common::ResourceList;
use hami_api::quantity::parse_quantity;
use serde_json::Value;

use super::super::detector::requirements::{Extracted, extract};
use super::super::scheduler::status::scheduled_condition;

/// Why a binding's template is not admitted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hold {
    /// The scheduler has not decided the binding's generation yet.
    NotDecided,
    /// The scheduler decided it but did not place it (quota, capacity, no
    /// cluster): `Scheduled` is not True.
    NotScheduled,
    /// The template asks other replicas or requirements than the binding
    /// says (the detector has not caught up, or cannot read the template).
    DetectorBehind,
}

impl Hold {
    /// A fixed metric label.
    pub fn label(self) -> &'static str {
        match self {
            Hold::NotDecided => "not_decided",
            Hold::NotScheduled => "not_scheduled",
            Hold::DetectorBehind => "detector_behind",
        }
    }
}

/// Whether the template's current shape was admitted by the scheduler.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admission {
    Admitted,
    Held(Hold),
}

/// The admission of `binding` (the stored object, `spec` its parsed spec)
/// for the live `template`.
pub fn admission(binding: &Value, spec: &ResourceBindingSpec, template: &Value) -> Admission {
    let generation = binding
        .pointer("/metadata/generation")
        .and_then(Value::as_i64);
    let observed = binding
        .pointer("/status/schedulerObservedGeneration")
        .and_then(Value::as_i64);
    if generation.is_none() || generation != observed {
        return Admission::Held(Hold::NotDecided);
    }
    if scheduled_condition(binding) != Some("True") {
        return Admission::Held(Hold::NotScheduled);
    }
    match extract(template) {
        Ok(e) if e.replicas == spec.replicas && e.requirements == spec.replica_requirements => {
            Admission::Admitted
        }
        _ => Admission::Held(Hold::DetectorBehind),
    }
}

/// The manifests a Work object carries.
pub fn manifests(work: &Value) -> &[Value] {
    work.pointer("/spec/workload/manifests")
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

/// Whether a Work whose manifests are `desired` may be written over
/// `current` (the stored Work's manifests; `None` when the cluster has
/// none) under `admission`.
pub fn may_write(admission: Admission, current: Option<&[Value]>, desired: &[Value]) -> bool {
    if admission == Admission::Admitted {
        return true;
    }
    let Some(current) = current else {
        return false;
    };
    current.len() == desired.len()
        && current
            .iter()
            .zip(desired)
            .all(|(old, new)| match (extract(old), extract(new)) {
                (Ok(old), Ok(new)) => raises_nothing(&old, &new),
                _ => false,
            })
}

/// Whether `new` asks nothing more than `old`: no more replicas, and per
/// replica no more of any resource.
pub fn raises_nothing(old: &Extracted, new: &Extracted) -> bool {
    new.replicas <= old.replicas
        && match (&old.requirements, &new.requirements) {
            (None, None) => true,
            (Some(o), Some(n)) => requirements_not_above(o, n),
            _ => false,
        }
}

/// Per replica: the same resource names, none larger (a line that appears
/// or goes may raise what the quota counts: a GPU without a memory line
/// takes the whole device), the same GPU shape or a smaller one, and the
/// same node constraints, GPU types, namespace and priority class.
fn requirements_not_above(old: &ReplicaRequirements, new: &ReplicaRequirements) -> bool {
    old.node_claim == new.node_claim
        && old.namespace == new.namespace
        && old.priority_class_name == new.priority_class_name
        && resources_not_above(&old.resource_request, &new.resource_request)
        && match (&old.gpu, &new.gpu) {
            (None, None) => true,
            (Some(o), Some(n)) => gpu_not_above(o, n),
            _ => false,
        }
}

fn resources_not_above(old: &ResourceList, new: &ResourceList) -> bool {
    old.len() == new.len()
        && new.iter().all(|(name, q)| {
            let Some(o) = old.get(name) else {
                return false;
            };
            matches!(
                (parse_quantity(&o.0), parse_quantity(&q.0)),
                (Ok(o), Ok(n)) if n <= o
            )
        })
}

fn not_above<T: PartialOrd>(old: Option<T>, new: Option<T>) -> bool {
    match (old, new) {
        (None, None) => true,
        (Some(o), Some(n)) => n <= o,
        _ => false,
    }
}

fn gpu_not_above(old: &GpuRequirement, new: &GpuRequirement) -> bool {
    new.count <= old.count
        && not_above(old.memory_mib, new.memory_mib)
        && not_above(old.memory_percentage, new.memory_percentage)
        && not_above(old.cores, new.cores)
        && old.use_types == new.use_types
        && old.no_use_types == new.no_use_types
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use serde_json::json;

    /// A Deployment of `replicas`, each with `limits` on its one container.
    fn deployment(replicas: i64, limits: Value) -> Value {
        json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "infer", "namespace": "team"},
            "spec": {"replicas": replicas, "template": {"spec": {"containers": [{
                "name": "main", "image": "hub.local/infer:1",
                "resources": {"requests": {"cpu": "1"}, "limits": limits}
            }]}}}
        })
    }

    fn gpus(n: &str) -> Value {
        json!({"nvidia.com/gpu": n, "nvidia.com/gpumem": "8000"})
    }

    /// The binding the detector writes for `template`, with a status.
    fn binding(
        template: &Value,
        generation: i64,
        observed: Option<i64>,
        cond: Option<(&str, &str)>,
    ) -> (Value, ResourceBindingSpec) {
        let e = extract(template).unwrap();
        let mut status = json!({});
        if let Some(o) = observed {
            status["schedulerObservedGeneration"] = json!(o);
        }
        if let Some((s, r)) = cond {
            status["conditions"] = json!([{"type": "Scheduled", "status": s, "reason": r}]);
        }
        let spec = json!({
            "resource": {"apiVersion": "apps/v1", "kind": "Deployment", "namespace": "team", "name": "infer"},
            "replicas": e.replicas,
            "replicaRequirements": e.requirements,
            "clusters": [{"name": "a", "replicas": e.replicas}],
        });
        let object = json!({
            "metadata": {"name": "infer-deployment", "namespace": "team", "generation": generation},
            "spec": spec,
            "status": status,
        });
        let parsed = serde_json::from_value(spec).unwrap();
        (object, parsed)
    }

    #[test]
    fn admission_table() {
        let one = deployment(3, gpus("1"));
        let two = deployment(3, gpus("2"));
        let five = deployment(5, gpus("1"));
        let mut new_image = one.clone();
        new_image["spec"]["template"]["spec"]["containers"][0]["image"] =
            json!("hub.local/infer:2");
        let ok = Some(("True", "Success"));
        let quota = Some(("False", "QuotaExceeded"));
        // (what, the template the binding was made from, (generation,
        // observed generation), Scheduled condition, live template, want)
        let check = |what: &str,
                     bound: &Value,
                     (generation, observed): (i64, Option<i64>),
                     cond: Option<(&str, &str)>,
                     live: &Value,
                     want: Admission| {
            let (object, spec) = binding(bound, generation, observed, cond);
            assert_eq!(admission(&object, &spec, live), want, "{what}");
        };
        use Admission::{Admitted, Held};
        use Hold::{DetectorBehind, NotDecided, NotScheduled};
        check(
            "placed, template as bound",
            &one,
            (4, Some(4)),
            ok,
            &one,
            Admitted,
        );
        check(
            "an image change",
            &one,
            (4, Some(4)),
            ok,
            &new_image,
            Admitted,
        );
        check(
            "never decided",
            &one,
            (1, None),
            None,
            &one,
            Held(NotDecided),
        );
        check(
            "new generation",
            &two,
            (5, Some(4)),
            ok,
            &two,
            Held(NotDecided),
        );
        check(
            "refused for quota",
            &two,
            (5, Some(5)),
            quota,
            &two,
            Held(NotScheduled),
        );
        let uncountable = Some(("False", "QuotaUncountable"));
        check(
            "uncountable",
            &two,
            (5, Some(5)),
            uncountable,
            &two,
            Held(NotScheduled),
        );
        let capacity = Some(("False", "Unschedulable"));
        check(
            "no capacity",
            &two,
            (5, Some(5)),
            capacity,
            &two,
            Held(NotScheduled),
        );
        check(
            "no condition",
            &one,
            (4, Some(4)),
            None,
            &one,
            Held(NotScheduled),
        );
        // The template changed; the detector has not written the binding.
        check(
            "new shape",
            &one,
            (4, Some(4)),
            ok,
            &two,
            Held(DetectorBehind),
        );
        check(
            "scaled",
            &one,
            (4, Some(4)),
            ok,
            &five,
            Held(DetectorBehind),
        );
        check("new shape admitted", &two, (5, Some(5)), ok, &two, Admitted);
        // A template whose requirements cannot be read is never admitted.
        let (object, spec) = binding(&one, 4, Some(4), ok);
        let mut bad = one.clone();
        bad["spec"]["template"]["spec"]["containers"] = json!("not a list");
        assert_eq!(
            admission(&object, &spec, &bad),
            Admission::Held(Hold::DetectorBehind)
        );
    }

    #[test]
    fn held_works_change_only_when_nothing_rises() {
        let base = deployment(3, gpus("1"));
        let with = |f: &dyn Fn(&mut Value)| {
            let mut d = base.clone();
            f(&mut d);
            d
        };
        let limits = "/spec/template/spec/containers/0/resources/limits";
        let cases: Vec<(&str, Value, bool)> = vec![
            ("unchanged", base.clone(), true),
            (
                "new image",
                with(&|d| d["spec"]["template"]["spec"]["containers"][0]["image"] = json!("x:2")),
                true,
            ),
            (
                "new label",
                with(&|d| d["metadata"]["labels"] = json!({"a": "b"})),
                true,
            ),
            (
                "fewer replicas",
                with(&|d| d["spec"]["replicas"] = json!(2)),
                true,
            ),
            (
                "more replicas",
                with(&|d| d["spec"]["replicas"] = json!(4)),
                false,
            ),
            (
                "2 GPUs per replica",
                with(&|d| *d.pointer_mut(limits).unwrap() = gpus("2")),
                false,
            ),
            (
                "more GPU memory",
                with(&|d| d.pointer_mut(limits).unwrap()["nvidia.com/gpumem"] = json!("9000")),
                false,
            ),
            (
                "less GPU memory",
                with(&|d| d.pointer_mut(limits).unwrap()["nvidia.com/gpumem"] = json!("4000")),
                true,
            ),
            (
                "GPU memory line dropped (whole device)",
                with(&|d| {
                    d.pointer_mut(limits)
                        .unwrap()
                        .as_object_mut()
                        .unwrap()
                        .remove("nvidia.com/gpumem");
                }),
                false,
            ),
            (
                "a new resource line",
                with(&|d| d.pointer_mut(limits).unwrap()["nvidia.com/gpucores"] = json!("50")),
                false,
            ),
            (
                "more CPU",
                with(&|d| {
                    d["spec"]["template"]["spec"]["containers"][0]["resources"]["requests"]["cpu"] =
                        json!("1500m")
                }),
                false,
            ),
            (
                "less CPU",
                with(&|d| {
                    d["spec"]["template"]["spec"]["containers"][0]["resources"]["requests"]["cpu"] =
                        json!("500m")
                }),
                true,
            ),
            (
                "same CPU, other notation",
                with(&|d| {
                    d["spec"]["template"]["spec"]["containers"][0]["resources"]["requests"]["cpu"] =
                        json!("1000m")
                }),
                true,
            ),
            (
                "a second container",
                with(&|d| {
                    let c = d["spec"]["template"]["spec"]["containers"][0].clone();
                    d["spec"]["template"]["spec"]["containers"]
                        .as_array_mut()
                        .unwrap()
                        .push(c);
                }),
                false,
            ),
            (
                "new node selector",
                with(&|d| d["spec"]["template"]["spec"]["nodeSelector"] = json!({"gpu": "h100"})),
                false,
            ),
            (
                "GPU type annotation",
                with(&|d| {
                    d["spec"]["template"]["metadata"] =
                        json!({"annotations": {"nvidia.com/use-gputype": "H100"}})
                }),
                false,
            ),
            (
                "unreadable pod spec",
                with(&|d| d["spec"]["template"]["spec"]["containers"] = json!(3)),
                false,
            ),
        ];
        let current = [base.clone()];
        for (what, desired, want) in cases {
            let desired = [desired];
            assert_eq!(
                may_write(
                    Admission::Held(Hold::NotScheduled),
                    Some(&current),
                    &desired
                ),
                want,
                "{what}"
            );
            assert!(
                may_write(Admission::Admitted, Some(&current), &desired),
                "admitted: {what}"
            );
            assert!(
                may_write(Admission::Admitted, None, &desired),
                "admitted, new Work: {what}"
            );
            // No Work yet: nothing is created before admission.
            assert!(
                !may_write(Admission::Held(Hold::NotDecided), None, &desired),
                "{what}"
            );
        }
        // Objects without pod templates compare by replicas only; a changed
        // number of manifests is held.
        let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"k": "v"}});
        let cm2 = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"k": "w"}});
        let held = Admission::Held(Hold::DetectorBehind);
        let one_cm = std::slice::from_ref(&cm);
        assert!(may_write(held, Some(one_cm), std::slice::from_ref(&cm2)));
        assert!(!may_write(held, Some(one_cm), &[cm2.clone(), cm.clone()]));
        assert!(!may_write(held, Some(one_cm), &[base]));
    }

    #[test]
    fn manifests_of_a_work() {
        let w = json!({"spec": {"workload": {"manifests": [{"kind": "A"}, {"kind": "B"}]}}});
        assert_eq!(manifests(&w).len(), 2);
        assert!(manifests(&json!({"spec": {}})).is_empty());
    }
}
