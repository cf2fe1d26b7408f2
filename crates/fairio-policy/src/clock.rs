//! Time passed in: an epoch to turn `Instant`s into nanoseconds, and a governor clock that
//! reads the time the arbiter was last given.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use governor::clock::Clock;
use governor::nanos::Nanos;

/// Converts between `Instant`s and nanoseconds since the arbiter was made.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Epoch {
    origin: Instant,
}

impl Epoch {
    pub(crate) fn new(origin: Instant) -> Self {
        Self { origin }
    }

    /// Nanoseconds since the origin; instants before it count as the origin.
    pub(crate) fn nanos(&self, now: Instant) -> u64 {
        u64::try_from(now.saturating_duration_since(self.origin).as_nanos()).unwrap_or(u64::MAX)
    }

    pub(crate) fn instant(&self, nanos: u64) -> Instant {
        self.origin + Duration::from_nanos(nanos)
    }
}

/// A governor [`Clock`] that never reads a real clock: it reports the time the arbiter last set,
/// so that governor's GCRA runs on the caller's time (tokio's paused clock, or a simulation).
/// Time never goes backwards: a smaller value is ignored.
#[derive(Clone, Debug, Default)]
pub(crate) struct ManualClock(Arc<AtomicU64>);

impl ManualClock {
    pub(crate) fn set(&self, nanos: u64) {
        self.0.fetch_max(nanos, Ordering::Relaxed);
    }

    pub(crate) fn nanos(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

impl Clock for ManualClock {
    type Instant = Nanos;

    fn now(&self) -> Nanos {
        Nanos::from(self.nanos())
    }
}
