//! The workload controllers' decisions (pure): for a Deployment, ReplicaSet,
//! StatefulSet or Job and the objects it owns, the writes that bring the
//! cluster to its spec and the status to write. The IO loops in
//! [`super::controllers`] feed them from reflector stores.
//!
//! Simplifications, documented: a Deployment's template change scales old
//! ReplicaSets to zero at once (Recreate, no surge); a StatefulSet creates
//! and removes all its ordinals at once (Parallel) and does not roll
//! template changes; a Job without `completions` needs `parallelism`
//! successes.

use std::collections::BTreeSet;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde_json::{Value, json};

use super::names;
use super::objects::{owner_ref, pod_from_template};
use super::write::{Kind, Write};

/// Label carrying the template hash on a Deployment's ReplicaSets and pods.
pub const POD_TEMPLATE_HASH: &str = "pod-template-hash";

/// Whether `meta` names `uid` as its controller.
pub fn controlled_by(meta: &ObjectMeta, uid: &str) -> bool {
    meta.owner_references
        .iter()
        .flatten()
        .any(|r| r.controller == Some(true) && r.uid == uid)
}

fn phase(p: &Pod) -> &str {
    p.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("Pending")
}

/// Counts as a replica: not terminating, not finished.
pub fn is_active(p: &Pod) -> bool {
    p.metadata.deletion_timestamp.is_none() && !matches!(phase(p), "Succeeded" | "Failed")
}

/// Ready condition True.
pub fn is_ready(p: &Pod) -> bool {
    p.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .into_iter()
        .flatten()
        .any(|c| c.type_ == "Ready" && c.status == "True")
}

fn ns(meta: &ObjectMeta) -> String {
    meta.namespace.clone().unwrap_or_else(|| "default".into())
}

fn name(meta: &ObjectMeta) -> String {
    meta.name.clone().unwrap_or_default()
}

/// Whether `want`'s fields differ from `have` (fields absent in `want` are
/// not compared; timestamps inside conditions are ignored).
fn differs(have: Option<Value>, want: &Value) -> bool {
    let have = have.unwrap_or(Value::Null);
    let Some(w) = want.as_object() else {
        return true;
    };
    w.iter().any(|(k, v)| {
        let h = have.get(k).cloned().unwrap_or(Value::Null);
        if k == "conditions" {
            strip_times(&h) != strip_times(v)
        } else if v.is_number() && h.is_null() {
            v.as_i64() != Some(0)
        } else {
            &h != v
        }
    })
}

fn strip_times(v: &Value) -> Value {
    let mut v = v.clone();
    if let Some(list) = v.as_array_mut() {
        for c in list {
            if let Some(o) = c.as_object_mut() {
                o.remove("lastTransitionTime");
                o.remove("lastUpdateTime");
                o.remove("lastProbeTime");
            }
        }
    }
    v
}

/// A condition that keeps its transition time while its status holds.
fn condition(old: Option<&Value>, type_: &str, status: &str, reason: &str, now: &str) -> Value {
    let old = old
        .and_then(|c| c.as_array())
        .and_then(|l| l.iter().find(|c| c["type"] == type_));
    let since = match old {
        Some(c) if c["status"] == status => c["lastTransitionTime"].clone(),
        _ => json!(now),
    };
    json!({"type": type_, "status": status, "reason": reason, "lastTransitionTime": since, "lastUpdateTime": now})
}

fn status_write(kind: Kind, meta: &ObjectMeta, have: Option<Value>, want: Value) -> Option<Write> {
    differs(have, &want).then(|| Write::Status {
        kind,
        namespace: ns(meta),
        name: name(meta),
        status: want,
    })
}

/// Creates pods named `{owner}-{suffix}` until `missing` new ones exist,
/// skipping names already taken (deterministic, see [`names`]).
fn create_pods(
    owner_name: &str,
    seed: &str,
    taken: &BTreeSet<String>,
    missing: usize,
    mut make: impl FnMut(&str) -> Value,
    namespace: &str,
) -> Vec<Write> {
    let mut out = Vec::with_capacity(missing);
    let mut i = 0u64;
    while out.len() < missing {
        let pod_name = format!("{owner_name}-{}", names::suffix(seed, i));
        i += 1;
        if taken.contains(&pod_name) {
            continue;
        }
        out.push(Write::Create {
            kind: Kind::Pod,
            namespace: namespace.to_string(),
            object: make(&pod_name),
        });
    }
    out
}

fn delete_pod(p: &Pod) -> Write {
    Write::Delete {
        kind: Kind::Pod,
        namespace: ns(&p.metadata),
        name: name(&p.metadata),
    }
}

/// Order in which surplus pods go: unbound, then not ready, then newest, then by name.
fn surplus_order(a: &&Pod, b: &&Pod) -> std::cmp::Ordering {
    let bound = |p: &Pod| p.spec.as_ref().and_then(|s| s.node_name.as_ref()).is_some();
    let created = |p: &Pod| p.metadata.creation_timestamp.as_ref().map(|t| t.0);
    bound(a)
        .cmp(&bound(b))
        .then(is_ready(a).cmp(&is_ready(b)))
        .then(created(b).cmp(&created(a)))
        .then(b.metadata.name.cmp(&a.metadata.name))
}

/// A ReplicaSet: create or delete pods towards `spec.replicas`, and its status.
pub fn reconcile_replicaset(rs: &ReplicaSet, pods: &[&Pod]) -> Vec<Write> {
    let meta = &rs.metadata;
    let (Some(uid), Some(spec)) = (meta.uid.as_deref(), rs.spec.as_ref()) else {
        return Vec::new();
    };
    if meta.deletion_timestamp.is_some() {
        return Vec::new();
    }
    let desired = spec.replicas.unwrap_or(1).max(0) as usize;
    let mut active: Vec<&Pod> = pods.iter().copied().filter(|p| is_active(p)).collect();
    let mut out = Vec::new();
    let rs_name = name(meta);
    let namespace = ns(meta);
    if active.len() < desired {
        let taken: BTreeSet<String> = pods
            .iter()
            .filter_map(|p| p.metadata.name.clone())
            .collect();
        let template = spec.template.clone().unwrap_or_default();
        let owner = owner_ref("apps/v1", "ReplicaSet", &rs_name, uid);
        out.extend(create_pods(
            &rs_name,
            uid,
            &taken,
            desired - active.len(),
            |n| pod_from_template(&template, &namespace, n, owner.clone(), &[]),
            &namespace,
        ));
    } else if active.len() > desired {
        active.sort_by(surplus_order);
        out.extend(
            active[..active.len() - desired]
                .iter()
                .map(|p| delete_pod(p)),
        );
    }
    let ready = active.iter().filter(|p| is_ready(p)).count();
    let want = json!({
        "replicas": active.len(),
        "fullyLabeledReplicas": active.len(),
        "readyReplicas": ready,
        "availableReplicas": ready,
        "observedGeneration": meta.generation.unwrap_or(0),
    });
    let have = rs
        .status
        .as_ref()
        .and_then(|s| serde_json::to_value(s).ok());
    out.extend(status_write(Kind::ReplicaSet, meta, have, want));
    out
}

/// The ReplicaSet a Deployment's current template maps to: its name and hash.
pub fn current_replicaset_name(d: &Deployment) -> Option<(String, String)> {
    let template = &d.spec.as_ref()?.template;
    let hash = names::object_hash(template);
    Some((format!("{}-{hash}", name(&d.metadata)), hash))
}

/// A Deployment: its current ReplicaSet at `spec.replicas`, older ones at
/// zero, and its status summed from its ReplicaSets.
pub fn reconcile_deployment(d: &Deployment, sets: &[&ReplicaSet], now: &str) -> Vec<Write> {
    let meta = &d.metadata;
    let (Some(uid), Some(spec), Some((rs_name, hash))) = (
        meta.uid.as_deref(),
        d.spec.as_ref(),
        current_replicaset_name(d),
    ) else {
        return Vec::new();
    };
    if meta.deletion_timestamp.is_some() {
        return Vec::new();
    }
    let namespace = ns(meta);
    let desired = spec.replicas.unwrap_or(1).max(0);
    let mut out = Vec::new();
    let current = sets
        .iter()
        .find(|rs| rs.metadata.name.as_deref() == Some(&rs_name));
    match current {
        None => {
            let mut template = spec.template.clone();
            let tmeta = template.metadata.get_or_insert_with(Default::default);
            tmeta
                .labels
                .get_or_insert_with(Default::default)
                .insert(POD_TEMPLATE_HASH.into(), hash.clone());
            let mut selector = spec.selector.clone();
            selector
                .match_labels
                .get_or_insert_with(Default::default)
                .insert(POD_TEMPLATE_HASH.into(), hash.clone());
            let mut labels = tmeta.labels.clone().unwrap_or_default();
            labels.insert(POD_TEMPLATE_HASH.into(), hash.clone());
            out.push(Write::Create {
                kind: Kind::ReplicaSet,
                namespace: namespace.clone(),
                object: json!({
                    "apiVersion": "apps/v1",
                    "kind": "ReplicaSet",
                    "metadata": {
                        "name": rs_name,
                        "namespace": namespace,
                        "labels": labels,
                        "annotations": {"deployment.kubernetes.io/desired-replicas": desired.to_string()},
                        "ownerReferences": [owner_ref("apps/v1", "Deployment", &name(meta), uid)],
                    },
                    "spec": {"replicas": desired, "selector": selector, "template": template},
                }),
            });
        }
        Some(rs) => {
            if rs.spec.as_ref().and_then(|s| s.replicas) != Some(desired) {
                out.push(Write::Merge {
                    kind: Kind::ReplicaSet,
                    namespace: namespace.clone(),
                    name: rs_name.clone(),
                    patch: json!({"spec": {"replicas": desired}}),
                });
            }
        }
    }
    for rs in sets {
        if rs.metadata.name.as_deref() != Some(&rs_name)
            && rs.spec.as_ref().and_then(|s| s.replicas) != Some(0)
        {
            out.push(Write::Merge {
                kind: Kind::ReplicaSet,
                namespace: namespace.clone(),
                name: name(&rs.metadata),
                patch: json!({"spec": {"replicas": 0}}),
            });
        }
    }
    let sum = |f: fn(&k8s_openapi::api::apps::v1::ReplicaSetStatus) -> Option<i32>| -> i32 {
        sets.iter()
            .filter_map(|rs| rs.status.as_ref())
            .map(|s| f(s).unwrap_or(0))
            .sum()
    };
    let replicas = sum(|s| Some(s.replicas));
    let ready = sum(|s| s.ready_replicas);
    let available = sum(|s| s.available_replicas);
    let updated = current
        .and_then(|rs| rs.status.as_ref())
        .map_or(0, |s| s.replicas);
    let old = d
        .status
        .as_ref()
        .and_then(|s| serde_json::to_value(&s.conditions).ok());
    let available_cond = if available >= desired {
        condition(
            old.as_ref(),
            "Available",
            "True",
            "MinimumReplicasAvailable",
            now,
        )
    } else {
        condition(
            old.as_ref(),
            "Available",
            "False",
            "MinimumReplicasUnavailable",
            now,
        )
    };
    let progressing = if updated == desired && available >= desired && replicas == desired {
        condition(
            old.as_ref(),
            "Progressing",
            "True",
            "NewReplicaSetAvailable",
            now,
        )
    } else {
        condition(
            old.as_ref(),
            "Progressing",
            "True",
            "ReplicaSetUpdated",
            now,
        )
    };
    let want = json!({
        "replicas": replicas,
        "updatedReplicas": updated,
        "readyReplicas": ready,
        "availableReplicas": available,
        "unavailableReplicas": (desired - available).max(0),
        "observedGeneration": meta.generation.unwrap_or(0),
        "conditions": [available_cond, progressing],
    });
    let have = d.status.as_ref().and_then(|s| serde_json::to_value(s).ok());
    out.extend(status_write(Kind::Deployment, meta, have, want));
    out
}

/// A StatefulSet: pods `{name}-{ordinal}` for every ordinal below
/// `spec.replicas`, none above, and its status.
pub fn reconcile_statefulset(s: &StatefulSet, pods: &[&Pod]) -> Vec<Write> {
    let meta = &s.metadata;
    let (Some(uid), Some(spec)) = (meta.uid.as_deref(), s.spec.as_ref()) else {
        return Vec::new();
    };
    if meta.deletion_timestamp.is_some() {
        return Vec::new();
    }
    let sts = name(meta);
    let namespace = ns(meta);
    let desired = spec.replicas.unwrap_or(1).max(0) as u64;
    let revision = format!("{sts}-{}", names::object_hash(&spec.template));
    let ordinal = |p: &Pod| -> Option<u64> {
        p.metadata
            .name
            .as_deref()?
            .strip_prefix(&format!("{sts}-"))?
            .parse()
            .ok()
    };
    let mut out = Vec::new();
    let present: BTreeSet<u64> = pods.iter().filter_map(|p| ordinal(p)).collect();
    let owner = owner_ref("apps/v1", "StatefulSet", &sts, uid);
    for i in 0..desired {
        if present.contains(&i) {
            continue;
        }
        let pod_name = format!("{sts}-{i}");
        out.push(Write::Create {
            kind: Kind::Pod,
            namespace: namespace.clone(),
            object: pod_from_template(
                &spec.template,
                &namespace,
                &pod_name,
                owner.clone(),
                &[
                    ("statefulset.kubernetes.io/pod-name", pod_name.clone()),
                    ("apps.kubernetes.io/pod-index", i.to_string()),
                    ("controller-revision-hash", revision.clone()),
                ],
            ),
        });
    }
    let mut surplus: Vec<&Pod> = pods
        .iter()
        .copied()
        .filter(|p| {
            p.metadata.deletion_timestamp.is_none() && ordinal(p).is_none_or(|o| o >= desired)
        })
        .collect();
    surplus.sort_by_key(|p| std::cmp::Reverse(ordinal(p)));
    out.extend(surplus.iter().map(|p| delete_pod(p)));
    let active: Vec<&Pod> = pods
        .iter()
        .copied()
        .filter(|p| is_active(p) && ordinal(p).is_some_and(|o| o < desired))
        .collect();
    let ready = active.iter().filter(|p| is_ready(p)).count();
    let want = json!({
        "replicas": active.len(),
        "readyReplicas": ready,
        "availableReplicas": ready,
        "currentReplicas": active.len(),
        "updatedReplicas": active.len(),
        "currentRevision": revision,
        "updateRevision": revision,
        "observedGeneration": meta.generation.unwrap_or(0),
    });
    let have = s.status.as_ref().and_then(|s| serde_json::to_value(s).ok());
    out.extend(status_write(Kind::StatefulSet, meta, have, want));
    out
}

/// A Job: keep `parallelism` pods running until `completions` succeeded
/// (then condition Complete) or more than `backoffLimit` failed (then
/// condition Failed), and its status.
pub fn reconcile_job(job: &Job, pods: &[&Pod], now: &str) -> Vec<Write> {
    let meta = &job.metadata;
    let (Some(uid), Some(spec)) = (meta.uid.as_deref(), job.spec.as_ref()) else {
        return Vec::new();
    };
    if meta.deletion_timestamp.is_some() {
        return Vec::new();
    }
    let job_name = name(meta);
    let namespace = ns(meta);
    let parallelism = spec.parallelism.unwrap_or(1).max(0) as usize;
    let completions = spec.completions.map_or(parallelism, |c| c.max(0) as usize);
    let backoff_limit = spec.backoff_limit.unwrap_or(6).max(0) as usize;
    let succeeded = pods.iter().filter(|p| phase(p) == "Succeeded").count();
    let failed = pods.iter().filter(|p| phase(p) == "Failed").count();
    let active: Vec<&Pod> = pods.iter().copied().filter(|p| is_active(p)).collect();
    let status = job.status.as_ref();
    let old_conditions = status.and_then(|s| serde_json::to_value(&s.conditions).ok());
    let finished = status
        .and_then(|s| s.conditions.as_ref())
        .into_iter()
        .flatten()
        .any(|c| (c.type_ == "Complete" || c.type_ == "Failed") && c.status == "True");
    let mut out = Vec::new();
    let complete = succeeded >= completions;
    let failed_out = failed > backoff_limit;
    if !finished && !complete && !failed_out && !spec.suspend.unwrap_or(false) {
        let want = parallelism.min(completions - succeeded);
        if active.len() < want {
            let taken: BTreeSet<String> = pods
                .iter()
                .filter_map(|p| p.metadata.name.clone())
                .collect();
            let owner = owner_ref("batch/v1", "Job", &job_name, uid);
            let labels = [
                ("batch.kubernetes.io/job-name", job_name.clone()),
                ("job-name", job_name.clone()),
                ("batch.kubernetes.io/controller-uid", uid.to_string()),
                ("controller-uid", uid.to_string()),
            ];
            out.extend(create_pods(
                &job_name,
                uid,
                &taken,
                want - active.len(),
                |n| pod_from_template(&spec.template, &namespace, n, owner.clone(), &labels),
                &namespace,
            ));
        }
    }
    if failed_out && !complete {
        out.extend(active.iter().map(|p| delete_pod(p)));
    }
    let mut want = json!({
        "active": if finished || complete || failed_out { 0 } else { active.len() },
        "succeeded": succeeded,
        "failed": failed,
        "ready": active.iter().filter(|p| is_ready(p)).count(),
        "startTime": status.and_then(|s| s.start_time.as_ref()).map_or(json!(now), |t| json!(t)),
    });
    if complete || finished {
        let done = if failed_out && !complete {
            vec![condition(
                old_conditions.as_ref(),
                "Failed",
                "True",
                "BackoffLimitExceeded",
                now,
            )]
        } else {
            vec![
                condition(
                    old_conditions.as_ref(),
                    "SuccessCriteriaMet",
                    "True",
                    "CompletionsReached",
                    now,
                ),
                condition(
                    old_conditions.as_ref(),
                    "Complete",
                    "True",
                    "CompletionsReached",
                    now,
                ),
            ]
        };
        want["conditions"] = json!(done);
        want["completionTime"] = status
            .and_then(|s| s.completion_time.as_ref())
            .map_or(json!(now), |t| json!(t));
    } else if failed_out {
        want["conditions"] = json!([
            condition(
                old_conditions.as_ref(),
                "FailureTarget",
                "True",
                "BackoffLimitExceeded",
                now
            ),
            condition(
                old_conditions.as_ref(),
                "Failed",
                "True",
                "BackoffLimitExceeded",
                now
            ),
        ]);
    }
    let have = status.and_then(|s| serde_json::to_value(s).ok());
    let mut w = want.clone();
    if let Some(o) = w.as_object_mut() {
        // Times set once never force a rewrite.
        if have.as_ref().is_some_and(|h| !h["startTime"].is_null()) {
            o.remove("startTime");
        }
        if have
            .as_ref()
            .is_some_and(|h| !h["completionTime"].is_null())
        {
            o.remove("completionTime");
        }
    }
    if differs(have, &w) {
        out.push(Write::Status {
            kind: Kind::Job,
            namespace,
            name: job_name,
            status: want,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rs(replicas: i32) -> ReplicaSet {
        serde_json::from_value(json!({
            "metadata": {"name": "web-abc", "namespace": "default", "uid": "rs-uid", "generation": 2},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "web"}},
                "template": {"metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [{"name": "c"}]}}},
        }))
        .unwrap()
    }

    fn owned_pod(name: &str, node: Option<&str>, ready: bool) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "default",
                "ownerReferences": [owner_ref("apps/v1", "ReplicaSet", "web-abc", "rs-uid")]},
            "spec": {"nodeName": node, "containers": [{"name": "c"}]},
            "status": {"phase": if ready { "Running" } else { "Pending" },
                "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}]},
        }))
        .unwrap()
    }

    fn creates(w: &[Write]) -> Vec<String> {
        w.iter()
            .filter_map(|w| match w {
                Write::Create { object, .. } => {
                    object["metadata"]["name"].as_str().map(String::from)
                }
                _ => None,
            })
            .collect()
    }

    fn deletes(w: &[Write]) -> Vec<String> {
        w.iter()
            .filter_map(|w| match w {
                Write::Delete { name, .. } => Some(name.clone()),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn replicaset_scales_up_with_stable_names_and_status() {
        let p = owned_pod("web-abc-x", Some("n"), true);
        let w = reconcile_replicaset(&rs(3), &[&p]);
        let names = creates(&w);
        assert_eq!(names.len(), 2);
        assert_ne!(names[0], names[1]);
        assert!(names.iter().all(|n| n.starts_with("web-abc-")));
        // A second pass over the same (stale) state picks the same names.
        assert_eq!(creates(&reconcile_replicaset(&rs(3), &[&p])), names);
        let Some(Write::Create { object, .. }) = w.first() else {
            panic!("no create");
        };
        assert_eq!(object["metadata"]["ownerReferences"][0]["uid"], "rs-uid");
        assert_eq!(object["metadata"]["labels"]["app"], "web");
        let status = w.iter().find_map(super::super::binder::status_of).unwrap();
        assert_eq!(status["replicas"], 1);
        assert_eq!(status["readyReplicas"], 1);
        assert_eq!(status["observedGeneration"], 2);
    }

    #[test]
    fn replicaset_scales_down_unbound_and_unready_first() {
        let a = owned_pod("a", Some("n"), true);
        let b = owned_pod("b", None, false);
        let c = owned_pod("c", Some("n"), false);
        let w = reconcile_replicaset(&rs(1), &[&a, &b, &c]);
        assert_eq!(deletes(&w), ["b", "c"]);
    }

    #[test]
    fn deployment_creates_its_replicaset_and_retires_old_ones() {
        let d: Deployment = serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "default", "uid": "d-uid", "generation": 1},
            "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
                "template": {"metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [{"name": "c"}]}}},
        }))
        .unwrap();
        let (name, hash) = current_replicaset_name(&d).unwrap();
        let w = reconcile_deployment(&d, &[], "2025-01-01T00:00:00Z");
        let Some(Write::Create { object, .. }) = w.first() else {
            panic!("no create: {w:?}");
        };
        assert_eq!(object["metadata"]["name"], name.as_str());
        assert_eq!(
            object["spec"]["template"]["metadata"]["labels"][POD_TEMPLATE_HASH],
            hash.as_str()
        );
        assert_eq!(
            object["spec"]["selector"]["matchLabels"][POD_TEMPLATE_HASH],
            hash.as_str()
        );
        let mut old = rs(2);
        old.metadata.name = Some("web-old".into());
        let w = reconcile_deployment(&d, &[&old], "2025-01-01T00:00:00Z");
        assert!(
            w.iter()
                .any(|w| matches!(w, Write::Merge { name, patch, .. }
            if name == "web-old" && patch["spec"]["replicas"] == 0))
        );
    }

    #[test]
    fn job_completes_after_its_completions() {
        let job: Job = serde_json::from_value(json!({
            "metadata": {"name": "j", "namespace": "default", "uid": "j-uid"},
            "spec": {"completions": 2, "template": {"spec": {"containers": [{"name": "c"}]}}},
        }))
        .unwrap();
        let mut done = owned_pod("j-1", Some("n"), false);
        done.status.as_mut().unwrap().phase = Some("Succeeded".into());
        let w = reconcile_job(&job, &[&done], "2025-01-01T00:00:00Z");
        assert_eq!(creates(&w).len(), 1);
        let mut done2 = done.clone();
        done2.metadata.name = Some("j-2".into());
        let w = reconcile_job(&job, &[&done, &done2], "2025-01-01T00:00:00Z");
        assert!(creates(&w).is_empty());
        let status = w.iter().find_map(super::super::binder::status_of).unwrap();
        assert_eq!(status["succeeded"], 2);
        assert!(
            status["conditions"]
                .as_array()
                .unwrap()
                .iter()
                .any(|c| c["type"] == "Complete")
        );
    }
}
