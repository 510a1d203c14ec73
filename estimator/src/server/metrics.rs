//! The estimator's metrics (prefix `hami_estimator_`). Every series carries
//! the member `cluster` (bounded by the fleet): one process may serve the
//! estimators of several clusters over one registry (hami-control's Push
//! agents, the simulated members of `hami up --sim-clusters`).
//!
//! The snapshot gauges are read from each tracked snapshot at scrape time
//! (a [`Collector`]), so they are current wherever the registry is served
//! and a stopped estimator's series go with its snapshot.

use std::sync::{Arc, Weak};

use parking_lot::Mutex;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

use crate::snapshot::{Snapshot, SnapshotStats};

/// Cluster and gRPC method (fixed set).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MethodLabels {
    /// The member cluster the estimator answers for.
    pub cluster: String,
    /// `max_available_replicas`, `max_available_component_sets`,
    /// `get_unschedulable_replicas`, `max_available_replicas_batch` or
    /// `max_available_component_sets_batch`.
    pub method: &'static str,
}

/// Cluster, gRPC method and outcome (fixed sets).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// The member cluster the estimator answers for.
    pub cluster: String,
    /// As in [`MethodLabels`].
    pub method: &'static str,
    /// `ok` or `invalid_argument`.
    pub code: &'static str,
}

/// The snapshots whose gauges are encoded on scrape, by cluster. A weak
/// reference: tracking never keeps a snapshot alive.
type Tracked = Arc<Mutex<Vec<(String, Weak<Mutex<Snapshot>>)>>>;

/// Estimator metrics. Cloning shares them.
#[derive(Debug, Clone)]
pub struct EstimatorMetrics {
    /// Requests by cluster, method and outcome.
    pub requests: Family<RequestLabels, Counter>,
    /// Request latency by cluster and method, seconds.
    pub latency: Family<MethodLabels, Histogram>,
    /// Component-set searches that ran out of steps and answered a proven
    /// lower bound instead of the maximum, by cluster and method.
    pub sets_search_truncated: Family<MethodLabels, Counter>,
    tracked: Tracked,
}

impl EstimatorMetrics {
    /// Registers the metrics under `hami_estimator_`.
    pub fn register(registry: &mut Registry) -> Self {
        let r = registry.sub_registry_with_prefix("hami_estimator");
        let requests = Family::<RequestLabels, Counter>::default();
        r.register(
            "requests",
            "gRPC requests by method and outcome",
            requests.clone(),
        );
        // An indexed query takes microseconds; a cold one over a large
        // cluster up to milliseconds. Buckets from 5 µs doubling to ~80 ms
        // cover both with resolution where the answers usually fall.
        let latency = Family::<MethodLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
                5e-6, 2.0, 15,
            ))
        });
        r.register_with_unit(
            "request_duration",
            "gRPC request latency",
            Unit::Seconds,
            latency.clone(),
        );
        let sets_search_truncated = Family::<MethodLabels, Counter>::default();
        r.register(
            "component_sets_search_truncated",
            "Component-set searches that ran out of steps and answered a proven lower bound",
            sets_search_truncated.clone(),
        );
        let tracked = Tracked::default();
        r.register_collector(Box::new(SnapshotCollector {
            tracked: tracked.clone(),
        }));
        Self {
            requests,
            latency,
            sets_search_truncated,
            tracked,
        }
    }

    /// Records one request for `cluster`.
    pub fn observe(&self, cluster: &str, method: &'static str, ok: bool, seconds: f64) {
        let code = if ok { "ok" } else { "invalid_argument" };
        self.requests
            .get_or_create(&RequestLabels {
                cluster: cluster.to_string(),
                method,
                code,
            })
            .inc();
        self.latency
            .get_or_create(&MethodLabels {
                cluster: cluster.to_string(),
                method,
            })
            .observe(seconds);
    }

    /// Encodes `snapshot`'s gauges under `cluster` from now on, for as long
    /// as the snapshot lives. A later snapshot of the same cluster (an agent
    /// restarted in the same process) replaces the earlier one.
    pub fn track(&self, cluster: &str, snapshot: &Arc<Mutex<Snapshot>>) {
        let mut tracked = self.tracked.lock();
        tracked.retain(|(c, s)| c != cluster && s.strong_count() > 0);
        tracked.push((cluster.to_string(), Arc::downgrade(snapshot)));
    }

    /// The live tracked snapshots' counts, by cluster.
    pub fn snapshot_stats(&self) -> Vec<(String, SnapshotStats)> {
        stats_of(&self.tracked)
    }
}

fn stats_of(tracked: &Tracked) -> Vec<(String, SnapshotStats)> {
    let live: Vec<(String, Arc<Mutex<Snapshot>>)> = tracked
        .lock()
        .iter()
        .filter_map(|(c, s)| Some((c.clone(), s.upgrade()?)))
        .collect();
    // Each snapshot locked on its own, only to count.
    live.into_iter()
        .map(|(c, s)| {
            let stats = s.lock().stats();
            (c, stats)
        })
        .collect()
}

/// Encodes the tracked snapshots' gauges on every scrape.
#[derive(Debug)]
struct SnapshotCollector {
    tracked: Tracked,
}

/// A snapshot gauge: name, help, value.
type SnapshotGauge = (&'static str, &'static str, fn(&SnapshotStats) -> usize);

const SNAPSHOT_GAUGES: [SnapshotGauge; 3] = [
    ("snapshot_nodes", "Nodes in the snapshot", |s| s.nodes),
    ("snapshot_pods", "Pods in the snapshot", |s| s.pods),
    ("index_classes", "Capacity classes in the index", |s| {
        s.classes
    }),
];

impl Collector for SnapshotCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let stats = stats_of(&self.tracked);
        for (name, help, value) in SNAPSHOT_GAUGES {
            let mut family = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
            for (cluster, s) in &stats {
                let labels = [("cluster", cluster.as_str())];
                let v = i64::try_from(value(s)).unwrap_or(i64::MAX);
                family.encode_family(&labels)?.encode_gauge(&v)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use crate::fleet::{GenerateOptions, generate};

    fn encode(registry: &Registry) -> String {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, registry).unwrap();
        text
    }

    #[test]
    fn snapshot_gauges_follow_the_tracked_snapshots_per_cluster() {
        let mut registry = Registry::default();
        let m = EstimatorMetrics::register(&mut registry);
        let fleet = generate(&GenerateOptions {
            nodes: 3,
            pods_per_node: 2,
            ..GenerateOptions::default()
        });
        let a = Arc::new(Mutex::new(fleet.snapshot(0).unwrap()));
        let b = Arc::new(Mutex::new(Snapshot::new()));
        m.track("member-1", &a);
        m.track("member-2", &b);
        m.observe("member-1", "max_available_replicas", true, 1e-5);
        let text = encode(&registry);
        let stats = a.lock().stats();
        assert_eq!(stats.nodes, 3);
        for line in [
            r#"hami_estimator_snapshot_nodes{cluster="member-1"} 3"#.to_string(),
            format!(
                r#"hami_estimator_snapshot_pods{{cluster="member-1"}} {}"#,
                stats.pods
            ),
            r#"hami_estimator_snapshot_nodes{cluster="member-2"} 0"#.to_string(),
            r#"hami_estimator_requests_total{cluster="member-1",method="max_available_replicas",code="ok"} 1"#.to_string(),
        ] {
            assert!(text.contains(&line), "{line} missing in\n{text}");
        }
        // A restarted estimator of member-1 replaces the first; a dropped
        // snapshot's series go.
        let again = Arc::new(Mutex::new(Snapshot::new()));
        m.track("member-1", &again);
        drop(b);
        let text = encode(&registry);
        assert!(text.contains(r#"hami_estimator_snapshot_nodes{cluster="member-1"} 0"#));
        assert!(!text.contains(r#"cluster="member-2"}"#), "{text}");
        assert_eq!(text.matches("hami_estimator_snapshot_nodes{").count(), 1);
    }
}
