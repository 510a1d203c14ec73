//! hami's API types. Every kind is a Kubernetes-shaped object (apiVersion, kind,
//! metadata, spec, status) with field names following Karmada's where Karmada has
//! the field. This crate performs no IO.
//!
//! - [`cluster`]: `cluster.hami.io/v1alpha1` Cluster
//! - [`propagation`], [`override_policy`], [`quota`]: `policy.hami.io/v1alpha1`
//! - [`binding`], [`work`]: `work.hami.io/v1alpha2`
//! - [`validation`]: [`validate`] for any hami object, every error with its field path
//! - [`quantity`]: Kubernetes quantities as exact milli-units
//! - [`crds`]: the CustomResourceDefinitions of every kind
//! - [`yaml`]: hand-written files read strictly, errors naming the field's path

pub mod binding;
pub mod cluster;
pub mod common;
pub mod gpu;
pub mod override_policy;
pub mod propagation;
pub mod quantity;
pub mod quota;
pub mod validation;
pub mod work;
pub mod yaml;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;

pub use binding::{
    ClusterResourceBinding, ClusterResourceBindingSpec, GpuRequirement, ReplicaRequirements,
    ResourceBinding, ResourceBindingSpec, ResourceBindingStatus, TargetCluster,
};
pub use cluster::{Cluster, ClusterSpec, ClusterStatus, GpuSummary, SyncMode};
pub use common::*;
pub use override_policy::{
    ClusterOverridePolicy, ClusterOverrideSpec, OverridePolicy, OverrideSpec, Overriders,
    RuleWithCluster,
};
pub use propagation::{
    ClusterAffinity, ClusterPropagationPolicy, ClusterPropagationSpec, Placement,
    PropagationPolicy, PropagationSpec, ReplicaSchedulingStrategy, ResourceSelector,
};
pub use quantity::{QuantityError, parse_quantity};
pub use quota::{FederatedResourceQuota, FederatedResourceQuotaSpec, FederatedResourceQuotaStatus};
pub use validation::{FieldError, FieldErrorKind, validate};
pub use work::{Work, WorkSpec, WorkStatus};

/// The CustomResourceDefinition of every hami kind, in a stable order.
pub fn crds() -> Vec<CustomResourceDefinition> {
    vec![
        Cluster::crd(),
        PropagationPolicy::crd(),
        ClusterPropagationPolicy::crd(),
        OverridePolicy::crd(),
        ClusterOverridePolicy::crd(),
        FederatedResourceQuota::crd(),
        ResourceBinding::crd(),
        ClusterResourceBinding::crd(),
        Work::crd(),
    ]
}
