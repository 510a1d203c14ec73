//! Rules for Cluster: a name that fits an execution namespace, a usable
//! endpoint and secret reference, and well-formed taints.

use std::collections::BTreeSet;

use super::FieldError;
use super::names::is_dns1123_label;
use super::selector::taint;
use crate::cluster::Cluster;
use crate::common::EXECUTION_NAMESPACE_PREFIX;

/// Longest cluster name whose execution namespace is still a DNS-1123 label.
pub const MAX_CLUSTER_NAME_LEN: usize = 63 - EXECUTION_NAMESPACE_PREFIX.len();

/// Checks a Cluster: `metadata.name` (when set) and `spec`.
pub fn validate_cluster(c: &Cluster) -> Vec<FieldError> {
    let mut errs = Vec::new();
    if let Some(name) = c.metadata.name.as_deref()
        && (!is_dns1123_label(name) || name.len() > MAX_CLUSTER_NAME_LEN)
    {
        errs.push(FieldError::invalid(
            "metadata.name",
            format!(
                "{name:?}: a cluster name must be a DNS-1123 label of at most \
                 {MAX_CLUSTER_NAME_LEN} characters (it names namespace {EXECUTION_NAMESPACE_PREFIX}<name>)"
            ),
        ));
    }
    let spec = &c.spec;
    if let Some(ep) = spec.api_endpoint.as_deref() {
        let host = ep
            .strip_prefix("https://")
            .or_else(|| ep.strip_prefix("http://"))
            .unwrap_or_default();
        if host.is_empty() || host.starts_with('/') || host.chars().any(char::is_whitespace) {
            errs.push(FieldError::invalid(
                "spec.apiEndpoint",
                format!("{ep:?}: must be an http(s) URL with a host"),
            ));
        }
    }
    if let Some(s) = &spec.secret_ref {
        if s.namespace.is_empty() {
            errs.push(FieldError::required(
                "spec.secretRef.namespace",
                "Required value",
            ));
        }
        if s.name.is_empty() {
            errs.push(FieldError::required(
                "spec.secretRef.name",
                "Required value",
            ));
        }
    }
    let mut zones = BTreeSet::new();
    for (i, z) in spec.zones.iter().enumerate() {
        if z.is_empty() {
            errs.push(FieldError::required(
                format!("spec.zones[{i}]"),
                "zone must not be empty",
            ));
        } else if !zones.insert(z.as_str()) {
            errs.push(FieldError::duplicate(format!("spec.zones[{i}]"), z));
        }
    }
    let mut taints = BTreeSet::new();
    for (i, t) in spec.taints.iter().enumerate() {
        let p = format!("spec.taints[{i}]");
        taint(t, &p, &mut errs);
        if !taints.insert((t.key.as_str(), t.effect.as_str())) {
            errs.push(FieldError::duplicate(p, &format!("{}:{}", t.key, t.effect)));
        }
    }
    errs
}
