//! Watches over the member cluster's Nodes and Pods, one task per kind, each
//! the single writer of its kind in the estimator snapshot and the status
//! totals ([`super::summary::Inventory`]). Events are applied as they come
//! (no rebuild); a relist (watch restart) applies what it lists and then
//! deletes what it no longer lists. An object that cannot be read is skipped
//! with a warning; a failed watch restarts after a backoff.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use futures::StreamExt;
use hami_estimator::k8s;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::Api;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use kube::{Resource, ResourceExt};
use serde::de::DeserializeOwned;
use tokio::sync::watch;

use super::Shared;
use super::backoff::Class;

/// A kind the agent reflects.
trait Feed:
    Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug + Send + 'static
{
    const WATCH: &'static str;
    fn key(&self) -> String;
    /// Applies the object; Err: skipped (with the reason).
    fn apply(&self, s: &Shared) -> Result<(), String>;
    fn delete(key: &str, s: &Shared);
    fn keys(s: &Shared) -> Vec<String>;
    fn synced(s: &Shared) -> &AtomicBool;
    /// Drops what the agent never reads before it is kept.
    fn strip(&mut self) {
        self.meta_mut().managed_fields = None;
    }
}

impl Feed for Node {
    const WATCH: &'static str = "nodes";

    fn key(&self) -> String {
        self.name_any()
    }

    fn apply(&self, s: &Shared) -> Result<(), String> {
        let info = k8s::node_info(self).map_err(|e| e.to_string())?;
        s.inventory
            .lock()
            .apply_node(self)
            .map_err(|e| e.to_string())?;
        s.snapshot.lock().apply_node(info);
        Ok(())
    }

    fn delete(key: &str, s: &Shared) {
        s.inventory.lock().delete_node(key);
        s.snapshot.lock().delete_node(key);
    }

    fn keys(s: &Shared) -> Vec<String> {
        s.inventory.lock().node_names()
    }

    fn synced(s: &Shared) -> &AtomicBool {
        &s.health.inner.nodes_synced
    }
}

impl Feed for Pod {
    const WATCH: &'static str = "pods";

    fn key(&self) -> String {
        format!(
            "{}/{}",
            self.namespace().unwrap_or_default(),
            self.name_any()
        )
    }

    fn apply(&self, s: &Shared) -> Result<(), String> {
        let info = k8s::pod_info(self).map_err(|e| e.to_string())?;
        s.inventory
            .lock()
            .apply_pod(self)
            .map_err(|e| e.to_string())?;
        s.snapshot.lock().apply_pod(info);
        Ok(())
    }

    fn delete(key: &str, s: &Shared) {
        let (ns, name) = key.split_once('/').unwrap_or(("", key));
        s.inventory.lock().delete_pod(ns, name);
        s.snapshot.lock().delete_pod(ns, name);
    }

    fn keys(s: &Shared) -> Vec<String> {
        s.inventory
            .lock()
            .pod_keys()
            .into_iter()
            .map(|(ns, n)| format!("{ns}/{n}"))
            .collect()
    }

    fn synced(s: &Shared) -> &AtomicBool {
        &s.health.inner.pods_synced
    }

    fn strip(&mut self) {
        self.metadata.managed_fields = None;
        // Conditions other than PodScheduled and container statuses are
        // never read.
        if let Some(st) = self.status.as_mut() {
            st.container_statuses = None;
            st.init_container_statuses = None;
            if let Some(c) = st.conditions.as_mut() {
                c.retain(|c| c.type_ == "PodScheduled");
            }
        }
    }
}

/// Reflects the member's Nodes until `stop`.
pub(crate) async fn run_nodes(s: Arc<Shared>, member: kube::Client, stop: watch::Receiver<bool>) {
    reflect::<Node>(s, member, stop).await;
}

/// Reflects the member's Pods until `stop`.
pub(crate) async fn run_pods(s: Arc<Shared>, member: kube::Client, stop: watch::Receiver<bool>) {
    reflect::<Pod>(s, member, stop).await;
}

async fn reflect<K: Feed>(s: Arc<Shared>, member: kube::Client, mut stop: watch::Receiver<bool>) {
    let api: Api<K> = Api::all(member);
    let mut stream = watcher::watcher(api, watcher::Config::default())
        .backoff(s.config.backoff())
        .boxed();
    let mut listed: Option<BTreeSet<String>> = None;
    loop {
        let event = tokio::select! {
            _ = stop.wait_for(|v| *v) => return,
            e = stream.next() => e,
        };
        let Some(event) = event else { return };
        match event {
            Ok(Event::Init) => listed = Some(BTreeSet::new()),
            Ok(Event::InitApply(mut obj)) => {
                obj.strip();
                let key = obj.key();
                apply_one(&s, &obj);
                if let Some(l) = listed.as_mut() {
                    l.insert(key);
                }
            }
            Ok(Event::InitDone) => {
                let seen = listed.take().unwrap_or_default();
                for key in K::keys(&s) {
                    if !seen.contains(&key) {
                        K::delete(&key, &s);
                    }
                }
                K::synced(&s).store(true, Ordering::Relaxed);
                s.failures.ok(Class::MemberWatch);
                s.changed.notify_one();
            }
            Ok(Event::Apply(mut obj)) => {
                obj.strip();
                apply_one(&s, &obj);
                s.failures.ok(Class::MemberWatch);
                s.changed.notify_one();
            }
            Ok(Event::Delete(obj)) => {
                K::delete(&obj.key(), &s);
                s.changed.notify_one();
            }
            Err(e) => {
                s.metrics.watch_restart(K::WATCH);
                s.failures
                    .failed(Class::MemberWatch, &format_args!("{}: {e}", K::WATCH));
            }
        }
    }
}

fn apply_one<K: Feed>(s: &Shared, obj: &K) {
    if let Err(reason) = obj.apply(s) {
        tracing::warn!(watch = K::WATCH, key = obj.key(), %reason, "object skipped");
        // Forget a stale version: what it held is no longer known.
        K::delete(&obj.key(), s);
    }
}
