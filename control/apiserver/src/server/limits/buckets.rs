//! Per-user admission accounting: a token bucket, the requests in flight and
//! the open watches of each user, in a bounded map. Pure and synchronous: the
//! clock is an argument ([`Buckets::admit`] takes `now`), so tests drive time
//! by hand; [`super::Limiter`] keeps one behind a mutex held only for the
//! arithmetic.
//!
//! * **Rate**: each user's bucket holds up to `burst` tokens and refills at
//!   `rate` tokens per second; every admitted request (watches included)
//!   takes one. An empty bucket refuses with the whole seconds until the next
//!   token (at least 1), which the server sends as `Retry-After`.
//! * **In flight**: requests other than watches, from admission until their
//!   response has been sent; at `max_in_flight` the next one is refused.
//! * **Watches**: open watch streams, likewise bounded by `max_watches`.
//! * **Bounded map**: an entry whose bucket is full and which holds nothing
//!   is "at rest": dropping it changes nothing, since a new entry starts the
//!   same way. At-rest entries are dropped every [`Settings::idle_sweep`] and
//!   whenever the map reaches `max_users`; if it is still full, the entry
//!   that was seen longest ago and holds no request or watch is dropped (it
//!   comes back with a full bucket: lenient, never wrong in the other
//!   direction); if every entry holds something, the new user is refused
//!   ([`Refusal::Users`]). Memory thus stays bounded whatever the number of
//!   distinct user names.
//!
//! A limit of 0 turns that limit off.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// The numbers [`Buckets`] enforces (built from [`super::Limits`]).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Settings {
    /// Tokens per second (0: no rate limit).
    pub rate: f64,
    /// Bucket size (at least 1 when `rate` is on).
    pub burst: f64,
    /// Non-watch requests in flight per user (0: no limit).
    pub max_in_flight: u32,
    /// Open watches per user (0: no limit).
    pub max_watches: u32,
    /// Users tracked at once (0: no limit).
    pub max_users: usize,
    /// How often entries at rest are dropped.
    pub idle_sweep: Duration,
}

/// What a request holds while it runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Class {
    /// Any request but a watch, until its response is sent.
    Request,
    /// A watch, until its stream ends.
    Watch,
}

/// Why a request was refused (each a 429 with `Retry-After`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The user's bucket is empty; a token comes in `retry_after_secs`.
    Rate { retry_after_secs: u64 },
    /// The user has `max_in_flight` requests in flight.
    InFlight,
    /// The user has `max_watches` watches open.
    Watches,
    /// `max_users` users hold requests or watches; a new one must wait.
    Users,
}

impl Refusal {
    /// The `reason` label of `hami_apiserver_rejected_requests_total`.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Rate { .. } => "rate",
            Self::InFlight => "in_flight",
            Self::Watches => "watches",
            Self::Users => "users",
        }
    }

    /// `Retry-After`, in whole seconds (at least 1).
    pub fn retry_after_secs(&self) -> u64 {
        match self {
            Self::Rate { retry_after_secs } => (*retry_after_secs).max(1),
            Self::InFlight | Self::Watches | Self::Users => 1,
        }
    }
}

/// One user's state.
#[derive(Clone, Debug)]
struct Usage {
    tokens: f64,
    /// When `tokens` was last brought up to date.
    refilled: Instant,
    /// Last admission (the eviction order when the map is full).
    seen: Instant,
    in_flight: u32,
    watches: u32,
}

impl Usage {
    fn fresh(settings: &Settings, now: Instant) -> Self {
        Self {
            tokens: settings.burst,
            refilled: now,
            seen: now,
            in_flight: 0,
            watches: 0,
        }
    }

    fn refill(&mut self, settings: &Settings, now: Instant) {
        let elapsed = now.saturating_duration_since(self.refilled).as_secs_f64();
        self.tokens = (self.tokens + elapsed * settings.rate).min(settings.burst);
        if now > self.refilled {
            self.refilled = now;
        }
    }

    fn holds_nothing(&self) -> bool {
        self.in_flight == 0 && self.watches == 0
    }

    /// Indistinguishable from a new entry at `now`.
    fn at_rest(&self, settings: &Settings, now: Instant) -> bool {
        if !self.holds_nothing() {
            return false;
        }
        if settings.rate <= 0.0 {
            return true;
        }
        let elapsed = now.saturating_duration_since(self.refilled).as_secs_f64();
        self.tokens + elapsed * settings.rate >= settings.burst
    }
}

/// Every tracked user's accounting (see the module's documentation).
#[derive(Debug)]
pub struct Buckets {
    settings: Settings,
    users: HashMap<String, Usage>,
    last_sweep: Instant,
}

impl Buckets {
    pub fn new(mut settings: Settings, now: Instant) -> Self {
        if !settings.rate.is_finite() || settings.rate < 0.0 {
            settings.rate = 0.0;
        }
        if !settings.burst.is_finite() || settings.burst < 1.0 {
            settings.burst = 1.0;
        }
        Self {
            settings,
            users: HashMap::new(),
            last_sweep: now,
        }
    }

    /// Admits a request of `class` from `user` at `now`, or says why not.
    /// An admitted request must be [`Buckets::release`]d once.
    pub fn admit(&mut self, user: &str, class: Class, now: Instant) -> Result<(), Refusal> {
        if now.saturating_duration_since(self.last_sweep) >= self.settings.idle_sweep {
            self.sweep(now);
        }
        if !self.users.contains_key(user) {
            self.make_room(now)?;
        }
        let settings = self.settings;
        let usage = self
            .users
            .entry(user.to_owned())
            .or_insert_with(|| Usage::fresh(&settings, now));
        usage.refill(&settings, now);
        let (held, max) = match class {
            Class::Request => (usage.in_flight, settings.max_in_flight),
            Class::Watch => (usage.watches, settings.max_watches),
        };
        if max > 0 && held >= max {
            return Err(match class {
                Class::Request => Refusal::InFlight,
                Class::Watch => Refusal::Watches,
            });
        }
        if settings.rate > 0.0 {
            if usage.tokens < 1.0 {
                return Err(Refusal::Rate {
                    retry_after_secs: seconds_until_token(usage.tokens, settings.rate),
                });
            }
            usage.tokens -= 1.0;
        }
        match class {
            Class::Request => usage.in_flight += 1,
            Class::Watch => usage.watches += 1,
        }
        usage.seen = now;
        Ok(())
    }

    /// Ends a request or watch [`Buckets::admit`] let in.
    pub fn release(&mut self, user: &str, class: Class) {
        if let Some(usage) = self.users.get_mut(user) {
            match class {
                Class::Request => usage.in_flight = usage.in_flight.saturating_sub(1),
                Class::Watch => usage.watches = usage.watches.saturating_sub(1),
            }
        }
    }

    /// Users tracked now.
    pub fn users(&self) -> usize {
        self.users.len()
    }

    /// (in flight, watches) of `user`.
    pub fn held(&self, user: &str) -> (u32, u32) {
        self.users
            .get(user)
            .map_or((0, 0), |u| (u.in_flight, u.watches))
    }

    /// Drops the entries at rest.
    fn sweep(&mut self, now: Instant) {
        let settings = self.settings;
        self.users.retain(|_, u| !u.at_rest(&settings, now));
        self.last_sweep = now;
    }

    /// Makes room for one more user (see the module's documentation).
    fn make_room(&mut self, now: Instant) -> Result<(), Refusal> {
        let max = self.settings.max_users;
        if max == 0 || self.users.len() < max {
            return Ok(());
        }
        self.sweep(now);
        if self.users.len() < max {
            return Ok(());
        }
        // The one seen longest ago among those holding nothing; ties by name,
        // so the same state always evicts the same user.
        let oldest = self
            .users
            .iter()
            .filter(|(_, u)| u.holds_nothing())
            .min_by(|(a_name, a), (b_name, b)| a.seen.cmp(&b.seen).then_with(|| a_name.cmp(b_name)))
            .map(|(name, _)| name.clone());
        match oldest {
            Some(name) => {
                self.users.remove(&name);
                Ok(())
            }
            None => Err(Refusal::Users),
        }
    }
}

/// Whole seconds until a bucket holding `tokens` has one (at least 1).
fn seconds_until_token(tokens: f64, rate: f64) -> u64 {
    let wait = ((1.0 - tokens).max(0.0) / rate).ceil();
    if wait.is_finite() && wait >= 1.0 {
        // Bounded: a token never takes more than 1/rate seconds from empty;
        // the cap only guards absurd rates.
        wait.min(3600.0) as u64
    } else {
        1
    }
}

#[cfg(test)]
#[path = "buckets_tests.rs"]
mod tests;
