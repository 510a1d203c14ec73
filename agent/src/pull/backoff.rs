//! Retry pacing and failure logging shared by every loop of the agent.
//!
//! [`Backoff`] doubles a delay from `initial` up to `max` and resets on
//! success; it also drives kube's watchers (it implements kube's backoff
//! trait). [`FailureLog`] logs the first failure of a class at `warn`, the
//! repeats at `debug`, and the recovery at `info`: one line per outage, not
//! one per attempt.

use std::collections::BTreeMap;
use std::time::Duration;

use parking_lot::Mutex;

/// Exponential backoff with a cap. No jitter: one agent per cluster, so
/// there is no herd to spread, and tests stay reproducible.
#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    /// Starts at `initial`, doubling up to `max`.
    pub fn new(initial: Duration, max: Duration) -> Self {
        let initial = initial.max(Duration::from_millis(1));
        Self {
            initial,
            max: max.max(initial),
            next: initial,
        }
    }

    /// The delay before the next attempt (and doubles the one after).
    pub fn next_delay(&mut self) -> Duration {
        let d = self.next;
        self.next = (self.next * 2).min(self.max);
        d
    }

    /// Back to `initial` (after a success).
    pub fn reset(&mut self) {
        self.next = self.initial;
    }
}

impl Iterator for Backoff {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        Some(self.next_delay())
    }
}

impl kube::runtime::utils::Backoff for Backoff {
    fn reset(&mut self) {
        Backoff::reset(self);
    }
}

/// The failure classes the agent logs (a fixed set: they are also metric
/// label values).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Class {
    /// The member cluster's API does not answer.
    MemberUnreachable,
    /// Registering the Cluster or its namespace on the control plane.
    Register,
    /// Renewing the Lease.
    LeaseRenew,
    /// Writing Cluster status.
    ClusterStatus,
    /// A watch on the member cluster (Nodes, Pods, workloads).
    MemberWatch,
    /// The watch on Works.
    WorkWatch,
    /// Applying or deleting a Work's manifests.
    Apply,
    /// Writing Work status or finalizers.
    WorkWrite,
}

impl Class {
    /// A stable name.
    pub fn as_str(self) -> &'static str {
        match self {
            Class::MemberUnreachable => "member_unreachable",
            Class::Register => "register",
            Class::LeaseRenew => "lease_renew",
            Class::ClusterStatus => "cluster_status",
            Class::MemberWatch => "member_watch",
            Class::WorkWatch => "work_watch",
            Class::Apply => "apply",
            Class::WorkWrite => "work_write",
        }
    }
}

/// Which classes are failing now.
#[derive(Debug, Default)]
pub struct FailureLog {
    failing: Mutex<BTreeMap<Class, u64>>,
}

impl FailureLog {
    /// Records a failure: logged at `warn` when the class was healthy,
    /// otherwise at `debug`.
    pub fn failed(&self, class: Class, error: &dyn std::fmt::Display) {
        let first = {
            let mut f = self.failing.lock();
            let n = f.entry(class).or_insert(0);
            *n += 1;
            *n == 1
        };
        if first {
            tracing::warn!(class = class.as_str(), %error, "failing; retrying with backoff (repeats are logged at debug)");
        } else {
            tracing::debug!(class = class.as_str(), %error, "still failing");
        }
    }

    /// Records a success: logs the recovery when the class was failing.
    pub fn ok(&self, class: Class) {
        let failures = self.failing.lock().remove(&class);
        if let Some(n) = failures {
            tracing::info!(class = class.as_str(), failures = n, "recovered");
        }
    }

    /// Whether the class is failing now.
    pub fn is_failing(&self, class: Class) -> bool {
        self.failing.lock().contains_key(&class)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_to_the_cap_and_resets() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_millis(350));
        let got: Vec<u128> = (0..5).map(|_| b.next_delay().as_millis()).collect();
        assert_eq!(got, vec![100, 200, 350, 350, 350]);
        b.reset();
        assert_eq!(b.next_delay(), Duration::from_millis(100));
    }

    #[test]
    fn failure_log_tracks_classes_separately() {
        let log = FailureLog::default();
        log.failed(Class::Apply, &"boom");
        log.failed(Class::Apply, &"boom");
        assert!(log.is_failing(Class::Apply));
        assert!(!log.is_failing(Class::LeaseRenew));
        log.ok(Class::Apply);
        assert!(!log.is_failing(Class::Apply));
    }
}
