//! hami's control plane.
pub mod apiserver;
pub mod cli;
pub mod openapi;
pub mod patch;
