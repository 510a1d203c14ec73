//! Shared test helpers.
pub mod scenario;
