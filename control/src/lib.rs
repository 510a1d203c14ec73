//! hami's control plane.
pub mod apiserver;
pub mod cli;
pub mod patch;
pub mod openapi;
