//! The pure half of status aggregation: what a Work reports, the binding's
//! `status.aggregatedStatus` and `FullyApplied` condition made of the
//! reports, and the template status summed over clusters. No IO, no clock
//! (the caller passes the time).

use hami_api::binding::{AggregatedStatusItem, TargetCluster};
use hami_api::common::{ResourceHealth, cluster_of_execution_namespace};
use hami_api::work::ManifestStatus;
use serde_json::{Map, Value, json};

use crate::controllers::binding::works::{BindingRef, TEMPLATE_GENERATION_ANNOTATION};

/// The Work's `Applied` condition.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Applied {
    pub ok: bool,
    pub message: Option<String>,
    /// The Work generation the condition is about.
    pub observed_generation: Option<i64>,
}

/// What the status controller keeps of one Work.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct WorkReport {
    pub cluster: String,
    /// The Work's metadata.generation.
    pub generation: i64,
    /// The template generation its manifest was built from.
    pub template_generation: Option<i64>,
    pub applied: Option<Applied>,
    /// The member's status of the template's manifest.
    pub status: Option<Value>,
    pub health: Option<ResourceHealth>,
    pub deleting: bool,
}

impl WorkReport {
    /// Reads a Work object: its binding and report; `None` for a Work that
    /// names no binding or lives outside an execution namespace.
    pub fn from_work(work: &Value) -> Option<(BindingRef, WorkReport)> {
        let binding = BindingRef::of_work(work)?;
        let meta = work.get("metadata")?;
        let cluster = cluster_of_execution_namespace(meta.get("namespace")?.as_str()?)?.to_string();
        let generation = meta.get("generation").and_then(Value::as_i64).unwrap_or(0);
        let template_generation = meta
            .get("annotations")
            .and_then(|a| a.get(TEMPLATE_GENERATION_ANNOTATION))
            .and_then(Value::as_str)
            .and_then(|g| g.parse().ok());
        let applied = work
            .pointer("/status/conditions")
            .and_then(Value::as_array)
            .and_then(|cs| cs.iter().find(|c| c["type"] == "Applied"))
            .map(|c| Applied {
                ok: c["status"] == "True",
                message: c
                    .get("message")
                    .and_then(Value::as_str)
                    .filter(|m| !m.is_empty())
                    .map(str::to_string),
                observed_generation: c.get("observedGeneration").and_then(Value::as_i64),
            });
        // The template is the Work's only manifest (ordinal 0).
        let manifest = work
            .pointer("/status/manifestStatuses")
            .and_then(Value::as_array)
            .and_then(|ms| {
                ms.iter()
                    .filter_map(|m| serde_json::from_value::<ManifestStatus>(m.clone()).ok())
                    .find(|m| m.identifier.ordinal == 0)
            });
        let (status, health) = match manifest {
            Some(m) => (m.status, m.health),
            None => (None, None),
        };
        Some((
            binding,
            WorkReport {
                cluster,
                generation,
                template_generation,
                applied,
                status,
                health,
                deleting: meta.get("deletionTimestamp").is_some(),
            },
        ))
    }

    /// The member applied this Work's current generation from the
    /// template's `generation`.
    pub fn observed(&self, template_generation: i64) -> bool {
        !self.deleting
            && self.template_generation == Some(template_generation)
            && self
                .applied
                .as_ref()
                .is_some_and(|a| a.ok && a.observed_generation.is_none_or(|g| g == self.generation))
    }
}

/// One item per target cluster, by cluster name: the member's status,
/// whether its Work was applied (and why not), its health. A cluster
/// without a Work yet reads as not applied.
pub fn aggregated_items(
    targets: &[TargetCluster],
    reports: &[WorkReport],
) -> Vec<AggregatedStatusItem> {
    let mut names: Vec<&str> = targets.iter().map(|t| t.name.as_str()).collect();
    names.sort_unstable();
    names.dedup();
    names
        .into_iter()
        .map(|name| {
            let report = reports.iter().find(|r| r.cluster == name && !r.deleting);
            let applied = report.and_then(|r| r.applied.as_ref());
            AggregatedStatusItem {
                cluster_name: name.to_string(),
                status: report.and_then(|r| r.status.clone()),
                applied: applied.is_some_and(|a| a.ok),
                applied_message: applied.filter(|a| !a.ok).and_then(|a| a.message.clone()),
                health: report.and_then(|r| r.health),
            }
        })
        .collect()
}

/// One item per cluster being left (a graceful eviction task names it, it is
/// no target any more) whose Work still reports: its old copies serve until
/// the task ends, so they count in the template's status meanwhile.
pub fn evicting_items(
    targets: &[TargetCluster],
    evicting: &[String],
    reports: &[WorkReport],
) -> Vec<AggregatedStatusItem> {
    let mut names: Vec<&str> = evicting
        .iter()
        .map(String::as_str)
        .filter(|c| !targets.iter().any(|t| t.name == *c))
        .collect();
    names.sort_unstable();
    names.dedup();
    names
        .into_iter()
        .filter_map(|name| {
            let report = reports.iter().find(|r| r.cluster == name && !r.deleting)?;
            let applied = report.applied.as_ref();
            Some(AggregatedStatusItem {
                cluster_name: name.to_string(),
                status: report.status.clone(),
                applied: applied.is_some_and(|a| a.ok),
                applied_message: applied.filter(|a| !a.ok).and_then(|a| a.message.clone()),
                health: report.health,
            })
        })
        .collect()
}

/// True when every target cluster applied its Work from the template's
/// `generation` (and there is at least one).
pub fn all_observed(targets: &[TargetCluster], reports: &[WorkReport], generation: i64) -> bool {
    !targets.is_empty()
        && targets.iter().all(|t| {
            reports
                .iter()
                .any(|r| r.cluster == t.name && r.observed(generation))
        })
}

/// Sets condition `type_` in `conditions` (a JSON list), keeping its
/// lastTransitionTime while its status stays. True when anything changed.
pub fn set_condition(
    conditions: &mut Vec<Value>,
    type_: &str,
    ok: bool,
    reason: &str,
    message: &str,
    now: &str,
) -> bool {
    let status = if ok { "True" } else { "False" };
    let at = conditions.iter().position(|c| c["type"] == type_);
    let since = at
        .map(|i| &conditions[i])
        .filter(|c| c["status"] == status)
        .and_then(|c| c.get("lastTransitionTime").cloned())
        .unwrap_or_else(|| json!(now));
    let new = json!({
        "type": type_,
        "status": status,
        "reason": reason,
        "message": message,
        "lastTransitionTime": since,
    });
    match at {
        Some(i) if conditions[i] == new => false,
        Some(i) => {
            conditions[i] = new;
            true
        }
        None => {
            conditions.push(new);
            true
        }
    }
}

/// The binding's status with `items` (the targets) and `evicting` (the
/// clusters being left, see [`evicting_items`]) as its aggregatedStatus,
/// by cluster name, and the FullyApplied condition of the targets (when it
/// has any).
pub fn binding_status(
    current: Option<&Value>,
    items: &[AggregatedStatusItem],
    evicting: &[AggregatedStatusItem],
    now: &str,
) -> Value {
    let mut status = current
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let mut all: Vec<&AggregatedStatusItem> = items.iter().chain(evicting).collect();
    all.sort_by(|a, b| a.cluster_name.cmp(&b.cluster_name));
    if all.is_empty() {
        status.remove("aggregatedStatus");
    } else {
        status.insert(
            "aggregatedStatus".into(),
            serde_json::to_value(&all).unwrap_or_else(|_| json!([])),
        );
    }
    let mut conditions: Vec<Value> = status
        .get("conditions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if items.is_empty() {
        conditions.retain(|c| c["type"] != "FullyApplied");
    } else {
        let ok = items.iter().all(|i| i.applied);
        let (reason, message) = if ok {
            ("FullyAppliedSuccess", "All works have been applied")
        } else {
            (
                "FullyAppliedFailed",
                "Not every work is applied yet; see status.aggregatedStatus",
            )
        };
        set_condition(&mut conditions, "FullyApplied", ok, reason, message, now);
    }
    if conditions.is_empty() {
        status.remove("conditions");
    } else {
        status.insert("conditions".into(), Value::Array(conditions));
    }
    Value::Object(status)
}

/// Status fields summed over clusters, per kind; `None` for kinds whose
/// status is not aggregated.
pub fn summed_fields(kind: &str) -> Option<&'static [&'static str]> {
    Some(match kind {
        "Deployment" => &[
            "replicas",
            "readyReplicas",
            "availableReplicas",
            "updatedReplicas",
            "unavailableReplicas",
        ],
        "StatefulSet" => &[
            "replicas",
            "readyReplicas",
            "availableReplicas",
            "updatedReplicas",
            "currentReplicas",
        ],
        "ReplicaSet" => &[
            "replicas",
            "readyReplicas",
            "availableReplicas",
            "fullyLabeledReplicas",
        ],
        "DaemonSet" => &[
            "currentNumberScheduled",
            "desiredNumberScheduled",
            "numberAvailable",
            "numberMisscheduled",
            "numberReady",
            "updatedNumberScheduled",
            "numberUnavailable",
        ],
        "Job" => &["active", "succeeded", "failed", "ready"],
        _ => return None,
    })
}

fn condition_true<'a>(status: &'a Value, type_: &str) -> Option<&'a Value> {
    status
        .get("conditions")
        .and_then(Value::as_array)?
        .iter()
        .find(|c| c["type"] == type_ && c["status"] == "True")
}

/// The template's status from the clusters' statuses: `current` with the
/// summed fields of `kind` replaced (zeros left out, as Kubernetes does) and
/// `observedGeneration` set when `observed` is `Some`. For a Job, also the
/// earliest startTime and, once every cluster's job completed, the latest
/// completionTime and a `Complete` condition (`Failed` when any failed).
/// `None` for kinds that are not aggregated.
pub fn template_status(
    kind: &str,
    items: &[AggregatedStatusItem],
    observed: Option<i64>,
    current: Option<&Value>,
) -> Option<Value> {
    let fields = summed_fields(kind)?;
    let mut status: Map<String, Value> = current
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let reported: Vec<&Value> = items.iter().filter_map(|i| i.status.as_ref()).collect();
    for f in fields {
        let sum: i64 = reported
            .iter()
            .filter_map(|s| s.get(*f).and_then(Value::as_i64))
            .sum();
        if sum == 0 {
            status.remove(*f);
        } else {
            status.insert((*f).to_string(), json!(sum));
        }
    }
    if let Some(g) = observed {
        status.insert("observedGeneration".into(), json!(g));
    }
    if kind == "Job" {
        job_extras(&mut status, items, &reported);
    }
    Some(Value::Object(status))
}

fn job_extras(
    status: &mut Map<String, Value>,
    items: &[AggregatedStatusItem],
    reported: &[&Value],
) {
    let times = |field: &str| -> Vec<String> {
        let mut t: Vec<String> = reported
            .iter()
            .filter_map(|s| s.get(field).and_then(Value::as_str).map(str::to_string))
            .collect();
        // RFC 3339 in UTC ("Z") sorts as text.
        t.sort();
        t
    };
    match times("startTime").first() {
        Some(t) => status.insert("startTime".into(), json!(t)),
        None => status.remove("startTime"),
    };
    // A member job is complete when it says so, or when it has a
    // completionTime (set only on success; agents may reflect no conditions).
    let complete = !items.is_empty()
        && items.len() == reported.len()
        && reported
            .iter()
            .all(|s| condition_true(s, "Complete").is_some() || s.get("completionTime").is_some());
    let failed: Vec<&Value> = reported
        .iter()
        .filter_map(|s| condition_true(s, "Failed"))
        .collect();
    let mut conditions: Vec<Value> = Vec::new();
    if complete {
        if let Some(t) = times("completionTime").last() {
            status.insert("completionTime".into(), json!(t));
        }
        let last = reported
            .iter()
            .filter_map(|s| condition_true(s, "Complete"))
            .filter_map(|c| c.get("lastTransitionTime").cloned())
            .chain(times("completionTime").last().map(|t| json!(t)))
            .max_by(|a, b| a.as_str().cmp(&b.as_str()));
        conditions.push(json!({
            "type": "Complete", "status": "True",
            "reason": "Completed", "message": "The job completed in every cluster",
            "lastProbeTime": last, "lastTransitionTime": last,
        }));
    } else {
        status.remove("completionTime");
    }
    if let Some(first) = failed.first() {
        let at = first.get("lastTransitionTime").cloned();
        conditions.push(json!({
            "type": "Failed", "status": "True",
            "reason": first.get("reason").cloned().unwrap_or_else(|| json!("Failed")),
            "message": format!("The job failed in {} cluster(s)", failed.len()),
            "lastProbeTime": at, "lastTransitionTime": at,
        }));
    }
    if conditions.is_empty() {
        status.remove("conditions");
    } else {
        status.insert("conditions".into(), Value::Array(conditions));
    }
}

#[cfg(test)]
#[path = "aggregate_tests.rs"]
mod tests;
