//! hami's quota arithmetic for `FederatedResourceQuota`, pure (no IO, no
//! async): what a binding uses, GPU lines included; the admission decision and
//! reservation ledger; the status it reports.
//!
//! - [`request`]: [`ReplicaRequest`], one replica's ask, from a binding's
//!   `replicaRequirements` or from a pod template's spec.
//! - [`models`]: [`GpuModels`], per-cluster GPU model memory for
//!   `nvidia.com/gpumem-percentage` (conservative when unknown).
//! - [`accounting`]: [`Accountant`] turns a request and an [`Assignment`]
//!   into a [`Charge`] (overall and per cluster); the module docs give the
//!   resource-name table and the graceful-eviction rule.
//! - [`ledger`]: [`QuotaLedger`], one quota's limits, usage and charges per
//!   binding; `check` / `commit` / `admit`, `remaining_for`, `recompute`.
//! - [`status`]: [`build_status`], `status.overall`, `overallUsed`,
//!   `aggregatedStatus` and the unknown-cluster condition.
//! - [`book`]: [`QuotaBook`], every quota with the bindings it counts, fed
//!   by watch events; the scheduler's reservations (`reserve` / `confirm` /
//!   `cancel`) and capacity (`room`).
//! - [`member`]: the plain ResourceQuota a static assignment becomes in its
//!   member cluster, and how its `status.used` reads back.
//!
//! # Wiring (for the controllers and the scheduler)
//!
//! One single-writer accountant task owns one [`QuotaLedger`] per quota
//! (namespace) and is the only place quota is reserved, so check and
//! reservation are one step (`admit` under `&mut`), never a read-then-write:
//!
//! 1. Start / restart: for each quota, [`QuotaLimits::from_spec`]; for every
//!    binding of its namespace compute `accountant.charge(&ReplicaRequest::
//!    from_requirements(..)?, &Assignment::from_binding(spec))` and build the
//!    ledger with [`QuotaLedger::rebuild`] (no limit check: what is placed is
//!    placed). A quota spec change: [`QuotaLedger::set_limits`], or a rebuild
//!    when it answers `NamesChanged`.
//! 2. Scheduler: before deciding, cap each candidate cluster's estimate with
//!    [`QuotaLedger::remaining_for`] (excluding the binding's own charge, since
//!    it is re-placed), then ask the accountant to `admit` the result; on
//!    [`LedgerError::Exceeded`] write `Scheduled=False, reason QuotaExceeded`
//!    with the error's message (it names resource, numbers and cluster) and
//!    an Event, and keep the binding in a waiting set that is re-queued when
//!    the ledger's usage drops (a commit with a decrease, a delete, a limit
//!    raise). The write of `spec.clusters` happens only after `admit`.
//! 3. Scale-down, deletion, eviction task ends: `admit` never refuses a step
//!    that raises no resource; a deleted binding is `admit(key, None)`.
//! 4. Status: [`build_status`] from the ledger, known cluster names and the
//!    previous status (to keep condition transition times).
//!
//! Every amount is an exact `i128` of milli-units; overflow is an error.

pub mod accounting;
pub mod amounts;
pub mod book;
pub mod ledger;
pub mod member;
pub mod models;
pub mod request;
pub mod status;

pub use accounting::{Accountant, AccountingError, Assignment, Charge};
pub use amounts::{AmountError, Amounts};
pub use book::{Outcome, QuotaBook, Refusal, State, Uncounted};
pub use ledger::{Delta, LedgerError, QuotaExceeded, QuotaLedger, QuotaLimits, recompute};
pub use models::GpuModels;
pub use request::{GpuDemand, ReplicaRequest, RequestError};
pub use status::{add_member_used, build_status};
