//! Wire messages to pure shapes, validated at the edge: anything malformed
//! becomes a [`ConvertError`] that the service answers with InvalidArgument.

use std::collections::BTreeMap;

use hami_proto::github::com::karmada_io::karmada::pkg::estimator::pb;
use hami_proto::k8s::io::api::core::v1 as corepb;

use crate::claim::{NodeClaim, Requirement, Term, Toleration};
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

/// Karmada's node claim to ours.
pub fn claim(c: Option<&pb::NodeClaim>) -> Result<NodeClaim, ShapeError> {
    let Some(c) = c else {
        return Ok(NodeClaim::default());
    };
    let affinity = c
        .node_affinity
        .as_ref()
        .map(|sel| {
            sel.node_selector_terms
                .iter()
                .map(|t| Term::convert(&t.match_expressions, &t.match_fields, requirement))
                .collect::<Result<Vec<_>, ShapeError>>()
        })
        .transpose()?;
    Ok(NodeClaim {
        node_selector: c
            .node_selector
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        affinity,
        tolerations: c
            .tolerations
            .iter()
            .map(toleration)
            .collect::<Result<_, _>>()?,
    })
}

/// Karmada's replica requirements (plus workload annotations) to a shape.
pub fn shape(
    r: Option<&pb::ReplicaRequirements>,
    annotations: &BTreeMap<String, String>,
) -> Result<ReplicaShape, ConvertError> {
    let r = r.ok_or(ConvertError::MissingRequirements)?;
    let claim = claim(r.node_claim.as_ref())?;
    let mut list: Vec<(&str, &str)> = r
        .resource_request
        .iter()
        .map(|(k, v)| (k.as_str(), v.string.as_deref().unwrap_or("")))
        .collect();
    list.sort_unstable();
    Ok(ReplicaShape::from_resource_list(list, claim, annotations)?)
}
