//! The agent's side of the Cluster object on the control plane:
//! registration (the Cluster, its estimator annotation, the namespace
//! `hami-es-<cluster>`), the heartbeat (probe the member, renew the Lease
//! only while the member answers) and Cluster status (Ready, version, API
//! enablements, node/resource/GPU summaries), written when it changed and
//! never otherwise.

use std::sync::Arc;
use std::time::Instant;

use hami_api::cluster::{ApiEnablement, ApiResourceRef, Cluster, ClusterStatus};
use hami_api::{CONDITION_READY, SyncMode};
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use tokio::sync::watch;

use super::backoff::Class;
use super::status::{condition, same_conditions, set_condition};
use super::summary::gpu_summary;
use super::{CallError, MANAGER, Shared, sleep_or_stop, timed};

/// Whether the member's API answers, since when, and why not.
#[derive(Debug, Default)]
pub struct Reach {
    /// None until the first probe.
    pub reachable: Option<bool>,
    /// When `reachable` last changed.
    pub since: Option<Instant>,
    /// The member's Kubernetes version (from the last good probe).
    pub version: Option<String>,
    /// The error that made it unreachable.
    pub error: Option<String>,
}

/// Registers the Cluster and ensures the namespace, retrying until done;
/// false when stopped first.
pub(crate) async fn register(
    s: &Shared,
    control: &kube::Client,
    estimator_endpoint: Option<&str>,
    stop: &mut watch::Receiver<bool>,
) -> bool {
    let mut backoff = s.config.backoff();
    loop {
        match register_once(s, control, estimator_endpoint).await {
            Ok(()) => {
                s.failures.ok(Class::Register);
                tracing::info!(
                    cluster = s.config.cluster_name,
                    namespace = s.namespace,
                    estimator = estimator_endpoint,
                    "registered"
                );
                return true;
            }
            Err(e) => s.failures.failed(Class::Register, &e),
        }
        if !sleep_or_stop(backoff.next_delay(), stop).await {
            return false;
        }
    }
}

async fn register_once(
    s: &Shared,
    control: &kube::Client,
    estimator_endpoint: Option<&str>,
) -> Result<(), CallError> {
    let t = s.config.request_timeout;
    let name = &s.config.cluster_name;
    let mut body = json!({
        "apiVersion": "cluster.hami.io/v1alpha1",
        "kind": "Cluster",
        "metadata": {"name": name},
    });
    if let Some(e) = estimator_endpoint {
        body["metadata"]["annotations"] =
            json!({ hami_api::cluster::ESTIMATOR_ENDPOINT_ANNOTATION: e });
    }
    if s.config.register {
        let mode = match s.config.sync_mode {
            SyncMode::Pull => "Pull",
            SyncMode::Push => "Push",
        };
        body["spec"] = json!({"syncMode": mode});
        if let Some(ep) = &s.config.api_endpoint {
            body["spec"]["apiEndpoint"] = json!(ep);
        }
    }
    if s.config.register || estimator_endpoint.is_some() {
        let api: Api<Cluster> = Api::all(control.clone());
        let pp = PatchParams::apply(MANAGER).force();
        timed(t, api.patch(name, &pp, &Patch::Apply(&body))).await?;
    }
    ensure_namespace(s, control).await
}

/// Reads the namespace and creates it only when it is missing. A create
/// answered 409 (made meanwhile) or 403 is accepted: a joined agent may not
/// create namespaces, the control plane's signer made its namespace when it
/// issued the agent's certificate (and the Lease and Works loops report it
/// if it is really missing).
async fn ensure_namespace(s: &Shared, control: &kube::Client) -> Result<(), CallError> {
    let t = s.config.request_timeout;
    let ns: Api<Namespace> = Api::all(control.clone());
    match timed(t, ns.get(&s.namespace)).await {
        Ok(_) => return Ok(()),
        Err(e) if e.code() == Some(404) => {}
        Err(e) => return Err(e),
    }
    let object = Namespace {
        metadata: ObjectMeta {
            name: Some(s.namespace.clone()),
            ..ObjectMeta::default()
        },
        ..Namespace::default()
    };
    match timed(t, ns.create(&PostParams::default(), &object)).await {
        Ok(_) => Ok(()),
        Err(e) if e.code() == Some(409) => Ok(()),
        Err(e) if e.code() == Some(403) => {
            tracing::warn!(
                namespace = s.namespace,
                error = %e,
                "namespace missing and not allowed to create it: going on (the control plane makes it for joined agents)"
            );
            Ok(())
        }
        Err(e) => Err(e),
    }
}

/// Every renew interval: probe the member; renew the Lease only if it answered.
pub(crate) async fn run_heartbeat(
    s: Arc<Shared>,
    control: kube::Client,
    member: kube::Client,
    mut stop: watch::Receiver<bool>,
) {
    let leases: Api<Lease> = Api::namespaced(control, &s.namespace);
    let interval = s.config.lease_renew_interval;
    // Karmada's ratio: the lease lasts four renew intervals.
    let duration_s = i32::try_from((interval * 4).as_secs().max(1)).unwrap_or(i32::MAX);
    loop {
        let probe = timed(s.config.request_timeout, member.apiserver_version()).await;
        let reachable = probe.is_ok();
        let flipped = {
            let mut r = s.reach.lock();
            let flipped = r.reachable != Some(reachable);
            if flipped {
                r.reachable = Some(reachable);
                r.since = Some(Instant::now());
                r.error = probe.as_ref().err().map(ToString::to_string);
            }
            if let Ok(info) = &probe {
                r.version = Some(info.git_version.clone());
            }
            flipped
        };
        s.metrics.set_member_reachable(reachable);
        match &probe {
            Ok(_) => s.failures.ok(Class::MemberUnreachable),
            Err(e) => s.failures.failed(Class::MemberUnreachable, e),
        }
        if flipped {
            s.changed.notify_one();
        }
        if reachable
            && s.health
                .inner
                .registered
                .load(std::sync::atomic::Ordering::Relaxed)
        {
            match renew(&s, &leases, duration_s).await {
                Ok(()) => s.failures.ok(Class::LeaseRenew),
                Err(e) => {
                    s.metrics.lease_renew_failed();
                    s.failures.failed(Class::LeaseRenew, &e);
                }
            }
        } else if !reachable {
            // Not renewed on purpose: the control plane must see the
            // lease expire while the member cannot be reached.
            s.metrics.lease_renew_failed();
        }
        if !sleep_or_stop(interval, &mut stop).await {
            return;
        }
    }
}

async fn renew(s: &Shared, leases: &Api<Lease>, duration_s: i32) -> Result<(), CallError> {
    let name = &s.config.cluster_name;
    let lease = Lease {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            namespace: Some(s.namespace.clone()),
            ..ObjectMeta::default()
        },
        spec: Some(LeaseSpec {
            holder_identity: Some(format!("{MANAGER}/{name}")),
            lease_duration_seconds: Some(duration_s),
            renew_time: Some(MicroTime(k8s_openapi::jiff::Timestamp::now())),
            ..LeaseSpec::default()
        }),
    };
    let pp = PatchParams::apply(MANAGER).force();
    timed(
        s.config.request_timeout,
        leases.patch(name, &pp, &Patch::Apply(&lease)),
    )
    .await
    .map(|_| ())
}

/// Writes Cluster status when it changed: on a change signal (debounced),
/// and at least every status interval (the grace timer and discovery).
pub(crate) async fn run_status(
    s: Arc<Shared>,
    control: kube::Client,
    member: kube::Client,
    mut stop: watch::Receiver<bool>,
) {
    let api: Api<Cluster> = Api::all(control);
    let name = s.config.cluster_name.clone();
    let mut written: Option<ClusterStatus> = None;
    let mut enablements: Option<Vec<ApiEnablement>> = None;
    let mut discovered_at: Option<Instant> = None;
    let mut was_reachable = false;
    let mut backoff = s.config.backoff();
    let mut delay = std::time::Duration::ZERO;
    loop {
        tokio::select! {
            _ = stop.wait_for(|v| *v) => return,
            _ = s.changed.notified() => {}
            _ = tokio::time::sleep(s.config.status_interval.max(delay)) => {}
        }
        if !sleep_or_stop(s.config.status_debounce, &mut stop).await {
            return;
        }
        let (reachable, since, version, error) = {
            let r = s.reach.lock();
            (r.reachable, r.since, r.version.clone(), r.error.clone())
        };
        let reachable_now = reachable == Some(true);
        // Discovery again every status interval, as Karmada's cluster status
        // controller does: a CRD applied to the member (propagated by hami or
        // installed by its owners) makes its kind schedulable there.
        let stale = discovered_at.is_none_or(|t: Instant| t.elapsed() >= s.config.status_interval);
        if reachable_now
            && (!was_reachable || enablements.is_none() || stale)
            && let Some(found) = discover(&s, &member).await
        {
            enablements = Some(found);
            discovered_at = Some(Instant::now());
        }
        was_reachable = reachable_now;
        if written.is_none() {
            match timed(s.config.request_timeout, api.get(&name)).await {
                Ok(c) => written = Some(c.status.unwrap_or_default()),
                Err(e) => {
                    s.failures.failed(Class::ClusterStatus, &e);
                    delay = backoff.next_delay();
                    continue;
                }
            }
        }
        let prev = written.clone().unwrap_or_default();
        let mut next = prev.clone();
        let prev_ready = prev.conditions.iter().find(|c| c.type_ == CONDITION_READY);
        let grace_over = since.is_some_and(|t| t.elapsed() >= s.config.member_grace);
        if reachable_now && s.health.members_synced() {
            set_condition(
                &mut next.conditions,
                condition(
                    prev_ready,
                    CONDITION_READY,
                    true,
                    "ClusterReady",
                    "the member cluster's API answers and its agent is in sync".into(),
                    None,
                ),
            );
        } else if reachable == Some(false) && grace_over {
            set_condition(
                &mut next.conditions,
                condition(
                    prev_ready,
                    CONDITION_READY,
                    false,
                    "MemberUnreachable",
                    format!(
                        "the member cluster's API has not answered for more than {:?}: {}",
                        s.config.member_grace,
                        error.unwrap_or_default()
                    ),
                    None,
                ),
            );
        }
        if s.health.members_synced() {
            {
                let inv = s.inventory.lock();
                next.node_summary = Some(inv.node_summary());
                next.resource_summary = Some(inv.resource_summary());
            }
            next.gpu_summary = gpu_summary(&s.snapshot.lock());
        }
        if version.is_some() {
            next.kubernetes_version = version;
        }
        if let Some(e) = &enablements {
            next.api_enablements = e.clone();
        }
        if same_status(&prev, &next) {
            delay = std::time::Duration::ZERO;
            continue;
        }
        let body = json!({ "status": status_patch(&next) });
        let pp = PatchParams::default();
        match timed(
            s.config.request_timeout,
            api.patch_status(&name, &pp, &Patch::Merge(&body)),
        )
        .await
        {
            Ok(c) => {
                s.failures.ok(Class::ClusterStatus);
                s.metrics.status_written("cluster");
                written = Some(c.status.unwrap_or(next));
                backoff.reset();
                delay = std::time::Duration::ZERO;
            }
            Err(e) => {
                s.failures.failed(Class::ClusterStatus, &e);
                // Re-read before the next attempt: someone else may have written.
                written = None;
                delay = backoff.next_delay();
            }
        }
    }
}

fn same_status(a: &ClusterStatus, b: &ClusterStatus) -> bool {
    same_conditions(&a.conditions, &b.conditions)
        && a.kubernetes_version == b.kubernetes_version
        && a.api_enablements == b.api_enablements
        && a.node_summary == b.node_summary
        && a.resource_summary == b.resource_summary
        && a.gpu_summary == b.gpu_summary
}

/// The status as a merge patch: every field present, empty ones as null
/// (a merge patch keeps what it does not mention).
fn status_patch(status: &ClusterStatus) -> Value {
    let mut v = serde_json::to_value(status).unwrap_or_else(|_| json!({}));
    if let Some(map) = v.as_object_mut() {
        for key in [
            "conditions",
            "kubernetesVersion",
            "apiEnablements",
            "nodeSummary",
            "resourceSummary",
            "gpuSummary",
        ] {
            map.entry(key).or_insert(Value::Null);
        }
    }
    v
}

/// The member's API groups and resources (subresources left out), sorted.
async fn discover(s: &Shared, member: &kube::Client) -> Option<Vec<ApiEnablement>> {
    let run = kube::Discovery::new(member.clone()).run();
    let discovery = match tokio::time::timeout(s.config.request_timeout, run).await {
        Ok(Ok(d)) => d,
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "member discovery failed");
            return None;
        }
        Err(_) => return None,
    };
    let mut out: Vec<ApiEnablement> = Vec::new();
    for group in discovery.groups() {
        for version in group.versions() {
            let mut resources: Vec<ApiResourceRef> = group
                .versioned_resources(version)
                .into_iter()
                .map(|(ar, _)| ApiResourceRef {
                    name: ar.plural,
                    kind: ar.kind,
                })
                .collect();
            resources.sort_by(|a, b| a.name.cmp(&b.name));
            let group_version = if group.name().is_empty() {
                version.to_string()
            } else {
                format!("{}/{version}", group.name())
            };
            out.push(ApiEnablement {
                group_version,
                resources,
            });
        }
    }
    out.sort_by(|a, b| a.group_version.cmp(&b.group_version));
    Some(out)
}
