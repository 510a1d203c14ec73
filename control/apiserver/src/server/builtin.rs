//! The built-in Kubernetes kinds hami serves, with Kubernetes' short names and
//! categories, and OpenAPI v3 schemas generated from k8s-openapi's types.

use k8s_openapi::api::{
    apps, autoscaling, batch, certificates, coordination, core, discovery, networking, policy,
    rbac, scheduling, storage,
};
use k8s_openapi::schemars::{JsonSchema, generate::SchemaSettings};
use serde_json::Value;

use super::registry::{PrinterColumn, ResourceKind};

/// The schema of `T` as a self-contained OpenAPI v3 schema (subschemas inlined).
pub fn openapi_schema<T: JsonSchema>() -> Option<Value> {
    let mut settings = SchemaSettings::openapi3();
    settings.inline_subschemas = true;
    let schema = settings.into_generator().into_root_schema_for::<T>();
    let mut value = serde_json::to_value(schema).ok()?;
    if let Some(object) = value.as_object_mut() {
        object.remove("$schema");
        object.remove("title");
    }
    Some(value)
}

struct Spec {
    group: &'static str,
    kind: &'static str,
    plural: &'static str,
    short_names: &'static [&'static str],
    all: bool,
    namespaced: bool,
    status: bool,
}

fn column(name: &str, type_: &str, json_path: &str) -> PrinterColumn {
    PrinterColumn {
        name: name.to_owned(),
        type_: type_.to_owned(),
        format: String::new(),
        description: String::new(),
        json_path: json_path.to_owned(),
        priority: 0,
    }
}

fn build(spec: Spec, schema: Option<Value>, printer_columns: Vec<PrinterColumn>) -> ResourceKind {
    build_version(spec, "v1", schema, printer_columns)
}

fn build_version(
    spec: Spec,
    version: &str,
    schema: Option<Value>,
    printer_columns: Vec<PrinterColumn>,
) -> ResourceKind {
    ResourceKind {
        group: spec.group.to_owned(),
        version: version.to_owned(),
        kind: spec.kind.to_owned(),
        list_kind: format!("{}List", spec.kind),
        plural: spec.plural.to_owned(),
        singular: spec.kind.to_lowercase(),
        short_names: spec.short_names.iter().map(|s| (*s).to_owned()).collect(),
        categories: if spec.all {
            vec!["all".to_owned()]
        } else {
            Vec::new()
        },
        namespaced: spec.namespaced,
        status_subresource: spec.status,
        scale: matches!(spec.kind, "Deployment" | "StatefulSet" | "ReplicaSet")
            .then(super::registry::ScalePaths::standard),
        schema,
        printer_columns,
        custom: false,
        terminating: false,
    }
}

/// Every built-in kind, core group first.
pub fn kinds() -> Vec<ResourceKind> {
    let replicas = || {
        vec![
            column("Desired", "integer", ".spec.replicas"),
            column("Ready", "integer", ".status.readyReplicas"),
        ]
    };
    vec![
        build(
            Spec {
                group: "",
                kind: "Namespace",
                plural: "namespaces",
                short_names: &["ns"],
                all: false,
                namespaced: false,
                status: true,
            },
            openapi_schema::<core::v1::Namespace>(),
            vec![column("Status", "string", ".status.phase")],
        ),
        build(
            Spec {
                group: "",
                kind: "Secret",
                plural: "secrets",
                short_names: &[],
                all: false,
                namespaced: true,
                status: false,
            },
            openapi_schema::<core::v1::Secret>(),
            vec![column("Type", "string", ".type")],
        ),
        build(
            Spec {
                group: "",
                kind: "ConfigMap",
                plural: "configmaps",
                short_names: &["cm"],
                all: false,
                namespaced: true,
                status: false,
            },
            openapi_schema::<core::v1::ConfigMap>(),
            Vec::new(),
        ),
        build(
            Spec {
                group: "",
                kind: "Service",
                plural: "services",
                short_names: &["svc"],
                all: true,
                namespaced: true,
                status: true,
            },
            openapi_schema::<core::v1::Service>(),
            vec![
                column("Type", "string", ".spec.type"),
                column("Cluster-IP", "string", ".spec.clusterIP"),
            ],
        ),
        build(
            Spec {
                group: "",
                kind: "Node",
                plural: "nodes",
                short_names: &["no"],
                all: false,
                namespaced: false,
                status: true,
            },
            openapi_schema::<core::v1::Node>(),
            Vec::new(),
        ),
        build(
            Spec {
                group: "",
                kind: "Pod",
                plural: "pods",
                short_names: &["po"],
                all: true,
                namespaced: true,
                status: true,
            },
            openapi_schema::<core::v1::Pod>(),
            vec![
                column("Status", "string", ".status.phase"),
                column("Node", "string", ".spec.nodeName"),
            ],
        ),
        build(
            Spec {
                group: "",
                kind: "Event",
                plural: "events",
                short_names: &["ev"],
                all: false,
                namespaced: true,
                status: false,
            },
            openapi_schema::<core::v1::Event>(),
            vec![
                column("Reason", "string", ".reason"),
                column("Message", "string", ".message"),
            ],
        ),
        // The member clusters' own quota: hami delivers a FederatedResourceQuota's
        // static assignments as ResourceQuotas (the simulator fills status).
        build(
            Spec {
                group: "",
                kind: "ResourceQuota",
                plural: "resourcequotas",
                short_names: &["quota"],
                all: false,
                namespaced: true,
                status: true,
            },
            openapi_schema::<core::v1::ResourceQuota>(),
            Vec::new(),
        ),
        build(
            Spec {
                group: "",
                kind: "ServiceAccount",
                plural: "serviceaccounts",
                short_names: &["sa"],
                all: false,
                namespaced: true,
                status: false,
            },
            openapi_schema::<core::v1::ServiceAccount>(),
            Vec::new(),
        ),
        build(
            Spec {
                group: "apps",
                kind: "Deployment",
                plural: "deployments",
                short_names: &["deploy"],
                all: true,
                namespaced: true,
                status: true,
            },
            openapi_schema::<apps::v1::Deployment>(),
            replicas(),
        ),
        build(
            Spec {
                group: "apps",
                kind: "StatefulSet",
                plural: "statefulsets",
                short_names: &["sts"],
                all: true,
                namespaced: true,
                status: true,
            },
            openapi_schema::<apps::v1::StatefulSet>(),
            replicas(),
        ),
        build(
            Spec {
                group: "apps",
                kind: "DaemonSet",
                plural: "daemonsets",
                short_names: &["ds"],
                all: true,
                namespaced: true,
                status: true,
            },
            openapi_schema::<apps::v1::DaemonSet>(),
            vec![
                column("Desired", "integer", ".status.desiredNumberScheduled"),
                column("Ready", "integer", ".status.numberReady"),
            ],
        ),
        build(
            Spec {
                group: "apps",
                kind: "ReplicaSet",
                plural: "replicasets",
                short_names: &["rs"],
                all: true,
                namespaced: true,
                status: true,
            },
            openapi_schema::<apps::v1::ReplicaSet>(),
            replicas(),
        ),
        build(
            Spec {
                group: "batch",
                kind: "Job",
                plural: "jobs",
                short_names: &[],
                all: true,
                namespaced: true,
                status: true,
            },
            openapi_schema::<batch::v1::Job>(),
            vec![
                column("Completions", "integer", ".spec.completions"),
                column("Succeeded", "integer", ".status.succeeded"),
            ],
        ),
        // kube's columns; CONDITION is computed (see `csr::condition_text`).
        build(
            Spec {
                group: super::csr::GROUP,
                kind: super::csr::KIND,
                plural: super::csr::PLURAL,
                short_names: &["csr"],
                all: false,
                namespaced: false,
                status: true,
            },
            openapi_schema::<certificates::v1::CertificateSigningRequest>(),
            vec![
                column("Age", "date", ".metadata.creationTimestamp"),
                column("SignerName", "string", ".spec.signerName"),
                column("Requestor", "string", ".spec.username"),
                column("RequestedDuration", "string", ".spec.expirationSeconds"),
                column("Condition", "string", super::csr::CONDITION_COLUMN),
            ],
        ),
        build(
            Spec {
                group: "coordination.k8s.io",
                kind: "Lease",
                plural: "leases",
                short_names: &[],
                all: false,
                namespaced: true,
                status: false,
            },
            openapi_schema::<coordination::v1::Lease>(),
            vec![column("Holder", "string", ".spec.holderIdentity")],
        ),
        build(
            Spec {
                group: "batch",
                kind: "CronJob",
                plural: "cronjobs",
                short_names: &["cj"],
                all: true,
                namespaced: true,
                status: true,
            },
            openapi_schema::<batch::v1::CronJob>(),
            vec![
                column("Schedule", "string", ".spec.schedule"),
                column("Suspend", "boolean", ".spec.suspend"),
                column("Last Schedule", "date", ".status.lastScheduleTime"),
            ],
        ),
        build(
            Spec {
                group: "",
                kind: "PersistentVolumeClaim",
                plural: "persistentvolumeclaims",
                short_names: &["pvc"],
                all: false,
                namespaced: true,
                status: true,
            },
            openapi_schema::<core::v1::PersistentVolumeClaim>(),
            vec![
                column("Status", "string", ".status.phase"),
                column("Volume", "string", ".spec.volumeName"),
                column("StorageClass", "string", ".spec.storageClassName"),
            ],
        ),
        build(
            Spec {
                group: "",
                kind: "Endpoints",
                plural: "endpoints",
                short_names: &["ep"],
                all: false,
                namespaced: true,
                status: false,
            },
            openapi_schema::<core::v1::Endpoints>(),
            Vec::new(),
        ),
        build(
            Spec {
                group: "",
                kind: "LimitRange",
                plural: "limitranges",
                short_names: &["limits"],
                all: false,
                namespaced: true,
                status: false,
            },
            openapi_schema::<core::v1::LimitRange>(),
            Vec::new(),
        ),
        build(
            Spec {
                group: "networking.k8s.io",
                kind: "Ingress",
                plural: "ingresses",
                short_names: &["ing"],
                all: false,
                namespaced: true,
                status: true,
            },
            openapi_schema::<networking::v1::Ingress>(),
            vec![column("Class", "string", ".spec.ingressClassName")],
        ),
        build(
            Spec {
                group: "networking.k8s.io",
                kind: "IngressClass",
                plural: "ingressclasses",
                short_names: &[],
                all: false,
                namespaced: false,
                status: false,
            },
            openapi_schema::<networking::v1::IngressClass>(),
            vec![column("Controller", "string", ".spec.controller")],
        ),
        build(
            Spec {
                group: "networking.k8s.io",
                kind: "NetworkPolicy",
                plural: "networkpolicies",
                short_names: &["netpol"],
                all: false,
                namespaced: true,
                status: false,
            },
            openapi_schema::<networking::v1::NetworkPolicy>(),
            Vec::new(),
        ),
        build(
            Spec {
                group: "discovery.k8s.io",
                kind: "EndpointSlice",
                plural: "endpointslices",
                short_names: &[],
                all: false,
                namespaced: true,
                status: false,
            },
            openapi_schema::<discovery::v1::EndpointSlice>(),
            vec![column("AddressType", "string", ".addressType")],
        ),
        build_version(
            Spec {
                group: "autoscaling",
                kind: "HorizontalPodAutoscaler",
                plural: "horizontalpodautoscalers",
                short_names: &["hpa"],
                all: true,
                namespaced: true,
                status: true,
            },
            "v2",
            openapi_schema::<autoscaling::v2::HorizontalPodAutoscaler>(),
            vec![
                column("Reference", "string", ".spec.scaleTargetRef.name"),
                column("MinPods", "integer", ".spec.minReplicas"),
                column("MaxPods", "integer", ".spec.maxReplicas"),
                column("Replicas", "integer", ".status.currentReplicas"),
            ],
        ),
        build(
            Spec {
                group: "policy",
                kind: "PodDisruptionBudget",
                plural: "poddisruptionbudgets",
                short_names: &["pdb"],
                all: false,
                namespaced: true,
                status: true,
            },
            openapi_schema::<policy::v1::PodDisruptionBudget>(),
            vec![
                column("Min Available", "string", ".spec.minAvailable"),
                column("Max Unavailable", "string", ".spec.maxUnavailable"),
            ],
        ),
        build(
            Spec {
                group: "scheduling.k8s.io",
                kind: "PriorityClass",
                plural: "priorityclasses",
                short_names: &["pc"],
                all: false,
                namespaced: false,
                status: false,
            },
            openapi_schema::<scheduling::v1::PriorityClass>(),
            vec![
                column("Value", "integer", ".value"),
                column("Global-Default", "boolean", ".globalDefault"),
            ],
        ),
        build(
            Spec {
                group: "storage.k8s.io",
                kind: "StorageClass",
                plural: "storageclasses",
                short_names: &["sc"],
                all: false,
                namespaced: false,
                status: false,
            },
            openapi_schema::<storage::v1::StorageClass>(),
            vec![column("Provisioner", "string", ".provisioner")],
        ),
        // RBAC objects are stored and served (Helm charts carry them); the
        // server does not authorize requests by them yet.
        build(
            Spec {
                group: "rbac.authorization.k8s.io",
                kind: "Role",
                plural: "roles",
                short_names: &[],
                all: false,
                namespaced: true,
                status: false,
            },
            openapi_schema::<rbac::v1::Role>(),
            Vec::new(),
        ),
        build(
            Spec {
                group: "rbac.authorization.k8s.io",
                kind: "RoleBinding",
                plural: "rolebindings",
                short_names: &[],
                all: false,
                namespaced: true,
                status: false,
            },
            openapi_schema::<rbac::v1::RoleBinding>(),
            vec![column("Role", "string", ".roleRef.name")],
        ),
        build(
            Spec {
                group: "rbac.authorization.k8s.io",
                kind: "ClusterRole",
                plural: "clusterroles",
                short_names: &[],
                all: false,
                namespaced: false,
                status: false,
            },
            openapi_schema::<rbac::v1::ClusterRole>(),
            Vec::new(),
        ),
        build(
            Spec {
                group: "rbac.authorization.k8s.io",
                kind: "ClusterRoleBinding",
                plural: "clusterrolebindings",
                short_names: &[],
                all: false,
                namespaced: false,
                status: false,
            },
            openapi_schema::<rbac::v1::ClusterRoleBinding>(),
            vec![column("Role", "string", ".roleRef.name")],
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deployment_schema_is_inlined_openapi() {
        let schema = openapi_schema::<apps::v1::Deployment>().unwrap();
        let replicas = schema
            .pointer("/properties/spec/properties/replicas/type")
            .and_then(Value::as_str);
        assert_eq!(replicas, Some("integer"));
        assert!(!schema.to_string().contains("$ref"));
    }

    #[test]
    fn short_names_match_kubernetes() {
        let kinds = kinds();
        let short = |plural: &str| {
            kinds
                .iter()
                .find(|k| k.plural == plural)
                .map(|k| k.short_names.clone())
                .unwrap()
        };
        assert_eq!(short("deployments"), vec!["deploy"]);
        assert_eq!(short("pods"), vec!["po"]);
        assert_eq!(short("namespaces"), vec!["ns"]);
        assert_eq!(short("statefulsets"), vec!["sts"]);
    }
}
