//! A snapshot of the member clusters prepared once per change of the
//! cluster set, as Karmada's scheduler keeps a cluster snapshot: decisions
//! are many, cluster changes few, so what every decision would otherwise
//! re-derive from each [`ClusterView`] is derived here once.
//!
//! - labels: every label key and value interned to a number, each cluster's
//!   labels a list sorted by key, so a selector compiled once per decision
//!   ([`crate::filter::affinity::Resolved`]) compares numbers, not strings;
//! - resource summaries: each cluster's free amounts in a table indexed by
//!   resource (the resource names of the whole fleet, sorted), so the
//!   general estimate reads one slot per requested resource;
//! - API enablements: `(groupVersion, kind)` pairs interned, each cluster's
//!   a sorted list of numbers;
//! - names: an index sorted by name, so a binding's cluster names (current
//!   assignment, clusterNames, exclude, evictions) are resolved to
//!   positions once per decision;
//! - taints: whether a cluster has any NoSchedule or NoExecute taint.
//!
//! Decisions over a prepared snapshot equal decisions over the views it was
//! built from ([`crate::schedule()`] prepares and calls
//! [`crate::schedule_prepared`]).

use std::borrow::Cow;
use std::collections::BTreeMap;

use crate::filter::taint::{NO_EXECUTE, NO_SCHEDULE};
use crate::view::ClusterView;

/// Marks a resource a cluster's summary does not list, in `free_u64`.
pub(crate) const NOT_LISTED: u64 = u64::MAX;

/// The clusters of a decision, prepared once for many decisions. Borrows
/// the views ([`PreparedClusters::new`]) or owns them
/// ([`PreparedClusters::owned`], for a snapshot kept between decisions).
#[derive(Clone, Debug)]
pub struct PreparedClusters<'a> {
    views: Cow<'a, [ClusterView]>,
    /// Cluster positions ordered by name.
    pub(crate) by_name: Vec<usize>,
    /// Label keys and values, interned (one table for both).
    pub(crate) strings: BTreeMap<String, u32>,
    /// Per cluster: `(key, value)` ids sorted by key.
    pub(crate) labels: Vec<Vec<(u32, u32)>>,
    /// Resource names of every summary, sorted.
    pub(crate) resources: Vec<String>,
    /// `free[c * resources.len() + r]`: cluster `c`'s free amount of
    /// resource `r`, `None` when its summary does not list it.
    pub(crate) free: Vec<Option<i128>>,
    /// `free` as u64, negatives as 0, [`NOT_LISTED`] where `free` is
    /// `None`; only when every amount is below `u64::MAX` (`fast_free`).
    pub(crate) free_u64: Vec<u64>,
    /// `free_u64` holds every amount exactly.
    pub(crate) fast_free: bool,
    /// Per cluster: it has a resource summary.
    pub(crate) has_summary: Vec<bool>,
    /// `(groupVersion, kind)` pairs, interned.
    pub(crate) apis: BTreeMap<(String, String), u32>,
    /// Per cluster: sorted API ids; `None` when not reported.
    pub(crate) enabled: Vec<Option<Vec<u32>>>,
    /// Per cluster: it has a NoSchedule or NoExecute taint.
    pub(crate) hard_taints: Vec<bool>,
}

impl<'a> PreparedClusters<'a> {
    /// Prepares `views` (borrowed).
    pub fn new(views: &'a [ClusterView]) -> Self {
        Self::build(Cow::Borrowed(views))
    }

    /// The cluster views, in the order given.
    pub fn views(&self) -> &[ClusterView] {
        &self.views
    }

    /// Number of clusters.
    pub fn len(&self) -> usize {
        self.views.len()
    }

    /// True without clusters.
    pub fn is_empty(&self) -> bool {
        self.views.is_empty()
    }

    fn build(views: Cow<'a, [ClusterView]>) -> Self {
        let mut by_name: Vec<usize> = (0..views.len()).collect();
        by_name.sort_by(|&a, &b| views[a].name.cmp(&views[b].name));

        let mut strings: BTreeMap<String, u32> = BTreeMap::new();
        let mut intern = |s: &str| -> u32 {
            if let Some(&id) = strings.get(s) {
                return id;
            }
            let id = u32::try_from(strings.len()).unwrap_or(u32::MAX);
            strings.insert(s.to_string(), id);
            id
        };
        let labels: Vec<Vec<(u32, u32)>> = views
            .iter()
            .map(|v| {
                let mut l: Vec<(u32, u32)> = v
                    .labels
                    .iter()
                    .map(|(k, val)| (intern(k), intern(val)))
                    .collect();
                l.sort_unstable();
                l
            })
            .collect();

        let mut resources: Vec<String> = views
            .iter()
            .filter_map(|v| v.free.as_ref())
            .flat_map(|f| f.keys().cloned())
            .collect();
        resources.sort_unstable();
        resources.dedup();
        let width = resources.len();
        let mut free = vec![None; views.len() * width];
        let mut has_summary = Vec::with_capacity(views.len());
        for (c, v) in views.iter().enumerate() {
            has_summary.push(v.free.is_some());
            for (name, &amount) in v.free.iter().flatten() {
                if let Ok(r) = resources.binary_search(name) {
                    free[c * width + r] = Some(amount);
                }
            }
        }

        let fast_free = free.iter().flatten().all(|&a| a < i128::from(NOT_LISTED));
        let free_u64 = if fast_free {
            free.iter()
                .map(|a| a.map_or(NOT_LISTED, |a| u64::try_from(a.max(0)).unwrap_or(0)))
                .collect()
        } else {
            Vec::new()
        };

        let mut apis: BTreeMap<(String, String), u32> = BTreeMap::new();
        let enabled = views
            .iter()
            .map(|v| {
                v.api_enablements.as_ref().map(|set| {
                    let mut ids: Vec<u32> = set
                        .iter()
                        .map(|pair| {
                            let next = u32::try_from(apis.len()).unwrap_or(u32::MAX);
                            *apis.entry(pair.clone()).or_insert(next)
                        })
                        .collect();
                    ids.sort_unstable();
                    ids
                })
            })
            .collect();

        let hard_taints = views
            .iter()
            .map(|v| {
                v.taints
                    .iter()
                    .any(|t| t.effect == NO_SCHEDULE || t.effect == NO_EXECUTE)
            })
            .collect();

        PreparedClusters {
            views,
            by_name,
            strings,
            labels,
            resources,
            free,
            free_u64,
            fast_free,
            has_summary,
            apis,
            enabled,
            hard_taints,
        }
    }

    /// Positions of the clusters named `name` (one, as names are unique).
    pub(crate) fn positions_of<'s>(&'s self, name: &'s str) -> impl Iterator<Item = usize> + 's {
        let start = self
            .by_name
            .partition_point(|&i| self.views[i].name.as_str() < name);
        self.by_name[start..]
            .iter()
            .take_while(move |&&i| self.views[i].name == name)
            .copied()
    }

    /// A per-cluster mask of the clusters named in `names`.
    pub(crate) fn mask_of<'n>(&self, names: impl IntoIterator<Item = &'n String>) -> Vec<bool> {
        let mut mask = vec![false; self.len()];
        for n in names {
            for i in self.positions_of(n) {
                mask[i] = true;
            }
        }
        mask
    }

    /// The interned id of a label key or value; `None` when no cluster has it.
    pub(crate) fn string_id(&self, s: &str) -> Option<u32> {
        self.strings.get(s).copied()
    }

    /// Value id of label `key` on cluster `c`.
    pub(crate) fn label(&self, c: usize, key: u32) -> Option<u32> {
        let l = &self.labels[c];
        if l.len() <= 8 {
            return l.iter().find(|&&(k, _)| k == key).map(|&(_, v)| v);
        }
        l.binary_search_by_key(&key, |&(k, _)| k)
            .ok()
            .map(|i| l[i].1)
    }

    /// Whether cluster `c` serves the API interned as `api` (`None`: no
    /// cluster serves it); true when `c` has not reported its APIs.
    pub(crate) fn api_enabled(&self, c: usize, api: Option<u32>) -> bool {
        match &self.enabled[c] {
            None => true,
            Some(ids) => api.is_some_and(|id| ids.binary_search(&id).is_ok()),
        }
    }

    /// The id of `(api_version, kind)`, when some cluster serves it.
    pub(crate) fn api_id(&self, api_version: &str, kind: &str) -> Option<u32> {
        self.apis
            .get(&(api_version.to_string(), kind.to_string()))
            .copied()
    }

    /// Free amount of resource `r` on cluster `c`.
    pub(crate) fn free_of(&self, c: usize, r: usize) -> Option<i128> {
        self.free
            .get(c * self.resources.len() + r)
            .copied()
            .flatten()
    }
}

impl Default for PreparedClusters<'static> {
    /// No clusters.
    fn default() -> Self {
        Self::owned(Vec::new())
    }
}

impl PreparedClusters<'static> {
    /// Prepares `views` and keeps them: a snapshot to hold between decisions.
    pub fn owned(views: Vec<ClusterView>) -> Self {
        Self::build(Cow::Owned(views))
    }
}
