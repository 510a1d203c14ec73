//! hami's member-cluster side. [`sim`] is the member-cluster simulator: a
//! Kubernetes API server holding a fleet of GPU nodes, small workload
//! controllers and a GPU-exact binder, standing in for a real cluster
//! through the real REST protocol (demos, `hami up --sim-clusters`, tests).
//! [`pull`] is the agent logic: the `hami-agent` binary runs it inside a
//! member cluster (Pull), hami-control runs it for Push clusters. [`join`]
//! brings a Pull agent in with a bootstrap token (kubeadm join, kubelet TLS
//! bootstrap) and keeps its client certificate renewed.

pub mod join;
pub mod pull;
pub mod sim;
