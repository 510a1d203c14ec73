#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::defaults::*;
use super::*;

fn user(name: &str, groups: &[&str]) -> UserInfo {
    UserInfo {
        name: name.to_owned(),
        groups: groups.iter().map(|g| (*g).to_owned()).collect(),
    }
}

fn some(s: &str) -> Option<String> {
    (!s.is_empty()).then(|| s.to_owned())
}

/// A resource request; `resource` may be `resource/subresource`, `""` means none.
fn req(verb: &str, group: &str, resource: &str, namespace: &str, name: &str) -> Attributes {
    let (resource, subresource) = match resource.split_once('/') {
        Some((r, s)) => (r, some(s)),
        None => (resource, None),
    };
    Attributes::Resource {
        verb: verb.to_owned(),
        api_group: group.to_owned(),
        resource: resource.to_owned(),
        subresource,
        namespace: some(namespace),
        name: some(name),
    }
}

fn path(verb: &str, path: &str) -> Attributes {
    Attributes::NonResource {
        verb: verb.to_owned(),
        path: path.to_owned(),
    }
}

fn parse_rule(value: Value) -> Rule {
    Rule::deserialize(&value).unwrap()
}

fn role(namespace: &str, name: &str, rules: Value) -> Value {
    json!({"apiVersion": RBAC_V1, "kind": "Role",
           "metadata": {"namespace": namespace, "name": name}, "rules": rules})
}

fn cluster_role_with(name: &str, labels: Value, rules: Value) -> Value {
    json!({"apiVersion": RBAC_V1, "kind": "ClusterRole",
           "metadata": {"name": name, "labels": labels}, "rules": rules})
}

fn subject(kind: &str, name: &str, namespace: &str) -> Value {
    let mut s = json!({"kind": kind, "name": name});
    if !namespace.is_empty() {
        s["namespace"] = json!(namespace);
    }
    s
}

fn role_binding(namespace: &str, name: &str, kind: &str, role: &str, subjects: Value) -> Value {
    json!({"apiVersion": RBAC_V1, "kind": "RoleBinding",
           "metadata": {"namespace": namespace, "name": name},
           "roleRef": {"apiGroup": RBAC_GROUP, "kind": kind, "name": role},
           "subjects": subjects})
}

fn cluster_binding(name: &str, role: &str, subjects: Value) -> Value {
    json!({"apiVersion": RBAC_V1, "kind": "ClusterRoleBinding", "metadata": {"name": name},
           "roleRef": {"apiGroup": RBAC_GROUP, "kind": "ClusterRole", "name": role},
           "subjects": subjects})
}

fn defaults_with(
    extra_roles: &[Value],
    role_bindings: &[Value],
    cluster_bindings: &[Value],
) -> Policy {
    let mut cluster_roles = default_cluster_roles();
    cluster_roles.extend_from_slice(extra_roles);
    let mut bindings = default_cluster_role_bindings();
    bindings.extend_from_slice(cluster_bindings);
    let policy = Policy::build(&[], &cluster_roles, role_bindings, &bindings);
    assert_eq!(policy.skipped(), &[] as &[String]);
    policy
}

fn allowed(policy: &Policy, u: &UserInfo, attrs: &Attributes) -> bool {
    policy.authorize(u, attrs).is_allowed()
}

fn denial(policy: &Policy, u: &UserInfo, attrs: &Attributes) -> String {
    match policy.authorize(u, attrs) {
        Decision::Deny { message } => message,
        Decision::Allow { reason } => panic!("allowed: {reason}"),
    }
}

fn reason(policy: &Policy, u: &UserInfo, attrs: &Attributes) -> String {
    match policy.authorize(u, attrs) {
        Decision::Allow { reason } => reason,
        Decision::Deny { message } => panic!("denied: {message}"),
    }
}

#[test]
fn verbs_match_exactly_or_by_wildcard() {
    let cases = [
        (json!(["get"]), "get", true),
        (json!(["get"]), "list", false),
        (json!(["get", "list"]), "list", true),
        (json!(["*"]), "deletecollection", true),
        (json!(["*"]), "impersonate", true),
        (json!([]), "get", false),
        (json!(["GET"]), "get", false),
    ];
    for (verbs, verb, want) in cases {
        let rule = parse_rule(json!({"verbs": verbs, "apiGroups": [""], "resources": ["pods"]}));
        assert_eq!(
            rule.allows(&req(verb, "", "pods", "ns", "p")),
            want,
            "{verbs} {verb}"
        );
    }
}

#[test]
fn api_groups_match_core_named_and_wildcard() {
    let cases = [
        (json!([""]), "", true),
        (json!([""]), "apps", false),
        (json!(["apps"]), "apps", true),
        (json!(["apps"]), "", false),
        (json!(["*"]), "", true),
        (json!(["*"]), "policy.hami.io", true),
        (json!([]), "", false),
        (json!(null), "", false),
    ];
    for (groups, group, want) in cases {
        let rule = parse_rule(json!({"verbs": ["get"], "apiGroups": groups, "resources": ["*"]}));
        assert_eq!(
            rule.allows(&req("get", group, "x", "ns", "")),
            want,
            "{groups} {group:?}"
        );
    }
}

#[test]
fn resources_match_with_subresources() {
    let cases = [
        ("pods", "pods", true),
        ("pods", "pods/log", false),
        ("pods", "pod", false),
        ("pods/log", "pods/log", true),
        ("pods/log", "pods", false),
        ("pods/log", "pods/exec", false),
        ("pods/log", "services/log", false),
        ("*/scale", "deployments/scale", true),
        ("*/scale", "statefulsets/scale", true),
        ("*/scale", "deployments", false),
        ("*/scale", "deployments/status", false),
        ("*/scale", "deployments/scalex", false),
        ("*", "deployments", true),
        ("*", "deployments/scale", true),
        ("deployments/*", "deployments/scale", false),
    ];
    for (resource, requested, want) in cases {
        let rule = parse_rule(json!({"verbs": ["*"], "apiGroups": ["*"], "resources": [resource]}));
        let got = rule.allows(&req("get", "apps", requested, "ns", "d"));
        assert_eq!(got, want, "rule {resource} request {requested}");
    }
}

#[test]
fn resource_names_only_match_requests_that_name_the_object() {
    // kube compares the request's name: create, list, watch and
    // deletecollection carry none unless a metadata.name field selector
    // puts one on a list or watch.
    let named = parse_rule(
        json!({"verbs": ["*"], "apiGroups": [""], "resources": ["configmaps"],
                                  "resourceNames": ["a"]}),
    );
    let any = parse_rule(json!({"verbs": ["*"], "apiGroups": [""], "resources": ["configmaps"]}));
    let cases = [
        ("get", "a", true, true),
        ("get", "b", false, true),
        ("update", "a", true, true),
        ("delete", "b", false, true),
        ("list", "", false, true),
        ("watch", "", false, true),
        ("create", "", false, true),
        ("deletecollection", "", false, true),
        ("list", "a", true, true),
        ("watch", "a", true, true),
    ];
    for (verb, name, want_named, want_any) in cases {
        let attrs = req(verb, "", "configmaps", "ns", name);
        assert_eq!(named.allows(&attrs), want_named, "named {verb} {name:?}");
        assert_eq!(any.allows(&attrs), want_any, "any {verb} {name:?}");
    }
    let star = parse_rule(
        json!({"verbs": ["get"], "apiGroups": [""], "resources": ["configmaps"],
                                 "resourceNames": ["*"]}),
    );
    assert!(
        !star.allows(&req("get", "", "configmaps", "ns", "a")),
        "no wildcard names"
    );
}

#[test]
fn non_resource_urls_match_exactly_or_by_trailing_star() {
    let cases = [
        ("/metrics", "/metrics", true),
        ("/metrics", "/metrics/x", false),
        ("/apis/*", "/apis/apps", true),
        ("/apis/*", "/apis/", true),
        ("/apis/*", "/apis", false),
        ("/healthz*", "/healthz", true),
        ("/healthz*", "/healthzfoo", true),
        ("/healthz**", "/healthz/etcd", true),
        ("*", "/anything", true),
        ("/version", "/version/", false),
    ];
    for (url, requested, want) in cases {
        let rule = parse_rule(json!({"verbs": ["get"], "nonResourceURLs": [url]}));
        assert_eq!(
            rule.allows(&path("get", requested)),
            want,
            "{url} {requested}"
        );
        assert!(!rule.allows(&path("post", requested)));
    }
    let urls = parse_rule(json!({"verbs": ["*"], "nonResourceURLs": ["*"]}));
    assert!(!urls.allows(&req("get", "", "pods", "", "")));
    let resources = parse_rule(json!({"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]}));
    assert!(!resources.allows(&path("get", "/metrics")));
}

#[test]
fn role_binding_to_a_cluster_role_is_limited_to_its_namespace() {
    let policy = Policy::build(
        &[],
        &[cluster_role_with(
            "pod-reader",
            json!({}),
            json!([{"verbs": ["get", "list"], "apiGroups": [""], "resources": ["pods"]}]),
        )],
        &[role_binding(
            "team-a",
            "read",
            "ClusterRole",
            "pod-reader",
            json!([subject("User", "alice", "")]),
        )],
        &[],
    );
    let alice = user("alice", &[]);
    assert!(allowed(
        &policy,
        &alice,
        &req("list", "", "pods", "team-a", "")
    ));
    assert!(!allowed(
        &policy,
        &alice,
        &req("list", "", "pods", "team-b", "")
    ));
    assert!(!allowed(&policy, &alice, &req("list", "", "pods", "", "")));
    assert!(!allowed(
        &policy,
        &user("bob", &[]),
        &req("list", "", "pods", "team-a", "")
    ));
    assert_eq!(
        reason(&policy, &alice, &req("get", "", "pods", "team-a", "p")),
        r#"RBAC: allowed by RoleBinding "read/team-a" of ClusterRole "pod-reader" to User "alice""#
    );
}

#[test]
fn role_binding_to_a_role_uses_the_role_of_its_namespace() {
    let rules = json!([{"verbs": ["get"], "apiGroups": [""], "resources": ["secrets"]}]);
    let policy = Policy::build(
        &[role("a", "r", rules.clone()), role("b", "other", rules)],
        &[],
        &[
            role_binding("a", "rb", "Role", "r", json!([subject("User", "u", "")])),
            // A Role of the same name in another namespace does not count.
            role_binding("b", "rb", "Role", "r", json!([subject("User", "u", "")])),
        ],
        &[],
    );
    let u = user("u", &[]);
    assert_eq!(
        reason(&policy, &u, &req("get", "", "secrets", "a", "s")),
        r#"RBAC: allowed by RoleBinding "rb/a" of Role "r" to User "u""#
    );
    assert_eq!(
        denial(&policy, &u, &req("get", "", "secrets", "b", "s")),
        r#"secrets "s" is forbidden: User "u" cannot get resource "secrets" in API group "" in the namespace "b": RBAC: role.rbac.authorization.k8s.io "r" not found"#
    );
}

#[test]
fn service_account_subjects() {
    let rules = json!([{"verbs": ["get"], "apiGroups": [""], "resources": ["configmaps"]}]);
    let policy = Policy::build(
        &[],
        &[cluster_role_with("cm", json!({}), rules)],
        &[
            role_binding(
                "ns1",
                "implicit",
                "ClusterRole",
                "cm",
                json!([subject("ServiceAccount", "builder", "")]),
            ),
            role_binding(
                "ns1",
                "explicit",
                "ClusterRole",
                "cm",
                json!([subject("ServiceAccount", "deployer", "ci")]),
            ),
        ],
        &[cluster_binding(
            "no-namespace",
            "cm",
            json!([subject("ServiceAccount", "orphan", "")]),
        )],
    );
    let cases = [
        ("system:serviceaccount:ns1:builder", "ns1", true),
        ("system:serviceaccount:ns2:builder", "ns1", false),
        ("system:serviceaccount:ns1:builder", "ns2", false),
        ("system:serviceaccount:ci:deployer", "ns1", true),
        ("system:serviceaccount:ns1:deployer", "ns1", false),
        ("system:serviceaccount:ns1:builderx", "ns1", false),
        ("system:serviceaccount:ns1", "ns1", false),
        ("builder", "ns1", false),
        // A ClusterRoleBinding has no namespace to fill in: never applies.
        ("system:serviceaccount:ns1:orphan", "ns1", false),
        ("system:serviceaccount::orphan", "ns1", false),
    ];
    for (name, namespace, want) in cases {
        let attrs = req("get", "", "configmaps", namespace, "c");
        assert_eq!(
            allowed(&policy, &user(name, &[]), &attrs),
            want,
            "{name} in {namespace}"
        );
    }
    assert_eq!(
        reason(
            &policy,
            &user("system:serviceaccount:ns1:builder", &[]),
            &req("get", "", "configmaps", "ns1", "c")
        ),
        r#"RBAC: allowed by RoleBinding "implicit/ns1" of ClusterRole "cm" to ServiceAccount "builder/ns1""#
    );
    assert_eq!(
        reason(
            &policy,
            &user("system:serviceaccount:ci:deployer", &[]),
            &req("get", "", "configmaps", "ns1", "c")
        ),
        r#"RBAC: allowed by RoleBinding "explicit/ns1" of ClusterRole "cm" to ServiceAccount "deployer/ci""#
    );
}

#[test]
fn group_subjects_and_unknown_kinds() {
    let rules =
        json!([{"verbs": ["list"], "apiGroups": ["cluster.hami.io"], "resources": ["clusters"]}]);
    let policy = Policy::build(
        &[],
        &[cluster_role_with("clusters", json!({}), rules)],
        &[],
        &[cluster_binding(
            "ops",
            "clusters",
            json!([subject("Robot", "ops", ""), subject("Group", "ops", "")]),
        )],
    );
    let attrs = req("list", "cluster.hami.io", "clusters", "", "");
    assert_eq!(
        reason(&policy, &user("carol", &["dev", "ops"]), &attrs),
        r#"RBAC: allowed by ClusterRoleBinding "ops" of ClusterRole "clusters" to Group "ops""#
    );
    assert!(
        !allowed(&policy, &user("ops", &["dev"]), &attrs),
        "a user named like the group"
    );
    assert!(!allowed(&policy, &user("carol", &[]), &attrs));
    // A ClusterRoleBinding applies in every namespace too.
    let ns_rule = json!([{"verbs": ["get"], "apiGroups": [""], "resources": ["pods"]}]);
    let policy = Policy::build(
        &[],
        &[cluster_role_with("p", json!({}), ns_rule)],
        &[],
        &[cluster_binding(
            "p",
            "p",
            json!([subject("Group", "ops", "")]),
        )],
    );
    assert!(allowed(
        &policy,
        &user("x", &["ops"]),
        &req("get", "", "pods", "any", "p")
    ));
}

#[test]
fn aggregation_adds_labelled_roles_to_view_edit_and_admin() {
    let widgets = cluster_role_with(
        "widget-view",
        json!({AGGREGATE_TO_VIEW: "true"}),
        json!([{"verbs": ["get", "list", "watch"], "apiGroups": ["example.com"], "resources": ["widgets"]}]),
    );
    let binding = |role: &str| {
        role_binding(
            "ns",
            role,
            "ClusterRole",
            role,
            json!([subject("User", role, "")]),
        )
    };
    let policy = defaults_with(
        &[widgets],
        &[binding("view"), binding("edit"), binding("admin")],
        &[],
    );
    let list_widgets = req("list", "example.com", "widgets", "ns", "");
    for who in ["view", "edit", "admin"] {
        assert!(allowed(&policy, &user(who, &[]), &list_widgets), "{who}");
    }
    // Without the labelled role, view has no widgets.
    let policy = defaults_with(&[], &[binding("view")], &[]);
    assert!(!allowed(&policy, &user("view", &[]), &list_widgets));
}

#[test]
fn aggregation_replaces_stored_rules_and_supports_match_expressions() {
    let aggregated = json!({"apiVersion": RBAC_V1, "kind": "ClusterRole", "metadata": {"name": "agg"},
        "aggregationRule": {"clusterRoleSelectors": [
            {"matchLabels": {"tier": "a"}, "matchExpressions": [{"key": "skip", "operator": "DoesNotExist"}]},
            {"matchExpressions": [{"key": "tier", "operator": "In", "values": ["b", "c"]},
                                  {"key": "env", "operator": "NotIn", "values": ["prod"]},
                                  {"key": "owner", "operator": "Exists"}]}]},
        // Stale rules: the aggregation controller would overwrite them.
        "rules": [{"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]}]});
    let source = |name: &str, labels: Value| {
        cluster_role_with(
            name,
            labels,
            json!([{"verbs": ["get"], "apiGroups": [""], "resources": [name]}]),
        )
    };
    let policy = Policy::build(
        &[],
        &[
            aggregated,
            source("a1", json!({"tier": "a"})),
            source("a2", json!({"tier": "a", "skip": "yes"})),
            source("b1", json!({"tier": "b", "owner": "x"})),
            source("b2", json!({"tier": "b", "owner": "x", "env": "prod"})),
            source("c1", json!({"tier": "c", "owner": "x", "env": "dev"})),
            source("c2", json!({"tier": "c"})),
        ],
        &[],
        &[cluster_binding(
            "agg",
            "agg",
            json!([subject("User", "u", "")]),
        )],
    );
    assert_eq!(policy.skipped(), &[] as &[String]);
    let u = user("u", &[]);
    for (resource, want) in [
        ("a1", true),
        ("a2", false),
        ("b1", true),
        ("b2", false),
        ("c1", true),
        ("c2", false),
    ] {
        assert_eq!(
            allowed(&policy, &u, &req("get", "", resource, "", "x")),
            want,
            "{resource}"
        );
    }
    assert!(
        !allowed(&policy, &u, &req("delete", "", "a1", "", "x")),
        "stale rules are gone"
    );
    // Aggregated rules appear once, in role-name order.
    let (rules, _) = policy.rules_for(&u, "");
    let names: Vec<&str> = rules
        .iter()
        .map(|r| r["resources"][0].as_str().unwrap())
        .collect();
    assert_eq!(names, ["a1", "b1", "c1"]);
}

#[test]
fn aggregation_cycles_and_empty_selectors() {
    let pair = |name: &str, label: &str, from: &str, resource: &str| {
        json!({"apiVersion": RBAC_V1, "kind": "ClusterRole",
            "metadata": {"name": name, "labels": {label: "true"}},
            "aggregationRule": {"clusterRoleSelectors": [{"matchLabels": {from: "true"}}]},
            "rules": [{"verbs": ["get"], "apiGroups": [""], "resources": [resource]}]})
    };
    let leaf = cluster_role_with(
        "leaf",
        json!({"to-x": "true"}),
        json!([{"verbs": ["get"], "apiGroups": [""], "resources": ["leaf"]}]),
    );
    let policy = Policy::build(
        &[],
        &[
            pair("x", "to-y", "to-x", "x"),
            pair("y", "to-x", "to-y", "y"),
            leaf,
            json!({"metadata": {"name": "everything"}, "aggregationRule": {"clusterRoleSelectors": [{}]}}),
        ],
        &[],
        &[
            cluster_binding("x", "x", json!([subject("User", "ux", "")])),
            cluster_binding("y", "y", json!([subject("User", "uy", "")])),
            cluster_binding("e", "everything", json!([subject("User", "ue", "")])),
        ],
    );
    for who in ["ux", "uy", "ue"] {
        assert!(
            allowed(&policy, &user(who, &[]), &req("get", "", "leaf", "", "l")),
            "{who}"
        );
    }
}

#[test]
fn system_masters_is_allowed_everything() {
    let policy = Policy::build(&[], &[], &[], &[]);
    let admin = user("admin", &["system:authenticated", SYSTEM_MASTERS]);
    for attrs in [
        req("delete", "cluster.hami.io", "clusters", "", "m1"),
        req("escalate", RBAC_GROUP, "clusterroles", "", "x"),
        req("get", "", "pods/log", "ns", "p"),
        path("get", "/metrics"),
    ] {
        assert_eq!(
            reason(&policy, &admin, &attrs),
            r#"RBAC: allowed by ClusterRoleBinding "cluster-admin" of ClusterRole "cluster-admin" to Group "system:masters""#
        );
    }
    assert!(!allowed(
        &policy,
        &user("system:masters", &[]),
        &path("get", "/metrics")
    ));
    let (resource, non_resource) = policy.rules_for(&admin, "ns");
    assert_eq!(
        resource,
        [json!({"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]})]
    );
    assert_eq!(
        non_resource,
        [json!({"verbs": ["*"], "nonResourceURLs": ["*"]})]
    );
}

#[test]
fn denial_messages_match_kube_apiserver() {
    let policy = Policy::build(&[], &[], &[], &[]);
    let bob = user("bob", &["system:authenticated"]);
    let cases = [
        (
            req("get", "", "pods", "default", "p1"),
            r#"pods "p1" is forbidden: User "bob" cannot get resource "pods" in API group "" in the namespace "default""#,
        ),
        (
            req("list", "", "pods", "default", ""),
            r#"pods is forbidden: User "bob" cannot list resource "pods" in API group "" in the namespace "default""#,
        ),
        (
            req("list", "", "nodes", "", ""),
            r#"nodes is forbidden: User "bob" cannot list resource "nodes" in API group "" at the cluster scope"#,
        ),
        (
            req("delete", "cluster.hami.io", "clusters", "", "m1"),
            r#"clusters.cluster.hami.io "m1" is forbidden: User "bob" cannot delete resource "clusters" in API group "cluster.hami.io" at the cluster scope"#,
        ),
        (
            req("create", "apps", "deployments", "prod", ""),
            r#"deployments.apps is forbidden: User "bob" cannot create resource "deployments" in API group "apps" in the namespace "prod""#,
        ),
        (
            req("get", "", "pods/log", "default", "p1"),
            r#"pods "p1" is forbidden: User "bob" cannot get resource "pods/log" in API group "" in the namespace "default""#,
        ),
        (
            req("patch", "apps", "deployments/scale", "prod", "web"),
            r#"deployments.apps "web" is forbidden: User "bob" cannot patch resource "deployments/scale" in API group "apps" in the namespace "prod""#,
        ),
        (
            req("update", "cluster.hami.io", "clusters/status", "", "m1"),
            r#"clusters.cluster.hami.io "m1" is forbidden: User "bob" cannot update resource "clusters/status" in API group "cluster.hami.io" at the cluster scope"#,
        ),
        (
            path("get", "/metrics"),
            r#"forbidden: User "bob" cannot get path "/metrics""#,
        ),
        (
            path("post", "/logs/x"),
            r#"forbidden: User "bob" cannot post path "/logs/x""#,
        ),
    ];
    for (attrs, want) in cases {
        assert_eq!(denial(&policy, &bob, &attrs), want);
    }
    // Quoting as Go's %q, then kube's HTML sanitizer on the message.
    assert_eq!(
        denial(&policy, &user("a\"<b>&\n", &[]), &path("get", "/x")),
        r#"forbidden: User "a\"&lt;b&gt;&amp;\n" cannot get path "/x""#
    );
}

#[test]
fn denials_name_missing_roles_once_each() {
    let policy = Policy::build(
        &[],
        &[],
        &[
            role_binding("ns", "a", "Role", "gone", json!([subject("User", "u", "")])),
            role_binding("ns", "b", "Role", "gone", json!([subject("User", "u", "")])),
            role_binding(
                "ns",
                "c",
                "Role",
                "other",
                json!([subject("User", "someone", "")]),
            ),
        ],
        &[cluster_binding(
            "z",
            "missing",
            json!([subject("Group", "g", "")]),
        )],
    );
    let attrs = req("get", "", "pods", "ns", "p");
    assert_eq!(
        denial(&policy, &user("u", &["g"]), &attrs),
        r#"pods "p" is forbidden: User "u" cannot get resource "pods" in API group "" in the namespace "ns": RBAC: [clusterrole.rbac.authorization.k8s.io "missing" not found, role.rbac.authorization.k8s.io "gone" not found]"#
    );
    assert_eq!(
        denial(&policy, &user("v", &["g"]), &attrs),
        r#"pods "p" is forbidden: User "v" cannot get resource "pods" in API group "" in the namespace "ns": RBAC: clusterrole.rbac.authorization.k8s.io "missing" not found"#
    );
    // Bindings that do not apply to the user add nothing.
    assert_eq!(
        denial(&policy, &user("w", &[]), &attrs),
        r#"pods "p" is forbidden: User "w" cannot get resource "pods" in API group "" in the namespace "ns""#
    );
}

#[test]
fn cluster_role_bindings_decide_first_then_by_name() {
    let rules = json!([{"verbs": ["get"], "apiGroups": [""], "resources": ["pods"]}]);
    let roles = [cluster_role_with("r", json!({}), rules)];
    let rbs = [role_binding(
        "ns",
        "a-local",
        "ClusterRole",
        "r",
        json!([subject("User", "u", "")]),
    )];
    let mut crbs = vec![
        cluster_binding("zeta", "r", json!([subject("User", "u", "")])),
        cluster_binding("beta", "r", json!([subject("User", "u", "")])),
    ];
    let want = r#"RBAC: allowed by ClusterRoleBinding "beta" of ClusterRole "r" to User "u""#;
    let attrs = req("get", "", "pods", "ns", "p");
    assert_eq!(
        reason(
            &Policy::build(&[], &roles, &rbs, &crbs),
            &user("u", &[]),
            &attrs
        ),
        want
    );
    crbs.reverse();
    assert_eq!(
        reason(
            &Policy::build(&[], &roles, &rbs, &crbs),
            &user("u", &[]),
            &attrs
        ),
        want
    );
}

#[test]
fn rules_for_lists_what_applies_in_the_namespace() {
    let policy = defaults_with(
        &[cluster_role_with(
            "mixed",
            json!({}),
            json!([
            {"verbs": ["get"], "apiGroups": [""], "resources": ["configmaps"], "resourceNames": ["cfg"],
             "nonResourceURLs": ["/debug/*"]}]),
        )],
        &[role_binding(
            "dev",
            "mixed",
            "ClusterRole",
            "mixed",
            json!([subject("User", "dana", "")]),
        )],
        &[],
    );
    let dana = user("dana", &["system:authenticated"]);
    let (resource, non_resource) = policy.rules_for(&dana, "dev");
    assert_eq!(
        resource,
        [
            json!({"verbs": ["create"], "apiGroups": ["authorization.k8s.io"],
                   "resources": ["selfsubjectaccessreviews", "selfsubjectrulesreviews"]}),
            json!({"verbs": ["get"], "apiGroups": [""], "resources": ["configmaps"], "resourceNames": ["cfg"]}),
        ]
    );
    let urls: Vec<&Value> = non_resource.iter().map(|r| &r["nonResourceURLs"]).collect();
    assert_eq!(non_resource.len(), 3, "{non_resource:?}");
    assert_eq!(urls[2], &json!(["/debug/*"]));
    assert_eq!(non_resource[0]["verbs"], json!(["get"]));
    assert!(
        urls[0].as_array().unwrap().contains(&json!("/apis/*")),
        "system:discovery"
    );
    // Elsewhere, only the cluster-wide grants.
    let (resource, non_resource) = policy.rules_for(&dana, "prod");
    assert_eq!(resource.len(), 1);
    assert_eq!(non_resource.len(), 2);
    let (resource, _) = policy.rules_for(&dana, "");
    assert_eq!(resource.len(), 1);
    assert_eq!(
        policy.rules_for(&user("nobody", &[]), "dev"),
        (vec![], vec![])
    );
}

#[test]
fn bad_objects_are_skipped_with_a_reason() {
    let good = json!([{"verbs": ["get"], "apiGroups": [""], "resources": ["pods"]}]);
    let policy = Policy::build(
        &[
            role("ns", "ok", good.clone()),
            json!({"metadata": {"name": "no-namespace"}, "rules": []}),
            role("ns", "bad-rules", json!([{"verbs": "get"}])),
            role("ns", "ok", json!([])),
        ],
        &[
            cluster_role_with("fine", json!({}), good),
            json!({"metadata": {"name": "bad-op"},
                 "aggregationRule": {"clusterRoleSelectors": [{"matchExpressions": [{"key": "k", "operator": "Near"}]}]}}),
            json!({"metadata": {"name": "empty-in"},
                 "aggregationRule": {"clusterRoleSelectors": [{"matchExpressions": [{"key": "k", "operator": "In"}]}]}}),
            json!({"metadata": {}}),
            json!("not an object"),
        ],
        &[
            json!({"metadata": {"namespace": "ns", "name": "no-ref"}, "subjects": []}),
            role_binding("ns", "weird", "Secret", "x", json!([])),
        ],
        &[
            {
                let mut b = cluster_binding("role-ref", "x", json!([]));
                b["roleRef"]["kind"] = json!("Role");
                b
            },
            cluster_binding("ok", "fine", json!([subject("User", "u", "")])),
        ],
    );
    let skipped = policy.skipped();
    let expected = [
        r#"Role "no-namespace": metadata.namespace is required"#,
        r#"Role "ns/bad-rules": invalid type: string "get", expected a sequence"#,
        r#"Role "ns/ok": duplicate"#,
        r#"ClusterRole "bad-op": aggregationRule: "Near" is not a valid label selector operator"#,
        r#"ClusterRole "empty-in": aggregationRule: for 'in', 'notin' operators, values set can't be empty (key "k")"#,
        "ClusterRole (unnamed): metadata.name is required",
        "ClusterRole (unnamed): invalid type: string \"not an object\", expected struct RawRole",
        r#"RoleBinding "ns/no-ref": missing field `roleRef`"#,
        r#"RoleBinding "ns/weird": unsupported role reference kind: "Secret""#,
        r#"ClusterRoleBinding "role-ref": unsupported role reference kind: "Role""#,
    ];
    assert_eq!(skipped, expected);
    assert!(allowed(
        &policy,
        &user("u", &[]),
        &req("get", "", "pods", "ns", "p")
    ));
}

#[test]
fn default_roles_grant_what_kube_grants() {
    let binding = |role: &str| {
        role_binding(
            "ns",
            role,
            "ClusterRole",
            role,
            json!([subject("User", role, "")]),
        )
    };
    let policy = defaults_with(
        &[],
        &[binding("view"), binding("edit"), binding("admin")],
        &[],
    );
    // (verb, group, resource, view, edit, admin)
    let cases = [
        ("get", "", "pods", true, true, true),
        ("get", "", "pods/status", true, true, true),
        ("create", "", "pods", false, true, true),
        ("get", "", "secrets", false, true, true),
        ("create", "", "secrets", false, true, true),
        ("impersonate", "", "serviceaccounts", false, true, true),
        ("update", "", "resourcequotas", false, false, false),
        ("get", "", "namespaces", true, true, true),
        ("patch", "apps", "deployments/scale", false, true, true),
        ("get", "apps", "deployments/scale", true, true, true),
        (
            "list",
            "discovery.k8s.io",
            "endpointslices",
            true,
            true,
            true,
        ),
        (
            "create",
            "discovery.k8s.io",
            "endpointslices",
            false,
            false,
            false,
        ),
        ("delete", "batch", "cronjobs", false, true, true),
        (
            "create",
            "networking.k8s.io",
            "networkpolicies",
            false,
            true,
            true,
        ),
        ("list", "policy", "poddisruptionbudgets", true, true, true),
        ("create", RBAC_GROUP, "rolebindings", false, false, true),
        ("create", RBAC_GROUP, "clusterroles", false, false, false),
        (
            "create",
            "authorization.k8s.io",
            "localsubjectaccessreviews",
            false,
            false,
            true,
        ),
        (
            "list",
            "policy.hami.io",
            "propagationpolicies",
            true,
            true,
            true,
        ),
        (
            "create",
            "policy.hami.io",
            "overridepolicies",
            false,
            true,
            true,
        ),
        (
            "get",
            "policy.hami.io",
            "federatedresourcequotas/status",
            true,
            true,
            true,
        ),
        (
            "update",
            "policy.hami.io",
            "federatedresourcequotas",
            false,
            false,
            false,
        ),
        ("watch", "work.hami.io", "works", true, true, true),
        (
            "update",
            "work.hami.io",
            "resourcebindings",
            false,
            false,
            false,
        ),
        (
            "create",
            "multicluster.x-k8s.io",
            "serviceexports",
            false,
            true,
            true,
        ),
    ];
    for (verb, group, resource, view, edit, admin) in cases {
        let attrs = req(verb, group, resource, "ns", "x");
        for (who, want) in [("view", view), ("edit", edit), ("admin", admin)] {
            assert_eq!(
                allowed(&policy, &user(who, &[]), &attrs),
                want,
                "{who} {verb} {group}/{resource}"
            );
        }
    }
    // Namespaced grants stay in their namespace; cluster-scoped kinds are not granted.
    assert!(!allowed(
        &policy,
        &user("admin", &[]),
        &req("get", "", "pods", "other", "x")
    ));
    assert!(!allowed(
        &policy,
        &user("admin", &[]),
        &req("list", "cluster.hami.io", "clusters", "", "")
    ));

    let someone = user("someone", &["system:authenticated"]);
    let anonymous = user("system:anonymous", &["system:unauthenticated"]);
    for url in ["/version", "/healthz", "/readyz", "/livez"] {
        assert!(allowed(&policy, &anonymous, &path("get", url)), "{url}");
    }
    for url in ["/api", "/apis/apps/v1", "/openapi/v3"] {
        assert!(allowed(&policy, &someone, &path("get", url)), "{url}");
        assert!(!allowed(&policy, &anonymous, &path("get", url)), "{url}");
    }
    assert!(!allowed(&policy, &someone, &path("get", "/metrics")));
    assert!(allowed(
        &policy,
        &someone,
        &req(
            "create",
            "authorization.k8s.io",
            "selfsubjectrulesreviews",
            "",
            ""
        )
    ));
    assert_eq!(
        reason(&policy, &someone, &path("get", "/version")),
        r#"RBAC: allowed by ClusterRoleBinding "system:discovery" of ClusterRole "system:discovery" to Group "system:authenticated""#
    );
}

#[test]
fn default_objects_have_kube_metadata() {
    let roles = default_cluster_roles();
    let names: Vec<&str> = roles
        .iter()
        .map(|r| r["metadata"]["name"].as_str().unwrap())
        .collect();
    for want in [
        "cluster-admin",
        "admin",
        "edit",
        "view",
        "system:discovery",
        "system:basic-user",
        "system:public-info-viewer",
        "system:aggregate-to-view",
    ] {
        assert!(names.contains(&want), "{want}");
    }
    let view = roles
        .iter()
        .find(|r| r["metadata"]["name"] == "view")
        .unwrap();
    assert_eq!(view["metadata"]["labels"][AGGREGATE_TO_EDIT], "true");
    assert_eq!(
        view["metadata"]["labels"]["kubernetes.io/bootstrapping"],
        "rbac-defaults"
    );
    assert_eq!(
        view["aggregationRule"]["clusterRoleSelectors"][0]["matchLabels"][AGGREGATE_TO_VIEW],
        "true"
    );
    for role in &roles {
        assert_eq!(role["apiVersion"], RBAC_V1);
        assert_eq!(role["kind"], "ClusterRole");
    }
    let bindings = default_cluster_role_bindings();
    let admin = &bindings[0];
    assert_eq!(admin["metadata"]["name"], "cluster-admin");
    assert_eq!(
        admin["roleRef"],
        json!({"apiGroup": RBAC_GROUP, "kind": "ClusterRole", "name": "cluster-admin"})
    );
    assert_eq!(
        admin["subjects"],
        json!([{"apiGroup": RBAC_GROUP, "kind": "Group", "name": SYSTEM_MASTERS}])
    );
    // The stored cluster-admin binding gives masters the same answer as the built-in.
    let stored = Policy::build(&[], &roles, &[], &bindings);
    let masters = user("m", &[SYSTEM_MASTERS]);
    let empty = Policy::build(&[], &[], &[], &[]);
    let attrs = req("delete", "", "namespaces", "", "kube-system");
    assert_eq!(
        stored.authorize(&masters, &attrs),
        empty.authorize(&masters, &attrs)
    );
}

#[test]
fn every_table_line_is_a_rule() {
    for table in [
        ADMIN_RULES,
        EDIT_RULES,
        VIEW_RULES,
        HAMI_EDIT,
        HAMI_VIEW,
        BOOTSTRAPPER_RULES,
        AGENT_RULES,
    ] {
        let lines = table.lines().filter(|l| !l.trim().is_empty()).count();
        let parsed = rules(table);
        assert_eq!(parsed.len(), lines, "{table}");
        for rule in parsed {
            assert!(!rule["verbs"].as_array().unwrap().is_empty(), "{rule}");
            assert!(!rule["resources"].as_array().unwrap().is_empty(), "{rule}");
        }
    }
    let admin = rules(ADMIN_RULES);
    assert_eq!(admin[1]["verbs"], json!(words(&format!("{READ} {WRITE}"))));
    assert_eq!(admin[1]["apiGroups"], json!([RBAC_GROUP]));
    assert_eq!(rules(EDIT_RULES)[0]["apiGroups"], json!([""]));
}

#[test]
fn quote_follows_go() {
    let cases = [
        ("plain", r#""plain""#),
        ("a\"b", r#""a\"b""#),
        ("back\\slash", r#""back\\slash""#),
        ("tab\tnl\n", r#""tab\tnl\n""#),
        ("\u{1}\u{7f}", r#""\x01\x7f""#),
        ("\u{85}", r#""\u0085""#),
        ("héllo ✓", "\"héllo ✓\""),
    ];
    for (input, want) in cases {
        assert_eq!(quote(input), want);
    }
}

#[test]
fn reviews_answer_like_kubes_access_reviews() {
    let policy = defaults_with(
        &[],
        &[
            role_binding(
                "ns",
                "view",
                "ClusterRole",
                "view",
                json!([subject("User", "u", "")]),
            ),
            role_binding(
                "ns",
                "gone",
                "Role",
                "gone",
                json!([subject("User", "u", "")]),
            ),
        ],
        &[],
    );
    let u = user("u", &["system:authenticated"]);
    // Allowed: the reason names the binding, as authorize's does.
    let attrs = req("list", "", "pods", "ns", "");
    assert_eq!(
        policy.review(&u, &attrs),
        Review {
            allowed: true,
            reason: reason(&policy, &u, &attrs),
        }
    );
    // Not allowed: no 403 text, only the RBAC errors met (kube's reason).
    assert_eq!(
        policy.review(&u, &req("create", "", "pods", "ns", "")),
        Review {
            allowed: false,
            reason: r#"RBAC: role.rbac.authorization.k8s.io "gone" not found"#.to_owned(),
        }
    );
    assert_eq!(
        policy.review(&u, &req("create", "", "pods", "other", "")),
        Review {
            allowed: false,
            reason: String::new(),
        }
    );
    assert!(
        policy
            .review(&user("m", &[SYSTEM_MASTERS]), &path("delete", "/x"))
            .allowed
    );
}

#[test]
fn monitoring_and_cluster_info_defaults() {
    let (roles, role_bindings) = default_namespaced_rbac();
    let policy = Policy::build(
        &roles,
        &default_cluster_roles(),
        &role_bindings,
        &default_cluster_role_bindings(),
    );
    assert_eq!(policy.skipped(), &[] as &[String]);
    let prometheus = user("prometheus", &[MONITORING_GROUP, "system:authenticated"]);
    for url in ["/metrics", "/metrics/slis", "/readyz/etcd", "/healthz"] {
        assert!(allowed(&policy, &prometheus, &path("get", url)), "{url}");
    }
    assert!(!allowed(&policy, &prometheus, &path("post", "/metrics")));
    let someone = user("alice", &["system:authenticated"]);
    assert!(!allowed(&policy, &someone, &path("get", "/metrics")));
    // Anonymous reads cluster-info in kube-public, and nothing else there.
    let anonymous = user("system:anonymous", &["system:unauthenticated"]);
    let info = req("get", "", "configmaps", KUBE_PUBLIC, "cluster-info");
    assert!(allowed(&policy, &anonymous, &info));
    assert_eq!(
        reason(&policy, &anonymous, &info),
        r#"RBAC: allowed by RoleBinding "kubeadm:bootstrap-signer-clusterinfo/kube-public" of Role "kubeadm:bootstrap-signer-clusterinfo" to User "system:anonymous""#
    );
    for other in [
        req("get", "", "configmaps", KUBE_PUBLIC, "other"),
        req("list", "", "configmaps", KUBE_PUBLIC, ""),
        req("update", "", "configmaps", KUBE_PUBLIC, "cluster-info"),
        req("get", "", "configmaps", "default", "cluster-info"),
    ] {
        assert!(!allowed(&policy, &anonymous, &other), "{other:?}");
    }
    assert!(allowed(&policy, &anonymous, &path("get", "/healthz")));
    assert!(!allowed(&policy, &someone, &info));
}

/// The defaults with the per-cluster objects of the agents of `clusters`.
fn with_agents(clusters: &[&str]) -> Policy {
    let mut roles = default_cluster_roles();
    let mut bindings = default_cluster_role_bindings();
    let mut role_bindings = Vec::new();
    for cluster in clusters {
        let rbac = agent_identity_rbac(cluster);
        roles.push(rbac.cluster_role);
        bindings.push(rbac.cluster_role_binding);
        role_bindings.push(rbac.role_binding);
    }
    Policy::build(&[], &roles, &role_bindings, &bindings)
}

#[test]
fn bootstrap_tokens_may_only_request_certificates() {
    let policy = with_agents(&["gpu-x"]);
    let token = user(
        "system:bootstrap:abcdef",
        &[
            BOOTSTRAPPERS_GROUP,
            "system:bootstrappers:hami:cluster:gpu-x",
            "system:authenticated",
        ],
    );
    let csr = "certificatesigningrequests";
    let g = "certificates.k8s.io";
    for verb in ["create", "list", "watch"] {
        assert!(
            allowed(&policy, &token, &req(verb, g, csr, "", "")),
            "{verb}"
        );
    }
    assert!(allowed(&policy, &token, &req("get", g, csr, "", "csr-1")));
    assert_eq!(
        reason(&policy, &token, &req("create", g, csr, "", "")),
        r#"RBAC: allowed by ClusterRoleBinding "system:hami:bootstrapper" of ClusterRole "system:hami:bootstrapper" to Group "system:bootstrappers""#
    );
    for denied in [
        req(
            "update",
            g,
            "certificatesigningrequests/approval",
            "",
            "csr-1",
        ),
        req(
            "update",
            g,
            "certificatesigningrequests/status",
            "",
            "csr-1",
        ),
        req("delete", g, csr, "", "csr-1"),
        req(
            "approve",
            g,
            "signers",
            "",
            "kubernetes.io/kube-apiserver-client",
        ),
        req("list", "work.hami.io", "works", "hami-es-gpu-x", ""),
        req("get", "cluster.hami.io", "clusters", "", "gpu-x"),
        req("list", "", "secrets", "kube-system", ""),
    ] {
        assert!(!allowed(&policy, &token, &denied), "{denied:?}");
    }
}

#[test]
fn agents_are_confined_to_their_own_cluster() {
    let policy = with_agents(&["gpu-x", "gpu-y"]);
    let agent = user(
        &agent_user("gpu-x"),
        &[AGENTS_GROUP, "system:authenticated"],
    );
    let (work, lease) = ("work.hami.io", "coordination.k8s.io");
    let own = "hami-es-gpu-x";
    let clusters = "cluster.hami.io";
    for ok in [
        req("list", work, "works", own, ""),
        req("watch", work, "works", own, ""),
        req("get", work, "works", own, "w1"),
        req("patch", work, "works", own, "w1"),
        req("patch", work, "works/status", own, "w1"),
        req("patch", lease, "leases", own, "gpu-x"),
        req("create", lease, "leases", own, "gpu-x"),
        req("get", clusters, "clusters", "", "gpu-x"),
        req("patch", clusters, "clusters", "", "gpu-x"),
        req("create", clusters, "clusters", "", "gpu-x"),
        req("patch", clusters, "clusters/status", "", "gpu-x"),
        req("get", "", "namespaces", own, own),
        // Renewal: the agents' group keeps the bootstrapper role.
        req(
            "create",
            "certificates.k8s.io",
            "certificatesigningrequests",
            "",
            "",
        ),
    ] {
        assert!(allowed(&policy, &agent, &ok), "{ok:?}");
    }
    for denied in [
        req("list", work, "works", "hami-es-gpu-y", ""),
        req("get", work, "works", "hami-es-gpu-y", "w1"),
        req("update", work, "works", own, "w1"),
        req("delete", work, "works", own, "w1"),
        req("create", work, "works", own, ""),
        req("get", lease, "leases", "hami-es-gpu-y", "gpu-y"),
        req("get", clusters, "clusters", "", "gpu-y"),
        req("patch", clusters, "clusters/status", "", "gpu-y"),
        req("list", clusters, "clusters", "", ""),
        req("delete", clusters, "clusters", "", "gpu-x"),
        req("get", "", "namespaces", "hami-es-gpu-y", "hami-es-gpu-y"),
        req("create", "", "namespaces", "", ""),
        req("list", "", "secrets", own, ""),
        req(
            "get",
            "",
            "secrets",
            "kube-system",
            "bootstrap-token-abcdef",
        ),
        req("list", "work.hami.io", "resourcebindings", "default", ""),
    ] {
        assert!(!allowed(&policy, &agent, &denied), "{denied:?}");
    }
    // Another cluster's agent gets nothing of gpu-x's.
    let other = user(&agent_user("gpu-y"), &[AGENTS_GROUP]);
    assert!(!allowed(
        &policy,
        &other,
        &req("list", work, "works", own, "")
    ));
    assert!(allowed(
        &policy,
        &other,
        &req("list", work, "works", "hami-es-gpu-y", "")
    ));
}

#[test]
fn agent_objects_name_their_cluster() {
    let rbac = agent_identity_rbac("gpu-x");
    assert_eq!(
        rbac.cluster_role["metadata"]["name"],
        "system:hami:agent:gpu-x"
    );
    assert_eq!(
        rbac.cluster_role_binding["roleRef"]["name"],
        "system:hami:agent:gpu-x"
    );
    assert_eq!(
        rbac.cluster_role_binding["subjects"],
        json!([{"apiGroup": RBAC_GROUP, "kind": "User", "name": "system:hami:agent:gpu-x"}])
    );
    assert_eq!(rbac.role_binding["metadata"]["namespace"], "hami-es-gpu-x");
    assert_eq!(rbac.role_binding["roleRef"]["name"], AGENT_ROLE);
    for object in [
        &rbac.cluster_role,
        &rbac.cluster_role_binding,
        &rbac.role_binding,
    ] {
        assert_eq!(object["metadata"]["labels"][AGENT_CLUSTER_LABEL], "gpu-x");
    }
}
