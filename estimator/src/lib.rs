//! hami's scheduler-estimator: for one member cluster, "how many more
//! replicas of this exact shape can run here", exact for GPUs with HAMi's
//! semantics, answered from an incrementally maintained snapshot through an
//! index (see [`index`]) instead of a scan of every node.
//!
//! The core (snapshot, index, fit math, shapes, fleet format) is pure: it
//! builds with `--no-default-features`, without tokio, tonic or axum. The
//! gRPC service (Karmada-compatible), metrics and the `hami-estimator`
//! binary's wiring sit behind the `server` feature.

pub mod claim;
pub mod fit;
pub mod fleet;
mod generate;
pub(crate) mod index;
pub mod k8s;
pub mod model;
mod pods;
pub mod quantity;
pub mod shape;
pub mod simulate;
pub mod snapshot;

#[cfg(feature = "server")]
pub mod server;

pub use claim::NodeClaim;
pub use model::{
    GpuDevice, GpuUse, NodeInfo, PodInfo, PodPhase, Resources, Taint, TaintEffect, WorkloadRef,
};
pub use shape::{GpuMemory, GpuRequest, ReplicaShape};
pub use snapshot::{NodeView, Snapshot, SnapshotStats};
