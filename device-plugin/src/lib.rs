//! hami's kubelet device plugin. It finds the node's GPUs (NVML, or a file for
//! machines without a GPU), offers them to kubelet whole or as share slots over
//! the device plugin API v1beta1, keeps their health current, and publishes the
//! node's GPU inventory in HAMi's node annotation.
//!
//! Layout: [`backend`] discovers devices; [`slicing`] is the pure mapping
//! between GPUs and kubelet devices; [`service`] is the gRPC DevicePlugin
//! service; [`kubelet`] serves it and registers with kubelet; [`inventory`]
//! writes the node annotation; [`pods`] is HAMi's scheduler hand-off; [`metrics`] and [`http`] expose metrics and
//! probes; [`runtime`] holds the flags and the wiring.

pub mod backend;
pub mod http;
pub mod inventory;
pub mod kubelet;
pub mod metrics;
pub mod pods;
pub mod runtime;
pub mod service;
pub mod slicing;
