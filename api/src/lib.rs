//! hami's API types. Every kind is a Kubernetes-shaped object (apiVersion, kind,
//! metadata, spec, status) with field names following Karmada's where Karmada has
//! the field. This crate performs no IO.
pub mod gpu;
