//! Scheduler metrics, prefix `hami_scheduler_`. Labels come from fixed sets.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Result of one scheduling attempt.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum AttemptResult {
    Scheduled,
    Unschedulable,
    /// Refused by a FederatedResourceQuota (the binding waits for usage to drop).
    QuotaExceeded,
    Error,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabel {
    result: &'static str,
}

/// The scheduler's metrics.
#[derive(Clone)]
pub struct SchedulerMetrics {
    attempts: Family<ResultLabel, Counter>,
    pub algorithm_seconds: Histogram,
    pub e2e_seconds: Histogram,
    pub estimator_seconds: Histogram,
    pub estimator_errors: Counter,
    pub unschedulable: Gauge,
    pub writes_in_flight: Gauge,
    pub fresh_reschedules: Counter,
}

impl SchedulerMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self {
            attempts: Family::default(),
            // One decision takes microseconds at 100 clusters and about a
            // millisecond at 5,000: 1 µs to 65 ms in steps of 4.
            algorithm_seconds: Histogram::new(exponential_buckets(1e-6, 4.0, 9)),
            // Dequeue to durable write: one group commit (a few ms) when idle,
            // seconds behind a backlog of thousands: 0.5 ms to 8 s, doubling.
            e2e_seconds: Histogram::new(exponential_buckets(0.0005, 2.0, 15)),
            // A loopback or in-cluster gRPC call is sub-millisecond to a few
            // ms; the timeout is 1 s: 0.25 ms to 1 s, doubling.
            estimator_seconds: Histogram::new(exponential_buckets(0.00025, 2.0, 13)),
            estimator_errors: Counter::default(),
            unschedulable: Gauge::default(),
            writes_in_flight: Gauge::default(),
            fresh_reschedules: Counter::default(),
        };
        let sub = registry.sub_registry_with_prefix("hami_scheduler");
        sub.register(
            "attempts",
            "Scheduling attempts by result (scheduled, unschedulable, quota_exceeded, error)",
            m.attempts.clone(),
        );
        sub.register(
            "algorithm_duration_seconds",
            "Time the placement core took for one decision",
            m.algorithm_seconds.clone(),
        );
        sub.register(
            "e2e_duration_seconds",
            "Time from taking a binding off the queue to its decision being durably written",
            m.e2e_seconds.clone(),
        );

        sub.register(
            "estimator_call_duration_seconds",
            "Duration of one estimator gRPC call (a batch of shapes for one cluster)",
            m.estimator_seconds.clone(),
        );
        sub.register(
            "estimator_errors",
            "Estimator calls that failed or timed out (the general estimate was used)",
            m.estimator_errors.clone(),
        );
        sub.register(
            "unschedulable_bindings",
            "Bindings whose last decision was unschedulable",
            m.unschedulable.clone(),
        );
        sub.register(
            "writes_in_flight",
            "Decision writes submitted to the store and not yet durable",
            m.writes_in_flight.clone(),
        );
        sub.register(
            "fresh_reschedules",
            "Decisions divided afresh because the binding's rescheduleTriggeredAt is later than its lastScheduledTime",
            m.fresh_reschedules.clone(),
        );
        m
    }

    /// Counts one attempt.
    pub fn attempt(&self, result: AttemptResult) {
        let result = match result {
            AttemptResult::Scheduled => "scheduled",
            AttemptResult::Unschedulable => "unschedulable",
            AttemptResult::QuotaExceeded => "quota_exceeded",
            AttemptResult::Error => "error",
        };
        self.attempts.get_or_create(&ResultLabel { result }).inc();
    }

    /// Attempts counted with `result` so far.
    pub fn attempts(&self, result: AttemptResult) -> u64 {
        let result = match result {
            AttemptResult::Scheduled => "scheduled",
            AttemptResult::Unschedulable => "unschedulable",
            AttemptResult::QuotaExceeded => "quota_exceeded",
            AttemptResult::Error => "error",
        };
        self.attempts.get_or_create(&ResultLabel { result }).get()
    }
}
