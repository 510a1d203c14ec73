//! Properties of the Webster apportionment: the fast path equals the
//! one-seat-at-a-time reference, growing the total never lowers a count, and
//! the counts respect caps and add up.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use hami_placement::apportion::{Party, apportion, apportion_slow};
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
