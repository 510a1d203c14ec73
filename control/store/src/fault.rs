//! Fault injection for tests: a [`Store`] wrapper that makes watches fall
//! behind and writes fail, on purpose, so that tests can force the relists
//! and failed writes a loaded control plane meets by chance.
//!
//! * **Watches fall behind**: each watch is closed with
//!   [`StoreError::WatcherTooSlow`] (the error a slow watcher of a real
//!   backend gets) after a number of events drawn from
//!   `[after, 2 * after)`, so a consumer must relist, as it would if it had
//!   fallen behind for real.
//! * **Writes fail**: a create, update or delete of a key under
//!   `write_prefix` fails with [`StoreError::Unavailable`] with probability
//!   `write_fail_ratio`. Half of those failures happen *after* the write
//!   took effect (the reply is lost, as with etcd when a connection drops
//!   after the commit), so a caller cannot assume that a failed write did
//!   nothing.
//!
//! Draws come from a seeded generator: the same seed gives the same
//! sequence of draws (the interleaving of callers still varies).

use std::sync::Arc;

use async_trait::async_trait;
use parking_lot::Mutex;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use tokio::sync::mpsc;

use crate::{KeyValue, ListResult, Result, Revision, Store, StoreError, Watch};

/// What to inject. The default injects nothing.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FaultPlan {
    /// Close every watch as fallen behind after `[n, 2n)` events.
    pub watch_behind_after: Option<u64>,
    /// Fraction (0..=1) of writes under `write_prefix` that fail.
    pub write_fail_ratio: f64,
    /// Keys whose writes may fail (every key when empty).
    pub write_prefix: String,
    /// Seed of the draws.
    pub seed: u64,
}

impl FaultPlan {
    /// True when the plan injects something.
    pub fn is_active(&self) -> bool {
        self.watch_behind_after.is_some() || self.write_fail_ratio > 0.0
    }

    /// Checks the numbers: a ratio within 0..=1, a positive event count.
    pub fn validate(&self) -> std::result::Result<(), String> {
        if !(0.0..=1.0).contains(&self.write_fail_ratio) {
            return Err(format!(
                "write failure ratio {} is not between 0 and 1",
                self.write_fail_ratio
            ));
        }
        if self.watch_behind_after == Some(0) {
            return Err("watches must be let through at least 1 event".into());
        }
        Ok(())
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FaultLabel {
    fault: &'static str,
}

/// Injected faults by kind (`hami_store_injected_faults_total{fault}`:
/// `watch_behind`, `write_failed_before`, `write_failed_after`).
#[derive(Clone, Debug, Default)]
pub struct FaultMetrics {
    injected: Family<FaultLabel, Counter>,
}

impl FaultMetrics {
    /// Registers under `hami_store_`, every label at 0.
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self::default();
        for fault in ["watch_behind", "write_failed_before", "write_failed_after"] {
            drop(m.injected.get_or_create(&FaultLabel { fault }));
        }
        registry.sub_registry_with_prefix("hami_store").register(
            "injected_faults",
            "Faults injected on purpose by a test-only fault plan (hami up --fault-*)",
            m.injected.clone(),
        );
        m
    }

    fn inc(&self, fault: &'static str) {
        self.injected.get_or_create(&FaultLabel { fault }).inc();
    }

    /// How many faults of `fault` were injected (for tests).
    pub fn count(&self, fault: &'static str) -> u64 {
        self.injected.get_or_create(&FaultLabel { fault }).get()
    }
}

/// SplitMix64 (deterministic, not for cryptography).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Where a write fails, if it does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum WriteFault {
    None,
    Before,
    After,
}

/// A [`Store`] that injects the faults of a [`FaultPlan`] into `inner`.
pub struct FaultyStore {
    inner: Arc<dyn Store>,
    plan: FaultPlan,
    rng: Mutex<Rng>,
    metrics: FaultMetrics,
}

impl FaultyStore {
    pub fn new(inner: Arc<dyn Store>, plan: FaultPlan, metrics: FaultMetrics) -> Self {
        let seed = plan.seed;
        Self {
            inner,
            plan,
            rng: Mutex::new(Rng(seed)),
            metrics,
        }
    }

    fn write_fault(&self, key: &str) -> WriteFault {
        if self.plan.write_fail_ratio <= 0.0 || !key.starts_with(&self.plan.write_prefix) {
            return WriteFault::None;
        }
        let mut rng = self.rng.lock();
        if rng.unit() >= self.plan.write_fail_ratio {
            return WriteFault::None;
        }
        if rng.next() & 1 == 0 {
            WriteFault::Before
        } else {
            WriteFault::After
        }
    }

    fn injected(&self, key: &str, when: WriteFault) -> StoreError {
        let fault = match when {
            WriteFault::After => "write_failed_after",
            _ => "write_failed_before",
        };
        self.metrics.inc(fault);
        StoreError::Unavailable(format!("injected fault ({fault}) writing {key}"))
    }

    /// Runs `write` under the plan: refused before it, or its reply lost after.
    async fn guarded<T>(
        &self,
        key: &str,
        write: impl std::future::Future<Output = Result<T>>,
    ) -> Result<T> {
        match self.write_fault(key) {
            WriteFault::None => write.await,
            WriteFault::Before => Err(self.injected(key, WriteFault::Before)),
            WriteFault::After => {
                write.await?;
                Err(self.injected(key, WriteFault::After))
            }
        }
    }
}

#[async_trait]
impl Store for FaultyStore {
    async fn create(&self, key: &str, value: Vec<u8>) -> Result<KeyValue> {
        self.guarded(key, self.inner.create(key, value)).await
    }

    async fn update(
        &self,
        key: &str,
        value: Vec<u8>,
        expected: Option<Revision>,
    ) -> Result<KeyValue> {
        self.guarded(key, self.inner.update(key, value, expected))
            .await
    }

    async fn delete(&self, key: &str, expected: Option<Revision>) -> Result<(KeyValue, Revision)> {
        self.guarded(key, self.inner.delete(key, expected)).await
    }

    fn get(&self, key: &str) -> Result<Option<KeyValue>> {
        self.inner.get(key)
    }

    fn list(&self, prefix: &str, start_after: Option<&str>, limit: usize) -> Result<ListResult> {
        self.inner.list(prefix, start_after, limit)
    }

    fn watch(&self, prefix: &str, after: Revision) -> Result<Watch> {
        let inner = self.inner.watch(prefix, after)?;
        let Some(n) = self.plan.watch_behind_after else {
            return Ok(inner);
        };
        let budget = n.saturating_add(self.rng.lock().next() % n.max(1));
        let mut events = inner.events;
        // One slot more than the inner watch's so forwarding never waits
        // on a full channel before the consumer could have read it.
        let (tx, rx) = mpsc::channel(events.max_capacity().saturating_add(1));
        let metrics = self.metrics.clone();
        tokio::spawn(async move {
            let mut passed = 0u64;
            while let Some(event) = events.recv().await {
                let last = event.is_err();
                if tx.send(event).await.is_err() || last {
                    return;
                }
                passed += 1;
                if passed >= budget {
                    metrics.inc("watch_behind");
                    let _ = tx.send(Err(StoreError::WatcherTooSlow)).await;
                    return;
                }
            }
        });
        Ok(Watch { events: rx })
    }

    fn current_revision(&self) -> Revision {
        self.inner.current_revision()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::{Event, MemoryStore};

    fn faulty(plan: FaultPlan) -> (FaultyStore, FaultMetrics) {
        let metrics = FaultMetrics::default();
        let store = FaultyStore::new(Arc::new(MemoryStore::new()), plan, metrics.clone());
        (store, metrics)
    }

    #[tokio::test]
    async fn a_watch_falls_behind_within_its_budget_and_a_new_one_starts_over() {
        let plan = FaultPlan {
            watch_behind_after: Some(3),
            seed: 7,
            ..FaultPlan::default()
        };
        let (store, metrics) = faulty(plan);
        let mut w = store.watch("/a/", 0).unwrap();
        for i in 0..10 {
            store.create(&format!("/a/{i}"), vec![1]).await.unwrap();
        }
        let mut seen = 0;
        let end = loop {
            match w.events.recv().await.expect("the watch ends with an error") {
                Ok(Event::Put { .. }) => seen += 1,
                Ok(e) => panic!("unexpected {e:?}"),
                Err(e) => break e,
            }
        };
        assert_eq!(end, StoreError::WatcherTooSlow);
        assert!(
            (3..6).contains(&seen),
            "{seen} events before falling behind"
        );
        assert_eq!(metrics.count("watch_behind"), 1);
        // A relist's watch from the listed revision goes on.
        let rev = store.list("/a/", None, 0).unwrap().revision;
        let mut again = store.watch("/a/", rev).unwrap();
        store.create("/a/new", vec![1]).await.unwrap();
        let e = again.events.recv().await.unwrap().unwrap();
        assert_eq!(e.key(), "/a/new");
    }

    #[tokio::test]
    async fn writes_fail_at_the_ratio_under_the_prefix_only_and_some_after_taking_effect() {
        let plan = FaultPlan {
            write_fail_ratio: 0.5,
            write_prefix: "/works/".into(),
            seed: 11,
            ..FaultPlan::default()
        };
        let (store, metrics) = faulty(plan);
        let mut failed = 0;
        let mut took_effect_anyway = 0;
        for i in 0..200 {
            let key = format!("/works/{i}");
            match store.create(&key, vec![1]).await {
                Ok(_) => {}
                Err(StoreError::Unavailable(_)) => {
                    failed += 1;
                    if store.get(&key).unwrap().is_some() {
                        took_effect_anyway += 1;
                    }
                }
                Err(e) => panic!("unexpected {e}"),
            }
        }
        assert!((60..140).contains(&failed), "{failed} of 200 failed");
        assert!(took_effect_anyway > 10 && took_effect_anyway < failed);
        assert_eq!(
            metrics.count("write_failed_after"),
            took_effect_anyway as u64
        );
        assert_eq!(
            metrics.count("write_failed_before") + metrics.count("write_failed_after"),
            failed as u64
        );
        for i in 0..50 {
            store.create(&format!("/other/{i}"), vec![1]).await.unwrap();
        }
    }

    #[test]
    fn a_plan_checks_its_numbers() {
        assert!(FaultPlan::default().validate().is_ok());
        assert!(!FaultPlan::default().is_active());
        let bad = FaultPlan {
            write_fail_ratio: 1.5,
            ..FaultPlan::default()
        };
        assert!(bad.validate().unwrap_err().contains("1.5"));
        let zero = FaultPlan {
            watch_behind_after: Some(0),
            ..FaultPlan::default()
        };
        assert!(zero.validate().is_err());
    }
}
