//! hami's Kubernetes-compatible API server: a generic kind registry over a
//! revisioned [`hami_store::Store`], Kubernetes REST conventions (discovery,
//! list/watch, get/create/update/patch/delete, status and scale subresources,
//! Tables, OpenAPI v3), and the pure patch engines it uses (JSON merge patch,
//! strategic merge patch, server-side apply).
//!
//! It is its own crate because two homes serve it: the control plane (`hami
//! up`) and the member-cluster simulator, which stands in for a cluster through
//! the same REST protocol.

pub mod openapi;
pub mod patch;
pub mod server;

pub use server::*;
