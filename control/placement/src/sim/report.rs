//! The result of a scenario run, as a table for people and JSON for tools.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use hami_api::binding::TargetCluster;
use serde::Serialize;

use crate::outcome::{Decision, Mode, Strategy, Unschedulable};

/// Every step of a run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    /// The initial placement, then one step per event.
    pub steps: Vec<Step>,
}

/// The placement of every workload after one event.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Step {
    /// `initial`, or what the event did.
    pub event: String,
    /// One entry per workload, in scenario order.
    pub workloads: Vec<WorkloadResult>,
}

/// One workload's placement.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkloadResult {
    /// Workload name.
    pub name: String,
    /// Desired replicas.
    pub replicas: i32,
    /// Where they went, or why they could not.
    #[serde(flatten)]
    pub outcome: Outcome,
}

/// Placed or not.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "result", rename_all = "camelCase")]
pub enum Outcome {
    /// Placed.
    Scheduled {
        /// Clusters and replicas.
        clusters: Vec<TargetCluster>,
        /// How replicas were divided.
        strategy: Strategy,
        /// Fresh, scale-up, scale-down or steady.
        mode: Mode,
        /// The `clusterAffinities` term used.
        #[serde(skip_serializing_if = "Option::is_none")]
        affinity: Option<String>,
        /// Notes (estimator fallbacks, assignments above estimates).
        #[serde(skip_serializing_if = "Vec::is_empty")]
        notes: Vec<String>,
    },
    /// Not placed.
    Unschedulable {
        /// The FitError-style summary.
        message: String,
        /// Every reason per rejected cluster (last attempt).
        reasons: BTreeMap<String, Vec<String>>,
    },
}

impl Outcome {
    /// From a decision.
    pub fn from_decision(d: &Decision) -> Self {
        Outcome::Scheduled {
            clusters: d.clusters.clone(),
            strategy: d.strategy,
            mode: d.mode,
            affinity: d.affinity_name.clone(),
            notes: d.notes.iter().map(ToString::to_string).collect(),
        }
    }

    /// From an unschedulable result.
    pub fn from_unschedulable(u: &Unschedulable) -> Self {
        let reasons = u
            .attempts
            .last()
            .map(|a| {
                a.rejected
                    .iter()
                    .map(|(c, rs)| (c.clone(), rs.iter().map(ToString::to_string).collect()))
                    .collect()
            })
            .unwrap_or_default();
        Outcome::Unschedulable {
            message: u.message(),
            reasons,
        }
    }
}

impl Report {
    /// Pretty JSON (stable: every map is ordered).
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    /// A plain-text table per step.
    pub fn to_table(&self) -> String {
        let mut out = String::new();
        for step in &self.steps {
            let _ = writeln!(out, "== {} ==", step.event);
            let rows: Vec<[String; 3]> = step
                .workloads
                .iter()
                .map(|w| {
                    [
                        w.name.clone(),
                        w.replicas.to_string(),
                        placement_cell(&w.outcome),
                    ]
                })
                .collect();
            let head = [
                "WORKLOAD".to_string(),
                "REPLICAS".to_string(),
                "PLACEMENT".to_string(),
            ];
            let w0 = rows
                .iter()
                .map(|r| r[0].len())
                .chain([head[0].len()])
                .max()
                .unwrap_or(0);
            let w1 = rows
                .iter()
                .map(|r| r[1].len())
                .chain([head[1].len()])
                .max()
                .unwrap_or(0);
            for r in std::iter::once(&head).chain(rows.iter()) {
                let _ = writeln!(out, "{:<w0$}  {:>w1$}  {}", r[0], r[1], r[2]);
            }
            for w in &step.workloads {
                match &w.outcome {
                    Outcome::Scheduled { notes, .. } => {
                        for n in notes {
                            let _ = writeln!(out, "  {}: {n}", w.name);
                        }
                    }
                    Outcome::Unschedulable { reasons, .. } => {
                        for (c, rs) in reasons {
                            let _ = writeln!(out, "  {}: {c}: {}", w.name, rs.join("; "));
                        }
                    }
                }
            }
            out.push('\n');
        }
        out
    }
}

fn placement_cell(o: &Outcome) -> String {
    match o {
        Outcome::Scheduled {
            clusters,
            strategy,
            mode,
            affinity,
            ..
        } => {
            let list: Vec<String> = clusters
                .iter()
                .map(|t| format!("{}={}", t.name, t.replicas))
                .collect();
            let aff = affinity
                .as_ref()
                .map(|a| format!(", affinity {a}"))
                .unwrap_or_default();
            format!("{} ({strategy:?}, {mode:?}{aff})", list.join(" "))
        }
        Outcome::Unschedulable { message, .. } => format!("UNSCHEDULABLE: {message}"),
    }
}
