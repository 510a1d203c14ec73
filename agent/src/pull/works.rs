//! Works of `hami-es-<cluster>` applied to the member cluster, and their
//! status reported back. One task owns all state and is the single writer:
//!
//! - a watch on Works (only in the agent's own namespace);
//! - watches on the member's workloads (Deployments, ReplicaSets, StatefulSets,
//!   DaemonSets, Jobs) that the agent applied (label selector), whose status
//!   changes update the owning Work's status;
//! - a queue of Works to reconcile, each with its own retry backoff.
//!
//! A reconcile adds the finalizer, server-side applies every manifest
//! (field manager `hami-agent`, forced), deletes the manifests the Work
//! dropped (those its status listed, still marked as this Work's in the
//! member), and writes status once if it changed. A Work being deleted has
//! what it applied deleted from the member, then its finalizer removed.
//! Manifests already applied are re-applied only when the Work's spec
//! changes, when the member lost them, or after a restart (server-side
//! apply is idempotent: a restart neither duplicates nor drops them).
//!
//! Deleting from the member is never decided on the cache alone: a Work
//! missing from a relisted cache deletes nothing (only its deletion, a
//! deletionTimestamp while the finalizer holds it, does), and before any
//! member delete the Work is read again from the control plane (same uid,
//! still being deleted, or still without that manifest). Each member delete
//! is pinned to the object as just read (uid and resourceVersion
//! preconditions) and to this Work's annotation.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use futures::StreamExt;
use futures::stream::{BoxStream, SelectAll};
use hami_api::work::{ManifestStatus, ResourceIdentifier, Work, WorkSpec, WorkStatus};
use hami_api::{CONDITION_APPLIED, ResourceHealth};
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::ResourceExt;
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, Patch, PatchParams,
    PostParams, Preconditions,
};
use kube::discovery::Scope;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use serde_json::{Value, json};
use tokio::sync::watch;

use super::backoff::{Backoff, Class};
use super::metrics::ApplyResult;
use super::status::{
    WATCHED_KINDS, condition, manifest_id, reflect, same_conditions, same_object, set_condition,
};
use super::{CallError, MANAGER, Shared, timed};

/// Finalizer the agent puts on every Work it applies.
pub const FINALIZER: &str = "work.hami.io/agent";
/// Label on every object the agent applies to the member.
pub const MANAGED_LABEL: &str = "work.hami.io/managed-by";
/// Annotation naming the Work an applied object belongs to.
pub const WORK_ANNOTATION: &str = "work.hami.io/name";

/// A member object: group, kind, namespace, name.
type ObjKey = (String, String, String, String);

enum MemberEvent {
    Apply(ObjKey, String, Value),
    Delete(ObjKey, String),
    Failed(&'static str, String),
}

struct Due {
    at: Instant,
    apply: bool,
}

/// The task's state.
struct Works {
    s: Arc<Shared>,
    control: Api<Work>,
    member: kube::Client,
    works: BTreeMap<String, Work>,
    /// The spec last applied in full, per Work.
    applied: HashMap<String, WorkSpec>,
    /// Reflected status and health of watched member objects, with their Work.
    observed: BTreeMap<ObjKey, (String, Option<Value>, ResourceHealth)>,
    queue: BTreeMap<String, Due>,
    retries: HashMap<String, Backoff>,
    kinds: HashMap<(String, String, String), (ApiResource, Scope)>,
    namespaces: BTreeSet<String>,
}

/// Runs until `stop`.
pub(crate) async fn run(
    s: Arc<Shared>,
    control: kube::Client,
    member: kube::Client,
    mut stop: watch::Receiver<bool>,
) {
    let api: Api<Work> = Api::namespaced(control, &s.namespace);
    let mut work_events = watcher::watcher(api.clone(), watcher::Config::default())
        .backoff(s.config.backoff())
        .boxed();
    let mut member_events = member_watches(&s, &member);
    let mut w = Works {
        s: s.clone(),
        control: api,
        member,
        works: BTreeMap::new(),
        applied: HashMap::new(),
        observed: BTreeMap::new(),
        queue: BTreeMap::new(),
        retries: HashMap::new(),
        kinds: HashMap::new(),
        namespaces: BTreeSet::new(),
    };
    let mut listed: Option<BTreeSet<String>> = None;
    loop {
        let next = w.queue.values().map(|d| d.at).min();
        let sleep = async {
            match next {
                Some(at) => tokio::time::sleep_until(at.into()).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            biased;
            _ = stop.wait_for(|v| *v) => return,
            e = work_events.next() => match e {
                None => return,
                Some(Ok(Event::Init)) => listed = Some(BTreeSet::new()),
                Some(Ok(Event::InitApply(work))) => {
                    if let Some(l) = listed.as_mut() {
                        l.insert(work.name_any());
                    }
                    w.on_work(work);
                }
                Some(Ok(Event::InitDone)) => {
                    let seen = listed.take().unwrap_or_default();
                    w.works.retain(|k, _| seen.contains(k));
                    w.applied.retain(|k, _| seen.contains(k));
                    s.health.inner.works_synced.store(true, Ordering::Relaxed);
                    s.failures.ok(Class::WorkWatch);
                }
                Some(Ok(Event::Apply(work))) => {
                    s.failures.ok(Class::WorkWatch);
                    w.on_work(work);
                }
                Some(Ok(Event::Delete(work))) => {
                    let name = work.name_any();
                    w.works.remove(&name);
                    w.applied.remove(&name);
                    w.queue.remove(&name);
                    w.retries.remove(&name);
                }
                Some(Err(e)) => {
                    s.metrics.watch_restart("works");
                    s.failures.failed(Class::WorkWatch, &e);
                }
            },
            Some(e) = member_events.next() => w.on_member(e),
            _ = sleep => {}
        }
        let now = Instant::now();
        let due: Vec<(String, bool)> = w
            .queue
            .iter()
            .filter(|(_, d)| d.at <= now)
            .map(|(k, d)| (k.clone(), d.apply))
            .collect();
        for (name, apply) in due {
            if *stop.borrow() {
                return;
            }
            w.queue.remove(&name);
            w.reconcile(&name, apply).await;
        }
    }
}

/// The member watches on applied workloads, merged into one stream.
fn member_watches(s: &Shared, member: &kube::Client) -> SelectAll<BoxStream<'static, MemberEvent>> {
    let mut all = SelectAll::new();
    for (group, kind, plural) in WATCHED_KINDS {
        let gvk = GroupVersionKind::gvk(group, "v1", kind);
        let ar = ApiResource::from_gvk_with_plural(&gvk, plural);
        let api: Api<DynamicObject> = Api::all_with(member.clone(), &ar);
        let config = watcher::Config::default().labels(&format!("{MANAGED_LABEL}={MANAGER}"));
        let stream = watcher::watcher(api, config)
            .backoff(s.config.backoff())
            .filter_map(move |e| async move {
                let key_of = |o: &DynamicObject| -> (ObjKey, String) {
                    let work = o
                        .annotations()
                        .get(WORK_ANNOTATION)
                        .cloned()
                        .unwrap_or_default();
                    (
                        (
                            group.to_string(),
                            kind.to_string(),
                            o.namespace().unwrap_or_default(),
                            o.name_any(),
                        ),
                        work,
                    )
                };
                match e {
                    Ok(Event::Apply(o) | Event::InitApply(o)) => {
                        let (key, work) = key_of(&o);
                        let value = serde_json::to_value(&o).unwrap_or(Value::Null);
                        Some(MemberEvent::Apply(key, work, value))
                    }
                    Ok(Event::Delete(o)) => {
                        let (key, work) = key_of(&o);
                        Some(MemberEvent::Delete(key, work))
                    }
                    Ok(Event::Init | Event::InitDone) => None,
                    Err(e) => Some(MemberEvent::Failed(plural, e.to_string())),
                }
            })
            .boxed();
        all.push(stream);
    }
    all
}

fn ident_key(id: &ResourceIdentifier) -> ObjKey {
    (
        id.group.clone(),
        id.kind.clone(),
        id.namespace.clone(),
        id.name.clone(),
    )
}

impl Works {
    fn schedule(&mut self, name: &str, after: Duration, apply: bool) {
        let at = Instant::now() + after;
        let d = self
            .queue
            .entry(name.to_string())
            .or_insert(Due { at, apply });
        d.at = d.at.min(at);
        d.apply |= apply;
    }

    fn on_work(&mut self, work: Work) {
        let name = work.name_any();
        let deleting = work.metadata.deletion_timestamp.is_some();
        let has_finalizer = work.finalizers().iter().any(|f| f == FINALIZER);
        let changed = self.applied.get(&name) != Some(&work.spec);
        self.works.insert(name.clone(), work);
        if deleting || changed || !has_finalizer {
            self.schedule(&name, Duration::ZERO, changed && !deleting);
        }
    }

    fn on_member(&mut self, e: MemberEvent) {
        let debounce = self.s.config.status_debounce;
        match e {
            MemberEvent::Apply(key, work, obj) => {
                let (status, health) = reflect(&key.0, &key.1, &obj);
                let same = self
                    .observed
                    .get(&key)
                    .is_some_and(|(_, st, h)| *st == status && *h == health);
                self.observed.insert(key, (work.clone(), status, health));
                if !same && self.works.contains_key(&work) {
                    self.schedule(&work, debounce, false);
                }
                self.s.failures.ok(Class::MemberWatch);
            }
            MemberEvent::Delete(key, work) => {
                self.observed.remove(&key);
                // Lost from the member while the Work still wants it: re-apply.
                let wanted = self.works.get(&work).is_some_and(|w| {
                    w.metadata.deletion_timestamp.is_none()
                        && listed(w).iter().any(|id| ident_key(id) == key)
                });
                if wanted {
                    self.applied.remove(&work);
                    self.schedule(&work, debounce, true);
                } else if self.works.contains_key(&work) {
                    self.schedule(&work, debounce, false);
                }
            }
            MemberEvent::Failed(watch, e) => {
                self.s.metrics.watch_restart(watch);
                self.s
                    .failures
                    .failed(Class::MemberWatch, &format_args!("{watch}: {e}"));
            }
        }
    }

    fn retry(&mut self, name: &str, apply: bool) {
        let (initial, max) = (self.s.config.backoff_initial, self.s.config.backoff_max);
        let delay = self
            .retries
            .entry(name.to_string())
            .or_insert_with(|| Backoff::new(initial, max))
            .next_delay();
        self.schedule(name, delay, apply);
    }

    async fn reconcile(&mut self, name: &str, apply: bool) {
        let Some(work) = self.works.get(name).cloned() else {
            return;
        };
        let outcome = if work.metadata.deletion_timestamp.is_some() {
            self.finalize(&work).await
        } else {
            self.sync(work, apply).await
        };
        match outcome {
            Ok(()) => {
                self.retries.remove(name);
            }
            Err(again_apply) => self.retry(name, again_apply),
        }
    }

    /// A live Work: finalizer, apply (when asked), dropped manifests, status.
    /// Err(apply) asks for a retry.
    async fn sync(&mut self, mut work: Work, apply: bool) -> Result<(), bool> {
        let name = work.name_any();
        let t = self.s.config.request_timeout;
        if !work.finalizers().iter().any(|f| f == FINALIZER) {
            let mut finalizers = work.finalizers().to_vec();
            finalizers.push(FINALIZER.to_string());
            match self.patch_finalizers(&work, finalizers).await {
                Ok(w) => {
                    work = w;
                    self.works.insert(name.clone(), work.clone());
                }
                Err(e) => {
                    self.s.failures.failed(Class::WorkWrite, &e);
                    return Err(apply);
                }
            }
        }
        let prev_status = work.status.clone().unwrap_or_default();
        let mut next = prev_status.clone();
        let mut failed = false;
        let suspended = work.spec.suspend_dispatching == Some(true);
        if apply && !suspended {
            let mut ok_ids = Vec::new();
            let mut errors = Vec::new();
            for (i, m) in work.spec.workload.manifests.iter().enumerate() {
                match self.apply_manifest(&name, i, m).await {
                    Ok(id) => ok_ids.push(id),
                    Err(e) => errors.push(format!("manifest {i}: {e}")),
                }
            }
            // Still listed: applied now, or applied before and still wanted.
            let mut wanted: Vec<ResourceIdentifier> = self.wanted_ids(&work);
            let mut keep: Vec<ResourceIdentifier> = ok_ids.clone();
            let dropped = prev_status.manifest_statuses.iter().any(|old| {
                let id = &old.identifier;
                !keep.iter().any(|k| same_object(k, id))
                    && !wanted.iter().any(|k| same_object(k, id))
            });
            // A manifest looks dropped: the Work as the control plane holds
            // it now must agree before anything is deleted.
            let mut confirmed = !dropped;
            if dropped {
                match self.fresh_work(&work).await {
                    Ok(Some(fresh)) if fresh.metadata.deletion_timestamp.is_none() => {
                        wanted.extend(self.wanted_ids(&fresh));
                        confirmed = true;
                    }
                    Ok(_) => {}
                    Err(e) => errors.push(format!("reading the Work again: {e}")),
                }
            }
            for old in &prev_status.manifest_statuses {
                let id = &old.identifier;
                if keep.iter().any(|k| same_object(k, id)) {
                    continue;
                }
                if !confirmed || wanted.iter().any(|k| same_object(k, id)) {
                    keep.push(id.clone());
                    continue;
                }
                // Dropped from the Work: delete it from the member.
                match self.delete_owned(&name, id).await {
                    Ok(()) => {}
                    Err(e) => {
                        errors.push(format!("deleting dropped {}/{}: {e}", id.kind, id.name));
                        let mut id = id.clone();
                        id.ordinal = -1;
                        keep.push(id);
                    }
                }
            }
            failed = !errors.is_empty();
            let applied = condition(
                prev_status
                    .conditions
                    .iter()
                    .find(|c| c.type_ == CONDITION_APPLIED),
                CONDITION_APPLIED,
                !failed,
                if failed {
                    "AppliedFailed"
                } else {
                    "AppliedSuccessful"
                },
                if failed {
                    errors.join("; ")
                } else {
                    format!(
                        "{} manifests applied to the member cluster",
                        work.spec.workload.manifests.len()
                    )
                },
                work.metadata.generation,
            );
            set_condition(&mut next.conditions, applied);
            next.manifest_statuses = keep
                .into_iter()
                .map(|identifier| ManifestStatus {
                    identifier,
                    status: None,
                    health: None,
                })
                .collect();
            if failed {
                self.s.failures.failed(Class::Apply, &errors.join("; "));
            } else {
                self.s.failures.ok(Class::Apply);
                self.applied.insert(name.clone(), work.spec.clone());
            }
        }
        for ms in &mut next.manifest_statuses {
            if let Some((_, status, health)) = self.observed.get(&ident_key(&ms.identifier)) {
                ms.status = status.clone();
                ms.health = Some(*health);
            }
        }
        if !same_work_status(&prev_status, &next) {
            let body = json!({ "status": work_status_patch(&next) });
            match timed(
                t,
                self.control
                    .patch_status(&name, &PatchParams::default(), &Patch::Merge(&body)),
            )
            .await
            {
                Ok(w) => {
                    self.s.metrics.status_written("work");
                    self.s.failures.ok(Class::WorkWrite);
                    self.works.insert(name.clone(), w);
                }
                Err(e) => {
                    self.s.failures.failed(Class::WorkWrite, &e);
                    return Err(failed || apply);
                }
            }
        }
        if failed { Err(true) } else { Ok(()) }
    }

    /// Identifiers the Work's current manifests resolve to (without asking
    /// the member: kinds not yet resolved keep the manifest's namespace).
    fn wanted_ids(&self, work: &Work) -> Vec<ResourceIdentifier> {
        work.spec
            .workload
            .manifests
            .iter()
            .enumerate()
            .filter_map(|(i, m)| {
                let (group, version, kind, ns, name) = manifest_id(i, m).ok()?;
                let scope = self
                    .kinds
                    .get(&(group.clone(), version.clone(), kind.clone()))
                    .map(|(_, s)| s.clone());
                let namespace = match scope {
                    Some(Scope::Cluster) => String::new(),
                    _ => ns.unwrap_or_else(|| "default".into()),
                };
                Some(ResourceIdentifier {
                    ordinal: i32::try_from(i).unwrap_or(i32::MAX),
                    group,
                    version,
                    kind,
                    namespace,
                    name,
                })
            })
            .collect()
    }

    async fn resolve(
        &mut self,
        group: &str,
        version: &str,
        kind: &str,
    ) -> Result<(ApiResource, Scope), String> {
        let key = (group.to_string(), version.to_string(), kind.to_string());
        if let Some(found) = self.kinds.get(&key) {
            return Ok(found.clone());
        }
        let gvk = GroupVersionKind::gvk(group, version, kind);
        let found = tokio::time::timeout(
            self.s.config.request_timeout,
            kube::discovery::pinned_kind(&self.member, &gvk),
        )
        .await
        .map_err(|_| "member discovery timed out".to_string())?
        .map_err(|e| format!("kind {kind} of {group}/{version} unknown to the member: {e}"))?;
        let found = (found.0, found.1.scope);
        self.kinds.insert(key, found.clone());
        Ok(found)
    }

    async fn ensure_namespace(&mut self, ns: &str) -> Result<(), CallError> {
        if self.namespaces.contains(ns) {
            return Ok(());
        }
        let api: Api<Namespace> = Api::all(self.member.clone());
        let object = Namespace {
            metadata: ObjectMeta {
                name: Some(ns.to_string()),
                ..ObjectMeta::default()
            },
            ..Namespace::default()
        };
        match timed(
            self.s.config.request_timeout,
            api.create(&PostParams::default(), &object),
        )
        .await
        {
            Ok(_) => {}
            Err(e) if e.code() == Some(409) => {}
            Err(e) => return Err(e),
        }
        self.namespaces.insert(ns.to_string());
        Ok(())
    }

    /// Server-side applies manifest `i` of Work `work`.
    async fn apply_manifest(
        &mut self,
        work: &str,
        i: usize,
        m: &Value,
    ) -> Result<ResourceIdentifier, String> {
        let (group, version, kind, ns, name) = manifest_id(i, m).map_err(|e| e.to_string())?;
        let (ar, scope) = self.resolve(&group, &version, &kind).await?;
        let namespace = match scope {
            Scope::Cluster => String::new(),
            Scope::Namespaced => ns.unwrap_or_else(|| "default".into()),
        };
        let mut body = m.clone();
        if let Some(obj) = body.as_object_mut() {
            obj.remove("status");
        }
        let meta = body
            .get_mut("metadata")
            .and_then(Value::as_object_mut)
            .ok_or("metadata must be an object")?;
        for k in [
            "resourceVersion",
            "uid",
            "creationTimestamp",
            "managedFields",
            "generation",
        ] {
            meta.remove(k);
        }
        if !namespace.is_empty() {
            meta.insert("namespace".into(), json!(namespace));
        }
        let labels = meta.entry("labels").or_insert_with(|| json!({}));
        if let Some(l) = labels.as_object_mut() {
            l.insert(MANAGED_LABEL.into(), json!(MANAGER));
        }
        let annotations = meta.entry("annotations").or_insert_with(|| json!({}));
        if let Some(a) = annotations.as_object_mut() {
            a.insert(WORK_ANNOTATION.into(), json!(work));
        }
        let api: Api<DynamicObject> = if namespace.is_empty() {
            Api::all_with(self.member.clone(), &ar)
        } else {
            self.ensure_namespace(&namespace)
                .await
                .map_err(|e| format!("namespace {namespace}: {e}"))?;
            Api::namespaced_with(self.member.clone(), &namespace, &ar)
        };
        let start = Instant::now();
        let pp = PatchParams::apply(MANAGER).force();
        let result = timed(
            self.s.config.request_timeout,
            api.patch(&name, &pp, &Patch::Apply(&body)),
        )
        .await;
        self.s.metrics.observe_apply(start.elapsed().as_secs_f64());
        let obj = match result {
            Ok(o) => {
                self.s.metrics.applied(ApplyResult::Applied);
                o
            }
            Err(e) => {
                self.s.metrics.applied(ApplyResult::Failed);
                return Err(e.to_string());
            }
        };
        let key: ObjKey = (group.clone(), kind.clone(), namespace.clone(), name.clone());
        let value = serde_json::to_value(&obj).unwrap_or(Value::Null);
        let (status, health) = reflect(&group, &kind, &value);
        // A watch event may already carry a newer status: keep it.
        self.observed
            .entry(key)
            .or_insert((work.to_string(), status, health));
        Ok(ResourceIdentifier {
            ordinal: i32::try_from(i).unwrap_or(i32::MAX),
            group,
            version,
            kind,
            namespace,
            name,
        })
    }

    /// `work` as the control plane holds it now: `None` when it is gone or
    /// another Work of the same name (another uid) stands in its place.
    async fn fresh_work(&self, work: &Work) -> Result<Option<Work>, CallError> {
        let fresh = timed(
            self.s.config.request_timeout,
            self.control.get_opt(&work.name_any()),
        )
        .await?;
        Ok(fresh.filter(|f| f.metadata.uid == work.metadata.uid))
    }

    /// Deletes a member object if it is still marked as `work`'s, pinned
    /// to it as just read (uid and resourceVersion preconditions).
    async fn delete_owned(&mut self, work: &str, id: &ResourceIdentifier) -> Result<(), String> {
        let (ar, scope) = self.resolve(&id.group, &id.version, &id.kind).await?;
        let api: Api<DynamicObject> = match scope {
            Scope::Cluster => Api::all_with(self.member.clone(), &ar),
            Scope::Namespaced => Api::namespaced_with(self.member.clone(), &id.namespace, &ar),
        };
        let t = self.s.config.request_timeout;
        let current = match timed(t, api.get_opt(&id.name)).await {
            Ok(c) => c,
            Err(e) => return Err(e.to_string()),
        };
        let Some(current) = current else {
            return Ok(());
        };
        if current
            .annotations()
            .get(WORK_ANNOTATION)
            .map(String::as_str)
            != Some(work)
        {
            tracing::info!(
                kind = id.kind,
                name = id.name,
                "not deleted: another Work owns it now"
            );
            return Ok(());
        }
        let mut dp = DeleteParams::background();
        dp.preconditions = Some(Preconditions {
            uid: current.metadata.uid.clone(),
            resource_version: current.metadata.resource_version.clone(),
        });
        match timed(t, api.delete(&id.name, &dp)).await {
            Ok(_) => {
                self.s.metrics.applied(ApplyResult::Deleted);
                self.observed.remove(&ident_key(id));
                Ok(())
            }
            Err(e) if e.code() == Some(404) => Ok(()),
            Err(e) => {
                self.s.metrics.applied(ApplyResult::DeleteFailed);
                Err(e.to_string())
            }
        }
    }

    /// A Work being deleted: delete what it applied, then drop the finalizer.
    async fn finalize(&mut self, work: &Work) -> Result<(), bool> {
        if !work.finalizers().iter().any(|f| f == FINALIZER) {
            return Ok(());
        }
        let name = work.name_any();
        // The cache says it is being deleted; the control plane must agree
        // (the same Work, still being deleted) before the member loses
        // anything.
        let work = match self.fresh_work(work).await {
            Ok(Some(fresh)) if fresh.metadata.deletion_timestamp.is_some() => fresh,
            Ok(Some(_)) => return Err(false),
            Ok(None) => {
                tracing::info!(
                    work = name,
                    "the Work is gone (or replaced) without this agent's finalizer step; nothing deleted from the member"
                );
                return Ok(());
            }
            Err(e) => {
                self.s.failures.failed(Class::WorkWrite, &e);
                return Err(false);
            }
        };
        let work = &work;
        if !work.finalizers().iter().any(|f| f == FINALIZER) {
            return Ok(());
        }
        if work.spec.preserve_resources_on_deletion != Some(true) {
            let mut ids = listed(work);
            for id in self.wanted_ids(work) {
                if !ids.iter().any(|k| same_object(k, &id)) {
                    ids.push(id);
                }
            }
            let mut errors = Vec::new();
            for id in &ids {
                if let Err(e) = self.delete_owned(&name, id).await {
                    errors.push(format!("{}/{}: {e}", id.kind, id.name));
                }
            }
            if !errors.is_empty() {
                self.s.failures.failed(Class::Apply, &errors.join("; "));
                return Err(false);
            }
        }
        let finalizers: Vec<String> = work
            .finalizers()
            .iter()
            .filter(|f| *f != FINALIZER)
            .cloned()
            .collect();
        match self.patch_finalizers(work, finalizers).await {
            Ok(w) => {
                self.works.insert(name.clone(), w);
                self.applied.remove(&name);
                Ok(())
            }
            Err(e) if e.code() == Some(404) => Ok(()),
            Err(e) => {
                self.s.failures.failed(Class::WorkWrite, &e);
                Err(false)
            }
        }
    }

    /// Sets the finalizer list, pinned to the Work's resourceVersion so
    /// that another writer's finalizer is never dropped.
    async fn patch_finalizers(
        &self,
        work: &Work,
        finalizers: Vec<String>,
    ) -> Result<Work, CallError> {
        let body = json!({"metadata": {
            "finalizers": finalizers,
            "resourceVersion": work.resource_version(),
        }});
        timed(
            self.s.config.request_timeout,
            self.control.patch(
                &work.name_any(),
                &PatchParams::default(),
                &Patch::Merge(&body),
            ),
        )
        .await
    }
}

/// What a Work's status says was applied.
fn listed(work: &Work) -> Vec<ResourceIdentifier> {
    work.status
        .iter()
        .flat_map(|s| s.manifest_statuses.iter().map(|m| m.identifier.clone()))
        .collect()
}

fn same_work_status(a: &WorkStatus, b: &WorkStatus) -> bool {
    same_conditions(&a.conditions, &b.conditions) && a.manifest_statuses == b.manifest_statuses
}

fn work_status_patch(status: &WorkStatus) -> Value {
    let mut v = serde_json::to_value(status).unwrap_or_else(|_| json!({}));
    if let Some(map) = v.as_object_mut() {
        for key in ["conditions", "manifestStatuses"] {
            map.entry(key).or_insert(Value::Null);
        }
    }
    v
}
