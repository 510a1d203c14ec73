//! Runs the real `hami` binary as a child process for end-to-end tests: a
//! control plane on a free loopback port with its own data directory.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A `hami up` child process. Killed (SIGKILL) when dropped.
pub struct Hami {
    pub child: Child,
    pub data_dir: PathBuf,
    pub listen: String,
    /// Extra `hami up` arguments, kept for [`Hami::restart`].
    pub extra_args: Vec<String>,
}

impl Hami {
    /// Start `hami up` on `listen` (use "127.0.0.1:0" for a free port) and wait
    /// until it has written its kubeconfig and answers /readyz.
    pub fn start(data_dir: &Path, listen: &str) -> Hami {
        Hami::try_start(data_dir, listen, &[]).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Like [`Hami::start`] with extra `hami up` arguments (e.g.
    /// `--sim-clusters 3`); a restart passes them again.
    pub fn start_with_args(data_dir: &Path, listen: &str, extra_args: &[&str]) -> Hami {
        let extra: Vec<String> = extra_args.iter().map(|s| s.to_string()).collect();
        Hami::try_start(data_dir, listen, &extra).unwrap_or_else(|e| panic!("{e}"))
    }

    fn try_start(data_dir: &Path, listen: &str, extra_args: &[String]) -> Result<Hami, String> {
        let kubeconfig = data_dir.join("kubeconfig");
        let _ = std::fs::remove_file(&kubeconfig);
        let child = Command::new(env!("CARGO_BIN_EXE_hami"))
            .args(["up", "--listen", listen, "--data-dir"])
            .arg(data_dir)
            .args(extra_args)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("spawn hami up: {e}"))?;
        let mut hami = Hami {
            child,
            data_dir: data_dir.to_path_buf(),
            listen: String::new(),
            extra_args: extra_args.to_vec(),
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(Some(status)) = hami.child.try_wait() {
                return Err(format!("hami up exited early: {status}"));
            }
            if let Ok(text) = std::fs::read_to_string(&kubeconfig)
                && let Some(server) = server_of(&text)
            {
                hami.listen = server
                    .trim_start_matches("https://")
                    .trim_start_matches("http://")
                    .to_string();
                if hami.get("/readyz").is_ok_and(|(code, _)| code == 200) {
                    return Ok(hami);
                }
            }
            if Instant::now() > deadline {
                return Err("hami up did not become ready within 60 s".into());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn kubeconfig(&self) -> PathBuf {
        self.data_dir.join("kubeconfig")
    }

    /// `hami ARGS --kubeconfig <the admin kubeconfig>`: its stdout; panics
    /// with stderr when it fails.
    pub fn cli(&self, args: &[&str]) -> String {
        let out = Command::new(env!("CARGO_BIN_EXE_hami"))
            .args(args)
            .arg("--kubeconfig")
            .arg(self.kubeconfig())
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "hami {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `https://ADDR`, or `http://ADDR` with `--insecure-http`.
    pub fn base_url(&self) -> String {
        let scheme = if self.insecure() { "http" } else { "https" };
        format!("{scheme}://{}", self.listen)
    }

    fn insecure(&self) -> bool {
        self.extra_args.iter().any(|a| a == "--insecure-http")
    }

    /// How to reach the API as the admin of the kubeconfig `hami up` wrote
    /// (TLS with its client certificate; plain HTTP with `--insecure-http`).
    pub fn endpoint(&self) -> Endpoint {
        self.try_endpoint().unwrap_or_else(|e| panic!("{e}"))
    }

    fn try_endpoint(&self) -> Result<Endpoint, String> {
        let tls = if self.insecure() {
            None
        } else {
            Some(admin_tls(&self.kubeconfig())?)
        };
        Ok(Endpoint {
            listen: self.listen.clone(),
            tls,
        })
    }

    /// GET `path` from the control plane as the admin: (status, body).
    pub fn get(&self, path: &str) -> Result<(u16, String), String> {
        self.try_endpoint()?.get(path)
    }

    /// `/metrics` of the control plane, as the admin.
    pub fn metrics(&self) -> String {
        match self.get("/metrics") {
            Ok((200, body)) => body,
            other => panic!("GET /metrics: {other:?}"),
        }
    }

    /// SIGKILL the process and wait for it: no clean shutdown.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Kill and start again on the same address with the same data directory.
    pub fn restart(&mut self) {
        self.kill();
        let listen = self.listen.clone();
        // The port was just freed; retry briefly in case the OS still holds it.
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            match Hami::try_start(&self.data_dir, &listen, &self.extra_args.clone()) {
                Ok(mut fresh) => {
                    std::mem::swap(&mut self.child, &mut fresh.child);
                    return; // `fresh` now owns the dead child; its drop is harmless
                }
                Err(e) if Instant::now() > deadline => panic!("restart failed: {e}"),
                Err(_) => std::thread::sleep(Duration::from_millis(200)),
            }
        }
    }

    /// A kube client configured from the kubeconfig `hami up` wrote.
    pub async fn client(&self) -> kube::Client {
        let kc = kube::config::Kubeconfig::read_from(self.kubeconfig()).unwrap();
        let config = kube::Config::from_custom_kubeconfig(kc, &Default::default())
            .await
            .unwrap();
        kube::Client::try_from(config).unwrap()
    }
}

impl Drop for Hami {
    fn drop(&mut self) {
        self.kill();
    }
}

fn server_of(kubeconfig: &str) -> Option<String> {
    kubeconfig
        .lines()
        .find_map(|l| l.trim().strip_prefix("server:"))
        .map(|s| s.trim().trim_matches('"').to_string())
}

/// The control plane's address and the admin's TLS client configuration.
#[derive(Clone)]
pub struct Endpoint {
    pub listen: String,
    tls: Option<std::sync::Arc<rustls::ClientConfig>>,
}

impl Endpoint {
    pub fn get(&self, path: &str) -> Result<(u16, String), String> {
        self.get_with(path, &[])
    }

    /// GET with extra request headers.
    pub fn get_with(&self, path: &str, headers: &[(&str, &str)]) -> Result<(u16, String), String> {
        match &self.tls {
            Some(tls) => https_get(&self.listen, path, headers, tls.clone()),
            None => {
                assert!(headers.is_empty(), "plain GET takes no extra headers");
                http_get(&self.listen, path)
            }
        }
    }
}

/// A TLS client configuration from a kubeconfig written by `hami up`:
/// trusts its CA, presents its client certificate.
pub fn admin_tls(kubeconfig: &Path) -> Result<std::sync::Arc<rustls::ClientConfig>, String> {
    kubeconfig_tls(kubeconfig, true)
}

/// Like [`admin_tls`]; `client_cert: false` presents none (anonymous).
pub fn kubeconfig_tls(
    kubeconfig: &Path,
    client_cert: bool,
) -> Result<std::sync::Arc<rustls::ClientConfig>, String> {
    use base64::Engine as _;
    use rustls::pki_types::pem::PemObject as _;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let text = std::fs::read_to_string(kubeconfig).map_err(|e| e.to_string())?;
    let kc: serde_json::Value = serde_saphyr::from_str(&text).map_err(|e| e.to_string())?;
    let field = |value: &serde_json::Value, name: &str| -> Result<Vec<u8>, String> {
        let b64 = value[name].as_str().ok_or(format!("no {name}"))?;
        base64::engine::general_purpose::STANDARD
            .decode(b64.trim())
            .map_err(|e| e.to_string())
    };
    let ca = field(&kc["clusters"][0]["cluster"], "certificate-authority-data")?;
    let user = &kc["users"][0]["user"];
    let cert = field(user, "client-certificate-data")?;
    let key = field(user, "client-key-data")?;
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(&ca) {
        roots
            .add(c.map_err(|e| e.to_string())?)
            .map_err(|e| e.to_string())?;
    }
    let chain = CertificateDer::pem_slice_iter(&cert)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| e.to_string())?;
    let key = PrivateKeyDer::from_pem_slice(&key).map_err(|e| e.to_string())?;
    let builder = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| e.to_string())?
    .with_root_certificates(roots);
    let config = if client_cert {
        builder
            .with_client_auth_cert(chain, key)
            .map_err(|e| e.to_string())?
    } else {
        builder.with_no_client_auth()
    };
    Ok(std::sync::Arc::new(config))
}

/// GET `https://addr/path` with `tls`: (status, body). HTTP/1.1, no Accept
/// header, as [`http_get`].
pub fn https_get(
    addr: &str,
    path: &str,
    headers: &[(&str, &str)],
    tls: std::sync::Arc<rustls::ClientConfig>,
) -> Result<(u16, String), String> {
    let host = addr.rsplit_once(':').map(|(h, _)| h).unwrap_or(addr);
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let name = rustls::pki_types::ServerName::try_from(host).map_err(|e| e.to_string())?;
    let conn = rustls::ClientConnection::new(tls, name).map_err(|e| e.to_string())?;
    let tcp = std::net::TcpStream::connect(addr).map_err(|e| format!("{addr}: {e}"))?;
    tcp.set_read_timeout(Some(Duration::from_secs(20)))
        .map_err(|e| e.to_string())?;
    let mut stream = rustls::StreamOwned::new(conn, tcp);
    let extra: String = headers
        .iter()
        .map(|(k, v)| format!("{k}: {v}\r\n"))
        .collect();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\n{extra}Connection: close\r\n\r\n"
    )
    .map_err(|e| e.to_string())?;
    let mut raw = Vec::new();
    match stream.read_to_end(&mut raw) {
        Ok(_) => {}
        // A peer that closes without close_notify after a whole answer.
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !raw.is_empty() => {}
        Err(e) => return Err(e.to_string()),
    }
    parse_response(&raw)
}

/// Minimal blocking HTTP GET over a raw socket (no client dependency needed).
pub fn http_get_status(addr: &str, path: &str) -> Option<u16> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).ok()?;
    buf.split_whitespace().nth(1)?.parse().ok()
}

/// Run kubectl against `hami` and return (success, stdout, stderr).
pub fn kubectl(hami: &Hami, args: &[&str]) -> (bool, String, String) {
    kubectl_with(&hami.kubeconfig(), args)
}

/// Run kubectl with `kubeconfig`; (success, stdout, stderr).
pub fn kubectl_with(kubeconfig: &Path, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(kubectl_path())
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run kubectl");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `kubectl ARGS` that must succeed; its stdout.
pub fn kubectl_ok(hami: &Hami, args: &[&str]) -> String {
    let (success, out, err) = kubectl(hami, args);
    assert!(
        success,
        "kubectl {args:?} failed:\nstdout: {out}\nstderr: {err}"
    );
    out
}

/// `kubectl ARGS -o json`, parsed.
pub fn kubectl_json(hami: &Hami, args: &[&str]) -> serde_json::Value {
    let mut a = args.to_vec();
    a.extend(["-o", "json"]);
    serde_json::from_str(&kubectl_ok(hami, &a)).unwrap()
}

/// `kubectl ARGS` against a simulated member (`--sim-clusters`) of `hami`.
pub fn member_kubectl(hami: &Hami, member: &str, args: &[&str]) -> (bool, String, String) {
    let kubeconfig = hami
        .data_dir
        .join("members")
        .join(format!("{member}.kubeconfig"));
    kubectl_with(&kubeconfig, args)
}

/// Waits until `n` Clusters are Ready (`hami up --sim-clusters n`), so that
/// a Duplicated placement made next sees them all.
pub fn wait_members_ready(hami: &Hami, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let clusters = kubectl_json(hami, &["get", "clusters"]);
        let ready = clusters["items"]
            .as_array()
            .map(|items| {
                items
                    .iter()
                    .filter(|c| {
                        c["status"]["conditions"].as_array().is_some_and(|cs| {
                            cs.iter()
                                .any(|x| x["type"] == "Ready" && x["status"] == "True")
                        })
                    })
                    .count()
            })
            .unwrap_or(0);
        if ready == n {
            return;
        }
        assert!(Instant::now() < deadline, "members not ready: {clusters}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// kubectl must be installed (`.ci/run` checks it): fail, never skip.
pub fn kubectl_path() -> PathBuf {
    for p in ["/usr/bin/kubectl", "/usr/local/bin/kubectl"] {
        if Path::new(p).exists() {
            return PathBuf::from(p);
        }
    }
    panic!(
        "kubectl is not installed: the kubectl integration test needs the real kubectl (see .ci/run)"
    );
}

/// Repository root (the workspace), for samples/.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// Polls `probe` every 100 ms until it answers `Ok`; fails with the last
/// error after `secs` seconds.
pub async fn eventually<T, F, Fut>(what: &str, secs: u64, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        match probe().await {
            Ok(v) => return v,
            Err(last) => assert!(Instant::now() < deadline, "{what}: {last}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// What an end-to-end test saw, with the time since it started; printed as
/// it goes and all at once by [`Timeline::print`].
pub struct Timeline {
    tag: &'static str,
    start: Instant,
    lines: Vec<String>,
}

impl Timeline {
    pub fn new(tag: &'static str) -> Timeline {
        Timeline {
            tag,
            start: Instant::now(),
            lines: Vec::new(),
        }
    }

    pub fn mark(&mut self, what: impl Into<String>) {
        let line = format!(
            "{:>6.1}s  {}",
            self.start.elapsed().as_secs_f64(),
            what.into()
        );
        eprintln!("[{}] {line}", self.tag);
        self.lines.push(line);
    }

    pub fn print(&self) {
        eprintln!("[{}] timeline:\n{}", self.tag, self.lines.join("\n"));
    }
}

/// The directory of the workspace's binaries beside `hami`, with the other
/// packages' binaries (hami-agent, hami-sim, hami-device-plugin,
/// hami-estimator) built once per test process by the same command
/// `scripts/test.sh` runs first (so a no-op under CI).
pub fn bin_dir() -> &'static Path {
    static DIR: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    DIR.get_or_init(|| {
        let dir = Path::new(env!("CARGO_BIN_EXE_hami"))
            .parent()
            .expect("hami has a directory")
            .to_path_buf();
        let mut build = Command::new(env!("CARGO"));
        build.args(["build", "--bins"]);
        build.args([
            "-p",
            "hami-agent",
            "-p",
            "hami-device-plugin",
            "-p",
            "hami-estimator",
        ]);
        if dir.ends_with("release") {
            build.arg("--release");
        }
        let status = build.current_dir(repo_root()).status().expect("run cargo");
        assert!(status.success(), "cargo build of the binaries failed");
        dir
    })
}

/// A child process killed when dropped.
pub struct Proc {
    pub name: &'static str,
    pub child: Child,
}

impl Proc {
    pub fn spawn(name: &'static str, cmd: &mut Command) -> Proc {
        let child = cmd
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {name}: {e}"));
        Proc { name, child }
    }

    pub fn alive(&mut self) {
        if let Some(status) = self.child.try_wait().unwrap() {
            panic!("{} exited: {status}", self.name);
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// GET `http://addr/path_and_query`: (status, body). Plain HTTP/1.1, no
/// Accept header (so hami's /metrics answers the Prometheus text format).
pub fn http_get(addr: &str, path: &str) -> Result<(u16, String), String> {
    let mut s = std::net::TcpStream::connect(addr).map_err(|e| format!("{addr}: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| e.to_string())?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).map_err(|e| e.to_string())?;
    parse_response(&raw)
}

/// (status, body) of a whole HTTP/1.1 response.
fn parse_response(raw: &[u8]) -> Result<(u16, String), String> {
    let text = String::from_utf8_lossy(raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").ok_or("no HTTP header end")?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or("no status")?;
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_string()
    };
    Ok((status, body))
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        body = rest[n..].trim_start_matches("\r\n");
    }
    out
}

/// Waits until `n` Clusters say Ready=True, at most `secs` seconds.
pub async fn clusters_ready(clusters: &kube::Api<hami_api::cluster::Cluster>, n: usize, secs: u64) {
    eventually("clusters ready", secs, || async {
        let list = clusters
            .list(&Default::default())
            .await
            .map_err(|e| e.to_string())?;
        let ready = list
            .items
            .iter()
            .filter(|c| {
                c.status.as_ref().is_some_and(|s| {
                    s.conditions
                        .iter()
                        .any(|c| c.type_ == "Ready" && c.status == "True")
                })
            })
            .count();
        (ready == n)
            .then_some(())
            .ok_or(format!("{ready} of {n} ready"))
    })
    .await;
}
