//! What only the etcd backend has: several replicas on one etcd, etcd's own
//! revisions, compaction by someone else, etcd going away and coming back.
//! Each test runs its own etcd (skipped, saying why, without the binary
//! outside CI).
#![cfg(feature = "etcd")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::etcd::{EtcdServer, client, options, start_tls, tls};
use common::test_certs::TestPki;
use common::{Opts, brief, next, next_event};
use hami_store::{EtcdOptions, EtcdStore, Event, Store, StoreError};

async fn store(server: &EtcdServer, prefix: &str) -> EtcdStore {
    EtcdStore::connect(options(server, prefix, Opts::default()))
        .await
        .unwrap()
}

/// Polls `probe` until it holds (replicas see each other's writes through
/// their watch: soon, not at once). A liveness bound, not a timing check.
async fn eventually(what: &str, mut probe: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !probe() {
        assert!(tokio::time::Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_share_objects_and_etcd_decides_every_race() {
    let Some(server) = EtcdServer::start() else {
        return;
    };
    let a = Arc::new(store(&server, "/hami/").await);
    let b = Arc::new(store(&server, "/hami/").await);

    // A write through one replica is read by the other, same revision.
    let kv = a.create("cm/x", b"1".to_vec()).await.unwrap();
    eventually("b sees a's create", || b.get("cm/x").unwrap().is_some()).await;
    assert_eq!(b.get("cm/x").unwrap(), Some(kv.clone()));
    assert_eq!(
        b.create("cm/x", b"2".to_vec()).await,
        Err(StoreError::AlreadyExists("cm/x".into()))
    );

    // A stale expected revision loses wherever it is written.
    let moved = b
        .update("cm/x", b"2".to_vec(), Some(kv.mod_revision))
        .await
        .unwrap();
    assert_eq!(
        a.update("cm/x", b"3".to_vec(), Some(kv.mod_revision)).await,
        Err(StoreError::Conflict {
            key: "cm/x".into(),
            expected: kv.mod_revision,
            actual: moved.mod_revision
        })
    );
    // After a conflict the loser reads the winner's write (no retry storm).
    assert_eq!(a.get("cm/x").unwrap(), Some(moved));

    // Read-modify-write increments from both replicas at once lose nothing.
    a.create("counter", b"0".to_vec()).await.unwrap();
    // b reads from its watch-fed cache: one watch delivery behind a's write.
    eventually("b sees the counter", || b.get("counter").unwrap().is_some()).await;
    let mut tasks = Vec::new();
    for replica in [a.clone(), b.clone(), a.clone(), b.clone()] {
        tasks.push(tokio::spawn(async move {
            let mut conflicts = 0;
            for _ in 0..25 {
                loop {
                    let cur = match replica.get("counter").unwrap() {
                        Some(kv) => kv,
                        None => panic!("counter vanished"),
                    };
                    let n: u64 = String::from_utf8(cur.value).unwrap().parse().unwrap();
                    let next = (n + 1).to_string().into_bytes();
                    match replica
                        .update("counter", next, Some(cur.mod_revision))
                        .await
                    {
                        Ok(_) => break,
                        Err(StoreError::Conflict { .. }) => conflicts += 1,
                        Err(e) => panic!("{e}"),
                    }
                }
            }
            conflicts
        }));
    }
    let mut conflicts = 0;
    for t in tasks {
        conflicts += t.await.unwrap();
    }
    let final_value = |s: &EtcdStore| s.get("counter").unwrap().unwrap().value;
    // The last increment may be either replica's: the other sees it one
    // watch delivery later, and never a value past 100.
    eventually("a and b have the last increment", || {
        final_value(&a) == b"100".to_vec() && final_value(&b) == b"100".to_vec()
    })
    .await;
    assert_eq!(final_value(&a), b"100".to_vec(), "{conflicts} conflicts");
    println!("100 increments from 2 replicas x 2 writers: {conflicts} conflicts retried");

    // A delete through one replica leaves the other's update NotFound.
    a.delete("cm/x", None).await.unwrap();
    assert_eq!(
        b.update("cm/x", b"4".to_vec(), None).await,
        Err(StoreError::NotFound("cm/x".into()))
    );
    assert_eq!(b.get("cm/x").unwrap(), None);
}

/// What a watcher of a replica is told has changed, a read on that replica
/// answers with that change or a later one, never an older copy (the
/// embedded store's order: publish only what is readable). A controller
/// reads an object after its watch event and must not decide on the copy
/// before it (seen: the Push controller read no Cluster after its create
/// event and started no agent).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_event_is_readable_on_the_same_replica_when_it_arrives() {
    let Some(server) = EtcdServer::start() else {
        return;
    };
    let a = Arc::new(store(&server, "/hami/").await);
    // B's cache trails its watchers by 20 ms a batch (it always may: it
    // has an etcd watch of its own); reads must still see each event.
    let lagging = EtcdOptions {
        cache_lag: Duration::from_millis(20),
        ..options(&server, "/hami/", Opts::default())
    };
    let b = Arc::new(EtcdStore::connect(lagging).await.unwrap());
    let mut w = b.watch("cm/", b.current_revision()).unwrap();
    let writer = {
        let a = a.clone();
        tokio::spawn(async move {
            for i in 0..300u32 {
                let key = format!("cm/{}", i % 20);
                if a.get(&key).unwrap().is_none() {
                    let _ = a.create(&key, i.to_be_bytes().to_vec()).await;
                } else {
                    let _ = a.update(&key, i.to_be_bytes().to_vec(), None).await;
                }
            }
        })
    };
    let mut checked = 0;
    while checked < 250 {
        let event = tokio::time::timeout(Duration::from_secs(10), w.events.recv())
            .await
            .expect("events keep coming")
            .expect("the watch stays open")
            .unwrap();
        if let Event::Put { kv, .. } = &event {
            let read = b.get(&kv.key).unwrap().expect("the object the event names");
            assert!(
                read.mod_revision >= kv.mod_revision,
                "read revision {} of {} after its event at {}",
                read.mod_revision,
                kv.key,
                kv.mod_revision
            );
            checked += 1;
        }
    }
    writer.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revisions_are_etcds_and_keys_live_under_the_prefix() {
    let Some(server) = EtcdServer::start() else {
        return;
    };
    let mut raw = client(&server).await;
    let s = store(&server, "/hami/").await;
    let kv = s.create("pods/p", b"v".to_vec()).await.unwrap();
    let got = raw.get("/hami/pods/p", None).await.unwrap();
    let etcd_kv = &got.kvs()[0];
    assert_eq!(etcd_kv.value(), b"v");
    assert_eq!(etcd_kv.mod_revision() as u64, kv.mod_revision);
    assert_eq!(got.header().unwrap().revision() as u64, kv.mod_revision);

    // Writes outside the prefix move etcd's revision; the store's next write
    // gets etcd's next revision, and never sees the foreign keys.
    let foreign = raw.put("/other/x", "1", None).await.unwrap();
    let foreign_rev = foreign.header().unwrap().revision() as u64;
    raw.put("/hami", "no trailing slash: not ours", None)
        .await
        .unwrap();
    let next = s.update("pods/p", b"w".to_vec(), None).await.unwrap();
    assert_eq!(next.mod_revision, foreign_rev + 2);
    assert_eq!(next.create_revision, kv.create_revision);
    let listed = s.list("", None, 0).unwrap();
    assert_eq!(listed.items.len(), 1);
    assert_eq!(listed.revision, next.mod_revision);

    // Someone else's write under the prefix shows up like the store's own.
    let mut w = s.watch("pods/", next.mod_revision).unwrap();
    raw.put("/hami/pods/q", "from etcdctl", None).await.unwrap();
    match next_event(&mut w).await {
        Event::Put { kv, prev: None } => assert_eq!(kv.key, "pods/q"),
        other => panic!("unexpected {other:?}"),
    }
    eventually("q in the list", || s.get("pods/q").unwrap().is_some()).await;

    // A second store under another prefix shares etcd, not the keys.
    let other = store(&server, "/tenant-b/").await;
    assert!(other.list("", None, 0).unwrap().items.is_empty());
    other.create("pods/p", b"b".to_vec()).await.unwrap();
    assert_eq!(s.get("pods/p").unwrap().unwrap().value, b"w".to_vec());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compaction_by_someone_else_answers_too_old() {
    let Some(server) = EtcdServer::start() else {
        return;
    };
    let mut raw = client(&server).await;
    let s = store(&server, "/hami/").await;
    let r0 = s.current_revision();
    let mut last = 0;
    for i in 0..10 {
        last = s
            .create(&format!("k{i}"), vec![])
            .await
            .unwrap()
            .mod_revision;
    }
    // Another replica (here: etcdctl) compacts; this store has not heard.
    raw.compact(last as i64 - 2, None).await.unwrap();
    let mut w = s.watch("", r0).unwrap();
    assert_eq!(
        next(&mut w).await,
        Some(Err(StoreError::Compacted {
            requested: r0,
            oldest: last - 2
        }))
    );
    assert!(next(&mut w).await.is_none());
    // Now it knows: the next too-old watch fails at once.
    assert_eq!(
        s.watch("", r0).err(),
        Some(StoreError::Compacted {
            requested: r0,
            oldest: last - 2
        })
    );
    // From the compaction revision on, the history is whole.
    let mut w = s.watch("", last - 3).unwrap();
    let revs = [
        next_event(&mut w).await.revision(),
        next_event(&mut w).await.revision(),
        next_event(&mut w).await.revision(),
    ];
    assert_eq!(revs, [last - 2, last - 1, last]);
    // The store's own compaction keeps `history` revisions and says where;
    // behind someone else's compaction it has nothing to do.
    let s = EtcdStore::connect(EtcdOptions {
        history: 4,
        ..options(&server, "/hami/", Opts::default())
    })
    .await
    .unwrap();
    assert_eq!(s.compact().await.unwrap(), None);
    let s = EtcdStore::connect(EtcdOptions {
        history: 2,
        ..options(&server, "/hami/", Opts::default())
    })
    .await
    .unwrap();
    assert_eq!(s.compact().await.unwrap(), Some(last - 1));
    assert_eq!(s.compact().await.unwrap(), None);
    assert!(matches!(
        s.watch("", last - 3),
        Err(StoreError::Compacted { oldest, .. }) if oldest == last - 1
    ));
    assert_eq!(s.list("", None, 0).unwrap().items.len(), 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_down_is_unavailable_and_the_store_recovers() {
    let Some(mut server) = EtcdServer::start() else {
        return;
    };
    let s = EtcdStore::connect(EtcdOptions {
        request_timeout: Duration::from_secs(2),
        ..options(&server, "/hami/", Opts::default())
    })
    .await
    .unwrap();
    let kv = s.create("a", b"1".to_vec()).await.unwrap();
    let mut w = s.watch("", kv.mod_revision).unwrap();

    server.kill();
    // Writes fail as Unavailable (within the request timeout), watches end
    // with it; reads still answer from the cache.
    assert!(matches!(
        s.create("b", vec![]).await,
        Err(StoreError::Unavailable(_))
    ));
    let ended = next(&mut w).await;
    assert!(
        matches!(ended, Some(Err(StoreError::Unavailable(_)))),
        "{ended:?}"
    );
    assert!(next(&mut w).await.is_none());
    assert_eq!(s.get("a").unwrap(), Some(kv.clone()));

    // etcd comes back with its data: the same store writes and watches
    // again, revisions going on from etcd's.
    server.restart();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let b = loop {
        match s.create("b", b"2".to_vec()).await {
            Ok(b) => break b,
            Err(StoreError::Unavailable(_)) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await
            }
            Err(e) => panic!("{e}"),
        }
    };
    assert_eq!(b.mod_revision, kv.mod_revision + 1);
    assert_eq!(s.get("b").unwrap(), Some(b.clone()));
    let mut w = s.watch("", kv.mod_revision).unwrap();
    assert_eq!(next_event(&mut w).await.revision(), b.mod_revision);

    // A fresh replica (a restarted control plane) loads everything back.
    let fresh = store(&server, "/hami/").await;
    assert_eq!(
        fresh.list("", None, 0).unwrap(),
        s.list("", None, 0).unwrap()
    );
    assert_eq!(fresh.current_revision(), b.mod_revision);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_etcd_is_unavailable_and_bad_options_are_refused() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let options = EtcdOptions {
        endpoints: vec![format!("http://127.0.0.1:{port}")],
        request_timeout: Duration::from_secs(1),
        ..EtcdOptions::default()
    };
    let err = EtcdStore::connect(options.clone()).await.err();
    assert!(matches!(err, Some(StoreError::Unavailable(_))), "{err:?}");
    let empty_prefix = EtcdOptions {
        prefix: String::new(),
        ..options.clone()
    };
    assert!(matches!(
        EtcdStore::connect(empty_prefix).await.err(),
        Some(StoreError::Backend(m)) if m.contains("prefix")
    ));
    let no_endpoints = EtcdOptions {
        endpoints: Vec::new(),
        ..options
    };
    assert!(matches!(
        EtcdStore::connect(no_endpoints).await.err(),
        Some(StoreError::Backend(m)) if m.contains("endpoints")
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_ends_watches_and_refuses_calls() {
    let Some(server) = EtcdServer::start() else {
        return;
    };
    let s = store(&server, "/hami/").await;
    s.create("a", vec![]).await.unwrap();
    let mut w = s.watch("", s.current_revision()).unwrap();
    s.close();
    assert!(next(&mut w).await.is_none());
    assert_eq!(s.create("b", vec![]).await, Err(StoreError::Closed));
    assert_eq!(s.get("a"), Err(StoreError::Closed));
    assert!(matches!(s.watch("", 0), Err(StoreError::Closed)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_leader_at_a_time_handed_over_on_resign_and_on_death() {
    let Some(server) = EtcdServer::start() else {
        return;
    };
    let mut raw = client(&server).await;
    let a = Arc::new(store(&server, "/hami/").await);
    let b = Arc::new(store(&server, "/hami/").await);
    let ttl = Duration::from_secs(2);
    let within = |secs| Duration::from_secs(secs);

    let first = a.campaign("controllers", "replica-a", ttl).await.unwrap();
    let leader = raw.get("/hami-leader/controllers", None).await.unwrap();
    assert_eq!(leader.kvs()[0].value(), b"replica-a");
    assert_eq!(leader.kvs()[0].lease(), first.lease_id());
    // The key is not one of the store's.
    assert!(a.list("", None, 0).unwrap().items.is_empty());

    // b waits while a leads (renewing past its TTL), and leads once a resigns.
    let waiting = {
        let b = b.clone();
        tokio::spawn(async move { b.campaign("controllers", "replica-b", ttl).await })
    };
    tokio::time::sleep(ttl + Duration::from_secs(1)).await;
    assert!(!waiting.is_finished(), "two leaders at once");
    assert!(!first.is_lost());
    first.resign().await.unwrap();
    let second = tokio::time::timeout(within(10), waiting)
        .await
        .expect("b not elected after a resigned")
        .unwrap()
        .unwrap();

    // A leader that dies (stops renewing) is replaced once its lease expires.
    let third = {
        let a = a.clone();
        tokio::spawn(async move { a.campaign("controllers", "replica-a", ttl).await })
    };
    drop(second);
    let third = tokio::time::timeout(within(15), third)
        .await
        .expect("a not elected after b died")
        .unwrap()
        .unwrap();

    // A leader whose key is taken away knows it has lost.
    raw.delete("/hami-leader/controllers", None).await.unwrap();
    tokio::time::timeout(within(10), third.lost())
        .await
        .expect("leadership loss not noticed");
    assert!(third.is_lost());
    // Another name is another election.
    let other = b.campaign("other", "replica-b", ttl).await.unwrap();
    assert!(!other.is_lost());
}

/// etcd in TLS mode (`--cert-file`, `--key-file`, `--trusted-ca-file`,
/// `--client-cert-auth`): the store with the CA and a client certificate
/// creates, reads, lists, updates, deletes and watches as over plain HTTP,
/// and holds the leader lease; a client without a certificate, one that
/// does not trust etcd's CA, and an https endpoint without a CA are refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_tls_with_client_certificates() {
    let Some((server, pki)) = start_tls(true) else {
        return;
    };
    assert!(
        server.endpoint.starts_with("https://"),
        "{}",
        server.endpoint
    );
    let settings = |tls| EtcdOptions {
        tls,
        request_timeout: Duration::from_secs(3),
        ..options(&server, "/hami/", Opts::default())
    };
    let s = EtcdStore::connect(settings(Some(tls(&pki, true))))
        .await
        .unwrap();
    let r0 = s.current_revision();
    let mut w = s.watch("cm/", r0).unwrap();
    let a = s.create("cm/a", b"1".to_vec()).await.unwrap();
    assert_eq!(a.mod_revision, r0 + 1);
    assert_eq!(s.get("cm/a").unwrap(), Some(a.clone()));
    s.create("cm/b", b"2".to_vec()).await.unwrap();
    assert_eq!(
        s.create("cm/a", b"x".to_vec()).await,
        Err(StoreError::AlreadyExists("cm/a".into()))
    );
    let listed = s.list("cm/", None, 0).unwrap();
    assert_eq!(listed.items.len(), 2);
    assert_eq!(listed.revision, r0 + 2);
    let a2 = s
        .update("cm/a", b"3".to_vec(), Some(a.mod_revision))
        .await
        .unwrap();
    assert_eq!((a2.create_revision, a2.mod_revision), (r0 + 1, r0 + 3));
    let (_, deleted) = s.delete("cm/b", None).await.unwrap();
    assert_eq!(deleted, r0 + 4);
    let mut seen = Vec::new();
    for _ in 0..4 {
        seen.push(brief(&next_event(&mut w).await));
    }
    assert_eq!(
        seen,
        vec![
            (r0 + 1, "cm/a".to_owned(), false),
            (r0 + 2, "cm/b".to_owned(), false),
            (r0 + 3, "cm/a".to_owned(), false),
            (r0 + 4, "cm/b".to_owned(), true),
        ]
    );
    // A second replica over TLS loads the same objects; leadership works.
    let b = EtcdStore::connect(settings(Some(tls(&pki, true))))
        .await
        .unwrap();
    assert_eq!(b.list("", None, 0).unwrap(), s.list("", None, 0).unwrap());
    let lead = b
        .campaign("controllers", "replica-b", Duration::from_secs(2))
        .await
        .unwrap();
    lead.resign().await.unwrap();

    // No client certificate: etcd closes the connection (Go says no more).
    let err = EtcdStore::connect(settings(Some(tls(&pki, false))))
        .await
        .err();
    assert!(matches!(err, Some(StoreError::Unavailable(_))), "{err:?}");
    // etcd's certificate from a CA the client does not trust.
    let other = TestPki::new("other");
    let err = EtcdStore::connect(settings(Some(tls(&other, true))))
        .await
        .err();
    assert!(
        matches!(&err, Some(StoreError::Unavailable(m)) if m.contains("UnknownIssuer")),
        "{err:?}"
    );
    // An https endpoint without a CA is refused before dialing.
    let err = EtcdStore::connect(settings(None)).await.err();
    assert!(
        matches!(&err, Some(StoreError::Backend(m)) if m.contains("--etcd-cafile")),
        "{err:?}"
    );
    // A plain client on etcd's TLS port gets nothing.
    let plain = EtcdOptions {
        endpoints: vec![server.endpoint.replace("https://", "http://")],
        ..settings(None)
    };
    let err = EtcdStore::connect(plain).await.err();
    assert!(matches!(err, Some(StoreError::Unavailable(_))), "{err:?}");
}
