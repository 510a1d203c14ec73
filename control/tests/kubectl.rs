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
use support::{Hami, kubectl, kubectl_path, repo_root};

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

fn ok(hami: &Hami, args: &[&str]) -> String {
    let (success, out, err) = kubectl(hami, args);
    assert!(
        success,
        "kubectl {args:?} failed:\nstdout: {out}\nstderr: {err}"
    );
    out
}

fn get_json(hami: &Hami, args: &[&str]) -> Value {
    let mut a = args.to_vec();
    a.extend(["-o", "json"]);
    serde_json::from_str(&ok(hami, &a)).unwrap()
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
