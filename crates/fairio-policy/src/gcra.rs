//! [`Gcra`]: governor's GCRA limiter counted in bytes, on the arbiter's clock.

use std::num::{NonZeroU32, NonZeroU64};
use std::time::Duration;

use governor::middleware::StateInformationMiddleware;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};

use crate::clock::ManualClock;
use crate::tuning::bytes_in;

type Limiter = RateLimiter<NotKeyed, InMemoryState, ManualClock, StateInformationMiddleware>;

/// A byte-rate limiter over governor.
///
/// governor counts cells, and its quota replenishes one cell per period in whole nanoseconds. A
/// byte per cell would make fast rates inexact (at 256 MiB/s a byte lasts 3.7 ns), so a cell
/// holds enough bytes for a period of at least 1 µs, and the rounding error stays under 0.05%.
/// Bytes charged beyond a grant (cell rounding, or returned as unused) wait in `credit`, up to
/// `credit_cap`, and serve the next grants first.
#[derive(Debug)]
pub(crate) struct Gcra {
    rate: NonZeroU64,
    cell: u64,
    burst: u64,
    limiter: Limiter,
    clock: ManualClock,
    credit: u64,
    credit_cap: u64,
    /// Time and remaining burst in bytes after the last successful check.
    last: Option<(u64, u64)>,
}

impl Gcra {
    /// A limiter of `rate` bytes per second with a burst of `burst` bytes, full at first.
    pub(crate) fn new(rate: NonZeroU64, burst: u64, credit_cap: u64, clock: &ManualClock) -> Self {
        let cell = rate.get().div_ceil(1_000_000);
        let period_nanos = u64::try_from(u128::from(cell) * 1_000_000_000 / u128::from(rate.get()))
            .unwrap_or(u64::MAX)
            .max(1);
        let cells = u32::try_from(burst.div_ceil(cell)).unwrap_or(u32::MAX);
        let burst_cells = NonZeroU32::new(cells).unwrap_or(NonZeroU32::MIN);
        // `period_nanos` is at least 1, so `with_period` always has a quota to give.
        let quota = Quota::with_period(Duration::from_nanos(period_nanos))
            .unwrap_or_else(|| Quota::per_second(NonZeroU32::MAX))
            .allow_burst(burst_cells);
        let limiter = RateLimiter::direct_with_clock(quota, clock.clone())
            .with_middleware::<StateInformationMiddleware>();
        Self {
            rate,
            cell,
            burst: u64::from(burst_cells.get()) * cell,
            limiter,
            clock: clock.clone(),
            credit: 0,
            credit_cap,
            last: None,
        }
    }

    /// A limiter of a new rate that starts with as much burst available as `self` has now
    /// (capped at its own burst), so changing the rate neither grants a fresh burst nor stalls.
    pub(crate) fn with_rate(&self, rate: NonZeroU64, burst: u64, credit_cap: u64) -> Self {
        let available = self.available();
        let mut next = Self::new(rate, burst, credit_cap, &self.clock);
        next.credit = self.credit.min(credit_cap);
        let drain = next.burst.saturating_sub(available);
        let cells = u32::try_from(drain / next.cell).unwrap_or(u32::MAX);
        if let Some(cells) = NonZeroU32::new(cells) {
            // A fresh limiter holds its whole burst, and `cells` is at most that: this passes.
            let _ = next.limiter.check_n(cells);
        }
        // What is available now, so that a second change before any grant starts from it too,
        // not from a full burst.
        next.last = Some((next.clock.nanos(), available.min(next.burst)));
        next
    }

    /// Spends burst beyond `keep` bytes, so that no more than `keep` is available now.
    pub(crate) fn trim(&mut self, keep: u64) {
        let excess = self.available().saturating_sub(keep);
        let cells = u32::try_from(excess / self.cell).unwrap_or(u32::MAX);
        if let Some(cells) = NonZeroU32::new(cells) {
            // At most what is available, so this passes; were the estimate high, a refusal
            // leaves the limiter as it was, which is still within its burst.
            if let Ok(Ok(snapshot)) = self.limiter.check_n(cells) {
                let remaining = u64::from(snapshot.remaining_burst_capacity()) * self.cell;
                self.last = Some((self.clock.nanos(), remaining));
            }
        }
    }

    pub(crate) fn rate(&self) -> NonZeroU64 {
        self.rate
    }

    /// Bytes a `take` would admit now without waiting: the credit, and the burst available.
    pub(crate) fn ready(&self) -> u64 {
        self.credit.saturating_add(self.available())
    }

    /// Burst bytes available now, by the last snapshot plus what has been replenished since.
    fn available(&self) -> u64 {
        match self.last {
            None => self.burst,
            Some((at, remaining)) => {
                let refill = bytes_in(self.rate, self.clock.nanos().saturating_sub(at));
                remaining.saturating_add(refill).min(self.burst)
            }
        }
    }

    /// Takes `n` bytes at the clock's current time, or says when they will be available (in
    /// nanoseconds on the clock). `n` must not exceed the burst.
    pub(crate) fn take(&mut self, n: u64) -> Result<(), u64> {
        self.rebalance();
        if self.credit >= n {
            self.credit -= n;
            return Ok(());
        }
        let need = n - self.credit;
        let cells = u32::try_from(need.div_ceil(self.cell)).unwrap_or(u32::MAX);
        let Some(cells) = NonZeroU32::new(cells) else {
            return Ok(());
        };
        match self.limiter.check_n(cells) {
            Ok(Ok(snapshot)) => {
                self.credit = (u64::from(cells.get()) * self.cell - need).min(self.credit_cap);
                let remaining = u64::from(snapshot.remaining_burst_capacity()) * self.cell;
                self.last = Some((self.clock.nanos(), remaining));
                Ok(())
            }
            Ok(Err(not_until)) => Err(not_until.earliest_possible().as_u64()),
            // Grants never exceed the burst; were one to, waiting a full burst time is the
            // conservative answer.
            Err(_) => Err(self.clock.nanos() + 1_000_000_000 * self.burst / self.rate.get()),
        }
    }

    /// Returns bytes that were taken but not used (a grant a stalled connection gave back).
    ///
    /// A refund undoes a charge: the bytes go back to the budget, however many, as long as the
    /// budget (credit and burst together) stays within `credit_cap + burst`, the documented `B`.
    /// Capping refunds at the credit cap alone lost the shares of stalled connections whenever
    /// several gave theirs back at once.
    pub(crate) fn refund(&mut self, n: u64) {
        self.credit = self
            .credit
            .saturating_add(n)
            .min(self.credit_cap + self.burst);
    }

    /// Keeps credit and burst together within `credit_cap + burst`: credit above the cap (from
    /// refunds) displaces burst the limiter would otherwise give.
    fn rebalance(&mut self) {
        if self.credit <= self.credit_cap {
            return;
        }
        let total = self.credit_cap + self.burst;
        let available = self.available();
        let excess = (self.credit + available).saturating_sub(total);
        if excess > 0 {
            self.trim(available.saturating_sub(excess));
            // Were the limiter's burst already below what is needed, the credit itself gives
            // way.
            self.credit = self.credit.min(total);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nz(n: u64) -> NonZeroU64 {
        NonZeroU64::new(n).unwrap()
    }

    #[test]
    fn enforces_rate_after_burst_on_the_manual_clock() {
        let clock = ManualClock::default();
        let mut g = Gcra::new(nz(1000), 100, 0, &clock);
        assert_eq!(g.take(100), Ok(()));
        let until = g.take(50).unwrap_err();
        assert_eq!(until, 50_000_000); // 50 bytes at 1000 B/s
        clock.set(until);
        assert_eq!(g.take(50), Ok(()));
        assert!(g.take(1).is_err());
    }

    #[test]
    fn fast_rates_are_exact_within_cell_rounding() {
        let clock = ManualClock::default();
        let rate = 256 << 20;
        let mut g = Gcra::new(nz(rate), 1 << 20, 64 * 1024, &clock);
        let mut t = 0;
        let mut taken = 0u64;
        // Ten simulated seconds of 64 KiB grants, as fast as allowed.
        let mut steps = crate::steps::Steps::new(1_000_000);
        while t < 10_000_000_000 {
            steps.step();
            match g.take(65_536) {
                Ok(()) => taken += 65_536,
                Err(until) => {
                    t = until;
                    clock.set(t);
                }
            }
        }
        let expected = rate * 10 + (1 << 20);
        let err = (taken as f64 - expected as f64).abs() / expected as f64;
        assert!(err < 0.001, "taken {taken}, expected {expected}");
    }

    #[test]
    fn rate_change_keeps_the_available_burst() {
        let clock = ManualClock::default();
        let mut g = Gcra::new(nz(1000), 100, 0, &clock);
        g.take(100).unwrap();
        // Nothing is available: the new, faster limiter must not start with a fresh burst.
        let mut h = g.with_rate(nz(10_000), 1000, 0);
        assert!(h.take(500).is_err());
        clock.set(50_000_000); // 50 ms at 10 kB/s: 500 bytes
        assert_eq!(h.take(500), Ok(()));
    }

    #[test]
    fn refunds_serve_the_next_grant() {
        let clock = ManualClock::default();
        let mut g = Gcra::new(nz(1000), 100, 60, &clock);
        g.take(100).unwrap();
        g.refund(80);
        assert_eq!(g.take(80), Ok(()));
        assert!(g.take(1).is_err());
    }

    #[test]
    fn refunds_never_lift_the_budget_above_credit_cap_plus_burst() {
        let clock = ManualClock::default();
        let mut g = Gcra::new(nz(1000), 100, 60, &clock);
        // The burst is full and a large refund arrives: at most 160 bytes may go at once.
        g.refund(1_000);
        let mut taken = 0;
        while g.take(10).is_ok() {
            taken += 10;
            assert!(taken <= 160, "took {taken}");
        }
        assert!(taken >= 150, "took {taken}");
    }
}
