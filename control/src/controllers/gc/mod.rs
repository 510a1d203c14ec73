//! The garbage collector: dependents go when their owners go, as
//! kube-controller-manager's garbage collector does it
//! (`pkg/controller/garbagecollector`), over every kind hami serves.
//!
//! * An object none of whose `metadata.ownerReferences` names an existing
//!   owner (same kind, name, namespace and uid) is deleted (Background; in
//!   the Foreground when an owner waits for its dependents and the object
//!   has dependents of its own; its own `orphan` / `foregroundDeletion`
//!   finalizer honoured). When some owners exist and others are gone, only
//!   the dangling references are removed (`attemptToDeleteItem`).
//! * An owner deleted with `propagationPolicy: Foreground` (deletionTimestamp
//!   and the `foregroundDeletion` finalizer, set by the API server): its
//!   dependents are deleted, and the finalizer is removed once no dependent
//!   whose reference has `blockOwnerDeletion: true` is left
//!   (`processDeletingDependentsItem`); the owner goes with it.
//! * An owner deleted with `Orphan` (the `orphan` finalizer): the reference
//!   to it is removed from every dependent, then the finalizer
//!   (`attemptToOrphanWorker`).
//!
//! Owners are looked up through the kinds served now (`Objects::registry`,
//! never cached: a CustomResourceDefinition adds kinds at run time); an
//! owner of a kind not served keeps its dependent, which is looked at again
//! after [`GcOptions::unknown_kind_retry`].
//!
//! The collector is a destructive writer and follows the partial-view rules
//! of README's "Under load": its index (one feed over `/registry/`, swapped
//! whole on a relist, see [`index`]) decides nothing before the feed listed
//! ([`Tracker`]); what it decides from the index is decided again
//! ([`decide`], the same pure functions) on what the store holds now: the
//! dependent read again, each owner read again; and the delete is pinned to
//! the dependent's uid AND resourceVersion as read, so a dependent
//! rewritten meanwhile (a detector re-pointing a binding's reference) is not
//! deleted. Removing an owner's `foregroundDeletion` (which deletes the
//! owner) or `orphan` finalizer is confirmed by a scan of the store for its
//! dependents. Refusals are counted in `hami_gc_deletes_refused_total{reason}`;
//! a failed reconcile comes back through the queue.
//!
//! One departure from kube: an owner reference whose name now holds an
//! object with another uid (deleted and recreated) does not count as gone
//! before [`GcOptions::recreate_grace`]: hami's detector gives each
//! ResourceBinding a reference to its template and re-points it to the
//! recreated template's uid; the binding must not be deleted in between.
//!
//! Not reproduced: kube's cycle breaking (a dependent deleted in the
//! foreground whose own dependent also waits has its references made
//! non-blocking first), the absent-owner cache (the store is read in
//! process), Events on invalid references, and the per-resource monitors
//! (one feed covers every kind under `/registry/`).

pub mod decide;
pub mod index;
pub mod metrics;

#[cfg(test)]
mod decide_tests;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use hami_apiserver::deletion::{FINALIZER_FOREGROUND, FINALIZER_ORPHAN};
use hami_apiserver::objects::Stored;
use hami_apiserver::{Registry, ResourceKind, keys, meta};
use parking_lot::{Mutex, RwLock};
use serde_json::Value;
use tokio::sync::watch;
use tokio::time::Instant;

use super::feed::{self, Change};
use super::objects::{ObjectError, Objects, Precondition};
use super::queue::WorkQueue;
use super::runner::{self, Reconciler};
use super::tracker::Tracker;
use decide::{DependentAction, Keep, Link, Owner, OwnerAction, OwnerState, Reference};
use index::{Index, Node, OwnerRef};
pub use metrics::GcMetrics;

/// The collector's settings.
#[derive(Clone, Copy, Debug)]
pub struct GcOptions {
    /// How long a reference whose owner's name holds an object with another
    /// uid is kept before it counts as gone (time for the detector to
    /// re-point a binding to its recreated template).
    pub recreate_grace: Duration,
    /// How often a dependent whose owner's kind is not served is looked at
    /// again (a CustomResourceDefinition may add the kind).
    pub unknown_kind_retry: Duration,
}

impl Default for GcOptions {
    fn default() -> Self {
        Self {
            recreate_grace: Duration::from_secs(30),
            unknown_kind_retry: Duration::from_secs(60),
        }
    }
}

/// Store keys listed per page when the store is scanned for an owner's
/// dependents.
const SCAN_PAGE: usize = 512;

struct Shared {
    objects: Objects,
    index: RwLock<Index>,
    queue: WorkQueue,
    metrics: GcMetrics,
    tracker: Tracker,
    options: GcOptions,
    /// Dependents waiting for a recreated owner: since when.
    waits: Mutex<HashMap<String, Instant>>,
}

/// Starts the collector; it runs until `stop` turns true.
pub fn spawn(
    objects: Objects,
    metrics: GcMetrics,
    options: GcOptions,
    tracker: Tracker,
    stop: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    let shared = Arc::new(Shared::new(objects, metrics, options, tracker));
    feed::spawn(
        shared.objects.store(),
        ["/registry/".to_string()],
        &shared,
        Shared::on_change,
        &shared.tracker,
        &stop,
    );
    runner::spawn(shared, stop)
}

impl Reconciler for Shared {
    const NAME: &'static str = "gc";

    fn queue(&self) -> &WorkQueue {
        &self.queue
    }

    fn tracker(&self) -> &Tracker {
        &self.tracker
    }

    async fn reconcile(&self, key: &str) -> Result<&'static str, ObjectError> {
        self.reconcile_key(key).await
    }

    fn count(&self, outcome: &'static str) {
        self.metrics.count(outcome);
    }
}

/// Where an object of a served kind lives.
struct Place<'k> {
    kind: Arc<ResourceKind>,
    ns: Option<&'k str>,
    name: &'k str,
}

/// The served kind, namespace and name of a store key; `None` for keys of
/// kinds not served now.
fn locate<'k>(registry: &Registry, key: &'k str) -> Option<Place<'k>> {
    let rest = key.strip_prefix("/registry/")?;
    let mut parts = rest.splitn(3, '/');
    let (group, plural) = (parts.next()?, parts.next()?);
    let kind = registry.by_store_resource(group, plural)?.clone();
    let (ns, name) = keys::parse_key(&kind, key)?;
    Some(Place { kind, ns, name })
}

/// The store key of the owner `r` names for a dependent in `ns` (kube's GC:
/// the kind through the served kinds, the dependent's namespace for a
/// namespaced kind), or why there is none.
fn owner_key(registry: &Registry, ns: Option<&str>, r: &OwnerRef) -> Result<String, OwnerState> {
    if !r.is_valid() {
        return Err(OwnerState::Invalid);
    }
    let kind = registry
        .by_gvk(&r.api_version, &r.kind)
        .ok_or(OwnerState::UnknownKind)?;
    match (kind.namespaced, ns) {
        (true, None) => Err(OwnerState::Invalid),
        (true, Some(ns)) => Ok(keys::object_key(kind, Some(ns), &r.name)),
        (false, _) => Ok(keys::object_key(kind, None, &r.name)),
    }
}

/// What the owner found at a reference's coordinates is to the reference.
fn owner_state(found: Option<&Node>, uid: &str) -> OwnerState {
    match found {
        None => OwnerState::Absent,
        Some(n) if n.uid != uid => OwnerState::Recreated,
        Some(n) if n.waiting_for_dependents() => OwnerState::WaitingForDependents,
        Some(_) => OwnerState::Solid,
    }
}

/// `node` seen as a dependent in `ns`, its owners looked up with `lookup`
/// (the index, or the store).
fn dependent_view(
    registry: &Registry,
    ns: Option<&str>,
    node: &Node,
    has_dependents: bool,
    mut lookup: impl FnMut(&str) -> Result<Option<Node>, ObjectError>,
) -> Result<decide::Dependent, ObjectError> {
    let mut references = Vec::with_capacity(node.owners.len());
    for r in &node.owners {
        let state = match owner_key(registry, ns, r) {
            Err(state) => state,
            Ok(key) => owner_state(lookup(&key)?.as_ref(), &r.uid),
        };
        references.push(Reference {
            uid: r.uid.clone(),
            state,
        });
    }
    Ok(decide::Dependent {
        deleting: node.deleting,
        orphan: node.orphan,
        foreground: node.foreground,
        references,
        has_dependents,
    })
}

/// `node` seen as an owner with `dependents` (key, node).
fn owner_view<'a>(node: &Node, dependents: impl IntoIterator<Item = (String, &'a Node)>) -> Owner {
    Owner {
        deleting: node.deleting,
        orphan: node.orphan,
        foreground: node.foreground,
        dependents: dependents
            .into_iter()
            .map(|(key, d)| Link {
                blocks: d.blocks(&node.uid),
                key,
            })
            .collect(),
    }
}

/// Which refusal a delete the index asked for and the store did not is.
fn refusal(confirmed: &DependentAction) -> &'static str {
    match confirmed {
        DependentAction::Keep(Keep::SolidOwner) | DependentAction::RemoveReferences(_) => {
            "owner_in_store"
        }
        DependentAction::WaitForRecreatedOwner => "owner_recreated",
        _ => "dependent_changed",
    }
}

impl Shared {
    fn new(objects: Objects, metrics: GcMetrics, options: GcOptions, tracker: Tracker) -> Self {
        Shared {
            objects,
            index: RwLock::new(Index::default()),
            queue: WorkQueue::new(),
            metrics,
            tracker,
            options,
            waits: Mutex::new(HashMap::new()),
        }
    }

    fn on_change(&self, change: Change) {
        match change {
            Change::Reset(items) => {
                let (fresh, bad) = Index::build(&items);
                for _ in 0..bad {
                    self.metrics.bad_object();
                }
                let keys = fresh.of_interest();
                feed::swap_in(&self.index, fresh);
                for key in keys {
                    self.queue.add(key);
                }
            }
            Change::Apply(kv) => {
                let Some(node) = Node::parse(&kv.value) else {
                    self.metrics.bad_object();
                    tracing::warn!(key = kv.key, "gc: unreadable metadata; object skipped");
                    return;
                };
                let old = self.index.write().apply(kv.key.clone(), node.clone());
                self.queue_affected(&kv.key, old.as_ref(), Some(&node));
            }
            Change::Delete(kv) => {
                let old = self.index.write().remove(&kv.key);
                self.queue_affected(&kv.key, old.as_ref(), None);
            }
        }
    }

    /// Queues what a change of `key` from `old` to `new` may concern (the
    /// graph builder's `processTransitions` and its queueing of dependents
    /// and waiting owners).
    fn queue_affected(&self, key: &str, old: Option<&Node>, new: Option<&Node>) {
        let changed = match (old, new) {
            (Some(o), Some(n)) => o != n,
            _ => true,
        };
        if !changed {
            return;
        }
        // The object itself, as a dependent or as an owner held for the GC.
        if new.is_some_and(Node::of_interest) {
            self.queue.add(key);
        }
        // Its dependents, when it went, came back, or started or stopped
        // waiting for them.
        let same_status = match (old, new) {
            (Some(o), Some(n)) => {
                o.uid == n.uid && o.waiting_for_dependents() == n.waiting_for_dependents()
            }
            _ => false,
        };
        let mut keys = Vec::new();
        if !same_status {
            let index = self.index.read();
            for n in old.into_iter().chain(new) {
                keys.extend(index.dependents(&n.uid));
            }
        }
        // Its owners that wait for their dependents (it may have blocked one).
        let has_owners = old.into_iter().chain(new).any(|n| !n.owners.is_empty());
        if has_owners {
            let registry = self.objects.registry();
            let ns = locate(&registry, key).and_then(|p| p.ns);
            let index = self.index.read();
            for r in old.into_iter().chain(new).flat_map(|n| &n.owners) {
                if let Ok(owner) = owner_key(&registry, ns, r)
                    && index
                        .get(&owner)
                        .is_some_and(|o| o.uid == r.uid && o.waiting_for_dependents())
                {
                    keys.push(owner);
                }
            }
        }
        for k in keys {
            self.queue.add(k);
        }
    }

    /// The node of `key` as stored now (raw read, metadata only).
    fn stored_node(&self, key: &str) -> Result<Option<Node>, ObjectError> {
        let kv = self
            .objects
            .store()
            .get(key)
            .map_err(|e| ObjectError::Incomplete(format!("reading {key}: {e}")))?;
        match kv {
            None => Ok(None),
            // An owner whose metadata does not read is never taken for gone.
            Some(kv) => Node::parse(&kv.value).map(Some).ok_or_else(|| {
                ObjectError::Incomplete(format!("the metadata of {key} does not read"))
            }),
        }
    }

    async fn reconcile_key(&self, key: &str) -> Result<&'static str, ObjectError> {
        let registry = self.objects.registry();
        let Some(place) = locate(&registry, key) else {
            self.forget_wait(key);
            return Ok("unchanged");
        };
        let Some(node) = self.index.read().get(key).cloned() else {
            self.forget_wait(key);
            return Ok("unchanged");
        };
        if node.deleting {
            self.forget_wait(key);
            return self.reconcile_owner(&registry, &place, &node).await;
        }
        self.reconcile_dependent(&registry, key, &place, &node)
            .await
    }

    /// A dependent: decided on the index, decided again on the store, one
    /// write pinned to the dependent as read.
    async fn reconcile_dependent(
        &self,
        registry: &Registry,
        key: &str,
        place: &Place<'_>,
        node: &Node,
    ) -> Result<&'static str, ObjectError> {
        let grace_over = self.grace_over(key);
        let wanted = {
            let index = self.index.read();
            let view = dependent_view(
                registry,
                place.ns,
                node,
                index.has_dependents(&node.uid),
                |k| Ok(index.get(k).cloned()),
            )?;
            decide::dependent(&view, grace_over)
        };
        if let DependentAction::Keep(_) = wanted {
            self.forget_wait(key);
            return Ok("unchanged");
        }
        // Confirm against the store: the dependent and each owner read again.
        let Some(stored) = self.objects.get(&place.kind, place.ns, place.name)? else {
            self.forget_wait(key);
            return Ok("unchanged");
        };
        let current = Node::of(&stored.object).ok_or_else(|| {
            ObjectError::Incomplete(format!("the metadata of {key} does not read"))
        })?;
        let has_dependents = self.index.read().has_dependents(&current.uid);
        let view = dependent_view(registry, place.ns, &current, has_dependents, |k| {
            self.stored_node(k)
        })?;
        let confirmed = decide::dependent(&view, grace_over);
        if matches!(wanted, DependentAction::Delete(_))
            && !matches!(confirmed, DependentAction::Delete(_))
        {
            let reason = refusal(&confirmed);
            if reason != "owner_recreated" {
                self.metrics.refused(reason);
                tracing::info!(
                    key,
                    reason,
                    "gc: the store refutes a delete the index asked for; kept"
                );
            }
        }
        match confirmed {
            DependentAction::Keep(_) => {
                self.forget_wait(key);
                Ok("unchanged")
            }
            DependentAction::RetryUnknownKind => {
                self.forget_wait(key);
                tracing::info!(
                    key,
                    retry_in = ?self.options.unknown_kind_retry,
                    "gc: an owner's kind is not served; dependent kept"
                );
                self.queue.add_after(key, self.options.unknown_kind_retry);
                Ok("unknown_owner")
            }
            DependentAction::WaitForRecreatedOwner => {
                let left = self.start_wait(key);
                self.queue.add_after(key, left);
                Ok("waiting")
            }
            DependentAction::RemoveReferences(uids) => {
                self.forget_wait(key);
                let n = self.remove_references(place, &stored, &uids).await?;
                self.metrics.reference_removed(n);
                Ok("references_removed")
            }
            DependentAction::Delete(policy) => {
                let pin = Precondition::of(&stored);
                match self
                    .objects
                    .delete_pinned_with(&place.kind, place.ns, place.name, &pin, Some(policy))
                    .await
                {
                    Ok(()) => {
                        self.forget_wait(key);
                        self.metrics.deleted(policy);
                        tracing::info!(
                            key,
                            propagation = policy.as_str(),
                            "gc: deleted a dependent whose owners are gone"
                        );
                        Ok("deleted")
                    }
                    Err(ObjectError::Conflict) => {
                        // Rewritten since it was read: decided again.
                        self.metrics.refused("precondition");
                        Err(ObjectError::Conflict)
                    }
                    Err(e) => Err(e),
                }
            }
        }
    }

    /// An owner being deleted with a GC finalizer: decided on the index,
    /// confirmed on the store (the owner read again, its dependents found
    /// by a scan of the store), one write per dependent and one on the
    /// owner, each pinned.
    async fn reconcile_owner(
        &self,
        registry: &Registry,
        place: &Place<'_>,
        node: &Node,
    ) -> Result<&'static str, ObjectError> {
        let wanted = {
            let index = self.index.read();
            let deps = index.dependents(&node.uid);
            let nodes: Vec<(String, Node)> = deps
                .into_iter()
                .filter_map(|k| index.get(&k).cloned().map(|n| (k, n)))
                .collect();
            decide::owner(&owner_view(node, nodes.iter().map(|(k, n)| (k.clone(), n))))
        };
        match wanted {
            OwnerAction::Nothing => return Ok("unchanged"),
            OwnerAction::DeleteDependents(keys) => {
                for k in keys {
                    self.queue.add(k);
                }
                return Ok("waiting_for_dependents");
            }
            OwnerAction::Orphan | OwnerAction::RemoveForegroundFinalizer => {}
        }
        let Some(stored) = self.objects.get(&place.kind, place.ns, place.name)? else {
            return Ok("unchanged");
        };
        let current = Node::of(&stored.object).ok_or_else(|| {
            ObjectError::Incomplete(format!("the metadata of {} does not read", place.name))
        })?;
        let found = self.dependents_in_store(&current.uid)?;
        let confirmed = decide::owner(&owner_view(
            &current,
            found.iter().map(|(k, n)| (k.clone(), n)),
        ));
        match confirmed {
            OwnerAction::Nothing => Ok("unchanged"),
            OwnerAction::DeleteDependents(keys) => {
                let refused = wanted == OwnerAction::RemoveForegroundFinalizer;
                if refused {
                    self.metrics.refused("blocking_dependent_in_store");
                    tracing::info!(
                        owner = place.name,
                        dependents = keys.len(),
                        "gc: the store holds dependents that block a foreground deletion the index does not know; finalizer kept"
                    );
                }
                for k in keys {
                    self.queue.add(k);
                }
                if refused {
                    // Come back: the index may not know these dependents yet.
                    return Err(ObjectError::Incomplete(
                        "dependents in the store block the foreground deletion".into(),
                    ));
                }
                Ok("waiting_for_dependents")
            }
            OwnerAction::RemoveForegroundFinalizer => {
                self.remove_finalizer(place, &stored, FINALIZER_FOREGROUND)
                    .await?;
                Ok("finalizer_removed")
            }
            OwnerAction::Orphan => {
                for (key, _) in &found {
                    let Some(dep) = locate(registry, key) else {
                        continue;
                    };
                    let Some(d) = self.objects.get(&dep.kind, dep.ns, dep.name)? else {
                        continue;
                    };
                    let n = self
                        .remove_references(&dep, &d, std::slice::from_ref(&current.uid))
                        .await?;
                    self.metrics.reference_removed(n);
                }
                self.remove_finalizer(place, &stored, FINALIZER_ORPHAN)
                    .await?;
                Ok("orphaned")
            }
        }
    }

    /// Every stored object that names `uid` as an owner (a paged scan of the
    /// store: the confirmation of an owner's last step).
    fn dependents_in_store(&self, uid: &str) -> Result<Vec<(String, Node)>, ObjectError> {
        let store = self.objects.store();
        let needle = uid.as_bytes();
        let mut found = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let page = store
                .list("/registry/", after.as_deref(), SCAN_PAGE)
                .map_err(|e| ObjectError::Incomplete(format!("listing dependents: {e}")))?;
            for kv in &page.items {
                if needle.is_empty() || !kv.value.windows(needle.len()).any(|w| w == needle) {
                    continue;
                }
                if let Some(n) = Node::parse(&kv.value)
                    && n.owners.iter().any(|r| r.uid == uid)
                {
                    found.push((kv.key.clone(), n));
                }
            }
            match page.items.last() {
                Some(last) if page.more => after = Some(last.key.clone()),
                _ => return Ok(found),
            }
        }
    }

    /// Removes the references to `uids` from the object as read, in one
    /// write at its resourceVersion; answers how many went.
    async fn remove_references(
        &self,
        place: &Place<'_>,
        stored: &Stored,
        uids: &[String],
    ) -> Result<usize, ObjectError> {
        let mut new = stored.object.clone();
        let m = meta::metadata_mut(&mut new);
        let refs: Vec<Value> = m
            .get("ownerReferences")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let kept: Vec<Value> = refs
            .iter()
            .filter(|r| {
                !r.get("uid")
                    .and_then(Value::as_str)
                    .is_some_and(|u| uids.iter().any(|x| x == u))
            })
            .cloned()
            .collect();
        let removed = refs.len() - kept.len();
        if removed == 0 {
            return Ok(0);
        }
        if kept.is_empty() {
            m.remove("ownerReferences");
        } else {
            m.insert("ownerReferences".into(), Value::Array(kept));
        }
        self.objects
            .write(&place.kind, place.ns, place.name, stored, new, |_| {})
            .await?;
        Ok(removed)
    }

    /// Removes `finalizer` from the owner as read, at its resourceVersion
    /// (the object goes with its last finalizer).
    async fn remove_finalizer(
        &self,
        place: &Place<'_>,
        stored: &Stored,
        finalizer: &str,
    ) -> Result<(), ObjectError> {
        let kept: Vec<String> = meta::finalizers(&stored.object)
            .into_iter()
            .filter(|f| f != finalizer)
            .collect();
        let mut new = stored.object.clone();
        let m = meta::metadata_mut(&mut new);
        if kept.is_empty() {
            m.remove("finalizers");
        } else {
            m.insert("finalizers".into(), serde_json::json!(kept));
        }
        self.objects
            .write(&place.kind, place.ns, place.name, stored, new, |_| {})
            .await?;
        self.metrics.finalizer_removed();
        tracing::info!(
            name = place.name,
            finalizer,
            "gc: finalizer removed from an owner"
        );
        Ok(())
    }

    /// Whether `key` has waited [`GcOptions::recreate_grace`] for a
    /// recreated owner.
    fn grace_over(&self, key: &str) -> bool {
        self.waits
            .lock()
            .get(key)
            .is_some_and(|since| since.elapsed() >= self.options.recreate_grace)
    }

    /// `key` waits for a recreated owner (from now, if it did not already);
    /// answers how long is left. The first wait counts as a refused delete.
    fn start_wait(&self, key: &str) -> Duration {
        let mut waits = self.waits.lock();
        let since = *waits.entry(key.to_string()).or_insert_with(|| {
            self.metrics.refused("owner_recreated");
            tracing::info!(
                key,
                "gc: an owner's name holds an object with another uid; dependent kept for the grace"
            );
            Instant::now()
        });
        self.options
            .recreate_grace
            .saturating_sub(since.elapsed())
            .max(Duration::from_millis(10))
    }

    fn forget_wait(&self, key: &str) {
        self.waits.lock().remove(key);
    }
}
