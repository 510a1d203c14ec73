//! Crash safety: a child process (this test binary, re-run in a child role)
//! writes keys and prints each acknowledged revision; the parent SIGKILLs it
//! mid-stream, reopens the store and checks that every acknowledged write is
//! there with its revision and that revisions never go backwards. Twice, so
//! the second child also continues from a crashed store.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;

use hami_store::{EmbeddedOptions, EmbeddedStore, Store};

const DIR_ENV: &str = "HAMI_STORE_CRASH_DIR";
const ROUND_ENV: &str = "HAMI_STORE_CRASH_ROUND";
const WRITERS: usize = 16;

/// The child role: runs only when the parent starts it (it is ignored in a
/// normal run). Writes until killed, printing `ACK key revision` per write.
#[test]
#[ignore = "child process of crash_after_acknowledgements"]
fn crash_child() {
    let dir = std::env::var(DIR_ENV).expect("run by crash_after_acknowledgements");
    let round = std::env::var(ROUND_ENV).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async move {
        let store =
            Arc::new(EmbeddedStore::open(dir.as_ref(), EmbeddedOptions::default()).unwrap());
        let mut tasks = Vec::new();
        for w in 0..WRITERS {
            let store = store.clone();
            let round = round.clone();
            tasks.push(tokio::spawn(async move {
                for i in 0.. {
                    let key = format!("r{round}/w{w:02}/{i:06}");
                    let kv = store.create(&key, vec![b'x'; 256]).await.unwrap();
                    println!("ACK {key} {}", kv.mod_revision);
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
    });
}

/// Start a child, read `acks` acknowledgements, SIGKILL it; return what it acked.
fn run_child_and_kill(dir: &std::path::Path, round: u32, acks: usize) -> BTreeMap<String, u64> {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "crash_child",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(DIR_ENV, dir)
        .env(ROUND_ENV, round.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut acked = BTreeMap::new();
    let mut lines = BufReader::new(stdout).lines();
    while acked.len() < acks {
        let line = lines
            .next()
            .expect("child stopped before enough acknowledgements")
            .unwrap();
        if let Some(rest) = line.strip_prefix("ACK ") {
            let (key, rev) = rest.split_once(' ').unwrap();
            acked.insert(key.to_owned(), rev.parse::<u64>().unwrap());
        }
    }
    child.kill().unwrap(); // SIGKILL on Unix
    child.wait().unwrap();
    // Acks already printed but not yet read count too: they were acknowledged.
    // Each line reaches the pipe in one write (under PIPE_BUF), so none is torn.
    for line in lines.map_while(Result::ok) {
        if let Some((key, rev)) = line.strip_prefix("ACK ").and_then(|r| r.split_once(' '))
            && let Ok(rev) = rev.parse::<u64>()
        {
            acked.insert(key.to_owned(), rev);
        }
    }
    acked
}

#[test]
fn crash_after_acknowledgements() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let mut floor = 0;
    for round in 0..2 {
        let acked = run_child_and_kill(&dir, round, 2000);
        let store = EmbeddedStore::open(&dir, EmbeddedOptions::default()).unwrap();
        let max_acked = *acked.values().max().unwrap();
        assert!(
            acked.values().all(|&rev| rev > floor),
            "round {round}: a revision went backwards below {floor}"
        );
        for (key, &rev) in &acked {
            let kv = store
                .get(key)
                .unwrap()
                .unwrap_or_else(|| panic!("acknowledged {key} at {rev} is lost"));
            assert_eq!((kv.create_revision, kv.mod_revision), (rev, rev), "{key}");
        }
        let current = store.current_revision();
        assert!(current >= max_acked, "{current} < {max_acked}");
        // Every revision up to the current one is accounted for by exactly one key.
        let all = store.list("", None, 0).unwrap();
        assert_eq!(all.revision, current);
        assert_eq!(all.items.len() as u64, current);
        floor = current;
    }
}
