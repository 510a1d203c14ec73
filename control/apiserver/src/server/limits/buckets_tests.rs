//! The accounting under a hand-driven clock: no sleeping, no timing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;

fn settings() -> Settings {
    Settings {
        rate: 10.0,
        burst: 5.0,
        max_in_flight: 3,
        max_watches: 2,
        max_users: 0,
        idle_sweep: Duration::from_secs(60),
    }
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Admits `n` requests of `class` at `now` then releases them (so only the
/// bucket is exercised); returns how many were admitted.
fn burst(b: &mut Buckets, user: &str, n: usize, now: Instant) -> usize {
    let mut admitted = 0;
    for _ in 0..n {
        if b.admit(user, Class::Request, now).is_ok() {
            b.release(user, Class::Request);
            admitted += 1;
        }
    }
    admitted
}

#[test]
fn a_full_bucket_admits_burst_then_refuses_with_retry_after() {
    let t0 = Instant::now();
    let mut b = Buckets::new(settings(), t0);
    assert_eq!(burst(&mut b, "a", 5, t0), 5);
    let refused = b.admit("a", Class::Request, t0).unwrap_err();
    assert_eq!(
        refused,
        Refusal::Rate {
            retry_after_secs: 1
        }
    );
    assert_eq!(refused.reason(), "rate");
    assert_eq!(refused.retry_after_secs(), 1);
    // Refusals take nothing: nothing is held.
    assert_eq!(b.held("a"), (0, 0));
}

#[test]
fn the_bucket_refills_at_the_rate_and_never_past_burst() {
    let t0 = Instant::now();
    let mut b = Buckets::new(settings(), t0);
    assert_eq!(burst(&mut b, "a", 5, t0), 5);
    // 10/s: one token every 100 ms.
    assert!(b.admit("a", Class::Request, t0 + ms(99)).is_err());
    assert!(b.admit("a", Class::Request, t0 + ms(101)).is_ok());
    b.release("a", Class::Request);
    assert!(b.admit("a", Class::Request, t0 + ms(150)).is_err());
    // 30 s idle refills to 5, not 300.
    assert_eq!(burst(&mut b, "a", 50, t0 + Duration::from_secs(30)), 5);
}

#[test]
fn sustained_admissions_follow_the_rate() {
    let t0 = Instant::now();
    let mut b = Buckets::new(settings(), t0);
    // A client asking every millisecond for 2 s gets burst + 2 s × 10/s.
    let mut admitted = 0;
    for i in 0..2000 {
        admitted += burst(&mut b, "a", 1, t0 + ms(i));
    }
    assert_eq!(admitted, 5 + 19, "burst 5, then 10/s for 1.999 s");
}

#[test]
fn retry_after_is_the_whole_seconds_until_the_next_token() {
    let t0 = Instant::now();
    let slow = Settings {
        rate: 0.25,
        burst: 1.0,
        ..settings()
    };
    let mut b = Buckets::new(slow, t0);
    assert_eq!(burst(&mut b, "a", 1, t0), 1);
    assert_eq!(
        b.admit("a", Class::Request, t0).unwrap_err(),
        Refusal::Rate {
            retry_after_secs: 4
        }
    );
    assert_eq!(
        b.admit("a", Class::Request, t0 + ms(2500)).unwrap_err(),
        Refusal::Rate {
            retry_after_secs: 2
        }
    );
    assert_eq!(seconds_until_token(0.999, 1000.0), 1, "never below 1");
    assert_eq!(seconds_until_token(0.0, 1e-9), 3600, "capped");
}

#[test]
fn in_flight_requests_are_capped_until_released() {
    let t0 = Instant::now();
    let mut b = Buckets::new(settings(), t0);
    for _ in 0..3 {
        b.admit("a", Class::Request, t0).unwrap();
    }
    assert_eq!(b.held("a"), (3, 0));
    assert_eq!(
        b.admit("a", Class::Request, t0).unwrap_err(),
        Refusal::InFlight
    );
    // Watches and other users are counted apart.
    b.admit("a", Class::Watch, t0).unwrap();
    b.admit("b", Class::Request, t0).unwrap();
    b.release("a", Class::Request);
    b.admit("a", Class::Request, t0 + ms(200)).unwrap();
    assert_eq!(b.held("a"), (3, 1));
}

#[test]
fn the_in_flight_refusal_takes_no_token() {
    let t0 = Instant::now();
    let mut b = Buckets::new(settings(), t0);
    for _ in 0..3 {
        b.admit("a", Class::Request, t0).unwrap();
    }
    for _ in 0..10 {
        assert_eq!(
            b.admit("a", Class::Request, t0).unwrap_err(),
            Refusal::InFlight
        );
    }
    b.release("a", Class::Request);
    // 2 tokens were left after 3 admissions, none spent on refusals.
    assert!(b.admit("a", Class::Request, t0).is_ok());
}

#[test]
fn watches_are_capped_per_user() {
    let t0 = Instant::now();
    let mut b = Buckets::new(settings(), t0);
    b.admit("a", Class::Watch, t0).unwrap();
    b.admit("a", Class::Watch, t0).unwrap();
    let refused = b.admit("a", Class::Watch, t0).unwrap_err();
    assert_eq!((refused, refused.reason()), (Refusal::Watches, "watches"));
    assert_eq!(refused.retry_after_secs(), 1);
    b.admit("b", Class::Watch, t0).unwrap();
    b.release("a", Class::Watch);
    b.admit("a", Class::Watch, t0 + ms(100)).unwrap();
    assert_eq!(b.held("a"), (0, 2));
}

#[test]
fn zero_turns_a_limit_off() {
    let t0 = Instant::now();
    let off = Settings {
        rate: 0.0,
        burst: 0.0,
        max_in_flight: 0,
        max_watches: 0,
        ..settings()
    };
    let mut b = Buckets::new(off, t0);
    for _ in 0..10_000 {
        b.admit("a", Class::Request, t0).unwrap();
        b.admit("a", Class::Watch, t0).unwrap();
    }
    assert_eq!(b.held("a"), (10_000, 10_000));
}

#[test]
fn releasing_more_than_admitted_never_underflows() {
    let t0 = Instant::now();
    let mut b = Buckets::new(settings(), t0);
    b.release("nobody", Class::Request);
    b.admit("a", Class::Request, t0).unwrap();
    b.release("a", Class::Request);
    b.release("a", Class::Request);
    assert_eq!(b.held("a"), (0, 0));
}

#[test]
fn idle_users_are_dropped_by_the_periodic_sweep() {
    let t0 = Instant::now();
    let mut b = Buckets::new(settings(), t0);
    for i in 0..100 {
        b.admit(&format!("u{i}"), Class::Request, t0).unwrap();
        b.release(&format!("u{i}"), Class::Request);
    }
    b.admit("holder", Class::Watch, t0).unwrap();
    assert_eq!(b.users(), 101);
    // Before the sweep interval nothing goes.
    b.admit("x", Class::Request, t0 + Duration::from_secs(59))
        .unwrap();
    assert_eq!(b.users(), 102);
    // At 60 s every full, empty-handed entry goes; "x" holds a request,
    // "holder" a watch.
    b.admit("y", Class::Request, t0 + Duration::from_secs(60))
        .unwrap();
    let mut left: Vec<_> = b.users.keys().cloned().collect();
    left.sort();
    assert_eq!(left, ["holder", "x", "y"]);
}

#[test]
fn a_user_with_a_drained_bucket_is_not_at_rest() {
    let t0 = Instant::now();
    let mut b = Buckets::new(settings(), t0);
    assert_eq!(burst(&mut b, "a", 5, t0), 5);
    // Full again only at 500 ms; from then on dropping it changes nothing.
    b.sweep(t0 + ms(100));
    assert_eq!(b.users(), 1, "drained: kept, or the flood would reset");
    b.sweep(t0 + ms(500));
    assert_eq!(b.users(), 0);
}

#[test]
fn a_flood_of_user_names_stays_bounded() {
    let t0 = Instant::now();
    let bounded = Settings {
        max_users: 50,
        ..settings()
    };
    let mut b = Buckets::new(bounded, t0);
    // Each name drains its bucket, so none is at rest; the oldest goes.
    for i in 0..10_000u64 {
        let user = format!("user-{i}");
        let now = t0 + ms(i / 100);
        assert_eq!(burst(&mut b, &user, 5, now), 5, "{user}");
        assert!(b.users() <= 50);
    }
    assert_eq!(b.users(), 50);
    assert!(b.users.contains_key("user-9999"));
    assert!(!b.users.contains_key("user-0"));
}

#[test]
fn a_full_map_of_busy_users_refuses_new_ones() {
    let t0 = Instant::now();
    let bounded = Settings {
        max_users: 3,
        ..settings()
    };
    let mut b = Buckets::new(bounded, t0);
    for user in ["a", "b", "c"] {
        b.admit(user, Class::Watch, t0).unwrap();
    }
    let refused = b.admit("d", Class::Request, t0).unwrap_err();
    assert_eq!((refused, refused.reason()), (Refusal::Users, "users"));
    // Known users go on; a freed entry makes room.
    b.admit("a", Class::Request, t0).unwrap();
    b.release("b", Class::Watch);
    b.admit("d", Class::Request, t0 + ms(1)).unwrap();
    assert_eq!(b.held("b"), (0, 0), "b was evicted");
    assert_eq!(b.users(), 3);
}

#[test]
fn eviction_order_is_deterministic() {
    let t0 = Instant::now();
    let bounded = Settings {
        max_users: 2,
        ..settings()
    };
    let run = || {
        let mut b = Buckets::new(bounded, t0);
        // Same `seen` for both: the name breaks the tie.
        assert_eq!(burst(&mut b, "zed", 5, t0), 5);
        assert_eq!(burst(&mut b, "amy", 5, t0), 5);
        b.admit("new", Class::Request, t0).unwrap();
        let mut left: Vec<_> = b.users.keys().cloned().collect();
        left.sort();
        left
    };
    for _ in 0..20 {
        assert_eq!(run(), ["new", "zed"]);
    }
}

#[test]
fn a_clock_going_backwards_refills_nothing() {
    let t0 = Instant::now() + Duration::from_secs(10);
    let mut b = Buckets::new(settings(), t0);
    assert_eq!(burst(&mut b, "a", 5, t0), 5);
    assert!(
        b.admit("a", Class::Request, t0 - Duration::from_secs(5))
            .is_err()
    );
    assert!(b.admit("a", Class::Request, t0 + ms(150)).is_ok());
}
