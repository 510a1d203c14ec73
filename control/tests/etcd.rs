//! `hami up --etcd-endpoints`: the objects live in etcd, so a second
//! control plane on the same etcd serves them too, and a control plane
//! started again, even with an empty data directory, finds them all.
//! Needs Debian's etcd-server (skipped, saying why, without it outside CI).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

#[path = "../store/tests/common/etcd_server.rs"]
mod etcd_server;

use std::process::{Command, Stdio};
use std::time::Duration;

use etcd_server::EtcdServer;
use support::{Hami, eventually, kubectl};

/// `kubectl get` of one field; Err with kubectl's stderr when it fails.
fn field(hami: &Hami, what: &[&str], path: &str) -> Result<String, String> {
    let jsonpath = format!("jsonpath={{{path}}}");
    let mut args = vec!["get"];
    args.extend_from_slice(what);
    args.extend_from_slice(&["-o", &jsonpath]);
    match kubectl(hami, &args) {
        (true, out, _) => Ok(out),
        (false, _, err) => Err(err),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn objects_live_in_etcd_across_replicas_and_restarts() {
    let Some(etcd) = EtcdServer::start() else {
        return;
    };
    let store = ["--etcd-endpoints", &etcd.endpoint, "--etcd-prefix", "/e2e/"];
    let dir1 = tempfile::tempdir().unwrap();
    let mut one = Hami::start_with_args(dir1.path(), "127.0.0.1:0", &store);
    let (ok, _, err) = kubectl(
        &one,
        &["create", "configmap", "survivor", "--from-literal=k=v"],
    );
    assert!(ok, "{err}");
    let rv = field(
        &one,
        &["configmap", "survivor"],
        ".metadata.resourceVersion",
    )
    .unwrap();

    // A second control plane (API only) on the same etcd serves the same
    // object, and what is written through it shows through the first.
    let mut api_only = store.to_vec();
    api_only.push("--no-controllers");
    let dir2 = tempfile::tempdir().unwrap();
    let two = Hami::start_with_args(dir2.path(), "127.0.0.1:0", &api_only);
    let seen = eventually("the second replica serves the object", 20, || async {
        field(
            &two,
            &["configmap", "survivor"],
            ".metadata.resourceVersion",
        )
    })
    .await;
    assert_eq!(seen, rv);
    let (ok, _, err) = kubectl(
        &two,
        &["create", "configmap", "second", "--from-literal=k=w"],
    );
    assert!(ok, "{err}");
    eventually(
        "the first replica serves the second's write",
        20,
        || async {
            field(&one, &["configmap", "second"], ".data.k")
                .and_then(|v| if v == "w" { Ok(v) } else { Err(v) })
        },
    )
    .await;
    // A write with a stale resourceVersion loses on either replica.
    let (ok, _, _) = kubectl(&two, &["label", "configmap", "survivor", "moved=yes"]);
    assert!(ok);
    let (ok, _, err) = kubectl(
        &one,
        &[
            "label",
            "configmap",
            "survivor",
            "stale=yes",
            &format!("--resource-version={rv}"),
        ],
    );
    assert!(
        !ok && err.contains("modified"),
        "stale write accepted: {err}"
    );

    // Both stop; nothing is left in their data directories' stores.
    drop(two);
    one.kill();
    for dir in [dir1.path(), dir2.path()] {
        assert!(!dir.join(hami_store::embedded::FILE_NAME).exists());
    }

    // A control plane with an empty data directory finds everything in etcd,
    // at the same resourceVersions.
    let dir3 = tempfile::tempdir().unwrap();
    let three = Hami::start_with_args(dir3.path(), "127.0.0.1:0", &store);
    assert_eq!(
        field(&three, &["configmap", "survivor"], ".metadata.labels.moved").unwrap(),
        "yes"
    );
    assert_eq!(
        field(&three, &["configmap", "second"], ".data.k").unwrap(),
        "w"
    );
    let (ok, out, _) = kubectl(&three, &["get", "namespaces", "-o", "name"]);
    assert!(ok && out.contains("namespace/default"), "{out}");

    // Another prefix on the same etcd is another control plane's state.
    let mut elsewhere = vec!["--etcd-endpoints", &etcd.endpoint, "--no-controllers"];
    elsewhere.extend_from_slice(&["--etcd-prefix", "/elsewhere/"]);
    let dir4 = tempfile::tempdir().unwrap();
    let other = Hami::start_with_args(dir4.path(), "127.0.0.1:0", &elsewhere);
    let err = field(&other, &["configmap", "survivor"], ".metadata.name").unwrap_err();
    assert!(
        err.contains("NotFound") || err.contains("not found"),
        "{err}"
    );
}

/// `hami_controllers_leader` from the control plane's /metrics.
fn leader(hami: &Hami) -> Result<i64, String> {
    let (_, text) = hami.get("/metrics")?;
    text.lines()
        .find_map(|l| l.strip_prefix("hami_controllers_leader "))
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| "no hami_controllers_leader in /metrics".into())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_control_plane_runs_the_controllers_and_another_takes_over() {
    let Some(etcd) = EtcdServer::start() else {
        return;
    };
    let args = [
        "--etcd-endpoints",
        &etcd.endpoint,
        "--etcd-leader-ttl",
        "2s",
    ];
    let dir1 = tempfile::tempdir().unwrap();
    let mut one = Hami::start_with_args(dir1.path(), "127.0.0.1:0", &args);
    let is = |want: i64| {
        move |got: Result<i64, String>| match got {
            Ok(v) if v == want => Ok(v),
            Ok(v) => Err(format!("hami_controllers_leader is {v}")),
            Err(e) => Err(e),
        }
    };
    eventually("the first control plane leads", 20, || async {
        is(1)(leader(&one))
    })
    .await;
    let dir2 = tempfile::tempdir().unwrap();
    let two = Hami::start_with_args(dir2.path(), "127.0.0.1:0", &args);
    // Longer than the lease: the second still only serves the API.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(leader(&two), Ok(0));
    assert_eq!(leader(&one), Ok(1));

    // The leader dies without a word: the other takes over once its lease
    // expires, and the first, started again, waits.
    one.kill();
    eventually("the second control plane takes over", 30, || async {
        is(1)(leader(&two))
    })
    .await;
    one.restart();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(leader(&one), Ok(0));
    assert_eq!(leader(&two), Ok(1));
}

#[test]
fn hami_up_without_etcd_fails_saying_so() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_hami"))
        .args(["up", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .args(["--etcd-endpoints", &format!("http://127.0.0.1:{port}")])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("hami up kept running without etcd");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(!status.success());
    assert!(
        stderr.contains("connect to etcd at http://127.0.0.1:") && stderr.contains("unavailable"),
        "{stderr}"
    );
    assert!(!dir.path().join("kubeconfig").exists());
}
