//! The limits on hostile clients over real loopback HTTP, with
//! authentication on and two users from a token file (both in
//! `system:masters`: not exempt): a user flooding the server gets 429 with
//! `Retry-After` and kube's Status while the other's requests are all
//! answered; stalled uploads, idle connections and a user's watches up to its
//! limit stop nobody else; a watch whose client reads nothing is closed and
//! the others keep receiving; oversized headers get 431 and oversized bodies
//! 413 on create, update and patch.
//!
//! Load is bounded for a 2-core machine: 16 flooding tasks for 2 s, 200 idle
//! connections, a few hundred writes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt;
use hami_apiserver::server::auth::AuthOptions;
use hami_apiserver::server::metrics::RejectLabels;
use hami_apiserver::server::{Limits, RunningServer, ServerConfig, hami_kinds, spawn};
use hami_store::{MemoryStore, Store};
use http::Method;
use kube::client::Body;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

const TOKENS: &str = "\
a-token,alice,uid-a,system:masters
b-token,bob,uid-b,system:masters
";
const ALICE: &str = "a-token";
const BOB: &str = "b-token";

/// Longest any of Bob's requests may take while Alice misbehaves.
const PROMPT: Duration = Duration::from_secs(2);

const CONFIGMAPS: &str = "/api/v1/namespaces/default/configmaps";

struct Server {
    running: RunningServer,
    client: kube::Client,
    _dir: tempfile::TempDir,
}

/// Small limits: 20 requests/s, burst 20, 8 in flight, 10 watches per user.
fn small() -> Limits {
    Limits {
        user_requests_per_second: 20.0,
        user_burst: 20,
        user_max_in_flight: 8,
        user_max_watches: 10,
        max_header_bytes: 16 * 1024,
        ..Limits::default()
    }
}

async fn start(limits: Limits, body_limit: usize) -> Server {
    start_with(limits, body_limit, true).await
}

async fn start_with(limits: Limits, body_limit: usize, authenticate: bool) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let tokens = dir.path().join("tokens.csv");
    std::fs::write(&tokens, TOKENS).unwrap();
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let config = ServerConfig {
        validator: Some(hami_kinds::validator()),
        auth: authenticate.then(|| AuthOptions {
            token_auth_file: Some(tokens),
            ..AuthOptions::default()
        }),
        limits,
        body_limit,
        ..ServerConfig::default()
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let running = spawn(listener, store, hami_kinds::registry().unwrap(), config)
        .await
        .unwrap();
    let mut config = kube::Config::new(running.url().parse().unwrap());
    // The test wants to see each 429, not kube's retries of it.
    config.default_retry = false;
    let client = kube::Client::try_from(config).unwrap();
    Server {
        running,
        client,
        _dir: dir,
    }
}

struct Answer {
    code: u16,
    retry_after: Option<String>,
    body: Value,
}

fn request(
    token: &str,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<Vec<u8>>,
) -> http::Request<Body> {
    let mut builder = http::Request::builder()
        .method(method)
        .uri(path)
        .header("authorization", format!("Bearer {token}"));
    for (k, v) in headers {
        builder = builder.header(*k, *v);
    }
    let bytes = match body {
        Some(b) => {
            if !headers.iter().any(|(k, _)| *k == "content-type") {
                builder = builder.header("content-type", "application/json");
            }
            b
        }
        None => Vec::new(),
    };
    builder.body(Body::from(bytes)).unwrap()
}

impl Server {
    fn addr(&self) -> std::net::SocketAddr {
        self.running.addr
    }

    async fn send(&self, request: http::Request<Body>) -> Answer {
        let response = self.client.send(request).await.unwrap();
        let code = response.status().as_u16();
        let retry_after = response
            .headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap().to_owned());
        let bytes = response.into_body().collect_bytes().await.unwrap();
        let body = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| json!({"raw": String::from_utf8_lossy(&bytes)}));
        Answer {
            code,
            retry_after,
            body,
        }
    }

    /// One of Bob's requests: must be answered 2xx within [`PROMPT`].
    async fn bob(&self, method: Method, path: &str, body: Option<&Value>) -> Value {
        let started = Instant::now();
        let request = request(
            BOB,
            method.clone(),
            path,
            &[],
            body.map(|b| b.to_string().into()),
        );
        let answer = tokio::time::timeout(PROMPT, self.send(request))
            .await
            .unwrap_or_else(|_| panic!("{method} {path} as bob: no answer within {PROMPT:?}"));
        assert!(
            (200..300).contains(&answer.code),
            "{method} {path} as bob: {} {} after {:?}",
            answer.code,
            answer.body,
            started.elapsed()
        );
        answer.body
    }

    fn rejected(&self, reason: &'static str) -> u64 {
        self.running
            .server
            .state()
            .metrics
            .rejected_requests
            .get_or_create(&RejectLabels { reason })
            .get()
    }

    /// Waits (at most 5 s) until `user` holds (in flight, watches).
    async fn wait_held(&self, user: &str, want: (u32, u32)) {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let held = self.running.server.limiter().held(user);
            if held == want {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{user} holds {held:?}, want {want:?}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// Asserts `answer` is kube's 429.
fn assert_too_many(answer: &Answer) {
    assert_eq!(answer.code, 429, "{}", answer.body);
    let seconds: u64 = answer
        .retry_after
        .as_deref()
        .expect("Retry-After")
        .parse()
        .unwrap();
    assert!(seconds >= 1);
    assert_eq!(answer.body["kind"], "Status");
    assert_eq!(answer.body["reason"], "TooManyRequests");
    assert_eq!(answer.body["code"], 429);
    assert_eq!(
        answer.body["message"],
        "Too many requests, please try again later."
    );
    assert_eq!(answer.body["details"]["retryAfterSeconds"], seconds);
}

fn configmap(name: &str, data_bytes: usize) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": "default"},
        "data": {"blob": "x".repeat(data_bytes)},
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flooding_user_gets_429_while_another_is_served() {
    let server = Arc::new(start(small(), 3 * 1024 * 1024).await);
    let flooding = Arc::new(AtomicBool::new(true));
    let started = Instant::now();
    let mut flood = Vec::new();
    for _ in 0..16 {
        let server = server.clone();
        let flooding = flooding.clone();
        flood.push(tokio::spawn(async move {
            let (mut ok, mut refused) = (0u32, 0u32);
            while flooding.load(Ordering::Relaxed) {
                let answer = server
                    .send(request(ALICE, Method::GET, CONFIGMAPS, &[], None))
                    .await;
                match answer.code {
                    200 => ok += 1,
                    429 => {
                        assert_too_many(&answer);
                        refused += 1;
                    }
                    other => panic!("alice: {other} {}", answer.body),
                }
            }
            (ok, refused)
        }));
    }
    // Bob, in the same seconds: a list and a write every 150 ms (under his
    // own 20/s), each answered promptly.
    let mut bobs = 0;
    while started.elapsed() < Duration::from_secs(2) {
        server.bob(Method::GET, CONFIGMAPS, None).await;
        let name = format!("bob-{bobs}");
        server
            .bob(Method::POST, CONFIGMAPS, Some(&configmap(&name, 10)))
            .await;
        bobs += 1;
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    flooding.store(false, Ordering::Relaxed);
    let elapsed = started.elapsed().as_secs_f64();
    let (mut ok, mut refused) = (0, 0);
    for task in flood {
        let (o, r) = task.await.unwrap();
        ok += o;
        refused += r;
    }
    assert!(bobs >= 5, "bob got through only {bobs} rounds");
    assert!(refused > 0, "alice was never refused ({ok} answered)");
    // Burst 20, then 20/s: what the bucket allows, with a little slack
    // for the requests in flight when the flood stopped.
    let allowed = 20.0 + 20.0 * (elapsed + 0.5);
    assert!(
        f64::from(ok) <= allowed,
        "alice got {ok} answers in {elapsed:.1}s (at most {allowed:.0})"
    );
    assert!(ok >= 20, "alice's burst: {ok}");
    // Refused for her rate, and (16 at once against 8) her requests in flight.
    assert!(server.rejected("rate") > 0);
    assert_eq!(
        server.rejected("rate") + server.rejected("in_flight"),
        u64::from(refused)
    );
    // Nothing is left held once the flood is over.
    server.wait_held("alice", (0, 0)).await;
    eprintln!("alice: {ok} answered, {refused} refused; bob: {bobs} rounds; {elapsed:.1}s");
}

/// A connection that sent `head` (and nothing more) and reads nothing.
async fn raw(addr: std::net::SocketAddr, head: &str) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    // Small, so a stalled reader fills up soon.
    socket.set_recv_buffer_size(4096).unwrap();
    let mut stream = socket.connect(addr).await.unwrap();
    stream.write_all(head.as_bytes()).await.unwrap();
    stream
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_uploads_idle_connections_and_watches_stop_nobody_else() {
    let server = start(small(), 3 * 1024 * 1024).await;
    let addr = server.addr();
    // 200 idle connections: half never said a word, half stopped mid-headers.
    let mut idle = Vec::new();
    for i in 0..200 {
        let head = if i % 2 == 0 {
            ""
        } else {
            "GET /api/v1/namespaces HTTP/1.1\r\nHost: x\r\n"
        };
        idle.push(raw(addr, head).await);
    }
    // Alice: 8 uploads that announce 1000 bytes and send one: her 8 requests
    // in flight wait in the body read.
    let mut uploads = Vec::new();
    for _ in 0..8 {
        let head = format!(
            "POST {CONFIGMAPS} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {ALICE}\r\n\
             Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{{"
        );
        uploads.push(raw(addr, &head).await);
    }
    server.wait_held("alice", (8, 0)).await;
    let answer = server
        .send(request(ALICE, Method::GET, CONFIGMAPS, &[], None))
        .await;
    assert_too_many(&answer);
    assert_eq!(server.rejected("in_flight"), 1);
    // ... while Bob lists and writes.
    server.bob(Method::GET, CONFIGMAPS, None).await;
    server
        .bob(Method::POST, CONFIGMAPS, Some(&configmap("b1", 10)))
        .await;
    // Alice's watches, up to her limit; nobody reads them.
    let mut watches = Vec::new();
    for _ in 0..10 {
        let response = server
            .client
            .send(request(
                ALICE,
                Method::GET,
                &format!("{CONFIGMAPS}?watch=1"),
                &[],
                None,
            ))
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        watches.push(response);
    }
    let answer = server
        .send(request(
            ALICE,
            Method::GET,
            &format!("{CONFIGMAPS}?watch=1"),
            &[],
            None,
        ))
        .await;
    assert_too_many(&answer);
    assert_eq!(server.rejected("watches"), 1);
    server.wait_held("alice", (8, 10)).await;
    // Bob still lists, watches, and sees his own write on his watch.
    let list = server.bob(Method::GET, CONFIGMAPS, None).await;
    let rv = list["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_owned();
    let response = tokio::time::timeout(
        PROMPT,
        server.client.send(request(
            BOB,
            Method::GET,
            &format!("{CONFIGMAPS}?watch=1&resourceVersion={rv}"),
            &[],
            None,
        )),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(response.status(), 200);
    let mut events = axum::body::Body::new(response.into_body()).into_data_stream();
    server
        .bob(Method::POST, CONFIGMAPS, Some(&configmap("b2", 10)))
        .await;
    let mut seen = Vec::new();
    let saw_b2 = tokio::time::timeout(PROMPT, async {
        while let Some(chunk) = events.next().await {
            seen.extend_from_slice(&chunk.unwrap());
            if String::from_utf8_lossy(&seen).contains(r#""name":"b2""#) {
                return;
            }
        }
    })
    .await;
    assert!(
        saw_b2.is_ok(),
        "bob's watch: {}",
        String::from_utf8_lossy(&seen)
    );
    // Alice lets go: her slots come back.
    drop(uploads);
    drop(watches);
    server.wait_held("alice", (0, 0)).await;
    server.bob(Method::GET, CONFIGMAPS, None).await;
    drop(idle);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_headers_get_431_and_oversized_bodies_413() {
    let server = start(small(), 32 * 1024).await;
    let big = "h".repeat(20 * 1024);
    for token in [BOB, "not-a-token"] {
        let answer = server
            .send(request(
                token,
                Method::GET,
                CONFIGMAPS,
                &[("x-big", &big)],
                None,
            ))
            .await;
        assert_eq!(answer.code, 431, "{}", answer.body);
        assert_eq!(answer.body["kind"], "Status");
    }
    assert_eq!(server.rejected("header_size"), 2);
    // Headers within the limit pass.
    let fine = "h".repeat(8 * 1024);
    let answer = server
        .send(request(
            BOB,
            Method::GET,
            CONFIGMAPS,
            &[("x-fine", &fine)],
            None,
        ))
        .await;
    assert_eq!(answer.code, 200, "{}", answer.body);

    server
        .bob(Method::POST, CONFIGMAPS, Some(&configmap("small", 10)))
        .await;
    let too_big = |name: &str| configmap(name, 64 * 1024).to_string().into_bytes();
    let one = format!("{CONFIGMAPS}/small");
    let cases = [
        (
            Method::POST,
            CONFIGMAPS.to_owned(),
            "application/json",
            too_big("big"),
        ),
        (
            Method::PUT,
            one.clone(),
            "application/json",
            too_big("small"),
        ),
        (
            Method::PATCH,
            one.clone(),
            "application/merge-patch+json",
            too_big("small"),
        ),
        (
            Method::PATCH,
            one.clone(),
            "application/apply-patch+yaml",
            too_big("small"),
        ),
    ];
    for (method, path, content_type, body) in cases {
        let answer = server
            .send(request(
                BOB,
                method.clone(),
                &path,
                &[("content-type", content_type)],
                Some(body),
            ))
            .await;
        assert_eq!(answer.code, 413, "{method} {path}: {}", answer.body);
        assert_eq!(answer.body["reason"], "RequestEntityTooLarge");
    }
    // A chunked body (no Content-Length) past the limit, and a declared
    // length far past it, answered at once without waiting for the body.
    let head = |length: &str| {
        format!(
            "POST {CONFIGMAPS} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {BOB}\r\n\
             Content-Type: application/json\r\n{length}\r\n"
        )
    };
    let chunk = "x".repeat(40 * 1024);
    let chunked = format!(
        "{}{:x}\r\n{chunk}\r\n0\r\n\r\n",
        head("Transfer-Encoding: chunked\r\n"),
        chunk.len()
    );
    for request in [chunked, head("Content-Length: 100000000\r\n")] {
        let mut stream = raw(server.addr(), &request).await;
        let mut answer = vec![0; 12];
        tokio::time::timeout(PROMPT, stream.read_exact(&mut answer))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&answer), "HTTP/1.1 413");
    }
    // Nothing was written.
    let small = server.bob(Method::GET, &one, None).await;
    assert_eq!(small["data"]["blob"], "x".repeat(10));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_that_reads_nothing_is_closed_and_others_keep_receiving() {
    let limits = Limits {
        // Long enough that Bob's reader, on a busy machine, is never taken
        // for a stalled one.
        watch_stall_timeout: Duration::from_secs(1),
        ..Limits::default()
    };
    let server = start(limits, 3 * 1024 * 1024).await;
    let metrics = &server.running.server.state().metrics;
    // Bob watches from now and reads everything.
    let list = server.bob(Method::GET, CONFIGMAPS, None).await;
    let rv = list["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_owned();
    let response = server
        .client
        .send(request(
            BOB,
            Method::GET,
            &format!("{CONFIGMAPS}?watch=1&resourceVersion={rv}"),
            &[],
            None,
        ))
        .await
        .unwrap();
    let mut events = axum::body::Body::new(response.into_body()).into_data_stream();
    let (got_tx, mut got) = tokio::sync::mpsc::unbounded_channel();
    let reader = tokio::spawn(async move {
        let mut seen = 0usize;
        let mut pending = Vec::new();
        while let Some(chunk) = events.next().await {
            pending.extend_from_slice(&chunk.unwrap());
            while let Some(end) = pending.iter().position(|b| *b == b'\n') {
                pending.drain(..=end);
                seen += 1;
                let _ = got_tx.send(seen);
            }
        }
    });
    // Alice watches and never reads, on a small receive buffer.
    let head = format!(
        "GET {CONFIGMAPS}?watch=1 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {ALICE}\r\n\r\n"
    );
    let stalled = raw(server.addr(), &head).await;
    server.wait_held("alice", (0, 1)).await;
    // 64 KiB objects until Alice's buffer and socket are full and the stall
    // timeout passes (about 25 MiB fill them; at most 800 objects).
    let mut created = 0;
    while metrics.slow_watches_closed.get() == 0 {
        assert!(created < 800, "the stalled watch was never closed");
        for _ in 0..50 {
            let name = format!("big-{created}");
            server
                .bob(Method::POST, CONFIGMAPS, Some(&configmap(&name, 64 * 1024)))
                .await;
            created += 1;
        }
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
    // Bob's watch has had every event, promptly.
    let deadline = Instant::now() + PROMPT;
    let mut seen = 0;
    while seen < created {
        let left = deadline.saturating_duration_since(Instant::now());
        seen = tokio::time::timeout(left, got.recv())
            .await
            .unwrap_or_else(|_| panic!("bob's watch had {seen} of {created} events"))
            .unwrap();
    }
    assert_eq!(metrics.slow_watches_closed.get(), 1);
    // Alice's stream holds her watch slot until she lets go of it.
    drop(stalled);
    server.wait_held("alice", (0, 0)).await;
    reader.abort();
    eprintln!("stalled watch closed after {created} objects");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_authentication_everyone_is_one_user_and_probes_are_exempt() {
    let limits = Limits {
        user_requests_per_second: 0.5,
        user_burst: 2,
        ..Limits::default()
    };
    let server = start_with(limits, 3 * 1024 * 1024, false).await;
    // Any token (none is checked): all one user, system:unsecured.
    for token in [ALICE, BOB] {
        let answer = server
            .send(request(token, Method::GET, CONFIGMAPS, &[], None))
            .await;
        assert_eq!(answer.code, 200, "{}", answer.body);
    }
    let answer = server
        .send(request(ALICE, Method::GET, CONFIGMAPS, &[], None))
        .await;
    assert_too_many(&answer);
    assert_eq!(
        answer.retry_after.as_deref(),
        Some("2"),
        "0.5/s: 2 s to a token"
    );
    for probe in ["/healthz", "/livez", "/readyz"] {
        let answer = server
            .send(request(BOB, Method::GET, probe, &[], None))
            .await;
        assert_eq!(answer.code, 200, "{probe}: {}", answer.body);
    }
    assert_eq!(server.rejected("rate"), 1);
    assert_eq!(
        server.running.server.limiter().held("system:unsecured"),
        (0, 0)
    );
    // The refusal is in the request counter too.
    let mut text = String::new();
    prometheus_client::encoding::text::encode(
        &mut text,
        &server.running.server.state().metric_registry,
    )
    .unwrap();
    assert!(
        text.contains(
            r#"hami_apiserver_requests_total{verb="list",resource="configmaps",code="429"} 1"#
        ),
        "{text}"
    );
}
