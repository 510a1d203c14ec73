//! kube's default ClusterRoles and ClusterRoleBindings (bootstrappolicy),
//! kept to the kinds hami serves.

use serde_json::{Value, json};

use super::*;

pub(super) const READ: &str = "get list watch";
pub(super) const WRITE: &str = "create update patch delete deletecollection";
pub(super) const AGGREGATE_TO_ADMIN: &str = "rbac.authorization.k8s.io/aggregate-to-admin";
pub(super) const AGGREGATE_TO_EDIT: &str = "rbac.authorization.k8s.io/aggregate-to-edit";
pub(super) const AGGREGATE_TO_VIEW: &str = "rbac.authorization.k8s.io/aggregate-to-view";

pub(super) fn words(list: &str) -> Vec<&str> {
    list.split_whitespace().collect()
}

/// Space-separated verbs; `read` and `write` stand for kube's verb sets.
pub(super) fn verbs(list: &str) -> Vec<&str> {
    let expand = |verb| match verb {
        "read" => words(READ),
        "write" => words(WRITE),
        verb => vec![verb],
    };
    words(list).into_iter().flat_map(expand).collect()
}

pub(super) fn rule(verb_list: &str, group: &str, resources: &str) -> Value {
    json!({"apiGroups": [group], "resources": words(resources), "verbs": verbs(verb_list)})
}

pub(super) fn url_rule(verb_list: &str, urls: &str) -> Value {
    json!({"nonResourceURLs": words(urls), "verbs": verbs(verb_list)})
}

/// Rules written one a line as `group | verbs | resources`; an empty group is
/// the core group.
pub(super) fn rules(table: &str) -> Vec<Value> {
    table
        .lines()
        .filter_map(|line| {
            let mut fields = line.split('|').map(str::trim);
            let (group, verb_list, resources) = (fields.next()?, fields.next()?, fields.next()?);
            Some(rule(verb_list, group, resources))
        })
        .collect()
}

/// kube's bootstrap metadata: the `rbac-defaults` label and the autoupdate
/// annotation, plus `label: "true"`.
pub(super) fn bootstrap_meta(name: &str, label: Option<&str>) -> Value {
    let mut labels = json!({"kubernetes.io/bootstrapping": "rbac-defaults"});
    if let Some(key) = label {
        labels[key] = json!("true");
    }
    json!({
        "name": name,
        "labels": labels,
        "annotations": {"rbac.authorization.kubernetes.io/autoupdate": "true"},
    })
}

pub(super) fn cluster_role(name: &str, label: Option<&str>, rules: Vec<Value>) -> Value {
    json!({
        "apiVersion": RBAC_V1,
        "kind": "ClusterRole",
        "metadata": bootstrap_meta(name, label),
        "rules": rules,
    })
}

/// A ClusterRole whose rules are those of the roles labelled `from: "true"`.
pub(super) fn aggregated_role(name: &str, label: Option<&str>, from: &str) -> Value {
    let mut role = cluster_role(name, label, Vec::new());
    role["aggregationRule"] = json!({"clusterRoleSelectors": [{"matchLabels": {from: "true"}}]});
    role
}

pub(super) const ADMIN_RULES: &str = "
    authorization.k8s.io      | create     | localsubjectaccessreviews
    rbac.authorization.k8s.io | read write | roles rolebindings";

pub(super) const EDIT_RULES: &str = "
                      | read        | secrets
                      | impersonate | serviceaccounts
                      | write       | pods
                      | write       | serviceaccounts services persistentvolumeclaims configmaps secrets events
    apps              | write       | statefulsets statefulsets/scale daemonsets deployments
    apps              | write       | deployments/scale replicasets replicasets/scale
    autoscaling       | write       | horizontalpodautoscalers
    batch             | write       | jobs cronjobs
    policy            | write       | poddisruptionbudgets
    networking.k8s.io | write       | networkpolicies ingresses";

pub(super) const VIEW_RULES: &str = "
                      | read | pods serviceaccounts services services/status endpoints configmaps
                      | read | persistentvolumeclaims persistentvolumeclaims/status
                      | read | limitranges resourcequotas resourcequotas/status events pods/status
                      | read | namespaces namespaces/status
    discovery.k8s.io  | read | endpointslices
    apps              | read | statefulsets statefulsets/status statefulsets/scale
    apps              | read | daemonsets daemonsets/status
    apps              | read | deployments deployments/status deployments/scale
    apps              | read | replicasets replicasets/status replicasets/scale
    autoscaling       | read | horizontalpodautoscalers horizontalpodautoscalers/status
    batch             | read | jobs jobs/status cronjobs cronjobs/status
    policy            | read | poddisruptionbudgets poddisruptionbudgets/status
    networking.k8s.io | read | networkpolicies ingresses ingresses/status";

pub(super) const HAMI_EDIT: &str = "
    policy.hami.io        | write | propagationpolicies overridepolicies
    multicluster.x-k8s.io | write | serviceexports serviceimports";

pub(super) const HAMI_VIEW: &str = "
    policy.hami.io        | read | propagationpolicies overridepolicies
    policy.hami.io        | read | federatedresourcequotas federatedresourcequotas/status
    work.hami.io          | read | resourcebindings resourcebindings/status works works/status
    multicluster.x-k8s.io | read | serviceexports serviceimports";

/// kube's default ClusterRoles (bootstrappolicy), their rules kept to what
/// hami serves: kube's minus replicationcontrollers, controllerrevisions, the
/// extensions group and the subresources hami has no handler for (pods/exec,
/// attach, portforward, proxy, log, eviction, binding; services/proxy;
/// serviceaccounts/token; deployments/rollback). `hami:aggregate-to-view` and
/// `hami:aggregate-to-edit` add hami's namespaced kinds the same way.
pub fn default_cluster_roles() -> Vec<Value> {
    let health = "/livez /readyz /healthz /version /version/";
    let discovery = format!("{health} /openapi /openapi/* /api /api/* /apis /apis/*");
    let self_reviews = "selfsubjectaccessreviews selfsubjectrulesreviews";
    let admin = Some(AGGREGATE_TO_ADMIN);
    let (edit, view) = (Some(AGGREGATE_TO_EDIT), Some(AGGREGATE_TO_VIEW));
    vec![
        cluster_role("cluster-admin", None, cluster_admin_json()),
        cluster_role("system:discovery", None, vec![url_rule("get", &discovery)]),
        cluster_role(
            "system:basic-user",
            None,
            vec![rule("create", "authorization.k8s.io", self_reviews)],
        ),
        cluster_role(
            "system:public-info-viewer",
            None,
            vec![url_rule("get", health)],
        ),
        cluster_role(
            "system:monitoring",
            None,
            vec![url_rule("get", MONITORING_URLS)],
        ),
        aggregated_role("admin", None, AGGREGATE_TO_ADMIN),
        aggregated_role("edit", admin, AGGREGATE_TO_EDIT),
        aggregated_role("view", edit, AGGREGATE_TO_VIEW),
        cluster_role("system:aggregate-to-admin", admin, rules(ADMIN_RULES)),
        cluster_role("system:aggregate-to-edit", edit, rules(EDIT_RULES)),
        cluster_role("system:aggregate-to-view", view, rules(VIEW_RULES)),
        cluster_role("hami:aggregate-to-edit", edit, rules(HAMI_EDIT)),
        cluster_role("hami:aggregate-to-view", view, rules(HAMI_VIEW)),
        cluster_role(BOOTSTRAPPER_ROLE, None, rules(BOOTSTRAPPER_RULES)),
        cluster_role(AGENT_ROLE, None, rules(AGENT_RULES)),
    ]
}

/// kube's default ClusterRoleBindings for the roles above: `cluster-admin` to
/// `system:masters`, discovery and basic-user to `system:authenticated`,
/// public-info-viewer to everyone, and monitoring to `system:monitoring`.
pub fn default_cluster_role_bindings() -> Vec<Value> {
    let binding = |name: &str, groups: &str| {
        let subjects: Vec<Value> = words(groups)
            .into_iter()
            .map(|g| json!({"apiGroup": RBAC_GROUP, "kind": "Group", "name": g}))
            .collect();
        json!({
            "apiVersion": RBAC_V1,
            "kind": "ClusterRoleBinding",
            "metadata": bootstrap_meta(name, None),
            "roleRef": {"apiGroup": RBAC_GROUP, "kind": "ClusterRole", "name": name},
            "subjects": subjects,
        })
    };
    vec![
        binding("cluster-admin", SYSTEM_MASTERS),
        binding("system:discovery", "system:authenticated"),
        binding("system:basic-user", "system:authenticated"),
        binding(
            "system:public-info-viewer",
            "system:authenticated system:unauthenticated",
        ),
        binding("system:monitoring", MONITORING_GROUP),
        binding(
            BOOTSTRAPPER_ROLE,
            &format!("{BOOTSTRAPPERS_GROUP} {AGENTS_GROUP}"),
        ),
    ]
}

/// The namespace kubeadm (and kube-apiserver) keep readable by anyone.
pub const KUBE_PUBLIC: &str = "kube-public";
/// kubeadm's Role and RoleBinding that let anonymous clients read the
/// `cluster-info` ConfigMap (what joining agents start from).
pub const CLUSTER_INFO_ROLE: &str = "kubeadm:bootstrap-signer-clusterinfo";
/// The group kube binds to `system:monitoring` (metrics and health probes).
pub const MONITORING_GROUP: &str = "system:monitoring";
/// kube's `system:monitoring` URLs.
const MONITORING_URLS: &str =
    "/metrics /metrics/slis /livez /readyz /healthz /livez/* /readyz/* /healthz/*";

/// kubeadm's namespaced defaults, in [`KUBE_PUBLIC`]: Roles, then RoleBindings.
pub fn default_namespaced_rbac() -> (Vec<Value>, Vec<Value>) {
    let meta = json!({"name": CLUSTER_INFO_ROLE, "namespace": KUBE_PUBLIC});
    let role = json!({
        "apiVersion": RBAC_V1,
        "kind": "Role",
        "metadata": meta,
        "rules": [{"apiGroups": [""], "resources": ["configmaps"],
                   "resourceNames": ["cluster-info"], "verbs": ["get"]}],
    });
    let binding = json!({
        "apiVersion": RBAC_V1,
        "kind": "RoleBinding",
        "metadata": meta,
        "roleRef": {"apiGroup": RBAC_GROUP, "kind": "Role", "name": CLUSTER_INFO_ROLE},
        "subjects": [{"apiGroup": RBAC_GROUP, "kind": "User", "name": "system:anonymous"}],
    });
    (vec![role], vec![binding])
}

/// kube's group of every bootstrap token's user (`system:bootstrap:<id>`).
pub const BOOTSTRAPPERS_GROUP: &str = "system:bootstrappers";
/// The group (O) of every agent's certificate.
pub const AGENTS_GROUP: &str = "system:hami:agents";
/// An agent's user (CN) is this and its cluster's name.
pub const AGENT_USER_PREFIX: &str = "system:hami:agent:";
/// What a joining agent may do with the CSR API, as kube's
/// `system:node-bootstrapper` (kubeadm binds it to `system:bootstrappers`);
/// agents keep it to renew their certificates.
pub const BOOTSTRAPPER_ROLE: &str = "system:hami:bootstrapper";
/// What an agent does in its execution namespace `hami-es-<cluster>`,
/// granted there by a RoleBinding per cluster ([`agent_identity_rbac`]).
pub const AGENT_ROLE: &str = "system:hami:agent";

pub(super) const BOOTSTRAPPER_RULES: &str = "
    certificates.k8s.io | create get list watch | certificatesigningrequests";

/// Every call the agent (`agent/src/pull`) makes in its namespace, and no
/// other: the Works watcher (list, watch), `get_opt` of a Work before a
/// member delete, the finalizer merge patch, the status merge patch; the
/// Lease renewed by server-side apply (`patch`, and `create`, which kube
/// also asks of an apply that creates the object).
pub(super) const AGENT_RULES: &str = "
    work.hami.io        | get list watch patch | works
    work.hami.io        | patch                | works/status
    coordination.k8s.io | create patch         | leases";

/// The per-cluster confinement of the agent of `cluster`, as the CSR
/// controller creates it before it signs the agent's first certificate.
#[derive(Clone, Debug, PartialEq)]
pub struct AgentRbac {
    /// `system:hami:agent:<cluster>`: its own Cluster and namespace only.
    pub cluster_role: Value,
    /// That role to the user `system:hami:agent:<cluster>`.
    pub cluster_role_binding: Value,
    /// [`AGENT_ROLE`] to that user in `hami-es-<cluster>`.
    pub role_binding: Value,
}

/// The label naming the cluster whose agent a per-cluster object serves.
pub const AGENT_CLUSTER_LABEL: &str = "cluster.hami.io/agent";

/// The user name of `cluster`'s agent.
pub fn agent_user(cluster: &str) -> String {
    format!("{AGENT_USER_PREFIX}{cluster}")
}

/// The objects confining `cluster`'s agent (see [`AgentRbac`]). The
/// ClusterRole's rules, all limited by resourceNames, are what the agent's
/// registration and status loop send: a server-side apply of its Cluster
/// (`patch`; `create` when it makes the Cluster, as kube asks), a GET of
/// it, a merge patch of `clusters/status`, and a GET of its namespace
/// (created by this controller first; the agent tolerates 403 on create).
pub fn agent_identity_rbac(cluster: &str) -> AgentRbac {
    let user = agent_user(cluster);
    let namespace = hami_api::common::execution_namespace(cluster);
    let group = hami_api::common::CLUSTER_GROUP;
    let named = |verb_list: &str, api_group: &str, resources: &str, name: &str| {
        let mut r = rule(verb_list, api_group, resources);
        r["resourceNames"] = json!([name]);
        r
    };
    let metadata = |name: &str, ns: Option<&str>| {
        let mut m = json!({"name": name, "labels": {AGENT_CLUSTER_LABEL: cluster}});
        if let Some(ns) = ns {
            m["namespace"] = json!(ns);
        }
        m
    };
    let subject = json!([{"apiGroup": RBAC_GROUP, "kind": "User", "name": user}]);
    AgentRbac {
        cluster_role: json!({
            "apiVersion": RBAC_V1,
            "kind": "ClusterRole",
            "metadata": metadata(&user, None),
            "rules": [
                named("get create patch", group, "clusters", cluster),
                named("patch", group, "clusters/status", cluster),
                named("get", "", "namespaces", &namespace),
            ],
        }),
        cluster_role_binding: json!({
            "apiVersion": RBAC_V1,
            "kind": "ClusterRoleBinding",
            "metadata": metadata(&user, None),
            "roleRef": {"apiGroup": RBAC_GROUP, "kind": "ClusterRole", "name": user},
            "subjects": subject,
        }),
        role_binding: json!({
            "apiVersion": RBAC_V1,
            "kind": "RoleBinding",
            "metadata": metadata(AGENT_ROLE, Some(&namespace)),
            "roleRef": {"apiGroup": RBAC_GROUP, "kind": "ClusterRole", "name": AGENT_ROLE},
            "subjects": subject,
        }),
    }
}
