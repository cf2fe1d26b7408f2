//! [`Stat`]: a snapshot of bandwidth use.

use std::iter::Sum;
use std::ops::{Add, AddAssign};

/// A snapshot of bandwidth use: Tezos's `P2p_stat.t`.
///
/// Totals are in bytes; current flows are moving averages in bytes per second.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Stat {
    /// Bytes sent (written to the stream) in all.
    pub total_sent: u64,
    /// Bytes received (read from the stream) in all.
    pub total_recv: u64,
    /// Moving average of the download rate, bytes per second.
    pub current_inflow: u64,
    /// Moving average of the upload rate, bytes per second.
    pub current_outflow: u64,
}

impl Add for Stat {
    type Output = Self;

    fn add(self, rhs: Self) -> Self {
        Self {
            total_sent: self.total_sent + rhs.total_sent,
            total_recv: self.total_recv + rhs.total_recv,
            current_inflow: self.current_inflow + rhs.current_inflow,
            current_outflow: self.current_outflow + rhs.current_outflow,
        }
    }
}

impl AddAssign for Stat {
    fn add_assign(&mut self, rhs: Self) {
        *self = *self + rhs;
    }
}

impl Sum for Stat {
    fn sum<I: Iterator<Item = Self>>(iter: I) -> Self {
        iter.fold(Self::default(), Add::add)
    }
}
