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
//! * [`gc`]: the garbage collector: dependents go with their owners
//!   (`metadata.ownerReferences`), foreground and orphan deletion, as
//!   kube-controller-manager's.
//!
//! Shared pieces: [`feed`] (store watch → index updates; a relist swaps
//! the index whole), [`queue`] (keys with dedup and per-key backoff),
//! [`runner`] (the batched reconcile loop, which decides nothing before
//! every feed listed and retries every incomplete reconcile), [`tracker`]
//! (sync state, relists, retries and queue age per controller, for
//! metrics and `/readyz`).
//!
//! Destructive writes and what confirms them (each has a test where a stale
//! index would have deleted and the confirmation stops it):
//!
//! | write | decided from | confirmed by |
//! | --- | --- | --- |
//! | binding: delete `hami-es-<cluster>` | index: no Cluster, no Work | store: Cluster absent, no Work listed in the namespace; delete pinned to the namespace's uid + resourceVersion |
//! | binding: delete a Work | binding read from the store (its clusters, eviction tasks), Work keys from the index | Work read again: still this binding's; delete pinned to its uid + resourceVersion |
//! | detector: delete a binding | template read from the store; policies from the index | policies listed from the store, the match decided again; delete pinned to the binding's uid + resourceVersion |
//! | quota: delete a member ResourceQuota Work | quota read from the store; clusters from the index | Clusters listed from the store, the desired Works decided again; delete pinned |
//! | health: taint a cluster unreachable / not-ready (evicts) | index: Lease, Cluster | Cluster and Lease read from the store, decided again; write at the Cluster's resourceVersion |
//! | events: expire an Event | Events listed from the store | delete pinned to the Event as listed |
//! | gc: delete a dependent (or remove its dangling references) | index: no owner with the referenced uid at the reference's kind, name and namespace | the dependent and each owner read again from the store, decided again (an owner whose name holds another uid is waited for 30 s); delete pinned to the dependent's uid + resourceVersion |
//! | gc: remove an owner's `foregroundDeletion` / `orphan` finalizer (the owner goes) | index: no blocking dependent left / dependents orphaned | the owner read again, its dependents found by a scan of the store; each write pinned |
//! | API: delete a namespace's content | a namespace deletion | creates in a terminating namespace are refused (403), so nothing new is lost with it |
//! | agent: delete a member object | a Work being deleted (deletionTimestamp) or a manifest dropped from its spec | the Work read again from the control plane (same uid, still deleting / still without the manifest); member delete pinned to the object's uid + resourceVersion and to the Work annotation |
//!
//! Writes that only narrow where replicas go (the scheduler dropping a
//! cluster, eviction, the descheduler) are decided on the binding read from
//! the store and on indexes swapped whole after every feed synced; a
//! cluster missing from the index makes them do less, never more.

pub mod binding;
pub mod csr;
pub mod descheduler;
pub mod detector;
pub mod estimator_dial;
pub mod events;
pub mod eviction;
pub mod feed;
pub mod gc;
pub mod health;
pub mod objects;
pub mod push;
pub mod queue;
pub mod quota;
pub mod runner;
pub mod scheduler;
pub mod status;
#[cfg(test)]
pub mod testing;
pub mod tracker;

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
    pub gc: gc::GcMetrics,
    pub csr: csr::CsrMetrics,
    pub trackers: tracker::Trackers,
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
            gc: gc::GcMetrics::register(registry),
            csr: csr::CsrMetrics::register(registry),
            trackers: tracker::Trackers::register(registry),
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
/// aggregation, cluster health and failover, the quota controller and the
/// garbage collector on `state`, and the Push controller with `push`; the
/// scheduler and the descheduler dial the estimators as `estimators` says;
/// with `csr` (a PKI), the CSR approver and signer. They stop when `stop`
/// turns true.
pub fn start(
    state: Arc<State>,
    metrics: ControllerMetrics,
    push: push::PushOptions,
    failover: FailoverOptions,
    estimators: estimator_dial::EstimatorDial,
    csr: Option<csr::CsrOptions>,
    stop: watch::Receiver<bool>,
) -> Result<Vec<tokio::task::JoinHandle<()>>, ObjectError> {
    let readiness = state.readiness.clone();
    let objects = Objects::new(state);
    let t = |name| metrics.trackers.get(name);
    let (events, events_task) = events::spawn(objects.clone(), metrics.events, stop.clone())?;
    let mut tasks = vec![
        events_task,
        health::spawn(
            objects.clone(),
            metrics.health,
            failover.health,
            events.clone(),
            t("health"),
            stop.clone(),
        )?,
        eviction::spawn(
            objects.clone(),
            metrics.eviction,
            failover.eviction,
            events.clone(),
            t("failover"),
            stop.clone(),
        )?,
        detector::spawn(
            objects.clone(),
            metrics.detector,
            t("detector"),
            stop.clone(),
        )?,
        binding::spawn(objects.clone(), metrics.binding, t("binding"), stop.clone())?,
        status::spawn(objects.clone(), metrics.status, t("status"), stop.clone())?,
        push::spawn(objects.clone(), metrics.push, push, t("push"), stop.clone())?,
        quota::spawn(objects.clone(), metrics.quota, t("quota"), stop.clone())?,
        gc::spawn(
            objects.clone(),
            metrics.gc,
            gc::GcOptions::default(),
            t("gc"),
            stop.clone(),
        ),
        scheduler::spawn_with(
            objects.clone(),
            metrics.scheduler,
            scheduler::SchedulerConfig {
                dial: estimators.clone(),
                ..Default::default()
            },
            Some(events.clone()),
            t("scheduler"),
            stop.clone(),
        )?,
    ];
    let mut running: Vec<tracker::Tracker> = [
        "health",
        "failover",
        "detector",
        "binding",
        "status",
        "push",
        "quota",
        "gc",
        "scheduler",
    ]
    .into_iter()
    .map(t)
    .collect();
    let (objects_csr, events_csr, stop_csr) = (objects.clone(), events.clone(), stop.clone());
    let descheduler = descheduler::spawn(
        objects,
        metrics.descheduler,
        failover.descheduler,
        estimators,
        events,
        t("descheduler"),
        stop,
    )?;
    if descheduler.is_some() {
        running.push(t("descheduler"));
    }
    tasks.extend(descheduler);
    if let Some(options) = csr {
        // Not one of the tracker set's names: one tracker, shared.
        let tracker = t("csr");
        let csr_task = csr::spawn(
            objects_csr,
            metrics.csr,
            options,
            events_csr,
            tracker.clone(),
            stop_csr,
        )?;
        tasks.push(csr_task);
        running.push(tracker);
    }
    tracker::register_readiness(&readiness, &running);
    Ok(tasks)
}
