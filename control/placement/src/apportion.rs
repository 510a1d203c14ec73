//! Webster (Sainte-Laguë) apportionment with per-party caps and a stable,
//! rotating tie-break.
//!
//! Every party `i` with weight `w_i > 0` offers seats; its `k`-th seat
//! (0-based) has priority `w_i / (k + 1/2)`. The result for `n` seats is the
//! `n` best offers, where "best" is priority descending, then the party's tie
//! key ascending; a party never holds more than its cap. Because the result
//! for `n + 1` seats is the result for `n` plus one offer, growing the total
//! never lowers a count (house monotonicity), and since the tie key is a hash
//! of the workload and the cluster rather than the cluster's position,
//! remainders of many workloads land on different clusters.
//!
//! [`apportion`] computes this in `O(k log k)` for `k` parties regardless of
//! `n`: one divisor estimate (repeated while caps bind), then a few exact
//! corrections. [`apportion_slow`] hands out seats one at a time and is the
//! obviously-right reference the property tests compare against.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

/// One party of an apportionment: a weight, a cap and a tie key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Party {
    /// Relative weight; 0 means the party gets no seat.
    pub weight: u64,
    /// Most seats this party may hold.
    pub cap: u64,
    /// Smaller wins a tie between equal priorities (see [`tie_key`]).
    pub tie: u64,
}

/// The `k`-th seat (0-based) offered by party `party`.
#[derive(Clone, Copy, Debug)]
struct Offer {
    weight: u64,
    seat: u64,
    tie: u64,
    party: usize,
}

impl Offer {
    /// Priority `w / (k + 1/2)` compared exactly: `w_a (2k_b + 1)` vs `w_b (2k_a + 1)`.
    fn priority_cmp(&self, other: &Self) -> Ordering {
        // In u64 when every factor is below 2^31 (products below 2^63): the
        // common case, and cheaper than two 128-bit multiplications.
        if (self.weight | other.weight | self.seat | other.seat) >> 31 == 0 {
            let lhs = self.weight * (2 * other.seat + 1);
            let rhs = other.weight * (2 * self.seat + 1);
            return lhs.cmp(&rhs);
        }
        let lhs = u128::from(self.weight) * (2 * u128::from(other.seat) + 1);
        let rhs = u128::from(other.weight) * (2 * u128::from(self.seat) + 1);
        lhs.cmp(&rhs)
    }

    /// `Greater` means `self` is the better offer (taken earlier).
    fn better(&self, other: &Self) -> Ordering {
        self.priority_cmp(other)
            .then_with(|| other.tie.cmp(&self.tie))
            .then_with(|| other.party.cmp(&self.party))
    }
}

/// Max-heap entry: the best offer not yet held.
struct Best(Offer);
/// Max-heap entry: the worst offer held (reverse order).
struct Worst(Offer);

impl PartialEq for Best {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Best {}
impl PartialOrd for Best {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Best {
    fn cmp(&self, other: &Self) -> Ordering {
        self.0.better(&other.0)
    }
}
impl PartialEq for Worst {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Worst {}
impl PartialOrd for Worst {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Worst {
    fn cmp(&self, other: &Self) -> Ordering {
        other.0.better(&self.0)
    }
}

fn offer(parties: &[Party], party: usize, seat: u64) -> Offer {
    let p = parties[party];
    Offer {
        weight: p.weight,
        seat,
        tie: p.tie,
        party,
    }
}

/// Whether party `i` can take one more seat while holding `held`.
fn can_grow(p: &Party, held: u64) -> bool {
    p.weight > 0 && held < p.cap
}

/// Apportions `seats` among `parties` (Webster, capped, stable ties). The
/// counts sum to `min(seats, sum of caps of parties with weight > 0)`.
pub fn apportion(seats: u64, parties: &[Party]) -> Vec<u64> {
    let mut held = estimate(seats, parties);
    correct(seats, parties, &mut held);
    held
}

/// Divisor estimate: round each party's quota, fixing capped parties at
/// their cap and dividing the rest again until no new cap binds.
fn estimate(seats: u64, parties: &[Party]) -> Vec<u64> {
    let mut held = vec![0u64; parties.len()];
    let mut capped = vec![false; parties.len()];
    loop {
        let mut left = seats;
        let mut weight: u128 = 0;
        for (i, p) in parties.iter().enumerate() {
            if p.weight == 0 {
                capped[i] = true;
            }
            if capped[i] {
                left = left.saturating_sub(if p.weight == 0 { 0 } else { p.cap });
            } else {
                weight += u128::from(p.weight);
            }
        }
        if weight == 0 {
            for (i, p) in parties.iter().enumerate() {
                held[i] = if p.weight == 0 { 0 } else { p.cap };
            }
            return held;
        }
        let mut newly_capped = false;
        for (i, p) in parties.iter().enumerate() {
            if capped[i] {
                held[i] = if p.weight == 0 { 0 } else { p.cap };
                continue;
            }
            // round(left * w / W) = floor((2 left w + W) / 2W), exactly;
            // in u64 when it fits (a u128 division is several times slower).
            let q = match (
                u64::try_from(weight),
                2u64.checked_mul(left).and_then(|x| x.checked_mul(p.weight)),
            ) {
                (Ok(w64), Some(num)) if num.checked_add(w64).is_some() && w64 <= u64::MAX / 2 => {
                    (num + w64) / (2 * w64)
                }
                _ => {
                    let q = (2 * u128::from(left) * u128::from(p.weight) + weight) / (2 * weight);
                    u64::try_from(q).unwrap_or(u64::MAX)
                }
            };
            if q >= p.cap {
                capped[i] = true;
                newly_capped = true;
                held[i] = p.cap;
            } else {
                held[i] = q;
            }
        }
        if !newly_capped {
            return held;
        }
    }
}

/// Exact correction: add the best free offers, drop the worst held ones, and
/// swap while a free offer beats a held one.
fn correct(seats: u64, parties: &[Party], held: &mut [u64]) {
    let mut free_v: Vec<Best> = Vec::with_capacity(parties.len());
    let mut worst_v: Vec<Worst> = Vec::with_capacity(parties.len());
    let mut total: u64 = 0;
    for (i, p) in parties.iter().enumerate() {
        total += held[i];
        if can_grow(p, held[i]) {
            free_v.push(Best(offer(parties, i, held[i])));
        }
        if held[i] > 0 {
            worst_v.push(Worst(offer(parties, i, held[i] - 1)));
        }
    }
    // Heapify in O(k) rather than k pushes.
    let mut free = BinaryHeap::from(free_v);
    let mut worst = BinaryHeap::from(worst_v);
    // Heap entries go stale when a party's count changes; an entry is live
    // only when its seat still matches the party's current count.
    let live_free =
        |held: &[u64], o: &Offer| held[o.party] == o.seat && can_grow(&parties[o.party], o.seat);
    let live_worst = |held: &[u64], o: &Offer| held[o.party] == o.seat + 1;
    loop {
        while free.peek().is_some_and(|b| !live_free(held, &b.0)) {
            free.pop();
        }
        while worst.peek().is_some_and(|w| !live_worst(held, &w.0)) {
            worst.pop();
        }
        let grow = free.peek().map(|b| b.0);
        let shrink = worst.peek().map(|w| w.0);
        let step = if total < seats {
            match grow {
                Some(g) => (Some(g), None),
                None => return,
            }
        } else if total > seats {
            (None, shrink)
        } else {
            match (grow, shrink) {
                (Some(g), Some(s)) if g.better(&s) == Ordering::Greater => (Some(g), Some(s)),
                _ => return,
            }
        };
        if let Some(s) = step.1 {
            let i = s.party;
            held[i] -= 1;
            total -= 1;
            free.push(Best(offer(parties, i, held[i])));
            if held[i] > 0 {
                worst.push(Worst(offer(parties, i, held[i] - 1)));
            }
        }
        if let Some(g) = step.0 {
            let i = g.party;
            held[i] += 1;
            total += 1;
            worst.push(Worst(offer(parties, i, held[i] - 1)));
            if can_grow(&parties[i], held[i]) {
                free.push(Best(offer(parties, i, held[i])));
            }
        }
    }
}

/// The reference: hands out seats one at a time to the best offer. `O(n k)`.
pub fn apportion_slow(seats: u64, parties: &[Party]) -> Vec<u64> {
    let mut held = vec![0u64; parties.len()];
    for _ in 0..seats {
        let best = (0..parties.len())
            .filter(|&i| can_grow(&parties[i], held[i]))
            .map(|i| offer(parties, i, held[i]))
            .max_by(|a, b| a.better(b));
        match best {
            Some(o) => held[o.party] += 1,
            None => break,
        }
    }
    held
}

/// A stable 64-bit tie key for `member` within `scope` (e.g. a binding's
/// `namespace/name` and a cluster name): FNV-1a, then a SplitMix64 finaliser.
/// Stable across processes, platforms and Rust versions.
pub fn tie_key(scope: &str, member: &str) -> u64 {
    TieScope::new(scope).key(member)
}

/// [`tie_key`] with the scope hashed once, for many members.
#[derive(Clone, Copy, Debug)]
pub struct TieScope(u64);

impl TieScope {
    /// Hashes `scope` (and a separator no UTF-8 text contains).
    pub fn new(scope: &str) -> Self {
        TieScope(fnv(0xcbf2_9ce4_8422_2325, scope.bytes().chain([0xff])))
    }

    /// The tie key of `member` in this scope.
    pub fn key(&self, member: &str) -> u64 {
        finish(fnv(self.0, member.bytes()))
    }
}

fn fnv(mut h: u64, bytes: impl Iterator<Item = u8>) -> u64 {
    for b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

fn finish(mut h: u64) -> u64 {
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parties(weights: &[u64]) -> Vec<Party> {
        weights
            .iter()
            .enumerate()
            .map(|(i, &w)| Party {
                weight: w,
                cap: u64::MAX,
                tie: i as u64,
            })
            .collect()
    }

    fn capped(weights: &[u64], caps: &[u64]) -> Vec<Party> {
        weights
            .iter()
            .zip(caps)
            .enumerate()
            .map(|(i, (&w, &c))| Party {
                weight: w,
                cap: c,
                tie: i as u64,
            })
            .collect()
    }

    #[test]
    fn table() {
        // (seats, weights, caps, expected); tie keys are the positions.
        let max = u64::MAX;
        type Case<'a> = (u64, &'a [u64], &'a [u64], &'a [u64]);
        let cases: &[Case] = &[
            (0, &[1, 1], &[max, max], &[0, 0]),
            (2, &[2, 1], &[max, max], &[1, 1]),
            (3, &[2, 1], &[max, max], &[2, 1]),
            (1, &[1, 1, 1], &[max, max, max], &[1, 0, 0]),
            (5, &[1, 1], &[max, max], &[3, 2]),
            (10, &[1, 0, 1], &[max, max, max], &[5, 0, 5]),
            (7, &[3, 2, 2], &[max, max, max], &[3, 2, 2]),
            // 60/30/10: the second seat of 30 ties the first of 10; the tie key decides.
            (5, &[60, 30, 10], &[max, max, max], &[3, 2, 0]),
            // The classic case where Webster and D'Hondt differ: 5 seats, 53/24/23.
            (5, &[53, 24, 23], &[max, max, max], &[3, 1, 1]),
            // Caps: a capped party's share flows to the others by weight.
            (10, &[1, 1, 1], &[1, max, max], &[1, 5, 4]),
            (10, &[1, 1], &[3, 4], &[3, 4]),
            (6, &[5, 1], &[2, max], &[2, 4]),
            // Zero cap and zero weight get nothing.
            (4, &[1, 1, 1], &[0, max, max], &[0, 2, 2]),
            (3, &[0, 0], &[max, max], &[0, 0]),
            // Large totals stay exact.
            (
                1_000_000,
                &[1, 2, 3, 4],
                &[max, max, max, max],
                &[100_000, 200_000, 300_000, 400_000],
            ),
        ];
        for (seats, w, c, want) in cases {
            let p = capped(w, c);
            assert_eq!(
                apportion(*seats, &p),
                *want,
                "fast: seats {seats}, weights {w:?}, caps {c:?}"
            );
            if *seats <= 1000 {
                assert_eq!(
                    apportion_slow(*seats, &p),
                    *want,
                    "slow: seats {seats}, weights {w:?}"
                );
            }
        }
    }

    #[test]
    fn two_to_one_with_two_replicas_gives_one_each() {
        assert_eq!(apportion(2, &parties(&[2, 1])), vec![1, 1]);
    }

    #[test]
    fn ties_follow_the_tie_key_not_the_position() {
        let mut p = parties(&[1, 1, 1]);
        p[0].tie = 9;
        p[1].tie = 3;
        p[2].tie = 5;
        assert_eq!(apportion(1, &p), vec![0, 1, 0]);
        assert_eq!(apportion(2, &p), vec![0, 1, 1]);
    }

    #[test]
    fn remainders_rotate_over_workloads() {
        // 100 workloads of 1 replica over 3 equal clusters: each cluster gets
        // some, none gets all (position-based ties would give cluster 0 all 100).
        let clusters = ["a", "b", "c"];
        let mut got = [0u64; 3];
        for w in 0..100 {
            let scope = format!("default/app-{w}");
            let p: Vec<Party> = clusters
                .iter()
                .map(|c| Party {
                    weight: 1,
                    cap: u64::MAX,
                    tie: tie_key(&scope, c),
                })
                .collect();
            for (g, n) in got.iter_mut().zip(apportion(1, &p)) {
                *g += n;
            }
        }
        assert_eq!(got.iter().sum::<u64>(), 100);
        for g in got {
            assert!((20..=46).contains(&g), "uneven remainders: {got:?}");
        }
    }

    #[test]
    fn tie_key_is_stable() {
        // Deterministic, and scope and member are not simply concatenated.
        assert_eq!(
            tie_key("default/web", "east"),
            tie_key("default/web", "east")
        );
        assert_ne!(
            tie_key("default/web", "east"),
            tie_key("default/web", "west")
        );
        assert_ne!(tie_key("a", "bc"), tie_key("ab", "c"));
    }
}
