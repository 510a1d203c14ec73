//! Every quota of the fleet with the bindings it counts: the state the
//! single-writer accountant (the scheduler) and the status controller keep,
//! fed by watch events, answering admission and capacity questions.
//!
//! # What a binding holds
//!
//! A binding can be seen in several states at once: the last one the
//! scheduler settled (its admitted placement: `schedulerObservedGeneration`
//! equals the generation and `Scheduled` is True), later ones written
//! before the scheduler placed it again (a graceful eviction moving a
//! cluster into `gracefulEvictionTasks`, a descheduler lowering
//! `spec.clusters`, the detector changing the request, a refusal), and the
//! decision the scheduler is writing right now. The ledger charges it the
//! componentwise maximum of all of them, so quota is released only when the
//! store holds a settled, smaller state:
//!
//! - a failover keeps its quota while the scheduler places the replacements
//!   (the eviction write alone frees nothing another binding could take);
//! - a decision in flight is reserved before its write, and a decision that
//!   lowers usage frees quota only once written;
//! - a write that fails gives its reservation back.
//!
//! Admission grants only the settled state: a decision that raises a line
//! above it must fit, the binding's whole held charge given back, even when
//! an unsettled state already holds as much (a Deployment edited from 1 to
//! 2 GPUs per replica is held at 2 the moment the detector writes it, and
//! is still refused when 2 do not fit).
//!
//! The status controller feeds only settled states (`observe(.., true)`), so
//! its ledger is exactly the sum over the store's bindings.

use std::collections::{BTreeMap, BTreeSet};

use hami_api::binding::ResourceBindingSpec;
use hami_api::quota::FederatedResourceQuotaSpec;

use crate::accounting::{Accountant, AccountingError, Assignment, Charge};
use crate::amounts::Amounts;
use crate::ledger::{LedgerError, QuotaLedger, QuotaLimits};
use crate::models::GpuModels;
use crate::request::{ReplicaRequest, RequestError};

/// One state of a binding: what each replica asks and where replicas are.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct State {
    /// One replica's request.
    pub request: ReplicaRequest,
    /// Replicas per cluster, and copies being left.
    pub assignment: Assignment,
}

impl State {
    /// The state a binding spec describes.
    pub fn from_spec(spec: &ResourceBindingSpec) -> Result<Self, RequestError> {
        Ok(Self {
            request: ReplicaRequest::from_requirements(spec.replica_requirements.as_ref())?,
            assignment: Assignment::from_binding(spec),
        })
    }
}

/// The larger of two amounts, line by line.
pub fn max_amounts(a: &Amounts, b: &Amounts) -> Amounts {
    let mut out = a.clone();
    for (k, v) in b.iter() {
        if v > out.get(k) {
            out.set(k, v);
        }
    }
    out.without_zeros()
}

/// The larger of two charges, line by line, overall and per cluster.
pub fn max_charge(a: &Charge, b: &Charge) -> Charge {
    let mut clusters = a.clusters.clone();
    for (c, amounts) in &b.clusters {
        let m = max_amounts(&a.in_cluster(c), amounts);
        clusters.insert(c.clone(), m);
    }
    clusters.retain(|_, v| !v.is_zero());
    Charge {
        overall: max_amounts(&a.overall, &b.overall),
        clusters,
    }
}

/// A step refused by one quota of the namespace.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("FederatedResourceQuota {namespace}/{quota}: {error}")]
pub struct Refusal {
    /// The quota's namespace.
    pub namespace: String,
    /// The quota's name.
    pub quota: String,
    /// Why (an [`LedgerError::Exceeded`] names the resource and the numbers).
    pub error: Box<LedgerError>,
}

impl Refusal {
    /// Whether the quota is exceeded (rather than the usage not computable).
    pub fn is_exceeded(&self) -> bool {
        matches!(*self.error, LedgerError::Exceeded(_))
    }
}

/// A binding's usage could not be counted against one quota (its charge
/// there stays what it was).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Uncounted {
    /// The binding.
    pub key: String,
    /// The quota's name (in the binding's namespace).
    pub quota: String,
    /// Why.
    pub error: AccountingError,
}

#[derive(Clone, Debug, Default)]
struct Binding {
    namespace: String,
    /// The last settled state and the store revision it was seen at.
    settled: Option<(u64, State)>,
    /// Unsettled states seen after it, with their revisions.
    unsettled: Vec<(u64, State)>,
    /// The decision being written.
    pending: Option<State>,
}

impl Binding {
    fn states(&self) -> impl Iterator<Item = &State> {
        self.settled
            .iter()
            .map(|(_, s)| s)
            .chain(self.unsettled.iter().map(|(_, s)| s))
            .chain(self.pending.iter())
    }

    fn last_revision(&self) -> u64 {
        self.settled
            .iter()
            .map(|(r, _)| *r)
            .chain(self.unsettled.iter().map(|(r, _)| *r))
            .max()
            .unwrap_or(0)
    }
}

#[derive(Clone, Debug)]
struct Quota {
    spec: FederatedResourceQuotaSpec,
    ledger: QuotaLedger,
}

/// Quotas and bindings, by namespace (see the module docs).
#[derive(Clone, Debug, Default)]
pub struct QuotaBook {
    quotas: BTreeMap<(String, String), Quota>,
    bindings: BTreeMap<String, Binding>,
    by_namespace: BTreeMap<String, BTreeSet<String>>,
    models: GpuModels,
}

/// What changed for waiting bindings after an update.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    /// Namespaces where some quota line went down (or a limit changed):
    /// bindings waiting there for quota may fit now.
    pub freed: BTreeSet<String>,
    /// Charges that could not be computed.
    pub uncounted: Vec<Uncounted>,
}

impl Outcome {
    fn merge(&mut self, other: Outcome) {
        self.freed.extend(other.freed);
        self.uncounted.extend(other.uncounted);
    }
}

impl QuotaBook {
    /// Nothing known.
    pub fn new() -> Self {
        Self::default()
    }

    /// The GPU models known.
    pub fn models(&self) -> &GpuModels {
        &self.models
    }

    /// Replaces the GPU models (cluster status changed). Charges that
    /// convert GPU memory percentages are computed again; every namespace
    /// counts as freed when anything changed.
    pub fn set_models(&mut self, models: GpuModels) -> Outcome {
        if models == self.models {
            return Outcome::default();
        }
        self.models = models;
        let mut out = Outcome::default();
        let keys: Vec<(String, String)> = self.quotas.keys().cloned().collect();
        for (ns, name) in keys {
            out.merge(self.rebuild(&ns, &name));
            out.freed.insert(ns);
        }
        out
    }

    /// Creates or updates quota `ns/name`. A limit change requeues the
    /// namespace's waiting bindings (a raise may let them in).
    pub fn set_quota(
        &mut self,
        ns: &str,
        name: &str,
        spec: &FederatedResourceQuotaSpec,
    ) -> Result<Outcome, LedgerError> {
        let limits = QuotaLimits::from_spec(spec)?;
        let id = (ns.to_string(), name.to_string());
        let mut out = Outcome::default();
        let kept = match self.quotas.get_mut(&id) {
            Some(q) if q.spec == *spec => return Ok(out),
            Some(q) => {
                let same_names = q.ledger.set_limits(limits.clone()).is_ok();
                if same_names {
                    q.spec = spec.clone();
                }
                same_names
            }
            None => false,
        };
        if !kept {
            {
                self.quotas.insert(
                    id,
                    Quota {
                        spec: spec.clone(),
                        ledger: QuotaLedger::new(limits),
                    },
                );
                out.merge(self.rebuild(ns, name));
            }
        }
        out.freed.insert(ns.to_string());
        Ok(out)
    }

    /// Forgets quota `ns/name` (its namespace is no longer limited by it).
    pub fn remove_quota(&mut self, ns: &str, name: &str) -> Outcome {
        let mut out = Outcome::default();
        if self
            .quotas
            .remove(&(ns.to_string(), name.to_string()))
            .is_some()
        {
            out.freed.insert(ns.to_string());
        }
        out
    }

    /// Quota `ns/name`: its spec and ledger.
    pub fn quota(
        &self,
        ns: &str,
        name: &str,
    ) -> Option<(&FederatedResourceQuotaSpec, &QuotaLedger)> {
        self.quotas
            .get(&(ns.to_string(), name.to_string()))
            .map(|q| (&q.spec, &q.ledger))
    }

    /// Every quota: (namespace, name, spec, ledger), in order.
    pub fn quotas(
        &self,
    ) -> impl Iterator<Item = (&str, &str, &FederatedResourceQuotaSpec, &QuotaLedger)> {
        self.quotas
            .iter()
            .map(|((ns, n), q)| (ns.as_str(), n.as_str(), &q.spec, &q.ledger))
    }

    /// Whether namespace `ns` has a quota.
    pub fn limits_namespace(&self, ns: &str) -> bool {
        self.quotas_in(ns).next().is_some()
    }

    fn quotas_in<'a>(&'a self, ns: &'a str) -> impl Iterator<Item = (&'a str, &'a Quota)> + 'a {
        self.quotas
            .range((ns.to_string(), String::new())..)
            .take_while(move |((n, _), _)| n == ns)
            .map(|((_, name), q)| (name.as_str(), q))
    }

    /// A store event for binding `key` in `ns`: `state` at `revision`;
    /// `settled` when the scheduler's decision for its generation is in it.
    /// A settled state replaces what was held; an unsettled one is held
    /// beside it until the scheduler settles the binding again.
    pub fn observe(
        &mut self,
        key: &str,
        ns: &str,
        revision: u64,
        state: State,
        settled: bool,
    ) -> Outcome {
        let b = self.bindings.entry(key.to_string()).or_default();
        if b.namespace != ns {
            if let Some(keys) = self.by_namespace.get_mut(&b.namespace) {
                keys.remove(key);
            }
            b.namespace = ns.to_string();
        }
        self.by_namespace
            .entry(ns.to_string())
            .or_default()
            .insert(key.to_string());
        let b = self.bindings.entry(key.to_string()).or_default();
        let newer = b.settled.as_ref().is_none_or(|(r, _)| revision > *r);
        if newer {
            if settled {
                b.settled = Some((revision, state));
                b.unsettled.clear();
            } else if revision > b.last_revision()
                && !b.unsettled.iter().any(|(_, s)| *s == state)
                && b.settled.as_ref().is_none_or(|(_, s)| *s != state)
            {
                b.unsettled.push((revision, state));
            }
        }
        self.recharge(key)
    }

    /// The bindings known, in key order.
    pub fn binding_keys(&self) -> Vec<String> {
        self.bindings.keys().cloned().collect()
    }

    /// Binding `key` is gone: its charge is released.
    pub fn forget(&mut self, key: &str) -> Outcome {
        let Some(b) = self.bindings.remove(key) else {
            return Outcome::default();
        };
        if let Some(keys) = self.by_namespace.get_mut(&b.namespace) {
            keys.remove(key);
            if keys.is_empty() {
                self.by_namespace.remove(&b.namespace);
            }
        }
        let mut out = Outcome::default();
        let ns = b.namespace;
        for ((qns, _), q) in self.quotas.iter_mut() {
            if *qns == ns
                && q.ledger.charge_of(key).is_some()
                && q.ledger.set_charge(key, None).unwrap_or(false)
            {
                out.freed.insert(ns.clone());
            }
        }
        out
    }

    /// How many replicas of `request` the quotas of `ns` still let binding
    /// `key` have in `cluster` (its own charge given back, since it is being
    /// placed again); `None` when no quota limits what it asks.
    pub fn room(
        &self,
        key: &str,
        ns: &str,
        request: &ReplicaRequest,
        cluster: &str,
    ) -> Result<Option<i64>, Refusal> {
        let mut best: Option<i64> = None;
        for (name, q) in self.quotas_in(ns) {
            let acc = q.ledger.limits().accountant(&self.models);
            let n = q
                .ledger
                .remaining_for(&acc, cluster, request, Some(key))
                .map_err(|error| Refusal {
                    namespace: ns.to_string(),
                    quota: name.to_string(),
                    error: Box::new(error),
                })?;
            if let Some(n) = n {
                best = Some(best.map_or(n, |b| b.min(n)));
            }
        }
        Ok(best)
    }

    /// Checks `new` for binding `key` against every quota of `ns` and, when
    /// all admit it, reserves it (held beside what the binding held) until
    /// [`confirm`](Self::confirm) or [`cancel`](Self::cancel). Check and
    /// reservation are one step under `&mut`: no other admission comes
    /// between. Steps that raise nothing above the settled state are never
    /// refused.
    pub fn reserve(&mut self, key: &str, ns: &str, new: State) -> Result<Outcome, Refusal> {
        let refuse = |name: &str, error: LedgerError| Refusal {
            namespace: ns.to_string(),
            quota: name.to_string(),
            error: Box::new(error),
        };
        // Granted is what the binding was last admitted with (its settled
        // state), not all it holds: a larger request written by another
        // controller is held for safety but must still be admitted.
        let settled = self.bindings.get(key).and_then(|b| b.settled.as_ref());
        for (name, q) in self.quotas_in(ns) {
            let acc = q.ledger.limits().accountant(&self.models);
            let charge = acc
                .charge(&new.request, &new.assignment)
                .map_err(|e| refuse(name, e.into()))?;
            let granted = match settled {
                Some((_, s)) => acc
                    .charge(&s.request, &s.assignment)
                    .map(normalized)
                    .unwrap_or_default(),
                None => Charge::default(),
            };
            q.ledger
                .check_from(key, Some(charge), Some(&granted))
                .map_err(|e| refuse(name, e))?;
        }
        let b = self.bindings.entry(key.to_string()).or_default();
        if b.namespace.is_empty() {
            b.namespace = ns.to_string();
            self.by_namespace
                .entry(ns.to_string())
                .or_default()
                .insert(key.to_string());
        }
        let b = self.bindings.entry(key.to_string()).or_default();
        b.pending = Some(new);
        Ok(self.recharge(key))
    }

    /// The reserved decision of `key` was written at `revision`: it is the
    /// settled state now (unless a newer one was seen already).
    pub fn confirm(&mut self, key: &str, revision: u64) -> Outcome {
        let Some(b) = self.bindings.get_mut(key) else {
            return Outcome::default();
        };
        if let Some(state) = b.pending.take()
            && b.settled.as_ref().is_none_or(|(r, _)| revision > *r)
        {
            b.settled = Some((revision, state));
            b.unsettled.retain(|(r, _)| *r > revision);
        }
        self.recharge(key)
    }

    /// The reserved decision of `key` was not written: the reservation goes.
    pub fn cancel(&mut self, key: &str) -> Outcome {
        let Some(b) = self.bindings.get_mut(key) else {
            return Outcome::default();
        };
        b.pending = None;
        self.recharge(key)
    }

    /// Charges binding `key` again in every quota of its namespace.
    fn recharge(&mut self, key: &str) -> Outcome {
        let mut out = Outcome::default();
        let Some(b) = self.bindings.get(key) else {
            return out;
        };
        let ns = b.namespace.clone();
        let ids: Vec<(String, String)> = self
            .quotas_in(&ns)
            .map(|(name, _)| (ns.clone(), name.to_string()))
            .collect();
        for id in ids {
            let charge = match self.quotas.get(&id) {
                Some(q) => held_charge(&q.ledger.limits().accountant(&self.models), b),
                None => continue,
            };
            let Some(q) = self.quotas.get_mut(&id) else {
                continue;
            };
            match charge {
                Ok(c) => {
                    if q.ledger.set_charge(key, c).unwrap_or(false) {
                        out.freed.insert(ns.clone());
                    }
                }
                Err(error) => out.uncounted.push(Uncounted {
                    key: key.to_string(),
                    quota: id.1.clone(),
                    error,
                }),
            }
        }
        out
    }

    /// Builds quota `ns/name`'s ledger from the bindings of its namespace.
    fn rebuild(&mut self, ns: &str, name: &str) -> Outcome {
        let mut out = Outcome::default();
        let id = (ns.to_string(), name.to_string());
        let Some(q) = self.quotas.get(&id) else {
            return out;
        };
        let acc = q.ledger.limits().accountant(&self.models);
        let mut charges = Vec::new();
        for key in self.by_namespace.get(ns).into_iter().flatten() {
            let Some(b) = self.bindings.get(key) else {
                continue;
            };
            match held_charge(&acc, b) {
                Ok(Some(c)) => charges.push((key.clone(), c)),
                Ok(None) => {}
                Err(error) => out.uncounted.push(Uncounted {
                    key: key.clone(),
                    quota: name.to_string(),
                    error,
                }),
            }
        }
        let limits = q.ledger.limits().clone();
        match QuotaLedger::rebuild(limits.clone(), charges) {
            Ok(ledger) => {
                if let Some(q) = self.quotas.get_mut(&id) {
                    q.ledger = ledger;
                }
            }
            Err(_) => {
                // A sum out of range: keep an empty ledger rather than none
                // (the overflow is reported by every later admission).
                if let Some(q) = self.quotas.get_mut(&id) {
                    q.ledger = QuotaLedger::new(limits);
                }
            }
        }
        out
    }
}

/// What binding `b` is charged under `acc`: the maximum over its states;
/// `None` when it holds nothing.
fn held_charge(acc: &Accountant<'_>, b: &Binding) -> Result<Option<Charge>, AccountingError> {
    let mut held: Option<Charge> = None;
    for s in b.states() {
        let c = acc.charge(&s.request, &s.assignment)?;
        held = Some(match held {
            Some(h) => max_charge(&h, &c),
            None => c,
        });
    }
    Ok(held
        .map(normalized)
        .filter(|c| !c.overall.is_zero() || !c.clusters.is_empty()))
}

/// The charge without zero lines and empty clusters (charges compare by
/// what they hold).
fn normalized(c: Charge) -> Charge {
    Charge {
        overall: c.overall.without_zeros(),
        clusters: c
            .clusters
            .into_iter()
            .map(|(k, v)| (k, v.without_zeros()))
            .filter(|(_, v)| !v.is_zero())
            .collect(),
    }
}

#[cfg(test)]
#[path = "book_tests.rs"]
mod tests;
