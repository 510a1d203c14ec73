//! Kubernetes Events (core/v1) for the controllers' decisions: evictions,
//! finished eviction tasks, cluster health verdicts, descheduling. A
//! controller hands an Event to the [`EventRecorder`] (never waits: a full
//! queue drops it and counts the drop); one writer task stores them in the
//! involved object's namespace (`default` for cluster-scoped objects, as
//! Kubernetes does), so `kubectl get events` and `kubectl describe` show
//! them. Events live an hour: the writer deletes its own older ones every
//! [`SWEEP`], including those left by an earlier run.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use hami_apiserver::ResourceKind;
use hami_apiserver::keys::{kind_prefix, parse_key};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use serde_json::{Value, json};
use tokio::sync::{mpsc, watch};

use super::objects::{ObjectError, Objects, Precondition};

/// `source.component` and `reportingComponent` of the Events written here.
pub const COMPONENT: &str = "hami-control";
/// Events waiting for the writer at most; more are dropped (and counted).
const QUEUE: usize = 1024;
/// How long an Event is kept (Kubernetes' default event TTL).
pub const TTL: Duration = Duration::from_secs(3600);
/// How often old Events are deleted.
pub const SWEEP: Duration = Duration::from_secs(60);
/// Namespace of the Events of cluster-scoped objects.
const CLUSTER_SCOPED_NAMESPACE: &str = "default";

/// Normal or Warning.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventType {
    Normal,
    Warning,
}

impl EventType {
    fn as_str(self) -> &'static str {
        match self {
            Self::Normal => "Normal",
            Self::Warning => "Warning",
        }
    }
}

/// The object an Event is about.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Involved {
    pub api_version: String,
    pub kind: String,
    pub namespace: Option<String>,
    pub name: String,
    pub uid: Option<String>,
}

impl Involved {
    /// The object's own apiVersion, kind, namespace, name and uid; `None`
    /// without a kind or name.
    pub fn of(object: &Value) -> Option<Self> {
        let text = |p: &str| {
            object
                .pointer(p)
                .and_then(Value::as_str)
                .map(str::to_string)
        };
        Some(Self {
            api_version: text("/apiVersion").unwrap_or_default(),
            kind: text("/kind")?,
            namespace: text("/metadata/namespace").filter(|n| !n.is_empty()),
            name: text("/metadata/name")?,
            uid: text("/metadata/uid"),
        })
    }

    /// A binding's template.
    pub fn template(r: &hami_api::binding::ObjectReference) -> Self {
        Self {
            api_version: r.api_version.clone(),
            kind: r.kind.clone(),
            namespace: r.namespace.clone().filter(|n| !n.is_empty()),
            name: r.name.clone(),
            uid: r.uid.clone(),
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TypeLabel {
    r#type: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WhyLabel {
    why: &'static str,
}

/// Event metrics (prefix `hami_events_`).
#[derive(Clone)]
pub struct EventMetrics {
    written: Family<TypeLabel, Counter>,
    dropped: Family<WhyLabel, Counter>,
    expired: Counter,
}

impl EventMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self {
            written: Family::default(),
            dropped: Family::default(),
            expired: Counter::default(),
        };
        let sub = registry.sub_registry_with_prefix("hami_events");
        sub.register(
            "written",
            "Events written by the controllers, by type (Normal, Warning)",
            m.written.clone(),
        );
        sub.register(
            "dropped",
            "Events not written, by why (queue_full, write_error)",
            m.dropped.clone(),
        );
        sub.register(
            "expired",
            "Events deleted after their time to live",
            m.expired.clone(),
        );
        m
    }

    fn drop(&self, why: &'static str) {
        self.dropped.get_or_create(&WhyLabel { why }).inc();
    }
}

struct Pending {
    involved: Involved,
    type_: EventType,
    reason: String,
    message: String,
    at: Timestamp,
}

/// Hands Events to the writer; cheap to clone, never blocks.
#[derive(Clone)]
pub struct EventRecorder {
    tx: mpsc::Sender<Pending>,
    metrics: EventMetrics,
}

impl EventRecorder {
    /// Records an Event about `involved` (dropped, and counted, when the
    /// writer is behind by [`QUEUE`] Events).
    pub fn record(
        &self,
        involved: &Involved,
        type_: EventType,
        reason: &str,
        message: impl Into<String>,
    ) {
        let pending = Pending {
            involved: involved.clone(),
            type_,
            reason: reason.to_string(),
            message: message.into(),
            at: Timestamp::now(),
        };
        if self.tx.try_send(pending).is_err() {
            self.metrics.drop("queue_full");
        }
    }

    /// A recorder whose Events go nowhere (for tests of other parts).
    pub fn discard(metrics: EventMetrics) -> Self {
        let (tx, _) = mpsc::channel(1);
        Self { tx, metrics }
    }
}

/// Starts the Event writer; it runs until `stop` turns true.
pub fn spawn(
    objects: Objects,
    metrics: EventMetrics,
    mut stop: watch::Receiver<bool>,
) -> Result<(EventRecorder, tokio::task::JoinHandle<()>), ObjectError> {
    let kind = objects.kind("v1", "Event")?;
    let (tx, mut rx) = mpsc::channel::<Pending>(QUEUE);
    let recorder = EventRecorder {
        tx,
        metrics: metrics.clone(),
    };
    let task = tokio::spawn(async move {
        let mut sweep = tokio::time::interval(SWEEP);
        sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            // (None, false): stop; (None, true): sweep.
            let (next, sweep_now) = tokio::select! {
                p = rx.recv() => (p, false),
                _ = sweep.tick() => (None, true),
                _ = stop.wait_for(|s| *s) => (None, false),
            };
            match next {
                Some(p) => write(&objects, &kind, &metrics, p).await,
                None if sweep_now => expire(&objects, &kind, &metrics, Timestamp::now()).await,
                None => return,
            }
        }
    });
    Ok((recorder, task))
}

/// Distinguishes Events made in the same nanosecond.
static SEQ: AtomicU64 = AtomicU64::new(0);

/// The Event object (core/v1), named `<object>.<hex>` as Kubernetes names them.
fn event_object(p: &Pending) -> Value {
    let nanos = u64::try_from(p.at.as_nanosecond()).unwrap_or(0);
    let seq = SEQ.fetch_add(1, Ordering::Relaxed);
    let namespace = p
        .involved
        .namespace
        .clone()
        .unwrap_or_else(|| CLUSTER_SCOPED_NAMESPACE.to_string());
    let at = Timestamp::from_second(p.at.as_second())
        .unwrap_or(p.at)
        .to_string();
    let mut involved = json!({
        "apiVersion": p.involved.api_version,
        "kind": p.involved.kind,
        "name": p.involved.name,
    });
    if let Some(ns) = &p.involved.namespace {
        involved["namespace"] = json!(ns);
    }
    if let Some(uid) = &p.involved.uid {
        involved["uid"] = json!(uid);
    }
    json!({
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {
            "name": format!("{}.{:x}", truncated(&p.involved.name), nanos.wrapping_add(seq)),
            "namespace": namespace,
        },
        "involvedObject": involved,
        "reason": p.reason,
        "message": p.message,
        "type": p.type_.as_str(),
        "source": {"component": COMPONENT},
        "reportingComponent": COMPONENT,
        "reportingInstance": COMPONENT,
        "firstTimestamp": at,
        "lastTimestamp": at,
        "count": 1,
    })
}

/// An object name short enough to take a `.<16 hex digits>` suffix and
/// stay a valid name (253 characters at most).
fn truncated(name: &str) -> &str {
    const ROOM: usize = 253 - 17;
    let mut end = name.len().min(ROOM);
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    name[..end].trim_end_matches(['.', '-'])
}

async fn write(objects: &Objects, kind: &Arc<ResourceKind>, metrics: &EventMetrics, p: Pending) {
    let object = event_object(&p);
    let ns = object
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .unwrap_or(CLUSTER_SCOPED_NAMESPACE)
        .to_string();
    match objects.create(kind, Some(&ns), object).await {
        Ok(_) => {
            metrics
                .written
                .get_or_create(&TypeLabel {
                    r#type: p.type_.as_str(),
                })
                .inc();
        }
        Err(e) => {
            metrics.drop("write_error");
            tracing::debug!(reason = p.reason, error = %e, "event not written");
        }
    }
}

/// Whether an Event of ours is past its time to live at `now`.
fn expired(event: &Value, now: Timestamp) -> bool {
    if event.get("reportingComponent").and_then(Value::as_str) != Some(COMPONENT) {
        return false;
    }
    let Some(last) = event
        .get("lastTimestamp")
        .and_then(Value::as_str)
        .and_then(|t| t.parse::<Timestamp>().ok())
    else {
        return false;
    };
    SignedDuration::try_from(TTL)
        .ok()
        .and_then(|ttl| last.checked_add(ttl).ok())
        .is_some_and(|end| end <= now)
}

async fn expire(
    objects: &Objects,
    kind: &Arc<ResourceKind>,
    metrics: &EventMetrics,
    now: Timestamp,
) {
    let old = match expired_events(objects, kind, now) {
        Ok(old) => old,
        Err(e) => {
            tracing::debug!(error = %e, "listing Events to expire failed");
            return;
        }
    };
    delete_expired(objects, kind, metrics, old).await;
}

/// One expired Event: namespace, name, and the Event as listed.
type Expired = (String, String, Precondition);

/// Our Events past their TTL, as listed now.
fn expired_events(
    objects: &Objects,
    kind: &Arc<ResourceKind>,
    now: Timestamp,
) -> Result<Vec<Expired>, hami_store::StoreError> {
    let listed = objects.store().list(&kind_prefix(kind), None, 0)?;
    Ok(listed
        .items
        .iter()
        .filter_map(|kv| {
            let e = serde_json::from_slice::<Value>(&kv.value).ok()?;
            if !expired(&e, now) {
                return None;
            }
            let (ns, name) = parse_key(kind, &kv.key)?;
            let pin = Precondition {
                uid: e
                    .pointer("/metadata/uid")
                    .and_then(Value::as_str)
                    .map(str::to_string),
                resource_version: kv.mod_revision.to_string(),
            };
            Some((ns?.to_string(), name.to_string(), pin))
        })
        .collect())
}

/// Deletes each expired Event pinned to it as listed: one updated since
/// (a repeat counted on it) is not expired on the old copy.
async fn delete_expired(
    objects: &Objects,
    kind: &Arc<ResourceKind>,
    metrics: &EventMetrics,
    old: Vec<Expired>,
) {
    for (ns, name, pin) in old {
        if objects
            .delete_pinned(kind, Some(&ns), &name, &pin)
            .await
            .is_ok()
        {
            metrics.expired.inc();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pending(ns: Option<&str>) -> Pending {
        Pending {
            involved: Involved {
                api_version: "work.hami.io/v1alpha2".into(),
                kind: "ResourceBinding".into(),
                namespace: ns.map(str::to_string),
                name: "web-deployment".into(),
                uid: Some("u-1".into()),
            },
            type_: EventType::Warning,
            reason: "EvictionGracePeriodElapsed".into(),
            message: "gone".into(),
            at: "2025-03-01T10:00:00.123456789Z".parse().unwrap(),
        }
    }

    #[test]
    fn event_names_the_object_and_lives_in_its_namespace() {
        let e = event_object(&pending(Some("shop")));
        assert_eq!(e["metadata"]["namespace"], "shop");
        assert!(
            e["metadata"]["name"]
                .as_str()
                .unwrap()
                .starts_with("web-deployment.")
        );
        assert_eq!(e["involvedObject"]["kind"], "ResourceBinding");
        assert_eq!(e["involvedObject"]["namespace"], "shop");
        assert_eq!(e["involvedObject"]["uid"], "u-1");
        assert_eq!(e["type"], "Warning");
        assert_eq!(e["lastTimestamp"], "2025-03-01T10:00:00Z");
        // Two Events in the same instant get different names.
        let again = event_object(&pending(Some("shop")));
        assert_ne!(e["metadata"]["name"], again["metadata"]["name"]);
        // It reads as a Kubernetes Event.
        let typed: k8s_openapi::api::core::v1::Event = serde_json::from_value(e).unwrap();
        assert_eq!(typed.reason.as_deref(), Some("EvictionGracePeriodElapsed"));
    }

    #[test]
    fn long_names_leave_room_for_the_suffix() {
        let mut p = pending(Some("shop"));
        p.involved.name = format!("{}-{}", "a".repeat(240), "b".repeat(20));
        let e = event_object(&p);
        let name = e["metadata"]["name"].as_str().unwrap();
        assert!(name.len() <= 253, "{}", name.len());
        assert_eq!(truncated("web"), "web");
    }

    #[test]
    fn cluster_scoped_objects_get_events_in_default() {
        let e = event_object(&pending(None));
        assert_eq!(e["metadata"]["namespace"], "default");
        assert!(e["involvedObject"].get("namespace").is_none());
    }

    #[test]
    fn only_our_old_events_expire() {
        let e = event_object(&pending(Some("shop")));
        let at: Timestamp = "2025-03-01T10:00:00Z".parse().unwrap();
        let later = |s: i64| at.checked_add(SignedDuration::from_secs(s)).unwrap();
        assert!(!expired(&e, later(3599)));
        assert!(expired(&e, later(3600)));
        let mut theirs = e.clone();
        theirs["reportingComponent"] = json!("kubelet");
        assert!(!expired(&theirs, later(7200)));
    }

    #[tokio::test]
    async fn an_event_updated_after_it_was_listed_as_expired_is_kept() {
        let objects = crate::controllers::testing::objects().await;
        let kind = objects.kind("v1", "Event").unwrap();
        let mut e = event_object(&pending(Some("default")));
        e["metadata"]["name"] = json!("old");
        e["metadata"]["namespace"] = json!("default");
        crate::controllers::testing::create(&objects, e).await;
        let now: Timestamp = "2030-01-01T00:00:00Z".parse().unwrap();
        let old = expired_events(&objects, &kind, now).unwrap();
        assert_eq!(old.len(), 1);
        // The recorder counts a repeat on it after the sweep listed it.
        let current = objects.get(&kind, Some("default"), "old").unwrap().unwrap();
        let mut again = current.object.clone();
        again["count"] = json!(2);
        objects
            .write(&kind, Some("default"), "old", &current, again, |_| {})
            .await
            .unwrap();
        let metrics = EventMetrics::register(&mut prometheus_client::registry::Registry::default());
        delete_expired(&objects, &kind, &metrics, old).await;
        assert!(
            objects
                .get(&kind, Some("default"), "old")
                .unwrap()
                .is_some()
        );
        assert_eq!(metrics.expired.get(), 0);
        // Listed again (still past its TTL), it goes.
        let old = expired_events(&objects, &kind, now).unwrap();
        delete_expired(&objects, &kind, &metrics, old).await;
        assert!(
            objects
                .get(&kind, Some("default"), "old")
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn involved_reads_an_object() {
        let o = json!({"apiVersion": "cluster.hami.io/v1alpha1", "kind": "Cluster",
            "metadata": {"name": "member-1", "uid": "c-1"}});
        let i = Involved::of(&o).unwrap();
        assert_eq!(i.kind, "Cluster");
        assert_eq!(i.namespace, None);
        assert_eq!(i.uid.as_deref(), Some("c-1"));
        assert!(Involved::of(&json!({"metadata": {"name": "x"}})).is_none());
    }
}
