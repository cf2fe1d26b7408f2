//! [`HeldWeights`]: the active weight that turns are sized from, held at its recent peak.

use crate::tuning::WEIGHT_HOLD_NANOS;

/// The sum of the backlogged connections' weights and the smallest of them, held over time:
/// the largest sum and the smallest weight seen in the current and the previous period of
/// [`WEIGHT_HOLD_NANOS`], periods counted from the arbiter's epoch.
///
/// A rise shows at once (a newcomer shrinks the others' turns from its first turn); a fall shows
/// only once a whole period has passed without the old peak, 1 to 2 s later. Connections that
/// leave the round and come back all the time (a slow consumer, a sparse sender) therefore do
/// not move the held values, and every backlogged connection's turn is the same multiple of its
/// weight, whenever in the round it is topped up. O(1), on the arbiter's clock.
#[derive(Debug)]
pub(crate) struct HeldWeights {
    /// Start of the current period, in nanoseconds on the arbiter's clock.
    since: u64,
    /// The largest sum of weights seen in the previous and the current period.
    total: [u64; 2],
    /// The smallest weight seen in the previous and the current period; `u32::MAX`: none.
    min: [u32; 2],
}

impl HeldWeights {
    /// Nothing held, from `t` on.
    pub(crate) fn new(t: u64) -> Self {
        Self {
            since: t,
            total: [0; 2],
            min: [u32::MAX; 2],
        }
    }

    /// Whether a period has ended by `t`, so that [`Self::observe`] would let go of an old peak.
    pub(crate) fn due(&self, t: u64) -> bool {
        t.saturating_sub(self.since) >= WEIGHT_HOLD_NANOS
    }

    /// Records that `total` and `min` are in force at `t` and have been since the last call.
    /// Called before and after every change, so that a value is held for the periods in which
    /// it was in force, and at decisions, so that a peak is let go of in time.
    pub(crate) fn observe(&mut self, t: u64, total: u64, min: Option<u32>) {
        let min = min.unwrap_or(u32::MAX);
        if self.due(t) {
            let periods = (t - self.since) / WEIGHT_HOLD_NANOS;
            self.since += periods * WEIGHT_HOLD_NANOS;
            // The values in force now were in force since the last call: all through the
            // previous period if more than one has passed.
            if periods == 1 {
                self.total[0] = self.total[1];
                self.min[0] = self.min[1];
            } else {
                self.total[0] = total;
                self.min[0] = min;
            }
            self.total[1] = total;
            self.min[1] = min;
        } else {
            self.total[1] = self.total[1].max(total);
            self.min[1] = self.min[1].min(min);
        }
    }

    /// The held sum of weights: the largest in the current and the previous period.
    pub(crate) fn total(&self) -> u64 {
        self.total[0].max(self.total[1])
    }

    /// The held smallest weight: the smallest in the current and the previous period.
    pub(crate) fn min(&self) -> Option<u32> {
        Some(self.min[0].min(self.min[1])).filter(|&m| m != u32::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: u64 = WEIGHT_HOLD_NANOS;

    #[test]
    fn rises_at_once_and_falls_only_after_a_whole_period_without_the_peak() {
        let mut h = HeldWeights::new(0);
        h.observe(0, 3, Some(1));
        h.observe(10, 5, Some(1));
        assert_eq!((h.total(), h.min()), (5, Some(1)));
        // Dips within the period do not show.
        h.observe(20, 2, Some(2));
        assert_eq!((h.total(), h.min()), (5, Some(1)));
        // The next period still holds the previous one's peak.
        h.observe(P + 1, 2, Some(2));
        assert_eq!((h.total(), h.min()), (5, Some(1)));
        // A whole period without it: let go of it.
        h.observe(2 * P + 1, 2, Some(2));
        assert_eq!((h.total(), h.min()), (2, Some(2)));
    }

    #[test]
    fn a_long_quiet_spell_holds_only_what_was_in_force() {
        let mut h = HeldWeights::new(0);
        h.observe(0, 7, Some(1));
        h.observe(5, 4, Some(4));
        h.observe(5 * P, 4, Some(4));
        assert_eq!((h.total(), h.min()), (4, Some(4)));
        h.observe(5 * P + 1, 0, None);
        assert_eq!((h.total(), h.min()), (4, Some(4)));
        h.observe(7 * P, 0, None);
        assert_eq!((h.total(), h.min()), (0, None));
    }
}
