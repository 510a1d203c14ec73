//! The embedded store's metrics (prefix `hami_store_`), observed by the
//! committer thread once per transaction. No labels: one store per process.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

/// Commit metrics. Cloning shares them (the options carry a clone into the
/// committer thread).
#[derive(Clone, Debug)]
pub struct StoreMetrics {
    /// Write requests per committed transaction (group commit size).
    pub commit_batch_size: Histogram,
    /// Time from opening the write transaction to its durable commit.
    pub commit_duration: Histogram,
    /// Transactions that failed as a whole (storage errors).
    pub commit_failures: Counter,
    /// Write requests answered with their own failure (a precondition).
    pub rejected_writes: Counter,
}

impl Default for StoreMetrics {
    fn default() -> Self {
        Self::unregistered()
    }
}

impl StoreMetrics {
    /// Metrics registered nowhere (tests, benches, the default options).
    pub fn unregistered() -> Self {
        Self {
            commit_batch_size: Histogram::new(batch_buckets()),
            commit_duration: Histogram::new(duration_buckets()),
            commit_failures: Counter::default(),
            rejected_writes: Counter::default(),
        }
    }

    /// Registers the metrics under `hami_store_`.
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self::unregistered();
        let r = registry.sub_registry_with_prefix("hami_store");
        r.register(
            "commit_batch_size",
            "Write requests committed together in one transaction (one fsync)",
            m.commit_batch_size.clone(),
        );
        r.register_with_unit(
            "commit_duration",
            "Time from opening a write transaction to its durable commit",
            Unit::Seconds,
            m.commit_duration.clone(),
        );
        r.register(
            "commit_failures",
            "Write transactions that failed as a whole (every write in them failed)",
            m.commit_failures.clone(),
        );
        r.register(
            "rejected_writes",
            "Writes answered with their own failure (a stale revision, an existing or missing key)",
            m.rejected_writes.clone(),
        );
        m
    }

    /// Records one transaction of `requests` writes that took `seconds`.
    pub(crate) fn committed(&self, requests: usize, rejected: usize, seconds: f64) {
        self.commit_batch_size.observe(requests as f64);
        self.commit_duration.observe(seconds);
        self.rejected_writes.inc_by(rejected as u64);
    }
}

/// Group commit takes up to `max_batch` (default 1024) queued writes:
/// powers of two from 1 to 1024 (11 buckets) show how much each fsync
/// is shared, from a lone writer to a saturated queue.
fn batch_buckets() -> impl Iterator<Item = f64> {
    exponential_buckets(1.0, 2.0, 11)
}

/// One fsync is ~0.1 ms on a fast NVMe, 1-10 ms on ordinary disks and
/// tens of ms on network volumes; a large batch adds its B-tree work.
/// 100 µs doubling to ~1.6 s (15 buckets) covers all of them.
fn duration_buckets() -> impl Iterator<Item = f64> {
    exponential_buckets(0.0001, 2.0, 15)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::sync::Arc;

    use super::*;
    use crate::{EmbeddedOptions, EmbeddedStore, Store};

    fn sample(text: &str, name: &str) -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
            .unwrap_or_else(|| panic!("{name} missing in\n{text}"))
            .parse()
            .unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn commits_are_counted_with_their_batch_sizes() {
        let tmp = tempfile::tempdir().unwrap();
        let mut registry = Registry::default();
        let metrics = StoreMetrics::register(&mut registry);
        let store = Arc::new(
            EmbeddedStore::open(
                tmp.path(),
                EmbeddedOptions {
                    metrics,
                    cache_size_bytes: 1 << 20,
                    ..EmbeddedOptions::default()
                },
            )
            .unwrap(),
        );
        let writes: Vec<_> = (0..32)
            .map(|i| {
                let s = store.clone();
                tokio::spawn(async move { s.create(&format!("/k/{i}"), vec![1]).await })
            })
            .collect();
        for w in writes {
            w.await.unwrap().unwrap();
        }
        // A create of an existing key fails alone.
        assert!(store.create("/k/0", vec![2]).await.is_err());
        let stats = store.stats();
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();

        // One observation per transaction (the rejected create's too); the
        // batch sizes sum to every request (32 creates + the rejected one).
        let commits = sample(&text, "hami_store_commit_batch_size_count");
        assert_eq!(commits, stats.commits as f64, "{text}");
        assert!(commits >= 2.0);
        assert_eq!(sample(&text, "hami_store_commit_batch_size_sum"), 33.0);
        assert_eq!(
            sample(&text, "hami_store_commit_duration_seconds_count"),
            commits
        );
        assert!(sample(&text, "hami_store_commit_duration_seconds_sum") > 0.0);
        assert_eq!(sample(&text, "hami_store_rejected_writes_total"), 1.0);
        assert_eq!(sample(&text, "hami_store_commit_failures_total"), 0.0);
        assert!(text.contains("# UNIT hami_store_commit_duration_seconds seconds"));
    }
}
