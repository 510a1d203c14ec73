//! The collector's decisions, pure: what to do with one object given the
//! state of its owners (as a dependent) or of its dependents (as an owner
//! being deleted). The same functions decide on the index and, again, on
//! what the store holds; only the store's answer is written.
//!
//! Reproduces kube-controller-manager's garbage collector
//! (`pkg/controller/garbagecollector/garbagecollector.go`):
//! [`dependent`] is `attemptToDeleteItem` with `classifyReferences`,
//! [`owner`] is `processDeletingDependentsItem` (foreground) and
//! `attemptToOrphanWorker` (orphan). One departure, for hami's detector:
//! an owner whose name now holds an object with another uid
//! ([`OwnerState::Recreated`]) is waited for before its dependents count it
//! gone (kube deletes at once).

use hami_apiserver::deletion::Propagation;

/// What the collector found at an ownerReference's coordinates (kind from
/// apiVersion/kind, name, the dependent's namespace for namespaced kinds).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OwnerState {
    /// The owner exists with the referenced uid and is not being deleted in
    /// the foreground (kube's "solid" owner).
    Solid,
    /// Nothing of that kind and name (kube's "dangling" reference).
    Absent,
    /// An object of that kind and name with another uid: the owner was
    /// deleted and something recreated under its name. kube calls it
    /// dangling; hami waits a grace first, since its detector re-points a
    /// binding's reference to the recreated template.
    Recreated,
    /// The owner exists and is being deleted in the foreground (kube's
    /// "waitingForDependentsDeletion").
    WaitingForDependents,
    /// apiVersion/kind names no kind served now: kube's GC fails the item
    /// and retries it; it never counts such an owner gone.
    UnknownKind,
    /// A reference no owner can satisfy: a cluster-scoped dependent naming a
    /// namespaced kind (kube: `namespacedOwnerOfClusterScopedObjectErr`, not
    /// retried), or one without uid, name or kind (kube's validation refuses
    /// it). Never makes the dependent garbage.
    Invalid,
}

/// One reference of a dependent, with what its coordinates hold.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reference {
    pub uid: String,
    pub state: OwnerState,
}

/// An object seen as a dependent.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Dependent {
    pub deleting: bool,
    /// Carries the `orphan` finalizer.
    pub orphan: bool,
    /// Carries the `foregroundDeletion` finalizer.
    pub foreground: bool,
    pub references: Vec<Reference>,
    /// Some object names this one as its owner.
    pub has_dependents: bool,
}

/// Why a dependent is kept as it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Keep {
    NoOwners,
    /// "Being deleted is a one-way trip": its deletion goes on without us.
    BeingDeleted,
    /// At least one owner exists, and no reference is dangling.
    SolidOwner,
    InvalidReference,
}

/// What to do with a dependent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DependentAction {
    Keep(Keep),
    /// No owner is solid: delete it, pinned to the object as read.
    Delete(Propagation),
    /// Some owners are solid: remove the references (by owner uid) that
    /// are dangling or wait for their dependents' deletion.
    RemoveReferences(Vec<String>),
    /// An owner's name holds another uid: look again after the grace.
    WaitForRecreatedOwner,
    /// An owner's kind is not served (yet): keep, look again later.
    RetryUnknownKind,
}

/// kube's `attemptToDeleteItem` for an object that is not being deleted in
/// the foreground. `grace_over`: a [`OwnerState::Recreated`] owner has been
/// waited for long enough and now counts as absent.
pub fn dependent(d: &Dependent, grace_over: bool) -> DependentAction {
    if d.deleting {
        return DependentAction::Keep(Keep::BeingDeleted);
    }
    if d.references.is_empty() {
        return DependentAction::Keep(Keep::NoOwners);
    }
    let any = |s: OwnerState| d.references.iter().any(|r| r.state == s);
    // classifyReferences fails the whole item on an owner it cannot look up.
    if any(OwnerState::UnknownKind) {
        return DependentAction::RetryUnknownKind;
    }
    if any(OwnerState::Invalid) {
        return DependentAction::Keep(Keep::InvalidReference);
    }
    if any(OwnerState::Recreated) && !grace_over {
        return DependentAction::WaitForRecreatedOwner;
    }
    let (mut solid, mut gone, mut waiting) = (0usize, Vec::new(), Vec::new());
    for r in &d.references {
        match r.state {
            OwnerState::Solid => solid += 1,
            OwnerState::Absent | OwnerState::Recreated => gone.push(r.uid.clone()),
            OwnerState::WaitingForDependents => waiting.push(r.uid.clone()),
            OwnerState::UnknownKind | OwnerState::Invalid => {}
        }
    }
    if solid > 0 {
        // Kept for its solid owners; the references to owners that are gone
        // or wait for their dependents are removed (else those owners
        // would wait forever).
        if gone.is_empty() && waiting.is_empty() {
            return DependentAction::Keep(Keep::SolidOwner);
        }
        gone.extend(waiting);
        return DependentAction::RemoveReferences(gone);
    }
    if !waiting.is_empty() && d.has_dependents {
        // An owner waits for its dependents and this one has dependents of
        // its own: delete it in the foreground too, so the owner goes last.
        return DependentAction::Delete(Propagation::Foreground);
    }
    // No solid owner: garbage. Its own GC finalizer, if any, sets the policy.
    let policy = if d.orphan {
        Propagation::Orphan
    } else if d.foreground {
        Propagation::Foreground
    } else {
        Propagation::Background
    };
    DependentAction::Delete(policy)
}

/// One dependent of an owner.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Link {
    pub key: String,
    /// Its reference to the owner has `blockOwnerDeletion: true`.
    pub blocks: bool,
}

/// An object seen as an owner.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Owner {
    pub deleting: bool,
    pub orphan: bool,
    pub foreground: bool,
    pub dependents: Vec<Link>,
}

/// What to do with an owner being deleted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OwnerAction {
    Nothing,
    /// `orphan`: remove the reference to it from every dependent, then the
    /// finalizer (kube's `attemptToOrphanWorker`).
    Orphan,
    /// `foregroundDeletion` with blocking dependents left: have these
    /// dependents attempted (they are deleted, their owner waiting).
    DeleteDependents(Vec<String>),
    /// `foregroundDeletion` and no blocking dependent left: remove the
    /// finalizer (the object goes with its last one).
    RemoveForegroundFinalizer,
}

/// kube's `processDeletingDependentsItem` and the orphan worker.
pub fn owner(o: &Owner) -> OwnerAction {
    if !o.deleting {
        return OwnerAction::Nothing;
    }
    if o.orphan {
        return OwnerAction::Orphan;
    }
    if !o.foreground {
        return OwnerAction::Nothing;
    }
    if o.dependents.iter().any(|d| d.blocks) {
        // Every dependent is attempted (the graph builder queues them all
        // when the owner starts waiting); only blocking ones hold it.
        return OwnerAction::DeleteDependents(o.dependents.iter().map(|d| d.key.clone()).collect());
    }
    OwnerAction::RemoveForegroundFinalizer
}
