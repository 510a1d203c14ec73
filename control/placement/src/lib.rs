//! hami's placement core: given a binding, a view of each member cluster and
//! how many replicas each can still hold, decide how many replicas go where,
//! or explain per cluster why none can. Pure and deterministic: no IO, no
//! clocks, no map-order iteration; ties are broken by name or by a stable
//! hash of the binding and the cluster, never by list position.
//!
//! The steps, one module each, in Karmada's order:
//! [`filter`] (ready, affinity, taints, API enablement, eviction) →
//! [`capacity`] (min of accurate and general estimates) →
//! [`spread`] (score by locality then capacity; groups between minGroups and
//! maxGroups) → [`divide`] (Duplicated, static weights, dynamic weight,
//! Aggregated, all with [`apportion`]'s Webster method). [`schedule()`] runs
//! them, once per `clusterAffinities` term until one fits;
//! [`schedule_prepared`] does the same over a [`prepared`] snapshot of the
//! clusters, built once per change of the cluster set.
//! [`reservations`] guards against over-commit between decisions;
//! [`sim`] runs what-if scenarios over a described fleet.

pub mod apportion;
pub mod capacity;
pub mod divide;
pub mod filter;
pub mod outcome;
pub mod prepared;
pub mod reservations;
pub mod schedule;
pub mod sim;
pub mod spread;
pub mod view;

pub use outcome::{Attempt, Decision, Mode, Note, Problem, Reason, Strategy, Unschedulable};
pub use prepared::PreparedClusters;
pub use reservations::Reservations;
pub use schedule::{schedule, schedule_prepared, strategy_of};
pub use view::{BindingView, ClusterView, Shape};
