//! Properties of the Webster apportionment: the fast path equals the
//! one-seat-at-a-time reference, growing the total never lowers a count, and
//! the counts respect caps and add up.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use hami_placement::apportion::{Party, Share, apportion, apportion_shares, apportion_slow};
use proptest::prelude::*;

fn party() -> impl Strategy<Value = Party> {
    (
        prop_oneof![Just(0u64), 1u64..5, 1u64..1000, 1u64..1_000_000],
        prop_oneof![Just(0u64), 0u64..20, 0u64..500, Just(u64::MAX)],
        0u64..4,
    )
        .prop_map(|(weight, cap, tie)| Party { weight, cap, tie })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn fast_equals_slow(seats in 0u64..400, parties in prop::collection::vec(party(), 0..12)) {
        prop_assert_eq!(apportion(seats, &parties), apportion_slow(seats, &parties));
    }

    #[test]
    fn house_monotone(seats in 0u64..300, parties in prop::collection::vec(party(), 1..10)) {
        let a = apportion(seats, &parties);
        let b = apportion(seats + 1, &parties);
        for (x, y) in a.iter().zip(&b) {
            prop_assert!(y >= x, "{a:?} -> {b:?}");
        }
    }

    #[test]
    fn sums_and_caps(seats in 0u64..100_000, parties in prop::collection::vec(party(), 0..20)) {
        let a = apportion(seats, &parties);
        let room: u64 = parties.iter().filter(|p| p.weight > 0).map(|p| p.cap).fold(0u64, u64::saturating_add);
        prop_assert_eq!(a.iter().sum::<u64>(), seats.min(room));
        for (n, p) in a.iter().zip(&parties) {
            prop_assert!(*n <= p.cap);
            if p.weight == 0 {
                prop_assert_eq!(*n, 0);
            }
        }
    }
}

/// Many parties with few distinct weights and tie keys: equal priorities
/// everywhere, estimates off by several seats (the scan correction), and
/// sometimes by more than a scan pass takes (the heap correction).
fn crowd() -> impl Strategy<Value = Vec<Party>> {
    prop::collection::vec(
        (
            prop_oneof![1u64..4, 1u64..50, 0u64..3, 900u64..2000],
            prop_oneof![Just(u64::MAX), 0u64..40],
            0u64..8,
        )
            .prop_map(|(weight, cap, tie)| Party { weight, cap, tie }),
        20..150,
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn fast_equals_slow_for_crowds(seats in 0u64..2500, parties in crowd()) {
        prop_assert_eq!(apportion(seats, &parties), apportion_slow(seats, &parties));
    }

    #[test]
    fn lazy_ties_equal_eager_ties(seats in 0u64..2500, parties in crowd()) {
        let shares: Vec<Share> = parties.iter().map(|p| Share { weight: p.weight, cap: p.cap }).collect();
        let asked = std::cell::RefCell::new(vec![0u32; parties.len()]);
        let got = apportion_shares(seats, &shares, |i| {
            asked.borrow_mut()[i] += 1;
            parties[i].tie
        });
        prop_assert_eq!(got, apportion(seats, &parties));
        prop_assert!(asked.borrow().iter().all(|&n| n <= 1), "a tie key asked twice");
    }
}
