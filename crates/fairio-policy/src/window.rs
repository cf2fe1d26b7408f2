//! [`WindowQuota`]: Tezos's `P2p_io_scheduler` algorithm, reproduced for comparison.

use std::num::NonZeroU64;
use std::time::Instant;

use crate::Key;
use crate::cap::{Cap, cap_for};
use crate::clock::{Epoch, ManualClock};
use crate::lanes::{Entry, Lane, Parking};
use crate::policy::{Arbiter, Decision, Policy};
use crate::slab::Slab;
use crate::tuning::MAX_GRANT;

const WINDOW_NANOS: u64 = 1_000_000_000;
const ALPHA: f64 = 0.2;

/// Tezos's algorithm, reproduced faithfully so that users coming from Tezos get the behaviour
/// they know, and benchmarks can compare it.
///
/// - A global quota of `limit` bytes is refilled once a second: `quota = min(quota, 0) + limit`.
/// - Each second, every connection's quota becomes `min(quota, 0) + average / n`, where
///   `average` is the moving average (alpha 0.2) of the bytes the scheduler moved per second,
///   and `n` the number of connections.
/// - A connection that becomes ready goes to the high-priority queue while its quota is
///   positive, else to the low-priority one; high is served first, each queue in order.
/// - A grant is a whole chunk (here up to 64 KiB), charged against both quotas, which may go
///   negative. When the global quota is spent, nobody moves until the next second.
///
/// Its known weaknesses (lag of seconds, bursts of a whole second's budget, shares of the
/// measured flow rather than the limit) are measured in the [crate docs](crate).
///
/// It stays flat: Tezos has no groups. Groups made with [`Arbiter::insert_group`] are names
/// only here; their weights and caps are ignored, and their connections share as if each were
/// alone. Use [`EqualShare`](crate::EqualShare) or [`Weighted`](crate::Weighted) for groups.
#[derive(Clone, Copy, Debug, Default)]
pub struct WindowQuota;

impl Policy for WindowQuota {
    type Params = ();
    type Arbiter = WindowArbiter;

    fn arbiter(&self, limit: Option<NonZeroU64>, now: Instant) -> WindowArbiter {
        WindowArbiter::new(limit, now)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Idle,
    Listed,
    Parked,
}

#[derive(Debug)]
struct Flow {
    quota: i64,
    demand: u64,
    state: State,
    ticket: u32,
    cap: Option<Cap>,
}

/// The arbiter of [`WindowQuota`].
#[derive(Debug)]
pub struct WindowArbiter {
    epoch: Epoch,
    clock: ManualClock,
    flows: Slab<Flow>,
    high: Lane,
    low: Lane,
    parking: Parking,
    limit: Option<NonZeroU64>,
    quota: i64,
    next_window: u64,
    average: f64,
    moved: u64,
    moved_at_window: u64,
}

fn listed(flows: &Slab<Flow>, e: Entry) -> bool {
    flows
        .get(e.key)
        .is_some_and(|f| f.ticket == e.ticket && f.state == State::Listed)
}

fn parked(flows: &Slab<Flow>, e: Entry) -> bool {
    flows
        .get(e.key)
        .is_some_and(|f| f.ticket == e.ticket && f.state == State::Parked)
}

fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

impl WindowArbiter {
    /// An arbiter with a global `limit` (bytes per second; `None`: unlimited), starting at `now`.
    pub fn new(limit: Option<NonZeroU64>, now: Instant) -> Self {
        Self {
            epoch: Epoch::new(now),
            clock: ManualClock::default(),
            flows: Slab::new(),
            high: Lane::default(),
            low: Lane::default(),
            parking: Parking::default(),
            limit,
            quota: limit.map_or(0, |l| to_i64(l.get())),
            next_window: WINDOW_NANOS,
            average: 0.0,
            moved: 0,
            moved_at_window: 0,
        }
    }

    fn tick(&mut self, now: Instant) -> u64 {
        self.clock.set(self.epoch.nanos(now));
        let t = self.clock.nanos();
        self.refill(t);
        t
    }

    /// Tezos's once-a-second refill of the global quota and of every connection's quota.
    fn refill(&mut self, t: u64) {
        if t < self.next_window {
            return;
        }
        let windows = (t - self.next_window) / WINDOW_NANOS + 1;
        for i in 0..windows.min(64) {
            let sample = if i == 0 {
                self.moved.saturating_sub(self.moved_at_window) as f64
            } else {
                0.0
            };
            self.average = ALPHA * sample + (1.0 - ALPHA) * self.average;
        }
        if windows > 64 {
            self.average = 0.0;
        }
        self.moved_at_window = self.moved;
        self.next_window += windows * WINDOW_NANOS;
        if let Some(l) = self.limit {
            self.quota = self.quota.min(0) + to_i64(l.get());
        }
        let n = self.flows.len().max(1) as f64;
        let fair = (self.average / n) as i64;
        for f in self.flows.values_mut() {
            f.quota = f.quota.min(0) + fair;
        }
    }

    fn enqueue(&mut self, key: Key) {
        let Some(f) = self.flows.get_mut(key) else {
            return;
        };
        f.state = State::Listed;
        f.ticket = f.ticket.wrapping_add(1);
        let e = Entry {
            key,
            ticket: f.ticket,
        };
        if f.quota > 0 {
            self.high.push(e);
        } else {
            self.low.push(e);
        }
    }

    fn set_state(&mut self, key: Key, state: State) -> Option<u32> {
        let f = self.flows.get_mut(key)?;
        f.state = state;
        f.ticket = f.ticket.wrapping_add(1);
        Some(f.ticket)
    }
}

impl Arbiter for WindowArbiter {
    type Params = ();

    fn insert(&mut self, _params: (), cap: Option<NonZeroU64>, now: Instant) -> Key {
        self.tick(now);
        self.flows.insert(Flow {
            quota: 0,
            demand: 0,
            state: State::Idle,
            ticket: 0,
            cap: cap_for(cap, &self.clock),
        })
    }

    fn remove(&mut self, key: Key) {
        self.flows.remove(key);
    }

    fn set_params(&mut self, _key: Key, _params: ()) {}

    fn set_cap(&mut self, key: Key, cap: Option<NonZeroU64>, now: Instant) {
        self.tick(now);
        let clock = self.clock.clone();
        if let Some(f) = self.flows.get_mut(key) {
            f.cap = cap_for(cap, &clock);
            if f.state == State::Parked {
                if f.demand > 0 {
                    self.enqueue(key);
                } else {
                    self.set_state(key, State::Idle);
                }
            }
        }
    }

    fn set_limit(&mut self, limit: Option<NonZeroU64>, now: Instant) {
        self.tick(now);
        // Tezos's max speed is fixed at creation; a new limit applies from the next window.
        self.limit = limit;
    }

    fn limit(&self) -> Option<NonZeroU64> {
        self.limit
    }

    fn set_demand(&mut self, key: Key, bytes: u64, now: Instant) {
        self.tick(now);
        let Some(f) = self.flows.get_mut(key) else {
            return;
        };
        f.demand = bytes;
        match (f.state, bytes > 0) {
            (State::Idle, true) => {
                if let Some(cap) = f.cap.as_mut() {
                    cap.forget_idle();
                }
                self.enqueue(key);
            }
            (State::Listed, false) => {
                self.set_state(key, State::Idle);
            }
            _ => {}
        }
    }

    fn demand(&self, key: Key) -> u64 {
        self.flows.get(key).map_or(0, |f| f.demand)
    }

    fn next(&mut self, now: Instant) -> Decision {
        let t = self.tick(now);
        while let Some(e) = self.parking.due(t, |e| parked(&self.flows, e)) {
            if self.flows.get(e.key).is_some_and(|f| f.demand > 0) {
                self.enqueue(e.key);
            } else {
                self.set_state(e.key, State::Idle);
            }
        }
        for _ in 0..=self.flows.len() {
            if self.limit.is_some() && self.quota <= 0 {
                let flows = &self.flows;
                let parked_due = self.parking.next_due(|e| parked(flows, e));
                let until = parked_due.map_or(self.next_window, |p| p.min(self.next_window));
                return Decision::Wait {
                    until: self.epoch.instant(until),
                };
            }
            let flows = &self.flows;
            let (entry, high) = match self.high.front(|e| listed(flows, e)) {
                Some(e) => (e, true),
                None => match self.low.front(|e| listed(flows, e)) {
                    Some(e) => (e, false),
                    None => {
                        return match self.parking.next_due(|e| parked(flows, e)) {
                            Some(until) => Decision::Wait {
                                until: self.epoch.instant(until),
                            },
                            None => Decision::Idle,
                        };
                    }
                },
            };
            if high {
                self.high.pop();
            } else {
                self.low.pop();
            }
            let key = entry.key;
            let Some(f) = self.flows.get_mut(key) else {
                continue;
            };
            let cap_max = f.cap.as_ref().map_or(u64::MAX, Cap::grant_max);
            let bytes = f.demand.min(MAX_GRANT).min(cap_max);
            if let Some(cap) = f.cap.as_mut() {
                if let Err(until) = cap.admit(bytes) {
                    if let Some(ticket) = self.set_state(key, State::Parked) {
                        self.parking.park(until, Entry { key, ticket });
                    }
                    continue;
                }
                cap.spend(bytes);
            }
            f.demand -= bytes;
            f.quota -= to_i64(bytes);
            self.quota -= to_i64(bytes);
            self.moved += bytes;
            if f.demand > 0 {
                self.enqueue(key);
            } else {
                self.set_state(key, State::Idle);
            }
            return Decision::Grant { key, bytes };
        }
        Decision::Wait {
            until: self.epoch.instant(self.next_window),
        }
    }

    fn unused(&mut self, _key: Key, bytes: u64) {
        self.quota = self.quota.saturating_add(to_i64(bytes));
        self.moved -= bytes.min(self.moved);
    }

    fn len(&self) -> usize {
        self.flows.len()
    }
}
