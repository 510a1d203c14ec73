//! `dryRun=All`: a request runs through every step of a real write
//! (defaulting, validation, admission, preconditions, conflicts) against a
//! store that checks each write as the real one would and then keeps
//! nothing, as kube-apiserver's dry-run storage layer does. The answer is
//! the object that would have been stored.

use std::sync::Arc;

use async_trait::async_trait;
use hami_store::{KeyValue, ListResult, Revision, Store, StoreError, Watch};

use super::State;

/// Reads from the real store; writes are checked there and dropped.
pub struct DryRunStore {
    real: Arc<dyn Store>,
}

impl DryRunStore {
    pub fn new(real: Arc<dyn Store>) -> Self {
        Self { real }
    }

    /// The current entry, checked against `expected` as a write would be.
    fn current(&self, key: &str, expected: Option<Revision>) -> hami_store::Result<KeyValue> {
        let kv = self
            .real
            .get(key)?
            .ok_or_else(|| StoreError::NotFound(key.to_owned()))?;
        if let Some(expected) = expected
            && expected != kv.mod_revision
        {
            return Err(StoreError::Conflict {
                key: key.to_owned(),
                expected,
                actual: kv.mod_revision,
            });
        }
        Ok(kv)
    }
}

#[async_trait]
impl Store for DryRunStore {
    async fn create(&self, key: &str, value: Vec<u8>) -> hami_store::Result<KeyValue> {
        if self.real.get(key)?.is_some() {
            return Err(StoreError::AlreadyExists(key.to_owned()));
        }
        // Nothing is written: no revision is taken (resourceVersion stays
        // the current one, as kube-apiserver answers a dry-run create).
        let revision = self.real.current_revision();
        Ok(KeyValue {
            key: key.to_owned(),
            value,
            create_revision: revision,
            mod_revision: revision,
        })
    }

    async fn update(
        &self,
        key: &str,
        value: Vec<u8>,
        expected: Option<Revision>,
    ) -> hami_store::Result<KeyValue> {
        let kv = self.current(key, expected)?;
        Ok(KeyValue { value, ..kv })
    }

    async fn delete(
        &self,
        key: &str,
        expected: Option<Revision>,
    ) -> hami_store::Result<(KeyValue, Revision)> {
        let kv = self.current(key, expected)?;
        let revision = kv.mod_revision;
        Ok((kv, revision))
    }

    fn get(&self, key: &str) -> hami_store::Result<Option<KeyValue>> {
        self.real.get(key)
    }

    fn list(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
    ) -> hami_store::Result<ListResult> {
        self.real.list(prefix, start_after, limit)
    }

    fn watch(&self, prefix: &str, after: Revision) -> hami_store::Result<Watch> {
        self.real.watch(prefix, after)
    }

    fn current_revision(&self) -> Revision {
        self.real.current_revision()
    }
}

impl State {
    /// This server's state over a dry-run store: the same registry, settings
    /// and metrics; nothing a request does with it is kept.
    pub fn dry_run(&self) -> State {
        State {
            store: Arc::new(DryRunStore::new(Arc::clone(&self.store))),
            registry: self.registry.clone(),
            config: self.config.clone(),
            metrics: self.metrics.clone(),
            metric_registry: Arc::clone(&self.metric_registry),
            shutdown: self.shutdown.clone(),
            openapi: parking_lot::Mutex::new(None),
            readiness: super::readiness::Readiness::default(),
            dry_run: true,
        }
    }
}
