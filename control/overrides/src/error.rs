//! Errors of override application. Each names the policy, the rule, the
//! overrider and the JSON pointer that failed, so the binding controller can
//! report it on the binding as it stands.

use std::fmt;

use crate::image::ImageError;

/// Which overrider list of a rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Overrider {
    Plaintext,
    Image,
    Command,
    Args,
    Labels,
    Annotations,
}

impl fmt::Display for Overrider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Overrider::Plaintext => "plaintext",
            Overrider::Image => "imageOverrider",
            Overrider::Command => "commandOverrider",
            Overrider::Args => "argsOverrider",
            Overrider::Labels => "labelsOverrider",
            Overrider::Annotations => "annotationsOverrider",
        })
    }
}

/// Why one overrider could not be applied.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Cause {
    #[error("no such field")]
    NotFound,
    #[error("expected {0}")]
    WrongType(&'static str),
    #[error("image {image:?}: {error}")]
    Image { image: Box<str>, error: ImageError },
    #[error("{0} needs a value")]
    MissingValue(&'static str),
    #[error("invalid JSON patch operation: {0}")]
    BadOperation(String),
    #[error(
        "JSON patch failed: {0} (a replace or remove needs an existing field, an add an existing parent)"
    )]
    Patch(String),
    #[error("the result is no longer a JSON object")]
    NotObject,
}

/// One overrider of one rule failed; nothing of the manifest is returned.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{policy}: overrideRules[{rule}].overriders.{overrider}[{index}] at {path:?}: {cause}")]
pub struct OverrideError {
    /// `ClusterOverridePolicy/name` or `OverridePolicy/namespace/name`.
    pub policy: String,
    /// Index in `overrideRules`.
    pub rule: usize,
    pub overrider: Overrider,
    /// Index in the overrider list.
    pub index: usize,
    /// JSON pointer into the manifest.
    pub path: String,
    pub cause: Cause,
}

/// An overrider failure before the policy and rule are known.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Failure {
    pub overrider: Overrider,
    pub index: usize,
    pub path: String,
    pub cause: Cause,
}
