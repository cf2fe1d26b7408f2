//! [`Tokens`]: a test policy with a fixed budget and no clock, so that the direction's
//! hand-offs can be checked on their own (and by loom, whose models must not depend on time).
//!
//! Its arbiter grants the waiting connections in turn, at most [`TURN`] bytes each, until its
//! budget is spent; then it says "wait" (for a refund or a new limit, since it never refills).
//! A new limit sets the budget to the limit, as a fresh start.

use std::collections::BTreeMap;
use std::num::NonZeroU64;
use std::time::{Duration, Instant};

use fairio_policy::{Arbiter, Decision, EqualShare, Key, Policy};

/// The most bytes one grant holds.
pub(crate) const TURN: u64 = 10;

#[derive(Debug)]
pub(crate) struct Tokens;

#[derive(Debug)]
pub(crate) struct TokenArbiter {
    /// Makes the keys (an unlimited arbiter of the real kind, used for nothing else).
    keys: <EqualShare as Policy>::Arbiter,
    demand: BTreeMap<Key, u64>,
    budget: u64,
    limit: Option<NonZeroU64>,
    /// The key granted last: the next grant goes to the one after it.
    last: Option<Key>,
    now: Instant,
}

impl Policy for Tokens {
    type Params = ();
    type Arbiter = TokenArbiter;

    fn arbiter(&self, limit: Option<NonZeroU64>, now: Instant) -> TokenArbiter {
        TokenArbiter {
            keys: EqualShare.arbiter(None, now),
            demand: BTreeMap::new(),
            budget: limit.map_or(0, NonZeroU64::get),
            limit,
            last: None,
            now,
        }
    }
}

impl TokenArbiter {
    /// The budget not yet granted.
    pub(crate) fn unused_budget(&self) -> u64 {
        self.budget
    }
}

impl Arbiter for TokenArbiter {
    type Params = ();

    fn insert(&mut self, (): (), _: Option<NonZeroU64>, now: Instant) -> Key {
        let key = self.keys.insert((), None, now);
        self.demand.insert(key, 0);
        key
    }

    fn remove(&mut self, key: Key) {
        self.keys.remove(key);
        self.demand.remove(&key);
    }

    fn set_params(&mut self, _: Key, (): ()) {}

    fn set_cap(&mut self, _: Key, _: Option<NonZeroU64>, _: Instant) {}

    fn set_limit(&mut self, limit: Option<NonZeroU64>, _: Instant) {
        self.limit = limit;
        self.budget = limit.map_or(0, NonZeroU64::get);
    }

    fn limit(&self) -> Option<NonZeroU64> {
        self.limit
    }

    fn set_demand(&mut self, key: Key, bytes: u64, _: Instant) {
        if let Some(d) = self.demand.get_mut(&key) {
            *d = bytes;
        }
    }

    fn demand(&self, key: Key) -> u64 {
        self.demand.get(&key).copied().unwrap_or(0)
    }

    fn next(&mut self, _: Instant) -> Decision {
        let after = self.last;
        let waiting = self
            .demand
            .iter()
            .filter(|(_, d)| **d > 0)
            .map(|(k, _)| *k)
            .collect::<Vec<_>>();
        let Some(&first) = waiting.first() else {
            return Decision::Idle;
        };
        if self.budget == 0 {
            return Decision::Wait {
                until: self.now + Duration::from_secs(1),
            };
        }
        let key = waiting
            .iter()
            .copied()
            .find(|k| after.is_some_and(|a| *k > a))
            .unwrap_or(first);
        let d = self.demand.get_mut(&key).expect("listed");
        let bytes = (*d).min(self.budget).min(TURN);
        *d -= bytes;
        self.budget -= bytes;
        self.last = Some(key);
        Decision::Grant { key, bytes }
    }

    fn unused(&mut self, _: Key, bytes: u64) {
        self.budget += bytes;
    }

    fn len(&self) -> usize {
        self.demand.len()
    }
}
