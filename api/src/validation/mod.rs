//! Validation of hami objects as pure functions. Every check runs and every
//! problem is returned with the path of the field it concerns, in the style of
//! Kubernetes' `field.ErrorList`.

mod cluster;
mod decode;
mod names;
mod policy;
mod quota;
mod selector;
mod work;

use std::fmt;

use serde::Serialize;

pub use cluster::validate_cluster;
pub use decode::{decode, validate};
pub use names::{is_dns1123_label, is_dns1123_subdomain, is_label_value, is_qualified_name};
pub use policy::{
    validate_cluster_affinity, validate_override_spec, validate_placement,
    validate_propagation_spec,
};
pub use quota::validate_quota_spec;
pub use selector::{validate_field_selector, validate_label_selector};
pub use work::{validate_binding_spec, validate_work_spec};

/// Kind of a field error, mirroring Kubernetes' `field.ErrorType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum FieldErrorKind {
    /// A required field is missing or empty.
    Required,
    /// A value is malformed or out of range.
    Invalid,
    /// A value is not one of the allowed values.
    NotSupported,
    /// A value appears twice where it must be unique.
    Duplicate,
}

impl FieldErrorKind {
    /// The `reason` Kubernetes puts in a `Status` cause for this kind.
    pub fn reason(self) -> &'static str {
        match self {
            Self::Required => "FieldValueRequired",
            Self::Invalid => "FieldValueInvalid",
            Self::NotSupported => "FieldValueNotSupported",
            Self::Duplicate => "FieldValueDuplicate",
        }
    }
}

/// One problem with one field of an object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
pub struct FieldError {
    /// Path of the field, e.g. `spec.placement.spreadConstraints[0].minGroups`.
    pub field: String,
    /// What kind of problem.
    pub kind: FieldErrorKind,
    /// What is wrong, for a person.
    pub message: String,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

impl FieldError {
    /// A Required error.
    pub fn required(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(field, FieldErrorKind::Required, message)
    }
    /// An Invalid error.
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(field, FieldErrorKind::Invalid, message)
    }
    /// A NotSupported error listing the supported values.
    pub fn not_supported(field: impl Into<String>, value: &str, supported: &[&str]) -> Self {
        let list = supported
            .iter()
            .map(|s| format!("{s:?}"))
            .collect::<Vec<_>>()
            .join(", ");
        Self::new(
            field,
            FieldErrorKind::NotSupported,
            format!("unsupported value {value:?}: supported values: {list}"),
        )
    }
    /// A Duplicate error.
    pub fn duplicate(field: impl Into<String>, value: &str) -> Self {
        Self::new(
            field,
            FieldErrorKind::Duplicate,
            format!("duplicate value {value:?}"),
        )
    }
    fn new(field: impl Into<String>, kind: FieldErrorKind, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            kind,
            message: message.into(),
        }
    }
}

/// Turns a list of errors into a result.
pub(crate) fn into_result(errors: Vec<FieldError>) -> Result<(), Vec<FieldError>> {
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}
