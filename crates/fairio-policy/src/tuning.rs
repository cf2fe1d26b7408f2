//! The constants that size grants and bursts, and the formulas built on them.

use std::num::NonZeroU64;

/// The largest floor, in bytes: the smallest grant worth making at limits of 2 MiB/s and up,
/// however small a connection's share. See [`floor`].
pub const GRANT_FLOOR: u64 = 512;

/// The smallest floor, in bytes, at very low limits.
pub const MIN_FLOOR: u64 = 16;

/// The floor is this much time at the limit (250 µs), within [`MIN_FLOOR`, `GRANT_FLOOR`].
pub const FLOOR_HORIZON_NANOS: u64 = 250_000;

/// The largest grant, in bytes: no connection moves more than this at a time.
pub const MAX_GRANT: u64 = 64 * 1024;

/// Grants are sized to a connection's share of this much time, in nanoseconds (5 ms).
pub const GRANT_HORIZON_NANOS: u64 = 5_000_000;

/// Turns are sized from the active weight held at its peak over the last one to two periods of
/// this much time (1 s), not from the momentary one: see the [crate docs](crate), "Held weights".
pub const WEIGHT_HOLD_NANOS: u64 = 1_000_000_000;

/// The global limiter's burst, beyond the largest grant, is this much time at the limit (40 ms).
pub const BURST_HORIZON_NANOS: u64 = 40_000_000;

const NANOS_PER_SEC: u128 = 1_000_000_000;

/// `rate × nanos`, in bytes, rounded down.
pub(crate) fn bytes_in(rate: NonZeroU64, nanos: u64) -> u64 {
    u64::try_from(u128::from(rate.get()) * u128::from(nanos) / NANOS_PER_SEC).unwrap_or(u64::MAX)
}

/// The smallest grant under a limit, however small a connection's share: 250 µs at the limit,
/// within [16, 512] bytes. So at most 4,000 floor-sized grants are made per second, and at low
/// limits rounds stay short enough for fairness within a second.
///
/// ```
/// use std::num::NonZeroU64;
/// use fairio_policy::tuning::floor;
///
/// assert_eq!(floor(NonZeroU64::new(64 << 20).unwrap()), 512);
/// assert_eq!(floor(NonZeroU64::new(1 << 20).unwrap()), 262);
/// assert_eq!(floor(NonZeroU64::new(1000).unwrap()), 16);
/// ```
pub fn floor(limit: NonZeroU64) -> u64 {
    bytes_in(limit, FLOOR_HORIZON_NANOS).clamp(MIN_FLOOR, GRANT_FLOOR)
}

/// Bytes charged but not granted (cell rounding, unused grants) that are kept for the next
/// grants: the limit's bytes over the grant horizon, within [`GRANT_FLOOR`, `MAX_GRANT`].
pub fn credit_cap(limit: NonZeroU64) -> u64 {
    bytes_in(limit, GRANT_HORIZON_NANOS).clamp(GRANT_FLOOR, MAX_GRANT)
}

/// The largest grant under a limit: [`MAX_GRANT`], or the GCRA's burst if that is smaller.
pub fn grant_max(limit: NonZeroU64) -> u64 {
    MAX_GRANT.min(gcra_burst(limit))
}

/// The documented burst `B` of a limit: over any window of `T`, at most `limit × T + B` bytes are
/// granted. It is the credit kept for the next grants plus the GCRA's burst, and it is at most
/// `max(64 KiB, limit × 50 ms)`.
///
/// ```
/// use std::num::NonZeroU64;
/// use fairio_policy::tuning::burst;
///
/// let mib = NonZeroU64::new(1 << 20).unwrap();
/// assert!(burst(mib) <= 64 * 1024);
/// let fast = NonZeroU64::new(256 << 20).unwrap();
/// assert!(burst(fast) <= (256 << 20) / 20);
/// ```
pub fn burst(limit: NonZeroU64) -> u64 {
    credit_cap(limit) + gcra_burst(limit)
}

/// The burst of the global GCRA: 40 ms at the limit, and at low limits enough that `B` reaches
/// 64 KiB, so that a weighted connection's whole turn fits in one grant.
pub(crate) fn gcra_burst(limit: NonZeroU64) -> u64 {
    let credit = credit_cap(limit);
    bytes_in(limit, BURST_HORIZON_NANOS)
        .max(MAX_GRANT - credit)
        .max(credit)
}

/// A connection's largest grant under its own cap: its cap over the grant horizon, within
/// [its floor, `MAX_GRANT`].
pub(crate) fn cap_grant_max(cap: NonZeroU64) -> u64 {
    bytes_in(cap, GRANT_HORIZON_NANOS).clamp(floor(cap), MAX_GRANT)
}

/// A connection's cap holds this much time of budget (250 ms).
pub const CAP_BURST_NANOS: u64 = 250_000_000;

/// The burst of a connection's cap limiter: 250 ms of the cap, and at least two grants. A capped
/// connection waits for its turn in the round like any other, and its cap must keep the budget
/// that accrues meanwhile, or round-robin would waste it (a cap close to the share would then
/// get half of it).
pub(crate) fn cap_burst(cap: NonZeroU64) -> u64 {
    (2 * cap_grant_max(cap)).max(bytes_in(cap, CAP_BURST_NANOS))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_stays_within_the_documented_bound() {
        for rate in [
            1u64,
            100,
            51_200,
            65_536,
            1 << 20,
            6_553_600,
            16 << 20,
            256 << 20,
            1 << 40,
        ] {
            let r = NonZeroU64::new(rate).unwrap();
            let bound = (64 * 1024).max(bytes_in(r, 50_000_000));
            assert!(
                burst(r) <= bound,
                "rate {rate}: burst {} > {bound}",
                burst(r)
            );
            assert!(gcra_burst(r) >= grant_max(r));
            assert!(grant_max(r) >= floor(r));
            assert!(cap_burst(r) >= cap_grant_max(r));
        }
    }
}
