//! What a binding uses of a quota: per-replica request × replicas assigned,
//! summed over target clusters, for the resources the quota names only.
//!
//! # Resource names
//!
//! A quota line `X` and `requests.X` both count the request of `X`;
//! `limits.X` is counted by the request too (hami accounts requests, which are
//! at most the limits); `pods` and `count/pods` count 1 per replica. GPU lines
//! follow HAMi:
//!
//! | quota line | one replica uses |
//! | --- | --- |
//! | `nvidia.com/gpu` | its GPU count |
//! | `nvidia.com/gpumem` | fixed MiB per GPU × GPUs, plus percent per GPU × the cluster's model memory / 100 (a GPU without a memory line takes the whole device) |
//! | `nvidia.com/gpumem-percentage` | percent per GPU × GPUs, fixed MiB converted to percent of the model memory (rounded up) |
//! | `nvidia.com/gpucores` | percent of cores per GPU × GPUs (0 when absent) |
//!
//! The model memory comes from [`GpuModels`] (conservative; see there).
//! `nvidia.com/gpumem` lines are plain MiB, HAMi's unit: 2 TiB of GPU memory
//! is `"2097152"`, not `"2Ti"` (which would read as 2·2⁴⁰ MiB).
//!
//! # Graceful eviction: replaced replicas count once
//!
//! While a binding leaves cluster X (a graceful eviction task; X is no longer
//! in `spec.clusters`), X's old copies and their replacements both run. Per
//! cluster, the charge is what runs there: X keeps its copies' usage until the
//! task ends (the member's own ResourceQuota sees the same). Overall, each
//! evicting replica is paired with one new replica and the pair counts once, at
//! the larger of the two rates. Which new replica replaces which is not known,
//! so for each resource the rule assumes the least favourable pairing:
//!
//! `overall(r) = Σ_c n_c·a_c(r) + Σ_pairs max(0, x_e(r) − y_p(r)) + Σ_unpaired x_e(r)`
//!
//! where `n_c`, `a_c` are the new assignment's replicas and per-replica usage in
//! cluster c, `x_e` an evicting replica's rate and `y_p` the rate of the new
//! replica it is paired with. Of the E evicting replicas the k = min(E, D)
//! cheapest are paired (D new replicas) and the others (a scale-down during
//! the eviction) count in full. The k paired ones meet the k cheapest new
//! replicas in opposite order (dearest old copy with cheapest new replica),
//! the pairing that maximises the sum, so whatever the real pairing is, the
//! charge is not below it. With a new assignment whose every rate is at least
//! the evicting rate (always so for CPU, GPU count and fixed GPU memory) and
//! E ≤ D this is exactly the new assignment: moving replicas costs no extra
//! quota, and failover is never refused for lack of room it does not need.
//! When the new assignment also holds cheaper replicas (a percentage of a
//! smaller GPU model elsewhere), the rule cannot tell them from the
//! replacements and charges the difference until the task ends. An eviction task for a cluster
//! that is also in `spec.clusters` is ignored (the cluster keeps one copy).
//! Known over-count: a second failover while the first eviction still runs
//! (copies of copies) pairs only with the new assignment, so the chain counts
//! more than once until the older task ends; it errs on the safe side.

use std::collections::BTreeMap;

use hami_api::binding::ResourceBindingSpec;
use hami_api::common::{
    RESOURCE_GPU, RESOURCE_GPU_CORES, RESOURCE_GPU_MEM, RESOURCE_GPU_MEM_PERCENTAGE,
};

use crate::amounts::{AmountError, Amounts, overflow};
use crate::models::GpuModels;
use crate::request::ReplicaRequest;

/// Why a binding's usage cannot be computed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AccountingError {
    /// A sum or product left the accounted range.
    #[error("{0}")]
    Amount(#[from] AmountError),
    /// A percentage of GPU memory must be counted but no GPU model is known.
    #[error(
        "{resource}: cannot convert nvidia.com/gpumem-percentage for cluster {cluster}: no GPU model memory is known"
    )]
    UnknownGpuMemory {
        /// The quota line being counted.
        resource: String,
        /// The target cluster.
        cluster: String,
    },
    /// A replica count is negative.
    #[error("cluster {cluster}: replicas {replicas} is negative")]
    NegativeReplicas {
        /// The cluster.
        cluster: String,
        /// The count given.
        replicas: i32,
    },
}

/// Where a binding's replicas are: the target clusters and the copies being
/// left by graceful eviction.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Assignment {
    /// Replicas per target cluster (`spec.clusters`).
    pub clusters: BTreeMap<String, i32>,
    /// Replicas per cluster being left (`spec.gracefulEvictionTasks`).
    pub evicting: BTreeMap<String, i32>,
}

impl Assignment {
    /// Replicas in target clusters, no eviction.
    pub fn of(clusters: &[(&str, i32)]) -> Self {
        let mut a = Self::default();
        for (c, n) in clusters {
            *a.clusters.entry(c.to_string()).or_insert(0) += n;
        }
        a
    }

    /// The same with copies being left in `evicting`.
    pub fn evicting(mut self, evicting: &[(&str, i32)]) -> Self {
        for (c, n) in evicting {
            *self.evicting.entry(c.to_string()).or_insert(0) += n;
        }
        self
    }

    /// A binding's current assignment. An eviction task without a replica
    /// count is taken to hold `spec.replicas` (the most a copy can hold); a
    /// task for a cluster still in `spec.clusters` is ignored.
    pub fn from_binding(spec: &ResourceBindingSpec) -> Self {
        let mut a = Self::default();
        for t in &spec.clusters {
            let e = a.clusters.entry(t.name.clone()).or_insert(0);
            *e = e.saturating_add(t.replicas);
        }
        for task in &spec.graceful_eviction_tasks {
            if a.clusters.contains_key(&task.from_cluster) {
                continue;
            }
            let e = a.evicting.entry(task.from_cluster.clone()).or_insert(0);
            *e = e.saturating_add(task.replicas.unwrap_or(spec.replicas));
        }
        a
    }
}

/// What one binding is charged: overall (replaced replicas once) and per
/// cluster (what runs there). Only the quota's resources appear.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Charge {
    /// Against `spec.overall`.
    pub overall: Amounts,
    /// Against each cluster's static assignment, and for its status line.
    pub clusters: BTreeMap<String, Amounts>,
}

impl Charge {
    /// The charge in `cluster` (zero when absent).
    pub fn in_cluster(&self, cluster: &str) -> Amounts {
        self.clusters.get(cluster).cloned().unwrap_or_default()
    }
}

/// Computes usage for one quota's resource names, with GPU model memory.
#[derive(Clone, Debug)]
pub struct Accountant<'a> {
    names: Vec<String>,
    models: &'a GpuModels,
}

impl<'a> Accountant<'a> {
    /// Counts `names` (the quota's resource names), converting GPU memory
    /// percentages through `models`.
    pub fn new(names: impl IntoIterator<Item = String>, models: &'a GpuModels) -> Self {
        let mut names: Vec<String> = names.into_iter().collect();
        names.sort();
        names.dedup();
        Self { names, models }
    }

    /// The resource names counted.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// What one replica uses in `cluster`, for every counted name.
    pub fn rate(&self, req: &ReplicaRequest, cluster: &str) -> Result<Amounts, AccountingError> {
        let mut out = Amounts::new();
        for name in &self.names {
            out.set(name.clone(), self.line(req, cluster, name)?);
        }
        Ok(out)
    }

    fn line(
        &self,
        req: &ReplicaRequest,
        cluster: &str,
        name: &str,
    ) -> Result<i128, AccountingError> {
        if name == "pods" || name == "count/pods" {
            return Ok(1000);
        }
        let base = name
            .strip_prefix("requests.")
            .or_else(|| name.strip_prefix("limits."))
            .unwrap_or(name);
        let g = &req.gpu;
        let model = || {
            self.models
                .memory_mib(cluster, &g.use_types, &g.no_use_types)
                .map(i128::from)
                .ok_or_else(|| AccountingError::UnknownGpuMemory {
                    resource: name.to_string(),
                    cluster: cluster.to_string(),
                })
        };
        let of = |v: Option<i128>| v.ok_or_else(|| AccountingError::from(overflow(name)));
        let v = match base {
            RESOURCE_GPU => of(g.count.checked_mul(1000))?,
            RESOURCE_GPU_CORES => of(g.cores.checked_mul(1000))?,
            RESOURCE_GPU_MEM => {
                let fixed = of(g.memory_mib.checked_mul(1000))?;
                if g.memory_percent == 0 {
                    fixed
                } else {
                    // percent × MiB / 100, in milli-units: exact.
                    let pct = of(g.memory_percent.checked_mul(model()?))?;
                    of(pct.checked_mul(10).and_then(|p| p.checked_add(fixed)))?
                }
            }
            RESOURCE_GPU_MEM_PERCENTAGE => {
                let pct = of(g.memory_percent.checked_mul(1000))?;
                if g.memory_mib == 0 {
                    pct
                } else {
                    let m = model()?;
                    let scaled = of(g.memory_mib.checked_mul(100_000))?;
                    let conv = scaled / m + i128::from(scaled % m != 0);
                    of(pct.checked_add(conv))?
                }
            }
            other => req.resources.get(other),
        };
        Ok(v)
    }

    /// What a binding with per-replica request `req` and `assignment` is
    /// charged (module docs give the eviction rule).
    pub fn charge(
        &self,
        req: &ReplicaRequest,
        assignment: &Assignment,
    ) -> Result<Charge, AccountingError> {
        let mut charge = Charge::default();
        let mut new_rates: Vec<(Amounts, i128)> = Vec::new();
        for (cluster, n) in &assignment.clusters {
            let n = replicas(cluster, *n)?;
            if n == 0 {
                continue;
            }
            let rate = self.rate(req, cluster)?;
            let used = rate.times(n)?;
            charge.overall.add_all(&used)?;
            add_to(&mut charge.clusters, cluster, &used)?;
            new_rates.push((rate, n));
        }
        let mut old: Vec<(Amounts, i128)> = Vec::new();
        for (cluster, n) in &assignment.evicting {
            if assignment.clusters.contains_key(cluster) {
                continue;
            }
            let n = replicas(cluster, *n)?;
            if n == 0 {
                continue;
            }
            let rate = self.rate(req, cluster)?;
            add_to(&mut charge.clusters, cluster, &rate.times(n)?)?;
            old.push((rate, n));
        }
        if old.is_empty() {
            return Ok(charge);
        }
        for name in &self.names {
            let olds: Vec<(i128, i128)> = old.iter().map(|(r, n)| (r.get(name), *n)).collect();
            let news: Vec<(i128, i128)> =
                new_rates.iter().map(|(r, n)| (r.get(name), *n)).collect();
            let extra = eviction_extra(olds, news).ok_or_else(|| overflow(name))?;
            charge.overall.add(name, extra)?;
        }
        Ok(charge)
    }
}

/// The least favourable extra charge of one resource while copies are being
/// left: `olds` and `news` are (per-replica amount, replicas) runs. The
/// cheapest k = min(E, D) old copies pair with the k cheapest new replicas in
/// opposite order; a pair adds `max(0, old − new)`, an unpaired old copy its
/// whole amount. `None` on overflow.
fn eviction_extra(mut olds: Vec<(i128, i128)>, mut news: Vec<(i128, i128)>) -> Option<i128> {
    olds.sort();
    news.sort();
    let e: i128 = olds.iter().map(|(_, n)| n).sum();
    let d: i128 = news.iter().map(|(_, n)| n).sum();
    let k = e.min(d);
    // Split the old runs into the k cheapest (paired) and the rest (full).
    let mut paired: Vec<(i128, i128)> = Vec::new();
    let mut extra: i128 = 0;
    let mut left = k;
    for (x, n) in olds {
        let p = n.min(left);
        left -= p;
        if p > 0 {
            paired.push((x, p));
        }
        extra = extra.checked_add(x.checked_mul(n - p)?)?;
    }
    // Dearest paired old copy meets the cheapest new replica.
    let mut new_runs = news.into_iter();
    let mut current = new_runs.next();
    for (x, mut n) in paired.into_iter().rev() {
        while n > 0 {
            // k ≤ D: the new runs never run out before the paired copies.
            let Some((y, m)) = current.as_mut() else {
                break;
            };
            let take = n.min(*m);
            extra = extra.checked_add((x - *y).max(0).checked_mul(take)?)?;
            n -= take;
            *m -= take;
            if *m == 0 {
                current = new_runs.next();
            }
        }
    }
    Some(extra)
}

fn replicas(cluster: &str, n: i32) -> Result<i128, AccountingError> {
    if n < 0 {
        return Err(AccountingError::NegativeReplicas {
            cluster: cluster.to_string(),
            replicas: n,
        });
    }
    Ok(i128::from(n))
}

fn add_to(
    map: &mut BTreeMap<String, Amounts>,
    cluster: &str,
    amounts: &Amounts,
) -> Result<(), AmountError> {
    map.entry(cluster.to_string()).or_default().add_all(amounts)
}

#[cfg(test)]
#[path = "accounting_tests.rs"]
mod tests;
