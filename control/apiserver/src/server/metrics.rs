//! API server metrics (prefix `hami_apiserver`). Labels come from fixed sets
//! only: the verb, the resource as registered (or "other"), the HTTP code,
//! and with authentication on, the kind of user ([`user_kind`]); the reason
//! of a [`limits`](super::limits) refusal and the kind of request held.

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::{EncodeLabel, EncodeLabelSet, LabelSetEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq)]
pub struct RequestLabels {
    /// get, list, watch, create, update, patch, delete, deletecollection, discovery.
    pub verb: &'static str,
    /// `deployments.apps`, `pods`, or "other" for paths outside the registry.
    pub resource: String,
    pub code: u16,
    /// [`user_kind`] of the request's user; `None` (no label at all) when
    /// authentication is off: every request is then the same
    /// `system:unsecured`, and the series stay as they were before users.
    pub user_kind: Option<&'static str>,
}

impl EncodeLabelSet for RequestLabels {
    fn encode(&self, encoder: &mut LabelSetEncoder) -> Result<(), std::fmt::Error> {
        ("verb", self.verb).encode(encoder.encode_label())?;
        ("resource", self.resource.as_str()).encode(encoder.encode_label())?;
        ("code", self.code).encode(encoder.encode_label())?;
        if let Some(kind) = self.user_kind {
            ("user_kind", kind).encode(encoder.encode_label())?;
        }
        Ok(())
    }
}

/// The `user_kind` label: `admin` (in `system:masters`), `agent` (a hami
/// agent, `system:hami:agent:*`), `serviceaccount`, `anonymous`, or `user`.
pub fn user_kind(user: &crate::server::rbac::UserInfo) -> &'static str {
    if user
        .groups
        .iter()
        .any(|g| g == crate::server::rbac::SYSTEM_MASTERS)
    {
        "admin"
    } else if user.name.starts_with("system:hami:agent:") {
        "agent"
    } else if user.name.starts_with("system:serviceaccount:") {
        "serviceaccount"
    } else if user.name == "system:anonymous" {
        "anonymous"
    } else {
        "user"
    }
}

/// A request's verb as a label (a fixed set; anything else is "other").
pub fn verb_label(verb: &str) -> &'static str {
    const VERBS: [&str; 14] = [
        "get",
        "list",
        "watch",
        "create",
        "update",
        "patch",
        "delete",
        "deletecollection",
        "impersonate",
        "post",
        "put",
        "head",
        "options",
        "connect",
    ];
    VERBS
        .iter()
        .find(|v| **v == verb)
        .copied()
        .unwrap_or("other")
}

/// The `verb` and `resource` labels of a request answered before the
/// dispatcher saw it (refused by a filter): the verb from a fixed set, the
/// resource a served kind's `plural.group` or an access review's, else
/// "other" (never text taken from the path as is).
pub fn request_labels(
    state: &crate::server::State,
    attrs: &crate::server::rbac::Attributes,
) -> (&'static str, String) {
    use crate::server::auth::reviews;
    use crate::server::rbac::Attributes;
    match attrs {
        Attributes::NonResource { verb, .. } => (verb_label(verb), "other".to_owned()),
        Attributes::Resource {
            verb,
            api_group,
            resource,
            ..
        } => {
            let registry = state.registry.load();
            let served = registry
                .kinds()
                .iter()
                .find(|k| &k.group == api_group && &k.plural == resource)
                .map(|k| k.group_resource());
            let label = served
                .or_else(|| {
                    reviews::resource(api_group, resource)
                        .map(|r| format!("{}.{}", r.plural, reviews::GROUP))
                })
                .unwrap_or_else(|| "other".to_owned());
            (verb_label(verb), label)
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct VerbLabels {
    pub verb: &'static str,
}

/// Why [`limits`](super::limits) refused a request: `rate`, `in_flight`,
/// `watches`, `users` (too many users hold requests at once) or
/// `header_size`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RejectLabels {
    pub reason: &'static str,
}

/// What an admitted request holds: `readonly` or `mutating` (requests other
/// than watches, until their response is sent) or `watch`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct InflightLabels {
    pub kind: &'static str,
}

/// Handles to the API server's metrics.
#[derive(Clone)]
pub struct ApiMetrics {
    pub requests: Family<RequestLabels, Counter>,
    pub latency: Family<VerbLabels, Histogram>,
    pub open_watches: Gauge,
    pub store_revision: Gauge<u64, AtomicU64>,
    /// RBAC objects the current policy left out (unreadable, duplicate).
    pub rbac_skipped_objects: Gauge,
    /// Requests refused by the per-user limits and the header size limit.
    pub rejected_requests: Family<RejectLabels, Counter>,
    /// Requests and watches admitted by the limits and not yet done.
    pub inflight_requests: Family<InflightLabels, Gauge>,
    /// Watches closed because their client left its buffer full too long.
    pub slow_watches_closed: Counter,
}

fn latency_histogram() -> Histogram {
    // 0.5 ms .. ~4 s in powers of two: store reads answer in well under a
    // millisecond, durable writes in a few ms, large lists in 100s of ms.
    Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
        0.0005, 2.0, 14,
    ))
}

impl ApiMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let sub = registry.sub_registry_with_prefix("hami_apiserver");
        let requests = Family::<RequestLabels, Counter>::default();
        sub.register(
            "requests",
            "API requests by verb, resource and HTTP code",
            requests.clone(),
        );
        let latency = Family::<VerbLabels, Histogram>::new_with_constructor(
            latency_histogram as fn() -> Histogram,
        );
        sub.register_with_unit(
            "request_duration",
            "Time to answer a request (watches: time to start streaming)",
            prometheus_client::registry::Unit::Seconds,
            latency.clone(),
        );
        let open_watches = Gauge::default();
        sub.register(
            "open_watches",
            "Watch streams currently open",
            open_watches.clone(),
        );
        let store_revision = Gauge::<u64, AtomicU64>::default();
        sub.register(
            "store_revision",
            "The store's current global revision",
            store_revision.clone(),
        );
        let rbac_skipped_objects = Gauge::default();
        sub.register(
            "rbac_skipped_objects",
            "Roles, ClusterRoles and bindings left out of the RBAC policy because they cannot be read",
            rbac_skipped_objects.clone(),
        );
        let rejected_requests = Family::<RejectLabels, Counter>::default();
        sub.register(
            "rejected_requests",
            "Requests refused by the per-user limits (429) or the header size limit (431), by reason",
            rejected_requests.clone(),
        );
        let inflight_requests = Family::<InflightLabels, Gauge>::default();
        sub.register(
            "inflight_requests",
            "Requests the per-user limits admitted and whose responses are not yet sent, by kind (readonly, mutating, watch)",
            inflight_requests.clone(),
        );
        let slow_watches_closed = Counter::default();
        sub.register(
            "slow_watches_closed",
            "Watches closed because their client took no event for the stall timeout while its buffer was full",
            slow_watches_closed.clone(),
        );
        Self {
            requests,
            latency,
            open_watches,
            store_revision,
            rbac_skipped_objects,
            rejected_requests,
            inflight_requests,
            slow_watches_closed,
        }
    }
}

/// Decrements the open-watch gauge when a watch stream ends.
pub struct WatchGuard(Gauge);

impl WatchGuard {
    pub fn new(gauge: &Gauge) -> Self {
        gauge.inc();
        Self(gauge.clone())
    }
}

impl Drop for WatchGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::server::rbac::UserInfo;

    #[test]
    fn user_kinds() {
        let user = |name: &str, groups: &[&str]| UserInfo {
            name: name.to_owned(),
            groups: groups.iter().map(|g| (*g).to_owned()).collect(),
        };
        let cases = [
            (user("kubernetes-admin", &["system:masters"]), "admin"),
            (user("system:hami:agent:m1", &["system:masters"]), "admin"),
            (
                user("system:hami:agent:m1", &["system:hami:agents"]),
                "agent",
            ),
            (user("system:serviceaccount:ns:sa", &[]), "serviceaccount"),
            (
                user("system:anonymous", &["system:unauthenticated"]),
                "anonymous",
            ),
            (user("alice", &["system:authenticated"]), "user"),
        ];
        for (u, want) in cases {
            assert_eq!(user_kind(&u), want, "{u:?}");
        }
    }

    #[test]
    fn verb_labels_come_from_a_fixed_set() {
        assert_eq!(verb_label("list"), "list");
        assert_eq!(verb_label("watch"), "watch");
        assert_eq!(verb_label("PROPFIND-anything"), "other");
        assert_eq!(verb_label(""), "other");
    }

    #[test]
    fn limit_metrics_are_named_as_documented() {
        let mut registry = Registry::default();
        let metrics = ApiMetrics::register(&mut registry);
        metrics
            .rejected_requests
            .get_or_create(&RejectLabels { reason: "rate" })
            .inc();
        metrics
            .inflight_requests
            .get_or_create(&InflightLabels { kind: "watch" })
            .inc();
        metrics.slow_watches_closed.inc();
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        for line in [
            r#"hami_apiserver_rejected_requests_total{reason="rate"} 1"#,
            r#"hami_apiserver_inflight_requests{kind="watch"} 1"#,
            "hami_apiserver_slow_watches_closed_total 1",
        ] {
            assert!(text.contains(line), "{line} in {text}");
        }
    }

    #[test]
    fn user_kind_label_is_left_out_when_unknown() {
        let mut registry = Registry::default();
        let metrics = ApiMetrics::register(&mut registry);
        for user_kind in [None, Some("user")] {
            metrics
                .requests
                .get_or_create(&RequestLabels {
                    verb: "get",
                    resource: "pods".into(),
                    code: 200,
                    user_kind,
                })
                .inc();
        }
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        assert!(
            text.contains(
                r#"hami_apiserver_requests_total{verb="get",resource="pods",code="200"} 1"#
            ),
            "{text}"
        );
        assert!(
            text.contains(
                r#"hami_apiserver_requests_total{verb="get",resource="pods",code="200",user_kind="user"} 1"#
            ),
            "{text}"
        );
    }
}
