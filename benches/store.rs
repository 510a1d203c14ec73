//! Store benchmarks: durable writes with 1 and 64 writers (grouped commits
//! beside one-commit-per-write in the same run, so the result is a ratio), get
//! and list over 10,000 objects of 1 KiB, and watch fan-out to 100 watchers.
//!
//! `cargo bench -p hami-benches --bench store`
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use hami_store::{EmbeddedOptions, EmbeddedStore, Store};
use tokio::runtime::Runtime;

/// A ConfigMap-like JSON document padded to 1 KiB.
fn value(i: u64) -> Vec<u8> {
    let head = format!(
        r#"{{"apiVersion":"v1","kind":"ConfigMap","metadata":{{"name":"cm-{i}","namespace":"bench","labels":{{"app":"store-bench"}}}},"data":{{"payload":""#
    );
    let mut s = head;
    while s.len() < 1024 - 3 {
        s.push('x');
    }
    s.push_str("\"}}");
    s.into_bytes()
}

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn open(dir: &std::path::Path, max_batch: usize) -> Arc<EmbeddedStore> {
    Arc::new(
        EmbeddedStore::open(
            dir,
            EmbeddedOptions {
                max_batch,
                ..EmbeddedOptions::default()
            },
        )
        .unwrap(),
    )
}

/// `writers` tasks create `per_writer` fresh keys each; returns the elapsed time.
async fn create_many(
    store: &Arc<EmbeddedStore>,
    next: &Arc<AtomicU64>,
    writers: u64,
    per_writer: u64,
) -> Duration {
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..writers {
        let store = store.clone();
        let next = next.clone();
        tasks.push(tokio::spawn(async move {
            for _ in 0..per_writer {
                let i = next.fetch_add(1, Ordering::Relaxed);
                store
                    .create(&format!("bench/cm-{i:09}"), value(i))
                    .await
                    .unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    start.elapsed()
}

fn durable_creates(c: &mut Criterion) {
    let rt = runtime();
    let mut group = c.benchmark_group("store/durable_creates");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4));
    let cases: [(&str, u64, u64, usize); 3] = [
        ("1_writer", 1, 64, 1024),
        ("64_writers/grouped", 64, 16, 1024),
        ("64_writers/one_commit_per_write", 64, 4, 1),
    ];
    for (name, writers, per_writer, max_batch) in cases {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path(), max_batch);
        let next = Arc::new(AtomicU64::new(0));
        group.throughput(Throughput::Elements(writers * per_writer));
        group.bench_function(BenchmarkId::from_parameter(name), |b| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        total += create_many(&store, &next, writers, per_writer).await;
                    }
                    total
                })
            })
        });
        let stats = store.stats();
        eprintln!(
            "{name}: {} writes in {} commits ({:.1} writes per fsync)",
            stats.writes,
            stats.commits,
            stats.writes as f64 / stats.commits.max(1) as f64
        );
    }
    group.finish();
}

fn reads(c: &mut Criterion) {
    const N: u64 = 10_000;
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), 1024);
    rt.block_on(create_many(
        &store,
        &Arc::new(AtomicU64::new(0)),
        64,
        N / 64 + 1,
    ));
    let keys: Vec<String> = store
        .list("", None, 0)
        .unwrap()
        .items
        .into_iter()
        .map(|kv| kv.key)
        .take(N as usize)
        .collect();
    let mut group = c.benchmark_group("store/reads_10000_objects_1KiB");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    group.throughput(Throughput::Elements(N));
    group.bench_function("get_each", |b| {
        b.iter(|| {
            for key in &keys {
                std::hint::black_box(store.get(key).unwrap());
            }
        })
    });
    group.bench_function("list_all", |b| {
        b.iter(|| {
            let page = store.list("bench/", None, N as usize).unwrap();
            assert_eq!(page.items.len() as u64, N);
            std::hint::black_box(page)
        })
    });
    group.bench_function("list_pages_of_500", |b| {
        b.iter(|| {
            let mut after: Option<String> = None;
            let mut seen = 0;
            loop {
                let page = store.list("bench/", after.as_deref(), 500).unwrap();
                seen += page.items.len();
                if !page.more {
                    break;
                }
                after = page.items.last().map(|kv| kv.key.clone());
            }
            std::hint::black_box(seen)
        })
    });
    group.finish();
}

fn watch_fanout(c: &mut Criterion) {
    const WATCHERS: u64 = 100;
    const EVENTS: u64 = 512;
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), 1024);
    let next = Arc::new(AtomicU64::new(0));
    let mut group = c.benchmark_group("store/watch_fanout");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4));
    // Each element is one event delivered to one watcher.
    group.throughput(Throughput::Elements(WATCHERS * EVENTS));
    group.bench_function("100_watchers_512_events", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let from = store.current_revision();
                    let mut readers = Vec::new();
                    for _ in 0..WATCHERS {
                        let mut watch = store.watch("bench/", from).unwrap();
                        readers.push(tokio::spawn(async move {
                            for _ in 0..EVENTS {
                                watch.events.recv().await.unwrap().unwrap();
                            }
                        }));
                    }
                    let start = Instant::now();
                    create_many(&store, &next, 64, EVENTS / 64).await;
                    for r in readers {
                        r.await.unwrap();
                    }
                    total += start.elapsed();
                }
                total
            })
        })
    });
    group.finish();
}

criterion_group!(benches, durable_creates, reads, watch_fanout);
criterion_main!(benches);
