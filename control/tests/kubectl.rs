//! Drives the real `/usr/bin/kubectl` against `hami up` on a free loopback port:
//! apply the samples, get, round-trip a spec, re-apply after an edit (a patch,
//! not a conflict), server-side apply, watch a change made by another client,
//! and delete.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use support::{
    Hami, kubectl, kubectl_json as get_json, kubectl_ok as ok, kubectl_path, repo_root,
    wait_members_ready,
};

/// Every object in samples/, as JSON values.
fn sample_objects() -> Vec<Value> {
    let dir = repo_root().join("samples");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("samples/ exists")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
        .collect();
    files.sort();
    let mut out = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        let docs: Vec<Value> = serde_saphyr::from_multiple(&text).unwrap();
        out.extend(docs.into_iter().filter(|d| d.is_object()));
    }
    out
}

fn find<'a>(objs: &'a [Value], kind: &str) -> &'a Value {
    objs.iter()
        .find(|o| o["kind"] == kind)
        .unwrap_or_else(|| panic!("samples/ has no {kind}"))
}

fn name_ns(obj: &Value) -> (String, String) {
    let md = &obj["metadata"];
    (
        md["name"].as_str().unwrap().to_string(),
        md["namespace"].as_str().unwrap_or("default").to_string(),
    )
}

/// `kubectl create cronjob` as a user types it.
const CREATE_CRONJOB: &[&str] = &[
    "create",
    "cronjob",
    "nightly",
    "--image=busybox",
    "--schedule=0 3 * * *",
    "--",
    "date",
];

/// `kubectl ARGS -o yaml`, parsed.
fn get_yaml(hami: &Hami, args: &[&str]) -> Value {
    let mut a = args.to_vec();
    a.extend(["-o", "yaml"]);
    serde_saphyr::from_str(&ok(hami, &a)).unwrap()
}

#[test]
fn kubectl_end_to_end() {
    let tmp = tempfile::tempdir().unwrap();
    let hami = Hami::start(&tmp.path().join("data"), "127.0.0.1:0");
    let samples = repo_root().join("samples");
    let samples = samples.to_str().unwrap();
    let objs = sample_objects();
    let deploy = find(&objs, "Deployment");
    let pp = find(&objs, "PropagationPolicy");
    let (dname, dns) = name_ns(deploy);
    let (pname, pns) = name_ns(pp);

    // apply -f samples/: every object is created.
    let out = ok(&hami, &["apply", "-f", samples]);
    println!("apply:\n{out}");
    assert!(out.contains("created"), "{out}");

    // get deploy,pp -A lists both.
    let out = ok(&hami, &["get", "deploy,pp", "-A"]);
    println!("get deploy,pp -A:\n{out}");
    assert!(out.contains(&dname) && out.contains(&pname), "{out}");

    // get -o yaml round-trips the spec: every field the sample sets is there.
    let yaml = ok(&hami, &["get", "deploy", &dname, "-n", &dns, "-o", "yaml"]);
    let got: Value = serde_saphyr::from_str(&yaml).unwrap();
    assert_subset(&deploy["spec"], &got["spec"], "spec");
    assert!(got["metadata"]["resourceVersion"].as_str().is_some());
    assert!(got["metadata"]["uid"].as_str().is_some());

    // Edit the Deployment and apply again: a patch, not a conflict.
    let mut edited = deploy.clone();
    edited["spec"]["replicas"] = Value::from(5);
    let image = &mut edited["spec"]["template"]["spec"]["containers"][0]["image"];
    *image = Value::from("registry.example/edited:v2");
    let edit_file = tmp.path().join("edited.json");
    std::fs::write(&edit_file, serde_json::to_vec(&edited).unwrap()).unwrap();
    let out = ok(&hami, &["apply", "-f", edit_file.to_str().unwrap()]);
    assert!(out.contains("configured"), "{out}");
    let got = get_json(&hami, &["get", "deploy", &dname, "-n", &dns]);
    assert_eq!(got["spec"]["replicas"], 5);
    assert_eq!(
        got["spec"]["template"]["spec"]["containers"][0]["image"],
        "registry.example/edited:v2"
    );
    // The container list was merged, not duplicated.
    assert_eq!(
        got["spec"]["template"]["spec"]["containers"]
            .as_array()
            .unwrap()
            .len(),
        deploy["spec"]["template"]["spec"]["containers"]
            .as_array()
            .unwrap()
            .len()
    );

    // Server-side apply of the (edited) file.
    let out = ok(
        &hami,
        &["apply", "--server-side", "-f", edit_file.to_str().unwrap()],
    );
    assert!(out.contains("serverside-applied"), "{out}");
    let got = get_json(
        &hami,
        &["get", "deploy", &dname, "-n", &dns, "--show-managed-fields"],
    );
    let managers: Vec<&str> = got["metadata"]["managedFields"]
        .as_array()
        .map(|m| m.iter().filter_map(|e| e["manager"].as_str()).collect())
        .unwrap_or_default();
    assert!(managers.contains(&"kubectl"), "managers: {managers:?}");

    // get pp -w shows a change made by another client.
    let mut watch = Command::new(kubectl_path())
        .arg("--kubeconfig")
        .arg(hami.kubeconfig())
        .args(["get", "pp", &pname, "-n", &pns, "-w", "-o"])
        .arg("jsonpath={.metadata.name} priority={.spec.priority}{\"\\n\"}")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = watch.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    // First line: the current state.
    let first = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("watch printed the object");
    assert!(first.starts_with(&pname), "{first}");
    // Another client changes the policy.
    ok(
        &hami,
        &[
            "patch",
            "pp",
            &pname,
            "-n",
            &pns,
            "--type=merge",
            "-p",
            r#"{"spec":{"priority":42}}"#,
        ],
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut seen = false;
    while Instant::now() < deadline {
        if let Ok(line) = rx.recv_timeout(Duration::from_millis(500)) {
            println!("watch: {line}");
            if line.contains("priority=42") {
                seen = true;
                break;
            }
        }
    }
    let _ = watch.kill();
    let _ = watch.wait();
    assert!(seen, "kubectl get -w did not show the change");

    // delete -f samples/: everything goes.
    let out = ok(&hami, &["delete", "-f", samples]);
    println!("delete:\n{out}");
    let (found, _, err) = kubectl(&hami, &["get", "deploy", &dname, "-n", &dns]);
    assert!(!found, "deployment still there after delete");
    assert!(
        err.contains("NotFound") || err.contains("not found"),
        "{err}"
    );
    let (found, _, _) = kubectl(&hami, &["get", "pp", &pname, "-n", &pns]);
    assert!(!found, "policy still there after delete");
}

/// Every field set in `want` is present with the same value in `got` (server
/// defaults may add more).
fn assert_subset(want: &Value, got: &Value, path: &str) {
    match (want, got) {
        (Value::Object(w), Value::Object(g)) => {
            for (k, v) in w {
                let p = format!("{path}.{k}");
                let gv = g.get(k).unwrap_or_else(|| panic!("{p} missing"));
                assert_subset(v, gv, &p);
            }
        }
        (Value::Array(w), Value::Array(g)) => {
            assert_eq!(w.len(), g.len(), "{path} length");
            for (i, (a, b)) in w.iter().zip(g).enumerate() {
                assert_subset(a, b, &format!("{path}[{i}]"));
            }
        }
        _ => assert_eq!(want, got, "{path}"),
    }
}

/// kubectl with `EDITOR` set, for `kubectl edit`.
fn kubectl_editing(hami: &Hami, editor: &std::path::Path, args: &[&str]) -> String {
    let out = Command::new(kubectl_path())
        .arg("--kubeconfig")
        .arg(hami.kubeconfig())
        .args(args)
        .env("EDITOR", editor)
        .env("KUBE_EDITOR", editor)
        .stdin(Stdio::null())
        .output()
        .expect("run kubectl");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(
        out.status.success(),
        "kubectl {args:?} failed:\nstdout: {stdout}\nstderr: {stderr}"
    );
    stdout.into_owned()
}

fn labels_and_annotations(obj: &Value) -> (Value, Value) {
    (
        obj["metadata"]["labels"].clone(),
        obj["metadata"]["annotations"].clone(),
    )
}

/// The imperative verbs, as a new user types them. kubectl 1.32 sends the
/// built-in kinds of `create`, `run` and `expose` as
/// `application/vnd.kubernetes.protobuf` and asks for protobuf first
/// (`Accept: application/vnd.kubernetes.protobuf, */*`); `scale`,
/// `rollout restart`, `label`, `annotate`, `set image` and `edit` read the
/// object and send a patch. None may answer 415, and every object reads back
/// (`get -o yaml`) with the spec, labels and annotations that were sent.
#[test]
fn kubectl_imperative_verbs_over_protobuf() {
    let tmp = tempfile::tempdir().unwrap();
    let hami = Hami::start(&tmp.path().join("data"), "127.0.0.1:0");
    let yaml = |args: &[&str]| get_yaml(&hami, args);

    // create deployment, with the wire checked at -v=8: protobuf both ways.
    let (success, out, err) = kubectl(
        &hami,
        &[
            "create",
            "deployment",
            "web",
            "--image=nginx",
            "--replicas=2",
            "--port=8080",
            "-v=8",
        ],
    );
    assert!(success, "create deployment: {out}\n{err}");
    assert!(
        err.contains("Content-Type: application/vnd.kubernetes.protobuf"),
        "kubectl did not send protobuf (or the log changed):\n{err}"
    );
    assert!(!err.contains(" 415 "), "{err}");
    let d = yaml(&["get", "deployment", "web"]);
    assert_eq!(d["spec"]["replicas"], 2);
    assert_eq!(d["spec"]["selector"]["matchLabels"]["app"], "web");
    let c = &d["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(
        (c["name"].as_str(), c["image"].as_str()),
        (Some("nginx"), Some("nginx"))
    );
    assert_eq!(c["ports"][0]["containerPort"], 8080);
    assert_eq!(d["metadata"]["labels"]["app"], "web");

    ok(
        &hami,
        &["create", "job", "j1", "--image=busybox", "--", "echo", "hi"],
    );
    let j = yaml(&["get", "job", "j1"]);
    let c = &j["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(c["image"], "busybox");
    assert_eq!(c["command"], serde_json::json!(["echo", "hi"]));
    assert_eq!(j["spec"]["template"]["spec"]["restartPolicy"], "Never");

    ok(&hami, &["create", "configmap", "cm1", "--from-literal=k=v"]);
    assert_eq!(yaml(&["get", "configmap", "cm1"])["data"]["k"], "v");

    ok(
        &hami,
        &["create", "secret", "generic", "s1", "--from-literal=p=q"],
    );
    let s = yaml(&["get", "secret", "s1"]);
    assert_eq!(s["data"]["p"], "cQ==");

    ok(
        &hami,
        &["create", "service", "clusterip", "svc1", "--tcp=80:8080"],
    );
    let svc = yaml(&["get", "service", "svc1"]);
    assert_eq!(svc["spec"]["ports"][0]["port"], 80);
    assert_eq!(svc["spec"]["ports"][0]["targetPort"], 8080);
    assert_eq!(svc["spec"]["selector"]["app"], "svc1");

    ok(&hami, &["create", "namespace", "team-a"]);
    assert_eq!(
        yaml(&["get", "namespace", "team-a"])["metadata"]["name"],
        "team-a"
    );

    ok(
        &hami,
        &[
            "run",
            "pod1",
            "--image=nginx",
            "--labels=app=pod1,tier=web",
            "-n",
            "team-a",
        ],
    );
    let p = yaml(&["get", "pod", "pod1", "-n", "team-a"]);
    assert_eq!(p["spec"]["containers"][0]["image"], "nginx");
    assert_eq!(p["metadata"]["labels"]["tier"], "web");

    ok(
        &hami,
        &[
            "expose",
            "deployment",
            "web",
            "--port=80",
            "--target-port=8080",
            "--name=web-svc",
        ],
    );
    let e = yaml(&["get", "service", "web-svc"]);
    assert_eq!(e["spec"]["selector"]["app"], "web");
    assert_eq!(e["spec"]["ports"][0]["targetPort"], 8080);

    ok(&hami, &["scale", "deployment", "web", "--replicas=3"]);
    assert_eq!(yaml(&["get", "deployment", "web"])["spec"]["replicas"], 3);

    ok(&hami, &["rollout", "restart", "deployment", "web"]);
    let d = yaml(&["get", "deployment", "web"]);
    assert!(
        d["spec"]["template"]["metadata"]["annotations"]["kubectl.kubernetes.io/restartedAt"]
            .is_string(),
        "{d:?}"
    );

    ok(&hami, &["label", "deployment", "web", "tier=frontend"]);
    ok(&hami, &["annotate", "deployment", "web", "owner=ml-team"]);
    ok(
        &hami,
        &["set", "image", "deployment/web", "nginx=nginx:1.27"],
    );
    let d = yaml(&["get", "deployment", "web"]);
    let (labels, annotations) = labels_and_annotations(&d);
    assert_eq!(
        (labels["tier"].as_str(), labels["app"].as_str()),
        (Some("frontend"), Some("web"))
    );
    assert_eq!(annotations["owner"], "ml-team");
    assert_eq!(
        d["spec"]["template"]["spec"]["containers"][0]["image"],
        "nginx:1.27"
    );

    // kubectl edit: GET, the editor changes the file, kubectl sends the patch.
    let editor = tmp.path().join("edit.sh");
    std::fs::write(
        &editor,
        "#!/bin/sh\nsed -i -e 's/replicas: 3/replicas: 4/' -e 's/owner: ml-team/owner: platform/' \"$1\"\n",
    )
    .unwrap();
    std::fs::set_permissions(&editor, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let out = kubectl_editing(&hami, &editor, &["edit", "deployment", "web"]);
    assert!(out.contains("edited"), "{out}");
    let d = yaml(&["get", "deployment", "web"]);
    assert_eq!(d["spec"]["replicas"], 4);
    assert_eq!(d["metadata"]["annotations"]["owner"], "platform");
    assert_eq!(d["metadata"]["labels"]["tier"], "frontend");
    assert_eq!(
        d["spec"]["template"]["spec"]["containers"][0]["image"],
        "nginx:1.27"
    );

    // Protobuf for reads as well: `get` in protobuf at -v=8 (kubectl asks for
    // tables in JSON; a watch of a built-in kind streams protobuf frames).
    let (success, _, err) = kubectl(&hami, &["get", "deployment", "web", "-o", "name", "-v=8"]);
    assert!(success, "{err}");
    assert!(!err.contains(" 415 ") && !err.contains(" 406 "), "{err}");
}

/// The commonly propagated built-in kinds, `--dry-run=server` and field
/// validation as kubectl 1.32 uses them: `create cronjob` and `create
/// priorityclass` (protobuf bodies), `apply --dry-run=server` runs every
/// check and stores nothing, and an unknown field is refused under kubectl's
/// default `--validate=strict` (kubectl sends `fieldValidation=Strict`) and
/// stored without the field, with a warning, under `--validate=warn`.
#[test]
fn kubectl_new_kinds_dry_run_and_field_validation() {
    let tmp = tempfile::tempdir().unwrap();
    let hami = Hami::start(&tmp.path().join("data"), "127.0.0.1:0");
    let yaml = |args: &[&str]| get_yaml(&hami, args);

    ok(&hami, CREATE_CRONJOB);
    let cj = yaml(&["get", "cronjob", "nightly"]);
    assert_eq!(cj["spec"]["schedule"], "0 3 * * *");
    let c = &cj["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(
        (c["image"].as_str(), &c["command"]),
        (Some("busybox"), &serde_json::json!(["date"]))
    );
    let out = ok(&hami, &["get", "cj"]);
    assert!(
        out.contains("nightly") && out.contains("0 3 * * *"),
        "{out}"
    );

    ok(
        &hami,
        &[
            "create",
            "priorityclass",
            "gpu-high",
            "--value=1000",
            "--description=training jobs",
        ],
    );
    let pc = yaml(&["get", "priorityclass", "gpu-high"]);
    assert_eq!(
        (pc["value"].as_i64(), pc["description"].as_str()),
        (Some(1000), Some("training jobs"))
    );

    // --dry-run=server: the answer of a real create, nothing stored.
    let file = tmp.path().join("cm.yaml");
    std::fs::write(
        &file,
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: dry\ndata:\n  k: v\n",
    )
    .unwrap();
    let out = ok(
        &hami,
        &["apply", "--dry-run=server", "-f", file.to_str().unwrap()],
    );
    assert!(out.contains("created (server dry run)"), "{out}");
    let (found, _, err) = kubectl(&hami, &["get", "configmap", "dry"]);
    assert!(
        !found && err.contains("NotFound"),
        "dry run stored the object: {err}"
    );
    // A dry-run create that would fail fails the same way.
    let bad = tmp.path().join("bad.yaml");
    std::fs::write(&bad, "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: bad\nspec:\n  replicas: -1\n  selector: {matchLabels: {app: bad}}\n  template:\n    metadata: {labels: {app: bad}}\n    spec: {containers: [{name: c, image: x}]}\n").unwrap();
    let (success, _, err) = kubectl(
        &hami,
        &["apply", "--dry-run=server", "-f", bad.to_str().unwrap()],
    );
    assert!(!success && err.contains("spec.replicas"), "{err}");

    // An unknown field: refused by default (Strict), stored without it (Warn).
    let unknown = tmp.path().join("unknown.yaml");
    std::fs::write(
        &unknown,
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: strict\ndata:\n  k: v\ncolour: red\n",
    )
    .unwrap();
    let (success, _, err) = kubectl(&hami, &["apply", "-f", unknown.to_str().unwrap()]);
    assert!(!success, "an unknown field was accepted under Strict");
    assert!(err.contains(r#"unknown field "colour""#), "{err}");
    let (found, _, _) = kubectl(&hami, &["get", "configmap", "strict"]);
    assert!(!found, "refused object was stored");
    let (success, _, err) = kubectl(
        &hami,
        &["apply", "--validate=warn", "-f", unknown.to_str().unwrap()],
    );
    assert!(success, "{err}");
    assert!(
        err.contains("Warning") && err.contains(r#"unknown field "colour""#),
        "{err}"
    );
    let stored = yaml(&["get", "configmap", "strict"]);
    assert_eq!(stored["data"]["k"], "v");
    assert!(stored.get("colour").is_none(), "{stored:?}");
}

/// The kinds added for propagation reach the simulated members like any
/// other: a CronJob by a PropagationPolicy, a PriorityClass (cluster-scoped)
/// by a ClusterPropagationPolicy, both Duplicated to two members.
#[test]
fn new_built_in_kinds_propagate_to_members() {
    let tmp = tempfile::tempdir().unwrap();
    let hami = Hami::start_with_args(
        &tmp.path().join("data"),
        "127.0.0.1:0",
        &["--sim-clusters", "2"],
    );
    wait_members_ready(&hami, 2);
    ok(&hami, CREATE_CRONJOB);
    ok(
        &hami,
        &["create", "priorityclass", "gpu-high", "--value=1000"],
    );
    let policies = tmp.path().join("policies.yaml");
    std::fs::write(
        &policies,
        "apiVersion: policy.hami.io/v1alpha1\nkind: PropagationPolicy\nmetadata: {name: cj, namespace: default}\nspec:\n  resourceSelectors: [{apiVersion: batch/v1, kind: CronJob, name: nightly}]\n  placement: {replicaScheduling: {replicaSchedulingType: Duplicated}}\n---\napiVersion: policy.hami.io/v1alpha1\nkind: ClusterPropagationPolicy\nmetadata: {name: pc}\nspec:\n  resourceSelectors: [{apiVersion: scheduling.k8s.io/v1, kind: PriorityClass, name: gpu-high}]\n  placement: {replicaScheduling: {replicaSchedulingType: Duplicated}}\n",
    )
    .unwrap();
    ok(&hami, &["apply", "-f", policies.to_str().unwrap()]);
    for member in ["member-1", "member-2"] {
        let kubeconfig = tmp
            .path()
            .join("data/members")
            .join(format!("{member}.kubeconfig"));
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let out = Command::new(kubectl_path())
                .arg("--kubeconfig")
                .arg(&kubeconfig)
                .args([
                    "get",
                    "cronjob/nightly",
                    "priorityclass/gpu-high",
                    "-o",
                    "name",
                ])
                .output()
                .unwrap();
            let text = String::from_utf8_lossy(&out.stdout);
            if out.status.success()
                && text.contains("cronjob.batch/nightly")
                && text.contains("priorityclass.scheduling.k8s.io/gpu-high")
            {
                break;
            }
            if Instant::now() > deadline {
                let clusters =
                    kubectl(&hami, &["get", "clusters,rb,crb,works", "-A", "-o", "wide"]).1;
                panic!(
                    "{member} never got both objects: {text} {}\n{clusters}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}
