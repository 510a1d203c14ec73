//! hami's placement core: given a binding, a view of each member cluster and
//! how many replicas each can still hold, decide how many replicas go where,
//! or explain per cluster why none can. Pure and deterministic: no IO, no
//! clocks, no map-order iteration.

pub mod apportion;
