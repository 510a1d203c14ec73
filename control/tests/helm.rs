//! The Helm charts under `charts/`, checked by real Helm: Helm 4's Go SDK
//! through PyPI's helm-python-sdk (`scripts/helm_check.py`; `.ci/run`
//! installs it in `.venv`). Without it the tests say so and pass, unless
//! `CI=true`, where they fail.
//!
//! 1. `helm lint` (strict) of both charts, with their default values and
//!    with each values file in their `ci/` (a GPU cluster's, and for
//!    hami-control an etcd-backed HA one), reports no warning or error.
//! 2. Rendered with each, every object is valid against the OpenAPI schema
//!    of its kind (k8s-openapi's, as hami's API server serves it: unknown
//!    fields, wrong types and missing required fields are errors), and the
//!    objects fit each other and the binaries: every container runs a
//!    workspace binary from the chart's image at the crate's version; its
//!    rendered flags parse (`BIN ARGS --help` exits 0: clap checks names and
//!    values before it prints help) and name every required flag; its env
//!    variables are ones the binary reads; every listen address's port is a
//!    containerPort; the HTTP port (`--http-addr`, `--listen`) is the named
//!    port `http` that the probes use, on `/healthz` and `/readyz`; every
//!    file flag's path lies on a mounted volume; Services,
//!    ServiceMonitors, PodMonitors and role bindings point at objects and
//!    port names that exist.
//! 3. Helm installs the hami-agent chart into a simulated member cluster
//!    (`hami-sim`: hami's own API server with GPU nodes) through its
//!    Kubernetes API, kubectl shows every object of the release, `helm
//!    upgrade` with changed values updates them, `helm uninstall` removes
//!    them and the release's Secrets.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::{http_get_status, kubectl_path, repo_root};

// ---------------------------------------------------------------- Helm

/// A Python that imports helm_python: `HAMI_HELM_PYTHON`, the repository's
/// `.venv` (what `.ci/run` creates), the dev machine's `/tmp/helmvenv`, or
/// `python3`.
fn helm_python() -> Option<PathBuf> {
    let mut candidates: Vec<PathBuf> = Vec::new();
    if let Some(p) = std::env::var_os("HAMI_HELM_PYTHON") {
        candidates.push(p.into());
    }
    candidates.push(repo_root().join(".venv/bin/python"));
    candidates.push("/tmp/helmvenv/bin/python".into());
    candidates.push("python3".into());
    candidates.into_iter().find(|p| {
        Command::new(p)
            .args(["-c", "import helm_python"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    })
}

/// The Python to run Helm with; `None` (after saying why) when there is
/// none and this is not CI.
fn require_helm() -> Option<PathBuf> {
    if let Some(p) = helm_python() {
        return Some(p);
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "CI=true but no Python imports helm_python: .ci/run installs helm-python-sdk into .venv"
    );
    eprintln!(
        "SKIPPED: no Python with helm-python-sdk (pip install helm-python-sdk into .venv, or set HAMI_HELM_PYTHON); the Helm chart checks did not run"
    );
    None
}

/// Runs `scripts/helm_check.py ARGS`: its JSON, or Helm's error.
fn helm(py: &Path, args: &[&str]) -> Result<Value, String> {
    let out = Command::new(py)
        .arg(repo_root().join("scripts/helm_check.py"))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run helm_check.py");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let v: Value = serde_json::from_slice(&out.stdout)
        .map_err(|e| format!("helm_check.py {args:?} printed no JSON ({e}); stderr:\n{stderr}"))?;
    if out.status.success() {
        Ok(v)
    } else {
        Err(format!(
            "helm {args:?}: {} ({})",
            v["error"].as_str().unwrap_or("?"),
            v["type"].as_str().unwrap_or("?")
        ))
    }
}

// ------------------------------------------------------------ binaries

/// The workspace's binaries, checked to be there.
fn bin_dir() -> &'static Path {
    let dir = support::bin_dir();
    for b in BINARIES {
        assert!(
            dir.join(b).exists(),
            "{b} not in {} after the build",
            dir.display()
        );
    }
    dir
}

/// The binaries a chart may run.
const BINARIES: [&str; 5] = [
    "hami",
    "hami-agent",
    "hami-device-plugin",
    "hami-estimator",
    "hami-sim",
];

/// Env variables a container may set that no binary flag reads.
const FOREIGN_ENV: [&str; 2] = ["RUST_LOG", "NVIDIA_VISIBLE_DEVICES"];

/// What `BIN [SUB] --help` says: required long flags, and flag -> env var.
struct Help {
    required: Vec<String>,
    env: BTreeMap<String, String>,
}

fn help_of(bin: &Path, sub: &[&str]) -> Help {
    let out = Command::new(bin).args(sub).arg("--help").output().unwrap();
    assert!(out.status.success(), "{} --help failed", bin.display());
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let usage = text
        .lines()
        .find_map(|l| l.strip_prefix("Usage: "))
        .unwrap_or("");
    // Required options are the `--flag <VALUE>` outside brackets.
    let mut required = Vec::new();
    let mut depth = 0i32;
    for word in usage.split_whitespace() {
        if depth == 0 && word.starts_with("--") {
            required.push(word.to_string());
        }
        depth += word.matches('[').count() as i32 - word.matches(']').count() as i32;
    }
    let mut env = BTreeMap::new();
    let mut current: Option<String> = None;
    for line in text.lines() {
        let t = line.trim_start();
        if t.starts_with('-') {
            current = t
                .split([',', ' '])
                .map(str::trim)
                .find(|w| w.starts_with("--"))
                .map(str::to_string);
        }
        if let (Some(flag), Some(i)) = (&current, line.find("[env: ")) {
            // `[env: NAME=value]`, or `[env: NAME]` for hidden values (secrets).
            let name = line[i + 6..]
                .split(['=', ']'])
                .next()
                .unwrap_or("")
                .to_string();
            env.insert(flag.clone(), name);
        }
    }
    Help { required, env }
}

// --------------------------------------------------------- validation

/// The OpenAPI v3 schema of a kind the charts use (k8s-openapi's, inlined,
/// as hami's API server serves it).
fn schema_of(api_version: &str, kind: &str) -> Option<Value> {
    use hami_control::apiserver::builtin::openapi_schema as s;
    use k8s_openapi::api::{apps::v1 as apps, core::v1 as core, rbac::v1 as rbac};
    match (api_version, kind) {
        ("v1", "Secret") => s::<core::Secret>(),
        ("v1", "Service") => s::<core::Service>(),
        ("v1", "ServiceAccount") => s::<core::ServiceAccount>(),
        ("v1", "PersistentVolumeClaim") => s::<core::PersistentVolumeClaim>(),
        ("apps/v1", "Deployment") => s::<apps::Deployment>(),
        ("apps/v1", "DaemonSet") => s::<apps::DaemonSet>(),
        ("rbac.authorization.k8s.io/v1", "Role") => s::<rbac::Role>(),
        ("rbac.authorization.k8s.io/v1", "RoleBinding") => s::<rbac::RoleBinding>(),
        ("rbac.authorization.k8s.io/v1", "ClusterRole") => s::<rbac::ClusterRole>(),
        ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding") => s::<rbac::ClusterRoleBinding>(),
        _ => None,
    }
}

/// Checks `v` against `schema` at `path`: types, unknown fields (a schema
/// with properties and no additionalProperties closes the object),
/// required fields, enums; int-or-string and quantities accept both.
fn validate(v: &Value, schema: &Value, path: &str, errors: &mut Vec<String>) {
    if schema.get("x-kubernetes-int-or-string") == Some(&Value::Bool(true)) {
        if !(v.is_string() || v.is_i64() || v.is_u64()) {
            errors.push(format!("{path}: {v} is neither an integer nor a string"));
        }
        return;
    }
    if schema.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true)) {
        return;
    }
    if v.is_null() && schema.get("nullable") == Some(&Value::Bool(true)) {
        return;
    }
    for sub in schema["allOf"].as_array().into_iter().flatten() {
        validate(v, sub, path, errors);
    }
    for key in ["anyOf", "oneOf"] {
        if let Some(alts) = schema[key].as_array() {
            let fits = alts.iter().any(|a| {
                let mut e = Vec::new();
                validate(v, a, path, &mut e);
                e.is_empty()
            });
            if !fits {
                errors.push(format!("{path}: {v} fits none of the {key} schemas"));
            }
        }
    }
    if let Some(allowed) = schema["enum"].as_array()
        && !allowed.contains(v)
    {
        errors.push(format!("{path}: {v} is not one of {allowed:?}"));
    }
    let ty = schema["type"].as_str();
    let ok = match ty {
        Some("object") => v.is_object(),
        Some("array") => v.is_array(),
        Some("string") => v.is_string(),
        Some("integer") => v.is_i64() || v.is_u64(),
        Some("number") => v.is_number(),
        Some("boolean") => v.is_boolean(),
        _ => true,
    };
    if !ok {
        errors.push(format!("{path}: {v} is not of type {}", ty.unwrap_or("?")));
        return;
    }
    if let Some(items) = v.as_array() {
        for (i, item) in items.iter().enumerate() {
            validate(item, &schema["items"], &format!("{path}[{i}]"), errors);
        }
    }
    let Some(obj) = v.as_object() else { return };
    let props = schema["properties"].as_object();
    for req in schema["required"].as_array().into_iter().flatten() {
        if let Some(r) = req.as_str()
            && !obj.contains_key(r)
        {
            errors.push(format!("{path}: required field {r} is missing"));
        }
    }
    for (k, item) in obj {
        let p = format!("{path}.{k}");
        match (
            props.and_then(|m| m.get(k)),
            &schema["additionalProperties"],
        ) {
            (Some(s), _) => validate(item, s, &p, errors),
            (None, add) if add.is_object() => validate(item, add, &p, errors),
            (None, Value::Bool(true)) => {}
            (None, _) if props.is_some() => errors.push(format!("{p}: unknown field")),
            (None, _) => {}
        }
    }
}

/// A Prometheus Operator object (no schema in k8s-openapi): the fields the
/// charts set, and nothing else at the top of spec.
fn validate_monitor(o: &Value, errors: &mut Vec<String>) {
    let kind = o["kind"].as_str().unwrap_or("");
    let (list, allowed): (&str, &[&str]) = match kind {
        "ServiceMonitor" => ("endpoints", &["selector", "endpoints", "namespaceSelector"]),
        _ => (
            "podMetricsEndpoints",
            &["selector", "podMetricsEndpoints", "namespaceSelector"],
        ),
    };
    let spec = o["spec"].as_object().cloned().unwrap_or_default();
    for k in spec.keys() {
        if !allowed.contains(&k.as_str()) {
            errors.push(format!("{kind}.spec.{k}: unknown field"));
        }
    }
    if o["apiVersion"] != "monitoring.coreos.com/v1" {
        errors.push(format!("{kind}: apiVersion {}", o["apiVersion"]));
    }
    if !o["spec"]["selector"]["matchLabels"].is_object() {
        errors.push(format!("{kind}: no spec.selector.matchLabels"));
    }
    let endpoints = o["spec"][list].as_array().cloned().unwrap_or_default();
    if endpoints.is_empty() {
        errors.push(format!("{kind}: no {list}"));
    }
    for e in endpoints {
        if !e["port"].is_string() || e["path"] != "/metrics" {
            errors.push(format!(
                "{kind}: endpoint {e} needs a port name and path /metrics"
            ));
        }
    }
}

fn dns_subdomain(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|l| {
            !l.is_empty()
                && l.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        })
}

fn label_value(s: &str) -> bool {
    s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        && s.chars().next().is_none_or(|c| c.is_ascii_alphanumeric())
        && s.chars().last().is_none_or(|c| c.is_ascii_alphanumeric())
}

fn selects(selector: &Value, labels: &Value) -> bool {
    selector
        .as_object()
        .is_some_and(|s| !s.is_empty() && s.iter().all(|(k, v)| labels.get(k) == Some(v)))
}

/// Port of `host:port`.
fn port_of(addr: &str) -> Option<u64> {
    addr.rsplit_once(':')?.1.parse().ok()
}

/// The flags of an argument list: `--name=value`, `--name value` or a bare
/// `--name` (value `None`); positional words (a subcommand) are skipped.
fn flags(args: &[String]) -> Vec<(String, Option<String>)> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < args.len() {
        let a = &args[i];
        if let Some((k, v)) = a.split_once('=').filter(|_| a.starts_with("--")) {
            out.push((k.to_string(), Some(v.to_string())));
        } else if a.starts_with("--") {
            let v = args.get(i + 1).filter(|n| !n.starts_with("--")).cloned();
            if v.is_some() {
                i += 1;
            }
            out.push((a.clone(), v));
        }
        i += 1;
    }
    out
}

struct Rendered<'a> {
    what: String,
    objects: Vec<&'a Value>,
    namespace: &'a str,
    version: &'a str,
    errors: Vec<String>,
}

impl Rendered<'_> {
    fn err(&mut self, m: String) {
        self.errors.push(format!("{}: {m}", self.what));
    }

    fn of_kind(&self, kind: &str) -> Vec<&Value> {
        self.objects
            .iter()
            .filter(|o| o["kind"] == kind)
            .copied()
            .collect()
    }

    fn named(&self, kind: &str, name: &str) -> bool {
        self.of_kind(kind)
            .iter()
            .any(|o| o["metadata"]["name"] == name)
    }

    /// Every object on its own: identity, names, labels, schema.
    fn check_objects(&mut self) {
        let mut seen = BTreeSet::new();
        let objects = self.objects.clone();
        for o in objects {
            let kind = o["kind"].as_str().unwrap_or("").to_string();
            let name = o["metadata"]["name"].as_str().unwrap_or("").to_string();
            let id = format!("{kind}/{name}");
            if !seen.insert(id.clone()) {
                self.err(format!("{id} rendered twice"));
            }
            let name_ok = if kind == "Service" {
                name.len() <= 63 && dns_subdomain(&name) && !name.contains('.')
            } else {
                dns_subdomain(&name)
            };
            if !name_ok {
                self.err(format!("{id}: invalid name"));
            }
            let cluster_scoped = kind.starts_with("Cluster");
            let ns = o["metadata"]["namespace"].as_str();
            if cluster_scoped == ns.is_some() || ns.is_some_and(|n| n != self.namespace) {
                self.err(format!("{id}: namespace {ns:?}"));
            }
            for (k, v) in o["metadata"]["labels"].as_object().into_iter().flatten() {
                if !v.as_str().is_some_and(label_value) {
                    self.err(format!("{id}: label {k}={v} is not a valid label value"));
                }
            }
            let mut errs = Vec::new();
            match schema_of(o["apiVersion"].as_str().unwrap_or(""), &kind) {
                Some(schema) => validate(o, &schema, &kind, &mut errs),
                None if kind == "ServiceMonitor" || kind == "PodMonitor" => {
                    validate_monitor(o, &mut errs)
                }
                None => errs.push(format!("no schema for {} {kind}", o["apiVersion"])),
            }
            for e in errs {
                self.err(format!("{id}: {e}"));
            }
        }
    }

    /// Pod templates and their containers against the binaries.
    fn check_workloads(&mut self, bins: &Path) {
        let workloads: Vec<Value> = self
            .objects
            .iter()
            .filter(|o| o["kind"] == "Deployment" || o["kind"] == "DaemonSet")
            .map(|o| (*o).clone())
            .collect();
        for w in &workloads {
            let id = format!(
                "{}/{}",
                w["kind"].as_str().unwrap(),
                w["metadata"]["name"].as_str().unwrap()
            );
            let tpl = &w["spec"]["template"];
            if !selects(
                &w["spec"]["selector"]["matchLabels"],
                &tpl["metadata"]["labels"],
            ) {
                self.err(format!("{id}: selector does not select its pod template"));
            }
            let pod = &tpl["spec"];
            let sa = pod["serviceAccountName"].as_str().unwrap_or("default");
            if sa != "default" && !self.named("ServiceAccount", sa) {
                self.err(format!("{id}: ServiceAccount {sa} is not rendered"));
            }
            let volumes: BTreeSet<&str> = pod["volumes"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|v| v["name"].as_str())
                .collect();
            for c in pod["containers"].as_array().into_iter().flatten() {
                let cid = format!("{id} container {}", c["name"].as_str().unwrap_or("?"));
                self.check_container(&cid, c, &volumes, bins);
            }
        }
    }

    fn check_container(&mut self, cid: &str, c: &Value, volumes: &BTreeSet<&str>, bins: &Path) {
        // Image: a repository at the crate's version.
        let image = c["image"].as_str().unwrap_or("");
        match image.rsplit_once(':') {
            Some((repo, tag)) if !repo.is_empty() && !repo.ends_with('/') => {
                if tag != self.version {
                    self.err(format!(
                        "{cid}: image {image}: tag is not the crate version {}",
                        self.version
                    ));
                }
            }
            _ => self.err(format!("{cid}: image {image:?} has no repository:tag")),
        }
        let command: Vec<String> = serde_json::from_value(c["command"].clone()).unwrap_or_default();
        let Some(bin) = command.first().filter(|b| BINARIES.contains(&b.as_str())) else {
            self.err(format!(
                "{cid}: command {command:?} is not one of {BINARIES:?}"
            ));
            return;
        };
        let args: Vec<String> = command[1..]
            .iter()
            .cloned()
            .chain(serde_json::from_value::<Vec<String>>(c["args"].clone()).unwrap_or_default())
            .collect();
        let path = bins.join(bin);
        // Dry parse: clap parses names and values before printing help.
        let out = Command::new(&path)
            .args(&args)
            .arg("--help")
            .env_clear()
            .output()
            .unwrap();
        if !out.status.success() {
            self.err(format!(
                "{cid}: {bin} rejects the rendered flags {args:?}:\n{}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        let sub: Vec<&str> = args
            .iter()
            .take_while(|a| !a.starts_with('-'))
            .map(String::as_str)
            .collect();
        let help = help_of(&path, &sub);
        let given = flags(&args);
        let env: BTreeMap<String, &Value> = c["env"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|e| Some((e["name"].as_str()?.to_string(), e)))
            .collect();
        let env_vars: BTreeSet<&String> = help.env.values().collect();
        for name in env.keys() {
            if !env_vars.contains(name) && !FOREIGN_ENV.contains(&name.as_str()) {
                self.err(format!("{cid}: env {name} is read by no flag of {bin}"));
            }
        }
        for req in &help.required {
            let by_env = help.env.get(req).is_some_and(|e| env.contains_key(e));
            if !given.iter().any(|(k, _)| k == req) && !by_env {
                self.err(format!("{cid}: required flag {req} of {bin} is not given"));
            }
        }
        // Ports: every listen address's port is a containerPort; the HTTP
        // one is the named port `http` the probes use.
        let ports: BTreeMap<String, u64> = c["ports"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|p| {
                Some((
                    p["name"].as_str()?.to_string(),
                    p["containerPort"].as_u64()?,
                ))
            })
            .collect();
        let mut http_port = None;
        for (flag, value) in &given {
            let listen = flag == "--listen" || flag.ends_with("-addr");
            let Some(v) = value.as_deref().filter(|_| listen) else {
                continue;
            };
            let Some(port) = port_of(v) else {
                self.err(format!("{cid}: {flag}={v} has no port"));
                continue;
            };
            if !v.starts_with("0.0.0.0:") && !v.starts_with("[::]:") {
                self.err(format!(
                    "{cid}: {flag}={v} is not reachable from outside the pod"
                ));
            }
            if !ports.values().any(|p| *p == port) {
                self.err(format!(
                    "{cid}: {flag}={v}: port {port} is no containerPort ({ports:?})"
                ));
            }
            if flag == "--listen" || flag == "--http-addr" {
                http_port = Some(port);
            }
        }
        match http_port {
            None => self.err(format!(
                "{cid}: no --http-addr or --listen: where are /metrics and the probes?"
            )),
            Some(p) if ports.get("http") != Some(&p) => self.err(format!(
                "{cid}: named port http is {:?}, the HTTP address's port is {p}",
                ports.get("http")
            )),
            Some(_) => {}
        }
        for (probe, paths) in [
            ("livenessProbe", &["/healthz"][..]),
            ("readinessProbe", &["/readyz"][..]),
            ("startupProbe", &["/readyz", "/healthz"][..]),
        ] {
            let p = &c[probe];
            if p.is_null() {
                if probe != "startupProbe" {
                    self.err(format!("{cid}: no {probe}"));
                }
                continue;
            }
            let get = &p["httpGet"];
            let port_ok = get["port"] == "http" || get["port"].as_u64() == http_port;
            if !port_ok || !paths.contains(&get["path"].as_str().unwrap_or("")) {
                self.err(format!(
                    "{cid}: {probe} {get} is not GET {paths:?} on the HTTP port"
                ));
            }
        }
        // Paths in flags live on mounted volumes (the root is read-only).
        let mounts: Vec<(String, String)> = c["volumeMounts"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|m| {
                (
                    m["name"].as_str().unwrap_or("").to_string(),
                    m["mountPath"].as_str().unwrap_or("").to_string(),
                )
            })
            .collect();
        for (name, _) in &mounts {
            if !volumes.contains(name.as_str()) {
                self.err(format!("{cid}: volumeMount {name} names no volume"));
            }
        }
        // File flags: their value names a file or directory (an etcd key
        // prefix such as /hami/ is no path).
        let file_flag = |f: &str| {
            f == "--fleet"
                || ["-dir", "-kubeconfig", "-socket", "-file", "-devices"]
                    .iter()
                    .any(|s| f.ends_with(s))
        };
        for (flag, value) in &given {
            if let Some(v) = value.as_deref().filter(|v| v.starts_with('/'))
                && file_flag(flag)
                && !mounts.iter().any(|(_, m)| Path::new(v).starts_with(m))
            {
                self.err(format!("{cid}: {flag}={v} is on no mounted volume"));
            }
        }
        // An advertised address's port is a port some Service offers.
        for (flag, value) in &given {
            if flag.ends_with("-advertise")
                && let Some(port) = value.as_deref().and_then(port_of)
            {
                let offered = self
                    .of_kind("Service")
                    .iter()
                    .flat_map(|s| s["spec"]["ports"].as_array().cloned().unwrap_or_default())
                    .any(|p| p["port"].as_u64() == Some(port));
                if !offered {
                    self.err(format!(
                        "{cid}: {flag}: port {port} is offered by no Service"
                    ));
                }
            }
        }
    }

    /// Services, monitors and bindings point at what exists.
    fn check_references(&mut self) {
        let pods: Vec<(Value, BTreeSet<String>)> = self
            .objects
            .iter()
            .filter(|o| o["kind"] == "Deployment" || o["kind"] == "DaemonSet")
            .map(|o| {
                let tpl = &o["spec"]["template"];
                let names = tpl["spec"]["containers"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .flat_map(|c| c["ports"].as_array().cloned().unwrap_or_default())
                    .filter_map(|p| p["name"].as_str().map(str::to_string))
                    .collect();
                (tpl["metadata"]["labels"].clone(), names)
            })
            .collect();
        let mut errs = Vec::new();
        for s in self.of_kind("Service") {
            let name = &s["metadata"]["name"];
            match pods
                .iter()
                .find(|(labels, _)| selects(&s["spec"]["selector"], labels))
            {
                None => errs.push(format!("Service {name} selects no pod template")),
                Some((_, ports)) => {
                    for p in s["spec"]["ports"].as_array().into_iter().flatten() {
                        let t = &p["targetPort"];
                        if t.is_string() && !ports.contains(t.as_str().unwrap()) {
                            errs.push(format!(
                                "Service {name}: targetPort {t} is no container port name"
                            ));
                        }
                    }
                }
            }
        }
        for m in self.of_kind("ServiceMonitor") {
            let sel = &m["spec"]["selector"]["matchLabels"];
            let svc = self
                .of_kind("Service")
                .into_iter()
                .find(|s| selects(sel, &s["metadata"]["labels"]));
            let Some(svc) = svc else {
                errs.push(format!(
                    "ServiceMonitor {} selects no Service",
                    m["metadata"]["name"]
                ));
                continue;
            };
            for e in m["spec"]["endpoints"].as_array().into_iter().flatten() {
                let named = svc["spec"]["ports"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|p| p["name"] == e["port"]);
                if !named {
                    errs.push(format!(
                        "ServiceMonitor: port {} is not a port of its Service",
                        e["port"]
                    ));
                }
            }
        }
        for m in self.of_kind("PodMonitor") {
            let sel = &m["spec"]["selector"]["matchLabels"];
            match pods.iter().find(|(labels, _)| selects(sel, labels)) {
                None => errs.push(format!(
                    "PodMonitor {} selects no pod",
                    m["metadata"]["name"]
                )),
                Some((_, ports)) => {
                    for e in m["spec"]["podMetricsEndpoints"]
                        .as_array()
                        .into_iter()
                        .flatten()
                    {
                        if !ports.contains(e["port"].as_str().unwrap_or("")) {
                            errs.push(format!(
                                "PodMonitor: port {} is no container port name",
                                e["port"]
                            ));
                        }
                    }
                }
            }
        }
        for (binding, role) in [
            ("RoleBinding", "Role"),
            ("ClusterRoleBinding", "ClusterRole"),
        ] {
            for b in self.of_kind(binding) {
                let r = &b["roleRef"];
                if r["kind"] != role || !self.named(role, r["name"].as_str().unwrap_or("")) {
                    errs.push(format!(
                        "{binding} {}: roleRef {r} is not rendered",
                        b["metadata"]["name"]
                    ));
                }
                for s in b["subjects"].as_array().into_iter().flatten() {
                    let sa = s["name"].as_str().unwrap_or("");
                    if s["kind"] != "ServiceAccount"
                        || s["namespace"] != self.namespace
                        || !self.named("ServiceAccount", sa)
                    {
                        errs.push(format!(
                            "{binding} {}: subject {s} is not a rendered ServiceAccount",
                            b["metadata"]["name"]
                        ));
                    }
                }
            }
        }
        for e in errs {
            self.err(e);
        }
    }
}

fn app_version(chart: &Path) -> String {
    let text = std::fs::read_to_string(chart.join("Chart.yaml")).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix("appVersion:"))
        .map(|v| v.trim().trim_matches('"').to_string())
        .unwrap()
}

/// The kinds each render must hold, by chart and values file (`None`:
/// the defaults) -> kind counts.
fn expected_kinds(chart: &str, values: Option<&str>) -> BTreeMap<&'static str, usize> {
    let mut k: BTreeMap<&str, usize> = match chart {
        "hami-control" => [
            ("Deployment", 1),
            ("Service", 1),
            ("ServiceAccount", 1),
            ("Role", 1),
            ("RoleBinding", 1),
            ("PersistentVolumeClaim", 1),
        ]
        .into(),
        _ => [
            ("Deployment", 1),
            ("DaemonSet", 1),
            ("Service", 1),
            ("ServiceAccount", 2),
            ("ClusterRole", 2),
            ("ClusterRoleBinding", 2),
        ]
        .into(),
    };
    match (chart, values) {
        (_, None) => {}
        ("hami-control", Some("gpu-cluster-values.yaml")) => {
            k.insert("ServiceMonitor", 1);
        }
        // Objects in etcd: no claim.
        ("hami-control", Some("etcd-ha-values.yaml")) => {
            k.remove("PersistentVolumeClaim");
        }
        ("hami-agent", Some("gpu-cluster-values.yaml")) => {
            k.extend([("ServiceMonitor", 1), ("PodMonitor", 1), ("Secret", 1)]);
        }
        // Join mode: the bootstrap token's Secret.
        ("hami-agent", Some("join-values.yaml")) => {
            k.insert("Secret", 1);
        }
        (c, Some(f)) => panic!("charts/{c}/ci/{f}: add its expected kinds to this test"),
    }
    k
}

#[test]
fn charts_lint_clean_and_render_valid_objects_that_fit_the_binaries() {
    let Some(py) = require_helm() else { return };
    let bins = bin_dir();
    let version = env!("CARGO_PKG_VERSION");
    let namespace = "hami-system";
    let mut errors = Vec::new();
    for chart in ["hami-control", "hami-agent"] {
        let dir = repo_root().join("charts").join(chart);
        assert_eq!(
            app_version(&dir),
            version,
            "{chart}: appVersion is not the crates' version"
        );
        assert!(dir.join("README.md").exists(), "{chart}: no README.md");
        let mut files: Vec<Option<String>> = vec![None];
        let mut ci: Vec<String> = std::fs::read_dir(dir.join("ci"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|f| f.ends_with(".yaml"))
            .collect();
        ci.sort();
        assert!(
            ci.contains(&"gpu-cluster-values.yaml".to_string()),
            "{chart}: no ci/gpu-cluster-values.yaml"
        );
        files.extend(ci.into_iter().map(Some));
        for file in &files {
            let values = file.as_ref().map(|f| dir.join("ci").join(f));
            let mut args = vec![dir.to_str().unwrap()];
            if let Some(v) = &values {
                args.extend(["--values", v.to_str().unwrap()]);
            }
            let what = format!("{chart} ({})", file.as_deref().unwrap_or("default values"));

            let mut lint_args = vec!["lint"];
            lint_args.extend(&args);
            lint_args.extend(["--namespace", namespace]);
            let report = helm(&py, &lint_args).unwrap();
            assert_eq!(report["total_charts_linted"], 1, "{what}: {report}");
            for e in report["errors"].as_array().unwrap() {
                errors.push(format!("{what}: helm lint error: {e}"));
            }
            for m in report["messages"].as_array().unwrap() {
                if m["severity"].as_i64().unwrap_or(3) >= 2 {
                    errors.push(format!("{what}: helm lint: {m}"));
                }
            }

            let mut render_args = vec!["render"];
            render_args.extend(&args);
            render_args.extend(["--release", "hami", "--namespace", namespace]);
            let rendered = helm(&py, &render_args).unwrap();
            let objects: Vec<&Value> = rendered["objects"]
                .as_array()
                .unwrap()
                .iter()
                .map(|o| &o["object"])
                .collect();
            let mut kinds: BTreeMap<&str, usize> = BTreeMap::new();
            for o in &objects {
                *kinds.entry(o["kind"].as_str().unwrap_or("?")).or_default() += 1;
            }
            if kinds != expected_kinds(chart, file.as_deref()) {
                errors.push(format!(
                    "{what}: rendered kinds {kinds:?}, expected {:?}",
                    expected_kinds(chart, file.as_deref())
                ));
            }
            let mut r = Rendered {
                what,
                objects,
                namespace,
                version,
                errors: Vec::new(),
            };
            r.check_objects();
            r.check_workloads(bins);
            r.check_references();
            errors.extend(r.errors);
        }
    }
    assert!(errors.is_empty(), "chart problems:\n{}", errors.join("\n"));
}

/// The checks above catch what they claim: a broken render fails them.
#[test]
fn the_render_checks_catch_bad_flags_ports_and_fields() {
    let Some(py) = require_helm() else { return };
    let bins = bin_dir();
    let dir = repo_root().join("charts/hami-agent");
    let overrides = json!({
        "devicePlugin": {"mode": "exclusive"},
        "agent": {"extraArgs": ["--no-such-flag"], "extraEnv": [{"name": "HAMI_AGENT_NOPE", "value": "1"}]},
        "image": {"tag": "9.9.9"},
    })
    .to_string();
    let rendered = helm(
        &py,
        &[
            "render",
            dir.to_str().unwrap(),
            "--release",
            "hami",
            "--namespace",
            "ns",
            "--set-json",
            &overrides,
        ],
    )
    .unwrap();
    let mut objects: Vec<Value> = rendered["objects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["object"].clone())
        .collect();
    // And an unknown field, a wrong type, a probe on the wrong path, a
    // moved port, a Service port name no container has.
    for o in objects.iter_mut() {
        if o["kind"] == "Deployment" {
            o["spec"]["replicaz"] = json!(1);
            let c = &mut o["spec"]["template"]["spec"]["containers"][0];
            c["ports"][0]["containerPort"] = json!("10352");
            c["livenessProbe"]["httpGet"]["path"] = json!("/live");
        }
        if o["kind"] == "DaemonSet" {
            o["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"] =
                json!(9000);
        }
        if o["kind"] == "Service" {
            o["spec"]["ports"][0]["targetPort"] = json!("grpcc");
        }
    }
    let mut r = Rendered {
        what: "broken".into(),
        objects: objects.iter().collect(),
        namespace: "ns",
        version: env!("CARGO_PKG_VERSION"),
        errors: Vec::new(),
    };
    r.check_objects();
    r.check_workloads(bins);
    r.check_references();
    let all = r.errors.join("\n");
    for want in [
        "invalid value 'exclusive' for '--mode",
        "unexpected argument '--no-such-flag'",
        "env HAMI_AGENT_NOPE is read by no flag",
        "spec.replicaz: unknown field",
        "containerPort: \"10352\" is not of type integer",
        "--estimator-addr=0.0.0.0:10352: port 10352 is no containerPort",
        "livenessProbe {\"path\":\"/live\",\"port\":\"http\"} is not GET",
        "--http-addr=0.0.0.0:9394: port 9394 is no containerPort",
        "named port http is Some(9000), the HTTP address's port is 9394",
        "targetPort \"grpcc\" is no container port name",
        "tag is not the crate version",
    ] {
        assert!(all.contains(want), "{want:?} not reported in:\n{all}");
    }
}

// ------------------------------------------------------------- install

/// `hami-sim`: a simulated GPU member cluster on a free loopback port.
struct Sim {
    child: Child,
    kubeconfig: PathBuf,
}

impl Drop for Sim {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_sim(bins: &Path, dir: &Path) -> Sim {
    let kubeconfig = dir.join("member.kubeconfig");
    let child = Command::new(bins.join("hami-sim"))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--name",
            "gpu-member",
            "--generate-nodes",
            "2",
        ])
        .arg("--kubeconfig")
        .arg(&kubeconfig)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut sim = Sim { child, kubeconfig };
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        assert!(sim.child.try_wait().unwrap().is_none(), "hami-sim exited");
        if let Ok(text) = std::fs::read_to_string(&sim.kubeconfig)
            && let Some(addr) = text
                .lines()
                .find_map(|l| l.trim().strip_prefix("server: http://"))
            && http_get_status(addr.trim(), "/readyz") == Some(200)
        {
            return sim;
        }
        assert!(Instant::now() < deadline, "hami-sim not ready in 60 s");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn member_kubectl(sim: &Sim, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(kubectl_path())
        .arg("--kubeconfig")
        .arg(&sim.kubeconfig)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `kind.group` as kubectl takes it.
fn resource_of(o: &Value) -> String {
    let kind = o["kind"].as_str().unwrap().to_lowercase();
    match o["apiVersion"].as_str().unwrap().rsplit_once('/') {
        Some((group, _)) => format!("{kind}.{group}"),
        None => kind,
    }
}

/// `kubectl get` of one object: its JSON, or the error.
fn get_object(sim: &Sim, o: &Value) -> Result<Value, String> {
    let name = o["metadata"]["name"].as_str().unwrap();
    let resource = resource_of(o);
    let mut args = vec!["get", resource.as_str(), name, "-o", "json"];
    if let Some(ns) = o["metadata"]["namespace"].as_str() {
        args.extend(["-n", ns]);
    }
    let (ok, out, err) = member_kubectl(sim, &args);
    if ok {
        Ok(serde_json::from_str(&out).unwrap())
    } else {
        Err(err)
    }
}

fn release_secrets(sim: &Sim, namespace: &str) -> Vec<String> {
    let (ok, out, err) = member_kubectl(
        sim,
        &[
            "get",
            "secrets",
            "-n",
            namespace,
            "-l",
            "owner=helm,name=agent",
            "-o",
            "name",
        ],
    );
    assert!(ok, "{err}");
    out.lines().map(str::to_string).collect()
}

const CONTROL_KUBECONFIG: &str = "apiVersion: v1
kind: Config
clusters:
- name: hami
  cluster: {server: \"http://hami-control.hami-system.svc:7443\"}
contexts:
- name: hami
  context: {cluster: hami, user: agent}
current-context: hami
users:
- name: agent
  user: {}
";

#[test]
fn helm_installs_upgrades_and_uninstalls_the_agent_chart_in_a_simulated_member() {
    let Some(py) = require_helm() else { return };
    let bins = bin_dir();
    let tmp = tempfile::tempdir().unwrap();
    let sim = start_sim(bins, tmp.path());
    let kubeconfig = sim.kubeconfig.to_str().unwrap().to_string();
    let chart = repo_root().join("charts/hami-agent");
    let chart = chart.to_str().unwrap();
    let ns = "hami-system";
    let values =
        json!({"clusterName": "gpu-member", "controlPlane": {"kubeconfig": CONTROL_KUBECONFIG}});

    // Install: every object of the release is there, marked as Helm's.
    let installed = helm(
        &py,
        &[
            "install",
            &kubeconfig,
            chart,
            "--release",
            "agent",
            "--namespace",
            ns,
            "--set-json",
            &values.to_string(),
        ],
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(installed["status"], "deployed", "{installed}");
    let objects: Vec<Value> = installed["objects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["object"].clone())
        .collect();
    let kinds: BTreeSet<&str> = objects.iter().filter_map(|o| o["kind"].as_str()).collect();
    for k in [
        "Deployment",
        "DaemonSet",
        "Service",
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "Secret",
    ] {
        assert!(kinds.contains(k), "the release has no {k}: {kinds:?}");
    }
    for o in &objects {
        let live =
            get_object(&sim, o).unwrap_or_else(|e| panic!("kubectl get {}: {e}", resource_of(o)));
        assert_eq!(
            live["metadata"]["labels"]["app.kubernetes.io/managed-by"], "Helm",
            "{live}"
        );
        assert_eq!(
            live["metadata"]["annotations"]["meta.helm.sh/release-name"],
            "agent"
        );
    }
    let (ok, listing, err) = member_kubectl(
        &sim,
        &[
            "get",
            "all,sa,secrets,clusterroles,clusterrolebindings",
            "-n",
            ns,
        ],
    );
    assert!(ok, "{err}");
    for o in &objects {
        let name = o["metadata"]["name"].as_str().unwrap();
        assert!(
            listing.contains(name),
            "kubectl get all,... does not list {name}:\n{listing}"
        );
    }
    assert_eq!(
        release_secrets(&sim, ns),
        vec!["secret/sh.helm.release.v1.agent.v1"]
    );

    // Upgrade with changed values: the objects follow.
    let mut changed = values.clone();
    changed["agent"] =
        json!({"leaseRenewInterval": "5s", "podAnnotations": {"hami.io/upgraded": "yes"}});
    changed["devicePlugin"] = json!({"deviceSplitCount": 4});
    changed["rbac"] = json!({"applyRules": [{"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["get", "patch"]}]});
    let upgraded = helm(
        &py,
        &[
            "upgrade",
            &kubeconfig,
            chart,
            "--release",
            "agent",
            "--namespace",
            ns,
            "--set-json",
            &changed.to_string(),
        ],
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        (upgraded["status"].as_str(), upgraded["revision"].as_i64()),
        (Some("deployed"), Some(2)),
        "{upgraded}"
    );
    let find = |kind: &str| objects.iter().find(|o| o["kind"] == kind).unwrap();
    let deploy = get_object(&sim, find("Deployment")).unwrap();
    let tpl = &deploy["spec"]["template"];
    let args = tpl["spec"]["containers"][0]["args"].to_string();
    assert!(args.contains("--lease-renew-interval=5s"), "{args}");
    assert_eq!(tpl["metadata"]["annotations"]["hami.io/upgraded"], "yes");
    let ds = get_object(&sim, find("DaemonSet")).unwrap();
    let ds_args = ds["spec"]["template"]["spec"]["containers"][0]["args"].to_string();
    assert!(ds_args.contains("--device-split-count=4"), "{ds_args}");
    let role = objects
        .iter()
        .find(|o| {
            o["kind"] == "ClusterRole"
                && !o["metadata"]["name"]
                    .as_str()
                    .unwrap()
                    .ends_with("device-plugin")
        })
        .unwrap();
    let rules = get_object(&sim, role).unwrap()["rules"].clone();
    assert!(
        !rules.to_string().contains("cronjobs"),
        "upgrade dropped the old apply rules: {rules}"
    );
    assert!(rules.to_string().contains("\"patch\""), "{rules}");
    let mut secrets = release_secrets(&sim, ns);
    secrets.sort();
    assert_eq!(
        secrets,
        vec![
            "secret/sh.helm.release.v1.agent.v1",
            "secret/sh.helm.release.v1.agent.v2"
        ]
    );
    let list = helm(&py, &["list", &kubeconfig, "--namespace", ns]).unwrap();
    assert_eq!(list[0]["revision"], 2, "{list}");

    // Uninstall: every object and the release's Secrets are gone.
    helm(
        &py,
        &[
            "uninstall",
            &kubeconfig,
            "--release",
            "agent",
            "--namespace",
            ns,
        ],
    )
    .unwrap_or_else(|e| panic!("{e}"));
    for o in &objects {
        match get_object(&sim, o) {
            Err(e) => assert!(e.contains("NotFound") || e.contains("not found"), "{e}"),
            Ok(live) => panic!(
                "{} {} still there after uninstall: {live}",
                o["kind"], o["metadata"]["name"]
            ),
        }
    }
    assert!(release_secrets(&sim, ns).is_empty());
    let err = helm(
        &py,
        &[
            "uninstall",
            &kubeconfig,
            "--release",
            "agent",
            "--namespace",
            ns,
        ],
    )
    .unwrap_err();
    assert!(err.contains("not found"), "{err}");
}
