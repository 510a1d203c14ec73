//! The CSR approver and signer (kube-controller-manager's `csrapproving`
//! and `csrsigning`, for `kubernetes.io/kube-apiserver-client`), run by
//! `hami up` when it has a PKI.
//!
//! A watch keeps the CSRs still open (not issued, denied or failed), read
//! into [`decide::Csr`] (the request parsed once per change). On every
//! change, and every [`RESYNC`], each is read again from the store,
//! decided ([`decide::decide`], pure) and written in ONE write: the
//! Approved condition, the Failed condition, or `status.certificate`.
//! Before an agent's certificate is signed its confinement exists
//! (`hami-es-<X>`, ClusterRole and ClusterRoleBinding
//! `system:hami:agent:<X>`, RoleBinding `system:hami:agent` in
//! `hami-es-<X>`; [`hami_apiserver::rbac::agent_identity_rbac`]), created
//! when missing. A request left for an administrator is logged and gets
//! one Event.

pub mod decide;
#[cfg(test)]
mod decide_tests;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use base64::Engine;
use hami_apiserver::ResourceKind;
use hami_apiserver::keys::{kind_prefix, parse_key};
use hami_apiserver::objects::Stored;
use hami_apiserver::rbac::agent_identity_rbac;
use hami_store::KeyValue;
use parking_lot::{Mutex, RwLock};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use serde_json::{Value, json};
use tokio::sync::{Notify, watch};

use super::events::{EventRecorder, EventType, Involved};
use super::feed::{self, Change};
use super::objects::{ObjectError, Objects};
use super::tracker::Tracker;
use crate::pki::{Pki, inspect_csr};
use decide::{Csr, Decision};

/// How often every open CSR is looked at again without a change.
const RESYNC: Duration = Duration::from_secs(10);

/// kube-controller-manager's `--cluster-signing-duration` default (1 year).
pub const DEFAULT_SIGNING_DURATION: Duration = Duration::from_secs(8760 * 3600);

/// A Go duration (`time.ParseDuration`) of whole units: `8760h`, `30m`,
/// `1h30m`, `90s`, `500ms`; positive.
pub fn parse_go_duration(s: &str) -> Result<Duration, String> {
    let bad = || format!("{s:?} is not a duration like 8760h, 30m or 1h30m");
    let mut rest = s.trim();
    let mut total = Duration::ZERO;
    if rest.is_empty() {
        return Err(bad());
    }
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
        let n: u64 = rest[..digits].parse().map_err(|_| bad())?;
        let after = &rest[digits..];
        let unit_len = after
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(after.len());
        let unit = match &after[..unit_len] {
            "h" => Duration::from_secs(3600),
            "m" => Duration::from_secs(60),
            "s" => Duration::from_secs(1),
            "ms" => Duration::from_millis(1),
            _ => return Err(bad()),
        };
        let part = unit
            .checked_mul(u32::try_from(n).map_err(|_| bad())?)
            .ok_or_else(bad)?;
        total = total.checked_add(part).ok_or_else(bad)?;
        rest = &after[unit_len..];
    }
    if total.is_zero() {
        return Err(format!("{s:?}: the duration must be positive"));
    }
    Ok(total)
}

/// The signer's settings.
#[derive(Clone)]
pub struct CsrOptions {
    pub pki: Arc<Pki>,
    /// The longest certificate signed (`--cluster-signing-duration`); a
    /// CSR's `spec.expirationSeconds` may ask for less.
    pub signing_duration: Duration,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DecisionLabel {
    decision: &'static str,
}

/// CSR metrics (prefix `hami_csr_`).
#[derive(Clone)]
pub struct CsrMetrics {
    decisions: Family<DecisionLabel, Counter>,
    errors: Counter,
}

impl CsrMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self {
            decisions: Family::default(),
            errors: Counter::default(),
        };
        let sub = registry.sub_registry_with_prefix("hami_csr");
        sub.register(
            "decisions",
            "CSR decisions written, by decision (approved, signed, failed, left_for_admin)",
            m.decisions.clone(),
        );
        sub.register(
            "errors",
            "CSR writes that failed (retried on the next pass)",
            m.errors.clone(),
        );
        m
    }

    fn decided(&self, decision: &'static str) {
        self.decisions
            .get_or_create(&DecisionLabel { decision })
            .inc();
    }
}

struct Kinds {
    csr: Arc<ResourceKind>,
    namespace: Arc<ResourceKind>,
    cluster_role: Arc<ResourceKind>,
    cluster_role_binding: Arc<ResourceKind>,
    role_binding: Arc<ResourceKind>,
}

struct Shared {
    objects: Objects,
    kinds: Kinds,
    options: CsrOptions,
    /// Open CSRs by name.
    index: RwLock<BTreeMap<String, Csr>>,
    /// CSRs already reported as left for an administrator.
    reported: Mutex<BTreeSet<String>>,
    changed: Notify,
    events: EventRecorder,
    metrics: CsrMetrics,
    tracker: Tracker,
}

fn text(object: &Value, pointer: &str) -> String {
    object
        .pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}

fn texts(object: &Value, pointer: &str) -> Vec<String> {
    object
        .pointer(pointer)
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

fn request_pem(object: &Value) -> Option<String> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text(object, "/spec/request"))
        .ok()?;
    String::from_utf8(bytes).ok()
}

/// What the decision reads of a stored CSR.
fn facts(object: &Value) -> Csr {
    let has = |t: &str| {
        object
            .pointer("/status/conditions")
            .and_then(Value::as_array)
            .is_some_and(|c| {
                c.iter()
                    .any(|c| c.get("type").and_then(Value::as_str) == Some(t))
            })
    };
    Csr {
        signer_name: text(object, "/spec/signerName"),
        username: text(object, "/spec/username"),
        groups: texts(object, "/spec/groups"),
        usages: texts(object, "/spec/usages"),
        approved: has("Approved"),
        denied: has("Denied"),
        failed: has("Failed"),
        issued: !text(object, "/status/certificate").is_empty(),
        subject: request_pem(object)
            .ok_or_else(|| "spec.request is not base64 PEM".to_owned())
            .and_then(|pem| inspect_csr(&pem).map_err(|e| e.to_string())),
    }
}

fn open(csr: &Csr) -> bool {
    csr.signer_name == decide::SIGNER && !csr.issued && !csr.denied && !csr.failed
}

/// Starts the approver and signer; it runs until `stop` turns true.
pub fn spawn(
    objects: Objects,
    metrics: CsrMetrics,
    options: CsrOptions,
    events: EventRecorder,
    tracker: Tracker,
    mut stop: watch::Receiver<bool>,
) -> Result<tokio::task::JoinHandle<()>, ObjectError> {
    let rbac = "rbac.authorization.k8s.io/v1";
    let kinds = Kinds {
        csr: objects.kind("certificates.k8s.io/v1", "CertificateSigningRequest")?,
        namespace: objects.kind("v1", "Namespace")?,
        cluster_role: objects.kind(rbac, "ClusterRole")?,
        cluster_role_binding: objects.kind(rbac, "ClusterRoleBinding")?,
        role_binding: objects.kind(rbac, "RoleBinding")?,
    };
    let prefix = kind_prefix(&kinds.csr);
    let shared = Arc::new(Shared {
        objects,
        kinds,
        options,
        index: RwLock::default(),
        reported: Mutex::default(),
        changed: Notify::new(),
        events,
        metrics,
        tracker,
    });
    let store = shared.objects.store().clone();
    feed::spawn(
        &store,
        [prefix],
        &shared,
        Shared::on_csr,
        &shared.tracker,
        &stop,
    );
    Ok(tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = shared.changed.notified() => {}
                _ = tokio::time::sleep(RESYNC) => {}
                _ = stop.wait_for(|s| *s) => return,
            }
            if shared.tracker.is_synced() {
                shared.pass().await;
            }
        }
    }))
}

impl Shared {
    fn on_csr(&self, change: Change) {
        let entry = |kv: &KeyValue| -> Option<(String, Csr)> {
            let (_, name) = parse_key(&self.kinds.csr, &kv.key)?;
            let object: Value = serde_json::from_slice(&kv.value).ok()?;
            Some((name.to_owned(), facts(&object)))
        };
        match change {
            Change::Reset(items) => {
                let fresh = items
                    .iter()
                    .filter_map(entry)
                    .filter(|(_, c)| open(c))
                    .collect();
                feed::swap_in(&self.index, fresh);
            }
            Change::Apply(kv) => {
                if let Some((name, csr)) = entry(&kv) {
                    let mut index = self.index.write();
                    if open(&csr) {
                        index.insert(name, csr);
                    } else {
                        index.remove(&name);
                    }
                }
            }
            Change::Delete(kv) => {
                if let Some((_, name)) = parse_key(&self.kinds.csr, &kv.key) {
                    self.index.write().remove(name);
                    self.reported.lock().remove(name);
                }
            }
        }
        self.changed.notify_one();
    }

    /// Whether cluster `X`'s agent has an identity: its ClusterRole exists
    /// (a failed read counts as yes, so nothing is approved on doubt).
    fn has_identity(&self, cluster: &str) -> bool {
        let name = hami_apiserver::rbac::agent_user(cluster);
        !matches!(
            self.objects.get(&self.kinds.cluster_role, None, &name),
            Ok(None)
        )
    }

    async fn pass(&self) {
        let names: Vec<String> = self.index.read().keys().cloned().collect();
        for name in names {
            if let Err(e) = self.reconcile(&name).await {
                self.metrics.errors.inc();
                tracing::warn!(csr = %name, error = %e, "CSR: will try again");
            }
        }
    }

    /// Reads the CSR again, decides, writes.
    async fn reconcile(&self, name: &str) -> Result<(), ObjectError> {
        let Some(current) = self.objects.get(&self.kinds.csr, None, name)? else {
            return Ok(());
        };
        let csr = facts(&current.object);
        let has_identity = |c: &str| self.has_identity(c);
        let involved = Involved::of(&current.object).unwrap_or_default();
        match decide::decide(&csr, &has_identity) {
            Decision::Nothing => Ok(()),
            Decision::LeaveForAdmin { why } => {
                if self.reported.lock().insert(name.to_owned()) {
                    tracing::info!(csr = %name, %why, "CSR left for an administrator");
                    self.events
                        .record(&involved, EventType::Warning, "PendingApproval", why);
                    self.metrics.decided("left_for_admin");
                }
                Ok(())
            }
            Decision::Approve { reason, message } => {
                self.add_condition(&current, "Approved", reason, &message)
                    .await?;
                tracing::info!(csr = %name, %message, "CSR approved");
                self.events
                    .record(&involved, EventType::Normal, reason, message);
                self.metrics.decided("approved");
                Ok(())
            }
            Decision::Fail { reason, message } => {
                self.add_condition(&current, "Failed", reason, &message)
                    .await?;
                tracing::warn!(csr = %name, %message, "CSR not signed");
                self.events
                    .record(&involved, EventType::Warning, reason, message);
                self.metrics.decided("failed");
                Ok(())
            }
            Decision::Sign { agent_cluster } => {
                if let Some(cluster) = &agent_cluster {
                    self.ensure_confinement(cluster).await?;
                }
                self.sign(&current, &csr).await?;
                tracing::info!(csr = %name, cluster = ?agent_cluster, "CSR signed");
                self.events.record(
                    &involved,
                    EventType::Normal,
                    "Issued",
                    "Signed by the hami cluster CA",
                );
                self.metrics.decided("signed");
                Ok(())
            }
        }
    }

    async fn add_condition(
        &self,
        current: &Stored,
        type_: &str,
        reason: &str,
        message: &str,
    ) -> Result<(), ObjectError> {
        let now = hami_apiserver::meta::now_rfc3339();
        let mut new = current.object.clone();
        let condition = json!({
            "type": type_, "status": "True", "reason": reason, "message": message,
            "lastUpdateTime": now, "lastTransitionTime": now,
        });
        match new
            .pointer_mut("/status/conditions")
            .and_then(Value::as_array_mut)
        {
            Some(conditions) => conditions.push(condition),
            None => new["status"]["conditions"] = json!([condition]),
        }
        let name = text(&current.object, "/metadata/name");
        self.objects
            .write(&self.kinds.csr, None, &name, current, new, |_| {})
            .await
            .map(|_| ())
    }

    async fn sign(&self, current: &Stored, csr: &Csr) -> Result<(), ObjectError> {
        let pem = request_pem(&current.object)
            .ok_or_else(|| ObjectError::Incomplete("spec.request is not base64 PEM".into()))?;
        let requested = current
            .object
            .pointer("/spec/expirationSeconds")
            .and_then(Value::as_u64)
            .map(Duration::from_secs);
        let valid_for = requested.map_or(self.options.signing_duration, |d| {
            d.min(self.options.signing_duration)
        });
        let certificate = self
            .options
            .pki
            .sign_csr(&pem, &csr.usages, valid_for, SystemTime::now())
            .map_err(|e| ObjectError::Incomplete(format!("signing: {e}")))?;
        let mut new = current.object.clone();
        new["status"]["certificate"] =
            json!(base64::engine::general_purpose::STANDARD.encode(certificate));
        let name = text(&current.object, "/metadata/name");
        self.objects
            .write(&self.kinds.csr, None, &name, current, new, |_| {})
            .await
            .map(|_| ())
    }

    /// Creates what confines `cluster`'s agent, when missing (existing
    /// objects are left as they are, as kube's bootstrap policy does).
    async fn ensure_confinement(&self, cluster: &str) -> Result<(), ObjectError> {
        let namespace = hami_api::common::execution_namespace(cluster);
        let rbac = agent_identity_rbac(cluster);
        let k = &self.kinds;
        let wanted = [
            (&k.namespace, None, json!({"metadata": {"name": namespace}})),
            (&k.cluster_role, None, rbac.cluster_role),
            (&k.cluster_role_binding, None, rbac.cluster_role_binding),
            (&k.role_binding, Some(namespace.as_str()), rbac.role_binding),
        ];
        for (kind, ns, mut object) in wanted {
            let name = text(&object, "/metadata/name");
            if self.objects.get(kind, ns, &name)?.is_some() {
                continue;
            }
            object["apiVersion"] = json!(kind.api_version());
            object["kind"] = json!(kind.kind);
            match self.objects.create(kind, ns, object).await {
                Ok(_) => {}
                Err(ObjectError::Api(e))
                    if matches!(*e, hami_apiserver::ApiError::AlreadyExists { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}
