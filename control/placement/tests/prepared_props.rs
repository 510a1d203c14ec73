//! A snapshot prepared once ([`PreparedClusters`]) and reused over many
//! decisions gives exactly what [`schedule`] gives with the clusters as they
//! are, over random fleets and bindings (`support/scenario.rs`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use hami_placement::{PreparedClusters, schedule, schedule_prepared};
use proptest::prelude::*;
use support::scenario::fleet_and_bindings;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1500))]

    #[test]
    fn reused_snapshot_equals_schedule((clusters, bindings) in fleet_and_bindings()) {
        let prepared = PreparedClusters::new(&clusters);
        for (binding, available) in &bindings {
            let want = schedule(binding, &clusters, available);
            let got = schedule_prepared(binding, &prepared, available);
            prop_assert_eq!(got, want, "{:?}", binding);
        }
        // An owned snapshot decides the same.
        let owned = PreparedClusters::owned(clusters.clone());
        for (binding, available) in &bindings {
            prop_assert_eq!(
                schedule_prepared(binding, &owned, available),
                schedule_prepared(binding, &prepared, available)
            );
        }
    }
}
