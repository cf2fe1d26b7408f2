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
    /// Of `total_sent`, the bytes the peer has not acknowledged yet (waiting unsent in the
    /// kernel, or sent and not acknowledged), so that `total_sent - unacked` is what the
    /// peer's TCP has received. Read from the kernel when the snapshot is taken, for a TCP
    /// connection on Linux (`SIOCOUTQ`); after a connection closed, the figure at its close.
    /// `None` where it cannot be known (other streams and platforms, and sums over groups or
    /// the whole scheduler).
    pub unacked: Option<u64>,
}

impl Stat {
    /// What the peer's TCP has acknowledged of `total_sent`, where [`unacked`](Self::unacked)
    /// is known.
    ///
    /// ```
    /// let stat = fairio_stats::Stat { total_sent: 100, unacked: Some(30), ..Default::default() };
    /// assert_eq!(stat.acked(), Some(70));
    /// ```
    pub fn acked(&self) -> Option<u64> {
        self.unacked.map(|u| self.total_sent.saturating_sub(u))
    }
}

impl Add for Stat {
    type Output = Self;

    fn add(self, rhs: Self) -> Self {
        Self {
            total_sent: self.total_sent + rhs.total_sent,
            total_recv: self.total_recv + rhs.total_recv,
            current_inflow: self.current_inflow + rhs.current_inflow,
            current_outflow: self.current_outflow + rhs.current_outflow,
            // Known for the sum only where known for every part.
            unacked: self.unacked.zip(rhs.unacked).map(|(a, b)| a + b),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn stat(base: u64, unacked: Option<u64>) -> Stat {
        Stat {
            total_sent: base,
            total_recv: base + 1,
            current_inflow: base + 2,
            current_outflow: base + 3,
            unacked,
        }
    }

    /// Every field is summed on its own (distinct values, so that a field added to another or
    /// multiplied shows), and `unacked` is known for an addition only where known for both.
    #[test]
    fn sums_each_field() {
        let (a, b) = (stat(10, Some(4)), stat(100, Some(7)));
        let want = Stat {
            total_sent: 110,
            total_recv: 112,
            current_inflow: 114,
            current_outflow: 116,
            unacked: Some(11),
        };
        assert_eq!(a + b, want);
        let mut c = a;
        c += b;
        assert_eq!(c, want);
        // A sum starts from the default, whose `unacked` is unknown: sums over groups and
        // schedulers leave it unknown, as `unacked` documents.
        let summed = [a, b].into_iter().sum::<Stat>();
        assert_eq!(
            summed,
            Stat {
                unacked: None,
                ..want
            }
        );
        assert_eq!((stat(1, None) + a).unacked, None);
        assert_eq!(std::iter::empty::<Stat>().sum::<Stat>(), Stat::default());
    }
}
