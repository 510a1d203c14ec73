//! CertificateSigningRequest (`certificates.k8s.io/v1`), with kube's registry
//! strategy (`pkg/registry/certificates/certificates/strategy.go`) and the
//! admission checks kube runs on it:
//!
//! * **create** ([`prepare_create`]): `spec.username`, `spec.uid` and
//!   `spec.groups` are the authenticated requester's, whatever the client
//!   sent (`spec.extra` is dropped: hami's users carry no extra); status
//!   starts empty. A request for the `kubernetes.io/kube-apiserver-client`
//!   signer naming the group `system:masters` is refused (kube's
//!   `CertificateSubjectRestriction` admission).
//! * **update** ([`prepare_update`]): the spec never changes after create.
//!   The main resource keeps its status; `/status` may change anything in
//!   status but the Approved and Denied conditions (the old instances are
//!   put back) and may set `status.certificate` once; `/approval` changes
//!   only `status.conditions`. Approved, Denied and Failed are never
//!   removed; Approved and Denied never both ([`validation`]).
//! * **`/approval`** is authorized by RBAC `update` on
//!   `certificatesigningrequests/approval` (the request filter) and, as
//!   kube's `CertificateApproval` admission does, by `approve` on the
//!   resource `signers` of `certificates.k8s.io` named by the signerName or
//!   its domain wildcard `<domain>/*` ([`authorize_approval`]).
//!
//! The requester reaches `prepare_create` through a task-local set around
//! every API request ([`with_requester`]), so a server-side apply that
//! creates a CSR is stamped like a POST. Writes made in process (the
//! controllers) have no requester and leave the fields empty.

pub mod validation;

#[cfg(test)]
mod tests;

use std::future::Future;

use axum::http::{Extensions, Method};
use serde_json::{Map, Value, json};

use super::State;
use super::auth::{self, PolicySnapshot, RequestUid};
use super::dispatch::Ctx;
use super::meta;
use super::objects::{self, UpdateScope};
use super::rbac::{Attributes, UserInfo};
use super::registry::ResourceKind;
use super::status::ApiError;

pub const GROUP: &str = "certificates.k8s.io";
pub const KIND: &str = "CertificateSigningRequest";
pub const PLURAL: &str = "certificatesigningrequests";
/// The subresource that approves or denies.
pub const APPROVAL: &str = "approval";
pub const APPROVED: &str = "Approved";
pub const DENIED: &str = "Denied";
pub const FAILED: &str = "Failed";
/// kube's signer of client certificates for the API server.
pub const KUBE_APISERVER_CLIENT: &str = "kubernetes.io/kube-apiserver-client";
/// The printer column whose cell is kube's CONDITION text
/// ([`condition_text`]) rather than the path's value.
pub const CONDITION_COLUMN: &str = ".status.conditions[*].type";

/// True for the built-in CertificateSigningRequest kind.
pub fn is_csr(kind: &ResourceKind) -> bool {
    !kind.custom && kind.group == GROUP && kind.kind == KIND
}

/// Who sent the request being served.
#[derive(Clone, Debug)]
struct Requester {
    user: UserInfo,
    uid: String,
}

tokio::task_local! {
    static REQUESTER: Option<Requester>;
}

/// Runs `f` (one API request to `path`) with its authenticated user visible
/// to [`prepare_create`]; the user is copied only for requests whose path
/// names CSRs, so no other request pays for it.
pub async fn with_requester<F: Future>(extensions: &Extensions, path: &str, f: F) -> F::Output {
    let requester = path.contains(PLURAL).then(|| Requester {
        user: auth::request_user(extensions),
        uid: extensions
            .get::<RequestUid>()
            .map(|u| u.0.clone())
            .unwrap_or_default(),
    });
    REQUESTER.scope(requester, f).await
}

fn spec_mut(object: &mut Value) -> &mut Map<String, Value> {
    let map = meta::as_map(object);
    let spec = map.entry("spec").or_insert_with(|| json!({}));
    if !spec.is_object() {
        *spec = json!({});
    }
    meta::as_map(spec)
}

/// kube's `PrepareForCreate` and `CertificateSubjectRestriction`.
pub fn prepare_create(object: &mut Value) -> Result<(), ApiError> {
    let requester = REQUESTER.try_with(Clone::clone).ok().flatten();
    let spec = spec_mut(object);
    for field in ["username", "uid", "groups", "extra"] {
        spec.remove(field);
    }
    if let Some(Requester { user, uid }) = requester {
        spec.insert("username".into(), json!(user.name));
        if !uid.is_empty() {
            spec.insert("uid".into(), json!(uid));
        }
        if !user.groups.is_empty() {
            spec.insert("groups".into(), json!(user.groups));
        }
    }
    meta::as_map(object).remove("status");
    let signer = object.pointer("/spec/signerName").and_then(Value::as_str);
    let masters = validation::bytes_field(object, "/spec/request")
        .and_then(|pem| validation::parse_request(&pem).ok())
        .is_some_and(|r| r.organizations.iter().any(|o| o == "system:masters"));
    if signer == Some(KUBE_APISERVER_CLIENT) && masters {
        let name = meta::meta_str(object, "name").unwrap_or_default();
        return Err(ApiError::forbidden(
            format!(
                "{PLURAL}.{GROUP} {name:?} is forbidden: use of {KUBE_APISERVER_CLIENT} signer with system:masters group is not allowed"
            ),
            GROUP,
            PLURAL,
            name,
        ));
    }
    Ok(())
}

/// Object validation (create and main-resource updates).
pub fn validate(object: &Value) -> Vec<super::status::Cause> {
    validation::object(object)
}

/// kube's `populateConditionTimestamps`: a condition without times gets
/// now, or, for its transition, the time of the same type and status before.
fn stamp_conditions(old: &Value, new: &mut Value) {
    let now = meta::now_rfc3339();
    let before: Vec<Value> = old
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let Some(conditions) = new
        .pointer_mut("/status/conditions")
        .and_then(Value::as_array_mut)
    else {
        return;
    };
    for c in conditions.iter_mut().filter(|c| c.is_object()) {
        let unset = |c: &Value, f: &str| c.get(f).and_then(Value::as_str).is_none_or(str::is_empty);
        if unset(c, "lastUpdateTime") {
            c["lastUpdateTime"] = json!(now);
        }
        if unset(c, "lastTransitionTime") {
            let same = before.iter().find(|o| {
                o.get("type") == c.get("type")
                    && o.get("status") == c.get("status")
                    && !unset(o, "lastTransitionTime")
            });
            c["lastTransitionTime"] = same
                .and_then(|o| o.get("lastTransitionTime").cloned())
                .unwrap_or_else(|| json!(now));
        }
    }
}

/// kube's `preserveConditionInstances`: the old instances of `type_` go
/// back in place when the update kept their number (a changed number is
/// refused by validation).
fn preserve_conditions(old: &Value, new: &mut Value, type_: &str) {
    let before: Vec<Value> = validation::of_type(old, type_)
        .into_iter()
        .cloned()
        .collect();
    let Some(conditions) = new
        .pointer_mut("/status/conditions")
        .and_then(Value::as_array_mut)
    else {
        return;
    };
    let slots: Vec<usize> = conditions
        .iter()
        .enumerate()
        .filter(|(_, c)| c.get("type").and_then(Value::as_str) == Some(type_))
        .map(|(i, _)| i)
        .collect();
    if slots.len() == before.len() {
        for (slot, value) in slots.into_iter().zip(before) {
            conditions[slot] = value;
        }
    }
}

/// kube's `PrepareForUpdate` and `ValidateUpdate` of the three strategies
/// (main, `/status`, `/approval`); `new` is the object `objects` built for
/// `scope` (main: the old status; status and approval: the new status).
pub fn prepare_update(old: &Value, new: &mut Value, scope: UpdateScope) -> Result<(), ApiError> {
    match old.get("spec") {
        Some(spec) => new["spec"] = spec.clone(),
        None => {
            meta::as_map(new).remove("spec");
        }
    }
    match scope {
        UpdateScope::Main => {}
        UpdateScope::Status => {
            // Stamped first, so an old instance stored without times goes back as it was.
            stamp_conditions(old, new);
            preserve_conditions(old, new, APPROVED);
            preserve_conditions(old, new, DENIED);
        }
        UpdateScope::Approval => {
            match old.pointer("/status/certificate") {
                Some(cert) => new["status"]["certificate"] = cert.clone(),
                None => {
                    if let Some(status) = new.get_mut("status").and_then(Value::as_object_mut) {
                        status.remove("certificate");
                    }
                }
            }
            stamp_conditions(old, new);
        }
    }
    let mut causes = validation::update(old, new, scope);
    if scope != UpdateScope::Main {
        // The main resource's object rules run with the other kinds' (objects::validate).
        let changed = validation::bytes_field(old, "/status/certificate")
            != validation::bytes_field(new, "/status/certificate");
        causes.extend(validation::object_with(new, changed));
    }
    if causes.is_empty() {
        return Ok(());
    }
    let name = meta::meta_str(new, "name").unwrap_or_default();
    Err(ApiError::invalid(GROUP, KIND, name, causes))
}

/// kube's `IsAuthorizedForSignerName`: `verb` on the signer `signer_name`,
/// or on its domain's wildcard `<domain>/*`.
pub fn may_for_signer(
    policy: &super::rbac::Policy,
    user: &UserInfo,
    verb: &str,
    signer_name: &str,
) -> bool {
    let attrs = |name: String| Attributes::Resource {
        verb: verb.to_owned(),
        api_group: GROUP.to_owned(),
        resource: "signers".to_owned(),
        subresource: None,
        namespace: None,
        name: Some(name),
    };
    let domain = signer_name.split('/').next().unwrap_or_default();
    policy
        .authorize(user, &attrs(signer_name.to_owned()))
        .is_allowed()
        || policy
            .authorize(user, &attrs(format!("{domain}/*")))
            .is_allowed()
}

/// kube's `CertificateApproval` admission for a write to `/approval`: the
/// user may `approve` for the CSR's signer. Reads pass; with
/// authentication off (no policy) everything passes.
pub fn authorize_approval(
    state: &State,
    ctx: &Ctx,
    extensions: &Extensions,
    method: &Method,
) -> Result<(), ApiError> {
    if !matches!(*method, Method::PUT | Method::PATCH) {
        return Ok(());
    }
    let Some(PolicySnapshot(policy)) = extensions.get::<PolicySnapshot>() else {
        return Ok(());
    };
    let name = ctx.path.name.as_deref().unwrap_or_default();
    let current = objects::get(state, &ctx.path.kind, None, name)?;
    let signer = current
        .object
        .pointer("/spec/signerName")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let user = auth::request_user(extensions);
    if may_for_signer(policy, &user, "approve", signer) {
        return Ok(());
    }
    Err(ApiError::forbidden(
        format!(
            "{PLURAL}.{GROUP} {name:?} is forbidden: user not permitted to approve requests with signerName {signer:?}"
        ),
        GROUP,
        PLURAL,
        name,
    ))
}

/// kube's CONDITION column: Denied, Approved or Pending, then `,Failed`
/// and `,Issued` when they hold.
pub fn condition_text(csr: &Value) -> String {
    let has = |t: &str| !validation::of_type(csr, t).is_empty();
    let mut text = if has(DENIED) {
        DENIED.to_owned()
    } else if has(APPROVED) {
        APPROVED.to_owned()
    } else {
        "Pending".to_owned()
    };
    if has(FAILED) {
        text.push_str(",Failed");
    }
    if validation::bytes_field(csr, "/status/certificate").is_some() {
        text.push_str(",Issued");
    }
    text
}
