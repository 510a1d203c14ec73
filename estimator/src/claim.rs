//! A replica's node claim: node selector, required node affinity and
//! tolerations, evaluated against a node's labels and taints the way the
//! Kubernetes scheduler does (`NodeAffinity` and `TaintToleration` filters).

use std::collections::BTreeMap;

use crate::model::{Taint, TaintEffect};
use crate::shape::ShapeError;

/// A node selector requirement operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operator {
    /// Label value is one of the values.
    In,
    /// Label is absent or its value is none of the values.
    NotIn,
    /// Label is present.
    Exists,
    /// Label is absent.
    DoesNotExist,
    /// Label value, read as an integer, is greater than the single value.
    Gt,
    /// Label value, read as an integer, is less than the single value.
    Lt,
}

impl Operator {
    /// Parses Kubernetes' spelling.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "In" => Some(Self::In),
            "NotIn" => Some(Self::NotIn),
            "Exists" => Some(Self::Exists),
            "DoesNotExist" => Some(Self::DoesNotExist),
            "Gt" => Some(Self::Gt),
            "Lt" => Some(Self::Lt),
            _ => None,
        }
    }
}

/// One requirement of a node selector term.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Requirement {
    /// Label key (or, in `match_fields`, the field name `metadata.name`).
    pub key: String,
    /// Operator.
    pub operator: Operator,
    /// Values.
    pub values: Vec<String>,
}

impl Requirement {
    /// A requirement from its API fields; an unknown operator is an error.
    pub fn from_fields(key: &str, operator: &str, values: Vec<String>) -> Result<Self, ShapeError> {
        let operator = Operator::parse(operator)
            .ok_or_else(|| ShapeError::Claim(format!("unknown operator {operator:?}")))?;
        Ok(Self {
            key: key.to_string(),
            operator,
            values,
        })
    }

    fn matches(&self, value: Option<&str>) -> bool {
        match self.operator {
            Operator::In => value.is_some_and(|v| self.values.iter().any(|x| x == v)),
            Operator::NotIn => !value.is_some_and(|v| self.values.iter().any(|x| x == v)),
            Operator::Exists => value.is_some(),
            Operator::DoesNotExist => value.is_none(),
            Operator::Gt | Operator::Lt => {
                let (Some(v), [bound]) = (value, self.values.as_slice()) else {
                    return false;
                };
                let (Ok(v), Ok(bound)) = (v.parse::<i64>(), bound.parse::<i64>()) else {
                    return false;
                };
                if self.operator == Operator::Gt {
                    v > bound
                } else {
                    v < bound
                }
            }
        }
    }
}

/// A node selector term: all its requirements must hold. A term with no
/// requirement matches no node (as in Kubernetes).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct Term {
    /// Requirements on labels.
    pub match_expressions: Vec<Requirement>,
    /// Requirements on fields; Kubernetes supports only `metadata.name`.
    pub match_fields: Vec<Requirement>,
}

impl Term {
    /// A term from its API requirements, each converted with `requirement`.
    pub fn convert<'r, R: 'r>(
        match_expressions: impl IntoIterator<Item = &'r R>,
        match_fields: impl IntoIterator<Item = &'r R>,
        requirement: impl Fn(&R) -> Result<Requirement, ShapeError>,
    ) -> Result<Self, ShapeError> {
        Ok(Self {
            match_expressions: match_expressions
                .into_iter()
                .map(&requirement)
                .collect::<Result<_, _>>()?,
            match_fields: match_fields
                .into_iter()
                .map(&requirement)
                .collect::<Result<_, _>>()?,
        })
    }
}

/// A toleration operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum TolerationOperator {
    /// Key and value must be equal.
    #[default]
    Equal,
    /// Key must match (any value); an empty key matches every taint.
    Exists,
}

/// A pod toleration.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct Toleration {
    /// Key; empty with `Exists` tolerates everything.
    pub key: String,
    /// Operator.
    pub operator: TolerationOperator,
    /// Value (for `Equal`).
    pub value: String,
    /// Effect; `None` tolerates every effect.
    pub effect: Option<TaintEffect>,
}

impl Toleration {
    /// A toleration from its API fields (an absent string reads as empty):
    /// the operator is `Equal` or `Exists`, the effect a known taint effect.
    pub fn from_fields(
        key: Option<&str>,
        operator: Option<&str>,
        value: Option<&str>,
        effect: Option<&str>,
    ) -> Result<Self, ShapeError> {
        let operator = match operator {
            None | Some("") | Some("Equal") => TolerationOperator::Equal,
            Some("Exists") => TolerationOperator::Exists,
            Some(o) => {
                return Err(ShapeError::Claim(format!(
                    "unknown toleration operator {o:?}"
                )));
            }
        };
        let effect = match effect {
            None | Some("") => None,
            Some(e) => Some(
                TaintEffect::parse(e)
                    .ok_or_else(|| ShapeError::Claim(format!("unknown taint effect {e:?}")))?,
            ),
        };
        Ok(Self {
            key: key.unwrap_or_default().to_string(),
            operator,
            value: value.unwrap_or_default().to_string(),
            effect,
        })
    }

    /// Whether this toleration tolerates the taint.
    pub fn tolerates(&self, taint: &Taint) -> bool {
        if self.effect.is_some_and(|e| e != taint.effect) {
            return false;
        }
        if self.key.is_empty() {
            return self.operator == TolerationOperator::Exists;
        }
        if self.key != taint.key {
            return false;
        }
        match self.operator {
            TolerationOperator::Exists => true,
            TolerationOperator::Equal => self.value == taint.value,
        }
    }
}

/// Where a replica may run.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct NodeClaim {
    /// Labels the node must carry.
    pub node_selector: BTreeMap<String, String>,
    /// Required node affinity: any term must match. `None` means no constraint.
    pub affinity: Option<Vec<Term>>,
    /// Tolerations.
    pub tolerations: Vec<Toleration>,
}

impl NodeClaim {
    /// Whether any affinity term reads node fields (then the answer depends
    /// on the node name and cannot be shared between nodes).
    pub fn uses_fields(&self) -> bool {
        self.affinity
            .as_ref()
            .is_some_and(|t| t.iter().any(|t| !t.match_fields.is_empty()))
    }

    /// Whether a node with these name, labels and taints passes the claim.
    pub fn matches(&self, name: &str, labels: &BTreeMap<String, String>, taints: &[Taint]) -> bool {
        self.selector_matches(labels)
            && self.affinity_matches(name, labels)
            && self.tolerates(taints)
    }

    /// The `nodeSelector` part.
    pub fn selector_matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.node_selector
            .iter()
            .all(|(k, v)| labels.get(k).is_some_and(|l| l == v))
    }

    /// The required-affinity part.
    pub fn affinity_matches(&self, name: &str, labels: &BTreeMap<String, String>) -> bool {
        let Some(terms) = &self.affinity else {
            return true;
        };
        terms.iter().any(|t| {
            (!t.match_expressions.is_empty() || !t.match_fields.is_empty())
                && t.match_expressions
                    .iter()
                    .all(|r| r.matches(labels.get(&r.key).map(String::as_str)))
                && t.match_fields.iter().all(|r| {
                    let v = (r.key == "metadata.name").then_some(name);
                    r.matches(v)
                })
        })
    }

    /// The taint part: every NoSchedule and NoExecute taint must be
    /// tolerated; PreferNoSchedule is ignored.
    pub fn tolerates(&self, taints: &[Taint]) -> bool {
        taints
            .iter()
            .filter(|t| t.effect != TaintEffect::PreferNoSchedule)
            .all(|t| self.tolerations.iter().any(|tol| tol.tolerates(t)))
    }
}
