//! [`Meter`]: one connection's counters.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::Stat;

/// One connection's byte counters and current rates.
///
/// Counting is two relaxed atomic adds at most, with no lock: cheap enough for every chunk. The
/// rates are written by [`Registry::refresh`](crate::Registry::refresh).
#[derive(Debug, Default)]
pub struct Meter {
    sent: AtomicU64,
    recv: AtomicU64,
    inflow: AtomicU64,
    outflow: AtomicU64,
}

impl Meter {
    /// Counts `n` bytes sent.
    pub fn add_sent(&self, n: u64) {
        self.sent.fetch_add(n, Ordering::Relaxed);
    }

    /// Counts `n` bytes received.
    pub fn add_recv(&self, n: u64) {
        self.recv.fetch_add(n, Ordering::Relaxed);
    }

    /// Bytes sent so far.
    pub fn total_sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }

    /// Bytes received so far.
    pub fn total_recv(&self) -> u64 {
        self.recv.load(Ordering::Relaxed)
    }

    /// A snapshot of the totals and the rates of the last refresh.
    pub fn stat(&self) -> Stat {
        Stat {
            total_sent: self.total_sent(),
            total_recv: self.total_recv(),
            current_inflow: self.inflow.load(Ordering::Relaxed),
            current_outflow: self.outflow.load(Ordering::Relaxed),
            unacked: None,
        }
    }

    pub(crate) fn set_rates(&self, inflow: u64, outflow: u64) {
        self.inflow.store(inflow, Ordering::Relaxed);
        self.outflow.store(outflow, Ordering::Relaxed);
    }
}
