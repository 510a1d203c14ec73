//! Generated gRPC code for hami's wire protocols. The .proto files under
//! `proto/` are written for hami with the package, service, method, message and
//! field names and numbers of the upstream APIs they are compatible with.
#![allow(clippy::all, missing_docs)]

include!(concat!(env!("OUT_DIR"), "/_includes.rs"));
