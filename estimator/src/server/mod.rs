//! The IO around the pure core (feature `server`): the Karmada-compatible
//! gRPC service, hami's batch service, metrics, the HTTP endpoints and the
//! gRPC port's TLS.

pub mod convert;
pub mod grpc;
pub mod http;
pub mod metrics;
pub mod tls;

pub use grpc::EstimatorService;
pub use metrics::EstimatorMetrics;
