//! The embedded store across restarts, group commit, and shutdown.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;

use common::{Opts, embedded_options, next_event};
use hami_store::{EmbeddedOptions, EmbeddedStore, Event, Store, StoreError};

fn open(dir: &std::path::Path, history: u64) -> EmbeddedStore {
    EmbeddedStore::open(
        dir,
        embedded_options(Opts {
            history,
            ..Opts::default()
        }),
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn everything_survives_a_restart_and_watches_resume() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let (before, events) = {
        let s = open(&dir, 50);
        let mut all = s.watch("", 0).unwrap();
        for i in 0..30 {
            s.create(&format!("o/{i:02}"), format!("v{i}").into_bytes())
                .await
                .unwrap();
        }
        for i in 0..10 {
            s.update(&format!("o/{i:02}"), b"updated".to_vec(), None)
                .await
                .unwrap();
        }
        for i in 20..25 {
            s.delete(&format!("o/{i:02}"), None).await.unwrap();
        }
        assert_eq!(s.current_revision(), 45);
        let mut events = Vec::new();
        for _ in 0..45 {
            events.push(next_event(&mut all).await);
        }
        (s.list("", None, 0).unwrap(), events)
    };
    assert!(dir.join(hami_store::embedded::FILE_NAME).exists());

    let s = open(&dir, 50);
    assert_eq!(s.current_revision(), 45);
    let after = s.list("", None, 0).unwrap();
    assert_eq!(after, before);
    assert_eq!(after.items.len(), 25);
    let o5 = s.get("o/05").unwrap().unwrap();
    assert_eq!((o5.create_revision, o5.mod_revision), (6, 36));

    // A watch from an old but retained revision replays exactly what happened.
    let mut w = s.watch("", 20).unwrap();
    for expected in &events[20..] {
        assert_eq!(&next_event(&mut w).await, expected);
    }
    // The revision continues, and the live stream follows the replay.
    let next = s.create("o/new", b"x".to_vec()).await.unwrap();
    assert_eq!(next.mod_revision, 46);
    assert_eq!(next_event(&mut w).await.revision(), 46);
    drop(s);

    // With a shorter history, what was trimmed answers Compacted after reopen.
    let s = open(&dir, 10);
    s.create("o/trim", b"x".to_vec()).await.unwrap(); // 47 trims the log to > 37
    assert!(matches!(
        s.watch("", 20),
        Err(StoreError::Compacted {
            requested: 20,
            oldest: 38
        })
    ));
    drop(s);
    let s = open(&dir, 10);
    assert!(matches!(s.watch("", 36), Err(StoreError::Compacted { .. })));
    let mut w = s.watch("", 37).unwrap();
    assert_eq!(next_event(&mut w).await.revision(), 38);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writes_share_commits() {
    let tmp = tempfile::tempdir().unwrap();
    let s = Arc::new(open(tmp.path(), 1000));
    let mut tasks = Vec::new();
    for t in 0..64 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..10 {
                s.create(&format!("t{t}/{i}"), vec![0; 100]).await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let stats = s.stats();
    assert_eq!(stats.writes, 640);
    assert!(stats.commits < stats.writes, "{stats:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_batch_one_commits_each_write_alone() {
    let tmp = tempfile::tempdir().unwrap();
    let options = EmbeddedOptions {
        max_batch: 1,
        ..embedded_options(Opts::default())
    };
    let s = Arc::new(EmbeddedStore::open(tmp.path(), options).unwrap());
    let mut tasks = Vec::new();
    for t in 0..8 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..5 {
                s.create(&format!("t{t}/{i}"), vec![]).await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(s.stats().commits, 40);
    assert_eq!(s.stats().writes, 40);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_precondition_fails_only_its_own_request_in_a_group() {
    let tmp = tempfile::tempdir().unwrap();
    let s = Arc::new(open(tmp.path(), 1000));
    s.create("shared", b"0".to_vec()).await.unwrap();
    // Many writers race to update the same key at revision 1: exactly one wins,
    // the rest conflict, and every distinct create alongside them lands.
    let mut tasks = Vec::new();
    for t in 0..32 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            let update = s.update("shared", format!("{t}").into_bytes(), Some(1));
            let own = format!("own/{t}");
            let create = s.create(&own, vec![]);
            let (u, c) = tokio::join!(update, create);
            (u.is_ok(), c.unwrap().mod_revision)
        }));
    }
    let mut wins = 0;
    let mut revisions = Vec::new();
    for t in tasks {
        let (won, rev) = t.await.unwrap();
        wins += usize::from(won);
        revisions.push(rev);
    }
    assert_eq!(wins, 1);
    assert_eq!(s.current_revision(), 1 + 1 + 32);
    revisions.sort_unstable();
    revisions.dedup();
    assert_eq!(revisions.len(), 32);
    assert_eq!(s.list("own/", None, 0).unwrap().items.len(), 32);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_ends_watches_and_refuses_writes() {
    let tmp = tempfile::tempdir().unwrap();
    let s = open(tmp.path(), 1000);
    let mut w = s.watch("", 0).unwrap();
    s.create("a", vec![]).await.unwrap();
    s.close();
    assert!(matches!(next_event(&mut w).await, Event::Put { .. }));
    assert!(common::next(&mut w).await.is_none());
    assert_eq!(s.create("b", vec![]).await, Err(StoreError::Closed));
    assert!(matches!(s.watch("", 0), Err(StoreError::Closed)));
    // Reads still answer from the file.
    assert!(s.get("a").unwrap().is_some());
    assert_eq!(s.watcher_count(), 0);
}

#[test]
fn a_second_open_of_the_same_file_is_an_error() {
    let tmp = tempfile::tempdir().unwrap();
    let _first = open(tmp.path(), 10);
    let second = EmbeddedStore::open(tmp.path(), EmbeddedOptions::default());
    assert!(matches!(second, Err(StoreError::Backend(_))));
}
