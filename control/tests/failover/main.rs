//! Failover, rescheduling and the descheduler end to end, each test with
//! its own real `hami up --sim-clusters 3` (member-1/2 Pull, member-3
//! Push); each prints its timeline.
//!
//! * [`taint`]: a user taints member-1 `maintenance:NoExecute`; `web`
//!   (6 replicas, 2 per cluster) gets a graceful eviction task (producer
//!   TaintManager, reason TaintUntolerated), leaves member-1, the scheduler
//!   places its replicas on member-2/3; sampled every 100 ms its
//!   readyReplicas never reaches 0 and member-1's Work stays while the task
//!   stands; `pinned`, which tolerates the taint, stays.
//! * [`lease`]: a hand-written lapsed Lease taints its Cluster unreachable
//!   (NoSchedule + NoExecute, Ready=Unknown); a renewal removes only ours.
//! * [`dead_agent`]: member-1's agent stops; a GPU Deployment's replicas
//!   move without the template's readyReplicas reaching 0, member-1's Work
//!   goes only once the replacements are ready, nothing moves back when
//!   the agent returns.
//! * [`never_ready`]: replacements that never become ready: the old copy
//!   serves until the grace period, then goes; the binding says why.
//! * [`descheduler`]: replicas that stay Pending in a full cluster move to
//!   one with room within two descheduler periods; ready ones are not
//!   touched.
//! * [`rebalance`]: after a taint-driven move and the taint's removal
//!   nothing moves back; `rescheduleTriggeredAt` set on the policy with
//!   kubectl divides afresh (member-1 included) without readyReplicas
//!   reaching 0.
//! * [`quota`]: under a FederatedResourceQuota a NoExecute taint still
//!   writes the eviction task; replacements that fit move within quota
//!   (never above it), ones that do not leave the binding QuotaExceeded
//!   with the old copies serving.
//! * [`flapping`]: a member down 5 s / up 5 s three times: evictions stay
//!   within the rate, no binding moves twice, the placement settles.
//!
//! Members are taken down with their outage files
//! (`DATA_DIR/members/<name>.down`, see `hami up --help`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../support/mod.rs"]
mod support;

mod common;
mod dead_agent;
mod descheduler;
mod flapping;
mod lease;
mod never_ready;
mod quota;
mod rebalance;
mod taint;
