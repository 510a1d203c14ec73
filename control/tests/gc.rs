//! Garbage collection inside the real `hami up`, driven by the real
//! `/usr/bin/kubectl` (1.32): `kubectl delete --cascade=background|foreground|orphan`
//! sends DeleteOptions `propagationPolicy` Background|Foreground|Orphan, the
//! API server marks the owner as kube-apiserver does, and hami's collector
//! does what kube-controller-manager's garbage collector does with it.
//! Then the race hami adds to it: a template deleted and recreated under
//! the same name keeps a ResourceBinding (the detector re-points it).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::{Hami, kubectl};

/// `kubectl ARGS` that must succeed; its stdout.
fn ok(hami: &Hami, args: &[&str]) -> String {
    let (success, out, err) = kubectl(hami, args);
    assert!(success, "kubectl {args:?} failed:\n{out}\n{err}");
    out
}

/// `kubectl get ARGS -o json`; `None` when kubectl answers NotFound.
fn get(hami: &Hami, args: &[&str]) -> Option<Value> {
    let mut a = vec!["get"];
    a.extend_from_slice(args);
    a.extend(["-o", "json"]);
    let (success, out, err) = kubectl(hami, &a);
    if !success {
        assert!(err.contains("NotFound"), "kubectl {a:?}: {err}");
        return None;
    }
    Some(serde_json::from_str(&out).unwrap())
}

/// Polls `probe` every 100 ms for up to 20 s.
fn eventually(what: &str, mut probe: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !probe() {
        assert!(Instant::now() < deadline, "never: {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `kubectl apply -f` of `objects` (a YAML stream of JSON documents, in a
/// file in `dir`).
fn apply(hami: &Hami, dir: &std::path::Path, objects: &[Value]) {
    let path = dir.join("objects.yaml");
    let docs: Vec<String> = objects.iter().map(Value::to_string).collect();
    std::fs::write(&path, docs.join("\n---\n")).unwrap();
    ok(hami, &["apply", "-f", path.to_str().unwrap()]);
}

/// A ConfigMap `name` owned by `owner` (as `kubectl get -o json` gave it).
fn dependent(name: &str, owner: &Value, block: bool, finalizers: &[&str]) -> Value {
    json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {
            "name": name, "namespace": "default", "finalizers": finalizers,
            "ownerReferences": [{
                "apiVersion": "v1", "kind": "ConfigMap",
                "name": owner["metadata"]["name"], "uid": owner["metadata"]["uid"],
                "blockOwnerDeletion": block,
            }],
        },
        "data": {"k": "v"},
    })
}

fn configmap(hami: &Hami, name: &str) -> Option<Value> {
    get(hami, &["configmap", name])
}

/// A fresh owner ConfigMap, as stored (uid included).
fn owner(hami: &Hami, name: &str) -> Value {
    ok(hami, &["create", "configmap", name, "--from-literal=k=v"]);
    configmap(hami, name).unwrap()
}

#[test]
fn kubectl_cascading_deletion_background_foreground_and_orphan() {
    let tmp = tempfile::tempdir().unwrap();
    let hami = Hami::start(&tmp.path().join("data"), "127.0.0.1:0");

    // --cascade=background (kubectl's default): the owner goes at once, the
    // collector deletes its dependents after it.
    let bg = owner(&hami, "bg-owner");
    apply(
        &hami,
        tmp.path(),
        &[
            dependent("bg-a", &bg, true, &[]),
            dependent("bg-b", &bg, false, &[]),
        ],
    );
    ok(&hami, &["delete", "configmap", "bg-owner"]);
    eventually("background: the dependents are deleted", || {
        configmap(&hami, "bg-a").is_none() && configmap(&hami, "bg-b").is_none()
    });

    // --cascade=foreground: the owner stays (deletionTimestamp, finalizer
    // foregroundDeletion) until its blocking dependents are gone; a
    // dependent held by a finalizer of its own holds the owner too.
    let fg = owner(&hami, "fg-owner");
    apply(
        &hami,
        tmp.path(),
        &[
            dependent("fg-free", &fg, true, &[]),
            dependent("fg-held", &fg, true, &["example.com/hold"]),
        ],
    );
    // --wait=false: kubectl would otherwise wait for the owner to go.
    ok(
        &hami,
        &[
            "delete",
            "configmap",
            "fg-owner",
            "--cascade=foreground",
            "--wait=false",
        ],
    );
    eventually("foreground: the free dependent is deleted first", || {
        configmap(&hami, "fg-free").is_none()
    });
    eventually("foreground: the held dependent is being deleted", || {
        configmap(&hami, "fg-held").is_some_and(|o| o["metadata"]["deletionTimestamp"].is_string())
    });
    std::thread::sleep(Duration::from_millis(500));
    let held_owner = configmap(&hami, "fg-owner").expect("the owner waits for fg-held");
    assert!(held_owner["metadata"]["deletionTimestamp"].is_string());
    assert_eq!(
        held_owner["metadata"]["finalizers"],
        json!(["foregroundDeletion"])
    );
    let shown = ok(&hami, &["get", "configmap", "fg-owner", "-o", "yaml"]);
    println!("while fg-held holds its finalizer:\n{shown}");
    ok(
        &hami,
        &[
            "patch",
            "configmap",
            "fg-held",
            "--type=merge",
            "-p",
            r#"{"metadata":{"finalizers":null}}"#,
        ],
    );
    eventually(
        "foreground: the owner goes after its last blocking dependent",
        || configmap(&hami, "fg-held").is_none() && configmap(&hami, "fg-owner").is_none(),
    );

    // --cascade=orphan: the owner goes once the collector removed the
    // reference to it from every dependent; the dependents stay.
    let or = owner(&hami, "or-owner");
    let keeper = owner(&hami, "or-keeper");
    let mut two = dependent("or-b", &or, true, &[]);
    two["metadata"]["ownerReferences"]
        .as_array_mut()
        .unwrap()
        .push(
            json!({"apiVersion": "v1", "kind": "ConfigMap", "name": "or-keeper",
                     "uid": keeper["metadata"]["uid"]}),
        );
    apply(&hami, tmp.path(), &[dependent("or-a", &or, true, &[]), two]);
    ok(
        &hami,
        &["delete", "configmap", "or-owner", "--cascade=orphan"],
    );
    assert!(
        configmap(&hami, "or-owner").is_none(),
        "kubectl waited for it"
    );
    std::thread::sleep(Duration::from_millis(500));
    let a = configmap(&hami, "or-a").expect("an orphaned dependent stays");
    assert!(a["metadata"].get("ownerReferences").is_none(), "{a}");
    let b = configmap(&hami, "or-b").expect("an orphaned dependent stays");
    assert_eq!(
        b["metadata"]["ownerReferences"][0]["uid"],
        keeper["metadata"]["uid"]
    );
    assert_eq!(
        b["metadata"]["ownerReferences"].as_array().unwrap().len(),
        1
    );

    // The collector's counters: bg-a, bg-b, fg-free and fg-held deleted
    // (Background: their owners were gone or waiting, they have no
    // dependents of their own).
    let metrics = hami.metrics();
    let deleted: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("hami_gc_deletes_total{propagation=\"Background\"} "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no hami_gc_deletes_total in:\n{metrics}"));
    assert!(deleted >= 4.0, "{deleted}");
    assert!(metrics.contains("hami_controller_synced{controller=\"gc\"} 1"));
}

/// hami's detector gives a ResourceBinding an ownerReference to its
/// template (controller, blockOwnerDeletion) and re-points it to the uid of
/// a template recreated under the same name. However the race goes (the
/// old binding deleted while the name is empty, by the detector or the
/// collector, and a new one created; or the binding re-pointed while the
/// collector waits for the recreated owner, see
/// `controllers::gc::tests::a_dependent_of_a_recreated_owner_waits_and_a_repointed_one_is_never_deleted`
/// for that path played deterministically), the template ends with a
/// binding naming its new uid, and the collector leaves it there.
#[test]
fn a_recreated_template_keeps_its_binding() {
    let tmp = tempfile::tempdir().unwrap();
    let hami = Hami::start(&tmp.path().join("data"), "127.0.0.1:0");
    let policy = json!({
        "apiVersion": "policy.hami.io/v1alpha1", "kind": "PropagationPolicy",
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {
            "resourceSelectors": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"}],
            "placement": {"replicaScheduling": {"replicaSchedulingType": "Duplicated"}},
        },
    });
    apply(&hami, tmp.path(), &[policy]);
    ok(&hami, &["create", "deployment", "web", "--image=nginx"]);
    let first = get(&hami, &["deployment", "web"]).unwrap();
    let binding_owner = |hami: &Hami| {
        get(hami, &["resourcebindings", "web-deployment"])
            .map(|b| b["metadata"]["ownerReferences"][0]["uid"].clone())
    };
    eventually("the detector binds the template", || {
        binding_owner(&hami) == Some(first["metadata"]["uid"].clone())
    });
    // The template is deleted and recreated at once: for a moment the
    // binding names the old uid while the name holds the new one.
    ok(&hami, &["delete", "deployment", "web", "--wait=false"]);
    ok(&hami, &["create", "deployment", "web", "--image=nginx"]);
    let second = get(&hami, &["deployment", "web"]).unwrap();
    assert_ne!(second["metadata"]["uid"], first["metadata"]["uid"]);
    eventually("the binding names the recreated template", || {
        binding_owner(&hami) == Some(second["metadata"]["uid"].clone())
    });
    let metrics = hami.metrics();
    for line in metrics.lines().filter(|l| l.starts_with("hami_gc_deletes")) {
        println!("{line}");
    }
    // And it stays: the collector never takes it for garbage.
    for _ in 0..30 {
        assert_eq!(
            binding_owner(&hami),
            Some(second["metadata"]["uid"].clone()),
            "the recreated template's binding went"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}
