//! [`Lane`]: one direction a member shares. It measures what the scheduler moved against the
//! limit in force (averaged over time, as limits change within an interval), turns that into a
//! demand, and sets the scheduler's limit.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use fairio::{Policy, Scheduler};
use tokio::time::Instant;

use crate::member::{DirLease, Mode};
use crate::script::Keys;

/// Upload or download.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Way {
    Up,
    Down,
}

/// How many intervals a light member's demand remembers: long enough that a traffic's usual
/// high interval is almost always among them.
const RECENT: usize = 10;

/// One direction a member shares.
#[derive(Debug)]
pub(crate) struct Lane {
    pub(crate) way: Way,
    pub(crate) keys: Keys,
    pub(crate) capacity: u64,
    /// When the lease in force lapses: the safe share applies after that.
    pub(crate) until: Instant,
    pub(crate) epoch: Option<u64>,
    pub(crate) live: u32,
    pub(crate) state: DirLease,
    /// The byte total and the time of the last measurement.
    measured: (u64, Instant),
    /// ∫ limit dt since the last measurement, up to `since`, and the limit since then.
    area: f64,
    since: Instant,
    limit: u64,
    /// What it moved in each of the last measurements, bytes per second, oldest first.
    recent: VecDeque<f64>,
    /// The demand of the last measurement.
    asked: f64,
    /// Its byte total and the time at the last quarter-interval check.
    quarter: (u64, Instant),
    /// Set once the member has left: no limit is set after that. Taken while a limit is set,
    /// so that a driver in the middle of a round cannot undo the leaving.
    left: Arc<Mutex<bool>>,
}

impl Lane {
    pub(crate) fn new(
        way: Way,
        budget: &str,
        capacity: u64,
        total: u64,
        ttl: Duration,
        left: Arc<Mutex<bool>>,
    ) -> Self {
        let now = Instant::now();
        Self {
            way,
            keys: Keys::new(budget, if way == Way::Up { "up" } else { "down" }),
            capacity,
            until: now + ttl,
            epoch: None,
            live: 1,
            state: DirLease {
                limit: 1,
                target: 0,
                live: 0,
                mode: Mode::Starting,
            },
            measured: (total, now),
            area: 0.0,
            since: now,
            limit: 1,
            recent: VecDeque::with_capacity(RECENT),
            asked: 0.0,
            quarter: (total, now),
            left,
        }
    }

    /// The smallest demand counted: an idle member holds this much, so that it can show new
    /// demand by filling it (0.5% of the fleet limit, at least 1 KiB/s).
    pub(crate) fn floor(&self) -> f64 {
        (self.capacity as f64 / 200.0).max(1024.0)
    }

    fn total<P: Policy>(&self, sched: &Scheduler<P>) -> u64 {
        let s = sched.global_stat();
        if self.way == Way::Up {
            s.total_sent
        } else {
            s.total_recv
        }
    }

    /// The limit in force.
    pub(crate) fn limit(&self) -> u64 {
        self.limit
    }

    /// Sets the scheduler's limit, keeping the time average of the limits in force.
    pub(crate) fn set<P: Policy>(&mut self, sched: &Scheduler<P>, limit: u64) {
        let left = Arc::clone(&self.left);
        let left = left.lock().unwrap_or_else(|e| e.into_inner());
        if *left {
            return;
        }
        let limit = limit.max(1);
        let now = Instant::now();
        self.area += self.limit as f64 * (now - self.since).as_secs_f64();
        self.since = now;
        self.limit = limit;
        match self.way {
            Way::Up => sched.set_max_upload_speed(Some(limit)),
            Way::Down => sched.set_max_download_speed(Some(limit)),
        }
    }

    /// Applies a lease when it differs from the limit in force by more than 1% (a new limit
    /// starts a new generation of grants, whose cost would otherwise make a busy member look
    /// less busy). Keeping a limit up to 1% above its lease is safe: the member reports what it
    /// holds, and the lease rule counts the larger of held and leased. Returns the limit in
    /// force.
    pub(crate) fn apply<P: Policy>(&mut self, sched: &Scheduler<P>, lease: u64) -> u64 {
        let lease = lease.max(1);
        if lease.abs_diff(self.limit) as f64 > 0.01 * self.limit as f64 {
            self.set(sched, lease);
        }
        self.limit
    }

    /// The demand to report. A new measurement is taken once at least three quarters of an
    /// interval have passed since the last one (early rounds reuse it: a short interval's rate
    /// jitters too much): the whole fleet limit when the member moved 97% or more of the limit
    /// in force on average (it is held back: it could use more), else the peak of the last
    /// [`RECENT`] measurements and 5% more. Taking the recent peak keeps a light member whose
    /// traffic jitters from shrinking its lease on a low interval and then looking held back
    /// on a high one; demand that really grows shows as held back, and gets a fair share.
    pub(crate) fn demand<P: Policy>(&mut self, sched: &Scheduler<P>, refresh: Duration) -> f64 {
        let now = Instant::now();
        let span = now - self.measured.1;
        if span < refresh * 3 / 4 && !self.recent.is_empty() {
            return self.asked;
        }
        let secs = span.as_secs_f64().max(1e-3);
        let total = self.total(sched);
        let moved = total.saturating_sub(self.measured.0) as f64 / secs;
        let average = (self.area + self.limit as f64 * (now - self.since).as_secs_f64()) / secs;
        self.measured = (total, now);
        self.area = 0.0;
        self.since = now;
        if self.recent.len() == RECENT {
            self.recent.pop_front();
        }
        self.recent.push_back(moved);
        self.asked = demand(&self.recent, average, self.capacity);
        self.asked
    }

    /// Whether the last demand was light (less than the whole fleet limit).
    fn light(&self) -> bool {
        self.asked < self.capacity as f64
    }

    /// Whether this lane wants a round before the regular tick: it is growing toward its
    /// target (it asks again as the others make room), or it was idle and used 97% of its
    /// limit over the last quarter interval (it woke up). Only an idle lane is judged on a
    /// quarter interval: light traffic jitters too much over so short a time.
    pub(crate) fn early<P: Policy>(&mut self, sched: &Scheduler<P>) -> bool {
        let now = Instant::now();
        let total = self.total(sched);
        let secs = (now - self.quarter.1).as_secs_f64().max(1e-3);
        let moved = total.saturating_sub(self.quarter.0) as f64 / secs;
        self.quarter = (total, now);
        let growing = self.state.mode == Mode::Leased
            && self.state.target as f64 > 1.01 * self.state.limit as f64;
        let idle = self.recent.iter().all(|&m| m <= 1.05 * self.floor());
        let woke = self.light() && idle && moved >= 0.97 * self.limit as f64;
        growing || woke
    }
}

/// See [`Lane::demand`]: `recent` ends with this measurement, `average` is the limit in force
/// over it.
fn demand(recent: &VecDeque<f64>, average: f64, capacity: u64) -> f64 {
    let moved = recent.back().copied().unwrap_or(0.0);
    if moved >= 0.97 * average {
        capacity as f64
    } else {
        recent.iter().copied().fold(0.0, f64::max) * 1.05
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_member_held_at_its_limit_asks_for_everything() {
        let d = |xs: &[f64], average| demand(&xs.iter().copied().collect(), average, 10_000);
        assert_eq!(d(&[0.0, 980.0], 1000.0), 10_000.0);
        assert_eq!(d(&[400.0, 500.0], 1000.0), 525.0);
        // A low interval does not shrink the demand: the recent peak sets it.
        assert_eq!(d(&[500.0, 400.0, 420.0], 1000.0), 525.0);
        // A light member at its recent peak is not held back.
        assert!(d(&[420.0, 462.0, 420.0, 462.0], 485.0) < 10_000.0);
        // A member whose limit grew during the interval is judged on the average limit.
        assert_eq!(d(&[1750.0], 1750.0), 10_000.0);
    }
}
