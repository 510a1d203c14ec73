//! What a decision returns: a [`Decision`] (clusters with replicas and an
//! explanation) or [`Unschedulable`], which says per cluster every reason it
//! was rejected, as Karmada's FitError does.

use std::collections::BTreeMap;
use std::fmt;

use hami_api::binding::TargetCluster;
use serde::Serialize;
use thiserror::Error;

/// How replicas were divided.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Strategy {
    /// Every chosen cluster runs all replicas.
    Duplicated,
    /// Divided by static weights.
    StaticWeight,
    /// Divided by available replicas.
    DynamicWeight,
    /// Packed into as few clusters as capacity allows.
    Aggregated,
}

/// How the decision relates to the current assignment.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Mode {
    /// Computed from scratch (no usable assignment, a reschedule, or a
    /// strategy that always recomputes: duplicated and static weights).
    Fresh,
    /// The current assignment was kept; new replicas were added to it.
    ScaleUp,
    /// The current assignment was shrunk in proportion.
    ScaleDown,
    /// The current assignment already fits: kept as is.
    Steady,
}

/// Something the caller should know about a decision that succeeded.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "note", rename_all = "camelCase")]
pub enum Note {
    /// The accurate estimator did not answer; the resource summary was used.
    EstimatorUnreachable {
        /// The cluster.
        cluster: String,
    },
    /// Static weights gave a cluster more replicas than its estimate.
    ExceedsEstimate {
        /// The cluster.
        cluster: String,
        /// Replicas assigned.
        assigned: i64,
        /// Replicas it was estimated to hold.
        available: i64,
    },
}

impl fmt::Display for Note {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Note::EstimatorUnreachable { cluster } => {
                write!(
                    f,
                    "estimator unreachable for {cluster}: general estimate used"
                )
            }
            Note::ExceedsEstimate {
                cluster,
                assigned,
                available,
            } => write!(
                f,
                "static weights assign {assigned} replicas to {cluster}, above its estimate of {available}"
            ),
        }
    }
}

/// A successful placement.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Decision {
    /// Target clusters and replicas, sorted by name.
    pub clusters: Vec<TargetCluster>,
    /// The `clusterAffinities` term used, if the placement has such terms.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub affinity_name: Option<String>,
    /// How replicas were divided.
    pub strategy: Strategy,
    /// How the result relates to the current assignment.
    pub mode: Mode,
    /// Clusters that passed the filters.
    pub feasible: usize,
    /// Clusters considered.
    pub considered: usize,
    /// Fallbacks and over-estimate assignments.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<Note>,
}

impl Decision {
    /// Total replicas assigned.
    pub fn total(&self) -> i64 {
        self.clusters.iter().map(|t| i64::from(t.replicas)).sum()
    }

    /// Replicas assigned to `cluster`.
    pub fn replicas_on(&self, cluster: &str) -> i32 {
        self.clusters
            .iter()
            .find(|t| t.name == cluster)
            .map_or(0, |t| t.replicas)
    }
}

impl fmt::Display for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:?} ({:?}) over {}/{} feasible clusters",
            self.strategy, self.mode, self.feasible, self.considered
        )?;
        if let Some(a) = &self.affinity_name {
            write!(f, ", affinity {a:?}")?;
        }
        write!(f, ":")?;
        for t in &self.clusters {
            write!(f, " {}={}", t.name, t.replicas)?;
        }
        for n in &self.notes {
            write!(f, "; {n}")?;
        }
        Ok(())
    }
}

/// Why one cluster was rejected.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(tag = "reason", rename_all = "camelCase")]
pub enum Reason {
    /// The Ready condition is not True.
    NotReady,
    /// Outside the placement's cluster affinity.
    AffinityMismatch,
    /// A NoSchedule or NoExecute taint the placement does not tolerate.
    UntoleratedTaint {
        /// The taint, as `{key=value:Effect}`.
        taint: String,
    },
    /// The cluster does not serve the template's apiVersion and kind.
    ApiNotEnabled {
        /// The template's apiVersion.
        api_version: String,
        /// The template's kind.
        kind: String,
    },
    /// The binding is being evicted from this cluster.
    Evicting,
    /// A static weight of 0.
    ZeroStaticWeight,
    /// The cluster lacks the field or label a spread constraint groups by.
    NoSpreadKey {
        /// `region`, `zone`, `provider` or `label <key>`.
        key: String,
    },
    /// Too little capacity (Duplicated needs room for every replica).
    InsufficientCapacity {
        /// Replicas it can hold.
        available: i64,
        /// Replicas it would need to hold.
        needed: i64,
    },
    /// Neither the estimator nor a resource summary says what it can hold.
    NoCapacityData,
}

impl Reason {
    /// The phrase used to count clusters with this reason (numbers left out,
    /// so that clusters group).
    pub fn summary(&self) -> String {
        match self {
            Reason::NotReady => "were not ready".into(),
            Reason::AffinityMismatch => {
                "did not match the placement cluster affinity constraint".into()
            }
            Reason::UntoleratedTaint { taint } => format!("had untolerated taint {taint}"),
            Reason::ApiNotEnabled { api_version, kind } => {
                format!("did not serve {api_version} {kind}")
            }
            Reason::Evicting => "were being evicted from".into(),
            Reason::ZeroStaticWeight => "had a static weight of 0".into(),
            Reason::NoSpreadKey { key } => format!("had no {key} to spread by"),
            Reason::InsufficientCapacity { .. } => "had insufficient capacity".into(),
            Reason::NoCapacityData => {
                "had no capacity data (estimator unreachable, no resource summary)".into()
            }
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::InsufficientCapacity { available, needed } => {
                write!(f, "can hold {available} replicas, needs {needed}")
            }
            other => f.write_str(&other.summary()),
        }
    }
}

/// Why the clusters that passed the filters still cannot take the workload.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "problem", rename_all = "camelCase")]
pub enum Problem {
    /// Not enough capacity in all feasible clusters together.
    CapacityShort {
        /// Replicas that had to be placed.
        needed: i64,
        /// Replicas the feasible clusters can hold together.
        available: i64,
    },
    /// The spread constraints cannot be met.
    Spread {
        /// What failed.
        message: String,
    },
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::CapacityShort { needed, available } => write!(
                f,
                "the feasible clusters can hold {available} replicas, {needed} needed"
            ),
            Problem::Spread { message } => write!(f, "spread constraints: {message}"),
        }
    }
}

/// One try at placing: the whole placement, or one `clusterAffinities` term.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Attempt {
    /// The `clusterAffinities` term, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub affinity_name: Option<String>,
    /// Clusters considered.
    pub considered: usize,
    /// Every reason each rejected cluster was rejected, by cluster name.
    pub rejected: BTreeMap<String, Vec<Reason>>,
    /// Problems of the placement as a whole.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub problems: Vec<Problem>,
}

impl fmt::Display for Attempt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(a) = &self.affinity_name {
            write!(f, "affinity {a:?}: ")?;
        }
        let available = self.considered - self.rejected.len();
        let available = if self.problems.is_empty() {
            available
        } else {
            0
        };
        write!(f, "{available}/{} clusters are available", self.considered)?;
        // Count clusters per reason phrase; most frequent first, then by text.
        let mut counts: BTreeMap<String, usize> = BTreeMap::new();
        for reasons in self.rejected.values() {
            for r in reasons {
                *counts.entry(r.summary()).or_default() += 1;
            }
        }
        let mut counts: Vec<(String, usize)> = counts.into_iter().collect();
        counts.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        let mut sep = ": ";
        for (phrase, n) in counts {
            write!(f, "{sep}{n} cluster(s) {phrase}")?;
            sep = ", ";
        }
        for p in &self.problems {
            write!(f, "{sep}{p}")?;
            sep = ", ";
        }
        f.write_str(".")
    }
}

/// No placement is possible. Every attempt (one per `clusterAffinities`
/// term, or one) says why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Error)]
#[serde(rename_all = "camelCase")]
#[error("{}", self.message())]
pub struct Unschedulable {
    /// The attempts in order.
    pub attempts: Vec<Attempt>,
}

impl Unschedulable {
    /// One line per attempt, joined by `; `.
    pub fn message(&self) -> String {
        self.attempts
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ")
    }

    /// Every reason `cluster` was rejected in the last attempt.
    pub fn reasons_for(&self, cluster: &str) -> &[Reason] {
        self.attempts
            .last()
            .and_then(|a| a.rejected.get(cluster))
            .map_or(&[], Vec::as_slice)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fit_error_message_counts_reasons_like_karmada() {
        let mut rejected = BTreeMap::new();
        rejected.insert("a".to_string(), vec![Reason::AffinityMismatch]);
        rejected.insert(
            "b".to_string(),
            vec![Reason::AffinityMismatch, Reason::NotReady],
        );
        rejected.insert(
            "c".to_string(),
            vec![Reason::UntoleratedTaint {
                taint: "{gpu=a100:NoSchedule}".into(),
            }],
        );
        rejected.insert(
            "d".to_string(),
            vec![Reason::InsufficientCapacity {
                available: 1,
                needed: 3,
            }],
        );
        let u = Unschedulable {
            attempts: vec![Attempt {
                affinity_name: None,
                considered: 5,
                rejected,
                problems: vec![],
            }],
        };
        assert_eq!(
            u.to_string(),
            "1/5 clusters are available: 2 cluster(s) did not match the placement cluster affinity constraint, \
             1 cluster(s) had insufficient capacity, 1 cluster(s) had untolerated taint {gpu=a100:NoSchedule}, \
             1 cluster(s) were not ready."
        );
        assert_eq!(
            u.reasons_for("b"),
            &[Reason::AffinityMismatch, Reason::NotReady]
        );
        assert_eq!(u.reasons_for("e"), &[] as &[Reason]);
    }
}
