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
//! [`apportion`] computes this in `O(k)` for `k` parties regardless of `n`
//! when the divisor estimate (rounded quotas, repeated while caps bind) is
//! off by at most [`BATCH`] seats: one pass drops the `d` worst held offers
//! (or adds the `d` best free ones), one more pass checks that no free offer
//! beats a held one, swapping while one does. An estimate further off, or a
//! correction that keeps swapping, goes to two heaps (`O(k log k)`).
//! [`apportion_shares`] asks for a party's tie key only when two equal
//! priorities meet, which few apportionments do. [`apportion_slow`] hands
//! out seats one at a time and is the obviously-right reference the
//! property tests compare against.

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

/// A party without its tie key, for [`apportion_shares`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Share {
    /// Relative weight; 0 means the party gets no seat.
    pub weight: u64,
    /// Most seats this party may hold.
    pub cap: u64,
}

/// Apportions `seats` among `parties` (Webster, capped, stable ties). The
/// counts sum to `min(seats, sum of caps of parties with weight > 0)`.
pub fn apportion(seats: u64, parties: &[Party]) -> Vec<u64> {
    let shares: Vec<Share> = parties
        .iter()
        .map(|p| Share {
            weight: p.weight,
            cap: p.cap,
        })
        .collect();
    apportion_shares(seats, &shares, |i| parties[i].tie)
}

/// [`apportion`] with tie keys computed on demand: `tie(i)` is party `i`'s
/// tie key, called at most once per party and only for parties whose
/// offers meet an equal priority (a tie key is a hash, costly next to the
/// arithmetic; most apportionments need none or a few).
pub fn apportion_shares(seats: u64, shares: &[Share], tie: impl Fn(usize) -> u64) -> Vec<u64> {
    let (mut held, total) = estimate(seats, shares);
    let mut ties = Ties {
        key: tie,
        known: vec![None; shares.len()],
    };
    if !settle(seats, shares, &mut held, total, &mut ties) {
        let parties: Vec<Party> = shares
            .iter()
            .enumerate()
            .map(|(i, s)| Party {
                weight: s.weight,
                cap: s.cap,
                tie: ties.get(i),
            })
            .collect();
        correct(seats, &parties, &mut held);
    }
    held
}

/// Tie keys, each computed once when first needed.
struct Ties<F> {
    key: F,
    known: Vec<Option<u64>>,
}

impl<F: Fn(usize) -> u64> Ties<F> {
    fn get(&mut self, i: usize) -> u64 {
        *self.known[i].get_or_insert_with(|| (self.key)(i))
    }
}

/// Priority of seat `sa` of weight `wa` against seat `sb` of weight `wb`:
/// `wa / (sa + 1/2)` vs `wb / (sb + 1/2)`, exactly.
#[inline(always)]
fn priority_cmp(wa: u64, sa: u64, wb: u64, sb: u64) -> Ordering {
    // In u64 when every factor is below 2^31 (products below 2^63): the
    // common case, and cheaper than two 128-bit multiplications.
    if (wa | wb | sa | sb) >> 31 == 0 {
        return (wa * (2 * sb + 1)).cmp(&(wb * (2 * sa + 1)));
    }
    let lhs = u128::from(wa) * (2 * u128::from(sb) + 1);
    let rhs = u128::from(wb) * (2 * u128::from(sa) + 1);
    lhs.cmp(&rhs)
}

/// Most seats one scan pass adds or drops; an estimate further off goes to
/// the heaps. Large enough for the estimate's usual error at thousands of
/// parties (the rounding errors of `k` quotas add up to about `sqrt(k / 12)`).
pub const BATCH: usize = 32;

/// Scan passes before handing over to the heaps.
const PASSES: usize = 8;

/// Seat `seat` of party `party`: an offer, compared by [`Scan::better`].
#[derive(Clone, Copy)]
struct Seat {
    party: usize,
    weight: u64,
    seat: u64,
}

struct Scan<'s, F> {
    ties: &'s mut Ties<F>,
}

impl<F: Fn(usize) -> u64> Scan<'_, F> {
    /// `Greater` when `a` is the better offer (taken earlier): priority,
    /// then tie key ascending, then position ascending.
    #[inline(always)]
    fn better(&mut self, a: Seat, b: Seat) -> Ordering {
        match priority_cmp(a.weight, a.seat, b.weight, b.seat) {
            Ordering::Equal => self.tie_break(a.party, b.party),
            o => o,
        }
    }

    #[inline(never)]
    fn tie_break(&mut self, a: usize, b: usize) -> Ordering {
        let (ta, tb) = (self.ties.get(a), self.ties.get(b));
        tb.cmp(&ta).then_with(|| b.cmp(&a))
    }

    /// The `d` best (`best`) or worst offers of `offers`, into `out`.
    fn extremes(
        &mut self,
        d: usize,
        best: bool,
        offers: impl Iterator<Item = Seat>,
        out: &mut Vec<Seat>,
    ) {
        // `out` stays ordered most extreme first; a candidate enters when it
        // is more extreme than the last kept.
        let want = if best {
            Ordering::Greater
        } else {
            Ordering::Less
        };
        out.clear();
        for o in offers {
            if out.len() == d {
                let Some(&last) = out.last() else { return };
                if self.better(o, last) != want {
                    continue;
                }
                out.pop();
            }
            let mut at = out.len();
            while at > 0 && self.better(o, out[at - 1]) == want {
                at -= 1;
            }
            out.insert(at, o);
        }
    }
}

/// Brings an estimate to the exact result by linear scans; false when it
/// gives up (too far off), leaving `held` a valid start for [`correct`].
fn settle<F: Fn(usize) -> u64>(
    seats: u64,
    shares: &[Share],
    held: &mut [u64],
    mut total: u64,
    ties: &mut Ties<F>,
) -> bool {
    let mut scan = Scan { ties };
    let mut picked: Vec<Seat> = Vec::with_capacity(BATCH);
    for _ in 0..PASSES {
        if total > seats {
            // Drop the d worst held offers, one per party.
            let d = match usize::try_from(total - seats) {
                Ok(d) if d <= BATCH => d,
                _ => return false,
            };
            let held_offers = shares
                .iter()
                .zip(held.iter())
                .enumerate()
                .filter(|&(_, (_, &h))| h > 0)
                .map(|(i, (s, &h))| Seat {
                    party: i,
                    weight: s.weight,
                    seat: h - 1,
                });
            scan.extremes(d, false, held_offers, &mut picked);
            for s in &picked {
                held[s.party] -= 1;
                total -= 1;
            }
        } else if total < seats {
            // Add the d best free offers, one per party.
            let d = match usize::try_from(seats - total) {
                Ok(d) if d <= BATCH => d,
                _ => return false,
            };
            let free_offers =
                shares
                    .iter()
                    .zip(held.iter())
                    .enumerate()
                    .filter_map(|(i, (s, &h))| {
                        can_grow_share(s, h).then_some(Seat {
                            party: i,
                            weight: s.weight,
                            seat: h,
                        })
                    });
            scan.extremes(d, true, free_offers, &mut picked);
            if picked.is_empty() {
                // No room left: every party is at its cap.
                return true;
            }
            for s in &picked {
                held[s.party] += 1;
                total += 1;
            }
        } else {
            // The count is right: done unless a free offer beats a held one.
            let mut best: Option<Seat> = None;
            let mut worst: Option<Seat> = None;
            for (i, (s, &h)) in shares.iter().zip(held.iter()).enumerate() {
                if can_grow_share(s, h) {
                    let o = Seat {
                        party: i,
                        weight: s.weight,
                        seat: h,
                    };
                    if best.is_none_or(|b| scan.better(o, b) == Ordering::Greater) {
                        best = Some(o);
                    }
                }
                if h > 0 {
                    let o = Seat {
                        party: i,
                        weight: s.weight,
                        seat: h - 1,
                    };
                    if worst.is_none_or(|w| scan.better(o, w) == Ordering::Less) {
                        worst = Some(o);
                    }
                }
            }
            match (best, worst) {
                (Some(b), Some(w)) if scan.better(b, w) == Ordering::Greater => {
                    held[b.party] += 1;
                    held[w.party] -= 1;
                }
                _ => return true,
            }
        }
    }
    false
}

fn can_grow_share(s: &Share, held: u64) -> bool {
    s.weight > 0 && held < s.cap
}

/// Divisor estimate: round each party's quota, fixing capped parties at
/// their cap and dividing the rest again until no new cap binds. Returns
/// the counts and their sum.
fn estimate(seats: u64, parties: &[Share]) -> (Vec<u64>, u64) {
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
            return sum(held);
        }
        let mut newly_capped = false;
        // round(left * w / W) = floor((2 left w + W) / 2W), exactly;
        // in u64 when it fits (a u128 division is several times slower).
        let w64 = u64::try_from(weight).ok().filter(|&w| w <= u64::MAX / 2);
        let left2 = 2u64.checked_mul(left);
        for (i, p) in parties.iter().enumerate() {
            if capped[i] {
                held[i] = if p.weight == 0 { 0 } else { p.cap };
                continue;
            }
            let q = match (w64, left2.and_then(|x| x.checked_mul(p.weight))) {
                (Some(w64), Some(num)) if num <= u64::MAX - w64 => (num + w64) / (2 * w64),
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
            return sum(held);
        }
    }
}

fn sum(held: Vec<u64>) -> (Vec<u64>, u64) {
    let total = held.iter().fold(0u64, |a, &h| a.saturating_add(h));
    (held, total)
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

    /// How far the estimate is off (counts minus seats) and whether the
    /// scans settle it without the heaps.
    fn path(seats: u64, p: &[Party]) -> (i64, bool) {
        let shares: Vec<Share> = p
            .iter()
            .map(|p| Share {
                weight: p.weight,
                cap: p.cap,
            })
            .collect();
        let (mut held, total) = estimate(seats, &shares);
        let mut ties = Ties {
            key: |i: usize| p[i].tie,
            known: vec![None; p.len()],
        };
        let off = total as i64 - seats as i64;
        (off, settle(seats, &shares, &mut held, total, &mut ties))
    }

    #[test]
    fn corrections_exact_off_by_k_and_beyond_a_batch() {
        // The bench's static weights: 34 x 3, 33 x 2, 33 x 1 (W = 201);
        // rounded quotas 15/10/5 give 1,005 seats for 1,000, and the five
        // dropped all come from the 34 tied parties of weight 3.
        let tiers: Vec<u64> = (0..100).map(|i| [3, 2, 1][i % 3]).collect();
        let mut bench = parties(&tiers);
        for (i, p) in bench.iter_mut().enumerate() {
            p.tie = tie_key("default/bench", &format!("member-{i:05}"));
        }
        // Rounded quotas that add up: nothing to correct.
        let exact = parties(&[1, 2, 3, 4]);
        // 64 equal parties and 32 seats: every quota 0.5 rounds up, 32 too many.
        let halves = parties(&[1; 64]);
        // 200 equal parties and 66 seats: every quota 0.33 rounds down, 66 short.
        let thirds = parties(&[1; 200]);
        // A few seats short, then an added seat must move to a second party:
        // weights where adding the d best first offers is not enough.
        let skew = parties(&[1000, 1, 1, 1, 1, 1, 1]);
        type Case<'a> = (&'a str, u64, &'a [Party], i64, bool);
        let cases: &[Case] = &[
            ("bench static weights", 1000, &bench, 5, true),
            ("exact estimate", 1000, &exact, 0, true),
            ("32 over, one batch", 32, &halves, 32, true),
            ("66 short, beyond a batch", 66, &thirds, -66, false),
            ("skewed", 10, &skew, 0, true),
        ];
        for &(name, seats, p, off, settled) in cases {
            assert_eq!(path(seats, p), (off, settled), "{name}");
            assert_eq!(apportion(seats, p), apportion_slow(seats, p), "{name}");
        }
        // Seat counts of the bench fleet around 1,000 and beyond, and of the crowds.
        for seats in (0..2000).step_by(37).chain(990..1010) {
            assert_eq!(
                apportion(seats, &bench),
                apportion_slow(seats, &bench),
                "bench {seats}"
            );
        }
        for seats in 0..300 {
            for p in [&halves, &thirds, &skew] {
                assert_eq!(apportion(seats, p), apportion_slow(seats, p));
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
