//! Quota metrics: `hami_quota_hard` and `hami_quota_used` (gauges, labels
//! `namespace`, `quota`, `resource`), encoded on scrape from the status
//! controller's last computed status, so a deleted quota's series are gone
//! at the next scrape; and the controller's own counters
//! (`hami_quota_reconciles{result}`, `hami_quota_status_writes`,
//! `hami_quota_work_writes{op}`).
//!
//! Label bounds: `namespace` and `quota` name FederatedResourceQuota
//! objects, which platform teams create one per tenant namespace (a handful
//! to a few hundred, never per workload or pod); `resource` is a resource
//! name of the quota's `spec.overall` (a few per quota). So the series count
//! is quotas × resources, set by operators, not by traffic — unlike pod or
//! binding names, which this module never uses as labels.

use std::collections::BTreeMap;
use std::sync::Arc;

use parking_lot::RwLock;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

use super::super::runner::ResultLabel;

/// One quota line: resource, hard, used (in the resource's unit: cores,
/// bytes, GPUs, MiB of GPU memory, percent of GPU cores).
pub type Line = (String, f64, f64);

/// The lines of every quota, by (namespace, name).
pub type Lines = Arc<RwLock<BTreeMap<(String, String), Vec<Line>>>>;

#[derive(Debug)]
struct QuotaCollector {
    lines: Lines,
}

impl Collector for QuotaCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        // Copy out under the read lock; encode without it.
        let lines = self.lines.read().clone();
        type Pick = fn(&Line) -> f64;
        let gauges: [(&str, &str, Pick); 2] = [
            (
                "hard",
                "A FederatedResourceQuota's overall limit per resource (cores, bytes, GPUs, MiB of GPU memory, percent of a GPU's cores)",
                |l| l.1,
            ),
            (
                "used",
                "A FederatedResourceQuota's usage over all clusters per resource, as admission counts it",
                |l| l.2,
            ),
        ];
        for (name, help, pick) in gauges {
            let mut family = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
            for ((ns, quota), ls) in &lines {
                for l in ls {
                    let labels = [
                        ("namespace", ns.as_str()),
                        ("quota", quota.as_str()),
                        ("resource", l.0.as_str()),
                    ];
                    family.encode_family(&labels)?.encode_gauge(&pick(l))?;
                }
            }
        }
        Ok(())
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct OpLabel {
    pub op: &'static str,
}

/// The quota controller's metrics (prefix `hami_quota_`).
#[derive(Clone)]
pub struct QuotaMetrics {
    pub(crate) lines: Lines,
    pub(crate) reconciles: Family<ResultLabel, Counter>,
    pub(crate) status_writes: Counter,
    pub(crate) work_writes: Family<OpLabel, Counter>,
    pub(crate) bad_objects: Counter,
    pub(crate) deletes_refused: Counter,
}

impl QuotaMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self {
            lines: Lines::default(),
            reconciles: Family::default(),
            status_writes: Counter::default(),
            work_writes: Family::default(),
            bad_objects: Counter::default(),
            deletes_refused: Counter::default(),
        };
        let sub = registry.sub_registry_with_prefix("hami_quota");
        sub.register_collector(Box::new(QuotaCollector {
            lines: m.lines.clone(),
        }));
        sub.register(
            "reconciles",
            "Quota status reconciles by result (changed, unchanged, deleted, error)",
            m.reconciles.clone(),
        );
        sub.register(
            "status_writes",
            "FederatedResourceQuota status writes",
            m.status_writes.clone(),
        );
        sub.register(
            "work_writes",
            "Writes of the Works carrying member ResourceQuotas, by op (create, update, delete)",
            m.work_writes.clone(),
        );
        sub.register(
            "objects_skipped",
            "Quotas, bindings or Works skipped because they could not be read",
            m.bad_objects.clone(),
        );
        sub.register(
            "deletes_refused",
            "Member ResourceQuota Work deletes the index asked for that the store refuted (the Cluster exists and the quota still assigns it)",
            m.deletes_refused.clone(),
        );
        m
    }

    pub(crate) fn work_write(&self, op: &'static str) {
        self.work_writes.get_or_create(&OpLabel { op }).inc();
    }
}
