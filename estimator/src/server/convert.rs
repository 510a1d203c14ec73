//! Wire messages to pure shapes, validated at the edge: anything malformed
//! becomes a [`ConvertError`] that the service answers with InvalidArgument.

use std::collections::{BTreeMap, HashMap};

use hami_proto::github::com::karmada_io::karmada::pkg::estimator::pb;
use hami_proto::k8s::io::api::core::v1 as corepb;
use hami_proto::k8s::io::apimachinery::pkg::api::resource::Quantity;
use prost::Message;

use crate::claim::{NodeClaim, Requirement, Term, Toleration};
use crate::model::ResourceError;
use crate::shape::{ReplicaShape, ShapeError};

/// Why a request cannot be answered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConvertError {
    /// No cluster name.
    #[error("cluster is required")]
    MissingCluster,
    /// A different cluster's name.
    #[error("this estimator serves cluster {serves:?}, not {asked:?}")]
    WrongCluster {
        /// Served cluster.
        serves: String,
        /// Asked cluster.
        asked: String,
    },
    /// No replica requirements.
    #[error("replicaRequirements is required")]
    MissingRequirements,
    /// No resource reference.
    #[error("resource is required")]
    MissingResource,
    /// Bad shape.
    #[error("replicaRequirements: {0}")]
    Shape(#[from] ShapeError),
    /// A field that cannot be read, named by its path in the request.
    #[error("{field}: {reason}")]
    Field {
        /// e.g. `components[1].replicaRequirements.resourceRequestBytes[cpu]`.
        field: String,
        /// What is wrong.
        reason: String,
    },
    /// A multi-component request without components.
    #[error("components is required")]
    MissingComponents,
    /// Negative threshold.
    #[error("unschedulableThreshold must not be negative")]
    NegativeThreshold,
}

/// Checks the cluster name.
pub fn check_cluster(serves: &str, asked: Option<&str>) -> Result<(), ConvertError> {
    match asked {
        None | Some("") => Err(ConvertError::MissingCluster),
        Some(a) if a != serves => Err(ConvertError::WrongCluster {
            serves: serves.into(),
            asked: a.into(),
        }),
        Some(_) => Ok(()),
    }
}

fn requirement(r: &corepb::NodeSelectorRequirement) -> Result<Requirement, ShapeError> {
    Requirement::from_fields(
        r.key.as_deref().unwrap_or_default(),
        r.operator.as_deref().unwrap_or(""),
        r.values.clone(),
    )
}

fn toleration(t: &corepb::Toleration) -> Result<Toleration, ShapeError> {
    Toleration::from_fields(
        t.key.as_deref(),
        t.operator.as_deref(),
        t.value.as_deref(),
        t.effect.as_deref(),
    )
}

fn field_error(field: String, reason: impl ToString) -> ConvertError {
    ConvertError::Field {
        field,
        reason: reason.to_string(),
    }
}

/// A resource name as Kubernetes accepts one: an optional DNS-subdomain
/// prefix and `/`, then a name of letters, digits, `-`, `_` and `.` that
/// starts and ends with a letter or digit, at most 63 characters.
fn valid_resource_name(name: &str) -> bool {
    let (prefix, local) = match name.rsplit_once('/') {
        Some((p, l)) => (Some(p), l),
        None => (None, name),
    };
    let alnum = |c: char| c.is_ascii_alphanumeric();
    let local_ok = !local.is_empty()
        && local.len() <= 63
        && local.starts_with(alnum)
        && local.ends_with(alnum)
        && local
            .chars()
            .all(|c| alnum(c) || matches!(c, '-' | '_' | '.'));
    let prefix_ok = prefix.is_none_or(|p| {
        !p.is_empty()
            && p.len() <= 253
            && p.split('.').all(|l| {
                !l.is_empty()
                    && l.starts_with(alnum)
                    && l.ends_with(alnum)
                    && l.chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            })
    });
    local_ok && prefix_ok
}

/// A node claim in any supported encoding; the bytes fields (Karmada v1.18+)
/// win over the embedded messages (up to v1.18) when both are present.
pub fn claim_at(c: Option<&pb::NodeClaim>, path: &str) -> Result<NodeClaim, ConvertError> {
    let Some(c) = c else {
        return Ok(NodeClaim::default());
    };
    let decoded_affinity;
    let affinity_source = match c.node_affinity_bytes.as_deref() {
        Some(b) if !b.is_empty() => {
            decoded_affinity = corepb::NodeSelector::decode(b).map_err(|e| {
                field_error(
                    format!("{path}.nodeAffinityBytes"),
                    format!("not a serialized NodeSelector: {e}"),
                )
            })?;
            Some(&decoded_affinity)
        }
        _ => c.node_affinity.as_ref(),
    };
    let decoded_tolerations;
    let tolerations: &[corepb::Toleration] = if c.tolerations_bytes.is_empty() {
        &c.tolerations
    } else {
        decoded_tolerations = c
            .tolerations_bytes
            .iter()
            .enumerate()
            .map(|(i, b)| {
                corepb::Toleration::decode(b.as_slice()).map_err(|e| {
                    field_error(
                        format!("{path}.tolerationsBytes[{i}]"),
                        format!("not a serialized Toleration: {e}"),
                    )
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        &decoded_tolerations
    };
    let affinity = affinity_source
        .map(|sel| {
            sel.node_selector_terms
                .iter()
                .map(|t| Term::convert(&t.match_expressions, &t.match_fields, requirement))
                .collect::<Result<Vec<_>, ShapeError>>()
        })
        .transpose()
        .map_err(|e| field_error(format!("{path}.nodeAffinity"), e))?;
    Ok(NodeClaim {
        node_selector: c
            .node_selector
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        affinity,
        tolerations: tolerations
            .iter()
            .map(toleration)
            .collect::<Result<_, _>>()
            .map_err(|e| field_error(format!("{path}.tolerations"), e))?,
    })
}

/// Karmada's node claim to ours.
pub fn claim(c: Option<&pb::NodeClaim>) -> Result<NodeClaim, ConvertError> {
    claim_at(c, "replicaRequirements.nodeClaim")
}

/// The fields of Karmada's two requirement messages that make a shape.
pub struct Requirements<'a> {
    pub node_claim: Option<&'a pb::NodeClaim>,
    pub resource_request: &'a HashMap<String, Quantity>,
    pub resource_request_bytes: &'a HashMap<String, Vec<u8>>,
}

impl<'a> From<&'a pb::ReplicaRequirements> for Requirements<'a> {
    fn from(r: &'a pb::ReplicaRequirements) -> Self {
        Self {
            node_claim: r.node_claim.as_ref(),
            resource_request: &r.resource_request,
            resource_request_bytes: &r.resource_request_bytes,
        }
    }
}

impl<'a> From<&'a pb::ComponentReplicaRequirements> for Requirements<'a> {
    fn from(r: &'a pb::ComponentReplicaRequirements) -> Self {
        Self {
            node_claim: r.node_claim.as_ref(),
            resource_request: &r.resource_request,
            resource_request_bytes: &r.resource_request_bytes,
        }
    }
}

/// A shape from requirements in any supported encoding; `path` names the
/// requirements in errors (`replicaRequirements`,
/// `components[0].replicaRequirements`).
pub fn shape_at(
    r: Requirements<'_>,
    annotations: &BTreeMap<String, String>,
    path: &str,
) -> Result<ReplicaShape, ConvertError> {
    let claim = claim_at(r.node_claim, &format!("{path}.nodeClaim"))?;
    // resourceRequestBytes (v1.18+) wins over resourceRequest when present.
    let (field, list): (&str, Vec<(String, String)>) = if r.resource_request_bytes.is_empty() {
        (
            "resourceRequest",
            r.resource_request
                .iter()
                .map(|(k, v)| (k.clone(), v.string.clone().unwrap_or_default()))
                .collect(),
        )
    } else {
        let list = r
            .resource_request_bytes
            .iter()
            .map(|(k, b)| {
                let q = Quantity::decode(b.as_slice()).map_err(|e| {
                    field_error(
                        format!("{path}.resourceRequestBytes[{k}]"),
                        format!("not a serialized Quantity: {e}"),
                    )
                })?;
                Ok((k.clone(), q.string.unwrap_or_default()))
            })
            .collect::<Result<Vec<_>, ConvertError>>()?;
        ("resourceRequestBytes", list)
    };
    let mut list = list;
    list.sort_unstable();
    if let Some((name, _)) = list.iter().find(|(name, _)| !valid_resource_name(name)) {
        return Err(field_error(
            format!("{path}.{field}[{name}]"),
            "not a valid resource name",
        ));
    }
    ReplicaShape::from_resource_list(
        list.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        claim,
        annotations,
    )
    .map_err(|e| match &e {
        // A quantity's error names its resource: point at that entry.
        ShapeError::Resource(
            ResourceError::Quantity { name, .. } | ResourceError::Gpu { name, .. },
        ) => field_error(format!("{path}.{field}[{name}]"), e),
        _ => field_error(path.to_owned(), e),
    })
}

/// Karmada's replica requirements (plus workload annotations) to a shape.
pub fn shape(
    r: Option<&pb::ReplicaRequirements>,
    annotations: &BTreeMap<String, String>,
) -> Result<ReplicaShape, ConvertError> {
    let r = r.ok_or(ConvertError::MissingRequirements)?;
    shape_at(r.into(), annotations, "replicaRequirements")
}

/// One component: its shape and replicas per set. A component without
/// requirements is a pod that asks for nothing but its slot.
pub fn component(
    c: &pb::Component,
    annotations: &BTreeMap<String, String>,
    path: &str,
) -> Result<(ReplicaShape, u64), ConvertError> {
    let replicas = u64::try_from(c.replicas.unwrap_or(0))
        .map_err(|_| field_error(format!("{path}.replicas"), "must not be negative"))?;
    let shape = match &c.replica_requirements {
        Some(r) => shape_at(
            r.into(),
            annotations,
            &format!("{path}.replicaRequirements"),
        )?,
        None => ReplicaShape::default(),
    };
    Ok((shape, replicas))
}

/// Components of a set, in request order.
pub fn components(
    list: &[pb::Component],
    annotations: &BTreeMap<String, String>,
    path: &str,
) -> Result<Vec<(ReplicaShape, u64)>, ConvertError> {
    list.iter()
        .enumerate()
        .map(|(i, c)| component(c, annotations, &format!("{path}[{i}]")))
        .collect()
}

/// Every component replica of the assumed workloads, in request order.
pub fn assumed(list: &[pb::AssumedWorkload]) -> Result<Vec<(ReplicaShape, u64)>, ConvertError> {
    let mut out = Vec::new();
    for (i, w) in list.iter().enumerate() {
        out.extend(components(
            &w.components,
            &BTreeMap::new(),
            &format!("assumedWorkloads[{i}].components"),
        )?);
    }
    Ok(out)
}
