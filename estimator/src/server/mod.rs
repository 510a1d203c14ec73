//! The IO around the pure core (feature `server`): the Karmada-compatible
//! gRPC service, hami's batch service, metrics and the HTTP endpoints.

pub mod convert;
pub mod grpc;
pub mod http;
pub mod metrics;

pub use grpc::EstimatorService;
pub use metrics::EstimatorMetrics;
