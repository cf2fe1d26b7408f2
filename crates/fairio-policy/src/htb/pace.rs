//! [`Pace`]: a rate as a theoretical arrival time (GCRA), on nanoseconds passed in.
//!
//! The tree keeps three kinds of rate per node (the global limit, a guarantee, a ceiling) and
//! asks each the same two questions: how many bytes may go now, and when may more. A plain
//! theoretical arrival time answers both in O(1) with no allocation, and, unlike governor's
//! cells, charges and refunds any byte count exactly.

use std::num::NonZeroU64;

const NANOS_PER_SEC: u64 = 1_000_000_000;

/// `a × b / c`, rounded down (up with `ceil`), saturating: in 64 bits when the product fits,
/// as it does for a grant's bytes, and in 128 otherwise. A decision makes a few of these per
/// level, and a 128-bit division costs several times a 64-bit one.
pub(crate) fn mul_div(a: u64, b: u64, c: u64, ceil: bool) -> u64 {
    match a.checked_mul(b) {
        Some(p) if ceil => p.div_ceil(c),
        Some(p) => p / c,
        None => {
            let (p, c) = (u128::from(a) * u128::from(b), u128::from(c));
            u64::try_from(if ceil { p.div_ceil(c) } else { p / c }).unwrap_or(u64::MAX)
        }
    }
}

/// A byte rate with a tolerance: over any window of `T` it lets through at most
/// `rate × (T + tolerance + behind)` bytes plus the last grant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Pace {
    rate: NonZeroU64,
    /// When the bytes charged so far would have gone at exactly `rate`.
    tat: u64,
    /// How far ahead of `now` the arrival time may run.
    tolerance: u64,
    /// How far behind `now` the arrival time may fall: time owed but not yet taken (a
    /// guarantee asked a little late keeps what it was owed meanwhile).
    behind: u64,
}

impl Pace {
    /// A pace that starts with nothing stored up: it lets bytes through from `now` on.
    pub(crate) fn new(rate: NonZeroU64, tolerance_nanos: u64, now: u64) -> Self {
        Self {
            rate,
            tat: now,
            tolerance: tolerance_nanos,
            behind: 0,
        }
    }

    /// A pace that starts with nothing to let through: its first bytes wait for its rate.
    pub(crate) fn empty(rate: NonZeroU64, tolerance_nanos: u64, now: u64) -> Self {
        Self {
            tat: now.saturating_add(tolerance_nanos),
            ..Self::new(rate, tolerance_nanos, now)
        }
    }

    /// The same pace, keeping up to `nanos` of time owed and not taken.
    pub(crate) fn keeping(self, nanos: u64) -> Self {
        Self {
            behind: nanos,
            ..self
        }
    }

    /// Forgets time owed beyond `keep` before `now`: a node back from idle did not rest to
    /// store up a burst (its `behind` is for lateness while it has bytes to move).
    pub(crate) fn rest(&mut self, now: u64, keep: u64) {
        self.tat = self.tat.max(now.saturating_sub(keep));
    }

    /// The arrival time as it counts at `now`: never further behind than `behind`.
    fn counted(&self, now: u64) -> u64 {
        self.tat.max(now.saturating_sub(self.behind))
    }

    pub(crate) fn rate(&self) -> NonZeroU64 {
        self.rate
    }

    /// The time `bytes` take at this rate, rounded up.
    fn nanos_for(&self, bytes: u64) -> u64 {
        mul_div(bytes, NANOS_PER_SEC, self.rate.get(), true)
    }

    /// Bytes that may go at `now`.
    pub(crate) fn room(&self, now: u64) -> u64 {
        let ahead = now
            .saturating_add(self.tolerance)
            .saturating_sub(self.counted(now));
        mul_div(ahead, self.rate.get(), NANOS_PER_SEC, false)
    }

    /// The bytes that may go at once after a rest: the tolerance's worth.
    pub(crate) fn full(&self) -> u64 {
        mul_div(self.tolerance, self.rate.get(), NANOS_PER_SEC, false).max(1)
    }

    /// When at least `bytes` may go.
    pub(crate) fn ready_for(&self, bytes: u64) -> u64 {
        self.tat
            .saturating_add(self.nanos_for(bytes))
            .saturating_sub(self.tolerance)
    }

    /// Whether the pace is within its rate at `now` (its arrival time is not ahead of it):
    /// for a guarantee, whether the node is still owed guaranteed bytes.
    pub(crate) fn owed(&self, now: u64) -> bool {
        self.tat <= now
    }

    /// The arrival time: for a guarantee, when it is owed bytes again.
    pub(crate) fn arrival(&self) -> u64 {
        self.tat
    }

    /// Counts `bytes` as gone at `now`. Time not used before `now` is not stored up beyond
    /// `behind`.
    pub(crate) fn charge(&mut self, bytes: u64, now: u64) {
        self.tat = self.counted(now).saturating_add(self.nanos_for(bytes));
    }

    /// Gives back `bytes` charged but not moved, never earlier than `now`: a refund stores up
    /// nothing beyond what was there.
    pub(crate) fn refund(&mut self, bytes: u64, now: u64) {
        self.tat = self
            .tat
            .saturating_sub(self.nanos_for(bytes))
            .max(now.saturating_sub(self.behind));
    }

    /// The same pace at a new rate and tolerance, keeping what it had in bytes: the bytes it
    /// could let through now (up to the new tolerance's worth: no fresh burst), or the bytes
    /// it had let through beyond its tolerance (owed, at the new rate: no stall longer than
    /// they take). Kept in time instead, a pace that starts empty under a low limit (a second
    /// of tolerance) would hold a new, higher limit back for that second.
    pub(crate) fn with_rate(self, rate: NonZeroU64, tolerance_nanos: u64, now: u64) -> Self {
        let counted = self.counted(now);
        let edge = now.saturating_add(self.tolerance);
        let fresh = Self {
            rate,
            tat: now,
            tolerance: tolerance_nanos,
            behind: self.behind,
        };
        let tat = if counted <= edge {
            let room = self.room(now).min(fresh.full());
            now.saturating_add(tolerance_nanos)
                .saturating_sub(fresh.nanos_for(room))
        } else {
            let owed = mul_div(counted - edge, self.rate.get(), NANOS_PER_SEC, false);
            now.saturating_add(tolerance_nanos)
                .saturating_add(fresh.nanos_for(owed))
        };
        Self { tat, ..fresh }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mib() -> NonZeroU64 {
        NonZeroU64::new(1 << 20).unwrap()
    }

    /// The 64-bit path and the 128-bit one agree, rounding included, and a product past 64
    /// bits takes the 128-bit one.
    #[test]
    fn mul_div_matches_128_bit_arithmetic() {
        let cases = [
            (0, 7, 3),
            (65_536, NANOS_PER_SEC, 1_048_576),
            (1, 1, 3),
            (u64::MAX, u64::MAX, u64::MAX),
            (40_000_000, 1 << 40, NANOS_PER_SEC),
            (123_456_789, 987_654_321_000, 1_000_003),
        ];
        for (a, b, c) in cases {
            let p = u128::from(a) * u128::from(b);
            let want = |x: u128| u64::try_from(x).unwrap_or(u64::MAX);
            assert_eq!(
                mul_div(a, b, c, false),
                want(p / u128::from(c)),
                "{a} {b} {c}"
            );
            assert_eq!(
                mul_div(a, b, c, true),
                want(p.div_ceil(u128::from(c))),
                "{a} {b} {c}"
            );
        }
    }

    #[test]
    fn room_grows_at_the_rate_up_to_the_tolerance() {
        let p = Pace::new(mib(), 10_000_000, 0);
        assert_eq!(p.room(0), (1 << 20) / 100);
        // Idle time is not stored up beyond the tolerance.
        assert_eq!(p.room(5_000_000_000), (1 << 20) / 100);
        let mut p = p;
        p.charge(1, 5_000_000_000);
        assert!(p.room(5_000_000_000) < (1 << 20) / 100);
    }

    /// A new rate keeps the bytes there were, not the time: an empty pace at a low rate with a
    /// second of tolerance, raised tenfold, lets its first bytes through in a tenth of the time
    /// (it held a higher limit back for the whole second before).
    #[test]
    fn a_new_rate_keeps_bytes_not_time() {
        let slow = NonZeroU64::new(64 * 1024).unwrap();
        let fast = NonZeroU64::new(640 * 1024).unwrap();
        let p = Pace::empty(slow, 1_000_000_000, 0);
        assert_eq!(p.room(0), 0);
        let q = p.with_rate(fast, 100_000_000, 0);
        assert_eq!(q.room(0), 0, "no fresh burst");
        let at = q.ready_for(6_400);
        assert!(at <= 10_000_001, "the first 6,400 bytes wait {at} ns");
        // Room carries over as bytes, up to the new tolerance's worth.
        let full = Pace::new(slow, 1_000_000_000, 0);
        let r = full.with_rate(fast, 10_000_000, 0);
        assert_eq!(r.room(0), r.full());
        // Bytes let through beyond the tolerance stay owed, at the new rate.
        let mut owing = Pace::new(slow, 0, 0);
        owing.charge(64 * 1024, 0);
        let o = owing.with_rate(fast, 0, 0);
        assert!(
            (99_000_000..=101_000_000).contains(&o.ready_for(0)),
            "{}",
            o.ready_for(0)
        );
    }

    /// A guarantee asked late keeps what it was owed meanwhile, up to `behind`.
    #[test]
    fn time_owed_is_kept_up_to_behind() {
        let mut p = Pace::new(mib(), 0, 0).keeping(10_000_000);
        p.charge(1 << 10, 0);
        // Asked 3 ms late: the next 1 KiB is due 1 ms after the first, not 1 ms after now.
        let late = p.arrival() + 3_000_000;
        p.charge(1 << 10, late);
        assert!(p.owed(late), "still owed after a late grant");
        // Idle for a second: only 10 ms are kept.
        let idle = late + 1_000_000_000;
        p.charge(1 << 10, idle);
        assert_eq!(
            p.arrival(),
            idle - 10_000_000 + (1_000_000_000u64 >> 10) + 1
        );
    }

    #[test]
    fn a_charge_and_its_refund_cancel() {
        let mut p = Pace::new(mib(), 0, 0);
        p.charge(4096, 0);
        assert_eq!(p.room(0), 0);
        assert!(!p.owed(0));
        p.refund(4096, 0);
        assert!(p.owed(0));
        // A refund never moves the arrival time before now.
        p.refund(1 << 30, 7);
        assert_eq!(p.arrival(), 7);
    }

    #[test]
    fn ready_for_is_when_room_reaches_the_bytes() {
        let mut p = Pace::new(mib(), 1_000_000, 0);
        p.charge(1 << 20, 0);
        let at = p.ready_for(1000);
        assert!(p.room(at) >= 1000, "{}", p.room(at));
        assert!(p.room(at - 2_000) < 1000);
    }
}
