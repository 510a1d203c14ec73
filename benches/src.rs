//! Shared helpers for hami's criterion benchmarks (see `benches/*.rs`).
