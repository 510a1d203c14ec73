//! A burst of Deployments propagated while the control plane's watches are
//! forced to fall behind (relists) and 5% of Work writes fail (half of them
//! after taking effect): at the end every binding is `FullyApplied`, every
//! Deployment runs in its members with all replicas ready, and nothing was
//! deleted: no execution namespace, no member object (the agents' delete
//! counters and a watch on every member's Deployments, started before the
//! burst, agree).
//!
//! * [`embedded_store_burst`]: `hami up --sim-clusters 3` over a fleet of
//!   3 × 20 nodes × 250 pods, 2,000 Deployments of 2 replicas.
//! * [`etcd_store_burst`]: the same with the objects in a real etcd.
//! * [`control_plane_killed_mid_burst`]: the members are `hami-sim`
//!   processes joined by `hami-agent` processes, which outlive a SIGKILL of
//!   `hami up` halfway through propagation; it restarts on the same data.
//!
//! The suite runs the first at full scale and the other two with 300
//! Deployments (CI's time budget); `scripts/burst.sh` runs any of them at
//! any scale `--runs N` times in a row (`HAMI_BURST_DEPLOYMENTS`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../support/mod.rs"]
mod support;

#[path = "../../store/tests/common/etcd_server.rs"]
mod etcd_server;

mod harness;

use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};

use harness::{MemberWatch, Report};
use support::{Hami, Proc, free_port, http_get_status};

/// Longest a run may take to propagate (debug build, 2 cores, CI load).
const LIMIT: Duration = Duration::from_secs(20 * 60);

fn fault_args() -> Vec<String> {
    harness::fault_env()
        .into_iter()
        .map(|(k, v)| {
            let flag = k
                .trim_start_matches("HAMI_")
                .to_ascii_lowercase()
                .replace('_', "-");
            format!("--{flag}={v}")
        })
        .collect()
}

/// A watch on every member's Deployments, started before the burst, and
/// a client per member.
async fn watch_members(
    members: &BTreeMap<String, std::path::PathBuf>,
) -> (BTreeMap<String, kube::Client>, Vec<MemberWatch>) {
    let mut clients = BTreeMap::new();
    let mut watches = Vec::new();
    for (name, kubeconfig) in members {
        let c = harness::client(kubeconfig).await;
        watches.push(MemberWatch::start(name, c.clone()).await);
        clients.insert(name.clone(), c);
    }
    (clients, watches)
}

/// Creates the burst and its policy on `control`; the time it took.
async fn start_burst(control: &kube::Client, n: usize, report: &mut Report) {
    let t = Instant::now();
    harness::create_deployments(control, n).await;
    report.create_s = t.elapsed().as_secs_f64();
    eprintln!("[burst] {n} Deployments created in {:.1}s", report.create_s);
    harness::apply_policy(control).await;
}

/// The whole burst against `hami` and the members' kubeconfigs; the
/// member watches for the final check.
async fn burst(
    variant: &'static str,
    n: usize,
    hami: &Hami,
    members: &BTreeMap<String, std::path::PathBuf>,
    report: &mut Report,
) -> Vec<MemberWatch> {
    report.variant = variant;
    report.deployments = n;
    report.seed = harness::seed();
    let control = hami.client().await;
    harness::wait_members_ready(&control, members.len()).await;
    let (clients, watches) = watch_members(members).await;
    start_burst(&control, n, report).await;
    let took = harness::wait_propagated(&control, &clients, n, LIMIT, |_| {}).await;
    report.propagate_s = took.as_secs_f64();
    watches
}

/// The burst against `hami up --sim-clusters 3 --fleet` with `store`
/// arguments, under the fault plan, and the final checks.
async fn sim_burst(variant: &'static str, n: usize, store: &[String]) {
    let tmp = tempfile::tempdir().unwrap();
    let fleet = harness::write_fleet(tmp.path());
    let mut args = vec![
        "--sim-clusters".to_string(),
        "3".into(),
        "--fleet".into(),
        fleet.display().to_string(),
    ];
    args.extend_from_slice(store);
    args.extend(fault_args());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let hami = Hami::start_with_args(&tmp.path().join("hami"), "127.0.0.1:0", &args);
    let members = sim_members(&hami);
    let mut report = Report::default();
    let watches = burst(variant, n, &hami, &members, &mut report).await;
    report.add_control(&control_metrics(&hami));
    report.print();
    report.check(&watches);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_store_burst() {
    sim_burst("embedded", harness::deployments(2000), &[]).await;
}

/// The simulated members' kubeconfigs of `hami up --sim-clusters 3`.
fn sim_members(hami: &Hami) -> BTreeMap<String, std::path::PathBuf> {
    (1..=3)
        .map(|i| {
            let name = format!("member-{i}");
            let path = hami
                .data_dir
                .join("members")
                .join(format!("{name}.kubeconfig"));
            (name, path)
        })
        .collect()
}

fn control_metrics(hami: &Hami) -> String {
    hami.get("/metrics").map(|(_, b)| b).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_store_burst() {
    let Some(etcd) = etcd_server::EtcdServer::start() else {
        return;
    };
    let store = [
        "--etcd-endpoints".to_string(),
        etcd.endpoint.clone(),
        "--etcd-leader-ttl".into(),
        "5s".into(),
    ];
    sim_burst("etcd", harness::deployments(300), &store).await;
}

/// A member of its own: `hami-sim` serving the fleet, joined in Pull mode
/// by a `hami-agent` process. Both outlive the control plane.
struct Member {
    name: String,
    kubeconfig: std::path::PathBuf,
    agent_http: String,
    _sim: Proc,
    agent: Proc,
}

fn start_member(i: usize, dir: &std::path::Path, fleet: &std::path::Path, hami: &Hami) -> Member {
    let bins = support::bin_dir();
    let name = format!("member-{i}");
    let kubeconfig = dir.join(format!("{name}.kubeconfig"));
    let mut sim = Proc::spawn(
        "hami-sim",
        Command::new(bins.join("hami-sim"))
            .args(["--listen", "127.0.0.1:0", "--name", &name])
            .arg("--fleet")
            .arg(fleet)
            .arg("--kubeconfig")
            .arg(&kubeconfig),
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        sim.alive();
        let addr = std::fs::read_to_string(&kubeconfig).ok().and_then(|t| {
            t.lines()
                .find_map(|l| l.trim().strip_prefix("server: http://"))
                .map(|a| a.trim().to_string())
        });
        if addr.is_some_and(|a| http_get_status(&a, "/readyz") == Some(200)) {
            break;
        }
        assert!(Instant::now() < deadline, "{name}'s hami-sim not ready");
        std::thread::sleep(Duration::from_millis(100));
    }
    let agent_http = format!("127.0.0.1:{}", free_port());
    let agent = Proc::spawn(
        "hami-agent",
        Command::new(bins.join("hami-agent"))
            .args(["--cluster-name", &name, "--estimator-addr", "127.0.0.1:0"])
            .args(["--http-addr", &agent_http, "--lease-renew-interval", "2s"])
            .arg("--control-kubeconfig")
            .arg(hami.kubeconfig())
            .arg("--member-kubeconfig")
            .arg(&kubeconfig),
    );
    Member {
        name,
        kubeconfig,
        agent_http,
        _sim: sim,
        agent,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_plane_killed_mid_burst() {
    let n = harness::deployments(300);
    let tmp = tempfile::tempdir().unwrap();
    let fleet = harness::write_fleet(tmp.path());
    let args = fault_args();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut hami = Hami::start_with_args(&tmp.path().join("hami"), "127.0.0.1:0", &args);
    let mut members: Vec<Member> = (1..=3)
        .map(|i| start_member(i, tmp.path(), &fleet, &hami))
        .collect();
    let control = hami.client().await;
    harness::wait_members_ready(&control, 3).await;
    let kubeconfigs: BTreeMap<String, std::path::PathBuf> = members
        .iter()
        .map(|m| (m.name.clone(), m.kubeconfig.clone()))
        .collect();
    let mut report = Report {
        variant: "kill",
        deployments: n,
        seed: harness::seed(),
        ..Report::default()
    };
    let (member_clients, watches) = watch_members(&kubeconfigs).await;
    start_burst(&control, n, &mut report).await;
    let t = Instant::now();
    // Halfway through propagation: SIGKILL, then the same command again.
    support::eventually("propagation under way", 600, || {
        let (control, members) = (control.clone(), member_clients.clone());
        async move {
            let p = harness::progress(&control, &members).await?;
            (p.works >= n / 2 && p.fully_applied < n * 3 / 4)
                .then_some(())
                .ok_or(format!("{p:?}"))
        }
    })
    .await;
    report.add_control(&control_metrics(&hami));
    let before = harness::progress(&control, &member_clients).await.ok();
    eprintln!(
        "[burst] SIGKILL of hami up at {:.1}s into propagation: {before:?}",
        t.elapsed().as_secs_f64()
    );
    hami.restart();
    report.restarts += 1;
    let control = hami.client().await;
    harness::wait_propagated(&control, &member_clients, n, LIMIT, |_| {}).await;
    report.propagate_s = t.elapsed().as_secs_f64();
    report.add_control(&control_metrics(&hami));
    for m in &mut members {
        m.agent.alive();
        report.agent_deletes += harness::metric(
            &m.agent_http,
            "hami_agent_applies_total",
            &["result=\"deleted\""],
        );
    }
    report.print();
    report.check(&watches);
}
