//! hami's override engine: which OverridePolicy and ClusterOverridePolicy
//! rules apply to a resource for a member cluster, and the manifest they
//! produce. Pure: no IO, no clocks, no map-order dependence.
//!
//! The binding controller calls, per binding:
//!
//! 1. [`applicable_policies`] once with the template and every override
//!    policy (as [`PolicyRef`]s), which keeps those whose resource selectors
//!    take the template, in Karmada's order: cluster-scoped before
//!    namespaced, less specific before more specific, then by name;
//! 2. [`apply_overrides`] per target cluster with the manifest (the template
//!    with that cluster's replicas), which applies every rule whose
//!    `targetCluster` takes the cluster and returns the new manifest and the
//!    policies applied, recorded on the Work under
//!    [`APPLIED_OVERRIDES_ANNOTATION`] with [`applied_annotation`].
//!
//! Modules: [`select`] (policy selection and order), [`apply`] (rules and
//! cluster targeting), [`image`] (image references), [`workload`] (image,
//! command and args overriders), [`meta`] (labels and annotations),
//! [`plaintext`] (JSON patch), [`error`].

pub mod apply;
pub mod error;
pub mod image;
pub mod meta;
pub mod plaintext;
pub mod select;
pub mod workload;

pub use apply::{
    APPLIED_OVERRIDES_ANNOTATION, AppliedOverride, applied_annotation, apply_overrides,
    apply_overrides_to, targets,
};
pub use error::{Cause, OverrideError, Overrider};
pub use image::{ImageError, ImageRef};
pub use select::{PolicyRef, Precision, Scope, Template, applicable_policies};
