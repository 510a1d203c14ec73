//! `hami-estimator`: serves one cluster's estimator (wired in the next step).
fn main() {}
