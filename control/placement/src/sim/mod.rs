//! What-if placement over a described fleet, with no servers: the library
//! behind `hami sim SCENARIO.yaml`. The caller parses the file (YAML or
//! JSON) into a [`Scenario`]; [`run`] places every workload, then applies
//! each event and places every workload again, keeping each workload's
//! assignment and each cluster's remaining capacity from step to step.
//!
//! Deterministic: clusters are sorted by name before anything else, so the
//! order they are listed in does not matter; workloads are placed in the
//! order listed (earlier ones take capacity first).

pub mod report;
pub mod scenario;

use std::collections::BTreeSet;

use hami_api::binding::TargetCluster;
use thiserror::Error;

use crate::capacity::general_estimate;
use crate::schedule::schedule;
use crate::view::{BindingView, ClusterView, Shape};

pub use report::{Outcome, Report, Step, WorkloadResult};
pub use scenario::{Event, Scenario, SimCluster, SimWorkload};

/// Why a scenario cannot run.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SimError {
    /// Two clusters share a name.
    #[error("cluster {0:?} is listed twice")]
    DuplicateCluster(String),
    /// Two workloads share a name.
    #[error("workload {0:?} is listed twice")]
    DuplicateWorkload(String),
    /// An event names a cluster the scenario does not list.
    #[error("event {index}: no cluster named {name:?}")]
    UnknownCluster {
        /// Position of the event.
        index: usize,
        /// The name.
        name: String,
    },
    /// An event names a workload the scenario does not list.
    #[error("event {index}: no workload named {name:?}")]
    UnknownWorkload {
        /// Position of the event.
        index: usize,
        /// The name.
        name: String,
    },
    /// A replica count below zero.
    #[error("{what}: replicas must not be negative, got {replicas}")]
    NegativeReplicas {
        /// The workload or event.
        what: String,
        /// The value.
        replicas: i32,
    },
}

/// A cluster during the run.
struct State {
    view: ClusterView,
    capacity: std::collections::BTreeMap<String, i64>,
    estimator_down: bool,
}

/// A workload during the run.
struct Work {
    binding: BindingView,
    shape_name: Option<String>,
}

fn validate(s: &Scenario) -> Result<(), SimError> {
    let mut seen = BTreeSet::new();
    for c in &s.clusters {
        if !seen.insert(c.name.as_str()) {
            return Err(SimError::DuplicateCluster(c.name.clone()));
        }
    }
    let mut works = BTreeSet::new();
    for w in &s.workloads {
        if !works.insert(w.name.as_str()) {
            return Err(SimError::DuplicateWorkload(w.name.clone()));
        }
        if w.replicas < 0 {
            return Err(SimError::NegativeReplicas {
                what: w.name.clone(),
                replicas: w.replicas,
            });
        }
    }
    for (index, e) in s.events.iter().enumerate() {
        match e {
            Event::Scale { workload, replicas } => {
                if !works.contains(workload.as_str()) {
                    return Err(SimError::UnknownWorkload {
                        index,
                        name: workload.clone(),
                    });
                }
                if *replicas < 0 {
                    return Err(SimError::NegativeReplicas {
                        what: format!("event {index}"),
                        replicas: *replicas,
                    });
                }
            }
            Event::Taint { cluster, .. } | Event::ClusterDown { cluster } => {
                if !seen.contains(cluster.as_str()) {
                    return Err(SimError::UnknownCluster {
                        index,
                        name: cluster.clone(),
                    });
                }
            }
        }
    }
    Ok(())
}

fn state_of(c: &SimCluster) -> State {
    let mut view = ClusterView::new(c.name.clone());
    view.labels = c.labels.clone();
    view.provider = c.provider.clone();
    view.region = c.region.clone();
    view.zones = c.zones.iter().chain(&c.zone).cloned().collect();
    view.zones.sort();
    view.zones.dedup();
    view.taints = c.taints.clone();
    view.ready = c.ready;
    view.free = c.free.as_ref().map(|f| Shape::from_resource_list(f).0);
    State {
        view,
        capacity: c
            .capacity
            .iter()
            .map(|(k, v)| (k.clone(), i64::from(*v)))
            .collect(),
        estimator_down: c.estimator_down,
    }
}

/// What the simulated estimator answers for `work` on `state`.
fn estimate(state: &State, work: &Work) -> Option<i32> {
    if state.estimator_down {
        return None;
    }
    let listed = work
        .shape_name
        .as_ref()
        .and_then(|s| state.capacity.get(s))
        .copied();
    let n = match listed {
        Some(n) => n,
        None => general_estimate(state.view.free.as_ref(), &work.binding.request)?,
    };
    Some(i32::try_from(n.max(0)).unwrap_or(i32::MAX))
}

/// Takes (or gives back) what moving from `old` to `new` uses.
fn account(states: &mut [State], work: &Work, old: &[TargetCluster], new: &[TargetCluster]) {
    for s in states.iter_mut() {
        let before = old
            .iter()
            .find(|t| t.name == s.view.name)
            .map_or(0, |t| t.replicas);
        let after = new
            .iter()
            .find(|t| t.name == s.view.name)
            .map_or(0, |t| t.replicas);
        let delta = i64::from(after) - i64::from(before);
        if delta == 0 {
            continue;
        }
        if let Some(name) = &work.shape_name
            && let Some(c) = s.capacity.get_mut(name)
        {
            *c = (*c - delta).max(0);
        }
        if let Some(free) = s.view.free.as_mut() {
            for (res, per) in &work.binding.request.0 {
                if let Some(f) = free.get_mut(res) {
                    *f = (*f - per * i128::from(delta)).max(0);
                }
            }
        }
    }
}

fn place_all(states: &mut [State], works: &mut [Work], label: String) -> Step {
    let mut results = Vec::with_capacity(works.len());
    for w in works.iter_mut() {
        let views: Vec<ClusterView> = states.iter().map(|s| s.view.clone()).collect();
        let avail: Vec<Option<i32>> = states.iter().map(|s| estimate(s, w)).collect();
        let outcome = match schedule(&w.binding, &views, &avail) {
            Ok(d) => {
                account(states, w, &w.binding.current, &d.clusters);
                w.binding.current = d.clusters.clone();
                Outcome::from_decision(&d)
            }
            Err(u) => Outcome::from_unschedulable(&u),
        };
        results.push(WorkloadResult {
            name: w.binding.key.clone(),
            replicas: w.binding.replicas,
            outcome,
        });
    }
    Step {
        event: label,
        workloads: results,
    }
}

/// Runs a scenario: the initial placement, then one step per event.
pub fn run(scenario: &Scenario) -> Result<Report, SimError> {
    validate(scenario)?;
    let mut clusters: Vec<&SimCluster> = scenario.clusters.iter().collect();
    clusters.sort_by(|a, b| a.name.cmp(&b.name));
    let mut states: Vec<State> = clusters.into_iter().map(state_of).collect();
    let mut works: Vec<Work> = scenario
        .workloads
        .iter()
        .map(|w| {
            let mut binding = BindingView::new(&w.name, w.replicas, w.placement.clone());
            binding.request = Shape::from_resource_list(&w.request);
            Work {
                binding,
                shape_name: w.shape.clone(),
            }
        })
        .collect();
    let mut steps = vec![place_all(&mut states, &mut works, "initial".to_string())];
    for e in &scenario.events {
        match e {
            Event::Scale { workload, replicas } => {
                for w in works.iter_mut().filter(|w| w.binding.key == *workload) {
                    w.binding.replicas = *replicas;
                }
            }
            Event::Taint { cluster, .. } => {
                if let Some(t) = e.taint() {
                    for s in states.iter_mut().filter(|s| s.view.name == *cluster) {
                        s.view.taints.push(t.clone());
                    }
                }
            }
            Event::ClusterDown { cluster } => {
                for s in states.iter_mut().filter(|s| s.view.name == *cluster) {
                    s.view.ready = false;
                }
                // Replicas there are lost: drop them from every assignment.
                for w in works.iter_mut() {
                    w.binding.current.retain(|t| t.name != *cluster);
                }
            }
        }
        steps.push(place_all(&mut states, &mut works, e.describe()));
    }
    Ok(Report { steps })
}
