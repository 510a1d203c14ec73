//! Table tests of the collector's pure decisions, one row per behaviour of
//! kube's `attemptToDeleteItem` / `processDeletingDependentsItem` /
//! `attemptToOrphanWorker` it reproduces, plus hami's recreated-owner wait.

use hami_apiserver::deletion::Propagation;

use super::decide::{
    Dependent, DependentAction as A, Keep, Link, Owner, OwnerAction as O, OwnerState as S,
    Reference, dependent, owner,
};

fn refs(states: &[S]) -> Vec<Reference> {
    states
        .iter()
        .enumerate()
        .map(|(i, s)| Reference {
            uid: format!("o{i}"),
            state: *s,
        })
        .collect()
}

fn dep(states: &[S]) -> Dependent {
    Dependent {
        references: refs(states),
        ..Dependent::default()
    }
}

fn uids(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| (*s).to_string()).collect()
}

#[test]
fn dependents() {
    let with = |f: fn(&mut Dependent), states: &[S]| {
        let mut d = dep(states);
        f(&mut d);
        d
    };
    // (what, dependent, grace over, action)
    let cases: Vec<(&str, Dependent, bool, A)> = vec![
        ("no owners", dep(&[]), false, A::Keep(Keep::NoOwners)),
        (
            "its owner exists",
            dep(&[S::Solid]),
            false,
            A::Keep(Keep::SolidOwner),
        ),
        (
            "its only owner is gone: background",
            dep(&[S::Absent]),
            false,
            A::Delete(Propagation::Background),
        ),
        (
            "every owner is gone",
            dep(&[S::Absent, S::Absent]),
            false,
            A::Delete(Propagation::Background),
        ),
        (
            "one owner solid, one gone: only the dangling reference goes",
            dep(&[S::Solid, S::Absent]),
            false,
            A::RemoveReferences(uids(&["o1"])),
        ),
        (
            "one owner solid, one waiting for its dependents: that reference goes",
            dep(&[S::WaitingForDependents, S::Solid]),
            false,
            A::RemoveReferences(uids(&["o0"])),
        ),
        (
            "owner waiting for its dependents: deleted in the background",
            dep(&[S::WaitingForDependents]),
            false,
            A::Delete(Propagation::Background),
        ),
        (
            "owner waiting, and the dependent has dependents: foreground",
            with(|d| d.has_dependents = true, &[S::WaitingForDependents]),
            false,
            A::Delete(Propagation::Foreground),
        ),
        (
            "owner gone, the dependent has dependents: background (no owner waits)",
            with(|d| d.has_dependents = true, &[S::Absent]),
            false,
            A::Delete(Propagation::Background),
        ),
        (
            "its own orphan finalizer is honoured",
            with(|d| d.orphan = true, &[S::Absent]),
            false,
            A::Delete(Propagation::Orphan),
        ),
        (
            "its own foregroundDeletion finalizer is honoured",
            with(|d| d.foreground = true, &[S::Absent]),
            false,
            A::Delete(Propagation::Foreground),
        ),
        (
            "being deleted: nothing to add",
            with(|d| d.deleting = true, &[S::Absent]),
            false,
            A::Keep(Keep::BeingDeleted),
        ),
        (
            "an owner of a kind not served: kept, looked at again",
            dep(&[S::UnknownKind, S::Absent]),
            true,
            A::RetryUnknownKind,
        ),
        (
            "an invalid reference: kept",
            dep(&[S::Invalid, S::Absent]),
            true,
            A::Keep(Keep::InvalidReference),
        ),
        (
            "the owner's name holds another uid: wait",
            dep(&[S::Recreated]),
            false,
            A::WaitForRecreatedOwner,
        ),
        (
            "waiting wins over a solid owner too (the reference may be re-pointed)",
            dep(&[S::Solid, S::Recreated]),
            false,
            A::WaitForRecreatedOwner,
        ),
        (
            "the grace is over and the name still holds another uid: gone",
            dep(&[S::Recreated]),
            true,
            A::Delete(Propagation::Background),
        ),
        (
            "the grace is over, another owner solid: the reference goes",
            dep(&[S::Recreated, S::Solid]),
            true,
            A::RemoveReferences(uids(&["o0"])),
        ),
    ];
    for (what, d, grace_over, want) in cases {
        assert_eq!(dependent(&d, grace_over), want, "{what}");
    }
}

fn link(key: &str, blocks: bool) -> Link {
    Link {
        key: key.into(),
        blocks,
    }
}

#[test]
fn owners() {
    let deleting = |orphan, foreground, dependents: Vec<Link>| Owner {
        deleting: true,
        orphan,
        foreground,
        dependents,
    };
    let cases: Vec<(&str, Owner, O)> = vec![
        (
            "not being deleted",
            Owner {
                foreground: true,
                dependents: vec![link("a", true)],
                ..Owner::default()
            },
            O::Nothing,
        ),
        (
            "deleted without a GC finalizer",
            deleting(false, false, vec![link("a", true)]),
            O::Nothing,
        ),
        (
            "orphan: references removed, then the finalizer",
            deleting(true, false, vec![link("a", true)]),
            O::Orphan,
        ),
        (
            "orphan with no dependents still drops its finalizer",
            deleting(true, false, vec![]),
            O::Orphan,
        ),
        (
            "foreground with a blocking dependent: every dependent is attempted",
            deleting(false, true, vec![link("a", false), link("b", true)]),
            O::DeleteDependents(uids(&["a", "b"])),
        ),
        (
            "foreground, only non-blocking dependents: the finalizer goes",
            deleting(false, true, vec![link("a", false)]),
            O::RemoveForegroundFinalizer,
        ),
        (
            "foreground, no dependents left: the finalizer goes",
            deleting(false, true, vec![]),
            O::RemoveForegroundFinalizer,
        ),
    ];
    for (what, o, want) in cases {
        assert_eq!(owner(&o), want, "{what}");
    }
}
