//! hami's control plane.
