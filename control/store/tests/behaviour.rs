//! One behavioural suite, run against every backend: the in-memory model,
//! the durable embedded store and (with the `etcd` feature) etcd must behave
//! identically. Revisions are counted from the store's first one, `r0`: 0
//! for the local backends, etcd's current revision for a fresh etcd (its
//! revisions are global and start at 1).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Factory, Opts, brief, next, next_event};
use hami_store::{Event, Store, StoreError};

fn v(s: &str) -> Vec<u8> {
    s.as_bytes().to_vec()
}

async fn revisions_increase_by_one<F: Factory>(f: F) {
    let s = f.make(Opts::default()).await;
    let r0 = s.current_revision();
    let a = s.create("a", v("1")).await.unwrap();
    let b = s.create("b", v("1")).await.unwrap();
    assert_eq!((a.mod_revision, b.mod_revision), (r0 + 1, r0 + 2));
    // Failed writes consume no revision.
    assert!(s.create("a", v("x")).await.is_err());
    assert!(s.update("zz", v("x"), None).await.is_err());
    let a2 = s.update("a", v("2"), None).await.unwrap();
    assert_eq!((a2.create_revision, a2.mod_revision), (r0 + 1, r0 + 3));
    let (_, del) = s.delete("b", None).await.unwrap();
    assert_eq!(del, r0 + 4);
    assert_eq!(s.current_revision(), r0 + 4);
    let c = s.create("c", v("1")).await.unwrap();
    assert_eq!(c.mod_revision, r0 + 5);
}

async fn create_conflicts<F: Factory>(f: F) {
    let s = f.make(Opts::default()).await;
    let r0 = s.current_revision();
    s.create("k", v("first")).await.unwrap();
    assert_eq!(
        s.create("k", v("second")).await,
        Err(StoreError::AlreadyExists("k".into()))
    );
    let got = s.get("k").unwrap().unwrap();
    assert_eq!((got.value, got.mod_revision), (v("first"), r0 + 1));
    assert_eq!(s.get("missing").unwrap(), None);
}

async fn update_preconditions<F: Factory>(f: F) {
    let s = f.make(Opts::default()).await;
    let r0 = s.current_revision();
    assert_eq!(
        s.update("k", v("x"), None).await,
        Err(StoreError::NotFound("k".into()))
    );
    assert_eq!(
        s.update("k", v("x"), Some(r0)).await,
        Err(StoreError::NotFound("k".into()))
    );
    s.create("k", v("0")).await.unwrap();
    let u = s.update("k", v("1"), Some(r0 + 1)).await.unwrap();
    assert_eq!(u.mod_revision, r0 + 2);
    assert_eq!(
        s.update("k", v("stale"), Some(r0 + 1)).await,
        Err(StoreError::Conflict {
            key: "k".into(),
            expected: r0 + 1,
            actual: r0 + 2
        })
    );
    assert_eq!(s.get("k").unwrap().unwrap().value, v("1"));
    let u = s.update("k", v("2"), None).await.unwrap();
    assert_eq!((u.create_revision, u.mod_revision), (r0 + 1, r0 + 3));
    assert_eq!(s.get("k").unwrap(), Some(u));
}

async fn delete_preconditions<F: Factory>(f: F) {
    let s = f.make(Opts::default()).await;
    let r0 = s.current_revision();
    assert_eq!(
        s.delete("k", None).await,
        Err(StoreError::NotFound("k".into()))
    );
    s.create("k", v("0")).await.unwrap();
    s.update("k", v("1"), None).await.unwrap();
    assert_eq!(
        s.delete("k", Some(r0 + 1)).await,
        Err(StoreError::Conflict {
            key: "k".into(),
            expected: r0 + 1,
            actual: r0 + 2
        })
    );
    assert!(s.get("k").unwrap().is_some());
    let (prev, rev) = s.delete("k", Some(r0 + 2)).await.unwrap();
    assert_eq!(
        (prev.value, prev.mod_revision, rev),
        (v("1"), r0 + 2, r0 + 3)
    );
    assert_eq!(s.get("k").unwrap(), None);
    assert_eq!(
        s.delete("k", Some(r0 + 2)).await,
        Err(StoreError::NotFound("k".into()))
    );
    let again = s.create("k", v("new")).await.unwrap();
    assert_eq!(
        (again.create_revision, again.mod_revision),
        (r0 + 4, r0 + 4)
    );
}

async fn list_by_prefix_with_pages<F: Factory>(f: F) {
    let s = f.make(Opts::default()).await;
    let r0 = s.current_revision();
    for k in ["a/3", "b/1", "a/1", "ab/1", "a/5", "a/2", "a/4", "a"] {
        s.create(k, v(k)).await.unwrap();
    }
    let keys =
        |r: &hami_store::ListResult| r.items.iter().map(|i| i.key.clone()).collect::<Vec<_>>();
    let all = s.list("a/", None, 0).unwrap();
    assert_eq!(keys(&all), ["a/1", "a/2", "a/3", "a/4", "a/5"]);
    assert!(!all.more);
    assert_eq!(all.revision, r0 + 8);
    assert_eq!(all.items[2].value, v("a/3"));
    assert_eq!(all.items[2].create_revision, r0 + 1);

    let p1 = s.list("a/", None, 2).unwrap();
    assert_eq!(
        (keys(&p1), p1.more),
        (vec!["a/1".into(), "a/2".into()], true)
    );
    let p2 = s.list("a/", Some("a/2"), 2).unwrap();
    assert_eq!(
        (keys(&p2), p2.more),
        (vec!["a/3".into(), "a/4".into()], true)
    );
    let p3 = s.list("a/", Some("a/4"), 2).unwrap();
    assert_eq!((keys(&p3), p3.more), (vec!["a/5".into()], false));
    // A limit that exactly fits the rest reports no more.
    let exact = s.list("a/", Some("a/3"), 2).unwrap();
    assert_eq!(
        (keys(&exact), exact.more),
        (vec!["a/4".into(), "a/5".into()], false)
    );
    // start_after before the prefix starts at the prefix; past it, nothing.
    assert_eq!(keys(&s.list("a/", Some("a"), 0).unwrap()).len(), 5);
    assert!(s.list("a/", Some("a/9"), 0).unwrap().items.is_empty());
    assert_eq!(keys(&s.list("", None, 0).unwrap()).len(), 8);
    assert!(s.list("zz", None, 0).unwrap().items.is_empty());
    s.delete("a/3", None).await.unwrap();
    let after = s.list("a/", None, 0).unwrap();
    assert_eq!((after.items.len(), after.revision), (4, r0 + 9));
}

async fn watch_from_zero_middle_and_current<F: Factory>(f: F) {
    let s = f.make(Opts::default()).await;
    let r0 = s.current_revision();
    let r = |n: u64| r0 + n;
    s.create("a/1", v("1")).await.unwrap(); // 1
    s.create("b/1", v("1")).await.unwrap(); // 2
    s.update("a/1", v("2"), None).await.unwrap(); // 3
    s.create("a/2", v("1")).await.unwrap(); // 4

    let mut from_zero = s.watch("a/", 0).unwrap();
    let mut from_middle = s.watch("a/", r(2)).unwrap();
    let mut from_now = s.watch("a/", s.current_revision()).unwrap();
    let mut all = s.watch("", 0).unwrap();

    s.delete("a/2", None).await.unwrap(); // 5
    s.create("b/2", v("1")).await.unwrap(); // 6
    s.create("a/3", v("1")).await.unwrap(); // 7

    let mut got = Vec::new();
    for _ in 0..5 {
        got.push(next_event(&mut from_zero).await.revision());
    }
    assert_eq!(got, [r(1), r(3), r(4), r(5), r(7)]);
    let mut got = Vec::new();
    for _ in 0..4 {
        got.push(next_event(&mut from_middle).await.revision());
    }
    assert_eq!(got, [r(3), r(4), r(5), r(7)]);
    let mut got = Vec::new();
    for _ in 0..2 {
        got.push(next_event(&mut from_now).await.revision());
    }
    assert_eq!(got, [r(5), r(7)]);
    let mut got = Vec::new();
    for _ in 0..7 {
        got.push(next_event(&mut all).await.revision());
    }
    assert_eq!(got, (1..=7).map(r).collect::<Vec<_>>());

    // The update carries its previous value.
    let mut w = s.watch("a/1", r(2)).unwrap();
    match next_event(&mut w).await {
        Event::Put {
            kv,
            prev: Some(prev),
        } => {
            assert_eq!(
                (kv.value, prev.value, prev.mod_revision),
                (v("2"), v("1"), r(1))
            );
        }
        other => panic!("unexpected {other:?}"),
    }
    // A watch may start in the future: nothing at or below `after` arrives.
    let mut future = s.watch("", r(8)).unwrap();
    s.create("x", v("1")).await.unwrap(); // 8
    s.create("y", v("1")).await.unwrap(); // 9
    assert_eq!(next_event(&mut future).await.revision(), r(9));
}

async fn watch_sees_delete_and_recreate<F: Factory>(f: F) {
    let s = f.make(Opts::default()).await;
    let r0 = s.current_revision();
    let mut w = s.watch("k", r0).unwrap();
    s.create("k", v("1")).await.unwrap();
    s.delete("k", None).await.unwrap();
    s.create("k", v("2")).await.unwrap();
    let events = [
        next_event(&mut w).await,
        next_event(&mut w).await,
        next_event(&mut w).await,
    ];
    assert!(matches!(&events[0], Event::Put { prev: None, kv } if kv.mod_revision == r0 + 1));
    match &events[1] {
        Event::Delete { prev, revision } => {
            assert_eq!(
                (prev.value.as_slice(), prev.mod_revision, *revision),
                (&b"1"[..], r0 + 1, r0 + 2)
            );
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(matches!(&events[2], Event::Put { prev: None, kv } if kv.create_revision == r0 + 3));
    // The same events replay from history after the fact.
    let mut replay = s.watch("k", r0).unwrap();
    for e in &events {
        assert_eq!(&next_event(&mut replay).await, e);
    }
}

async fn compacted_when_too_old<F: Factory>(f: F) {
    let s = f
        .make(Opts {
            history: 5,
            ..Opts::default()
        })
        .await;
    let r0 = s.current_revision();
    for i in 0..10 {
        s.create(&format!("k{i}"), v("x")).await.unwrap();
    }
    f.trim_history(&s).await;
    for after in [0, r0 + 3, r0 + 4] {
        assert_eq!(
            s.watch("", after).err(),
            Some(StoreError::Compacted {
                requested: after,
                oldest: r0 + 6
            })
        );
    }
    let mut w = s.watch("", r0 + 5).unwrap();
    let mut got = Vec::new();
    for _ in 0..5 {
        got.push(brief(&next_event(&mut w).await));
    }
    assert_eq!(got.first().unwrap().0, r0 + 6);
    assert_eq!(got.last().unwrap(), &(r0 + 10, "k9".to_string(), false));
    // Listing is unaffected by compaction of the event history.
    assert_eq!(s.list("", None, 0).unwrap().items.len(), 10);
}

async fn slow_watcher_dropped_without_blocking_writes<F: Factory>(f: F) {
    let s = f
        .make(Opts {
            history: 1000,
            watcher_capacity: 4,
        })
        .await;
    let r0 = s.current_revision();
    let mut slow = s.watch("", r0).unwrap();
    let mut fast = s.watch("", r0).unwrap();
    // The fast watcher reads each event as it comes; the slow one never reads.
    let writes = async {
        for i in 0..50u64 {
            s.create(&format!("k{i}"), v("x")).await.unwrap();
            assert_eq!(next_event(&mut fast).await.revision(), r0 + i + 1);
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(30), writes)
        .await
        .expect("writes blocked behind a slow watcher");
    // The slow one got a few events, then the reason, then the end.
    let mut received = 0;
    loop {
        match next(&mut slow).await {
            Some(Ok(_)) => received += 1,
            Some(Err(e)) => {
                assert_eq!(e, StoreError::WatcherTooSlow);
                break;
            }
            None => panic!("closed without WatcherTooSlow"),
        }
    }
    assert!(received < 50, "received {received}");
    assert!(next(&mut slow).await.is_none());
}

async fn concurrent_writers_get_distinct_revisions<F: Factory>(f: F) {
    let s = std::sync::Arc::new(f.make(Opts::default()).await);
    let r0 = s.current_revision();
    let mut tasks = Vec::new();
    for t in 0..16 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            let mut revs = Vec::new();
            for i in 0..20 {
                revs.push(
                    s.create(&format!("t{t}/{i}"), v("x"))
                        .await
                        .unwrap()
                        .mod_revision,
                );
            }
            revs
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        let revs = t.await.unwrap();
        assert!(revs.windows(2).all(|w| w[0] < w[1]), "per-writer order");
        all.extend(revs);
    }
    all.sort_unstable();
    assert_eq!(all, (r0 + 1..=r0 + 320).collect::<Vec<u64>>());
    assert_eq!(s.current_revision(), r0 + 320);
}

macro_rules! suite {
    ($($case:ident),* $(,)?) => {
        mod memory {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    super::$case(super::common::Memory).await;
                }
            )*
        }
        mod embedded {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    super::$case(super::common::Embedded::new()).await;
                }
            )*
        }
        /// Each case on an etcd server of its own (skipped, saying why,
        /// without the etcd binary outside CI).
        #[cfg(feature = "etcd")]
        mod etcd {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let Some(etcd) = super::common::etcd::Etcd::start().await else {
                        return;
                    };
                    super::$case(etcd).await;
                }
            )*
        }
        /// The same over TLS, client certificates required.
        #[cfg(feature = "etcd")]
        mod etcd_tls {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let Some(etcd) = super::common::etcd::Etcd::start_tls().await else {
                        return;
                    };
                    super::$case(etcd).await;
                }
            )*
        }
    };
}

suite!(
    revisions_increase_by_one,
    create_conflicts,
    update_preconditions,
    delete_preconditions,
    list_by_prefix_with_pages,
    watch_from_zero_middle_and_current,
    watch_sees_delete_and_recreate,
    compacted_when_too_old,
    slow_watcher_dropped_without_blocking_writes,
    concurrent_writers_get_distinct_revisions,
);
