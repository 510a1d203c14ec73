//! How many replicas of a shape a cluster can still hold: the minimum of the
//! accurate estimate (the estimator service, node by node) and a general one
//! from the cluster's resource summary (all nodes pooled, so an upper bound).

use std::cmp::Ordering;

use hami_api::common::{RESOURCE_GPU_CORES, RESOURCE_GPU_MEM, RESOURCE_GPU_MEM_PERCENTAGE};

use crate::prepared::{NOT_LISTED, PreparedClusters};
use crate::view::{Amounts, ClusterView, Shape};

/// Upper bound used when nothing limits a replica (it requests nothing).
pub const UNBOUNDED: i64 = i32::MAX as i64;

/// A cluster's capacity for one shape.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Capacity {
    /// Replicas the cluster can still hold (never negative).
    pub replicas: i64,
    /// The accurate estimator did not answer; the general estimate was used.
    pub estimator_unreachable: bool,
    /// Neither estimate was available: `replicas` is 0 for lack of data.
    pub unknown: bool,
}

/// Replicas of `request` that fit in `free` resources, pooled over nodes.
/// `None` without a resource summary. A resource the summary does not list
/// counts as 0 free, except GPU resources: they count only when listed (the
/// accurate estimator sees GPUs per device). `nvidia.com/gpumem`,
/// `gpumem-percentage` and `gpucores` are per-GPU amounts, left to the
/// accurate estimator. With `pods` listed, each replica takes one pod.
pub fn general_estimate(free: Option<&Amounts>, request: &Shape) -> Option<i64> {
    Demand::new(request).general_estimate(free)
}

/// Combines the accurate estimate (`None`: the estimator is unreachable) with
/// the general estimate of `view` for `request`.
pub fn capacity(view: &ClusterView, request: &Shape, accurate: Option<i32>) -> Capacity {
    Demand::new(request).capacity(view, accurate)
}

/// A shape read once for many clusters: the lines of the general estimate,
/// sorted by resource name, so that each cluster's summary is read in one
/// ordered pass instead of a map lookup per resource. Per-GPU amounts and
/// non-positive requests are dropped here, once per decision.
#[derive(Clone, Debug)]
pub struct Demand<'a> {
    lines: Vec<Line<'a>>,
}

#[derive(Clone, Copy, Debug)]
struct Line<'a> {
    name: &'a str,
    /// Milli-units one replica takes (1000 for the `pods` line: one pod).
    each: i128,
    /// Counts only when the summary lists it (`pods` and GPU resources);
    /// other resources count as 0 free when unlisted.
    optional: bool,
}

impl<'a> Demand<'a> {
    /// Reads `request` (and the implicit one pod per replica).
    pub fn new(request: &'a Shape) -> Self {
        let mut lines: Vec<Line<'a>> = Vec::with_capacity(request.0.len() + 1);
        lines.push(Line {
            name: "pods",
            each: 1000,
            optional: true,
        });
        for (name, &each) in &request.0 {
            if each <= 0 || is_per_gpu(name) {
                continue;
            }
            lines.push(Line {
                name,
                each,
                optional: name.starts_with("nvidia.com/"),
            });
        }
        // Stable: a requested `pods` line stays after the implicit one.
        lines.sort_by(|a, b| a.name.cmp(b.name));
        Demand { lines }
    }

    /// [`general_estimate`] for this shape.
    pub fn general_estimate(&self, free: Option<&Amounts>) -> Option<i64> {
        let free = free?;
        let lines = self.lines.as_slice();
        let mut fit = UNBOUNDED;
        // Both sides are sorted by name: walk the summary once, moving
        // through the lines alongside.
        let mut next = 0;
        for (name, &have) in free {
            while let Some(line) = lines.get(next) {
                match cmp_names(line.name, name) {
                    Ordering::Less => {
                        // Not in the summary: nothing free, unless optional.
                        if !line.optional {
                            fit = 0;
                        }
                    }
                    Ordering::Equal => fit = fit.min(replicas_in(have, line.each)),
                    Ordering::Greater => break,
                }
                next += 1;
            }
            if next == lines.len() {
                break;
            }
        }
        if lines[next..].iter().any(|line| !line.optional) {
            fit = 0;
        }
        Some(fit)
    }

    /// [`capacity`] for this shape.
    pub fn capacity(&self, view: &ClusterView, accurate: Option<i32>) -> Capacity {
        combine(accurate, self.general_estimate(view.free.as_ref()))
    }
}

/// The minimum of the accurate and general estimates, marking fallbacks.
fn combine(accurate: Option<i32>, general: Option<i64>) -> Capacity {
    let accurate = accurate.map(|a| i64::from(a.max(0)));
    match (accurate, general) {
        (Some(a), Some(g)) => Capacity {
            replicas: a.min(g),
            estimator_unreachable: false,
            unknown: false,
        },
        (Some(a), None) => Capacity {
            replicas: a,
            estimator_unreachable: false,
            unknown: false,
        },
        (None, Some(g)) => Capacity {
            replicas: g,
            estimator_unreachable: true,
            unknown: false,
        },
        (None, None) => Capacity {
            replicas: 0,
            estimator_unreachable: true,
            unknown: true,
        },
    }
}

/// A [`Demand`] resolved against a [`PreparedClusters`] snapshot: each line
/// knows its column in the snapshot's table of free amounts, so a cluster's
/// general estimate reads one slot per line.
#[derive(Clone, Debug)]
pub struct Resolved {
    /// (column, milli-units per replica, optional); no column when no
    /// summary of the snapshot lists the resource.
    lines: Vec<(Option<usize>, i128, bool)>,
    /// The lines in u64 (column, per replica, optional) when the snapshot's
    /// amounts and every request fit: the common case, without i128 work.
    fast: Option<Vec<(usize, u64, bool)>>,
    /// A required resource no summary lists: every summary holds 0.
    none_fit: bool,
}

impl Resolved {
    /// Resolves `demand` against `clusters`.
    pub fn new(demand: &Demand<'_>, clusters: &PreparedClusters<'_>) -> Self {
        let lines = demand
            .lines
            .iter()
            .map(|l| {
                let column = clusters
                    .resources
                    .binary_search_by(|r| r.as_str().cmp(l.name))
                    .ok();
                (column, l.each, l.optional)
            })
            .collect::<Vec<_>>();
        let none_fit = lines
            .iter()
            .any(|&(column, _, optional)| column.is_none() && !optional);
        let fast = clusters
            .fast_free
            .then(|| {
                lines
                    .iter()
                    .filter_map(|&(column, each, optional)| {
                        // An optional line no summary lists never limits.
                        let column = column?;
                        Some(u64::try_from(each).map(|e| (column, e, optional)))
                    })
                    .collect::<Result<Vec<_>, _>>()
                    .ok()
            })
            .flatten();
        Resolved {
            lines,
            fast,
            none_fit,
        }
    }

    /// [`Demand::general_estimate`] for cluster `c` of the snapshot.
    pub fn general_estimate(&self, clusters: &PreparedClusters<'_>, c: usize) -> Option<i64> {
        if !clusters.has_summary[c] {
            return None;
        }
        if self.none_fit {
            return Some(0);
        }
        if let Some(fast) = &self.fast {
            let row = &clusters.free_u64[c * clusters.resources.len()..];
            let mut fit = UNBOUNDED as u64;
            for &(column, each, optional) in fast {
                match row[column] {
                    NOT_LISTED if optional => {}
                    NOT_LISTED => return Some(0),
                    have => fit = fit.min(have / each),
                }
            }
            return Some(i64::try_from(fit).unwrap_or(UNBOUNDED));
        }
        let mut fit = UNBOUNDED;
        for &(column, each, optional) in &self.lines {
            match column.and_then(|r| clusters.free_of(c, r)) {
                Some(have) => fit = fit.min(replicas_in(have, each)),
                None if !optional => return Some(0),
                None => {}
            }
        }
        Some(fit)
    }

    /// [`Demand::capacity`] for cluster `c` of the snapshot.
    pub fn capacity(
        &self,
        clusters: &PreparedClusters<'_>,
        c: usize,
        accurate: Option<i32>,
    ) -> Capacity {
        combine(accurate, self.general_estimate(clusters, c))
    }
}

/// `a.cmp(b)`, decided on the first byte when that differs (as it does for
/// most pairs of resource names) without a call to `memcmp`.
fn cmp_names(a: &str, b: &str) -> Ordering {
    match (a.as_bytes().first(), b.as_bytes().first()) {
        (Some(x), Some(y)) if x != y => x.cmp(y),
        _ => a.cmp(b),
    }
}

fn is_per_gpu(name: &str) -> bool {
    name == RESOURCE_GPU_MEM || name == RESOURCE_GPU_MEM_PERCENTAGE || name == RESOURCE_GPU_CORES
}

/// `have / each` clamped to `0..=UNBOUNDED` (`each > 0`); in u64 when both
/// fit (a u128 division is several times slower).
fn replicas_in(have: i128, each: i128) -> i64 {
    if have <= 0 {
        return 0;
    }
    let q = match (u64::try_from(have), u64::try_from(each)) {
        (Ok(h), Ok(e)) => i128::from(h / e),
        _ => have / each,
    };
    i64::try_from(q.min(i128::from(UNBOUNDED))).unwrap_or(UNBOUNDED)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The estimate as first written, one map lookup per resource: the
    /// reference [`Demand::general_estimate`] must equal.
    fn by_lookup(free: Option<&Amounts>, request: &Shape) -> Option<i64> {
        let free = free?;
        let clamp = |v: i128| i64::try_from(v.clamp(0, i128::from(UNBOUNDED))).unwrap_or(UNBOUNDED);
        let mut fit = UNBOUNDED;
        if let Some(pods) = free.get("pods") {
            fit = fit.min(clamp(pods / 1000));
        }
        for (name, &per_replica) in &request.0 {
            if per_replica <= 0 || is_per_gpu(name) {
                continue;
            }
            let have = match free.get(name) {
                Some(v) => *v,
                None if name.starts_with("nvidia.com/") => continue,
                None => 0,
            };
            fit = fit.min(clamp(have.max(0) / per_replica));
        }
        Some(fit)
    }

    fn resources() -> impl Strategy<Value = Vec<(String, i128)>> {
        let name = prop::sample::select(vec![
            "cpu",
            "memory",
            "pods",
            "nvidia.com/gpu",
            "nvidia.com/gpumem",
            "nvidia.com/gpucores",
            "nvidia.com/gpumem-percentage",
            "ephemeral-storage",
            "a",
            "zz",
        ]);
        let amount = prop_oneof![
            -5000i128..5000,
            0i128..10_000_000,
            any::<i64>().prop_map(i128::from),
            any::<i128>(),
        ];
        prop::collection::vec((name.prop_map(str::to_string), amount), 0..8)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(3000))]

        #[test]
        fn one_pass_equals_lookups(free in resources(), request in resources(), listed in any::<bool>()) {
            let free: Amounts = free.into_iter().collect();
            let request = Shape(request.into_iter().collect());
            let free = listed.then_some(&free);
            prop_assert_eq!(general_estimate(free, &request), by_lookup(free, &request));
        }
    }

    fn free(pairs: &[(&str, i128)]) -> Amounts {
        pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
    }

    #[test]
    fn general_estimate_table() {
        let cpu_mem = Shape::from_milli([("cpu", 1000), ("memory", 2000)]);
        let gpu = Shape::from_milli([
            ("cpu", 1000),
            ("nvidia.com/gpu", 2000),
            ("nvidia.com/gpumem", 4096),
        ]);
        let cases: &[(&str, Option<Amounts>, &Shape, Option<i64>)] = &[
            ("no summary", None, &cpu_mem, None),
            (
                "cpu bound",
                Some(free(&[("cpu", 4500), ("memory", 100_000)])),
                &cpu_mem,
                Some(4),
            ),
            (
                "memory bound",
                Some(free(&[("cpu", 9000), ("memory", 5000)])),
                &cpu_mem,
                Some(2),
            ),
            (
                "pods bound",
                Some(free(&[("cpu", 9000), ("memory", 90_000), ("pods", 3000)])),
                &cpu_mem,
                Some(3),
            ),
            (
                "unlisted memory is zero",
                Some(free(&[("cpu", 9000)])),
                &cpu_mem,
                Some(0),
            ),
            (
                "gpus counted when listed",
                Some(free(&[("cpu", 9000), ("nvidia.com/gpu", 5000)])),
                &gpu,
                Some(2),
            ),
            (
                "gpus skipped when unlisted",
                Some(free(&[("cpu", 3000)])),
                &gpu,
                Some(3),
            ),
            (
                "empty request is unbounded",
                Some(free(&[("cpu", 0)])),
                &Shape::default(),
                Some(UNBOUNDED),
            ),
        ];
        for (name, f, shape, want) in cases {
            assert_eq!(general_estimate(f.as_ref(), shape), *want, "{name}");
        }
    }

    #[test]
    fn capacity_takes_the_minimum_and_marks_fallbacks() {
        let shape = Shape::from_milli([("cpu", 1000)]);
        let with = ClusterView::new("a").with_free([("cpu", 5000)]);
        let without = ClusterView::new("b");
        let cases = [
            (&with, Some(3), 3, false, false),
            (&with, Some(9), 5, false, false),
            (&with, Some(-1), 0, false, false),
            (&with, None, 5, true, false),
            (&without, Some(7), 7, false, false),
            (&without, None, 0, true, true),
        ];
        for (view, accurate, replicas, unreachable, unknown) in cases {
            let c = capacity(view, &shape, accurate);
            assert_eq!(
                (c.replicas, c.estimator_unreachable, c.unknown),
                (replicas, unreachable, unknown),
                "{} {accurate:?}",
                view.name
            );
        }
    }
}
