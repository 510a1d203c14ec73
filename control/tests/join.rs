//! A member cluster joins from nothing, as `kubeadm join` does: `hami up`
//! (TLS, certificates of 30 s), `hami token create --cluster gpu-j`, a
//! simulated member (`hami-sim`) and `hami-agent --join ... --cert-dir`
//! with the flags the token command printed. The agent checks the control
//! plane against the CA hash, gets its own certificate through a
//! CertificateSigningRequest, registers, applies a Work; its identity may
//! touch only its own Cluster and namespace (403 elsewhere); it renews the
//! certificate before it expires and keeps working on the new one. A wrong
//! `--ca-cert-hash` stops the agent before any request, naming the hashes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use hami_api::cluster::Cluster;
use hami_api::work::Work;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;
use support::{Hami, bin_dir, clusters_ready, eventually, free_port, http_get};

const CLUSTER: &str = "gpu-j";
const NS: &str = "hami-es-gpu-j";

/// A child process killed when dropped, its stderr kept in a file.
struct Logged {
    child: Child,
    log: PathBuf,
}

impl Logged {
    fn spawn(cmd: &mut Command, log: PathBuf) -> Logged {
        let file = std::fs::File::create(&log).unwrap();
        let child = cmd
            .stdin(Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .unwrap();
        Logged { child, log }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Logged {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `hami token create --cluster <cluster>`: (token, ca-cert-hash, the
/// printed `hami-agent ...` command's arguments).
fn token_create(hami: &Hami, cluster: &str) -> (String, String, Vec<String>) {
    let text = hami.cli(&["token", "create", "--cluster", cluster]);
    let token = text.lines().next().unwrap().trim().to_owned();
    let hash = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("ca-cert-hash:"))
        .unwrap()
        .trim()
        .to_owned();
    let join: Vec<String> = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("hami-agent "))
        .unwrap_or_else(|| panic!("no hami-agent command printed:\n{text}"))
        .split_whitespace()
        .map(str::to_owned)
        .collect();
    (token, hash, join)
}

/// The value after `flag` in `args`.
fn flag<'a>(args: &'a [String], flag: &str) -> &'a str {
    let i = args.iter().position(|a| a == flag).unwrap();
    &args[i + 1]
}

/// `hami-sim` on a free port; its kubeconfig path.
fn start_sim(dir: &Path) -> (Logged, PathBuf) {
    let kubeconfig = dir.join("member.kubeconfig");
    let sim = Logged::spawn(
        Command::new(bin_dir().join("hami-sim"))
            .args(["--listen", "127.0.0.1:0", "--name", CLUSTER])
            .args(["--generate-nodes", "2", "--kubeconfig"])
            .arg(&kubeconfig)
            .env("RUST_LOG", "warn"),
        dir.join("sim.log"),
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let ready = std::fs::read_to_string(&kubeconfig).ok().and_then(|t| {
            t.lines()
                .find_map(|l| l.trim().strip_prefix("server: http://"))
                .map(|a| a.trim().to_owned())
        });
        if ready.is_some_and(|a| matches!(http_get(&a, "/readyz"), Ok((200, _)))) {
            return (sim, kubeconfig);
        }
        assert!(Instant::now() < deadline, "hami-sim not ready");
        std::thread::sleep(Duration::from_millis(100));
    }
}

async fn client_of(kubeconfig: &Path) -> kube::Client {
    let kc = kube::config::Kubeconfig::read_from(kubeconfig).unwrap();
    let config = kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .unwrap();
    kube::Client::try_from(config).unwrap()
}

/// The serial of the agent's certificate on disk.
fn serial_on_disk(cert_dir: &Path) -> String {
    let pem = std::fs::read_to_string(cert_dir.join("hami-agent.crt")).unwrap();
    let der = hami_agent::join::cert::pem_certificates(&pem).unwrap();
    hami_agent::join::cert::inspect(&der[0]).unwrap().serial
}

fn forbidden<T: std::fmt::Debug>(what: &str, r: Result<T, kube::Error>) {
    match r {
        Err(kube::Error::Api(s)) if s.code == 403 => {}
        other => panic!("{what}: expected 403, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_joins_from_nothing_is_confined_and_renews_its_certificate() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let hami = Hami::start_with_args(
        &dir.join("data"),
        "127.0.0.1:0",
        &["--in-memory", "--cluster-signing-duration", "30s"],
    );
    let (token, hash, printed) = token_create(&hami, CLUSTER);
    assert_eq!(flag(&printed, "--cluster-name"), CLUSTER);
    assert_eq!(flag(&printed, "--token"), token);
    assert_eq!(flag(&printed, "--ca-cert-hash"), hash);
    assert!(
        flag(&printed, "--join").starts_with("https://"),
        "{printed:?}"
    );
    let (_sim, member_kubeconfig) = start_sim(dir);

    // The agent, with the printed flags and the member's kubeconfig.
    let cert_dir = dir.join("certs");
    let agent_http = format!("127.0.0.1:{}", free_port());
    let agent = Logged::spawn(
        Command::new(bin_dir().join("hami-agent"))
            .args(&printed)
            .arg("--cert-dir")
            .arg(&cert_dir)
            .arg("--member-kubeconfig")
            .arg(&member_kubeconfig)
            .args([
                "--estimator-addr",
                "127.0.0.1:0",
                "--http-addr",
                &agent_http,
            ])
            .args(["--lease-renew-interval", "1s", "--join-timeout", "30s"])
            .env("RUST_LOG", "info"),
        dir.join("agent.log"),
    );
    let admin = hami.client().await;
    let clusters: Api<Cluster> = Api::all(admin.clone());
    clusters_ready(&clusters, 1, 60).await;
    let first_serial = serial_on_disk(&cert_dir);

    // A Work of gpu-j is applied on the member.
    let works: Api<Work> = Api::namespaced(admin.clone(), NS);
    let work: Work = serde_json::from_value(json!({
        "apiVersion": "work.hami.io/v1alpha2",
        "kind": "Work",
        "metadata": {"name": "hello", "namespace": NS},
        "spec": {"workload": {"manifests": [{
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "hello", "namespace": "default"},
            "data": {"from": "control"},
        }]}},
    }))
    .unwrap();
    works.create(&PostParams::default(), &work).await.unwrap();
    let member = client_of(&member_kubeconfig).await;
    let member_cms: Api<ConfigMap> = Api::namespaced(member, "default");
    eventually("the Work applied on the member", 30, || async {
        member_cms
            .get_opt("hello")
            .await
            .map_err(|e| e.to_string())?
            .ok_or_else(|| "not yet".to_owned())
    })
    .await;

    // The agent's identity, from the kubeconfig it wrote.
    let me = client_of(&cert_dir.join("hami-agent.kubeconfig")).await;
    Api::<Namespace>::all(admin.clone())
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "hami-es-other"}})).unwrap(),
        )
        .await
        .unwrap();
    let other_cluster: Cluster = serde_json::from_value(json!({
        "apiVersion": "cluster.hami.io/v1alpha1", "kind": "Cluster",
        "metadata": {"name": "other"}, "spec": {"syncMode": "Pull"},
    }))
    .unwrap();
    clusters
        .create(&PostParams::default(), &other_cluster)
        .await
        .unwrap();
    let mut foreign = work.clone();
    foreign.metadata.namespace = Some("hami-es-other".into());
    forbidden(
        "a Work in another cluster's namespace",
        Api::<Work>::namespaced(me.clone(), "hami-es-other")
            .create(&PostParams::default(), &foreign)
            .await,
    );
    forbidden(
        "reading Secrets",
        Api::<Secret>::namespaced(me.clone(), "kube-system")
            .list(&ListParams::default())
            .await,
    );
    let label = json!({"metadata": {"labels": {"touched-by": "gpu-j"}}});
    forbidden(
        "patching another Cluster",
        Api::<Cluster>::all(me.clone())
            .patch("other", &PatchParams::default(), &Patch::Merge(&label))
            .await,
    );
    // Its own Works, Cluster (and status) and Lease.
    let mine = Api::<Work>::namespaced(me.clone(), NS);
    assert_eq!(
        mine.list(&ListParams::default()).await.unwrap().items.len(),
        1
    );
    let own_cluster = Api::<Cluster>::all(me.clone());
    own_cluster
        .patch("gpu-j", &PatchParams::default(), &Patch::Merge(&label))
        .await
        .unwrap();
    own_cluster
        .patch_status("gpu-j", &PatchParams::default(), &Patch::Merge(&json!({})))
        .await
        .unwrap();
    let lease_api = Api::<Lease>::namespaced(admin.clone(), NS);
    eventually("the agent's Lease", 20, || async {
        lease_api
            .get_opt(CLUSTER)
            .await
            .map_err(|e| e.to_string())?
            .ok_or_else(|| "no Lease yet".to_owned())
    })
    .await;
    // The Lease as the agent writes it: patches (no reads are granted).
    Api::<Lease>::namespaced(me.clone(), NS)
        .patch(CLUSTER, &PatchParams::default(), &Patch::Merge(&label))
        .await
        .unwrap_or_else(|e| panic!("patch the Lease: {e}\n{}", agent.log()));

    // Renewal: a new certificate on disk before the first one (30 s) ends,
    // and the agent keeps renewing its Lease after the first one expired.
    let renewed = eventually("a renewed certificate on disk", 40, || async {
        let now = serial_on_disk(&cert_dir);
        (now != first_serial)
            .then_some(now)
            .ok_or_else(|| "same serial".to_owned())
    })
    .await;
    assert_ne!(renewed, first_serial);
    tokio::time::sleep(Duration::from_secs(10)).await;
    let held = lease_api
        .get(CLUSTER)
        .await
        .unwrap()
        .spec
        .unwrap()
        .renew_time;
    eventually("the Lease renewed on the new certificate", 10, || async {
        let t = lease_api
            .get(CLUSTER)
            .await
            .map_err(|e| e.to_string())?
            .spec
            .and_then(|s| s.renew_time);
        (t != held)
            .then_some(())
            .ok_or_else(|| "not yet".to_owned())
    })
    .await;
    clusters_ready(&clusters, 1, 5).await;
    let log = agent.log();
    assert!(log.contains("client certificate renewed"), "{log}");
    let (_, metrics) = http_get(&agent_http, "/metrics").unwrap();
    assert!(
        metrics.lines().any(|l| l
            .starts_with("hami_agent_certificate_renewals_total{result=\"success\"}")
            && !l.ends_with(" 0")),
        "{metrics}"
    );
    assert!(
        metrics.contains("hami_agent_certificate_expiration_seconds "),
        "{metrics}"
    );
}

#[test]
fn a_wrong_ca_cert_hash_stops_the_agent_naming_both_hashes() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let hami = Hami::start_with_args(&dir.join("data"), "127.0.0.1:0", &["--in-memory"]);
    let (_, hash, printed) = token_create(&hami, "gpu-w");
    let wrong = format!("sha256:{}", "0f".repeat(32));
    let args: Vec<String> = printed
        .iter()
        .map(|a| if *a == hash { wrong.clone() } else { a.clone() })
        .collect();
    let out = Command::new(bin_dir().join("hami-agent"))
        .args(&args)
        .arg("--cert-dir")
        .arg(dir.join("certs"))
        .args(["--member-kubeconfig", "/nonexistent"])
        .args([
            "--estimator-addr",
            "127.0.0.1:0",
            "--http-addr",
            "127.0.0.1:0",
        ])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains(&wrong), "{stderr}");
    assert!(stderr.contains(&hash), "{stderr}");
    assert!(!dir.join("certs").join("hami-agent.kubeconfig").exists());
}
