//! Replica division over the chosen clusters, with Webster apportionment
//! ([`crate::apportion`]) everywhere a total is split.
//!
//! - Duplicated: every cluster runs all replicas.
//! - Static weights: recomputed each time; Webster is house-monotone, so a
//!   scale-up only adds and a scale-down only removes. May exceed estimates.
//! - Dynamic weight (available replicas) and Aggregated keep the current
//!   assignment: a scale-up divides only the new replicas by what each
//!   cluster can still hold, and a fresh schedule divides everything by
//!   capacity (free plus what the binding already holds there). A dynamic
//!   weight scale-down shrinks every cluster in proportion to its current
//!   count.
//! - Aggregated uses the fewest clusters: ranked by capacity (clusters
//!   already holding replicas first on a scale-up), the shortest prefix that
//!   can hold the replicas, divided by capacity within it. A scale-down
//!   consolidates as Karmada's `dynamicScaleDown` does: the clusters ranked
//!   by current count, largest first, the shortest prefix whose current
//!   counts cover the new total keeps replicas (divided in proportion to
//!   those counts, none above its current count) and the rest are emptied.
//!
//! Ties between equal shares, and between equal current counts in the
//! aggregated scale-down rank, go by [`crate::apportion::tie_key`] of the
//! binding and the cluster, never by position.

use crate::apportion::{Share, TieScope, apportion_shares};
use crate::outcome::{Mode, Problem};

/// One chosen cluster, as division sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Slot<'a> {
    /// Cluster name (for the tie key and the aggregated rank).
    pub name: &'a str,
    /// Replicas of the binding it holds now.
    pub current: i64,
    /// Replicas it can still take on top of `current`.
    pub available: i64,
    /// Static weight (used by [`static_weight`] only).
    pub weight: u64,
}

/// Replicas per slot (same order as the slots) and how they came about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Division {
    /// Replicas per slot.
    pub replicas: Vec<i64>,
    /// Fresh, scale-up, scale-down or steady.
    pub mode: Mode,
}

fn u(v: i64) -> u64 {
    u64::try_from(v.max(0)).unwrap_or(0)
}

fn i(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// Webster over `slots` with per-slot weight and cap from `f`. Tie keys are
/// hashed only for slots whose offers meet an equal priority.
fn webster(
    scope: &str,
    seats: i64,
    slots: &[Slot<'_>],
    f: impl Fn(usize, &Slot<'_>) -> (i64, i64),
) -> Vec<i64> {
    let ties = TieScope::new(scope);
    let shares: Vec<Share> = slots
        .iter()
        .enumerate()
        .map(|(k, s)| {
            let (weight, cap) = f(k, s);
            Share {
                weight: u(weight),
                cap: u(cap),
            }
        })
        .collect();
    apportion_shares(u(seats), &shares, |k| ties.key(slots[k].name))
        .into_iter()
        .map(i)
        .collect()
}

/// Every slot gets all replicas.
pub fn duplicated(slots: &[Slot<'_>], replicas: i64) -> Division {
    Division {
        replicas: vec![replicas; slots.len()],
        mode: Mode::Fresh,
    }
}

/// Webster by static weight; capacity is not consulted.
pub fn static_weight(scope: &str, slots: &[Slot<'_>], replicas: i64) -> Division {
    Division {
        replicas: webster(scope, replicas, slots, |_, s| (i(s.weight), i64::MAX)),
        mode: Mode::Fresh,
    }
}

fn capacity_of(slots: &[Slot<'_>], f: impl Fn(&Slot<'_>) -> i64) -> i64 {
    slots.iter().map(f).fold(0i64, i64::saturating_add)
}

/// What to do with the current assignment.
fn mode(slots: &[Slot<'_>], replicas: i64, fresh: bool) -> (Mode, i64) {
    let base = capacity_of(slots, |s| s.current);
    if fresh || base == 0 {
        (Mode::Fresh, base)
    } else if replicas > base {
        (Mode::ScaleUp, base)
    } else if replicas < base {
        (Mode::ScaleDown, base)
    } else {
        (Mode::Steady, base)
    }
}

fn short(needed: i64, available: i64) -> Problem {
    Problem::CapacityShort { needed, available }
}

/// Dynamic weight by available replicas.
pub fn dynamic(
    scope: &str,
    slots: &[Slot<'_>],
    replicas: i64,
    fresh: bool,
) -> Result<Division, Problem> {
    let (mode, base) = mode(slots, replicas, fresh);
    let replicas_out = match mode {
        Mode::Fresh => {
            let cap = capacity_of(slots, |s| s.available.saturating_add(s.current));
            if cap < replicas {
                return Err(short(replicas, cap));
            }
            webster(scope, replicas, slots, |_, s| {
                let c = s.available.saturating_add(s.current);
                (c, c)
            })
        }
        Mode::ScaleUp => {
            let extra = replicas - base;
            let cap = capacity_of(slots, |s| s.available);
            if cap < extra {
                return Err(short(extra, cap));
            }
            let add = webster(scope, extra, slots, |_, s| (s.available, s.available));
            slots.iter().zip(add).map(|(s, a)| s.current + a).collect()
        }
        Mode::ScaleDown => webster(scope, replicas, slots, |_, s| (s.current, s.current)),
        Mode::Steady => slots.iter().map(|s| s.current).collect(),
    };
    Ok(Division {
        replicas: replicas_out,
        mode,
    })
}

/// The shortest prefix of `order` whose `cap` sums to `need`, as a mask.
fn prefix(
    slots: &[Slot<'_>],
    order: &[usize],
    need: i64,
    cap: impl Fn(&Slot<'_>) -> i64,
) -> Option<Vec<bool>> {
    let mut mask = vec![false; slots.len()];
    let mut sum = 0i64;
    for &k in order {
        if sum >= need {
            break;
        }
        let c = cap(&slots[k]);
        if c > 0 {
            mask[k] = true;
            sum = sum.saturating_add(c);
        }
    }
    (sum >= need).then_some(mask)
}

/// Aggregated: the fewest clusters that can hold the replicas.
pub fn aggregated(
    scope: &str,
    slots: &[Slot<'_>],
    replicas: i64,
    fresh: bool,
) -> Result<Division, Problem> {
    let (mode, base) = mode(slots, replicas, fresh);
    let mut order: Vec<usize> = (0..slots.len()).collect();
    let replicas_out = match mode {
        Mode::Fresh => {
            let cap = |s: &Slot<'_>| s.available.saturating_add(s.current);
            order.sort_by(|&a, &b| {
                cap(&slots[b])
                    .cmp(&cap(&slots[a]))
                    .then_with(|| slots[a].name.cmp(slots[b].name))
            });
            let mask = prefix(slots, &order, replicas, cap)
                .ok_or_else(|| short(replicas, capacity_of(slots, cap)))?;
            webster(scope, replicas, slots, |k, s| {
                let c = if mask[k] { cap(s) } else { 0 };
                (c, c)
            })
        }
        Mode::ScaleUp => {
            let extra = replicas - base;
            order.sort_by(|&a, &b| {
                let (x, y) = (&slots[a], &slots[b]);
                (y.current > 0)
                    .cmp(&(x.current > 0))
                    .then_with(|| y.available.cmp(&x.available))
                    .then_with(|| x.name.cmp(y.name))
            });
            let mask = prefix(slots, &order, extra, |s| s.available)
                .ok_or_else(|| short(extra, capacity_of(slots, |s| s.available)))?;
            let add = webster(scope, extra, slots, |k, s| {
                let c = if mask[k] { s.available } else { 0 };
                (c, c)
            });
            slots.iter().zip(add).map(|(s, a)| s.current + a).collect()
        }
        Mode::ScaleDown => {
            // Karmada (pkg/scheduler/core/division_algorithm.go,
            // dynamicScaleDown then dynamicDivideReplicas): the current
            // assignment sorted by count, largest first, cut to the shortest
            // prefix that covers the new total, divided by the counts within
            // it. Equal counts rank by tie key, not by list order.
            let ties = TieScope::new(scope);
            let keys: Vec<u64> = slots.iter().map(|s| ties.key(s.name)).collect();
            order.sort_by(|&a, &b| {
                slots[b]
                    .current
                    .cmp(&slots[a].current)
                    .then_with(|| keys[a].cmp(&keys[b]))
                    .then_with(|| slots[a].name.cmp(slots[b].name))
            });
            // Always found: the counts add up to more than `replicas`.
            let mask = prefix(slots, &order, replicas, |s| s.current)
                .ok_or_else(|| short(replicas, base))?;
            webster(scope, replicas, slots, |k, s| {
                let c = if mask[k] { s.current } else { 0 };
                (c, c)
            })
        }
        Mode::Steady => slots.iter().map(|s| s.current).collect(),
    };
    Ok(Division {
        replicas: replicas_out,
        mode,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slots<'a>(spec: &[(&'a str, i64, i64)]) -> Vec<Slot<'a>> {
        spec.iter()
            .map(|&(name, current, available)| Slot {
                name,
                current,
                available,
                weight: 1,
            })
            .collect()
    }

    #[test]
    fn static_weights_two_to_one_with_two_replicas() {
        let mut s = slots(&[("a", 0, 0), ("b", 0, 0)]);
        s[0].weight = 2;
        assert_eq!(static_weight("ns/w", &s, 2).replicas, vec![1, 1]);
        assert_eq!(static_weight("ns/w", &s, 3).replicas, vec![2, 1]);
        assert_eq!(static_weight("ns/w", &s, 9).replicas, vec![6, 3]);
    }

    #[test]
    fn dynamic_table() {
        type Case<'a> = (
            &'a str,
            Vec<(&'a str, i64, i64)>,
            i64,
            bool,
            Result<(Vec<i64>, Mode), Problem>,
        );
        let cases: Vec<Case> = vec![
            (
                "fresh by capacity",
                vec![("a", 0, 6), ("b", 0, 3)],
                3,
                false,
                Ok((vec![2, 1], Mode::Fresh)),
            ),
            (
                "zero available gets none",
                vec![("a", 0, 5), ("b", 0, 0), ("c", 0, 5)],
                4,
                false,
                Ok((vec![2, 0, 2], Mode::Fresh)),
            ),
            (
                "full to capacity",
                vec![("a", 0, 1), ("b", 0, 2)],
                3,
                false,
                Ok((vec![1, 2], Mode::Fresh)),
            ),
            (
                "small share by weight",
                vec![("a", 0, 3), ("b", 0, 30)],
                10,
                false,
                Ok((vec![1, 9], Mode::Fresh)),
            ),
            (
                "short",
                vec![("a", 0, 1), ("b", 0, 2)],
                4,
                false,
                Err(Problem::CapacityShort {
                    needed: 4,
                    available: 3,
                }),
            ),
            (
                "scale up adds",
                vec![("a", 2, 0), ("b", 1, 4)],
                5,
                false,
                Ok((vec![2, 3], Mode::ScaleUp)),
            ),
            (
                "scale up short",
                vec![("a", 2, 0), ("b", 1, 1)],
                5,
                false,
                Err(Problem::CapacityShort {
                    needed: 2,
                    available: 1,
                }),
            ),
            (
                "scale down in proportion",
                vec![("a", 6, 0), ("b", 3, 9)],
                6,
                false,
                Ok((vec![4, 2], Mode::ScaleDown)),
            ),
            (
                "steady",
                vec![("a", 2, 0), ("b", 1, 0)],
                3,
                false,
                Ok((vec![2, 1], Mode::Steady)),
            ),
            (
                "reschedule recomputes",
                vec![("a", 2, 0), ("b", 1, 8)],
                3,
                true,
                Ok((vec![1, 2], Mode::Fresh)),
            ),
        ];
        for (name, spec, replicas, fresh, want) in cases {
            let got = dynamic("ns/w", &slots(&spec), replicas, fresh).map(|d| (d.replicas, d.mode));
            assert_eq!(got, want, "{name}");
        }
    }

    #[test]
    fn aggregated_table() {
        type Case<'a> = (
            &'a str,
            Vec<(&'a str, i64, i64)>,
            i64,
            Result<(Vec<i64>, Mode), Problem>,
        );
        let cases: Vec<Case> = vec![
            (
                "one cluster holds all",
                vec![("a", 0, 5), ("b", 0, 20), ("c", 0, 8)],
                12,
                Ok((vec![0, 12, 0], Mode::Fresh)),
            ),
            (
                "two largest",
                vec![("a", 0, 5), ("b", 0, 20), ("c", 0, 8)],
                25,
                Ok((vec![0, 18, 7], Mode::Fresh)),
            ),
            (
                "ties by name",
                vec![("b", 0, 10), ("a", 0, 10)],
                4,
                Ok((vec![0, 4], Mode::Fresh)),
            ),
            (
                "short",
                vec![("a", 0, 5), ("b", 0, 2)],
                8,
                Err(Problem::CapacityShort {
                    needed: 8,
                    available: 7,
                }),
            ),
            (
                "scale up fills holders first",
                vec![("a", 3, 2), ("b", 0, 50)],
                5,
                Ok((vec![5, 0], Mode::ScaleUp)),
            ),
            (
                "scale up spills over",
                vec![("a", 3, 2), ("b", 0, 50)],
                8,
                Ok((vec![3, 5], Mode::ScaleUp)),
            ),
            (
                // One cluster covers 4: the scale-down consolidates (it used
                // to shrink both to 2/2); of the equal counts, "a" has the
                // smaller tie key in "ns/w".
                "scale down",
                vec![("a", 4, 0), ("b", 4, 0)],
                4,
                Ok((vec![4, 0], Mode::ScaleDown)),
            ),
        ];
        for (name, spec, replicas, want) in cases {
            let got =
                aggregated("ns/w", &slots(&spec), replicas, false).map(|d| (d.replicas, d.mode));
            assert_eq!(got, want, "{name}");
        }
    }

    /// Aggregated scale-down, as Karmada's dynamicScaleDown computes it
    /// (pkg/scheduler/core/division_algorithm.go): the current counts,
    /// largest first; the shortest prefix covering the new total; the total
    /// divided by the counts within it; the rest emptied. The first two
    /// cases are Karmada's own vectors (pkg/scheduler/core/assignment_test.go,
    /// Test_dynamicScale, "replica 12 -> 6, aggregated 1:1:1" and
    /// "replica 12 -> 8, aggregated 100:100").
    #[test]
    fn aggregated_scale_down_consolidates() {
        type Case<'a> = (&'a str, Vec<(&'a str, i64, i64)>, i64, Vec<i64>);
        let six_three_one = vec![("a", 6, 0), ("b", 3, 0), ("c", 1, 0)];
        let cases: Vec<Case> = vec![
            (
                "karmada: 12 -> 6",
                vec![("member1", 4, 1), ("member2", 8, 1), ("member3", 0, 1)],
                6,
                vec![0, 6, 0],
            ),
            (
                "karmada: 12 -> 8",
                vec![("member1", 4, 96), ("member2", 8, 92)],
                8,
                vec![0, 8],
            ),
            // a covers 6 alone.
            ("6:3:1 -> 6", six_three_one.clone(), 6, vec![6, 0, 0]),
            ("6:3:1 -> 2", six_three_one.clone(), 2, vec![2, 0, 0]),
            ("6:3:1 -> 1", six_three_one.clone(), 1, vec![1, 0, 0]),
            // a and b cover 7; 7 by 6:3 is 4.67/2.33. Karmada: floors 4/2,
            // the remainder to the larger weight, 5/2.
            ("6:3:1 -> 7", six_three_one.clone(), 7, vec![5, 2, 0]),
            ("6:3:1 -> 9", six_three_one.clone(), 9, vec![6, 3, 0]),
            // a and b tie at 4 and both are needed; 5 by 4:4 leaves one
            // replica to the smaller tie key ("a" in "ns/w").
            (
                "4:4:2 -> 5",
                vec![("a", 4, 0), ("b", 4, 0), ("c", 2, 0)],
                5,
                vec![3, 2, 0],
            ),
            // b and c tie at 4 and one is enough: c has the smaller tie key
            // in "ns/w" (by name it would be b).
            (
                "1:4:4 -> 3, tie by key not name",
                vec![("a", 1, 0), ("b", 4, 0), ("c", 4, 0)],
                3,
                vec![0, 0, 3],
            ),
            // Clusters holding nothing stay empty, whatever they could hold.
            ("0:5 -> 2", vec![("a", 0, 50), ("b", 5, 0)], 2, vec![0, 2]),
        ];
        for (name, spec, replicas, want) in cases {
            let d = aggregated("ns/w", &slots(&spec), replicas, false).unwrap();
            assert_eq!((&d.replicas, d.mode), (&want, Mode::ScaleDown), "{name}");
            // The same clusters listed in reverse give the same division.
            let mut rev = spec.clone();
            rev.reverse();
            let mut back = aggregated("ns/w", &slots(&rev), replicas, false)
                .unwrap()
                .replicas;
            back.reverse();
            assert_eq!(back, want, "{name}, reversed");
        }
    }

    proptest::proptest! {
        /// Any aggregated scale-down: the total is right, no cluster grows,
        /// and no more clusters keep replicas than the fewest whose current
        /// counts cover the total.
        #[test]
        fn aggregated_scale_down_never_grows_and_keeps_the_fewest(
            currents in proptest::collection::vec(0i64..20, 1..8),
            pick in 0u64..u64::MAX,
        ) {
            let sum: i64 = currents.iter().sum();
            proptest::prop_assume!(sum >= 2);
            let replicas = 1 + i64::try_from(pick % u64::try_from(sum - 1).unwrap()).unwrap();
            let names: Vec<String> = (0..currents.len()).map(|i| format!("c{i}")).collect();
            let spec: Vec<(&str, i64, i64)> = names
                .iter()
                .zip(&currents)
                .map(|(n, &c)| (n.as_str(), c, 5))
                .collect();
            let d = aggregated("ns/w", &slots(&spec), replicas, false).unwrap();
            proptest::prop_assert_eq!(d.mode, Mode::ScaleDown);
            proptest::prop_assert_eq!(d.replicas.iter().sum::<i64>(), replicas);
            for (r, c) in d.replicas.iter().zip(&currents) {
                proptest::prop_assert!(*r <= *c);
            }
            let mut sorted = currents.clone();
            sorted.sort_unstable_by(|a, b| b.cmp(a));
            let fewest = sorted
                .iter()
                .scan(0i64, |acc, &c| {
                    *acc += c;
                    Some(*acc)
                })
                .position(|covered| covered >= replicas)
                .unwrap()
                + 1;
            let kept = d.replicas.iter().filter(|&&r| r > 0).count();
            proptest::prop_assert!(kept <= fewest, "{:?} kept {} > {}", d.replicas, kept, fewest);
        }
    }

    #[test]
    fn scale_three_six_four_keeps_clusters() {
        let mut s = slots(&[("a", 0, 10), ("b", 0, 10), ("c", 0, 10)]);
        let d3 = dynamic("ns/w", &s, 3, false).unwrap();
        assert_eq!(d3.replicas, vec![1, 1, 1]);
        for (slot, r) in s.iter_mut().zip(&d3.replicas) {
            slot.current = *r;
            slot.available -= r;
        }
        let d6 = dynamic("ns/w", &s, 6, false).unwrap();
        assert_eq!(
            (d6.replicas.clone(), d6.mode),
            (vec![2, 2, 2], Mode::ScaleUp)
        );
        for (slot, r) in s.iter_mut().zip(&d6.replicas) {
            slot.available -= r - slot.current;
            slot.current = *r;
        }
        let d4 = dynamic("ns/w", &s, 4, false).unwrap();
        assert_eq!(d4.mode, Mode::ScaleDown);
        assert_eq!(d4.replicas.iter().sum::<i64>(), 4);
        assert!(
            d4.replicas.iter().all(|&r| (1..=2).contains(&r)),
            "{:?}",
            d4.replicas
        );
    }

    #[test]
    fn duplicated_gives_everyone_all() {
        assert_eq!(
            duplicated(&slots(&[("a", 0, 0), ("b", 0, 0)]), 3).replicas,
            vec![3, 3]
        );
    }
}
