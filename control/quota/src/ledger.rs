//! One quota's limits, usage and the charge of every binding in its
//! namespace: the admission decision (`check`), the reservation (`commit`, or
//! both at once with `admit`), quota as scheduling capacity (`remaining_for`)
//! and the slow, obviously right sum (`recompute`).
//!
//! A step is refused only for a resource it raises: for each quota line the
//! binding's new charge exceeds its old one, the line's usage after the step
//! must stay within the limit (overall, and in each cluster with a static
//! assignment naming it). A step that raises nothing (scale-down, deletion, an
//! eviction task ending) is always accepted, even while usage is above a
//! lowered limit. With `check_from`, "its old one" is the part of the held
//! charge that was granted (the accountant passes the binding's settled
//! state), so a charge held but never admitted grants nothing.

use std::collections::BTreeMap;

use hami_api::quantity::format_milli;
use hami_api::quota::FederatedResourceQuotaSpec;

use crate::accounting::{Accountant, AccountingError, Charge};
use crate::amounts::{AmountError, Amounts};
use crate::models::GpuModels;
use crate::request::ReplicaRequest;

/// A step that would take a quota line past its limit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "exceeded quota{}: {resource}: requested {}, used {}, limited {}",
    cluster.as_ref().map(|c| format!(" in cluster {c}")).unwrap_or_default(),
    format_milli(*requested),
    format_milli(*used),
    format_milli(*hard)
)]
pub struct QuotaExceeded {
    /// The quota line.
    pub resource: String,
    /// What the step adds to the line (new charge − old charge), milli-units.
    pub requested: i128,
    /// The line's usage before the step, milli-units.
    pub used: i128,
    /// The line's limit, milli-units.
    pub hard: i128,
    /// The cluster whose static assignment would be exceeded; `None` for overall.
    pub cluster: Option<String>,
}

/// Why the ledger refused or could not apply a step.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LedgerError {
    /// The step would exceed the quota.
    #[error("{0}")]
    Exceeded(#[from] QuotaExceeded),
    /// A limit is malformed, or a sum left the accounted range.
    #[error("{0}")]
    Amount(#[from] AmountError),
    /// The binding's usage could not be computed.
    #[error("{0}")]
    Accounting(#[from] AccountingError),
    /// A delta was checked against a charge the ledger no longer holds.
    #[error("binding {key}: its charge changed since the check")]
    Stale {
        /// The binding.
        key: String,
    },
    /// New limits name other resources: charges must be computed again.
    #[error("the quota's resource names changed; rebuild the ledger from the bindings")]
    NamesChanged,
    /// Two static assignments for one cluster.
    #[error("staticAssignments: cluster {0} appears twice")]
    DuplicateCluster(String),
}

/// A quota's limits in milli-units.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct QuotaLimits {
    /// `spec.overall`.
    pub overall: Amounts,
    /// `spec.staticAssignments` per cluster.
    pub static_assignments: BTreeMap<String, Amounts>,
}

impl QuotaLimits {
    /// Parses a quota spec (validation has already refused malformed specs;
    /// this answers an error rather than trusting it).
    pub fn from_spec(spec: &FederatedResourceQuotaSpec) -> Result<Self, LedgerError> {
        let overall = Amounts::from_resource_list(&spec.overall)?;
        let mut static_assignments = BTreeMap::new();
        for a in &spec.static_assignments {
            let hard = Amounts::from_resource_list(&a.hard)?;
            if static_assignments
                .insert(a.cluster_name.clone(), hard)
                .is_some()
            {
                return Err(LedgerError::DuplicateCluster(a.cluster_name.clone()));
            }
        }
        Ok(Self {
            overall,
            static_assignments,
        })
    }

    /// Every resource name a limit mentions, in order.
    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .overall
            .names()
            .chain(self.static_assignments.values().flat_map(Amounts::names))
            .map(str::to_string)
            .collect();
        names.sort();
        names.dedup();
        names
    }

    /// An accountant that counts exactly these names.
    pub fn accountant<'a>(&self, models: &'a GpuModels) -> Accountant<'a> {
        Accountant::new(self.names(), models)
    }
}

/// A checked step for one binding: its charge before and after.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delta {
    /// The binding (`namespace/name`, or any stable key the caller picks).
    pub key: String,
    /// The charge the ledger held for it (`None`: a new binding).
    pub old: Option<Charge>,
    /// The charge after the step (`None`: the binding is gone).
    pub new: Option<Charge>,
}

impl Delta {
    /// Whether the step lowers some line (a waiting binding may now fit).
    pub fn frees_quota(&self) -> bool {
        let empty = Charge::default();
        let old = self.old.as_ref().unwrap_or(&empty);
        let new = self.new.as_ref().unwrap_or(&empty);
        old.overall.iter().any(|(k, v)| new.overall.get(k) < v)
            || old.clusters.iter().any(|(c, a)| {
                let n = new.in_cluster(c);
                a.iter().any(|(k, v)| n.get(k) < v)
            })
    }
}

/// Usage overall and per cluster: the sum of `charges`.
pub fn recompute<'a>(
    charges: impl IntoIterator<Item = &'a Charge>,
) -> Result<(Amounts, BTreeMap<String, Amounts>), AmountError> {
    let mut overall = Amounts::new();
    let mut clusters: BTreeMap<String, Amounts> = BTreeMap::new();
    for c in charges {
        overall.add_all(&c.overall)?;
        for (name, a) in &c.clusters {
            clusters.entry(name.clone()).or_default().add_all(a)?;
        }
    }
    Ok((overall.without_zeros(), nonzero(clusters)))
}

/// One quota's ledger. See the module docs for the admission rule.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct QuotaLedger {
    limits: QuotaLimits,
    used: Amounts,
    used_by_cluster: BTreeMap<String, Amounts>,
    charges: BTreeMap<String, Charge>,
}

impl QuotaLedger {
    /// An empty ledger under `limits`.
    pub fn new(limits: QuotaLimits) -> Self {
        Self {
            limits,
            ..Self::default()
        }
    }

    /// A ledger holding `charges` as they are (a restart: what is placed is
    /// placed, even above the limits). Usage is their sum.
    pub fn rebuild(
        limits: QuotaLimits,
        charges: impl IntoIterator<Item = (String, Charge)>,
    ) -> Result<Self, LedgerError> {
        let charges: BTreeMap<String, Charge> = charges.into_iter().collect();
        let (used, used_by_cluster) = recompute(charges.values())?;
        Ok(Self {
            limits,
            used,
            used_by_cluster,
            charges,
        })
    }

    /// Replaces the limits when they name the same resources (charges stay
    /// valid); otherwise answers `NamesChanged` and changes nothing.
    pub fn set_limits(&mut self, limits: QuotaLimits) -> Result<(), LedgerError> {
        if limits.names() != self.limits.names() {
            return Err(LedgerError::NamesChanged);
        }
        self.limits = limits;
        Ok(())
    }

    /// The limits.
    pub fn limits(&self) -> &QuotaLimits {
        &self.limits
    }

    /// Usage against `overall`.
    pub fn used(&self) -> &Amounts {
        &self.used
    }

    /// Usage in one cluster (zero when none).
    pub fn used_in(&self, cluster: &str) -> Amounts {
        self.used_by_cluster
            .get(cluster)
            .cloned()
            .unwrap_or_default()
    }

    /// Clusters with usage, in name order.
    pub fn clusters_used(&self) -> impl Iterator<Item = (&str, &Amounts)> {
        self.used_by_cluster.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// The charge held for a binding.
    pub fn charge_of(&self, key: &str) -> Option<&Charge> {
        self.charges.get(key)
    }

    /// Every binding's charge, in key order.
    pub fn charges(&self) -> impl Iterator<Item = (&str, &Charge)> {
        self.charges.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// Decides whether binding `key` may move from the charge the ledger
    /// holds for it to `new` (`None`: deleted). Reserves nothing.
    pub fn check(&self, key: &str, new: Option<Charge>) -> Result<Delta, LedgerError> {
        self.check_from(key, new, None)
    }

    /// [`check`](Self::check) where only `admitted` (what the binding was
    /// last admitted with) counts as already granted: a line the new charge
    /// raises above `admitted` must fit, with the binding's whole held
    /// charge given back, even when the held charge is larger (a larger
    /// request another controller wrote is held, not granted). `None`
    /// grants what is held (plain `check`).
    pub fn check_from(
        &self,
        key: &str,
        new: Option<Charge>,
        admitted: Option<&Charge>,
    ) -> Result<Delta, LedgerError> {
        let old = self.charges.get(key).cloned();
        let empty = Charge::default();
        let (o, n) = (
            old.as_ref().unwrap_or(&empty),
            new.as_ref().unwrap_or(&empty),
        );
        let a = admitted.unwrap_or(o);
        for (name, hard) in self.limits.overall.iter() {
            let line = Line {
                used: &self.used,
                held: &o.overall,
                granted: &a.overall,
                new: &n.overall,
            };
            exceeds(name, hard, &line, None)?;
        }
        for (cluster, limits) in &self.limits.static_assignments {
            let used = self.used_in(cluster);
            let (oc, ac, nc) = (
                o.in_cluster(cluster),
                a.in_cluster(cluster),
                n.in_cluster(cluster),
            );
            let line = Line {
                used: &used,
                held: &oc,
                granted: &ac,
                new: &nc,
            };
            for (name, hard) in limits.iter() {
                exceeds(name, hard, &line, Some(cluster))?;
            }
        }
        Ok(Delta {
            key: key.to_string(),
            old,
            new,
        })
    }

    /// Applies a checked delta. It is checked again against the current
    /// usage (other commits may have come between); a delta whose old charge
    /// is not the one held any more is `Stale`.
    pub fn commit(&mut self, delta: Delta) -> Result<(), LedgerError> {
        if self.charges.get(&delta.key) != delta.old.as_ref() {
            return Err(LedgerError::Stale { key: delta.key });
        }
        let checked = self.check(&delta.key, delta.new)?;
        self.apply(checked)
    }

    /// Checks and reserves in one step: the single writer's call.
    pub fn admit(&mut self, key: &str, new: Option<Charge>) -> Result<Delta, LedgerError> {
        let delta = self.check(key, new)?;
        self.apply(delta.clone())?;
        Ok(delta)
    }

    /// Records what binding `key` holds now (`None`: nothing), with no limit
    /// check: the store already holds it (a watch event; what is placed is
    /// placed). Answers whether some line went down, so that waiting
    /// bindings may be tried again.
    pub fn set_charge(&mut self, key: &str, new: Option<Charge>) -> Result<bool, LedgerError> {
        let delta = Delta {
            key: key.to_string(),
            old: self.charges.get(key).cloned(),
            new,
        };
        if delta.old == delta.new {
            return Ok(false);
        }
        let freed = delta.frees_quota();
        self.apply(delta)?;
        Ok(freed)
    }

    fn apply(&mut self, delta: Delta) -> Result<(), LedgerError> {
        let mut used = self.used.clone();
        let mut by_cluster = self.used_by_cluster.clone();
        if let Some(old) = &delta.old {
            used.sub_all(&old.overall)?;
            for (c, a) in &old.clusters {
                by_cluster.entry(c.clone()).or_default().sub_all(a)?;
            }
        }
        if let Some(new) = &delta.new {
            used.add_all(&new.overall)?;
            for (c, a) in &new.clusters {
                by_cluster.entry(c.clone()).or_default().add_all(a)?;
            }
        }
        self.used = used.without_zeros();
        self.used_by_cluster = nonzero(by_cluster);
        match delta.new {
            Some(c) => self.charges.insert(delta.key, c),
            None => self.charges.remove(&delta.key),
        };
        Ok(())
    }

    /// How many replicas of `request` still fit in `cluster` by quota: the
    /// smaller of what the overall remainder and the cluster's static
    /// assignment remainder allow, with binding `excluding`'s own charge
    /// given back (it is being re-placed). `None`: the quota limits nothing
    /// this request uses. Overall room is shared by all clusters: the sum of
    /// per-cluster answers can exceed it, so the decision still goes through
    /// `admit`.
    pub fn remaining_for(
        &self,
        accountant: &Accountant<'_>,
        cluster: &str,
        request: &ReplicaRequest,
        excluding: Option<&str>,
    ) -> Result<Option<i64>, LedgerError> {
        let rate = accountant.rate(request, cluster)?;
        let own = excluding.and_then(|k| self.charges.get(k));
        let mut best: Option<i128> = None;
        let mut fit = |hard: i128, used: i128, own: i128, per: i128| {
            if per <= 0 {
                return;
            }
            let room = hard.saturating_sub(used.saturating_sub(own)).max(0);
            let n = room / per;
            best = Some(best.map_or(n, |b| b.min(n)));
        };
        for (name, hard) in self.limits.overall.iter() {
            let own = own.map_or(0, |c| c.overall.get(name));
            fit(hard, self.used.get(name), own, rate.get(name));
        }
        if let Some(limits) = self.limits.static_assignments.get(cluster) {
            let used = self.used_in(cluster);
            let own = own.map(|c| c.in_cluster(cluster)).unwrap_or_default();
            for (name, hard) in limits.iter() {
                fit(hard, used.get(name), own.get(name), rate.get(name));
            }
        }
        Ok(best.map(|n| i64::try_from(n).unwrap_or(i64::MAX)))
    }
}

/// One scope's amounts for a check: the usage, the binding's held charge,
/// the part of it granted, and the step's new charge.
struct Line<'a> {
    used: &'a Amounts,
    held: &'a Amounts,
    granted: &'a Amounts,
    new: &'a Amounts,
}

/// A line is exceeded when the step raises it above what was granted and
/// the usage with the binding's held charge replaced by the new one passes
/// the limit. The message counts the granted part as used and the rest as
/// requested.
fn exceeds(
    name: &str,
    hard: i128,
    line: &Line<'_>,
    cluster: Option<&str>,
) -> Result<(), LedgerError> {
    let (o, n) = (line.held.get(name), line.new.get(name));
    let g = line.granted.get(name).min(o);
    if n <= g {
        return Ok(());
    }
    let overflow = || crate::amounts::overflow(name);
    let requested = n - g;
    let used = line
        .used
        .get(name)
        .checked_sub(o - g)
        .ok_or_else(overflow)?;
    let after = used.checked_add(requested).ok_or_else(overflow)?;
    if after > hard {
        return Err(QuotaExceeded {
            resource: name.to_string(),
            requested,
            used,
            hard,
            cluster: cluster.map(str::to_string),
        }
        .into());
    }
    Ok(())
}

fn nonzero(map: BTreeMap<String, Amounts>) -> BTreeMap<String, Amounts> {
    map.into_iter()
        .map(|(k, v)| (k, v.without_zeros()))
        .filter(|(_, v)| !v.is_zero())
        .collect()
}

#[cfg(test)]
#[path = "ledger_tests.rs"]
mod tests;
