//! What to do with one CertificateSigningRequest: the approver's rules
//! (kube-controller-manager's `csrapproving`, `sarapprove.go`, recast for
//! agents) and the signer's (`csrsigning` for
//! `kubernetes.io/kube-apiserver-client`). Pure: the caller reads the CSR,
//! whether the named cluster already has an agent identity, and writes
//! what [`decide`] answers in one write.
//!
//! * kube auto-approves a kubelet's first client certificate when the
//!   requester may `create` `certificatesigningrequests/nodeclient`
//!   (bootstrap tokens), and its renewals when the requester is the node
//!   itself (`selfnodeclient`), after checking the request is exactly a
//!   node client certificate (`isNodeClientCert`: O `system:nodes`, CN
//!   `system:node:<name>`, no SANs, client usages). Here: O exactly
//!   `system:hami:agents`, CN `system:hami:agent:<cluster>`, no SANs,
//!   usages within digital signature, key encipherment, client auth (with
//!   client auth); the first certificate is approved for a bootstrap token
//!   (`system:bootstrap:<id>`) made for that cluster (its group
//!   `system:bootstrappers:hami:cluster:<cluster>`) while the cluster has
//!   no agent identity yet, else left to an administrator; renewals are
//!   approved for the agent of the same cluster. Nothing else is approved
//!   (and nothing is denied: an administrator decides with kubectl).
//! * kube's signer signs every Approved, not Denied, not Failed request of
//!   its signer once, after checking the usages (`Failed` with
//!   `SignerValidationFailure` when they do not fit a client certificate).

use hami_apiserver::rbac::{AGENT_USER_PREFIX, AGENTS_GROUP};

use crate::pki::CsrSubject;

/// The signer hami signs for.
pub const SIGNER: &str = "kubernetes.io/kube-apiserver-client";
/// A bootstrap token's user is this and the token's id.
pub const BOOTSTRAP_USER_PREFIX: &str = "system:bootstrap:";
/// The extra group of a token `hami token create --cluster <X>` makes.
pub const CLUSTER_GROUP_PREFIX: &str = "system:bootstrappers:hami:cluster:";
pub const REASON_AUTO_APPROVED: &str = "AutoApproved";
pub const REASON_SIGNER_FAILURE: &str = "SignerValidationFailure";
/// What a client certificate may be used for (kube's csrsigning).
const CLIENT_USAGES: [&str; 3] = ["digital signature", "key encipherment", "client auth"];

/// What the decision reads of a CSR.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Csr {
    pub signer_name: String,
    /// `spec.username` and `spec.groups`: the requester, set by the server.
    pub username: String,
    pub groups: Vec<String>,
    pub usages: Vec<String>,
    pub approved: bool,
    pub denied: bool,
    pub failed: bool,
    pub issued: bool,
    /// The request's subject, or why it cannot be read.
    pub subject: Result<CsrSubject, String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Add the Approved condition.
    Approve {
        reason: &'static str,
        message: String,
    },
    /// A request an administrator must judge (logged, and an Event).
    LeaveForAdmin {
        why: String,
    },
    /// Sign it; for an agent's certificate, first make sure the cluster's
    /// confinement exists.
    Sign {
        agent_cluster: Option<String>,
    },
    /// Add the Failed condition: approved, but not signable.
    Fail {
        reason: &'static str,
        message: String,
    },
    Nothing,
}

/// The cluster a CN names, when it is an agent's (`system:hami:agent:<X>`
/// with `X` a name `hami-es-<X>` can hold).
pub fn agent_cluster(common_name: &str) -> Option<&str> {
    let cluster = common_name.strip_prefix(AGENT_USER_PREFIX)?;
    let ok = !cluster.is_empty()
        && cluster.len() <= 63 - "hami-es-".len()
        && cluster
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !cluster.starts_with('-')
        && !cluster.ends_with('-');
    ok.then_some(cluster)
}

/// The usage that keeps `usages` from being a client certificate's, if any.
fn bad_usage(usages: &[String]) -> Option<String> {
    if let Some(bad) = usages.iter().find(|u| !CLIENT_USAGES.contains(&u.as_str())) {
        return Some(format!("invalid usage for client certificate: {bad}"));
    }
    if !usages.iter().any(|u| u == "client auth") {
        return Some("missing required usage for client certificate: client auth".to_owned());
    }
    None
}

/// The cluster whose agent certificate this exactly is (kube's
/// `isNodeClientCert` for agents), or why it is not one.
fn agent_request(csr: &Csr) -> Result<&str, String> {
    let subject = csr.subject.as_ref().map_err(Clone::clone)?;
    let cluster = agent_cluster(&subject.common_name)
        .ok_or_else(|| format!("CN {:?} is not an agent's", subject.common_name))?;
    if subject.organizations != [AGENTS_GROUP] {
        return Err(format!("O must be exactly {AGENTS_GROUP}"));
    }
    if subject.has_sans {
        return Err("an agent certificate has no subject alternative names".to_owned());
    }
    if let Some(why) = bad_usage(&csr.usages) {
        return Err(why);
    }
    Ok(cluster)
}

/// The decision for `csr`; `has_identity(X)` says whether cluster `X`'s
/// agent already has an identity (its ClusterRole `system:hami:agent:<X>`).
pub fn decide(csr: &Csr, has_identity: &dyn Fn(&str) -> bool) -> Decision {
    if csr.signer_name != SIGNER || csr.denied || csr.failed || csr.issued {
        return Decision::Nothing;
    }
    if csr.approved {
        if let Some(message) = bad_usage(&csr.usages) {
            return Decision::Fail {
                reason: REASON_SIGNER_FAILURE,
                message,
            };
        }
        return match &csr.subject {
            Err(why) => Decision::Fail {
                reason: REASON_SIGNER_FAILURE,
                message: why.clone(),
            },
            Ok(s) if s.common_name.is_empty() => Decision::Fail {
                reason: REASON_SIGNER_FAILURE,
                message: "the subject has no common name".to_owned(),
            },
            Ok(s) => Decision::Sign {
                agent_cluster: agent_cluster(&s.common_name).map(str::to_owned),
            },
        };
    }
    let Ok(cluster) = agent_request(csr) else {
        return Decision::Nothing;
    };
    if csr.username == format!("{AGENT_USER_PREFIX}{cluster}") {
        return Decision::Approve {
            reason: REASON_AUTO_APPROVED,
            message: format!(
                "Auto approving the renewal of the agent client certificate of cluster {cluster}"
            ),
        };
    }
    let token_for_cluster = csr.username.starts_with(BOOTSTRAP_USER_PREFIX)
        && csr
            .groups
            .iter()
            .any(|g| g.strip_prefix(CLUSTER_GROUP_PREFIX) == Some(cluster));
    if !token_for_cluster {
        return Decision::Nothing;
    }
    if has_identity(cluster) {
        return Decision::LeaveForAdmin {
            why: format!(
                "cluster {cluster} already has an agent identity: a second one needs an administrator (kubectl certificate approve)"
            ),
        };
    }
    Decision::Approve {
        reason: REASON_AUTO_APPROVED,
        message: format!(
            "Auto approving the agent client certificate of cluster {cluster} after bootstrap token validation"
        ),
    }
}
