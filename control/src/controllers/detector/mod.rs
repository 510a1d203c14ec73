//! The detector: a resource template claimed by a PropagationPolicy or
//! ClusterPropagationPolicy becomes a ResourceBinding (ClusterResourceBinding
//! for cluster-scoped templates) named `<name>-<kind lowercased>`, carrying
//! the template's reference, replicas and per-replica requirements and the
//! policy's placement and `rescheduleTriggeredAt` (the scheduler divides
//! afresh when that is later than the binding's last scheduling). Changing the template or the policy updates the
//! binding; deleting the template, or losing every matching policy, deletes it.
//!
//! State: the policies, as a synchronous index fed by one store watch over
//! `/registry/` (policies apply / delete / reset). Templates are not indexed:
//! a change to one of a kind some policy selects queues its key, and the
//! reconcile reads it from the store. Pure parts: [`matching`] (which policy
//! wins) and [`requirements`] (what a replica needs).

pub mod matching;
pub mod requirements;

#[cfg(test)]
mod relist_tests;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use hami_api::binding::{ObjectReference, ResourceBindingSpec};
use hami_api::common::POLICY_GROUP;
use hami_api::propagation::PropagationSpec;
use hami_apiserver::ResourceKind;
use hami_apiserver::keys::kind_prefix;
use parking_lot::RwLock;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use serde_json::{Value, json};
use tokio::sync::watch;

use super::feed::{self, Change};
use super::objects::{ObjectError, Objects, Precondition, spec_of};
use super::queue::WorkQueue;
use super::runner::{self, Reconciler, ResultLabel};
use super::tracker::Tracker;
use matching::{Policy, Template, best_policy};

/// Label on a binding: namespace of the PropagationPolicy that claimed it.
pub const LABEL_PP_NAMESPACE: &str = "propagationpolicy.hami.io/namespace";
/// Label on a binding: name of the PropagationPolicy that claimed it.
pub const LABEL_PP_NAME: &str = "propagationpolicy.hami.io/name";
/// Label on a binding: name of the ClusterPropagationPolicy that claimed it.
pub const LABEL_CPP_NAME: &str = "clusterpropagationpolicy.hami.io/name";

/// Detector metrics (prefix `hami_detector_`).
#[derive(Clone)]
pub struct DetectorMetrics {
    reconciles: Family<ResultLabel, Counter>,
    bad_objects: Counter,
    deletes_refused: Counter,
}

impl DetectorMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self {
            reconciles: Family::default(),
            bad_objects: Counter::default(),
            deletes_refused: Counter::default(),
        };
        let sub = registry.sub_registry_with_prefix("hami_detector");
        sub.register(
            "reconciles",
            "Template reconciles by result (created, updated, deleted, unchanged, error)",
            m.reconciles.clone(),
        );
        sub.register(
            "bad_objects",
            "Policies or templates skipped because they could not be read",
            m.bad_objects.clone(),
        );
        sub.register(
            "deletes_refused",
            "Binding deletes the policy index asked for that the policies in the store refuted (the index was behind)",
            m.deletes_refused.clone(),
        );
        m
    }

    fn count(&self, result: &'static str) {
        self.reconciles.get_or_create(&ResultLabel { result }).inc();
    }
}

/// Policy index key: (namespace, name); namespace `None` for cluster policies.
type PolicyKey = (Option<String>, String);

struct Shared {
    objects: Objects,
    policies: RwLock<BTreeMap<PolicyKey, Policy>>,
    queue: WorkQueue,
    metrics: DetectorMetrics,
    rb: Arc<ResourceKind>,
    crb: Arc<ResourceKind>,
    tracker: Tracker,
}

/// Starts the detector; it runs until `stop` turns true.
pub fn spawn(
    objects: Objects,
    metrics: DetectorMetrics,
    tracker: Tracker,
    stop: watch::Receiver<bool>,
) -> Result<tokio::task::JoinHandle<()>, ObjectError> {
    let shared = Arc::new(Shared::new(objects, metrics, tracker)?);
    feed::spawn(
        shared.objects.store(),
        ["/registry/".to_string()],
        &shared,
        Shared::on_change,
        &shared.tracker,
        &stop,
    );
    Ok(runner::spawn(shared, stop))
}

impl Reconciler for Shared {
    const NAME: &'static str = "detector";

    fn queue(&self) -> &WorkQueue {
        &self.queue
    }

    fn tracker(&self) -> &Tracker {
        &self.tracker
    }

    async fn reconcile(&self, key: &str) -> Result<&'static str, ObjectError> {
        self.reconcile_template(key).await
    }

    fn count(&self, outcome: &'static str) {
        self.metrics.count(outcome);
    }

    fn give_up(&self, key: &str, e: &ObjectError) -> bool {
        match e {
            ObjectError::Api(api) if matches!(**api, hami_apiserver::ApiError::Invalid { .. }) => {
                // The binding we would write is invalid: retrying cannot help.
                tracing::warn!(key, error = %e, "detector: binding rejected");
                true
            }
            _ => false,
        }
    }
}

/// What a store key names.
enum KeyKind {
    Policy { cluster_wide: bool },
    Template(Arc<ResourceKind>),
    Other,
}

impl Shared {
    fn new(
        objects: Objects,
        metrics: DetectorMetrics,
        tracker: Tracker,
    ) -> Result<Self, ObjectError> {
        let (rb, crb) = objects.binding_kinds()?;
        Ok(Shared {
            objects,
            policies: RwLock::new(BTreeMap::new()),
            queue: WorkQueue::new(),
            metrics,
            rb,
            crb,
            tracker,
        })
    }

    fn classify(&self, key: &str) -> KeyKind {
        let Some(rest) = key.strip_prefix("/registry/") else {
            return KeyKind::Other;
        };
        let mut parts = rest.splitn(3, '/');
        let (Some(group), Some(plural)) = (parts.next(), parts.next()) else {
            return KeyKind::Other;
        };
        if group == POLICY_GROUP {
            return match plural {
                "propagationpolicies" => KeyKind::Policy {
                    cluster_wide: false,
                },
                "clusterpropagationpolicies" => KeyKind::Policy { cluster_wide: true },
                _ => KeyKind::Other,
            };
        }
        if group.ends_with("hami.io") {
            return KeyKind::Other;
        }
        // The kinds served now: a CustomResourceDefinition adds some while
        // the detector runs.
        match self.objects.registry().by_store_resource(group, plural) {
            Some(k) => KeyKind::Template(k.clone()),
            None => KeyKind::Other,
        }
    }

    fn selected(&self, kind: &ResourceKind) -> bool {
        let api_version = kind.api_version();
        self.policies.read().values().any(|p| {
            p.selectors
                .iter()
                .any(|s| s.kind == kind.kind && s.api_version == api_version)
        })
    }

    fn parse_policy(&self, value: &[u8], cluster_wide: bool) -> Option<Policy> {
        let object: Value = serde_json::from_slice(value).ok()?;
        let namespace = (!cluster_wide)
            .then(|| {
                object
                    .pointer("/metadata/namespace")?
                    .as_str()
                    .map(str::to_owned)
            })
            .flatten();
        if !cluster_wide && namespace.is_none() {
            return None;
        }
        let name = object.pointer("/metadata/name")?.as_str()?.to_owned();
        let spec: PropagationSpec = spec_of(&object)?;
        Some(Policy {
            namespace,
            name,
            priority: spec.priority.unwrap_or(0),
            selectors: spec.resource_selectors,
            placement: spec.placement,
            reschedule_triggered_at: spec.reschedule_triggered_at,
        })
    }

    /// Queues every template a policy's selectors could name.
    fn queue_selected_by(&self, policy: &Policy) {
        let mut done = BTreeSet::new();
        for s in &policy.selectors {
            let Some(kind) = self
                .objects
                .registry()
                .by_gvk(&s.api_version, &s.kind)
                .cloned()
            else {
                continue;
            };
            let ns = policy
                .namespace
                .as_deref()
                .or(s.namespace.as_deref().filter(|n| !n.is_empty()));
            let prefix = match (kind.namespaced, ns) {
                (true, Some(ns)) => format!("{}{ns}/", kind_prefix(&kind)),
                _ => kind_prefix(&kind),
            };
            if !done.insert(prefix.clone()) {
                continue;
            }
            match self.objects.store().list(&prefix, None, 0) {
                Ok(l) => l.items.into_iter().for_each(|kv| self.queue.add(kv.key)),
                Err(e) => tracing::warn!(%prefix, error = %e, "detector: listing templates failed"),
            }
        }
    }

    fn on_change(&self, change: Change) {
        match change {
            Change::Reset(items) => {
                let mut policies = BTreeMap::new();
                for kv in &items {
                    if let KeyKind::Policy { cluster_wide } = self.classify(&kv.key) {
                        match self.parse_policy(&kv.value, cluster_wide) {
                            Some(p) => {
                                policies.insert((p.namespace.clone(), p.name.clone()), p);
                            }
                            None => {
                                self.metrics.bad_objects.inc();
                            }
                        }
                    }
                }
                *self.policies.write() = policies;
                for kv in items {
                    if let KeyKind::Template(kind) = self.classify(&kv.key)
                        && self.selected(&kind)
                    {
                        self.queue.add(kv.key);
                    }
                }
            }
            Change::Apply(kv) | Change::Delete(kv) if kv.value.is_empty() => {
                self.metrics.bad_objects.inc();
                tracing::debug!(key = kv.key, "detector: empty value skipped");
            }
            Change::Apply(kv) => match self.classify(&kv.key) {
                KeyKind::Policy { cluster_wide } => {
                    let Some(p) = self.parse_policy(&kv.value, cluster_wide) else {
                        self.metrics.bad_objects.inc();
                        tracing::warn!(key = kv.key, "detector: unreadable policy skipped");
                        return;
                    };
                    let old = self
                        .policies
                        .write()
                        .insert((p.namespace.clone(), p.name.clone()), p.clone());
                    if old.as_ref() != Some(&p) {
                        if let Some(old) = old {
                            self.queue_selected_by(&old);
                        }
                        self.queue_selected_by(&p);
                    }
                }
                KeyKind::Template(kind) => {
                    if self.selected(&kind) {
                        self.queue.add(kv.key);
                    }
                }
                KeyKind::Other => {}
            },
            Change::Delete(kv) => match self.classify(&kv.key) {
                KeyKind::Policy { cluster_wide } => {
                    if let Some(p) = self.parse_policy(&kv.value, cluster_wide) {
                        self.policies
                            .write()
                            .remove(&(p.namespace.clone(), p.name.clone()));
                        self.queue_selected_by(&p);
                    }
                }
                KeyKind::Template(kind) => {
                    if self.selected(&kind) {
                        self.queue.add(kv.key);
                    }
                }
                KeyKind::Other => {}
            },
        }
    }

    async fn reconcile_template(&self, key: &str) -> Result<&'static str, ObjectError> {
        let KeyKind::Template(kind) = self.classify(key) else {
            return Ok("unchanged");
        };
        let kind = kind.clone();
        let rest = key.strip_prefix(&kind_prefix(&kind)).unwrap_or_default();
        let (ns, name) = match (kind.namespaced, rest.split_once('/')) {
            (true, Some((ns, name))) => (Some(ns), name),
            (true, None) => return Ok("unchanged"),
            (false, _) => (None, rest),
        };
        let binding_kind = if kind.namespaced { &self.rb } else { &self.crb };
        let binding_name = format!("{name}-{}", kind.kind.to_lowercase());
        let existing = self.objects.get(binding_kind, ns, &binding_name)?;
        let template = self
            .objects
            .get(&kind, ns, name)?
            .filter(|t| t.object.pointer("/metadata/deletionTimestamp").is_none());
        let Some(template) = template else {
            return self.remove(binding_kind, ns, &binding_name, existing).await;
        };
        let t = &template.object;
        let labels: BTreeMap<String, String> = t
            .pointer("/metadata/labels")
            .and_then(|l| serde_json::from_value(l.clone()).ok())
            .unwrap_or_default();
        let api_version = kind.api_version();
        let view = Template {
            api_version: &api_version,
            kind: &kind.kind,
            namespace: ns,
            name,
            labels: &labels,
        };
        let policy = {
            let policies = self.policies.read();
            best_policy(policies.values(), &view).cloned()
        };
        let Some(policy) = policy else {
            // The index says no policy claims it; the store must agree
            // before the binding (and with it the Works) goes.
            if existing.is_some() && self.claimed_in_store(&view)? {
                self.metrics.deletes_refused.inc();
                tracing::info!(
                    key,
                    "detector: a policy in the store claims the template; the index is behind, binding kept"
                );
                return Ok("unchanged");
            }
            return self.remove(binding_kind, ns, &binding_name, existing).await;
        };
        let extracted = match requirements::extract(t) {
            Ok(e) => e,
            Err(e) => {
                self.metrics.bad_objects.inc();
                tracing::warn!(key, error = %e, "detector: template requirements unreadable; not bound");
                return Err(ObjectError::Incomplete(format!(
                    "the template's requirements are unreadable: {e}"
                )));
            }
        };
        let spec = ResourceBindingSpec {
            resource: ObjectReference {
                api_version: api_version.clone(),
                kind: kind.kind.clone(),
                namespace: ns.map(str::to_owned),
                name: name.to_owned(),
                uid: t
                    .pointer("/metadata/uid")
                    .and_then(Value::as_str)
                    .map(str::to_owned),
                resource_version: None,
            },
            replicas: extracted.replicas,
            replica_requirements: extracted.requirements,
            placement: Some(policy.placement.clone()),
            reschedule_triggered_at: policy.reschedule_triggered_at.clone(),
            ..Default::default()
        };
        let mut spec_value = serde_json::to_value(&spec).unwrap_or_else(|_| json!({}));
        let mut policy_labels = serde_json::Map::new();
        match &policy.namespace {
            Some(pns) => {
                policy_labels.insert(LABEL_PP_NAMESPACE.into(), json!(pns));
                policy_labels.insert(LABEL_PP_NAME.into(), json!(policy.name));
            }
            None => {
                policy_labels.insert(LABEL_CPP_NAME.into(), json!(policy.name));
            }
        }
        let owner = json!([{
            "apiVersion": api_version,
            "kind": kind.kind,
            "name": name,
            "uid": t.pointer("/metadata/uid").cloned().unwrap_or(Value::Null),
            "controller": true,
            "blockOwnerDeletion": true,
        }]);
        let Some(current) = existing else {
            let object = json!({
                "apiVersion": binding_kind.api_version(),
                "kind": binding_kind.kind,
                "metadata": {
                    "name": binding_name,
                    "namespace": ns,
                    "labels": policy_labels,
                    "ownerReferences": owner,
                },
                "spec": spec_value,
            });
            let mut object = object;
            if ns.is_none()
                && let Some(m) = object["metadata"].as_object_mut()
            {
                m.remove("namespace");
            }
            return match self.objects.create(binding_kind, ns, object).await {
                Ok(_) => Ok("created"),
                Err(ObjectError::Api(e))
                    if matches!(*e, hami_apiserver::ApiError::AlreadyExists { .. }) =>
                {
                    Err(ObjectError::Conflict)
                }
                Err(e) => Err(e),
            };
        };
        let mut new = current.object.clone();
        {
            let spec_out = hami_apiserver::meta::as_map(
                hami_apiserver::meta::as_map(&mut new)
                    .entry("spec")
                    .or_insert_with(|| json!({})),
            );
            let desired = hami_apiserver::meta::as_map(&mut spec_value);
            for field in [
                "resource",
                "replicas",
                "replicaRequirements",
                "placement",
                "rescheduleTriggeredAt",
            ] {
                match desired.remove(field) {
                    Some(v) => spec_out.insert(field.into(), v),
                    None => spec_out.remove(field),
                };
            }
            let meta = hami_apiserver::meta::metadata_mut(&mut new);
            let labels =
                hami_apiserver::meta::as_map(meta.entry("labels").or_insert_with(|| json!({})));
            for l in [LABEL_PP_NAMESPACE, LABEL_PP_NAME, LABEL_CPP_NAME] {
                labels.remove(l);
            }
            labels.extend(policy_labels);
            meta.insert("ownerReferences".into(), owner);
        }
        if new == current.object {
            return Ok("unchanged");
        }
        self.objects
            .write(binding_kind, ns, &binding_name, &current, new, |_| {})
            .await?;
        Ok("updated")
    }

    /// Whether some policy as stored now (not as indexed) claims `t`.
    fn claimed_in_store(&self, t: &Template<'_>) -> Result<bool, ObjectError> {
        let mut listed = Vec::new();
        for (plural, cluster_wide) in [
            ("propagationpolicies", false),
            ("clusterpropagationpolicies", true),
        ] {
            let mut prefix = format!("/registry/{POLICY_GROUP}/{plural}/");
            if !cluster_wide {
                let Some(ns) = t.namespace else { continue };
                prefix.push_str(ns);
                prefix.push('/');
            }
            let items = self
                .objects
                .store()
                .list(&prefix, None, 0)
                .map_err(|e| ObjectError::Incomplete(format!("listing policies: {e}")))?
                .items;
            listed.extend(
                items
                    .iter()
                    .filter_map(|kv| self.parse_policy(&kv.value, cluster_wide)),
            );
        }
        Ok(best_policy(listed.iter(), t).is_some())
    }

    async fn remove(
        &self,
        binding_kind: &ResourceKind,
        ns: Option<&str>,
        name: &str,
        existing: Option<hami_apiserver::objects::Stored>,
    ) -> Result<&'static str, ObjectError> {
        let Some(existing) = existing else {
            return Ok("unchanged");
        };
        let ours = [LABEL_PP_NAME, LABEL_CPP_NAME].iter().any(|l| {
            existing
                .object
                .pointer("/metadata/labels")
                .and_then(|m| m.get(*l))
                .is_some()
        });
        if !ours {
            return Ok("unchanged");
        }
        // Pinned to the binding as read: one changed since is decided again.
        self.objects
            .delete_pinned(binding_kind, ns, name, &Precondition::of(&existing))
            .await?;
        Ok("deleted")
    }
}
