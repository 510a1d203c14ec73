//! The Grafana dashboards under `dashboards/` against what the code really
//! registers, and the `hami_cluster_*` gauges against the Clusters.
//!
//! The real `hami up --sim-clusters 3` runs with the sample GPU Deployment
//! and its PropagationPolicy applied, plus a CPU Deployment for the Push
//! member (so the scheduler's and the Push agent's families have samples:
//! prometheus-client leaves a labelled family with no series out of the
//! exposition). Its `/metrics` (control plane, controllers, Push agent and
//! estimator, cluster gauges) and every simulated member's `/metrics` are
//! scraped; the metric families are read from their `# TYPE` lines. Every
//! PromQL `expr` of every dashboard is tokenized and each metric name in it
//! must belong to one of those families (a histogram's `_bucket`/`_sum`/
//! `_count` or a counter's `_total`/`_created` map to their family). The
//! JSON must also have what Grafana needs to import it.
//!
//! Then `hami_cluster_gpus`, `_gpus_healthy`, `_gpu_memory_*`,
//! `_gpu_cores_*` and `_gpu_share_slots_free` must equal each Cluster's
//! `status.gpuSummary` as `kubectl get clusters -o json` shows it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::{Hami, kubectl, repo_root};

/// `/metrics` of the control plane as OpenMetrics, as the admin.
fn control_metrics(hami: &Hami) -> String {
    match hami.endpoint().get_with(
        "/metrics",
        &[("Accept", "application/openmetrics-text; version=1.0.0")],
    ) {
        Ok((200, body)) => body,
        other => panic!("GET /metrics of the control plane: {other:?}"),
    }
}

/// GET `path` from `addr` over plain HTTP/1.1 asking for OpenMetrics (whose
/// `# TYPE` lines name families, as the registry does); the body of a 200.
fn http_get(addr: &str, path: &str) -> Result<String, String> {
    let mut s = std::net::TcpStream::connect(addr).map_err(|e| format!("{addr}: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: application/openmetrics-text; version=1.0.0\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| e.to_string())?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).map_err(|e| e.to_string())?;
    let (head, body) = buf.split_once("\r\n\r\n").ok_or("no HTTP header end")?;
    if !head.starts_with("HTTP/1.1 200") {
        return Err(format!("{addr}{path}: {head}"));
    }
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        return Ok(dechunk(body));
    }
    Ok(body.to_string())
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 {
            break;
        }
        out.push_str(&rest[..n]);
        body = rest[n..].trim_start_matches("\r\n");
    }
    out
}

/// Metric families of an exposition: name -> type, from `# TYPE` lines.
fn families(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            Some((it.next()?.to_string(), it.next()?.to_string()))
        })
        .collect()
}

/// Samples of an exposition: (name, labels) -> value.
fn samples(text: &str) -> BTreeMap<(String, BTreeMap<String, String>), f64> {
    let mut out = BTreeMap::new();
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let (series, value) = line.rsplit_once(' ').unwrap();
        let (name, labels) = match series.split_once('{') {
            Some((n, rest)) => {
                let inner = rest.trim_end_matches('}');
                let labels = inner
                    .split(',')
                    .filter(|p| !p.is_empty())
                    .map(|p| {
                        let (k, v) = p.split_once('=').unwrap();
                        (k.to_string(), v.trim_matches('"').to_string())
                    })
                    .collect();
                (n.to_string(), labels)
            }
            None => (series.to_string(), BTreeMap::new()),
        };
        out.insert((name, labels), value.parse().unwrap());
    }
    out
}

/// The family a sample name belongs to, if any.
fn family_of<'a>(name: &str, families: &'a BTreeMap<String, String>) -> Option<&'a str> {
    if let Some((f, _)) = families.get_key_value(name) {
        return Some(f);
    }
    let suffixed: [(&str, &[&str]); 4] = [
        ("_bucket", &["histogram", "gaugehistogram"]),
        ("_sum", &["histogram", "summary"]),
        ("_count", &["histogram", "summary"]),
        ("_total", &["counter"]),
    ];
    for (suffix, types) in suffixed
        .into_iter()
        .chain([("_created", &["counter", "histogram", "summary"][..])])
    {
        if let Some(base) = name.strip_suffix(suffix)
            && let Some((f, t)) = families.get_key_value(base)
            && types.contains(&t.as_str())
        {
            return Some(f);
        }
    }
    None
}

/// Operator keywords, and aggregations (which may come before `by (..)`
/// rather than straight before their parenthesis).
const PROMQL_KEYWORDS: &[&str] = &[
    "and",
    "or",
    "unless",
    "bool",
    "offset",
    "atan2",
    "inf",
    "nan",
    "Inf",
    "NaN",
    "sum",
    "min",
    "max",
    "avg",
    "group",
    "stddev",
    "stdvar",
    "count",
    "count_values",
    "bottomk",
    "topk",
    "quantile",
    "limitk",
    "limit_ratio",
];
/// Keywords followed by a parenthesised list of label names.
const LABEL_LIST_KEYWORDS: &[&str] = &[
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
];

/// Skips from `open` (an index of `open_ch`) past its matching close,
/// stepping over strings.
fn skip_group(chars: &[char], open: usize, open_ch: char, close_ch: char) -> usize {
    let mut depth = 0;
    let mut i = open;
    while i < chars.len() {
        match chars[i] {
            '"' | '\'' | '`' => i = skip_string(chars, i) - 1,
            c if c == open_ch => depth += 1,
            c if c == close_ch => {
                depth -= 1;
                if depth == 0 {
                    return i + 1;
                }
            }
            _ => {}
        }
        i += 1;
    }
    i
}

/// Index just past the string starting at `i`.
fn skip_string(chars: &[char], i: usize) -> usize {
    let quote = chars[i];
    let mut j = i + 1;
    while j < chars.len() && chars[j] != quote {
        if chars[j] == '\\' && quote != '`' {
            j += 1;
        }
        j += 1;
    }
    j + 1
}

fn is_ident_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_' || c == ':'
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == ':'
}

/// Metric names in a PromQL expression: identifiers that are neither
/// functions (followed by `(`), keywords, label names (inside `{}` or after
/// `by`/`without`/`on`/`ignoring`/`group_left`/`group_right`), durations,
/// numbers, strings nor Grafana variables (`$x`, `${x}`).
fn metric_names(expr: &str) -> Vec<String> {
    let chars: Vec<char> = expr.chars().collect();
    let mut names = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '"' || c == '\'' || c == '`' {
            i = skip_string(&chars, i);
        } else if c == '{' {
            i = skip_group(&chars, i, '{', '}');
        } else if c == '[' {
            i = skip_group(&chars, i, '[', ']');
        } else if c == '$' {
            i += 1;
            if chars.get(i) == Some(&'{') {
                i = skip_group(&chars, i, '{', '}');
            } else {
                while i < chars.len() && is_ident(chars[i]) {
                    i += 1;
                }
            }
        } else if c.is_ascii_digit()
            || (c == '.' && chars.get(i + 1).is_some_and(char::is_ascii_digit))
        {
            // Numbers and durations (5m, 1h30m, 1e-3, 0x1f).
            while i < chars.len() && (is_ident(chars[i]) || chars[i] == '.') {
                i += 1;
            }
        } else if is_ident_start(c) {
            let start = i;
            while i < chars.len() && is_ident(chars[i]) {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            let mut next = i;
            while next < chars.len() && chars[next].is_whitespace() {
                next += 1;
            }
            let paren = chars.get(next) == Some(&'(');
            if LABEL_LIST_KEYWORDS.contains(&word.as_str()) {
                if paren {
                    i = skip_group(&chars, next, '(', ')');
                }
            } else if paren || PROMQL_KEYWORDS.contains(&word.as_str()) {
                // A function or aggregation, or an operator keyword.
            } else {
                names.push(word);
            }
        } else {
            i += 1;
        }
    }
    names
}

#[test]
fn tokenizer_finds_metric_names_only() {
    let cases: [(&str, &[&str]); 7] = [
        (
            r#"histogram_quantile(0.99, sum by (le, verb) (rate(hami_apiserver_request_duration_seconds_bucket{verb=~"get|list"}[$__rate_interval])))"#,
            &["hami_apiserver_request_duration_seconds_bucket"],
        ),
        (
            r#"sum(rate(a_total[5m])) without (instance) / on(job) group_left(model) b_info offset 1h"#,
            &["a_total", "b_info"],
        ),
        (
            r#"1 - x{cluster=~"$cluster", model="a{b}"} / ignoring (le) y > bool 0.5e3 and z unless w"#,
            &["x", "y", "z", "w"],
        ),
        (
            r#"topk(5, foo:bar_rate5m) or vector(0)"#,
            &["foo:bar_rate5m"],
        ),
        (r#"label_replace(up, "dst", "$1", "src", "(.*)")"#, &["up"]),
        (r#"sum(m) by (cluster) * 100"#, &["m"]),
        (
            r#"count_over_time(m[${__range}]) + sum by(cluster)(n) + .5"#,
            &["m", "n"],
        ),
    ];
    for (expr, want) in cases {
        assert_eq!(metric_names(expr), want.to_vec(), "{expr}");
    }
}

#[test]
fn family_mapping_follows_types() {
    let f: BTreeMap<String, String> = [
        ("h".to_string(), "histogram".to_string()),
        ("c".to_string(), "counter".to_string()),
        ("g".to_string(), "gauge".to_string()),
    ]
    .into();
    assert_eq!(family_of("h_bucket", &f), Some("h"));
    assert_eq!(family_of("h_count", &f), Some("h"));
    assert_eq!(family_of("c_total", &f), Some("c"));
    assert_eq!(family_of("g", &f), Some("g"));
    assert_eq!(family_of("g_total", &f), None);
    assert_eq!(family_of("c_bucket", &f), None);
    assert_eq!(family_of("missing", &f), None);
}

fn dashboards() -> Vec<(String, Value)> {
    let dir = repo_root().join("dashboards");
    let mut out: Vec<(String, Value)> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .map(|p| {
            let text = std::fs::read_to_string(&p).unwrap();
            let v: Value = serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("{}: not JSON: {e}", p.display()));
            (p.file_name().unwrap().to_string_lossy().into_owned(), v)
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    let names: Vec<&str> = out.iter().map(|(n, _)| n.as_str()).collect();
    for want in [
        "agents.json",
        "control-plane.json",
        "failover.json",
        "fleet-capacity.json",
        "scheduling.json",
    ] {
        assert!(
            names.contains(&want),
            "dashboards/{want} missing: {names:?}"
        );
    }
    out
}

/// Every (panel title, expr) of a dashboard, after checking what Grafana
/// needs to import it; problems are pushed to `errors`.
fn check_structure(file: &str, d: &Value, errors: &mut Vec<String>) -> Vec<(String, String)> {
    let mut err = |m: String| errors.push(format!("{file}: {m}"));
    let schema = d["schemaVersion"].as_i64().unwrap_or(0);
    if !(36..=41).contains(&schema) {
        err(format!(
            "schemaVersion {schema} is not one Grafana 10/11 writes (36..=41)"
        ));
    }
    for field in ["uid", "title"] {
        if d[field].as_str().is_none_or(str::is_empty) {
            err(format!("no {field}"));
        }
    }
    let vars: Vec<&Value> = d["templating"]["list"]
        .as_array()
        .map(|l| l.iter().collect())
        .unwrap_or_default();
    let var_names: BTreeSet<&str> = vars.iter().filter_map(|v| v["name"].as_str()).collect();
    if !vars.iter().any(|v| {
        v["type"] == "datasource" && v["query"] == "prometheus" && v["name"] == "DS_PROMETHEUS"
    }) {
        err("no datasource variable DS_PROMETHEUS of type prometheus".into());
    }
    for v in &vars {
        if v["type"] == "query" {
            let q = v["definition"].as_str().unwrap_or("");
            if !q.starts_with("label_values(") {
                err(format!(
                    "variable {} is not a label_values query: {q}",
                    v["name"]
                ));
            }
        }
    }
    let Some(panels) = d["panels"].as_array() else {
        err("no panels".into());
        return Vec::new();
    };
    let mut ids = BTreeSet::new();
    let mut exprs = Vec::new();
    for p in panels {
        let title = p["title"].as_str().unwrap_or("").to_string();
        let Some(id) = p["id"].as_i64() else {
            err(format!("panel {title:?} has no id"));
            continue;
        };
        if !ids.insert(id) {
            err(format!("panel id {id} used twice"));
        }
        let g = &p["gridPos"];
        let (x, w) = (g["x"].as_i64(), g["w"].as_i64());
        if g["h"].as_i64().is_none()
            || g["y"].as_i64().is_none()
            || x.zip(w).is_none_or(|(x, w)| x + w > 24)
        {
            err(format!("panel {title:?} has no valid gridPos"));
        }
        if p["type"] == "row" {
            continue;
        }
        if p["datasource"]["uid"] != "${DS_PROMETHEUS}" || p["datasource"]["type"] != "prometheus" {
            err(format!(
                "panel {title:?} does not use the ${{DS_PROMETHEUS}} datasource"
            ));
        }
        let targets = p["targets"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default();
        if targets.is_empty() {
            err(format!("panel {title:?} has no targets"));
        }
        let mut refs = BTreeSet::new();
        for t in targets {
            let r = t["refId"].as_str().unwrap_or("");
            if r.is_empty() || !refs.insert(r) {
                err(format!("panel {title:?}: refId {r:?} missing or repeated"));
            }
            if t["datasource"]["uid"] != "${DS_PROMETHEUS}" {
                err(format!(
                    "panel {title:?} target {r}: datasource is not ${{DS_PROMETHEUS}}"
                ));
            }
            let expr = t["expr"].as_str().unwrap_or("");
            if expr.is_empty() {
                err(format!("panel {title:?} target {r}: no expr"));
            }
            for var in ["$cluster", "$model", "$shape"] {
                if expr.contains(var) && !var_names.contains(&var[1..]) {
                    err(format!(
                        "panel {title:?} uses {var}, which the dashboard does not define"
                    ));
                }
            }
            exprs.push((title.clone(), expr.to_string()));
        }
    }
    exprs
}

/// The server URL of a kubeconfig.
fn server_of(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap();
    text.lines()
        .find_map(|l| l.trim().strip_prefix("server:"))
        .map(|s| {
            s.trim()
                .trim_matches('"')
                .trim_start_matches("http://")
                .to_string()
        })
        .unwrap()
}

fn kubectl_ok(hami: &Hami, args: &[&str]) -> String {
    let (ok, out, err) = kubectl(hami, args);
    assert!(ok, "kubectl {args:?}: {err}");
    out
}

/// GPU values per (cluster, model) from the Clusters' gpuSummary, in the
/// gauges' units, keyed by gauge name.
fn expected_gpu_gauges(clusters: &Value) -> BTreeMap<(String, String, String), f64> {
    let mib = 1024.0 * 1024.0;
    let mut out = BTreeMap::new();
    for c in clusters["items"].as_array().unwrap() {
        let name = c["metadata"]["name"].as_str().unwrap().to_string();
        for g in c["status"]["gpuSummary"].as_array().into_iter().flatten() {
            let model = g["model"].as_str().unwrap().to_string();
            let num = |f: &str| g[f].as_f64().unwrap_or(0.0);
            for (gauge, v) in [
                ("hami_cluster_gpus", num("count")),
                ("hami_cluster_gpus_healthy", num("healthy")),
                ("hami_cluster_gpu_memory_bytes", num("memoryTotalMiB") * mib),
                (
                    "hami_cluster_gpu_memory_free_bytes",
                    num("memoryFreeMiB") * mib,
                ),
                ("hami_cluster_gpu_cores_percent", num("coresTotal")),
                ("hami_cluster_gpu_cores_free_percent", num("coresFree")),
                ("hami_cluster_gpu_share_slots_free", num("shareSlotsFree")),
            ] {
                out.insert((gauge.to_string(), name.clone(), model.clone()), v);
            }
        }
    }
    out
}

fn scraped_gpu_gauges(text: &str) -> BTreeMap<(String, String, String), f64> {
    samples(text)
        .into_iter()
        .filter(|((n, l), _)| n.starts_with("hami_cluster_gpu") && l.contains_key("model"))
        .map(|((n, l), v)| ((n, l["cluster"].clone(), l["model"].clone()), v))
        .collect()
}

/// The capacity shape gauges of the idle T4 member (member-3, CPU work
/// only) equal what its gpuSummary can hold under the default shapes: one
/// replica per whole GPU, `floor(memory per GPU / gpumem)` per GPU for the
/// memory-sized ones, none of `8gpu` on fewer than 8 GPUs; the per-replica
/// memory gauge names the shapes' gpumem; the stranded memory the
/// fragmentation panel shows follows from them.
fn check_shapes(hami: &Hami) {
    let mib = 1024.0 * 1024.0;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let clusters: Value =
            serde_json::from_str(&kubectl_ok(hami, &["get", "clusters", "-o", "json"])).unwrap();
        let text = control_metrics(hami);
        let all = samples(&text);
        let shape = |name: &str| {
            all.iter()
                .find(|((n, l), _)| {
                    n == "hami_cluster_shape_max_replicas"
                        && l.get("cluster").is_some_and(|c| c == "member-3")
                        && l.get("shape").is_some_and(|s| s == name)
                })
                .map(|(_, v)| *v)
        };
        let t4 = clusters["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["metadata"]["name"] == "member-3")
            .and_then(|c| c["status"]["gpuSummary"].as_array())
            .and_then(|g| g.first().cloned())
            .unwrap_or(Value::Null);
        let num = |f: &str| t4[f].as_f64().unwrap_or(0.0);
        let (count, total, free) = (num("count"), num("memoryTotalMiB"), num("memoryFreeMiB"));
        let per_gpu = if count > 0.0 { total / count } else { 0.0 };
        let expected = [
            ("1gpu", count),
            ("gpu-8g", count * (per_gpu / 8000.0).floor()),
            ("gpu-24g", count * (per_gpu / 24000.0).floor()),
            ("8gpu", (count / 8.0).floor()),
        ];
        let got: Vec<(&str, Option<f64>)> = expected.iter().map(|(n, _)| (*n, shape(n))).collect();
        let want: Vec<(&str, Option<f64>)> = expected.iter().map(|(n, v)| (*n, Some(*v))).collect();
        if count > 0.0 && free == total && got == want {
            // The generated T4 member: 6 GPUs of 15360 MiB.
            assert_eq!((count, per_gpu), (6.0, 15360.0), "{t4}");
            assert_eq!(shape("gpu-24g"), Some(0.0));
            let memory = |name: &str| {
                all.iter()
                    .find(|((n, l), _)| {
                        n == "hami_cluster_shape_gpu_memory_bytes"
                            && l.get("shape").is_some_and(|s| s == name)
                    })
                    .map(|(_, v)| *v)
            };
            assert_eq!(memory("gpu-8g"), Some(8000.0 * mib));
            assert_eq!(memory("gpu-24g"), Some(24000.0 * mib));
            assert_eq!(memory("1gpu"), None, "a whole-GPU shape has no memory size");
            // Stranded with gpu-8g: 7360 MiB on each T4.
            let stranded = free * mib - shape("gpu-8g").unwrap() * memory("gpu-8g").unwrap();
            assert_eq!(stranded, 6.0 * 7360.0 * mib);
            return;
        }
        assert!(
            Instant::now() < deadline,
            "member-3's capacity shape gauges differ from its gpuSummary ({t4})\ngot {got:?}\nwant {want:?}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// A CPU-only Deployment for the Push member, member-3.
const WEB: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: demo}
spec:
  replicas: 1
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - name: web
        image: nginx:1.27
        resources: {requests: {cpu: 100m, memory: 64Mi}}
---
apiVersion: policy.hami.io/v1alpha1
kind: PropagationPolicy
metadata: {name: web, namespace: demo}
spec:
  resourceSelectors:
  - {apiVersion: apps/v1, kind: Deployment, name: web}
  placement:
    clusterAffinity: {clusterNames: [member-3]}
    replicaScheduling: {replicaSchedulingType: Duplicated}
"#;

#[test]
fn dashboards_name_only_registered_metrics_and_cluster_gauges_match_the_fleet() {
    let dir = tempfile::tempdir().unwrap();
    let hami = Hami::start_with_args(dir.path(), "127.0.0.1:0", &["--sim-clusters", "3"]);
    // The members join after the API answers: wait for three Ready ones.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let text = control_metrics(&hami);
        let ready = samples(&text)
            .iter()
            .filter(|((n, _), v)| n == "hami_cluster_ready" && **v == 1.0)
            .count();
        if ready == 3 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{ready} of 3 members Ready after 60 s"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let samples_dir = repo_root().join("samples");
    for f in [
        "00-namespace.yaml",
        "10-gpu-deployment.yaml",
        "20-propagation-policy.yaml",
    ] {
        kubectl_ok(
            &hami,
            &["apply", "-f", samples_dir.join(f).to_str().unwrap()],
        );
    }
    // The sample selects A100 and H100 only; this one goes to the Push
    // member, whose agent's metrics hami-control serves.
    let web = dir.path().join("web.yaml");
    std::fs::write(&web, WEB).unwrap();
    kubectl_ok(&hami, &["apply", "-f", web.to_str().unwrap()]);

    // Wait for a scheduling decision and three Clusters with GPUs, and for
    // the gauges to equal the Clusters (read before and after the scrape,
    // so a status update in between only means another try).
    let deadline = Instant::now() + Duration::from_secs(90);
    let (control, last) = loop {
        let before = kubectl_ok(&hami, &["get", "clusters", "-o", "json"]);
        let text = control_metrics(&hami);
        let after = kubectl_ok(&hami, &["get", "clusters", "-o", "json"]);
        let clusters: Value = serde_json::from_str(&after).unwrap();
        let expected = expected_gpu_gauges(&clusters);
        let got = scraped_gpu_gauges(&text);
        let scheduled = samples(&text).iter().any(|((n, l), v)| {
            n == "hami_scheduler_attempts_total"
                && l.get("result").is_some_and(|r| r == "scheduled")
                && *v > 0.0
        });
        let fleet: BTreeSet<&String> = expected.keys().map(|(_, c, _)| c).collect();
        let applied = samples(&text).iter().any(|((n, l), v)| {
            n == "hami_agent_applies_total"
                && l.get("result").is_some_and(|r| r == "applied")
                && *v > 0.0
        });
        if before == after && scheduled && applied && fleet.len() == 3 && expected == got {
            break (text, expected);
        }
        if Instant::now() > deadline {
            panic!(
                "no scheduled attempt, no Push apply, or the hami_cluster gauges differ from the Clusters' gpuSummary\n\
                 scheduled: {scheduled} applied: {applied}\nexpected: {expected:#?}\ngot: {got:#?}"
            );
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    // The generated fleet: A100 8 GPUs, H100 8, T4 6, all healthy.
    let gpus: BTreeMap<(&str, &str), f64> = last
        .iter()
        .filter(|((g, _, _), _)| g == "hami_cluster_gpus")
        .map(|((_, c, m), v)| ((c.as_str(), m.as_str()), *v))
        .collect();
    assert_eq!(
        gpus,
        BTreeMap::from([
            (("member-1", "NVIDIA-A100-SXM4-80GB"), 8.0),
            (("member-2", "NVIDIA-H100-80GB-HBM3"), 8.0),
            (("member-3", "NVIDIA-Tesla-T4"), 6.0),
        ])
    );
    check_shapes(&hami);
    let all = samples(&control);
    for c in ["member-1", "member-2", "member-3"] {
        let ready = all
            .iter()
            .find(|((n, l), _)| {
                n == "hami_cluster_ready" && l.get("cluster").is_some_and(|x| x == c)
            })
            .map(|(_, v)| *v);
        assert_eq!(ready, Some(1.0), "hami_cluster_ready of {c}");
    }

    // Families: the control plane's and every simulated member's endpoint.
    let mut fams = families(&control);
    let members = dir.path().join("members");
    for i in 1..=3 {
        let addr = server_of(&members.join(format!("member-{i}.kubeconfig")));
        let text = http_get(&addr, "/metrics").unwrap();
        assert!(
            text.contains("# TYPE hami_sim_"),
            "member-{i} serves no hami_sim_ family"
        );
        fams.extend(families(&text));
    }
    for must in [
        "hami_apiserver_requests",
        "hami_scheduler_attempts",
        "hami_agent_applies",
        "hami_estimator_requests",
        "hami_cluster_gpus",
    ] {
        assert!(fams.contains_key(must), "{must} not registered: {fams:?}");
    }

    let mut errors = Vec::new();
    let mut used = BTreeSet::new();
    for (file, d) in dashboards() {
        for (panel, expr) in check_structure(&file, &d, &mut errors) {
            let names = metric_names(&expr);
            if names.is_empty() {
                errors.push(format!("{file}: panel {panel:?}: no metric in {expr}"));
            }
            for n in names {
                match family_of(&n, &fams) {
                    Some(f) => {
                        used.insert(f.to_string());
                    }
                    None => errors.push(format!(
                        "{file}: panel {panel:?}: metric {n} is not registered"
                    )),
                }
            }
        }
    }
    assert!(
        errors.is_empty(),
        "dashboard problems:\n{}",
        errors.join("\n")
    );
    // Every hami_cluster_* gauge of this module is on a dashboard (the
    // cluster-health controller's hami_cluster_health_* are counters).
    for (f, t) in &fams {
        if f.starts_with("hami_cluster_") && !f.starts_with("hami_cluster_health_") && t == "gauge"
        {
            assert!(used.contains(f), "{f} is on no dashboard");
        }
    }
}
