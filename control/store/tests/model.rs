//! Property test: random operation sequences run against the embedded store
//! and the in-memory model give the same answers, the same final listing and
//! the same event history.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Embedded, Factory, Memory, Opts, next_event};
use hami_store::{Event, Store};
use proptest::prelude::*;

const KEYS: [&str; 6] = ["a/0", "a/1", "a/2", "ab/0", "b/0", "b/1"];
const PREFIXES: [&str; 4] = ["", "a/", "a", "b/"];

#[derive(Clone, Debug)]
enum Expect {
    Any,
    Current,
    Stale(u64),
}

#[derive(Clone, Debug)]
enum Op {
    Create(usize, u8),
    Update(usize, u8, Expect),
    Delete(usize, Expect),
    Get(usize),
    List(usize, Option<usize>, usize),
}

fn expect() -> impl Strategy<Value = Expect> {
    prop_oneof![
        Just(Expect::Any),
        Just(Expect::Current),
        (0u64..30).prop_map(Expect::Stale),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    let key = 0..KEYS.len();
    prop_oneof![
        3 => (key.clone(), any::<u8>()).prop_map(|(k, v)| Op::Create(k, v)),
        3 => (key.clone(), any::<u8>(), expect()).prop_map(|(k, v, e)| Op::Update(k, v, e)),
        2 => (key.clone(), expect()).prop_map(|(k, e)| Op::Delete(k, e)),
        1 => key.clone().prop_map(Op::Get),
        1 => (0..PREFIXES.len(), proptest::option::of(key), 0usize..4)
            .prop_map(|(p, a, l)| Op::List(p, a, l)),
    ]
}

/// The expected revision to send, resolved against the model's current state.
fn resolve(model: &impl Store, key: &str, e: &Expect) -> Option<u64> {
    match e {
        Expect::Any => None,
        Expect::Current => Some(model.get(key).unwrap().map_or(0, |kv| kv.mod_revision)),
        Expect::Stale(r) => Some(*r),
    }
}

/// Apply one op to a store; the answer rendered as a comparable string.
async fn apply(s: &impl Store, op: &Op, expected: Option<u64>) -> String {
    match op {
        Op::Create(k, v) => format!("{:?}", s.create(KEYS[*k], vec![*v]).await),
        Op::Update(k, v, _) => format!("{:?}", s.update(KEYS[*k], vec![*v], expected).await),
        Op::Delete(k, _) => format!("{:?}", s.delete(KEYS[*k], expected).await),
        Op::Get(k) => format!("{:?}", s.get(KEYS[*k])),
        Op::List(p, after, limit) => {
            format!("{:?}", s.list(PREFIXES[*p], after.map(|a| KEYS[a]), *limit))
        }
    }
}

/// What a watch from `after` answers: Compacted, or the retained events.
async fn history(s: &impl Store, after: u64) -> Result<Vec<Event>, hami_store::StoreError> {
    let mut w = s.watch("", after)?;
    let mut out = Vec::new();
    for _ in after..s.current_revision() {
        out.push(next_event(&mut w).await);
    }
    Ok(out)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    #[test]
    fn embedded_matches_memory_model(
        ops in proptest::collection::vec(op(), 1..60),
        retained in prop_oneof![Just(1000u64), 0u64..12],
    ) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let opts = Opts { history: retained, watcher_capacity: 1024 };
            let model = Memory.make(opts).await;
            let emb = Embedded::new();
            let real = emb.make(opts).await;
            for (i, op) in ops.iter().enumerate() {
                let expected = match op {
                    Op::Update(k, _, e) | Op::Delete(k, e) => resolve(&model, KEYS[*k], e),
                    _ => None,
                };
                let want = apply(&model, op, expected).await;
                let got = apply(&real, op, expected).await;
                prop_assert_eq!(got, want, "op {} {:?}", i, op);
                prop_assert_eq!(real.current_revision(), model.current_revision());
            }
            prop_assert_eq!(real.list("", None, 0).unwrap(), model.list("", None, 0).unwrap());
            for after in 0..=model.current_revision() {
                prop_assert_eq!(history(&real, after).await, history(&model, after).await);
            }
            Ok(())
        })?;
    }
}
