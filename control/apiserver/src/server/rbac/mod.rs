//! The authorization core of kube-apiserver's RBAC authorizer, pure and
//! synchronous: Roles, ClusterRoles, RoleBindings and ClusterRoleBindings (the
//! `rbac.authorization.k8s.io/v1` shapes, as stored JSON) are parsed once into a
//! [`Policy`], which answers [`Policy::authorize`] and [`Policy::rules_for`]
//! (what a SelfSubjectRulesReview returns).
//!
//! Behaviour follows kube's `plugin/pkg/auth/authorizer/rbac` and the
//! `pkg/apis/rbac/v1` evaluation helpers:
//! - a rule allows a resource request when the verb, the API group, the
//!   resource (`resource/subresource`, `*/subresource` or `*`) and the name
//!   (when the rule lists resourceNames) all match; a non-resource request when
//!   the verb and the path (exact, `*`, or a prefix ending in `*`) match;
//! - ClusterRoleBindings are visited first, then the RoleBindings of the
//!   request's namespace (none for cluster-scoped and non-resource requests);
//!   the first binding whose subject applies and whose role has an allowing
//!   rule decides, and the reason names it;
//! - ClusterRoles with an `aggregationRule` get, once at build time, the union
//!   of the rules of every other ClusterRole that one of their selectors
//!   matches (kube's aggregation controller, run to its fixed point);
//! - the group `system:masters` is allowed everything, built in.
//!
//! Determinism: bindings are visited in name order (ClusterRoleBindings by
//! name, RoleBindings by name within a namespace), so the same objects always
//! give the same reason, whatever order they were passed in.

use std::collections::BTreeMap;
use std::collections::btree_map::Entry;

use serde::{Deserialize, Deserializer};
use serde_json::{Map, Value, json};

/// The group kube binds to `cluster-admin`; treated as allowed everything.
pub const SYSTEM_MASTERS: &str = "system:masters";
const RBAC_GROUP: &str = "rbac.authorization.k8s.io";
const RBAC_V1: &str = "rbac.authorization.k8s.io/v1";
const SERVICE_ACCOUNT_PREFIX: &str = "system:serviceaccount:";

/// The user a request is authorized for.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UserInfo {
    pub name: String,
    pub groups: Vec<String>,
}

/// What a request asks to do (kube's `authorizer.Attributes`). An empty
/// `Some("")` reads the same as `None`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Attributes {
    Resource {
        verb: String,
        /// `""` for the core group.
        api_group: String,
        /// The plural, e.g. `pods`.
        resource: String,
        subresource: Option<String>,
        /// `None` for cluster-scoped requests.
        namespace: Option<String>,
        /// The object's name. Like kube's request info, a list or watch with a
        /// `metadata.name=<n>` field selector carries `<n>` here; create, list,
        /// watch and deletecollection otherwise have none, so rules that list
        /// resourceNames never allow them.
        name: Option<String>,
    },
    NonResource {
        verb: String,
        path: String,
    },
}

impl Attributes {
    fn verb(&self) -> &str {
        match self {
            Attributes::Resource { verb, .. } | Attributes::NonResource { verb, .. } => verb,
        }
    }

    fn namespace(&self) -> &str {
        match self {
            Attributes::Resource { namespace, .. } => text(namespace),
            Attributes::NonResource { .. } => "",
        }
    }
}

/// The answer to one request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// e.g. `RBAC: allowed by ClusterRoleBinding "x" of ClusterRole "y" to User "u"`.
    Allow { reason: String },
    /// kube-apiserver's 403 message, e.g. `pods "p" is forbidden: User "u"
    /// cannot get resource "pods" in API group "" in the namespace "default"`.
    Deny { message: String },
}

impl Decision {
    pub fn is_allowed(&self) -> bool {
        matches!(self, Decision::Allow { .. })
    }
}

/// An access review's answer (see [`Policy::review`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Review {
    pub allowed: bool,
    /// Why it is allowed; when not, the RBAC errors met, or `""`.
    pub reason: String,
}

fn text(value: &Option<String>) -> &str {
    value.as_deref().unwrap_or("")
}

/// `null` reads as the default, like Go's nil slices and maps.
fn nullable<'de, D: Deserializer<'de>, T: Default + Deserialize<'de>>(d: D) -> Result<T, D::Error> {
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// One PolicyRule.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Rule {
    #[serde(default, deserialize_with = "nullable")]
    verbs: Vec<String>,
    #[serde(default, deserialize_with = "nullable")]
    api_groups: Vec<String>,
    #[serde(default, deserialize_with = "nullable")]
    resources: Vec<String>,
    #[serde(default, deserialize_with = "nullable")]
    resource_names: Vec<String>,
    #[serde(default, deserialize_with = "nullable", rename = "nonResourceURLs")]
    non_resource_urls: Vec<String>,
}

/// `items` holds `wanted` or the wildcard `*`.
fn has_or_all(items: &[String], wanted: &str) -> bool {
    items.iter().any(|item| item == "*" || item == wanted)
}

impl Rule {
    fn allows(&self, attrs: &Attributes) -> bool {
        if !has_or_all(&self.verbs, attrs.verb()) {
            return false;
        }
        match attrs {
            Attributes::Resource {
                api_group,
                resource,
                subresource,
                name,
                ..
            } => {
                has_or_all(&self.api_groups, api_group)
                    && self.resource_matches(resource, text(subresource))
                    && self.name_matches(text(name))
            }
            Attributes::NonResource { path, .. } => self.url_matches(path),
        }
    }

    /// `*`, the exact `resource` (or `resource/subresource`), or `*/subresource`.
    fn resource_matches(&self, resource: &str, subresource: &str) -> bool {
        self.resources.iter().any(|rule| {
            if rule == "*" {
                return true;
            }
            if subresource.is_empty() {
                return rule == resource;
            }
            let combined = rule
                .strip_prefix(resource)
                .and_then(|r| r.strip_prefix('/'));
            combined == Some(subresource) || rule.strip_prefix("*/") == Some(subresource)
        })
    }

    /// No resourceNames means any name; otherwise the name must be listed
    /// (kube has no wildcard here, and a request without a name never matches).
    fn name_matches(&self, name: &str) -> bool {
        self.resource_names.is_empty() || self.resource_names.iter().any(|n| n == name)
    }

    fn url_matches(&self, path: &str) -> bool {
        self.non_resource_urls.iter().any(|url| {
            url == "*"
                || url == path
                || (url.ends_with('*') && path.starts_with(url.trim_end_matches('*')))
        })
    }

    /// kube's ResourceRule JSON (empty lists omitted, `verbs` always present).
    fn resource_rule(&self) -> Value {
        let mut out = Map::new();
        out.insert("verbs".into(), json!(self.verbs));
        for (key, list) in [
            ("apiGroups", &self.api_groups),
            ("resources", &self.resources),
            ("resourceNames", &self.resource_names),
        ] {
            if !list.is_empty() {
                out.insert(key.into(), json!(list));
            }
        }
        Value::Object(out)
    }

    fn non_resource_rule(&self) -> Value {
        json!({"verbs": self.verbs, "nonResourceURLs": self.non_resource_urls})
    }
}

#[derive(Default, Deserialize)]
struct Meta {
    #[serde(default, deserialize_with = "nullable")]
    name: String,
    #[serde(default, deserialize_with = "nullable")]
    namespace: String,
    #[serde(default, deserialize_with = "nullable")]
    labels: BTreeMap<String, String>,
}

/// A Role or ClusterRole as stored.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawRole {
    #[serde(default, deserialize_with = "nullable")]
    metadata: Meta,
    #[serde(default, deserialize_with = "nullable")]
    rules: Vec<Rule>,
    #[serde(default)]
    aggregation_rule: Option<RawAggregation>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawAggregation {
    #[serde(default, deserialize_with = "nullable")]
    cluster_role_selectors: Vec<RawSelector>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawSelector {
    #[serde(default, deserialize_with = "nullable")]
    match_labels: BTreeMap<String, String>,
    #[serde(default, deserialize_with = "nullable")]
    match_expressions: Vec<RawExpression>,
}

#[derive(Deserialize)]
struct RawExpression {
    key: String,
    operator: String,
    #[serde(default, deserialize_with = "nullable")]
    values: Vec<String>,
}

/// A RoleBinding or ClusterRoleBinding as stored.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawBinding {
    #[serde(default, deserialize_with = "nullable")]
    metadata: Meta,
    #[serde(default, deserialize_with = "nullable")]
    subjects: Vec<Subject>,
    role_ref: RoleRef,
}

#[derive(Deserialize)]
struct RoleRef {
    kind: String,
    name: String,
}

#[derive(Clone, Debug, Deserialize)]
struct Subject {
    kind: String,
    name: String,
    #[serde(default, deserialize_with = "nullable")]
    namespace: String,
}

impl Subject {
    /// kube's `appliesToUser`. A ServiceAccount without a namespace has had
    /// its RoleBinding's filled in; in a ClusterRoleBinding it matches no one.
    fn applies_to(&self, user: &UserInfo) -> bool {
        match self.kind.as_str() {
            "User" => user.name == self.name,
            "Group" => user.groups.contains(&self.name),
            "ServiceAccount" => {
                !self.namespace.is_empty()
                    && user
                        .name
                        .strip_prefix(SERVICE_ACCOUNT_PREFIX)
                        .and_then(|rest| rest.strip_prefix(self.namespace.as_str()))
                        .and_then(|rest| rest.strip_prefix(':'))
                        == Some(self.name.as_str())
            }
            _ => false,
        }
    }

    /// kube's `describeSubject`: a ServiceAccount reads `"name/namespace"`.
    fn describe(&self) -> String {
        let name = match self.kind.as_str() {
            "ServiceAccount" => format!("{}/{}", self.name, self.namespace),
            _ => self.name.clone(),
        };
        format!("{} {}", self.kind, quote(&name))
    }
}

#[derive(Clone, Debug)]
struct Binding {
    name: String,
    /// `""` for a ClusterRoleBinding.
    namespace: String,
    /// `Role` or `ClusterRole`.
    role_kind: &'static str,
    role_name: String,
    subjects: Vec<Subject>,
}

impl Binding {
    /// kube's binding describers, as used in the allow reason.
    fn describe(&self, subject: &Subject) -> String {
        let (kind, name) = if self.namespace.is_empty() {
            ("ClusterRoleBinding", self.name.clone())
        } else {
            ("RoleBinding", format!("{}/{}", self.name, self.namespace))
        };
        format!(
            "{kind} {} of {} {} to {}",
            quote(&name),
            self.role_kind,
            quote(&self.role_name),
            subject.describe()
        )
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Operator {
    In(Vec<String>),
    NotIn(Vec<String>),
    Exists,
    DoesNotExist,
}

/// A metav1.LabelSelector; every requirement must hold, none means all.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Selector(Vec<(String, Operator)>);

impl Selector {
    fn parse(raw: &RawSelector) -> Result<Self, String> {
        let mut requirements: Vec<(String, Operator)> = raw
            .match_labels
            .iter()
            .map(|(k, v)| (k.clone(), Operator::In(vec![v.clone()])))
            .collect();
        for e in &raw.match_expressions {
            let operator = match (e.operator.as_str(), e.values.is_empty()) {
                ("In", false) => Operator::In(e.values.clone()),
                ("NotIn", false) => Operator::NotIn(e.values.clone()),
                ("Exists", true) => Operator::Exists,
                ("DoesNotExist", true) => Operator::DoesNotExist,
                ("In" | "NotIn", true) => {
                    return Err(format!(
                        "for 'in', 'notin' operators, values set can't be empty (key {:?})",
                        e.key
                    ));
                }
                ("Exists" | "DoesNotExist", false) => {
                    return Err(format!(
                        "values set must be empty for exists and does not exist (key {:?})",
                        e.key
                    ));
                }
                (other, _) => {
                    return Err(format!("{other:?} is not a valid label selector operator"));
                }
            };
            requirements.push((e.key.clone(), operator));
        }
        Ok(Selector(requirements))
    }

    fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.0.iter().all(|(key, operator)| match operator {
            Operator::In(values) => labels.get(key).is_some_and(|v| values.contains(v)),
            Operator::NotIn(values) => labels.get(key).is_none_or(|v| !values.contains(v)),
            Operator::Exists => labels.contains_key(key),
            Operator::DoesNotExist => !labels.contains_key(key),
        })
    }
}

#[derive(Clone, Debug)]
struct ClusterRole {
    labels: BTreeMap<String, String>,
    rules: Vec<Rule>,
    aggregation: Option<Vec<Selector>>,
}

/// The evaluated RBAC objects.
#[derive(Clone, Debug, Default)]
pub struct Policy {
    /// namespace → name → rules.
    roles: BTreeMap<String, BTreeMap<String, Vec<Rule>>>,
    /// name → role, its rules aggregated.
    cluster_roles: BTreeMap<String, ClusterRole>,
    /// name → binding.
    cluster_role_bindings: BTreeMap<String, Binding>,
    /// namespace → name → binding.
    role_bindings: BTreeMap<String, BTreeMap<String, Binding>>,
    skipped: Vec<String>,
}

/// `Kind "name"` (or `Kind "namespace/name"`) for a skip reason.
fn label(kind: &str, value: &Value) -> String {
    let field = |f: &str| {
        value
            .get("metadata")
            .and_then(|m| m.get(f))
            .and_then(Value::as_str)
    };
    match (field("namespace"), field("name")) {
        (Some(ns), Some(name)) if !ns.is_empty() => {
            format!("{kind} {}", quote(&format!("{ns}/{name}")))
        }
        (_, Some(name)) => format!("{kind} {}", quote(name)),
        _ => format!("{kind} (unnamed)"),
    }
}

impl Meta {
    fn check(&self, namespaced: bool) -> Result<(), String> {
        match (
            self.name.is_empty(),
            namespaced && self.namespace.is_empty(),
        ) {
            (true, _) => Err("metadata.name is required".into()),
            (false, true) => Err("metadata.namespace is required".into()),
            (false, false) => Ok(()),
        }
    }
}

fn parse_role(value: &Value, namespaced: bool) -> Result<RawRole, String> {
    let role = RawRole::deserialize(value).map_err(|e| e.to_string())?;
    role.metadata.check(namespaced)?;
    Ok(role)
}

fn parse_cluster_role(value: &Value) -> Result<(String, ClusterRole), String> {
    let role = parse_role(value, false)?;
    let aggregation = match &role.aggregation_rule {
        None => None,
        Some(rule) => Some(
            rule.cluster_role_selectors
                .iter()
                .map(Selector::parse)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| format!("aggregationRule: {e}"))?,
        ),
    };
    let entry = ClusterRole {
        labels: role.metadata.labels,
        rules: role.rules,
        aggregation,
    };
    Ok((role.metadata.name, entry))
}

fn parse_binding(value: &Value, namespaced: bool) -> Result<Binding, String> {
    let mut raw = RawBinding::deserialize(value).map_err(|e| e.to_string())?;
    raw.metadata.check(namespaced)?;
    let role_kind = match raw.role_ref.kind.as_str() {
        "ClusterRole" => "ClusterRole",
        "Role" if namespaced => "Role",
        other => return Err(format!("unsupported role reference kind: {}", quote(other))),
    };
    let namespace = if namespaced {
        raw.metadata.namespace
    } else {
        String::new()
    };
    // kube lets a RoleBinding name a ServiceAccount of its own namespace
    // without repeating the namespace.
    for subject in &mut raw.subjects {
        if subject.kind == "ServiceAccount" && subject.namespace.is_empty() {
            subject.namespace.clone_from(&namespace);
        }
    }
    Ok(Binding {
        name: raw.metadata.name,
        namespace,
        role_kind,
        role_name: raw.role_ref.name,
        subjects: raw.subjects,
    })
}

/// kube's aggregation controller run to its fixed point: an aggregated
/// ClusterRole's rules are replaced by the deduplicated rules, in name order,
/// of every other ClusterRole one of its selectors matches. Starting from
/// empty rules, the rule sets only grow, so one pass per aggregated role (plus
/// one) reaches the least fixed point even through chains (view → edit →
/// admin) and cycles.
fn aggregate(roles: &mut BTreeMap<String, ClusterRole>) {
    let aggregated: Vec<String> = roles
        .iter()
        .filter(|(_, role)| role.aggregation.is_some())
        .map(|(name, _)| name.clone())
        .collect();
    for name in &aggregated {
        if let Some(role) = roles.get_mut(name) {
            role.rules.clear();
        }
    }
    for _ in 0..=aggregated.len() {
        let mut changed = false;
        for name in &aggregated {
            let Some(selectors) = roles.get(name).and_then(|r| r.aggregation.as_ref()) else {
                continue;
            };
            let mut rules: Vec<Rule> = Vec::new();
            for selector in selectors {
                for (other, role) in roles.iter() {
                    if other == name || !selector.matches(&role.labels) {
                        continue;
                    }
                    for rule in &role.rules {
                        if !rules.contains(rule) {
                            rules.push(rule.clone());
                        }
                    }
                }
            }
            if let Some(role) = roles.get_mut(name)
                && role.rules != rules
            {
                role.rules = rules;
                changed = true;
            }
        }
        if !changed {
            break;
        }
    }
}

/// Inserts `value` unless `key` is taken: a second object under one key is skipped.
fn insert_once<K: Ord, V>(map: &mut BTreeMap<K, V>, key: K, value: V) -> Result<(), String> {
    match map.entry(key) {
        Entry::Vacant(slot) => {
            slot.insert(value);
            Ok(())
        }
        Entry::Occupied(_) => Err("duplicate".into()),
    }
}

impl Policy {
    /// Builds the policy from stored objects, in any order. An object that
    /// cannot be read (or a second object under the same key) is skipped, and
    /// the reason is kept for [`Policy::skipped`].
    pub fn build(
        roles: &[Value],
        cluster_roles: &[Value],
        role_bindings: &[Value],
        cluster_role_bindings: &[Value],
    ) -> Self {
        let mut policy = Policy::default();
        let mut skipped = Vec::new();
        let mut note = |kind: &str, value: &Value, result: Result<(), String>| {
            if let Err(why) = result {
                skipped.push(format!("{}: {why}", label(kind, value)));
            }
        };
        for value in roles {
            let result = parse_role(value, true).and_then(|role| {
                let by_name = policy.roles.entry(role.metadata.namespace).or_default();
                insert_once(by_name, role.metadata.name, role.rules)
            });
            note("Role", value, result);
        }
        for value in cluster_roles {
            let result = parse_cluster_role(value)
                .and_then(|(name, role)| insert_once(&mut policy.cluster_roles, name, role));
            note("ClusterRole", value, result);
        }
        aggregate(&mut policy.cluster_roles);
        for value in role_bindings {
            let result = parse_binding(value, true).and_then(|b| {
                let by_name = policy.role_bindings.entry(b.namespace.clone()).or_default();
                insert_once(by_name, b.name.clone(), b)
            });
            note("RoleBinding", value, result);
        }
        for value in cluster_role_bindings {
            let result = parse_binding(value, false)
                .and_then(|b| insert_once(&mut policy.cluster_role_bindings, b.name.clone(), b));
            note("ClusterRoleBinding", value, result);
        }
        policy.skipped = skipped;
        policy
    }

    /// Why objects were left out of the policy, one line each.
    pub fn skipped(&self) -> &[String] {
        &self.skipped
    }

    /// The bindings that apply to `user` in `namespace`, with the first
    /// subject that applies: ClusterRoleBindings, then the namespace's
    /// RoleBindings.
    fn grants<'a>(
        &'a self,
        user: &'a UserInfo,
        namespace: &str,
    ) -> impl Iterator<Item = (&'a Binding, &'a Subject)> + 'a {
        let local = if namespace.is_empty() {
            None
        } else {
            self.role_bindings.get(namespace)
        };
        self.cluster_role_bindings
            .values()
            .chain(local.into_iter().flat_map(BTreeMap::values))
            .filter_map(move |binding| {
                binding
                    .subjects
                    .iter()
                    .find(|s| s.applies_to(user))
                    .map(|subject| (binding, subject))
            })
    }

    /// The rules a binding grants, or kube's not-found error text.
    fn rules_of(&self, binding: &Binding) -> Result<&[Rule], String> {
        let found = match binding.role_kind {
            "Role" => self
                .roles
                .get(&binding.namespace)
                .and_then(|r| r.get(&binding.role_name)),
            _ => self.cluster_roles.get(&binding.role_name).map(|r| &r.rules),
        };
        found.map(Vec::as_slice).ok_or_else(|| {
            let resource = binding.role_kind.to_lowercase();
            format!(
                "{resource}.{RBAC_GROUP} {} not found",
                quote(&binding.role_name)
            )
        })
    }

    /// Allows the request when a rule bound to the user allows it; otherwise
    /// denies with kube-apiserver's 403 message (followed by `: RBAC: <errors>`
    /// when an applying binding names a missing role, as kube does).
    pub fn authorize(&self, user: &UserInfo, attrs: &Attributes) -> Decision {
        match self.evaluate(user, attrs) {
            Ok(reason) => Decision::Allow { reason },
            Err(errors) => Decision::Deny {
                message: forbidden_message(user, attrs, &errors),
            },
        }
    }

    /// What an access review answers (kube's RBAC authorizer seen through a
    /// SubjectAccessReview): allowed with the reason naming the binding, or
    /// not allowed with `reason` empty unless applying bindings name missing
    /// roles (`RBAC: <errors>`). RBAC never denies outright, so kube's
    /// `denied` stays false.
    pub fn review(&self, user: &UserInfo, attrs: &Attributes) -> Review {
        match self.evaluate(user, attrs) {
            Ok(reason) => Review {
                allowed: true,
                reason,
            },
            Err(errors) => Review {
                allowed: false,
                reason: rbac_errors(&errors),
            },
        }
    }

    /// The allow reason, or the role-resolution errors met on the way.
    fn evaluate(&self, user: &UserInfo, attrs: &Attributes) -> Result<String, Vec<String>> {
        if user.groups.iter().any(|g| g == SYSTEM_MASTERS) {
            let admin = quote("cluster-admin");
            return Ok(format!(
                "RBAC: allowed by ClusterRoleBinding {admin} of ClusterRole {admin} to Group {}",
                quote(SYSTEM_MASTERS)
            ));
        }
        let mut errors: Vec<String> = Vec::new();
        for (binding, subject) in self.grants(user, attrs.namespace()) {
            match self.rules_of(binding) {
                Ok(rules) if rules.iter().any(|rule| rule.allows(attrs)) => {
                    return Ok(format!("RBAC: allowed by {}", binding.describe(subject)));
                }
                Ok(_) => {}
                Err(error) if !errors.contains(&error) => errors.push(error),
                Err(_) => {}
            }
        }
        Err(errors)
    }

    /// What a SelfSubjectRulesReview answers for `user` in `namespace` (`""`:
    /// cluster bindings only): kube's ResourceRule and NonResourceRule JSON, in
    /// visiting order, identical rules once. Bindings to missing roles add
    /// nothing.
    pub fn rules_for(&self, user: &UserInfo, namespace: &str) -> (Vec<Value>, Vec<Value>) {
        let builtin = if user.groups.iter().any(|g| g == SYSTEM_MASTERS) {
            cluster_admin_rules()
        } else {
            Vec::new()
        };
        let mut seen: Vec<&Rule> = Vec::new();
        let granted = self
            .grants(user, namespace)
            .filter_map(|(binding, _)| self.rules_of(binding).ok())
            .flatten();
        for rule in builtin.iter().chain(granted) {
            if !seen.contains(&rule) {
                seen.push(rule);
            }
        }
        let resource = seen
            .iter()
            .filter(|r| !r.resources.is_empty())
            .map(|r| r.resource_rule())
            .collect();
        let non_resource = seen
            .iter()
            .filter(|r| !r.non_resource_urls.is_empty())
            .map(|r| r.non_resource_rule())
            .collect();
        (resource, non_resource)
    }
}

fn cluster_admin_json() -> Vec<Value> {
    vec![rule("*", "*", "*"), url_rule("*", "*")]
}

/// The rules of kube's `cluster-admin`.
fn cluster_admin_rules() -> Vec<Rule> {
    cluster_admin_json()
        .iter()
        .filter_map(|value| Rule::deserialize(value).ok())
        .collect()
}

/// Go's `%q` for the strings kube quotes (printable text kept as is).
fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{b}' => out.push_str("\\v"),
            '\u{c}' => out.push_str("\\f"),
            c if c < ' ' || c == '\u{7f}' => out.push_str(&format!("\\x{:02x}", u32::from(c))),
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// `RBAC: <error>` or `RBAC: [<e1>, <e2>]` (kube's `utilerrors` aggregate),
/// `""` without errors.
fn rbac_errors(errors: &[String]) -> String {
    match errors {
        [] => String::new(),
        [one] => format!("RBAC: {one}"),
        many => format!("RBAC: [{}]", many.join(", ")),
    }
}

/// kube's 403 text: `apierrors.NewForbidden` around `forbiddenMessage`
/// (sanitized against HTML like kube's responsewriters), then the RBAC
/// resolution errors, aggregated as kube's `utilerrors` prints them.
fn forbidden_message(user: &UserInfo, attrs: &Attributes, errors: &[String]) -> String {
    let (qualified, name, detail) = match attrs {
        Attributes::NonResource { verb, path } => (
            String::new(),
            "",
            format!(
                "User {} cannot {verb} path {}",
                quote(&user.name),
                quote(path)
            ),
        ),
        Attributes::Resource {
            verb,
            api_group,
            resource,
            subresource,
            namespace,
            name,
        } => {
            let qualified = if api_group.is_empty() {
                resource.clone()
            } else {
                format!("{resource}.{api_group}")
            };
            let full = match text(subresource) {
                "" => resource.clone(),
                sub => format!("{resource}/{sub}"),
            };
            let scope = match text(namespace) {
                "" => "at the cluster scope".to_owned(),
                ns => format!("in the namespace {}", quote(ns)),
            };
            let detail = format!(
                "User {} cannot {verb} resource {} in API group {} {scope}",
                quote(&user.name),
                quote(&full),
                quote(api_group)
            );
            (qualified, text(name), detail)
        }
    };
    let mut detail = detail
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;");
    let errors = rbac_errors(errors);
    if !errors.is_empty() {
        detail.push_str(": ");
        detail.push_str(&errors);
    }
    match (qualified.is_empty(), name.is_empty()) {
        (true, _) => format!("forbidden: {detail}"),
        (false, true) => format!("{qualified} is forbidden: {detail}"),
        (false, false) => format!("{qualified} {} is forbidden: {detail}", quote(name)),
    }
}

mod defaults;
pub use defaults::{
    AGENT_CLUSTER_LABEL, AGENT_ROLE, AGENT_USER_PREFIX, AGENTS_GROUP, AgentRbac, BOOTSTRAPPER_ROLE,
    BOOTSTRAPPERS_GROUP, CLUSTER_INFO_ROLE, KUBE_PUBLIC, MONITORING_GROUP, agent_identity_rbac,
    agent_user, default_cluster_role_bindings, default_cluster_roles, default_namespaced_rbac,
};
use defaults::{rule, url_rule};

#[cfg(test)]
mod tests;
