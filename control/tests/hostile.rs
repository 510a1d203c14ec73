//! Hostile and broken clients against a real `hami up` over TLS (loopback
//! only, every phase bounded in time), and a well-behaved user who must not
//! notice them. Each part reproduces what real clients do to
//! kube-apiserver:
//!
//! * **A flooding controller with a bug**
//!   ([`a_flooding_user_gets_429s_while_another_is_served`]): a controller
//!   whose workers re-list in a hot loop, without backoff, from many
//!   connections at once; beside it, a misconfigured client without RBAC
//!   retrying its 403s as fast as it can (the limits run before
//!   authorization, as kube's APF does, so its forbidden requests are limited
//!   too). Both get 429s with `Retry-After`; a second user's steady 20 GETs
//!   per second in the same seconds are every one 200, none slow.
//! * **A slowloris client** (the end of the same test, and 200 connections in
//!   the second): TCP connections that never start TLS, TLS connections that
//!   never send a request, requests whose headers never end, kept-alive
//!   connections left idle. Each is one task on the server, never the accept
//!   loop, and is dropped after the handshake or header timeout (short here
//!   through the hidden `--tls-handshake-timeout` and
//!   `--http-header-read-timeout`).
//! * **A leaking informer**
//!   ([`idle_connections_and_a_thousand_watches_stop_nobody_else`]): a
//!   client that starts watches and never closes them, up to the per-user
//!   limit of 1,000 (the 1,001st is 429), each on its own HTTP/1.1
//!   connection, with the 200 idle connections beside them; the second user
//!   lists, gets, creates and watches promptly, `/readyz` stays 200, the
//!   server holds no thread per watch, and once the client goes away the
//!   watch and in-flight gauges are back where they were.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use futures::StreamExt as _;
use http::{HeaderMap, Method, Request, StatusCode, header};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use serde_json::{Value, json};
use support::{Endpoint, Hami, kubeconfig_tls};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

/// Tokens of the three users: `flood` and `bob` are cluster admins,
/// `mallory` may do nothing but discovery.
const TOKENS: &str = "flood-token-0123456789,flood,uid-flood,\"system:masters\"\n\
                      mallory-token-0123456789,mallory,uid-mallory,\n\
                      bob-token-0123456789,bob,uid-bob,\"system:masters\"\n";
const FLOOD: &str = "flood-token-0123456789";
const MALLORY: &str = "mallory-token-0123456789";
const BOB: &str = "bob-token-0123456789";

/// How long the well-behaved user may wait for any one answer.
const PROMPT: Duration = Duration::from_secs(5);

/// Only one test at a time: both measure latency on a small machine.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

struct Cluster {
    hami: Hami,
    addr: SocketAddr,
    tls: Arc<rustls::ClientConfig>,
    admin: Endpoint,
    _dir: tempfile::TempDir,
}

fn start(extra: &[&str]) -> Cluster {
    let dir = tempfile::tempdir().unwrap();
    let tokens = dir.path().join("tokens.csv");
    std::fs::write(&tokens, TOKENS).unwrap();
    let tokens = tokens.to_str().unwrap().to_owned();
    let mut args = vec![
        "--in-memory",
        "--no-controllers",
        "--token-auth-file",
        tokens.as_str(),
    ];
    args.extend_from_slice(extra);
    let hami = Hami::start_with_args(&dir.path().join("hami"), "127.0.0.1:0", &args);
    let addr: SocketAddr = hami.listen.parse().unwrap();
    // Trusts hami's CA, presents no certificate: the token says who it is.
    let tls = kubeconfig_tls(&hami.kubeconfig(), false).unwrap();
    let admin = hami.endpoint();
    Cluster {
        hami,
        addr,
        tls,
        admin,
        _dir: dir,
    }
}

/// A TLS connection to the control plane.
async fn tls_connect(
    addr: SocketAddr,
    tls: &Arc<rustls::ClientConfig>,
) -> Result<TlsStream<TcpStream>, String> {
    let tcp = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    TlsConnector::from(tls.clone())
        .connect(ServerName::IpAddress(addr.ip().into()), tcp)
        .await
        .map_err(|e| format!("TLS handshake: {e}"))
}

/// One keep-alive HTTP/1.1 connection of one user (hyper's client).
struct Client {
    addr: SocketAddr,
    tls: Arc<rustls::ClientConfig>,
    token: &'static str,
    sender: SendRequest<Body>,
}

struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl Client {
    async fn connect(cluster: &Cluster, token: &'static str) -> Result<Client, String> {
        Self::connect_to(cluster.addr, cluster.tls.clone(), token).await
    }

    async fn connect_to(
        addr: SocketAddr,
        tls: Arc<rustls::ClientConfig>,
        token: &'static str,
    ) -> Result<Client, String> {
        let stream = tls_connect(addr, &tls).await?;
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| format!("HTTP handshake: {e}"))?;
        tokio::spawn(connection);
        Ok(Client {
            addr,
            tls,
            token,
            sender,
        })
    }

    /// The same user on a fresh connection (after the server closed this one).
    async fn reconnect(&mut self) -> Result<(), String> {
        *self = Self::connect_to(self.addr, self.tls.clone(), self.token).await?;
        Ok(())
    }

    fn request(&self, method: Method, path: &str, body: Option<&Value>) -> Request<Body> {
        let builder = Request::builder()
            .method(method)
            .uri(path)
            .header(header::HOST, self.addr.to_string())
            .header(header::AUTHORIZATION, format!("Bearer {}", self.token));
        match body {
            Some(body) => builder
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(serde_json::to_vec(body).unwrap())),
            None => builder.body(Body::empty()),
        }
        .unwrap()
    }

    /// Sends a request and reads its whole answer.
    async fn send(
        &mut self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Answer, String> {
        let response = self.head(method, path, body).await?;
        let (parts, body) = response.into_parts();
        let body = axum::body::to_bytes(Body::new(body), usize::MAX)
            .await
            .map_err(|e| format!("reading the body: {e}"))?;
        Ok(Answer {
            status: parts.status,
            headers: parts.headers,
            body,
        })
    }

    /// Sends a request and returns once the response head has come.
    async fn head(
        &mut self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<http::Response<hyper::body::Incoming>, String> {
        let request = self.request(method, path, body);
        self.sender
            .ready()
            .await
            .map_err(|e| format!("connection: {e}"))?;
        self.sender
            .send_request(request)
            .await
            .map_err(|e| format!("request: {e}"))
    }
}

/// A 429 must be kube's: `Retry-After` of at least a second and a
/// TooManyRequests Status.
fn assert_kube_429(answer: &Answer) {
    let retry = answer
        .headers
        .get(header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    assert!(
        retry.is_some_and(|s| s >= 1),
        "429 without Retry-After: {:?}",
        answer.headers
    );
    let status: Value = serde_json::from_slice(&answer.body).unwrap();
    assert_eq!(status["reason"], "TooManyRequests", "{status}");
}

#[derive(Debug, Default)]
struct Tally {
    ok: u64,
    forbidden: u64,
    too_many: u64,
    other: u64,
    errors: u64,
}

/// One flooding worker: the same request on one connection, as fast as the
/// answers come, until `until`; a connection the server closed is opened
/// again, as a client library would.
async fn flood(mut client: Client, path: &'static str, until: Instant) -> Tally {
    let mut tally = Tally::default();
    while Instant::now() < until {
        match client.send(Method::GET, path, None).await {
            Ok(answer) => match answer.status {
                StatusCode::OK => tally.ok += 1,
                StatusCode::FORBIDDEN => tally.forbidden += 1,
                StatusCode::TOO_MANY_REQUESTS => {
                    assert_kube_429(&answer);
                    tally.too_many += 1;
                }
                _ => tally.other += 1,
            },
            Err(_) => {
                tally.errors += 1;
                if client.reconnect().await.is_err() {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        }
    }
    tally
}

fn sum(tallies: &[Tally]) -> Tally {
    tallies.iter().fold(Tally::default(), |mut all, t| {
        all.ok += t.ok;
        all.forbidden += t.forbidden;
        all.too_many += t.too_many;
        all.other += t.other;
        all.errors += t.errors;
        all
    })
}

/// Reads until the peer closes (EOF or an error, as a TLS peer that drops
/// the connection without close_notify gives); how long that took.
async fn closed_after<S: tokio::io::AsyncRead + Unpin>(
    stream: &mut S,
    bound: Duration,
) -> Option<Duration> {
    let started = Instant::now();
    let mut buf = [0u8; 4096];
    tokio::time::timeout(bound, async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await
    .ok()
    .map(|()| started.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flooding_user_gets_429s_while_another_is_served() {
    let _serial = SERIAL.lock().await;
    let cluster = start(&[
        "--user-requests-per-second",
        "50",
        "--user-burst",
        "100",
        "--user-max-in-flight",
        "20",
        "--tls-handshake-timeout",
        "1s",
        "--http-header-read-timeout",
        "2s",
    ]);
    let list = "/api/v1/namespaces/default/configmaps";
    let flood_for = Duration::from_secs(3);

    // Every connection first, so that the flood starts at once.
    let mut floods = Vec::new();
    for _ in 0..24 {
        floods.push(Client::connect(&cluster, FLOOD).await.unwrap());
    }
    let mut forbidden = Vec::new();
    for _ in 0..8 {
        forbidden.push(Client::connect(&cluster, MALLORY).await.unwrap());
    }
    let mut bob = Client::connect(&cluster, BOB).await.unwrap();
    // Is mallory really forbidden (and not limited yet)?
    let first = forbidden[0].send(Method::GET, list, None).await.unwrap();
    assert_eq!(first.status, StatusCode::FORBIDDEN);

    let started = Instant::now();
    let until = started + flood_for;
    let flood_tasks: Vec<_> = floods
        .into_iter()
        .map(|c| tokio::spawn(flood(c, list, until)))
        .collect();
    let forbidden_tasks: Vec<_> = forbidden
        .into_iter()
        .map(|c| tokio::spawn(flood(c, list, until)))
        .collect();

    // Bob: 20 GETs a second, alternately a list and a get, in the same
    // seconds, on one kept-alive connection.
    let mut latencies = Vec::new();
    let mut tick = tokio::time::interval(Duration::from_millis(50));
    while Instant::now() < until {
        tick.tick().await;
        let path = if latencies.len() % 2 == 0 {
            list
        } else {
            "/api/v1/namespaces/default"
        };
        let sent = Instant::now();
        let answer = tokio::time::timeout(PROMPT, bob.send(Method::GET, path, None))
            .await
            .unwrap_or_else(|_| panic!("bob's GET {path} took more than {PROMPT:?}"))
            .unwrap_or_else(|e| panic!("bob's GET {path}: {e}"));
        assert_eq!(
            answer.status,
            StatusCode::OK,
            "bob's GET {path}: {}",
            String::from_utf8_lossy(&answer.body)
        );
        latencies.push(sent.elapsed());
    }
    let mut floods = Vec::new();
    for task in flood_tasks {
        floods.push(task.await.unwrap());
    }
    let mut forbiddens = Vec::new();
    for task in forbidden_tasks {
        forbiddens.push(task.await.unwrap());
    }
    let elapsed = started.elapsed();
    let flood = sum(&floods);
    let forbidden = sum(&forbiddens);
    latencies.sort();
    let worst = latencies.last().copied().unwrap_or_default();
    let median = latencies[latencies.len() / 2];
    println!(
        "flood for {elapsed:?}: flood {flood:?}; mallory {forbidden:?}; bob {} GETs, all 200, median {median:?}, worst {worst:?}",
        latencies.len()
    );
    assert!(
        latencies.len() >= 40,
        "bob sent only {} requests",
        latencies.len()
    );
    assert!(flood.too_many > 0, "the flood was never limited: {flood:?}");
    assert!(
        forbidden.too_many > 0,
        "forbidden requests were never limited: {forbidden:?}"
    );
    // The bucket admits its burst and then the rate, for the user, whatever
    // the number of connections: never more than that (plus slack for the
    // few requests sent before the clock started).
    let allowed = 100.0 + 50.0 * elapsed.as_secs_f64() + 10.0;
    assert!(
        (flood.ok + flood.other) as f64 <= allowed,
        "flood admitted {flood:?}, at most {allowed}"
    );
    assert!(
        (forbidden.forbidden + forbidden.other) as f64 <= allowed,
        "mallory admitted {forbidden:?}, at most {allowed}"
    );
    assert_eq!(flood.other + forbidden.other, 0, "unexpected answers");

    // Slowloris, with the short timeouts of this server: a TCP connection
    // that never starts TLS, a TLS connection that sends half a request
    // header, a kept-alive connection left idle after one request.
    let mut silent = TcpStream::connect(cluster.addr).await.unwrap();
    let mut half = tls_connect(cluster.addr, &cluster.tls).await.unwrap();
    half.write_all(b"GET /api/v1/namespaces HTTP/1.1\r\nHost: x\r\nAuthorization: Bear")
        .await
        .unwrap();
    half.flush().await.unwrap();
    let mut idle = Client::connect(&cluster, BOB).await.unwrap();
    let answer = idle.send(Method::GET, list, None).await.unwrap();
    assert_eq!(answer.status, StatusCode::OK);
    let idle_since = Instant::now();
    let bound = Duration::from_secs(15);
    let (silent_closed, half_closed) = tokio::join!(
        closed_after(&mut silent, bound),
        closed_after(&mut half, bound)
    );
    let silent_closed = silent_closed.expect("a connection that never starts TLS is dropped");
    let half_closed = half_closed.expect("a request whose headers never end is dropped");
    while !idle.sender.is_closed() {
        assert!(
            idle_since.elapsed() < bound,
            "an idle kept-alive connection is closed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    println!(
        "slowloris: silent TCP dropped after {silent_closed:?} (handshake timeout 1 s), half a header after {half_closed:?} (header timeout 2 s), idle keep-alive after {:?}",
        idle_since.elapsed()
    );
    // And still serving.
    let mut bob = Client::connect(&cluster, BOB).await.unwrap();
    assert_eq!(
        bob.send(Method::GET, list, None).await.unwrap().status,
        StatusCode::OK
    );
    let metrics = admin_metrics(&cluster.admin).await;
    assert!(
        gauge(
            &metrics,
            "hami_apiserver_rejected_requests_total{reason=\"rate\"}"
        ) > 0.0,
        "429s counted"
    );
}

/// `/metrics` as the admin.
async fn admin_metrics(admin: &Endpoint) -> String {
    let admin = admin.clone();
    let (code, body) = tokio::task::spawn_blocking(move || admin.get("/metrics"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(code, 200, "{body}");
    body
}

/// The value of the sample `name{labels}` (0 when absent).
fn gauge(metrics: &str, sample: &str) -> f64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(sample)?.trim().parse().ok())
        .unwrap_or(0.0)
}

/// Threads of a process (Linux).
fn threads(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .and_then(|n| n.trim().parse().ok())
}

/// Starts a watch on a fresh TLS connection with a raw HTTP/1.1 request and
/// reads the response head: the connection and the head, lower-cased.
async fn raw_watch(
    addr: SocketAddr,
    tls: Arc<rustls::ClientConfig>,
    token: &str,
) -> Result<(TlsStream<TcpStream>, String), String> {
    let mut stream = tls_connect(addr, &tls).await?;
    let request = format!(
        "GET /api/v1/namespaces/default/configmaps?watch=1 HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\n\r\n"
    );
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| format!("write: {e}"))?;
    let mut head = Vec::new();
    let mut buf = [0u8; 2048];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream
            .read(&mut buf)
            .await
            .map_err(|e| format!("read: {e}"))?;
        if n == 0 {
            return Err(format!("closed after {:?}", String::from_utf8_lossy(&head)));
        }
        head.extend_from_slice(&buf[..n]);
    }
    Ok((stream, String::from_utf8_lossy(&head).to_lowercase()))
}

/// One call of bob's, which must answer within [`PROMPT`]; `worst` keeps
/// the longest.
async fn timed(
    bob: &mut Client,
    worst: &mut Duration,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> Answer {
    let sent = Instant::now();
    let answer = tokio::time::timeout(PROMPT, bob.send(method.clone(), path, body.as_ref()))
        .await
        .unwrap_or_else(|_| panic!("bob's {method} {path} took more than {PROMPT:?}"))
        .unwrap_or_else(|e| panic!("bob's {method} {path}: {e}"));
    *worst = (*worst).max(sent.elapsed());
    answer
}

/// Runs `make` for 0..n with at most `at_once` in flight.
async fn many<T, F, Fut>(n: usize, at_once: usize, make: F) -> Vec<T>
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    let mut out = Vec::with_capacity(n);
    let mut running =
        futures::stream::iter((0..n).map(|i| tokio::spawn(make(i)))).buffered(at_once);
    while let Some(result) = running.next().await {
        out.push(result.unwrap());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_and_a_thousand_watches_stop_nobody_else() {
    let _serial = SERIAL.lock().await;
    // 1,200 connections here and as many on the server: the default soft
    // limit of 1,024 open files would stop the test itself.
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    let cluster = start(&["--user-max-watches", "1000"]);
    let pid = cluster.hami.child.id();
    let before = admin_metrics(&cluster.admin).await;
    let watch_gauge = "hami_apiserver_inflight_requests{kind=\"watch\"}";
    let open_gauge = "hami_apiserver_open_watches";
    let readonly_gauge = "hami_apiserver_inflight_requests{kind=\"readonly\"}";
    let (watches_before, open_before, readonly_before) = (
        gauge(&before, watch_gauge),
        gauge(&before, open_gauge),
        gauge(&before, readonly_gauge),
    );
    let threads_before = threads(pid);

    // The leaking informer: 1,000 watches, each on its own connection.
    let started = Instant::now();
    let (addr, tls) = (cluster.addr, cluster.tls.clone());
    let watches = many(1000, 64, move |_| raw_watch(addr, tls.clone(), FLOOD)).await;
    let mut held = Vec::new();
    for watch in watches {
        let (stream, head) = watch.unwrap();
        assert!(head.starts_with("http/1.1 200"), "{head}");
        held.push(stream);
    }
    let opened_in = started.elapsed();
    let (_refused, head) = raw_watch(cluster.addr, cluster.tls.clone(), FLOOD)
        .await
        .unwrap();
    assert!(
        head.starts_with("http/1.1 429"),
        "the 1,001st watch: {head}"
    );
    assert!(head.contains("\r\nretry-after: "), "{head}");

    // The slowloris: 200 idle connections of three sorts.
    let (addr, tls) = (cluster.addr, cluster.tls.clone());
    let mut plain = Vec::new();
    for _ in 0..70 {
        plain.push(TcpStream::connect(addr).await.unwrap());
    }
    let silent: Vec<_> = many(70, 32, move |_| {
        let tls = tls.clone();
        async move { tls_connect(addr, &tls).await }
    })
    .await
    .into_iter()
    .map(Result::unwrap)
    .collect();
    let tls = cluster.tls.clone();
    let halves: Vec<_> = many(60, 32, move |_| {
        let tls = tls.clone();
        async move {
            let mut s = tls_connect(addr, &tls).await?;
            s.write_all(b"GET /api/v1/namespaces HTTP/1.1\r\nHost: x\r\nUser-Agent: slow")
                .await
                .map_err(|e| e.to_string())?;
            s.flush().await.map_err(|e| e.to_string())?;
            Ok::<_, String>(s)
        }
    })
    .await
    .into_iter()
    .map(Result::unwrap)
    .collect();
    let idle = plain.len() + silent.len() + halves.len();
    println!(
        "1,000 watches opened in {opened_in:?}; {idle} idle connections opened after {:?}",
        started.elapsed()
    );

    // Bob, meanwhile: every call prompt.
    let bob_started = Instant::now();
    let mut worst = Duration::ZERO;
    let mut bob = tokio::time::timeout(PROMPT, Client::connect(&cluster, BOB))
        .await
        .expect("bob connects promptly")
        .unwrap();
    let ready = timed(&mut bob, &mut worst, Method::GET, "/readyz", None).await;
    assert_eq!(ready.status, StatusCode::OK);
    let listed = timed(
        &mut bob,
        &mut worst,
        Method::GET,
        "/api/v1/namespaces/default/configmaps",
        None,
    )
    .await;
    assert_eq!(listed.status, StatusCode::OK);
    let got = timed(
        &mut bob,
        &mut worst,
        Method::GET,
        "/api/v1/namespaces/default",
        None,
    )
    .await;
    assert_eq!(got.status, StatusCode::OK);
    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "bobs"}, "data": {"a": "1"}});
    let created = timed(
        &mut bob,
        &mut worst,
        Method::POST,
        "/api/v1/namespaces/default/configmaps",
        Some(cm),
    )
    .await;
    assert_eq!(
        created.status,
        StatusCode::CREATED,
        "{}",
        String::from_utf8_lossy(&created.body)
    );
    let rv = serde_json::from_slice::<Value>(&created.body).unwrap()["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_owned();
    // A new watch of bob's sees bob's next write.
    let mut watcher = Client::connect(&cluster, BOB).await.unwrap();
    let sent = Instant::now();
    let response = tokio::time::timeout(
        PROMPT,
        watcher.head(
            Method::GET,
            &format!("/api/v1/namespaces/default/configmaps?watch=1&resourceVersion={rv}"),
            None,
        ),
    )
    .await
    .expect("bob's watch starts promptly")
    .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    worst = worst.max(sent.elapsed());
    let mut events = Body::new(response.into_body()).into_data_stream();
    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "bobs-2"}});
    let created = timed(
        &mut bob,
        &mut worst,
        Method::POST,
        "/api/v1/namespaces/default/configmaps",
        Some(cm),
    )
    .await;
    assert_eq!(created.status, StatusCode::CREATED);
    let sent = Instant::now();
    let mut seen = Vec::new();
    while !String::from_utf8_lossy(&seen).contains("bobs-2") {
        let chunk = tokio::time::timeout(PROMPT, events.next())
            .await
            .expect("bob's watch sees bob's write promptly")
            .expect("the watch goes on")
            .unwrap();
        seen.extend_from_slice(&chunk);
    }
    worst = worst.max(sent.elapsed());
    let ready = timed(&mut bob, &mut worst, Method::GET, "/readyz", None).await;
    assert_eq!(ready.status, StatusCode::OK);
    let bob_took = bob_started.elapsed();

    let during = admin_metrics(&cluster.admin).await;
    let threads_during = threads(pid);
    println!(
        "bob with 1,000 watches and {idle} idle connections open: every call 200/201, worst {worst:?}, all in {bob_took:?}; \
         gauges: watch {} -> {}, open watches {} -> {}; server threads {threads_before:?} -> {threads_during:?}",
        watches_before,
        gauge(&during, watch_gauge),
        open_before,
        gauge(&during, open_gauge),
    );
    assert!(
        gauge(&during, watch_gauge) >= watches_before + 1000.0,
        "{during}"
    );
    assert!(
        gauge(&during, open_gauge) >= open_before + 1000.0,
        "{during}"
    );
    // A watch is a task, never a thread.
    if let (Some(b), Some(d)) = (threads_before, threads_during) {
        assert!(d < b + 100, "threads {b} -> {d} with 1,000 watches");
    }

    // The client goes away: everything it held is released.
    drop((held, plain, silent, halves, events, watcher));
    let closed = Instant::now();
    let admin = cluster.admin.clone();
    support::eventually("the gauges come back", 20, || {
        let admin = admin.clone();
        async move {
            let now = admin_metrics(&admin).await;
            let back = (
                gauge(&now, watch_gauge),
                gauge(&now, open_gauge),
                gauge(&now, readonly_gauge),
            );
            if back == (watches_before, open_before, readonly_before) {
                Ok(())
            } else {
                Err(format!("watch, open, readonly now {back:?}"))
            }
        }
    })
    .await;
    println!(
        "gauges back to where they were {:?} after the client left",
        closed.elapsed()
    );
}
