//! CustomResourceDefinitions at run time: what a CRD may say, the kinds it
//! adds, and the structural schema its objects follow ([`schema`]).

pub mod schema;
