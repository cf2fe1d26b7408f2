//! [`ShutdownReport`]: what a scheduler's shutdown closed and what it had to drop.

use std::time::Duration;

/// What [`Scheduler::shutdown`](crate::Scheduler::shutdown) did: how many connections it closed,
/// how many bytes their write queues still held when the flush timed out (dropped), and how long
/// it took. A daemon logs it as its last line.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), fairio::Error> {
/// let sched = fairio::Scheduler::new(fairio::Config::new(16 * 1024))?;
/// let report = sched.shutdown(None).await;
/// assert_eq!((report.connections, report.unsent_bytes), (0, 0));
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ShutdownReport {
    /// Connections that were open when the shutdown began.
    pub connections: usize,
    /// Bytes accepted for writing that were dropped when their connection's flush timed out.
    pub unsent_bytes: u64,
    /// Connections that ended with an I/O error or a timed-out flush.
    pub failed: usize,
    /// From the call to the end of the last task.
    pub elapsed: Duration,
}
