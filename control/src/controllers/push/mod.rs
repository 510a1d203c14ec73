//! Push mode: for every Cluster with `spec.syncMode: Push`, hami-control
//! runs the agent logic itself ([`hami_agent::pull::Agent`], the same code
//! as the `hami-agent` binary) against the member's API, with the
//! credentials of the Secret that `spec.secretRef` names (key
//! [`desired::KUBECONFIG_KEY`], `kubeconfig`; see [`desired`]).
//!
//! * The agent talks to this control plane over its own HTTP API (the
//!   `control` client of [`PushOptions`]), exactly as a Pull agent would;
//!   it does not register the Cluster (the Cluster is the user's object)
//!   and only writes its estimator annotation and status. Its estimator
//!   serves gRPC on [`PushOptions::estimator_addr`] (loopback, a free port
//!   by default) so the scheduler can reach it.
//! * Starts when a Push Cluster appears; restarts when the Secret's
//!   kubeconfig, `spec.apiEndpoint` or `spec.insecureSkipTLSVerification`
//!   change; stops when the Cluster is deleted or switches to Pull.
//! * A missing Secret or an unusable kubeconfig runs no agent and sets
//!   `Ready=False`, reason `InvalidCredentials`, with the cause in the
//!   message (and drops the estimator annotation, whose server is gone).
//!
//! State: the Push fields of each Push Cluster (fed by a store watch; only
//! a change of them queues the cluster, never a status write) and the
//! running agents, owned by the one reconcile task.

pub mod desired;
#[cfg(test)]
mod relist_tests;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hami_agent::pull::status::{condition, set_condition};
use hami_agent::pull::{Agent, AgentConfig, AgentMetrics};
use hami_api::cluster::ESTIMATOR_ENDPOINT_ANNOTATION;
use hami_api::common::{CLUSTER_GROUP, CLUSTER_VERSION};
use hami_api::{CONDITION_READY, SyncMode};
use hami_apiserver::ResourceKind;
use hami_apiserver::keys::{kind_prefix, parse_key};
use hami_estimator::server::EstimatorMetrics;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use parking_lot::Mutex;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use serde_json::Value;
use tokio::sync::watch;

use super::feed::{self, Change};
use super::objects::{ObjectError, Objects};
use super::queue::WorkQueue;
use super::tracker::Tracker;
use desired::{Desired, PushSpec, REASON_INVALID_CREDENTIALS, desired};

/// How long a stopping agent may take before it is abandoned.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// How Push agents reach this control plane and serve their estimator.
#[derive(Clone)]
pub struct PushOptions {
    /// A kube client to this control plane's own HTTP API.
    pub control: kube::Client,
    /// Where each Push cluster's estimator listens (port 0: a free one).
    pub estimator_addr: SocketAddr,
}

/// Push controller metrics (prefix `hami_push_`), plus the agents'
/// (`hami_agent_`, summed over every Push cluster) and their estimators'
/// (`hami_estimator_`).
#[derive(Clone)]
pub struct PushMetrics {
    agents_running: Gauge,
    agent_starts: Counter,
    invalid_credentials: Gauge,
    agent: AgentMetrics,
    estimator: Arc<EstimatorMetrics>,
}

impl PushMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self {
            agents_running: Gauge::default(),
            agent_starts: Counter::default(),
            invalid_credentials: Gauge::default(),
            agent: AgentMetrics::register(registry),
            estimator: Arc::new(EstimatorMetrics::register(registry)),
        };
        let sub = registry.sub_registry_with_prefix("hami_push");
        sub.register(
            "agents_running",
            "Agents hami-control runs for Push clusters",
            m.agents_running.clone(),
        );
        sub.register(
            "agent_starts",
            "Agent starts and restarts for Push clusters",
            m.agent_starts.clone(),
        );
        sub.register(
            "invalid_credentials_clusters",
            "Push clusters whose Secret is missing or unusable",
            m.invalid_credentials.clone(),
        );
        m
    }

    /// The agent and estimator metrics every in-process agent reports into
    /// (registered once; the simulated Pull members of `hami up
    /// --sim-clusters` share them with the Push agents).
    pub fn agent_metrics(&self) -> (AgentMetrics, Arc<EstimatorMetrics>) {
        (self.agent.clone(), self.estimator.clone())
    }
}

/// One Push cluster as the reconcile task left it.
enum Current {
    Running {
        fingerprint: u64,
        stop: watch::Sender<bool>,
        task: tokio::task::JoinHandle<()>,
    },
    /// No agent: the credentials were unusable (condition written).
    Invalid { fingerprint: u64 },
}

impl Current {
    fn fingerprint(&self) -> u64 {
        match self {
            Current::Running { fingerprint, .. } | Current::Invalid { fingerprint } => *fingerprint,
        }
    }
}

struct Shared {
    objects: Objects,
    cluster: Arc<ResourceKind>,
    secret: Arc<ResourceKind>,
    /// Push fields of every Push Cluster, by name.
    specs: Mutex<BTreeMap<String, PushSpec>>,
    queue: WorkQueue,
    metrics: PushMetrics,
    options: PushOptions,
    tracker: Tracker,
}

/// Starts the Push controller; it runs until `stop` turns true, then stops
/// every agent it started.
pub fn spawn(
    objects: Objects,
    metrics: PushMetrics,
    options: PushOptions,
    tracker: Tracker,
    stop: watch::Receiver<bool>,
) -> Result<tokio::task::JoinHandle<()>, ObjectError> {
    let cluster = objects.kind(&format!("{CLUSTER_GROUP}/{CLUSTER_VERSION}"), "Cluster")?;
    let secret = objects.kind("v1", "Secret")?;
    let shared = Arc::new(Shared {
        objects,
        cluster: cluster.clone(),
        secret: secret.clone(),
        specs: Mutex::default(),
        queue: WorkQueue::new(),
        metrics,
        options,
        tracker,
    });
    let store = shared.objects.store();
    feed::spawn(
        store,
        [kind_prefix(&cluster)],
        &shared,
        Shared::on_cluster,
        &shared.tracker,
        &stop,
    );
    feed::spawn(
        store,
        [kind_prefix(&secret)],
        &shared,
        Shared::on_secret,
        &shared.tracker,
        &stop,
    );
    let mut stop = stop;
    shared
        .tracker
        .spawn_sampler(shared.clone(), |s| &s.queue, stop.clone());
    Ok(tokio::spawn(async move {
        let mut current: BTreeMap<String, Current> = BTreeMap::new();
        tokio::select! {
            _ = shared.tracker.wait_synced() => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        loop {
            let batch = tokio::select! {
                b = shared.queue.pop(16) => b,
                _ = stop.wait_for(|s| *s) => break,
            };
            if batch.is_empty() {
                break;
            }
            for name in batch {
                match shared.reconcile(&name, &mut current).await {
                    Ok(()) => shared.queue.forget(&name),
                    Err(e) => {
                        shared.tracker.retried();
                        let delay = shared.queue.retry(&name);
                        tracing::warn!(cluster = name, error = %e, ?delay, "push: reconcile failed; retrying");
                    }
                }
                shared.queue.done(&name);
            }
            shared.gauges(&current);
        }
        for (_, c) in std::mem::take(&mut current) {
            stop_agent(c).await;
        }
        shared.gauges(&current);
    }))
}

impl Shared {
    fn on_cluster(&self, change: Change) {
        let name_of = |key: &str| parse_key(&self.cluster, key).map(|(_, n)| n.to_string());
        let spec_of = |value: &[u8]| {
            serde_json::from_slice::<Value>(value)
                .ok()
                .and_then(|v| PushSpec::from_cluster(&v))
        };
        let mut specs = self.specs.lock();
        match change {
            Change::Reset(items) => {
                let old = std::mem::take(&mut *specs);
                for kv in items {
                    if let (Some(name), Some(spec)) = (name_of(&kv.key), spec_of(&kv.value)) {
                        specs.insert(name, spec);
                    }
                }
                // Everything known before or now: stop what went, start what came.
                for name in old.keys().chain(specs.keys()) {
                    self.queue.add(name.clone());
                }
            }
            Change::Apply(kv) => {
                let Some(name) = name_of(&kv.key) else { return };
                let spec = spec_of(&kv.value);
                if specs.get(&name) != spec.as_ref() {
                    match spec {
                        Some(s) => specs.insert(name.clone(), s),
                        None => specs.remove(&name),
                    };
                    self.queue.add(name);
                }
            }
            Change::Delete(kv) => {
                if let Some(name) = name_of(&kv.key)
                    && specs.remove(&name).is_some()
                {
                    self.queue.add(name);
                }
            }
        }
    }

    fn on_secret(&self, change: Change) {
        let specs = self.specs.lock();
        let queue_for = |key: &str| {
            let Some((Some(ns), name)) = parse_key(&self.secret, key) else {
                return;
            };
            for (cluster, spec) in specs.iter() {
                if spec
                    .secret_ref
                    .as_ref()
                    .is_some_and(|(sns, sn)| sns == ns && sn == name)
                {
                    self.queue.add(cluster.clone());
                }
            }
        };
        match change {
            Change::Reset(_) => {
                for name in specs.keys() {
                    self.queue.add(name.clone());
                }
            }
            Change::Apply(kv) | Change::Delete(kv) => queue_for(&kv.key),
        }
    }

    fn gauges(&self, current: &BTreeMap<String, Current>) {
        let running = current
            .values()
            .filter(|c| matches!(c, Current::Running { .. }))
            .count();
        self.metrics.agents_running.set(running as i64);
        self.metrics
            .invalid_credentials
            .set((current.len() - running) as i64);
    }

    async fn reconcile(
        &self,
        name: &str,
        current: &mut BTreeMap<String, Current>,
    ) -> Result<(), ObjectError> {
        let spec = match self.objects.get(&self.cluster, None, name)? {
            Some(stored) => PushSpec::from_cluster(&stored.object),
            None => None,
        };
        let Some(spec) = spec else {
            if let Some(c) = current.remove(name) {
                tracing::info!(
                    cluster = name,
                    "push: cluster gone or no longer Push; agent stopped"
                );
                stop_agent(c).await;
            }
            return Ok(());
        };
        let secret = match &spec.secret_ref {
            Some((ns, n)) => self
                .objects
                .get(&self.secret, Some(ns), n)?
                .map(|s| s.object),
            None => None,
        };
        let want = desired(&spec, secret.as_ref());
        let fingerprint = want.fingerprint();
        if current.get(name).map(Current::fingerprint) == Some(fingerprint) {
            return Ok(());
        }
        if let Some(c) = current.remove(name) {
            stop_agent(c).await;
        }
        let message = match want {
            Desired::Run {
                kubeconfig,
                api_endpoint,
                insecure,
                ..
            } => match member_client(&kubeconfig, api_endpoint.as_deref(), insecure).await {
                Ok(member) => {
                    current.insert(
                        name.to_string(),
                        self.start_agent(name, api_endpoint, member, fingerprint),
                    );
                    return Ok(());
                }
                Err(why) => why,
            },
            Desired::Invalid { message } => message,
        };
        tracing::warn!(cluster = name, %message, "push: no agent: invalid credentials");
        self.write_invalid(name, &message).await?;
        current.insert(name.to_string(), Current::Invalid { fingerprint });
        Ok(())
    }

    fn start_agent(
        &self,
        name: &str,
        api_endpoint: Option<String>,
        member: kube::Client,
        fingerprint: u64,
    ) -> Current {
        let mut config = AgentConfig::new(name);
        config.register = false;
        config.sync_mode = SyncMode::Push;
        config.api_endpoint = api_endpoint;
        config.estimator_addr = Some(self.options.estimator_addr);
        let agent = Agent::new(
            config,
            self.metrics.agent.clone(),
            self.metrics.estimator.clone(),
        );
        let (stop, stop_rx) = watch::channel(false);
        let control = self.options.control.clone();
        let cluster = name.to_string();
        let task = tokio::spawn(async move {
            if let Err(e) = agent.run(control, member, stop_rx).await {
                tracing::error!(cluster, error = %e, "push: agent could not run");
            }
        });
        self.metrics.agent_starts.inc();
        tracing::info!(cluster = name, "push: agent started");
        Current::Running {
            fingerprint,
            stop,
            task,
        }
    }

    /// Ready=False/InvalidCredentials and no estimator annotation, in one
    /// write (none when already so).
    async fn write_invalid(&self, name: &str, message: &str) -> Result<(), ObjectError> {
        let Some(stored) = self.objects.get(&self.cluster, None, name)? else {
            return Ok(());
        };
        let mut next = stored.object.clone();
        let mut conditions: Vec<Condition> = next
            .pointer("/status/conditions")
            .cloned()
            .and_then(|v| serde_json::from_value(v).ok())
            .unwrap_or_default();
        let prev = conditions.iter().find(|c| c.type_ == CONDITION_READY);
        let same = prev.is_some_and(|p| {
            p.status == "False" && p.reason == REASON_INVALID_CREDENTIALS && p.message == message
        });
        let had_annotation = next
            .pointer("/metadata/annotations")
            .and_then(Value::as_object)
            .is_some_and(|a| a.contains_key(ESTIMATOR_ENDPOINT_ANNOTATION));
        if same && !had_annotation {
            return Ok(());
        }
        let c = condition(
            prev,
            CONDITION_READY,
            false,
            REASON_INVALID_CREDENTIALS,
            message.to_string(),
            None,
        );
        set_condition(&mut conditions, c);
        if let Some(a) = next
            .pointer_mut("/metadata/annotations")
            .and_then(Value::as_object_mut)
        {
            a.remove(ESTIMATOR_ENDPOINT_ANNOTATION);
        }
        if !next.get("status").is_some_and(Value::is_object) {
            next["status"] = serde_json::json!({});
        }
        next["status"]["conditions"] =
            serde_json::to_value(&conditions).unwrap_or(Value::Array(Vec::new()));
        self.objects
            .write(&self.cluster, None, name, &stored, next, |_| {})
            .await
            .map(|_| ())
    }
}

/// A kube client for the member from its kubeconfig; the error is the
/// condition's message.
async fn member_client(
    kubeconfig: &str,
    api_endpoint: Option<&str>,
    insecure: bool,
) -> Result<kube::Client, String> {
    let kc =
        kube::config::Kubeconfig::from_yaml(kubeconfig).map_err(|e| format!("kubeconfig: {e}"))?;
    let mut config = kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .map_err(|e| format!("kubeconfig: {e}"))?;
    if let Some(ep) = api_endpoint {
        config.cluster_url = ep
            .parse()
            .map_err(|e| format!("spec.apiEndpoint {ep:?}: {e}"))?;
    }
    if insecure {
        config.accept_invalid_certs = true;
    }
    kube::Client::try_from(config).map_err(|e| format!("member client: {e}"))
}

async fn stop_agent(c: Current) {
    if let Current::Running { stop, task, .. } = c {
        let _ = stop.send(true);
        let abort = task.abort_handle();
        if tokio::time::timeout(STOP_TIMEOUT, task).await.is_err() {
            tracing::warn!("push: agent did not stop within {STOP_TIMEOUT:?}; aborted");
            abort.abort();
        }
    }
}
