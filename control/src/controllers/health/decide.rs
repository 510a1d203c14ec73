//! The cluster health decision, pure: a Cluster, what its agent's Lease
//! says, the time now and the options → the Ready condition and the taints
//! the Cluster should carry. `None` when nothing is to change, so a healthy
//! fleet costs no write.
//!
//! * Lease lapsed (renewTime + leaseDuration + grace is past): Ready=Unknown
//!   (reason `ClusterStatusUnknown`; an agent's own Ready=False is kept) and
//!   taint `cluster.hami.io/unreachable`
//!   with effect NoSchedule, and NoExecute too when the operator enabled it.
//! * Lease fresh but the agent reports Ready=False: taint
//!   `cluster.hami.io/not-ready` likewise — unless the Lease was renewed
//!   after that False was written (the agent renews only while it reaches
//!   its member, so the False is stale and True is on its way).
//! * Healthy: only the taints this controller added go (those with its keys
//!   and `timeAdded` set); a user's taints, even with the same key, stay.
//!   A Ready=Unknown this controller wrote turns True again (the agent
//!   renews its Lease only while it reaches its member).
//! * Damping ([`step`], Karmada's `--cluster-success-threshold`): a cluster
//!   that carries what an unhealthy verdict gave it (our taints, our
//!   Ready=Unknown) keeps it until it has been judged healthy without a
//!   break for `success_threshold`; any unhealthy verdict in between starts
//!   the count again. Becoming unhealthy is not damped (the Lease's own
//!   duration plus `grace` already is).
//!
//! A cluster with no Lease (Push mode, or a Pull agent not yet registered)
//! is judged by its reported Ready condition only.

use std::time::Duration;

use hami_api::cluster::Cluster;
use k8s_openapi::api::core::v1::Taint;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::{SignedDuration, Timestamp};

/// Taint key of a cluster whose Lease lapsed.
pub const TAINT_UNREACHABLE: &str = "cluster.hami.io/unreachable";
/// Taint key of a cluster whose agent reports Ready=False.
pub const TAINT_NOT_READY: &str = "cluster.hami.io/not-ready";
/// The Ready condition's type.
pub const CONDITION_READY: &str = "Ready";
/// Reason of a Ready=Unknown set because the Lease lapsed.
pub const REASON_UNKNOWN: &str = "ClusterStatusUnknown";
/// Reason of the Ready=True set when the Lease is renewed again.
pub const REASON_RENEWED: &str = "ClusterLeaseRenewed";

const NO_SCHEDULE: &str = "NoSchedule";
const NO_EXECUTE: &str = "NoExecute";

/// Health settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HealthOptions {
    /// Extra time after the Lease's own duration before the cluster is
    /// called unreachable.
    pub grace: Duration,
    /// Also taint unhealthy clusters NoExecute (evicts what they run).
    pub no_execute: bool,
    /// How long a cluster must be healthy without a break before the
    /// taints and condition of an unhealthy verdict go.
    pub success_threshold: Duration,
}

impl Default for HealthOptions {
    fn default() -> Self {
        Self {
            grace: Duration::from_secs(40),
            no_execute: false,
            success_threshold: Duration::from_secs(30),
        }
    }
}

/// What the controller reads of a Lease.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LeaseView {
    /// When the Lease counts as renewed (see [`LeaseView::seen_since`]).
    pub renew_time: Timestamp,
    pub duration: Duration,
    /// The Lease's own renewTime, which [`LeaseView::seen_since`] leaves.
    pub renewed: Timestamp,
}

impl LeaseView {
    /// The Lease as judged by a controller that started at `started`: a
    /// renewal older than that counts from `started`, so a control plane
    /// that was down longer than a Lease lasts does not call every cluster
    /// unreachable (and evict everything) before the agents renew.
    pub fn seen_since(self, started: Timestamp) -> Self {
        Self {
            renew_time: self.renew_time.max(started),
            ..self
        }
    }
}

/// What the Cluster should carry, when it differs from what it carries.
#[derive(Clone, Debug, PartialEq)]
pub struct Desired {
    pub conditions: Vec<Condition>,
    pub taints: Vec<Taint>,
}

/// The cluster's health as judged here.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Health {
    Healthy,
    /// The agent reports Ready=False.
    NotReady,
    /// The Lease lapsed.
    Unreachable,
}

/// Whether a taint was added by this controller.
pub fn is_ours(t: &Taint) -> bool {
    (t.key == TAINT_UNREACHABLE || t.key == TAINT_NOT_READY) && t.time_added.is_some()
}

/// Judges the cluster.
pub fn health(
    cluster: &Cluster,
    lease: Option<&LeaseView>,
    now: Timestamp,
    opts: &HealthOptions,
) -> Health {
    if let Some(l) = lease {
        let allowed = l.duration.saturating_add(opts.grace);
        let deadline = SignedDuration::try_from(allowed)
            .ok()
            .and_then(|d| l.renew_time.checked_add(d).ok());
        if deadline.is_some_and(|d| d < now) {
            return Health::Unreachable;
        }
    }
    let ready = ready_condition(cluster);
    match ready.map(|c| (c.status.as_str(), c.reason.as_str())) {
        // The agent renews only while it reaches its member, so a renewal
        // after its Ready=False says the False is stale (the agent is about
        // to write True): calling it not-ready in between would swap the
        // unreachable taints for not-ready ones (a fresh NoExecute) at
        // every recovery.
        Some(("False", _)) if lease.is_some_and(|l| false_is_stale(ready, l)) => Health::Healthy,
        Some(("False", _)) => Health::NotReady,
        // Our own Unknown with no Lease to say otherwise stays as it is.
        Some(("Unknown", REASON_UNKNOWN)) if lease.is_none() => Health::Unreachable,
        _ => Health::Healthy,
    }
}

fn false_is_stale(ready: Option<&Condition>, lease: &LeaseView) -> bool {
    ready.is_some_and(|c| c.last_transition_time.0 < lease.renewed)
}

fn ready_condition(cluster: &Cluster) -> Option<&Condition> {
    cluster
        .status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == CONDITION_READY)
}

/// The conditions and taints the cluster should carry; `None` when it
/// already does.
pub fn decide(
    cluster: &Cluster,
    lease: Option<&LeaseView>,
    now: Timestamp,
    opts: &HealthOptions,
) -> Option<Desired> {
    let health = health(cluster, lease, now, opts);
    let key = match health {
        Health::Healthy => None,
        Health::NotReady => Some(TAINT_NOT_READY),
        Health::Unreachable => Some(TAINT_UNREACHABLE),
    };
    let mut effects = vec![NO_SCHEDULE];
    if opts.no_execute {
        effects.push(NO_EXECUTE);
    }
    let current = &cluster.spec.taints;
    // User taints stay, in order; ours stay when still wanted (keeping
    // their timeAdded, which tolerationSeconds count from).
    let mut taints: Vec<Taint> = current
        .iter()
        .filter(|t| {
            !is_ours(t) || (Some(t.key.as_str()) == key && effects.contains(&t.effect.as_str()))
        })
        .cloned()
        .collect();
    if let Some(key) = key {
        for effect in &effects {
            let present = taints.iter().any(|t| t.key == key && t.effect == *effect);
            if !present {
                taints.push(Taint {
                    key: key.to_string(),
                    value: None,
                    effect: (*effect).to_string(),
                    time_added: Some(Time(now)),
                });
            }
        }
    }
    let mut conditions = cluster
        .status
        .as_ref()
        .map(|s| s.conditions.clone())
        .unwrap_or_default();
    let prev = conditions.iter().position(|c| c.type_ == CONDITION_READY);
    let wanted = match (health, prev.map(|i| &conditions[i])) {
        // An agent that still writes status but cannot renew (it does not
        // reach its member) says Ready=False itself: its word stays, so the
        // two writers do not take turns rewriting the condition.
        (Health::Unreachable, Some(c)) if c.status == "Unknown" || c.status == "False" => None,
        (Health::Unreachable, _) => Some(Condition {
            type_: CONDITION_READY.into(),
            status: "Unknown".into(),
            reason: REASON_UNKNOWN.into(),
            message: "the cluster agent stopped renewing its Lease".into(),
            last_transition_time: Time(now),
            observed_generation: None,
        }),
        (Health::Healthy, Some(c)) if c.status == "Unknown" && c.reason == REASON_UNKNOWN => {
            Some(Condition {
                type_: CONDITION_READY.into(),
                status: "True".into(),
                reason: REASON_RENEWED.into(),
                message: "the cluster agent renews its Lease again".into(),
                last_transition_time: Time(now),
                observed_generation: None,
            })
        }
        _ => None,
    };
    let conditions_changed = wanted.is_some();
    if let Some(c) = wanted {
        match prev {
            Some(i) => conditions[i] = c,
            None => conditions.push(c),
        }
    }
    if !conditions_changed && taints == *current {
        return None;
    }
    Some(Desired { conditions, taints })
}

/// One judgement of a cluster with damping: what [`step`] returns.
#[derive(Clone, Debug, PartialEq)]
pub struct Verdict {
    pub health: Health,
    /// Since when the cluster has been judged healthy without a break
    /// (`None` while it is not); the caller keeps it for the next step.
    pub healthy_since: Option<Timestamp>,
    /// Healthy, but keeping an unhealthy verdict until it has been healthy
    /// for the success threshold.
    pub held: bool,
    /// What to write; `None` when nothing changes (also while `held`).
    pub desired: Option<Desired>,
}

/// Whether the cluster carries what an unhealthy verdict of this
/// controller gave it: one of our taints, or our Ready=Unknown.
fn carries_verdict(cluster: &Cluster) -> bool {
    cluster.spec.taints.iter().any(is_ours)
        || ready_condition(cluster)
            .is_some_and(|c| c.status == "Unknown" && c.reason == REASON_UNKNOWN)
}

/// Judges the cluster at `now`, given since when it had been healthy
/// without a break before this judgement (`healthy_since`, from the
/// previous step; `None` at first or after an unhealthy verdict). A
/// cluster that is healthy but still carries an unhealthy verdict keeps it
/// until it has been healthy for `opts.success_threshold`; everything else
/// is [`decide`]'s.
pub fn step(
    cluster: &Cluster,
    lease: Option<&LeaseView>,
    now: Timestamp,
    opts: &HealthOptions,
    healthy_since: Option<Timestamp>,
) -> Verdict {
    let health = health(cluster, lease, now, opts);
    let healthy_since = match health {
        Health::Healthy => Some(healthy_since.unwrap_or(now).min(now)),
        Health::NotReady | Health::Unreachable => None,
    };
    let settled = healthy_since.is_some_and(|since| {
        SignedDuration::try_from(opts.success_threshold)
            .ok()
            .and_then(|d| since.checked_add(d).ok())
            .is_some_and(|end| end <= now)
    });
    let held = health == Health::Healthy && !settled && carries_verdict(cluster);
    let desired = if held {
        None
    } else {
        decide(cluster, lease, now, opts)
    };
    Verdict {
        health,
        healthy_since,
        held,
        desired,
    }
}

/// The Event of a health change written with `taints`: its type, reason
/// and message.
pub fn event(
    health: Health,
    taints: &[Taint],
) -> (crate::controllers::events::EventType, &'static str, String) {
    use crate::controllers::events::EventType;
    let list = |key: &str| {
        let effects: Vec<&str> = taints
            .iter()
            .filter(|t| t.key == key && t.time_added.is_some())
            .map(|t| t.effect.as_str())
            .collect();
        format!("{key}:{}", effects.join(","))
    };
    match health {
        Health::Unreachable => (
            EventType::Warning,
            "ClusterUnreachable",
            format!(
                "the cluster agent stopped renewing its Lease; tainted {}",
                list(TAINT_UNREACHABLE)
            ),
        ),
        Health::NotReady => (
            EventType::Warning,
            "ClusterNotReady",
            format!(
                "the cluster agent reports Ready=False; tainted {}",
                list(TAINT_NOT_READY)
            ),
        ),
        Health::Healthy => (
            EventType::Normal,
            "ClusterHealthy",
            "the cluster agent renews its Lease and reports Ready; the health taints are removed"
                .to_string(),
        ),
    }
}

#[cfg(test)]
#[path = "decide_tests.rs"]
mod tests;
