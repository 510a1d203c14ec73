//! hami's control plane: the `hami` CLI and, as they land, the controllers.
//! The API server itself lives in the `hami-apiserver` crate.
pub use hami_apiserver::server as apiserver;
pub use hami_apiserver::{openapi, patch};
pub mod cli;
pub mod controllers;
pub mod https;
pub mod metrics;
pub mod pki;
