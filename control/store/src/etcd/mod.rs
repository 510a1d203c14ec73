//! The etcd backend (work in progress).

/// Options for the etcd store.
#[derive(Clone, Debug, Default)]
pub struct EtcdOptions {}

/// A store kept in etcd.
pub struct EtcdStore {}
