//! Controllers that run inside `hami up`: a watch in, a pure decision, one
//! write out. They share the API server's [`State`] and write through
//! [`objects::Objects`], the API's own object rules called in process (see
//! that module for why not HTTP).
//!
//! * [`detector`]: template × policy → ResourceBinding.
//! * [`scheduler`]: binding × clusters × estimates → `spec.clusters` and the
//!   `Scheduled` condition, one store write per decision.
//! * [`binding`]: binding × template × OverridePolicy → one Work per target
//!   cluster in `hami-es-<cluster>`; execution namespaces.
//! * [`status`]: Work status → binding `status.aggregatedStatus` → the
//!   template's status.
//! * [`push`]: for each Push Cluster, the agent logic run in process
//!   against the member with the credentials of its Secret.
//! * [`health`]: agent Leases and reported readiness → the Cluster's Ready
//!   condition and `cluster.hami.io/unreachable` / `not-ready` taints.
//! * [`eviction`]: untolerated NoExecute taints → graceful eviction tasks
//!   (the binding leaves the cluster; its old Work stays until the
//!   replacements are ready), rate-limited.
//! * [`descheduler`]: replicas that stay unschedulable in a cluster are
//!   taken from it, for the scheduler to place where they fit.
//! * [`events`]: Kubernetes Events for eviction, failover, descheduling and
//!   quota decisions.
//! * [`quota`]: FederatedResourceQuota status, metrics and the member
//!   ResourceQuotas; its admission gate runs inside the scheduler.
//!
//! Shared pieces: [`feed`] (store watch → index updates), [`queue`] (keys
//! with dedup and per-key backoff), [`runner`] (the batched reconcile loop).

pub mod binding;
pub mod descheduler;
pub mod detector;
pub mod events;
pub mod eviction;
pub mod feed;
pub mod health;
pub mod objects;
pub mod push;
pub mod queue;
pub mod quota;
pub mod runner;
pub mod scheduler;
pub mod status;

use std::sync::Arc;

use hami_apiserver::State;
use prometheus_client::registry::Registry;
use tokio::sync::watch;

pub use objects::{ObjectError, Objects};

/// Metrics of every controller, registered on the process registry.
#[derive(Clone)]
pub struct ControllerMetrics {
    pub detector: detector::DetectorMetrics,
    pub scheduler: scheduler::metrics::SchedulerMetrics,
    pub binding: binding::BindingMetrics,
    pub status: status::StatusMetrics,
    pub push: push::PushMetrics,
    pub health: health::HealthMetrics,
    pub eviction: eviction::EvictionMetrics,
    pub descheduler: descheduler::DeschedulerMetrics,
    pub events: events::EventMetrics,
    pub quota: quota::QuotaMetrics,
}

impl ControllerMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        Self {
            detector: detector::DetectorMetrics::register(registry),
            scheduler: scheduler::metrics::SchedulerMetrics::register(registry),
            binding: binding::BindingMetrics::register(registry),
            status: status::StatusMetrics::register(registry),
            push: push::PushMetrics::register(registry),
            health: health::HealthMetrics::register(registry),
            eviction: eviction::EvictionMetrics::register(registry),
            descheduler: descheduler::DeschedulerMetrics::register(registry),
            events: events::EventMetrics::register(registry),
            quota: quota::QuotaMetrics::register(registry),
        }
    }
}

/// Failover settings of [`start`].
#[derive(Clone, Copy, Debug, Default)]
pub struct FailoverOptions {
    pub health: health::HealthOptions,
    pub eviction: eviction::EvictionOptions,
    pub descheduler: descheduler::DeschedulerOptions,
}

/// Starts the detector, the scheduler, the binding controller, status
/// aggregation, cluster health and failover on `state`, and the Push
/// controller with `push`; they stop when `stop` turns true.
pub fn start(
    state: Arc<State>,
    metrics: ControllerMetrics,
    push: push::PushOptions,
    failover: FailoverOptions,
    stop: watch::Receiver<bool>,
) -> Result<Vec<tokio::task::JoinHandle<()>>, ObjectError> {
    let objects = Objects::new(state);
    let (events, events_task) = events::spawn(objects.clone(), metrics.events, stop.clone())?;
    let mut tasks = vec![
        events_task,
        health::spawn(
            objects.clone(),
            metrics.health,
            failover.health,
            events.clone(),
            stop.clone(),
        )?,
        eviction::spawn(
            objects.clone(),
            metrics.eviction,
            failover.eviction,
            events.clone(),
            stop.clone(),
        )?,
        detector::spawn(objects.clone(), metrics.detector, stop.clone())?,
        binding::spawn(objects.clone(), metrics.binding, stop.clone())?,
        status::spawn(objects.clone(), metrics.status, stop.clone())?,
        push::spawn(objects.clone(), metrics.push, push, stop.clone())?,
        quota::spawn(objects.clone(), metrics.quota, stop.clone())?,
        scheduler::spawn_with(
            objects.clone(),
            metrics.scheduler,
            scheduler::SchedulerConfig::default(),
            Some(events.clone()),
            stop.clone(),
        )?,
    ];
    tasks.extend(descheduler::spawn(
        objects,
        metrics.descheduler,
        failover.descheduler,
        events,
        stop,
    )?);
    Ok(tasks)
}
