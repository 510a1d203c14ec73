//! Failover decisions, pure: which target clusters a binding must leave
//! because of an untolerated NoExecute taint ([`evictions`]), the eviction
//! rate limit ([`TokenBucket`]) and when a graceful eviction task is done
//! ([`task_done`]). Time comes in as an argument, so tables test them.

use std::collections::BTreeMap;
use std::time::Duration;

use hami_api::binding::{AggregatedStatusItem, GracefulEvictionTask, ResourceBindingSpec};
use hami_api::common::ResourceHealth;
use hami_api::propagation::PurgeMode;
use hami_placement::filter::taint::{NO_EXECUTE, tolerates};
use k8s_openapi::api::core::v1::{Taint, Toleration};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::{SignedDuration, Timestamp};

/// Producer of the tasks written here (Karmada's name).
pub const PRODUCER: &str = "TaintManager";
/// Reason of those tasks.
pub const REASON_TAINT: &str = "TaintUntolerated";
/// Grace period when the policy names none (Karmada's default).
pub const DEFAULT_GRACE_SECONDS: i32 = 600;

/// A binding's need to leave clusters.
#[derive(Clone, Debug, PartialEq)]
pub enum Eviction {
    /// Nothing to leave and nothing to wait for.
    None,
    /// Tolerated for now: decide again at this time.
    Later(Timestamp),
    /// Leave these target clusters now (with the taint that says why).
    Now(Vec<(String, Taint)>),
}

/// When the binding must leave a cluster carrying `taints` (their
/// `timeAdded` filled in by the caller: tolerationSeconds count from it):
/// `None` never, else the time.
fn leave_at<'a>(taints: &'a [Taint], tolerations: &[Toleration]) -> Option<(Timestamp, &'a Taint)> {
    let mut earliest: Option<(Timestamp, &Taint)> = None;
    for taint in taints.iter().filter(|t| t.effect == NO_EXECUTE) {
        let added = taint
            .time_added
            .as_ref()
            .map_or(Timestamp::UNIX_EPOCH, |t| t.0);
        let matching: Vec<&Toleration> =
            tolerations.iter().filter(|t| tolerates(t, taint)).collect();
        // Kubernetes: with several matching tolerations the longest wins;
        // one without tolerationSeconds tolerates forever.
        let at = if matching.is_empty() {
            Some(added)
        } else if matching.iter().any(|t| t.toleration_seconds.is_none()) {
            None
        } else {
            let secs = matching
                .iter()
                .filter_map(|t| t.toleration_seconds)
                .max()
                .unwrap_or(0)
                .max(0);
            added.checked_add(SignedDuration::from_secs(secs)).ok()
        };
        if let Some(at) = at
            && earliest.is_none_or(|(e, _)| at < e)
        {
            earliest = Some((at, taint));
        }
    }
    earliest
}

/// Which of `spec`'s target clusters it must leave at `now`, given each
/// cluster's taints. Clusters already being left are skipped.
pub fn evictions(
    spec: &ResourceBindingSpec,
    taints: &BTreeMap<String, Vec<Taint>>,
    now: Timestamp,
) -> Eviction {
    let tolerations: &[Toleration] = spec
        .placement
        .as_ref()
        .map_or(&[], |p| p.cluster_tolerations.as_slice());
    let mut now_list = Vec::new();
    let mut later: Option<Timestamp> = None;
    for target in &spec.clusters {
        if spec
            .graceful_eviction_tasks
            .iter()
            .any(|t| t.from_cluster == target.name)
        {
            continue;
        }
        let Some(cluster_taints) = taints.get(&target.name) else {
            continue;
        };
        match leave_at(cluster_taints, tolerations) {
            Some((at, taint)) if at <= now => now_list.push((target.name.clone(), taint.clone())),
            Some((at, _)) => later = Some(later.map_or(at, |l| l.min(at))),
            None => {}
        }
    }
    match (now_list.is_empty(), later) {
        (false, _) => Eviction::Now(now_list),
        (true, Some(at)) => Eviction::Later(at),
        (true, None) => Eviction::None,
    }
}

/// How tasks are finished, from the policy's `failover.application`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PurgeSettings {
    pub purge_mode: PurgeMode,
    pub grace_period_seconds: i32,
}

impl Default for PurgeSettings {
    fn default() -> Self {
        Self {
            purge_mode: PurgeMode::Gracefully,
            grace_period_seconds: DEFAULT_GRACE_SECONDS,
        }
    }
}

/// `spec` after leaving `leave`: the clusters dropped from `spec.clusters`
/// and one task each, so that the scheduler places replacements elsewhere
/// while the old copies keep running.
pub fn evicted_spec(
    spec: &ResourceBindingSpec,
    leave: &[(String, Taint)],
    purge: PurgeSettings,
    now: Timestamp,
) -> ResourceBindingSpec {
    let mut next = spec.clone();
    next.clusters
        .retain(|t| !leave.iter().any(|(c, _)| *c == t.name));
    for (cluster, taint) in leave {
        let replicas = spec
            .clusters
            .iter()
            .find(|t| t.name == *cluster)
            .map(|t| t.replicas);
        next.graceful_eviction_tasks.push(GracefulEvictionTask {
            from_cluster: cluster.clone(),
            replicas,
            reason: REASON_TAINT.into(),
            message: Some(format!(
                "taint {} on cluster {cluster} is not tolerated",
                hami_placement::filter::taint::describe(taint)
            )),
            producer: PRODUCER.into(),
            purge_mode: Some(purge.purge_mode),
            grace_period_seconds: Some(purge.grace_period_seconds),
            suppress_deletion: None,
            creation_timestamp: Some(Time(now)),
        });
    }
    next
}

/// Event reason of an eviction (Karmada's taint manager says the same).
pub const EVENT_EVICTING: &str = "EvictWorkloadFromCluster";

/// The Event message of leaving `cluster` because of `taint`.
pub fn eviction_message(cluster: &str, taint: &Taint, purge: PurgeSettings) -> String {
    let end = match purge.purge_mode {
        PurgeMode::Gracefully => format!(
            "the old copy stays until the replacements are ready or {} s pass",
            purge.grace_period_seconds
        ),
        PurgeMode::Directly => "the old copy is removed at once".to_string(),
        PurgeMode::Never => "the old copy stays until the task is removed by hand".to_string(),
    };
    format!(
        "leaving cluster {cluster}: taint {} is not tolerated; replacements go to other clusters, {end}",
        hami_placement::filter::taint::describe(taint)
    )
}

/// Why a task is done.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Done {
    /// purgeMode Directly.
    Directly,
    /// The replacements are ready.
    Ready,
    /// gracePeriodSeconds passed since the task was created.
    GraceElapsed,
}

/// The binding condition that says how the last eviction task ended.
pub const CONDITION_GRACEFUL_EVICTION: &str = "GracefulEviction";

/// How a finished task is reported: the condition's status, reason and
/// message, and the Event's reason and type (a grace period that ran out
/// is a warning: the old copy went before its replacements were ready).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finished {
    /// Condition status True (a clean end) or False (forced by the grace period).
    pub ok: bool,
    pub reason: &'static str,
    pub message: String,
}

/// Condition and Event reason: the replacements were ready.
pub const REASON_REPLACEMENTS_READY: &str = "ReplacementsReady";
/// Condition and Event reason: purgeMode Directly.
pub const REASON_PURGED_DIRECTLY: &str = "PurgedDirectly";
/// Condition and Event reason: the grace period passed first.
pub const REASON_GRACE_ELAPSED: &str = "GracePeriodElapsed";

/// What to say about `task` ending with `done`; `ready` of `wanted`
/// replicas were ready in the remaining clusters (kinds without replicas:
/// `wanted` 0).
pub fn finished(task: &GracefulEvictionTask, done: Done, ready: i64, wanted: i32) -> Finished {
    let cluster = &task.from_cluster;
    let ready_text = format!("{ready} of {wanted} replicas ready in the remaining clusters");
    match done {
        Done::Ready => Finished {
            ok: true,
            reason: REASON_REPLACEMENTS_READY,
            message: if wanted > 0 {
                format!("the old copy in cluster {cluster} was removed: {ready_text}")
            } else {
                format!(
                    "the old copy in cluster {cluster} was removed: the remaining clusters report the resource healthy"
                )
            },
        },
        Done::Directly => Finished {
            ok: true,
            reason: REASON_PURGED_DIRECTLY,
            message: format!(
                "the old copy in cluster {cluster} was removed at once (purgeMode Directly)"
            ),
        },
        Done::GraceElapsed => Finished {
            ok: false,
            reason: REASON_GRACE_ELAPSED,
            message: format!(
                "the old copy in cluster {cluster} was removed after the {} s grace period although the replacements were not ready ({})",
                task.grace_period_seconds.unwrap_or(DEFAULT_GRACE_SECONDS),
                if wanted > 0 {
                    ready_text
                } else {
                    "not every remaining cluster reports the resource healthy".to_string()
                }
            ),
        },
    }
}

/// Ready replicas in the binding's target clusters (the replacements).
pub fn ready_in_targets(spec: &ResourceBindingSpec, status: &[AggregatedStatusItem]) -> i64 {
    status
        .iter()
        .filter(|i| spec.clusters.iter().any(|t| t.name == i.cluster_name))
        .map(ready_replicas)
        .sum()
}

/// Ready replicas of a Deployment-like status.
fn ready_replicas(item: &AggregatedStatusItem) -> i64 {
    item.status
        .as_ref()
        .and_then(|s| s.get("readyReplicas"))
        .and_then(serde_json::Value::as_i64)
        .unwrap_or(0)
}

/// Whether the replacements run: for kinds with replicas, the ready
/// replicas in the remaining clusters reach the binding's replicas; for
/// others, every remaining cluster reports the resource applied and healthy.
pub fn replacements_ready(spec: &ResourceBindingSpec, status: &[AggregatedStatusItem]) -> bool {
    if spec.clusters.is_empty() {
        return false;
    }
    if spec.replicas > 0 {
        return ready_in_targets(spec, status) >= i64::from(spec.replicas);
    }
    spec.clusters.iter().all(|t| {
        status.iter().any(|i| {
            i.cluster_name == t.name && i.applied && i.health == Some(ResourceHealth::Healthy)
        })
    })
}

/// Whether `task` is done at `now`, and if not, when its grace period ends
/// (`Err(None)`: never by itself).
pub fn task_done(
    task: &GracefulEvictionTask,
    spec: &ResourceBindingSpec,
    status: &[AggregatedStatusItem],
    now: Timestamp,
) -> Result<Done, Option<Timestamp>> {
    if task.suppress_deletion == Some(true) {
        return Err(None);
    }
    match task.purge_mode.unwrap_or_default() {
        PurgeMode::Never => Err(None),
        PurgeMode::Directly => Ok(Done::Directly),
        PurgeMode::Gracefully => {
            if replacements_ready(spec, status) {
                return Ok(Done::Ready);
            }
            let created = task
                .creation_timestamp
                .as_ref()
                .map_or(Timestamp::UNIX_EPOCH, |t| t.0);
            let grace = task
                .grace_period_seconds
                .unwrap_or(DEFAULT_GRACE_SECONDS)
                .max(0);
            match created.checked_add(SignedDuration::from_secs(i64::from(grace))) {
                Ok(end) if end <= now => Ok(Done::GraceElapsed),
                Ok(end) => Err(Some(end)),
                Err(_) => Err(None),
            }
        }
    }
}

/// A token bucket: `rate` tokens per second, up to `burst` saved.
#[derive(Clone, Debug)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Option<Timestamp>,
}

impl TokenBucket {
    /// A full bucket. A rate of 0 or less never refills (after the burst).
    pub fn new(rate: f64, burst: u32) -> Self {
        let burst = f64::from(burst.max(1));
        Self {
            rate: rate.max(0.0),
            burst,
            tokens: burst,
            last: None,
        }
    }

    /// Takes one token at `now`; otherwise how long until one is there.
    pub fn take(&mut self, now: Timestamp) -> Result<(), Duration> {
        if let Some(last) = self.last {
            let elapsed = now.duration_since(last).as_secs_f64().max(0.0);
            self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        }
        self.last = Some(self.last.map_or(now, |l| l.max(now)));
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            return Ok(());
        }
        if self.rate <= 0.0 {
            return Err(Duration::from_secs(3600));
        }
        Err(Duration::from_secs_f64((1.0 - self.tokens) / self.rate))
    }
}

#[cfg(test)]
#[path = "decide_tests.rs"]
mod tests;
