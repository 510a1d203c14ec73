//! How many replicas of a shape a cluster can still hold: the minimum of the
//! accurate estimate (the estimator service, node by node) and a general one
//! from the cluster's resource summary (all nodes pooled, so an upper bound).

use hami_api::common::{RESOURCE_GPU_CORES, RESOURCE_GPU_MEM, RESOURCE_GPU_MEM_PERCENTAGE};

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
    let free = free?;
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

fn is_per_gpu(name: &str) -> bool {
    name == RESOURCE_GPU_MEM || name == RESOURCE_GPU_MEM_PERCENTAGE || name == RESOURCE_GPU_CORES
}

fn clamp(v: i128) -> i64 {
    i64::try_from(v.clamp(0, i128::from(UNBOUNDED))).unwrap_or(UNBOUNDED)
}

/// Combines the accurate estimate (`None`: the estimator is unreachable) with
/// the general estimate of `view` for `request`.
pub fn capacity(view: &ClusterView, request: &Shape, accurate: Option<i32>) -> Capacity {
    let general = general_estimate(view.free.as_ref(), request);
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

#[cfg(test)]
mod tests {
    use super::*;

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
