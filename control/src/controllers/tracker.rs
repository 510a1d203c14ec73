//! What the process knows of each controller's plumbing: whether every feed
//! it reads has completed its first list (the readiness barrier: nothing is
//! decided before), how often its feeds relisted, how often a reconcile was
//! retried, and how long the oldest key of its queue has waited.
//!
//! Metrics (controller names and prefixes from the fixed set [`CONTROLLERS`]):
//! `hami_controller_synced{controller}` (1 once every feed listed),
//! `hami_feed_relists_total{controller}` (lists after the first: a watch
//! fell behind, was compacted or failed), and for queue-driven controllers
//! `hami_controller_queue_depth{controller}`,
//! `hami_controller_queue_oldest_item_seconds{controller}` (one family each,
//! so one alert covers every controller) and, under the controller's own
//! prefix, `<prefix>_retries_total`.
//!
//! `/readyz` (see [`register_readiness`]): a controller whose feeds have not
//! listed yet fails the check; one whose oldest queued key waited longer
//! than [`STUCK_AFTER`] warns, naming the controller and the age.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use hami_apiserver::readiness::{Check, Readiness};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Registry, Unit};
use tokio::sync::watch;

use super::queue::WorkQueue;

/// A key that has waited this long (failing, or behind a backlog) makes
/// `/readyz` warn, and the `HamiControllerQueueStuck` alert fire.
pub const STUCK_AFTER: Duration = Duration::from_secs(300);

/// How often a queue's depth and oldest age are sampled into the gauges.
const SAMPLE_EVERY: Duration = Duration::from_secs(1);

/// Every controller: (name, metric prefix, driven by a work queue).
pub const CONTROLLERS: [(&str, &str, bool); 10] = [
    ("detector", "hami_detector", true),
    ("scheduler", "hami_scheduler", true),
    ("binding", "hami_binding", true),
    ("status", "hami_status", true),
    ("push", "hami_push", true),
    ("quota", "hami_quota", true),
    ("gc", "hami_gc", true),
    ("failover", "hami_failover", true),
    ("health", "hami_cluster_health", false),
    ("descheduler", "hami_descheduler", false),
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ControllerLabel {
    controller: &'static str,
}

/// One controller's queue metrics (under its own prefix).
#[derive(Clone, Default)]
struct QueueMetrics {
    retries: Counter,
    depth: Gauge,
    oldest_seconds: Gauge<f64, AtomicU64>,
}

struct Inner {
    name: &'static str,
    /// Feeds registered and not yet through their first list.
    pending: watch::Sender<usize>,
    registered: AtomicUsize,
    synced: Gauge,
    relists: Counter,
    queue: Option<QueueMetrics>,
    /// Oldest queued key's age in milliseconds, as last sampled.
    oldest_ms: AtomicU64,
}

/// One controller's plumbing state (cheap to clone).
#[derive(Clone)]
pub struct Tracker(Arc<Inner>);

impl Tracker {
    /// A tracker registered nowhere (tests, benches).
    pub fn standalone(name: &'static str) -> Self {
        Self::new(
            name,
            Gauge::default(),
            Counter::default(),
            Some(QueueMetrics::default()),
        )
    }

    fn new(
        name: &'static str,
        synced: Gauge,
        relists: Counter,
        queue: Option<QueueMetrics>,
    ) -> Self {
        Self(Arc::new(Inner {
            name,
            pending: watch::Sender::new(0),
            registered: AtomicUsize::new(0),
            synced,
            relists,
            queue,
            oldest_ms: AtomicU64::new(0),
        }))
    }

    pub fn name(&self) -> &'static str {
        self.0.name
    }

    /// A feed starts: the controller is not synced until it has listed.
    pub fn feed_started(&self) -> FeedToken {
        self.0.registered.fetch_add(1, Ordering::SeqCst);
        self.0.pending.send_modify(|p| *p += 1);
        self.0.synced.set(0);
        FeedToken {
            tracker: self.clone(),
            listed: false,
        }
    }

    /// True once every registered feed completed its first list.
    pub fn is_synced(&self) -> bool {
        self.0.registered.load(Ordering::SeqCst) > 0 && *self.0.pending.borrow() == 0
    }

    /// Waits until [`is_synced`](Self::is_synced).
    pub async fn wait_synced(&self) {
        let mut rx = self.0.pending.subscribe();
        loop {
            if self.is_synced() {
                return;
            }
            if rx.changed().await.is_err() {
                return;
            }
        }
    }

    /// One failed reconcile that will be retried.
    pub fn retried(&self) {
        if let Some(q) = &self.0.queue {
            q.retries.inc();
        }
    }

    /// Retries counted so far (for tests).
    pub fn retries(&self) -> u64 {
        self.0.queue.as_ref().map_or(0, |q| q.retries.get())
    }

    /// Feed relists counted so far (for tests).
    pub fn relists(&self) -> u64 {
        self.0.relists.get()
    }

    /// Samples `queue` into the gauges and the readiness state.
    pub fn sample(&self, queue: &WorkQueue) {
        let oldest = queue.oldest_age().unwrap_or_default();
        self.0.oldest_ms.store(
            u64::try_from(oldest.as_millis()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
        if let Some(q) = &self.0.queue {
            q.depth.set(i64::try_from(queue.len()).unwrap_or(i64::MAX));
            q.oldest_seconds.set(oldest.as_secs_f64());
        }
    }

    /// Samples `queue` every second until `stop` (see [`sample`](Self::sample)).
    pub fn spawn_sampler<S: Send + Sync + 'static>(
        &self,
        shared: Arc<S>,
        queue: fn(&S) -> &WorkQueue,
        mut stop: watch::Receiver<bool>,
    ) {
        let tracker = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(SAMPLE_EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = tick.tick() => tracker.sample(queue(&shared)),
                    _ = stop.wait_for(|s| *s) => return,
                }
            }
        });
    }

    /// What `/readyz` says of this controller.
    pub fn check(&self, stuck_after: Duration) -> Check {
        if !self.is_synced() {
            let pending = *self.0.pending.borrow();
            return Check::Fail(format!(
                "{pending} of its watches have not completed their first list"
            ));
        }
        let oldest = Duration::from_millis(self.0.oldest_ms.load(Ordering::Relaxed));
        if oldest >= stuck_after {
            return Check::Warn(format!(
                "its oldest queued key has waited {}s (more than {}s): a reconcile keeps failing or the queue is far behind",
                oldest.as_secs(),
                stuck_after.as_secs()
            ));
        }
        Check::Ok
    }
}

/// A feed's part in its controller's readiness; see [`Tracker::feed_started`].
pub struct FeedToken {
    tracker: Tracker,
    listed: bool,
}

impl FeedToken {
    /// A list (the first, or a relist) was handed to the controller.
    pub fn listed(&mut self) {
        if self.listed {
            self.tracker.0.relists.inc();
            return;
        }
        self.listed = true;
        let mut now_synced = false;
        self.tracker.0.pending.send_modify(|p| {
            *p = p.saturating_sub(1);
            now_synced = *p == 0;
        });
        if now_synced {
            self.tracker.0.synced.set(1);
        }
    }
}

/// Every controller's tracker, registered once per process.
#[derive(Clone)]
pub struct Trackers {
    by_name: BTreeMap<&'static str, Tracker>,
}

impl Trackers {
    pub fn register(registry: &mut Registry) -> Self {
        let synced = Family::<ControllerLabel, Gauge>::default();
        let relists = Family::<ControllerLabel, Counter>::default();
        let depth = Family::<ControllerLabel, Gauge>::default();
        let oldest = Family::<ControllerLabel, Gauge<f64, AtomicU64>>::default();
        registry.register(
            "hami_controller_synced",
            "1 once every watch the controller reads has completed its first list (it decides nothing before)",
            synced.clone(),
        );
        registry.register(
            "hami_feed_relists",
            "Lists of a controller's watches after the first (the watch fell behind, was compacted or failed)",
            relists.clone(),
        );
        registry.register(
            "hami_controller_queue_depth",
            "Keys a controller has queued, ready or waiting for a retry",
            depth.clone(),
        );
        registry.register_with_unit(
            "hami_controller_queue_oldest_item",
            "How long the key a controller has queued longest without a successful reconcile has waited",
            Unit::Seconds,
            oldest.clone(),
        );
        let mut by_name = BTreeMap::new();
        for (name, prefix, queued) in CONTROLLERS {
            let label = ControllerLabel { controller: name };
            let queue = queued.then(|| {
                let q = QueueMetrics {
                    retries: Counter::default(),
                    depth: depth.get_or_create(&label).clone(),
                    oldest_seconds: oldest.get_or_create(&label).clone(),
                };
                registry.sub_registry_with_prefix(prefix).register(
                    "retries",
                    "Reconciles that failed or could not do all they should, queued again with backoff",
                    q.retries.clone(),
                );
                q
            });
            let tracker = Tracker::new(
                name,
                synced.get_or_create(&label).clone(),
                relists.get_or_create(&label).clone(),
                queue,
            );
            by_name.insert(name, tracker);
        }
        Self { by_name }
    }

    /// The tracker of controller `name` (one of [`CONTROLLERS`]); a
    /// standalone one for a name outside the set.
    pub fn get(&self, name: &'static str) -> Tracker {
        self.by_name
            .get(name)
            .cloned()
            .unwrap_or_else(|| Tracker::standalone(name))
    }
}

/// Adds a `/readyz` check `controller-<name>` per tracker.
pub fn register_readiness(readiness: &Readiness, trackers: &[Tracker]) {
    for t in trackers {
        let t = t.clone();
        readiness.register(format!("controller-{}", t.name()), move || {
            t.check(STUCK_AFTER)
        });
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[tokio::test]
    async fn synced_only_once_every_feed_listed_and_relists_are_counted() {
        let t = Tracker::standalone("binding");
        assert!(!t.is_synced(), "no feed yet: not synced");
        let mut a = t.feed_started();
        let mut b = t.feed_started();
        a.listed();
        assert!(!t.is_synced());
        assert!(matches!(t.check(STUCK_AFTER), Check::Fail(m) if m.starts_with("1 of")));
        let waiter = tokio::spawn({
            let t = t.clone();
            async move { t.wait_synced().await }
        });
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        b.listed();
        waiter.await.unwrap();
        assert!(t.is_synced());
        assert_eq!(t.relists(), 0);
        a.listed();
        a.listed();
        assert_eq!(t.relists(), 2);
        assert!(t.is_synced(), "a relist does not unsync");
        assert_eq!(t.check(STUCK_AFTER), Check::Ok);
    }

    #[tokio::test(start_paused = true)]
    async fn an_old_queued_key_warns() {
        let t = Tracker::standalone("binding");
        t.feed_started().listed();
        let q = WorkQueue::new();
        q.add("k");
        tokio::time::advance(Duration::from_secs(400)).await;
        t.sample(&q);
        match t.check(STUCK_AFTER) {
            Check::Warn(m) => assert!(m.contains("400s"), "{m}"),
            other => panic!("{other:?}"),
        }
    }
}
