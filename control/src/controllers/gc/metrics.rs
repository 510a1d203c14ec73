//! Garbage collector metrics (prefix `hami_gc_`). Labels come from fixed
//! sets only: the propagation of a delete, why a delete was refused, the
//! outcome of a reconcile.

use hami_apiserver::deletion::Propagation;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

use crate::controllers::runner::ResultLabel;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PropagationLabel {
    propagation: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: &'static str,
}

/// Why a delete the index asked for was not done: the fixed set of
/// `hami_gc_deletes_refused_total`.
///
/// * `owner_in_store`: the store holds an owner the index called gone.
/// * `owner_recreated`: the owner's name holds an object with another uid;
///   the dependent waits for its controller to adopt it (see
///   [`super::GcOptions::recreate_grace`]).
/// * `dependent_changed`: the dependent as stored is another object, or no
///   longer the one the index decided on (new references, being deleted).
/// * `precondition`: the API refused the pinned delete (uid or
///   resourceVersion moved between the read and the delete).
/// * `blocking_dependent_in_store`: an owner's `foregroundDeletion`
///   finalizer stays (which would delete it) because the store holds a
///   dependent that blocks it and the index does not know.
pub const REFUSED: [&str; 5] = [
    "owner_in_store",
    "owner_recreated",
    "dependent_changed",
    "precondition",
    "blocking_dependent_in_store",
];

/// Every propagation a delete of the collector may carry.
const PROPAGATIONS: [Propagation; 3] = [
    Propagation::Background,
    Propagation::Foreground,
    Propagation::Orphan,
];

/// Garbage collector metrics.
#[derive(Clone)]
pub struct GcMetrics {
    reconciles: Family<ResultLabel, Counter>,
    deletes: Family<PropagationLabel, Counter>,
    deletes_refused: Family<ReasonLabel, Counter>,
    references_removed: Counter,
    finalizers_removed: Counter,
    bad_objects: Counter,
}

impl GcMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self {
            reconciles: Family::default(),
            deletes: Family::default(),
            deletes_refused: Family::default(),
            references_removed: Counter::default(),
            finalizers_removed: Counter::default(),
            bad_objects: Counter::default(),
        };
        for p in PROPAGATIONS {
            drop(m.deletes.get_or_create(&PropagationLabel {
                propagation: p.as_str(),
            }));
        }
        for reason in REFUSED {
            drop(m.deletes_refused.get_or_create(&ReasonLabel { reason }));
        }
        let sub = registry.sub_registry_with_prefix("hami_gc");
        sub.register(
            "reconciles",
            "Garbage collector reconciles by result (deleted, references_removed, orphaned, finalizer_removed, waiting, waiting_for_dependents, unknown_owner, unchanged, error)",
            m.reconciles.clone(),
        );
        sub.register(
            "deletes",
            "Dependents deleted because none of their owners exists any more or an owner is deleted in the foreground, by propagation (Background, Foreground, Orphan)",
            m.deletes.clone(),
        );
        sub.register(
            "deletes_refused",
            "Deletes the index asked for that the store refuted, by reason (owner_in_store, owner_recreated, dependent_changed, precondition, blocking_dependent_in_store)",
            m.deletes_refused.clone(),
        );
        sub.register(
            "references_removed",
            "ownerReferences removed from dependents (dangling or orphaned references)",
            m.references_removed.clone(),
        );
        sub.register(
            "finalizers_removed",
            "orphan and foregroundDeletion finalizers removed from owners once their dependents were orphaned or deleted",
            m.finalizers_removed.clone(),
        );
        sub.register(
            "bad_objects",
            "Stored objects skipped because their metadata could not be read",
            m.bad_objects.clone(),
        );
        m
    }

    pub(super) fn count(&self, result: &'static str) {
        self.reconciles.get_or_create(&ResultLabel { result }).inc();
    }

    pub(super) fn deleted(&self, p: Propagation) {
        self.deletes
            .get_or_create(&PropagationLabel {
                propagation: p.as_str(),
            })
            .inc();
    }

    pub(super) fn refused(&self, reason: &'static str) {
        self.deletes_refused
            .get_or_create(&ReasonLabel { reason })
            .inc();
    }

    pub(super) fn reference_removed(&self, n: usize) {
        self.references_removed
            .inc_by(u64::try_from(n).unwrap_or(u64::MAX));
    }

    pub(super) fn finalizer_removed(&self) {
        self.finalizers_removed.inc();
    }

    pub(super) fn bad_object(&self) {
        self.bad_objects.inc();
    }

    /// Deletes refused for `reason` so far (tests).
    #[cfg(test)]
    pub(super) fn refusals(&self, reason: &'static str) -> u64 {
        self.deletes_refused
            .get_or_create(&ReasonLabel { reason })
            .get()
    }

    /// Finalizers removed so far (tests).
    #[cfg(test)]
    pub(super) fn finalizers_removed(&self) -> u64 {
        self.finalizers_removed.get()
    }

    /// Deletes with `p` so far (tests).
    #[cfg(test)]
    pub(super) fn deletes(&self, p: Propagation) -> u64 {
        self.deletes
            .get_or_create(&PropagationLabel {
                propagation: p.as_str(),
            })
            .get()
    }
}
