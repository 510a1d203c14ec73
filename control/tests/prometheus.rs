//! A real Prometheus server (Debian's `prometheus`, which also ships
//! `promtool`; `.ci/run` installs both) scrapes every hami binary on
//! loopback: `hami up --sim-clusters 3` (the control plane, with an
//! embedded store) and its three simulated members, a `hami-sim` member
//! joined by a `hami-agent` process, a standalone `hami-estimator` and a
//! `hami-device-plugin` on the fake backend. The fleet runs the sample GPU
//! Deployment, a CPU Deployment on the Push member, a Deployment no cluster
//! can hold, and a Cluster with no agent; then a NoExecute taint moves the
//! GPU replicas off one member (a failover to show on the timeline), and
//! the sample FederatedResourceQuota is applied.
//!
//! Checked: every target is up (`/api/v1/targets`); `promtool check
//! metrics` passes on each binary's `/metrics`; every PromQL expression of
//! every dashboard evaluates without error and returns data; every alert
//! rule loads and evaluates (`/api/v1/rules`), its signal (the comparison
//! made `bool`) returns data, and only the two alerts the test provokes
//! (the agent-less Cluster is not Ready, a binding is unschedulable)
//! return series. `promtool check rules` passes on the rule file.
//!
//! Without prometheus/promtool the test says so and passes, unless
//! `CI=true`, where it fails.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::{Hami, Proc, free_port, http_get, http_get_status, kubectl, repo_root};

/// `name` on PATH (or in /usr/bin), if installed.
fn installed(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/bin")])
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// (prometheus, promtool), or `None` after saying why (not under CI).
fn require_prometheus() -> Option<(PathBuf, PathBuf)> {
    match (installed("prometheus"), installed("promtool")) {
        (Some(p), Some(t)) => Some((p, t)),
        _ => {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "CI=true but prometheus/promtool are not installed: .ci/run installs Debian's prometheus"
            );
            eprintln!(
                "SKIPPED: prometheus and promtool are not installed (apt-get install prometheus); the Prometheus checks did not run"
            );
            None
        }
    }
}

/// Polls `probe` every 200 ms until `Ok`; panics with the last error.
fn eventually<T>(what: &str, secs: u64, mut probe: impl FnMut() -> Result<T, String>) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        match probe() {
            Ok(v) => return v,
            Err(e) if Instant::now() > deadline => panic!("{what} (after {secs} s): {e}"),
            Err(_) => std::thread::sleep(Duration::from_millis(200)),
        }
    }
}

fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// An instant query: Ok(result vector) or the error Prometheus gave.
fn query(prom: &str, q: &str) -> Result<Vec<Value>, String> {
    let (status, body) = http_get(prom, &format!("/api/v1/query?query={}", url_encode(q)))?;
    let v: Value = serde_json::from_str(&body).map_err(|e| format!("{status}: {e}: {body}"))?;
    if v["status"] != "success" {
        return Err(format!("{}: {}", v["errorType"], v["error"]));
    }
    Ok(v["data"]["result"].as_array().cloned().unwrap_or_default())
}

/// The server address of a kubeconfig.
fn server_of(path: &Path) -> String {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .find_map(|l| l.trim().strip_prefix("server:"))
        .map(|s| s.trim().trim_start_matches("http://").to_string())
        .unwrap()
}

/// PromQL of a Grafana target with the dashboard variables replaced: all
/// clusters and models, rates over 30 s (the test scrapes every second).
fn grafana_to_promql(expr: &str) -> String {
    expr.replace("$__rate_interval", "30s")
        .replace("${__range}", "5m")
        .replace("$__range", "5m")
        .replace("$__interval", "5s")
        .replace("$cluster", ".*")
        .replace("$model", ".*")
        .replace("$shape", ".*")
}

/// Every (file, panel title, expr) of `dashboards/`.
fn dashboard_exprs() -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    let mut files: Vec<PathBuf> = std::fs::read_dir(repo_root().join("dashboards"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    for f in files {
        let d: Value = serde_json::from_str(&std::fs::read_to_string(&f).unwrap()).unwrap();
        let name = f.file_name().unwrap().to_string_lossy().into_owned();
        for p in d["panels"].as_array().into_iter().flatten() {
            for t in p["targets"].as_array().into_iter().flatten() {
                if let Some(e) = t["expr"].as_str() {
                    out.push((
                        name.clone(),
                        p["title"].as_str().unwrap_or("").into(),
                        e.into(),
                    ));
                }
            }
        }
    }
    out
}

/// The last comparison outside parentheses, braces, brackets and strings
/// made `bool` (`x > 0` -> `x > bool 0`): the alert's signal, which returns
/// a 0/1 sample per series whether or not the alert fires.
fn signal_of(expr: &str) -> Option<String> {
    let b = expr.as_bytes();
    let (mut depth, mut i, mut at) = (0i32, 0usize, None);
    while i < b.len() {
        match b[i] {
            b'"' | b'\'' | b'`' => {
                let q = b[i];
                i += 1;
                while i < b.len() && b[i] != q {
                    i += if b[i] == b'\\' { 2 } else { 1 };
                }
            }
            b'(' | b'{' | b'[' => depth += 1,
            b')' | b'}' | b']' => depth -= 1,
            b'=' | b'!' | b'>' | b'<' if depth == 0 => {
                let two = b.get(i + 1) == Some(&b'=');
                let op = matches!((b[i], two), (b'=' | b'!', true) | (b'>' | b'<', _));
                if op {
                    let len = if two { 2 } else { 1 };
                    at = Some(i + len);
                    i += len;
                    continue;
                }
            }
            _ => {}
        }
        i += 1;
    }
    at.map(|at| format!("{} bool{}", &expr[..at], &expr[at..]))
}

#[test]
fn alert_signals_make_the_last_comparison_bool() {
    assert_eq!(signal_of("a == 0").unwrap(), "a == bool 0");
    assert_eq!(
        signal_of(r#"sum(rate(x{code=~"5.."}[5m])) / sum(y) > 0.05"#).unwrap(),
        r#"sum(rate(x{code=~"5.."}[5m])) / sum(y) > bool 0.05"#
    );
    assert_eq!(
        signal_of("histogram_quantile(0.99, sum by (le) (rate(h[5m]))) > 1").unwrap(),
        "histogram_quantile(0.99, sum by (le) (rate(h[5m]))) > bool 1"
    );
    assert_eq!(signal_of("a < b").unwrap(), "a < bool b");
    assert_eq!(signal_of("a >= 2").unwrap(), "a >= bool 2");
    assert_eq!(signal_of(r#"x{a!="b"}"#), None);
}

/// (group, alert, expr) of the rule file.
fn alert_rules() -> Vec<(String, String, String)> {
    let text = std::fs::read_to_string(repo_root().join("alerts/hami.rules.yaml")).unwrap();
    let doc: Value = serde_saphyr::from_str(&text).unwrap();
    let mut out = Vec::new();
    for g in doc["groups"].as_array().unwrap() {
        for r in g["rules"].as_array().unwrap() {
            let name = r["alert"].as_str().or(r["record"].as_str()).unwrap();
            out.push((
                g["name"].as_str().unwrap().to_string(),
                name.to_string(),
                r["expr"].as_str().unwrap().to_string(),
            ));
        }
    }
    out
}

/// The alerts this test provokes; every other one must be silent.
const PROVOKED: [&str; 2] = ["HamiClusterNotReady", "HamiUnschedulableBindings"];

#[test]
fn promtool_accepts_the_alert_rules() {
    let Some((_, promtool)) = require_prometheus() else {
        return;
    };
    let out = Command::new(promtool)
        .args(["check", "rules"])
        .arg(repo_root().join("alerts/hami.rules.yaml"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "promtool check rules:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let names: Vec<String> = alert_rules().into_iter().map(|(_, n, _)| n).collect();
    for a in PROVOKED {
        assert!(
            names.contains(&a.to_string()),
            "{a} is not in the rule file"
        );
    }
}

const FAKE_GPUS: &str = "devices:
  - {uuid: GPU-0000-a, model: NVIDIA A100-SXM4-40GB, memoryMiB: 40960, numa: 0, memoryUsedMiB: 1024, utilization: 30}
  - {uuid: GPU-0000-b, model: NVIDIA A100-SXM4-40GB, memoryMiB: 40960, numa: 1}
";

/// The Push member's CPU Deployment, a Deployment no cluster can hold
/// (16 GPUs per replica), and a Cluster without an agent.
const EXTRA: &str = r#"
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
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: too-big, namespace: demo}
spec:
  replicas: 1
  selector: {matchLabels: {app: too-big}}
  template:
    metadata: {labels: {app: too-big}}
    spec:
      containers:
      - name: train
        image: trainer:1
        resources: {limits: {nvidia.com/gpu: "16"}}
---
apiVersion: policy.hami.io/v1alpha1
kind: PropagationPolicy
metadata: {name: too-big, namespace: demo}
spec:
  resourceSelectors:
  - {apiVersion: apps/v1, kind: Deployment, name: too-big}
  placement:
    replicaScheduling:
      replicaSchedulingType: Divided
      replicaDivisionPreference: Weighted
      weightPreference: {dynamicWeight: AvailableReplicas}
---
apiVersion: cluster.hami.io/v1alpha1
kind: Cluster
metadata: {name: ghost}
spec: {syncMode: Pull}
"#;

#[test]
fn prometheus_scrapes_every_binary_and_every_dashboard_and_alert_query_answers() {
    let Some((prometheus, promtool)) = require_prometheus() else {
        return;
    };
    let bins = support::bin_dir();
    // Timed from here: the build above waits for cargo's lock when other
    // builds run.
    let started = Instant::now();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();

    // The control plane with three simulated members, an embedded store.
    let hami = Hami::start_with_args(
        &dir.join("hami"),
        "127.0.0.1:0",
        &["--sim-clusters", "3", "--cluster-grace", "3s"],
    );
    // A fourth member joined by a hami-agent process.
    let member4 = dir.join("member-4.kubeconfig");
    let mut sim = Proc::spawn(
        "hami-sim",
        Command::new(bins.join("hami-sim"))
            .args([
                "--listen",
                "127.0.0.1:0",
                "--name",
                "member-4",
                "--generate-nodes",
                "2",
            ])
            .arg("--kubeconfig")
            .arg(&member4),
    );
    let sim_addr = eventually("hami-sim ready", 60, || {
        sim.alive();
        let text = std::fs::read_to_string(&member4).map_err(|e| e.to_string())?;
        let addr = text
            .lines()
            .find_map(|l| l.trim().strip_prefix("server: http://"))
            .ok_or("no server in the kubeconfig yet")?
            .trim()
            .to_string();
        (http_get_status(&addr, "/readyz") == Some(200))
            .then_some(addr)
            .ok_or_else(|| "not ready".to_string())
    });
    let agent_addr = format!("127.0.0.1:{}", free_port());
    let mut agent = Proc::spawn(
        "hami-agent",
        Command::new(bins.join("hami-agent"))
            .args([
                "--cluster-name",
                "member-4",
                "--estimator-addr",
                "127.0.0.1:0",
            ])
            .args(["--http-addr", &agent_addr, "--lease-renew-interval", "2s"])
            .arg("--control-kubeconfig")
            .arg(hami.kubeconfig())
            .arg("--member-kubeconfig")
            .arg(&member4),
    );
    let estimator_addr = format!("127.0.0.1:{}", free_port());
    let mut estimator = Proc::spawn(
        "hami-estimator",
        Command::new(bins.join("hami-estimator"))
            .args(["--generate-nodes", "8", "--cluster", "estimator-1"])
            .args(["--grpc-addr", &format!("127.0.0.1:{}", free_port())])
            .args(["--http-addr", &estimator_addr]),
    );
    let gpus = dir.join("gpus.yaml");
    std::fs::write(&gpus, FAKE_GPUS).unwrap();
    let plugin_addr = format!("127.0.0.1:{}", free_port());
    let mut plugin = Proc::spawn(
        "hami-device-plugin",
        Command::new(bins.join("hami-device-plugin"))
            .args([
                "--backend",
                "fake",
                "--inventory",
                "file",
                "--http-addr",
                &plugin_addr,
            ])
            .arg("--fake-devices")
            .arg(&gpus)
            .arg("--inventory-file")
            .arg(dir.join("inventory"))
            .arg("--kubelet-socket")
            .arg(dir.join("kubelet.sock")),
    );

    // The GPU Deployment is divided by the replicas each member can hold, and
    // a division is made once: apply it only when the three in-process
    // members report their GPUs, so member-2 gets replicas to lose below.
    eventually("member-1..3 report their GPUs", 90, || {
        let (ok, out, err) = kubectl(&hami, &["get", "clusters", "-o", "json"]);
        if !ok {
            return Err(err);
        }
        let list: Value = serde_json::from_str(&out).map_err(|e| e.to_string())?;
        let reporting: Vec<&str> = list["items"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default()
            .iter()
            .filter(|c| {
                c["status"]["gpuSummary"]
                    .as_array()
                    .is_some_and(|g| !g.is_empty())
            })
            .filter_map(|c| c["metadata"]["name"].as_str())
            .collect();
        ["member-1", "member-2", "member-3"]
            .iter()
            .all(|m| reporting.contains(m))
            .then_some(())
            .ok_or_else(|| format!("reporting GPUs: {reporting:?}"))
    });

    // The workloads, the unschedulable one and the agent-less Cluster.
    for f in [
        "00-namespace.yaml",
        "10-gpu-deployment.yaml",
        "20-propagation-policy.yaml",
    ] {
        let path = repo_root().join("samples").join(f);
        let (ok, _, err) = kubectl(&hami, &["apply", "-f", path.to_str().unwrap()]);
        assert!(ok, "{f}: {err}");
    }
    let extra = dir.join("extra.yaml");
    std::fs::write(&extra, EXTRA).unwrap();
    let (ok, _, err) = kubectl(&hami, &["apply", "-f", extra.to_str().unwrap()]);
    assert!(ok, "{err}");

    let members: Vec<String> = (1..=3)
        .map(|i| server_of(&dir.join(format!("hami/members/member-{i}.kubeconfig"))))
        .collect();
    let mut jobs: Vec<(&str, Vec<String>)> = vec![
        ("hami-control", vec![hami.listen.clone()]),
        ("hami-member", members),
        ("hami-sim", vec![sim_addr.clone()]),
        ("hami-agent", vec![agent_addr.clone()]),
        ("hami-estimator", vec![estimator_addr.clone()]),
        ("hami-device-plugin", vec![plugin_addr.clone()]),
    ];
    jobs.sort();
    let mut config = format!(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\nrule_files:\n  - {}\nscrape_configs:\n",
        repo_root().join("alerts/hami.rules.yaml").display()
    );
    // The control plane's /metrics is behind its TLS and RBAC: Prometheus
    // scrapes it over HTTPS with a client certificate, as a scrape of
    // kube-apiserver does.
    let pki = hami.data_dir.join("pki");
    let control_tls = format!(
        "    scheme: https\n    tls_config:\n      ca_file: {}\n      cert_file: {}\n      key_file: {}\n",
        pki.join("ca.crt").display(),
        pki.join("admin.crt").display(),
        pki.join("admin.key").display()
    );
    for (job, targets) in &jobs {
        let list: Vec<String> = targets.iter().map(|t| format!("'{t}'")).collect();
        config.push_str(&format!("  - job_name: {job}\n"));
        if *job == "hami-control" {
            config.push_str(&control_tls);
        }
        config.push_str(&format!(
            "    static_configs:\n      - targets: [{}]\n",
            list.join(", ")
        ));
    }
    let config_path = dir.join("prometheus.yml");
    std::fs::write(&config_path, &config).unwrap();
    let prom = format!("127.0.0.1:{}", free_port());
    let mut server = Proc::spawn(
        "prometheus",
        Command::new(&prometheus)
            .arg(format!("--config.file={}", config_path.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("tsdb").display()
            ))
            .arg(format!("--web.listen-address={prom}"))
            .arg("--log.level=warn")
            .stderr(Stdio::null()),
    );

    // Every target up.
    let targets = eventually("every target up", 90, || {
        server.alive();
        let (_, body) = http_get(&prom, "/api/v1/targets")?;
        let v: Value = serde_json::from_str(&body).map_err(|e| e.to_string())?;
        let active = v["data"]["activeTargets"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let down: Vec<String> = active
            .iter()
            .filter(|t| t["health"] != "up")
            .map(|t| {
                format!(
                    "{} {} {}: {}",
                    t["labels"]["job"], t["scrapeUrl"], t["health"], t["lastError"]
                )
            })
            .collect();
        if active.len() == 8 && down.is_empty() {
            Ok(active)
        } else {
            Err(format!("{} targets, down: {down:#?}", active.len()))
        }
    });
    eprintln!(
        "[prometheus] {} targets up at {:.1}s",
        targets.len(),
        started.elapsed().as_secs_f64()
    );

    // promtool check metrics on every binary's /metrics.
    for t in &targets {
        let url = t["scrapeUrl"].as_str().unwrap();
        let (status, text) = if url.starts_with("https://") {
            hami.get("/metrics").unwrap()
        } else {
            let addr = url
                .trim_start_matches("http://")
                .trim_end_matches("/metrics");
            http_get(addr, "/metrics").unwrap()
        };
        assert_eq!(status, 200, "{url}");
        let mut check = Command::new(&promtool)
            .args(["check", "metrics"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        check
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
        let out = check.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "promtool check metrics on {} ({url}):\n{}{}",
            t["labels"]["job"],
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    // The fleet is scheduled and its members Ready (the fourth by its agent
    // process); then a NoExecute taint moves member-2's GPU replicas away.
    eventually("members Ready and GPU replicas placed", 90, || {
        agent.alive();
        estimator.alive();
        plugin.alive();
        let ready = query(&prom, "sum(hami_cluster_ready)")?;
        let placed = query(
            &prom,
            r#"sum(hami_scheduler_attempts_total{result="scheduled"})"#,
        )?;
        let n = |r: &[Value]| {
            r.first()
                .and_then(|s| s["value"][1].as_str()?.parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        (n(&ready) == 4.0 && n(&placed) >= 1.0)
            .then_some(())
            .ok_or_else(|| format!("ready {ready:?}, scheduled {placed:?}"))
    });
    eventually("the GPU Deployment has replicas on member-2", 60, || {
        let (ok, out, err) = kubectl(
            &hami,
            &[
                "get",
                "rb",
                "-n",
                "demo",
                "-o",
                "jsonpath={.items[*].spec.clusters[*].name}",
            ],
        );
        if !ok {
            return Err(err);
        }
        out.split_whitespace()
            .any(|c| c == "member-2")
            .then_some(())
            .ok_or_else(|| format!("clusters of the demo bindings: {out:?}"))
    });
    let (ok, _, err) = kubectl(
        &hami,
        &[
            "patch",
            "cluster",
            "member-2",
            "--type",
            "merge",
            "-p",
            r#"{"spec":{"taints":[{"key":"maintenance","effect":"NoExecute"}]}}"#,
        ],
    );
    assert!(ok, "{err}");
    eventually(
        "an eviction started and ended (replacements ready)",
        90,
        || {
            let n = |q: &str| -> Result<f64, String> {
                let r = query(&prom, q)?;
                Ok(r.first()
                    .and_then(|s| s["value"][1].as_str()?.parse::<f64>().ok())
                    .unwrap_or(-1.0))
            };
            let started = n("sum(hami_failover_evictions_total)")?;
            let ended = n(r#"hami_failover_tasks_finished_total{reason="ready"}"#)?;
            let standing = n("hami_failover_evictions_in_progress")?;
            (started >= 1.0 && ended >= 1.0 && standing == 0.0)
                .then_some(())
                .ok_or(format!(
                    "evictions {started}, ended ready {ended}, standing {standing}"
                ))
        },
    );
    // A federated quota for the demo namespace (after the failover: the
    // sample's static assignment would hold the replacements back).
    let quota = repo_root().join("samples/40-federated-resource-quota.yaml");
    let (ok, _, err) = kubectl(&hami, &["apply", "-f", quota.to_str().unwrap()]);
    assert!(ok, "{err}");
    eprintln!(
        "[prometheus] fleet scheduled, failover done at {:.1}s",
        started.elapsed().as_secs_f64()
    );

    // Every dashboard expression: no error, and data (rates need a few
    // scrapes of the new series, so retry until the deadline).
    let exprs = dashboard_exprs();
    assert!(
        exprs.len() > 40,
        "only {} dashboard expressions",
        exprs.len()
    );
    eventually("every dashboard expression returns data", 60, || {
        let mut problems = Vec::new();
        for (file, panel, expr) in &exprs {
            match query(&prom, &grafana_to_promql(expr)) {
                Err(e) => problems.push(format!("{file} / {panel}: {expr}\n    error: {e}")),
                Ok(r) if r.is_empty() => {
                    problems.push(format!("{file} / {panel}: {expr}\n    no data"))
                }
                Ok(_) => {}
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems.join("\n"))
        }
    });

    // Alert rules: loaded and evaluated by Prometheus without error; each
    // signal returns data; only the provoked alerts return series.
    let rules = alert_rules();
    eventually("every rule evaluated without error", 30, || {
        let (_, body) = http_get(&prom, "/api/v1/rules")?;
        let v: Value = serde_json::from_str(&body).map_err(|e| e.to_string())?;
        let mut seen = BTreeMap::new();
        for g in v["data"]["groups"].as_array().into_iter().flatten() {
            for r in g["rules"].as_array().into_iter().flatten() {
                seen.insert(
                    r["name"].as_str().unwrap_or("").to_string(),
                    (r["health"].clone(), r["lastError"].clone()),
                );
            }
        }
        let bad: Vec<String> = rules
            .iter()
            .filter(|(_, n, _)| seen.get(n).is_none_or(|(h, _)| h != "ok"))
            .map(|(_, n, _)| format!("{n}: {:?}", seen.get(n)))
            .collect();
        if bad.is_empty() {
            Ok(())
        } else {
            Err(bad.join("\n"))
        }
    });
    eventually("alert signals and states", 30, || {
        let mut problems = Vec::new();
        for (group, name, expr) in &rules {
            let signal = signal_of(expr).ok_or(format!("{name}: no comparison in {expr}"))?;
            match query(&prom, &signal) {
                Err(e) => problems.push(format!("{group}/{name}: signal {signal}: {e}")),
                Ok(r) if r.is_empty() => {
                    problems.push(format!("{group}/{name}: signal {signal} returns no data"))
                }
                Ok(_) => {}
            }
            let provoked = PROVOKED.contains(&name.as_str());
            match query(&prom, expr) {
                Err(e) => problems.push(format!("{group}/{name}: {e}")),
                Ok(r) if provoked && r.is_empty() => {
                    problems.push(format!("{group}/{name}: provoked but silent"))
                }
                Ok(r) if !provoked && !r.is_empty() => {
                    problems.push(format!("{group}/{name}: fires on a healthy fleet: {r:?}"))
                }
                Ok(_) => {}
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems.join("\n"))
        }
    });
    // The estimators' snapshot gauges are real in every home (hami up's
    // in-process agents, the agent process, the estimator binary): the
    // generated fleets' node counts, per cluster.
    let by_cluster = |q: &str| -> BTreeMap<String, f64> {
        query(&prom, q)
            .unwrap()
            .iter()
            .map(|s| {
                (
                    s["metric"]["cluster"].as_str().unwrap_or("").to_string(),
                    s["value"][1].as_str().unwrap().parse().unwrap(),
                )
            })
            .collect()
    };
    let nodes = by_cluster("hami_estimator_snapshot_nodes");
    let want: BTreeMap<String, f64> = [
        ("member-1", 2.0),
        ("member-2", 1.0),
        ("member-3", 3.0),
        ("member-4", 2.0),
        ("estimator-1", 8.0),
    ]
    .into_iter()
    .map(|(c, n)| (c.to_string(), n))
    .collect();
    assert_eq!(nodes, want, "hami_estimator_snapshot_nodes by cluster");
    let pods = by_cluster("hami_estimator_snapshot_pods");
    assert!(pods["member-1"] >= 1.0, "member-1 runs pods: {pods:?}");
    // Every agent's series carry its cluster, whichever process runs it.
    let applies = by_cluster(r#"sum by (cluster) (hami_agent_applies_total{result="applied"})"#);
    for c in ["member-1", "member-2", "member-3", "member-4"] {
        assert!(
            applies.contains_key(c),
            "no hami_agent_applies_total of {c}: {applies:?}"
        );
    }
    assert!(applies["member-1"] >= 1.0, "{applies:?}");
    // The embedded store reports its commits.
    let commits = query(&prom, "hami_store_commit_batch_size_count").unwrap();
    let n: f64 = commits[0]["value"][1].as_str().unwrap().parse().unwrap();
    assert!(n >= 10.0, "store commits: {commits:?}");

    let ghost = query(&prom, "hami_cluster_ready == 0").unwrap();
    assert!(
        ghost.iter().any(|s| s["metric"]["cluster"] == "ghost"),
        "the agent-less Cluster is not the one not Ready: {ghost:?}"
    );
    eprintln!(
        "[prometheus] {} dashboard expressions and {} alert rules checked in {:.1}s",
        exprs.len(),
        rules.len(),
        started.elapsed().as_secs_f64()
    );
    drop(server);
}
