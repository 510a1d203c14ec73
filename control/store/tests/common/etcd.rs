//! A real etcd server for tests: Debian's `etcd` binary (package
//! etcd-server) on free loopback ports, its data in a temp dir (on tmpfs
//! when there is one: etcd fsyncs every write), killed on drop.
//!
//! Without the binary a test is skipped with the reason printed, except
//! under `CI=true`, where it fails: CI installs etcd-server.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use hami_store::{EtcdOptions, EtcdStore};
use tempfile::TempDir;

use super::{Factory, Opts};

pub struct EtcdServer {
    child: Child,
    pub endpoint: String,
    dir: TempDir,
}

/// `$HAMI_TEST_ETCD`, else `etcd` on the PATH.
fn binary() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("HAMI_TEST_ETCD") {
        return Some(PathBuf::from(path));
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
    let shm = std::path::Path::new("/dev/shm");
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
    pub async fn start() -> Option<EtcdServer> {
        let Some(bin) = binary() else {
            if std::env::var("CI").is_ok_and(|v| v == "true") {
                panic!(
                    "etcd not found on PATH (nor HAMI_TEST_ETCD): CI must install Debian's \
                     etcd-server (apt-get install -y etcd-server; .ci/run does)"
                );
            }
            eprintln!(
                "SKIPPED: etcd not found on PATH (nor HAMI_TEST_ETCD); install Debian's \
                 etcd-server to run the etcd store tests"
            );
            return None;
        };
        // A port picked here may be taken before etcd binds it: try again.
        let mut last_log = String::new();
        for _ in 0..3 {
            match Self::try_start(&bin).await {
                Ok(server) => return Some(server),
                Err(log) => last_log = log,
            }
        }
        panic!("etcd ({}) did not start:\n{last_log}", bin.display());
    }

    async fn try_start(bin: &std::path::Path) -> Result<EtcdServer, String> {
        let dir = temp_dir();
        let (client_l, client) = free_port();
        let (peer_l, peer) = free_port();
        drop((client_l, peer_l));
        let client_url = format!("http://127.0.0.1:{client}");
        let peer_url = format!("http://127.0.0.1:{peer}");
        let log = std::fs::File::create(dir.path().join("etcd.log")).unwrap();
        let child = Command::new(bin)
            .arg("--name=test")
            .arg(format!("--data-dir={}", dir.path().join("data").display()))
            .arg(format!("--listen-client-urls={client_url}"))
            .arg(format!("--advertise-client-urls={client_url}"))
            .arg(format!("--listen-peer-urls={peer_url}"))
            .arg(format!("--initial-advertise-peer-urls={peer_url}"))
            .arg(format!("--initial-cluster=test={peer_url}"))
            .arg("--logger=zap")
            .arg("--log-level=error")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .map_err(|e| format!("spawn {}: {e}", bin.display()))?;
        let mut server = EtcdServer {
            child,
            endpoint: client_url,
            dir,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = server.child.try_wait() {
                return Err(format!("etcd exited ({status}):\n{}", server.log()));
            }
            if server.ready().await {
                return Ok(server);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Err(format!("etcd not ready within 30 s:\n{}", server.log()))
    }

    async fn ready(&self) -> bool {
        let Ok(mut client) = etcd_client::Client::connect([&self.endpoint], None).await else {
            return false;
        };
        matches!(
            tokio::time::timeout(Duration::from_secs(2), client.status()).await,
            Ok(Ok(_))
        )
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("etcd.log")).unwrap_or_default()
    }

    /// A raw client, for what the store does not do (compacting, looking
    /// at the keys as etcd has them).
    pub async fn client(&self) -> etcd_client::Client {
        etcd_client::Client::connect([&self.endpoint], None)
            .await
            .unwrap()
    }

    /// Store options for this server under `prefix`.
    pub fn options(&self, prefix: &str, opts: Opts) -> EtcdOptions {
        EtcdOptions {
            endpoints: vec![self.endpoint.clone()],
            prefix: prefix.to_owned(),
            history: opts.history,
            compact_interval: None,
            watcher_capacity: opts.watcher_capacity,
            request_timeout: Duration::from_secs(10),
            ..EtcdOptions::default()
        }
    }

    /// Stops etcd (SIGKILL) and waits for it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for EtcdServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Stores on one etcd server, each `make` under a prefix of its own.
pub struct Etcd {
    pub server: EtcdServer,
    count: AtomicUsize,
}

impl Etcd {
    /// `None` when the test is skipped (no etcd, not CI).
    pub async fn start() -> Option<Etcd> {
        Some(Etcd {
            server: EtcdServer::start().await?,
            count: AtomicUsize::new(0),
        })
    }
}

impl Factory for Etcd {
    type S = EtcdStore;
    async fn make(&self, opts: Opts) -> EtcdStore {
        let n = self.count.fetch_add(1, Ordering::Relaxed);
        EtcdStore::connect(self.server.options(&format!("/test-{n}/"), opts))
            .await
            .unwrap()
    }

    async fn trim_history(&self, store: &EtcdStore) {
        store.compact().await.unwrap();
    }
}
