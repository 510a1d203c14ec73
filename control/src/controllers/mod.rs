//! Controllers that run inside `hami up`: a watch in, a pure decision, one
//! write out. They share the API server's [`State`] and write through
//! [`objects::Objects`], the API's own object rules called in process (see
//! that module for why not HTTP).
//!
//! * [`detector`]: template × policy → ResourceBinding.
//! * [`scheduler`]: binding × clusters × estimates → `spec.clusters` and the
//!   `Scheduled` condition, one store write per decision.
//!
//! Shared pieces: [`feed`] (store watch → index updates), [`queue`] (keys
//! with dedup and per-key backoff).

pub mod detector;
pub mod feed;
pub mod objects;
pub mod queue;
pub mod scheduler;

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
}

impl ControllerMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        Self {
            detector: detector::DetectorMetrics::register(registry),
            scheduler: scheduler::metrics::SchedulerMetrics::register(registry),
        }
    }
}

/// Starts the detector and the scheduler on `state`; they stop when `stop`
/// turns true.
pub fn start(
    state: Arc<State>,
    metrics: ControllerMetrics,
    stop: watch::Receiver<bool>,
) -> Result<Vec<tokio::task::JoinHandle<()>>, ObjectError> {
    let objects = Objects::new(state);
    Ok(vec![
        detector::spawn(objects.clone(), metrics.detector, stop.clone())?,
        scheduler::spawn(
            objects,
            metrics.scheduler,
            scheduler::SchedulerConfig::default(),
            stop,
        )?,
    ])
}
