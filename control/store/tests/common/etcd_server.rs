//! A real etcd server for tests: Debian's `etcd` binary (package
//! etcd-server) on free loopback ports, its data in a temp dir (on tmpfs
//! when there is one: etcd fsyncs every write), killed on drop.
//!
//! Without the binary a test is skipped with the reason printed, except
//! under `CI=true`, where it fails: CI installs etcd-server.
//!
//! [`EtcdServer::start_tls`] serves the client port over TLS (and with
//! `client_cert_auth`, requires client certificates); its health is then
//! read on a plain metrics port of its own.
//!
//! Only std and tempfile: hami-control's end-to-end tests include this
//! file too (`#[path]`).
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

pub struct EtcdServer {
    child: Child,
    bin: PathBuf,
    /// `http://127.0.0.1:PORT` (`https://` with TLS), the client URL.
    pub endpoint: String,
    launch: Launch,
    dir: TempDir,
}

/// TLS of the client port: etcd's serving pair and the CA of its clients.
#[derive(Clone, Debug)]
pub struct EtcdServerTls {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// `--trusted-ca-file`: the CA client certificates must chain to.
    pub ca: PathBuf,
    /// `--client-cert-auth`: refuse clients without such a certificate.
    pub client_cert_auth: bool,
}

/// How etcd is started, again on restart.
#[derive(Clone, Debug)]
struct Launch {
    client: u16,
    peer: u16,
    /// With TLS, a plain port for `/health`.
    metrics: Option<u16>,
    tls: Option<EtcdServerTls>,
}

impl Launch {
    fn health_port(&self) -> u16 {
        self.metrics.unwrap_or(self.client)
    }
}

/// `$HAMI_TEST_ETCD` when set (and a file), else `etcd` on the PATH.
fn binary() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("HAMI_TEST_ETCD") {
        return Some(PathBuf::from(path)).filter(|p| p.is_file());
    }
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join("etcd"))
        .find(|p| p.is_file())
}

fn free_port() -> (TcpListener, u16) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    (l, port)
}

fn temp_dir() -> TempDir {
    let shm = Path::new("/dev/shm");
    if shm.is_dir()
        && let Ok(dir) = tempfile::Builder::new().prefix("hami-etcd").tempdir_in(shm)
    {
        return dir;
    }
    tempfile::Builder::new()
        .prefix("hami-etcd")
        .tempdir()
        .unwrap()
}

impl EtcdServer {
    /// A running etcd, or `None` (after saying why) when there is no etcd
    /// binary and this is not CI.
    pub fn start() -> Option<EtcdServer> {
        Self::start_with(None)
    }

    /// A running etcd serving its clients over `tls`, or `None` as
    /// [`start`](Self::start).
    pub fn start_tls(tls: EtcdServerTls) -> Option<EtcdServer> {
        Self::start_with(Some(tls))
    }

    fn start_with(tls: Option<EtcdServerTls>) -> Option<EtcdServer> {
        let Some(bin) = binary() else {
            if std::env::var("CI").is_ok_and(|v| v == "true") {
                panic!(
                    "etcd not found on PATH (nor HAMI_TEST_ETCD): CI must install Debian's \
                     etcd-server (apt-get install -y etcd-server; .ci/run does)"
                );
            }
            eprintln!(
                "SKIPPED: etcd not found on PATH (nor HAMI_TEST_ETCD); install Debian's \
                 etcd-server to run the etcd tests"
            );
            return None;
        };
        // A port picked here may be taken before etcd binds it: try again.
        let mut last = String::new();
        for _ in 0..3 {
            let dir = temp_dir();
            let (client_l, client) = free_port();
            let (peer_l, peer) = free_port();
            let (metrics_l, metrics) = free_port();
            drop((client_l, peer_l, metrics_l));
            let launch = Launch {
                client,
                peer,
                metrics: tls.is_some().then_some(metrics),
                tls: tls.clone(),
            };
            let child = match spawn(&bin, dir.path(), &launch) {
                Ok(c) => c,
                Err(e) => panic!("{e}"),
            };
            let scheme = if tls.is_some() { "https" } else { "http" };
            let mut server = EtcdServer {
                child,
                bin: bin.clone(),
                endpoint: format!("{scheme}://127.0.0.1:{client}"),
                launch,
                dir,
            };
            match server.wait_ready() {
                Ok(()) => return Some(server),
                Err(e) => last = e,
            }
        }
        panic!("etcd ({}) did not start:\n{last}", bin.display());
    }

    fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!("etcd exited ({status}):\n{}", self.log()));
            }
            if healthy(self.launch.health_port()) {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(format!("etcd not healthy within 30 s:\n{}", self.log()))
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("etcd.log")).unwrap_or_default()
    }

    /// Stops etcd (SIGKILL) and waits for it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Kills etcd and starts it again on the same ports and data.
    pub fn restart(&mut self) {
        self.kill();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            self.child =
                spawn(&self.bin, self.dir.path(), &self.launch).unwrap_or_else(|e| panic!("{e}"));
            match self.wait_ready() {
                Ok(()) => return,
                // The ports were just freed; the OS may still hold them.
                Err(e) if Instant::now() > deadline => panic!("etcd did not restart: {e}"),
                Err(_) => std::thread::sleep(Duration::from_millis(200)),
            }
        }
    }
}

impl Drop for EtcdServer {
    fn drop(&mut self) {
        self.kill();
    }
}

fn spawn(bin: &Path, dir: &Path, launch: &Launch) -> Result<Child, String> {
    let scheme = if launch.tls.is_some() {
        "https"
    } else {
        "http"
    };
    let client_url = format!("{scheme}://127.0.0.1:{}", launch.client);
    let peer_url = format!("http://127.0.0.1:{}", launch.peer);
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("etcd.log"))
        .map_err(|e| e.to_string())?;
    let mut cmd = Command::new(bin);
    if let Some(tls) = &launch.tls {
        cmd.arg(format!("--cert-file={}", tls.cert.display()))
            .arg(format!("--key-file={}", tls.key.display()))
            .arg(format!("--trusted-ca-file={}", tls.ca.display()))
            .arg(format!("--client-cert-auth={}", tls.client_cert_auth));
    }
    if let Some(port) = launch.metrics {
        cmd.arg(format!("--listen-metrics-urls=http://127.0.0.1:{port}"));
    }
    cmd.arg("--name=test")
        .arg(format!("--data-dir={}", dir.join("data").display()))
        .arg(format!("--listen-client-urls={client_url}"))
        .arg(format!("--advertise-client-urls={client_url}"))
        .arg(format!("--listen-peer-urls={peer_url}"))
        .arg(format!("--initial-advertise-peer-urls={peer_url}"))
        .arg(format!("--initial-cluster=test={peer_url}"))
        .arg("--logger=zap")
        .arg("--log-level=error")
        .stdin(Stdio::null())
        .stdout(log.try_clone().map_err(|e| e.to_string())?)
        .stderr(log)
        .spawn()
        .map_err(|e| format!("spawn {}: {e}", bin.display()))
}

/// etcd's `/health` on the client port says `"health":"true"`.
fn healthy(port: u16) -> bool {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    if s.write_all(b"GET /health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut body = String::new();
    let _ = s.read_to_string(&mut body);
    body.starts_with("HTTP/1.1 200") && body.contains("\"health\":\"true\"")
}
