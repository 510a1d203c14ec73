//! kube-apiserver's validation of the built-in workload kinds, over their
//! JSON form: the field paths, cause types and messages of
//! `k8s.io/kubernetes/pkg/apis/core/validation` (`ValidatePodSpec`,
//! `validateContainers`, `validateInitContainers`, `validateContainerCommon`,
//! `validateResourceRequirements`, `ValidateResourceQuantityValue`) and
//! `pkg/apis/apps/validation` (`ValidateDeploymentSpec`,
//! `ValidateReplicaSetSpec`, `ValidateStatefulSetSpec`,
//! `ValidateDaemonSetSpec`), and `ValidateJobSpec`'s counts. Every error is
//! reported at once, in kube-apiserver's order.
//!
//! Only rules that hold before defaulting are checked: hami does not default
//! `terminationGracePeriodSeconds`, `restartPolicy`, `dnsPolicy` and the
//! like, so their required-value rules would refuse what kube-apiserver
//! accepts. Values are printed as kube-apiserver 1.33 prints them (Go syntax
//! for maps and selectors; quantities in `Quantity.String()` form).
//!
//! Like kube-apiserver, a StatefulSet's pod template is checked only against
//! its selector (its containers are checked when its Pods are created).

mod quantity;

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value};

use super::status::Cause;
use quantity::Quantity;

const NEGATIVE: &str = "must be greater than or equal to 0";

/// Every field error kube-apiserver reports for a built-in object of
/// `group`/`kind`; empty when it is valid or of a kind without these rules.
pub fn builtin(group: &str, kind: &str, object: &Value) -> Vec<Cause> {
    let mut errs = Errors::default();
    let spec = object.get("spec");
    match (group, kind) {
        ("", "Pod") => pod_spec(&mut errs, spec, "spec"),
        ("apps", "Deployment") => replicated(&mut errs, spec, false),
        ("apps", "ReplicaSet") => replicated(&mut errs, spec, true),
        ("apps", "StatefulSet") => stateful_set(&mut errs, spec),
        ("apps", "DaemonSet") => daemon_set(&mut errs, spec),
        ("batch", "Job") => job(&mut errs, spec),
        ("batch", "CronJob") => pod_spec(
            &mut errs,
            spec.and_then(|s| s.pointer("/jobTemplate/spec/template/spec")),
            "spec.jobTemplate.spec.template.spec",
        ),
        _ => {}
    }
    errs.0
}

/// Collected causes, worded as `field.ErrorList` words them.
#[derive(Default)]
struct Errors(Vec<Cause>);

impl Errors {
    fn required(&mut self, field: &str, detail: &str) {
        let message = if detail.is_empty() {
            "Required value".to_owned()
        } else {
            format!("Required value: {detail}")
        };
        self.0
            .push(Cause::new("FieldValueRequired", field, message));
    }

    /// `shown` is the bad value as kube-apiserver prints it.
    fn invalid(&mut self, field: &str, shown: &str, detail: &str) {
        let message = if detail.is_empty() {
            format!("Invalid value: {shown}")
        } else {
            format!("Invalid value: {shown}: {detail}")
        };
        self.0.push(Cause::new("FieldValueInvalid", field, message));
    }

    fn forbidden(&mut self, field: &str, detail: &str) {
        self.0.push(Cause::new(
            "FieldValueForbidden",
            field,
            format!("Forbidden: {detail}"),
        ));
    }

    fn duplicate(&mut self, field: &str, shown: &str) {
        self.0.push(Cause::new(
            "FieldValueDuplicate",
            field,
            format!("Duplicate value: {shown}"),
        ));
    }

    /// `ValidateNonnegativeField` / `validate.GEZ` of an optional integer.
    fn non_negative(&mut self, parent: Option<&Value>, key: &str, field: &str) {
        if let Some(n) = parent.and_then(|p| p.get(key)).and_then(Value::as_i64)
            && n < 0
        {
            self.invalid(field, &n.to_string(), NEGATIVE);
        }
    }
}

/// A string as Go's `%q` prints it (close enough for names and labels).
fn quoted(s: &str) -> String {
    format!("{s:?}")
}

fn text<'a>(v: Option<&'a Value>, key: &str) -> &'a str {
    v.and_then(|v| v.get(key))
        .and_then(Value::as_str)
        .unwrap_or_default()
}

fn items<'a>(v: Option<&'a Value>, key: &str) -> &'a [Value] {
    v.and_then(|v| v.get(key))
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
}

fn object<'a>(v: Option<&'a Value>, key: &str) -> Option<&'a Map<String, Value>> {
    v.and_then(|v| v.get(key)).and_then(Value::as_object)
}

// ---- workloads -------------------------------------------------------------

/// Deployment (`ValidateDeploymentSpec`) and ReplicaSet
/// (`ValidateReplicaSetSpec`): both say "deployment" of an empty selector.
fn replicated(errs: &mut Errors, spec: Option<&Value>, replica_set: bool) {
    errs.non_negative(spec, "replicas", "spec.replicas");
    if replica_set {
        errs.non_negative(spec, "minReadySeconds", "spec.minReadySeconds");
    }
    let selector = required_selector(errs, spec, "deployment");
    let template = spec.and_then(|s| s.get("template"));
    if let Some(selector) = selector {
        if !selector.is_everything() {
            selector_matches_template(errs, &selector, template);
        }
        pod_spec(
            errs,
            template.and_then(|t| t.get("spec")),
            "spec.template.spec",
        );
    }
}

/// `ValidateStatefulSetSpec`: the template is checked against the selector only.
fn stateful_set(errs: &mut Errors, spec: Option<&Value>) {
    errs.non_negative(spec, "replicas", "spec.replicas");
    errs.non_negative(spec, "minReadySeconds", "spec.minReadySeconds");
    if let Some(selector) = required_selector(errs, spec, "statefulset")
        && !selector.is_everything()
    {
        selector_matches_template(errs, &selector, spec.and_then(|s| s.get("template")));
    }
}

/// `ValidateDaemonSetSpec`: no selector selects nothing, so the template's
/// labels do not match it (kube-apiserver does not say "Required").
fn daemon_set(errs: &mut Errors, spec: Option<&Value>) {
    let raw = spec
        .and_then(|s| s.get("selector"))
        .filter(|s| !s.is_null());
    let template = spec.and_then(|s| s.get("template"));
    if let Ok(selector) = Selector::from_json(raw) {
        selector_matches_template(errs, &selector, template);
    }
    if let Some(raw) = raw
        && selector_size(raw) == 0
    {
        errs.invalid(
            "spec.selector",
            &go_selector(raw),
            "empty selector is invalid for daemonset",
        );
    }
    pod_spec(
        errs,
        template.and_then(|t| t.get("spec")),
        "spec.template.spec",
    );
}

/// `ValidateJobSpec`'s counts and the pod template; the selector is
/// generated, as kube-apiserver generates it.
fn job(errs: &mut Errors, spec: Option<&Value>) {
    errs.non_negative(spec, "parallelism", "spec.parallelism");
    errs.non_negative(spec, "completions", "spec.completions");
    let template = spec.and_then(|s| s.get("template"));
    pod_spec(
        errs,
        template.and_then(|t| t.get("spec")),
        "spec.template.spec",
    );
}

/// `spec.selector`: required and not empty. Returns the selector to check
/// the template against, or `None` when it cannot be read (kube-apiserver
/// then skips the template).
fn required_selector(errs: &mut Errors, spec: Option<&Value>, noun: &str) -> Option<Selector> {
    let raw = spec
        .and_then(|s| s.get("selector"))
        .filter(|s| !s.is_null());
    match raw {
        None => errs.required("spec.selector", ""),
        Some(raw) if selector_size(raw) == 0 => errs.invalid(
            "spec.selector",
            &go_selector(raw),
            &format!("empty selector is invalid for {noun}"),
        ),
        Some(_) => {}
    }
    match Selector::from_json(raw) {
        Ok(selector) => Some(selector),
        Err(()) => {
            let detail = if noun == "statefulset" {
                ""
            } else {
                "invalid label selector"
            };
            let shown = raw.map(go_selector).unwrap_or_default();
            errs.invalid("spec.selector", &shown, detail);
            None
        }
    }
}

fn selector_size(raw: &Value) -> usize {
    object(Some(raw), "matchLabels").map_or(0, Map::len)
        + items(Some(raw), "matchExpressions").len()
}

fn selector_matches_template(errs: &mut Errors, selector: &Selector, template: Option<&Value>) {
    let labels = template
        .and_then(|t| t.get("metadata"))
        .and_then(|m| m.get("labels"));
    if !selector.matches(labels) {
        errs.invalid(
            "spec.template.metadata.labels",
            &go_string_map(labels),
            "`selector` does not match template `labels`",
        );
    }
}

/// `metav1.LabelSelectorAsSelector`'s result: `None` (no selector) selects
/// nothing, no requirements select everything.
struct Selector(Option<Vec<Requirement>>);

enum Requirement {
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    DoesNotExist(String),
}

impl Selector {
    /// Err: an expression `LabelSelectorAsSelector` refuses.
    fn from_json(raw: Option<&Value>) -> Result<Self, ()> {
        let Some(raw) = raw else {
            return Ok(Self(None));
        };
        let mut requirements = Vec::new();
        for (key, value) in object(Some(raw), "matchLabels").into_iter().flatten() {
            let value = value.as_str().ok_or(())?;
            requirements.push(Requirement::In(key.clone(), vec![value.to_owned()]));
        }
        for expr in items(Some(raw), "matchExpressions") {
            let key = text(Some(expr), "key").to_owned();
            let values: Vec<String> = items(Some(expr), "values")
                .iter()
                .map(|v| v.as_str().map(str::to_owned).ok_or(()))
                .collect::<Result<_, _>>()?;
            let requirement = match (text(Some(expr), "operator"), values.is_empty()) {
                ("In", false) => Requirement::In(key, values),
                ("NotIn", false) => Requirement::NotIn(key, values),
                ("Exists", true) => Requirement::Exists(key),
                ("DoesNotExist", true) => Requirement::DoesNotExist(key),
                _ => return Err(()),
            };
            requirements.push(requirement);
        }
        Ok(Self(Some(requirements)))
    }

    fn is_everything(&self) -> bool {
        self.0.as_ref().is_some_and(Vec::is_empty)
    }

    fn matches(&self, labels: Option<&Value>) -> bool {
        let Some(requirements) = &self.0 else {
            return false;
        };
        let label = |key: &str| labels.and_then(|l| l.get(key)).and_then(Value::as_str);
        requirements.iter().all(|r| match r {
            Requirement::In(k, set) => label(k).is_some_and(|v| set.iter().any(|s| s == v)),
            Requirement::NotIn(k, set) => label(k).is_none_or(|v| !set.iter().any(|s| s == v)),
            Requirement::Exists(k) => label(k).is_some(),
            Requirement::DoesNotExist(k) => label(k).is_none(),
        })
    }
}

/// A `map[string]string` as Go's `%#v` prints it (keys sorted).
fn go_string_map(map: Option<&Value>) -> String {
    let Some(map) = map.and_then(Value::as_object) else {
        return "map[string]string(nil)".to_owned();
    };
    let sorted: BTreeMap<&String, &Value> = map.iter().collect();
    let entries: Vec<String> = sorted
        .into_iter()
        .map(|(k, v)| format!("{}:{}", quoted(k), go_string(v)))
        .collect();
    format!("map[string]string{{{}}}", entries.join(", "))
}

fn go_string(v: &Value) -> String {
    match v {
        Value::String(s) => quoted(s),
        other => quoted(&other.to_string()),
    }
}

/// A `metav1.LabelSelector` as Go's `%#v` prints it.
fn go_selector(raw: &Value) -> String {
    let expressions = match raw.get("matchExpressions").and_then(Value::as_array) {
        None => "[]v1.LabelSelectorRequirement(nil)".to_owned(),
        Some(list) => {
            let shown: Vec<String> = list
                .iter()
                .map(|e| {
                    let values = match e.get("values").and_then(Value::as_array) {
                        None => "[]string(nil)".to_owned(),
                        Some(vs) => {
                            let vs: Vec<String> = vs.iter().map(go_string).collect();
                            format!("[]string{{{}}}", vs.join(", "))
                        }
                    };
                    format!(
                        "v1.LabelSelectorRequirement{{Key:{}, Operator:{}, Values:{values}}}",
                        quoted(text(Some(e), "key")),
                        quoted(text(Some(e), "operator")),
                    )
                })
                .collect();
            format!("[]v1.LabelSelectorRequirement{{{}}}", shown.join(", "))
        }
    };
    format!(
        "v1.LabelSelector{{MatchLabels:{}, MatchExpressions:{expressions}}}",
        go_string_map(raw.get("matchLabels"))
    )
}

// ---- pod spec --------------------------------------------------------------

/// `ValidatePodSpec`'s container rules at `path` (`spec` of a Pod,
/// `spec.template.spec` of a workload).
fn pod_spec(errs: &mut Errors, spec: Option<&Value>, path: &str) {
    let containers = items(spec, "containers");
    let path_of = |list: &str, i: usize| format!("{path}.{list}[{i}]");
    if containers.is_empty() {
        errs.required(&format!("{path}.containers"), "");
    } else {
        // Names are unique among containers, an empty one included.
        let mut names = BTreeSet::new();
        for (i, c) in containers.iter().enumerate() {
            let at = path_of("containers", i);
            container(errs, c, &at);
            let name = text(Some(c), "name");
            if !names.insert(name) {
                errs.duplicate(&format!("{at}.name"), &quoted(name));
            }
        }
    }
    // Init containers' names are unique among all containers.
    let mut names: BTreeSet<&str> = containers.iter().map(|c| text(Some(c), "name")).collect();
    for (i, c) in items(spec, "initContainers").iter().enumerate() {
        let at = path_of("initContainers", i);
        container(errs, c, &at);
        let name = text(Some(c), "name");
        if names.contains(name) {
            errs.duplicate(&format!("{at}.name"), &quoted(name));
        } else if !name.is_empty() {
            names.insert(name);
        }
    }
}

/// `validateContainerCommon`: name, image and resources.
fn container(errs: &mut Errors, c: &Value, path: &str) {
    let name = text(Some(c), "name");
    let name_path = format!("{path}.name");
    if name.is_empty() {
        errs.required(&name_path, "");
    } else {
        for message in dns1123_label(name) {
            errs.invalid(&name_path, &quoted(name), message);
        }
    }
    if text(Some(c), "image").is_empty() {
        errs.required(&format!("{path}.image"), "");
    }
    resources(errs, c.get("resources"), &format!("{path}.resources"));
}

/// `validation.IsDNS1123Label`'s messages.
fn dns1123_label(value: &str) -> Vec<&'static str> {
    let mut messages = Vec::new();
    if value.len() > 63 {
        messages.push("must be no more than 63 bytes");
    }
    let label = |s: &str| {
        let b = s.as_bytes();
        !b.is_empty()
            && b.iter()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
            && b.first().is_some_and(u8::is_ascii_alphanumeric)
            && b.last().is_some_and(u8::is_ascii_alphanumeric)
    };
    if !label(value) {
        if value.split('.').all(label) {
            messages.push("must not contain dots");
        } else {
            messages.push(
                "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')",
            );
        }
    }
    messages
}

// ---- resources -------------------------------------------------------------

/// `validateResourceRequirements`: every quantity well-formed and not
/// negative, extended resources whole, hugepages whole pages and beside cpu
/// or memory, requests within limits (equal to them, and limited, for
/// resources that cannot be overcommitted). Resources in name order.
fn resources(errs: &mut Errors, resources: Option<&Value>, path: &str) {
    let sorted = |key| -> BTreeMap<&String, &Value> {
        object(resources, key).into_iter().flatten().collect()
    };
    let (limits, requests) = (sorted("limits"), sorted("requests"));
    let limits_path = format!("{path}.limits");
    let requests_path = format!("{path}.requests");
    for (name, raw) in &limits {
        quantity(errs, name, raw, &format!("{limits_path}[{name}]"));
    }
    for (name, raw) in &requests {
        let request = quantity(errs, name, raw, &format!("{requests_path}[{name}]"));
        match limits.get(name) {
            Some(limit) => {
                let (Some(request), Ok(limit)) = (request, Quantity::from_json(limit)) else {
                    continue;
                };
                let shown = quoted(&request.to_string());
                if request != limit && !overcommit_allowed(name) {
                    let detail = format!("must be equal to {name} limit of {limit}");
                    errs.invalid(&requests_path, &shown, &detail);
                } else if request > limit {
                    let detail = format!("must be less than or equal to {name} limit of {limit}");
                    errs.invalid(&requests_path, &shown, &detail);
                }
            }
            None if !overcommit_allowed(name) => errs.required(
                &limits_path,
                "Limit must be set for non overcommitable resources",
            ),
            None => {}
        }
    }
    let names = || limits.keys().chain(requests.keys());
    if names().any(|n| n.starts_with("hugepages-"))
        && !names().any(|n| *n == "cpu" || *n == "memory")
    {
        errs.forbidden(path, "HugePages require cpu or memory");
    }
}

/// `ValidateResourceQuantityValue`, after the decoding kube-apiserver does
/// first (a malformed quantity is a 400 there; here it is this field's cause).
fn quantity(errs: &mut Errors, name: &str, raw: &Value, path: &str) -> Option<Quantity> {
    match Quantity::from_json(raw) {
        Err(e) => {
            let shown = match raw {
                Value::String(s) => quoted(s),
                other => other.to_string(),
            };
            errs.invalid(path, &shown, &e.to_string());
            None
        }
        Ok(q) => {
            let shown = quoted(&q.to_string());
            if q.is_negative() {
                errs.invalid(path, &shown, NEGATIVE);
            }
            if is_extended(name) && !q.is_whole() {
                errs.invalid(path, &shown, "must be an integer");
            }
            if let Some(page) = name.strip_prefix("hugepages-")
                && !whole_pages(&q, page)
            {
                let detail = format!("{q} is not positive integer multiple of {name}");
                errs.invalid(path, &shown, &detail);
            }
            Some(q)
        }
    }
}

/// `helper.IsHugePageResourceValueDivisible`: a whole number of pages of a
/// whole-unit page size.
fn whole_pages(q: &Quantity, page: &str) -> bool {
    Quantity::parse(page)
        .is_ok_and(|page| page.units() > 0 && page.is_whole() && q.units() % page.units() == 0)
}

/// `helper.IsNativeResource`: no domain, or the `kubernetes.io/` one.
fn is_native(name: &str) -> bool {
    !name.contains('/') || name.starts_with("kubernetes.io/")
}

/// `helper.IsOvercommitAllowed`: native and not hugepages.
fn overcommit_allowed(name: &str) -> bool {
    is_native(name) && !name.starts_with("hugepages-")
}

/// `helper.IsExtendedResourceName` (e.g. `nvidia.com/gpu`): whole numbers only.
fn is_extended(name: &str) -> bool {
    !is_native(name)
        && !name.starts_with("requests.")
        && is_qualified_name(&format!("requests.{name}"))
}

/// `validation.IsQualifiedName`: an optional DNS-1123 subdomain prefix and a
/// name of at most 63 alphanumerics, '-', '_' or '.' that starts and ends
/// alphanumeric.
fn is_qualified_name(value: &str) -> bool {
    let (prefix, name) = match value.split_once('/') {
        Some((prefix, name)) => (Some(prefix), name),
        None => (None, value),
    };
    let name_ok = !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
        && name
            .bytes()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric())
        && name
            .bytes()
            .last()
            .is_some_and(|c| c.is_ascii_alphanumeric());
    let prefix_ok = prefix.is_none_or(|p| {
        !p.is_empty()
            && p.len() <= 253
            && p.split('.').all(|l| {
                !l.is_empty()
                    && l.bytes()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
                    && l.bytes().next().is_some_and(|c| c.is_ascii_alphanumeric())
                    && l.bytes().last().is_some_and(|c| c.is_ascii_alphanumeric())
            })
    });
    name_ok && prefix_ok
}

#[cfg(test)]
#[path = "validation_tests.rs"]
mod tests;
