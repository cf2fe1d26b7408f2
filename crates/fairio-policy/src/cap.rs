//! [`Cap`]: one connection's own limit.

use std::num::NonZeroU64;

use crate::clock::ManualClock;
use crate::gcra::Gcra;
use crate::tuning::{cap_burst, cap_grant_max};

/// One connection's own byte-rate cap, on the arbiter's clock.
///
/// A grant is admitted by the cap before the global limiter is asked; if the global limiter then
/// says wait, the admitted bytes stay prepaid for the connection's next try, so no cap budget is
/// lost.
#[derive(Debug)]
pub(crate) struct Cap {
    gcra: Gcra,
    prepaid: u64,
}

impl Cap {
    /// A cap that starts with no stored-up burst.
    pub(crate) fn new(rate: NonZeroU64, clock: &ManualClock) -> Self {
        let mut cap = Self {
            gcra: Gcra::new(rate, cap_burst(rate), 0, clock),
            prepaid: 0,
        };
        cap.forget_idle();
        cap
    }

    /// Drops budget stored up while idle, keeping two grants: the cap's large burst is for
    /// budget that accrues while a backlogged connection waits for its turn, not while idle.
    pub(crate) fn forget_idle(&mut self) {
        self.gcra.trim(2 * cap_grant_max(self.gcra.rate()));
    }

    /// The cap in bytes per second.
    pub(crate) fn rate(&self) -> u64 {
        self.gcra.rate().get()
    }

    /// The largest grant this cap can ever admit: its burst. A capped connection takes its
    /// turn in one grant like any other, waiting (parked) until its cap admits it.
    pub(crate) fn grant_max(&self) -> u64 {
        cap_burst(self.gcra.rate())
    }

    /// The grant to ask of this cap now: what it holds ready (budget that accrued while the
    /// connection, or group, waited for its turn), and at least one ordinary grant (5 ms of
    /// the cap), for which it waits. A turn whose quantum is larger than the cap's pace no
    /// longer waits for a quarter second of budget to move it in one grant: a capped group's
    /// members then took turns of 250 ms each, and one of nine waited 2.25 s for its first.
    pub(crate) fn grant_now(&self) -> u64 {
        let ready = self.prepaid.saturating_add(self.gcra.ready());
        ready
            .max(cap_grant_max(self.gcra.rate()))
            .min(self.grant_max())
    }

    /// Makes sure `bytes` are prepaid, or says when they can be (nanoseconds on the clock).
    pub(crate) fn admit(&mut self, bytes: u64) -> Result<(), u64> {
        if self.prepaid < bytes {
            self.gcra.take(bytes - self.prepaid)?;
            self.prepaid = bytes;
        }
        Ok(())
    }

    /// Spends `bytes` of what was admitted.
    pub(crate) fn spend(&mut self, bytes: u64) {
        self.prepaid = self.prepaid.saturating_sub(bytes);
    }

    /// Gives back `bytes` of a grant that were not used, within the cap's burst: a connection
    /// that stalls is not charged for bytes it never moved.
    pub(crate) fn refund(&mut self, bytes: u64) {
        self.gcra.refund(bytes);
    }
}

/// Makes the cap for an optional rate.
pub(crate) fn cap_for(rate: Option<NonZeroU64>, clock: &ManualClock) -> Option<Cap> {
    rate.map(|r| Cap::new(r, clock))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// After a long idle time a cap holds two ordinary grants ready, not its whole burst (and
    /// not less: the first grant after idle goes at once, the second keeps the pace).
    #[test]
    fn an_idle_cap_keeps_two_grants() {
        let clock = ManualClock::default();
        let rate = NonZeroU64::new(1 << 20).unwrap();
        let mut cap = Cap::new(rate, &clock);
        let grant = cap_grant_max(rate);
        clock.set(10_000_000_000);
        assert_eq!(
            cap.grant_now(),
            cap.grant_max(),
            "a full burst before the trim"
        );
        cap.forget_idle();
        let ready = cap.grant_now();
        assert!(
            (2 * grant..2 * grant + grant / 2).contains(&ready),
            "{ready} ready, two grants are {}",
            2 * grant
        );
        assert_eq!(cap.admit(ready), Ok(()));
        assert!(cap.admit(ready + grant).is_err(), "more than was kept");
    }
}
